//! Forwarding one call to one server: request head rewrite, the request body
//! pumped with flow control, and the response wrapped for streaming back.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use crate::backend::{Slot, UpstreamProto};
use crate::config::Timeouts;
use crate::error::{ErrorKind, ProxyError};
use crate::http::body::{ProxyBody, UpstreamH1, UpstreamH2};
use crate::http::deadline::{self, Budget};
use crate::http::idle::{Activity, IdleTimer};
use crate::http::retry::ReqBody;
use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

/// When the steps of one forward happened (for the access log and
/// `balance ewma`), and how far it got (for retries and termination states).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// When the attempt started; `None` when nothing reads the times (no
    /// access log, not `balance ewma`), which saves the clock reads.
    pub started: Option<Instant>,
    /// A stream (HTTP/2) or connection (HTTP/1.1) to the server was ready.
    pub connected: bool,
    /// When it was (only with `started`).
    pub connected_at: Option<Instant>,
    /// The request head was handed to the server's connection.
    pub sent: bool,
    /// The server refused the stream unprocessed (REFUSED_STREAM, or a
    /// GOAWAY whose last stream id is below the call's): safe to retry.
    pub refused: bool,
}

impl Timing {
    /// `clocked`: record when the steps happened.
    pub fn new(clocked: bool) -> Self {
        Timing {
            started: clocked.then(Instant::now),
            connected: false,
            connected_at: None,
            sent: false,
            refused: false,
        }
    }

    /// A stream or connection to the server is ready.
    fn connected(&mut self) {
        self.connected = true;
        if self.started.is_some() {
            self.connected_at = Some(Instant::now());
        }
    }
}

/// What [`forward`] returns: the attempt, boxed.
pub type Forwarding<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + 'a>>;

/// Sends `req` to the server of `slot` and returns the response to stream back.
/// `budget`: the gRPC call's deadline, sent on as a reduced `grpc-timeout`
/// (recomputed for every attempt of a retried call).
///
/// Each protocol's future is boxed on its own, so a call holds only the
/// memory of the path it takes: the HTTP/1.1 one is 5.8 KiB, the HTTP/2
/// one 1.4 KiB (release build). One `async fn` around both was as large as
/// the larger, for every call in flight (docs/benchmarks.md, "Cache
/// misses").
pub fn forward<'a>(
    req: Request<ReqBody>,
    slot: Slot,
    timeouts: &'a Timeouts,
    grpc: bool,
    budget: Option<Budget>,
    timing: &'a mut Timing,
    sni: Option<String>,
) -> Forwarding<'a> {
    match slot.server.proto {
        UpstreamProto::H2 => Box::pin(forward_h2(req, slot, timeouts, grpc, budget, timing, sni)),
        UpstreamProto::H1 => Box::pin(forward_h1(req, slot, timeouts, grpc, budget, timing)),
    }
}

/// The `grpc-timeout` the server gets: what is left of the call's budget
/// (time spent queueing and connecting taken off), or none when weir found
/// the client's value malformed. Fails when the budget already ran out.
fn upstream_timeout(
    headers: &mut HeaderMap,
    grpc: bool,
    budget: Option<Budget>,
) -> Result<(), ProxyError> {
    if !grpc {
        return Ok(());
    }
    let value = budget.map(|b| b.upstream_header()).transpose()?;
    deadline::set_upstream(headers, value);
    Ok(())
}

async fn forward_h2(
    req: Request<ReqBody>,
    slot: Slot,
    timeouts: &Timeouts,
    grpc: bool,
    budget: Option<Budget>,
    timing: &mut Timing,
    sni: Option<String>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let server = slot.server.clone();
    let pool = server.h2_for(sni.as_deref());
    // A connection that received GOAWAY refuses new streams before anything
    // is sent: take another one (bounded).
    let mut attempt = 0;
    let (lease, mut sender) = loop {
        let lease = pool.acquire(timeouts.connect).await?;
        let sender = lease.sender();
        match sender.ready().await {
            Ok(s) => break (lease, s),
            Err(e) if attempt < 2 => {
                attempt += 1;
                tracing::debug!(server = %server.name, error = %e, "upstream connection not ready, retiring it");
                lease.retire_conn();
            }
            Err(e) => {
                lease.retire_conn();
                return Err(ProxyError::new(
                    ErrorKind::UpstreamClosed,
                    format!("upstream connection to {} unusable: {e}", server.addr),
                ));
            }
        }
    };
    timing.connected();

    let client_version = req.version();
    let client_wants_trailers = req
        .headers()
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let (mut parts, body) = req.into_parts();
    parts.uri = h2_uri(
        std::mem::take(&mut parts.uri),
        &parts.headers,
        &server.authority,
    );
    parts.version = Version::HTTP_2;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    upstream_timeout(&mut parts.headers, grpc, budget)?;
    let mut body = body;
    let end_of_stream = body.is_end_stream();
    // Fast path: a unary call's whole body is usually already buffered, so
    // it goes out right behind the headers without a pump task.
    let first = if end_of_stream {
        None
    } else {
        match body.frame().now_or_never() {
            Some(Some(Ok(frame))) => Some(frame),
            Some(Some(Err(e))) => {
                return Err(ProxyError::new(
                    ErrorKind::ClientAborted,
                    format!("client aborted the request: {e}"),
                ))
            }
            _ => None,
        }
    };
    let body_done = first.is_some() && body.is_end_stream();
    let (resp_fut, mut send_stream) = sender
        .send_request(Request::from_parts(parts, ()), end_of_stream)
        .map_err(|e| {
            lease.retire_conn();
            ProxyError::new(
                ErrorKind::UpstreamClosed,
                format!("could not send request to {}: {e}", server.addr),
            )
        })?;
    timing.sent = true;
    // One clock read for both: when the request went, and the start of the
    // `timeout server` period.
    let sent = tokio::time::Instant::now();
    let mut resp_fut = Unanswered::new(resp_fut, sent);

    let mut idle = timeouts
        .server
        .map(|t| IdleTimer::new(Activity::since(sent), t));
    let mut cancel_pump = None;
    if body_done {
        // One frame of at most the client's window; h2 holds it until the
        // server's window opens.
        if let Some(frame) = first {
            send_frame(&mut send_stream, frame, true);
        }
    } else if !end_of_stream {
        let activity = idle.as_ref().map(|t| t.activity.clone());
        // With a deadline the pump must let go of the upstream stream when
        // the call ends in weir, so that h2 resets it.
        let cancel = budget.map(|_| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            cancel_pump = Some(tx);
            rx
        });
        tokio::spawn(pump_request(body, send_stream, first, activity, cancel));
    }

    let resp = match &mut idle {
        Some(t) => match t.run(&mut resp_fut).await {
            Some(r) => r,
            None => {
                return Err(ProxyError::new(
                    ErrorKind::ServerTimeout,
                    format!(
                        "server {} did not answer within 'timeout server'",
                        server.name
                    ),
                ))
            }
        },
        None => (&mut resp_fut).await,
    };
    let resp = resp.map_err(|e| {
        if e.is_go_away() || e.is_io() {
            lease.retire_conn();
        }
        // Not processed by the server: REFUSED_STREAM, or a GOAWAY that
        // does not cover this stream (h2 fails such streams with it).
        timing.refused =
            e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote());
        let kind = if e.is_reset() {
            ErrorKind::UpstreamProtocol
        } else {
            ErrorKind::UpstreamClosed
        };
        ProxyError::new(kind, format!("server {} failed the call: {e}", server.name))
    })?;
    let (mut parts, recv) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = client_version;
    if grpc && client_wants_trailers && client_version < Version::HTTP_2 {
        // hyper sends HTTP/1.1 chunked trailers only when declared.
        parts.headers.insert(
            header::TRAILER,
            HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin"),
        );
    }
    let body = UpstreamH2::new(recv, grpc, idle, cancel_pump, lease, slot);
    Ok(Response::from_parts(parts, ProxyBody::H2(Box::new(body))))
}

/// How long after its request was sent an upstream stream whose call is
/// dropped before any answer is kept open before h2 resets it.
///
/// An HTTP/2 server counts streams the peer resets before its application
/// has taken them up (h2's servers, tonic's among them, send GOAWAY
/// ENHANCE_YOUR_CALM after 20: rapid-reset protection). A client that
/// floods weir and is cut off would otherwise have all its calls reset on
/// the shared upstream connection at once, and the server's GOAWAY would
/// fail every other client's call on that connection too. Held this long,
/// a stream has normally been taken up, and a later reset is an ordinary
/// cancellation.
const YOUNG_CANCEL_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

/// The upstream answer to a call, awaited. Dropped unanswered within
/// [`YOUNG_CANCEL_GRACE`] of being sent (the client went away, a deadline
/// passed), the stream is let go of only once that much time has passed;
/// later, at once.
struct Unanswered {
    fut: Option<h2::client::ResponseFuture>,
    sent: tokio::time::Instant,
}

impl Unanswered {
    fn new(fut: h2::client::ResponseFuture, sent: tokio::time::Instant) -> Self {
        Unanswered {
            fut: Some(fut),
            sent,
        }
    }
}

impl std::future::Future for Unanswered {
    type Output = Result<Response<h2::RecvStream>, h2::Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Ready(Err(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
        };
        let out = std::task::ready!(std::pin::Pin::new(fut).poll(cx));
        // Answered (or failed): the stream no longer needs this handle, and
        // dropping it now costs nothing at drop time.
        self.fut = None;
        Poll::Ready(out)
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else { return };
        let until = self.sent + YOUNG_CANCEL_GRACE;
        if tokio::time::Instant::now() >= until {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep_until(until).await;
                drop(fut);
            });
        }
    }
}

async fn forward_h1(
    req: Request<ReqBody>,
    slot: Slot,
    timeouts: &Timeouts,
    grpc: bool,
    budget: Option<Budget>,
    timing: &mut Timing,
) -> Result<Response<ProxyBody>, ProxyError> {
    let server = slot.server.clone();
    let mut sender = server.h1.acquire(server.addr, timeouts.connect).await?;
    timing.connected();
    let (mut parts, body) = req.into_parts();
    // An HTTP/1.1 connection takes the client's body itself: a call whose
    // body was already read cannot go to one (retries check this first).
    let body = body.into_incoming().map_err(|_| {
        ProxyError::new(
            ErrorKind::Internal,
            format!(
                "request body already read, cannot resend it to HTTP/1.1 server {}",
                server.name
            ),
        )
    })?;
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    upstream_timeout(&mut parts.headers, grpc, budget)?;
    timing.sent = true;
    let fut = sender.send_request(Request::from_parts(parts, body));
    let resp = match timeouts.server {
        Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| {
            ProxyError::new(
                ErrorKind::ServerTimeout,
                format!(
                    "server {} did not answer within 'timeout server'",
                    server.name
                ),
            )
        })?,
        None => fut.await,
    }
    .map_err(|e| {
        ProxyError::new(
            ErrorKind::UpstreamClosed,
            format!("server {} failed the call: {e}", server.name),
        )
    })?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        ProxyBody::H1(Box::new(UpstreamH1::new(body, sender, slot))),
    ))
}

/// Streams the client's request body to the server, one frame at a time,
/// waiting for upstream window before pulling more from the client.
/// `cancel` (calls with a deadline): when it fires or its sender is dropped
/// (the call ended in weir), the upstream stream is reset with CANCEL.
async fn pump_request(
    mut body: ReqBody,
    mut tx: h2::SendStream<Bytes>,
    first: Option<Frame<Bytes>>,
    activity: Option<Arc<Activity>>,
    mut cancel: Option<tokio::sync::oneshot::Receiver<()>>,
) {
    if let Some(frame) = first {
        if !send_frame(&mut tx, frame, false) {
            return;
        }
    }
    // Ready when the call ended in weir (deadline): sent or sender dropped.
    let mut cancelled = move |cx: &mut std::task::Context<'_>| match cancel.as_mut() {
        Some(rx) => std::future::Future::poll(std::pin::Pin::new(rx), cx).is_ready(),
        None => false,
    };
    loop {
        // Wait for upstream window (or a reset) before reading more.
        tx.reserve_capacity(1);
        let ready = poll_fn(|cx| {
            if cancelled(cx) {
                return Poll::Ready(Pumped::Cancel);
            }
            if tx.poll_reset(cx).is_ready() {
                return Poll::Ready(Pumped::Stop);
            }
            match tx.poll_capacity(cx) {
                Poll::Ready(Some(Ok(n))) if n > 0 => Poll::Ready(Pumped::Go(())),
                Poll::Ready(Some(Ok(_))) => Poll::Pending,
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Poll::Ready(Pumped::Stop),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match ready {
            Pumped::Go(()) => {}
            Pumped::Cancel => {
                tx.send_reset(h2::Reason::CANCEL);
                return;
            }
            Pumped::Stop => return, // the server reset or closed the stream
        }
        let frame = poll_fn(|cx| {
            if cancelled(cx) {
                return Poll::Ready(Pumped::Cancel);
            }
            if tx.poll_reset(cx).is_ready() {
                return Poll::Ready(Pumped::Stop);
            }
            std::pin::Pin::new(&mut body).poll_frame(cx).map(Pumped::Go)
        })
        .await;
        let frame = match frame {
            Pumped::Go(f) => f,
            Pumped::Cancel => {
                tx.send_reset(h2::Reason::CANCEL);
                return;
            }
            Pumped::Stop => return,
        };
        if let Some(a) = &activity {
            a.touch();
        }
        match frame {
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Ok(f)) => {
                if !send_frame(&mut tx, f, body.is_end_stream()) {
                    return;
                }
            }
            Some(Err(_)) => {
                // The client went away mid-request: cancel the upstream stream.
                tx.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
}

/// One step of the request pump.
enum Pumped<T> {
    Go(T),
    /// The call ended in weir: reset the upstream stream.
    Cancel,
    /// The server reset or closed the stream.
    Stop,
}

/// Sends one request-body frame upstream. Returns whether more may follow
/// (false after trailers, end of stream, or a send error).
fn send_frame(tx: &mut h2::SendStream<Bytes>, frame: Frame<Bytes>, eos: bool) -> bool {
    match frame.into_data() {
        Ok(data) => tx.send_data(data, eos).is_ok() && !eos,
        Err(frame) => {
            if let Ok(t) = frame.into_trailers() {
                let _ = tx.send_trailers(t);
            }
            false
        }
    }
}

/// The absolute URI an HTTP/2 server needs (`:scheme`, `:authority`, `:path`).
fn h2_uri(uri: Uri, headers: &HeaderMap, fallback_authority: &str) -> Uri {
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri;
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| fallback_authority.to_string());
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(pq)
        .build()
        .unwrap_or(uri)
}

const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes connection-specific headers (RFC 9110 §7.6.1), keeping
/// `te: trailers`, which gRPC needs.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass without hashing first: almost every request and response
    // has none of these (h2 refuses them in HTTP/2 header blocks), and a
    // `remove` per name costs a hash and a probe each.
    let dirty = h.iter().any(|(name, value)| {
        HOP_BY_HOP.contains(name)
            || (name == header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers"))
    });
    if !dirty {
        return;
    }
    if let Some(conn) = h.get(header::CONNECTION).cloned() {
        if let Ok(list) = conn.to_str() {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                    if n != header::TE {
                        h.remove(n);
                    }
                }
            }
        }
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
    if let Some(te) = h.get(header::TE) {
        if !te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            h.remove(header::TE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An h2 client connected (in memory) to a server that hands each
    /// request's responder to `on_request`.
    async fn h2_client(
        on_request: impl Fn(h2::server::SendResponse<Bytes>) + Send + 'static,
    ) -> h2::client::SendRequest<Bytes> {
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(b).await.expect("server handshake");
            while let Some(Ok((_req, respond))) = conn.accept().await {
                on_request(respond);
            }
        });
        let (send, conn) = h2::client::handshake(a).await.expect("client handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        send
    }

    /// An h2 client and a server that reports, for each request it takes
    /// up, when (tokio time) the client reset it.
    async fn h2_pair() -> (
        h2::client::SendRequest<Bytes>,
        tokio::sync::mpsc::UnboundedReceiver<(tokio::time::Instant, h2::Reason)>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let send = h2_client(move |mut respond| {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(reason) = std::future::poll_fn(|cx| respond.poll_reset(cx)).await {
                    let _ = tx.send((tokio::time::Instant::now(), reason));
                }
            });
        })
        .await;
        (send, rx)
    }

    async fn open(send: &h2::client::SendRequest<Bytes>) -> Unanswered {
        let mut send = send.clone().ready().await.expect("ready");
        let req = Request::post("http://upstream.test/a.B/C")
            .body(())
            .expect("request");
        let (fut, _tx) = send.send_request(req, true).expect("send");
        Unanswered::new(fut, tokio::time::Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn a_young_unanswered_stream_is_reset_only_after_the_grace() {
        let (send, mut resets) = h2_pair().await;
        let call = open(&send).await;
        // Let the server take the stream up, then drop the call at once.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let dropped = tokio::time::Instant::now();
        drop(call);
        let (at, reason) = resets.recv().await.expect("the stream is reset");
        assert_eq!(reason, h2::Reason::CANCEL);
        // Sent 1 ms before the drop: reset when the grace has run out.
        let ms = std::time::Duration::from_millis;
        assert!(YOUNG_CANCEL_GRACE >= ms(10), "a grace worth the name");
        let want = YOUNG_CANCEL_GRACE - ms(1);
        let waited = at - dropped;
        assert!(
            waited >= want && waited < want + ms(5),
            "reset {waited:?} after the drop, want {want:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_unanswered_stream_is_reset_at_once() {
        let (send, mut resets) = h2_pair().await;
        let call = open(&send).await;
        tokio::time::sleep(YOUNG_CANCEL_GRACE + std::time::Duration::from_millis(5)).await;
        let dropped = tokio::time::Instant::now();
        drop(call);
        let (at, reason) = resets.recv().await.expect("the stream is reset");
        assert_eq!(reason, h2::Reason::CANCEL);
        assert!(
            at - dropped < std::time::Duration::from_millis(1),
            "{:?}",
            at - dropped
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_call_lets_go_of_its_handle_at_once() {
        let send = h2_client(|mut respond| {
            let _ = respond.send_response(Response::new(()), true);
        })
        .await;
        let mut call = open(&send).await;
        let resp = (&mut call).await.expect("answered");
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert!(call.fut.is_none(), "the handle is let go of once answered");
        drop(call);
        // Polling again after the answer is an error, not a panic.
        let mut done = Unanswered {
            fut: None,
            sent: tokio::time::Instant::now(),
        };
        assert!((&mut done).await.is_err());
    }

    #[test]
    fn hop_by_hop_headers_go_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-foo"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("x-foo").is_none());
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-keep"], "1");
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn origin_form_gets_authority_from_host() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.com:8080"));
        let u = h2_uri(Uri::from_static("/a/b?c=1"), &h, "10.0.0.1:80");
        assert_eq!(u.to_string(), "http://example.com:8080/a/b?c=1");
        let u = h2_uri(Uri::from_static("/x"), &HeaderMap::new(), "127.0.0.1:9");
        assert_eq!(u.to_string(), "http://127.0.0.1:9/x");
    }
}
