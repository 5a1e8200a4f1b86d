//! Metric samples from CloudWatch: `ListMetrics` over the configured
//! namespaces (kept when their dimensions are this service's), then
//! `GetMetricData` per series at `metric_period_s`.
//!
//! One sample per returned period: value = Sum / SampleCount, count =
//! SampleCount, which keeps sums (rates) and means exact; a percentile
//! series (`TargetResponseTime`) is read as its p99 directly, since a
//! histogram cannot be rebuilt from sum and count.
//!
//! The investigator names series by one dimension string: `service` for the
//! service or target group, a task id (`TaskId` dimension), or
//! `route=...,status=...` (the `route`/`status` dimensions of the per-route
//! metrics). [`dimension_key`] and [`cloudwatch_dimensions`] map between the
//! two, and the exporter uses the same mapping.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use demo_model::events::{MetricSample, SERVICE_DIMENSION, Window};
use investigator::sources::{MetricSource, SeriesKey, SourceResult};
use tokio::runtime::Handle;

use super::{Gaps, dt, ms, unavailable};
use crate::AwsConfig;

/// Per-task series carry this dimension (Container Insights).
pub const TASK_DIMENSION: &str = "TaskId";
/// Dimensions of the per-route series, in the order the local store joins them.
const ROUTE_DIMENSIONS: [&str; 2] = ["route", "status"];

pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
    rt: Handle,
    namespaces: Vec<String>,
    service_dims: BTreeMap<String, Vec<(String, String)>>,
    period_s: i32,
    known: Mutex<HashMap<SeriesKey, Metric>>,
    gaps: Gaps,
}

/// The investigator's dimension string of a CloudWatch metric, or `None`
/// when the metric is another service's.
pub fn dimension_key(dims: &[(String, String)], service: &[(String, String)]) -> Option<String> {
    let mut rest: Vec<&(String, String)> = Vec::new();
    let mut task = None;
    let mut route: Vec<(usize, &str, &str)> = Vec::new();
    for d in dims {
        if d.0 == TASK_DIMENSION {
            task = Some(d.1.clone());
        } else if let Some(i) = ROUTE_DIMENSIONS.iter().position(|r| *r == d.0) {
            route.push((i, &d.0, &d.1));
        } else {
            rest.push(d);
        }
    }
    let mut want: Vec<&(String, String)> = service.iter().collect();
    rest.sort();
    want.sort();
    if rest != want {
        return None;
    }
    Some(match (task, route.is_empty()) {
        (Some(t), true) => t,
        (None, false) => {
            route.sort();
            route
                .iter()
                .map(|(_, k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
        (None, true) => SERVICE_DIMENSION.to_owned(),
        (Some(_), false) => return None,
    })
}

/// CloudWatch dimensions of a series (inverse of [`dimension_key`]).
pub fn cloudwatch_dimensions(
    dimension: &str,
    service: &[(String, String)],
) -> Vec<(String, String)> {
    let mut dims = service.to_vec();
    if dimension == SERVICE_DIMENSION {
    } else if dimension.contains('=') {
        for part in dimension.split(',') {
            if let Some((k, v)) = part.split_once('=') {
                dims.push((k.to_owned(), v.to_owned()));
            }
        }
    } else {
        dims.push((TASK_DIMENSION.to_owned(), dimension.to_owned()));
    }
    dims
}

fn metric_of(key: &SeriesKey, service: &[(String, String)]) -> Metric {
    Metric::builder()
        .namespace(&key.namespace)
        .metric_name(&key.name)
        .set_dimensions(Some(
            cloudwatch_dimensions(&key.dimension, service)
                .into_iter()
                .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                .collect(),
        ))
        .build()
}

impl CloudWatchMetrics {
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        rt: Handle,
        cfg: &AwsConfig,
        gaps: Gaps,
    ) -> CloudWatchMetrics {
        CloudWatchMetrics {
            client,
            rt,
            namespaces: cfg.namespaces.clone(),
            service_dims: cfg.dimensions.clone(),
            period_s: cfg.metric_period_s,
            known: Mutex::new(HashMap::new()),
            gaps,
        }
    }

    fn dims_of(&self, namespace: &str) -> &[(String, String)] {
        self.service_dims
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    async fn get(&self, metric: Metric, stat: &str, w: Window) -> Result<Vec<(i64, f64)>, String> {
        let period_ms = i64::from(self.period_s) * 1000;
        // Periods start on multiples of the period, as CloudWatch stores them.
        let start = w.start_ms.div_euclid(period_ms) * period_ms;
        let query = MetricDataQuery::builder()
            .id("q")
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(self.period_s)
                    .stat(stat)
                    .build(),
            )
            .return_data(true)
            .build();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .client
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(dt(start))
                .end_time(dt(w.end_ms))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| crate::error_chain(&e))?;
            for res in r.metric_data_results.unwrap_or_default() {
                let ts = res.timestamps.unwrap_or_default();
                let vs = res.values.unwrap_or_default();
                out.extend(ts.iter().map(ms).zip(vs));
            }
            match r.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        out.sort_by_key(|p| p.0);
        out.retain(|p| p.0 < w.end_ms);
        Ok(out)
    }
}

impl MetricSource for CloudWatchMetrics {
    fn name(&self) -> &str {
        "CloudWatch metrics"
    }

    fn series(&self, _w: Window) -> SourceResult<Vec<SeriesKey>> {
        // ListMetrics has no time filter (metrics live 15 months); series
        // without data in the window come back empty from `samples`.
        let mut keys = Vec::new();
        let mut known = self.known.lock().unwrap();
        for namespace in &self.namespaces {
            let mut token: Option<String> = None;
            loop {
                let r = self
                    .rt
                    .block_on(
                        self.client
                            .list_metrics()
                            .namespace(namespace)
                            .set_next_token(token.take())
                            .send(),
                    )
                    .map_err(|e| unavailable("CloudWatch ListMetrics", crate::error_chain(&e)))?;
                for m in r.metrics.unwrap_or_default() {
                    let dims: Vec<(String, String)> = m
                        .dimensions()
                        .iter()
                        .map(|d| {
                            (
                                d.name().unwrap_or_default().to_owned(),
                                d.value().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    let Some(dimension) = dimension_key(&dims, self.dims_of(namespace)) else {
                        continue;
                    };
                    let key = SeriesKey {
                        namespace: namespace.clone(),
                        name: m.metric_name().unwrap_or_default().to_owned(),
                        dimension,
                    };
                    known.insert(key.clone(), m);
                    keys.push(key);
                }
                match r.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn samples(&self, key: &SeriesKey, w: Window) -> SourceResult<Vec<MetricSample>> {
        let metric = self
            .known
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_else(|| metric_of(key, self.dims_of(&key.namespace)));
        let name = format!("CloudWatch GetMetricData {key}");
        let sample = |ts: i64, value: f64, count: f64| MetricSample {
            ts_ms: ts,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            dimension: key.dimension.clone(),
            value,
            count,
        };
        if key.name == "TargetResponseTime" {
            match self.rt.block_on(self.get(metric.clone(), "p99", w)) {
                Ok(p99) => return Ok(p99.into_iter().map(|(t, v)| sample(t, v, 1.0)).collect()),
                Err(e) => self.gaps.push(
                    &name,
                    format!("p99 unavailable ({e}): latency read as the period average"),
                ),
            }
        }
        let (sums, counts) = self.rt.block_on(async {
            let s = self.get(metric.clone(), "Sum", w).await;
            let c = self.get(metric, "SampleCount", w).await;
            (s, c)
        });
        let sums = sums.map_err(|e| unavailable(&name, e))?;
        let counts: BTreeMap<i64, f64> = match counts {
            Ok(c) => c.into_iter().collect(),
            Err(e) => {
                self.gaps.push(
                    &name,
                    format!("SampleCount unavailable ({e}): each period taken as one sample"),
                );
                BTreeMap::new()
            }
        };
        Ok(sums
            .into_iter()
            .map(|(t, sum)| {
                let n = counts.get(&t).copied().filter(|n| *n > 0.0).unwrap_or(1.0);
                sample(t, sum / n, n)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn dimensions_round_trip_for_service_task_and_route_series() {
        let svc = d(&[("ClusterName", "c"), ("ServiceName", "s")]);
        for key in [
            "service",
            "t-a",
            "route=/api/quote,status=500",
            "route=/api/quote",
        ] {
            let dims = cloudwatch_dimensions(key, &svc);
            assert_eq!(dimension_key(&dims, &svc).as_deref(), Some(key), "{dims:?}");
        }
    }

    #[test]
    fn another_services_metrics_are_not_ours() {
        let svc = d(&[("ClusterName", "c"), ("ServiceName", "s")]);
        let other = d(&[("ClusterName", "c"), ("ServiceName", "other")]);
        assert_eq!(dimension_key(&other, &svc), None);
        assert_eq!(dimension_key(&d(&[]), &svc), None);
    }
}
