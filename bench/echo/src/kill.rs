//! Cutting a server's connections at once, like a crashed process would.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::server::Connected;

/// Lets [`crate::EchoHandle`] cut its accepted connections.
pub(crate) struct KillSwitch {
    killed: AtomicBool,
    tx: watch::Sender<bool>,
}

impl KillSwitch {
    pub(crate) fn new() -> Self {
        Self {
            killed: AtomicBool::new(false),
            tx: watch::Sender::new(false),
        }
    }

    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }
}

/// A TCP connection that fails every read and write once the server is
/// killed. The kill future is polled only when the socket would block, so
/// the hot path costs one atomic load.
pub(crate) struct KillableIo {
    io: TcpStream,
    switch: Arc<KillSwitch>,
    killed: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl KillableIo {
    pub(crate) fn new(io: TcpStream, switch: &Arc<KillSwitch>) -> Self {
        let mut rx = switch.tx.subscribe();
        Self {
            io,
            switch: Arc::clone(switch),
            killed: Box::pin(async move {
                let _ = rx.wait_for(|killed| *killed).await;
            }),
        }
    }

    fn aborted() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, "echo server killed")
    }

    /// Checks the kill switch after the inner I/O returned `poll`.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.switch.killed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(Self::aborted()));
        }
        if poll.is_pending() && self.killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Self::aborted()));
        }
        poll
    }
}

impl Connected for KillableIo {
    type ConnectInfo = <TcpStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        this.check(cx, poll)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.switch.killed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(Self::aborted()));
        }
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.switch.killed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(Self::aborted()));
        }
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
