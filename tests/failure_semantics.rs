//! The issue-7 scenarios end to end with stock tonic clients: a 2-hour
//! bidirectional stream under `timeout client 30s` (paused time), queueing
//! over three servers, a retry visible in the access log, and reloads under
//! load with open streams.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_stream::StreamExt;
use weir_echo::pb::EchoRequest;

/// A bidirectional stream that moves one message every 10 s for two hours
/// lives through `timeout client 30s` / `timeout server 30s`: they are
/// inactivity timers. Paused time: the two hours pass in milliseconds.
#[tokio::test(start_paused = true)]
async fn two_hour_bidi_stream_survives_inactivity_timeouts() {
    let servers = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {} proto h2\n",
        servers[0].addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    const MESSAGES: u64 = 2 * 3600 / 10;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let started = tokio::time::Instant::now();
    for i in 0..MESSAGES {
        tx.send(EchoRequest {
            payload: i.to_be_bytes().to_vec().into(),
            ..Default::default()
        })
        .await
        .expect("send");
        let reply = replies
            .next()
            .await
            .expect("stream still open")
            .expect("no error");
        assert_eq!(reply.payload.as_ref(), &i.to_be_bytes());
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    drop(tx);
    assert!(replies.next().await.is_none(), "the stream ends cleanly");
    assert!(started.elapsed() >= Duration::from_secs(2 * 3600));
}

/// Three servers at `maxconn 2`, 20 concurrent calls: all are served, never
/// more than 6 in flight at the servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_over_three_servers_at_maxconn_two() {
    let servers = echo_servers(3).await;
    let lines: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("    server s{} {} proto h2 maxconn 2\n", i + 1, s.addr))
        .collect();
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout queue 10s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance leastconn\n{lines}"
    );
    let proxy = start_proxy(&cfg).await;
    let client = echo_client(fe_addr(&proxy)).await;
    let stats: Vec<_> = servers.iter().map(|s| s.stats.clone()).collect();
    let peak = Arc::new(AtomicU64::new(0));
    let p = peak.clone();
    let watcher = tokio::spawn(async move {
        for _ in 0..1000 {
            let now: u64 = stats.iter().map(|s| s.active()).sum();
            p.fetch_max(now, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move {
                c.unary(EchoRequest {
                    sleep_ms: 100,
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    for c in calls {
        within(20, c).await.expect("join").expect("served");
    }
    watcher.abort();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= 6, "at most 3 x maxconn 2 in flight, saw {peak}");
    assert!(peak >= 4, "the servers were used in parallel, saw {peak}");
    let be = proxy.backend("be").expect("be");
    assert_eq!(be.queued(), 0);
}

/// First server UNAVAILABLE (trailers-only), second OK: the client sees OK
/// and the access log shows one retry (`%rc`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_is_invisible_to_the_client_and_visible_in_the_log() {
    let bad = grpc_status_server(14).await;
    let good = echo_servers(1).await;
    let logs = tokio::net::UdpSocket::bind(ANY).await.expect("udp");
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    option httplog\n    log {} format raw local0\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance first\n    retries 2\n    retry-on unavailable\n    option redispatch\n\
         \x20   server bad {bad} proto h2\n    server good {} proto h2\n",
        logs.local_addr().expect("addr"),
        good[0].addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let r = c
        .unary(EchoRequest::default())
        .await
        .expect("OK after a retry");
    assert_eq!(r.into_inner().server, "s1");
    let mut buf = vec![0u8; 2048];
    let n = within(5, logs.recv(&mut buf)).await.expect("log line");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(line.contains(" be/good "), "{line}");
    // %ac/%fc/%bc/%sc/%rc: the last one is the retry count.
    let words: Vec<&str> = line.split(' ').collect();
    let term = words
        .iter()
        .position(|w| *w == "----")
        .unwrap_or_else(|| panic!("no termination state in {line}"));
    let conns = words[term + 1];
    assert!(conns.ends_with("/1"), "one retry in {conns}: {line}");
    assert!(line.ends_with(" 0"), "final grpc-status 0: {line}");
}

/// Reloads under load: 10,000 unary calls in loops on 8 client channels and
/// 50 open streams while the configuration is reloaded 10 times (one reload
/// fails: its new bind address is taken): no call fails, no stream breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_break_nothing() {
    let servers = echo_servers(2).await;
    let port = std::net::TcpListener::bind(ANY)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let cfg = |server: SocketAddr, extra: &str| {
        let text = format!(
            "defaults\n    mode http\n    timeout connect 2s\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
             backend be\n    server s1 {server} proto h2\n{extra}"
        );
        match weir::config::parse_str("weir.cfg", &text) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        }
    };
    let mut proxy = weir::proxy::start(cfg(servers[0].addr, ""))
        .await
        .expect("starts");
    let addr = fe_addr(&proxy);

    // 50 streams: 40 replies, 50 ms apart (2 s each), opened before the reloads.
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut c = echo_client(addr).await;
        let s = c
            .server_stream(EchoRequest {
                reply_count: 40,
                sleep_ms: 50,
                ..Default::default()
            })
            .await
            .expect("stream opens")
            .into_inner();
        streams.push(tokio::spawn(async move {
            let mut s = s;
            let mut n = 0;
            while let Some(m) = s.next().await {
                m.map_err(|e| format!("stream broke after {n}: {e:?}"))?;
                n += 1;
            }
            Ok::<u32, String>(n)
        }));
    }
    // Unary calls on 8 channels in a loop (tonic reconnects after GOAWAY).
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..8 {
        let mut c = echo_client(addr).await;
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            // 8 x 1250 = 10,000 calls, running through the reloads.
            for _ in 0..1250 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.unary(EchoRequest::default()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("call failed: {e:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let taken = std::net::TcpListener::bind(ANY).expect("bind");
    let busy = taken.local_addr().expect("addr");
    let mut refused = 0;
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let extra = if i == 4 {
            format!("frontend fe2\n    bind {busy}\n    default_backend be\n")
        } else {
            String::new()
        };
        if proxy
            .reload(cfg(servers[i % 2].addr, &extra))
            .await
            .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 1, "the reload with a taken address is refused");
    assert_eq!(proxy.reloads(), 9);
    for s in streams {
        let n = within(30, s).await.expect("join").expect("stream intact");
        assert_eq!(n, 40, "every message of every stream");
    }
    for l in loops {
        within(120, l).await.expect("join");
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(ok.load(Ordering::Relaxed), 10_000, "every call answered");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no failed call");
}
