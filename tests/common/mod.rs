//! Shared harness for integration tests: echo backends on 127.0.0.1:0, a
//! proxy started from inline config text, and tonic clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use weir_echo::pb::echo_client::EchoClient;
use weir_echo::{EchoHandle, EchoOptions};

pub const ANY: &str = "127.0.0.1:0";

pub fn any_addr() -> SocketAddr {
    ANY.parse().expect("literal address")
}

/// `n` echo servers named `s1`..`sn`.
pub async fn echo_servers(n: usize) -> Vec<EchoHandle> {
    echo_servers_with(n, EchoOptions::default()).await
}

pub async fn echo_servers_with(n: usize, opts: EchoOptions) -> Vec<EchoHandle> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(
            EchoHandle::spawn_with(any_addr(), &format!("s{i}"), opts.clone())
                .await
                .expect("echo server starts"),
        );
    }
    v
}

/// `server sN <addr> proto h2 <extra>` lines for the given servers.
pub fn server_lines(servers: &[SocketAddr], extra: &str) -> String {
    servers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server s{} {a} proto h2 {extra}\n", i + 1))
        .collect()
}

/// A minimal http-mode config: frontend `fe` on port 0, backend `be`.
pub fn http_config(servers: &[SocketAddr], backend_extra: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    balance roundrobin\n{backend_extra}{}",
        server_lines(servers, "")
    )
}

/// The configuration in `text`, which must parse.
pub fn load_config(text: &str) -> weir::config::Config {
    match weir::config::parse_str("test.cfg", text) {
        Ok(l) => l.config,
        Err(e) => panic!("config does not parse:\n{e}\n---\n{text}"),
    }
}

/// Parses `text` and starts a proxy.
pub async fn start_proxy(text: &str) -> weir::proxy::Running {
    weir::proxy::start(load_config(text))
        .await
        .expect("proxy starts")
}

/// A port that was free a moment ago (reloads keep sockets only for real
/// ports, as HAProxy does).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(ANY)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn fe_addr(p: &weir::proxy::Running) -> SocketAddr {
    p.local_addr("fe").expect("frontend fe is bound")
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("client connects")
}

pub async fn echo_client(addr: SocketAddr) -> EchoClient<Channel> {
    EchoClient::new(channel(addr).await)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Fails the test if `fut` takes longer than `secs` (a guard, not a benchmark).
pub async fn within<F: std::future::Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("finished in time")
}

/// Opens a server stream of `reply_count` replies sent `sleep_ms` apart and
/// reads its first reply: the call is then established through the proxy.
pub async fn stream_started(
    c: &mut EchoClient<Channel>,
    reply_count: u32,
    sleep_ms: u32,
) -> tonic::Streaming<weir_echo::pb::EchoReply> {
    let mut stream = within(
        10,
        c.server_stream(weir_echo::pb::EchoRequest {
            reply_count,
            sleep_ms,
            ..Default::default()
        }),
    )
    .await
    .expect("stream opens")
    .into_inner();
    within(10, stream.message())
        .await
        .expect("first reply")
        .expect("a reply");
    stream
}

/// Polls `cond` every 10 ms; panics with `what` after `secs` seconds.
pub async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// A raw TCP server (for mode tcp) that echoes every byte back and shuts
/// its write side down after reading EOF; serves up to 256 connections.
pub async fn tcp_echo_server() -> SocketAddr {
    tcp_echo_server_greeting("").await
}

/// [`tcp_echo_server`] that first writes `greeting` to each connection.
pub async fn tcp_echo_server_greeting(greeting: &'static str) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind(ANY).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..256 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = s.write_all(greeting.as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// The byte at offset `i` of the stream [`tcp_echo_exact`] sends.
pub fn tcp_pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Sends `total` bytes to `addr` (a proxy in front of [`tcp_echo_server`])
/// and checks every byte that comes back.
pub async fn tcp_echo_exact(addr: SocketAddr, total: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.split();
    let writer = async {
        let mut sent = 0;
        while sent < total {
            // Odd-sized writes, each continuing the pattern.
            let n = 100_003.min(total - sent);
            let part: Vec<u8> = (sent..sent + n).map(tcp_pattern).collect();
            w.write_all(&part).await.unwrap();
            sent += n;
        }
        w.shutdown().await.unwrap();
    };
    let reader = async {
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            for (k, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, tcp_pattern(got + k), "byte {}", got + k);
            }
            got += n;
        }
        got
    };
    let ((), got) = within(120, async { tokio::join!(writer, reader) }).await;
    assert_eq!(got, total);
}

/// mode tcp idle timeout of 300 ms against an echo server behind `addr`:
/// a session moving a byte every 100 ms for 1.2 s lives, then it is closed
/// about 300 ms after its last byte.
pub async fn moving_then_idle_300ms(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut t = std::time::Instant::now();
    for i in 0..12u8 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        within(2, c.read_exact(&mut b)).await.unwrap();
        assert_eq!(b[0], i);
        t = std::time::Instant::now();
    }
    // Idle from `t` on: closed by weir ~300 ms later.
    let mut rest = Vec::new();
    within(5, c.read_to_end(&mut rest)).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(rest.is_empty());
}

/// Server `name` of backend `backend` in a running proxy.
pub fn server(
    p: &weir::proxy::Running,
    backend: &str,
    name: &str,
) -> std::sync::Arc<weir::backend::Server> {
    let be = p.backend(backend).expect("backend exists");
    be.servers
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .expect("server exists")
}

pub fn server_up(p: &weir::proxy::Running, backend: &str, name: &str) -> bool {
    server(p, backend, name).is_up()
}

/// The reason of the last health check of `be/<name>`.
pub fn last_reason(p: &weir::proxy::Running, name: &str) -> String {
    let s = server(p, "be", name);
    let h = s.state.health.lock().expect("lock");
    h.last
        .as_ref()
        .map(|l| l.reason.clone())
        .unwrap_or_default()
}

/// How many times `be/<name>` went UP or DOWN.
pub fn transitions(p: &weir::proxy::Running, name: &str) -> u64 {
    let s = server(p, "be", name);
    let h = s.state.health.lock().expect("lock");
    h.transitions
}

/// How many health checks of `be/<name>` have run.
pub fn checks_run(p: &weir::proxy::Running, name: &str) -> u64 {
    let s = server(p, "be", name);
    let h = s.state.health.lock().expect("lock");
    h.checks
}

/// A TCP listener on `addr` that accepts and holds connections but never
/// writes a byte (a server that "accepts TCP but never speaks").
pub async fn silent_listener(addr: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// tonic's client transport minus its own deadline timer: one HTTP/2
/// connection driven by hyper, so what a client sees is what weir sent
/// (tonic's `Channel` gives up on its own when a call's timeout expires).
#[derive(Clone)]
pub struct BareH2 {
    tx: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    authority: String,
}

type BareFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>,
            > + Send,
    >,
>;

impl tower::Service<http::Request<tonic::body::Body>> for BareH2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = BareFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), hyper::Error>> {
        self.tx.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> BareFuture {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        *req.uri_mut() = format!("http://{}{pq}", self.authority)
            .parse()
            .expect("uri");
        Box::pin(self.tx.send_request(req))
    }
}

/// An echo client over a [`BareH2`] connection to `addr`.
pub async fn bare_client(addr: SocketAddr) -> EchoClient<BareH2> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    EchoClient::new(BareH2 {
        tx,
        authority: addr.to_string(),
    })
}

/// A gRPC server that answers every call with a trailers-only `status`
/// (`grpc-message: broken`).
pub async fn grpc_status_server(status: u32) -> SocketAddr {
    use hyper::service::service_fn;
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = service_fn(
                move |_req: http::Request<hyper::body::Incoming>| async move {
                    let mut r = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                    let h = r.headers_mut();
                    h.insert(
                        "content-type",
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    h.insert("grpc-status", http::HeaderValue::from(status));
                    h.insert("grpc-message", http::HeaderValue::from_static("broken"));
                    Ok::<_, std::convert::Infallible>(r)
                },
            );
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .http2_only()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
            });
        }
    });
    addr
}

/// The Python interpreter with grpcio (required: .ci/run installs it).
pub fn python() -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_grpc = std::process::Command::new(&python)
        .args(["-c", "import grpc"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        has_grpc,
        "Python grpcio is required for this test: python3 -m pip install grpcio"
    );
    python
}

/// Runs `tests/py/<script>` against `addr`; checks it ends with `done`.
pub async fn run_script(script: &str, addr: std::net::SocketAddr, done: &str) {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python())
        .arg(path)
        .arg(addr.to_string())
        .output();
    let out = within(60, out).await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed\n{stdout}\n{stderr}");
    assert!(stdout.contains(done), "{stdout}");
}

/// A UDP receiver for `log <addr> ...` lines on 127.0.0.1, and its address.
pub async fn log_socket() -> (tokio::net::UdpSocket, SocketAddr) {
    let sock = tokio::net::UdpSocket::bind(ANY).await.expect("udp");
    let addr = sock.local_addr().expect("addr");
    (sock, addr)
}

/// The next datagram on `sock` (5 s at most), as text.
pub async fn recv_text(sock: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 8192];
    let n = within(5, sock.recv(&mut buf)).await.expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A unary gRPC call with the echo messages on any `path`, with the given
/// request metadata; the response metadata as a map, or the status.
pub async fn grpc_call<V: AsRef<str>>(
    ch: &Channel,
    path: &'static str,
    md: &[(&'static str, V)],
) -> Result<std::collections::HashMap<String, String>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("channel ready");
    let mut req = tonic::Request::new(weir_echo::pb::EchoRequest::default());
    for (k, v) in md {
        req.metadata_mut()
            .insert(*k, v.as_ref().parse().expect("ascii"));
    }
    let codec =
        tonic_prost::ProstCodec::<weir_echo::pb::EchoRequest, weir_echo::pb::EchoReply>::default();
    let resp = grpc
        .unary(
            req,
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await?;
    Ok(resp
        .metadata()
        .clone()
        .into_headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect())
}

/// An HPACK integer with an `n`-bit prefix, first byte ORed with `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}
