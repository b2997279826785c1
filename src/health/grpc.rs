//! `option grpc-check [<service>]`: `grpc.health.v1.Health/Check` over
//! cleartext HTTP/2, on a new connection per check (like HAProxy's checks).
//! `SERVING` passes; `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN` and RPC
//! errors fail with `Layer7 wrong status`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::{io_info, Outcome, Progress};
use crate::backend::pool::UpstreamTls;

pub(crate) async fn check(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    service: &str,
    limit: Duration,
    progress: &Progress,
) -> Outcome {
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(limit).tcp_nodelay(true),
        Err(e) => return Outcome::fail("Socket error", Some(e.to_string())),
    };
    let connected = match tls {
        None => endpoint.connect().await,
        Some(tls) => {
            // `check-ssl`: the same TLS as the traffic, then h2 on top.
            let tls = std::sync::Arc::new((tls.tls.clone(), tls.name.clone()));
            let connector = tower::service_fn(move |_: http::Uri| {
                let tls = tls.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    let _ = tcp.set_nodelay(true);
                    let (s, _) = tls
                        .0
                        .connect(tcp, &tls.1)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            });
            endpoint.connect_with_connector(connector).await
        }
    };
    let channel = match connected {
        Ok(c) => c,
        Err(e) => return Outcome::fail("Layer4 connection problem", Some(error_info(&e))),
    };
    progress.connected.store(true, Ordering::Release);
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match client.check(request).await {
        Ok(reply) => match reply.into_inner().status() {
            ServingStatus::Serving => Outcome::pass("Layer7 check passed").with_code("SERVING"),
            other => Outcome::fail("Layer7 wrong status", None).with_code(other.as_str_name()),
        },
        Err(status) => {
            let code = match status.code() {
                tonic::Code::NotFound => "SERVICE_UNKNOWN".to_string(),
                c => format!("{c:?}"),
            };
            let info = (!status.message().is_empty()).then(|| status.message().to_string());
            Outcome::fail("Layer7 wrong status", info).with_code(code)
        }
    }
}

/// The innermost I/O error's text (`Connection refused`), else the error's.
fn error_info(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_info(io);
        }
        cur = err.source();
    }
    e.to_string()
}
