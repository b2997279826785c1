//! Idle HTTP/1.1 connections to one server (servers without `proto h2`).
//! A connection carries one call at a time and goes back to the idle list
//! when the response has been read to its end.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{ErrorKind, ProxyError};

/// Idle connections kept per server.
const MAX_IDLE: usize = 64;

pub type H1Sender = SendRequest<Incoming>;

#[derive(Default)]
pub struct H1Pool {
    idle: Mutex<Vec<H1Sender>>,
}

impl H1Pool {
    /// An idle connection that is ready, or a new one.
    pub async fn acquire(
        &self,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> Result<H1Sender, ProxyError> {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(s) = idle.pop() {
                if s.is_ready() {
                    return Ok(s);
                }
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
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
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
            Ok(send)
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
