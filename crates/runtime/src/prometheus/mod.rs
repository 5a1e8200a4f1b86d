//! Prometheus on the control port: HTTP service discovery of the tasks
//! (`GET /prometheus/targets`: their ports change with every replacement, so a
//! static scrape config cannot follow them), `up`'s own `/metrics`, and the
//! catalogue as alerting rules ([`rules`]). Both endpoints sit behind the
//! control API's guard: Prometheus sends the token with
//! `authorization: { credentials_file: <state>/control.token }` (HTTP SD and
//! scrape configs both take it), so nothing new is exposed without it.

pub mod exposition;
pub mod rules;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::control::ControlState;

pub use exposition::{InvestigationResult, UpMetrics};

/// The routes this module adds to the control API.
pub fn routes() -> Router<ControlState> {
    Router::new()
        .route("/prometheus/targets", get(targets))
        .route("/metrics", get(metrics))
}

/// The HTTP SD document: one target group per running task, labelled with
/// its task id, deployment and version (stopping tasks are left out: they
/// have left the load balancer).
pub fn sd_targets(st: &ControlState) -> Value {
    let mut tasks = st.service.tasks();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let groups: Vec<Value> = tasks
        .iter()
        .filter(|t| !t.is_stopping() && t.port != 0)
        .map(|t| {
            json!({
                "targets": [format!("127.0.0.1:{}", t.port)],
                "labels": {
                    "task_id": t.id,
                    "deployment_id": t.spec.deployment_id,
                    "version": t.spec.version,
                    "service": st.service.config.catalog.service.name,
                },
            })
        })
        .collect();
    Value::Array(groups)
}

async fn targets(State(st): State<ControlState>) -> Json<Value> {
    Json(sd_targets(&st))
}

async fn metrics(State(st): State<ControlState>) -> Response {
    let st2 = st.clone();
    // The store is read for the alarm datapoints: off the async workers.
    let text = tokio::task::spawn_blocking(move || {
        let svc = &st2.service;
        let datapoints = match demo_store::Reader::open(&svc.config.state_dir) {
            Ok(r) => exposition::alarm_datapoints(
                &r,
                &svc.config.catalog,
                svc.config.time_scale,
                crate::now_ms(),
            ),
            Err(_) => Vec::new(),
        };
        let (healthy, unhealthy) = svc.lb.host_counts();
        let c = &svc.lb.conn_stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let snapshot = exposition::Snapshot {
            catalog: &svc.config.catalog,
            datapoints,
            alarm_states: st2
                .alarm_states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            healthy,
            unhealthy,
            in_flight: svc
                .lb
                .targets()
                .iter()
                .map(|t| (t.task_id.clone(), t.in_flight()))
                .collect(),
            connections: [
                ("open", load(&c.open)),
                ("accepted_total", load(&c.accepted)),
                ("accept_errors_total", load(&c.accept_errors)),
                ("idle_closed_total", load(&c.idle_closed)),
            ],
            desired: svc.desired(),
            running: svc.tasks().len(),
            store: svc.store_health(),
            metrics: &st2.metrics,
        };
        exposition::render(&snapshot)
    })
    .await;
    match text {
        Ok(t) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
