//! Trailers both ways, byte for byte, with raw HTTP/2 peers on each side
//! (gRPC clients never send request trailers, so tonic cannot show this).

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Frames = StreamBody<tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn body(frames: Vec<Frame<Bytes>>) -> Frames {
    StreamBody::new(tokio_stream::iter(
        frames.into_iter().map(Ok).collect::<Vec<_>>(),
    ))
}

/// An HTTP/2 server that returns the request body, then the request's
/// trailers plus one of its own as response trailers.
async fn trailer_echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind(ANY).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let got = req.into_body().collect().await.unwrap();
                        let mut trailers = got.trailers().cloned().unwrap_or_default();
                        trailers
                            .insert("x-server-trailer", HeaderValue::from_static("from server"));
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        let data = got.to_bytes();
                        Ok::<_, Infallible>(Response::new(body(vec![
                            Frame::data(data),
                            Frame::trailers(trailers),
                        ])))
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn request_and_response_trailers_pass_untouched() {
    let origin = trailer_echo_server().await;
    let proxy = start_proxy(&http_config(&[origin], "")).await;
    let addr = fe_addr(&proxy);

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req_trailers = HeaderMap::new();
    req_trailers.insert("x-client-trailer", HeaderValue::from_static("from client"));
    req_trailers.insert("x-bin-trailer-bin", HeaderValue::from_static("AAEC"));
    let req = Request::post(format!("http://{addr}/any"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body(vec![
            Frame::data(Bytes::from_static(b"part one, ")),
            Frame::data(Bytes::from_static(b"part two")),
            Frame::trailers(req_trailers),
        ]))
        .unwrap();
    let resp = within(10, send.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), 200);
    let got = within(10, resp.into_body().collect()).await.unwrap();
    let trailers = got.trailers().cloned().expect("response trailers");
    assert_eq!(got.to_bytes().as_ref(), b"part one, part two");
    assert_eq!(trailers["x-client-trailer"], "from client");
    assert_eq!(trailers["x-bin-trailer-bin"], "AAEC");
    assert_eq!(trailers["x-server-trailer"], "from server");
    assert_eq!(trailers["grpc-status"], "0");
}
