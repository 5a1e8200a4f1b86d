//! **health_check_failure**: tasks fail their health checks while the
//! process keeps running.
//!
//! Detects: the load balancer marking tasks unhealthy in the incident, the
//! unhealthy-host count rising, the health route answering 5xx.
//!
//! Why: a health check that fails by itself (a broken or disabled health
//! endpoint) gets a healthy process replaced. But a failing health check is
//! also the most common *symptom*: of CPU saturation (the check times out),
//! of memory pressure, of tasks that exit. When such a cause began before
//! the first unhealthy mark, that cause ranks first and this one steps back.
//!
//! Example: task-0001's `/health` answers 503 from 10:02 while its CPU and
//! memory are normal → health_check_failure `task-0001`. With CPU at 98 %
//! since 10:00, the same marks rank below cpu_saturation.

use demo_model::events::{EpochMs, SERVICE_DIMENSION, ns};
use serde_json::json;

use super::{Cand, Context, Rule};
use crate::analyze::tasks::TaskHistory;
use crate::hypothesis::evidence::{cite, f2};
use crate::hypothesis::{CMD_FAULTS_RESET, MIN_SCORE, cmd_stop};
use crate::report::Category;

pub struct HealthCheckFailure;

/// When `t` turned unhealthy for this incident: a mark inside it, or a mark
/// before it that still held when it began (no healthy mark since, the task
/// still running). The load balancer marks a target after several failed
/// checks and the alarm needs its own evaluation periods on top, so the mark
/// often lands just before the incident window: where it falls must not
/// decide whether the task is named.
fn unhealthy_during(t: &TaskHistory, start: EpochMs) -> Option<EpochMs> {
    if let Some(at) = t.unhealthy.iter().copied().filter(|&x| x >= start).min() {
        return Some(at);
    }
    let last = t.unhealthy.iter().copied().filter(|&x| x < start).max()?;
    let recovered = t.healthy.iter().any(|&h| h > last && h < start);
    let gone = t.stopped_ms.is_some_and(|s| s < start);
    (!recovered && !gone).then_some(last)
}

impl Rule for HealthCheckFailure {
    fn category(&self) -> Category {
        Category::HealthCheckFailure
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let marks: Vec<(String, EpochMs)> = f
            .tasks
            .tasks
            .values()
            .filter_map(|t| {
                unhealthy_during(t, f.incident.start_ms).map(|at| (t.task_id.clone(), at))
            })
            .collect();
        let unhealthy_tasks: Vec<String> = marks.iter().map(|(t, _)| t.clone()).collect();
        let uh = cx.svc(ns::ALB, "UnHealthyHostCount");
        let uh_up = uh.and_then(|s| s.changed(true));
        let healthy_down = cx
            .svc(ns::ALB, "HealthyHostCount")
            .and_then(|s| s.changed(false));
        if unhealthy_tasks.is_empty() && uh_up.is_none() && healthy_down.is_none() {
            return Vec::new();
        }
        let mut c = Cand::new(
            Category::HealthCheckFailure,
            Some(if unhealthy_tasks.is_empty() {
                SERVICE_DIMENSION.to_owned()
            } else {
                unhealthy_tasks.join(",")
            }),
        );
        c.explains_tasks.clone_from(&unhealthy_tasks);
        c.onset_ms = marks
            .iter()
            .map(|&(_, at)| at)
            .min()
            .or_else(|| uh_up.map(|cp| f.grid.time(cp.onset)));
        if !unhealthy_tasks.is_empty() {
            let id = cx.ev.add(
                "unhealthy",
                "task_event",
                format!(
                    "Load balancer marked tasks unhealthy during the incident: {}",
                    unhealthy_tasks.join(", ")
                ),
                c.onset_ms,
                json!({"tasks": unhealthy_tasks}),
            );
            c.support(id, 0.35);
        }
        if let Some(id) = cx.change(ns::ALB, "UnHealthyHostCount", true) {
            c.support(id, 0.15);
        } else if let Some(id) = cx.change(ns::ALB, "HealthyHostCount", false) {
            c.support(id, 0.15);
        }
        if let Some(r) = f
            .routes
            .iter()
            .find(|r| r.route == f.health_path && r.incident_5xx_rps > r.baseline_5xx_rps)
        {
            let id = cx.ev.add(
                &format!("route:{}", r.route),
                "route",
                format!(
                    "Health check route {} answers 5xx: {} → {} per alarm period",
                    r.route,
                    f2(cx.per_period(r.baseline_5xx_rps)),
                    f2(cx.per_period(r.incident_5xx_rps))
                ),
                Some(f.incident.start_ms),
                json!({"route": r}),
            );
            c.support(id, 0.1);
        }
        if matches!(
            cx.alarm_metric.as_str(),
            "UnHealthyHostCount" | "HealthyHostCount"
        ) {
            c.support(cx.alarm_ev.clone(), 0.2);
        }
        let dead: Vec<&String> = unhealthy_tasks
            .iter()
            .filter(|t| cx.oom_tasks.contains(t) || cx.crashed.iter().any(|(c, _)| c == *t))
            .collect();
        if unhealthy_tasks.is_empty() && (!cx.crashed.is_empty() || !cx.oom_tasks.is_empty()) {
            let id = cx.ev.add(
                "unhealthy-after-exit",
                "task_event",
                "No running task failed its health check; targets were unhealthy because tasks exited".to_owned(),
                None,
                json!({"oom": cx.oom_tasks, "crashed": cx.crashed}),
            );
            c.oppose(id, 0.25);
        } else if !dead.is_empty() && dead.len() == unhealthy_tasks.len() {
            let id = cx.ev.add(
                "unhealthy-dead",
                "task_event",
                "Every unhealthy task also crashed or was OOM-killed: failing health checks are a symptom".to_owned(),
                None,
                json!({"tasks": dead}),
            );
            c.oppose(id, 0.3);
        } else if !unhealthy_tasks.is_empty() {
            // Running processes that fail their checks: the check itself.
            if let Some(id) = cx.ev.id("unhealthy") {
                c.support(id, 0.1);
            }
        }
        c.statement = format!(
            "Health checks fail on {} while the process keeps running{}",
            c.entity.as_deref().unwrap_or("the service"),
            cite(&c.pro_ids())
        );
        for t in unhealthy_tasks.iter().take(2) {
            c.mitigation
                .push((cmd_stop(t), format!("replace unhealthy task {t}")));
        }
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "re-enable a disabled health check".into(),
        ));
        vec![c]
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, rivals: &[Cand]) {
        // A resource cause that began before the first unhealthy mark, on
        // the same tasks or the whole service, makes the failures a symptom.
        let Some(unhealthy_at) = c.onset_ms else {
            return;
        };
        let mine = c.explains_tasks.clone();
        for r in rivals.iter().filter(|r| {
            matches!(
                r.category,
                Category::CpuSaturation | Category::MemoryLeak | Category::TrafficSurge
            ) && r.score() >= MIN_SCORE
                && r.onset_ms.is_some_and(|t| t <= unhealthy_at)
                && (r.entity.as_deref() == Some(SERVICE_DIMENSION)
                    || mine.is_empty()
                    || mine.iter().any(|t| r.explains_tasks.contains(t)))
        }) {
            let id = cx.ev.add(
                &format!("symptom-of:{}", r.category),
                "absence",
                format!(
                    "{} began before the first failed health check: the failures are its symptom",
                    r.category.phrase()
                ),
                r.onset_ms,
                json!({"cause": r.category, "cause_onset_ms": r.onset_ms, "unhealthy_ms": unhealthy_at}),
            );
            c.oppose(id, 0.45);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(unhealthy: &[EpochMs], healthy: &[EpochMs], stopped: Option<EpochMs>) -> TaskHistory {
        TaskHistory {
            task_id: "task-0001".into(),
            unhealthy: unhealthy.to_vec(),
            healthy: healthy.to_vec(),
            stopped_ms: stopped,
            ..TaskHistory::default()
        }
    }

    #[test]
    fn a_mark_just_before_the_incident_that_still_holds_names_the_task() {
        // Inside the window.
        assert_eq!(
            unhealthy_during(&task(&[1_500], &[], None), 1_000),
            Some(1_500)
        );
        // Marked before the window opened and still unhealthy: named, with its real onset.
        assert_eq!(
            unhealthy_during(&task(&[900], &[100], None), 1_000),
            Some(900)
        );
        // Healthy again before the window: not this incident.
        assert_eq!(unhealthy_during(&task(&[900], &[950], None), 1_000), None);
        // Stopped before the window: not this incident.
        assert_eq!(unhealthy_during(&task(&[900], &[], Some(990)), 1_000), None);
        // Never unhealthy.
        assert_eq!(unhealthy_during(&task(&[], &[100], None), 1_000), None);
    }
}
