//! TLS on both sides, with rustls (ring provider): certificate loading and
//! checks at config load, SNI certificate selection, ALPN, client
//! certificate verification (mTLS) on `bind` lines, and verified TLS (with
//! optional client certificates) to servers.
//!
//! Public API used by the rest of weir (keep it stable):
//!
//! - [`BindSsl`] (the parsed `bind ... ssl` options) -> [`BindTls::build`] at
//!   config load; [`BindTls::accept`] per connection, giving the stream and
//!   its [`crate::acl::TlsInfo`].
//! - [`ServerSsl`] (the parsed `server ... ssl` options) -> [`ServerTls::build`]
//!   at config load; [`ServerTls::connect`] per upstream connection.
//! - [`HANDSHAKE_FAILURES`]: failed client handshakes since start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::acl::TlsInfo;

mod certs;
mod dn;
mod noverify;
mod params;
mod sni;
#[cfg(test)]
mod tests;

/// Client TLS handshakes that failed since start (all frontends).
pub static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// `ssl-min-ver` / `ssl-max-ver` values rustls can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `verify none|optional|required`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verify {
    #[default]
    None,
    Optional,
    Required,
}

/// The `ssl` options of one `bind` line, paths already joined with `crt-base`
/// / `ca-base`, global `ssl-default-bind-options` already applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindSsl {
    /// `crt <file|dir>` (repeatable): PEM files holding a certificate chain
    /// and its private key; a directory loads every `*.pem` file in it.
    /// The first certificate loaded is the default one (no SNI / no match).
    pub crts: Vec<PathBuf>,
    /// `alpn <list>`: protocols in preference order (e.g. `h2`, `http/1.1`).
    pub alpn: Vec<String>,
    /// `ca-file <file>`: CAs that client certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// `verify none|optional|required` (default none). `optional` and
    /// `required` need `ca-file`.
    pub verify: Verify,
    pub min_ver: Option<TlsVersion>,
    pub max_ver: Option<TlsVersion>,
    /// `ciphersuites <list>` (`:`-separated suite names: IANA names such as
    /// `TLS_AES_128_GCM_SHA256` or `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`,
    /// rustls names such as `TLS13_AES_128_GCM_SHA256`, or OpenSSL names of
    /// TLS 1.2 suites such as `ECDHE-RSA-AES128-GCM-SHA256`). The suites
    /// listed for a TLS version replace that version's defaults; a version
    /// with no suite listed keeps rustls' defaults. `None`: rustls defaults.
    pub ciphersuites: Option<String>,
}

/// The `ssl` options of one `server` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSsl {
    /// `verify required` (default) or `verify none`.
    pub verify: bool,
    /// `ca-file <file>`: CAs the server certificate must chain to (needed
    /// with verification).
    pub ca_file: Option<PathBuf>,
    /// `crt <file>`: client certificate + key (PEM) for servers that want mTLS.
    pub crt: Option<PathBuf>,
    /// `alpn <list>`; default `h2` for `proto h2` servers, `http/1.1` otherwise.
    pub alpn: Vec<String>,
    pub min_ver: Option<TlsVersion>,
    pub max_ver: Option<TlsVersion>,
    pub ciphersuites: Option<String>,
}

impl Default for ServerSsl {
    fn default() -> Self {
        ServerSsl {
            verify: true,
            ca_file: None,
            crt: None,
            alpn: Vec::new(),
            min_ver: None,
            max_ver: None,
            ciphersuites: None,
        }
    }
}

/// A compiled `bind ... ssl` (rustls `ServerConfig` + what logs need).
#[derive(Clone)]
pub struct BindTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for BindTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindTls")
    }
}

impl PartialEq for BindTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}
impl Eq for BindTls {}

fn alpn_bytes(alpn: &[String]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
}

impl BindTls {
    /// Loads and checks every certificate, key and CA file. `Err` names the
    /// file and what is wrong (unreadable, no certificate, no key, key does
    /// not match the certificate, ...); the `Vec` holds warnings (an expired
    /// or not yet valid certificate).
    pub fn build(opts: &BindSsl) -> Result<(BindTls, Vec<String>), String> {
        let mut warnings = Vec::new();
        let versions = params::versions(opts.min_ver, opts.max_ver)?;
        let provider = Arc::new(params::provider(opts.ciphersuites.as_deref())?);

        if opts.crts.is_empty() {
            return Err("'ssl' needs at least one 'crt' (certificate and key file)".into());
        }
        let mut entries = Vec::new();
        for path in &opts.crts {
            for c in certs::load_crt_path(path, &provider, &mut warnings)? {
                entries.push((c.names, c.certified));
            }
        }

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| suites_error(opts.ciphersuites.as_deref(), &e))?;
        let builder = match opts.verify {
            Verify::None => builder.with_no_client_auth(),
            Verify::Optional | Verify::Required => {
                let which = if opts.verify == Verify::Required {
                    "required"
                } else {
                    "optional"
                };
                let Some(ca) = &opts.ca_file else {
                    return Err(format!(
                        "'verify {which}' needs a 'ca-file' to check client certificates against"
                    ));
                };
                let roots = Arc::new(certs::load_ca_file(ca)?);
                let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                );
                if opts.verify == Verify::Optional {
                    v = v.allow_unauthenticated();
                }
                let v = v
                    .build()
                    .map_err(|e| format!("unable to use CA file '{}': {e}", ca.display()))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(sni::SniResolver::new(entries)));
        config.alpn_protocols = alpn_bytes(&opts.alpn);
        Ok((
            BindTls {
                config: Arc::new(config),
            },
            warnings,
        ))
    }

    /// Runs the server side of the handshake, bounded by `timeout`. On
    /// failure, counts it in [`HANDSHAKE_FAILURES`] and returns the reason.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, TlsInfo), String> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                return Err(format!("TLS handshake failed: {e}"));
            }
            Err(_) => {
                HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                return Err(format!(
                    "TLS handshake timed out after {}ms",
                    timeout.as_millis()
                ));
            }
        };
        let conn = stream.get_ref().1;
        // A certificate that verified but whose names do not parse still
        // counts as presented (`ssl_c_used`), with empty DNs.
        let (client_subject, client_issuer) = match conn.peer_certificates().and_then(|c| c.first())
        {
            Some(c) => match dn::subject_issuer(c) {
                Some((s, i)) => (Some(s), Some(i)),
                None => (Some(String::new()), Some(String::new())),
            },
            None => (None, None),
        };
        let info = TlsInfo {
            sni: conn.server_name().map(str::to_string),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            version: conn.protocol_version().and_then(params::protocol_name),
            client_subject,
            client_issuer,
        };
        Ok((stream, info))
    }
}

fn suites_error(ciphersuites: Option<&str>, e: &rustls::Error) -> String {
    match ciphersuites {
        Some(list) => {
            format!("no cipher suite of '{list}' can be used with the enabled TLS versions ({e})")
        }
        None => format!("unusable TLS settings: {e}"),
    }
}

/// A compiled `server ... ssl` (rustls `ClientConfig` + the SNI to send).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}
impl Eq for ServerTls {}

impl ServerTls {
    /// Loads the CA file and client certificate. `Err` as for [`BindTls::build`].
    pub fn build(opts: &ServerSsl) -> Result<(ServerTls, Vec<String>), String> {
        let mut warnings = Vec::new();
        let versions = params::versions(opts.min_ver, opts.max_ver)?;
        let provider = Arc::new(params::provider(opts.ciphersuites.as_deref())?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| suites_error(opts.ciphersuites.as_deref(), &e))?;
        let builder = if opts.verify {
            let Some(ca) = &opts.ca_file else {
                return Err("verify is enabled by default but no CA file specified; set 'ca-file <file>' to check the server certificate, or 'verify none' to skip the check".into());
            };
            builder.with_root_certificates(certs::load_ca_file(ca)?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(noverify::NoVerify(provider.clone())))
        };
        let mut config = match &opts.crt {
            Some(path) => {
                let c = certs::load_cert_file(path, &provider, &mut warnings)?;
                builder
                    .with_client_auth_cert(c.chain, c.key_der)
                    .map_err(|e| format!("unable to use '{}': {e}", c.path.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn_bytes(&opts.alpn);
        Ok((
            ServerTls {
                config: Arc::new(config),
            },
            warnings,
        ))
    }

    /// The client side of the handshake over `tcp`, presenting `sni` (a DNS
    /// name or an IP address; with verification on, the certificate must
    /// be valid for it). Returns the stream and the negotiated ALPN protocol.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        sni: &str,
    ) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>), String> {
        let name = ServerName::try_from(sni.to_string())
            .map_err(|e| format!("TLS handshake with {sni} failed: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {sni} failed: {e}"))?;
        let alpn = stream.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        Ok((stream, alpn))
    }
}
