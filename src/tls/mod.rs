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
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::acl::TlsInfo;

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
    /// `ciphersuites <list>` (TLS 1.3 suite names, `:`-separated, IANA names
    /// such as `TLS_AES_128_GCM_SHA256`); `None`: rustls defaults.
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
    _todo: Arc<()>,
}

impl std::fmt::Debug for BindTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindTls")
    }
}

impl PartialEq for BindTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self._todo, &other._todo)
    }
}
impl Eq for BindTls {}

impl BindTls {
    /// Loads and checks every certificate, key and CA file. `Err` names the
    /// file and what is wrong (unreadable, no certificate, no key, key does
    /// not match the certificate, ...); the `Vec` holds warnings (an expired
    /// or not yet valid certificate).
    pub fn build(opts: &BindSsl) -> Result<(BindTls, Vec<String>), String> {
        let _ = opts;
        Err("TLS is not implemented".into())
    }

    /// Runs the server side of the handshake, bounded by `timeout`. On
    /// failure, counts it in [`HANDSHAKE_FAILURES`] and returns the reason.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, TlsInfo), String> {
        let _ = (tcp, timeout);
        Err("TLS is not implemented".into())
    }
}

/// A compiled `server ... ssl` (rustls `ClientConfig` + the SNI to send).
#[derive(Clone)]
pub struct ServerTls {
    _todo: Arc<()>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self._todo, &other._todo)
    }
}
impl Eq for ServerTls {}

impl ServerTls {
    /// Loads the CA file and client certificate. `Err` as for [`BindTls::build`].
    pub fn build(opts: &ServerSsl) -> Result<(ServerTls, Vec<String>), String> {
        let _ = opts;
        Err("TLS is not implemented".into())
    }

    /// The client side of the handshake over `tcp`, presenting `sni` (a DNS
    /// name or an IP address; with verification on, the certificate must
    /// be valid for it). Returns the stream and the negotiated ALPN protocol.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        sni: &str,
    ) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>), String> {
        let _ = (tcp, sni);
        Err("TLS is not implemented".into())
    }
}
