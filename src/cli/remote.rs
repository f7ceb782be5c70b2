//! The commands that talk to servers (`--endpoint URL[,URL...]`): key reads and writes over
//! the documented HTTP API, backups, and cluster status and membership.
//!
//! Endpoints are tried in order; one that cannot be reached is skipped. A 503 answer of the
//! form `{"error": "not leader", "leader": "host:port"}` is followed to that leader (at most
//! three hops). Routes used: `GET/PUT/DELETE /key/{key}`, `GET /key/{key}/history`,
//! `GET /range`, `GET /health`, `GET /raft/status`, `GET /admin/backup`, and for membership
//! (served once the replication feature exists) `GET /cluster/members`,
//! `POST /cluster/learners`, `POST /cluster/promote`, `POST /cluster/remove`.
//!
//! `https://` endpoints, client certificates and the bearer token come from the
//! [`Access`] options (`secure.rs`).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::progress::{Progress, human_bytes};
use super::secure::Access;
use super::{CliError, CliResult, ClusterWhat, Command, Style, arg_bytes, exit, print_json};

/// Longest answer body read into memory (a backup is streamed instead).
const MAX_BODY: u64 = 256 << 20;
/// Leader hints followed for one request.
const MAX_HOPS: usize = 3;

/// One answer from a server.
#[derive(Debug)]
struct Answer {
    status: u16,
    json: Value,
}

/// A blocking HTTP client over a list of endpoints.
struct Client {
    agent: ureq::Agent,
    endpoints: Vec<String>,
    /// The `Authorization` header's value.
    authorization: Option<String>,
}

/// `req` with the `Authorization` header, when there is one.
fn authorized<B>(req: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("authorization", a),
        None => req,
    }
}

fn base_url(e: &str) -> String {
    let e = e.trim().trim_end_matches('/');
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

impl Client {
    fn new(
        endpoints: &[String],
        access: &Access,
        timeout: Option<Duration>,
    ) -> Result<Client, CliError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(timeout)
            .tls_config(access.tls_config()?)
            .build()
            .into();
        Ok(Client {
            agent,
            endpoints: endpoints
                .iter()
                .filter(|e| !e.trim().is_empty())
                .map(|e| base_url(e))
                .collect(),
            authorization: access.authorization(),
        })
    }

    fn send(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = format!("{base}{path}");
        let auth = self.authorization.as_deref();
        match (method, body) {
            ("GET", _) => authorized(self.agent.get(&url), auth).call(),
            ("DELETE", _) => authorized(self.agent.delete(&url), auth).call(),
            ("PUT", b) => authorized(self.agent.put(&url), auth)
                .header("content-type", "application/json")
                .send(b.map(Value::to_string).unwrap_or_default()),
            (_, b) => authorized(self.agent.post(&url), auth)
                .header("content-type", "application/json")
                .send(b.map(Value::to_string).unwrap_or_default()),
        }
    }

    /// Sends a request to the first endpoint that answers, following leader hints; returns
    /// the endpoint that answered and its raw response.
    fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(String, ureq::http::Response<ureq::Body>), CliError> {
        let mut errors = Vec::new();
        for start in &self.endpoints {
            let mut base = start.clone();
            for _ in 0..=MAX_HOPS {
                let mut resp = match self.send(&base, method, path, body) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(format!("{base}: {e}"));
                        break;
                    }
                };
                if resp.status().as_u16() == 503 {
                    let text = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_to_string()
                        .unwrap_or_default();
                    let hint: Option<String> = serde_json::from_str::<Value>(&text)
                        .ok()
                        .filter(|v| v.get("error").and_then(Value::as_str) == Some("not leader"))
                        .and_then(|v| v.get("leader").and_then(Value::as_str).map(str::to_string));
                    match hint {
                        Some(leader) => {
                            base = base_url(&leader);
                            continue;
                        }
                        None => {
                            errors.push(format!("{base}: 503 {text}"));
                            break;
                        }
                    }
                }
                return Ok((base, resp));
            }
        }
        Err(CliError::new(
            exit::UNAVAILABLE,
            format!("no endpoint answered: {}", errors.join("; ")),
        ))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer, CliError> {
        let (base, mut resp) = self.raw(method, path, body)?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| CliError::new(exit::UNAVAILABLE, format!("{base}: {e}")))?;
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&bytes).into_owned()}));
        Ok(Answer { status, json })
    }
}

/// The error message a server put in its answer.
fn message(a: &Answer) -> String {
    for k in ["detail", "error", "message"] {
        if let Some(v) = a.json.get(k) {
            return match v.as_str() {
                Some(s) => s.to_string(),
                None => v.to_string(),
            };
        }
    }
    a.json.to_string()
}

/// Maps a non-2xx answer to an exit code.
fn failure(a: &Answer) -> CliError {
    let code = match a.status {
        404 => exit::NOT_FOUND,
        400..=499 => exit::REJECTED,
        _ => exit::UNAVAILABLE,
    };
    CliError::new(
        code,
        format!("server answered {}: {}", a.status, message(a)),
    )
}

/// A key as a server path segment; the server's keys are UTF-8.
fn key_path(key: &str, style: Style) -> Result<String, CliError> {
    let bytes = arg_bytes(key, style)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::new(exit::USAGE, "server keys are UTF-8 text"))?;
    Ok(utf8_percent_encode(&text, NON_ALPHANUMERIC).to_string())
}

fn text_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn no_extra(extra: Option<String>, cmd: &str) -> Result<(), CliError> {
    match extra {
        Some(_) => Err(CliError::new(
            exit::USAGE,
            format!("with --endpoint, {cmd} takes KEY only (no DIR)"),
        )),
        None => Ok(()),
    }
}

pub(crate) fn run(
    endpoints: &[String],
    access: &Access,
    cmd: Command,
    style: Style,
    out: &mut dyn Write,
) -> CliResult {
    let client = Client::new(endpoints, access, Some(Duration::from_secs(30)))?;
    match cmd {
        Command::Get {
            first,
            key,
            version,
        } => {
            no_extra(key, "get")?;
            let mut path = format!("/key/{}", key_path(&first, style)?);
            if let Some(v) = version {
                path.push_str(&format!("?version={v}"));
            }
            let a = client.call("GET", &path, None)?;
            if a.status == 404 {
                return Ok(exit::NOT_FOUND);
            }
            if a.status != 200 {
                return Err(failure(&a));
            }
            if style.json {
                print_json(out, &a.json)?;
            } else {
                writeln!(
                    out,
                    "{}",
                    text_of(a.json.get("value").unwrap_or(&Value::Null))
                )?;
            }
            Ok(exit::OK)
        }
        Command::Put {
            first,
            second,
            third,
            json_value,
            expect_version,
        } => {
            no_extra(third, "put")?;
            let value = if json_value {
                serde_json::from_str(&second)
                    .map_err(|e| CliError::new(exit::USAGE, format!("VALUE is not JSON: {e}")))?
            } else {
                let bytes = arg_bytes(&second, style)?;
                Value::String(
                    String::from_utf8(bytes)
                        .map_err(|_| CliError::new(exit::USAGE, "server values are UTF-8 text"))?,
                )
            };
            let mut body = json!({ "value": value });
            if let Some(v) = expect_version {
                body["version"] = v.into();
            }
            let a = client.call(
                "PUT",
                &format!("/key/{}", key_path(&first, style)?),
                Some(&body),
            )?;
            if a.status != 200 {
                return Err(failure(&a));
            }
            if style.json {
                print_json(out, &a.json)?;
            } else {
                writeln!(
                    out,
                    "version {} (id {})",
                    a.json.get("version").map(text_of).unwrap_or_default(),
                    a.json.get("id").map(text_of).unwrap_or_default()
                )?;
            }
            Ok(exit::OK)
        }
        Command::Delete { first, key } => {
            no_extra(key, "delete")?;
            let a = client.call(
                "DELETE",
                &format!("/key/{}", key_path(&first, style)?),
                None,
            )?;
            if a.status == 404 {
                return Ok(exit::NOT_FOUND);
            }
            if a.status != 200 {
                return Err(failure(&a));
            }
            if style.json {
                print_json(out, &a.json)?;
            } else {
                writeln!(
                    out,
                    "deleted (id {})",
                    a.json.get("id").map(text_of).unwrap_or_default()
                )?;
            }
            Ok(exit::OK)
        }
        Command::History { first, key } => {
            no_extra(key, "history")?;
            let a = client.call(
                "GET",
                &format!("/key/{}/history", key_path(&first, style)?),
                None,
            )?;
            if a.status == 404 {
                return Ok(exit::NOT_FOUND);
            }
            if a.status != 200 {
                return Err(failure(&a));
            }
            if style.json {
                print_json(out, &a.json)?;
            } else if let Some(items) = a.json.get("history").and_then(Value::as_array) {
                for h in items {
                    writeln!(
                        out,
                        "{}\t{}",
                        h.get("version").map(text_of).unwrap_or_default(),
                        text_of(h.get("value").unwrap_or(&Value::Null))
                    )?;
                }
            }
            Ok(exit::OK)
        }
        Command::Range { start, end, limit } => {
            let enc = |s: &str| key_path(s, style);
            let mut path = format!("/range?start={}&limit={limit}", enc(&start)?);
            if let Some(e) = end {
                path.push_str(&format!("&end={}", enc(&e)?));
            }
            let a = client.call("GET", &path, None)?;
            if a.status != 200 {
                return Err(failure(&a));
            }
            if style.json {
                print_json(out, &a.json)?;
            } else if let Some(items) = a.json.get("items").and_then(Value::as_array) {
                for it in items {
                    writeln!(
                        out,
                        "{}\t{}",
                        text_of(it.get("key").unwrap_or(&Value::Null)),
                        text_of(it.get("value").unwrap_or(&Value::Null))
                    )?;
                }
            }
            Ok(exit::OK)
        }
        Command::Backup { dest } => backup(endpoints, access, &dest, style, out),
        Command::Cluster { what } => cluster(&client, what, style, out),
        _ => Err(CliError::new(
            exit::USAGE,
            "this command works on a local directory: drop --endpoint",
        )),
    }
}

/// Downloads `GET /admin/backup` into `dest`: written under a temporary name, checked
/// whole, synced, then renamed into place.
fn backup(
    endpoints: &[String],
    access: &Access,
    dest: &Path,
    style: Style,
    out: &mut dyn Write,
) -> CliResult {
    let start = Instant::now();
    // No overall timeout: a large store takes as long as it takes.
    let client = Client::new(endpoints, access, None)?;
    if dest.exists() {
        return Err(CliError::new(
            exit::FAILED,
            format!("{} exists", dest.display()),
        ));
    }
    let (base, mut resp) = client.raw("GET", "/admin/backup", None)?;
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let a = Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text })),
        };
        return Err(failure(&a));
    }
    let part = dest.with_extension("part");
    let file = super::local::create_new(&part)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut src = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut progress = Progress::new("backup");
    let mut total = 0u64;
    let copied = (|| -> Result<(), CliError> {
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| CliError::new(exit::UNAVAILABLE, format!("{base}: {e}")))?;
            if n == 0 {
                break;
            }
            w.write_all(buf.get(..n).unwrap_or_default())?;
            total += n as u64;
            progress.bytes_so_far(total);
        }
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    })();
    progress.finish();
    let checked = copied.and_then(|()| {
        let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&part)?);
        Ok(crate::backup::check_archive(&mut r, &mut |_| {})?)
    });
    let summary = match checked {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, dest)?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    let secs = start.elapsed().as_secs_f64();
    if style.json {
        print_json(
            out,
            &json!({"file": dest, "endpoint": base, "seqno": summary.seqno, "files": summary.files,
                    "bytes": total, "seconds": secs}),
        )?;
    } else {
        writeln!(
            out,
            "backup of {base} at seqno {} in {}: {} files, {} in {secs:.2} s",
            summary.seqno,
            dest.display(),
            summary.files,
            human_bytes(total)
        )?;
    }
    Ok(exit::OK)
}

fn cluster(client: &Client, what: ClusterWhat, style: Style, out: &mut dyn Write) -> CliResult {
    let membership = |method: &str, path: &str, body: Option<Value>| -> Result<Answer, CliError> {
        let a = client.call(method, path, body.as_ref())?;
        if a.status == 404 || a.status == 405 {
            return Err(CliError::new(
                exit::UNAVAILABLE,
                format!(
                    "the server does not offer cluster membership ({method} {path} answered {}): \
                     the replication feature is not available yet",
                    a.status
                ),
            ));
        }
        if a.status != 200 {
            return Err(failure(&a));
        }
        Ok(a)
    };
    let answer = match what {
        ClusterWhat::Status => return status(client, style, out),
        ClusterWhat::Members => membership("GET", "/cluster/members", None)?,
        ClusterWhat::AddLearner { node_id, addr } => membership(
            "POST",
            "/cluster/learners",
            Some(json!({"node_id": node_id, "addr": addr})),
        )?,
        ClusterWhat::Promote { node_id } => membership(
            "POST",
            "/cluster/promote",
            Some(json!({ "node_id": node_id })),
        )?,
        ClusterWhat::Remove { node_id } => membership(
            "POST",
            "/cluster/remove",
            Some(json!({ "node_id": node_id })),
        )?,
    };
    if style.json {
        print_json(out, &answer.json)?;
    } else if let Some(members) = answer.json.get("members").and_then(Value::as_array) {
        for m in members {
            writeln!(
                out,
                "{}\t{}\t{}",
                m.get("id").map(text_of).unwrap_or_default(),
                m.get("addr").map(text_of).unwrap_or_default(),
                m.get("role").map(text_of).unwrap_or_default()
            )?;
        }
    } else {
        writeln!(out, "{}", answer.json)?;
    }
    Ok(exit::OK)
}

/// Asks every endpoint (no leader following) for its health and role.
fn status(client: &Client, style: Style, out: &mut dyn Write) -> CliResult {
    let mut all_ok = true;
    let mut rows = Vec::new();
    for base in &client.endpoints {
        let get = |path: &str| -> Result<Value, String> {
            let mut r = client
                .send(base, "GET", path, None)
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let text = r
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("{path} answered {status}: {text}"));
            }
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        let row = match (get("/health"), get("/raft/status")) {
            (Ok(h), Ok(r)) => {
                json!({"endpoint": base, "healthy": h.get("status").and_then(Value::as_str) == Some("ok"),
                       "node_id": h.get("node_id"), "mode": r.get("mode").or(h.get("mode")),
                       "state": r.get("state"), "leader": r.get("leader_id"), "term": r.get("term"),
                       "commit_index": r.get("commit_index"), "last_seqno": h.get("last_seqno")})
            }
            (Err(e), _) | (_, Err(e)) => json!({"endpoint": base, "healthy": false, "error": e}),
        };
        all_ok &= row.get("healthy").and_then(Value::as_bool) == Some(true);
        rows.push(row);
    }
    if style.json {
        for r in &rows {
            print_json(out, r)?;
        }
    } else {
        writeln!(
            out,
            "ENDPOINT\tHEALTHY\tNODE\tMODE\tSTATE\tLEADER\tTERM\tLAST_SEQNO"
        )?;
        for r in &rows {
            let f = |k: &str| match r.get(k) {
                None | Some(Value::Null) => "-".to_string(),
                Some(v) => text_of(v),
            };
            if let Some(e) = r.get("error") {
                writeln!(
                    out,
                    "{}\tfalse\t-\t-\t-\t-\t-\t-\t({})",
                    f("endpoint"),
                    text_of(e)
                )?;
            } else {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    f("endpoint"),
                    f("healthy"),
                    f("node_id"),
                    f("mode"),
                    f("state"),
                    f("leader"),
                    f("term"),
                    f("last_seqno")
                )?;
            }
        }
    }
    Ok(if all_ok { exit::OK } else { exit::UNAVAILABLE })
}
