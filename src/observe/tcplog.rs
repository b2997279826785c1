//! HAProxy's `option tcplog` line:
//!
//! ```text
//! %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
//! 127.0.0.1:34012 [22/Nov/2026:05:01:02.123] fe be/srv1 0/1/5003 1234 -- 1/1/0/0/0 0/0
//! ```

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::observe::time::Civil;

/// Everything one tcplog line says about a finished connection.
#[derive(Debug, Clone)]
pub struct TcpLog<'a> {
    pub client: SocketAddr,
    pub accepted: SystemTime,
    pub frontend: &'a str,
    pub backend: &'a str,
    /// `<NOSRV>` when no server was reached.
    pub server: &'a str,
    /// Time waited in queue (ms), -1 if it never got a server.
    pub tw: i64,
    /// Connect time (ms), -1 if it never connected.
    pub tc: i64,
    /// Total session time (ms).
    pub tt: u64,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// Termination state, e.g. `--`, `cD`, `SC`.
    pub term: &'a str,
    pub actconn: u32,
    pub feconn: u32,
    pub beconn: u32,
    pub srvconn: u32,
    pub retries: u32,
    pub srv_queue: u32,
    pub be_queue: u32,
}

impl TcpLog<'_> {
    pub fn line(&self) -> String {
        let mut s = String::with_capacity(160);
        let ip = self.client.ip();
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let _ = write!(
            s,
            "{}:{} [{}] {} {}/{} {}/{}/{} {} {} {}/{}/{}/{}/{} {}/{}",
            ip,
            self.client.port(),
            Civil::from_system(self.accepted).haproxy(),
            self.frontend,
            self.backend,
            self.server,
            self.tw,
            self.tc,
            self.tt,
            self.bytes,
            self.term,
            self.actconn,
            self.feconn,
            self.beconn,
            self.srvconn,
            self.retries,
            self.srv_queue,
            self.be_queue
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn haproxy_layout() {
        let l = TcpLog {
            client: "127.0.0.1:34012".parse().unwrap(),
            accepted: UNIX_EPOCH + Duration::from_millis(1_795_323_662_123),
            frontend: "fe",
            backend: "be",
            server: "srv1",
            tw: 0,
            tc: 1,
            tt: 5003,
            bytes: 1234,
            term: "--",
            actconn: 1,
            feconn: 1,
            beconn: 0,
            srvconn: 0,
            retries: 0,
            srv_queue: 0,
            be_queue: 0,
        };
        assert_eq!(
            l.line(),
            "127.0.0.1:34012 [22/Nov/2026:05:01:02.123] fe be/srv1 0/1/5003 1234 -- 1/1/0/0/0 0/0"
        );
    }
}
