//! The body of a cluster node run as a process of its own by the multi-process tests: the
//! test binary starts itself again on an ignored test that calls [`serve_from_env`], with
//! the node's settings in the environment variables below.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

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
        let listener = server::bind(&config).await.unwrap();
        let state = AppState::start_cluster(config, &cluster).await.unwrap();
        server::serve(listener, state.clone(), server::shutdown_signal())
            .await
            .unwrap();
        state.shutdown().await.unwrap();
    });
}
