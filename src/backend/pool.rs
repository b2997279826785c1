//! Pooled, multiplexed HTTP/2 connections to one server.
//!
//! A call takes a stream slot on a connection that still has room under the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS`; when every connection is full a
//! new one is opened instead of queueing behind a full one. Concurrent callers
//! that all find the pool full share one connect attempt, so a burst does not
//! open a connection per call and a dead server costs one connect, not one
//! per waiting call.
//!
//! Each worker thread uses the connections it opened itself: their frames
//! are read and written by its own runtime, so a call never waits for
//! another thread to move its bytes, and threads do not contend on one
//! connection's state (HAProxy's threads keep their own server connections
//! too). With `nbthread N` a busy server so gets up to N connections.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::net::TcpStream;

use crate::error::{ErrorKind, ProxyError};

/// Flow-control windows we advertise to servers (per stream / per connection).
const STREAM_WINDOW: u32 = 1 << 20;
const CONN_WINDOW: u32 = 8 << 20;

/// The stream limit we assume until the server's SETTINGS arrive. It is an
/// unlikely value on purpose: when `max_concurrent_send_streams()` moves off
/// it, the server's SETTINGS have been applied (a server that sends none
/// gets "unlimited", per RFC 9113).
const UNSET_MAX_STREAMS: usize = 99_991;

type ConnectResult = Result<Arc<H2Conn>, Arc<ProxyError>>;

/// One upstream HTTP/2 connection.
pub struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    inflight: AtomicUsize,
    closed: Arc<AtomicBool>,
    /// The worker that opened it ([`worker_key`]), whose runtime drives its I/O.
    owner: usize,
}

impl H2Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the connection unusable for new calls (GOAWAY, send error).
    pub fn retire(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A stream slot on one connection; frees the slot when dropped.
pub struct StreamLease {
    conn: Arc<H2Conn>,
}

impl StreamLease {
    /// A handle to send one request on the leased connection.
    pub fn sender(&self) -> h2::client::SendRequest<Bytes> {
        self.conn.send.clone()
    }

    pub fn retire_conn(&self) {
        self.conn.retire();
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.conn.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The HTTP/2 connections to one server.
pub struct H2Pool {
    addr: SocketAddr,
    tls: Option<Arc<UpstreamTls>>,
    /// `h2-keepalive`: PINGs on idle connections detect dead servers.
    keepalive: Option<crate::config::H2Keepalive>,
    conns: Mutex<Vec<Arc<H2Conn>>>,
    /// Per worker, the connect attempt its callers share.
    connecting: Mutex<Vec<(usize, Shared<BoxFuture<'static, ConnectResult>>)>>,
    opened: AtomicU64,
}

impl H2Pool {
    pub fn new(addr: SocketAddr, tls: Option<Arc<UpstreamTls>>) -> Self {
        H2Pool {
            addr,
            tls,
            keepalive: None,
            conns: Mutex::new(Vec::new()),
            connecting: Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
        }
    }

    /// With `h2-keepalive`: idle connections are PINGed every interval and
    /// dropped when a PING goes unanswered for the timeout.
    pub fn with_keepalive(mut self, k: Option<crate::config::H2Keepalive>) -> Self {
        self.keepalive = k;
        self
    }

    /// Connections opened since start (for tests and stats).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Connections open now (for stats and metrics).
    pub fn open_connections(&self) -> usize {
        lock(&self.conns).iter().filter(|c| !c.is_closed()).count()
    }

    /// A stream slot on a connection with room, opening one if needed.
    pub async fn acquire(
        &self,
        connect_timeout: Option<Duration>,
    ) -> Result<StreamLease, ProxyError> {
        // Bounded: each round either finds room, opens a connection or fails.
        for _ in 0..8 {
            if let Some(lease) = self.try_acquire() {
                return Ok(lease);
            }
            let fut = self.connect_shared(connect_timeout);
            match fut.await {
                Ok(conn) => {
                    self.register(&conn);
                    if let Some(lease) = take_slot(&conn) {
                        return Ok(lease);
                    }
                    // Others took every slot of the new connection: go round.
                }
                Err(e) => return Err(ProxyError::new(e.kind, e.message.clone())),
            }
        }
        Err(ProxyError::new(
            ErrorKind::UpstreamProtocol,
            format!("no stream slot available on server {}", self.addr),
        ))
    }

    /// Whether this worker has an open connection in the pool (its next
    /// call will most likely not have to connect).
    pub fn is_connected(&self) -> bool {
        let me = worker_key();
        lock(&self.conns)
            .iter()
            .any(|c| c.owner == me && !c.is_closed())
    }

    fn try_acquire(&self) -> Option<StreamLease> {
        let me = worker_key();
        let mut conns = lock(&self.conns);
        conns.retain(|c| !c.is_closed());
        conns.iter().filter(|c| c.owner == me).find_map(take_slot)
    }

    fn connect_shared(
        &self,
        timeout: Option<Duration>,
    ) -> Shared<BoxFuture<'static, ConnectResult>> {
        let me = worker_key();
        let mut attempts = lock(&self.connecting);
        // Finished attempts (of any worker) are done with.
        attempts.retain(|(_, f)| f.peek().is_none());
        if let Some((_, f)) = attempts.iter().find(|(t, _)| *t == me) {
            return f.clone();
        }
        let addr = self.addr;
        let tls = self.tls.clone();
        let keepalive = self.keepalive;
        let fut = async move {
            connect(addr, tls, keepalive, timeout, me)
                .await
                .map_err(Arc::new)
        }
        .boxed()
        .shared();
        attempts.push((me, fut.clone()));
        fut
    }

    /// Adds a freshly opened connection to the pool (idempotent).
    fn register(&self, conn: &Arc<H2Conn>) {
        let mut conns = lock(&self.conns);
        if !conns.iter().any(|c| Arc::ptr_eq(c, conn)) {
            conns.push(conn.clone());
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn take_slot(conn: &Arc<H2Conn>) -> Option<StreamLease> {
    if conn.is_closed() {
        return None;
    }
    let max = conn.send.current_max_send_streams();
    let mut cur = conn.inflight.load(Ordering::Acquire);
    loop {
        if cur >= max {
            return None;
        }
        match conn
            .inflight
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(StreamLease { conn: conn.clone() }),
            Err(now) => cur = now,
        }
    }
}

/// Which worker a call runs on, as a small number. Each thread running a
/// current-thread runtime (weir's `nbthread` workers) gets its own, given
/// at its first call; the threads of a multi-thread runtime all share 0,
/// since their tasks move from thread to thread (so there the pools behave
/// as one).
pub(crate) fn worker_key() -> usize {
    use tokio::runtime::{Handle, RuntimeFlavor};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    thread_local!(static KEY: Cell<usize> = const { Cell::new(usize::MAX) });
    KEY.with(|key| {
        if key.get() != usize::MAX {
            return key.get();
        }
        let Ok(rt) = Handle::try_current() else {
            return 0;
        };
        let k = match rt.runtime_flavor() {
            RuntimeFlavor::CurrentThread => NEXT.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        key.set(k);
        k
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// TLS to a server: the compiled settings and the name to present and verify.
pub struct UpstreamTls {
    pub tls: crate::tls::ServerTls,
    pub name: String,
}

impl UpstreamTls {
    /// Runs the TLS handshake on `tcp`; `want` is the ALPN protocol the
    /// caller is about to speak (a server that picks another one fails).
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        want: &[u8],
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProxyError> {
        let (stream, alpn) = self
            .tls
            .connect(tcp, &self.name)
            .await
            .map_err(|e| ProxyError::new(ErrorKind::ConnectFailed, format!("{addr}: {e}")))?;
        if let Some(p) = alpn {
            if p != want {
                return Err(ProxyError::new(
                    ErrorKind::ConnectFailed,
                    format!(
                        "{addr}: TLS ALPN chose '{}', weir needs '{}'",
                        String::from_utf8_lossy(&p),
                        String::from_utf8_lossy(want)
                    ),
                ));
            }
        }
        Ok(stream)
    }
}

/// Opens a TCP connection (and TLS when configured) and runs the HTTP/2
/// handshake, bounded by `timeout`.
async fn connect(
    addr: SocketAddr,
    tls: Option<Arc<UpstreamTls>>,
    keepalive: Option<crate::config::H2Keepalive>,
    timeout: Option<Duration>,
    owner: usize,
) -> Result<Arc<H2Conn>, ProxyError> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            ProxyError::new(
                ErrorKind::ConnectFailed,
                format!("connection to {addr} failed: {e}"),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        match tls {
            Some(t) => {
                let io = t.handshake(tcp, addr, b"h2").await?;
                h2_handshake(io, addr, keepalive, owner).await
            }
            None => h2_handshake(tcp, addr, keepalive, owner).await,
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, attempt).await.unwrap_or_else(|_| {
            Err(ProxyError::new(
                ErrorKind::ConnectTimeout,
                format!("connection to {addr} timed out after {}ms", t.as_millis()),
            ))
        }),
        None => attempt.await,
    }
}

/// `h2-keepalive`: PINGs the server every interval; resolves (with the
/// reason) when one is not answered in time. Never resolves without it.
async fn keep_alive(ping: Option<(crate::config::H2Keepalive, h2::PingPong)>) -> String {
    let Some((k, mut pp)) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(k.interval).await;
        if let Err(e) = pp.send_ping(h2::Ping::opaque()) {
            return format!("PING failed: {e}");
        }
        let pong = std::future::poll_fn(|cx| pp.poll_pong(cx));
        match tokio::time::timeout(k.timeout, pong).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("PING failed: {e}"),
            Err(_) => {
                return format!(
                    "no PING answer within {}ms (h2-keepalive)",
                    k.timeout.as_millis()
                )
            }
        }
    }
}

/// The HTTP/2 client handshake on an open connection; returns once the
/// server's SETTINGS are in.
async fn h2_handshake<T>(
    io: T,
    addr: SocketAddr,
    keepalive: Option<crate::config::H2Keepalive>,
    owner: usize,
) -> Result<Arc<H2Conn>, ProxyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let (send, mut conn) = h2::client::Builder::new()
            .initial_max_send_streams(UNSET_MAX_STREAMS)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_frame_size(1 << 16)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| {
                ProxyError::new(
                    ErrorKind::UpstreamProtocol,
                    format!("HTTP/2 handshake with {addr} failed: {e}"),
                )
            })?;
        let closed = Arc::new(AtomicBool::new(false));
        let closed2 = closed.clone();
        let (settled_tx, settled_rx) = tokio::sync::oneshot::channel::<()>();
        let ping = keepalive.and_then(|k| conn.ping_pong().map(|p| (k, p)));
        tokio::spawn(async move {
            // Drive the connection; say once when the server's SETTINGS are in.
            let mut settled = Some(settled_tx);
            let drive = std::future::poll_fn(|cx| {
                let r = std::pin::Pin::new(&mut conn).poll(cx);
                if settled.is_some() && conn.max_concurrent_send_streams() != UNSET_MAX_STREAMS {
                    if let Some(tx) = settled.take() {
                        let _ = tx.send(());
                    }
                }
                r
            });
            tokio::select! {
                r = drive => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "upstream connection ended");
                    }
                }
                why = keep_alive(ping) => {
                    // Dropping the connection closes it: its calls end with
                    // UNAVAILABLE, new calls open a fresh connection.
                    tracing::warn!(%addr, "upstream connection closed: {why}");
                }
            }
            closed2.store(true, Ordering::Release);
        });
        // Use the connection only once its stream limit is known, so a burst
        // on a fresh connection never overshoots it (REFUSED_STREAM).
        settled_rx.await.map_err(|_| {
            ProxyError::new(
                ErrorKind::UpstreamProtocol,
                format!("server {addr} closed the connection before its HTTP/2 SETTINGS"),
            )
        })?;
        Ok(Arc::new(H2Conn {
            send,
            inflight: AtomicUsize::new(0),
            closed,
            owner,
        }))
    }
}
