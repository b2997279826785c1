//! weir-echo end to end, with a plain tonic client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use weir_echo::pb::echo_client::EchoClient;
use weir_echo::pb::{EchoReply, EchoRequest};
use weir_echo::{payload_of_size, EchoHandle, EchoOptions};

const WAIT: Duration = Duration::from_secs(10);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn client(handle: &EchoHandle) -> EchoClient<Channel> {
    let channel = Endpoint::from_shared(handle.uri())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    EchoClient::new(channel)
}

fn req(payload: &'static [u8]) -> EchoRequest {
    EchoRequest {
        payload: Bytes::from_static(payload),
        ..Default::default()
    }
}

fn text(md: &tonic::metadata::MetadataMap, key: &str) -> String {
    md.get(key)
        .unwrap_or_else(|| panic!("missing {key} in {md:?}"))
        .to_str()
        .expect("ascii")
        .to_owned()
}

#[tokio::test]
async fn unary_echoes_payload_and_metadata() {
    let echo = EchoHandle::spawn(any_port(), "echo-a").await.unwrap();
    let mut client = client(&echo).await;

    let mut request = Request::new(req(b"hello"));
    request
        .metadata_mut()
        .insert("x-foo", MetadataValue::from_static("bar"));
    request
        .metadata_mut()
        .insert_bin("x-data-bin", MetadataValue::from_bytes(&[0, 1, 2, 255]));
    request
        .metadata_mut()
        .insert("other", MetadataValue::from_static("not echoed"));
    request
        .metadata_mut()
        .insert("x-seen-authority", MetadataValue::from_static("spoofed"));
    let response = client.unary(request).await.expect("unary");

    let md = response.metadata();
    assert_eq!(text(md, "x-echo-server"), "echo-a");
    assert_eq!(text(md, "echo-x-foo"), "bar");
    let bin = md.get_bin("echo-x-data-bin").expect("binary echo");
    assert_eq!(bin.to_bytes().unwrap().as_ref(), &[0, 1, 2, 255]);
    assert!(md.get("echo-other").is_none());
    assert_eq!(text(md, "x-seen-authority"), echo.addr.to_string());
    assert_eq!(text(md, "x-seen-te"), "trailers");
    assert!(text(md, "x-seen-content-type").starts_with("application/grpc"));
    assert!(md.get("echo-x-seen-authority").is_none());

    let reply = response.into_inner();
    assert_eq!(reply.payload.as_ref(), b"hello");
    assert_eq!(reply.server, "echo-a");
    assert_eq!(reply.received_bytes, 5);

    let sized = client
        .unary(EchoRequest {
            reply_size: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sized.payload, payload_of_size(100_000));
    assert_eq!(sized.payload[300], (300 % 251) as u8);

    assert_eq!(
        echo.stats
            .unary_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(
        echo.stats
            .bytes_received
            .load(std::sync::atomic::Ordering::SeqCst),
        5
    );
    echo.stats.wait_idle().await;
    assert_eq!(echo.stats.cancelled(), 0);
    echo.shutdown().await;
}

#[tokio::test]
async fn unary_status_with_details_and_trailer() {
    let echo = EchoHandle::spawn(any_port(), "echo-err").await.unwrap();
    let mut client = client(&echo).await;
    let status = client
        .unary(EchoRequest {
            status_code: Code::ResourceExhausted as i32,
            status_message: "slow down".into(),
            status_details: Bytes::from_static(b"\x08\x01details"),
            sleep_ms: 10,
            ..Default::default()
        })
        .await
        .expect_err("status");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "slow down");
    assert_eq!(status.details(), b"\x08\x01details");
    assert_eq!(text(status.metadata(), "x-trailer-echo"), "echo-err");
    assert_eq!(text(status.metadata(), "x-echo-server"), "echo-err");
}

#[tokio::test]
async fn client_stream_counts_and_honours_last_status() {
    let echo = EchoHandle::spawn(any_port(), "echo-cs").await.unwrap();
    let mut client = client(&echo).await;

    let requests = tokio_stream::iter(vec![req(b"ab"), req(b"cde"), req(b"f")]);
    let reply = client.client_stream(requests).await.unwrap().into_inner();
    assert_eq!(reply.seq, 3);
    assert_eq!(reply.received_bytes, 6);
    assert_eq!(reply.server, "echo-cs");

    let failing = EchoRequest {
        status_code: Code::FailedPrecondition as i32,
        status_message: "last one".into(),
        ..Default::default()
    };
    let requests = tokio_stream::iter(vec![req(b"x"), failing]);
    let status = client.client_stream(requests).await.expect_err("status");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "last one");
    assert_eq!(text(status.metadata(), "x-trailer-echo"), "echo-cs");
}

#[tokio::test]
async fn server_stream_replies_then_status_in_trailers() {
    let echo = EchoHandle::spawn(any_port(), "echo-ss").await.unwrap();
    let mut client = client(&echo).await;

    let response = client
        .server_stream(EchoRequest {
            reply_count: 5,
            reply_size: 1000,
            sleep_ms: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(text(response.metadata(), "x-echo-server"), "echo-ss");
    let replies: Vec<EchoReply> = response
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .expect("ok stream");
    assert_eq!(replies.len(), 5);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.seq, i as u64);
        assert_eq!(reply.payload.len(), 1000);
        assert_eq!(reply.server, "echo-ss");
    }

    let mut stream = client
        .server_stream(EchoRequest {
            payload: Bytes::from_static(b"p"),
            reply_count: 2,
            status_code: Code::Aborted as i32,
            status_message: "after two".into(),
            status_details: Bytes::from_static(b"why"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.message().await.unwrap().unwrap().payload.as_ref(),
        b"p"
    );
    assert_eq!(stream.message().await.unwrap().unwrap().seq, 1);
    let status = stream.message().await.expect_err("final status");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "after two");
    assert_eq!(status.details(), b"why");
    assert_eq!(text(status.metadata(), "x-trailer-echo"), "echo-ss");
    echo.stats.wait_idle().await;
    assert_eq!(echo.stats.cancelled(), 0);
}

#[tokio::test]
async fn bidi_replies_per_request_and_ends_on_status() {
    let echo = EchoHandle::spawn(any_port(), "echo-bidi").await.unwrap();
    let mut client = client(&echo).await;

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3u64 {
        tx.send(req(b"ping")).await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.seq, i);
        assert_eq!(reply.payload.as_ref(), b"ping");
        assert_eq!(reply.server, "echo-bidi");
    }
    tx.send(EchoRequest {
        reply_size: 10,
        sleep_ms: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().payload.len(), 10);
    tx.send(EchoRequest {
        status_code: Code::Unavailable as i32,
        status_message: "bye".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let status = replies.message().await.expect_err("status");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(text(status.metadata(), "x-trailer-echo"), "echo-bidi");

    // A clean half-close ends the call with OK.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(req(b"one")).await.unwrap();
    drop(tx);
    assert_eq!(replies.message().await.unwrap().unwrap().seq, 0);
    assert!(replies.message().await.unwrap().is_none());
    echo.stats.wait_idle().await;
    assert_eq!(echo.stats.cancelled(), 0);
    assert_eq!(
        echo.stats
            .bidi_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn cancellations_are_counted() {
    let echo = EchoHandle::spawn(any_port(), "echo-cancel").await.unwrap();
    let mut client = client(&echo).await;

    // Unary: the client gives up while the server sleeps.
    let slow = EchoRequest {
        sleep_ms: 30_000,
        ..Default::default()
    };
    let gave_up = tokio::time::timeout(Duration::from_millis(50), client.unary(slow)).await;
    assert!(gave_up.is_err());
    tokio::time::timeout(WAIT, echo.stats.wait_cancelled(1))
        .await
        .expect("unary cancel seen");

    // ServerStream: the client drops the stream mid-way.
    let mut stream = client
        .server_stream(EchoRequest {
            reply_count: 1_000_000,
            sleep_ms: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    tokio::time::timeout(WAIT, echo.stats.wait_cancelled(2))
        .await
        .expect("stream cancel seen");
    tokio::time::timeout(WAIT, echo.stats.wait_idle())
        .await
        .expect("idle");
}

#[tokio::test]
async fn health_is_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let echo = EchoHandle::spawn(any_port(), "echo-h").await.unwrap();
    let channel = Endpoint::from_shared(echo.uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "weir.echo.Echo"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
}

#[tokio::test]
async fn max_concurrent_streams_is_announced() {
    let options = EchoOptions {
        max_concurrent_streams: Some(1),
    };
    let echo = EchoHandle::spawn_with(any_port(), "echo-mcs", options)
        .await
        .unwrap();
    let mut client = client(&echo).await;
    // Until the server's SETTINGS arrive, a client may open more streams
    // than allowed (the server refuses them): one call first.
    client.unary(req(b"warm-up")).await.unwrap();
    let slow = || EchoRequest {
        sleep_ms: 150,
        ..Default::default()
    };
    let started = Instant::now();
    let (mut a, mut b) = (client.clone(), client);
    let (ra, rb) = tokio::join!(a.unary(slow()), b.unary(slow()));
    ra.unwrap();
    rb.unwrap();
    // One connection, one stream at a time: the calls ran one after the other.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn kill_cuts_connections() {
    let echo = EchoHandle::spawn(any_port(), "echo-kill").await.unwrap();
    let addr = echo.addr;
    let mut client = client(&echo).await;
    let mut stream = client
        .server_stream(EchoRequest {
            reply_count: 1_000_000,
            sleep_ms: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let stats = echo.stats.clone();
    tokio::time::timeout(WAIT, echo.kill())
        .await
        .expect("kill is quick");
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("stream ends");
    assert!(
        end.is_err(),
        "a killed server cannot end the stream cleanly"
    );
    // The in-flight stream was cut under the server: counted as cancelled.
    tokio::time::timeout(WAIT, stats.wait_cancelled(1))
        .await
        .expect("cancel seen");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
