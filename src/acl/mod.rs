//! ACLs and sample expressions (HAProxy configuration manual §7).
//!
//! A *sample expression* is a fetch followed by converters
//! (`req.hdr(content-type),lower`). An *ACL* is an expression, optional
//! flags, a match method and patterns (`acl isgrpc req.hdr(content-type) -m beg application/grpc`).
//! A *condition* combines ACLs (`if a b || !c { path /x }`). Everything is
//! parsed and compiled (patterns, regexes, pattern files) once at load
//! time; evaluation only reads the request.
//!
//! Public API used by the rest of weir (keep it stable):
//!
//! - [`Input`]: what a fetch can see about one request (and its response).
//! - [`Expr::parse`] / [`Expr::eval`]: `%[...]` sample expressions.
//! - [`Acls::define`]: one `acl` line of a proxy section.
//! - [`Condition::parse`] / [`Condition::eval`]: `if` / `unless` conditions.
//! - [`split_cond`]: splits a rule line at `if` / `unless`.

mod cond;
mod convert;
mod expr;
mod fetch;
mod jwt;
mod matcher;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri, Version};

/// Where an expression is evaluated; each fetch says where it is available
/// (a response fetch such as `status` makes no sense in `http-request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `http-request` rules, `use_backend`, request `capture`.
    Request,
    /// `http-response` rules: request and response fetches.
    Response,
    /// `log-format`: everything, including `grpc_status`.
    Log,
    /// `tcp-request connection` rules: only what the connection tells
    /// (addresses, frontend name, stick counters), before any byte is read.
    Connection,
}

/// TLS facts about the client connection (`ssl_fc`, `ssl_fc_sni`, ...).
#[derive(Clone, Debug, Default)]
pub struct TlsInfo {
    /// Server name the client asked for (SNI).
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// Negotiated protocol version, e.g. `TLSv1.3`.
    pub version: Option<&'static str>,
    /// Subject DN of the client certificate, HAProxy style
    /// (`/C=FR/O=Example/CN=client1`), when one was presented (`ssl_c_s_dn`).
    pub client_subject: Option<String>,
    /// Issuer DN of the client certificate (`ssl_c_i_dn`).
    pub client_issuer: Option<String>,
}

/// The response side, for `http-response` rules and logs.
#[derive(Clone, Copy, Debug)]
pub struct ResInput<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    /// Final `grpc-status` of the call (from trailers, or headers of a
    /// trailers-only response); `None` when not a gRPC call or not known.
    pub grpc_status: Option<u32>,
}

/// Everything a fetch can read about one request.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// Client address (`src`, `src_port`).
    pub src: SocketAddr,
    /// Address the client connected to (`dst`, `dst_port`).
    pub dst: SocketAddr,
    /// Frontend name (`fe_name`).
    pub frontend: &'a str,
    /// Backend chosen so far (`be_name`), if any.
    pub backend: Option<&'a str>,
    /// `None` for a plain-TCP client connection.
    pub tls: Option<&'a TlsInfo>,
    /// `Some` for `http-response` rules and logs.
    pub res: Option<ResInput<'a>>,
    /// Stick tables and the counters this request tracks (`track-sc*`,
    /// `sc_*` fetches); `None` where there is none.
    pub track: Option<&'a crate::stick::ReqTrack>,
}

/// One sample value.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample<'a> {
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    Ip(IpAddr),
}

impl std::fmt::Display for Sample<'_> {
    /// How a sample is written into a header value or a log line
    /// (booleans as `1`/`0`, like HAProxy).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sample::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            Sample::Int(i) => write!(f, "{i}"),
            Sample::Str(s) => f.write_str(s),
            Sample::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A compiled sample expression: a fetch and its converters.
#[derive(Clone, Debug)]
pub struct Expr {
    inner: Arc<expr::ExprInner>,
}

impl Expr {
    /// Parses `fetch[(args)][,converter[(args)]]...`, checking that the
    /// fetch is available at `stage`.
    pub fn parse(text: &str, stage: Stage) -> Result<Expr, String> {
        let (inner, _) = expr::ExprInner::compile(text, stage, false)?;
        Ok(Expr {
            inner: Arc::new(inner),
        })
    }

    /// The expression's value (for multi-valued fetches such as `req.hdr`,
    /// the last occurrence), or `None` when the fetch finds nothing.
    pub fn eval<'a>(&self, input: &Input<'a>) -> Option<Sample<'a>> {
        self.inner.eval(input)
    }

    /// Stick tables named in the arguments (`sc_*(<ctr>,<table>)`,
    /// `src_*(<table>)`, `table_*(<table>)`), to check they exist.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.inner.tables.iter().map(String::as_str)
    }
}

/// The named ACLs of one proxy section, with HAProxy's predefined ones
/// (`TRUE`, `FALSE`, `METH_GET`, `HTTP_2.0`, ...).
#[derive(Clone, Debug, Default)]
pub struct Acls {
    map: cond::AclMap,
}

impl Acls {
    /// One `acl` line: `words` is everything after the `acl` keyword
    /// (`<name> <criterion> [flags] [-m <method>] [<pattern> ...]`).
    /// A second line with the same name ORs its patterns in. `base_dir` is
    /// where relative `-f` pattern files are looked up (the config file's
    /// directory).
    pub fn define(&mut self, words: &[String], base_dir: &Path) -> Result<(), String> {
        self.map.define(words, base_dir)
    }
}

/// A compiled `if` / `unless` condition.
#[derive(Clone, Debug)]
pub struct Condition {
    inner: Arc<cond::CondInner>,
}

impl Condition {
    /// `words`: what follows `if` / `unless`; `unless`: which keyword it was.
    /// ACL names resolve against `acls` (and the predefined ones);
    /// anonymous ACLs `{ ... }` compile in place. Every fetch used must be
    /// available at `stage`.
    pub fn parse(
        words: &[String],
        unless: bool,
        acls: &Acls,
        stage: Stage,
        base_dir: &Path,
    ) -> Result<Condition, String> {
        let inner = cond::CondInner::parse(words, unless, &acls.map, stage, base_dir)?;
        Ok(Condition {
            inner: Arc::new(inner),
        })
    }

    pub fn eval(&self, input: &Input) -> bool {
        self.inner.eval(input)
    }

    /// Stick tables named in the arguments of the ACLs used.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.inner.tables()
    }
}

/// Splits a rule's words at the first `if` / `unless`:
/// `(before, Some((unless, after)))`, or `(all, None)`.
pub fn split_cond(words: &[String]) -> (&[String], Option<(bool, &[String])>) {
    match words.iter().position(|w| w == "if" || w == "unless") {
        Some(i) => (&words[..i], Some((words[i] == "unless", &words[i + 1..]))),
        None => (words, None),
    }
}
