//! The typed configuration model: what the parser produces after defaults
//! inheritance and `listen` splitting, and what the runtime compiles.
//!
//! Everything here is plain data (no tokio, no sockets). Addresses are already
//! resolved; names are already checked to be unique and every reference
//! (`default_backend`, `use_backend`) is known to exist.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where a line came from: `weir.cfg:42`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub global: Global,
    /// Frontends in file order (a `listen` section contributes one).
    pub frontends: Vec<Frontend>,
    /// Backends in file order (a `listen` section contributes one with its own name).
    pub backends: Vec<Backend>,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.name == name)
    }
}

/// `global` section.
#[derive(Clone, Debug, Default)]
pub struct Global {
    /// `maxconn N`: process-wide cap on concurrent client connections.
    pub maxconn: Option<u32>,
    /// `nbthread N`: worker threads (default: number of CPUs).
    pub nbthread: Option<usize>,
    /// `log ...` lines in `global` (used by sections that say `log global`).
    pub logs: Vec<LogTarget>,
}

/// `mode http|tcp`. HAProxy's default is `tcp`; so is ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

/// Application protocol forced by `proto <name>` on a `bind` or `server` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H2,
    H1,
}

/// `timeout <name> <time>` values; `None` means "not set" (no timeout).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub tunnel: Option<Duration>,
    pub http_request: Option<Duration>,
    pub http_keep_alive: Option<Duration>,
    pub queue: Option<Duration>,
    pub check: Option<Duration>,
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
}

/// A `log` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// `log stdout|stderr [format raw|rfc3164|rfc5424] <facility> [level]`
    Stdout {
        format: LogFormat,
        facility: String,
    },
    Stderr {
        format: LogFormat,
        facility: String,
    },
    /// `log <ip:port> ...` (UDP syslog). Defaults to port 514.
    Udp {
        addr: SocketAddr,
        format: LogFormat,
        facility: String,
    },
    /// `log <path> ...` (unix socket such as /dev/log): accepted, not used yet.
    Unix {
        path: String,
        facility: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Rfc3164,
    Rfc5424,
    Raw,
}

/// `option <name>` flags that weir acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `option httplog`
    pub httplog: bool,
    /// `option tcplog`
    pub tcplog: bool,
}

/// A `frontend` (or the front half of a `listen`).
#[derive(Clone, Debug, Default)]
pub struct Frontend {
    pub name: String,
    pub loc: Loc,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    pub default_backend: Option<String>,
    /// `use_backend <name> [if|unless <cond>]`, in file order. The condition
    /// is kept as its raw words until the ACL issue compiles it.
    pub use_backends: Vec<UseBackend>,
    pub timeouts: Timeouts,
    /// `maxconn N` on the frontend.
    pub maxconn: Option<u32>,
    pub logs: Vec<LogTarget>,
    pub options: Options,
}

/// `bind <addr>:<port> [proto h2]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub addr: SocketAddr,
    /// `None`: detect per connection (HTTP/1.1 or h2c prior knowledge).
    pub proto: Option<Proto>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseBackend {
    pub backend: String,
    /// Raw condition words after `if`/`unless`, `None` for unconditional.
    pub cond: Option<RawCond>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCond {
    /// true for `unless`
    pub negate: bool,
    pub words: Vec<String>,
}

/// `balance <algorithm>`
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
}

/// A `backend` (or the back half of a `listen`).
#[derive(Clone, Debug, Default)]
pub struct Backend {
    pub name: String,
    pub loc: Loc,
    pub mode: Mode,
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub timeouts: Timeouts,
    pub options: Options,
    pub logs: Vec<LogTarget>,
}

/// `server <name> <addr>:<port> [proto h2] [weight N] [maxconn N] [disabled] [check]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub loc: Loc,
    /// Resolved address.
    pub addr: SocketAddr,
    /// The address as written (host name kept for `:authority`-free logs).
    pub addr_text: String,
    /// `proto h2` -> `Some(Proto::H2)`; absent -> HTTP/1.1 like HAProxy.
    pub proto: Option<Proto>,
    /// `weight N`, 0..=256, default 1.
    pub weight: u32,
    /// `maxconn N`: concurrent calls (HTTP) or connections (TCP) to this server.
    pub maxconn: Option<u32>,
    /// `disabled`: starts in maintenance, never picked.
    pub disabled: bool,
    /// `check`: active health checks requested (implemented by the health-check issue).
    pub check: bool,
}
