//! Reading scenario files, shipped or written by users: every problem of a
//! file is collected and reported at once (unknown or missing keys, wrong
//! types, values out of range, alarms not in the catalogue, unknown
//! categories), each naming its field, so a file is fixed in one pass.
//!
//! Two passes over the YAML tree: a structural one that deserialises each
//! field on its own (a bad field does not hide the next one), then the
//! semantic checks on what could be read.

use std::path::{Path, PathBuf};

use demo_model::Catalog;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use crate::spec::{
    ACTIONS, Action, EMBEDDED, Expect, Recover, RootCause, Scenario, ScenarioError, Step, Traffic,
    categories, default_mix, default_recover_within, default_scale, default_warmup, evidence_kinds,
};

const MIXES: &[&str] = &["default", "with-reports"];

/// Collects problems while reading one file.
struct Reader {
    problems: Vec<String>,
    /// Fields that could not be read: semantic checks under them are skipped
    /// (their placeholder values would only add noise).
    failed: Vec<String>,
}

/// How problems name the file as a whole (it is not a mapping).
const FILE: &str = "(file)";

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn short(e: &serde_yaml_ng::Error) -> String {
    // serde_yaml_ng appends " at line N column M" relative to the field's own value; drop it.
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl Reader {
    fn fail(&mut self, path: &str, msg: impl Into<String>) {
        self.problems.push(format!("{path}: {}", msg.into()));
        self.failed.push(path.to_string());
    }

    /// The mapping at `path`, checking its keys against `known` and `required`.
    fn mapping<'a>(
        &mut self,
        v: &'a Value,
        path: &str,
        known: &[&str],
        required: &[&str],
    ) -> Option<&'a Mapping> {
        let Some(m) = v.as_mapping() else {
            self.fail(path, format!("must be a mapping with {}", known.join(", ")));
            return None;
        };
        // The file's own fields are named bare (`expect`, not `(file).expect`),
        // as the semantic checks name them, so a missing or broken field
        // hides the checks of what it would have held.
        let base = if path == FILE { "" } else { path };
        for k in m.keys() {
            match k.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => self.fail(
                    &join(base, k),
                    format!("unknown field (expected one of {})", known.join(", ")),
                ),
                None => self.fail(path, format!("key {k:?} is not a string")),
            }
        }
        for r in required {
            if !m.contains_key(*r) {
                self.fail(&join(base, r), "missing");
            }
        }
        Some(m)
    }

    /// Field `key` of `m` as a `T`: `None` (recorded) when present but wrong.
    fn field<T: DeserializeOwned>(&mut self, m: &Mapping, path: &str, key: &str) -> Option<T> {
        let v = m.get(key)?;
        match serde_yaml_ng::from_value::<T>(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.fail(&join(path, key), short(&e));
                None
            }
        }
    }

    fn steps(&mut self, v: Option<&Value>, path: &str) -> Vec<Step> {
        let Some(v) = v else { return Vec::new() };
        if v.is_null() {
            return Vec::new();
        }
        let Some(seq) = v.as_sequence() else {
            self.fail(path, "must be a list of steps");
            return Vec::new();
        };
        let mut out: Vec<Step> = Vec::new();
        let mut known = vec!["at", "repeat"];
        known.extend_from_slice(ACTIONS);
        for (i, s) in seq.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let placeholder = Step {
                at: out.last().map_or(0, |p| p.at),
                repeat: None,
                action: Action::WaitDeployment,
            };
            let Some(m) = self.mapping(s, &at, &known, &["at"]) else {
                out.push(placeholder);
                continue;
            };
            let actions: Vec<&str> = m
                .keys()
                .filter_map(Value::as_str)
                .filter(|k| ACTIONS.contains(k))
                .collect();
            if actions.len() != 1 {
                self.fail(
                    &at,
                    format!(
                        "needs exactly one action of {} (found {})",
                        ACTIONS.join(", "),
                        if actions.is_empty() {
                            "none".to_string()
                        } else {
                            actions.join(", ")
                        }
                    ),
                );
                out.push(placeholder);
                continue;
            }
            match serde_yaml_ng::from_value::<Step>(s.clone()) {
                Ok(step) => out.push(step),
                Err(e) => {
                    self.fail(&format!("{at}.{}", actions[0]), short(&e));
                    out.push(placeholder);
                }
            }
        }
        out
    }
}

/// Parses and validates a scenario against `catalog`, reporting every problem at once.
pub fn parse_with(name: &str, text: &str, catalog: &Catalog) -> Result<Scenario, ScenarioError> {
    let syntax = |message: String| ScenarioError::Syntax {
        name: name.to_string(),
        message,
    };
    let root: Value = serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?;
    let mut r = Reader {
        problems: Vec::new(),
        failed: Vec::new(),
    };
    let top = [
        "name",
        "description",
        "time_scale",
        "warmup",
        "traffic",
        "steps",
        "expect",
        "recover",
    ];
    let Some(m) = r.mapping(
        &root,
        FILE,
        &top,
        &["name", "description", "traffic", "steps", "expect"],
    ) else {
        return Err(ScenarioError::Invalid {
            name: name.to_string(),
            problems: r.problems,
        });
    };
    let traffic = m
        .get("traffic")
        .and_then(|v| r.mapping(v, "traffic", &["rate", "mix"], &["rate"]))
        .map(|t| Traffic {
            rate: r.field(t, "traffic", "rate").unwrap_or(1.0),
            mix: r.field(t, "traffic", "mix").unwrap_or_else(default_mix),
        });
    let expect = m
        .get("expect")
        .and_then(|v| {
            r.mapping(
                v,
                "expect",
                &[
                    "alarms",
                    "within",
                    "root_cause",
                    "also",
                    "evidence",
                    "not_blamed",
                    "by_alarm",
                ],
                &["alarms", "within", "root_cause"],
            )
        })
        .map(|e| Expect {
            alarms: r.field(e, "expect", "alarms").unwrap_or_default(),
            within: r.field(e, "expect", "within").unwrap_or(0),
            root_cause: r.field(e, "expect", "root_cause").unwrap_or_default(),
            also: r.field(e, "expect", "also").unwrap_or_default(),
            evidence: r.field(e, "expect", "evidence").unwrap_or_default(),
            not_blamed: r.field(e, "expect", "not_blamed").unwrap_or_default(),
            by_alarm: r.field(e, "expect", "by_alarm").unwrap_or_default(),
        });
    let recover = match m.get("recover") {
        None => Some(Recover::default()),
        Some(v) => r
            .mapping(v, "recover", &["steps", "within"], &[])
            .map(|rm| Recover {
                steps: r.steps(rm.get("steps"), "recover.steps"),
                within: r
                    .field(rm, "recover", "within")
                    .unwrap_or_else(default_recover_within),
            }),
    };
    let s = Scenario {
        name: r.field(m, "", "name").unwrap_or_else(|| name.to_string()),
        description: r.field(m, "", "description").unwrap_or_default(),
        time_scale: r.field(m, "", "time_scale").unwrap_or_else(default_scale),
        warmup: r.field(m, "", "warmup").unwrap_or_else(default_warmup),
        steps: r.steps(m.get("steps"), "steps"),
        traffic: traffic.unwrap_or(Traffic {
            rate: 1.0,
            mix: default_mix(),
        }),
        expect: expect.unwrap_or_default(),
        recover: recover.unwrap_or_default(),
        source: None,
    };
    let failed = std::mem::take(&mut r.failed);
    r.problems.extend(
        validate(&s, catalog)
            .into_iter()
            .filter(|p| !failed.iter().any(|f| p.starts_with(f.as_str()))),
    );
    if r.problems.is_empty() {
        Ok(s)
    } else {
        Err(ScenarioError::Invalid {
            name: name.to_string(),
            problems: r.problems,
        })
    }
}

/// The semantic checks: every problem, each naming its field.
pub fn validate(s: &Scenario, catalog: &Catalog) -> Vec<String> {
    let mut p = Vec::new();
    let cats = categories();
    let kinds = evidence_kinds();
    if s.name.trim().is_empty() {
        p.push("name: must not be empty".into());
    }
    if !(1.0..=120.0).contains(&s.time_scale) {
        p.push(format!("time_scale: {} must be 1-120", s.time_scale));
    }
    if !(s.traffic.rate > 0.0 && s.traffic.rate <= 50.0) {
        p.push(format!(
            "traffic.rate: {} must be in (0, 50] requests per catalogue second",
            s.traffic.rate
        ));
    }
    if !MIXES.contains(&s.traffic.mix.as_str()) {
        p.push(format!(
            "traffic.mix: {:?} is not default or with-reports",
            s.traffic.mix
        ));
    }
    let e = &s.expect;
    for a in &e.alarms {
        if catalog.alarm(a).is_none() {
            p.push(format!("expect.alarms: {a:?} is not in the catalogue"));
        }
    }
    if e.alarms.is_empty() {
        p.push("expect.alarms: at least one alarm must fire".into());
    }
    if e.within == 0 {
        p.push("expect.within: must be at least 1 catalogue second".into());
    }
    let check_cause = |p: &mut Vec<String>, field: String, rc: &RootCause| {
        if !cats.contains(&rc.category) {
            p.push(format!(
                "{field}.category: unknown category {:?} (one of {})",
                rc.category,
                cats.join(", ")
            ));
        }
        if rc.entity.as_deref().is_some_and(|e| e.trim().is_empty()) {
            p.push(format!("{field}.entity: empty (use null for none)"));
        }
    };
    check_cause(&mut p, "expect.root_cause".into(), &e.root_cause);
    for (i, rc) in e.also.iter().enumerate() {
        check_cause(&mut p, format!("expect.also[{i}]"), rc);
    }
    for (alarm, a) in &e.by_alarm {
        if !e.alarms.contains(alarm) {
            p.push(format!("expect.by_alarm.{alarm}: not one of expect.alarms"));
        }
        check_cause(
            &mut p,
            format!("expect.by_alarm.{alarm}.root_cause"),
            &a.root_cause,
        );
    }
    let evidence = e
        .evidence
        .iter()
        .map(|k| ("expect.evidence".to_string(), k))
        .chain(e.by_alarm.iter().flat_map(|(alarm, a)| {
            a.evidence
                .iter()
                .flatten()
                .map(move |k| (format!("expect.by_alarm.{alarm}.evidence"), k))
        }));
    for (field, k) in evidence {
        if !kinds.contains(k) {
            p.push(format!(
                "{field}: unknown evidence kind {k:?} (one of {})",
                kinds.join(", ")
            ));
        }
    }
    for c in &e.not_blamed {
        if !cats.contains(c) {
            p.push(format!("expect.not_blamed: unknown category {c:?}"));
        }
        let blamed = std::iter::once(&e.root_cause)
            .chain(&e.also)
            .chain(e.by_alarm.values().map(|a| &a.root_cause));
        if blamed.into_iter().any(|rc| &rc.category == c) {
            p.push(format!(
                "expect.not_blamed: {c:?} is also an expected root cause"
            ));
        }
    }
    for (field, steps) in [("steps", &s.steps), ("recover.steps", &s.recover.steps)] {
        for (i, st) in steps.iter().enumerate() {
            validate_step(&mut p, &format!("{field}[{i}]"), st, s.source.as_deref());
        }
        if steps.windows(2).any(|w| w[0].at > w[1].at) {
            p.push(format!("{field}: must be in order of `at`"));
        }
    }
    p
}

fn validate_step(p: &mut Vec<String>, at: &str, st: &Step, source: Option<&Path>) {
    if let Some(r) = st.repeat
        && (r.every == 0 || r.times == 0 || r.times > 1000)
    {
        p.push(format!(
            "{at}.repeat: every must be at least 1 and times 1-1000 (got every {}, times {})",
            r.every, r.times
        ));
    }
    match &st.action {
        Action::Fault { path, target } => {
            if !path.starts_with("/error/") {
                p.push(format!("{at}.fault.path: {path:?} must start with /error/"));
            }
            if !(["all", "one", "newest"].contains(&target.as_str())
                || target.strip_prefix("task-").is_some_and(|n| !n.is_empty()))
            {
                p.push(format!(
                    "{at}.fault.target: {target:?} is not all, one, newest or a task id (task-NNNN)"
                ));
            }
        }
        Action::Mix(m) if !MIXES.contains(&m.as_str()) => {
            p.push(format!("{at}.mix: {m:?} is not default or with-reports"));
        }
        Action::Rate(r) if !(*r > 0.0 && *r <= 50.0) => {
            p.push(format!("{at}.rate: {r} must be in (0, 50]"));
        }
        Action::Ramp(r) => {
            if !(r.to > 0.0 && r.to <= 50.0) {
                p.push(format!("{at}.ramp.to: {} must be in (0, 50]", r.to));
            }
            if r.over == 0 {
                p.push(format!(
                    "{at}.ramp.over: must be at least 1 catalogue second"
                ));
            }
        }
        Action::RouteRamp(r) => {
            if !crate::traffic::ROUTES.contains(&r.route.as_str()) {
                p.push(format!(
                    "{at}.route_ramp.route: {:?} is not one of {:?}",
                    r.route,
                    crate::traffic::ROUTES
                ));
            }
            if !(r.to >= 0.0 && r.to <= 50.0) {
                p.push(format!("{at}.route_ramp.to: {} must be in [0, 50]", r.to));
            }
            if r.over == 0 {
                p.push(format!(
                    "{at}.route_ramp.over: must be at least 1 catalogue second"
                ));
            }
        }
        Action::Deploy(d) => {
            if d.env.is_empty() && d.rev.is_none() && d.patch.is_none() && d.version.is_none() {
                p.push(format!(
                    "{at}.deploy: changes nothing (give env, version, rev or patch)"
                ));
            }
            if let Some(rev) = &d.rev
                && (rev.trim().is_empty() || rev.starts_with('-'))
            {
                p.push(format!("{at}.deploy.rev: {rev:?} is not a git revision"));
            }
            if let (Some(patch), Some(src)) = (&d.patch, source) {
                let file = patch_path(Some(src), None, patch);
                if !file.is_file() {
                    p.push(format!(
                        "{at}.deploy.patch: {} does not exist",
                        file.display()
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Where a step's patch lives: next to the scenario file, or for shipped
/// scenarios under the repository's `scenarios/`.
pub fn patch_path(source: Option<&Path>, repo: Option<&Path>, patch: &str) -> PathBuf {
    match source.and_then(Path::parent) {
        Some(dir) => dir.join(patch),
        None => repo
            .map(|r| r.join("scenarios"))
            .unwrap_or_else(|| PathBuf::from("scenarios"))
            .join(patch),
    }
}

/// A scenario file anywhere (users write their own).
pub fn load_file(path: &Path, catalog: &Catalog) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let name = path.display().to_string();
    // Validate with the source known, so patch paths are checked relative to the file.
    let mut s = parse_with(&name, &text, catalog)?;
    s.source = Some(path.to_path_buf());
    let problems = validate(&s, catalog);
    if !problems.is_empty() {
        return Err(ScenarioError::Invalid { name, problems });
    }
    Ok(s)
}

/// Every `*.yaml` of a directory, in name order; all files' problems at once.
pub fn load_dir(dir: &Path, catalog: &Catalog) -> Result<Vec<Scenario>, ScenarioError> {
    let read_err = |e: std::io::Error| ScenarioError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ScenarioError::Read {
            path: dir.display().to_string(),
            message: "no *.yaml scenario files".into(),
        });
    }
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for f in files {
        match load_file(&f, catalog) {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut names: Vec<&str> = ok.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    for w in names.windows(2) {
        if w[0] == w[1] {
            errors.push(format!("two scenarios are named {:?}", w[0]));
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(ScenarioError::Dir {
            dir: dir.display().to_string(),
            errors,
        })
    }
}

impl Scenario {
    /// Parses and validates against the committed catalogue.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        parse_with(name, text, &Catalog::embedded())
    }
}

/// Replaces `{s:N}` with N catalogue seconds expressed in real seconds (a
/// whole number, at least 1), and `{ms:N}` with N catalogue milliseconds in
/// real milliseconds (up to three decimals, 0 only for 0: a per-request cost that
/// must shrink with the time scale, as the request rate grows with it).
pub fn scale_path(path: &str, time_scale: f64) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let scaled = tail.find('}').and_then(|j| {
            let (unit, n) = tail[..j].split_once(':')?;
            let n = n
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)?;
            let real = n / time_scale;
            let text = match unit {
                "s" => (real.ceil().max(1.0) as u64).to_string(),
                "ms" => {
                    // A cost too small to write stays above 0; 0 stays 0 (and is refused).
                    let ms = (real * 1000.0).round() / 1000.0;
                    let ms = if n > 0.0 { ms.max(0.001) } else { 0.0 };
                    format!("{ms}")
                }
                _ => return None,
            };
            Some((j, text))
        });
        match scaled {
            Some((j, text)) => {
                out.push_str(&text);
                rest = &tail[j + 1..];
            }
            None => {
                out.push('{');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every shipped scenario, parsed and validated against `catalog`.
pub fn all_with(catalog: &Catalog) -> Result<Vec<Scenario>, ScenarioError> {
    EMBEDDED
        .iter()
        .map(|(n, t)| parse_with(n, t, catalog))
        .collect()
}

/// Every shipped scenario, validated against the committed catalogue.
pub fn all() -> Result<Vec<Scenario>, ScenarioError> {
    all_with(&Catalog::embedded())
}

/// A shipped scenario by name.
pub fn find_with(name: &str, catalog: &Catalog) -> Result<Scenario, ScenarioError> {
    let (n, t) = EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ScenarioError::Unknown(name.to_string()))?;
    parse_with(n, t, catalog)
}

pub fn find(name: &str) -> Result<Scenario, ScenarioError> {
    find_with(name, &Catalog::embedded())
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
    fn every_shipped_patch_exists_and_every_patch_is_used() {
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let mut used = Vec::new();
        for s in all().unwrap() {
            for st in s.steps.iter().chain(&s.recover.steps) {
                if let Action::Deploy(d) = &st.action
                    && let Some(p) = &d.patch
                {
                    let f = patch_path(None, Some(repo), p);
                    assert!(f.is_file(), "{}: {} missing", s.name, f.display());
                    used.push(f.file_name().unwrap().to_owned());
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(repo.join("scenarios/patches")) {
            for f in dir.filter_map(Result::ok) {
                assert!(
                    used.contains(&f.file_name()),
                    "{:?} is used by no scenario",
                    f.file_name()
                );
            }
        }
    }

    #[test]
    fn a_bad_scenario_gets_one_error_naming_every_problem() {
        let text = r#"
name: x
description: d
colour: red
traffic: { rate: 0, mix: bursty }
steps:
  - { at: 10, fault: { path: /health } }
  - { at: 5, rollback: null }
  - { at: 20, fault: { path: /error/500 }, rate: 3 }
  - { at: 30 }
  - { at: 40, ramp: { to: 10, over: many } }
  - { at: 50, deploy: {} }
  - { at: 60, rate: 3, repeat: { every: 0, times: 3 } }
expect:
  alarms: [no-such-alarm]
  within: soon
  root_cause: { category: gremlins, entity: null }
  evidence: [vibes]
  not_blamed: [code_change, nonsense]
"#;
        let err = Scenario::parse("x", text).unwrap_err().to_string();
        for want in [
            "colour: unknown field",
            "traffic.rate",
            "traffic.mix",
            "steps[0].fault.path",
            "steps: must be in order",
            "steps[2]: needs exactly one action",
            "steps[3]: needs exactly one action of",
            "steps[4].ramp",
            "steps[5].deploy: changes nothing",
            "steps[6].repeat",
            "no-such-alarm",
            "expect.within",
            "gremlins",
            "vibes",
            "nonsense",
        ] {
            assert!(err.contains(want), "{want:?} missing in:\n{err}");
        }
        assert!(err.starts_with("scenario x has 15 problem(s)"), "{err}");
    }

    #[test]
    fn a_not_blamed_category_cannot_also_be_expected() {
        let text = r#"
name: x
description: d
traffic: { rate: 1 }
steps: []
expect:
  alarms: [cpu-high]
  within: 60
  root_cause: { category: cpu_saturation, entity: null }
  not_blamed: [cpu_saturation]
"#;
        let err = Scenario::parse("x", text).unwrap_err().to_string();
        assert!(err.contains("also an expected root cause"), "{err}");
    }

    #[test]
    fn missing_fields_and_non_mappings_are_named() {
        let err = Scenario::parse("x", "name: x\n").unwrap_err().to_string();
        for want in [
            "description: missing",
            "traffic: missing",
            "expect: missing",
        ] {
            assert!(err.contains(want), "{want} missing in {err}");
        }
        // Only what is missing: no checks of the fields it would have held.
        for noise in [
            "(file)",
            "expect.alarms",
            "expect.within",
            "unknown category",
            "traffic.rate",
        ] {
            assert!(!err.contains(noise), "{noise} in {err}");
        }
        let err = Scenario::parse("x", "- a\n- b\n").unwrap_err().to_string();
        assert!(err.contains("must be a mapping"), "{err}");
        let err = Scenario::parse("x", "a: [\n").unwrap_err().to_string();
        assert!(err.starts_with("scenario x: "), "{err}");
    }

    #[test]
    fn files_and_directories_outside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let good = EMBEDDED[0].1;
        std::fs::write(dir.path().join("a.yaml"), good).unwrap();
        let c = Catalog::embedded();
        let s = load_file(&dir.path().join("a.yaml"), &c).unwrap();
        assert_eq!(
            s.source.as_deref(),
            Some(dir.path().join("a.yaml").as_path())
        );
        assert_eq!(load_dir(dir.path(), &c).unwrap().len(), 1);
        let bad = good.replacen(
            "\nsteps:\n",
            "\nsteps:\n  - { at: 0, deploy: { patch: nowhere.patch } }\n",
            1,
        );
        std::fs::write(dir.path().join("b.yaml"), bad).unwrap();
        std::fs::write(dir.path().join("c.yaml"), "name: [").unwrap();
        let err = load_dir(dir.path(), &c).unwrap_err().to_string();
        assert!(err.starts_with("2 scenario file(s)"), "{err}");
        assert!(err.contains("nowhere.patch does not exist"), "{err}");
        assert!(err.contains("c.yaml"), "{err}");
    }

    #[test]
    fn repeated_steps_run_at_each_interval() {
        let s: Step = serde_yaml_ng::from_str(
            "{ at: 10, repeat: { every: 30, times: 3 }, fault: { path: /error/crash } }",
        )
        .unwrap();
        assert_eq!(s.times().collect::<Vec<_>>(), vec![10, 40, 70]);
    }

    #[test]
    fn scaled_paths() {
        assert_eq!(
            scale_path("/error/cpu-spike?seconds={s:300}&threads=1", 20.0),
            "/error/cpu-spike?seconds=15&threads=1"
        );
        assert_eq!(scale_path("/error/x?a={s:1}", 20.0), "/error/x?a=1");
        assert_eq!(scale_path("/error/x?a={s:bad}", 20.0), "/error/x?a={s:bad}");
        assert_eq!(
            scale_path("/error/cpu-cost?ms={ms:40}&duration_s={s:600}", 20.0),
            "/error/cpu-cost?ms=2&duration_s=30"
        );
        assert_eq!(scale_path("/error/x?ms={ms:35}", 20.0), "/error/x?ms=1.75");
        assert_eq!(scale_path("/error/x?ms={ms:10}", 3.0), "/error/x?ms=3.333");
        assert_eq!(
            scale_path("/error/x?ms={ms:0.001}", 3.0),
            "/error/x?ms=0.001"
        );
        assert_eq!(scale_path("/error/x?ms={ms:0}", 3.0), "/error/x?ms=0");
        assert_eq!(
            scale_path("/error/x?a={h:1}&b={s:", 2.0),
            "/error/x?a={h:1}&b={s:"
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
                let _ = Scenario::parse("fuzz", &text);
            }

            #[test]
            fn mutated_scenarios_never_panic(
                cut in 0usize..2000,
                insert in "[ -~\\n]{0,40}",
                which in 0usize..9,
            ) {
                let base = EMBEDDED[which % EMBEDDED.len()].1;
                let cut = base.char_indices().map(|(i, _)| i).nth(cut % base.chars().count()).unwrap_or(0);
                let text = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
                let _ = Scenario::parse("fuzz", &text);
            }
        }
    }
}
