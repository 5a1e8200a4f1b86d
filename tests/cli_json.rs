//! The CLI for scripts: every read command's `--json` parses (on a state
//! directory written through the real store), exit codes mean something,
//! completions and man pages come from the clap definitions.

use std::path::Path;
use std::process::{Command, Output};

use demo_model::events::{AlarmTransition, LogRecord, Stream, now_ms};
use serde_json::Value;

fn cli(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn json(state: &Path, args: &[&str]) -> Value {
    let out = cli(state, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A state directory with an error-count-high episode and a few log lines.
fn state() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = demo_store::Store::open(dir.path()).unwrap();
    let w = store.writer();
    let now = now_ms();
    for (i, level) in ["INFO", "ERROR", "ERROR"].iter().enumerate() {
        let line = format!(
            r#"{{"timestamp":"x","level":"{level}","message":"line {i}","task_id":"task-0001"}}"#
        );
        w.log(LogRecord {
            ts_ms: now - 5_000 + i as i64,
            task_id: "task-0001".into(),
            stream: Stream::Stdout,
            level: Some((*level).into()),
            message: Some(format!("line {i}")),
            route: None,
            status: None,
            line,
        });
    }
    w.transition(AlarmTransition {
        id: 0,
        alarm: "error-count-high".into(),
        from: "OK".into(),
        to: "ALARM".into(),
        at_ms: now - 1_000,
        reason: "test".into(),
        reason_data: serde_json::json!({"period_ms": 3000}),
    })
    .unwrap();
    w.flush();
    dir
}

#[test]
fn every_offline_read_command_prints_json() {
    let dir = state();
    let d = dir.path();
    let alarms = json(d, &["alarms", "--json"]);
    let eh = alarms["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "error-count-high")
        .unwrap();
    assert_eq!(eh["state"], "ALARM");
    assert_eq!(alarms["history"][0]["to"], "ALARM");

    let out = cli(d, &["logs", "--json", "--since", "1h", "--level", "error"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "only the ERROR lines: {lines:?}");
    assert_eq!(lines[0]["task_id"], "task-0001");

    let inv = json(
        d,
        &[
            "investigate",
            "--alarm",
            "error-count-high",
            "--time-scale",
            "20",
            "--json",
        ],
    );
    let id = inv["id"].as_str().unwrap().to_string();
    assert_eq!(inv["created"], true);
    assert!(Path::new(inv["reports"]["json"].as_str().unwrap()).exists());
    // The same episode again: the same investigation, not a second one.
    let again = json(
        d,
        &[
            "investigate",
            "--alarm",
            "error-count-high",
            "--time-scale",
            "20",
            "--json",
        ],
    );
    assert_eq!(
        (again["id"].as_str(), again["created"].as_bool()),
        (Some(id.as_str()), Some(false))
    );

    let list = json(d, &["reports", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    let report = json(d, &["reports", "show", &id, "--json"]);
    assert_eq!(report["id"], id.as_str());
    assert_eq!(report["alarm"]["name"], "error-count-high");

    let scenarios = json(d, &["scenario", "list", "--json"]);
    assert!(
        scenarios
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "bad-deploy" && s["alarms"].as_array().is_some())
    );
}

#[test]
fn exit_codes_mean_something() {
    let dir = state();
    let d = dir.path();
    // 3: an unknown id.
    let out = cli(d, &["reports", "show", "no-such-report"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        d,
        &["investigate", "--alarm", "cpu-high", "--time-scale", "20"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "no cpu-high episode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2: values clap checks.
    for args in [
        &["logs", "--level", "LOUD"][..],
        &["reports", "show", "x", "--format", "pdf"],
        &["faults", "inject", "/error/500", "--target", "some-task"],
        &["deploy", "--env", "A=1", "--timeout", "5m"],
        &[
            "investigate",
            "--alarm",
            "cpu-high",
            "--repo",
            "/nonexistent-repo",
        ],
    ] {
        let out = cli(d, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Hints name the binary as invoked (a cargo target directory: `cargo run`).
    let out = cli(d, &["status"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`cargo run --release -- up`"));
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for shell in ["bash", "zsh", "fish"] {
        let out = cli(d, &["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for word in ["scenario", "reports", "prometheus", "state-dir"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = cli(d, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    // The bash script is valid bash.
    let script = d.join("c.bash");
    std::fs::write(&script, cli(d, &["completions", "bash"]).stdout).unwrap();
    assert!(
        Command::new("bash")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );

    let out = cli(d, &["man"]);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH devops-agent-demo 1") && page.contains("Exit status"),
        "{page}"
    );
    let pages = d.join("man");
    let out = cli(d, &["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success());
    let deploy = std::fs::read_to_string(pages.join("devops-agent-demo-deploy.1")).unwrap();
    assert!(deploy.contains("timeout"), "{deploy}");
}
