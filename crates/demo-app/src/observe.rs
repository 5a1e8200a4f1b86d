//! The request pipeline around every route: request id, trace context, faults, the
//! timeout, panics, metrics and the access log, in one place so every response
//! (including timeouts, injected failures, panics and cancelled requests) is counted and
//! logged exactly once. See the pipeline in `crate::app`.
//!
//! [`Service`] is the whole application as one service: it looks the request up in the
//! route table (`crate::routes`), decides the faults that apply, runs the handler and
//! completes the record. A handler that answers at once is served inside `call`, and
//! the future returned holds its response: no boxed future, no cloned service and
//! nothing allocated here beyond the response (docs/PERFORMANCE.md, "The service").

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::{AppState, REQUEST_ID};
use crate::routes::{Found, Reply, RequestBody, Routes};

/// The header names read or written on every request, parsed once: a `&str` name is
/// parsed and hashed anew on every lookup.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(crate::trace::TRACEPARENT);
use crate::error::AppError;
use crate::metrics;

/// The application: the route table and the pipeline around it. Cheap to clone (one
/// per connection).
#[derive(Clone)]
pub struct Service {
    state: Arc<AppState>,
    routes: Arc<Routes>,
}

impl Service {
    pub fn new(state: Arc<AppState>, routes: Routes) -> Service {
        Service {
            state,
            routes: Arc::new(routes),
        }
    }

    /// Serves one request from `peer` (the connection's TCP peer, `None` in tests).
    pub fn serve(&self, req: Request<impl RequestBody>, peer: Option<SocketAddr>) -> ObserveFuture {
        let found = self.routes.find(req.method(), req.uri().path());
        let (record, too_large) = begin(&self.state, &req, found.template, peer);
        let (parts, body) = req.into_parts();
        let dispatch = Dispatch {
            found,
            state: self.state.clone(),
            parts,
            body,
        };
        let stage = match admit(&record, too_large) {
            None => crate::trace::in_scope(record.trace, || {
                match run_catching_panics(|| dispatch.run()) {
                    Reply::Now(response) => Stage::Ready(response),
                    Reply::Later(work) => Stage::Work(work),
                }
            }),
            Some(faults) => Stage::Work(Box::pin(faulted(faults, dispatch))),
        };
        ObserveFuture {
            record,
            stage,
            timeout: None,
        }
    }
}

impl<B: RequestBody> tower_service::Service<Request<B>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ObserveFuture {
        self.serve(req, None)
    }
}

/// A request and the route it found, not yet served.
struct Dispatch<B> {
    found: Found,
    state: Arc<AppState>,
    parts: axum::http::request::Parts,
    body: B,
}

impl<B: RequestBody> Dispatch<B> {
    /// The gate, then the handler.
    fn run(self) -> Reply {
        if self.found.gated()
            && let Err(refused) = crate::app::gate(&self.state, &self.parts)
        {
            return refused.into();
        }
        self.found.run(self.state, self.parts, self.body)
    }
}

/// Logs and counts a request exactly once, even when its future is dropped (client gone).
struct RequestRecord {
    state: Arc<AppState>,
    method: Method,
    /// The route's template, `None` when no route has the path.
    route: Option<&'static str>,
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
        let route = self.route.unwrap_or(metrics::UNMATCHED);
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
            .plain("request_id", self.request_id.as_str())
            .trace(&self.trace)
            .plain("method", method)
            .plain("route", route)
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
    RequestId::New(crate::log::hex32(fastrand::u128(..)))
}

/// The request headers the pipeline reads, found in one pass over the request's headers
/// (a request carries a handful: five lookups by name hashed each name five times).
#[derive(Default)]
struct Wanted<'a> {
    /// The first of each, as `HeaderMap::get` would find it.
    request_id: Option<&'a HeaderValue>,
    user_agent: Option<&'a HeaderValue>,
    traceparent: Option<&'a HeaderValue>,
    content_length: Option<&'a HeaderValue>,
    /// The last `X-Forwarded-For` (the one our proxy appended).
    forwarded_for: Option<&'a HeaderValue>,
}

impl<'a> Wanted<'a> {
    fn read(headers: &'a HeaderMap) -> Wanted<'a> {
        let mut w = Wanted::default();
        for (name, value) in headers {
            if *name == header::CONTENT_LENGTH {
                w.content_length.get_or_insert(value);
            } else if *name == header::USER_AGENT {
                w.user_agent.get_or_insert(value);
            } else if *name == REQUEST_ID_HEADER {
                w.request_id.get_or_insert(value);
            } else if *name == TRACEPARENT_HEADER {
                w.traceparent.get_or_insert(value);
            } else if *name == FORWARDED_FOR {
                w.forwarded_for = Some(value);
            }
        }
        w
    }

    /// The client as our load balancer saw it: the last (rightmost) `X-Forwarded-For`
    /// hop, which the proxy in front appends from its TCP peer, if it is an IP address;
    /// else the TCP peer. Earlier hops are whatever the client chose to send and are
    /// never trusted.
    fn client_ip(&self, peer: Option<SocketAddr>) -> IpAddr {
        self.forwarded_for
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
            .or_else(|| peer.map(|p| p.ip()))
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// Whether the request declares a body longer than `limit` (answered 413 before
    /// reading).
    fn declared_too_large(&self, limit: usize) -> bool {
        self.content_length
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > limit as u64)
    }
}

/// What `observe` takes from the request before the route runs: the record that logs
/// and counts it, and whether its declared body is over the limit.
fn begin<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
    route: Option<&'static str>,
    peer: Option<SocketAddr>,
) -> (RequestRecord, bool) {
    state.http.request_started();
    let wanted = Wanted::read(req.headers());
    let request_id = wanted
        .request_id
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, |v| RequestId::Given(v.clone()));
    let record = RequestRecord {
        state: state.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        client_ip: wanted.client_ip(peer),
        user_agent: wanted.user_agent.cloned(),
        trace: crate::trace::TraceContext::continue_or_start(
            wanted.traceparent.and_then(|v| v.to_str().ok()),
        ),
        route,
        request_id,
        start: Instant::now(),
        done: false,
    };
    let too_large = wanted.declared_too_large(state.config.max_body_bytes);
    (record, too_large)
}

/// One request: its response (ready, or the work that will produce it), the timeout,
/// the trace scope, panics, the response's request id, then the record.
pub struct ObserveFuture {
    record: RequestRecord,
    stage: Stage,
    /// Armed only when the work does not finish on its first poll (most requests do).
    timeout: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Stage {
    /// The handler answered at once.
    Ready(Response),
    /// The handler's future, or the faults that apply and then the handler (the rare
    /// path): polled inside the request's trace, panics caught on every poll.
    Work(Pin<Box<dyn Future<Output = Response> + Send>>),
    Done,
}

impl Future for ObserveFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let polled = match &mut this.stage {
            Stage::Ready(_) => {
                let Stage::Ready(response) = std::mem::replace(&mut this.stage, Stage::Done) else {
                    unreachable!("matched above")
                };
                Poll::Ready(response)
            }
            // Every line logged while the request is served carries its trace (see crate::trace).
            Stage::Work(work) => crate::trace::in_scope(this.record.trace, || {
                poll_catching_panics(work.as_mut(), cx)
            }),
            Stage::Done => panic!("ObserveFuture polled after completion"),
        };
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

/// Runs a handler, turning a panic in it into a clean 500. The panic message itself
/// was logged by the panic hook (see `cli::serve`); the body stays clean.
fn run_catching_panics(run: impl FnOnce() -> Reply) -> Reply {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Reply::Now(panic_response()))
}

/// Polls a handler's future, a panic in it likewise a 500.
fn poll_catching_panics(
    work: Pin<&mut (dyn Future<Output = Response> + Send)>,
    cx: &mut Context<'_>,
) -> Poll<Response> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.poll(cx)))
        .unwrap_or_else(|_| Poll::Ready(panic_response()))
}

fn panic_response() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal_error", "message": "internal error"})),
    )
        .into_response()
}

/// The faults that apply to one request (and the declared-size refusal).
struct Faults {
    cpu_turn: Option<crate::faults::CpuTurn>,
    too_large: bool,
    delay: Option<Duration>,
    fail: bool,
    request_id: String,
    route: &'static str,
}

/// Decides, before the handler runs, whether the request goes straight to it (`None`)
/// or through the faults that apply to it first.
fn admit(record: &RequestRecord, too_large: bool) -> Option<Faults> {
    let state = &record.state;
    let route = record.route;
    let is_api = route.is_some_and(|r| r.starts_with("/api/"));
    let (fail, delay) = match route.filter(|_| is_api) {
        Some(route) => state.faults.roll(route),
        None => (false, None),
    };
    // The CPU-cost fault: this request waits its turn on the task's CPU (see crate::faults).
    let cpu_turn = route.and_then(|r| state.faults.cpu_turn(r));
    if !fail && delay.is_none() && cpu_turn.is_none() && !too_large {
        return None;
    }
    Some(Faults {
        cpu_turn,
        too_large,
        delay,
        fail,
        request_id: record.request_id.as_str().to_owned(),
        route: route.unwrap_or(""),
    })
}

/// The rare path: the faults that apply, then (unless one of them answered) the handler.
async fn faulted(faults: Faults, dispatch: Dispatch<impl RequestBody>) -> Response {
    let state = dispatch.state.clone();
    if let Some(turn) = faults.cpu_turn {
        state.faults.take_cpu_turn(turn).await;
    }
    if faults.too_large {
        // Waiting for a body that may never come (or is gigabytes) helps nobody.
        return AppError::PayloadTooLarge {
            limit: state.config.max_body_bytes,
        }
        .into_response();
    }
    if let Some(d) = faults.delay {
        tokio::time::sleep(d).await;
    }
    if faults.fail {
        state
            .log
            .error("Injected failure on API request")
            .str("request_id", &faults.request_id)
            .str("route", faults.route)
            .str("fault", "error-rate")
            .emit();
        return AppError::Injected("injected failure (error-rate fault)".into()).into_response();
    }
    match run_catching_panics(|| dispatch.run()) {
        Reply::Now(response) => response,
        Reply::Later(work) => work.await,
    }
}

/// The request ran past `REQUEST_TIMEOUT_MS`: logged at ERROR, answered 504.
fn timed_out(record: &RequestRecord, limit: Duration) -> Response {
    record
        .state
        .log
        .error("Request timed out")
        .str("request_id", record.request_id.as_str())
        .trace(&record.trace)
        .str("route", record.route.unwrap_or(metrics::UNMATCHED))
        .u64("timeout_ms", limit.as_millis() as u64)
        .emit();
    AppError::Timeout(format!(
        "request exceeded {} ms (REQUEST_TIMEOUT_MS)",
        limit.as_millis()
    ))
    .into_response()
}

/// The response's request id, then the record.
fn complete(record: &mut RequestRecord, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, record.request_id.header());
    record.finish(response.status().as_u16());
    response
}
