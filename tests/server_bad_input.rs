//! Bad input: every malformed request gets a clear JSON 4xx (never a 5xx, a dropped
//! connection or a hang), in the error shape of its API, and leaves the store unchanged.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use hyper::Method;
use server_support::TestServer;

/// `(method, path, body, expected status)`.
type Case = (&'static str, String, Option<Vec<u8>>, u16);

fn case(method: &'static str, path: &str, body: Option<&[u8]>, status: u16) -> Case {
    (method, path.to_string(), body.map(<[u8]>::to_vec), status)
}

fn seed_a_cases() -> Vec<Case> {
    let big_value = format!(r#"{{"key": "k", "value": "{}"}}"#, "v".repeat(300));
    let long_key = format!(r#"{{"key": "{}", "value": "v"}}"#, "k".repeat(65));
    let big_body = format!(r#"{{"key": "k", "value": "{}"}}"#, "v".repeat(5000));
    vec![
        // malformed JSON, invalid UTF-8, lone surrogates
        case("POST", "/put", Some(b"{"), 400),
        case("POST", "/put", Some(b""), 400),
        case("POST", "/put", Some(br#"{"key": "k", "value": "v",}"#), 400),
        case(
            "POST",
            "/put",
            Some(b"{\"key\": \"\xff\", \"value\": \"v\"}"),
            400,
        ),
        case(
            "POST",
            "/put",
            Some(br#"{"key": "k", "value": "\ud800"}"#),
            400,
        ),
        case(
            "POST",
            "/put",
            Some(br#"{"key": "\udc00x", "value": "v"}"#),
            400,
        ),
        case(
            "POST",
            "/batchput",
            Some(br#"{"items": [{"key": "k", "value": "\ud83d"}]}"#),
            400,
        ),
        // bodies that are not objects
        case("POST", "/put", Some(b"null"), 400),
        case("POST", "/put", Some(b"[1, 2]"), 400),
        case("POST", "/put", Some(b"42"), 400),
        case("POST", "/put", Some(br#""text""#), 400),
        case("POST", "/batchput", Some(b"[]"), 400),
        // missing or wrongly typed fields, empty keys
        case("POST", "/put", Some(br#"{"key": "k"}"#), 400),
        case("POST", "/put", Some(br#"{"value": "v"}"#), 400),
        case("POST", "/put", Some(br#"{"key": "k", "value": null}"#), 400),
        case("POST", "/put", Some(br#"{"key": 123, "value": "v"}"#), 400),
        case("POST", "/put", Some(br#"{"key": "k", "value": 5}"#), 400),
        case(
            "POST",
            "/put",
            Some(br#"{"key": "k", "value": {"a": 1}}"#),
            400,
        ),
        case("POST", "/put", Some(br#"{"key": "", "value": "v"}"#), 400),
        case("POST", "/batchput", Some(br#"{}"#), 400),
        case("POST", "/batchput", Some(br#"{"items": []}"#), 400),
        case(
            "POST",
            "/batchput",
            Some(br#"{"items": {"key": "k"}}"#),
            400,
        ),
        case("POST", "/batchput", Some(br#"{"items": [1]}"#), 400),
        case(
            "POST",
            "/batchput",
            Some(br#"{"items": [{"key": "k", "value": "v"}, {"key": ""}]}"#),
            400,
        ),
        case("GET", "/get", None, 400),
        case("GET", "/get?key=", None, 400),
        case("DELETE", "/delete", None, 400),
        case("DELETE", "/delete?key=", None, 400),
        case("GET", "/range", None, 400),
        // over the limits (this server: keys 64 bytes, values 256, bodies 4096)
        case("POST", "/put", Some(long_key.as_bytes()), 413),
        case("POST", "/put", Some(big_value.as_bytes()), 413),
        case("POST", "/put", Some(big_body.as_bytes()), 413),
        case("GET", &format!("/get?key={}", "k".repeat(65)), None, 413),
        // invalid UTF-8 in the query string, garbage limits
        case("GET", "/get?key=%FF", None, 400),
        case("GET", "/get?key=%ED%A0%80", None, 400),
        case("DELETE", "/delete?key=%C3", None, 400),
        case("GET", "/range?start=a&limit=abc", None, 400),
        case("GET", "/range?start=a&limit=1.5", None, 400),
        case("GET", "/range?start=a&limit=-1", None, 400),
        case(
            "GET",
            "/range?start=a&limit=99999999999999999999999",
            None,
            400,
        ),
    ]
}

fn seed_b_cases() -> Vec<Case> {
    let big_value = format!(r#"{{"value": "{}"}}"#, "v".repeat(300));
    vec![
        case("PUT", "/key/k", Some(b"{"), 400),
        case("PUT", "/key/k", Some(b"{\"value\": \"\xc3\x28\"}"), 400),
        case("PUT", "/key/k", Some(br#"{"value": "\ud800"}"#), 400),
        case("PUT", "/key/k", Some(br#"{"value": ["\udfff"]}"#), 400),
        case("PUT", "/key/k", Some(b"[1]"), 422),
        case("PUT", "/key/k", Some(b"null"), 422),
        case("PUT", "/key/k", Some(br#"{}"#), 422),
        case("PUT", "/key/k", Some(br#"{"val": 1}"#), 422),
        case(
            "PUT",
            "/key/k",
            Some(br#"{"value": 1, "version": "x"}"#),
            422,
        ),
        case(
            "PUT",
            "/key/k",
            Some(br#"{"value": 1, "version": 1.5}"#),
            422,
        ),
        case(
            "PUT",
            "/key/k",
            Some(br#"{"value": 1, "version": [1]}"#),
            422,
        ),
        case(
            "PUT",
            "/key/k",
            Some(br#"{"value": 1, "version": 1e30}"#),
            422,
        ),
        case("PUT", "/key/k", Some(big_value.as_bytes()), 413),
        case(
            "PUT",
            &format!("/key/{}", "k".repeat(65)),
            Some(br#"{"value": 1}"#),
            413,
        ),
        case("PUT", "/key/%FF", Some(br#"{"value": 1}"#), 400),
        case("GET", "/key/%ED%A0%80", None, 400),
        case("GET", "/key/k?version=abc", None, 422),
        case("GET", "/key/k?version=1.5", None, 422),
        case("GET", "/key/k?version=%FF", None, 400),
        case(
            "PUT",
            "/key/k?client_id=c&request_id=%FF",
            Some(br#"{"value": 1}"#),
            400,
        ),
        case(
            "PUT",
            &format!("/key/k?client_id=c&request_id={}", "r".repeat(300)),
            Some(br#"{"value": 1}"#),
            400,
        ),
        case("POST", "/compaction/run?force=maybe", None, 422),
        case("POST", "/compaction/configure?enabled=2", None, 422),
        case("POST", "/compaction/configure?interval=soon", None, 422),
        case("POST", "/compaction/configure?interval=-5", None, 422),
        case("GET", "/request_status", None, 422),
    ]
}

fn routing_cases() -> Vec<Case> {
    vec![
        // unknown paths
        case("GET", "/nope", None, 404),
        case("GET", "/key/", None, 404),
        case("GET", "/key", None, 404),
        case("GET", "/key/a/b/c", None, 404),
        case("POST", "/", Some(b"{}"), 404),
        // wrong methods
        case("GET", "/put", None, 405),
        case("PATCH", "/put", Some(b"{}"), 405),
        case("PUT", "/get?key=a", Some(b"{}"), 405),
        case("POST", "/key/k", Some(br#"{"value": 1}"#), 405),
        case("PUT", "/key/k/history", Some(br#"{"value": 1}"#), 405),
        case("DELETE", "/keys", None, 405),
        case("GET", "/compaction/run", None, 405),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.max_key_bytes = 64;
    cfg.max_value_bytes = 256;
    cfg.max_body_bytes = 4096;
    let s = TestServer::start_with(cfg).await;
    s.post("/put", r#"{"key": "k", "value": "original"}"#).await;
    s.put("/key/j", r#"{"value": {"n": 1}}"#).await;
    let before: Vec<_> = s.state.db().iter().map(|r| r.unwrap()).collect();
    let seq = s.state.db().last_seqno();

    let groups = [
        ("error", seed_a_cases()),
        ("detail", seed_b_cases()),
        ("both", routing_cases()),
    ];
    for (shape, cases) in groups {
        for (method, path, body, status) in cases {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let r = s.send(m, &path, body.clone()).await;
            let what = format!(
                "{method} {path} {:?}",
                body.map(|b| String::from_utf8_lossy(&b)
                    .chars()
                    .take(60)
                    .collect::<String>())
            );
            assert_eq!(r.status, status, "{what}: {}", r.json);
            let fields: Vec<&str> = match shape {
                "error" => vec!["error"],
                "detail" => vec!["detail"],
                _ => vec!["error", "detail"],
            };
            for f in fields {
                let msg = r.json[f]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: no {f}: {}", r.json));
                assert!(!msg.is_empty(), "{what}");
            }
        }
    }

    // nothing stored changed
    assert_eq!(s.state.db().last_seqno(), seq);
    let after: Vec<_> = s.state.db().iter().map(|r| r.unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(s.get("/get?key=k").await.json["value"], "original");
    assert_eq!(s.get("/key/j").await.json["version"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let r = s.post("/put", "{").await;
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON")
    );
    let r = s.post("/put", r#"{"key": "k"}"#).await;
    assert_eq!(r.json["error"], "Missing key or value");
    let r = s.post("/batchput", r#"{"items": []}"#).await;
    assert_eq!(r.json["error"], "Missing items list");
    let r = s.get("/get").await;
    assert_eq!(r.json["error"], "Missing key");
    let r = s.put("/key/k", "[1]").await;
    assert_eq!(
        r.json["detail"],
        "request body must be a JSON object, got an array"
    );
    let r = s.put("/key/k", "{}").await;
    assert!(r.json["detail"].as_str().unwrap().contains("value"));
    let r = s.get("/nope").await;
    assert_eq!(r.json["detail"], "Not found");
    let r = s.send(Method::PATCH, "/put", None).await;
    assert_eq!(r.json["error"], "Method Not Allowed");
    s.stop().await;
}
