//! The `grpc-timeout` request header (`weir::http::deadline`): every client
//! sends it, so the parser sees raw network bytes. Checks, besides "no
//! panic": a parsed value encodes back to itself, any duration encodes to a
//! value that parses and is never shorter (unless it exceeds the format's
//! maximum), and the value sent upstream never exceeds the client's budget.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir::http::deadline::{encode, parse, upstream_value};

/// 99_999_999 hours: the largest value the header can carry.
const MAX: Duration = Duration::from_secs(99_999_999 * 3600);

fuzz_target!(|data: &[u8]| {
    // The header value as sent.
    if let Some(d) = parse(data) {
        assert!(d <= MAX);
        let back = encode(d);
        assert_eq!(
            parse(back.as_bytes()),
            Some(d),
            "{data:?} -> {d:?} -> {back:?}"
        );
    }
    // Arbitrary durations: the first 12 bytes, when there are that many.
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let nanos = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let v = encode(d);
        let got = parse(v.as_bytes()).expect("encode() output parses");
        assert!(got >= d.min(MAX), "{d:?} -> {v:?} -> {got:?}");
        // The rest as the client's budget: the header sent upstream is never
        // above it.
        if let Some(budget) = parse(&data[12..]) {
            let up = upstream_value(d, budget);
            let sent = parse(up.as_bytes()).expect("upstream_value() output parses");
            assert!(sent <= budget, "{d:?} {budget:?} -> {up:?}");
        }
    }
});
