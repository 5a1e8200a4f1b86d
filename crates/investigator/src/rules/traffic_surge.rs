//! **traffic_surge**: more requests than the service can carry.
//!
//! Detects: a rise of the request rate that stands out against the rate's
//! own history (its change point: several times the baseline's robust
//! spread, no fixed ratio), beginning from real traffic and shortly before
//! the incident; CPU or latency that rose after it confirm it.
//!
//! Why: a surge is the cause and saturation its effect when the surge comes
//! first, so the surge outranks the CPU it drives. A rise from no traffic
//! at all is the service (or the data) starting, not a surge; a rise that
//! ended long before the incident does not explain it.
//!
//! Example: requests go from 20 to 80 per period at 10:00, CPU follows from
//! 10:00:30 → traffic_surge `service` (or the route that carries the rise),
//! cpu_saturation below it.

use demo_model::events::{SERVICE_DIMENSION, ns};

use super::{Cand, Context, Rule, is_timeout};
use crate::hypothesis::cmd_scale;
use crate::hypothesis::evidence::cite;
use crate::report::Category;

pub struct TrafficSurge;

/// How many alarm periods before the incident onset a surge may begin and
/// still explain it.
const LEAD_PERIODS: i64 = 5;

impl Rule for TrafficSurge {
    fn category(&self) -> Category {
        Category::TrafficSurge
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let Some(s) = cx.svc(ns::ALB, "RequestCount") else {
            return Vec::new();
        };
        let Some(cp) = s
            .changed(true)
            .filter(|c| c.before > 0.0)
            .filter(|c| f.grid.time(c.onset) >= f.onset_ms - LEAD_PERIODS * f.period_ms)
            .copied()
        else {
            return Vec::new();
        };
        let ratio = cp.ratio();
        let Some(id) = cx.ev.change(f, s, true) else {
            return Vec::new();
        };
        let entity = f
            .routes
            .iter()
            .max_by(|a, b| {
                (a.incident_rps - a.baseline_rps).total_cmp(&(b.incident_rps - b.baseline_rps))
            })
            // One route carries the rise when its growth is most of the total.
            .filter(|r| {
                let total: f64 = f
                    .routes
                    .iter()
                    .map(|x| (x.incident_rps - x.baseline_rps).max(0.0))
                    .sum();
                total > 0.0 && (r.incident_rps - r.baseline_rps) >= 0.8 * total
            })
            .map_or(SERVICE_DIMENSION.to_owned(), |r| r.route.clone());
        let mut c = Cand::new(Category::TrafficSurge, Some(entity));
        let onset = f.grid.time(cp.onset);
        c.onset_ms = Some(onset);
        // Stronger the larger the rise, on a log scale: ×1.5 → 0.39, ×4 → 0.6.
        c.support(id, 0.3 + (0.15 * ratio.log2()).clamp(0.0, 0.3));
        // Effects that followed the surge.
        for name in ["CPUUtilization"] {
            if let Some(cpu) = cx.svc(ns::ECS, name)
                && cpu
                    .changed(true)
                    .is_some_and(|x| f.grid.time(x.onset) + f.period_ms >= onset)
                && let Some(id) = cx.ev.change(f, cpu, true)
            {
                c.support(id, 0.15);
            }
        }
        if let Some(id) = cx.change(ns::ALB, "TargetResponseTime", true) {
            c.support(id, 0.05);
        }
        if cx.alarm_metric == "RequestCount" {
            c.support(cx.alarm_ev.clone(), 0.15);
        }
        c.statement = format!(
            "Request rate rose {:.1}× above its usual level and the service could not keep up{}",
            ratio,
            cite(&c.pro_ids())
        );
        let running = cx.running();
        c.mitigation.push((
            cmd_scale((running as f64 * ratio.min(4.0)).ceil() as u32),
            "scale out to the new request rate".into(),
        ));
        vec![c]
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, _rivals: &[Cand]) {
        // Errors that are not timeouts are failures of their own, not load.
        if cx.surged.iter().any(|t| !is_timeout(&t.template))
            && let Some(id) = cx.template_ev.values().next()
        {
            c.oppose(id.clone(), 0.1);
        }
    }
}
