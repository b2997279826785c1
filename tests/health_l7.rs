//! Active health checks, part 2: `option grpc-check`, `option tcp-check`
//! (including HAProxy's "raw HTTP/2 gRPC call in a send-binary" trick) and
//! `option httpchk`. Real sockets on 127.0.0.1, `inter 100ms`, bounded
//! polling instead of paused time (real connects do not follow it).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::ServingStatus;

async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn up(p: &weir::proxy::Running) -> bool {
    let be = p.backend("be").expect("backend exists");
    be.servers[0].is_up()
}

fn last(p: &weir::proxy::Running) -> (u64, String) {
    let be = p.backend("be").expect("backend exists");
    let h = be.servers[0].state.health.lock().expect("lock");
    let reason = h
        .last
        .as_ref()
        .map(|l| l.reason.clone())
        .unwrap_or_default();
    (h.checks, reason)
}

/// Waits for the first check and returns its reason.
async fn first_reason(p: &weir::proxy::Running) -> String {
    wait_for(5, "a check", || last(p).0 >= 1).await;
    let be = p.backend("be").expect("backend exists");
    if let Some(l) = &be.servers[0].state.health.lock().expect("lock").last {
        eprintln!("check took {:?}: {}", l.duration, l.reason);
    }
    last(p).1
}

/// `mode <mode>` proxy, backend `be` with `<backend>` lines and server
/// `s1 <addr> check inter 100ms <server>`.
async fn proxy(mode: &str, backend: &str, addr: SocketAddr, server: &str) -> weir::proxy::Running {
    let text = format!(
        "defaults\n    mode {mode}\n    timeout connect 1s\n    timeout check 300ms\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n{backend}    server s1 {addr} check inter 100ms {server}\n"
    );
    start_proxy(&text).await
}

// ---------------------------------------------------------------- gRPC

#[tokio::test]
async fn grpc_check_follows_serving_status() {
    let servers = echo_servers(1).await;
    let p = proxy(
        "http",
        "    option grpc-check\n",
        servers[0].addr,
        "rise 1 fall 1",
    )
    .await;
    assert_eq!(first_reason(&p).await, "Layer7 check passed, code: SERVING");
    let health = &servers[0].health;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let t = wait_for(5, "DOWN", || !up(&p)).await;
    assert_eq!(last(&p).1, "Layer7 wrong status, code: NOT_SERVING");
    health.set_service_status("", ServingStatus::Serving).await;
    let t2 = wait_for(5, "UP", || up(&p)).await;
    eprintln!("grpc-check: DOWN after {t:?}, UP after {t2:?} (inter 100ms, rise 1, fall 1)");
}

#[tokio::test]
async fn grpc_check_named_service_in_tcp_mode() {
    let servers = echo_servers(1).await;
    let be = "    option grpc-check weir.echo.Echo\n";
    let p = proxy("tcp", be, servers[0].addr, "fall 1").await;
    assert_eq!(first_reason(&p).await, "Layer7 check passed, code: SERVING");

    let be = "    option grpc-check no.such.Service\n";
    let p = proxy("tcp", be, servers[0].addr, "fall 1").await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert!(
        last(&p)
            .1
            .starts_with("Layer7 wrong status, code: SERVICE_UNKNOWN"),
        "{}",
        last(&p).1
    );
}

#[tokio::test]
async fn grpc_check_failures() {
    // Nobody listens.
    let l = std::net::TcpListener::bind(any_addr()).expect("bind");
    let closed = l.local_addr().expect("addr");
    drop(l);
    let p = proxy("http", "    option grpc-check\n", closed, "fall 1").await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert!(
        last(&p)
            .1
            .starts_with("Layer4 connection problem, info: \""),
        "{}",
        last(&p).1
    );
    // Accepts TCP, never speaks HTTP/2: the check times out (timeout check 300ms).
    let p = proxy(
        "http",
        "    option grpc-check\n",
        silent_listener(any_addr()).await.0,
        "fall 1",
    )
    .await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert_eq!(last(&p).1, "Layer7 timeout");
}

// ---------------------------------------------------------------- tcp-check

/// Answers each line `PING` with `+PONG`, anything else with `-ERR` and a close.
async fn ping_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind(any_addr())
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let ping = buf[..n].starts_with(b"PING");
                    let reply: &[u8] = if ping { b"+PONG\r\n" } else { b"-ERR\r\n" };
                    if s.write_all(reply).await.is_err() || !ping {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn tcp_check_send_and_expect() {
    let addr = ping_server().await;
    let ok = "    option tcp-check\n    tcp-check connect\n    tcp-check send PING\\r\\n\n    tcp-check expect string +PONG\n";
    let p = proxy("tcp", ok, addr, "fall 1").await;
    assert_eq!(first_reason(&p).await, "Layer7 check passed");

    let ok = "    option tcp-check\n    tcp-check send-binary 50494e470d0a\n    tcp-check expect rstring ^\\+PO\n    tcp-check expect ! string -ERR\n    tcp-check expect rbinary 504F4E47\n";
    let p = proxy("tcp", ok, addr, "fall 1").await;
    assert_eq!(first_reason(&p).await, "Layer7 check passed");

    let bad =
        "    option tcp-check\n    tcp-check send HELLO\\r\\n\n    tcp-check expect string +PONG\n";
    let p = proxy("tcp", bad, addr, "fall 1").await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert!(
        last(&p).1.starts_with(
            "Layer7 invalid response, info: \"TCPCHK did not match content '+PONG' at step 2"
        ),
        "{}",
        last(&p).1
    );

    // A server that never answers: the expect times out.
    let p = proxy("tcp", ok, silent_listener(any_addr()).await.0, "fall 1").await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert_eq!(
        last(&p).1,
        "Layer7 timeout, info: \"at step 2 of tcp-check\""
    );

    // Only `option tcp-check`: a connect check.
    let p = proxy("tcp", "    option tcp-check\n", addr, "").await;
    assert_eq!(first_reason(&p).await, "Layer4 check passed");
}

/// `servicestatus.HealthCheck/Status`, served with tonic's server codec over
/// hyper's HTTP/2 server; answers `HealthCheckResult{status: "MagicResponseCodeOK"}`.
mod status_service {
    use std::future::Future;
    use std::pin::Pin;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthCheckRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthCheckResult {
        #[prost(string, tag = "1")]
        pub status: String,
    }

    pub struct Status;

    impl tonic::server::UnaryService<HealthCheckRequest> for Status {
        type Response = HealthCheckResult;
        type Future = Pin<
            Box<
                dyn Future<Output = Result<tonic::Response<HealthCheckResult>, tonic::Status>>
                    + Send,
            >,
        >;
        fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
            Box::pin(async {
                Ok(tonic::Response::new(HealthCheckResult {
                    status: "MagicResponseCodeOK".into(),
                }))
            })
        }
    }
}

async fn status_server() -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = tokio::net::TcpListener::bind(any_addr())
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let resp = if req.uri().path() == "/servicestatus.HealthCheck/Status" {
                        let codec = tonic_prost::ProstCodec::<
                            status_service::HealthCheckResult,
                            status_service::HealthCheckRequest,
                        >::default();
                        tonic::server::Grpc::new(codec)
                            .unary(status_service::Status, req)
                            .await
                    } else {
                        tonic::Status::unimplemented("").into_http()
                    };
                    Ok::<_, Infallible>(resp)
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc),
            );
        }
    });
    addr
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing", indexed name (4-bit prefix).
fn literal_indexed_name(index: u8, value: &str) -> Vec<u8> {
    let mut out = if index < 15 {
        vec![index]
    } else {
        vec![15, index - 15]
    };
    out.push(value.len() as u8); // no Huffman, < 127 bytes
    out.extend_from_slice(value.as_bytes());
    out
}

/// HPACK "literal header field without indexing", new name.
fn literal_new_name(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    out
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole client side of a unary gRPC call, as one blob.
fn grpc_call_blob(path: &str) -> Vec<u8> {
    let mut blob = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    blob.extend(frame(0x4, 0, 0, &[])); // SETTINGS, empty
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    block.extend(literal_indexed_name(4, path)); // :path
    block.extend(literal_indexed_name(1, "localhost")); // :authority
    block.extend(literal_indexed_name(31, "application/grpc")); // content-type
    block.extend(literal_new_name("te", "trailers"));
    blob.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    blob.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // DATA: empty message, END_STREAM
    blob
}

#[tokio::test]
async fn tcp_check_send_binary_grpc_trick() {
    let addr = status_server().await;
    let be = |path: &str| {
        format!(
            "    option tcp-check\n    tcp-check connect\n    tcp-check send-binary {}\n    tcp-check expect binary {}\n",
            hex(&grpc_call_blob(path)),
            hex(b"MagicResponseCodeOK")
        )
    };
    let p = proxy(
        "tcp",
        &be("/servicestatus.HealthCheck/Status"),
        addr,
        "fall 1",
    )
    .await;
    assert_eq!(first_reason(&p).await, "Layer7 check passed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(up(&p));
    assert!(last(&p).0 >= 2);

    // Another method: no magic string; the server answers UNIMPLEMENTED and
    // keeps the connection open, so the expect runs until the timeout.
    let p = proxy(
        "tcp",
        &be("/servicestatus.HealthCheck/Nope"),
        addr,
        "fall 1",
    )
    .await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert_eq!(
        last(&p).1,
        "Layer7 timeout, info: \"at step 3 of tcp-check\""
    );
}

// ---------------------------------------------------------------- httpchk

/// Serves HTTP/1.1 and h2c (prior knowledge); answers `status` with body `alive`.
async fn http_server(status: Arc<AtomicU16>) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = tokio::net::TcpListener::bind(any_addr())
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let status = status.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let code = status.load(Ordering::Relaxed);
                    async move {
                        let body = format!("alive {} {}", req.method(), req.uri().path());
                        let resp = http::Response::builder()
                            .status(code)
                            .body(Full::new(Bytes::from(body)))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn httpchk_status_and_body() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = http_server(status.clone()).await;
    let p = proxy(
        "http",
        "    option httpchk GET /health\n",
        addr,
        "rise 1 fall 1",
    )
    .await;
    assert_eq!(
        first_reason(&p).await,
        "Layer7 check passed, code: 200, info: \"OK\""
    );
    status.store(503, Ordering::Relaxed);
    wait_for(5, "DOWN", || !up(&p)).await;
    assert_eq!(
        last(&p).1,
        "Layer7 wrong status, code: 503, info: \"Service Unavailable\""
    );
    status.store(200, Ordering::Relaxed);
    wait_for(5, "UP", || up(&p)).await;

    // HTTP/2 with check-proto h2, expect on the body.
    let be = "    option httpchk\n    http-check send meth GET uri /ready ver HTTP/1.1 hdr X-Check weir\n    http-check expect string \"alive GET /ready\"\n";
    let p = proxy("tcp", be, addr, "check-proto h2 fall 1").await;
    assert_eq!(
        first_reason(&p).await,
        "Layer7 check passed, code: 200, info: \"OK\""
    );
    let be = "    option httpchk\n    http-check expect string nope\n";
    let p = proxy("tcp", be, addr, "fall 1").await;
    wait_for(5, "DOWN", || !up(&p)).await;
    assert_eq!(
        last(&p).1,
        "Layer7 wrong status, code: 200, info: \"HTTP content check did not match\""
    );
    let be = "    option httpchk\n    http-check expect status 500-599\n";
    status.store(503, Ordering::Relaxed);
    let p = proxy("http", be, addr, "").await;
    assert!(first_reason(&p)
        .await
        .starts_with("Layer7 check passed, code: 503"));
    let be = "    option httpchk\n    http-check expect rstatus ^2\n";
    let p = proxy("http", be, addr, "fall 1").await;
    wait_for(5, "DOWN", || !up(&p)).await;
}

// ---------------------------------------------------------------- config

fn parse_err(backend: &str) -> String {
    let text = format!("backend be\n{backend}    server s1 127.0.0.1:1 check\n");
    match weir::config::parse_str("t.cfg", &text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_check_configs() {
    let cases = [
        ("tcp-check send-binary abc", "parsing [t.cfg:2] : 'tcp-check' : 'tcp-check send-binary' : invalid hex string 'abc' : odd number of digits (3)"),
        ("tcp-check send-binary 0g", "bad hex digit 'g' at position 2"),
        ("tcp-check expect binary zz", "bad hex digit 'z' at position 1"),
        ("tcp-check frobnicate", "'tcp-check' only supports 'comment', 'connect', 'send', 'send-binary' and 'expect' (got 'frobnicate')"),
        ("tcp-check expect string", "'tcp-check expect string' expects <pattern> as an argument"),
        ("tcp-check expect", "'tcp-check expect' expects a matcher"),
        ("tcp-check expect glob x", "'tcp-check expect' only supports 'string', 'rstring', 'binary' and 'rbinary' (got 'glob')"),
        ("tcp-check expect rstring (", "invalid regex '('"),
        ("tcp-check connect ssl", "'tcp-check connect ssl' is not supported yet"),
        ("tcp-check connect port x", "'tcp-check connect port' :"),
        ("tcp-check send", "'tcp-check send' expects a <string> as argument"),
        ("http-check expect status abc", "'http-check' :"),
        ("http-check expect binary 00", "'http-check expect' only supports 'status', 'rstatus', 'string' and 'rstring' (got 'binary')"),
        ("http-check send meth", "'http-check send' : 'meth' expects an argument"),
        ("http-check bogus", "'http-check' only supports 'comment', 'send' and 'expect' (got 'bogus')"),
        ("option httpchk GET / HTTP/2", "use 'check-proto h2'"),
        ("option grpc-check a b", "unexpected argument 'b'"),
    ];
    for (line, want) in cases {
        let err = parse_err(&format!("    {line}\n"));
        assert!(err.contains("parsing [t.cfg:2] : "), "{line}: {err}");
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn check_rules_are_stored() {
    use weir::config::{Expect, HealthCheck, Pattern, TcpCheckRule};
    let text = "defaults\n    option tcp-check\n    tcp-check send x\n\
                backend a\n    server s1 127.0.0.1:1 check\n\
                backend b\n    tcp-check connect port 81\n    tcp-check expect ! rstring ^-\n    server s1 127.0.0.1:1 check\n\
                backend c\n    option grpc-check my.Svc\n    server s1 127.0.0.1:1 check\n\
                backend d\n    option httpchk HEAD /x HTTP/1.1\n    http-check expect status 200,204\n    server s1 127.0.0.1:1 check\n";
    let cfg = weir::config::parse_str("t.cfg", text)
        .expect("valid")
        .config;
    let check = |n: &str| cfg.backend(n).expect("backend").check.clone();
    assert_eq!(
        check("a"),
        HealthCheck::Tcp(vec![TcpCheckRule::Send(b"x".to_vec())])
    );
    // Own rules replace inherited ones.
    assert_eq!(
        check("b"),
        HealthCheck::Tcp(vec![
            TcpCheckRule::Connect { port: Some(81) },
            TcpCheckRule::Expect(Expect {
                negate: true,
                pattern: Pattern::Rstring("^-".into())
            }),
        ])
    );
    assert_eq!(
        check("c"),
        HealthCheck::Grpc {
            service: "my.Svc".into()
        }
    );
    let HealthCheck::Http(h) = check("d") else {
        panic!("not http: {:?}", check("d"))
    };
    assert_eq!(
        (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
        ("HEAD", "/x", "HTTP/1.1")
    );
    assert_eq!(
        h.expect,
        Some(Expect {
            negate: false,
            pattern: Pattern::Status(vec![(200, 200), (204, 204)])
        })
    );
}
