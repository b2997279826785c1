//! `balance first`: the first server in file order that has a free slot
//! (`maxconn`), so traffic fills servers one after another.

use std::sync::Arc;

use super::{Balancer, PickCtx};
use crate::backend::server::Server;

pub struct First;

impl Balancer for First {
    fn pick(
        &self,
        servers: &[Arc<Server>],
        _ctx: &PickCtx,
        accept: &mut dyn FnMut(&Arc<Server>) -> bool,
    ) -> Option<usize> {
        servers.iter().position(|s| s.weight > 0 && accept(s))
    }
}
