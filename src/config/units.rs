//! Value parsers shared by the keyword parsers: times, sizes, integers,
//! addresses and names.
//!
//! Every error message names the bad value and the expected form, so that a
//! keyword parser can forward it as is (`'timeout connect' : invalid time ...`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Largest accepted time, like HAProxy: 2147483647 ms (about 24.8 days).
pub const MAX_TIME_MS: u64 = i32::MAX as u64;

const TIME_FORM: &str = "expected a number with an optional unit among us, ms, s, m, h, d; \
                         a bare number is in milliseconds";
const SIZE_FORM: &str = "expected a number with an optional unit among k, m, g (powers of 1024); \
                         a bare number is in bytes";

/// Splits `"30s"` into `("30", "s")`.
fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses an HAProxy time: `<number>[us|ms|s|m|h|d]`, a bare number being
/// milliseconds. The result must not exceed [`MAX_TIME_MS`].
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_number(s);
    let micros_per_unit: u128 = match unit {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(format!("invalid time value '{s}' ({TIME_FORM})")),
    };
    if num.is_empty() {
        return Err(format!("invalid time value '{s}' ({TIME_FORM})"));
    }
    let too_large = || {
        format!("time value '{s}' is too large (the maximum is {MAX_TIME_MS}ms, about 24.8 days)")
    };
    // Only digits are left, so a parse failure can only be an overflow.
    let n: u128 = num.parse().map_err(|_| too_large())?;
    let micros = n.checked_mul(micros_per_unit).ok_or_else(too_large)?;
    if micros > u128::from(MAX_TIME_MS) * 1_000 {
        return Err(too_large());
    }
    // Bounded by MAX_TIME_MS * 1000 above, so it fits in a u64.
    Ok(Duration::from_micros(micros as u64))
}

/// Parses a size: `<number>[k|m|g]` (either case, powers of 1024), a bare
/// number being bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_number(s);
    let shift = match unit {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        _ => return Err(format!("invalid size value '{s}' ({SIZE_FORM})")),
    };
    if num.is_empty() {
        return Err(format!("invalid size value '{s}' ({SIZE_FORM})"));
    }
    let too_large = || format!("size value '{s}' is too large");
    let n: u64 = num.parse().map_err(|_| too_large())?;
    n.checked_mul(1u64 << shift).ok_or_else(too_large)
}

/// Parses a decimal integer in `min..=max`.
pub(crate) fn parse_int(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let expected = || format!("expected an integer between {min} and {max}");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid number '{s}' ({})", expected()));
    }
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("value '{s}' is out of range ({})", expected())),
    }
}

/// [`parse_int`] for `u32` values.
pub(crate) fn parse_u32(s: &str, min: u32, max: u32) -> Result<u32, String> {
    // The range check guarantees the value fits.
    parse_int(s, u64::from(min), u64::from(max)).map(|n| n as u32)
}

/// What an address is for: it decides the accepted prefixes, whether a port
/// is required and whether port 0 is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddrUse {
    /// `bind`: port required, 0 allowed ("any free port"), empty host = any.
    Bind,
    /// `server`: host and port required, port 1-65535.
    Server,
    /// `log` (UDP syslog): port defaults to 514.
    Log,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

/// Address prefixes (`ipv4@...`) HAProxy has and weir does not (yet).
const UNSUPPORTED_PREFIXES: &[&str] = &[
    "unix", "abns", "abnsz", "fd", "sockpair", "quic4", "quic6", "quic", "uxst", "uxdg", "rhttp",
    "mptcp", "mptcp4", "mptcp6", "ring",
];

/// Splits `ipv4@1.2.3.4:80` into its family and the rest.
fn split_prefix(text: &str, usage: AddrUse) -> Result<(Family, &str), String> {
    let Some((prefix, rest)) = text.split_once('@') else {
        return Ok((Family::Any, text));
    };
    let family = match (prefix, usage) {
        ("ipv4", _) => Family::V4,
        ("ipv6", _) => Family::V6,
        ("tcp", AddrUse::Bind | AddrUse::Server) | ("udp", AddrUse::Log) => Family::Any,
        ("tcp4", AddrUse::Bind | AddrUse::Server) | ("udp4", AddrUse::Log) => Family::V4,
        ("tcp6", AddrUse::Bind | AddrUse::Server) | ("udp6", AddrUse::Log) => Family::V6,
        _ if UNSUPPORTED_PREFIXES.contains(&prefix)
            || matches!(prefix, "tcp" | "tcp4" | "tcp6" | "udp" | "udp4" | "udp6") =>
        {
            return Err(format!("'{prefix}@' addresses are not supported yet"));
        }
        _ => {
            let expected = match usage {
                AddrUse::Log => "udp@, udp4@, udp6@, ipv4@ or ipv6@",
                _ => "ipv4@, ipv6@, tcp@, tcp4@ or tcp6@",
            };
            return Err(format!(
                "unknown address prefix '{prefix}@' in '{text}' (expected {expected})"
            ));
        }
    };
    Ok((family, rest))
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or `host` (the port after the last colon).
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = text.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(format!("invalid address '{text}' (missing ']')"));
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!(
                    "invalid address '{text}' (expected [<ipv6>]:<port>)"
                )),
            },
        };
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

fn parse_port(port: &str, text: &str, usage: AddrUse) -> Result<u16, String> {
    let range = match usage {
        AddrUse::Bind => "1-65535, or 0 for any free port",
        _ => "1-65535",
    };
    if port.is_empty() {
        return Err(format!("missing port in address '{text}'"));
    }
    if port.contains('-') && !port.starts_with('-') {
        return Err(format!("port ranges are not supported ('{text}')"));
    }
    if port.starts_with(['+', '-']) {
        return Err(format!("port offsets are not supported ('{text}')"));
    }
    match port.parse::<u32>() {
        Ok(0) if usage == AddrUse::Bind => Ok(0),
        Ok(p @ 1..=65535) => Ok(p as u16),
        Ok(_) => Err(format!(
            "port {port} is out of range in '{text}' (expected {range})"
        )),
        Err(_) if port.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "port {port} is out of range in '{text}' (expected {range})"
        )),
        Err(_) => Err(format!(
            "invalid port '{port}' in '{text}' (expected {range})"
        )),
    }
}

fn family_matches(ip: &IpAddr, family: Family) -> bool {
    match family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    }
}

/// Resolves a host name with the system resolver, preferring IPv4 when no
/// family is forced.
fn resolve(host: &str, port: u16, family: Family, text: &str) -> Result<IpAddr, String> {
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !valid || host.len() > 253 {
        return Err(format!("invalid address '{text}'"));
    }
    let failed = || format!("could not resolve address '{text}'");
    let ips: Vec<IpAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| failed())?
        .map(|a| a.ip())
        .filter(|ip| family_matches(ip, family))
        .collect();
    ips.iter()
        .find(|ip| ip.is_ipv4())
        .or(ips.first())
        .copied()
        .ok_or_else(failed)
}

/// Parses `[prefix@]host[:port]` for a `bind`, `server` or `log` line.
pub(crate) fn parse_addr(text: &str, usage: AddrUse) -> Result<SocketAddr, String> {
    if text.starts_with('/') {
        return Err(format!(
            "unix socket addresses are not supported yet ('{text}')"
        ));
    }
    let (family, rest) = split_prefix(text, usage)?;
    let (host, port) = split_host_port(rest)?;
    let port = match (port, usage) {
        (Some(port), _) => parse_port(port, text, usage)?,
        (None, AddrUse::Log) => 514,
        (None, _) => {
            return Err(format!(
                "missing port in address '{text}' (expected <address>:<port>)"
            ))
        }
    };
    let ip = if host.is_empty() || host == "*" {
        if usage != AddrUse::Bind {
            return Err(format!("missing host in address '{text}'"));
        }
        match family {
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        if !family_matches(&ip, family) {
            return Err(format!(
                "address family of '{host}' does not match its prefix in '{text}'"
            ));
        }
        ip
    } else {
        resolve(host, port, family, text)?
    };
    Ok(SocketAddr::new(ip, port))
}

/// Checks a proxy or server name like HAProxy: letters, digits, `-_.:` only.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty {what} name"));
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-_.:".contains(c)))
    {
        Some(c) => Err(format!(
            "character '{c}' is not permitted in {what} name '{name}'"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("10"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_time("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_time("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_time("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_time("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_time("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_time("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_time("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_time("2147483647"),
            Ok(Duration::from_millis(2147483647))
        );
    }

    #[test]
    fn bad_times() {
        let form = "(expected a number with an optional unit among us, ms, s, m, h, d; \
                    a bare number is in milliseconds)";
        for bad in ["", "s", "10x", "10S", "1.5s", "-1", "10 s", "ms10", "10sec"] {
            assert_eq!(
                parse_time(bad),
                Err(format!("invalid time value '{bad}' {form}"))
            );
        }
        let big = "time value '25d' is too large (the maximum is 2147483647ms, about 24.8 days)";
        assert_eq!(parse_time("25d"), Err(big.to_string()));
        assert!(parse_time("2147483648").is_err());
        assert!(parse_time("99999999999999999999999999999999999999999999d").is_err());
        assert!(parse_time("340282366920938463463374607431768211455d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("16k"), Ok(16384));
        assert_eq!(parse_size("16K"), Ok(16384));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("3G"), Ok(3 << 30));
        let form = "(expected a number with an optional unit among k, m, g (powers of 1024); \
                    a bare number is in bytes)";
        for bad in ["", "k", "1kb", "1t", "1.5k", "-3"] {
            assert_eq!(
                parse_size(bad),
                Err(format!("invalid size value '{bad}' {form}"))
            );
        }
        assert_eq!(
            parse_size("18446744073709551615k"),
            Err("size value '18446744073709551615k' is too large".into())
        );
        assert!(parse_size("99999999999999999999999").is_err());
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int("42", 1, 100), Ok(42));
        assert_eq!(parse_int("007", 1, 100), Ok(7));
        assert_eq!(
            parse_int("0", 1, 100),
            Err("value '0' is out of range (expected an integer between 1 and 100)".into())
        );
        assert_eq!(
            parse_int("+5", 1, 100),
            Err("invalid number '+5' (expected an integer between 1 and 100)".into())
        );
        assert!(parse_int("99999999999999999999999999", 0, u64::MAX).is_err());
        assert_eq!(parse_u32("4294967295", 0, u32::MAX), Ok(u32::MAX));
        assert!(parse_u32("4294967296", 0, u32::MAX).is_err());
    }

    fn addr(text: &str, usage: AddrUse) -> String {
        match parse_addr(text, usage) {
            Ok(a) => a.to_string(),
            Err(e) => e,
        }
    }

    #[test]
    fn bind_addresses() {
        use AddrUse::Bind;
        assert_eq!(addr("127.0.0.1:3001", Bind), "127.0.0.1:3001");
        assert_eq!(addr(":3001", Bind), "0.0.0.0:3001");
        assert_eq!(addr("*:3001", Bind), "0.0.0.0:3001");
        assert_eq!(addr("0.0.0.0:0", Bind), "0.0.0.0:0");
        assert_eq!(addr("[::1]:3001", Bind), "[::1]:3001");
        assert_eq!(addr("::1:3001", Bind), "[::1]:3001");
        assert_eq!(addr("ipv6@:3001", Bind), "[::]:3001");
        assert_eq!(addr("ipv4@*:80", Bind), "0.0.0.0:80");
        assert_eq!(addr("tcp@127.0.0.1:80", Bind), "127.0.0.1:80");
        assert_eq!(addr("localhost:80", Bind), "127.0.0.1:80");
        assert_eq!(
            addr("127.0.0.1", Bind),
            "missing port in address '127.0.0.1' (expected <address>:<port>)"
        );
        assert_eq!(
            addr("127.0.0.1:", Bind),
            "missing port in address '127.0.0.1:'"
        );
        assert_eq!(
            addr(":65536", Bind),
            "port 65536 is out of range in ':65536' (expected 1-65535, or 0 for any free port)"
        );
        assert_eq!(
            addr(":99999999999999", Bind),
            "port 99999999999999 is out of range in ':99999999999999' (expected 1-65535, or 0 for any free port)"
        );
        assert_eq!(
            addr(":http", Bind),
            "invalid port 'http' in ':http' (expected 1-65535, or 0 for any free port)"
        );
        assert_eq!(
            addr(":80-90", Bind),
            "port ranges are not supported (':80-90')"
        );
        assert_eq!(addr(":+1", Bind), "port offsets are not supported (':+1')");
        assert_eq!(
            addr("[::1:80", Bind),
            "invalid address '[::1:80' (missing ']')"
        );
        assert_eq!(
            addr("[::1]80", Bind),
            "invalid address '[::1]80' (expected [<ipv6>]:<port>)"
        );
        assert_eq!(
            addr("/run/weir.sock", Bind),
            "unix socket addresses are not supported yet ('/run/weir.sock')"
        );
        assert_eq!(
            addr("unix@/x", Bind),
            "'unix@' addresses are not supported yet"
        );
        assert_eq!(
            addr("udp@:80", Bind),
            "'udp@' addresses are not supported yet"
        );
        assert_eq!(
            addr("foo@:80", Bind),
            "unknown address prefix 'foo@' in 'foo@:80' (expected ipv4@, ipv6@, tcp@, tcp4@ or tcp6@)"
        );
        assert_eq!(
            addr("ipv6@127.0.0.1:80", Bind),
            "address family of '127.0.0.1' does not match its prefix in 'ipv6@127.0.0.1:80'"
        );
        assert_eq!(addr("bad host!:80", Bind), "invalid address 'bad host!:80'");
    }

    #[test]
    fn server_and_log_addresses() {
        use AddrUse::{Log, Server};
        assert_eq!(addr("10.0.0.1:3000", Server), "10.0.0.1:3000");
        assert_eq!(addr(":3000", Server), "missing host in address ':3000'");
        assert_eq!(
            addr("10.0.0.1:0", Server),
            "port 0 is out of range in '10.0.0.1:0' (expected 1-65535)"
        );
        assert_eq!(
            addr("no-such-host.invalid:3000", Server),
            "could not resolve address 'no-such-host.invalid:3000'"
        );
        assert_eq!(addr("10.0.0.1", Log), "10.0.0.1:514");
        assert_eq!(addr("udp@10.0.0.1:1514", Log), "10.0.0.1:1514");
        assert_eq!(addr("[::1]", Log), "[::1]:514");
        assert_eq!(
            addr("tcp@10.0.0.1", Log),
            "'tcp@' addresses are not supported yet"
        );
    }

    #[test]
    fn names() {
        assert_eq!(check_name("be_servers-1.a:b", "backend"), Ok(()));
        assert_eq!(check_name("", "server"), Err("empty server name".into()));
        assert_eq!(
            check_name("be/x", "backend"),
            Err("character '/' is not permitted in backend name 'be/x'".into())
        );
    }
}
