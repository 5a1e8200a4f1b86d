//! The request pipeline around every route: request id, trace context, faults, the
//! timeout, panics, metrics and the access log, in one place so every response
//! (including timeouts, injected failures, panics and cancelled requests) is counted and
//! logged exactly once. See the pipeline in `crate::app`.
//!
//! It is a hand-written tower layer rather than `axum::middleware::from_fn`: `from_fn`
//! clones the route, boxes it again as `Next` and boxes `Next`'s future on every
//! request; here the route's own future is created directly, and `ObserveFuture` is a
//! hand-written future holding it once: the box axum puts every route's future in is
//! the only one, and a request without faults allocates nothing here beyond its
//! generated id (docs/PERFORMANCE.md, "The service").

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower_service::Service;

use crate::app::{AppState, REQUEST_ID};

/// The header names read or written on every request, parsed once: a `&str` name is
/// parsed and hashed anew on every lookup.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(crate::trace::TRACEPARENT);
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
    S::Future: Send + Unpin + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let (record, too_large) = begin(&self.state, &req);
        // Built now, polled only if the request is admitted (dropped unpolled otherwise).
        ObserveFuture {
            record,
            too_large,
            stage: Stage::Start(self.inner.call(req)),
            timeout: None,
        }
    }
}

/// Logs and counts a request exactly once, even when its future is dropped (client gone).
struct RequestRecord {
    state: Arc<AppState>,
    method: Method,
    route: Option<MatchedPath>,
    uri: axum::http::Uri,
    request_id: RequestId,
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
            .str("request_id", self.request_id.as_str())
            .trace(&self.trace)
            .str("method", method)
            .str("route", route)
            .capped("path", self.uri.path(), crate::log::MAX_LOGGED_PATH)
            .u64("status", u64::from(status))
            .millis("latency_ms", latency)
            .ip("client_ip", self.client_ip)
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
                Value::from(self.request_id.as_str().to_string()),
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

/// A request's id: the caller's `x-request-id` if acceptable, else 32 random hex digits.
/// A generated id lives inline: it becomes a header value once, for the response,
/// and the log line reads it from here (cloning a freshly built header value would
/// allocate again).
enum RequestId {
    Given(HeaderValue),
    New([u8; 32]),
}

impl RequestId {
    fn as_str(&self) -> &str {
        match self {
            // `valid_request_id` admitted only visible ASCII.
            RequestId::Given(v) => v.to_str().unwrap_or(""),
            RequestId::New(hex) => std::str::from_utf8(hex).unwrap_or(""),
        }
    }

    fn header(&self) -> HeaderValue {
        match self {
            RequestId::Given(v) => v.clone(),
            RequestId::New(hex) => {
                HeaderValue::from_bytes(hex).expect("hex digits are a valid header value")
            }
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
fn new_request_id() -> RequestId {
    use crate::log::HEX;
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    RequestId::New(buf)
}

tokio::task_local! {
    /// The TCP peer of the connection serving this request (see `with_peer`).
    static PEER: SocketAddr;
}

/// Serves one request of a connection from `peer`: `route` (the router's future for
/// the request) runs with the peer at hand for `client_ip`. A task-local rather than
/// a request extension, which would box the address on every request.
pub async fn with_peer<F: Future>(peer: SocketAddr, route: F) -> F::Output {
    PEER.scope(peer, route).await
}

/// The client as our load balancer saw it: the last (rightmost) `X-Forwarded-For` hop,
/// which the proxy in front appends from its TCP peer, if it is an IP address; else the
/// TCP peer. Earlier hops are whatever the client chose to send and are never trusted.
fn client_ip(req: &Request) -> IpAddr {
    req.headers()
        .get_all(FORWARDED_FOR)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        .or_else(|| PEER.try_with(|p| p.ip()).ok())
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
        .get(REQUEST_ID_HEADER)
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, |v| RequestId::Given(v.clone()));
    let record = RequestRecord {
        state: state.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        client_ip: client_ip(req),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        trace: crate::trace::TraceContext::continue_or_start(
            req.headers()
                .get(TRACEPARENT_HEADER)
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

/// One request through `Observe`: faults, the timeout, the trace scope, panics, the
/// response's request id, then the record. A hand-written future, so that the route's
/// future is held once and moved once (into axum's box), where nested `async` blocks
/// held several copies of it and moved them on every request.
pub struct ObserveFuture<F> {
    record: RequestRecord,
    too_large: bool,
    stage: Stage<F>,
    /// Armed only when the work does not finish on its first poll (most requests do).
    timeout: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Stage<F> {
    /// Not polled yet: faults are rolled on the first poll.
    Start(F),
    /// No fault applies: the route itself, panics caught on every poll.
    Route(F),
    /// A fault applies (CPU turn, delay, injected failure, refused body): the rare path,
    /// boxed, as an `async` block.
    Faulted(Pin<Box<dyn Future<Output = Response> + Send>>),
    Done,
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Send + Unpin + 'static,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Stage::Start(_) = this.stage {
            let Stage::Start(next) = std::mem::replace(&mut this.stage, Stage::Done) else {
                unreachable!("matched above")
            };
            this.stage = admit(&this.record, this.too_large, next);
        }
        // Every line logged while the request is served carries its trace (see crate::trace).
        let polled = crate::trace::in_scope(this.record.trace, || match &mut this.stage {
            Stage::Route(next) => poll_catching_panics(Pin::new(next), cx),
            Stage::Faulted(work) => work.as_mut().poll(cx),
            Stage::Start(_) | Stage::Done => panic!("ObserveFuture polled after completion"),
        });
        let response = match polled {
            Poll::Ready(response) => response,
            Poll::Pending => {
                let limit = this.record.state.config.request_timeout;
                let timer = this
                    .timeout
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Dropped inside its trace, like every other end of the work.
                crate::trace::in_scope(this.record.trace, || this.stage = Stage::Done);
                timed_out(&this.record, limit)
            }
        };
        this.stage = Stage::Done;
        Poll::Ready(Ok(complete(&mut this.record, response)))
    }
}

/// Polls the route, turning a panic in it into a clean 500. The panic message itself
/// was logged by the panic hook (see `cli::serve`); the body stays clean. Unlike a
/// `CatchPanicLayer` this neither boxes nor clones anything per request.
fn poll_catching_panics<F>(next: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<Response>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| next.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(Ok(response))) => Poll::Ready(response),
        Ok(Poll::Ready(Err(never))) => match never {},
        Err(_) => Poll::Ready(panic_response()),
    }
}

fn panic_response() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal_error", "message": "internal error"})),
    )
        .into_response()
}

/// Decides how the request is served, on its first poll: straight to the route, or
/// through the faults that apply to it (and the declared-size refusal).
fn admit<F>(record: &RequestRecord, too_large: bool, mut next: F) -> Stage<F>
where
    F: Future<Output = Result<Response, Infallible>> + Send + Unpin + 'static,
{
    let state = record.state.clone();
    let route = record.route.as_ref().map(|r| r.as_str());
    let is_api = route.is_some_and(|r| r.starts_with("/api/"));
    let (fail, delay) = match route.filter(|_| is_api) {
        Some(route) => state.faults.roll(route),
        None => (false, None),
    };
    // The CPU-cost fault: this request waits its turn on the task's CPU (see crate::faults).
    let cpu_turn = route.and_then(|r| state.faults.cpu_turn(r));
    if !fail && delay.is_none() && cpu_turn.is_none() && !too_large {
        return Stage::Route(next);
    }
    let request_id = record.request_id.as_str().to_owned();
    let route = route.unwrap_or("").to_owned();
    Stage::Faulted(Box::pin(async move {
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
                .str("request_id", &request_id)
                .str("route", &route)
                .str("fault", "error-rate")
                .emit();
            return AppError::Injected("injected failure (error-rate fault)".into())
                .into_response();
        }
        std::future::poll_fn(|cx| poll_catching_panics(Pin::new(&mut next), cx)).await
    }))
}

/// The request ran past `REQUEST_TIMEOUT_MS`: logged at ERROR, answered 504.
fn timed_out(record: &RequestRecord, limit: Duration) -> Response {
    record
        .state
        .log
        .error("Request timed out")
        .str("request_id", record.request_id.as_str())
        .trace(&record.trace)
        .str(
            "route",
            record
                .route
                .as_ref()
                .map_or(metrics::UNMATCHED, |r| r.as_str()),
        )
        .u64("timeout_ms", limit.as_millis() as u64)
        .emit();
    AppError::Timeout(format!(
        "request exceeded {} ms (REQUEST_TIMEOUT_MS)",
        limit.as_millis()
    ))
    .into_response()
}

/// The response's request id, extractor rejections made JSON, then the record.
fn complete(record: &mut RequestRecord, mut response: Response) -> Response {
    let state = &record.state;
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, record.request_id.header());
    // Rejections from axum's own extractors (body limit) are plain text: make them JSON.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        let id = response.headers().get(REQUEST_ID_HEADER).cloned();
        response = AppError::PayloadTooLarge {
            limit: state.config.max_body_bytes,
        }
        .into_response();
        if let Some(id) = id {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
    }
    record.finish(response.status().as_u16());
    response
}
