//! Data-driven investigator tests: each YAML fixture under `tests/fixtures/`
//! is expanded into a store (see `common`), the alarm is evaluated by the
//! real CloudWatch evaluator, and the investigation's top-1 (and top-3) must
//! name the expected category and entity. Every report is validated against
//! the committed schema, and its Markdown and HTML renderings are checked.

mod common;

use std::path::Path;

use demo_model::Catalog;
use investigator::{Category, Investigator, InvestigatorConfig, Report};

fn schema_check(json: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(investigator::report::SCHEMA).expect("schema is JSON");
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = v
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "report violates schema:\n{}",
        errors.join("\n")
    );
}

fn cat(s: &str) -> Category {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn run(name: &str) -> (Report, tempfile::TempDir) {
    let s = common::load(name);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let state = dir.path().join("state");
    if s.use_repo {
        std::fs::create_dir_all(&repo).unwrap();
    }
    let (store, g) = common::build(&s, &state, s.use_repo.then_some(repo.as_path()));
    let inv = Investigator::new(
        InvestigatorConfig {
            state_dir: state.clone(),
            repo: s.use_repo.then(|| repo.clone()),
            catalog: Catalog::embedded(),
            time_scale: s.time_scale,
        },
        store.writer(),
    )
    .unwrap();
    let out = inv.investigate(&g.transition).unwrap();
    assert!(out.created);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.paths.json).unwrap()).unwrap();
    schema_check(&json);
    let report: Report = serde_json::from_value(json).unwrap();
    check_renderings(&out.paths.markdown, &out.paths.html);
    let e = &s.expect;
    let top = &report.hypotheses[0];
    let listing: Vec<String> = report
        .hypotheses
        .iter()
        .map(|h| format!("{} {:?} {:.2}", h.category, h.entity, h.score))
        .collect();
    assert_eq!(
        top.category,
        cat(&e.top1),
        "{name}: hypotheses {listing:#?}\nsummary: {}",
        report.summary
    );
    if let Some(want) = &e.entity {
        let got = top.entity.as_deref().unwrap_or("");
        assert!(
            got.contains(want.as_str()),
            "{name}: entity {got:?} lacks {want:?}; {listing:#?}"
        );
    }
    for (c, ent) in &e.top3 {
        assert!(
            report
                .hypotheses
                .iter()
                .take(3)
                .any(|h| h.category == cat(c)
                    && h.entity.as_deref().unwrap_or("").contains(ent.as_str())),
            "{name}: ({c}, {ent}) not in top 3: {listing:#?}"
        );
    }
    for (c, ent) in &e.not_top1 {
        assert!(
            !(top.category == cat(c) && top.entity.as_deref() == Some(ent.as_str())),
            "{name}: blamed {c} {ent}"
        );
    }
    assert_eq!(out.top.category, top.category);
    assert_eq!(report.root_cause.category, top.category);
    // Every cited evidence id exists.
    let ids: Vec<&str> = report.evidence.iter().map(|e| e.id.as_str()).collect();
    for h in &report.hypotheses {
        for id in h.evidence_for.iter().chain(&h.evidence_against) {
            assert!(ids.contains(&id.as_str()), "{name}: {id} cited but missing");
        }
    }
    (report, dir)
}

fn check_renderings(md: &Path, html: &Path) {
    let md = std::fs::read_to_string(md).unwrap();
    for section in [
        "## Summary",
        "## Impact",
        "## Timeline",
        "## Root cause",
        "## Hypotheses",
        "## Evidence",
        "## Code correlation",
        "## Deployment cohorts",
        "## Mitigation",
        "## Investigation gaps",
    ] {
        assert!(md.contains(section), "markdown lacks {section}");
    }
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.matches("<svg").count() >= 2, "two inline SVG charts");
    assert!(html.contains("threshold"));
    for external in ["http://", "https://", "<script", "<link", "src="] {
        assert!(
            !html.contains(external),
            "html is not self-contained: {external}"
        );
    }
}

#[test]
fn bad_deploy_names_the_deployment_commit_and_diff_lines() {
    let (r, _d) = run("bad_deploy");
    assert_eq!(r.root_cause.entity.as_deref(), Some("d-0002"));
    let cc = r
        .code_correlation
        .iter()
        .find(|c| c.deployment_id == "d-0002")
        .expect("code correlation for d-0002");
    assert_eq!(cc.commits.len(), 1);
    assert_eq!(
        cc.commits[0].summary,
        "quote: engine v2 behind QUOTE_ENGINE"
    );
    assert_eq!(cc.files, vec!["src/quote.rs"]);
    assert!(
        cc.matches.iter().any(|m| m.origin == "added"
            && m.kind == "template"
            && m.text.contains("Quote engine v2 rejected item")),
        "{:#?}",
        cc.matches
    );
    assert!(
        cc.matches
            .iter()
            .any(|m| m.kind == "config_key" && m.text.contains("QUOTE_ENGINE"))
    );
    assert!(r.summary.contains("d-0002"), "{}", r.summary);
    assert!(
        r.mitigation
            .iter()
            .any(|m| m.command == "cargo run --release -- deploy --rollback-to d-0001"),
        "{:#?}",
        r.mitigation
    );
    let md = std::fs::read_to_string(_d.path().join("state/reports").join(format!("{}.md", r.id)))
        .unwrap();
    assert!(md.contains(&cc.commits[0].sha[..10]));
    assert!(md.contains("Quote engine v2 rejected item"));
    // The surged error template links to example traces of its own lines.
    let template = r
        .evidence
        .iter()
        .find(|e| e.kind == "log_template" && e.summary.contains("Quote engine v2 rejected item"))
        .expect("the template's evidence");
    let traces = template.data["trace_ids"].as_array().expect("trace_ids");
    assert!(!traces.is_empty() && traces.len() <= 3, "{traces:?}");
    for t in traces {
        let t = t.as_str().unwrap();
        assert!(
            t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()),
            "{t}"
        );
        assert!(template.summary.contains(t), "{}", template.summary);
    }
}

#[test]
fn red_herring_deployment_is_not_blamed() {
    let (r, _d) = run("red_herring");
    let dep = r
        .hypotheses
        .iter()
        .find(|h| h.category == Category::CodeChange && h.entity.as_deref() == Some("d-0002"))
        .expect("the deployment is considered");
    assert!(dep.score < investigator::hypothesis::MIN_SCORE, "{dep:#?}");
    assert!(
        !dep.evidence_against.is_empty(),
        "says why it is not blamed"
    );
    assert!(!r.mitigation.iter().any(|m| m.command.contains("rollback")));
}

#[test]
fn false_alarm_ends_as_insufficient_evidence_with_gaps() {
    let (r, _d) = run("false_alarm");
    assert_eq!(r.root_cause.entity, None);
    assert!(
        r.gaps
            .iter()
            .any(|g| g.detail.contains("no significant change point")),
        "{:#?}",
        r.gaps
    );
    assert!(r.gaps.iter().any(|g| g.detail.contains("no log template")));
    assert!(
        r.mitigation.is_empty(),
        "no invented remedy: {:#?}",
        r.mitigation
    );
    assert!(r.summary.contains("does not support a root cause"));
}

#[test]
fn memory_leak_names_the_tasks_and_extrapolates() {
    let (r, _d) = run("memory_leak");
    assert!(
        r.evidence
            .iter()
            .any(|e| e.kind == "trend" && e.summary.contains("reaches the limit"))
    );
}

#[test]
fn cpu_saturation() {
    run("cpu_saturation");
}

#[test]
fn health_check_failure_names_the_task() {
    let (r, _d) = run("health_check");
    assert!(
        r.mitigation
            .iter()
            .any(|m| m.command == "cargo run --release -- tasks stop t-b")
    );
}

#[test]
fn slow_dependency_on_a_route() {
    run("slow_dependency");
}

#[test]
fn traffic_surge_outranks_the_cpu_it_causes() {
    let (r, _d) = run("traffic_surge");
    assert!(
        r.mitigation
            .iter()
            .any(|m| m.command.starts_with("cargo run --release -- scale "))
    );
}

#[test]
fn crash_loop() {
    run("crash_loop");
}

#[test]
fn two_faults_at_once_are_both_in_the_top_3() {
    run("two_faults");
}

// Where the word-overlap heuristic would be wrong, and causal order.

#[test]
fn a_deployment_whose_key_shares_no_word_is_convicted_by_its_cohort() {
    let (r, _d) = run("pricing_v2");
    assert!(
        r.evidence
            .iter()
            .any(|e| e.kind == "cohort" && e.summary.contains("verdict: confined to the new tasks")),
        "{:#?}",
        r.evidence
    );
    // The report shows old and new tasks side by side.
    let c = r
        .cohorts
        .iter()
        .find(|c| c.deployment_id == "d-0002")
        .expect("a cohort table for d-0002");
    assert_eq!(c.verdict, "confined");
    let (new, old) = (&c.rows[0], &c.rows[1]);
    assert_eq!((new.cohort.as_str(), old.cohort.as_str()), ("new", "old"));
    assert!(new.failure_rate > 0.05 && old.failure_rate == 0.0, "{c:#?}");
    assert_eq!(new.tasks, vec!["d-0002-t0", "d-0002-t1"]);
    assert_eq!(old.tasks, vec!["t-a", "t-b"]);
    let dir = _d.path().join("state/reports");
    let md = std::fs::read_to_string(dir.join(format!("{}.md", r.id))).unwrap();
    assert!(
        md.contains("| new | d-0002-t0, d-0002-t1 |") && md.contains("| old | t-a, t-b |"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.join(format!("{}.html", r.id))).unwrap();
    assert!(html.contains("Failure rate of old vs new tasks per deployment"));
    let fault = r
        .hypotheses
        .iter()
        .find(|h| h.category == Category::ApplicationFault)
        .expect("the route fault is still listed");
    assert!(fault.score < r.root_cause.confidence);
    assert!(!fault.evidence_against.is_empty());
}

#[test]
fn an_innocent_deployment_sharing_words_with_the_failure_is_not_blamed() {
    let (r, _d) = run("innocent_timeout_key");
    let dep = r
        .hypotheses
        .iter()
        .find(|h| h.category == Category::CodeChange && h.entity.as_deref() == Some("d-0002"))
        .expect("the deployment is considered");
    assert!(dep.score < 0.5, "{dep:#?}");
    // Acquitted by its cohort, not only by its timing.
    assert!(
        r.evidence.iter().any(|e| e.kind == "cohort"
            && e.summary
                .contains("verdict: new tasks served cleanly before it began")),
        "{:#?}",
        r.evidence
    );
}

#[test]
fn a_failure_on_old_and_new_tasks_alike_acquits_the_deployment() {
    let (r, _d) = run("innocent_during_rollout");
    assert!(
        r.evidence
            .iter()
            .any(|e| e.kind == "cohort"
                && e.summary.contains("verdict: old and new tasks fail alike")),
        "{:#?}",
        r.evidence
    );
    let dep = r
        .hypotheses
        .iter()
        .find(|h| h.category == Category::CodeChange && h.entity.as_deref() == Some("d-0002"))
        .unwrap();
    assert!(dep.score < 0.5, "{dep:#?}");
}

#[test]
fn cpu_saturation_before_health_check_failures_is_the_cause() {
    let (r, _d) = run("cpu_health");
    let hc = r
        .hypotheses
        .iter()
        .find(|h| h.category == Category::HealthCheckFailure)
        .expect("the health-check failure is listed as a symptom");
    assert!(hc.score < r.root_cause.confidence, "{:#?}", r.hypotheses);
}

/// Starved tasks leave rotation and cool down before unhealthy-targets fires:
/// CPU is low inside the incident window, yet its saturation came first.
#[test]
fn cpu_saturation_that_ended_as_the_targets_went_unhealthy_is_still_the_cause() {
    let (r, _d) = run("cpu_starved_health");
    let hc = r
        .hypotheses
        .iter()
        .find(|h| h.category == Category::HealthCheckFailure)
        .expect("the health-check failure is listed as a symptom");
    assert!(hc.score < 0.5, "{:#?}", r.hypotheses);
    assert!(
        r.evidence.iter().any(|e| e
            .summary
            .contains("began before the first failed health check")),
        "{:#?}",
        r.evidence
    );
    // Over the whole range CPU rose and then fell below its baseline as the
    // tasks left rotation, so only the rise before the incident shows it.
    assert!(
        r.evidence
            .iter()
            .any(|e| e.summary.contains("before the incident began")),
        "{:#?}",
        r.evidence
    );
}

/// Replacements for the starved tasks start before the alarm fires: they were
/// not running when the saturation began, so they do not make the two hot
/// tasks a minority of the fleet.
#[test]
fn cpu_saturation_of_tasks_being_replaced_is_the_services() {
    let (r, _d) = run("cpu_starved_replaced");
    assert_eq!(r.hypotheses[0].entity.as_deref(), Some("service"));
}

/// The starved tasks are replaced one after the other inside the incident
/// window, the second after its CPU fell: which tasks were hot is judged from
/// the saturation's rise, so both were and it is the service's.
#[test]
fn cpu_saturation_of_tasks_replaced_inside_the_window_is_the_services() {
    let (r, _d) = run("cpu_starved_replaced_in_window");
    assert_eq!(r.hypotheses[0].entity.as_deref(), Some("service"));
}

/// The saturation began as the window opened and the starved tasks were
/// replaced before the alarm: over the whole range CPU rose and fell, and
/// the rise is read through its plateau.
#[test]
fn cpu_saturation_that_began_as_the_window_opened_is_the_cause() {
    let (r, _d) = run("cpu_starved_at_window_start");
    assert_eq!(r.hypotheses[0].entity.as_deref(), Some("service"));
    assert!(
        r.evidence.iter().any(|e| e.kind == "metric_change"
            && e.summary.contains("then fell as the tasks stopped serving")),
        "{:#?}",
        r.evidence
    );
}

#[test]
fn latency_on_one_route_only_is_that_routes_dependency() {
    let (r, _d) = run("latency_one_route");
    assert!(
        r.evidence
            .iter()
            .any(|e| e.kind == "route" && e.summary.contains("kept their latency")),
        "{:#?}",
        r.evidence
    );
}

#[test]
fn a_crash_loop_fires_the_running_tasks_alarm() {
    run("crash_loop_running");
}

#[test]
fn a_slow_leak_is_found() {
    let (r, _d) = run("slow_leak");
    assert!(r.evidence.iter().any(|e| e.kind == "trend"));
}

#[test]
fn a_code_deployment_is_correlated_through_its_diff() {
    let (r, _d) = run("code_deploy");
    let cc = r
        .code_correlation
        .iter()
        .find(|c| c.deployment_id == "d-0002")
        .expect("code correlation for d-0002");
    assert_eq!(cc.files, vec!["src/api.rs"]);
    let kinds = |k: &str| {
        cc.matches
            .iter()
            .filter(|m| m.kind == k)
            .collect::<Vec<_>>()
    };
    // The handler is found through the route table at the deployed revision,
    // and the changed function is one it calls.
    assert!(
        kinds("handler")
            .iter()
            .any(|m| m.needle == "/api/quote (fn cart_total)"),
        "{:#?}",
        cc.matches
    );
    // The line that logs the surged message, by its constant words.
    assert!(
        kinds("template")
            .iter()
            .any(|m| m.text.contains("cannot compute the total for cart")),
        "{:#?}",
        cc.matches
    );
    assert!(kinds("risk").iter().any(|m| m.text.contains(".expect(")));
    assert!(r.evidence.iter().any(|e| e.kind == "code"));
    // Nothing from other routes' handlers.
    assert!(
        !cc.matches
            .iter()
            .any(|m| m.needle.contains("/api/products"))
    );
}

#[test]
fn a_false_alarm_after_a_long_steady_history_is_insufficient_evidence() {
    let (r, _d) = run("false_alarm_steady");
    let history = r.windows.incident.start_ms - r.windows.baseline.start_ms;
    assert!(
        history >= 30 * r.alarm.period_ms,
        "{} periods of history",
        history / r.alarm.period_ms
    );
    for h in &r.hypotheses[1..] {
        assert!(h.score < 0.5, "{h:#?}");
    }
}
