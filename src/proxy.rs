//! Starting, reloading and stopping a proxy.
//!
//! A running proxy serves one *generation* at a time: a compiled
//! [`Snapshot`], the accept loops serving it and its health-check tasks, all
//! watching the generation's stop signal. [`Running::reload`] builds the
//! next generation from a new configuration, starts it on the same
//! listening sockets (a `bind` whose address is unchanged keeps its socket,
//! so no connection is refused), then stops the old one's accept loops.
//! Client connections stay open: they take the frontend for each new
//! request from a [`FrontendSlot`], which the reload points at the new
//! frontend of the same name, so in-flight calls finish on the old snapshot
//! and new calls use the new one. Servers whose settings did not change
//! are carried over (health state, counters, pooled upstream connections).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::config::{Bind, Config};
use crate::error::Error;
use crate::runtime::{Frontend, FrontendSlot, Snapshot};

/// One listening socket per worker for one bound address.
struct Sockets {
    /// The address as configured (port 0 is never reused across reloads).
    configured: SocketAddr,
    /// The address actually bound.
    local: SocketAddr,
    per_worker: Vec<std::net::TcpListener>,
}

/// What one worker serves: its socket, the frontend and bind line, the
/// generation's stop signal (accept loops) and what connections watch.
type Listening = (
    std::net::TcpListener,
    Arc<Frontend>,
    Bind,
    watch::Receiver<bool>,
    crate::listener::ConnCtl,
);

/// An extra worker thread and the channel that hands it accept loops.
struct Worker {
    serve: mpsc::UnboundedSender<(Vec<Listening>, Option<Arc<tokio::sync::Semaphore>>)>,
    thread: std::thread::JoinHandle<()>,
}

/// A running proxy: its listeners, the snapshot they serve and, with
/// `nbthread` > 1, its extra worker threads.
pub struct Running {
    addrs: Vec<(String, SocketAddr)>,
    snapshot: Arc<Snapshot>,
    /// Stop signal of the current generation.
    generation: watch::Sender<bool>,
    /// Connections stop on this one (shutdown), not on a generation's.
    conns_stop: watch::Sender<bool>,
    /// Per frontend name: the frontend its connections' requests use.
    slots: Vec<(String, Arc<FrontendSlot>)>,
    sockets: Vec<Sockets>,
    threads: usize,
    workers: Vec<Worker>,
    tasks: JoinSet<()>,
    grace_ms: Arc<AtomicU64>,
    /// `busy-polling`: every worker runtime's [`busy_poll`] task follows it.
    busy: watch::Sender<bool>,
    /// Worker 0's [`busy_poll`] task (apart from `tasks`, whose end
    /// shutdown waits for; dropping the set ends it).
    busy_task: JoinSet<()>,
    reloads: u64,
}

/// Binds every frontend's listeners and serves them on the caller's tokio
/// runtime. Ports given as `0` get a free port; [`Running::local_addr`]
/// tells which.
pub async fn start(config: Config) -> Result<Running, Error> {
    start_threads(config, 1).await
}

/// Settings that are process-wide rather than per snapshot; connections
/// opened from now on follow them.
fn apply_process_wide(config: &Config) {
    // `tune.h2.hpack-encoding`: h2 reads it when a connection is created.
    h2::set_hpack_dynamic_indexing(config.global.hpack_indexed);
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
    apply_process_wide(&config);
    let sockets = bind_all(&snapshot, threads, &[])?;
    let grace_ms = Arc::new(AtomicU64::new(10_000));
    let (busy, _) = watch::channel(config.global.busy_polling);
    let mut workers = Vec::new();
    for i in 1..threads {
        let (tx, rx) = mpsc::unbounded_channel();
        let grace = grace_ms.clone();
        let busy = busy.subscribe();
        let thread = std::thread::Builder::new()
            .name(format!("weir-worker-{i}"))
            .spawn(move || worker(rx, grace, busy))
            .map_err(|e| Error::Other(format!("cannot start worker thread: {e}")))?;
        workers.push(Worker { serve: tx, thread });
    }
    let (generation, _) = watch::channel(false);
    let mut running = Running {
        addrs: Vec::new(),
        snapshot: snapshot.clone(),
        generation,
        conns_stop: watch::channel(false).0,
        slots: Vec::new(),
        sockets: Vec::new(),
        threads,
        workers,
        tasks: JoinSet::new(),
        grace_ms,
        busy_task: JoinSet::new(),
        busy,
        reloads: 0,
    };
    // Worker 0 is the caller's runtime.
    running.busy_task.spawn(busy_poll(running.busy.subscribe()));
    running.serve(snapshot, sockets)?;
    Ok(running)
}

/// Binds the sockets `snapshot` needs, reusing those of `keep` whose
/// configured address (with a real port) is unchanged.
fn bind_all(snapshot: &Snapshot, threads: usize, keep: &[Sockets]) -> Result<Vec<Sockets>, Error> {
    let mut out: Vec<Sockets> = Vec::new();
    for fe in &snapshot.frontends {
        for bind in &fe.binds {
            let bind_err = |source| Error::Bind {
                frontend: fe.name.clone(),
                addr: bind.addr,
                source,
            };
            let reusable = bind.addr.port() != 0 && !out.iter().any(|s| s.configured == bind.addr);
            if let Some(old) = keep.iter().find(|s| reusable && s.configured == bind.addr) {
                let per_worker = old
                    .per_worker
                    .iter()
                    .map(|l| l.try_clone())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bind_err)?;
                out.push(Sockets {
                    configured: old.configured,
                    local: old.local,
                    per_worker,
                });
                continue;
            }
            let first = crate::listener::bind(bind.addr, threads > 1).map_err(bind_err)?;
            // Port 0: the other workers bind the port the first one got.
            let local = first.local_addr().map_err(bind_err)?;
            let mut per_worker = vec![first];
            for _ in 1..threads {
                per_worker.push(crate::listener::bind(local, true).map_err(bind_err)?);
            }
            out.push(Sockets {
                configured: bind.addr,
                local,
                per_worker,
            });
        }
    }
    Ok(out)
}

impl Running {
    /// Starts a generation serving `snapshot` on `sockets` (in the order
    /// [`bind_all`] made them), then stops the previous one.
    fn serve(&mut self, snapshot: Arc<Snapshot>, sockets: Vec<Sockets>) -> Result<(), Error> {
        let (generation, rx) = watch::channel(false);
        // Frontend slots: same name and mode -> the old connections' calls
        // now use the new frontend; gone or changed -> retired (GOAWAY).
        let mut slots: Vec<(String, Arc<FrontendSlot>)> = Vec::new();
        for fe in &snapshot.frontends {
            let kept = self
                .slots
                .iter()
                .position(|(name, slot)| *name == fe.name && slot.current().mode == fe.mode);
            let slot = match kept {
                Some(i) => {
                    let (_, slot) = self.slots.swap_remove(i);
                    slot.replace(fe.clone());
                    slot
                }
                None => FrontendSlot::new(fe.clone()),
            };
            slots.push((fe.name.clone(), slot));
        }
        for (_, old) in self.slots.drain(..) {
            old.retire();
        }
        let conns_stop = self.conns_stop.subscribe();
        let mut per_worker: Vec<Vec<Listening>> = (0..self.threads).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        let mut next = sockets.iter();
        for fe in &snapshot.frontends {
            for bind in &fe.binds {
                let Some(s) = next.next() else {
                    return Err(Error::Other("internal: socket list out of step".into()));
                };
                addrs.push((fe.name.clone(), s.local));
                let slot = slots
                    .iter()
                    .find(|(n, _)| *n == fe.name)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| FrontendSlot::new(fe.clone()));
                for (w, l) in s.per_worker.iter().enumerate() {
                    let l = l.try_clone().map_err(|source| Error::Bind {
                        frontend: fe.name.clone(),
                        addr: bind.addr,
                        source,
                    })?;
                    let ctl = crate::listener::ConnCtl {
                        slot: slot.clone(),
                        stop: conns_stop.clone(),
                        track: None,
                    };
                    per_worker[w].push((l, fe.clone(), bind.clone(), rx.clone(), ctl));
                }
            }
        }
        for (l, fe, bind, stop, ctl) in per_worker.remove(0) {
            if tracing::enabled!(tracing::Level::INFO) {
                if let Ok(a) = l.local_addr() {
                    tracing::info!(frontend = %fe.name, addr = %a, "listening");
                }
            }
            self.tasks.spawn(crate::listener::accept_loop(
                l,
                fe,
                bind,
                snapshot.global_conns.clone(),
                stop,
                ctl,
            ));
        }
        for (w, listeners) in self.workers.iter().zip(per_worker) {
            if w.serve
                .send((listeners, snapshot.global_conns.clone()))
                .is_err()
            {
                tracing::error!(
                    "a worker thread is gone; its share of the listeners is not served"
                );
            }
        }
        crate::health::spawn(&snapshot, &mut self.tasks, &rx);
        snapshot.stats.publish(&snapshot);
        self.tasks.spawn(crate::observe::stats::tick_every_second(
            snapshot.stats.clone(),
            rx.clone(),
        ));
        // The new generation accepts on the same sockets; now the old one
        // stops accepting. Its connections stay: their next calls use the
        // new frontend through the slots; calls in flight finish as they are.
        let old = std::mem::replace(&mut self.generation, generation);
        let _ = old.send(true);
        self.slots = slots;
        self.snapshot = snapshot;
        self.sockets = sockets;
        self.addrs = addrs;
        Ok(())
    }

    /// Swaps in a new configuration: listeners whose address is unchanged
    /// keep their sockets (no connection is refused), in-flight calls finish
    /// on the old configuration, new connections get the new one, and
    /// servers whose settings did not change keep their health state and
    /// connections. On error nothing changes and the old configuration keeps
    /// running.
    pub async fn reload(&mut self, config: Config) -> Result<(), Error> {
        let snapshot = Arc::new(Snapshot::build_from(&config, Some(&self.snapshot))?);
        let sockets = bind_all(&snapshot, self.threads, &self.sockets)?;
        self.serve(snapshot, sockets)?;
        apply_process_wide(&config);
        self.busy.send_replace(config.global.busy_polling);
        self.reloads += 1;
        self.snapshot
            .stats
            .reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Reloads done since start.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

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

    /// The live stick table of backend `name`, if it has one.
    pub fn table(&self, name: &str) -> Option<Arc<crate::stick::Table>> {
        self.snapshot.table(name).cloned()
    }

    /// The counters of every frontend, backend and server.
    pub fn stats(&self) -> Arc<crate::observe::stats::Stats> {
        self.snapshot.stats.clone()
    }

    /// Stops accepting, asks every connection to finish gracefully (GOAWAY
    /// for HTTP/2), and waits up to `grace` for open connections to end.
    pub async fn shutdown(mut self, grace: Duration) {
        self.grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
        // As HAProxy on a soft stop: connections that drain do not need a
        // spinning poller, and it would take CPU from a new process.
        self.busy.send_replace(false);
        let _ = self.generation.send(true);
        let _ = self.conns_stop.send(true);
        self.sockets.clear();
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        drain(grace).await;
        if crate::listener::active_connections() > 0 {
            // `hard-stop-after` is over: gRPC calls still open end with
            // UNAVAILABLE "server shutting down" trailers, not a reset.
            tracing::warn!(
                connections = crate::listener::active_connections(),
                "hard stop: ending the calls still open"
            );
            self.snapshot.hard_stop.stop();
            drain(HARD_STOP_FLUSH).await;
        }
        self.tasks.abort_all();
        self.busy_task.abort_all();
        let threads: Vec<_> = self
            .workers
            .drain(..)
            .map(|w| {
                drop(w.serve);
                w.thread
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// One extra worker thread: a current-thread runtime serving the accept
/// loops it is handed (one batch per generation) until its channel closes,
/// then letting its connections drain.
fn worker(
    mut serve: mpsc::UnboundedReceiver<(Vec<Listening>, Option<Arc<tokio::sync::Semaphore>>)>,
    grace_ms: Arc<AtomicU64>,
    busy: watch::Receiver<bool>,
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
        tokio::spawn(busy_poll(busy));
        while let Some((listeners, global)) = serve.recv().await {
            for (listener, fe, bind, stop, ctl) in listeners {
                set.spawn(crate::listener::accept_loop(
                    listener,
                    fe,
                    bind,
                    global.clone(),
                    stop,
                    ctl,
                ));
            }
            // Reap loops of stopped generations.
            while set.try_join_next().is_some() {}
        }
        let grace = Duration::from_millis(grace_ms.load(Ordering::Relaxed));
        drain(grace).await;
    });
}

/// `busy-polling`: while `on` says so, keeps this thread's runtime from
/// ever sleeping in `epoll_wait`. The task yields in a loop; a
/// current-thread tokio runtime with a yielded task polls its I/O driver
/// with a zero timeout before running it again, so the thread spins on the
/// poller and a socket event is seen without the wake-up latency of an
/// idle CPU (large in virtual machines). The thread then uses all of its
/// CPU whether or not there is traffic. Off, the task waits for the next
/// change and costs nothing. Shutdown turns it off first. Ends when `on`'s
/// sender is gone while off; otherwise with its runtime.
async fn busy_poll(mut on: watch::Receiver<bool>) {
    loop {
        if *on.borrow_and_update() {
            tokio::task::yield_now().await;
        } else if on.changed().await.is_err() {
            return;
        }
    }
}

/// After a hard stop, how long the trailers of the calls still open get to
/// reach their clients.
const HARD_STOP_FLUSH: Duration = Duration::from_millis(500);

/// Waits, up to `grace`, until no client connection is left open.
async fn drain(grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while crate::listener::active_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves once shutdown has been asked for (or the proxy is gone).
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}
