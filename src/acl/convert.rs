//! Converters (HAProxy configuration manual §7.3.1).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::sync::Arc;

use regex::Regex;

use super::expr::{as_str, to_bool, to_int, to_ip, to_str, Args, Kind};
use super::jwt::{self, JsonPath, QueryType, Verifier};
use super::matcher::{compile_regex, parse_mask};
use super::Sample;

#[derive(Debug)]
pub(crate) enum Conv {
    Lower,
    Upper,
    Field {
        idx: i64,
        delims: String,
        count: i64,
        word: bool,
    },
    Base64,
    B64Dec,
    Hex,
    Length,
    Bytes {
        off: usize,
        len: Option<usize>,
    },
    RegSub {
        re: Regex,
        subst: String,
        global: bool,
    },
    Json,
    UrlDec {
        form: bool,
    },
    LTrim(String),
    RTrim(String),
    Arith(Op, i64),
    Neg,
    Cpl,
    Not,
    Bool,
    Odd,
    Even,
    IpMask {
        v4: u32,
        v6: Option<u128>,
    },
    /// `jwt_header_query` / `jwt_payload_query`.
    JwtQuery {
        payload: bool,
        path: Option<JsonPath>,
        ty: QueryType,
    },
    /// `jwt_verify` / `jwt_verify_jwks`.
    JwtVerify(Arc<Verifier>),
    /// `jwt_expired` / `jwt_not_yet_valid`.
    JwtTime {
        expired: bool,
        leeway: i64,
    },
    /// `table_http_req_rate(<table>)`, `table_conn_cur(<table>)`, ...: the
    /// counter of the entry whose key is the sample (0 when absent).
    Table {
        table: String,
        data: crate::stick::Data,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
}

pub(crate) const NAMES: &[&str] = &[
    "add",
    "and",
    "b64dec",
    "base64",
    "bool",
    "bytes",
    "cpl",
    "div",
    "even",
    "field",
    "hex",
    "ipmask",
    "json",
    "jwt_expired",
    "jwt_header_query",
    "jwt_not_yet_valid",
    "jwt_payload_query",
    "jwt_verify",
    "jwt_verify_jwks",
    "len",
    "length",
    "lower",
    "ltrim",
    "mod",
    "mul",
    "neg",
    "not",
    "odd",
    "or",
    "regsub",
    "rtrim",
    "sub",
    "table_conn_cnt",
    "table_conn_cur",
    "table_conn_rate",
    "table_gpc0",
    "table_gpc0_rate",
    "table_http_err_cnt",
    "table_http_err_rate",
    "table_http_req_cnt",
    "table_http_req_rate",
    "upper",
    "url_dec",
    "word",
    "xor",
];

/// `None` when `name` is not a converter; else the converter, its input
/// type and its output type.
pub(crate) fn build(name: &str, args: &[String]) -> Option<Result<(Conv, Kind, Kind), String>> {
    if !NAMES.contains(&name) {
        return None;
    }
    Some(build_known(name, args))
}

fn build_known(name: &str, args: &[String]) -> Result<(Conv, Kind, Kind), String> {
    let what = format!("converter '{name}'");
    let a = |usage: &str, min: usize, max: usize| Args::new(what.clone(), usage, args, min, max);
    let s2s = |c: Conv| Ok((c, Kind::Str, Kind::Str));
    let i2i = |c: Conv| Ok((c, Kind::Int, Kind::Int));
    let i2b = |c: Conv| Ok((c, Kind::Int, Kind::Bool));
    match name {
        _ if name.starts_with("table_") => {
            let a = a(&format!("{name}(<table>)"), 1, 1)?;
            let table = a.nonempty(0, "the table name")?.to_string();
            let data = match &name["table_".len()..] {
                "gpc0" => crate::stick::Data::Gpc0,
                d => crate::stick::Data::of(d)
                    .ok_or_else(|| format!("unknown converter '{name}'"))?,
            };
            // Any key type: the table converts the sample to its own.
            Ok((Conv::Table { table, data }, Kind::Str, Kind::Int))
        }
        "lower" | "upper" | "base64" | "b64dec" | "hex" | "json" => {
            if name == "json" {
                let a = a("json([<input-code>])", 0, 1)?;
                if let Some(code) = a.str(0) {
                    if !matches!(code, "ascii" | "utf8" | "utf8s" | "utf8p" | "utf8ps") {
                        return Err(format!(
                            "{what}: unknown input code '{code}' (expected ascii, utf8, utf8s, utf8p or utf8ps)"
                        ));
                    }
                }
            } else {
                a(name, 0, 0)?;
            }
            s2s(match name {
                "lower" => Conv::Lower,
                "upper" => Conv::Upper,
                "base64" => Conv::Base64,
                "b64dec" => Conv::B64Dec,
                "hex" => Conv::Hex,
                _ => Conv::Json,
            })
        }
        "length" | "len" => {
            a(name, 0, 0)?;
            Ok((Conv::Length, Kind::Str, Kind::Int))
        }
        "field" | "word" => {
            let a = a(
                if name == "field" {
                    "field(<index>,<delimiters>[,<count>])"
                } else {
                    "word(<index>,<delimiters>[,<count>])"
                },
                2,
                3,
            )?;
            let idx = a.int(0)?.unwrap_or(0);
            if idx == 0 {
                return Err(format!(
                    "{what}: index must not be 0 (fields count from 1, or from -1 at the end)"
                ));
            }
            let delims = a.nonempty(1, "the delimiter list")?.to_string();
            let count = a.int(2)?.unwrap_or(1);
            if count < 0 {
                return Err(format!("{what}: count must not be negative"));
            }
            s2s(Conv::Field {
                idx,
                delims,
                count,
                word: name == "word",
            })
        }
        "bytes" => {
            let a = a("bytes(<offset>[,<length>])", 1, 2)?;
            let off = a.int(0)?.unwrap_or(0);
            let len = a.int(1)?;
            let off =
                usize::try_from(off).map_err(|_| format!("{what}: offset must not be negative"))?;
            let len = match len {
                None => None,
                Some(l) => Some(
                    usize::try_from(l)
                        .map_err(|_| format!("{what}: length must not be negative"))?,
                ),
            };
            s2s(Conv::Bytes { off, len })
        }
        "regsub" => {
            let a = a("regsub(<regex>,<subst>[,<flags>])", 2, 3)?;
            let mut global = false;
            let mut icase = false;
            for f in a.str(2).unwrap_or("").chars() {
                match f {
                    'g' => global = true,
                    'i' => icase = true,
                    other => {
                        return Err(format!("{what}: unknown flag '{other}' (expected g or i)"))
                    }
                }
            }
            let re = compile_regex(a.str(0).unwrap_or(""), icase)?;
            s2s(Conv::RegSub {
                re,
                subst: haproxy_subst(a.str(1).unwrap_or("")),
                global,
            })
        }
        "url_dec" => {
            let a = a("url_dec([<in_form>])", 0, 1)?;
            s2s(Conv::UrlDec {
                form: a.int(0)?.unwrap_or(0) != 0,
            })
        }
        "ltrim" | "rtrim" => {
            let a = a(
                if name == "ltrim" {
                    "ltrim(<chars>)"
                } else {
                    "rtrim(<chars>)"
                },
                1,
                1,
            )?;
            let chars = a.str(0).unwrap_or("").to_string();
            s2s(if name == "ltrim" {
                Conv::LTrim(chars)
            } else {
                Conv::RTrim(chars)
            })
        }
        "add" | "sub" | "mul" | "div" | "mod" | "and" | "or" | "xor" => {
            let a = a(&format!("{name}(<integer>)"), 1, 1)?;
            let v = a.int(0)?.unwrap_or(0);
            let op = match name {
                "add" => Op::Add,
                "sub" => Op::Sub,
                "mul" => Op::Mul,
                "div" => Op::Div,
                "mod" => Op::Mod,
                "and" => Op::And,
                "or" => Op::Or,
                _ => Op::Xor,
            };
            i2i(Conv::Arith(op, v))
        }
        "neg" | "cpl" => {
            a(name, 0, 0)?;
            i2i(if name == "neg" { Conv::Neg } else { Conv::Cpl })
        }
        "not" | "bool" | "odd" | "even" => {
            a(name, 0, 0)?;
            let c = match name {
                "not" => Conv::Not,
                "bool" => Conv::Bool,
                "odd" => Conv::Odd,
                _ => Conv::Even,
            };
            i2b(c)
        }
        "ipmask" => {
            let a = a("ipmask(<mask4>[,<mask6>])", 1, 2)?;
            let m4 = a.str(0).unwrap_or("");
            let v4 = match parse_mask(m4, false) {
                Some(IpAddr::V4(m)) => u32::from(m),
                _ => return Err(format!("{what}: '{m4}' is not a valid IPv4 mask")),
            };
            let v6 = match a.str(1) {
                None => None,
                Some(m6) => match parse_mask(m6, true) {
                    Some(IpAddr::V6(m)) => Some(u128::from(m)),
                    _ => return Err(format!("{what}: '{m6}' is not a valid IPv6 mask")),
                },
            };
            Ok((Conv::IpMask { v4, v6 }, Kind::Ip, Kind::Ip))
        }
        "jwt_header_query" | "jwt_payload_query" => {
            let a = a(&format!("{name}([<json path>[,<output type>]])"), 0, 2)?;
            let path = match a.str(0).map(str::trim).filter(|p| !p.is_empty()) {
                Some(p) => Some(JsonPath::parse(p).map_err(|e| format!("{what}: {e}"))?),
                None => None,
            };
            let ty = QueryType::parse(a.str(1)).map_err(|e| format!("{what}: {e}"))?;
            let out = match ty {
                QueryType::Int => Kind::Int,
                QueryType::Bool => Kind::Bool,
                QueryType::Auto | QueryType::Str => Kind::Str,
            };
            Ok((
                Conv::JwtQuery {
                    payload: name == "jwt_payload_query",
                    path,
                    ty,
                },
                Kind::Str,
                out,
            ))
        }
        "jwt_verify" => {
            let a = a("jwt_verify(<alg>,<key file>)", 2, 2)?;
            let file = a.nonempty(1, "the key file")?;
            let v = Verifier::load_key(a.str(0).unwrap_or(""), file)
                .map_err(|e| format!("{what}: {e}"))?;
            Ok((Conv::JwtVerify(Arc::new(v)), Kind::Str, Kind::Int))
        }
        "jwt_verify_jwks" => {
            let a = a("jwt_verify_jwks(<jwks file>)", 1, 1)?;
            let file = a.nonempty(0, "the JWKS file")?;
            let v = Verifier::load_jwks(file).map_err(|e| format!("{what}: {e}"))?;
            Ok((Conv::JwtVerify(Arc::new(v)), Kind::Str, Kind::Int))
        }
        "jwt_expired" | "jwt_not_yet_valid" => {
            let a = a(&format!("{name}([<leeway seconds>])"), 0, 1)?;
            let leeway = a.int(0)?.unwrap_or(0);
            if leeway < 0 {
                return Err(format!("{what}: leeway must not be negative"));
            }
            Ok((
                Conv::JwtTime {
                    expired: name == "jwt_expired",
                    leeway,
                },
                Kind::Str,
                Kind::Bool,
            ))
        }
        _ => Err(format!("unknown converter '{name}'")),
    }
}

/// HAProxy's `\1` back-references to the regex crate's `${1}`.
fn haproxy_subst(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(*d);
                    out.push('}');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Applies `f` to the text, keeping a borrow when the input was borrowed.
fn map_str<'a>(
    s: Cow<'a, str>,
    f: impl for<'x> FnOnce(&'x str) -> Option<&'x str>,
) -> Option<Cow<'a, str>> {
    match s {
        Cow::Borrowed(b) => f(b).map(Cow::Borrowed),
        Cow::Owned(o) => f(&o).map(|r| Cow::Owned(r.to_owned())),
    }
}

/// A byte range of the text as a string (lossy when the cut splits a
/// character), keeping a borrow when possible.
fn slice_bytes(s: Cow<'_, str>, start: usize, end: usize) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => String::from_utf8_lossy(&b.as_bytes()[start..end]),
        Cow::Owned(o) => {
            Cow::Owned(String::from_utf8_lossy(&o.as_bytes()[start..end]).into_owned())
        }
    }
}

/// Byte ranges of the fields of `s` (separated by any char of `delims`);
/// with `word`, empty fields are dropped.
fn spans<'s>(s: &'s str, delims: &'s str, word: bool) -> impl Iterator<Item = (usize, usize)> + 's {
    let mut start = 0;
    let mut done = false;
    let mut iter = s.char_indices();
    std::iter::from_fn(move || loop {
        if done {
            return None;
        }
        let span = loop {
            match iter.next() {
                Some((i, c)) if delims.contains(c) => {
                    let span = (start, i);
                    start = i + c.len_utf8();
                    break span;
                }
                Some(_) => continue,
                None => {
                    done = true;
                    break (start, s.len());
                }
            }
        };
        if !word || span.0 < span.1 {
            return Some(span);
        }
    })
}

/// HAProxy's `field` / `word`: fields `idx..idx+count-1` (from the end
/// when `idx` is negative; `count` 0: all the remaining ones).
fn field<'s>(s: &'s str, idx: i64, delims: &str, count: i64, word: bool) -> Option<&'s str> {
    let n = i64::try_from(spans(s, delims, word).count()).ok()?;
    let (first, last) = if idx > 0 {
        if idx > n {
            return None;
        }
        (
            idx,
            if count == 0 {
                n
            } else {
                (idx.saturating_add(count - 1)).min(n)
            },
        )
    } else {
        let k = n + 1 + idx;
        if k < 1 {
            return None;
        }
        (
            if count == 0 {
                1
            } else {
                (k - count + 1).max(1)
            },
            k,
        )
    };
    let first = usize::try_from(first - 1).ok()?;
    let last = usize::try_from(last - 1).ok()?;
    let start = spans(s, delims, word).nth(first)?.0;
    let end = spans(s, delims, word).nth(last)?.1;
    s.get(start..end)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard alphabet; padding optional; `None` when invalid.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; `+` is a space in a query string (after `?`, or
/// everywhere with `form`). `None` on a bad `%` sequence.
fn url_dec(s: Cow<'_, str>, form: bool) -> Option<Cow<'_, str>> {
    let b = s.as_bytes();
    let first_q = b.iter().position(|c| *c == b'?');
    let plus_from = if form {
        0
    } else {
        first_q.map_or(usize::MAX, |q| q + 1)
    };
    let needs = b
        .iter()
        .enumerate()
        .any(|(i, c)| *c == b'%' || (*c == b'+' && i >= plus_from));
    if !needs {
        return Some(s);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex_val(*b.get(i + 1)?)?;
                let lo = hex_val(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if i >= plus_from => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

impl Conv {
    /// Applies the converter; `input` is what table look-ups read.
    pub(crate) fn apply_in<'a>(
        &self,
        s: Sample<'a>,
        input: &super::Input<'_>,
    ) -> Option<Sample<'a>> {
        match self {
            Conv::Table { table, data } => {
                Some(Sample::Int(input.track?.lookup(table, &s, *data)?))
            }
            _ => self.apply(s),
        }
    }

    pub(crate) fn apply<'a>(&self, s: Sample<'a>) -> Option<Sample<'a>> {
        Some(match self {
            // Needs the request's tables: see `apply_in`.
            Conv::Table { .. } => return None,
            Conv::Lower => {
                let t = to_str(s);
                Sample::Str(if t.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(t.to_ascii_lowercase())
                } else {
                    t
                })
            }
            Conv::Upper => {
                let t = to_str(s);
                Sample::Str(if t.bytes().any(|b| b.is_ascii_lowercase()) {
                    Cow::Owned(t.to_ascii_uppercase())
                } else {
                    t
                })
            }
            Conv::Field {
                idx,
                delims,
                count,
                word,
            } => Sample::Str(map_str(to_str(s), |t| {
                field(t, *idx, delims, *count, *word)
            })?),
            Conv::Base64 => Sample::Str(Cow::Owned(base64_encode(to_str(s).as_bytes()))),
            Conv::B64Dec => {
                let bytes = base64_decode(to_str(s).trim())?;
                Sample::Str(Cow::Owned(match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                }))
            }
            Conv::Hex => {
                let t = to_str(s);
                let mut out = String::with_capacity(t.len() * 2);
                for b in t.bytes() {
                    out.push_str(&format!("{b:02X}"));
                }
                Sample::Str(Cow::Owned(out))
            }
            Conv::Length => Sample::Int(i64::try_from(to_str(s).len()).unwrap_or(i64::MAX)),
            Conv::Bytes { off, len } => {
                let t = to_str(s);
                let n = t.len();
                let start = (*off).min(n);
                let end = match len {
                    Some(l) => start.saturating_add(*l).min(n),
                    None => n,
                };
                Sample::Str(slice_bytes(t, start, end))
            }
            Conv::RegSub { re, subst, global } => {
                let t = to_str(s);
                let limit = if *global { 0 } else { 1 };
                Sample::Str(match t {
                    Cow::Borrowed(b) => re.replacen(b, limit, subst.as_str()),
                    Cow::Owned(o) => {
                        Cow::Owned(re.replacen(&o, limit, subst.as_str()).into_owned())
                    }
                })
            }
            Conv::Json => Sample::Str(Cow::Owned(json_escape(&to_str(s)))),
            Conv::UrlDec { form } => Sample::Str(url_dec(to_str(s), *form)?),
            Conv::LTrim(chars) => Sample::Str(map_str(to_str(s), |t| {
                Some(t.trim_start_matches(|c| chars.contains(c)))
            })?),
            Conv::RTrim(chars) => Sample::Str(map_str(to_str(s), |t| {
                Some(t.trim_end_matches(|c| chars.contains(c)))
            })?),
            Conv::Arith(op, v) => {
                let x = to_int(&s)?;
                let v = *v;
                Sample::Int(match op {
                    Op::Add => x.saturating_add(v),
                    Op::Sub => x.saturating_sub(v),
                    Op::Mul => x.saturating_mul(v),
                    Op::Div => {
                        if v == 0 {
                            i64::MAX
                        } else {
                            x.checked_div(v).unwrap_or(i64::MAX)
                        }
                    }
                    Op::Mod => x.checked_rem(v).unwrap_or(0),
                    Op::And => x & v,
                    Op::Or => x | v,
                    Op::Xor => x ^ v,
                })
            }
            Conv::Neg => Sample::Int(to_int(&s)?.saturating_neg()),
            Conv::Cpl => Sample::Int(!to_int(&s)?),
            Conv::Not => Sample::Bool(!to_bool(&s)?),
            Conv::Bool => Sample::Bool(to_bool(&s)?),
            Conv::Odd => Sample::Bool(to_int(&s)? & 1 == 1),
            Conv::Even => Sample::Bool(to_int(&s)? & 1 == 0),
            Conv::IpMask { v4, v6 } => Sample::Ip(match to_ip(&s)? {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4)),
                IpAddr::V6(a) => match v6 {
                    Some(m) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & m)),
                    None => IpAddr::V6(a),
                },
            }),
            Conv::JwtQuery { payload, path, ty } => {
                jwt::query(&as_str(&s), *payload, path.as_ref(), *ty)?
            }
            Conv::JwtVerify(v) => Sample::Int(v.verify(&as_str(&s))),
            Conv::JwtTime { expired, leeway } => {
                Sample::Bool(jwt::time_check_now(&as_str(&s), *expired, *leeway)?)
            }
        })
    }
}
