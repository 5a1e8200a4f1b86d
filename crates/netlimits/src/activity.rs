//! The connection's two clocks, watched by one timer per connection rather than one
//! per request:
//!
//! - **Idle timeout**, as the ALB defines it: a connection on which no byte has moved
//!   in either direction for the idle timeout is closed. A socket wrapper (`Tracked`)
//!   stamps every read and write.
//! - **Header read deadline**: while hyper waits for a request head it holds a deadline
//!   (`head_timer::HeadTimer` records it here). hyper's own tokio timer would register and
//!   cancel a timer-wheel entry on every request; here arming it is one atomic store.
//!
//! `Activity::expired` is the watchdog beside the connection: it sleeps until the
//! earlier of the two deadlines and reports which one passed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// No header read deadline is armed.
const UNARMED: u64 = u64::MAX;

/// When bytes last moved, and the header read deadline if one is armed, as
/// milliseconds since `origin`.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    head_deadline_ms: AtomicU64,
    /// The connection waits on something with a timeout of its own (a proxied request
    /// on its target): not idle meanwhile.
    waiting: AtomicBool,
}

/// Which limit `Activity::expired` found passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing moved for the idle timeout.
    Idle,
    /// A request head was not complete by its deadline.
    Header,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_deadline_ms: AtomicU64::new(UNARMED),
            waiting: AtomicBool::new(false),
        })
    }

    /// Milliseconds since `origin`, now.
    pub(crate) fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// `at` as milliseconds since `origin`, rounded up (a deadline never comes early).
    pub(crate) fn ms_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    fn touch(&self) {
        self.last_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.at(self.last_ms.load(Ordering::Relaxed))
    }

    /// Starts or ends a wait that is not idleness; ending one counts as activity, so the
    /// idle timeout runs from there.
    pub(crate) fn set_waiting(&self, on: bool) {
        self.waiting.store(on, Ordering::Relaxed);
        if !on {
            self.touch();
        }
    }

    /// Arms the header read deadline (milliseconds since `origin`).
    pub(crate) fn arm_head(&self, deadline_ms: u64) {
        self.head_deadline_ms.store(deadline_ms, Ordering::Relaxed);
    }

    /// Disarms the header read deadline if it is still `deadline_ms`.
    pub(crate) fn disarm_head(&self, deadline_ms: u64) {
        let _ = self.head_deadline_ms.compare_exchange(
            deadline_ms,
            UNARMED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Completes once nothing has moved for `idle`, or once an armed header read
    /// deadline has passed (only with `header`: the longest deadline a head can get).
    ///
    /// With no deadline armed it still wakes within `header`, because a deadline armed
    /// meanwhile is at least `header` away: one wake per `header` at most, however many
    /// requests the connection serves.
    pub async fn expired(&self, idle: Duration, header: Option<Duration>) -> Expiry {
        let sleep = tokio::time::sleep_until(self.last() + idle);
        let mut sleep = std::pin::pin!(sleep);
        loop {
            let now = Instant::now();
            let mut idle_at = self.last() + idle;
            if self.waiting.load(Ordering::Relaxed) {
                // Not idle while waiting: look again one idle period from now.
                idle_at = idle_at.max(now + idle);
            }
            if now >= idle_at {
                return Expiry::Idle;
            }
            let mut wake = idle_at;
            if let Some(header) = header {
                let head_at = match self.head_deadline_ms.load(Ordering::Relaxed) {
                    UNARMED => now + header,
                    ms => self.at(ms),
                };
                if now >= head_at {
                    return Expiry::Header;
                }
                wake = wake.min(head_at);
            }
            sleep.as_mut().reset(wake);
            sleep.as_mut().await;
        }
    }
}

/// A stream that records activity on every successful read or write.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Tracked<S> {
        activity.touch();
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_not_idleness_and_the_idle_time_runs_from_its_end() {
        let activity = Activity::new();
        let idle = Duration::from_millis(150);
        let start = Instant::now();
        activity.set_waiting(true);
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(idle, None).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!watch.is_finished(), "cut while waiting");
        activity.set_waiting(false);
        assert_eq!(watch.await.unwrap(), Expiry::Idle);
        // The wait ended at 500 ms; nothing moved after it. The watchdog looks again
        // one idle period after its last look while waiting, so it ends within two.
        let ended = start.elapsed();
        assert!(
            ended >= Duration::from_millis(650) && ended <= Duration::from_millis(800),
            "{ended:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_push_the_idle_deadline_back() {
        let (a, mut b) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut t = Tracked::new(a, activity.clone());
        let idle = Duration::from_millis(150);
        let start = Instant::now();
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(idle, None).await }
        });
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            b.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            t.read_exact(&mut one).await.unwrap();
        }
        assert_eq!(watch.await.unwrap(), Expiry::Idle);
        // Four reads 60 ms apart kept it alive past 240 ms; it ends 150 ms after the last.
        assert_eq!(start.elapsed(), Duration::from_millis(390));
    }
}
