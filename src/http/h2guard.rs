//! Control-frame flood limit for HTTP/2 client connections
//! (`tune.h2.fe.max-control-frames-per-sec`, docs/hardening.md).
//!
//! hyper/h2 answer every PING and SETTINGS a client sends: memory stays
//! bounded (one pending answer at a time), CPU does not. [`H2Guard`] wraps a
//! client connection's I/O below hyper and reads only the 9-byte HTTP/2
//! frame headers as the bytes stream by (payloads are skipped, never
//! scanned). It counts PING, SETTINGS, PRIORITY and empty DATA frames
//! without END_STREAM (the CVE-2019-9512/9513/9515/9518 classes); when more
//! than the limit arrive within one second it writes GOAWAY
//! (ENHANCE_YOUR_CALM, last stream = the highest client stream seen) if
//! weir's own output is at a frame boundary, and ends the connection with
//! an error (so the frames of that read are never handed to h2). After a
//! GOAWAY it first lingers (reads and discards, at most [`LINGER`] and
//! [`LINGER_BYTES`]) so that closing with unread input does not reset the
//! connection before the client has read the GOAWAY.
//!
//! The connection's protocol is not known when it is accepted (hyper-util
//! sniffs the preface): the guard matches the 24-byte client preface itself
//! and steps aside, for the life of the connection, on the first byte that
//! differs (HTTP/1.1).
//!
//! Cost: a few branches per frame header, no allocation, no clock read per
//! frame (the clock is read once every `limit` counted frames).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const END_STREAM: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One HTTP/2 frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    fn parse(h: &[u8; 9]) -> FrameHeader {
        FrameHeader {
            len: (u32::from(h[0]) << 16) | (u32::from(h[1]) << 8) | u32::from(h[2]),
            ty: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether this frame counts against the control-frame limit.
    #[inline]
    pub fn is_control(&self) -> bool {
        match self.ty {
            PING | SETTINGS | PRIORITY => true,
            DATA => self.len == 0 && self.flags & END_STREAM == 0,
            _ => false,
        }
    }
}

/// Follows frame boundaries in a byte stream fed in arbitrary pieces: the
/// bytes left of the current payload and a partly received header.
#[derive(Clone, Debug, Default)]
pub struct FrameScanner {
    skip: u32,
    hdr: [u8; 9],
    hdr_len: u8,
}

impl FrameScanner {
    /// Whether the bytes so far end exactly at a frame boundary.
    #[inline]
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && self.hdr_len == 0
    }

    /// Feeds `buf`, calling `on_header` for each complete frame header; stops
    /// early (returning false) when `on_header` returns false.
    #[inline]
    pub fn scan(&mut self, buf: &[u8], mut on_header: impl FnMut(FrameHeader) -> bool) -> bool {
        let mut i = 0;
        while i < buf.len() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(buf.len() - i);
                self.skip -= n as u32;
                i += n;
                continue;
            }
            let h = if self.hdr_len == 0 && buf.len() - i >= 9 {
                let mut h = [0u8; 9];
                h.copy_from_slice(&buf[i..i + 9]);
                i += 9;
                FrameHeader::parse(&h)
            } else {
                let have = usize::from(self.hdr_len);
                let n = (9 - have).min(buf.len() - i);
                self.hdr[have..have + n].copy_from_slice(&buf[i..i + n]);
                self.hdr_len += n as u8;
                i += n;
                if self.hdr_len < 9 {
                    break;
                }
                self.hdr_len = 0;
                FrameHeader::parse(&self.hdr)
            };
            self.skip = h.len;
            if !on_header(h) {
                return false;
            }
        }
        true
    }
}

/// What the inbound side is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Matching the preface; this many bytes matched so far.
    Preface(u8),
    /// HTTP/2: counting frames.
    Frames,
    /// Not HTTP/2, or no limit: bytes pass untouched.
    Off,
}

/// The inbound side of the guard: preface sniffing, frame counting and the
/// one-second windows.
#[derive(Debug)]
pub struct Inbound {
    mode: Mode,
    scan: FrameScanner,
    limit: u32,
    count: u32,
    window: Instant,
    /// The highest client-initiated stream seen (HEADERS).
    max_stream: u32,
}

impl Inbound {
    /// `limit`: control frames per second (0: none).
    pub fn new(limit: u32) -> Inbound {
        Inbound {
            mode: if limit == 0 {
                Mode::Off
            } else {
                Mode::Preface(0)
            },
            scan: FrameScanner::default(),
            limit,
            count: 0,
            window: Instant::now(),
            max_stream: 0,
        }
    }

    /// Whether the connection is (so far) HTTP/2 under a limit.
    pub fn active(&self) -> bool {
        self.mode != Mode::Off
    }

    pub fn max_stream(&self) -> u32 {
        self.max_stream
    }

    /// Feeds bytes read from the client; false once the limit is exceeded.
    pub fn feed(&mut self, mut buf: &[u8]) -> bool {
        if let Mode::Preface(matched) = self.mode {
            let m = usize::from(matched);
            let n = (PREFACE.len() - m).min(buf.len());
            if buf[..n] != PREFACE[m..m + n] {
                self.mode = Mode::Off;
                return true;
            }
            if m + n < PREFACE.len() {
                self.mode = Mode::Preface((m + n) as u8);
                return true;
            }
            self.mode = Mode::Frames;
            buf = &buf[n..];
        }
        if self.mode != Mode::Frames {
            return true;
        }
        let Inbound {
            scan,
            limit,
            count,
            window,
            max_stream,
            ..
        } = self;
        scan.scan(buf, |h| {
            if h.is_control() {
                *count += 1;
                if *count > *limit {
                    // One clock read per `limit` frames: over the limit
                    // only if they came within a second.
                    let now = Instant::now();
                    if now.duration_since(*window) < Duration::from_secs(1) {
                        return false;
                    }
                    *window = now;
                    *count = 0;
                }
            } else if h.ty == HEADERS && h.stream & 1 == 1 && h.stream > *max_stream {
                *max_stream = h.stream;
            }
            true
        })
    }
}

/// GOAWAY(last stream, ENHANCE_YOUR_CALM).
pub fn goaway_calm(last_stream: u32) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[2] = 8;
    f[3] = 0x7;
    f[9..13].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    f
}

/// A client connection's I/O with the control-frame limit (see the module
/// documentation). With limit 0 it only passes bytes through.
pub struct H2Guard<S, F> {
    io: S,
    inbound: Inbound,
    outbound: FrameScanner,
    cut: Cut,
    on_flood: Option<F>,
}

/// After a GOAWAY, how long and how much the guard keeps reading (and
/// discarding) what the client still sends before the connection is
/// dropped: closing a socket with unread input sends a TCP reset, which
/// can discard the GOAWAY before the client has read it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 << 20;

enum Cut {
    No,
    /// GOAWAY written and the write side shut: reading and discarding
    /// until EOF, [`LINGER`] or [`LINGER_BYTES`]; writes are discarded.
    Lingering {
        until: Pin<Box<tokio::time::Sleep>>,
        left: usize,
    },
    Done,
}

impl<S, F: FnOnce(bool)> H2Guard<S, F> {
    /// `on_flood` is called once, with whether the GOAWAY was written, when
    /// the connection is cut.
    pub fn new(io: S, limit: u32, on_flood: F) -> H2Guard<S, F> {
        H2Guard {
            io,
            inbound: Inbound::new(limit),
            outbound: FrameScanner::default(),
            cut: Cut::No,
            on_flood: Some(on_flood),
        }
    }
}

fn flood_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "control frame flood")
}

impl<S: AsyncRead + AsyncWrite + Unpin, F> H2Guard<S, F> {
    /// Writes the GOAWAY if weir's output is at a frame boundary and the
    /// socket takes it now (never waits); whether it was written whole.
    fn write_goaway(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.outbound.at_boundary() {
            return false;
        }
        let f = goaway_calm(self.inbound.max_stream());
        let mut done = 0;
        while done < f.len() {
            match Pin::new(&mut self.io).poll_write(cx, &f[done..]) {
                Poll::Ready(Ok(n)) if n > 0 => done += n,
                _ => return false,
            }
        }
        let _ = Pin::new(&mut self.io).poll_flush(cx);
        // FIN after the GOAWAY (for TLS, close_notify).
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        true
    }

    /// Reads and discards while lingering; ready (with the error that ends
    /// the connection) once done.
    fn poll_linger(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Error> {
        let before = buf.filled().len();
        loop {
            let Cut::Lingering { until, left } = &mut self.cut else {
                return Poll::Ready(flood_error());
            };
            if *left == 0 || until.as_mut().poll(cx).is_ready() {
                break;
            }
            match Pin::new(&mut self.io).poll_read(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if buf.filled().len() > before => {
                    *left = left.saturating_sub(buf.filled().len() - before);
                    buf.set_filled(before);
                }
                // EOF or an error: the client has seen the GOAWAY or left.
                Poll::Ready(_) => break,
            }
        }
        buf.set_filled(before);
        self.cut = Cut::Done;
        Poll::Ready(flood_error())
    }

    fn track_written(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize) {
        for b in bufs {
            if n == 0 {
                break;
            }
            let k = n.min(b.len());
            self.outbound.scan(&b[..k], |_| true);
            n -= k;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, F: FnOnce(bool) + Unpin> AsyncRead for H2Guard<S, F> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.cut {
            Cut::No => {}
            Cut::Lingering { .. } => return this.poll_linger(cx, buf).map(Err),
            Cut::Done => return Poll::Ready(Err(flood_error())),
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if !this.inbound.active() || !matches!(r, Poll::Ready(Ok(()))) {
            return r;
        }
        if this.inbound.feed(&buf.filled()[before..]) {
            return r;
        }
        // Over the limit: none of this read reaches h2.
        buf.set_filled(before);
        let goaway = this.write_goaway(cx);
        if let Some(f) = this.on_flood.take() {
            f(goaway);
        }
        if !goaway {
            this.cut = Cut::Done;
            return Poll::Ready(Err(flood_error()));
        }
        this.cut = Cut::Lingering {
            until: Box::pin(tokio::time::sleep(LINGER)),
            left: LINGER_BYTES,
        };
        this.poll_linger(cx, buf).map(Err)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, F: Unpin> AsyncWrite for H2Guard<S, F> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.cut {
            Cut::No => {}
            // What h2 still writes after the GOAWAY is dropped.
            Cut::Lingering { .. } => return Poll::Ready(Ok(buf.len())),
            Cut::Done => return Poll::Ready(Err(flood_error())),
        }
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if this.inbound.active() {
            if let Poll::Ready(Ok(n)) = r {
                this.outbound.scan(&buf[..n.min(buf.len())], |_| true);
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.cut {
            Cut::No => {}
            Cut::Lingering { .. } => return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
            Cut::Done => return Poll::Ready(Err(flood_error())),
        }
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if this.inbound.active() {
            if let Poll::Ready(Ok(n)) = r {
                this.track_written(bufs, n);
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.cut, Cut::No) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.cut, Cut::No) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(buf: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, len: usize) {
        buf.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
        buf.extend_from_slice(&stream.to_be_bytes());
        buf.extend_from_slice(&vec![0xAA; len]);
    }

    /// A mix of frames (some payloads look like frame headers).
    fn sample() -> (Vec<u8>, Vec<FrameHeader>) {
        let mut b = Vec::new();
        let mut hs = Vec::new();
        for (ty, flags, stream, len) in [
            (SETTINGS, 0, 0, 12),
            (HEADERS, 4, 1, 30),
            (DATA, 0, 1, 0),
            (PING, 0, 0, 8),
            (DATA, 1, 1, 100),
            (PRIORITY, 0, 3, 5),
            (SETTINGS, 1, 0, 0),
            (HEADERS, 5, 7, 9),
        ] {
            frame(&mut b, ty, flags, stream, len);
            hs.push(FrameHeader {
                len: len as u32,
                ty,
                flags,
                stream,
            });
        }
        (b, hs)
    }

    fn headers_of(pieces: &[&[u8]]) -> (Vec<FrameHeader>, bool) {
        let mut s = FrameScanner::default();
        let mut seen = Vec::new();
        for p in pieces {
            s.scan(p, |h| {
                seen.push(h);
                true
            });
        }
        (seen, s.at_boundary())
    }

    #[test]
    fn headers_split_at_every_offset() {
        let (b, want) = sample();
        for cut in 0..=b.len() {
            let (seen, end) = headers_of(&[&b[..cut], &b[cut..]]);
            assert_eq!(seen, want, "split at {cut}");
            assert!(end);
        }
        // One byte at a time.
        let ones: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(headers_of(&ones).0, want);
    }

    #[test]
    fn boundary_tracking() {
        let mut b = Vec::new();
        frame(&mut b, DATA, 0, 1, 20);
        let mut s = FrameScanner::default();
        s.scan(&b[..5], |_| true);
        assert!(!s.at_boundary());
        s.scan(&b[5..12], |_| true);
        assert!(!s.at_boundary());
        s.scan(&b[12..], |_| true);
        assert!(s.at_boundary());
    }

    fn pings(n: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..n {
            frame(&mut b, PING, 0, 0, 8);
        }
        b
    }

    #[test]
    fn preface_split_then_counting() {
        let mut all = PREFACE.to_vec();
        all.extend(pings(10));
        for cut in 0..=all.len() {
            let mut g = Inbound::new(9);
            // The 10th PING's header ends at byte 24 + 9 * 17 + 9.
            let first = g.feed(&all[..cut]);
            assert_eq!(first, cut < 24 + 9 * 17 + 9, "split at {cut}");
            assert!(g.active());
            if first {
                assert!(!g.feed(&all[cut..]), "10 PINGs at once exceed 9/s");
            }
        }
        let mut g = Inbound::new(10);
        assert!(g.feed(&all));
        assert!(g.active());
    }

    #[test]
    fn http1_passes_through() {
        let mut g = Inbound::new(1);
        assert!(g.feed(b"PRI * HTTP/1.1\r\n"));
        assert!(!g.active());
        // Anything after, even frames, is not looked at.
        assert!(g.feed(&pings(100)));
        let mut g = Inbound::new(1);
        assert!(g.feed(b"G"));
        assert!(!g.active());
    }

    #[test]
    fn zero_disables() {
        let mut g = Inbound::new(0);
        assert!(!g.active());
        let mut all = PREFACE.to_vec();
        all.extend(pings(1000));
        assert!(g.feed(&all));
    }

    #[test]
    fn what_counts() {
        let (b, _) = sample();
        let mut g = Inbound::new(1000);
        g.feed(PREFACE);
        g.feed(&b);
        // SETTINGS, empty DATA, PING, PRIORITY, SETTINGS ACK.
        assert_eq!(g.count, 5);
        assert_eq!(g.max_stream(), 7);
    }

    #[test]
    fn slow_frames_never_trip() {
        let mut g = Inbound::new(5);
        g.feed(PREFACE);
        g.window = Instant::now() - Duration::from_secs(2);
        // The 6th frame finds the window older than a second: a new one.
        assert!(g.feed(&pings(6)));
        assert_eq!(g.count, 0);
        assert!(g.feed(&pings(5)));
        assert!(!g.feed(&pings(1)));
    }

    #[test]
    fn goaway_bytes() {
        let f = goaway_calm(5);
        let mut s = FrameScanner::default();
        let mut h = None;
        s.scan(&f, |x| {
            h = Some(x);
            true
        });
        assert_eq!(
            h,
            Some(FrameHeader {
                len: 8,
                ty: 7,
                flags: 0,
                stream: 0
            })
        );
        assert_eq!(&f[9..], &[0, 0, 0, 5, 0, 0, 0, 0xb]);
        assert!(s.at_boundary());
    }

    proptest! {
        #[test]
        fn any_split_sees_the_same_headers(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let (b, want) = sample();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(b.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&b[at..c]);
                at = c;
            }
            pieces.push(&b[at..]);
            let (seen, end) = headers_of(&pieces);
            prop_assert_eq!(seen, want);
            prop_assert!(end);
        }
    }
}
