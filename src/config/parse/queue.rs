//! Queue keywords: `maxqueue <n>` on a backend (weir's own) and the
//! `maxqueue <n>` server option (HAProxy's). `timeout queue` is with the
//! other timeouts in the parent module.

use super::{Ctx, ProxyDraft, R};
use crate::config::units::parse_u32;

/// `maxqueue <number>`: how many calls may wait in the backend queue;
/// 0 means no limit (as for HAProxy's server `maxqueue`).
pub(crate) fn maxqueue(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let n = parse_u32(ctx.single("<number>")?, 0, u32::MAX)?;
    p.maxqueue = (n > 0).then_some(n);
    Ok(())
}

/// The value of the `maxqueue <number>` server option: `None` for 0 (no
/// limit).
pub(crate) fn server_maxqueue(value: &str) -> Result<Option<u32>, String> {
    let n = parse_u32(value, 0, u32::MAX).map_err(|e| format!("'maxqueue' : {e}"))?;
    Ok((n > 0).then_some(n))
}
