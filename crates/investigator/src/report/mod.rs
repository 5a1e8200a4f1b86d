//! The report: the JSON contract (these types, and the committed schema
//! `schema/report.schema.json` that tests validate them against) and its two
//! human renderings, [`markdown`] and [`html`]. Rendering reads only the
//! report, so a stored report can be shown again in any format.

pub mod html;
pub mod markdown;

use serde::{Deserialize, Serialize};

use crate::sources::Commit;

/// The schema version written into every report.
pub const SCHEMA_VERSION: u32 = 1;

/// The committed JSON Schema.
pub const SCHEMA: &str = include_str!("../../schema/report.schema.json");

/// Root-cause categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    CodeChange,
    ApplicationFault,
    MemoryLeak,
    CpuSaturation,
    HealthCheckFailure,
    SlowDependency,
    TrafficSurge,
    CrashLoop,
    InsufficientEvidence,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::CodeChange => "code_change",
            Category::ApplicationFault => "application_fault",
            Category::MemoryLeak => "memory_leak",
            Category::CpuSaturation => "cpu_saturation",
            Category::HealthCheckFailure => "health_check_failure",
            Category::SlowDependency => "slow_dependency",
            Category::TrafficSurge => "traffic_surge",
            Category::CrashLoop => "crash_loop",
            Category::InsufficientEvidence => "insufficient_evidence",
        }
    }
    /// Words for sentences ("a code change").
    pub fn phrase(self) -> &'static str {
        match self {
            Category::CodeChange => "a bad deployment",
            Category::ApplicationFault => "an application fault",
            Category::MemoryLeak => "a memory leak",
            Category::CpuSaturation => "CPU saturation",
            Category::HealthCheckFailure => "failing health checks",
            Category::SlowDependency => "a slow dependency (timeouts)",
            Category::TrafficSurge => "a traffic surge",
            Category::CrashLoop => "a crash loop",
            Category::InsufficientEvidence => "insufficient evidence",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub ts_ms: i64,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmInfo {
    pub name: String,
    pub transition_id: i64,
    pub from: String,
    pub to: String,
    pub at_ms: i64,
    pub reason: String,
    pub namespace: String,
    pub metric: String,
    pub dimension: String,
    pub statistic: String,
    pub comparison: String,
    pub threshold: f64,
    pub period_ms: i64,
    pub evaluation_periods: u32,
    /// The datapoints the alarm evaluated, newest first (from its reason data).
    pub evaluated: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    pub analysis: Span,
    pub baseline: Span,
    pub incident: Span,
    /// When the incident began, as estimated from the change points.
    pub onset_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    pub text: String,
    pub requests: f64,
    pub errors_5xx: f64,
    pub error_rate: f64,
    pub baseline_error_rate: f64,
    pub p99_latency_s: Option<f64>,
    pub baseline_p99_latency_s: Option<f64>,
    pub affected_routes: Vec<String>,
    pub affected_tasks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub ts_ms: i64,
    pub kind: String,
    pub text: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootCause {
    pub category: Category,
    pub entity: Option<String>,
    pub confidence: f64,
    pub confidence_label: String,
    pub statement: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub rank: u32,
    pub category: Category,
    pub entity: Option<String>,
    /// 0–1; also the confidence.
    pub score: f64,
    pub confidence_label: String,
    pub statement: String,
    pub evidence_for: Vec<String>,
    pub evidence_against: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `E1`, `E2`, ...: what the report text cites.
    pub id: String,
    /// `alarm`, `metric_change`, `trend`, `log_template`, `route`,
    /// `deployment`, `code`, `task_event`, `absence`.
    pub kind: String,
    pub summary: String,
    pub ts_ms: Option<i64>,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeMatch {
    pub file: String,
    pub line_no: u32,
    pub text: String,
    pub needle: String,
    pub kind: String,
    pub origin: String,
    /// For a tree line: the commit that introduced it (`<short sha> <summary>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeCorrelation {
    pub deployment_id: String,
    pub from_sha: Option<String>,
    pub to_sha: String,
    pub commits: Vec<Commit>,
    pub files: Vec<String>,
    pub matches: Vec<CodeMatch>,
    pub evidence: Vec<String>,
}

/// One side of a deployment cohort comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortRow {
    /// `new` (the deployment's tasks) or `old` (every other task).
    pub cohort: String,
    pub tasks: Vec<String>,
    pub requests: u64,
    /// 5xx answers or ERROR lines, whichever the task showed more of.
    pub failures: u64,
    pub failure_rate: f64,
    pub cpu_mean: Option<f64>,
    /// Percentage points of the memory limit per alarm period.
    pub memory_slope_per_period: Option<f64>,
    /// Crashes and OOM kills since the deployment started.
    pub exits: usize,
    /// Incident-window (route, requests, failures), worst first.
    pub routes: Vec<(String, u64, u64)>,
}

/// Old vs new tasks of one deployment, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortTable {
    pub deployment_id: String,
    /// `confined`, `started_with_new`, `both`, `before_new`,
    /// `clean_before_onset` or `inconclusive`.
    pub verdict: String,
    /// The verdict in words.
    pub verdict_text: String,
    /// Whether both cohorts served side by side in the compared span.
    pub overlap: bool,
    pub from_ms: i64,
    pub to_ms: i64,
    pub baseline_failure_rate: f64,
    pub rows: Vec<CohortRow>,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    pub command: String,
    pub why: String,
    /// Rank of the hypothesis it addresses.
    pub hypothesis_rank: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub source: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub id: String,
    pub ts_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmChart {
    pub title: String,
    /// Per-period datapoints of the alarm's statistic.
    pub points: Vec<Point>,
    pub threshold: f64,
    pub deployments: Vec<Marker>,
    pub onset_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSeries {
    pub template: String,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateChart {
    pub start_ms: i64,
    pub bucket_ms: i64,
    pub series: Vec<TemplateSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charts {
    pub alarm_metric: AlarmChart,
    pub templates: TemplateChart,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub log_lines: u64,
    pub metric_series: usize,
    pub task_events: usize,
    pub deployments: usize,
    pub duration_ms: u64,
}

/// An investigation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub id: String,
    pub created_ms: i64,
    pub alarm: AlarmInfo,
    pub windows: Windows,
    /// One sentence: what broke, why, since when.
    pub summary: String,
    pub impact: Impact,
    pub timeline: Vec<TimelineEntry>,
    pub root_cause: RootCause,
    pub hypotheses: Vec<Hypothesis>,
    pub evidence: Vec<Evidence>,
    pub code_correlation: Vec<CodeCorrelation>,
    /// Old vs new tasks of each deployment that started tasks (reports
    /// written before cohorts existed have none).
    #[serde(default)]
    pub cohorts: Vec<CohortTable>,
    pub mitigation: Vec<Mitigation>,
    pub gaps: Vec<Gap>,
    pub charts: Charts,
    pub stats: Stats,
}

/// Confidence label for a score.
pub fn confidence_label(score: f64) -> &'static str {
    if score >= 0.7 {
        "high"
    } else if score >= 0.45 {
        "medium"
    } else {
        "low"
    }
}

/// `2024-05-12T10:00:03.250Z` for an epoch-ms time (UTC, no dependency).
pub fn fmt_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// `1m 30s`, `4.5s`, `250ms`.
pub fn fmt_duration(ms: i64) -> String {
    let a = ms.unsigned_abs();
    let s = if a >= 60_000 {
        format!("{}m {}s", a / 60_000, (a % 60_000) / 1000)
    } else if a >= 1000 {
        format!("{:.1}s", a as f64 / 1000.0)
    } else {
        format!("{a}ms")
    };
    if ms < 0 { format!("-{s}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(fmt_time(1_715_508_000_250), "2024-05-12T10:00:00.250Z");
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_duration(90_500), "1m 30s");
        assert_eq!(fmt_duration(-4_500), "-4.5s");
    }
}
