//! Health-check state-change logs, in their own test binary: `tracing`
//! caches per-callsite interest process-wide, so capturing logs with a
//! thread-local subscriber is only reliable when no other test runs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// Collects what `tracing` writes on this thread (tests here run on a
/// current-thread runtime, so the check tasks log on this thread too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

#[tokio::test]
async fn dead_server_goes_down_after_fall_and_back_up_after_rise() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (addr, task) = silent_listener(any_addr()).await;
    let text = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {addr} check inter 100ms rise 2 fall 3\n"
    );
    let proxy = start_proxy(&text).await;
    assert!(server_up(&proxy, "be", "s1"), "starts UP");
    wait_for(5, "a first check", || checks_run(&proxy, "s1") >= 1).await;
    assert_eq!(last_reason(&proxy, "s1"), "Layer4 check passed");

    // The server dies: connections are refused.
    task.abort();
    let _ = task.await;
    let down = wait_for(5, "s1 DOWN", || !server_up(&proxy, "be", "s1")).await;
    assert!(
        last_reason(&proxy, "s1").starts_with("Layer4 connection problem, info: \""),
        "{}",
        last_reason(&proxy, "s1")
    );
    // 3 failures 100ms apart (plus the time left of the current interval).
    assert!(
        down >= Duration::from_millis(200),
        "DOWN too soon: {down:?}"
    );
    assert!(
        down < Duration::from_millis(1500),
        "DOWN too late: {down:?}"
    );

    // It comes back on the same port.
    let (_, _task) = silent_listener(addr).await;
    let up = wait_for(5, "s1 UP", || server_up(&proxy, "be", "s1")).await;
    assert!(up >= Duration::from_millis(100), "UP too soon: {up:?}");
    assert!(up < Duration::from_millis(1500), "UP too late: {up:?}");

    let text = logs.text();
    assert!(
        text.contains("Server be/s1 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: ")
            && text.contains("ms. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."),
        "{text}"
    );
    assert!(
        text.contains("backend be has no server available!"),
        "{text}"
    );
    assert!(
        text.contains("Server be/s1 is UP, reason: Layer4 check passed, check duration: ")
            && text.contains(
                "ms. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
            ),
        "{text}"
    );
    eprintln!("timings: DOWN after {down:?}, UP after {up:?} (inter 100ms, fall 3, rise 2)");
}
