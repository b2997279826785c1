//! What weir tells the outside world: log sinks and HAProxy's log layouts.
//! (Metrics and the stats page come with the observability issue.)

pub mod log;
pub mod logformat;
pub mod tcplog;
pub mod time;
