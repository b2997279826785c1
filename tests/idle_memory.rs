//! What an idle HTTP/2 client connection holds on weir's heap (issue 10,
//! scenario (d)). h2's codec used to keep a 16 KiB write buffer and an
//! 8 KiB read buffer per connection for its whole life; the vendored h2
//! (vendor/README.md) allocates them when there is something to read or
//! write and releases them when empty.
//!
//! The test process counts every live heap byte (a counting wrapper around
//! the system allocator), opens idle HTTP/2 connections by hand (preface,
//! SETTINGS, ACK; nothing else), and divides the growth by the number of
//! connections. Then it shows that the idle connections still work: each
//! answers a PING, and one of them carries a gRPC call.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// wrapper only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The heap count is process-wide: the tests of this file take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// Reads one frame: (type, flags, stream id, payload).
async fn read_frame(s: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    within(5, s.read_exact(&mut head))
        .await
        .expect("frame header");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    within(5, s.read_exact(&mut payload))
        .await
        .expect("frame payload");
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (head[3], head[4], stream, payload)
}

/// An HTTP/2 connection that has done the handshake and nothing else.
async fn idle_connection(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    s.write_all(&hello).await.expect("preface");
    // The server's SETTINGS (and maybe a WINDOW_UPDATE) and the ACK of ours.
    let (mut settings, mut acked) = (false, false);
    while !(settings && acked) {
        let (kind, flags, _, _) = read_frame(&mut s).await;
        match (kind, flags & 1) {
            (4, 0) => {
                settings = true;
                s.write_all(&frame(4, 1, 0, &[])).await.expect("ack");
            }
            (4, 1) => acked = true,
            _ => {}
        }
    }
    s
}

/// Waits until the live heap stops moving (the proxy's tasks have settled),
/// at most 3 s, and returns it.
async fn settled_heap() -> isize {
    let mut last = LIVE.load(Ordering::Relaxed);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = LIVE.load(Ordering::Relaxed);
        if (now - last).abs() < 1024 {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_holds_no_codec_buffers() {
    const N: usize = 200;
    let _turn = SERIAL.lock().await;
    let servers = echo_servers(1).await;
    let proxy = start_proxy(&http_config(&[servers[0].addr], "")).await;
    let addr = fe_addr(&proxy);

    // Warm up: one call and one idle connection, so one-time allocations
    // (the upstream connection, lazily built tables) are not counted.
    let mut client = echo_client(addr).await;
    within(5, client.unary(weir_echo::pb::EchoRequest::default()))
        .await
        .expect("call through weir");
    let warm = idle_connection(addr).await;

    let before = settled_heap().await;
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(idle_connection(addr).await);
    }
    let after = settled_heap().await;
    let per_conn = (after - before) / N as isize;
    eprintln!("heap per idle HTTP/2 connection: {per_conn} bytes (client side included)");
    // With h2's fixed buffers this was about 36 KiB (16 KiB write, 8 KiB
    // read, 4 KiB HPACK, the connection task with an L4 session's state
    // inline, the client's socket); now about 5 KiB in a debug build. The
    // two codec buffers alone are 24 KiB.
    assert!(
        per_conn < 12 * 1024,
        "an idle connection holds {per_conn} bytes: are h2's codec buffers kept?"
    );

    // The idle connections still work: each answers a PING (its read
    // buffer is allocated again for it, and the write buffer for the ACK).
    for (i, c) in conns.iter_mut().enumerate() {
        let data = (i as u64).to_be_bytes();
        c.write_all(&frame(6, 0, 0, &data)).await.expect("ping");
        loop {
            let (kind, flags, _, payload) = read_frame(c).await;
            if kind == 6 {
                assert_eq!((flags & 1, payload.as_slice()), (1, &data[..]));
                break;
            }
        }
    }
    // And one that went idle carries a real call afterwards.
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = within(5, client.unary(weir_echo::pb::EchoRequest::default()))
        .await
        .expect("call after idling");
    assert_eq!(reply.into_inner().server, "s1");
}

/// A TCP echo server that allocates nothing per connection beyond its
/// task (a 64-byte buffer on the task's stack), so the heap growth of the
/// test is weir's.
async fn small_echo_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind(ANY).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..512 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A session that has moved a few bytes each way and then gone quiet.
async fn quiet_session(addr: SocketAddr, tag: u8) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    let data = [tag; 16];
    s.write_all(&data).await.expect("write");
    let mut back = [0u8; 16];
    within(5, s.read_exact(&mut back)).await.expect("echo");
    assert_eq!(back, data);
    s
}

/// `mode tcp`: a session's user-space copy buffers (`tune.bufsize`, 16 KiB
/// each way) exist only while bytes are moving, so a quiet session holds
/// none; it still carries bytes afterwards.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_mode_tcp_session_holds_no_copy_buffers() {
    const N: usize = 100;
    let _turn = SERIAL.lock().await;
    let echo = small_echo_server().await;
    let cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 {echo}\n"
    );
    let proxy = start_proxy(&cfg).await;
    let addr = fe_addr(&proxy);
    let warm = quiet_session(addr, 0).await;

    let before = settled_heap().await;
    let mut sessions = Vec::with_capacity(N);
    for i in 0..N {
        sessions.push(quiet_session(addr, i as u8).await);
    }
    let after = settled_heap().await;
    let per_session = (after - before) / N as isize;
    eprintln!(
        "heap per quiet mode tcp session: {per_session} bytes (client and echo server included)"
    );
    // With buffers held for the session's life this was above 32 KiB (two
    // 16 KiB copy buffers), plus the session's task.
    assert!(
        per_session < 16 * 1024,
        "a quiet session holds {per_session} bytes: are its copy buffers kept?"
    );

    for (i, s) in sessions.iter_mut().enumerate() {
        let data = [i as u8 ^ 0x5a; 4];
        s.write_all(&data).await.expect("write again");
        let mut back = [0u8; 4];
        within(5, s.read_exact(&mut back))
            .await
            .expect("echo again");
        assert_eq!(back, data);
    }
    drop(warm);
}
