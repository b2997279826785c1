//! The compiled snapshot the data path reads: frontends with their routes
//! resolved to backend objects, backends with their servers and balancers.
//! Built from a validated [`Config`]; the control plane swaps whole
//! snapshots, the data path never waits on it.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::backend::Backend;
use crate::config::{Bind, Config, Mode, Timeouts};
use crate::error::Error;
use crate::observe::log::Logger;

pub struct Snapshot {
    pub frontends: Vec<Arc<Frontend>>,
    pub backends: Vec<Arc<Backend>>,
    /// `global maxconn`.
    pub global_conns: Option<Arc<Semaphore>>,
}

pub struct Frontend {
    pub name: String,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    /// Where requests go: the first unconditional `use_backend`, else `default_backend`.
    pub backend: Option<Arc<Backend>>,
    pub timeouts: Timeouts,
    /// `maxconn` on the frontend.
    pub conns: Option<Arc<Semaphore>>,
    /// Client connections open right now.
    pub active: AtomicU32,
    /// Where this frontend's log lines go (`log ...`), if anywhere.
    pub logger: Option<Arc<Logger>>,
    /// `option tcplog` (and a tcp-mode frontend).
    pub tcplog: bool,
}

impl Snapshot {
    pub fn build(cfg: &Config) -> Result<Snapshot, Error> {
        let backends: Vec<Arc<Backend>> = cfg
            .backends
            .iter()
            .map(|b| Arc::new(Backend::from_config(b)))
            .collect();
        let find = |name: &str| backends.iter().find(|b| b.name == name).cloned();
        let mut frontends = Vec::with_capacity(cfg.frontends.len());
        for f in &cfg.frontends {
            let mut target = None;
            for ub in &f.use_backends {
                if ub.cond.is_some() {
                    return Err(Error::Other(format!(
                        "parsing [{}] : 'use_backend' : conditions (if/unless) are not supported yet (ACLs come in a later release)",
                        ub.loc
                    )));
                }
                if target.is_none() {
                    target = find(&ub.backend);
                }
            }
            let backend = target.or_else(|| f.default_backend.as_deref().and_then(find));
            frontends.push(Arc::new(Frontend {
                name: f.name.clone(),
                mode: f.mode,
                binds: f.binds.clone(),
                backend,
                timeouts: f.timeouts.clone(),
                conns: f.maxconn.map(|n| Arc::new(Semaphore::new(n as usize))),
                active: AtomicU32::new(0),
                logger: Logger::new(&f.logs),
                tcplog: f.options.tcplog && f.mode == Mode::Tcp,
            }));
        }
        Ok(Snapshot {
            frontends,
            backends,
            global_conns: cfg
                .global
                .maxconn
                .map(|n| Arc::new(Semaphore::new(n as usize))),
        })
    }

    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name == name)
    }
}
