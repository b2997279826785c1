//! Stage 3: one small parse function per keyword.
//!
//! Each function gets a [`Ctx`] (the line's words, its location, the section)
//! and the section being built: [`Global`] or a [`ProxyDraft`]. It returns
//! `Err(message)` for an error, which the dispatcher prefixes with the
//! keyword (`'balance' : unknown algorithm ...`), and may push warnings.

use std::time::Duration;

use super::keywords::{
    did_you_mean, Cap, OptionKind, SectionKind, BALANCE_UNSUPPORTED, BIND_OPTIONS,
    BIND_UNSUPPORTED, OPTIONS, SERVER_OPTIONS, SERVER_UNSUPPORTED, TIMEOUTS,
};
use super::units::{check_name, parse_addr, parse_int, parse_time, parse_u32, AddrUse};
use super::{
    Balance, Bind, Capture, Global, Loc, LogFormat, LogTarget, Mode, Options, Proto, ReqAction,
    ResAction, Rule, Server, Timeouts, UseBackend,
};
use super::{Diagnostic, Diags};

pub(crate) mod check;
pub(crate) mod queue;
pub(crate) mod retry;
pub(crate) mod rules;
pub(crate) mod ssl;
pub(crate) mod stats;
pub(crate) mod tune;

pub(crate) type R = Result<(), String>;

/// Everything a keyword parser needs to know about its line.
pub(crate) struct Ctx<'a> {
    /// The keyword and its arguments (a leading `no` already removed).
    pub words: &'a [String],
    pub loc: Loc,
    /// Name used to prefix errors: the keyword, or e.g. `timeout connect`.
    pub kw: String,
    pub usage: &'static str,
    /// The line started with `no`.
    pub negated: bool,
    pub section: SectionKind,
    /// Name of the proxy being parsed (empty for `global` and unnamed `defaults`).
    pub proxy_name: &'a str,
    pub diags: &'a mut Diags,
}

impl<'a> Ctx<'a> {
    pub(crate) fn arg(&self, i: usize) -> Option<&'a str> {
        self.words.get(i).map(String::as_str)
    }

    /// Argument `i`, or "missing <what>".
    fn need(&self, i: usize, what: &str) -> Result<&'a str, String> {
        self.arg(i)
            .ok_or_else(|| format!("missing {what} (expected '{}')", self.usage))
    }

    /// Fails if there is an argument after index `last`.
    fn max_args(&self, last: usize) -> R {
        match self.arg(last + 1) {
            Some(extra) => Err(format!(
                "unexpected argument '{extra}' (expected '{}')",
                self.usage
            )),
            None => Ok(()),
        }
    }

    /// The only argument.
    fn single(&self, what: &str) -> Result<&'a str, String> {
        let value = self.need(1, what)?;
        self.max_args(1)?;
        Ok(value)
    }

    /// Warning prefixed with the keyword.
    fn warn(&mut self, message: String) {
        let d = Diagnostic::new(Some(self.loc.clone()), Some(&self.kw), message);
        self.diags.warnings.push(d);
    }

    /// Warning that names what it is about itself.
    pub(crate) fn warn_plain(&mut self, message: String) {
        self.diags
            .warnings
            .push(Diagnostic::new(Some(self.loc.clone()), None, message));
    }

    /// HAProxy's "ignored because frontend 'x' has no backend capability".
    fn missing_cap(&self, cap: Cap) -> Option<String> {
        let lacks = match (self.section, cap) {
            (SectionKind::Frontend, Cap::Backend) => "backend",
            (SectionKind::Backend, Cap::Frontend) => "frontend",
            _ => return None,
        };
        Some(format!(
            "ignored because {} '{}' has no {lacks} capability",
            self.section.name(),
            self.proxy_name
        ))
    }
}

/// A proxy section being built. A proxy starts as a copy of its `defaults`
/// section's draft, so every field here is "the value so far".
#[derive(Clone, Debug, Default)]
pub(crate) struct ProxyDraft {
    pub mode: Mode,
    pub timeouts: Timeouts,
    pub maxconn: Option<u32>,
    /// `maxqueue <n>` (backend side).
    pub maxqueue: Option<u32>,
    pub logs: Vec<LogEntry>,
    pub options: Options,
    pub balance: Balance,
    /// `hash-type`
    pub hash_type: crate::config::HashType,
    pub default_backend: Option<Ref>,
    pub use_backends: Vec<UseBackend>,
    pub binds: Vec<Bind>,
    pub servers: Vec<Server>,
    /// `default-server` options, in order (applied before each server's own).
    pub default_server: Vec<String>,
    /// Health-check kind and rules (`option grpc-check`, `tcp-check`, ...).
    pub check: check::CheckDraft,
    /// Named ACLs of this section (`acl` lines), used by its conditions.
    pub acls: crate::acl::Acls,
    /// `tcp-request connection ...` (frontend side).
    pub tcp_request_connection: Vec<Rule<crate::config::ConnAction>>,
    pub http_request: Vec<Rule<ReqAction>>,
    pub http_response: Vec<Rule<ResAction>>,
    /// `h2-keepalive <interval> [timeout <time>]`
    pub h2_keepalive: Option<crate::config::H2Keepalive>,
    pub capture_request: Vec<Capture>,
    pub capture_response: Vec<Capture>,
    pub log_format: Option<std::sync::Arc<crate::observe::logformat::LogFormat>>,
    /// `stats enable` / `stats uri ...`: the stats page (frontend side).
    pub stats: Option<crate::config::StatsPage>,
    /// `stick-table ...` (with the line it is on).
    pub stick_table: Option<(crate::stick::TableDef, crate::config::Loc)>,
}

/// A proxy's `log` line: `log global` is expanded once `global` is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogEntry {
    Global,
    Target(LogTarget),
}

/// A reference to a backend, with the line that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ref {
    pub name: String,
    pub loc: Loc,
}

// ---------------------------------------------------------------- global

pub(crate) fn global_maxconn(ctx: &mut Ctx, g: &mut Global) -> R {
    g.maxconn = Some(parse_u32(ctx.single("<number>")?, 1, u32::MAX)?);
    Ok(())
}

/// `maxpipes <number>` (0: never splice).
pub(crate) fn global_maxpipes(ctx: &mut Ctx, g: &mut Global) -> R {
    g.maxpipes = Some(parse_u32(ctx.single("<number>")?, 0, 1 << 20)?);
    Ok(())
}

/// `h2-keepalive <interval> [timeout <time>]`
pub(crate) fn h2_keepalive(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let interval = parse_time(ctx.need(1, "<interval>")?)?;
    if interval.is_zero() {
        return Err("<interval> must be greater than 0".into());
    }
    let timeout = match (ctx.arg(2), ctx.arg(3)) {
        (None, _) => Duration::from_secs(20),
        (Some("timeout"), Some(t)) => {
            ctx.max_args(3)?;
            parse_time(t)?
        }
        (Some("timeout"), None) => return Err("missing <time> after 'timeout'".into()),
        (Some(other), _) => {
            return Err(format!(
            "unexpected argument '{other}' (expected 'h2-keepalive <interval> [timeout <time>]')"
        ))
        }
    };
    p.h2_keepalive = Some(crate::config::H2Keepalive { interval, timeout });
    Ok(())
}

pub(crate) fn global_hard_stop_after(ctx: &mut Ctx, g: &mut Global) -> R {
    g.hard_stop_after = Some(parse_time(ctx.single("<time>")?)?);
    Ok(())
}

pub(crate) fn global_nbthread(ctx: &mut Ctx, g: &mut Global) -> R {
    // Bounded by 4096, so it fits in any usize.
    g.nbthread = Some(parse_int(ctx.single("<number>")?, 1, 4096)? as usize);
    Ok(())
}

pub(crate) fn global_busy_polling(ctx: &mut Ctx, g: &mut Global) -> R {
    ctx.max_args(0)?;
    g.busy_polling = !ctx.negated;
    Ok(())
}

pub(crate) fn global_log(ctx: &mut Ctx, g: &mut Global) -> R {
    if ctx.arg(1) == Some("global") {
        return Err("'log global' is only meaningful in a proxy section".into());
    }
    let target = log_target(ctx)?;
    g.logs.push(target);
    Ok(())
}

pub(crate) fn global_stats(ctx: &mut Ctx, _: &mut Global) -> R {
    let sub = ctx.need(1, "<subcommand>")?;
    ctx.warn_plain(format!("'stats {sub}' has no effect in weir yet, ignored"));
    Ok(())
}

// ---------------------------------------------------------------- log

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

fn log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "rfc3164" => Ok(LogFormat::Rfc3164),
        "rfc5424" => Ok(LogFormat::Rfc5424),
        "raw" => Ok(LogFormat::Raw),
        "short" | "timed" | "iso" | "local" | "priority" => Err(format!(
            "log format '{value}' is not supported yet (expected raw, rfc3164 or rfc5424)"
        )),
        _ => Err(format!(
            "unknown log format '{value}' (expected raw, rfc3164 or rfc5424)"
        )),
    }
}

fn check_level(level: &str) -> R {
    match LEVELS.contains(&level) {
        true => Ok(()),
        false => Err(format!(
            "unknown log level '{level}'{} (expected one of {})",
            did_you_mean(level, LEVELS.iter().copied()),
            LEVELS.join(", ")
        )),
    }
}

/// `log <target> [len <n>] [format <fmt>] <facility> [<level> [<minlevel>]]`
fn log_target(ctx: &mut Ctx) -> Result<LogTarget, String> {
    let target = ctx.need(1, "<target>")?;
    let mut format = LogFormat::default();
    let mut len = false;
    let mut i = 2;
    loop {
        match ctx.arg(i) {
            Some("len") => {
                let value = ctx.need(i + 1, "<length> after 'len'")?;
                parse_u32(value, 80, 65535).map_err(|e| format!("'len' : {e}"))?;
                len = true;
            }
            Some("format") => format = log_format(ctx.need(i + 1, "<format> after 'format'")?)?,
            Some(other @ ("sample" | "profile")) => {
                return Err(format!("'{other}' is not supported yet"))
            }
            _ => break,
        }
        i += 2;
    }
    let facility = ctx.need(i, "<facility>")?;
    if !FACILITIES.contains(&facility) {
        return Err(format!(
            "unknown facility '{facility}'{} (expected one of {})",
            did_you_mean(facility, FACILITIES.iter().copied()),
            FACILITIES.join(", ")
        ));
    }
    let levels: Vec<&str> = (i + 1..i + 3).filter_map(|j| ctx.arg(j)).collect();
    for level in &levels {
        check_level(level)?;
    }
    ctx.max_args(i + 2)?;
    let facility = facility.to_string();
    let parsed = match target {
        "stdout" | "fd@1" => LogTarget::Stdout { format, facility },
        "stderr" | "fd@2" => LogTarget::Stderr { format, facility },
        _ if target.starts_with('/') || target.starts_with("unix@") => {
            let path = target.trim_start_matches("unix@").to_string();
            ctx.warn(format!(
                "unix socket target '{path}' is not supported yet, nothing will be logged there"
            ));
            LogTarget::Unix { path, facility }
        }
        _ => LogTarget::Udp {
            addr: parse_addr(target, AddrUse::Log)?,
            format,
            facility,
        },
    };
    if len {
        ctx.warn("'len' is not supported yet, ignored".into());
    }
    if !levels.is_empty() {
        ctx.warn(format!(
            "log levels are not supported yet, '{}' ignored",
            levels.join(" ")
        ));
    }
    Ok(parsed)
}

pub(crate) fn proxy_log(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    if ctx.negated {
        ctx.max_args(0)?;
        p.logs.clear();
        return Ok(());
    }
    if ctx.arg(1) == Some("global") {
        ctx.max_args(1)?;
        p.logs.push(LogEntry::Global);
        return Ok(());
    }
    let target = log_target(ctx)?;
    p.logs.push(LogEntry::Target(target));
    Ok(())
}

// ---------------------------------------------------------------- proxies

pub(crate) fn mode(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    p.mode = match ctx.single("mode name")? {
        "http" => Mode::Http,
        "tcp" => Mode::Tcp,
        other => return Err(format!("unknown mode '{other}' (expected http or tcp)")),
    };
    Ok(())
}

fn timeout_slot<'t>(t: &'t mut Timeouts, name: &str) -> Option<&'t mut Option<Duration>> {
    Some(match name {
        "connect" => &mut t.connect,
        "client" => &mut t.client,
        "server" => &mut t.server,
        "tunnel" => &mut t.tunnel,
        "http-request" => &mut t.http_request,
        "http-keep-alive" => &mut t.http_keep_alive,
        "queue" => &mut t.queue,
        "check" => &mut t.check,
        "client-fin" => &mut t.client_fin,
        "server-fin" => &mut t.server_fin,
        _ => return None,
    })
}

/// Sets `timeout <name>` (`ctx.kw` already names it) after the capability check.
fn set_timeout(ctx: &mut Ctx, p: &mut ProxyDraft, name: &str, value: &str) -> R {
    let value = parse_time(value)?;
    let Some((_, cap, effect)) = TIMEOUTS.iter().find(|(n, ..)| *n == name) else {
        return Err(format!("unknown timeout '{name}'"));
    };
    if let Some(why) = ctx.missing_cap(*cap) {
        ctx.warn_plain(format!("'timeout {name}' {why}"));
    } else if let Some(effect) = effect {
        ctx.warn_plain(effect.warning(&format!("timeout {name}")));
    } else if let Some(slot) = timeout_slot(&mut p.timeouts, name) {
        *slot = Some(value);
    }
    Ok(())
}

pub(crate) fn timeout(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let names = || TIMEOUTS.iter().map(|(n, ..)| *n);
    let name = ctx.need(1, "<event>")?;
    if !names().any(|n| n == name) {
        let all: Vec<&str> = names().collect();
        return Err(format!(
            "unknown timeout '{name}'{} (expected one of {})",
            did_you_mean(name, names()),
            all.join(", ")
        ));
    }
    ctx.kw = format!("timeout {name}");
    let value = ctx.need(2, "<time>")?;
    ctx.max_args(2)?;
    set_timeout(ctx, p, name, value)
}

/// `contimeout`, `clitimeout`, `srvtimeout`: pre-1.5 spellings.
pub(crate) fn old_timeout(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let name = match ctx.kw.as_str() {
        "contimeout" => "connect",
        "clitimeout" => "client",
        _ => "server",
    };
    let value = ctx.single("<time>")?;
    ctx.warn(format!("deprecated keyword, use 'timeout {name}' instead"));
    set_timeout(ctx, p, name, value)
}

pub(crate) fn maxconn(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    p.maxconn = Some(parse_u32(ctx.single("<number>")?, 1, u32::MAX)?);
    Ok(())
}

pub(crate) fn retries(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    p.options.retries = Some(parse_u32(ctx.single("<number>")?, 0, u32::MAX)?);
    Ok(())
}

pub(crate) fn option(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let name = ctx.need(1, "<name>")?;
    let Some(def) = OPTIONS.iter().find(|o| o.name == name) else {
        let names = OPTIONS.iter().map(|o| o.name);
        return Err(format!(
            "unknown option '{name}'{}",
            did_you_mean(name, names)
        ));
    };
    if !def.args {
        ctx.max_args(1)?;
    }
    let shown = format!("{}option {name}", if ctx.negated { "no " } else { "" });
    if let Some(why) = ctx.missing_cap(def.cap) {
        ctx.warn_plain(format!("'{shown}' {why}"));
        return Ok(());
    }
    let on = !ctx.negated;
    match def.kind {
        OptionKind::Httplog => {
            match ctx.arg(2) {
                None => {}
                Some("clf") if on => {
                    ctx.max_args(2)?;
                    ctx.warn_plain("'option httplog clf': the CLF format is not supported yet, the default httplog format is used".into());
                }
                Some(other) => {
                    return Err(format!(
                        "unexpected argument '{other}' (expected 'option httplog [clf]')"
                    ))
                }
            }
            p.options.httplog = on;
            p.options.tcplog &= !on;
        }
        OptionKind::Tcplog => {
            p.options.tcplog = on;
            p.options.httplog &= !on;
        }
        OptionKind::Logasap => p.options.logasap = on,
        OptionKind::LogJson => p.options.log_json = on,
        OptionKind::Forwardfor => {
            p.options.forwardfor = if on {
                Some(rules::forwardfor(&ctx.words[2..])?)
            } else {
                ctx.max_args(1)?;
                None
            }
        }
        OptionKind::GrpcCheck | OptionKind::TcpCheck | OptionKind::HttpChk => {
            check::option(ctx, p, &def.kind)?
        }
        OptionKind::Redispatch => retry::redispatch(ctx, p, on)?,
        OptionKind::Allbackups => p.options.allbackups = on,
        OptionKind::SpliceAuto => p.options.splice.auto = on,
        OptionKind::SpliceRequest => p.options.splice.request = on,
        OptionKind::SpliceResponse => p.options.splice.response = on,
        OptionKind::Ignored(effect) => ctx.warn_plain(effect.warning(&shown)),
    }
    Ok(())
}

pub(crate) fn balance(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let algo = ctx.need(1, "<algorithm>")?;
    let base = algo.split('(').next().unwrap_or(algo);
    const EXPECTED: &str =
        "expected roundrobin, static-rr, leastconn, first, source, uri, hdr(<name>), random[(<draws>)] or ewma";
    let args: Vec<&str> = ctx.words[2..].iter().map(String::as_str).collect();
    let no_args = |what: &str| -> R {
        match args.first() {
            None => Ok(()),
            Some(a) => Err(format!(
                "unexpected argument '{a}' (expected 'balance {what}')"
            )),
        }
    };
    let chosen = match base {
        "roundrobin" | "static-rr" | "leastconn" | "first" | "source" if algo != base => {
            return Err(format!(
                "unknown algorithm '{algo}' ('{base}' takes no argument)"
            ))
        }
        "roundrobin" => no_args(algo).map(|_| Balance::RoundRobin)?,
        "static-rr" => no_args(algo).map(|_| Balance::StaticRr)?,
        "leastconn" => no_args(algo).map(|_| Balance::LeastConn)?,
        "first" => no_args(algo).map(|_| Balance::First)?,
        "source" => no_args(algo).map(|_| Balance::Source)?,
        "uri" if algo == base => balance_uri(&args)?,
        "hdr" => {
            let name = algo
                .strip_prefix("hdr(")
                .and_then(|r| r.strip_suffix(')'))
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("'balance {algo}' : expected hdr(<header name>)"))?;
            no_args(algo)?;
            let h = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("'balance {algo}' : '{name}' is not a valid header name"))?;
            Balance::Hdr(h)
        }
        "random" => {
            let draws = match algo.strip_prefix("random") {
                Some("") => 2,
                Some(rest) => {
                    let n = rest
                        .strip_prefix('(')
                        .and_then(|r| r.strip_suffix(')'))
                        .ok_or_else(|| {
                            format!("'balance {algo}' : expected random or random(<draws>)")
                        })?;
                    parse_u32(n, 1, 100).map_err(|e| format!("'balance {algo}' : draws: {e}"))?
                }
                None => 2,
            };
            no_args(algo)?;
            Balance::Random { draws }
        }
        "ewma" if algo == base => {
            let decay = match args.as_slice() {
                [] => std::time::Duration::from_secs(10),
                ["decay", t] => {
                    let d = crate::config::units::parse_time(t)
                        .map_err(|e| format!("'balance ewma decay' : {e}"))?;
                    if d.is_zero() {
                        return Err("'balance ewma decay' : must be more than 0".into());
                    }
                    d
                }
                ["decay"] => return Err("'balance ewma decay' : missing <time>".into()),
                [other, ..] => {
                    return Err(format!(
                        "'balance ewma' : unexpected '{other}' (expected 'balance ewma [decay <time>]')"
                    ))
                }
            };
            Balance::Ewma { decay }
        }
        _ if BALANCE_UNSUPPORTED.contains(&base) => {
            return Err(format!(
                "algorithm '{algo}' is not supported yet ({EXPECTED})"
            ))
        }
        _ => return Err(format!("unknown algorithm '{algo}' ({EXPECTED})")),
    };
    p.balance = chosen;
    Ok(())
}

/// `balance uri [whole] [len <n>] [depth <n>]`
fn balance_uri(args: &[&str]) -> Result<Balance, String> {
    let (mut whole, mut len, mut depth) = (false, None, None);
    let mut i = 0;
    while let Some(&w) = args.get(i) {
        match w {
            "whole" => {
                whole = true;
                i += 1;
            }
            "len" | "depth" => {
                let v = args
                    .get(i + 1)
                    .ok_or_else(|| format!("'balance uri {w}' : missing <number>"))?;
                let n = parse_u32(v, 1, 65_535).map_err(|e| format!("'balance uri {w}' : {e}"))?
                    as usize;
                if w == "len" {
                    len = Some(n);
                } else {
                    depth = Some(n);
                }
                i += 2;
            }
            "path-only" => {
                i += 1;
            }
            other => {
                return Err(format!(
                "'balance uri' : unknown argument '{other}' (expected whole, len <n>, depth <n>)"
            ))
            }
        }
    }
    Ok(Balance::Uri { whole, len, depth })
}

/// `hash-type <map-based|consistent> [sdbm|djb2|wt6|crc32|xxh3] [avalanche]`
pub(crate) fn hash_type(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    use crate::config::{HashFunction, HashMethod, HashType};
    let method = match ctx.need(1, "<method>")? {
        "map-based" => HashMethod::MapBased,
        "consistent" => HashMethod::Consistent,
        other => {
            return Err(format!(
                "unknown method '{other}' (expected map-based or consistent)"
            ))
        }
    };
    let mut ht = HashType {
        method,
        ..HashType::default()
    };
    let mut function_set = false;
    for w in &ctx.words[2..] {
        let f = match w.as_str() {
            "avalanche" => {
                ht.avalanche = true;
                continue;
            }
            "sdbm" => HashFunction::Sdbm,
            "djb2" => HashFunction::Djb2,
            "wt6" => HashFunction::Wt6,
            "crc32" => HashFunction::Crc32,
            "xxh3" => HashFunction::Xxh3,
            "none" => return Err(
                "hash function 'none' is not supported (expected sdbm, djb2, wt6, crc32 or xxh3)"
                    .into(),
            ),
            other => {
                return Err(format!(
                "unknown argument '{other}' (expected sdbm, djb2, wt6, crc32, xxh3 or avalanche)"
            ))
            }
        };
        if function_set {
            return Err(format!("more than one hash function ('{w}')"));
        }
        function_set = true;
        ht.function = f;
    }
    p.hash_type = ht;
    Ok(())
}

pub(crate) fn default_backend(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let name = ctx.single("<backend>")?;
    p.default_backend = Some(Ref {
        name: name.to_string(),
        loc: ctx.loc.clone(),
    });
    Ok(())
}

fn proto(value: &str) -> Result<Proto, String> {
    match value {
        "h2" => Ok(Proto::H2),
        "h1" => Ok(Proto::H1),
        _ => Err(format!("unknown proto '{value}' (expected h2 or h1)")),
    }
}

/// Error for an option word that is neither known nor supported.
fn unknown_option(word: &str, supported: &[&str], known: &[&str]) -> String {
    let hint = did_you_mean(word, supported.iter().chain(known).copied());
    if hint.is_empty() {
        let list: Vec<String> = supported.iter().map(|s| format!("'{s}'")).collect();
        format!("unknown option '{word}' (expected {})", list.join(", "))
    } else {
        format!("unknown option '{word}'{hint}")
    }
}

pub(crate) fn bind(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let addrs = ctx.need(1, "<address>:<port>")?;
    let mut proto_opt = None;
    let mut ssl = crate::tls::BindSsl::default();
    let mut ssl_on = false;
    let (mut max_age, mut max_age_grace) = (None, None);
    let mut i = 2;
    while let Some(word) = ctx.arg(i) {
        if let Some(n) = ssl::bind_option(ctx, i, &mut ssl, &mut ssl_on)? {
            i += n;
            continue;
        }
        match word {
            "proto" => {
                let value = ctx
                    .arg(i + 1)
                    .ok_or("'proto' : missing value (expected h2 or h1)")?;
                proto_opt = Some(proto(value).map_err(|e| format!("'proto' : {e}"))?);
                i += 2;
            }
            "max-connection-age" | "max-connection-age-grace" => {
                let value = ctx
                    .arg(i + 1)
                    .ok_or_else(|| format!("'{word}' : missing value (expected a time)"))?;
                let t = parse_time(value).map_err(|e| format!("'{word}' : {e}"))?;
                if t.is_zero() {
                    return Err(format!("'{word}' : must be greater than 0"));
                }
                if word == "max-connection-age" {
                    max_age = Some(t);
                } else {
                    max_age_grace = Some(t);
                }
                i += 2;
            }
            _ if BIND_UNSUPPORTED.contains(&word) => {
                return Err(format!("'{word}' is not supported yet"))
            }
            _ => return Err(unknown_option(word, BIND_OPTIONS, BIND_UNSUPPORTED)),
        }
    }
    if !ssl_on && ssl != crate::tls::BindSsl::default() {
        return Err(
            "TLS options (crt, alpn, ca-file, verify, ...) need 'ssl' on the same line".into(),
        );
    }
    let mut binds = Vec::new();
    for text in addrs.split(',') {
        let addr = parse_addr(text, AddrUse::Bind)?;
        binds.push(Bind {
            addr,
            proto: proto_opt,
            loc: ctx.loc.clone(),
            ssl: ssl_on.then(|| ssl.clone()),
            tls: None,
            max_age,
            max_age_grace,
        });
    }
    p.binds.extend(binds);
    Ok(())
}

pub(crate) fn server(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let name = ctx.need(1, "<name>")?;
    check_name(name, "server")?;
    let addr_text = ctx.need(2, "<address>:<port>")?;
    if let Some(prev) = p.servers.iter().find(|s| s.name == name) {
        return Err(format!(
            "server name '{name}' is already used in {} '{}' (at {})",
            ctx.section.name(),
            ctx.proxy_name,
            prev.loc
        ));
    }
    let addr = parse_addr(addr_text, AddrUse::Server)?;
    let mut s = Server::new(name, ctx.loc.clone(), addr, addr_text);
    // `default-server` options were checked on their own line.
    server_options(&p.default_server, &mut s)?;
    server_options(&ctx.words[3..], &mut s)?;
    p.servers.push(s);
    Ok(())
}

/// `default-server [<option> ...]`: options every later `server` line of
/// the section starts with (its own options override them).
pub(crate) fn default_server(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let mut probe = Server::new(
        "",
        ctx.loc.clone(),
        std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        "",
    );
    server_options(&ctx.words[1..], &mut probe)?;
    p.default_server.extend(ctx.words[1..].iter().cloned());
    Ok(())
}

/// Applies `server` options (the words after the address) to `s`.
fn server_options(words: &[String], s: &mut Server) -> R {
    let mut i = 0;
    while let Some(word) = words.get(i).map(String::as_str) {
        let with = |e: String| format!("'{word}' : {e}");
        let value = |expected: &str| {
            words
                .get(i + 1)
                .map(String::as_str)
                .ok_or_else(|| format!("'{word}' : missing value (expected {expected})"))
        };
        if let Some(n) = ssl::server_option(word, words.get(i + 1).map(String::as_str), s)? {
            i += n;
            continue;
        }
        match word {
            "proto" => s.proto = Some(proto(value("h2 or h1")?).map_err(with)?),
            "weight" => s.weight = parse_u32(value("0-256")?, 0, 256).map_err(with)?,
            "maxconn" => {
                let n = parse_u32(value("a number")?, 0, u32::MAX).map_err(with)?;
                s.maxconn = (n > 0).then_some(n);
            }
            "maxqueue" => s.maxqueue = queue::server_maxqueue(value("a number")?)?,
            "inter" | "fastinter" | "downinter" | "rise" | "fall" | "port" | "addr"
            | "check-proto" => {
                let expected = match word {
                    "inter" | "fastinter" | "downinter" => "a time",
                    "addr" => "an IP address",
                    "check-proto" => "h2 or h1",
                    _ => "a number",
                };
                check::server_option(&mut s.check_params, word, value(expected)?).map_err(with)?
            }
            "observe" => {
                s.observe = match value("layer4 or layer7")? {
                    "layer4" => Some(crate::config::Observe::Layer4),
                    "layer7" => Some(crate::config::Observe::Layer7),
                    other => {
                        return Err(format!(
                            "'observe' : unknown mode '{other}' (expected layer4 or layer7)"
                        ))
                    }
                }
            }
            "error-limit" => {
                s.error_limit = parse_u32(value("a number")?, 1, 100_000).map_err(with)?
            }
            "on-error" => {
                use crate::config::OnError;
                s.on_error = match value("fastinter, fail-check, sudden-death or mark-down")? {
                    "fastinter" => OnError::FastInter,
                    "fail-check" => OnError::FailCheck,
                    "sudden-death" => OnError::SuddenDeath,
                    "mark-down" => OnError::MarkDown,
                    other => {
                        return Err(format!(
                            "'on-error' : unknown action '{other}' (expected fastinter, fail-check, sudden-death or mark-down)"
                        ))
                    }
                }
            }
            "slowstart" => {
                let d = crate::config::units::parse_time(value("a time")?).map_err(with)?;
                s.slowstart = (!d.is_zero()).then_some(d);
            }
            "disabled" | "enabled" => s.disabled = word == "disabled",
            "check" | "no-check" => s.check = word == "check",
            "backup" | "no-backup" => s.backup = word == "backup",
            _ if SERVER_UNSUPPORTED.contains(&word) => {
                return Err(format!("'{word}' is not supported yet"))
            }
            _ => return Err(unknown_option(word, SERVER_OPTIONS, SERVER_UNSUPPORTED)),
        }
        let flag = matches!(
            word,
            "disabled" | "enabled" | "check" | "no-check" | "backup" | "no-backup"
        );
        i += if flag { 1 } else { 2 };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Runs `f` on `line` as if it were in a frontend named `fe`.
    fn run(line: &str, f: fn(&mut Ctx, &mut ProxyDraft) -> R) -> (R, ProxyDraft, Diags) {
        let words: Vec<String> = line.split(' ').map(str::to_string).collect();
        let mut diags = Diags::default();
        let mut draft = ProxyDraft::default();
        let mut ctx = Ctx {
            words: &words,
            loc: Loc {
                file: Arc::from("t.cfg"),
                line: 1,
            },
            kw: words[0].clone(),
            usage: "usage",
            negated: false,
            section: SectionKind::Frontend,
            proxy_name: "fe",
            diags: &mut diags,
        };
        let r = f(&mut ctx, &mut draft);
        (r, draft, diags)
    }

    #[test]
    fn log_formats() {
        assert_eq!(log_format("raw"), Ok(LogFormat::Raw));
        assert_eq!(log_format("rfc5424"), Ok(LogFormat::Rfc5424));
        assert!(log_format("RAW").is_err());
    }

    #[test]
    fn httplog_and_tcplog_cancel_each_other() {
        let (r, d, _) = run("option httplog", option);
        assert_eq!(r, Ok(()));
        assert!(d.options.httplog && !d.options.tcplog);
        let (_, d, _) = run("option tcplog", option);
        assert!(!d.options.httplog && d.options.tcplog);
    }

    #[test]
    fn bind_keeps_proto_for_every_address() {
        let (r, d, _) = run("bind :1,:2 proto h2", bind);
        assert_eq!(r, Ok(()));
        assert_eq!(d.binds.len(), 2);
        assert!(d.binds.iter().all(|b| b.proto == Some(Proto::H2)));
        // One bad address rejects the whole line.
        let (r, d, _) = run("bind :1,:x", bind);
        assert!(r.is_err());
        assert!(d.binds.is_empty());
    }

    #[test]
    fn backend_side_timeout_in_a_frontend_is_ignored() {
        let (r, d, diags) = run("timeout server 5s", timeout);
        assert_eq!(r, Ok(()));
        assert_eq!(d.timeouts.server, None);
        assert_eq!(diags.warnings.len(), 1);
    }

    #[test]
    fn server_defaults() {
        let (r, d, diags) = run("server s1 127.0.0.1:80", server);
        assert_eq!(r, Ok(()));
        let s = &d.servers[0];
        assert_eq!(
            (s.weight, s.maxconn, s.proto, s.disabled, s.check),
            (1, None, None, false, false)
        );
        assert!(diags.warnings.is_empty());
    }
}
