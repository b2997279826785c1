//! The httplog line of one request: filled in as the request goes through
//! the proxy, written once at the end of the response (or, with `option
//! logasap`, as soon as the response headers are in).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{request, HeaderMap, Version};

use crate::acl::ResInput;
use crate::backend::{Backend, Server};
use crate::config::Capture;
use crate::http::rules::{grpc_status, Env, ReqHead};
use crate::observe::log::Logger;
use crate::observe::logformat::{HttpLogRecord, LogFormat};
use crate::runtime::Frontend;

/// Facts about the client connection every request on it shares.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub accepted: SystemTime,
    /// TLS facts of the client connection (`None` for cleartext).
    pub tls: Option<crate::acl::TlsInfo>,
    /// What the connection's `tcp-request connection track-sc*` rules
    /// tracked: its requests' sc0..2.
    pub track: Option<Arc<crate::stick::ConnTrack>>,
}

/// A request's log line in the making.
pub struct PendingLog {
    fe: Arc<Frontend>,
    logger: Arc<Logger>,
    format: Arc<LogFormat>,
    rec: HttpLogRecord,
    started: Instant,
    /// The request head, kept only when the format has `%[...]` samples.
    req: Option<ReqHead>,
    /// Response headers for `%[res.hdr(...)]` samples.
    res_headers: Option<HeaderMap>,
    /// TLS facts for `%[ssl_fc_sni]`, `%[ssl_c_s_dn]`, ... (when samples are used).
    tls: Option<crate::acl::TlsInfo>,
    /// The request's stick counters, for `%[sc_http_req_rate(0)]` and
    /// the other `sc_*` samples (when samples are used).
    track: Option<Arc<crate::stick::ReqTrack>>,
    written: bool,
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn version_text(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn capture(caps: &[Capture], headers: &HeaderMap) -> Vec<Option<String>> {
    caps.iter()
        .map(|c| {
            headers.get(&c.name).map(|v| {
                let s = String::from_utf8_lossy(v.as_bytes());
                let mut end = s.len().min(c.len);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s[..end].to_string()
            })
        })
        .collect()
}

impl PendingLog {
    /// Starts the line of a request whose head is `parts` (before any rule
    /// changed it: the log shows what the client sent). `None` when the
    /// frontend does not log requests.
    pub fn start(fe: &Arc<Frontend>, conn: &ConnInfo, parts: &request::Parts) -> Option<Box<Self>> {
        let format = fe.httplog.clone()?;
        let logger = fe.logger.clone()?;
        let uri = match parts.uri.path_and_query() {
            Some(pq) => pq.as_str().to_string(),
            None => parts.uri.to_string(),
        };
        let rec = HttpLogRecord {
            client: conn.peer,
            local: conn.local,
            accept_date: conn.accepted,
            request_date: SystemTime::now(),
            frontend: fe.name.clone(),
            backend: fe.name.clone(),
            server: "<NOSRV>".into(),
            th: 0,
            ti: 0,
            treq: 0,
            tw: -1,
            tc: -1,
            tr: -1,
            ta: 0,
            logasap: false,
            status: 0,
            bytes_out: 0,
            bytes_in: 0,
            termination: *b"----",
            actconn: crate::listener::active_connections(),
            feconn: fe.active.load(Ordering::Relaxed),
            beconn: 0,
            srvconn: 0,
            retries: 0,
            srv_queue: 0,
            be_queue: 0,
            req_captures: capture(&fe.capture_request, &parts.headers),
            res_captures: Vec::new(),
            method: parts.method.as_str().to_string(),
            uri,
            version: version_text(parts.version),
            grpc_status: None,
        };
        let req = format.uses_samples().then(|| ReqHead::of(parts));
        Some(Box::new(PendingLog {
            fe: fe.clone(),
            logger,
            format,
            rec,
            started: Instant::now(),
            tls: if req.is_some() {
                conn.tls.clone()
            } else {
                None
            },
            req,
            res_headers: None,
            track: None,
            written: false,
        }))
    }

    /// The chosen backend.
    pub fn backend(&mut self, b: &Backend) {
        self.rec.backend = b.name.clone();
        self.rec.be_queue = b.queued() as u32;
    }

    /// The server the call went to and how long getting it took.
    pub fn server(&mut self, s: &Server, queued: std::time::Duration) {
        self.rec.server = s.name.clone();
        self.rec.tw = ms(queued);
        self.rec.srvconn = s.state.inflight.load(Ordering::Relaxed);
    }

    /// Backend connections: calls in flight over all its servers.
    pub fn backend_conns(&mut self, b: &Backend) {
        self.rec.beconn = b
            .servers
            .iter()
            .map(|s| s.state.inflight.load(Ordering::Relaxed))
            .sum();
    }

    /// How many times the call was tried again (`%rc`).
    pub fn retries(&mut self, n: u32) {
        self.rec.retries = n;
    }

    pub fn connect_time(&mut self, d: std::time::Duration) {
        self.rec.tc = ms(d);
    }

    pub fn response_time(&mut self, d: std::time::Duration) {
        self.rec.tr = ms(d);
    }

    /// The response head as sent to the client.
    pub fn response(&mut self, status: u16, headers: &HeaderMap) {
        self.rec.status = status;
        self.rec.res_captures = capture(&self.fe.capture_response, headers);
        if let Some(code) = grpc_status(headers) {
            self.rec.grpc_status = Some(code);
        }
        if self.req.is_some() {
            self.res_headers = Some(headers.clone());
        }
    }

    /// A termination state other than `--` (proxy errors, denials).
    pub fn termination(&mut self, two: &str) {
        let b = two.as_bytes();
        if b.len() == 2 {
            self.rec.termination[0] = b[0];
            self.rec.termination[1] = b[1];
        }
    }

    pub fn add_bytes(&mut self, n: usize) {
        self.rec.bytes_out += n as u64;
    }

    /// Final `grpc-status` from the trailers.
    pub fn trailers(&mut self, t: &HeaderMap) {
        if let Some(code) = grpc_status(t) {
            self.rec.grpc_status = Some(code);
        }
    }

    /// The request's stick counters (read by `sc_*` samples at the end).
    pub fn track(&mut self, t: &Arc<crate::stick::ReqTrack>) {
        if self.req.is_some() {
            self.track = Some(t.clone());
        }
    }

    pub fn is_written(&self) -> bool {
        self.written
    }

    /// Writes the line now. `early`: the response is still streaming
    /// (`option logasap`), so `%Ta` and `%B` get HAProxy's `+` marker.
    pub fn write(&mut self, early: bool) {
        if self.written {
            return;
        }
        self.written = true;
        self.rec.ta = ms(self.started.elapsed());
        self.rec.logasap = early;
        let mut line = String::with_capacity(256);
        match &self.req {
            Some(req) => {
                let env = Env {
                    src: self.rec.client,
                    dst: self.rec.local,
                    frontend: &self.rec.frontend,
                    backend: Some(&self.rec.backend),
                    tls: self.tls.as_ref(),
                    track: self.track.as_deref(),
                };
                let empty = HeaderMap::new();
                let res = ResInput {
                    status: self.rec.status,
                    headers: self.res_headers.as_ref().unwrap_or(&empty),
                    grpc_status: self.rec.grpc_status,
                };
                let input = env.input(&req.method, &req.uri, req.version, &req.headers, Some(res));
                self.format.render(Some(&self.rec), Some(&input), &mut line);
            }
            None => self.format.render(Some(&self.rec), None, &mut line),
        }
        self.logger.emit(&line);
    }
}
