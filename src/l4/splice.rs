//! Zero-copy forwarding for `mode tcp` on Linux: `option splice-request`,
//! `option splice-response` and `option splice-auto`.
//!
//! With splice a direction's bytes go socket → pipe → socket inside the
//! kernel (`splice(2)` twice), never through a user-space buffer. The cost
//! per transfer is the same two system calls as `read` + `write`, so splice
//! pays off when transfers are large: the two copies of each byte are saved.
//!
//! - `Always` (splice-request / splice-response): the direction is spliced
//!   from its first byte.
//! - `Auto` (splice-auto): the direction starts with `read`/`write` through a
//!   `tune.bufsize` buffer (16 KiB by default) and switches to splice for
//!   good once one read fills the whole buffer, i.e. once the peer sends
//!   faster than we forward. Small request/response traffic never pays for
//!   a pipe.
//! - `Copy` (no splice option): `read`/`write` through that buffer only.
//!   Every cleartext `mode tcp` session on Linux runs here.
//!
//! The user-space buffer is allocated when the source has bytes and
//! released when it has none left, so an idle direction holds no buffer.
//!
//! Pipes come from a small per-thread pool (a pipe is only put back when it
//! is empty). At most `maxpipes` pipes are open at once ([`PipeBudget`]);
//! when none is left, or one cannot be made (descriptor limit), the
//! direction keeps copying through user space: splice is an optimisation,
//! never a reason to fail a session.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::http::idle::Activity;

/// How one direction of a tcp session moves its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `read` + `write` through a user-space buffer.
    Copy,
    /// splice from the first byte.
    Always,
    /// user space until one read fills the buffer, then splice.
    Auto,
}

/// The error that ended a direction, with the side it came from.
pub type DirError = (Side, io::Error);

/// What one direction shares with the rest of the proxy: counters it adds
/// to as bytes move (so a session cut by a timeout still counts them) and
/// the pipe budget.
pub struct Counters<'a> {
    /// Bytes read from the source.
    pub read: &'a AtomicU64,
    /// Of those, bytes that went through a pipe.
    pub spliced: &'a AtomicU64,
    pub pipes: &'a Arc<PipeBudget>,
    /// The user-space buffer of `Copy`/`Auto` directions (`tune.bufsize`).
    pub bufsize: usize,
}

/// `global maxpipes`: how many pipes may be open at once (each is two
/// descriptors), pooled ones included.
#[derive(Debug)]
pub struct PipeBudget {
    max: usize,
    /// `tune.pipesize`: asked of each new pipe (`F_SETPIPE_SZ`); `None`
    /// keeps the kernel's default (64 KiB).
    size: Option<usize>,
    open: AtomicUsize,
    /// Times a direction wanted a pipe and got none (budget or error).
    refused: AtomicU64,
}

impl PipeBudget {
    pub fn new(max: usize) -> Arc<PipeBudget> {
        Self::sized(max, None)
    }

    /// A budget whose pipes are resized to `size` bytes (`tune.pipesize`).
    pub fn sized(max: usize, size: Option<usize>) -> Arc<PipeBudget> {
        Arc::new(PipeBudget {
            max,
            size,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The default: HAProxy's `maxconn / 4` when `global maxconn` is set,
    /// else a quarter of the descriptor limit (two per pipe).
    pub fn default_max(global_maxconn: Option<u32>) -> usize {
        match global_maxconn {
            Some(n) => (n as usize / 4).max(1),
            None => {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
                let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
                    lim.rlim_cur
                } else {
                    1024
                };
                (usize::try_from(cur).unwrap_or(1 << 20).min(1 << 20) / 8).max(1)
            }
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// `tune.pipesize`, if set.
    pub fn size(&self) -> Option<usize> {
        self.size
    }

    /// Pipes open now (in use or pooled).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Directions that wanted a pipe and copied instead.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Asked of each splice call; the kernel moves at most a pipe's capacity
/// (64 KiB by default) at a time.
const SPLICE_LEN: usize = 1 << 20;
/// Empty pipes kept per thread for the next session.
const POOL_MAX: usize = 64;

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// The budget this pipe counts against until it is closed.
    budget: Arc<PipeBudget>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipe {
    fn new(budget: &Arc<PipeBudget>) -> io::Result<Pipe> {
        if budget.open.fetch_add(1, Ordering::Relaxed) >= budget.max {
            budget.open.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::other(format!(
                "maxpipes ({}) reached",
                budget.max
            )));
        }
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            budget.open.fetch_sub(1, Ordering::Relaxed);
            return Err(e);
        }
        // SAFETY: pipe2 succeeded, both descriptors are open and ours alone.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        if let Some(size) = budget.size {
            let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            // SAFETY: `w` is an open pipe descriptor; F_SETPIPE_SZ takes an int.
            if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size) } < 0 {
                // Above /proc/sys/fs/pipe-max-size without privilege: the
                // pipe keeps the default size and still works.
                tracing::debug!(size, error = %io::Error::last_os_error(), "tune.pipesize not applied");
            }
        }
        Ok(Pipe {
            r,
            w,
            budget: budget.clone(),
        })
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A pooled pipe of this budget, else a new one. Pooled pipes of another
/// budget (a configuration since replaced) are closed on the way.
fn take_pipe(budget: &Arc<PipeBudget>) -> io::Result<Pipe> {
    while let Some(p) = POOL.with(|p| p.borrow_mut().pop()) {
        if Arc::ptr_eq(&p.budget, budget) {
            return Ok(p);
        }
    }
    Pipe::new(budget)
}

/// Returns an empty pipe to this thread's pool; a pipe that still holds
/// bytes is closed instead.
fn give_pipe(pipe: Pipe, empty: bool) {
    if empty {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(pipe);
            }
        });
    }
}

/// Pipes waiting in this thread's pool.
#[cfg(test)]
fn pooled_pipes() -> usize {
    POOL.with(|p| p.borrow().len())
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (they
    // are borrowed from live sockets and pipes); null offsets are allowed
    // for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Copies `src` to `dst` until `src` ends, then shuts down `dst`'s write
/// half (the half-close is passed on). Marks `activity` on every transfer.
pub async fn one_way(
    src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    how: How,
    activity: &Activity,
    count: Counters<'_>,
) -> Result<(), DirError> {
    let s = src.as_ref();
    let splicing = match how {
        How::Always => true,
        How::Copy => copy_loop(s, &mut dst, activity, &count, false).await?,
        How::Auto => copy_loop(s, &mut dst, activity, &count, true).await?,
    };
    if splicing {
        match take_pipe(count.pipes) {
            Ok(pipe) => {
                let (empty, err) = splice_loop(s, dst.as_ref(), &pipe, activity, &count).await;
                give_pipe(pipe, empty);
                if let Some(e) = err {
                    return Err(e);
                }
            }
            Err(e) => {
                count.pipes.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "no pipe for splice, copying through user space");
                copy_loop(s, &mut dst, activity, &count, false).await?;
            }
        }
    }
    match dst.shutdown().await {
        // The peer already closed: nothing left to tell it.
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err((Side::Dst, e)),
        _ => Ok(()),
    }
}

/// `read` + `write` through a `tune.bufsize` buffer until `src` ends, or,
/// with `switch`, until one read fills the buffer: returns whether it
/// stopped to switch to splicing.
///
/// The buffer is allocated when `src` has bytes to read and released when
/// it has none left (as HAProxy does), so an idle direction holds no
/// buffer. It is never zeroed: reads go into its spare capacity.
async fn copy_loop(
    src: &TcpStream,
    dst: &mut WriteHalf<'_>,
    activity: &Activity,
    count: &Counters<'_>,
    switch: bool,
) -> Result<bool, DirError> {
    let size = count.bufsize.max(1);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        src.readable().await.map_err(|e| (Side::Src, e))?;
        if buf.capacity() == 0 {
            buf.reserve_exact(size);
        }
        let n = match read_some(src, &mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Drained: the direction is idle until the next bytes.
                buf = Vec::new();
                continue;
            }
            Err(e) => return Err((Side::Src, e)),
        };
        // A read that did not fill the buffer drained the socket (and
        // cleared its readiness): once written, the direction waits for
        // the next bytes, so it gives the buffer back first.
        let drained = n < buf.capacity();
        count.read.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
        dst.write_all(&buf).await.map_err(|e| (Side::Dst, e))?;
        activity.touch();
        if drained {
            buf = Vec::new();
        } else {
            buf.clear();
        }
        if switch && n >= size {
            return Ok(true);
        }
    }
}

/// Reads what `src` has into `buf`'s spare capacity, like
/// `TcpStream::try_read_buf`, except that a read returning fewer bytes than
/// there was room for also clears the socket's read readiness (as tokio's
/// own `poll_read` does): the socket was drained, so the next read waits
/// for epoll instead of costing a `recvfrom` that answers EAGAIN. That was
/// more than one read in three in `mode tcp` with small calls (5,527 of
/// 14,775, docs/benchmarks.md). A peer's FIN is not
/// lost: tokio keeps the read-closed flag when it clears readiness.
fn read_some(src: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let room = spare.len();
    let mut got = 0;
    let read = src.try_io(Interest::READABLE, || {
        let n = socket2::SockRef::from(src).recv(spare)?;
        got = n;
        if 0 < n && n < room {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    let n = match read {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
        Err(e) => return Err(e),
    };
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Splices until `src` ends. Returns whether the pipe was left empty and
/// the error that ended it, if any.
async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    activity: &Activity,
    count: &Counters<'_>,
) -> (bool, Option<(Side, io::Error)>) {
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    let (pr, pw) = (pipe.r.as_raw_fd(), pipe.w.as_raw_fd());
    loop {
        // Fill: only into an empty pipe, so EAGAIN means the socket is empty.
        let n = loop {
            if let Err(e) = src.readable().await {
                return (true, Some((Side::Src, e)));
            }
            match src.try_io(Interest::READABLE, || splice(sfd, pw, SPLICE_LEN)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return (true, Some((Side::Src, e))),
            }
        };
        if n == 0 {
            return (true, None);
        }
        count.read.fetch_add(n as u64, Ordering::Relaxed);
        count.spliced.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
        // Drain.
        let mut left = n;
        while left > 0 {
            if let Err(e) = dst.writable().await {
                return (false, Some((Side::Dst, e)));
            }
            match dst.try_io(Interest::WRITABLE, || splice(pr, dfd, left)) {
                Ok(0) => return (false, Some((Side::Dst, io::ErrorKind::WriteZero.into()))),
                Ok(m) => {
                    left -= m;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return (false, Some((Side::Dst, e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// client → [proxy_in | proxy_out] → server, one direction through
    /// `one_way` with `how`; returns what the server read and the result.
    /// Returns what the server read, the result, bytes read and bytes spliced.
    async fn through(how: How, data: Vec<u8>) -> (Vec<u8>, Result<(), DirError>, u64, u64) {
        through_with(how, data, &PipeBudget::new(16)).await
    }

    async fn through_with(
        how: How,
        data: Vec<u8>,
        pipes: &Arc<PipeBudget>,
    ) -> (Vec<u8>, Result<(), DirError>, u64, u64) {
        let (mut client, mut proxy_in) = pair().await;
        let (mut proxy_out, mut server) = pair().await;
        let activity = Activity::new();
        let (read, spliced) = (AtomicU64::new(0), AtomicU64::new(0));
        let send = async move {
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
            client
        };
        let fwd = async {
            let (src, _) = proxy_in.split();
            let (_, dst) = proxy_out.split();
            let count = Counters {
                read: &read,
                spliced: &spliced,
                pipes,
                bufsize: BUF,
            };
            one_way(src, dst, how, &activity, count).await
        };
        let recv = async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            got
        };
        let (_, res, got) = tokio::join!(send, fwd, recv);
        (got, res, read.into_inner(), spliced.into_inner())
    }

    const BUF: usize = 16 * 1024;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[tokio::test]
    async fn every_mode_moves_the_bytes_unchanged_and_passes_the_half_close() {
        for how in [How::Copy, How::Always, How::Auto] {
            for n in [0, 1, 100, BUF, 3 * 1024 * 1024 + 17] {
                let data = pattern(n);
                let (got, res, read, spliced) = through(how, data.clone()).await;
                assert!(res.is_ok(), "{how:?} {n}: {:?}", res.err());
                assert_eq!(read, n as u64, "{how:?} {n}");
                assert!(got == data, "{how:?} {n}: bytes differ");
                match how {
                    How::Copy => assert_eq!(spliced, 0),
                    How::Always => assert_eq!(spliced, n as u64),
                    How::Auto => {}
                }
            }
        }
    }

    #[tokio::test]
    async fn auto_stays_in_user_space_for_small_writes_and_splices_bulk() {
        let (got, _, _, spliced) = through(How::Auto, pattern(200)).await;
        assert_eq!(got.len(), 200);
        assert_eq!(spliced, 0);
        let n = 4 * 1024 * 1024;
        let (got, _, _, spliced) = through(How::Auto, pattern(n)).await;
        assert_eq!(got.len(), n);
        assert!(spliced > (n / 2) as u64, "spliced {spliced}");
    }

    #[tokio::test]
    async fn pipes_are_reused_after_a_clean_end() {
        let _ = through(How::Always, pattern(1000)).await;
        let before = pooled_pipes();
        assert!(before >= 1);
        let _ = through(How::Always, pattern(1000)).await;
        assert_eq!(pooled_pipes(), before);
    }

    #[tokio::test]
    async fn without_a_pipe_left_the_bytes_are_copied() {
        let none = PipeBudget::new(0);
        let data = pattern(1 << 20);
        let (got, res, read, spliced) = through_with(How::Always, data.clone(), &none).await;
        assert!(res.is_ok());
        assert!(got == data);
        assert_eq!((read, spliced), (1 << 20, 0));
        assert_eq!((none.refused(), none.open()), (1, 0));
        // One allowed: it is made, used, pooled, and still counted as open.
        let one = PipeBudget::new(1);
        let (got, _, _, spliced) = through_with(How::Always, data.clone(), &one).await;
        assert!(got == data);
        assert_eq!(spliced, 1 << 20);
        assert_eq!((one.refused(), one.open()), (0, 1));
        // A new budget (a reload) does not use the old one's pooled pipe:
        // it is closed, and the old budget gets its slot back.
        let other = PipeBudget::new(0);
        let (got, _, _, spliced) = through_with(How::Always, data.clone(), &other).await;
        assert!(got == data);
        assert_eq!((spliced, other.refused()), (0, 1));
        assert_eq!(one.open(), 0);
    }

    /// The capacity the kernel gave a pipe.
    fn capacity(p: &Pipe) -> i32 {
        // SAFETY: `p.w` is an open pipe descriptor.
        unsafe { libc::fcntl(p.w.as_raw_fd(), libc::F_GETPIPE_SZ) }
    }

    #[test]
    fn tune_pipesize_resizes_new_pipes() {
        let plain = PipeBudget::new(4);
        assert_eq!(capacity(&Pipe::new(&plain).unwrap()), 64 * 1024);
        let big = PipeBudget::sized(4, Some(256 * 1024));
        assert_eq!(capacity(&Pipe::new(&big).unwrap()), 256 * 1024);
        // The kernel rounds up to a power-of-two number of pages.
        let odd = PipeBudget::sized(4, Some(100_000));
        assert_eq!(capacity(&Pipe::new(&odd).unwrap()), 128 * 1024);
    }

    #[tokio::test]
    async fn a_reset_destination_is_reported_as_the_destination_side() {
        let (mut client, mut proxy_in) = pair().await;
        let (mut proxy_out, server) = pair().await;
        // The server resets its side: SO_LINGER 0 then close.
        server.set_zero_linger().unwrap();
        drop(server);
        let activity = Activity::new();
        let (read, spliced) = (AtomicU64::new(0), AtomicU64::new(0));
        let (activity, read, spliced) = (&activity, &read, &spliced);
        let send = async move {
            // Keep writing until the proxy stops reading (bounded).
            let chunk = pattern(64 * 1024);
            for _ in 0..256 {
                if client.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        };
        let fwd = async move {
            let r = {
                let (src, _) = proxy_in.split();
                let (_, dst) = proxy_out.split();
                let pipes = &PipeBudget::new(16);
                let count = Counters {
                    read,
                    spliced,
                    pipes,
                    bufsize: BUF,
                };
                one_way(src, dst, How::Always, activity, count).await
            };
            drop(proxy_in);
            r
        };
        let (_, res) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            tokio::join!(send, fwd)
        })
        .await
        .expect("bounded");
        let (side, _) = res.expect_err("an error");
        assert_eq!(side, Side::Dst);
    }
}
