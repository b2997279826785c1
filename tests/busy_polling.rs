//! `busy-polling` (global): worker threads poll for socket events without
//! ever sleeping, and a reload turns it on or off. Its own test binary: a
//! spinning runtime must not share a process with paused-time tests.

mod common;

use std::time::Duration;

use common::*;
use weir_echo::pb::EchoRequest;

fn cfg(port: u16, servers: &[weir_echo::EchoHandle], global: &str) -> String {
    let addrs: Vec<_> = servers.iter().map(|e| e.addr).collect();
    format!(
        "global\n{global}defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:{port} proto h2\n    default_backend be\n\
         backend be\n{}",
        server_lines(&addrs, "")
    )
}

/// CPU time (user + system, seconds) used so far by this process's thread
/// named `name`, from /proc.
fn thread_cpu_s(name: &str) -> f64 {
    let tck = 100.0; // USER_HZ on Linux
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.expect("task entry").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).expect("stat");
        // Fields after the parenthesised name: utime and stime are the 14th
        // and 15th fields of the whole line.
        let rest = &stat[stat.rfind(')').expect("comm end") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        found = Some(ticks as f64 / tck);
    }
    found.unwrap_or_else(|| panic!("no thread named {name}"))
}

/// CPU the worker thread uses over `wall` with no traffic.
async fn idle_cpu_s(wall: Duration) -> f64 {
    let before = thread_cpu_s("weir-worker-1");
    tokio::time::sleep(wall).await;
    thread_cpu_s("weir-worker-1") - before
}

/// Calls on several connections (spread over both workers by the kernel)
/// all answered.
async fn calls_work(addr: std::net::SocketAddr) {
    for i in 0..8 {
        let mut c = echo_client(addr).await;
        let r = within(
            10,
            c.unary(EchoRequest {
                payload: vec![i; 16].into(),
                ..Default::default()
            }),
        )
        .await
        .expect("unary")
        .into_inner();
        assert_eq!(r.payload.as_ref(), &[i; 16][..]);
    }
}

/// Without the keyword an idle worker thread sleeps (next to no CPU);
/// reloaded with `busy-polling` it spins (it uses CPU with no traffic at
/// all) and calls still go through; reloaded without, it sleeps again;
/// on again, then stopping: no spinning while connections drain.
/// One test: the worker threads of two proxies would share a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_spins_the_workers_and_follows_reloads() {
    let servers = echo_servers(2).await;
    let port = free_port();
    let mut proxy = weir::proxy::start_threads(load_config(&cfg(port, &servers, "")), 2)
        .await
        .expect("starts");
    let addr = fe_addr(&proxy);
    calls_work(addr).await;
    let wall = Duration::from_millis(1000);
    let sleeping = idle_cpu_s(wall).await;
    assert!(
        sleeping <= 0.1,
        "without busy-polling the idle worker used {sleeping:.2} s of CPU in {wall:?}"
    );

    for (round, global) in [
        "    busy-polling\n",
        "    no busy-polling\n",
        "    busy-polling\n",
    ]
    .into_iter()
    .enumerate()
    {
        proxy
            .reload(load_config(&cfg(port, &servers, global)))
            .await
            .expect("reload");
        // Let the worker see the change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let used = idle_cpu_s(wall).await;
        if global.contains("no ") {
            assert!(
                used <= 0.1,
                "round {round}, busy-polling off: the idle worker used {used:.2} s of CPU in {wall:?}"
            );
        } else {
            assert!(
                used >= 0.2,
                "round {round}, busy-polling: the idle worker used only {used:.2} s of CPU in {wall:?}"
            );
        }
        calls_work(addr).await;
    }

    // Stopping turns it off while connections drain (as HAProxy's soft
    // stop): a stream kept open holds the drain while the worker is read.
    let mut c = echo_client(addr).await;
    let stream = stream_started(&mut c, 1000, 10).await;
    let stopping = tokio::spawn(proxy.shutdown(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let draining = idle_cpu_s(wall).await;
    assert!(
        draining <= 0.1,
        "busy-polling while stopping: the worker used {draining:.2} s of CPU in {wall:?}"
    );
    assert!(!stopping.is_finished(), "the open stream holds the drain");
    drop(stream);
    drop(c);
    within(20, stopping).await.expect("shutdown ends");
}
