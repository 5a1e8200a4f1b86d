//! The HTTP application: state, route table and the request pipeline.
//!
//! Pipeline, outermost first:
//! 1. `observe` (`crate::observe::Service`) — the route lookup (`crate::routes`), then
//!    request id, timing, faults, metrics and the access log, in one place so every
//!    response (including timeouts, injected failures, panics and cancelled requests) is
//!    counted and logged exactly once. Metrics and logs are labelled by the route's
//!    template, never by raw path. A declared `Content-Length` over the body limit is
//!    answered 413 here, before any body is read. A panic in a handler becomes a 500
//!    (not a dropped connection), counted on its route like any other 5xx; the panic
//!    itself is logged once at ERROR by the panic hook (`cli::serve`).
//! 2. The `/error/*` routes pass the `gate` (FAULTS, token).
//! 3. Handlers. The one route that reads a body (`/api/quote`) reads at most
//!    `MAX_BODY_BYTES` of it, also when it comes chunked.
//!
//! The route table was an axum `Router` with `observe` as a layer: per request that
//! cloned two boxed services, boxed three futures and built two request extensions,
//! more than the request's own work (docs/PERFORMANCE.md, "The service").

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api;
use crate::config::{Config, FaultMode};
use crate::error::AppError;
use crate::faults::{ErrorRate, Faults, Latency};
use crate::log::{Logger, Timestamp};
use crate::metrics::{self, HttpMetrics, Info, MemorySampler, ProcessSampler};
use crate::observe::Service;
use crate::routes::{Call, Reply, Routes, get, post};

pub const REQUEST_ID: &str = "x-request-id";
pub const FAULT_TOKEN_HEADER: &str = "x-fault-token";

/// Everything a handler may touch; shared by all requests.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub log: Logger,
    pub http: HttpMetrics,
    pub faults: Faults,
    pub started: Instant,
    pub start_time: SystemTime,
    /// Client-connection counters, kept by the server (`server::serve`).
    pub connections: Arc<demo_netlimits::ConnStats>,
    info: Info,
    process: ProcessSampler,
    /// Resident memory for `/health` (see `MemorySampler`).
    memory: MemorySampler,
    /// `/`'s body up to its per-request fields (see `root_head`).
    root_head: Box<[u8]>,
    /// OTLP span export, when `OTEL_EXPORTER_OTLP_ENDPOINT` asks for it (off: `None`, no cost).
    pub spans: Option<demo_otlp::Exporter>,
}

impl AppState {
    pub fn new(config: Config, log: Logger) -> Arc<AppState> {
        AppState::with_spans(config, log, None)
    }

    /// The state of a service that exports a span per request to `spans`.
    pub fn with_spans(
        config: Config,
        log: Logger,
        spans: Option<demo_otlp::Exporter>,
    ) -> Arc<AppState> {
        let start_time = SystemTime::now();
        let root_head = root_head(&config);
        Arc::new(AppState {
            info: Info {
                version: config.version.clone(),
                git_sha: config.git_sha.clone(),
                environment: config.environment.clone(),
                task_id: config.task_id.clone(),
                start_time,
            },
            faults: Faults::new(config.limits.clone()),
            config,
            log,
            http: HttpMetrics::default(),
            started: Instant::now(),
            start_time,
            connections: Arc::default(),
            process: ProcessSampler::new(Duration::from_secs(1)),
            memory: MemorySampler::new(HEALTH_MEMORY_MAX_AGE),
            root_head,
            spans,
        })
    }
}

/// Builds the application: the route table inside the request pipeline. No sockets:
/// tests call it as a `tower_service::Service`.
pub fn app(state: Arc<AppState>) -> Service {
    let routes = Routes::new(not_found, method_not_allowed)
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics_handler))
        .route("/api/products", get(api::list_products))
        .route("/api/products/{id}", get(api::get_product))
        .route("/api/quote", post(api::quote))
        .route("/api/reports/sales", get(api::sales_report))
        .gated("/error/500", get(fault_500).post(fault_500))
        .gated("/error/timeout", get(fault_timeout).post(fault_timeout))
        .gated("/error/memory-leak", get(fault_leak).post(fault_leak))
        .gated("/error/clear-memory", get(fault_clear).post(fault_clear))
        .gated("/error/cpu-spike", get(fault_cpu).post(fault_cpu))
        .gated(
            "/error/disable-health",
            get(fault_disable_health).post(fault_disable_health),
        )
        .gated(
            "/error/enable-health",
            get(fault_enable_health).post(fault_enable_health),
        )
        .gated(
            "/error/error-rate",
            get(fault_error_rate).post(fault_error_rate),
        )
        .gated("/error/latency", get(fault_latency).post(fault_latency))
        .gated("/error/crash", get(fault_crash).post(fault_crash))
        .gated("/error/reset", get(fault_reset).post(fault_reset))
        .gated("/error/panic", get(fault_panic).post(fault_panic))
        .gated(
            "/error/cpu-cost",
            get(crate::faults::http_cpu_cost).post(crate::faults::http_cpu_cost),
        );
    Service::new(state, routes)
}

/// Admits `/error/*` requests only when faults are enabled and, if a token is configured,
/// the request carries it.
pub(crate) fn gate(state: &AppState, req: &Parts) -> Result<(), AppError> {
    if state.config.faults == FaultMode::Disabled {
        return Err(AppError::FaultsDisabled);
    }
    if let Some(expected) = &state.config.fault_token {
        let given = req
            .headers
            .get(FAULT_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
            state
                .log
                .warn("Fault request rejected: missing or wrong token")
                .capped("path", req.uri.path(), crate::log::MAX_LOGGED_PATH)
                .emit();
            return Err(AppError::FaultTokenRequired);
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/`'s body is `{"service":"demo-app","version":..,"git_sha":..,"environment":..,
/// "task_id":..,"timestamp":..,"request_count":..}`. The fields fixed for the process's
/// life are serialised once (`root_head`); each request appends the rest (`root_body`).
/// The bytes are those `serde_json` writes for the whole object (checked in the tests).
/// The body up to `task_id`, without the closing brace.
fn root_head(c: &Config) -> Box<[u8]> {
    #[derive(serde::Serialize)]
    struct Head<'a> {
        service: &'static str,
        version: &'a str,
        git_sha: &'a str,
        environment: &'a str,
        task_id: &'a str,
    }
    let mut head = serde_json::to_vec(&Head {
        service: "demo-app",
        version: &c.version,
        git_sha: &c.git_sha,
        environment: &c.environment,
        task_id: &c.task_id,
    })
    .expect("a struct of strings always serialises");
    head.pop();
    head.into()
}

/// Sized exactly: a `Vec` with spare capacity costs one more allocation when it
/// becomes the response's `Bytes`.
fn root_body(head: &[u8], timestamp: Timestamp, request_count: u64) -> Vec<u8> {
    const FIXED: usize = r#","timestamp":"","request_count":}"#.len();
    let mut digits = itoa::Buffer::new();
    let count = digits.format(request_count);
    let mut body = Vec::with_capacity(head.len() + FIXED + timestamp.as_str().len() + count.len());
    body.extend_from_slice(head);
    body.extend_from_slice(b",\"timestamp\":\"");
    body.extend_from_slice(timestamp.as_str().as_bytes());
    body.extend_from_slice(b"\",\"request_count\":");
    body.extend_from_slice(count.as_bytes());
    body.push(b'}');
    body
}

fn root(cx: Call) -> Reply {
    let st = &cx.state;
    json_bytes(root_body(&st.root_head, Timestamp::now(), st.http.total())).into()
}

/// How old `/health`'s `memory_rss_bytes` may be: a figure a tenth of a second old
/// tells a health checker (every 30 s) nothing less, and costs one `/proc` read per
/// 100 ms however many checks arrive.
const HEALTH_MEMORY_MAX_AGE: Duration = Duration::from_millis(100);

/// `/health`'s body. Fields in the alphabetical order the earlier `json!` map wrote,
/// so the bytes on the wire are unchanged.
#[derive(serde::Serialize)]
struct HealthBody<'a> {
    git_sha: &'a str,
    in_flight: u64,
    leaked_bytes: u64,
    memory_rss_bytes: u64,
    status: &'static str,
    task_id: &'a str,
    uptime_s: f64,
    version: &'a str,
}

fn health(cx: Call) -> Reply {
    let st = &cx.state;
    if !st.faults.health_enabled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy",
                "reason": "health check disabled by fault injection (/error/disable-health)",
                "task_id": st.config.task_id,
            })),
        )
            .into();
    }
    json_response(
        &st.log,
        &HealthBody {
            git_sha: &st.config.git_sha,
            in_flight: st.http.in_flight(),
            leaked_bytes: st.faults.leaked_bytes(),
            memory_rss_bytes: st.memory.resident_bytes(),
            status: "healthy",
            task_id: &st.config.task_id,
            uptime_s: st.started.elapsed().as_secs_f64(),
            version: &st.config.version,
        },
    )
    .into()
}

/// A response of serialised JSON, with `Json`'s `content-type` (built directly: the
/// `([(header, value)], body)` form first sets `application/octet-stream`, then replaces it).
fn json_bytes(body: Vec<u8>) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `Json(body).into_response()` for the bodies served on every request (`/`,
/// `/health`): the same bytes and `content-type`, serialised into a buffer sized for
/// them at once (axum's starts at 128 bytes and grows, copying, for these ~170).
fn json_response<T: serde::Serialize>(log: &Logger, body: &T) -> Response {
    let mut buf = Vec::with_capacity(256);
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => json_bytes(buf),
        // Only a type whose `Serialize` fails gets here; these bodies have none.
        Err(e) => {
            log.error("Response body not serialisable")
                .str("error", &e.to_string())
                .emit();
            AppError::Internal(format!("response body: {e}")).into_response()
        }
    }
}

fn metrics_handler(cx: Call) -> Reply {
    let st = &cx.state;
    let mut body = metrics::render(
        &st.http,
        &st.info,
        st.process.sample(),
        st.faults.gauges(),
        st.log.lines(),
        st.log.dropped(),
    );
    metrics::render_connections(&mut body, &st.connections);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into()
}

fn not_found(cx: Call) -> Reply {
    let path = cx.parts.uri.path();
    let shown = match crate::log::cap(path, crate::log::MAX_LOGGED_PATH) {
        None => path.to_string(),
        Some((kept, cut)) => format!("{kept}…[cut {cut} bytes]"),
    };
    let method = cx.parts.method.as_str();
    let method = crate::log::cap(method, 32).map_or(method, |(kept, _)| kept);
    AppError::NotFound(format!("no route for {method} {shown}")).into()
}

fn method_not_allowed(_: Call) -> Reply {
    AppError::MethodNotAllowed.into()
}

// ---- faults -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

fn fault_500(cx: Call) -> Reply {
    cx.query::<NoParams>().and_then(|_| fail(&cx.state)).into()
}

fn fail(st: &AppState) -> Result<(), AppError> {
    st.log
        .error("Intentional 500 error triggered")
        .str("fault", "error-500")
        .emit();
    Err(AppError::Injected(
        "intentional 500 error (/error/500)".into(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutParams {
    delay_ms: Option<u64>,
}

fn fault_timeout(cx: Call) -> Reply {
    Reply::later(timeout(cx))
}

async fn timeout(cx: Call) -> Result<AppError, AppError> {
    let (st, p) = (&cx.state, cx.query::<TimeoutParams>()?);
    let delay = st.faults.delay(p.delay_ms.unwrap_or(5_000), "delay_ms")?;
    tokio::time::sleep(delay).await;
    st.log
        .error("Simulated upstream timeout")
        .str("fault", "timeout")
        .u64("delay_ms", delay.as_millis() as u64)
        .emit();
    Ok(AppError::Timeout(format!(
        "simulated upstream dependency timed out after {} ms",
        delay.as_millis()
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeakParams {
    mb: Option<u64>,
}

fn fault_leak(cx: Call) -> Reply {
    Reply::later(leak(cx))
}

async fn leak(cx: Call) -> Result<Json<Value>, AppError> {
    let (st, p) = (&cx.state, cx.query::<LeakParams>()?);
    let mb = p.mb.unwrap_or(10);
    let st2 = st.clone();
    // Allocating and touching tens of MiB takes milliseconds: keep it off the reactor.
    let result = tokio::task::spawn_blocking(move || st2.faults.leak(mb))
        .await
        .map_err(|e| AppError::Unavailable(format!("leak task failed: {e}")))?;
    // Resident memory changed on purpose: /health must show it now, not in 100 ms.
    st.memory.invalidate();
    match result {
        Ok(total) => {
            st.log
                .warn("Memory leak injected")
                .str("fault", "memory-leak")
                .u64("leaked_mb", mb)
                .u64("total_leaked_bytes", total)
                .emit();
            Ok(Json(json!({"leaked_mb": mb, "total_leaked_bytes": total})))
        }
        Err(e) => {
            st.log
                .warn("Memory leak refused")
                .str("fault", "memory-leak")
                .str("reason", &e.to_string())
                .emit();
            Err(e.into())
        }
    }
}

fn fault_clear(cx: Call) -> Reply {
    cx.query::<NoParams>().map(|_| clear(&cx.state)).into()
}

fn clear(st: &AppState) -> Json<Value> {
    let freed = st.faults.clear_memory();
    st.memory.invalidate();
    st.log
        .warn("Leaked memory cleared")
        .str("fault", "memory-leak")
        .u64("freed_bytes", freed)
        .emit();
    Json(json!({"freed_bytes": freed}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuParams {
    seconds: Option<u64>,
    threads: Option<u32>,
    percent: Option<u32>,
}

fn fault_cpu(cx: Call) -> Reply {
    cpu(&cx).into()
}

fn cpu(cx: &Call) -> Result<(StatusCode, Json<Value>), AppError> {
    let (st, p) = (&cx.state, cx.query::<CpuParams>()?);
    let spike = st.faults.cpu_spike(
        p.threads.unwrap_or(1),
        p.seconds.unwrap_or(30),
        p.percent.unwrap_or(100),
    )?;
    st.log
        .warn("CPU spike started")
        .str("fault", "cpu-spike")
        .u64("threads", u64::from(spike.threads))
        .u64("seconds", spike.seconds)
        .u64("percent", u64::from(spike.percent))
        .emit();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"threads": spike.threads, "seconds": spike.seconds, "percent": spike.percent})),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DurationParams {
    duration_s: Option<u64>,
}

fn fault_disable_health(cx: Call) -> Reply {
    disable_health(&cx).into()
}

fn disable_health(cx: &Call) -> Result<Json<Value>, AppError> {
    let (st, p) = (&cx.state, cx.query::<DurationParams>()?);
    let lasts = st.faults.duration(p.duration_s)?;
    st.faults.disable_health(lasts);
    st.log
        .warn("Health check disabled")
        .str("fault", "disable-health")
        .u64("duration_s", lasts.as_secs())
        .emit();
    Ok(Json(
        json!({"health": "disabled", "duration_s": lasts.as_secs()}),
    ))
}

fn fault_enable_health(cx: Call) -> Reply {
    cx.query::<NoParams>()
        .map(|_| enable_health(&cx.state))
        .into()
}

fn enable_health(st: &AppState) -> Json<Value> {
    st.faults.enable_health();
    st.log
        .warn("Health check re-enabled")
        .str("fault", "disable-health")
        .emit();
    Json(json!({"health": "enabled"}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorRateParams {
    percent: f64,
    route: Option<String>,
    duration_s: Option<u64>,
}

fn fault_error_rate(cx: Call) -> Reply {
    error_rate(&cx).into()
}

fn error_rate(cx: &Call) -> Result<Json<Value>, AppError> {
    let (st, p) = (&cx.state, cx.query::<ErrorRateParams>()?);
    let lasts = st.faults.duration(p.duration_s)?;
    st.faults.set_error_rate(
        ErrorRate {
            percent: p.percent,
            route: p.route.clone(),
        },
        lasts,
    )?;
    st.log
        .warn("Error rate fault set")
        .str("fault", "error-rate")
        .f64("percent", p.percent)
        .str("route", p.route.as_deref().unwrap_or("/api/*"))
        .u64("duration_s", lasts.as_secs())
        .emit();
    Ok(Json(
        json!({"error_rate_percent": p.percent, "duration_s": lasts.as_secs()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyParams {
    ms: u64,
    percent: Option<f64>,
    route: Option<String>,
    duration_s: Option<u64>,
}

fn fault_latency(cx: Call) -> Reply {
    latency(&cx).into()
}

fn latency(cx: &Call) -> Result<Json<Value>, AppError> {
    let (st, p) = (&cx.state, cx.query::<LatencyParams>()?);
    let delay = st.faults.delay(p.ms, "ms")?;
    let lasts = st.faults.duration(p.duration_s)?;
    let percent = p.percent.unwrap_or(100.0);
    st.faults.set_latency(
        Latency {
            delay,
            percent,
            route: p.route.clone(),
        },
        lasts,
    )?;
    st.log
        .warn("Latency fault set")
        .str("fault", "latency")
        .str("route", p.route.as_deref().unwrap_or("/api/*"))
        .u64("ms", p.ms)
        .f64("percent", percent)
        .u64("duration_s", lasts.as_secs())
        .emit();
    Ok(Json(
        json!({"latency_ms": p.ms, "percent": percent, "duration_s": lasts.as_secs()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrashParams {
    exit_code: Option<i32>,
    delay_ms: Option<u64>,
}

fn fault_crash(cx: Call) -> Reply {
    crash(&cx).into()
}

fn crash(cx: &Call) -> Result<(StatusCode, Json<Value>), AppError> {
    let (st, p) = (&cx.state, cx.query::<CrashParams>()?);
    let code = p.exit_code.unwrap_or(1);
    if !(1..=255).contains(&code) {
        return Err(AppError::bad_field(
            "exit_code",
            "must be 1..=255 (a crash exits non-zero)",
        ));
    }
    let delay = st.faults.delay(p.delay_ms.unwrap_or(100), "delay_ms")?;
    st.log
        .error("Crash injected: process exiting")
        .str("fault", "crash")
        .i64("exit_code", i64::from(code))
        .u64("delay_ms", delay.as_millis() as u64)
        .emit();
    let log = st.log.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        log.shutdown();
        std::process::exit(code);
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"crashing_in_ms": delay.as_millis() as u64, "exit_code": code})),
    ))
}

/// A handler bug on purpose: shows that a panic answers 500, is logged once at ERROR
/// (by the panic hook) and is counted on its route.
fn fault_panic(cx: Call) -> Reply {
    cx.query::<NoParams>()
        .map(|_| -> Json<Value> { panic!("panic injected by /error/panic") })
        .into()
}

fn fault_reset(cx: Call) -> Reply {
    cx.query::<NoParams>().map(|_| reset(&cx.state)).into()
}

fn reset(st: &AppState) -> Json<Value> {
    let freed = st.faults.reset();
    st.memory.invalidate();
    st.log
        .warn("All faults reset")
        .str("fault", "reset")
        .u64("freed_bytes", freed)
        .emit();
    Json(json!({"reset": true, "freed_bytes": freed}))
}

/// Used by `demo-app healthcheck` and tests: how long to wait for `/health`.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    /// `/`'s body as one struct: what `root_body` must write.
    #[derive(serde::Serialize)]
    struct RootBody<'a> {
        service: &'static str,
        version: &'a str,
        git_sha: &'a str,
        environment: &'a str,
        task_id: &'a str,
        timestamp: Timestamp,
        request_count: u64,
    }

    #[test]
    fn the_root_body_is_the_bytes_serde_json_writes_for_it() {
        let odd = [
            "",
            "plain",
            "quote \" back \\ slash",
            "line\nbreak\u{1}",
            "é€😀",
        ];
        for (i, s) in odd.iter().enumerate() {
            let mut config = Config::from_env(&Default::default()).expect("defaults are valid");
            config.version = s.to_string();
            config.git_sha = odd[(i + 1) % odd.len()].to_string();
            config.environment = odd[(i + 2) % odd.len()].to_string();
            config.task_id = odd[(i + 3) % odd.len()].to_string();
            let ts = Timestamp::now();
            for count in [0, 7, 10, 99, 100, u64::MAX] {
                let expected = serde_json::to_vec(&RootBody {
                    service: "demo-app",
                    version: &config.version,
                    git_sha: &config.git_sha,
                    environment: &config.environment,
                    task_id: &config.task_id,
                    timestamp: ts,
                    request_count: count,
                })
                .unwrap();
                let got = root_body(&root_head(&config), ts, count);
                assert_eq!(got.capacity(), got.len(), "sized exactly");
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }
}
