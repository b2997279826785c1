//! Health-check keywords: the check options of a `server` line, `option
//! grpc-check | tcp-check | httpchk`, and the `tcp-check` / `http-check`
//! rules. The result is folded into [`HealthCheck`] when a backend is built.

use std::net::IpAddr;

use super::{Ctx, ProxyDraft, R};
use crate::config::keywords::OptionKind;
use crate::config::units::{parse_time, parse_u32};
use crate::config::{CheckParams, Expect, HealthCheck, HttpCheck, Pattern, TcpCheckRule};

/// Which `option` chose the check kind (the last one wins, like HAProxy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum CheckOption {
    #[default]
    Connect,
    Grpc(String),
    Tcp,
    Http,
}

/// A proxy's check settings so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct CheckDraft {
    pub option: CheckOption,
    pub tcp_rules: Vec<TcpCheckRule>,
    pub http: HttpCheck,
    /// `tcp-check` rules were written in this section (inherited ones are
    /// replaced, not extended, by a section's own rules).
    pub own_tcp: bool,
    /// Same for `http-check` lines.
    pub own_http: bool,
}

impl CheckDraft {
    /// Called when a section starts from a copy of its defaults.
    pub(crate) fn inherited(mut self) -> Self {
        self.own_tcp = false;
        self.own_http = false;
        self
    }

    /// The check the backend will run.
    pub(crate) fn finish(&self) -> HealthCheck {
        match &self.option {
            CheckOption::Connect => HealthCheck::Connect,
            CheckOption::Grpc(service) => HealthCheck::Grpc {
                service: service.clone(),
            },
            CheckOption::Tcp => HealthCheck::Tcp(self.tcp_rules.clone()),
            CheckOption::Http => HealthCheck::Http(self.http.clone()),
        }
    }
}

/// A check option of a `server` line (`inter`, `rise`, `port`, ...).
pub(crate) fn server_option(p: &mut CheckParams, word: &str, value: &str) -> R {
    let time = |v: &str| -> Result<std::time::Duration, String> {
        let t = parse_time(v)?;
        match t.is_zero() {
            true => Err("timer must be strictly positive".into()),
            false => Ok(t),
        }
    };
    match word {
        "inter" => p.inter = time(value)?,
        "fastinter" => p.fastinter = Some(time(value)?),
        "downinter" => p.downinter = Some(time(value)?),
        "rise" => p.rise = parse_u32(value, 1, u32::MAX)?,
        "fall" => p.fall = parse_u32(value, 1, u32::MAX)?,
        "port" => p.port = Some(parse_u32(value, 1, 65535)? as u16),
        "addr" => {
            let ip: IpAddr = value
                .parse()
                .map_err(|_| format!("invalid address '{value}' (expected an IP address)"))?;
            p.addr = Some(ip);
        }
        "check-proto" => {
            p.proto = Some(super::proto(value)?);
        }
        _ => return Err(format!("unknown check option '{word}'")),
    }
    Ok(())
}

/// `option grpc-check [<service>]`, `option tcp-check`, `option httpchk [...]`.
pub(crate) fn option(ctx: &mut Ctx, p: &mut ProxyDraft, kind: &OptionKind) -> R {
    if ctx.negated {
        ctx.max_args(1)?;
        let off = matches!(
            (&p.check.option, kind),
            (CheckOption::Grpc(_), OptionKind::GrpcCheck)
                | (CheckOption::Tcp, OptionKind::TcpCheck)
                | (CheckOption::Http, OptionKind::HttpChk)
        );
        if off {
            p.check.option = CheckOption::Connect;
        }
        return Ok(());
    }
    match kind {
        OptionKind::GrpcCheck => {
            ctx.max_args(2)?;
            let service = ctx.arg(2).unwrap_or("").to_string();
            p.check.option = CheckOption::Grpc(service);
        }
        OptionKind::TcpCheck => {
            ctx.max_args(1)?;
            p.check.option = CheckOption::Tcp;
        }
        _ => {
            let args: Vec<&str> = (2..5).filter_map(|i| ctx.arg(i)).collect();
            if ctx.arg(5).is_some() {
                return Err("'option httpchk' expects at most <method> <uri> <version>".into());
            }
            let h = &mut p.check.http;
            match args.as_slice() {
                [] => {}
                [uri] => h.uri = uri.to_string(),
                [meth, uri] => (h.method, h.uri) = (meth.to_string(), uri.to_string()),
                [meth, uri, ver, ..] => {
                    (h.method, h.uri) = (meth.to_string(), uri.to_string());
                    h.version = version(ver)?;
                }
            }
            p.check.option = CheckOption::Http;
        }
    }
    Ok(())
}

fn version(v: &str) -> Result<String, String> {
    match v {
        "HTTP/1.0" | "HTTP/1.1" => Ok(v.to_string()),
        "HTTP/2" | "HTTP/2.0" => Err(format!(
            "version '{v}' : use 'check-proto h2' on the server line for HTTP/2 checks"
        )),
        _ => Err(format!(
            "unsupported HTTP version '{v}' (expected HTTP/1.0 or HTTP/1.1)"
        )),
    }
}

/// Decodes a hex string (`send-binary`, `expect binary`).
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!(
            "invalid hex string '{s}' : odd number of digits ({})",
            s.len()
        ));
    }
    let digit = |i: usize, c: u8| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!(
                "invalid hex string : bad hex digit '{}' at position {}",
                char::from(c).escape_default(),
                i + 1
            )),
        }
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (i, pair) in bytes.chunks(2).enumerate() {
        if let [hi, lo] = pair {
            out.push(digit(2 * i, *hi)? << 4 | digit(2 * i + 1, *lo)?);
        }
    }
    Ok(out)
}

fn regex(s: &str) -> Result<String, String> {
    regex::bytes::Regex::new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("invalid regex '{s}' : {e}"))
}

/// HTTP status list: `200`, `200,204`, `200-399`.
fn statuses(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| -> Result<u16, String> { parse_u32(c, 100, 999).map(|n| n as u16) };
    let mut out = Vec::new();
    for part in s.split(',') {
        let range = match part.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => (code(part)?, code(part)?),
        };
        out.push(range);
    }
    Ok(out)
}

/// `expect [!] <matcher> <pattern>` starting at argument `i`.
fn expect(ctx: &Ctx, mut i: usize, http: bool) -> Result<Expect, String> {
    let who = if http { "http-check" } else { "tcp-check" };
    let matchers = if http {
        "'status', 'rstatus', 'string' and 'rstring'"
    } else {
        "'string', 'rstring', 'binary' and 'rbinary'"
    };
    let mut negate = false;
    if ctx.arg(i) == Some("!") {
        negate = true;
        i += 1;
    }
    let Some(matcher) = ctx.arg(i) else {
        return Err(format!(
            "'{who} expect' expects a matcher ({matchers}) and a pattern as arguments"
        ));
    };
    let Some(pat) = ctx.arg(i + 1) else {
        return Err(format!(
            "'{who} expect {matcher}' expects <pattern> as an argument"
        ));
    };
    if let Some(extra) = ctx.arg(i + 2) {
        return Err(format!(
            "'{who} expect {matcher}' : unexpected argument '{extra}'"
        ));
    }
    let pattern = match (matcher, http) {
        ("string", _) => Pattern::String(pat.as_bytes().to_vec()),
        ("rstring", _) => Pattern::Rstring(regex(pat)?),
        ("binary", false) => Pattern::Binary(parse_hex(pat)?),
        ("rbinary", false) => Pattern::Rbinary(regex(pat)?),
        ("status", true) => Pattern::Status(statuses(pat)?),
        ("rstatus", true) => Pattern::Rstatus(regex(pat)?),
        _ => {
            return Err(format!(
                "'{who} expect' only supports {matchers} (got '{matcher}')"
            ))
        }
    };
    Ok(Expect { negate, pattern })
}

/// `tcp-check <verb> ...`
pub(crate) fn tcp_check(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let verb = ctx.need(1, "<verb>")?;
    let rule = match verb {
        "comment" => return Ok(()),
        "connect" => {
            let mut port = None;
            let mut i = 2;
            while let Some(word) = ctx.arg(i) {
                match word {
                    "port" => {
                        let v = ctx
                            .arg(i + 1)
                            .ok_or("'tcp-check connect' : 'port' expects a number")?;
                        port = Some(
                            parse_u32(v, 1, 65535)
                                .map_err(|e| format!("'tcp-check connect port' : {e}"))?
                                as u16,
                        );
                        i += 2;
                    }
                    "ssl" | "send-proxy" | "via-socks4" | "sni" | "alpn" | "proto" | "addr"
                    | "linger" | "default" | "comment" => {
                        return Err(format!(
                            "'tcp-check connect {word}' is not supported yet"
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "'tcp-check connect' only supports 'port' (got '{word}')"
                        ))
                    }
                }
            }
            TcpCheckRule::Connect { port }
        }
        "send" | "send-binary" => {
            let Some(data) = ctx.arg(2) else {
                return Err(format!(
                    "'tcp-check {verb}' expects a <{}> as argument",
                    if verb == "send" { "string" } else { "hex-string" }
                ));
            };
            if let Some(extra) = ctx.arg(3) {
                return Err(format!("'tcp-check {verb}' : unexpected argument '{extra}'"));
            }
            match verb {
                "send" => TcpCheckRule::Send(data.as_bytes().to_vec()),
                _ => TcpCheckRule::Send(
                    parse_hex(data).map_err(|e| format!("'tcp-check send-binary' : {e}"))?,
                ),
            }
        }
        "expect" => TcpCheckRule::Expect(expect(ctx, 2, false)?),
        "send-lf" | "send-binary-lf" | "set-var" | "unset-var" | "action" => {
            return Err(format!("'tcp-check {verb}' is not supported yet"))
        }
        _ => {
            return Err(format!(
                "'tcp-check' only supports 'comment', 'connect', 'send', 'send-binary' and 'expect' (got '{verb}')"
            ))
        }
    };
    if !p.check.own_tcp {
        p.check.tcp_rules.clear();
        p.check.own_tcp = true;
    }
    p.check.tcp_rules.push(rule);
    Ok(())
}

/// `http-check send ...` / `http-check expect ...`
pub(crate) fn http_check(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let verb = ctx.need(1, "<verb>")?;
    if matches!(verb, "send" | "expect") && !p.check.own_http {
        p.check.http.headers.clear();
        p.check.http.expect = None;
        p.check.own_http = true;
    }
    match verb {
        "comment" => {}
        "send" => {
            let mut i = 2;
            while let Some(word) = ctx.arg(i) {
                let value = |j: usize| {
                    ctx.arg(i + j)
                        .ok_or_else(|| format!("'http-check send' : '{word}' expects an argument"))
                };
                let h = &mut p.check.http;
                match word {
                    "meth" => h.method = value(1)?.to_string(),
                    "uri" => h.uri = value(1)?.to_string(),
                    "ver" => h.version = version(value(1)?)?,
                    "hdr" => {
                        let (name, v) = (value(1)?, value(2)?);
                        h.headers.push((name.to_string(), v.to_string()));
                        i += 1;
                    }
                    "body" | "body-lf" | "uri-lf" | "hdr-lf" | "comment" => {
                        return Err(format!("'http-check send {word}' is not supported yet"))
                    }
                    _ => {
                        return Err(format!(
                            "'http-check send' only supports 'meth', 'uri', 'ver' and 'hdr' (got '{word}')"
                        ))
                    }
                }
                i += 2;
            }
        }
        "expect" => p.check.http.expect = Some(expect(ctx, 2, true)?),
        "connect" | "disable-on-404" | "send-state" | "set-var" | "unset-var" => {
            return Err(format!("'http-check {verb}' is not supported yet"))
        }
        _ => {
            return Err(format!(
                "'http-check' only supports 'comment', 'send' and 'expect' (got '{verb}')"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(parse_hex("00fFa1"), Ok(vec![0, 255, 0xa1]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert!(parse_hex("abc").unwrap_err().contains("odd number"));
        assert!(parse_hex("0g")
            .unwrap_err()
            .contains("bad hex digit 'g' at position 2"));
    }

    #[test]
    fn status_lists() {
        assert_eq!(statuses("200"), Ok(vec![(200, 200)]));
        assert_eq!(statuses("200-299,404"), Ok(vec![(200, 299), (404, 404)]));
        assert!(statuses("20x").is_err());
    }
}
