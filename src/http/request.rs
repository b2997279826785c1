//! The life of one HTTP request, top to bottom.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::backend::balance::PickCtx;
use crate::error::{ErrorKind, ProxyError};
use crate::http::body::ProxyBody;
use crate::http::{forward, grpc, respond};
use crate::runtime::Frontend;

/// Routes, balances and forwards one request; every failure becomes a
/// reply the client understands (a gRPC status for gRPC clients).
pub async fn handle(req: Request<Incoming>, fe: &Frontend, pick: &PickCtx) -> Response<ProxyBody> {
    let is_grpc = grpc::is_grpc(req.headers());
    let Some(backend) = fe.backend.as_ref() else {
        let e = ProxyError::new(
            ErrorKind::NoBackend,
            format!("no backend for this request in frontend {}", fe.name),
        );
        return respond::error(is_grpc, &e);
    };
    let result = match backend.take(pick).await {
        Ok(slot) => {
            let server = slot.server.clone();
            forward::forward(req, slot, &backend.timeouts, is_grpc)
                .await
                .map_err(|mut e| {
                    // Name the backend/server, as HAProxy's logs do.
                    e.message = format!("{}/{}: {}", backend.name, server.name, e.message);
                    e
                })
        }
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        tracing::debug!(frontend = %fe.name, backend = %backend.name, error = %e, "proxy error");
        respond::error(is_grpc, &e)
    })
}
