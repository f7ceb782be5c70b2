//! `--join URL`: a new node asks a running cluster to take it in. Once its own server is
//! listening, it asks the node at `URL` (following not-leader hints to the leader) to add it
//! as a learner, which returns when it has caught up, and then to promote it to a voter.
//! Each step is retried for a while, so the nodes may be started in any order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long joining keeps trying.
const JOIN_FOR: Duration = Duration::from_secs(120);
/// Largest answer read from the cluster.
const MAX_ANSWER: usize = 1 << 20;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// POSTs `body` to `path` on `base`, following not-leader hints; the JSON answer of a 200.
async fn post(client: &HttpClient, base: &str, path: &str, body: &Value) -> Result<Value, String> {
    let mut base = base.trim_end_matches('/').to_string();
    for _ in 0..5 {
        let req = hyper::Request::post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{base}: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("{base}: {e}"))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        match answer.get("leader").and_then(Value::as_str) {
            Some(leader) if status == hyper::StatusCode::SERVICE_UNAVAILABLE => {
                base = format!("http://{leader}");
            }
            _ => return Err(format!("{base}{path} answered {status}: {answer}")),
        }
    }
    Err(format!("{path}: no leader found"))
}

/// Joins node `name`, reachable at `addr`, to the cluster that `url` belongs to.
pub(crate) async fn join(url: String, name: String, addr: String) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let deadline = Instant::now() + JOIN_FOR;
    for (path, body) in [
        ("/cluster/learners", json!({"node_id": name, "addr": addr})),
        ("/cluster/promote", json!({"node_id": name})),
    ] {
        loop {
            match post(&client, &url, path, &body).await {
                Ok(_) => {
                    tracing::info!(step = path, via = %url, "joined");
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(step = path, error = %e, "joining the cluster; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(step = path, error = %e, "could not join the cluster");
                    return;
                }
            }
        }
    }
}
