//! **memory_leak**: memory grows without bound in some tasks.
//!
//! Detects: sustained growth of a task's memory — a straight-line fit from
//! where the rise began with a good fit (r² ≥ 0.6) and a rise of at least 5
//! percentage points of the task's limit — and the time it leaves before the
//! limit, counted in alarm periods; OOM kills of the same tasks confirm it.
//!
//! Why: a leak is growth, not a level. A one-off rise that then stays flat
//! (a cache warming, a bigger batch) is not a leak however high it ends, and
//! a slow leak (65 % → 81 % over an hour) is one even though no single
//! period looks dramatic. Only the leaking tasks are named, so a leak on
//! one task names that task.
//!
//! Example: task-0002's memory rises 0.5 points per period with r² 0.97 and
//! reaches 100 % in 12 periods; the alarm is memory-high → memory_leak
//! `task-0002`.

use demo_model::events::{SERVICE_DIMENSION, ns};
use serde_json::json;

use super::{Cand, Context, Rule};
use crate::analyze::metrics::SeriesAnalysis;
use crate::analyze::series::Trend;
use crate::hypothesis::evidence::{cite, f2};
use crate::hypothesis::{CMD_FAULTS_RESET, cmd_stop};
use crate::report::{Category, fmt_duration};

pub struct MemoryLeak;

/// Least rise (percentage points of the limit) that counts as growth.
const MIN_RISE_PCT: f64 = 5.0;
/// Least goodness of fit of the straight line.
const MIN_R2: f64 = 0.6;

/// A task's sustained growth.
struct Growth<'a> {
    series: &'a SeriesAnalysis,
    trend: Trend,
    from: usize,
    rise: f64,
}

/// Sustained growth of `s`: from its change onset if it changed upward,
/// else over the whole range (a slow leak may have no clean change point);
/// failing that, over its trailing rise (a leak that began after an earlier,
/// larger step — a cache filled at start-up — which the change point finds
/// first).
fn growth<'a>(cx: &Context<'_>, s: &'a SeriesAnalysis) -> Option<Growth<'a>> {
    let f = cx.f;
    let from = s.changed(true).map_or(f.base_from, |c| c.onset);
    growth_from(cx, s, from)
        .or_else(|| growth_from(cx, s, trailing_rise(&s.values, cx.buckets_per_period())))
}

fn growth_from<'a>(cx: &Context<'_>, s: &'a SeriesAnalysis, from: usize) -> Option<Growth<'a>> {
    let f = cx.f;
    let from = from.min(f.grid.len.saturating_sub(4));
    let tr = s.trend_from(f.grid, from)?;
    let span_s = (f.grid.end_ms() - f.grid.time(from)) as f64 / 1000.0;
    let rise = tr.slope_per_s * span_s;
    // Growth must still be going on in the incident, not only long before it.
    let inc = s.trend_from(f.grid, f.split.min(f.grid.len.saturating_sub(4)));
    let still = inc.is_none_or(|t| t.slope_per_s > 0.0);
    (tr.slope_per_s > 0.0 && tr.r2 >= MIN_R2 && rise >= MIN_RISE_PCT && still).then_some(Growth {
        series: s,
        trend: tr,
        from,
        rise,
    })
}

/// Where the rise that ends the series began: walking back from the last
/// value while each value is higher than the one an alarm period
/// (`per_period` buckets) before it by at least [`TRAILING_RISE_SHARE`] of
/// the last period's rise. A leak that grows in steps rises over every period
/// even when two buckets in a row are equal; a flat series stops at once,
/// and so does a plateau that only drifts (a process's memory creeps up by a
/// few kilobytes a request: higher, but not the leak's rise).
fn trailing_rise(values: &[Option<f64>], per_period: usize) -> usize {
    let pts: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let Some(mut i) = pts.len().checked_sub(1) else {
        return values.len();
    };
    let k = per_period.max(1);
    if i < k {
        return pts[i].0;
    }
    let least = (pts[i].1 - pts[i - k].1) * TRAILING_RISE_SHARE;
    if least <= 0.0 {
        return pts[i].0;
    }
    while i >= k && pts[i].1 - pts[i - k].1 >= least {
        i -= 1;
    }
    pts[i].0
}

/// The share of the last period's rise a period must rise by to count as
/// part of the same trailing rise.
const TRAILING_RISE_SHARE: f64 = 0.25;

impl Rule for MemoryLeak {
    fn category(&self) -> Category {
        Category::MemoryLeak
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let tasks: Vec<&SeriesAnalysis> = f
            .metrics
            .by_name(ns::ECS, "MemoryUtilization")
            .filter(|s| s.key.dimension != SERVICE_DIMENSION)
            .collect();
        let leaking: Vec<Growth<'_>> = tasks.iter().filter_map(|s| growth(cx, s)).collect();
        let svc = cx.svc(ns::ECS, "MemoryUtilization");
        let svc_growth = svc.and_then(|s| growth(cx, s));
        if leaking.is_empty() && svc_growth.is_none() && cx.oom_tasks.is_empty() {
            return Vec::new();
        }
        let mut entity: Vec<String> = leaking
            .iter()
            .map(|g| g.series.key.dimension.clone())
            .collect();
        for t in &cx.oom_tasks {
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
        c.explains_tasks.clone_from(&entity);
        let per_period_s = cx.period_s();
        let mut onset = None;
        let mut first = true;
        let mut good_fit = None;
        for g in svc_growth.iter().chain(leaking.iter()) {
            if let Some(id) = cx.ev.change(f, g.series, true) {
                c.support(id, 0.0);
            }
            let until = g.trend.ms_until(100.0);
            let slope_pp = g.trend.slope_per_s * per_period_s;
            let id = cx.ev.add(
                &format!("trend:{}", g.series.key),
                "trend",
                format!(
                    "Memory of {} grows steadily: +{} points since {} at {} points per alarm period (r² {:.2}); at this rate it reaches the limit {}",
                    if g.series.key.dimension == SERVICE_DIMENSION { "the service".to_owned() } else { format!("task {}", g.series.key.dimension) },
                    f2(g.rise),
                    crate::report::fmt_time(f.grid.time(g.from)),
                    f2(slope_pp),
                    g.trend.r2,
                    match until {
                        Some(0) => "now".to_owned(),
                        Some(ms) => format!(
                            "in {} ({:.0} periods)",
                            fmt_duration(ms),
                            ms as f64 / f.period_ms as f64
                        ),
                        None => "never".to_owned(),
                    }
                ),
                Some(f.alarm_at),
                json!({"series": g.series.key, "slope_per_s": g.trend.slope_per_s, "slope_per_period": slope_pp,
                       "r2": g.trend.r2, "rise": g.rise, "ms_until_limit": until}),
            );
            c.support(id.clone(), if first { 0.3 } else { 0.0 });
            first = false;
            if g.trend.r2 >= 0.8 && good_fit.is_none() {
                good_fit = Some(id);
            }
            let t = f.grid.time(g.from);
            onset = Some(onset.map_or(t, |o: i64| o.min(t)));
        }
        if let Some(id) = good_fit {
            // A clean straight line: steady growth, not noise.
            c.support(id, 0.15);
        }
        c.onset_ms = onset;
        if !cx.oom_tasks.is_empty() {
            let id = cx.ev.add(
                "oom",
                "task_event",
                format!(
                    "Tasks OOM-killed during the incident: {}",
                    cx.oom_tasks.join(", ")
                ),
                f.tasks
                    .first_since(f.incident.start_ms, |t| t.oom_kills.iter().copied()),
                json!({"tasks": cx.oom_tasks}),
            );
            c.support(
                id,
                if leaking.is_empty() && svc_growth.is_none() {
                    0.3
                } else {
                    0.25
                },
            );
        }
        if cx.alarm_metric == "MemoryUtilization" {
            c.support(cx.alarm_ev.clone(), 0.15);
        }
        c.statement = format!(
            "Memory grows without bound in {}{}",
            c.entity.as_deref().unwrap_or("the service"),
            cite(&c.pro_ids())
        );
        for t in entity.iter().filter(|t| !cx.oom_tasks.contains(t)).take(2) {
            c.mitigation.push((
                cmd_stop(t),
                format!("replace task {t} before it is OOM-killed"),
            ));
        }
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "clear an injected memory leak".into(),
        ));
        vec![c]
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, rivals: &[Cand]) {
        // More requests need more memory: a surge that came first explains a rise.
        if let Some(s) = rivals.iter().find(|r| {
            r.category == Category::TrafficSurge
                && r.onset_ms.zip(c.onset_ms).is_some_and(|(s, m)| s <= m)
        }) && let Some(id) = s.pro.first()
        {
            c.oppose(id.0.clone(), 0.1);
        }
        let _ = cx;
    }
}

#[cfg(test)]
mod tests {
    use super::trailing_rise;

    #[test]
    fn the_trailing_rise_starts_after_an_earlier_step_and_its_plateau() {
        // Start-up cache (1 → 76), flat, then a leak in steps (two buckets a period).
        let v: Vec<Option<f64>> = [
            1.0, 1.0, 26.0, 76.0, 76.0, 76.0, 76.0, 76.0, 77.6, 77.6, 80.2, 82.3, 82.3, 84.9,
        ]
        .iter()
        .map(|x| Some(*x))
        .collect();
        assert_eq!(
            trailing_rise(&v, 2),
            7,
            "the rise begins at the last plateau value"
        );
        // The same with a plateau that creeps up a little every bucket (what a
        // live process's memory does): the rise begins where it left the
        // plateau (77.5, a period above the plateau by 0.5 points, against
        // the leak's 4.7 a period), not at the start-up step.
        let creeping: Vec<Option<f64>> = [
            1.7, 1.9, 10.3, 68.6, 77.0, 77.0004, 77.0008, 77.0012, 77.0016, 77.0020, 77.5, 79.6,
            82.2, 84.3, 86.9,
        ]
        .iter()
        .map(|x| Some(*x))
        .collect();
        assert_eq!(trailing_rise(&creeping, 2), 10);
        // A flat series has no trailing rise: it starts at its last value.
        let flat = vec![Some(76.0); 10];
        assert_eq!(trailing_rise(&flat, 2), 9);
        // Missing buckets are skipped; an empty series has none.
        let gaps = vec![Some(1.0), None, Some(2.0), None, Some(3.0), Some(4.0)];
        assert_eq!(trailing_rise(&gaps, 1), 0);
        assert_eq!(trailing_rise(&[None, None], 2), 2);
    }
}
