//! Sample expressions: parsing `fetch(args),conv(args),...`, sample type
//! casts, and evaluation of a compiled fetch + converter chain.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use http::header::HeaderName;

use super::convert::{self, Conv};
use super::fetch::{self, Fetch};
use super::matcher::MatchKind;
use super::{Input, Sample, Stage};

/// The type of a sample, known at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Str,
    Ip,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Str => "string",
            Kind::Ip => "ip address",
        }
    }
}

/// Whether a sample of type `from` can be cast to `to` (some casts may still
/// fail at run time, e.g. a string that is not an address).
pub(crate) fn can_cast(from: Kind, to: Kind) -> bool {
    !matches!((from, to), (Kind::Bool, Kind::Ip) | (Kind::Ip, Kind::Bool))
}

/// A sample as a string; borrows when it already is one.
pub(crate) fn to_str(s: Sample<'_>) -> Cow<'_, str> {
    match s {
        Sample::Str(s) => s,
        other => Cow::Owned(other.to_string()),
    }
}

/// A sample's text without consuming it; borrows when it is a string.
pub(crate) fn as_str<'s>(s: &'s Sample<'_>) -> Cow<'s, str> {
    match s {
        Sample::Str(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// HAProxy's string to integer cast: optional sign and leading digits
/// (`"12abc"` is 12, `"abc"` is 0); an empty string does not convert.
pub(crate) fn to_int(s: &Sample<'_>) -> Option<i64> {
    match s {
        Sample::Bool(b) => Some(i64::from(*b)),
        Sample::Int(i) => Some(*i),
        Sample::Str(s) if s.is_empty() => None,
        Sample::Str(s) => Some(leading_int(s.as_bytes())),
        Sample::Ip(IpAddr::V4(a)) => Some(i64::from(u32::from(*a))),
        Sample::Ip(IpAddr::V6(_)) => None,
    }
}

pub(crate) fn to_bool(s: &Sample<'_>) -> Option<bool> {
    match s {
        Sample::Bool(b) => Some(*b),
        Sample::Ip(_) => None,
        other => to_int(other).map(|i| i != 0),
    }
}

pub(crate) fn to_ip(s: &Sample<'_>) -> Option<IpAddr> {
    match s {
        Sample::Ip(ip) => Some(*ip),
        Sample::Str(s) => s.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical()),
        Sample::Int(i) => u32::try_from(*i)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        Sample::Bool(_) => None,
    }
}

/// Optional sign then decimal digits, stopping at the first other byte;
/// saturates instead of overflowing.
pub(crate) fn leading_int(b: &[u8]) -> i64 {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let mut v: i64 = 0;
    for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
        let d = i64::from(d - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
    }
    v
}

/// One `name(args)` element of an expression.
#[derive(Debug)]
pub(crate) struct Call {
    pub name: String,
    pub args: Vec<String>,
}

/// Splits `fetch(a,b),conv(c),conv2` into calls. Inside parentheses, args
/// are split at commas; `'...'` and `"..."` quote (a comma or parenthesis
/// inside quotes is literal), `\,` is a literal comma, and balanced inner
/// parentheses are kept (`regsub((a|b),x)`).
pub(crate) fn split_calls(text: &str) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '(' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(if calls.is_empty() {
                format!("missing fetch method in '{text}'")
            } else {
                format!("missing converter name after ',' in '{text}'")
            });
        }
        let mut args = Vec::new();
        if chars.peek() == Some(&'(') {
            chars.next();
            let mut cur = String::new();
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            let mut closed = false;
            while let Some(c) = chars.next() {
                if let Some(q) = quote {
                    if c == q {
                        quote = None;
                    } else if c == '\\' && chars.peek() == Some(&q) {
                        cur.push(q);
                        chars.next();
                    } else {
                        cur.push(c);
                    }
                    continue;
                }
                match c {
                    '\'' | '"' => quote = Some(c),
                    '\\' => match chars.peek() {
                        Some(&n) if matches!(n, ',' | '"' | '\'') => {
                            cur.push(n);
                            chars.next();
                        }
                        Some(&n) => {
                            cur.push('\\');
                            cur.push(n);
                            chars.next();
                        }
                        None => cur.push('\\'),
                    },
                    '(' => {
                        depth += 1;
                        cur.push(c);
                    }
                    ')' if depth > 0 => {
                        depth -= 1;
                        cur.push(c);
                    }
                    ')' => {
                        closed = true;
                        break;
                    }
                    ',' => args.push(std::mem::take(&mut cur)),
                    _ => cur.push(c),
                }
            }
            if !closed {
                return Err(format!(
                    "missing ')' after the arguments of '{name}' in '{text}'"
                ));
            }
            if !(args.is_empty() && cur.is_empty()) {
                args.push(cur);
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(c) => return Err(format!("unexpected '{c}' after ')' in '{text}'")),
            }
        }
        calls.push(Call { name, args });
        match chars.next() {
            None => return Ok(calls),
            Some(',') => continue,
            Some(c) => return Err(format!("unexpected '{c}' in '{text}'")),
        }
    }
}

/// Argument checking for one fetch or converter.
pub(crate) struct Args<'x> {
    /// `fetch method 'req.hdr'` or `converter 'field'`.
    pub what: String,
    pub args: &'x [String],
}

impl<'x> Args<'x> {
    pub(crate) fn new(
        what: String,
        usage: &str,
        args: &'x [String],
        min: usize,
        max: usize,
    ) -> Result<Self, String> {
        let a = Args { what, args };
        if args.len() < min {
            return Err(format!("{}: missing argument (usage: {})", a.what, usage));
        }
        if args.len() > max {
            return Err(if max == 0 {
                format!("{} takes no arguments", a.what)
            } else {
                format!("{}: too many arguments (usage: {})", a.what, usage)
            });
        }
        Ok(a)
    }

    pub(crate) fn str(&self, i: usize) -> Option<&'x str> {
        self.args.get(i).map(String::as_str)
    }

    pub(crate) fn int(&self, i: usize) -> Result<Option<i64>, String> {
        match self.args.get(i) {
            None => Ok(None),
            Some(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
                format!(
                    "{}: argument {} must be an integer, got '{}'",
                    self.what,
                    i + 1,
                    s
                )
            }),
        }
    }

    pub(crate) fn header(&self, i: usize) -> Result<HeaderName, String> {
        let s = self.str(i).unwrap_or("");
        HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| format!("{}: invalid header name '{}'", self.what, s))
    }

    pub(crate) fn nonempty(&self, i: usize, what: &str) -> Result<&'x str, String> {
        match self.str(i) {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(format!("{}: {} must not be empty", self.what, what)),
        }
    }
}

/// A compiled fetch and its converters.
#[derive(Debug)]
pub(crate) struct ExprInner {
    fetch: Fetch,
    convs: Vec<Conv>,
    /// Output type after the converters.
    pub kind: Kind,
    /// The fetch's name when it reads the response.
    pub res_fetch: Option<&'static str>,
    /// The fetch's name when it needs more than the connection (the HTTP
    /// request or the response): not usable in `tcp-request connection`.
    pub l7_fetch: Option<&'static str>,
    /// Stick tables named in arguments (`sc_*(<ctr>,<table>)`,
    /// `table_*(<table>)`, ...), checked once every section is known.
    pub tables: Vec<String>,
}

/// The message for a response fetch used where there is no response.
pub(crate) fn stage_error(fetch: &str) -> String {
    format!(
        "fetch method '{fetch}' extracts information from the response, which is not available here"
    )
}

/// The message for a fetch that needs the HTTP request in a
/// `tcp-request connection` rule.
pub(crate) fn connection_stage_error(fetch: &str) -> String {
    format!(
        "fetch method '{fetch}' extracts information from the HTTP request or response, which is not available in 'tcp-request connection' rules (only connection fetches are: src, src_port, dst, dst_port, fe_name, sc_*, src_*, constants)"
    )
}

/// ` (did you mean 'x'?)` when a candidate is within edit distance 2.
pub(crate) fn did_you_mean<'n>(name: &str, cands: impl Iterator<Item = &'n str>) -> String {
    let mut best: Option<(usize, &str)> = None;
    for c in cands {
        let d = levenshtein(name, c);
        if d <= 2 && d < name.len().max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    match best {
        Some((_, c)) => format!(" (did you mean '{c}'?)"),
        None => String::new(),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

impl ExprInner {
    /// Compiles `text`. With `acl`, ACL shortcuts (`path_beg`, `hdr_sub(x)`)
    /// are accepted and their implied match method is returned.
    pub(crate) fn compile(
        text: &str,
        stage: Stage,
        acl: bool,
    ) -> Result<(ExprInner, Option<MatchKind>), String> {
        let calls = split_calls(text)?;
        let first = &calls[0];
        let (built, implied) = match fetch::build(&first.name, &first.args) {
            Some(b) => (b?, None),
            None => match acl.then(|| fetch::shortcut(&first.name)).flatten() {
                Some((base, m)) => match fetch::build(base, &first.args) {
                    Some(b) => (b?, Some(m)),
                    None => return Err(format!("unknown fetch method '{}'", first.name)),
                },
                None => {
                    let names = fetch::names().iter().copied();
                    let hint = if acl {
                        let shortcuts = fetch::shortcut_names();
                        did_you_mean(
                            &first.name,
                            names.chain(shortcuts.iter().map(String::as_str)),
                        )
                    } else {
                        did_you_mean(&first.name, names)
                    };
                    return Err(format!("unknown fetch method '{}'{}", first.name, hint));
                }
            },
        };
        if built.response && stage == Stage::Request {
            return Err(stage_error(built.name));
        }
        let l7_fetch = (!fetch::at_connection(built.name)).then_some(built.name);
        if let (Stage::Connection, Some(f)) = (stage, l7_fetch) {
            return Err(connection_stage_error(f));
        }
        let mut tables: Vec<String> = built
            .fetch
            .table()
            .map(str::to_string)
            .into_iter()
            .collect();
        let mut kind = built.kind;
        let mut convs = Vec::with_capacity(calls.len() - 1);
        for call in &calls[1..] {
            let Some(c) = convert::build(&call.name, &call.args) else {
                return Err(format!(
                    "unknown converter '{}'{}",
                    call.name,
                    did_you_mean(&call.name, convert::NAMES.iter().copied())
                ));
            };
            let (conv, input, output) = c?;
            if !can_cast(kind, input) {
                return Err(format!(
                    "converter '{}' expects {}, but gets {}",
                    call.name,
                    article(input),
                    article(kind)
                ));
            }
            if let Conv::Table { table, .. } = &conv {
                tables.push(table.clone());
            }
            convs.push(conv);
            kind = output;
        }
        let res_fetch = built.response.then_some(built.name);
        Ok((
            ExprInner {
                fetch: built.fetch,
                convs,
                kind,
                res_fetch,
                l7_fetch,
                tables,
            },
            implied,
        ))
    }

    pub(crate) fn eval<'a>(&self, input: &Input<'a>) -> Option<Sample<'a>> {
        let mut s = self.fetch.eval(input)?;
        for c in &self.convs {
            s = c.apply_in(s, input)?;
        }
        Some(s)
    }

    /// Calls `f` on every value (all occurrences of a multi-valued fetch),
    /// after converters, until it returns true; returns whether it did.
    pub(crate) fn each<'a>(
        &self,
        input: &Input<'a>,
        f: &mut dyn FnMut(Sample<'a>) -> bool,
    ) -> bool {
        if self.convs.is_empty() {
            return self.fetch.each(input, f);
        }
        self.fetch.each(input, &mut |s| {
            let mut s = s;
            for c in &self.convs {
                match c.apply_in(s, input) {
                    Some(n) => s = n,
                    None => return false,
                }
            }
            f(s)
        })
    }
}

pub(crate) fn article(k: Kind) -> String {
    match k {
        Kind::Int | Kind::Ip => format!("an {}", k.name()),
        _ => format!("a {}", k.name()),
    }
}
