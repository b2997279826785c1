//! The counters behind `/metrics` and the stats page.
//!
//! The data path only ever does relaxed atomic adds on counters it already
//! holds an `Arc` to; everything else (sums, rates, percentiles, text) is
//! computed when somebody looks. Counters belong to a *name* (frontend,
//! backend, backend/server), not to a snapshot: a reload hands the new
//! frontend, backend and server objects the counters of the old ones with
//! the same names ([`Stats::frontend`], [`Stats::backend`], [`Stats::server`]),
//! so totals keep counting across reloads, as Prometheus expects.
//!
//! gRPC calls are counted per frontend, backend, service and method from the
//! final `grpc-status` (trailers, or the header of a trailers-only answer).
//! Method names come from the request path, so a client could invent
//! unboundedly many: each backend keeps at most `limit` method entries
//! (`metrics-max-methods`, default [`DEFAULT_MAX_METHODS`]); calls to methods
//! beyond it, and to paths that are not `/package.Service/Method`, are
//! counted under `service="other", method="other"`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

/// Default for `metrics-max-methods`: distinct gRPC methods per backend.
pub const DEFAULT_MAX_METHODS: usize = 200;

/// The label of methods folded together.
pub const OTHER: &str = "other";

/// gRPC status code names, by code (0..=16), as gRPC libraries print them.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The index in [`GRPC_CODES`] a call ended with `code` counts under:
/// codes above 16 count as UNKNOWN.
pub fn code_index(code: u32) -> usize {
    if code <= 16 {
        code as usize
    } else {
        2
    }
}

/// HTTP response classes: `1xx` .. `5xx`, then `other`.
pub const HTTP_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The first letter of HAProxy's termination state (who or what ended the
/// session), for `errors by termination kind`.
pub const TERMINATIONS: [(u8, &str); 11] = [
    (b'C', "client_abort"),
    (b'S', "server_abort"),
    (b'P', "proxy"),
    (b'L', "local"),
    (b'R', "resource"),
    (b'I', "internal"),
    (b'D', "down"),
    (b'U', "up"),
    (b'K', "killed"),
    (b'c', "client_timeout"),
    (b's', "server_timeout"),
];

/// Where a termination state counts in [`Traffic::terminations`]; `None`
/// for a normal end (`--`).
pub fn termination_index(state: [u8; 2]) -> Option<usize> {
    TERMINATIONS.iter().position(|(c, _)| *c == state[0])
}

/// Histogram upper bounds, in seconds (an implicit `+Inf` follows).
pub const LATENCY_BOUNDS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Upper bounds of the messages-per-stream histogram.
pub const MESSAGE_BOUNDS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0, 1e6];

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A histogram of fixed buckets: one relaxed add for the bucket, one for
/// the sum. Bounds are kept in the unit observations come in.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Integer bounds in observation units (ns for latencies).
    limits: Vec<u64>,
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    /// Sum of observations, in observation units.
    sum: AtomicU64,
    /// Observation units per bound unit (1e9 for seconds observed in ns).
    scale: f64,
}

/// A histogram as read: cumulative buckets (upper bound, count), count, sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramView {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn latency() -> Self {
        Self::new(&LATENCY_BOUNDS, 1e9)
    }

    pub fn messages() -> Self {
        Self::new(&MESSAGE_BOUNDS, 1.0)
    }

    fn new(bounds: &'static [f64], scale: f64) -> Self {
        Histogram {
            bounds,
            limits: bounds.iter().map(|b| (b * scale) as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Records one observation, in observation units.
    pub fn observe(&self, v: u64) {
        let i = self
            .limits
            .iter()
            .position(|&l| v <= l)
            .unwrap_or(self.limits.len());
        add(&self.counts[i], 1);
        add(&self.sum, v);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// Cumulative buckets, count and sum (in bound units).
    pub fn view(&self) -> HistogramView {
        let mut out = HistogramView::default();
        self.add_to(&mut out);
        out
    }

    /// Adds this histogram into `acc` (same bounds), for totals over methods.
    pub fn add_to(&self, acc: &mut HistogramView) {
        if acc.buckets.is_empty() {
            acc.buckets = self.bounds.iter().map(|b| (*b, 0)).collect();
            acc.buckets.push((f64::INFINITY, 0));
        }
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += get(c);
            if let Some(b) = acc.buckets.get_mut(i) {
                b.1 += cum;
            }
        }
        acc.count += cum;
        acc.sum += get(&self.sum) as f64 / self.scale;
    }
}

impl HistogramView {
    /// The `q` quantile (0..1), interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut prev_bound = 0.0;
        let mut prev_count = 0u64;
        for &(bound, cum) in &self.buckets {
            if cum as f64 >= rank {
                if bound.is_infinite() {
                    return Some(prev_bound);
                }
                let in_bucket = (cum - prev_count) as f64;
                let frac = if in_bucket > 0.0 {
                    (rank - prev_count as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(prev_bound + (bound - prev_bound) * frac);
            }
            prev_bound = bound;
            prev_count = cum;
        }
        Some(prev_bound)
    }
}

/// Requests (or connections) per second over the last full second, and the
/// highest such rate seen; advanced by [`Stats::tick`] once a second.
#[derive(Debug, Default)]
pub struct Rate {
    last_total: AtomicU64,
    per_sec: AtomicU64,
    max: AtomicU64,
}

impl Rate {
    fn tick(&self, total: u64) {
        let last = self.last_total.swap(total, Ordering::Relaxed);
        let r = total.saturating_sub(last);
        self.per_sec.store(r, Ordering::Relaxed);
        self.max.fetch_max(r, Ordering::Relaxed);
    }

    pub fn current(&self) -> u64 {
        get(&self.per_sec)
    }

    pub fn max(&self) -> u64 {
        get(&self.max)
    }
}

/// Traffic counters shared by frontends, backends and servers.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Client connections accepted (frontends), sessions sent (backends
    /// and servers: calls in `mode http`, connections in `mode tcp`).
    pub sessions: AtomicU64,
    /// HTTP requests (gRPC calls) received (frontend) or forwarded.
    pub requests: AtomicU64,
    /// Bytes received from clients (request bodies; tcp: client to server).
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients (response bodies; tcp: server to client).
    pub bytes_out: AtomicU64,
    /// Responses by class, see [`HTTP_CLASSES`].
    pub responses: [AtomicU64; 6],
    /// Requests denied by `http-request deny` (and `return` of an error).
    pub denied_req: AtomicU64,
    /// Responses denied by `http-response deny`.
    pub denied_resp: AtomicU64,
    /// Requests that failed before reaching a backend (bad routing, ...).
    pub req_errors: AtomicU64,
    /// Failed connections to servers.
    pub conn_errors: AtomicU64,
    /// Failed or aborted responses from servers.
    pub resp_errors: AtomicU64,
    /// Attempts tried again (`retries`).
    pub retries: AtomicU64,
    /// Retries that went to another server (`option redispatch`).
    pub redispatches: AtomicU64,
    /// Sessions that did not end normally, by [`TERMINATIONS`] letter.
    pub terminations: [AtomicU64; 11],
    pub rate: Rate,
}

impl Traffic {
    pub fn response(&self, status: u16) {
        let i = match status {
            100..=599 => (status / 100 - 1) as usize,
            _ => 5,
        };
        add(&self.responses[i], 1);
    }

    /// Counts a termination state (`----` and `--` are normal ends).
    pub fn termination(&self, state: [u8; 2]) {
        if let Some(i) = termination_index(state) {
            self.termination_at(i);
        }
    }

    /// Counts a termination by its [`termination_index`].
    pub fn termination_at(&self, i: usize) {
        add(&self.terminations[i], 1);
    }
}

/// A frontend's counters.
#[derive(Debug)]
pub struct FrontendStats {
    pub traffic: Traffic,
    /// gRPC calls answered before a backend was chosen (denied, unroutable).
    pub grpc: MethodTable,
    /// Client connections open now (all generations of the frontend).
    pub conns: AtomicI64,
    /// The most connections open at once.
    pub conns_max: AtomicI64,
    pub conn_rate: Rate,
    /// Client connections weir cut or refused, by [`ConnCut`] reason.
    pub cuts: [AtomicU64; ConnCut::ALL.len()],
    /// Client connections closed by a `tcp-request connection reject`
    /// (HAProxy's `dcon`).
    pub denied_conn: AtomicU64,
    /// `mode tcp` bytes moved by splice(2) (`option splice-*`), both
    /// directions.
    pub spliced_bytes: AtomicU64,
}

/// Why weir cut a client connection (docs/hardening.md): the `reason`
/// label of `weir_frontend_connections_cut_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnCut {
    /// GOAWAY ENHANCE_YOUR_CALM from h2's own limits: rapid reset
    /// (`tune.h2.fe.max-pending-resets`), refused or errored streams
    /// (`tune.h2.fe.max-error-resets`), CONTINUATION flood, a header list
    /// far over the limit, too many empty DATA frames. h2 does not tell
    /// which (its GOAWAY debug data is not returned to the server).
    EnhanceYourCalm,
    /// PING / SETTINGS / PRIORITY / empty DATA frames over
    /// `tune.h2.fe.max-control-frames-per-sec`.
    ControlFrameFlood,
    /// A frame over `tune.h2.max-frame-size`.
    FrameTooLarge,
    /// Bad HPACK.
    CompressionError,
    /// Any other HTTP/2 protocol error.
    ProtocolError,
    /// HTTP/1.1 request headers not complete within `timeout http-request`.
    RequestHeaderTimeout,
}

impl ConnCut {
    pub const ALL: [ConnCut; 6] = [
        ConnCut::EnhanceYourCalm,
        ConnCut::ControlFrameFlood,
        ConnCut::FrameTooLarge,
        ConnCut::CompressionError,
        ConnCut::ProtocolError,
        ConnCut::RequestHeaderTimeout,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ConnCut::EnhanceYourCalm => "enhance_your_calm",
            ConnCut::ControlFrameFlood => "control_frame_flood",
            ConnCut::FrameTooLarge => "frame_too_large",
            ConnCut::CompressionError => "compression_error",
            ConnCut::ProtocolError => "protocol_error",
            ConnCut::RequestHeaderTimeout => "request_header_timeout",
        }
    }
}

impl FrontendStats {
    pub fn conn_cut(&self, why: ConnCut) {
        add(&self.cuts[why as usize], 1);
    }

    /// Cut connections by reason label (reasons never seen included).
    pub fn cut_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        ConnCut::ALL
            .iter()
            .map(|c| (c.label(), get(&self.cuts[*c as usize])))
            .collect()
    }

    pub fn conn_opened(&self) {
        add(&self.traffic.sessions, 1);
        let n = self.conns.fetch_add(1, Ordering::Relaxed) + 1;
        self.conns_max.fetch_max(n, Ordering::Relaxed);
    }

    pub fn conn_closed(&self) {
        self.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend's counters, with its gRPC method table.
#[derive(Debug)]
pub struct BackendStats {
    pub traffic: Traffic,
    pub grpc: MethodTable,
}

/// A server's counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub traffic: Traffic,
    /// Calls answered with each gRPC status (whatever the method).
    pub grpc_codes: [AtomicU64; 17],
}

/// Counters of one gRPC method, as seen through one frontend and backend.
#[derive(Debug)]
pub struct MethodStats {
    pub frontend: Arc<str>,
    pub service: Box<str>,
    pub method: Box<str>,
    /// Calls ended with each status (codes above 16 count as UNKNOWN).
    pub codes: [AtomicU64; 17],
    /// Time from the request head to the end of the response.
    pub latency: Histogram,
    /// Calls in flight.
    pub active: AtomicI64,
    /// Length-prefixed messages received from clients / sent to clients.
    pub msgs_in: AtomicU64,
    pub msgs_out: AtomicU64,
    /// Streaming calls (more than one message one way): their duration and
    /// messages per call each way.
    pub stream_duration: Histogram,
    pub stream_msgs_in: Histogram,
    pub stream_msgs_out: Histogram,
}

impl MethodStats {
    fn new(frontend: Arc<str>, service: &str, method: &str) -> Self {
        MethodStats {
            frontend,
            service: service.into(),
            method: method.into(),
            codes: Default::default(),
            latency: Histogram::latency(),
            active: AtomicI64::new(0),
            msgs_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            stream_duration: Histogram::latency(),
            stream_msgs_in: Histogram::messages(),
            stream_msgs_out: Histogram::messages(),
        }
    }

    /// Records the end of one call.
    pub fn finish(&self, code: u32, took: Duration, msgs_in: u64, msgs_out: u64) {
        add(&self.codes[code_index(code)], 1);
        self.latency.observe_duration(took);
        add(&self.msgs_in, msgs_in);
        add(&self.msgs_out, msgs_out);
        if msgs_in > 1 || msgs_out > 1 {
            self.stream_duration.observe_duration(took);
            self.stream_msgs_in.observe(msgs_in);
            self.stream_msgs_out.observe(msgs_out);
        }
    }
}

/// The hasher of the method table (foldhash, seeded per process): it is
/// looked up once per call with a client-chosen path, but the table is
/// bounded by `metrics-max-methods`, so a fast hash that does not resist
/// collision floods is enough here (SipHash was about 1 % of the
/// instructions of a proxied call).
type FastHash = foldhash::fast::RandomState;

/// Request path -> counters, for one frontend.
type ByPath = HashMap<Box<str>, Arc<MethodStats>, FastHash>;

/// The gRPC methods of one backend, by frontend and request path, bounded.
#[derive(Debug)]
pub struct MethodTable {
    limit: usize,
    /// frontend -> path -> counters.
    map: RwLock<HashMap<Arc<str>, ByPath, FastHash>>,
}

/// `/package.Service/Method` split in two, when it is one.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    (ok(service) && ok(method)).then_some((service, method))
}

impl MethodTable {
    pub fn new(limit: usize) -> Self {
        MethodTable {
            limit,
            map: RwLock::new(HashMap::default()),
        }
    }

    /// The counters of `path` called through `frontend`: an existing entry,
    /// a new one while the table has room, else the `other` entry.
    pub fn method(&self, frontend: &str, path: &str) -> Arc<MethodStats> {
        {
            let map = self.map.read().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = map.get(frontend).and_then(|f| f.get(path)) {
                return m.clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let entries: usize = map
            .values()
            .map(|f| f.keys().filter(|k| !k.is_empty()).count())
            .sum();
        let fe_key: Arc<str> = match map.get_key_value(frontend) {
            Some((k, _)) => k.clone(),
            None => frontend.into(),
        };
        let per_fe = map.entry(fe_key.clone()).or_default();
        if let Some(m) = per_fe.get(path) {
            return m.clone();
        }
        let named = split_path(path).filter(|_| entries < self.limit);
        let (key, service, method) = match named {
            Some((s, m)) => (path, s, m),
            None => ("", OTHER, OTHER),
        };
        per_fe
            .entry(key.into())
            .or_insert_with(|| Arc::new(MethodStats::new(fe_key, service, method)))
            .clone()
    }

    /// Every entry (for exposition), in a stable order.
    pub fn entries(&self) -> Vec<Arc<MethodStats>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Arc<MethodStats>> = map.values().flat_map(|f| f.values().cloned()).collect();
        v.sort_by(|a, b| {
            (&*a.frontend, &*a.service, &*a.method).cmp(&(&*b.frontend, &*b.service, &*b.method))
        });
        v
    }
}

/// Counts gRPC length-prefixed messages in a byte stream cut anywhere
/// (5-byte header: compressed flag and big-endian length), without
/// copying payloads: only header bytes are looked at.
#[derive(Debug, Default, Clone)]
pub struct MessageCounter {
    /// Payload bytes still to skip.
    skip: u64,
    /// Header bytes seen of the next message (0..5) and the length so far.
    head: u8,
    len: u32,
    pub messages: u64,
}

impl MessageCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let b = data[0];
            data = &data[1..];
            if self.head > 0 {
                self.len = (self.len << 8) | b as u32;
            }
            self.head += 1;
            if self.head == 5 {
                self.messages += 1;
                self.skip = self.len as u64;
                self.head = 0;
                self.len = 0;
            }
        }
    }
}

/// Every counter of a running proxy, by name, shared by all its
/// generations (reloads). Entries of names gone from the configuration are
/// dropped at the next reload.
#[derive(Debug)]
pub struct Stats {
    frontends: Mutex<HashMap<String, Arc<FrontendStats>>>,
    backends: Mutex<HashMap<String, Arc<BackendStats>>>,
    servers: Mutex<HashMap<(String, String), Arc<ServerStats>>>,
    /// `metrics-max-methods`
    max_methods: usize,
    /// The snapshot being served (for the exporter and the stats page).
    current: RwLock<Weak<crate::runtime::Snapshot>>,
    /// When the process started (uptime on the stats page).
    pub started: std::time::SystemTime,
    pub started_at: std::time::Instant,
    /// Reloads so far.
    pub reloads: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_METHODS)
    }
}

/// The counters of `k`, made by `make` when there are none yet.
fn entry<K: std::hash::Hash + Eq, V>(
    m: &Mutex<HashMap<K, Arc<V>>>,
    k: K,
    make: impl FnOnce() -> V,
) -> Arc<V> {
    m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(k)
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

/// Forgets the counters of the keys `keep` refuses.
fn retain<K, V>(m: &Mutex<HashMap<K, Arc<V>>>, mut keep: impl FnMut(&K) -> bool) {
    m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k, _| keep(k));
}

impl Stats {
    pub fn new(max_methods: usize) -> Self {
        Stats {
            frontends: Mutex::default(),
            backends: Mutex::default(),
            servers: Mutex::default(),
            max_methods,
            current: RwLock::new(Weak::new()),
            started: std::time::SystemTime::now(),
            started_at: std::time::Instant::now(),
            reloads: AtomicU64::new(0),
        }
    }

    pub fn frontend(&self, name: &str) -> Arc<FrontendStats> {
        entry(&self.frontends, name.to_string(), || FrontendStats {
            traffic: Traffic::default(),
            grpc: MethodTable::new(self.max_methods),
            conns: AtomicI64::new(0),
            conns_max: AtomicI64::new(0),
            conn_rate: Rate::default(),
            cuts: Default::default(),
            denied_conn: AtomicU64::new(0),
            spliced_bytes: AtomicU64::new(0),
        })
    }

    pub fn backend(&self, name: &str) -> Arc<BackendStats> {
        entry(&self.backends, name.to_string(), || BackendStats {
            traffic: Traffic::default(),
            grpc: MethodTable::new(self.max_methods),
        })
    }

    pub fn server(&self, backend: &str, server: &str) -> Arc<ServerStats> {
        entry(
            &self.servers,
            (backend.to_string(), server.to_string()),
            ServerStats::default,
        )
    }

    /// Makes `snapshot` the one exposed, and forgets the counters of names
    /// it no longer has.
    pub fn publish(&self, snapshot: &Arc<crate::runtime::Snapshot>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(snapshot);
        let fes: std::collections::HashSet<&str> =
            snapshot.frontends.iter().map(|f| f.name.as_str()).collect();
        retain(&self.frontends, |k| fes.contains(k.as_str()));
        let bes: std::collections::HashSet<&str> =
            snapshot.backends.iter().map(|b| b.name.as_str()).collect();
        retain(&self.backends, |k| bes.contains(k.as_str()));
        let srvs: std::collections::HashSet<(&str, &str)> = snapshot
            .backends
            .iter()
            .flat_map(|b| b.servers.iter().map(|s| (b.name.as_str(), s.name.as_str())))
            .collect();
        retain(&self.servers, |(b, s)| {
            srvs.contains(&(b.as_str(), s.as_str()))
        });
    }

    /// The snapshot being served, if any.
    pub fn current(&self) -> Option<Arc<crate::runtime::Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
    }

    /// Advances every rate by one second (called once a second).
    pub fn tick(&self) {
        let Some(snap) = self.current() else { return };
        for f in &snap.frontends {
            f.stats.traffic.rate.tick(get(&f.stats.traffic.requests));
            f.stats.conn_rate.tick(get(&f.stats.traffic.sessions));
        }
        for b in &snap.backends {
            b.stats.traffic.rate.tick(get(&b.stats.traffic.sessions));
            for s in &b.servers {
                s.stats.traffic.rate.tick(get(&s.stats.traffic.sessions));
            }
        }
    }
}

/// Advances the rates once a second until `stop` turns true (the end of
/// the generation that started it).
pub async fn tick_every_second(stats: Arc<Stats>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => stats.tick(),
            _ = crate::proxy::stopping(&mut stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_counter_handles_any_cut() {
        // Three messages: 0, 3 and 300 bytes.
        let mut wire = Vec::new();
        for len in [0u32, 3, 300] {
            wire.push(0);
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for cut in 1..wire.len() {
            let mut c = MessageCounter::default();
            for chunk in wire.chunks(cut) {
                c.feed(chunk);
            }
            assert_eq!(c.messages, 3, "chunks of {cut}");
        }
    }

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = Histogram::latency();
        for _ in 0..90 {
            h.observe_duration(Duration::from_micros(300)); // <= 0.5 ms
        }
        for _ in 0..10 {
            h.observe_duration(Duration::from_millis(20)); // <= 25 ms
        }
        let v = h.view();
        assert_eq!(v.count, 100);
        assert_eq!(v.buckets[0], (0.0005, 90));
        assert_eq!(v.buckets.last().map(|b| b.1), Some(100));
        assert!((v.sum - (90.0 * 0.0003 + 10.0 * 0.02)).abs() < 1e-9);
        let p50 = v.quantile(0.5).unwrap_or_default();
        assert!(p50 > 0.0 && p50 <= 0.0005, "{p50}");
        let p99 = v.quantile(0.99).unwrap_or_default();
        assert!(p99 > 0.01 && p99 <= 0.025, "{p99}");
        assert_eq!(Histogram::latency().view().quantile(0.5), None);
    }

    #[test]
    fn method_table_is_bounded() {
        let t = MethodTable::new(2);
        let a = t.method("fe", "/pkg.Svc/A");
        assert_eq!((&*a.service, &*a.method), ("pkg.Svc", "A"));
        assert!(Arc::ptr_eq(&a, &t.method("fe", "/pkg.Svc/A")));
        t.method("fe", "/pkg.Svc/B");
        let c = t.method("fe", "/pkg.Svc/C");
        assert_eq!((&*c.service, &*c.method), (OTHER, OTHER));
        let bad = t.method("fe", "/not a grpc path");
        assert!(Arc::ptr_eq(&c, &bad));
        // The same method through another frontend is its own entry, but
        // the table is full.
        let other_fe = t.method("fe2", "/pkg.Svc/A");
        assert_eq!(&*other_fe.method, OTHER);
        assert_eq!(t.entries().len(), 4);
    }

    #[test]
    fn split_path_accepts_grpc_paths_only() {
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        for bad in ["", "/", "/svc", "/svc/", "//m", "/a/b/c", "/a b/c", "svc/m"] {
            assert_eq!(split_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn traffic_classes_and_terminations() {
        let t = Traffic::default();
        for s in [101, 200, 204, 302, 404, 503, 0, 700] {
            t.response(s);
        }
        let v: Vec<u64> = t.responses.iter().map(get).collect();
        assert_eq!(v, vec![1, 2, 1, 1, 1, 2]);
        t.termination(*b"--");
        t.termination(*b"CD");
        t.termination(*b"sH");
        assert_eq!(get(&t.terminations[0]), 1);
        assert_eq!(get(&t.terminations[10]), 1);
        assert_eq!(t.terminations.iter().map(get).sum::<u64>(), 2);
    }
}
