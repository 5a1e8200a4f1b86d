//! Task lifecycle: OOM kills, crashes (non-zero exits other than a graceful
//! SIGTERM), crash loops, health-check failures and replacements, per task,
//! from the task events of the analysis range.

use std::collections::BTreeMap;

use demo_model::events::{EpochMs, TaskEvent, TaskEventKind};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskHistory {
    pub task_id: String,
    pub deployment_id: Option<String>,
    pub started_ms: Option<EpochMs>,
    pub stopped_ms: Option<EpochMs>,
    pub oom_kills: Vec<EpochMs>,
    /// Non-zero exits that are neither OOM kills nor SIGTERM (143).
    pub crashes: Vec<(EpochMs, i32, Option<String>)>,
    pub unhealthy: Vec<EpochMs>,
    pub healthy: Vec<EpochMs>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskAnalysis {
    pub tasks: BTreeMap<String, TaskHistory>,
    pub events: usize,
}

impl TaskAnalysis {
    /// The earliest of `times` (one task's OOM kills, crashes, ...) across all
    /// tasks at or after `since`.
    pub fn first_since<'a, I>(
        &'a self,
        since: EpochMs,
        times: impl Fn(&'a TaskHistory) -> I,
    ) -> Option<EpochMs>
    where
        I: IntoIterator<Item = EpochMs>,
    {
        self.tasks
            .values()
            .flat_map(times)
            .filter(|&t| t >= since)
            .min()
    }
}

fn is_oom(e: &TaskEvent) -> bool {
    e.kind == TaskEventKind::OomKilled
        || (e.exit_code == Some(137)
            && e.reason
                .as_deref()
                .is_some_and(|r| r.contains("OutOfMemory") || r.contains("memory")))
}

pub fn analyze(events: &[TaskEvent]) -> TaskAnalysis {
    let mut tasks: BTreeMap<String, TaskHistory> = BTreeMap::new();
    for e in events {
        let t = tasks
            .entry(e.task_id.clone())
            .or_insert_with(|| TaskHistory {
                task_id: e.task_id.clone(),
                ..TaskHistory::default()
            });
        if t.deployment_id.is_none() {
            t.deployment_id.clone_from(&e.deployment_id);
        }
        match e.kind {
            TaskEventKind::Started => {
                t.started_ms.get_or_insert(e.ts_ms);
            }
            TaskEventKind::Healthy => t.healthy.push(e.ts_ms),
            TaskEventKind::Unhealthy => t.unhealthy.push(e.ts_ms),
            TaskEventKind::Draining => {}
            TaskEventKind::OomKilled => {
                t.oom_kills.push(e.ts_ms);
                t.stopped_ms = Some(e.ts_ms);
            }
            TaskEventKind::Stopped => {
                t.stopped_ms = Some(e.ts_ms);
                if is_oom(e) {
                    if !t.oom_kills.iter().any(|&x| (x - e.ts_ms).abs() < 5_000) {
                        t.oom_kills.push(e.ts_ms);
                    }
                } else if let Some(code) = e.exit_code.filter(|c| *c != 0 && *c != 143) {
                    t.crashes.push((e.ts_ms, code, e.reason.clone()));
                }
            }
        }
    }
    TaskAnalysis {
        tasks,
        events: events.len(),
    }
}

impl TaskAnalysis {
    pub fn in_window<'a>(
        &'a self,
        from: EpochMs,
        to: EpochMs,
    ) -> impl Iterator<Item = &'a TaskHistory> + 'a {
        self.tasks.values().filter(move |t| {
            t.oom_kills.iter().any(|&x| x >= from && x < to)
                || t.crashes.iter().any(|c| c.0 >= from && c.0 < to)
                || t.unhealthy.iter().any(|&x| x >= from && x < to)
        })
    }
}
