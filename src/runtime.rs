//! The compiled snapshot the data path reads: frontends with their routes
//! resolved to backend objects, backends with their servers and balancers.
//! Built from a validated [`Config`]; the control plane swaps whole
//! snapshots, the data path never waits on it.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::acl::Condition;
use crate::backend::Backend;
use crate::config::{
    Bind, Capture, Config, ConnAction, ForwardFor, Mode, ReqAction, ResAction, Rule, Timeouts,
};
use crate::error::Error;
use crate::observe::log::Logger;
use crate::observe::logformat::LogFormat as LineFormat;
use crate::observe::stats::{FrontendStats, Stats};

pub struct Snapshot {
    pub frontends: Vec<Arc<Frontend>>,
    pub backends: Vec<Arc<Backend>>,
    /// `global maxconn`.
    pub global_conns: Option<Arc<Semaphore>>,
    pub global_maxconn: Option<u32>,
    /// `global maxpipes` (splice in mode tcp).
    #[cfg(target_os = "linux")]
    pub pipes: Arc<crate::l4::splice::PipeBudget>,
    /// Ends open gRPC calls cleanly at the end of `hard-stop-after`.
    pub hard_stop: Arc<HardStop>,
    /// Counters by name, shared by every generation of the proxy.
    pub stats: Arc<Stats>,
    /// Stick tables by backend name.
    pub tables: Arc<crate::stick::Tables>,
}

/// The end of a proxy's `hard-stop-after`: gRPC calls still open are ended
/// with UNAVAILABLE trailers ("server shutting down") instead of a reset.
#[derive(Debug, Default)]
pub struct HardStop {
    flag: std::sync::atomic::AtomicBool,
    notify: Arc<tokio::sync::Notify>,
}

impl HardStop {
    pub fn stop(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once [`HardStop::stop`] has been called (poll it once to
    /// register before checking [`HardStop::is_stopped`]).
    pub fn notified(&self) -> tokio::sync::futures::OwnedNotified {
        self.notify.clone().notified_owned()
    }
}

/// The frontend a client connection serves its requests with. A reload
/// swaps in the new frontend of the same name, so calls on connections
/// opened before the reload follow the new configuration without the
/// connection being sent away; a frontend that disappears (or changes
/// mode) is *retired*: its connections get a graceful GOAWAY.
pub struct FrontendSlot {
    current: arc_swap::ArcSwap<Frontend>,
    retired: tokio::sync::watch::Sender<bool>,
}

impl FrontendSlot {
    pub fn new(fe: Arc<Frontend>) -> Arc<FrontendSlot> {
        Arc::new(FrontendSlot {
            current: arc_swap::ArcSwap::new(fe),
            retired: tokio::sync::watch::channel(false).0,
        })
    }

    /// The frontend new requests use.
    pub fn current(&self) -> Arc<Frontend> {
        self.current.load_full()
    }

    pub fn replace(&self, fe: Arc<Frontend>) {
        self.current.store(fe);
    }

    /// Sends every connection of this frontend a graceful GOAWAY.
    pub fn retire(&self) {
        self.retired.send_replace(true);
    }

    pub fn retired(&self) -> tokio::sync::watch::Receiver<bool> {
        self.retired.subscribe()
    }
}

/// Where a `use_backend` rule sends a request.
pub enum RouteTarget {
    Static(Arc<Backend>),
    /// `use_backend %[...]`: the name is computed per request.
    Dynamic(Arc<LineFormat>),
}

/// One `use_backend` rule.
pub struct Route {
    pub target: RouteTarget,
    pub cond: Option<Condition>,
}

pub struct Frontend {
    pub name: String,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    /// `use_backend` rules, in file order; the first that matches wins.
    pub routes: Vec<Route>,
    /// `default_backend`: where requests go when no route matches.
    pub backend: Option<Arc<Backend>>,
    /// Every backend by name (`use_backend %[...]` looks names up here).
    pub backends: Arc<HashMap<String, Arc<Backend>>>,
    /// Every stick table by backend name (`track-sc*`, `sc_*` fetches).
    pub tables: Arc<crate::stick::Tables>,
    /// `tcp-request connection` rules, run once per client connection.
    pub tcp_request_connection: Vec<Rule<ConnAction>>,
    pub http_request: Vec<Rule<ReqAction>>,
    pub http_response: Vec<Rule<ResAction>>,
    pub capture_request: Vec<Capture>,
    pub capture_response: Vec<Capture>,
    /// The access-log line layout of an http frontend that logs
    /// (`option httplog` or `log-format`, and a `log` target).
    pub httplog: Option<Arc<LineFormat>>,
    /// `option logasap`
    pub logasap: bool,
    /// `option forwardfor` on the frontend.
    pub forwardfor: Option<ForwardFor>,
    /// The proxy's hard stop (shared by every generation).
    pub hard_stop: Arc<HardStop>,
    /// `h2-keepalive`: PINGs to HTTP/2 clients.
    pub h2_keepalive: Option<crate::config::H2Keepalive>,
    /// Global `tune.h2.*`: settings and abuse limits for HTTP/2 clients.
    pub h2_tune: crate::config::H2Tune,
    pub timeouts: Timeouts,
    /// `maxconn` on the frontend.
    pub conns: Option<Arc<Semaphore>>,
    pub maxconn: Option<u32>,
    /// Client connections open right now.
    pub active: AtomicU32,
    /// Where this frontend's log lines go (`log ...`), if anywhere.
    pub logger: Option<Arc<Logger>>,
    /// `option tcplog` (and a tcp-mode frontend).
    pub tcplog: bool,
    /// `option splice-*` (mode tcp, added to the backend's).
    pub splice: crate::config::Splice,
    /// `tune.bufsize`: the mode tcp copy buffer of each direction.
    pub bufsize: usize,
    /// `global maxpipes`, shared by every frontend of the snapshot.
    #[cfg(target_os = "linux")]
    pub pipes: Arc<crate::l4::splice::PipeBudget>,
    /// `option log-json`: the tcplog line is written as JSON (the httplog
    /// layout carries its own flag).
    pub log_json: bool,
    /// This frontend's counters (kept across reloads).
    pub stats: Arc<FrontendStats>,
    /// Every counter of the proxy (the exporter and the stats page read it).
    pub registry: Arc<Stats>,
}

impl Snapshot {
    pub fn build(cfg: &Config) -> Result<Snapshot, Error> {
        Self::build_from(cfg, None)
    }

    /// Builds the snapshot of `cfg`; with `previous` (a reload), servers
    /// whose settings did not change are carried over as they are (health,
    /// counters, connections), changed ones inherit their health state, and
    /// `maxconn` limits that did not change keep counting the connections
    /// already open.
    pub fn build_from(cfg: &Config, previous: Option<&Snapshot>) -> Result<Snapshot, Error> {
        let old_server = |backend: &str, name: &str| {
            previous
                .and_then(|p| p.backend(backend))
                .and_then(|b| b.servers.iter().find(|s| s.name == name).cloned())
        };
        let stats: Arc<Stats> = previous.map(|p| p.stats.clone()).unwrap_or_else(|| {
            Arc::new(Stats::new(
                cfg.global
                    .metrics_max_methods
                    .unwrap_or(crate::observe::stats::DEFAULT_MAX_METHODS),
            ))
        });
        let backends: Vec<Arc<Backend>> = cfg
            .backends
            .iter()
            .map(|b| {
                let reuse = |s: &crate::config::Server| {
                    let old = old_server(&b.name, &s.name)?;
                    if old.carries_over_to(s) {
                        return Some(old);
                    }
                    let new = Arc::new(
                        crate::backend::Server::from_config(s)
                            .with_stats(stats.server(&b.name, &s.name)),
                    );
                    new.inherit_state(&old);
                    Some(new)
                };
                Arc::new(Backend::from_config_with(b, &reuse, &stats))
            })
            .collect();
        let by_name: Arc<HashMap<String, Arc<Backend>>> = Arc::new(
            backends
                .iter()
                .map(|b| (b.name.clone(), b.clone()))
                .collect(),
        );
        let find = |name: &str| by_name.get(name).cloned();
        // A table whose definition did not change keeps its entries.
        let tables: Arc<crate::stick::Tables> = Arc::new(
            cfg.backends
                .iter()
                .filter_map(|b| {
                    let def = b.stick_table.as_ref()?;
                    let table = previous
                        .and_then(|p| p.tables.get(&b.name))
                        .filter(|t| t.def == *def)
                        .cloned()
                        .unwrap_or_else(|| {
                            Arc::new(crate::stick::Table::new(&b.name, def.clone()))
                        });
                    Some((b.name.clone(), table))
                })
                .collect(),
        );
        let hard_stop: Arc<HardStop> = previous.map(|p| p.hard_stop.clone()).unwrap_or_default();
        // `global maxpipes`: kept across a reload when unchanged, so the
        // pipes still open count against the same budget.
        #[cfg(target_os = "linux")]
        let pipes = {
            let max =
                cfg.global.maxpipes.map(|n| n as usize).unwrap_or_else(|| {
                    crate::l4::splice::PipeBudget::default_max(cfg.global.maxconn)
                });
            let size = cfg.global.pipesize.map(|n| n as usize);
            previous
                .map(|p| p.pipes.clone())
                .filter(|p| p.max() == max && p.size() == size)
                .unwrap_or_else(|| crate::l4::splice::PipeBudget::sized(max, size))
        };
        let mut frontends = Vec::with_capacity(cfg.frontends.len());
        for f in &cfg.frontends {
            let mut routes = Vec::with_capacity(f.use_backends.len());
            for ub in &f.use_backends {
                let target = match &ub.dynamic {
                    Some(fmt) => RouteTarget::Dynamic(fmt.clone()),
                    None => RouteTarget::Static(find(&ub.backend).ok_or_else(|| {
                        Error::Other(format!(
                            "parsing [{}] : 'use_backend' : unknown backend '{}'",
                            ub.loc, ub.backend
                        ))
                    })?),
                };
                routes.push(Route {
                    target,
                    cond: ub.cond.clone(),
                });
            }
            let backend = f.default_backend.as_deref().and_then(find);
            let logger = Logger::new(&f.logs);
            let httplog = match (&logger, f.mode) {
                (Some(_), Mode::Http) if f.log_format.is_some() => f.log_format.clone(),
                (Some(_), Mode::Http) if f.options.httplog => Some(Arc::new(LineFormat::httplog())),
                _ => None,
            };
            // `option log-json`: the same layout, written as JSON.
            let httplog = match httplog {
                Some(lf) if f.options.log_json => Some(Arc::new((*lf).clone().json(true))),
                other => other,
            };
            frontends.push(Arc::new(Frontend {
                name: f.name.clone(),
                mode: f.mode,
                binds: f.binds.clone(),
                routes,
                backend,
                backends: by_name.clone(),
                tables: tables.clone(),
                tcp_request_connection: f.tcp_request_connection.clone(),
                http_request: f.http_request.clone(),
                http_response: f.http_response.clone(),
                capture_request: f.capture_request.clone(),
                capture_response: f.capture_response.clone(),
                httplog,
                logasap: f.options.logasap,
                forwardfor: f.options.forwardfor.clone(),
                h2_keepalive: f.h2_keepalive,
                h2_tune: cfg.global.h2,
                hard_stop: previous
                    .map(|p| p.hard_stop.clone())
                    .unwrap_or_else(|| hard_stop.clone()),
                timeouts: f.timeouts.clone(),
                conns: f.maxconn.map(|n| {
                    previous
                        .and_then(|p| p.frontends.iter().find(|o| o.name == f.name))
                        .filter(|o| o.maxconn == Some(n))
                        .and_then(|o| o.conns.clone())
                        .unwrap_or_else(|| Arc::new(Semaphore::new(n as usize)))
                }),
                maxconn: f.maxconn,
                active: AtomicU32::new(0),
                logger,
                tcplog: f.options.tcplog && f.mode == Mode::Tcp,
                splice: f.options.splice,
                bufsize: cfg
                    .global
                    .bufsize
                    .unwrap_or(crate::config::Global::DEFAULT_BUFSIZE)
                    as usize,
                #[cfg(target_os = "linux")]
                pipes: pipes.clone(),
                log_json: f.options.log_json,
                stats: stats.frontend(&f.name),
                registry: stats.clone(),
            }));
        }
        Ok(Snapshot {
            stats,
            tables,
            frontends,
            backends,
            global_maxconn: cfg.global.maxconn,
            #[cfg(target_os = "linux")]
            pipes,
            hard_stop,
            global_conns: cfg.global.maxconn.map(|n| {
                previous
                    .filter(|p| p.global_maxconn == Some(n))
                    .and_then(|p| p.global_conns.clone())
                    .unwrap_or_else(|| Arc::new(Semaphore::new(n as usize)))
            }),
        })
    }

    /// The stick table of backend `name`, if it has one.
    pub fn table(&self, name: &str) -> Option<&Arc<crate::stick::Table>> {
        self.tables.get(name)
    }

    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name == name)
    }
}
