//! The whole configuration pipeline (lexer, sections, keyword parsers,
//! ACLs and rules, resolve) on arbitrary bytes, read like `weir -f` reads a
//! file (UTF-8, lossy). Environment variables come from a fixed table, so
//! that runs are reproducible. Must never panic; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/weir".into()),
        "PORT" => Some("8080".into()),
        "ADDR" => Some("127.0.0.1:9000".into()),
        "EMPTY" => Some(String::new()),
        "SPACES" => Some("a b  c".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match weir::config::parse_str_with_env("fuzz.cfg", &text, &env) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                let _ = w.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
