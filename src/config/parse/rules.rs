//! Routing and policy keywords: `acl`, `use_backend`, `http-request`,
//! `http-response`, `capture`, `log-format`, `option forwardfor`.
//!
//! Conditions, sample expressions and log-format strings are compiled here,
//! at load time, by [`crate::acl`] and [`crate::observe::logformat`]; the
//! model holds the compiled forms.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderName;

use super::{Ctx, ProxyDraft, R};
use crate::acl::{split_cond, Condition, Stage};
use crate::config::keywords::did_you_mean;
use crate::config::{
    Capture, ConnAction, ForwardFor, HeaderAction, ReqAction, ResAction, ReturnBody, ReturnSpec,
    Rule, UseBackend,
};
use crate::observe::logformat::LogFormat as LineFormat;

/// Directory relative `-f` pattern files are read from: the config file's.
fn base_dir(ctx: &Ctx) -> PathBuf {
    Path::new(&*ctx.loc.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Compiles the `if` / `unless` tail of a rule, if there is one.
fn condition(
    ctx: &Ctx,
    p: &ProxyDraft,
    tail: Option<(bool, &[String])>,
    stage: Stage,
) -> Result<Option<Condition>, String> {
    let Some((unless, words)) = tail else {
        return Ok(None);
    };
    if words.is_empty() {
        let kw = if unless { "unless" } else { "if" };
        return Err(format!("missing condition after '{kw}'"));
    }
    Condition::parse(words, unless, &p.acls, stage, &base_dir(ctx))
        .map(Some)
        .map_err(|e| format!("error detected while parsing the condition: {e}"))
}

fn format(text: &str, stage: Stage) -> Result<Arc<LineFormat>, String> {
    LineFormat::parse(text, stage).map(Arc::new)
}

fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("invalid header name '{text}'"))
}

fn regex(text: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(text).map_err(|e| {
        let reason = e.to_string();
        let reason = reason.lines().last().unwrap_or("").trim();
        let reason = reason.strip_prefix("error: ").unwrap_or(reason);
        format!("regex '{text}' is invalid: {reason}")
    })
}

fn status_code(text: &str, what: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(n) if (200..=599).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid {what} '{text}' (expected an HTTP status code between 200 and 599)"
        )),
    }
}

// ------------------------------------------------------------------ acl

pub(crate) fn acl(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    ctx.need(1, "<name>")?;
    ctx.need(2, "<criterion>")?;
    let dir = base_dir(ctx);
    p.acls.define(&ctx.words[1..], &dir)
}

// ---------------------------------------------------------- use_backend

pub(crate) fn use_backend(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let (head, tail) = split_cond(&ctx.words[1..]);
    let name = match head {
        [] => return Err(format!("missing <backend> (expected '{}')", ctx.usage)),
        [name] => name.as_str(),
        [_, extra, ..] => {
            return Err(format!(
                "unexpected argument '{extra}' (expected 'if' or 'unless' followed by a condition)"
            ))
        }
    };
    let dynamic = if name.contains("%[") {
        Some(format(name, Stage::Request)?)
    } else {
        None
    };
    let cond = condition(ctx, p, tail, Stage::Request)?;
    p.use_backends.push(UseBackend {
        backend: name.to_string(),
        dynamic,
        cond,
        loc: ctx.loc.clone(),
    });
    Ok(())
}

// --------------------------------------------------------- http-request

const REQ_ACTIONS: &[&str] = &[
    "allow",
    "deny",
    "return",
    "set-header",
    "add-header",
    "del-header",
    "replace-header",
    "replace-value",
    "set-path",
    "set-query",
    "set-uri",
    "set-method",
    "use-service",
    "track-sc0",
    "track-sc1",
    "track-sc2",
];

/// HAProxy `http-request` actions weir knows but does not run yet.
const REQ_UNSUPPORTED: &[&str] = &[
    "auth",
    "cache-use",
    "capture",
    "del-acl",
    "del-map",
    "disable-l7-retry",
    "do-resolve",
    "early-hint",
    "normalize-uri",
    "redirect",
    "reject",
    "replace-path",
    "replace-pathq",
    "replace-uri",
    "sc-inc-gpc1",
    "sc-set-gpt0",
    "set-dst",
    "set-log-level",
    "set-map",
    "set-nice",
    "set-priority-class",
    "set-src",
    "set-timeout",
    "set-var",
    "silent-drop",
    "tarpit",
    "unset-var",
    "wait-for-body",
    "wait-for-handshake",
];

const RES_ACTIONS: &[&str] = &[
    "allow",
    "deny",
    "set-status",
    "set-header",
    "add-header",
    "del-header",
    "replace-header",
    "replace-value",
];

const RES_UNSUPPORTED: &[&str] = &[
    "cache-store",
    "capture",
    "del-acl",
    "del-map",
    "redirect",
    "return",
    "sc-inc-gpc0",
    "set-log-level",
    "set-map",
    "set-var",
    "silent-drop",
    "track-sc0",
    "track-sc1",
    "track-sc2",
    "unset-var",
    "wait-for-body",
];

fn unknown_action(kw: &str, action: &str, supported: &[&str], unsupported: &[&str]) -> String {
    if unsupported.contains(&action) {
        return format!(
            "'{kw} {action}' is not supported yet (weir supports {})",
            supported.join(", ")
        );
    }
    format!(
        "unknown action '{action}'{} (expected one of {})",
        did_you_mean(action, supported.iter().copied()),
        supported.join(", ")
    )
}

/// Exactly `n` arguments after the action, or an error naming the usage.
fn args<'a>(head: &'a [String], n: usize, usage: &str) -> Result<&'a [String], String> {
    let given = &head[1..];
    match given.len().cmp(&n) {
        std::cmp::Ordering::Equal => Ok(given),
        std::cmp::Ordering::Less => Err(format!("missing argument (expected '{usage}')")),
        std::cmp::Ordering::Greater => Err(format!(
            "unexpected argument '{}' (expected '{usage}')",
            given[n]
        )),
    }
}

/// `set-header`, `add-header`, `del-header`, `replace-header`, `replace-value`.
fn header_action(head: &[String], stage: Stage) -> Result<Option<HeaderAction>, String> {
    let action = head[0].as_str();
    Ok(Some(match action {
        "set-header" | "add-header" => {
            let a = args(head, 2, &format!("{action} <name> <fmt>"))?;
            let name = header_name(&a[0])?;
            let fmt = format(&a[1], stage)?;
            if action == "set-header" {
                HeaderAction::Set(name, fmt)
            } else {
                HeaderAction::Add(name, fmt)
            }
        }
        "del-header" => {
            let a = args(head, 1, "del-header <name>")?;
            HeaderAction::Del(header_name(&a[0])?)
        }
        "replace-header" | "replace-value" => {
            let a = args(head, 3, &format!("{action} <name> <regex> <replace-fmt>"))?;
            let name = header_name(&a[0])?;
            let re = regex(&a[1])?;
            let fmt = format(&a[2], stage)?;
            if action == "replace-header" {
                HeaderAction::Replace(name, re, fmt)
            } else {
                HeaderAction::ReplaceValue(name, re, fmt)
            }
        }
        _ => return Ok(None),
    }))
}

/// `deny [deny_status <code>]`
fn deny_status(head: &[String]) -> Result<u16, String> {
    match &head[1..] {
        [] => Ok(403),
        [kw, code] if kw == "deny_status" || kw == "status" => status_code(code, "deny_status"),
        [kw] if kw == "deny_status" || kw == "status" => {
            Err(format!("missing status code after '{kw}'"))
        }
        [other, ..] => Err(format!(
            "unexpected argument '{other}' (expected 'deny [deny_status <code>] [{{if | unless}} <condition>]')"
        )),
    }
}

/// `return [status <code>] [content-type <type>] [string|lf-string <text>] [hdr <name> <fmt>]*`
fn return_spec(head: &[String]) -> Result<ReturnSpec, String> {
    let mut spec = ReturnSpec {
        status: 200,
        content_type: None,
        body: None,
        headers: Vec::new(),
    };
    let mut i = 1;
    while i < head.len() {
        let word = head[i].as_str();
        let value = |k: usize| {
            head.get(i + k)
                .map(String::as_str)
                .ok_or_else(|| format!("missing value after '{word}'"))
        };
        match word {
            "status" => spec.status = status_code(value(1)?, "status")?,
            "content-type" => spec.content_type = Some(value(1)?.to_string()),
            "string" => spec.body = Some(ReturnBody::Text(value(1)?.to_string().into())),
            "lf-string" => spec.body = Some(ReturnBody::Format(format(value(1)?, Stage::Request)?)),
            "hdr" => {
                let name = header_name(value(1)?)?;
                let fmt = format(value(2)?, Stage::Request)?;
                spec.headers.push((name, fmt));
                i += 3;
                continue;
            }
            "file" | "lf-file" | "errorfile" | "errorfiles" | "default-errorfiles" => {
                return Err(format!("'return {word}' is not supported yet"))
            }
            other => {
                return Err(format!(
                    "unexpected argument '{other}' (expected status, content-type, string, lf-string or hdr)"
                ))
            }
        }
        i += 2;
    }
    if spec.body.is_some() && spec.content_type.is_none() {
        return Err("'return' with a body needs a 'content-type'".into());
    }
    Ok(spec)
}

pub(crate) fn http_request(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let (head, tail) = split_cond(&ctx.words[1..]);
    let Some(action) = head.first() else {
        return Err(format!(
            "missing action (expected one of {})",
            REQ_ACTIONS.join(", ")
        ));
    };
    let stage = Stage::Request;
    let action = match action.as_str() {
        "allow" => {
            args(head, 0, "allow")?;
            ReqAction::Allow
        }
        "deny" => ReqAction::Deny {
            status: deny_status(head)?,
        },
        "return" => ReqAction::Return(Box::new(return_spec(head)?)),
        "use-service" => ReqAction::UseService(super::stats::use_service(ctx, head)?),
        "track-sc0" | "track-sc1" | "track-sc2" => {
            let (ctr, key, table) = track_sc(ctx, head, Stage::Request)?;
            ReqAction::Track { ctr, key, table }
        }
        a if a.starts_with("track-sc") => {
            return Err(format!(
                "'http-request {a}': weir has stick counters 0 to 2 (expected track-sc0, track-sc1 or track-sc2)"
            ))
        }
        a if a.starts_with("sc-inc-gpc0") => ReqAction::IncGpc0 {
            ctr: sc_inc_gpc0(head)?,
        },
        "set-path" | "set-query" | "set-uri" | "set-method" => {
            let a = args(head, 1, &format!("{action} <fmt>"))?;
            let fmt = format(&a[0], stage)?;
            match action.as_str() {
                "set-path" => ReqAction::SetPath(fmt),
                "set-query" => ReqAction::SetQuery(fmt),
                "set-uri" => ReqAction::SetUri(fmt),
                _ => ReqAction::SetMethod(fmt),
            }
        }
        other => match header_action(head, stage)? {
            Some(h) => ReqAction::Header(h),
            None => {
                return Err(unknown_action(
                    "http-request",
                    other,
                    REQ_ACTIONS,
                    REQ_UNSUPPORTED,
                ))
            }
        },
    };
    let cond = condition(ctx, p, tail, stage)?;
    p.http_request.push(Rule {
        action,
        cond,
        loc: ctx.loc.clone(),
    });
    Ok(())
}

/// `sc-inc-gpc0(<ctr>)`: the counter number.
fn sc_inc_gpc0(head: &[String]) -> Result<usize, String> {
    let a = head[0].as_str();
    if head.len() > 1 {
        return Err(format!(
            "unexpected argument '{}' (expected 'sc-inc-gpc0(<ctr>)')",
            head[1]
        ));
    }
    match a
        .strip_prefix("sc-inc-gpc0(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some("0") => Ok(0),
        Some("1") => Ok(1),
        Some("2") => Ok(2),
        Some(other) => Err(format!(
            "'sc-inc-gpc0({other})': the stick counter must be 0, 1 or 2 (weir tracks sc0 to sc2)"
        )),
        None => Err(format!(
            "'{a}': expected 'sc-inc-gpc0(<ctr>)' with the stick counter 0, 1 or 2"
        )),
    }
}

/// `track-sc<n> <key> [table <table>]`: the counter, key and table.
fn track_sc(
    ctx: &Ctx,
    head: &[String],
    stage: Stage,
) -> Result<(usize, crate::acl::Expr, String), String> {
    let action = head[0].as_str();
    let usage = format!("{action} <key> [table <table>]");
    let ctr = usize::from(action.as_bytes()[8] - b'0');
    let (key, table) = match &head[1..] {
        [key] => (key, ctx.proxy_name.to_string()),
        [key, kw, t] if kw == "table" => (key, t.clone()),
        [_, kw] if kw == "table" => {
            return Err(format!(
                "missing table name after 'table' (expected '{usage}')"
            ))
        }
        [] => return Err(format!("missing <key> (expected '{usage}')")),
        [_, other, ..] => {
            return Err(format!(
                "unexpected argument '{other}' (expected '{usage}')"
            ))
        }
    };
    let key = crate::acl::Expr::parse(key, stage)
        .map_err(|e| format!("'{action}': invalid key expression '{key}': {e}"))?;
    Ok((ctr, key, table))
}

// ------------------------------------------------------ tcp-request

const CONN_ACTIONS: &[&str] = &[
    "accept",
    "reject",
    "track-sc0",
    "track-sc1",
    "track-sc2",
    "sc-inc-gpc0(<ctr>)",
];

/// HAProxy `tcp-request connection` actions weir does not run yet.
const CONN_UNSUPPORTED: &[&str] = &[
    "expect-netscaler-cip",
    "expect-proxy",
    "sc-inc-gpc1",
    "sc-set-gpt0",
    "set-dst",
    "set-dst-port",
    "set-mark",
    "set-src",
    "set-src-port",
    "set-tos",
    "set-var",
    "silent-drop",
    "unset-var",
];

/// `tcp-request connection <action> [{if | unless} <condition>]`
pub(crate) fn tcp_request(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let usage = ctx.usage;
    let Some(kind) = ctx.words.get(1).map(String::as_str) else {
        return Err(format!("missing rule type (expected '{usage}')"));
    };
    match kind {
        "connection" => {}
        "content" | "inspect-delay" | "session" => {
            return Err(format!(
                "'tcp-request {kind}' is not supported yet (weir supports 'tcp-request connection')"
            ))
        }
        other => {
            return Err(format!(
                "unknown rule type 'tcp-request {other}' (expected 'tcp-request connection')"
            ))
        }
    }
    let (head, tail) = split_cond(&ctx.words[2..]);
    let Some(action) = head.first() else {
        return Err(format!(
            "missing action (expected one of {})",
            CONN_ACTIONS.join(", ")
        ));
    };
    let stage = Stage::Connection;
    let action = match action.as_str() {
        "accept" => {
            args(head, 0, "accept")?;
            ConnAction::Accept
        }
        "reject" => {
            args(head, 0, "reject")?;
            ConnAction::Reject
        }
        "track-sc0" | "track-sc1" | "track-sc2" => {
            let (ctr, key, table) = track_sc(ctx, head, stage)?;
            ConnAction::Track { ctr, key, table }
        }
        a if a.starts_with("track-sc") => {
            return Err(format!(
                "'tcp-request connection {a}': weir has stick counters 0 to 2 (expected track-sc0, track-sc1 or track-sc2)"
            ))
        }
        a if a.starts_with("sc-inc-gpc0") => ConnAction::IncGpc0 {
            ctr: sc_inc_gpc0(head)?,
        },
        other => {
            return Err(unknown_action(
                "tcp-request connection",
                other,
                CONN_ACTIONS,
                CONN_UNSUPPORTED,
            ))
        }
    };
    let cond = condition(ctx, p, tail, stage)?;
    p.tcp_request_connection.push(Rule {
        action,
        cond,
        loc: ctx.loc.clone(),
    });
    Ok(())
}

// --------------------------------------------------------- stick-table

/// `stick-table type <type> [len <n>] size <n> [expire <time>] [store <data>,...]`
pub(crate) fn stick_table(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    use crate::stick::{KeyType, TableDef};
    if let Some((_, first)) = &p.stick_table {
        return Err(format!(
            "a proxy has only one stick-table (the first one is at {first})"
        ));
    }
    let words = &ctx.words[1..];
    let usage = ctx.usage;
    let mut ty: Option<KeyType> = None;
    let mut len: Option<usize> = None;
    let mut size: Option<usize> = None;
    let mut def = TableDef::new(KeyType::Integer, 0, std::time::Duration::ZERO);
    let mut expire = None;
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let Some(value) = words.get(i + 1).map(String::as_str) else {
            return Err(format!("missing value after '{word}' (expected '{usage}')"));
        };
        match word {
            "type" => {
                ty = Some(match value {
                    "ip" => KeyType::Ip,
                    "ipv6" => KeyType::Ipv6,
                    "integer" => KeyType::Integer,
                    "string" => KeyType::String(32),
                    "binary" => return Err("stick-table type 'binary' is not supported yet".into()),
                    other => {
                        return Err(format!(
                            "unknown stick-table type '{other}' (expected ip, ipv6, integer or string)"
                        ))
                    }
                })
            }
            "len" => {
                len = Some(crate::config::units::parse_int(value, 1, 65536).map_err(|e| format!("'len': {e}"))? as usize)
            }
            "size" => {
                let n = crate::config::units::parse_size(value).map_err(|e| format!("'size': {e}"))?;
                if n == 0 || n > 100_000_000 {
                    return Err(format!("'size': '{value}' is out of range (expected 1 to 100m)"));
                }
                size = Some(n as usize);
            }
            "expire" => expire = Some(crate::config::units::parse_time(value).map_err(|e| format!("'expire': {e}"))?),
            "store" => {
                for data in value.split(',') {
                    let (dname, arg) = match data.split_once('(') {
                        Some((n, rest)) => (n, Some(rest.strip_suffix(')').ok_or_else(|| format!("'store': missing ')' in '{data}'"))?)),
                        None => (data, None),
                    };
                    store(&mut def, dname, arg)?;
                }
            }
            "peers" | "srvkey" | "write-to" | "recv-only" => {
                return Err(format!("stick-table: '{word}' is not supported yet"))
            }
            "nopurge" => {
                return Err("stick-table: 'nopurge' is not supported (weir always evicts to stay within 'size')".into())
            }
            other => return Err(format!("unexpected argument '{other}' (expected '{usage}')")),
        }
        i += 2;
    }
    let Some(mut key) = ty else {
        return Err(format!("missing 'type' (expected '{usage}')"));
    };
    if let Some(n) = len {
        match &mut key {
            KeyType::String(l) => *l = n,
            _ => return Err("'len' applies to 'type string' only".into()),
        }
    }
    def.key = key;
    def.size = size.ok_or_else(|| format!("missing 'size' (expected '{usage}')"))?;
    // Without `expire`, entries stay until the table is full (then the
    // least recently used goes).
    def.expire = expire.unwrap_or(std::time::Duration::MAX);
    p.stick_table = Some((def, ctx.loc.clone()));
    Ok(())
}

/// One data type of a `store` list: `conn_cur`, `http_req_rate(10s)`, ...
fn store(def: &mut crate::stick::TableDef, name: &str, arg: Option<&str>) -> R {
    const STORED: &str = "conn_cnt, conn_cur, conn_rate(<period>), gpc0, gpc0_rate(<period>), http_req_cnt, http_req_rate(<period>), http_err_cnt or http_err_rate(<period>)";
    let rate = |arg: Option<&str>| -> Result<Option<std::time::Duration>, String> {
        let Some(period) = arg else {
            return Err(format!("'store {name}' needs a period: {name}(<period>)"));
        };
        let d =
            crate::config::units::parse_time(period).map_err(|e| format!("'store {name}': {e}"))?;
        if d.is_zero() {
            return Err(format!("'store {name}': the period must not be 0"));
        }
        Ok(Some(d))
    };
    let flag = |arg: Option<&str>| match arg {
        None => Ok(true),
        Some(_) => Err(format!("'store {name}' takes no argument")),
    };
    match name {
        "http_req_cnt" => def.http_req_cnt = flag(arg)?,
        "http_req_rate" => def.http_req_rate = rate(arg)?,
        "conn_cnt" => def.conn_cnt = flag(arg)?,
        "conn_cur" => def.conn_cur = flag(arg)?,
        "conn_rate" => def.conn_rate = rate(arg)?,
        "http_err_cnt" => def.http_err_cnt = flag(arg)?,
        "http_err_rate" => def.http_err_rate = rate(arg)?,
        "gpc0" => def.gpc0 = flag(arg)?,
        "gpc0_rate" => def.gpc0_rate = rate(arg)?,
        "sess_cnt" | "sess_rate" | "http_fail_cnt" | "http_fail_rate" | "bytes_in_cnt"
        | "bytes_in_rate" | "bytes_out_cnt" | "bytes_out_rate" | "gpc1" | "gpc1_rate" | "gpt0"
        | "gpc" | "gpc_rate" | "gpt" | "server_id" | "server_key" | "server_name" => {
            return Err(format!(
                "stick-table: 'store {name}' is not supported yet (weir stores {STORED})"
            ))
        }
        other => {
            return Err(format!(
                "stick-table: unknown data type '{other}' in 'store' (expected {STORED})"
            ))
        }
    }
    Ok(())
}

pub(crate) fn http_response(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let (head, tail) = split_cond(&ctx.words[1..]);
    let Some(action) = head.first() else {
        return Err(format!(
            "missing action (expected one of {})",
            RES_ACTIONS.join(", ")
        ));
    };
    let stage = Stage::Response;
    let action = match action.as_str() {
        "allow" => {
            args(head, 0, "allow")?;
            ResAction::Allow
        }
        "deny" => ResAction::Deny {
            status: deny_status(head)?,
        },
        "set-status" => {
            let code = match &head[1..] {
                [code] => code,
                [code, r, _] if r == "reason" => code,
                [] => {
                    return Err(
                        "missing argument (expected 'set-status <code> [reason <text>]')".into(),
                    )
                }
                [_, other, ..] => {
                    return Err(format!(
                    "unexpected argument '{other}' (expected 'set-status <code> [reason <text>]')"
                ))
                }
            };
            ResAction::SetStatus(status_code(code, "status")?)
        }
        other => match header_action(head, stage)? {
            Some(h) => ResAction::Header(h),
            None => {
                return Err(unknown_action(
                    "http-response",
                    other,
                    RES_ACTIONS,
                    RES_UNSUPPORTED,
                ))
            }
        },
    };
    let cond = condition(ctx, p, tail, stage)?;
    p.http_response.push(Rule {
        action,
        cond,
        loc: ctx.loc.clone(),
    });
    Ok(())
}

// ------------------------------------------------------------- capture

pub(crate) fn capture(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let usage = "capture { request | response } header <name> len <length>";
    let words = &ctx.words[1..];
    match words.first().map(String::as_str) {
        Some("cookie") => return Err("'capture cookie' is not supported yet".into()),
        Some("request" | "response") => {}
        Some(other) => {
            return Err(format!(
                "unexpected argument '{other}' (expected '{usage}')"
            ))
        }
        None => return Err(format!("missing argument (expected '{usage}')")),
    }
    let [dir, what, name, len_kw, len] = words else {
        return Err(format!("wrong number of arguments (expected '{usage}')"));
    };
    if what != "header" || len_kw != "len" {
        return Err(format!("expected '{usage}'"));
    }
    let len = match len.parse::<usize>() {
        Ok(n) if (1..=65536).contains(&n) => n,
        _ => return Err(format!("invalid length '{len}' (expected 1 to 65536)")),
    };
    let capture = Capture {
        name: header_name(name)?,
        len,
    };
    if dir == "request" {
        p.capture_request.push(capture);
    } else {
        p.capture_response.push(capture);
    }
    Ok(())
}

// ---------------------------------------------------------- log-format

pub(crate) fn log_format(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let text =
        match &ctx.words[1..] {
            [one] => one,
            [] => return Err("missing <format> (expected 'log-format <format>')".into()),
            [_, ..] => return Err(
                "expects exactly one argument (quote the format or escape its spaces with '\\ ')"
                    .into(),
            ),
        };
    p.log_format = Some(format(text, Stage::Log)?);
    Ok(())
}

// ----------------------------------------------------- option forwardfor

/// `option forwardfor [except <network>] [header <name>] [if-none]`
pub(crate) fn forwardfor(words: &[String]) -> Result<ForwardFor, String> {
    let mut ff = ForwardFor {
        header: HeaderName::from_static("x-forwarded-for"),
        except: None,
        if_none: false,
    };
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let value = words.get(i + 1).map(String::as_str);
        match (word, value) {
            ("if-none", _) => {
                ff.if_none = true;
                i += 1;
                continue;
            }
            ("except", Some(net)) => ff.except = Some(network(net)?),
            ("header", Some(name)) => ff.header = header_name(name)?,
            ("except" | "header", None) => return Err(format!("missing value after '{word}'")),
            (other, _) => {
                return Err(format!(
                    "unexpected argument '{other}' (expected 'option forwardfor [except <network>] [header <name>] [if-none]')"
                ))
            }
        }
        i += 2;
    }
    Ok(ff)
}

/// `10.0.0.0/8`, `::1/128` or a single address.
fn network(text: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("invalid network '{text}'"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("invalid network '{text}'")),
        },
    };
    Ok((ip, len))
}

/// True when `ip` is in the network `(net, len)`.
pub fn in_network(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn forwardfor_arguments() {
        let ff = forwardfor(&[]).unwrap();
        assert_eq!(ff.header, "x-forwarded-for");
        assert!(!ff.if_none && ff.except.is_none());
        let ff = forwardfor(&w("except 127.0.0.0/8 header x-client if-none")).unwrap();
        assert_eq!(ff.header, "x-client");
        assert!(ff.if_none);
        assert!(in_network("127.1.2.3".parse().unwrap(), ff.except.unwrap()));
        assert!(!in_network("10.0.0.1".parse().unwrap(), ff.except.unwrap()));
        assert!(in_network(
            "::ffff:127.0.0.1".parse().unwrap(),
            ff.except.unwrap()
        ));
        assert_eq!(
            forwardfor(&w("except 10.0.0.0/33")).unwrap_err(),
            "invalid network '10.0.0.0/33'"
        );
        assert_eq!(
            forwardfor(&w("header")).unwrap_err(),
            "missing value after 'header'"
        );
    }

    #[test]
    fn return_needs_a_content_type_for_a_body() {
        assert_eq!(
            return_spec(&w("return status 200 string ok")).unwrap_err(),
            "'return' with a body needs a 'content-type'"
        );
        let r = return_spec(&w("return status 404 content-type text/plain string gone")).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(
            status_code("700", "status").unwrap_err(),
            "invalid status '700' (expected an HTTP status code between 200 and 599)"
        );
    }

    #[test]
    fn deny_statuses() {
        assert_eq!(deny_status(&w("deny")), Ok(403));
        assert_eq!(deny_status(&w("deny deny_status 429")), Ok(429));
        assert!(deny_status(&w("deny deny_status")).is_err());
        assert!(deny_status(&w("deny foo")).is_err());
    }
}
