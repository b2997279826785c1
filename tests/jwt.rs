//! JWT bearer tokens (http_auth_bearer, jwt_verify, jwt_verify_jwks,
//! jwt_payload_query, jwt_expired, jwt_not_yet_valid) end to end:
//! examples/grpc-jwt.cfg as shipped (addresses swapped for test ones) in
//! front of a backend that echoes request headers, with tonic clients.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

use common::*;

type FakeBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A gRPC backend answering any path with one empty message, echoing each
/// request header as `seen-<name>`.
async fn header_echo_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let mut b = Response::builder().header("content-type", "application/grpc");
                for (k, v) in req.headers() {
                    b = b.header(format!("seen-{k}"), v.clone());
                }
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static("0"));
                let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                    Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                    Ok(Frame::trailers(t)),
                ];
                let body: FakeBody = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(b.body(body).expect("response"))
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

const ECHO: &str = "/weir.echo.Echo/Unary";
const OTHER: &str = "/weir.other.Other/Get";

struct Proxy {
    _p: weir::proxy::Running,
    jwt: Channel,
    jwks: Channel,
}

/// examples/grpc-jwt.cfg with its listen and server addresses replaced.
async fn example() -> Proxy {
    let backend = header_echo_backend().await;
    let mut text = std::fs::read_to_string("examples/grpc-jwt.cfg").expect("example");
    for port in ["3002", "3003"] {
        text = text.replace(&format!("bind 127.0.0.1:{port}"), "bind 127.0.0.1:0");
    }
    for port in ["50051", "50052", "50053"] {
        text = text.replace(&format!("127.0.0.1:{port}"), &backend.to_string());
    }
    let p = start_proxy(&text).await;
    let jwt = channel(p.local_addr("fe_jwt").expect("fe_jwt")).await;
    let jwks = channel(p.local_addr("fe_jwks").expect("fe_jwks")).await;
    Proxy { _p: p, jwt, jwks }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": "https://issuer.example.com",
        "aud": "weir-grpc",
        "sub": "alice",
        "scope": "read echo",
        "iat": now(),
        "nbf": now() - 5,
        "exp": now() + 600,
    })
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read("examples/jwt/priv.pem").expect("key")).expect("pem")
}

fn rs256(c: &Value) -> String {
    encode(&Header::new(Algorithm::RS256), c, &rsa_key()).expect("encode")
}

fn rs256_kid(c: &Value, kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_string());
    encode(&h, c, &rsa_key()).expect("encode")
}

fn b64url(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {t}"))]
}

async fn code(ch: &Channel, path: &'static str, md: &[(&'static str, String)]) -> Code {
    match grpc_call(ch, path, md).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn valid_token_passes_with_the_tokens_identity() {
    let p = example().await;
    let mut md = bearer(&rs256(&claims()));
    // a spoofed identity header is dropped before the token's is set
    md.push(("x-caller-sub", "mallory".to_string()));
    let seen = grpc_call(&p.jwt, ECHO, &md).await.expect("call passes");
    assert_eq!(seen["seen-x-caller-sub"], "alice");
    // an array audience works too; another service needs no echo scope
    let c = with(claims(), "aud", json!(["other", "weir-grpc"]));
    let c = with(c, "scope", json!("read"));
    let seen = grpc_call(&p.jwt, OTHER, &bearer(&rs256(&c)))
        .await
        .expect("call passes");
    assert_eq!(seen["seen-x-caller-sub"], "alice");
    // the scheme is case-insensitive
    let md = vec![("authorization", format!("bearer {}", rs256(&claims())))];
    assert_eq!(code(&p.jwt, ECHO, &md).await, Code::Ok);
}

#[tokio::test]
async fn missing_scope_is_permission_denied() {
    let p = example().await;
    for scope in [json!("read"), json!("echoes read"), json!(null)] {
        let c = with(claims(), "scope", scope.clone());
        assert_eq!(
            code(&p.jwt, ECHO, &bearer(&rs256(&c))).await,
            Code::PermissionDenied,
            "scope {scope}"
        );
    }
}

#[tokio::test]
async fn invalid_tokens_are_unauthenticated() {
    let p = example().await;
    let t = now();
    let good = rs256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = b64url(
        serde_json::to_vec(&with(claims(), "sub", json!("mallory")))
            .expect("json")
            .as_slice(),
    );
    let pubkey = std::fs::read("examples/jwt/pub.pem").expect("pub");
    let hs_confusion = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&pubkey),
    )
    .expect("encode");
    let hs_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&std::fs::read("examples/jwt/hs256.key").expect("secret")),
    )
    .expect("encode");
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("no token", vec![]),
        (
            "empty bearer",
            vec![("authorization", "Bearer ".to_string())],
        ),
        (
            "basic auth",
            vec![("authorization", "Basic YTpi".to_string())],
        ),
        (
            "expired",
            bearer(&rs256(&with(claims(), "exp", json!(t - 60)))),
        ),
        (
            "not yet valid",
            bearer(&rs256(&with(claims(), "nbf", json!(t + 600)))),
        ),
        (
            "wrong issuer",
            bearer(&rs256(&with(
                claims(),
                "iss",
                json!("https://evil.example.com"),
            ))),
        ),
        (
            "no issuer",
            bearer(&rs256(&with(claims(), "iss", json!(null)))),
        ),
        (
            "wrong audience",
            bearer(&rs256(&with(claims(), "aud", json!("weir-grpc-admin")))),
        ),
        (
            "wrong audience array",
            bearer(&rs256(&with(claims(), "aud", json!(["a", "b"])))),
        ),
        (
            "bad signature",
            bearer(&format!("{}.{}.{}", parts[0], forged_payload, parts[2])),
        ),
        ("alg none", bearer(&none)),
        (
            "HS256 with the RSA public key as secret",
            bearer(&hs_confusion),
        ),
        ("HS256 token", bearer(&hs_secret)),
        ("two parts", bearer(&format!("{}.{}", parts[0], parts[1]))),
        ("four parts", bearer(&format!("{good}.x"))),
        (
            "bad base64",
            bearer(&format!("{}.{}!.{}", parts[0], parts[1], parts[2])),
        ),
        (
            "bad JSON",
            bearer(&format!("{}.{}.{}", parts[0], b64url(b"{nope"), parts[2])),
        ),
    ];
    for (what, md) in cases {
        assert_eq!(
            code(&p.jwt, ECHO, &md).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
    // and the good one still passes on the same connection
    assert_eq!(code(&p.jwt, ECHO, &bearer(&good)).await, Code::Ok);
}

#[tokio::test]
async fn jwks_picks_the_key_by_kid() {
    let p = example().await;
    let seen = grpc_call(
        &p.jwks,
        ECHO,
        &bearer(&rs256_kid(&claims(), "weir-example-1")),
    )
    .await
    .expect("call passes");
    assert_eq!(seen["seen-x-caller-sub"], "alice");
    for (what, t) in [
        ("unknown kid", rs256_kid(&claims(), "other")),
        ("no kid", rs256(&claims())),
        (
            "expired",
            rs256_kid(&with(claims(), "exp", json!(now() - 60)), "weir-example-1"),
        ),
    ] {
        assert_eq!(
            code(&p.jwks, ECHO, &bearer(&t)).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
}

#[test]
fn bad_key_files_are_config_errors_with_file_and_line() {
    for (line, needle) in [
        (
            "http-request deny unless { http_auth_bearer,jwt_verify(RS256,\"examples/jwt/missing.pem\") -m int 1 }",
            "cannot read 'examples/jwt/missing.pem'",
        ),
        (
            "http-request deny unless { http_auth_bearer,jwt_verify(RS256,examples/jwt/priv.pem) -m int 1 }",
            "is a private key",
        ),
        (
            "http-request deny unless { http_auth_bearer,jwt_verify(none,examples/jwt/pub.pem) -m int 1 }",
            "unknown or unsupported algorithm 'none'",
        ),
        (
            "http-request deny unless { http_auth_bearer,jwt_verify(ES256,examples/jwt/pub.pem) -m int 1 }",
            "holds an RSA public key, but ES256 needs",
        ),
        (
            "http-request deny unless { http_auth_bearer,jwt_verify_jwks(examples/jwt/pub.pem) -m int 1 }",
            "not a JSON Web Key Set",
        ),
        (
            "http-request set-header x %[http_auth_bearer,jwt_payload_query(sub)]",
            "invalid JSON path 'sub'",
        ),
    ] {
        let text = format!(
            "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0\n    {line}\n    default_backend be\nbackend be\n    server s1 127.0.0.1:1 proto h2\n"
        );
        let err = match weir::config::parse_str("jwt.cfg", &text) {
            Ok(_) => panic!("{line}: loads"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("jwt.cfg:5"), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
