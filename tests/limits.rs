//! `timeout connect`, server `maxconn` with the backend queue, and
//! frontend `maxconn`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tonic::Code;
use weir_echo::pb::EchoRequest;

/// One frontend `fe` and one server `s1` at `addr`, with extra lines in
/// `defaults`, `frontend` and on the `server` line.
fn one_server(addr: std::net::SocketAddr, defaults: &str, frontend: &str, server: &str) -> String {
    format!(
        "defaults\n    mode http\n{defaults}frontend fe\n    bind 127.0.0.1:0\n{frontend}    default_backend be\n\
         backend be\n    server s1 {addr} proto h2 {server}\n"
    )
}

fn slow(ms: u32) -> EchoRequest {
    EchoRequest {
        sleep_ms: ms,
        ..Default::default()
    }
}

/// A listener whose accept queue is full: further SYNs are dropped, so a
/// connect to it hangs (a black hole on loopback).
fn black_hole() -> (
    socket2::Socket,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&any_addr().into()).unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        let c = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        let _ = c.connect(&addr.into());
        fill.push(c.into());
    }
    std::thread::sleep(Duration::from_millis(100));
    (s, fill, addr)
}

#[tokio::test]
async fn connect_timeout_gives_unavailable_in_time() {
    let (_l, _fill, addr) = black_hole();
    let text = one_server(addr, "    timeout connect 300ms\n", "", "");
    let proxy = start_proxy(&text).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(10, client.unary(slow(0))).await.expect_err("fails");
    let took = t.elapsed();
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(
        st.message().contains("be/s1") && st.message().contains("timed out after 300ms"),
        "{}",
        st.message()
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn server_maxconn_queues_calls_and_all_are_served() {
    let servers = echo_servers(1).await;
    let text = one_server(
        servers[0].addr,
        "    timeout connect 2s\n    timeout queue 5s\n",
        "",
        "maxconn 1",
    );
    let proxy = start_proxy(&text).await;
    let client = echo_client(fe_addr(&proxy)).await;
    let stats = servers[0].stats.clone();
    let watcher = tokio::spawn(async move {
        let mut max = 0;
        for _ in 0..400 {
            max = max.max(stats.active());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        max
    });
    let t = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.unary(slow(200)).await })
        })
        .collect();
    for c in calls {
        within(10, c).await.unwrap().expect("served after queueing");
    }
    // One at a time: three 200 ms calls take at least 600 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(590),
        "{:?}",
        t.elapsed()
    );
    let be = proxy.backend("be").unwrap();
    assert_eq!(be.queued(), 0);
    assert!(
        watcher.await.unwrap() <= 1,
        "never more than maxconn in flight"
    );
}

#[tokio::test]
async fn queue_timeout_gives_resource_exhausted() {
    let servers = echo_servers(1).await;
    let text = one_server(
        servers[0].addr,
        "    timeout connect 2s\n    timeout queue 100ms\n",
        "",
        "maxconn 1",
    );
    let proxy = start_proxy(&text).await;
    let client = echo_client(fe_addr(&proxy)).await;
    let mut busy = client.clone();
    let first = tokio::spawn(async move { busy.unary(slow(600)).await });
    servers[0].stats.wait_calls(1).await;
    let st = within(5, client.clone().unary(slow(0)))
        .await
        .expect_err("queue timeout");
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("queue timeout"), "{}", st.message());
    within(5, first)
        .await
        .unwrap()
        .expect("the first call is unharmed");
}

#[tokio::test]
async fn frontend_maxconn_holds_extra_connections_until_one_leaves() {
    let servers = echo_servers(1).await;
    let text = one_server(
        servers[0].addr,
        "    timeout connect 2s\n",
        "    maxconn 1\n",
        "",
    );
    let proxy = start_proxy(&text).await;
    let addr = fe_addr(&proxy);
    let mut a = echo_client(addr).await;
    a.unary(slow(0)).await.expect("first connection served");
    // The second connection sits in the kernel backlog: its call does not
    // complete while the first connection is open.
    let mut b = echo_client(addr).await;
    let pending = tokio::spawn(async move { b.unary(slow(0)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "second connection was served despite maxconn 1"
    );
    drop(a);
    within(5, pending)
        .await
        .unwrap()
        .expect("served once the first left");
}
