//! **code_change**: a deployment introduced the failure.
//!
//! Detects: a deployment whose rollout fits the incident's onset AND whose
//! own tasks show the failure — confined to its cohort while old tasks serve
//! cleanly beside them, or beginning as its tasks took traffic — or whose
//! diff touches the code that serves the failing route or logs the surged
//! messages.
//!
//! Why: a deployment that merely happened nearby is the most common red
//! herring. The cohort comparison decides whatever the changed keys are
//! called; a failure on old and new tasks alike, one that began before the
//! new tasks served, or one that came only after they had served cleanly,
//! acquits the deployment. Shared words between a changed key and a failing
//! route or message are weak supporting evidence only.
//!
//! Example: d-0002 sets `PRICING_V2=on`; its tasks fail 40 % of
//! `POST /api/quote` while the old tasks, serving beside them, fail none →
//! code_change `d-0002`, ahead of application_fault `/api/quote`.

use demo_model::events::DeploymentOutcome;
use serde_json::json;

use super::{Cand, Context, Rule};
use crate::analyze::cohorts::Verdict;
use crate::analyze::deploys::DeployCorrelation;
use crate::hypothesis::cmd_rollback;
use crate::hypothesis::evidence::{cite, short};
use crate::report::{Category, fmt_duration, fmt_time};

pub struct CodeChange;

/// Weights of the evidence kinds.
const TIMING: f64 = 0.15;
const CONFINED: f64 = 0.5;
const STARTED_WITH_NEW: f64 = 0.35;
const ACQUITTED: f64 = 0.4;
const DIFF_LOGS_TEMPLATE: f64 = 0.2;
const DIFF_IN_HANDLER: f64 = 0.15;
const DIFF_RISKY: f64 = 0.05;
const KEY_READ_IN_CODE: f64 = 0.05;
const WORD_OVERLAP: f64 = 0.05;
const OWN_TASKS_EXIT: f64 = 0.2;
const ROLLED_BACK: f64 = 0.05;

impl Rule for CodeChange {
    fn category(&self) -> Category {
        Category::CodeChange
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        cx.f.deploys.iter().map(|d| one(cx, d)).collect()
    }
}

fn one(cx: &mut Context<'_>, d: &DeployCorrelation) -> Cand {
    let f = cx.f;
    let dep = &d.deployment;
    let mut c = Cand::new(Category::CodeChange, Some(dep.id.clone()));
    c.onset_ms = Some(dep.started_ms);
    let keys: Vec<&str> = dep.changes.iter().map(|c| c.key.as_str()).collect();
    let dep_ev = cx.ev.add(
        &format!("deploy:{}", dep.id),
        "deployment",
        format!(
            "Deployment {} (version {}, commit {}) started {} and {}; outcome {}; changed keys: {}",
            dep.id,
            dep.version,
            short(&dep.git_sha),
            fmt_time(dep.started_ms),
            dep.finished_ms
                .map_or("had not finished".to_owned(), |t| format!(
                    "finished {}",
                    fmt_time(t)
                )),
            dep.outcome.as_str(),
            if keys.is_empty() {
                "none".to_owned()
            } else {
                keys.join(", ")
            }
        ),
        Some(dep.started_ms),
        json!({"deployment": dep}),
    );
    c.support(dep_ev.clone(), 0.0);
    let timing_ev = cx.ev.add(
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
    if d.timing_fit {
        c.support(timing_ev, TIMING);
    } else {
        c.oppose(timing_ev, 0.3);
    }

    // The cohort comparison: the deciding evidence.
    if let Some(co) = f.cohorts.iter().find(|co| co.deployment_id == dep.id) {
        let id = cx.ev.add(
            &format!("cohort:{}", dep.id),
            "cohort",
            format!(
                "Tasks of deployment {} ({}) failed {} of {} requests ({:.1}%) vs {} of {} ({:.1}%) on the other tasks ({}){}; baseline {:.1}%; verdict: {}",
                dep.id,
                co.new.tasks.join(", "),
                co.new.failures,
                co.new.requests,
                co.new.failure_rate * 100.0,
                co.old.failures,
                co.old.requests,
                co.old.failure_rate * 100.0,
                if co.old.tasks.is_empty() { "none".to_owned() } else { co.old.tasks.join(", ") },
                if co.overlap { ", serving side by side" } else { "" },
                co.baseline_failure_rate * 100.0,
                co.verdict.as_str()
            ),
            Some(co.from_ms),
            json!({"cohort": co}),
        );
        match co.verdict {
            Verdict::Confined => c.support(id, CONFINED),
            Verdict::StartedWithNew => c.support(id, STARTED_WITH_NEW),
            v if v.acquits() => c.oppose(id, ACQUITTED),
            _ => c.support(id, 0.0),
        }
        c.explains_routes.clone_from(&co.failing_routes);
        if co.verdict.convicts() {
            c.explains_tasks.clone_from(&co.new.tasks);
        }
    }

    // What the deployment's code says.
    let mut code_ids = Vec::new();
    if let Some(cd) = &d.code {
        let kinds: [(&str, &str, f64); 3] = [
            (
                "template",
                "lines that log the surged message",
                DIFF_LOGS_TEMPLATE,
            ),
            (
                "handler",
                "lines in the code serving the failing route",
                DIFF_IN_HANDLER,
            ),
            (
                "risk",
                "new failure paths (panic, unwrap, expect, error returns)",
                DIFF_RISKY,
            ),
        ];
        for (kind, what, w) in kinds {
            let ms: Vec<_> = cd
                .matches
                .iter()
                .filter(|m| m.kind == kind && m.origin != "tree")
                .collect();
            let Some(m) = ms.first() else { continue };
            let id = cx.ev.add(
                &format!("diff:{kind}:{}", dep.id),
                "code",
                format!(
                    "The diff deployed by {} has {what}: {}:{} `{}`{}",
                    dep.id,
                    m.file,
                    m.line_no,
                    m.text,
                    if ms.len() > 1 {
                        format!(" (+{} more)", ms.len() - 1)
                    } else {
                        String::new()
                    }
                ),
                Some(dep.started_ms),
                json!({"matches": ms}),
            );
            c.support(id.clone(), w);
            code_ids.push(id);
        }
        // A diff that changes a failing route's code, or logs its surged
        // message, accounts for that route's failures.
        if d.timing_fit {
            for m in cd.matches.iter().filter(|m| m.origin != "tree") {
                let routes: Vec<String> = match m.kind {
                    "handler" => m
                        .needle
                        .split(" (fn ")
                        .next()
                        .map(str::to_owned)
                        .into_iter()
                        .collect(),
                    "template" => cx
                        .surged
                        .iter()
                        .filter(|t| t.template == m.needle || t.phrases.contains(&m.needle))
                        .filter_map(|t| t.routes.first().map(|r| r.0.clone()))
                        .collect(),
                    _ => Vec::new(),
                };
                for r in routes {
                    if !c.explains_routes.contains(&r) {
                        c.explains_routes.push(r);
                    }
                }
            }
        }
        // Configuration only: the code that reads a changed key is what it switched on.
        let reads: Vec<_> = cd
            .matches
            .iter()
            .filter(|m| m.kind == "config_key" && m.origin == "tree")
            .collect();
        if let Some(m) = reads.first() {
            let id = cx.ev.add(
                &format!("reads:{}", dep.id),
                "code",
                format!(
                    "{} is read by {}:{} `{}`{} at the deployed revision: that code is what the change switches",
                    m.needle,
                    m.file,
                    m.line_no,
                    m.text,
                    m.commit
                        .as_deref()
                        .map(|c| format!(", introduced by {c}"))
                        .unwrap_or_default()
                ),
                Some(dep.started_ms),
                json!({"matches": reads}),
            );
            c.support(id.clone(), KEY_READ_IN_CODE);
            code_ids.push(id);
        }
    }
    // Shared words: supporting evidence only.
    let mut words = 0.0;
    for k in &d.key_links {
        let id = cx.ev.add(
            &format!("key:{}:{}:{}", dep.id, k.key, k.found_in),
            "deployment",
            format!(
                "Deployment {} changed {}{}; the word \"{}\" also appears in {}",
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
        let w: f64 = if words < WORD_OVERLAP {
            WORD_OVERLAP
        } else {
            0.0
        };
        words += w;
        c.support(id, w);
    }
    // Its own tasks exiting while the others keep running.
    let others_failed = cx
        .oom_tasks
        .iter()
        .chain(cx.crashed.iter().map(|x| &x.0))
        .any(|t| !d.failed_tasks.contains(t));
    if !d.failed_tasks.is_empty() {
        let id = cx.ev.add(
            &format!("deptasks:{}", dep.id),
            "task_event",
            format!(
                "Tasks started by deployment {} failed during the incident: {}{}",
                dep.id,
                d.failed_tasks.join(", "),
                if others_failed {
                    " (other tasks failed too)"
                } else {
                    " (no other task did)"
                }
            ),
            None,
            json!({"tasks": d.failed_tasks}),
        );
        c.support(
            id.clone(),
            if others_failed { 0.05 } else { OWN_TASKS_EXIT },
        );
        code_ids.push(id);
        for t in &d.failed_tasks {
            if !c.explains_tasks.contains(t) {
                c.explains_tasks.push(t.clone());
            }
        }
    }
    if d.timing_fit
        && matches!(
            dep.outcome,
            DeploymentOutcome::RolledBack | DeploymentOutcome::Failed
        )
    {
        c.support(dep_ev.clone(), ROLLED_BACK);
    }
    if c.score() < crate::hypothesis::MIN_SCORE && d.timing_fit {
        let none = cx.ev.add(
            &format!("nolink:{}", dep.id),
            "absence",
            format!(
                "Nothing ties deployment {} to what broke beyond its timing: {}; {}",
                dep.id,
                match f.cohorts.iter().find(|co| co.deployment_id == dep.id) {
                    Some(co) => format!("cohort verdict: {}", co.verdict.as_str()),
                    None => "no task of it served in the analysis window".to_owned(),
                },
                match &d.code {
                    Some(cd) if cd.from_sha.is_some() && cd.from_sha.as_deref() != Some(cd.to_sha.as_str()) =>
                        format!("its diff ({} commit(s), {} file(s)) neither logs the surged messages nor changes the failing route's code", cd.commits.len(), cd.files.len()),
                    Some(_) => "it deployed the same revision as before".to_owned(),
                    None => "without the repository its code could not be read".to_owned(),
                }
            ),
            Some(dep.started_ms),
            json!({"deployment": dep.id}),
        );
        c.oppose(none, 0.0);
    }
    if let Some(cd) = &d.code {
        let mut ids = vec![dep_ev.clone()];
        ids.extend(code_ids.iter().cloned());
        cx.code_correlation.push(crate::report::CodeCorrelation {
            deployment_id: dep.id.clone(),
            from_sha: cd.from_sha.clone(),
            to_sha: cd.to_sha.clone(),
            commits: cd.commits.clone(),
            files: cd.files.clone(),
            matches: cd
                .matches
                .iter()
                .map(|m| crate::report::CodeMatch {
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
    c.statement = format!(
        "Deployment {} (commit {}{}) introduced the failure{}",
        dep.id,
        short(&dep.git_sha),
        if keys.is_empty() {
            String::new()
        } else {
            format!(", changing {}", keys.join(", "))
        },
        cite(&c.pro_ids())
    );
    if let Some(prev) = &dep.previous_id {
        let why = if dep.outcome == DeploymentOutcome::RolledBack {
            format!(
                "the circuit breaker already rolled {} back; pin the previous deployment {prev} until the change is fixed",
                dep.id
            )
        } else {
            format!("roll back {} to the previous deployment {prev}", dep.id)
        };
        c.mitigation.push((cmd_rollback(prev), why));
    }
    c
}
