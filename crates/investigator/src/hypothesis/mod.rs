//! Hypothesis ranking: runs every rule of [`crate::rules`] over the
//! analyzers' findings, weighs each candidate's evidence for and against,
//! and orders them. Every claim is an [`Evidence`] item with an id that the
//! report's sentences cite.
//!
//! The ranking itself knows no category: it builds the shared context
//! (surged templates, OOM kills, crashes), lets each rule gather its
//! candidates, then lets each rule weigh the others' (causal order,
//! isolation), applies relevance (a cause that cannot move the alarm's
//! metric is a secondary finding: ×0.6), and when nothing reaches
//! [`MIN_SCORE`] answers `insufficient_evidence` with the missing signals
//! named as gaps.

pub mod evidence;
pub mod impact;
pub mod timeline;

use std::collections::BTreeMap;

use serde_json::json;

use crate::investigate::Findings;
use crate::report::{
    Category, CodeCorrelation, CohortRow, CohortTable, Evidence, Gap, Hypothesis, Impact,
    Mitigation, RootCause, TimelineEntry, confidence_label, fmt_duration, fmt_time,
};
use crate::rules::{Cand, Context, RULES};
use evidence::{Ev, cite, f2};

/// Below this score a hypothesis cannot be the root cause.
pub const MIN_SCORE: f64 = 0.4;

/// The CLI forms for mitigation commands.
pub fn cmd_rollback(id: &str) -> String {
    format!("cargo run --release -- deploy --rollback-to {id}")
}
pub fn cmd_stop(task: &str) -> String {
    format!("cargo run --release -- tasks stop {task}")
}
pub const CMD_FAULTS_RESET: &str = "cargo run --release -- faults reset";
pub fn cmd_scale(n: u32) -> String {
    format!("cargo run --release -- scale {n}")
}

/// What [`rank`] produces for the report.
pub struct Ranked {
    pub summary: String,
    pub impact: Impact,
    pub timeline: Vec<TimelineEntry>,
    pub root_cause: RootCause,
    pub hypotheses: Vec<Hypothesis>,
    pub evidence: Vec<Evidence>,
    pub code_correlation: Vec<CodeCorrelation>,
    pub cohorts: Vec<CohortTable>,
    pub mitigation: Vec<Mitigation>,
    pub extra_gaps: Vec<Gap>,
}

/// The context every rule reads.
fn context(f: &Findings) -> Context<'_> {
    let mut ev = Ev::default();
    let alarm_metric = f
        .alarm_key
        .as_ref()
        .map(|k| k.name.clone())
        .unwrap_or_default();
    let alarm_ev = ev.add(
        "alarm",
        "alarm",
        format!(
            "Alarm {} went to ALARM at {} ({} {} {} over {} × {})",
            f.alarm_name,
            fmt_time(f.alarm_at),
            f.statistic,
            f.comparison.symbol(),
            f.threshold,
            f.evaluation_periods,
            fmt_duration(f.period_ms)
        ),
        Some(f.alarm_at),
        json!({"alarm": f.alarm_name, "threshold": f.threshold, "period_ms": f.period_ms}),
    );
    let surged: Vec<_> = f
        .logs
        .as_ref()
        .map(|l| l.surged().filter(|t| t.error_like).collect())
        .unwrap_or_default();
    let mut template_ev = BTreeMap::new();
    for t in surged.iter().take(8) {
        let id = ev.add(
            &format!("template:{}", t.template),
            "log_template",
            format!(
                "{} log template \"{}\" {}: {} lines in the incident window ({}/min) vs {}/min before{}{}",
                t.level,
                t.template,
                if t.is_new { "is new" } else { "surged" },
                t.incident_count,
                f2(t.incident_per_min),
                f2(t.baseline_per_min),
                t.routes
                    .first()
                    .map(|(r, n)| format!(", {n} of them on route {r}"))
                    .unwrap_or_default(),
                if t.trace_ids.is_empty() {
                    String::new()
                } else {
                    format!("; example traces {}", t.trace_ids.join(", "))
                }
            ),
            t.first_incident_ms,
            json!({"template": t.template, "level": t.level, "baseline_count": t.baseline_count,
                   "incident_count": t.incident_count, "is_new": t.is_new, "z": t.z,
                   "routes": t.routes.iter().take(5).collect::<Vec<_>>(),
                   "tasks": t.tasks.iter().take(5).collect::<Vec<_>>(), "example": t.example,
                   "trace_ids": t.trace_ids}),
        );
        template_ev.insert(t.template.clone(), id);
    }
    let oom_tasks = f
        .tasks
        .tasks
        .values()
        .filter(|t| t.oom_kills.iter().any(|&x| x >= f.incident.start_ms))
        .map(|t| t.task_id.clone())
        .collect();
    let crashed = f
        .tasks
        .tasks
        .values()
        .map(|t| {
            (
                t.task_id.clone(),
                t.crashes
                    .iter()
                    .filter(|c| c.0 >= f.incident.start_ms)
                    .count(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    Context {
        f,
        ev,
        alarm_ev,
        alarm_metric,
        surged,
        template_ev,
        oom_tasks,
        crashed,
        code_correlation: Vec::new(),
    }
}

/// Ranks the hypotheses for `f`.
pub fn rank(f: &Findings) -> Ranked {
    let mut cx = context(f);
    // Pass 1: evidence for.
    let mut cands: Vec<Cand> = Vec::new();
    for r in RULES {
        cands.extend(r.gather(&mut cx));
    }
    // Pass 2: evidence against, each rule seeing what the others found.
    let rivals = cands.clone();
    for c in &mut cands {
        if let Some(r) = crate::rules::rule(c.category) {
            r.against(&mut cx, c, &rivals);
        }
    }
    // Relevance: a cause that cannot move the alarm's metric is a secondary
    // finding for this alarm, however clear it is.
    let metric = cx.alarm_metric.clone();
    for c in &mut cands {
        if !metric.is_empty() && !explains(c.category, &metric) {
            c.factor *= 0.6;
            let id = cx.ev.add(
                &format!("irrelevant:{}", c.category),
                "absence",
                format!(
                    "{} does not by itself move {}, the alarm's metric",
                    c.category.phrase(),
                    metric
                ),
                None,
                json!({"category": c.category, "metric": metric}),
            );
            c.oppose(id, 0.0);
        }
    }
    let score = |c: &Cand| crate::rules::rule(c.category).map_or(c.score(), |r| r.score(c));
    cands.sort_by(|a, b| {
        score(b)
            .total_cmp(&score(a))
            .then(a.category.cmp(&b.category))
            .then_with(|| a.entity.cmp(&b.entity))
    });
    let mut extra_gaps = Vec::new();
    let best = cands.first().map_or(0.0, score);
    if best < MIN_SCORE {
        let c = insufficient(&mut cx, best, &mut extra_gaps);
        cands.insert(0, c);
    }
    let scored: Vec<f64> = cands
        .iter()
        .map(|c| {
            if c.category == Category::InsufficientEvidence {
                c.base
            } else {
                score(c)
            }
        })
        .collect();
    let hypotheses: Vec<Hypothesis> = cands
        .iter()
        .zip(&scored)
        .enumerate()
        .map(|(i, (c, &s))| Hypothesis {
            rank: i as u32 + 1,
            category: c.category,
            entity: c.entity.clone(),
            score: (s * 1000.0).round() / 1000.0,
            confidence_label: confidence_label(s).to_owned(),
            statement: c.statement.clone(),
            evidence_for: c.pro_ids(),
            evidence_against: c.con_ids(),
        })
        .collect();
    let top = &hypotheses[0];
    let root_cause = RootCause {
        category: top.category,
        entity: top.entity.clone(),
        confidence: top.score,
        confidence_label: top.confidence_label.clone(),
        statement: top.statement.clone(),
        evidence: top.evidence_for.clone(),
    };
    let mut mitigation = Vec::new();
    for (i, c) in cands.iter().enumerate().take(3) {
        if scored[i] < MIN_SCORE || c.category == Category::InsufficientEvidence {
            continue;
        }
        for (cmd, why) in &c.mitigation {
            if !mitigation.iter().any(|m: &Mitigation| &m.command == cmd) {
                mitigation.push(Mitigation {
                    command: cmd.clone(),
                    why: why.clone(),
                    hypothesis_rank: i as u32 + 1,
                });
            }
        }
    }

    let per_period = cx.buckets_per_period();
    let impact = impact::impact(f, &mut cx.ev, per_period);
    let timeline = timeline::timeline(f, &cx.ev);
    let cohorts = cohort_tables(f, &cx.ev);
    let summary = if top.category == Category::InsufficientEvidence {
        format!(
            "{} fired at {} but the evidence does not support a root cause: {} (see the investigation gaps){}",
            f.alarm_name,
            fmt_time(f.alarm_at),
            impact.text.trim_end_matches('.'),
            cite(&top.evidence_for)
        )
    } else {
        format!(
            "{}: {} since {}, most likely because of {}{} ({} confidence {:.2}){}",
            f.alarm_name,
            impact.text.trim_end_matches('.'),
            fmt_time(f.onset_ms),
            top.category.phrase(),
            top.entity
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            top.confidence_label,
            top.score,
            cite(&top.evidence_for)
        )
    };
    Ranked {
        summary,
        impact,
        timeline,
        root_cause,
        hypotheses,
        evidence: cx.ev.items,
        code_correlation: cx.code_correlation,
        cohorts,
        mitigation,
        extra_gaps,
    }
}

/// The cohort comparisons as report tables, citing their evidence.
fn cohort_tables(f: &Findings, ev: &Ev) -> Vec<CohortTable> {
    let row = |name: &str, s: &crate::analyze::cohorts::CohortStats| CohortRow {
        cohort: name.to_owned(),
        tasks: s.tasks.clone(),
        requests: s.requests,
        failures: s.failures,
        failure_rate: s.failure_rate,
        cpu_mean: s.cpu_mean,
        memory_slope_per_period: s.memory_slope_per_period,
        exits: s.exits,
        routes: s.routes.iter().take(5).cloned().collect(),
    };
    f.cohorts
        .iter()
        .map(|c| CohortTable {
            deployment_id: c.deployment_id.clone(),
            verdict: serde_json::to_value(c.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            verdict_text: c.verdict.as_str().to_owned(),
            overlap: c.overlap,
            from_ms: c.from_ms,
            to_ms: c.to_ms,
            baseline_failure_rate: c.baseline_failure_rate,
            rows: vec![row("new", &c.new), row("old", &c.old)],
            evidence: ev
                .id(&format!("cohort:{}", c.deployment_id))
                .into_iter()
                .collect(),
        })
        .collect()
}

/// The `insufficient_evidence` answer, with the missing signals as gaps.
fn insufficient(cx: &mut Context<'_>, best: f64, gaps: &mut Vec<Gap>) -> Cand {
    let f = cx.f;
    let mut c = Cand::new(Category::InsufficientEvidence, None);
    c.base = (1.0 - best).clamp(0.0, 0.97);
    let alarm_series = f.alarm_key.as_ref().and_then(|k| f.metrics.series.get(k));
    let (before, during) = alarm_series
        .map(|s| (s.mean(f.base_from, f.split), s.mean(f.split, f.grid.len)))
        .unwrap_or((None, None));
    let id = cx.ev.add(
        "no-change",
        "absence",
        format!(
            "No significant change explains the alarm: {} averaged {} before and {} during the incident window (threshold {}); no log template surged, no task failed{}",
            cx.alarm_metric,
            before.map_or("n/a".into(), f2),
            during.map_or("n/a".into(), f2),
            f.threshold,
            if f.deploys.is_empty() { ", no deployment happened" } else { ", no deployment's changes relate to it" }
        ),
        Some(f.alarm_at),
        json!({"before": before, "during": during, "threshold": f.threshold}),
    );
    c.support(cx.alarm_ev.clone(), 0.0);
    c.support(id, 0.0);
    if alarm_series
        .and_then(|s| s.change)
        .is_none_or(|c| !c.significant)
    {
        gaps.push(Gap {
            source: "analysis".into(),
            detail: format!("the alarm metric {} shows no significant change point: the threshold may be crossed by normal variation", cx.alarm_metric),
        });
    }
    if cx.surged.is_empty() {
        gaps.push(Gap {
            source: "analysis".into(),
            detail: "no log template is new or surged in the incident window".into(),
        });
    }
    if f.tasks
        .in_window(f.incident.start_ms, f.alarm_at)
        .next()
        .is_none()
    {
        gaps.push(Gap {
            source: "analysis".into(),
            detail: "no task crashed, was OOM-killed or failed health checks".into(),
        });
    }
    c.statement = format!(
        "The evidence does not support a root cause (best other hypothesis scores {best:.2} < {MIN_SCORE}){}",
        cite(&c.pro_ids())
    );
    c
}

/// Whether a cause of `category` can by itself move the alarm metric
/// `metric`. Decided by what the metric measures, so a new alarm on a
/// known metric is handled without naming the alarm.
pub fn explains(category: Category, metric: &str) -> bool {
    // Errors the targets answer or log.
    let target_errors = ["ErrorCount", "HTTPCode_Target_5XX_Count"];
    // Errors the load balancer answers itself: no healthy target, or a
    // target that does not answer in time.
    let lb_errors = ["HTTPCode_ELB_5XX_Count"];
    // Capacity: targets and running tasks.
    let capacity = ["UnHealthyHostCount", "HealthyHostCount", "RunningTaskCount"];
    let m = |list: &[&str]| list.contains(&metric);
    match category {
        Category::CodeChange | Category::InsufficientEvidence => true,
        Category::ApplicationFault => m(&target_errors),
        Category::MemoryLeak => {
            m(&["MemoryUtilization"]) || m(&capacity) || m(&target_errors) || m(&lb_errors)
        }
        Category::CpuSaturation => {
            m(&["CPUUtilization", "TargetResponseTime"])
                || m(&["UnHealthyHostCount", "HealthyHostCount"])
                || m(&lb_errors)
        }
        Category::HealthCheckFailure => {
            m(&["UnHealthyHostCount", "HealthyHostCount"]) || m(&lb_errors) || m(&target_errors)
        }
        Category::SlowDependency => {
            m(&["TargetResponseTime"]) || m(&target_errors) || m(&lb_errors)
        }
        Category::TrafficSurge => {
            m(&[
                "CPUUtilization",
                "MemoryUtilization",
                "TargetResponseTime",
                "RequestCount",
            ]) || m(&target_errors)
                || m(&lb_errors)
        }
        Category::CrashLoop => m(&capacity) || m(&target_errors) || m(&lb_errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance_follows_the_metric_an_alarm_watches() {
        // Load-balancer 5xx come from missing or failing targets, not from a
        // route's own errors (those are target 5xx).
        assert!(!explains(
            Category::ApplicationFault,
            "HTTPCode_ELB_5XX_Count"
        ));
        assert!(explains(
            Category::ApplicationFault,
            "HTTPCode_Target_5XX_Count"
        ));
        for c in [
            Category::CrashLoop,
            Category::HealthCheckFailure,
            Category::MemoryLeak,
        ] {
            assert!(explains(c, "HTTPCode_ELB_5XX_Count"), "{c}");
        }
        // Running tasks below desired: tasks that exit.
        assert!(explains(Category::CrashLoop, "RunningTaskCount"));
        assert!(explains(Category::MemoryLeak, "RunningTaskCount"));
        assert!(!explains(Category::SlowDependency, "RunningTaskCount"));
        assert!(explains(Category::CrashLoop, "HealthyHostCount"));
        // A deployment can move anything.
        assert!(explains(Category::CodeChange, "RunningTaskCount"));
    }
}
