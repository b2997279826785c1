//! Global `tune.h2.*` keywords: the HTTP/2 settings weir advertises to its
//! clients and the abuse limits it enforces (docs/hardening.md).

use super::{Ctx, R};
use crate::config::units::{parse_int, parse_size};
use crate::config::Global;

/// A size (`64k`, `1m`, plain bytes) in `min..=max`.
fn size_in(s: &str, min: u64, max: u64) -> Result<u32, String> {
    let n = parse_size(s)?;
    if !(min..=max).contains(&n) {
        return Err(format!(
            "value '{s}' is out of range (expected a size between {min} and {max} bytes)"
        ));
    }
    // `max` fits in a u32 for every caller.
    Ok(n as u32)
}

/// `tune.h2.max-concurrent-streams <number>` (1-65535, default 100).
pub(crate) fn max_concurrent_streams(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.max_concurrent_streams = parse_int(ctx.single("<number>")?, 1, 65535)? as u32;
    Ok(())
}

/// `tune.h2.initial-window-size <size>` (1k-2147483647, default 1m).
pub(crate) fn initial_window_size(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.initial_window_size = size_in(ctx.single("<size>")?, 1024, (1 << 31) - 1)?;
    Ok(())
}

/// `tune.h2.max-frame-size <size>` (16384-16777215, RFC 9113; default 64k).
pub(crate) fn max_frame_size(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.max_frame_size = size_in(ctx.single("<size>")?, 1 << 14, (1 << 24) - 1)?;
    Ok(())
}

/// `tune.h2.hpack-encoding stateless|indexed` (default `stateless`): how
/// weir compresses the header blocks it sends, on every HTTP/2 connection
/// (clients and servers). `stateless` is HAProxy's encoder: static-table
/// indexes and raw literals, no dynamic table, no Huffman coding; fewer
/// instructions per header, more bytes. `indexed` is h2's own encoder:
/// repeated fields go into the HPACK dynamic table and literals are
/// Huffman-coded.
pub(crate) fn hpack_encoding(ctx: &mut Ctx, g: &mut Global) -> R {
    g.hpack_indexed = match ctx.single("stateless|indexed")? {
        "stateless" => false,
        "indexed" => true,
        other => {
            return Err(format!(
                "unknown value '{other}' (expected 'stateless' or 'indexed')"
            ))
        }
    };
    Ok(())
}

/// `tune.bufsize <size>` (1k-16m, default 16k): weir's `mode tcp` copy
/// buffer per direction (HTTP/2 has its own framing buffers).
pub(crate) fn bufsize(ctx: &mut Ctx, g: &mut Global) -> R {
    g.bufsize = Some(size_in(ctx.single("<size>")?, 1024, 16 << 20)?);
    Ok(())
}

/// `tune.pipesize <size>` (4k-64m, default: the kernel's): the size of
/// each pipe `option splice-*` uses.
pub(crate) fn pipesize(ctx: &mut Ctx, g: &mut Global) -> R {
    g.pipesize = Some(size_in(ctx.single("<size>")?, 4096, 64 << 20)?);
    Ok(())
}

/// `tune.h2.max-header-list-size <size>` (1k-16m, default 64k).
pub(crate) fn max_header_list_size(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.max_header_list_size = size_in(ctx.single("<size>")?, 1024, 16 << 20)?;
    Ok(())
}

/// `tune.h2.header-table-size <size>`: HAProxy's keyword, checked (at most
/// 65536 as in HAProxy) but weir's HTTP/2 server keeps the RFC's 4096-byte
/// HPACK table, so any other value warns: h2 0.4 and hyper 1.12's
/// `server::conn::http2::Builder` have `header_table_size`, but
/// hyper-util 0.1's `auto::Http2Builder`, which serves both protocols on one
/// listener, does not expose it.
pub(crate) fn header_table_size(ctx: &mut Ctx, _: &mut Global) -> R {
    let n = size_in(ctx.single("<size>")?, 0, 65536)?;
    if n != 4096 {
        ctx.warn(format!(
            "weir's HTTP/2 server always uses a 4096-byte HPACK table; '{n}' is ignored"
        ));
    }
    Ok(())
}

/// `tune.h2.fe.max-pending-resets <number>` (1-1000000, default 20).
pub(crate) fn max_pending_resets(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.max_pending_resets = parse_int(ctx.single("<number>")?, 1, 1_000_000)? as u32;
    Ok(())
}

/// `tune.h2.fe.max-error-resets <number>` (1-1000000, default 1024).
pub(crate) fn max_error_resets(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.max_error_resets = parse_int(ctx.single("<number>")?, 1, 1_000_000)? as u32;
    Ok(())
}

/// `tune.h2.fe.max-control-frames-per-sec <number>` (0-10000000, default
/// 10000; 0: no limit): PING, SETTINGS, PRIORITY and empty DATA frames
/// per second and client connection (docs/hardening.md).
pub(crate) fn max_control_frames_per_sec(ctx: &mut Ctx, g: &mut Global) -> R {
    g.h2.max_control_frames_per_sec = parse_int(ctx.single("<number>")?, 0, 10_000_000)? as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, Global, H2Tune};

    /// The `global` section made of `lines`, or the parse errors.
    fn parsed(lines: &str) -> Result<Global, String> {
        parse_str("t.cfg", &format!("global\n{lines}"))
            .map(|l| l.config.global)
            .map_err(|e| e.to_string())
    }

    fn global(lines: &str) -> Result<H2Tune, String> {
        parsed(lines).map(|g| g.h2)
    }

    #[test]
    fn defaults_when_absent() {
        assert_eq!(global("").unwrap(), H2Tune::default());
        assert_eq!(H2Tune::default().max_concurrent_streams, 100);
        assert_eq!(H2Tune::default().initial_window_size, 1 << 20);
    }

    #[test]
    fn values_and_sizes() {
        let t = global(
            "    tune.h2.max-concurrent-streams 50\n    tune.h2.initial-window-size 256k\n\
             tune.h2.max-frame-size 16384\n    tune.h2.max-header-list-size 32k\n\
             tune.h2.fe.max-pending-resets 10\n    tune.h2.fe.max-error-resets 100\n\
             tune.h2.header-table-size 4096\n",
        )
        .unwrap();
        assert_eq!(t.max_concurrent_streams, 50);
        assert_eq!(t.initial_window_size, 256 << 10);
        assert_eq!(t.max_frame_size, 16384);
        assert_eq!(t.max_header_list_size, 32 << 10);
        assert_eq!(t.max_pending_resets, 10);
        assert_eq!(t.max_error_resets, 100);
        assert_eq!(
            t.max_control_frames_per_sec,
            H2Tune::DEFAULT_MAX_CONTROL_FRAMES_PER_SEC
        );
        assert_eq!(H2Tune::DEFAULT_MAX_CONTROL_FRAMES_PER_SEC, 10_000);
    }

    #[test]
    fn max_control_frames_per_sec() {
        let t = global("    tune.h2.fe.max-control-frames-per-sec 500\n").unwrap();
        assert_eq!(t.max_control_frames_per_sec, 500);
        // 0 turns the limit off.
        let t = global("    tune.h2.fe.max-control-frames-per-sec 0\n").unwrap();
        assert_eq!(t.max_control_frames_per_sec, 0);
    }

    #[test]
    fn max_control_frames_per_sec_bad_input() {
        const KW: &str = "tune.h2.fe.max-control-frames-per-sec";
        for (arg, why) in [
            ("-1", "invalid number '-1'"),
            ("ten", "invalid number 'ten'"),
            ("1.5", "invalid number '1.5'"),
            ("20000000", "out of range"),
            ("", "missing <number>"),
            ("10 20", "unexpected argument '20'"),
        ] {
            let line = format!("    {KW} {arg}");
            let e = global(&format!("\n{}\n", line.trim_end())).expect_err(&line);
            assert!(e.contains("[t.cfg:3]") && e.contains(KW), "{line}: {e}");
            assert!(e.contains(why), "{line}: {e}");
        }
        // Only in `global`.
        let e = parse_str(
            "t.cfg",
            &format!("global\ndefaults\n    mode http\n    {KW} 100\n"),
        )
        .map(|_| ())
        .expect_err("defaults")
        .to_string();
        assert!(
            e.contains("[t.cfg:4]") && e.contains(&format!("'{KW}' is not allowed in 'defaults'")),
            "{e}"
        );
    }

    fn hpack_indexed(lines: &str) -> Result<bool, String> {
        parsed(lines).map(|g| g.hpack_indexed)
    }

    #[test]
    fn hpack_encoding() {
        assert_eq!(hpack_indexed(""), Ok(false), "stateless by default");
        assert_eq!(
            hpack_indexed("    tune.h2.hpack-encoding stateless\n"),
            Ok(false)
        );
        assert_eq!(
            hpack_indexed("    tune.h2.hpack-encoding indexed\n"),
            Ok(true)
        );
        for (arg, why) in [
            (
                "huffman",
                "unknown value 'huffman' (expected 'stateless' or 'indexed')",
            ),
            (
                "Indexed",
                "unknown value 'Indexed' (expected 'stateless' or 'indexed')",
            ),
            ("", "missing stateless|indexed"),
            ("indexed stateless", "unexpected argument 'stateless'"),
        ] {
            let line = format!("    tune.h2.hpack-encoding {arg}");
            let e = hpack_indexed(&format!("{}\n", line.trim_end())).expect_err(&line);
            assert!(
                e.contains("[t.cfg:2]") && e.contains("'tune.h2.hpack-encoding'"),
                "{line}: {e}"
            );
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        for bad in [
            "tune.h2.max-concurrent-streams 0",
            "tune.h2.max-concurrent-streams 70000",
            "tune.h2.max-frame-size 1k",
            "tune.h2.max-frame-size 16m",
            "tune.h2.initial-window-size 2g",
            "tune.h2.max-header-list-size 100",
            "tune.h2.fe.max-pending-resets 0",
            "tune.h2.header-table-size 1m",
            "tune.h2.max-concurrent-streams",
            "tune.h2.max-concurrent-streams 10 20",
        ] {
            let e = global(&format!("    {bad}\n")).expect_err(bad);
            assert!(e.contains(bad.split(' ').next().unwrap()), "{bad}: {e}");
        }
    }
}
