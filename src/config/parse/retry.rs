//! Retry keywords: `retry-on <events>`, `retry-buffer <size>` (weir's own)
//! and `option redispatch`. `retries <n>` is in the parent module.

use super::{Ctx, ProxyDraft, R};
use crate::config::keywords::did_you_mean;
use crate::config::units::{parse_int, parse_size};
use crate::config::RetryOn;

/// The events weir acts on, as written in `retry-on`.
const EVENTS: &[(&str, RetryOn)] = &[
    ("conn-failure", RetryOn::CONN_FAILURE),
    ("empty-response", RetryOn::EMPTY_RESPONSE),
    ("refused-stream", RetryOn::REFUSED_STREAM),
    ("unavailable", RetryOn::UNAVAILABLE),
    ("resource-exhausted", RetryOn::RESOURCE_EXHAUSTED),
    ("503", RetryOn::HTTP_503),
    ("all-retryable-errors", RetryOn::ALL),
    ("none", RetryOn::NONE),
];

/// HAProxy events weir does not act on (yet): accepted with a warning.
const HAPROXY_ONLY: &[&str] = &[
    "response-timeout",
    "junk-response",
    "0rtt-rejected",
    "404",
    "408",
    "425",
    "500",
    "501",
    "502",
    "504",
];

/// The largest `retry-buffer`: 16 MiB per call is already a lot of memory.
const MAX_BUFFER: u64 = 16 << 20;

/// `retry-on <event> [<event> ...]`
pub(crate) fn retry_on(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    ctx.need(1, "<event>")?;
    let mut on = RetryOn::NONE;
    let words: Vec<&str> = ctx.words[1..].iter().map(String::as_str).collect();
    for word in words {
        if let Some((_, bits)) = EVENTS.iter().find(|(n, _)| *n == word) {
            if word == "none" && ctx.words.len() > 2 {
                return Err("'none' cannot be combined with other events".into());
            }
            on = on.union(*bits);
        } else if HAPROXY_ONLY.contains(&word) {
            ctx.warn_plain(format!(
                "'retry-on {word}' has no effect in weir yet, ignored"
            ));
        } else {
            let names: Vec<&str> = EVENTS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown event '{word}'{} (expected one of {})",
                did_you_mean(word, names.iter().copied()),
                names.join(", ")
            ));
        }
    }
    p.options.retry_on = Some(on);
    Ok(())
}

/// `retry-buffer <size>`
pub(crate) fn retry_buffer(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let size = parse_size(ctx.single("<size>")?)?;
    if size > MAX_BUFFER {
        return Err(format!(
            "size value '{}' is too large (the maximum is 16m)",
            ctx.words[1]
        ));
    }
    p.options.retry_buffer = Some(size);
    Ok(())
}

/// `[no] option redispatch [<interval>]`: weir redispatches every retry, so
/// an interval other than 1 is accepted with a warning.
pub(crate) fn redispatch(ctx: &mut Ctx, p: &mut ProxyDraft, on: bool) -> R {
    if let Some(interval) = ctx.words.get(2) {
        let signed = interval.strip_prefix('-').unwrap_or(interval);
        parse_int(signed, 0, u64::from(u32::MAX))
            .map_err(|e| format!("'option redispatch' : {e}"))?;
        ctx.max_args(2)?;
        if interval != "1" {
            ctx.warn_plain(format!(
                "'option redispatch {interval}': weir redispatches every retry, interval ignored"
            ));
        }
    }
    p.options.redispatch = on;
    Ok(())
}
