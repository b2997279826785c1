//! Connection lifetime (issue 7): `max-connection-age` / `-grace` on bind
//! lines, and `h2-keepalive` PINGs that find dead peers on both sides.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_echo::pb::EchoRequest;

fn config(bind_opts: &str, extra: &str, server: SocketAddr) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n{extra}\
         frontend fe\n    bind 127.0.0.1:0 {bind_opts}\n    default_backend be\n\
         backend be\n    server s1 {server} proto h2\n"
    )
}

/// An HTTP/2 client connection to `addr`; returns the request sender and a
/// flag that turns true when the server closed the connection.
async fn h2_conn(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    Arc<AtomicBool>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("handshake");
    let closed = Arc::new(AtomicBool::new(false));
    let c = closed.clone();
    tokio::spawn(async move {
        let _ = conn.await;
        c.store(true, Ordering::Release);
    });
    (tx, closed)
}

/// After `max-connection-age` (+ up to 10% jitter) a connection gets a
/// GOAWAY and closes once idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_connections_are_sent_away() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&config("max-connection-age 300ms", "", servers[0].addr)).await;
    let started = Instant::now();
    let (mut tx, closed) = h2_conn(fe_addr(&proxy)).await;
    let req = http::Request::post(format!("http://{}/weir.echo.Echo/Unary", fe_addr(&proxy)))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .expect("request");
    let resp = within(5, tx.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), 200);
    wait_for(5, "connection closed by weir", || {
        closed.load(Ordering::Acquire)
    })
    .await;
    let age = started.elapsed();
    assert!(
        age >= Duration::from_millis(290),
        "closed too early: {age:?}"
    );
    assert!(age < Duration::from_secs(2), "closed too late: {age:?}");
}

/// A stream open when the age is reached finishes within the grace; one
/// that outlives the grace is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_get_the_grace_period() {
    let servers = echo_servers(1).await;
    for (grace, complete) in [("5s", true), ("300ms", false)] {
        let opts = format!("max-connection-age 200ms max-connection-age-grace {grace}");
        let proxy = start_proxy(&config(&opts, "", servers[0].addr)).await;
        let mut c = echo_client(fe_addr(&proxy)).await;
        let mut s = c
            .server_stream(EchoRequest {
                reply_count: 10,
                sleep_ms: 100,
                ..Default::default()
            })
            .await
            .expect("stream")
            .into_inner();
        let mut n = 0;
        let ended = loop {
            match within(10, s.message()).await {
                Ok(Some(_)) => n += 1,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if complete {
            assert!(ended.is_ok(), "{ended:?}");
            assert_eq!(n, 10, "the whole stream within the grace");
        } else {
            assert!(ended.is_err(), "cut after the grace");
            assert!(n < 10, "{n}");
        }
    }
}

/// `h2-keepalive` on the frontend: a client that stops answering PINGs is
/// disconnected after interval + timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_disconnected() {
    let servers = echo_servers(1).await;
    let cfg = config(
        "proto h2",
        "    h2-keepalive 200ms timeout 300ms\n",
        servers[0].addr,
    );
    let proxy = start_proxy(&cfg).await;
    let mut s = TcpStream::connect(fe_addr(&proxy)).await.expect("connect");
    // Client preface and an empty SETTINGS frame, then silence.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut saw_ping = false;
    loop {
        match within(10, s.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // A PING frame: type 0x6 at offset 3 of a frame header.
                saw_ping |= buf[..n]
                    .windows(4)
                    .any(|w| w[0] == 0 && w[1] == 8 && w[2] == 6);
            }
        }
    }
    let t = started.elapsed();
    assert!(saw_ping, "weir sent a PING");
    assert!(t >= Duration::from_millis(400), "{t:?}");
    assert!(t < Duration::from_secs(5), "{t:?}");
}

/// A relay between weir and a server that can be frozen (a peer that
/// vanished without closing the connection).
async fn freezable_relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            // Only connections opened while not frozen work; a frozen one
            // stops moving bytes for good.
            let f = f.clone();
            tokio::spawn(async move {
                let Ok(mut b) = TcpStream::connect(to).await else {
                    return;
                };
                let (mut ar, mut aw) = a.split();
                let (mut br, mut bw) = b.split();
                let mut x = [0u8; 16384];
                let mut y = [0u8; 16384];
                loop {
                    tokio::select! {
                        r = ar.read(&mut x) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => if !f.load(Ordering::Acquire) { let _ = bw.write_all(&x[..n]).await; } else { std::future::pending::<()>().await },
                        },
                        r = br.read(&mut y) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => if !f.load(Ordering::Acquire) { let _ = aw.write_all(&y[..n]).await; } else { std::future::pending::<()>().await },
                        },
                    }
                }
            });
        }
    });
    (addr, frozen)
}

/// `h2-keepalive` on the backend: an upstream connection whose server went
/// silent is dropped, and the next call opens a fresh one instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_connections_are_replaced() {
    let servers = echo_servers(1).await;
    let (relay, frozen) = freezable_relay(servers[0].addr).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    h2-keepalive 200ms timeout 300ms\n    server s1 {relay} proto h2\n"
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    c.unary(EchoRequest::default()).await.expect("first call");
    let s1 = server(&proxy, "be", "s1");
    assert_eq!(s1.h2.connections_opened(), 1);
    frozen.store(true, Ordering::Release);
    // interval + timeout, and some slack.
    tokio::time::sleep(Duration::from_millis(900)).await;
    frozen.store(false, Ordering::Release);
    let t = Instant::now();
    within(5, c.unary(EchoRequest::default()))
        .await
        .expect("served on a new connection");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(s1.h2.connections_opened(), 2);
}

#[test]
fn config_errors() {
    let err = |cfg: &str| match weir::config::parse_str("weir.cfg", cfg) {
        Ok(_) => panic!("loaded: {cfg}"),
        Err(e) => e.errors[0].to_string(),
    };
    assert_eq!(
        err("frontend fe\n    bind :0 max-connection-age 0s\n"),
        "parsing [weir.cfg:2] : 'bind' : 'max-connection-age' : must be greater than 0"
    );
    assert_eq!(
        err("frontend fe\n    bind :0 max-connection-age\n"),
        "parsing [weir.cfg:2] : 'bind' : 'max-connection-age' : missing value (expected a time)"
    );
    assert_eq!(
        err("defaults\n    h2-keepalive 1s every 2s\n"),
        "parsing [weir.cfg:2] : 'h2-keepalive' : unexpected argument 'every' (expected 'h2-keepalive <interval> [timeout <time>]')"
    );
}
