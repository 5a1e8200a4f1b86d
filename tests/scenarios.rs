//! Shipped scenarios end to end through the real CLI (time scale 20): each
//! expected alarm must fire, be investigated, and clear after recovery, and
//! every report must name the expected root cause first (category and exact
//! entity), cite the required evidence, and not blame a not-blamed category.
//!
//! A representative subset, one test per scenario, to keep CI short: every
//! root-cause category the environment can produce, red herrings both ways
//! (an innocent deployment whose key shares no word, and one whose key does),
//! two faults, both crash loops, a traffic surge on one route. Left to
//! `scenario bench`: the git-revision and unrelated-key deployments (each
//! builds demo-app, minutes on 2 cores), the 34-minute slow leak and the
//! false alarm after 30 steady minutes.

use std::process::Command;

use serde_json::Value;

/// The scenario's result, whether the command succeeded, and its state
/// directory (kept alive: the result names report files inside it).
fn run(name: &str) -> (Value, bool, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["scenario", "run", name, "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{name}: no JSON result ({e}):\n{stdout}\n{stderr}"));
    (result, out.status.success(), dir)
}

/// Runs `name` and asserts alarms, root cause, evidence and not_blamed for every alarm.
fn scenario(name: &str, alarms: &[&str]) -> Value {
    let (r, ok, _dir) = run(name);
    for a in alarms {
        assert!(
            r["fired"].get(*a).is_some(),
            "{name}: {a} never fired: {r:#}"
        );
        assert!(
            r["recovered"].as_array().unwrap().iter().any(|x| x == a),
            "{name}: {a} did not return to OK: {r:#}"
        );
    }
    assert_eq!(r["missing"], Value::Array(vec![]), "{name}: {r:#}");
    assert_eq!(r["skipped_steps"], Value::Array(vec![]), "{name}: {r:#}");
    let scores = r["scores"].as_array().unwrap();
    assert_eq!(
        scores.len(),
        alarms.len(),
        "{name}: every alarm scored: {r:#}"
    );
    for s in scores {
        let alarm = &s["alarm"];
        assert_eq!(
            s["top1"], true,
            "{name}/{alarm}: expected {} first, found {}",
            s["expected"], s["found"]
        );
        assert_eq!(
            s["also_top3"], true,
            "{name}/{alarm}: a further cause is not in the top 3: {r:#}"
        );
        assert_eq!(
            s["blamed"],
            Value::Array(vec![]),
            "{name}/{alarm}: blamed a not-blamed category"
        );
        assert_eq!(
            s["missing_evidence"],
            Value::Array(vec![]),
            "{name}/{alarm}: the report does not cite required evidence"
        );
        let report = s["report"].as_str().expect("report path");
        assert!(std::path::Path::new(report).is_file(), "{report}");
    }
    assert_eq!(r["passed"], true, "{name}: {r:#}");
    assert!(ok, "{name}: the command failed although the result passed");
    r
}

fn no_connection_errors(name: &str, r: &Value) {
    assert_eq!(r["traffic"]["connection_errors"], 0, "{name}: {r:#}");
}

#[test]
fn error_spike() {
    let r = scenario("error-spike", &["error-count-high", "high-5xx-errors"]);
    assert!(r["traffic"]["server_errors"].as_u64().unwrap() > 20);
    no_connection_errors("error-spike", &r);
}

#[test]
fn memory_leak() {
    let r = scenario("memory-leak", &["memory-high"]);
    no_connection_errors("memory-leak", &r);
}

#[test]
fn cpu_spike() {
    scenario("cpu-spike", &["cpu-high"]);
}

#[test]
fn unhealthy_targets() {
    scenario("unhealthy-targets", &["unhealthy-targets"]);
}

#[test]
fn slow_responses() {
    let r = scenario("slow-responses", &["latency-p99-high"]);
    assert_eq!(
        r["traffic"]["server_errors"], 0,
        "a slow dependency is slow, not failing"
    );
}

#[test]
fn bad_deploy() {
    scenario("bad-deploy", &["error-count-high", "high-5xx-errors"]);
}

#[test]
fn red_herring() {
    scenario("red-herring", &["error-count-high", "high-5xx-errors"]);
}

#[test]
fn innocent_deploy_shared_words() {
    scenario(
        "innocent-deploy-shared-words",
        &["error-count-high", "high-5xx-errors"],
    );
}

#[test]
fn false_alarm() {
    let r = scenario("false-alarm", &["latency-p99-high"]);
    assert_eq!(r["traffic"]["server_errors"], 0, "nothing is broken");
}

#[test]
fn two_faults() {
    scenario("two-faults", &["error-count-high", "memory-high"]);
}

#[test]
fn crash_loop_one_task() {
    let r = scenario("crash-loop-one-task", &["tasks-below-desired"]);
    assert_eq!(
        r["other_alarms"],
        Value::Array(vec![]),
        "the oldest task keeps serving: no other alarm"
    );
}

#[test]
fn crash_loop_all_tasks() {
    let r = scenario(
        "crash-loop-all-tasks",
        &["tasks-below-desired", "elb-5xx-errors"],
    );
    assert!(
        r["traffic"]["server_errors"].as_u64().unwrap() > 20,
        "the load balancer answered 5xx with no healthy target: {r:#}"
    );
}

/// Requests cost CPU (the cpu-cost fault) and quotes alone surge: CPU follows
/// to its limit; the surge, confined to one route, is named as the cause.
#[test]
fn traffic_surge_quotes() {
    scenario("traffic-surge-quotes", &["cpu-high"]);
}

#[test]
fn a_scenario_file_outside_the_repository_with_problems_gets_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.yaml");
    std::fs::write(
        &file,
        "name: mine\ndescription: d\ntraffic: { rate: 0 }\nsteps:\n  - { at: 0, fault: { path: /x } }\nexpect:\n  alarms: [nope]\n  within: 10\n  root_cause: { category: gremlins, entity: null }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["scenario", "run"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has 4 problem(s)"), "{err}");
    for want in [
        "traffic.rate",
        "steps[0].fault.path",
        "\"nope\"",
        "gremlins",
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
}

#[test]
fn a_directory_of_scenario_files_outside_the_repository_is_listed_and_every_bad_file_named() {
    let state = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/error-spike.yaml"
    ))
    .unwrap();
    let renamed = shipped.replacen("name: error-spike", "name: my-error-spike", 1);
    assert_ne!(renamed, shipped, "the shipped file starts with its name");
    std::fs::write(mine.path().join("a.yaml"), renamed).unwrap();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
            .arg("--state-dir")
            .arg(state.path())
            .args(args)
            .arg("--dir")
            .arg(mine.path())
            .output()
            .unwrap()
    };
    // Listed from the directory, instead of the shipped ones.
    let out = cli(&["scenario", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my-error-spike"]);
    // Two bad files beside it: the bench refuses the directory before it
    // runs anything, naming each file's problems at once.
    std::fs::write(
        mine.path().join("b.yaml"),
        "name: broken\ndescription: d\ntraffic: { rate: 0 }\nsteps: []\nexpect:\n  alarms: [nope]\n  within: 10\n  root_cause: { category: gremlins, entity: null }\n",
    )
    .unwrap();
    std::fs::write(mine.path().join("c.yaml"), "name: [not, a, name]\n").unwrap();
    let out = cli(&["scenario", "bench", "--json"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing ran");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["b.yaml", "traffic.rate", "\"nope\"", "gremlins", "c.yaml"] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
    assert!(!err.contains("my-error-spike"), "{err}");
    assert!(
        !state.path().join("scenarios").exists(),
        "no environment started"
    );
}
