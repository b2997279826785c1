//! weir-echo: a fast, controllable gRPC echo backend for weir's tests and
//! benchmarks.
//!
//! Every request tells the server how to behave (see `proto/echo.proto`):
//! which status to end with, how long to sleep, how many replies of what
//! size to send. The server also reflects what it saw of the request:
//!
//! * response metadata `x-echo-server: <id>` on every call;
//! * every request metadata entry whose key starts with `x-` comes back
//!   prefixed with `echo-` (`x-foo` -> `echo-x-foo`, `x-data-bin` ->
//!   `echo-x-data-bin`);
//! * `x-seen-authority`, `x-seen-te`, `x-seen-content-type` and
//!   `x-seen-grpc-timeout`: the request's URI authority and its `te` /
//!   `content-type` / `grpc-timeout` headers as they reached the server (captured by a tower layer before tonic sees the request);
//! * errors carry `x-trailer-echo: <id>` in their trailers.
//!
//! [`Stats`] counts calls, active calls, cancellations and received bytes,
//! and lets a test wait for a condition without polling loops.
//!
//! Generated payloads (`reply_size > 0`) are slices of one shared buffer
//! holding the pattern `byte[i] = i % 251` (see [`payload_of_size`]), so
//! a test can check that a proxy did not corrupt or reorder them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{Ascii, Binary, KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status, Streaming};
use tower::util::MapRequestLayer;

/// Generated protobuf and gRPC types for `weir.echo`.
mod kill;

pub mod pb {
    tonic::include_proto!("weir.echo");
}

use kill::{KillSwitch, KillableIo};
use pb::echo_server::{Echo, EchoServer};
use pb::{EchoReply, EchoRequest};

/// Largest message the server accepts or sends (tonic's default is 4 MiB).
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Size of the shared pattern buffer generated payloads are sliced from.
const SHARED_PAYLOAD: usize = 4 << 20;

const X_ECHO_SERVER: &str = "x-echo-server";
const X_TRAILER_ECHO: &str = "x-trailer-echo";
const X_SEEN_AUTHORITY: &str = "x-seen-authority";
const X_SEEN_TE: &str = "x-seen-te";
const X_SEEN_CONTENT_TYPE: &str = "x-seen-content-type";
const X_SEEN_GRPC_TIMEOUT: &str = "x-seen-grpc-timeout";

/// A payload of `n` bytes with the pattern `byte[i] = i % 251`. Up to 4 MiB
/// it is a slice of one process-wide buffer (no allocation, no copy).
pub fn payload_of_size(n: usize) -> Bytes {
    fn pattern(n: usize) -> Bytes {
        (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
    }
    static SHARED: OnceLock<Bytes> = OnceLock::new();
    if n <= SHARED_PAYLOAD {
        SHARED.get_or_init(|| pattern(SHARED_PAYLOAD)).slice(..n)
    } else {
        pattern(n)
    }
}

/// Counters kept by an [`EchoService`]. All fields are plain atomics; use
/// [`Stats::wait_until`] (or its shortcuts) to wait for a condition.
#[derive(Debug, Default)]
pub struct Stats {
    /// Unary calls started.
    pub unary_calls: AtomicU64,
    /// ClientStream calls started.
    pub client_stream_calls: AtomicU64,
    /// ServerStream calls started.
    pub server_stream_calls: AtomicU64,
    /// Bidi calls started.
    pub bidi_calls: AtomicU64,
    /// Calls in progress (a streaming call lasts until its response stream
    /// ends or is dropped).
    pub active_streams: AtomicU64,
    /// Calls whose handler or response stream was dropped before it
    /// finished, or whose request stream broke: the client (or a proxy)
    /// cancelled or reset it, or the server was killed under it.
    pub cancelled: AtomicU64,
    /// Request payload bytes received.
    pub bytes_received: AtomicU64,
    waiters: AtomicUsize,
    changed: Notify,
}

impl Stats {
    /// Calls started, all methods together.
    pub fn calls(&self) -> u64 {
        self.unary_calls.load(Ordering::SeqCst)
            + self.client_stream_calls.load(Ordering::SeqCst)
            + self.server_stream_calls.load(Ordering::SeqCst)
            + self.bidi_calls.load(Ordering::SeqCst)
    }

    /// Current value of [`Stats::active_streams`].
    pub fn active(&self) -> u64 {
        self.active_streams.load(Ordering::SeqCst)
    }

    /// Current value of [`Stats::cancelled`].
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Waits until `cond` holds. It is re-checked whenever a call starts,
    /// ends or is cancelled. Wrap it in `tokio::time::timeout` in tests.
    pub async fn wait_until(&self, cond: impl Fn(&Stats) -> bool) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = WaiterGuard(&self.waiters);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until at least `n` calls were cancelled.
    pub async fn wait_cancelled(&self, n: u64) {
        self.wait_until(|s| s.cancelled() >= n).await
    }

    /// Waits until at least `n` calls (any method) were started.
    pub async fn wait_calls(&self, n: u64) {
        self.wait_until(|s| s.calls() >= n).await
    }

    /// Waits until no call is in progress.
    pub async fn wait_idle(&self) {
        self.wait_until(|s| s.active() == 0).await
    }

    fn changed(&self) {
        // Notify takes a lock; skip it on the hot path when nobody waits.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    fn start(self: &Arc<Self>, method: &AtomicU64) -> CallGuard {
        method.fetch_add(1, Ordering::SeqCst);
        self.active_streams.fetch_add(1, Ordering::SeqCst);
        self.changed();
        CallGuard {
            stats: Arc::clone(self),
            finished: false,
        }
    }
}

struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tracks one call: counts it as cancelled if dropped before `finish`.
struct CallGuard {
    stats: Arc<Stats>,
    finished: bool,
}

impl CallGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.stats.active_streams.fetch_sub(1, Ordering::SeqCst);
        self.stats.changed();
    }
}

/// The echo service. Cheap to clone (tonic clones it per connection).
#[derive(Debug, Clone)]
pub struct EchoService {
    id: String,
    stats: Arc<Stats>,
    id_value: MetadataValue<Ascii>,
}

impl EchoService {
    /// A service answering as `id` and counting into `stats`. Fails if `id`
    /// is not a valid header value.
    pub fn new(id: &str, stats: Arc<Stats>) -> io::Result<Self> {
        let id_value = MetadataValue::try_from(id)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            id: id.to_owned(),
            stats,
            id_value,
        })
    }

    /// The server id (`server` field of replies, `x-echo-server` metadata).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The counters this service updates.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Response metadata for a call: `x-echo-server`, the `x-seen-*`
    /// entries, and every other `x-` request entry echoed as `echo-x-...`.
    fn response_metadata(&self, request: &MetadataMap) -> MetadataMap {
        let mut md = MetadataMap::with_capacity(1 + request.len());
        md.insert(X_ECHO_SERVER, self.id_value.clone());
        for entry in request.iter() {
            match entry {
                KeyAndValueRef::Ascii(key, value) => {
                    let name = key.as_str();
                    if name.starts_with("x-seen-") {
                        md.append(key.clone(), value.clone());
                    } else if name.starts_with("x-") {
                        if let Ok(key) = MetadataKey::<Ascii>::from_bytes(&echo_key(name)) {
                            md.append(key, value.clone());
                        }
                    }
                }
                KeyAndValueRef::Binary(key, value) => {
                    if key.as_str().starts_with("x-") {
                        let echoed = echo_key(key.as_str());
                        if let Ok(key) = MetadataKey::<Binary>::from_bytes(&echoed) {
                            md.append_bin(key, value.clone());
                        }
                    }
                }
            }
        }
        md
    }

    /// The error a request asks for, if any, carrying `metadata` plus
    /// `x-trailer-echo`.
    fn requested_status(&self, req: &EchoRequest, metadata: &MetadataMap) -> Option<Status> {
        if req.status_code == 0 {
            return None;
        }
        let mut metadata = metadata.clone();
        metadata.insert(X_TRAILER_ECHO, self.id_value.clone());
        Some(Status::with_details_and_metadata(
            Code::from(req.status_code),
            req.status_message.clone(),
            req.status_details.clone(),
            metadata,
        ))
    }
}

/// `echo-<name>`, as the bytes of a metadata key.
fn echo_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + name.len());
    key.extend_from_slice(b"echo-");
    key.extend_from_slice(name.as_bytes());
    key
}

fn reply_payload(request_payload: &Bytes, reply_size: u32) -> Bytes {
    if reply_size == 0 {
        request_payload.clone()
    } else {
        payload_of_size(reply_size as usize)
    }
}

fn with_metadata<T>(message: T, metadata: MetadataMap) -> Response<T> {
    let mut response = Response::new(message);
    *response.metadata_mut() = metadata;
    response
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let mut guard = self.stats.start(&self.stats.unary_calls);
        let metadata = self.response_metadata(request.metadata());
        let req = request.into_inner();
        self.stats
            .bytes_received
            .fetch_add(req.payload.len() as u64, Ordering::Relaxed);
        if req.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(req.sleep_ms))).await;
        }
        guard.finish();
        if let Some(status) = self.requested_status(&req, &metadata) {
            return Err(status);
        }
        let reply = EchoReply {
            payload: reply_payload(&req.payload, req.reply_size),
            server: self.id.clone(),
            seq: 0,
            received_bytes: req.payload.len() as u64,
        };
        Ok(with_metadata(reply, metadata))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut guard = self.stats.start(&self.stats.client_stream_calls);
        let metadata = self.response_metadata(request.metadata());
        let mut inbound = request.into_inner();
        let mut count = 0u64;
        let mut received = 0u64;
        let mut last = None;
        // An inbound error leaves the guard unfinished: counted as cancelled.
        while let Some(req) = inbound.message().await? {
            let len = req.payload.len() as u64;
            self.stats.bytes_received.fetch_add(len, Ordering::Relaxed);
            count += 1;
            received += len;
            last = Some(req);
        }
        if let Some(req) = &last {
            if req.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(req.sleep_ms))).await;
            }
        }
        guard.finish();
        let (payload, reply_size) = match &last {
            Some(req) => {
                if let Some(status) = self.requested_status(req, &metadata) {
                    return Err(status);
                }
                (req.payload.clone(), req.reply_size)
            }
            None => (Bytes::new(), 0),
        };
        let reply = EchoReply {
            payload: reply_payload(&payload, reply_size),
            server: self.id.clone(),
            seq: count,
            received_bytes: received,
        };
        Ok(with_metadata(reply, metadata))
    }

    type ServerStreamStream = ServerStreamReplies;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let guard = self.stats.start(&self.stats.server_stream_calls);
        let metadata = self.response_metadata(request.metadata());
        let req = request.into_inner();
        self.stats
            .bytes_received
            .fetch_add(req.payload.len() as u64, Ordering::Relaxed);
        let interval = Duration::from_millis(u64::from(req.sleep_ms));
        let replies = ServerStreamReplies {
            server: self.id.clone(),
            payload: reply_payload(&req.payload, req.reply_size),
            remaining: req.reply_count,
            seq: 0,
            interval,
            sleep: (req.sleep_ms > 0).then(|| Box::pin(tokio::time::sleep(interval))),
            waiting: false,
            end: self.requested_status(&req, &MetadataMap::new()),
            done: false,
            guard,
        };
        Ok(with_metadata(replies, metadata))
    }

    type BidiStream = BidiReplies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let guard = self.stats.start(&self.stats.bidi_calls);
        let metadata = self.response_metadata(request.metadata());
        let replies = BidiReplies {
            service: self.clone(),
            inbound: request.into_inner(),
            seq: 0,
            sleep: None,
            pending: None,
            done: false,
            guard,
        };
        Ok(with_metadata(replies, metadata))
    }
}

/// Response stream of `ServerStream`: `reply_count` replies sharing one
/// payload buffer, `sleep_ms` apart, then the requested status.
pub struct ServerStreamReplies {
    server: String,
    payload: Bytes,
    remaining: u32,
    seq: u64,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    end: Option<Status>,
    done: bool,
    guard: CallGuard,
}

impl Stream for ServerStreamReplies {
    type Item = Result<EchoReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.waiting {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            this.waiting = false;
        }
        if this.remaining > 0 {
            this.remaining -= 1;
            let reply = EchoReply {
                payload: this.payload.clone(),
                server: this.server.clone(),
                seq: this.seq,
                received_bytes: 0,
            };
            this.seq += 1;
            if this.remaining > 0 {
                if let Some(sleep) = this.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + this.interval);
                    this.waiting = true;
                }
            }
            return Poll::Ready(Some(Ok(reply)));
        }
        this.done = true;
        this.guard.finish();
        Poll::Ready(this.end.take().map(Err))
    }
}

/// Response stream of `Bidi`: one reply per request (after that request's
/// `sleep_ms`); a request with a status code ends the call with it.
pub struct BidiReplies {
    service: EchoService,
    inbound: Streaming<EchoRequest>,
    seq: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    pending: Option<EchoReply>,
    done: bool,
    guard: CallGuard,
}

impl Stream for BidiReplies {
    type Item = Result<EchoReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.pending.is_some() {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            return Poll::Ready(this.pending.take().map(Ok));
        }
        let req = match Pin::new(&mut this.inbound).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                this.guard.finish();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(status))) => {
                // The request stream broke: counted as cancelled.
                this.done = true;
                return Poll::Ready(Some(Err(status)));
            }
            Poll::Ready(Some(Ok(req))) => req,
        };
        let stats = &this.service.stats;
        stats
            .bytes_received
            .fetch_add(req.payload.len() as u64, Ordering::Relaxed);
        if let Some(status) = this.service.requested_status(&req, &MetadataMap::new()) {
            this.done = true;
            this.guard.finish();
            return Poll::Ready(Some(Err(status)));
        }
        let reply = EchoReply {
            payload: reply_payload(&req.payload, req.reply_size),
            server: this.service.id.clone(),
            seq: this.seq,
            received_bytes: req.payload.len() as u64,
        };
        this.seq += 1;
        if req.sleep_ms == 0 {
            return Poll::Ready(Some(Ok(reply)));
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(req.sleep_ms));
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        sleep.as_mut().reset(deadline);
        if sleep.as_mut().poll(cx).is_pending() {
            this.pending = Some(reply);
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(reply)))
    }
}

/// Copies what tonic does not expose (the URI authority, `te`,
/// `content-type` and `grpc-timeout`) into `x-seen-*` request headers, overwriting any a
/// client sent itself.
fn record_seen(mut req: http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> {
    let authority = match req.uri().authority() {
        Some(authority) => http::HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    };
    let te = req.headers().get(http::header::TE).cloned();
    let content_type = req.headers().get(http::header::CONTENT_TYPE).cloned();
    let grpc_timeout = req.headers().get("grpc-timeout").cloned();
    let headers = req.headers_mut();
    for (name, value) in [
        (X_SEEN_AUTHORITY, authority),
        (X_SEEN_TE, te),
        (X_SEEN_CONTENT_TYPE, content_type),
        (X_SEEN_GRPC_TIMEOUT, grpc_timeout),
    ] {
        let name = http::HeaderName::from_static(name);
        match value {
            Some(value) => {
                headers.insert(name, value);
            }
            None => {
                headers.remove(name);
            }
        }
    }
    req
}

/// Options for [`EchoHandle::spawn_with`].
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS the server announces
    /// (`None`: hyper's default, effectively unlimited).
    pub max_concurrent_streams: Option<u32>,
}

/// A running echo server (Echo + grpc.health.v1). Dropping it kills the
/// server: the listener closes and every connection is cut at once.
pub struct EchoHandle {
    /// The bound address (the real port when spawned on port 0).
    pub addr: SocketAddr,
    /// The service's counters.
    pub stats: Arc<Stats>,
    /// Health of "" and "weir.echo.Echo", both SERVING at start; flip them
    /// to test health checks.
    pub health: tonic_health::server::HealthReporter,
    shutdown: Option<oneshot::Sender<()>>,
    kill: Arc<KillSwitch>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EchoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoHandle")
            .field("addr", &self.addr)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EchoHandle {
    /// Binds `addr` (port 0 picks a free port) and serves as `id`.
    pub async fn spawn(addr: SocketAddr, id: &str) -> io::Result<EchoHandle> {
        Self::spawn_with(addr, id, EchoOptions::default()).await
    }

    /// Like [`EchoHandle::spawn`], with options.
    pub async fn spawn_with(
        addr: SocketAddr,
        id: &str,
        options: EchoOptions,
    ) -> io::Result<EchoHandle> {
        let stats = Arc::new(Stats::default());
        let service = EchoService::new(id, Arc::clone(&stats))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoServer<EchoService>>().await;

        let kill = Arc::new(KillSwitch::new());
        let conn_kill = Arc::clone(&kill);
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .map(move |conn| conn.map(|io| KillableIo::new(io, &conn_kill)));

        let echo = EchoServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let seen: fn(http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> =
            record_seen;
        let mut server = Server::builder()
            .max_concurrent_streams(options.max_concurrent_streams)
            .layer(MapRequestLayer::new(seen));
        let router = server.add_service(health_service).add_service(echo);

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // A dropped sender also means "stop".
            let signal = async {
                let _ = shutdown_rx.await;
            };
            let _ = router.serve_with_incoming_shutdown(incoming, signal).await;
        });

        Ok(EchoHandle {
            addr,
            stats,
            health,
            shutdown: Some(shutdown_tx),
            kill,
            task: Some(task),
        })
    }

    /// `http://<addr>`, ready for a tonic `Endpoint`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: closes the listener, sends GOAWAY and waits until
    /// every in-flight call has finished.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Abrupt stop, like a crashed process: closes the listener and cuts
    /// every connection at once (in-flight calls see a reset / EOF); waits
    /// until the server task is gone.
    pub async fn kill(mut self) {
        self.kill.kill();
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EchoHandle {
    fn drop(&mut self) {
        self.kill.kill();
        self.shutdown.take();
    }
}
