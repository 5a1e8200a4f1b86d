//! `up`'s own `/metrics` (Prometheus text format 0.0.4): the load balancer's
//! targets and connections, the task count, the store's health, the alarm
//! evaluations (state and the last complete period's datapoint, which the
//! generated rules of [`super::rules`] read), investigations and their
//! duration, and the alerts received through the webhook. Values are read from
//! the live runtime and the store at scrape time, so nothing is paid between
//! scrapes; the counters that only `up` knows live in [`UpMetrics`], passed in
//! explicitly (no global registry).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloudwatch::{Sample, period_start, scaled_period_ms, statistic};
use demo_model::Catalog;
use demo_model::events::{SERVICE_DIMENSION, Window};

use super::rules::DATAPOINT_METRIC;

/// Upper bounds (seconds) of the investigation duration histogram.
const DURATION_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds (seconds) of the collector tick histogram.
const TICK_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Counters only `up` knows: investigations it ran, alerts it received, how
/// long collector ticks take, how late the load balancer's data path wakes.
#[derive(Debug, Default)]
pub struct UpMetrics {
    /// The data path's loop lag ([`crate::datapath::DataPath`] records into it).
    pub lb_loop_lag: std::sync::Arc<crate::datapath::LoopLag>,
    /// Collector ticks: cumulative counts per bucket of [`TICK_BUCKETS`], then +Inf; sum in µs.
    ticks: Mutex<([u64; TICK_BUCKETS.len() + 1], u64)>,
    investigations_created: AtomicU64,
    investigations_existing: AtomicU64,
    investigations_failed: AtomicU64,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then +Inf; sum in µs.
    durations: Mutex<([u64; DURATION_BUCKETS.len() + 1], u64)>,
    alerts: Mutex<Vec<((&'static str, &'static str), u64)>>,
}

/// How an investigation ended, for [`UpMetrics::investigation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvestigationResult {
    /// A new report was written.
    Created,
    /// The episode already had one (deduplicated).
    Existing,
    Failed,
}

impl UpMetrics {
    /// Records one investigation and how long it took.
    pub fn investigation(&self, result: InvestigationResult, took: Duration) {
        let counter = match result {
            InvestigationResult::Created => &self.investigations_created,
            InvestigationResult::Existing => &self.investigations_existing,
            InvestigationResult::Failed => &self.investigations_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let mut d = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                d.0[i] += 1;
            }
        }
        d.0[DURATION_BUCKETS.len()] += 1;
        d.1 += took.as_micros() as u64;
    }

    /// Records how long one collector tick (collection, store flush and alarm evaluation) took.
    pub fn collector_tick(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut t = self.ticks.lock().unwrap_or_else(|e| e.into_inner());
        for (i, bound) in TICK_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                t.0[i] += 1;
            }
        }
        t.0[TICK_BUCKETS.len()] += 1;
        t.1 += took.as_micros() as u64;
    }

    /// (ticks, total seconds) so far.
    pub fn collector_ticks(&self) -> (u64, f64) {
        let t = self.ticks.lock().unwrap_or_else(|e| e.into_inner());
        (t.0[TICK_BUCKETS.len()], t.1 as f64 / 1e6)
    }

    /// Counts one alert received by the webhook: `source` (alertmanager, sns)
    /// and what became of it (investigating, resolved, ignored).
    pub fn alert(&self, source: &'static str, result: &'static str) {
        let mut a = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        match a.iter_mut().find(|(k, _)| *k == (source, result)) {
            Some((_, n)) => *n += 1,
            None => a.push(((source, result), 1)),
        }
    }
}

/// A label value escaped for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The statistic of each alarm's last complete (scaled) period, read from the
/// store; `None` for a period without samples (missing data).
pub fn alarm_datapoints(
    reader: &demo_store::Reader,
    catalog: &Catalog,
    time_scale: f64,
    now_ms: i64,
) -> Vec<(String, Option<f64>)> {
    catalog
        .alarms
        .iter()
        .map(|a| {
            let p = scaled_period_ms(a.period_seconds, time_scale);
            let end = period_start(now_ms, p);
            let samples: Vec<Sample> = reader
                .samples(
                    &a.namespace,
                    &a.metric_name,
                    SERVICE_DIMENSION,
                    Window::new(end - p, end),
                )
                .unwrap_or_default()
                .into_iter()
                .map(|m| Sample::with_count(m.ts_ms, m.value, m.count))
                .collect();
            (a.name.clone(), statistic(&samples, a.statistic))
        })
        .collect()
}

/// A histogram family from cumulative `counts` (one per bound, then +Inf) and `sum` seconds.
fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
    family(out, name, "histogram", help);
    for (bound, n) in bounds.iter().zip(counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let total = counts.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {total}");
}

/// Everything the exposition needs, gathered from the runtime.
pub struct Snapshot<'a> {
    pub catalog: &'a Catalog,
    pub datapoints: Vec<(String, Option<f64>)>,
    pub alarm_states: Vec<(String, String)>,
    pub healthy: u64,
    pub unhealthy: u64,
    pub in_flight: Vec<(String, u64)>,
    pub connections: [(&'static str, u64); 4],
    pub desired: u32,
    pub running: usize,
    pub store: demo_store::WriterHealth,
    pub metrics: &'a UpMetrics,
}

/// The text exposition of `s`.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut out = String::new();
    family(
        &mut out,
        DATAPOINT_METRIC,
        "gauge",
        "The alarm's statistic over its last complete period (what the generated rules compare with the threshold).",
    );
    for (name, value) in &s.datapoints {
        let (Some(v), Some(a)) = (value, s.catalog.alarm(name)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{DATAPOINT_METRIC}{{alarm=\"{}\",namespace=\"{}\",metric_name=\"{}\",statistic=\"{}\"}} {v}",
            label(name),
            label(&a.namespace),
            label(&a.metric_name),
            label(&a.statistic.to_string())
        );
    }
    family(
        &mut out,
        "devops_agent_alarm_state",
        "gauge",
        "1 for the state each alarm is in, 0 for the others.",
    );
    for (name, state) in &s.alarm_states {
        for candidate in ["OK", "ALARM", "INSUFFICIENT_DATA"] {
            let _ = writeln!(
                out,
                "devops_agent_alarm_state{{alarm=\"{}\",state=\"{candidate}\"}} {}",
                label(name),
                u8::from(state == candidate)
            );
        }
    }
    family(
        &mut out,
        "devops_agent_lb_targets",
        "gauge",
        "Registered targets by health.",
    );
    let _ = writeln!(
        out,
        "devops_agent_lb_targets{{health=\"healthy\"}} {}",
        s.healthy
    );
    let _ = writeln!(
        out,
        "devops_agent_lb_targets{{health=\"unhealthy\"}} {}",
        s.unhealthy
    );
    family(
        &mut out,
        "devops_agent_lb_target_in_flight_requests",
        "gauge",
        "Requests the load balancer is forwarding to each target.",
    );
    for (task, n) in &s.in_flight {
        let _ = writeln!(
            out,
            "devops_agent_lb_target_in_flight_requests{{task_id=\"{}\"}} {n}",
            label(task)
        );
    }
    for (name, value) in &s.connections {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let metric = format!("devops_agent_lb_client_connections_{name}");
        family(&mut out, &metric, kind, "Load balancer client connections.");
        let _ = writeln!(out, "{metric} {value}");
    }
    family(
        &mut out,
        "devops_agent_desired_tasks",
        "gauge",
        "The service's desired task count.",
    );
    let _ = writeln!(out, "devops_agent_desired_tasks {}", s.desired);
    family(
        &mut out,
        "devops_agent_running_tasks",
        "gauge",
        "Task processes running (stopping ones included).",
    );
    let _ = writeln!(out, "devops_agent_running_tasks {}", s.running);
    family(
        &mut out,
        "devops_agent_store_ok",
        "gauge",
        "1 while the store writes, 0 while every batch fails.",
    );
    let _ = writeln!(out, "devops_agent_store_ok {}", u8::from(s.store.is_ok()));
    for (name, v, help) in [
        (
            "failed_batches",
            s.store.failed_batches,
            "Store transactions that failed.",
        ),
        (
            "lost_records",
            s.store.lost_records,
            "Records lost in failed store transactions.",
        ),
        (
            "pruned_logs",
            s.store.pruned_logs,
            "Log lines pruned to keep the store under its cap.",
        ),
        (
            "pruned_samples",
            s.store.pruned_samples,
            "Metric samples pruned to keep the store under its cap.",
        ),
        (
            "text_index_errors",
            s.store.text_index_errors,
            "Store batches that began without the text index (its read-back failed): their lines are searched by a scan.",
        ),
    ] {
        let metric = format!("devops_agent_store_{name}_total");
        family(&mut out, &metric, "counter", help);
        let _ = writeln!(out, "{metric} {v}");
    }
    family(
        &mut out,
        "devops_agent_store_log_readers_waited_seconds_total",
        "counter",
        "Time the tasks' log readers waited, in total, for the store's writer to catch up (lines waited in the tasks' pipes).",
    );
    let _ = writeln!(
        out,
        "devops_agent_store_log_readers_waited_seconds_total {}",
        s.store.log_readers_waited_ms as f64 / 1000.0
    );
    for (name, v, help) in [
        (
            "devops_agent_store_backlog_records",
            s.store.backlog_records,
            "Records sent to the store's writer and not yet committed (they wait, never dropped).",
        ),
        (
            "devops_agent_store_peak_backlog_records",
            s.store.peak_backlog_records,
            "The highest writer backlog since the store opened.",
        ),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    let m = s.metrics;
    family(
        &mut out,
        "devops_agent_investigations_total",
        "counter",
        "Investigations started on ALARM transitions and alerts, by result.",
    );
    for (result, c) in [
        ("created", &m.investigations_created),
        ("existing", &m.investigations_existing),
        ("failed", &m.investigations_failed),
    ] {
        let _ = writeln!(
            out,
            "devops_agent_investigations_total{{result=\"{result}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    family(
        &mut out,
        "devops_agent_investigation_duration_seconds",
        "histogram",
        "Time from the start of an investigation to its report.",
    );
    let (buckets, sum_us) = *m.durations.lock().unwrap_or_else(|e| e.into_inner());
    for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "devops_agent_investigation_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            buckets[i]
        );
    }
    let total = buckets[DURATION_BUCKETS.len()];
    let _ = writeln!(
        out,
        "devops_agent_investigation_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(
        out,
        "devops_agent_investigation_duration_seconds_sum {}",
        sum_us as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "devops_agent_investigation_duration_seconds_count {total}"
    );
    let (ticks, tick_sum_us) = *m.ticks.lock().unwrap_or_else(|e| e.into_inner());
    histogram(
        &mut out,
        "devops_agent_collector_tick_seconds",
        "Time one collector tick takes: task CPU and memory, load balancer counters, each task's /metrics scraped, samples stored, every alarm evaluated.",
        &TICK_BUCKETS,
        &ticks,
        tick_sum_us as f64 / 1e6,
    );
    let (lag, lag_sum) = m.lb_loop_lag.cumulative();
    histogram(
        &mut out,
        "devops_agent_lb_loop_lag_seconds",
        "How late the load balancer's data path thread woke for a timer: how long a request arriving then waited for the thread.",
        &crate::datapath::LAG_BUCKETS,
        &lag,
        lag_sum,
    );
    family(
        &mut out,
        "devops_agent_alerts_received_total",
        "counter",
        "Alerts received on the webhook, by source and what became of them.",
    );
    for ((source, result), n) in m.alerts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(
            out,
            "devops_agent_alerts_received_total{{source=\"{source}\",result=\"{result}\"}} {n}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = UpMetrics::default();
        m.investigation(InvestigationResult::Created, Duration::from_millis(300));
        m.investigation(InvestigationResult::Existing, Duration::from_secs(90));
        m.alert("alertmanager", "investigating");
        let catalog = Catalog::embedded();
        let s = Snapshot {
            catalog: &catalog,
            datapoints: vec![
                ("cpu-high".into(), Some(91.5)),
                ("memory-high".into(), None),
            ],
            alarm_states: vec![("cpu-high".into(), "ALARM".into())],
            healthy: 2,
            unhealthy: 0,
            in_flight: vec![("task-\"1\"".into(), 3)],
            connections: [
                ("open", 1),
                ("accepted_total", 5),
                ("accept_errors_total", 0),
                ("idle_closed_total", 0),
            ],
            desired: 2,
            running: 2,
            store: demo_store::WriterHealth {
                backlog_records: 1200,
                peak_backlog_records: 50_000,
                log_readers_waited_ms: 1500,
                text_index_errors: 3,
                ..Default::default()
            },
            metrics: &m,
        };
        let text = render(&s);
        assert!(
            text.contains("devops_agent_store_backlog_records 1200"),
            "{text}"
        );
        assert!(
            text.contains("devops_agent_store_peak_backlog_records 50000"),
            "{text}"
        );
        assert!(
            text.contains("devops_agent_store_log_readers_waited_seconds_total 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("devops_agent_store_text_index_errors_total 3\n"),
            "{text}"
        );
        assert!(text.contains("devops_agent_alarm_datapoint{alarm=\"cpu-high\",namespace=\"AWS/ECS\",metric_name=\"CPUUtilization\",statistic=\"Average\"} 91.5"), "{text}");
        // A period without samples is absent, not 0.
        assert!(!text.contains("alarm=\"memory-high\",namespace"), "{text}");
        assert!(text.contains("devops_agent_alarm_state{alarm=\"cpu-high\",state=\"ALARM\"} 1"));
        assert!(text.contains("devops_agent_alarm_state{alarm=\"cpu-high\",state=\"OK\"} 0"));
        assert!(text.contains("task_id=\"task-\\\"1\\\"\""));
        assert!(text.contains("duration_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("duration_seconds_bucket{le=\"60\"} 1"));
        assert!(text.contains("duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("devops_agent_investigations_total{result=\"existing\"} 1"));
        assert!(text.contains(
            "devops_agent_alerts_received_total{source=\"alertmanager\",result=\"investigating\"} 1"
        ));
        // No tick yet: an empty histogram, every bucket present.
        assert!(text.contains("devops_agent_collector_tick_seconds_bucket{le=\"+Inf\"} 0"));
        assert!(text.contains("devops_agent_lb_loop_lag_seconds_count 0"));
    }

    #[test]
    fn collector_ticks_and_loop_lag_are_histograms() {
        let m = UpMetrics::default();
        m.collector_tick(Duration::from_micros(800));
        m.collector_tick(Duration::from_millis(30));
        m.lb_loop_lag.observe(Duration::from_millis(3));
        assert_eq!(m.collector_ticks().0, 2);
        let catalog = Catalog::embedded();
        let s = Snapshot {
            catalog: &catalog,
            datapoints: Vec::new(),
            alarm_states: Vec::new(),
            healthy: 0,
            unhealthy: 0,
            in_flight: Vec::new(),
            connections: [
                ("open", 0),
                ("accepted_total", 0),
                ("accept_errors_total", 0),
                ("idle_closed_total", 0),
            ],
            desired: 2,
            running: 0,
            store: demo_store::WriterHealth::default(),
            metrics: &m,
        };
        let text = render(&s);
        for want in [
            "devops_agent_collector_tick_seconds_bucket{le=\"0.001\"} 1",
            "devops_agent_collector_tick_seconds_bucket{le=\"0.025\"} 1",
            "devops_agent_collector_tick_seconds_bucket{le=\"0.05\"} 2",
            "devops_agent_collector_tick_seconds_bucket{le=\"+Inf\"} 2",
            "devops_agent_collector_tick_seconds_sum 0.0308",
            "devops_agent_collector_tick_seconds_count 2",
            "devops_agent_lb_loop_lag_seconds_bucket{le=\"0.002\"} 0",
            "devops_agent_lb_loop_lag_seconds_bucket{le=\"0.005\"} 1",
            "devops_agent_lb_loop_lag_seconds_count 1",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
