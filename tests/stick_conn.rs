//! Connection-level stick counters: `tcp-request connection track-sc* /
//! reject / accept / sc-inc-gpc0`, the `conn_cur`, `conn_cnt`,
//! `conn_rate`, `http_err_*` and `gpc0*` data types, and the config errors
//! around them.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir::acl::Sample;
use weir::stick::Data;

const GREET: &str = "/weir.echo.Echo/Unary";

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n";

fn local() -> Sample<'static> {
    Sample::Ip("127.0.0.1".parse().expect("ip"))
}

/// Whether the proxy closed a fresh connection at once (a rejected one)
/// instead of waiting for the client to speak.
async fn closed_at_once(addr: SocketAddr) -> bool {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

fn read(p: &weir::proxy::Running, table: &str, data: Data) -> Option<i64> {
    p.table(table)
        .expect("table")
        .lookup(&local(), data, Instant::now())
}

#[tokio::test]
async fn conn_cur_limits_open_connections_per_client() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let text = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:0\n\
         \x20   tcp-request connection track-sc0 src table conns\n\
         \x20   tcp-request connection reject if {{ sc0_conn_cur gt 2 }}\n\
         \x20   http-request track-sc0 req.hdr(x-other) table conns\n\
         \x20   default_backend be\n\
         backend be\n{}\
         backend conns\n    stick-table type ip size 100 expire 30s store conn_cur,conn_cnt,conn_rate(10s),http_req_cnt\n",
        server_lines(&addrs, "")
    );
    let p = start_proxy(&text).await;
    let addr = fe_addr(&p);
    let a = channel(addr).await;
    let b = channel(addr).await;
    for ch in [&a, &b] {
        grpc_call(ch, GREET, &[("x-other", "10.9.9.9")])
            .await
            .expect("call");
    }
    assert_eq!(read(&p, "conns", Data::ConnCur), Some(2));
    // A third connection is closed at once; the first two keep working.
    assert!(closed_at_once(addr).await, "third connection accepted");
    for ch in [&a, &b] {
        grpc_call(ch, GREET, &[("x-other", "10.9.9.9")])
            .await
            .expect("call");
    }
    // The rejected connection was counted, then let go.
    assert_eq!(read(&p, "conns", Data::ConnCur), Some(2));
    assert_eq!(read(&p, "conns", Data::ConnCnt), Some(3));
    assert_eq!(read(&p, "conns", Data::ConnRate), Some(3));
    // The connection's counter is the requests' sc0: they count in it,
    // and `http-request track-sc0` is a no-op (no "1" key).
    assert_eq!(read(&p, "conns", Data::HttpReqCnt), Some(4));
    assert_eq!(p.table("conns").expect("table").len(), 1);
    let fe = p.stats().frontend("fe");
    assert_eq!(fe.denied_conn.load(Ordering::Relaxed), 1);
    // One goes away: a new one is accepted.
    drop(a);
    let p2 = &p;
    wait_for(5, "conn_cur back to 1", || {
        read(p2, "conns", Data::ConnCur) == Some(1)
    })
    .await;
    let c = channel(addr).await;
    grpc_call(&c, GREET, &[("x-other", "10.9.9.9")])
        .await
        .expect("new connection works");
    grpc_call(&b, GREET, &[("x-other", "10.9.9.9")])
        .await
        .expect("call");
}

#[tokio::test]
async fn conn_rate_limits_new_connections_and_accept_stops_the_rules() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let text = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:0\n\
         \x20   tcp-request connection accept if {{ dst_port eq 1 }}\n\
         \x20   tcp-request connection track-sc1 src table conns\n\
         \x20   tcp-request connection reject if {{ sc1_conn_rate gt 3 }}\n\
         \x20   default_backend be\n\
         backend be\n{}\
         backend conns\n    stick-table type ip size 100 expire 30s store conn_rate(10s)\n",
        server_lines(&addrs, "")
    );
    let p = start_proxy(&text).await;
    let addr = fe_addr(&p);
    for _ in 0..3 {
        let ch = channel(addr).await;
        grpc_call(&ch, GREET, &[("x", "1")]).await.expect("call");
    }
    assert!(
        closed_at_once(addr).await,
        "fourth connection within the period accepted"
    );
    assert_eq!(read(&p, "conns", Data::ConnRate), Some(4));
    // The table does not store conn_cur: no sample.
    assert_eq!(read(&p, "conns", Data::ConnCur), None);
}

#[tokio::test]
async fn tcp_mode_connections_are_tracked_and_rejected() {
    // A TCP echo server.
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let srv = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let text = format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n\
         \x20   tcp-request connection track-sc2 src table conns\n\
         \x20   tcp-request connection reject if {{ sc2_conn_cur gt 1 }}\n\
         \x20   default_backend be\n\
         backend be\n    server s1 {srv}\n\
         backend conns\n    stick-table type ip size 100 expire 30s store conn_cur\n"
    );
    let p = start_proxy(&text).await;
    let addr = fe_addr(&p);
    let mut first = tokio::net::TcpStream::connect(addr).await.expect("connect");
    first.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    within(5, first.read_exact(&mut buf)).await.expect("echo");
    assert_eq!(&buf, b"ping");
    assert!(closed_at_once(addr).await, "second connection accepted");
    first.write_all(b"pong").await.expect("write");
    within(5, first.read_exact(&mut buf)).await.expect("echo");
    assert_eq!(&buf, b"pong");
    drop(first);
    let p2 = &p;
    wait_for(5, "conn_cur back to 0", || {
        read(p2, "conns", Data::ConnCur) == Some(0)
    })
    .await;
    let mut again = tokio::net::TcpStream::connect(addr).await.expect("connect");
    again.write_all(b"more").await.expect("write");
    within(5, again.read_exact(&mut buf)).await.expect("echo");
    assert_eq!(&buf, b"more");
    let fe = p.stats().frontend("fe");
    assert_eq!(fe.denied_conn.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_caller_with_too_many_errors_is_denied() {
    // Every call fails UNAUTHENTICATED at the server.
    let unauth = grpc_status_server(16).await;
    let text = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:0\n\
         \x20   http-request track-sc0 req.hdr(x-subject) table errs\n\
         \x20   http-request deny deny_status 429 if {{ sc0_http_err_rate gt 4 }}\n\
         \x20   default_backend be\n\
         backend be\n    server s1 {unauth} proto h2\n\
         backend errs\n    stick-table type string size 100 expire 30s store http_err_rate(10s),http_err_cnt\n"
    );
    let p = start_proxy(&text).await;
    let ch = channel(fe_addr(&p)).await;
    for _ in 0..5 {
        let s = grpc_call(&ch, GREET, &[("x-subject", "mallory")])
            .await
            .expect_err("server says no");
        assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    }
    let s = grpc_call(&ch, GREET, &[("x-subject", "mallory")])
        .await
        .expect_err("denied");
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    // Another caller still reaches the server.
    let s = grpc_call(&ch, GREET, &[("x-subject", "alice")])
        .await
        .expect_err("server says no");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    let t = p.table("errs").expect("table");
    let key = Sample::Str("alice".into());
    assert_eq!(t.lookup(&key, Data::HttpErrCnt, Instant::now()), Some(1));
}

#[tokio::test]
async fn gpc0_set_by_a_rule_blocks_later_calls() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let text = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:0\n\
         \x20   http-request track-sc0 req.hdr(x-subject) table flags\n\
         \x20   http-request deny deny_status 403 if {{ sc0_get_gpc0 gt 0 }}\n\
         \x20   http-request sc-inc-gpc0(0) if {{ path_end /Ban }}\n\
         \x20   default_backend be\n\
         backend be\n{}\
         backend flags\n    stick-table type string size 100 expire 30s store gpc0,gpc0_rate(1m)\n",
        server_lines(&addrs, "")
    );
    let p = start_proxy(&text).await;
    let ch = channel(fe_addr(&p)).await;
    grpc_call(&ch, GREET, &[("x-subject", "eve")])
        .await
        .expect("not flagged yet");
    // Flagged by this call (which still goes through: the deny rule ran first).
    let _ = grpc_call(&ch, "/weir.echo.Echo/Ban", &[("x-subject", "eve")]).await;
    let s = grpc_call(&ch, GREET, &[("x-subject", "eve")])
        .await
        .expect_err("flagged");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    grpc_call(&ch, GREET, &[("x-subject", "frank")])
        .await
        .expect("frank is not flagged");
    let t = p.table("flags").expect("table");
    let key = Sample::Str("eve".into());
    assert_eq!(t.lookup(&key, Data::Gpc0, Instant::now()), Some(1));
    assert_eq!(t.lookup(&key, Data::Gpc0Rate, Instant::now()), Some(1));
}

#[tokio::test]
async fn src_fetches_read_the_proxy_table_by_client_address() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    // A listen section: its own table is the default of `src_*`.
    let text = format!(
        "{DEFAULTS}listen fe\n    bind 127.0.0.1:0\n\
         \x20   stick-table type ip size 10 expire 30s store http_req_cnt,gpc0\n\
         \x20   tcp-request connection track-sc0 src\n\
         \x20   tcp-request connection reject if {{ src_get_gpc0 gt 0 }}\n\
         \x20   tcp-request connection sc-inc-gpc0(0) if {{ src,table_http_req_cnt(fe) ge 2 }}\n\
         {}",
        server_lines(&addrs, "")
    );
    let p = start_proxy(&text).await;
    let addr = fe_addr(&p);
    let ch = channel(addr).await;
    for _ in 0..2 {
        grpc_call(&ch, GREET, &[("x", "1")]).await.expect("call");
    }
    // The next connection sees 2 requests: gpc0 goes to 1; the one after
    // that is rejected.
    let again = channel(addr).await;
    grpc_call(&again, GREET, &[("x", "1")]).await.expect("call");
    assert_eq!(read(&p, "fe", Data::Gpc0), Some(1));
    assert!(closed_at_once(addr).await, "flagged client accepted");
}

fn errors(text: &str) -> String {
    match weir::config::parse_str("test.cfg", text) {
        Ok(_) => panic!("loaded but should not:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Lines 1-6; the frontend's rules start at line 7.
const BASE: &str = "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
    frontend fe\n";
const TAIL: &str = "    bind 127.0.0.1:0\n    default_backend be\nbackend be\n    server s1 127.0.0.1:1 proto h2\n\
    backend t\n    stick-table type ip size 10 expire 1s store conn_cur,http_err_rate(10s),gpc0\n";

fn error_at_line_7(rule: &str, what: &str) {
    let e = errors(&format!("{BASE}    {rule}\n{TAIL}"));
    assert!(e.contains("test.cfg:7"), "{rule}: {e}");
    assert!(e.contains(what), "{rule}: {e}");
}

#[test]
fn config_errors_name_the_line() {
    error_at_line_7(
        "tcp-request connection reject if { path /x }",
        "fetch method 'path' extracts information from the HTTP request",
    );
    error_at_line_7(
        "tcp-request connection track-sc0 req.hdr(x) table t",
        "not available in 'tcp-request connection' rules",
    );
    error_at_line_7("tcp-request connection track-sc3 src table t", "track-sc3");
    error_at_line_7(
        "tcp-request content accept",
        "'tcp-request content' is not supported yet",
    );
    error_at_line_7(
        "tcp-request inspect-delay 5s",
        "'tcp-request inspect-delay' is not supported yet",
    );
    error_at_line_7("tcp-request connection silent-drop", "is not supported yet");
    error_at_line_7("tcp-request connection bogus", "unknown action 'bogus'");
    error_at_line_7(
        "tcp-request connection sc-inc-gpc0(3)",
        "the stick counter must be 0, 1 or 2",
    );
    error_at_line_7(
        "http-request deny if { sc_http_err_rate(0,nope) gt 1 }",
        "'nope'",
    );
    error_at_line_7("http-request deny if { src_conn_cur(nope) gt 1 }", "'nope'");
    error_at_line_7(
        "http-request deny if { src,table_gpc0(nope) gt 1 }",
        "'nope'",
    );
    error_at_line_7(
        "http-request deny if { sc1_gpc0_rate(be) gt 1 }",
        "no stick-table",
    );
    error_at_line_7(
        "tcp-request connection track-sc0 src table nope",
        "no stick-table named 'nope'",
    );
    // An acl line with an unknown table, used by a rule: the rule's line.
    let e = errors(&format!(
        "{BASE}    acl bad sc0_conn_cur(nope) gt 1\n    http-request deny if bad\n{TAIL}"
    ));
    assert!(e.contains("test.cfg:8"), "{e}");
    assert!(e.contains("'nope'"), "{e}");

    let table = |store: &str| {
        errors(&format!(
            "{BASE}{TAIL}backend u\n    stick-table type ip size 10 store {store}\n"
        ))
    };
    let e = table("conn_rate");
    assert!(e.contains("test.cfg:14"), "{e}");
    assert!(e.contains("'store conn_rate' needs a period"), "{e}");
    let e = table("http_err_rate(0s)");
    assert!(e.contains("must not be 0"), "{e}");
    let e = table("gpc0_rate(abc)");
    assert!(e.contains("'store gpc0_rate'"), "{e}");
    let e = table("conn_cur(1s)");
    assert!(e.contains("takes no argument"), "{e}");
    let e = table("gpc1");
    assert!(e.contains("'store gpc1' is not supported yet"), "{e}");
    let e = table("conn_bogus");
    assert!(e.contains("unknown data type 'conn_bogus'"), "{e}");

    // Not in a defaults or backend section.
    let e = errors(&format!(
        "defaults\n    tcp-request connection reject\n{}{TAIL}",
        &BASE["defaults\n".len()..]
    ));
    assert!(e.contains("test.cfg:2"), "{e}");
    assert!(e.contains("'tcp-request' is not supported yet"), "{e}");
}

#[test]
fn connection_rules_with_connection_fetches_load() {
    let text = format!(
        "{BASE}    tcp-request connection accept if {{ src 10.0.0.0/8 }}\n\
         \x20   tcp-request connection track-sc0 src table t\n\
         \x20   tcp-request connection track-sc1 dst_port table t\n\
         \x20   tcp-request connection sc-inc-gpc0(0) if {{ sc0_conn_cur gt 10 }}\n\
         \x20   tcp-request connection reject if {{ sc0_get_gpc0 gt 0 }} || {{ src,table_conn_cur(t) gt 100 }} || {{ fe_name -m str x }}\n\
         \x20   tcp-request connection reject unless {{ always_true }}\n\
         \x20   http-request sc-inc-gpc0(1)\n\
         \x20   http-request deny deny_status 429 if {{ sc_http_err_rate(0) gt 10 }} || {{ src_http_err_rate(t) gt 10 }}\n\
         {TAIL}"
    );
    let loaded = weir::config::parse_str("test.cfg", &text).expect("loads");
    assert!(
        loaded.warnings.is_empty(),
        "{:?}",
        loaded
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert_eq!(loaded.config.frontends[0].tcp_request_connection.len(), 6);
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    within(5, s.read_to_end(&mut out)).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_stats_page_lists_the_stick_tables() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let text = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:0\n\
         \x20   tcp-request connection track-sc0 src table rl\n\
         \x20   tcp-request connection reject if {{ sc0_conn_cur gt 100 }}\n\
         \x20   stats enable\n    stats uri /stats\n\
         \x20   default_backend be\n\
         backend be\n{}\
         backend rl\n    stick-table type ip size 1k expire 30s store conn_cur,http_req_rate(10s)\n",
        server_lines(&addrs, "")
    );
    let p = start_proxy(&text).await;
    let addr = fe_addr(&p);
    let html = http_get(addr, "/stats").await;
    assert!(
        html.contains("<table class=\"stick\" id=\"stick-tables\">"),
        "{html}"
    );
    assert!(
        html.contains("<tr data-table=\"rl\"><td class=\"name\">rl</td><td class=\"type\">ip</td><td class=\"size\">1024</td><td class=\"used\">1</td><td class=\"store\">conn_cur,http_req_rate(10s)</td><td class=\"expire\">30s</td></tr>"),
        "{html}"
    );
    let json = http_get(addr, "/stats;json").await;
    let (start, end) = (json.find('{').expect("{"), json.rfind('}').expect("}"));
    let doc: serde_json::Value = serde_json::from_str(&json[start..=end]).expect("json");
    let t = &doc["stick_tables"][0];
    assert_eq!(t["name"], "rl");
    assert_eq!(t["used"], 1);
    assert_eq!(t["store"][0], "conn_cur");
    assert_eq!(doc["frontends"][0]["dcon"], 0);
}

#[tokio::test]
async fn sc_fetches_are_readable_from_log_format() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let (sock, log_addr) = log_socket().await;
    let text = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:0\n\
         \x20   log {log_addr} format raw local0\n\
         \x20   log-format \"conn=%[sc0_conn_cur] reqs=%[sc_http_req_cnt(0)] rate=%[sc0_http_req_rate] sub=%[sc_http_req_cnt(1)]\"\n\
         \x20   tcp-request connection track-sc0 src table conns\n\
         \x20   default_backend be\n\
         backend be\n{}\
         backend conns\n    stick-table type ip size 100 expire 30s store conn_cur,http_req_cnt,http_req_rate(10s)\n",
        server_lines(&addrs, "")
    );
    let p = start_proxy(&text).await;
    let ch = channel(fe_addr(&p)).await;
    grpc_call::<&str>(&ch, GREET, &[]).await.expect("call");
    let first = recv_text(&sock).await;
    grpc_call::<&str>(&ch, GREET, &[]).await.expect("call");
    let second = recv_text(&sock).await;
    // The connection's counters, as the request ends: one connection
    // open, the requests counted so far; sc1 is not tracked ("-").
    assert!(first.ends_with("conn=1 reqs=1 rate=1 sub=-"), "{first}");
    assert!(second.ends_with("conn=1 reqs=2 rate=2 sub=-"), "{second}");
}

#[tokio::test]
async fn tcp_mode_use_backend_reads_connection_counters() {
    // Two TCP servers that each answer with their own name.
    let mut srvs = Vec::new();
    for name in [&b"one"[..], &b"two"[..]] {
        let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
        srvs.push(l.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(name).await;
                });
            }
        });
    }
    let text = format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n\
         \x20   tcp-request connection track-sc0 src table conns\n\
         \x20   use_backend second if {{ sc0_conn_cnt gt 2 }}\n\
         \x20   default_backend first\n\
         backend first\n    server s1 {}\n\
         backend second\n    server s2 {}\n\
         backend conns\n    stick-table type ip size 100 expire 30s store conn_cnt\n",
        srvs[0], srvs[1]
    );
    let p = start_proxy(&text).await;
    let addr = fe_addr(&p);
    let mut got = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 3];
        within(5, s.read_exact(&mut buf)).await.expect("answer");
        got.push(String::from_utf8_lossy(&buf).into_owned());
    }
    // The third connection of this client onwards goes to `second`.
    assert_eq!(got, ["one", "one", "two", "two"]);
}

/// examples/grpc-rate-limit.cfg as shipped, addresses swapped for test ones.
#[tokio::test]
async fn the_rate_limit_example_works_as_documented() {
    let echo = echo_servers(1).await;
    let mut text = std::fs::read_to_string("examples/grpc-rate-limit.cfg").expect("example");
    for port in ["3004", "8405"] {
        text = text.replace(&format!("bind 127.0.0.1:{port}"), "bind 127.0.0.1:0");
    }
    for port in ["50051", "50052", "50053"] {
        text = text.replace(&format!("127.0.0.1:{port}"), &echo[0].addr.to_string());
    }
    let p = start_proxy(&text).await;
    let addr = p.local_addr("fe_grpc").expect("fe_grpc");
    let ch = channel(addr).await;
    let call = |who: &'static str| {
        let ch = ch.clone();
        async move { grpc_call(&ch, GREET, &[("x-client", who)]).await }
    };
    // 100 calls in 10 s per caller go through; the 101st is refused with
    // the rate period as pushback.
    for _ in 0..100 {
        call("alice").await.expect("within the limit");
    }
    let e = call("alice").await.expect_err("over the limit");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert_eq!(
        e.metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()),
        Some("10000")
    );
    // Each refusal is a client error: past 10 of them, 403.
    for _ in 0..10 {
        let e = call("alice").await.expect_err("over the limit");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    }
    let e = call("alice").await.expect_err("too many errors");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Another caller is not affected.
    call("bob").await.expect("another caller");
    // 20 connections from one address at once: the 21st is closed at once.
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    call("bob").await.expect("20 connections are fine");
    assert!(closed_at_once(addr).await, "21st connection accepted");
    drop(held);
}
