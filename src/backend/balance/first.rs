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
        // `accept` refuses servers that are down, drained or full.
        servers.iter().position(accept)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fills_in_file_order() {
        let servers = servers(&[1, 1, 1]);
        let mut refuse = HashSet::new();
        assert_eq!(pick_checked(&First, &servers, None, &refuse), Some(0));
        refuse.insert(0);
        assert_eq!(pick_checked(&First, &servers, None, &refuse), Some(1));
        set_down(&servers[1], true);
        assert_eq!(pick_checked(&First, &servers, None, &refuse), Some(2));
    }
}
