//! Root-cause rules: one module per category, each behind the one small
//! [`Rule`] trait, listed in [`RULES`]. The ranking in
//! [`crate::hypothesis`] runs every rule in two passes:
//!
//! 1. [`Rule::gather`]: the rule looks for its own signal (a change point, a
//!    surged template, a task failure, a cohort difference) and forms one
//!    candidate per entity it implicates, with the evidence **for** it, each
//!    item carrying a weight;
//! 2. [`Rule::against`]: seeing every other rule's candidates, it adds the
//!    evidence **against** its own — causal order (what came first is the
//!    cause, the rest symptoms), isolation (one route vs all), a cause that
//!    subsumes it (a convicted deployment explains its route's failures);
//!
//! and a candidate's score is its weighted evidence ([`Cand::score`]).
//! Adding a category is adding a module and a line in [`RULES`].
//!
//! Units: every threshold is a fraction, a count per alarm period, a
//! multiple of the baseline's own spread, or a percentage of a task's
//! limit — never per real second — so the same incident gets the same
//! answer at any time scale.
//!
//! Entities: a deployment id (`d-0002`) for code_change, a route template
//! (`/api/quote`) for application_fault and slow_dependency, task ids
//! (`task-0001`, several joined by `,`) for memory_leak, health_check_failure
//! and crash_loop, and `service` when a cause is not confined to one of
//! those.

pub mod application_fault;
pub mod code_change;
pub mod cpu_saturation;
pub mod crash_loop;
pub mod health_check_failure;
pub mod memory_leak;
pub mod slow_dependency;
pub mod traffic_surge;

use std::collections::BTreeMap;

use demo_model::events::{SERVICE_DIMENSION, ns};

use crate::analyze::logs::TemplateStat;
use crate::analyze::metrics::SeriesAnalysis;
use crate::hypothesis::evidence::Ev;
use crate::investigate::Findings;
use crate::report::Category;

/// One root-cause category.
pub trait Rule: Sync {
    fn category(&self) -> Category;
    /// Candidates with the evidence for them; empty when the category's own
    /// signal is absent (the alarm firing is never enough).
    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand>;
    /// Evidence against `c`, given every candidate the rules formed
    /// (`rivals` includes `c` itself as first gathered).
    fn against(&self, _cx: &mut Context<'_>, _c: &mut Cand, _rivals: &[Cand]) {}
    /// The candidate's score, 0–0.97; by default its weighted evidence.
    fn score(&self, c: &Cand) -> f64 {
        c.score()
    }
}

/// Every rule, in the order their candidates are listed on ties.
pub static RULES: &[&dyn Rule] = &[
    &code_change::CodeChange,
    &application_fault::ApplicationFault,
    &memory_leak::MemoryLeak,
    &cpu_saturation::CpuSaturation,
    &health_check_failure::HealthCheckFailure,
    &slow_dependency::SlowDependency,
    &traffic_surge::TrafficSurge,
    &crash_loop::CrashLoop,
];

/// The rule of a category (None for insufficient_evidence, which the
/// ranking forms when no rule reaches the bar).
pub fn rule(category: Category) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|r| r.category() == category)
}

/// A candidate root cause and its weighted evidence.
#[derive(Debug, Clone)]
pub struct Cand {
    pub category: Category,
    pub entity: Option<String>,
    /// Score before evidence (usually 0).
    pub base: f64,
    /// (evidence id, weight) for and against.
    pub pro: Vec<(String, f64)>,
    pub con: Vec<(String, f64)>,
    /// Multiplier (relevance to the alarm's metric).
    pub factor: f64,
    pub statement: String,
    /// (command, why).
    pub mitigation: Vec<(String, String)>,
    /// When this cause began, for causal order.
    pub onset_ms: Option<i64>,
    /// Routes whose failures this cause accounts for.
    pub explains_routes: Vec<String>,
    /// Tasks this cause accounts for.
    pub explains_tasks: Vec<String>,
}

impl Cand {
    pub fn new(category: Category, entity: Option<String>) -> Cand {
        Cand {
            category,
            entity,
            base: 0.0,
            pro: Vec::new(),
            con: Vec::new(),
            factor: 1.0,
            statement: String::new(),
            mitigation: Vec::new(),
            onset_ms: None,
            explains_routes: Vec::new(),
            explains_tasks: Vec::new(),
        }
    }
    /// Evidence for, weighing `w`.
    pub fn support(&mut self, id: impl Into<String>, w: f64) {
        self.pro.push((id.into(), w));
    }
    /// Evidence against, weighing `w`.
    pub fn oppose(&mut self, id: impl Into<String>, w: f64) {
        self.con.push((id.into(), w));
    }
    pub fn score(&self) -> f64 {
        let pro: f64 = self.pro.iter().map(|x| x.1).sum();
        let con: f64 = self.con.iter().map(|x| x.1).sum();
        ((self.base + pro - con) * self.factor).clamp(0.0, 0.97)
    }
    pub fn pro_ids(&self) -> Vec<String> {
        crate::hypothesis::evidence::dedup(
            &self.pro.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
        )
    }
    pub fn con_ids(&self) -> Vec<String> {
        crate::hypothesis::evidence::dedup(
            &self.con.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
        )
    }
}

/// What every rule reads: the findings, the evidence register and the
/// signals several rules share.
pub struct Context<'a> {
    pub f: &'a Findings,
    pub ev: Ev,
    /// Evidence id of the alarm itself.
    pub alarm_ev: String,
    pub alarm_metric: String,
    /// Surged error-like templates, strongest first, and their evidence ids.
    pub surged: Vec<&'a TemplateStat>,
    pub template_ev: BTreeMap<String, String>,
    /// Tasks OOM-killed and crashed (with counts) in the incident window.
    pub oom_tasks: Vec<String>,
    pub crashed: Vec<(String, usize)>,
    /// Code correlation of the deployments, for the report.
    pub code_correlation: Vec<crate::report::CodeCorrelation>,
}

impl<'a> Context<'a> {
    /// A service-level series.
    /// `RunningTaskCount` is read from ECS or from Container Insights,
    /// whichever the source has.
    pub fn svc(&self, namespace: &str, name: &str) -> Option<&'a SeriesAnalysis> {
        self.f
            .metrics
            .get(namespace, name, SERVICE_DIMENSION)
            .or_else(|| match name {
                "RunningTaskCount" => {
                    self.f
                        .metrics
                        .get(ns::CONTAINER_INSIGHTS, name, SERVICE_DIMENSION)
                }
                _ => None,
            })
    }
    /// Evidence of a significant change of a service-level series.
    pub fn change(&mut self, namespace: &str, name: &str, up: bool) -> Option<String> {
        let s = self.svc(namespace, name)?;
        self.ev.change(self.f, s, up)
    }
    /// The alarm period in seconds of the store's clock (already time-scaled).
    pub fn period_s(&self) -> f64 {
        self.f.period_ms as f64 / 1000.0
    }
    /// A rate per second of the store's clock, as a count per alarm period.
    pub fn per_period(&self, rate_per_s: f64) -> f64 {
        rate_per_s * self.period_s()
    }
    /// Grid buckets per alarm period.
    pub fn buckets_per_period(&self) -> usize {
        ((self.f.period_ms / self.f.grid.bucket_ms.max(1)) as usize).max(1)
    }
    /// Time of a bucket.
    pub fn time(&self, bucket: usize) -> i64 {
        self.f.grid.time(bucket)
    }
    /// Running task count during the incident (or the desired count).
    pub fn running(&self) -> u32 {
        self.svc(ns::ECS, "RunningTaskCount")
            .and_then(|s| s.mean(self.f.split, self.f.grid.len))
            .map_or(self.f.desired_count, |m| m.round().max(1.0) as u32)
    }
}

pub fn is_timeout(template: &str) -> bool {
    let l = template.to_ascii_lowercase();
    l.contains("timed out") || l.contains("timeout") || l.contains("deadline")
}
