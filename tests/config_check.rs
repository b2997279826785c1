//! The configuration pipeline, end to end.
//!
//! The first tests run the built binary as `weir -c -f weir.cfg` (in a
//! temporary directory, so that diagnostics say `weir.cfg`) and compare its
//! exit code and complete output. The others go through the library API,
//! `weir::config::parse_str_with_env`, and check the typed model or the exact
//! text of every diagnostic.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use weir::config::{
    self, parse_size, parse_time, Balance, Config, LogFormat, LogTarget, Mode, Proto,
};

// ------------------------------------------------------------------ helpers

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_check_with_env(cfg: &str, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("weir.cfg"), cfg).expect("write weir.cfg");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(dir.path()).args(["-c", "-f", "weir.cfg"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run weir");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run_check(cfg: &str) -> Run {
    run_check_with_env(cfg, &[])
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(cfg: &str) -> Result<config::Loaded, config::ConfigError> {
    config::parse_str_with_env("weir.cfg", cfg, &no_env)
}

/// The configuration, which must load (warnings allowed).
fn ok(cfg: &str) -> Config {
    match load(cfg) {
        Ok(l) => l.config,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Warnings of a configuration that must load.
fn warnings(cfg: &str) -> Vec<String> {
    match load(cfg) {
        Ok(l) => l.warnings.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Errors of a configuration that must not load.
fn errors(cfg: &str) -> Vec<String> {
    match load(cfg) {
        Ok(_) => panic!("loaded but should not:\n{cfg}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

/// A single error, for configurations that have exactly one.
fn error(cfg: &str) -> String {
    let errs = errors(cfg);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    errs.into_iter().next().unwrap_or_default()
}

/// A valid frontend + backend pair (5 lines) to put after the lines under test.
const TAIL: &str = "\
frontend fe
    bind 127.0.0.1:0
    default_backend be
backend be
    server s1 127.0.0.1:3000
";

fn with_tail(head: &str) -> String {
    format!("{head}{TAIL}")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const MUST_PASS: &str = "\
global
    maxconn 50000
defaults
    mode http
    timeout connect 10s
    timeout client 30s
    timeout server 30s
frontend fe_proxy
    bind 127.0.0.1:3001 proto h2
    default_backend be_servers
backend be_servers
    balance roundrobin
    server server1 127.0.0.1:3000 proto h2 maxconn 20
    server server2 127.0.0.1:3002 proto h2 maxconn 20
";

// ------------------------------------------------------------------ the binary

#[test]
fn binary_accepts_the_issue_example() {
    let run = run_check(MUST_PASS);
    assert_eq!(run.stderr, "");
    assert_eq!(run.stdout, "Configuration file is valid\n");
    assert_eq!(run.code, Some(0));
}

#[test]
fn binary_accepts_a_typical_haproxy_file_with_warnings() {
    let cfg = "\
global
\tlog /dev/log\tlocal0
\tlog /dev/log\tlocal1 notice
\tchroot /var/lib/haproxy
\tstats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
\tstats timeout 30s
\tuser haproxy
\tgroup haproxy
\tdaemon
\tca-base /etc/ssl/certs
\tcrt-base /etc/ssl/private
\tssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
\tssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
\tlog\tglobal
\tmode\thttp
\toption\thttplog
\toption\tdontlognull
\toption http-use-htx
\ttimeout connect 5000
\ttimeout client  50000
\ttimeout server  50000
\terrorfile 503 /etc/haproxy/errors/503.http

frontend www
\tbind :8080
\tdefault_backend app
backend app
\tserver a1 127.0.0.1:3000 check
";
    let run = run_check(cfg);
    let expected = "\
[WARNING] parsing [weir.cfg:2] : 'log' : unix socket target '/dev/log' is not supported yet, nothing will be logged there
[WARNING] parsing [weir.cfg:3] : 'log' : unix socket target '/dev/log' is not supported yet, nothing will be logged there
[WARNING] parsing [weir.cfg:3] : 'log' : log levels are not supported yet, 'notice' ignored
[WARNING] parsing [weir.cfg:4] : 'chroot' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:5] : 'stats socket' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:6] : 'stats timeout' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:7] : 'user' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:8] : 'group' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:9] : 'daemon' has no effect in weir, ignored
[WARNING] parsing [weir.cfg:12] : 'ssl-default-bind-ciphers' (OpenSSL cipher strings) has no effect in weir, ignored: rustls uses its own safe TLS 1.2 suites; use 'ssl-default-bind-ciphersuites' to choose suites
[WARNING] parsing [weir.cfg:13] : 'no-tls-tickets' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:19] : 'option dontlognull' has no effect in weir yet, ignored
[WARNING] parsing [weir.cfg:20] : 'option http-use-htx' has no effect in weir, ignored
[WARNING] parsing [weir.cfg:24] : 'errorfile' has no effect in weir yet, ignored
";
    assert_eq!(run.stderr, expected);
    assert_eq!(run.stdout, "Configuration file is valid\n");
    assert_eq!(run.code, Some(0));
}

#[test]
fn binary_reports_every_error_in_line_order() {
    let cfg = "\
global
    nbthread many
    daemon
frontend fe
    bind 127.0.0.1:0 ssl
    default_backend missing
    server s1 127.0.0.1:3000
backend be
    balance fastest
    server s1 127.0.0.1:3000 weight 1000
";
    let run = run_check(cfg);
    let expected = "\
[WARNING] parsing [weir.cfg:3] : 'daemon' has no effect in weir, ignored
[ALERT] parsing [weir.cfg:2] : 'nbthread' : invalid number 'many' (expected an integer between 1 and 4096)
[ALERT] parsing [weir.cfg:5] : 'bind' : 'ssl' needs at least one 'crt <file|dir>'
[ALERT] parsing [weir.cfg:6] : 'default_backend' : unable to find required backend 'missing' for frontend 'fe'
[ALERT] parsing [weir.cfg:7] : 'server' is not allowed in 'frontend' section (allowed in: backend, listen)
[ALERT] parsing [weir.cfg:9] : 'balance' : unknown algorithm 'fastest' (expected roundrobin, static-rr, leastconn, first, source, uri, hdr(<name>), random[(<draws>)] or ewma)
[ALERT] parsing [weir.cfg:10] : 'server' : 'weight' : value '1000' is out of range (expected an integer between 0 and 256)
[ALERT] Fatal errors found in configuration.
";
    assert_eq!(run.stderr, expected);
    assert_eq!(run.stdout, "");
    assert_eq!(run.code, Some(1));
}

#[test]
fn binary_reports_an_unreadable_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(dir.path())
        .args(["-c", "-f", "missing.cfg"])
        .output()
        .expect("run weir");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "[ALERT] cannot read 'missing.cfg': No such file or directory\n[ALERT] Fatal errors found in configuration.\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn binary_expands_the_process_environment() {
    let cfg = "\
frontend fe
    bind \"${WEIR_TEST_HOST}:${WEIR_TEST_PORT}\"
    default_backend be
backend be
    server s1 ${WEIR_TEST_HOST}:${WEIR_TEST_SERVER_PORT-3000}
";
    let run = run_check_with_env(
        cfg,
        &[("WEIR_TEST_HOST", "127.0.0.1"), ("WEIR_TEST_PORT", "0")],
    );
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""));
    let run = run_check(cfg);
    let expected = "\
[ALERT] parsing [weir.cfg:2] : 'bind' : missing port in address ':'
[ALERT] parsing [weir.cfg:5] : 'server' : missing host in address ':3000'
[ALERT] Fatal errors found in configuration.
";
    assert_eq!((run.code, run.stderr.as_str()), (Some(1), expected));
}

/// The binary's allocator options: freed pages go back to the kernel after
/// 0.1 s, not jemalloc's 10 s (what keeps fast streams' peak RSS down,
/// docs/benchmarks.md), and an operator's `_RJEM_MALLOC_CONF` still
/// overrides it. jemalloc's `stats_print` lists the options at exit.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[test]
fn jemalloc_returns_freed_pages_within_100ms_unless_overridden() {
    let run = run_check_with_env(MUST_PASS, &[("_RJEM_MALLOC_CONF", "stats_print:true")]);
    assert_eq!(run.code, Some(0));
    assert!(
        run.stderr.contains("opt.dirty_decay_ms: 100 "),
        "compiled-in option missing: {}",
        run.stderr
    );
    let run = run_check_with_env(
        MUST_PASS,
        &[("_RJEM_MALLOC_CONF", "stats_print:true,dirty_decay_ms:5000")],
    );
    assert_eq!(run.code, Some(0));
    assert!(
        run.stderr.contains("opt.dirty_decay_ms: 5000 "),
        "environment did not override: {}",
        run.stderr
    );
}

#[test]
fn binary_survives_binary_junk() {
    let junk: String = (0u8..=255).map(char::from).cycle().take(5000).collect();
    let run = run_check(&junk);
    assert_eq!(run.code, Some(1));
    assert!(run
        .stderr
        .ends_with("[ALERT] Fatal errors found in configuration.\n"));
}

// ------------------------------------------------------------------ the model

#[test]
fn issue_example_model() {
    let c = ok(MUST_PASS);
    assert_eq!(c.global.maxconn, Some(50000));
    assert_eq!(c.frontends.len(), 1);
    assert_eq!(c.backends.len(), 1);
    let fe = &c.frontends[0];
    assert_eq!(fe.name, "fe_proxy");
    assert_eq!(fe.loc.line, 8);
    assert_eq!(&*fe.loc.file, "weir.cfg");
    assert_eq!(fe.mode, Mode::Http);
    assert_eq!(fe.binds.len(), 1);
    assert_eq!(fe.binds[0].addr, addr("127.0.0.1:3001"));
    assert_eq!(fe.binds[0].proto, Some(Proto::H2));
    assert_eq!(fe.binds[0].loc.line, 9);
    assert_eq!(fe.default_backend.as_deref(), Some("be_servers"));
    assert_eq!(fe.timeouts.connect, Some(Duration::from_secs(10)));
    assert_eq!(fe.timeouts.client, Some(Duration::from_secs(30)));
    assert_eq!(fe.timeouts.server, Some(Duration::from_secs(30)));
    assert_eq!(fe.maxconn, None);
    let be = c.backend("be_servers").expect("backend");
    assert_eq!(be.mode, Mode::Http);
    assert_eq!(be.balance, Balance::RoundRobin);
    assert_eq!(be.timeouts.server, Some(Duration::from_secs(30)));
    let names: Vec<&str> = be.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["server1", "server2"]);
    let s = &be.servers[1];
    assert_eq!(s.addr, addr("127.0.0.1:3002"));
    assert_eq!(s.addr_text, "127.0.0.1:3002");
    assert_eq!(s.proto, Some(Proto::H2));
    assert_eq!(s.maxconn, Some(20));
    assert_eq!(s.weight, 1);
    assert!(!s.disabled && !s.check);
    assert_eq!(s.loc.line, 14);
    assert!(c.frontend("fe_proxy").is_some());
}

#[test]
fn issue_example_has_no_warnings() {
    assert_eq!(warnings(MUST_PASS), Vec::<String>::new());
}

#[test]
fn global_keywords() {
    let c = ok(&with_tail(
        "global\n    maxconn 100\n    nbthread 4\n    log stdout format raw local0\n    log 127.0.0.1 local1\n",
    ));
    assert_eq!(c.global.maxconn, Some(100));
    assert_eq!(c.global.nbthread, Some(4));
    assert_eq!(
        c.global.logs,
        [
            LogTarget::Stdout {
                format: LogFormat::Raw,
                facility: "local0".into()
            },
            LogTarget::Udp {
                addr: addr("127.0.0.1:514"),
                format: LogFormat::Rfc3164,
                facility: "local1".into()
            },
        ]
    );
}

#[test]
fn empty_file_is_valid_with_a_warning() {
    let l = load("").expect("empty file loads");
    assert!(l.config.frontends.is_empty() && l.config.backends.is_empty());
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        ["no frontend or listen section: weir has nothing to listen on"]
    );
    assert_eq!(warnings("# only comments\n\n   \n"), w);
}

#[test]
fn ignored_global_keywords_warn() {
    let cases = [
        ("daemon", "'daemon' has no effect in weir, ignored"),
        (
            "master-worker",
            "'master-worker' has no effect in weir, ignored",
        ),
        ("nbproc 2", "'nbproc' has no effect in weir, ignored"),
        ("cpu-map 1 0", "'cpu-map' has no effect in weir, ignored"),
        ("localpeer me", "'localpeer' has no effect in weir, ignored"),
        (
            "tune.ssl.default-dh-param 2048",
            "'tune.ssl.default-dh-param' has no effect in weir, ignored",
        ),
        ("user haproxy", "'user' has no effect in weir yet, ignored"),
        (
            "group haproxy",
            "'group' has no effect in weir yet, ignored",
        ),
        (
            "chroot /var/empty",
            "'chroot' has no effect in weir yet, ignored",
        ),
        (
            "pidfile /run/weir.pid",
            "'pidfile' has no effect in weir yet, ignored",
        ),
        (
            "ssl-default-bind-ciphers X",
            "'ssl-default-bind-ciphers' (OpenSSL cipher strings) has no effect in weir, ignored: rustls uses its own safe TLS 1.2 suites; use 'ssl-default-bind-ciphersuites' to choose suites",
        ),
        (
            "ssl-default-bind-options no-tls-tickets",
            "'no-tls-tickets' has no effect in weir yet, ignored",
        ),
        (
            "stats socket /run/s mode 600",
            "'stats socket' has no effect in weir yet, ignored",
        ),
        (
            "stats timeout 30s",
            "'stats timeout' has no effect in weir yet, ignored",
        ),
    ];
    for (line, warning) in cases {
        let cfg = with_tail(&format!("global\n    {line}\n"));
        assert_eq!(
            warnings(&cfg),
            [format!("parsing [weir.cfg:2] : {warning}")],
            "{line}"
        );
    }
}

#[test]
fn modes() {
    let cfg = "\
defaults
    mode tcp
frontend fe
    bind :0
    default_backend be
backend be
frontend web
    mode http
    bind :0
    default_backend api
backend api
    mode http
";
    let c = ok(cfg);
    assert_eq!(c.frontend("fe").map(|f| f.mode), Some(Mode::Tcp));
    assert_eq!(c.backend("be").map(|b| b.mode), Some(Mode::Tcp));
    assert_eq!(c.frontend("web").map(|f| f.mode), Some(Mode::Http));
    assert_eq!(c.backend("api").map(|b| b.mode), Some(Mode::Http));
    // HAProxy's default mode is tcp.
    let c = ok(TAIL);
    assert_eq!(c.frontends[0].mode, Mode::Tcp);
}

#[test]
fn every_timeout() {
    let cfg = with_tail(
        "defaults
    timeout connect 1
    timeout client 2ms
    timeout server 3s
    timeout tunnel 4m
    timeout http-request 5h
    timeout http-keep-alive 6d
    timeout queue 7us
    timeout check 8s
    timeout client-fin 9s
    timeout server-fin 10s
",
    );
    let c = ok(&cfg);
    for t in [&c.frontends[0].timeouts, &c.backends[0].timeouts] {
        assert_eq!(t.connect, Some(Duration::from_millis(1)));
        assert_eq!(t.client, Some(Duration::from_millis(2)));
        assert_eq!(t.server, Some(Duration::from_secs(3)));
        assert_eq!(t.tunnel, Some(Duration::from_secs(240)));
        assert_eq!(t.http_request, Some(Duration::from_secs(5 * 3600)));
        assert_eq!(t.http_keep_alive, Some(Duration::from_secs(6 * 86400)));
        assert_eq!(t.queue, Some(Duration::from_micros(7)));
        assert_eq!(t.check, Some(Duration::from_secs(8)));
        assert_eq!(t.client_fin, Some(Duration::from_secs(9)));
        assert_eq!(t.server_fin, Some(Duration::from_secs(10)));
    }
    assert_eq!(warnings(&cfg), Vec::<String>::new());
}

#[test]
fn timeouts_on_the_wrong_side_warn() {
    let cfg = "\
frontend fe
    bind :0
    default_backend be
    timeout server 5s
    timeout client 5s
backend be
    timeout client 5s
    timeout server 5s
    timeout tarpit 1s
";
    assert_eq!(
        warnings(cfg),
        [
            "parsing [weir.cfg:4] : 'timeout server' ignored because frontend 'fe' has no backend capability",
            "parsing [weir.cfg:7] : 'timeout client' ignored because backend 'be' has no frontend capability",
            "parsing [weir.cfg:9] : 'timeout tarpit' has no effect in weir, ignored",
        ]
    );
    let c = ok(cfg);
    assert_eq!(c.frontends[0].timeouts.server, None);
    assert_eq!(c.frontends[0].timeouts.client, Some(Duration::from_secs(5)));
    assert_eq!(c.backends[0].timeouts.client, None);
}

#[test]
fn deprecated_timeout_spellings() {
    let cfg = with_tail("defaults\n    contimeout 1s\n    clitimeout 2s\n    srvtimeout 3s\n");
    assert_eq!(
        warnings(&cfg),
        [
            "parsing [weir.cfg:2] : 'contimeout' : deprecated keyword, use 'timeout connect' instead",
            "parsing [weir.cfg:3] : 'clitimeout' : deprecated keyword, use 'timeout client' instead",
            "parsing [weir.cfg:4] : 'srvtimeout' : deprecated keyword, use 'timeout server' instead",
        ]
    );
    let t = &ok(&cfg).frontends[0].timeouts;
    assert_eq!(
        (t.connect, t.client, t.server),
        (
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(2)),
            Some(Duration::from_secs(3))
        )
    );
}

#[test]
fn maxconn_on_frontends() {
    let c = ok(&with_tail("defaults\n    maxconn 10\n"));
    assert_eq!(c.frontends[0].maxconn, Some(10));
    let c = ok("frontend fe\n    maxconn 7\n    bind :0\n    default_backend be\nbackend be\n");
    assert_eq!(c.frontends[0].maxconn, Some(7));
}

#[test]
fn logs_global_targets_and_no_log() {
    let cfg = "\
global
    log stderr format rfc5424 daemon
defaults
    log global
    log udp@127.0.0.1:1514 len 1024 local2 info
frontend fe
    bind :0
    log stdout local3
    default_backend be
backend be
    no log
    log fd@1 format raw user
";
    let c = ok(cfg);
    let stderr = LogTarget::Stderr {
        format: LogFormat::Rfc5424,
        facility: "daemon".into(),
    };
    let udp = LogTarget::Udp {
        addr: addr("127.0.0.1:1514"),
        format: LogFormat::Rfc3164,
        facility: "local2".into(),
    };
    let stdout = LogTarget::Stdout {
        format: LogFormat::Rfc3164,
        facility: "local3".into(),
    };
    assert_eq!(c.frontends[0].logs, [stderr.clone(), udp, stdout]);
    let raw = LogTarget::Stdout {
        format: LogFormat::Raw,
        facility: "user".into(),
    };
    assert_eq!(c.backends[0].logs, [raw]);
    assert_eq!(
        warnings(cfg),
        [
            "parsing [weir.cfg:5] : 'log' : 'len' is not supported yet, ignored",
            "parsing [weir.cfg:5] : 'log' : log levels are not supported yet, 'info' ignored",
        ]
    );
}

#[test]
fn options_httplog_and_tcplog() {
    let cfg = "\
defaults
    mode http
    option httplog
frontend a
    bind :0
    default_backend be
frontend b
    bind :0
    option tcplog
    default_backend be
frontend c
    bind :0
    no option httplog
    default_backend be
frontend d
    bind :0
    option httplog clf
    default_backend be
backend be
";
    let c = ok(cfg);
    let opts = |n: &str| c.frontend(n).map(|f| (f.options.httplog, f.options.tcplog));
    assert_eq!(opts("a"), Some((true, false)));
    assert_eq!(opts("b"), Some((false, true)));
    assert_eq!(opts("c"), Some((false, false)));
    assert_eq!(opts("d"), Some((true, false)));
    assert_eq!(
        warnings(cfg),
        ["parsing [weir.cfg:17] : 'option httplog clf': the CLF format is not supported yet, the default httplog format is used"]
    );
}

#[test]
fn httplog_in_tcp_mode_falls_back_to_tcplog() {
    let cfg = with_tail("defaults\n    option httplog\n");
    assert_eq!(
        warnings(&cfg),
        ["parsing [weir.cfg:3] : 'option httplog' not usable with frontend 'fe' (needs 'mode http'). Falling back to 'option tcplog'."]
    );
    let o = &ok(&cfg).frontends[0].options;
    assert_eq!((o.httplog, o.tcplog), (false, true));
}

#[test]
fn ignored_options_warn() {
    let cases = [
        (
            "option dontlognull",
            "'option dontlognull' has no effect in weir yet, ignored",
        ),
        (
            "option http-use-htx",
            "'option http-use-htx' has no effect in weir, ignored",
        ),
        (
            "option http-keep-alive",
            "'option http-keep-alive' has no effect in weir, ignored",
        ),
        (
            "option http-server-close",
            "'option http-server-close' has no effect in weir, ignored",
        ),
        (
            "option ssl-hello-chk",
            "'option ssl-hello-chk' has no effect in weir yet, ignored",
        ),
        (
            "errorfile 503 /x.http",
            "'errorfile' has no effect in weir yet, ignored",
        ),
        (
            "http-reuse safe",
            "'http-reuse' has no effect in weir, ignored",
        ),
    ];
    for (line, warning) in cases {
        let cfg = with_tail(&format!("defaults\n    {line}\n"));
        assert_eq!(
            warnings(&cfg),
            [format!("parsing [weir.cfg:2] : {warning}")],
            "{line}"
        );
    }
}

/// `retries`, `retry-on`, `retry-buffer` and `option redispatch` act now:
/// no warning, and the values reach the backend.
#[test]
fn retry_keywords_are_not_ignored() {
    for line in [
        "retries 3",
        "option redispatch",
        "no option redispatch",
        "retry-on conn-failure unavailable",
        "retry-buffer 16k",
    ] {
        let cfg = with_tail(&format!("defaults\n    {line}\n"));
        assert!(warnings(&cfg).is_empty(), "{line}: {:?}", warnings(&cfg));
    }
    let cfg = with_tail("defaults\n    retries 5\n    option redispatch\n");
    let o = &ok(&cfg).backends[0].options;
    assert_eq!(o.retries, Some(5));
    assert!(o.redispatch);
}

#[test]
fn options_on_the_wrong_side_warn_like_haproxy() {
    let cfg = "\
frontend fe
    bind :0
    option redispatch
    default_backend be
backend be
    option httplog
";
    assert_eq!(
        warnings(cfg),
        [
            "parsing [weir.cfg:3] : 'option redispatch' ignored because frontend 'fe' has no backend capability",
            "parsing [weir.cfg:6] : 'option httplog' ignored because backend 'be' has no frontend capability",
        ]
    );
    assert!(!ok(cfg).backends[0].options.httplog);
}

#[test]
fn use_backend_rules_keep_their_conditions() {
    let cfg = "\
frontend fe
    bind :0
    acl is_admin src 10.0.0.0/8
    acl is_dynamic path_end .php
    use_backend api if { path_beg /api } || is_admin
    use_backend static unless !is_dynamic
    use_backend web
backend api
backend static
backend web
";
    let c = ok(cfg);
    let rules = &c.frontends[0].use_backends;
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].backend, "api");
    assert!(rules[0].cond.is_some() && rules[1].cond.is_some());
    assert_eq!(rules[0].loc.line, 5);
    assert_eq!(rules[2].backend, "web");
    assert!(rules[2].cond.is_none());
    assert_eq!(c.frontends[0].default_backend, None);
    assert_eq!(warnings(cfg), Vec::<String>::new());
}

#[test]
fn bind_forms() {
    let cfg = "\
frontend fe
    bind 127.0.0.1:3001
    bind :3002 proto h1
    bind *:3003
    bind 0.0.0.0:0
    bind [::1]:3004 proto h2
    bind ipv6@:3005
    bind ipv4@127.0.0.1:3006,127.0.0.1:3007
    default_backend be
backend be
";
    let c = ok(cfg);
    let got: Vec<(SocketAddr, Option<Proto>, u32)> = c.frontends[0]
        .binds
        .iter()
        .map(|b| (b.addr, b.proto, b.loc.line))
        .collect();
    assert_eq!(
        got,
        [
            (addr("127.0.0.1:3001"), None, 2),
            (addr("0.0.0.0:3002"), Some(Proto::H1), 3),
            (addr("0.0.0.0:3003"), None, 4),
            (addr("0.0.0.0:0"), None, 5),
            (addr("[::1]:3004"), Some(Proto::H2), 6),
            (addr("[::]:3005"), None, 7),
            (addr("127.0.0.1:3006"), None, 8),
            (addr("127.0.0.1:3007"), None, 8),
        ]
    );
}

#[test]
fn server_options() {
    let cfg = "\
backend be
    server a 127.0.0.1:1
    server b 127.0.0.1:2 weight 0 maxconn 0 disabled proto h1
    server c 127.0.0.1:3 weight 256 disabled enabled check
    server d localhost:4 check no-check maxconn 100
frontend fe
    bind :0
    default_backend be
";
    let c = ok(cfg);
    let s = &c.backends[0].servers;
    assert_eq!(
        (
            s[0].weight,
            s[0].maxconn,
            s[0].disabled,
            s[0].check,
            s[0].proto
        ),
        (1, None, false, false, None)
    );
    assert_eq!(
        (s[1].weight, s[1].maxconn, s[1].disabled, s[1].proto),
        (0, None, true, Some(Proto::H1))
    );
    assert_eq!((s[2].weight, s[2].disabled, s[2].check), (256, false, true));
    assert_eq!((s[3].maxconn, s[3].check), (Some(100), false));
    assert_eq!(s[3].addr.port(), 4);
    assert!(s[3].addr.ip().is_loopback());
    assert_eq!(s[3].addr_text, "localhost:4");
}

#[test]
fn health_check_parameters_are_checked_and_stored() {
    let cfg = with_tail("backend b2\n    server s 127.0.0.1:1 check inter 2s fastinter 1s downinter 5s rise 2 fall 3\n");
    assert!(warnings(&cfg).is_empty(), "{:?}", warnings(&cfg));
    assert!(ok(&cfg).backend("b2").is_some_and(|b| b.servers[0].check
        && b.servers[0].check_params.fastinter == Some(std::time::Duration::from_secs(1))));
    assert_eq!(
        error(&with_tail("backend b2\n    server s 127.0.0.1:1 check inter soon\n")),
        "parsing [weir.cfg:2] : 'server' : 'inter' : invalid time value 'soon' (expected a number with an optional unit among us, ms, s, m, h, d; a bare number is in milliseconds)"
    );
    assert_eq!(
        error(&with_tail("backend b2\n    server s 127.0.0.1:1 rise 0\n")),
        "parsing [weir.cfg:2] : 'server' : 'rise' : value '0' is out of range (expected an integer between 1 and 4294967295)"
    );
}

#[test]
fn backend_without_servers_is_fine() {
    let c = ok("frontend fe\n    bind :0\n    default_backend be\nbackend be\n");
    assert!(c.backends[0].servers.is_empty());
}

// ------------------------------------------------------------------ defaults and listen

#[test]
fn proxies_inherit_the_last_defaults_section() {
    let cfg = "\
defaults
    mode http
    timeout client 1s
frontend a
    bind :0
    default_backend ba
backend ba
defaults
    timeout client 2s
frontend b
    bind :0
    default_backend bb
backend bb
";
    let c = ok(cfg);
    let a = c.frontend("a").expect("a");
    assert_eq!(
        (a.mode, a.timeouts.client),
        (Mode::Http, Some(Duration::from_secs(1)))
    );
    // A new defaults section starts from scratch: mode is back to tcp.
    let b = c.frontend("b").expect("b");
    assert_eq!(
        (b.mode, b.timeouts.client),
        (Mode::Tcp, Some(Duration::from_secs(2)))
    );
    assert_eq!(c.backend("bb").map(|b| b.mode), Some(Mode::Tcp));
}

#[test]
fn named_defaults_and_from() {
    let cfg = "\
defaults base
    mode http
    timeout connect 1s
    timeout server 1s
defaults slow from base
    timeout server 9s
defaults other
    timeout connect 7s
frontend fe from slow
    bind :0
    default_backend be
backend be from base
    timeout connect 3s
backend last
    mode http
frontend fe2
    mode http
    bind :0
    default_backend last
";
    let c = ok(cfg);
    let fe = c.frontend("fe").expect("fe");
    assert_eq!(fe.mode, Mode::Http);
    assert_eq!(fe.timeouts.connect, Some(Duration::from_secs(1)));
    assert_eq!(fe.timeouts.server, Some(Duration::from_secs(9)));
    let be = c.backend("be").expect("be");
    assert_eq!(be.timeouts.connect, Some(Duration::from_secs(3)));
    assert_eq!(be.timeouts.server, Some(Duration::from_secs(1)));
    // Without `from`: the last defaults section, even a named one.
    let last = c.backend("last").expect("last");
    assert_eq!(last.timeouts.connect, Some(Duration::from_secs(7)));
    assert_eq!(last.timeouts.server, None);
}

#[test]
fn defaults_from_without_a_name() {
    let cfg =
        with_tail("defaults base\n    maxconn 5\ndefaults from base\n    timeout client 1s\n");
    let fe = &ok(&cfg).frontends[0];
    assert_eq!(
        (fe.maxconn, fe.timeouts.client),
        (Some(5), Some(Duration::from_secs(1)))
    );
}

#[test]
fn default_backend_can_come_from_defaults() {
    let cfg = "\
defaults
    default_backend be
frontend fe
    bind :0
frontend fe2
    bind :0
    default_backend other
backend be
backend other
";
    let c = ok(cfg);
    assert_eq!(
        c.frontend("fe").and_then(|f| f.default_backend.as_deref()),
        Some("be")
    );
    assert_eq!(
        c.frontend("fe2").and_then(|f| f.default_backend.as_deref()),
        Some("other")
    );
}

#[test]
fn defaults_errors() {
    assert_eq!(
        error(&with_tail(
            "frontend x from nope\n    bind :0\n    default_backend be\n"
        )),
        "parsing [weir.cfg:1] : defaults section 'nope' not found for frontend 'x'"
    );
    // Only defaults sections declared before count.
    assert_eq!(
        error(&format!("{TAIL}backend b2 from later\ndefaults later\n")),
        "parsing [weir.cfg:6] : defaults section 'later' not found for backend 'b2'"
    );
    assert_eq!(
        error(&with_tail("defaults d\ndefaults d\n")),
        "parsing [weir.cfg:2] : defaults 'd' has the same name as defaults 'd' declared at weir.cfg:1"
    );
    assert_eq!(
        error(&with_tail("defaults x from\n")),
        "parsing [weir.cfg:1] : missing defaults section name after 'from'"
    );
    assert_eq!(
        error(&with_tail("defaults a b\n")),
        "parsing [weir.cfg:1] : 'defaults' cannot handle unexpected argument 'b'"
    );
}

#[test]
fn listen_is_split_into_frontend_and_backend() {
    let cfg = "\
defaults
    timeout client 1s
    timeout server 2s
listen grpc
    mode http
    bind 127.0.0.1:0 proto h2
    maxconn 10
    option httplog
    balance roundrobin
    server s1 127.0.0.1:3000 proto h2
";
    let c = ok(cfg);
    assert_eq!((c.frontends.len(), c.backends.len()), (1, 1));
    let fe = &c.frontends[0];
    assert_eq!(fe.name, "grpc");
    assert_eq!(fe.default_backend.as_deref(), Some("grpc"));
    assert_eq!(
        (fe.mode, fe.maxconn, fe.options.httplog),
        (Mode::Http, Some(10), true)
    );
    assert_eq!(fe.binds.len(), 1);
    assert_eq!(fe.timeouts.client, Some(Duration::from_secs(1)));
    let be = &c.backends[0];
    assert_eq!(
        (be.name.as_str(), be.mode, be.loc.line),
        ("grpc", Mode::Http, 4)
    );
    assert_eq!(be.servers.len(), 1);
    assert_eq!(be.timeouts.server, Some(Duration::from_secs(2)));
    assert_eq!(warnings(cfg), Vec::<String>::new());
}

#[test]
fn listen_backend_can_be_used_by_other_frontends() {
    let cfg = "\
listen l
    bind :0
    server s 127.0.0.1:1
frontend fe
    bind :0
    use_backend l
";
    assert_eq!(
        ok(cfg)
            .frontend("fe")
            .map(|f| f.use_backends[0].backend.clone()),
        Some("l".into())
    );
}

#[test]
fn listen_with_another_default_backend_warns() {
    let cfg = "\
listen l
    bind :0
    default_backend be
    server s 127.0.0.1:1
backend be
";
    assert_eq!(
        warnings(cfg),
        ["parsing [weir.cfg:1] : In proxy 'l', the 'default_backend' rule always has precedence over the servers, which will never be used."]
    );
    assert_eq!(ok(cfg).frontends[0].default_backend.as_deref(), Some("be"));
}

#[test]
fn frontend_and_backend_may_share_a_name() {
    let c = ok("frontend app\n    bind :0\n    default_backend app\nbackend app\n");
    assert_eq!(c.frontends[0].default_backend.as_deref(), Some("app"));
}

#[test]
fn frontend_without_backend_warns() {
    assert_eq!(
        warnings("frontend fe\n    bind :0\n"),
        ["parsing [weir.cfg:1] : frontend 'fe' has no 'default_backend' and no 'use_backend' rule: it has nowhere to send traffic"]
    );
}

// ------------------------------------------------------------------ lexing

#[test]
fn quoting_and_env_expansion() {
    let env = |name: &str| match name {
        "HOST" => Some("127.0.0.1".to_string()),
        "PORT" => Some("3001".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let cfg = r#"
global
    log "${HOST}:${SYSLOG_PORT-1514}" local0 # comment
frontend "f"'e'
    bind ${HOST}:${PORT} ${UNSET} ${EMPTY}
    bind ":$PORT"
    use_backend b if { hdr(x-tag) /a\#b }
backend b
    server 's1' "localhost:3000" weight "0"
"#;
    let c = match config::parse_str_with_env("weir.cfg", cfg, &env) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        c.global.logs,
        [LogTarget::Udp {
            addr: addr("127.0.0.1:1514"),
            format: LogFormat::Rfc3164,
            facility: "local0".into()
        }]
    );
    let fe = &c.frontends[0];
    assert_eq!(fe.name, "fe");
    assert_eq!(fe.binds[0].addr, addr("127.0.0.1:3001"));
    assert_eq!(fe.binds[1].addr, addr("0.0.0.0:3001"));
    // `\#` is a literal '#': the condition matches the value "/a#b".
    let cond = fe.use_backends[0].cond.as_ref().expect("condition");
    let matches = |value: &str| {
        let uri = http::Uri::from_static("/");
        let mut headers = http::HeaderMap::new();
        headers.insert("x-tag", value.parse().unwrap());
        let input = weir::acl::Input {
            method: &http::Method::GET,
            uri: &uri,
            version: http::Version::HTTP_2,
            headers: &headers,
            src: addr("127.0.0.1:1"),
            dst: addr("127.0.0.1:2"),
            frontend: "fe",
            backend: None,
            tls: None,
            res: None,
            track: None,
        };
        cond.eval(&input)
    };
    assert!(matches("/a#b"));
    assert!(!matches("/a"));
    assert_eq!(c.backends[0].servers[0].weight, 0);
}

#[test]
fn single_quotes_do_not_expand() {
    let env = |_: &str| Some("3001".to_string());
    let cfg = "frontend fe\n    bind ':${PORT}'\n";
    let Err(e) = config::parse_str_with_env("weir.cfg", cfg, &env) else {
        panic!("loaded")
    };
    assert_eq!(
        e.to_string(),
        "parsing [weir.cfg:2] : 'bind' : invalid port '${PORT}' in ':${PORT}' (expected 1-65535, or 0 for any free port)"
    );
}

#[test]
fn lexer_errors() {
    assert_eq!(
        errors(&with_tail(
            "global\n    log \"stdout local0\n    maxconn x'\n"
        )),
        [
            "parsing [weir.cfg:2] : unmatched quote at position 9",
            "parsing [weir.cfg:3] : unmatched quote at position 14",
        ]
    );
    assert_eq!(
        error(&with_tail("global\n    maxconn ${X\n")),
        "parsing [weir.cfg:2] : unmatched brace in environment variable name at position 13"
    );
    assert_eq!(
        error(&with_tail("global\n    maxconn \"\\xZZ\"\n")),
        "parsing [weir.cfg:2] : truncated or invalid hexadecimal sequence at position 14"
    );
}

// ------------------------------------------------------------------ errors

#[test]
fn unknown_keywords() {
    assert_eq!(
        error(&with_tail("backend b2\n    balanse roundrobin\n")),
        "parsing [weir.cfg:2] : unknown keyword 'balanse' in 'backend' section; did you mean 'balance' maybe ?"
    );
    assert_eq!(
        error(&with_tail("global\n    frobnicate\n")),
        "parsing [weir.cfg:2] : unknown keyword 'frobnicate' in 'global' section"
    );
    assert_eq!(
        error(&with_tail("global\nfrontned x\n")),
        "parsing [weir.cfg:2] : unknown keyword 'frontned' in 'global' section; did you mean 'frontend' maybe ?"
    );
    assert_eq!(
        error(&with_tail("defaults\n    defualt_backend be\n")),
        "parsing [weir.cfg:2] : unknown keyword 'defualt_backend' in 'defaults' section; did you mean 'default_backend' maybe ?"
    );
}

#[test]
fn keywords_before_any_section() {
    assert_eq!(
        error(&with_tail("maxconn 10\n")),
        "parsing [weir.cfg:1] : unknown keyword 'maxconn' out of section (a section such as 'global' or 'frontend <name>' must come first)"
    );
    assert_eq!(
        error(&with_tail("{\n")),
        "parsing [weir.cfg:1] : unknown keyword '{' out of section (a section such as 'global' or 'frontend <name>' must come first)"
    );
    assert_eq!(
        error(&with_tail("gloabl\n")),
        "parsing [weir.cfg:1] : unknown keyword 'gloabl' out of section; did you mean 'global' maybe ? (a section such as 'global' or 'frontend <name>' must come first)"
    );
}

#[test]
fn keywords_in_the_wrong_section() {
    let cases = [
        ("frontend f2\n    bind :0\n    server s 127.0.0.1:1\n", 3, "'server' is not allowed in 'frontend' section (allowed in: backend, listen)"),
        ("backend b2\n    bind :80\n", 2, "'bind' is not allowed in 'backend' section (allowed in: frontend, listen)"),
        ("backend b2\n    maxconn 10\n", 2, "'maxconn' is not allowed in 'backend' section (allowed in: global, defaults, frontend, listen)"),
        ("backend b2\n    default_backend be\n", 2, "'default_backend' is not allowed in 'backend' section (allowed in: defaults, frontend, listen)"),
        ("defaults\n    use_backend be\n", 2, "'use_backend' is not allowed in 'defaults' section (allowed in: frontend, listen)"),
        ("defaults\n    server s 127.0.0.1:1\n", 2, "'server' is not allowed in 'defaults' section (allowed in: backend, listen)"),
        ("frontend f2\n    bind :0\n    balance roundrobin\n", 3, "'balance' is not allowed in 'frontend' section (allowed in: defaults, backend, listen)"),
        ("global\n    mode http\n", 2, "'mode' is not allowed in 'global' section (allowed in: defaults, frontend, backend, listen)"),
        ("global\n    timeout client 1s\n", 2, "'timeout' is not allowed in 'global' section (allowed in: defaults, frontend, backend, listen)"),
        ("defaults\n    daemon\n", 2, "'daemon' is not allowed in 'defaults' section (allowed in: global)"),
        ("defaults\n    nbthread 2\n", 2, "'nbthread' is not allowed in 'defaults' section (allowed in: global)"),
    ];
    for (head, line, message) in cases {
        let mut errs = errors(&with_tail(head));
        errs.retain(|e| !e.contains("has no 'bind'"));
        assert_eq!(
            errs,
            [format!("parsing [weir.cfg:{line}] : {message}")],
            "{head}"
        );
    }
}

#[test]
fn unsupported_keywords_and_sections() {
    assert_eq!(
        error(&with_tail("backend b2\n    redirect prefix /x\n")),
        "parsing [weir.cfg:2] : 'redirect' is not supported yet"
    );
    assert_eq!(
        error(&with_tail("defaults\n    tcp-request content accept\n")),
        "parsing [weir.cfg:2] : 'tcp-request' is not supported yet"
    );
    assert_eq!(
        error(&with_tail("userlist admins\n    user a password x\n    group g\n")),
        "parsing [weir.cfg:1] : 'userlist' sections are not supported yet (weir knows global, defaults, frontend, backend and listen)"
    );
    assert_eq!(
        errors(&with_tail(".if defined(X)\nglobal\n.endif\n")),
        [
            "parsing [weir.cfg:1] : '.if' : conditional blocks are not supported yet",
            "parsing [weir.cfg:3] : '.endif' : conditional blocks are not supported yet",
        ]
    );
}

#[test]
fn section_headers() {
    assert_eq!(
        error(&with_tail("backend\n")),
        "parsing [weir.cfg:1] : 'backend' expects <name> as an argument"
    );
    assert_eq!(
        error(&with_tail(
            "frontend f2 :80\n    bind :0\n    default_backend be\n"
        )),
        "parsing [weir.cfg:1] : please use the 'bind' keyword for listening addresses"
    );
    assert_eq!(
        error(&with_tail("backend b2 extra\n")),
        "parsing [weir.cfg:1] : 'backend' cannot handle unexpected argument 'extra'"
    );
    assert_eq!(
        error(&with_tail("global 1\n")),
        "parsing [weir.cfg:1] : 'global' cannot handle unexpected argument '1'"
    );
    assert_eq!(
        error(&with_tail("backend b/2\n")),
        "parsing [weir.cfg:1] : character '/' is not permitted in backend name 'b/2'"
    );
}

#[test]
fn duplicate_names() {
    assert_eq!(
        error(&format!("{TAIL}backend be\n")),
        "parsing [weir.cfg:6] : backend 'be' has the same name as backend 'be' declared at weir.cfg:4"
    );
    assert_eq!(
        error(&format!("{TAIL}frontend fe\n    bind :0\n    default_backend be\n")),
        "parsing [weir.cfg:6] : frontend 'fe' has the same name as frontend 'fe' declared at weir.cfg:1"
    );
    assert_eq!(
        error(&format!("{TAIL}listen be\n    bind :0\n")),
        "parsing [weir.cfg:6] : listen 'be' has the same name as backend 'be' declared at weir.cfg:4"
    );
    assert_eq!(
        error(&with_tail("backend b2\n    server s 127.0.0.1:1\n    server s 127.0.0.1:2\n")),
        "parsing [weir.cfg:3] : 'server' : server name 's' is already used in backend 'b2' (at weir.cfg:2)"
    );
    // The same server name in two backends is fine.
    ok(&with_tail("backend b2\n    server s1 127.0.0.1:1\n"));
}

#[test]
fn missing_and_extra_arguments() {
    let cases = [
        ("global\n    maxconn", "'maxconn' : missing <number> (expected 'maxconn <number>')"),
        ("global\n    maxconn 1 2", "'maxconn' : unexpected argument '2' (expected 'maxconn <number>')"),
        ("global\n    nbthread", "'nbthread' : missing <number> (expected 'nbthread <number>')"),
        ("defaults\n    mode", "'mode' : missing mode name (expected 'mode { http | tcp }')"),
        ("defaults\n    mode http tcp", "'mode' : unexpected argument 'tcp' (expected 'mode { http | tcp }')"),
        ("defaults\n    timeout", "'timeout' : missing <event> (expected 'timeout <event> <time>')"),
        ("defaults\n    timeout client", "'timeout client' : missing <time> (expected 'timeout <event> <time>')"),
        ("defaults\n    timeout client 1s 2s", "'timeout client' : unexpected argument '2s' (expected 'timeout <event> <time>')"),
        ("defaults\n    balance", "'balance' : missing <algorithm> (expected 'balance roundrobin')"),
        ("defaults\n    balance roundrobin x", "'balance' : unexpected argument 'x' (expected 'balance roundrobin')"),
        ("defaults\n    default_backend", "'default_backend' : missing <backend> (expected 'default_backend <backend>')"),
        ("defaults\n    default_backend a b", "'default_backend' : unexpected argument 'b' (expected 'default_backend <backend>')"),
        ("defaults\n    option", "'option' : missing <name> (expected 'option <name> [<arguments>]')"),
        ("defaults\n    option dontlognull x", "'option' : unexpected argument 'x' (expected 'option <name> [<arguments>]')"),
        ("defaults\n    option httplog json", "'option' : unexpected argument 'json' (expected 'option httplog [clf]')"),
        ("defaults\n    retries", "'retries' : missing <number> (expected 'retries <number>')"),
        ("defaults\n    no log now", "'log' : unexpected argument 'now' (expected 'log { global | <target> [len <length>] [format <format>] <facility> [<level> [<minlevel>]] }')"),
        ("defaults\n    log", "'log' : missing <target> (expected 'log { global | <target> [len <length>] [format <format>] <facility> [<level> [<minlevel>]] }')"),
        ("defaults\n    log stdout", "'log' : missing <facility> (expected 'log { global | <target> [len <length>] [format <format>] <facility> [<level> [<minlevel>]] }')"),
        ("defaults\n    log stdout local0 info debug x", "'log' : unexpected argument 'x' (expected 'log { global | <target> [len <length>] [format <format>] <facility> [<level> [<minlevel>]] }')"),
        ("frontend f2\n    bind", "'bind' : missing <address>:<port> (expected 'bind <address>:<port>[,...] [proto h2|h1]')"),
        ("frontend f2\n    bind :0 proto", "'bind' : 'proto' : missing value (expected h2 or h1)"),
        ("frontend f2\n    bind :0\n    use_backend", "'use_backend' : missing <backend> (expected 'use_backend <backend> [{if | unless} <condition>]')"),
        ("frontend f2\n    bind :0\n    use_backend be if", "'use_backend' : missing condition after 'if'"),
        ("frontend f2\n    bind :0\n    use_backend be when x", "'use_backend' : unexpected argument 'when' (expected 'if' or 'unless' followed by a condition)"),
        ("backend b2\n    server", "'server' : missing <name> (expected 'server <name> <address>:<port> [<option> ...]')"),
        ("backend b2\n    server s", "'server' : missing <address>:<port> (expected 'server <name> <address>:<port> [<option> ...]')"),
        ("backend b2\n    server s 127.0.0.1:1 weight", "'server' : 'weight' : missing value (expected 0-256)"),
        ("global\n    stats", "'stats' : missing <subcommand> (expected 'stats <subcommand> ...')"),
    ];
    for (head, message) in cases {
        let line = head.lines().count();
        let mut errs = errors(&with_tail(&format!("{head}\n")));
        errs.retain(|e| !e.contains("has no 'bind'"));
        assert_eq!(
            errs,
            [format!("parsing [weir.cfg:{line}] : {message}")],
            "{head}"
        );
    }
}

#[test]
fn bad_values() {
    let cases = [
        ("global\n    maxconn 0", "'maxconn' : value '0' is out of range (expected an integer between 1 and 4294967295)"),
        ("global\n    maxconn 99999999999999999999999", "'maxconn' : value '99999999999999999999999' is out of range (expected an integer between 1 and 4294967295)"),
        ("global\n    maxconn -1", "'maxconn' : invalid number '-1' (expected an integer between 1 and 4294967295)"),
        ("global\n    nbthread 5000", "'nbthread' : value '5000' is out of range (expected an integer between 1 and 4096)"),
        ("defaults\n    mode health", "'mode' : unknown mode 'health' (expected http or tcp)"),
        ("defaults\n    timeout client 10x", "'timeout client' : invalid time value '10x' (expected a number with an optional unit among us, ms, s, m, h, d; a bare number is in milliseconds)"),
        ("defaults\n    timeout client 1.5s", "'timeout client' : invalid time value '1.5s' (expected a number with an optional unit among us, ms, s, m, h, d; a bare number is in milliseconds)"),
        ("defaults\n    timeout client 30d", "'timeout client' : time value '30d' is too large (the maximum is 2147483647ms, about 24.8 days)"),
        ("defaults\n    timeout conect 1s", "'timeout' : unknown timeout 'conect'; did you mean 'connect' maybe ? (expected one of client, client-fin, http-request, http-keep-alive, connect, server, server-fin, queue, tunnel, check, tarpit)"),
        ("defaults\n    balance fastest", "'balance' : unknown algorithm 'fastest' (expected roundrobin, static-rr, leastconn, first, source, uri, hdr(<name>), random[(<draws>)] or ewma)"),
        ("defaults\n    balance url_param(id)", "'balance' : algorithm 'url_param(id)' is not supported yet (expected roundrobin, static-rr, leastconn, first, source, uri, hdr(<name>), random[(<draws>)] or ewma)"),
        ("defaults\n    option htplog", "'option' : unknown option 'htplog'; did you mean 'httplog' maybe ?"),
        ("defaults\n    option zzzz", "'option' : unknown option 'zzzz'"),
        ("defaults\n    log stdout local9", "'log' : unknown facility 'local9'; did you mean 'local0' maybe ? (expected one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, auth2, ftp, ntp, audit, alert, cron2, local0, local1, local2, local3, local4, local5, local6, local7)"),
        ("defaults\n    log stdout local0 loud", "'log' : unknown log level 'loud' (expected one of emerg, alert, crit, err, warning, notice, info, debug)"),
        ("defaults\n    log stdout format json local0", "'log' : unknown log format 'json' (expected raw, rfc3164 or rfc5424)"),
        ("defaults\n    log stdout format short local0", "'log' : log format 'short' is not supported yet (expected raw, rfc3164 or rfc5424)"),
        ("defaults\n    log stdout len 10 local0", "'log' : 'len' : value '10' is out of range (expected an integer between 80 and 65535)"),
        ("defaults\n    log ring@buf local0", "'log' : 'ring@' addresses are not supported yet"),
        ("global\n    log global", "'log' : 'log global' is only meaningful in a proxy section"),
    ];
    for (head, message) in cases {
        let line = head.lines().count();
        let mut errs = errors(&with_tail(&format!("{head}\n")));
        errs.retain(|e| !e.contains("has no 'bind'"));
        assert_eq!(
            errs,
            [format!("parsing [weir.cfg:{line}] : {message}")],
            "{head}"
        );
    }
}

#[test]
fn bad_binds() {
    let cases = [
        ("bind 127.0.0.1", "missing port in address '127.0.0.1' (expected <address>:<port>)"),
        ("bind 127.0.0.1:65536", "port 65536 is out of range in '127.0.0.1:65536' (expected 1-65535, or 0 for any free port)"),
        ("bind :http", "invalid port 'http' in ':http' (expected 1-65535, or 0 for any free port)"),
        ("bind :80-81", "port ranges are not supported (':80-81')"),
        ("bind 1.2.3.4.5:80", "could not resolve address '1.2.3.4.5:80'"),
        ("bind [::1:80", "invalid address '[::1:80' (missing ']')"),
        ("bind /run/weir.sock", "unix socket addresses are not supported yet ('/run/weir.sock')"),
        ("bind unix@/run/weir.sock", "'unix@' addresses are not supported yet"),
        ("bind :0 proto h3", "'proto' : unknown proto 'h3' (expected h2 or h1)"),
        ("bind :0 ssl crt /nonexistent/weir.pem", "unable to load SSL certificate file '/nonexistent/weir.pem': No such file or directory (os error 2)"),
        ("bind :0 alpn h2", "TLS options (crt, alpn, ca-file, verify, ...) need 'ssl' on the same line"),
        ("bind :0 ssl", "'ssl' needs at least one 'crt <file|dir>'"),
        ("bind :0 ssl crt /x ssl-min-ver TLSv1.1", "'ssl-min-ver' : 'TLSv1.1' is not supported (weir speaks TLSv1.2 and TLSv1.3)"),
        ("bind :0 ssl crt /x verify sometimes", "'verify' : unknown value 'sometimes' (expected none, optional or required)"),
        ("bind :0 crt-list /etc/list", "'crt-list' is not supported yet"),
        ("bind :0 prot h2", "unknown option 'prot'; did you mean 'proto' maybe ?"),
    ];
    for (line, message) in cases {
        let cfg = format!("frontend f2\n    {line}\n    default_backend be\n{TAIL}");
        let mut errs = errors(&cfg);
        errs.retain(|e| !e.contains("has no 'bind'"));
        assert_eq!(
            errs,
            [format!("parsing [weir.cfg:2] : 'bind' : {message}")],
            "{line}"
        );
    }
}

#[test]
fn bad_servers() {
    let cases = [
        ("server s 127.0.0.1", "missing port in address '127.0.0.1' (expected <address>:<port>)"),
        ("server s 127.0.0.1:0", "port 0 is out of range in '127.0.0.1:0' (expected 1-65535)"),
        ("server s :3000", "missing host in address ':3000'"),
        ("server s no-such-host.invalid:3000", "could not resolve address 'no-such-host.invalid:3000'"),
        ("server s 127.0.0.1:1 weight 257", "'weight' : value '257' is out of range (expected an integer between 0 and 256)"),
        ("server s 127.0.0.1:1 maxconn many", "'maxconn' : invalid number 'many' (expected an integer between 0 and 4294967295)"),
        ("server s 127.0.0.1:1 proto h3", "'proto' : unknown proto 'h3' (expected h2 or h1)"),
        ("server s 127.0.0.1:1 agent-check", "'agent-check' is not supported yet"),
        ("server s 127.0.0.1:1 ssl", "verify is enabled by default but no CA file specified; set 'ca-file <file>' to check the server certificate, or 'verify none' to skip the check"),
        ("server s 127.0.0.1:1 ssl verify maybe", "'verify' : unknown value 'maybe' (expected none or required)"),
        ("server s 127.0.0.1:1 ssl ca-file /nonexistent/ca.pem", "unable to load CA file '/nonexistent/ca.pem': No such file or directory (os error 2)"),
        ("server s 127.0.0.1:1 check-alpn h2", "'check-alpn' is not supported yet"),
        ("server s 127.0.0.1:1 wieght 2", "unknown option 'wieght'; did you mean 'weight' maybe ?"),
        ("server s 127.0.0.1:1 zzz", "unknown option 'zzz' (expected 'proto', 'weight', 'slowstart', 'maxconn', 'maxqueue', 'disabled', 'enabled', 'check', 'no-check', 'inter', 'fastinter', 'downinter', 'rise', 'fall', 'port', 'addr', 'check-proto', 'backup', 'no-backup', 'ssl', 'no-ssl', 'verify', 'ca-file', 'crt', 'alpn', 'sni', 'verifyhost', 'check-ssl', 'no-check-ssl', 'check-sni', 'ssl-min-ver', 'ssl-max-ver', 'ciphersuites', 'no-sslv3', 'no-tlsv10', 'no-tlsv11', 'no-tlsv12', 'no-tlsv13', 'force-tlsv12', 'force-tlsv13', 'observe', 'error-limit', 'on-error')"),
        ("server s/1 127.0.0.1:1", "character '/' is not permitted in server name 's/1'"),
    ];
    for (line, message) in cases {
        let cfg = format!("backend b2\n    {line}\n{TAIL}");
        assert_eq!(
            errors(&cfg),
            [format!("parsing [weir.cfg:2] : 'server' : {message}")],
            "{line}"
        );
    }
}

#[test]
fn negation_is_only_for_option_log_and_busy_polling() {
    assert_eq!(
        error(&with_tail("defaults\n    no mode http\n")),
        "parsing [weir.cfg:2] : 'no mode' : the 'no' prefix is only supported by 'option', 'log' and 'busy-polling'"
    );
    assert_eq!(
        error(&with_tail("defaults\n    no\n")),
        "parsing [weir.cfg:2] : 'no' : missing keyword after 'no'"
    );
    assert_eq!(
        error(&with_tail("global\n    no log\n")),
        "parsing [weir.cfg:2] : 'no log' : the 'no' prefix is only supported by 'option', 'log' and 'busy-polling'"
    );
}

#[test]
fn busy_polling_is_a_global_flag() {
    assert!(!ok(TAIL).global.busy_polling, "off by default");
    assert!(
        ok(&with_tail("global\n    busy-polling\n"))
            .global
            .busy_polling
    );
    assert!(
        !ok(&with_tail(
            "global\n    busy-polling\n    no busy-polling\n"
        ))
        .global
        .busy_polling,
        "the last line wins"
    );
    assert_eq!(
        error(&with_tail("global\n    busy-polling on\n")),
        "parsing [weir.cfg:2] : 'busy-polling' : unexpected argument 'on' (expected '[no] busy-polling')"
    );
    assert_eq!(
        error(&with_tail("defaults\n    busy-polling\n")),
        "parsing [weir.cfg:2] : 'busy-polling' is not allowed in 'defaults' section (allowed in: global)"
    );
}

#[test]
fn missing_backends() {
    assert_eq!(
        error("frontend fe\n    bind :0\n    default_backend be_server\nbackend be_servers\n"),
        "parsing [weir.cfg:3] : 'default_backend' : unable to find required backend 'be_server' for frontend 'fe'; did you mean 'be_servers' maybe ?"
    );
    assert_eq!(
        error("frontend fe\n    bind :0\n    use_backend nope if { path / }\n"),
        "parsing [weir.cfg:3] : 'use_backend' : unable to find required backend 'nope' for frontend 'fe'"
    );
    // A frontend is not a backend.
    assert_eq!(
        errors("frontend fe\n    bind :0\n    default_backend other\nfrontend other\n    bind :0\n    default_backend fe\n"),
        [
            "parsing [weir.cfg:3] : 'default_backend' : unable to find required backend 'other' for frontend 'fe'",
            "parsing [weir.cfg:6] : 'default_backend' : unable to find required backend 'fe' for frontend 'other'",
        ]
    );
    // Reported at the line of the reference, even when inherited.
    let errs = errors(
        "defaults\n    default_backend gone\nfrontend a\n    bind :0\nfrontend b\n    bind :0\n",
    );
    assert_eq!(
        errs,
        [
            "parsing [weir.cfg:2] : 'default_backend' : unable to find required backend 'gone' for frontend 'a'",
            "parsing [weir.cfg:2] : 'default_backend' : unable to find required backend 'gone' for frontend 'b'",
        ]
    );
}

#[test]
fn mode_mismatch() {
    let cfg = "\
frontend fe
    mode http
    bind :0
    default_backend be
    use_backend be if TRUE
listen l
    bind :0
    use_backend be
backend be
    mode tcp
";
    assert_eq!(
        errors(cfg),
        [
            "parsing [weir.cfg:4] : 'default_backend' : http frontend 'fe' tries to use incompatible tcp backend 'be' (declared at weir.cfg:9) as its default backend (see 'mode')",
            "parsing [weir.cfg:5] : 'use_backend' : http frontend 'fe' tries to use incompatible tcp backend 'be' (declared at weir.cfg:9) in a 'use_backend' rule (see 'mode')",
        ]
    );
    let cfg = "frontend fe\n    bind :0\n    default_backend be\nbackend be\n    mode http\n";
    assert_eq!(
        error(cfg),
        "parsing [weir.cfg:3] : 'default_backend' : tcp frontend 'fe' tries to use incompatible http backend 'be' (declared at weir.cfg:4) as its default backend (see 'mode')"
    );
}

#[test]
fn frontends_need_a_bind() {
    assert_eq!(
        error("frontend fe\n    default_backend be\nbackend be\n"),
        "parsing [weir.cfg:1] : frontend 'fe' has no 'bind' directive. Please declare it as a backend if this was intended."
    );
    assert_eq!(
        error("listen l\n    server s 127.0.0.1:1\n"),
        "parsing [weir.cfg:1] : listen 'l' has no 'bind' directive. Please declare it as a backend if this was intended."
    );
}

// ------------------------------------------------------------------ robustness and API

#[test]
fn adversarial_inputs_do_not_panic() {
    let junk: String = (0u8..=255).map(char::from).collect();
    let huge = format!("global\n    maxconn {}\n", "9".repeat(10_000));
    let inputs = [
        String::new(),
        "{".to_string(),
        "}\n{\n".to_string(),
        "\"".to_string(),
        "'".to_string(),
        "\\".to_string(),
        "${".to_string(),
        junk.clone(),
        junk.repeat(50),
        huge,
        "frontend\n".repeat(100),
        "no\nno no\nglobal\nno\nno no log\n".to_string(),
        "backend b\n    server s 127.0.0.1:1 weight\n    server t 127.0.0.1:1 proto\n".to_string(),
        "frontend f\n    bind ,,,\n    bind [\n    bind ]:1\n    bind @\n    bind :\n".to_string(),
        "defaults\n    log [::1\n    log @\n    log :\n    log stdout len\n    log stdout format\n"
            .to_string(),
        "listen l\n    timeout\n    option\n    balance\n    use_backend x if\n".to_string(),
        "global\n    log \u{0}\u{7f} \u{1b}[31m\n".to_string(),
        "frontend f from\nbackend b from\ndefaults from\nlisten\n".to_string(),
        "é".repeat(100_000),
    ];
    for input in &inputs {
        let _ = load(input);
    }
    let e = errors("global\n    \u{1b}[31mred\n");
    assert_eq!(
        e,
        ["parsing [weir.cfg:2] : unknown keyword '\\u{1b}[31mred' in 'global' section"]
    );
}

#[test]
fn no_config_when_there_are_errors() {
    let Err(e) = load("global\n    maxconn x\n    daemon\n") else {
        panic!("loaded")
    };
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.warnings.len(), 1);
    let as_error: &dyn std::error::Error = &e;
    assert_eq!(
        as_error.to_string(),
        "parsing [weir.cfg:2] : 'maxconn' : invalid number 'x' (expected an integer between 1 and 4294967295)"
    );
}

#[test]
fn diagnostics_are_structured() {
    let Err(e) = load(&with_tail("defaults\n    balance fastest\n")) else {
        panic!("loaded")
    };
    let d = &e.errors[0];
    assert_eq!(
        d.loc.as_ref().map(|l| (&*l.file, l.line)),
        Some(("weir.cfg", 2))
    );
    assert_eq!(d.keyword.as_deref(), Some("balance"));
    assert_eq!(
        d.message,
        "unknown algorithm 'fastest' (expected roundrobin, static-rr, leastconn, first, source, uri, hdr(<name>), random[(<draws>)] or ewma)"
    );
}

#[test]
fn load_file_reads_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.cfg");
    std::fs::write(&path, MUST_PASS).expect("write");
    let l = config::load_file(&path).expect("loads");
    assert_eq!(&*l.config.frontends[0].loc.file, path.display().to_string());
    let Err(e) = config::load_file(&dir.path().join("nope.cfg")) else {
        panic!("loaded")
    };
    let shown = format!(
        "cannot read '{}': No such file or directory",
        dir.path().join("nope.cfg").display()
    );
    assert_eq!(e.to_string(), shown);
    assert_eq!(e.errors[0].loc, None);
}

#[test]
fn parse_str_uses_the_process_environment() {
    // Nothing to expand: parse_str behaves like parse_str_with_env.
    assert!(config::parse_str("x.cfg", MUST_PASS).is_ok());
}

#[test]
fn units_api() {
    assert_eq!(parse_time("1500"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_time("3s"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_time("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_time("100us"), Ok(Duration::from_micros(100)));
    assert!(parse_time("1y").is_err());
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("4k"), Ok(4096));
    assert_eq!(parse_size("1m"), Ok(1 << 20));
    assert_eq!(parse_size("1g"), Ok(1 << 30));
    assert!(parse_size("1x").is_err());
}

#[test]
fn check_reports_condition_errors_at_their_line() {
    let cfg = "frontend fe\n    mode http\n    bind :0\n    acl api path_beg /api\n    use_backend be if api || admin\n    default_backend be\nbackend be\n    mode http\n";
    let r = run_check(cfg);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "[ALERT] parsing [weir.cfg:5] : 'use_backend' : error detected while parsing the condition: no such ACL : 'admin'"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let r = run_check(&cfg.replace(" || admin", ""));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("Configuration file is valid"),
        "{}",
        r.stdout
    );
}

#[test]
fn every_shipped_example_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("cfg") {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Configuration file is valid\n"
        );
        n += 1;
    }
    assert!(n >= 2, "examples found: {n}");
}
