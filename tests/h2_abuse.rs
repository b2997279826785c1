//! HTTP/2 and connection hardening (docs/hardening.md): scripted abusive
//! clients (raw HTTP/2 frames over TCP, or the `h2` crate) against an
//! in-process weir, each while a well-behaved tonic client keeps making
//! calls on its own connection. Every test checks that the good client saw
//! no failure and that the process RSS grew by less than [`RSS_BOUND_KIB`].

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use weir_echo::pb::EchoRequest;

/// How much the process RSS may grow during one attack.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// The tests measure the RSS of the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------ harness

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// weir's log lines (at info and above), for the whole test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .without_time()
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits for a log line containing `what` and `peer`, and returns it.
async fn logged(what: &str, peer: SocketAddr) -> String {
    let peer = peer.to_string();
    let find = || {
        let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        text.lines()
            .find(|l| l.contains(what) && l.contains(&peer))
            .map(str::to_owned)
    };
    wait_for(5, &format!("a log line with '{what}' for {peer}"), || {
        find().is_some()
    })
    .await;
    let line = find().unwrap();
    eprintln!("logged: {line}");
    line
}

/// A proxy with `global` lines, frontend `fe` (which also serves
/// `/metrics`) and one echo server.
async fn setup(global: &str, defaults: &str) -> (weir::proxy::Running, weir_echo::EchoHandle) {
    logs();
    let mut servers = echo_servers(1).await;
    let server = servers.remove(0);
    let text = config_text(global, defaults, server.addr);
    (start_proxy(&text).await, server)
}

/// The proxy's configuration: `global` and `defaults` lines added to a
/// frontend `fe` on 127.0.0.1:0 and a backend with one h2 server.
fn config_text(global: &str, defaults: &str, server: SocketAddr) -> String {
    format!(
        "global\n{global}defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n\
         timeout server 30s\n    timeout http-request 500ms\n{defaults}\
         frontend fe\n    bind 127.0.0.1:0\n{EXPORTER}    default_backend be\n\
         backend be\n    server s1 {server} proto h2\n"
    )
}

/// A well-behaved tonic client on its own connection, calling in a loop.
struct Good {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

async fn good_client(addr: SocketAddr) -> Good {
    let mut client = echo_client(addr).await;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (o, f, e, s) = (
        ok.clone(),
        failed.clone(),
        first_error.clone(),
        stop.clone(),
    );
    let task = tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            let req = EchoRequest {
                payload: Bytes::from_static(b"hello"),
                ..Default::default()
            };
            match tokio::time::timeout(Duration::from_secs(5), client.unary(req)).await {
                Ok(Ok(r)) if r.get_ref().payload[..] == b"hello"[..] => {
                    o.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    f.fetch_add(1, Ordering::Relaxed);
                    e.lock().unwrap().get_or_insert(format!("{other:?}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    // At least one call before the attack starts.
    wait_for(10, "first good call", || ok.load(Ordering::Relaxed) > 0).await;
    Good {
        ok,
        failed,
        first_error,
        stop,
        task,
    }
}

impl Good {
    /// Stops the loop and checks it saw no failure; returns the calls made.
    async fn finish(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("good client task");
        let (ok, failed) = (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        assert_eq!(
            failed,
            0,
            "{what}: good client failed {failed} of {} calls, first: {:?}",
            ok + failed,
            self.first_error.lock().unwrap()
        );
        assert!(ok > 0, "{what}: good client made no call");
        ok
    }
}

fn check_rss(what: &str, before: u64) {
    let after = rss_kib();
    let grew = after.saturating_sub(before);
    eprintln!("{what}: RSS {before} kB -> {after} kB (+{grew} kB)");
    assert!(
        grew < RSS_BOUND_KIB,
        "{what}: RSS grew by {grew} kB (bound {RSS_BOUND_KIB} kB)"
    );
}

/// One attack's surroundings: the serial lock, a proxy from [`setup`], its
/// frontend address, a [`good_client`] on it and the RSS before the attack.
struct Bench {
    addr: SocketAddr,
    good: Good,
    rss: u64,
    _server: weir_echo::EchoHandle,
    _proxy: weir::proxy::Running,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Bench {
    async fn start(global: &str, defaults: &str) -> Bench {
        let _serial = SERIAL.lock().await;
        let (_proxy, _server) = setup(global, defaults).await;
        let addr = fe_addr(&_proxy);
        let good = good_client(addr).await;
        let rss = rss_kib();
        Bench {
            addr,
            good,
            rss,
            _server,
            _proxy,
            _serial,
        }
    }

    /// [`Good::finish`], then [`check_rss`], both under `what`.
    async fn finish(self, what: &str) {
        self.good.finish(what).await;
        check_rss(what, self.rss);
    }
}

// ------------------------------------------------------------ raw frames

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(buf: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    assert!(len < 1 << 24);
    buf.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
    buf.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// HPACK for `GET / http`, `:authority: weir` (no dynamic-table entries).
fn get_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x01, 4, b'w', b'e', b'i', b'r']
}

/// A whole `GET /` request ([`get_block`]) on `stream`.
fn get(buf: &mut Vec<u8>, stream: u32) {
    frame(buf, HEADERS, END_HEADERS | END_STREAM, stream, &get_block());
}

/// A literal header field without indexing, new name.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// What the server sent on a raw connection.
#[derive(Default, Debug)]
struct Seen {
    goaway: Option<u32>,
    /// (stream, error code) of each RST_STREAM.
    rst: Vec<(u32, u32)>,
    /// Streams that got response HEADERS.
    headers: Vec<u32>,
    /// The first header block of each stream.
    blocks: HashMap<u32, Vec<u8>>,
    ping_acks: u64,
    settings_acks: u64,
    closed: bool,
}

impl Seen {
    fn rst_with(&self, code: u32) -> usize {
        self.rst.iter().filter(|(_, c)| *c == code).count()
    }
}

struct Raw {
    w: OwnedWriteHalf,
    /// Our end of the connection (the peer in weir's logs).
    local: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Raw {
    /// Connects, sends the preface and SETTINGS (large windows, so that
    /// responses never wait for us), acknowledges the server's SETTINGS and
    /// reads everything else in the background.
    async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).unwrap();
        let local = s.local_addr().unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut buf = PREFACE.to_vec();
        let mut settings = Vec::new();
        settings.extend_from_slice(&4u16.to_be_bytes()); // INITIAL_WINDOW_SIZE
        settings.extend_from_slice(&(1u32 << 30).to_be_bytes());
        frame(&mut buf, SETTINGS, 0, 0, &settings);
        frame(&mut buf, WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
        w.write_all(&buf).await.expect("preface");
        let (ty, flags, _, _) = read_frame(&mut r).await.expect("server SETTINGS");
        assert_eq!((ty, flags & ACK), (SETTINGS, 0), "first frame is SETTINGS");
        let mut ack = Vec::new();
        frame(&mut ack, SETTINGS, ACK, 0, &[]);
        w.write_all(&ack).await.expect("SETTINGS ACK");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((ty, flags, stream, payload)) = read_frame(&mut r).await else {
                    s2.lock().unwrap().closed = true;
                    return;
                };
                let mut s = s2.lock().unwrap();
                let code = |off: usize| {
                    payload
                        .get(off..off + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                match ty {
                    GOAWAY => s.goaway = Some(code(4)),
                    RST_STREAM => s.rst.push((stream, code(0))),
                    HEADERS => {
                        s.headers.push(stream);
                        s.blocks.entry(stream).or_insert(payload);
                    }
                    PING if flags & ACK != 0 => s.ping_acks += 1,
                    SETTINGS if flags & ACK != 0 => s.settings_acks += 1,
                    _ => {}
                }
            }
        });
        Raw { w, local, seen }
    }

    /// Writes `buf`; false once the server has closed the connection.
    async fn send(&mut self, buf: &[u8]) -> bool {
        self.w.write_all(buf).await.is_ok()
    }

    async fn wait(&self, secs: u64, what: &str, cond: impl Fn(&Seen) -> bool) {
        let seen = self.seen.clone();
        wait_for(secs, what, move || cond(&seen.lock().unwrap())).await;
    }

    /// Waits (10 s at most) for the server to close; its GOAWAY code.
    async fn cut(&self) -> Option<u32> {
        self.wait(10, "connection cut", |s| s.closed).await;
        self.seen.lock().unwrap().goaway
    }

    /// Writes `batch` up to `times` times, stopping once a write fails;
    /// returns how many were written.
    async fn flood(&mut self, batch: &[u8], times: u64) -> u64 {
        let mut sent = 0;
        while sent < times && self.send(batch).await {
            sent += 1;
        }
        sent
    }
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut h = [0u8; 9];
    r.read_exact(&mut h).await?;
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await?;
    Ok((h[3], h[4], stream, payload))
}

// ------------------------------------------------------------ attacks

/// (a) Rapid reset (CVE-2023-44487): HEADERS + RST_STREAM(CANCEL) pairs in a
/// tight loop. Streams reset before weir took them up count against
/// `tune.h2.fe.max-pending-resets` (20): the connection gets GOAWAY
/// ENHANCE_YOUR_CALM long before the 20k pairs are through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rapid_reset_gets_goaway_enhance_your_calm() {
    let b = Bench::start("", "").await;
    let t = Instant::now();
    let mut raw = Raw::connect(b.addr).await;
    let mut sent = 0u32;
    for batch in 0..20u32 {
        let mut buf = Vec::new();
        for i in 0..1000u32 {
            let id = 2 * (batch * 1000 + i) + 1;
            get(&mut buf, id);
            frame(&mut buf, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
        }
        if !raw.send(&buf).await {
            break;
        }
        sent += 1000;
    }
    let goaway = raw.cut().await;
    eprintln!(
        "rapid reset: {sent} pairs written, cut after {:?}",
        t.elapsed()
    );
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "GOAWAY code");
    let line = logged("client connection closed: too many resets", raw.local).await;
    assert!(
        line.contains("WARN") && line.contains("ENHANCE_YOUR_CALM"),
        "{line}"
    );
    wait_cuts(b.addr, "enhance_your_calm", 1).await;
    b.finish("rapid reset").await;
}

/// (a') Ordinary cancellations (a call cancelled after weir took it up),
/// a few hundred on one connection, are not punished.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn modest_cancellations_are_not_punished() {
    let b = Bench::start("", "").await;
    let addr = b.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = || {
        http::Request::post(format!("http://{addr}/weir.echo.Echo/Unary"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    for _ in 0..300 {
        client = client.ready().await.expect("connection still usable");
        let (_resp, mut body) = client.send_request(req(), false).expect("stream opens");
        tokio::time::sleep(Duration::from_millis(2)).await;
        body.send_reset(h2::Reason::CANCEL);
    }
    // The same connection still serves a whole call.
    client = client.ready().await.expect("connection still usable");
    let (resp, mut body) = client.send_request(req(), false).unwrap();
    // An empty EchoRequest message.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let resp = within(10, resp)
        .await
        .expect("response on the same connection");
    assert_eq!(resp.status(), 200);
    assert!(!conn.is_finished(), "connection was not cut");
    b.good.finish("modest cancellations").await;
}

/// (b) CONTINUATION flood: HEADERS without END_HEADERS, then endless
/// CONTINUATION frames. h2 caps the frames of one header block and sends
/// GOAWAY ENHANCE_YOUR_CALM; memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuation_flood_is_cut() {
    let b = Bench::start("", "").await;
    let mut raw = Raw::connect(b.addr).await;
    let mut buf = Vec::new();
    frame(&mut buf, HEADERS, END_STREAM, 1, &get_block());
    assert!(raw.send(&buf).await);
    let chunk = vec![0u8; 16000];
    let mut one = Vec::new();
    frame(&mut one, CONTINUATION, 0, 1, &chunk);
    let batch: Vec<u8> = one.repeat(64);
    let mut sent = 0usize;
    // At most ~1 GiB; the server cuts long before.
    for _ in 0..1000 {
        if !raw.send(&batch).await || raw.seen.lock().unwrap().closed {
            break;
        }
        sent += 64;
    }
    let goaway = raw.cut().await;
    eprintln!("continuation flood: {sent} frames written before the cut, GOAWAY {goaway:?}");
    assert!(sent < 64_000, "cut before the end of the flood");
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "GOAWAY code");
    logged("client connection closed: too many resets", raw.local).await;
    b.finish("continuation flood").await;
}

/// (c) Streams opened at once beyond `tune.h2.max-concurrent-streams`
/// (here 50) are refused (REFUSED_STREAM) and count against
/// `tune.h2.fe.max-error-resets` (1024): 500 at once keep the connection
/// (the first 50 are answered); 10k at once get GOAWAY ENHANCE_YOUR_CALM
/// after 1024 refusals. The good client, on its own connection, is not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_beyond_max_concurrent_are_refused() {
    let b = Bench::start("    tune.h2.max-concurrent-streams 50\n", "").await;
    for (n, cut) in [(500u32, false), (10_000, true)] {
        let mut raw = Raw::connect(b.addr).await;
        let mut buf = Vec::new();
        for i in 0..n {
            get(&mut buf, 2 * i + 1);
        }
        let _ = raw.send(&buf).await;
        raw.wait(20, "every stream answered or the connection cut", |s| {
            s.closed || s.headers.len() + s.rst_with(REFUSED_STREAM) >= n as usize
        })
        .await;
        let s = raw.seen.lock().unwrap();
        eprintln!(
            "{n} streams: {} answered, {} refused, GOAWAY {:?}, closed {}",
            s.headers.len(),
            s.rst_with(REFUSED_STREAM),
            s.goaway,
            s.closed
        );
        assert!(s.rst_with(REFUSED_STREAM) > 0, "excess streams refused");
        if cut {
            assert_eq!(s.rst_with(REFUSED_STREAM), 1024, "refusals before the cut");
            assert_eq!(s.goaway, Some(ENHANCE_YOUR_CALM), "GOAWAY code");
        } else {
            assert!(s.headers.len() >= 50, "streams within the limit answered");
            assert!(s.goaway.is_none() && !s.closed, "connection kept");
        }
    }
    b.finish("10k streams").await;
}

/// A proxy with `tune.h2.max-header-list-size 16k`, and a raw connection
/// to it that has sent HEADERS (plus CONTINUATION) on stream 1 carrying
/// [`get_block`] and an `x-bomb` header of `bomb_kib` KiB, in frames of
/// at most `chunk` bytes of block, then `after`; and whether that write went
/// through.
async fn header_bomb(bomb_kib: usize, chunk: usize, after: &[u8]) -> (Bench, Raw, bool) {
    let b = Bench::start("    tune.h2.max-header-list-size 16k\n", "").await;
    let mut raw = Raw::connect(b.addr).await;
    let mut block = get_block();
    literal(&mut block, b"x-bomb", &vec![b'a'; bomb_kib << 10]);
    let mut buf = Vec::new();
    let chunks: Vec<&[u8]> = block.chunks(chunk).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let flags = if last { END_HEADERS } else { 0 };
        if i == 0 {
            frame(&mut buf, HEADERS, flags | END_STREAM, 1, c);
        } else {
            frame(&mut buf, CONTINUATION, flags, 1, c);
        }
    }
    buf.extend_from_slice(after);
    let sent = raw.send(&buf).await;
    (b, raw, sent)
}

/// (d) Header bomb: a header list over `tune.h2.max-header-list-size`
/// (here 16k) in one HEADERS frame: that stream gets a 431 response
/// without reaching a server; the next stream on the same connection is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_bomb_is_refused() {
    let mut next = Vec::new();
    get(&mut next, 3);
    let (b, raw, sent) = header_bomb(40, usize::MAX, &next).await;
    assert!(sent);
    raw.wait(10, "stream 3 answered", |s| {
        s.headers.contains(&3) || s.closed
    })
    .await;
    {
        let s = raw.seen.lock().unwrap();
        eprintln!("header bomb: {s:?}");
        assert!(!s.closed && s.goaway.is_none(), "connection kept");
        let block = s.blocks.get(&1).expect("stream 1 answered");
        assert!(is_status_431(block), "stream 1 answered 431: {block:?}");
        assert!(!is_status_431(&s.blocks[&3]), "stream 3 served");
    }
    b.finish("header bomb").await;
}

/// Whether an HPACK block starts with `:status: 431` (a literal with the
/// static name `:status`, plain or Huffman-coded).
fn is_status_431(block: &[u8]) -> bool {
    let [first, len, value @ ..] = block else {
        return false;
    };
    first & 0x0f == 8
        && first & 0x80 == 0
        && (*len == 3 && value.starts_with(b"431")
            || *len == 0x83 && value.starts_with(&[0x69, 0x90, 0xff]))
}

// ------------------------------------------------------------ header encoding

/// What an HPACK block uses, read representation by representation
/// (RFC 7541 section 6).
#[derive(Debug, Default)]
struct Hpack {
    /// Indexed fields or names that refer to the dynamic table (index > 61).
    dynamic_refs: usize,
    /// Literals with incremental indexing (they add a dynamic-table entry).
    inserts: usize,
    /// Huffman-coded string literals.
    huffman: usize,
    /// Raw string literals.
    raw: usize,
}

fn hpack_read_int(b: &[u8], at: &mut usize, prefix: u32) -> usize {
    let max = (1usize << prefix) - 1;
    let mut v = usize::from(b[*at]) & max;
    *at += 1;
    if v < max {
        return v;
    }
    let mut shift = 0;
    loop {
        let byte = b[*at];
        *at += 1;
        v += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return v;
        }
    }
}

fn hpack_summary(b: &[u8]) -> Hpack {
    let mut h = Hpack::default();
    let mut at = 0;
    let string = |at: &mut usize, h: &mut Hpack| {
        if b[*at] & 0x80 != 0 {
            h.huffman += 1;
        } else {
            h.raw += 1;
        }
        let len = hpack_read_int(b, at, 7);
        *at += len;
    };
    while at < b.len() {
        let first = b[at];
        let (prefix, insert) = match first {
            f if f & 0x80 != 0 => {
                if hpack_read_int(b, &mut at, 7) > 61 {
                    h.dynamic_refs += 1;
                }
                continue;
            }
            f if f & 0xc0 == 0x40 => (6, true),
            f if f & 0xe0 == 0x20 => {
                hpack_read_int(b, &mut at, 5);
                continue;
            }
            _ => (4, false),
        };
        h.inserts += usize::from(insert);
        let name = hpack_read_int(b, &mut at, prefix);
        if name == 0 {
            string(&mut at, &mut h);
        } else if name > 61 {
            h.dynamic_refs += 1;
        }
        string(&mut at, &mut h);
    }
    h
}

/// Sends `GET /` on each of `streams` and returns what the response
/// header blocks use.
async fn response_blocks(raw: &mut Raw, streams: &[u32]) -> Vec<Hpack> {
    for &stream in streams {
        let mut buf = Vec::new();
        get(&mut buf, stream);
        assert!(raw.send(&buf).await, "request sent");
        raw.wait(10, "answered", move |s| {
            s.headers.contains(&stream) || s.closed
        })
        .await;
    }
    let s = raw.seen.lock().unwrap();
    assert!(!s.closed, "connection kept");
    streams
        .iter()
        .map(|id| hpack_summary(&s.blocks[id]))
        .collect()
}

fn assert_stateless(blocks: &[Hpack]) {
    for h in blocks {
        assert_eq!((h.inserts, h.dynamic_refs, h.huffman), (0, 0, 0), "{h:?}");
        assert!(h.raw > 0, "literals are raw: {h:?}");
    }
}

/// `tune.h2.hpack-encoding`: by default (`stateless`, HAProxy's encoder)
/// every header block weir sends to a client uses only the static table
/// and raw literals, response after response; with `indexed` (h2's
/// encoder) the first response adds entries to the dynamic table, Huffman
/// coded, and the next one refers to them. A reload back to the default
/// makes new connections stateless while an open one keeps indexing. A
/// tonic client calls through weir all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn response_header_blocks_follow_hpack_encoding() {
    for global in ["", "    tune.h2.hpack-encoding stateless\n"] {
        let b = Bench::start(global, "").await;
        let mut raw = Raw::connect(b.addr).await;
        let blocks = response_blocks(&mut raw, &[1, 3, 5]).await;
        eprintln!("{global:?}: {blocks:?}");
        assert_stateless(&blocks);
        b.finish(&format!("hpack encoding {global:?}")).await;
    }

    let mut b = Bench::start("    tune.h2.hpack-encoding indexed\n", "").await;
    let mut old = Raw::connect(b.addr).await;
    let blocks = response_blocks(&mut old, &[1, 3, 5]).await;
    eprintln!("indexed: {blocks:?}");
    assert!(blocks[0].inserts > 0, "first response adds entries");
    assert!(blocks[0].huffman > 0, "h2 Huffman-codes literals");
    assert!(blocks[1].dynamic_refs > 0, "second response refers to them");
    assert!(blocks[2].dynamic_refs > 0, "third response refers to them");

    // `bind 127.0.0.1:0` again: a new port, while open connections stay.
    let text = config_text("", "", b._server.addr);
    let cfg = weir::config::parse_str("test.cfg", &text).expect("parses");
    b._proxy.reload(cfg.config).await.expect("reload");
    let mut new = Raw::connect(fe_addr(&b._proxy)).await;
    let blocks = response_blocks(&mut new, &[1, 3]).await;
    eprintln!("after reload, new connection: {blocks:?}");
    assert_stateless(&blocks);
    let blocks = response_blocks(&mut old, &[7]).await;
    eprintln!("after reload, open connection: {blocks:?}");
    assert!(
        blocks[0].dynamic_refs > 0,
        "the open connection keeps indexing"
    );
    b.finish("hpack encoding reloaded").await;
}

/// (d') A header bomb spread over CONTINUATION frames (100 KiB with a 16k
/// limit): more frames than the limit can need, so the connection gets
/// GOAWAY ENHANCE_YOUR_CALM.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_bomb_over_continuations_is_cut() {
    let (b, raw, _) = header_bomb(100, 8000, &[]).await;
    let goaway = raw.cut().await;
    eprintln!("header bomb over CONTINUATION: GOAWAY {goaway:?}");
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "GOAWAY code");
    b.finish("header bomb over CONTINUATION").await;
}

/// A slowloris: `bytes` dribbled by [`dribble`] to a proxy with `defaults`
/// must be cut before they are all written (the `unfinished` part was not
/// complete), and within `bound_secs` (at `timeout`). Returns the bench,
/// for the caller to finish the good client.
async fn slowloris(
    defaults: &str,
    bytes: &[u8],
    what: &str,
    unfinished: &str,
    bound_secs: u64,
    timeout: &str,
) -> Bench {
    let b = Bench::start("", defaults).await;
    let t = Instant::now();
    let closed = dribble(b.addr, bytes).await;
    let took = t.elapsed();
    eprintln!("{what}: closed after {took:?}");
    assert!(closed, "connection closed before the {unfinished} complete");
    assert!(
        took < Duration::from_secs(bound_secs),
        "closed at {timeout}: {took:?}"
    );
    b
}

/// (e) Slowloris on HTTP/1.1: request headers dribbled one byte per 100 ms
/// get the connection closed at `timeout http-request` (500 ms here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_http1_is_closed_at_timeout_http_request() {
    let b = slowloris(
        "",
        b"GET / HTTP/1.1\r\nHost: weir\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        "slowloris http/1.1",
        "headers were",
        3,
        "timeout http-request",
    )
    .await;
    wait_cuts(b.addr, "request_header_timeout", 1).await;
    b.good.finish("slowloris").await;
}

/// (e') The same with the HTTP/2 preface dribbled: weir cannot tell the
/// protocol yet, so `timeout http-request` does not apply; the connection
/// is closed as idle at `timeout client` (1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_h2_preface_is_closed_at_timeout_client() {
    let b = slowloris(
        "    timeout client 1s\n",
        &PREFACE.repeat(3),
        "slowloris h2 preface",
        "preface was",
        4,
        "timeout client",
    )
    .await;
    b.good.finish("slowloris preface").await;
}

/// Writes `bytes` one per 100 ms; true if the server closed the connection
/// before all were written.
async fn dribble(addr: SocketAddr, bytes: &[u8]) -> bool {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let eof = Arc::new(AtomicBool::new(false));
    let e2 = eof.clone();
    tokio::spawn(async move {
        let mut sink = [0u8; 1024];
        while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
        e2.store(true, Ordering::Relaxed);
    });
    for b in bytes {
        if eof.load(Ordering::Relaxed) || w.write_all(&[*b]).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The frontend's `weir_frontend_connections_cut_total` for `reason`,
/// scraped from `/metrics` on the frontend itself (HTTP/1.1).
async fn cuts_metric(addr: SocketAddr, reason: &str) -> u64 {
    use http_body_util::{BodyExt, Empty};
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "weir")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within(10, tx.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), 200);
    let body = within(10, resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let name = format!("weir_frontend_connections_cut_total{{proxy=\"fe\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}")) as u64
}

/// Waits (5 s at most) for [`cuts_metric`] to reach `n`.
async fn wait_cuts(addr: SocketAddr, reason: &str, n: u64) {
    let t = Instant::now();
    loop {
        let got = cuts_metric(addr, reason).await;
        if got >= n {
            assert_eq!(got, n, "{reason}: cuts counted");
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{reason}: {got} cuts counted, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves `/metrics` on frontend `fe` (see [`cuts_metric`]), in every
/// [`setup`].
const EXPORTER: &str = "    http-request use-service prometheus-exporter if { path /metrics }\n";

/// A control-frame flood against a proxy with `global`: 100 batches of
/// 1000 frames (`one`), then a request on stream 1001. With `cut` (the
/// log line and the metric's reason), the connection must get GOAWAY
/// ENHANCE_YOUR_CALM long before the flood is through, with that log line
/// and the metric counted; without, every frame is answered (`acks`) and
/// the request is served on the same connection. Either way the good client sees no
/// failure. `opening` is sent first (e.g. HEADERS opening a stream).
async fn control_flood(
    what: &str,
    global: &str,
    opening: &[u8],
    one: &[u8],
    cut: Option<(&str, &str)>,
    acks: fn(&Seen) -> u64,
) {
    let b = Bench::start(global, "").await;
    let before = cuts_metric(b.addr, cut.map_or("control_frame_flood", |c| c.1)).await;
    let t = Instant::now();
    let mut raw = Raw::connect(b.addr).await;
    assert!(raw.send(opening).await);
    let sent = raw.flood(&one.repeat(1000), 100).await * 1000;
    let mut buf = Vec::new();
    get(&mut buf, 1001);
    let _ = raw.send(&buf).await;
    raw.wait(
        20,
        "request after the flood answered, or the connection cut",
        |s| s.closed || s.headers.contains(&1001),
    )
    .await;
    {
        let s = raw.seen.lock().unwrap();
        eprintln!(
            "{what}: {sent} sent, {} acked, GOAWAY {:?}, closed {}, after {:?}",
            acks(&s),
            s.goaway,
            s.closed,
            t.elapsed()
        );
        if cut.is_none() {
            assert!(!s.closed && s.goaway.is_none(), "{what}: connection kept");
            assert!(s.headers.contains(&1001), "{what}: request served");
        }
    }
    if let Some((log, reason)) = cut {
        let goaway = raw.cut().await;
        let line = logged(log, raw.local).await;
        assert!(line.contains("WARN"), "{line}");
        let after = cuts_metric(b.addr, reason).await;
        assert_eq!(after, before + 1, "{what}: metric counts the cut");
        let s = raw.seen.lock().unwrap();
        // Cut at the limit: the answers are far fewer than the frames.
        assert!(
            acks(&s) < 30_000,
            "{what}: {} answered before the cut",
            acks(&s)
        );
        assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "{what}: GOAWAY code");
    } else {
        assert_eq!(
            cuts_metric(b.addr, "control_frame_flood").await,
            before,
            "{what}: nothing counted"
        );
    }
    b.finish(what).await;
}

const NO_CONTROL_LIMIT: &str = "    tune.h2.fe.max-control-frames-per-sec 0\n";

fn one(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame(&mut v, ty, flags, stream, payload);
    v
}

/// (f) PING flood without a limit (`tune.h2.fe.max-control-frames-per-sec
/// 0`): 100k PINGs. h2 answers each (one pending PONG at a time, so it
/// stops reading while it cannot write them): the connection survives and
/// memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ping_flood_is_bounded() {
    let ping = one(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    control_flood(
        "ping flood, no limit",
        NO_CONTROL_LIMIT,
        &[],
        &ping,
        None,
        |s| s.ping_acks,
    )
    .await;
}

/// (f') SETTINGS flood without a limit: 100k empty SETTINGS frames, each
/// acknowledged; the connection survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_flood_is_bounded() {
    let settings = one(SETTINGS, 0, 0, &[]);
    control_flood(
        "settings flood, no limit",
        NO_CONTROL_LIMIT,
        &[],
        &settings,
        None,
        |s| s.settings_acks,
    )
    .await;
}

/// (g) PING flood with the default limit (10000 control frames per second):
/// GOAWAY ENHANCE_YOUR_CALM, a warn line, the metric counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ping_flood_is_cut() {
    let ping = one(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    control_flood("ping flood", "", &[], &ping, FLOOD, |s| s.ping_acks).await;
}

/// (g') SETTINGS flood with the default limit: cut the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_flood_is_cut() {
    let settings = one(SETTINGS, 0, 0, &[]);
    control_flood("settings flood", "", &[], &settings, FLOOD, |s| {
        s.settings_acks
    })
    .await;
}

/// (g'') Empty DATA frames (no END_STREAM) on an open stream
/// (CVE-2019-9518): h2 itself allows 100 per connection, then GOAWAY
/// ENHANCE_YOUR_CALM (`too_many_data_frames` in its debug log), logged and
/// counted as h2's other abuse limits (`enhance_your_calm`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_data_flood_is_cut() {
    let mut open = Vec::new();
    frame(&mut open, HEADERS, END_HEADERS, 1, &get_block());
    let data = one(DATA, 0, 1, &[]);
    let cut = Some((
        "client connection closed: too many resets or abusive frames",
        "enhance_your_calm",
    ));
    control_flood("empty DATA flood", "", &open, &data, cut, |_| 0).await;
}

/// (g''') PRIORITY flood (CVE-2019-9513): counted like PING and SETTINGS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_flood_is_cut() {
    // Stream 3 depends on stream 1, weight 16.
    let prio = one(PRIORITY, 0, 3, &[0, 0, 0, 1, 15]);
    control_flood("priority flood", "", &[], &prio, FLOOD, |_| 0).await;
}

/// What a control-frame flood leaves: the log line and the metric's reason.
const FLOOD: Option<(&str, &str)> = Some((
    "client connection closed: control frame flood",
    "control_frame_flood",
));

/// A client that stays under the limit is never cut: 3 seconds of 5000
/// PINGs per second (limit 10000) on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pings_under_the_limit_are_answered() {
    let b = Bench::start("", "").await;
    let mut raw = Raw::connect(b.addr).await;
    let batch = one(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]).repeat(500);
    for _ in 0..30 {
        assert!(raw.send(&batch).await, "connection kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    raw.wait(10, "every PING answered", |s| {
        s.closed || s.ping_acks >= 15_000
    })
    .await;
    assert!(!raw.seen.lock().unwrap().closed, "connection kept");
    assert_eq!(cuts_metric(b.addr, "control_frame_flood").await, 0);
    b.finish("pings under the limit").await;
}
