//! Serving with graceful shutdown: on SIGTERM or SIGINT stop accepting, let
//! in-flight requests finish within the grace period, log the drain, return.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<Instant>();
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
        let _ = signalled_tx.send(Instant::now());
    };
    let server = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let server = std::pin::pin!(server.into_future());

    // Run until the server finishes by itself, or the grace period after the signal ends.
    let grace = state.config.shutdown_grace;
    let deadline = async move {
        match signalled_rx.await {
            Ok(at) => tokio::time::sleep_until((at + grace).into()).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        r = server => {
            r?;
            // The line count lets a log pipeline prove it lost nothing (this line included).
            state
                .log
                .lifecycle("Drain complete, exiting")
                .u64("log_lines_written", state.log.lines() + 1)
                .emit();
            Ok(Drain::Complete)
        }
        () = deadline => {
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

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
