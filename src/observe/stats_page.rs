//! The stats page (`stats enable`, `stats uri <prefix>`), in the spirit of
//! HAProxy's: one table per frontend and per backend, a row per server
//! coloured by state, and a gRPC panel per backend. `<uri>;csv` gives
//! HAProxy-style CSV and `<uri>;json` a JSON document of the same counters.
//!
//! Everything is read from the served snapshot when the page is asked for
//! ([`crate::observe::stats`]); every name from the configuration is
//! HTML-escaped. No external assets: inline CSS, no JavaScript.
//!
//! The HTML is a contract for tests (keep it): frontend tables
//! `<table class="px fe" id="fe-NAME">` with `<td class="scur">`; backend
//! tables `<table class="px be" id="be-NAME">` with server rows
//! `<tr class="srv" data-backend=.. data-server=.. data-state=..>` holding
//! `<td class="state">` and `<td class="stot">`; gRPC panels
//! `<table class="grpc" id="grpc-BE">` with `<tr data-code="OK">` rows
//! (`<td class="code">`, `<td class="count">`) and a `<tr class="grpc-latency">`
//! row with `<td class="p50">` and `<td class="p99">`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{request, Response};
use serde_json::{json, Value};

use crate::backend::{Backend, Server};
use crate::config::{Service, StatsPage};
use crate::http::body::ProxyBody;
use crate::observe::metrics::{
    self, backend_inflight, health_of, method_entries, server_state, text_response as text,
    up_servers,
};
use crate::observe::stats::{
    HistogramView, MethodStats, Stats, Traffic, GRPC_CODES, HTTP_CLASSES, TERMINATIONS,
};
use crate::runtime::{Frontend, Snapshot};

/// Answers a request handed to a service (`use-service`, the stats page).
pub fn serve(service: &Service, fe: &Frontend, parts: &request::Parts) -> Response<ProxyBody> {
    match service {
        Service::PrometheusExporter => metrics::response(fe),
        Service::Stats(page) => {
            let rest = parts
                .uri
                .path_and_query()
                .and_then(|pq| pq.as_str().get(page.uri.len()..))
                .unwrap_or("");
            let stats = &fe.registry;
            let snap = stats.current();
            let snap = snap.as_deref();
            if rest.starts_with(";csv") {
                text(csv(stats, snap), "text/csv; charset=utf-8")
            } else if rest.starts_with(";json") {
                text(json_doc(page, stats, snap).to_string(), "application/json")
            } else {
                text(html(page, stats, snap), "text/html; charset=utf-8")
            }
        }
    }
}

// ------------------------------------------------------------- reading

fn n(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// What the page calls a server's state: HAProxy's `UP`, `DOWN`,
/// `MAINT`, `DRAIN`, and `no check` for an unchecked server in service.
pub fn page_state(s: &Server) -> &'static str {
    match server_state(s) {
        "UP" if s.check.is_none() => "no check",
        other => other,
    }
}

/// gRPC calls of some method entries: per code, and the merged latency.
#[derive(Default)]
struct GrpcSum {
    codes: [u64; 17],
    latency: HistogramView,
}

impl GrpcSum {
    fn of<'a>(entries: impl IntoIterator<Item = &'a MethodStats>) -> GrpcSum {
        let mut g = GrpcSum::default();
        for m in entries {
            g.add(m);
        }
        g
    }

    fn add(&mut self, m: &MethodStats) {
        for (i, c) in m.codes.iter().enumerate() {
            self.codes[i] += n(c);
        }
        m.latency.add_to(&mut self.latency);
    }

    fn ok(&self) -> u64 {
        self.codes[0]
    }

    fn err(&self) -> u64 {
        self.codes[1..].iter().sum()
    }
}

/// gRPC calls that came in through frontend `name` (whatever backend).
fn frontend_grpc(snap: &Snapshot, name: &str) -> GrpcSum {
    let entries = method_entries(snap);
    GrpcSum::of(
        entries
            .iter()
            .filter(|(_, m)| &*m.frontend == name)
            .map(|(_, m)| &**m),
    )
}

fn server_grpc(s: &Server) -> (u64, u64) {
    let c = &s.stats.grpc_codes;
    (n(&c[0]), c[1..].iter().map(n).sum())
}

fn backend_status(b: &Backend) -> &'static str {
    if metrics::backend_up(b) {
        "UP"
    } else {
        "DOWN"
    }
}

// ---------------------------------------------------------------- HTML

/// HTML-escapes `s` (text and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1h02m`, `1m12s`, `42s`.
pub fn human_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A latency for humans: `850µs`, `1.20ms`, `2.50s`; `-` when unknown.
pub fn human_latency(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 0.001 => format!("{:.0}µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.2}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

fn human_duration(d: Duration) -> String {
    human_latency(Some(d.as_secs_f64()))
}

/// Bytes for humans: `512`, `1.5K`, `3.2M`, `1.0G`.
fn human_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (size, unit) in UNITS {
        if b >= size {
            return format!("{:.1}{unit}", b as f64 / size as f64);
        }
    }
    b.to_string()
}

const CSS: &str = "body{font-family:Arial,Helvetica,sans-serif;font-size:12px;margin:8px;color:#000;background:#fff}\
h1{font-size:18px;margin:4px 0}h2{font-size:14px;margin:2px 0}\
.info{margin:4px 0 12px 0}.info td{padding:1px 8px 1px 0}\
table.px,table.grpc,table.legend{border-collapse:collapse;margin:4px 0 14px 0}\
table.px th,table.px td,table.grpc th,table.grpc td,table.legend td{border:1px solid #999;padding:2px 5px;text-align:right;white-space:nowrap}\
table.px th.pxname{background:#20a0a0;color:#fff;text-align:left;font-size:13px}\
table.px tr.titre th{background:#a0a0a0;color:#000}\
td.name,td.code,td.method,td.check{text-align:left}\
table.px td.check{white-space:normal;min-width:12em;max-width:22em}\
tr.frontend td,tr.backend td{background:#d0d0d0;font-weight:bold}\
tr.srv[data-state=\"UP\"] td{background:#c0ffc0}\
tr.srv[data-state=\"DOWN\"] td{background:#ff9090}\
tr.srv[data-state=\"MAINT\"] td{background:#c8b8a8}\
tr.srv[data-state=\"DRAIN\"] td{background:#a8c8f8}\
tr.srv[data-state=\"no check\"] td{background:#e8e8e8}\
.UP{background:#c0ffc0}.DOWN{background:#ff9090}.MAINT{background:#c8b8a8}.DRAIN{background:#a8c8f8}.nocheck{background:#e8e8e8}\
table.grpc th{background:#6060c0;color:#fff}";

fn html(page: &StatsPage, stats: &Stats, snap: Option<&Snapshot>) -> String {
    let mut o = String::with_capacity(32 << 10);
    o.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    if let Some(r) = page.refresh {
        let _ = write!(
            o,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    o.push_str("<title>Statistics Report for weir</title><style>");
    o.push_str(CSS);
    o.push_str("</style></head><body>\n");
    let version = if page.hide_version {
        String::new()
    } else {
        format!(" version {}", esc(env!("CARGO_PKG_VERSION")))
    };
    let _ = write!(
        o,
        "<h1>weir{version}</h1>\n<table class=\"info\"><tr><td>uptime</td><td class=\"uptime\">{}</td></tr>\
         <tr><td>reloads</td><td class=\"reloads\">{}</td></tr>\
         <tr><td>pid</td><td>{}</td></tr></table>\n",
        human_secs(stats.started_at.elapsed().as_secs()),
        stats.reloads.load(Ordering::Relaxed),
        std::process::id(),
    );
    if page.show_legends {
        o.push_str(
            "<table class=\"legend\"><tr><td class=\"UP\">UP</td><td class=\"DOWN\">DOWN</td>\
             <td class=\"MAINT\">MAINT (maintenance)</td><td class=\"DRAIN\">DRAIN (weight 0)</td>\
             <td class=\"nocheck\">no check</td></tr></table>\n\
             <p>Sessions are calls in flight (mode http) or connections (mode tcp); rates are per second \
             over the last full second; errors: req = request errors, conn = failed connections to \
             servers, resp = failed responses; latency percentiles come from histogram buckets.</p>\n",
        );
    }
    let Some(snap) = snap else {
        o.push_str("<p>No configuration is being served.</p></body></html>\n");
        return o;
    };
    for fe in &snap.frontends {
        frontend_html(&mut o, fe, snap);
    }
    for b in &snap.backends {
        backend_html(&mut o, b, stats);
    }
    tables_html(&mut o, snap);
    o.push_str("</body></html>\n");
    o
}

/// The stick tables by name: what each is and how full it is.
fn sorted_tables(snap: &Snapshot) -> Vec<&crate::stick::Table> {
    let mut v: Vec<&crate::stick::Table> = snap.tables.values().map(|t| &**t).collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn key_type(k: crate::stick::KeyType) -> String {
    use crate::stick::KeyType;
    match k {
        KeyType::Ip => "ip".into(),
        KeyType::Ipv6 => "ipv6".into(),
        KeyType::Integer => "integer".into(),
        KeyType::String(len) => format!("string len {len}"),
    }
}

fn expire_text(d: Duration) -> String {
    if d == Duration::MAX {
        "never".into()
    } else {
        crate::stick::format_period(d)
    }
}

/// `<table class="stick" id="stick-tables">`: a row per table
/// (`<tr data-table="NAME">` with `td.type`, `td.size`, `td.used`,
/// `td.store`, `td.expire`).
fn tables_html(o: &mut String, snap: &Snapshot) {
    let tables = sorted_tables(snap);
    if tables.is_empty() {
        return;
    }
    o.push_str(
        "<h2>Stick tables</h2>\n<table class=\"stick\" id=\"stick-tables\"><tr><th>name</th><th>type</th>\
         <th>size</th><th>used</th><th>store</th><th>expire</th></tr>\n",
    );
    for t in tables {
        let name = esc(&t.name);
        let _ = writeln!(
            o,
            "<tr data-table=\"{name}\"><td class=\"name\">{name}</td><td class=\"type\">{}</td>\
             <td class=\"size\">{}</td><td class=\"used\">{}</td><td class=\"store\">{}</td>\
             <td class=\"expire\">{}</td></tr>",
            esc(&key_type(t.def.key)),
            t.def.size,
            t.len(),
            esc(&t.def.stored().join(",")),
            expire_text(t.def.expire),
        );
    }
    o.push_str("</table>\n");
}

fn responses_cells(o: &mut String, t: &Traffic) {
    for (i, class) in HTTP_CLASSES.iter().enumerate() {
        let _ = write!(o, "<td class=\"hrsp_{class}\">{}</td>", n(&t.responses[i]));
    }
}

/// The cells from `stot` to `wredis`, then the responses, of a backend or
/// server row (`ereq`: `None` leaves the cell empty).
fn traffic_cells(o: &mut String, t: &Traffic, ereq: Option<u64>) {
    let _ = write!(
        o,
        "<td class=\"stot\">{}</td><td class=\"rate\">{}</td><td class=\"rate_max\">{}</td><td class=\"bin\">{}</td>\
         <td class=\"bout\">{}</td><td class=\"ereq\">{}</td><td class=\"econ\">{}</td><td class=\"eresp\">{}</td>\
         <td class=\"wretr\">{}</td><td class=\"wredis\">{}</td>",
        n(&t.sessions),
        t.rate.current(),
        t.rate.max(),
        human_bytes(n(&t.bytes_in)),
        human_bytes(n(&t.bytes_out)),
        ereq.map(|e| e.to_string()).unwrap_or_default(),
        n(&t.conn_errors),
        n(&t.resp_errors),
        n(&t.retries),
        n(&t.redispatches),
    );
    responses_cells(o, t);
}

fn responses_heads(o: &mut String) {
    for class in HTTP_CLASSES {
        let _ = write!(o, "<th>{class}</th>");
    }
}

fn frontend_html(o: &mut String, fe: &Frontend, snap: &Snapshot) {
    let name = esc(&fe.name);
    let s = &fe.stats;
    let t = &s.traffic;
    let g = frontend_grpc(snap, &fe.name);
    let _ = write!(
        o,
        "<table class=\"px fe\" id=\"fe-{name}\">\n<tr><th class=\"pxname\" colspan=\"23\">frontend {name}</th></tr>\n\
         <tr class=\"titre\"><th rowspan=\"2\"></th><th colspan=\"4\">Sessions</th><th colspan=\"3\">Rate</th>\
         <th colspan=\"2\">Bytes</th><th colspan=\"2\">Denied</th><th>Errors</th><th colspan=\"6\">Responses</th>\
         <th colspan=\"2\">gRPC</th><th rowspan=\"2\">Status</th></tr>\n\
         <tr class=\"titre\"><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>Req/s</th><th>Max</th><th>Conn/s</th>\
         <th>In</th><th>Out</th><th>Req</th><th>Resp</th><th>Req</th>"
    );
    responses_heads(o);
    o.push_str("<th>OK</th><th>Err</th></tr>\n");
    let limit = fe.maxconn.map_or("-".to_string(), |m| m.to_string());
    let _ = write!(
        o,
        "<tr class=\"frontend\"><td class=\"name\">Frontend</td><td class=\"scur\">{}</td><td class=\"smax\">{}</td>\
         <td class=\"slim\">{limit}</td><td class=\"stot\">{}</td><td class=\"rate\">{}</td><td class=\"rate_max\">{}</td>\
         <td class=\"conn_rate\">{}</td><td class=\"bin\">{}</td><td class=\"bout\">{}</td><td class=\"dreq\">{}</td>\
         <td class=\"dresp\">{}</td><td class=\"ereq\">{}</td>",
        s.conns.load(Ordering::Relaxed).max(0),
        s.conns_max.load(Ordering::Relaxed),
        n(&t.sessions),
        t.rate.current(),
        t.rate.max(),
        s.conn_rate.current(),
        human_bytes(n(&t.bytes_in)),
        human_bytes(n(&t.bytes_out)),
        n(&t.denied_req),
        n(&t.denied_resp),
        n(&t.req_errors),
    );
    responses_cells(o, t);
    let _ = write!(
        o,
        "<td class=\"grpc_ok\">{}</td><td class=\"grpc_err\">{}</td><td class=\"status\">OPEN</td></tr>\n</table>\n",
        g.ok(),
        g.err()
    );
}

fn backend_html(o: &mut String, b: &Backend, stats: &Stats) {
    let name = esc(&b.name);
    let t = &b.stats.traffic;
    let _ = write!(
        o,
        "<table class=\"px be\" id=\"be-{name}\">\n<tr><th class=\"pxname\" colspan=\"27\">backend {name}</th></tr>\n\
         <tr class=\"titre\"><th rowspan=\"2\"></th><th rowspan=\"2\">Status</th><th rowspan=\"2\">Weight</th>\
         <th rowspan=\"2\">Act</th><th rowspan=\"2\">Bck</th><th>Queue</th><th colspan=\"3\">Sessions</th>\
         <th colspan=\"2\">Rate</th><th colspan=\"2\">Bytes</th><th colspan=\"3\">Errors</th><th colspan=\"2\">Warnings</th>\
         <th colspan=\"6\">Responses</th><th colspan=\"4\">Check</th><th rowspan=\"2\">Last change</th>\
         <th rowspan=\"2\">Conns</th></tr>\n\
         <tr class=\"titre\"><th>Cur</th><th>Cur</th><th>Limit</th><th>Total</th><th>Cur</th><th>Max</th>\
         <th>In</th><th>Out</th><th>Req</th><th>Conn</th><th>Resp</th><th>Retr</th><th>Redis</th>"
    );
    responses_heads(o);
    o.push_str("<th>Result</th><th>Duration</th><th>Failed</th><th>Checks</th></tr>\n");
    for s in &b.servers {
        server_html(o, b, s, stats);
    }
    let _ = write!(
        o,
        "<tr class=\"backend\"><td class=\"name\">Backend</td><td class=\"state\">{}</td><td></td>\
         <td class=\"act\">{}</td><td class=\"bck\">{}</td><td class=\"qcur\">{}</td><td class=\"scur\">{}</td><td></td>",
        backend_status(b),
        up_servers(b, false),
        up_servers(b, true),
        b.queued(),
        backend_inflight(b),
    );
    traffic_cells(o, t, Some(n(&t.denied_req)));
    o.push_str("<td colspan=\"4\"></td><td></td><td></td></tr>\n</table>\n");
    grpc_html(o, b);
}

fn server_html(o: &mut String, b: &Backend, s: &Server, stats: &Stats) {
    let state = page_state(s);
    let t = &s.stats.traffic;
    let h = health_of(s, stats);
    let (check, duration, failed, checks) = match (&s.check, &h.reason) {
        (None, _) => (
            "-".to_string(),
            "-".to_string(),
            "-".to_string(),
            "-".to_string(),
        ),
        (Some(_), reason) => (
            format!(
                "{} {}",
                h.status,
                esc(reason.as_deref().unwrap_or("not checked yet"))
            ),
            h.duration.map_or("-".into(), human_duration),
            h.failed.to_string(),
            h.checks.to_string(),
        ),
    };
    let limit = if s.maxconn == 0 {
        "-".to_string()
    } else {
        s.maxconn.to_string()
    };
    let (act, bck) = if s.backup { ("-", "Y") } else { ("Y", "-") };
    let _ = write!(
        o,
        "<tr class=\"srv\" data-backend=\"{be}\" data-server=\"{srv}\" data-state=\"{state}\">\
         <td class=\"name\">{srv}</td><td class=\"state\">{state}</td><td class=\"weight\">{}</td>\
         <td class=\"act\">{act}</td><td class=\"bck\">{bck}</td><td class=\"qcur\"></td><td class=\"scur\">{}</td>\
         <td class=\"slim\">{limit}</td>",
        s.weight,
        s.state.inflight.load(Ordering::Relaxed),
        be = esc(&b.name),
        srv = esc(&s.name),
    );
    traffic_cells(o, t, None);
    let _ = writeln!(
        o,
        "<td class=\"check\">{check}</td><td class=\"check_duration\">{duration}</td><td class=\"chkfail\">{failed}</td>\
         <td class=\"checks\">{checks}</td><td class=\"lastchg\">{} ago</td><td class=\"conns\">{}</td></tr>",
        human_secs(h.last_change),
        metrics::upstream_connections(s),
    );
}

fn grpc_html(o: &mut String, b: &Backend) {
    let entries = b.stats.grpc.entries();
    let g = GrpcSum::of(entries.iter().map(|m| &**m));
    let name = esc(&b.name);
    let _ = write!(
        o,
        "<table class=\"grpc\" id=\"grpc-{name}\">\n<tr><th colspan=\"3\">gRPC calls of backend {name}</th></tr>\n\
         <tr><th>Code</th><th colspan=\"2\">Calls</th></tr>\n"
    );
    for (i, code) in GRPC_CODES.iter().enumerate() {
        if g.codes[i] > 0 {
            let _ = writeln!(
                o,
                "<tr data-code=\"{code}\"><td class=\"code\">{code}</td><td class=\"count\" colspan=\"2\">{}</td></tr>",
                g.codes[i]
            );
        }
    }
    let _ = writeln!(
        o,
        "<tr class=\"grpc-latency\"><td class=\"code\">latency p50 / p99</td><td class=\"p50\">{}</td><td class=\"p99\">{}</td></tr>",
        human_latency(g.latency.quantile(0.5)),
        human_latency(g.latency.quantile(0.99)),
    );
    if !entries.is_empty() {
        o.push_str("<tr><th>Method</th><th>Calls (errors)</th><th>p50 / p99 (active)</th></tr>\n");
    }
    for m in &entries {
        let one = GrpcSum::of([&**m]);
        let _ = writeln!(
            o,
            "<tr class=\"method\" data-frontend=\"{fe}\" data-method=\"{svc}/{meth}\"><td class=\"method\">{fe}: /{svc}/{meth}</td>\
             <td class=\"calls\">{} ({})</td><td class=\"latency\">{} / {} ({})</td></tr>",
            one.ok() + one.err(),
            one.err(),
            human_latency(one.latency.quantile(0.5)),
            human_latency(one.latency.quantile(0.99)),
            m.active.load(Ordering::Relaxed).max(0),
            fe = esc(&m.frontend),
            svc = esc(&m.service),
            meth = esc(&m.method),
        );
    }
    o.push_str("</table>\n");
}

// ----------------------------------------------------------------- CSV

/// The CSV columns, HAProxy's names (and order) plus weir's gRPC ones.
pub const CSV_COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "lastchg",
    "type",
    "rate",
    "rate_max",
    "check_status",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "grpc_ok",
    "grpc_err",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV row by column name (missing columns are empty).
struct Row(Vec<(&'static str, String)>);

impl Row {
    fn set(&mut self, k: &'static str, v: impl ToString) {
        self.0.push((k, v.to_string()));
    }

    fn traffic(&mut self, t: &Traffic) {
        self.set("stot", n(&t.sessions));
        self.set("bin", n(&t.bytes_in));
        self.set("bout", n(&t.bytes_out));
        self.set("rate", t.rate.current());
        self.set("rate_max", t.rate.max());
        const KEYS: [&str; 6] = [
            "hrsp_1xx",
            "hrsp_2xx",
            "hrsp_3xx",
            "hrsp_4xx",
            "hrsp_5xx",
            "hrsp_other",
        ];
        for (k, c) in KEYS.iter().zip(&t.responses) {
            self.set(k, n(c));
        }
    }

    /// Requests and responses denied (frontends and backends).
    fn denied(&mut self, t: &Traffic) {
        self.set("dreq", n(&t.denied_req));
        self.set("dresp", n(&t.denied_resp));
    }

    /// Errors and warnings of the server side (backends and servers).
    fn server_errors(&mut self, t: &Traffic) {
        self.set("econ", n(&t.conn_errors));
        self.set("eresp", n(&t.resp_errors));
        self.set("wretr", n(&t.retries));
        self.set("wredis", n(&t.redispatches));
    }

    fn write(&self, out: &mut String) {
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| {
                self.0
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| csv_field(v))
                    .unwrap_or_default()
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
}

fn csv(stats: &Stats, snap: Option<&Snapshot>) -> String {
    let mut out = format!("# {}\n", CSV_COLUMNS.join(","));
    let Some(snap) = snap else { return out };
    for fe in &snap.frontends {
        let s = &fe.stats;
        let t = &s.traffic;
        let g = frontend_grpc(snap, &fe.name);
        let mut r = Row(Vec::new());
        r.set("pxname", &fe.name);
        r.set("svname", "FRONTEND");
        r.set("scur", s.conns.load(Ordering::Relaxed).max(0));
        r.set("smax", s.conns_max.load(Ordering::Relaxed));
        r.set(
            "slim",
            fe.maxconn.map(|m| m.to_string()).unwrap_or_default(),
        );
        r.traffic(t);
        r.denied(t);
        r.set("ereq", n(&t.req_errors));
        r.set("status", "OPEN");
        r.set("type", 0);
        r.set("grpc_ok", g.ok());
        r.set("grpc_err", g.err());
        r.write(&mut out);
    }
    for b in &snap.backends {
        for s in &b.servers {
            let t = &s.stats.traffic;
            let h = health_of(s, stats);
            let (ok, err) = server_grpc(s);
            let mut r = Row(Vec::new());
            r.set("pxname", &b.name);
            r.set("svname", &s.name);
            r.set("qcur", 0);
            r.set("scur", s.state.inflight.load(Ordering::Relaxed));
            if s.maxconn > 0 {
                r.set("slim", s.maxconn);
            }
            r.traffic(t);
            r.server_errors(t);
            r.set("status", page_state(s));
            r.set("weight", s.weight);
            r.set("act", u8::from(!s.backup));
            r.set("bck", u8::from(s.backup));
            r.set("lastchg", h.last_change);
            r.set("type", 2);
            if s.check.is_some() {
                r.set("chkfail", h.failed);
                r.set("check_status", h.status);
                if let Some(d) = h.duration {
                    r.set("check_duration", d.as_millis());
                }
            }
            r.set("grpc_ok", ok);
            r.set("grpc_err", err);
            r.write(&mut out);
        }
        let t = &b.stats.traffic;
        let g = GrpcSum::of(b.stats.grpc.entries().iter().map(|m| &**m));
        let mut r = Row(Vec::new());
        r.set("pxname", &b.name);
        r.set("svname", "BACKEND");
        r.set("qcur", b.queued());
        r.set("scur", backend_inflight(b));
        r.traffic(t);
        r.denied(t);
        r.server_errors(t);
        r.set("status", backend_status(b));
        r.set(
            "weight",
            b.servers
                .iter()
                .filter(|s| s.is_up())
                .map(|s| s.weight)
                .sum::<u32>(),
        );
        r.set("act", up_servers(b, false));
        r.set("bck", up_servers(b, true));
        r.set("type", 1);
        r.set("grpc_ok", g.ok());
        r.set("grpc_err", g.err());
        r.write(&mut out);
    }
    out
}

// ---------------------------------------------------------------- JSON

/// `a`'s fields and `b`'s, in one object.
fn merged(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

/// The fields frontends, backends and servers share.
fn traffic_json(t: &Traffic) -> Value {
    json!({
        "stot": n(&t.sessions),
        "bin": n(&t.bytes_in),
        "bout": n(&t.bytes_out),
        "rate": t.rate.current(),
        "rate_max": t.rate.max(),
        "responses": classes(t),
    })
}

/// The fields of the client side (frontends and backends).
fn client_side_json(t: &Traffic) -> Value {
    json!({
        "requests": n(&t.requests),
        "dreq": n(&t.denied_req),
        "dresp": n(&t.denied_resp),
        "terminations": terminations(t),
    })
}

/// The fields of the server side (backends and servers).
fn server_side_json(t: &Traffic) -> Value {
    json!({
        "econ": n(&t.conn_errors),
        "eresp": n(&t.resp_errors),
        "wretr": n(&t.retries),
        "wredis": n(&t.redispatches),
    })
}

/// `{name: count}` of counters given in the order of their names.
fn named<'a>(names: impl IntoIterator<Item = &'a str>, counters: &[AtomicU64]) -> Value {
    let m = names.into_iter().zip(counters);
    Value::Object(m.map(|(k, c)| (k.to_string(), n(c).into())).collect())
}

fn classes(t: &Traffic) -> Value {
    named(HTTP_CLASSES, &t.responses)
}

fn terminations(t: &Traffic) -> Value {
    named(TERMINATIONS.iter().map(|(_, kind)| *kind), &t.terminations)
}

fn codes(c: &[u64; 17], always_ok: bool) -> Value {
    let mut m = serde_json::Map::new();
    for (i, code) in GRPC_CODES.iter().enumerate() {
        if c[i] > 0 || (always_ok && i == 0) {
            m.insert((*code).into(), c[i].into());
        }
    }
    Value::Object(m)
}

fn method_json(backend: &str, m: &MethodStats) -> Value {
    let one = GrpcSum::of([m]);
    json!({
        "frontend": &*m.frontend,
        "backend": backend,
        "service": &*m.service,
        "method": &*m.method,
        "calls": one.ok() + one.err(),
        "codes": codes(&one.codes, true),
        "active": m.active.load(Ordering::Relaxed).max(0),
        "messages_received": n(&m.msgs_in),
        "messages_sent": n(&m.msgs_out),
        "p50_seconds": one.latency.quantile(0.5),
        "p99_seconds": one.latency.quantile(0.99),
    })
}

fn json_doc(page: &StatsPage, stats: &Stats, snap: Option<&Snapshot>) -> Value {
    let mut doc = json!({
        "uptime_seconds": stats.started_at.elapsed().as_secs(),
        "reloads": stats.reloads.load(Ordering::Relaxed),
        "frontends": [],
        "backends": [],
        "grpc_methods": [],
    });
    if !page.hide_version {
        doc["version"] = env!("CARGO_PKG_VERSION").into();
    }
    let Some(snap) = snap else { return doc };
    #[cfg(target_os = "linux")]
    {
        doc["pipes"] = json!({
            "open": snap.pipes.open(),
            "max": snap.pipes.max(),
            "size": snap.pipes.size(),
            "refused": snap.pipes.refused(),
        });
    }
    let frontends: Vec<Value> = snap
        .frontends
        .iter()
        .map(|fe| {
            let s = &fe.stats;
            let t = &s.traffic;
            let g = frontend_grpc(snap, &fe.name);
            let own = json!({
                "name": fe.name,
                "status": "OPEN",
                "scur": s.conns.load(Ordering::Relaxed).max(0),
                "smax": s.conns_max.load(Ordering::Relaxed),
                "slim": fe.maxconn,
                "conn_rate": s.conn_rate.current(),
                "conn_rate_max": s.conn_rate.max(),
                "ereq": n(&t.req_errors),
                "conns_cut": s.cut_counts(),
                "dcon": n(&s.denied_conn),
                "spliced_bytes": n(&s.spliced_bytes),
                "grpc_codes": codes(&g.codes, true),
            });
            merged(merged(own, traffic_json(t)), client_side_json(t))
        })
        .collect();
    let backends: Vec<Value> = snap
        .backends
        .iter()
        .map(|b| {
            let t = &b.stats.traffic;
            let entries = b.stats.grpc.entries();
            let g = GrpcSum::of(entries.iter().map(|m| &**m));
            let servers: Vec<Value> = b
                .servers
                .iter()
                .map(|s| {
                    let st = &s.stats.traffic;
                    let h = health_of(s, stats);
                    let c: [u64; 17] = std::array::from_fn(|i| n(&s.stats.grpc_codes[i]));
                    let check = s.check.as_ref().map(|_| {
                        json!({
                            "status": h.status,
                            "reason": h.reason,
                            "duration_ms": h.duration.map(|d| d.as_millis() as u64),
                            "failures": h.failed,
                            "checks": h.checks,
                        })
                    });
                    let own = json!({
                        "name": s.name,
                        "status": page_state(s),
                        "weight": s.weight,
                        "backup": s.backup,
                        "scur": s.state.inflight.load(Ordering::Relaxed),
                        "slim": (s.maxconn > 0).then_some(s.maxconn),
                        "lastchg": h.last_change,
                        "check": check,
                        "upstream_connections": metrics::upstream_connections(s),
                        "grpc_codes": codes(&c, true),
                    });
                    merged(merged(own, traffic_json(st)), server_side_json(st))
                })
                .collect();
            let own = json!({
                "name": b.name,
                "status": backend_status(b),
                "qcur": b.queued(),
                "active_servers": up_servers(b, false),
                "backup_servers": up_servers(b, true),
                "active_streams": backend_inflight(b),
                "servers": servers,
                "grpc": {
                    "codes": codes(&g.codes, false),
                    "p50_seconds": g.latency.quantile(0.5),
                    "p99_seconds": g.latency.quantile(0.99),
                    "methods": entries.iter().map(|m| method_json(&b.name, m)).collect::<Vec<_>>(),
                },
            });
            let shared = merged(traffic_json(t), client_side_json(t));
            merged(merged(own, shared), server_side_json(t))
        })
        .collect();
    doc["frontends"] = frontends.into();
    doc["backends"] = backends.into();
    doc["stick_tables"] = sorted_tables(snap)
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": key_type(t.def.key),
                "size": t.def.size,
                "used": t.len(),
                "store": t.def.stored(),
                "expire": expire_text(t.def.expire),
            })
        })
        .collect::<Vec<_>>()
        .into();
    doc["grpc_methods"] = method_entries(snap)
        .iter()
        .map(|(b, m)| method_json(b, m))
        .collect::<Vec<_>>()
        .into();
    doc
}
