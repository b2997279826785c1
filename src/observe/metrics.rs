//! `http-request use-service prometheus-exporter`: every counter of
//! [`crate::observe::stats`] in the OpenMetrics text format.
//!
//! Nothing is registered ahead of time: a scrape builds a
//! `prometheus_client` registry holding one [`Collector`] that reads the
//! counters of the snapshot being served, so the data path never looks
//! anything up for the exporter. Metric names are HAProxy's exporter names
//! with `weir_` for `haproxy_` (see [`names`] and `docs/observability.md`).
//!
//! prometheus-client writes the OpenMetrics suffixes itself: a counter's
//! samples get `_total`, a metric with a unit gets `_<unit>` (and a `# UNIT`
//! line). The constants in [`names`] are the sample names as Prometheus
//! stores them; [`descriptor`] takes the suffixes back off before handing
//! the name to the encoder, so nothing ends in `_total_total`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderValue, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::backend::{Backend, Server};
use crate::http::body::ProxyBody;
use crate::observe::stats::{
    HistogramView, MethodStats, Stats, Traffic, GRPC_CODES, HTTP_CLASSES, TERMINATIONS,
};
use crate::runtime::{Frontend, Snapshot};

/// The exporter's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name, as Prometheus stores the samples.
pub mod names {
    // ---- process
    pub const PROCESS_START_TIME: &str = "weir_process_start_time_seconds";
    pub const PROCESS_RELOADS: &str = "weir_process_reloads_total";
    pub const SPLICE_PIPES_OPEN: &str = "weir_splice_pipes_open";
    pub const SPLICE_PIPES_MAX: &str = "weir_splice_pipes_max";
    pub const SPLICE_PIPES_REFUSED: &str = "weir_splice_pipes_refused_total";
    pub const BUILD_INFO: &str = "weir_build_info";

    // ---- frontends (label `proxy`)
    pub const FRONTEND_CURRENT_SESSIONS: &str = "weir_frontend_current_sessions";
    pub const FRONTEND_MAX_SESSIONS: &str = "weir_frontend_max_sessions";
    pub const FRONTEND_LIMIT_SESSIONS: &str = "weir_frontend_limit_sessions";
    pub const FRONTEND_SESSIONS: &str = "weir_frontend_sessions_total";
    pub const FRONTEND_REQUESTS: &str = "weir_frontend_http_requests_total";
    pub const FRONTEND_BYTES_IN: &str = "weir_frontend_received_bytes_total";
    pub const FRONTEND_BYTES_OUT: &str = "weir_frontend_sent_bytes_total";
    pub const FRONTEND_RESPONSES: &str = "weir_frontend_http_responses_total";
    pub const FRONTEND_DENIED_REQUESTS: &str = "weir_frontend_requests_denied_total";
    pub const FRONTEND_DENIED_RESPONSES: &str = "weir_frontend_responses_denied_total";
    pub const FRONTEND_REQUEST_ERRORS: &str = "weir_frontend_request_errors_total";
    pub const FRONTEND_TERMINATIONS: &str = "weir_frontend_terminations_total";
    pub const FRONTEND_CONNECTIONS_CUT: &str = "weir_frontend_connections_cut_total";
    pub const FRONTEND_SPLICED_BYTES: &str = "weir_frontend_spliced_bytes_total";

    // ---- backends (label `proxy`)
    pub const BACKEND_STATUS: &str = "weir_backend_status";
    pub const BACKEND_ACTIVE_SERVERS: &str = "weir_backend_active_servers";
    pub const BACKEND_BACKUP_SERVERS: &str = "weir_backend_backup_servers";
    pub const BACKEND_CURRENT_QUEUE: &str = "weir_backend_current_queue";
    pub const BACKEND_ACTIVE_STREAMS: &str = "weir_backend_active_streams";
    pub const BACKEND_SESSIONS: &str = "weir_backend_sessions_total";
    pub const BACKEND_REQUESTS: &str = "weir_backend_http_requests_total";
    pub const BACKEND_BYTES_IN: &str = "weir_backend_received_bytes_total";
    pub const BACKEND_BYTES_OUT: &str = "weir_backend_sent_bytes_total";
    pub const BACKEND_RESPONSES: &str = "weir_backend_http_responses_total";
    pub const BACKEND_DENIED_REQUESTS: &str = "weir_backend_requests_denied_total";
    pub const BACKEND_DENIED_RESPONSES: &str = "weir_backend_responses_denied_total";
    pub const BACKEND_CONNECTION_ERRORS: &str = "weir_backend_connection_errors_total";
    pub const BACKEND_RESPONSE_ERRORS: &str = "weir_backend_response_errors_total";
    pub const BACKEND_RETRIES: &str = "weir_backend_retry_warnings_total";
    pub const BACKEND_REDISPATCHES: &str = "weir_backend_redispatch_warnings_total";
    pub const BACKEND_TERMINATIONS: &str = "weir_backend_terminations_total";

    // ---- servers (labels `proxy`, `server`)
    pub const SERVER_STATUS: &str = "weir_server_status";
    pub const SERVER_WEIGHT: &str = "weir_server_weight";
    pub const SERVER_CURRENT_SESSIONS: &str = "weir_server_current_sessions";
    pub const SERVER_LIMIT_SESSIONS: &str = "weir_server_limit_sessions";
    pub const SERVER_SESSIONS: &str = "weir_server_sessions_total";
    pub const SERVER_BYTES_IN: &str = "weir_server_received_bytes_total";
    pub const SERVER_BYTES_OUT: &str = "weir_server_sent_bytes_total";
    pub const SERVER_RESPONSES: &str = "weir_server_http_responses_total";
    pub const SERVER_CONNECTION_ERRORS: &str = "weir_server_connection_errors_total";
    pub const SERVER_RESPONSE_ERRORS: &str = "weir_server_response_errors_total";
    pub const SERVER_RETRIES: &str = "weir_server_retry_warnings_total";
    pub const SERVER_REDISPATCHES: &str = "weir_server_redispatch_warnings_total";
    pub const SERVER_CHECK_STATUS: &str = "weir_server_check_status";
    pub const SERVER_CHECK_DURATION: &str = "weir_server_check_duration_seconds";
    pub const SERVER_CHECK_FAILURES: &str = "weir_server_check_failures_total";
    pub const SERVER_UPSTREAM_CONNECTIONS: &str = "weir_server_upstream_connections";
    pub const SERVER_LAST_CHANGE: &str = "weir_server_last_state_change_seconds";
    pub const SERVER_GRPC_REQUESTS: &str = "weir_server_grpc_requests_total";

    // ---- gRPC (labels `frontend`, `backend`, `service`, `method`)
    pub const GRPC_REQUESTS: &str = "weir_grpc_requests_total";
    pub const GRPC_REQUEST_DURATION: &str = "weir_grpc_request_duration_seconds";
    pub const GRPC_STREAM_DURATION: &str = "weir_grpc_stream_duration_seconds";
    pub const GRPC_STREAM_MESSAGES: &str = "weir_grpc_stream_messages";
    pub const GRPC_MESSAGES_RECEIVED: &str = "weir_grpc_messages_received_total";
    pub const GRPC_MESSAGES_SENT: &str = "weir_grpc_messages_sent_total";
    pub const GRPC_ACTIVE_STREAMS: &str = "weir_grpc_active_streams";
}

/// HAProxy's `check_status` values weir can be in (`state` label of
/// [`names::SERVER_CHECK_STATUS`]).
pub const CHECK_STATES: [&str; 13] = [
    "INI", "SOCKERR", "L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP", "L7OK", "L7TOUT",
    "L7RSP", "L7STS", "HANA",
];

/// The `state` values of [`names::SERVER_STATUS`].
pub const SERVER_STATES: [&str; 4] = ["UP", "DOWN", "MAINT", "DRAIN"];

/// A server's state as HAProxy's exporter names it: `MAINT`
/// (maintenance), `DOWN` (failed its checks), `DRAIN` (weight 0), `UP`.
pub fn server_state(s: &Server) -> &'static str {
    if s.state.maint.load(Ordering::Relaxed) {
        "MAINT"
    } else if !s.state.up.load(Ordering::Relaxed) {
        "DOWN"
    } else if s.weight == 0 {
        "DRAIN"
    } else {
        "UP"
    }
}

/// HAProxy's short check status of a last-check reason
/// (`Layer4 connection problem, info: ...` -> `L4CON`); `INI` before the
/// first check.
pub fn check_status(reason: Option<&str>) -> &'static str {
    let Some(r) = reason else { return "INI" };
    const PREFIXES: [(&str, &str); 12] = [
        ("Layer4 check passed", "L4OK"),
        ("Layer4 connection problem", "L4CON"),
        ("Layer4 timeout", "L4TOUT"),
        ("Layer6 check passed", "L6OK"),
        ("Layer6 invalid response", "L6RSP"),
        ("Layer6 timeout", "L6TOUT"),
        ("Layer7 check passed", "L7OK"),
        ("Layer7 invalid response", "L7RSP"),
        ("Layer7 timeout", "L7TOUT"),
        ("Layer7 wrong status", "L7STS"),
        ("Socket error", "SOCKERR"),
        ("Health analyze", "HANA"),
    ];
    PREFIXES
        .iter()
        .find(|(p, _)| r.starts_with(p))
        .map_or("L7STS", |(_, s)| s)
}

/// Seconds since the last UP/DOWN change of `s` (since the process
/// started when it never changed), and HAProxy's check status.
pub(crate) fn health_of(s: &Server, stats: &Stats) -> ServerHealth {
    let h = s.state.health.lock().unwrap_or_else(|p| p.into_inner());
    let since = h.last_change.unwrap_or(stats.started);
    ServerHealth {
        last_change: SystemTime::now()
            .duration_since(since)
            .unwrap_or_default()
            .as_secs(),
        status: check_status(h.last.as_ref().map(|l| l.reason.as_str())),
        reason: h.last.as_ref().map(|l| l.reason.clone()),
        duration: h.last.as_ref().map(|l| l.duration),
        failed: h.failed,
        checks: h.checks,
    }
}

/// What the exporter and the stats page show of a server's health.
pub(crate) struct ServerHealth {
    pub last_change: u64,
    pub status: &'static str,
    pub reason: Option<String>,
    pub duration: Option<std::time::Duration>,
    pub failed: u64,
    pub checks: u64,
}

/// Open upstream connections of a server: HTTP/2 connections in its pool
/// plus idle HTTP/1.1 ones (busy HTTP/1.1 connections are its current
/// sessions).
pub fn upstream_connections(s: &Server) -> usize {
    s.h2.open_connections() + s.h1.idle_count()
}

/// Whether a backend can serve: any server up, not in maintenance, with
/// a weight.
pub fn backend_up(b: &Backend) -> bool {
    b.servers.iter().any(|s| s.is_eligible())
}

/// Servers of `b` that are up: the active ones, or the backups.
pub fn up_servers(b: &Backend, backup: bool) -> usize {
    b.servers
        .iter()
        .filter(|s| s.backup == backup && s.is_up())
        .count()
}

/// Calls (tcp: connections) in flight to the servers of `b`.
pub fn backend_inflight(b: &Backend) -> u64 {
    b.servers
        .iter()
        .map(|s| u64::from(s.state.inflight.load(Ordering::Relaxed)))
        .sum()
}

// ------------------------------------------------------------- families

type Labels = Vec<(&'static str, String)>;

enum Val {
    U(u64),
    I(i64),
    F(f64),
}

/// One metric family, read before it is written.
struct Family {
    name: &'static str,
    help: &'static str,
    ty: MetricType,
    samples: Vec<(Labels, Val)>,
    histograms: Vec<(Labels, HistogramView)>,
}

impl Family {
    fn new(name: &'static str, ty: MetricType, help: &'static str) -> Self {
        Family {
            name,
            help,
            ty,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }

    fn counter(name: &'static str, help: &'static str) -> Self {
        Self::new(name, MetricType::Counter, help)
    }

    fn gauge(name: &'static str, help: &'static str) -> Self {
        Self::new(name, MetricType::Gauge, help)
    }

    fn histogram(name: &'static str, help: &'static str) -> Self {
        Self::new(name, MetricType::Histogram, help)
    }

    fn u(&mut self, labels: Labels, v: u64) {
        self.samples.push((labels, Val::U(v)));
    }

    fn i(&mut self, labels: Labels, v: i64) {
        self.samples.push((labels, Val::I(v)));
    }

    fn f(&mut self, labels: Labels, v: f64) {
        self.samples.push((labels, Val::F(v)));
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (base, unit) = descriptor(self.name, &self.ty);
        let mut m = enc.encode_descriptor(base, self.help, unit, self.ty)?;
        for (labels, v) in &self.samples {
            // No `{}` on samples without labels.
            if labels.is_empty() {
                sample(&mut m, self.ty, v)?;
            } else {
                sample(&mut m.encode_family(labels)?, self.ty, v)?;
            }
        }
        for (labels, h) in &self.histograms {
            // The encoder wants per-bucket counts; ours are cumulative.
            let mut prev = 0;
            let buckets: Vec<(f64, u64)> = h
                .buckets
                .iter()
                .map(|&(bound, cum)| {
                    let n = cum.saturating_sub(prev);
                    prev = cum;
                    (bound, n)
                })
                .collect();
            m.encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        Ok(())
    }
}

/// Writes one sample of a counter or gauge.
fn sample(m: &mut MetricEncoder, ty: MetricType, v: &Val) -> Result<(), std::fmt::Error> {
    match (ty, v) {
        (MetricType::Counter, Val::U(n)) => m.encode_counter::<NoLabelSet, _, f64>(n, None),
        (MetricType::Counter, Val::F(n)) => m.encode_counter::<NoLabelSet, _, f64>(n, None),
        (MetricType::Counter, Val::I(n)) => {
            m.encode_counter::<NoLabelSet, _, f64>(&u64::try_from(*n).unwrap_or(0), None)
        }
        (_, Val::U(n)) => m.encode_gauge(n),
        (_, Val::I(n)) => m.encode_gauge(n),
        (_, Val::F(n)) => m.encode_gauge(n),
    }
}

static SECONDS: Unit = Unit::Seconds;
static BYTES: Unit = Unit::Bytes;

/// The name and unit to give prometheus-client for the sample name
/// `name`: it appends `_total` to counters and `_<unit>` itself.
pub fn descriptor(name: &'static str, ty: &MetricType) -> (&'static str, Option<&'static Unit>) {
    let base = match ty {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    if let Some(b) = base.strip_suffix("_seconds") {
        (b, Some(&SECONDS))
    } else if let Some(b) = base.strip_suffix("_bytes") {
        (b, Some(&BYTES))
    } else {
        (base, None)
    }
}

fn n(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn with(labels: &Labels, k: &'static str, v: &str) -> Labels {
    let mut l = labels.clone();
    l.push((k, v.to_string()));
    l
}

/// The traffic families shared by frontends, backends and servers, in
/// one place so the three kinds read the same counters the same way.
struct TrafficFamilies {
    bytes_in: Family,
    bytes_out: Family,
    responses: Family,
    terminations: Option<Family>,
}

impl TrafficFamilies {
    fn new(
        bytes_in: &'static str,
        bytes_out: &'static str,
        responses: &'static str,
        terminations: Option<&'static str>,
    ) -> Self {
        TrafficFamilies {
            bytes_in: Family::counter(bytes_in, "Bytes received from clients (request bodies)."),
            bytes_out: Family::counter(bytes_out, "Bytes sent to clients (response bodies)."),
            responses: Family::counter(
                responses,
                "HTTP responses by class of status code (1xx..5xx, other).",
            ),
            terminations: terminations.map(|t| {
                Family::counter(
                    t,
                    "Sessions that did not end normally, by the first letter of HAProxy's termination state (kind).",
                )
            }),
        }
    }

    fn add(&mut self, labels: &Labels, t: &Traffic) {
        self.bytes_in.u(labels.clone(), n(&t.bytes_in));
        self.bytes_out.u(labels.clone(), n(&t.bytes_out));
        for (i, class) in HTTP_CLASSES.iter().enumerate() {
            self.responses
                .u(with(labels, "code", class), n(&t.responses[i]));
        }
        if let Some(f) = self.terminations.as_mut() {
            for (i, (_, kind)) in TERMINATIONS.iter().enumerate() {
                f.u(with(labels, "kind", kind), n(&t.terminations[i]));
            }
        }
    }

    fn into_vec(self) -> Vec<Family> {
        let mut v = vec![self.bytes_in, self.bytes_out, self.responses];
        v.extend(self.terminations);
        v
    }
}

/// Reads every family of `snap` (and the process-wide ones of `stats`).
fn families(stats: &Stats, snap: Option<&Snapshot>) -> Vec<Family> {
    use names::*;
    let mut out = Vec::new();

    let mut f = Family::gauge(
        PROCESS_START_TIME,
        "When weir started, in seconds since the Unix epoch.",
    );
    let start = stats
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    f.f(Vec::new(), start.as_secs_f64());
    out.push(f);
    let mut f = Family::counter(PROCESS_RELOADS, "Configuration reloads since start.");
    f.u(Vec::new(), stats.reloads.load(Ordering::Relaxed));
    out.push(f);
    let mut f = Family::gauge(BUILD_INFO, "weir's version (always 1).");
    f.u(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1);
    out.push(f);

    let Some(snap) = snap else { return out };
    #[cfg(target_os = "linux")]
    {
        let p = &snap.pipes;
        let mut f = Family::gauge(
            SPLICE_PIPES_OPEN,
            "Pipes open for option splice-* (in use or pooled).",
        );
        f.u(Vec::new(), p.open() as u64);
        out.push(f);
        let mut f = Family::gauge(SPLICE_PIPES_MAX, "global maxpipes.");
        f.u(Vec::new(), p.max() as u64);
        out.push(f);
        let mut f = Family::counter(
            SPLICE_PIPES_REFUSED,
            "Session directions that wanted a pipe and copied through user space instead (maxpipes reached or no descriptor).",
        );
        f.u(Vec::new(), p.refused());
        out.push(f);
    }
    out.extend(frontend_families(&snap.frontends));
    out.extend(backend_families(stats, &snap.backends));
    out.extend(grpc_families(snap));
    out
}

fn frontend_families(fes: &[Arc<Frontend>]) -> Vec<Family> {
    use names::*;
    let mut cur = Family::gauge(FRONTEND_CURRENT_SESSIONS, "Client connections open now.");
    let mut max = Family::gauge(
        FRONTEND_MAX_SESSIONS,
        "The most client connections open at once.",
    );
    let mut limit = Family::gauge(FRONTEND_LIMIT_SESSIONS, "The frontend's maxconn (0: none).");
    let mut tot = Family::counter(FRONTEND_SESSIONS, "Client connections accepted.");
    let mut req = Family::counter(FRONTEND_REQUESTS, "HTTP requests (gRPC calls) received.");
    let mut den_req = Family::counter(
        FRONTEND_DENIED_REQUESTS,
        "Requests denied by http-request rules.",
    );
    let mut den_res = Family::counter(
        FRONTEND_DENIED_RESPONSES,
        "Responses denied by http-response rules.",
    );
    let mut err = Family::counter(
        FRONTEND_REQUEST_ERRORS,
        "Requests that could not be routed.",
    );
    let mut cuts = Family::counter(
        FRONTEND_CONNECTIONS_CUT,
        "Client connections weir cut for abuse or a timeout, by reason (docs/hardening.md).",
    );
    let mut spliced = Family::counter(
        FRONTEND_SPLICED_BYTES,
        "mode tcp bytes moved by splice(2) inside the kernel (option splice-*), both directions.",
    );
    let mut traffic = TrafficFamilies::new(
        FRONTEND_BYTES_IN,
        FRONTEND_BYTES_OUT,
        FRONTEND_RESPONSES,
        Some(FRONTEND_TERMINATIONS),
    );
    for fe in fes {
        let l: Labels = vec![("proxy", fe.name.clone())];
        let s = &fe.stats;
        let t = &s.traffic;
        cur.i(l.clone(), s.conns.load(Ordering::Relaxed).max(0));
        max.i(l.clone(), s.conns_max.load(Ordering::Relaxed));
        limit.u(l.clone(), u64::from(fe.maxconn.unwrap_or(0)));
        tot.u(l.clone(), n(&t.sessions));
        req.u(l.clone(), n(&t.requests));
        den_req.u(l.clone(), n(&t.denied_req));
        den_res.u(l.clone(), n(&t.denied_resp));
        err.u(l.clone(), n(&t.req_errors));
        for (reason, count) in s.cut_counts() {
            cuts.u(with(&l, "reason", reason), count);
        }
        spliced.u(l.clone(), n(&s.spliced_bytes));
        traffic.add(&l, t);
    }
    let mut v = vec![cur, max, limit, tot, req];
    v.extend(traffic.into_vec());
    v.extend([den_req, den_res, err, cuts, spliced]);
    v
}

fn backend_families(stats: &Stats, bes: &[Arc<Backend>]) -> Vec<Family> {
    use names::*;
    let mut status = Family::gauge(BACKEND_STATUS, "1 when at least one server can take calls.");
    let mut active = Family::gauge(BACKEND_ACTIVE_SERVERS, "Active (non-backup) servers up.");
    let mut backup = Family::gauge(BACKEND_BACKUP_SERVERS, "Backup servers up.");
    let mut queue = Family::gauge(BACKEND_CURRENT_QUEUE, "Calls waiting for a server.");
    let mut streams = Family::gauge(
        BACKEND_ACTIVE_STREAMS,
        "Calls in flight to the backend's servers.",
    );
    let mut sess = Family::counter(
        BACKEND_SESSIONS,
        "Calls (tcp: connections) sent to the backend.",
    );
    let mut req = Family::counter(
        BACKEND_REQUESTS,
        "HTTP requests (gRPC calls) sent to the backend.",
    );
    let mut den_req = Family::counter(
        BACKEND_DENIED_REQUESTS,
        "Requests denied by the backend's http-request rules.",
    );
    let mut den_res = Family::counter(
        BACKEND_DENIED_RESPONSES,
        "Responses denied by http-response rules.",
    );
    let mut econ = Family::counter(BACKEND_CONNECTION_ERRORS, "Failed connections to servers.");
    let mut eresp = Family::counter(
        BACKEND_RESPONSE_ERRORS,
        "Failed or aborted responses from servers.",
    );
    let mut retr = Family::counter(BACKEND_RETRIES, "Attempts tried again (retries).");
    let mut redis = Family::counter(
        BACKEND_REDISPATCHES,
        "Calls retried on another server (option redispatch).",
    );
    let mut traffic = TrafficFamilies::new(
        BACKEND_BYTES_IN,
        BACKEND_BYTES_OUT,
        BACKEND_RESPONSES,
        Some(BACKEND_TERMINATIONS),
    );

    let mut s_status = Family::gauge(
        SERVER_STATUS,
        "The server's state: 1 for the current one (UP, DOWN, MAINT, DRAIN), 0 for the others.",
    );
    let mut s_weight = Family::gauge(SERVER_WEIGHT, "The server's weight.");
    let mut s_cur = Family::gauge(
        SERVER_CURRENT_SESSIONS,
        "Calls (tcp: connections) in flight to the server.",
    );
    let mut s_limit = Family::gauge(SERVER_LIMIT_SESSIONS, "The server's maxconn (0: none).");
    let mut s_tot = Family::counter(
        SERVER_SESSIONS,
        "Calls (tcp: connections) sent to the server.",
    );
    let mut s_econ = Family::counter(
        SERVER_CONNECTION_ERRORS,
        "Failed connections to the server.",
    );
    let mut s_eresp = Family::counter(
        SERVER_RESPONSE_ERRORS,
        "Failed or aborted responses from the server.",
    );
    let mut s_retr = Family::counter(SERVER_RETRIES, "Attempts on this server tried again.");
    let mut s_redis = Family::counter(
        SERVER_REDISPATCHES,
        "Retries that left this server for another one.",
    );
    let mut s_check = Family::gauge(SERVER_CHECK_STATUS, "HAProxy's status of the last health check: 1 for the current one (state), 0 for the others; servers with check only.");
    let mut s_check_dur =
        Family::gauge(SERVER_CHECK_DURATION, "Duration of the last health check.");
    let mut s_check_fail = Family::counter(SERVER_CHECK_FAILURES, "Failed health checks.");
    let mut s_conns = Family::gauge(
        SERVER_UPSTREAM_CONNECTIONS,
        "Open upstream connections: HTTP/2 connections in the pool plus idle HTTP/1.1 ones.",
    );
    let mut s_change = Family::gauge(
        SERVER_LAST_CHANGE,
        "Seconds since the server last went UP or DOWN (since start if never).",
    );
    let mut s_grpc = Family::counter(SERVER_GRPC_REQUESTS, "gRPC calls answered through this server, by final grpc-status (OK always, other codes once seen).");
    let mut s_traffic =
        TrafficFamilies::new(SERVER_BYTES_IN, SERVER_BYTES_OUT, SERVER_RESPONSES, None);

    for b in bes {
        let l: Labels = vec![("proxy", b.name.clone())];
        let t = &b.stats.traffic;
        status.u(l.clone(), u64::from(backend_up(b)));
        active.u(l.clone(), up_servers(b, false) as u64);
        backup.u(l.clone(), up_servers(b, true) as u64);
        queue.u(l.clone(), b.queued() as u64);
        streams.u(l.clone(), backend_inflight(b));
        sess.u(l.clone(), n(&t.sessions));
        req.u(l.clone(), n(&t.requests));
        den_req.u(l.clone(), n(&t.denied_req));
        den_res.u(l.clone(), n(&t.denied_resp));
        econ.u(l.clone(), n(&t.conn_errors));
        eresp.u(l.clone(), n(&t.resp_errors));
        retr.u(l.clone(), n(&t.retries));
        redis.u(l.clone(), n(&t.redispatches));
        traffic.add(&l, t);

        for s in &b.servers {
            let sl: Labels = vec![("proxy", b.name.clone()), ("server", s.name.clone())];
            let st = &s.stats.traffic;
            let state = server_state(s);
            for x in SERVER_STATES {
                s_status.u(with(&sl, "state", x), u64::from(x == state));
            }
            s_weight.u(sl.clone(), u64::from(s.weight));
            s_cur.u(
                sl.clone(),
                u64::from(s.state.inflight.load(Ordering::Relaxed)),
            );
            s_limit.u(sl.clone(), u64::from(s.maxconn));
            s_tot.u(sl.clone(), n(&st.sessions));
            s_econ.u(sl.clone(), n(&st.conn_errors));
            s_eresp.u(sl.clone(), n(&st.resp_errors));
            s_retr.u(sl.clone(), n(&st.retries));
            s_redis.u(sl.clone(), n(&st.redispatches));
            s_traffic.add(&sl, st);
            let h = health_of(s, stats);
            if s.check.is_some() {
                for x in CHECK_STATES {
                    s_check.u(with(&sl, "state", x), u64::from(x == h.status));
                }
                if let Some(d) = h.duration {
                    s_check_dur.f(sl.clone(), d.as_secs_f64());
                }
            }
            s_check_fail.u(sl.clone(), h.failed);
            s_conns.u(sl.clone(), upstream_connections(s) as u64);
            s_change.u(sl.clone(), h.last_change);
            for (code, name) in GRPC_CODES.iter().enumerate() {
                let c = n(&s.stats.grpc_codes[code]);
                if c > 0 || code == 0 {
                    s_grpc.u(with(&sl, "grpc_code", name), c);
                }
            }
        }
    }
    let mut v = vec![status, active, backup, queue, streams, sess, req];
    v.extend(traffic.into_vec());
    v.extend([den_req, den_res, econ, eresp, retr, redis]);
    v.extend([
        s_status,
        s_weight,
        s_cur,
        s_limit,
        s_tot,
        s_econ,
        s_eresp,
        s_retr,
        s_redis,
        s_check,
        s_check_dur,
        s_check_fail,
        s_conns,
        s_change,
        s_grpc,
    ]);
    v.extend(s_traffic.into_vec());
    v
}

/// Every gRPC method entry of the snapshot with its backend name (`""`
/// for calls answered before a backend was chosen).
pub fn method_entries(snap: &Snapshot) -> Vec<(String, Arc<MethodStats>)> {
    let mut v = Vec::new();
    for fe in &snap.frontends {
        v.extend(
            fe.stats
                .grpc
                .entries()
                .into_iter()
                .map(|m| (String::new(), m)),
        );
    }
    for b in &snap.backends {
        v.extend(
            b.stats
                .grpc
                .entries()
                .into_iter()
                .map(|m| (b.name.clone(), m)),
        );
    }
    v
}

fn grpc_families(snap: &Snapshot) -> Vec<Family> {
    use names::*;
    let mut calls = Family::counter(
        GRPC_REQUESTS,
        "gRPC calls by final grpc-status (OK always, other codes once seen).",
    );
    let mut dur = Family::histogram(
        GRPC_REQUEST_DURATION,
        "Time from the request head to the end of the response.",
    );
    let mut sdur = Family::histogram(
        GRPC_STREAM_DURATION,
        "Duration of streaming calls (more than one message one way).",
    );
    let mut smsgs = Family::histogram(
        GRPC_STREAM_MESSAGES,
        "Messages per streaming call, by direction (received from the client, sent to it).",
    );
    let mut rx = Family::counter(
        GRPC_MESSAGES_RECEIVED,
        "gRPC messages received from clients.",
    );
    let mut tx = Family::counter(GRPC_MESSAGES_SENT, "gRPC messages sent to clients.");
    let mut act = Family::gauge(GRPC_ACTIVE_STREAMS, "gRPC calls in flight.");
    for (backend, m) in method_entries(snap) {
        let l: Labels = vec![
            ("frontend", m.frontend.to_string()),
            ("backend", backend),
            ("service", m.service.to_string()),
            ("method", m.method.to_string()),
        ];
        for (code, name) in GRPC_CODES.iter().enumerate() {
            let c = n(&m.codes[code]);
            if c > 0 || code == 0 {
                calls.u(with(&l, "grpc_code", name), c);
            }
        }
        dur.histograms.push((l.clone(), m.latency.view()));
        sdur.histograms.push((l.clone(), m.stream_duration.view()));
        smsgs
            .histograms
            .push((with(&l, "direction", "received"), m.stream_msgs_in.view()));
        smsgs
            .histograms
            .push((with(&l, "direction", "sent"), m.stream_msgs_out.view()));
        rx.u(l.clone(), n(&m.msgs_in));
        tx.u(l.clone(), n(&m.msgs_out));
        act.i(l, m.active.load(Ordering::Relaxed).max(0));
    }
    vec![calls, dur, sdur, smsgs, rx, tx, act]
}

/// The collector a scrape registers: reads the counters when encoded.
struct WeirCollector {
    stats: Arc<Stats>,
}

impl std::fmt::Debug for WeirCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeirCollector")
    }
}

impl Collector for WeirCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.stats.current();
        for f in families(&self.stats, snap.as_deref()) {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// The OpenMetrics text of every counter of `stats` (ends with `# EOF`).
pub fn render(stats: &Arc<Stats>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(WeirCollector {
        stats: stats.clone(),
    }));
    let mut out = String::with_capacity(16 << 10);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "metrics exposition failed");
    }
    out
}

/// The exporter's answer (`http-request use-service prometheus-exporter`).
pub fn response(fe: &Frontend) -> Response<ProxyBody> {
    text_response(render(&fe.registry), CONTENT_TYPE)
}

/// A `200` of `body`, not to be cached (the exporter, the stats page).
pub(crate) fn text_response(body: String, content_type: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_leave_the_suffixes_to_the_encoder() {
        let d = |name, ty| {
            let (base, unit) = descriptor(name, &ty);
            (base, unit.map(Unit::as_str))
        };
        assert_eq!(
            d(names::FRONTEND_BYTES_IN, MetricType::Counter),
            ("weir_frontend_received", Some("bytes"))
        );
        assert_eq!(
            d(names::GRPC_REQUESTS, MetricType::Counter),
            ("weir_grpc_requests", None)
        );
        assert_eq!(
            d(names::GRPC_REQUEST_DURATION, MetricType::Histogram),
            ("weir_grpc_request_duration", Some("seconds"))
        );
        assert_eq!(
            d(names::FRONTEND_CURRENT_SESSIONS, MetricType::Gauge),
            ("weir_frontend_current_sessions", None)
        );
    }

    #[test]
    fn check_status_names() {
        assert_eq!(check_status(None), "INI");
        assert_eq!(
            check_status(Some(
                "Layer4 connection problem, info: \"Connection refused\""
            )),
            "L4CON"
        );
        assert_eq!(check_status(Some("Layer7 check passed")), "L7OK");
        assert_eq!(
            check_status(Some("Layer7 wrong status, code: 503")),
            "L7STS"
        );
    }

    #[test]
    fn exposition_of_an_empty_proxy_is_openmetrics() {
        let stats = Arc::new(Stats::default());
        let text = render(&stats);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE weir_process_reloads counter\n"),
            "{text}"
        );
        assert!(text.contains("weir_process_reloads_total 0\n"), "{text}");
        assert!(
            text.contains("# UNIT weir_process_start_time_seconds seconds\n"),
            "{text}"
        );
        assert!(!text.contains("_total_total"), "{text}");
    }
}
