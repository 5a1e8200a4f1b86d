//! Time-series statistics the analyzers share: bucketing samples on a fixed
//! grid, finding the one change point of a series (the largest standardised
//! mean shift, then walked back to where the deviation began) and fitting a
//! linear trend to extrapolate (time until a limit).
//!
//! Everything is deterministic and uses only the numbers given: no clock, no
//! randomness, so the same store gives the same report.

use demo_model::events::{EpochMs, MetricSample};
use serde::Serialize;

/// How samples in one bucket are reduced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    /// Sum of values per second of bucket (counts → rates).
    Rate,
    /// Mean of values, weighted by `count`.
    Mean,
    Max,
    /// 99th percentile of values weighted by `count` (histogram samples).
    P99,
}

/// A fixed grid over `[start_ms, start_ms + len * bucket_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Grid {
    pub start_ms: EpochMs,
    pub bucket_ms: i64,
    pub len: usize,
}

impl Grid {
    pub fn index(&self, ts: EpochMs) -> Option<usize> {
        if ts < self.start_ms {
            return None;
        }
        let i = ((ts - self.start_ms) / self.bucket_ms) as usize;
        (i < self.len).then_some(i)
    }
    pub fn time(&self, i: usize) -> EpochMs {
        self.start_ms + i as i64 * self.bucket_ms
    }
    pub fn end_ms(&self) -> EpochMs {
        self.time(self.len)
    }
}

/// Reduces samples onto the grid; buckets without samples are `None`, or 0
/// for [`Agg::Rate`] from bucket `zero_from` on (counters are emitted as 0
/// when nothing happened, but a series that first appears mid-window still
/// means "zero before" once the service was reporting at all).
pub fn bucketize(
    samples: &[MetricSample],
    grid: Grid,
    agg: Agg,
    zero_from: Option<usize>,
) -> Vec<Option<f64>> {
    let mut acc: Vec<Vec<(f64, f64)>> = vec![Vec::new(); grid.len];
    for s in samples {
        if !s.value.is_finite() || !s.count.is_finite() || s.count <= 0.0 {
            continue;
        }
        if let Some(i) = grid.index(s.ts_ms) {
            acc[i].push((s.value, s.count));
        }
    }
    let secs = grid.bucket_ms as f64 / 1000.0;
    acc.into_iter()
        .enumerate()
        .map(|(i, b)| {
            if b.is_empty() {
                return match (agg, zero_from) {
                    (Agg::Rate, Some(z)) if i >= z => Some(0.0),
                    _ => None,
                };
            }
            Some(match agg {
                Agg::Rate => b.iter().map(|(v, c)| v * c).sum::<f64>() / secs,
                Agg::Mean => {
                    let n: f64 = b.iter().map(|(_, c)| c).sum();
                    b.iter().map(|(v, c)| v * c).sum::<f64>() / n
                }
                Agg::Max => b.iter().map(|(v, _)| *v).fold(f64::NEG_INFINITY, f64::max),
                Agg::P99 => {
                    let mut b = b;
                    b.sort_by(|x, y| x.0.total_cmp(&y.0));
                    let n: f64 = b.iter().map(|(_, c)| c).sum();
                    let target = 0.99 * n;
                    let mut cum = 0.0;
                    let mut out = b.last().map_or(0.0, |x| x.0);
                    for (v, c) in &b {
                        cum += c;
                        if cum >= target - 1e-9 {
                            out = *v;
                            break;
                        }
                    }
                    out
                }
            })
        })
        .collect()
}

/// Where a series changed level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChangePoint {
    /// Bucket where the deviation began (after walking back from `split`).
    pub onset: usize,
    /// Bucket of the largest standardised mean shift.
    pub split: usize,
    /// Mean before `onset` and from `split` on.
    pub before: f64,
    pub after: f64,
    /// Robust spread of the values before `onset`.
    pub before_sd: f64,
    /// Standardised shift (t-like statistic).
    pub score: f64,
    /// Passes the size, relative-size and score tests.
    pub significant: bool,
}

impl ChangePoint {
    pub fn delta(&self) -> f64 {
        self.after - self.before
    }
    /// Relative change, `after / before` (∞ from a zero baseline).
    pub fn ratio(&self) -> f64 {
        if self.before.abs() < 1e-12 {
            if self.after.abs() < 1e-12 {
                1.0
            } else {
                f64::INFINITY
            }
        } else {
            self.after / self.before
        }
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The single most significant level shift of `values` (missing buckets
/// skipped). `min_abs` is the smallest shift that matters for this metric
/// (e.g. 5 percentage points of CPU); smaller shifts are never significant,
/// however clean. A shift must also be 30 % of the level before it.
pub fn change_point(values: &[Option<f64>], min_abs: f64) -> Option<ChangePoint> {
    change_point_rel(values, min_abs, 0.3)
}

/// [`change_point`] with the relative test `min_rel` (a fraction of the
/// level before; 0 for metrics already in fractions of a limit, such as
/// CPU or memory utilisation, where 65 % → 81 % matters as much as
/// 20 % → 36 %).
pub fn change_point_rel(values: &[Option<f64>], min_abs: f64, min_rel: f64) -> Option<ChangePoint> {
    let pts: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let n = pts.len();
    if n < 5 {
        return None;
    }
    let mut pre = vec![(0.0, 0.0); n + 1];
    for (i, (_, v)) in pts.iter().enumerate() {
        pre[i + 1] = (pre[i].0 + v, pre[i].1 + v * v);
    }
    let seg = |a: usize, b: usize| {
        let k = (b - a) as f64;
        let s = pre[b].0 - pre[a].0;
        let ss = pre[b].1 - pre[a].1;
        let mean = s / k;
        (mean, (ss - s * mean).max(0.0))
    };
    let mut best: Option<(usize, f64)> = None;
    for k in 3..=n - 2 {
        let (mb, sb) = seg(0, k);
        let (ma, sa) = seg(k, n);
        let var = (sb + sa) / (n - 2) as f64;
        let floor = (0.02 * mb.abs().max(ma.abs()))
            .max(min_abs / 10.0)
            .max(1e-9);
        let sd = var.sqrt().max(floor);
        let t = (ma - mb).abs() / (sd * (1.0 / k as f64 + 1.0 / (n - k) as f64).sqrt());
        if best.is_none_or(|(_, bt)| t > bt) {
            best = Some((k, t));
        }
    }
    let (k, score) = best?;
    let (after, _) = seg(k, n);
    // Walk back from the split while values still deviate from the robust
    // baseline in the direction of the shift: the onset of a ramp.
    let mut base: Vec<f64> = pts[..k].iter().map(|p| p.1).collect();
    let m = median(&mut base.clone());
    let mut dev: Vec<f64> = base.iter_mut().map(|v| (*v - m).abs()).collect();
    let mad = median(&mut dev) * 1.4826;
    let sd = mad.max(0.02 * m.abs()).max(min_abs / 10.0);
    let up = after > m;
    let tol = (3.0 * sd).max(min_abs / 2.0);
    let mut onset = k;
    while onset > 1 {
        let v = pts[onset - 1].1;
        let deviates = if up { v - m > tol } else { m - v > tol };
        if !deviates {
            break;
        }
        onset -= 1;
    }
    let (before, _) = seg(0, onset.max(1));
    let delta = (after - before).abs();
    let relative = if before.abs() < 1e-12 {
        f64::INFINITY
    } else {
        delta / before.abs()
    };
    let significant = delta >= min_abs && relative >= min_rel && score >= 6.0 && delta >= 3.0 * sd;
    Some(ChangePoint {
        onset: pts[onset].0,
        split: pts[k].0,
        before,
        after,
        before_sd: sd,
        score,
        significant,
    })
}

/// A least-squares line through the values from bucket `from` on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// Units per second.
    pub slope_per_s: f64,
    pub r2: f64,
    /// Fitted value at the end of the last bucket.
    pub last: f64,
}

impl Trend {
    /// Milliseconds from the end of the data until the line reaches `limit`.
    pub fn ms_until(&self, limit: f64) -> Option<i64> {
        if self.slope_per_s <= 0.0 || self.last >= limit {
            return (self.last >= limit).then_some(0);
        }
        Some(((limit - self.last) / self.slope_per_s * 1000.0) as i64)
    }
}

pub fn trend(values: &[Option<f64>], grid: Grid, from: usize) -> Option<Trend> {
    let pts: Vec<(f64, f64)> = values
        .iter()
        .enumerate()
        .skip(from)
        .filter_map(|(i, v)| v.map(|v| ((grid.time(i) + grid.bucket_ms / 2) as f64 / 1000.0, v)))
        .collect();
    if pts.len() < 4 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy <= 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    let end_s = grid.end_ms() as f64 / 1000.0;
    Some(Trend {
        slope_per_s: slope,
        r2,
        last: my + slope * (end_s - mx),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().copied().map(Some).collect()
    }

    #[test]
    fn a_step_is_found_where_it_happens() {
        let mut v = vec![1.0; 30];
        v.extend(vec![8.0; 10]);
        // A little noise so the variance is not zero.
        for (i, x) in v.iter_mut().enumerate() {
            *x += if i % 2 == 0 { 0.1 } else { -0.1 };
        }
        let cp = change_point(&vals(&v), 0.5).unwrap();
        assert!(cp.significant);
        assert_eq!(cp.onset, 30);
        assert!((cp.before - 1.0).abs() < 0.1 && (cp.after - 8.0).abs() < 0.1);
    }

    #[test]
    fn a_ramp_onset_is_walked_back_to_its_start() {
        let mut v = vec![20.0; 40];
        for i in 0..20 {
            v.push(20.0 + 3.0 * (i + 1) as f64);
        }
        let cp = change_point(&vals(&v), 5.0).unwrap();
        assert!(cp.significant);
        assert!(cp.onset <= 42, "onset {}", cp.onset);
        assert!(cp.split > cp.onset);
        let g = Grid {
            start_ms: 0,
            bucket_ms: 1000,
            len: v.len(),
        };
        let t = trend(&vals(&v), g, cp.onset).unwrap();
        assert!((t.slope_per_s - 3.0).abs() < 0.01 && t.r2 > 0.99);
        // 80 at the end, 3/s: 100 is 6.67 s away.
        let until = t.ms_until(100.0).unwrap();
        assert!((6_000..7_500).contains(&until), "{until}");
    }

    #[test]
    fn noise_and_tiny_shifts_are_not_significant() {
        let v: Vec<f64> = (0..60)
            .map(|i| 10.0 + ((i * 7919) % 13) as f64 * 0.3)
            .collect();
        let cp = change_point(&vals(&v), 1.0).unwrap();
        assert!(!cp.significant, "{cp:?}");
        let mut v = vec![50.0; 40];
        v.extend(vec![52.0; 10]);
        assert!(!change_point(&vals(&v), 5.0).unwrap().significant);
    }

    #[test]
    fn a_slow_rise_of_a_utilisation_is_a_change_without_the_relative_test() {
        // 65 % → 81 % over the last half: +25 % relative only.
        let mut v: Vec<f64> = (0..60).map(|i| 65.0 + (i % 3) as f64 * 0.2).collect();
        v.extend((0..60).map(|i| 65.0 + 16.0 * (i + 1) as f64 / 60.0));
        assert!(!change_point(&vals(&v), 5.0).unwrap().significant);
        let cp = change_point_rel(&vals(&v), 5.0, 0.0).unwrap();
        assert!(cp.significant, "{cp:?}");
        assert!((55..=80).contains(&cp.onset), "{cp:?}");
    }

    #[test]
    fn rates_fill_zero_and_p99_uses_counts() {
        let g = Grid {
            start_ms: 0,
            bucket_ms: 2000,
            len: 3,
        };
        let s = |ts, v, c| MetricSample {
            count: c,
            ..MetricSample::new(ts, "n", "m", "service", v)
        };
        let b = bucketize(&[s(0, 4.0, 1.0), s(1000, 2.0, 1.0)], g, Agg::Rate, Some(0));
        assert_eq!(b, vec![Some(3.0), Some(0.0), Some(0.0)]);
        let b = bucketize(
            &[s(0, 0.1, 99.0), s(10, 5.0, 1.0), s(2500, 0.2, 1.0)],
            g,
            Agg::P99,
            None,
        );
        assert_eq!(b, vec![Some(0.1), Some(0.2), None]);
        let b = bucketize(&[s(0, 0.1, 98.0), s(10, 5.0, 2.0)], g, Agg::P99, None);
        assert_eq!(b[0], Some(5.0));
    }
}
