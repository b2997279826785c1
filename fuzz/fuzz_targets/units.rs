//! Value parsers shared by the keyword parsers: `parse_time`, `parse_size`.
//! Must never panic; a value that parses stays within its documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = weir::config::parse_time(s) {
        assert!(d.as_millis() <= i32::MAX as u128, "{s:?} -> {d:?}");
    }
    let _ = weir::config::parse_size(s);
});
