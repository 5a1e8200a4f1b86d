//! **crash_loop**: tasks exit and are restarted over and over.
//!
//! Detects: non-zero task exits (not OOM kills, not a graceful SIGTERM) in
//! the incident, and the replacements started for them, counted per alarm
//! period; the running task count dipping confirms it.
//!
//! Why: a crash loop takes capacity away in bursts: unhealthy or missing
//! targets, load-balancer 5xx, running tasks below desired. Exits are its
//! own signal; OOM kills belong to memory_leak, and exits confined to a
//! convicted deployment's tasks belong to that deployment.
//!
//! Example: task-0002 exits with code 1 every 5 s and is replaced each time
//! (0.6 exits per period) → crash_loop `task-0002`.

use std::collections::BTreeSet;

use demo_model::events::ns;
use serde_json::json;

use super::{Cand, Context, Rule};
use crate::hypothesis::evidence::cite;
use crate::hypothesis::{CMD_FAULTS_RESET, MIN_SCORE};
use crate::report::Category;

pub struct CrashLoop;

impl Rule for CrashLoop {
    fn category(&self) -> Category {
        Category::CrashLoop
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let total: usize = cx.crashed.iter().map(|c| c.1).sum();
        if total == 0 {
            return Vec::new();
        }
        let tasks: Vec<String> = cx.crashed.iter().map(|c| c.0.clone()).collect();
        let mut c = Cand::new(Category::CrashLoop, Some(tasks.join(",")));
        c.explains_tasks.clone_from(&tasks);
        let codes: BTreeSet<i32> = f
            .tasks
            .tasks
            .values()
            .flat_map(|t| {
                t.crashes
                    .iter()
                    .filter(|c| c.0 >= f.incident.start_ms)
                    .map(|c| c.1)
            })
            .collect();
        let restarts = f
            .tasks
            .tasks
            .values()
            .filter(|t| t.started_ms.is_some_and(|s| s >= f.incident.start_ms))
            .count();
        let periods = (f.incident.duration_ms() as f64 / f.period_ms as f64).max(1.0);
        let per_period = total as f64 / periods;
        c.onset_ms = f
            .tasks
            .first_since(f.incident.start_ms, |t| t.crashes.iter().map(|c| c.0));
        let id = cx.ev.add(
            "crashes",
            "task_event",
            format!(
                "{} task exit(s) with a non-zero code during the incident ({:.1} per alarm period, codes {:?}) in {}; {} replacement task(s) started",
                total,
                per_period,
                codes,
                tasks.join(", "),
                restarts
            ),
            c.onset_ms,
            json!({"tasks": cx.crashed, "per_period": per_period, "restarts": restarts}),
        );
        // One exit is an incident; repeated exits are a loop.
        c.support(id, 0.35 + (0.1 * (total as f64 - 1.0)).min(0.3));
        if let Some(id) = cx.change(ns::ECS, "RunningTaskCount", false) {
            c.support(id, 0.05);
        }
        if matches!(
            cx.alarm_metric.as_str(),
            "RunningTaskCount" | "HealthyHostCount" | "UnHealthyHostCount"
        ) {
            c.support(cx.alarm_ev.clone(), 0.1);
        }
        c.statement = format!(
            "Tasks crash and restart repeatedly ({} exits){}",
            total,
            cite(&c.pro_ids())
        );
        c.mitigation
            .push((CMD_FAULTS_RESET.to_owned(), "stop an injected crash".into()));
        vec![c]
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, rivals: &[Cand]) {
        // Exits of a convicted deployment's own tasks are that deployment's.
        let mine = c.explains_tasks.clone();
        for d in rivals.iter().filter(|d| {
            d.category == Category::CodeChange
                && d.score() >= MIN_SCORE
                && mine.iter().any(|t| d.explains_tasks.contains(t))
        }) {
            let dep = d.entity.clone().unwrap_or_default();
            if let Some(id) = cx
                .ev
                .id(&format!("deptasks:{dep}"))
                .or_else(|| cx.ev.id(&format!("deploy:{dep}")))
            {
                c.oppose(id, 0.15);
            }
        }
    }
}
