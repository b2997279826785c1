//! Retries: which failures a call may be tried again after (`retry-on`), the
//! replayable request body (`retry-buffer`) and the per-backend retry budget.
//!
//! A call is tried again only while nothing reached the client (the retry is
//! decided on the upstream response head, before it is handed to hyper) and
//! only when the server can be sent the very same request: either nothing of
//! the body was read yet, or every byte read so far is still held in the
//! replay buffer. The buffer records the body as it is forwarded (a tee, no
//! waiting for the whole body), so streaming and ping-pong calls are not
//! slowed down; once more than `retry-buffer` bytes went through, the
//! recording is dropped and the call cannot be replayed any more.
//! See docs/grpc-semantics.md, "Retries".

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::http::tally::CountedBody as Incoming;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};

use crate::config::{self, RetryOn};
use crate::error::{ErrorKind, ProxyError};
use crate::http::body::{BoxError, ProxyBody};
use crate::http::forward::Timing;

/// A backend's retry settings, resolved from its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `retries`: extra attempts after the first one.
    pub retries: u32,
    pub on: RetryOn,
    pub redispatch: bool,
    /// `retry-buffer`, bytes.
    pub buffer: usize,
}

impl Policy {
    pub fn of(o: &config::Options) -> Policy {
        let on = o.retry_on.unwrap_or(RetryOn::DEFAULT);
        Policy {
            retries: if on == RetryOn::NONE {
                0
            } else {
                o.retries.unwrap_or(config::Options::DEFAULT_RETRIES)
            },
            on,
            redispatch: o.redispatch,
            buffer: o
                .retry_buffer
                .unwrap_or(config::Options::DEFAULT_RETRY_BUFFER)
                .min(usize::MAX as u64) as usize,
        }
    }

    /// The default `retry-on` of a backend without HTTP/2 servers: no
    /// stream can be refused, so only `conn-failure` (which needs no
    /// recording of the request).
    pub fn for_servers(mut self, any_h2: bool) -> Policy {
        if !any_h2 && self.on == RetryOn::DEFAULT {
            self.on = RetryOn::CONN_FAILURE;
        }
        self
    }

    /// How many body bytes to record: none when only failures that happen
    /// before anything is sent are retried.
    pub fn record_limit(&self) -> usize {
        if self.on.nothing_sent_only() {
            0
        } else {
            self.buffer
        }
    }
}

/// What a failed attempt was, in `retry-on` terms.
pub fn event_of_error(e: &ProxyError, timing: &Timing) -> Option<RetryOn> {
    if timing.refused {
        return Some(RetryOn::REFUSED_STREAM);
    }
    match e.kind {
        ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout => Some(RetryOn::CONN_FAILURE),
        // A TLS or HTTP/2 handshake failure: nothing was sent either.
        ErrorKind::UpstreamProtocol | ErrorKind::UpstreamClosed if !timing.sent => {
            Some(RetryOn::CONN_FAILURE)
        }
        ErrorKind::UpstreamClosed => Some(RetryOn::EMPTY_RESPONSE),
        _ => None,
    }
}

/// What a response head is, in `retry-on` terms: a trailers-only gRPC
/// UNAVAILABLE or RESOURCE_EXHAUSTED, or an HTTP 503.
pub fn event_of_response(resp: &Response<ProxyBody>, grpc: bool) -> Option<RetryOn> {
    if resp.status().as_u16() == 503 {
        return Some(RetryOn::HTTP_503);
    }
    if !grpc || !resp.body().is_end_stream() {
        return None;
    }
    match crate::http::rules::grpc_status(resp.headers()) {
        Some(14) => Some(RetryOn::UNAVAILABLE),
        Some(8) => Some(RetryOn::RESOURCE_EXHAUSTED),
        _ => None,
    }
}

// ------------------------------------------------------------------ budget

/// Share of a backend's calls that may be retries (20%).
pub const BUDGET_RATIO_PERCENT: u64 = 20;
/// Retries always allowed per window, whatever the traffic.
pub const BUDGET_MIN_RETRIES: u64 = 10;
/// The budget's window: counters start over every second.
pub const BUDGET_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// The retry budget of one backend: in each one-second window, a retry is
/// allowed while `retries < max(10, 20% of calls)` of that window, so that
/// retries add at most a fifth to the load of a failing backend.
///
/// The calls are the backend's own request counter (its `stats`), read
/// only when a retry is asked for: a call that is not retried costs the
/// budget nothing (no lock, no clock). A window starts at the first retry
/// asked for after the previous one ended.
pub struct RetryBudget {
    window: Mutex<Option<Window>>,
}

struct Window {
    start: Instant,
    /// The backend's call counter when the window started.
    calls_at_start: u64,
    retries: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            window: Mutex::new(None),
        }
    }
}

impl RetryBudget {
    /// Takes one retry from the budget, if any is left; `calls` is the
    /// backend's call counter now (it only grows).
    pub fn try_retry(&self, calls: u64) -> bool {
        let mut guard = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let w = match guard.as_mut() {
            Some(w) if now.saturating_duration_since(w.start) < BUDGET_WINDOW => w,
            _ => guard.insert(Window {
                start: now,
                calls_at_start: calls,
                retries: 0,
            }),
        };
        let in_window = calls.saturating_sub(w.calls_at_start);
        let allowed = BUDGET_MIN_RETRIES.max(in_window * BUDGET_RATIO_PERCENT / 100);
        if w.retries < allowed {
            w.retries += 1;
            true
        } else {
            false
        }
    }
}

// -------------------------------------------------------------- request body

/// The request body one attempt sends: the client's body as it is, or a
/// cursor over a [`Replay`] (recorded frames first, then the live body).
pub enum ReqBody {
    Live(Incoming),
    Replay(ReplayBody),
}

impl ReqBody {
    /// The client's body itself, when nothing of it was read yet (HTTP/1.1
    /// servers take only that). `Err` gives the body back otherwise.
    pub fn into_incoming(self) -> Result<Incoming, ReqBody> {
        match self {
            ReqBody::Live(b) => Ok(b),
            ReqBody::Replay(r) => r.into_incoming().map_err(ReqBody::Replay),
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Live(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
            ReqBody::Replay(r) => r.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Live(b) => b.is_end_stream(),
            ReqBody::Replay(r) => r.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Live(b) => b.size_hint(),
            ReqBody::Replay(_) => SizeHint::default(),
        }
    }
}

enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Recorded {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Recorded::Data(b) => Frame::data(b.clone()),
            Recorded::Trailers(t) => Frame::trailers(t.clone()),
        }
    }
}

struct Shared {
    /// The client's body; `None` once it ended (or was handed over whole).
    live: Option<Incoming>,
    /// Frames read from `live` so far, while the call is replayable.
    frames: VecDeque<Recorded>,
    /// Frames of `frames` the current attempt has already sent.
    pos: usize,
    bytes: usize,
    limit: usize,
    /// Every frame read so far is in `frames` (and the client did not fail).
    replayable: bool,
    /// Something was read from `live`.
    touched: bool,
    /// The attempt allowed to read; older attempts' bodies fail.
    attempt: u32,
}

/// A client's request body shared by the attempts of one call.
pub struct Replay {
    shared: Arc<Mutex<Shared>>,
}

/// One attempt's view of a [`Replay`].
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    attempt: u32,
}

impl Replay {
    /// Records up to `limit` bytes of `body` as it is forwarded.
    pub fn new(body: Incoming, limit: usize) -> Replay {
        Replay {
            shared: Arc::new(Mutex::new(Shared {
                live: Some(body),
                frames: VecDeque::new(),
                pos: 0,
                bytes: 0,
                limit,
                replayable: true,
                touched: false,
                attempt: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// Whether a new attempt could send the same request again.
    pub fn can_replay(&self) -> bool {
        let s = self.lock();
        s.replayable || !s.touched
    }

    /// Nothing of the client's body was read yet.
    pub fn untouched(&self) -> bool {
        !self.lock().touched
    }

    /// The body for the next attempt (the first one included). Earlier
    /// attempts' bodies stop reading.
    pub fn attempt(&self) -> ReqBody {
        let mut s = self.lock();
        s.attempt += 1;
        s.pos = 0;
        ReqBody::Replay(ReplayBody {
            shared: self.shared.clone(),
            attempt: s.attempt,
        })
    }

    /// No more attempts: the recording is not needed any more.
    pub fn finish(&self) {
        let mut s = self.lock();
        s.replayable = false;
        if s.pos >= s.frames.len() {
            s.frames.clear();
            s.pos = 0;
        }
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReplayBody {
    fn into_incoming(self) -> Result<Incoming, ReplayBody> {
        let mut s = lock(&self.shared);
        if s.attempt == self.attempt && !s.touched && s.live.is_some() {
            s.touched = true;
            s.replayable = false;
            let b = s.live.take();
            drop(s);
            return b.ok_or(self);
        }
        drop(s);
        Err(self)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        if s.attempt != self.attempt {
            return Poll::Ready(Some(Err("superseded by a retry".into())));
        }
        if s.pos < s.frames.len() {
            let f = s.frames[s.pos].frame();
            s.pos += 1;
            if !s.replayable && s.pos == s.frames.len() {
                s.frames.clear();
                s.pos = 0;
            }
            return Poll::Ready(Some(Ok(f)));
        }
        let Some(live) = s.live.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(live).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.live = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.touched = true;
                s.replayable = false;
                s.frames.clear();
                s.pos = 0;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                s.touched = true;
                if s.live.as_ref().is_some_and(|b| b.is_end_stream()) {
                    s.live = None;
                }
                if s.replayable {
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    s.bytes += len;
                    if s.bytes > s.limit {
                        s.replayable = false;
                        s.frames.clear();
                        s.pos = 0;
                    } else if let Some(d) = frame.data_ref() {
                        s.frames.push_back(Recorded::Data(d.clone()));
                        s.pos += 1;
                    } else if let Some(t) = frame.trailers_ref() {
                        s.frames.push_back(Recorded::Trailers(t.clone()));
                        s.pos += 1;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = lock(&self.shared);
        s.attempt == self.attempt
            && s.pos >= s.frames.len()
            && s.live.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_floor_then_a_fifth_of_calls() {
        // The backend had answered a million calls before this window:
        // they do not count in it.
        let b = RetryBudget::default();
        let allowed = (0..100).filter(|_| b.try_retry(1_000_000)).count();
        assert_eq!(allowed as u64, BUDGET_MIN_RETRIES);
        // 100 calls in the window: a fifth of them may be retried.
        let more = (0..100).filter(|_| b.try_retry(1_000_100)).count();
        assert_eq!(more as u64, 20 - BUDGET_MIN_RETRIES);
    }

    #[test]
    fn budget_starts_over_after_a_window() {
        let b = RetryBudget::default();
        assert_eq!((0..100).filter(|_| b.try_retry(0)).count(), 10);
        if let Some(w) = b.window.lock().expect("lock").as_mut() {
            w.start -= BUDGET_WINDOW;
        }
        assert_eq!((0..100).filter(|_| b.try_retry(0)).count(), 10);
    }

    #[test]
    fn policy_defaults_are_haproxys() {
        let p = Policy::of(&config::Options::default());
        assert_eq!(p.retries, 3);
        assert_eq!(p.on, RetryOn::DEFAULT);
        assert!(p.on.contains(RetryOn::REFUSED_STREAM) && p.on.contains(RetryOn::CONN_FAILURE));
        assert!(!p.redispatch);
        assert_eq!(p.buffer, 64 << 10);
        assert_eq!(p.record_limit(), 64 << 10);
        // Without HTTP/2 servers nothing can be refused: conn-failure only,
        // and nothing is recorded.
        let h1 = p.for_servers(false);
        assert_eq!(h1.on, RetryOn::CONN_FAILURE);
        assert_eq!(h1.record_limit(), 0);
        // An explicit setting is kept as it is.
        let explicit = config::Options {
            retry_on: Some(RetryOn(
                RetryOn::CONN_FAILURE.0 | RetryOn::REFUSED_STREAM.0 | RetryOn::UNAVAILABLE.0,
            )),
            ..Default::default()
        };
        let e = Policy::of(&explicit).for_servers(false);
        assert!(e.on.contains(RetryOn::REFUSED_STREAM));
        let none = config::Options {
            retry_on: Some(RetryOn::NONE),
            ..Default::default()
        };
        assert_eq!(Policy::of(&none).retries, 0);
    }
}
