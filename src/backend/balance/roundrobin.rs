//! `balance roundrobin` and `balance static-rr`: smooth weighted round
//! robin.
//!
//! The visiting order is precomputed ([`smooth_schedule`]: weights 3:1 give
//! `a a b a`, not `a a a b`) and walked with one atomic cursor, so a pick
//! takes no lock. A server that cannot take the call is skipped and the
//! walk goes on (each server proposed once).
//!
//! `roundrobin` is dynamic: `update` recomputes the order from the usable
//! servers' effective weights (health, maintenance, runtime weight,
//! slowstart) and swaps it in. `static-rr` keeps the order of the
//! configured weights for good (like HAProxy, weight changes have no
//! effect); servers that are down are skipped as they are met.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{smooth_schedule, usable, weight_of, Balancer, Offer, PickCtx, Rebuilt};
use crate::backend::server::Server;

/// A visiting order and how many distinct servers it holds.
#[derive(Default)]
struct Schedule {
    order: Vec<u32>,
    members: usize,
}

impl Schedule {
    fn of(weights: &[u32]) -> Self {
        Schedule {
            order: smooth_schedule(weights),
            members: weights.iter().filter(|&&w| w > 0).count(),
        }
    }

    /// Walks the order from the shared cursor: the first accepted server,
    /// then every other server.
    fn walk(
        &self,
        cursor: &AtomicUsize,
        servers: &[Arc<Server>],
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let mut offer = Offer::new(servers, accept);
        let n = self.order.len();
        if n == 0 {
            return offer.rest(cursor.fetch_add(1, Ordering::Relaxed) % servers.len().max(1));
        }
        let start = cursor.fetch_add(1, Ordering::Relaxed);
        let first = self.order[start % n] as usize;
        if offer.offer(first) {
            return Some(first);
        }
        // Rare (down or full): walk on, at most one whole schedule, which
        // covers every server in it.
        for k in 1..n {
            if offer.count() >= self.members {
                break;
            }
            let idx = self.order[(start + k) % n] as usize;
            if offer.offer(idx) {
                // Move the shared cursor past the skipped entries too.
                cursor.fetch_add(k, Ordering::Relaxed);
                return Some(idx);
            }
        }
        offer.rest(first)
    }
}

/// `balance roundrobin`: follows effective weights and server state.
pub struct RoundRobin {
    schedule: Rebuilt<Schedule>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(servers: &[Arc<Server>]) -> Self {
        RoundRobin {
            schedule: Rebuilt::new(Self::schedule(servers)),
            cursor: AtomicUsize::new(0),
        }
    }

    fn schedule(servers: &[Arc<Server>]) -> Schedule {
        let weights: Vec<u32> = servers
            .iter()
            .map(|s| if usable(s) { weight_of(s) } else { 0 })
            .collect();
        Schedule::of(&weights)
    }
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        self.schedule.load().walk(&self.cursor, servers, accept)
    }

    fn update(&self, servers: &[Arc<Server>]) {
        self.schedule.rebuild(|| Self::schedule(servers));
    }
}

/// `balance static-rr`: the configured weights, never recomputed.
pub struct StaticRr {
    schedule: Schedule,
    cursor: AtomicUsize,
}

impl StaticRr {
    pub fn new(servers: &[Arc<Server>]) -> Self {
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        StaticRr {
            schedule: Schedule::of(&weights),
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Balancer for StaticRr {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        self.schedule.walk(&self.cursor, servers, accept)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_updates() {
        let servers = servers(&[1, 1, 1]);
        let rr = RoundRobin::new(&servers);
        assert_eq!(counts(&rr, &servers, 300), vec![100, 100, 100]);
        set_down(&servers[1], true);
        rr.update(&servers);
        assert_eq!(counts(&rr, &servers, 300), vec![150, 0, 150]);
        servers[0].set_weight(2);
        rr.update(&servers);
        assert_eq!(counts(&rr, &servers, 300), vec![200, 0, 100]);
        set_down(&servers[1], false);
        rr.update(&servers);
        assert_eq!(counts(&rr, &servers, 400), vec![200, 100, 100]);
    }

    #[test]
    fn static_rr_ignores_runtime_weights() {
        let servers = servers(&[1, 1]);
        let rr = StaticRr::new(&servers);
        servers[0].set_weight(4);
        rr.update(&servers);
        assert_eq!(counts(&rr, &servers, 100), vec![50, 50]);
        set_down(&servers[0], true);
        assert_eq!(counts(&rr, &servers, 100), vec![0, 100]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Over whole schedules, each server gets its weight's share (up to
        /// one schedule's rounding).
        #[test]
        fn weights_are_respected(weights in proptest::collection::vec(1u32..=256, 1..24)) {
            let servers = servers(&weights);
            let total: u32 = weights.iter().sum();
            let rounds = 20usize;
            for b in [
                Box::new(RoundRobin::new(&servers)) as Box<dyn Balancer>,
                Box::new(StaticRr::new(&servers)),
            ] {
                let c = counts(b.as_ref(), &servers, total as usize * rounds);
                prop_assert!(follows_weights(&c, &weights, 0.05), "{c:?} for {weights:?}");
            }
        }
    }
}
