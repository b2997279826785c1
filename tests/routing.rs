//! Routing and policy (issue 4): ACL conditions, `use_backend`,
//! `http-request` / `http-response` rules, `option forwardfor`, and the
//! httplog access-log line, with real tonic clients through weir.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UdpSocket;
use tonic::{Code, Request as GrpcRequest};
use weir_echo::pb::EchoRequest;

use common::*;

// ------------------------------------------------------------ harness

type FakeBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A backend that answers any path: gRPC calls get one empty message and
/// `grpc-status: 0`; others get a short text. Every response says who
/// answered (`x-backend`), what path and method arrived (`x-path`,
/// `x-method`), and echoes each request header as `seen-<name>`.
async fn fake_backend(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let grpc = req
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                let mut b = Response::builder()
                    .header("x-backend", name)
                    .header(
                        "x-path",
                        req.uri().path_and_query().map_or("/", |p| p.as_str()),
                    )
                    .header("x-method", req.method().as_str());
                for (k, v) in req.headers() {
                    b = b.header(format!("seen-{k}"), v.clone());
                }
                let frames: Vec<Result<Frame<Bytes>, Infallible>> = if grpc {
                    b = b.header("content-type", "application/grpc");
                    let mut t = http::HeaderMap::new();
                    t.insert("grpc-status", HeaderValue::from_static("0"));
                    vec![
                        Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                        Ok(Frame::trailers(t)),
                    ]
                } else {
                    b = b.header("content-type", "text/plain");
                    vec![Ok(Frame::data(Bytes::from(format!("hello from {name}\n"))))]
                };
                let body: FakeBody = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(b.body(body).expect("response"))
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

/// A UDP syslog receiver: `log <addr> format raw local0` sends it lines.
struct LogSink {
    sock: UdpSocket,
}

impl LogSink {
    async fn new() -> (LogSink, SocketAddr) {
        let sock = UdpSocket::bind(ANY).await.expect("udp");
        let addr = sock.local_addr().expect("addr");
        (LogSink { sock }, addr)
    }

    async fn line(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = within(5, self.sock.recv(&mut buf)).await.expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// No line arrives within `ms`.
    async fn quiet(&self, ms: u64) -> bool {
        let mut buf = vec![0u8; 4096];
        tokio::time::timeout(Duration::from_millis(ms), self.sock.recv(&mut buf))
            .await
            .is_err()
    }
}

/// No call metadata.
const NO_MD: &[(&str, &str)] = &[];

/// A plain HTTP/2 (prior knowledge) request; returns status, headers, body.
async fn h2_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut b = Request::builder().uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = within(
        10,
        tx.send_request(b.body(Full::<Bytes>::default()).expect("req")),
    )
    .await
    .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// An HTTP/1.1 request.
async fn h1_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let mut b = Request::builder().uri(path).header("host", "example.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = within(
        10,
        tx.send_request(b.body(Full::<Bytes>::default()).expect("req")),
    )
    .await
    .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// `defaults` + a frontend `fe` with `fe_lines`, logging raw lines to `log`.
fn config(log: SocketAddr, fe_lines: &str, backends: &[(&str, SocketAddr, &str)]) -> String {
    let mut s = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    option httplog\n    log {log} format raw local0\n\
         frontend fe\n    bind 127.0.0.1:0\n{fe_lines}"
    );
    for (name, addr, extra) in backends {
        s.push_str(&format!(
            "backend {name}\n{extra}    server {name}_1 {addr} proto h2\n"
        ));
    }
    s
}

// ------------------------------------------------ the issue's config

/// The issue's configuration, as written (addresses aside), run by the
/// `weir` binary; every line is exercised with tonic clients and the log
/// lines on stdout are checked field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_config_runs_as_written() {
    use weir::demo::backend::{spawn_backend, BACKEND_HEADER};
    use weir::demo::pb::codename_creator_client::CodenameCreatorClient;
    use weir::demo::pb::NameRequest;

    let (codename, _h1) = spawn_backend(any_addr(), "codename-1")
        .await
        .expect("demo backend");
    let (grpc_any, _h2) = spawn_backend(any_addr(), "grpc-1")
        .await
        .expect("demo backend");
    let other = fake_backend("other-1").await;
    let plain = fake_backend("plain-1").await;
    let cfg = format!(
        "\
defaults
    mode http
    option httplog
    option logasap
    log stdout format raw local0
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe_proxy
    bind 127.0.0.1:0 proto h2
    capture request header mysecretpassphrase len 100
    http-request deny unless {{ req.hdr(mysecretpassphrase) -m str \"abc123\" }}
    acl isgrpc req.hdr(content-type) -m str \"application/grpc\"
    acl is_codename_path path /CodenameCreator/KeepGettingCodenames
    acl is_otherservice_path path /AnotherService/SomeFunction
    use_backend be_codenameservers if is_codename_path
    use_backend be_otherservers if is_otherservice_path
    use_backend grpc_servers if isgrpc
    default_backend be_servers
backend be_codenameservers
    server c1 {codename} proto h2
backend be_otherservers
    server o1 {other} proto h2
backend grpc_servers
    server g1 {grpc_any} proto h2
backend be_servers
    server p1 {plain}
"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.cfg");
    std::fs::write(&path, &cfg).expect("write config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-f")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("weir starts");
    let pid = child.id().expect("pid");
    use tokio::io::AsyncBufReadExt;
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr: SocketAddr = within(20, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if let Some(rest) = line.split("addr=").nth(1) {
                if line.contains("listening") {
                    return rest.split_whitespace().next().unwrap_or("").parse().ok();
                }
            }
        }
        None
    })
    .await
    .expect("weir logs its listening address");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    macro_rules! next_log {
        () => {
            within(5, stdout.next_line())
                .await
                .expect("read")
                .expect("a log line")
        };
    }
    let ch = channel(addr).await;

    // 1. No passphrase: denied, the client sees PermissionDenied.
    let mut client = CodenameCreatorClient::new(ch.clone());
    let err = client
        .get_codename(NameRequest {
            category: "animals".into(),
        })
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let line = next_log!();
    check_line(
        &line,
        "fe_proxy",
        "fe_proxy/<NOSRV>",
        200,
        "PR--",
        "{}",
        "POST /CodenameCreator/GetCodename HTTP/2.0",
        "7",
        false,
    );

    // 2. Unary with the passphrase: no path ACL matches, content-type does -> grpc_servers.
    let mut req = GrpcRequest::new(NameRequest {
        category: "animals".into(),
    });
    req.metadata_mut()
        .insert("mysecretpassphrase", "abc123".parse().expect("ascii"));
    let resp = client
        .get_codename(req)
        .await
        .expect("unary through grpc_servers");
    assert_eq!(
        resp.metadata().get(BACKEND_HEADER).expect("backend header"),
        "grpc-1"
    );
    let line = next_log!();
    check_line(
        &line,
        "fe_proxy",
        "grpc_servers/g1",
        200,
        "----",
        "{abc123}",
        "POST /CodenameCreator/GetCodename HTTP/2.0",
        "-",
        true,
    );

    // 3. The streaming path -> be_codenameservers; logged as soon as the
    //    response headers are in (logasap), with '+' markers.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(NameRequest {
        category: "birds".into(),
    })
    .await
    .expect("send");
    let mut req = GrpcRequest::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("mysecretpassphrase", "abc123".parse().expect("ascii"));
    let resp = client
        .keep_getting_codenames(req)
        .await
        .expect("stream opens");
    assert_eq!(
        resp.metadata().get(BACKEND_HEADER).expect("backend header"),
        "codename-1"
    );
    let mut names = resp.into_inner();
    let first = within(5, names.message())
        .await
        .expect("message")
        .expect("a name");
    assert!(!first.name.is_empty());
    let line = next_log!();
    check_line(
        &line,
        "fe_proxy",
        "be_codenameservers/c1",
        200,
        "----",
        "{abc123}",
        "POST /CodenameCreator/KeepGettingCodenames HTTP/2.0",
        "-",
        true,
    );
    drop(tx);
    drop(names);

    // 4. Another service's path -> be_otherservers.
    let md = grpc_call(
        &ch,
        "/AnotherService/SomeFunction",
        &[("mysecretpassphrase", "abc123")],
    )
    .await
    .expect("other service");
    assert_eq!(md["x-backend"], "other-1");
    let line = next_log!();
    assert!(line.contains(" be_otherservers/o1 "), "{line}");

    // 5. Not gRPC -> default_backend be_servers (an HTTP/1.1 server).
    let (status, h, body) = h2_get(addr, "/index.html", &[("mysecretpassphrase", "abc123")]).await;
    assert_eq!((status, body.as_str()), (200, "hello from plain-1\n"));
    assert_eq!(h["x-backend"], "plain-1");
    let line = next_log!();
    assert!(line.contains(" be_servers/p1 "), "{line}");
    assert!(line.contains("\"GET /index.html HTTP/2.0\""), "{line}");

    // 6. Plain HTTP without the passphrase: 403 with a short body.
    let (status, _, body) = h2_get(addr, "/index.html", &[]).await;
    assert_eq!(status, 403);
    assert!(body.starts_with("403 Forbidden"), "{body}");

    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = within(10, child.wait()).await;
}

/// Checks an httplog line field by field:
/// `ip:port [date] fe be/srv TR/Tw/Tc/Tr/Ta status bytes - - term ac/fc/bc/sc/rc sq/bq {caps} "request" grpc`.
#[allow(clippy::too_many_arguments)]
fn check_line(
    line: &str,
    fe: &str,
    be_srv: &str,
    status: u16,
    term: &str,
    caps: &str,
    request: &str,
    grpc: &str,
    logasap: bool,
) {
    let re = regex::Regex::new(concat!(
        r#"^127\.0\.0\.1:(\d+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3})\] (\S+) (\S+) "#,
        r#"(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/(\+?-?\d+) (\d{3}) (\+?\d+) - - (\S{4}) "#,
        r#"(\d+)/(\d+)/(\d+)/(\d+)/(\d+) (\d+)/(\d+) (?:(\{[^}]*\}) )?"([^"]*)" (\S+)$"#
    ))
    .expect("regex");
    let c = re
        .captures(line)
        .unwrap_or_else(|| panic!("not an httplog line: {line}"));
    assert!(c[1].parse::<u16>().expect("port") > 0);
    assert_eq!(&c[3], fe, "{line}");
    assert_eq!(&c[4], be_srv, "{line}");
    let tr: i64 = c[5].parse().expect("TR");
    assert_eq!(tr, 0, "{line}");
    if be_srv.ends_with("<NOSRV>") {
        assert_eq!((&c[6], &c[7], &c[8]), ("-1", "-1", "-1"), "{line}");
    } else {
        for i in 6..=8 {
            assert!(c[i].parse::<i64>().expect("timer") >= 0, "{line}");
        }
    }
    assert_eq!(c[9].starts_with('+'), logasap, "Ta marker: {line}");
    assert_eq!(c[11].starts_with('+'), logasap, "bytes marker: {line}");
    assert_eq!(c[10].parse::<u16>().expect("status"), status, "{line}");
    assert_eq!(&c[12], term, "{line}");
    assert!(c[13].parse::<u32>().expect("actconn") >= 1, "{line}");
    assert!(c[14].parse::<u32>().expect("feconn") >= 1, "{line}");
    assert_eq!(c.get(20).map_or("", |m| m.as_str()), caps, "{line}");
    assert_eq!(&c[21], request, "{line}");
    assert_eq!(&c[22], grpc, "{line}");
}

// ------------------------------------------------------------- rules

#[tokio::test]
async fn deny_status_maps_to_the_grpc_code() {
    let (logs, log) = LogSink::new().await;
    let be = fake_backend("b").await;
    let fe = "\
    http-request deny deny_status 401 if { req.hdr(x-deny) -m str 401 }
    http-request deny deny_status 429 if { req.hdr(x-deny) -m str 429 }
    http-request deny deny_status 404 if { req.hdr(x-deny) -m str 404 }
    http-request deny deny_status 503 if { req.hdr(x-deny) -m str 503 }
    default_backend be
";
    let proxy = start_proxy(&config(log, fe, &[("be", be, "")])).await;
    let ch = channel(fe_addr(&proxy)).await;
    for (deny, code) in [
        ("401", Code::Unauthenticated),
        ("429", Code::ResourceExhausted),
        ("404", Code::Unimplemented),
        ("503", Code::Unavailable),
    ] {
        let err = grpc_call(&ch, "/svc/M", &[("x-deny", deny)])
            .await
            .expect_err("denied");
        assert_eq!(err.code(), code, "deny_status {deny}: {err:?}");
        assert!(err.message().contains("request denied"), "{err:?}");
        let line = logs.line().await;
        assert!(line.contains(" PR-- "), "{line}");
        assert!(
            line.ends_with(&format!("\"POST /svc/M HTTP/2.0\" {}", code as i32)),
            "{line}"
        );
    }
    // Nothing denied: through to the backend.
    let md = grpc_call(&ch, "/svc/M", &[("x-deny", "no")])
        .await
        .expect("allowed");
    assert_eq!(md["x-backend"], "b");
    let line = logs.line().await;
    assert!(
        line.contains(" be/be_1 ") && line.contains(" ---- "),
        "{line}"
    );
    assert!(line.ends_with("\"POST /svc/M HTTP/2.0\" 0"), "{line}");
    // Plain HTTP gets the status and a short body.
    let (status, h, body) = h1_get(fe_addr(&proxy), "/x", &[("x-deny", "429")]).await;
    assert_eq!(status, 429);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, "429 Too Many Requests: request denied by policy\n");
}

#[tokio::test]
async fn routing_by_grpc_service_method_and_dynamic_names() {
    let (_logs, log) = LogSink::new().await;
    let greeter = fake_backend("greeter").await;
    let hello = fake_backend("hello").await;
    let dynamic = fake_backend("dyn").await;
    let fallback = fake_backend("fallback").await;
    let fe = "\
    acl greeter grpc.service helloworld.Greeter
    acl say_hello grpc.method SayHello
    use_backend be_hello if greeter say_hello
    use_backend be_greeter if greeter || { path_beg /helloworld.Greeter2/ }
    use_backend %[req.hdr(x-route),lower] if { req.hdr(x-route) -m found }
    default_backend be_fallback
";
    let cfg = config(
        log,
        fe,
        &[
            ("be_greeter", greeter, ""),
            ("be_hello", hello, ""),
            ("be_dyn", dynamic, ""),
            ("be_fallback", fallback, ""),
        ],
    );
    let proxy = start_proxy(&cfg).await;
    let ch = channel(fe_addr(&proxy)).await;
    let who = |md: HashMap<String, String>| md["x-backend"].clone();
    assert_eq!(
        who(grpc_call(&ch, "/helloworld.Greeter/SayHello", NO_MD)
            .await
            .expect("ok")),
        "hello"
    );
    assert_eq!(
        who(grpc_call(&ch, "/helloworld.Greeter/SayBye", NO_MD)
            .await
            .expect("ok")),
        "greeter"
    );
    assert_eq!(
        who(grpc_call(&ch, "/helloworld.Greeter2/X", NO_MD)
            .await
            .expect("ok")),
        "greeter"
    );
    assert_eq!(
        who(grpc_call(&ch, "/other.Svc/X", NO_MD).await.expect("ok")),
        "fallback"
    );
    assert_eq!(
        who(grpc_call(&ch, "/other.Svc/X", &[("x-route", "BE_DYN")])
            .await
            .expect("ok")),
        "dyn"
    );
    let err = grpc_call(&ch, "/other.Svc/X", &[("x-route", "be_nope")])
        .await
        .expect_err("no such backend");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("no backend named 'be_nope'"),
        "{err:?}"
    );
}

#[tokio::test]
async fn header_rules_forwardfor_and_response_rules() {
    let (_logs, log) = LogSink::new().await;
    let be = fake_backend("b").await;
    let fe = "\
    option forwardfor
    http-request set-header x-client %[src]:%[src_port]
    http-request add-header x-added one
    http-request add-header x-added two
    http-request del-header x-secret
    http-request replace-header x-token ^Bearer\\ (.*)$ token=\\1
    http-request set-header x-svc %[grpc.service] if { req.grpc }
    http-request set-path /renamed%[path] if { path_beg /old/ }
    http-response set-header x-by weir
    http-response del-header seen-x-secret
    http-response add-header x-status %[status]
    default_backend be
";
    let proxy = start_proxy(&config(log, fe, &[("be", be, "")])).await;
    let ch = channel(fe_addr(&proxy)).await;
    let md = grpc_call(
        &ch,
        "/old/M",
        &[("x-secret", "s"), ("x-token", "Bearer abc")],
    )
    .await
    .expect("call");
    assert_eq!(md["seen-x-forwarded-for"], "127.0.0.1");
    assert!(md["seen-x-client"].starts_with("127.0.0.1:"), "{md:?}");
    assert_eq!(md["seen-x-token"], "token=abc");
    assert_eq!(md["seen-x-svc"], "old");
    assert_eq!(md["x-path"], "/renamed/old/M");
    assert!(!md.contains_key("seen-x-secret"), "{md:?}");
    assert_eq!(md["x-by"], "weir");
    assert_eq!(md["x-status"], "200");
    // add-header keeps both values; HTTP/1.1 shows them.
    let (_, h, _) = h1_get(fe_addr(&proxy), "/plain", &[]).await;
    let added: Vec<_> = h.get_all("seen-x-added").iter().collect();
    assert_eq!(added, ["one", "two"]);
    assert!(!h.contains_key("x-svc"));
}

#[tokio::test]
async fn return_and_allow() {
    let (_logs, log) = LogSink::new().await;
    let be = fake_backend("b").await;
    let fe = "\
    http-request allow if { src 127.0.0.1 } { path /allowed }
    http-request return status 200 content-type text/plain string ok if { path /health }
    http-request return status 404 content-type text/plain lf-string \"no %[path] here\" if { path_beg /gone }
    http-request deny if { path /allowed } || { path /denied }
    default_backend be
";
    let proxy = start_proxy(&config(log, fe, &[("be", be, "")])).await;
    let addr = fe_addr(&proxy);
    assert_eq!(h1_get(addr, "/health", &[]).await.2, "ok");
    let (status, _, body) = h1_get(addr, "/gone/x", &[]).await;
    assert_eq!((status, body.as_str()), (404, "no /gone/x here"));
    // `allow` stops the rules: the later deny does not apply.
    assert_eq!(h1_get(addr, "/allowed", &[]).await.0, 200);
    assert_eq!(h1_get(addr, "/denied", &[]).await.0, 403);
    // A gRPC call answered by `return 404` gets UNIMPLEMENTED with the body as message.
    let ch = channel(addr).await;
    let err = grpc_call(&ch, "/gone/M", NO_MD)
        .await
        .expect_err("returned");
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "no /gone/M here");
}

#[tokio::test]
async fn backend_rules_run_after_the_frontend_chose_it() {
    let (_logs, log) = LogSink::new().await;
    let be = fake_backend("b").await;
    let fe = "    default_backend be\n    http-request set-header x-from fe\n";
    let be_lines = "    http-request set-header x-be %[be_name]\n    http-request deny if { req.hdr(x-block) -m found }\n    http-response set-header x-resp be\n";
    let proxy = start_proxy(&config(log, fe, &[("be", be, be_lines)])).await;
    let ch = channel(fe_addr(&proxy)).await;
    let md = grpc_call(&ch, "/a/b", NO_MD).await.expect("call");
    assert_eq!(md["seen-x-from"], "fe");
    assert_eq!(md["seen-x-be"], "be");
    assert_eq!(md["x-resp"], "be");
    let err = grpc_call(&ch, "/a/b", &[("x-block", "1")])
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied);
}

// --------------------------------------------------------------- logs

#[tokio::test]
async fn log_format_with_samples_and_grpc_status() {
    let (logs, log) = LogSink::new().await;
    let servers = echo_servers(1).await;
    let fe = "\
    log-format \"%ci %ft %b/%s %ST %[req.hdr(x-user)] %[grpc.method] grpc=%[grpc_status] %{+Q}r\"
    default_backend be
";
    let proxy = start_proxy(&config(log, fe, &[("be", servers[0].addr, "")])).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    let mut req = GrpcRequest::new(EchoRequest {
        status_code: 5,
        status_message: "nope".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-user", "alice".parse().expect("ascii"));
    let err = client
        .unary(req)
        .await
        .expect_err("NOT_FOUND from the server");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        logs.line().await,
        "127.0.0.1 fe be/be_1 200 alice Unary grpc=5 \"POST /weir.echo.Echo/Unary HTTP/2.0\""
    );
}

#[tokio::test]
async fn client_cancel_and_unreachable_server_are_in_the_termination_state() {
    let (logs, log) = LogSink::new().await;
    let servers = echo_servers(1).await;
    let dead = {
        let l = std::net::TcpListener::bind(ANY).expect("bind");
        l.local_addr().expect("addr")
    };
    let fe = "    use_backend dead if { path_beg /dead }\n    default_backend be\n";
    let proxy = start_proxy(&config(
        log,
        fe,
        &[("be", servers[0].addr, ""), ("dead", dead, "")],
    ))
    .await;
    let addr = fe_addr(&proxy);
    // A server stream the client drops after the first reply.
    let mut client = echo_client(addr).await;
    let stream = stream_started(&mut client, 1000, 20).await;
    drop(stream);
    let line = logs.line().await;
    assert!(line.contains(" CD-- "), "{line}");
    assert!(line.contains(" be/be_1 "), "{line}");
    // Connection refused: SC--, 503-ish as UNAVAILABLE.
    let ch = channel(addr).await;
    let err = grpc_call(&ch, "/dead/M", NO_MD).await.expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    let line = logs.line().await;
    assert!(
        line.contains(" dead/dead_1 ") && line.contains(" SC-- "),
        "{line}"
    );
    assert!(line.ends_with(" 14"), "{line}");
    assert!(logs.quiet(200).await, "one line per request");
}

#[tokio::test]
async fn no_log_line_without_httplog_or_log_format() {
    let (logs, log) = LogSink::new().await;
    let be = fake_backend("b").await;
    let cfg = config(log, "    default_backend be\n", &[("be", be, "")])
        .replace("    option httplog\n", "");
    let proxy = start_proxy(&cfg).await;
    grpc_call(&channel(fe_addr(&proxy)).await, "/a/b", NO_MD)
        .await
        .expect("call");
    assert!(logs.quiet(300).await);
}
