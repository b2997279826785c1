//! Stage 4: sections in file order -> [`Config`].
//!
//! * A `defaults` section starts empty, or as a copy of the one named by its
//!   `from`. A proxy starts as a copy of the one named by its `from`, or of
//!   the last `defaults` section (named or not) before it; its own keywords
//!   then override or extend that copy, like HAProxy.
//! * A `listen X` section becomes a frontend `X` (whose default backend is
//!   `X` unless it says otherwise) and a backend `X`.
//! * Then: duplicate names, frontends without `bind`, `default_backend` and
//!   `use_backend` targets (existence and `mode`), `log global` expansion.

use std::sync::Arc;

use super::keywords::{
    did_you_mean, dispatch, SectionKind, Target, CONDITIONALS, UNSUPPORTED_SECTIONS,
};
use super::lexer::Line;
use super::parse::{LogEntry, ProxyDraft, Ref};
use super::units::check_name;
use super::{Backend, Config, Diagnostic, Diags, Frontend, Global, Loc, LogTarget, Mode};

/// The section lines are currently applied to.
enum Body {
    Global,
    Proxy(Box<ProxyDraft>),
    /// An unsupported section: its lines are skipped.
    Skip,
}

struct Open {
    kind: SectionKind,
    name: String,
    loc: Loc,
    /// The header was unusable (no name): parse the body, build nothing.
    broken: bool,
    /// A `bind` line was rejected: do not also say "no bind".
    bind_failed: bool,
    body: Body,
}

struct Section {
    kind: SectionKind,
    name: String,
    loc: Loc,
    bind_failed: bool,
    draft: ProxyDraft,
}

#[derive(Default)]
struct State {
    global: Global,
    /// Closed `defaults` sections, in file order.
    defaults: Vec<Section>,
    /// Index in `defaults` of the one a proxy without `from` inherits.
    last_defaults: Option<usize>,
    /// Closed frontend, backend and listen sections, in file order.
    proxies: Vec<Section>,
    current: Option<Open>,
}

fn err(diags: &mut Diags, loc: &Loc, message: String) {
    diags
        .errors
        .push(Diagnostic::new(Some(loc.clone()), None, message));
}

fn warn(diags: &mut Diags, loc: &Loc, message: String) {
    diags
        .warnings
        .push(Diagnostic::new(Some(loc.clone()), None, message));
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Http => "http",
        Mode::Tcp => "tcp",
    }
}

/// Section header arguments: `(name, from)`.
type Header = (Option<String>, Option<String>);

/// Reads `<name> [from <defaults>]` (name optional for `defaults`).
fn parse_header(kind: SectionKind, args: &[String]) -> Result<Header, String> {
    let kw = kind.name();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let header = match (kind, args.as_slice()) {
        (SectionKind::Global, []) => (None, None),
        (SectionKind::Global, [extra, ..]) => {
            return Err(format!(
                "'global' cannot handle unexpected argument '{extra}'"
            ))
        }
        (SectionKind::Defaults, []) => (None, None),
        (SectionKind::Defaults, ["from", from]) => (None, Some(*from)),
        (_, []) => return Err(format!("'{kw}' expects <name> as an argument")),
        (_, ["from"]) | (_, [_, "from"]) => {
            return Err("missing defaults section name after 'from'".into())
        }
        (_, [name]) => (Some(*name), None),
        (_, [name, "from", from]) => (Some(*name), Some(*from)),
        (SectionKind::Frontend | SectionKind::Listen, [_, _, ..]) => {
            return Err("please use the 'bind' keyword for listening addresses".into())
        }
        (_, [_, extra, ..]) => {
            return Err(format!(
                "'{kw}' cannot handle unexpected argument '{extra}'"
            ))
        }
    };
    Ok((header.0.map(str::to_string), header.1.map(str::to_string)))
}

impl State {
    fn close(&mut self) {
        let Some(open) = self.current.take() else {
            return;
        };
        let Body::Proxy(draft) = open.body else {
            return;
        };
        let draft = *draft;
        let section = Section {
            kind: open.kind,
            name: open.name,
            loc: open.loc,
            bind_failed: open.bind_failed,
            draft,
        };
        if open.kind == SectionKind::Defaults {
            self.defaults.push(section);
            self.last_defaults = Some(self.defaults.len() - 1);
        } else if !open.broken {
            self.proxies.push(section);
        }
    }

    /// Opens a `global`, `defaults`, `frontend`, `backend` or `listen` section.
    fn open(&mut self, kind: SectionKind, line: &Line, loc: Loc, diags: &mut Diags) {
        self.close();
        let (name, from) = match parse_header(kind, &line.words[1..]) {
            Ok(header) => header,
            Err(message) => {
                err(diags, &loc, message);
                // Keep going with what can be used, to report the body's errors.
                (line.words.get(1).filter(|n| *n != "from").cloned(), None)
            }
        };
        if kind == SectionKind::Global {
            let name = String::new();
            self.current = Some(Open {
                kind,
                name,
                loc,
                broken: false,
                bind_failed: false,
                body: Body::Global,
            });
            return;
        }
        let broken = name.is_none() && kind != SectionKind::Defaults;
        let name = name.unwrap_or_default();
        if !name.is_empty() {
            if let Err(message) = check_name(&name, kind.name()) {
                err(diags, &loc, message);
            }
            self.check_duplicate(kind, &name, &loc, diags);
        }
        let base = match &from {
            Some(from) => match self.defaults.iter().rev().find(|d| d.name == *from) {
                Some(d) => d.draft.clone(),
                None => {
                    let shown = if name.is_empty() {
                        String::new()
                    } else {
                        format!(" '{name}'")
                    };
                    let message = format!(
                        "defaults section '{from}' not found for {}{shown}",
                        kind.name()
                    );
                    err(diags, &loc, message);
                    ProxyDraft::default()
                }
            },
            None if kind == SectionKind::Defaults => ProxyDraft::default(),
            None => self
                .last_defaults
                .map(|i| self.defaults[i].draft.clone())
                .unwrap_or_default(),
        };
        let base = ProxyDraft {
            check: base.check.inherited(),
            ..base
        };
        self.current = Some(Open {
            kind,
            name,
            loc,
            broken,
            bind_failed: false,
            body: Body::Proxy(Box::new(base)),
        });
    }

    /// Two frontends, two backends or two defaults may not share a name; a
    /// `listen` is both a frontend and a backend.
    fn check_duplicate(&self, kind: SectionKind, name: &str, loc: &Loc, diags: &mut Diags) {
        use SectionKind::{Backend as B, Defaults as D, Frontend as F, Listen as L};
        let clash = |other: SectionKind| {
            matches!(
                (kind, other),
                (D, D) | (F, F | L) | (B, B | L) | (L, F | B | L)
            )
        };
        let all = self.defaults.iter().chain(&self.proxies);
        if let Some(prev) = all.filter(|s| s.name == name).find(|s| clash(s.kind)) {
            let message = format!(
                "{} '{name}' has the same name as {} '{name}' declared at {}",
                kind.name(),
                prev.kind.name(),
                prev.loc
            );
            err(diags, loc, message);
        }
    }

    fn line(&mut self, line: &Line, loc: Loc, diags: &mut Diags) {
        let first = line.words[0].as_str();
        if let Some(kind) = SectionKind::from_keyword(first) {
            return self.open(kind, line, loc, diags);
        }
        if UNSUPPORTED_SECTIONS.contains(&first) {
            self.close();
            let message = format!(
                "'{first}' sections are not supported yet (weir knows global, defaults, frontend, backend and listen)"
            );
            err(diags, &loc, message);
            let name = String::new();
            self.current = Some(Open {
                kind: SectionKind::Global,
                name,
                loc,
                broken: true,
                bind_failed: false,
                body: Body::Skip,
            });
            return;
        }
        if CONDITIONALS.contains(&first) {
            return err(
                diags,
                &loc,
                format!("'{first}' : conditional blocks are not supported yet"),
            );
        }
        let Some(open) = &mut self.current else {
            let sections = SectionKind::ALL.iter().map(|k| k.name());
            let message = format!(
                "unknown keyword '{first}' out of section{} (a section such as 'global' or 'frontend <name>' must come first)",
                did_you_mean(first, sections)
            );
            return err(diags, &loc, message);
        };
        let target = match &mut open.body {
            Body::Skip => return,
            Body::Global => Target::Global(&mut self.global),
            Body::Proxy(draft) => Target::Proxy(draft.as_mut()),
        };
        let errors_before = diags.errors.len();
        dispatch(&line.words, &loc, open.kind, &open.name, target, diags);
        open.bind_failed |= first == "bind" && diags.errors.len() > errors_before;
    }
}

/// Builds the configuration; errors and warnings go to `diags` (the result
/// is only meaningful when there is no error).
pub(crate) fn build(lines: &[Line], file: &Arc<str>, diags: &mut Diags) -> Config {
    let mut state = State::default();
    for line in lines {
        let loc = Loc {
            file: file.clone(),
            line: line.number,
        };
        state.line(line, loc, diags);
    }
    state.close();
    finish(state, diags)
}

fn expand_logs(entries: &[LogEntry], global: &Global) -> Vec<LogTarget> {
    let mut logs = Vec::new();
    for entry in entries {
        match entry {
            LogEntry::Global => logs.extend(global.logs.iter().cloned()),
            LogEntry::Target(t) => logs.push(t.clone()),
        }
    }
    logs
}

fn frontend_of(s: &Section, global: &Global, diags: &mut Diags) -> Frontend {
    let d = &s.draft;
    let mut default_backend = d.default_backend.as_ref().map(|r| r.name.clone());
    if s.kind == SectionKind::Listen {
        match &default_backend {
            Some(other) if *other != s.name && !d.servers.is_empty() => warn(
                diags,
                &s.loc,
                format!("In proxy '{}', the 'default_backend' rule always has precedence over the servers, which will never be used.", s.name),
            ),
            Some(_) => {}
            None => default_backend = Some(s.name.clone()),
        }
    }
    let mut options = d.options.clone();
    if options.httplog && d.mode == Mode::Tcp {
        warn(
            diags,
            &s.loc,
            format!("'option httplog' not usable with {} '{}' (needs 'mode http'). Falling back to 'option tcplog'.", s.kind.name(), s.name),
        );
        options.httplog = false;
        options.tcplog = true;
    }
    splice_warning(&options, d.mode, s, diags);
    // `stats enable`: served after the frontend's own `http-request` rules,
    // as their last rule (see `Service::Stats`).
    let mut http_request = d.http_request.clone();
    let stats = match (&d.stats, d.mode) {
        (Some(page), Mode::Http) => {
            http_request.push(super::Rule {
                action: super::ReqAction::UseService(super::Service::Stats(Arc::new(page.clone()))),
                cond: None,
                loc: s.loc.clone(),
            });
            Some(page.clone())
        }
        (Some(_), Mode::Tcp) => {
            warn(
                diags,
                &s.loc,
                format!(
                    "'stats' ignored for {} '{}' as it requires HTTP mode",
                    s.kind.name(),
                    s.name
                ),
            );
            None
        }
        (None, _) => None,
    };
    Frontend {
        name: s.name.clone(),
        loc: s.loc.clone(),
        mode: d.mode,
        binds: d.binds.clone(),
        default_backend,
        use_backends: d.use_backends.clone(),
        tcp_request_connection: d.tcp_request_connection.clone(),
        timeouts: d.timeouts.clone(),
        maxconn: d.maxconn,
        logs: expand_logs(&d.logs, global),
        options,
        http_request,
        http_response: d.http_response.clone(),
        capture_request: d.capture_request.clone(),
        capture_response: d.capture_response.clone(),
        log_format: d.log_format.clone(),
        h2_keepalive: d.h2_keepalive,
        stats,
    }
}

/// `option splice-*` only acts on `mode tcp` sessions.
fn splice_warning(options: &super::Options, mode: Mode, s: &Section, diags: &mut Diags) {
    if options.splice.any() && mode == Mode::Http {
        warn(
            diags,
            &s.loc,
            format!("'option splice-*' has no effect in {} '{}': weir splices 'mode tcp' sessions only (HTTP/2 frames are parsed, not spliced), ignored.", s.kind.name(), s.name),
        );
    }
}

fn backend_of(s: &Section, global: &Global, diags: &mut Diags) -> Backend {
    let d = &s.draft;
    if s.kind == SectionKind::Backend {
        splice_warning(&d.options, d.mode, s, diags);
    }
    let mut servers = d.servers.clone();
    for srv in &mut servers {
        srv.h2_keepalive = d.h2_keepalive;
    }
    Backend {
        name: s.name.clone(),
        loc: s.loc.clone(),
        mode: d.mode,
        balance: d.balance.clone(),
        hash_type: d.hash_type,
        servers,
        timeouts: d.timeouts.clone(),
        options: d.options.clone(),
        logs: expand_logs(&d.logs, global),
        check: d.check.finish(),
        h2_keepalive: d.h2_keepalive,
        maxqueue: d.maxqueue,
        stick_table: d.stick_table.as_ref().map(|(t, _)| t.clone()),
        // A `listen` is one proxy: its rules run once, on the frontend side.
        http_request: if s.kind == SectionKind::Backend {
            d.http_request.clone()
        } else {
            Vec::new()
        },
        http_response: if s.kind == SectionKind::Backend {
            d.http_response.clone()
        } else {
            Vec::new()
        },
    }
}

/// Checks that frontend `fe` (from `section`) may use backend `r.name`.
fn check_ref(
    fe: &Frontend,
    kind: SectionKind,
    r: &Ref,
    kw: &str,
    backends: &[Backend],
    diags: &mut Diags,
) {
    let Some(be) = backends.iter().find(|b| b.name == r.name) else {
        let names = backends.iter().map(|b| b.name.as_str());
        let message = format!(
            "unable to find required backend '{}' for {} '{}'{}",
            r.name,
            kind.name(),
            fe.name,
            did_you_mean(&r.name, names)
        );
        diags
            .errors
            .push(Diagnostic::new(Some(r.loc.clone()), Some(kw), message));
        return;
    };
    if be.mode != fe.mode {
        let usage = match kw {
            "default_backend" => "as its default backend",
            _ => "in a 'use_backend' rule",
        };
        let message = format!(
            "{} {} '{}' tries to use incompatible {} backend '{}' (declared at {}) {usage} (see 'mode')",
            mode_name(fe.mode),
            kind.name(),
            fe.name,
            mode_name(be.mode),
            be.name,
            be.loc
        );
        diags
            .errors
            .push(Diagnostic::new(Some(r.loc.clone()), Some(kw), message));
    }
}

/// Reports what loading TLS material said, at the line that asked for it.
fn tls_result(r: Result<Vec<String>, String>, loc: &Loc, kw: &str, diags: &mut Diags) {
    match r {
        Ok(warnings) => {
            for w in warnings {
                diags
                    .warnings
                    .push(Diagnostic::new(Some(loc.clone()), Some(kw), w));
            }
        }
        Err(e) => diags
            .errors
            .push(Diagnostic::new(Some(loc.clone()), Some(kw), e)),
    }
}

fn finish(state: State, diags: &mut Diags) -> Config {
    let State {
        global, proxies, ..
    } = state;
    let mut backends: Vec<Backend> = proxies
        .iter()
        .filter(|s| matches!(s.kind, SectionKind::Backend | SectionKind::Listen))
        .map(|s| backend_of(s, &global, diags))
        .collect();
    // TLS: certificates are loaded once `global` (bases, defaults) is known.
    for b in &mut backends {
        for srv in &mut b.servers {
            let loc = srv.loc.clone();
            tls_result(
                super::parse::ssl::finish_server(srv, &global),
                &loc,
                "server",
                diags,
            );
            if srv.observe.is_some() && !srv.check {
                let message = format!(
                    "'observe' needs 'check' on server '{}': active checks are what bring a server back after errors took it down",
                    srv.name
                );
                diags
                    .errors
                    .push(Diagnostic::new(Some(loc), Some("server"), message));
            }
        }
    }
    let mut frontends = Vec::new();
    for s in proxies
        .iter()
        .filter(|s| matches!(s.kind, SectionKind::Frontend | SectionKind::Listen))
    {
        let mut fe = frontend_of(s, &global, diags);
        for b in &mut fe.binds {
            let loc = b.loc.clone();
            tls_result(
                super::parse::ssl::finish_bind(b, fe.mode, &global),
                &loc,
                "bind",
                diags,
            );
        }
        if fe.binds.is_empty() && !s.bind_failed {
            let message = format!(
                "{} '{}' has no 'bind' directive. Please declare it as a backend if this was intended.",
                s.kind.name(),
                s.name
            );
            err(diags, &s.loc, message);
        }
        if let Some(r) = &s.draft.default_backend {
            check_ref(&fe, s.kind, r, "default_backend", &backends, diags);
        }
        for u in fe.use_backends.iter().filter(|u| u.dynamic.is_none()) {
            let r = Ref {
                name: u.backend.clone(),
                loc: u.loc.clone(),
            };
            check_ref(&fe, s.kind, &r, "use_backend", &backends, diags);
        }
        if fe.mode == Mode::Tcp {
            let http_only = [
                ("http-request", !fe.http_request.is_empty()),
                ("http-response", !fe.http_response.is_empty()),
                (
                    "capture",
                    !fe.capture_request.is_empty() || !fe.capture_response.is_empty(),
                ),
            ];
            for (kw, used) in http_only {
                if used {
                    let message = format!(
                        "'{kw}' rules ignored for {} '{}' as they require HTTP mode",
                        s.kind.name(),
                        s.name
                    );
                    warn(diags, &s.loc, message);
                }
            }
        }
        // A frontend that answers by itself (stats page, exporter) needs no backend.
        let serves = fe.stats.is_some()
            || fe
                .http_request
                .iter()
                .any(|r| matches!(r.action, super::ReqAction::UseService(_)));
        if fe.default_backend.is_none() && fe.use_backends.is_empty() && !serves {
            let message = format!(
                "{} '{}' has no 'default_backend' and no 'use_backend' rule: it has nowhere to send traffic",
                s.kind.name(),
                s.name
            );
            warn(diags, &s.loc, message);
        }
        frontends.push(fe);
    }
    // Every stick table named (`track-sc* ... table`, `sc_*(<ctr>,<table>)`,
    // `src_*(<table>)`, `table_*(<table>)`) must exist.
    let has_table = |name: &str| match backends.iter().find(|b| b.name == name) {
        Some(b) if b.stick_table.is_some() => Ok(()),
        Some(_) => Err(format!("backend '{name}' has no stick-table")),
        None => Err(format!(
            "no stick-table named '{name}' (declare 'stick-table' in a backend of that name"
        )),
    };
    let mut found: Vec<(Loc, String)> = Vec::new();
    let check = |found: &mut Vec<(Loc, String)>, what: &str, table: &str, loc: &Loc| {
        if let Err(e) = has_table(table) {
            let close = if e.starts_with("no stick-table") {
                ")"
            } else {
                ""
            };
            found.push((loc.clone(), format!("{what}: {e}{close}")));
        }
    };
    // `track-scN <key> table <t>`: the table, and those the key reads.
    let check_track = |found: &mut Vec<(Loc, String)>,
                       what: &str,
                       table: &str,
                       key: &crate::acl::Expr,
                       loc: &Loc| {
        if let Err(e) = has_table(table) {
            let hint = if e.starts_with("no stick-table") {
                ", or add 'table <backend>')"
            } else {
                ""
            };
            found.push((loc.clone(), format!("{what}: {e}{hint}")));
        }
        for t in key.tables() {
            check(found, what, t, loc);
        }
    };
    let conds = |c: Option<&crate::acl::Condition>| -> Vec<String> {
        c.map(|c| c.tables().map(str::to_string).collect())
            .unwrap_or_default()
    };
    for f in &frontends {
        for r in &f.tcp_request_connection {
            if let super::ConnAction::Track { ctr, table, key } = &r.action {
                let what = format!("'tcp-request connection track-sc{ctr}'");
                check_track(&mut found, &what, table, key, &r.loc);
            }
            for t in conds(r.cond.as_ref()) {
                check(&mut found, "'tcp-request connection'", &t, &r.loc);
            }
        }
        for u in &f.use_backends {
            for t in conds(u.cond.as_ref()) {
                check(&mut found, "'use_backend'", &t, &u.loc);
            }
        }
    }
    let req_rules = frontends
        .iter()
        .flat_map(|f: &Frontend| f.http_request.iter())
        .chain(backends.iter().flat_map(|b| b.http_request.iter()));
    for r in req_rules {
        if let super::ReqAction::Track { ctr, table, key } = &r.action {
            let what = format!("'http-request track-sc{ctr}'");
            check_track(&mut found, &what, table, key, &r.loc);
        }
        for t in conds(r.cond.as_ref()) {
            check(&mut found, "'http-request'", &t, &r.loc);
        }
    }
    let res_rules = frontends
        .iter()
        .flat_map(|f: &Frontend| f.http_response.iter())
        .chain(backends.iter().flat_map(|b| b.http_response.iter()));
    for r in res_rules {
        for t in conds(r.cond.as_ref()) {
            check(&mut found, "'http-response'", &t, &r.loc);
        }
    }
    for (loc, message) in found {
        err(diags, &loc, message);
    }
    if frontends.is_empty() && diags.errors.is_empty() {
        let message = "no frontend or listen section: weir has nothing to listen on";
        diags.warnings.push(Diagnostic::new(None, None, message));
    }
    Config {
        global,
        frontends,
        backends,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: SectionKind, line: &str) -> Result<Header, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse_header(kind, &words)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn section_headers() {
        use SectionKind::*;
        assert_eq!(header(Global, ""), Ok((None, None)));
        assert_eq!(header(Defaults, ""), Ok((None, None)));
        assert_eq!(header(Defaults, "d"), Ok((some("d"), None)));
        assert_eq!(header(Defaults, "from d"), Ok((None, some("d"))));
        assert_eq!(header(Defaults, "e from d"), Ok((some("e"), some("d"))));
        assert_eq!(header(Backend, "b from d"), Ok((some("b"), some("d"))));
        assert_eq!(header(Listen, "l"), Ok((some("l"), None)));
        assert!(header(Backend, "").is_err());
        assert!(header(Backend, "b from").is_err());
        assert!(header(Backend, "from").is_err());
        assert!(header(Frontend, "f 1.2.3.4:80").is_err());
        assert!(header(Global, "x").is_err());
    }

    #[test]
    fn log_global_expands_to_the_global_lines() {
        let stdout = LogTarget::Stdout {
            format: Default::default(),
            facility: "local0".into(),
        };
        let global = Global {
            logs: vec![stdout.clone(), stdout.clone()],
            ..Default::default()
        };
        let entries = [LogEntry::Global, LogEntry::Target(stdout.clone())];
        assert_eq!(expand_logs(&entries, &global).len(), 3);
    }
}
