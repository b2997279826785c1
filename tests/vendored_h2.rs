//! The speed patches in `vendor/h2` (see vendor/README.md), checked through
//! h2's public API over an in-memory duplex:
//!
//! - `Send::check_headers` compares a block's names in one pass instead of
//!   six hashed lookups: every connection-specific header is still refused
//!   on requests, responses and trailers, and `te: trailers` still passes;
//! - the stream store hashes stream ids with foldhash: many concurrent
//!   streams, finished out of order, each get their own answer.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::io::DuplexStream;

const LIMIT: Duration = Duration::from_secs(20);

/// An h2 client and the server side's connection, joined by a duplex pipe.
async fn pair() -> (
    h2::client::SendRequest<Bytes>,
    h2::server::Connection<DuplexStream, Bytes>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        h2::server::Builder::new()
            .max_concurrent_streams(1000)
            .handshake::<_, Bytes>(b)
            .await
    });
    let (send, conn) = h2::client::handshake(a).await.expect("client handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let server = server.await.expect("join").expect("server handshake");
    (send, server)
}

/// The headers h2 must refuse to send (RFC 9113 §8.2.2).
fn illegal() -> Vec<(&'static str, &'static str)> {
    vec![
        ("connection", "close"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("keep-alive", "5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
    ]
}

fn is_malformed(e: &h2::Error) -> bool {
    e.to_string().contains("malformed headers")
}

#[tokio::test]
async fn connection_specific_request_headers_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let (send, mut server) = pair().await;
        tokio::spawn(async move {
            while let Some(Ok((_req, mut respond))) = server.accept().await {
                let _ = respond.send_response(Response::new(()), true);
            }
        });
        let mut send = send.ready().await.expect("ready");
        for (name, value) in illegal() {
            let req = Request::post("http://example.test/svc/M")
                .header(name, value)
                .body(())
                .expect("request");
            let err = send
                .send_request(req, true)
                .map(|_| ())
                .expect_err(&format!("{name}: {value} must be refused"));
            assert!(is_malformed(&err), "{name}: {err}");
        }
        // The connection is still usable, `te: trailers` and ordinary
        // headers (many of them, more than one value each) go through.
        let mut req = Request::post("http://example.test/svc/M")
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .body(())
            .expect("request");
        for i in 0..40 {
            let name = http::HeaderName::try_from(format!("x-meta-{i}")).expect("name");
            req.headers_mut().append(name.clone(), HeaderValue::from(i));
            req.headers_mut().append(name, HeaderValue::from(i + 1));
        }
        let (resp, _) = send.send_request(req, true).expect("legal request");
        let resp = resp.await.expect("response");
        assert_eq!(resp.status(), 200);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn connection_specific_response_headers_and_trailers_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let (send, mut server) = pair().await;
        // The server reports what h2 refused for each stream and keeps
        // driving the connection (dropping it would cut the client off).
        let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(Ok((_req, mut respond))) = server.accept().await {
                // A refused head leaves the stream able to answer properly.
                let (name, value) = illegal()[n % illegal().len()];
                n += 1;
                let bad = Response::builder()
                    .header(name, value)
                    .body(())
                    .expect("response");
                let head_refused = respond
                    .send_response(bad, false)
                    .map(|_| ())
                    .is_err_and(|e| is_malformed(&e));
                let mut stream = respond
                    .send_response(Response::new(()), false)
                    .expect("legal response");
                let mut trailers = HeaderMap::new();
                trailers.insert(
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
                let trailers_refused = stream
                    .send_trailers(trailers)
                    .is_err_and(|e| is_malformed(&e));
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                trailers.insert("te", HeaderValue::from_static("trailers"));
                stream.send_trailers(trailers).expect("legal trailers");
                let _ = tx.send((name, head_refused, trailers_refused));
            }
        });
        let mut send = send.ready().await.expect("ready");
        for _ in illegal() {
            let req = Request::post("http://example.test/svc/M")
                .body(())
                .expect("request");
            let (resp, _) = send.send_request(req, true).expect("request");
            let mut body = resp.await.expect("response").into_body();
            let trailers = body.trailers().await.expect("trailers").expect("some");
            assert_eq!(trailers["grpc-status"], "0");
        }
        for _ in illegal() {
            let (name, head_refused, trailers_refused) = answers.recv().await.expect("answer");
            assert!(head_refused, "response header {name} was sent");
            assert!(trailers_refused, "trailer {name} was sent");
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn many_streams_finished_out_of_order_get_their_own_answers() {
    const STREAMS: usize = 600;
    tokio::time::timeout(LIMIT, async {
        let (send, mut server) = pair().await;
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(Ok((req, respond))) = server.accept().await {
                pending.push((req.uri().path().to_string(), respond));
                // Answer in batches, newest first, so that streams are
                // inserted and removed all over the store.
                if pending.len() == 50 {
                    while let Some((path, mut respond)) = pending.pop() {
                        let resp = Response::builder()
                            .header("x-path", path.as_str())
                            .body(())
                            .expect("response");
                        let mut s = respond.send_response(resp, false).expect("send");
                        s.send_data(Bytes::from(path), true).expect("data");
                    }
                }
            }
        });
        let mut calls = Vec::new();
        for i in 0..STREAMS {
            let mut s = send.clone().ready().await.expect("ready");
            let req = Request::post(format!("http://example.test/call/{i}"))
                .body(())
                .expect("request");
            let (resp, _) = s.send_request(req, true).expect("send");
            calls.push(tokio::spawn(async move {
                let resp = resp.await.expect("response");
                let head = resp.headers()["x-path"]
                    .to_str()
                    .expect("ascii")
                    .to_string();
                let mut body = resp.into_body();
                let mut got = Vec::new();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("data");
                    let _ = body.flow_control().release_capacity(chunk.len());
                    got.extend_from_slice(&chunk);
                }
                (head, got)
            }));
        }
        for (i, call) in calls.into_iter().enumerate() {
            let (head, body) = call.await.expect("join");
            let want = format!("/call/{i}");
            assert_eq!(head, want);
            assert_eq!(body, want.as_bytes());
        }
    })
    .await
    .expect("in time");
}
