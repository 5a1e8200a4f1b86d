//! Strict scoring of an investigation against what the scenario expects.
//! A report scores top-1 only when its first hypothesis has the expected
//! category *and*, when the scenario names one, exactly the expected entity
//! (not an entity among several). A not-blamed category must neither rank
//! first nor score 0.5 or more; every required evidence kind must be cited;
//! every further cause (`also`) must be in the top 3. A scenario passes only
//! when every alarm it lists fired, was investigated, scored, and cleared.

use serde::Serialize;

use crate::runner::{Finding, RunResult};
use crate::spec::{Expect, RootCause};

/// A not-blamed category scoring this much or more fails the report.
pub const NOT_BLAMED_MAX: f64 = 0.5;

/// Category equal, and the entity equal when one is expected.
pub fn matches(h: &(String, Option<String>, f64), rc: &RootCause) -> bool {
    h.0 == rc.category
        && rc
            .entity
            .as_deref()
            .is_none_or(|want| h.1.as_deref().is_some_and(|found| found.trim() == want))
}

/// Top-1 and top-3 hits of a finding against one expected root cause.
pub fn score(f: &Finding, expected: &RootCause) -> (bool, bool) {
    let top1 = f.hypotheses.first().is_some_and(|h| matches(h, expected));
    let top3 = f.hypotheses.iter().take(3).any(|h| matches(h, expected));
    (top1, top3)
}

/// How one alarm's report scored.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmScore {
    pub alarm: String,
    pub expected: RootCause,
    /// First hypothesis: category, entity, score.
    pub found: Option<(String, Option<String>, f64)>,
    /// Where the expected cause ranked (1-based) and its score, if anywhere.
    pub expected_rank: Option<(usize, f64)>,
    pub top1: bool,
    pub top3: bool,
    /// Every `also` cause in the top 3.
    pub also_top3: bool,
    /// Not-blamed categories that ranked first or scored >= 0.5, with their score.
    pub blamed: Vec<(String, f64)>,
    /// Required evidence kinds the report does not cite.
    pub missing_evidence: Vec<String>,
    pub latency_ms: Option<i64>,
    pub report: Option<String>,
}

impl AlarmScore {
    pub fn passed(&self) -> bool {
        self.top1 && self.also_top3 && self.blamed.is_empty() && self.missing_evidence.is_empty()
    }
}

/// Scores the report of `alarm` (or its absence).
pub fn score_alarm(expect: &Expect, alarm: &str, f: Option<&Finding>) -> AlarmScore {
    let (rc, evidence) = expect.for_alarm(alarm);
    let Some(f) = f else {
        return AlarmScore {
            alarm: alarm.to_string(),
            expected: rc.clone(),
            found: None,
            expected_rank: None,
            top1: false,
            top3: false,
            also_top3: false,
            blamed: Vec::new(),
            missing_evidence: evidence.to_vec(),
            latency_ms: None,
            report: None,
        };
    };
    let (top1, top3) = score(f, rc);
    let blamed = f
        .hypotheses
        .iter()
        .enumerate()
        .filter(|(i, h)| expect.not_blamed.contains(&h.0) && (*i == 0 || h.2 >= NOT_BLAMED_MAX))
        .map(|(_, h)| (h.0.clone(), h.2))
        .collect();
    AlarmScore {
        alarm: alarm.to_string(),
        expected: rc.clone(),
        found: f.hypotheses.first().cloned(),
        expected_rank: f
            .hypotheses
            .iter()
            .position(|h| matches(h, rc))
            .map(|i| (i + 1, f.hypotheses[i].2)),
        top1,
        top3,
        also_top3: expect.also.iter().all(|a| score(f, a).1),
        blamed,
        missing_evidence: evidence
            .iter()
            .filter(|k| !f.evidence_kinds.contains(k))
            .cloned()
            .collect(),
        latency_ms: Some(f.latency_ms),
        report: f
            .report_paths
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| p.display().to_string()),
    }
}

/// Every expected alarm of a run, scored (the first investigation of each).
pub fn score_run(expect: &Expect, r: &RunResult) -> Vec<AlarmScore> {
    expect
        .alarms
        .iter()
        .map(|a| score_alarm(expect, a, r.findings.iter().find(|f| &f.alarm == a)))
        .collect()
}

/// A scenario's verdict: every alarm passed, and the alarms fired and cleared.
pub fn passed(scores: &[AlarmScore], r: &RunResult) -> bool {
    r.passed_alarms && !scores.is_empty() && scores.iter().all(AlarmScore::passed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn h(cat: &str, entity: Option<&str>, score: f64) -> (String, Option<String>, f64) {
        (cat.into(), entity.map(str::to_string), score)
    }

    fn finding(alarm: &str, hyps: Vec<(String, Option<String>, f64)>, kinds: &[&str]) -> Finding {
        Finding {
            alarm: alarm.into(),
            investigation_id: "i".into(),
            hypotheses: hyps,
            evidence_kinds: kinds.iter().map(|k| k.to_string()).collect(),
            latency_ms: 5,
            report_paths: vec!["r/i.json".into()],
        }
    }

    fn rc(cat: &str, entity: Option<&str>) -> RootCause {
        RootCause {
            category: cat.into(),
            entity: entity.map(str::to_string),
        }
    }

    #[test]
    fn the_entity_matches_exactly_not_inside_a_list() {
        let want = rc("health_check_failure", Some("task-0001"));
        assert!(matches(
            &h("health_check_failure", Some("task-0001"), 0.8),
            &want
        ));
        assert!(!matches(
            &h("health_check_failure", Some("task-0002,task-0001"), 0.8),
            &want
        ));
        assert!(!matches(
            &h("health_check_failure", Some("task-00011"), 0.8),
            &want
        ));
        assert!(!matches(&h("health_check_failure", None, 0.8), &want));
        assert!(!matches(&h("memory_leak", Some("task-0001"), 0.8), &want));
        let any = rc("memory_leak", None);
        assert!(matches(&h("memory_leak", Some("service"), 0.8), &any));
    }

    fn expect() -> Expect {
        Expect {
            alarms: vec!["error-count-high".into(), "memory-high".into()],
            within: 60,
            root_cause: rc("application_fault", Some("/api/quote")),
            also: vec![rc("memory_leak", None)],
            evidence: vec!["log_template".into()],
            not_blamed: vec!["code_change".into()],
            by_alarm: BTreeMap::from([(
                "memory-high".to_string(),
                crate::spec::AlarmExpect {
                    root_cause: rc("memory_leak", None),
                    evidence: Some(vec!["trend".into()]),
                },
            )]),
        }
    }

    #[test]
    fn each_alarm_is_scored_against_its_own_expectation() {
        let e = expect();
        let a = finding(
            "error-count-high",
            vec![
                h("application_fault", Some("/api/quote"), 0.8),
                h("memory_leak", None, 0.6),
            ],
            &["log_template", "route"],
        );
        let s = score_alarm(&e, "error-count-high", Some(&a));
        assert!(s.passed(), "{s:?}");
        let m = finding(
            "memory-high",
            vec![
                h("application_fault", Some("/api/quote"), 0.7),
                h("memory_leak", None, 0.6),
            ],
            &["trend"],
        );
        let s = score_alarm(&e, "memory-high", Some(&m));
        assert!(!s.top1 && s.top3 && !s.passed(), "{s:?}");
        let missing = score_alarm(&e, "memory-high", None);
        assert!(!missing.passed());
        assert_eq!(missing.missing_evidence, vec!["trend".to_string()]);
    }

    #[test]
    fn not_blamed_fails_when_first_or_scoring_half() {
        let e = expect();
        let ranked_low_but_confident = finding(
            "error-count-high",
            vec![
                h("application_fault", Some("/api/quote"), 0.8),
                h("memory_leak", None, 0.6),
                h("code_change", Some("d-0002"), 0.5),
            ],
            &["log_template"],
        );
        let s = score_alarm(&e, "error-count-high", Some(&ranked_low_but_confident));
        assert!(s.top1 && !s.passed());
        assert_eq!(s.blamed, vec![("code_change".to_string(), 0.5)]);
        let weak = finding(
            "error-count-high",
            vec![
                h("application_fault", Some("/api/quote"), 0.8),
                h("memory_leak", None, 0.6),
                h("code_change", Some("d-0002"), 0.49),
            ],
            &["log_template"],
        );
        assert!(score_alarm(&e, "error-count-high", Some(&weak)).passed());
    }

    #[test]
    fn missing_evidence_and_also_fail_the_report() {
        let e = expect();
        let no_evidence = finding(
            "error-count-high",
            vec![
                h("application_fault", Some("/api/quote"), 0.8),
                h("memory_leak", None, 0.6),
            ],
            &["route"],
        );
        let s = score_alarm(&e, "error-count-high", Some(&no_evidence));
        assert_eq!(s.missing_evidence, vec!["log_template".to_string()]);
        assert!(!s.passed());
        let no_also = finding(
            "error-count-high",
            vec![h("application_fault", Some("/api/quote"), 0.8)],
            &["log_template"],
        );
        assert!(!score_alarm(&e, "error-count-high", Some(&no_also)).also_top3);
    }
}
