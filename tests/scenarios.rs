//! Every shipped scenario end to end through the real CLI (time-scaled): its
//! alarms must reach ALARM, then return to OK after the fault is removed.

use std::process::Command;

use serde_json::Value;

fn run(name: &str) -> Value {
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
    assert!(out.status.success(), "{name} failed:\n{stderr}\n{stdout}");
    result
}

fn assert_fired_and_cleared(name: &str, alarms: &[&str]) -> Value {
    let r = run(name);
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
    assert_eq!(r["missing"].as_array().unwrap().len(), 0, "{r:#}");
    assert_eq!(r["traffic"]["connection_errors"], 0, "{name}: {r:#}");
    r
}

#[test]
fn error_spike() {
    let r = assert_fired_and_cleared("error-spike", &["error-count-high", "high-5xx-errors"]);
    assert!(r["traffic"]["server_errors"].as_u64().unwrap() > 20);
}

#[test]
fn memory_leak() {
    assert_fired_and_cleared("memory-leak", &["memory-high"]);
}

#[test]
fn cpu_spike() {
    assert_fired_and_cleared("cpu-spike", &["cpu-high"]);
}

#[test]
fn unhealthy_targets() {
    assert_fired_and_cleared("unhealthy-targets", &["unhealthy-targets"]);
}

#[test]
fn slow_responses() {
    let r = assert_fired_and_cleared("slow-responses", &["latency-p99-high"]);
    assert_eq!(
        r["traffic"]["server_errors"], 0,
        "a slow dependency is slow, not failing"
    );
}

#[test]
fn bad_deploy() {
    assert_fired_and_cleared("bad-deploy", &["error-count-high", "high-5xx-errors"]);
}

#[test]
fn red_herring() {
    assert_fired_and_cleared("red-herring", &["error-count-high", "high-5xx-errors"]);
}

#[test]
fn false_alarm() {
    let r = assert_fired_and_cleared("false-alarm", &["latency-p99-high"]);
    assert_eq!(r["traffic"]["server_errors"], 0, "nothing is broken");
}

#[test]
fn two_faults() {
    assert_fired_and_cleared("two-faults", &["error-count-high", "memory-high"]);
}
