//! Stopping (issue 7): SIGTERM-style shutdown lets in-flight calls finish
//! within the grace period (`hard-stop-after`), then ends the gRPC calls
//! still open with UNAVAILABLE "server shutting down" trailers, not a reset.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tonic::Code;
use weir_echo::pb::EchoRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_short_calls_and_ends_long_streams_cleanly() {
    let servers = echo_servers(1).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let proxy = start_proxy(&http_config(&addrs, "")).await;
    let addr = fe_addr(&proxy);
    let mut c = echo_client(addr).await;
    // A stream that would take 50 s.
    let mut long = stream_started(&mut c, 1000, 50).await;
    // A unary call that takes 200 ms, in flight when the stop starts.
    let mut c2 = echo_client(addr).await;
    let short = tokio::spawn(async move {
        c2.unary(EchoRequest {
            sleep_ms: 200,
            ..Default::default()
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let stop = tokio::spawn(proxy.shutdown(Duration::from_millis(600)));

    let short = within(5, short).await.expect("join");
    assert!(
        short.is_ok(),
        "the in-flight unary call finished: {short:?}"
    );

    // The long stream keeps flowing during the grace period, then ends
    // with UNAVAILABLE trailers from weir.
    let mut during = 0;
    let status = loop {
        match within(10, long.message()).await {
            Ok(Some(_)) => during += 1,
            Ok(None) => panic!("the stream ended OK"),
            Err(s) => break s,
        }
    };
    assert!(
        during >= 5,
        "messages kept flowing during the grace: {during}"
    );
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "server shutting down");
    assert!(started.elapsed() >= Duration::from_millis(550));
    within(10, stop).await.expect("shutdown ends");
    // The server saw its stream cancelled.
    servers[0].stats.wait_cancelled(1).await;
}
