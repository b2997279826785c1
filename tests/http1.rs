//! HTTP/1.1 and h2c on one listener, HTTP/1.1 servers (no `proto h2`), and
//! `bind ... proto h2` refusing HTTP/1.1.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use weir_echo::pb::EchoRequest;

/// A gRPC length-prefixed frame holding `EchoRequest { payload }`.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let msg = prost::Message::encode_to_vec(&EchoRequest {
        payload: Bytes::copy_from_slice(payload),
        ..Default::default()
    });
    let mut out = vec![0u8];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out.into()
}

fn grpc_post(addr: SocketAddr, payload: &[u8]) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/weir.echo.Echo/Unary"))
        .header("host", addr.to_string())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(payload)))
        .unwrap()
}

async fn h1_send(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> hyper::Result<Response<hyper::body::Incoming>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    send.send_request(req).await
}

async fn h2_send(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> hyper::Result<Response<hyper::body::Incoming>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    send.send_request(req).await
}

#[tokio::test]
async fn http1_and_h2c_on_the_same_port_both_reach_an_h2_server() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let addr = fe_addr(&proxy);

    // HTTP/1.1 client -> weir -> HTTP/2 (gRPC) server.
    let resp = within(10, h1_send(addr, grpc_post(addr, b"over h1")))
        .await
        .expect("h1 response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_11);
    assert_eq!(resp.headers()["x-echo-server"], "s1");
    let collected = within(10, resp.into_body().collect()).await.expect("body");
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    assert!(
        body.len() > 5 && body.windows(7).any(|w| w == b"over h1"),
        "{body:?}"
    );
    // Trailers reach an HTTP/1.1 client that said `te: trailers` (chunked).
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");

    // h2c (prior knowledge) on the same port.
    let resp = within(10, h2_send(addr, grpc_post(addr, b"over h2c")))
        .await
        .expect("h2 response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let collected = within(10, resp.into_body().collect()).await.expect("body");
    assert_eq!(collected.trailers().expect("trailers")["grpc-status"], "0");
    assert_eq!(servers[0].stats.calls(), 2);
}

#[tokio::test]
async fn proto_h2_bind_refuses_http1() {
    let servers = echo_servers(1).await;
    let text = http_config(&[servers[0].addr], "")
        .replace("bind 127.0.0.1:0", "bind 127.0.0.1:0 proto h2");
    let proxy = start_proxy(&text).await;
    let addr = fe_addr(&proxy);
    assert!(within(10, h1_send(addr, grpc_post(addr, b"x")))
        .await
        .is_err());
    // HTTP/2 still works, and the h1 attempt broke nothing.
    let resp = within(10, h2_send(addr, grpc_post(addr, b"x")))
        .await
        .expect("h2 works");
    assert_eq!(resp.status(), 200);
}

/// A plain HTTP/1.1 server that answers with what it received.
async fn h1_origin() -> SocketAddr {
    let l = TcpListener::bind(ANY).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test makes a handful of connections.
        for _ in 0..64 {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let head = format!(
                            "{} {} host={} via={:?}\n",
                            req.method(),
                            req.uri(),
                            req.headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("-"),
                            req.version()
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let mut out = head.into_bytes();
                        out.extend_from_slice(&body);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn servers_without_proto_h2_get_http1_and_connections_are_reused() {
    let origin = h1_origin().await;
    let text = format!(
        "defaults\n    mode http\n    timeout connect 2s\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server web {origin}\n"
    );
    let proxy = start_proxy(&text).await;
    let addr = fe_addr(&proxy);
    for (i, client_h2) in [false, true, false, true].into_iter().enumerate() {
        let req = Request::post(format!("http://{addr}/path?q={i}"))
            .header("host", "example.test")
            .body(Full::new(Bytes::from(format!("body {i}"))))
            .unwrap();
        let resp = if client_h2 {
            h2_send(addr, req).await
        } else {
            h1_send(addr, req).await
        };
        let resp = resp.expect("response");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(
            text,
            format!("POST /path?q={i} host=example.test via=HTTP/1.1\nbody {i}")
        );
    }
}
