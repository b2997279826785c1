//! One error type for the data path and the one table that turns a failure
//! into what each kind of client sees.
//!
//! Every proxy-side failure has an [`ErrorKind`]. [`ErrorKind::reply`] maps it
//! to the HTTP status a plain HTTP client gets, the gRPC status code a gRPC
//! client gets (in a trailers-only response) and the two-letter termination
//! state written to the access log (HAProxy's §8.5 codes).

use std::fmt;

/// gRPC status codes used by the proxy itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The decimal string sent in `grpc-status`.
    pub fn as_str(self) -> &'static str {
        const S: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        S[self as usize]
    }
}

/// What went wrong, from the proxy's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No usable server in the backend (all down, disabled, or none configured).
    NoServer,
    /// The frontend has no backend for this request.
    NoBackend,
    /// TCP connect to the server was refused or failed.
    ConnectFailed,
    /// TCP connect did not finish within `timeout connect`.
    ConnectTimeout,
    /// The HTTP/2 handshake with the server failed or the server broke the protocol.
    UpstreamProtocol,
    /// The upstream connection was lost while the call was in flight.
    UpstreamClosed,
    /// Nothing moved on the call for `timeout server`.
    ServerTimeout,
    /// The call's gRPC deadline (`grpc-timeout`) ran out in weir. The log's
    /// termination state depends on the stage (`sQ`, `sC`, `sH`, `sD`).
    DeadlineExceeded,
    /// Every usable server was full and the call waited too long in the queue.
    QueueTimeout,
    /// Every usable server was full and the queue too (`maxqueue`).
    QueueFull,
    /// The client's request could not be understood.
    BadRequest,
    /// The client went away or reset the call before it was sent on.
    ClientAborted,
    /// A bug in weir.
    Internal,
}

/// How a failure is answered and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub http_status: u16,
    pub grpc: GrpcCode,
    /// HAProxy termination state (first letter: who, second: when).
    pub termination: &'static str,
}

impl ErrorKind {
    /// The table: one row per failure kind.
    pub const fn reply(self) -> Reply {
        use ErrorKind::*;
        use GrpcCode as G;
        let (http_status, grpc, termination) = match self {
            NoServer => (503, G::Unavailable, "SC"),
            NoBackend => (503, G::Unavailable, "PR"),
            ConnectFailed => (503, G::Unavailable, "SC"),
            ConnectTimeout => (503, G::Unavailable, "sC"),
            UpstreamProtocol => (502, G::Unavailable, "SH"),
            UpstreamClosed => (502, G::Unavailable, "SD"),
            ServerTimeout => (504, G::DeadlineExceeded, "sH"),
            DeadlineExceeded => (504, G::DeadlineExceeded, "sH"),
            QueueTimeout => (503, G::ResourceExhausted, "sQ"),
            QueueFull => (503, G::ResourceExhausted, "sQ"),
            BadRequest => (400, G::Internal, "PR"),
            ClientAborted => (499, G::Cancelled, "CH"),
            Internal => (500, G::Internal, "PI"),
        };
        Reply {
            http_status,
            grpc,
            termination,
        }
    }

    /// True when nothing was sent to a server, so trying again is safe.
    pub const fn nothing_sent(self) -> bool {
        matches!(
            self,
            ErrorKind::NoServer
                | ErrorKind::ConnectFailed
                | ErrorKind::ConnectTimeout
                | ErrorKind::QueueTimeout
                | ErrorKind::QueueFull
        )
    }
}

/// A data-path failure: its kind and a human-readable reason that ends up in
/// `grpc-message`, the plain-HTTP body and the log.
#[derive(Debug)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub message: String,
    /// For overload answers (a full queue, a queue timeout): how long the
    /// client should wait before trying again, sent to gRPC clients as
    /// `grpc-retry-pushback-ms` (gRFC A6) and to HTTP clients as
    /// `Retry-After` (whole seconds, rounded up).
    pub retry_pushback: Option<std::time::Duration>,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProxyError {
            kind,
            message: message.into(),
            retry_pushback: None,
        }
    }

    /// The same error, telling the client to wait `d` before a retry.
    pub fn with_pushback(mut self, d: std::time::Duration) -> Self {
        self.retry_pushback = Some(d);
        self
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProxyError {}

/// Errors that stop weir from starting (bad config, a port already in use).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot bind {addr} for frontend '{frontend}': {source}")]
    Bind {
        frontend: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_their_numbers() {
        assert_eq!(GrpcCode::Unavailable.as_str(), "14");
        assert_eq!(GrpcCode::Unauthenticated.as_str(), "16");
        assert_eq!(GrpcCode::Ok.as_str(), "0");
    }

    #[test]
    fn every_connect_failure_is_unavailable() {
        for k in [
            ErrorKind::NoServer,
            ErrorKind::ConnectFailed,
            ErrorKind::ConnectTimeout,
        ] {
            assert_eq!(k.reply().grpc, GrpcCode::Unavailable);
            assert!(k.nothing_sent());
        }
        assert_eq!(
            ErrorKind::ServerTimeout.reply().grpc,
            GrpcCode::DeadlineExceeded
        );
        assert_eq!(
            ErrorKind::DeadlineExceeded.reply().grpc,
            GrpcCode::DeadlineExceeded
        );
    }

    #[test]
    fn queue_overload_is_resource_exhausted() {
        for k in [ErrorKind::QueueTimeout, ErrorKind::QueueFull] {
            let r = k.reply();
            assert_eq!(
                (r.http_status, r.grpc, r.termination),
                (503, GrpcCode::ResourceExhausted, "sQ")
            );
            assert!(k.nothing_sent());
        }
    }
}
