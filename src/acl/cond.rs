//! ACL lines (`acl <name> <criterion> [flags] [-m <method>] [<pattern>...]`),
//! predefined ACLs and `if` / `unless` conditions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::expr::{
    article, can_cast, connection_stage_error, did_you_mean, stage_error, ExprInner,
};
use super::matcher::{MatchKind, Matcher, METHOD_NAMES};
use super::{Input, Stage};

/// One criterion with its match method and patterns.
#[derive(Debug)]
pub(crate) struct AclTest {
    expr: ExprInner,
    matcher: Matcher,
}

impl AclTest {
    /// True when any value of the criterion matches any pattern.
    fn eval(&self, input: &Input<'_>) -> bool {
        self.expr.each(input, &mut |s| self.matcher.matches(&s))
    }
}

/// A named (or anonymous) ACL: its lines, OR-ed.
#[derive(Debug)]
pub(crate) struct AclDef {
    tests: Vec<Arc<AclTest>>,
    /// A response fetch used by one of the lines, if any.
    res_fetch: Option<&'static str>,
    /// A fetch that needs more than the connection, if any.
    l7_fetch: Option<&'static str>,
}

impl AclDef {
    pub(crate) fn eval(&self, input: &Input<'_>) -> bool {
        self.tests.iter().any(|t| t.eval(input))
    }
}

/// Valid ACL name characters (HAProxy): letters, digits, `-_.:`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing acl name".into());
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        Some(c) => Err(format!(
            "invalid character '{c}' in acl name '{name}' (only letters, digits, '-', '_', '.' and ':' are allowed)"
        )),
        None => Ok(()),
    }
}

fn read_pattern_file(file: &str, base_dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
    let path = base_dir.join(file);
    let text = std::fs::read(&path)
        .map_err(|e| format!("failed to open pattern file '{}': {}", path.display(), e))?;
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(line.to_string());
    }
    Ok(())
}

/// `<criterion> [flags] [-m <method>] [<pattern>...]`.
pub(crate) fn parse_test(words: &[String], base_dir: &Path) -> Result<AclTest, String> {
    let Some(crit) = words.first() else {
        return Err("missing criterion".into());
    };
    let (expr, implied) = ExprInner::compile(crit, Stage::Log, true)?;
    let mut icase = false;
    let mut method: Option<MatchKind> = None;
    let mut file_pats = Vec::new();
    let mut from_file = false;
    let mut i = 1;
    while let Some(w) = words.get(i) {
        if !w.starts_with('-') {
            break;
        }
        i += 1;
        match w.as_str() {
            "--" => break,
            "-i" => icase = true,
            "-n" => {}
            "-u" => {
                if words.get(i).is_none() {
                    return Err("flag '-u' expects an id".into());
                }
                i += 1;
            }
            "-f" => {
                let Some(f) = words.get(i) else {
                    return Err("flag '-f' expects a file name".into());
                };
                i += 1;
                read_pattern_file(f, base_dir, &mut file_pats)?;
                from_file = true;
            }
            "-m" => {
                let Some(m) = words.get(i) else {
                    return Err("flag '-m' expects a match method".into());
                };
                i += 1;
                if let Some(im) = implied {
                    return Err(format!(
                        "'-m' cannot be used with '{crit}', which already implies '-m {}'",
                        im.name()
                    ));
                }
                method = Some(MatchKind::parse(m).ok_or_else(|| {
                    format!("unknown match method '{m}' (expected one of: {METHOD_NAMES})")
                })?);
            }
            other => {
                return Err(format!(
                    "unknown flag '{other}' (expected -i, -f, -m, -n, -u or --)"
                ));
            }
        }
    }
    let kind = implied
        .or(method)
        .unwrap_or_else(|| MatchKind::default_for(expr.kind));
    if let Some(needed) = kind.input() {
        if !can_cast(expr.kind, needed) {
            return Err(format!(
                "match method '{}' needs {}, but '{crit}' gives {}",
                kind.name(),
                article(needed),
                article(expr.kind)
            ));
        }
    }
    let mut pats: Vec<String> = words[i..].to_vec();
    pats.append(&mut file_pats);
    if pats.is_empty() && !from_file && kind.takes_patterns() {
        return Err(format!("no pattern to match against for '{crit}'"));
    }
    let matcher = Matcher::new(kind, icase, &pats)?;
    Ok(AclTest { expr, matcher })
}

/// HAProxy's predefined ACLs (configuration manual §7.4) and weir's `GRPC`.
pub(crate) const PREDEFINED: &[(&str, &[&str])] = &[
    ("FALSE", &["always_false"]),
    ("GRPC", &["req.grpc"]),
    ("HTTP", &["req.proto_http"]),
    ("HTTP_1.0", &["req.ver", "1.0"]),
    ("HTTP_1.1", &["req.ver", "1.1"]),
    ("HTTP_2.0", &["req.ver", "2.0"]),
    ("HTTP_CONTENT", &["req.hdr_val(content-length)", "gt", "0"]),
    ("HTTP_URL_ABS", &["url_reg", "^[^/:]*://"]),
    ("HTTP_URL_SLASH", &["url_beg", "/"]),
    ("HTTP_URL_STAR", &["url", "*"]),
    ("LOCALHOST", &["src", "127.0.0.1/8", "::1"]),
    ("METH_CONNECT", &["method", "CONNECT"]),
    ("METH_DELETE", &["method", "DELETE"]),
    ("METH_GET", &["method", "GET", "HEAD"]),
    ("METH_HEAD", &["method", "HEAD"]),
    ("METH_OPTIONS", &["method", "OPTIONS"]),
    ("METH_POST", &["method", "POST"]),
    ("METH_PUT", &["method", "PUT"]),
    ("METH_TRACE", &["method", "TRACE"]),
    ("TRUE", &["always_true"]),
];

fn predefined() -> &'static HashMap<&'static str, Arc<AclDef>> {
    static P: OnceLock<HashMap<&'static str, Arc<AclDef>>> = OnceLock::new();
    P.get_or_init(|| {
        PREDEFINED
            .iter()
            .filter_map(|(name, words)| {
                let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
                let test = parse_test(&words, Path::new(".")).ok()?;
                let res_fetch = test.expr.res_fetch;
                let l7_fetch = test.expr.l7_fetch;
                Some((
                    *name,
                    Arc::new(AclDef {
                        tests: vec![Arc::new(test)],
                        res_fetch,
                        l7_fetch,
                    }),
                ))
            })
            .collect()
    })
}

/// The named ACLs of one section.
#[derive(Clone, Debug, Default)]
pub(crate) struct AclMap {
    defs: HashMap<String, Arc<AclDef>>,
}

impl AclMap {
    pub(crate) fn define(&mut self, words: &[String], base_dir: &Path) -> Result<(), String> {
        let Some(name) = words.first() else {
            return Err("missing acl name".into());
        };
        check_name(name)?;
        if words.len() < 2 {
            return Err(format!("missing criterion for acl '{name}'"));
        }
        let test = Arc::new(parse_test(&words[1..], base_dir)?);
        let def = match self.defs.get(name) {
            Some(old) => AclDef {
                tests: old
                    .tests
                    .iter()
                    .cloned()
                    .chain(std::iter::once(test.clone()))
                    .collect(),
                res_fetch: old.res_fetch.or(test.expr.res_fetch),
                l7_fetch: old.l7_fetch.or(test.expr.l7_fetch),
            },
            None => AclDef {
                res_fetch: test.expr.res_fetch,
                l7_fetch: test.expr.l7_fetch,
                tests: vec![test],
            },
        };
        self.defs.insert(name.clone(), Arc::new(def));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Arc<AclDef>> {
        self.defs.get(name).or_else(|| predefined().get(name))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.defs
            .keys()
            .map(String::as_str)
            .chain(PREDEFINED.iter().map(|(n, _)| *n))
    }
}

#[derive(Debug)]
struct Factor {
    neg: bool,
    acl: Arc<AclDef>,
}

/// OR of ANDs of (possibly negated) ACLs.
#[derive(Debug)]
pub(crate) struct CondInner {
    terms: Vec<Vec<Factor>>,
    unless: bool,
}

impl CondInner {
    /// Stick tables named in the arguments of the fetches and converters
    /// of every ACL used.
    pub(crate) fn tables(&self) -> impl Iterator<Item = &str> {
        self.terms
            .iter()
            .flatten()
            .flat_map(|f| f.acl.tests.iter())
            .flat_map(|t| t.expr.tables.iter().map(String::as_str))
    }
}

impl CondInner {
    pub(crate) fn parse(
        words: &[String],
        unless: bool,
        acls: &AclMap,
        stage: Stage,
        base_dir: &Path,
    ) -> Result<CondInner, String> {
        let kw = if unless { "unless" } else { "if" };
        let mut terms: Vec<Vec<Factor>> = Vec::new();
        let mut cur: Vec<Factor> = Vec::new();
        let mut neg = false;
        let mut last_op = "||";
        let mut i = 0;
        while i < words.len() {
            let word = words[i].as_str();
            i += 1;
            if word == "||" || word == "or" {
                if neg {
                    return Err(format!("missing ACL name after '!' before '{word}'"));
                }
                if cur.is_empty() {
                    return Err(format!("missing ACL before '{word}'"));
                }
                terms.push(std::mem::take(&mut cur));
                last_op = word;
                continue;
            }
            let mut w = word;
            while let Some(rest) = w.strip_prefix('!') {
                neg = !neg;
                w = rest;
            }
            if w.is_empty() {
                continue;
            }
            let acl = match w {
                "{" => {
                    let Some(len) = words[i..].iter().position(|x| x == "}") else {
                        return Err("missing '}' to close the anonymous ACL".into());
                    };
                    let body = &words[i..i + len];
                    i += len + 1;
                    if body.iter().any(|x| x == "{") {
                        return Err("unexpected '{' inside an anonymous ACL".into());
                    }
                    if body.is_empty() {
                        return Err("empty anonymous ACL '{ }'".into());
                    }
                    let test = parse_test(body, base_dir)?;
                    if stage == Stage::Request {
                        if let Some(f) = test.expr.res_fetch {
                            return Err(stage_error(f));
                        }
                    }
                    if let (Stage::Connection, Some(f)) = (stage, test.expr.l7_fetch) {
                        return Err(connection_stage_error(f));
                    }
                    Arc::new(AclDef {
                        res_fetch: test.expr.res_fetch,
                        l7_fetch: test.expr.l7_fetch,
                        tests: vec![Arc::new(test)],
                    })
                }
                "}" => return Err("unexpected '}' without a matching '{'".into()),
                name => {
                    let Some(acl) = acls.get(name) else {
                        return Err(format!(
                            "no such ACL : '{name}'{}",
                            did_you_mean(name, acls.names())
                        ));
                    };
                    if stage == Stage::Request {
                        if let Some(f) = acl.res_fetch {
                            return Err(format!("acl '{name}': {}", stage_error(f)));
                        }
                    }
                    if let (Stage::Connection, Some(f)) = (stage, acl.l7_fetch) {
                        return Err(format!("acl '{name}': {}", connection_stage_error(f)));
                    }
                    acl.clone()
                }
            };
            cur.push(Factor { neg, acl });
            neg = false;
        }
        if neg {
            return Err("missing ACL name after '!'".into());
        }
        if cur.is_empty() {
            return Err(match terms.is_empty() {
                true => format!("missing condition after '{kw}'"),
                false => format!("missing ACL after '{last_op}'"),
            });
        }
        terms.push(cur);
        Ok(CondInner { terms, unless })
    }

    pub(crate) fn eval(&self, input: &Input<'_>) -> bool {
        let hit = self
            .terms
            .iter()
            .any(|t| t.iter().all(|f| f.acl.eval(input) != f.neg));
        hit != self.unless
    }
}
