//! Match methods and compiled patterns (HAProxy configuration manual §7.1).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use regex::{Regex, RegexBuilder};

use super::expr::{as_str, to_bool, to_int, to_ip, Kind};
use super::Sample;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MatchKind {
    Str,
    Beg,
    End,
    Sub,
    Reg,
    Dir,
    Dom,
    Len,
    Int,
    Ip,
    Bool,
    Found,
}

pub(crate) const METHOD_NAMES: &str =
    "str, beg, end, sub, reg, dir, dom, len, int, ip, bool, found";

impl MatchKind {
    pub(crate) fn parse(s: &str) -> Option<MatchKind> {
        Some(match s {
            "str" => MatchKind::Str,
            "beg" => MatchKind::Beg,
            "end" => MatchKind::End,
            "sub" => MatchKind::Sub,
            "reg" => MatchKind::Reg,
            "dir" => MatchKind::Dir,
            "dom" => MatchKind::Dom,
            "len" => MatchKind::Len,
            "int" => MatchKind::Int,
            "ip" => MatchKind::Ip,
            "bool" => MatchKind::Bool,
            "found" => MatchKind::Found,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            MatchKind::Str => "str",
            MatchKind::Beg => "beg",
            MatchKind::End => "end",
            MatchKind::Sub => "sub",
            MatchKind::Reg => "reg",
            MatchKind::Dir => "dir",
            MatchKind::Dom => "dom",
            MatchKind::Len => "len",
            MatchKind::Int => "int",
            MatchKind::Ip => "ip",
            MatchKind::Bool => "bool",
            MatchKind::Found => "found",
        }
    }

    /// The default method for a fetch of type `k`.
    pub(crate) fn default_for(k: Kind) -> MatchKind {
        match k {
            Kind::Bool => MatchKind::Bool,
            Kind::Int => MatchKind::Int,
            Kind::Str => MatchKind::Str,
            Kind::Ip => MatchKind::Ip,
        }
    }

    /// The sample type the method works on (`None`: any).
    pub(crate) fn input(self) -> Option<Kind> {
        match self {
            MatchKind::Int => Some(Kind::Int),
            MatchKind::Ip => Some(Kind::Ip),
            MatchKind::Bool => Some(Kind::Bool),
            MatchKind::Found => None,
            _ => Some(Kind::Str),
        }
    }

    pub(crate) fn takes_patterns(self) -> bool {
        !matches!(self, MatchKind::Bool | MatchKind::Found)
    }
}

/// An address and a prefix length (host bits cleared).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Net {
    addr: IpAddr,
    prefix: u32,
}

fn v4_mask(prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    }
}

fn v6_mask(prefix: u32) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix.min(128))
    }
}

impl Net {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & v4_mask(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & v6_mask(self.prefix) == u128::from(n),
            (IpAddr::V4(n), IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(a) => u32::from(a) & v4_mask(self.prefix) == u32::from(n),
                None => false,
            },
            (IpAddr::V6(n), IpAddr::V4(a)) => {
                u128::from(a.to_ipv6_mapped()) & v6_mask(self.prefix) == u128::from(n)
            }
        }
    }

    /// `10.0.0.1`, `10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `::1`, `2001:db8::/32`.
    pub(crate) fn parse(s: &str) -> Option<Net> {
        let (addr, prefix) = match s.split_once('/') {
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
            Some((a, p)) => {
                let a = a.parse::<IpAddr>().ok()?;
                let prefix = match p.parse::<u32>() {
                    Ok(p) => p,
                    Err(_) => match (a, p.parse::<Ipv4Addr>().ok()?) {
                        (IpAddr::V4(_), m) => {
                            let m = u32::from(m);
                            if m.leading_ones() + m.trailing_zeros() != 32 {
                                return None;
                            }
                            m.leading_ones()
                        }
                        _ => return None,
                    },
                };
                if prefix > if a.is_ipv4() { 32 } else { 128 } {
                    return None;
                }
                (a, prefix)
            }
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(prefix))),
        };
        Some(Net { addr, prefix })
    }
}

/// A mask for `ipmask`: a prefix length or an address-form mask.
pub(crate) fn parse_mask(s: &str, v6: bool) -> Option<IpAddr> {
    if let Ok(p) = s.parse::<u32>() {
        return if v6 {
            (p <= 128).then(|| IpAddr::V6(Ipv6Addr::from(v6_mask(p))))
        } else {
            (p <= 32).then(|| IpAddr::V4(Ipv4Addr::from(v4_mask(p))))
        };
    }
    match s.parse::<IpAddr>().ok()? {
        a @ IpAddr::V4(_) if !v6 => Some(a),
        a @ IpAddr::V6(_) if v6 => Some(a),
        _ => None,
    }
}

/// Compiles a regex; the error is one short line.
pub(crate) fn compile_regex(p: &str, icase: bool) -> Result<Regex, String> {
    RegexBuilder::new(p)
        .case_insensitive(icase)
        .build()
        .map_err(|e| {
            let reason = match &e {
                regex::Error::Syntax(s) => s
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .or_else(|| s.lines().last())
                    .unwrap_or("syntax error")
                    .to_string(),
                regex::Error::CompiledTooBig(n) => {
                    format!("compiled regex exceeds the size limit of {n} bytes")
                }
                other => other.to_string(),
            };
            format!("regex '{p}' is invalid: {reason}")
        })
}

#[derive(Debug)]
enum Pats {
    None,
    /// str/beg/end/sub/dir/dom (dir/dom patterns without edge delimiters).
    Strs(Vec<Box<str>>),
    /// Case-sensitive `str` with many patterns.
    Set(HashSet<Box<str>>),
    Regs(Vec<Regex>),
    /// Inclusive ranges (`int`, `len`).
    Ints(Vec<(i64, i64)>),
    Nets(Vec<Net>),
}

/// A match method with its compiled patterns.
#[derive(Debug)]
pub(crate) struct Matcher {
    pub kind: MatchKind,
    icase: bool,
    pats: Pats,
}

fn is_dir_delim(b: u8) -> bool {
    b == b'/' || b == b'?'
}

fn is_dom_delim(b: u8) -> bool {
    matches!(b, b'/' | b'?' | b'.' | b':')
}

/// HAProxy's `match_word`: `pat` found in `text` with a delimiter (or an
/// edge) on both sides.
fn match_word(text: &[u8], pat: &[u8], icase: bool, delim: fn(u8) -> bool) -> bool {
    if pat.is_empty() || pat.len() > text.len() {
        return false;
    }
    let end = text.len() - pat.len();
    let mut may_match = true;
    for c in 0..=end {
        if delim(text[c]) {
            may_match = true;
            continue;
        }
        if !may_match {
            continue;
        }
        let seg = &text[c..c + pat.len()];
        let eq = if icase {
            seg.eq_ignore_ascii_case(pat)
        } else {
            seg == pat
        };
        if eq && (c == end || delim(text[c + pat.len()])) {
            return true;
        }
        may_match = false;
    }
    false
}

fn contains_icase(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

fn parse_int_pattern(s: &str) -> Option<(i64, i64)> {
    let int = |t: &str| t.parse::<i64>().ok();
    match s.split_once(':') {
        None => int(s).map(|v| (v, v)),
        Some(("", "")) => None,
        Some(("", hi)) => Some((i64::MIN, int(hi)?)),
        Some((lo, "")) => Some((int(lo)?, i64::MAX)),
        Some((lo, hi)) => Some((int(lo)?, int(hi)?)),
    }
}

/// Integer patterns: `5`, `10:20`, `:5`, `5:`, and `eq|ge|gt|le|lt <n>`.
fn parse_ints(pats: &[String]) -> Result<Vec<(i64, i64)>, String> {
    let mut out = Vec::with_capacity(pats.len());
    let mut op: Option<&str> = None;
    for p in pats {
        if matches!(p.as_str(), "eq" | "ge" | "gt" | "le" | "lt") {
            if let Some(o) = op {
                return Err(format!("missing value after operator '{o}'"));
            }
            op = Some(p);
            continue;
        }
        let bad = || {
            format!(
                "'{p}' is not a valid integer or range (expected <n>, <lo>:<hi>, :<hi> or <lo>:)"
            )
        };
        match op.take() {
            None => out.push(parse_int_pattern(p).ok_or_else(bad)?),
            Some(o) => {
                let v: i64 = p
                    .parse()
                    .map_err(|_| format!("operator '{o}' expects an integer, got '{p}'"))?;
                out.push(match o {
                    "eq" => (v, v),
                    "ge" => (v, i64::MAX),
                    "gt" => (v.saturating_add(1), i64::MAX),
                    "le" => (i64::MIN, v),
                    _ => (i64::MIN, v.saturating_sub(1)),
                });
            }
        }
    }
    if let Some(o) = op {
        return Err(format!("missing value after operator '{o}'"));
    }
    Ok(out)
}

impl Matcher {
    pub(crate) fn new(kind: MatchKind, icase: bool, pats: &[String]) -> Result<Matcher, String> {
        let compiled = match kind {
            MatchKind::Bool | MatchKind::Found => {
                if let Some(p) = pats.first() {
                    return Err(format!(
                        "match method '{}' takes no pattern, got '{p}'",
                        kind.name()
                    ));
                }
                Pats::None
            }
            MatchKind::Str if !icase && pats.len() > 8 => {
                Pats::Set(pats.iter().map(|p| p.as_str().into()).collect())
            }
            MatchKind::Str | MatchKind::Beg | MatchKind::End | MatchKind::Sub => {
                Pats::Strs(pats.iter().map(|p| p.as_str().into()).collect())
            }
            MatchKind::Dir | MatchKind::Dom => {
                let delim = if kind == MatchKind::Dir {
                    is_dir_delim
                } else {
                    is_dom_delim
                };
                Pats::Strs(
                    pats.iter()
                        .map(|p| {
                            p.trim_matches(|c: char| c.is_ascii() && delim(c as u8))
                                .into()
                        })
                        .collect(),
                )
            }
            MatchKind::Reg => Pats::Regs(
                pats.iter()
                    .map(|p| compile_regex(p, icase))
                    .collect::<Result<_, _>>()?,
            ),
            MatchKind::Len | MatchKind::Int => Pats::Ints(parse_ints(pats)?),
            MatchKind::Ip => Pats::Nets(
                pats.iter()
                    .map(|p| {
                        Net::parse(p).ok_or_else(|| {
                            format!("'{p}' is not a valid IPv4 or IPv6 address or network")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Matcher {
            kind,
            icase,
            pats: compiled,
        })
    }

    pub(crate) fn matches(&self, s: &Sample<'_>) -> bool {
        match (&self.pats, self.kind) {
            (_, MatchKind::Found) => true,
            (_, MatchKind::Bool) => to_bool(s).unwrap_or(false),
            (Pats::Ints(r), MatchKind::Int) => match to_int(s) {
                Some(v) => r.iter().any(|(lo, hi)| *lo <= v && v <= *hi),
                None => false,
            },
            (Pats::Ints(r), _) => {
                let v = i64::try_from(as_str(s).len()).unwrap_or(i64::MAX);
                r.iter().any(|(lo, hi)| *lo <= v && v <= *hi)
            }
            (Pats::Nets(n), _) => match to_ip(s) {
                Some(ip) => n.iter().any(|n| n.contains(ip)),
                None => false,
            },
            (Pats::Set(set), _) => set.contains(&*as_str(s)),
            (Pats::Regs(r), _) => {
                let t = as_str(s);
                r.iter().any(|re| re.is_match(&t))
            }
            (Pats::Strs(ps), kind) => {
                let text = as_str(s);
                let ts: &str = &text;
                let t = ts.as_bytes();
                let ic = self.icase;
                ps.iter().any(|pat| {
                    let p = pat.as_bytes();
                    match kind {
                        MatchKind::Str => {
                            if ic {
                                t.eq_ignore_ascii_case(p)
                            } else {
                                t == p
                            }
                        }
                        MatchKind::Beg => {
                            t.len() >= p.len()
                                && if ic {
                                    t[..p.len()].eq_ignore_ascii_case(p)
                                } else {
                                    t.starts_with(p)
                                }
                        }
                        MatchKind::End => {
                            t.len() >= p.len()
                                && if ic {
                                    t[t.len() - p.len()..].eq_ignore_ascii_case(p)
                                } else {
                                    t.ends_with(p)
                                }
                        }
                        MatchKind::Sub => {
                            if ic {
                                contains_icase(t, p)
                            } else {
                                ts.contains(&**pat)
                            }
                        }
                        MatchKind::Dir => match_word(t, p, ic, is_dir_delim),
                        MatchKind::Dom => match_word(t, p, ic, is_dom_delim),
                        _ => false,
                    }
                })
            }
            (Pats::None, _) => false,
        }
    }
}
