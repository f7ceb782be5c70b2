//! The body of a cluster node run as a process of its own by the multi-process tests: the
//! test binary starts itself again on an ignored test that calls [`serve_from_env`], with
//! the node's settings in the environment variables below.
//!
//! A node's client port is reserved by the test for the whole run ([`HeldPort`]), not
//! picked free and released: a port released between the pick and the node's bind, or
//! while a killed node is down, can be taken by a node of another test running in the same
//! binary, whose clients then talk to the wrong cluster.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use strata::server::{self, AppState, ClusterConfig, ServerConfig};

/// The node's name.
pub const ENV_NAME: &str = "STRATA_TEST_NODE_NAME";
/// The port it serves on (127.0.0.1).
pub const ENV_PORT: &str = "STRATA_TEST_NODE_PORT";
/// Its data directory.
pub const ENV_DIR: &str = "STRATA_TEST_NODE_DIR";
/// `--peers`.
pub const ENV_PEERS: &str = "STRATA_TEST_NODE_PEERS";
/// Optional: the address peers reach it at, if not its own port.
pub const ENV_ADVERTISE: &str = "STRATA_TEST_NODE_ADVERTISE";
/// Optional: `--join` URL.
pub const ENV_JOIN: &str = "STRATA_TEST_NODE_JOIN";
/// Optional: the request timeout in milliseconds.
pub const ENV_REQUEST_TIMEOUT_MS: &str = "STRATA_TEST_NODE_REQUEST_TIMEOUT_MS";

/// A loopback port kept bound by the test for as long as the value lives: no other socket
/// gets it, from an explicit bind or a pick of a free port, yet the node processes started
/// on it can listen there, again after each restart ([`listen_on`]).
///
/// The socket has `SO_REUSEPORT` and never listens, so connections reach only the node; it
/// has no `SO_REUSEADDR`, which would let any socket with that option bind beside it.
#[derive(Debug)]
pub struct HeldPort {
    socket: tokio::net::TcpSocket,
    port: u16,
}

impl HeldPort {
    /// Reserves a free loopback port.
    pub fn new() -> HeldPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind a free port");
        let port = socket.local_addr().expect("held port").port();
        HeldPort { socket, port }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Listens on `port`, which a [`HeldPort`] of the test reserves (must run in a runtime).
/// `SO_REUSEADDR` lets a restarted node bind beside the connections of the killed one that
/// linger in `TIME_WAIT`.
pub fn listen_on(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(1024)
}

/// Runs the node the environment describes until SIGTERM (or SIGKILL); does nothing when
/// the environment describes none (a plain test run).
pub fn serve_from_env() {
    let (Ok(name), Ok(port), Ok(dir), Ok(peers)) = (
        std::env::var(ENV_NAME),
        std::env::var(ENV_PORT),
        std::env::var(ENV_DIR),
        std::env::var(ENV_PEERS),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut config = ServerConfig::default();
        config.node_id = name;
        config.port = port.parse().unwrap();
        config.data_dir = PathBuf::from(dir);
        if let Ok(ms) = std::env::var(ENV_REQUEST_TIMEOUT_MS) {
            config.request_timeout = Duration::from_millis(ms.parse().unwrap());
        }
        let mut cluster = ClusterConfig::new(ClusterConfig::parse_peers(&peers).unwrap());
        cluster.advertise = std::env::var(ENV_ADVERTISE).ok();
        cluster.join = std::env::var(ENV_JOIN).ok();
        let listener = listen_on(config.port).unwrap();
        let state = AppState::start_cluster(config, &cluster).await.unwrap();
        server::serve(listener, state.clone(), server::shutdown_signal())
            .await
            .unwrap();
        state.shutdown().await.unwrap();
    });
}
