//! **application_fault**: the application fails requests on one route.
//!
//! Detects: a route that carries a large share of the incident's extra 5xx,
//! whose error rate rose well above its own baseline, with at least one
//! extra failure per alarm period; surged error templates logged on that
//! route strengthen it.
//!
//! Why: a failing route with no deployment, resource or dependency behind it
//! is the application's own fault (a bug hit by some inputs, an injected
//! fault). It steps back when a convicted deployment accounts for the
//! route's failures (the deployment is the cause, the route the symptom) or
//! when most of its errors are timeouts (it waits on something slow).
//!
//! Example: 50 % of `GET /api/products/{id}` answer 500 and log "Injected
//! failure on API request" on every task → application_fault
//! `/api/products/{id}`.

use demo_model::events::ns;
use serde_json::json;

use super::{Cand, Context, Rule, is_timeout};
use crate::hypothesis::evidence::{cite, f2};
use crate::hypothesis::{CMD_FAULTS_RESET, MIN_SCORE};
use crate::report::Category;

pub struct ApplicationFault;

/// Share of the extra 5xx a route must carry.
const MIN_SHARE: f64 = 0.2;
/// Extra failures per alarm period on the route.
const MIN_EXTRA_PER_PERIOD: f64 = 1.0;

impl Rule for ApplicationFault {
    fn category(&self) -> Category {
        Category::ApplicationFault
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let mut out = Vec::new();
        let period_s = cx.period_s();
        for r in f.routes.iter().filter(|r| {
            r.route != f.health_path
                && r.error_share >= MIN_SHARE
                && (r.incident_5xx_rps - r.baseline_5xx_rps) * period_s >= MIN_EXTRA_PER_PERIOD
                && r.incident_error_rate >= 2.0 * r.baseline_error_rate + 0.02
        }) {
            let mut c = Cand::new(Category::ApplicationFault, Some(r.route.clone()));
            c.onset_ms = Some(f.onset_ms);
            c.explains_routes.push(r.route.clone());
            let rid = cx.ev.add(
                &format!("route:{}", r.route),
                "route",
                format!(
                    "Route {} carries {:.0}% of the extra 5xx: error rate {:.1}% in the incident vs {:.1}% before ({} → {} 5xx per alarm period, from {})",
                    r.route,
                    r.error_share * 100.0,
                    r.incident_error_rate * 100.0,
                    r.baseline_error_rate * 100.0,
                    f2(r.baseline_5xx_rps * period_s),
                    f2(r.incident_5xx_rps * period_s),
                    r.source
                ),
                Some(f.incident.start_ms),
                json!({"route": r}),
            );
            c.support(
                rid,
                0.35 + 0.3 * r.error_share
                    + if r.incident_error_rate >= 0.1 {
                        0.1
                    } else {
                        0.0
                    },
            );
            let mut templates = 0;
            let surged = cx.surged.clone();
            for t in &surged {
                let on_route = t
                    .routes
                    .iter()
                    .find(|(x, _)| *x == r.route)
                    .map_or(0, |x| x.1);
                let routed: u64 = t.routes.iter().map(|x| x.1).sum();
                if routed > 0
                    && on_route * 2 >= routed
                    && let Some(id) = cx.template_ev.get(&t.template)
                {
                    c.support(id.clone(), if templates == 0 { 0.15 } else { 0.0 });
                    templates += 1;
                }
            }
            for name in ["HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"] {
                if let Some(id) = cx.change(ns::ALB, name, true) {
                    c.support(id, 0.0);
                }
            }
            let errs = f.error_namespace.clone();
            if let Some(id) = cx.change(&errs, "ErrorCount", true) {
                c.support(id, 0.0);
            }
            c.statement = format!(
                "The application fails requests on route {}{}",
                r.route,
                cite(&c.pro_ids())
            );
            c.mitigation.push((
                CMD_FAULTS_RESET.to_owned(),
                format!("clear any injected fault making {} fail", r.route),
            ));
            out.push(c);
        }
        out
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, rivals: &[Cand]) {
        let route = c.entity.clone().unwrap_or_default();
        if timeout_share_on(cx, &route) >= 0.5 {
            let id = cx.ev.add(
                &format!("timeouts:{route}"),
                "log_template",
                format!("Most surged error lines on {route} are timeouts: the route waits on something slow rather than failing by itself"),
                None,
                json!({"route": route}),
            );
            c.oppose(id, 0.2);
        }
        // A convicted deployment whose tasks fail on this route is the cause.
        for d in rivals.iter().filter(|d| {
            d.category == Category::CodeChange
                && d.score() >= MIN_SCORE
                && d.explains_routes.contains(&route)
        }) {
            let dep = d.entity.clone().unwrap_or_default();
            if let Some(id) = cx
                .ev
                .id(&format!("cohort:{dep}"))
                .or_else(|| cx.ev.id(&format!("deploy:{dep}")))
            {
                c.oppose(id, 0.4);
            }
        }
    }
}

fn timeout_share_on(cx: &Context<'_>, route: &str) -> f64 {
    let (mut to, mut all) = (0u64, 0u64);
    for t in &cx.surged {
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
}
