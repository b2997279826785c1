//! Load-balancing algorithms. A balancer only proposes servers; the caller
//! accepts the first one that is usable (up, not in maintenance, under
//! `maxconn`). One file per algorithm family.

mod roundrobin;

pub use roundrobin::RoundRobin;

use std::sync::Arc;

use crate::backend::server::Server;

/// A load-balancing algorithm over a fixed server list.
pub trait Balancer: Send + Sync {
    /// Proposes the next server for a call. `accept` says whether a server
    /// may take it; the balancer tries each server at most once per pick.
    fn pick(
        &self,
        servers: &[Arc<Server>],
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize>;
}
