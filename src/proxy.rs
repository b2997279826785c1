//! Starting and stopping a proxy from a validated configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::config::Config;
use crate::error::Error;
use crate::runtime::Snapshot;

/// A running proxy: its listeners and the snapshot they serve.
pub struct Running {
    addrs: Vec<(String, SocketAddr)>,
    snapshot: Arc<Snapshot>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Binds every frontend's listeners and starts serving. Ports given as `0`
/// get a free port; [`Running::local_addr`] tells which.
pub async fn start(config: Config) -> Result<Running, Error> {
    let snapshot = Arc::new(Snapshot::build(&config)?);
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut addrs = Vec::new();
    for f in &config.frontends {
        if f.options.httplog {
            tracing::warn!(
                frontend = %f.name,
                "'option httplog' lines are not written yet: no HTTP request will be logged"
            );
        }
    }
    for fe in &snapshot.frontends {
        for bind in &fe.binds {
            let listener = crate::listener::bind(bind.addr).map_err(|source| Error::Bind {
                frontend: fe.name.clone(),
                addr: bind.addr,
                source,
            })?;
            let local = listener.local_addr().map_err(|source| Error::Bind {
                frontend: fe.name.clone(),
                addr: bind.addr,
                source,
            })?;
            tracing::info!(frontend = %fe.name, addr = %local, "listening");
            addrs.push((fe.name.clone(), local));
            tasks.spawn(crate::listener::accept_loop(
                listener,
                fe.clone(),
                bind.proto,
                snapshot.global_conns.clone(),
                rx.clone(),
            ));
        }
    }
    Ok(Running {
        addrs,
        snapshot,
        shutdown,
        tasks,
    })
}

impl Running {
    /// The first bound address of frontend `name`.
    pub fn local_addr(&self, frontend: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == frontend)
            .map(|(_, a)| *a)
    }

    /// Every bound address, with its frontend's name.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The live backend `name` (server state and counters).
    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        self.snapshot.backend(name).cloned()
    }

    /// Stops accepting, asks every connection to finish gracefully (GOAWAY
    /// for HTTP/2) and waits up to `grace` for the listeners to stop.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// Resolves once shutdown has been asked for (or the proxy is gone).
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}
