//! Serving with graceful shutdown: on SIGTERM or SIGINT stop accepting, let
//! in-flight requests finish within the grace period, log the drain, return.
//! Connections get the limits of `demo_netlimits` (header read and idle timeouts,
//! `MAX_CONNECTIONS`, accept-error backoff, descriptor budget), so idle or
//! half-open clients cannot hold the service.

use std::net::SocketAddr;
use std::sync::Arc;

use demo_netlimits::{Budget, ConnLimits, Drained, Event};
use tokio::net::TcpListener;

use crate::app::{AppState, app};

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every in-flight request finished.
    Complete,
    /// The grace period ran out with this many requests still running.
    Cut { in_flight: u64 },
}

/// Binds the configured address. Separate from `serve` so errors (port taken)
/// are reported before anything else starts.
pub async fn bind(state: &AppState) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(state.config.host, state.config.port)).await
}

pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<Drain> {
    let addr = listener.local_addr()?;
    let c = &state.config;
    state
        .log
        .lifecycle("Server listening")
        .str("address", &addr.to_string())
        .u64("port", u64::from(addr.port()))
        .str("git_sha", &c.git_sha)
        .str("environment", &c.environment)
        .bool(
            "faults_enabled",
            c.faults == crate::config::FaultMode::Enabled,
        )
        .bool("fault_token_required", c.fault_token.is_some())
        .emit();

    let log = state.log.clone();
    let shutdown_state = state.clone();
    let shutdown = async move {
        let which = wait_for_signal().await;
        log.lifecycle("Shutdown signal received, draining")
            .str("signal", which)
            .u64("in_flight", shutdown_state.http.in_flight())
            .u64(
                "grace_ms",
                shutdown_state.config.shutdown_grace.as_millis() as u64,
            )
            .emit();
    };

    let limits = connection_limits(&state);
    let app = app(state.clone());
    let service = move |peer: SocketAddr| {
        let app = app.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            app.serve(req, Some(peer))
        })
    };
    let drained = demo_netlimits::serve(
        listener,
        limits,
        state.connections.clone(),
        events(&state),
        service,
        shutdown,
        state.config.shutdown_grace,
    )
    .await;
    match drained {
        Drained::Complete => {
            // The line count lets a log pipeline prove it lost nothing (this line included).
            state
                .log
                .lifecycle("Drain complete, exiting")
                .u64("log_lines_written", state.log.lines() + 1)
                .emit();
            Ok(Drain::Complete)
        }
        Drained::Cut { .. } => {
            let in_flight = state.http.in_flight();
            state
                .log
                .warn("Grace period expired, exiting with requests in flight")
                .u64("in_flight", in_flight)
                .emit();
            Ok(Drain::Cut { in_flight })
        }
    }
}

/// The configured limits, with the connection cap lowered (and a warning logged) when
/// the descriptor budget cannot cover it even after raising the soft limit.
fn connection_limits(state: &AppState) -> ConnLimits {
    let mut limits = state.config.connections;
    let budget = Budget::raise();
    if let Err(short) = budget.check(limits.max_connections as u64, 1) {
        state
            .log
            .warn("Descriptor budget below MAX_CONNECTIONS")
            .str("problem", &short.to_string())
            .u64("max_connections", short.fits.max(1))
            .emit();
        limits.max_connections = short.fits.max(1) as usize;
    }
    limits
}

/// Connection-level conditions, one log line per episode. Failing accepts are an ERROR:
/// the service is refusing clients (descriptors exhausted), which alarms should see.
fn events(state: &Arc<AppState>) -> demo_netlimits::EventSink {
    let log = state.log.clone();
    Arc::new(move |e| match e {
        Event::AcceptFailing { error } => log
            .error("Accepting connections fails, backing off")
            .str("error", &error)
            .emit(),
        Event::AcceptRecovered { errors, paused } => log
            .warn("Accepting connections again")
            .u64("failed_accepts", errors)
            .millis("paused_ms", paused)
            .emit(),
        Event::AtCapacity { max_connections } => log
            .warn("Connection limit reached, new connections wait")
            .u64("max_connections", max_connections as u64)
            .emit(),
        Event::CapacityRecovered { waited } => log
            .info("Below the connection limit again")
            .millis("waited_ms", waited)
            .emit(),
    })
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
