//! Request limits in front of every route: body size, a global budget of body bytes, a body
//! read timeout, and the deadline a request's store work must start by.
//!
//! - A `Content-Length` above `max_body_bytes` is answered `413` at once, before any byte of
//!   the body is read (and the connection is closed, since the body is left unread).
//! - Every request with a body reserves its size (`Content-Length`, or `max_body_bytes` for a
//!   chunked body of unknown length) from one budget of `max_inflight_body_bytes` for the
//!   whole server, and keeps it until it is answered. When the budget is spent the request
//!   is answered `503` with `Retry-After` without reading its body, so many concurrent large
//!   uploads cannot take the server's memory.
//! - The whole body must arrive within `body_read_timeout`; else `408` and the connection
//!   is closed.
//! - Once its body is read, a request gets a deadline `request_timeout` away. Store work
//!   queued for it (reads on the reader threads, writes on the committer) that has not
//!   started by then is dropped and answered `503` with `Retry-After` (see [`deadline`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::config::ServerConfig;
use super::error::{Api, ApiError};

/// Budget unit: permits count KiB.
const UNIT: usize = 1024;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the request being handled on this task: its store work must start by
/// then. Outside a request, `default` from now.
pub(crate) fn deadline(default: Duration) -> Instant {
    DEADLINE
        .try_with(|d| *d)
        .unwrap_or_else(|_| Instant::now() + default)
}

/// The limits, shared by every request.
#[derive(Debug)]
pub(crate) struct Limits {
    max_body: usize,
    budget: Arc<Semaphore>,
    body_timeout: Duration,
    request_timeout: Duration,
}

impl Limits {
    pub(crate) fn new(config: &ServerConfig) -> Limits {
        Limits {
            max_body: config.max_body_bytes,
            budget: Arc::new(Semaphore::new(
                config.max_inflight_body_bytes.div_ceil(UNIT),
            )),
            body_timeout: config.body_read_timeout,
            request_timeout: config.request_timeout,
        }
    }
}

/// What the headers say about the body.
enum BodySize {
    None,
    Known(u64),
    Chunked,
}

fn body_size(req: &Request) -> Result<BodySize, ApiError> {
    let h = req.headers();
    if h.contains_key(header::TRANSFER_ENCODING) {
        return Ok(BodySize::Chunked);
    }
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(BodySize::None),
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(0) => Ok(BodySize::None),
            Some(n) => Ok(BodySize::Known(n)),
            None => Err(ApiError::bad_request(Api::Any, "invalid Content-Length").closing()),
        },
    }
}

/// The middleware applying [`Limits`].
pub(crate) async fn apply(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let size = match body_size(&req) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let too_large = || {
        ApiError::too_large(
            Api::Any,
            format!(
                "request body exceeds the limit of {} bytes",
                limits.max_body
            ),
        )
        .closing()
    };
    let reserve = match size {
        BodySize::None => 0,
        BodySize::Known(n) if n > limits.max_body as u64 => {
            return too_large().into_response();
        }
        BodySize::Known(n) => usize::try_from(n).unwrap_or(usize::MAX),
        BodySize::Chunked => limits.max_body,
    };
    let mut held = None;
    let req = if reserve > 0 {
        let units = u32::try_from(reserve.div_ceil(UNIT)).unwrap_or(u32::MAX);
        match Arc::clone(&limits.budget).try_acquire_many_owned(units) {
            Ok(p) => held = Some(p),
            Err(_) => {
                return ApiError::busy(Api::Any, "too many request bodies in flight; retry later")
                    .closing()
                    .into_response();
            }
        }
        let (parts, body) = req.into_parts();
        let read = axum::body::to_bytes(body, limits.max_body);
        match tokio::time::timeout(limits.body_timeout, read).await {
            Ok(Ok(bytes)) => Request::from_parts(parts, Body::from(bytes)),
            Ok(Err(e)) => {
                let e = e.into_inner();
                if e.is::<http_body_util::LengthLimitError>() {
                    return too_large().into_response();
                }
                return ApiError::bad_request(
                    Api::Any,
                    format!("could not read the request body: {e}"),
                )
                .closing()
                .into_response();
            }
            Err(_) => {
                return ApiError::new(
                    Api::Any,
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} ms",
                        limits.body_timeout.as_millis()
                    ),
                )
                .closing()
                .into_response();
            }
        }
    } else {
        req
    };
    let deadline = Instant::now() + limits.request_timeout;
    let resp = DEADLINE.scope(deadline, next.run(req)).await;
    drop(held);
    resp
}
