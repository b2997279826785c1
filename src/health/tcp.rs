//! The default check (a TCP connection opens) and `option tcp-check` rules.
//!
//! Rules run in order on one connection. The first rule opens it when it is
//! not a `connect`; a later `connect` closes it and opens a new one.
//! `expect` rules are evaluated against every byte received so far on the
//! current connection, reading more until the pattern matches, the server
//! closes (failure) or the check times out. A negated rule (`expect !`)
//! succeeds as soon as some bytes (or the end of the stream) have arrived
//! without the pattern in them, and fails as soon as the pattern appears.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{io_info, Outcome, Progress};
use crate::backend::pool::UpstreamTls;
use crate::config::{Expect, Pattern, TcpCheckRule};

/// Most bytes an `expect` rule looks at (HAProxy's check buffer is 16 kB).
const MAX_RECEIVED: usize = 64 * 1024;

/// A check connection: plain TCP, or TLS with `check-ssl`.
pub(crate) trait CheckStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> CheckStream for T {}
pub(crate) type CheckIo = Box<dyn CheckStream>;

/// Opens a connection; failure is a `Layer4 connection problem`, a failed
/// TLS handshake (`check-ssl`) a `Layer6 invalid response`.
pub(crate) async fn open(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    progress: &Progress,
) -> Result<CheckIo, Outcome> {
    let s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return Err(Outcome::fail(
                "Layer4 connection problem",
                Some(io_info(&e)),
            ))
        }
    };
    let _ = s.set_nodelay(true);
    progress.connected.store(true, Ordering::Release);
    let Some(tls) = tls else {
        return Ok(Box::new(s));
    };
    match tls.tls.connect(s, &tls.name).await {
        Ok((s, _)) => Ok(Box::new(s)),
        Err(e) => Err(Outcome::fail("Layer6 invalid response", Some(e))),
    }
}

/// The default check: a connection opens (and, with `check-ssl`, its TLS
/// handshake succeeds).
pub(crate) async fn connect_only(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    progress: &Progress,
) -> Outcome {
    match open(addr, tls, progress).await {
        Ok(_) if tls.is_some() => Outcome::pass("Layer6 check passed"),
        Ok(_) => Outcome::pass("Layer4 check passed"),
        Err(o) => o,
    }
}

/// Runs `tcp-check` rules.
pub(crate) async fn run_rules(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    rules: &[TcpCheckRule],
    progress: &Progress,
) -> Outcome {
    match run(addr, tls, rules, progress).await {
        Ok(layer7) if layer7 => Outcome::pass("Layer7 check passed"),
        Ok(_) => Outcome::pass("Layer4 check passed"),
        Err(o) => o,
    }
}

struct Conn {
    stream: CheckIo,
    received: Vec<u8>,
    eof: bool,
}

/// Ok(true) when a send or expect rule ran (a layer-7 success).
async fn run(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    rules: &[TcpCheckRule],
    progress: &Progress,
) -> Result<bool, Outcome> {
    let mut conn: Option<Conn> = None;
    let mut layer7 = false;
    for (i, rule) in rules.iter().enumerate() {
        let step = i + 1;
        progress.step.store(step, Ordering::Release);
        if let TcpCheckRule::Connect { port } = rule {
            let target = SocketAddr::new(addr.ip(), port.unwrap_or(addr.port()));
            conn = Some(new_conn(target, tls, progress).await?);
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => conn.insert(new_conn(addr, tls, progress).await?),
        };
        layer7 = true;
        match rule {
            TcpCheckRule::Send(data) => {
                if let Err(e) = c.stream.write_all(data).await {
                    return Err(Outcome::fail(
                        "Layer4 connection problem",
                        Some(format!(
                            "{} at step {step} of tcp-check (send)",
                            io_info(&e)
                        )),
                    ));
                }
            }
            TcpCheckRule::Expect(e) => expect(c, e, step).await?,
            TcpCheckRule::Connect { .. } => {}
        }
    }
    if conn.is_none() {
        new_conn(addr, tls, progress).await?;
    }
    Ok(layer7)
}

async fn new_conn(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    progress: &Progress,
) -> Result<Conn, Outcome> {
    Ok(Conn {
        stream: open(addr, tls, progress).await?,
        received: Vec::new(),
        eof: false,
    })
}

async fn expect(c: &mut Conn, e: &Expect, step: usize) -> Result<(), Outcome> {
    let m = Matcher::new(&e.pattern);
    let mismatch = || {
        let info = format!(
            "TCPCHK {} content '{}' at step {step}",
            if e.negate {
                "matched unwanted"
            } else {
                "did not match"
            },
            m.shown
        );
        Outcome::fail("Layer7 invalid response", Some(info))
    };
    let mut buf = [0u8; 8192];
    loop {
        let found = m.matches(&c.received);
        match (found, e.negate) {
            (true, false) => return Ok(()),
            (true, true) => return Err(mismatch()),
            (false, true) if c.eof || !c.received.is_empty() => return Ok(()),
            (false, false) if c.eof || c.received.len() >= MAX_RECEIVED => return Err(mismatch()),
            _ => {}
        }
        match c.stream.read(&mut buf).await {
            Ok(0) => c.eof = true,
            Ok(n) => c.received.extend_from_slice(&buf[..n]),
            Err(err) => {
                return Err(Outcome::fail(
                    "Layer4 connection problem",
                    Some(format!(
                        "{} at step {step} of tcp-check (expect)",
                        io_info(&err)
                    )),
                ))
            }
        }
    }
}

/// An `expect` pattern ready to run.
pub(crate) struct Matcher {
    kind: Kind,
    /// The pattern as written, for messages.
    pub shown: String,
}

enum Kind {
    Bytes(Vec<u8>),
    Regex(Option<regex::bytes::Regex>),
    HexRegex(Option<regex::bytes::Regex>),
    /// HTTP status matchers: never match bytes.
    Never,
}

impl Matcher {
    pub(crate) fn new(p: &Pattern) -> Matcher {
        // Regexes were validated by the parser; a failure here matches nothing.
        let re = |s: &str| regex::bytes::Regex::new(s).ok();
        let (kind, shown) = match p {
            Pattern::String(b) => (
                Kind::Bytes(b.clone()),
                String::from_utf8_lossy(b).into_owned(),
            ),
            Pattern::Binary(b) => (Kind::Bytes(b.clone()), to_hex(b)),
            Pattern::Rstring(r) => (Kind::Regex(re(r)), r.clone()),
            Pattern::Rbinary(r) => (Kind::HexRegex(re(r)), r.clone()),
            Pattern::Status(_) | Pattern::Rstatus(_) => (Kind::Never, String::new()),
        };
        Matcher { kind, shown }
    }

    pub(crate) fn matches(&self, data: &[u8]) -> bool {
        match &self.kind {
            Kind::Bytes(needle) => contains(data, needle),
            Kind::Regex(re) => re.as_ref().is_some_and(|re| re.is_match(data)),
            Kind::HexRegex(re) => re
                .as_ref()
                .is_some_and(|re| re.is_match(to_hex(data).as_bytes())),
            Kind::Never => false,
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Upper-case hex, as HAProxy's `rbinary` sees the response.
fn to_hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        let m = Matcher::new(&Pattern::Binary(b"OK".to_vec()));
        assert!(m.matches(b"xxOKyy"));
        assert!(!m.matches(b"xxO"));
        assert_eq!(m.shown, "4F4B");
        let m = Matcher::new(&Pattern::Rbinary("^4F4B".into()));
        assert!(m.matches(b"OK!"));
        let m = Matcher::new(&Pattern::Rstring("^\\+OK".into()));
        assert!(m.matches(b"+OK ready"));
        assert!(!m.matches(b"-ERR"));
    }
}
