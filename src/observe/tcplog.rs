//! HAProxy's `option tcplog` line:
//!
//! ```text
//! %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
//! 127.0.0.1:34012 [22/Nov/2026:05:01:02.123] fe be/srv1 0/1/5003 1234 -- 1/1/0/0/0 0/0
//! ```
//!
//! With `option log-json`, [`TcpLog::json_line`] writes the same fields as
//! one JSON object, named like the `log-format` variables in a JSON line
//! (`%ci` is `client_ip`, `%Tt` is `Tt`, ...).

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::observe::logformat::json_str;
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
    /// The client's IP address, an IPv4-mapped IPv6 one as IPv4.
    fn client_ip(&self) -> std::net::IpAddr {
        let ip = self.client.ip();
        match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        }
    }

    /// The line as `option log-json` writes it: the fields of [`TcpLog::line`]
    /// as one JSON object, in the same order.
    pub fn json_line(&self) -> String {
        let mut s = String::with_capacity(384);
        let _ = write!(
            s,
            "{{\"client_ip\":\"{}\",\"client_port\":{},\"date_time\":\"{}\",\"frontend_name\":",
            self.client_ip(),
            self.client.port(),
            Civil::from_system(self.accepted).haproxy(),
        );
        json_str(&mut s, self.frontend);
        s.push_str(",\"backend_name\":");
        json_str(&mut s, self.backend);
        s.push_str(",\"server_name\":");
        json_str(&mut s, self.server);
        let _ = write!(
            s,
            ",\"Tw\":{},\"Tc\":{},\"Tt\":{},\"bytes_read\":{},\"termination_state\":",
            self.tw, self.tc, self.tt, self.bytes
        );
        json_str(&mut s, self.term);
        let _ = write!(
            s,
            ",\"actconn\":{},\"feconn\":{},\"beconn\":{},\"srv_conn\":{},\"retries\":{},\"srv_queue\":{},\"backend_queue\":{}}}",
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

    pub fn line(&self) -> String {
        let mut s = String::with_capacity(160);
        let ip = self.client_ip();
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

    fn sample() -> TcpLog<'static> {
        TcpLog {
            client: "[::ffff:127.0.0.1]:34012".parse().unwrap(),
            accepted: UNIX_EPOCH + Duration::from_millis(1_795_323_662_123),
            frontend: "fe",
            backend: "be",
            server: "<NOSRV>",
            tw: 0,
            tc: -1,
            tt: 5003,
            bytes: 1234,
            term: "SC",
            actconn: 1,
            feconn: 2,
            beconn: 3,
            srvconn: 4,
            retries: 5,
            srv_queue: 6,
            be_queue: 7,
        }
    }

    #[test]
    fn json_line() {
        let mut l = sample();
        assert_eq!(
            l.json_line(),
            "{\"client_ip\":\"127.0.0.1\",\"client_port\":34012,\"date_time\":\"22/Nov/2026:05:01:02.123\",\"frontend_name\":\"fe\",\"backend_name\":\"be\",\"server_name\":\"<NOSRV>\",\"Tw\":0,\"Tc\":-1,\"Tt\":5003,\"bytes_read\":1234,\"termination_state\":\"SC\",\"actconn\":1,\"feconn\":2,\"beconn\":3,\"srv_conn\":4,\"retries\":5,\"srv_queue\":6,\"backend_queue\":7}"
        );
        l.frontend = "f\"e\\";
        let v: serde_json::Value = serde_json::from_str(&l.json_line()).unwrap();
        assert_eq!(v["frontend_name"], "f\"e\\");
        // The text line is unchanged by the JSON one.
        assert!(l.line().starts_with("127.0.0.1:34012 ["));
    }

    /// The tcplog object uses the names a `log-format` JSON line gives the
    /// same variables.
    #[test]
    fn json_names_match_log_format() {
        use crate::acl::Stage;
        use crate::observe::logformat::LogFormat;
        let f = LogFormat::parse(
            "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq",
            Stage::Log,
        )
        .unwrap()
        .json(true);
        let mut s = String::new();
        f.render(None, None, &mut s);
        let keys = |line: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&s), keys(&sample().json_line()));
    }
}
