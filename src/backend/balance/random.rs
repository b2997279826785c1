//! `balance random[(<draws>)]`: `draws` servers drawn at random, weighted
//! by effective weight, and the one with the fewest calls in flight is
//! proposed (power of `draws` choices; `draws` 1 is plain weighted random).
//! When it is refused, the others are proposed in file order from a random
//! one. The weighted table of usable servers is rebuilt on `update`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Balancer, Offer, PickCtx, Rebuilt, WeightedSet};
use crate::backend::server::Server;

pub struct Random {
    draws: u32,
    set: Rebuilt<WeightedSet>,
}

impl Random {
    pub fn new(draws: u32, servers: &[Arc<Server>]) -> Self {
        Random {
            draws: draws.max(1),
            set: Rebuilt::new(WeightedSet::of(servers)),
        }
    }
}

impl Balancer for Random {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let set = self.set.load();
        let mut offer = Offer::new(servers, accept);
        let mut best: Option<(usize, u32)> = None;
        for _ in 0..self.draws {
            let Some(j) = set.draw() else { break };
            let i = set.idx[j] as usize;
            let Some(s) = servers.get(i) else { continue };
            let load = s.state.inflight.load(Ordering::Relaxed);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        if let Some((i, _)) = best {
            if offer.offer(i) {
                return Some(i);
            }
        }
        offer.rest(fastrand::usize(..servers.len().max(1)))
    }

    fn update(&self, servers: &[Arc<Server>]) {
        self.set.rebuild(|| WeightedSet::of(servers));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn the_least_loaded_of_the_draws() {
        let servers = servers(&[1, 1]);
        servers[0].state.inflight.store(5, Ordering::Relaxed);
        let b = Random::new(64, &servers);
        // 64 draws over two servers: the idle one is drawn, and wins.
        let none = HashSet::new();
        for _ in 0..20 {
            assert_eq!(pick_checked(&b, &servers, None, &none), Some(1));
        }
    }

    #[test]
    fn follows_updates() {
        let servers = servers(&[1, 1, 1]);
        let b = Random::new(2, &servers);
        set_down(&servers[2], true);
        b.update(&servers);
        let c = counts(&b, &servers, 1000);
        assert_eq!(c[2], 0);
        assert!(c[0] > 350 && c[1] > 350, "{c:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// With nothing in flight, picks follow the weights.
        #[test]
        fn weights_are_respected(
            weights in proptest::collection::vec(1u32..=16, 2..10),
            draws in 1u32..4,
        ) {
            let servers = servers(&weights);
            let b = Random::new(draws, &servers);
            let c = counts(&b, &servers, 40_000);
            prop_assert!(follows_weights(&c, &weights, 0.15), "{c:?} for {weights:?}");
        }
    }
}
