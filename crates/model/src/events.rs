//! Plain data that flows from the local runtime (or, later, AWS) to the
//! investigator: log records, metric samples, alarm transitions, deployments
//! and task lifecycle events. No behaviour beyond small helpers: the store
//! persists these, sources return them, analyzers read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type EpochMs = i64;

/// The wall clock as [`EpochMs`], the time base of every record (0 if the
/// clock is set before 1970). The one definition every crate uses.
pub fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EpochMs)
}

/// A closed-open time window `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
}

impl Window {
    pub fn new(start_ms: EpochMs, end_ms: EpochMs) -> Window {
        Window { start_ms, end_ms }
    }
    pub fn contains(&self, t: EpochMs) -> bool {
        t >= self.start_ms && t < self.end_ms
    }
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line a task wrote, with the fields the pipeline extracted when the
/// line was JSON (the raw line is always kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub ts_ms: EpochMs,
    pub task_id: String,
    pub stream: Stream,
    pub level: Option<String>,
    pub message: Option<String>,
    pub route: Option<String>,
    pub status: Option<u16>,
    pub line: String,
}

impl LogRecord {
    /// Builds a record from a raw line, extracting level/message/route/status from JSON.
    pub fn from_line(ts_ms: EpochMs, task_id: &str, stream: Stream, line: String) -> LogRecord {
        let parsed: Option<serde_json::Value> = if line.starts_with('{') {
            serde_json::from_str(&line).ok()
        } else {
            None
        };
        LogRecord::from_parsed(ts_ms, task_id, stream, line, parsed.as_ref())
    }

    /// Same, when the caller already parsed the line (the pipeline parses once).
    pub fn from_parsed(
        ts_ms: EpochMs,
        task_id: &str,
        stream: Stream,
        line: String,
        json: Option<&serde_json::Value>,
    ) -> LogRecord {
        let field = |k: &str| {
            json.and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        LogRecord {
            ts_ms,
            task_id: task_id.to_owned(),
            stream,
            level: field("level"),
            message: field("message"),
            route: field("route"),
            status: json
                .and_then(|v| v.get("status"))
                .and_then(|v| v.as_u64())
                .and_then(|s| u16::try_from(s).ok()),
            line,
        }
    }
}

/// Namespaces used for metric samples.
pub mod ns {
    pub const ECS: &str = "AWS/ECS";
    pub const ALB: &str = "AWS/ApplicationELB";
    /// ECS Container Insights (where CloudWatch publishes `RunningTaskCount`).
    pub const CONTAINER_INSIGHTS: &str = "ECS/ContainerInsights";
    /// Per-route request counters scraped from the tasks' `/metrics`.
    pub const APP: &str = "App";
}

/// The dimension value meaning "the whole service / the target group".
pub const SERVICE_DIMENSION: &str = "service";

/// One metric observation. `count` > 1 means `value` stands for that many
/// identical observations (a histogram bucket), as CloudWatch statistic sets do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub ts_ms: EpochMs,
    pub namespace: String,
    pub name: String,
    /// `service` for service/target-group level series, a task id for per-task
    /// series, or `route=...,status=...` for per-route app series.
    pub dimension: String,
    pub value: f64,
    pub count: f64,
}

impl MetricSample {
    pub fn new(ts_ms: EpochMs, namespace: &str, name: &str, dimension: &str, value: f64) -> Self {
        MetricSample {
            ts_ms,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimension: dimension.to_owned(),
            value,
            count: 1.0,
        }
    }
}

/// A persisted alarm state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmTransition {
    /// Store id; 0 before it is stored.
    pub id: i64,
    pub alarm: String,
    pub from: String,
    pub to: String,
    pub at_ms: EpochMs,
    pub reason: String,
    /// CloudWatch-style structured reason (datapoints, threshold, ...).
    pub reason_data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentOutcome {
    InProgress,
    Completed,
    RolledBack,
    Failed,
}

impl DeploymentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentOutcome::InProgress => "in_progress",
            DeploymentOutcome::Completed => "completed",
            DeploymentOutcome::RolledBack => "rolled_back",
            DeploymentOutcome::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_progress" => DeploymentOutcome::InProgress,
            "completed" => DeploymentOutcome::Completed,
            "rolled_back" => DeploymentOutcome::RolledBack,
            "failed" => DeploymentOutcome::Failed,
            _ => return None,
        })
    }
}

/// One configuration key that a deployment changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A deployment record, like the SSM deployment metadata in AWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub started_ms: EpochMs,
    pub finished_ms: Option<EpochMs>,
    pub version: String,
    /// Commit the deployed binary was built from.
    pub git_sha: String,
    /// Task environment (secrets never stored: values of keys containing TOKEN/SECRET/PASSWORD are redacted).
    pub env: BTreeMap<String, String>,
    pub changes: Vec<ConfigChange>,
    pub outcome: DeploymentOutcome,
    pub previous_id: Option<String>,
    pub description: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEventKind {
    Started,
    Healthy,
    Unhealthy,
    Draining,
    Stopped,
    OomKilled,
}

impl TaskEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEventKind::Started => "started",
            TaskEventKind::Healthy => "healthy",
            TaskEventKind::Unhealthy => "unhealthy",
            TaskEventKind::Draining => "draining",
            TaskEventKind::Stopped => "stopped",
            TaskEventKind::OomKilled => "oom_killed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "started" => TaskEventKind::Started,
            "healthy" => TaskEventKind::Healthy,
            "unhealthy" => TaskEventKind::Unhealthy,
            "draining" => TaskEventKind::Draining,
            "stopped" => TaskEventKind::Stopped,
            "oom_killed" => TaskEventKind::OomKilled,
            _ => return None,
        })
    }
}

/// A task lifecycle event (ECS task state change / target health change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub ts_ms: EpochMs,
    pub task_id: String,
    pub kind: TaskEventKind,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub deployment_id: Option<String>,
}

/// Masks secret-looking values before a deployment's environment is stored or shown.
pub fn redact_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let secret = ["TOKEN", "SECRET", "PASSWORD", "KEY"]
                .iter()
                .any(|s| k.to_ascii_uppercase().contains(s));
            (
                k.clone(),
                if secret {
                    "<redacted>".into()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_is_the_wall_clock_in_milliseconds() {
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as EpochMs
        };
        let before = ms(std::time::SystemTime::now());
        let now = now_ms();
        let after = ms(std::time::SystemTime::now());
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn log_records_extract_json_fields_and_keep_the_line() {
        let line =
            r#"{"timestamp":"t","level":"ERROR","message":"boom","route":"/api/x","status":500}"#;
        let r = LogRecord::from_line(5, "t1", Stream::Stdout, line.into());
        assert_eq!(r.level.as_deref(), Some("ERROR"));
        assert_eq!(r.message.as_deref(), Some("boom"));
        assert_eq!(r.route.as_deref(), Some("/api/x"));
        assert_eq!(r.status, Some(500));
        assert_eq!(r.line, line);
        let r = LogRecord::from_line(5, "t1", Stream::Stderr, "plain text".into());
        assert!(r.level.is_none() && r.message.is_none());
    }

    #[test]
    fn secrets_are_redacted() {
        let env: BTreeMap<_, _> = [
            ("FAULT_TOKEN", "s3cr3t-value-123456"),
            ("LOG_LEVEL", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = redact_env(&env);
        assert_eq!(r["FAULT_TOKEN"], "<redacted>");
        assert_eq!(r["LOG_LEVEL"], "info");
    }
}
