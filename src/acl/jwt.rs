//! JSON Web Tokens: the `jwt_header_query` / `jwt_payload_query` converters,
//! signature checks (`jwt_verify`, weir's `jwt_verify_jwks`) and weir's time
//! helpers (`jwt_expired`, `jwt_not_yet_valid`). HAProxy 2.5+ style.
//!
//! Keys are read and checked once, when the configuration loads; a request
//! only decodes its token and runs the signature check (ring, through the
//! `jsonwebtoken` crate). The algorithm is the configured one, never the
//! token's: a token whose header `alg` differs (`none`, `HS256` against an
//! RSA key, ...) fails without a signature check.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

use super::convert::base64_decode;
use super::Sample;

/// `jwt_verify` results (HAProxy's codes; -1, -2 and -4 never happen at run
/// time here: an unknown or unmanaged algorithm is a configuration error).
pub(crate) const VERIFY_OK: i64 = 1;
/// Bad signature, or the header's `alg` is not the configured algorithm.
pub(crate) const VERIFY_FAILED: i64 = 0;
/// Not `header.payload.signature` with base64url parts and JSON objects.
pub(crate) const VERIFY_INVALID_TOKEN: i64 = -3;
/// `jwt_verify_jwks`: the token has no `kid`, or the set has no such key.
pub(crate) const VERIFY_UNKNOWN_KEY: i64 = -5;

/// base64url without padding (padding tolerated); `None` when invalid.
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.bytes().any(|b| b == b'+' || b == b'/') {
        return None;
    }
    let std: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64_decode(&std)
}

/// A token split into its three parts.
struct Parts<'t> {
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
}

fn split(token: &str) -> Option<Parts<'_>> {
    let mut it = token.split('.');
    let (header, payload, signature) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    Some(Parts {
        header,
        payload,
        signature,
    })
}

/// A base64url part holding a JSON object.
fn decode_json(part: &str) -> Option<Value> {
    let v: Value = serde_json::from_slice(&b64url_decode(part)?).ok()?;
    v.is_object().then_some(v)
}

/// The decoded header (`payload` false) or payload of a well-formed token.
fn decode_part(token: &str, payload: bool) -> Option<Value> {
    let p = split(token.trim())?;
    decode_json(if payload { p.payload } else { p.header })
}

// ------------------------------------------------------------ JSON queries

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `$`, `$.a.b`, `$.a[0]`, `$['a-b']`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JsonPath(Vec<Step>);

impl JsonPath {
    pub(crate) fn parse(s: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| format!("invalid JSON path '{s}': {why}");
        let Some(rest) = s.strip_prefix('$') else {
            return Err(bad("it must start with '$'"));
        };
        let chars: Vec<char> = rest.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                        j += 1;
                    }
                    if j == start {
                        return Err(bad("empty member name after '.'"));
                    }
                    steps.push(Step::Key(chars[start..j].iter().collect()));
                    i = j;
                }
                '[' => {
                    let Some(close) = chars[i..].iter().position(|&c| c == ']') else {
                        return Err(bad("missing ']'"));
                    };
                    let inner: String = chars[i + 1..i + close].iter().collect();
                    let quoted = inner.len() >= 2
                        && ((inner.starts_with('\'') && inner.ends_with('\''))
                            || (inner.starts_with('"') && inner.ends_with('"')));
                    if quoted {
                        steps.push(Step::Key(inner[1..inner.len() - 1].to_string()));
                    } else {
                        let n = inner
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| bad("an index must be a non-negative integer"))?;
                        steps.push(Step::Index(n));
                    }
                    i += close + 1;
                }
                c => return Err(bad(&format!("unexpected '{c}'"))),
            }
        }
        Ok(JsonPath(steps))
    }

    fn find<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for step in &self.0 {
            v = match step {
                Step::Key(k) => v.as_object()?.get(k)?,
                Step::Index(n) => v.as_array()?.get(*n)?,
            };
        }
        Some(v)
    }
}

/// The `<output_type>` argument of the query converters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueryType {
    /// Strings as strings, booleans as booleans, numbers, arrays and objects
    /// as their JSON text.
    Auto,
    Int,
    Bool,
    Str,
}

impl QueryType {
    pub(crate) fn parse(s: Option<&str>) -> Result<QueryType, String> {
        match s.map(str::trim) {
            None | Some("") => Ok(QueryType::Auto),
            Some("int") => Ok(QueryType::Int),
            Some("bool") => Ok(QueryType::Bool),
            Some("str") => Ok(QueryType::Str),
            Some(other) => Err(format!(
                "unknown output type '{other}' (expected int, bool or str)"
            )),
        }
    }
}

fn to_sample(v: &Value, ty: QueryType) -> Option<Sample<'static>> {
    let text = |s: String| Some(Sample::Str(Cow::Owned(s)));
    match ty {
        QueryType::Auto => match v {
            Value::Null => None,
            Value::Bool(b) => Some(Sample::Bool(*b)),
            Value::String(s) => text(s.clone()),
            other => text(other.to_string()),
        },
        QueryType::Str => match v {
            Value::Null => None,
            Value::String(s) => text(s.clone()),
            other => text(other.to_string()),
        },
        QueryType::Int => match v {
            Value::Number(n) => Some(Sample::Int(match n.as_i64() {
                Some(i) => i,
                // out of range or fractional: saturating truncation
                None => n.as_f64()? as i64,
            })),
            Value::Bool(b) => Some(Sample::Int(i64::from(*b))),
            Value::String(s) => s.trim().parse::<i64>().ok().map(Sample::Int),
            _ => None,
        },
        QueryType::Bool => match v {
            Value::Bool(b) => Some(Sample::Bool(*b)),
            Value::Number(n) => Some(Sample::Bool(n.as_f64()? != 0.0)),
            Value::String(s) => match s.as_str() {
                "true" => Some(Sample::Bool(true)),
                "false" => Some(Sample::Bool(false)),
                _ => None,
            },
            _ => None,
        },
    }
}

/// `jwt_header_query` (`payload` false) / `jwt_payload_query`; no `path`:
/// the whole decoded JSON object.
pub(crate) fn query(
    token: &str,
    payload: bool,
    path: Option<&JsonPath>,
    ty: QueryType,
) -> Option<Sample<'static>> {
    let v = decode_part(token, payload)?;
    match path {
        Some(p) => to_sample(p.find(&v)?, ty),
        None => to_sample(&v, ty),
    }
}

// ------------------------------------------------------------ time claims

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `jwt_expired(<leeway>)` (`exp`) and `jwt_not_yet_valid(<leeway>)`
/// (`nbf`): `None` for a malformed token, false when the claim is absent,
/// true when it is present but not a number.
pub(crate) fn time_check(token: &str, expired: bool, leeway: i64, now: i64) -> Option<bool> {
    let v = decode_part(token, true)?;
    let claim = if expired { "exp" } else { "nbf" };
    let Some(c) = v.get(claim) else {
        return Some(false);
    };
    let Some(t) = c.as_i64().or_else(|| c.as_f64().map(|f| f as i64)) else {
        return Some(true);
    };
    Some(if expired {
        now >= t.saturating_add(leeway)
    } else {
        now.saturating_add(leeway) < t
    })
}

pub(crate) fn time_check_now(token: &str, expired: bool, leeway: i64) -> Option<bool> {
    time_check(token, expired, leeway, now())
}

// ------------------------------------------------------------ verification

const ALGS: &str =
    "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384 or HS512";

/// What kind of key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn of(alg: Algorithm) -> Family {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::ES256 => Family::P256,
            Algorithm::ES384 => Family::P384,
            Algorithm::EdDSA => Family::Ed25519,
            _ => Family::Rsa,
        }
    }

    fn algs(self) -> &'static [Algorithm] {
        match self {
            Family::Hmac => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            Family::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Family::P256 => &[Algorithm::ES256],
            Family::P384 => &[Algorithm::ES384],
            Family::Ed25519 => &[Algorithm::EdDSA],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Hmac => "an HMAC secret",
            Family::Rsa => "an RSA public key",
            Family::P256 => "an EC P-256 public key",
            Family::P384 => "an EC P-384 public key",
            Family::Ed25519 => "an Ed25519 public key",
        }
    }
}

pub(crate) fn parse_alg(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s.trim())
        .map_err(|_| format!("unknown or unsupported algorithm '{s}' (expected {ALGS})"))
}

/// An asymmetric public key from a PEM file: `PUBLIC KEY` (SPKI),
/// `RSA PUBLIC KEY` (PKCS#1) or `CERTIFICATE` (its subject's key).
fn pem_public_key(data: &[u8]) -> Result<(Family, DecodingKey), String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(data)
        .map_err(|_| "not a PEM file (no '-----BEGIN ...-----' block)".to_string())?;
    let from_spki = |spki: &SubjectPublicKeyInfo| -> Result<(Family, DecodingKey), String> {
        let key = spki.subject_public_key.data.as_ref();
        let oid = spki.algorithm.algorithm.to_id_string();
        match oid.as_str() {
            "1.2.840.113549.1.1.1" => Ok((Family::Rsa, DecodingKey::from_rsa_der(key))),
            "1.3.101.112" => Ok((Family::Ed25519, DecodingKey::from_ed_der(key))),
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => {
                        Ok((Family::P256, DecodingKey::from_ec_der(key)))
                    }
                    Some("1.3.132.0.34") => Ok((Family::P384, DecodingKey::from_ec_der(key))),
                    _ => Err("unsupported elliptic curve (expected P-256 or P-384)".to_string()),
                }
            }
            other => Err(format!("unsupported public key type (OID {other})")),
        }
    };
    match pem.label.as_str() {
        "PUBLIC KEY" => {
            let (_, spki) = SubjectPublicKeyInfo::from_der(&pem.contents)
                .map_err(|e| format!("invalid public key: {e}"))?;
            from_spki(&spki)
        }
        "CERTIFICATE" => {
            let (_, cert) = X509Certificate::from_der(&pem.contents)
                .map_err(|e| format!("invalid certificate: {e}"))?;
            from_spki(cert.public_key())
        }
        "RSA PUBLIC KEY" => Ok((Family::Rsa, DecodingKey::from_rsa_der(&pem.contents))),
        l if l.contains("PRIVATE KEY") => Err(format!(
            "is a private key ({l}); give the public key or a certificate"
        )),
        l => Err(format!(
            "unexpected PEM block '{l}' (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)"
        )),
    }
}

/// An HMAC secret: the file's bytes, less one trailing newline.
fn secret(data: &[u8]) -> Result<DecodingKey, String> {
    let s = data
        .strip_suffix(b"\r\n")
        .or_else(|| data.strip_suffix(b"\n"))
        .unwrap_or(data);
    if s.is_empty() {
        return Err("the secret is empty".to_string());
    }
    Ok(DecodingKey::from_secret(s))
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read '{path}': {e}"))
}

struct JwksKey {
    kid: String,
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

enum VerifierKind {
    Key { alg: Algorithm, key: DecodingKey },
    Jwks(Vec<JwksKey>),
}

/// A loaded `jwt_verify` / `jwt_verify_jwks` key (or key set).
pub(crate) struct Verifier {
    what: String,
    kind: VerifierKind,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Verifier {
    /// `jwt_verify(<alg>,<key file>)`: reads and checks the key now.
    pub(crate) fn load_key(alg: &str, path: &str) -> Result<Verifier, String> {
        let alg = parse_alg(alg)?;
        let data = read(path)?;
        let want = Family::of(alg);
        let key = if want == Family::Hmac {
            secret(&data).map_err(|e| format!("'{path}': {e}"))?
        } else {
            let (got, key) = pem_public_key(&data).map_err(|e| format!("'{path}': {e}"))?;
            if got != want {
                return Err(format!(
                    "'{path}' holds {}, but {alg:?} needs {}",
                    got.name(),
                    want.name()
                ));
            }
            key
        };
        Ok(Verifier {
            what: format!("jwt_verify({alg:?},{path})"),
            kind: VerifierKind::Key { alg, key },
        })
    }

    /// `jwt_verify_jwks(<jwks file>)`: every signing key needs a `kid`.
    pub(crate) fn load_jwks(path: &str) -> Result<Verifier, String> {
        let data = read(path)?;
        let set: JwkSet = serde_json::from_slice(&data)
            .map_err(|e| format!("'{path}': not a JSON Web Key Set: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let n = i + 1;
            let Some(kid) = jwk.common.key_id.clone() else {
                return Err(format!("'{path}': key {n} has no \"kid\""));
            };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::OctetKey(_) => Family::Hmac,
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => Family::P256,
                    EllipticCurve::P384 => Family::P384,
                    _ => {
                        return Err(format!(
                            "'{path}': key '{kid}': unsupported curve (expected P-256 or P-384)"
                        ))
                    }
                },
                AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                    EllipticCurve::Ed25519 => Family::Ed25519,
                    _ => {
                        return Err(format!(
                            "'{path}': key '{kid}': unsupported curve (expected Ed25519)"
                        ))
                    }
                },
            };
            let algs = match jwk.common.key_algorithm {
                None => family.algs().to_vec(),
                Some(ka) => {
                    let alg = key_alg(ka).ok_or_else(|| {
                        format!("'{path}': key '{kid}': \"alg\" {ka} is not a signature algorithm")
                    })?;
                    if Family::of(alg) != family {
                        return Err(format!(
                            "'{path}': key '{kid}': \"alg\" {ka} does not fit {}",
                            family.name()
                        ));
                    }
                    vec![alg]
                }
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("'{path}': key '{kid}': invalid key: {e}"))?;
            keys.push(JwksKey { kid, algs, key });
        }
        if keys.is_empty() {
            return Err(format!("'{path}': no signature key in the set"));
        }
        Ok(Verifier {
            what: format!("jwt_verify_jwks({path})"),
            kind: VerifierKind::Jwks(keys),
        })
    }

    /// 1 (valid signature) or one of the `VERIFY_*` codes.
    pub(crate) fn verify(&self, token: &str) -> i64 {
        let token = token.trim();
        let Some(p) = split(token) else {
            return VERIFY_INVALID_TOKEN;
        };
        let (Some(header), Some(_)) = (decode_json(p.header), decode_json(p.payload)) else {
            return VERIFY_INVALID_TOKEN;
        };
        if b64url_decode(p.signature).is_none() {
            return VERIFY_INVALID_TOKEN;
        }
        let Some(alg) = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| Algorithm::from_str(a).ok())
        else {
            // missing, "none", or an algorithm weir does not know
            return VERIFY_FAILED;
        };
        let key = match &self.kind {
            VerifierKind::Key { alg: want, key } => {
                if alg != *want {
                    return VERIFY_FAILED;
                }
                key
            }
            VerifierKind::Jwks(keys) => {
                let Some(kid) = header.get("kid").and_then(Value::as_str) else {
                    return VERIFY_UNKNOWN_KEY;
                };
                let Some(k) = keys.iter().find(|k| k.kid == kid) else {
                    return VERIFY_UNKNOWN_KEY;
                };
                if !k.algs.contains(&alg) {
                    return VERIFY_FAILED;
                }
                &k.key
            }
        };
        // the signing input is the first two parts as sent
        let message = &token[..p.header.len() + 1 + p.payload.len()];
        match jsonwebtoken::crypto::verify(p.signature, message.as_bytes(), key, alg) {
            Ok(true) => VERIFY_OK,
            _ => VERIFY_FAILED,
        }
    }
}

fn key_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/jwt");

    fn path(f: &str) -> String {
        format!("{DIR}/{f}")
    }

    fn rsa_enc() -> EncodingKey {
        EncodingKey::from_rsa_pem(&std::fs::read(path("priv.pem")).unwrap()).unwrap()
    }

    fn b64(s: &str) -> String {
        super::super::convert::base64_encode(s.as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    }

    fn rs256(claims: &Value) -> String {
        encode(&Header::new(Algorithm::RS256), claims, &rsa_enc()).unwrap()
    }

    #[test]
    fn bearer_tokens() {
        use super::super::fetch::bearer;
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer(b"bearer   tok  "), Some("tok"));
        assert_eq!(bearer(b"BEARER\ttok"), Some("tok"));
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Basic YTpi"), None);
        assert_eq!(bearer(b""), None);
    }

    #[test]
    fn paths() {
        let v = json!({"sub": "alice", "a": {"b": [1, {"c": true}]}, "x-y": 2});
        let q = |p: &str| JsonPath::parse(p).unwrap().find(&v).cloned();
        assert_eq!(q("$.sub"), Some(json!("alice")));
        assert_eq!(q("$.a.b[1].c"), Some(json!(true)));
        assert_eq!(q("$['x-y']"), Some(json!(2)));
        assert_eq!(q("$.x-y"), Some(json!(2)));
        assert_eq!(q("$"), Some(v.clone()));
        assert_eq!(q("$.nope"), None);
        assert_eq!(q("$.a.b[5]"), None);
        assert!(JsonPath::parse("sub").is_err());
        assert!(JsonPath::parse("$.").is_err());
        assert!(JsonPath::parse("$.a[x]").is_err());
        assert!(JsonPath::parse("$.a[1").is_err());
    }

    #[test]
    fn queries_and_types() {
        let t = rs256(&json!({"sub": "alice", "exp": 1700000000, "adm": true,
            "aud": ["a", "b"], "f": 1.5, "n": null, "s": "42"}));
        let p = |path: &str, ty| query(&t, true, Some(&JsonPath::parse(path).unwrap()), ty);
        let s = |x: &str| Some(Sample::Str(Cow::Owned(x.to_string())));
        assert_eq!(p("$.sub", QueryType::Auto), s("alice"));
        assert_eq!(p("$.exp", QueryType::Auto), s("1700000000"));
        assert_eq!(p("$.exp", QueryType::Int), Some(Sample::Int(1700000000)));
        assert_eq!(p("$.adm", QueryType::Auto), Some(Sample::Bool(true)));
        assert_eq!(p("$.adm", QueryType::Str), s("true"));
        assert_eq!(p("$.aud", QueryType::Auto), s(r#"["a","b"]"#));
        assert_eq!(p("$.aud[1]", QueryType::Auto), s("b"));
        assert_eq!(p("$.f", QueryType::Int), Some(Sample::Int(1)));
        assert_eq!(p("$.f", QueryType::Bool), Some(Sample::Bool(true)));
        assert_eq!(p("$.s", QueryType::Int), Some(Sample::Int(42)));
        assert_eq!(p("$.sub", QueryType::Int), None);
        assert_eq!(p("$.n", QueryType::Auto), None);
        assert_eq!(p("$.missing", QueryType::Auto), None);
        let h = |path: &str| {
            query(
                &t,
                false,
                Some(&JsonPath::parse(path).unwrap()),
                QueryType::Auto,
            )
        };
        assert_eq!(h("$.alg"), s("RS256"));
        assert_eq!(h("$.typ"), s("JWT"));
        // no path: the whole object
        assert_eq!(
            query(&t, false, None, QueryType::Auto),
            s(r#"{"alg":"RS256","typ":"JWT"}"#)
        );
        // malformed tokens give no sample
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            &format!("{}.{}.x", b64("{}"), b64("nope")),
        ] {
            assert_eq!(query(bad, true, None, QueryType::Auto), None, "{bad}");
        }
        // each converter decodes only its own part
        assert_eq!(query("!!!.e30.x", false, None, QueryType::Auto), None);
        assert_eq!(query("!!!.e30.x", true, None, QueryType::Auto), s("{}"));
        assert!(QueryType::parse(Some("float")).is_err());
    }

    #[test]
    fn time_claims() {
        let t = rs256(&json!({"exp": 1000, "nbf": 500}));
        assert_eq!(time_check(&t, true, 0, 999), Some(false));
        assert_eq!(time_check(&t, true, 0, 1000), Some(true));
        assert_eq!(time_check(&t, true, 10, 1005), Some(false));
        assert_eq!(time_check(&t, false, 0, 499), Some(true));
        assert_eq!(time_check(&t, false, 0, 500), Some(false));
        assert_eq!(time_check(&t, false, 5, 496), Some(false));
        let none = rs256(&json!({"sub": "x"}));
        assert_eq!(time_check(&none, true, 0, i64::MAX), Some(false));
        let bad = rs256(&json!({"exp": "soon"}));
        assert_eq!(time_check(&bad, true, 0, 0), Some(true));
        assert_eq!(time_check("x.y", true, 0, 0), None);
    }

    #[test]
    fn rs256_verify_and_confusion() {
        let v = Verifier::load_key("RS256", &path("pub.pem")).unwrap();
        let good = rs256(&json!({"sub": "alice"}));
        assert_eq!(v.verify(&good), VERIFY_OK);
        // another algorithm configured: the header's alg does not match
        let v384 = Verifier::load_key("RS384", &path("pub.pem")).unwrap();
        assert_eq!(v384.verify(&good), VERIFY_FAILED);
        // tampered payload
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(r#"{"sub":"mallory"}"#), parts[2]);
        assert_eq!(v.verify(&forged), VERIFY_FAILED);
        // alg none
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"sub":"alice"}"#)
        );
        assert_eq!(v.verify(&none), VERIFY_FAILED);
        // HS256 signed with the public key's bytes as the secret
        let pubkey = std::fs::read(path("pub.pem")).unwrap();
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "alice"}),
            &EncodingKey::from_secret(&pubkey),
        )
        .unwrap();
        assert_eq!(v.verify(&hs), VERIFY_FAILED);
        // malformed
        for bad in [
            "abc",
            "a.b",
            "a.b.c.d",
            &format!("{}.{}.%%%", parts[0], parts[1]),
            &format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
            &format!("{}.{}.{}", parts[0], b64("[1]"), parts[2]),
            &format!("{}.***.{}", parts[0], parts[2]),
        ] {
            assert_eq!(v.verify(bad), VERIFY_INVALID_TOKEN, "{bad}");
        }
    }

    #[test]
    fn hmac() {
        let v = Verifier::load_key("HS256", &path("hs256.key")).unwrap();
        let secret = std::fs::read(path("hs256.key")).unwrap();
        let t = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "a"}),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_eq!(v.verify(&t), VERIFY_OK);
        let wrong = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "a"}),
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        assert_eq!(v.verify(&wrong), VERIFY_FAILED);
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"sub": "a"}),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_eq!(v.verify(&hs512), VERIFY_FAILED);
    }

    #[test]
    fn ec_and_ed_keys_and_certificates() {
        let dir = tempfile::tempdir().unwrap();
        for (alg, kp_alg) in [
            (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384),
            (Algorithm::EdDSA, &rcgen::PKCS_ED25519),
        ] {
            let kp = rcgen::KeyPair::generate_for(kp_alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["jwt.test".into()])
                .unwrap()
                .self_signed(&kp)
                .unwrap();
            let pubf = dir.path().join("pub.pem");
            let certf = dir.path().join("cert.pem");
            std::fs::write(&pubf, kp.public_key_pem()).unwrap();
            std::fs::write(&certf, cert.pem()).unwrap();
            let enc = match alg {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()),
                _ => EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()),
            }
            .unwrap();
            let t = encode(&Header::new(alg), &json!({"sub": "x"}), &enc).unwrap();
            let name = format!("{alg:?}");
            for f in [&pubf, &certf] {
                let v = Verifier::load_key(&name, f.to_str().unwrap()).unwrap();
                assert_eq!(v.verify(&t), VERIFY_OK, "{name} {}", f.display());
            }
            // the wrong family for this key is a load error
            let e = Verifier::load_key("RS256", pubf.to_str().unwrap()).unwrap_err();
            assert!(e.contains("needs an RSA public key"), "{e}");
        }
    }

    #[test]
    fn load_errors() {
        let e = Verifier::load_key("none", &path("pub.pem")).unwrap_err();
        assert!(e.contains("unknown or unsupported algorithm 'none'"), "{e}");
        let e = Verifier::load_key("RS256", "/nonexistent/pub.pem").unwrap_err();
        assert!(e.contains("cannot read '/nonexistent/pub.pem'"), "{e}");
        let e = Verifier::load_key("RS256", &path("priv.pem")).unwrap_err();
        assert!(e.contains("is a private key"), "{e}");
        let e = Verifier::load_key("RS256", &path("hs256.key")).unwrap_err();
        assert!(e.contains("not a PEM file"), "{e}");
        let e = Verifier::load_key("ES256", &path("pub.pem")).unwrap_err();
        assert!(
            e.contains("holds an RSA public key, but ES256 needs an EC P-256"),
            "{e}"
        );
        let e = Verifier::load_jwks(&path("pub.pem")).unwrap_err();
        assert!(e.contains("not a JSON Web Key Set"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = Verifier::load_key("HS256", empty.to_str().unwrap()).unwrap_err();
        assert!(e.contains("the secret is empty"), "{e}");
    }

    #[test]
    fn jwks() {
        let v = Verifier::load_jwks(&path("jwks.json")).unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("weir-example-1".into());
        let good = encode(&h, &json!({"sub": "a"}), &rsa_enc()).unwrap();
        assert_eq!(v.verify(&good), VERIFY_OK);
        h.kid = Some("other".into());
        let unknown = encode(&h, &json!({"sub": "a"}), &rsa_enc()).unwrap();
        assert_eq!(v.verify(&unknown), VERIFY_UNKNOWN_KEY);
        let nokid = rs256(&json!({"sub": "a"}));
        assert_eq!(v.verify(&nokid), VERIFY_UNKNOWN_KEY);
        // the key says RS256: PS256 with the same key is refused
        let mut h = Header::new(Algorithm::PS256);
        h.kid = Some("weir-example-1".into());
        let ps = encode(&h, &json!({"sub": "a"}), &rsa_enc()).unwrap();
        assert_eq!(v.verify(&ps), VERIFY_FAILED);
    }
}
