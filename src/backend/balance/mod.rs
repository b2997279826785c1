//! Load-balancing algorithms. A balancer only proposes servers; the caller
//! accepts the first one that is usable (up, not in maintenance, under
//! `maxconn`, claimed atomically). One file per algorithm family.

mod first;
mod leastconn;
mod roundrobin;
mod source;

pub use first::First;
pub use leastconn::LeastConn;
pub use roundrobin::RoundRobin;
pub use source::Source;

use std::sync::Arc;

use crate::backend::server::Server;

/// What the caller knows about the call or connection being balanced.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickCtx {
    /// A hash of the balancing key (the client address for `source`).
    pub hash: Option<u64>,
}

/// A load-balancing algorithm over a fixed server list.
pub trait Balancer: Send + Sync {
    /// Proposes servers for one call until `accept` takes one; each server
    /// is proposed at most once per pick. Returns the accepted index.
    fn pick(
        &self,
        servers: &[Arc<Server>],
        ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize>;
}

/// A well-mixed 64-bit hash of bytes (FNV-1a, then splitmix64's finalizer),
/// stable across runs and machines.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The balancing hash of a client address (its IP, not its port).
pub fn hash_ip(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&v6.octets()),
        },
    }
}
