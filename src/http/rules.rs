//! Running `http-request` / `http-response` rules and `use_backend` routes
//! against one request. Conditions and formats were compiled at load time;
//! here they only read the request.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{request, response, Method, Response, StatusCode, Uri, Version};

use crate::acl::{Input, ResInput, TlsInfo};
use crate::backend::Backend;
use crate::config::{
    ConnAction, HeaderAction, ReqAction, ResAction, ReturnBody, ReturnSpec, Rule, Service,
};
use crate::error::{ErrorKind, GrpcCode, ProxyError};
use crate::http::body::ProxyBody;
use crate::http::grpc;
use crate::observe::logformat::LogFormat as LineFormat;
use crate::runtime::{Frontend, RouteTarget};

/// What a request is evaluated with besides its head.
pub struct Env<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub frontend: &'a str,
    pub backend: Option<&'a str>,
    pub tls: Option<&'a TlsInfo>,
    /// Stick tables and the counters this request tracks.
    pub track: Option<&'a crate::stick::ReqTrack>,
}

impl<'e> Env<'e> {
    /// What a rule sees of a client connection before any request (the
    /// `tcp-request connection` rules, mode tcp `use_backend`).
    pub fn connection(
        fe: &'e crate::runtime::Frontend,
        src: SocketAddr,
        dst: SocketAddr,
        track: Option<&'e crate::stick::ReqTrack>,
    ) -> Env<'e> {
        Env {
            src,
            dst,
            frontend: &fe.name,
            backend: None,
            tls: None,
            track,
        }
    }

    /// The ACL view of a request head (and optionally its response).
    pub fn input<'a>(
        &'a self,
        method: &'a Method,
        uri: &'a Uri,
        version: Version,
        headers: &'a HeaderMap,
        res: Option<ResInput<'a>>,
    ) -> Input<'a> {
        Input {
            method,
            uri,
            version,
            headers,
            src: self.src,
            dst: self.dst,
            frontend: self.frontend,
            backend: self.backend,
            tls: self.tls,
            res,
            track: self.track,
        }
    }

    fn req_input<'a>(&'a self, p: &'a request::Parts) -> Input<'a> {
        self.input(&p.method, &p.uri, p.version, &p.headers, None)
    }
}

fn render(fmt: &LineFormat, input: &Input) -> String {
    let mut out = String::new();
    fmt.render(None, Some(input), &mut out);
    out
}

/// A proxy-made reply and the termination state it is logged with.
pub struct Reply {
    pub response: Response<ProxyBody>,
    pub termination: &'static str,
}

/// Result of a rule list.
pub enum Outcome {
    /// Go on with the next step.
    Continue,
    /// The request was answered by a rule (`deny`, `return`).
    Reply(Reply),
    /// A service weir runs itself answers the request
    /// (`use-service prometheus-exporter`, the `stats` page).
    Service(Service),
}

/// Whether a request for `uri` is one for the stats page at `prefix`
/// (`stats uri`): HAProxy compares the prefix with the request's URI,
/// query string included.
pub fn is_stats_uri(prefix: &str, uri: &Uri) -> bool {
    uri.path_and_query()
        .is_some_and(|pq| pq.as_str().starts_with(prefix))
}

/// Runs the `tcp-request connection` rules of a new client connection
/// (only connection fetches: the request head given to the conditions is
/// empty). Returns false when the connection is to be rejected.
pub fn connection(rules: &[Rule<ConnAction>], env: &Env) -> bool {
    let (parts, ()) = http::Request::new(()).into_parts();
    let input = env.req_input(&parts);
    for rule in rules {
        if let Some(cond) = &rule.cond {
            if !cond.eval(&input) {
                continue;
            }
        }
        match &rule.action {
            ConnAction::Accept => return true,
            ConnAction::Reject => return false,
            ConnAction::Track { ctr, key, table } => {
                if let (Some(t), Some(k)) = (env.track, key.eval(&input)) {
                    t.track(*ctr, table, &k);
                }
            }
            ConnAction::IncGpc0 { ctr } => {
                if let Some(t) = env.track {
                    t.inc_gpc0(*ctr, None);
                }
            }
        }
    }
    true
}

/// Runs `http-request` rules in order on the request head.
pub fn request(
    rules: &[Rule<ReqAction>],
    parts: &mut request::Parts,
    env: &Env,
    is_grpc: bool,
) -> Outcome {
    for rule in rules {
        if let Some(cond) = &rule.cond {
            if !cond.eval(&env.req_input(parts)) {
                continue;
            }
        }
        match &rule.action {
            ReqAction::Allow => break,
            // Checked once the other rules ran (below).
            ReqAction::UseService(Service::Stats(_)) => {}
            ReqAction::UseService(s) => return Outcome::Service(s.clone()),
            ReqAction::Deny { status } => {
                let mut response = deny(*status, is_grpc);
                // A rate-limited call (429, RESOURCE_EXHAUSTED) is told when
                // to come back: the tracked table's rate period, else 1 s.
                if *status == 429 {
                    let wait = env
                        .track
                        .map_or(std::time::Duration::from_secs(1), |t| t.pushback());
                    let h = response.headers_mut();
                    if is_grpc {
                        h.insert(
                            "grpc-retry-pushback-ms",
                            HeaderValue::from(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                        );
                    } else {
                        h.insert(
                            http::header::RETRY_AFTER,
                            HeaderValue::from(wait.as_secs().max(1)),
                        );
                    }
                }
                return Outcome::Reply(Reply {
                    response,
                    termination: "PR",
                });
            }
            ReqAction::Track { ctr, key, table } => {
                if let Some(t) = env.track {
                    if let Some(k) = key.eval(&env.req_input(parts)) {
                        t.track(*ctr, table, &k);
                    }
                }
            }
            ReqAction::IncGpc0 { ctr } => {
                if let Some(t) = env.track {
                    t.inc_gpc0(*ctr, None);
                }
            }
            ReqAction::Return(spec) => {
                return Outcome::Reply(Reply {
                    response: give_back(spec, &env.req_input(parts), is_grpc),
                    termination: "LR",
                })
            }
            ReqAction::Header(h) => {
                let value = header_value(h, &env.req_input(parts));
                edit_headers(h, value, &mut parts.headers);
            }
            ReqAction::SetPath(f) | ReqAction::SetQuery(f) | ReqAction::SetUri(f) => {
                let value = render(f, &env.req_input(parts));
                let uri = match &rule.action {
                    ReqAction::SetPath(_) => with_path(&parts.uri, &value),
                    ReqAction::SetQuery(_) => with_query(&parts.uri, &value),
                    _ => value.parse::<Uri>().ok(),
                };
                match uri {
                    Some(uri) => parts.uri = uri,
                    None => tracing::debug!(
                        value,
                        "http-request: result is not a valid URI, rule skipped"
                    ),
                }
            }
            ReqAction::SetMethod(f) => {
                let value = render(f, &env.req_input(parts));
                match Method::from_bytes(value.as_bytes()) {
                    Ok(m) => parts.method = m,
                    Err(_) => tracing::debug!(
                        value,
                        "http-request set-method: not a method, rule skipped"
                    ),
                }
            }
        }
    }
    // `stats enable`: the resolver made the page the last rule; it answers
    // after the other rules, even when one said `allow`.
    if let Some(ReqAction::UseService(Service::Stats(page))) = rules.last().map(|r| &r.action) {
        if is_stats_uri(&page.uri, &parts.uri) {
            return Outcome::Service(Service::Stats(page.clone()));
        }
    }
    Outcome::Continue
}

/// The saved request head `http-response` rules and logs read.
pub struct ReqHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
}

impl ReqHead {
    pub fn of(p: &request::Parts) -> ReqHead {
        ReqHead {
            method: p.method.clone(),
            uri: p.uri.clone(),
            version: p.version,
            headers: p.headers.clone(),
        }
    }
}

/// Runs `http-response` rules on a response head. Returns a replacement
/// response when a rule denies it.
pub fn response(
    rules: &[Rule<ResAction>],
    parts: &mut response::Parts,
    req: &ReqHead,
    env: &Env,
    is_grpc: bool,
) -> Option<Reply> {
    fn res_input(parts: &response::Parts) -> ResInput<'_> {
        ResInput {
            status: parts.status.as_u16(),
            headers: &parts.headers,
            grpc_status: grpc_status(&parts.headers),
        }
    }
    for rule in rules {
        if let Some(cond) = &rule.cond {
            let res = res_input(parts);
            let i = env.input(&req.method, &req.uri, req.version, &req.headers, Some(res));
            if !cond.eval(&i) {
                continue;
            }
        }
        match &rule.action {
            ResAction::Allow => break,
            ResAction::Deny { status } => {
                return Some(Reply {
                    response: deny(*status, is_grpc),
                    termination: "PH",
                })
            }
            ResAction::SetStatus(code) => {
                if let Ok(s) = StatusCode::from_u16(*code) {
                    parts.status = s;
                }
            }
            ResAction::Header(h) => {
                let value = {
                    let res = res_input(parts);
                    let i = env.input(&req.method, &req.uri, req.version, &req.headers, Some(res));
                    header_value(h, &i)
                };
                edit_headers(h, value, &mut parts.headers);
            }
        }
    }
    None
}

/// The `grpc-status` of a header block, if it has a valid one.
pub fn grpc_status(h: &HeaderMap) -> Option<u32> {
    // A prebuilt name: `get("grpc-status")` would parse and validate the
    // name text on every call.
    const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    let v = h.get(GRPC_STATUS)?.as_bytes();
    match v {
        // The usual case: one or two ASCII digits.
        [d] if d.is_ascii_digit() => Some(u32::from(d - b'0')),
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => std::str::from_utf8(v).ok()?.trim().parse().ok(),
    }
}

/// Picks the backend: the first `use_backend` whose condition matches,
/// else `default_backend`.
pub fn route(fe: &Frontend, parts: &request::Parts, env: &Env) -> Result<Arc<Backend>, ProxyError> {
    for r in &fe.routes {
        if let Some(cond) = &r.cond {
            if !cond.eval(&env.req_input(parts)) {
                continue;
            }
        }
        match &r.target {
            RouteTarget::Static(b) => return Ok(b.clone()),
            RouteTarget::Dynamic(f) => {
                let name = render(f, &env.req_input(parts));
                return match fe.backends.get(name.as_str()) {
                    Some(b) if b.mode == fe.mode => Ok(b.clone()),
                    Some(_) => Err(ProxyError::new(
                        ErrorKind::NoBackend,
                        format!(
                            "use_backend: backend '{name}' has another mode than frontend {}",
                            fe.name
                        ),
                    )),
                    None => Err(ProxyError::new(
                        ErrorKind::NoBackend,
                        format!(
                            "use_backend: no backend named '{name}' in frontend {}",
                            fe.name
                        ),
                    )),
                };
            }
        }
    }
    fe.backend.clone().ok_or_else(|| {
        ProxyError::new(
            ErrorKind::NoBackend,
            format!("no backend for this request in frontend {}", fe.name),
        )
    })
}

/// `option forwardfor`: adds the client address in `x-forwarded-for`
/// (or the configured header).
pub fn forwardfor(ff: &crate::config::ForwardFor, headers: &mut HeaderMap, client: SocketAddr) {
    let ip = match client.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(client.ip()),
        v4 => v4,
    };
    if let Some(net) = ff.except {
        if crate::config::in_network(ip, net) {
            return;
        }
    }
    if ff.if_none && headers.contains_key(&ff.header) {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
        headers.append(ff.header.clone(), v);
    }
}

/// The gRPC status a denied call gets for an HTTP status: the issue's
/// table for the common ones, gRPC's HTTP-to-status mapping for the rest.
pub fn grpc_code_for(status: u16) -> GrpcCode {
    match status {
        400 => GrpcCode::Internal,
        401 => GrpcCode::Unauthenticated,
        403 => GrpcCode::PermissionDenied,
        404 => GrpcCode::Unimplemented,
        429 => GrpcCode::ResourceExhausted,
        502..=504 => GrpcCode::Unavailable,
        _ => GrpcCode::Unknown,
    }
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The reply to `deny`: trailers-only for gRPC, status + short text otherwise.
pub fn deny(status: u16, is_grpc: bool) -> Response<ProxyBody> {
    let message = format!("{status} {}: request denied by policy", reason(status));
    if is_grpc {
        trailers_only(grpc_code_for(status), &message)
    } else {
        let mut resp = Response::new(ProxyBody::full(format!("{message}\n")));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        resp
    }
}

fn trailers_only(code: GrpcCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::Empty);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.extend(grpc::status_headers(code, message));
    resp
}

/// The reply to `return`. A gRPC call answered with a non-2xx status gets
/// the matching trailers-only status (the body, if any, as its message).
fn give_back(spec: &ReturnSpec, input: &Input, is_grpc: bool) -> Response<ProxyBody> {
    let body = match &spec.body {
        None => None,
        Some(ReturnBody::Text(b)) => Some(b.clone()),
        Some(ReturnBody::Format(f)) => Some(render(f, input).into()),
    };
    if is_grpc && !(200..300).contains(&spec.status) {
        let message = match &body {
            Some(b) => String::from_utf8_lossy(b).trim().to_string(),
            None => format!("{} {}", spec.status, reason(spec.status)),
        };
        return trailers_only(grpc_code_for(spec.status), &message);
    }
    let mut resp = Response::new(match body {
        Some(b) => ProxyBody::full(b),
        None => ProxyBody::Empty,
    });
    *resp.status_mut() = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::OK);
    if let Some(ct) = &spec.content_type {
        if let Ok(v) = HeaderValue::from_str(ct) {
            resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
    }
    for (name, f) in &spec.headers {
        if let Ok(v) = HeaderValue::from_str(&render(f, input)) {
            resp.headers_mut().append(name.clone(), v);
        }
    }
    resp
}

fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    rebuild(uri, &pq)
}

fn with_query(uri: &Uri, query: &str) -> Option<Uri> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let pq = if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{query}", uri.path())
    };
    rebuild(uri, &pq)
}

fn rebuild(uri: &Uri, pq: &str) -> Option<Uri> {
    let mut p = uri.clone().into_parts();
    p.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(p).ok()
}

/// The rendered format of a header action (computed before the headers
/// are changed, since the format may read them).
fn header_value(h: &HeaderAction, input: &Input) -> Option<String> {
    match h {
        HeaderAction::Set(_, f)
        | HeaderAction::Add(_, f)
        | HeaderAction::Replace(_, _, f)
        | HeaderAction::ReplaceValue(_, _, f) => Some(render(f, input)),
        HeaderAction::Del(_) => None,
    }
}

fn edit_headers(h: &HeaderAction, value: Option<String>, headers: &mut HeaderMap) {
    let value = value.unwrap_or_default();
    match h {
        HeaderAction::Set(name, _) | HeaderAction::Add(name, _) => {
            let Ok(v) = HeaderValue::from_str(&value) else {
                tracing::debug!(header = %name, "header value is not valid, rule skipped");
                return;
            };
            if matches!(h, HeaderAction::Set(..)) {
                headers.insert(name.clone(), v);
            } else {
                headers.append(name.clone(), v);
            }
        }
        HeaderAction::Del(name) => {
            headers.remove(name);
        }
        HeaderAction::Replace(name, re, _) => {
            replace_all(headers, name, |old| expand(re, old, &value));
        }
        HeaderAction::ReplaceValue(name, re, _) => replace_all(headers, name, |old| {
            let parts: Vec<String> = old
                .split(',')
                .map(|v| {
                    let v = v.trim();
                    expand(re, v, &value).unwrap_or_else(|| v.to_string())
                })
                .collect();
            Some(parts.join(", "))
        }),
    }
}

/// Rewrites every value of `name` with `f` (`None`: value kept).
fn replace_all(headers: &mut HeaderMap, name: &HeaderName, f: impl Fn(&str) -> Option<String>) {
    let old: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
    if old.is_empty() {
        return;
    }
    headers.remove(name);
    for v in old {
        let new = v
            .to_str()
            .ok()
            .and_then(&f)
            .and_then(|s| HeaderValue::from_str(&s).ok());
        headers.append(name.clone(), new.unwrap_or(v));
    }
}

/// HAProxy's replace semantics: when `re` matches `value`, the whole value
/// becomes `template` with `\0`..`\9` replaced by the capture groups.
fn expand(re: &regex::Regex, value: &str, template: &str) -> Option<String> {
    let caps = re.captures(value)?;
    let mut out = String::with_capacity(template.len() + value.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                chars.next();
                if let Some(m) = caps.get(d as usize) {
                    out.push_str(m.as_str());
                }
                continue;
            }
        }
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_expands_backreferences_into_the_whole_value() {
        let re = regex::Regex::new(r"^Bearer (.*)$").unwrap();
        assert_eq!(
            expand(&re, "Bearer abc", r"token=\1;\9").as_deref(),
            Some("token=abc;")
        );
        assert_eq!(expand(&re, "Basic x", r"\1"), None);
    }

    #[test]
    fn denied_grpc_calls_get_the_matching_status() {
        for (http, code) in [
            (403, 7),
            (401, 16),
            (429, 8),
            (404, 12),
            (503, 14),
            (418, 2),
            (400, 13),
        ] {
            let r = deny(http, true);
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.headers()["grpc-status"],
                code.to_string().as_str(),
                "{http}"
            );
        }
        let r = deny(429, false);
        assert_eq!(r.status(), 429);
    }

    #[test]
    fn set_path_keeps_the_query() {
        let u: Uri = "http://a/b?x=1".parse().unwrap();
        assert_eq!(with_path(&u, "/c").unwrap().to_string(), "http://a/c?x=1");
        assert_eq!(with_query(&u, "y=2").unwrap().to_string(), "http://a/b?y=2");
        assert_eq!(with_query(&u, "").unwrap().to_string(), "http://a/b");
        let u: Uri = "/b".parse().unwrap();
        assert_eq!(with_path(&u, "/z").unwrap().to_string(), "/z");
    }

    #[test]
    fn forwardfor_appends_the_client_ip() {
        let ff = crate::config::ForwardFor {
            header: HeaderName::from_static("x-forwarded-for"),
            except: None,
            if_none: false,
        };
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        forwardfor(&ff, &mut h, "[::ffff:127.0.0.1]:5".parse().unwrap());
        let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["10.0.0.1", "127.0.0.1"]);
        let ff = crate::config::ForwardFor {
            if_none: true,
            ..ff
        };
        forwardfor(&ff, &mut h, "127.0.0.2:5".parse().unwrap());
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 2);
    }
}
