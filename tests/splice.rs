//! `option splice-auto|splice-request|splice-response` in `mode tcp`:
//! bytes move through kernel pipes (splice(2)) and arrive unchanged, the
//! half-close, timeouts, logs and counters behave as with plain copying,
//! and a broken peer ends only its own session.
#![cfg(target_os = "linux")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_echo::pb::EchoRequest;

fn config(server: SocketAddr, defaults: &str, frontend: &str, backend: &str) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n{defaults}\
         frontend fe\n    bind 127.0.0.1:0\n{frontend}    default_backend be\n\
         backend be\n{backend}    server s1 {server}\n"
    )
}

fn spliced(p: &weir::proxy::Running) -> u64 {
    p.stats()
        .frontend("fe")
        .spliced_bytes
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_option_moves_bytes_unchanged_and_counts_what_it_spliced() {
    const N: usize = 8 << 20;
    let srv = tcp_echo_server().await;
    // (defaults lines, expected spliced bytes: Some(exact) or None for "> 0")
    let cases: [(&str, Option<u64>); 5] = [
        ("", Some(0)),
        ("    option splice-request\n", Some(N as u64)),
        ("    option splice-response\n", Some(N as u64)),
        (
            "    option splice-request\n    option splice-response\n",
            Some(2 * N as u64),
        ),
        ("    option splice-auto\n", None),
    ];
    for (defaults, expect) in cases {
        let proxy = start_proxy(&config(srv, defaults, "", "")).await;
        tcp_echo_exact(fe_addr(&proxy), N).await;
        // The session's counters are added when it ends.
        let t = &proxy.stats().frontend("fe").traffic;
        wait_for(5, "session end", || {
            t.bytes_out.load(Ordering::Relaxed) == N as u64
        })
        .await;
        assert_eq!(t.bytes_in.load(Ordering::Relaxed), N as u64, "{defaults}");
        let got = spliced(&proxy);
        match expect {
            Some(n) => assert_eq!(got, n, "{defaults:?}"),
            // Bulk data: most of both directions goes through pipes.
            None => assert!(got > N as u64 && got <= 2 * N as u64, "{defaults:?}: {got}"),
        }
    }
}

#[tokio::test]
async fn the_backend_or_the_frontend_can_turn_it_on_and_no_option_turns_it_off() {
    const N: usize = 1 << 20;
    let srv = tcp_echo_server().await;
    for (defaults, fe, be, on) in [
        ("", "", "    option splice-request\n", true),
        ("", "    option splice-response\n", "", true),
        // Either side turns it on: the backend still inherits it here...
        (
            "    option splice-request\n",
            "    no option splice-request\n",
            "",
            true,
        ),
        // ...and here both sides turn it off.
        (
            "    option splice-request\n",
            "    no option splice-request\n",
            "    no option splice-request\n",
            false,
        ),
    ] {
        let proxy = start_proxy(&config(srv, defaults, fe, be)).await;
        tcp_echo_exact(fe_addr(&proxy), N).await;
        wait_for(5, "session end", || {
            proxy
                .stats()
                .frontend("fe")
                .traffic
                .bytes_out
                .load(Ordering::Relaxed)
                == N as u64
        })
        .await;
        assert_eq!(
            spliced(&proxy) == N as u64,
            on,
            "{defaults}{fe}{be}: {}",
            spliced(&proxy)
        );
    }
}

#[tokio::test]
async fn half_close_still_gets_the_reply() {
    let srv = tcp_echo_server().await;
    for opt in [
        "option splice-auto",
        "option splice-request\n    option splice-response",
    ] {
        let proxy = start_proxy(&config(srv, &format!("    {opt}\n"), "", "")).await;
        let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
        c.write_all(b"request then FIN").await.unwrap();
        c.shutdown().await.unwrap();
        let mut reply = Vec::new();
        within(5, c.read_to_end(&mut reply)).await.unwrap();
        assert_eq!(reply, b"request then FIN", "{opt}");
    }
}

#[tokio::test]
async fn idle_spliced_session_is_closed_but_a_moving_one_lives() {
    let srv = tcp_echo_server().await;
    let proxy = start_proxy(&config(
        srv,
        "    option splice-request\n    option splice-response\n    timeout client 300ms\n    timeout server 300ms\n",
        "",
        "",
    ))
    .await;
    moving_then_idle_300ms(fe_addr(&proxy)).await;
    // Even a session cut by the timeout counts its bytes.
    wait_for(5, "session end", || {
        proxy
            .stats()
            .frontend("fe")
            .traffic
            .bytes_in
            .load(Ordering::Relaxed)
            == 12
    })
    .await;
    assert_eq!(spliced(&proxy), 24);
}

#[tokio::test]
async fn tcplog_counts_spliced_bytes_and_a_server_reset_is_sd() {
    let (syslog, log_addr) = log_socket().await;
    // The server: reads 1 MiB, answers it, then resets the next connection
    // after reading a little.
    let l = TcpListener::bind(ANY).await.unwrap();
    let srv = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        s.shutdown().await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut small = [0u8; 10];
        let _ = s.read_exact(&mut small).await;
        s.set_zero_linger().unwrap();
        drop(s);
        // A third connection is served normally.
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"still here").await.unwrap();
        s.shutdown().await.unwrap();
    });
    let cfg = config(
        srv,
        &format!(
            "    log {log_addr} format raw local0\n    option tcplog\n    option splice-auto\n"
        ),
        "",
        "",
    );
    let proxy = start_proxy(&cfg).await;

    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    let data: Vec<u8> = (0..1 << 20).map(tcp_pattern).collect();
    c.write_all(&data).await.unwrap();
    let mut back = vec![0u8; 1 << 20];
    within(10, c.read_exact(&mut back)).await.unwrap();
    assert!(back == data);
    drop(c);
    let line = recv_text(&syslog).await;
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f[5], "1048576", "bytes to the client: {line}");
    assert_eq!(f[6], "--", "{line}");
    assert!(spliced(&proxy) > 0);

    // The server resets while the client is still sending.
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..64 {
        if c.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = within(10, c.read_to_end(&mut rest)).await;
    let line = recv_text(&syslog).await;
    assert!(line.contains(" SD "), "{line}");

    // Nothing else broke.
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    let mut s = String::new();
    within(5, c.read_to_string(&mut s)).await.unwrap();
    assert_eq!(s, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_of_every_size_through_splice_auto() {
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&config(servers[0].addr, "    option splice-auto\n", "", "")).await;
    let mut client = echo_client(fe_addr(&proxy)).await;
    for size in [0usize, 64, 64 << 10, 1 << 20, 3 << 20] {
        let req = EchoRequest {
            payload: vec![0xA5; size].into(),
            ..Default::default()
        };
        let r = within(20, client.unary(req))
            .await
            .expect("ok")
            .into_inner();
        assert_eq!(r.payload.len(), size);
        assert!(r.payload.iter().all(|b| *b == 0xA5));
    }
    assert!(spliced(&proxy) > 0);
}

#[test]
fn splice_in_mode_http_is_a_warning_not_an_error() {
    let cfg = "defaults\n    mode http\n    option splice-auto\n\
               frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
               backend be\n    server s1 127.0.0.1:1\n";
    let loaded = weir::config::parse_str("t.cfg", cfg).expect("loads");
    let w: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    for name in ["frontend 'fe'", "backend 'be'"] {
        assert!(
            w.iter()
                .any(|l| l.contains("'option splice-*' has no effect in")
                    && l.contains(name)
                    && l.contains("'mode tcp' sessions only")),
            "{name}: {w:?}"
        );
    }
    // In mode tcp: no warning.
    let tcp = cfg.replace("mode http", "mode tcp");
    let loaded = weir::config::parse_str("t.cfg", &tcp).expect("loads");
    assert!(
        loaded
            .warnings
            .iter()
            .all(|d| !d.to_string().contains("splice")),
        "{:?}",
        loaded.warnings
    );
    // An option argument is an error with the line.
    let bad = tcp.replace("option splice-auto", "option splice-auto on");
    let err = weir::config::parse_str("t.cfg", &bad).expect_err("argument");
    let text = err.to_string();
    assert!(
        text.contains("t.cfg:3") && text.contains("unexpected argument 'on'"),
        "{text}"
    );
}

/// `global maxpipes`: with the budget spent, further sessions copy through
/// user space (still byte-exact) and the refusals are counted; `maxpipes 0`
/// never splices. The budget and counts are on /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxpipes_caps_open_pipes_and_the_rest_is_copied() {
    const N: usize = 1 << 20;
    let srv = tcp_echo_server().await;
    for max in [0u64, 3] {
        let cfg = format!(
            "global\n    maxpipes {max}\n{}",
            config(
                srv,
                "    option splice-request\n    option splice-response\n",
                "",
                ""
            )
        );
        let proxy = start_proxy(&cfg).await;
        let addr = fe_addr(&proxy);
        let metric = |name: &str| -> u64 {
            let text = weir::observe::metrics::render(&proxy.stats());
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        // Four sessions open at once, each with a byte echoed (so both of
        // its directions are running): they want eight pipes.
        let mut open = Vec::new();
        for i in 0..4u8 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            let mut b = [0u8; 1];
            within(5, c.read_exact(&mut b)).await.unwrap();
            assert_eq!(b[0], i);
            open.push(c);
        }
        assert_eq!(metric("weir_splice_pipes_max "), max);
        assert_eq!(metric("weir_splice_pipes_open "), max);
        assert_eq!(metric("weir_splice_pipes_refused_total "), 8 - max);
        // The sessions without a pipe still carry bulk data unchanged.
        for mut c in open {
            let data: Vec<u8> = (0..N).map(tcp_pattern).collect();
            let (mut r, mut w) = c.split();
            let mut back = vec![0u8; N];
            let (wr, rd) = within(20, async {
                tokio::join!(w.write_all(&data), r.read_exact(&mut back))
            })
            .await;
            wr.unwrap();
            rd.unwrap();
            assert!(back == data);
        }
        assert_eq!(spliced(&proxy) > 0, max > 0, "maxpipes {max}");
    }
    // Out of range is a load error with the line.
    global_line_is_rejected("maxpipes -1", "");
}

/// `global` + `line` fails to load, with an error that names the line and
/// says `why`.
fn global_line_is_rejected(line: &str, why: &str) {
    let err = weir::config::parse_str("t.cfg", &format!("global\n    {line}\n")).expect_err(line);
    let text = err.to_string();
    assert!(
        text.contains("t.cfg:2") && text.contains(why),
        "{line}: {text}"
    );
}

/// `tune.bufsize`: the mode tcp copy buffer. Any size moves bytes exactly;
/// with `splice-auto` a smaller buffer fills sooner, so smaller bursts are
/// spliced. Bad sizes are load errors with the line.
#[tokio::test]
async fn tune_bufsize_sets_the_copy_buffer_and_the_splice_auto_threshold() {
    let srv = tcp_echo_server().await;
    for (bufsize, auto) in [("1k", false), ("64k", false), ("1k", true)] {
        let defaults = if auto { "    option splice-auto\n" } else { "" };
        let cfg = format!(
            "global\n    tune.bufsize {bufsize}\n{}",
            config(srv, defaults, "", "")
        );
        let proxy = start_proxy(&cfg).await;
        tcp_echo_exact(fe_addr(&proxy), 3 << 20).await;
        assert_eq!(spliced(&proxy) > 0, auto, "{bufsize} {auto}");
    }
    for (bad, why) in [
        ("100", "out of range"),
        ("17m", "out of range"),
        ("lots", "tune.bufsize"),
    ] {
        global_line_is_rejected(&format!("tune.bufsize {bad}"), why);
    }
}

/// A server reset ends the whole spliced session at once, even while the
/// client sits idle (its direction is not left waiting for the timeout).
#[tokio::test]
async fn a_server_reset_closes_an_idle_client_at_once() {
    let l = TcpListener::bind(ANY).await.unwrap();
    let srv = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 10];
        let _ = s.read_exact(&mut b).await;
        s.set_zero_linger().unwrap();
        drop(s);
    });
    let proxy = start_proxy(&config(
        srv,
        "    option splice-request\n    option splice-response\n    timeout client 60s\n    timeout server 60s\n",
        "",
        "",
    ))
    .await;
    let mut c = TcpStream::connect(fe_addr(&proxy)).await.unwrap();
    c.write_all(b"0123456789").await.unwrap();
    // The client now only reads: the session must end within seconds, not
    // after the 60 s timeout.
    let mut rest = Vec::new();
    let _ = within(5, c.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
}

/// `tune.pipesize`: larger pipes carry the same bytes (the kernel side is
/// checked in `l4::splice`'s unit tests); bad sizes are load errors with
/// the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_pipesize_sizes_the_pipes() {
    const N: usize = 8 << 20;
    let srv = tcp_echo_server().await;
    let cfg = format!(
        "global\n    tune.pipesize 1m\n{}",
        config(
            srv,
            "    option splice-request\n    option splice-response\n",
            "",
            ""
        )
    );
    let loaded = weir::config::parse_str("t.cfg", &cfg).expect("loads");
    assert_eq!(loaded.config.global.pipesize, Some(1 << 20));
    let proxy = weir::proxy::start(loaded.config).await.expect("starts");
    tcp_echo_exact(fe_addr(&proxy), N).await;
    wait_for(5, "session end", || spliced(&proxy) == 2 * N as u64).await;
    for (bad, why) in [("100", "out of range"), ("65m", "out of range")] {
        global_line_is_rejected(&format!("tune.pipesize {bad}"), why);
    }
}
