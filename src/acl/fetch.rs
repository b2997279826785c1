//! Sample fetches (HAProxy configuration manual §7.3.2 to §7.3.6, plus
//! weir's gRPC fetches).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST};
use http::Version;

use super::expr::{leading_int, Args, Kind};
use super::matcher::MatchKind;
use super::{Input, Sample};
use crate::stick::Data;

/// Request or response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Req,
    Res,
}

/// How a header value becomes a sample (`hdr`, `hdr_val`, `hdr_ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HdrAs {
    Str,
    Int,
    Ip,
}

#[derive(Debug)]
pub(crate) enum Fetch {
    Const(Sample<'static>),
    Path,
    PathQ,
    Url,
    Base,
    Query,
    UrlParam {
        name: Option<String>,
        delims: String,
        as_int: bool,
    },
    Method,
    ReqVer,
    ProtoHttp,
    Hdr {
        side: Side,
        name: HeaderName,
        occ: i64,
        full: bool,
        conv: HdrAs,
    },
    HdrCnt {
        side: Side,
        name: HeaderName,
        full: bool,
    },
    Cook {
        name: String,
        as_int: bool,
    },
    CookCnt {
        name: String,
    },
    Src,
    SrcPort,
    Dst,
    DstPort,
    SslFc,
    SslFcHasSni,
    SslFcSni,
    SslFcAlpn,
    SslFcProtocol,
    SslCUsed,
    SslCVerify,
    SslCSDn,
    SslCIDn,
    FeName,
    BeName,
    Date(i64),
    Grpc,
    GrpcPathValid,
    GrpcService,
    GrpcMethod,
    Status,
    GrpcStatus,
    /// `http_auth_bearer([<header>])`.
    AuthBearer(HeaderName),
    /// `sc_http_req_rate(<ctr>[,<table>])`, `sc0_conn_cur([<table>])`,
    /// `sc_inc_gpc0(<ctr>)`, ...
    Sc {
        ctr: usize,
        table: Option<String>,
        op: ScOp,
    },
    /// `src_conn_cur([<table>])`, ...: the entry of the client address in
    /// `table` (default: the current proxy's).
    SrcData {
        table: Option<String>,
        data: Data,
    },
}

/// What an `sc*_` fetch does with the tracked entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScOp {
    Read(Data),
    IncGpc0,
    ClrGpc0,
}

/// The fetch suffix that reads a data type (`sc_<suffix>`, `src_<suffix>`):
/// its `store` name, except `gpc0`, which HAProxy reads as `get_gpc0`.
fn read_suffixes() -> impl Iterator<Item = (&'static str, Data)> {
    Data::ALL
        .iter()
        .map(|&(n, d)| (if n == "gpc0" { "get_gpc0" } else { n }, d))
}

/// The data type a `src_<suffix>` fetch reads.
fn src_data(suffix: &str) -> Option<Data> {
    read_suffixes().find(|(n, _)| *n == suffix).map(|(_, d)| d)
}

/// What an `sc_<suffix>` / `scN_<suffix>` fetch does.
fn sc_op(suffix: &str) -> Option<ScOp> {
    match suffix {
        "inc_gpc0" => Some(ScOp::IncGpc0),
        "clr_gpc0" => Some(ScOp::ClrGpc0),
        _ => src_data(suffix).map(ScOp::Read),
    }
}

/// Fetches that read only the connection (usable in `tcp-request
/// connection` rules): the constants, addresses, names and stick counters.
const CONNECTION_FETCHES: &[&str] = &[
    "always_false",
    "always_true",
    "bool",
    "date",
    "dst",
    "dst_port",
    "fe_name",
    "int",
    "ipv4",
    "ipv6",
    "src",
    "src_port",
    "str",
];

/// Whether fetch `name` can be used before any byte of the connection is
/// read (`tcp-request connection`).
pub(crate) fn at_connection(name: &str) -> bool {
    CONNECTION_FETCHES.contains(&name) || name.starts_with("sc") || name.starts_with("src_")
}

/// Every fetch name (aliases and the generated stick-counter ones included),
/// for did-you-mean suggestions.
pub(crate) fn names() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v: Vec<&'static str> = NAMES.to_vec();
        for (d, _) in read_suffixes() {
            v.push(Box::leak(format!("src_{d}").into_boxed_str()));
        }
        let ops = read_suffixes()
            .map(|(n, _)| n)
            .chain(["inc_gpc0", "clr_gpc0"]);
        for op in ops {
            for p in ["sc_", "sc0_", "sc1_", "sc2_"] {
                v.push(Box::leak(format!("{p}{op}").into_boxed_str()));
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    })
}

/// A fetch compiled from its name and arguments.
pub(crate) struct Built {
    pub fetch: Fetch,
    pub kind: Kind,
    pub response: bool,
    /// Canonical name (for messages).
    pub name: &'static str,
}

/// Every fetch name (aliases included), for did-you-mean suggestions.
pub(crate) const NAMES: &[&str] = &[
    "always_false",
    "always_true",
    "base",
    "be_name",
    "bool",
    "cook",
    "cook_cnt",
    "cook_val",
    "date",
    "dst",
    "dst_port",
    "fe_name",
    "grpc.method",
    "grpc.service",
    "grpc_status",
    "hdr",
    "hdr_cnt",
    "hdr_ip",
    "hdr_val",
    "http_auth_bearer",
    "int",
    "ipv4",
    "ipv6",
    "method",
    "path",
    "pathq",
    "query",
    "req.cook",
    "req.cook_cnt",
    "req.cook_val",
    "req.fhdr",
    "req.fhdr_cnt",
    "req.grpc",
    "req.grpc_path_valid",
    "req.hdr",
    "req.hdr_cnt",
    "req.hdr_ip",
    "req.hdr_val",
    "req.proto_http",
    "req.ver",
    "req_ver",
    "res.fhdr",
    "res.fhdr_cnt",
    "res.grpc_status",
    "res.hdr",
    "res.hdr_cnt",
    "res.hdr_ip",
    "res.hdr_val",
    "shdr",
    "shdr_cnt",
    "shdr_ip",
    "shdr_val",
    "src",
    "src_port",
    "ssl_c_i_dn",
    "ssl_c_s_dn",
    "ssl_c_used",
    "ssl_c_verify",
    "ssl_fc",
    "ssl_fc_alpn",
    "ssl_fc_has_sni",
    "ssl_fc_protocol",
    "ssl_fc_sni",
    "status",
    "str",
    "url",
    "url_param",
    "urlp",
    "urlp_val",
];

/// Fetches that have ACL shortcuts `<base>_<method>`, with the fetch they
/// stand for.
const SHORTCUT_BASES: &[(&str, &str)] = &[
    ("path", "path"),
    ("url", "url"),
    ("base", "base"),
    ("hdr", "hdr"),
    ("shdr", "res.hdr"),
    ("urlp", "url_param"),
    ("cook", "req.cook"),
    ("ssl_fc_sni", "ssl_fc_sni"),
];

const SHORTCUT_METHODS: &[(&str, MatchKind)] = &[
    ("beg", MatchKind::Beg),
    ("end", MatchKind::End),
    ("sub", MatchKind::Sub),
    ("reg", MatchKind::Reg),
    ("dir", MatchKind::Dir),
    ("dom", MatchKind::Dom),
    ("len", MatchKind::Len),
];

/// `path_beg` -> (`path`, beg).
pub(crate) fn shortcut(name: &str) -> Option<(&'static str, MatchKind)> {
    let (base, suffix) = name.rsplit_once('_')?;
    let fetch = SHORTCUT_BASES.iter().find(|(b, _)| *b == base)?.1;
    let m = SHORTCUT_METHODS.iter().find(|(s, _)| *s == suffix)?.1;
    Some((fetch, m))
}

pub(crate) fn shortcut_names() -> Vec<String> {
    SHORTCUT_BASES
        .iter()
        .flat_map(|(b, _)| {
            SHORTCUT_METHODS
                .iter()
                .map(move |(s, _)| format!("{b}_{s}"))
        })
        .collect()
}

/// `None` when `name` is not a fetch.
pub(crate) fn build(name: &str, args: &[String]) -> Option<Result<Built, String>> {
    let canon = *names().iter().find(|n| **n == name)?;
    Some(build_known(canon, args))
}

fn build_known(name: &'static str, args: &[String]) -> Result<Built, String> {
    let what = format!("fetch method '{name}'");
    let a = |usage: &str, min: usize, max: usize| Args::new(what.clone(), usage, args, min, max);
    let req = |fetch: Fetch, kind: Kind| {
        Ok(Built {
            fetch,
            kind,
            response: false,
            name,
        })
    };
    let res = |fetch: Fetch, kind: Kind| {
        Ok(Built {
            fetch,
            kind,
            response: true,
            name,
        })
    };
    match name {
        "always_true" | "always_false" => {
            a(name, 0, 0)?;
            req(
                Fetch::Const(Sample::Bool(name == "always_true")),
                Kind::Bool,
            )
        }
        "int" => {
            let a = a("int(<integer>)", 1, 1)?;
            req(Fetch::Const(Sample::Int(a.int(0)?.unwrap_or(0))), Kind::Int)
        }
        "str" => {
            let a = a("str(<string>)", 1, 1)?;
            let s = a.str(0).unwrap_or("").to_string();
            req(Fetch::Const(Sample::Str(Cow::Owned(s))), Kind::Str)
        }
        "bool" => {
            let a = a("bool(<true|false|1|0>)", 1, 1)?;
            let v = match a.str(0).unwrap_or("") {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(format!(
                        "{what}: expects 'true', 'false', '1' or '0', got '{other}'"
                    ))
                }
            };
            req(Fetch::Const(Sample::Bool(v)), Kind::Bool)
        }
        "ipv4" | "ipv6" => {
            let a = a(
                if name == "ipv4" {
                    "ipv4(<address>)"
                } else {
                    "ipv6(<address>)"
                },
                1,
                1,
            )?;
            let s = a.str(0).unwrap_or("");
            let ip: IpAddr = match (name, s.parse::<IpAddr>()) {
                ("ipv4", Ok(ip @ IpAddr::V4(_))) | ("ipv6", Ok(ip @ IpAddr::V6(_))) => ip,
                _ => {
                    return Err(format!(
                        "{what}: '{s}' is not a valid {} address",
                        if name == "ipv4" { "IPv4" } else { "IPv6" }
                    ))
                }
            };
            req(Fetch::Const(Sample::Ip(ip)), Kind::Ip)
        }
        "date" => {
            let a = a("date([<offset>])", 0, 1)?;
            req(Fetch::Date(a.int(0)?.unwrap_or(0)), Kind::Int)
        }
        "path" => {
            a(name, 0, 0)?;
            req(Fetch::Path, Kind::Str)
        }
        "pathq" => {
            a(name, 0, 0)?;
            req(Fetch::PathQ, Kind::Str)
        }
        "url" => {
            a(name, 0, 0)?;
            req(Fetch::Url, Kind::Str)
        }
        "base" => {
            a(name, 0, 0)?;
            req(Fetch::Base, Kind::Str)
        }
        "query" => {
            a(name, 0, 0)?;
            req(Fetch::Query, Kind::Str)
        }
        "url_param" | "urlp" | "urlp_val" => {
            let a = a(&format!("{name}([<name>[,<delimiters>]])"), 0, 2)?;
            let pname = a.str(0).filter(|s| !s.is_empty()).map(str::to_string);
            let delims = a
                .str(1)
                .filter(|s| !s.is_empty())
                .unwrap_or("&")
                .to_string();
            let as_int = name == "urlp_val";
            req(
                Fetch::UrlParam {
                    name: pname,
                    delims,
                    as_int,
                },
                if as_int { Kind::Int } else { Kind::Str },
            )
        }
        "method" => {
            a(name, 0, 0)?;
            req(Fetch::Method, Kind::Str)
        }
        "req.ver" | "req_ver" => {
            a(name, 0, 0)?;
            req(Fetch::ReqVer, Kind::Str)
        }
        "req.proto_http" => {
            a(name, 0, 0)?;
            req(Fetch::ProtoHttp, Kind::Bool)
        }
        "req.hdr" | "hdr" | "req.fhdr" | "req.hdr_val" | "hdr_val" | "req.hdr_ip" | "hdr_ip"
        | "res.hdr" | "shdr" | "res.fhdr" | "res.hdr_val" | "shdr_val" | "res.hdr_ip"
        | "shdr_ip" => {
            let a = a(&format!("{name}(<header name>[,<occurrence>])"), 1, 2)?;
            let hname = a.header(0)?;
            let occ = a.int(1)?.unwrap_or(0);
            let side = if name.starts_with("res.") || name.starts_with("shdr") {
                Side::Res
            } else {
                Side::Req
            };
            let full = name.ends_with(".fhdr");
            let (conv, kind) = if name.ends_with("_val") {
                (HdrAs::Int, Kind::Int)
            } else if name.ends_with("_ip") {
                (HdrAs::Ip, Kind::Ip)
            } else {
                (HdrAs::Str, Kind::Str)
            };
            let fetch = Fetch::Hdr {
                side,
                name: hname,
                occ,
                full,
                conv,
            };
            if side == Side::Res {
                res(fetch, kind)
            } else {
                req(fetch, kind)
            }
        }
        "req.hdr_cnt" | "hdr_cnt" | "req.fhdr_cnt" | "res.hdr_cnt" | "shdr_cnt"
        | "res.fhdr_cnt" => {
            let a = a(&format!("{name}(<header name>)"), 1, 1)?;
            let hname = a.header(0)?;
            let full = name.ends_with("fhdr_cnt");
            if name.starts_with("res.") || name.starts_with("shdr") {
                res(
                    Fetch::HdrCnt {
                        side: Side::Res,
                        name: hname,
                        full,
                    },
                    Kind::Int,
                )
            } else {
                req(
                    Fetch::HdrCnt {
                        side: Side::Req,
                        name: hname,
                        full,
                    },
                    Kind::Int,
                )
            }
        }
        "req.cook" | "cook" | "req.cook_val" | "cook_val" => {
            let a = a(&format!("{name}(<cookie name>)"), 1, 1)?;
            let cname = a.nonempty(0, "the cookie name")?.to_string();
            let as_int = name.ends_with("_val");
            req(
                Fetch::Cook {
                    name: cname,
                    as_int,
                },
                if as_int { Kind::Int } else { Kind::Str },
            )
        }
        "req.cook_cnt" | "cook_cnt" => {
            let a = a(&format!("{name}(<cookie name>)"), 1, 1)?;
            let cname = a.nonempty(0, "the cookie name")?.to_string();
            req(Fetch::CookCnt { name: cname }, Kind::Int)
        }
        "src" | "dst" | "src_port" | "dst_port" => {
            a(name, 0, 0)?;
            match name {
                "src" => req(Fetch::Src, Kind::Ip),
                "dst" => req(Fetch::Dst, Kind::Ip),
                "src_port" => req(Fetch::SrcPort, Kind::Int),
                _ => req(Fetch::DstPort, Kind::Int),
            }
        }
        "ssl_fc" | "ssl_fc_has_sni" | "ssl_fc_sni" | "ssl_fc_alpn" | "ssl_fc_protocol" => {
            a(name, 0, 0)?;
            match name {
                "ssl_fc" => req(Fetch::SslFc, Kind::Bool),
                "ssl_fc_has_sni" => req(Fetch::SslFcHasSni, Kind::Bool),
                "ssl_fc_sni" => req(Fetch::SslFcSni, Kind::Str),
                "ssl_fc_alpn" => req(Fetch::SslFcAlpn, Kind::Str),
                _ => req(Fetch::SslFcProtocol, Kind::Str),
            }
        }
        "ssl_c_used" | "ssl_c_verify" | "ssl_c_s_dn" | "ssl_c_i_dn" => {
            a(name, 0, 0)?;
            match name {
                "ssl_c_used" => req(Fetch::SslCUsed, Kind::Bool),
                "ssl_c_verify" => req(Fetch::SslCVerify, Kind::Int),
                "ssl_c_s_dn" => req(Fetch::SslCSDn, Kind::Str),
                _ => req(Fetch::SslCIDn, Kind::Str),
            }
        }
        "fe_name" => {
            a(name, 0, 0)?;
            req(Fetch::FeName, Kind::Str)
        }
        "be_name" => {
            a(name, 0, 0)?;
            req(Fetch::BeName, Kind::Str)
        }
        "req.grpc" => {
            a(name, 0, 0)?;
            req(Fetch::Grpc, Kind::Bool)
        }
        "req.grpc_path_valid" => {
            a(name, 0, 0)?;
            req(Fetch::GrpcPathValid, Kind::Bool)
        }
        "grpc.service" => {
            a(name, 0, 0)?;
            req(Fetch::GrpcService, Kind::Str)
        }
        "grpc.method" => {
            a(name, 0, 0)?;
            req(Fetch::GrpcMethod, Kind::Str)
        }
        "status" => {
            a(name, 0, 0)?;
            res(Fetch::Status, Kind::Int)
        }
        "grpc_status" | "res.grpc_status" => {
            a(name, 0, 0)?;
            res(Fetch::GrpcStatus, Kind::Int)
        }
        "http_auth_bearer" => {
            let a = a("http_auth_bearer([<header name>])", 0, 1)?;
            let hname = match a.str(0).filter(|s| !s.is_empty()) {
                Some(_) => a.header(0)?,
                None => AUTHORIZATION,
            };
            req(Fetch::AuthBearer(hname), Kind::Str)
        }
        _ if name.starts_with("sc") => {
            let (ctr, op) = name.split_once('_').unwrap_or((name, ""));
            let Some(op) = sc_op(op) else {
                return Err(format!("unknown fetch method '{name}'"));
            };
            let (ctr, table) = if ctr == "sc" {
                let a = a(&format!("{name}(<ctr>[,<table>])"), 1, 2)?;
                let ctr = match a.int(0)? {
                    Some(n @ 0..=2) => n as usize,
                    _ => {
                        return Err(format!(
                            "{what}: the stick counter must be 0, 1 or 2 (weir tracks sc0 to sc2)"
                        ))
                    }
                };
                (ctr, a.str(1))
            } else {
                let a = a(&format!("{name}([<table>])"), 0, 1)?;
                (usize::from(ctr.as_bytes()[2] - b'0'), a.str(0))
            };
            let table = table.filter(|s| !s.is_empty()).map(str::to_string);
            req(Fetch::Sc { ctr, table, op }, Kind::Int)
        }
        _ if name.starts_with("src_") => {
            let a = a(&format!("{name}([<table>])"), 0, 1)?;
            let data = name.strip_prefix("src_").and_then(src_data);
            let Some(data) = data else {
                return Err(format!("unknown fetch method '{name}'"));
            };
            let table = a.str(0).filter(|s| !s.is_empty()).map(str::to_string);
            req(Fetch::SrcData { table, data }, Kind::Int)
        }
        _ => Err(format!("unknown fetch method '{name}'")),
    }
}

fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Values of header `name`: every line, split at commas unless `full`,
/// trimmed; then `fallback` (the request authority standing in for `host`).
fn hdr_values<'a>(
    map: &'a HeaderMap,
    name: &HeaderName,
    full: bool,
    fallback: Option<&'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    map.get_all(name)
        .iter()
        .flat_map(move |v| {
            v.as_bytes()
                .split(move |&b| !full && b == b',')
                .map(trim_ows)
        })
        .chain(fallback)
}

/// The header map to read and the host fallback: an HTTP/2 request carries
/// its host in `:authority`, which stands in for a missing `host` header.
fn hdr_src<'a>(
    input: &Input<'a>,
    side: Side,
    name: &HeaderName,
) -> Option<(&'a HeaderMap, Option<&'a [u8]>)> {
    match side {
        Side::Req => {
            let fallback = if *name == HOST && !input.headers.contains_key(HOST) {
                input.uri.authority().map(|a| a.as_str().as_bytes())
            } else {
                None
            };
            Some((input.headers, fallback))
        }
        Side::Res => Some((input.res?.headers, None)),
    }
}

fn hdr_sample(v: &[u8], conv: HdrAs) -> Option<Sample<'_>> {
    match conv {
        HdrAs::Str => Some(Sample::Str(String::from_utf8_lossy(v))),
        HdrAs::Int => Some(Sample::Int(leading_int(v))),
        HdrAs::Ip => std::str::from_utf8(v)
            .ok()?
            .trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| Sample::Ip(ip.to_canonical())),
    }
}

/// Occurrence `occ` (0: last, 1: first, -1: last, -2: the one before).
fn pick<'a, I: Iterator<Item = &'a [u8]>>(mk: impl Fn() -> I, occ: i64) -> Option<&'a [u8]> {
    if occ == 0 {
        mk().last()
    } else if occ > 0 {
        mk().nth(usize::try_from(occ - 1).ok()?)
    } else {
        let n = mk().count();
        let back = usize::try_from(occ.unsigned_abs()).ok()?;
        if back > n {
            None
        } else {
            mk().nth(n - back)
        }
    }
}

/// Calls `f` with the value of each cookie `name` until it returns true.
fn each_cookie<'a>(map: &'a HeaderMap, name: &str, f: &mut dyn FnMut(&'a [u8]) -> bool) -> bool {
    for v in map.get_all(COOKIE) {
        for c in v.as_bytes().split(|b| *b == b';') {
            let c = trim_ows(c);
            if let Some(eq) = c.iter().position(|b| *b == b'=') {
                if trim_ows(&c[..eq]) == name.as_bytes() && f(trim_ows(&c[eq + 1..])) {
                    return true;
                }
            }
        }
    }
    false
}

/// Calls `f` with the value of each query parameter `name` (any parameter
/// when `None`) until it returns true.
fn each_param<'a>(
    query: &'a str,
    name: Option<&str>,
    delims: &str,
    f: &mut dyn FnMut(&'a str) -> bool,
) -> bool {
    for p in query.split(|c| delims.contains(c)) {
        if let Some((k, v)) = p.split_once('=') {
            if name.is_none_or(|n| n == k) && f(v) {
                return true;
            }
        }
    }
    false
}

fn param_sample(v: &str, as_int: bool) -> Sample<'_> {
    if as_int {
        Sample::Int(leading_int(v.as_bytes()))
    } else {
        Sample::Str(Cow::Borrowed(v))
    }
}

fn cook_sample(v: &[u8], as_int: bool) -> Sample<'_> {
    if as_int {
        Sample::Int(leading_int(v))
    } else {
        Sample::Str(String::from_utf8_lossy(v))
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme matched
/// case-insensitively); `None` for another scheme or an empty token.
pub(crate) fn bearer(v: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let (scheme, rest) = v.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// `/pkg.Service/Method` -> (`pkg.Service`, `Method`).
fn grpc_parts(path: &str) -> Option<(&str, &str)> {
    let (svc, method) = path.strip_prefix('/')?.split_once('/')?;
    if svc.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((svc, method))
}

fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    const G: &[u8] = b"application/grpc";
    ct.len() >= G.len()
        && ct[..G.len()].eq_ignore_ascii_case(G)
        && matches!(ct.get(G.len()), None | Some(b'+') | Some(b';'))
}

fn borrowed(s: &str) -> Sample<'_> {
    Sample::Str(Cow::Borrowed(s))
}

impl Fetch {
    /// The stick table named in the arguments, if any.
    pub(crate) fn table(&self) -> Option<&str> {
        match self {
            Fetch::Sc { table, .. } | Fetch::SrcData { table, .. } => table.as_deref(),
            _ => None,
        }
    }

    /// The fetch's value; for multi-valued fetches the last occurrence
    /// (the first for `url_param`), or the one `occ` selects.
    pub(crate) fn eval<'a>(&self, input: &Input<'a>) -> Option<Sample<'a>> {
        Some(match self {
            Fetch::Const(s) => s.clone(),
            Fetch::Path => {
                let p = input.uri.path();
                if p.is_empty() {
                    return None;
                }
                borrowed(p)
            }
            Fetch::PathQ => borrowed(input.uri.path_and_query()?.as_str()),
            Fetch::Url => {
                let u = input.uri;
                if input.version < Version::HTTP_2 && u.scheme().is_some() {
                    Sample::Str(Cow::Owned(u.to_string()))
                } else if let Some(pq) = u.path_and_query() {
                    borrowed(pq.as_str())
                } else {
                    borrowed(u.authority()?.as_str())
                }
            }
            Fetch::Base => {
                let host = match input.headers.get(HOST) {
                    Some(h) => String::from_utf8_lossy(trim_ows(h.as_bytes())),
                    None => Cow::Borrowed(input.uri.authority().map_or("", |a| a.as_str())),
                };
                Sample::Str(Cow::Owned(format!("{}{}", host, input.uri.path())))
            }
            Fetch::Query => borrowed(input.uri.query()?),
            Fetch::UrlParam {
                name,
                delims,
                as_int,
            } => {
                let mut out = None;
                each_param(input.uri.query()?, name.as_deref(), delims, &mut |v| {
                    out = Some(v);
                    true
                });
                param_sample(out?, *as_int)
            }
            Fetch::Method => borrowed(input.method.as_str()),
            Fetch::ReqVer => borrowed(match input.version {
                Version::HTTP_09 => "0.9",
                Version::HTTP_10 => "1.0",
                Version::HTTP_11 => "1.1",
                Version::HTTP_2 => "2.0",
                Version::HTTP_3 => "3.0",
                _ => return None,
            }),
            Fetch::ProtoHttp => Sample::Bool(true),
            Fetch::Hdr {
                side,
                name,
                occ,
                full,
                conv,
            } => {
                let (map, fb) = hdr_src(input, *side, name)?;
                let v = pick(|| hdr_values(map, name, *full, fb), *occ)?;
                hdr_sample(v, *conv)?
            }
            Fetch::HdrCnt { side, name, full } => {
                let (map, fb) = hdr_src(input, *side, name)?;
                Sample::Int(
                    i64::try_from(hdr_values(map, name, *full, fb).count()).unwrap_or(i64::MAX),
                )
            }
            Fetch::Cook { name, as_int } => {
                let mut last = None;
                each_cookie(input.headers, name, &mut |v| {
                    last = Some(v);
                    false
                });
                cook_sample(last?, *as_int)
            }
            Fetch::CookCnt { name } => {
                let mut n = 0i64;
                each_cookie(input.headers, name, &mut |_| {
                    n += 1;
                    false
                });
                Sample::Int(n)
            }
            Fetch::Src => Sample::Ip(input.src.ip().to_canonical()),
            Fetch::SrcPort => Sample::Int(i64::from(input.src.port())),
            Fetch::Dst => Sample::Ip(input.dst.ip().to_canonical()),
            Fetch::DstPort => Sample::Int(i64::from(input.dst.port())),
            Fetch::SslFc => Sample::Bool(input.tls.is_some()),
            Fetch::SslFcHasSni => Sample::Bool(input.tls.is_some_and(|t| t.sni.is_some())),
            Fetch::SslFcSni => borrowed(input.tls?.sni.as_deref()?),
            Fetch::SslFcAlpn => borrowed(input.tls?.alpn.as_deref()?),
            Fetch::SslFcProtocol => borrowed(input.tls?.version?),
            Fetch::SslCUsed => Sample::Bool(input.tls.is_some_and(|t| t.client_subject.is_some())),
            // rustls refuses a client certificate that does not verify, so a
            // certificate that got this far verified: X509_V_OK.
            Fetch::SslCVerify => {
                input.tls?;
                Sample::Int(0)
            }
            Fetch::SslCSDn => borrowed(input.tls?.client_subject.as_deref()?),
            Fetch::SslCIDn => borrowed(input.tls?.client_issuer.as_deref()?),
            Fetch::FeName => borrowed(input.frontend),
            Fetch::BeName => borrowed(input.backend?),
            Fetch::Date(off) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
                Sample::Int(i64::try_from(now).unwrap_or(i64::MAX).saturating_add(*off))
            }
            Fetch::Grpc => Sample::Bool(is_grpc(input.headers)),
            Fetch::GrpcPathValid => Sample::Bool(
                input.uri.query().is_none()
                    && crate::observe::stats::split_path(input.uri.path()).is_some(),
            ),
            Fetch::GrpcService => borrowed(grpc_parts(input.uri.path())?.0),
            Fetch::GrpcMethod => borrowed(grpc_parts(input.uri.path())?.1),
            Fetch::Status => Sample::Int(i64::from(input.res?.status)),
            Fetch::GrpcStatus => Sample::Int(i64::from(input.res?.grpc_status?)),
            Fetch::AuthBearer(name) => borrowed(bearer(input.headers.get(name)?.as_bytes())?),
            Fetch::Sc { ctr, table, op } => {
                let t = input.track?;
                let table = table.as_deref();
                Sample::Int(match op {
                    ScOp::Read(d) => t.get(*ctr, table, *d)?,
                    ScOp::IncGpc0 => t.inc_gpc0(*ctr, table)?,
                    ScOp::ClrGpc0 => t.clr_gpc0(*ctr, table)?,
                })
            }
            Fetch::SrcData { table, data } => {
                let t = input.track?;
                let table = table
                    .as_deref()
                    .unwrap_or(input.backend.unwrap_or(input.frontend));
                let src = Sample::Ip(input.src.ip().to_canonical());
                Sample::Int(t.lookup(table, &src, *data)?)
            }
        })
    }

    /// Calls `f` with every value until it returns true (ACL matching tests
    /// all occurrences of a multi-valued fetch); returns whether it did.
    pub(crate) fn each<'a>(
        &self,
        input: &Input<'a>,
        f: &mut dyn FnMut(Sample<'a>) -> bool,
    ) -> bool {
        match self {
            Fetch::Hdr {
                side,
                name,
                occ: 0,
                full,
                conv,
            } => {
                let Some((map, fb)) = hdr_src(input, *side, name) else {
                    return false;
                };
                hdr_values(map, name, *full, fb).any(|v| hdr_sample(v, *conv).is_some_and(&mut *f))
            }
            Fetch::Cook { name, as_int } => {
                each_cookie(input.headers, name, &mut |v| f(cook_sample(v, *as_int)))
            }
            Fetch::UrlParam {
                name,
                delims,
                as_int,
            } => match input.uri.query() {
                Some(q) => each_param(q, name.as_deref(), delims, &mut |v| {
                    f(param_sample(v, *as_int))
                }),
                None => false,
            },
            _ => self.eval(input).is_some_and(f),
        }
    }
}
