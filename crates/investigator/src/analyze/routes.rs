//! Route attribution: which routes carry the errors and the latency. Per-route
//! App metrics (`RequestCount{route,status}`, `LatencyMean{route}`) are used
//! when the service exports them; otherwise the access lines counted by the
//! log analyzer stand in. Each route gets its baseline and incident request
//! and 5xx rates and its share of the incident's extra errors.

use std::collections::BTreeMap;

use demo_model::events::ns;
use serde::Serialize;

use super::logs::LogAnalysis;
use super::metrics::{MetricAnalysis, labels};

#[derive(Debug, Clone, Serialize)]
pub struct RouteStat {
    pub route: String,
    pub baseline_rps: f64,
    pub incident_rps: f64,
    pub baseline_5xx_rps: f64,
    pub incident_5xx_rps: f64,
    /// Incident 5xx / incident requests.
    pub incident_error_rate: f64,
    pub baseline_error_rate: f64,
    /// This route's share of the increase in 5xx rate over all routes (0–1).
    pub error_share: f64,
    pub baseline_latency_s: Option<f64>,
    pub incident_latency_s: Option<f64>,
    /// `app_metrics` or `access_logs`.
    pub source: &'static str,
}

impl RouteStat {
    pub fn latency_increase_s(&self) -> f64 {
        match (self.baseline_latency_s, self.incident_latency_s) {
            (Some(b), Some(i)) => i - b,
            _ => 0.0,
        }
    }
}

/// Buckets `[0, split)` are the baseline, `[split, len)` the incident; the
/// baseline starts at `base_from` (where data began).
pub fn analyze(
    metrics: &MetricAnalysis,
    logs: Option<&LogAnalysis>,
    base_from: usize,
    split: usize,
    base_secs: f64,
    inc_secs: f64,
) -> Vec<RouteStat> {
    let len = metrics.grid.len;
    #[derive(Default)]
    struct Acc {
        b_req: f64,
        i_req: f64,
        b_err: f64,
        i_err: f64,
        lat_b: Option<f64>,
        lat_i: Option<f64>,
    }
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    let bucket_s = metrics.grid.bucket_ms as f64 / 1000.0;
    // Sum of a rate series over buckets → count.
    let count = |v: &[Option<f64>], a: usize, b: usize| -> f64 {
        v[a.min(v.len())..b.min(v.len())]
            .iter()
            .flatten()
            .sum::<f64>()
            * bucket_s
    };
    let mut from_metrics = false;
    for s in metrics.by_name(ns::APP, "RequestCount") {
        let l = labels(&s.key.dimension);
        let (Some(route), Some(status)) = (l.get("route"), l.get("status")) else {
            continue;
        };
        from_metrics = true;
        let is_5xx = status.starts_with('5');
        let a = acc.entry((*route).to_owned()).or_default();
        let (b, i) = (
            count(&s.values, base_from, split),
            count(&s.values, split, len),
        );
        a.b_req += b;
        a.i_req += i;
        if is_5xx {
            a.b_err += b;
            a.i_err += i;
        }
    }
    for s in metrics.by_name(ns::APP, "LatencyMean") {
        let l = labels(&s.key.dimension);
        let Some(route) = l.get("route") else {
            continue;
        };
        let a = acc.entry((*route).to_owned()).or_default();
        a.lat_b = s.mean(base_from, split);
        a.lat_i = s.mean(split, len);
    }
    let source = if from_metrics {
        "app_metrics"
    } else {
        match logs {
            Some(l) => {
                for (route, c) in &l.access {
                    let a = acc.entry(route.clone()).or_default();
                    a.b_req += c.baseline_requests as f64;
                    a.i_req += c.incident_requests as f64;
                    a.b_err += c.baseline_5xx as f64;
                    a.i_err += c.incident_5xx as f64;
                }
                "access_logs"
            }
            None => "app_metrics",
        }
    };
    let base_secs = base_secs.max(1e-3);
    let inc_secs = inc_secs.max(1e-3);
    let excess = |a: &Acc| (a.i_err / inc_secs - a.b_err / base_secs).max(0.0);
    let total_excess: f64 = acc.values().map(excess).sum();
    let mut out: Vec<RouteStat> = acc
        .iter()
        .map(|(route, a)| RouteStat {
            route: route.clone(),
            baseline_rps: a.b_req / base_secs,
            incident_rps: a.i_req / inc_secs,
            baseline_5xx_rps: a.b_err / base_secs,
            incident_5xx_rps: a.i_err / inc_secs,
            incident_error_rate: if a.i_req > 0.0 {
                a.i_err / a.i_req
            } else {
                0.0
            },
            baseline_error_rate: if a.b_req > 0.0 {
                a.b_err / a.b_req
            } else {
                0.0
            },
            error_share: if total_excess > 0.0 {
                excess(a) / total_excess
            } else {
                0.0
            },
            baseline_latency_s: a.lat_b,
            incident_latency_s: a.lat_i,
            source,
        })
        .collect();
    out.sort_by(|a, b| {
        b.error_share
            .total_cmp(&a.error_share)
            .then(b.latency_increase_s().total_cmp(&a.latency_increase_s()))
            .then_with(|| a.route.cmp(&b.route))
    });
    out
}
