//! What weir tells the outside world: log sinks and HAProxy's log layouts.

pub mod log;
pub mod logformat;
pub mod metrics;
pub mod stats;
pub mod stats_page;
pub mod tcplog;
pub mod time;
