//! Prometheus metrics in the text exposition format (version 0.0.4).
//!
//! A small purpose-built registry rather than a general client library: the
//! hot path (one counter and one histogram update per request) is a read-lock
//! hash lookup plus a few relaxed atomic adds, and rendering writes exactly the
//! families the service documents. The registry is owned by the app state and
//! passed explicitly; there is no global.
//!
//! `route` is always a matched route template (`/api/products/{id}`) or the
//! single value `unmatched`, and `method` one of the nine standard methods or
//! the single value `other`, so neither unknown paths nor made-up methods can
//! grow the series set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Histogram upper bounds in seconds (Prometheus client defaults plus 30 s).
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Label value for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Label value shared by every method outside the standard set.
pub const OTHER_METHOD: &str = "other";

/// The `method` label of a request: the standard methods (RFC 9110 and PATCH) keep
/// their name, anything else (`FOO`, `X1234`) shares `other`.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or(OTHER_METHOD)
}

#[derive(Debug, Default)]
struct Series {
    /// Cumulative counts are computed at render time; these are per-bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Per-route series, keyed by (method, status).
type RouteSeries = Vec<((Box<str>, u16), Arc<Series>)>;

#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, RouteSeries>>,
    in_flight: AtomicU64,
    total: AtomicU64,
}

impl HttpMetrics {
    fn series(&self, method: &str, route: &str, status: u16) -> Arc<Series> {
        {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = routes.get(route)
                && let Some((_, s)) = list
                    .iter()
                    .find(|((m, st), _)| *st == status && &**m == method)
            {
                return s.clone();
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let list = routes.entry(route.into()).or_default();
        if let Some((_, s)) = list
            .iter()
            .find(|((m, st), _)| *st == status && &**m == method)
        {
            return s.clone();
        }
        let s = Arc::new(Series::default());
        list.push(((method.into(), status), s.clone()));
        s
    }

    /// Records one finished request; `method` is reduced to its label (`method_label`).
    pub fn observe(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let s = self.series(method_label(method), route, status);
        let secs = latency.as_secs_f64();
        let idx = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[idx].fetch_add(1, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn request_started(&self) -> u64 {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests received since start, all routes.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Process figures read from `/proc/self` (Linux); absent elsewhere.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub threads: u64,
}

impl ProcessStats {
    /// Resident and virtual memory from `/proc/self/statm` (one small read).
    pub fn memory() -> Option<(u64, u64)> {
        let m = demo_procfs::Statm::read(demo_procfs::Proc::Current)?;
        Some((m.resident_bytes, m.virtual_bytes))
    }

    pub fn read() -> Option<ProcessStats> {
        // CPU time in the kernel's real clock ticks (see demo_procfs).
        let stat = demo_procfs::Stat::read(demo_procfs::Proc::Current)?;
        let (resident_bytes, virtual_bytes) = ProcessStats::memory()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        // The limit is set at exec and practically never changes: read it once.
        static MAX_FDS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        let max_fds = *MAX_FDS.get_or_init(|| {
            std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| {
                    l.lines()
                        .find(|l| l.starts_with("Max open files"))
                        .and_then(|l| l.split_whitespace().nth(3))
                        .and_then(|v| v.parse().ok())
                })
        });
        Some(ProcessStats {
            cpu_seconds: stat.cpu_seconds(),
            resident_bytes,
            virtual_bytes,
            open_fds,
            max_fds,
            threads: stat.threads,
        })
    }
}

/// Process figures reused for up to `ttl`: reading `/proc` costs tens of
/// microseconds, so a burst of scrapes must not multiply it. Prometheus
/// scrapes every 15-60 s; one-second-old process figures lose nothing.
#[derive(Debug)]
pub struct ProcessSampler {
    ttl: Duration,
    last: std::sync::Mutex<Option<(std::time::Instant, ProcessStats)>>,
}

impl ProcessSampler {
    pub fn new(ttl: Duration) -> ProcessSampler {
        ProcessSampler {
            ttl,
            last: std::sync::Mutex::new(None),
        }
    }

    pub fn sample(&self) -> Option<ProcessStats> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, stats)) = *last
            && at.elapsed() < self.ttl
        {
            return Some(stats);
        }
        let stats = ProcessStats::read()?;
        *last = Some((std::time::Instant::now(), stats));
        Some(stats)
    }
}

/// Resident memory for `/health`, read from `/proc/self/statm` at most once per
/// `max_age`. Health checks arrive every few seconds, but a load test or a
/// misconfigured prober can send thousands a second, and reading `/proc` costs five
/// syscalls (open, statx, two reads, close): uncached, `/health` answered at half the
/// rate of `GET /`. Readers never wait: an atomic time stamp picks the one request
/// that refreshes the figure, the others answer with the previous one.
///
/// `invalidate` forces the next read to refresh: the memory-leak fault calls it, so a
/// caller who leaks memory then asks `/health` sees the new figure at once.
#[derive(Debug)]
pub struct MemorySampler {
    max_age: Duration,
    origin: std::time::Instant,
    /// Resident bytes of the last read (0 before the first).
    rss: AtomicU64,
    /// Microseconds after `origin` of the last read; `u64::MAX`: never read, or invalidated.
    read_at_us: AtomicU64,
}

impl MemorySampler {
    /// Reads once now, so no request ever sees the "not read yet" 0.
    pub fn new(max_age: Duration) -> MemorySampler {
        let sampler = MemorySampler {
            max_age,
            origin: std::time::Instant::now(),
            rss: AtomicU64::new(0),
            read_at_us: AtomicU64::new(u64::MAX),
        };
        sampler.resident_bytes();
        sampler
    }

    /// Resident bytes, at most `max_age` old; 0 if `/proc` cannot be read.
    pub fn resident_bytes(&self) -> u64 {
        let now = self.origin.elapsed().as_micros() as u64;
        let at = self.read_at_us.load(Ordering::Acquire);
        let fresh = at != u64::MAX && now.saturating_sub(at) < self.max_age.as_micros() as u64;
        // One refresher: whoever moves the stamp reads; a concurrent reader keeps the old figure.
        if !fresh
            && self
                .read_at_us
                .compare_exchange(at, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let rss = ProcessStats::memory().map_or(0, |(rss, _)| rss);
            // The stamp moved before the read, so an `invalidate` during the read
            // still forces the next request to read again.
            self.rss.store(rss, Ordering::Release);
            return rss;
        }
        self.rss.load(Ordering::Acquire)
    }

    /// The next `resident_bytes` reads `/proc` again.
    pub fn invalidate(&self) {
        self.read_at_us.store(u64::MAX, Ordering::Release);
    }
}

/// Gauges describing injected faults, sampled at render time.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct FaultGauges {
    pub health_enabled: bool,
    pub leaked_bytes: u64,
    pub error_rate_percent: f64,
    pub latency_ms: u64,
    pub latency_percent: f64,
    pub cpu_spike_threads: u64,
}

/// Static identity for `app_info`.
#[derive(Debug, Clone)]
pub struct Info {
    pub version: String,
    pub git_sha: String,
    pub environment: String,
    pub task_id: String,
    pub start_time: SystemTime,
}

fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every family in the text exposition format.
pub fn render(
    http: &HttpMetrics,
    info: &Info,
    process: Option<ProcessStats>,
    faults: FaultGauges,
    log_lines: u64,
    log_dropped: u64,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let routes = http.routes.read().unwrap_or_else(|e| e.into_inner());
    let mut rows: Vec<(&str, &str, u16, &Series)> = routes
        .iter()
        .flat_map(|(route, list)| {
            list.iter()
                .map(move |((m, st), s)| (&**m, &**route, *st, &**s))
        })
        .collect();
    rows.sort_by(|a, b| (a.1, a.0, a.2).cmp(&(b.1, b.0, b.2)));

    header(
        &mut out,
        "http_requests_total",
        "counter",
        "HTTP requests served, by method, matched route template and status code.",
    );
    for (m, r, st, s) in &rows {
        let _ = writeln!(
            out,
            "http_requests_total{{method=\"{m}\",route=\"{}\",status_code=\"{st}\"}} {}",
            escape_label(r),
            s.count.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "http_request_duration_seconds",
        "histogram",
        "HTTP request latency in seconds, by method, matched route template and status code.",
    );
    for (m, r, st, s) in &rows {
        let labels = format!(
            "method=\"{m}\",route=\"{}\",status_code=\"{st}\"",
            escape_label(r)
        );
        let mut cumulative = 0u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += s.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += s.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
        );
        let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{{labels}}} {}",
            fmt_f64(sum)
        );
        // Use the bucket total so count always equals the +Inf bucket in one scrape.
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }
    drop(routes);
    header(
        &mut out,
        "http_requests_in_flight",
        "gauge",
        "HTTP requests currently being served.",
    );
    let _ = writeln!(out, "http_requests_in_flight {}", http.in_flight());

    header(
        &mut out,
        "app_info",
        "gauge",
        "Build and deployment identity of this replica (value is always 1).",
    );
    let _ = writeln!(
        out,
        "app_info{{version=\"{}\",git_sha=\"{}\",environment=\"{}\",task_id=\"{}\"}} 1",
        escape_label(&info.version),
        escape_label(&info.git_sha),
        escape_label(&info.environment),
        escape_label(&info.task_id)
    );

    let start = info
        .start_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    header(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    let _ = writeln!(out, "process_start_time_seconds {}", fmt_f64(start));
    if let Some(p) = process {
        header(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", fmt_f64(p.cpu_seconds));
        header(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", p.resident_bytes);
        header(
            &mut out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {}", p.virtual_bytes);
        header(
            &mut out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", p.open_fds);
        if let Some(max) = p.max_fds {
            header(
                &mut out,
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            );
            let _ = writeln!(out, "process_max_fds {max}");
        }
        header(
            &mut out,
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
        );
        let _ = writeln!(out, "process_threads {}", p.threads);
    }

    let gauges: [(&str, &str, String); 6] = [
        (
            "app_fault_health_enabled",
            "1 while /health answers healthy, 0 while disabled by fault injection.",
            u8::from(faults.health_enabled).to_string(),
        ),
        (
            "app_fault_leaked_bytes",
            "Bytes held by the memory-leak fault.",
            faults.leaked_bytes.to_string(),
        ),
        (
            "app_fault_error_rate_percent",
            "Percentage of /api requests answered 500 by the error-rate fault.",
            fmt_f64(faults.error_rate_percent),
        ),
        (
            "app_fault_latency_seconds",
            "Delay added by the latency fault, in seconds.",
            fmt_f64(faults.latency_ms as f64 / 1000.0),
        ),
        (
            "app_fault_latency_percent",
            "Percentage of /api requests delayed by the latency fault.",
            fmt_f64(faults.latency_percent),
        ),
        (
            "app_fault_cpu_spike_threads",
            "Busy threads currently run by CPU-spike faults.",
            faults.cpu_spike_threads.to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        &mut out,
        "app_log_lines_total",
        "counter",
        "Log lines accepted for writing to stdout.",
    );
    let _ = writeln!(out, "app_log_lines_total {log_lines}");
    header(
        &mut out,
        "app_log_lines_dropped_total",
        "counter",
        "Log lines dropped because stdout stalled.",
    );
    let _ = writeln!(out, "app_log_lines_dropped_total {log_dropped}");
    out
}

/// Appends the client-connection families (see `demo_netlimits`): open connections,
/// accepted, failed accepts (descriptor exhaustion) and connections closed as idle.
pub fn render_connections(out: &mut String, c: &demo_netlimits::ConnStats) {
    let families: [(&str, &str, &str, &AtomicU64); 4] = [
        (
            "http_connections_open",
            "gauge",
            "Client connections currently open.",
            &c.open,
        ),
        (
            "http_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            &c.accepted,
        ),
        (
            "http_accept_errors_total",
            "counter",
            "Failed accepts (e.g. out of file descriptors); the server backs off after each.",
            &c.accept_errors,
        ),
        (
            "http_connections_idle_closed_total",
            "counter",
            "Client connections closed because no byte moved for IDLE_TIMEOUT_MS.",
            &c.idle_closed,
        ),
    ];
    for (name, kind, help, v) in families {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_consistent() {
        let m = HttpMetrics::default();
        m.observe("GET", "/", 200, Duration::from_millis(3));
        m.observe("GET", "/", 200, Duration::from_millis(70));
        m.observe("GET", "/", 200, Duration::from_secs(60));
        let info = Info {
            version: "v\"1".into(),
            git_sha: "abc".into(),
            environment: "test".into(),
            task_id: "t".into(),
            start_time: SystemTime::now(),
        };
        let text = render(&m, &info, None, FaultGauges::default(), 0, 0);
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/",status_code="200"} 3"#)
        );
        assert!(text.contains(r#"le="0.005"} 1"#));
        assert!(text.contains(r#"le="0.1"} 2"#));
        assert!(text.contains(r#"le="30"} 2"#));
        assert!(text.contains(r#"le="+Inf"} 3"#));
        assert!(
            text.contains(r#"version="v\"1""#),
            "label values are escaped"
        );
    }

    #[test]
    fn made_up_methods_share_one_series() {
        let m = HttpMetrics::default();
        for i in 0..500 {
            m.observe(&format!("X{i}"), UNMATCHED, 405, Duration::from_millis(1));
        }
        m.observe("PATCH", UNMATCHED, 405, Duration::from_millis(1));
        m.observe("get", UNMATCHED, 405, Duration::from_millis(1));
        let routes = m.routes.read().unwrap();
        let methods: Vec<&str> = routes[UNMATCHED].iter().map(|((m, _), _)| &**m).collect();
        // Method names are case-sensitive (RFC 9110 §9.1): "get" is not GET.
        assert_eq!(methods, vec!["other", "PATCH"]);
        assert_eq!(routes[UNMATCHED][0].1.count.load(Ordering::Relaxed), 501);
    }

    #[test]
    fn memory_sampler_reuses_its_figure_until_max_age_or_invalidation() {
        let sampler = MemorySampler::new(Duration::from_secs(3600));
        let first = sampler.resident_bytes();
        assert!(first > 0, "read at construction");
        // 32 MiB touched: resident memory really grows, but the figure is kept.
        let big = vec![1u8; 32 << 20];
        assert_eq!(sampler.resident_bytes(), first, "cached for max_age");
        sampler.invalidate();
        let grown = sampler.resident_bytes();
        assert!(grown >= first + (30 << 20), "{first} -> {grown}");
        drop(big);

        let always = MemorySampler::new(Duration::ZERO);
        let before = always.resident_bytes();
        let big = vec![1u8; 32 << 20];
        assert!(
            always.resident_bytes() >= before + (30 << 20),
            "max_age 0 reads each time"
        );
        drop(big);
    }

    #[test]
    fn process_stats_are_read_on_linux() {
        let p = ProcessStats::read().expect("/proc/self is readable");
        assert!(p.resident_bytes > 0 && p.open_fds >= 3 && p.threads >= 1);
    }
}
