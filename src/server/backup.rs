//! `GET /admin/backup`: streams a consistent backup of the live store.
//!
//! The handler takes a checkpoint ([`crate::Db::checkpoint`]) next to the data directory,
//! then a dedicated thread writes it as a backup archive ([`crate::backup`]) into a bounded
//! channel that the response body drains, and deletes the checkpoint when done. Writes
//! continue throughout. One backup runs at a time per store (a second gets 409). A client
//! that stops reading for a minute ends the stream, so a stalled download cannot hold the
//! thread or the checkpoint; a truncated archive lacks its end record and is refused by
//! `strata backup` and `strata restore`. The answer carries the archive's seqno in the
//! `x-strata-seqno` header.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::error::{Api, ApiError};
use super::state::AppState;

/// Chunks the response buffers at most (each up to `CHUNK` bytes).
const QUEUE: usize = 8;
const CHUNK: usize = 256 * 1024;
/// A client that reads nothing for this long loses the stream.
const STALL: Duration = Duration::from_secs(60);

/// Data directories with a backup running.
static RUNNING: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Marks a store's backup as running until dropped.
struct Running(PathBuf);

impl Running {
    fn start(dir: &Path) -> Option<Running> {
        let mut set = RUNNING.lock();
        set.get_or_insert_with(HashSet::new)
            .insert(dir.to_path_buf())
            .then(|| Running(dir.to_path_buf()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(set) = RUNNING.lock().as_mut() {
            set.remove(&self.0);
        }
    }
}

/// `GET /admin/backup`.
pub(super) async fn backup(State(state): State<AppState>) -> Result<Response, ApiError> {
    let data_dir = state.config().data_dir.clone();
    let running = Running::start(&data_dir).ok_or_else(|| {
        ApiError::new(
            Api::Any,
            StatusCode::CONFLICT,
            "a backup of this store is already running",
        )
    })?;
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let checkpoint_dir = data_dir.with_file_name(format!(
        "{name}.backup-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let db = state.db().clone();
    let dir = checkpoint_dir.clone();
    let cp = tokio::task::spawn_blocking(move || db.checkpoint(&dir))
        .await
        .map_err(|_| ApiError::internal(Api::Any, "the checkpoint failed on a store thread"))?
        .map_err(|e| ApiError::store(Api::Any, &e))?;
    let seqno = cp.seqno.get();
    let fs = std::sync::Arc::clone(&state.db().config().fs);
    let (tx, rx) = mpsc::channel(QUEUE);
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("strata-backup".into())
        .spawn(move || {
            let _running = running;
            let mut out = ChannelWriter {
                tx,
                runtime,
                buf: Vec::with_capacity(CHUNK),
            };
            let written =
                crate::backup::write_archive(&*fs, &cp.dir, seqno, &mut out, &mut |_, _| {});
            match written {
                Ok(s) => tracing::info!(seqno, files = s.files, bytes = s.bytes, "backup streamed"),
                Err(e) => {
                    tracing::warn!(error = %e, "backup stream ended early");
                    let _ = out.send(Err(io::Error::other(e.to_string())));
                }
            }
            remove_checkpoint(&*fs, &cp.dir);
        });
    if let Err(e) = spawned {
        remove_checkpoint(&*state.db().config().fs, &checkpoint_dir);
        return Err(ApiError::internal(
            Api::Any,
            format!("no backup thread: {e}"),
        ));
    }
    let mut r = Body::new(ChannelBody { rx }).into_response();
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&seqno.to_string()) {
        headers.insert("x-strata-seqno", v);
    }
    Ok(r)
}

/// Deletes a streamed checkpoint: its files, then the directory.
fn remove_checkpoint(fs: &dyn crate::FileSystem, dir: &Path) {
    if let Ok(names) = fs.list(dir) {
        for n in names {
            let _ = fs.remove_file(&dir.join(n));
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a backup checkpoint");
    }
}

/// Hands written bytes to the response in chunks, waiting (up to [`STALL`]) for room.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&self, item: io::Result<Bytes>) -> io::Result<()> {
        self.runtime
            .block_on(self.tx.send_timeout(item, STALL))
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => {
                    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")
                }
                mpsc::error::SendTimeoutError::Closed(_) => {
                    io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
                }
            })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.send(Ok(chunk))
    }
}

/// The response body: whatever the writer thread sends.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(http_body::Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
