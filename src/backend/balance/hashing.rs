//! `balance source`, `balance uri`, `balance hdr(<name>)`: the hash of a
//! key (computed by the caller, [`super::hash_key`]) picks the server, so
//! one key keeps landing on the same server while the server set is
//! stable. Without a key (`hdr` and the header is absent) the pick is
//! round robin, as in HAProxy.
//!
//! `hash-type map-based` (default): the usable servers, each repeated by
//! its effective weight (smoothly interleaved), and `hash % len` picks the
//! slot. Any change in the set of usable servers or their weights moves
//! most keys.
//!
//! `hash-type consistent`: a hash ring. A server with effective weight `w`
//! has `w * points_per_weight` points, point `j` at a position hashed from
//! the server's *name* and `j` alone, so a point never moves when other
//! servers come, go or change weight, nor when the configuration lists the
//! servers in another order. A key goes to the first point at or after its
//! hash (32-bit space: the key's hash is folded to 32 bits, HAProxy's ring
//! size), found by binary search.
//!
//! The ring holds the *usable* servers only and `update` rebuilds it. Since
//! points depend on nothing but their own server, this gives exactly the
//! mapping of a full ring walked past the points of unusable servers: when
//! a server goes down only its keys move (each to the next point of
//! another server, spread over all of them), about 1/N of the keys; when
//! it comes back exactly those keys return. Weight changes (slowstart)
//! add or remove a server's last points only, so they move keys in
//! proportion. A target that refuses the call (full) makes the pick walk
//! on to the next points of other servers, so that key's overflow also
//! goes to its ring neighbours.

use std::sync::Arc;

use super::{
    hash_bytes, mix64, smooth_schedule, usable, weight_of, Balancer, Offer, PickCtx, Rebuilt,
    RoundRobin,
};
use crate::backend::server::Server;
use crate::config::HashMethod;

/// Ring points per unit of weight when the configured weights are small.
const POINTS_PER_WEIGHT: u64 = 40;
/// Above this many points (configured weights times points per weight),
/// fewer points per weight are used (at least one): 8 MiB of ring.
const MAX_RING_POINTS: u64 = 1 << 20;

/// A lookup structure, rebuilt on `update`.
enum Table {
    /// Server indexes, each repeated by its weight; `hash % len`.
    Map { slots: Vec<u32>, members: usize },
    /// (position, server index), sorted.
    Ring {
        points: Vec<(u32, u32)>,
        members: usize,
    },
}

pub struct Hashed {
    method: HashMethod,
    table: Rebuilt<Table>,
    /// The hash of each server's name: where its ring points go.
    names: Vec<u64>,
    points_per_weight: u64,
    /// Calls without a key.
    rr: RoundRobin,
}

impl Hashed {
    pub fn new(method: HashMethod, servers: &[Arc<Server>]) -> Self {
        // Fixed for the life of the balancer (from the configured weights)
        // so that ring points do not move when weights change.
        let configured: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
        let points_per_weight = (MAX_RING_POINTS / configured.max(1)).clamp(1, POINTS_PER_WEIGHT);
        let names = servers
            .iter()
            .map(|s| hash_bytes(s.name.as_bytes()))
            .collect();
        let mut h = Hashed {
            method,
            table: Rebuilt::new(Table::Map {
                slots: Vec::new(),
                members: 0,
            }),
            names,
            points_per_weight,
            rr: RoundRobin::new(servers),
        };
        h.table = Rebuilt::new(h.table_of(servers));
        h
    }

    fn table_of(&self, servers: &[Arc<Server>]) -> Table {
        let weights: Vec<u32> = servers
            .iter()
            .map(|s| if usable(s) { weight_of(s) } else { 0 })
            .collect();
        let members = weights.iter().filter(|&&w| w > 0).count();
        match self.method {
            HashMethod::MapBased => Table::Map {
                slots: smooth_schedule(&weights),
                members,
            },
            HashMethod::Consistent => {
                let mut points = Vec::new();
                for (i, &w) in weights.iter().enumerate() {
                    let name = self.names.get(i).copied().unwrap_or(i as u64);
                    for j in 0..u64::from(w) * self.points_per_weight {
                        points.push((point(name, j), i as u32));
                    }
                }
                points.sort_unstable();
                Table::Ring { points, members }
            }
        }
    }
}

/// Where point `j` of the server whose name hashes to `name` sits.
fn point(name: u64, j: u64) -> u32 {
    fold(mix64(name ^ mix64(j.wrapping_add(0x9e37_79b9_7f4a_7c15))))
}

/// Proposes the server of `table[start]` (wrapping), then (rare: down or
/// full) those of the next entries, each server once; then the others.
fn walk<T>(
    offer: &mut Offer<'_, '_>,
    start: usize,
    members: usize,
    table: &[T],
    server: impl Fn(&T) -> usize,
) -> Option<usize> {
    let len = table.len();
    if len == 0 {
        return offer.rest(start);
    }
    for k in 0..len {
        if offer.count() >= members {
            break;
        }
        let idx = server(&table[(start + k) % len]);
        if offer.offer(idx) {
            return Some(idx);
        }
    }
    offer.rest(server(&table[start % len]))
}

/// A 64-bit hash folded to the ring's 32 bits (32-bit hashes unchanged).
fn fold(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

impl Balancer for Hashed {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let Some(hash) = ctx.hash else {
            return self.rr.pick(servers, ctx, accept);
        };
        let table = self.table.load();
        let mut offer = Offer::new(servers, accept);
        match &**table {
            Table::Map { slots, members } => {
                let start = (hash % slots.len().max(1) as u64) as usize;
                walk(&mut offer, start, *members, slots, |&i| i as usize)
            }
            Table::Ring { points, members } => {
                let key = fold(hash);
                let start = points.partition_point(|&(p, _)| p < key);
                walk(&mut offer, start, *members, points, |&(_, i)| i as usize)
            }
        }
    }

    fn update(&self, servers: &[Arc<Server>]) {
        self.table.rebuild(|| self.table_of(servers));
        self.rr.update(servers);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Where each of `keys` goes (every usable server accepts).
    fn targets(b: &Hashed, servers: &[Arc<Server>], keys: &[u64]) -> Vec<usize> {
        let none = HashSet::new();
        keys.iter()
            .map(|&k| pick_checked(b, servers, Some(k), &none).expect("a server"))
            .collect()
    }

    fn keys(n: usize, seed: u64) -> Vec<u64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| rng.u64(..)).collect()
    }

    #[test]
    fn same_key_same_server() {
        for method in [HashMethod::MapBased, HashMethod::Consistent] {
            let servers = servers(&[1, 1, 1, 1]);
            let b = Hashed::new(method, &servers);
            let k = keys(100, 1);
            assert_eq!(targets(&b, &servers, &k), targets(&b, &servers, &k));
        }
    }

    #[test]
    fn without_a_key_round_robin() {
        let servers = servers(&[1, 1, 1]);
        let b = Hashed::new(HashMethod::Consistent, &servers);
        assert_eq!(counts(&b, &servers, 300), vec![100, 100, 100]);
    }

    #[test]
    fn a_full_target_overflows_to_its_ring_neighbour() {
        let servers = servers(&[1; 8]);
        let b = Hashed::new(HashMethod::Consistent, &servers);
        let k = keys(200, 2);
        let before = targets(&b, &servers, &k);
        for (key, &t) in k.iter().zip(&before) {
            let refuse: HashSet<usize> = [t].into();
            let other = pick_checked(&b, &servers, Some(*key), &refuse).expect("another");
            // The same as when the target is down: the next point's server.
            set_down(&servers[t], true);
            b.update(&servers);
            let none = HashSet::new();
            assert_eq!(pick_checked(&b, &servers, Some(*key), &none), Some(other));
            set_down(&servers[t], false);
            b.update(&servers);
        }
    }

    #[test]
    fn ring_points_follow_names_not_order() {
        let a = servers(&[1, 1, 1]);
        let mut b = a.clone();
        b.reverse();
        let ra = Hashed::new(HashMethod::Consistent, &a);
        let rb = Hashed::new(HashMethod::Consistent, &b);
        let k = keys(500, 3);
        let ta: Vec<String> = targets(&ra, &a, &k)
            .into_iter()
            .map(|i| a[i].name.clone())
            .collect();
        let tb: Vec<String> = targets(&rb, &b, &k)
            .into_iter()
            .map(|i| b[i].name.clone())
            .collect();
        assert_eq!(ta, tb);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Map-based: over many keys, each server gets its weight's share.
        #[test]
        fn map_based_respects_weights(
            weights in proptest::collection::vec(1u32..=16, 2..12),
            seed in any::<u64>(),
        ) {
            let servers = servers(&weights);
            let b = Hashed::new(HashMethod::MapBased, &servers);
            let t = targets(&b, &servers, &keys(40_000, seed));
            let mut c = vec![0; servers.len()];
            for i in t {
                c[i] += 1;
            }
            prop_assert!(follows_weights(&c, &weights, 0.15), "{c:?} for {weights:?}");
        }

        /// Consistent: removing one server moves only its keys (about 1/N),
        /// bringing it back moves only those back.
        #[test]
        fn consistent_moves_about_one_nth(
            n in 3usize..24,
            gone in 0usize..24,
            seed in any::<u64>(),
        ) {
            let gone = gone % n;
            let servers = servers(&vec![1; n]);
            let b = Hashed::new(HashMethod::Consistent, &servers);
            let k = keys(20_000, seed);
            let before = targets(&b, &servers, &k);

            set_down(&servers[gone], true);
            b.update(&servers);
            let during = targets(&b, &servers, &k);
            let mut moved = 0;
            for (x, y) in before.iter().zip(&during) {
                if x != y {
                    prop_assert_eq!(*x, gone, "only the removed server's keys move");
                    moved += 1;
                } else {
                    prop_assert_ne!(*x, gone);
                }
            }
            // 40 points per server: the share of one is 1/N give or take
            // about 1/sqrt(40) of itself; allow 60%.
            let share = moved as f64 / k.len() as f64;
            prop_assert!(share <= 1.6 / n as f64, "moved {share} with n={n}");

            set_down(&servers[gone], false);
            b.update(&servers);
            let after = targets(&b, &servers, &k);
            prop_assert_eq!(&after, &before);
        }

        /// Consistent: over many keys, weights are respected roughly (the
        /// ring's granularity: 40 points per unit of weight).
        #[test]
        fn consistent_roughly_respects_weights(
            weights in proptest::collection::vec(1u32..=8, 2..8),
            seed in any::<u64>(),
        ) {
            let servers = servers(&weights);
            let b = Hashed::new(HashMethod::Consistent, &servers);
            let t = targets(&b, &servers, &keys(20_000, seed));
            let mut c = vec![0; servers.len()];
            for i in t {
                c[i] += 1;
            }
            prop_assert!(follows_weights(&c, &weights, 0.6), "{c:?} for {weights:?}");
        }
    }

    #[test]
    fn slowstart_steps_move_keys_in_proportion() {
        let servers = servers(&[4; 8]);
        let b = Hashed::new(HashMethod::Consistent, &servers);
        let k = keys(20_000, 4);
        let before = targets(&b, &servers, &k);
        servers[0].set_weight(3);
        b.update(&servers);
        let after = targets(&b, &servers, &k);
        let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
        for (x, y) in before.iter().zip(&after) {
            if x != y {
                assert_eq!(*x, 0, "only the lighter server loses keys");
            }
        }
        // A quarter of server 0's eighth, give or take.
        let share = moved as f64 / k.len() as f64;
        assert!(share < 0.06, "{share}");
    }
}
