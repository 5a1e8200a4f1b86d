//! The same incident at time scale 1, 5 and 20: every fixture is generated
//! with its timestamps stretched or squeezed (each alarm period holds the
//! same requests, failures, memory growth and CPU), and the investigation
//! must rank the same hypotheses, with the same entities and scores. A
//! threshold in real seconds (a rate per second, a duration) would make
//! them differ.

mod common;

use demo_model::Catalog;
use investigator::{Investigator, InvestigatorConfig, Report};

fn ranking(name: &str, scale: f64) -> Vec<(String, String, f64)> {
    let s = common::at_scale(&common::load(name), scale);
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
            time_scale: scale,
        },
        store.writer(),
    )
    .unwrap();
    let out = inv.investigate(&g.transition).unwrap();
    let r: Report =
        serde_json::from_str(&std::fs::read_to_string(&out.paths.json).unwrap()).unwrap();
    assert_eq!(
        r.alarm.period_ms,
        (60_000.0 / scale) as i64,
        "{name} at {scale}: the alarm period is scaled"
    );
    r.hypotheses
        .iter()
        .map(|h| {
            (
                h.category.to_string(),
                h.entity.clone().unwrap_or_default(),
                h.score,
            )
        })
        .collect()
}

fn same_at_every_scale(name: &str) {
    let reference = ranking(name, 20.0);
    for scale in [1.0, 5.0] {
        let got = ranking(name, scale);
        let names = |v: &[(String, String, f64)]| {
            v.iter()
                .map(|x| (x.0.clone(), x.1.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&got),
            names(&reference),
            "{name}: ranking at time scale {scale} differs from 20\n{got:#?}\n{reference:#?}"
        );
        for (a, b) in got.iter().zip(&reference) {
            assert!(
                (a.2 - b.2).abs() <= 0.002,
                "{name}: score of {} {} is {} at time scale {scale}, {} at 20",
                a.0,
                a.1,
                a.2,
                b.2
            );
        }
    }
}

#[test]
fn a_bad_deployment_is_the_same_incident_at_every_time_scale() {
    same_at_every_scale("pricing_v2");
}

#[test]
fn a_route_fault_after_an_innocent_deployment_is_the_same_at_every_time_scale() {
    same_at_every_scale("innocent_timeout_key");
}

#[test]
fn a_traffic_surge_is_the_same_at_every_time_scale() {
    same_at_every_scale("traffic_surge");
}

#[test]
fn a_slow_leak_is_the_same_at_every_time_scale() {
    same_at_every_scale("slow_leak");
}

#[test]
fn cpu_before_health_checks_is_the_same_at_every_time_scale() {
    same_at_every_scale("cpu_health");
}

#[test]
fn cpu_starvation_that_ended_before_the_alarm_is_the_same_at_every_time_scale() {
    same_at_every_scale("cpu_starved_health");
}

#[test]
fn cpu_starvation_with_replacements_is_the_same_at_every_time_scale() {
    same_at_every_scale("cpu_starved_replaced");
}

#[test]
fn cpu_starvation_with_replacements_inside_the_window_is_the_same_at_every_time_scale() {
    same_at_every_scale("cpu_starved_replaced_in_window");
}

#[test]
fn cpu_starvation_as_the_window_opened_is_the_same_at_every_time_scale() {
    same_at_every_scale("cpu_starved_at_window_start");
}

#[test]
fn a_slow_dependency_is_the_same_at_every_time_scale() {
    same_at_every_scale("slow_dependency");
}

#[test]
fn a_false_alarm_is_the_same_at_every_time_scale() {
    same_at_every_scale("false_alarm");
}

#[test]
fn a_crash_loop_is_the_same_at_every_time_scale() {
    same_at_every_scale("crash_loop_running");
}
