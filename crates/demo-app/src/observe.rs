//! The request pipeline around every route: request id, trace context, faults, the
//! timeout, panics, metrics and the access log, in one place so every response
//! (including timeouts, injected failures, panics and cancelled requests) is counted and
//! logged exactly once. See the pipeline in `crate::app`.
//!
//! It is a hand-written tower layer rather than `axum::middleware::from_fn`: `from_fn`
//! clones the route, boxes it again as `Next` and boxes `Next`'s future on every
//! request; here the route's own future is created directly and one box holds the
//! whole request (docs/PERFORMANCE.md, "The service").

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower_service::Service;

use crate::app::{AppState, REQUEST_ID};
use crate::error::AppError;
use crate::metrics;

/// Wraps each route in [`Observe`]: `Router::layer(ObserveLayer::new(state))`.
#[derive(Clone)]
pub struct ObserveLayer {
    state: Arc<AppState>,
}

impl ObserveLayer {
    pub fn new(state: Arc<AppState>) -> ObserveLayer {
        ObserveLayer { state }
    }
}

impl<S> tower_layer::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            state: self.state.clone(),
            inner,
        }
    }
}

/// One route, observed.
#[derive(Clone)]
pub struct Observe<S> {
    state: Arc<AppState>,
    inner: S,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let state = self.state.clone();
        let (record, too_large) = begin(&state, &req);
        // Built now, polled only if `observe` admits the request (dropped unpolled otherwise).
        let next = self.inner.call(req);
        Box::pin(async move {
            let next = async {
                match next.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            Ok(observe(state, record, too_large, next).await)
        })
    }
}

/// Runs `work`, turning a panic in it into a clean 500. The panic message itself was
/// logged by the panic hook (see `cli::serve`); the body stays clean. Unlike a
/// `CatchPanicLayer` this neither boxes nor clones anything per request.
async fn catch_panic(work: impl Future<Output = Response>) -> Response {
    let mut work = std::pin::pin!(work);
    let caught = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(_) => Poll::Ready(Err(())),
        }
    })
    .await;
    caught.unwrap_or_else(|()| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal_error", "message": "internal error"})),
        )
            .into_response()
    })
}

/// Logs and counts a request exactly once, even when its future is dropped (client gone).
struct RequestRecord {
    state: Arc<AppState>,
    method: Method,
    route: Option<MatchedPath>,
    uri: axum::http::Uri,
    /// Always a valid header value: the caller's id if acceptable, else a generated one.
    request_id: HeaderValue,
    client_ip: IpAddr,
    user_agent: Option<HeaderValue>,
    /// The request's trace (the caller's `traceparent` continued, or a new one).
    trace: crate::trace::TraceContext,
    start: Instant,
    done: bool,
}

impl RequestRecord {
    fn finish(&mut self, status: u16) {
        self.done = true;
        let latency = self.start.elapsed();
        let route = self
            .route
            .as_ref()
            .map_or(metrics::UNMATCHED, |m| m.as_str());
        let st = &self.state;
        st.http
            .observe(self.method.as_str(), route, status, latency);
        let method = metrics::method_label(self.method.as_str());
        st.http.request_finished();
        // 5xx access lines are WARN: the cause is logged at ERROR exactly once where it
        // happens, so the ErrorCount metric filter counts failures, not failures twice.
        let level = if status >= 500 {
            crate::log::Level::Warn
        } else {
            crate::log::Level::Info
        };
        st.log
            .line(level, "request completed")
            .str("request_id", self.request_id.to_str().unwrap_or(""))
            .trace(&self.trace)
            .str("method", method)
            .str("route", route)
            .capped("path", self.uri.path(), crate::log::MAX_LOGGED_PATH)
            .u64("status", u64::from(status))
            .millis("latency_ms", latency)
            .display("client_ip", self.client_ip)
            .str(
                "user_agent",
                self.user_agent
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
            .emit();
        if let Some(spans) = &st.spans {
            spans.record(self.span(method, route, status, latency));
        }
    }

    /// This request as an OTLP server span, with the ids its log lines carry and
    /// attributes named by OpenTelemetry's HTTP semantic conventions.
    fn span(&self, method: &str, route: &str, status: u16, latency: Duration) -> demo_otlp::Span {
        use demo_otlp::Value;
        let end = SystemTime::now();
        let mut attributes = vec![
            // The conventions' name for a method outside the standard set.
            (
                "http.request.method",
                Value::from(if method == "other" { "_OTHER" } else { method }.to_string()),
            ),
            ("url.path", Value::from(self.uri.path().to_string())),
            ("http.response.status_code", Value::I64(i64::from(status))),
            ("client.address", Value::from(self.client_ip.to_string())),
            (
                "http.request.header.x-request-id",
                Value::from(self.request_id.to_str().unwrap_or("").to_string()),
            ),
        ];
        if self.route.is_some() {
            attributes.push(("http.route", Value::from(route.to_string())));
        }
        demo_otlp::Span {
            trace: self.trace,
            name: match &self.route {
                Some(_) => format!("{method} {route}"),
                None => method.to_string(),
            },
            kind: demo_otlp::Kind::Server,
            start: end.checked_sub(latency).unwrap_or(end),
            end,
            error: status >= 500,
            attributes,
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.done {
            // nginx's convention: 499 = client closed the request before the response.
            self.finish(499);
        }
    }
}

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// 32 random hex digits.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

/// The client as our load balancer saw it: the last (rightmost) `X-Forwarded-For` hop,
/// which the proxy in front appends from its TCP peer, if it is an IP address; else the
/// TCP peer. Earlier hops are whatever the client chose to send and are never trusted.
fn client_ip(req: &Request) -> IpAddr {
    req.headers()
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        .or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Whether the request declares a body longer than `limit` (answered 413 before reading).
fn declared_too_large(req: &Request, limit: usize) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// What `observe` takes from the request before the route runs: the record that logs
/// and counts it, and whether its declared body is over the limit.
fn begin(state: &Arc<AppState>, req: &Request) -> (RequestRecord, bool) {
    state.http.request_started();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .filter(|v| valid_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let record = RequestRecord {
        state: state.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        client_ip: client_ip(req),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        trace: crate::trace::TraceContext::continue_or_start(
            req.headers()
                .get(crate::trace::TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        ),
        route,
        request_id,
        start: Instant::now(),
        done: false,
    };
    let too_large = declared_too_large(req, state.config.max_body_bytes);
    (record, too_large)
}

/// Serves one request: faults, the timeout, the trace scope, panics, the response's
/// request id, then the record. `next` is the route's future, built but not yet polled:
/// it runs only if the request is admitted.
async fn observe(
    state: Arc<AppState>,
    mut record: RequestRecord,
    too_large: bool,
    next: impl Future<Output = Response>,
) -> Response {
    let is_api = record
        .route
        .as_ref()
        .is_some_and(|r| r.as_str().starts_with("/api/"));
    let (fail, delay) = if let Some(route) = record.route.as_ref().filter(|_| is_api) {
        state.faults.roll(route.as_str())
    } else {
        (false, None)
    };
    // The CPU-cost fault: this request waits its turn on the task's CPU (see crate::faults).
    let cpu_turn = record
        .route
        .as_ref()
        .and_then(|r| state.faults.cpu_turn(r.as_str()));
    let timeout = state.config.request_timeout;
    let work = async {
        if let Some(turn) = cpu_turn {
            state.faults.take_cpu_turn(turn).await;
        }
        if too_large {
            // Waiting for a body that may never come (or is gigabytes) helps nobody.
            return AppError::PayloadTooLarge {
                limit: state.config.max_body_bytes,
            }
            .into_response();
        }
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if fail {
            state
                .log
                .error("Injected failure on API request")
                .str("request_id", record.request_id.to_str().unwrap_or(""))
                .str("route", record.route.as_ref().map_or("", |r| r.as_str()))
                .str("fault", "error-rate")
                .emit();
            return AppError::Injected("injected failure (error-rate fault)".into())
                .into_response();
        }
        catch_panic(next).await
    };
    // Every line logged while the request is served carries its trace (see crate::trace).
    let mut response = match with_timeout(timeout, crate::trace::scope(record.trace, work)).await {
        Ok(r) => r,
        Err(_) => {
            state
                .log
                .error("Request timed out")
                .str("request_id", record.request_id.to_str().unwrap_or(""))
                .trace(&record.trace)
                .str(
                    "route",
                    record
                        .route
                        .as_ref()
                        .map_or(metrics::UNMATCHED, |r| r.as_str()),
                )
                .u64("timeout_ms", timeout.as_millis() as u64)
                .emit();
            AppError::Timeout(format!(
                "request exceeded {} ms (REQUEST_TIMEOUT_MS)",
                timeout.as_millis()
            ))
            .into_response()
        }
    };
    response
        .headers_mut()
        .insert(REQUEST_ID, record.request_id.clone());
    // Rejections from axum's own extractors (body limit) are plain text: make them JSON.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        let id = response.headers().get(REQUEST_ID).cloned();
        response = AppError::PayloadTooLarge {
            limit: state.config.max_body_bytes,
        }
        .into_response();
        if let Some(id) = id {
            response.headers_mut().insert(REQUEST_ID, id);
        }
    }
    record.finish(response.status().as_u16());
    response
}

/// `tokio::time::timeout`, but a future that completes on its first poll (most
/// requests) never arms a timer: registering one per request costs about a tenth
/// of the service's throughput.
async fn with_timeout<F: Future>(limit: Duration, work: F) -> Result<F::Output, ()> {
    let mut work = std::pin::pin!(work);
    let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => tokio::time::timeout(limit, work).await.map_err(|_| ()),
    }
}
