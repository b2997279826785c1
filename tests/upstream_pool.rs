//! Upstream HTTP/2 connections belong to the worker thread that opened
//! them: each thread multiplexes its calls on its own connections (their
//! I/O runs on its own runtime), as HAProxy's threads do.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::echo_servers;
use weir::backend::pool::H2Pool;

/// On a fresh worker (one OS thread with its own current-thread runtime,
/// as `nbthread` starts them), two calls in flight on `pool`: whether the
/// worker had a connection of its own before and after, and how many
/// connections the pool has opened by then.
fn two_calls_on_a_new_worker(pool: &Arc<H2Pool>) -> (bool, bool, u64) {
    let p = pool.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let timeout = Some(Duration::from_secs(5));
            let before = p.is_connected();
            let l1 = p.acquire(timeout).await.expect("first slot");
            let l2 = p.acquire(timeout).await.expect("second slot");
            let after = p.is_connected();
            let opened = p.connections_opened();
            drop((l1, l2));
            (before, after, opened)
        })
    })
    .join()
    .expect("worker thread")
}

#[test]
fn each_thread_multiplexes_on_the_connections_it_opened() {
    // The backend runs on threads of its own.
    let backend_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let servers = backend_rt.block_on(echo_servers(1));
    let pool = Arc::new(H2Pool::new(servers[0].addr, None));

    // Thread A: two calls in flight share one connection.
    let (a_before, a_after, opened) = two_calls_on_a_new_worker(&pool);
    assert!(!a_before);
    assert!(a_after);
    assert_eq!(opened, 1, "thread A's two calls share its connection");

    // Thread B: A's connection has room, but B opens its own (and sees
    // none of its own before).
    let (b_before, b_after, opened) = two_calls_on_a_new_worker(&pool);
    assert!(!b_before, "thread A's connection is not thread B's");
    assert!(b_after);
    assert_eq!(opened, 2, "one connection per thread, not one per call");
    drop(servers);
}

/// On a multi-thread runtime a call's task moves between threads, so its
/// threads share the pool's connections (tonic/tokio embedders, tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_thread_runtime_shares_one_connection() {
    let servers = echo_servers(1).await;
    let pool = Arc::new(H2Pool::new(servers[0].addr, None));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let lease = p.acquire(Some(Duration::from_secs(5))).await.expect("slot");
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(lease);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(pool.connections_opened(), 1);
}
