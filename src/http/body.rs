//! The response body weir hands to the client connection: a proxy-made
//! reply, or an upstream body streamed frame by frame. Upstream flow-control
//! capacity is released only when hyper takes a frame, and hyper takes one
//! only when the client's window has room, so a slow reader slows the server
//! and memory stays bounded by the windows.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backend::h1pool::H1Sender;
use crate::backend::pool::StreamLease;
use crate::backend::{CallResult, Slot};
use crate::error::{ErrorKind, GrpcCode};
use crate::http::deadline::Deadline;
use crate::http::grpc;
use crate::http::idle::IdleTimer;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    /// Nothing: trailers-only gRPC errors and empty replies.
    Empty,
    /// A short body made by the proxy (plain-HTTP errors).
    Full(Option<Bytes>),
    /// Streamed from an HTTP/2 server.
    H2(Box<UpstreamH2>),
    /// Streamed from an HTTP/1.1 server.
    H1(Box<UpstreamH1>),
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }

    /// The termination state of a body that ended on a server-side
    /// failure, for the access log.
    pub fn termination(&self) -> Option<&'static str> {
        match self {
            ProxyBody::H2(u) => u.term,
            _ => None,
        }
    }
}

pub struct UpstreamH2 {
    recv: h2::RecvStream,
    data_done: bool,
    finished: bool,
    /// Termination state when the stream ended on a failure (`SD`, `sD`).
    term: Option<&'static str>,
    grpc: bool,
    idle: Option<IdleTimer>,
    /// The call's gRPC deadline (`grpc-timeout`), if it has one.
    deadline: Option<Deadline>,
    /// Tells the request-body pump to reset the upstream stream (sent, or
    /// dropped with this body); only for calls with a deadline.
    cancel_pump: Option<tokio::sync::oneshot::Sender<()>>,
    // Held for the life of the stream: the upstream stream slot and the
    // server's call slot (maxconn).
    _lease: StreamLease,
    _slot: Slot,
}

impl UpstreamH2 {
    pub fn new(
        recv: h2::RecvStream,
        grpc: bool,
        idle: Option<IdleTimer>,
        cancel_pump: Option<tokio::sync::oneshot::Sender<()>>,
        lease: StreamLease,
        slot: Slot,
    ) -> Self {
        UpstreamH2 {
            data_done: false,
            term: None,
            finished: recv.is_end_stream(),
            recv,
            grpc,
            idle,
            deadline: None,
            cancel_pump,
            _lease: lease,
            _slot: slot,
        }
    }

    /// Watches the call's deadline while the response streams: when it runs
    /// out, the client gets DEADLINE_EXCEEDED trailers and the upstream
    /// stream is reset (CANCEL) as this body is dropped.
    pub fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }

    /// Ends the call after a failure seen by the proxy. A gRPC client gets
    /// proper trailers; a plain HTTP client gets a reset.
    fn end_with(
        &mut self,
        kind: ErrorKind,
        message: String,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finished = true;
        self.term = Some(match kind {
            ErrorKind::ServerTimeout | ErrorKind::DeadlineExceeded => "sD",
            _ => "SD",
        });
        if self.grpc {
            let code = match kind {
                ErrorKind::ServerTimeout | ErrorKind::DeadlineExceeded => {
                    GrpcCode::DeadlineExceeded
                }
                _ => GrpcCode::Unavailable,
            };
            Poll::Ready(Some(Ok(Frame::trailers(grpc::status_headers(
                code, &message,
            )))))
        } else {
            Poll::Ready(Some(Err(message.into())))
        }
    }

    fn on_error(&mut self, e: h2::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self._slot.server.passive.is_some() {
            self._slot
                .observe(CallResult::Layer4, &format!("upstream stream failed: {e}"));
        }
        if e.is_reset() && e.is_remote() {
            // The server reset the stream on purpose: pass the same reason on
            // (hyper resets the client stream with the reason it finds here).
            self.finished = true;
            self.term = Some("SD");
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        self.end_with(
            ErrorKind::UpstreamClosed,
            format!("upstream connection lost: {e}"),
        )
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.idle.as_mut().map(|t| t.poll_expired(cx)) {
            Some(Poll::Ready(())) => {
                if self._slot.server.passive.is_some() {
                    self._slot
                        .observe(CallResult::Layer7, "no data for 'timeout server'");
                }
                self.end_with(
                    ErrorKind::ServerTimeout,
                    "server timeout: no data for 'timeout server'".to_string(),
                )
            }
            _ => Poll::Pending,
        }
    }
}

impl Body for UpstreamH2 {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        // Checked first: a server that keeps data flowing is still cut.
        if let Some(d) = this.deadline.as_mut() {
            if d.poll_expired(cx).is_ready() {
                let message = d.budget.message();
                if let Some(tx) = this.cancel_pump.take() {
                    let _ = tx.send(());
                }
                return this.end_with(ErrorKind::DeadlineExceeded, message);
            }
        }
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(t) = &this.idle {
                        t.activity.touch();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return this.on_error(e),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return this.poll_idle(cx),
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Ready(Ok(t)) => {
                this.finished = true;
                if this.grpc && this._slot.server.passive.is_some() {
                    let code = t.as_ref().and_then(crate::http::rules::grpc_status);
                    let info =
                        code.map_or("no grpc-status".to_string(), |c| format!("grpc-status {c}"));
                    this._slot.observe(CallResult::of_grpc(code), &info);
                }
                Poll::Ready(t.map(|t: HeaderMap| Ok(Frame::trailers(t))))
            }
            Poll::Ready(Err(e)) => this.on_error(e),
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

pub struct UpstreamH1 {
    body: Incoming,
    /// Goes back to the server's idle pool once the body is fully read.
    sender: Option<H1Sender>,
    /// The server's call slot; also where the connection goes back to.
    slot: Slot,
}

impl UpstreamH1 {
    pub fn new(body: Incoming, sender: H1Sender, slot: Slot) -> Self {
        UpstreamH1 {
            body,
            sender: Some(sender),
            slot,
        }
    }

    fn release(&mut self) {
        if let Some(s) = self.sender.take() {
            self.slot.server.h1.release(s);
        }
    }
}

impl Body for UpstreamH1 {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(f))) => {
                if this.body.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.sender = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::H2(u) => Pin::new(u.as_mut()).poll_frame(cx),
            ProxyBody::H1(u) => Pin::new(u.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::H2(u) => u.is_end_stream(),
            ProxyBody::H1(u) => u.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::H2(_) => SizeHint::default(),
            ProxyBody::H1(u) => u.body.size_hint(),
        }
    }
}
