//! Protocol versions and cipher suites.

use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::TlsVersion;

fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLSv1.2",
        TlsVersion::Tls13 => "TLSv1.3",
    }
}

/// `ssl-min-ver` / `ssl-max-ver` (defaults TLSv1.2 / TLSv1.3).
pub(crate) fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let min = min.unwrap_or(TlsVersion::Tls12);
    let max = max.unwrap_or(TlsVersion::Tls13);
    if min > max {
        return Err(format!(
            "ssl-min-ver {} is above ssl-max-ver {}",
            version_name(min),
            version_name(max)
        ));
    }
    let mut out = Vec::new();
    if min <= TlsVersion::Tls12 {
        out.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// rustls names a suite `TLS13_AES_128_GCM_SHA256` or
/// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
fn rustls_name(s: &SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

/// The IANA (and OpenSSL `ciphersuites`) spelling: `TLS_AES_128_GCM_SHA256`.
pub(crate) fn iana_name(s: &SupportedCipherSuite) -> String {
    let n = rustls_name(s);
    match n.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => n,
    }
}

/// OpenSSL's name for the TLS 1.2 suites rustls has.
fn openssl_name(iana: &str) -> Option<&'static str> {
    Some(match iana {
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => return None,
    })
}

fn matches(s: &SupportedCipherSuite, name: &str) -> bool {
    let iana = iana_name(s);
    name.eq_ignore_ascii_case(&iana)
        || name.eq_ignore_ascii_case(&rustls_name(s))
        || openssl_name(&iana).is_some_and(|o| name.eq_ignore_ascii_case(o))
}

/// `ciphersuites <list>`: `:`-separated suite names. Suites of a TLS
/// version named in the list replace that version's suites (in list order);
/// a version with no suite in the list keeps the provider's defaults, so
/// that `ciphersuites TLS_AES_128_GCM_SHA256` (TLS 1.3 only, as in HAProxy)
/// leaves TLS 1.2 working.
pub(crate) fn apply_ciphersuites(provider: &mut CryptoProvider, list: &str) -> Result<(), String> {
    let all = provider.cipher_suites.clone();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in list.split(':').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(s) = all.iter().find(|s| matches(s, name)) else {
            let known: Vec<String> = all.iter().map(iana_name).collect();
            return Err(format!(
                "unknown cipher suite '{name}' (known: {})",
                known.join(", ")
            ));
        };
        if !chosen.iter().any(|c| c.suite() == s.suite()) {
            chosen.push(*s);
        }
    }
    if chosen.is_empty() {
        return Err("empty cipher suite list".into());
    }
    let mut out = Vec::new();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let listed: Vec<_> = chosen
            .iter()
            .filter(|s| s.version() == v)
            .copied()
            .collect();
        if listed.is_empty() {
            out.extend(all.iter().filter(|s| s.version() == v).copied());
        } else {
            out.extend(listed);
        }
    }
    provider.cipher_suites = out;
    Ok(())
}

/// A provider for one config: ring, with `ciphersuites` applied.
pub(crate) fn provider(ciphersuites: Option<&str>) -> Result<CryptoProvider, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(list) = ciphersuites {
        apply_ciphersuites(&mut p, list)?;
    }
    Ok(p)
}

pub(crate) fn protocol_name(v: rustls::ProtocolVersion) -> Option<&'static str> {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        _ => None,
    }
}
