//! gRPC deadlines (`grpc-timeout`) with real tonic clients and weir-echo
//! servers: weir answers DEADLINE_EXCEEDED itself when the budget runs out
//! in the queue, while waiting for headers or while the response streams,
//! resets the upstream stream, and tells the server the time that is left.
//!
//! tonic's `Channel` enforces a deadline on its own (it gives up with
//! CANCELLED "Timeout expired" at the same moment weir would answer), so
//! these tests drive tonic's generated client over a bare hyper HTTP/2
//! connection that has no client-side timer: what the client gets is what
//! weir sent.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::net::UdpSocket;
use tonic::Code;
use weir_echo::pb::EchoRequest;

fn with_timeout(msg: EchoRequest, timeout: Duration) -> tonic::Request<EchoRequest> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

fn sleep_ms(ms: u32) -> EchoRequest {
    EchoRequest {
        sleep_ms: ms,
        ..Default::default()
    }
}

/// A UDP syslog receiver for `log <addr> format raw local0`.
struct LogSink(UdpSocket);

impl LogSink {
    async fn new() -> (LogSink, SocketAddr) {
        let sock = UdpSocket::bind(ANY).await.expect("udp");
        let addr = sock.local_addr().expect("addr");
        (LogSink(sock), addr)
    }

    async fn line(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = within(5, self.0.recv(&mut buf)).await.expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Frontend `fe` logging httplog lines to `log`, backend `be` with
/// `backend_extra`, servers with `server_extra`.
fn config(
    log: SocketAddr,
    servers: &[SocketAddr],
    backend_extra: &str,
    server_extra: &str,
) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         \x20   option httplog\n    log {log} format raw local0\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n{backend_extra}{}",
        server_lines(servers, server_extra)
    )
}

/// The termination state field of an httplog line (`sH--`, `----`, ...).
fn termination(line: &str) -> &str {
    line.split(" - - ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("not an httplog line: {line}"))
}

fn assert_weir_deadline(st: &tonic::Status, budget_ms: u64) {
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    assert!(
        st.message()
            .contains(&format!("deadline exceeded ({budget_ms}ms) in weir")),
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_deadline_runs_out_waiting_for_headers() {
    let servers = echo_servers(1).await;
    let (logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;

    let t = Instant::now();
    let st = within(
        5,
        client.unary(with_timeout(sleep_ms(2000), Duration::from_millis(200))),
    )
    .await
    .expect_err("deadline exceeded");
    let took = t.elapsed();
    assert_weir_deadline(&st, 200);
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    within(5, servers[0].stats.wait_cancelled(1)).await;
    let line = logs.line().await;
    assert_eq!(termination(&line), "sH--", "{line}");
    assert!(line.ends_with(" 4"), "grpc status in the log: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stream_deadline_ends_the_body_with_trailers() {
    let servers = echo_servers(1).await;
    let (logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;

    let t = Instant::now();
    let req = EchoRequest {
        sleep_ms: 50,
        reply_count: 1000,
        ..Default::default()
    };
    let mut stream = within(
        5,
        client.server_stream(with_timeout(req, Duration::from_millis(500))),
    )
    .await
    .expect("response headers")
    .into_inner();
    let mut replies = 0;
    let st = loop {
        match within(5, stream.message()).await {
            Ok(Some(_)) => replies += 1,
            Ok(None) => panic!("stream ended without an error after {replies} replies"),
            Err(st) => break st,
        }
    };
    let took = t.elapsed();
    assert_weir_deadline(&st, 500);
    assert!((3..20).contains(&replies), "{replies} replies");
    assert!(
        took >= Duration::from_millis(490) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    // The upstream stream was reset: the server's reply stream was dropped.
    within(5, servers[0].stats.wait_cancelled(1)).await;
    within(5, servers[0].stats.wait_idle()).await;
    let line = logs.line().await;
    assert_eq!(termination(&line), "sD--", "{line}");
}

/// A streaming request still open when the deadline runs out: the request
/// pump lets go of the upstream stream and the server sees it cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_deadline_cancels_the_upstream_stream() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(4);
    tx.send(EchoRequest::default()).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.set_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let mut stream = within(5, client.bidi(req))
        .await
        .expect("headers")
        .into_inner();
    let first = within(5, stream.message()).await.expect("a reply");
    assert!(first.is_some());
    let st = within(5, stream.message()).await.expect_err("deadline");
    assert_weir_deadline(&st, 300);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // The client still holds its request stream open; the server's call
    // ends only because weir reset it.
    within(5, servers[0].stats.wait_cancelled(1)).await;
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gets_the_reduced_grpc_timeout() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;

    let resp = within(
        5,
        client.unary(with_timeout(sleep_ms(0), Duration::from_secs(3))),
    )
    .await
    .expect("served");
    let seen = resp
        .metadata()
        .get("x-seen-grpc-timeout")
        .expect("the server saw a grpc-timeout")
        .to_str()
        .unwrap()
        .to_string();
    // tonic sent "3000000u"; weir re-encodes what is left in whole ms.
    assert!(seen.ends_with('m') || seen == "3S", "{seen}");
    let d = weir::http::deadline::parse(seen.as_bytes()).expect("valid grpc-timeout");
    assert!(
        d <= Duration::from_secs(3) && d >= Duration::from_millis(2500),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_time_is_taken_off_the_forwarded_timeout() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(
        log,
        &[servers[0].addr],
        "    timeout queue 10s\n",
        "maxconn 1",
    ))
    .await;
    let mut busy = echo_client(fe_addr(&proxy)).await;
    let first = tokio::spawn(async move { busy.unary(sleep_ms(600)).await });
    within(5, servers[0].stats.wait_calls(1)).await;
    let mut client = bare_client(fe_addr(&proxy)).await;
    let resp = within(
        5,
        client.unary(with_timeout(sleep_ms(0), Duration::from_secs(5))),
    )
    .await
    .expect("served after queueing");
    let seen = resp.metadata().get("x-seen-grpc-timeout").expect("seen");
    let d = weir::http::deadline::parse(seen.as_bytes()).expect("valid");
    // About 600 ms were spent in the queue.
    assert!(
        d <= Duration::from_millis(4600) && d > Duration::from_secs(3),
        "{seen:?}"
    );
    within(5, first).await.unwrap().expect("first call served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_in_the_queue_is_deadline_exceeded() {
    let servers = echo_servers(1).await;
    let (logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(
        log,
        &[servers[0].addr],
        "    timeout queue 10s\n",
        "maxconn 1",
    ))
    .await;
    let mut busy = echo_client(fe_addr(&proxy)).await;
    let first = tokio::spawn(async move { busy.unary(sleep_ms(2000)).await });
    within(5, servers[0].stats.wait_calls(1)).await;

    let mut client = bare_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(
        5,
        client.unary(with_timeout(sleep_ms(0), Duration::from_millis(300))),
    )
    .await
    .expect_err("deadline exceeded in the queue");
    let took = t.elapsed();
    assert_weir_deadline(&st, 300);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(
        servers[0].stats.calls(),
        1,
        "the queued call never reached the server"
    );
    assert_eq!(
        proxy.backend("be").unwrap().queued(),
        0,
        "it left the queue"
    );
    let line = logs.line().await;
    assert_eq!(termination(&line), "sQ--", "{line}");
    within(5, first)
        .await
        .unwrap()
        .expect("the first call is unharmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_timeout_is_answered_without_calling_the_server() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;
    let mut req = tonic::Request::new(sleep_ms(0));
    req.metadata_mut()
        .insert("grpc-timeout", "0m".parse().unwrap());
    let st = within(5, client.unary(req)).await.expect_err("deadline");
    assert_weir_deadline(&st, 0);
    assert_eq!(servers[0].stats.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grpc_timeout_means_no_deadline() {
    let servers = echo_servers(1).await;
    let (logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;
    let resp = within(5, client.unary(sleep_ms(1000)))
        .await
        .expect("served");
    assert!(resp.metadata().get("x-seen-grpc-timeout").is_none());
    let line = logs.line().await;
    assert_eq!(termination(&line), "----", "{line}");
}

/// A malformed `grpc-timeout` is ignored (logged at debug level): the call
/// proceeds without a deadline and the server does not get the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_timeout_is_ignored() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    let mut client = bare_client(fe_addr(&proxy)).await;
    for bad in ["abc", "123456789m", "10s", "1"] {
        let mut req = tonic::Request::new(sleep_ms(300));
        req.metadata_mut()
            .insert("grpc-timeout", bad.parse().unwrap());
        let resp = within(5, client.unary(req))
            .await
            .unwrap_or_else(|st| panic!("{bad}: {st:?}"));
        assert!(
            resp.metadata().get("x-seen-grpc-timeout").is_none(),
            "{bad}: passed on"
        );
    }
}

/// `timeout server` stays an inactivity timer next to the deadline: when it
/// is the shorter one, it fires with its own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_server_still_fires_before_a_longer_deadline() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let text = config(log, &[servers[0].addr], "    timeout server 200ms\n", "");
    let proxy = start_proxy(&text).await;
    let mut client = bare_client(fe_addr(&proxy)).await;
    let st = within(
        5,
        client.unary(with_timeout(sleep_ms(2000), Duration::from_secs(5))),
    )
    .await
    .expect_err("server timeout");
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    assert!(st.message().contains("timeout server"), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_deadline_through_weir() {
    let servers = echo_servers(1).await;
    let (_logs, log) = LogSink::new().await;
    let proxy = start_proxy(&config(log, &[servers[0].addr], "", "")).await;
    run_script(
        "deadline_client.py",
        fe_addr(&proxy),
        "python grpcio deadline: all checks passed",
    )
    .await;
    within(5, servers[0].stats.wait_cancelled(1)).await;
}
