//! The evidence register every rule writes to: each finding becomes one
//! [`Evidence`] item with an id (`E1`, `E2`, ...) that hypotheses and report
//! sentences cite. Items are keyed, so two rules citing the same change point
//! share one item. Also the small formatting helpers evidence sentences use.

use std::collections::HashMap;

use demo_model::events::ns;
use serde_json::json;

use crate::analyze::metrics::SeriesAnalysis;
use crate::investigate::Findings;
use crate::report::{Evidence, fmt_time};

#[derive(Default)]
pub struct Ev {
    pub items: Vec<Evidence>,
    pub keys: HashMap<String, String>,
}

impl Ev {
    /// Adds an item once per `key`; returns its id.
    pub fn add(
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

    /// The id of an item added under `key`, if any.
    pub fn id(&self, key: &str) -> Option<String> {
        self.keys.get(key).cloned()
    }

    /// Adds the change-point evidence of a series; None when it did not
    /// change significantly in direction `up`.
    pub fn change(&mut self, f: &Findings, s: &SeriesAnalysis, up: bool) -> Option<String> {
        let c = s.changed(up)?;
        let t = f.grid.time(c.onset);
        Some(self.add(
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
}

pub fn cite(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" [{}]", ids.join(", "))
    }
}

/// A number with as many decimals as its size deserves.
pub fn f2(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn unit(s: &SeriesAnalysis) -> &'static str {
    match (s.key.namespace.as_str(), s.key.name.as_str()) {
        (ns::ECS, "CPUUtilization" | "MemoryUtilization") => "%",
        (_, "TargetResponseTime" | "LatencyMean") => " s",
        (_, "RunningTaskCount" | "HealthyHostCount" | "UnHealthyHostCount") => "",
        _ => "/s",
    }
}

pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}

pub fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}
