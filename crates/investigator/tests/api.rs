//! The investigator's public API: one investigation per ALARM episode,
//! concurrency with a writing runtime, lookups by alarm name, `reports
//! list/show`, clear errors, gaps instead of crashes when data is missing,
//! and the schema rejecting a malformed report.

mod common;

use std::sync::Arc;

use demo_model::Catalog;
use demo_model::events::{AlarmTransition, LogRecord, MetricSample, Stream};
use demo_store::Store;
use investigator::{Category, Format, InvestigateError, Investigator, InvestigatorConfig, Report};

fn cfg(state: &std::path::Path) -> InvestigatorConfig {
    InvestigatorConfig {
        state_dir: state.to_path_buf(),
        repo: None,
        catalog: Catalog::embedded(),
        time_scale: 10.0,
    }
}

#[test]
fn one_investigation_per_episode_even_across_threads_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::load("red_herring");
    let (store, g) = common::build(&s, dir.path(), None);
    let inv = Arc::new(Investigator::new(cfg(dir.path()), store.writer()).unwrap());
    // The runtime keeps writing while two threads investigate the same episode.
    let w = store.writer();
    let writer = std::thread::spawn(move || {
        for i in 0..5000 {
            w.log(LogRecord::from_line(
                common::T0 + 400_000 + i,
                "t-a",
                Stream::Stdout,
                "{\"level\":\"INFO\",\"message\":\"later\"}".into(),
            ));
        }
        w.flush();
    });
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let inv = inv.clone();
            let t = g.transition.clone();
            std::thread::spawn(move || inv.investigate(&t).unwrap())
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    writer.join().unwrap();
    assert_eq!(
        outs.iter().filter(|o| o.created).count(),
        1,
        "exactly one created"
    );
    assert_eq!(outs[0].id, outs[1].id);
    assert_eq!(outs[0].top, outs[1].top);
    // A new investigator (a restart) returns the stored one.
    let again = Investigator::new(cfg(dir.path()), store.writer()).unwrap();
    let o = again.investigate_alarm("error-count-high", None).unwrap();
    assert!(!o.created);
    assert_eq!(o.id, outs[0].id);
    assert_eq!(store.reader().unwrap().investigations(10).unwrap().len(), 1);

    let list = investigator::render_list(dir.path(), 10).unwrap();
    assert!(
        list.contains(&o.id) && list.contains("application_fault"),
        "{list}"
    );
    let md = investigator::show(dir.path(), &o.id, Format::Markdown).unwrap();
    assert!(md.contains("## Root cause"));
    let by_transition =
        investigator::show(dir.path(), &g.transition.id.to_string(), Format::Json).unwrap();
    let r: Report = serde_json::from_str(&by_transition).unwrap();
    assert_eq!(r.id, o.id);
    assert!(
        investigator::show(dir.path(), &o.id, Format::Html)
            .unwrap()
            .contains("<svg")
    );
    assert!(matches!(
        investigator::show(dir.path(), "inv-nope", Format::Json),
        Err(InvestigateError::NotFound(_))
    ));
}

#[test]
fn empty_store_is_insufficient_evidence_with_every_gap_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut t = AlarmTransition {
        id: 0,
        alarm: "high-5xx-errors".into(),
        from: "OK".into(),
        to: "ALARM".into(),
        at_ms: common::T0,
        reason: "Threshold Crossed".into(),
        reason_data: serde_json::json!({"unexpected": true}),
    };
    t.id = store.writer().transition(t.clone()).unwrap();
    let inv = Investigator::new(cfg(dir.path()), store.writer()).unwrap();
    let out = inv.investigate(&t).unwrap();
    assert_eq!(out.top.category, Category::InsufficientEvidence);
    let r: Report =
        serde_json::from_str(&std::fs::read_to_string(&out.paths.json).unwrap()).unwrap();
    let gaps: Vec<String> = r
        .gaps
        .iter()
        .map(|g| format!("{}: {}", g.source, g.detail))
        .collect();
    for want in ["reason_data", "no metric samples", "no log lines"] {
        assert!(
            gaps.iter().any(|g| g.contains(want)),
            "missing gap {want}: {gaps:#?}"
        );
    }
    // The catalogue's period, scaled, frames the analysis when reason data is unusable.
    assert_eq!(r.alarm.period_ms, 6000);
}

#[test]
fn unknown_revisions_become_gaps_not_failures() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    common::make_repo(&repo);
    let s = common::load("bad_deploy");
    // Shas that are not in the repository.
    let (store, g) = common::build(&s, &dir.path().join("state"), None);
    let inv = Investigator::new(
        InvestigatorConfig {
            repo: Some(repo),
            ..cfg(&dir.path().join("state"))
        },
        store.writer(),
    )
    .unwrap();
    let out = inv.investigate(&g.transition).unwrap();
    let r: Report =
        serde_json::from_str(&std::fs::read_to_string(&out.paths.json).unwrap()).unwrap();
    assert!(
        r.gaps
            .iter()
            .any(|g| g.source == "code" && g.detail.contains("is not in")),
        "{:#?}",
        r.gaps
    );
    // Without the diff, the changed key still links the deployment to the failing messages.
    assert_eq!(out.top.category, Category::CodeChange);
    assert_eq!(out.top.entity.as_deref(), Some("d-0002"));
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bad = Investigator::new(
        InvestigatorConfig {
            time_scale: 0.0,
            repo: Some(dir.path().join("nope")),
            ..cfg(dir.path())
        },
        store.writer(),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("time_scale") && bad.contains("repo"), "{bad}");
    let inv = Investigator::new(cfg(dir.path()), store.writer()).unwrap();
    let ok = AlarmTransition {
        id: 3,
        alarm: "cpu-high".into(),
        from: "ALARM".into(),
        to: "OK".into(),
        at_ms: 1,
        reason: String::new(),
        reason_data: serde_json::Value::Null,
    };
    assert!(matches!(
        inv.investigate(&ok),
        Err(InvestigateError::NotAlarm { .. })
    ));
    let e = inv.investigate_alarm("cpu-high", Some(5)).unwrap_err();
    assert!(e.to_string().contains("no ALARM transition"), "{e}");
    store.writer().metric(MetricSample::new(
        1,
        "AWS/ECS",
        "CPUUtilization",
        "service",
        1.0,
    ));
}

#[test]
fn the_schema_rejects_a_malformed_report() {
    let schema: serde_json::Value = serde_json::from_str(investigator::report::SCHEMA).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = common::load("cpu_saturation");
    let (store, g) = common::build(&s, dir.path(), None);
    let out = Investigator::new(cfg(dir.path()), store.writer())
        .unwrap()
        .investigate(&g.transition)
        .unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.paths.json).unwrap()).unwrap();
    assert!(v.is_valid(&json));
    json["root_cause"]["category"] = "blame_bob".into();
    assert!(!v.is_valid(&json));
    json["root_cause"]["category"] = "cpu_saturation".into();
    json["mitigation"] =
        serde_json::json!([{"command": "rm -rf /", "why": "x", "hypothesis_rank": 1}]);
    assert!(!v.is_valid(&json));
}
