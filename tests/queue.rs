//! The backend queue with real tonic clients and weir-echo servers: calls
//! that find every server at `maxconn` wait in deadline order, a deadline
//! that runs out in the queue is DEADLINE_EXCEEDED, a full queue
//! (`maxqueue`) or `timeout queue` is RESOURCE_EXHAUSTED with a
//! `grpc-retry-pushback-ms` trailer (503 with `Retry-After` for plain HTTP),
//! and a call whose client goes away leaves the queue without losing a slot.
//!
//! Calls with a deadline go over a bare hyper HTTP/2 connection (see
//! tests/deadlines.rs): tonic's `Channel` would enforce the deadline itself.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tonic::Code;
use weir_echo::pb::EchoRequest;

fn call(sleep_ms: u32, marker: &str) -> EchoRequest {
    EchoRequest {
        sleep_ms,
        payload: marker.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

fn with_timeout(msg: EchoRequest, timeout: Duration) -> tonic::Request<EchoRequest> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// Frontend `fe`, backend `be` with `backend_extra`, one server per address
/// with `server_extra`.
fn config(servers: &[SocketAddr], backend_extra: &str, server_extra: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n{backend_extra}{}",
        server_lines(servers, server_extra)
    )
}

/// Waits until `n` calls wait in backend `be`.
async fn wait_queued(proxy: &weir::proxy::Running, n: usize) {
    let be = proxy.backend("be").expect("backend be");
    wait_for(5, &format!("{n} queued calls"), || be.queued() == n).await;
}

/// Nothing queued and no slot held once everything is over.
async fn assert_drained(proxy: &weir::proxy::Running) {
    let be = proxy.backend("be").expect("backend be");
    wait_for(5, "every slot given back", || {
        be.servers
            .iter()
            .all(|s| s.state.inflight.load(std::sync::atomic::Ordering::Relaxed) == 0)
    })
    .await;
    assert_eq!(be.queued(), 0, "the queue is empty");
}

/// Holds the only slot of `be` with a call of `ms` milliseconds.
async fn hold_slot(
    proxy: &weir::proxy::Running,
    server: &weir_echo::EchoHandle,
    ms: u32,
) -> tokio::task::JoinHandle<Result<tonic::Response<weir_echo::pb::EchoReply>, tonic::Status>> {
    let mut busy = echo_client(fe_addr(proxy)).await;
    let before = server.stats.calls();
    let task = tokio::spawn(async move { busy.unary(call(ms, "busy")).await });
    within(5, server.stats.wait_calls(before + 1)).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_are_served_earliest_deadline_first() {
    let servers = echo_servers(1).await;
    let text = config(&[servers[0].addr], "    timeout queue 10s\n", "maxconn 1");
    let proxy = start_proxy(&text).await;
    let busy = hold_slot(&proxy, &servers[0], 500).await;

    let done = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut calls = Vec::new();
    // Arrival order 3s, 1s, 2s; each waits until the previous one queued.
    for (i, secs) in [3u64, 1, 2].into_iter().enumerate() {
        let mut client = bare_client(fe_addr(&proxy)).await;
        let done = done.clone();
        let marker = format!("deadline-{secs}s");
        calls.push(tokio::spawn(async move {
            let req = with_timeout(call(100, &marker), Duration::from_secs(secs));
            let reply = client.unary(req).await?.into_inner();
            let seen = String::from_utf8_lossy(&reply.payload).into_owned();
            done.lock().unwrap().push(seen);
            Ok::<_, tonic::Status>(())
        }));
        wait_queued(&proxy, i + 1).await;
    }
    within(5, busy).await.unwrap().expect("busy call served");
    for c in calls {
        within(10, c).await.unwrap().expect("queued call served");
    }
    assert_eq!(
        *done.lock().unwrap(),
        ["deadline-1s", "deadline-2s", "deadline-3s"],
        "served in deadline order, not arrival order"
    );
    assert_eq!(servers[0].stats.calls(), 4);
    assert_drained(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_passing_in_the_queue_is_deadline_exceeded_at_once() {
    let servers = echo_servers(1).await;
    let text = config(&[servers[0].addr], "    timeout queue 10s\n", "maxconn 1");
    let proxy = start_proxy(&text).await;
    let busy = hold_slot(&proxy, &servers[0], 1000).await;

    // A later deadline waits behind...
    let mut patient = bare_client(fe_addr(&proxy)).await;
    let later = tokio::spawn(async move {
        patient
            .unary(with_timeout(call(0, "later"), Duration::from_secs(5)))
            .await
    });
    wait_queued(&proxy, 1).await;
    // ...a short one that runs out while queued (at the head of the queue).
    let mut client = bare_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(
        5,
        client.unary(with_timeout(call(0, "short"), Duration::from_millis(300))),
    )
    .await
    .expect_err("deadline exceeded in the queue");
    let took = t.elapsed();
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    assert!(
        st.message().contains("deadline exceeded (300ms) in weir"),
        "{st:?}"
    );
    assert!(st.metadata().get("grpc-retry-pushback-ms").is_none());
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(900),
        "{took:?}"
    );
    assert_eq!(
        proxy.backend("be").unwrap().queued(),
        1,
        "it left the queue"
    );

    within(5, busy).await.unwrap().expect("busy call served");
    let reply = within(5, later)
        .await
        .unwrap()
        .expect("the later deadline is served");
    assert_eq!(&reply.into_inner().payload[..], b"later");
    assert_eq!(
        servers[0].stats.calls(),
        2,
        "the expired call never went out"
    );
    assert_drained(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_resource_exhausted_with_pushback() {
    let servers = echo_servers(1).await;
    let text = config(
        &[servers[0].addr],
        "    timeout queue 5s\n    maxqueue 1\n",
        "maxconn 1",
    );
    let proxy = start_proxy(&text).await;
    let busy = hold_slot(&proxy, &servers[0], 800).await;
    let mut waiting = echo_client(fe_addr(&proxy)).await;
    let queued = tokio::spawn(async move { waiting.unary(call(0, "queued")).await });
    wait_queued(&proxy, 1).await;

    let mut client = echo_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(5, client.unary(call(0, "third")))
        .await
        .expect_err("queue full");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("queue full"), "{st:?}");
    assert_eq!(
        st.metadata()
            .get("grpc-retry-pushback-ms")
            .map(|v| v.to_str().unwrap()),
        Some("5000"),
        "{st:?}"
    );
    within(5, busy).await.unwrap().expect("busy call served");
    within(5, queued)
        .await
        .unwrap()
        .expect("the queued call is served");
    assert_eq!(servers[0].stats.calls(), 2);
    assert_drained(&proxy).await;
}

/// Server `maxqueue`: with every server setting one, the backend queue
/// holds their sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_maxqueue_adds_up_to_the_backend_limit() {
    let servers = echo_servers(2).await;
    let addrs = [servers[0].addr, servers[1].addr];
    let text = config(&addrs, "    timeout queue 5s\n", "maxconn 1 maxqueue 1");
    let proxy = start_proxy(&text).await;
    assert_eq!(proxy.backend("be").unwrap().maxqueue, Some(2));
    let client = echo_client(fe_addr(&proxy)).await;
    let mut calls = Vec::new();
    for i in 0..4 {
        let mut c = client.clone();
        calls.push(tokio::spawn(async move { c.unary(call(600, "x")).await }));
        if i == 1 {
            within(5, servers[0].stats.wait_calls(1)).await;
            within(5, servers[1].stats.wait_calls(1)).await;
        }
    }
    wait_queued(&proxy, 2).await;
    let st = within(5, client.clone().unary(call(0, "fifth")))
        .await
        .expect_err("queue full");
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.metadata().get("grpc-retry-pushback-ms").is_some());
    for c in calls {
        within(10, c).await.unwrap().expect("served");
    }
    assert_drained(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_is_resource_exhausted_with_pushback_and_503() {
    let servers = echo_servers(1).await;
    let text = config(&[servers[0].addr], "    timeout queue 200ms\n", "maxconn 1");
    let proxy = start_proxy(&text).await;
    let busy = hold_slot(&proxy, &servers[0], 1500).await;

    let mut client = echo_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(5, client.unary(call(0, "late")))
        .await
        .expect_err("queue timeout");
    let took = t.elapsed();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("queue timeout"), "{st:?}");
    assert_eq!(
        st.metadata()
            .get("grpc-retry-pushback-ms")
            .map(|v| v.to_str().unwrap()),
        Some("200"),
        "{st:?}"
    );
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(1000),
        "{took:?}"
    );

    // Plain HTTP/1.1 in the same queue: 503 with Retry-After.
    let tcp = tokio::net::TcpStream::connect(fe_addr(&proxy))
        .await
        .expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/plain")
        .header("host", "example.test")
        .body(Full::<Bytes>::default())
        .expect("request");
    let resp = within(5, tx.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("queue timeout"),
        "{body:?}"
    );

    within(5, busy).await.unwrap().expect("busy call served");
    assert_eq!(servers[0].stats.calls(), 1);
    assert_drained(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_call_whose_client_leaves_gives_up_its_place() {
    let servers = echo_servers(1).await;
    let text = config(&[servers[0].addr], "    timeout queue 10s\n", "maxconn 1");
    let proxy = start_proxy(&text).await;
    let busy = hold_slot(&proxy, &servers[0], 600).await;

    let mut calls = Vec::new();
    for (i, marker) in ["first", "gone", "third"].into_iter().enumerate() {
        let mut client = echo_client(fe_addr(&proxy)).await;
        calls.push(tokio::spawn(
            async move { client.unary(call(50, marker)).await },
        ));
        wait_queued(&proxy, i + 1).await;
    }
    // The client of the middle call goes away: its stream is reset.
    let gone = calls.remove(1);
    gone.abort();
    let _ = gone.await;
    wait_queued(&proxy, 2).await;

    within(5, busy).await.unwrap().expect("busy call served");
    for c in calls {
        within(10, c).await.unwrap().expect("still wanted: served");
    }
    assert_eq!(
        servers[0].stats.calls(),
        3,
        "the server got only the calls still wanted"
    );
    assert_drained(&proxy).await;

    // The slot still works: a new call goes straight through.
    let mut client = echo_client(fe_addr(&proxy)).await;
    within(5, client.unary(call(0, "after")))
        .await
        .expect("served");
    assert_drained(&proxy).await;
}

/// Many clients, some leaving while queued, some with deadlines that run
/// out: every slot comes back and the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_leaves_no_slot_behind() {
    let servers = echo_servers(2).await;
    let addrs = [servers[0].addr, servers[1].addr];
    let text = config(&addrs, "    timeout queue 3s\n", "maxconn 2");
    let proxy = start_proxy(&text).await;
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let mut client = bare_client(fe_addr(&proxy)).await;
        tasks.push(tokio::spawn(async move {
            let req = match i % 3 {
                0 => with_timeout(call(20, "d"), Duration::from_millis(50 + u64::from(i) * 5)),
                _ => tonic::Request::new(call(20, "n")),
            };
            let fut = client.unary(req);
            if i % 4 == 0 {
                // Gives up after a while, whatever the state of the call.
                let _ = tokio::time::timeout(Duration::from_millis(u64::from(i) * 3), fut).await;
            } else {
                let _ = fut.await;
            }
        }));
    }
    for t in tasks {
        within(20, t).await.unwrap();
    }
    assert_drained(&proxy).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    for _ in 0..4 {
        within(5, client.unary(call(0, "after")))
            .await
            .expect("served after the churn");
    }
    assert_drained(&proxy).await;
}

// ------------------------------------------------------------------ config

fn config_errors(text: &str) -> Vec<String> {
    match weir::config::parse_str("weir.cfg", text) {
        Ok(_) => panic!("loaded but should not:\n{text}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

const FRONTEND: &str = "frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n";

#[test]
fn maxqueue_is_parsed_on_backends_and_servers() {
    let text = format!(
        "defaults\n    maxqueue 3\n{FRONTEND}backend be\n    maxqueue 10\n\
         \x20   server s1 127.0.0.1:1 maxqueue 4\n    server s2 127.0.0.1:2 maxqueue 0\n\
         backend other\n    server s1 127.0.0.1:1\n"
    );
    let c = weir::config::parse_str("weir.cfg", &text)
        .expect("parses")
        .config;
    let be = &c.backends[0];
    assert_eq!(be.maxqueue, Some(10));
    assert_eq!(be.servers[0].maxqueue, Some(4));
    assert_eq!(be.servers[1].maxqueue, None, "0: no limit");
    assert_eq!(c.backends[1].maxqueue, Some(3), "from defaults");
}

#[test]
fn maxqueue_errors() {
    let cases = [
        (
            "    maxqueue\n",
            "parsing [weir.cfg:5] : 'maxqueue' : missing <number> (expected 'maxqueue <number>')",
        ),
        (
            "    maxqueue many\n",
            "parsing [weir.cfg:5] : 'maxqueue' : invalid number 'many' (expected an integer between 0 and 4294967295)",
        ),
        (
            "    maxqueue -1\n",
            "parsing [weir.cfg:5] : 'maxqueue' : invalid number '-1' (expected an integer between 0 and 4294967295)",
        ),
        (
            "    maxqueue 99999999999\n",
            "parsing [weir.cfg:5] : 'maxqueue' : value '99999999999' is out of range (expected an integer between 0 and 4294967295)",
        ),
        (
            "    maxqueue 1 2\n",
            "parsing [weir.cfg:5] : 'maxqueue' : unexpected argument '2' (expected 'maxqueue <number>')",
        ),
        (
            "    server s9 127.0.0.1:9 maxqueue\n",
            "parsing [weir.cfg:5] : 'server' : 'maxqueue' : missing value (expected a number)",
        ),
        (
            "    server s9 127.0.0.1:9 maxqueue lots\n",
            "parsing [weir.cfg:5] : 'server' : 'maxqueue' : invalid number 'lots' (expected an integer between 0 and 4294967295)",
        ),
        (
            "    default-server maxqueue x\n",
            "parsing [weir.cfg:5] : 'default-server' : 'maxqueue' : invalid number 'x' (expected an integer between 0 and 4294967295)",
        ),
    ];
    for (line, message) in cases {
        let text = format!("{FRONTEND}backend be\n{line}    server s1 127.0.0.1:1\n");
        assert_eq!(config_errors(&text), [message], "{line}");
    }
}
