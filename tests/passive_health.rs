//! Passive health (issue 7): `observe layer4|layer7`, `error-limit`,
//! `on-error`: live calls judged by their final grpc-status or connection
//! errors take a server out; active checks bring it back.

mod common;

use std::net::SocketAddr;

use common::*;
use tonic::Code;
use weir_echo::pb::EchoRequest;

fn config(good: SocketAddr, bad: SocketAddr, bad_opts: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance roundrobin\n\
         \x20   server s1 {good} proto h2\n\
         \x20   server s2 {bad} proto h2 check inter 30s {bad_opts}\n"
    )
}

fn reason(p: &weir::proxy::Running, name: &str) -> String {
    last_reason(p, name)
}

/// `observe layer7` + `on-error mark-down`: after `error-limit`
/// UNAVAILABLE answers the server is DOWN and calls stop going there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer7_errors_mark_a_server_down() {
    let good = echo_servers(1).await;
    let bad = grpc_status_server(14).await;
    let cfg = config(
        good[0].addr,
        bad,
        "observe layer7 error-limit 3 on-error mark-down",
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let mut failed = 0;
    for _ in 0..20 {
        match c.unary(EchoRequest::default()).await {
            Ok(r) => assert_eq!(r.into_inner().server, "s1"),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                failed += 1;
            }
        }
    }
    assert_eq!(
        failed, 3,
        "exactly error-limit calls reached the bad server"
    );
    assert!(!server_up(&proxy, "be", "s2"));
    assert!(
        reason(&proxy, "s2").starts_with("Health analyze"),
        "{}",
        reason(&proxy, "s2")
    );
    // The good server is not judged by errors that were not its own.
    assert!(server_up(&proxy, "be", "s1"));
}

/// Errors that are the client's business (NOT_FOUND here) do not count,
/// and a success resets the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_server_errors_count_and_successes_reset() {
    let good = echo_servers(2).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {} proto h2 check inter 30s observe layer7 error-limit 2 on-error mark-down\n",
        good[0].addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let call = |code: i32| EchoRequest {
        status_code: code,
        ..Default::default()
    };
    for _ in 0..5 {
        assert_eq!(
            c.unary(call(5)).await.expect_err("not found").code(),
            Code::NotFound
        );
    }
    assert!(server_up(&proxy, "be", "s1"));
    // UNAVAILABLE, OK, UNAVAILABLE: never two in a row.
    for _ in 0..3 {
        let _ = c.unary(call(14)).await;
        c.unary(call(0)).await.expect("ok");
    }
    assert!(server_up(&proxy, "be", "s1"));
    let s1 = server(&proxy, "be", "s1");
    assert_eq!(s1.passive_errors(), 0);
    let _ = c.unary(call(14)).await;
    let _ = c.unary(call(14)).await;
    assert!(!server_up(&proxy, "be", "s1"), "two in a row");
}

/// `observe layer4`: connection errors count, bad statuses do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer4_counts_connection_errors_only() {
    let good = echo_servers(1).await;
    let bad = grpc_status_server(14).await;
    let closed = {
        let l = std::net::TcpListener::bind(ANY).expect("bind");
        l.local_addr().expect("addr")
    };
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {} proto h2\n\
         \x20   server s2 {bad} proto h2 check inter 30s observe layer4 error-limit 2 on-error mark-down\n\
         \x20   server s3 {closed} proto h2 check inter 30s observe layer4 error-limit 2 on-error mark-down\n",
        good[0].addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    for _ in 0..12 {
        let _ = c.unary(EchoRequest::default()).await;
    }
    assert!(
        server_up(&proxy, "be", "s2"),
        "status errors do not count at layer4"
    );
    assert!(!server_up(&proxy, "be", "s3"), "refused connections do");
}

/// `on-error fail-check`: each run of errors counts as one failed check, so
/// `fall 2` takes two runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_check_counts_toward_fall() {
    let good = echo_servers(1).await;
    let bad = grpc_status_server(13).await;
    let cfg = config(
        good[0].addr,
        bad,
        "fall 2 observe layer7 error-limit 2 on-error fail-check",
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let mut errors = 0;
    for _ in 0..40 {
        if c.unary(EchoRequest::default()).await.is_err() {
            errors += 1;
        }
        if !server_up(&proxy, "be", "s2") {
            break;
        }
    }
    assert_eq!(errors, 4, "two runs of two errors");
    assert!(!server_up(&proxy, "be", "s2"));
}

/// A server taken down by errors comes back through its active checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_bring_it_back() {
    let servers = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {} proto h2 check inter 100ms rise 1 observe layer7 error-limit 1 on-error mark-down\n",
        servers[0].addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let _ = c
        .unary(EchoRequest {
            status_code: 14,
            ..Default::default()
        })
        .await;
    // The check (every 100ms, rise 1) may bring it back before this
    // line runs on a slow machine, so the DOWN is read from the
    // transition count rather than from the current state.
    wait_for(10, "marked down", || transitions(&proxy, "s1") >= 1).await;
    wait_for(10, "back up", || {
        server_up(&proxy, "be", "s1") && transitions(&proxy, "s1") >= 2
    })
    .await;
    within(5, c.unary(EchoRequest::default()))
        .await
        .expect("served again");
}

#[test]
fn config_errors() {
    let err = |line: &str| match weir::config::parse_str(
        "weir.cfg",
        &format!("backend be\n    mode http\n    server s1 127.0.0.1:1 proto h2 {line}\n"),
    ) {
        Ok(_) => panic!("loaded: {line}"),
        Err(e) => e.errors[0].to_string(),
    };
    assert_eq!(
        err("observe layer7"),
        "parsing [weir.cfg:3] : 'server' : 'observe' needs 'check' on server 's1': active checks are what bring a server back after errors took it down"
    );
    assert_eq!(
        err("check observe layer9"),
        "parsing [weir.cfg:3] : 'server' : 'observe' : unknown mode 'layer9' (expected layer4 or layer7)"
    );
    assert_eq!(
        err("check observe layer7 on-error explode"),
        "parsing [weir.cfg:3] : 'server' : 'on-error' : unknown action 'explode' (expected fastinter, fail-check, sudden-death or mark-down)"
    );
    assert_eq!(
        err("check error-limit 0"),
        "parsing [weir.cfg:3] : 'server' : 'error-limit' : value '0' is out of range (expected an integer between 1 and 100000)"
    );
}
