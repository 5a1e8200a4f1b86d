//! Metrics read from a real Prometheus through its HTTP API (range queries),
//! so the investigator can run against a Prometheus instead of the local
//! store. Two kinds of series:
//!
//! * the catalogue's alarm metrics, found through `devops_agent_alarm_datapoint`
//!   (what `up` exports and the generated rules read): each `namespace` /
//!   `metric_name` pair becomes the [`SeriesKey`] the analyzers know
//!   (`AWS/ECS`/`CPUUtilization`/`service`), one value per alarm period;
//! * any PromQL query mapped to a key with [`PrometheusMetrics::with_query`]
//!   (e.g. `sum(rate(http_requests_total{status_code=~"5.."}[1m]))`).
//!
//! Samples are a `query_range` at the configured step; every sample counts
//! once. Errors (unreachable, non-success status, bad JSON) are
//! [`SourceError::Unavailable`] naming the query, which the investigation
//! reports as a gap.

use std::time::Duration;

use demo_model::events::{MetricSample, SERVICE_DIMENSION, Window};
use serde_json::Value;

use super::{MetricSource, SeriesKey, SourceError, SourceResult};

/// The gauge `up` exports per alarm (see the runtime's Prometheus module).
pub const DATAPOINT_METRIC: &str = "devops_agent_alarm_datapoint";

/// A Prometheus HTTP API as a [`MetricSource`].
pub struct PrometheusMetrics {
    base: String,
    bearer: Option<String>,
    step: Duration,
    queries: Vec<(SeriesKey, String)>,
    agent: ureq::Agent,
}

fn unavailable(detail: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable {
        source_name: "prometheus metrics".into(),
        detail: detail.to_string(),
    }
}

/// Seconds since the epoch, as the API takes them.
fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// The `data` of a successful API answer.
pub fn api_data(body: &Value) -> Result<&Value, String> {
    match body["status"].as_str() {
        Some("success") => Ok(&body["data"]),
        Some(_) => Err(format!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("no message")
        )),
        None => Err("not a Prometheus API answer (no status)".into()),
    }
}

/// The samples of a `query_range` answer, summed over every series it
/// returned (instances of one service), oldest first.
pub fn matrix_samples(data: &Value, key: &SeriesKey) -> Result<Vec<MetricSample>, String> {
    if data["resultType"] != "matrix" {
        return Err(format!("expected a matrix, got {}", data["resultType"]));
    }
    let mut by_ts: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for series in data["result"].as_array().into_iter().flatten() {
        for v in series["values"].as_array().into_iter().flatten() {
            let ts = v[0].as_f64().ok_or("a sample without a timestamp")?;
            let value: f64 = v[1]
                .as_str()
                .ok_or("a sample without a value")?
                .parse()
                .map_err(|e| format!("sample value {}: {e}", v[1]))?;
            if value.is_finite() {
                *by_ts.entry((ts * 1000.0).round() as i64).or_default() += value;
            }
        }
    }
    Ok(by_ts
        .into_iter()
        .map(|(ts, v)| MetricSample::new(ts, &key.namespace, &key.name, &key.dimension, v))
        .collect())
}

/// A PromQL string literal.
fn literal(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl PrometheusMetrics {
    /// A source on `base_url` (e.g. `http://127.0.0.1:9090`), sampling at `step`.
    pub fn new(base_url: &str, step: Duration) -> PrometheusMetrics {
        PrometheusMetrics {
            base: base_url.trim_end_matches('/').to_string(),
            bearer: None,
            step: step.max(Duration::from_millis(1)),
            queries: Vec::new(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        }
    }

    /// Sends `Authorization: Bearer <token>` (a Prometheus behind a proxy).
    pub fn with_bearer(mut self, token: &str) -> PrometheusMetrics {
        self.bearer = Some(token.trim().to_string());
        self
    }

    /// Reads series `key` with this PromQL query.
    pub fn with_query(mut self, key: SeriesKey, promql: &str) -> PrometheusMetrics {
        self.queries.push((key, promql.to_string()));
        self
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> SourceResult<Value> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        for (k, v) in params {
            req = req.query(*k, v);
        }
        if let Some(t) = &self.bearer {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .call()
            .map_err(|e| unavailable(format!("{}{path}: {e}", self.base)))?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| unavailable(format!("{path}: HTTP {status}, not JSON ({e})")))?;
        api_data(&body)
            .cloned()
            .map_err(|e| unavailable(format!("{path}: HTTP {status}: {e}")))
    }

    /// The PromQL of a key: a configured query, else the alarm datapoint.
    fn query_for(&self, key: &SeriesKey) -> String {
        match self.queries.iter().find(|(k, _)| k == key) {
            Some((_, q)) => q.clone(),
            None => format!(
                "max({DATAPOINT_METRIC}{{namespace={},metric_name={}}})",
                literal(&key.namespace),
                literal(&key.name)
            ),
        }
    }
}

impl MetricSource for PrometheusMetrics {
    fn name(&self) -> &str {
        "prometheus metrics"
    }

    fn series(&self, w: Window) -> SourceResult<Vec<SeriesKey>> {
        let data = self.get(
            "/api/v1/series",
            &[
                ("match[]", DATAPOINT_METRIC.to_string()),
                ("start", secs(w.start_ms)),
                ("end", secs(w.end_ms)),
            ],
        )?;
        let mut keys: Vec<SeriesKey> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some(SeriesKey::new(
                    s["namespace"].as_str()?,
                    s["metric_name"].as_str()?,
                    SERVICE_DIMENSION,
                ))
            })
            .chain(self.queries.iter().map(|(k, _)| k.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn samples(&self, key: &SeriesKey, w: Window) -> SourceResult<Vec<MetricSample>> {
        let query = self.query_for(key);
        let data = self.get(
            "/api/v1/query_range",
            &[
                ("query", query.clone()),
                ("start", secs(w.start_ms)),
                // query_range includes its end; the window does not.
                ("end", secs(w.end_ms - 1)),
                ("step", format!("{:.3}", self.step.as_secs_f64())),
            ],
        )?;
        matrix_samples(&data, key).map_err(|e| unavailable(format!("{query}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_answers_sum_instances_and_errors_are_named() {
        let key = SeriesKey::new("AWS/ECS", "CPUUtilization", "service");
        let body = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"instance": "a"}, "values": [[1700000000.5, "10"], [1700000001, "NaN"]]},
            {"metric": {"instance": "b"}, "values": [[1700000000.5, "2.5"], [1700000001, "4"]]}
        ]}});
        let s = matrix_samples(api_data(&body).unwrap(), &key).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].ts_ms, s[0].value), (1_700_000_000_500, 12.5));
        assert_eq!((s[1].ts_ms, s[1].value), (1_700_000_001_000, 4.0));
        assert_eq!(s[0].name, "CPUUtilization");
        let err = serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"});
        assert_eq!(
            api_data(&err).unwrap_err(),
            "bad_data: parse error at char 3"
        );
        assert!(api_data(&serde_json::json!({"x": 1})).is_err());
        let vector = serde_json::json!({"resultType": "vector", "result": []});
        assert!(
            matrix_samples(&vector, &key)
                .unwrap_err()
                .contains("matrix")
        );
    }

    #[test]
    fn an_unreachable_prometheus_is_a_gap_not_a_panic() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = PrometheusMetrics::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1));
        let err = p.series(Window::new(0, 1000)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("prometheus metrics: http://127.0.0.1:"),
            "{err}"
        );
        let key = SeriesKey::new("AWS/ECS", "CPUUtilization", "service");
        assert!(p.query_for(&key).contains("metric_name=\"CPUUtilization\""));
    }
}
