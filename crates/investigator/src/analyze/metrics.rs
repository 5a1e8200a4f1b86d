//! Metric change points: loads every series the investigation cares about
//! (ECS CPU/memory/task count, ALB requests/5xx/latency/target health, the
//! log-derived ErrorCount, per-route App counters), puts them on one grid and
//! finds when each one changed and by how much. Trends (memory towards its
//! limit) are fitted from the change onward.

use std::collections::BTreeMap;

use demo_model::events::{MetricSample, Window, ns};
use serde::Serialize;

use super::series::{Agg, ChangePoint, Grid, Trend, bucketize, change_point_rel, trend};
use crate::sources::{MetricSource, SeriesKey, SourceResult};

/// How a series is reduced and what shift of it matters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kind {
    pub agg: Agg,
    /// Smallest shift that matters, in the metric's catalogue unit: a count
    /// **per alarm period** for [`Agg::Rate`] series (converted to the
    /// per-second values of the grid by [`Kind::min_abs_for`]), percentage
    /// points of the limit for utilisation, seconds for latency (requests
    /// wait as long at any time scale), tasks for counts.
    pub min_abs: f64,
    /// Smallest shift relative to the level before (a fraction); 0 for
    /// utilisation, where a rise from 65 % to 81 % is as real as one from
    /// 20 % to 36 %.
    pub min_rel: f64,
}

impl Kind {
    /// `min_abs` in the unit of the grid's values.
    pub fn min_abs_for(&self, period_ms: i64) -> f64 {
        match self.agg {
            Agg::Rate => self.min_abs / (period_ms.max(1) as f64 / 1000.0),
            _ => self.min_abs,
        }
    }
}

/// The series the analyzers understand; others are ignored.
pub fn kind_of(key: &SeriesKey, error_namespace: &str) -> Option<Kind> {
    let k = |agg, min_abs, min_rel| {
        Some(Kind {
            agg,
            min_abs,
            min_rel,
        })
    };
    match (key.namespace.as_str(), key.name.as_str()) {
        (ns::ECS, "CPUUtilization" | "MemoryUtilization") => k(Agg::Mean, 5.0, 0.0),
        (ns::ECS | ns::CONTAINER_INSIGHTS, "RunningTaskCount") => k(Agg::Mean, 0.5, 0.0),
        (ns::ALB, "RequestCount") => k(Agg::Rate, 5.0, 0.3),
        (ns::ALB, n) if n.starts_with("HTTPCode_") => k(Agg::Rate, 1.0, 0.3),
        (ns::ALB, "TargetResponseTime") => k(Agg::P99, 0.1, 0.3),
        (ns::ALB, "HealthyHostCount") => k(Agg::Mean, 0.5, 0.0),
        (ns::ALB, "UnHealthyHostCount") => k(Agg::Max, 0.5, 0.0),
        (ns::APP, "RequestCount") => k(Agg::Rate, 1.0, 0.3),
        (ns::APP, "LatencyMean") => k(Agg::Mean, 0.05, 0.3),
        (n, "ErrorCount") if n == error_namespace => k(Agg::Rate, 1.0, 0.3),
        _ => None,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesAnalysis {
    pub key: SeriesKey,
    pub kind: Kind,
    pub values: Vec<Option<f64>>,
    pub change: Option<ChangePoint>,
}

impl SeriesAnalysis {
    /// Mean of the present values in buckets `[a, b)`.
    pub fn mean(&self, a: usize, b: usize) -> Option<f64> {
        let v: Vec<f64> = self.values[a.min(self.values.len())..b.min(self.values.len())]
            .iter()
            .flatten()
            .copied()
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
    pub fn max(&self, a: usize, b: usize) -> Option<f64> {
        self.values[a.min(self.values.len())..b.min(self.values.len())]
            .iter()
            .flatten()
            .copied()
            .reduce(f64::max)
    }
    /// A significant change upward (`up`) or downward.
    pub fn changed(&self, up: bool) -> Option<&ChangePoint> {
        self.change
            .as_ref()
            .filter(|c| c.significant && (c.after > c.before) == up)
    }
    pub fn trend_from(&self, grid: Grid, from: usize) -> Option<Trend> {
        trend(&self.values, grid, from)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricAnalysis {
    pub grid: Grid,
    /// First bucket where any series had data.
    pub data_start: Option<usize>,
    pub series: BTreeMap<SeriesKey, SeriesAnalysis>,
    /// Raw samples of the alarm's own metric (for its per-period datapoints).
    pub alarm_samples: Vec<MetricSample>,
}

impl MetricAnalysis {
    pub fn get(&self, namespace: &str, name: &str, dimension: &str) -> Option<&SeriesAnalysis> {
        self.series.get(&SeriesKey::new(namespace, name, dimension))
    }
    /// Series of one metric over all dimensions.
    pub fn by_name<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a SeriesAnalysis> + 'a {
        self.series
            .values()
            .filter(move |s| s.key.namespace == namespace && s.key.name == name)
    }
}

/// Loads and analyses every known series with data in the grid's range.
pub fn analyze(
    src: &dyn MetricSource,
    grid: Grid,
    period_ms: i64,
    error_namespace: &str,
    alarm_key: &SeriesKey,
) -> SourceResult<MetricAnalysis> {
    let w = Window::new(grid.start_ms, grid.end_ms());
    let mut raw: Vec<(SeriesKey, Kind, Vec<MetricSample>)> = Vec::new();
    let mut alarm_samples = Vec::new();
    let wanted = |key: &SeriesKey| kind_of(key, error_namespace).is_some() || key == alarm_key;
    for (key, samples) in src.wanted_samples(w, &wanted)? {
        let kind = kind_of(&key, error_namespace);
        if &key == alarm_key {
            alarm_samples = samples.clone();
        }
        if let Some(kind) = kind {
            raw.push((key, kind, samples));
        }
    }
    let data_start = raw
        .iter()
        .filter_map(|(_, _, s)| s.first().and_then(|s| grid.index(s.ts_ms)))
        .min();
    let series = raw
        .into_iter()
        .map(|(key, kind, samples)| {
            let values = bucketize(&samples, grid, kind.agg, data_start);
            let change = change_point_rel(&values, kind.min_abs_for(period_ms), kind.min_rel);
            (
                key.clone(),
                SeriesAnalysis {
                    key,
                    kind,
                    values,
                    change,
                },
            )
        })
        .collect();
    Ok(MetricAnalysis {
        grid,
        data_start,
        series,
        alarm_samples,
    })
}

/// Splits an App dimension `route=/api/x,status=500` into its labels.
pub fn labels(dimension: &str) -> BTreeMap<&str, &str> {
    dimension
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sources::local_store::LocalStore;
    use demo_model::events::SERVICE_DIMENSION;

    /// A source that reads series by series (`MetricSource::wanted_samples`'s default).
    struct PerSeries<'a>(&'a LocalStore);

    impl MetricSource for PerSeries<'_> {
        fn name(&self) -> &str {
            "per series"
        }
        fn series(&self, w: Window) -> SourceResult<Vec<SeriesKey>> {
            self.0.series(w)
        }
        fn samples(&self, key: &SeriesKey, w: Window) -> SourceResult<Vec<MetricSample>> {
            self.0.samples(key, w)
        }
    }

    #[test]
    fn whole_window_read_gives_the_per_series_analysis() {
        let dir = tempfile::tempdir().unwrap();
        let store = demo_store::Store::open(dir.path()).unwrap();
        let w = store.writer();
        let grid = Grid {
            start_ms: 10_000,
            bucket_ms: 1_000,
            len: 60,
        };
        // Samples around and on the grid's edges, a late one, an unknown
        // series (not read), the alarm's own series (kept raw).
        for (k, t) in (8_000..72_000)
            .step_by(500)
            .chain([30_250, 10_000, 69_999, 70_000])
            .enumerate()
        {
            // Late samples repeat a time with another value: equal times
            // must keep their stored order.
            let step = if t >= 50_000 { 40.0 } else { 10.0 } + k as f64 / 1_000.0;
            for (ns, name, dim, v) in [
                (
                    ns::ECS,
                    "CPUUtilization",
                    SERVICE_DIMENSION,
                    step + (t % 7) as f64,
                ),
                (ns::ALB, "RequestCount", SERVICE_DIMENSION, 100.0 + step),
                (ns::APP, "RequestCount", "route=/a,status=500", step),
                ("Custom", "Unknown", "x", 1.0),
                ("Custom", "AlarmOnly", SERVICE_DIMENSION, step),
            ] {
                w.metric(MetricSample::new(t, ns, name, dim, v));
            }
        }
        w.flush();
        let src = LocalStore::open(dir.path()).unwrap();
        let alarm = SeriesKey::new("Custom", "AlarmOnly", SERVICE_DIMENSION);
        let dump = |m: &MetricAnalysis| format!("{m:?}");
        let whole = analyze(&src, grid, 2_000, "DevOpsAgentDemo", &alarm).unwrap();
        let per_series = analyze(&PerSeries(&src), grid, 2_000, "DevOpsAgentDemo", &alarm).unwrap();
        assert_eq!(whole.series.len(), 3);
        assert!(!whole.alarm_samples.is_empty());
        assert!(whole.series.values().any(|s| s.change.is_some()));
        assert_eq!(dump(&whole), dump(&per_series));
        // Read in parts on several threads, and on the caller's alone.
        for threads in [1, 2, 3] {
            let src = LocalStore::open(dir.path())
                .unwrap()
                .with_read_threads(threads);
            let m = analyze(&src, grid, 2_000, "DevOpsAgentDemo", &alarm).unwrap();
            assert_eq!(dump(&m), dump(&per_series), "{threads} threads");
        }
    }

    #[test]
    fn app_dimensions_split_into_labels() {
        let l = labels("route=/api/products/{id},status=500");
        assert_eq!(l["route"], "/api/products/{id}");
        assert_eq!(l["status"], "500");
    }
}
