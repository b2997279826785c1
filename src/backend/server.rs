//! A server at run time: its settings, its live state (atomics the health
//! checks write and the balancer reads) and its upstream connection pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::h1pool::H1Pool;
use crate::backend::pool::{H2Pool, UpstreamTls};
use crate::config;

/// The protocol weir speaks to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProto {
    /// `proto h2`: HTTP/2 with prior knowledge, multiplexed.
    H2,
    /// No `proto`: HTTP/1.1, one call per connection at a time (HAProxy's default).
    H1,
}

/// Live state, shared by the data path, health checks, metrics and stats.
#[derive(Debug)]
pub struct ServerState {
    /// Administrative maintenance (`disabled`, later the admin API).
    pub maint: AtomicBool,
    /// Health: true while the server is considered up.
    pub up: AtomicBool,
    /// Calls (HTTP) or connections (TCP) in flight to this server.
    pub inflight: AtomicU32,
    /// Calls or connections sent to this server since start.
    pub total: AtomicU64,
    /// The runtime weight (0..=256): the configured `weight` until changed
    /// at run time ([`Server::set_weight`]); 0 drains the server.
    pub weight: AtomicU32,
    /// When the server last came back up, in ms since [`clock_origin`]
    /// (`slowstart` ramps its weight from then); 0: not ramping.
    pub up_since_ms: AtomicU64,
    /// Health-check bookkeeping: written by the server's check task, read
    /// by tests and stats; the data path never locks it.
    pub health: Mutex<crate::health::HealthStatus>,
}

pub struct Server {
    /// The configuration this server was made from (a reload compares it).
    pub config: config::Server,
    pub name: String,
    pub addr: SocketAddr,
    /// `addr` as text, for the `:authority` of requests that came without one.
    pub authority: String,
    pub proto: UpstreamProto,
    pub weight: u32,
    /// 0 = no limit.
    pub maxconn: u32,
    /// `maxqueue`: this server's share of the backend queue; 0 = no limit
    /// (see [`crate::backend::Backend::maxqueue`]).
    pub maxqueue: u32,
    /// `check` settings; `None` when the server is not checked (always up).
    pub check: Option<config::CheckParams>,
    /// `backup`: only used when no active server is up.
    pub backup: bool,
    /// `ssl`: TLS settings and the name presented.
    pub tls: Option<Arc<UpstreamTls>>,
    /// TLS for health checks (`check-ssl`, default: as `ssl`; `check-sni`).
    pub check_tls: Option<Arc<UpstreamTls>>,
    pub state: ServerState,
    pub h2: Arc<H2Pool>,
    pub h1: H1Pool,
    /// `sni <expression>`: the name is computed per request...
    pub sni_expr: Option<crate::acl::Expr>,
    /// ...and each name gets its own HTTP/2 pool (at most [`MAX_SNI_POOLS`]).
    sni_pools: Mutex<HashMap<String, Arc<H2Pool>>>,
    /// The TLS settings per-name pools are made with.
    tls_settings: Option<crate::tls::ServerTls>,
    /// `observe`: passive health from live traffic.
    pub passive: Option<Passive>,
    /// Counters (kept across reloads, by backend and server name).
    pub stats: Arc<crate::observe::stats::ServerStats>,
    /// Peak-EWMA of the time to response head (`balance ewma`).
    pub ewma: crate::backend::balance::PeakEwma,
}

/// Passive health state of one server (`observe`, `error-limit`, `on-error`).
#[derive(Debug)]
pub struct Passive {
    pub mode: config::Observe,
    pub limit: u32,
    pub action: config::OnError,
    /// Consecutive errors seen on live calls.
    errors: AtomicU32,
    /// Wakes the check loop for `on-error fastinter`.
    pub wake: tokio::sync::Notify,
}

impl CallResult {
    /// The judgement of a final `grpc-status` (absent: a gRPC call without
    /// status, which clients see as an error too).
    pub fn of_grpc(code: Option<u32>) -> CallResult {
        match code {
            Some(14 | 13 | 2 | 4) | None => CallResult::Layer7,
            Some(_) => CallResult::Ok,
        }
    }

    /// The judgement of a plain HTTP status (5xx but 501 and 505).
    pub fn of_http(status: u16) -> CallResult {
        match status {
            500..=599 if status != 501 && status != 505 => CallResult::Layer7,
            _ => CallResult::Ok,
        }
    }
}

/// How one call ended, as passive health judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// Fine (or an error that is not the server's fault).
    Ok,
    /// A connection problem: refused, reset, lost, TLS failure.
    Layer4,
    /// A bad final status from the server (grpc-status 14/13/2/4, HTTP 5xx).
    Layer7,
}

/// The origin of the coarse clock slowstart uses (tokio's clock, so
/// paused-time tests can drive slowstart).
fn clock_origin() -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(tokio::time::Instant::now)
}

/// Milliseconds since [`clock_origin`], plus one (0 means "never").
pub fn clock_ms() -> u64 {
    let origin = clock_origin();
    tokio::time::Instant::now()
        .saturating_duration_since(origin)
        .as_millis() as u64
        + 1
}

/// Distinct `sni` names with their own pool per server; calls with further
/// names use the server's default name.
pub const MAX_SNI_POOLS: usize = 256;

impl Server {
    pub fn from_config(s: &config::Server) -> Self {
        let tls = s.tls.clone().filter(|_| s.ssl).map(|tls| {
            Arc::new(UpstreamTls {
                tls,
                name: config::server_name(s),
            })
        });
        let check_tls = s
            .tls
            .clone()
            .filter(|_| s.check_ssl.unwrap_or(s.ssl))
            .map(|tls| {
                Arc::new(UpstreamTls {
                    tls,
                    name: s
                        .check_sni
                        .clone()
                        .unwrap_or_else(|| config::server_name(s)),
                })
            });
        Server {
            config: s.clone(),
            name: s.name.clone(),
            addr: s.addr,
            authority: s.addr.to_string(),
            proto: match s.proto {
                Some(config::Proto::H2) => UpstreamProto::H2,
                _ => UpstreamProto::H1,
            },
            weight: s.weight,
            maxconn: s.maxconn.unwrap_or(0),
            maxqueue: s.maxqueue.unwrap_or(0),
            check: s.check.then(|| s.check_params.clone()),
            backup: s.backup,
            tls: tls.clone(),
            check_tls,
            state: ServerState {
                maint: AtomicBool::new(s.disabled),
                up: AtomicBool::new(true),
                inflight: AtomicU32::new(0),
                total: AtomicU64::new(0),
                weight: AtomicU32::new(s.weight),
                up_since_ms: AtomicU64::new(0),
                health: Mutex::default(),
            },
            h2: Arc::new(H2Pool::new(s.addr, tls.clone()).with_keepalive(s.h2_keepalive)),
            h1: H1Pool::new(tls),
            sni_expr: s.sni_expr.as_ref().map(|e| e.expr.clone()),
            sni_pools: Mutex::new(HashMap::new()),
            tls_settings: s.tls.clone().filter(|_| s.ssl),
            passive: s.observe.map(|mode| Passive {
                mode,
                limit: s.error_limit.max(1),
                action: s.on_error,
                errors: AtomicU32::new(0),
                wake: tokio::sync::Notify::new(),
            }),
            stats: Arc::default(),
            ewma: crate::backend::balance::PeakEwma::default(),
        }
    }

    /// The HTTP/2 pool for a call whose computed SNI is `name` (`None`:
    /// the server's default pool).
    pub fn h2_for(&self, name: Option<&str>) -> Arc<H2Pool> {
        let (Some(name), Some(tls)) = (name, &self.tls_settings) else {
            return self.h2.clone();
        };
        let mut pools = self.sni_pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(name) {
            return p.clone();
        }
        if pools.len() >= MAX_SNI_POOLS {
            tracing::debug!(server = %self.name, sni = name, "too many SNI names, using the default pool");
            return self.h2.clone();
        }
        let pool = Arc::new(H2Pool::new(
            self.addr,
            Some(Arc::new(UpstreamTls {
                tls: tls.clone(),
                name: name.to_string(),
            })),
        ));
        pools.insert(name.to_string(), pool.clone());
        pool
    }

    /// Whether a reload may keep this server object (its state, counters and
    /// connections) for the new configuration `s`: same settings apart from
    /// the line they are written on, and no TLS (TLS servers are rebuilt so
    /// that certificate files are read again).
    pub fn carries_over_to(&self, s: &config::Server) -> bool {
        if self.config.tls.is_some() || s.tls.is_some() {
            return false;
        }
        let mut a = self.config.clone();
        a.loc = s.loc.clone();
        a == *s
    }

    /// Copies health state (up/down, check history) from the server this
    /// one replaces in a reload.
    /// With the counters the proxy keeps for this server's name.
    pub fn with_stats(mut self, stats: Arc<crate::observe::stats::ServerStats>) -> Self {
        self.stats = stats;
        self
    }

    pub fn inherit_state(&self, old: &Server) {
        self.state
            .up
            .store(old.state.up.load(Ordering::Relaxed), Ordering::Relaxed);
        self.state.up_since_ms.store(
            old.state.up_since_ms.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let h = old
            .state
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        *self.state.health.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }

    /// Passive health: notes how a call to this server ended. Returns the
    /// `on-error` action when this error completes a run of `error-limit`
    /// consecutive ones (the caller applies it, see [`crate::health::on_error`]).
    pub fn observe(&self, result: CallResult) -> Option<config::OnError> {
        let p = self.passive.as_ref()?;
        let counts = match result {
            CallResult::Ok => false,
            CallResult::Layer4 => true,
            CallResult::Layer7 => p.mode == config::Observe::Layer7,
        };
        if !counts {
            if result == CallResult::Ok {
                p.errors.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let n = p.errors.fetch_add(1, Ordering::AcqRel) + 1;
        if n < p.limit {
            return None;
        }
        p.errors.store(0, Ordering::Relaxed);
        Some(p.action)
    }

    /// Consecutive errors counted so far (tests, stats).
    pub fn passive_errors(&self) -> u32 {
        self.passive
            .as_ref()
            .map_or(0, |p| p.errors.load(Ordering::Relaxed))
    }

    /// Up (health) and not in maintenance; weight not considered.
    pub fn is_up(&self) -> bool {
        !self.state.maint.load(Ordering::Relaxed) && self.state.up.load(Ordering::Relaxed)
    }

    /// Up, not in maintenance and with a weight.
    pub fn is_eligible(&self) -> bool {
        self.state.weight.load(Ordering::Relaxed) > 0
            && !self.state.maint.load(Ordering::Relaxed)
            && self.state.up.load(Ordering::Relaxed)
    }

    /// The effective weight balancers use (0..=256): the runtime weight,
    /// ramped up over `slowstart` after the server came back up (HAProxy's
    /// eweight: at least 1 while ramping, so the server gets some traffic).
    pub fn eweight(&self) -> u32 {
        let w = self.state.weight.load(Ordering::Relaxed);
        match self.slowstart_progress() {
            Some(f) if w > 0 => ((f64::from(w) * f).ceil() as u32).clamp(1, w),
            _ => w,
        }
    }

    /// Where the slowstart ramp is (0..1), `None` when not ramping.
    pub fn slowstart_progress(&self) -> Option<f64> {
        let ramp = self.config.slowstart?;
        let since = self.state.up_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let elapsed = clock_ms().saturating_sub(since);
        let total = ramp.as_millis().max(1) as u64;
        (elapsed < total).then(|| elapsed as f64 / total as f64)
    }

    /// The server came back up: start its slowstart ramp (if it has one).
    pub fn start_slowstart(&self) {
        if self.config.slowstart.is_some() {
            self.state
                .up_since_ms
                .store(clock_ms().max(1), Ordering::Relaxed);
        }
    }

    /// Sets the runtime weight (clamped to 0..=256); the caller tells the
    /// backend ([`crate::backend::Backend::servers_changed`]).
    pub fn set_weight(&self, w: u32) {
        self.state.weight.store(w.min(256), Ordering::Relaxed);
    }

    /// Claims one call slot, respecting `maxconn`. `None` when full.
    pub fn try_take(self: &Arc<Self>) -> Option<u32> {
        let st = &self.state;
        let mut cur = st.inflight.load(Ordering::Acquire);
        loop {
            if self.maxconn != 0 && cur >= self.maxconn {
                return None;
            }
            match st.inflight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    st.total.fetch_add(1, Ordering::Relaxed);
                    return Some(cur + 1);
                }
                Err(now) => cur = now,
            }
        }
    }

    pub fn drop_one(&self) {
        self.state.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}
