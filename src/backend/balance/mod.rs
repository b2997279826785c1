//! Load-balancing algorithms. A balancer only proposes servers; the caller
//! accepts the first one that is usable (up, not in maintenance, under
//! `maxconn`, claimed atomically). One file per algorithm family.
//!
//! Like HAProxy's `lb_ops`, a balancer has a `pick` (the data path: atomics
//! and an [`ArcSwap`](arc_swap::ArcSwap) load, no lock) and an `update`
//! hook the backend calls whenever a server's usability or effective
//! weight changes; algorithms that precompute something (a schedule, a map,
//! a ring, a weighted table) rebuild it there, from the servers' state at
//! that moment, and swap it in.

mod ewma;
mod first;
pub mod hash;
mod hashing;
mod leastconn;
mod random;
mod roundrobin;

pub use ewma::{Ewma, PeakEwma};
pub use first::First;
pub use hash::hash_key;
pub use hashing::Hashed;
pub use leastconn::LeastConn;
pub use random::Random;
pub use roundrobin::{RoundRobin, StaticRr};

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::backend::server::Server;
use crate::config;

/// What the caller knows about the call or connection being balanced.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickCtx {
    /// The hash of the balancing key (`source`: the client address,
    /// `uri`: the path, `hdr`: the header value), see [`hash_key`]. `None`
    /// (no such header): the hashing algorithms balance round robin.
    pub hash: Option<u64>,
}

/// A load-balancing algorithm over a fixed server list (a backend's active
/// servers, in file order; the same list is passed to every call).
pub trait Balancer: Send + Sync {
    /// Proposes servers for one call until `accept` takes one; each server
    /// is proposed at most once per pick. Returns the accepted index, or
    /// `None` when every server was refused.
    fn pick(
        &self,
        servers: &[Arc<Server>],
        ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize>;

    /// A server's usability (health, maintenance) or effective weight
    /// (runtime weight, slowstart step) changed: rebuild what the algorithm
    /// precomputed from the servers' state now. Cheap to call more often
    /// than needed; concurrent calls are serialized and the last one wins.
    fn update(&self, servers: &[Arc<Server>]) {
        let _ = servers;
    }
}

/// The balancer `balance` describes for `servers` (the backend's active
/// servers), with `hash` for the hashing algorithms (`source`, `uri`,
/// `hdr`). Built from the servers' current state (a reload keeps servers
/// that were down, down).
pub fn build(
    balance: &config::Balance,
    hash: &config::HashType,
    servers: &[Arc<Server>],
) -> Box<dyn Balancer> {
    match balance {
        config::Balance::RoundRobin => Box::new(RoundRobin::new(servers)),
        config::Balance::StaticRr => Box::new(StaticRr::new(servers)),
        config::Balance::LeastConn => Box::new(LeastConn::new(servers)),
        config::Balance::First => Box::new(First),
        config::Balance::Source | config::Balance::Uri { .. } | config::Balance::Hdr(_) => {
            Box::new(Hashed::new(hash.method, servers))
        }
        config::Balance::Random { draws } => Box::new(Random::new(*draws, servers)),
        config::Balance::Ewma { .. } => Box::new(Ewma::new(servers)),
    }
}

/// The weight balancers use: the server's effective weight (runtime weight
/// ramped by slowstart), 0..=256.
fn weight_of(s: &Server) -> u32 {
    s.eweight()
}

/// Whether `s` belongs in a precomputed structure: eligible (up, not in
/// maintenance) with an effective weight.
fn usable(s: &Server) -> bool {
    s.is_eligible() && weight_of(s) > 0
}

/// Above this many entries a schedule or map is scaled down (weights
/// divided proportionally, at least 1 each): 256 KiB of `u32`.
const MAX_SCHEDULE: u64 = 1 << 16;

/// The visiting order for `weights` (index `i` appears about `weights[i]`
/// times, zero weights never), interleaved smoothly: entries are sorted by
/// their virtual time `(k + 1/2) / weight` (Webster/Sainte-Laguë order), so
/// weights 3:1 give `a a b a` and 1:1:1 gives `a b c`. Weights are divided
/// by their gcd first; a schedule longer than [`MAX_SCHEDULE`] is scaled.
/// O(len log n).
fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights
        .iter()
        .filter(|&&w| w > 0)
        .fold(0u64, |g, &w| gcd(u64::from(w), g))
        .max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x) / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (*x * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: u64 = w.iter().sum();

    /// Entry `k` of server `idx`: virtual time (2k+1) / (2w).
    #[derive(PartialEq, Eq)]
    struct Next {
        num: u64,
        den: u64,
        idx: u32,
    }
    impl Ord for Next {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            (self.num * o.den)
                .cmp(&(o.num * self.den))
                .then(self.idx.cmp(&o.idx))
        }
    }
    impl PartialOrd for Next {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    let mut heap: BinaryHeap<Reverse<Next>> = w
        .iter()
        .enumerate()
        .filter(|(_, &x)| x > 0)
        .map(|(i, &x)| {
            Reverse(Next {
                num: 1,
                den: x,
                idx: i as u32,
            })
        })
        .collect();
    let mut out = Vec::with_capacity(total as usize);
    while let Some(Reverse(mut e)) = heap.pop() {
        out.push(e.idx);
        if out.len() as u64 >= total {
            break;
        }
        e.num += 2;
        if e.num < 2 * w[e.idx as usize] {
            heap.push(Reverse(e));
        }
    }
    out
}

/// splitmix64's finalizer: a well-mixed 64-bit permutation.
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A well-mixed 64-bit hash of bytes (FNV-1a, then splitmix64's finalizer),
/// stable across runs and machines.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// The balancing hash of a client address (its IP, not its port), with a
/// fixed function. [`hash::hash_addr`] is the `hash-type` aware one.
pub fn hash_ip(ip: std::net::IpAddr) -> u64 {
    hash_bytes(&hash::addr_bytes(ip))
}

/// The servers proposed during one pick: each at most once, the index of
/// the accepted one. No allocation for the first proposal, nor for 256
/// servers or fewer.
struct Offer<'a, 'b> {
    servers: &'a [Arc<Server>],
    accept: &'b mut dyn FnMut(&Arc<Server>) -> bool,
    /// The first proposed index (usize::MAX: none yet).
    first: usize,
    inline: [u64; 4],
    heap: Vec<u64>,
    count: usize,
}

impl<'a, 'b> Offer<'a, 'b> {
    fn new(servers: &'a [Arc<Server>], accept: &'b mut dyn FnMut(&Arc<Server>) -> bool) -> Self {
        Offer {
            servers,
            accept,
            first: usize::MAX,
            inline: [0; 4],
            heap: Vec::new(),
            count: 0,
        }
    }

    /// Marks `i` proposed; false when it already was.
    fn mark(&mut self, i: usize) -> bool {
        if self.first == usize::MAX {
            self.first = i;
            return true;
        }
        if i == self.first {
            return false;
        }
        let words: &mut [u64] = if self.servers.len() <= 256 {
            &mut self.inline
        } else {
            if self.heap.is_empty() {
                self.heap = vec![0; self.servers.len().div_ceil(64)];
            }
            &mut self.heap
        };
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        if words[w] & bit != 0 {
            return false;
        }
        words[w] |= bit;
        true
    }

    /// Whether server `i` was proposed already.
    fn proposed(&self, i: usize) -> bool {
        if i == self.first {
            return true;
        }
        let words: &[u64] = if self.servers.len() <= 256 {
            &self.inline
        } else {
            &self.heap
        };
        words
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Proposes server `i` unless it was already (or does not exist); true
    /// when it is accepted.
    fn offer(&mut self, i: usize) -> bool {
        if i >= self.servers.len() || !self.mark(i) {
            return false;
        }
        self.count += 1;
        (self.accept)(&self.servers[i])
    }

    /// How many distinct servers were proposed.
    fn count(&self) -> usize {
        self.count
    }

    /// The last resort: every server not proposed yet that has a weight,
    /// in file order from `start` (wrapping). Finds servers a stale
    /// precomputed structure leaves out (an `update` not seen yet).
    fn rest(&mut self, start: usize) -> Option<usize> {
        let n = self.servers.len();
        for k in 0..n {
            if self.count >= n {
                break;
            }
            let i = (start + k) % n;
            if weight_of(&self.servers[i]) > 0 && self.offer(i) {
                return Some(i);
            }
        }
        None
    }
}

/// Usable servers with cumulative weights, for weighted random draws
/// (`random`, `ewma`).
#[derive(Default)]
struct WeightedSet {
    /// Server indexes.
    idx: Vec<u32>,
    /// `cum[j]`: the sum of the weights of `idx[..=j]`.
    cum: Vec<u64>,
}

impl WeightedSet {
    fn of(servers: &[Arc<Server>]) -> Self {
        let mut set = WeightedSet::default();
        let mut sum = 0u64;
        for (i, s) in servers.iter().enumerate() {
            if usable(s) {
                sum += u64::from(weight_of(s));
                set.idx.push(i as u32);
                set.cum.push(sum);
            }
        }
        set
    }

    fn total(&self) -> u64 {
        self.cum.last().copied().unwrap_or(0)
    }

    /// The position (in `idx`) whose weight range holds `r` (< total).
    fn at(&self, r: u64) -> usize {
        self.cum
            .partition_point(|&c| c <= r)
            .min(self.idx.len().saturating_sub(1))
    }

    /// One position drawn at random, weighted.
    fn draw(&self) -> Option<usize> {
        let total = self.total();
        (total > 0).then(|| self.at(fastrand::u64(0..total)))
    }

    /// Two distinct positions drawn at random, weighted (the second among
    /// the others); the same twice when there is only one.
    fn draw_two(&self) -> Option<(usize, usize)> {
        let a = self.draw()?;
        if self.idx.len() == 1 {
            return Some((a, a));
        }
        let lo = if a == 0 { 0 } else { self.cum[a - 1] };
        let wa = self.cum[a] - lo;
        let rest = self.total() - wa;
        if rest == 0 {
            return Some((a, a));
        }
        let mut r = fastrand::u64(0..rest);
        if r >= lo {
            r += wa;
        }
        Some((a, self.at(r)))
    }
}

/// What a balancer derives from the servers' state (a schedule, a table):
/// picks load it without a lock, `update`s rebuild it one at a time so the
/// last swap reflects the latest state.
pub(crate) struct Rebuilt<T> {
    current: ArcSwap<T>,
    rebuild: Mutex<()>,
}

impl<T> Rebuilt<T> {
    pub(crate) fn new(v: T) -> Self {
        Rebuilt {
            current: ArcSwap::from_pointee(v),
            rebuild: Mutex::new(()),
        }
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<T>> {
        self.current.load()
    }

    pub(crate) fn rebuild(&self, make: impl FnOnce() -> T) {
        let _g = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        self.current.store(Arc::new(make()));
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Servers and pick drivers for the balancers' tests.

    use std::collections::HashSet;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::{Balancer, PickCtx};
    use crate::backend::server::Server;
    use crate::config;

    /// Servers `s0..` with these weights (0..=256), all up.
    pub fn servers(weights: &[u32]) -> Vec<Arc<Server>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16));
                let mut c = config::Server::new(
                    &format!("s{i}"),
                    config::Loc::default(),
                    addr,
                    &addr.to_string(),
                );
                c.weight = w;
                Arc::new(Server::from_config(&c))
            })
            .collect()
    }

    pub fn set_down(s: &Server, down: bool) {
        s.state.up.store(!down, Ordering::Relaxed);
    }

    /// One pick where `refuse` servers are refused (besides those that are
    /// not eligible, as the backend does). Checks the contract: each
    /// server proposed at most once, the result is an accepted one, and
    /// `None` only when every usable server was refused.
    pub fn pick_checked(
        b: &dyn Balancer,
        servers: &[Arc<Server>],
        hash: Option<u64>,
        refuse: &HashSet<usize>,
    ) -> Option<usize> {
        let mut proposed = Vec::new();
        let mut accepted = None;
        let r = b.pick(servers, &PickCtx { hash }, &mut |s| {
            let i = servers
                .iter()
                .position(|x| Arc::ptr_eq(x, s))
                .expect("a server of the list");
            assert!(!proposed.contains(&i), "server {i} proposed twice");
            proposed.push(i);
            let ok = s.is_eligible() && !refuse.contains(&i);
            if ok {
                accepted = Some(i);
            }
            ok
        });
        assert_eq!(r, accepted, "returned what accept took");
        if r.is_none() {
            for (i, s) in servers.iter().enumerate() {
                assert!(
                    !s.is_eligible() || refuse.contains(&i),
                    "server {i} was usable but the pick gave up"
                );
            }
        }
        r
    }

    /// How many of `picks` picks (accept everything usable) each server got.
    pub fn counts(b: &dyn Balancer, servers: &[Arc<Server>], picks: usize) -> Vec<usize> {
        let mut c = vec![0; servers.len()];
        let none = HashSet::new();
        for _ in 0..picks {
            if let Some(i) = pick_checked(b, servers, None, &none) {
                c[i] += 1;
            }
        }
        c
    }

    /// Whether `counts` follow `weights` within `tol` (relative share).
    pub fn follows_weights(counts: &[usize], weights: &[u32], tol: f64) -> bool {
        let total: usize = counts.iter().sum();
        let wsum: u32 = weights.iter().sum();
        counts.iter().zip(weights).all(|(&c, &w)| {
            let want = f64::from(w) / f64::from(wsum);
            let got = c as f64 / total as f64;
            (got - want).abs() <= tol * want.max(1.0 / weights.len() as f64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(smooth_schedule(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(smooth_schedule(&[256, 256]), vec![0, 1]);
    }

    #[test]
    fn weights_are_interleaved() {
        assert_eq!(smooth_schedule(&[3, 1]), vec![0, 0, 1, 0]);
        let s = smooth_schedule(&[5, 1, 1]);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(s.len(), 7);
        // 5 of 7 around two others: runs of at most three.
        assert!(!s.windows(4).any(|w| w == [0, 0, 0, 0]));
        assert_eq!(smooth_schedule(&[2, 1, 1]), vec![0, 1, 2, 0]);
    }

    #[test]
    fn zero_weight_never_scheduled() {
        assert_eq!(smooth_schedule(&[0, 2]), vec![1]);
        assert!(smooth_schedule(&[0, 0]).is_empty());
        assert!(smooth_schedule(&[]).is_empty());
    }

    #[test]
    fn long_schedules_are_scaled() {
        let w: Vec<u32> = (0..1024).map(|i| 1 + (i % 256)).collect();
        let s = smooth_schedule(&w);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 1024);
        let mut c = vec![0u32; w.len()];
        for &i in &s {
            c[i as usize] += 1;
        }
        assert!(c.iter().all(|&x| x >= 1));
        // Proportions kept within one entry.
        let scale = s.len() as f64 / w.iter().map(|&x| f64::from(x)).sum::<f64>();
        for (i, &x) in c.iter().enumerate() {
            assert!((f64::from(x) - f64::from(w[i]) * scale).abs() <= 1.0);
        }
    }

    #[test]
    fn offer_proposes_each_server_once() {
        let servers = servers(&[1; 300]);
        let mut seen = 0;
        let mut accept = |_: &Arc<Server>| {
            seen += 1;
            false
        };
        let mut o = Offer::new(&servers, &mut accept);
        assert!(!o.offer(5));
        assert!(!o.offer(5));
        assert!(!o.offer(299));
        assert!(!o.offer(299));
        assert!(!o.offer(300));
        assert_eq!(o.count(), 2);
        assert_eq!(o.rest(0), None);
        assert_eq!(o.count(), 300);
        assert_eq!(seen, 300);
    }

    #[test]
    fn weighted_set_draws_distinct_pairs() {
        let servers = servers(&[1, 0, 3, 1]);
        let set = WeightedSet::of(&servers);
        assert_eq!(set.idx, vec![0, 2, 3]);
        assert_eq!(set.total(), 5);
        let mut c = [0usize; 3];
        for _ in 0..5000 {
            let (a, b) = set.draw_two().expect("servers");
            assert_ne!(a, b);
            c[a] += 1;
        }
        assert!(c[1] > c[0] * 2 && c[1] > c[2] * 2, "{c:?}");
    }

    /// Every algorithm, as `build` makes it.
    fn all(servers: &[Arc<Server>]) -> Vec<(&'static str, Box<dyn Balancer>)> {
        let hdr = http::HeaderName::from_static("x-key");
        let map = config::HashType::default();
        let ring = config::HashType {
            method: config::HashMethod::Consistent,
            ..Default::default()
        };
        vec![
            (
                "roundrobin",
                build(&config::Balance::RoundRobin, &map, servers),
            ),
            (
                "static-rr",
                build(&config::Balance::StaticRr, &map, servers),
            ),
            (
                "leastconn",
                build(&config::Balance::LeastConn, &map, servers),
            ),
            ("first", build(&config::Balance::First, &map, servers)),
            ("source", build(&config::Balance::Source, &map, servers)),
            (
                "hdr-consistent",
                build(&config::Balance::Hdr(hdr), &ring, servers),
            ),
            (
                "random",
                build(&config::Balance::Random { draws: 2 }, &map, servers),
            ),
            (
                "ewma",
                build(
                    &config::Balance::Ewma {
                        decay: std::time::Duration::from_secs(10),
                    },
                    &map,
                    servers,
                ),
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever is down, drained or refused, and whether `update` saw
        /// it or not: each server at most once, never a refused one, and
        /// a usable one is found when there is one.
        #[test]
        fn never_a_refused_server(
            weights in proptest::collection::vec(0u32..5, 1..40),
            down in proptest::collection::vec(any::<bool>(), 40),
            refuse in proptest::collection::hash_set(0usize..40, 0..30),
            updated in any::<bool>(),
            hashes in proptest::collection::vec(proptest::option::of(any::<u64>()), 1..20),
        ) {
            let servers = servers(&weights);
            let balancers = all(&servers);
            for (i, s) in servers.iter().enumerate() {
                set_down(s, down[i]);
            }
            for (_, b) in &balancers {
                if updated {
                    b.update(&servers);
                }
                for &h in &hashes {
                    if let Some(i) = pick_checked(b.as_ref(), &servers, h, &refuse) {
                        prop_assert!(servers[i].is_eligible() && !refuse.contains(&i));
                    }
                }
            }
        }
    }

    #[test]
    fn nothing_to_pick_from() {
        let none: Vec<Arc<Server>> = Vec::new();
        for (name, b) in all(&none) {
            b.update(&none);
            assert_eq!(
                b.pick(&none, &PickCtx { hash: Some(1) }, &mut |_| true),
                None,
                "{name}"
            );
        }
        let servers = servers(&[1, 2, 3]);
        let refuse: HashSet<usize> = [0, 1, 2].into();
        for (name, b) in all(&servers) {
            assert_eq!(
                pick_checked(b.as_ref(), &servers, Some(7), &refuse),
                None,
                "{name}"
            );
        }
    }
}
