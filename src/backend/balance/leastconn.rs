//! `balance leastconn`: the server with the fewest calls (HTTP) or
//! connections (TCP) in flight per unit of effective weight; ties go round
//! robin so equal servers share the load.
//!
//! The effective weights (0 for servers that are not usable) are a
//! snapshot `update` refreshes, so a pick reads one `ArcSwap` and the
//! servers' in-flight counters, nothing else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{usable, weight_of, Balancer, Offer, PickCtx, Rebuilt};
use crate::backend::server::Server;

pub struct LeastConn {
    /// Effective weight per server; 0: not usable at the last update.
    weights: Rebuilt<Vec<u32>>,
    rotate: AtomicUsize,
}

impl LeastConn {
    pub fn new(servers: &[Arc<Server>]) -> Self {
        LeastConn {
            weights: Rebuilt::new(Self::weights(servers)),
            rotate: AtomicUsize::new(0),
        }
    }

    fn weights(servers: &[Arc<Server>]) -> Vec<u32> {
        servers
            .iter()
            .map(|s| if usable(s) { weight_of(s) } else { 0 })
            .collect()
    }
}

/// The least loaded server (in flight per unit of weight; compared by
/// cross-multiplication, no division) that has a weight and that `skip`
/// does not exclude, scanning from `start` so that ties rotate.
fn least_loaded(
    servers: &[Arc<Server>],
    weights: &[u32],
    start: usize,
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = servers.len().min(weights.len());
    let mut best: Option<(usize, u64, u64)> = None;
    for i in (start.min(n)..n).chain(0..start.min(n)) {
        let w = u64::from(weights[i]);
        if w == 0 || skip(i) {
            continue;
        }
        let f = u64::from(servers[i].state.inflight.load(Ordering::Relaxed));
        if best.is_none_or(|(_, bf, bw)| f * bw < bf * w) {
            best = Some((i, f, w));
        }
    }
    best.map(|(i, _, _)| i)
}

/// In flight per unit of weight, for sorting.
fn load(s: &Server, weight: u32) -> u64 {
    u64::from(s.state.inflight.load(Ordering::Relaxed)) * 65_536 / u64::from(weight.max(1))
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
        let weights = self.weights.load();
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut offer = Offer::new(servers, accept);
        // The least loaded; after a refusal (down or full) the next least
        // loaded, a few times, each a scan...
        for _ in 0..4 {
            let Some(i) = least_loaded(servers, &weights, start, |i| offer.proposed(i)) else {
                return offer.rest(start);
            };
            if offer.offer(i) {
                return Some(i);
            }
        }
        // ...then (many refused) the others sorted by load.
        let mut rest: Vec<(u64, usize, usize)> = (0..n.min(weights.len()))
            .filter(|&i| weights[i] > 0 && !offer.proposed(i))
            .map(|i| (load(&servers[i], weights[i]), (i + n - start) % n, i))
            .collect();
        rest.sort_unstable();
        for (_, _, i) in rest {
            if offer.offer(i) {
                return Some(i);
            }
        }
        offer.rest(start)
    }

    fn update(&self, servers: &[Arc<Server>]) {
        self.weights.rebuild(|| Self::weights(servers));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn least_loaded_per_weight_wins() {
        let servers = servers(&[1, 2, 1]);
        let lc = LeastConn::new(&servers);
        servers[0].state.inflight.store(2, Ordering::Relaxed);
        servers[1].state.inflight.store(3, Ordering::Relaxed);
        servers[2].state.inflight.store(1, Ordering::Relaxed);
        let none = HashSet::new();
        assert_eq!(pick_checked(&lc, &servers, None, &none), Some(2));
        servers[2].state.inflight.store(2, Ordering::Relaxed);
        // 3/2 < 2/1
        assert_eq!(pick_checked(&lc, &servers, None, &none), Some(1));
        // Refused: the next least loaded.
        let refuse: HashSet<usize> = [1].into();
        let got = pick_checked(&lc, &servers, None, &refuse);
        assert!(got == Some(0) || got == Some(2));
    }

    #[test]
    fn ties_rotate() {
        let servers = servers(&[1, 1, 1, 1]);
        let lc = LeastConn::new(&servers);
        assert_eq!(counts(&lc, &servers, 400), vec![100; 4]);
    }

    #[test]
    fn follows_updates() {
        let servers = servers(&[1, 1]);
        let lc = LeastConn::new(&servers);
        set_down(&servers[0], true);
        lc.update(&servers);
        assert_eq!(counts(&lc, &servers, 10), vec![0, 10]);
    }
}
