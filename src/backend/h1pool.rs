//! Idle HTTP/1.1 connections to one server (servers without `proto h2`).
//! A connection carries one call at a time and goes back to the idle list
//! when the response has been read to its end. A worker reuses the idle
//! connections it opened first (their I/O runs on its own runtime), and
//! another worker's only when it has none.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::backend::pool::{worker_key, UpstreamTls};
use crate::error::{ErrorKind, ProxyError};

/// Idle connections kept per server.
const MAX_IDLE: usize = 64;

/// One HTTP/1.1 connection: its request handle (HTTP/1.1 servers take the
/// client's counted body as it is) and the worker that opened it, whose
/// runtime drives its I/O.
pub struct H1Sender {
    send: SendRequest<crate::http::tally::CountedBody>,
    owner: usize,
}

impl std::ops::Deref for H1Sender {
    type Target = SendRequest<crate::http::tally::CountedBody>;
    fn deref(&self) -> &Self::Target {
        &self.send
    }
}

impl std::ops::DerefMut for H1Sender {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.send
    }
}

#[derive(Default)]
pub struct H1Pool {
    idle: Mutex<Vec<H1Sender>>,
    tls: Option<Arc<UpstreamTls>>,
}

impl H1Pool {
    pub fn new(tls: Option<Arc<UpstreamTls>>) -> Self {
        H1Pool {
            idle: Mutex::new(Vec::new()),
            tls,
        }
    }

    /// An idle connection that is ready, or a new one.
    pub async fn acquire(
        &self,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> Result<H1Sender, ProxyError> {
        {
            let me = worker_key();
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|s| s.is_ready());
            // The newest of this worker's own, else the newest of any.
            let pick = idle
                .iter()
                .rposition(|s| s.owner == me)
                .or(idle.len().checked_sub(1));
            if let Some(i) = pick {
                return Ok(idle.swap_remove(i));
            }
        }
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| {
                ProxyError::new(
                    ErrorKind::ConnectFailed,
                    format!("connection to {addr} failed: {e}"),
                )
            })?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                Some(t) => h1_handshake(t.handshake(tcp, addr, b"http/1.1").await?, addr).await,
                None => h1_handshake(tcp, addr).await,
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

    /// Returns a connection whose call is over.
    /// Whether an idle connection is ready to be reused.
    pub fn has_idle(&self) -> bool {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().any(|s| s.is_ready())
    }

    /// Idle connections kept for reuse (for stats and metrics).
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().filter(|s| !s.is_closed()).count()
    }

    pub fn release(&self, send: H1Sender) {
        if send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(send);
        }
    }
}

/// The HTTP/1.1 client handshake on an open connection.
async fn h1_handshake<T>(io: T, addr: SocketAddr) -> Result<H1Sender, ProxyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| {
            ProxyError::new(
                ErrorKind::UpstreamProtocol,
                format!("HTTP/1.1 handshake with {addr} failed: {e}"),
            )
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream HTTP/1.1 connection ended");
        }
    });
    Ok(H1Sender {
        send,
        owner: worker_key(),
    })
}
