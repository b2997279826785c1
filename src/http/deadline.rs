//! gRPC deadlines: the `grpc-timeout` request header read, the call's absolute
//! deadline kept as one timer, and the reduced header sent upstream.
//!
//! A call's budget starts when weir receives the request headers. The same
//! [`Deadline`] (one `tokio::time::Sleep`) covers the backend queue, the
//! connect, the wait for response headers and, once moved into the response
//! body, the streaming of the response. Calls without `grpc-timeout` have no
//! `Deadline` and pay for no timer. See docs/grpc-semantics.md.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::{Instant, Sleep};

use crate::error::{ErrorKind, ProxyError};

pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The gRPC spec's limit on `TimeoutValue`: at most 8 ASCII digits.
const MAX_VALUE: u64 = 99_999_999;

/// Units from the largest to the smallest, in nanoseconds.
const UNITS: [(u8, u64); 6] = [
    (b'H', 3_600_000_000_000),
    (b'M', 60_000_000_000),
    (b'S', 1_000_000_000),
    (b'm', 1_000_000),
    (b'u', 1_000),
    (b'n', 1),
];

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by one of
/// `H M S m u n`. `None` for anything else.
pub fn parse(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let (_, ns) = UNITS.iter().find(|(u, _)| u == unit)?;
    // 99_999_999 H fits in u128 nanoseconds and in a Duration.
    let total = u128::from(n) * u128::from(*ns);
    Some(Duration::new(
        (total / 1_000_000_000) as u64,
        (total % 1_000_000_000) as u32,
    ))
}

/// Encodes `d` in the largest unit that represents it exactly within the
/// 8-digit limit (`3S`, `2998m`, `1500u`); when no unit is exact, in the
/// finest unit that fits, rounded up.
pub fn encode(d: Duration) -> HeaderValue {
    let ns = d.as_nanos();
    let exact = UNITS.iter().find(|(_, u)| {
        let u = u128::from(*u);
        ns % u == 0 && ns / u <= u128::from(MAX_VALUE)
    });
    let (unit, n) = match exact {
        Some((unit, u)) => (*unit, ns / u128::from(*u)),
        None => UNITS
            .iter()
            .rev()
            .map(|(unit, u)| (*unit, ns.div_ceil(u128::from(*u))))
            .find(|(_, n)| *n <= u128::from(MAX_VALUE))
            .unwrap_or((b'H', u128::from(MAX_VALUE))),
    };
    let mut s = n.to_string();
    s.push(unit as char);
    HeaderValue::from_str(&s).expect("digits and a unit letter")
}

/// What the server of a call is told: `remaining` rounded up to whole
/// milliseconds (so the server's deadline is never earlier than weir's and
/// weir is the one that answers), never more than the client's `budget`.
pub fn upstream_value(remaining: Duration, budget: Duration) -> HeaderValue {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    let rounded = Duration::from_millis(ms.min(u128::from(u64::MAX)) as u64);
    encode(rounded.min(budget))
}

/// The deadline of one call, as the plain values forwarding needs.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// What the client asked for.
    pub total: Duration,
    /// When it runs out.
    pub at: Instant,
}

impl Budget {
    /// Time left, zero once it ran out.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The `grpc-timeout` to send upstream now; `Err` when the budget ran out.
    pub fn upstream_header(&self) -> Result<HeaderValue, ProxyError> {
        let left = self.remaining();
        if left.is_zero() {
            return Err(self.error());
        }
        Ok(upstream_value(left, self.total))
    }

    /// `grpc-message` of a call that ran out of time in weir.
    pub fn message(&self) -> String {
        format!("deadline exceeded ({}ms) in weir", self.total.as_millis())
    }

    pub fn error(&self) -> ProxyError {
        ProxyError::new(ErrorKind::DeadlineExceeded, self.message())
    }
}

/// A call's deadline: its budget and the one timer that watches it.
pub struct Deadline {
    pub budget: Budget,
    sleep: Pin<Box<Sleep>>,
}

impl Deadline {
    /// The deadline of a gRPC call whose headers arrived at `received()`
    /// (read only when the call has a `grpc-timeout`): `None` without one,
    /// or when the value is malformed (then ignored, logged at debug level).
    pub fn from_headers(
        headers: &HeaderMap,
        received: impl FnOnce() -> Instant,
    ) -> Option<Deadline> {
        let v = headers.get(GRPC_TIMEOUT)?;
        let Some(total) = parse(v.as_bytes()) else {
            tracing::debug!(value = ?v, "ignoring malformed grpc-timeout");
            return None;
        };
        let at = received().checked_add(total)?;
        Some(Deadline {
            budget: Budget { total, at },
            sleep: Box::pin(tokio::time::sleep_until(at)),
        })
    }

    /// Ready once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    /// Whether the deadline has passed, decided as the first poll of
    /// [`Deadline::run`] would decide it (the timer is polled with a waker
    /// that does nothing; the next real poll registers the task's own).
    pub fn expired_now(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.poll_expired(&mut cx).is_ready()
    }

    /// Waits for `fut` unless the deadline passes first (checked first, so
    /// a result that arrives after the deadline loses). `fut` is dropped
    /// when the deadline wins.
    pub async fn run<F: Future>(&mut self, fut: F) -> Result<F::Output, ProxyError> {
        tokio::pin!(fut);
        std::future::poll_fn(|cx| {
            if self.poll_expired(cx).is_ready() {
                return Poll::Ready(Err(self.budget.error()));
            }
            fut.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

/// Removes a malformed `grpc-timeout` (weir ignored it, so the server sees
/// no deadline either) or replaces a valid one with `value`.
pub fn set_upstream(headers: &mut HeaderMap, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(GRPC_TIMEOUT, v);
        }
        None => {
            headers.remove(GRPC_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Duration> {
        parse(s.as_bytes())
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(p("3H"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(p("2M"), Some(Duration::from_secs(120)));
        assert_eq!(p("10S"), Some(Duration::from_secs(10)));
        assert_eq!(p("200m"), Some(Duration::from_millis(200)));
        assert_eq!(p("200000u"), Some(Duration::from_millis(200)));
        assert_eq!(p("1500n"), Some(Duration::from_nanos(1500)));
        assert_eq!(p("0m"), Some(Duration::ZERO));
        assert_eq!(p("00000001S"), Some(Duration::from_secs(1)));
        assert_eq!(p("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "m",
            "abc",
            "10",
            "10s",
            "10x",
            "123456789m",
            "-1S",
            "+1S",
            " 1S",
            "1S ",
            "1.5S",
            "1 S",
            "１S",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encodes_in_the_largest_exact_unit() {
        let e = |d: Duration| encode(d).to_str().unwrap().to_string();
        assert_eq!(e(Duration::from_millis(2998)), "2998m");
        assert_eq!(e(Duration::from_millis(3000)), "3S");
        assert_eq!(e(Duration::from_secs(120)), "2M");
        assert_eq!(e(Duration::from_secs(7200)), "2H");
        assert_eq!(e(Duration::from_micros(1500)), "1500u");
        assert_eq!(e(Duration::from_nanos(7)), "7n");
        // 30 h in ms is 9 digits: seconds.
        assert_eq!(e(Duration::from_secs(30 * 3600 + 1)), "108001S");
        // Not exact anywhere within 8 digits: finest unit that fits, up.
        assert_eq!(
            e(Duration::from_secs(30 * 3600) + Duration::from_millis(1)),
            "108001S"
        );
        assert_eq!(e(Duration::new(100, 1)), "100001m");
        // Every encoding parses back to at least the value, within 8 digits.
        for d in [
            Duration::from_nanos(99_999_999),
            Duration::from_nanos(100_000_001),
            Duration::new(12_345, 678_901_234),
            Duration::from_secs(99_999_999 * 3600),
        ] {
            let v = encode(d);
            assert!(v.len() <= 9, "{v:?}");
            assert!(parse(v.as_bytes()).unwrap() >= d, "{d:?} -> {v:?}");
        }
    }

    #[test]
    fn upstream_value_rounds_up_to_ms_within_the_budget() {
        let v = |rem: Duration, budget: Duration| {
            upstream_value(rem, budget).to_str().unwrap().to_string()
        };
        let budget = Duration::from_secs(3);
        assert_eq!(v(Duration::from_micros(2_997_400), budget), "2998m");
        assert_eq!(v(Duration::from_millis(2998), budget), "2998m");
        assert_eq!(v(budget, budget), "3S");
        // Never more than the client asked for.
        assert_eq!(
            v(Duration::from_micros(1400), Duration::from_micros(1500)),
            "1500u"
        );
        assert_eq!(v(Duration::from_nanos(1), budget), "1m");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_runs_out_and_wins_over_late_results() {
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("300m"));
        let start = Instant::now();
        let mut d = Deadline::from_headers(&h, || start).expect("valid");
        assert_eq!(d.budget.total, Duration::from_millis(300));
        assert_eq!(d.run(async { 7 }).await.unwrap(), 7);
        let e = d
            .run(tokio::time::sleep(Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
        assert_eq!(e.message, "deadline exceeded (300ms) in weir");
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        // Expired: even a ready future loses, and no header goes upstream.
        assert!(d.run(async { 7 }).await.is_err());
        assert!(d.budget.upstream_header().is_err());
    }

    /// `expired_now` (the queue's fast path checks it) decides as `run`
    /// does, and polling it leaves `run` working.
    #[tokio::test(start_paused = true)]
    async fn expired_now_agrees_with_run() {
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("300m"));
        let mut d = Deadline::from_headers(&h, Instant::now).expect("valid");
        assert!(!d.expired_now());
        tokio::time::advance(Duration::from_millis(299)).await;
        assert!(!d.expired_now());
        // The timer polled with a no-op waker still wakes `run`'s task.
        let e = d
            .run(std::future::pending::<()>())
            .await
            .expect_err("the deadline passes");
        assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
        assert!(d.expired_now());

        // A budget already spent when the call arrives.
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("1m"));
        let arrived = Instant::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        let mut late = Deadline::from_headers(&h, || arrived).expect("valid");
        assert!(late.expired_now());
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_header_is_the_remaining_time() {
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("3S"));
        let d = Deadline::from_headers(&h, Instant::now).expect("valid");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(d.budget.upstream_header().unwrap(), "2998m");
    }

    #[test]
    fn malformed_or_missing_header_is_no_deadline() {
        let now = Instant::now();
        let mut h = HeaderMap::new();
        assert!(Deadline::from_headers(&h, || now).is_none());
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("abc"));
        assert!(Deadline::from_headers(&h, || now).is_none());
    }
}
