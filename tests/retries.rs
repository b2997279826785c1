//! Retries (`retries`, `retry-on`, `option redispatch`, `retry-buffer`):
//! failed attempts are tried again only while nothing reached the client and
//! the request can be sent again whole, within the backend's retry budget
//! and the call's deadline.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Code;
use weir_echo::pb::EchoRequest;

/// A gRPC server that reads the whole request, waits `delay`, then answers
/// trailers-only `status`. It counts attempts, the bytes each one sent and
/// the `grpc-timeout` each one carried.
#[derive(Clone, Default)]
struct Failing {
    attempts: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<usize>>>,
    timeouts: Arc<Mutex<Vec<Duration>>>,
}

impl Failing {
    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

async fn failing_server(status: u32, delay: Duration) -> (SocketAddr, Failing) {
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Failing::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = s2.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    seen.attempts.fetch_add(1, Ordering::SeqCst);
                    if let Some(t) = req.headers().get("grpc-timeout") {
                        let d = weir::http::deadline::parse(t.as_bytes()).expect("valid");
                        seen.timeouts.lock().unwrap().push(d);
                    }
                    let n = match req.into_body().collect().await {
                        Ok(b) => b.to_bytes().len(),
                        Err(_) => usize::MAX,
                    };
                    seen.bodies.lock().unwrap().push(n);
                    tokio::time::sleep(delay).await;
                    let mut r = Response::new(Empty::<Bytes>::new());
                    let h = r.headers_mut();
                    h.insert("content-type", HeaderValue::from_static("application/grpc"));
                    h.insert("grpc-status", HeaderValue::from(status));
                    h.insert("grpc-message", HeaderValue::from_static("broken"));
                    Ok::<_, Infallible>(r)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A port nobody listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind(ANY).expect("bind");
    l.local_addr().expect("addr")
}

fn config(backend_extra: &str, servers: &[SocketAddr]) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance roundrobin\n{backend_extra}{}",
        server_lines(servers, "")
    )
}

/// `retries 2` + `option redispatch`: a refused connect is tried again on
/// the other server, so no call fails (conn-failure is the default event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_failure_is_redispatched_to_a_good_server() {
    let good = echo_servers(1).await;
    let cfg = config(
        "    retries 2\n    option redispatch\n",
        &[closed_port(), good[0].addr],
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    for i in 0..10 {
        let r = within(10, c.unary(EchoRequest::default()))
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e:?}"));
        assert_eq!(r.into_inner().server, "s1");
    }
}

/// One dead server, no redispatch: the call is retried on it and fails with
/// UNAVAILABLE once the retries are spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_failure_on_a_single_dead_server_fails_after_retries() {
    let cfg = config("    retries 2\n", &[closed_port()]);
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    for _ in 0..3 {
        let e = within(10, c.unary(EchoRequest::default()))
            .await
            .expect_err("dead server");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
}

/// `retries 0`: no retry at all, even on a refused connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_zero_does_not_retry() {
    let good = echo_servers(1).await;
    let cfg = config(
        "    retries 0\n    option redispatch\n",
        &[closed_port(), good[0].addr],
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let mut failed = 0;
    for _ in 0..10 {
        if c.unary(EchoRequest::default()).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 5, "every call to the dead server fails");
}

/// A trailers-only UNAVAILABLE is retried (on the other server with
/// redispatch) with `retry-on unavailable`; not without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_only_unavailable_is_retried_with_retry_on_unavailable() {
    let good = echo_servers(1).await;
    let (bad, seen) = failing_server(14, Duration::ZERO).await;
    let cfg = config(
        "    retries 2\n    option redispatch\n    retry-on conn-failure unavailable\n",
        &[bad, good[0].addr],
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let msg = EchoRequest {
        payload: vec![7; 300].into(),
        ..Default::default()
    };
    for i in 0..10 {
        let r = within(10, c.unary(msg.clone()))
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e:?}"));
        assert_eq!(r.into_inner().server, "s1");
    }
    assert!(seen.attempts() >= 5, "the bad server was tried");
    // The replayed body is the whole message (5-byte frame header + proto).
    assert!(seen.bodies.lock().unwrap().iter().all(|&n| n > 300));

    // Without `retry-on unavailable`: half of the calls fail.
    let cfg = config(
        "    retries 2\n    option redispatch\n",
        &[bad, good[0].addr],
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let mut failed = 0;
    for _ in 0..10 {
        match c.unary(msg.clone()).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 5);
}

/// RESOURCE_EXHAUSTED and `all-retryable-errors` too; without redispatch
/// the same (only) server gets every attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhausted_is_retried_on_the_same_server() {
    let (bad, seen) = failing_server(8, Duration::ZERO).await;
    let cfg = config("    retries 3\n    retry-on all-retryable-errors\n", &[bad]);
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let e = c.unary(EchoRequest::default()).await.expect_err("fails");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(seen.attempts(), 4, "1 attempt + 3 retries");
}

fn stream_of(n: usize, size: usize) -> impl tokio_stream::Stream<Item = EchoRequest> {
    tokio_stream::iter((0..n).map(move |_| EchoRequest {
        payload: vec![1; size].into(),
        ..Default::default()
    }))
}

/// A client-streaming call whose body outgrew `retry-buffer` is never
/// replayed: one attempt, and the client gets the server's error. A small
/// one is replayed whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_body_over_retry_buffer_is_not_replayed() {
    let (bad, seen) = failing_server(14, Duration::ZERO).await;
    let cfg = config(
        "    retries 3\n    retry-on unavailable\n    retry-buffer 1k\n",
        &[bad],
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let e = within(10, c.client_stream(stream_of(4, 512)))
        .await
        .expect_err("fails");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(seen.attempts(), 1, "never replayed");

    // Under the buffer: replayed, every attempt gets the whole body.
    let e = within(10, c.client_stream(stream_of(4, 100)))
        .await
        .expect_err("fails");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(seen.attempts(), 1 + 4);
    let bodies = seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 5);
    assert!(
        bodies[1..].iter().all(|&n| n == bodies[1] && n >= 400),
        "{bodies:?}"
    );
}

/// The retry budget: with every server failing, `retries 3` does not
/// quadruple the load. In each one-second window a retry is allowed while
/// `retries < max(10, 20% of the window's calls)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_bounds_amplification() {
    let (a, sa) = failing_server(14, Duration::ZERO).await;
    let (b, sb) = failing_server(14, Duration::ZERO).await;
    let cfg = config(
        "    retries 3\n    retry-on unavailable\n    option redispatch\n",
        &[a, b],
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    const N: usize = 200;
    let start = Instant::now();
    for _ in 0..N {
        let e = c.unary(EchoRequest::default()).await.expect_err("fails");
        assert_eq!(e.code(), Code::Unavailable);
    }
    let windows = start.elapsed().as_secs() as usize + 2;
    let attempts = sa.attempts() + sb.attempts();
    let bound = N + N / 5 + 10 * windows;
    assert!(attempts > N, "some calls were retried: {attempts}");
    assert!(
        attempts <= bound,
        "{attempts} attempts for {N} calls (bound {bound})"
    );
    assert!(attempts < 2 * N, "{attempts}");
}

/// A retried call still ends by its deadline, and every attempt tells the
/// server only the time that is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_call_ends_by_its_deadline() {
    let (bad, seen) = failing_server(14, Duration::from_millis(120)).await;
    let cfg = config("    retries 20\n    retry-on unavailable\n", &[bad]);
    let proxy = start_proxy(&cfg).await;
    let mut c = bare_client(fe_addr(&proxy)).await;
    let mut req = tonic::Request::new(EchoRequest::default());
    req.set_timeout(Duration::from_millis(500));
    let start = Instant::now();
    let e = within(10, c.unary(req)).await.expect_err("runs out");
    let took = start.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("deadline exceeded (500ms) in weir"),
        "{e:?}"
    );
    assert!(took >= Duration::from_millis(480), "{took:?}");
    assert!(took < Duration::from_millis(900), "{took:?}");
    let timeouts = seen.timeouts.lock().unwrap().clone();
    assert!((3..=5).contains(&timeouts.len()), "{timeouts:?}");
    assert!(
        timeouts
            .windows(2)
            .all(|w| w[1] + Duration::from_millis(100) <= w[0]),
        "each attempt gets what is left: {timeouts:?}"
    );
    assert!(timeouts[0] <= Duration::from_millis(500));
}

// ------------------------------------------------------------------ config

fn check(text: &str) -> Result<weir::config::Loaded, String> {
    weir::config::parse_str("test.cfg", text).map_err(|e| e.to_string())
}

fn backend_cfg(lines: &str) -> String {
    format!("defaults\n    mode http\nbackend be\n{lines}    server s1 127.0.0.1:1 proto h2\n")
}

#[test]
fn retry_keywords_parse() {
    let l = check(&backend_cfg(
        "    retries 5\n    retry-on unavailable 503\n    retry-buffer 8k\n    option redispatch\n",
    ))
    .expect("valid");
    assert!(
        l.warnings.iter().all(|w| !w.to_string().contains("retr")),
        "{:?}",
        l.warnings
    );
    let be = weir::backend::Backend::from_config(&l.config.backends[0]);
    assert_eq!(be.retry.retries, 5);
    assert_eq!(
        be.retry.on,
        weir::config::RetryOn::UNAVAILABLE.union(weir::config::RetryOn::HTTP_503)
    );
    assert_eq!(be.retry.buffer, 8192);
    assert!(be.retry.redispatch);

    // Defaults: retries 3, retry-on conn-failure refused-stream (an h2
    // server), 64k, no redispatch; inherited from `defaults`.
    let l = check(&backend_cfg("")).expect("valid");
    let be = weir::backend::Backend::from_config(&l.config.backends[0]);
    assert_eq!(be.retry.retries, 3);
    assert_eq!(
        be.retry.on,
        weir::config::RetryOn::CONN_FAILURE.union(weir::config::RetryOn::REFUSED_STREAM)
    );
    assert_eq!(be.retry.buffer, 64 << 10);
    assert!(!be.retry.redispatch);
    let l = check("defaults\n    mode http\n    retries 1\n    retry-on none\nbackend be\n    server s1 127.0.0.1:1 proto h2\n").expect("valid");
    let be = weir::backend::Backend::from_config(&l.config.backends[0]);
    assert_eq!(be.retry.retries, 0, "retry-on none disables retries");
}

#[test]
fn retry_keyword_errors() {
    let e = check(&backend_cfg("    retry-on bogus\n")).expect_err("bad event");
    assert!(
        e.contains("'retry-on' : unknown event 'bogus' (expected one of conn-failure, empty-response, refused-stream, unavailable, resource-exhausted, 503, all-retryable-errors, none)"),
        "{e}"
    );
    let e = check(&backend_cfg("    retries -1\n")).expect_err("negative");
    assert!(e.contains("'retries' : invalid number '-1'"), "{e}");
    let e = check(&backend_cfg("    retry-buffer lots\n")).expect_err("bad size");
    assert!(
        e.contains("'retry-buffer' : invalid size value 'lots'"),
        "{e}"
    );
    let e = check(&backend_cfg("    retry-buffer 1g\n")).expect_err("too large");
    assert!(e.contains("too large"), "{e}");
    let e = check(&backend_cfg("    retry-on none 503\n")).expect_err("none alone");
    assert!(e.contains("'none' cannot be combined"), "{e}");
    let l = check(&backend_cfg("    retry-on 504 conn-failure\n")).expect("haproxy event");
    assert!(
        l.warnings.iter().any(|w| w
            .to_string()
            .contains("'retry-on 504' has no effect in weir yet")),
        "{:?}",
        l.warnings
    );
}

/// An HTTP/2 server that refuses (REFUSED_STREAM) the first `refuse`
/// streams it gets, then answers every call trailers-only NOT_FOUND.
async fn refusing_server(refuse: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(s).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if seen.fetch_add(1, Ordering::SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let r = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "5")
                        .body(())
                        .expect("response");
                    let _ = respond.send_response(r, true);
                }
            });
        }
    });
    (addr, streams)
}

/// A server that is restarting: on every connection it answers the
/// client's first HEADERS frame with GOAWAY(last-stream-id 0, NO_ERROR),
/// so the stream was not processed, then closes. Written frame by frame.
async fn goaway_server() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let goaways = Arc::new(AtomicUsize::new(0));
    let sent = goaways.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).await.is_err() {
                    return;
                }
                // Our SETTINGS (empty).
                if s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.is_err() {
                    return;
                }
                // Bounded: a client sends a handful of frames before HEADERS.
                for _ in 0..32 {
                    let mut head = [0u8; 9];
                    if s.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    match head[3] {
                        // SETTINGS without ACK: acknowledge it.
                        4 if head[4] & 1 == 0 => {
                            let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                        }
                        // HEADERS: going away, and this stream is not covered.
                        // Like a server restarting gracefully, keep the
                        // connection open a moment (reading what comes)
                        // before closing it.
                        1 => {
                            let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                            let _ = s.write_all(&goaway).await;
                            sent.fetch_add(1, Ordering::SeqCst);
                            let mut sink = [0u8; 4096];
                            let drain = async {
                                while let Ok(n) = s.read(&mut sink).await {
                                    if n == 0 {
                                        break;
                                    }
                                }
                            };
                            let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
                            let _ = s.shutdown().await;
                            return;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, goaways)
}

/// Upstream GOAWAY not covering the call (a server restarting): the call is
/// retried on another server with the default `retry-on` (no retry line),
/// and the client never sees the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_above_last_stream_id_is_retried_by_default() {
    let (restarting, goaways) = goaway_server().await;
    let good = echo_servers(1).await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance first\n    option redispatch\n{}",
        server_lines(&[restarting, good[0].addr], "")
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    for i in 0..5 {
        let r = within(10, c.unary(EchoRequest::default()))
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e:?}"));
        assert_eq!(r.into_inner().server, "s1");
    }
    assert!(
        goaways.load(Ordering::SeqCst) >= 1,
        "the restarting server was tried"
    );
}

/// REFUSED_STREAM is retried by default (on the same server without
/// redispatch); with `retry-on conn-failure` alone it reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stream_is_retried_by_default_and_not_with_conn_failure_only() {
    let (refuser, streams) = refusing_server(1).await;
    let proxy = start_proxy(&config("", &[refuser])).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let e = within(10, c.unary(EchoRequest::default()))
        .await
        .expect_err("the server answers NOT_FOUND");
    assert_eq!(
        e.code(),
        Code::NotFound,
        "the retry reached the server: {e:?}"
    );
    assert_eq!(
        streams.load(Ordering::SeqCst),
        2,
        "refused once, then answered"
    );

    let (refuser, streams) = refusing_server(1).await;
    let proxy = start_proxy(&config("    retry-on conn-failure\n", &[refuser])).await;
    let mut c = echo_client(fe_addr(&proxy)).await;
    let e = within(10, c.unary(EchoRequest::default()))
        .await
        .expect_err("refused, not retried");
    assert_ne!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(streams.load(Ordering::SeqCst), 1);
}
