//! Bad routing and policy configuration (issue 4): every mistake is a
//! `parsing [file:line]` error naming the keyword, all of them are reported
//! at once, and the good lines around them still load.

use weir::config::{self, ReqAction, ResAction};

fn errors(cfg: &str) -> Vec<String> {
    match config::parse_str("weir.cfg", cfg) {
        Ok(_) => panic!("loaded but should not:\n{cfg}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn ok(cfg: &str) -> config::Config {
    match config::parse_str("weir.cfg", cfg) {
        Ok(l) => l.config,
        Err(e) => panic!("unexpected errors:\n{e}\n---\n{cfg}"),
    }
}

/// A frontend whose line 4 is `line`, with a backend `be`.
fn fe_with(line: &str) -> String {
    format!(
        "defaults\n    mode http\nfrontend fe\n{line}\n    bind 127.0.0.1:0\n    default_backend be\nbackend be\n    server s1 127.0.0.1:3000 proto h2\n"
    )
}

fn error_of(line: &str) -> String {
    let errs = errors(&fe_with(line));
    assert_eq!(
        errs.len(),
        1,
        "expected one error for {line:?}, got {errs:#?}"
    );
    errs.into_iter().next().unwrap_or_default()
}

#[test]
fn each_bad_line_gets_its_message() {
    let cases: &[(&str, &str)] = &[
        ("    acl a pathh /x", "'acl' : unknown fetch method 'pathh' (did you mean 'path'?)"),
        ("    acl a path,lowr /x", "'acl' : unknown converter 'lowr' (did you mean 'lower'?)"),
        ("    acl a path_reg ^/(a", "'acl' : regex '^/(a' is invalid: unclosed group"),
        ("    acl a path", "'acl' : no pattern to match against for 'path'"),
        ("    acl a path -m foo /x", "'acl' : unknown match method 'foo' (expected one of: str, beg, end, sub, reg, dir, dom, len, int, ip, bool, found)"),
        ("    acl a path -x /x", "'acl' : unknown flag '-x' (expected -i, -f, -m, -n, -u or --)"),
        ("    acl a src localhost", "'acl' : 'localhost' is not a valid IPv4 or IPv6 address or network"),
        ("    acl a/b path /x", "'acl' : invalid character '/' in acl name 'a/b' (only letters, digits, '-', '_', '.' and ':' are allowed)"),
        ("    acl a path -f /nonexistent/weir-paths.lst", "'acl' : failed to open pattern file '/nonexistent/weir-paths.lst': No such file or directory (os error 2)"),
        ("    use_backend be if is_api", "'use_backend' : error detected while parsing the condition: no such ACL : 'is_api'"),
        ("    use_backend be if", "'use_backend' : missing condition after 'if'"),
        ("    use_backend be if { path /x", "'use_backend' : error detected while parsing the condition: missing '}' to close the anonymous ACL"),
        ("    use_backend be if TRUE ||", "'use_backend' : error detected while parsing the condition: missing ACL after '||'"),
        ("    use_backend be extra", "'use_backend' : unexpected argument 'extra' (expected 'if' or 'unless' followed by a condition)"),
        ("    http-request dney", "'http-request' : unknown action 'dney'; did you mean 'deny' maybe ? (expected one of allow, deny, return, set-header, add-header, del-header, replace-header, replace-value, set-path, set-query, set-uri, set-method, use-service, track-sc0, track-sc1, track-sc2)"),
        ("    http-request redirect location /x", "'http-request' : 'http-request redirect' is not supported yet (weir supports allow, deny, return, set-header, add-header, del-header, replace-header, replace-value, set-path, set-query, set-uri, set-method, use-service, track-sc0, track-sc1, track-sc2)"),
        ("    http-request deny deny_status 99", "'http-request' : invalid deny_status '99' (expected an HTTP status code between 200 and 599)"),
        ("    http-request deny if { status 500 }", "'http-request' : error detected while parsing the condition: fetch method 'status' extracts information from the response, which is not available here"),
        ("    http-request set-header x-a", "'http-request' : missing argument (expected 'set-header <name> <fmt>')"),
        ("    http-request set-header x-a b c", "'http-request' : unexpected argument 'c' (expected 'set-header <name> <fmt>')"),
        ("    http-request set-header bad\\ name v", "'http-request' : invalid header name 'bad name'"),
        ("    http-request replace-header x-a ^(a v", "'http-request' : regex '^(a' is invalid: unclosed group"),
        ("    http-request return status 200 string ok", "'http-request' : 'return' with a body needs a 'content-type'"),
        ("    http-response set-status 700", "'http-response' : invalid status '700' (expected an HTTP status code between 200 and 599)"),
        ("    http-response return status 200", "'http-response' : 'http-response return' is not supported yet (weir supports allow, deny, set-status, set-header, add-header, del-header, replace-header, replace-value)"),
        ("    capture request header x-a", "'capture' : wrong number of arguments (expected 'capture { request | response } header <name> len <length>')"),
        ("    capture request header x-a len 0", "'capture' : invalid length '0' (expected 1 to 65536)"),
        ("    capture cookie c len 10", "'capture' : 'capture cookie' is not supported yet"),
        ("    option forwardfor except 10.0.0.0/40", "'option' : invalid network '10.0.0.0/40'"),
        ("    log-format %ci %cp", "'log-format' : expects exactly one argument (quote the format or escape its spaces with '\\ ')"),
    ];
    for (line, want) in cases {
        assert_eq!(
            error_of(line),
            format!("parsing [weir.cfg:4] : {want}"),
            "line {line:?}"
        );
    }
}

#[test]
fn acl_keywords_are_frontend_and_backend_only() {
    let errs =
        errors("defaults\n    acl a path /x\n    http-request deny\nfrontend fe\n    bind :0\n");
    assert_eq!(
        errs,
        [
            "parsing [weir.cfg:2] : 'acl' is not allowed in 'defaults' section (allowed in: frontend, backend, listen)",
            "parsing [weir.cfg:3] : 'http-request' is not allowed in 'defaults' section (allowed in: frontend, backend, listen)",
        ]
    );
}

#[test]
fn every_error_is_reported_and_good_lines_still_parse() {
    let cfg = "\
defaults
    mode http
frontend fe
    bind 127.0.0.1:0
    acl good path_beg /api
    acl bad nosuchfetch x
    use_backend be if good
    use_backend be if missing
    http-request deny if good
    default_backend be
backend be
    server s1 127.0.0.1:3000 proto h2
";
    let errs = errors(cfg);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("parsing [weir.cfg:6] : 'acl' : unknown fetch method 'nosuchfetch'"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("parsing [weir.cfg:8] : 'use_backend'"),
        "{}",
        errs[1]
    );
    let fixed = cfg
        .replace("    acl bad nosuchfetch x\n", "")
        .replace("    use_backend be if missing\n", "");
    let c = ok(&fixed);
    let fe = &c.frontends[0];
    assert_eq!(fe.use_backends.len(), 1);
    assert!(matches!(
        fe.http_request[0].action,
        ReqAction::Deny { status: 403 }
    ));
}

#[test]
fn rules_parse_into_the_model() {
    let cfg = "\
defaults
    mode http
    option forwardfor header x-real-ip if-none
    option logasap
    log-format \"%ci %[grpc_status]\"
frontend fe
    bind 127.0.0.1:0
    capture request header user-agent len 10
    capture response header server len 5
    http-request set-header x-a %[src] unless { src 10.0.0.0/8 }
    http-request return status 404 content-type text/plain string nope
    http-response set-status 503 reason busy
    use_backend %[req.hdr(x-be)]
    default_backend be
backend be
    http-request del-header x-a
    http-response deny deny_status 502 if { status 500 }
    server s1 127.0.0.1:3000 proto h2
";
    let c = ok(cfg);
    let fe = &c.frontends[0];
    assert!(fe.options.logasap);
    let ff = fe.options.forwardfor.as_ref().expect("forwardfor");
    assert_eq!((ff.header.as_str(), ff.if_none), ("x-real-ip", true));
    assert!(fe.log_format.is_some());
    assert_eq!(fe.capture_request[0].name, "user-agent");
    assert_eq!(fe.capture_request[0].len, 10);
    assert_eq!(fe.capture_response[0].len, 5);
    assert_eq!(fe.http_request.len(), 2);
    assert!(fe.http_request[0].cond.is_some());
    assert!(matches!(
        fe.http_response[0].action,
        ResAction::SetStatus(503)
    ));
    assert!(fe.use_backends[0].dynamic.is_some());
    let be = &c.backends[0];
    assert_eq!(be.http_request.len(), 1);
    assert!(matches!(
        be.http_response[0].action,
        ResAction::Deny { status: 502 }
    ));
}

#[test]
fn listen_rules_run_once_on_the_frontend_side() {
    let c = ok("listen l\n    mode http\n    bind 127.0.0.1:0\n    http-request deny if { path /x }\n    server s1 127.0.0.1:3000 proto h2\n");
    assert_eq!(c.frontends[0].http_request.len(), 1);
    assert!(c.backends[0].http_request.is_empty());
}

#[test]
fn pattern_files_are_read_relative_to_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("paths.lst"),
        "# api paths\n/api\n\n  /v2  \n",
    )
    .expect("write");
    let cfg = "defaults\n    mode http\nfrontend fe\n    bind 127.0.0.1:0\n    acl api path_beg -f paths.lst\n    use_backend be if api\n    default_backend be\nbackend be\n    server s1 127.0.0.1:3000 proto h2\n";
    let path = dir.path().join("weir.cfg");
    std::fs::write(&path, cfg).expect("write");
    let loaded = config::load_file(&path).expect("loads");
    let cond = loaded.config.frontends[0].use_backends[0]
        .cond
        .clone()
        .expect("cond");
    let eval = |p: &'static str| {
        let uri = http::Uri::from_static(p);
        let headers = http::HeaderMap::new();
        cond.eval(&weir::acl::Input {
            method: &http::Method::GET,
            uri: &uri,
            version: http::Version::HTTP_11,
            headers: &headers,
            src: "127.0.0.1:1".parse().expect("addr"),
            dst: "127.0.0.1:2".parse().expect("addr"),
            frontend: "fe",
            backend: None,
            tls: None,
            res: None,
            track: None,
        })
    };
    assert!(eval("/api/x"));
    assert!(eval("/v2/y"));
    assert!(!eval("/web"));
}

// ------------------------------------------------------ option log-json

#[test]
fn log_format_field_names_are_checked() {
    let cases: &[(&str, &str)] = &[
        ("    log-format \"%(client ci\"", "'log-format' : unterminated '%(' (missing ')' after the field name) in log-format '%(client ci'"),
        ("    log-format %()ci", "'log-format' : empty field name '%()' in log-format '%()ci'"),
        ("    log-format \"%(a b)ci\"", "'log-format' : invalid character ' ' in field name '%(a b)' of log-format '%(a b)ci' (only letters, digits, '_', '-' and '.' are allowed)"),
        ("    log-format %(st)", "'log-format' : field name '%(st)' must be followed by a variable name or '[' in log-format '%(st)', found the end"),
        ("    log-format %(x)ci:%(x)cp", "'log-format' : duplicate field name '%(x)' in log-format '%(x)ci:%(x)cp'"),
        ("    option log-json extra", "'option' : unexpected argument 'extra' (expected 'option <name> [<arguments>]')"),
    ];
    for (line, want) in cases {
        assert_eq!(
            error_of(line),
            format!("parsing [weir.cfg:4] : {want}"),
            "line {line:?}"
        );
    }
    // Named fields parse.
    let c = ok(&fe_with(
        "    option log-json\n    log-format \"%(client)ci %(st){+Q}ST %(m)[grpc.method]\"",
    ));
    assert!(c.frontends[0].options.log_json);
    assert!(c.frontends[0].log_format.is_some());
}

#[test]
fn option_log_json_is_a_frontend_option() {
    let cfg = "\
defaults
    mode http
    option log-json
frontend fe
    bind 127.0.0.1:0
    default_backend be
frontend quiet
    bind 127.0.0.1:0
    no option log-json
    default_backend be
backend be
    option log-json
    server s1 127.0.0.1:3000 proto h2
";
    let loaded = match config::parse_str("weir.cfg", cfg) {
        Ok(l) => l,
        Err(e) => panic!("unexpected errors:\n{e}"),
    };
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["parsing [weir.cfg:12] : 'option log-json' ignored because backend 'be' has no frontend capability"]
    );
    let c = loaded.config;
    let json = |name: &str| {
        c.frontends
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.options.log_json)
    };
    assert_eq!(json("fe"), Some(true));
    assert_eq!(json("quiet"), Some(false));
}

// ------------------------------------------- stats page and exporter

/// The stats frontend: no backend at all, loads without error.
#[test]
fn stats_frontend_without_backend_loads() {
    let cfg = ok("defaults\n    mode http\nfrontend stats\n    bind 127.0.0.1:8404\n    http-request use-service prometheus-exporter if { path /metrics }\n    stats enable\n    stats uri /stats\n    stats refresh 10s\n");
    let fe = &cfg.frontends[0];
    let page = fe.stats.as_ref().expect("stats enabled");
    assert_eq!(page.uri, "/stats");
    assert_eq!(page.refresh, Some(std::time::Duration::from_secs(10)));
    assert!(matches!(
        fe.http_request[0].action,
        ReqAction::UseService(config::Service::PrometheusExporter)
    ));
    // `stats enable` alone: HAProxy's default uri.
    let cfg = ok(&fe_with("    stats enable\n    stats hide-version"));
    let page = cfg.frontends[0].stats.as_ref().expect("stats enabled");
    assert_eq!(page.uri, "/haproxy?stats");
    assert!(page.hide_version);
    let cfg = ok("global\n    metrics-max-methods 7\ndefaults\n    mode http\nfrontend f\n    bind :0\n    stats uri /s\n");
    assert_eq!(cfg.global.metrics_max_methods, Some(7));
    assert!(cfg.frontends[0].stats.is_some(), "stats uri implies enable");
    // A bare `stats refresh` delay is in seconds, as in HAProxy.
    let cfg = ok(&fe_with("    stats refresh 5"));
    let page = cfg.frontends[0]
        .stats
        .as_ref()
        .expect("refresh implies enable");
    assert_eq!(page.refresh, Some(std::time::Duration::from_secs(5)));
}

#[test]
fn stats_and_exporter_mistakes_get_clear_messages() {
    let cases: &[(&str, &str)] = &[
        ("    http-request use-service prometheus-exportr", "'http-request' : unknown service 'prometheus-exportr'; did you mean 'prometheus-exporter' maybe ? (weir provides: prometheus-exporter)"),
        ("    http-request use-service", "'http-request' : missing service name (expected 'use-service prometheus-exporter')"),
        ("    stats auth admin:secret", "'stats auth' : not supported: weir has no HTTP authentication for the stats page; refusing rather than serving it unprotected (restrict it with an 'http-request deny' rule, or bind it to a private address)"),
        ("    stats refresh soon", "'stats refresh' : invalid delay 'soon' (expected seconds, or a time with a unit: 10s, 1m)"),
        ("    stats uri stats", "'stats uri' : 'stats' must start with '/'"),
        ("    stats enabel", "'stats enabel' : unknown subcommand 'enabel'; did you mean 'enable' maybe ? (expected one of enable, uri, refresh, hide-version, show-legends, realm)"),
    ];
    for (line, want) in cases {
        assert_eq!(
            error_of(line),
            format!("parsing [weir.cfg:4] : {want}"),
            "line {line:?}"
        );
    }
    let errs = errors("global\n    metrics-max-methods 0\n");
    assert_eq!(
        errs,
        ["parsing [weir.cfg:2] : 'metrics-max-methods' : value '0' is out of range (expected an integer between 1 and 1000000)"]
    );
    let errs = errors("defaults\n    mode http\nbackend b\n    stats enable\n    http-request use-service prometheus-exporter\n    server s 127.0.0.1:1\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].contains("put 'stats enable' in the frontend or listen section"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains("only supported in frontend and listen sections"),
        "{errs:#?}"
    );
}
