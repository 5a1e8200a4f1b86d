//! Optional OTLP span export for the project's two HTTP hops, the local load
//! balancer and `demo-app`, through the OpenTelemetry crates' OTLP/HTTP
//! exporter.
//!
//! Off by default, with no cost: [`Exporter::from_env`] returns `None` unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, and a hop then records nothing. When on, each request becomes one span
//! whose trace id and span id are exactly those the hop logs (`trace_id`,
//! `span_id`, from [`demo_tracecontext`]), so a span found in a tracing backend
//! leads to its log lines and back. That is why spans are built here as
//! finished `SpanData` rather than through the SDK's tracer (which picks its
//! own ids).
//!
//! Recording never blocks a request: spans go into a bounded queue (full:
//! dropped and counted, [`Exporter::dropped`]); a thread of its own batches
//! them (up to [`BATCH`] spans or every `OTEL_BSP_SCHEDULE_DELAY` ms, default
//! 1000) and exports them. The standard variables are honoured:
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
//! `http/json`; `grpc` is refused with a clear error), `..._HEADERS`,
//! `..._TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, and
//! `OTEL_SDK_DISABLED=true` turns export off.

#![forbid(unsafe_code)]

pub mod receiver;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use demo_tracecontext::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

pub use opentelemetry::Value;

/// Spans waiting for export; more are dropped (and counted), never waited for.
pub const QUEUE: usize = 4096;
/// Most spans in one export request.
pub const BATCH: usize = 512;

/// Why export could not be set up (only when asked for by the environment).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use http/protobuf (the default) or http/json"
    )]
    Protocol(String),
    #[error("OTEL_BSP_SCHEDULE_DELAY={0:?} is not a number of milliseconds")]
    Delay(String),
    #[error("the OTLP span exporter could not be built: {0}")]
    Build(String),
}

/// The span's role: a hop serving a request, or a hop calling the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
}

/// One finished request at one hop.
#[derive(Debug, Clone)]
pub struct Span {
    /// The hop's trace context: its ids become the span's.
    pub trace: TraceContext,
    /// E.g. `GET /api/products/{id}` (method and route, as the semantic conventions ask).
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    /// A server error (status >= 500) marks the span as failed.
    pub error: bool,
    /// Semantic-convention attributes (`http.request.method`, `http.route`, ...).
    pub attributes: Vec<(&'static str, Value)>,
}

/// The running exporter of one process.
#[derive(Debug)]
pub struct Exporter {
    tx: Option<SyncSender<SpanData>>,
    dropped: Arc<AtomicU64>,
    exported: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    scope: InstrumentationScope,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Exporter {
    /// The exporter the environment asks for: `Ok(None)` when no OTLP endpoint
    /// is set (or `OTEL_SDK_DISABLED=true`); an error naming the variable when
    /// one is set wrongly. `service` is the default `service.name` (overridden
    /// by `OTEL_SERVICE_NAME`); `resource` adds attributes such as
    /// `service.version` and `service.instance.id`.
    pub fn from_env(
        service: &str,
        resource: Vec<(&'static str, String)>,
    ) -> Result<Option<Exporter>, Error> {
        Exporter::from_lookup(service, resource, env)
    }

    /// [`Exporter::from_env`] with the variables read through `var` (tests and
    /// embedders pass their own; empty values count as unset).
    pub fn from_lookup(
        service: &str,
        resource: Vec<(&'static str, String)>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Exporter>, Error> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        // The signal's own variable is used as it is; the generic one gets the
        // signal's path, as the OTLP exporter specification says.
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => url,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let protocol_var = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        let protocol = match protocol_var.to_ascii_lowercase().as_str() {
            "http/protobuf" => Protocol::HttpBinary,
            "http/json" => Protocol::HttpJson,
            _ => return Err(Error::Protocol(protocol_var)),
        };
        let delay = match var("OTEL_BSP_SCHEDULE_DELAY") {
            None => Duration::from_millis(1000),
            Some(v) => Duration::from_millis(v.trim().parse().map_err(|_| Error::Delay(v))?),
        };
        let mut builder = Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none() {
            builder = builder.with_service_name(service.to_string());
        }
        let resource = builder
            .with_attributes(resource.into_iter().map(|(k, v)| KeyValue::new(k, v)))
            .build();
        Exporter::start(endpoint, protocol, delay, resource, service)
    }

    fn start(
        endpoint: String,
        protocol: Protocol,
        delay: Duration,
        resource: Resource,
        scope: &str,
    ) -> Result<Option<Exporter>, Error> {
        let (tx, rx) = sync_channel::<SpanData>(QUEUE);
        let (ready_tx, ready_rx) = sync_channel::<Result<(), Error>>(1);
        let exported = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (e, f) = (exported.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                // The exporter's HTTP client needs a runtime; this thread has its own,
                // so export never competes with the hop's request handling.
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        let _ = ready_tx.send(Err(Error::Build(err.to_string())));
                        return;
                    }
                };
                let built = rt.block_on(async {
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_endpoint(endpoint)
                        .with_protocol(protocol)
                        .build()
                });
                let mut exporter = match built {
                    Ok(x) => x,
                    Err(err) => {
                        let _ = ready_tx.send(Err(Error::Build(err.to_string())));
                        return;
                    }
                };
                exporter.set_resource(&resource);
                let _ = ready_tx.send(Ok(()));
                run(&rt, &exporter, &rx, delay, &e, &f);
                let _ = exporter.shutdown();
            })
            .map_err(|err| Error::Build(err.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Some(Exporter {
                tx: Some(tx),
                dropped: Arc::new(AtomicU64::new(0)),
                exported,
                failed,
                thread: Some(thread),
                scope: InstrumentationScope::builder(scope.to_string())
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            })),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(Error::Build("the export thread ended".into())),
        }
    }

    /// Queues a finished span for export; never blocks (a full queue drops it
    /// and counts the drop).
    pub fn record(&self, span: Span) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(self.span_data(span))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn span_data(&self, s: Span) -> SpanData {
        let t = s.trace;
        let flags = TraceFlags::new(t.flags);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(t.trace_id),
                SpanId::from(t.span_id),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(t.parent_id.unwrap_or(0)),
            parent_span_is_remote: t.parent_id.is_some(),
            span_kind: match s.kind {
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
            },
            name: Cow::Owned(s.name),
            start_time: s.start,
            end_time: s.end,
            attributes: s
                .attributes
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v))
                .collect(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if s.error {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans in export requests that failed (collector down, refused, timed out).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Exports what is queued and stops the export thread (bounded by the
    /// exporter's own timeout per request).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The export loop: batches of up to [`BATCH`] spans, sent when full or every
/// `delay`; the rest is exported when every sender is gone.
fn run(
    rt: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
    rx: &Receiver<SpanData>,
    delay: Duration,
    exported: &AtomicU64,
    failed: &AtomicU64,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut due = Instant::now() + delay;
    loop {
        let closed = match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(span) => {
                batch.push(span);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if batch.len() >= BATCH || Instant::now() >= due || closed {
            if !batch.is_empty() {
                let n = batch.len() as u64;
                match rt.block_on(exporter.export(std::mem::take(&mut batch))) {
                    Ok(()) => exported.fetch_add(n, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(n, Ordering::Relaxed),
                };
            }
            due = Instant::now() + delay;
        }
        if closed {
            return;
        }
    }
}
