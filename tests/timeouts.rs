//! `timeout client` closes idle client connections but never one with a
//! live call; `timeout server` fires only on silence, with DEADLINE_EXCEEDED.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_stream::StreamExt;
use tonic::Code;
use weir_echo::pb::EchoRequest;

fn config(servers: &[std::net::SocketAddr], client: &str, server: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client {client}\n    timeout server {server}\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n{}",
        server_lines(servers, "")
    )
}

#[tokio::test]
async fn idle_http2_client_connection_is_closed_after_timeout_client() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&config(&[servers[0].addr], "300ms", "30s")).await;
    let tcp = tokio::net::TcpStream::connect(fe_addr(&proxy))
        .await
        .unwrap();
    let (_send, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioExecutor::new(), TokioIo::new(tcp))
    .await
    .unwrap();
    let t = Instant::now();
    // The connection task ends when weir sends GOAWAY and closes.
    within(5, conn).await.expect("closed cleanly");
    let idle = t.elapsed();
    assert!(idle >= Duration::from_millis(250), "{idle:?}");
}

#[tokio::test]
async fn a_live_stream_outlives_timeout_client_and_timeout_server() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&config(&[servers[0].addr], "300ms", "300ms")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    // 15 messages, 100 ms apart: 1.5 s in all, five times both timeouts.
    let r = EchoRequest {
        reply_count: 15,
        sleep_ms: 100,
        ..Default::default()
    };
    let mut stream = client.server_stream(r).await.expect("opens").into_inner();
    let mut n = 0;
    while let Some(m) = within(5, stream.next()).await {
        m.expect("no timeout while data moves");
        n += 1;
    }
    assert_eq!(n, 15);
}

#[tokio::test]
async fn silent_server_gets_deadline_exceeded_after_timeout_server() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&config(&[servers[0].addr], "30s", "300ms")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(
        5,
        client.unary(EchoRequest {
            sleep_ms: 3000,
            ..Default::default()
        }),
    )
    .await
    .expect_err("times out");
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    assert!(st.message().contains("timeout server"), "{}", st.message());
    assert!(t.elapsed() < Duration::from_secs(2));
    // The server sees the call cancelled (RST_STREAM upstream).
    within(2, servers[0].stats.wait_cancelled(1)).await;
}
