//! The speed patches in `vendor/h2` (see vendor/README.md), checked through
//! h2's public API over an in-memory duplex:
//!
//! - `Send::check_headers` compares a block's names in one pass instead of
//!   six hashed lookups: every connection-specific header is still refused
//!   on requests, responses and trailers, and `te: trailers` still passes;
//! - the stream store hashes stream ids with foldhash: many concurrent
//!   streams, finished out of order, each get their own answer;
//! - the HPACK decoder advances its buffer in place after each field and
//!   checks received names for connection-specific headers in one pass:
//!   raw request blocks mixing every representation decode to the same
//!   fields, and each connection-specific header still gets the stream
//!   reset;
//! - the stateless HPACK encoder (`h2::set_hpack_dynamic_indexing(false)`)
//!   is exercised through weir in tests/h2_abuse.rs and in h2's own unit
//!   tests (vendor/README.md);
//! - the codec's read buffer, released while the connection waits and made
//!   again for the next read, still reads many small frames in a few 8 KiB
//!   reads instead of two reads per frame.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::hpack_int;
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

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

/// A raw string literal.
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

fn frame(buf: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    buf.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
    buf.extend_from_slice(&stream.to_be_bytes());
    buf.extend_from_slice(payload);
}

/// `POST http://weir/` as static-table references and one literal.
fn request_head(block: &mut Vec<u8>) {
    block.extend_from_slice(&[0x83, 0x86, 0x84, 0x01]);
    hpack_str(block, b"weir");
}

#[tokio::test]
async fn received_blocks_decode_the_same_and_connection_headers_reset_the_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
    const PROTOCOL_ERROR: u32 = 0x1;

    tokio::time::timeout(LIMIT, async {
        let (mut client, b) = tokio::io::duplex(1 << 20);
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut server = h2::server::handshake(b).await.expect("handshake");
            while let Some(Ok((req, mut respond))) = server.accept().await {
                let _ = got_tx.send((req.uri().clone(), req.headers().clone()));
                let _ = respond.send_response(Response::new(()), true);
            }
        });

        let mut buf = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut buf, SETTINGS, 0, 0, &[]);
        // Stream 1: every representation. `x-a: 1` with incremental
        // indexing (new name), `content-type` with incremental indexing
        // (static name 31), `te: trailers` without indexing, `x-secret`
        // never indexed, `x-b` with an empty value.
        let mut one = Vec::new();
        request_head(&mut one);
        one.push(0x40);
        hpack_str(&mut one, b"x-a");
        hpack_str(&mut one, b"1");
        hpack_int(&mut one, 0x40, 6, 31);
        hpack_str(&mut one, b"application/grpc");
        one.push(0x00);
        hpack_str(&mut one, b"te");
        hpack_str(&mut one, b"trailers");
        one.push(0x10);
        hpack_str(&mut one, b"x-secret");
        hpack_str(&mut one, b"s3cr3t");
        one.push(0x00);
        hpack_str(&mut one, b"x-b");
        one.push(0x00);
        frame(&mut buf, HEADERS, END_STREAM_AND_HEADERS, 1, &one);
        // Stream 3: the two dynamic entries by index (63: x-a, 62:
        // content-type), then a literal whose name is dynamic entry 63.
        let mut three = Vec::new();
        request_head(&mut three);
        three.extend_from_slice(&[0x80 | 63, 0x80 | 62]);
        hpack_int(&mut three, 0x00, 4, 63);
        hpack_str(&mut three, b"2");
        frame(&mut buf, HEADERS, END_STREAM_AND_HEADERS, 3, &three);
        // Streams 5, 7, ...: one connection-specific header each.
        let bad = illegal();
        for (i, (name, value)) in bad.iter().enumerate() {
            let mut block = Vec::new();
            request_head(&mut block);
            block.push(0x00);
            hpack_str(&mut block, name.as_bytes());
            hpack_str(&mut block, value.as_bytes());
            frame(
                &mut buf,
                HEADERS,
                END_STREAM_AND_HEADERS,
                5 + 2 * i as u32,
                &block,
            );
        }
        // And a last good stream after them: the connection lives on.
        let last = 5 + 2 * bad.len() as u32;
        let mut block = Vec::new();
        request_head(&mut block);
        block.push(0x80 | 63);
        frame(&mut buf, HEADERS, END_STREAM_AND_HEADERS, last, &block);
        client.write_all(&buf).await.expect("write");

        // The server's frames: collect RST_STREAM codes until the last
        // good stream is answered.
        let mut resets = Vec::new();
        let mut answered = Vec::new();
        while !answered.contains(&last) {
            let mut h = [0u8; 9];
            client.read_exact(&mut h).await.expect("frame head");
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            client
                .read_exact(&mut payload)
                .await
                .expect("frame payload");
            match h[3] {
                RST_STREAM => resets.push((
                    id,
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                )),
                HEADERS => answered.push(id),
                _ => {}
            }
        }
        let want: Vec<(u32, u32)> = (0..bad.len() as u32)
            .map(|i| (5 + 2 * i, PROTOCOL_ERROR))
            .collect();
        assert_eq!(
            resets, want,
            "each connection-specific header resets its stream"
        );
        assert_eq!(answered, [1, 3, last]);

        let mut got = Vec::new();
        while let Ok((uri, headers)) = got_rx.try_recv() {
            got.push((uri, headers));
        }
        assert_eq!(got.len(), 3, "three requests reached the server");
        for (uri, _) in &got {
            assert_eq!(uri.to_string(), "http://weir/");
        }
        let fields = |h: &HeaderMap| {
            let mut v: Vec<(String, String)> = h
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().expect("ascii").to_string()))
                .collect();
            v.sort();
            v
        };
        let pairs = |list: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = list
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            fields(&got[0].1),
            pairs(&[
                ("x-a", "1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-secret", "s3cr3t"),
                ("x-b", ""),
            ])
        );
        assert_eq!(
            fields(&got[1].1),
            pairs(&[
                ("x-a", "1"),
                ("content-type", "application/grpc"),
                ("x-a", "2")
            ])
        );
        assert_eq!(fields(&got[2].1), pairs(&[("x-a", "1")]));
    })
    .await
    .expect("in time");
}

/// Counts the reads that returned bytes.
struct CountReads<T> {
    inner: T,
    reads: Arc<AtomicUsize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountReads<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountReads<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The read-buffer patch allocates the buffer with `BytesMut::with_capacity`:
/// created empty and grown with `reserve`, a buffer whose frames were still
/// held grew by exactly what the length codec asked for, so every frame took
/// two reads (its 3-byte length, then the rest). 500 small requests sent in
/// one write after the handshake, their bodies held unread, must arrive in
/// a few 8 KiB reads.
#[tokio::test]
async fn many_small_frames_arrive_in_few_reads() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HEADERS: u8 = 0x1;
    const DATA: u8 = 0x0;
    const ACK: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const END_HEADERS: u8 = 0x4;
    const END_STREAM: u8 = 0x1;
    const CALLS: usize = 500;

    tokio::time::timeout(LIMIT, async {
        let (mut client, b) = tokio::io::duplex(1 << 20);
        let reads = Arc::new(AtomicUsize::new(0));
        let io = CountReads {
            inner: b,
            reads: reads.clone(),
        };
        let server = tokio::spawn(async move {
            let mut server = h2::server::Builder::new()
                .max_concurrent_streams(1000)
                .handshake::<_, Bytes>(io)
                .await
                .expect("handshake");
            // Hold every request (and so its DATA frame) unread.
            let mut held = Vec::new();
            while held.len() < CALLS {
                let (req, respond) = server
                    .accept()
                    .await
                    .expect("a request")
                    .expect("a good request");
                held.push((req, respond));
            }
            (server, held)
        });

        // The handshake first, so the server has waited for bytes with none
        // buffered (which releases its read buffer, as on any connection
        // that went quiet once) before the burst.
        let mut buf = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut buf, SETTINGS, 0, 0, &[]);
        client.write_all(&buf).await.expect("write");
        loop {
            let mut h = [0u8; 9];
            client.read_exact(&mut h).await.expect("frame head");
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let mut payload = vec![0; len];
            client.read_exact(&mut payload).await.expect("payload");
            if h[3] == SETTINGS && h[4] & ACK == ACK {
                break;
            }
        }
        // The server queues its ACK while reading, before it waits; a
        // moment more so it has surely waited.
        tokio::time::sleep(Duration::from_millis(20)).await;
        buf.clear();
        for i in 0..CALLS as u32 {
            let mut block = Vec::new();
            request_head(&mut block);
            frame(&mut buf, HEADERS, END_HEADERS, 1 + 2 * i, &block);
            frame(&mut buf, DATA, END_STREAM, 1 + 2 * i, &[i as u8; 64]);
        }
        client.write_all(&buf).await.expect("write");

        let (_server, held) = server.await.expect("join");
        let n = reads.load(Ordering::Relaxed);
        // 44 KB of frames: 6 reads of 8 KiB, plus the preface's and the
        // SETTINGS frame's (8 here); the regression took about 2 per frame
        // (1,643 of 2,000 here).
        assert!(n <= 50, "{CALLS} requests took {n} reads");
        for (i, (req, _respond)) in held.into_iter().enumerate() {
            let mut body = req.into_body();
            let data = body.data().await.expect("a DATA frame").expect("data");
            assert_eq!(data.as_ref(), &[i as u8; 64][..], "request {i}'s body");
        }
    })
    .await
    .expect("in time");
}
