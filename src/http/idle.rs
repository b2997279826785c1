//! Inactivity timers for calls: `timeout server` fires only when nothing has
//! moved in either direction for the whole period, so a long-lived stream
//! that keeps moving data is never cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Last time anything moved on a call, shared by both directions.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last activity.
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Self::since(Instant::now())
    }

    /// Activity whose first moment was `start` (a time the caller has read
    /// already).
    pub fn since(start: Instant) -> Arc<Self> {
        Arc::new(Activity {
            start,
            last_ms: AtomicU64::new(0),
        })
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Fires once `timeout` has passed since the last activity.
pub struct IdleTimer {
    pub activity: Arc<Activity>,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    pub fn new(activity: Arc<Activity>, timeout: Duration) -> Self {
        let sleep = Box::pin(tokio::time::sleep_until(activity.last() + timeout));
        IdleTimer {
            activity,
            timeout,
            sleep,
        }
    }

    /// Ready when the call has been idle for the whole timeout; re-arms
    /// itself while activity keeps pushing the deadline back.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.activity.last() + self.timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Waits for `fut`, failing with `None` if the call goes idle first.
    pub async fn run<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            self.poll_expired(cx).map(|_| None)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_deadline_back() {
        let act = Activity::new();
        let mut t = IdleTimer::new(act.clone(), Duration::from_secs(30));
        let toucher = {
            let act = act.clone();
            tokio::spawn(async move {
                // A message every 10 s for 2 hours.
                for _ in 0..720 {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    act.touch();
                }
            })
        };
        let start = Instant::now();
        let r = t.run(std::future::pending::<()>()).await;
        assert!(r.is_none());
        let lived = start.elapsed();
        // Lived the 2 hours of activity, then 30 s of silence.
        assert!(lived >= Duration::from_secs(7200 + 30), "{lived:?}");
        assert!(lived <= Duration::from_secs(7200 + 31), "{lived:?}");
        toucher.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn silence_expires_after_timeout() {
        let act = Activity::new();
        let mut t = IdleTimer::new(act, Duration::from_secs(5));
        let start = Instant::now();
        assert!(t.run(std::future::pending::<()>()).await.is_none());
        assert_eq!(start.elapsed().as_secs(), 5);
    }
}
