//! Starting and stopping a proxy from a validated configuration.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::config::Config;
use crate::error::Error;
use crate::runtime::Snapshot;

/// A running proxy: its listeners, the snapshot they serve and, with
/// `nbthread` > 1, its extra worker threads.
pub struct Running {
    addrs: Vec<(String, SocketAddr)>,
    snapshot: Arc<Snapshot>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
    grace_ms: Arc<AtomicU64>,
}

/// Binds every frontend's listeners and serves them on the caller's tokio
/// runtime. Ports given as `0` get a free port; [`Running::local_addr`]
/// tells which.
pub async fn start(config: Config) -> Result<Running, Error> {
    start_threads(config, 1).await
}

/// Like [`start`], with `threads` workers in HAProxy's model: the caller's
/// runtime is worker 0, and each extra worker is an OS thread running its
/// own single-threaded tokio runtime with its own `SO_REUSEPORT` socket per
/// `bind` line (the kernel spreads connections across them). A connection
/// stays on the thread that accepted it. Call this from a current-thread
/// runtime for the best per-core efficiency.
pub async fn start_threads(config: Config, threads: usize) -> Result<Running, Error> {
    let threads = threads.max(1);
    let snapshot = Arc::new(Snapshot::build(&config)?);
    let (shutdown, rx) = watch::channel(false);
    let grace_ms = Arc::new(AtomicU64::new(10_000));
    let mut tasks = JoinSet::new();
    let mut addrs = Vec::new();
    // Sockets per worker: [worker][i] = (listener, frontend, bind line).
    let mut per_worker: Vec<Vec<Listening>> = (0..threads).map(|_| Vec::new()).collect();
    for fe in &snapshot.frontends {
        for bind in &fe.binds {
            let bind_err = |source| Error::Bind {
                frontend: fe.name.clone(),
                addr: bind.addr,
                source,
            };
            let first = crate::listener::bind(bind.addr, threads > 1).map_err(bind_err)?;
            // Port 0: the other workers bind the port the first one got.
            let local = first.local_addr().map_err(bind_err)?;
            tracing::info!(frontend = %fe.name, addr = %local, "listening");
            addrs.push((fe.name.clone(), local));
            per_worker[0].push((first, fe.clone(), bind.clone()));
            for w in per_worker.iter_mut().skip(1) {
                let l = crate::listener::bind(local, true).map_err(bind_err)?;
                w.push((l, fe.clone(), bind.clone()));
            }
        }
    }
    let mut workers = per_worker.into_iter();
    for (listener, fe, bind) in workers.next().unwrap_or_default() {
        tasks.spawn(crate::listener::accept_loop(
            listener,
            fe,
            bind,
            snapshot.global_conns.clone(),
            rx.clone(),
        ));
    }
    let mut handles = Vec::new();
    for (i, listeners) in workers.enumerate() {
        let rx = rx.clone();
        let global = snapshot.global_conns.clone();
        let grace = grace_ms.clone();
        let h = std::thread::Builder::new()
            .name(format!("weir-worker-{}", i + 1))
            .spawn(move || worker(listeners, global, rx, grace))
            .map_err(|e| Error::Other(format!("cannot start worker thread: {e}")))?;
        handles.push(h);
    }
    crate::health::spawn(&snapshot, &mut tasks, &rx);
    Ok(Running {
        addrs,
        snapshot,
        shutdown,
        tasks,
        threads: handles,
        grace_ms,
    })
}

type Listening = (
    std::net::TcpListener,
    Arc<crate::runtime::Frontend>,
    crate::config::Bind,
);

/// One extra worker thread: a current-thread runtime serving its sockets
/// until shutdown, then letting its connections drain.
fn worker(
    listeners: Vec<Listening>,
    global: Option<Arc<tokio::sync::Semaphore>>,
    mut rx: watch::Receiver<bool>,
    grace_ms: Arc<AtomicU64>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        let mut set = JoinSet::new();
        for (listener, fe, bind) in listeners {
            set.spawn(crate::listener::accept_loop(
                listener,
                fe,
                bind,
                global.clone(),
                rx.clone(),
            ));
        }
        stopping(&mut rx).await;
        let grace = Duration::from_millis(grace_ms.load(Ordering::Relaxed));
        drain(grace).await;
    });
}

/// Waits, up to `grace`, until no client connection is left open.
async fn drain(grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while crate::listener::active_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    /// for HTTP/2), and waits up to `grace` for open connections to end.
    pub async fn shutdown(mut self, grace: Duration) {
        self.grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        drain(grace).await;
        self.tasks.abort_all();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Resolves once shutdown has been asked for (or the proxy is gone).
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}
