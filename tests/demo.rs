//! The codename-creator demo: the `weir demo` command end to end, and the
//! demo backend's stream through the proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use weir::demo::backend::{category_nouns, BACKEND_HEADER};
use weir::demo::pb::codename_creator_client::CodenameCreatorClient;
use weir::demo::pb::NameRequest;
use weir::demo::DemoStack;

const ANY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

fn noun(name: &str) -> &str {
    name.split_once(' ').map_or("", |(_, noun)| noun)
}

#[test]
fn weir_demo_spreads_calls_round_robin() {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--backend-base-port",
            "0",
            "--calls",
            "30",
            "--rate",
            "1000",
            "--stats",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run weir demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "weir demo failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("frontend fe_demo"),
        "the config is printed:\n{stdout}"
    );
    let spread = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("spread:"))
        .unwrap_or_else(|| panic!("no spread line in:\n{stdout}"));
    assert_eq!(
        spread, "spread: demo-backend-1=10 demo-backend-2=10 demo-backend-3=10",
        "round robin per call over one client channel\nstdout:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_switches_category_through_the_proxy() {
    let stack = DemoStack::start(ANY, None, 2, 0).await.expect("demo stack");
    let mut client = CodenameCreatorClient::connect(stack.target())
        .await
        .expect("connect to the proxy");

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(NameRequest {
        category: "animals".into(),
    })
    .await
    .unwrap();
    let response = client
        .keep_getting_codenames(ReceiverStream::new(rx))
        .await
        .expect("stream starts");
    let backend = response
        .metadata()
        .get(BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        backend.starts_with("demo-backend-"),
        "x-backend in headers: {backend:?}"
    );
    let mut names = response.into_inner();

    let first = names.message().await.unwrap().expect("a name");
    assert!(
        category_nouns("animals").contains(&noun(&first.name)),
        "{first:?}"
    );

    tx.send(NameRequest {
        category: "cities".into(),
    })
    .await
    .unwrap();
    // Names already on the way may still be animals; a city must follow.
    let city = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let next = names.message().await.unwrap().expect("stream goes on");
            if category_nouns("cities").contains(&noun(&next.name)) {
                return next.name;
            }
            assert!(
                category_nouns("animals").contains(&noun(&next.name)),
                "{next:?}"
            );
        }
    })
    .await
    .expect("switched to cities");
    assert!(!city.is_empty());

    // Half-close: the backend ends the call cleanly.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match names.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("stream ends");
    assert!(matches!(end, Ok(None)), "clean end: {end:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_client_streams_through_the_proxy() {
    let stack = DemoStack::start(ANY, Some(ANY), 2, 0)
        .await
        .expect("demo stack");
    let args = weir::demo::ClientArgs {
        target: stack.target(),
        calls: Some(3),
        stream: true,
        ..Default::default()
    };
    tokio::time::timeout(Duration::from_secs(20), weir::demo::run_client(args))
        .await
        .expect("finishes")
        .expect("streamed 3 names");
    // The demo's stats frontend counted the stream: one call of the
    // method, ended by the client after 3 names (counted when the proxy
    // sees the end, a moment after the client returned).
    let stats = stack.stats_addr.expect("stats frontend bound");
    let mut seen = String::new();
    for _ in 0..50 {
        let metrics = http_get(stats, "/metrics").await;
        let calls: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("weir_grpc_requests_total{")
                    && l.contains("method=\"KeepGettingCodenames\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if calls == 1 {
            seen.clear();
            break;
        }
        seen = metrics;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.is_empty(), "the stream was not counted once:\n{seen}");
    let page = http_get(stats, "/stats").await;
    assert!(page.contains("demo-backend-1"), "{page}");
    stack.shutdown().await;
}

/// GET over HTTP/1.1 (connection: close); the whole response as text.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}
