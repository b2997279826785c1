//! `log-format` strings and HAProxy's `option httplog` line.
//!
//! A log-format string mixes literal text, `%<var>` variables (`%ci`,
//! `%Ta`, `%{+Q}r`, ...) and `%[<sample expression>]`. It is parsed once at
//! load time into nodes; [`LogFormat::render`] writes one line.
//! The same strings are the values of `http-request set-header` and
//! friends (rendered at request time, without a [`HttpLogRecord`]).
//!
//! Behaviour follows HAProxy's `sess_build_logline()`: runs of blanks in
//! the format are *separators* that print one space, and only when the
//! previous node printed something (so `%hr` without captures leaves no
//! double space, and leading blanks vanish); strings that are absent or
//! empty print `-` (`""` with `+Q`); `%r`, `%HU`, ... and the captures
//! are `#XX`-encoded like HAProxy's url / header encode maps.
//!
//! With `option log-json` ([`LogFormat::json`]) the same nodes write one
//! JSON object instead: each variable or `%[...]` is a field named by
//! `%(<name>)` or after the variable (`%ci` is `client_ip`), literal text
//! and separators are dropped. The text path is not touched by it: the
//! mode is checked once per line.
//! See `docs/logging.md`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Uri, Version};

use crate::acl::{Expr, Input, Sample, Stage};
use crate::observe::time::Civil;

/// Everything an `option httplog` / `log-format` line says about one
/// finished (or, with `option logasap`, started) request.
///
/// Times are milliseconds, `-1` when the step never happened (HAProxy's
/// convention).
#[derive(Clone, Debug)]
pub struct HttpLogRecord {
    /// `%ci:%cp`
    pub client: SocketAddr,
    /// `%fi:%fp`: the address the client connected to.
    pub local: SocketAddr,
    /// `%t`: when the client connection was accepted.
    pub accept_date: SystemTime,
    /// `%tr`: when the request started (first byte of its headers).
    pub request_date: SystemTime,
    /// `%ft`
    pub frontend: String,
    /// `%b`: the backend, or the frontend's name when none was chosen (like HAProxy).
    pub backend: String,
    /// `%s`: the server, or `<NOSRV>`.
    pub server: String,
    /// `%Th`: connection handshake time (0 for plain TCP).
    pub th: i64,
    /// `%Ti`: idle time before the request (0 on a fresh connection).
    pub ti: i64,
    /// `%TR` (old `%Tq`): time to receive the request headers.
    pub treq: i64,
    /// `%Tw`: time waiting in the backend queue.
    pub tw: i64,
    /// `%Tc`: time to get a connection (stream) to the server.
    pub tc: i64,
    /// `%Tr`: server response time (request sent -> response headers).
    pub tr: i64,
    /// `%Ta`: total active time of the request (start -> last byte sent,
    /// or -> log emission with logasap).
    pub ta: i64,
    /// `option logasap` line: `%Ta` and `%B` get a `+` prefix.
    pub logasap: bool,
    /// `%ST`
    pub status: u16,
    /// `%B`: bytes sent to the client (response body bytes).
    pub bytes_out: u64,
    /// `%U`: bytes received from the client (request body bytes).
    pub bytes_in: u64,
    /// `%tsc` / `%ts`: termination state, always 4 chars, e.g. `----`, `CD--`, `PR--`.
    pub termination: [u8; 4],
    /// `%ac/%fc/%bc/%sc/%rc`
    pub actconn: u32,
    pub feconn: u32,
    pub beconn: u32,
    pub srvconn: u32,
    pub retries: u32,
    /// `%sq/%bq`
    pub srv_queue: u32,
    pub be_queue: u32,
    /// `%hr`: `capture request header` values in declaration order (`None`: absent).
    pub req_captures: Vec<Option<String>>,
    /// `%hs`: `capture response header` values.
    pub res_captures: Vec<Option<String>>,
    /// `%HM`
    pub method: String,
    /// `%HU`: the request URI as the client sent it (path and query for HTTP/2).
    pub uri: String,
    /// `%HV`: `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'static str,
    /// `%[grpc_status]`: final grpc-status, `None` when not gRPC or unknown.
    pub grpc_status: Option<u32>,
}

/// weir's `option httplog` layout written as a `log-format` string:
/// HAProxy's httplog format followed by the final grpc-status.
/// [`LogFormat::httplog`] renders the same line (its last field is an
/// internal node that does not need the request kept until log time).
pub const HTTPLOG_FORMAT: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r %[grpc_status]";

/// HAProxy's own `option httplog` format (without weir's grpc-status).
const HAPROXY_HTTPLOG: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r";

/// `%{...}` flags of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Opts {
    /// `+Q`: double-quote strings.
    quote: bool,
    /// `+X`: numbers and addresses in hexadecimal.
    hex: bool,
    /// `+E`: backslash-escape `"`, `\` and `]` (RFC 5424 structured data).
    esc: bool,
}

/// The `%<name>` variables (HAProxy configuration manual §8.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    ClientIp,
    ClientPort,
    FrontendIp,
    FrontendPort,
    Frontend,
    FrontendXprt,
    Backend,
    BackendIp,
    BackendPort,
    BeConn,
    BeQueue,
    Server,
    ServerIp,
    ServerPort,
    SrvConn,
    SrvQueue,
    ActConn,
    FeConn,
    Retries,
    ReqCounter,
    LogCounter,
    Date,
    DateGmt,
    DateLocal,
    ReqDate,
    ReqDateGmt,
    ReqDateLocal,
    Timestamp,
    Millis,
    Th,
    Ti,
    TR,
    Tq,
    Tw,
    Tc,
    Tr,
    Ta,
    Td,
    Tt,
    Tu,
    Status,
    BytesOut,
    BytesIn,
    TermState,
    TermStateCk,
    HdrReq,
    HdrReqList,
    HdrRes,
    HdrResList,
    Request,
    Method,
    Uri,
    Path,
    PathOnly,
    Query,
    Version,
    CookieClient,
    CookieServer,
    UniqueId,
    Pid,
    Hostname,
    SslCipher,
    SslVersion,
}

/// Variable names; HAProxy's are case-sensitive (`%B` bytes, `%b` backend).
/// The third column is the variable's field name in a JSON line (HAProxy's
/// own names for the variables, in snake case; the timers keep theirs).
const VARS: &[(&str, Var, &str)] = &[
    ("ci", Var::ClientIp, "client_ip"),
    ("cp", Var::ClientPort, "client_port"),
    ("fi", Var::FrontendIp, "frontend_ip"),
    ("fp", Var::FrontendPort, "frontend_port"),
    ("f", Var::Frontend, "frontend_name"),
    ("ft", Var::FrontendXprt, "frontend_name"),
    ("b", Var::Backend, "backend_name"),
    ("bi", Var::BackendIp, "backend_source_ip"),
    ("bp", Var::BackendPort, "backend_source_port"),
    ("bc", Var::BeConn, "beconn"),
    ("bq", Var::BeQueue, "backend_queue"),
    ("s", Var::Server, "server_name"),
    ("si", Var::ServerIp, "server_ip"),
    ("sp", Var::ServerPort, "server_port"),
    ("sc", Var::SrvConn, "srv_conn"),
    ("sq", Var::SrvQueue, "srv_queue"),
    ("ac", Var::ActConn, "actconn"),
    ("fc", Var::FeConn, "feconn"),
    ("rc", Var::Retries, "retries"),
    ("rt", Var::ReqCounter, "request_counter"),
    ("lc", Var::LogCounter, "log_counter"),
    ("t", Var::Date, "date_time"),
    ("T", Var::DateGmt, "gmt_date_time"),
    ("Tl", Var::DateLocal, "local_date_time"),
    ("tr", Var::ReqDate, "request_date"),
    ("trg", Var::ReqDateGmt, "gmt_request_date"),
    ("trl", Var::ReqDateLocal, "local_request_date"),
    ("Ts", Var::Timestamp, "timestamp"),
    ("ms", Var::Millis, "accept_ms"),
    ("Th", Var::Th, "Th"),
    ("Ti", Var::Ti, "Ti"),
    ("TR", Var::TR, "TR"),
    ("Tq", Var::Tq, "Tq"),
    ("Tw", Var::Tw, "Tw"),
    ("Tc", Var::Tc, "Tc"),
    ("Tr", Var::Tr, "Tr"),
    ("Ta", Var::Ta, "Ta"),
    ("Td", Var::Td, "Td"),
    ("Tt", Var::Tt, "Tt"),
    ("Tu", Var::Tu, "Tu"),
    ("ST", Var::Status, "status_code"),
    ("B", Var::BytesOut, "bytes_read"),
    ("U", Var::BytesIn, "bytes_uploaded"),
    ("ts", Var::TermState, "termination_state"),
    ("tsc", Var::TermStateCk, "termination_state"),
    ("hr", Var::HdrReq, "captured_request_headers"),
    ("hrl", Var::HdrReqList, "captured_request_headers"),
    ("hs", Var::HdrRes, "captured_response_headers"),
    ("hsl", Var::HdrResList, "captured_response_headers"),
    ("r", Var::Request, "http_request"),
    ("HM", Var::Method, "http_method"),
    ("HU", Var::Uri, "http_uri"),
    ("HP", Var::Path, "http_path"),
    ("HPO", Var::PathOnly, "http_path_only"),
    ("HQ", Var::Query, "http_query"),
    ("HV", Var::Version, "http_version"),
    ("CC", Var::CookieClient, "captured_request_cookie"),
    ("CS", Var::CookieServer, "captured_response_cookie"),
    ("ID", Var::UniqueId, "unique_id"),
    ("pid", Var::Pid, "pid"),
    ("H", Var::Hostname, "hostname"),
    ("sslc", Var::SslCipher, "ssl_ciphers"),
    ("sslv", Var::SslVersion, "ssl_version"),
];

/// HAProxy flags weir accepts and ignores (`+M`: mandatory, encodings).
const IGNORED_FLAGS: &[&str] = &["M", "bin", "json", "cbor"];

/// The JSON field name of a node, written out with its quotes and colon
/// (`"client_ip":`) so that a JSON line only copies it.
type Key = Box<str>;

#[derive(Clone, Debug)]
enum Node {
    /// Literal text (never contains blanks).
    Text(String),
    /// A run of blanks: one space, unless the line so far ends with one
    /// (or is empty).
    Sep,
    Var(Var, Opts, Key),
    /// `%[expr]`
    Sample(Box<Expr>, Opts, Key),
    /// weir's final httplog field: the grpc-status, `-` when unknown.
    GrpcStatus(Key),
}

/// A parsed log-format string.
#[derive(Clone, Debug)]
pub struct LogFormat {
    nodes: Vec<Node>,
    /// `option log-json`: [`LogFormat::render`] writes a JSON object.
    json: bool,
}

impl LogFormat {
    /// Parses a `log-format` string (or a header value). `%[...]` expressions
    /// are checked against `stage`.
    pub fn parse(text: &str, stage: Stage) -> Result<LogFormat, String> {
        parse(text, stage).map(|nodes| LogFormat { nodes, json: false })
    }

    /// weir's `option httplog` layout: HAProxy's httplog format followed by
    /// the final grpc-status.
    pub fn httplog() -> LogFormat {
        let mut nodes = parse(HAPROXY_HTTPLOG, Stage::Log).expect("built-in httplog format parses");
        nodes.push(Node::Sep);
        nodes.push(Node::GrpcStatus(json_key("grpc_status")));
        LogFormat { nodes, json: false }
    }

    /// The same layout written as one JSON object per line (`option
    /// log-json`) when `on`, as text otherwise.
    pub fn json(mut self, on: bool) -> LogFormat {
        self.json = on;
        self
    }

    /// Whether [`LogFormat::render`] writes JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Whether rendering needs the request (`%[...]` sample expressions):
    /// when false, no [`Input`] has to be kept until log time.
    pub fn uses_samples(&self) -> bool {
        self.nodes.iter().any(|n| matches!(n, Node::Sample(..)))
    }

    /// Appends one rendered line (or header value) to `out`. Variables come
    /// from `rec` when given, else from `input` where it can answer (`%ci`,
    /// `%HM`, ...), else `-`. `%[...]` reads `input`, `-` when absent.
    pub fn render(&self, rec: Option<&HttpLogRecord>, input: Option<&Input<'_>>, out: &mut String) {
        if self.json {
            return self.render_json(rec, input, out);
        }
        // HAProxy's `last_isspace`, initially set: a separator prints only
        // after a node that printed something.
        let mut last_space = true;
        for node in &self.nodes {
            match node {
                Node::Sep => {
                    if !last_space {
                        out.push(' ');
                        last_space = true;
                    }
                }
                Node::Text(t) => {
                    out.push_str(t);
                    last_space = false;
                }
                Node::Var(v, o, _) => {
                    if render_var(*v, *o, rec, input, out) {
                        last_space = false;
                    }
                }
                Node::Sample(expr, o, _) => {
                    render_sample(input.and_then(|i| expr.eval(i)), *o, out);
                    last_space = false;
                }
                Node::GrpcStatus(_) => {
                    match grpc_status(rec, input) {
                        Some(v) => {
                            let _ = write!(out, "{v}");
                        }
                        None => out.push('-'),
                    }
                    last_space = false;
                }
            }
        }
    }

    /// The JSON form of [`LogFormat::render`]: `{"client_ip":"127.0.0.1",...}`.
    /// Literal text and separators are dropped; a capture variable with no
    /// captures declared leaves no field (as it prints nothing in text);
    /// an `option logasap` line ends with `"logasap":true`.
    fn render_json(
        &self,
        rec: Option<&HttpLogRecord>,
        input: Option<&Input<'_>>,
        out: &mut String,
    ) {
        out.push('{');
        let mut first = true;
        for node in &self.nodes {
            let key = match node {
                Node::Var(v, _, key) => {
                    if no_json_field(*v, rec) {
                        continue;
                    }
                    key
                }
                Node::Sample(_, _, key) | Node::GrpcStatus(key) => key,
                Node::Text(_) | Node::Sep => continue,
            };
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            match node {
                Node::Var(v, _, _) => json_var(*v, rec, input, out),
                Node::Sample(expr, _, _) => json_sample(input.and_then(|i| expr.eval(i)), out),
                Node::GrpcStatus(_) => json_num(out, grpc_status(rec, input).map(i64::from)),
                Node::Text(_) | Node::Sep => {}
            }
        }
        if rec.is_some_and(|r| r.logasap) {
            if !first {
                out.push(',');
            }
            out.push_str("\"logasap\":true");
        }
        out.push('}');
    }
}

/// The final grpc-status: from the record, else from the live response.
fn grpc_status(rec: Option<&HttpLogRecord>, input: Option<&Input<'_>>) -> Option<u32> {
    match rec {
        Some(r) => r.grpc_status,
        None => input.and_then(|i| i.res).and_then(|r| r.grpc_status),
    }
}

// ---------------------------------------------------------------------------
// Parsing

fn parse(text: &str, stage: Stage) -> Result<Vec<Node>, String> {
    let bytes = text.as_bytes();
    let mut nodes = Vec::new();
    // The JSON field of each variable / sample node: (node index, whether
    // `%(name)` gave it, name).
    let mut fields: Vec<(usize, bool, String)> = Vec::new();
    let mut lit = String::new();
    // `%{...}o` sets the default flags of the variables that follow.
    let mut defaults = Opts::default();
    let mut i = 0;
    fn flush(lit: &mut String, nodes: &mut Vec<Node>) {
        if !lit.is_empty() {
            nodes.push(Node::Text(std::mem::take(lit)));
        }
    }
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            flush(&mut lit, &mut nodes);
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            nodes.push(Node::Sep);
            continue;
        }
        if c != b'%' {
            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
            lit.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let pct = i;
        i += 1;
        let Some(&next) = bytes.get(i) else {
            return Err(format!(
                "truncated log-format '{text}': '%' at the end (write '%%' for a literal '%')"
            ));
        };
        if next == b'%' {
            lit.push('%');
            i += 1;
            continue;
        }
        let mut opts = defaults;
        let mut had_flags = false;
        // `%(<name>)`: the field's name in a JSON line; before or after
        // the flags.
        let mut name: Option<&str> = None;
        loop {
            match bytes.get(i) {
                Some(b'{') if !had_flags => {
                    let Some(close) = text[i..].find('}') else {
                        return Err(format!("unterminated '%{{' in log-format '{text}'"));
                    };
                    apply_flags(&text[i + 1..i + close], &mut opts, text)?;
                    had_flags = true;
                    i += close + 1;
                }
                Some(b'(') if name.is_none() => {
                    let n = field_name(&text[i + 1..], text)?;
                    name = Some(n);
                    i += n.len() + 2;
                }
                _ => break,
            }
        }
        match bytes.get(i) {
            Some(b'[') => {
                let start = i + 1;
                let Some(len) = expr_len(&text[start..]) else {
                    return Err(format!(
                        "unterminated '%[' (missing ']') in log-format '{text}'"
                    ));
                };
                let inner = &text[start..start + len];
                if inner.trim().is_empty() {
                    return Err(format!(
                        "empty sample expression '%[]' in log-format '{text}'"
                    ));
                }
                let expr = Expr::parse(inner.trim(), stage)
                    .map_err(|e| format!("in '%[{inner}]' of log-format '{text}': {e}"))?;
                flush(&mut lit, &mut nodes);
                let field = match name {
                    Some(n) => (nodes.len(), true, n.to_string()),
                    None => (nodes.len(), false, sample_name(inner).to_string()),
                };
                fields.push(field);
                nodes.push(Node::Sample(Box::new(expr), opts, Key::default()));
                i = start + len + 1;
            }
            Some(b) if b.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                let var_name = &text[start..i];
                if var_name == "o" {
                    if name.is_some() {
                        return Err(format!(
                            "'{}': '%o' sets default flags and takes no field name, in log-format '{text}'",
                            &text[pct..i]
                        ));
                    }
                    // HAProxy's "global option" pseudo-variable.
                    defaults = opts;
                    continue;
                }
                let Some(&(_, var, json_name)) = VARS.iter().find(|(n, ..)| *n == var_name) else {
                    return Err(format!(
                        "unknown variable '%{var_name}' in log-format '{text}'"
                    ));
                };
                if var == Var::Hostname {
                    let _ = hostname(); // look it up now, not on the request path
                }
                flush(&mut lit, &mut nodes);
                fields.push(match name {
                    Some(n) => (nodes.len(), true, n.to_string()),
                    None => (nodes.len(), false, json_name.to_string()),
                });
                nodes.push(Node::Var(var, opts, Key::default()));
            }
            other => {
                let what = match other {
                    None => "the end".to_string(),
                    Some(_) => format!("'{}'", text[i..].chars().next().unwrap_or('?')),
                };
                return Err(if had_flags || name.is_some() {
                    format!(
                        "{} '{}' must be followed by a variable name or '[' in log-format '{text}', found {what}",
                        if name.is_some() { "field name" } else { "flags" },
                        &text[pct..i]
                    )
                } else {
                    format!(
                        "unexpected {what} after '%' at position {pct} in log-format '{text}' (write '%%' for a literal '%')"
                    )
                });
            }
        }
    }
    flush(&mut lit, &mut nodes);
    name_fields(&mut nodes, fields, text)?;
    Ok(nodes)
}

/// The name in `%(<name>)`; `s` is what follows the `(`.
fn field_name<'t>(s: &'t str, text: &str) -> Result<&'t str, String> {
    let Some(close) = s.find(')') else {
        return Err(format!(
            "unterminated '%(' (missing ')' after the field name) in log-format '{text}'"
        ));
    };
    let name = &s[..close];
    if name.is_empty() {
        return Err(format!("empty field name '%()' in log-format '{text}'"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "invalid character '{c}' in field name '%({name})' of log-format '{text}' (only letters, digits, '_', '-' and '.' are allowed)"
        ));
    }
    Ok(name)
}

/// The default JSON name of `%[<expr>]`: its fetch's name
/// (`%[req.hdr(x-id),lower]` is `req.hdr`).
fn sample_name(expr: &str) -> &str {
    let e = expr.trim();
    let end = e
        .find(|c: char| c == '(' || c == ',' || c.is_whitespace())
        .unwrap_or(e.len());
    &e[..end]
}

/// Gives every field node its JSON key. Names given with `%(<name>)` must
/// be unique; a default name already taken gets `_2`, `_3`, ... so that a
/// line never repeats a key (`%f %ft` is `frontend_name`, `frontend_name_2`).
fn name_fields(
    nodes: &mut [Node],
    fields: Vec<(usize, bool, String)>,
    text: &str,
) -> Result<(), String> {
    let mut taken: HashSet<String> = HashSet::new();
    for (_, _, name) in fields.iter().filter(|f| f.1) {
        if !taken.insert(name.clone()) {
            return Err(format!(
                "duplicate field name '%({name})' in log-format '{text}'"
            ));
        }
    }
    // Next suffix to try for each default name. `taken` only grows, so the
    // first free `<name>_<n>` never moves back: starting where the last one
    // was found keeps this linear in the number of fields (starting from 2
    // each time was quadratic: 4,000 `%ci` took seconds to load).
    let mut next: HashMap<String, usize> = HashMap::new();
    for (at, explicit, name) in fields {
        let name = if explicit || taken.insert(name.clone()) {
            name
        } else {
            let n = next.entry(name.clone()).or_insert(2);
            loop {
                let unique = format!("{name}_{n}");
                *n += 1;
                if taken.insert(unique.clone()) {
                    break unique;
                }
            }
        };
        if let Some(Node::Var(_, _, key) | Node::Sample(_, _, key)) = nodes.get_mut(at) {
            *key = json_key(&name);
        }
    }
    Ok(())
}

/// `"<name>":`
fn json_key(name: &str) -> Key {
    let mut k = String::with_capacity(name.len() + 3);
    json_str(&mut k, name);
    k.push(':');
    k.into_boxed_str()
}

/// `+Q,-X,...`: HAProxy's `%{...}` flags.
fn apply_flags(flags: &str, opts: &mut Opts, text: &str) -> Result<(), String> {
    for flag in flags.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (on, name) = match flag.as_bytes()[0] {
            b'+' => (true, &flag[1..]),
            b'-' => (false, &flag[1..]),
            _ => {
                return Err(format!(
                    "invalid flag '{flag}' in log-format '{text}' (expected +<flag> or -<flag>)"
                ))
            }
        };
        match name {
            "Q" => opts.quote = on,
            "X" => opts.hex = on,
            "E" => opts.esc = on,
            n if IGNORED_FLAGS.contains(&n) => {}
            _ => return Err(format!("unknown flag '{flag}' in log-format '{text}'")),
        }
    }
    Ok(())
}

/// Length of the expression in `s` (what follows `%[`) up to its closing
/// `]`, skipping brackets inside converter arguments, quotes and
/// backslash escapes. `None` when unterminated.
fn expr_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut parens, mut brackets) = (0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match (quote, c) {
            (_, b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'(') => parens += 1,
            (None, b')') => parens = parens.saturating_sub(1),
            (None, b'[') => brackets += 1,
            (None, b']') if parens == 0 && brackets == 0 => return Some(i),
            (None, b']') => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------
// Rendering

/// The request line's parts, from the record or the live request.
struct ReqLine<'x> {
    method: &'x str,
    uri: &'x str,
    version: &'x str,
}

fn req_line<'x>(
    rec: Option<&'x HttpLogRecord>,
    input: Option<&'x Input<'_>>,
) -> Option<ReqLine<'x>> {
    if let Some(r) = rec {
        return Some(ReqLine {
            method: &r.method,
            uri: &r.uri,
            version: r.version,
        });
    }
    input.map(|i| ReqLine {
        method: method_str(i.method),
        uri: uri_str(i.uri),
        version: version_str(i.version),
    })
}

fn method_str(m: &Method) -> &str {
    m.as_str()
}

/// The request target: path and query (origin form), or the authority
/// (`CONNECT`).
fn uri_str(u: &Uri) -> &str {
    match u.path_and_query() {
        Some(pq) => pq.as_str(),
        None => u.authority().map(|a| a.as_str()).unwrap_or("/"),
    }
}

/// `HTTP/1.1`, `HTTP/2.0`, like HAProxy writes them.
fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `%HP`: the URI without its query string.
fn uri_path(uri: &str) -> &str {
    uri.split_once('?').map_or(uri, |(p, _)| p)
}

/// `%HPO`: the path only: no scheme, authority nor query.
fn uri_path_only(uri: &str) -> &str {
    let p = uri_path(uri);
    if p.starts_with('/') || p == "*" {
        return p;
    }
    match p.find("://") {
        Some(at) => {
            let rest = &p[at + 3..];
            rest.find('/').map_or("", |s| &rest[s..])
        }
        None => p,
    }
}

/// `%HQ`: `?query`, empty when there is none.
fn uri_query(uri: &str) -> &str {
    uri.find('?').map_or("", |q| &uri[q..])
}

fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_default()
    })
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `22/Nov/2026:05:01:02.123` (`ms`) or `22/Nov/2026:05:01:02 +0000`.
/// weir logs in UTC, so the "local" forms are the GMT ones.
fn date(out: &mut String, t: SystemTime, ms: bool) {
    let c = Civil::from_system(t);
    let _ = write!(
        out,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02}",
        c.day,
        MONTHS[(c.month.clamp(1, 12) - 1) as usize],
        c.year,
        c.hour,
        c.min,
        c.sec
    );
    if ms {
        let _ = write!(out, ".{:03}", c.micros / 1000);
    } else {
        out.push_str(" +0000");
    }
}

fn quote_if(out: &mut String, o: Opts) {
    if o.quote {
        out.push('"');
    }
}

/// HAProxy's `lf_text_len`: a string, quoted with `+Q`, escaped with `+E`;
/// absent or empty: `-` (`""` with `+Q`).
fn text(out: &mut String, s: Option<&str>, o: Opts) {
    quote_if(out, o);
    match s {
        Some(s) if !s.is_empty() => {
            if o.esc {
                for ch in s.chars() {
                    if matches!(ch, '"' | '\\' | ']') {
                        out.push('\\');
                    }
                    out.push(ch);
                }
            } else {
                out.push_str(s);
            }
        }
        _ if o.quote => {}
        _ => out.push('-'),
    }
    quote_if(out, o);
}

/// HAProxy's `lf_encode_string` with the url (`"`, `#`) or header
/// (`"`, `#`, `{`, `|`, `}`) map: those bytes and non-printable ones
/// (< 32, >= 127) become `#XX`. No quotes, nothing for an empty string.
fn encoded(out: &mut String, s: &str, hdr_map: bool, o: Opts) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    let needs = |c: u8| {
        !(32..127).contains(&c)
            || c == b'"'
            || c == b'#'
            || (hdr_map && matches!(c, b'{' | b'|' | b'}'))
    };
    if !bytes
        .iter()
        .any(|&c| needs(c) || (o.esc && matches!(c, b'\\' | b']')))
    {
        out.push_str(s);
        return;
    }
    for &c in bytes {
        if needs(c) {
            out.push('#');
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
        } else {
            if o.esc && matches!(c, b'\\' | b']') {
                out.push('\\');
            }
            out.push(c as char);
        }
    }
}

/// A URL-encoded request-line part, quoted with `+Q`.
fn url_part(out: &mut String, s: Option<&str>, o: Opts) {
    match s {
        Some(s) => {
            quote_if(out, o);
            encoded(out, s, false, o);
            quote_if(out, o);
        }
        None => text(out, None, o),
    }
}

fn int(out: &mut String, v: i64, o: Opts) {
    let _ = if o.hex && v >= 0 {
        write!(out, "{v:X}")
    } else {
        write!(out, "{v}")
    };
}

fn uint(out: &mut String, v: u64, o: Opts) {
    let _ = if o.hex {
        write!(out, "{v:X}")
    } else {
        write!(out, "{v}")
    };
}

/// A number with HAProxy's `%04X` form under `+X` (ports, `%Ts`, `%pid`).
fn uint_x4(out: &mut String, v: u64, o: Opts) {
    let _ = if o.hex {
        write!(out, "{v:04X}")
    } else {
        write!(out, "{v}")
    };
}

fn ip(out: &mut String, addr: Option<IpAddr>, o: Opts) {
    let Some(addr) = addr else {
        return text(out, None, o);
    };
    let addr = unmap(addr);
    if o.hex {
        match addr {
            IpAddr::V4(v4) => v4.octets().iter().for_each(|b| {
                let _ = write!(out, "{b:02X}");
            }),
            IpAddr::V6(v6) => v6.octets().iter().for_each(|b| {
                let _ = write!(out, "{b:02X}");
            }),
        }
        return;
    }
    quote_if(out, o);
    let _ = write!(out, "{addr}");
    quote_if(out, o);
}

fn port(out: &mut String, port: Option<u16>, o: Opts) {
    match port {
        Some(p) => uint_x4(out, p as u64, o),
        None => out.push('-'),
    }
}

/// Sums timers, `-1` when any of them is (the step never happened).
fn sum(parts: &[i64]) -> i64 {
    if parts.iter().any(|&t| t < 0) {
        -1
    } else {
        parts.iter().sum()
    }
}

/// `%hr` / `%hs` (`{a|b}`) or `%hrl` / `%hsl` (`a b`).
fn captures(out: &mut String, caps: &[Option<String>], list: bool, o: Opts) {
    if list {
        for (n, c) in caps.iter().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            quote_if(out, o);
            match c {
                Some(v) => encoded(out, v, true, o),
                None if o.quote => {}
                None => out.push('-'),
            }
            quote_if(out, o);
        }
        return;
    }
    quote_if(out, o);
    out.push('{');
    for (n, c) in caps.iter().enumerate() {
        if n > 0 {
            out.push('|');
        }
        if let Some(v) = c {
            encoded(out, v, true, o);
        }
    }
    out.push('}');
    quote_if(out, o);
}

fn term(out: &mut String, t: &[u8]) {
    for &c in t {
        out.push(if c.is_ascii_graphic() { c as char } else { '?' });
    }
}

fn render_sample(s: Option<Sample<'_>>, o: Opts, out: &mut String) {
    match s {
        None => text(out, None, o),
        Some(Sample::Str(s)) => text(out, Some(&s), o),
        Some(Sample::Int(v)) => {
            quote_if(out, o);
            int(out, v, o);
            quote_if(out, o);
        }
        Some(Sample::Bool(b)) => {
            quote_if(out, o);
            out.push(if b { '1' } else { '0' });
            quote_if(out, o);
        }
        Some(Sample::Ip(a)) => {
            quote_if(out, o);
            let _ = write!(out, "{a}");
            quote_if(out, o);
        }
    }
}

/// Writes one variable; false when it printed nothing at all (captures
/// when none are declared), so that the next separator is skipped.
fn render_var(
    v: Var,
    o: Opts,
    rec: Option<&HttpLogRecord>,
    input: Option<&Input<'_>>,
    out: &mut String,
) -> bool {
    // A numeric field of the record, `-` without one.
    macro_rules! num {
        ($f:expr) => {
            match rec {
                Some(r) => {
                    let f: fn(&HttpLogRecord) -> i64 = $f;
                    int(out, f(r), o)
                }
                None => out.push('-'),
            }
        };
    }
    // Same, `+` prefixed in an `option logasap` line.
    macro_rules! asap {
        ($f:expr) => {
            match rec {
                Some(r) => {
                    if r.logasap {
                        out.push('+');
                    }
                    let f: fn(&HttpLogRecord) -> i64 = $f;
                    int(out, f(r), o)
                }
                None => out.push('-'),
            }
        };
    }
    let client = rec.map(|r| r.client).or(input.map(|i| i.src));
    let local = rec.map(|r| r.local).or(input.map(|i| i.dst));
    match v {
        Var::ClientIp => ip(out, client.map(|a| a.ip()), o),
        Var::ClientPort => port(out, client.map(|a| a.port()), o),
        Var::FrontendIp => ip(out, local.map(|a| a.ip()), o),
        Var::FrontendPort => port(out, local.map(|a| a.port()), o),
        Var::Frontend | Var::FrontendXprt => text(
            out,
            rec.map(|r| r.frontend.as_str())
                .or(input.map(|i| i.frontend)),
            o,
        ),
        Var::Backend => text(
            out,
            rec.map(|r| r.backend.as_str())
                .or(input.map(|i| i.backend.unwrap_or(i.frontend))),
            o,
        ),
        Var::Server => text(out, rec.map(|r| r.server.as_str()), o),
        Var::BackendIp | Var::ServerIp => text(out, None, o),
        Var::BackendPort | Var::ServerPort | Var::ReqCounter | Var::LogCounter => out.push('-'),
        Var::BeConn => num!(|r| r.beconn as i64),
        Var::BeQueue => num!(|r| r.be_queue as i64),
        Var::SrvConn => num!(|r| r.srvconn as i64),
        Var::SrvQueue => num!(|r| r.srv_queue as i64),
        Var::ActConn => num!(|r| r.actconn as i64),
        Var::FeConn => num!(|r| r.feconn as i64),
        Var::Retries => num!(|r| r.retries as i64),
        Var::Date | Var::DateGmt | Var::DateLocal => match rec {
            Some(r) => date(out, r.accept_date, v == Var::Date),
            None => out.push('-'),
        },
        Var::ReqDate | Var::ReqDateGmt | Var::ReqDateLocal => match rec {
            Some(r) => date(out, r.request_date, v == Var::ReqDate),
            None => out.push('-'),
        },
        Var::Timestamp => match rec {
            Some(r) => {
                let secs = r
                    .accept_date
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                uint_x4(out, secs, o)
            }
            None => out.push('-'),
        },
        Var::Millis => match rec {
            Some(r) => {
                let ms = r
                    .accept_date
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_millis();
                let _ = if o.hex {
                    write!(out, "{ms:02X}")
                } else {
                    write!(out, "{ms:03}")
                };
            }
            None => out.push('-'),
        },
        Var::Th => num!(|r| r.th),
        Var::Ti => num!(|r| r.ti),
        Var::TR => num!(|r| r.treq),
        Var::Tq => num!(|r| sum(&[r.th.max(0), r.ti.max(0), r.treq])),
        Var::Tw => num!(|r| r.tw),
        Var::Tc => num!(|r| r.tc),
        Var::Tr => num!(|r| r.tr),
        Var::Td => num!(|r| {
            let before = sum(&[r.treq, r.tw, r.tc, r.tr]);
            if before < 0 || r.ta < 0 {
                -1
            } else {
                r.ta - before
            }
        }),
        Var::Ta => asap!(|r| r.ta),
        Var::Tt => asap!(|r| sum(&[r.th.max(0), r.ti.max(0), r.ta])),
        Var::Tu => asap!(|r| sum(&[r.th.max(0), r.ta])),
        Var::Status => {
            let status = match rec {
                Some(r) => Some(r.status),
                None => input.and_then(|i| i.res).map(|r| r.status),
            };
            match status {
                // No response at all: HAProxy's -1.
                Some(0) => out.push_str("-1"),
                Some(s) => int(out, s as i64, o),
                None => out.push('-'),
            }
        }
        Var::BytesOut => match rec {
            Some(r) => {
                if r.logasap {
                    out.push('+');
                }
                uint(out, r.bytes_out, o)
            }
            None => out.push('-'),
        },
        Var::BytesIn => match rec {
            Some(r) => uint(out, r.bytes_in, o),
            None => out.push('-'),
        },
        Var::TermState | Var::TermStateCk => match rec {
            Some(r) => term(
                out,
                &r.termination[..if v == Var::TermState { 2 } else { 4 }],
            ),
            None => out.push('-'),
        },
        Var::HdrReq | Var::HdrReqList | Var::HdrRes | Var::HdrResList => {
            let Some(r) = rec else { return false };
            let caps = match v {
                Var::HdrReq | Var::HdrReqList => &r.req_captures,
                _ => &r.res_captures,
            };
            if caps.is_empty() {
                return false;
            }
            captures(out, caps, matches!(v, Var::HdrReqList | Var::HdrResList), o);
        }
        Var::Request => match req_line(rec, input) {
            Some(l) => {
                quote_if(out, o);
                encoded(out, l.method, false, o);
                out.push(' ');
                encoded(out, l.uri, false, o);
                out.push(' ');
                encoded(out, l.version, false, o);
                quote_if(out, o);
            }
            None => text(out, None, o),
        },
        Var::Method => url_part(out, req_line(rec, input).map(|l| l.method), o),
        Var::Uri => url_part(out, req_line(rec, input).map(|l| l.uri), o),
        Var::Path => url_part(out, req_line(rec, input).map(|l| uri_path(l.uri)), o),
        Var::PathOnly => url_part(out, req_line(rec, input).map(|l| uri_path_only(l.uri)), o),
        Var::Query => url_part(out, req_line(rec, input).map(|l| uri_query(l.uri)), o),
        Var::Version => url_part(out, req_line(rec, input).map(|l| l.version), o),
        Var::CookieClient | Var::CookieServer | Var::UniqueId | Var::SslCipher => {
            text(out, None, o)
        }
        Var::SslVersion => text(out, input.and_then(|i| i.tls).and_then(|t| t.version), o),
        Var::Pid => uint_x4(out, std::process::id() as u64, o),
        Var::Hostname => text(out, Some(hostname()), o),
    }
    true
}

// ---------------------------------------------------------------------------
// JSON lines (`option log-json`)

/// Writes `s` as a JSON string: quotes, backslashes and control characters
/// escaped (`\n`, `\t`, ... or `\u00XX`). Strings are UTF-8 already: header
/// values and captures were read lossily (U+FFFD for invalid bytes).
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut from = 0;
    for (at, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        // Only ASCII bytes are escaped: `at` is a char boundary.
        out.push_str(&s[from..at]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        from = at + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

/// A JSON string, `null` when absent.
fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// A JSON number, `null` when absent.
fn json_num(out: &mut String, v: Option<i64>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

fn json_ip(out: &mut String, addr: Option<IpAddr>) {
    match addr {
        Some(a) => {
            let _ = write!(out, "\"{}\"", unmap(a));
        }
        None => out.push_str("null"),
    }
}

fn json_date(out: &mut String, t: Option<SystemTime>, ms: bool) {
    match t {
        Some(t) => {
            out.push('"');
            date(out, t, ms);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

/// `%hr`, `%hs`, ... leave no field when no captures of their kind are
/// declared (or without a record), as they print nothing in text.
fn no_json_field(v: Var, rec: Option<&HttpLogRecord>) -> bool {
    match v {
        Var::HdrReq | Var::HdrReqList => rec.is_none_or(|r| r.req_captures.is_empty()),
        Var::HdrRes | Var::HdrResList => rec.is_none_or(|r| r.res_captures.is_empty()),
        _ => false,
    }
}

fn json_sample(s: Option<Sample<'_>>, out: &mut String) {
    match s {
        None => out.push_str("null"),
        Some(Sample::Str(s)) => json_str(out, &s),
        Some(Sample::Int(v)) => json_num(out, Some(v)),
        Some(Sample::Bool(b)) => out.push_str(if b { "true" } else { "false" }),
        Some(Sample::Ip(a)) => json_ip(out, Some(a)),
    }
}

/// The numbers of the record, as in the text line but without the
/// logasap `+` (the line says `"logasap":true` instead).
fn rec_num(v: Var, r: &HttpLogRecord) -> Option<i64> {
    Some(match v {
        Var::BeConn => r.beconn.into(),
        Var::BeQueue => r.be_queue.into(),
        Var::SrvConn => r.srvconn.into(),
        Var::SrvQueue => r.srv_queue.into(),
        Var::ActConn => r.actconn.into(),
        Var::FeConn => r.feconn.into(),
        Var::Retries => r.retries.into(),
        Var::Th => r.th,
        Var::Ti => r.ti,
        Var::TR => r.treq,
        Var::Tq => sum(&[r.th.max(0), r.ti.max(0), r.treq]),
        Var::Tw => r.tw,
        Var::Tc => r.tc,
        Var::Tr => r.tr,
        Var::Td => {
            let before = sum(&[r.treq, r.tw, r.tc, r.tr]);
            if before < 0 || r.ta < 0 {
                -1
            } else {
                r.ta - before
            }
        }
        Var::Ta => r.ta,
        Var::Tt => sum(&[r.th.max(0), r.ti.max(0), r.ta]),
        Var::Tu => sum(&[r.th.max(0), r.ta]),
        Var::BytesOut => i64::try_from(r.bytes_out).unwrap_or(i64::MAX),
        Var::BytesIn => i64::try_from(r.bytes_in).unwrap_or(i64::MAX),
        Var::Timestamp => {
            let secs = r
                .accept_date
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            i64::try_from(secs).unwrap_or(i64::MAX)
        }
        Var::Millis => r
            .accept_date
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_millis()
            .into(),
        _ => return None,
    })
}

/// The value of one variable in a JSON line: numbers are numbers, strings
/// are strings (not `#XX`-encoded, not quoted by `+Q`: flags do not apply),
/// what the text line prints as `-` is `null`.
fn json_var(v: Var, rec: Option<&HttpLogRecord>, input: Option<&Input<'_>>, out: &mut String) {
    let client = rec.map(|r| r.client).or(input.map(|i| i.src));
    let local = rec.map(|r| r.local).or(input.map(|i| i.dst));
    match v {
        Var::ClientIp => json_ip(out, client.map(|a| a.ip())),
        Var::ClientPort => json_num(out, client.map(|a| a.port().into())),
        Var::FrontendIp => json_ip(out, local.map(|a| a.ip())),
        Var::FrontendPort => json_num(out, local.map(|a| a.port().into())),
        Var::Frontend | Var::FrontendXprt => json_opt_str(
            out,
            rec.map(|r| r.frontend.as_str())
                .or(input.map(|i| i.frontend)),
        ),
        Var::Backend => json_opt_str(
            out,
            rec.map(|r| r.backend.as_str())
                .or(input.map(|i| i.backend.unwrap_or(i.frontend))),
        ),
        Var::Server => json_opt_str(out, rec.map(|r| r.server.as_str())),
        Var::BackendIp
        | Var::ServerIp
        | Var::BackendPort
        | Var::ServerPort
        | Var::ReqCounter
        | Var::LogCounter
        | Var::CookieClient
        | Var::CookieServer
        | Var::UniqueId
        | Var::SslCipher => out.push_str("null"),
        Var::Date | Var::DateGmt | Var::DateLocal => {
            json_date(out, rec.map(|r| r.accept_date), v == Var::Date)
        }
        Var::ReqDate | Var::ReqDateGmt | Var::ReqDateLocal => {
            json_date(out, rec.map(|r| r.request_date), v == Var::ReqDate)
        }
        Var::Status => {
            let status = match rec {
                Some(r) => Some(r.status),
                None => input.and_then(|i| i.res).map(|r| r.status),
            };
            // No response at all: HAProxy's -1.
            json_num(out, status.map(|s| if s == 0 { -1 } else { s.into() }))
        }
        Var::TermState | Var::TermStateCk => match rec {
            Some(r) => {
                let mut t = String::with_capacity(4);
                term(
                    &mut t,
                    &r.termination[..if v == Var::TermState { 2 } else { 4 }],
                );
                json_str(out, &t)
            }
            None => out.push_str("null"),
        },
        Var::HdrReq | Var::HdrReqList | Var::HdrRes | Var::HdrResList => {
            let caps = match (rec, v) {
                (Some(r), Var::HdrReq | Var::HdrReqList) => &r.req_captures[..],
                (Some(r), _) => &r.res_captures[..],
                (None, _) => &[],
            };
            out.push('[');
            for (n, c) in caps.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                json_opt_str(out, c.as_deref());
            }
            out.push(']');
        }
        Var::Request => match req_line(rec, input) {
            Some(l) => {
                let mut r =
                    String::with_capacity(l.method.len() + l.uri.len() + l.version.len() + 2);
                r.push_str(l.method);
                r.push(' ');
                r.push_str(l.uri);
                r.push(' ');
                r.push_str(l.version);
                json_str(out, &r)
            }
            None => out.push_str("null"),
        },
        Var::Method => json_opt_str(out, req_line(rec, input).map(|l| l.method)),
        Var::Uri => json_opt_str(out, req_line(rec, input).map(|l| l.uri)),
        Var::Path => json_opt_str(out, req_line(rec, input).map(|l| uri_path(l.uri))),
        Var::PathOnly => json_opt_str(out, req_line(rec, input).map(|l| uri_path_only(l.uri))),
        Var::Query => json_opt_str(out, req_line(rec, input).map(|l| uri_query(l.uri))),
        Var::Version => json_opt_str(out, req_line(rec, input).map(|l| l.version)),
        Var::SslVersion => json_opt_str(out, input.and_then(|i| i.tls).and_then(|t| t.version)),
        Var::Pid => json_num(out, Some(std::process::id().into())),
        Var::Hostname => json_opt_str(out, Some(hostname()).filter(|h| !h.is_empty())),
        Var::BeConn
        | Var::BeQueue
        | Var::SrvConn
        | Var::SrvQueue
        | Var::ActConn
        | Var::FeConn
        | Var::Retries
        | Var::Timestamp
        | Var::Millis
        | Var::Th
        | Var::Ti
        | Var::TR
        | Var::Tq
        | Var::Tw
        | Var::Tc
        | Var::Tr
        | Var::Ta
        | Var::Td
        | Var::Tt
        | Var::Tu
        | Var::BytesOut
        | Var::BytesIn => json_num(out, rec.and_then(|r| rec_num(v, r))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::ResInput;
    use std::time::Duration;

    /// 22/Nov/2026:10:00:00.100 UTC
    const ACCEPT_MS: u64 = 1_795_341_600_100;

    fn rec() -> HttpLogRecord {
        HttpLogRecord {
            client: "127.0.0.1:40222".parse().unwrap(),
            local: "10.0.0.1:8443".parse().unwrap(),
            accept_date: UNIX_EPOCH + Duration::from_millis(ACCEPT_MS),
            request_date: UNIX_EPOCH + Duration::from_millis(ACCEPT_MS + 23),
            frontend: "fe_proxy".into(),
            backend: "be_servers".into(),
            server: "s1".into(),
            th: 0,
            ti: 0,
            treq: 0,
            tw: 0,
            tc: 1,
            tr: 2,
            ta: 3,
            logasap: false,
            status: 200,
            bytes_out: 145,
            bytes_in: 20,
            termination: *b"----",
            actconn: 1,
            feconn: 1,
            beconn: 0,
            srvconn: 0,
            retries: 0,
            srv_queue: 0,
            be_queue: 0,
            req_captures: vec![Some("abc123".into())],
            res_captures: vec![],
            method: "POST".into(),
            uri: "/CodenameCreator/GetCodename".into(),
            version: "HTTP/2.0",
            grpc_status: Some(0),
        }
    }

    fn render(f: &LogFormat, r: &HttpLogRecord) -> String {
        let mut s = String::new();
        f.render(Some(r), None, &mut s);
        s
    }

    fn fmt(text: &str, r: &HttpLogRecord) -> String {
        render(&LogFormat::parse(text, Stage::Log).unwrap(), r)
    }

    /// Owns what an [`Input`] borrows.
    struct Req {
        parts: http::request::Parts,
        tls: crate::acl::TlsInfo,
        res_headers: http::HeaderMap,
    }

    fn req() -> Req {
        let (parts, ()) = http::Request::builder()
            .method("GET")
            .uri("https://example.com/a/b?x=1")
            .version(Version::HTTP_2)
            .header("x-id", "ABC")
            .body(())
            .unwrap()
            .into_parts();
        let tls = crate::acl::TlsInfo {
            sni: None,
            alpn: None,
            version: Some("TLSv1.3"),
            ..Default::default()
        };
        Req {
            parts,
            tls,
            res_headers: http::HeaderMap::new(),
        }
    }

    fn input(r: &Req) -> Input<'_> {
        Input {
            method: &r.parts.method,
            uri: &r.parts.uri,
            version: r.parts.version,
            headers: &r.parts.headers,
            src: "[::ffff:192.0.2.7]:5000".parse().unwrap(),
            dst: "10.0.0.1:443".parse().unwrap(),
            frontend: "fe",
            backend: None,
            tls: Some(&r.tls),
            res: None,
            track: None,
        }
    }

    #[test]
    fn httplog_default_line() {
        assert_eq!(
            render(&LogFormat::httplog(), &rec()),
            "127.0.0.1:40222 [22/Nov/2026:10:00:00.123] fe_proxy be_servers/s1 0/0/1/2/3 200 145 - - ---- 1/1/0/0/0 0/0 {abc123} \"POST /CodenameCreator/GetCodename HTTP/2.0\" 0"
        );
        assert!(!LogFormat::httplog().uses_samples());
    }

    #[test]
    fn httplog_without_captures_has_single_spaces() {
        let mut r = rec();
        r.req_captures.clear();
        r.grpc_status = None;
        assert_eq!(
            render(&LogFormat::httplog(), &r),
            "127.0.0.1:40222 [22/Nov/2026:10:00:00.123] fe_proxy be_servers/s1 0/0/1/2/3 200 145 - - ---- 1/1/0/0/0 0/0 \"POST /CodenameCreator/GetCodename HTTP/2.0\" -"
        );
    }

    #[test]
    fn httplog_absent_captures() {
        let mut r = rec();
        r.req_captures = vec![Some("a".into()), None];
        r.res_captures = vec![None, Some("x".into())];
        let line = render(&LogFormat::httplog(), &r);
        assert!(
            line.ends_with(" 0/0 {a|} {|x} \"POST /CodenameCreator/GetCodename HTTP/2.0\" 0"),
            "{line}"
        );
    }

    #[test]
    fn logasap_marks() {
        let mut r = rec();
        r.logasap = true;
        r.bytes_out = 0;
        r.grpc_status = None;
        r.uri = "/x".into();
        r.req_captures.clear();
        assert_eq!(
            render(&LogFormat::httplog(), &r),
            "127.0.0.1:40222 [22/Nov/2026:10:00:00.123] fe_proxy be_servers/s1 0/0/1/2/+3 200 +0 - - ---- 1/1/0/0/0 0/0 \"POST /x HTTP/2.0\" -"
        );
        assert_eq!(fmt("%Ta %Tt %Tu %B %U %Tr", &r), "+3 +3 +3 +0 20 2");
    }

    #[test]
    fn unset_timers_print_minus_one() {
        let mut r = rec();
        r.tw = -1;
        r.tc = -1;
        r.tr = -1;
        r.status = 0;
        assert_eq!(fmt("%TR/%Tw/%Tc/%Tr/%Ta %Td %ST", &r), "0/-1/-1/-1/3 -1 -1");
        r.treq = -1;
        r.ta = -1;
        assert_eq!(fmt("%Tq %Tt %Tu", &r), "-1 -1 -1");
    }

    #[test]
    fn termination_state() {
        let mut r = rec();
        r.termination = *b"CD--";
        assert_eq!(fmt("%ts %tsc", &r), "CD CD--");
    }

    #[test]
    fn literals_percent_and_request() {
        let r = rec();
        assert_eq!(
            fmt("req=%r q=%{+Q}r 100%% x%%y", &r),
            "req=POST /CodenameCreator/GetCodename HTTP/2.0 q=\"POST /CodenameCreator/GetCodename HTTP/2.0\" 100% x%y"
        );
        assert_eq!(fmt("[%b]", &r), "[be_servers]");
        assert_eq!(fmt("héllo wörld", &r), "héllo wörld");
    }

    #[test]
    fn separators_like_haproxy() {
        let mut r = rec();
        r.req_captures.clear();
        // Leading blanks vanish, runs collapse into one space, and a
        // capture variable with nothing to show takes no space.
        assert_eq!(
            fmt("  %b   %s\t%hr %hs %hrl %hsl %ST ", &r),
            "be_servers s1 200 "
        );
    }

    #[test]
    fn every_variable() {
        let mut r = rec();
        (
            r.actconn,
            r.feconn,
            r.beconn,
            r.srvconn,
            r.retries,
            r.srv_queue,
            r.be_queue,
        ) = (5, 4, 3, 2, 1, 6, 7);
        assert_eq!(
            fmt("%ci|%cp|%fi|%fp|%f|%ft|%b|%bi|%bp|%bc|%bq|%s|%si|%sp|%sc|%sq|%ac|%fc|%rc|%rt|%lc", &r),
            "127.0.0.1|40222|10.0.0.1|8443|fe_proxy|fe_proxy|be_servers|-|-|3|7|s1|-|-|2|6|5|4|1|-|-"
        );
        assert_eq!(
            fmt("%t|%T|%Tl|%tr|%trg|%trl|%Ts|%ms", &r),
            "22/Nov/2026:10:00:00.100|22/Nov/2026:10:00:00 +0000|22/Nov/2026:10:00:00 +0000|22/Nov/2026:10:00:00.123|22/Nov/2026:10:00:00 +0000|22/Nov/2026:10:00:00 +0000|1795341600|100"
        );
        (r.th, r.ti, r.treq, r.tw, r.tc, r.tr, r.ta) = (1, 2, 3, 4, 5, 6, 30);
        assert_eq!(
            fmt("%Th|%Ti|%TR|%Tq|%Tw|%Tc|%Tr|%Ta|%Td|%Tt|%Tu", &r),
            "1|2|3|6|4|5|6|30|12|33|31"
        );
        r.termination = *b"SH--";
        r.req_captures = vec![Some("abc".into()), None];
        r.res_captures = vec![Some("x y".into())];
        assert_eq!(
            fmt("%ST|%B|%U|%ts|%tsc|%hr|%hrl|%hs|%hsl", &r),
            "200|145|20|SH|SH--|{abc|}|abc -|{x y}|x y"
        );
        assert_eq!(fmt("%{+Q}hrl", &r), "\"abc\" \"\"");
        r.uri = "/svc/M?a=1&b=2".into();
        assert_eq!(
            fmt("%r|%HM|%HU|%HP|%HPO|%HQ|%HV", &r),
            "POST /svc/M?a=1&b=2 HTTP/2.0|POST|/svc/M?a=1&b=2|/svc/M|/svc/M|?a=1&b=2|HTTP/2.0"
        );
        r.uri = "http://h:80/p?q".into();
        assert_eq!(fmt("%HP|%HPO|%HQ", &r), "http://h:80/p|/p|?q");
        r.uri = "/p".into();
        assert_eq!(fmt("[%HQ]|[%{+Q}HQ]", &r), "[]|[\"\"]");
        assert_eq!(
            fmt("%CC|%CS|%ID|%sslc|%sslv|%pid", &r),
            format!("-|-|-|-|-|{}", std::process::id())
        );
        let host = if hostname().is_empty() {
            "-"
        } else {
            hostname()
        };
        assert_eq!(fmt("%H", &r), host);
    }

    #[test]
    fn ipv4_mapped_client() {
        let mut r = rec();
        r.client = "[::ffff:192.0.2.7]:5000".parse().unwrap();
        r.local = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(fmt("%ci:%cp %fi:%fp", &r), "192.0.2.7:5000 2001:db8::1:443");
    }

    #[test]
    fn flags() {
        let mut r = rec();
        assert_eq!(
            fmt("%{+X}ci:%{+X}cp %{+X}Ts %{+X}ST", &r),
            "7F000001:9D1E 6B02BD20 C8"
        );
        assert_eq!(
            fmt("%{+Q}ci %{+Q}b %{+Q}ST %{+Q,-Q}s", &r),
            "\"127.0.0.1\" \"be_servers\" 200 s1"
        );
        // `%{...}o` sets the defaults of what follows.
        assert_eq!(
            fmt("%b %{+Q}o %b %s %{-Q}ft", &r),
            "be_servers \"be_servers\" \"s1\" fe_proxy"
        );
        // Ignored HAProxy flags.
        assert_eq!(fmt("%{+M}b %{+Q,+json}s", &r), "be_servers \"s1\"");
        r.server = "a\"b]\\c".into();
        assert_eq!(fmt("%{+E}s", &r), "a\\\"b\\]\\\\c");
        assert_eq!(fmt("%s", &r), "a\"b]\\c");
    }

    #[test]
    fn encoding() {
        let mut r = rec();
        r.uri = "/a\"b#c".into();
        r.req_captures = vec![Some("x|{y}\"z\t".into())];
        assert_eq!(
            fmt("%{+Q}r %HU %hr", &r),
            "\"POST /a#22b#23c HTTP/2.0\" /a#22b#23c {x#7C#7By#7D#22z#09}"
        );
        r.uri = "/é".into();
        assert_eq!(fmt("%HU", &r), "/#C3#A9");
    }

    #[test]
    fn without_record_reads_the_request() {
        let q = req();
        let mut i = input(&q);
        let f = LogFormat::parse(
            "%ci:%cp %fi:%fp %ft %f %b %s %HM %HU %HP %HQ %HV %r %ST %Ta %B %hr %tsc %{+Q}CC %sslv",
            Stage::Request,
        )
        .unwrap();
        let mut s = String::new();
        f.render(None, Some(&i), &mut s);
        assert_eq!(
            s,
            "192.0.2.7:5000 10.0.0.1:443 fe fe fe - GET /a/b?x=1 /a/b ?x=1 HTTP/2.0 GET /a/b?x=1 HTTP/2.0 - - - - \"\" TLSv1.3"
        );
        i.backend = Some("be1");
        i.res = Some(ResInput {
            status: 503,
            headers: &q.res_headers,
            grpc_status: Some(14),
        });
        let f = LogFormat::parse("%b %ST", Stage::Response).unwrap();
        s.clear();
        f.render(None, Some(&i), &mut s);
        assert_eq!(s, "be1 503");
        s.clear();
        LogFormat::httplog().render(None, Some(&i), &mut s);
        assert!(s.starts_with("192.0.2.7:5000 [-] fe be1/- -/-/-/-/- 503 - - - - -/-/-/-/- -/- \"GET /a/b?x=1 HTTP/2.0\" 14"), "{s}");
        s.clear();
        f.render(None, None, &mut s);
        assert_eq!(s, "- -");
    }

    #[test]
    fn parse_errors() {
        let err = |t: &str| LogFormat::parse(t, Stage::Log).unwrap_err();
        let e = err("%ci %xyz");
        assert!(e.contains("unknown variable '%xyz'"), "{e}");
        // Names are whole alphanumeric runs, case-sensitive.
        assert!(err("%cip").contains("'%cip'"));
        assert!(err("%CI").contains("'%CI'"));
        assert!(err("abc %").contains("'%' at the end"));
        assert!(err("%[req.hdr(x)").contains("unterminated '%['"));
        assert!(err("%{+Q").contains("unterminated '%{'"));
        assert!(err("%{+Q} x").contains("must be followed by"));
        assert!(err("%{+Z}r").contains("unknown flag '+Z'"));
        assert!(err("%{Q}r").contains("invalid flag 'Q'"));
        assert!(err("100% done").contains("after '%'"));
        assert!(err("%1").contains("after '%'"));
        assert!(err("%[]").contains("empty sample expression"));
        let e = err("x %[no_such_fetch(1)] y");
        assert!(
            e.starts_with("in '%[no_such_fetch(1)]' of log-format"),
            "{e}"
        );
        assert!(LogFormat::parse("", Stage::Log).is_ok());
    }

    #[test]
    fn expression_extent() {
        assert_eq!(expr_len("a]b"), Some(1));
        assert_eq!(expr_len("req.hdr(x),regsub(\\],y)]"), Some(23));
        assert_eq!(expr_len("f(\"]\")]"), Some(6));
        assert_eq!(expr_len("a[b]]"), Some(4));
        assert_eq!(expr_len("f(]"), None);
    }

    // The following need the sample-expression engine (crate::acl).

    #[test]
    fn sample_expressions() {
        let q = req();
        let i = input(&q);
        let f = LogFormat::parse(
            "id=%[req.hdr(x-id),lower] q=%{+Q}[req.hdr(x-id)] none=%[req.hdr(nope)] %{+Q}[req.hdr(nope)]",
            Stage::Request,
        )
        .unwrap();
        assert!(f.uses_samples());
        let mut s = String::new();
        f.render(None, Some(&i), &mut s);
        assert_eq!(s, "id=abc q=\"ABC\" none=- \"\"");
        s.clear();
        f.render(None, None, &mut s);
        assert_eq!(s, "id=- q=\"\" none=- \"\"");
        assert!(!LogFormat::parse("%ci %r", Stage::Request)
            .unwrap()
            .uses_samples());
    }

    // ------------------------------------------------------- JSON lines

    fn json(text: &str, r: &HttpLogRecord) -> String {
        let f = LogFormat::parse(text, Stage::Log).unwrap().json(true);
        assert!(f.is_json());
        render(&f, r)
    }

    fn parsed(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    #[test]
    fn json_httplog_default_line() {
        let f = LogFormat::httplog().json(true);
        assert_eq!(
            render(&f, &rec()),
            "{\"client_ip\":\"127.0.0.1\",\"client_port\":40222,\"request_date\":\"22/Nov/2026:10:00:00.123\",\"frontend_name\":\"fe_proxy\",\"backend_name\":\"be_servers\",\"server_name\":\"s1\",\"TR\":0,\"Tw\":0,\"Tc\":1,\"Tr\":2,\"Ta\":3,\"status_code\":200,\"bytes_read\":145,\"captured_request_cookie\":null,\"captured_response_cookie\":null,\"termination_state\":\"----\",\"actconn\":1,\"feconn\":1,\"beconn\":0,\"srv_conn\":0,\"retries\":0,\"srv_queue\":0,\"backend_queue\":0,\"captured_request_headers\":[\"abc123\"],\"http_request\":\"POST /CodenameCreator/GetCodename HTTP/2.0\",\"grpc_status\":0}"
        );
        // The `log-format` spelling of the layout gives the same object.
        let q = req();
        let mut i = input(&q);
        i.res = Some(ResInput {
            status: 200,
            headers: &q.res_headers,
            grpc_status: Some(0),
        });
        let mut a = String::new();
        LogFormat::parse(HTTPLOG_FORMAT, Stage::Log)
            .unwrap()
            .json(true)
            .render(Some(&rec()), Some(&i), &mut a);
        assert_eq!(a, render(&f, &rec()));
    }

    #[test]
    fn json_absent_values_are_null() {
        let mut r = rec();
        r.grpc_status = None;
        r.req_captures = vec![Some("a".into()), None];
        r.status = 0;
        r.tc = -1;
        let v = parsed(&render(&LogFormat::httplog().json(true), &r));
        assert_eq!(v["grpc_status"], serde_json::Value::Null);
        assert_eq!(
            v["captured_request_headers"],
            serde_json::json!(["a", null])
        );
        // Not tracked, and "no response" / "never happened" as in text.
        assert_eq!(v["captured_request_cookie"], serde_json::Value::Null);
        assert_eq!(v["status_code"], -1);
        assert_eq!(v["Tc"], -1);
        // No response captures declared: no field at all.
        assert!(v.get("captured_response_headers").is_none(), "{v}");
        assert_eq!(
            json("%bi %bp %si %sp %rt %lc %CC %CS %ID %sslc", &r),
            "{\"backend_source_ip\":null,\"backend_source_port\":null,\"server_ip\":null,\"server_port\":null,\"request_counter\":null,\"log_counter\":null,\"captured_request_cookie\":null,\"captured_response_cookie\":null,\"unique_id\":null,\"ssl_ciphers\":null}"
        );
        // Without a record nor a request, everything is null.
        let f = LogFormat::parse("%ci %s %ST %Ta %r %[req.hdr(x)]", Stage::Log)
            .unwrap()
            .json(true);
        let mut s = String::new();
        f.render(None, None, &mut s);
        assert_eq!(
            s,
            "{\"client_ip\":null,\"server_name\":null,\"status_code\":null,\"Ta\":null,\"http_request\":null,\"req.hdr\":null}"
        );
    }

    #[test]
    fn json_numbers_are_numbers() {
        let mut r = rec();
        (r.th, r.ti, r.treq, r.tw, r.tc, r.tr, r.ta) = (1, 2, 3, 4, 5, 6, 30);
        r.bytes_in = 7;
        let v = parsed(&json(
            "%cp %fp %Th %Ti %TR %Tq %Tw %Tc %Tr %Ta %Td %Tt %Tu %ST %B %U %ac %fc %bc %sc %rc %sq %bq %Ts %ms %pid",
            &r,
        ));
        let want = serde_json::json!({
            "client_port": 40222, "frontend_port": 8443,
            "Th": 1, "Ti": 2, "TR": 3, "Tq": 6, "Tw": 4, "Tc": 5, "Tr": 6, "Ta": 30, "Td": 12, "Tt": 33, "Tu": 31,
            "status_code": 200, "bytes_read": 145, "bytes_uploaded": 7,
            "actconn": 1, "feconn": 1, "beconn": 0, "srv_conn": 0, "retries": 0, "srv_queue": 0, "backend_queue": 0,
            "timestamp": 1_795_341_600u64, "accept_ms": 100, "pid": std::process::id(),
        });
        assert_eq!(v, want);
        // Flags do not apply: no hex, no quotes around numbers.
        assert_eq!(
            json("%{+X}cp %{+Q}ST %{+X,+Q}ci %{+E}s", &r),
            "{\"client_port\":40222,\"status_code\":200,\"client_ip\":\"127.0.0.1\",\"server_name\":\"s1\"}"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut r = rec();
        r.server = "a\"b\\c\nd\te\u{1}f\u{7f}é]".into();
        r.uri = "/a\"b#é?x=1".into();
        r.req_captures = vec![Some("x|{y}".into())];
        assert_eq!(
            json("%s", &r),
            "{\"server_name\":\"a\\\"b\\\\c\\nd\\te\\u0001f\\u007fé]\"}"
        );
        // Not `#XX`-encoded: JSON escaping is enough.
        let v = parsed(&json("%r %HU %HP %HQ %hr %hrl", &r));
        assert_eq!(v["http_request"], "POST /a\"b#é?x=1 HTTP/2.0");
        assert_eq!(v["http_uri"], "/a\"b#é?x=1");
        assert_eq!(v["http_path"], "/a\"b#é");
        assert_eq!(v["http_query"], "?x=1");
        assert_eq!(v["captured_request_headers"], serde_json::json!(["x|{y}"]));
        assert_eq!(
            v["captured_request_headers_2"],
            serde_json::json!(["x|{y}"])
        );
        let mut s = String::new();
        json_str(&mut s, "\u{8}\u{c}\r\u{1f} \u{2028}");
        assert_eq!(s, "\"\\b\\f\\r\\u001f \u{2028}\"");
        assert_eq!(parsed(&s), "\u{8}\u{c}\r\u{1f} \u{2028}");
    }

    #[test]
    fn json_dates_and_names() {
        let r = rec();
        assert_eq!(
            json("%t %T %Tl %tr %trg %trl", &r),
            "{\"date_time\":\"22/Nov/2026:10:00:00.100\",\"gmt_date_time\":\"22/Nov/2026:10:00:00 +0000\",\"local_date_time\":\"22/Nov/2026:10:00:00 +0000\",\"request_date\":\"22/Nov/2026:10:00:00.123\",\"gmt_request_date\":\"22/Nov/2026:10:00:00 +0000\",\"local_request_date\":\"22/Nov/2026:10:00:00 +0000\"}"
        );
        // Literal text and separators are dropped; `%(name)` names a field,
        // before or after the flags; a default name already used gets `_2`.
        assert_eq!(
            json("ip=%(client)ci:%(port){+X}cp [%{+Q}(st)ST] %f/%ft %ts %tsc x", &r),
            "{\"client\":\"127.0.0.1\",\"port\":40222,\"st\":200,\"frontend_name\":\"fe_proxy\",\"frontend_name_2\":\"fe_proxy\",\"termination_state\":\"--\",\"termination_state_2\":\"----\"}"
        );
        // An explicit name takes precedence over a default one.
        assert_eq!(
            json("%ci %(client_ip)cp", &r),
            "{\"client_ip_2\":\"127.0.0.1\",\"client_ip\":40222}"
        );
        // An empty format is an empty object.
        assert_eq!(json("just text", &r), "{}");
    }

    /// Found while writing the `logformat` fuzz target (docs/fuzzing.md):
    /// naming N fields that share a default name was quadratic in N (4,000
    /// `%ci`, a 16 KB line, took seconds). 20,000 of them must load at once
    /// and keep the same unique names, explicit names included.
    #[test]
    fn many_fields_with_one_default_name_load_fast() {
        let text = format!("%(client_ip_3)ci {}", "%ci ".repeat(20_000));
        let nodes = parse(&text, Stage::Log).unwrap();
        let keys: Vec<&str> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Var(_, _, key) => Some(&**key),
                _ => None,
            })
            .collect();
        assert_eq!(keys.len(), 20_001);
        assert_eq!(
            keys[..5],
            [
                "\"client_ip_3\":",
                "\"client_ip\":",
                "\"client_ip_2\":",
                "\"client_ip_4\":",
                "\"client_ip_5\":"
            ]
        );
        assert_eq!(keys[20_000], "\"client_ip_20001\":");
    }

    #[test]
    fn json_samples_are_named_after_their_fetch() {
        let q = req();
        let i = input(&q);
        let f = LogFormat::parse(
            "%[req.hdr(x-id),lower] %[req.hdr(nope)] %(id)[req.hdr(x-id)] %[ src ] %[req.hdr(x-id),length] %[req.hdr(x-id)] %[req.hdr(x-id),length,bool]",
            Stage::Request,
        )
        .unwrap()
        .json(true);
        let mut s = String::new();
        f.render(None, Some(&i), &mut s);
        assert_eq!(
            s,
            "{\"req.hdr\":\"abc\",\"req.hdr_2\":null,\"id\":\"ABC\",\"src\":\"192.0.2.7\",\"req.hdr_3\":3,\"req.hdr_4\":\"ABC\",\"req.hdr_5\":true}"
        );
    }

    #[test]
    fn json_logasap_is_a_field() {
        let mut r = rec();
        r.logasap = true;
        r.bytes_out = 0;
        let v = parsed(&render(&LogFormat::httplog().json(true), &r));
        assert_eq!(v["logasap"], true);
        assert_eq!(
            (v["Ta"].clone(), v["bytes_read"].clone()),
            (3.into(), 0.into())
        );
        assert_eq!(
            json("%Tt %Tu %B", &r),
            "{\"Tt\":3,\"Tu\":3,\"bytes_read\":0,\"logasap\":true}"
        );
        assert_eq!(json("", &r), "{\"logasap\":true}");
        r.logasap = false;
        assert!(parsed(&render(&LogFormat::httplog().json(true), &r))
            .get("logasap")
            .is_none());
    }

    #[test]
    fn text_mode_ignores_names_and_is_unchanged() {
        let r = rec();
        assert_eq!(
            fmt("%(client)ci:%(port)cp %{+Q}(b)b %(id)[grpc_status]", &r),
            fmt("%ci:%cp %{+Q}b %[grpc_status]", &r)
        );
        let text = LogFormat::httplog();
        assert!(!text.is_json());
        let back = text.clone().json(true).json(false);
        assert_eq!(render(&back, &rec()), render(&text, &rec()));
    }

    #[test]
    fn field_name_errors() {
        let err = |t: &str| LogFormat::parse(t, Stage::Log).unwrap_err();
        assert_eq!(
            err("%(client ci"),
            "unterminated '%(' (missing ')' after the field name) in log-format '%(client ci'"
        );
        assert_eq!(err("%()ci"), "empty field name '%()' in log-format '%()ci'");
        assert_eq!(
            err("%(a b)ci"),
            "invalid character ' ' in field name '%(a b)' of log-format '%(a b)ci' (only letters, digits, '_', '-' and '.' are allowed)"
        );
        assert_eq!(
            err("%(a) ci"),
            "field name '%(a)' must be followed by a variable name or '[' in log-format '%(a) ci', found ' '"
        );
        assert!(err("%(a){+Q}").contains("'%(a){+Q}' must be followed by"));
        assert!(err("%(a)(b)ci").contains("found '('"));
        assert_eq!(
            err("%(x)ci %(x)cp"),
            "duplicate field name '%(x)' in log-format '%(x)ci %(x)cp'"
        );
        assert!(err("%(a)o").contains("takes no field name"));
        assert!(err("%(a)xyz").contains("unknown variable '%xyz'"));
    }

    #[test]
    fn httplog_format_string_matches_builtin() {
        let q = req();
        let mut i = input(&q);
        let f = LogFormat::parse(HTTPLOG_FORMAT, Stage::Log).unwrap();
        assert!(f.uses_samples());
        let mut r = rec();
        for gs in [Some(0), Some(14), None] {
            r.grpc_status = gs;
            i.res = Some(ResInput {
                status: 200,
                headers: &q.res_headers,
                grpc_status: gs,
            });
            let mut a = String::new();
            f.render(Some(&r), Some(&i), &mut a);
            let mut b = String::new();
            LogFormat::httplog().render(Some(&r), Some(&i), &mut b);
            assert_eq!(a, b);
        }
    }
}
