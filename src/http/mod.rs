//! `mode http`: one listener serves HTTP/1.1 and HTTP/2 (h2c with prior
//! knowledge, detected from the connection preface) unless `proto` forces one.

pub mod body;
pub mod forward;
pub mod grpc;
pub mod idle;
pub mod request;
pub mod respond;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Proto;
use crate::runtime::Frontend;

/// HTTP/2 settings we advertise to clients.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONN_WINDOW: u32 = 4 << 20;

/// The connection builder for a frontend's bind line.
pub fn builder(fe: &Frontend, proto: Option<Proto>) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(
        fe.timeouts
            .http_request
            .or(fe.timeouts.client)
            .unwrap_or(Duration::from_secs(30)),
    );
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_frame_size(1 << 16);
    match proto {
        Some(Proto::H2) => b.http2_only(),
        Some(Proto::H1) => b.http1_only(),
        None => b,
    }
}

/// Serves one client connection until it ends or shutdown is asked for.
pub async fn serve(
    stream: TcpStream,
    fe: Arc<Frontend>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc_fe = fe.clone();
    let service = service_fn(move |req| {
        let fe = svc_fe.clone();
        async move { Ok::<_, Infallible>(request::handle(req, &fe).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(frontend = %fe.name, error = %e, "client connection ended with an error");
            }
        }
        _ = crate::proxy::stopping(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
