//! Log sinks for `log` lines: stdout, stderr and UDP syslog, in the
//! `raw`, `rfc3164` or `rfc5424` format.
//!
//! The data path never blocks on a log: stdout/stderr lines go through a
//! bounded queue to one writer thread, UDP datagrams are sent non-blocking;
//! when either is full the line is dropped and counted.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::config::{LogFormat, LogTarget};
use crate::observe::time::Civil;

/// Lines dropped because a sink was full (exposed by metrics later).
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

const SEVERITY_INFO: u8 = 6;
const QUEUE: usize = 16_384;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

fn writer() -> &'static SyncSender<(Stream, Vec<u8>)> {
    static TX: OnceLock<SyncSender<(Stream, Vec<u8>)>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<(Stream, Vec<u8>)>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("weir-log".into())
            .spawn(move || {
                for (stream, line) in rx {
                    let _ = match stream {
                        Stream::Stdout => std::io::stdout().lock().write_all(&line),
                        Stream::Stderr => std::io::stderr().lock().write_all(&line),
                    };
                }
            });
        if spawned.is_err() {
            tracing::error!("cannot start the log writer thread: logs to stdout/stderr are lost");
        }
        tx
    })
}

enum Sink {
    Stream(Stream),
    Udp(Arc<UdpSocket>, SocketAddr),
}

struct Target {
    sink: Sink,
    format: LogFormat,
    facility: u8,
}

/// Where one proxy's log lines go.
pub struct Logger {
    targets: Vec<Target>,
    hostname: String,
    pid: u32,
}

/// Syslog facility number for a name (`local0` = 16).
pub fn facility_code(name: &str) -> u8 {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
        "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
        "local5", "local6", "local7",
    ];
    NAMES.iter().position(|n| *n == name).unwrap_or(16) as u8
}

impl Logger {
    /// `None` when there is nowhere to log.
    pub fn new(targets: &[LogTarget]) -> Option<Arc<Logger>> {
        let mut out = Vec::new();
        for t in targets {
            let (sink, format, facility) = match t {
                LogTarget::Stdout { format, facility } => {
                    (Sink::Stream(Stream::Stdout), *format, facility)
                }
                LogTarget::Stderr { format, facility } => {
                    (Sink::Stream(Stream::Stderr), *format, facility)
                }
                LogTarget::Udp {
                    addr,
                    format,
                    facility,
                } => {
                    let bind: SocketAddr = if addr.is_ipv6() {
                        "[::]:0".parse().unwrap_or(*addr)
                    } else {
                        "0.0.0.0:0".parse().unwrap_or(*addr)
                    };
                    match UdpSocket::bind(bind).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
                        Ok(s) => (Sink::Udp(Arc::new(s), *addr), *format, facility),
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "cannot open a UDP socket for logs");
                            continue;
                        }
                    }
                }
                LogTarget::Unix { .. } => continue,
            };
            out.push(Target {
                sink,
                format,
                facility: facility_code(facility),
            });
        }
        if out.is_empty() {
            return None;
        }
        Some(Arc::new(Logger {
            targets: out,
            hostname: hostname(),
            pid: std::process::id(),
        }))
    }

    /// Sends one line (without newline) to every target.
    pub fn emit(&self, line: &str) {
        let now = Civil::from_system(SystemTime::now());
        for t in &self.targets {
            let pri = u32::from(t.facility) * 8 + u32::from(SEVERITY_INFO);
            let mut msg = match t.format {
                LogFormat::Raw => line.to_string(),
                LogFormat::Rfc3164 => {
                    format!("<{pri}>{} weir[{}]: {line}", now.rfc3164(), self.pid)
                }
                LogFormat::Rfc5424 => format!(
                    "<{pri}>1 {} {} weir {} - - {line}",
                    now.rfc5424(),
                    self.hostname,
                    self.pid
                ),
            };
            match &t.sink {
                Sink::Stream(s) => {
                    msg.push('\n');
                    if let Err(TrySendError::Full(_)) = writer().try_send((*s, msg.into_bytes())) {
                        DROPPED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Sink::Udp(sock, addr) => {
                    if sock.send_to(msg.as_bytes(), addr).is_err() {
                        DROPPED.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities() {
        assert_eq!(facility_code("local0"), 16);
        assert_eq!(facility_code("local7"), 23);
        assert_eq!(facility_code("daemon"), 3);
    }

    #[test]
    fn udp_syslog_lines_arrive_in_each_format() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let addr = rx.local_addr().unwrap();
        for (format, check) in [
            (LogFormat::Raw, "hello" as &str),
            (LogFormat::Rfc3164, "<134>"),
            (LogFormat::Rfc5424, "<134>1 "),
        ] {
            let l = Logger::new(&[LogTarget::Udp {
                addr,
                format,
                facility: "local0".into(),
            }])
            .unwrap();
            l.emit("hello");
            let mut buf = [0u8; 512];
            let n = rx.recv(&mut buf).unwrap();
            let got = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(got.starts_with(check) && got.ends_with("hello"), "{got}");
        }
    }
}
