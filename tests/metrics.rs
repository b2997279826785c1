//! The Prometheus exporter and the stats page: known traffic through weir
//! (real tonic calls on 127.0.0.1), then `/metrics` scraped over HTTP and
//! parsed with a Prometheus text parser, and the stats page in HTML, CSV
//! and JSON.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;
use weir_echo::pb::{EchoReply, EchoRequest};

use common::*;

// ------------------------------------------------------------ harness

/// A GET over HTTP/1.1: status, content type, body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = within(10, tx.send_request(req)).await.expect("response");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = within(10, resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

/// One parsed scrape: the samples by name, and the raw text.
struct Scrape {
    text: String,
    samples: Vec<prometheus_parse::Sample>,
}

impl Scrape {
    /// The value of `name` whose labels include `labels` (exactly one).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples",
            found.len()
        );
        found.first().copied()
    }

    fn v(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{}", self.text))
    }

    /// The label sets of every sample of `name`.
    fn label_sets(&self, name: &str) -> Vec<HashMap<String, String>> {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| (*s.labels).clone())
            .collect()
    }

    /// A histogram's `+Inf` bucket.
    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => b
                    .iter()
                    .find(|c| c.less_than.is_infinite())
                    .map(|c| c.count),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no histogram {name}{labels:?} in\n{}", self.text))
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, ct, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    // OpenMetrics: the exposition ends with `# EOF`, every counter family
    // is declared without `_total` and sampled with it.
    assert!(text.ends_with("# EOF\n"), "no # EOF:\n{text}");
    assert!(!text.contains("_total_total"), "{text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split(' ');
            let (name, ty) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            if ty == "counter" {
                assert!(!name.ends_with("_total"), "{line}");
                assert!(
                    text.contains(&format!("\n{name}_total")),
                    "counter {name} has no _total sample"
                );
            }
        }
    }
    let samples = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("parses")
        .samples;
    Scrape { text, samples }
}

/// Scrapes until `ready` holds (counters are added when a response ends,
/// which may be a moment after the client saw it).
async fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = std::time::Instant::now();
    loop {
        let s = scrape(addr).await;
        if ready(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}:\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A unary call with echo messages on any path.
async fn call(ch: &Channel, path: &'static str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("channel ready");
    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default();
    grpc.unary(
        tonic::Request::new(EchoRequest::default()),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(drop)
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind(ANY)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

const UNARY: &str = "/weir.echo.Echo/Unary";

fn config(
    echo: SocketAddr,
    not_found: SocketAddr,
    dead: u16,
    global: &str,
    ports: (u16, u16),
) -> String {
    format!(
        "global\n{global}\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend stats\n    bind 127.0.0.1:{}\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         \x20   stats enable\n    stats uri /stats\n    stats refresh 10s\n\
         frontend fe\n    bind 127.0.0.1:{}\n    http-request deny if {{ path /deny.Svc/Call }}\n\
         \x20   use_backend nf if {{ path_beg /nf. }}\n    use_backend dead if {{ path_beg /dead. }}\n\
         \x20   default_backend be\n\
         backend be\n    server s1 {echo} proto h2\n\
         backend nf\n    server s1 {not_found} proto h2\n\
         backend dead\n    retries 0\n    server s1 127.0.0.1:{dead} proto h2\n\
         backend checked\n    server down1 127.0.0.1:{dead} proto h2 check inter 50ms fall 1 rise 1\n",
        ports.0, ports.1
    )
}

struct Setup {
    proxy: weir::proxy::Running,
    stats: SocketAddr,
    fe: SocketAddr,
    _echo: Vec<weir_echo::EchoHandle>,
}

async fn setup(global: &str) -> Setup {
    let echo = echo_servers(1).await;
    let not_found = grpc_status_server(5).await;
    let proxy = start_proxy(&config(
        echo[0].addr,
        not_found,
        dead_port(),
        global,
        (0, 0),
    ))
    .await;
    Setup {
        stats: proxy.local_addr("stats").expect("stats bound"),
        fe: proxy.local_addr("fe").expect("fe bound"),
        proxy,
        _echo: echo,
    }
}

const N: usize = 5;
const M: usize = 3;
const K: usize = 2;

/// N OK calls, M NOT_FOUND answered by a server, K UNAVAILABLE from weir
/// (dead server), one PERMISSION_DENIED by `http-request deny`.
async fn known_traffic(fe: SocketAddr) {
    let ch = channel(fe).await;
    for _ in 0..N {
        call(&ch, UNARY).await.expect("ok call");
    }
    for _ in 0..M {
        let e = call(&ch, "/nf.Svc/Get").await.expect_err("not found");
        assert_eq!(e.code(), Code::NotFound);
    }
    for _ in 0..K {
        let e = call(&ch, "/dead.Svc/Call").await.expect_err("dead");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
    let e = call(&ch, "/deny.Svc/Call").await.expect_err("denied");
    assert_eq!(e.code(), Code::PermissionDenied);
}

fn grpc_labels<'a>(
    backend: &'a str,
    service: &'a str,
    method: &'a str,
    code: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("frontend", "fe"),
        ("backend", backend),
        ("service", service),
        ("method", method),
        ("grpc_code", code),
    ]
}

// --------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_exactly() {
    let s = setup("").await;
    known_traffic(s.fe).await;
    let total = (N + M + K + 1) as f64;
    let m = scrape_until(s.stats, "every call counted", |m| {
        m.value(
            "weir_frontend_http_responses_total",
            &[("proxy", "fe"), ("code", "2xx")],
        ) == Some(total)
            && m.value(
                "weir_grpc_requests_total",
                &grpc_labels("be", "weir.echo.Echo", "Unary", "OK"),
            ) == Some(N as f64)
            && m.value(
                "weir_grpc_requests_total",
                &grpc_labels("nf", "nf.Svc", "Get", "NOT_FOUND"),
            ) == Some(M as f64)
    })
    .await;

    // gRPC calls by method and final status; OK is always there.
    let g = "weir_grpc_requests_total";
    assert_eq!(
        m.v(g, &grpc_labels("be", "weir.echo.Echo", "Unary", "OK")),
        N as f64
    );
    assert_eq!(
        m.v(g, &grpc_labels("nf", "nf.Svc", "Get", "NOT_FOUND")),
        M as f64
    );
    assert_eq!(m.v(g, &grpc_labels("nf", "nf.Svc", "Get", "OK")), 0.0);
    assert_eq!(
        m.v(g, &grpc_labels("dead", "dead.Svc", "Call", "UNAVAILABLE")),
        K as f64
    );
    assert_eq!(
        m.v(g, &grpc_labels("", "deny.Svc", "Call", "PERMISSION_DENIED")),
        1.0,
        "a call denied before routing has backend=\"\""
    );
    let mut sets = m.label_sets(g);
    sets.sort_by_key(|l| format!("{l:?}"));
    let mut keys: Vec<&String> = sets[0].keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["backend", "frontend", "grpc_code", "method", "service"]
    );
    assert_eq!(
        m.value(
            g,
            &grpc_labels("be", "weir.echo.Echo", "Unary", "UNAVAILABLE")
        ),
        None,
        "codes never seen have no line"
    );
    assert_eq!(sets.len(), 7, "{sets:#?}");
    assert_eq!(
        m.histogram_count(
            "weir_grpc_request_duration_seconds",
            &[("backend", "be"), ("method", "Unary")]
        ),
        N as f64
    );
    assert_eq!(
        m.v(
            "weir_grpc_messages_received_total",
            &[("backend", "be"), ("method", "Unary")]
        ),
        N as f64
    );
    assert_eq!(
        m.v(
            "weir_grpc_active_streams",
            &[("backend", "be"), ("method", "Unary")]
        ),
        0.0
    );

    // Frontend.
    let fe = [("proxy", "fe")];
    assert_eq!(m.v("weir_frontend_http_requests_total", &fe), total);
    assert_eq!(m.v("weir_frontend_requests_denied_total", &fe), 1.0);
    assert_eq!(m.v("weir_frontend_request_errors_total", &fe), 0.0);
    assert_eq!(
        m.v("weir_frontend_sessions_total", &fe),
        1.0,
        "one client connection"
    );
    assert_eq!(m.v("weir_frontend_max_sessions", &fe), 1.0);

    // Backends and servers.
    let srv = |b: &'static str| [("proxy", b), ("server", "s1")];
    assert_eq!(
        m.v(
            "weir_backend_http_responses_total",
            &[("proxy", "nf"), ("code", "2xx")]
        ),
        M as f64
    );
    assert_eq!(
        m.v(
            "weir_server_http_responses_total",
            &[("proxy", "be"), ("server", "s1"), ("code", "2xx")]
        ),
        N as f64
    );
    assert_eq!(m.v("weir_server_sessions_total", &srv("be")), N as f64);
    assert_eq!(
        m.v("weir_backend_http_requests_total", &[("proxy", "be")]),
        N as f64
    );
    assert_eq!(
        m.v(
            "weir_server_grpc_requests_total",
            &[
                ("proxy", "nf"),
                ("server", "s1"),
                ("grpc_code", "NOT_FOUND")
            ]
        ),
        M as f64
    );
    assert_eq!(
        m.v("weir_server_connection_errors_total", &srv("dead")),
        K as f64
    );
    assert_eq!(
        m.v("weir_backend_connection_errors_total", &[("proxy", "dead")]),
        K as f64
    );
    assert_eq!(m.v("weir_server_connection_errors_total", &srv("be")), 0.0);
    assert!(m.v("weir_server_received_bytes_total", &srv("be")) > 0.0);
    assert!(m.v("weir_server_upstream_connections", &srv("be")) >= 1.0);
    for (state, want) in [("UP", 1.0), ("DOWN", 0.0), ("MAINT", 0.0), ("DRAIN", 0.0)] {
        assert_eq!(
            m.v(
                "weir_server_status",
                &[("proxy", "be"), ("server", "s1"), ("state", state)]
            ),
            want,
            "{state}"
        );
    }
    assert_eq!(m.v("weir_backend_status", &[("proxy", "be")]), 1.0);
    assert_eq!(m.v("weir_backend_active_servers", &[("proxy", "be")]), 1.0);
    assert_eq!(m.v("weir_process_reloads_total", &[]), 0.0);
    assert_eq!(
        m.v("weir_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert!(m.v("weir_process_start_time_seconds", &[]) > 1.6e9);

    // A server whose checks fail: DOWN, with HAProxy's check status.
    let down = [("proxy", "checked"), ("server", "down1")];
    let m = scrape_until(s.stats, "down1 DOWN", |m| {
        m.value("weir_server_status", &[down[0], down[1], ("state", "DOWN")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        m.v("weir_server_status", &[down[0], down[1], ("state", "UP")]),
        0.0
    );
    assert_eq!(
        m.v(
            "weir_server_check_status",
            &[down[0], down[1], ("state", "L4CON")]
        ),
        1.0
    );
    assert!(m.v("weir_server_check_failures_total", &down) >= 1.0);
    assert!(m
        .value("weir_server_check_duration_seconds", &down)
        .is_some());
    assert_eq!(m.v("weir_backend_status", &[("proxy", "checked")]), 0.0);
    assert!(
        m.value("weir_server_check_status", &[("proxy", "be")])
            .is_none(),
        "unchecked servers have no check status"
    );
    s.proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_page_html_csv_and_json() {
    let s = setup("").await;
    known_traffic(s.fe).await;
    scrape_until(s.stats, "calls counted", |m| {
        m.value(
            "weir_server_sessions_total",
            &[("proxy", "be"), ("server", "s1")],
        ) == Some(N as f64)
    })
    .await;

    let (status, ct, html) = get(s.stats, "/stats").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    for want in [
        "<meta http-equiv=\"refresh\" content=\"10\">",
        "<table class=\"px fe\" id=\"fe-fe\">",
        "<table class=\"px be\" id=\"be-be\">",
        "<table class=\"px be\" id=\"be-dead\">",
        "<tr class=\"srv\" data-backend=\"be\" data-server=\"s1\" data-state=\"no check\">",
        "<td class=\"state\">no check</td>",
        &format!("<td class=\"stot\">{N}</td>"),
        "<table class=\"grpc\" id=\"grpc-be\">",
        &format!("<tr data-code=\"OK\"><td class=\"code\">OK</td><td class=\"count\" colspan=\"2\">{N}</td></tr>"),
        &format!("<tr data-code=\"NOT_FOUND\"><td class=\"code\">NOT_FOUND</td><td class=\"count\" colspan=\"2\">{M}</td></tr>"),
        "<tr class=\"grpc-latency\">",
        "<td class=\"p50\">",
        "data-server=\"down1\"",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(html.contains(want), "missing {want:?} in\n{html}");
    }
    assert!(!html.contains("<script"), "no JavaScript");

    // A query string after the uri is fine.
    let (status, _, page) = get(s.stats, "/stats?x=1").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"be-nf\""));

    let (status, _, csv) = get(s.stats, "/stats;csv").await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    let header = lines.next().expect("header");
    let cols: Vec<&str> = header
        .strip_prefix("# ")
        .expect("# header")
        .split(',')
        .collect();
    assert_eq!(&cols[..3], ["pxname", "svname", "qcur"]);
    for c in [
        "scur",
        "smax",
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
    ] {
        assert!(cols.contains(&c), "column {c}");
    }
    let rows: Vec<HashMap<&str, &str>> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), cols.len(), "{l}");
            cols.iter().copied().zip(f).collect()
        })
        .collect();
    let row = |px: &str, sv: &str| {
        rows.iter()
            .find(|r| r["pxname"] == px && r["svname"] == sv)
            .unwrap_or_else(|| panic!("no row {px}/{sv} in\n{csv}"))
    };
    assert_eq!(row("be", "s1")["stot"], N.to_string());
    assert_eq!(row("be", "s1")["grpc_ok"], N.to_string());
    assert_eq!(row("nf", "BACKEND")["grpc_err"], M.to_string());
    assert_eq!(row("dead", "s1")["econ"], K.to_string());
    assert_eq!(row("fe", "FRONTEND")["dreq"], "1");
    assert_eq!(row("fe", "FRONTEND")["status"], "OPEN");

    let (status, ct, json) = get(s.stats, "/stats;json").await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    let be = doc["backends"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == "be"))
        .expect("backend be");
    assert_eq!(be["servers"][0]["name"], "s1");
    assert_eq!(be["servers"][0]["stot"], N as u64);
    assert_eq!(be["grpc"]["codes"]["OK"], N as u64);
    assert!(be["grpc"]["p50_seconds"].as_f64().is_some());
    let methods = doc["grpc_methods"].as_array().expect("methods");
    assert!(methods
        .iter()
        .any(|m| m["backend"] == "" && m["codes"]["PERMISSION_DENIED"] == 1));
    s.proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_beyond_the_limit_count_as_other() {
    let s = setup("    metrics-max-methods 2\n").await;
    let ch = channel(s.fe).await;
    for path in ["/nf.Svc/A", "/nf.Svc/B", "/nf.Svc/C", "/nf.Svc/C"] {
        let _ = call(&ch, path).await;
    }
    let g = "weir_grpc_requests_total";
    let m = scrape_until(s.stats, "other counted", |m| {
        m.value(g, &grpc_labels("nf", "other", "other", "NOT_FOUND")) == Some(2.0)
    })
    .await;
    assert_eq!(m.v(g, &grpc_labels("nf", "nf.Svc", "A", "NOT_FOUND")), 1.0);
    assert_eq!(m.v(g, &grpc_labels("nf", "nf.Svc", "B", "NOT_FOUND")), 1.0);
    assert_eq!(
        m.value(g, &grpc_labels("nf", "nf.Svc", "C", "NOT_FOUND")),
        None
    );
    s.proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_reload() {
    let echo = echo_servers(1).await;
    let not_found = grpc_status_server(5).await;
    let dead = dead_port();
    let ports = (dead_port(), dead_port());
    let text = config(echo[0].addr, not_found, dead, "", ports);
    let load = |t: &str| match weir::config::parse_str("weir.cfg", t) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    let mut proxy = weir::proxy::start(load(&text)).await.expect("starts");
    let stats = proxy.local_addr("stats").expect("stats");
    let fe = proxy.local_addr("fe").expect("fe");
    let ch = channel(fe).await;
    for _ in 0..N {
        call(&ch, UNARY).await.expect("ok");
    }
    let ok = grpc_labels("be", "weir.echo.Echo", "Unary", "OK");
    scrape_until(stats, "before reload", |m| {
        m.value("weir_grpc_requests_total", &ok) == Some(N as f64)
    })
    .await;
    proxy.reload(load(&text)).await.expect("reload");
    let ch = channel(fe).await;
    call(&ch, UNARY).await.expect("ok after reload");
    let m = scrape_until(stats, "after reload", |m| {
        m.value("weir_grpc_requests_total", &ok) == Some((N + 1) as f64)
    })
    .await;
    assert_eq!(m.v("weir_process_reloads_total", &[]), 1.0);
    assert_eq!(
        m.v(
            "weir_server_sessions_total",
            &[("proxy", "be"), ("server", "s1")]
        ),
        (N + 1) as f64
    );
    assert_eq!(
        m.v("weir_backend_http_requests_total", &[("proxy", "be")]),
        (N + 1) as f64
    );
    proxy.shutdown(Duration::from_secs(2)).await;
}
