//! W3C trace context in the service: every request runs inside its
//! [`TraceContext`] (the caller's `traceparent` continued, or a new trace), so
//! every line logged while serving it — the access line, and every error line
//! of a handler, a fault or a panic — carries `trace_id` and `span_id`
//! without each call site passing them. The ids are OpenTelemetry's log
//! fields of the same names (see the README's field mapping).

pub use demo_tracecontext::{TRACEPARENT, TraceContext};

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `f` (one poll of a request's work) inside `ctx`.
pub fn in_scope<R>(ctx: TraceContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
}

/// The context of the request being served on this task, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}
