//! What weir tells the outside world: log sinks and HAProxy's log layouts.

pub mod log;
pub mod logformat;
pub mod stats;
pub mod tcplog;
pub mod time;
