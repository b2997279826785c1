//! The life of one HTTP request, top to bottom:
//!
//! 1. the access-log line starts (request headers captured as received);
//! 2. the frontend's `http-request` rules run (`deny`/`return` answer here);
//! 3. `use_backend` rules pick the backend (else `default_backend`);
//! 4. the backend's `http-request` rules run, `option forwardfor` applies;
//! 5. the backend picks a server (maybe after queueing) and the call is
//!    forwarded; a failed attempt may be tried again (`retries`, `retry-on`,
//!    see [`crate::http::retry`]) while nothing reached the client;
//! 6. `http-response` rules (backend's, then frontend's) edit the response head.
//!
//! A gRPC call with `grpc-timeout` has a deadline from the moment its headers
//! arrive ([`Deadline`]): it bounds steps 5 and 6 and then moves into the
//! response body; when it runs out weir answers DEADLINE_EXCEEDED itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::backend::balance::PickCtx;
use crate::backend::{Backend, CallResult, Server, UpstreamProto};
use crate::error::{ErrorKind, ProxyError};
use crate::http::access_log::{ConnInfo, PendingLog};
use crate::http::body::ProxyBody;
use crate::http::deadline::Deadline;
use crate::http::forward::{self, Timing};
use crate::http::respond;
use crate::http::retry::{self, Replay, ReqBody};
use crate::http::rules::{self, Env, Outcome, ReqHead};
use crate::http::tally::Tally;
use crate::runtime::Frontend;

/// Routes, balances and forwards one request; every failure becomes a
/// reply the client understands (a gRPC status for gRPC clients). Returns
/// the response and the request's pending log line, if the frontend logs;
/// `tally` collects what the request adds to the counters.
pub async fn handle(
    req: Request<Incoming>,
    fe: &Arc<Frontend>,
    conn: &ConnInfo,
    tally: &mut Tally,
) -> (Response<ProxyBody>, Option<Box<PendingLog>>) {
    let is_grpc = tally.is_grpc();
    // The budget starts now, as the client sent it (before any rule).
    let mut deadline = if is_grpc {
        Deadline::from_headers(req.headers(), tokio::time::Instant::now)
    } else {
        None
    };
    let (mut parts, body) = req.into_parts();
    let body = tally.count_body(body);
    let mut log = PendingLog::start(fe, conn, &parts);
    // The counters the connection tracked (`tcp-request connection
    // track-sc*`) are the request's too. The tally counts the response's
    // errors (`http_err_*`) in them at the end.
    let track = (!fe.tables.is_empty()).then(|| {
        let t = match &conn.track {
            Some(c) => crate::stick::ReqTrack::with_conn(fe.tables.clone(), c),
            None => crate::stick::ReqTrack::new(fe.tables.clone()),
        };
        Arc::new(t)
    });
    if let Some(t) = &track {
        tally.track(t.clone());
        if let Some(l) = log.as_mut() {
            l.track(t);
        }
    }
    let mut env = Env {
        src: conn.peer,
        dst: conn.local,
        frontend: &fe.name,
        backend: None,
        tls: conn.tls.as_ref(),
        track: track.as_deref(),
    };

    match rules::request(&fe.http_request, &mut parts, &env, is_grpc) {
        Outcome::Reply(r) => {
            tally.no_backend(&fe.name, parts.uri.path());
            tally.rule_reply(r.termination);
            return reply(r.response, r.termination, log, tally);
        }
        // The exporter or the stats page: answered by weir ("LR").
        Outcome::Service(s) => {
            return reply(
                crate::observe::stats_page::serve(&s, fe, &parts),
                "LR",
                log,
                tally,
            )
        }
        Outcome::Continue => {}
    }
    let backend = match rules::route(fe, &parts, &env) {
        Ok(b) => b,
        Err(e) => {
            tally.no_backend(&fe.name, parts.uri.path());
            tally.request_error();
            return failed(&e, is_grpc, log, tally);
        }
    };
    if let Some(l) = log.as_mut() {
        l.backend(&backend);
    }
    tally.backend(&backend, &fe.name, parts.uri.path());
    env.backend = Some(&backend.name);
    if let Outcome::Reply(r) = rules::request(&backend.http_request, &mut parts, &env, is_grpc) {
        tally.rule_reply(r.termination);
        return reply(r.response, r.termination, log, tally);
    }
    if let Some(ff) = backend.forwardfor.as_ref().or(fe.forwardfor.as_ref()) {
        rules::forwardfor(ff, &mut parts.headers, conn.peer);
    }
    let has_response_rules = !backend.http_response.is_empty() || !fe.http_response.is_empty();
    let pick = &backend.pick_ctx(conn.peer.ip(), Some(&parts));
    let head = has_response_rules.then(|| ReqHead::of(&parts));

    // Time waited for a server (`Tw`): only the access log reports it.
    let queued_at = log.is_some().then(Instant::now);
    // `Backend::take` is cancel-safe: a deadline in the queue just leaves it.
    // The queue serves calls in deadline order (earliest first).
    // The common case, a free server and nobody queued, needs no queue
    // future at all; a deadline is still checked first, as in the queue.
    if let Some(d) = deadline.as_mut() {
        if d.expired_now() {
            return expired(&d.budget.error(), "sQ", log, tally);
        }
    }
    let now = backend.take_now(pick);
    let taken = match now {
        Some(slot) => Ok(slot),
        None => {
            // Boxed: the queue's future would otherwise take room in every
            // call's (per-stream) future, for a wait few calls make.
            let at = deadline.as_ref().map(|d| d.budget.at);
            let wait = Box::pin(backend.take_until(pick, at));
            match deadline.as_mut() {
                Some(d) => match d.run(wait).await {
                    Ok(r) => r,
                    Err(e) => return expired(&e, "sQ", log, tally),
                },
                None => wait.await,
            }
        }
    };
    let mut slot = match taken {
        Ok(slot) => slot,
        Err(e) => return failed(&e, is_grpc, log, tally),
    };
    // Retries: the body is recorded as it is forwarded (up to
    // `retry-buffer`) and the head kept, so that a failed attempt can be
    // sent again while nothing reached the client (http::retry).
    let policy = backend.retry;
    // The default policy (`retry-on conn-failure`) retries only calls that
    // never left weir: connect first, and retry the connect, so that the
    // request needs neither a recorded body nor a copy of its head.
    let connect_only = policy.retries > 0 && policy.on.nothing_sent_only();
    let mut retries = 0u32;
    let mut redispatched = false;
    if connect_only {
        loop {
            let server = slot.server.clone();
            let sni = server.sni_expr.as_ref().and_then(|e| {
                let input = env.input(
                    &parts.method,
                    &parts.uri,
                    parts.version,
                    &parts.headers,
                    None,
                );
                e.eval(&input).map(|s| s.to_string())
            });
            // Boxed, like the forward below: the request future is what hyper
            // spawns per stream; keeping it small keeps memory per call small.
            let connect = Box::pin(preconnect(&server, sni.as_deref(), &backend.timeouts));
            let connected = match deadline.as_mut() {
                Some(d) => match d.run(connect).await {
                    Ok(r) => r,
                    Err(e) => return expired(&e, "sC", log, tally),
                },
                None => connect.await,
            };
            let Err(mut e) = connected else { break };
            observe_error(&backend, &server, &e);
            tally.server(&server);
            tally.conn_error(&server);
            let retry = retries < policy.retries
                && matches!(e.kind, ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout)
                && backend.try_retry();
            let next = if retry {
                match retry_slot(&backend, pick, &server, deadline.as_mut()).await {
                    Ok(next) => next.ok(),
                    Err(e) => return expired(&e, "sQ", log, tally),
                }
            } else {
                None
            };
            match next {
                Some(s) => {
                    retries += 1;
                    redispatched |= !Arc::ptr_eq(&s.server, &server);
                    tracing::debug!(backend = %backend.name, from = %server.name, to = %s.server.name, retry = retries, "retrying connect");
                    slot = s;
                }
                None => {
                    if let Some(l) = log.as_mut() {
                        l.server(&server, waited(queued_at));
                        l.retries(retries);
                    }
                    e.message = format!("{}/{}: {}", backend.name, server.name, e.message);
                    tally.retries(retries, redispatched);
                    return failed(&e, is_grpc, log, tally);
                }
            }
        }
    }
    let (replay, mut body) = if policy.retries > 0 && !connect_only {
        let r = Replay::new(body, policy.record_limit());
        let b = r.attempt();
        (Some(r), b)
    } else {
        (None, ReqBody::Live(body))
    };
    let saved = replay.as_ref().map(|_| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
            parts.headers.clone(),
        )
    });
    let mut parts = Some(parts);
    let mut queued = waited(queued_at);
    let (server, timing, result) = loop {
        let server = slot.server.clone();
        if let Some(l) = log.as_mut() {
            l.server(&server, queued);
            l.backend_conns(&backend);
        }
        let mut timing = Timing::new(log.is_some() || backend.observes_latency);
        // The request is built and handed over in a block of its own, so
        // that it takes no room in this (per-stream) future while the
        // forward is awaited.
        let fwd = {
            let req = match (parts.take(), &saved) {
                (Some(p), _) => Request::from_parts(p, body),
                (None, Some((method, uri, version, headers))) => {
                    let mut r = Request::new(body);
                    *r.method_mut() = method.clone();
                    *r.uri_mut() = uri.clone();
                    *r.version_mut() = *version;
                    *r.headers_mut() = headers.clone();
                    r
                }
                (None, None) => unreachable!("a retry keeps the request head"),
            };
            // `sni <expression>` on the server: computed from this request.
            let sni = server.sni_expr.as_ref().and_then(|e| {
                let input = env.input(req.method(), req.uri(), req.version(), req.headers(), None);
                e.eval(&input).map(|s| s.to_string())
            });
            // Boxed (by `forward`): inline, this future made every call's
            // task ~10x larger.
            forward::forward(
                req,
                slot,
                &backend.timeouts,
                is_grpc,
                deadline.as_ref().map(|d| d.budget),
                &mut timing,
                sni,
            )
        };
        // The deadline wins over a late response; the dropped call's upstream
        // stream is reset (CANCEL).
        let result = match deadline.as_mut() {
            Some(d) => d.run(fwd).await.and_then(|r| r),
            None => fwd.await,
        };
        tally.server(&server);
        // Passive health judges every attempt.
        let event = match &result {
            Err(e) if e.kind == ErrorKind::DeadlineExceeded => None,
            Err(e) => {
                observe_error(&backend, &server, e);
                if matches!(e.kind, ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout) {
                    tally.conn_error(&server);
                } else {
                    tally.resp_error();
                }
                retry::event_of_error(e, &timing)
            }
            Ok(resp) => {
                // `balance ewma`: the server's latency, request to head.
                if let (true, Some(t)) = (backend.observes_latency, timing.started) {
                    server.ewma.observe(t.elapsed());
                }
                observe_response(&backend, &server, resp, is_grpc);
                retry::event_of_response(resp, is_grpc)
            }
        };
        let Some(replay) = replay.as_ref() else {
            break (server, timing, result);
        };
        let wanted = retries < policy.retries
            && event.is_some_and(|ev| policy.on.contains(ev))
            && replay.can_replay()
            && backend.try_retry();
        if !wanted {
            break (server, timing, result);
        }
        // A trailers-only answer is all head: keep it (for when no retry
        // can be made after all) and let its stream and slot go now.
        let result = match result {
            Ok(r) if http_body::Body::is_end_stream(r.body()) => {
                Ok(Response::from_parts(r.into_parts().0, ProxyBody::Empty))
            }
            other => other,
        };
        let retry_at = log.is_some().then(Instant::now);
        let next = match retry_slot(&backend, pick, &server, deadline.as_mut()).await {
            Ok(next) => next,
            Err(e) => return expired(&e, "sQ", log, tally),
        };
        match next {
            // An HTTP/1.1 server takes the client's body itself: only a
            // body not read yet can go to one.
            Ok(s) if s.server.proto == UpstreamProto::H2 || replay.untouched() => {
                retries += 1;
                redispatched |= !Arc::ptr_eq(&s.server, &server);
                tracing::debug!(
                    backend = %backend.name,
                    from = %server.name,
                    to = %s.server.name,
                    retry = retries,
                    event = ?event,
                    "retrying call"
                );
                slot = s;
                body = replay.attempt();
                queued = waited(retry_at);
            }
            _ => break (server, timing, result),
        }
    };
    if let Some(r) = replay.as_ref() {
        r.finish();
    }
    tally.retries(retries, redispatched);
    if let Some(l) = log.as_mut() {
        l.retries(retries);
        if let (Some(s), Some(c)) = (timing.started, timing.connected_at) {
            l.connect_time(c - s);
            l.response_time(c.elapsed());
        }
    }
    let mut resp = match result {
        Ok(r) => r,
        Err(e) if e.kind == ErrorKind::DeadlineExceeded => {
            let stage = if timing.connected { "sH" } else { "sC" };
            return expired(&e, stage, log, tally);
        }
        Err(mut e) => {
            // Name the backend/server, as HAProxy's logs do.
            e.message = format!("{}/{}: {}", backend.name, server.name, e.message);
            tracing::debug!(frontend = %fe.name, backend = %backend.name, error = %e, "proxy error");
            return failed(&e, is_grpc, log, tally);
        }
    };
    if let (Some(d), ProxyBody::H2(u)) = (deadline, resp.body_mut()) {
        u.set_deadline(d);
    }
    let Some(head) = head else {
        return done(resp, log, fe.logasap, tally);
    };
    let (mut rparts, rbody) = resp.into_parts();
    for list in [&backend.http_response, &fe.http_response] {
        if let Some(r) = rules::response(list, &mut rparts, &head, &env, is_grpc) {
            // The server's body is dropped: its stream is reset.
            tally.denied_response();
            return reply(r.response, r.termination, log, tally);
        }
    }
    done(Response::from_parts(rparts, rbody), log, fe.logasap, tally)
}

/// A slot for a retry of a call that failed on `server` (boxed: it is
/// awaited inside the per-stream future), bounded by the call's deadline.
/// The outer `Err`: the deadline ran out while waiting for the slot.
async fn retry_slot(
    backend: &Arc<Backend>,
    pick: &PickCtx,
    server: &Arc<Server>,
    deadline: Option<&mut Deadline>,
) -> Result<Result<crate::backend::Slot, ProxyError>, ProxyError> {
    match deadline {
        Some(d) => {
            let at = Some(d.budget.at);
            d.run(Box::pin(backend.take_retry(pick, server, at))).await
        }
        None => Ok(Box::pin(backend.take_retry(pick, server, None)).await),
    }
}

/// Passive health of a failed attempt.
fn observe_error(backend: &Arc<Backend>, server: &Server, e: &ProxyError) {
    if server.passive.is_none() {
        return;
    }
    let result = match e.kind {
        ErrorKind::ConnectFailed
        | ErrorKind::ConnectTimeout
        | ErrorKind::UpstreamClosed
        | ErrorKind::UpstreamProtocol => Some(CallResult::Layer4),
        ErrorKind::ServerTimeout => Some(CallResult::Layer7),
        _ => None,
    };
    if let Some(r) = result {
        crate::backend::observe(backend, server, r, &e.message);
    }
}

/// Opens (or finds in the pool) a connection to `server` without sending
/// anything, so that a connect failure can be retried with the request
/// still in hand. The stream slot or idle connection goes straight back to
/// the pool for the call that follows.
async fn preconnect(
    server: &crate::backend::Server,
    sni: Option<&str>,
    timeouts: &crate::config::Timeouts,
) -> Result<(), ProxyError> {
    match server.proto {
        // The common case: a pooled connection is there; no extra lease.
        UpstreamProto::H2 if server.h2_for(sni).is_connected() => Ok(()),
        UpstreamProto::H1 if server.h1.has_idle() => Ok(()),
        UpstreamProto::H2 => server.h2_for(sni).acquire(timeouts.connect).await.map(drop),
        UpstreamProto::H1 => {
            let sender = server.h1.acquire(server.addr, timeouts.connect).await?;
            server.h1.release(sender);
            Ok(())
        }
    }
}

/// Passive health of a response head: a trailers-only gRPC answer or a
/// plain HTTP status is judged now; a streamed gRPC call when its trailers
/// arrive (http::body).
fn observe_response(
    backend: &Arc<Backend>,
    server: &Server,
    resp: &Response<ProxyBody>,
    is_grpc: bool,
) {
    if server.passive.is_none() {
        return;
    }
    let judged = if is_grpc {
        rules::grpc_status(resp.headers())
            .map(|c| (CallResult::of_grpc(Some(c)), format!("grpc-status {c}")))
    } else {
        let st = resp.status().as_u16();
        Some((CallResult::of_http(st), format!("HTTP status {st}")))
    };
    if let Some((r, info)) = judged {
        crate::backend::observe(backend, server, r, &info);
    }
}

fn failed(
    e: &ProxyError,
    is_grpc: bool,
    log: Option<Box<PendingLog>>,
    tally: &mut Tally,
) -> (Response<ProxyBody>, Option<Box<PendingLog>>) {
    reply(
        respond::error(is_grpc, e),
        e.kind.reply().termination,
        log,
        tally,
    )
}

/// Time since `at`, taken only for the access log's `Tw` (zero without it).
fn waited(at: Option<Instant>) -> Duration {
    at.map_or(Duration::ZERO, |t| t.elapsed())
}

/// DEADLINE_EXCEEDED answered by weir, logged with the stage it ran out in.
fn expired(
    e: &ProxyError,
    termination: &str,
    log: Option<Box<PendingLog>>,
    tally: &mut Tally,
) -> (Response<ProxyBody>, Option<Box<PendingLog>>) {
    reply(respond::error(true, e), termination, log, tally)
}

/// A reply made by the proxy: logged now, it is already complete.
fn reply(
    resp: Response<ProxyBody>,
    termination: &str,
    mut log: Option<Box<PendingLog>>,
    tally: &mut Tally,
) -> (Response<ProxyBody>, Option<Box<PendingLog>>) {
    tally.termination(termination);
    tally.response(resp.status().as_u16(), resp.headers(), false);
    if let ProxyBody::Full(Some(b)) = resp.body() {
        tally.data(b);
    }
    tally.finish();
    if let Some(l) = log.as_mut() {
        l.termination(termination);
        l.response(resp.status().as_u16(), resp.headers());
        if let ProxyBody::Full(Some(b)) = resp.body() {
            l.add_bytes(b.len());
        }
        l.write(false);
    }
    (resp, log)
}

/// A response from a server, about to stream back.
fn done(
    resp: Response<ProxyBody>,
    mut log: Option<Box<PendingLog>>,
    logasap: bool,
    tally: &mut Tally,
) -> (Response<ProxyBody>, Option<Box<PendingLog>>) {
    tally.response(resp.status().as_u16(), resp.headers(), true);
    if http_body::Body::is_end_stream(resp.body()) {
        tally.finish();
    }
    if let Some(l) = log.as_mut() {
        l.response(resp.status().as_u16(), resp.headers());
        if http_body::Body::is_end_stream(resp.body()) {
            l.write(false);
        } else if logasap {
            l.write(true);
        }
    }
    (resp, log)
}
