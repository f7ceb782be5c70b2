//! Loopback TCP proxies that carry the Raft traffic, one in front of each node, with a
//! fault table per directed link: up, delayed, dropped (connections reset) or black-holed
//! (bytes vanish, connections hang). Every member's Raft address is its proxy, so every
//! RPC and read-index request between nodes crosses one.
//!
//! A proxy learns which node dialed it from the kernel: the connecting socket's inode in
//! `/proc/net/tcp`, found among the open files of the node processes the harness started.
//! A connection from anyone else (a client) is never faulted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The state of one directed link: bytes sent by `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Delivered.
    Up,
    /// Delivered after this long.
    Delay(Duration),
    /// Connections carrying it are reset; new ones are refused.
    Drop,
    /// Lost without a trace: connections hang until the link heals, then close.
    Blackhole,
}

/// The fault table and the node processes' PIDs, shared by every proxy.
#[derive(Debug, Default)]
pub struct Net {
    links: Mutex<HashMap<(usize, usize), Link>>,
    pids: Mutex<Vec<Option<u32>>>,
}

impl Net {
    /// A table for `n` nodes, every link up.
    pub fn new(n: usize) -> Arc<Net> {
        Arc::new(Net {
            links: Mutex::new(HashMap::new()),
            pids: Mutex::new(vec![None; n]),
        })
    }

    /// Sets the link `from -> to`.
    pub fn set(&self, from: usize, to: usize, link: Link) {
        self.links.lock().insert((from, to), link);
    }

    /// Every link up.
    pub fn heal(&self) {
        self.links.lock().clear();
    }

    /// The link `from -> to`.
    pub fn link(&self, from: usize, to: usize) -> Link {
        self.links
            .lock()
            .get(&(from, to))
            .copied()
            .unwrap_or(Link::Up)
    }

    /// Records node `i`'s process (or its absence).
    pub fn set_pid(&self, i: usize, pid: Option<u32>) {
        self.pids.lock()[i] = pid;
    }

    fn pids(&self) -> Vec<(usize, u32)> {
        self.pids
            .lock()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i, p)))
            .collect()
    }
}

/// The inode of the loopback socket bound to `local` and connected to `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (want_l, want_r) = (format!(":{local:04X}"), format!(":{remote:04X}"));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 && f[1].ends_with(&want_l) && f[2].ends_with(&want_r) {
            f[9].parse().ok()
        } else {
            None
        }
    })
}

/// Which of the node processes holds the socket that dialed `proxy_port` from `peer_port`.
fn dialer(net: &Net, peer_port: u16, proxy_port: u16) -> Option<usize> {
    let inode = socket_inode(peer_port, proxy_port)?;
    let target = format!("socket:[{inode}]");
    for (i, pid) in net.pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return Some(i);
            }
        }
    }
    None
}

/// Starts the proxy in front of node `to`, forwarding to `127.0.0.1:upstream`. Returns its
/// port; it runs until the runtime stops.
pub async fn start(net: Arc<Net>, to: usize, upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("proxy addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((inbound, peer)) = listener.accept().await else {
                continue;
            };
            let net = Arc::clone(&net);
            tokio::spawn(async move {
                let from = dialer(&net, peer.port(), port);
                serve(net, from, to, inbound, upstream).await;
            });
        }
    });
    port
}

const TICK: Duration = Duration::from_millis(50);

async fn serve(net: Arc<Net>, from: Option<usize>, to: usize, inbound: TcpStream, upstream: u16) {
    let Some(from) = from else {
        // Not a node: pass through untouched.
        if let Ok(out) = TcpStream::connect(("127.0.0.1", upstream)).await {
            let (mut a, mut b) = (inbound, out);
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        }
        return;
    };
    match net.link(from, to) {
        Link::Drop => return,
        Link::Blackhole => {
            while net.link(from, to) == Link::Blackhole {
                tokio::time::sleep(TICK).await;
            }
            return;
        }
        _ => {}
    }
    let Ok(out) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = out.set_nodelay(true);
    let (ar, aw) = inbound.into_split();
    let (br, bw) = out.into_split();
    let poisoned = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let up = tokio::spawn(pump(
        Arc::clone(&net),
        (from, to),
        ar,
        bw,
        Arc::clone(&poisoned),
        Arc::clone(&closed),
    ));
    let down = tokio::spawn(pump(net, (to, from), br, aw, poisoned, closed));
    let _ = up.await;
    let _ = down.await;
}

/// Copies one direction of a connection, applying the link's state to every chunk. Once a
/// chunk has been lost the stream is broken: the connection is held silent until both
/// links are up again, then closed.
async fn pump(
    net: Arc<Net>,
    (from, to): (usize, usize),
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    poisoned: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if closed.load(Ordering::Relaxed) {
            return;
        }
        let link = net.link(from, to);
        if poisoned.load(Ordering::Relaxed) {
            if link == Link::Up && net.link(to, from) == Link::Up {
                closed.store(true, Ordering::Relaxed);
                return;
            }
        } else if link == Link::Drop {
            closed.store(true, Ordering::Relaxed);
            return;
        }
        let n = match tokio::time::timeout(TICK, r.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed.store(true, Ordering::Relaxed);
                return;
            }
            Ok(Ok(n)) => n,
        };
        if poisoned.load(Ordering::Relaxed) {
            continue;
        }
        match net.link(from, to) {
            Link::Up => {}
            Link::Delay(d) => tokio::time::sleep(d).await,
            Link::Drop => {
                closed.store(true, Ordering::Relaxed);
                return;
            }
            Link::Blackhole => {
                poisoned.store(true, Ordering::Relaxed);
                continue;
            }
        }
        if w.write_all(&buf[..n]).await.is_err() {
            closed.store(true, Ordering::Relaxed);
            return;
        }
    }
}
