//! Replies the proxy makes itself. A gRPC client always gets a trailers-only
//! response (HTTP 200, `content-type: application/grpc`, `grpc-status`,
//! `grpc-message`); anyone else gets the HTTP status of the same table row
//! with a one-line body.
//!
//! Overload answers (a full backend queue, a queue timeout) also say when to
//! try again: `grpc-retry-pushback-ms` (gRFC A6) in the gRPC trailers,
//! `Retry-After` for plain HTTP.

use http::{HeaderValue, Response, StatusCode};

use crate::error::ProxyError;
use crate::http::body::ProxyBody;
use crate::http::grpc;

pub fn error(is_grpc: bool, err: &ProxyError) -> Response<ProxyBody> {
    let reply = err.kind.reply();
    if is_grpc {
        let mut resp = Response::new(ProxyBody::Empty);
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.extend(grpc::status_headers(reply.grpc, &err.message));
        if let Some(d) = err.retry_pushback {
            h.insert(
                "grpc-retry-pushback-ms",
                HeaderValue::from(d.as_millis() as u64),
            );
        }
        resp
    } else {
        let status = StatusCode::from_u16(reply.http_status).unwrap_or(StatusCode::BAD_GATEWAY);
        let text = format!(
            "{} {}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            err.message
        );
        let mut resp = Response::new(ProxyBody::full(text));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        if let Some(d) = err.retry_pushback {
            let secs = d.as_millis().div_ceil(1000).max(1) as u64;
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn grpc_errors_are_trailers_only() {
        let e = ProxyError::new(ErrorKind::NoServer, "no server available for backend be");
        let r = error(true, &e);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(
            r.headers()["grpc-message"],
            "no server available for backend be"
        );
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert!(http_body::Body::is_end_stream(r.body()));
    }

    #[test]
    fn http_errors_get_status_and_body() {
        let e = ProxyError::new(ErrorKind::ConnectTimeout, "timed out");
        let r = error(false, &e);
        assert_eq!(r.status(), 503);
        let e = ProxyError::new(ErrorKind::ServerTimeout, "slow");
        assert_eq!(error(false, &e).status(), 504);
    }

    #[test]
    fn overload_answers_carry_a_pushback() {
        let e = ProxyError::new(ErrorKind::QueueFull, "queue full")
            .with_pushback(std::time::Duration::from_millis(1500));
        let r = error(true, &e);
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["grpc-retry-pushback-ms"], "1500");
        let r = error(false, &e);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "2");
        // Other errors say nothing about retrying.
        let e = ProxyError::new(ErrorKind::NoServer, "none");
        assert!(error(true, &e)
            .headers()
            .get("grpc-retry-pushback-ms")
            .is_none());
        assert!(error(false, &e).headers().get("retry-after").is_none());
    }
}
