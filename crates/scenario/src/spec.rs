//! The scenario file format: what a scenario says, as types. Reading a file
//! (collecting every problem at once) and validating it against the alarm
//! catalogue live in [`crate::parse`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../scenarios/", $name, ".yaml")))),*]
    };
}

/// The shipped scenarios, embedded so the CLI works from any directory.
/// `every_scenario_file_is_embedded` keeps this list and `scenarios/` in step.
pub const EMBEDDED: &[(&str, &str)] = embedded![
    "error-spike",
    "memory-leak",
    "cpu-spike",
    "unhealthy-targets",
    "slow-responses",
    "bad-deploy",
    "red-herring",
    "false-alarm",
    "two-faults",
    "git-revision-deploy",
    "config-key-unrelated-words",
    "innocent-deploy-shared-words",
    "crash-loop-one-task",
    "crash-loop-all-tasks",
    "slow-leak",
    "false-alarm-steady",
    "error-spike-quote",
    "slow-product-lookups",
    "cpu-after-deploy",
    "unhealthy-second-task",
    "two-faults-cpu-and-quotes",
    "leak-after-deploy",
    "errors-one-task",
    "slow-quotes-one-task",
    "traffic-surge",
    "traffic-surge-quotes",
    "cpu-starved-health-checks",
    "leak-one-task-oom",
];

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {name}: {message}")]
    Syntax { name: String, message: String },
    #[error("scenario {name} has {} problem(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid { name: String, problems: Vec<String> },
    #[error("no scenario named {0:?} (see `scenario list`)")]
    Unknown(String),
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{} scenario file(s) in {dir} are invalid:\n{}", .errors.len(), .errors.join("\n"))]
    Dir { dir: String, errors: Vec<String> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Time scale used when the command line gives none.
    #[serde(default = "default_scale")]
    pub time_scale: f64,
    /// Catalogue seconds of steady traffic before the first step: the
    /// investigator's baseline, and the history an alarm is judged against.
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    pub traffic: Traffic,
    pub steps: Vec<Step>,
    pub expect: Expect,
    #[serde(default)]
    pub recover: Recover,
    /// The file it was read from (patches are found relative to it); `None` when shipped.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

pub(crate) fn default_scale() -> f64 {
    20.0
}
pub(crate) fn default_warmup() -> u32 {
    180
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Requests per catalogue second (multiplied by the time scale, so every
    /// alarm period sees the same number of requests at any scale).
    pub rate: f64,
    /// `default`, or `with-reports` (adds the slow sales report to the mix).
    #[serde(default = "default_mix")]
    pub mix: String,
}

pub(crate) fn default_mix() -> String {
    "default".into()
}

/// One action, `at` catalogue seconds after the warm-up (or after recovery
/// starts), optionally repeated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub at: u32,
    /// Do it again every `every` catalogue seconds, `times` times in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub every: u32,
    pub times: u32,
}

/// The keys a step may use for its action (one per step).
pub const ACTIONS: &[&str] = &[
    "fault",
    "deploy",
    "rollback",
    "rate",
    "ramp",
    "route_ramp",
    "mix",
    "wait_deployment",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Call a fault endpoint on tasks. `{s:N}` in the path becomes N catalogue
    /// seconds in real seconds, `{ms:N}` N catalogue milliseconds in real ones,
    /// at the run's time scale. `target`: `all`, `one`
    /// (the oldest running task), `newest` (the latest started) or a task id.
    Fault {
        path: String,
        #[serde(default = "default_target")]
        target: String,
    },
    /// Roll out a configuration change and/or another build of the service.
    Deploy(DeploySpec),
    /// Roll back to the deployment before the latest one.
    Rollback,
    /// Change the traffic rate (requests per catalogue second).
    Rate(f64),
    /// Change the traffic rate linearly to `to` over `over` catalogue seconds.
    Ramp(Ramp),
    /// Extra requests on one route, on top of the mix: their rate moves
    /// linearly to `to` (requests per catalogue second, 0 stops them) over
    /// `over` catalogue seconds.
    RouteRamp(RouteRamp),
    /// Change the traffic mix (`default` or `with-reports`).
    Mix(String),
    /// Block until the deployment in progress completes.
    WaitDeployment,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub version: Option<String>,
    #[serde(default)]
    pub description: String,
    /// A git revision to build `demo-app` from (`HEAD` when only `patch` is given).
    pub rev: Option<String>,
    /// A patch applied on `rev` and committed before building: a real change to
    /// deploy. Relative to the scenario file's directory (shipped scenarios:
    /// `scenarios/`).
    pub patch: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub to: f64,
    pub over: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRamp {
    /// A route template the traffic knows (`/api/quote`, `/api/products/{id}`...).
    pub route: String,
    pub to: f64,
    pub over: u32,
}

pub(crate) fn default_target() -> String {
    "all".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Alarms that must reach ALARM; each is investigated and scored.
    pub alarms: Vec<String>,
    /// Catalogue seconds after the first step within which they must fire.
    pub within: u32,
    /// The investigator's expected top hypothesis for every alarm (unless `by_alarm` says otherwise).
    pub root_cause: RootCause,
    /// Further causes that must appear in the top 3 of every report (two faults at once).
    #[serde(default)]
    pub also: Vec<RootCause>,
    /// Evidence kinds every report must cite.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Categories that must neither rank first nor score 0.5 or more (red herrings).
    #[serde(default)]
    pub not_blamed: Vec<String>,
    /// Another expected root cause (and evidence) for the report of one alarm.
    #[serde(default)]
    pub by_alarm: BTreeMap<String, AlarmExpect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmExpect {
    pub root_cause: RootCause,
    /// Evidence kinds this alarm's report must cite (default: `expect.evidence`).
    pub evidence: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootCause {
    pub category: String,
    /// Route, deployment id, task id... `None` when the category names no entity.
    pub entity: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Catalogue seconds after the recovery steps within which every fired alarm is OK again.
    #[serde(default = "default_recover_within")]
    pub within: u32,
}

pub(crate) fn default_recover_within() -> u32 {
    360
}

/// The report schema the investigator writes, whose enums are the categories
/// and evidence kinds a scenario may name (read, not copied, so they cannot drift).
const REPORT_SCHEMA: &str = include_str!("../../investigator/schema/report.schema.json");

fn schema_enum(find: impl Fn(&serde_json::Value) -> Option<&serde_json::Value>) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(REPORT_SCHEMA).expect("the committed report schema is JSON");
    find(&schema)
        .and_then(|v| v.as_array())
        .expect("the report schema names its categories and evidence kinds")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Root-cause categories the investigator knows.
pub fn categories() -> Vec<String> {
    schema_enum(|s| s.pointer("/$defs/category/enum"))
}

/// Evidence kinds a report can cite.
pub fn evidence_kinds() -> Vec<String> {
    schema_enum(|s| s.pointer("/properties/evidence/items/properties/kind/enum"))
}

impl Expect {
    /// What the report of `alarm` must conclude and cite.
    pub fn for_alarm(&self, alarm: &str) -> (&RootCause, &[String]) {
        match self.by_alarm.get(alarm) {
            Some(a) => (
                &a.root_cause,
                a.evidence.as_deref().unwrap_or(&self.evidence),
            ),
            None => (&self.root_cause, &self.evidence),
        }
    }
}

impl Step {
    /// The catalogue second of each execution of this step.
    pub fn times(&self) -> impl Iterator<Item = u32> + '_ {
        let (every, times) = self.repeat.map_or((0, 1), |r| (r.every, r.times.max(1)));
        (0..times).map(move |i| self.at.saturating_add(i.saturating_mul(every)))
    }
}
