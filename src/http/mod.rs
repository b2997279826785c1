//! `mode http`: one listener serves HTTP/1.1 and HTTP/2 (h2c with prior
//! knowledge, detected from the connection preface) unless `proto` forces one.

pub mod access_log;
pub mod body;
pub mod deadline;
pub mod forward;
pub mod grpc;
pub mod h2guard;
pub mod idle;
pub mod request;
pub mod respond;
pub mod retry;
pub mod rules;
pub mod tally;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use crate::config::Proto;
use crate::observe::stats::ConnCut;
use crate::runtime::Frontend;
use access_log::{ConnInfo, PendingLog};
use body::ProxyBody;
use idle::{Activity, IdleTimer};

/// `max-connection-age` / `max-connection-age-grace` of a bind line.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnAge {
    pub max: Option<Duration>,
    pub grace: Option<Duration>,
}

impl ConnAge {
    /// When this connection gets its GOAWAY: the age plus up to 10% jitter,
    /// so connections opened together do not all leave together.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        let max = self.max?;
        let jitter = max.mul_f64(fastrand::f64() * 0.1);
        Some(tokio::time::Instant::now() + max + jitter)
    }
}

/// How long a connection accepted just before a stop may take to send its
/// first request before it gets its GOAWAY.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(1000);

/// HTTP/2 connection window we advertise to clients (at least the stream
/// window, `tune.h2.initial-window-size`).
const H2_CONN_WINDOW: u32 = 4 << 20;

/// The connection builder for a frontend's bind line.
pub fn builder(fe: &Frontend, proto: Option<Proto>) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // A proxy passes the server's `date` on; it does not add its own (one
    // header less to HPACK-encode per call).
    b.http1()
        .timer(TokioTimer::new())
        .auto_date_header(false)
        .header_read_timeout(
            fe.timeouts
                .http_request
                .or(fe.timeouts.client)
                .unwrap_or(Duration::from_secs(30)),
        );
    if let Some(k) = fe.h2_keepalive {
        b.http2()
            .keep_alive_interval(Some(k.interval))
            .keep_alive_timeout(k.timeout);
    }
    // `tune.h2.*` (docs/hardening.md): what we advertise, and the limits
    // after which a client gets GOAWAY ENHANCE_YOUR_CALM (rapid reset,
    // protocol-error floods).
    let t = &fe.h2_tune;
    b.http2()
        .timer(TokioTimer::new())
        .auto_date_header(false)
        .max_concurrent_streams(t.max_concurrent_streams)
        .initial_stream_window_size(t.initial_window_size)
        .initial_connection_window_size(H2_CONN_WINDOW.max(t.initial_window_size))
        .max_frame_size(t.max_frame_size)
        .max_header_list_size(t.max_header_list_size)
        .max_pending_accept_reset_streams(t.max_pending_resets as usize)
        .max_local_error_reset_streams(t.max_error_resets as usize);
    match proto {
        Some(Proto::H2) => b.http2_only(),
        Some(Proto::H1) => b.http1_only(),
        None => b,
    }
}

/// Open calls and last activity of one client connection, for the idle timer.
#[derive(Debug)]
pub struct ConnCalls {
    open: AtomicUsize,
    /// Calls started on this connection since it opened.
    started: AtomicUsize,
    activity: Arc<Activity>,
}

/// Counts one open call until the response body is done (or dropped).
pub struct CallGuard(Arc<ConnCalls>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.activity.touch();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body as the client connection sees it: the proxy body,
/// the guard that keeps the connection counted as busy, and the request's
/// access-log line, written when the body ends (or is dropped).
pub struct ClientBody {
    inner: ProxyBody,
    _call: CallGuard,
    log: Option<Box<PendingLog>>,
    /// What the request adds to the counters, at its end.
    tally: tally::Tally,
    /// For gRPC responses streamed from a server: the proxy's hard stop,
    /// which ends the call with UNAVAILABLE trailers.
    hard_stop: Option<HardStopWatch>,
}

struct HardStopWatch {
    stop: Arc<crate::runtime::HardStop>,
    wait: Option<std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>>,
    fired: bool,
}

impl HardStopWatch {
    /// Ready once the hard stop happened (registers for the wake-up).
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        if self.fired {
            return false;
        }
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(self.stop.notified()));
        let woken = std::future::Future::poll(wait.as_mut(), cx).is_ready();
        if woken || self.stop.is_stopped() {
            self.fired = true;
            return true;
        }
        false
    }
}

impl http_body::Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, body::BoxError>>> {
        let this = self.get_mut();
        if let Some(h) = this.hard_stop.as_mut() {
            if h.fired {
                return std::task::Poll::Ready(None);
            }
        }
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if let Some(h) = this.hard_stop.as_mut() {
                if h.poll(cx) {
                    // The inner body is dropped with us: the upstream stream
                    // is reset (CANCEL).
                    let t = grpc::status_headers(
                        crate::error::GrpcCode::Unavailable,
                        "server shutting down",
                    );
                    this.tally.trailers(&t);
                    this.tally.termination("KD");
                    this.tally.finish();
                    if let Some(log) = this.log.as_mut() {
                        log.trailers(&t);
                        log.termination("KD");
                        log.write(false);
                    }
                    return std::task::Poll::Ready(Some(Ok(http_body::Frame::trailers(t))));
                }
            }
        }
        let tally = &mut this.tally;
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    tally.data(d);
                } else if let Some(t) = frame.trailers_ref() {
                    tally.trailers(t);
                }
                if this.inner.is_end_stream() {
                    if let Some(t) = this.inner.termination() {
                        tally.termination(t);
                    }
                    tally.finish();
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => {
                tally.termination(this.inner.termination().unwrap_or("SD"));
                tally.finish();
            }
            std::task::Poll::Ready(None) => tally.finish(),
            std::task::Poll::Pending => {}
        }
        let Some(log) = this.log.as_mut() else {
            return polled;
        };
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    log.add_bytes(d.len());
                } else if let Some(t) = frame.trailers_ref() {
                    log.trailers(t);
                }
                if this.inner.is_end_stream() {
                    if let Some(t) = this.inner.termination() {
                        log.termination(t);
                    }
                    log.write(false);
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => {
                log.termination(this.inner.termination().unwrap_or("SD"));
                log.write(false);
            }
            std::task::Poll::Ready(None) => log.write(false),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.hard_stop.as_ref().is_some_and(|h| h.fired) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.as_mut() {
            if !log.is_written() {
                // The client went away (or reset the stream) mid-response.
                log.termination("CD");
                log.write(false);
            }
        }
    }
}

/// Serves one client connection until it ends, goes idle for
/// `timeout http-keep-alive` (else `timeout client`) with no open call, or
/// shutdown is asked for. Idle and shutdown both close gracefully (GOAWAY
/// for HTTP/2, after the current response for HTTP/1.1).
#[allow(clippy::too_many_arguments)]
pub async fn serve<S>(
    stream: S,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
    tls: Option<crate::acl::TlsInfo>,
    age: ConnAge,
    fe: Arc<Frontend>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    ctl: crate::listener::ConnCtl,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let calls = Arc::new(ConnCalls {
        open: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        activity: Activity::new(),
    });
    let crate::listener::ConnCtl {
        slot,
        stop: mut shutdown,
        track,
    } = ctl;
    let mut retired = slot.retired();
    // Each request takes the frontend current at its arrival: after a
    // reload, calls on this connection follow the new configuration.
    let svc_slot = slot.clone();
    let svc_calls = calls.clone();
    let conn_info = Arc::new(ConnInfo {
        peer,
        local,
        accepted: std::time::SystemTime::now(),
        tls,
        track,
    });
    let service = service_fn(move |req| {
        let fe = svc_slot.current();
        let conn_info = conn_info.clone();
        svc_calls.open.fetch_add(1, Ordering::AcqRel);
        svc_calls.started.fetch_add(1, Ordering::Relaxed);
        let guard = CallGuard(svc_calls.clone());
        async move {
            let mut tally = tally::Tally::start(&fe.stats, grpc::is_grpc(req.headers()));
            let (resp, log) = request::handle(req, &fe, &conn_info, &mut tally).await;
            let streamed_grpc = !http_body::Body::is_end_stream(resp.body())
                && matches!(resp.body(), ProxyBody::H2(_) | ProxyBody::H1(_))
                && grpc::is_grpc(resp.headers());
            let hard_stop = streamed_grpc.then(|| HardStopWatch {
                stop: fe.hard_stop.clone(),
                wait: None,
                fired: false,
            });
            Ok::<_, Infallible>(resp.map(|inner| ClientBody {
                inner,
                _call: guard,
                log,
                tally,
                hard_stop,
            }))
        }
    });
    // `tune.h2.fe.max-control-frames-per-sec`: the guard steps aside by
    // itself for HTTP/1.1 connections.
    let limit = if builder.is_http2_available() {
        fe.h2_tune.max_control_frames_per_sec
    } else {
        0
    };
    let flood_fe = fe.clone();
    let stream = h2guard::H2Guard::new(stream, limit, move |goaway: bool| {
        flood_fe.stats.conn_cut(ConnCut::ControlFrameFlood);
        let how = if goaway {
            "GOAWAY ENHANCE_YOUR_CALM"
        } else {
            "closed without GOAWAY"
        };
        tracing::warn!(
            frontend = %flood_fe.name,
            %peer,
            "client connection closed: control frame flood (over {limit} PING/SETTINGS/PRIORITY/empty DATA frames per second, tune.h2.fe.max-control-frames-per-sec; {how})"
        );
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle_after = fe.timeouts.http_keep_alive.or(fe.timeouts.client);
    let mut idle = idle_after.map(|t| IdleTimer::new(calls.activity.clone(), t));
    let idle_expired = std::future::poll_fn(|cx| loop {
        let Some(timer) = idle.as_mut() else {
            return std::task::Poll::Pending;
        };
        std::task::ready!(timer.poll_expired(cx));
        if calls.open.load(Ordering::Acquire) == 0 {
            return std::task::Poll::Ready(());
        }
        // Busy: a call is open, so the connection is not idle; look again
        // one period later.
        calls.activity.touch();
    });
    let aged = async {
        match age.deadline() {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                log_conn_error(&fe, peer, &*e);
            }
            return;
        }
        _ = async {
            tokio::select! {
                _ = crate::proxy::stopping(&mut shutdown) => {}
                _ = crate::proxy::stopping(&mut retired) => {}
            }
        } => {
            // A connection accepted just before a reload or shutdown has
            // not sent its first request yet: a GOAWAY now would fail that
            // request in most clients. Serve it first (bounded).
            if calls.started.load(Ordering::Relaxed) == 0 {
                let first = async {
                    while calls.started.load(Ordering::Relaxed) == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            log_conn_error(&fe, peer, &*e);
                        }
                        return;
                    }
                    _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first) => {}
                }
            }
        }
        _ = idle_expired => {
            tracing::debug!(frontend = %fe.name, "closing idle client connection");
        }
        _ = aged => {
            // `max-connection-age`: GOAWAY, so that long-lived clients
            // reconnect (and rebalance); calls in flight get the grace.
            tracing::debug!(frontend = %fe.name, "client connection reached max-connection-age");
            conn.as_mut().graceful_shutdown();
            match age.grace {
                Some(g) => {
                    if tokio::time::timeout(g, conn.as_mut()).await.is_err() {
                        tracing::debug!(frontend = %fe.name, "max-connection-age-grace over, closing");
                    }
                }
                None => {
                    let _ = conn.as_mut().await;
                }
            }
            return;
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Why weir cut a client connection, when it did: an HTTP/2 GOAWAY weir
/// sent for the client's misbehaviour (too many resets, a CONTINUATION
/// flood, a protocol error) or an HTTP/1.1 request whose headers did not
/// arrive within `timeout http-request`. `None` for ordinary ends (the
/// client went away, an I/O error).
fn cut_reason(e: &(dyn std::error::Error + 'static)) -> Option<(ConnCut, String)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            if !(h2e.is_library() && h2e.is_go_away()) {
                return None;
            }
            let reason = h2e.reason()?;
            // (h2 does not hand its GOAWAY debug data back: which of its
            // limits it was is only in its debug log.)
            let (cut, what) = if reason == h2::Reason::ENHANCE_YOUR_CALM {
                (
                    ConnCut::EnhanceYourCalm,
                    "too many resets or abusive frames",
                )
            } else if reason == h2::Reason::FRAME_SIZE_ERROR {
                (ConnCut::FrameTooLarge, "frame too large")
            } else if reason == h2::Reason::COMPRESSION_ERROR {
                (ConnCut::CompressionError, "bad header compression")
            } else {
                (ConnCut::ProtocolError, "protocol error")
            };
            return Some((cut, format!("{what} ({reason:?}: {h2e})")));
        }
        if let Some(he) = err.downcast_ref::<hyper::Error>() {
            if he.is_timeout() {
                return Some((
                    ConnCut::RequestHeaderTimeout,
                    "request headers not received in time (timeout http-request)".into(),
                ));
            }
        }
        cur = err.source();
    }
    None
}

/// Logs the end of a client connection that failed: a cut by weir (see
/// [`cut_reason`]) at warn with the peer, and counted
/// (`weir_frontend_connections_cut_total`), anything else at debug.
fn log_conn_error(
    fe: &Frontend,
    peer: std::net::SocketAddr,
    e: &(dyn std::error::Error + 'static),
) {
    match cut_reason(e) {
        Some((cut, reason)) => {
            fe.stats.conn_cut(cut);
            tracing::warn!(
                frontend = %fe.name,
                %peer,
                "client connection closed: {reason}"
            )
        }
        None => {
            tracing::debug!(frontend = %fe.name, error = %e, "client connection ended with an error")
        }
    }
}
