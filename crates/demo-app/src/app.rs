//! The HTTP application: state, router and the request pipeline.
//!
//! Pipeline, outermost first:
//! 1. `observe` (`crate::observe`) — request id, timing, metrics and the access log, in one place so every
//!    response (including timeouts, injected failures, panics and cancelled requests) is
//!    counted and logged exactly once. It sits inside routing (`Router::layer`) so it sees
//!    `MatchedPath` and labels metrics by route template, never by raw path. A declared
//!    `Content-Length` over the body limit is answered 413 here, before any body is read.
//!    Inside it, `poll_catching_panics`: a bug in a handler becomes a 500 (not a dropped
//!    connection), which `observe` then counts on its route like any other 5xx. The panic
//!    itself is logged once at ERROR by the panic hook (`cli::serve`).
//! 2. Body limit (`DefaultBodyLimit`) on the one route that reads a body (`/api/quote`):
//!    oversized bodies are refused before parsing.
//! 3. Handlers; the `/error/*` routes additionally pass the `gate` (FAULTS, token).
//!
//! Every `Router::layer` wraps each route in one more boxed service that is cloned, and
//! whose future is boxed, on every request. Panic catching and the body limit used to
//! be two such layers around every route; they now live inside `observe` and on the
//! route that needs them (docs/PERFORMANCE.md, "The service").

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api;
use crate::config::{Config, FaultMode};
use crate::error::AppError;
use crate::extract::ValidQuery;
use crate::faults::{ErrorRate, Faults, Latency};
use crate::log::{Logger, Timestamp};
use crate::metrics::{self, HttpMetrics, Info, MemorySampler, ProcessSampler};
use crate::observe::ObserveLayer;

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

/// Builds the router. No sockets: tests drive it with `oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    let faults = Router::new()
        .route("/error/500", get(fault_500).post(fault_500))
        .route("/error/timeout", get(fault_timeout).post(fault_timeout))
        .route("/error/memory-leak", get(fault_leak).post(fault_leak))
        .route("/error/clear-memory", get(fault_clear).post(fault_clear))
        .route("/error/cpu-spike", get(fault_cpu).post(fault_cpu))
        .route(
            "/error/disable-health",
            get(fault_disable_health).post(fault_disable_health),
        )
        .route(
            "/error/enable-health",
            get(fault_enable_health).post(fault_enable_health),
        )
        .route(
            "/error/error-rate",
            get(fault_error_rate).post(fault_error_rate),
        )
        .route("/error/latency", get(fault_latency).post(fault_latency))
        .route("/error/crash", get(fault_crash).post(fault_crash))
        .route("/error/reset", get(fault_reset).post(fault_reset))
        .route("/error/panic", get(fault_panic).post(fault_panic))
        .route(
            "/error/cpu-cost",
            get(crate::faults::http_cpu_cost).post(crate::faults::http_cpu_cost),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), gate));

    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics_handler))
        .route("/api/products", get(api::list_products))
        .route("/api/products/{id}", get(api::get_product))
        .route(
            "/api/quote",
            post(api::quote).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/api/reports/sales", get(api::sales_report))
        .merge(faults)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(ObserveLayer::new(state.clone()))
        .with_state(state)
}

/// Admits `/error/*` requests only when faults are enabled and, if a token is configured,
/// the request carries it.
async fn gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.config.faults == FaultMode::Disabled {
        return AppError::FaultsDisabled.into_response();
    }
    if let Some(expected) = &state.config.fault_token {
        let given = req
            .headers()
            .get(FAULT_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
            state
                .log
                .warn("Fault request rejected: missing or wrong token")
                .capped("path", req.uri().path(), crate::log::MAX_LOGGED_PATH)
                .emit();
            return AppError::FaultTokenRequired.into_response();
        }
    }
    next.run(req).await
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

async fn root(State(st): State<Arc<AppState>>) -> Response {
    json_bytes(root_body(&st.root_head, Timestamp::now(), st.http.total()))
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

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if !st.faults.health_enabled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy",
                "reason": "health check disabled by fault injection (/error/disable-health)",
                "task_id": st.config.task_id,
            })),
        )
            .into_response();
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
}

/// A response of serialised JSON, with `Json`'s `content-type`.
fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
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

async fn metrics_handler(State(st): State<Arc<AppState>>) -> Response {
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
        .into_response()
}

async fn not_found(req: Request<Body>) -> AppError {
    let path = req.uri().path();
    let shown = match crate::log::cap(path, crate::log::MAX_LOGGED_PATH) {
        None => path.to_string(),
        Some((kept, cut)) => format!("{kept}…[cut {cut} bytes]"),
    };
    let method = req.method().as_str();
    let method = crate::log::cap(method, 32).map_or(method, |(kept, _)| kept);
    AppError::NotFound(format!("no route for {method} {shown}"))
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

// ---- faults -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

async fn fault_500(State(st): State<Arc<AppState>>, _: ValidQuery<NoParams>) -> AppError {
    st.log
        .error("Intentional 500 error triggered")
        .str("fault", "error-500")
        .emit();
    AppError::Injected("intentional 500 error (/error/500)".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutParams {
    delay_ms: Option<u64>,
}

async fn fault_timeout(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<TimeoutParams>,
) -> Result<AppError, AppError> {
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

async fn fault_leak(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<LeakParams>,
) -> Result<Json<Value>, AppError> {
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

async fn fault_clear(State(st): State<Arc<AppState>>, _: ValidQuery<NoParams>) -> Json<Value> {
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

async fn fault_cpu(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<CpuParams>,
) -> Result<(StatusCode, Json<Value>), AppError> {
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

async fn fault_disable_health(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<DurationParams>,
) -> Result<Json<Value>, AppError> {
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

async fn fault_enable_health(
    State(st): State<Arc<AppState>>,
    _: ValidQuery<NoParams>,
) -> Json<Value> {
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

async fn fault_error_rate(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<ErrorRateParams>,
) -> Result<Json<Value>, AppError> {
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

async fn fault_latency(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<LatencyParams>,
) -> Result<Json<Value>, AppError> {
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

async fn fault_crash(
    State(st): State<Arc<AppState>>,
    ValidQuery(p): ValidQuery<CrashParams>,
) -> Result<(StatusCode, Json<Value>), AppError> {
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
async fn fault_panic(_: ValidQuery<NoParams>) -> Response {
    panic!("panic injected by /error/panic");
}

async fn fault_reset(State(st): State<Arc<AppState>>, _: ValidQuery<NoParams>) -> Json<Value> {
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
