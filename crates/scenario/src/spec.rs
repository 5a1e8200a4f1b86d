//! The scenario file format, parsed strictly (unknown fields are errors) and
//! validated against the alarm catalogue before anything runs.

use std::collections::BTreeMap;

use demo_model::Catalog;
use serde::{Deserialize, Serialize};

/// The shipped scenarios, embedded so the CLI works from any directory.
/// `every_scenario_file_is_embedded` keeps this list and `scenarios/` in step.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "error-spike",
        include_str!("../../../scenarios/error-spike.yaml"),
    ),
    (
        "memory-leak",
        include_str!("../../../scenarios/memory-leak.yaml"),
    ),
    (
        "cpu-spike",
        include_str!("../../../scenarios/cpu-spike.yaml"),
    ),
    (
        "unhealthy-targets",
        include_str!("../../../scenarios/unhealthy-targets.yaml"),
    ),
    (
        "slow-responses",
        include_str!("../../../scenarios/slow-responses.yaml"),
    ),
    (
        "bad-deploy",
        include_str!("../../../scenarios/bad-deploy.yaml"),
    ),
    (
        "red-herring",
        include_str!("../../../scenarios/red-herring.yaml"),
    ),
    (
        "false-alarm",
        include_str!("../../../scenarios/false-alarm.yaml"),
    ),
    (
        "two-faults",
        include_str!("../../../scenarios/two-faults.yaml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {name}: {source}")]
    Parse {
        name: String,
        source: serde_yaml::Error,
    },
    #[error("scenario {name} is invalid:\n  - {}", .problems.join("\n  - "))]
    Invalid { name: String, problems: Vec<String> },
    #[error("no scenario named {0:?} (see `scenario list`)")]
    Unknown(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Time scale used when the command line gives none.
    #[serde(default = "default_scale")]
    pub time_scale: f64,
    /// Catalogue seconds of normal traffic before the first step (the investigator's baseline).
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    pub traffic: Traffic,
    pub steps: Vec<Step>,
    pub expect: Expect,
    #[serde(default)]
    pub recover: Recover,
}

fn default_scale() -> f64 {
    20.0
}
fn default_warmup() -> u32 {
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

fn default_mix() -> String {
    "default".into()
}

/// One action at a time, in catalogue seconds after the warm-up.
/// (No `deny_unknown_fields` here: serde cannot combine it with `flatten`; an
/// unknown key is still rejected, as an unknown action.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub at: u32,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Call a fault endpoint on tasks. `{s:N}` in the path becomes N catalogue
    /// seconds in real seconds at the run's time scale.
    Fault {
        path: String,
        #[serde(default = "default_target")]
        target: String,
    },
    /// Roll out a configuration change.
    Deploy {
        #[serde(default)]
        env: BTreeMap<String, String>,
        version: Option<String>,
        #[serde(default)]
        description: String,
    },
    /// Roll back to the deployment before the latest one.
    Rollback,
    /// Change the traffic rate (requests per catalogue second).
    Rate(f64),
    /// Change the traffic mix (`default` or `with-reports`).
    Mix(String),
    /// Block until the deployment in progress completes.
    WaitDeployment,
}

fn default_target() -> String {
    "all".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Alarms that must reach ALARM.
    pub alarms: Vec<String>,
    /// Catalogue seconds after the first step within which they must fire.
    pub within: u32,
    /// The investigator's expected top hypothesis.
    pub root_cause: RootCause,
    /// Further causes that must appear in the top 3 (two faults at once).
    #[serde(default)]
    pub also: Vec<RootCause>,
    /// Evidence kinds the report must cite.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Categories that must not be the top hypothesis (red herrings).
    #[serde(default)]
    pub not_blamed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

fn default_recover_within() -> u32 {
    360
}

/// Categories the investigator knows.
pub const CATEGORIES: &[&str] = &[
    "code_change",
    "application_fault",
    "memory_leak",
    "cpu_saturation",
    "health_check_failure",
    "slow_dependency",
    "traffic_surge",
    "crash_loop",
    "insufficient_evidence",
];

impl Scenario {
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = serde_yaml::from_str(text).map_err(|source| ScenarioError::Parse {
            name: name.to_string(),
            source,
        })?;
        let problems = s.validate(&Catalog::embedded());
        if !problems.is_empty() {
            return Err(ScenarioError::Invalid {
                name: name.to_string(),
                problems,
            });
        }
        Ok(s)
    }

    pub fn validate(&self, catalog: &Catalog) -> Vec<String> {
        let mut p = Vec::new();
        if !(1.0..=120.0).contains(&self.time_scale) {
            p.push(format!("time_scale: {} must be 1-120", self.time_scale));
        }
        if !(self.traffic.rate > 0.0 && self.traffic.rate <= 50.0) {
            p.push(format!(
                "traffic.rate: {} must be in (0, 50] requests per catalogue second",
                self.traffic.rate
            ));
        }
        if !["default", "with-reports"].contains(&self.traffic.mix.as_str()) {
            p.push(format!(
                "traffic.mix: {:?} is not default or with-reports",
                self.traffic.mix
            ));
        }
        for a in &self.expect.alarms {
            if catalog.alarm(a).is_none() {
                p.push(format!("expect.alarms: {a:?} is not in the catalogue"));
            }
        }
        if self.expect.alarms.is_empty() {
            p.push("expect.alarms: at least one alarm must fire".into());
        }
        for rc in std::iter::once(&self.expect.root_cause).chain(&self.expect.also) {
            if !CATEGORIES.contains(&rc.category.as_str()) {
                p.push(format!("expect: unknown category {:?}", rc.category));
            }
        }
        for c in &self.expect.not_blamed {
            if !CATEGORIES.contains(&c.as_str()) {
                p.push(format!("expect.not_blamed: unknown category {c:?}"));
            }
        }
        for (i, s) in self.steps.iter().chain(&self.recover.steps).enumerate() {
            if let Action::Fault { path, target } = &s.action {
                if !path.starts_with("/error/") {
                    p.push(format!(
                        "steps[{i}].fault.path: {path:?} must start with /error/"
                    ));
                }
                if target.is_empty() {
                    p.push(format!(
                        "steps[{i}].fault.target: must be all, one or a task id"
                    ));
                }
            }
        }
        for (i, s) in self.steps.iter().chain(&self.recover.steps).enumerate() {
            if let Action::Mix(m) = &s.action
                && !["default", "with-reports"].contains(&m.as_str())
            {
                p.push(format!(
                    "steps[{i}].mix: {m:?} is not default or with-reports"
                ));
            }
        }
        if self.steps.windows(2).any(|w| w[0].at > w[1].at) {
            p.push("steps: must be in order of `at`".into());
        }
        p
    }
}

/// Replaces `{s:N}` with N catalogue seconds expressed in real seconds (at least 1).
pub fn scale_path(path: &str, time_scale: f64) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find("{s:") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 3..];
        match tail
            .find('}')
            .and_then(|j| tail[..j].parse::<f64>().ok().map(|n| (j, n)))
        {
            Some((j, n)) => {
                out.push_str(&((n / time_scale).ceil().max(1.0) as u64).to_string());
                rest = &tail[j + 1..];
            }
            None => {
                out.push_str("{s:");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every shipped scenario, parsed and validated.
pub fn all() -> Result<Vec<Scenario>, ScenarioError> {
    EMBEDDED
        .iter()
        .map(|(n, t)| Scenario::parse(n, t))
        .collect()
}

pub fn find(name: &str) -> Result<Scenario, ScenarioError> {
    let (n, t) = EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ScenarioError::Unknown(name.to_string()))?;
    Scenario::parse(n, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_parses_and_validates() {
        let all = all().unwrap();
        assert_eq!(all.len(), EMBEDDED.len());
        for (s, (n, _)) in all.iter().zip(EMBEDDED) {
            assert_eq!(&s.name, n, "file name and scenario name agree");
        }
    }

    #[test]
    fn every_scenario_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
            .collect();
        files.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
    }

    #[test]
    fn bad_scenarios_are_rejected_with_every_problem() {
        let text = r#"
name: x
description: d
traffic: { rate: 0, mix: bursty }
steps:
  - { at: 10, fault: { path: /health } }
  - { at: 5, rollback: null }
expect:
  alarms: [no-such-alarm]
  within: 60
  root_cause: { category: gremlins, entity: null }
"#;
        let err = Scenario::parse("x", text).unwrap_err().to_string();
        for want in [
            "traffic.rate",
            "traffic.mix",
            "no-such-alarm",
            "gremlins",
            "/error/",
            "in order",
        ] {
            assert!(err.contains(want), "{want} missing in {err}");
        }
        let err = Scenario::parse("x", "name: x\ncolour: red\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("colour") || err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn scaled_paths() {
        assert_eq!(
            scale_path("/error/cpu-spike?seconds={s:300}&threads=1", 20.0),
            "/error/cpu-spike?seconds=15&threads=1"
        );
        assert_eq!(scale_path("/error/x?a={s:1}", 20.0), "/error/x?a=1");
        assert_eq!(scale_path("/error/x?a={s:bad}", 20.0), "/error/x?a={s:bad}");
    }
}
