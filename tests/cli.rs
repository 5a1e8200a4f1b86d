//! The CLI's own behaviour: argument errors exit 2 with a message naming the
//! problem, commands that need a running environment say how to start one,
//! and `logs mine` writes the template CSV.

use std::process::Command;

fn cli(args: &[&str], state: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn logs_mine_writes_templates_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "2024-01-01 10:00:00 INFO api: user 17 logged in from 10.0.0.1\n\
         2024-01-01 10:00:01 INFO api: user 23 logged in from 10.0.0.9\n\
         2024-01-01 10:00:02 ERROR db: connection to \"primary\" lost after 30s\n",
    )
    .unwrap();
    let out = cli(
        &[
            "logs",
            "mine",
            "--format",
            "<Date> <Time> <Level> <Component>: <Content>",
            log.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "LineId,EventId,EventTemplate");
    assert_eq!(rows.len(), 4);
    let event = |row: &str| row.split(',').nth(1).unwrap().to_string();
    assert_eq!(event(rows[1]), event(rows[2]), "same template: {csv}");
    assert_ne!(event(rows[1]), event(rows[3]));
    assert!(rows[1].contains("user <*> logged in from <*>"), "{csv}");
    assert!(rows[3].contains("\"\""), "quotes are CSV-escaped: {csv}");
}

#[test]
fn logs_mine_rejects_a_bad_format_and_bad_masks_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(
        &[
            "logs",
            "mine",
            "--format",
            "<Date> no content",
            "--mask",
            "(",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--format") && err.contains("--mask"), "{err}");
}

#[test]
fn commands_without_an_environment_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["status"][..],
        &["deploy", "--env", "A=1"],
        &["faults", "reset"],
        &["scale", "3"],
    ] {
        let out = cli(args, dir.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no running environment") && err.contains("up"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_arguments_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&["up", "--time-scale", "500"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("time_scale"));
    let out = cli(&["deploy", "--env", "not-a-pair"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEY=VALUE"));
    let out = cli(&["investigate", "--alarm", "no-such-alarm"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cpu-high"));
    let out = cli(&["scenario", "run", "nope"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scenario list"));
}

#[test]
fn scenario_list_names_every_shipped_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&["scenario", "list"], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "error-spike",
        "memory-leak",
        "cpu-spike",
        "unhealthy-targets",
        "slow-responses",
        "bad-deploy",
        "red-herring",
        "false-alarm",
        "two-faults",
    ] {
        assert!(text.contains(s), "{s} missing");
    }
}
