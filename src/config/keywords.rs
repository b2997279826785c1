//! Stage 2: the keyword table and dispatch.
//!
//! [`KEYWORDS`] lists every keyword weir knows: the sections it is allowed in
//! and what handles it (a parse function from [`super::parse`], or "accepted
//! but ignored", or "known but not supported yet"). [`dispatch`] looks one
//! line up, reports unknown or misplaced keywords, and calls the handler.
//! The smaller tables for `option`, `timeout`, `bind` and `server` arguments
//! live here too, so that everything weir accepts is listed in one file.

use super::parse::{self as p, Ctx, ProxyDraft, R};
use super::{Diagnostic, Diags, Global, Loc};

/// Section bits.
pub(crate) const GLOBAL: u8 = 1;
pub(crate) const DEFAULTS: u8 = 2;
pub(crate) const FRONTEND: u8 = 4;
pub(crate) const BACKEND: u8 = 8;
pub(crate) const LISTEN: u8 = 16;
/// Every proxy section, `defaults` included.
const PROXY: u8 = DEFAULTS | FRONTEND | BACKEND | LISTEN;
/// Sections with a frontend side (HAProxy's "frontend capability").
const FE: u8 = DEFAULTS | FRONTEND | LISTEN;
/// Sections with a backend side.
const BE: u8 = DEFAULTS | BACKEND | LISTEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SectionKind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl SectionKind {
    pub(crate) const ALL: [SectionKind; 5] = [
        SectionKind::Global,
        SectionKind::Defaults,
        SectionKind::Frontend,
        SectionKind::Backend,
        SectionKind::Listen,
    ];

    pub(crate) fn bit(self) -> u8 {
        match self {
            SectionKind::Global => GLOBAL,
            SectionKind::Defaults => DEFAULTS,
            SectionKind::Frontend => FRONTEND,
            SectionKind::Backend => BACKEND,
            SectionKind::Listen => LISTEN,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SectionKind::Global => "global",
            SectionKind::Defaults => "defaults",
            SectionKind::Frontend => "frontend",
            SectionKind::Backend => "backend",
            SectionKind::Listen => "listen",
        }
    }

    pub(crate) fn from_keyword(word: &str) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|k| k.name() == word)
    }
}

/// HAProxy sections that weir does not support (yet).
pub(crate) const UNSUPPORTED_SECTIONS: &[&str] = &[
    "peers",
    "resolvers",
    "userlist",
    "program",
    "mailers",
    "cache",
    "ring",
    "http-errors",
    "log-forward",
    "crt-store",
    "traces",
    "acme",
    "fcgi-app",
    "dynamic-update",
];

/// HAProxy's conditional-block directives.
pub(crate) const CONDITIONALS: &[&str] = &[
    ".if", ".elif", ".else", ".endif", ".diag", ".notice", ".warning", ".alert",
];

/// Whether an accepted-but-ignored item may do something in a later release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// "has no effect in weir, ignored": not planned / not applicable.
    Never,
    /// "has no effect in weir yet, ignored": planned.
    Yet,
}

impl Effect {
    pub(crate) fn warning(self, what: &str) -> String {
        match self {
            Effect::Never => format!("'{what}' has no effect in weir, ignored"),
            Effect::Yet => format!("'{what}' has no effect in weir yet, ignored"),
        }
    }
}

pub(crate) enum Handler {
    Global(fn(&mut Ctx, &mut Global) -> R),
    Proxy(fn(&mut Ctx, &mut ProxyDraft) -> R),
    /// Accepted with a warning, arguments not checked.
    Ignored(Effect),
    /// Known HAProxy keyword that weir rejects for now.
    Unsupported,
}

pub(crate) struct Keyword {
    pub name: &'static str,
    pub sections: u8,
    /// Shown in "missing/unexpected argument" errors.
    pub usage: &'static str,
    /// Accepts a `no` prefix.
    pub negatable: bool,
    pub handler: Handler,
}

const fn kw(name: &'static str, sections: u8, usage: &'static str, handler: Handler) -> Keyword {
    Keyword {
        name,
        sections,
        usage,
        negatable: false,
        handler,
    }
}

const fn neg(name: &'static str, sections: u8, usage: &'static str, handler: Handler) -> Keyword {
    Keyword {
        name,
        sections,
        usage,
        negatable: true,
        handler,
    }
}

const fn ignored(name: &'static str, sections: u8, effect: Effect) -> Keyword {
    Keyword {
        name,
        sections,
        usage: "",
        negatable: false,
        handler: Handler::Ignored(effect),
    }
}

const fn unsupported(name: &'static str, sections: u8) -> Keyword {
    Keyword {
        name,
        sections,
        usage: "",
        negatable: false,
        handler: Handler::Unsupported,
    }
}

use Effect::{Never, Yet};
use Handler::{Global as G, Proxy as P};

/// Every keyword, in the order of `docs/configuration.md`.
pub(crate) static KEYWORDS: &[Keyword] = &[
    // ---- global
    kw("maxconn", GLOBAL, "maxconn <number>", G(p::global_maxconn)),
    kw("maxpipes", GLOBAL, "maxpipes <number>", G(p::global_maxpipes)),
    kw(
        "nbthread",
        GLOBAL,
        "nbthread <number>",
        G(p::global_nbthread),
    ),
    neg(
        "busy-polling",
        GLOBAL,
        "[no] busy-polling",
        G(p::global_busy_polling),
    ),
    kw("log", GLOBAL, LOG_USAGE, G(p::global_log)),
    kw(
        "stats",
        GLOBAL,
        "stats <subcommand> ...",
        G(p::global_stats),
    ),
    ignored("daemon", GLOBAL, Never),
    ignored("master-worker", GLOBAL, Never),
    ignored("nbproc", GLOBAL, Never),
    ignored("cpu-map", GLOBAL, Never),
    ignored("localpeer", GLOBAL, Never),
    ignored("tune.ssl.default-dh-param", GLOBAL, Never),
    ignored("quiet", GLOBAL, Never),
    ignored("ulimit-n", GLOBAL, Never),
    ignored("node", GLOBAL, Never),
    ignored("description", GLOBAL, Never),
    ignored("user", GLOBAL, Yet),
    ignored("group", GLOBAL, Yet),
    ignored("uid", GLOBAL, Yet),
    ignored("gid", GLOBAL, Yet),
    ignored("chroot", GLOBAL, Yet),
    ignored("pidfile", GLOBAL, Yet),
    kw("tune.bufsize", GLOBAL, "tune.bufsize <size>", G(p::tune::bufsize)),
    kw("tune.pipesize", GLOBAL, "tune.pipesize <size>", G(p::tune::pipesize)),
    kw(
        "tune.h2.max-concurrent-streams",
        GLOBAL,
        "tune.h2.max-concurrent-streams <number>",
        G(p::tune::max_concurrent_streams),
    ),
    kw(
        "tune.h2.initial-window-size",
        GLOBAL,
        "tune.h2.initial-window-size <size>",
        G(p::tune::initial_window_size),
    ),
    kw(
        "tune.h2.max-frame-size",
        GLOBAL,
        "tune.h2.max-frame-size <size>",
        G(p::tune::max_frame_size),
    ),
    kw(
        "tune.h2.max-header-list-size",
        GLOBAL,
        "tune.h2.max-header-list-size <size>",
        G(p::tune::max_header_list_size),
    ),
    kw(
        "tune.h2.header-table-size",
        GLOBAL,
        "tune.h2.header-table-size <size>",
        G(p::tune::header_table_size),
    ),
    kw(
        "tune.h2.hpack-encoding",
        GLOBAL,
        "tune.h2.hpack-encoding stateless|indexed",
        G(p::tune::hpack_encoding),
    ),
    kw(
        "tune.h2.fe.max-pending-resets",
        GLOBAL,
        "tune.h2.fe.max-pending-resets <number>",
        G(p::tune::max_pending_resets),
    ),
    kw(
        "tune.h2.fe.max-error-resets",
        GLOBAL,
        "tune.h2.fe.max-error-resets <number>",
        G(p::tune::max_error_resets),
    ),
    kw(
        "tune.h2.fe.max-control-frames-per-sec",
        GLOBAL,
        "tune.h2.fe.max-control-frames-per-sec <number>",
        G(p::tune::max_control_frames_per_sec),
    ),
    kw(
        "hard-stop-after",
        GLOBAL,
        "hard-stop-after <time>",
        G(p::global_hard_stop_after),
    ),
    kw("ca-base", GLOBAL, "ca-base <directory>", G(p::ssl::global_ca_base)),
    kw("crt-base", GLOBAL, "crt-base <directory>", G(p::ssl::global_crt_base)),
    kw(
        "ssl-default-bind-ciphers",
        GLOBAL,
        "ssl-default-bind-ciphers <ciphers>",
        G(p::ssl::global_ciphers),
    ),
    kw(
        "ssl-default-bind-ciphersuites",
        GLOBAL,
        "ssl-default-bind-ciphersuites <ciphersuites>",
        G(p::ssl::global_bind_ciphersuites),
    ),
    kw(
        "ssl-default-bind-options",
        GLOBAL,
        "ssl-default-bind-options [<option>]...",
        G(p::ssl::global_bind_options),
    ),
    kw(
        "ssl-default-server-ciphers",
        GLOBAL,
        "ssl-default-server-ciphers <ciphers>",
        G(p::ssl::global_ciphers),
    ),
    kw(
        "ssl-default-server-ciphersuites",
        GLOBAL,
        "ssl-default-server-ciphersuites <ciphersuites>",
        G(p::ssl::global_server_ciphersuites),
    ),
    kw(
        "ssl-default-server-options",
        GLOBAL,
        "ssl-default-server-options [<option>]...",
        G(p::ssl::global_server_options),
    ),
    kw(
        "ssl-server-verify",
        GLOBAL,
        "ssl-server-verify none | required",
        G(p::ssl::global_server_verify),
    ),
    ignored("log-send-hostname", GLOBAL, Yet),
    kw(
        "metrics-max-methods",
        GLOBAL,
        "metrics-max-methods <number>",
        G(p::stats::global_metrics_max_methods),
    ),
    // ---- proxies
    kw("mode", PROXY, "mode { http | tcp }", P(p::mode)),
    kw("timeout", PROXY, "timeout <event> <time>", P(p::timeout)),
    kw("contimeout", BE, "contimeout <time>", P(p::old_timeout)),
    kw("clitimeout", FE, "clitimeout <time>", P(p::old_timeout)),
    kw("srvtimeout", BE, "srvtimeout <time>", P(p::old_timeout)),
    kw("maxconn", FE, "maxconn <number>", P(p::maxconn)),
    neg("log", PROXY, LOG_USAGE, P(p::proxy_log)),
    neg("option", PROXY, "option <name> [<arguments>]", P(p::option)),
    kw("balance", BE, "balance roundrobin", P(p::balance)),
    kw(
        "hash-type",
        BE,
        "hash-type <map-based|consistent> [sdbm|djb2|wt6|crc32|xxh3] [avalanche]",
        P(p::hash_type),
    ),
    kw(
        "default_backend",
        FE,
        "default_backend <backend>",
        P(p::default_backend),
    ),
    kw(
        "use_backend",
        FRONTEND | LISTEN,
        "use_backend <backend> [{if | unless} <condition>]",
        P(p::rules::use_backend),
    ),
    kw(
        "acl",
        FRONTEND | BACKEND | LISTEN,
        "acl <name> <criterion> [flags] [operator] [<value>] ...",
        P(p::rules::acl),
    ),
    kw(
        "http-request",
        FRONTEND | BACKEND | LISTEN,
        "http-request <action> [options...] [{if | unless} <condition>]",
        P(p::rules::http_request),
    ),
    kw(
        "http-response",
        FRONTEND | BACKEND | LISTEN,
        "http-response <action> [options...] [{if | unless} <condition>]",
        P(p::rules::http_response),
    ),
    kw(
        "capture",
        FRONTEND | LISTEN,
        "capture { request | response } header <name> len <length>",
        P(p::rules::capture),
    ),
    kw("log-format", FE, "log-format <format>", P(p::rules::log_format)),
    kw(
        "h2-keepalive",
        PROXY,
        "h2-keepalive <interval> [timeout <time>]",
        P(p::h2_keepalive),
    ),
    kw(
        "bind",
        FRONTEND | LISTEN,
        "bind <address>:<port>[,...] [proto h2|h1]",
        P(p::bind),
    ),
    kw(
        "server",
        BACKEND | LISTEN,
        "server <name> <address>:<port> [<option> ...]",
        P(p::server),
    ),
    kw("retries", BE, "retries <number>", P(p::retries)),
    kw("maxqueue", BE, "maxqueue <number>", P(p::queue::maxqueue)),
    kw(
        "retry-on",
        BE,
        "retry-on <event> [<event> ...]",
        P(p::retry::retry_on),
    ),
    kw(
        "retry-buffer",
        BE,
        "retry-buffer <size>",
        P(p::retry::retry_buffer),
    ),
    kw(
        "default-server",
        BE,
        "default-server [<option> ...]",
        P(p::default_server),
    ),
    ignored("errorfile", PROXY, Yet),
    ignored("log-tag", PROXY, Yet),
    ignored("compression", PROXY, Yet),
    ignored("fullconn", BE, Yet),
    ignored("description", FRONTEND | BACKEND | LISTEN, Never),
    ignored("http-reuse", BE, Never),
    unsupported("http-after-response", PROXY),
    kw(
        "tcp-request",
        FRONTEND | LISTEN,
        "tcp-request connection {accept | reject | track-sc<n> <key> [table <table>] | sc-inc-gpc0(<n>)} [{if | unless} <condition>]",
        P(p::rules::tcp_request),
    ),
    unsupported("tcp-request", DEFAULTS | BACKEND),
    unsupported("tcp-response", PROXY),
    unsupported("redirect", FRONTEND | BACKEND | LISTEN),
    unsupported("use-server", BACKEND | LISTEN),
    unsupported("server-template", BACKEND | LISTEN),
    unsupported("cookie", BE),
    kw(
        "stick-table",
        BACKEND | LISTEN,
        "stick-table type {ip | ipv6 | integer | string [len <n>]} size <n> [expire <time>] store <data>[,<data>...]",
        P(p::rules::stick_table),
    ),
    unsupported("stick", BACKEND | LISTEN),
    kw(
        "http-check",
        BE,
        "http-check { send [meth <m>] [uri <u>] [ver <v>] [hdr <n> <v>]* | expect [!] <matcher> <pattern> }",
        P(p::check::http_check),
    ),
    kw(
        "tcp-check",
        BE,
        "tcp-check { connect [port <n>] | send <string> | send-binary <hex> | expect [!] <matcher> <pattern> }",
        P(p::check::tcp_check),
    ),
    unsupported("source", BE),
    unsupported("monitor-uri", FE),
    kw(
        "stats",
        PROXY,
        "stats { enable | uri <prefix> | refresh <delay> | hide-version | show-legends }",
        P(p::stats::stats),
    ),
    unsupported("errorfiles", PROXY),
    unsupported("http-error", PROXY),
    unsupported("unique-id-format", FE),
    unsupported("unique-id-header", FE),
    unsupported("filter", FRONTEND | BACKEND | LISTEN),
    unsupported("email-alert", PROXY),
    unsupported("disabled", PROXY),
    unsupported("enabled", PROXY),
    unsupported("id", FRONTEND | BACKEND | LISTEN),
    unsupported("dispatch", BACKEND | LISTEN),
];

pub(crate) const LOG_USAGE: &str =
    "log { global | <target> [len <length>] [format <format>] <facility> [<level> [<minlevel>]] }";

/// What `option`, `timeout` and other sub-tables say a setting applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cap {
    Frontend,
    Backend,
    Both,
}

pub(crate) enum OptionKind {
    Httplog,
    Tcplog,
    Logasap,
    /// `option log-json`: access-log lines as JSON objects.
    LogJson,
    /// `option forwardfor [except <net>] [header <name>] [if-none]`
    Forwardfor,
    /// `option grpc-check [<service>]` (weir's own).
    GrpcCheck,
    /// `option tcp-check`
    TcpCheck,
    /// `option httpchk [<method> <uri> [<version>]]`
    HttpChk,
    /// `option redispatch [<interval>]`
    Redispatch,
    /// `option allbackups`
    Allbackups,
    /// `option splice-auto`, `option splice-request`, `option splice-response`
    SpliceAuto,
    SpliceRequest,
    SpliceResponse,
    Ignored(Effect),
}

pub(crate) struct OptionDef {
    pub name: &'static str,
    pub cap: Cap,
    /// Takes arguments after its name (checked only for `httplog`).
    pub args: bool,
    pub kind: OptionKind,
}

const fn opt(name: &'static str, cap: Cap, args: bool, kind: OptionKind) -> OptionDef {
    OptionDef {
        name,
        cap,
        args,
        kind,
    }
}

use Cap::{Backend as OB, Both as OA, Frontend as OF};
use OptionKind::Ignored as Ign;

pub(crate) static OPTIONS: &[OptionDef] = &[
    opt("httplog", OF, true, OptionKind::Httplog),
    opt("tcplog", OF, false, OptionKind::Tcplog),
    opt("dontlognull", OF, false, Ign(Yet)),
    opt("dontlog-normal", OF, false, Ign(Yet)),
    opt("log-separate-errors", OF, false, Ign(Yet)),
    opt("logasap", OF, false, OptionKind::Logasap),
    opt("log-json", OF, false, OptionKind::LogJson),
    opt("log-health-checks", OB, false, Ign(Yet)),
    opt("forwardfor", OA, true, OptionKind::Forwardfor),
    opt("originalto", OA, true, Ign(Yet)),
    opt("redispatch", OB, true, OptionKind::Redispatch),
    opt("abortonclose", OB, false, Ign(Yet)),
    opt("allbackups", OB, false, OptionKind::Allbackups),
    opt("persist", OB, false, Ign(Yet)),
    opt("httpchk", OB, true, OptionKind::HttpChk),
    opt("grpc-check", OB, true, OptionKind::GrpcCheck),
    opt("ssl-hello-chk", OB, false, Ign(Yet)),
    opt("tcp-check", OB, false, OptionKind::TcpCheck),
    opt("tcpka", OA, false, Ign(Yet)),
    opt("clitcpka", OF, false, Ign(Yet)),
    opt("srvtcpka", OB, false, Ign(Yet)),
    opt("http-buffer-request", OA, false, Ign(Yet)),
    opt("nolinger", OA, false, Ign(Yet)),
    opt("http-use-htx", OA, false, Ign(Never)),
    opt("http-keep-alive", OA, false, Ign(Never)),
    opt("http-server-close", OA, false, Ign(Never)),
    opt("httpclose", OA, false, Ign(Never)),
    opt("forceclose", OA, false, Ign(Never)),
    opt("http-pretend-keepalive", OA, false, Ign(Never)),
    opt("http-no-delay", OA, false, Ign(Never)),
    opt("prefer-last-server", OB, false, Ign(Never)),
    opt("splice-auto", OA, false, OptionKind::SpliceAuto),
    opt("splice-request", OA, false, OptionKind::SpliceRequest),
    opt("splice-response", OA, false, OptionKind::SpliceResponse),
    opt("contstats", OF, false, Ign(Never)),
    opt("socket-stats", OF, false, Ign(Never)),
    opt("independent-streams", OA, false, Ign(Never)),
];

/// `timeout <event>` names; `None` for ones accepted and ignored.
pub(crate) static TIMEOUTS: &[(&str, Cap, Option<Effect>)] = &[
    ("client", OF, None),
    ("client-fin", OF, None),
    ("http-request", OA, None),
    ("http-keep-alive", OA, None),
    ("connect", OB, None),
    ("server", OB, None),
    ("server-fin", OB, None),
    ("queue", OB, None),
    ("tunnel", OB, None),
    ("check", OB, None),
    ("tarpit", OA, Some(Never)),
];

/// `bind` options weir parses.
pub(crate) static BIND_OPTIONS: &[&str] = &[
    "proto",
    "max-connection-age",
    "max-connection-age-grace",
    "ssl",
    "crt",
    "alpn",
    "ca-file",
    "verify",
    "ssl-min-ver",
    "ssl-max-ver",
    "ciphersuites",
    "ciphers",
    "no-sslv3",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "force-tlsv12",
    "force-tlsv13",
    "no-tls-tickets",
    "prefer-client-ciphers",
];

/// HAProxy `bind` options that weir rejects as "not supported yet".
pub(crate) static BIND_UNSUPPORTED: &[&str] = &[
    "crt-list",
    "npn",
    "crl-file",
    "curves",
    "ecdhe",
    "sigalgs",
    "strict-sni",
    "allow-0rtt",
    "generate-certificates",
    "accept-proxy",
    "accept-netscaler-cip",
    "v4v6",
    "v6only",
    "transparent",
    "interface",
    "namespace",
    "mss",
    "backlog",
    "maxconn",
    "name",
    "id",
    "nice",
    "process",
    "thread",
    "shards",
    "tfo",
    "defer-accept",
    "tcp-ut",
    "user",
    "group",
    "uid",
    "gid",
    "mode",
    "level",
    "severity-output",
    "expose-fd",
    "label",
    "quic-cc-algo",
    "quic-force-retry",
    "ktls",
];

/// HAProxy `server` options that weir rejects as "not supported yet".
pub(crate) static SERVER_UNSUPPORTED: &[&str] = &[
    "npn",
    "ciphers",
    "check-alpn",
    "check-send-proxy",
    "send-proxy",
    "send-proxy-v2",
    "resolvers",
    "resolve-prefer",
    "resolve-opts",
    "init-addr",
    "cookie",
    "agent-check",
    "agent-port",
    "agent-inter",
    "agent-addr",
    "agent-send",
    "on-marked-down",
    "on-marked-up",
    "redir",
    "track",
    "id",
    "source",
    "namespace",
    "pool-max-conn",
    "pool-purge-delay",
    "pool-low-conn",
    "tfo",
    "ws",
    "minconn",
    "max-reuse",
    "tcp-ut",
    "usesrc",
    "socks4",
    "non-stick",
    "guid",
];

/// Server options that weir parses and stores or validates.
pub(crate) static SERVER_OPTIONS: &[&str] = &[
    "proto",
    "weight",
    "slowstart",
    "maxconn",
    "maxqueue",
    "disabled",
    "enabled",
    "check",
    "no-check",
    "inter",
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "port",
    "addr",
    "check-proto",
    "backup",
    "no-backup",
    "ssl",
    "no-ssl",
    "verify",
    "ca-file",
    "crt",
    "alpn",
    "sni",
    "verifyhost",
    "check-ssl",
    "no-check-ssl",
    "check-sni",
    "ssl-min-ver",
    "ssl-max-ver",
    "ciphersuites",
    "no-sslv3",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "force-tlsv12",
    "force-tlsv13",
    "observe",
    "error-limit",
    "on-error",
];

/// `balance` algorithms HAProxy has and weir does not (yet).
pub(crate) static BALANCE_UNSUPPORTED: &[&str] = &["url_param", "rdp-cookie", "hash"];

/// Restricted Damerau-Levenshtein distance (adjacent swaps count as one edit).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// The closest candidate within a small edit distance, if any.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let len = word.chars().count();
    if len > 64 {
        return None;
    }
    let limit = (len / 4).clamp(1, 3);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(word, c);
        let better = match best {
            Some((bd, _)) => d < bd,
            None => true,
        };
        if d <= limit && better {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `"; did you mean 'x' maybe ?"` or nothing.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> String {
    suggest(word, candidates).map_or(String::new(), |s| format!("; did you mean '{s}' maybe ?"))
}

/// "backend, listen" style list of the sections in `bits`.
fn section_list(bits: u8) -> String {
    let names: Vec<&str> = SectionKind::ALL
        .iter()
        .filter(|k| bits & k.bit() != 0)
        .map(|k| k.name())
        .collect();
    names.join(", ")
}

/// After this many errors, unknown keywords get no suggestion.
const MAX_SUGGESTING_ERRORS: usize = 100;

/// Where a line is being applied.
pub(crate) enum Target<'t> {
    Global(&'t mut Global),
    Proxy(&'t mut ProxyDraft),
}

/// Applies one line (`words` is never empty) of a section.
pub(crate) fn dispatch(
    words: &[String],
    loc: &Loc,
    section: SectionKind,
    proxy_name: &str,
    target: Target,
    diags: &mut Diags,
) {
    let error = |diags: &mut Diags, kw: Option<&str>, msg: String| {
        diags
            .errors
            .push(Diagnostic::new(Some(loc.clone()), kw, msg));
    };
    let negated = words[0] == "no";
    let words = if negated { &words[1..] } else { words };
    let Some(name) = words.first() else {
        return error(diags, Some("no"), "missing keyword after 'no'".into());
    };
    let bit = section.bit();
    let entry = KEYWORDS
        .iter()
        .find(|k| k.name == name && k.sections & bit != 0);
    let Some(entry) = entry else {
        let allowed = KEYWORDS
            .iter()
            .filter(|k| k.name == name)
            .fold(0, |acc, k| acc | k.sections);
        let msg = if allowed != 0 {
            format!(
                "'{name}' is not allowed in '{}' section (allowed in: {})",
                section.name(),
                section_list(allowed)
            )
        } else {
            let candidates = KEYWORDS
                .iter()
                .filter(|k| k.sections & bit != 0)
                .map(|k| k.name)
                .chain(SectionKind::ALL.iter().map(|k| k.name()));
            // Suggestions cost a few edit distances per keyword: stop making
            // them once a file is obviously not a configuration.
            let hint = match diags.errors.len() < MAX_SUGGESTING_ERRORS {
                true => did_you_mean(name, candidates),
                false => String::new(),
            };
            format!(
                "unknown keyword '{name}' in '{}' section{hint}",
                section.name()
            )
        };
        return error(diags, None, msg);
    };
    if negated && !entry.negatable {
        let msg =
            "the 'no' prefix is only supported by 'option', 'log' and 'busy-polling'".to_string();
        return error(diags, Some(&format!("no {name}")), msg);
    }
    let mut ctx = Ctx {
        words,
        loc: loc.clone(),
        kw: name.clone(),
        usage: entry.usage,
        negated,
        section,
        proxy_name,
        diags,
    };
    let result = match (&entry.handler, target) {
        (Handler::Global(f), Target::Global(g)) => f(&mut ctx, g),
        (Handler::Proxy(f), Target::Proxy(d)) => f(&mut ctx, d),
        (Handler::Ignored(effect), _) => {
            ctx.warn_plain(effect.warning(name));
            Ok(())
        }
        (Handler::Unsupported, _) => Err(format!("'{name}' is not supported yet")),
        // The section bits keep global handlers away from proxies.
        _ => Err(format!("'{name}' cannot be used here")),
    };
    if let Err(message) = result {
        let kw = ctx.kw.clone();
        let kw = matches!(entry.handler, Handler::Global(_) | Handler::Proxy(_)).then_some(kw);
        error(ctx.diags, kw.as_deref(), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("balance", "balance"), 0);
        assert_eq!(distance("balanse", "balance"), 1);
        assert_eq!(distance("srever", "server"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("defualt_backend", "default_backend"), 1);
    }

    #[test]
    fn suggestions() {
        let kws = ["balance", "bind", "server", "default_backend"];
        assert_eq!(suggest("balanse", kws), Some("balance"));
        assert_eq!(suggest("bnd", kws), Some("bind"));
        assert_eq!(suggest("defaut_backend", kws), Some("default_backend"));
        assert_eq!(suggest("zzz", kws), None);
        assert_eq!(suggest(&"x".repeat(1000), kws), None);
    }

    #[test]
    fn table_is_consistent() {
        for (i, a) in KEYWORDS.iter().enumerate() {
            assert!(a.sections != 0, "{}", a.name);
            for b in &KEYWORDS[i + 1..] {
                assert!(
                    a.name != b.name || a.sections & b.sections == 0,
                    "{} twice",
                    a.name
                );
            }
        }
        for (i, a) in OPTIONS.iter().enumerate() {
            assert!(
                OPTIONS[i + 1..].iter().all(|b| b.name != a.name),
                "option {}",
                a.name
            );
        }
    }
}
