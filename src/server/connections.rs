//! Connection handling: the accept loop and HTTP/1.1 on each connection, with the limits that
//! keep slow or hostile clients from holding memory, file descriptors or shutdown.
//!
//! This layer knows nothing of routes: it serves any [`Router`], so every route (both APIs,
//! and any added later) gets the same treatment.
//!
//! - **Connection cap.** At most `max_connections` connections are served at once; one past
//!   the cap is answered `503` with `Retry-After` and closed (on a TLS port it is closed
//!   unanswered: a handshake would cost more than the answer is worth), so the listen
//!   backlog never fills with clients nobody reads.
//! - **TLS.** On a TLS port a connection takes its slot first and then runs the handshake
//!   (`tls.rs`), which must finish within the handshake timeout; the HTTP limits below then
//!   apply to the decrypted stream as to a plain one. On a cluster member with peer TLS a
//!   connection that completed the peer handshake has its requests marked
//!   [`PeerVerified`](super::tls::PeerVerified), which the peer routes require.
//! - **Timeouts.** A request head must arrive within the header-read timeout of its first
//!   byte, and a connection with no request in flight is closed after the idle timeout
//!   (`conn_io.rs` records the activity). Body reads have their own timeout (`limits.rs`).
//! - **Shutdown.** When the shutdown future resolves, the listener is closed at once, every
//!   connection with no request in flight and no answer still being written is closed (a
//!   half-sent request head counts as none), and requests in flight get `shutdown_grace` to
//!   finish before their connections are closed as well. [`run`] returns when every connection is gone, so the caller can
//!   close the store cleanly.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::conn_io::{Activity, ConnIo, Handoff, Wait, linger};
use super::security::Security;
use super::tls::{self, PeerVerified, Refused, Stream};

/// The limits of the connection layer.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
}

/// Connections past the cap being answered at once; further ones are closed unanswered.
const MAX_REFUSING: usize = 256;
/// How long a closing connection may keep sending before it is cut off.
const LINGER: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `shutdown` resolves, then drains and closes every
/// connection (see the module comment).
pub(crate) async fn run<F>(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    security: Arc<Security>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors (or a similar resource) repeats at once: back off.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let (app, limits, stop) = (app.clone(), Arc::clone(&limits), stop_rx.clone());
                let security = Arc::clone(&security);
                tokio::spawn(async move {
                    if let Some((stream, peer)) = secure(tcp, &security, stop.clone()).await {
                        serve_connection(stream, peer, app, &limits, stop).await;
                    }
                    drop(slot);
                });
            }
            Err(_) if security.tls_port() => drop(tcp),
            Err(_) => match Arc::clone(&refusing).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        refuse(tcp).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(tcp),
            },
        }
    }
    drop(listener);
    tracing::info!("no longer accepting connections; draining");
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let wait = limits.shutdown_grace + LINGER + Duration::from_secs(1);
    match tokio::time::timeout(wait, slots.acquire_many(all)).await {
        Ok(_) => tracing::info!("every connection closed"),
        Err(_) => tracing::warn!("connections still open after the shutdown grace"),
    }
    Ok(())
}

/// The connection's stream: `tcp` itself, or on a TLS port the stream of a finished
/// handshake (`None` when it failed, timed out, or shutdown began first), and whether it was
/// a peer's handshake.
async fn secure(
    tcp: TcpStream,
    security: &Security,
    mut stop: watch::Receiver<bool>,
) -> Option<(Stream, bool)> {
    let Some(acceptors) = security.acceptors() else {
        return Some((Stream::Plain(tcp), false));
    };
    let handshake = tls::handshake(acceptors, tcp, security.handshake_timeout());
    let result = tokio::select! {
        r = handshake => r,
        _ = stop.wait_for(|s| *s) => return None,
    };
    match result {
        Ok(stream) => Some(stream),
        Err(Refused::PlainHttp) => {
            tracing::debug!("plain HTTP on the TLS port: told to use TLS");
            None
        }
        Err(Refused::TimedOut) => {
            tracing::debug!("closing a connection whose TLS handshake outlived its timeout");
            None
        }
        Err(Refused::Failed(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Answers a connection past the cap with a 503 and closes it.
async fn refuse(mut tcp: TcpStream) {
    let body = r#"{"error":"too many connections; retry later","detail":"too many connections; retry later"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let until = Instant::now() + Duration::from_secs(1);
    if tokio::time::timeout_at(until, tcp.write_all(answer.as_bytes()))
        .await
        .is_ok()
        && tcp.shutdown().await.is_ok()
    {
        linger(Stream::Plain(tcp), until).await;
    }
}

/// The service of one connection: the router, with each request marked in flight until it
/// is answered (and marked [`PeerVerified`] on a peer's connection).
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    peer: bool,
}

/// Marks a request in flight for as long as it lives (also when the request is dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.request_started();
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        let guard = InFlight::new(&self.activity);
        if self.peer {
            req.extensions_mut().insert(PeerVerified);
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

/// How often an idle connection's deadlines are checked, as a share of the shorter timeout.
fn check_every(limits: &ConnLimits) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(5))
}

/// Runs HTTP/1.1 on one connection until the client leaves, a timeout closes it, or
/// shutdown does.
async fn serve_connection(
    tcp: Stream,
    peer: bool,
    app: Router,
    limits: &ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let handoff: Handoff = Arc::default();
    let io = ConnIo::new(
        tcp,
        Arc::clone(&activity),
        Arc::clone(&handoff),
        limits.max_header_bytes,
    );
    let service = Tracked {
        inner: TowerToHyperService::new(app),
        activity: Arc::clone(&activity),
        peer,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let every = check_every(limits);
    let mut grace_until: Option<Instant> = None;
    if *stop.borrow() {
        return;
    }
    loop {
        let check_at = Instant::now() + every;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(check_at) => {
                let overdue = match activity.wait() {
                    Wait::Busy => None,
                    Wait::Head(t) => (t.elapsed() >= limits.header_read_timeout)
                        .then_some("request head not received within the header-read timeout"),
                    Wait::Idle(t) => (t.elapsed() >= limits.idle_timeout)
                        .then_some("connection idle past the idle timeout"),
                };
                if let Some(why) = overdue {
                    tracing::debug!(why, "closing a connection");
                    return;
                }
                if grace_until.is_some() && activity.quiet() {
                    return;
                }
            }
            _ = stop.changed(), if grace_until.is_none() => {
                conn.as_mut().graceful_shutdown();
                if activity.quiet() {
                    // idle, or a half-sent request: nothing to finish
                    return;
                }
                grace_until = Some(Instant::now() + limits.shutdown_grace);
            }
            () = tokio::time::sleep_until(grace_until.unwrap_or(check_at)), if grace_until.is_some() => {
                tracing::info!("closing a connection whose request outlived the shutdown grace");
                return;
            }
        }
    }
    let stream = handoff.lock().take();
    if let Some(stream) = stream {
        let until = match grace_until {
            Some(g) => g.min(Instant::now() + LINGER),
            None => Instant::now() + LINGER,
        };
        linger(stream, until).await;
    }
}
