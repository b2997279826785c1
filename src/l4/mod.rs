//! `mode tcp`: each client connection is balanced on its own and its bytes
//! are copied both ways unchanged; a half-close on one side is passed on
//! (the other side's write half is shut down and the rest still flows).
//!
//! Timeouts: `timeout connect` bounds the connect; afterwards the session is
//! closed when no byte has moved either way for `timeout tunnel` if set,
//! else the smaller of `timeout client` and `timeout server`.
//!
//! On Linux a cleartext session moves its bytes with [`splice::one_way`]:
//! through a `tune.bufsize` buffer that exists only while a direction has
//! bytes to move (an idle session holds none), or, with `option splice-*`,
//! through a kernel pipe. A TLS session (and any session elsewhere) is
//! copied by tokio's `copy_bidirectional_with_sizes`.

#[cfg(target_os = "linux")]
pub mod splice;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::error::{ErrorKind, ProxyError};
use crate::http::idle::{Activity, IdleTimer};
use crate::observe::stats::termination_index;
use crate::observe::tcplog::TcpLog;
use crate::runtime::Frontend;

const NO_ERROR: u8 = 0;
const CLIENT_ERROR: u8 = 1;
const SERVER_ERROR: u8 = 2;

/// A socket that marks activity on every byte moved and remembers which
/// side failed first.
struct Watched<'a, T> {
    io: &'a mut T,
    activity: &'a Activity,
    failed: &'a AtomicU8,
    side: u8,
    /// Bytes read from this side.
    read: u64,
}

impl<T> Watched<'_, T> {
    fn note<R>(&self, r: &Poll<std::io::Result<R>>, moved: bool) {
        match r {
            Poll::Ready(Ok(_)) if moved => self.activity.touch(),
            Poll::Ready(Err(_)) => {
                let _ = self.failed.compare_exchange(
                    NO_ERROR,
                    self.side,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.io).poll_read(cx, buf);
        let moved = buf.filled().len() - before;
        this.read += moved as u64;
        this.note(&r, moved > 0);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.io).poll_write(cx, data);
        this.note(&r, true);
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

/// A client connection `serve` can take: plain TCP or TLS.
pub trait ClientConn: AsyncRead + AsyncWrite + Unpin {
    /// The socket itself when the session is cleartext (what splice needs).
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

impl ClientConn for TcpStream {
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }
}

impl ClientConn for tokio_rustls::server::TlsStream<TcpStream> {}

/// How each direction of a cleartext session moves its bytes (request =
/// client to server): what `option splice-*` of the frontend and the
/// backend ask for, else copied through user space by
/// [`splice::one_way`], whose buffers exist only while there is data.
#[cfg(target_os = "linux")]
fn splice_plan(s: crate::config::Splice) -> (splice::How, splice::How) {
    use splice::How;
    let dir = |on: bool| match (on, s.auto) {
        (true, _) => How::Always,
        (false, true) => How::Auto,
        (false, false) => How::Copy,
    };
    (dir(s.request), dir(s.response))
}

/// Both directions of a cleartext session through [`splice::one_way`].
/// Returns (bytes client→server, bytes server→client) like
/// `copy_bidirectional`, and records the first side that failed.
#[cfg(target_os = "linux")]
async fn splice_both(
    client: &mut TcpStream,
    server: &mut TcpStream,
    plan: (splice::How, splice::How),
    activity: &Activity,
    failed: &AtomicU8,
    read: &(AtomicU64, AtomicU64),
    fe: &Frontend,
) -> std::io::Result<(u64, u64)> {
    let (cr, cw) = client.split();
    let (sr, sw) = server.split();
    let (pipes, spliced) = (&fe.pipes, &fe.stats.spliced_bytes);
    let count = |read| splice::Counters {
        read,
        spliced,
        pipes,
        bufsize: fe.bufsize,
    };
    // Both directions run until each has passed its half-close on; an
    // error on either ends the session at once (as `copy_bidirectional`).
    let mut up_fut = std::pin::pin!(splice::one_way(cr, sw, plan.0, activity, count(&read.0)));
    let mut down_fut = std::pin::pin!(splice::one_way(sr, cw, plan.1, activity, count(&read.1)));
    let (mut up, mut down) = (None, None);
    while up.is_none() || down.is_none() {
        tokio::select! {
            r = &mut up_fut, if up.is_none() => up = Some(r),
            r = &mut down_fut, if down.is_none() => down = Some(r),
        }
        let failed_one = |r: &Option<Result<(), splice::DirError>>| matches!(r, Some(Err(_)));
        if failed_one(&up) || failed_one(&down) {
            break;
        }
    }
    let mut first = None;
    for (r, src, dst) in [
        (up, CLIENT_ERROR, SERVER_ERROR),
        (down, SERVER_ERROR, CLIENT_ERROR),
    ] {
        if let Some(Err((side, e))) = r {
            let who = if side == splice::Side::Src { src } else { dst };
            let _ = failed.compare_exchange(NO_ERROR, who, Ordering::AcqRel, Ordering::Acquire);
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok((
            read.0.load(Ordering::Relaxed),
            read.1.load(Ordering::Relaxed),
        )),
    }
}

/// Runs a session's copy under its idle timer (if any) until it ends, the
/// timer fires (`None`) or weir stops (`Interrupted`).
async fn run_session<F>(
    copy: F,
    timer: Option<&mut IdleTimer>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<std::io::Result<(u64, u64)>>
where
    F: std::future::Future<Output = std::io::Result<(u64, u64)>>,
{
    // Pinned here once and passed on by reference: moved into the select's
    // branch by value, `copy` took its size three times over in this
    // future (4.6 KiB for a session with the splice loops; 2.3 KiB now).
    let copy = std::pin::pin!(copy);
    tokio::select! {
        r = async {
            match timer {
                Some(t) => t.run(copy).await,
                None => Some(copy.await),
            }
        } => r,
        _ = crate::proxy::stopping(shutdown) => Some(Err(std::io::ErrorKind::Interrupted.into())),
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Serves one tcp-mode client connection and logs it (`option tcplog`).
pub async fn serve<S>(
    mut client: S,
    peer: SocketAddr,
    local: SocketAddr,
    fe: Arc<Frontend>,
    mut shutdown: watch::Receiver<bool>,
    conn_track: Option<Arc<crate::stick::ConnTrack>>,
) where
    S: ClientConn,
{
    let accepted = SystemTime::now();
    let t0 = Instant::now();
    // `use_backend` rules: in tcp mode only connection fetches (`src`,
    // `dst`, `src_port`, ...) have something to read.
    let backend = if fe.routes.is_empty() {
        fe.backend.clone()
    } else {
        let (parts, ()) = http::Request::new(()).into_parts();
        // What `tcp-request connection track-sc*` tracked, for `sc_*`
        // fetches in the conditions.
        let track = conn_track
            .as_deref()
            .map(|c| crate::stick::ReqTrack::view_conn(fe.tables.clone(), c));
        let env = crate::http::rules::Env::connection(&fe, peer, local, track.as_ref());
        crate::http::rules::route(&fe, &parts, &env).ok()
    };
    let Some(backend) = backend else {
        fe.stats.traffic.req_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    backend
        .stats
        .traffic
        .sessions
        .fetch_add(1, Ordering::Relaxed);
    let mut server_stats = None;
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut server_name = "<NOSRV>".to_string();
    let (mut tw, mut tc, mut bytes) = (-1i64, -1i64, 0u64);
    let mut srvconn = 0;

    let term: &str = 'session: {
        let slot = match backend.take(&backend.pick_ctx(peer.ip(), None)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(frontend = %fe.name, %peer, error = %e, "no server for tcp connection");
                break 'session e.kind.reply().termination;
            }
        };
        tw = ms(t0.elapsed());
        server_name = slot.server.name.clone();
        slot.server
            .stats
            .traffic
            .sessions
            .fetch_add(1, Ordering::Relaxed);
        server_stats = Some(slot.server.stats.clone());
        let addr = slot.server.addr;
        let t_connect = Instant::now();
        let connected = match backend.timeouts.connect {
            Some(t) => tokio::time::timeout(t, TcpStream::connect(addr))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => TcpStream::connect(addr).await,
        };
        let mut server = match connected {
            Ok(s) => s,
            Err(e) => {
                let kind = if e.kind() == std::io::ErrorKind::TimedOut {
                    ErrorKind::ConnectTimeout
                } else {
                    ErrorKind::ConnectFailed
                };
                let err = ProxyError::new(kind, format!("connection to {addr} failed: {e}"));
                for t in [&backend.stats.traffic, &slot.server.stats.traffic] {
                    t.conn_errors.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(frontend = %fe.name, %peer, error = %err, "tcp connect failed");
                break 'session kind.reply().termination;
            }
        };
        tc = ms(t_connect.elapsed());
        let _ = server.set_nodelay(true);
        srvconn = slot.server.state.inflight.load(Ordering::Relaxed);

        let (idle, idle_term) = match (
            backend.timeouts.tunnel,
            fe.timeouts.client,
            backend.timeouts.server,
        ) {
            (Some(t), _, _) => (Some(t), "cD"),
            (None, Some(c), Some(s)) if s < c => (Some(s), "sD"),
            (None, Some(c), _) => (Some(c), "cD"),
            (None, None, Some(s)) => (Some(s), "sD"),
            (None, None, None) => (None, "--"),
        };
        let activity = Activity::new();
        let failed = AtomicU8::new(NO_ERROR);
        let mut timer = idle.map(|t| IdleTimer::new(activity.clone(), t));
        let spliced_read = (AtomicU64::new(0), AtomicU64::new(0));
        let mut read = None;
        let outcome = match client.plain_tcp() {
            #[cfg(target_os = "linux")]
            Some(tcp) => {
                let copy = splice_both(
                    tcp,
                    &mut server,
                    splice_plan(fe.splice.or(backend.splice)),
                    &activity,
                    &failed,
                    &spliced_read,
                    &fe,
                );
                run_session(copy, timer.as_mut(), &mut shutdown).await
            }
            _ => {
                let mut c = Watched {
                    io: &mut client,
                    activity: &activity,
                    failed: &failed,
                    side: CLIENT_ERROR,
                    read: 0,
                };
                let mut s = Watched {
                    io: &mut server,
                    activity: &activity,
                    failed: &failed,
                    side: SERVER_ERROR,
                    read: 0,
                };
                let copy = tokio::io::copy_bidirectional_with_sizes(
                    &mut c, &mut s, fe.bufsize, fe.bufsize,
                );
                let r = run_session(copy, timer.as_mut(), &mut shutdown).await;
                read = Some((c.read, s.read));
                r
            }
        };
        drop(slot);
        (bytes_in, bytes_out) = read.unwrap_or_else(|| {
            (
                spliced_read.0.load(Ordering::Relaxed),
                spliced_read.1.load(Ordering::Relaxed),
            )
        });
        match outcome {
            Some(Ok((_up, down))) => {
                bytes = down;
                "--"
            }
            Some(Err(_)) => match failed.load(Ordering::Acquire) {
                CLIENT_ERROR => "CD",
                SERVER_ERROR => "SD",
                _ => "KD",
            },
            None => idle_term,
        }
    };

    let traffics = [
        Some(&fe.stats.traffic),
        Some(&backend.stats.traffic),
        server_stats.as_deref().map(|s| &s.traffic),
    ];
    let ended = match term.as_bytes() {
        &[a, b] => termination_index([a, b]),
        _ => None,
    };
    for t in traffics.into_iter().flatten() {
        t.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        t.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        if let Some(i) = ended {
            t.termination_at(i);
        }
    }
    if term.starts_with(['S', 's']) {
        backend
            .stats
            .traffic
            .resp_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    if let (Some(log), true) = (fe.logger.as_ref(), fe.tcplog) {
        let line = TcpLog {
            client: peer,
            accepted,
            frontend: &fe.name,
            backend: &backend.name,
            server: &server_name,
            tw,
            tc,
            tt: t0.elapsed().as_millis() as u64,
            bytes,
            term,
            actconn: crate::listener::active_connections(),
            feconn: fe.active.load(Ordering::Relaxed),
            beconn: backend
                .servers
                .iter()
                .map(|s| s.state.inflight.load(Ordering::Relaxed))
                .sum(),
            srvconn,
            retries: 0,
            srv_queue: 0,
            be_queue: backend.queued() as u32,
        };
        log.emit(&if fe.log_json {
            line.json_line()
        } else {
            line.line()
        });
    }
}
