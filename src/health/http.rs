//! `option httpchk` / `http-check send` / `http-check expect`: one request
//! on a new connection, HTTP/1.x, or HTTP/2 (prior knowledge) with
//! `check-proto h2` on the server line. Without `http-check expect`, any
//! 2xx or 3xx status passes, like HAProxy.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::tcp::{open, Matcher};
use super::{Outcome, Progress};
use crate::backend::pool::UpstreamTls;
use crate::config::{HttpCheck, Pattern};

/// Most body bytes `http-check expect string` looks at.
const MAX_BODY: usize = 64 * 1024;

pub(crate) async fn check(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    cfg: &HttpCheck,
    h2: bool,
    progress: &Progress,
) -> Outcome {
    let stream = match open(addr, tls, progress).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let request = match build(addr, cfg, h2) {
        Ok(r) => r,
        Err(e) => return Outcome::fail("Socket error", Some(e)),
    };
    let io = TokioIo::new(stream);
    let sent = if h2 {
        match hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await {
            Ok((mut send, conn)) => {
                tokio::spawn(conn);
                send.send_request(request).await
            }
            Err(e) => return Outcome::fail("Layer6 invalid response", Some(e.to_string())),
        }
    } else {
        match hyper::client::conn::http1::handshake(io).await {
            Ok((mut send, conn)) => {
                tokio::spawn(conn);
                send.send_request(request).await
            }
            Err(e) => return Outcome::fail("Layer6 invalid response", Some(e.to_string())),
        }
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => return Outcome::fail("Layer7 invalid response", Some(e.to_string())),
    };
    let status = response.status();
    let code = status.as_u16().to_string();
    let reason = status.canonical_reason().unwrap_or("").to_string();
    let Some(expect) = &cfg.expect else {
        let ok = status.is_success() || status.is_redirection();
        return verdict(ok, &code, reason);
    };
    let found = match &expect.pattern {
        Pattern::Status(ranges) => ranges
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status.as_u16())),
        Pattern::Rstatus(re) => regex::Regex::new(re).is_ok_and(|re| re.is_match(&code)),
        other => {
            let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Outcome::fail("Layer7 invalid response", Some(e.to_string()))
                        .with_code(code)
                }
            };
            if Matcher::new(other).matches(&body) == expect.negate {
                return Outcome::fail(
                    "Layer7 wrong status",
                    Some("HTTP content check did not match".to_string()),
                )
                .with_code(code);
            }
            return verdict(true, &code, reason);
        }
    };
    verdict(found != expect.negate, &code, reason)
}

fn verdict(ok: bool, code: &str, reason: String) -> Outcome {
    let info = (!reason.is_empty()).then_some(reason);
    match ok {
        true => Outcome {
            info,
            ..Outcome::pass("Layer7 check passed")
        }
        .with_code(code),
        false => Outcome::fail("Layer7 wrong status", info).with_code(code),
    }
}

fn build(addr: SocketAddr, cfg: &HttpCheck, h2: bool) -> Result<Request<Empty<Bytes>>, String> {
    let method = Method::from_bytes(cfg.method.as_bytes())
        .map_err(|_| format!("invalid method '{}'", cfg.method))?;
    let (uri, version) = match h2 {
        true => (format!("http://{addr}{}", cfg.uri), Version::HTTP_2),
        false if cfg.version == "HTTP/1.0" => (cfg.uri.clone(), Version::HTTP_10),
        false => (cfg.uri.clone(), Version::HTTP_11),
    };
    let mut b = Request::builder().method(method).uri(uri).version(version);
    let mut host = false;
    for (name, value) in &cfg.headers {
        host |= name.eq_ignore_ascii_case("host");
        b = b.header(name.as_str(), value.as_str());
    }
    if !host && !h2 && version == Version::HTTP_11 {
        b = b.header(http::header::HOST, addr.to_string());
    }
    b.body(Empty::new()).map_err(|e| e.to_string())
}
