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

impl LeastConn {
    /// The least loaded server with a weight that `skip` does not exclude,
    /// scanning from `start` so that ties rotate.
    fn least_loaded(
        servers: &[Arc<Server>],
        start: usize,
        skip: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = servers.len();
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let s = &servers[i];
            if s.weight == 0 || skip(i) {
                continue;
            }
            // load = inflight / weight, kept integral.
            let load =
                u64::from(s.state.inflight.load(Ordering::Relaxed)) * 256 / u64::from(s.weight);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
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
        let first = Self::least_loaded(servers, start, |_| false)?;
        if accept(&servers[first]) {
            return Some(first);
        }
        // Rare (down or full): the others, least loaded first.
        let mut tried = vec![false; n];
        tried[first] = true;
        while let Some(i) = Self::least_loaded(servers, start, |i| tried[i]) {
            tried[i] = true;
            if accept(&servers[i]) {
                return Some(i);
            }
        }
        None
    }
}
