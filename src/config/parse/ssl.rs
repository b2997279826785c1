//! TLS keywords: `bind ... ssl crt ...` and `server ... ssl ...` options,
//! and the `global` TLS defaults (`ssl-default-bind-options`, `ca-base`,
//! ...). Options are parsed here; certificates are loaded and checked when
//! the whole file is known ([`finish_bind`], [`finish_server`]), so that
//! `global` defaults and bases apply whatever the order of lines.

use std::path::{Path, PathBuf};

use super::{Ctx, R};
use crate::config::{Bind, Global, Mode, Proto, Server, SslDefaults};
use crate::tls::{BindSsl, BindTls, ServerTls, TlsVersion, Verify};

/// `TLSv1.2` / `TLSv1.3`.
pub(crate) fn version(v: &str) -> Result<TlsVersion, String> {
    match v {
        "TLSv1.2" => Ok(TlsVersion::Tls12),
        "TLSv1.3" => Ok(TlsVersion::Tls13),
        "SSLv3" | "TLSv1.0" | "TLSv1.1" => Err(format!(
            "'{v}' is not supported (weir speaks TLSv1.2 and TLSv1.3)"
        )),
        _ => Err(format!(
            "unknown TLS version '{v}' (expected TLSv1.2 or TLSv1.3)"
        )),
    }
}

/// The version-related flags shared by bind and server lines and the
/// `ssl-default-*-options` keywords. Returns whether `word` was one.
fn version_flag(word: &str, min: &mut Option<TlsVersion>, max: &mut Option<TlsVersion>) -> bool {
    match word {
        "no-tlsv13" => *max = Some(TlsVersion::Tls12),
        "no-tlsv12" => *min = Some(TlsVersion::Tls13),
        "force-tlsv12" => {
            *min = Some(TlsVersion::Tls12);
            *max = Some(TlsVersion::Tls12);
        }
        "force-tlsv13" => {
            *min = Some(TlsVersion::Tls13);
            *max = Some(TlsVersion::Tls13);
        }
        // rustls never speaks these: nothing to turn off.
        "no-sslv3" | "no-tlsv10" | "no-tlsv11" => {}
        _ => return false,
    }
    true
}

/// Options of `ssl-default-bind-options` / `ssl-default-server-options`.
fn default_options(ctx: &mut Ctx, d: &mut SslDefaults) -> R {
    let words = &ctx.words[1..];
    if words.is_empty() {
        return Err("missing <options>".into());
    }
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if version_flag(w, &mut d.min_ver, &mut d.max_ver) {
            i += 1;
            continue;
        }
        match w {
            "ssl-min-ver" | "ssl-max-ver" => {
                let v = words
                    .get(i + 1)
                    .ok_or_else(|| format!("'{w}' : missing value (expected TLSv1.2 or TLSv1.3)"))?;
                let v = Some(version(v).map_err(|e| format!("'{w}' : {e}"))?);
                if w == "ssl-min-ver" {
                    d.min_ver = v;
                } else {
                    d.max_ver = v;
                }
                i += 2;
            }
            "no-tls-tickets" | "prefer-client-ciphers" | "strict-sni" => {
                ctx.warn_plain(format!("'{w}' has no effect in weir yet, ignored"));
                i += 1;
            }
            _ => {
                return Err(format!(
                    "unknown option '{w}' (expected ssl-min-ver, ssl-max-ver, no-tlsv12, no-tlsv13, force-tlsv12, force-tlsv13, no-sslv3, no-tlsv10, no-tlsv11)"
                ))
            }
        }
    }
    Ok(())
}

pub(crate) fn global_bind_options(ctx: &mut Ctx, g: &mut Global) -> R {
    default_options(ctx, &mut g.ssl_bind)
}

pub(crate) fn global_server_options(ctx: &mut Ctx, g: &mut Global) -> R {
    default_options(ctx, &mut g.ssl_server)
}

pub(crate) fn global_bind_ciphersuites(ctx: &mut Ctx, g: &mut Global) -> R {
    g.ssl_bind.ciphersuites = Some(ctx.single("<ciphersuites>")?.to_string());
    Ok(())
}

pub(crate) fn global_server_ciphersuites(ctx: &mut Ctx, g: &mut Global) -> R {
    g.ssl_server.ciphersuites = Some(ctx.single("<ciphersuites>")?.to_string());
    Ok(())
}

pub(crate) fn global_ciphers(ctx: &mut Ctx, _: &mut Global) -> R {
    ctx.single("<ciphers>")?;
    let kw = ctx.kw.clone();
    ctx.warn_plain(format!(
        "'{kw}' (OpenSSL cipher strings) has no effect in weir, ignored: rustls uses its own safe TLS 1.2 suites; use '{kw}uites' to choose suites"
    ));
    Ok(())
}

pub(crate) fn global_server_verify(ctx: &mut Ctx, g: &mut Global) -> R {
    g.ssl_server.verify = Some(match ctx.single("none | required")? {
        "none" => false,
        "required" => true,
        other => {
            return Err(format!(
                "unknown value '{other}' (expected none or required)"
            ))
        }
    });
    Ok(())
}

pub(crate) fn global_ca_base(ctx: &mut Ctx, g: &mut Global) -> R {
    g.ca_base = Some(PathBuf::from(ctx.single("<directory>")?));
    Ok(())
}

pub(crate) fn global_crt_base(ctx: &mut Ctx, g: &mut Global) -> R {
    g.crt_base = Some(PathBuf::from(ctx.single("<directory>")?));
    Ok(())
}

/// Parses the TLS option at `words[i]` of a `bind` line into `ssl`.
/// Returns the number of words used, or `None` when `words[i]` is not a
/// TLS option. `on` is set by the `ssl` keyword itself.
pub(crate) fn bind_option(
    ctx: &mut Ctx,
    i: usize,
    ssl: &mut BindSsl,
    on: &mut bool,
) -> Result<Option<usize>, String> {
    let Some(word) = ctx.arg(i) else {
        return Ok(None);
    };
    let value = |what: &str| {
        ctx.arg(i + 1)
            .ok_or_else(|| format!("'{word}' : missing value (expected {what})"))
    };
    if version_flag(word, &mut ssl.min_ver, &mut ssl.max_ver) {
        return Ok(Some(1));
    }
    match word {
        "ssl" => *on = true,
        "crt" => {
            ssl.crts
                .push(PathBuf::from(value("a PEM file or a directory")?));
            return Ok(Some(2));
        }
        "alpn" => {
            ssl.alpn = value("a protocol list such as h2,http/1.1")?
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            return Ok(Some(2));
        }
        "ca-file" => {
            ssl.ca_file = Some(PathBuf::from(value("a PEM file")?));
            return Ok(Some(2));
        }
        "verify" => {
            ssl.verify = match value("none, optional or required")? {
                "none" => Verify::None,
                "optional" => Verify::Optional,
                "required" => Verify::Required,
                other => {
                    return Err(format!(
                        "'verify' : unknown value '{other}' (expected none, optional or required)"
                    ))
                }
            };
            return Ok(Some(2));
        }
        "ssl-min-ver" | "ssl-max-ver" => {
            let v = version(value("TLSv1.2 or TLSv1.3")?).map_err(|e| format!("'{word}' : {e}"))?;
            if word == "ssl-min-ver" {
                ssl.min_ver = Some(v);
            } else {
                ssl.max_ver = Some(v);
            }
            return Ok(Some(2));
        }
        "ciphersuites" => {
            ssl.ciphersuites = Some(value("a list of TLS 1.3 suites")?.to_string());
            return Ok(Some(2));
        }
        "ciphers" => {
            value("an OpenSSL cipher string")?;
            ctx.warn_plain(
                "'ciphers' (OpenSSL cipher strings) has no effect in weir, ignored: rustls uses its own safe TLS 1.2 suites; use 'ciphersuites' to choose suites".into(),
            );
            return Ok(Some(2));
        }
        "no-tls-tickets" | "prefer-client-ciphers" => {
            ctx.warn_plain(format!("'{word}' has no effect in weir yet, ignored"));
        }
        _ => return Ok(None),
    }
    Ok(Some(1))
}

/// Parses the TLS option `word` (with its `value`) of a `server` or
/// `default-server` line. Returns the number of words used, or `None`.
pub(crate) fn server_option(
    word: &str,
    value: Option<&str>,
    s: &mut Server,
) -> Result<Option<usize>, String> {
    let value =
        |what: &str| value.ok_or_else(|| format!("'{word}' : missing value (expected {what})"));
    if version_flag(word, &mut s.ssl_opts.min_ver, &mut s.ssl_opts.max_ver) {
        return Ok(Some(1));
    }
    match word {
        "ssl" | "no-ssl" => s.ssl = word == "ssl",
        "check-ssl" | "no-check-ssl" => s.check_ssl = Some(word == "check-ssl"),
        "verify" => {
            s.verify = Some(match value("none or required")? {
                "none" => false,
                "required" => true,
                other => {
                    return Err(format!(
                        "'verify' : unknown value '{other}' (expected none or required)"
                    ))
                }
            });
            return Ok(Some(2));
        }
        "ca-file" => {
            s.ssl_opts.ca_file = Some(PathBuf::from(value("a PEM file")?));
            return Ok(Some(2));
        }
        "crt" => {
            s.ssl_opts.crt = Some(PathBuf::from(value("a PEM file")?));
            return Ok(Some(2));
        }
        "alpn" => {
            s.ssl_opts.alpn = value("a protocol list such as h2")?
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            return Ok(Some(2));
        }
        "sni" => {
            let text = value("an expression such as str(api.example.com) or req.hdr(host)")?;
            match constant_sni(text) {
                Some(name) => {
                    s.sni = Some(name);
                    s.sni_expr = None;
                }
                None => {
                    let expr = crate::acl::Expr::parse(text, crate::acl::Stage::Request)
                        .map_err(|e| format!("'sni' : {e}"))?;
                    s.sni_expr = Some(crate::config::SniExpr {
                        text: text.to_string(),
                        expr,
                    });
                }
            }
            return Ok(Some(2));
        }
        "verifyhost" => {
            let host = value("a host name")?;
            if s.sni.is_none() {
                s.sni = Some(host.to_string());
            }
            return Ok(Some(2));
        }
        "check-sni" => {
            s.check_sni = Some(value("a host name")?.to_string());
            return Ok(Some(2));
        }
        "ssl-min-ver" | "ssl-max-ver" => {
            let v = version(value("TLSv1.2 or TLSv1.3")?).map_err(|e| format!("'{word}' : {e}"))?;
            if word == "ssl-min-ver" {
                s.ssl_opts.min_ver = Some(v);
            } else {
                s.ssl_opts.max_ver = Some(v);
            }
            return Ok(Some(2));
        }
        "ciphersuites" => {
            s.ssl_opts.ciphersuites = Some(value("a list of TLS 1.3 suites")?.to_string());
            return Ok(Some(2));
        }
        _ => return Ok(None),
    }
    Ok(Some(1))
}

/// `sni str(<name>)`: a constant name (the common case, one pool).
fn constant_sni(expr: &str) -> Option<String> {
    let name = expr.strip_prefix("str(")?.strip_suffix(')')?;
    (!name.is_empty()).then(|| name.to_string())
}

fn join(base: &Option<PathBuf>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

/// Loads a `bind` line's certificates (errors and warnings are the
/// caller's to report at the line).
pub(crate) fn finish_bind(
    b: &mut Bind,
    mode: Mode,
    global: &Global,
) -> Result<Vec<String>, String> {
    let Some(ssl) = &b.ssl else {
        return Ok(Vec::new());
    };
    let mut ssl = ssl.clone();
    if ssl.crts.is_empty() {
        return Err("'ssl' needs at least one 'crt <file|dir>'".into());
    }
    ssl.crts = ssl.crts.iter().map(|c| join(&global.crt_base, c)).collect();
    ssl.ca_file = ssl.ca_file.as_ref().map(|c| join(&global.ca_base, c));
    ssl.min_ver = ssl.min_ver.or(global.ssl_bind.min_ver);
    ssl.max_ver = ssl.max_ver.or(global.ssl_bind.max_ver);
    if ssl.ciphersuites.is_none() {
        ssl.ciphersuites = global.ssl_bind.ciphersuites.clone();
    }
    if ssl.alpn.is_empty() && mode == Mode::Http {
        // HAProxy 2.8's default for HTTP frontends.
        ssl.alpn = match b.proto {
            Some(Proto::H2) => vec!["h2".into()],
            Some(Proto::H1) => vec!["http/1.1".into()],
            None => vec!["h2".into(), "http/1.1".into()],
        };
    }
    let (tls, warnings) = BindTls::build(&ssl)?;
    b.ssl = Some(ssl);
    b.tls = Some(tls);
    Ok(warnings)
}

/// Loads a `server` line's TLS settings.
pub(crate) fn finish_server(s: &mut Server, global: &Global) -> Result<Vec<String>, String> {
    // `check-ssl` alone: checks use TLS with the server's TLS settings.
    if !s.ssl && s.check_ssl != Some(true) {
        return Ok(Vec::new());
    }
    let o = &mut s.ssl_opts;
    o.verify = s.verify.or(global.ssl_server.verify).unwrap_or(true);
    o.ca_file = o.ca_file.as_ref().map(|c| join(&global.ca_base, c));
    o.crt = o.crt.as_ref().map(|c| join(&global.crt_base, c));
    o.min_ver = o.min_ver.or(global.ssl_server.min_ver);
    o.max_ver = o.max_ver.or(global.ssl_server.max_ver);
    if o.ciphersuites.is_none() {
        o.ciphersuites = global.ssl_server.ciphersuites.clone();
    }
    // `alpn h2` without `proto`: the server speaks HTTP/2 (HAProxy picks the
    // protocol from ALPN).
    if s.proto.is_none() && o.alpn.first().is_some_and(|p| p == "h2") {
        s.proto = Some(Proto::H2);
    }
    if o.alpn.is_empty() {
        o.alpn = match s.proto {
            Some(Proto::H2) => vec!["h2".into()],
            _ => vec!["http/1.1".into()],
        };
    }
    if s.sni_expr.is_some() && s.proto != Some(Proto::H2) {
        return Err(
            "'sni <expression>' needs an HTTP/2 server ('proto h2' or 'alpn h2'): weir keeps one connection pool per name only for HTTP/2".into(),
        );
    }
    let (tls, warnings) = ServerTls::build(o)?;
    s.tls = Some(tls);
    Ok(warnings)
}

/// The name a server connection presents (SNI) and verifies: `sni` /
/// `verifyhost`, else the host part of the address as written.
pub fn server_name(s: &Server) -> String {
    if let Some(n) = &s.sni {
        return n.clone();
    }
    let text = s.addr_text.as_str();
    let host = match text.rsplit_once(':') {
        Some((h, _)) => h,
        None => text,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "*" {
        s.addr.ip().to_string()
    } else {
        host.to_string()
    }
}
