//! `balance source`: a hash of the client's IP address picks the server
//! (HAProxy's map-based hashing over the weighted server list), so one
//! client keeps landing on the same server while the server set is stable.
//! When that server cannot take the connection, the walk goes on to the
//! next slots of the map.

use std::sync::Arc;

use super::{Balancer, PickCtx};
use crate::backend::server::Server;

pub struct Source {
    /// Each server index repeated `weight` times, in file order.
    map: Vec<u32>,
}

impl Source {
    pub fn new(weights: &[u32]) -> Self {
        let map = weights
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| std::iter::repeat_n(i as u32, w as usize))
            .collect();
        Source { map }
    }
}

impl Balancer for Source {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        let n = self.map.len();
        if n == 0 {
            return None;
        }
        let start = (ctx.hash.unwrap_or(0) % n as u64) as usize;
        let first = self.map[start] as usize;
        if first < servers.len() && accept(&servers[first]) {
            return Some(first);
        }
        // Rare (down or full): walk on through the map, each server once.
        let mut proposed = vec![false; servers.len()];
        if let Some(p) = proposed.get_mut(first) {
            *p = true;
        }
        for k in 1..n {
            let idx = self.map[(start + k) % n] as usize;
            if idx >= servers.len() || proposed[idx] {
                continue;
            }
            proposed[idx] = true;
            if accept(&servers[idx]) {
                return Some(idx);
            }
        }
        None
    }
}
