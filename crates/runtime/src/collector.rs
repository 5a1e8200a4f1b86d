//! Every tick: measure tasks (CPU and memory as ECS reports them, OOM kills
//! at the memory limit), flush load balancer counters, scrape each task's
//! `/metrics` for per-route data, turn metric-filter matches into
//! `ErrorCount`, then evaluate every catalogue alarm and persist and publish
//! its transitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use cloudwatch::{AlarmEvaluator, Sample, scaled_period_ms};
use demo_model::events::SERVICE_DIMENSION;
use demo_model::events::{AlarmTransition, MetricSample, Window, ns};
use tokio::sync::broadcast;

use crate::now_ms;
use crate::procfs;
use crate::service::Service;
use crate::task::Pipeline;

/// Per-route counters from one task's `/metrics`, keyed by (route, status) and route.
#[derive(Debug, Default, Clone)]
struct RouteCounters {
    requests: HashMap<(String, String), f64>,
    latency: HashMap<String, (f64, f64)>,
}

/// Minimal exposition parser for the two families the collector reads.
fn parse_route_counters(text: &str) -> RouteCounters {
    let mut out = RouteCounters::default();
    for line in text.lines() {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => continue,
        };
        let Some(end) = rest.rfind('}') else { continue };
        let labels = &rest[1..end];
        let Ok(value) = rest[end + 1..].trim().parse::<f64>() else {
            continue;
        };
        let label = |k: &str| -> Option<String> {
            let start = labels.find(&format!("{k}=\""))? + k.len() + 2;
            let tail = &labels[start..];
            let mut out = String::new();
            let mut chars = tail.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?),
                    '"' => return Some(out),
                    c => out.push(c),
                }
            }
            None
        };
        let (Some(route), Some(status)) = (label("route"), label("status_code")) else {
            continue;
        };
        match name {
            "http_requests_total" => {
                *out.requests.entry((route, status)).or_default() += value;
            }
            "http_request_duration_seconds_sum" => out.latency.entry(route).or_default().0 += value,
            "http_request_duration_seconds_count" => {
                out.latency.entry(route).or_default().1 += value
            }
            _ => {}
        }
    }
    out
}

pub struct Collector {
    service: Arc<Service>,
    pipeline: Pipeline,
    evaluators: Vec<AlarmEvaluator>,
    transitions: broadcast::Sender<AlarmTransition>,
    previous_routes: HashMap<String, RouteCounters>,
    /// One read connection for every evaluation (opening one per tick is wasted I/O).
    /// (A mutex only to make the collector `Sync`: it is used by one task at a time.)
    reader: std::sync::Mutex<demo_store::Reader>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    last_prune: Instant,
}

impl Collector {
    pub fn new(
        service: Arc<Service>,
        pipeline: Pipeline,
        transitions: broadcast::Sender<AlarmTransition>,
    ) -> Result<Collector, String> {
        let scale = service.config.time_scale;
        let mut evaluators: Vec<AlarmEvaluator> = service
            .config
            .catalog
            .alarms
            .iter()
            .map(|a| {
                AlarmEvaluator::with_period_ms(a.clone(), scaled_period_ms(a.period_seconds, scale))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let reader =
            demo_store::Reader::open(&service.config.state_dir).map_err(|e| e.to_string())?;
        // Alarm state outlives the process, as in CloudWatch: a restart inside an
        // ALARM episode continues it instead of opening a new one.
        for ev in &mut evaluators {
            let last = reader
                .transitions(Some(&ev.alarm().name), 1)
                .map_err(|e| e.to_string())?;
            if let Some(t) = last.first() {
                let state = t
                    .to
                    .parse::<cloudwatch::AlarmState>()
                    .map_err(|e| format!("stored state {:?} of alarm {}: {e}", t.to, t.alarm))?;
                ev.restore_state(state);
            }
        }
        Ok(Collector {
            service,
            pipeline,
            evaluators,
            transitions,
            previous_routes: HashMap::new(),
            reader: std::sync::Mutex::new(reader),
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
            last_prune: Instant::now(),
        })
    }

    pub fn states(&self) -> Vec<(String, String)> {
        self.evaluators
            .iter()
            .map(|e| (e.alarm().name.clone(), e.state().as_str().to_string()))
            .collect()
    }

    fn put(&self, ts: i64, namespace: &str, name: &str, dimension: &str, value: f64) {
        self.pipeline
            .writer
            .metric(MetricSample::new(ts, namespace, name, dimension, value));
    }

    async fn scrape(&self, port: u16) -> Option<String> {
        use http_body_util::BodyExt;
        let req = hyper::Request::get(format!("http://127.0.0.1:{port}/metrics"))
            .header("user-agent", "local-runtime-collector")
            .body(http_body_util::Empty::new())
            .ok()?;
        let fut = self.http.request(req);
        let resp = tokio::time::timeout(std::time::Duration::from_secs(2), fut)
            .await
            .ok()?
            .ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        String::from_utf8(body.to_vec()).ok()
    }

    /// One collection and evaluation pass at `now`.
    pub async fn tick(&mut self) {
        let ts = now_ms();
        let cfg = &self.service.config;
        let vcpu = cfg.catalog.task.vcpu();
        let limit = cfg.catalog.task.memory_bytes();
        let tasks = self.service.tasks();
        let (mut cpu_sum, mut mem_sum, mut running) = (0.0, 0.0, 0u32);
        for t in &tasks {
            let Some(u) = procfs::usage(t.pid) else {
                continue;
            };
            let now = Instant::now();
            let cpu_pct = {
                let mut last = t.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
                let pct = last.map(|(secs, at)| {
                    let wall = now.duration_since(at).as_secs_f64();
                    if wall > 0.0 {
                        (u.cpu_seconds - secs) / wall / vcpu * 100.0
                    } else {
                        0.0
                    }
                });
                *last = Some((u.cpu_seconds, now));
                // Fargate enforces the task's CPU as a hard limit; utilisation tops out at 100 %.
                pct.map(|p| p.clamp(0.0, 100.0))
            };
            let mem_pct = u.rss_bytes as f64 / limit as f64 * 100.0;
            if u.rss_bytes > limit && !t.is_stopping() {
                t.oom_kill();
                continue;
            }
            if t.is_stopping() {
                continue;
            }
            running += 1;
            if let Some(c) = cpu_pct {
                self.put(ts, ns::ECS, "CPUUtilization", &t.id, c);
                cpu_sum += c;
            }
            self.put(ts, ns::ECS, "MemoryUtilization", &t.id, mem_pct);
            mem_sum += mem_pct;
        }
        if running > 0 {
            self.put(
                ts,
                ns::ECS,
                "CPUUtilization",
                SERVICE_DIMENSION,
                cpu_sum / f64::from(running),
            );
            self.put(
                ts,
                ns::ECS,
                "MemoryUtilization",
                SERVICE_DIMENSION,
                mem_sum / f64::from(running),
            );
        }
        // CloudWatch publishes RunningTaskCount under Container Insights (where the
        // catalogue's alarm reads it); the AWS/ECS copy is what the investigator reads.
        for namespace in [ns::ECS, ns::CONTAINER_INSIGHTS] {
            self.put(
                ts,
                namespace,
                "RunningTaskCount",
                SERVICE_DIMENSION,
                f64::from(running),
            );
        }

        let lb = self.service.lb.counters.take();
        for (name, v) in [
            ("RequestCount", lb.requests),
            ("HTTPCode_Target_2XX_Count", lb.target_2xx),
            ("HTTPCode_Target_4XX_Count", lb.target_4xx),
            ("HTTPCode_Target_5XX_Count", lb.target_5xx),
            ("HTTPCode_ELB_5XX_Count", lb.elb_5xx),
        ] {
            // Like ALB, counts are only reported when non-zero (alarms treat gaps per their setting).
            if v > 0 {
                self.put(ts, ns::ALB, name, SERVICE_DIMENSION, v as f64);
            }
        }
        for (secs, n) in lb.response_times {
            self.pipeline.writer.metric(MetricSample {
                count: n as f64,
                ..MetricSample::new(ts, ns::ALB, "TargetResponseTime", SERVICE_DIMENSION, secs)
            });
        }
        let (healthy, unhealthy) = self.service.lb.host_counts();
        self.put(
            ts,
            ns::ALB,
            "HealthyHostCount",
            SERVICE_DIMENSION,
            healthy as f64,
        );
        self.put(
            ts,
            ns::ALB,
            "UnHealthyHostCount",
            SERVICE_DIMENSION,
            unhealthy as f64,
        );

        // The metric filter: matches become ErrorCount; with logs ingested and no match,
        // the filter's default value is reported, as CloudWatch does.
        let matches = self.pipeline.matches.swap(0, Ordering::AcqRel);
        let ingested = self.pipeline.ingested.swap(0, Ordering::AcqRel);
        for f in &cfg.catalog.metric_filters {
            let value = f.metric_value.parse::<f64>().unwrap_or(1.0);
            if matches > 0 {
                self.put(
                    ts,
                    &f.metric_namespace,
                    &f.metric_name,
                    SERVICE_DIMENSION,
                    matches as f64 * value,
                );
            } else if ingested > 0 {
                self.put(
                    ts,
                    &f.metric_namespace,
                    &f.metric_name,
                    SERVICE_DIMENSION,
                    f.default_value,
                );
            }
        }

        // Per-route data from the tasks' own /metrics, summed over tasks.
        let mut requests: HashMap<(String, String), f64> = HashMap::new();
        let mut latency: HashMap<String, (f64, f64)> = HashMap::new();
        let mut seen = Vec::new();
        for t in &tasks {
            let Some(text) = self.scrape(t.port).await else {
                continue;
            };
            let now = parse_route_counters(&text);
            let prev = self.previous_routes.get(&t.id).cloned().unwrap_or_default();
            for (k, v) in &now.requests {
                let d = v - prev.requests.get(k).copied().unwrap_or(0.0);
                if d > 0.0 {
                    *requests.entry(k.clone()).or_default() += d;
                }
            }
            for (route, (sum, count)) in &now.latency {
                let (ps, pc) = prev.latency.get(route).copied().unwrap_or((0.0, 0.0));
                if count - pc > 0.0 {
                    let e = latency.entry(route.clone()).or_default();
                    e.0 += sum - ps;
                    e.1 += count - pc;
                }
            }
            seen.push(t.id.clone());
            self.previous_routes.insert(t.id.clone(), now);
        }
        self.previous_routes.retain(|k, _| seen.contains(k));
        for ((route, status), v) in requests {
            self.put(
                ts,
                ns::APP,
                "RequestCount",
                &format!("route={route},status={status}"),
                v,
            );
        }
        for (route, (sum, count)) in latency {
            self.pipeline.writer.metric(MetricSample {
                count,
                ..MetricSample::new(
                    ts,
                    ns::APP,
                    "LatencyMean",
                    &format!("route={route}"),
                    sum / count,
                )
            });
        }

        // Retention: the catalogue keeps logs for retention_days (checked once a minute).
        if self.last_prune.elapsed() > std::time::Duration::from_secs(60) {
            let keep_ms = i64::from(cfg.catalog.logs.retention_days) * 86_400_000;
            self.pipeline.writer.prune(ts - keep_ms);
            self.last_prune = Instant::now();
        }

        self.evaluate(ts);
    }

    fn evaluate(&mut self, now: i64) {
        self.pipeline.writer.flush();
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        for ev in &mut self.evaluators {
            let w = ev.query_window(now);
            let a = ev.alarm();
            let stored = reader.samples(
                &a.namespace,
                &a.metric_name,
                SERVICE_DIMENSION,
                Window::new(w.start_ms, w.end_ms),
            );
            // A failed read is not "no data": skip this evaluation rather than let the
            // alarm drift to INSUFFICIENT_DATA on a database error.
            let stored = match stored {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("collector: cannot read samples of alarm {}: {e}", a.name);
                    continue;
                }
            };
            let samples: Vec<Sample> = stored
                .into_iter()
                .map(|m| Sample::with_count(m.ts_ms, m.value, m.count))
                .collect();
            if let Some(t) = ev.evaluate(now, &samples) {
                let mut record = AlarmTransition {
                    id: 0,
                    alarm: t.alarm.clone(),
                    from: t.from.as_str().to_string(),
                    to: t.to.as_str().to_string(),
                    at_ms: t.at,
                    reason: t.reason.clone(),
                    reason_data: serde_json::to_value(&t.reason_data).unwrap_or_default(),
                };
                // An alert from outside (`POST /alerts`) may have moved the
                // alarm there already: then the episode is that one, and
                // nothing is stored or broadcast (no second investigation).
                let stored = {
                    let _one_at_a_time = crate::alerts::TRANSITIONS
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    crate::alerts::store_unless_alerted(&self.pipeline.writer, &reader, &record)
                };
                match stored {
                    Ok(Some(id)) => record.id = id,
                    Ok(None) => continue,
                    // Not stored, still broadcast (as before): `up` investigates it.
                    Err(e) => eprintln!(
                        "collector: cannot store a transition of alarm {}: {e}",
                        record.alarm
                    ),
                }
                let _ = self.transitions.send(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_counters_read_escaped_labels() {
        let text = "http_requests_total{method=\"GET\",route=\"/api/products/{id}\",status_code=\"200\"} 5\n\
                    http_requests_total{method=\"POST\",route=\"/api/products/{id}\",status_code=\"200\"} 2\n\
                    http_request_duration_seconds_sum{method=\"GET\",route=\"/a\\\"b\",status_code=\"500\"} 1.5\n\
                    http_request_duration_seconds_count{method=\"GET\",route=\"/a\\\"b\",status_code=\"500\"} 3\n";
        let c = parse_route_counters(text);
        assert_eq!(
            c.requests[&("/api/products/{id}".to_string(), "200".to_string())],
            7.0
        );
        assert_eq!(c.latency["/a\"b"], (1.5, 3.0));
    }
}
