//! hyper's header read timeout without a timer-wheel entry per request.
//!
//! hyper arms its header read timer each time a connection starts waiting for a
//! request head, and drops it when the head is complete: with tokio's timer that is
//! a registration and a cancellation in the timer wheel (each under the wheel's lock)
//! for every request on a keep-alive connection. `HeadTimer` gives hyper the same
//! deadlines, but arming one only records it in the connection's [`Activity`]; the
//! connection's watchdog (`Activity::expired`), which already sleeps for the idle
//! timeout in the same task, wakes at the deadline and closes the connection.
//!
//! Only valid for a connection served together with its watchdog in one task, as
//! `crate::serve` does: a `HeadSleep` that is not yet due returns `Pending` without
//! registering a waker of its own, because the watchdog's wake polls it again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

use crate::activity::Activity;

/// The timer of one connection (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct HeadTimer {
    activity: Arc<Activity>,
}

impl HeadTimer {
    pub(crate) fn new(activity: Arc<Activity>) -> HeadTimer {
        HeadTimer { activity }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let deadline_ms = self
            .activity
            .ms_of(tokio::time::Instant::from_std(deadline));
        self.activity.arm_head(deadline_ms);
        Box::pin(HeadSleep {
            activity: self.activity.clone(),
            deadline_ms,
        })
    }

    /// tokio's clock, so that deadlines and the watchdog agree when a test pauses time.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Some(mut s) => {
                let ms = self
                    .activity
                    .ms_of(tokio::time::Instant::from_std(new_deadline));
                // Arming overwrites the deadline this sleep had armed: no disarm first.
                s.deadline_ms = ms;
                self.activity.arm_head(ms);
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One armed header read deadline; dropping it disarms the deadline.
#[derive(Debug)]
struct HeadSleep {
    activity: Arc<Activity>,
    deadline_ms: u64,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.activity.now_ms() >= self.deadline_ms {
            Poll::Ready(())
        } else {
            // The watchdog in this task wakes it at the deadline (module docs).
            Poll::Pending
        }
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.activity.disarm_head(self.deadline_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Expiry;

    const IDLE: Duration = Duration::from_secs(60);
    const HEADER: Duration = Duration::from_millis(300);

    /// Watches `activity` as `serve` does; asserts the watch ends on a header deadline
    /// and returns how long after the call it ended.
    async fn header_expiry_after(activity: &Activity) -> Duration {
        let start = tokio::time::Instant::now();
        assert_eq!(activity.expired(IDLE, Some(HEADER)).await, Expiry::Header);
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_armed_head_deadline_ends_the_watch_at_that_deadline() {
        let activity = Activity::new();
        let timer = HeadTimer::new(activity.clone());
        let _waiting = timer.sleep(HEADER);
        assert_eq!(header_expiry_after(&activity).await, HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_armed_while_none_was_is_still_kept_to_the_millisecond() {
        // The watchdog starts with nothing armed; a head wait starts 100 ms later.
        let activity = Activity::new();
        let timer = HeadTimer::new(activity.clone());
        let armer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let waiting = timer.sleep(HEADER);
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(waiting);
        });
        assert_eq!(
            header_expiry_after(&activity).await,
            Duration::from_millis(400)
        );
        armer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn heads_completed_in_time_disarm_their_deadlines() {
        // A keep-alive connection: every 200 ms the head arrives (its 300 ms deadline is
        // dropped, as hyper drops it) and the next wait starts. Only the last wait, which
        // no head ends, expires: 300 ms after it started at 2 s.
        let activity = Activity::new();
        let timer = HeadTimer::new(activity.clone());
        let armer = tokio::spawn(async move {
            let mut waiting = timer.sleep(HEADER);
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                drop(waiting);
                waiting = timer.sleep(HEADER);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(waiting);
        });
        assert_eq!(
            header_expiry_after(&activity).await,
            Duration::from_millis(2300)
        );
        armer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_served_longer_than_the_header_timeout_is_not_cut() {
        // The head arrives after 100 ms; the response takes 2 s; no head wait follows.
        let activity = Activity::new();
        let timer = HeadTimer::new(activity.clone());
        let waiting = timer.sleep(HEADER);
        let start = tokio::time::Instant::now();
        let watch = activity.expired(Duration::from_secs(3), Some(HEADER));
        let serve = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(waiting);
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        tokio::select! {
            expiry = watch => panic!("{expiry:?} after {:?}", start.elapsed()),
            () = serve => {}
        }
        assert_eq!(start.elapsed(), Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline_and_polling_reports_it_due() {
        let activity = Activity::new();
        let timer = HeadTimer::new(activity.clone());
        let mut waiting = timer.sleep(HEADER);
        timer.reset(&mut waiting, timer.now() + Duration::from_millis(700));
        assert_eq!(
            header_expiry_after(&activity).await,
            Duration::from_millis(700)
        );
        let due = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
        assert_eq!(due, Poll::Ready(()));
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_head_armed_only_idleness_ends_the_watch() {
        let activity = Activity::new();
        let start = tokio::time::Instant::now();
        let idle = Duration::from_secs(2);
        assert_eq!(activity.expired(idle, Some(HEADER)).await, Expiry::Idle);
        assert_eq!(start.elapsed(), idle);
    }
}
