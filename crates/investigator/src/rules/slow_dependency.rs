//! **slow_dependency**: requests on one route wait on something slow.
//!
//! Detects: a route whose latency rose well above its own baseline while
//! the other routes kept theirs (isolation), and timeout errors logged on
//! it. The entity is that route.
//!
//! Why: latency confined to one route is that route's dependency (a
//! database, a downstream API); latency on every route at once is a shared
//! resource (CPU, memory, the host) and belongs to cpu_saturation or
//! traffic_surge. A p99 that crosses its threshold with no route slower
//! than usual is not a dependency at all.
//!
//! Example: `POST /api/quote` goes from 0.04 s to 2.1 s mean latency and
//! logs "Request timed out"; `/api/products` stays at 0.03 s →
//! slow_dependency `/api/quote`.

use demo_model::events::ns;
use serde_json::json;

use super::{Cand, Context, Rule, is_timeout};
use crate::analyze::routes::RouteStat;
use crate::hypothesis::CMD_FAULTS_RESET;
use crate::hypothesis::evidence::{cite, f2};
use crate::report::Category;

pub struct SlowDependency;

/// Latency at least this multiple of the route's own baseline...
const MIN_RATIO: f64 = 1.5;
/// ...and at least this much slower in absolute terms (request latency is
/// not time-scaled: a request waits as long at any time scale).
const MIN_RISE_S: f64 = 0.05;

/// Whether a route got slower than its own baseline.
pub fn slowed(r: &RouteStat) -> bool {
    match (r.baseline_latency_s, r.incident_latency_s) {
        (Some(b), Some(i)) => i - b >= MIN_RISE_S && i >= MIN_RATIO * b,
        _ => false,
    }
}

impl Rule for SlowDependency {
    fn category(&self) -> Category {
        Category::SlowDependency
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let served: Vec<&RouteStat> = f
            .routes
            .iter()
            .filter(|r| r.route != f.health_path && r.incident_latency_s.is_some())
            .collect();
        let slow: Vec<&RouteStat> = served.iter().copied().filter(|r| slowed(r)).collect();
        let worst = slow
            .iter()
            .max_by(|a, b| a.latency_increase_s().total_cmp(&b.latency_increase_s()))
            .copied();
        let timeouts: Vec<_> = cx
            .surged
            .iter()
            .filter(|t| is_timeout(&t.template))
            .copied()
            .collect();
        let entity = worst.map(|r| r.route.clone()).or_else(|| {
            timeouts
                .iter()
                .find_map(|t| t.routes.first().map(|r| r.0.clone()))
        });
        let Some(entity) = entity else {
            return Vec::new();
        };
        let mut c = Cand::new(Category::SlowDependency, Some(entity.clone()));
        c.onset_ms = Some(f.onset_ms);
        c.explains_routes.push(entity.clone());
        if let Some(r) = worst {
            let id = cx.ev.add(
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
            c.support(id, 0.3);
            // Isolation: the other routes kept their latency.
            let others: Vec<&str> = served
                .iter()
                .filter(|o| o.route != r.route && !slowed(o))
                .map(|o| o.route.as_str())
                .collect();
            if !others.is_empty() && slow.len() * 2 <= served.len() {
                let id = cx.ev.add(
                    &format!("isolated:{}", r.route),
                    "route",
                    format!(
                        "Only {} got slower; {} kept their latency: the cause is on that route's path",
                        slow.iter().map(|s| s.route.as_str()).collect::<Vec<_>>().join(", "),
                        others.join(", ")
                    ),
                    Some(f.incident.start_ms),
                    json!({"slow": slow.iter().map(|s| &s.route).collect::<Vec<_>>(), "unchanged": others}),
                );
                c.support(id, 0.2);
            } else if slow.len() >= 2 && slow.len() == served.len() {
                let id = cx.ev.add(
                    "all-routes-slower",
                    "route",
                    format!(
                        "Every route got slower at once ({}): a shared resource, not one dependency",
                        slow.iter().map(|s| s.route.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    Some(f.incident.start_ms),
                    json!({"routes": slow.iter().map(|s| &s.route).collect::<Vec<_>>()}),
                );
                c.oppose(id, 0.25);
            }
        }
        if let Some(id) = cx.change(ns::ALB, "TargetResponseTime", true) {
            c.support(id, 0.1);
        }
        let mut first = true;
        for t in &timeouts {
            if let Some(id) = cx.template_ev.get(&t.template) {
                c.support(id.clone(), if first { 0.2 } else { 0.0 });
                first = false;
            }
        }
        if cx.alarm_metric == "TargetResponseTime" && c.score() > 0.0 {
            c.support(cx.alarm_ev.clone(), 0.15);
        }
        c.statement = format!(
            "Requests on {} wait on a slow dependency{}",
            entity,
            cite(&c.pro_ids())
        );
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "remove an injected latency fault".into(),
        ));
        vec![c]
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, rivals: &[Cand]) {
        // Saturated CPU or a surge slows requests without any dependency.
        for r in rivals.iter().filter(|r| {
            matches!(r.category, Category::CpuSaturation | Category::TrafficSurge)
                && r.score() >= crate::hypothesis::MIN_SCORE
        }) {
            if let Some(id) = r.pro.first() {
                c.oppose(id.0.clone(), 0.15);
            }
        }
        let _ = cx;
    }
}
