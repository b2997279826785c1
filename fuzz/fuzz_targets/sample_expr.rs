//! Sample expressions (`%[...]`, fetch + converters), ACL definitions and
//! `if`/`unless` conditions: parse, and when that succeeds, evaluate against
//! a fixed synthetic gRPC request (with a response, TLS facts and a bearer
//! token), so that converters run on request data.
//!
//! Input layout: the first byte picks the mode and stage; the rest, up to an
//! optional NUL, is the text; what follows the NUL becomes the value of an
//! `x-fuzz` request header (so `req.hdr(x-fuzz),<converter>` runs converters
//! on fuzzed bytes). Modes:
//! 0. `Expr::parse(text)` + eval;
//! 1. `Condition::parse(words)` + eval (`if`);
//! 2. every line but the last is an `acl` line (`<name> <criterion> ...`),
//!    the last line an `unless` condition using them;
//! 3. `split_cond` on the words, then the part after `if`/`unless`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir::acl::{split_cond, Acls, Condition, Expr, Stage};
use weir_fuzz::Req;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (text, header) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let stage = match (sel >> 2) % 3 {
        0 => Stage::Request,
        1 => Stage::Response,
        _ => Stage::Log,
    };
    // Relative pattern files (`-f x`) are looked up here: nowhere.
    let base = Path::new("/nonexistent/weir-fuzz");
    let req = Req::new(&[("x-fuzz", header)]);
    let input = req.input();
    match sel % 4 {
        0 => {
            if let Ok(e) = Expr::parse(text, stage) {
                if let Some(s) = e.eval(&input) {
                    let _ = s.to_string();
                }
            }
        }
        1 => {
            if let Ok(c) = Condition::parse(&words(text), false, &Acls::default(), stage, base) {
                c.eval(&input);
            }
        }
        2 => {
            let mut acls = Acls::default();
            let mut lines: Vec<&str> = text.lines().collect();
            let last = lines.pop().unwrap_or("");
            for line in lines {
                if acls.define(&words(line), base).is_err() {
                    return;
                }
            }
            if let Ok(c) = Condition::parse(&words(last), true, &acls, stage, base) {
                c.eval(&input);
            }
        }
        _ => {
            let w = words(text);
            let (_, cond) = split_cond(&w);
            if let Some((unless, after)) = cond {
                if let Ok(c) = Condition::parse(after, unless, &Acls::default(), stage, base) {
                    c.eval(&input);
                }
            }
        }
    }
});
