//! Listening sockets and accept loops. `maxconn` (global and per frontend)
//! is enforced before `accept()`: when full, weir stops accepting and the
//! kernel backlog holds new clients, as HAProxy does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::config::{Bind, Mode};
use crate::runtime::Frontend;
use crate::tls::BindTls;

/// Client connections open in this process (HAProxy's `actconn`).
static ACTIVE: AtomicU32 = AtomicU32::new(0);

pub fn active_connections() -> u32 {
    ACTIVE.load(Ordering::Relaxed)
}

/// Counts a connection in the process and its frontend while it lives.
struct Counted(Arc<Frontend>);

impl Counted {
    fn new(fe: Arc<Frontend>) -> Self {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        fe.active.fetch_add(1, Ordering::Relaxed);
        fe.stats.conn_opened();
        Counted(fe)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.stats.conn_closed();
    }
}

/// Binds a listening socket with SO_REUSEADDR and a deep backlog. With
/// `reuse_port`, several threads can each bind their own socket on the same
/// address and the kernel spreads new connections across them.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(false);
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

async fn permit(sem: &Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match sem {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// What a client connection watches: the slot its requests take their
/// frontend from, the proxy's stop signal for connections, and what its
/// `tcp-request connection track-sc*` rules tracked (its requests' sc0..2;
/// `conn_cur` goes back down when the last holder lets go).
#[derive(Clone)]
pub struct ConnCtl {
    pub slot: Arc<crate::runtime::FrontendSlot>,
    pub stop: watch::Receiver<bool>,
    pub track: Option<Arc<crate::stick::ConnTrack>>,
}

/// Accepts connections for one bind line until shutdown.
pub async fn accept_loop(
    listener: std::net::TcpListener,
    fe: Arc<Frontend>,
    bind: Bind,
    global: Option<Arc<Semaphore>>,
    mut shutdown: watch::Receiver<bool>,
    ctl: ConnCtl,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(frontend = %fe.name, error = %e, "cannot register listener");
            return;
        }
    };
    let builder = Arc::new(crate::http::builder(&fe, bind.proto));
    let tls = bind.tls.clone();
    let age = crate::http::ConnAge {
        max: bind.max_age,
        grace: bind.max_age_grace,
    };
    loop {
        // Biased: once a reload or shutdown has stopped this generation, it
        // never takes another connection from the (shared) socket.
        let accepted = tokio::select! {
            biased;
            _ = crate::proxy::stopping(&mut shutdown) => return,
            r = async {
                let g = permit(&global).await;
                let f = permit(&fe.conns).await;
                (listener.accept().await, g, f)
            } => r,
        };
        let (stream, peer, permits) = match accepted {
            (Ok((s, peer)), g, f) => (s, peer, (g, f)),
            (Err(e), _, _) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(frontend = %fe.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let fe = fe.clone();
        let mut ctl = ctl.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permits = permits;
            let local = stream.local_addr().unwrap_or(peer);
            // `tcp-request connection` rules, before any byte is read.
            let Some(track) = admit(&fe, peer, local) else {
                return;
            };
            ctl.track = track;
            let _counted = Counted::new(fe.clone());
            handle_conn(stream, peer, local, fe, tls, age, builder, ctl).await;
        });
    }
}

/// Runs the frontend's `tcp-request connection` rules on a new connection:
/// `None` when a rule rejects it (it is closed at once, counted in the
/// frontend's denied connections); else what the connection tracked, kept
/// until it ends (`conn_cur`) and seen by its requests as their sc0..2.
fn admit(
    fe: &Frontend,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<Option<Arc<crate::stick::ConnTrack>>> {
    if fe.tcp_request_connection.is_empty() {
        return Some(None);
    }
    let track =
        (!fe.tables.is_empty()).then(|| crate::stick::ReqTrack::connection(fe.tables.clone()));
    let env = crate::http::rules::Env::connection(fe, peer, local, track.as_ref());
    if !crate::http::rules::connection(&fe.tcp_request_connection, &env) {
        fe.stats.denied_conn.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(frontend = %fe.name, %peer, "connection rejected by a 'tcp-request connection' rule");
        return None;
    }
    let tracked = track.map(crate::stick::ReqTrack::into_conn);
    Some(tracked.filter(|t| !t.is_empty()).map(Arc::new))
}

#[allow(clippy::too_many_arguments)]
async fn handle_conn(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    fe: Arc<Frontend>,
    tls: Option<BindTls>,
    age: crate::http::ConnAge,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    ctl: ConnCtl,
) {
    let Some(tls) = tls else {
        return match fe.mode {
            Mode::Http => {
                crate::http::serve(stream, peer, local, None, age, fe, builder, ctl).await
            }
            // Boxed: an L4 session's future (2.9 KiB in a release build,
            // more than `http::serve`'s 2.7) inline would size every HTTP
            // connection's task for it.
            Mode::Tcp => {
                Box::pin(crate::l4::serve(
                    stream, peer, local, fe, ctl.stop, ctl.track,
                ))
                .await
            }
        };
    };
    // Boxed: inline, the TLS handshake and TLS stream states would make
    // every cleartext connection's task as large as a TLS one's.
    Box::pin(handle_tls(stream, peer, local, fe, tls, age, builder, ctl)).await
}

/// [`handle_conn`] for a `bind ... ssl` line: the handshake, then serving.
#[allow(clippy::too_many_arguments)]
async fn handle_tls(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    fe: Arc<Frontend>,
    tls: BindTls,
    age: crate::http::ConnAge,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    ctl: ConnCtl,
) {
    // The handshake is bounded like a request's headers.
    let limit = fe
        .timeouts
        .http_request
        .or(fe.timeouts.client)
        .unwrap_or(Duration::from_secs(10));
    let (stream, info) = match tls.accept(stream, limit).await {
        Ok(s) => s,
        Err(reason) => {
            tracing::info!(frontend = %fe.name, %peer, %reason, "TLS handshake failed");
            // HAProxy's connection-error line, to the frontend's log targets.
            if let Some(logger) = &fe.logger {
                let ip = match peer.ip() {
                    std::net::IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map(std::net::IpAddr::V4)
                        .unwrap_or(peer.ip()),
                    v4 => v4,
                };
                let date = crate::observe::time::Civil::from_system(std::time::SystemTime::now());
                logger.emit(&format!(
                    "{ip}:{} [{}] {}/{local}: {reason}",
                    peer.port(),
                    date.haproxy(),
                    fe.name
                ));
            }
            return;
        }
    };
    match fe.mode {
        Mode::Http => {
            crate::http::serve(stream, peer, local, Some(info), age, fe, builder, ctl).await
        }
        Mode::Tcp => crate::l4::serve(stream, peer, local, fe, ctl.stop, ctl.track).await,
    }
}
