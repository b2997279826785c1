//! A slow reader must slow the server down, not grow weir's memory: a
//! 1 GiB server stream read slowly through the real `weir` binary keeps its
//! peak resident memory (VmHWM from /proc) under 64 MiB.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio_stream::StreamExt;
use weir_echo::pb::EchoRequest;

/// Starts the weir binary on `cfg` and returns it with its frontend address,
/// read from its "listening" log line.
fn spawn_weir(cfg: &str) -> (Child, std::net::SocketAddr, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(cfg.as_bytes()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-f")
        .arg(file.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        // Read every line (so weir never blocks on a full pipe); report the
        // address from the "listening ... addr=IP:PORT" line.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                if let Some(pos) = line.find("addr=") {
                    let a = line[pos + 5..].split_whitespace().next().unwrap_or("");
                    if let (Some(tx), Ok(addr)) = (tx.take(), a.parse()) {
                        let _ = tx.send(addr);
                    }
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("weir logs its listening address");
    (child, addr, file)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_to_a_slow_reader_keeps_weir_under_64_mib() {
    let servers = echo_servers(1).await;
    let (mut weir, addr, _cfg) = spawn_weir(&http_config(&[servers[0].addr], ""));
    let mut client = echo_client(addr).await;
    // 1 GiB by default; WEIR_MEM_MIB makes a quicker local run.
    let r_count: u32 = std::env::var("WEIR_MEM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let r = EchoRequest {
        reply_count: r_count,
        reply_size: 1 << 20,
        ..Default::default()
    };
    let mut stream = within(10, client.server_stream(r))
        .await
        .unwrap()
        .into_inner();
    let mut total = 0u64;
    let mut n = 0u32;
    let read = within(300, async {
        while let Some(m) = stream.next().await {
            total += m.expect("message").payload.len() as u64;
            n += 1;
            if n % 8 == 0 {
                // The slow reader.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    read.await;
    let peak_kib = peak_rss_kib(weir.id());
    let _ = weir.kill();
    let _ = weir.wait();
    assert_eq!(total, u64::from(r_count) << 20);
    eprintln!("weir peak RSS while streaming {r_count} MiB to a slow reader: {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
}
