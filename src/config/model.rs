//! The typed configuration model: what the parser produces after defaults
//! inheritance and `listen` splitting, and what the runtime compiles.
//!
//! Everything here is plain data (no tokio, no sockets). Addresses are already
//! resolved; names are already checked to be unique and every reference
//! (`default_backend`, `use_backend`) is known to exist.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::acl::Condition;
use crate::observe::logformat::LogFormat as LineFormat;

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

impl Global {
    /// HAProxy's default `tune.bufsize`.
    pub const DEFAULT_BUFSIZE: u32 = 16 << 10;
}

/// `global` section.
#[derive(Clone, Debug, Default)]
pub struct Global {
    /// `maxconn N`: process-wide cap on concurrent client connections.
    pub maxconn: Option<u32>,
    /// `maxpipes N`: pipes open at once for `option splice-*` (unset:
    /// `maxconn / 4`, else a quarter of the descriptor limit).
    pub maxpipes: Option<u32>,
    /// `tune.bufsize <size>`: the `mode tcp` copy buffer of each direction
    /// (unset: [`Global::DEFAULT_BUFSIZE`]).
    pub bufsize: Option<u32>,
    /// `tune.pipesize <size>`: the size of each splice pipe (unset: the
    /// kernel's default, 64 KiB).
    pub pipesize: Option<u32>,
    /// `nbthread N`: worker threads (default: number of CPUs).
    pub nbthread: Option<usize>,
    /// `log ...` lines in `global` (used by sections that say `log global`).
    pub logs: Vec<LogTarget>,
    /// `hard-stop-after <time>`: how long a stopping weir waits for open
    /// connections before it exits anyway.
    pub hard_stop_after: Option<Duration>,
    /// `ca-base <dir>`: where relative `ca-file` paths are looked up.
    pub ca_base: Option<std::path::PathBuf>,
    /// `crt-base <dir>`: where relative `crt` paths are looked up.
    pub crt_base: Option<std::path::PathBuf>,
    /// `ssl-default-bind-options` / `ssl-default-bind-ciphersuites`.
    pub ssl_bind: SslDefaults,
    /// `ssl-default-server-options` / `ssl-default-server-ciphersuites` /
    /// `ssl-server-verify`.
    pub ssl_server: SslDefaults,
    /// `metrics-max-methods <n>`: distinct gRPC methods counted per backend
    /// (default [`crate::observe::stats::DEFAULT_MAX_METHODS`]).
    pub metrics_max_methods: Option<usize>,
    /// `tune.h2.*`: HTTP/2 settings and abuse limits for client connections.
    pub h2: H2Tune,
    /// `tune.h2.hpack-encoding indexed`: HTTP/2 header blocks weir sends use
    /// the HPACK dynamic table and Huffman coding (default, `false`:
    /// stateless, as HAProxy encodes). Process-wide.
    pub hpack_indexed: bool,
    /// `busy-polling`: worker threads poll for events without ever sleeping
    /// (lower latency, a whole CPU per thread). Follows reloads.
    pub busy_polling: bool,
}

/// `tune.h2.*` in `global`: what weir advertises to HTTP/2 clients and the
/// limits it enforces on them (docs/hardening.md). `Default` gives the
/// documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Tune {
    /// `tune.h2.max-concurrent-streams`: SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// `tune.h2.initial-window-size`: SETTINGS_INITIAL_WINDOW_SIZE (per stream).
    pub initial_window_size: u32,
    /// `tune.h2.max-frame-size`: SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
    /// `tune.h2.max-header-list-size`: SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: u32,
    /// `tune.h2.fe.max-pending-resets`: streams the client resets before
    /// weir has taken them up, at once, before GOAWAY ENHANCE_YOUR_CALM
    /// (rapid reset, CVE-2023-44487).
    pub max_pending_resets: u32,
    /// `tune.h2.fe.max-error-resets`: streams weir resets because of the
    /// client's protocol errors before GOAWAY ENHANCE_YOUR_CALM.
    pub max_error_resets: u32,
    /// `tune.h2.fe.max-control-frames-per-sec`: PING, SETTINGS, PRIORITY
    /// and empty DATA frames a client may send per second before GOAWAY
    /// ENHANCE_YOUR_CALM (0: no limit).
    pub max_control_frames_per_sec: u32,
}

impl H2Tune {
    pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
    pub const DEFAULT_INITIAL_WINDOW_SIZE: u32 = 1 << 20;
    pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 16;
    pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 << 10;
    pub const DEFAULT_MAX_PENDING_RESETS: u32 = 20;
    pub const DEFAULT_MAX_ERROR_RESETS: u32 = 1024;
    pub const DEFAULT_MAX_CONTROL_FRAMES_PER_SEC: u32 = 10_000;
}

impl Default for H2Tune {
    fn default() -> Self {
        H2Tune {
            max_concurrent_streams: Self::DEFAULT_MAX_CONCURRENT_STREAMS,
            initial_window_size: Self::DEFAULT_INITIAL_WINDOW_SIZE,
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: Self::DEFAULT_MAX_HEADER_LIST_SIZE,
            max_pending_resets: Self::DEFAULT_MAX_PENDING_RESETS,
            max_error_resets: Self::DEFAULT_MAX_ERROR_RESETS,
            max_control_frames_per_sec: Self::DEFAULT_MAX_CONTROL_FRAMES_PER_SEC,
        }
    }
}

/// TLS defaults from `global` for `bind` or `server` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SslDefaults {
    pub min_ver: Option<crate::tls::TlsVersion>,
    pub max_ver: Option<crate::tls::TlsVersion>,
    pub ciphersuites: Option<String>,
    /// `ssl-server-verify none|required` (servers only).
    pub verify: Option<bool>,
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
    /// `option logasap`: the httplog line is written as soon as the
    /// response headers are in.
    pub logasap: bool,
    /// `option allbackups`: when no active server is usable, every usable
    /// backup server takes traffic (not only the first).
    pub allbackups: bool,
    /// `option log-json`: the frontend's access-log lines (httplog,
    /// `log-format`, tcplog) are written as one JSON object each.
    pub log_json: bool,
    /// `option forwardfor [except <net>] [header <name>] [if-none]`
    pub forwardfor: Option<ForwardFor>,
    /// `retries <n>` (unset: [`Options::DEFAULT_RETRIES`]).
    pub retries: Option<u32>,
    /// `retry-on <events>` (unset: `conn-failure`).
    pub retry_on: Option<RetryOn>,
    /// `retry-buffer <size>`: the largest request body kept for replay
    /// (unset: [`Options::DEFAULT_RETRY_BUFFER`]).
    pub retry_buffer: Option<u64>,
    /// `option redispatch`: a retry goes to another server when it can.
    pub redispatch: bool,
    /// `option splice-auto|splice-request|splice-response` (mode tcp).
    pub splice: Splice,
}

/// `option splice-*`: kernel splicing of `mode tcp` sessions. The frontend's
/// and the backend's settings add up, as in HAProxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Splice {
    /// `option splice-auto`: each direction is spliced once it carries bulk
    /// data (a read fills weir's whole buffer).
    pub auto: bool,
    /// `option splice-request`: client to server, always.
    pub request: bool,
    /// `option splice-response`: server to client, always.
    pub response: bool,
}

impl Splice {
    pub fn any(self) -> bool {
        self.auto || self.request || self.response
    }

    /// The session's setting from the frontend's and the backend's.
    pub fn or(self, other: Splice) -> Splice {
        Splice {
            auto: self.auto || other.auto,
            request: self.request || other.request,
            response: self.response || other.response,
        }
    }
}

impl Options {
    /// HAProxy's default `retries`.
    pub const DEFAULT_RETRIES: u32 = 3;
    /// Default `retry-buffer`: 64 KiB.
    pub const DEFAULT_RETRY_BUFFER: u64 = 64 << 10;
}

/// `retry-on`: the failures after which a call is tried again (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RetryOn(pub u8);

impl RetryOn {
    /// Connect refused or timed out, TLS handshake failed: nothing was sent.
    pub const CONN_FAILURE: RetryOn = RetryOn(1);
    /// The server closed the connection before any response header.
    pub const EMPTY_RESPONSE: RetryOn = RetryOn(2);
    /// HTTP/2 REFUSED_STREAM, or GOAWAY not covering the call's stream.
    pub const REFUSED_STREAM: RetryOn = RetryOn(4);
    /// A trailers-only gRPC answer with `grpc-status: 14`.
    pub const UNAVAILABLE: RetryOn = RetryOn(8);
    /// A trailers-only gRPC answer with `grpc-status: 8`.
    pub const RESOURCE_EXHAUSTED: RetryOn = RetryOn(16);
    /// An HTTP 503 response head.
    pub const HTTP_503: RetryOn = RetryOn(32);
    pub const NONE: RetryOn = RetryOn(0);
    pub const ALL: RetryOn = RetryOn(63);
    /// weir's default: HAProxy's `conn-failure`, plus `refused-stream`
    /// (a stream the server refused, or that its GOAWAY does not cover, was
    /// not processed: sending it again is always safe). Backends with no
    /// HTTP/2 server use `conn-failure` alone.
    pub const DEFAULT: RetryOn = RetryOn(RetryOn::CONN_FAILURE.0 | RetryOn::REFUSED_STREAM.0);

    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Only failures where nothing reached a server.
    pub const fn nothing_sent_only(self) -> bool {
        self.0 & !RetryOn::CONN_FAILURE.0 == 0
    }
}

/// `option forwardfor`: the client address goes to the server in a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardFor {
    /// `header <name>` (default `x-forwarded-for`).
    pub header: HeaderName,
    /// `except <network>`: clients in this network get no header.
    pub except: Option<(IpAddr, u8)>,
    /// `if-none`: only when the request has no such header yet.
    pub if_none: bool,
}

/// A `frontend` (or the front half of a `listen`).
#[derive(Clone, Debug, Default)]
pub struct Frontend {
    pub name: String,
    pub loc: Loc,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    pub default_backend: Option<String>,
    /// `use_backend <name> [if|unless <cond>]`, in file order.
    pub use_backends: Vec<UseBackend>,
    /// `tcp-request connection` rules, in file order: run once per client
    /// connection, before any byte is read.
    pub tcp_request_connection: Vec<Rule<ConnAction>>,
    /// `http-request` rules, in file order.
    pub http_request: Vec<Rule<ReqAction>>,
    /// `http-response` rules, in file order.
    pub http_response: Vec<Rule<ResAction>>,
    /// `capture request header <name> len <n>`, in file order.
    pub capture_request: Vec<Capture>,
    /// `capture response header <name> len <n>`.
    pub capture_response: Vec<Capture>,
    /// `log-format <string>`; `None` with `option httplog` means weir's
    /// default httplog layout.
    pub log_format: Option<Arc<LineFormat>>,
    /// `h2-keepalive`: PINGs to HTTP/2 clients.
    pub h2_keepalive: Option<H2Keepalive>,
    /// `stats enable` / `stats uri ...`: the stats page, when enabled.
    pub stats: Option<StatsPage>,
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
    /// `ssl crt ...` options as written (`None`: plain TCP).
    pub ssl: Option<crate::tls::BindSsl>,
    /// The compiled TLS settings (certificates loaded and checked).
    pub tls: Option<crate::tls::BindTls>,
    /// `max-connection-age <time>`: a client connection gets a graceful
    /// GOAWAY after this age (plus up to 10% jitter).
    pub max_age: Option<Duration>,
    /// `max-connection-age-grace <time>`: how long calls may still run after
    /// that GOAWAY before the connection is closed.
    pub max_age_grace: Option<Duration>,
}

/// `h2-keepalive <interval> [timeout <time>]`: HTTP/2 PINGs that detect dead
/// peers on idle connections (clients on the frontend side, servers on the
/// backend side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Keepalive {
    pub interval: Duration,
    /// A PING not answered within this closes the connection (default 20s).
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct UseBackend {
    /// The backend name as written (a `%[...]` format for dynamic rules).
    pub backend: String,
    /// `use_backend %[<expr>]`: the name is computed per request.
    pub dynamic: Option<Arc<LineFormat>>,
    /// `if` / `unless` condition; `None` for unconditional.
    pub cond: Option<Condition>,
    pub loc: Loc,
}

/// One `http-request` / `http-response` rule: an action and its condition.
#[derive(Clone, Debug)]
pub struct Rule<A> {
    pub action: A,
    pub cond: Option<Condition>,
    pub loc: Loc,
}

/// What a `tcp-request connection` rule does.
#[derive(Clone, Debug)]
pub enum ConnAction {
    /// `accept`: stop evaluating the rules, keep the connection.
    Accept,
    /// `reject`: close the connection at once.
    Reject,
    /// `track-sc<ctr> <key expression> [table <backend>]`: the connection
    /// is counted (`conn_cnt`, `conn_cur`, `conn_rate`) and its requests
    /// see the counter as their own sc<ctr>.
    Track {
        ctr: usize,
        key: crate::acl::Expr,
        table: String,
    },
    /// `sc-inc-gpc0(<ctr>)`
    IncGpc0 { ctr: usize },
}

/// What an `http-request` rule does.
#[derive(Clone, Debug)]
pub enum ReqAction {
    /// `allow`: stop evaluating `http-request` rules, let the request pass.
    Allow,
    /// `deny [deny_status <code>]`
    Deny { status: u16 },
    /// `return [status <code>] [content-type <type>] [string|lf-string <body>] [hdr <name> <fmt>]*`
    Return(Box<ReturnSpec>),
    /// `set-header`, `add-header`, `del-header`, `replace-header`, `replace-value`
    Header(HeaderAction),
    /// `set-path <fmt>`
    SetPath(Arc<LineFormat>),
    /// `set-query <fmt>`
    SetQuery(Arc<LineFormat>),
    /// `set-uri <fmt>`
    SetUri(Arc<LineFormat>),
    /// `set-method <fmt>`
    SetMethod(Arc<LineFormat>),
    /// `use-service <name>`: weir answers the request itself.
    UseService(Service),
    /// `track-sc<ctr> <key expression> [table <backend>]` (the table
    /// defaults to the proxy's own).
    Track {
        ctr: usize,
        key: crate::acl::Expr,
        table: String,
    },
    /// `sc-inc-gpc0(<ctr>)`: adds one to gpc0 (and gpc0_rate) of the
    /// entry sc<ctr> tracks.
    IncGpc0 { ctr: usize },
}

/// A service `http-request use-service` can hand a request to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// `prometheus-exporter`: the metrics in OpenMetrics text.
    PrometheusExporter,
    /// The stats page of `stats enable` / `stats uri`: the resolver adds
    /// this rule last to the frontend's `http-request` rules; it answers
    /// requests whose URI starts with the page's `uri`, after the other
    /// rules ran (even after an `allow`), like HAProxy's stats applet.
    Stats(Arc<StatsPage>),
}

/// `stats enable|uri|refresh|hide-version|show-legends` of a frontend:
/// the HTML stats page (and its `;csv` / `;json` forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsPage {
    /// `stats uri <prefix>` (default [`StatsPage::DEFAULT_URI`]).
    pub uri: String,
    /// `stats refresh <delay>`: the page reloads itself this often.
    pub refresh: Option<Duration>,
    /// `stats hide-version`
    pub hide_version: bool,
    /// `stats show-legends`
    pub show_legends: bool,
}

impl StatsPage {
    /// HAProxy's default `stats uri`.
    pub const DEFAULT_URI: &'static str = "/haproxy?stats";
}

impl Default for StatsPage {
    fn default() -> Self {
        StatsPage {
            uri: StatsPage::DEFAULT_URI.to_string(),
            refresh: None,
            hide_version: false,
            show_legends: false,
        }
    }
}

/// What an `http-response` rule does.
#[derive(Clone, Debug)]
pub enum ResAction {
    /// `allow`: stop evaluating `http-response` rules.
    Allow,
    /// `deny [deny_status <code>]`: the response is replaced.
    Deny {
        status: u16,
    },
    /// `set-status <code>`
    SetStatus(u16),
    Header(HeaderAction),
}

/// A header edit shared by `http-request` and `http-response`.
#[derive(Clone, Debug)]
pub enum HeaderAction {
    Set(HeaderName, Arc<LineFormat>),
    Add(HeaderName, Arc<LineFormat>),
    Del(HeaderName),
    /// `replace-header <name> <regex> <fmt>`: on each whole header line.
    Replace(HeaderName, regex::Regex, Arc<LineFormat>),
    /// `replace-value <name> <regex> <fmt>`: on each comma-separated value.
    ReplaceValue(HeaderName, regex::Regex, Arc<LineFormat>),
}

/// `http-request return ...`
#[derive(Clone, Debug)]
pub struct ReturnSpec {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Option<ReturnBody>,
    pub headers: Vec<(HeaderName, Arc<LineFormat>)>,
}

/// The body of `http-request return`.
#[derive(Clone, Debug)]
pub enum ReturnBody {
    /// `string <text>`
    Text(bytes::Bytes),
    /// `lf-string <fmt>`
    Format(Arc<LineFormat>),
}

/// `capture request|response header <name> len <n>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub name: HeaderName,
    pub len: usize,
}

/// `balance <algorithm> [<arguments>]`
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// `roundrobin`: smooth weighted round robin, follows weight changes
    /// (slowstart, runtime weights).
    #[default]
    RoundRobin,
    /// `static-rr`: round robin over the configured weights only.
    StaticRr,
    /// `leastconn`: fewest calls/connections in flight per unit of weight.
    LeastConn,
    /// `first`: the first server (in file order) with a free slot.
    First,
    /// `source`: a hash of the client's IP address picks the server.
    Source,
    /// `uri [whole] [len <n>] [depth <n>]`: a hash of the path (gRPC:
    /// `/pkg.Service/Method`) picks the server; `whole` includes the query.
    Uri {
        whole: bool,
        len: Option<usize>,
        depth: Option<usize>,
    },
    /// `hdr(<name>)`: a hash of a header (gRPC metadata) value; requests
    /// without it are balanced round robin.
    Hdr(http::HeaderName),
    /// `random[(<draws>)]`: the least loaded of `draws` random servers
    /// (power of N choices, default 2).
    Random { draws: u32 },
    /// `ewma [decay <time>]`: power of two choices over peak-EWMA latency
    /// times calls in flight (linkerd's balancer); `decay` default 10s.
    Ewma { decay: std::time::Duration },
}

impl Balance {
    /// Whether the algorithm hashes a key (`hash-type` applies).
    pub fn hashes(&self) -> bool {
        matches!(
            self,
            Balance::Source | Balance::Uri { .. } | Balance::Hdr(_)
        )
    }
}

/// `hash-type <method> [<function>] [avalanche]`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HashType {
    pub method: HashMethod,
    pub function: HashFunction,
    /// `avalanche`: the hash is mixed again before use.
    pub avalanche: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashMethod {
    /// `map-based` (default): hash modulo the total weight; a change in the
    /// server set moves most keys.
    #[default]
    MapBased,
    /// `consistent`: a hash ring; a server going or coming moves about 1/N
    /// of the keys.
    Consistent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashFunction {
    /// HAProxy's default.
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
    /// xxHash3 (64-bit).
    Xxh3,
}

/// A `backend` (or the back half of a `listen`).
#[derive(Clone, Debug, Default)]
pub struct Backend {
    pub name: String,
    pub loc: Loc,
    pub mode: Mode,
    pub balance: Balance,
    /// `hash-type`, for `source`, `uri` and `hdr`.
    pub hash_type: HashType,
    pub servers: Vec<Server>,
    pub timeouts: Timeouts,
    pub options: Options,
    pub logs: Vec<LogTarget>,
    /// What a health check of this backend's servers does (`option
    /// grpc-check`, `option tcp-check`, `option httpchk`; default: connect).
    pub check: HealthCheck,
    /// `http-request` rules of a `backend` section (run after the
    /// frontend's, once this backend is chosen). Empty for a `listen`,
    /// whose rules are on its frontend side.
    pub http_request: Vec<Rule<ReqAction>>,
    /// `http-response` rules of a `backend` section (run before the frontend's).
    pub http_response: Vec<Rule<ResAction>>,
    /// `h2-keepalive`: PINGs to HTTP/2 servers.
    pub h2_keepalive: Option<H2Keepalive>,
    /// `maxqueue <n>`: how many calls may wait in the backend queue
    /// (0 or unset: no limit; see also the servers' `maxqueue`).
    pub maxqueue: Option<u32>,
    /// `stick-table ...`
    pub stick_table: Option<crate::stick::TableDef>,
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
    /// `slowstart <time>`: after coming back up, the server's weight ramps
    /// from ~0 to `weight` over this time.
    pub slowstart: Option<std::time::Duration>,
    /// `maxconn N`: concurrent calls (HTTP) or connections (TCP) to this server.
    pub maxconn: Option<u32>,
    /// `maxqueue N`: this server's share of the backend queue (counted only
    /// when every server of the backend has one; 0: no limit).
    pub maxqueue: Option<u32>,
    /// `disabled`: starts in maintenance, never picked.
    pub disabled: bool,
    /// `check`: active health checks of this server.
    pub check: bool,
    /// `inter`, `fastinter`, `downinter`, `rise`, `fall`, `port`, `addr`,
    /// `check-proto` (used only with `check`).
    pub check_params: CheckParams,
    /// `backup`: used only when no active (non-backup) server is up.
    pub backup: bool,
    /// `ssl`: TLS to the server.
    pub ssl: bool,
    /// `verify`, `ca-file`, `crt`, `alpn`, `ssl-min-ver`, ... as written
    /// (`verify` default applied at resolve time).
    pub ssl_opts: crate::tls::ServerSsl,
    /// `verify none|required` as written (`None`: global default, else required).
    pub verify: Option<bool>,
    /// `sni str(<name>)` / `verifyhost <name>`: the name sent as SNI and
    /// checked in the certificate; default: the server's address as written.
    pub sni: Option<String>,
    /// `sni <expression>` (e.g. `req.hdr(host)`): the name is computed per
    /// request, with one connection pool per name.
    pub sni_expr: Option<SniExpr>,
    /// `check-ssl`: health checks over TLS (default: same as `ssl`).
    pub check_ssl: Option<bool>,
    /// `check-sni <name>`
    pub check_sni: Option<String>,
    /// The compiled TLS settings.
    pub tls: Option<crate::tls::ServerTls>,
    /// `observe layer4|layer7 [error-limit <n>] [on-error <action>]`:
    /// passive health from live traffic.
    pub observe: Option<Observe>,
    /// `error-limit <n>` (default 10).
    pub error_limit: u32,
    /// `on-error <action>` (default `fail-check`).
    pub on_error: OnError,
    /// The backend's `h2-keepalive` (PINGs on idle upstream connections).
    pub h2_keepalive: Option<H2Keepalive>,
}

impl Server {
    /// A server line with HAProxy's defaults, before its options apply.
    pub fn new(name: &str, loc: Loc, addr: SocketAddr, addr_text: &str) -> Server {
        Server {
            name: name.to_string(),
            loc,
            addr,
            addr_text: addr_text.to_string(),
            proto: None,
            weight: 1,
            slowstart: None,
            maxconn: None,
            maxqueue: None,
            disabled: false,
            check: false,
            check_params: Default::default(),
            backup: false,
            ssl: false,
            ssl_opts: Default::default(),
            verify: None,
            sni: None,
            sni_expr: None,
            check_ssl: None,
            check_sni: None,
            tls: None,
            observe: None,
            error_limit: 10,
            on_error: Default::default(),
            h2_keepalive: None,
        }
    }
}

/// `observe layer4|layer7`: which call outcomes count as server errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observe {
    /// Connection problems only (refused, reset, lost, TLS failures).
    Layer4,
    /// Also the final status: grpc-status UNAVAILABLE, INTERNAL, UNKNOWN or
    /// DEADLINE_EXCEEDED (when the server sent it); HTTP 5xx other than
    /// 501 and 505 for plain HTTP.
    Layer7,
}

/// `on-error <action>`: what `error-limit` consecutive errors do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// Check again soon (at `fastinter`).
    FastInter,
    /// Count as one failed health check.
    #[default]
    FailCheck,
    /// Leave the server one failed check away from DOWN.
    SuddenDeath,
    /// Mark the server DOWN now; active checks bring it back.
    MarkDown,
}

/// A per-request `sni` expression and its text (compared by text).
#[derive(Clone, Debug)]
pub struct SniExpr {
    pub text: String,
    pub expr: crate::acl::Expr,
}

impl PartialEq for SniExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for SniExpr {}

/// Per-server health-check settings. Defaults are HAProxy's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckParams {
    /// `inter <time>`: delay between two checks of a healthy server (2s).
    pub inter: Duration,
    /// `fastinter <time>`: delay while a state change is pending (default: `inter`).
    pub fastinter: Option<Duration>,
    /// `downinter <time>`: delay while the server is fully down (default: `inter`).
    pub downinter: Option<Duration>,
    /// `rise <n>`: consecutive successes that bring a DOWN server UP (2).
    pub rise: u32,
    /// `fall <n>`: consecutive failures that take an UP server DOWN (3).
    pub fall: u32,
    /// `port <n>`: port checks connect to (default: the server's).
    pub port: Option<u16>,
    /// `addr <ip>`: address checks connect to (default: the server's).
    pub addr: Option<IpAddr>,
    /// `check-proto h2|h1`: protocol of `option httpchk` checks (default: HTTP/1.1).
    pub proto: Option<Proto>,
}

impl Default for CheckParams {
    fn default() -> Self {
        CheckParams {
            inter: Duration::from_millis(2000),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            port: None,
            addr: None,
            proto: None,
        }
    }
}

/// The kind of health check a backend runs on its servers with `check`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum HealthCheck {
    /// A TCP connection that opens is a success (HAProxy's default check).
    #[default]
    Connect,
    /// `option grpc-check [<service>]`: `grpc.health.v1.Health/Check` over h2c.
    Grpc { service: String },
    /// `option tcp-check` and its `tcp-check` rules, in order.
    Tcp(Vec<TcpCheckRule>),
    /// `option httpchk` (+ `http-check send` / `http-check expect`).
    Http(HttpCheck),
}

/// One `tcp-check` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCheckRule {
    /// `tcp-check connect [port N]`
    Connect { port: Option<u16> },
    /// `tcp-check send <string>` / `tcp-check send-binary <hex>`
    Send(Vec<u8>),
    /// `tcp-check expect [!] <matcher> <pattern>`
    Expect(Expect),
}

/// `expect [!] <matcher> <pattern>` of `tcp-check` or `http-check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// `!`: the rule succeeds when the pattern does *not* match.
    pub negate: bool,
    pub pattern: Pattern,
}

/// What an `expect` rule looks for. Regexes are validated at parse time and
/// kept as text (the model stays plain data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `string <text>`: the bytes appear in the response (body for HTTP).
    String(Vec<u8>),
    /// `binary <hex>`: the decoded bytes appear in the response.
    Binary(Vec<u8>),
    /// `rstring <regex>`: the regex matches the response (as lossy UTF-8).
    Rstring(String),
    /// `rbinary <regex>`: the regex matches the response written as upper-case hex.
    Rbinary(String),
    /// `status <code>[,<code>...]` (HTTP only); a code may be a range `200-399`.
    Status(Vec<(u16, u16)>),
    /// `rstatus <regex>` (HTTP only): matched against the 3-digit status.
    Rstatus(String),
}

/// `option httpchk` / `http-check send` / `http-check expect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub uri: String,
    /// `HTTP/1.1` or `HTTP/1.0`, as written (HTTP/2 is `check-proto h2`).
    pub version: String,
    /// `hdr <name> <value>` of `http-check send`.
    pub headers: Vec<(String, String)>,
    /// `None`: any 2xx or 3xx status passes, like HAProxy.
    pub expect: Option<Expect>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            method: "OPTIONS".into(),
            uri: "/".into(),
            version: "HTTP/1.0".into(),
            headers: Vec::new(),
            expect: None,
        }
    }
}
