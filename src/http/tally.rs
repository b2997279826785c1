//! What one HTTP request adds to the counters ([`crate::observe::stats`]):
//! collected as the request goes through the proxy and added once, at the
//! end of the response (or when the client goes away), like the access-log
//! line. The request body is counted as it passes ([`CountedBody`]); gRPC
//! messages are counted from their 5-byte prefixes, payloads are not copied.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backend::{Backend, Server};
use crate::observe::stats::{
    code_index, termination_index, BackendStats, FrontendStats, MessageCounter, MethodStats,
    ServerStats, Traffic,
};

/// The client's request body, counted as it is read.
pub struct CountedBody {
    inner: Incoming,
    count: Arc<ReqCount>,
    /// gRPC calls: the message framing seen so far.
    msgs: Option<MessageCounter>,
}

/// Request bytes and gRPC messages read from the client so far.
#[derive(Debug, Default)]
pub struct ReqCount {
    bytes: AtomicU64,
    msgs: AtomicU64,
}

impl CountedBody {
    pub fn new(inner: Incoming, count: Arc<ReqCount>, grpc: bool) -> Self {
        CountedBody {
            inner,
            count,
            msgs: grpc.then(MessageCounter::default),
        }
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled {
            if let Some(d) = f.data_ref() {
                this.count
                    .bytes
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
                if let Some(m) = this.msgs.as_mut() {
                    let before = m.messages;
                    m.feed(d);
                    if m.messages != before {
                        this.count.msgs.store(m.messages, Ordering::Relaxed);
                    }
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request's contribution to the counters, added by [`Tally::finish`].
pub struct Tally {
    started: Instant,
    fe: Arc<FrontendStats>,
    be: Option<Arc<BackendStats>>,
    srv: Option<Arc<ServerStats>>,
    method: Option<Arc<MethodStats>>,
    req: Arc<ReqCount>,
    status: u16,
    grpc_status: Option<u32>,
    term: [u8; 2],
    /// The response came from the server (not made by weir).
    from_server: bool,
    bytes_out: u64,
    /// gRPC responses: messages sent to the client.
    out: Option<MessageCounter>,
    done: bool,
    /// The request's stick counters: its error responses count in them.
    track: Option<Arc<crate::stick::ReqTrack>>,
}

impl Tally {
    /// A request of frontend `fe` starts; `grpc`: a gRPC call.
    pub fn start(fe: &Arc<FrontendStats>, grpc: bool) -> Self {
        fe.traffic.requests.fetch_add(1, Ordering::Relaxed);
        Tally {
            started: Instant::now(),
            fe: fe.clone(),
            be: None,
            srv: None,
            method: None,
            req: Arc::default(),
            status: 0,
            grpc_status: None,
            term: *b"--",
            from_server: false,
            bytes_out: 0,
            out: grpc.then(MessageCounter::default),
            done: false,
            track: None,
        }
    }

    /// The request's stick counters (`http_err_cnt`, `http_err_rate` count
    /// its response when it is an error).
    pub fn track(&mut self, t: Arc<crate::stick::ReqTrack>) {
        self.track = Some(t);
    }

    /// A gRPC call answered before a backend was chosen (denied, not
    /// routable): counted in the frontend's own method table.
    pub fn no_backend(&mut self, fe: &str, path: &str) {
        if self.out.is_some() && self.method.is_none() {
            let m = self.fe.grpc.method(fe, path);
            m.active.fetch_add(1, Ordering::Relaxed);
            self.method = Some(m);
        }
    }

    /// The client's body, counted into this request.
    pub fn count_body(&self, body: Incoming) -> CountedBody {
        CountedBody::new(body, self.req.clone(), self.out.is_some())
    }

    /// The backend the request goes to (`path`: the gRPC method's path).
    pub fn backend(&mut self, b: &Backend, frontend: &str, path: &str) {
        let t = &b.stats.traffic;
        t.sessions.fetch_add(1, Ordering::Relaxed);
        t.requests.fetch_add(1, Ordering::Relaxed);
        if self.out.is_some() {
            let m = b.stats.grpc.method(frontend, path);
            m.active.fetch_add(1, Ordering::Relaxed);
            self.method = Some(m);
        }
        self.be = Some(b.stats.clone());
    }

    /// The server that answers (the last one tried).
    pub fn server(&mut self, s: &Server) {
        if self
            .srv
            .as_ref()
            .is_some_and(|cur| Arc::ptr_eq(cur, &s.stats))
        {
            return;
        }
        let t = &s.stats.traffic;
        t.sessions.fetch_add(1, Ordering::Relaxed);
        t.requests.fetch_add(1, Ordering::Relaxed);
        self.srv = Some(s.stats.clone());
    }

    /// Attempts tried again; `redispatched`: some went to another server.
    pub fn retries(&mut self, n: u32, redispatched: bool) {
        if n == 0 {
            return;
        }
        for t in self.traffics() {
            t.retries.fetch_add(n as u64, Ordering::Relaxed);
            if redispatched {
                t.redispatches.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A connection to a server failed.
    pub fn conn_error(&self, s: &Server) {
        s.stats.traffic.conn_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &self.be {
            b.traffic.conn_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A server failed or aborted its response.
    pub fn resp_error(&self) {
        for t in [
            self.be.as_deref().map(|b| &b.traffic),
            self.srv.as_deref().map(|s| &s.traffic),
        ]
        .into_iter()
        .flatten()
        {
            t.resp_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Denied by an `http-request` rule (of the backend once it is chosen).
    pub fn denied_request(&self) {
        self.fe.traffic.denied_req.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &self.be {
            b.traffic.denied_req.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Denied by an `http-response` rule.
    pub fn denied_response(&self) {
        self.fe.traffic.denied_resp.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &self.be {
            b.traffic.denied_resp.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_grpc(&self) -> bool {
        self.out.is_some()
    }

    /// An `http-request` rule answered: a deny (`PR`) counts as denied.
    pub fn rule_reply(&self, termination: &str) {
        if termination.starts_with('P') {
            self.denied_request();
        }
    }

    /// A request that could not be routed or was malformed.
    pub fn request_error(&self) {
        self.fe.traffic.req_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The response head as sent to the client; `from_server`: the
    /// server's answer, not one weir made.
    pub fn response(&mut self, status: u16, headers: &HeaderMap, from_server: bool) {
        self.status = status;
        self.from_server = from_server;
        if let Some(c) = crate::http::rules::grpc_status(headers) {
            self.grpc_status = Some(c);
        }
    }

    pub fn termination(&mut self, two: &str) {
        if let [a, b] = two.as_bytes() {
            self.term = [*a, *b];
        }
    }

    /// Response body bytes on their way to the client.
    pub fn data(&mut self, d: &[u8]) {
        self.bytes_out += d.len() as u64;
        if let Some(m) = self.out.as_mut() {
            m.feed(d);
        }
    }

    pub fn trailers(&mut self, t: &HeaderMap) {
        if let Some(c) = crate::http::rules::grpc_status(t) {
            self.grpc_status = Some(c);
        }
    }

    fn traffics(&self) -> impl Iterator<Item = &Traffic> {
        [
            Some(&self.fe.traffic),
            self.be.as_deref().map(|b| &b.traffic),
            self.srv.as_deref().map(|s| &s.traffic),
        ]
        .into_iter()
        .flatten()
    }

    /// Adds this request to the counters (once).
    pub fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        // Looked up once for the three counters; no atomic adds of zero.
        let bytes_in = self.req.bytes.load(Ordering::Relaxed);
        let term = termination_index(self.term);
        for t in self.traffics() {
            if bytes_in > 0 {
                t.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
            }
            if self.bytes_out > 0 {
                t.bytes_out.fetch_add(self.bytes_out, Ordering::Relaxed);
            }
            if let Some(i) = term {
                t.termination_at(i);
            }
        }
        // Responses by class: the frontend and backend count every answer
        // (weir's own errors too, as HAProxy does); a server only its own.
        self.fe.traffic.response(self.status);
        if let Some(b) = &self.be {
            b.traffic.response(self.status);
        }
        if let (Some(s), true) = (&self.srv, self.from_server) {
            s.traffic.response(self.status);
        }
        // A server failing mid-response (errors before the response head
        // were counted when they happened).
        if matches!(self.term, [b'S' | b's', b'D']) {
            self.resp_error();
        }
        if let Some(t) = self.track.take() {
            t.response(self.status, self.grpc_status);
        }
        let Some(out) = self.out.as_ref() else { return };
        // The status the client got: a client that went away cancelled;
        // a stream that ended without one is UNKNOWN to gRPC clients.
        let code = match self.grpc_status {
            Some(c) => c,
            None if self.term[0] == b'C' => 1,
            None => 2,
        };
        if let Some(s) = &self.srv {
            s.grpc_codes[code_index(code)].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(m) = &self.method {
            m.active.fetch_sub(1, Ordering::Relaxed);
            let msgs_in = self.req.msgs.load(Ordering::Relaxed);
            m.finish(code, self.started.elapsed(), msgs_in, out.messages);
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before the end of the response: the client left.
            if self.term == *b"--" {
                self.term = *b"CD";
            }
            self.finish();
        }
    }
}
