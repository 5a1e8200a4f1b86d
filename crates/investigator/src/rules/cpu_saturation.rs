//! **cpu_saturation**: the tasks' CPU is at its limit.
//!
//! Detects: a significant rise of the service's CPU (percent of the task's
//! CPU units, so the limit is 100 %) to a level where requests queue — on
//! average half the limit, or 80 % at peak. Every route slowing down at
//! once strengthens it (a shared resource, not one route's dependency).
//!
//! Why: saturation is a shared cause: it slows every route and makes health
//! checks time out. It steps back when a traffic surge began first (the
//! surge is the cause, saturation its effect). Its peak counts from where
//! the rise began when that was shortly (a few alarm periods) before the
//! incident window: tasks starved long enough fail their health checks and
//! leave rotation (or are replaced), and their CPU falls before the
//! unhealthy-targets alarm fires; the saturation is still the cause. Over
//! the whole range CPU then rose and fell, which no single level shift fits,
//! so the rise is read up to the end of the level it reached (an episode),
//! whichever side of the window's start it began on.
//!
//! Example: a busy thread per task takes CPU from 20 % to 95 %; p99 latency
//! of every route doubles; health checks start failing → cpu_saturation
//! `service`, with health_check_failure below it as a symptom.

use demo_model::events::{SERVICE_DIMENSION, ns};
use serde_json::json;

use super::{Cand, Context, Rule};
use crate::analyze::metrics::SeriesAnalysis;
use crate::analyze::series::{ChangePoint, change_point_rel, median};
use crate::hypothesis::evidence::{cite, f2};
use crate::hypothesis::{CMD_FAULTS_RESET, cmd_scale};
use crate::report::Category;

pub struct CpuSaturation;

/// Mean CPU (percent of the limit) from which requests queue.
const BUSY_MEAN: f64 = 50.0;
/// Peak CPU that counts as at the limit.
const AT_LIMIT: f64 = 80.0;
/// How many alarm periods before the incident's onset saturation may begin
/// and still count as its cause.
const LEAD_PERIODS: usize = 5;

/// The first bucket a rise may begin at and still count as the incident's
/// cause: [`LEAD_PERIODS`] alarm periods before its window.
fn lead_start(cx: &Context<'_>) -> usize {
    cx.f.split
        .saturating_sub(LEAD_PERIODS * cx.buckets_per_period())
}

/// Whether bucket `onset` lies before the incident window by at most
/// [`LEAD_PERIODS`] alarm periods.
fn shortly_before(cx: &Context<'_>, onset: usize) -> bool {
    (lead_start(cx)..cx.f.split).contains(&onset)
}

/// A saturation episode: a significant rise of `s` that began shortly before
/// the incident window or inside it, read up to the end of the level it
/// reached ([`plateau_end`]), for a series that over the whole range rose and
/// fell (the starved tasks left rotation or were replaced), so that no single
/// level shift fits it.
fn episode(cx: &Context<'_>, s: &SeriesAnalysis) -> Option<ChangePoint> {
    let lead = lead_start(cx);
    let end = plateau_end(&s.values, lead, cx.f.grid.len);
    let cp = change_point_rel(&s.values[..end], 5.0, 0.0)?;
    (cp.significant && cp.after > cp.before && cp.onset >= lead).then_some(cp)
}

/// Where the highest level `values` reached in `from..len` ends: the first
/// bucket after its peak whose value falls below half-way between the
/// series' usual level before the peak (its median) and the peak; `len` when
/// it never does. A saturation that began shortly before the incident window
/// (or in it) runs on until the starved tasks leave; reading the rise up to
/// there sees it however the window's start falls against it (one bucket
/// before the rise or one after), and leaves out the fall that follows, which
/// no single level shift fits. `from` when there is no value in `from..len`.
fn plateau_end(values: &[Option<f64>], from: usize, len: usize) -> usize {
    let len = len.min(values.len());
    let from = from.min(len);
    let Some((peak_at, peak)) = values[from..len]
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (from + i, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return from;
    };
    let mut before: Vec<f64> = values[..peak_at].iter().flatten().copied().collect();
    let half_way = (median(&mut before) + peak) / 2.0;
    values[peak_at..len]
        .iter()
        .position(|v| v.is_some_and(|v| v < half_way))
        .map_or(len, |i| peak_at + i)
}

/// Where the saturation's peak is read from: the rise's onset when it began
/// shortly before the incident window (a cause precedes the symptoms that
/// open the window: starved tasks fail their health checks, leave rotation
/// and cool down before unhealthy-targets fires), else the window itself.
fn peak_from(cx: &Context<'_>, onset: usize) -> usize {
    if shortly_before(cx, onset) {
        onset
    } else {
        cx.f.split
    }
}

impl Rule for CpuSaturation {
    fn category(&self) -> Category {
        Category::CpuSaturation
    }

    fn gather(&self, cx: &mut Context<'_>) -> Vec<Cand> {
        let f = cx.f;
        let (len, s0) = (f.grid.len, f.split);
        let Some(s) = cx.svc(ns::ECS, "CPUUtilization") else {
            return Vec::new();
        };
        // The series' own change, or — when the saturation ended as the tasks
        // left rotation, so over the whole range CPU rose and fell and no
        // single shift stands out — the episode's rise.
        let (cp, episode) = match s.changed(true).copied() {
            Some(cp) => (cp, false),
            None => match episode(cx, s) {
                Some(cp) => (cp, true),
                None => return Vec::new(),
            },
        };
        let from = peak_from(cx, cp.onset);
        let inc_max = s.max(from, len).unwrap_or(cp.after);
        if cp.after < BUSY_MEAN && inc_max < AT_LIMIT {
            return Vec::new();
        }
        // The tasks reporting in the window, hot over the span the saturation
        // is read from (from its rise when that began shortly before the
        // window): a starved task replaced part-way through the window is as
        // hot as the others were.
        let (hot, cool): (Vec<&SeriesAnalysis>, Vec<&SeriesAnalysis>) = f
            .metrics
            .by_name(ns::ECS, "CPUUtilization")
            .filter(|t| t.key.dimension != SERVICE_DIMENSION && t.mean(s0, len).is_some())
            .partition(|t| t.mean(from, len).is_some_and(|m| m >= 70.0));
        // The fleet the saturation hit: the hot tasks and every task already
        // running when it began. A cool task started after the onset (say a
        // replacement for one that failed its health checks) was not there to
        // saturate, so it does not make the hot ones a minority.
        let all_tasks = hot.len()
            + cool
                .iter()
                .filter(|t| t.values.iter().take(cp.onset + 1).any(Option::is_some))
                .count();
        let hot: Vec<String> = hot.iter().map(|t| t.key.dimension.clone()).collect();
        // A minority of hot tasks names them; the whole fleet is the service.
        let entity = if hot.is_empty() || hot.len() == all_tasks {
            SERVICE_DIMENSION.to_owned()
        } else {
            hot.join(",")
        };
        let mut c = Cand::new(Category::CpuSaturation, Some(entity));
        c.onset_ms = Some(f.grid.time(cp.onset));
        c.explains_tasks = hot;
        if let Some(id) = cx.ev.change(f, s, true) {
            c.support(id, 0.3);
        } else if episode {
            let id = cx.ev.add(
                &format!("episode:{}", s.key),
                "metric_change",
                format!(
                    "{}/{} [{}] rose at {}: {}% → {}%{}, then fell as the tasks stopped serving",
                    s.key.namespace,
                    s.key.name,
                    s.key.dimension,
                    crate::report::fmt_time(f.grid.time(cp.onset)),
                    f2(cp.before),
                    f2(cp.after),
                    if cp.onset < s0 {
                        " before the incident began"
                    } else {
                        " as the incident began"
                    }
                ),
                Some(f.grid.time(cp.onset)),
                json!({"series": s.key, "before": cp.before, "after": cp.after}),
            );
            c.support(id, 0.3);
        }
        if inc_max >= AT_LIMIT {
            let id = cx.ev.add(
                "cpu-at-limit",
                "metric_change",
                format!(
                    "CPU reached {}% of the tasks' limit in the incident",
                    f2(inc_max)
                ),
                Some(c.onset_ms.unwrap_or(f.onset_ms)),
                json!({"peak": inc_max}),
            );
            c.support(id, 0.15);
        }
        if cx.alarm_metric == "CPUUtilization" {
            c.support(cx.alarm_ev.clone(), 0.2);
        }
        // Every route slower at once: a shared resource.
        let slowed: Vec<&str> = f
            .routes
            .iter()
            .filter(|r| r.route != f.health_path && r.incident_rps > 0.0)
            .filter(|r| super::slow_dependency::slowed(r))
            .map(|r| r.route.as_str())
            .collect();
        let served = f
            .routes
            .iter()
            .filter(|r| r.route != f.health_path && r.incident_rps > 0.0)
            .count();
        if served >= 2 && slowed.len() == served {
            let id = cx.ev.add(
                "all-routes-slower",
                "route",
                format!(
                    "Every route got slower at once ({}): a shared resource, not one dependency",
                    slowed.join(", ")
                ),
                Some(f.incident.start_ms),
                json!({"routes": slowed}),
            );
            c.support(id, 0.1);
        } else if let Some(id) = cx.change(ns::ALB, "TargetResponseTime", true) {
            c.support(id, 0.05);
        }
        c.statement = format!(
            "CPU is saturated ({}% at peak) in {}{}",
            f2(inc_max),
            c.entity.as_deref().unwrap_or("the service"),
            cite(&c.pro_ids())
        );
        c.mitigation.push((
            cmd_scale(cx.running() * 2),
            "add capacity while the cause is found".into(),
        ));
        c.mitigation.push((
            CMD_FAULTS_RESET.to_owned(),
            "stop an injected CPU spike".into(),
        ));
        vec![c]
    }

    fn against(&self, cx: &mut Context<'_>, c: &mut Cand, rivals: &[Cand]) {
        // A surge that began first is the cause; saturation its effect.
        let period = cx.f.period_ms;
        if let Some(s) = rivals.iter().find(|r| {
            r.category == Category::TrafficSurge
                && r.onset_ms
                    .zip(c.onset_ms)
                    .is_some_and(|(s, cpu)| s <= cpu + period)
        }) && let Some(id) = s.pro.first()
        {
            c.oppose(id.0.clone(), 0.25);
        }
        // Health checks that began failing after saturation are its effect.
        if let Some(h) = rivals.iter().find(|r| {
            r.category == Category::HealthCheckFailure
                && r.onset_ms.zip(c.onset_ms).is_some_and(|(h, cpu)| h >= cpu)
        }) && let Some(id) = h.pro.first()
        {
            c.support(id.0.clone(), 0.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plateau_end;

    fn series(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|x| Some(*x)).collect()
    }

    #[test]
    fn the_plateau_ends_where_the_value_falls_half_way_back_from_its_peak() {
        // Idle, saturated from one bucket before the window (bucket 9) on into
        // it, then down as the starved tasks leave (the time-scale-20 run of
        // cpu-starved-health-checks: before the window only one saturated
        // bucket, and the fall after it hid the rise from a single shift).
        let v = series(&[
            1.3, 4.0, 2.7, 2.7, 4.0, 5.3, 1.3, 4.0, 94.0, 98.6, 98.7, 99.3, 65.7, 12.5, 0.0,
        ]);
        assert_eq!(
            plateau_end(&v, 0, v.len()),
            13,
            "through 65.7 (above half-way, 51.6), not 12.5"
        );
        // The same from any start before the peak, and with the rise one
        // bucket later (inside a window starting at 8).
        assert_eq!(plateau_end(&v, 5, v.len()), 13);
        let mut later = v.clone();
        later[8] = Some(3.0);
        assert_eq!(plateau_end(&later, 8, v.len()), 13);
        // Missing buckets neither end the plateau nor count in it.
        let mut gaps = v.clone();
        gaps[12] = None;
        assert_eq!(plateau_end(&gaps, 0, v.len()), 13);
        // Still high at the end: the plateau runs to `len`.
        let high = series(&[2.0, 3.0, 2.0, 3.0, 90.0, 95.0, 97.0]);
        assert_eq!(plateau_end(&high, 2, 7), 7);
        assert_eq!(plateau_end(&high, 2, 6), 6, "never past len");
        // Nothing to read from `from`: the prefix ends there.
        assert_eq!(plateau_end(&[Some(1.0), None, None], 1, 3), 1);
    }
}
