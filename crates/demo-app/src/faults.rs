//! Fault injection state: what has been broken on purpose, and the bounds that
//! keep every fault from harming the host (delay, leak size, CPU time and
//! threads, duration of persistent faults).
//!
//! Persistent faults expire on their own: each carries a deadline, checked on
//! the request path with one clock read, so a forgotten fault cannot outlive
//! `FAULT_MAX_DURATION_S`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::FaultLimits;
use crate::metrics::FaultGauges;

const MIB: u64 = 1024 * 1024;

/// A persistent fault with an expiry.
#[derive(Debug, Clone, PartialEq)]
struct Timed<T> {
    value: T,
    until: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub delay: Duration,
    pub percent: f64,
    /// Only requests whose route template starts with this (None: every `/api` route).
    pub route: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRate {
    pub percent: f64,
    /// Only requests whose route template starts with this (None: every `/api` route).
    pub route: Option<String>,
}

#[derive(Debug, Default)]
struct Persistent {
    error_rate: Option<Timed<ErrorRate>>,
    latency: Option<Timed<Latency>>,
    health_disabled_until: Option<Instant>,
}

/// Why a fault request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    LimitReached(String),
}

#[derive(Debug)]
pub struct Faults {
    limits: FaultLimits,
    persistent: Mutex<Persistent>,
    /// Fast path: true only while some persistent fault may be active.
    any_persistent: AtomicBool,
    leaked: Mutex<Vec<Vec<u8>>>,
    leaked_bytes: AtomicU64,
    cpu_threads: Arc<AtomicU64>,
    /// Bumped by `reset`; running CPU spikes stop when it changes.
    cpu_generation: Arc<AtomicU64>,
}

/// What a CPU spike was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSpike {
    pub threads: u32,
    pub seconds: u64,
    pub percent: u32,
}

impl Faults {
    pub fn new(limits: FaultLimits) -> Faults {
        Faults {
            limits,
            persistent: Mutex::default(),
            any_persistent: AtomicBool::new(false),
            leaked: Mutex::default(),
            leaked_bytes: AtomicU64::new(0),
            cpu_threads: Arc::default(),
            cpu_generation: Arc::default(),
        }
    }

    pub fn limits(&self) -> &FaultLimits {
        &self.limits
    }

    /// Checks a requested duration against the cap; `None` means the cap.
    pub fn duration(&self, seconds: Option<u64>) -> Result<Duration, FaultError> {
        match seconds {
            None => Ok(self.limits.max_duration),
            Some(0) => Err(FaultError::Invalid {
                field: "duration_s",
                message: "must be at least 1".into(),
            }),
            Some(s) if Duration::from_secs(s) > self.limits.max_duration => {
                Err(FaultError::Invalid {
                    field: "duration_s",
                    message: format!(
                        "{s} exceeds the cap of {} s (FAULT_MAX_DURATION_S)",
                        self.limits.max_duration.as_secs()
                    ),
                })
            }
            Some(s) => Ok(Duration::from_secs(s)),
        }
    }

    /// Checks a requested delay against the cap.
    pub fn delay(&self, ms: u64, field: &'static str) -> Result<Duration, FaultError> {
        let d = Duration::from_millis(ms);
        if d > self.limits.max_delay {
            return Err(FaultError::Invalid {
                field,
                message: format!(
                    "{ms} exceeds the cap of {} ms (FAULT_MAX_DELAY_MS)",
                    self.limits.max_delay.as_millis()
                ),
            });
        }
        Ok(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Persistent> {
        self.persistent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_flag(&self, p: &Persistent) {
        let any =
            p.error_rate.is_some() || p.latency.is_some() || p.health_disabled_until.is_some();
        self.any_persistent.store(any, Ordering::Release);
    }

    pub fn set_error_rate(&self, rate: ErrorRate, lasts: Duration) -> Result<(), FaultError> {
        check_percent(rate.percent, "percent")?;
        check_route(rate.route.as_deref())?;
        let mut p = self.lock();
        p.error_rate = (rate.percent > 0.0).then(|| Timed {
            value: rate,
            until: Instant::now() + lasts,
        });
        self.refresh_flag(&p);
        Ok(())
    }

    pub fn set_latency(&self, latency: Latency, lasts: Duration) -> Result<(), FaultError> {
        check_percent(latency.percent, "percent")?;
        check_route(latency.route.as_deref())?;
        let mut p = self.lock();
        p.latency = (latency.percent > 0.0 && !latency.delay.is_zero()).then(|| Timed {
            value: latency,
            until: Instant::now() + lasts,
        });
        self.refresh_flag(&p);
        Ok(())
    }

    pub fn disable_health(&self, lasts: Duration) {
        let mut p = self.lock();
        p.health_disabled_until = Some(Instant::now() + lasts);
        self.refresh_flag(&p);
    }

    pub fn enable_health(&self) {
        let mut p = self.lock();
        p.health_disabled_until = None;
        self.refresh_flag(&p);
    }

    /// Drops expired faults; returns the active ones. One atomic load when none are set.
    fn active(&self) -> Option<(Option<ErrorRate>, Option<Latency>, bool)> {
        if !self.any_persistent.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        let mut p = self.lock();
        if p.error_rate.as_ref().is_some_and(|t| t.until <= now) {
            p.error_rate = None;
        }
        if p.latency.as_ref().is_some_and(|t| t.until <= now) {
            p.latency = None;
        }
        if p.health_disabled_until.is_some_and(|u| u <= now) {
            p.health_disabled_until = None;
        }
        self.refresh_flag(&p);
        Some((
            p.error_rate.as_ref().map(|t| t.value.clone()),
            p.latency.as_ref().map(|t| t.value.clone()),
            p.health_disabled_until.is_some(),
        ))
    }

    pub fn health_enabled(&self) -> bool {
        !self.active().is_some_and(|(_, _, disabled)| disabled)
    }

    /// Whether this `/api` request (on `route`) should fail, and what delay it should suffer.
    pub fn roll(&self, route: &str) -> (bool, Option<Duration>) {
        let Some((rate, latency, _)) = self.active() else {
            return (false, None);
        };
        let applies =
            |r: &Option<String>| r.as_deref().is_none_or(|prefix| route.starts_with(prefix));
        let fail = rate.is_some_and(|r| applies(&r.route) && fastrand::f64() * 100.0 < r.percent);
        let delay = latency
            .filter(|l| applies(&l.route) && fastrand::f64() * 100.0 < l.percent)
            .map(|l| l.delay);
        (fail, delay)
    }

    /// Allocates and touches `mb` MiB so resident memory really grows.
    pub fn leak(&self, mb: u64) -> Result<u64, FaultError> {
        if mb == 0 || mb > self.limits.max_leak_mb_per_call {
            return Err(FaultError::Invalid {
                field: "mb",
                message: format!(
                    "must be 1..={} (FAULT_MAX_LEAK_MB_PER_CALL)",
                    self.limits.max_leak_mb_per_call
                ),
            });
        }
        let mut leaked = self.leaked.lock().unwrap_or_else(|e| e.into_inner());
        let total = self.leaked_bytes.load(Ordering::Relaxed);
        if total + mb * MIB > self.limits.max_leak_mb_total * MIB {
            return Err(FaultError::LimitReached(format!(
                "leaking {mb} MiB more would exceed the cap of {} MiB (FAULT_MAX_LEAK_MB_TOTAL); {} MiB held",
                self.limits.max_leak_mb_total,
                total / MIB
            )));
        }
        // A non-zero fill makes every page resident (zeroed pages may stay virtual).
        leaked.push(vec![0xA5u8; (mb * MIB) as usize]);
        let new_total = total + mb * MIB;
        self.leaked_bytes.store(new_total, Ordering::Relaxed);
        Ok(new_total)
    }

    /// Frees leaked memory; returns the bytes freed.
    pub fn clear_memory(&self) -> u64 {
        let mut leaked = self.leaked.lock().unwrap_or_else(|e| e.into_inner());
        leaked.clear();
        leaked.shrink_to_fit();
        self.leaked_bytes.swap(0, Ordering::Relaxed)
    }

    pub fn leaked_bytes(&self) -> u64 {
        self.leaked_bytes.load(Ordering::Relaxed)
    }

    /// Starts `threads` threads, each busy `percent` % of the time, for `seconds`;
    /// they stop early on `reset`.
    pub fn cpu_spike(
        &self,
        threads: u32,
        seconds: u64,
        percent: u32,
    ) -> Result<CpuSpike, FaultError> {
        if !(1..=100).contains(&percent) {
            return Err(FaultError::Invalid {
                field: "percent",
                message: "must be 1..=100 (share of each thread's time spent busy)".into(),
            });
        }
        if threads == 0 || threads > self.limits.max_cpu_threads {
            return Err(FaultError::Invalid {
                field: "threads",
                message: format!(
                    "must be 1..={} (FAULT_MAX_CPU_THREADS)",
                    self.limits.max_cpu_threads
                ),
            });
        }
        if seconds == 0 || seconds > self.limits.max_cpu_seconds {
            return Err(FaultError::Invalid {
                field: "seconds",
                message: format!(
                    "must be 1..={} (FAULT_MAX_CPU_SECONDS)",
                    self.limits.max_cpu_seconds
                ),
            });
        }
        let cap = u64::from(self.limits.max_cpu_threads);
        let reserved = self
            .cpu_threads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n + u64::from(threads) <= cap).then_some(n + u64::from(threads))
            });
        if let Err(running) = reserved {
            return Err(FaultError::LimitReached(format!(
                "{running} CPU-spike threads already running; {threads} more would exceed the cap of {cap} (FAULT_MAX_CPU_THREADS)"
            )));
        }
        let generation = self.cpu_generation.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        for i in 0..threads {
            let counter = self.cpu_threads.clone();
            let gen_now = self.cpu_generation.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cpu-spike-{i}"))
                .spawn(move || {
                    busy_loop(deadline, percent, || {
                        gen_now.load(Ordering::Relaxed) == generation
                    });
                    counter.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                self.cpu_threads.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Ok(CpuSpike {
            threads,
            seconds,
            percent,
        })
    }

    /// Clears every fault: persistent ones, leaked memory, running CPU spikes.
    pub fn reset(&self) -> u64 {
        {
            let mut p = self.lock();
            *p = Persistent::default();
            self.refresh_flag(&p);
        }
        self.cpu_generation.fetch_add(1, Ordering::AcqRel);
        self.clear_memory()
    }

    pub fn gauges(&self) -> FaultGauges {
        let (rate, latency, disabled) = self.active().unwrap_or((None, None, false));
        FaultGauges {
            health_enabled: !disabled,
            leaked_bytes: self.leaked_bytes(),
            error_rate_percent: rate.map_or(0.0, |r| r.percent),
            latency_ms: latency.as_ref().map_or(0, |l| l.delay.as_millis() as u64),
            latency_percent: latency.map_or(0.0, |l| l.percent),
            cpu_spike_threads: self.cpu_threads.load(Ordering::Acquire),
        }
    }
}

/// One duty-cycle period of a CPU spike: busy `percent` % of it, asleep the rest.
const DUTY_PERIOD: Duration = Duration::from_millis(10);

/// Burns CPU `percent` % of the time until `deadline`, or until `keep_going` turns false.
fn busy_loop(deadline: Instant, percent: u32, keep_going: impl Fn() -> bool) {
    let busy = DUTY_PERIOD * percent.min(100) / 100;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    loop {
        let period_start = Instant::now();
        if period_start >= deadline || !keep_going() {
            return;
        }
        while period_start.elapsed() < busy {
            for _ in 0..1_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
        }
        let rest = DUTY_PERIOD.saturating_sub(period_start.elapsed());
        if !rest.is_zero() {
            std::thread::sleep(rest.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

fn check_route(route: Option<&str>) -> Result<(), FaultError> {
    match route {
        Some(r) if !r.starts_with("/api/") || r.len() > 100 => Err(FaultError::Invalid {
            field: "route",
            message: format!(
                "{r:?} must be an /api/ route template prefix of at most 100 characters"
            ),
        }),
        _ => Ok(()),
    }
}

fn check_percent(p: f64, field: &'static str) -> Result<(), FaultError> {
    if !(0.0..=100.0).contains(&p) {
        // `{}` writes 1e300 (or 1e-300) with all its digits: those in exponent form.
        let shown = if (1e-3..1e9).contains(&p.abs()) {
            format!("{p}")
        } else {
            format!("{p:e}")
        };
        return Err(FaultError::Invalid {
            field,
            message: format!("{shown} is not in 0..=100"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FaultLimits {
        FaultLimits {
            max_delay: Duration::from_millis(1000),
            max_leak_mb_per_call: 4,
            max_leak_mb_total: 6,
            max_cpu_seconds: 5,
            max_cpu_threads: 2,
            max_duration: Duration::from_secs(60),
        }
    }

    #[test]
    fn leaks_are_bounded_per_call_and_in_total() {
        let f = Faults::new(limits());
        assert!(matches!(
            f.leak(5),
            Err(FaultError::Invalid { field: "mb", .. })
        ));
        assert_eq!(f.leak(4).unwrap(), 4 * MIB);
        assert!(matches!(f.leak(4), Err(FaultError::LimitReached(_))));
        assert_eq!(f.leak(2).unwrap(), 6 * MIB);
        assert_eq!(f.clear_memory(), 6 * MIB);
        assert_eq!(f.leaked_bytes(), 0);
    }

    #[test]
    fn error_rate_is_applied_and_expires() {
        let f = Faults::new(limits());
        let all = |percent| ErrorRate {
            percent,
            route: None,
        };
        f.set_error_rate(all(100.0), Duration::from_millis(50))
            .unwrap();
        assert!(f.roll("/api/products").0);
        std::thread::sleep(Duration::from_millis(80));
        assert!(!f.roll("/api/products").0, "fault must expire");
        assert_eq!(f.gauges().error_rate_percent, 0.0);
        assert!(
            f.set_error_rate(all(101.0), Duration::from_secs(1))
                .is_err()
        );
        let quote_only = ErrorRate {
            percent: 100.0,
            route: Some("/api/quote".into()),
        };
        f.set_error_rate(quote_only, Duration::from_secs(5))
            .unwrap();
        assert!(f.roll("/api/quote").0);
        assert!(!f.roll("/api/products").0, "other routes are unaffected");
        let bad = ErrorRate {
            percent: 1.0,
            route: Some("/health".into()),
        };
        assert!(f.set_error_rate(bad, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn cpu_threads_are_capped_and_reset_stops_them() {
        let f = Faults::new(limits());
        assert!(f.cpu_spike(3, 1, 100).is_err());
        assert!(f.cpu_spike(1, 6, 100).is_err());
        assert!(f.cpu_spike(1, 1, 0).is_err());
        f.cpu_spike(2, 5, 100).unwrap();
        assert!(matches!(
            f.cpu_spike(1, 1, 100),
            Err(FaultError::LimitReached(_))
        ));
        assert_eq!(f.gauges().cpu_spike_threads, 2);
        f.reset();
        let start = Instant::now();
        while f.gauges().cpu_spike_threads > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "reset did not stop the spike"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// CPU time of the calling thread (Linux `/proc/thread-self/stat`, utime + stime).
    fn thread_cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    #[test]
    fn a_cpu_spike_burns_its_percent_of_the_time() {
        // 2 s at 10 % must burn about 0.2 CPU-s, not 2 (the bug: `percent` was ignored).
        let measure = |percent| {
            let before = thread_cpu_seconds();
            busy_loop(Instant::now() + Duration::from_secs(2), percent, || true);
            thread_cpu_seconds() - before
        };
        let ten = measure(10);
        assert!(
            (0.04..0.45).contains(&ten),
            "10 % for 2 s burned {ten} CPU-s"
        );
        let stopped = {
            let before = thread_cpu_seconds();
            let start = Instant::now();
            busy_loop(Instant::now() + Duration::from_secs(5), 100, || {
                start.elapsed() < Duration::from_millis(300)
            });
            assert!(start.elapsed() < Duration::from_secs(1), "stop ignored");
            thread_cpu_seconds() - before
        };
        assert!(stopped < 0.6, "{stopped}");
    }

    #[test]
    fn durations_and_delays_are_capped() {
        let f = Faults::new(limits());
        assert!(f.duration(Some(61)).is_err());
        assert!(f.duration(Some(0)).is_err());
        assert_eq!(f.duration(None).unwrap(), Duration::from_secs(60));
        assert!(f.delay(1001, "delay_ms").is_err());
    }
}
