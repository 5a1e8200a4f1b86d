//! The control API of a running environment: status, deployments, stopping a
//! task, scaling, and resetting faults on every task. The CLI's `status`,
//! `deploy`, `tasks stop`, `scale` and `faults` use it. Bound to loopback
//! unless configured; every request passes [`crate::control_auth`] (token,
//! host, origin). A deployment names configuration or a git revision the
//! runtime builds itself, never a program path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::builds::BuildError;
use crate::control_auth::Guard;
use crate::service::{DeployError, DeployRequest, Service};

#[derive(Clone)]
pub struct ControlState {
    pub service: Arc<Service>,
    pub alarm_states: Arc<Mutex<Vec<(String, String)>>>,
    pub lb_addr: SocketAddr,
    pub guard: Guard,
    /// `up`'s own counters, exposed on `/metrics` (see [`crate::prometheus`]).
    pub metrics: Arc<crate::prometheus::UpMetrics>,
    /// Where alerts received on `/alerts` go (see [`crate::alerts`]).
    pub alerts: crate::alerts::AlertSink,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/deployments", post(deploy))
        .route("/tasks/{id}/stop", post(stop_task))
        .route("/scale", post(scale))
        .route("/faults", post(fault))
        .route("/faults/reset", post(reset))
        // The browser console (pages under / and /console/), behind the same guard.
        .merge(crate::console::router())
        // Prometheus (service discovery, up's /metrics) and alerts in (Alertmanager, SNS).
        .merge(crate::prometheus::routes())
        .merge(crate::alerts::routes())
        // Outermost, so nothing (not even body parsing) runs for a refused request.
        .layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            crate::control_auth::middleware,
        ))
        .with_state(state)
}

/// Serves the control API with the same connection limits as the load
/// balancer (header read and idle timeouts, a small connection cap, accept
/// backoff): a flood of idle connections must not lock the CLI out.
pub async fn serve(
    listener: TcpListener,
    state: ControlState,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = demo_netlimits::ConnLimits {
        max_connections: 256,
        ..demo_netlimits::ConnLimits::default()
    };
    let events: demo_netlimits::EventSink = Arc::new(|e| eprintln!("control API: {e:?}"));
    let router = router(state);
    let service = move |_peer: SocketAddr| {
        let router = router.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            router.clone().oneshot(req)
        })
    };
    demo_netlimits::serve(
        listener,
        limits,
        Arc::default(),
        events,
        service,
        async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        },
        std::time::Duration::from_secs(5),
    )
    .await;
}

/// The whole picture, as `status` prints it.
pub fn status_json(st: &ControlState) -> Value {
    let svc = &st.service;
    let targets = svc.lb.targets();
    let tasks: Vec<Value> = svc
        .tasks()
        .iter()
        .map(|t| {
            let (health, reason) = targets
                .iter()
                .find(|x| x.task_id == t.id)
                .map(|x| {
                    let (h, r) = x.health();
                    (h.as_str().to_string(), r)
                })
                .unwrap_or_else(|| ("unregistered".into(), String::new()));
            json!({
                "id": t.id, "port": t.port, "pid": t.pid,
                "deployment": t.spec.deployment_id, "version": t.spec.version,
                "health": health, "health_reason": reason,
                "stopping": t.is_stopping(), "started_ms": t.started_ms,
                "log_lines": t.lines.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    let alarms: Vec<Value> = st
        .alarm_states
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(n, s)| json!({"name": n, "state": s}))
        .collect();
    json!({
        "load_balancer": st.lb_addr.to_string(),
        "time_scale": svc.config.time_scale,
        "desired_count": svc.desired(),
        "current_deployment": svc.current().deployment_id,
        "deployment_in_progress": svc.deploying(),
        "tasks": tasks,
        "alarms": alarms,
        "store": svc.store_health().to_json(),
    })
}

async fn status(State(st): State<ControlState>) -> Json<Value> {
    Json(status_json(&st))
}

/// A JSON body, or a JSON 400 naming what is wrong with it (an unknown field
/// such as `binary` included).
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, String> {
    b.map(|Json(v)| v).map_err(|e| e.body_text())
}

pub(crate) async fn deploy(
    State(st): State<ControlState>,
    req: Result<Json<DeployRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let svc = st.service.clone();
    // A revision is built first (minutes): off the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        let reader = demo_store::Reader::open(&svc.config.state_dir)?;
        svc.deploy(req, &reader)
    })
    .await;
    match outcome {
        Ok(Ok(d)) => (
            StatusCode::CREATED,
            Json(serde_json::to_value(d).unwrap_or_default()),
        )
            .into_response(),
        Ok(Err(e)) => {
            let status = deploy_status(&e);
            if status.is_server_error() {
                eprintln!("control API: deployment not started: {e}");
            }
            error(status, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The HTTP status of each reason a deployment was not started: the
/// caller's mistakes are 4xx, the environment's own failures 500.
pub(crate) fn deploy_status(e: &DeployError) -> StatusCode {
    match e {
        DeployError::BadRequest(_) | DeployError::Build(BuildError::BadRevision(_)) => {
            StatusCode::BAD_REQUEST
        }
        DeployError::UnknownDeployment(_) => StatusCode::NOT_FOUND,
        DeployError::InProgress(_) => StatusCode::CONFLICT,
        // A commit that does not build: well-formed, but it cannot be shipped.
        DeployError::Build(BuildError::Failed(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        DeployError::Build(BuildError::Internal(_)) | DeployError::Store(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

async fn stop_task(State(st): State<ControlState>, Path(id): Path<String>) -> Response {
    if st
        .service
        .stop_task(&id, "stopped by the user (tasks stop)")
    {
        (StatusCode::ACCEPTED, Json(json!({"stopping": id}))).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no running task {id}"))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Scale {
    count: u32,
}

async fn scale(State(st): State<ControlState>, s: Result<Json<Scale>, JsonRejection>) -> Response {
    let s = match body(s) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if !(1..=10).contains(&s.count) {
        return error(StatusCode::BAD_REQUEST, "count must be 1..=10");
    }
    st.service.set_desired(s.count);
    Json(json!({"desired_count": s.count})).into_response()
}

/// A fault request sent to tasks directly (not through the load balancer).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Path and query, e.g. `/error/memory-leak?mb=32`.
    pub path: String,
    /// `all` (default), `one` (the first task), or a task id.
    #[serde(default)]
    pub target: Option<String>,
}

pub async fn send_fault(service: &Service, req: &FaultRequest) -> Result<Vec<Value>, String> {
    if !req.path.starts_with("/error/") {
        return Err(format!("fault path {:?} must start with /error/", req.path));
    }
    let mut tasks: Vec<_> = service
        .tasks()
        .into_iter()
        .filter(|t| !t.is_stopping())
        .collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let chosen: Vec<_> = match req.target.as_deref().unwrap_or("all") {
        "all" => tasks,
        "one" => tasks.into_iter().take(1).collect(),
        id => tasks.into_iter().filter(|t| t.id == id).collect(),
    };
    if chosen.is_empty() {
        return Err("no running task matches the fault target".into());
    }
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut out = Vec::new();
    for t in chosen {
        let uri = format!("http://127.0.0.1:{}{}", t.port, req.path);
        let r = hyper::Request::post(uri)
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let status = match client.request(r).await {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => return Err(format!("task {}: {e}", t.id)),
        };
        out.push(json!({"task": t.id, "status": status}));
    }
    Ok(out)
}

async fn fault(
    State(st): State<ControlState>,
    req: Result<Json<FaultRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match send_fault(&st.service, &req).await {
        Ok(v) => Json(json!({"results": v})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

pub(crate) async fn reset(State(st): State<ControlState>) -> Response {
    let req = FaultRequest {
        path: "/error/reset".into(),
        target: None,
    };
    match send_fault(&st.service, &req).await {
        Ok(v) => Json(json!({"results": v})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_refused_deployment_has_its_own_status() {
        let status = |e| deploy_status(&e).as_u16();
        assert_eq!(status(DeployError::BadRequest("x".into())), 400);
        assert_eq!(
            status(DeployError::Build(BuildError::BadRevision("x".into()))),
            400
        );
        assert_eq!(status(DeployError::UnknownDeployment("d-9".into())), 404);
        assert_eq!(status(DeployError::InProgress("d-2".into())), 409);
        assert_eq!(
            status(DeployError::Build(BuildError::Failed("x".into()))),
            422
        );
        assert_eq!(
            status(DeployError::Build(BuildError::Internal("x".into()))),
            500
        );
    }
}
