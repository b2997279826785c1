//! `balance leastconn`: the server with the fewest calls (HTTP) or
//! connections (TCP) in flight per unit of weight; ties go round robin so
//! equal servers share the load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Balancer, PickCtx};
use crate::backend::server::Server;

#[derive(Default)]
pub struct LeastConn {
    rotate: AtomicUsize,
}

impl Balancer for LeastConn {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let n = servers.len();
        if n == 0 {
            return None;
        }
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut tried = 0u64; // bitmask for the first 64, linear for the rest
        let mut tried_big = vec![false; n.saturating_sub(64)];
        for _ in 0..n {
            // The least loaded server not tried yet, scanning from `start`.
            let mut best: Option<(usize, u64)> = None;
            for k in 0..n {
                let i = (start + k) % n;
                let done = if i < 64 {
                    tried & (1 << i) != 0
                } else {
                    tried_big[i - 64]
                };
                let s = &servers[i];
                if done || s.weight == 0 {
                    continue;
                }
                // load = inflight / weight, compared without division.
                let load =
                    u64::from(s.state.inflight.load(Ordering::Relaxed)) * 256 / u64::from(s.weight);
                if best.is_none_or(|(_, b)| load < b) {
                    best = Some((i, load));
                }
            }
            let (i, _) = best?;
            if i < 64 {
                tried |= 1 << i;
            } else {
                tried_big[i - 64] = true;
            }
            if accept(&servers[i]) {
                return Some(i);
            }
        }
        None
    }
}
