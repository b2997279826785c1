//! `option log-json`: access-log lines as one JSON object each (httplog
//! layout, a custom `log-format`, the tcplog line), sent to a UDP syslog
//! receiver and read back with serde_json.

mod common;

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tonic::{Code, Request as GrpcRequest};
use weir_echo::pb::EchoRequest;

use common::*;

/// A UDP syslog receiver (`log <addr> format rfc3164 local0`).
struct LogSink {
    sock: UdpSocket,
}

impl LogSink {
    async fn new() -> (LogSink, SocketAddr) {
        let (sock, addr) = log_socket().await;
        (LogSink { sock }, addr)
    }

    /// The next line without its RFC 3164 header
    /// (`<134>Nov 22 10:00:00 weir[42]: `).
    async fn line(&self) -> String {
        let d = recv_text(&self.sock).await;
        assert!(d.starts_with("<134>"), "not a local0.info syslog line: {d}");
        match d.split_once("]: ") {
            Some((_, line)) => line.to_string(),
            None => panic!("no syslog header: {d}"),
        }
    }

    /// The next line, parsed as one JSON object.
    async fn json(&self) -> Value {
        let line = self.line().await;
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        v
    }
}

/// An address nothing listens on (connections are refused).
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind(ANY).expect("bind");
    l.local_addr().expect("addr")
}

/// An http-mode frontend `fe` logging to `log` with `option httplog` and
/// `option log-json` (in `defaults`), plus `fe_lines`; one backend per
/// `(name, addr)` with one server `<name>_1`.
fn http_config(log: SocketAddr, fe_lines: &str, backends: &[(&str, SocketAddr)]) -> String {
    let mut s = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         \x20   option httplog\n    option log-json\n    log {log} format rfc3164 local0\n\
         frontend fe\n    bind 127.0.0.1:0\n{fe_lines}"
    );
    for (name, addr) in backends {
        s.push_str(&format!(
            "backend {name}\n    server {name}_1 {addr} proto h2\n"
        ));
    }
    s
}

fn num(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("'{key}' is not an integer: {v}"))
}

#[tokio::test]
async fn httplog_lines_are_json_objects() {
    let (logs, log) = LogSink::new().await;
    let servers = echo_servers(1).await;
    let fe = "    capture request header x-user len 10\n    use_backend dead if { path_beg /dead }\n    default_backend be\n";
    let proxy = start_proxy(&http_config(
        log,
        fe,
        &[("be", servers[0].addr), ("dead", dead_addr())],
    ))
    .await;
    let addr = fe_addr(&proxy);
    let mut client = echo_client(addr).await;
    let mut req = GrpcRequest::new(EchoRequest {
        payload: vec![7u8; 100].into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-user", "al\"ice".parse().expect("ascii"));
    client.unary(req).await.expect("unary call");

    let v = logs.json().await;
    assert_eq!(v["client_ip"], "127.0.0.1", "{v}");
    assert!(num(&v, "client_port") > 0, "{v}");
    assert_eq!(v["frontend_name"], "fe", "{v}");
    assert_eq!(v["backend_name"], "be", "{v}");
    assert_eq!(v["server_name"], "be_1", "{v}");
    assert_eq!(num(&v, "status_code"), 200, "{v}");
    assert_eq!(num(&v, "grpc_status"), 0, "{v}");
    assert_eq!(v["termination_state"], "----", "{v}");
    assert_eq!(
        v["http_request"], "POST /weir.echo.Echo/Unary HTTP/2.0",
        "{v}"
    );
    // The header value keeps its quote: JSON-escaped, not `#22`-encoded.
    assert_eq!(
        v["captured_request_headers"],
        serde_json::json!(["al\"ice"])
    );
    for timer in ["TR", "Tw", "Tc", "Tr", "Ta"] {
        assert!(num(&v, timer) >= 0, "{timer}: {v}");
    }
    assert!(num(&v, "bytes_read") > 100, "{v}");
    assert!(num(&v, "actconn") >= 1 && num(&v, "feconn") >= 1, "{v}");
    assert!(v["request_date"].is_string(), "{v}");
    assert_eq!(v["captured_request_cookie"], Value::Null, "{v}");
    assert!(v.get("logasap").is_none(), "{v}");
    assert!(
        v.get("captured_response_headers").is_none(),
        "no response captures declared: {v}"
    );

    // Connection refused: UNAVAILABLE, logged SC--.
    let ch = channel(addr).await;
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("channel ready");
    let codec = tonic_prost::ProstCodec::<EchoRequest, weir_echo::pb::EchoReply>::default();
    let err = grpc
        .unary(
            GrpcRequest::new(EchoRequest::default()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/dead/M"),
            codec,
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    let v = logs.json().await;
    assert_eq!(v["backend_name"], "dead", "{v}");
    assert_eq!(v["server_name"], "dead_1", "{v}");
    assert_eq!(num(&v, "grpc_status"), 14, "{v}");
    assert_eq!(v["termination_state"], "SC--", "{v}");
    assert_eq!(num(&v, "Tr"), -1, "no response from a server: {v}");
}

#[tokio::test]
async fn log_format_fields_are_named() {
    let (logs, log) = LogSink::new().await;
    let servers = echo_servers(1).await;
    let fe = "\
    log-format \"%(client)ci:%cp [%tr] %(st)ST %b/%s %[req.hdr(x-user)] %(method)[grpc.method] grpc=%[grpc_status] %{+Q}r\"
    option logasap
    default_backend be
";
    let proxy = start_proxy(&http_config(log, fe, &[("be", servers[0].addr)])).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    // A call with a response body: with logasap, logged when the response
    // headers are in, before the grpc-status is known.
    let mut req = GrpcRequest::new(EchoRequest::default());
    req.metadata_mut()
        .insert("x-user", "alice".parse().expect("ascii"));
    client.unary(req).await.expect("unary call");
    let line = logs.line().await;
    let v: Value = serde_json::from_str(&line).expect("JSON");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = vec![
        "client",
        "client_port",
        "request_date",
        "st",
        "backend_name",
        "server_name",
        "req.hdr",
        "method",
        "grpc_status",
        "http_request",
        "logasap",
    ];
    want.sort_unstable();
    assert_eq!(keys, want, "{line}");
    assert_eq!(v["client"], "127.0.0.1", "{line}");
    assert_eq!(v["st"], 200, "{line}");
    assert_eq!(v["req.hdr"], "alice", "{line}");
    assert_eq!(v["method"], "Unary", "{line}");
    assert_eq!(v["grpc_status"], Value::Null, "not known yet: {line}");
    assert_eq!(v["logasap"], true, "{line}");
    // Literal text (`grpc=`, `[`, `/`) is dropped.
    assert!(!line.contains("grpc="), "{line}");

    // A trailers-only answer ends the response with its headers: the line
    // is final, with the status and no logasap field.
    let req = GrpcRequest::new(EchoRequest {
        status_code: 5,
        status_message: "nope".into(),
        ..Default::default()
    });
    let err = client.unary(req).await.expect_err("NOT_FOUND");
    assert_eq!(err.code(), Code::NotFound);
    let v = logs.json().await;
    assert_eq!(v["grpc_status"], 5, "{v}");
    assert_eq!(v["req.hdr"], Value::Null, "{v}");
    assert!(v.get("logasap").is_none(), "{v}");
}

#[tokio::test]
async fn no_option_log_json_keeps_the_text_line() {
    let (logs, log) = LogSink::new().await;
    let servers = echo_servers(1).await;
    let fe = "    no option log-json\n    default_backend be\n";
    let proxy = start_proxy(&http_config(log, fe, &[("be", servers[0].addr)])).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    client
        .unary(EchoRequest::default())
        .await
        .expect("unary call");
    let line = logs.line().await;
    assert!(line.starts_with("127.0.0.1:"), "{line}");
    assert!(
        line.contains(" fe be/be_1 ")
            && line.ends_with("\"POST /weir.echo.Echo/Unary HTTP/2.0\" 0"),
        "{line}"
    );
}

/// Writes `hello` to each connection, then closes.
async fn hello_server() -> SocketAddr {
    let l = TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hello").await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

fn tcp_config(log: SocketAddr, server: SocketAddr) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    option tcplog\n    log {log} format rfc3164 local0\n\
         frontend fe\n    bind 127.0.0.1:0\n    option log-json\n    default_backend be\n\
         backend be\n    server srv1 {server}\n"
    )
}

#[tokio::test]
async fn tcplog_lines_are_json_objects() {
    let (logs, log) = LogSink::new().await;
    let proxy = start_proxy(&tcp_config(log, hello_server().await)).await;
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.expect("connect");
    let client_port = c.local_addr().expect("addr").port();
    let mut got = String::new();
    within(5, c.read_to_string(&mut got)).await.expect("read");
    assert_eq!(got, "hello");
    drop(c);
    let v = logs.json().await;
    assert_eq!(v["client_ip"], "127.0.0.1", "{v}");
    assert_eq!(num(&v, "client_port"), i64::from(client_port), "{v}");
    assert_eq!(v["frontend_name"], "fe", "{v}");
    assert_eq!(v["backend_name"], "be", "{v}");
    assert_eq!(v["server_name"], "srv1", "{v}");
    assert_eq!(num(&v, "bytes_read"), 5, "{v}");
    assert_eq!(v["termination_state"], "--", "{v}");
    for timer in ["Tw", "Tc", "Tt"] {
        assert!(num(&v, timer) >= 0, "{timer}: {v}");
    }
    let date = v["date_time"].as_str().expect("date_time");
    assert_eq!(date.len(), 24, "{v}");
    for key in [
        "actconn",
        "feconn",
        "beconn",
        "srv_conn",
        "retries",
        "srv_queue",
        "backend_queue",
    ] {
        assert!(num(&v, key) >= 0, "{key}: {v}");
    }
    drop(proxy);

    // A dead server: SC, no connect time.
    let proxy = start_proxy(&tcp_config(log, dead_addr())).await;
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.expect("connect");
    let mut rest = Vec::new();
    within(5, c.read_to_end(&mut rest)).await.expect("closed");
    let v = logs.json().await;
    assert_eq!(v["server_name"], "srv1", "{v}");
    assert_eq!(v["termination_state"], "SC", "{v}");
    assert_eq!(num(&v, "Tc"), -1, "{v}");
}
