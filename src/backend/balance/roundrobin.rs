//! `balance roundrobin`: smooth weighted round robin.
//!
//! The order is computed once per server list with nginx's smooth weighted
//! round-robin (weights 3:1 give `a a b a`, not `a a a b`) and walked with one
//! atomic cursor, so a pick takes no lock. A server that cannot take the call
//! is skipped and the walk goes on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Balancer, PickCtx};
use crate::backend::server::Server;

pub struct RoundRobin {
    /// Server indexes in visiting order; each server appears `weight` times.
    schedule: Vec<u32>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(weights: &[u32]) -> Self {
        RoundRobin {
            schedule: smooth_schedule(weights),
            cursor: AtomicUsize::new(0),
        }
    }
}

/// The smooth weighted round-robin visiting order for `weights`.
fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += i64::from(w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        // Walk at most one whole schedule; weights make that cover every server.
        for k in 0..n {
            let idx = self.schedule[(start + k) % n] as usize;
            if let Some(s) = servers.get(idx) {
                if accept(s) {
                    if k > 0 {
                        // Skipped some: move the shared cursor past them too.
                        self.cursor.fetch_add(k, Ordering::Relaxed);
                    }
                    return Some(idx);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(smooth_schedule(&[1, 1, 1]), vec![0, 1, 2]);
    }

    #[test]
    fn weights_are_interleaved() {
        let s = smooth_schedule(&[3, 1]);
        assert_eq!(s, vec![0, 0, 1, 0]);
        let s = smooth_schedule(&[5, 1, 1]);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn zero_weight_never_scheduled() {
        let s = smooth_schedule(&[0, 2]);
        assert_eq!(s, vec![1, 1]);
    }
}
