//! Hypothesis ranking: deterministic rules that turn the analyzers' findings
//! into candidate root causes, each with a score in 0–1 and the evidence for
//! and against it. Every claim is an [`Evidence`] item with an id that the
//! report's sentences cite.
//!
//! Rules in brief (the numbers are weights, summed and capped at 0.97):
//! * each category needs a *significant* signal of its own to exist at all
//!   (a change point, a surged template, a task failure); the alarm firing is
//!   never enough on its own;
//! * a deployment is blamed only when its rollout timing fits the onset AND
//!   what it changed relates to what broke (diff lines naming a surged
//!   template, a changed config key whose words appear in a surged template or
//!   an implicated route, or its own tasks failing); timing alone scores 0.2,
//!   below the 0.4 bar;
//! * explanations that subsume another demote it (a fitting deployment
//!   demotes the application fault on the route it broke; timeouts demote the
//!   route fault to a slow dependency; OOM kills demote crash loops and
//!   health-check failures of the same tasks; a traffic surge demotes CPU);
//! * when nothing reaches 0.4, the answer is `insufficient_evidence`, with
//!   the missing signals and data named as gaps.

/// How many alarm periods before the incident onset a traffic surge may begin and still explain it.
const SURGE_LEAD_PERIODS: i64 = 5;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use demo_model::events::{SERVICE_DIMENSION, ns};
use serde_json::json;

use crate::analyze::deploys::DeployCorrelation;
use crate::analyze::metrics::SeriesAnalysis;
use crate::investigate::Findings;
use crate::report::{
    Category, CodeCorrelation, CodeMatch, Evidence, Gap, Hypothesis, Impact, Mitigation, RootCause,
    TimelineEntry, confidence_label, fmt_duration, fmt_time,
};

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

#[derive(Default)]
struct Ev {
    items: Vec<Evidence>,
    keys: HashMap<String, String>,
}

impl Ev {
    /// Adds an item once per `key`; returns its id.
    fn add(
        &mut self,
        key: &str,
        kind: &str,
        summary: String,
        ts_ms: Option<i64>,
        data: serde_json::Value,
    ) -> String {
        if let Some(id) = self.keys.get(key) {
            return id.clone();
        }
        let id = format!("E{}", self.items.len() + 1);
        self.items.push(Evidence {
            id: id.clone(),
            kind: kind.to_owned(),
            summary,
            ts_ms,
            data,
        });
        self.keys.insert(key.to_owned(), id.clone());
        id
    }
}

struct Cand {
    category: Category,
    entity: Option<String>,
    score: f64,
    statement: String,
    pro: Vec<String>,
    con: Vec<String>,
    mitigation: Vec<(String, String)>,
}

impl Cand {
    fn new(category: Category, entity: Option<String>) -> Cand {
        Cand {
            category,
            entity,
            score: 0.0,
            statement: String::new(),
            pro: Vec::new(),
            con: Vec::new(),
            mitigation: Vec::new(),
        }
    }
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
    pub mitigation: Vec<Mitigation>,
    pub extra_gaps: Vec<Gap>,
}

fn cite(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" [{}]", ids.join(", "))
    }
}

fn f2(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn unit(s: &SeriesAnalysis) -> &'static str {
    match (s.key.namespace.as_str(), s.key.name.as_str()) {
        (ns::ECS, "CPUUtilization" | "MemoryUtilization") => "%",
        (_, "TargetResponseTime" | "LatencyMean") => " s",
        (_, "RunningTaskCount" | "HealthyHostCount" | "UnHealthyHostCount") => "",
        _ => "/s",
    }
}

/// Adds the change-point evidence of a series; None when it did not change.
fn change_ev(ev: &mut Ev, f: &Findings, s: &SeriesAnalysis, up: bool) -> Option<String> {
    let c = s.changed(up)?;
    let t = f.grid.time(c.onset);
    Some(ev.add(
        &format!("change:{}", s.key),
        "metric_change",
        format!(
            "{}/{} [{}] changed at {}: {}{u} → {}{u} ({})",
            s.key.namespace,
            s.key.name,
            s.key.dimension,
            fmt_time(t),
            f2(c.before),
            f2(c.after),
            if c.before.abs() > 1e-9 {
                format!("{:+.0}%", (c.after / c.before - 1.0) * 100.0)
            } else {
                "from zero".to_owned()
            },
            u = unit(s),
        ),
        Some(t),
        json!({"series": s.key, "onset_ms": t, "before": c.before, "after": c.after, "score": c.score}),
    ))
}

fn svc<'a>(f: &'a Findings, namespace: &str, name: &str) -> Option<&'a SeriesAnalysis> {
    f.metrics.get(namespace, name, SERVICE_DIMENSION)
}

fn is_timeout(template: &str) -> bool {
    let l = template.to_ascii_lowercase();
    l.contains("timed out") || l.contains("timeout") || l.contains("deadline")
}

fn add(c: &mut Cand, w: f64) {
    c.score += w;
}

/// Ranks the hypotheses for `f`.
pub fn rank(f: &Findings) -> Ranked {
    let mut ev = Ev::default();
    let mut cands: Vec<Cand> = Vec::new();
    let len = f.grid.len;
    let (b0, s0) = (f.base_from, f.split);
    let alarm_metric = f.alarm_key.as_ref().map(|k| k.name.as_str()).unwrap_or("");
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

    // --- shared signals ---
    let traffic = svc(f, ns::ALB, "RequestCount");
    let traffic_ratio = traffic
        .and_then(|s| s.changed(true))
        // A rise from no traffic at all is the data (or the service) starting, not a surge.
        .filter(|c| c.before > 0.0)
        // A surge explains an incident only if it begins near it, not minutes earlier.
        .filter(|c| f.grid.time(c.onset) >= f.onset_ms - SURGE_LEAD_PERIODS * f.period_ms)
        .map(|c| c.ratio())
        .filter(|r| *r >= 2.0);
    let traffic_ev = traffic.and_then(|s| {
        traffic_ratio?;
        change_ev(&mut ev, f, s, true)
    });
    let cpu = svc(f, ns::ECS, "CPUUtilization");
    let cpu_up = cpu.and_then(|s| s.changed(true)).copied();
    let latency = svc(f, ns::ALB, "TargetResponseTime");
    let latency_up = latency.and_then(|s| s.changed(true)).copied();
    let surged: Vec<_> = f
        .logs
        .as_ref()
        .map(|l| l.surged().filter(|t| t.error_like).collect())
        .unwrap_or_default();
    let mut template_ev: BTreeMap<String, String> = BTreeMap::new();
    for t in surged.iter().take(8) {
        let id = ev.add(
            &format!("template:{}", t.template),
            "log_template",
            format!(
                "{} log template \"{}\" {}: {} lines in the incident window ({}/min) vs {}/min before{}",
                t.level,
                t.template,
                if t.is_new { "is new" } else { "surged" },
                t.incident_count,
                f2(t.incident_per_min),
                f2(t.baseline_per_min),
                t.routes
                    .first()
                    .map(|(r, n)| format!(", {n} of them on route {r}"))
                    .unwrap_or_default()
            ),
            t.first_incident_ms,
            json!({"template": t.template, "level": t.level, "baseline_count": t.baseline_count,
                   "incident_count": t.incident_count, "is_new": t.is_new, "z": t.z,
                   "routes": t.routes.iter().take(5).collect::<Vec<_>>(),
                   "tasks": t.tasks.iter().take(5).collect::<Vec<_>>(), "example": t.example}),
        );
        template_ev.insert(t.template.clone(), id);
    }
    let oom_tasks: Vec<String> = f
        .tasks
        .tasks
        .values()
        .filter(|t| t.oom_kills.iter().any(|&x| x >= f.incident.start_ms))
        .map(|t| t.task_id.clone())
        .collect();
    let crashed: Vec<(String, usize)> = f
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

    // --- code_change ---
    let mut fitting_deploys: Vec<&DeployCorrelation> = Vec::new();
    let mut code_correlation = Vec::new();
    for d in &f.deploys {
        let dep = &d.deployment;
        let mut c = Cand::new(Category::CodeChange, Some(dep.id.clone()));
        let keys: Vec<&str> = dep.changes.iter().map(|c| c.key.as_str()).collect();
        let dep_ev = ev.add(
            &format!("deploy:{}", dep.id),
            "deployment",
            format!(
                "Deployment {} (version {}, commit {}) started {} and {}; outcome {}; changed keys: {}",
                dep.id,
                dep.version,
                short(&dep.git_sha),
                fmt_time(dep.started_ms),
                dep.finished_ms
                    .map_or("had not finished".to_owned(), |t| format!("finished {}", fmt_time(t))),
                dep.outcome.as_str(),
                if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
            ),
            Some(dep.started_ms),
            json!({"deployment": dep}),
        );
        let timing_ev = ev.add(
            &format!("timing:{}", dep.id),
            "deployment",
            format!(
                "The incident began {} after deployment {} started and {} its rollout ended",
                fmt_duration(d.onset_after_start_ms),
                dep.id,
                if d.onset_after_end_ms <= 0 {
                    format!("{} before", fmt_duration(-d.onset_after_end_ms))
                } else {
                    format!("{} after", fmt_duration(d.onset_after_end_ms))
                }
            ),
            Some(f.onset_ms),
            json!({"onset_after_start_ms": d.onset_after_start_ms, "onset_after_end_ms": d.onset_after_end_ms, "fits": d.timing_fit}),
        );
        c.pro.push(dep_ev.clone());
        let mut code_ids = Vec::new();
        let diff_matches: Vec<_> = d
            .code
            .as_ref()
            .map(|cd| cd.diff_template_matches().collect())
            .unwrap_or_default();
        if !diff_matches.is_empty() {
            let m = diff_matches[0];
            let id = ev.add(
                &format!("diff:{}", dep.id),
                "code",
                format!(
                    "The diff deployed by {} {} lines naming the surged log message: {}:{} `{}`{}",
                    dep.id,
                    if m.origin == "added" {
                        "adds"
                    } else {
                        "touches"
                    },
                    m.file,
                    m.line_no,
                    m.text,
                    if diff_matches.len() > 1 {
                        format!(" (+{} more)", diff_matches.len() - 1)
                    } else {
                        String::new()
                    }
                ),
                Some(dep.started_ms),
                json!({"matches": diff_matches}),
            );
            code_ids.push(id);
        }
        for k in &d.key_links {
            let id = ev.add(
                &format!("key:{}:{}:{}", dep.id, k.key, k.found_in),
                "deployment",
                format!(
                    "Deployment {} changed {}{}; \"{}\" is named by what broke: {}",
                    dep.id,
                    k.key,
                    k.value
                        .as_deref()
                        .map(|v| format!(" to {v}"))
                        .unwrap_or_default(),
                    k.word,
                    k.found_in
                ),
                Some(dep.started_ms),
                json!({"link": k}),
            );
            code_ids.push(id);
        }
        if !d.failed_tasks.is_empty() {
            let id = ev.add(
                &format!("deptasks:{}", dep.id),
                "task_event",
                format!(
                    "Tasks started by deployment {} failed during the incident: {}",
                    dep.id,
                    d.failed_tasks.join(", ")
                ),
                None,
                json!({"tasks": d.failed_tasks}),
            );
            code_ids.push(id);
        }
        if let Some(cd) = &d.code {
            let mut ids = vec![dep_ev.clone()];
            ids.extend(code_ids.iter().cloned());
            code_correlation.push(CodeCorrelation {
                deployment_id: dep.id.clone(),
                from_sha: cd.from_sha.clone(),
                to_sha: cd.to_sha.clone(),
                commits: cd.commits.clone(),
                files: cd.files.clone(),
                matches: cd
                    .matches
                    .iter()
                    .map(|m| CodeMatch {
                        file: m.file.clone(),
                        line_no: m.line_no,
                        text: m.text.clone(),
                        needle: m.needle.clone(),
                        kind: m.kind.to_owned(),
                        origin: m.origin.to_owned(),
                        commit: m.commit.clone(),
                    })
                    .collect(),
                evidence: ids,
            });
        }
        if !d.timing_fit {
            c.score = if d.content_fit() { 0.15 } else { 0.05 };
            c.con.push(timing_ev);
            c.pro.extend(code_ids);
        } else if !d.content_fit() {
            c.score = 0.2;
            c.pro.push(timing_ev);
            let none = ev.add(
                &format!("nolink:{}", dep.id),
                "absence",
                format!(
                    "Nothing deployment {} changed relates to what broke: {} no line naming a surged template, and no changed key ({}) appears in a surged template or an implicated route",
                    dep.id,
                    match &d.code {
                        Some(cd) if cd.from_sha.as_deref() != Some(cd.to_sha.as_str()) && cd.from_sha.is_some() =>
                            format!("its diff ({} commit(s), {} file(s)) has", cd.commits.len(), cd.files.len()),
                        Some(_) => "it deployed the same revision as before, so".to_owned(),
                        None => "without the repository there is".to_owned(),
                    },
                    if keys.is_empty() { "none changed".to_owned() } else { keys.join(", ") }
                ),
                Some(dep.started_ms),
                json!({"deployment": dep.id}),
            );
            c.con.push(none);
        } else {
            c.pro.push(timing_ev);
            c.score = 0.3;
            if !diff_matches.is_empty() {
                add(&mut c, 0.35);
            }
            if !d.key_links.is_empty() {
                add(&mut c, if diff_matches.is_empty() { 0.3 } else { 0.1 });
            }
            if !d.failed_tasks.is_empty() {
                add(&mut c, 0.2);
            }
            if matches!(
                dep.outcome,
                demo_model::events::DeploymentOutcome::RolledBack
                    | demo_model::events::DeploymentOutcome::Failed
            ) {
                add(&mut c, 0.05);
            }
            c.pro.extend(code_ids);
            fitting_deploys.push(d);
        }
        c.statement = format!(
            "Deployment {} (commit {}{}) introduced the failure{}",
            dep.id,
            short(&dep.git_sha),
            if keys.is_empty() {
                String::new()
            } else {
                format!(", changing {}", keys.join(", "))
            },
            cite(&c.pro)
        );
        if let Some(prev) = &dep.previous_id {
            if dep.outcome == demo_model::events::DeploymentOutcome::RolledBack {
                c.mitigation.push((
                    cmd_rollback(prev),
                    format!("the circuit breaker already rolled {} back; pin the previous deployment {prev} until the change is fixed", dep.id),
                ));
            } else {
                c.mitigation.push((
                    cmd_rollback(prev),
                    format!("roll back {} to the previous deployment {prev}", dep.id),
                ));
            }
        }
        cands.push(c);
    }

    // --- application_fault per route ---
    let timeout_share_on = |route: &str| -> f64 {
        let (mut to, mut all) = (0u64, 0u64);
        for t in &surged {
            let n = t.routes.iter().find(|(r, _)| r == route).map_or(0, |x| x.1);
            all += n;
            if is_timeout(&t.template) {
                to += n;
            }
        }
        if all == 0 {
            0.0
        } else {
            to as f64 / all as f64
        }
    };
    for r in f.routes.iter().filter(|r| {
        r.route != f.health_path
            && r.error_share >= 0.2
            && r.incident_5xx_rps - r.baseline_5xx_rps >= 0.05
            && r.incident_error_rate >= 2.0 * r.baseline_error_rate + 0.02
    }) {
        let mut c = Cand::new(Category::ApplicationFault, Some(r.route.clone()));
        let rid = ev.add(
            &format!("route:{}", r.route),
            "route",
            format!(
                "Route {} carries {:.0}% of the extra 5xx: error rate {:.1}% in the incident vs {:.1}% before ({} → {} 5xx/s, from {})",
                r.route,
                r.error_share * 100.0,
                r.incident_error_rate * 100.0,
                r.baseline_error_rate * 100.0,
                f2(r.baseline_5xx_rps),
                f2(r.incident_5xx_rps),
                r.source
            ),
            Some(f.incident.start_ms),
            json!({"route": r}),
        );
        c.pro.push(rid);
        c.score = 0.35
            + 0.3 * r.error_share
            + if r.incident_error_rate >= 0.1 {
                0.1
            } else {
                0.0
            };
        for t in &surged {
            let on_route = t
                .routes
                .iter()
                .find(|(x, _)| *x == r.route)
                .map_or(0, |x| x.1);
            let routed: u64 = t.routes.iter().map(|x| x.1).sum();
            if routed > 0 && on_route * 2 >= routed {
                if let Some(id) = template_ev.get(&t.template) {
                    c.pro.push(id.clone());
                }
            }
        }
        if c.pro.len() > 1 {
            add(&mut c, 0.15);
        }
        for name in ["HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"] {
            if let Some(id) = svc(f, ns::ALB, name).and_then(|s| change_ev(&mut ev, f, s, true)) {
                c.pro.push(id);
            }
        }
        if let Some(id) =
            svc(f, &f.error_namespace, "ErrorCount").and_then(|s| change_ev(&mut ev, f, s, true))
        {
            c.pro.push(id);
        }
        if timeout_share_on(&r.route) >= 0.5 {
            c.score -= 0.2;
            let id = ev.add(
                &format!("timeouts:{}", r.route),
                "log_template",
                format!("Most surged error lines on {} are timeouts: the route waits on something slow rather than failing by itself", r.route),
                None,
                json!({"route": r.route}),
            );
            c.con.push(id);
        }
        let route_templates: Vec<&str> = surged
            .iter()
            .filter(|t| t.routes.iter().any(|(x, _)| *x == r.route))
            .map(|t| t.template.as_str())
            .collect();
        for d in &fitting_deploys {
            // A deployment whose changes name this route or its failing
            // messages explains the route's failure: it is the cause, the
            // route the symptom.
            let names_it = d
                .key_links
                .iter()
                .any(|k| k.found_in == r.route || route_templates.contains(&k.found_in.as_str()))
                || d.code
                    .as_ref()
                    .is_some_and(|cd| cd.diff_template_matches().next().is_some());
            c.score -= if names_it { 0.35 } else { 0.2 };
            c.con
                .push(ev.keys[&format!("deploy:{}", d.deployment.id)].clone());
        }
        c.statement = format!(
            "The application fails requests on route {}{}",
            r.route,
            cite(&c.pro)
        );
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            format!("clear any injected fault making {} fail", r.route),
        ));
        cands.push(c);
    }

    // --- memory_leak ---
    let mem_svc = svc(f, ns::ECS, "MemoryUtilization");
    let mem_task_series: Vec<&SeriesAnalysis> = f
        .metrics
        .by_name(ns::ECS, "MemoryUtilization")
        .filter(|s| s.key.dimension != SERVICE_DIMENSION)
        .collect();
    let leaking: Vec<(&SeriesAnalysis, Option<crate::analyze::series::Trend>)> = mem_task_series
        .iter()
        .filter_map(|s| {
            let c = s.changed(true)?;
            Some((*s, s.trend_from(f.grid, c.onset)))
        })
        .collect();
    let mem_change = mem_svc.and_then(|s| s.changed(true));
    if mem_change.is_some() || !leaking.is_empty() || !oom_tasks.is_empty() {
        let mut entity: Vec<String> = leaking
            .iter()
            .map(|(s, _)| s.key.dimension.clone())
            .collect();
        for t in &oom_tasks {
            if !entity.contains(t) {
                entity.push(t.clone());
            }
        }
        entity.sort();
        let mut c = Cand::new(
            Category::MemoryLeak,
            Some(if entity.is_empty() {
                SERVICE_DIMENSION.to_owned()
            } else {
                entity.join(",")
            }),
        );
        if let Some(s) = mem_svc {
            if let Some(id) = change_ev(&mut ev, f, s, true) {
                c.pro.push(id);
                add(&mut c, 0.3);
            }
        }
        let mut trend_added = false;
        for (s, tr) in &leaking {
            if let Some(id) = change_ev(&mut ev, f, s, true) {
                c.pro.push(id);
            }
            if let Some(tr) = tr.filter(|t| t.slope_per_s > 0.0 && t.r2 >= 0.7) {
                let until = tr.ms_until(100.0);
                let id = ev.add(
                    &format!("trend:{}", s.key),
                    "trend",
                    format!(
                        "Memory of task {} grows steadily at {} percentage points per minute (r² {:.2}); at this rate it reaches the limit {}",
                        s.key.dimension,
                        f2(tr.slope_per_s * 60.0),
                        tr.r2,
                        match until {
                            Some(0) => "now".to_owned(),
                            Some(ms) => format!("in {}", fmt_duration(ms)),
                            None => "never".to_owned(),
                        }
                    ),
                    Some(f.alarm_at),
                    json!({"series": s.key, "slope_per_s": tr.slope_per_s, "r2": tr.r2, "ms_until_limit": until}),
                );
                c.pro.push(id);
                trend_added = true;
            }
        }
        if mem_change.is_none() && !leaking.is_empty() {
            add(&mut c, 0.25);
        }
        if trend_added {
            add(&mut c, 0.15);
        }
        if !oom_tasks.is_empty() {
            let id = ev.add(
                "oom",
                "task_event",
                format!(
                    "Tasks OOM-killed during the incident: {}",
                    oom_tasks.join(", ")
                ),
                f.tasks
                    .first_since(f.incident.start_ms, |t| t.oom_kills.iter().copied()),
                json!({"tasks": oom_tasks}),
            );
            c.pro.push(id);
            add(&mut c, 0.25);
        }
        if alarm_metric == "MemoryUtilization" && c.score > 0.0 {
            c.pro.push(alarm_ev.clone());
            add(&mut c, 0.15);
        }
        if let Some(id) = &traffic_ev {
            c.score -= 0.1;
            c.con.push(id.clone());
        }
        c.statement = format!(
            "Memory grows without bound in {}{}",
            c.entity.as_deref().unwrap_or("the service"),
            cite(&c.pro)
        );
        let stop: Vec<String> = if entity.is_empty() {
            Vec::new()
        } else {
            entity
                .iter()
                .filter(|t| !oom_tasks.contains(t))
                .take(2)
                .cloned()
                .collect()
        };
        for t in stop {
            c.mitigation.push((
                cmd_stop(&t),
                format!("replace task {t} before it is OOM-killed"),
            ));
        }
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "clear an injected memory leak".into(),
        ));
        cands.push(c);
    }

    // --- cpu_saturation ---
    if let (Some(s), Some(cp)) = (cpu, cpu_up) {
        let inc_max = s.max(s0, len).unwrap_or(cp.after);
        if cp.after >= 50.0 || inc_max >= 80.0 {
            let hot: Vec<String> = f
                .metrics
                .by_name(ns::ECS, "CPUUtilization")
                .filter(|t| t.key.dimension != SERVICE_DIMENSION)
                .filter(|t| t.mean(s0, len).is_some_and(|m| m >= 70.0))
                .map(|t| t.key.dimension.clone())
                .collect();
            let mut c = Cand::new(
                Category::CpuSaturation,
                Some(if hot.is_empty() {
                    SERVICE_DIMENSION.to_owned()
                } else {
                    hot.join(",")
                }),
            );
            c.score = 0.3;
            if let Some(id) = change_ev(&mut ev, f, s, true) {
                c.pro.push(id);
            }
            if inc_max >= 80.0 {
                add(&mut c, 0.15);
            }
            if alarm_metric == "CPUUtilization" {
                c.pro.push(alarm_ev.clone());
                add(&mut c, 0.2);
            }
            if let Some(id) = latency.and_then(|l| change_ev(&mut ev, f, l, true)) {
                c.pro.push(id);
                add(&mut c, 0.05);
            }
            if let Some(id) = &traffic_ev {
                c.score -= 0.2;
                c.con.push(id.clone());
            }
            c.statement = format!(
                "CPU is saturated ({}% at peak) in {}{}",
                f2(inc_max),
                c.entity.as_deref().unwrap_or("the service"),
                cite(&c.pro)
            );
            let running = svc(f, ns::ECS, "RunningTaskCount")
                .and_then(|s| s.mean(s0, len))
                .map_or(f.desired_count, |m| m.round().max(1.0) as u32);
            c.mitigation.push((
                cmd_scale(running * 2),
                "add capacity while the cause is found".into(),
            ));
            c.mitigation.push((
                CMD_FAULTS_RESET.to_owned(),
                "stop an injected CPU spike".into(),
            ));
            cands.push(c);
        }
    }

    // --- health_check_failure ---
    let unhealthy_tasks: Vec<String> = f
        .tasks
        .tasks
        .values()
        .filter(|t| t.unhealthy.iter().any(|&x| x >= f.incident.start_ms))
        .map(|t| t.task_id.clone())
        .collect();
    let unhealthy_metric = svc(f, ns::ALB, "UnHealthyHostCount");
    let uh_up = unhealthy_metric.and_then(|s| s.changed(true));
    let health_route_5xx = f
        .routes
        .iter()
        .find(|r| r.route == f.health_path && r.incident_5xx_rps > r.baseline_5xx_rps);
    if !unhealthy_tasks.is_empty() || uh_up.is_some() {
        let mut c = Cand::new(
            Category::HealthCheckFailure,
            Some(if unhealthy_tasks.is_empty() {
                SERVICE_DIMENSION.to_owned()
            } else {
                unhealthy_tasks.join(",")
            }),
        );
        if !unhealthy_tasks.is_empty() {
            let id = ev.add(
                "unhealthy",
                "task_event",
                format!(
                    "Load balancer marked tasks unhealthy during the incident: {}",
                    unhealthy_tasks.join(", ")
                ),
                f.tasks
                    .first_since(f.incident.start_ms, |t| t.unhealthy.iter().copied()),
                json!({"tasks": unhealthy_tasks}),
            );
            c.pro.push(id);
            add(&mut c, 0.35);
        }
        if let Some(id) = unhealthy_metric.and_then(|s| change_ev(&mut ev, f, s, true)) {
            c.pro.push(id);
            add(&mut c, 0.15);
        }
        if let Some(r) = health_route_5xx {
            let id = ev.add(
                &format!("route:{}", r.route),
                "route",
                format!(
                    "Health check route {} answers 5xx: {} → {} per second",
                    r.route,
                    f2(r.baseline_5xx_rps),
                    f2(r.incident_5xx_rps)
                ),
                Some(f.incident.start_ms),
                json!({"route": r}),
            );
            c.pro.push(id);
            add(&mut c, 0.1);
        }
        if alarm_metric == "UnHealthyHostCount" {
            c.pro.push(alarm_ev.clone());
            add(&mut c, 0.2);
        }
        if unhealthy_tasks.is_empty() && (total_crashes_in(f) > 0 || !oom_tasks.is_empty()) {
            c.score -= 0.25;
            let id = ev.add(
                "unhealthy-after-exit",
                "task_event",
                "No running task failed its health check; targets were unhealthy because tasks exited".to_owned(),
                None,
                json!({"oom": oom_tasks, "crashed": crashed}),
            );
            c.con.push(id);
        }
        let dead: Vec<&String> = unhealthy_tasks
            .iter()
            .filter(|t| oom_tasks.contains(t) || crashed.iter().any(|(c, _)| c == *t))
            .collect();
        if !dead.is_empty() && dead.len() == unhealthy_tasks.len() {
            c.score -= 0.3;
            let id = ev.add(
                "unhealthy-dead",
                "task_event",
                "Every unhealthy task also crashed or was OOM-killed: failing health checks are a symptom".to_owned(),
                None,
                json!({"tasks": dead}),
            );
            c.con.push(id);
        } else {
            add(&mut c, 0.1);
        }
        c.statement = format!(
            "Health checks fail on {} while the process keeps running{}",
            c.entity.as_deref().unwrap_or("the service"),
            cite(&c.pro)
        );
        for t in unhealthy_tasks.iter().take(2) {
            c.mitigation
                .push((cmd_stop(t), format!("replace unhealthy task {t}")));
        }
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "re-enable a disabled health check".into(),
        ));
        cands.push(c);
    }

    // --- slow_dependency ---
    let timeout_templates: Vec<_> = surged.iter().filter(|t| is_timeout(&t.template)).collect();
    let slow_route = f
        .routes
        .iter()
        .filter(|r| r.latency_increase_s() >= 0.2)
        .max_by(|a, b| a.latency_increase_s().total_cmp(&b.latency_increase_s()));
    if latency_up.is_some() || !timeout_templates.is_empty() || slow_route.is_some() {
        let entity = slow_route
            .map(|r| r.route.clone())
            .or_else(|| {
                timeout_templates
                    .iter()
                    .find_map(|t| t.routes.first().map(|r| r.0.clone()))
            })
            .unwrap_or_else(|| "upstream".to_owned());
        let mut c = Cand::new(Category::SlowDependency, Some(entity.clone()));
        if let Some(id) = latency.and_then(|l| change_ev(&mut ev, f, l, true)) {
            c.pro.push(id);
            add(&mut c, 0.3);
        }
        if let Some(r) = slow_route {
            let id = ev.add(
                &format!("latency:{}", r.route),
                "route",
                format!(
                    "Mean latency of {} rose from {} s to {} s",
                    r.route,
                    f2(r.baseline_latency_s.unwrap_or(0.0)),
                    f2(r.incident_latency_s.unwrap_or(0.0))
                ),
                Some(f.incident.start_ms),
                json!({"route": r}),
            );
            c.pro.push(id);
            add(&mut c, if latency_up.is_some() { 0.1 } else { 0.25 });
        }
        if !timeout_templates.is_empty() {
            for t in &timeout_templates {
                if let Some(id) = template_ev.get(&t.template) {
                    c.pro.push(id.clone());
                }
            }
            add(&mut c, 0.25);
        }
        if alarm_metric == "TargetResponseTime" && c.score > 0.0 {
            c.pro.push(alarm_ev.clone());
            add(&mut c, 0.15);
        }
        if let Some(cp) = cpu_up.filter(|c| c.after >= 50.0) {
            let _ = cp;
            if let Some(id) = cpu.and_then(|s| change_ev(&mut ev, f, s, true)) {
                c.con.push(id);
            }
            c.score -= 0.2;
        }
        if let Some(id) = &traffic_ev {
            c.score -= 0.1;
            c.con.push(id.clone());
        }
        c.statement = format!(
            "Requests on {} wait on a slow dependency and time out{}",
            entity,
            cite(&c.pro)
        );
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "remove an injected latency fault".into(),
        ));
        cands.push(c);
    }

    // --- traffic_surge ---
    if let (Some(ratio), Some(id)) = (traffic_ratio, &traffic_ev) {
        let entity = f
            .routes
            .iter()
            .max_by(|a, b| {
                (a.incident_rps - a.baseline_rps).total_cmp(&(b.incident_rps - b.baseline_rps))
            })
            .filter(|r| r.incident_rps >= 2.0 * r.baseline_rps && r.incident_rps > 0.0)
            .map_or(SERVICE_DIMENSION.to_owned(), |r| r.route.clone());
        let mut c = Cand::new(Category::TrafficSurge, Some(entity));
        c.pro.push(id.clone());
        c.score = 0.3 + (0.05 * ratio).min(0.25);
        if cpu_up.is_some() || latency_up.is_some() {
            add(&mut c, 0.1);
            for s in [cpu, latency].into_iter().flatten() {
                if let Some(id) = change_ev(&mut ev, f, s, true) {
                    c.pro.push(id);
                }
            }
        }
        if surged.iter().any(|t| !is_timeout(&t.template)) {
            c.score -= 0.1;
            if let Some(id) = template_ev.values().next() {
                c.con.push(id.clone());
            }
        }
        c.statement = format!(
            "Request rate rose {:.1}× and the service could not keep up{}",
            ratio,
            cite(&c.pro)
        );
        let running = svc(f, ns::ECS, "RunningTaskCount")
            .and_then(|s| s.mean(s0, len))
            .map_or(f.desired_count, |m| m.round().max(1.0) as u32);
        c.mitigation.push((
            cmd_scale((running as f64 * ratio.min(4.0)).ceil() as u32),
            "scale out to the new request rate".into(),
        ));
        cands.push(c);
    }

    // --- crash_loop ---
    let total_crashes: usize = crashed.iter().map(|c| c.1).sum();
    if total_crashes > 0 {
        let tasks: Vec<String> = crashed.iter().map(|c| c.0.clone()).collect();
        let mut c = Cand::new(Category::CrashLoop, Some(tasks.join(",")));
        let codes: BTreeSet<i32> = f
            .tasks
            .tasks
            .values()
            .flat_map(|t| t.crashes.iter().map(|c| c.1))
            .collect();
        let id = ev.add(
            "crashes",
            "task_event",
            format!(
                "{} task exit(s) with a non-zero code during the incident (codes {:?}) in {}",
                total_crashes,
                codes,
                tasks.join(", ")
            ),
            f.tasks
                .first_since(f.incident.start_ms, |t| t.crashes.iter().map(|c| c.0)),
            json!({"tasks": crashed}),
        );
        c.pro.push(id);
        c.score = 0.35 + (0.1 * (total_crashes as f64 - 1.0)).min(0.3);
        if let Some(id) =
            svc(f, ns::ECS, "RunningTaskCount").and_then(|s| change_ev(&mut ev, f, s, false))
        {
            c.pro.push(id);
            add(&mut c, 0.05);
        }
        for d in fitting_deploys
            .iter()
            .filter(|d| !d.failed_tasks.is_empty())
        {
            c.score -= 0.15;
            c.con
                .push(ev.keys[&format!("deploy:{}", d.deployment.id)].clone());
        }
        c.statement = format!(
            "Tasks crash and restart repeatedly ({} exits){}",
            total_crashes,
            cite(&c.pro)
        );
        c.mitigation
            .push((CMD_FAULTS_RESET.to_owned(), "stop an injected crash".into()));
        cands.push(c);
    }

    // --- relevance: a cause that cannot move the alarm's metric is a
    // secondary finding for this alarm, however clear it is.
    for c in &mut cands {
        if !alarm_metric.is_empty() && !explains(c.category, alarm_metric) {
            c.score *= 0.6;
            let id = ev.add(
                &format!("irrelevant:{}", c.category),
                "absence",
                format!(
                    "{} does not by itself move {}, the alarm's metric",
                    c.category.phrase(),
                    alarm_metric
                ),
                None,
                json!({"category": c.category, "metric": alarm_metric}),
            );
            c.con.push(id);
        }
    }

    // --- rank ---
    for c in &mut cands {
        c.score = c.score.clamp(0.0, 0.97);
    }
    cands.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.category.cmp(&b.category))
            .then_with(|| a.entity.cmp(&b.entity))
    });
    let mut extra_gaps = Vec::new();
    let best = cands.first().map_or(0.0, |c| c.score);
    if best < MIN_SCORE {
        let mut c = Cand::new(Category::InsufficientEvidence, None);
        c.score = (1.0 - best).clamp(0.0, 0.97);
        let alarm_series = f.alarm_key.as_ref().and_then(|k| f.metrics.series.get(k));
        let (before, during) = alarm_series
            .map(|s| (s.mean(b0, s0), s.mean(s0, len)))
            .unwrap_or((None, None));
        let id = ev.add(
            "no-change",
            "absence",
            format!(
                "No significant change explains the alarm: {} averaged {} before and {} during the incident window (threshold {}); no log template surged, no task failed{}",
                alarm_metric,
                before.map_or("n/a".into(), f2),
                during.map_or("n/a".into(), f2),
                f.threshold,
                if f.deploys.is_empty() { ", no deployment happened" } else { ", no deployment's changes relate to it" }
            ),
            Some(f.alarm_at),
            json!({"before": before, "during": during, "threshold": f.threshold}),
        );
        c.pro.push(alarm_ev.clone());
        c.pro.push(id);
        if alarm_series
            .and_then(|s| s.change)
            .is_none_or(|c| !c.significant)
        {
            extra_gaps.push(Gap {
                source: "analysis".into(),
                detail: format!("the alarm metric {alarm_metric} shows no significant change point: the threshold may be crossed by normal variation"),
            });
        }
        if surged.is_empty() {
            extra_gaps.push(Gap {
                source: "analysis".into(),
                detail: "no log template is new or surged in the incident window".into(),
            });
        }
        if f.tasks
            .in_window(f.incident.start_ms, f.alarm_at)
            .next()
            .is_none()
        {
            extra_gaps.push(Gap {
                source: "analysis".into(),
                detail: "no task crashed, was OOM-killed or failed health checks".into(),
            });
        }
        c.statement = format!(
            "The evidence does not support a root cause (best other hypothesis scores {:.2} < {MIN_SCORE}){}",
            best,
            cite(&c.pro)
        );
        cands.insert(0, c);
    }

    let hypotheses: Vec<Hypothesis> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| Hypothesis {
            rank: i as u32 + 1,
            category: c.category,
            entity: c.entity.clone(),
            score: (c.score * 1000.0).round() / 1000.0,
            confidence_label: confidence_label(c.score).to_owned(),
            statement: c.statement.clone(),
            evidence_for: dedup(&c.pro),
            evidence_against: dedup(&c.con),
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
        if c.score < MIN_SCORE {
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

    let impact = impact(f, &mut ev);
    let timeline = timeline(f, &ev);
    let since = fmt_time(f.onset_ms);
    let summary = if top.category == Category::InsufficientEvidence {
        format!(
            "{} fired at {} but the evidence does not support a root cause: {} ({}){}",
            f.alarm_name,
            fmt_time(f.alarm_at),
            impact.text.trim_end_matches('.'),
            "see the investigation gaps",
            cite(&top.evidence_for)
        )
    } else {
        format!(
            "{}: {} since {}, most likely because of {}{} ({} confidence {:.2}){}",
            f.alarm_name,
            impact.text.trim_end_matches('.'),
            since,
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
        evidence: ev.items,
        code_correlation,
        mitigation,
        extra_gaps,
    }
}

/// Whether a cause of `category` can by itself move the alarm metric `metric`.
pub fn explains(category: Category, metric: &str) -> bool {
    let errors = [
        "ErrorCount",
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
    ];
    let m = |list: &[&str]| list.contains(&metric);
    match category {
        Category::CodeChange | Category::InsufficientEvidence => true,
        Category::ApplicationFault => m(&errors),
        Category::MemoryLeak => {
            m(&[
                "MemoryUtilization",
                "UnHealthyHostCount",
                "HealthyHostCount",
                "RunningTaskCount",
            ]) || m(&errors)
        }
        Category::CpuSaturation => m(&[
            "CPUUtilization",
            "TargetResponseTime",
            "UnHealthyHostCount",
            "HealthyHostCount",
        ]),
        Category::HealthCheckFailure => {
            m(&["UnHealthyHostCount", "HealthyHostCount"]) || m(&errors)
        }
        Category::SlowDependency => m(&["TargetResponseTime"]) || m(&errors),
        Category::TrafficSurge => {
            m(&[
                "CPUUtilization",
                "MemoryUtilization",
                "TargetResponseTime",
                "RequestCount",
            ]) || m(&errors)
        }
        Category::CrashLoop => {
            m(&["UnHealthyHostCount", "HealthyHostCount", "RunningTaskCount"]) || m(&errors)
        }
    }
}

fn total_crashes_in(f: &Findings) -> usize {
    f.tasks
        .tasks
        .values()
        .map(|t| {
            t.crashes
                .iter()
                .filter(|c| c.0 >= f.incident.start_ms)
                .count()
        })
        .sum()
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}

fn impact(f: &Findings, ev: &mut Ev) -> Impact {
    let len = f.grid.len;
    let (b0, s0) = (f.base_from, f.split);
    let secs = f.grid.bucket_ms as f64 / 1000.0;
    let sum = |s: Option<&SeriesAnalysis>, a: usize, b: usize| {
        s.map_or(0.0, |s| s.values[a..b].iter().flatten().sum::<f64>() * secs)
    };
    let req_s = svc(f, ns::ALB, "RequestCount");
    let err_s = svc(f, ns::ALB, "HTTPCode_Target_5XX_Count");
    let elb_s = svc(f, ns::ALB, "HTTPCode_ELB_5XX_Count");
    let requests = sum(req_s, s0, len);
    let errors = sum(err_s, s0, len) + sum(elb_s, s0, len);
    let base_req = sum(req_s, b0, s0);
    let base_err = sum(err_s, b0, s0) + sum(elb_s, b0, s0);
    let rate = |e: f64, r: f64| if r > 0.0 { e / r } else { 0.0 };
    let lat = svc(f, ns::ALB, "TargetResponseTime");
    let p99 = lat.and_then(|s| s.max(s0, len));
    let p99_base = lat.and_then(|s| s.mean(b0, s0));
    let affected_routes: Vec<String> = f
        .routes
        .iter()
        .filter(|r| r.error_share >= 0.1 || r.latency_increase_s() >= 0.1)
        .map(|r| r.route.clone())
        .collect();
    let affected_tasks: Vec<String> = f
        .tasks
        .in_window(f.incident.start_ms, f.alarm_at)
        .map(|t| t.task_id.clone())
        .collect();
    let mut parts = Vec::new();
    if requests > 0.0 {
        parts.push(format!(
            "{:.0} of {:.0} requests failed with 5xx ({:.1}%, vs {:.1}% before)",
            errors,
            requests,
            rate(errors, requests) * 100.0,
            rate(base_err, base_req) * 100.0
        ));
    }
    if let (Some(p), Some(b)) = (p99, p99_base) {
        if p > b * 1.5 && p > 0.1 {
            parts.push(format!(
                "p99 latency reached {} s (baseline {} s)",
                f2(p),
                f2(b)
            ));
        }
    }
    if !affected_routes.is_empty() {
        parts.push(format!("routes affected: {}", affected_routes.join(", ")));
    }
    if !affected_tasks.is_empty() {
        parts.push(format!("tasks affected: {}", affected_tasks.join(", ")));
    }
    if parts.is_empty() {
        parts.push("no user-visible impact measured".into());
    }
    let text = parts.join("; ");
    ev.add(
        "impact",
        "metric_change",
        format!("Impact in the incident window: {text}"),
        Some(f.incident.start_ms),
        json!({"requests": requests, "errors_5xx": errors}),
    );
    Impact {
        text,
        requests,
        errors_5xx: errors,
        error_rate: rate(errors, requests),
        baseline_error_rate: rate(base_err, base_req),
        p99_latency_s: p99,
        baseline_p99_latency_s: p99_base,
        affected_routes,
        affected_tasks,
    }
}

fn timeline(f: &Findings, ev: &Ev) -> Vec<TimelineEntry> {
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
        ) {
            if let Some(ts) = e.ts_ms {
                if e.id != "impact" && !e.summary.starts_with("Impact") {
                    t.push(TimelineEntry {
                        ts_ms: ts,
                        kind: e.kind.clone(),
                        text: e.summary.clone(),
                        evidence: vec![e.id.clone()],
                    });
                }
            }
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
