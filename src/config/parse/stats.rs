//! The stats page and the metrics exporter: proxy `stats ...` keywords,
//! `http-request use-service <name>` and global `metrics-max-methods`.
//!
//! As in HAProxy, every `stats` keyword but `auth`/`realm` turns the page
//! on; `stats auth` is refused (ignoring it would publish a page its author
//! meant to protect).

use super::{Ctx, ProxyDraft, R};
use crate::config::keywords::{did_you_mean, SectionKind};
use crate::config::units::{parse_int, parse_time};
use crate::config::{Global, Service, StatsPage};

/// `stats` subcommands weir runs.
const STATS_SUBCOMMANDS: &[&str] = &[
    "enable",
    "uri",
    "refresh",
    "hide-version",
    "show-legends",
    "realm",
];

/// HAProxy `stats` subcommands that weir refuses.
const STATS_UNSUPPORTED: &[&str] = &["auth", "admin", "scope", "http-request"];

/// HAProxy `stats` subcommands that only change what the page shows.
const STATS_IGNORED: &[&str] = &["show-desc", "show-node", "show-modules"];

/// `stats enable | uri <prefix> | refresh <delay> | hide-version | show-legends`
pub(crate) fn stats(ctx: &mut Ctx, p: &mut ProxyDraft) -> R {
    let sub = ctx.need(1, "<subcommand>")?;
    ctx.kw = format!("stats {sub}");
    if ctx.section == SectionKind::Backend {
        return Err(format!(
            "the stats page is served by frontends: put 'stats {sub}' in the frontend or listen section that should answer it"
        ));
    }
    if STATS_UNSUPPORTED.contains(&sub) {
        let why = match sub {
            "auth" => "weir has no HTTP authentication for the stats page; refusing rather than serving it unprotected (restrict it with an 'http-request deny' rule, or bind it to a private address)",
            "admin" => "the stats page is read-only in weir",
            "scope" => "the stats page shows every proxy",
            _ => "use 'http-request' rules on the frontend instead",
        };
        return Err(format!("not supported: {why}"));
    }
    if STATS_IGNORED.contains(&sub) {
        ctx.warn_plain(format!("'stats {sub}' has no effect in weir yet, ignored"));
        return Ok(());
    }
    if !STATS_SUBCOMMANDS.contains(&sub) {
        let known = STATS_SUBCOMMANDS
            .iter()
            .chain(STATS_UNSUPPORTED)
            .chain(STATS_IGNORED)
            .copied();
        return Err(format!(
            "unknown subcommand '{sub}'{} (expected one of {})",
            did_you_mean(sub, known),
            STATS_SUBCOMMANDS.join(", ")
        ));
    }
    let page = p.stats.get_or_insert_with(StatsPage::default);
    match sub {
        "enable" | "hide-version" | "show-legends" => {
            ctx.max_args(1)?;
            page.hide_version |= sub == "hide-version";
            page.show_legends |= sub == "show-legends";
        }
        "uri" => {
            let uri = ctx.need(2, "<prefix>")?;
            ctx.max_args(2)?;
            if !uri.starts_with('/') {
                return Err(format!("'{uri}' must start with '/'"));
            }
            if uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(format!("'{uri}' contains a space or a control character"));
            }
            page.uri = uri.to_string();
        }
        "refresh" => {
            // HAProxy reads a bare number as seconds here (not milliseconds).
            let text = ctx.need(2, "<delay>")?;
            let secs = text.bytes().all(|b| b.is_ascii_digit());
            let delay = match secs {
                true => parse_time(&format!("{text}s")),
                false => parse_time(text),
            }
            .map_err(|_| {
                format!("invalid delay '{text}' (expected seconds, or a time with a unit: 10s, 1m)")
            })?;
            ctx.max_args(2)?;
            if delay.as_secs() == 0 {
                return Err("<delay> must be at least 1s".into());
            }
            page.refresh = Some(delay);
        }
        // "realm": only meaningful with `stats auth`, which is refused.
        _ => {
            ctx.need(2, "<realm>")?;
            ctx.warn_plain(format!(
                "'stats {sub}' has no effect without 'stats auth', which weir does not support, ignored"
            ));
        }
    }
    Ok(())
}

/// Services `http-request use-service` knows.
const SERVICES: &[&str] = &["prometheus-exporter"];

/// `use-service <name>` of an `http-request` rule (`head`: the action and
/// its arguments).
pub(crate) fn use_service(ctx: &Ctx, head: &[String]) -> Result<Service, String> {
    let name = match head {
        [_] => {
            return Err(format!(
                "missing service name (expected 'use-service {}')",
                SERVICES.join(" | ")
            ))
        }
        [_, name] => name.as_str(),
        [_, _, extra, ..] => {
            return Err(format!(
                "unexpected argument '{extra}' (expected 'use-service <name> [{{if | unless}} <condition>]')"
            ))
        }
        [] => return Err("missing action".into()),
    };
    if ctx.section == SectionKind::Backend {
        return Err(
            "'http-request use-service' is only supported in frontend and listen sections".into(),
        );
    }
    match name {
        "prometheus-exporter" => Ok(Service::PrometheusExporter),
        other => Err(format!(
            "unknown service '{other}'{} (weir provides: {})",
            did_you_mean(other, SERVICES.iter().copied()),
            SERVICES.join(", ")
        )),
    }
}

/// Global `metrics-max-methods <n>`.
pub(crate) fn global_metrics_max_methods(ctx: &mut Ctx, g: &mut Global) -> R {
    let n = parse_int(ctx.single("<number>")?, 1, 1_000_000)?;
    // Bounded by 1e6, so it fits in any usize.
    g.metrics_max_methods = Some(n as usize);
    Ok(())
}
