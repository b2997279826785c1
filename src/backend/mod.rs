//! Backends at run time: the server list, the balancer, the wait queue for
//! calls that find every usable server at `maxconn`, and upstream pools.

pub mod balance;
pub mod h1pool;
pub mod pool;
pub mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{self, Mode, Timeouts};
use crate::error::{ErrorKind, ProxyError};
use balance::{Balancer, First, LeastConn, PickCtx, RoundRobin, Source};
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
    /// Bounds retries to a share of the backend's calls.
    pub retry_budget: crate::http::retry::RetryBudget,
    balancer: Box<dyn Balancer>,
    /// Woken when a call slot frees up while calls are queued.
    slot_freed: Notify,
    queued: AtomicUsize,
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
pub fn observe(backend: &Backend, server: &Server, result: server::CallResult, info: &str) {
    if let Some(action) = server.observe(result) {
        crate::health::on_error(backend, server, action, info);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.drop_one();
        if self.backend.queued.load(Ordering::Acquire) > 0 {
            self.backend.slot_freed.notify_one();
        }
    }
}

impl Backend {
    pub fn from_config(b: &config::Backend) -> Self {
        Self::from_config_with(b, &|_| None)
    }

    /// Like [`Backend::from_config`], taking the servers `reuse` returns
    /// (a reload carries unchanged servers over) and making the others.
    pub fn from_config_with(
        b: &config::Backend,
        reuse: &dyn Fn(&config::Server) -> Option<Arc<Server>>,
    ) -> Self {
        let servers: Vec<Arc<Server>> = b
            .servers
            .iter()
            .map(|s| reuse(s).unwrap_or_else(|| Arc::new(Server::from_config(s))))
            .collect();
        let (backups, active): (Vec<_>, Vec<_>) = servers.iter().cloned().partition(|s| s.backup);
        let weights: Vec<u32> = active.iter().map(|s| s.weight).collect();
        let balancer: Box<dyn Balancer> = match b.balance {
            config::Balance::RoundRobin => Box::new(RoundRobin::new(&weights)),
            config::Balance::LeastConn => Box::new(LeastConn::default()),
            config::Balance::First => Box::new(First),
            config::Balance::Source => Box::new(Source::new(&weights)),
        };
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
            retry: crate::http::retry::Policy::of(&b.options),
            retry_budget: Default::default(),
            balancer,
            slot_freed: Notify::new(),
            queued: AtomicUsize::new(0),
        }
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
    /// [`Backend::take`] (which may pick `failed` or queue).
    pub async fn take_retry(
        self: &Arc<Self>,
        ctx: &PickCtx,
        failed: &Arc<Server>,
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
            None => self.take(ctx).await,
        }
    }

    /// Picks a server for one call (HTTP) or connection (TCP). When every
    /// eligible server is at `maxconn` the call waits, up to `timeout queue`
    /// (or `timeout connect` when that is unset, as HAProxy does).
    pub async fn take(self: &Arc<Self>, ctx: &PickCtx) -> Result<Slot, ProxyError> {
        if let Some(slot) = self.try_pick(ctx) {
            return Ok(slot);
        }
        if !self.servers.iter().any(|s| s.is_eligible()) {
            return Err(self.no_server());
        }
        let wait = self.timeouts.queue.or(self.timeouts.connect);
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _unqueue = Unqueue(&self.queued);
        loop {
            let notified = self.slot_freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.try_pick(ctx) {
                return Ok(slot);
            }
            if !self.servers.iter().any(|s| s.is_eligible()) {
                return Err(self.no_server());
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return Err(ProxyError::new(
                            ErrorKind::QueueTimeout,
                            format!(
                                "queue timeout after {}ms: every server of backend {} is at maxconn",
                                wait.unwrap_or(Duration::ZERO).as_millis(),
                                self.name
                            ),
                        ));
                    }
                }
                None => notified.await,
            }
        }
    }
}

struct Unqueue<'a>(&'a AtomicUsize);
impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
