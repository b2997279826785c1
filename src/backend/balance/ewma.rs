//! `balance ewma [decay <time>]`: power of two choices over a peak-EWMA
//! latency estimate, like linkerd (tower's `PeakEwma`). Two distinct
//! usable servers are drawn at random, weighted by effective weight, and
//! the one with the lower cost `score × (inflight + 1)` is proposed; when
//! it is refused, the other, then the rest in file order.
//!
//! [`PeakEwma`] is each server's estimate, written by the data path
//! (`observe`, with each call's time to response head) and read by the
//! balancer (`score`), with atomics only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Balancer, Offer, PickCtx, Rebuilt, WeightedSet};
use crate::backend::server::Server;

/// A peak-sensitive, exponentially weighted moving average of a server's
/// response time, in nanoseconds.
///
/// - A sample higher than the estimate replaces it at once (peak): a
///   server that slows down is avoided from its first slow response.
/// - A lower sample is blended in with weight `1 - exp(-elapsed / decay)`,
///   `elapsed` being the time since the previous sample: the estimate is a
///   time-weighted average with time constant `decay`.
/// - While no sample comes, the score decays toward zero by
///   `exp(-idle / decay)`, so a server that is avoided for being slow is
///   tried again after a while (linkerd's behaviour).
/// - A server never measured scores [`PeakEwma::UNMEASURED`], a small
///   value, so it gets tried.
#[derive(Debug)]
pub struct PeakEwma {
    /// The estimate (f64 bits, ns).
    value: AtomicU64,
    /// When the last sample came, in ns since [`origin`]; 0: never.
    stamp: AtomicU64,
    /// The time constant, ns.
    decay: AtomicU64,
}

/// The clock's origin (process-wide).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl PeakEwma {
    /// The score of a server without samples: 1 µs.
    pub const UNMEASURED: f64 = 1_000.0;
    /// `balance ewma` without `decay`.
    pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

    pub const fn new() -> Self {
        PeakEwma {
            value: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
            decay: AtomicU64::new(Self::DEFAULT_DECAY.as_nanos() as u64),
        }
    }

    /// Sets the time constant (`balance ewma decay <time>`; at least 1 ns).
    pub fn set_decay(&self, decay: Duration) {
        let ns = u64::try_from(decay.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.decay.store(ns, Ordering::Relaxed);
    }

    /// Now, on the clock `observe_at` and `score_at` take (ns since a
    /// process-wide origin, never 0).
    pub fn now() -> u64 {
        u64::try_from(origin().elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Records one call's response time (time to response head).
    pub fn observe(&self, rtt: Duration) {
        self.observe_at(rtt, Self::now());
    }

    /// The current score (ns): the estimate, decayed for the time without
    /// samples; [`PeakEwma::UNMEASURED`] without any.
    pub fn score(&self) -> f64 {
        self.score_at(Self::now())
    }

    /// [`PeakEwma::observe`] at time `now` (see [`PeakEwma::now`]).
    pub fn observe_at(&self, rtt: Duration, now: u64) {
        let rtt = rtt.as_nanos() as f64;
        let decay = self.decay.load(Ordering::Relaxed) as f64;
        let mut cur = self.value.load(Ordering::Acquire);
        loop {
            let stamp = self.stamp.load(Ordering::Acquire);
            let old = f64::from_bits(cur);
            let new = if stamp == 0 || rtt >= old {
                rtt
            } else {
                let w = (-(now.saturating_sub(stamp) as f64) / decay).exp();
                old * w + rtt * (1.0 - w)
            };
            match self.value.compare_exchange_weak(
                cur,
                new.to_bits(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        self.stamp.fetch_max(now.max(1), Ordering::AcqRel);
    }

    /// [`PeakEwma::score`] at time `now`.
    pub fn score_at(&self, now: u64) -> f64 {
        let stamp = self.stamp.load(Ordering::Acquire);
        if stamp == 0 {
            return Self::UNMEASURED;
        }
        let value = f64::from_bits(self.value.load(Ordering::Acquire));
        let decay = self.decay.load(Ordering::Relaxed) as f64;
        value * (-(now.saturating_sub(stamp) as f64) / decay).exp()
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new()
    }
}

/// A server's estimate.
fn ewma_of(s: &Server) -> &PeakEwma {
    &s.ewma
}

pub struct Ewma {
    set: Rebuilt<WeightedSet>,
}

impl Ewma {
    pub fn new(servers: &[Arc<Server>]) -> Self {
        Ewma {
            set: Rebuilt::new(WeightedSet::of(servers)),
        }
    }

    /// The pick with `cost` per server index (lower is better).
    fn pick_by(
        &self,
        servers: &[Arc<Server>],
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
        cost: impl Fn(usize) -> f64,
    ) -> Option<usize> {
        let set = self.set.load();
        let mut offer = Offer::new(servers, accept);
        if let Some((a, b)) = set.draw_two() {
            let (a, b) = (set.idx[a] as usize, set.idx[b] as usize);
            let (first, second) = if cost(b) < cost(a) { (b, a) } else { (a, b) };
            if offer.offer(first) {
                return Some(first);
            }
            if offer.offer(second) {
                return Some(second);
            }
        }
        offer.rest(fastrand::usize(..servers.len().max(1)))
    }
}

impl Balancer for Ewma {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let now = PeakEwma::now();
        self.pick_by(servers, accept, |i| {
            servers.get(i).map_or(f64::INFINITY, |s| {
                let inflight = s.state.inflight.load(Ordering::Relaxed);
                ewma_of(s).score_at(now) * f64::from(inflight.saturating_add(1))
            })
        })
    }

    fn update(&self, servers: &[Arc<Server>]) {
        self.set.rebuild(|| WeightedSet::of(servers));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::collections::HashSet;

    const MS: u64 = 1_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unmeasured_scores_small() {
        let e = PeakEwma::default();
        assert_eq!(e.score_at(5), PeakEwma::UNMEASURED);
        assert_eq!(e.score(), PeakEwma::UNMEASURED);
    }

    #[test]
    fn peaks_replace_at_once() {
        let e = PeakEwma::new();
        e.observe_at(ms(10), 1000 * MS);
        assert_eq!(e.score_at(1000 * MS), (10 * MS) as f64);
        e.observe_at(ms(500), 1001 * MS);
        assert_eq!(e.score_at(1001 * MS), (500 * MS) as f64);
    }

    #[test]
    fn lower_samples_decay_in() {
        let e = PeakEwma::new();
        e.set_decay(Duration::from_secs(1));
        e.observe_at(ms(100), 1000 * MS);
        // One time constant later, a 0-ish sample weighs 1 - 1/e.
        e.observe_at(Duration::ZERO, 2000 * MS);
        let v = e.score_at(2000 * MS);
        let want = 100.0 * MS as f64 * (-1.0f64).exp();
        assert!((v - want).abs() < 1.0, "{v} vs {want}");
        // Right after a sample, another low one barely moves it.
        e.observe_at(Duration::ZERO, 2000 * MS + 1000);
        assert!(e.score_at(2000 * MS + 1000) > want * 0.99);
    }

    #[test]
    fn idle_scores_decay_toward_zero() {
        let e = PeakEwma::new();
        e.set_decay(Duration::from_secs(10));
        e.observe_at(ms(1000), MS);
        let s0 = e.score_at(MS);
        let s1 = e.score_at(MS + 10_000 * MS);
        assert!((s1 / s0 - (-1.0f64).exp()).abs() < 1e-9);
        assert!(e.score_at(MS + 400_000 * MS) < 1.0);
    }

    #[test]
    fn the_cheaper_of_two_is_proposed() {
        let servers = servers(&[1, 1]);
        let b = Ewma::new(&servers);
        let mut got = Vec::new();
        for _ in 0..50 {
            let mut accept = |_: &Arc<Server>| true;
            got.push(b.pick_by(&servers, &mut accept, |i| if i == 1 { 1.0 } else { 9.0 }));
        }
        assert!(got.iter().all(|&g| g == Some(1)));
        // Refused: the other one.
        let refuse: HashSet<usize> = [1].into();
        assert_eq!(pick_checked(&b, &servers, None, &refuse), Some(0));
    }

    #[test]
    fn slow_servers_are_avoided() {
        let servers = servers(&[1, 1]);
        let b = Ewma::new(&servers);
        servers[0].ewma.observe(ms(500));
        servers[1].ewma.observe(ms(5));
        assert_eq!(counts(&b, &servers, 100), vec![0, 100]);
    }

    #[test]
    fn follows_updates() {
        let servers = servers(&[1, 1, 1]);
        let b = Ewma::new(&servers);
        set_down(&servers[0], true);
        b.update(&servers);
        let c = counts(&b, &servers, 300);
        assert_eq!(c[0], 0);
        assert_eq!(c[1] + c[2], 300);
    }
}
