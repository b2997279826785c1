//! The core promise: any gRPC call through weir behaves as if the client
//! talked to the server directly, and each call is balanced on its own.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio_stream::StreamExt;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::{Code, Request};
use weir_echo::pb::EchoRequest;
use weir_echo::EchoOptions;

fn req(payload: &[u8]) -> EchoRequest {
    EchoRequest {
        payload: Bytes::copy_from_slice(payload),
        ..Default::default()
    }
}

#[tokio::test]
async fn unary_metadata_passes_both_ways() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let addr = fe_addr(&proxy);
    let mut client = echo_client(addr).await;

    let mut r = Request::new(req(b"hello"));
    r.metadata_mut()
        .insert("x-custom", MetadataValue::from_static("v1"));
    r.metadata_mut().insert_bin(
        "x-data-bin",
        BinaryMetadataValue::from_bytes(&[0u8, 1, 2, 255]),
    );
    let resp = within(10, client.unary(r)).await.expect("call succeeds");
    let md = resp.metadata();
    assert_eq!(md.get("x-echo-server").unwrap(), "s1");
    assert_eq!(md.get("echo-x-custom").unwrap(), "v1");
    assert_eq!(
        md.get_bin("echo-x-data-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0u8, 1, 2, 255]
    );
    // What the server saw: the client's :authority, te: trailers, the content-type.
    assert_eq!(
        md.get("x-seen-authority").unwrap(),
        addr.to_string().as_str()
    );
    assert_eq!(md.get("x-seen-te").unwrap(), "trailers");
    assert_eq!(md.get("x-seen-content-type").unwrap(), "application/grpc");
    assert_eq!(resp.get_ref().payload.as_ref(), b"hello");
    assert_eq!(resp.get_ref().server, "s1");
}

#[tokio::test]
async fn error_status_message_details_and_trailers_pass_unchanged() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    for code in [
        Code::NotFound,
        Code::Internal,
        Code::Unavailable,
        Code::PermissionDenied,
    ] {
        let r = EchoRequest {
            status_code: code as i32,
            status_message: "nothing here: ünïcode % and \"quotes\"".into(),
            status_details: Bytes::from_static(b"\x08\x05details\xff"),
            ..Default::default()
        };
        let st = within(10, client.unary(r)).await.expect_err("call fails");
        assert_eq!(st.code(), code);
        assert_eq!(st.message(), "nothing here: ünïcode % and \"quotes\"");
        assert_eq!(st.details(), b"\x08\x05details\xff");
        assert_eq!(st.metadata().get("x-trailer-echo").unwrap(), "s1");
    }
}

#[tokio::test]
async fn client_streaming_through_the_proxy() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let reqs = (0..10).map(|_| req(&[7u8; 1000]));
    let resp = within(10, client.client_stream(tokio_stream::iter(reqs)))
        .await
        .expect("call succeeds");
    assert_eq!(resp.get_ref().seq, 10);
    assert_eq!(resp.get_ref().received_bytes, 10_000);
}

#[tokio::test]
async fn server_streaming_with_final_status() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let r = EchoRequest {
        reply_count: 50,
        reply_size: 1000,
        ..Default::default()
    };
    let resp = within(10, client.server_stream(r))
        .await
        .expect("stream opens");
    assert_eq!(resp.metadata().get("x-echo-server").unwrap(), "s1");
    let mut stream = resp.into_inner();
    let mut n = 0u64;
    while let Some(item) = within(10, stream.next()).await {
        let item = item.expect("message");
        assert_eq!(item.seq, n);
        assert_eq!(item.payload.len(), 1000);
        n += 1;
    }
    assert_eq!(n, 50);

    // A stream that ends with an error status: all messages, then the status.
    let r = EchoRequest {
        reply_count: 3,
        status_code: Code::Aborted as i32,
        status_message: "stopped".into(),
        ..Default::default()
    };
    let mut stream = client.server_stream(r).await.expect("opens").into_inner();
    let mut got = 0;
    loop {
        match within(10, stream.next()).await {
            Some(Ok(_)) => got += 1,
            Some(Err(st)) => {
                assert_eq!(st.code(), Code::Aborted);
                assert_eq!(st.message(), "stopped");
                assert_eq!(st.metadata().get("x-trailer-echo").unwrap(), "s1");
                break;
            }
            None => panic!("stream ended without its status"),
        }
    }
    assert_eq!(got, 3);
}

#[tokio::test]
async fn bidi_ping_pong_is_not_buffered() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let mut inbound = within(
        10,
        client.bidi(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("stream opens")
    .into_inner();
    // Lock-step: each reply must arrive before the next request is sent,
    // which only works if neither direction is buffered.
    for i in 0..20u64 {
        tx.send(req(format!("ping {i}").as_bytes())).await.unwrap();
        let reply = within(5, inbound.next()).await.expect("reply").expect("ok");
        assert_eq!(reply.seq, i);
        assert_eq!(reply.payload.as_ref(), format!("ping {i}").as_bytes());
    }
    drop(tx);
    assert!(
        within(5, inbound.next()).await.is_none(),
        "stream ends cleanly"
    );
}

#[tokio::test]
async fn four_mib_messages_both_ways() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let payload: Vec<u8> = (0..4 << 20).map(|i| (i % 253) as u8).collect();
    let resp = within(30, client.unary(req(&payload))).await.expect("ok");
    assert_eq!(resp.get_ref().payload.len(), payload.len());
    assert!(resp.get_ref().payload.as_ref() == payload.as_slice());
}

async fn spread(
    n_calls: usize,
    backend_cfg: &str,
    servers: &[std::net::SocketAddr],
) -> HashMap<String, usize> {
    let text = format!(
        "defaults\n    mode http\n    timeout connect 2s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance roundrobin\n{backend_cfg}"
    );
    let _ = servers;
    let proxy = start_proxy(&text).await;
    // ONE client channel: per-call balancing must still spread the calls.
    let mut client = echo_client(fe_addr(&proxy)).await;
    let mut seen = HashMap::new();
    for _ in 0..n_calls {
        let r = within(10, client.unary(req(b"x"))).await.expect("ok");
        *seen.entry(r.into_inner().server).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn one_channel_300_calls_spread_over_three_servers() {
    let servers = echo_servers(3).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let seen = spread(300, &server_lines(&addrs, ""), &addrs).await;
    for id in ["s1", "s2", "s3"] {
        let n = seen.get(id).copied().unwrap_or(0);
        assert!((95..=105).contains(&n), "{id} got {n}: {seen:?}");
    }
}

#[tokio::test]
async fn weights_three_to_one() {
    let servers = echo_servers(2).await;
    let lines = format!(
        "    server s1 {} proto h2 weight 3\n    server s2 {} proto h2 weight 1\n",
        servers[0].addr, servers[1].addr
    );
    let seen = spread(400, &lines, &[]).await;
    let (a, b) = (seen["s1"], seen["s2"]);
    assert!(
        (285..=315).contains(&a) && (85..=115).contains(&b),
        "{seen:?}"
    );
}

#[tokio::test]
async fn client_cancel_reaches_the_server_within_a_second() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let r = EchoRequest {
        reply_count: 1_000_000,
        reply_size: 100,
        sleep_ms: 5,
        ..Default::default()
    };
    let mut stream = client.server_stream(r).await.expect("opens").into_inner();
    for _ in 0..3 {
        within(5, stream.next()).await.expect("item").expect("ok");
    }
    let stats = servers[0].stats.clone();
    assert_eq!(stats.cancelled(), 0);
    let t = Instant::now();
    drop(stream); // tonic sends RST_STREAM(CANCEL)
    within(1, stats.wait_cancelled(1)).await;
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn server_down_gives_unavailable_naming_the_backend() {
    // Ports with nothing listening: bind, note, close.
    let mut dead = Vec::new();
    for _ in 0..2 {
        let l = std::net::TcpListener::bind(ANY).unwrap();
        dead.push(l.local_addr().unwrap());
    }
    let proxy = start_proxy(&http_config(&dead, "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let t = Instant::now();
    let st = within(10, client.unary(req(b"x")))
        .await
        .expect_err("fails");
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(
        st.message().contains("be/s"),
        "names backend/server: {}",
        st.message()
    );
    assert!(
        st.message().contains("connection refused") || st.message().contains("Connection refused"),
        "{}",
        st.message()
    );
    // Within 'timeout connect' (2s).
    assert!(t.elapsed() < Duration::from_secs(2));

    // The next call still gets a clean answer: nothing else broke.
    let st = within(10, client.unary(req(b"x")))
        .await
        .expect_err("fails");
    assert_eq!(st.code(), Code::Unavailable);
}

#[tokio::test]
async fn all_servers_disabled_gives_no_server_available() {
    let servers = echo_servers(1).await;
    let text = format!(
        "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be_servers\n\
         backend be_servers\n    server s1 {} proto h2 disabled\n",
        servers[0].addr
    );
    let proxy = start_proxy(&text).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let st = within(10, client.unary(req(b"x")))
        .await
        .expect_err("fails");
    assert_eq!(st.code(), Code::Unavailable);
    assert_eq!(st.message(), "no server available for backend be_servers");
    assert_eq!(servers[0].stats.calls(), 0);
}

#[tokio::test]
async fn full_server_gets_a_second_upstream_connection() {
    // The server allows 2 concurrent streams per connection.
    let servers = echo_servers_with(
        1,
        EchoOptions {
            max_concurrent_streams: Some(2),
        },
    )
    .await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let client = echo_client(fe_addr(&proxy)).await;
    // Warm up so the proxy has seen the server's SETTINGS.
    client.clone().unary(req(b"warm")).await.expect("ok");
    let mut calls = Vec::new();
    for _ in 0..6 {
        let mut c = client.clone();
        calls.push(tokio::spawn(async move {
            c.unary(EchoRequest {
                sleep_ms: 300,
                ..Default::default()
            })
            .await
        }));
    }
    let t = Instant::now();
    for c in calls {
        within(10, c).await.unwrap().expect("ok");
    }
    // Six 300 ms calls, two streams per connection: three connections in
    // parallel finish in ~300 ms; queueing behind one connection would take 900.
    assert!(
        t.elapsed() < Duration::from_millis(850),
        "{:?}",
        t.elapsed()
    );
    let be = proxy.backend("be").unwrap();
    assert!(
        be.servers[0].h2.connections_opened() >= 3,
        "opened {}",
        be.servers[0].h2.connections_opened()
    );
}

#[tokio::test]
async fn server_dying_mid_stream_ends_the_call_cleanly() {
    let mut servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let r = EchoRequest {
        reply_count: 1_000_000,
        reply_size: 10,
        sleep_ms: 10,
        ..Default::default()
    };
    let mut stream = client.server_stream(r).await.expect("opens").into_inner();
    within(5, stream.next()).await.expect("item").expect("ok");
    servers.pop().unwrap().kill().await;
    // The client gets a status, never a hang.
    let end = within(5, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(st)) => return Some(st),
                None => return None,
            }
        }
    })
    .await;
    let st = end.expect("a status, not a clean end");
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
}

#[tokio::test]
async fn several_worker_threads_share_one_port() {
    let servers = echo_servers(2).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let loaded = weir::config::parse_str("test.cfg", &http_config(&addrs, "")).unwrap();
    let proxy = weir::proxy::start_threads(loaded.config, 3)
        .await
        .expect("starts");
    let addr = fe_addr(&proxy);
    // Many separate connections: the kernel spreads them over the three
    // workers' SO_REUSEPORT sockets; every one is served.
    for i in 0..24 {
        let mut c = echo_client(addr).await;
        let r = within(10, c.unary(req(format!("conn {i}").as_bytes())))
            .await
            .expect("ok");
        assert_eq!(r.get_ref().payload.as_ref(), format!("conn {i}").as_bytes());
    }
    within(15, proxy.shutdown(Duration::from_secs(5))).await;
    assert_eq!(servers[0].stats.calls() + servers[1].stats.calls(), 24);
}
