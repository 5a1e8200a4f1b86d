//! What the console can change: inject a fault from a menu of presets, reset
//! faults, deploy a configuration change, roll back, stop a task, scale.
//! Each is a POST of a small JSON object (the form's fields) that the guard
//! has already checked for the session's CSRF token and our Origin; the work
//! itself is the control API's (the same functions the CLI reaches).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use demo_model::events::Deployment;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::control::{ControlState, FaultRequest, send_fault};
use crate::service::DeployRequest;

/// A fault the menu offers: what it does, in words, and the fault endpoint.
pub struct Preset {
    pub id: &'static str,
    pub label: &'static str,
    pub path: &'static str,
}

/// The menu. Durations are real seconds (faults run on the tasks' clock);
/// every one is bounded by the tasks' own caps too.
pub const PRESETS: &[Preset] = &[
    Preset {
        id: "errors",
        label: "Errors: half of GET /api/products/{id} fail (10 min)",
        path: "/error/error-rate?percent=50&route=/api/products/%7Bid%7D&duration_s=600",
    },
    Preset {
        id: "latency",
        label: "Latency: 40 % of /api/quote wait 1.5 s (10 min)",
        path: "/error/latency?ms=1500&percent=40&route=/api/quote&duration_s=600",
    },
    Preset {
        id: "memory-leak",
        label: "Memory: leak 36 MiB now",
        path: "/error/memory-leak?mb=36",
    },
    Preset {
        id: "cpu",
        label: "CPU: one busy thread at 60 % (5 min)",
        path: "/error/cpu-spike?seconds=300&threads=1&percent=60",
    },
    Preset {
        id: "unhealthy",
        label: "Health check fails (10 min)",
        path: "/error/disable-health?duration_s=600",
    },
    Preset {
        id: "crash",
        label: "Crash: the task exits with code 1",
        path: "/error/crash?exit_code=1&delay_ms=50",
    },
];

fn ok(message: String) -> Response {
    Json(json!({ "message": message })).into_response()
}

fn bad(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The form's fields, or a 400 naming what is wrong.
fn fields<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, String> {
    b.map(|Json(v)| v).map_err(|e| e.body_text())
}

/// Passes on the control API's answer, turning its JSON into a message.
async fn relay(r: Response, what: impl FnOnce(&Value) -> String) -> Response {
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        ok(what(&v))
    } else {
        bad(
            status,
            v["error"].as_str().unwrap_or("the control API refused"),
        )
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultForm {
    preset: String,
    #[serde(default)]
    target: String,
}

pub async fn fault(
    State(st): State<ControlState>,
    form: Result<Json<FaultForm>, JsonRejection>,
) -> Response {
    let form = match fields(form) {
        Ok(f) => f,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let Some(preset) = PRESETS.iter().find(|p| p.id == form.preset) else {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("unknown fault preset {:?}", form.preset),
        );
    };
    let target = match form.target.trim() {
        "" => "all".to_string(),
        t => t.to_string(),
    };
    let req = FaultRequest {
        path: preset.path.to_string(),
        target: Some(target.clone()),
    };
    match send_fault(&st.service, &req).await {
        Ok(results) => {
            let failed: Vec<String> = results
                .iter()
                .filter(|r| r["status"].as_u64().is_none_or(|s| s >= 300))
                .map(|r| format!("{} answered {}", r["task"], r["status"]))
                .collect();
            if failed.is_empty() {
                ok(format!(
                    "Injected \u{201c}{}\u{201d} on {} task(s)",
                    preset.label,
                    results.len()
                ))
            } else {
                bad(StatusCode::BAD_GATEWAY, failed.join("; "))
            }
        }
        Err(e) => bad(StatusCode::BAD_REQUEST, e),
    }
}

pub async fn reset(State(st): State<ControlState>) -> Response {
    relay(crate::control::reset(State(st)).await, |v| {
        format!(
            "Faults reset on {} task(s)",
            v["results"].as_array().map_or(0, Vec::len)
        )
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployForm {
    /// `KEY=VALUE` pairs, one per line or separated by spaces.
    #[serde(default)]
    env: String,
    /// Keys to remove, separated by spaces or commas.
    #[serde(default)]
    unset: String,
    #[serde(default)]
    description: String,
}

/// `KEY=VALUE` pairs; every bad one is named.
pub fn parse_pairs(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for p in text.split_whitespace() {
        match p.split_once('=') {
            Some((k, v))
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                out.insert(k.to_string(), v.to_string());
            }
            _ => bad.push(format!("{p:?}")),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "expected KEY=VALUE with KEY of letters, digits and _: {}",
            bad.join(", ")
        ))
    }
}

pub async fn deploy(
    State(st): State<ControlState>,
    form: Result<Json<DeployForm>, JsonRejection>,
) -> Response {
    let form = match fields(form) {
        Ok(f) => f,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let env = match parse_pairs(&form.env) {
        Ok(e) => e,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let unset: Vec<String> = form
        .unset
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if env.is_empty() && unset.is_empty() {
        return bad(
            StatusCode::BAD_REQUEST,
            "a deployment needs at least one KEY=VALUE to set or a key to unset",
        );
    }
    let req = DeployRequest {
        env,
        unset,
        version: None,
        rev: None,
        description: form.description,
        rollback_to: None,
    };
    deploy_request(st, req).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackForm {
    deployment: String,
}

pub async fn rollback(
    State(st): State<ControlState>,
    form: Result<Json<RollbackForm>, JsonRejection>,
) -> Response {
    let form = match fields(form) {
        Ok(f) => f,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let req = DeployRequest {
        env: BTreeMap::new(),
        unset: Vec::new(),
        version: None,
        rev: None,
        description: format!("rollback to {} from the console", form.deployment),
        rollback_to: Some(form.deployment),
    };
    deploy_request(st, req).await
}

async fn deploy_request(st: ControlState, req: DeployRequest) -> Response {
    relay(
        crate::control::deploy(State(st), Ok(Json(req))).await,
        |v| format!("Deployment {} started", v["id"].as_str().unwrap_or("?")),
    )
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopForm {
    task: String,
}

pub async fn stop(
    State(st): State<ControlState>,
    form: Result<Json<StopForm>, JsonRejection>,
) -> Response {
    let form = match fields(form) {
        Ok(f) => f,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    if st
        .service
        .stop_task(&form.task, "stopped by the user (console)")
    {
        ok(format!(
            "Stopping {}; the service starts a replacement",
            form.task
        ))
    } else {
        bad(
            StatusCode::NOT_FOUND,
            format!("no running task {}", form.task),
        )
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleForm {
    count: String,
}

pub async fn scale(
    State(st): State<ControlState>,
    form: Result<Json<ScaleForm>, JsonRejection>,
) -> Response {
    let form = match fields(form) {
        Ok(f) => f,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    match form.count.trim().parse::<u32>() {
        Ok(n) if (1..=10).contains(&n) => {
            st.service.set_desired(n);
            ok(format!("Desired count is now {n}"))
        }
        _ => bad(
            StatusCode::BAD_REQUEST,
            format!("count {:?}: must be a whole number 1..=10", form.count),
        ),
    }
}

/// The action forms of the overview (outside the live fragment, so a refresh
/// never wipes what someone is typing).
pub fn forms(status: &Value, deployments: &[Deployment]) -> Markup {
    let tasks: Vec<&str> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str())
        .collect();
    html! {
        section id="actions" aria-labelledby="actions-title" {
            h2 id="actions-title" { "Actions" }
            p id="action-result" role="status" aria-live="polite" {}
            div class="forms" {
                form data-action="/console/actions/fault" id="fault-form" {
                    h3 { "Inject a fault" }
                    label for="fault-preset" { "Fault" }
                    select id="fault-preset" name="preset" {
                        @for p in PRESETS { option value=(p.id) { (p.label) } }
                    }
                    label for="fault-target" { "Tasks" }
                    select id="fault-target" name="target" {
                        option value="all" { "all tasks" }
                        option value="one" { "one task" }
                        @for t in &tasks { option value=(t) { (t) } }
                    }
                    button type="submit" id="inject" { "Inject fault" }
                }
                form data-action="/console/actions/reset" id="reset-form" {
                    h3 { "Reset faults" }
                    p { "Clears every fault on every task." }
                    button type="submit" id="reset" { "Reset faults" }
                }
                form data-action="/console/actions/deploy" id="deploy-form" {
                    h3 { "Deploy a configuration change" }
                    label for="deploy-env" { "Set (KEY=VALUE, one per line)" }
                    textarea id="deploy-env" name="env" rows="2" placeholder="LOG_LEVEL=debug" {}
                    label for="deploy-unset" { "Unset (keys)" }
                    input id="deploy-unset" name="unset" type="text";
                    label for="deploy-description" { "Description" }
                    input id="deploy-description" name="description" type="text";
                    button type="submit" { "Deploy" }
                }
                form data-action="/console/actions/rollback" id="rollback-form" {
                    h3 { "Roll back" }
                    label for="rollback-to" { "Redeploy what this deployment ran" }
                    select id="rollback-to" name="deployment" {
                        @for d in deployments { option value=(d.id) { (d.id) " · " (d.version) " · " (d.outcome.as_str()) } }
                    }
                    button type="submit" { "Roll back" }
                }
                form data-action="/console/actions/scale" id="scale-form" {
                    h3 { "Scale" }
                    label for="scale-count" { "Desired task count (1–10)" }
                    input id="scale-count" name="count" type="number" min="1" max="10" value=(status["desired_count"]);
                    button type="submit" { "Scale" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_every_bad_one_is_named() {
        let ok = parse_pairs("LOG_LEVEL=debug\nQUOTE_ENGINE=v2").unwrap();
        assert_eq!(ok["LOG_LEVEL"], "debug");
        assert_eq!(ok["QUOTE_ENGINE"], "v2");
        let e = parse_pairs("GOOD=1 bad-key=2 novalue").unwrap_err();
        assert!(
            e.contains("\"bad-key=2\"") && e.contains("\"novalue\""),
            "{e}"
        );
        assert!(!e.contains("GOOD"), "{e}");
    }

    #[test]
    fn every_preset_is_a_bounded_fault_endpoint() {
        let mut ids: Vec<&str> = PRESETS.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PRESETS.len(), "preset ids are unique");
        for p in PRESETS {
            assert!(p.path.starts_with("/error/"), "{}", p.path);
            let persistent = ["error-rate", "latency", "disable-health", "cpu-spike"];
            if persistent.iter().any(|k| p.path.contains(k)) {
                assert!(
                    p.path.contains("duration_s=") || p.path.contains("seconds="),
                    "{} must say how long it lasts",
                    p.path
                );
            }
        }
    }
}
