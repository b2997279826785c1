//! JWT converters on a bearer token from the network: `jwt_header_query`,
//! `jwt_payload_query` (several paths and output types), `jwt_expired`,
//! `jwt_not_yet_valid`, `jwt_verify` with the example HS256 secret and RS256
//! key, and `jwt_verify_jwks` with the example key set (examples/jwt). The
//! token reaches them the way a request's does: `Authorization: Bearer
//! <token>` read by `http_auth_bearer`.
//!
//! The first byte picks the mode, the rest is split at NULs:
//! 0. the rest is the raw token;
//! 1. `header JSON \0 payload JSON \0 signature bytes`, each base64url
//!    encoded and joined with dots (so the mutator works on the JSON);
//! 2. like 1, signed with the HS256 secret: when the header says
//!    `"alg":"HS256"` and both parts are JSON objects, `jwt_verify` must
//!    answer 1;
//! 3. `json path \0 payload JSON`: `jwt_payload_query('<path>')` with a
//!    fuzzed path.
#![no_main]

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir::acl::{Expr, Stage};
use weir_fuzz::{b64url, jwt_dir, Req};

struct Exprs {
    queries: Vec<Expr>,
    hs256: Expr,
    verifiers: Vec<Expr>,
    secret: Vec<u8>,
}

fn exprs() -> &'static Exprs {
    static E: OnceLock<Exprs> = OnceLock::new();
    E.get_or_init(|| {
        let dir = jwt_dir();
        let file = |f: &str| dir.join(f).display().to_string();
        let parse = |s: &str| Expr::parse(s, Stage::Request).unwrap_or_else(|e| panic!("{s}: {e}"));
        let queries = [
            "jwt_header_query",
            "jwt_header_query('$.alg')",
            "jwt_header_query('$.kid',str)",
            "jwt_payload_query",
            "jwt_payload_query('$.sub')",
            "jwt_payload_query('$.exp',int)",
            "jwt_payload_query('$.admin',bool)",
            "jwt_payload_query('$.aud[0]',str)",
            "jwt_payload_query('$.realm_access.roles[1]')",
            "jwt_payload_query(\"$['x-y']\",int)",
            "jwt_expired",
            "jwt_expired(30)",
            "jwt_not_yet_valid",
            "jwt_not_yet_valid(5)",
        ]
        .iter()
        .map(|c| parse(&format!("http_auth_bearer,{c}")))
        .collect();
        let hs256 = parse(&format!(
            "http_auth_bearer,jwt_verify(HS256,\"{}\")",
            file("hs256.key")
        ));
        let verifiers = vec![
            parse(&format!(
                "http_auth_bearer,jwt_verify(RS256,\"{}\")",
                file("pub.pem")
            )),
            parse(&format!(
                "http_auth_bearer,jwt_verify(PS512,\"{}\")",
                file("pub.pem")
            )),
            parse(&format!(
                "http_auth_bearer,jwt_verify_jwks(\"{}\")",
                file("jwks.json")
            )),
        ];
        let secret = std::fs::read(dir.join("hs256.key")).expect("examples/jwt/hs256.key");
        Exprs {
            queries,
            hs256,
            verifiers,
            secret,
        }
    })
}

/// Evaluates `e` on a request whose bearer token is `token`.
fn eval(e: &Expr, req: &Req) -> Option<String> {
    e.eval(&req.input()).map(|s| s.to_string())
}

fn request(token: &[u8]) -> Option<Req> {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(token);
    // Skip what cannot be a header value (control bytes): it never arrives.
    http::HeaderValue::from_bytes(&value).ok()?;
    Some(Req::with_authorization(&value))
}

fn is_object(s: &[u8]) -> bool {
    serde_json::from_slice::<Value>(s).is_ok_and(|v| v.is_object())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let e = exprs();
    let mut parts = rest.splitn(3, |&b| b == 0);
    let (a, b, c) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let token = match mode % 4 {
        0 => rest.to_vec(),
        1 => format!("{}.{}.{}", b64url(a), b64url(b), b64url(c)).into_bytes(),
        2 => {
            let message = format!("{}.{}", b64url(a), b64url(b));
            let key = EncodingKey::from_secret(&e.secret);
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
                .expect("HMAC signing");
            let token = format!("{message}.{sig}");
            let Some(req) = request(token.as_bytes()) else {
                return;
            };
            let got = eval(&e.hs256, &req);
            let header = serde_json::from_slice::<Value>(a).ok();
            let alg = header
                .as_ref()
                .and_then(|h| h.get("alg"))
                .and_then(Value::as_str);
            if alg == Some("HS256") && is_object(a) && is_object(b) {
                assert_eq!(got.as_deref(), Some("1"), "{token}");
            }
            token.into_bytes()
        }
        _ => {
            let Ok(path) = std::str::from_utf8(a) else {
                return;
            };
            let Ok(q) = Expr::parse(
                &format!("http_auth_bearer,jwt_payload_query('{path}')"),
                Stage::Request,
            ) else {
                return;
            };
            let token = format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", b64url(b));
            if let Some(req) = request(token.as_bytes()) {
                let _ = eval(&q, &req);
            }
            return;
        }
    };
    let Some(req) = request(&token) else {
        return;
    };
    for q in &e.queries {
        let _ = eval(q, &req);
    }
    for v in e.verifiers.iter().chain([&e.hs256]) {
        if let Some(r) = eval(v, &req) {
            assert!(
                ["1", "0", "-3", "-5"].contains(&r.as_str()),
                "jwt_verify -> {r}"
            );
        }
    }
});
