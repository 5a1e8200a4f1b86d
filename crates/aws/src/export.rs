//! Writes what a local run stored into AWS, in the shapes AWS itself
//! produces: log lines into the service's log group (one `awslogs` stream
//! per task, `app/app/<task>`), metric samples with `PutMetricData` (the
//! dimensions of [`crate::sources::cloudwatch_metrics`]), each deployment as
//! a new version of the SSM deployment parameter (as the deploy workflow
//! writes it), task events as EventBridge "ECS Task State Change" events in
//! the task-event log group. The moto end-to-end test replays a local store
//! this way; `aws export` does it for a real run.
//!
//! Lines are rebuilt as JSON from the stored fields (the store keeps the raw
//! line only when it was not JSON); the fields the investigator reads
//! (level, message, route, status) are exactly the stored ones.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StatisticSet};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use demo_model::events::{AlarmTransition, LogRecord, Stream, TaskEventKind};
use demo_model::events::{Deployment, MetricSample, Window};
use demo_store::{Reader, Writer};
use serde::{Deserialize, Serialize};

use crate::sources::cloudwatch_metrics::cloudwatch_dimensions;
use crate::sources::dt;
use crate::sources::ecs::state_change_of;
use crate::sources::ssm_deployments::DeploymentRecord;
use crate::{AwsConfig, AwsError, Clients};

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    pub log_lines: u64,
    pub samples: u64,
    pub deployments: u64,
    pub task_events: u64,
}

/// Everything in the store, as rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreData {
    pub logs: Vec<(i64, String, String)>,
    pub samples: Vec<MetricSample>,
    pub deployments: Vec<Deployment>,
    pub task_events: Vec<demo_model::events::TaskEvent>,
}

/// Reads `w` of a local store.
pub fn read_store(reader: &Reader, w: Window) -> Result<StoreData, AwsError> {
    let err = |e: demo_store::StoreError| AwsError::Api {
        op: "read local store".into(),
        detail: e.to_string(),
    };
    let mut logs = Vec::new();
    reader
        .scan_logs(w, |r| {
            let line = match (r.message, r.line) {
                (Some(m), _) => {
                    let mut o = serde_json::Map::new();
                    if let Some(l) = r.level {
                        o.insert("level".into(), l.into());
                    }
                    o.insert("message".into(), m.into());
                    if let Some(rt) = r.route {
                        o.insert("route".into(), rt.into());
                    }
                    if let Some(s) = r.status {
                        o.insert("status".into(), s.into());
                    }
                    serde_json::Value::Object(o).to_string()
                }
                (None, Some(l)) => l.to_owned(),
                (None, None) => String::new(),
            };
            logs.push((r.ts_ms, r.task_id.to_owned(), line));
        })
        .map_err(err)?;
    let mut samples = Vec::new();
    for (ns, name, dim) in reader.series(w).map_err(err)? {
        samples.extend(reader.samples(&ns, &name, &dim, w).map_err(err)?);
    }
    let mut deployments = reader.deployments(100_000).map_err(err)?;
    deployments.reverse();
    let task_events = reader.task_events(w).map_err(err)?;
    Ok(StoreData {
        logs,
        samples,
        deployments,
        task_events,
    })
}

async fn ensure_group(c: &Clients, group: &str) -> Result<(), AwsError> {
    match c.logs.create_log_group().log_group_name(group).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(crate::api_error(&format!("CreateLogGroup {group}"), e)),
    }
}

/// Puts lines (time, stream, text) into a log group, one stream per name.
async fn put_lines(
    c: &Clients,
    group: &str,
    lines: Vec<(i64, String, String)>,
) -> Result<u64, AwsError> {
    ensure_group(c, group).await?;
    let mut by_stream: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (ts, stream, text) in lines {
        by_stream.entry(stream).or_default().push((ts, text));
    }
    let mut n = 0;
    for (stream, mut events) in by_stream {
        events.sort_by_key(|e| e.0);
        match c
            .logs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(&stream)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(crate::api_error(&format!("CreateLogStream {stream}"), e)),
        }
        // PutLogEvents: at most 10,000 events and 1 MiB (+26 bytes each) per call.
        let mut batch: Vec<InputLogEvent> = Vec::new();
        let mut bytes = 0usize;
        for (ts, text) in events {
            let text = if text.is_empty() {
                " ".to_owned()
            } else {
                text
            };
            if batch.len() == 10_000 || bytes + text.len() + 26 > 1_000_000 {
                n += flush(c, group, &stream, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += text.len() + 26;
            batch.push(
                InputLogEvent::builder()
                    .timestamp(ts)
                    .message(text)
                    .build()
                    .map_err(|e| crate::api_error("InputLogEvent", e))?,
            );
        }
        n += flush(c, group, &stream, batch).await?;
    }
    Ok(n)
}

async fn flush(
    c: &Clients,
    group: &str,
    stream: &str,
    batch: Vec<InputLogEvent>,
) -> Result<u64, AwsError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = batch.len() as u64;
    c.logs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(batch))
        .send()
        .await
        .map_err(|e| crate::api_error(&format!("PutLogEvents {group}/{stream}"), e))?;
    Ok(n)
}

/// Writes the store's data into the services `cfg` names.
pub async fn export(
    c: &Clients,
    cfg: &AwsConfig,
    data: StoreData,
    cluster_arn: &str,
) -> Result<Exported, AwsError> {
    let mut out = Exported::default();
    let lines: Vec<(i64, String, String)> = data
        .logs
        .into_iter()
        .map(|(ts, task, line)| (ts, format!("app/app/{task}"), line))
        .collect();
    out.log_lines = put_lines(c, &cfg.log_group, lines).await?;

    // PutMetricData: up to 1,000 datums per call, one namespace per call.
    let mut by_ns: BTreeMap<String, Vec<MetricDatum>> = BTreeMap::new();
    for s in &data.samples {
        let dims = cloudwatch_dimensions(
            &s.dimension,
            cfg.dimensions
                .get(&s.namespace)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        let mut d = MetricDatum::builder()
            .metric_name(&s.name)
            .timestamp(dt(s.ts_ms))
            .set_dimensions(Some(
                dims.into_iter()
                    .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                    .collect(),
            ));
        d = if (s.count - 1.0).abs() < f64::EPSILON {
            d.value(s.value)
        } else {
            d.statistic_values(
                StatisticSet::builder()
                    .sample_count(s.count)
                    .sum(s.value * s.count)
                    .minimum(s.value)
                    .maximum(s.value)
                    .build(),
            )
        };
        by_ns
            .entry(s.namespace.clone())
            .or_default()
            .push(d.build());
    }
    for (ns, datums) in by_ns {
        for chunk in datums.chunks(1000) {
            c.cloudwatch
                .put_metric_data()
                .namespace(&ns)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| crate::api_error(&format!("PutMetricData {ns}"), e))?;
            out.samples += chunk.len() as u64;
        }
    }

    for d in &data.deployments {
        let value = serde_json::to_string(&DeploymentRecord::from_deployment(d)).map_err(|e| {
            AwsError::Api {
                op: "deployment record".into(),
                detail: e.to_string(),
            }
        })?;
        c.ssm
            .put_parameter()
            .name(&cfg.deployment_parameter)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| {
                crate::api_error(&format!("PutParameter {}", cfg.deployment_parameter), e)
            })?;
        out.deployments += 1;
    }

    if let Some(group) = &cfg.task_events_log_group {
        let lines = data
            .task_events
            .iter()
            .map(|e| {
                let sc = state_change_of(e, cluster_arn);
                (
                    e.ts_ms,
                    "ecs-task-state-change".to_owned(),
                    serde_json::to_string(&sc).unwrap_or_default(),
                )
            })
            .collect();
        out.task_events = put_lines(c, group, lines).await?;
    }
    Ok(out)
}

impl StoreData {
    /// Stretches time around `anchor_ms` by `factor`: a run at time scale 20
    /// becomes one at real-time pace, so CloudWatch's one-second resolution
    /// holds it as well as the local store did (its periods become the
    /// catalogue's real ones). Values are unchanged.
    pub fn stretched(mut self, anchor_ms: i64, factor: f64) -> StoreData {
        let f = |t: i64| anchor_ms + ((t - anchor_ms) as f64 * factor).round() as i64;
        for l in &mut self.logs {
            l.0 = f(l.0);
        }
        for s in &mut self.samples {
            s.ts_ms = f(s.ts_ms);
        }
        for d in &mut self.deployments {
            d.started_ms = f(d.started_ms);
            d.finished_ms = d.finished_ms.map(f);
        }
        for e in &mut self.task_events {
            e.ts_ms = f(e.ts_ms);
        }
        self
    }

    /// The rows as AWS can hold them. CloudWatch keeps metric datapoints at
    /// one-second resolution at best, so sample times are floored to
    /// `resolution_s`; an ECS task state change has a stopped reason but no
    /// text for a task that started or turned healthy, so those events lose
    /// their reason (the local runtime writes "listening on ..." and "Health
    /// checks passed" there).
    pub fn as_aws_records_it(mut self, resolution_s: i64) -> StoreData {
        let r = resolution_s.max(1) * 1000;
        for s in &mut self.samples {
            s.ts_ms = s.ts_ms.div_euclid(r) * r;
        }
        for e in &mut self.task_events {
            if matches!(e.kind, TaskEventKind::Started | TaskEventKind::Healthy) {
                e.reason = None;
            }
        }
        self
    }

    /// Writes the rows into a local store (the test's local side).
    pub fn write_to(&self, w: &Writer) -> Result<(), AwsError> {
        let err = |e: demo_store::StoreError| AwsError::Api {
            op: "write local store".into(),
            detail: e.to_string(),
        };
        for d in &self.deployments {
            w.deployment(d).map_err(err)?;
        }
        for (ts, task, line) in &self.logs {
            w.log(LogRecord::from_line(
                *ts,
                task,
                Stream::Stdout,
                line.clone(),
            ));
        }
        for s in &self.samples {
            w.metric(s.clone());
        }
        for e in &self.task_events {
            w.task_event(e.clone());
        }
        w.flush();
        Ok(())
    }
}

/// A local run, frozen: the ALARM transition a scenario investigated, the
/// time scale it ran at, and every row of the store around it. Written by
/// `devops-agent-demo aws export --snapshot FILE` (gzip JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub scenario: String,
    pub time_scale: f64,
    pub transition: AlarmTransition,
    pub data: StoreData,
}

impl Snapshot {
    pub fn write_gz(&self, path: &std::path::Path) -> Result<(), AwsError> {
        use std::io::Write;
        let io = |e: std::io::Error| AwsError::Api {
            op: format!("write {}", path.display()),
            detail: e.to_string(),
        };
        let f = std::fs::File::create(path).map_err(io)?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
        serde_json::to_writer(&mut gz, self).map_err(|e| AwsError::Api {
            op: format!("write {}", path.display()),
            detail: e.to_string(),
        })?;
        gz.finish().map_err(io)?.flush().map_err(io)
    }

    pub fn read_gz(path: &std::path::Path) -> Result<Snapshot, AwsError> {
        let f = std::fs::File::open(path).map_err(|e| AwsError::Api {
            op: format!("read {}", path.display()),
            detail: e.to_string(),
        })?;
        serde_json::from_reader(flate2::read::GzDecoder::new(std::io::BufReader::new(f))).map_err(
            |e| AwsError::Api {
                op: format!("read {}", path.display()),
                detail: format!("not a gzip JSON snapshot: {e}"),
            },
        )
    }
}

/// The snapshot of a local state directory: the first ALARM transition of
/// `alarm` (or the latest at or before `at`) and every row from two hours
/// before it to five minutes after (time-scaled).
pub fn snapshot_of(
    state_dir: &std::path::Path,
    scenario: &str,
    alarm: &str,
    at: Option<i64>,
    time_scale: f64,
) -> Result<Snapshot, AwsError> {
    let reader = Reader::open(state_dir).map_err(|e| AwsError::Api {
        op: format!("open {}", state_dir.display()),
        detail: e.to_string(),
    })?;
    let transition = investigator::latest_alarm_transition(&reader, alarm, at)
        .map_err(|e| AwsError::Investigate(e.to_string()))?;
    let before = (7_200_000.0 / time_scale) as i64;
    let after = (300_000.0 / time_scale) as i64;
    let w = Window::new(transition.at_ms - before, transition.at_ms + after);
    Ok(Snapshot {
        scenario: scenario.to_owned(),
        time_scale,
        data: read_store(&reader, w)?,
        transition,
    })
}
