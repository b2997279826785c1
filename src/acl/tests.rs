use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use http::{HeaderMap, Request, Version};

use super::*;

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .version(Version::HTTP_11);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn h2(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut r = req("POST", uri, headers);
    *r.version_mut() = Version::HTTP_2;
    r
}

fn input(r: &Request<()>) -> Input<'_> {
    Input {
        method: r.method(),
        uri: r.uri(),
        version: r.version(),
        headers: r.headers(),
        src: "192.0.2.7:40000".parse().unwrap(),
        dst: "198.51.100.1:8443".parse().unwrap(),
        frontend: "fe_main",
        backend: None,
        tls: None,
        res: None,
        track: None,
    }
}

fn w(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn ev(expr: &str, i: &Input<'_>) -> Option<String> {
    Expr::parse(expr, Stage::Log)
        .unwrap()
        .eval(i)
        .map(|s| s.to_string())
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn perr(text: &str, stage: Stage) -> String {
    Expr::parse(text, stage).unwrap_err()
}

/// Evaluates the anonymous ACL `{ words }` on `i`.
fn acl(words: &str, i: &Input<'_>) -> bool {
    cond(&format!("{{ {words} }}"), &Acls::default(), i)
}

fn cond(words: &str, acls: &Acls, i: &Input<'_>) -> bool {
    Condition::parse(&w(words), false, acls, Stage::Log, Path::new("."))
        .unwrap()
        .eval(i)
}

fn acl_err(words: &str) -> String {
    Acls::default()
        .define(&w(words), Path::new("."))
        .unwrap_err()
}

fn cond_err(words: &str, acls: &Acls, stage: Stage) -> String {
    Condition::parse(&w(words), false, acls, stage, Path::new(".")).unwrap_err()
}

fn grpc_req() -> Request<()> {
    h2(
        "http://api.example.com/helloworld.Greeter/SayHello",
        &[
            ("content-type", "application/grpc+proto"),
            ("te", "trailers"),
        ],
    )
}

#[test]
fn types_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Expr>();
    check::<Condition>();
    check::<Acls>();
}

#[test]
fn fetch_path_url_query_base() {
    let r = req(
        "GET",
        "/a/b.html?x=1&y=2&x=3",
        &[("host", "www.example.com")],
    );
    let i = input(&r);
    assert_eq!(ev("path", &i), s("/a/b.html"));
    assert_eq!(ev("url", &i), s("/a/b.html?x=1&y=2&x=3"));
    assert_eq!(ev("pathq", &i), s("/a/b.html?x=1&y=2&x=3"));
    assert_eq!(ev("query", &i), s("x=1&y=2&x=3"));
    assert_eq!(ev("base", &i), s("www.example.com/a/b.html"));
    assert_eq!(ev("url_param(y)", &i), s("2"));
    assert_eq!(ev("urlp(x)", &i), s("1"));
    assert_eq!(ev("url_param", &i), s("1"));
    assert_eq!(ev("urlp(z)", &i), None);
    assert_eq!(ev("urlp_val(y)", &i), s("2"));
    assert!(acl("urlp(x) 3", &i), "every occurrence is tested in an ACL");
    assert!(!acl("urlp(x) 4", &i));
    assert!(acl("urlp_beg(y) 2", &i));

    let r = req("GET", "/plain", &[]);
    let i = input(&r);
    assert_eq!(ev("query", &i), None);
    assert_eq!(ev("url_param(a)", &i), None);
    assert_eq!(ev("base", &i), s("/plain"));

    // HTTP/1 absolute form: url is the whole request target.
    let r = req("GET", "http://h.example/x?q", &[]);
    assert_eq!(ev("url", &input(&r)), s("http://h.example/x?q"));
    assert_eq!(ev("path", &input(&r)), s("/x"));
    assert_eq!(ev("base", &input(&r)), s("h.example/x"));
    // HTTP/2: the :scheme/:authority are not part of url.
    let r = grpc_req();
    assert_eq!(ev("url", &input(&r)), s("/helloworld.Greeter/SayHello"));
    assert_eq!(
        ev("base", &input(&r)),
        s("api.example.com/helloworld.Greeter/SayHello")
    );
}

#[test]
fn fetch_method_version_proto() {
    let r = req("PUT", "/", &[]);
    let i = input(&r);
    assert_eq!(ev("method", &i), s("PUT"));
    assert_eq!(ev("req.ver", &i), s("1.1"));
    assert_eq!(ev("req_ver", &i), s("1.1"));
    assert_eq!(ev("req.proto_http", &i), s("1"));
    let r = grpc_req();
    assert_eq!(ev("req.ver", &input(&r)), s("2.0"));
}

#[test]
fn fetch_headers() {
    let mut r = req(
        "GET",
        "/",
        &[
            ("X-Fwd", "a, b"),
            ("x-fwd", "c"),
            ("content-length", "42"),
            ("x-ip", "10.1.2.3"),
            ("cookie", "sid=abc; lang=fr"),
            ("cookie", "sid=def"),
        ],
    );
    r.headers_mut()
        .append("x-bin", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
    let i = input(&r);
    assert_eq!(ev("req.hdr(x-fwd)", &i), s("c"));
    assert_eq!(ev("hdr(X-FWD)", &i), s("c"), "names are case-insensitive");
    assert_eq!(ev("req.hdr(x-fwd,1)", &i), s("a"));
    assert_eq!(ev("req.hdr(x-fwd,2)", &i), s("b"));
    assert_eq!(ev("req.hdr(x-fwd,-2)", &i), s("b"));
    assert_eq!(ev("req.hdr(x-fwd,-3)", &i), s("a"));
    assert_eq!(ev("req.hdr(x-fwd,4)", &i), None);
    assert_eq!(ev("req.hdr(x-fwd,-4)", &i), None);
    assert_eq!(ev("req.fhdr(x-fwd)", &i), s("c"));
    assert_eq!(ev("req.fhdr(x-fwd,1)", &i), s("a, b"));
    assert_eq!(ev("req.hdr_cnt(x-fwd)", &i), s("3"));
    assert_eq!(ev("hdr_cnt(x-fwd)", &i), s("3"));
    assert_eq!(ev("req.fhdr_cnt(x-fwd)", &i), s("2"));
    assert_eq!(ev("hdr_cnt(nope)", &i), s("0"));
    assert_eq!(ev("req.hdr(nope)", &i), None);
    assert_eq!(ev("hdr_val(content-length)", &i), s("42"));
    assert_eq!(ev("req.hdr_ip(x-ip)", &i), s("10.1.2.3"));
    assert_eq!(ev("req.hdr(x-bin)", &i), s("caf\u{fffd}"));
    assert_eq!(ev("req.cook(sid)", &i), s("def"));
    assert_eq!(ev("cook(lang)", &i), s("fr"));
    assert_eq!(ev("req.cook_cnt(sid)", &i), s("2"));
    assert!(acl("req.cook(sid) abc", &i));
    // Every value is tested in an ACL.
    assert!(acl("req.hdr(x-fwd) a", &i));
    assert!(acl("hdr(x-fwd) b", &i));
    assert!(!acl("req.hdr(x-fwd) a,", &i));
    let words: Vec<String> = ["{", "req.fhdr(x-fwd)", "-m", "str", "a, b", "}"]
        .map(String::from)
        .to_vec();
    let c = Condition::parse(
        &words,
        false,
        &Acls::default(),
        Stage::Request,
        Path::new("."),
    )
    .unwrap();
    assert!(c.eval(&i));
    assert!(!acl("req.fhdr(x-fwd) a", &i));
    assert!(
        !acl("req.hdr(x-fwd,1) b", &i),
        "with an occurrence, only that one"
    );
    assert!(acl("hdr_cnt(x-fwd) 3", &i));
    assert!(acl("hdr_beg(x-fwd) c", &i));
    assert!(acl("hdr_sub(x-fwd) -i C", &i));
}

#[test]
fn header_values_borrow() {
    let r = req("GET", "/p", &[("x-a", "v1, v2")]);
    let i = input(&r);
    match Expr::parse("req.hdr(x-a)", Stage::Request)
        .unwrap()
        .eval(&i)
    {
        Some(Sample::Str(Cow::Borrowed("v2"))) => {}
        other => panic!("{other:?}"),
    }
    match Expr::parse("path", Stage::Request).unwrap().eval(&i) {
        Some(Sample::Str(Cow::Borrowed("/p"))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn fetch_host_from_authority() {
    let r = grpc_req();
    let i = input(&r);
    assert_eq!(ev("req.hdr(host)", &i), s("api.example.com"));
    assert_eq!(ev("hdr(Host)", &i), s("api.example.com"));
    assert_eq!(ev("hdr_cnt(host)", &i), s("1"));
    assert!(acl("hdr(host) -i API.example.com", &i));
    assert!(acl("hdr_end(host) .example.com", &i));
    assert!(acl("hdr_dom(host) example", &i));
    // A real host header wins.
    let r = h2("http://auth.example/x", &[("host", "hdr.example")]);
    assert_eq!(ev("req.hdr(host)", &input(&r)), s("hdr.example"));
}

#[test]
fn fetch_grpc() {
    let r = grpc_req();
    let i = input(&r);
    assert_eq!(ev("grpc.service", &i), s("helloworld.Greeter"));
    assert_eq!(ev("grpc.method", &i), s("SayHello"));
    assert_eq!(ev("req.grpc", &i), s("1"));
    for ct in [
        "application/grpc",
        "application/grpc;charset=x",
        "Application/GRPC+json",
    ] {
        let r = h2("/a.B/C", &[("content-type", ct)]);
        assert_eq!(ev("req.grpc", &input(&r)), s("1"), "{ct}");
    }
    for ct in [
        "application/grpcx",
        "application/json",
        "application/grpc-web",
    ] {
        let r = h2("/a.B/C", &[("content-type", ct)]);
        assert_eq!(ev("req.grpc", &input(&r)), s("0"), "{ct}");
    }
    let r = h2("/a.B/C", &[]);
    assert_eq!(ev("req.grpc", &input(&r)), s("0"));
    assert_eq!(ev("req.grpc_path_valid", &i), s("1"));
    for bad in ["/a%20b/c", "/%2e%2e/m", "/a.B/C?x=1"] {
        let r = h2(bad, &[]);
        assert_eq!(ev("req.grpc_path_valid", &input(&r)), s("0"), "{bad}");
    }
    for bad in ["/", "/svc", "/svc/", "//m", "/a/b/c", "/svc/m/"] {
        let r = h2(bad, &[]);
        assert_eq!(ev("req.grpc_path_valid", &input(&r)), s("0"), "{bad}");
        assert_eq!(ev("grpc.service", &input(&r)), None, "{bad}");
        assert_eq!(ev("grpc.method", &input(&r)), None, "{bad}");
    }
}

#[test]
fn fetch_connection_and_tls() {
    let r = req("GET", "/", &[]);
    let mut i = input(&r);
    assert_eq!(ev("src", &i), s("192.0.2.7"));
    assert_eq!(ev("src_port", &i), s("40000"));
    assert_eq!(ev("dst", &i), s("198.51.100.1"));
    assert_eq!(ev("dst_port", &i), s("8443"));
    assert_eq!(ev("fe_name", &i), s("fe_main"));
    assert_eq!(ev("be_name", &i), None);
    assert_eq!(ev("ssl_fc", &i), s("0"));
    assert_eq!(ev("ssl_fc_sni", &i), None);
    i.src = "[::ffff:10.0.0.9]:1".parse::<SocketAddr>().unwrap();
    assert_eq!(ev("src", &i), s("10.0.0.9"), "v4-mapped shown as v4");
    i.backend = Some("be_x");
    assert_eq!(ev("be_name", &i), s("be_x"));
    let tls = TlsInfo {
        sni: Some("api.example.com".into()),
        alpn: Some("h2".into()),
        version: Some("TLSv1.3"),
        client_subject: Some("/O=Example/CN=client1".into()),
        client_issuer: Some("/CN=Example CA".into()),
    };
    i.tls = Some(&tls);
    assert_eq!(ev("ssl_fc", &i), s("1"));
    assert_eq!(ev("ssl_fc_has_sni", &i), s("1"));
    assert_eq!(ev("ssl_fc_sni", &i), s("api.example.com"));
    assert_eq!(ev("ssl_fc_alpn", &i), s("h2"));
    assert_eq!(ev("ssl_fc_protocol", &i), s("TLSv1.3"));
    assert_eq!(ev("ssl_c_used", &i), s("1"));
    assert_eq!(ev("ssl_c_verify", &i), s("0"));
    assert_eq!(ev("ssl_c_s_dn", &i), s("/O=Example/CN=client1"));
    assert_eq!(ev("ssl_c_i_dn", &i), s("/CN=Example CA"));
    assert!(acl("ssl_c_s_dn -m end CN=client1", &i));
    assert!(acl("ssl_fc", &i));
    assert!(acl("ssl_fc_sni_end .example.com", &i));
}

#[test]
fn fetch_constants() {
    let r = req("GET", "/", &[]);
    let i = input(&r);
    assert_eq!(ev("always_true", &i), s("1"));
    assert_eq!(ev("always_false", &i), s("0"));
    assert_eq!(ev("int(-12)", &i), s("-12"));
    assert_eq!(ev("str(hello)", &i), s("hello"));
    assert_eq!(ev("bool(true)", &i), s("1"));
    assert_eq!(ev("bool(0)", &i), s("0"));
    assert_eq!(ev("ipv4(10.0.0.1)", &i), s("10.0.0.1"));
    assert_eq!(ev("ipv6(::1)", &i), s("::1"));
    assert!(ev("date", &i).unwrap().parse::<i64>().unwrap() > 1_600_000_000);
}

#[test]
fn fetch_response() {
    let r = req("GET", "/", &[]);
    let mut rh = HeaderMap::new();
    rh.append("x-r", "a".parse().unwrap());
    rh.append("x-r", "b, c".parse().unwrap());
    rh.append("content-type", "application/grpc".parse().unwrap());
    let mut i = input(&r);
    assert_eq!(ev("status", &i), None);
    assert_eq!(ev("res.hdr(x-r)", &i), None);
    i.res = Some(ResInput {
        status: 503,
        headers: &rh,
        grpc_status: Some(14),
    });
    assert_eq!(ev("status", &i), s("503"));
    assert_eq!(ev("res.hdr(x-r)", &i), s("c"));
    assert_eq!(ev("res.hdr(x-r,1)", &i), s("a"));
    assert_eq!(ev("shdr(x-r)", &i), s("c"));
    assert_eq!(ev("res.fhdr(x-r)", &i), s("b, c"));
    assert_eq!(ev("res.hdr_cnt(x-r)", &i), s("3"));
    assert_eq!(ev("res.fhdr_cnt(x-r)", &i), s("2"));
    assert_eq!(ev("grpc_status", &i), s("14"));
    assert_eq!(ev("res.grpc_status", &i), s("14"));
    assert!(acl("status 500:599", &i));
    assert!(acl("res.hdr(x-r) b", &i));
    assert!(acl("shdr_beg(x-r) a", &i));
    assert!(Expr::parse("status", Stage::Response).is_ok());
    assert!(Expr::parse("grpc_status", Stage::Response).is_ok());
}

#[test]
fn converters() {
    let r = req(
        "GET",
        "/Foo/Bar?q=a%20b+c",
        &[("x", "f1_f2_f3__f5"), ("y", "aGVsbG8="), ("n", "7")],
    );
    let i = input(&r);
    assert_eq!(ev("path,lower", &i), s("/foo/bar"));
    assert_eq!(ev("path,upper", &i), s("/FOO/BAR"));
    assert_eq!(ev("req.hdr(x),field(5,_)", &i), s("f5"));
    assert_eq!(ev("req.hdr(x),field(2,_,0)", &i), s("f2_f3__f5"));
    assert_eq!(ev("req.hdr(x),field(2,_,2)", &i), s("f2_f3"));
    assert_eq!(ev("req.hdr(x),field(-2,_,3)", &i), s("f2_f3_"));
    assert_eq!(ev("req.hdr(x),field(-3,_,0)", &i), s("f1_f2_f3"));
    assert_eq!(ev("req.hdr(x),field(6,_)", &i), None);
    assert_eq!(ev("req.hdr(x),field(4,_)", &i), s(""));
    assert_eq!(ev("req.hdr(x),word(4,_)", &i), s("f5"));
    assert_eq!(ev("req.hdr(x),word(2,_,0)", &i), s("f2_f3__f5"));
    assert_eq!(ev("req.hdr(x),word(3,_,2)", &i), s("f3__f5"));
    assert_eq!(ev("req.hdr(x),word(-2,_,3)", &i), s("f1_f2_f3"));
    assert_eq!(ev("req.hdr(x),word(-3,_,0)", &i), s("f1_f2"));
    assert_eq!(ev("req.hdr(x),word(5,_)", &i), None);
    assert_eq!(ev("str(a:b:c),field(2,:)", &i), s("b"));
    assert_eq!(ev("str(a:b;c),field(3,:;)", &i), s("c"));
    assert_eq!(ev("str('a,b'),field(2,',')", &i), s("b"));
    assert_eq!(ev("str(hello),base64", &i), s("aGVsbG8="));
    assert_eq!(ev("str(hi),base64", &i), s("aGk="));
    assert_eq!(ev("str(h),base64", &i), s("aA=="));
    assert_eq!(ev("req.hdr(y),b64dec", &i), s("hello"));
    assert_eq!(ev("str(aGk),b64dec", &i), s("hi"));
    assert_eq!(ev("str(a*b),b64dec", &i), None);
    assert_eq!(ev("str(Hi!),hex", &i), s("486921"));
    assert_eq!(ev("path,length", &i), s("8"));
    assert_eq!(ev("path,len", &i), s("8"));
    assert_eq!(ev("path,bytes(1,3)", &i), s("Foo"));
    assert_eq!(ev("path,bytes(5)", &i), s("Bar"));
    assert_eq!(ev("path,bytes(50)", &i), s(""));
    assert_eq!(ev("path,regsub(o,0)", &i), s("/F0o/Bar"));
    assert_eq!(ev("path,regsub(o,0,g)", &i), s("/F00/Bar"));
    assert_eq!(ev("path,regsub(b,X,gi)", &i), s("/Foo/Xar"));
    assert_eq!(
        ev("path,regsub(^/(\\w+)/(\\w+),/\\2/\\1)", &i),
        s("/Bar/Foo")
    );
    assert_eq!(ev("path,regsub((F|B),-,g)", &i), s("/-oo/-ar"));
    assert_eq!(ev("str(a\\\"b/c),json", &i), s("a\\\"b\\/c"));
    assert_eq!(ev("url,url_dec", &i), s("/Foo/Bar?q=a b c"));
    assert_eq!(ev("urlp(q),url_dec", &i), s("a b+c"));
    assert_eq!(ev("urlp(q),url_dec(1)", &i), s("a b c"));
    assert_eq!(ev("str(%zz),url_dec", &i), None);
    assert_eq!(ev("str(xxabcxx),ltrim(x)", &i), s("abcxx"));
    assert_eq!(ev("str(xxabcxx),rtrim(x)", &i), s("xxabc"));
    assert_eq!(ev("req.hdr(n),add(3)", &i), s("10"));
    assert_eq!(ev("int(7),sub(10)", &i), s("-3"));
    assert_eq!(ev("int(7),mul(3)", &i), s("21"));
    assert_eq!(ev("int(7),div(2)", &i), s("3"));
    assert_eq!(ev("int(7),div(0)", &i), s(&i64::MAX.to_string()));
    assert_eq!(ev("int(7),mod(4)", &i), s("3"));
    assert_eq!(ev("int(7),mod(0)", &i), s("0"));
    assert_eq!(ev("int(6),and(3)", &i), s("2"));
    assert_eq!(ev("int(6),or(1)", &i), s("7"));
    assert_eq!(ev("int(6),xor(2)", &i), s("4"));
    assert_eq!(ev("int(7),neg", &i), s("-7"));
    assert_eq!(ev("int(0),cpl", &i), s("-1"));
    assert_eq!(ev("int(0),not", &i), s("1"));
    assert_eq!(ev("int(5),bool", &i), s("1"));
    assert_eq!(ev("int(5),odd", &i), s("1"));
    assert_eq!(ev("int(5),even", &i), s("0"));
    assert_eq!(ev("src,ipmask(24)", &i), s("192.0.2.0"));
    assert_eq!(ev("src,ipmask(255.255.0.0)", &i), s("192.0.0.0"));
    assert_eq!(ev("ipv6(2001:db8::1),ipmask(24,32)", &i), s("2001:db8::"));
    assert_eq!(ev("ipv6(2001:db8::1),ipmask(24)", &i), s("2001:db8::1"));
    assert_eq!(ev("path,lower,length,add(1)", &i), s("9"));
    assert!(acl("path,lower -m beg /foo/", &i));
    // lower keeps the borrow when there is nothing to change.
    match Expr::parse("grpc.service,lower", Stage::Request)
        .unwrap()
        .eval(&input(&grpc_req()))
    {
        Some(Sample::Str(Cow::Owned(v))) => assert_eq!(v, "helloworld.greeter"),
        other => panic!("{other:?}"),
    }
    match Expr::parse("path,lower,field(2,/)", Stage::Request)
        .unwrap()
        .eval(&input(&req("GET", "/a/b", &[])))
    {
        Some(Sample::Str(Cow::Borrowed("a"))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn match_strings() {
    let r = req(
        "GET",
        "/api/v1/Users?id=3",
        &[("host", "www.Example.com:8080")],
    );
    let i = input(&r);
    assert!(acl("path /api/v1/Users", &i));
    assert!(!acl("path /api/v1/users", &i));
    assert!(acl("path -i /api/v1/users", &i));
    assert!(acl("path -m str /nope /api/v1/Users", &i));
    assert!(acl("path_beg /api/", &i));
    assert!(acl("path -m beg /api/", &i));
    assert!(!acl("path_beg /API/", &i));
    assert!(acl("path_beg -i /API/", &i));
    assert!(acl("path_end /Users", &i));
    assert!(acl("path_end -i /users", &i));
    assert!(acl("path_sub v1", &i));
    assert!(acl("path_sub -i USERS", &i));
    assert!(!acl("path_sub USERS", &i));
    assert!(acl("path_reg ^/api/v[0-9]+/", &i));
    assert!(!acl("path_reg ^/API", &i));
    assert!(acl("path_reg -i ^/API", &i));
    assert!(acl("path_dir v1", &i));
    assert!(acl("path_dir /api/v1", &i));
    assert!(!acl("path_dir v", &i));
    assert!(acl("path_dir -i users", &i));
    assert!(acl("url_dir Users", &i), "'?' ends a directory");
    assert!(!acl("hdr_dom(host) example", &i));
    assert!(acl("hdr_dom(host) -i example", &i));
    assert!(!acl("hdr_dom(host) www.example", &i));
    assert!(acl("hdr_dom(host) -i www.example", &i));
    assert!(acl("hdr_dom(host) 8080", &i));
    assert!(!acl("hdr_dom(host) exam", &i));
    assert!(acl("path_len 13", &i));
    assert!(acl("path_len 10:20", &i));
    assert!(!acl("path_len :5", &i));
    assert!(acl("path -m len gt 5", &i));
    assert!(acl("url_beg /api", &i));
    assert!(acl("url_sub id=3", &i));
    assert!(acl("url_reg \\?id=", &i));
    assert!(acl("base_beg www.Example.com:8080/api", &i));
    assert!(acl("base_sub v1", &i));
    assert!(acl("base_reg ^www", &i));
    assert!(acl("hdr_len(host) 20", &i));
    // -- ends the flags: a pattern may start with '-'.
    let r = req("GET", "/-x", &[]);
    assert!(acl("path,bytes(1) -- -x", &input(&r)));
    // Many exact patterns (set lookup).
    let many: Vec<String> = (0..20).map(|n| format!("/p{n}")).collect();
    let r = req("GET", "/p13", &[]);
    assert!(acl(&format!("path {}", many.join(" ")), &input(&r)));
    assert!(!acl(
        &format!("path {}", many.join(" ")),
        &input(&req("GET", "/p20", &[]))
    ));
}

#[test]
fn match_ints() {
    let r = req("GET", "/", &[("x", "15"), ("x", "30")]);
    let i = input(&r);
    assert!(acl("hdr_val(x) 15", &i));
    assert!(acl("hdr_val(x) 30", &i), "every occurrence");
    assert!(acl("hdr_val(x) 10:20", &i));
    assert!(acl("hdr_val(x) 25:", &i));
    assert!(!acl("hdr_val(x) :14", &i));
    assert!(acl("hdr_val(x) eq 15", &i));
    assert!(acl("hdr_val(x) ge 30", &i));
    assert!(!acl("hdr_val(x) gt 30", &i));
    assert!(acl("hdr_val(x) le 15", &i));
    assert!(!acl("hdr_val(x) lt 15", &i));
    assert!(acl("hdr_val(x) 1 2 lt 16", &i));
    assert!(acl("req.hdr(x) -m int 15", &i));
    assert!(acl("src_port 40000", &i));
    assert!(acl("hdr_val(x) -- -5:15", &i));
}

#[test]
fn match_ips() {
    let r = req("GET", "/", &[("x-ip", "2001:db8::5"), ("x-s", "10.2.3.4")]);
    let mut i = input(&r);
    assert!(acl("src 192.0.2.0/24", &i));
    assert!(acl("src 192.0.2.7", &i));
    assert!(acl("src 192.0.2.0/255.255.255.0", &i));
    assert!(!acl("src 10.0.0.0/8 192.0.3.0/24", &i));
    assert!(acl("hdr_ip(x-ip) 2001:db8::/32", &i));
    assert!(!acl("hdr_ip(x-ip) 2001:db9::/32", &i));
    assert!(acl("req.hdr(x-s) -m ip 10.0.0.0/8", &i));
    i.src = "[::ffff:10.1.1.1]:5".parse().unwrap();
    assert!(acl("src 10.0.0.0/8", &i), "v4 pattern, v4-mapped sample");
    assert!(acl("src ::ffff:10.0.0.0/104", &i), "v6 pattern, v4 sample");
    i.src = "[::1]:5".parse().unwrap();
    assert!(acl("src ::1", &i));
    assert!(cond("LOCALHOST", &Acls::default(), &i));
    i.src = "127.0.0.2:5".parse().unwrap();
    assert!(cond("LOCALHOST", &Acls::default(), &i));
    i.src = SocketAddr::new(IpAddr::from([8, 8, 8, 8]), 5);
    assert!(!cond("LOCALHOST", &Acls::default(), &i));
}

#[test]
fn match_found_bool() {
    let r = req("GET", "/", &[("x-a", "0")]);
    let i = input(&r);
    assert!(acl("req.hdr(x-a) -m found", &i));
    assert!(!acl("req.hdr(x-b) -m found", &i));
    assert!(!acl("req.hdr(x-a) -m bool", &i));
    assert!(acl("hdr_cnt(x-a) -m bool", &i));
    assert!(!acl("hdr_cnt(x-b) -m bool", &i));
    assert!(acl("always_true", &i));
    assert!(!acl("always_false", &i));
    assert!(!acl("ssl_fc", &i));
    assert!(acl("ssl_fc -m int 0", &i));
}

#[test]
fn pattern_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("paths.lst"),
        "# comment\n\n  /api  \n/admin\r\n   # indented comment\n/health\n",
    )
    .unwrap();
    let mut acls = Acls::default();
    acls.define(&w("p path -f paths.lst"), dir.path()).unwrap();
    acls.define(&w("pi path -i -f paths.lst /extra"), dir.path())
        .unwrap();
    let yes = |p: &str, a: &str| cond(a, &acls, &input(&req("GET", p, &[])));
    assert!(yes("/api", "p"));
    assert!(yes("/admin", "p"));
    assert!(yes("/health", "p"));
    assert!(!yes("/#", "p"));
    assert!(!yes("/API", "p"));
    assert!(yes("/API", "pi"));
    assert!(yes("/EXTRA", "pi"));
    assert!(!yes("/extra", "p"));
    let abs = dir.path().join("paths.lst");
    let mut a2 = Acls::default();
    a2.define(
        &w(&format!("p path_beg -f {}", abs.display())),
        Path::new("/nonexistent"),
    )
    .unwrap();
    // Empty file: valid, matches nothing.
    std::fs::write(dir.path().join("empty.lst"), "# nothing\n").unwrap();
    let mut a3 = Acls::default();
    a3.define(&w("e path -f empty.lst"), dir.path()).unwrap();
    assert!(!cond("e", &a3, &input(&req("GET", "/", &[]))));
    let err = Acls::default()
        .define(&w("p path -f missing.lst"), dir.path())
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "failed to open pattern file '{}': No such file or directory (os error 2)",
            dir.path().join("missing.lst").display()
        )
    );
}

#[test]
fn same_name_lines_are_ored() {
    let mut acls = Acls::default();
    acls.define(&w("static path_beg /static"), Path::new("."))
        .unwrap();
    acls.define(&w("static path_end .png .css"), Path::new("."))
        .unwrap();
    let t = |p: &str| cond("static", &acls, &input(&req("GET", p, &[])));
    assert!(t("/static/x"));
    assert!(t("/img/a.png"));
    assert!(t("/a.css"));
    assert!(!t("/a.js"));
}

#[test]
fn conditions() {
    let mut acls = Acls::default();
    acls.define(&w("is_api path_beg /api"), Path::new("."))
        .unwrap();
    acls.define(&w("is_get method GET"), Path::new("."))
        .unwrap();
    acls.define(&w("has_x req.hdr(x) -m found"), Path::new("."))
        .unwrap();
    let get_api = req("GET", "/api/x", &[]);
    let post_api = req("POST", "/api/x", &[("x", "1")]);
    let get_web = req("GET", "/web", &[]);
    let c = |words: &str, r: &Request<()>| cond(words, &acls, &input(r));
    assert!(c("is_api is_get", &get_api));
    assert!(!c("is_api is_get", &post_api));
    assert!(c("is_api !is_get", &post_api));
    assert!(c("is_api ! is_get", &post_api));
    assert!(!c("!is_api", &get_api));
    assert!(c("!!is_api", &get_api));
    assert!(c("is_get || has_x", &post_api));
    assert!(c("is_get or has_x", &get_web));
    assert!(!c("is_api is_get || has_x", &get_web));
    assert!(c("has_x || is_api is_get", &get_api));
    assert!(c("{ path_beg /web }", &get_web));
    assert!(c("is_get { path /web }", &get_web));
    assert!(!c("!{ path /web }", &get_web));
    assert!(c("! { path /web } is_get", &get_api));
    assert!(c("{ req.hdr(x) -m str 1 } || FALSE", &post_api));
    assert!(c("TRUE", &post_api));
    assert!(!c("FALSE", &post_api));
    let unless =
        Condition::parse(&w("is_api"), true, &acls, Stage::Request, Path::new(".")).unwrap();
    assert!(!unless.eval(&input(&get_api)));
    assert!(unless.eval(&input(&get_web)));
    let unless = Condition::parse(
        &w("is_api || is_get"),
        true,
        &acls,
        Stage::Request,
        Path::new("."),
    )
    .unwrap();
    assert!(!unless.eval(&input(&get_web)));
    assert!(!unless.eval(&input(&post_api)));
    // Cheap clone shares the compiled form.
    let c2 = unless.clone();
    assert_eq!(c2.eval(&input(&get_web)), unless.eval(&input(&get_web)));
    // A user ACL shadows a predefined one.
    let mut a2 = Acls::default();
    a2.define(&w("TRUE always_false"), Path::new(".")).unwrap();
    assert!(!cond("TRUE", &a2, &input(&get_api)));
    // Names with the allowed punctuation.
    let mut a3 = Acls::default();
    a3.define(&w("a-b_c.d:e path /web"), Path::new("."))
        .unwrap();
    assert!(cond("a-b_c.d:e", &a3, &input(&get_web)));
}

#[test]
fn predefined_acls() {
    for (name, _) in cond::PREDEFINED {
        assert!(
            Condition::parse(
                &w(name),
                false,
                &Acls::default(),
                Stage::Request,
                Path::new(".")
            )
            .is_ok(),
            "{name}"
        );
    }
    let a = Acls::default();
    let t = |n: &str, r: &Request<()>| cond(n, &a, &input(r));
    let get = req("GET", "/x", &[("content-length", "3")]);
    let head = req("HEAD", "/x", &[("content-length", "0")]);
    let star = req("OPTIONS", "*", &[]);
    let abs = req("GET", "http://example.com/x", &[]);
    let conn = req("CONNECT", "example.com:443", &[]);
    assert!(t("HTTP", &get));
    assert!(t("HTTP_1.1", &get));
    assert!(!t("HTTP_1.0", &get));
    assert!(!t("HTTP_2.0", &get));
    assert!(t("HTTP_2.0", &grpc_req()));
    assert!(t("HTTP_CONTENT", &get));
    assert!(!t("HTTP_CONTENT", &head));
    assert!(t("HTTP_URL_SLASH", &get));
    assert!(!t("HTTP_URL_ABS", &get));
    assert!(t("HTTP_URL_ABS", &abs));
    assert!(t("HTTP_URL_STAR", &star));
    assert!(!t("HTTP_URL_STAR", &get));
    assert!(t("METH_GET", &get));
    assert!(t("METH_GET", &head));
    assert!(t("METH_HEAD", &head));
    assert!(!t("METH_HEAD", &get));
    assert!(t("METH_OPTIONS", &star));
    assert!(t("METH_CONNECT", &conn));
    assert!(t("METH_POST", &grpc_req()));
    assert!(t("METH_PUT", &req("PUT", "/", &[])));
    assert!(t("METH_DELETE", &req("DELETE", "/", &[])));
    assert!(t("METH_TRACE", &req("TRACE", "/", &[])));
    assert!(t("GRPC", &grpc_req()));
    assert!(!t("GRPC", &get));
    assert!(t("TRUE", &get));
    assert!(!t("FALSE", &get));
}

#[test]
fn grpc_examples() {
    let mut acls = Acls::default();
    acls.define(
        &w("is_greeter grpc.service helloworld.Greeter"),
        Path::new("."),
    )
    .unwrap();
    let r = grpc_req();
    assert!(cond("is_greeter", &acls, &input(&r)));
    assert!(cond("{ grpc.method SayHello }", &acls, &input(&r)));
    assert!(cond(
        "GRPC { grpc.service -m beg helloworld. }",
        &acls,
        &input(&r)
    ));
    assert!(!cond("{ grpc.method SayGoodbye }", &acls, &input(&r)));
}

#[test]
fn expr_errors() {
    let st = Stage::Request;
    assert_eq!(
        perr("pathh", st),
        "unknown fetch method 'pathh' (did you mean 'path'?)"
    );
    assert_eq!(
        perr("req.hdrr(x)", st),
        "unknown fetch method 'req.hdrr' (did you mean 'req.hdr'?)"
    );
    assert_eq!(perr("xyzzy", st), "unknown fetch method 'xyzzy'");
    assert_eq!(perr("path_beg", st), "unknown fetch method 'path_beg'");
    assert_eq!(
        perr("path,lowr", st),
        "unknown converter 'lowr' (did you mean 'lower'?)"
    );
    assert_eq!(
        perr("path,frobnicate", st),
        "unknown converter 'frobnicate'"
    );
    assert_eq!(
        perr("status", st),
        "fetch method 'status' extracts information from the response, which is not available here"
    );
    assert_eq!(
        perr("res.hdr(x)", st),
        "fetch method 'res.hdr' extracts information from the response, which is not available here"
    );
    assert_eq!(
        perr("grpc_status", st),
        "fetch method 'grpc_status' extracts information from the response, which is not available here"
    );
    assert_eq!(
        perr("req.hdr", st),
        "fetch method 'req.hdr': missing argument (usage: req.hdr(<header name>[,<occurrence>]))"
    );
    assert_eq!(
        perr("req.hdr(a,1,2)", st),
        "fetch method 'req.hdr': too many arguments (usage: req.hdr(<header name>[,<occurrence>]))"
    );
    assert_eq!(
        perr("req.hdr(a,x)", st),
        "fetch method 'req.hdr': argument 2 must be an integer, got 'x'"
    );
    assert_eq!(
        perr("req.hdr(a b)", st),
        "fetch method 'req.hdr': invalid header name 'a b'"
    );
    assert_eq!(
        perr("path(x)", st),
        "fetch method 'path' takes no arguments"
    );
    assert_eq!(
        perr("int(x)", st),
        "fetch method 'int': argument 1 must be an integer, got 'x'"
    );
    assert_eq!(
        perr("bool(maybe)", st),
        "fetch method 'bool': expects 'true', 'false', '1' or '0', got 'maybe'"
    );
    assert_eq!(
        perr("path,field(0,/)", st),
        "converter 'field': index must not be 0 (fields count from 1, or from -1 at the end)"
    );
    assert_eq!(
        perr("path,field(1)", st),
        "converter 'field': missing argument (usage: field(<index>,<delimiters>[,<count>]))"
    );
    assert_eq!(
        perr("path,field(1,)", st),
        "converter 'field': the delimiter list must not be empty"
    );
    assert_eq!(
        perr("path,add", st),
        "converter 'add': missing argument (usage: add(<integer>))"
    );
    assert_eq!(
        perr("path,lower(1)", st),
        "converter 'lower' takes no arguments"
    );
    assert_eq!(
        perr("path,regsub(a(,b)", st),
        "missing ')' after the arguments of 'regsub' in 'path,regsub(a(,b)'"
    );
    assert_eq!(
        perr("path,regsub([,b)", st),
        "regex '[' is invalid: unclosed character class"
    );
    assert_eq!(
        perr("path,regsub(a,b,x)", st),
        "converter 'regsub': unknown flag 'x' (expected g or i)"
    );
    assert_eq!(
        perr("ssl_fc,ipmask(24)", st),
        "converter 'ipmask' expects an ip address, but gets a boolean"
    );
    assert_eq!(
        perr("src,ipmask(33)", st),
        "converter 'ipmask': '33' is not a valid IPv4 mask"
    );
    assert_eq!(perr("", st), "missing fetch method in ''");
    assert_eq!(
        perr("path,", st),
        "missing converter name after ',' in 'path,'"
    );
    assert_eq!(
        perr("req.hdr(x", st),
        "missing ')' after the arguments of 'req.hdr' in 'req.hdr(x'"
    );
    assert_eq!(
        perr("req.hdr(x)y", st),
        "unexpected 'y' after ')' in 'req.hdr(x)y'"
    );
}

#[test]
fn acl_errors() {
    assert_eq!(acl_err(""), "missing acl name");
    assert_eq!(acl_err("x"), "missing criterion for acl 'x'");
    assert_eq!(
        acl_err("a/b path /x"),
        "invalid character '/' in acl name 'a/b' (only letters, digits, '-', '_', '.' and ':' are allowed)"
    );
    assert_eq!(
        acl_err("x pathh /x"),
        "unknown fetch method 'pathh' (did you mean 'path'?)"
    );
    assert_eq!(
        acl_err("x path_bge /x"),
        "unknown fetch method 'path_bge' (did you mean 'path_beg'?)"
    );
    assert_eq!(acl_err("x path"), "no pattern to match against for 'path'");
    assert_eq!(
        acl_err("x req.hdr(host) -i"),
        "no pattern to match against for 'req.hdr(host)'"
    );
    assert_eq!(
        acl_err("x path_reg ^/(a"),
        "regex '^/(a' is invalid: unclosed group"
    );
    assert_eq!(
        acl_err("x path -m foo /x"),
        "unknown match method 'foo' (expected one of: str, beg, end, sub, reg, dir, dom, len, int, ip, bool, found)"
    );
    assert_eq!(acl_err("x path -m"), "flag '-m' expects a match method");
    assert_eq!(acl_err("x path -f"), "flag '-f' expects a file name");
    assert_eq!(
        acl_err("x path -x /a"),
        "unknown flag '-x' (expected -i, -f, -m, -n, -u or --)"
    );
    assert_eq!(
        acl_err("x path_beg -m str /a"),
        "'-m' cannot be used with 'path_beg', which already implies '-m beg'"
    );
    assert_eq!(
        acl_err("x path -m found /a"),
        "match method 'found' takes no pattern, got '/a'"
    );
    assert_eq!(
        acl_err("x ssl_fc 1"),
        "match method 'bool' takes no pattern, got '1'"
    );
    assert_eq!(
        acl_err("x ssl_fc -m ip 10.0.0.0/8"),
        "match method 'ip' needs an ip address, but 'ssl_fc' gives a boolean"
    );
    assert_eq!(
        acl_err("x status abc"),
        "'abc' is not a valid integer or range (expected <n>, <lo>:<hi>, :<hi> or <lo>:)"
    );
    assert_eq!(acl_err("x status ge"), "missing value after operator 'ge'");
    assert_eq!(
        acl_err("x status ge x"),
        "operator 'ge' expects an integer, got 'x'"
    );
    assert_eq!(
        acl_err("x src 10.0.0.0/33"),
        "'10.0.0.0/33' is not a valid IPv4 or IPv6 address or network"
    );
    assert_eq!(
        acl_err("x src localhost"),
        "'localhost' is not a valid IPv4 or IPv6 address or network"
    );
    // Accepted and ignored flags.
    let mut a = Acls::default();
    a.define(&w("x src -n -u 7 10.0.0.0/8"), Path::new("."))
        .unwrap();
    a.define(&w("y path -m found"), Path::new(".")).unwrap();
    a.define(&w("z req.hdr(x) -m bool"), Path::new("."))
        .unwrap();
}

#[test]
fn condition_errors() {
    let mut acls = Acls::default();
    acls.define(&w("is_api path_beg /api"), Path::new("."))
        .unwrap();
    acls.define(&w("is_err status 500:599"), Path::new("."))
        .unwrap();
    let st = Stage::Request;
    assert_eq!(cond_err("foo", &acls, st), "no such ACL : 'foo'");
    assert_eq!(
        cond_err("is_apj", &acls, st),
        "no such ACL : 'is_apj' (did you mean 'is_api'?)"
    );
    assert_eq!(
        cond_err("METH_GTE", &acls, st),
        "no such ACL : 'METH_GTE' (did you mean 'METH_GET'?)"
    );
    assert_eq!(cond_err("", &acls, st), "missing condition after 'if'");
    assert_eq!(
        Condition::parse(&[], true, &acls, st, Path::new(".")).unwrap_err(),
        "missing condition after 'unless'"
    );
    assert_eq!(
        cond_err("{ path /x", &acls, st),
        "missing '}' to close the anonymous ACL"
    );
    assert_eq!(cond_err("path /x }", &acls, st), "no such ACL : 'path'");
    assert_eq!(
        cond_err("is_api }", &acls, st),
        "unexpected '}' without a matching '{'"
    );
    assert_eq!(cond_err("{ }", &acls, st), "empty anonymous ACL '{ }'");
    assert_eq!(
        cond_err("{ path { /x } }", &acls, st),
        "unexpected '{' inside an anonymous ACL"
    );
    assert_eq!(
        cond_err("{ path }", &acls, st),
        "no pattern to match against for 'path'"
    );
    assert_eq!(
        cond_err("is_api !", &acls, st),
        "missing ACL name after '!'"
    );
    assert_eq!(cond_err("|| is_api", &acls, st), "missing ACL before '||'");
    assert_eq!(cond_err("is_api ||", &acls, st), "missing ACL after '||'");
    assert_eq!(cond_err("is_api or", &acls, st), "missing ACL after 'or'");
    assert_eq!(
        cond_err("is_api || || is_api", &acls, st),
        "missing ACL before '||'"
    );
    assert_eq!(
        cond_err("is_api && is_api", &acls, st),
        "no such ACL : '&&'"
    );
    assert_eq!(
        cond_err("{ status 200 }", &acls, st),
        "fetch method 'status' extracts information from the response, which is not available here"
    );
    assert_eq!(
        cond_err("is_api || is_err", &acls, st),
        "acl 'is_err': fetch method 'status' extracts information from the response, which is not available here"
    );
    for stage in [Stage::Response, Stage::Log] {
        assert!(Condition::parse(
            &w("is_err { status 503 }"),
            false,
            &acls,
            stage,
            Path::new(".")
        )
        .is_ok());
    }
}

#[test]
fn connection_stage_takes_only_connection_fetches() {
    for ok in [
        "src",
        "src_port",
        "dst",
        "dst_port",
        "fe_name",
        "always_true",
        "int(3)",
        "sc0_conn_cur",
        "sc_http_err_rate(1,t)",
        "sc2_get_gpc0(t)",
        "sc_inc_gpc0(0)",
        "src_conn_rate",
        "src,table_conn_cur(t)",
    ] {
        assert!(Expr::parse(ok, Stage::Connection).is_ok(), "{ok}");
    }
    for bad in ["path", "req.hdr(x)", "status", "ssl_fc_sni", "method"] {
        let e = perr(bad, Stage::Connection);
        assert!(
            e.contains("not available in 'tcp-request connection' rules"),
            "{bad}: {e}"
        );
    }
    let mut acls = Acls::default();
    acls.define(&w("is_api path_beg /api"), Path::new("."))
        .unwrap();
    let e = cond_err("is_api", &acls, Stage::Connection);
    assert!(e.contains("acl 'is_api'") && e.contains("'path'"), "{e}");
    let e = cond_err("{ hdr(x) -m found }", &acls, Stage::Connection);
    assert!(e.contains("'hdr'"), "{e}");
}

#[test]
fn stick_counter_fetches_parse_and_name_their_tables() {
    let e = Expr::parse("sc_conn_cur(1,rl),add(1)", Stage::Request).unwrap();
    assert_eq!(e.tables().collect::<Vec<_>>(), ["rl"]);
    let e = Expr::parse("src,table_http_err_rate(errs)", Stage::Request).unwrap();
    assert_eq!(e.tables().collect::<Vec<_>>(), ["errs"]);
    let e = Expr::parse("src_get_gpc0", Stage::Request).unwrap();
    assert_eq!(e.tables().count(), 0);
    assert!(perr("sc_conn_cur(3)", Stage::Request).contains("must be 0, 1 or 2"));
    assert!(perr("sc3_conn_cur", Stage::Request).contains("unknown fetch method"));
    assert!(perr("sc0_conn_bogus", Stage::Request).contains("unknown fetch method"));
    assert!(perr("src_conn_cur(a,b)", Stage::Request).contains("too many arguments"));
    assert!(perr("src,table_gpc1(t)", Stage::Request).contains("unknown converter"));
    let c = Condition::parse(
        &w("{ sc0_http_err_cnt(a) gt 1 } || { src,table_gpc0(b) gt 0 }"),
        false,
        &Acls::default(),
        Stage::Request,
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.tables().collect::<Vec<_>>(), ["a", "b"]);
    // No tables: no sample, the ACL does not match.
    let req = grpc_req();
    let i = input(&req);
    assert_eq!(ev("sc0_conn_cur", &i), None);
    assert!(!acl("src_http_err_rate ge 0", &i));
}
