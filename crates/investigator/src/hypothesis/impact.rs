//! The impact figures: requests, 5xx and latency in the incident vs before.
//!
//! The incident window the change points frame may start after the first
//! failures (a ramp is walked back only so far, and a handful of failing
//! requests before the alarm is not a change point). Counting those early
//! failures as "before" gave reports like "73.6 %, vs 100.0 % before" when
//! nothing had failed before. So the impact's own incident starts where the
//! failure run began: walking back from the incident start over buckets
//! that still fail at least half as often as the incident does (idle
//! buckets in between are skipped, up to two alarm periods of them).

use demo_model::events::{SERVICE_DIMENSION, ns};
use serde_json::json;

use super::evidence::{Ev, f2};
use crate::analyze::metrics::SeriesAnalysis;
use crate::investigate::Findings;
use crate::report::Impact;

/// The first bucket of the failure run that ends in the incident: `split`
/// or earlier. `req` and `err` are per-bucket counts (or rates).
pub fn failure_run_start(
    req: &[f64],
    err: &[f64],
    from: usize,
    split: usize,
    max_idle: usize,
) -> usize {
    let n = req.len().min(err.len());
    let (ir, ie): (f64, f64) = (split..n).fold((0.0, 0.0), |a, i| (a.0 + req[i], a.1 + err[i]));
    if ie <= 0.0 || ir <= 0.0 {
        return split;
    }
    let rate = ie / ir;
    let mut start = split.min(n);
    let mut idle = 0;
    let mut i = start;
    while i > from {
        i -= 1;
        if req[i] <= 0.0 && err[i] <= 0.0 {
            idle += 1;
            if idle > max_idle {
                break;
            }
            continue;
        }
        let r = if req[i] > 0.0 { err[i] / req[i] } else { 1.0 };
        if r >= rate / 2.0 && err[i] > 0.0 {
            start = i;
            idle = 0;
        } else {
            break;
        }
    }
    start
}

pub fn impact(f: &Findings, ev: &mut Ev, per_period: usize) -> Impact {
    let len = f.grid.len;
    let b0 = f.base_from;
    let secs = f.grid.bucket_ms as f64 / 1000.0;
    let svc = |name: &str| f.metrics.get(ns::ALB, name, SERVICE_DIMENSION);
    let counts = |s: Option<&SeriesAnalysis>| -> Vec<f64> {
        s.map_or(vec![0.0; len], |s| {
            s.values.iter().map(|v| v.unwrap_or(0.0) * secs).collect()
        })
    };
    let req = counts(svc("RequestCount"));
    let err: Vec<f64> = counts(svc("HTTPCode_Target_5XX_Count"))
        .into_iter()
        .zip(counts(svc("HTTPCode_ELB_5XX_Count")))
        .map(|(a, b)| a + b)
        .collect();
    let s0 = failure_run_start(&req, &err, b0, f.split, 2 * per_period);
    let sum = |v: &[f64], a: usize, b: usize| v[a.min(b)..b].iter().sum::<f64>();
    let requests = sum(&req, s0, len);
    let errors = sum(&err, s0, len);
    let base_req = sum(&req, b0, s0);
    let base_err = sum(&err, b0, s0);
    let rate = |e: f64, r: f64| if r > 0.0 { e / r } else { 0.0 };
    let lat = svc("TargetResponseTime");
    let p99 = lat.and_then(|s| s.max(f.split, len));
    let p99_base = lat.and_then(|s| s.mean(b0, f.split));
    let affected_routes: Vec<String> = f
        .routes
        .iter()
        .filter(|r| r.error_share >= 0.1 || crate::rules::slow_dependency::slowed(r))
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
            "{:.0} of {:.0} requests failed with 5xx ({:.1}%, {})",
            errors,
            requests,
            rate(errors, requests) * 100.0,
            if base_req > 0.0 {
                format!(
                    "vs {:.1}% of {:.0} before",
                    rate(base_err, base_req) * 100.0,
                    base_req
                )
            } else {
                "no requests before".to_owned()
            }
        ));
    }
    if let (Some(p), Some(b)) = (p99, p99_base)
        && p > b * 1.5
        && p > 0.1
    {
        parts.push(format!(
            "p99 latency reached {} s (baseline {} s)",
            f2(p),
            f2(b)
        ));
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
        Some(f.grid.time(s0)),
        json!({"requests": requests, "errors_5xx": errors, "from_ms": f.grid.time(s0)}),
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

#[cfg(test)]
mod tests {
    use super::failure_run_start;

    #[test]
    fn early_failures_belong_to_the_incident_not_the_baseline() {
        // Idle, then a few requests that all fail (a user's curl /error/500)
        // before the change point framed the incident at bucket 10.
        let mut req = vec![0.0; 20];
        let mut err = vec![0.0; 20];
        for i in 6..20 {
            req[i] = 4.0;
            err[i] = 3.0;
        }
        req[8] = 0.0;
        err[8] = 0.0;
        assert_eq!(failure_run_start(&req, &err, 0, 10, 4), 6);
    }

    #[test]
    fn clean_traffic_before_the_incident_stays_the_baseline() {
        let mut req = vec![10.0; 20];
        let mut err = vec![0.0; 20];
        err[3] = 1.0;
        for e in err.iter_mut().skip(10) {
            *e = 5.0;
        }
        assert_eq!(failure_run_start(&req, &err, 0, 10, 4), 10);
        // With nothing failing in the incident, the window is unchanged.
        req.iter_mut().for_each(|r| *r = 1.0);
        assert_eq!(failure_run_start(&req, &[0.0; 20], 0, 10, 4), 10);
    }
}
