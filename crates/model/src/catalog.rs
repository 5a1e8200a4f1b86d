//! The observability catalogue: alarms, metric filters, health check and task
//! size, defined once and read by both Terraform and the local runtime.
//!
//! Parsing is two-stage, as for all configuration in this project: `parse`
//! deserialises (unknown fields are errors) and `validate` checks every value,
//! collecting *all* problems so a user fixes them in one pass.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Path of the catalogue relative to the repository root.
pub const DEFAULT_PATH: &str = "config/observability.yaml";

/// The catalogue as committed, embedded at build time so binaries work from any directory.
pub const EMBEDDED: &str = include_str!("../../../config/observability.yaml");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    // The cause is part of the message, not a `source`: printed as a chain
    // (`{:#}`) it would otherwise appear twice.
    #[error("cannot read catalogue {path}: {message}")]
    Read { path: String, message: String },
    #[error("catalogue {origin} is not valid YAML for the catalogue schema: {message}")]
    Parse { origin: String, message: String },
    #[error("catalogue {origin} has {} invalid value(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub service: Service,
    pub task: Task,
    pub health_check: HealthCheck,
    pub logs: Logs,
    pub metric_filters: Vec<MetricFilter>,
    pub alarms: Vec<Alarm>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub environment: String,
    pub container_port: u16,
    pub desired_count: u32,
    pub deployment: Deployment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub maximum_percent: u32,
    pub minimum_healthy_percent: u32,
    pub circuit_breaker: CircuitBreaker,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// ECS CPU units; 1024 = one vCPU.
    pub cpu_units: u32,
    pub memory_mib: u32,
    pub stop_timeout_seconds: u32,
}

impl Task {
    /// The task's CPU allowance in cores (256 units = 0.25).
    pub fn vcpu(&self) -> f64 {
        f64::from(self.cpu_units) / 1024.0
    }

    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mib) * 1024 * 1024
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub group: String,
    pub retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilter {
    pub name: String,
    /// CloudWatch Logs JSON filter pattern, e.g. `{ $.level = "ERROR" }`.
    pub pattern: String,
    pub metric_namespace: String,
    pub metric_name: String,
    pub metric_value: String,
    pub default_value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Dimensions,
    pub statistic: Statistic,
    pub comparison: Comparison,
    pub threshold: f64,
    pub unit: String,
    pub period_seconds: u32,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub treat_missing_data: TreatMissingData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimensions {
    Service,
    TargetGroup,
    LoadBalancer,
    None,
}

/// A CloudWatch statistic: a plain one or a percentile (extended statistic).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Statistic {
    Average,
    Sum,
    Maximum,
    Minimum,
    SampleCount,
    /// Percentile in (0, 100], e.g. 99.0 for `p99`.
    Percentile(f64),
}

impl Statistic {
    /// True for percentiles, which CloudWatch calls extended statistics.
    pub fn is_extended(&self) -> bool {
        matches!(self, Statistic::Percentile(_))
    }
}

impl TryFrom<String> for Statistic {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "Average" => Statistic::Average,
            "Sum" => Statistic::Sum,
            "Maximum" => Statistic::Maximum,
            "Minimum" => Statistic::Minimum,
            "SampleCount" => Statistic::SampleCount,
            other => {
                let p = other
                    .strip_prefix('p')
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|p| *p > 0.0 && *p <= 100.0);
                match p {
                    Some(p) => Statistic::Percentile(p),
                    None => {
                        return Err(format!(
                            "unknown statistic {other:?}: expected Average, Sum, Maximum, Minimum, SampleCount or pNN (e.g. p99)"
                        ));
                    }
                }
            }
        })
    }
}

impl From<Statistic> for String {
    fn from(s: Statistic) -> String {
        s.to_string()
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statistic::Average => f.write_str("Average"),
            Statistic::Sum => f.write_str("Sum"),
            Statistic::Maximum => f.write_str("Maximum"),
            Statistic::Minimum => f.write_str("Minimum"),
            Statistic::SampleCount => f.write_str("SampleCount"),
            Statistic::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

/// CloudWatch `ComparisonOperator` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    GreaterThanThreshold,
    GreaterThanOrEqualToThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    /// Whether `value` breaches `threshold` under this operator.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanThreshold => value > threshold,
            Comparison::GreaterThanOrEqualToThreshold => value >= threshold,
            Comparison::LessThanThreshold => value < threshold,
            Comparison::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::GreaterThanThreshold => ">",
            Comparison::GreaterThanOrEqualToThreshold => ">=",
            Comparison::LessThanThreshold => "<",
            Comparison::LessThanOrEqualToThreshold => "<=",
        }
    }
}

/// CloudWatch `TreatMissingData` values (spelled as AWS spells them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissingData {
    Missing,
    NotBreaching,
    Breaching,
    Ignore,
}

impl Catalog {
    /// The catalogue committed with this build.
    pub fn embedded() -> Catalog {
        Catalog::parse(EMBEDDED, "config/observability.yaml (embedded)")
            .and_then(|c| c.validated("config/observability.yaml (embedded)"))
            .expect("the committed catalogue is valid (checked by tests)")
    }

    /// Reads, parses and validates a catalogue file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError::Read {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        Catalog::parse(&text, &origin)?.validated(&origin)
    }

    /// Stage one: deserialise. Unknown or missing fields are errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        serde_yaml_ng::from_str(text).map_err(|e| CatalogError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    fn validated(self, origin: &str) -> Result<Catalog, CatalogError> {
        let problems = self.validate();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(CatalogError::Invalid {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// Stage two: every semantic problem, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let s = &self.service;
        if s.name.is_empty() {
            p.push("service.name: must not be empty".into());
        }
        if s.container_port == 0 {
            p.push("service.container_port: must be 1-65535".into());
        }
        if s.desired_count == 0 {
            p.push("service.desired_count: must be at least 1".into());
        }
        let d = &s.deployment;
        if d.maximum_percent < 100 {
            p.push(format!(
                "service.deployment.maximum_percent: {} is below 100",
                d.maximum_percent
            ));
        }
        if d.minimum_healthy_percent > 100 {
            p.push(format!(
                "service.deployment.minimum_healthy_percent: {} is above 100",
                d.minimum_healthy_percent
            ));
        }
        if d.maximum_percent <= d.minimum_healthy_percent {
            p.push("service.deployment: maximum_percent must exceed minimum_healthy_percent or no task can be replaced".into());
        }
        // Fargate's valid CPU sizes.
        if ![256, 512, 1024, 2048, 4096, 8192, 16384].contains(&self.task.cpu_units) {
            p.push(format!(
                "task.cpu_units: {} is not a Fargate size (256, 512, 1024, 2048, 4096, 8192, 16384)",
                self.task.cpu_units
            ));
        }
        if self.task.memory_mib < 512 {
            p.push(format!(
                "task.memory_mib: {} is below Fargate's minimum of 512",
                self.task.memory_mib
            ));
        }
        if self.task.stop_timeout_seconds == 0 || self.task.stop_timeout_seconds > 120 {
            p.push("task.stop_timeout_seconds: must be 1-120 (ECS limit)".into());
        }
        let h = &self.health_check;
        if !h.path.starts_with('/') {
            p.push(format!(
                "health_check.path: {:?} must start with '/'",
                h.path
            ));
        }
        if !(5..=300).contains(&h.interval_seconds) {
            p.push("health_check.interval_seconds: must be 5-300 (ALB limit)".into());
        }
        if !(2..=120).contains(&h.timeout_seconds) || h.timeout_seconds >= h.interval_seconds {
            p.push(
                "health_check.timeout_seconds: must be 2-120 and shorter than the interval".into(),
            );
        }
        for (field, v) in [
            ("healthy_threshold", h.healthy_threshold),
            ("unhealthy_threshold", h.unhealthy_threshold),
        ] {
            if !(2..=10).contains(&v) {
                p.push(format!(
                    "health_check.{field}: {v} is outside 2-10 (ALB limit)"
                ));
            }
        }
        if ![1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365].contains(&self.logs.retention_days) {
            p.push(format!(
                "logs.retention_days: {} is not a CloudWatch Logs retention value",
                self.logs.retention_days
            ));
        }
        for (i, f) in self.metric_filters.iter().enumerate() {
            if f.pattern.trim().is_empty() {
                p.push(format!("metric_filters[{i}].pattern: must not be empty"));
            }
            if f.metric_name.is_empty() {
                p.push(format!(
                    "metric_filters[{i}].metric_name: must not be empty"
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.alarms.iter().enumerate() {
            let at = format!("alarms[{i}] ({})", a.name);
            if !names.insert(a.name.as_str()) {
                p.push(format!("{at}.name: duplicate alarm name"));
            }
            let period_ok = match a.period_seconds {
                10 | 30 => true,
                secs => secs >= 60 && secs % 60 == 0,
            };
            if !period_ok {
                p.push(format!(
                    "{at}.period_seconds: {} must be 10, 30 or a multiple of 60",
                    a.period_seconds
                ));
            }
            if a.evaluation_periods == 0 {
                p.push(format!("{at}.evaluation_periods: must be at least 1"));
            }
            if a.datapoints_to_alarm == 0 || a.datapoints_to_alarm > a.evaluation_periods {
                p.push(format!(
                    "{at}.datapoints_to_alarm: {} must be 1..=evaluation_periods ({})",
                    a.datapoints_to_alarm, a.evaluation_periods
                ));
            }
            if !a.threshold.is_finite() {
                p.push(format!("{at}.threshold: must be a finite number"));
            }
            if a.dimensions == Dimensions::None
                && !self
                    .metric_filters
                    .iter()
                    .any(|f| f.metric_name == a.metric_name && f.metric_namespace == a.namespace)
            {
                p.push(format!(
                    "{at}: custom metric {}/{} is produced by no metric filter",
                    a.namespace, a.metric_name
                ));
            }
            // Running tasks are compared with the service's floor (desired_count, the
            // autoscaling minimum): a threshold that drifted from it alarms on the wrong count.
            if a.metric_name == "RunningTaskCount"
                && matches!(
                    a.comparison,
                    Comparison::LessThanThreshold | Comparison::LessThanOrEqualToThreshold
                )
            {
                let floor = f64::from(s.desired_count);
                let want = match a.comparison {
                    Comparison::LessThanThreshold => floor,
                    _ => floor - 1.0,
                };
                if a.threshold != want {
                    p.push(format!(
                        "{at}.threshold: {} {} does not match service.desired_count {} (want {want})",
                        a.comparison.symbol(),
                        a.threshold,
                        s.desired_count
                    ));
                }
            }
        }
        p
    }

    pub fn alarm(&self, name: &str) -> Option<&Alarm> {
        self.alarms.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_catalogue_is_valid_and_has_the_seed_alarms() {
        let c = Catalog::embedded();
        let names: Vec<_> = c.alarms.iter().map(|a| a.name.as_str()).collect();
        for want in [
            "cpu-high",
            "memory-high",
            "unhealthy-targets",
            "high-5xx-errors",
            "error-count-high",
            "latency-p99-high",
            "tasks-below-desired",
            "elb-5xx-errors",
        ] {
            assert!(names.contains(&want), "missing alarm {want}");
        }
        let t = c.alarm("tasks-below-desired").unwrap();
        assert_eq!(t.comparison, Comparison::LessThanThreshold);
        assert_eq!(t.threshold, f64::from(c.service.desired_count));
        let e = c.alarm("error-count-high").unwrap();
        assert_eq!((e.threshold, e.evaluation_periods), (10.0, 1));
        assert_eq!(c.task.vcpu(), 0.25);
        assert_eq!(c.task.memory_bytes(), 512 * 1024 * 1024);
        assert_eq!(c.metric_filters[0].pattern, r#"{ $.level = "ERROR" }"#);
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let mut c = Catalog::embedded();
        c.task.cpu_units = 300;
        c.health_check.path = "health".into();
        c.alarms[0].datapoints_to_alarm = 5;
        c.alarms[1].name = c.alarms[0].name.clone();
        let problems = c.validate();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems.iter().any(|p| p.starts_with("task.cpu_units")));
        assert!(problems.iter().any(|p| p.starts_with("health_check.path")));
        assert!(problems.iter().any(|p| p.contains("datapoints_to_alarm")));
        assert!(problems.iter().any(|p| p.contains("duplicate alarm name")));
    }

    #[test]
    fn a_running_task_alarm_follows_the_desired_count() {
        let mut c = Catalog::embedded();
        c.service.desired_count = 3;
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("tasks-below-desired") && problems[0].contains("desired_count 3"),
            "{problems:#?}"
        );
    }

    #[test]
    fn unknown_fields_and_statistics_are_rejected_with_their_name() {
        let text = EMBEDDED.replace("statistic: Average", "statistic: Mean");
        let err = Catalog::parse(&text, "t").unwrap_err().to_string();
        assert!(err.contains("unknown statistic \"Mean\""), "{err}");
        let text = EMBEDDED.replace("retention_days: 7", "retention_days: 7\n  colour: red");
        let err = Catalog::parse(&text, "t").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn percentile_statistics_round_trip() {
        let s = Statistic::try_from("p99".to_string()).unwrap();
        assert_eq!(s, Statistic::Percentile(99.0));
        assert!(s.is_extended());
        assert_eq!(s.to_string(), "p99");
        assert!(Statistic::try_from("p0".to_string()).is_err());
        assert!(Statistic::try_from("p101".to_string()).is_err());
    }
}
