//! Stick tables and request-rate limiting: `stick-table` in a backend,
//! `http-request track-sc0`, `sc_http_req_rate`, and a denied gRPC call
//! answered RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms`.

mod common;

use std::time::Duration;

use common::*;

const GREET: &str = "/weir.echo.Echo/Unary";

fn config(servers: &[std::net::SocketAddr], table: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n\
         \x20   http-request track-sc0 req.hdr(x-subject) table rl\n\
         \x20   http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt 100 }}\n\
         \x20   default_backend be\n\
         backend be\n{}\
         backend rl\n    {table}\n",
        server_lines(servers, "")
    )
}

#[tokio::test]
async fn calls_over_the_rate_are_resource_exhausted_with_pushback() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let p = start_proxy(&config(
        &addrs,
        "stick-table type string len 64 size 1k expire 30s store http_req_rate(10s),http_req_cnt",
    ))
    .await;
    let ch = channel(fe_addr(&p)).await;
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..200 {
        match grpc_call(&ch, GREET, &[("x-subject", "alice")]).await {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                let pushback = s
                    .metadata()
                    .get("grpc-retry-pushback-ms")
                    .expect("pushback")
                    .to_str()
                    .unwrap()
                    .to_string();
                assert_eq!(pushback, "10000");
                limited += 1;
            }
        }
    }
    assert_eq!((ok, limited), (100, 100));
    // Another subject has its own counter.
    for _ in 0..50 {
        grpc_call(&ch, GREET, &[("x-subject", "bob")])
            .await
            .expect("bob is not limited");
    }
    let t = p.table("rl").expect("table");
    assert_eq!(t.len(), 2);
}

#[tokio::test]
async fn entries_expire_and_the_table_stays_within_size() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let p = start_proxy(&config(
        &addrs,
        "stick-table type string size 20 expire 1s store http_req_rate(10s)",
    ))
    .await;
    let ch = channel(fe_addr(&p)).await;
    let t = p.table("rl").expect("table");
    for i in 0..100 {
        grpc_call(&ch, GREET, &[("x-subject", format!("user{i}"))])
            .await
            .expect("call");
        assert!(t.len() <= 20, "table holds {} entries", t.len());
    }
    // After `expire` without traffic, a subject starts over.
    for _ in 0..100 {
        grpc_call(&ch, GREET, &[("x-subject", "carol")])
            .await
            .expect("call");
    }
    let limited = grpc_call(&ch, GREET, &[("x-subject", "carol")]).await;
    assert_eq!(limited.unwrap_err().code(), tonic::Code::ResourceExhausted);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    grpc_call(&ch, GREET, &[("x-subject", "carol")])
        .await
        .expect("expired entry starts over");
}

#[tokio::test]
async fn a_reload_with_the_same_table_keeps_its_counters() {
    let echo = echo_servers(1).await;
    let addrs: Vec<_> = echo.iter().map(|e| e.addr).collect();
    let text = config(
        &addrs,
        "stick-table type string size 100 expire 30s store http_req_cnt,http_req_rate(10s)",
    );
    let mut p = start_proxy(&text).await;
    let ch = channel(fe_addr(&p)).await;
    for _ in 0..3 {
        grpc_call(&ch, GREET, &[("x-subject", "dave")])
            .await
            .expect("call");
    }
    let before = p.table("rl").expect("table");
    let cfg = weir::config::parse_str("test.cfg", &text)
        .expect("parses")
        .config;
    p.reload(cfg).await.expect("reload");
    let after = p.table("rl").expect("table");
    assert!(std::sync::Arc::ptr_eq(&before, &after));
    assert_eq!(after.len(), 1);
}

fn errors(text: &str) -> String {
    match weir::config::parse_str("test.cfg", text) {
        Ok(_) => panic!("loaded but should not:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
    frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n";

#[test]
fn config_errors_name_the_line() {
    let e = errors(&format!(
        "{BASE}backend be\n    stick-table type blob size 10 expire 1s store http_req_cnt\n"
    ));
    assert!(e.contains("test.cfg:10"), "{e}");
    assert!(e.contains("unknown stick-table type 'blob'"), "{e}");

    let e = errors(&format!(
        "{BASE}backend be\n    stick-table type ip size 10 expire 1s store http_req_bogus\n"
    ));
    assert!(e.contains("test.cfg:10"), "{e}");
    assert!(e.contains("unknown data type 'http_req_bogus'"), "{e}");

    let e = errors(&format!(
        "{BASE}backend be\n    stick-table type ip size 10 expire 1s store sess_cnt\n"
    ));
    assert!(e.contains("not supported yet"), "{e}");

    let e = errors(&format!(
        "{BASE}    http-request track-sc0 src table nope\nbackend be\n"
    ));
    assert!(e.contains("test.cfg:9"), "{e}");
    assert!(e.contains("no stick-table named 'nope'"), "{e}");

    // No `table`: the frontend's own, which has none.
    let e = errors(&format!(
        "{BASE}    http-request track-sc1 src\nbackend be\n"
    ));
    assert!(e.contains("no stick-table named 'fe'"), "{e}");

    let e = errors(&format!(
        "{BASE}    http-request track-sc3 src table be\nbackend be\n    stick-table type ip size 10 expire 1s store http_req_cnt\n"
    ));
    assert!(e.contains("track-sc3"), "{e}");
    assert!(e.contains("test.cfg:9"), "{e}");
}

#[test]
fn a_backend_with_only_a_table_is_valid() {
    let text = format!(
        "{BASE}    http-request track-sc0 src table rl\n\
         \x20   http-request deny deny_status 429 if {{ src,table_http_req_rate(rl) gt 10 }} || {{ sc0_http_req_cnt gt 5 }}\n\
         backend be\n    server s1 127.0.0.1:1 proto h2\n\
         backend rl\n    stick-table type ip size 1m expire 10m store http_req_rate(10s),http_req_cnt\n"
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
}
