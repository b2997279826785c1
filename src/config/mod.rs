//! Configuration: HAProxy-style text -> validated, typed [`Config`].
//!
//! # Pipeline
//!
//! 1. **Lexer** ([`lexer`]): the text is cut into lines of words following
//!    HAProxy's rules (comments, single and double quotes, backslash escapes,
//!    `${VAR}` environment expansion). A line that cannot be lexed (unmatched
//!    quote, bad `\x` escape, ...) is reported and skipped.
//! 2. **Sections and keyword table** ([`keywords`]): a line starting with
//!    `global`, `defaults`, `frontend`, `backend` or `listen` opens a section;
//!    every other line is a keyword looked up in one static table that says,
//!    for each keyword, in which sections it is allowed and which function
//!    parses it. Unknown keywords get a "did you mean" suggestion, keywords in
//!    the wrong section say where they belong, and keywords that weir accepts
//!    but ignores produce a warning.
//! 3. **Per-keyword parse functions** ([`parse`]): each keyword has a small
//!    function that checks its arguments (numbers, times, addresses, ...) and
//!    writes into the section being built: [`Global`] or a proxy draft.
//! 4. **Resolve** ([`resolve`]): sections are processed in file order; a proxy
//!    starts as a copy of its `defaults` section (the last one before it, or
//!    the one named by `from`) and its own keywords override it, exactly like
//!    HAProxy. `listen` sections are split into a frontend and a backend of the
//!    same name. Then names are checked for duplicates, `default_backend` and
//!    `use_backend` references are resolved (existence and `mode`), frontends
//!    without `bind` are rejected, and `log global` is expanded.
//!
//! Every error in the file is reported, in line order, not only the first;
//! a [`Config`] is only built when there is none. Warnings never stop loading.
//!
//! The keyword reference, with the section matrix, is `docs/configuration.md`.

pub mod model;
pub use model::*;

mod keywords;
mod lexer;
mod parse;
mod resolve;
mod units;

pub use parse::rules::in_network;
pub use parse::ssl::server_name;
pub use units::{parse_size, parse_time};

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// One error or warning, displayed HAProxy-style:
/// `parsing [weir.cfg:42] : 'balance' : unknown algorithm 'fastest' (expected roundrobin, static-rr, leastconn, first or source)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Option<Loc>,
    pub keyword: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(loc: Option<Loc>, keyword: Option<&str>, message: impl Into<String>) -> Self {
        Diagnostic {
            loc,
            keyword: keyword.map(str::to_string),
            message: message.into(),
        }
    }
}

/// Writes `s`, escaping control characters so that junk in a file cannot mess
/// with the terminal or split a diagnostic over several lines.
fn write_sanitized(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.loc {
            f.write_str("parsing [")?;
            write_sanitized(f, &loc.to_string())?;
            f.write_str("] : ")?;
        }
        if let Some(keyword) = &self.keyword {
            f.write_str("'")?;
            write_sanitized(f, keyword)?;
            f.write_str("' : ")?;
        }
        write_sanitized(f, &self.message)
    }
}

/// A successfully loaded configuration and the warnings it produced.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// A configuration with at least one error. `Display` prints one error per line.
#[derive(Debug)]
pub struct ConfigError {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Errors and warnings collected while loading.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and parses a configuration file (environment from `std::env`).
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_str(&name, &String::from_utf8_lossy(&bytes)),
        Err(e) => {
            let mut reason = e.to_string();
            // "No such file or directory (os error 2)" -> "No such file or directory"
            if let Some(at) = reason.rfind(" (os error ") {
                reason.truncate(at);
            }
            Err(ConfigError {
                errors: vec![Diagnostic::new(
                    None,
                    None,
                    format!("cannot read '{name}': {reason}"),
                )],
                warnings: Vec::new(),
            })
        }
    }
}

/// Parses configuration text; `file_name` is only used in diagnostics.
/// Environment variables come from `std::env`.
pub fn parse_str(file_name: &str, text: &str) -> Result<Loaded, ConfigError> {
    parse_str_with_env(file_name, text, &|name| std::env::var(name).ok())
}

/// Parses configuration text with an explicit environment lookup.
pub fn parse_str_with_env(
    file_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let file: Arc<str> = Arc::from(file_name);
    let mut diags = Diags::default();
    let (lines, lex_errors) = lexer::lex(text, env);
    for (line, message) in lex_errors {
        let loc = Loc {
            file: file.clone(),
            line,
        };
        diags.errors.push(Diagnostic::new(Some(loc), None, message));
    }
    let config = resolve::build(&lines, &file, &mut diags);
    // One file: line order is diagnostic order (the sort is stable).
    let line_of = |d: &Diagnostic| d.loc.as_ref().map_or(0, |l| l.line);
    diags.errors.sort_by_key(line_of);
    diags.warnings.sort_by_key(line_of);
    if diags.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: diags.warnings,
        })
    } else {
        Err(ConfigError {
            errors: diags.errors,
            warnings: diags.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(line: u32) -> Option<Loc> {
        Some(Loc {
            file: Arc::from("weir.cfg"),
            line,
        })
    }

    #[test]
    fn diagnostic_display() {
        let d = Diagnostic::new(
            loc(42),
            Some("balance"),
            "unknown algorithm 'fastest' (expected roundrobin, static-rr, leastconn, first or source)",
        );
        assert_eq!(
            d.to_string(),
            "parsing [weir.cfg:42] : 'balance' : unknown algorithm 'fastest' (expected roundrobin, static-rr, leastconn, first or source)"
        );
        let d = Diagnostic::new(loc(3), None, "unknown keyword 'x' in 'global' section");
        assert_eq!(
            d.to_string(),
            "parsing [weir.cfg:3] : unknown keyword 'x' in 'global' section"
        );
        let d = Diagnostic::new(None, None, "cannot read 'x.cfg': No such file or directory");
        assert_eq!(
            d.to_string(),
            "cannot read 'x.cfg': No such file or directory"
        );
        let d = Diagnostic::new(loc(1), None, "unknown keyword 'a\nb\u{1b}'");
        assert_eq!(
            d.to_string(),
            "parsing [weir.cfg:1] : unknown keyword 'a\\nb\\u{1b}'"
        );
    }

    #[test]
    fn config_error_display() {
        let e = ConfigError {
            errors: vec![
                Diagnostic::new(loc(1), None, "one"),
                Diagnostic::new(loc(2), Some("kw"), "two"),
            ],
            warnings: vec![Diagnostic::new(loc(3), None, "not shown")],
        };
        assert_eq!(
            e.to_string(),
            "parsing [weir.cfg:1] : one\nparsing [weir.cfg:2] : 'kw' : two"
        );
    }

    #[test]
    fn unreadable_file() {
        let Err(e) = load_file(Path::new("/nonexistent/weir-test.cfg")) else {
            panic!("loaded a missing file");
        };
        assert_eq!(
            e.to_string(),
            "cannot read '/nonexistent/weir-test.cfg': No such file or directory"
        );
    }
}
