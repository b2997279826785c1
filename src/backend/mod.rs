//! Backends at run time: the server list, the balancer, the wait queue for
//! calls that find every usable server at `maxconn`, and upstream pools.
//!
//! # The wait queue
//!
//! A call that finds every eligible server at `maxconn` waits in the
//! backend's queue. Waiters are ordered by (deadline, arrival): calls with a
//! gRPC deadline first, earliest deadline first, then calls without one in
//! arrival order. Slots are handed out by [`Backend::dispatch`], under the
//! queue's lock: it picks a server for the first waiter, gives it the slot
//! and wakes that one task only (no thundering herd), and goes on while
//! servers have room. It runs when a slot is freed ([`Slot`]'s drop) and
//! when a call joins the queue.
//!
//! A waiter whose future is dropped (client gone, deadline, `timeout
//! queue`) leaves the queue; a slot it was given but did not take yet is
//! dropped, which dispatches it to the next waiter: slots are never lost.
//!
//! The fast path takes no lock and allocates nothing: while the queue is
//! empty a call picks a server with atomics alone. While calls wait, new
//! calls join the queue (so they cannot overtake earlier deadlines).

pub mod balance;
pub mod h1pool;
pub mod pool;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{self, Mode, Timeouts};
use crate::error::{ErrorKind, ProxyError};
use balance::{Balancer, PickCtx};
pub use server::{CallResult, Server, UpstreamProto};

pub struct Backend {
    pub name: String,
    pub mode: Mode,
    /// Every server, in file order (active and backup).
    pub servers: Vec<Arc<Server>>,
    /// Non-`backup` servers: the ones the balancer walks.
    active: Vec<Arc<Server>>,
    /// `backup` servers, in file order: the first usable one takes the
    /// traffic when no active server is up.
    backups: Vec<Arc<Server>>,
    pub timeouts: Timeouts,
    /// What health checks of this backend's servers do.
    pub check: config::HealthCheck,
    /// `http-request` rules of the backend section.
    pub http_request: Vec<config::Rule<config::ReqAction>>,
    /// `http-response` rules of the backend section.
    pub http_response: Vec<config::Rule<config::ResAction>>,
    /// `option forwardfor` on the backend.
    pub forwardfor: Option<config::ForwardFor>,
    /// `retries`, `retry-on`, `option redispatch`, `retry-buffer`.
    pub retry: crate::http::retry::Policy,
    /// Bounds retries to a share of the backend's calls ([`Backend::try_retry`]).
    retry_budget: crate::http::retry::RetryBudget,
    balancer: Box<dyn Balancer>,
    /// `balance ewma`: each call's time to response head feeds its server's
    /// latency estimate. Other algorithms skip it (two clock reads, an
    /// `exp` and an atomic update on the server per call).
    pub observes_latency: bool,
    /// Calls waiting for a slot, in (deadline, arrival) order.
    queue: Mutex<WaitQueue>,
    /// `queue.waiting.len()`, readable without the lock (the fast path).
    queued: AtomicUsize,
    /// How many calls may wait (`maxqueue`); `None`: no limit.
    pub maxqueue: Option<usize>,
    /// This backend's counters and gRPC method table (kept across reloads).
    pub stats: Arc<crate::observe::stats::BackendStats>,
    /// What `source`, `uri` and `hdr()` hash, and how (`hash-type`).
    key: BalanceKey,
    hash_type: config::HashType,
    /// `option allbackups`
    allbackups: bool,
    /// `option splice-*` (mode tcp, added to the frontend's).
    pub splice: crate::config::Splice,
}

/// The key a hashing algorithm balances on.
#[derive(Clone, Debug)]
enum BalanceKey {
    None,
    Source,
    Uri {
        whole: bool,
        len: Option<usize>,
        depth: Option<usize>,
    },
    Hdr(http::HeaderName),
}

/// The part of a request URI `balance uri` hashes: the path (with the
/// query for `whole`), cut before the slash that starts level `depth + 1`,
/// then to `len` bytes.
pub fn uri_key(uri: &http::Uri, whole: bool, len: Option<usize>, depth: Option<usize>) -> &[u8] {
    let text = if whole {
        uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
    } else {
        uri.path()
    };
    let mut key = text.as_bytes();
    if let Some(depth) = depth {
        let mut slashes = 0;
        for (i, b) in key.iter().enumerate() {
            if *b == b'/' {
                slashes += 1;
                if slashes > depth {
                    key = &key[..i];
                    break;
                }
            }
        }
    }
    if let Some(len) = len {
        key = &key[..key.len().min(len)];
    }
    key
}

/// Where a waiter sits in the queue: calls with a deadline first (earliest
/// first), then those without; arrival order among equals.
type QueueKey = (bool, Option<Instant>, u64);

#[derive(Default)]
struct WaitQueue {
    waiting: BTreeMap<QueueKey, Waiting>,
    /// What dispatch gave waiters that have not taken it yet, by arrival
    /// number.
    granted: HashMap<u64, Grant>,
    next_seq: u64,
}

struct Waiting {
    ctx: PickCtx,
    waker: Option<Waker>,
}

enum Grant {
    Slot(Slot),
    /// No server of the backend is usable any more.
    NoServer,
}

/// One call's claim on a server: counts against the server's `maxconn`
/// until dropped, and wakes a queued call when it goes.
pub struct Slot {
    pub server: Arc<Server>,
    backend: Arc<Backend>,
}

impl Slot {
    /// Passive health: how the call on this slot ended (`observe`). When it
    /// completes a run of `error-limit` errors, the `on-error` action runs.
    pub fn observe(&self, result: server::CallResult, info: &str) {
        observe(&self.backend, &self.server, result, info);
    }
}

/// Passive health for a call that went to `server` of `backend`.
pub fn observe(backend: &Arc<Backend>, server: &Server, result: server::CallResult, info: &str) {
    if let Some(action) = server.observe(result) {
        crate::health::on_error(backend, server, action, info);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.drop_one();
        // Pairs with the fence in `Backend::enqueue`: either this sees the
        // new waiter, or the waiter's dispatch sees the freed slot.
        fence(Ordering::SeqCst);
        if self.backend.queued.load(Ordering::Relaxed) > 0 {
            self.backend.dispatch();
        }
    }
}

impl Backend {
    pub fn from_config(b: &config::Backend) -> Self {
        Self::from_config_with(b, &|_| None, &crate::observe::stats::Stats::default())
    }

    /// Like [`Backend::from_config`], taking the servers `reuse` returns
    /// (a reload carries unchanged servers over) and making the others.
    pub fn from_config_with(
        b: &config::Backend,
        reuse: &dyn Fn(&config::Server) -> Option<Arc<Server>>,
        stats: &crate::observe::stats::Stats,
    ) -> Self {
        let servers: Vec<Arc<Server>> = b
            .servers
            .iter()
            .map(|s| {
                reuse(s).unwrap_or_else(|| {
                    Arc::new(Server::from_config(s).with_stats(stats.server(&b.name, &s.name)))
                })
            })
            .collect();
        let (backups, active): (Vec<_>, Vec<_>) = servers.iter().cloned().partition(|s| s.backup);
        if let config::Balance::Ewma { decay } = b.balance {
            for s in &servers {
                s.ewma.set_decay(decay);
            }
        }
        let retry = crate::http::retry::Policy::of(&b.options)
            .for_servers(servers.iter().any(|s| s.proto == UpstreamProto::H2));
        let balancer = balance::build(&b.balance, &b.hash_type, &active);
        Backend {
            name: b.name.clone(),
            mode: b.mode,
            servers,
            active,
            backups,
            timeouts: b.timeouts.clone(),
            check: b.check.clone(),
            http_request: b.http_request.clone(),
            http_response: b.http_response.clone(),
            forwardfor: b.options.forwardfor.clone(),
            retry,
            retry_budget: Default::default(),
            balancer,
            observes_latency: matches!(b.balance, config::Balance::Ewma { .. }),
            queue: Mutex::new(WaitQueue::default()),
            queued: AtomicUsize::new(0),
            maxqueue: queue_limit(b),
            stats: stats.backend(&b.name),
            key: match &b.balance {
                config::Balance::Source => BalanceKey::Source,
                config::Balance::Uri { whole, len, depth } => BalanceKey::Uri {
                    whole: *whole,
                    len: *len,
                    depth: *depth,
                },
                config::Balance::Hdr(h) => BalanceKey::Hdr(h.clone()),
                _ => BalanceKey::None,
            },
            hash_type: b.hash_type,
            allbackups: b.options.allbackups,
            splice: b.options.splice,
        }
    }

    /// Takes one retry from the backend's retry budget, if any is left
    /// (`retries < max(10, 20% of the calls)` in each one-second window).
    pub fn try_retry(&self) -> bool {
        let calls = self.stats.traffic.requests.load(Ordering::Relaxed);
        self.retry_budget.try_retry(calls)
    }

    /// Calls waiting for a server slot right now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn no_server(&self) -> ProxyError {
        ProxyError::new(
            ErrorKind::NoServer,
            format!("no server available for backend {}", self.name),
        )
    }

    /// The balancing context of a call from `peer` (`parts`: its request
    /// head; `None` in `mode tcp`): the hashed key of `source`, `uri` or
    /// `hdr()`, with the backend's `hash-type`. No key (say, the header is
    /// absent): the algorithm falls back to round robin.
    pub fn pick_ctx(
        &self,
        peer: std::net::IpAddr,
        parts: Option<&http::request::Parts>,
    ) -> PickCtx {
        let h = |bytes: &[u8]| Some(balance::hash_key(&self.hash_type, bytes));
        let hash = match (&self.key, parts) {
            (BalanceKey::None, _) => None,
            (BalanceKey::Source, _) => match peer {
                std::net::IpAddr::V4(v4) => h(&v4.octets()),
                std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => h(&v4.octets()),
                    None => h(&v6.octets()),
                },
            },
            (BalanceKey::Uri { whole, len, depth }, Some(p)) => {
                h(uri_key(&p.uri, *whole, *len, *depth))
            }
            (BalanceKey::Hdr(name), Some(p)) => p.headers.get(name).and_then(|v| h(v.as_bytes())),
            (_, None) => None,
        };
        PickCtx { hash }
    }

    /// Picks a usable server now, if there is one. Backup servers are only
    /// considered when no active server is eligible (up, not in maintenance,
    /// with a weight); then the first eligible backup takes the call, like
    /// HAProxy without `option allbackups`.
    fn try_pick(self: &Arc<Self>, ctx: &PickCtx) -> Option<Slot> {
        let server = if self.backups.is_empty() || self.active.iter().any(|s| s.is_eligible()) {
            let idx = self.balancer.pick(&self.active, ctx, &mut |s| {
                s.is_eligible() && s.try_take().is_some()
            })?;
            self.active[idx].clone()
        } else if self.allbackups {
            // `option allbackups`: every usable backup shares the load (the
            // least busy first).
            let mut order: Vec<&Arc<Server>> =
                self.backups.iter().filter(|s| s.is_eligible()).collect();
            order.sort_by_key(|s| s.state.inflight.load(Ordering::Relaxed));
            let s = order.into_iter().find(|s| s.try_take().is_some())?;
            s.clone()
        } else {
            let first = self.backups.iter().find(|s| s.is_eligible())?;
            first.try_take()?;
            first.clone()
        };
        Some(Slot {
            server,
            backend: self.clone(),
        })
    }

    /// A slot for a retry: on `failed` again (without `option redispatch`),
    /// else on another usable server when there is one. Falls back to
    /// [`Backend::take_until`] (which may pick `failed` or queue), with the
    /// call's `deadline` as its place in the queue.
    pub async fn take_retry(
        self: &Arc<Self>,
        ctx: &PickCtx,
        failed: &Arc<Server>,
        deadline: Option<Instant>,
    ) -> Result<Slot, ProxyError> {
        let other = |s: &Arc<Server>| !Arc::ptr_eq(s, failed);
        let slot = if !self.retry.redispatch {
            (failed.is_eligible() && failed.try_take().is_some()).then(|| Slot {
                server: failed.clone(),
                backend: self.clone(),
            })
        } else if self.backups.is_empty() || self.active.iter().any(|s| s.is_eligible()) {
            self.balancer
                .pick(&self.active, ctx, &mut |s| {
                    other(s) && s.is_eligible() && s.try_take().is_some()
                })
                .map(|i| Slot {
                    server: self.active[i].clone(),
                    backend: self.clone(),
                })
        } else {
            self.backups
                .iter()
                .find(|s| other(s) && s.is_eligible() && s.try_take().is_some())
                .map(|s| Slot {
                    server: s.clone(),
                    backend: self.clone(),
                })
        };
        match slot {
            Some(s) => Ok(s),
            None => self.take_until(ctx, deadline).await,
        }
    }

    /// [`Backend::take_until`] for a call or connection without a deadline.
    /// The queue's fast path on its own: a slot at once while nobody waits
    /// and a server is free (no lock, no allocation), else `None` (then
    /// [`Backend::take_until`] queues or fails).
    pub fn take_now(self: &Arc<Self>, ctx: &PickCtx) -> Option<Slot> {
        if self.queued.load(Ordering::Acquire) == 0 {
            self.try_pick(ctx)
        } else {
            None
        }
    }

    pub async fn take(self: &Arc<Self>, ctx: &PickCtx) -> Result<Slot, ProxyError> {
        self.take_until(ctx, None).await
    }

    /// Picks a server for one call (HTTP) or connection (TCP). When every
    /// eligible server is at `maxconn` the call waits in the queue, ordered
    /// by `deadline` (the call's own, `None`: after every call that has
    /// one), up to `timeout queue` (or `timeout connect` when that is
    /// unset, as HAProxy does). A full queue (`maxqueue`) is answered at
    /// once. The caller bounds the wait by `deadline` itself (dropping this
    /// future leaves the queue).
    pub async fn take_until(
        self: &Arc<Self>,
        ctx: &PickCtx,
        deadline: Option<Instant>,
    ) -> Result<Slot, ProxyError> {
        if let Some(slot) = self.take_now(ctx) {
            return Ok(slot);
        }
        if !self.servers.iter().any(|s| s.is_eligible()) {
            return Err(self.no_server());
        }
        let wait = self.timeouts.queue.or(self.timeouts.connect);
        let mut waiter = self.enqueue(ctx, deadline)?;
        let granted = std::future::poll_fn(|cx| waiter.poll_grant(cx));
        let grant = match wait {
            Some(w) => match tokio::time::timeout(w, granted).await {
                Ok(g) => g,
                Err(_) => {
                    return Err(ProxyError::new(
                        ErrorKind::QueueTimeout,
                        format!(
                            "queue timeout after {}ms: every server of backend {} is at maxconn",
                            w.as_millis(),
                            self.name
                        ),
                    )
                    .with_pushback(self.retry_pushback()));
                }
            },
            None => granted.await,
        };
        match grant {
            Grant::Slot(slot) => Ok(slot),
            Grant::NoServer => Err(self.no_server()),
        }
    }

    /// What `grpc-retry-pushback-ms` tells a client that was turned away
    /// by a full queue or a queue timeout: the backend's queue wait
    /// (`timeout queue`, else `timeout connect`), else one second.
    pub fn retry_pushback(&self) -> Duration {
        self.timeouts
            .queue
            .or(self.timeouts.connect)
            .unwrap_or(Duration::from_secs(1))
    }

    /// Puts a call in the queue (or refuses it when `maxqueue` calls wait)
    /// and hands out what slots are free.
    fn enqueue(
        self: &Arc<Self>,
        ctx: &PickCtx,
        deadline: Option<Instant>,
    ) -> Result<Waiter<'_>, ProxyError> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(max) = self.maxqueue {
            if q.waiting.len() >= max {
                return Err(ProxyError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "queue full: {} calls wait for a server of backend {} (maxqueue)",
                        q.waiting.len(),
                        self.name
                    ),
                )
                .with_pushback(self.retry_pushback()));
            }
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        let key = (deadline.is_none(), deadline, seq);
        q.waiting.insert(
            key,
            Waiting {
                ctx: *ctx,
                waker: None,
            },
        );
        self.queued.store(q.waiting.len(), Ordering::Relaxed);
        // Pairs with the fence in `Slot::drop`.
        fence(Ordering::SeqCst);
        self.dispatch_locked(&mut q);
        Ok(Waiter {
            backend: self,
            key,
            done: false,
        })
    }

    /// HAProxy's lb_ops "server state changed": a server's usability or
    /// effective weight changed (health, maintenance, slowstart step,
    /// runtime weight); the balancer rebuilds what it precomputed and queued
    /// calls get a chance at the servers now usable.
    pub fn servers_changed(self: &Arc<Self>) {
        self.balancer.update(&self.active);
        self.dispatch();
    }

    /// Hands free slots to the queue's first waiters, in order.
    pub fn dispatch(self: &Arc<Self>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.dispatch_locked(&mut q);
    }

    fn dispatch_locked(self: &Arc<Self>, q: &mut WaitQueue) {
        while let Some(first) = q.waiting.first_entry() {
            let grant = match self.try_pick(&first.get().ctx) {
                Some(slot) => Grant::Slot(slot),
                None if !self.servers.iter().any(|s| s.is_eligible()) => Grant::NoServer,
                None => break,
            };
            let ((_, _, seq), waiting) = first.remove_entry();
            q.granted.insert(seq, grant);
            if let Some(w) = waiting.waker {
                w.wake();
            }
        }
        self.queued.store(q.waiting.len(), Ordering::Relaxed);
    }
}

/// `maxqueue`: the backend's own limit, and the sum of its servers' when
/// every server has one; the smaller of the two. 0 means no limit.
fn queue_limit(b: &config::Backend) -> Option<usize> {
    let own = b.maxqueue.filter(|&n| n > 0).map(|n| n as usize);
    let servers = if b.servers.is_empty() {
        None
    } else {
        b.servers
            .iter()
            .map(|s| s.maxqueue.filter(|&n| n > 0).map(|n| n as usize))
            .sum::<Option<usize>>()
    };
    match (own, servers) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One call in the queue; dropping it takes the call out (and passes on a
/// slot it was given but did not take).
struct Waiter<'a> {
    backend: &'a Arc<Backend>,
    key: QueueKey,
    done: bool,
}

impl Waiter<'_> {
    fn poll_grant(&mut self, cx: &mut Context<'_>) -> Poll<Grant> {
        let mut q = self.backend.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = q.granted.remove(&self.key.2) {
            self.done = true;
            return Poll::Ready(g);
        }
        if let Some(w) = q.waiting.get_mut(&self.key) {
            match &w.waker {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => w.waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut q = self.backend.queue.lock().unwrap_or_else(|p| p.into_inner());
        let unclaimed = if q.waiting.remove(&self.key).is_some() {
            self.backend
                .queued
                .store(q.waiting.len(), Ordering::Relaxed);
            None
        } else {
            q.granted.remove(&self.key.2)
        };
        drop(q);
        // Dropped outside the lock: the slot's drop dispatches it on.
        drop(unclaimed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    /// Backend `be` of a config with `server_opts` on each of `n` servers.
    fn backend(backend_lines: &str, server_opts: &[&str]) -> Arc<Backend> {
        let servers: String = server_opts
            .iter()
            .enumerate()
            .map(|(i, o)| format!("    server s{i} 127.0.0.1:{} proto h2 {o}\n", 1000 + i))
            .collect();
        let text = format!("backend be\n{backend_lines}{servers}");
        let loaded = crate::config::parse_str("t.cfg", &text).expect("config parses");
        Arc::new(Backend::from_config(&loaded.config.backends[0]))
    }

    async fn poll_once<F: Future>(f: &mut Pin<Box<F>>) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
    }

    #[tokio::test]
    async fn free_slots_go_by_deadline_then_arrival() {
        let be = backend("", &["maxconn 1"]);
        let ctx = PickCtx::default();
        let held = be.take(&ctx).await.expect("free server");
        let now = Instant::now();
        let mut none1 = Box::pin(be.take_until(&ctx, None));
        let mut late = Box::pin(be.take_until(&ctx, Some(now + Duration::from_secs(3))));
        let mut early = Box::pin(be.take_until(&ctx, Some(now + Duration::from_secs(1))));
        let mut none2 = Box::pin(be.take_until(&ctx, None));
        assert!(poll_once(&mut none1).await.is_pending());
        assert!(poll_once(&mut late).await.is_pending());
        assert!(poll_once(&mut early).await.is_pending());
        assert!(poll_once(&mut none2).await.is_pending());
        assert_eq!(be.queued(), 4);

        drop(held);
        let s = match poll_once(&mut early).await {
            Poll::Ready(Ok(s)) => s,
            _ => panic!("the earliest deadline goes first"),
        };
        assert!(poll_once(&mut late).await.is_pending());
        drop(s);
        let s = match poll_once(&mut late).await {
            Poll::Ready(Ok(s)) => s,
            _ => panic!("then the later deadline"),
        };
        drop(s);
        let s = match poll_once(&mut none1).await {
            Poll::Ready(Ok(s)) => s,
            _ => panic!("then calls without deadline, in arrival order"),
        };
        assert!(poll_once(&mut none2).await.is_pending());
        drop(s);
        assert!(matches!(poll_once(&mut none2).await, Poll::Ready(Ok(_))));
        assert_eq!(be.queued(), 0);
        assert_eq!(be.servers[0].state.inflight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_passes_on_the_slot_it_was_given() {
        let be = backend("", &["maxconn 1"]);
        let ctx = PickCtx::default();
        let held = be.take(&ctx).await.expect("free server");
        let mut a = Box::pin(be.take_until(&ctx, None));
        let mut b = Box::pin(be.take_until(&ctx, None));
        assert!(poll_once(&mut a).await.is_pending());
        assert!(poll_once(&mut b).await.is_pending());
        drop(held);
        // `a` was given the slot but goes away before taking it.
        assert_eq!(be.queued(), 1);
        assert_eq!(be.servers[0].state.inflight.load(Ordering::Relaxed), 1);
        drop(a);
        let s = match poll_once(&mut b).await {
            Poll::Ready(Ok(s)) => s,
            _ => panic!("the slot went on to the next waiter"),
        };
        drop(s);
        drop(b);
        assert_eq!(be.servers[0].state.inflight.load(Ordering::Relaxed), 0);
        assert_eq!(be.queued(), 0);
    }

    #[tokio::test]
    async fn new_calls_do_not_overtake_waiters() {
        let be = backend("", &["maxconn 1"]);
        let ctx = PickCtx::default();
        let held = be.take(&ctx).await.expect("free server");
        let mut waiting = Box::pin(be.take_until(&ctx, None));
        assert!(poll_once(&mut waiting).await.is_pending());
        drop(held);
        // The waiter holds the slot now, though its task did not run yet.
        let mut newcomer = Box::pin(be.take_until(&ctx, None));
        assert!(poll_once(&mut newcomer).await.is_pending());
        assert!(matches!(poll_once(&mut waiting).await, Poll::Ready(Ok(_))));
        assert!(matches!(poll_once(&mut newcomer).await, Poll::Ready(Ok(_))));
    }

    #[tokio::test]
    async fn waiters_get_no_server_when_every_server_went_away() {
        let be = backend("", &["maxconn 1"]);
        let ctx = PickCtx::default();
        let held = be.take(&ctx).await.expect("free server");
        let mut a = Box::pin(be.take_until(&ctx, None));
        assert!(poll_once(&mut a).await.is_pending());
        be.servers[0].state.up.store(false, Ordering::Relaxed);
        drop(held);
        match poll_once(&mut a).await {
            Poll::Ready(Err(e)) => assert_eq!(e.kind, ErrorKind::NoServer),
            _ => panic!("no server"),
        }
        assert_eq!(be.queued(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_with_a_pushback() {
        let be = backend("    maxqueue 1\n    timeout queue 1500ms\n", &["maxconn 1"]);
        let ctx = PickCtx::default();
        let _held = be.take(&ctx).await.expect("free server");
        let mut a = Box::pin(be.take_until(&ctx, None));
        assert!(poll_once(&mut a).await.is_pending());
        let e = be.take(&ctx).await.err().expect("queue full");
        assert_eq!(e.kind, ErrorKind::QueueFull);
        assert_eq!(e.retry_pushback, Some(Duration::from_millis(1500)));
        assert_eq!(be.queued(), 1);
    }

    #[test]
    fn maxqueue_of_backend_and_servers() {
        let limit = |b: &str, s: &[&str]| backend(b, s).maxqueue;
        assert_eq!(limit("", &["", ""]), None);
        assert_eq!(limit("    maxqueue 7\n", &["", ""]), Some(7));
        assert_eq!(limit("", &["maxqueue 2", "maxqueue 3"]), Some(5));
        // A server without a limit leaves the backend unlimited.
        assert_eq!(limit("", &["maxqueue 2", ""]), None);
        assert_eq!(limit("", &["maxqueue 2", "maxqueue 0"]), None);
        assert_eq!(
            limit("    maxqueue 4\n", &["maxqueue 2", "maxqueue 3"]),
            Some(4)
        );
        assert_eq!(
            limit("    maxqueue 9\n", &["maxqueue 2", "maxqueue 3"]),
            Some(5)
        );
        assert_eq!(limit("    maxqueue 0\n", &["maxqueue 1"]), Some(1));
    }
}
