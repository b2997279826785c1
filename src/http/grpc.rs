//! gRPC specifics the proxy needs without decoding messages.

use http::{HeaderMap, HeaderValue};

use crate::error::GrpcCode;

/// True when the request is a gRPC call (`content-type: application/grpc*`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes().starts_with(b"application/grpc"))
        .unwrap_or(false)
}

/// Percent-encodes a `grpc-message` as the gRPC spec asks (space through
/// `~` except `%` are sent as they are).
pub fn encode_message(msg: &str) -> HeaderValue {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("proxy error"))
}

/// Status and message headers for a trailers-only response or trailers.
pub fn status_headers(code: GrpcCode, message: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(3);
    h.insert("grpc-status", HeaderValue::from_static(code.as_str()));
    h.insert("grpc-message", encode_message(message));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_grpc_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&h));
    }

    #[test]
    fn message_is_percent_encoded() {
        assert_eq!(encode_message("a b%c\n").to_str().unwrap(), "a b%25c%0A");
        assert_eq!(encode_message("é").to_str().unwrap(), "%C3%A9");
    }
}
