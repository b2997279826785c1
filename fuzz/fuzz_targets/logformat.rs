//! `log-format` strings (and header values built from them, which go
//! through the same parser): parse at each stage, then render the result,
//! as text and as JSON, for a fixed request and log record. Must never
//! panic; the JSON form must be valid JSON.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use weir::acl::Stage;
use weir::observe::logformat::{HttpLogRecord, LogFormat};
use weir_fuzz::Req;

fn record() -> HttpLogRecord {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("fixed address");
    HttpLogRecord {
        client: addr("192.0.2.7:40000"),
        local: addr("[2001:db8::1]:8443"),
        accept_date: UNIX_EPOCH + Duration::from_millis(1_795_341_600_100),
        request_date: UNIX_EPOCH + Duration::from_millis(1_795_341_600_123),
        frontend: "fe_main".into(),
        backend: "be_grpc".into(),
        server: "s1".into(),
        th: 0,
        ti: 1,
        treq: 2,
        tw: -1,
        tc: 3,
        tr: 4,
        ta: 5,
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
        req_captures: vec![Some("abc \"1\"\n".into()), None],
        res_captures: vec![Some("\u{7f}x]".into())],
        method: "POST".into(),
        uri: "/pkg.Greeter/SayHello?a=1".into(),
        version: "HTTP/2.0",
        grpc_status: Some(0),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let req = Req::new(&[]);
    let input = req.input();
    let rec = record();
    for stage in [Stage::Request, Stage::Response, Stage::Log] {
        let Ok(f) = LogFormat::parse(text, stage) else {
            continue;
        };
        let _ = f.uses_samples();
        let mut out = String::new();
        f.render(Some(&rec), Some(&input), &mut out);
        out.clear();
        f.render(None, Some(&input), &mut out);
        out.clear();
        f.render(None, None, &mut out);
        let f = f.json(true);
        out.clear();
        f.render(Some(&rec), Some(&input), &mut out);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
            panic!("log-format {text:?} rendered invalid JSON {out:?}: {e}");
        }
    }
});
