//! The load balancer: what the ALB does, locally. Round robin over healthy
//! targets only, target-group health checks with the catalogue's path,
//! interval, timeout and thresholds (divided by the time scale), deregistration
//! with draining, and the ALB metrics (`RequestCount`, `HTTPCode_Target_*`,
//! `HTTPCode_ELB_5XX_Count`, `TargetResponseTime`, healthy/unhealthy counts).
//! Client connections get the limits of a production proxy (`demo_netlimits`):
//! header read and idle timeouts, a connection cap, backoff on accept errors and a
//! descriptor budget checked when serving starts.
//!
//! The HTTP/1.1 proxying itself is [`crate::proxy`] (one task per client connection,
//! bytes to bytes), over upstream connections shared per target ([`crate::upstream`]).
//! In `up` all of it (accept loop, proxying, upstream connections, health checks) runs
//! on [`crate::datapath::DataPath`], a thread of its own, so log ingestion and
//! metric collection never delay a request; see that module for why.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use demo_netlimits::{Budget, Event};
pub use demo_netlimits::{ConnLimits, ConnStats};
use http_body_util::Empty;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::upstream::{IdleBudget, IdleList};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Registered, not yet passed `healthy_threshold` checks: receives no traffic.
    Initial = 0,
    Healthy = 1,
    Unhealthy = 2,
    /// Deregistered: finishing in-flight requests, receives no new ones.
    Draining = 3,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            3 => Health::Draining,
            _ => Health::Initial,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Initial => "initial",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Draining => "draining",
        }
    }
}

#[derive(Debug)]
pub struct Target {
    pub task_id: String,
    pub addr: SocketAddr,
    /// `Health` as a number: read on every request without a lock.
    state: AtomicU8,
    reason: Mutex<String>,
    in_flight: AtomicU64,
    /// Its idle upstream connections, shared by every client connection.
    pub(crate) idle: IdleList,
}

impl Target {
    /// Current state and the reason for it.
    pub fn health(&self) -> (Health, String) {
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (self.state(), reason)
    }
    pub fn state(&self) -> Health {
        Health::from_u8(self.state.load(Ordering::Acquire))
    }
    fn set(&self, h: Health, reason: String) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        self.state.store(h as u8, Ordering::Release);
    }
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// A health state change, for the service scheduler.
#[derive(Debug, Clone)]
pub struct HealthChange {
    pub task_id: String,
    pub health: Health,
    pub reason: String,
}

/// Health-check settings, already time-scaled.
#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Response-time histogram buckets are 5 % wide: bucket k holds ~1.05^k microseconds.
const BUCKET_BASE: f64 = 1.05;

#[derive(Debug)]
pub struct LbCounters {
    pub requests: AtomicU64,
    pub target_2xx: AtomicU64,
    pub target_3xx: AtomicU64,
    pub target_4xx: AtomicU64,
    pub target_5xx: AtomicU64,
    pub elb_5xx: AtomicU64,
    /// Bucket k counts responses of about 1.05^k microseconds (512 buckets reach hours).
    response_times: Vec<AtomicU64>,
}

impl Default for LbCounters {
    fn default() -> LbCounters {
        LbCounters {
            requests: AtomicU64::new(0),
            target_2xx: AtomicU64::new(0),
            target_3xx: AtomicU64::new(0),
            target_4xx: AtomicU64::new(0),
            target_5xx: AtomicU64::new(0),
            elb_5xx: AtomicU64::new(0),
            response_times: (0..512).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// One tick's worth of load balancer metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LbSnapshot {
    pub requests: u64,
    pub target_2xx: u64,
    pub target_4xx: u64,
    pub target_5xx: u64,
    pub elb_5xx: u64,
    /// (seconds, count) pairs: the response-time distribution.
    pub response_times: Vec<(f64, u64)>,
}

impl LbCounters {
    /// Counts a target's answer by its status class.
    pub(crate) fn count_target_status(&self, status: u16) {
        match status {
            200..=299 => &self.target_2xx,
            300..=399 => &self.target_3xx,
            400..=499 => &self.target_4xx,
            _ => &self.target_5xx,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe_response_time(&self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let k = if us <= 1.0 {
            0
        } else {
            (us.ln() / BUCKET_BASE.ln()).round() as usize
        };
        self.response_times[k.min(self.response_times.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes and resets the counters.
    pub fn take(&self) -> LbSnapshot {
        let response_times: Vec<(f64, u64)> = self
            .response_times
            .iter()
            .enumerate()
            .filter_map(|(k, n)| {
                let n = n.swap(0, Ordering::AcqRel);
                (n > 0).then(|| (BUCKET_BASE.powi(k as i32) / 1e6, n))
            })
            .collect();
        LbSnapshot {
            requests: self.requests.swap(0, Ordering::AcqRel),
            target_2xx: self.target_2xx.swap(0, Ordering::AcqRel),
            target_4xx: self.target_4xx.swap(0, Ordering::AcqRel),
            target_5xx: self.target_5xx.swap(0, Ordering::AcqRel),
            elb_5xx: self.elb_5xx.swap(0, Ordering::AcqRel),
            response_times,
        }
    }
}

/// The target group plus the proxy that serves it.
pub struct LoadBalancer {
    targets: RwLock<Vec<Arc<Target>>>,
    rr: AtomicUsize,
    pub counters: LbCounters,
    health: HealthCheckConfig,
    changes: mpsc::UnboundedSender<HealthChange>,
    /// Limits on client connections.
    pub limits: ConnLimits,
    /// Client connection counters (accepted, open, accept errors, idle closes).
    pub conn_stats: Arc<ConnStats>,
    /// Where health checks run: the data path's runtime in `up`.
    runtime: tokio::runtime::Handle,
    /// OTLP span export of this hop, when asked for (`export_spans`); unset, a
    /// request pays one check.
    spans: std::sync::OnceLock<demo_otlp::Exporter>,
    /// Idle upstream connections across targets: at most `limits.max_connections`.
    idle_budget: Arc<IdleBudget>,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("health", &self.health)
            .finish()
    }
}

/// Descriptors one client connection may cost: its socket, the upstream connection its
/// request is using, and one idle upstream connection (idle ones across all targets are
/// at most the client connection limit; see `upstream`).
pub const FDS_PER_CONNECTION: u64 = 3;

impl LoadBalancer {
    pub fn new(
        health: HealthCheckConfig,
        changes: mpsc::UnboundedSender<HealthChange>,
    ) -> Arc<LoadBalancer> {
        LoadBalancer::with_limits(health, changes, ConnLimits::default())
    }

    /// A load balancer whose health checks run on the current tokio runtime.
    /// Panics outside one.
    pub fn with_limits(
        health: HealthCheckConfig,
        changes: mpsc::UnboundedSender<HealthChange>,
        limits: ConnLimits,
    ) -> Arc<LoadBalancer> {
        LoadBalancer::on(tokio::runtime::Handle::current(), health, changes, limits)
    }

    /// A load balancer whose health checks run on `runtime` (serve it there too).
    pub fn on(
        runtime: tokio::runtime::Handle,
        health: HealthCheckConfig,
        changes: mpsc::UnboundedSender<HealthChange>,
        limits: ConnLimits,
    ) -> Arc<LoadBalancer> {
        Arc::new(LoadBalancer {
            targets: RwLock::new(Vec::new()),
            rr: AtomicUsize::new(0),
            counters: LbCounters::default(),
            health,
            changes,
            limits,
            conn_stats: Arc::default(),
            runtime,
            spans: std::sync::OnceLock::new(),
            idle_budget: IdleBudget::new(limits.max_connections),
        })
    }

    /// From now on every proxied request is also exported as a span of this hop
    /// (its trace context: the one forwarded to the target as parent). Once only:
    /// false if an exporter was already set.
    pub fn export_spans(&self, exporter: demo_otlp::Exporter) -> bool {
        self.spans.set(exporter).is_ok()
    }

    /// How long a request may wait for its target's answer before the load balancer
    /// answers 504: the client connection's idle timeout, as the ALB has one idle timeout
    /// for both (the connection is not cut as idle meanwhile; see `proxy`).
    pub fn upstream_timeout(&self) -> Duration {
        self.limits.idle_timeout
    }

    pub(crate) fn span_exporter(&self) -> Option<&demo_otlp::Exporter> {
        self.spans.get()
    }

    /// Idle upstream connections held now, across targets.
    pub fn idle_upstreams(&self) -> usize {
        self.idle_budget.held()
    }

    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// (healthy, unhealthy) registered targets; draining and initial count as neither.
    pub fn host_counts(&self) -> (u64, u64) {
        let t = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let mut c = (0, 0);
        for target in t.iter() {
            match target.state() {
                Health::Healthy => c.0 += 1,
                Health::Unhealthy => c.1 += 1,
                _ => {}
            }
        }
        c
    }

    /// Registers a task's address and starts health-checking it.
    pub fn register(self: &Arc<Self>, task_id: &str, addr: SocketAddr) {
        let target = Arc::new(Target {
            task_id: task_id.to_string(),
            addr,
            state: AtomicU8::new(Health::Initial as u8),
            reason: Mutex::new("registered".into()),
            in_flight: AtomicU64::new(0),
            idle: IdleList::new(self.idle_budget.clone()),
        });
        self.targets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.clone());
        self.runtime.spawn(health_check_loop(self.clone(), target));
    }

    /// Takes a target out of rotation and waits (at most `max_wait`) for its
    /// in-flight requests to finish, then forgets it.
    pub async fn deregister(&self, task_id: &str, max_wait: Duration) {
        let target = self.targets().into_iter().find(|t| t.task_id == task_id);
        if let Some(t) = &target {
            t.set(Health::Draining, "deregistered".into());
            // Its idle connections close now; those in use close as their responses end.
            t.idle.clear();
            let start = Instant::now();
            while t.in_flight() > 0 && start.elapsed() < max_wait {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.targets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t| t.task_id != task_id);
    }

    pub(crate) fn pick(&self) -> Option<Arc<Target>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let n = targets.len();
        if n == 0 {
            return None;
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &targets[(start + i) % n])
            .find(|t| t.state() == Health::Healthy)
            .cloned()
    }

    /// Serves until `shutdown` turns true, then stops accepting and waits (at most 30 s)
    /// for open connections to finish their in-flight requests.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let mut limits = self.limits;
        let budget = Budget::raise();
        if let Err(short) = budget.check(limits.max_connections as u64, FDS_PER_CONNECTION) {
            eprintln!("load balancer: {short}");
            limits.max_connections = short.fits.max(1) as usize;
        }
        self.idle_budget.set_max(limits.max_connections);
        let events: demo_netlimits::EventSink = Arc::new(|e| match e {
            Event::AcceptFailing { error } => eprintln!(
                "load balancer: accepting connections fails ({error}); backing off until it works again"
            ),
            Event::AcceptRecovered { errors, paused } => eprintln!(
                "load balancer: accepting again after {errors} failed accepts over {} ms",
                paused.as_millis()
            ),
            Event::AtCapacity { max_connections } => eprintln!(
                "load balancer: {max_connections} connections open (the maximum); new ones wait"
            ),
            Event::CapacityRecovered { waited } => eprintln!(
                "load balancer: below the connection maximum again after {} ms",
                waited.as_millis()
            ),
        });
        let lb = self.clone();
        let stats = self.conn_stats.clone();
        // On shutdown: stop accepting, then give open connections at most 30 s.
        demo_netlimits::serve_connections(
            listener,
            limits,
            stats,
            events,
            move |conn| crate::proxy::serve_connection(lb.clone(), conn),
            shutdown_signal(shutdown),
            Duration::from_secs(30),
        )
        .await;
    }
}

/// One request counted in its target's `in_flight` until dropped: also when
/// the request's future is, as hyper drops it when the client goes away
/// mid-request. (Counting down after the `await` alone left such a request
/// counted forever, and deregistering the target then waited its whole
/// limit for it.)
pub(crate) struct InFlight<'a>(&'a Target);

impl<'a> InFlight<'a> {
    pub(crate) fn count(target: &'a Target) -> InFlight<'a> {
        target.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(target)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Completes when `shutdown` turns true (or its sender is gone).
async fn shutdown_signal(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// This hop as an OTLP server span: named by its method (a load balancer knows no
/// routes), with the HTTP semantic-convention attributes and the target it chose.
pub(crate) fn hop_span(
    trace: demo_tracecontext::TraceContext,
    start: std::time::SystemTime,
    method: String,
    path: String,
    status: u16,
    task_id: &str,
) -> demo_otlp::Span {
    use demo_otlp::Value;
    demo_otlp::Span {
        trace,
        name: method.clone(),
        kind: demo_otlp::Kind::Server,
        start,
        end: std::time::SystemTime::now(),
        error: status >= 500,
        attributes: vec![
            ("http.request.method", Value::from(method)),
            ("url.path", Value::from(path)),
            ("http.response.status_code", Value::I64(i64::from(status))),
            (
                "devops_agent.target.task_id",
                Value::from(task_id.to_owned()),
            ),
        ],
    }
}

async fn probe(lb: &LoadBalancer, target: &Target) -> Result<(), String> {
    let uri = format!("http://{}{}", target.addr, lb.health.path);
    let req = Request::get(uri)
        .header("user-agent", "ELB-HealthChecker/2.0")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    // A separate short-lived client: health checks must not queue behind traffic.
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    match tokio::time::timeout(lb.health.timeout, client.request(req)).await {
        Err(_) => Err(format!(
            "Request timed out ({} ms)",
            lb.health.timeout.as_millis()
        )),
        Ok(Err(e)) => Err(format!("Connection failed: {e}")),
        Ok(Ok(resp)) if resp.status() == StatusCode::OK => Ok(()),
        Ok(Ok(resp)) => Err(format!(
            "Health checks failed with these codes: [{}]",
            resp.status().as_u16()
        )),
    }
}

async fn health_check_loop(lb: Arc<LoadBalancer>, target: Arc<Target>) {
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    loop {
        // Like the ALB, the first check runs one interval after registration.
        tokio::time::sleep(lb.health.interval).await;
        let state = target.state();
        let registered = lb.targets().iter().any(|t| Arc::ptr_eq(t, &target));
        if !registered || state == Health::Draining {
            return;
        }
        let outcome = probe(&lb, &target).await;
        let next = match &outcome {
            Ok(()) => {
                ok_run += 1;
                fail_run = 0;
                (state != Health::Healthy && ok_run >= lb.health.healthy_threshold)
                    .then(|| (Health::Healthy, "Health checks passed".to_string()))
            }
            Err(reason) => {
                fail_run += 1;
                ok_run = 0;
                (state != Health::Unhealthy && fail_run >= lb.health.unhealthy_threshold)
                    .then(|| (Health::Unhealthy, reason.clone()))
            }
        };
        if let Some((health, reason)) = next {
            // Deregistration may have raced with the probe.
            if target.state() == Health::Draining {
                return;
            }
            target.set(health, reason.clone());
            let _ = lb.changes.send(HealthChange {
                task_id: target.task_id.clone(),
                health,
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_time_buckets_are_within_five_percent() {
        let c = LbCounters::default();
        for ms in [1u64, 10, 100, 1000, 2500] {
            c.observe_response_time(Duration::from_millis(ms));
        }
        let snap = c.take();
        assert_eq!(snap.response_times.len(), 5);
        for ((secs, n), ms) in snap.response_times.iter().zip([1u64, 10, 100, 1000, 2500]) {
            let want = ms as f64 / 1000.0;
            assert_eq!(*n, 1);
            assert!((secs / want - 1.0).abs() < 0.026, "{secs} vs {want}");
        }
        assert!(c.take().response_times.is_empty(), "take resets");
    }
}
