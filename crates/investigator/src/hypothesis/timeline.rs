//! The timeline: deployments, change points, surged templates and task
//! events of the analysis range in time order, each citing its evidence.

use super::evidence::{Ev, short};
use crate::investigate::Findings;
use crate::report::TimelineEntry;

pub fn timeline(f: &Findings, ev: &Ev) -> Vec<TimelineEntry> {
    let mut t = Vec::new();
    let id = |k: &str| ev.keys.get(k).cloned().into_iter().collect::<Vec<_>>();
    for d in &f.deploys {
        let dep = &d.deployment;
        t.push(TimelineEntry {
            ts_ms: dep.started_ms,
            kind: "deployment".into(),
            text: format!(
                "Deployment {} started (version {}, commit {})",
                dep.id,
                dep.version,
                short(&dep.git_sha)
            ),
            evidence: id(&format!("deploy:{}", dep.id)),
        });
        if let Some(fin) = dep.finished_ms.filter(|x| *x <= f.alarm_at) {
            t.push(TimelineEntry {
                ts_ms: fin,
                kind: "deployment".into(),
                text: format!("Deployment {} finished: {}", dep.id, dep.outcome.as_str()),
                evidence: id(&format!("deploy:{}", dep.id)),
            });
        }
    }
    for e in &ev.items {
        if matches!(
            e.kind.as_str(),
            "metric_change" | "log_template" | "task_event"
        ) && let Some(ts) = e.ts_ms
            && e.id != "impact"
            && !e.summary.starts_with("Impact")
        {
            t.push(TimelineEntry {
                ts_ms: ts,
                kind: e.kind.clone(),
                text: e.summary.clone(),
                evidence: vec![e.id.clone()],
            });
        }
    }
    for task in f.tasks.tasks.values() {
        for &x in task.oom_kills.iter().filter(|&&x| x >= f.baseline.start_ms) {
            t.push(TimelineEntry {
                ts_ms: x,
                kind: "task_event".into(),
                text: format!("Task {} OOM-killed", task.task_id),
                evidence: id("oom"),
            });
        }
        for c in task.crashes.iter().filter(|c| c.0 >= f.baseline.start_ms) {
            t.push(TimelineEntry {
                ts_ms: c.0,
                kind: "task_event".into(),
                text: format!("Task {} exited with code {}", task.task_id, c.1),
                evidence: id("crashes"),
            });
        }
    }
    t.push(TimelineEntry {
        ts_ms: f.onset_ms,
        kind: "onset".into(),
        text: "Incident onset (first significant change)".into(),
        evidence: Vec::new(),
    });
    t.push(TimelineEntry {
        ts_ms: f.alarm_at,
        kind: "alarm".into(),
        text: format!("Alarm {} → ALARM", f.alarm_name),
        evidence: id("alarm"),
    });
    t.sort_by(|a, b| a.ts_ms.cmp(&b.ts_ms).then_with(|| a.kind.cmp(&b.kind)));
    t
}
