//! Shared pieces of the fuzz targets: a fixed synthetic request to evaluate
//! expressions against, and a base64url encoder for building tokens.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use weir::acl::{Input, ResInput, TlsInfo};

/// `examples/jwt` of the weir checkout this crate sits in.
pub fn jwt_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("jwt")
}

/// Owns what an [`Input`] borrows: a gRPC call over HTTP/2 with TLS and a
/// response, so that request, response and log fetches all have something
/// to read.
pub struct Req {
    parts: http::request::Parts,
    tls: TlsInfo,
    res_headers: HeaderMap,
}

impl Req {
    /// The fixed request; `extra`: more request headers (`x-fuzz: <fuzzed>`),
    /// skipped when the name or value is not a valid header.
    pub fn new(extra: &[(&str, &[u8])]) -> Req {
        let mut r = Request::builder()
            .method("POST")
            .uri("https://api.example.com:8443/pkg.Greeter/SayHello?a=1&b=%20x&a=2")
            .version(Version::HTTP_2)
            .header("content-type", "application/grpc+proto")
            .header("te", "trailers")
            .header("grpc-timeout", "1500m")
            .header("user-agent", "grpc-go/1.60.0")
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.1")
            .header("cookie", "session=abc123; theme=dark")
            .header("x-tenant", "acme")
            .header("x-tenant", "other")
            .header(
                "authorization",
                "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                 eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                 SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            )
            .body(())
            .expect("fixed request");
        for (name, value) in extra {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                r.headers_mut().append(n, v);
            }
        }
        let (parts, ()) = r.into_parts();
        let mut res_headers = HeaderMap::new();
        res_headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        res_headers.insert("grpc-status", HeaderValue::from_static("0"));
        res_headers.insert("server", HeaderValue::from_static("upstream/1.0"));
        Req {
            parts,
            tls: TlsInfo {
                sni: Some("api.example.com".into()),
                alpn: Some("h2".into()),
                version: Some("TLSv1.3"),
                client_subject: Some("/C=FR/O=Example/CN=client1".into()),
                client_issuer: Some("/C=FR/O=Example/CN=Example CA".into()),
            },
            res_headers,
        }
    }

    /// The fixed request with `Authorization: <value>` (`Bearer <token>`)
    /// instead of its own; the fixed one when `value` is not a valid header.
    pub fn with_authorization(value: &[u8]) -> Req {
        let mut r = Req::new(&[]);
        if let Ok(v) = HeaderValue::from_bytes(value) {
            r.parts.headers.insert(http::header::AUTHORIZATION, v);
        }
        r
    }

    pub fn input(&self) -> Input<'_> {
        Input {
            method: &self.parts.method,
            uri: &self.parts.uri,
            version: self.parts.version,
            headers: &self.parts.headers,
            src: "192.0.2.7:40000".parse().expect("fixed address"),
            dst: "[2001:db8::1]:8443".parse().expect("fixed address"),
            frontend: "fe_main",
            backend: Some("be_grpc"),
            tls: Some(&self.tls),
            res: Some(ResInput {
                status: 200,
                headers: &self.res_headers,
                grpc_status: Some(0),
            }),
            track: None,
        }
    }
}

/// base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
