//! The load balancer's data path on a thread of its own.
//!
//! Why: `up` also parses and stores every line its tasks write, scrapes their
//! `/metrics`, evaluates alarms and writes SQLite. On the shared async runtime a
//! burst of that work sat in front of requests on the same worker and set the
//! proxy's tail latency (p99 4× haproxy's). Here the accept loop, every proxied
//! request, the upstream connection pool and the target health checks run on a
//! dedicated OS thread with its own single-threaded tokio runtime (haproxy's
//! `nbthread 1` shape), so the kernel schedules proxying independently of the
//! pipeline and nothing slow is ever polled on it.
//!
//! What crosses from here to the rest of `up` is lock-free and fixed in size:
//! request counters and the response-time histogram are atomics the collector
//! reads and resets ([`crate::lb::LbCounters`]); nothing is queued, so nothing can
//! fill up and stall a request. [`LoopLag`] measures that promise: a timer on the
//! data path records how late it wakes, which is how long a request arriving at
//! that moment would have waited for the thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Upper bounds (seconds) of the loop-lag histogram.
pub const LAG_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0];

/// How often the lag probe wakes.
const LAG_PROBE_EVERY: Duration = Duration::from_millis(20);

/// How late the data path's timer woke, as a histogram (counts per bucket of
/// [`LAG_BUCKETS`], then the overflow; sum in µs; the worst).
#[derive(Debug, Default)]
pub struct LoopLag {
    buckets: [AtomicU64; LAG_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl LoopLag {
    pub fn observe(&self, lag: Duration) {
        let secs = lag.as_secs_f64();
        let i = LAG_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LAG_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let us = lag.as_micros() as u64;
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Cumulative counts for each bound of [`LAG_BUCKETS`] and +Inf, and the sum in seconds.
    pub fn cumulative(&self) -> ([u64; LAG_BUCKETS.len() + 1], f64) {
        let mut out = [0; LAG_BUCKETS.len() + 1];
        let mut total = 0;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            total += b.load(Ordering::Relaxed);
            *o = total;
        }
        (out, self.sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }

    /// The longest lag seen.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us.load(Ordering::Relaxed))
    }
}

/// The data path's thread and runtime. Dropping it stops the runtime (tasks
/// still on it are cancelled) without waiting for the thread.
#[derive(Debug)]
pub struct DataPath {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub lag: Arc<LoopLag>,
}

impl DataPath {
    /// Starts the thread (named `lb-data-path`) and its runtime; its loop lag is
    /// recorded in `lag`.
    pub fn start(lag: Arc<LoopLag>) -> std::io::Result<DataPath> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let probe = lag.clone();
        let thread = std::thread::Builder::new()
            .name("lb-data-path".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = probe_lag(&probe) => {}
                    }
                });
                // Whatever is still spawned here (connections being drained) is
                // cancelled with the runtime: `up` only stops this after draining.
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(DataPath {
            handle,
            stop: Some(stop),
            thread: Some(thread),
            lag,
        })
    }

    /// Where to spawn data path work.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops the runtime and waits for its thread (blocking: call it off the async workers).
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DataPath {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Wakes every [`LAG_PROBE_EVERY`] and records how late it woke, forever.
async fn probe_lag(lag: &LoopLag) {
    let mut next = Instant::now() + LAG_PROBE_EVERY;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        lag.observe(now.saturating_duration_since(next));
        next = now + LAG_PROBE_EVERY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_spawned_on_the_data_path_runs_on_its_own_thread() {
        let dp = DataPath::start(Arc::default()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        dp.handle().spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            tx.send(name).unwrap();
        });
        let name = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(name.as_deref(), Some("lb-data-path"));
        dp.stop();
    }

    #[test]
    fn a_blocked_data_path_shows_as_lag() {
        let dp = DataPath::start(Arc::default()).unwrap();
        // Block the thread for 60 ms: the probe must see a lag of that order.
        dp.handle()
            .spawn(async { std::thread::sleep(Duration::from_millis(60)) });
        let start = Instant::now();
        while dp.lag.max() < Duration::from_millis(30) {
            assert!(start.elapsed() < Duration::from_secs(5), "no lag recorded");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (cumulative, sum) = dp.lag.cumulative();
        assert!(sum >= 0.03, "{sum}");
        // Cumulative: non-decreasing, and the 25 ms bucket misses the blocked wake-up.
        assert!(cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert!(cumulative[5] < cumulative[LAG_BUCKETS.len()]);
        dp.stop();
    }

    #[test]
    fn lag_buckets_are_cumulative() {
        let l = LoopLag::default();
        l.observe(Duration::from_micros(100));
        l.observe(Duration::from_millis(3));
        l.observe(Duration::from_secs(5));
        let (c, sum) = l.cumulative();
        assert_eq!(c, [1, 1, 1, 2, 2, 2, 2, 2, 3]);
        assert!((sum - 5.0031).abs() < 1e-6, "{sum}");
        assert_eq!(l.max(), Duration::from_secs(5));
    }
}
