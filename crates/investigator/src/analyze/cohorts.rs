//! Deployment cohorts: during and after a rolling deployment, the tasks of
//! the new deployment serve beside the old ones. Comparing the two groups is
//! what an SRE does first, because it answers "did the deployment do it?"
//! whatever the deployment's keys are called:
//!
//! * a failure **confined** to the new tasks while old ones serve the same
//!   traffic cleanly convicts the deployment;
//! * a failure that **started when the new tasks took traffic** (and nowhere
//!   else) is strong evidence for it when there was no side-by-side overlap;
//! * a failure on **both** cohorts alike, one that **began before** the new
//!   tasks served, or one that appeared only after the new tasks had served
//!   **cleanly** for several alarm periods acquits it.
//!
//! Example: deployment d-0002 (key `PRICING_V2`) starts tasks t-c and t-d;
//! while t-a and t-b still serve, 40 % of t-c/t-d requests fail and 0 % of
//! t-a/t-b's: verdict [`Verdict::Confined`].
//!
//! Everything is counted in buckets of the analysis grid (half an alarm
//! period) and compared as fractions or against the pre-deployment baseline,
//! so the verdict does not depend on the time scale. Per task it uses the
//! access and ERROR lines each task logged, the task's own CPU and memory
//! series, and its exits.

use std::collections::BTreeMap;

use demo_model::events::{Deployment, ns};
use serde::Serialize;

use super::logs::{LogAnalysis, TaskTraffic};
use super::metrics::MetricAnalysis;
use super::series::Grid;
use super::tasks::TaskAnalysis;

/// One side of the comparison (the new deployment's tasks, or all others).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CohortStats {
    pub tasks: Vec<String>,
    /// Requests and failures (5xx or ERROR lines) in the compared buckets.
    pub requests: u64,
    pub failures: u64,
    pub failure_rate: f64,
    /// Mean CPU % of its tasks over the compared buckets.
    pub cpu_mean: Option<f64>,
    /// Memory growth of its tasks, percentage points per alarm period.
    pub memory_slope_per_period: Option<f64>,
    /// Crashes and OOM kills of its tasks since the deployment started.
    pub exits: usize,
    /// (route, requests, failures) in the compared buckets, worst first.
    pub routes: Vec<(String, u64, u64)>,
}

/// What the comparison says about the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// New tasks fail while old ones, serving beside them, do not.
    Confined,
    /// No overlap to compare, but failures began as the new tasks took
    /// traffic and only new tasks failed.
    StartedWithNew,
    /// Old and new tasks fail alike.
    Both,
    /// The failure began before the new tasks served any request.
    BeforeNew,
    /// The new tasks served cleanly for a while before the failure began.
    CleanBeforeOnset,
    /// Not enough traffic on either side to tell.
    Inconclusive,
}

impl Verdict {
    /// Evidence that the deployment caused the failure.
    pub fn convicts(self) -> bool {
        matches!(self, Verdict::Confined | Verdict::StartedWithNew)
    }
    /// Evidence that it did not.
    pub fn acquits(self) -> bool {
        matches!(
            self,
            Verdict::Both | Verdict::BeforeNew | Verdict::CleanBeforeOnset
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confined => "confined to the new tasks",
            Verdict::StartedWithNew => "began when the new tasks took traffic",
            Verdict::Both => "old and new tasks fail alike",
            Verdict::BeforeNew => "began before the new tasks served",
            Verdict::CleanBeforeOnset => "new tasks served cleanly before it began",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The comparison for one deployment that started tasks.
#[derive(Debug, Clone, Serialize)]
pub struct Cohort {
    pub deployment_id: String,
    /// First and last+1 bucket compared (both cohorts serving, or the new one
    /// alone when there was no overlap), as times.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Whether both cohorts served requests side by side in those buckets.
    pub overlap: bool,
    /// When the new tasks first served a request.
    pub first_served_ms: Option<i64>,
    pub new: CohortStats,
    pub old: CohortStats,
    /// Failure rate of all tasks in the baseline, before the deployment.
    pub baseline_failure_rate: f64,
    /// Routes whose failures are confined to the new tasks.
    pub failing_routes: Vec<String>,
    pub verdict: Verdict,
}

/// Inputs of [`analyze`], all already computed by other analyzers.
pub struct CohortInput<'a> {
    pub grid: Grid,
    pub base_from: usize,
    /// First incident bucket.
    pub split: usize,
    /// Incident onset bucket.
    pub onset: usize,
    /// Buckets per alarm period.
    pub per_period: usize,
    pub logs: Option<&'a LogAnalysis>,
    pub tasks: &'a TaskAnalysis,
    pub metrics: &'a MetricAnalysis,
    pub deployments: &'a [Deployment],
}

/// Fewest failures that can convict or acquit (below it, chance decides).
const MIN_FAILURES: u64 = 3;

fn sum(v: &[u32], a: usize, b: usize) -> u64 {
    v[a.min(v.len())..b.min(v.len())]
        .iter()
        .map(|x| u64::from(*x))
        .sum()
}

fn fails(t: &TaskTraffic, a: usize, b: usize) -> u64 {
    (a..b.min(t.requests.len()))
        .map(|i| u64::from(t.failures(i)))
        .sum()
}

/// Poisson-style surprise of `observed` failures against `expected`.
fn z(observed: f64, expected: f64) -> f64 {
    (observed - expected) / (expected + 1.0).sqrt()
}

/// One cohort per deployment that started tasks inside the analysis range.
pub fn analyze(inp: &CohortInput<'_>) -> Vec<Cohort> {
    let Some(logs) = inp.logs else {
        return Vec::new();
    };
    let len = inp.grid.len;
    let mut out = Vec::new();
    for d in inp.deployments {
        let new_ids: Vec<&String> = inp
            .tasks
            .tasks
            .values()
            .filter(|t| t.deployment_id.as_deref() == Some(d.id.as_str()))
            .map(|t| &t.task_id)
            .collect();
        if new_ids.is_empty() {
            continue;
        }
        // Old tasks: any other task that was running before this deployment
        // (or whose start is before the analysis range).
        let old_ids: Vec<&String> = logs
            .per_task
            .keys()
            .filter(|k| !new_ids.contains(k))
            .filter(|k| {
                inp.tasks
                    .tasks
                    .get(*k)
                    .and_then(|t| t.started_ms)
                    .is_none_or(|s| s < d.started_ms)
            })
            .collect();
        // The first deployment of a service has nothing to compare with.
        if old_ids.is_empty() && d.previous_id.is_none() {
            continue;
        }
        let traffic = |ids: &[&String]| -> Vec<&TaskTraffic> {
            ids.iter().filter_map(|k| logs.per_task.get(*k)).collect()
        };
        let (newt, oldt) = (traffic(&new_ids), traffic(&old_ids));
        let reqs = |ts: &[&TaskTraffic], i: usize| -> u64 {
            ts.iter().map(|t| sum(&t.requests, i, i + 1)).sum()
        };
        let start = inp.grid.index(d.started_ms).unwrap_or(0);
        let first_served = (start..len).find(|&i| reqs(&newt, i) > 0);
        let Some(first) = first_served else {
            continue;
        };
        // The baseline failure rate of the service before this deployment.
        let base_end = start.min(inp.split).max(inp.base_from);
        let all: Vec<&TaskTraffic> = logs.per_task.values().collect();
        let (b_req, b_fail) = all.iter().fold((0u64, 0u64), |acc, t| {
            (
                acc.0 + sum(&t.requests, inp.base_from, base_end),
                acc.1 + fails(t, inp.base_from, base_end),
            )
        });
        let base_rate = if b_req > 0 {
            b_fail as f64 / b_req as f64
        } else {
            0.0
        };
        let overlap: Vec<usize> = (first..len)
            .filter(|&i| reqs(&newt, i) > 0 && reqs(&oldt, i) > 0)
            .collect();
        let stats = |ids: &[&String], ts: &[&TaskTraffic], buckets: &[usize]| -> CohortStats {
            let requests: u64 = buckets.iter().map(|&i| reqs(ts, i)).sum();
            let failures: u64 = buckets
                .iter()
                .map(|&i| ts.iter().map(|t| u64::from(t.failures(i))).sum::<u64>())
                .sum();
            let mut routes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for t in ts {
                for (r, (n, f)) in &t.routes {
                    let e = routes.entry(r.clone()).or_default();
                    e.0 += n;
                    e.1 += f;
                }
            }
            let mut routes: Vec<(String, u64, u64)> =
                routes.into_iter().map(|(r, (n, f))| (r, n, f)).collect();
            routes.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            let (a, b) = (
                buckets.first().copied().unwrap_or(0),
                buckets.last().map_or(0, |x| x + 1),
            );
            let task_mean = |name: &str| -> Option<f64> {
                let v: Vec<f64> = ids
                    .iter()
                    .filter_map(|id| inp.metrics.get(ns::ECS, name, id)?.mean(a, b))
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let slopes: Vec<f64> = ids
                .iter()
                .filter_map(|id| {
                    let s = inp.metrics.get(ns::ECS, "MemoryUtilization", id)?;
                    let tr = s.trend_from(inp.grid, a)?;
                    Some(
                        tr.slope_per_s * inp.grid.bucket_ms as f64 / 1000.0 * inp.per_period as f64,
                    )
                })
                .collect();
            let exits = ids
                .iter()
                .filter_map(|id| inp.tasks.tasks.get(*id))
                .map(|t| {
                    t.oom_kills.iter().filter(|&&x| x >= d.started_ms).count()
                        + t.crashes.iter().filter(|c| c.0 >= d.started_ms).count()
                })
                .sum();
            CohortStats {
                tasks: ids.iter().map(|s| (*s).clone()).collect(),
                requests,
                failures,
                failure_rate: if requests > 0 {
                    failures as f64 / requests as f64
                } else {
                    0.0
                },
                cpu_mean: task_mean("CPUUtilization"),
                memory_slope_per_period: (!slopes.is_empty())
                    .then(|| slopes.iter().sum::<f64>() / slopes.len() as f64),
                exits,
                routes,
            }
        };
        let has_overlap = overlap.len() >= 2;
        let buckets: Vec<usize> = if has_overlap {
            overlap.clone()
        } else {
            (first..len).collect()
        };
        let new = stats(&new_ids, &newt, &buckets);
        let old = stats(&old_ids, &oldt, &buckets);
        // A rate "above normal" is above the baseline by a margin that a
        // handful of requests cannot produce by chance.
        let elevated = |s: &CohortStats| {
            s.failures >= MIN_FAILURES
                && z(s.failures as f64, s.requests as f64 * base_rate) >= 3.0
                && s.failure_rate >= 2.0 * base_rate + 0.01
        };
        let onset = inp.onset;
        // Judged over everything since the new tasks took traffic: the
        // failure is above normal on them, began with them, and the old tasks
        // did not fail in the same buckets.
        let started_with_new = || {
            let since: Vec<usize> = (first..len).collect();
            let old_fail: u64 = since
                .iter()
                .map(|&i| oldt.iter().map(|t| u64::from(t.failures(i))).sum::<u64>())
                .sum();
            elevated(&stats(&new_ids, &newt, &since))
                && old_fail < MIN_FAILURES
                && onset <= first + 2 * inp.per_period
        };
        let verdict = if onset + inp.per_period < first {
            Verdict::BeforeNew
        } else if has_overlap {
            let (ne, oe) = (elevated(&new), elevated(&old));
            let expected = new.requests as f64 * old.failure_rate.max(base_rate);
            if ne && !oe && z(new.failures as f64, expected) >= 3.0 {
                Verdict::Confined
            } else if oe && (ne || old.failure_rate >= 0.5 * new.failure_rate) {
                Verdict::Both
            } else if !oe && old.failure_rate < 0.5 * new.failure_rate && started_with_new() {
                // An overlap too short to tell (a rollout that replaced the
                // old tasks within a period or so) decides nothing on its
                // own; what came first still does, as long as the old tasks
                // did not fail as often as the new ones while side by side.
                Verdict::StartedWithNew
            } else {
                clean_before(inp, &newt, first, onset, base_rate)
            }
        } else if started_with_new() {
            Verdict::StartedWithNew
        } else {
            clean_before(inp, &newt, first, onset, base_rate)
        };
        let failing_routes = if verdict.convicts() {
            new.routes
                .iter()
                .filter(|(_, n, f)| *f >= MIN_FAILURES && *f as f64 >= 0.05 * *n as f64)
                .map(|(r, _, _)| r.clone())
                .collect()
        } else {
            Vec::new()
        };
        out.push(Cohort {
            deployment_id: d.id.clone(),
            from_ms: inp.grid.time(buckets.first().copied().unwrap_or(first)),
            to_ms: inp.grid.time(buckets.last().map_or(first, |x| x + 1)),
            overlap: has_overlap,
            first_served_ms: Some(inp.grid.time(first)),
            new,
            old,
            baseline_failure_rate: base_rate,
            failing_routes,
            verdict,
        });
    }
    out
}

/// The new tasks served at least two alarm periods, with enough requests
/// that the incident's failure rate would have shown, and failed no more
/// than the baseline: whatever began afterwards did not come with them.
fn clean_before(
    inp: &CohortInput<'_>,
    newt: &[&TaskTraffic],
    first: usize,
    onset: usize,
    base_rate: f64,
) -> Verdict {
    if onset < first + 2 * inp.per_period {
        return Verdict::Inconclusive;
    }
    let (req, fail) = newt.iter().fold((0u64, 0u64), |acc, t| {
        (
            acc.0 + sum(&t.requests, first, onset),
            acc.1 + fails(t, first, onset),
        )
    });
    // The failure rate of the incident, over all tasks.
    let (ireq, ifail) = newt.iter().fold((0u64, 0u64), |acc, t| {
        (
            acc.0 + sum(&t.requests, onset, inp.grid.len),
            acc.1 + fails(t, onset, inp.grid.len),
        )
    });
    let inc_rate = if ireq > 0 {
        ifail as f64 / ireq as f64
    } else {
        0.0
    };
    let would_show = req as f64 * inc_rate >= 2.0 * MIN_FAILURES as f64;
    let clean = z(fail as f64, req as f64 * base_rate) < 3.0;
    if would_show && clean {
        Verdict::CleanBeforeOnset
    } else {
        Verdict::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::metrics::MetricAnalysis;
    use crate::analyze::tasks::{TaskAnalysis, TaskHistory};
    use demo_model::events::DeploymentOutcome;

    const LEN: usize = 40;

    fn grid() -> Grid {
        Grid {
            start_ms: 0,
            bucket_ms: 1000,
            len: LEN,
        }
    }

    /// A task serving `rps` requests per bucket from `from` to `to`, failing
    /// `fail` of them from `fail_from` on.
    fn traffic(from: usize, to: usize, rps: u32, fail_from: usize, fail: u32) -> TaskTraffic {
        let mut t = TaskTraffic {
            requests: vec![0; LEN],
            errors_5xx: vec![0; LEN],
            error_lines: vec![0; LEN],
            routes: BTreeMap::new(),
        };
        for i in from..to {
            t.requests[i] = rps;
            if i >= fail_from {
                t.errors_5xx[i] = fail;
            }
        }
        t.routes
            .insert("/api/quote".into(), (100, u64::from(fail) * 10));
        t
    }

    fn run(per_task: Vec<(&str, &str, TaskTraffic)>, onset: usize) -> Cohort {
        let mut tasks = TaskAnalysis::default();
        let mut logs = LogAnalysis {
            lines: 0,
            baseline_lines: 0,
            incident_lines: 0,
            templates: Vec::new(),
            access: BTreeMap::new(),
            per_task: BTreeMap::new(),
        };
        for (id, dep, t) in per_task {
            tasks.tasks.insert(
                id.into(),
                TaskHistory {
                    task_id: id.into(),
                    deployment_id: Some(dep.into()),
                    ..TaskHistory::default()
                },
            );
            logs.per_task.insert(id.into(), t);
        }
        let metrics = MetricAnalysis {
            grid: grid(),
            data_start: Some(0),
            series: BTreeMap::new(),
            alarm_samples: Vec::new(),
        };
        let d = Deployment {
            id: "d-2".into(),
            started_ms: 20_000,
            finished_ms: Some(30_000),
            version: "x".into(),
            git_sha: "x".into(),
            env: BTreeMap::new(),
            changes: Vec::new(),
            outcome: DeploymentOutcome::Completed,
            previous_id: Some("d-1".into()),
            description: String::new(),
            reason: None,
        };
        let deps = [d];
        let inp = CohortInput {
            grid: grid(),
            base_from: 0,
            split: onset,
            onset,
            per_period: 2,
            logs: Some(&logs),
            tasks: &tasks,
            metrics: &metrics,
            deployments: &deps,
        };
        analyze(&inp).remove(0)
    }

    #[test]
    fn failures_only_on_new_tasks_beside_clean_old_ones_are_confined() {
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 30, 10, LEN, 0)),
                ("c", "d-2", traffic(22, LEN, 10, 22, 4)),
            ],
            22,
        );
        assert_eq!(c.verdict, Verdict::Confined, "{c:#?}");
        assert!(c.overlap);
        assert_eq!(c.failing_routes, vec!["/api/quote"]);
    }

    #[test]
    fn failures_on_old_and_new_alike_acquit() {
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 30, 10, 24, 4)),
                ("c", "d-2", traffic(22, LEN, 10, 24, 4)),
            ],
            24,
        );
        assert_eq!(c.verdict, Verdict::Both, "{c:#?}");
        assert!(c.failing_routes.is_empty());
    }

    #[test]
    fn a_failure_before_the_new_tasks_served_acquits() {
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 30, 10, 12, 4)),
                ("c", "d-2", traffic(25, LEN, 10, 25, 4)),
            ],
            12,
        );
        assert_eq!(c.verdict, Verdict::BeforeNew, "{c:#?}");
    }

    #[test]
    fn clean_service_by_the_new_tasks_before_the_onset_acquits() {
        // Old tasks gone at 24; the new ones serve cleanly 22..32, then fail.
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 23, 10, LEN, 0)),
                ("c", "d-2", traffic(22, LEN, 10, 32, 4)),
            ],
            32,
        );
        assert_eq!(c.verdict, Verdict::CleanBeforeOnset, "{c:#?}");
    }

    #[test]
    fn a_failure_that_starts_with_the_new_tasks_during_a_short_overlap_convicts() {
        // Old tasks drain at 24: in the two side-by-side buckets the new ones
        // fail 2 requests (too few to judge), then keep failing alone.
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 24, 10, LEN, 0)),
                ("c", "d-2", traffic(22, LEN, 10, 23, 2)),
            ],
            23,
        );
        assert!(c.overlap);
        assert_eq!(c.verdict, Verdict::StartedWithNew, "{c:#?}");
        assert_eq!(c.failing_routes, vec!["/api/quote"]);
    }

    #[test]
    fn a_short_overlap_with_the_old_tasks_failing_too_does_not_convict() {
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 24, 10, 23, 2)),
                ("c", "d-2", traffic(22, LEN, 10, 23, 2)),
            ],
            23,
        );
        assert!(!c.verdict.convicts(), "{c:#?}");
    }

    #[test]
    fn a_failure_that_starts_with_the_new_tasks_and_no_overlap_convicts() {
        let c = run(
            vec![
                ("a", "d-1", traffic(0, 22, 10, LEN, 0)),
                ("c", "d-2", traffic(22, LEN, 10, 22, 4)),
            ],
            22,
        );
        assert_eq!(c.verdict, Verdict::StartedWithNew, "{c:#?}");
    }
}
