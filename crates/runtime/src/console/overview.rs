//! The overview: tasks (deployment, health, CPU, memory), load balancer
//! targets, alarms with state and reason, deployments, the latest
//! investigations, and the action forms. The live part is a fragment the
//! script fetches again every two seconds, rendered by the same code as the
//! first page.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use demo_model::events::{Deployment, Window, ns};
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{page, state_class, time};
use super::{ConsoleError, actions, blocking};
use crate::control::{ControlState, status_json};
use crate::control_auth::ConsoleSession;

/// What the live fragment shows.
struct Overview {
    status: Value,
    /// Latest (CPU %, memory %) per task id.
    usage: HashMap<String, (Option<f64>, Option<f64>)>,
    /// Latest transition reason and time per alarm.
    reasons: HashMap<String, (String, i64)>,
    deployments: Vec<Deployment>,
    investigations: Vec<demo_store::InvestigationRow>,
    /// (alarm name, description) in catalogue order.
    alarms: Vec<(String, String)>,
}

async fn load(st: &ControlState) -> Result<Overview, ConsoleError> {
    let status = status_json(st);
    let dir = st.service.config.state_dir.clone();
    let tasks: Vec<String> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    let alarms: Vec<(String, String)> = st
        .service
        .config
        .catalog
        .alarms
        .iter()
        .map(|a| (a.name.clone(), a.description.clone()))
        .collect();
    let names: Vec<String> = alarms.iter().map(|a| a.0.clone()).collect();
    // Two periods of the fastest tick back: the latest sample of each task.
    let recent_ms = (st.service.config.tick().as_millis() as i64 * 4).max(2_000);
    let (usage, reasons, deployments, investigations) = blocking(move || {
        let reader = demo_store::Reader::open(&dir)?;
        let now = crate::now_ms();
        let w = Window::new(now - recent_ms, now + 1);
        let mut usage = HashMap::new();
        for t in &tasks {
            let last = |name: &str| -> Result<Option<f64>, ConsoleError> {
                Ok(reader.samples(ns::ECS, name, t, w)?.last().map(|s| s.value))
            };
            usage.insert(
                t.clone(),
                (last("CPUUtilization")?, last("MemoryUtilization")?),
            );
        }
        let mut reasons = HashMap::new();
        for n in &names {
            if let Some(t) = reader.transitions(Some(n), 1)?.into_iter().next() {
                reasons.insert(n.clone(), (t.reason, t.at_ms));
            }
        }
        Ok((
            usage,
            reasons,
            reader.deployments(8)?,
            reader.investigations(5)?,
        ))
    })
    .await?;
    Ok(Overview {
        status,
        usage,
        reasons,
        deployments,
        investigations,
        alarms,
    })
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} %"))
}

fn live(o: &Overview) -> Markup {
    let s = &o.status;
    let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
    let healthy = tasks.iter().filter(|t| t["health"] == "healthy").count();
    let states: HashMap<String, String> = s["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a["name"].as_str()?.to_string(),
                a["state"].as_str()?.to_string(),
            ))
        })
        .collect();
    let in_alarm = states.values().filter(|v| *v == "ALARM").count();
    html! {
        p class="summary" id="summary" {
            strong id="healthy-count" { (healthy) " of " (s["desired_count"]) " tasks healthy" }
            " · " (in_alarm) " alarms in ALARM"
            " · deployment " code { (s["current_deployment"].as_str().unwrap_or("")) }
            @if let Some(d) = s["deployment_in_progress"].as_str() { " (" (d) " in progress)" }
            " · load balancer " code { "http://" (s["load_balancer"].as_str().unwrap_or("")) "/" }
            " · time scale " (s["time_scale"]) "×"
        }
        h2 { "Tasks and targets" }
        div class="scroll" {
            table id="tasks" {
                caption { "Running tasks and their load balancer target health" }
                thead { tr {
                    th scope="col" { "Task" } th scope="col" { "Deployment" } th scope="col" { "Version" }
                    th scope="col" { "Target health" } th scope="col" { "CPU" } th scope="col" { "Memory" }
                    th scope="col" { "Started" } th scope="col" { "Action" }
                } }
                tbody {
                    @for t in &tasks {
                        @let id = t["id"].as_str().unwrap_or("");
                        @let health = t["health"].as_str().unwrap_or("");
                        @let (cpu, mem) = o.usage.get(id).copied().unwrap_or((None, None));
                        tr data-task=(id) {
                            th scope="row" { (id) @if t["stopping"] == true { " (stopping)" } }
                            td { (t["deployment"].as_str().unwrap_or("")) }
                            td { (t["version"].as_str().unwrap_or("")) }
                            td {
                                span class=(state_class(health)) data-health=(health) { (health) }
                                @if let Some(r) = t["health_reason"].as_str().filter(|r| !r.is_empty()) { " " small { (r) } }
                            }
                            td { (pct(cpu)) } td { (pct(mem)) }
                            td { (t["started_ms"].as_i64().map(time).unwrap_or_default()) }
                            td {
                                form class="inline" data-action="/console/actions/stop" {
                                    input type="hidden" name="task" value=(id);
                                    button type="submit" aria-label={"Stop " (id)} { "Stop" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Alarms" }
        div class="scroll" {
            table id="alarms" {
                caption { "Alarms of the catalogue, their state and the latest reason" }
                thead { tr { th scope="col" { "Alarm" } th scope="col" { "State" } th scope="col" { "Since" } th scope="col" { "Reason" } } }
                tbody {
                    @for (name, description) in &o.alarms {
                        @let state = states.get(name).map(String::as_str).unwrap_or("INSUFFICIENT_DATA");
                        @let reason = o.reasons.get(name);
                        tr data-alarm=(name) {
                            th scope="row" { a href={"/console/alarms/" (name)} { (name) } br; small { (description) } }
                            td { span class=(state_class(state)) data-state=(state) { (state) } }
                            td { (reason.map(|r| time(r.1)).unwrap_or_default()) }
                            td { (reason.map(|r| r.0.as_str()).unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Latest investigations" }
        @if o.investigations.is_empty() {
            p { "None yet: an alarm going to ALARM starts one." }
        } @else {
            ul id="latest-investigations" {
                @for i in &o.investigations {
                    li { a href={"/console/investigations/" (i.id)} { (i.id) } " · " (i.alarm) " · " (time(i.created_ms)) " · " (i.summary) }
                }
            }
        }
        h2 { "Deployments" }
        div class="scroll" {
            table id="deployments" {
                caption { "The latest deployments, newest first" }
                thead { tr { th scope="col" { "Deployment" } th scope="col" { "Version" } th scope="col" { "Started" } th scope="col" { "Outcome" } th scope="col" { "Changes" } th scope="col" { "Description" } } }
                tbody {
                    @for d in &o.deployments {
                        tr {
                            th scope="row" { (d.id) }
                            td { (d.version) br; small { code { (d.git_sha.get(..12).unwrap_or(&d.git_sha)) } } }
                            td { (time(d.started_ms)) }
                            td { (d.outcome.as_str()) @if let Some(r) = &d.reason { br; small { (r) } } }
                            td { @for c in &d.changes { code { (c.key) "=" (c.to.as_deref().unwrap_or("(unset)")) } " " } }
                            td { (d.description) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /`: the whole overview.
pub async fn page_handler(
    State(st): State<ControlState>,
    session: Option<Extension<ConsoleSession>>,
) -> Result<Html<String>, ConsoleError> {
    let o = load(&st).await?;
    let session = session.map(|Extension(s)| s);
    Ok(page(
        "Overview",
        session.as_ref(),
        "/",
        html! {
            h1 { "Overview" }
            section id="live" data-refresh="/console/fragment/overview" aria-label="Live state" { (live(&o)) }
            (actions::forms(&o.status, &o.deployments))
        },
    ))
}

/// `GET /console/fragment/overview`: the live part alone, for the script.
pub async fn fragment(State(st): State<ControlState>) -> Response {
    match load(&st).await {
        Ok(o) => Html(live(&o).into_string()).into_response(),
        Err(e) => e.into_response(),
    }
}
