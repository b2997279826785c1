//! Active health checks, shared by `mode tcp` and `mode http`.
//!
//! Every server with `check` gets its own task ([`spawn`]). The task runs one
//! check every `inter` (`fastinter` while a state change is pending,
//! `downinter` while the server is fully down), bounded by `timeout check`
//! (else `inter`), and turns results into UP/DOWN with `rise`/`fall`
//! consecutive results. The verdict is the server's `up` atomic, which the
//! balancer reads; the bookkeeping ([`HealthStatus`]) sits behind a mutex
//! that only the check task and observers (tests, stats) lock.
//!
//! What one check does depends on the backend ([`HealthCheck`]):
//!
//! | backend says          | check                                          | module   |
//! |-----------------------|------------------------------------------------|----------|
//! | nothing               | a TCP connection opens                         | [`tcp`]  |
//! | `option tcp-check`    | `tcp-check connect/send/send-binary/expect`    | [`tcp`]  |
//! | `option grpc-check`   | `grpc.health.v1.Health/Check` is `SERVING`     | [`grpc`] |
//! | `option httpchk`      | an HTTP/1.x (or `check-proto h2`) request      | [`http`] |
//!
//! Servers start UP (HAProxy without `init-state`): `fall` failures take a
//! server down, then `rise` successes bring it back.

mod grpc;
mod http;
mod tcp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::{Backend, Server};
use crate::config::{CheckParams, HealthCheck, OnError};
use crate::proxy::stopping;
use crate::runtime::Snapshot;

/// A server's check bookkeeping (see [`crate::backend::server::ServerState`]).
#[derive(Clone, Debug, Default)]
pub struct HealthStatus {
    /// Checks run since start.
    pub checks: u64,
    /// Checks that failed since start.
    pub failed: u64,
    /// Consecutive successes (0 after a failure).
    pub ok_streak: u32,
    /// Consecutive failures (0 after a success).
    pub fail_streak: u32,
    /// UP/DOWN transitions since start.
    pub transitions: u64,
    /// When the last UP/DOWN transition happened (stats, metrics).
    pub last_change: Option<std::time::SystemTime>,
    /// The last check, if one has run.
    pub last: Option<LastCheck>,
}

/// The result of the last check.
#[derive(Clone, Debug)]
pub struct LastCheck {
    pub ok: bool,
    /// `Layer4 connection problem, info: "Connection refused"` style text.
    pub reason: String,
    pub duration: Duration,
}

/// One check's verdict, in HAProxy's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub ok: bool,
    /// `Layer4 check passed`, `Layer7 wrong status`, ...
    pub reason: &'static str,
    pub code: Option<String>,
    pub info: Option<String>,
}

impl Outcome {
    pub(crate) fn pass(reason: &'static str) -> Self {
        Outcome {
            ok: true,
            reason,
            code: None,
            info: None,
        }
    }

    pub(crate) fn fail(reason: &'static str, info: impl Into<Option<String>>) -> Self {
        Outcome {
            ok: false,
            reason,
            code: None,
            info: info.into(),
        }
    }

    pub(crate) fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// `reason[, code: C][, info: "I"]`, as in HAProxy's logs.
    pub fn describe(&self) -> String {
        let mut s = self.reason.to_string();
        if let Some(code) = &self.code {
            s.push_str(&format!(", code: {code}"));
        }
        if let Some(info) = &self.info {
            s.push_str(", info: \"");
            for c in info.chars() {
                match c {
                    '"' | '\\' => s.extend(['\\', c]),
                    c if c.is_control() => s.extend(c.escape_default()),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s
    }
}

/// How far a check got, readable after it was cut by its timeout.
#[derive(Default)]
pub(crate) struct Progress {
    pub connected: AtomicBool,
    /// 1-based `tcp-check` rule being run (0: none).
    pub step: AtomicUsize,
}

/// `io::Error` text without the `(os error N)` suffix: `Connection refused`.
pub(crate) fn io_info(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn lock(m: &Mutex<HealthStatus>) -> MutexGuard<'_, HealthStatus> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts one check task per server with `check`, in `tasks`; each stops
/// when `shutdown` turns true. First checks are spread over `inter`.
pub fn spawn(snapshot: &Snapshot, tasks: &mut JoinSet<()>, shutdown: &watch::Receiver<bool>) {
    for backend in &snapshot.backends {
        let checked: Vec<&Arc<Server>> = backend
            .servers
            .iter()
            .filter(|s| s.check.is_some())
            .collect();
        let n = checked.len() as u32;
        for (i, server) in checked.into_iter().enumerate() {
            let Some(params) = server.check.clone() else {
                continue;
            };
            let first = params.inter * i as u32 / n.max(1);
            tasks.spawn(check_loop(
                backend.clone(),
                server.clone(),
                params,
                first,
                shutdown.clone(),
            ));
        }
    }
}

/// Sleeps `d`; true if the proxy is stopping instead.
async fn pause(d: Duration, rx: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopping(rx) => true,
    }
}

async fn check_loop(
    backend: Arc<Backend>,
    server: Arc<Server>,
    params: CheckParams,
    first: Duration,
    mut rx: watch::Receiver<bool>,
) {
    if *rx.borrow() || pause(first, &mut rx).await {
        return;
    }
    loop {
        // Like HAProxy, a server in maintenance is not checked.
        if server.state.maint.load(Ordering::Relaxed) {
            if pause(params.inter, &mut rx).await {
                return;
            }
            continue;
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            o = check_once(&backend, &server, &params) => o,
            _ = stopping(&mut rx) => return,
        };
        let next = record(&backend, &server, &params, &outcome, started.elapsed());
        // `on-error fastinter` wakes the loop early for a check at fastinter.
        let sleep = async {
            match &server.passive {
                Some(p) => {
                    tokio::select! {
                        _ = tokio::time::sleep(next) => {}
                        _ = p.wake.notified() => {
                            tokio::time::sleep(params.fastinter.unwrap_or(params.inter).min(next)).await;
                        }
                    }
                }
                None => tokio::time::sleep(next).await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = stopping(&mut rx) => return,
        }
    }
}

/// Where checks of `server` connect.
fn target(server: &Server, params: &CheckParams) -> SocketAddr {
    SocketAddr::new(
        params.addr.unwrap_or(server.addr.ip()),
        params.port.unwrap_or(server.addr.port()),
    )
}

/// Runs one check of `server`, bounded by `timeout check` (else `inter`).
pub(crate) async fn check_once(
    backend: &Backend,
    server: &Server,
    params: &CheckParams,
) -> Outcome {
    let addr = target(server, params);
    let limit = backend.timeouts.check.unwrap_or(params.inter);
    let progress = Progress::default();
    let tls = server.check_tls.as_deref();
    let run = async {
        match &backend.check {
            HealthCheck::Connect => tcp::connect_only(addr, tls, &progress).await,
            HealthCheck::Tcp(rules) => tcp::run_rules(addr, tls, rules, &progress).await,
            HealthCheck::Grpc { service } => {
                grpc::check(addr, tls, service, limit, &progress).await
            }
            HealthCheck::Http(cfg) => {
                let h2 = params.proto == Some(crate::config::Proto::H2);
                http::check(addr, tls, cfg, h2, &progress).await
            }
        }
    };
    match tokio::time::timeout(limit, run).await {
        Ok(outcome) => outcome,
        Err(_) => timeout_outcome(&backend.check, &progress),
    }
}

fn timeout_outcome(check: &HealthCheck, progress: &Progress) -> Outcome {
    if !progress.connected.load(Ordering::Acquire) {
        return Outcome::fail("Layer4 timeout", None);
    }
    let info = match check {
        HealthCheck::Tcp(_) => Some(format!(
            "at step {} of tcp-check",
            progress.step.load(Ordering::Acquire)
        )),
        _ => None,
    };
    Outcome::fail("Layer7 timeout", info)
}

/// Applies one result: counters, UP/DOWN with rise/fall, logs. Returns the
/// delay before the next check.
fn record(
    backend: &Arc<Backend>,
    server: &Server,
    params: &CheckParams,
    outcome: &Outcome,
    duration: Duration,
) -> Duration {
    let was_up = server.state.up.load(Ordering::Acquire);
    let (change, settled) = {
        let mut h = lock(&server.state.health);
        h.checks += 1;
        if outcome.ok {
            h.ok_streak = h.ok_streak.saturating_add(1);
            h.fail_streak = 0;
        } else {
            h.failed += 1;
            h.fail_streak = h.fail_streak.saturating_add(1);
            h.ok_streak = 0;
        }
        h.last = Some(LastCheck {
            ok: outcome.ok,
            reason: outcome.describe(),
            duration,
        });
        let change = match was_up {
            true if h.fail_streak >= params.fall => Some(false),
            false if h.ok_streak >= params.rise => Some(true),
            _ => None,
        };
        if change.is_some() {
            h.transitions += 1;
            h.last_change = Some(std::time::SystemTime::now());
        }
        let up = change.unwrap_or(was_up);
        // Settled: nothing pending (up and healthy, or down and failing).
        let settled = match up {
            true => h.fail_streak == 0,
            false => h.ok_streak == 0,
        };
        (change, settled)
    };
    let up = change.unwrap_or(was_up);
    if let Some(now_up) = change {
        server.state.up.store(now_up, Ordering::Release);
        log_change(backend, server, outcome, duration, now_up);
        if now_up {
            server.start_slowstart();
            if let Some(ramp) = server.config.slowstart {
                tokio::spawn(slowstart_ramp(backend.clone(), ramp));
            }
        }
        // The balancer re-reads the server set; calls waiting in the queue
        // may go to a server that came back.
        backend.servers_changed();
    }
    match (up, settled) {
        (true, true) => params.inter,
        (false, true) => params.downinter.unwrap_or(params.inter),
        _ => params.fastinter.unwrap_or(params.inter),
    }
}

/// Applies an `on-error` action decided by passive health
/// ([`Server::observe`]); `info` says what the last error was.
pub fn on_error(backend: &Arc<Backend>, server: &Server, action: OnError, info: &str) {
    let Some(params) = server.check.as_ref() else {
        return;
    };
    let outcome = Outcome::fail("Health analyze", Some(info.to_string()));
    match action {
        OnError::FastInter => {
            if let Some(p) = &server.passive {
                p.wake.notify_one();
            }
        }
        OnError::FailCheck => {
            record(backend, server, params, &outcome, Duration::ZERO);
        }
        OnError::SuddenDeath => {
            {
                let mut h = lock(&server.state.health);
                h.fail_streak = h.fail_streak.max(params.fall.saturating_sub(1));
                h.ok_streak = 0;
            }
            if let Some(p) = &server.passive {
                p.wake.notify_one();
            }
        }
        OnError::MarkDown => {
            let was_up = server.state.up.swap(false, Ordering::AcqRel);
            {
                let mut h = lock(&server.state.health);
                h.fail_streak = h.fail_streak.max(params.fall);
                h.ok_streak = 0;
                h.last = Some(LastCheck {
                    ok: false,
                    reason: outcome.describe(),
                    duration: Duration::ZERO,
                });
                if was_up {
                    h.transitions += 1;
                    h.last_change = Some(std::time::SystemTime::now());
                }
            }
            if was_up {
                log_change(backend, server, &outcome, Duration::ZERO, false);
                backend.servers_changed();
            }
        }
    }
}

/// Steps the balancer while a server's `slowstart` ramp runs (its weight
/// is read live; algorithms with precomputed schedules are rebuilt about
/// 16 times over the ramp), bounded by the ramp's length.
async fn slowstart_ramp(backend: Arc<Backend>, ramp: Duration) {
    let step = (ramp / 16).max(Duration::from_millis(100));
    let steps = ramp.as_millis() / step.as_millis().max(1) + 2;
    for _ in 0..steps {
        tokio::time::sleep(step).await;
        backend.servers_changed();
    }
}

/// HAProxy's state-change messages.
fn log_change(backend: &Backend, server: &Server, o: &Outcome, duration: Duration, up: bool) {
    let count = |backup: bool| {
        backend
            .servers
            .iter()
            .filter(|s| s.backup == backup && s.is_up())
            .count()
    };
    let (active, backups) = (count(false), count(true));
    let kind = if server.backup {
        "Backup Server"
    } else {
        "Server"
    };
    let ms = duration.as_millis();
    let queued = backend.queued();
    if up {
        tracing::warn!(
            "{kind} {}/{} is UP, reason: {}, check duration: {ms}ms. {active} active and {backups} backup servers online. 0 sessions requeued, {queued} total in queue.",
            backend.name,
            server.name,
            o.describe()
        );
    } else {
        let sessions = server.state.inflight.load(Ordering::Relaxed);
        tracing::warn!(
            "{kind} {}/{} is DOWN, reason: {}, check duration: {ms}ms. {active} active and {backups} backup servers left. {sessions} sessions active, 0 requeued, {queued} remaining in queue.",
            backend.name,
            server.name,
            o.describe()
        );
        if active + backups == 0 {
            tracing::error!("backend {} has no server available!", backend.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_like_haproxy() {
        let o = Outcome::fail(
            "Layer4 connection problem",
            Some("Connection refused".into()),
        );
        assert_eq!(
            o.describe(),
            "Layer4 connection problem, info: \"Connection refused\""
        );
        let o = Outcome::fail("Layer7 wrong status", None).with_code("NOT_SERVING");
        assert_eq!(o.describe(), "Layer7 wrong status, code: NOT_SERVING");
        assert_eq!(
            Outcome::pass("Layer4 check passed").describe(),
            "Layer4 check passed"
        );
    }

    #[test]
    fn io_info_strips_os_error() {
        let e = std::io::Error::from_raw_os_error(111);
        assert!(!io_info(&e).contains("os error"));
    }
}
