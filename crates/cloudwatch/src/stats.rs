//! Metric statistics as CloudWatch computes them: raw samples are grouped into
//! periods aligned to the Unix epoch (a 60 s period always starts on a whole
//! minute) and each period is reduced to one datapoint with a
//! [`Statistic`](demo_model::Statistic). Alarms and graphs both consume these
//! datapoints, so they live apart from the alarm logic.
//!
//! **Percentiles** use the weighted *nearest-rank* method: sort the values,
//! let `n` be the total sample count and take the smallest value whose
//! cumulative count reaches `p/100 × n` (rank `⌈p·n/100⌉` for whole counts).
//! The result is always a value that was actually observed, like CloudWatch's
//! percentiles on raw data (CloudWatch itself may add up to ~1 % error
//! because it summarises large sets approximately; this is exact).
//!
//! Non-finite values and samples with a count ≤ 0 are ignored, as CloudWatch
//! rejects them at ingestion.

use std::collections::BTreeMap;

use demo_model::Statistic;
use serde::{Deserialize, Serialize};

/// One observation: a value at a time, optionally standing for `count`
/// identical observations (CloudWatch's `Values`/`Counts` form).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
    #[serde(default = "one")]
    pub count: f64,
}

fn one() -> f64 {
    1.0
}

impl Sample {
    /// A single observation.
    pub fn new(timestamp_ms: i64, value: f64) -> Sample {
        Sample {
            timestamp_ms,
            value,
            count: 1.0,
        }
    }

    /// `count` observations of the same value.
    pub fn with_count(timestamp_ms: i64, value: f64, count: f64) -> Sample {
        Sample {
            timestamp_ms,
            value,
            count,
        }
    }

    fn usable(&self) -> bool {
        self.value.is_finite() && self.count.is_finite() && self.count > 0.0
    }
}

/// One period's statistic: `timestamp_ms` is the period's start, as in
/// CloudWatch's `GetMetricStatistics` output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Datapoint {
    pub timestamp_ms: i64,
    pub value: f64,
    /// How many samples the period held (what CloudWatch reports as `sampleCount`).
    pub sample_count: f64,
}

/// Start of the epoch-aligned period containing `timestamp_ms`.
pub fn period_start(timestamp_ms: i64, period_ms: i64) -> i64 {
    assert!(period_ms > 0, "period must be positive");
    timestamp_ms.div_euclid(period_ms) * period_ms
}

/// The statistic over a set of samples, or `None` when there are none (a
/// missing datapoint, not zero).
pub fn statistic(samples: &[Sample], stat: Statistic) -> Option<f64> {
    let usable: Vec<&Sample> = samples.iter().filter(|s| s.usable()).collect();
    if usable.is_empty() {
        return None;
    }
    let count: f64 = usable.iter().map(|s| s.count).sum();
    let sum: f64 = usable.iter().map(|s| s.value * s.count).sum();
    Some(match stat {
        Statistic::SampleCount => count,
        Statistic::Sum => sum,
        Statistic::Average => sum / count,
        Statistic::Minimum => usable.iter().map(|s| s.value).fold(f64::INFINITY, f64::min),
        Statistic::Maximum => usable
            .iter()
            .map(|s| s.value)
            .fold(f64::NEG_INFINITY, f64::max),
        Statistic::Percentile(p) => nearest_rank(&usable, count, p),
    })
}

fn nearest_rank(samples: &[&Sample], total: f64, p: f64) -> f64 {
    let mut sorted: Vec<(f64, f64)> = samples.iter().map(|s| (s.value, s.count)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // p·n/100 computed in this order stays exact for whole p and n (99·100/100 = 99).
    let target = p * total / 100.0;
    let mut cumulative = 0.0;
    for (value, count) in &sorted {
        cumulative += count;
        if cumulative >= target - 1e-9 * total.max(1.0) {
            return *value;
        }
    }
    sorted.last().map_or(f64::NAN, |v| v.0)
}

/// Per-period datapoints for the periods that start in `[start_ms, end_ms)`,
/// oldest first; periods without samples are absent (missing data).
pub fn period_statistics(
    samples: &[Sample],
    stat: Statistic,
    period_ms: i64,
    start_ms: i64,
    end_ms: i64,
) -> Vec<Datapoint> {
    let mut buckets: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.usable()) {
        let p = period_start(s.timestamp_ms, period_ms);
        if p >= start_ms && p < end_ms {
            buckets.entry(p).or_default().push(*s);
        }
    }
    buckets
        .into_iter()
        .filter_map(|(ts, bucket)| {
            let value = statistic(&bucket, stat)?;
            let sample_count = bucket.iter().map(|s| s.count).sum();
            Some(Datapoint {
                timestamp_ms: ts,
                value,
                sample_count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample::new(i as i64 * 1000, *v))
            .collect()
    }

    #[test]
    fn basic_statistics_hand_computed() {
        let s = samples(&[4.0, 8.0, 15.0, 16.0, 23.0, 42.0]);
        assert_eq!(statistic(&s, Statistic::Sum), Some(108.0));
        assert_eq!(statistic(&s, Statistic::SampleCount), Some(6.0));
        assert_eq!(statistic(&s, Statistic::Average), Some(18.0));
        assert_eq!(statistic(&s, Statistic::Minimum), Some(4.0));
        assert_eq!(statistic(&s, Statistic::Maximum), Some(42.0));
        assert_eq!(statistic(&[], Statistic::Sum), None);
        assert_eq!(statistic(&[], Statistic::SampleCount), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        // 1..=10: p50 -> rank 5, p90 -> rank 9, p91 -> rank ceil(9.1)=10, p99 -> 10, p10 -> 1.
        let s = samples(&[7.0, 3.0, 10.0, 1.0, 9.0, 2.0, 8.0, 4.0, 6.0, 5.0]);
        let p = |q| statistic(&s, Statistic::Percentile(q)).unwrap();
        assert_eq!(p(50.0), 5.0);
        assert_eq!(p(90.0), 9.0);
        assert_eq!(p(91.0), 10.0);
        assert_eq!(p(99.0), 10.0);
        assert_eq!(p(10.0), 1.0);
        assert_eq!(p(0.1), 1.0);
        assert_eq!(p(100.0), 10.0);
        // 100 samples 1..=100: p99 is the 99th value exactly, p99.5 the 100th.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = samples(&hundred);
        assert_eq!(statistic(&s, Statistic::Percentile(99.0)), Some(99.0));
        assert_eq!(statistic(&s, Statistic::Percentile(99.5)), Some(100.0));
        assert_eq!(statistic(&s, Statistic::Percentile(95.0)), Some(95.0));
        // A single sample is every percentile.
        assert_eq!(
            statistic(&samples(&[0.3]), Statistic::Percentile(99.0)),
            Some(0.3)
        );
    }

    #[test]
    fn counts_weight_every_statistic() {
        // 0.1 s x 98 requests, 2.0 s x 2 requests.
        let s = [
            Sample::with_count(0, 0.1, 98.0),
            Sample::with_count(10, 2.0, 2.0),
        ];
        assert_eq!(statistic(&s, Statistic::SampleCount), Some(100.0));
        assert!((statistic(&s, Statistic::Sum).unwrap() - 13.8).abs() < 1e-9);
        assert!((statistic(&s, Statistic::Average).unwrap() - 0.138).abs() < 1e-12);
        assert_eq!(statistic(&s, Statistic::Percentile(98.0)), Some(0.1));
        assert_eq!(statistic(&s, Statistic::Percentile(99.0)), Some(2.0));
        assert_eq!(statistic(&s, Statistic::Maximum), Some(2.0));
    }

    #[test]
    fn unusable_samples_are_ignored() {
        let s = [
            Sample::new(0, f64::NAN),
            Sample::new(0, f64::INFINITY),
            Sample::with_count(0, 5.0, 0.0),
            Sample::new(0, 2.0),
        ];
        assert_eq!(statistic(&s, Statistic::Sum), Some(2.0));
        assert_eq!(statistic(&s[..3], Statistic::Average), None);
    }

    #[test]
    fn periods_align_to_the_epoch() {
        assert_eq!(period_start(119_999, 60_000), 60_000);
        assert_eq!(period_start(120_000, 60_000), 120_000);
        assert_eq!(period_start(-1, 60_000), -60_000);
        // Time-scaled 6 s periods.
        assert_eq!(period_start(13_500, 6_000), 12_000);
    }

    #[test]
    fn period_statistics_group_and_skip_empty_periods() {
        let base = 1_715_508_000_000; // 2024-05-12 10:00:00 UTC, a whole minute
        let s = [
            Sample::new(base + 1_000, 10.0),
            Sample::new(base + 59_999, 20.0),
            Sample::new(base + 60_000, 5.0), // next minute
            // minute 3 has no data
            Sample::new(base + 180_500, 1.0),
            Sample::new(base + 180_600, 3.0),
            Sample::new(base + 240_000, 99.0), // outside the window
        ];
        let got = period_statistics(&s, Statistic::Average, 60_000, base, base + 240_000);
        assert_eq!(
            got,
            vec![
                Datapoint {
                    timestamp_ms: base,
                    value: 15.0,
                    sample_count: 2.0
                },
                Datapoint {
                    timestamp_ms: base + 60_000,
                    value: 5.0,
                    sample_count: 1.0
                },
                Datapoint {
                    timestamp_ms: base + 180_000,
                    value: 2.0,
                    sample_count: 2.0
                },
            ]
        );
        let sums = period_statistics(&s, Statistic::Sum, 60_000, base, base + 240_000);
        assert_eq!(
            sums.iter().map(|d| d.value).collect::<Vec<_>>(),
            vec![30.0, 5.0, 4.0]
        );
    }

    #[test]
    fn samples_deserialise_with_default_count() {
        let s: Sample = serde_json::from_str(r#"{"timestamp_ms":5,"value":1.5}"#).unwrap();
        assert_eq!(s, Sample::new(5, 1.5));
    }
}
