//! Identity across restarts (issue 13, finding 2): a restart of `up` on the
//! same state directory used to start numbering at d-0001 and task-0001 again
//! and replace the earlier deployment records (`INSERT OR REPLACE`). Now the
//! earlier records stay exactly as written, ids continue, and each start is a
//! runtime event that says whether the run before it stopped cleanly.

use std::path::Path;
use std::time::Duration;

use demo_model::events::{Deployment, DeploymentOutcome};

mod util;
use util::{Up, cli_ok};

fn deployments(dir: &Path) -> Vec<Deployment> {
    let mut ds = demo_store::Reader::open(dir)
        .unwrap()
        .deployments(100)
        .unwrap();
    ds.reverse();
    ds
}

fn ids(ds: &[Deployment]) -> Vec<&str> {
    ds.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn a_restart_keeps_earlier_deployments_and_continues_deployment_and_task_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ready = Duration::from_secs(60);

    // Run 1: d-0001 (initial), d-0002 (a configuration deploy), clean stop.
    let up = Up::start_in(dir.path());
    up.wait_for("ready:", ready);
    let out = cli_ok(dir.path(), &["deploy", "--env", "GREETING=hello", "--wait"]);
    assert!(out.contains("d-0002"), "{out}");
    up.stop();
    let before = deployments(dir.path());
    assert_eq!(ids(&before), ["d-0001", "d-0002"]);
    assert_eq!(before[1].outcome, DeploymentOutcome::Completed);
    let reader = demo_store::Reader::open(dir.path()).unwrap();
    let last_task = reader.last_task_seq().unwrap();
    assert!(
        last_task >= 4,
        "2 initial tasks and 2 of d-0002: task-{last_task:04}"
    );

    // Run 2 on the same directory.
    let mut up = Up::start_in(dir.path());
    let lines = up.wait_for("ready:", ready);
    let restart = lines
        .iter()
        .find(|l| l.trim_start().starts_with("restart"))
        .unwrap_or_else(|| panic!("up does not say it restarts: {lines:#?}"));
    assert!(
        restart.contains("after d-0002") && restart.contains("stopped cleanly"),
        "{restart}"
    );
    // The service carries on with what it last ran (d-0002, GREETING=hello),
    // as ECS keeps a service's deployment: no record is added or changed.
    let after = deployments(dir.path());
    assert_eq!(ids(&after), ["d-0001", "d-0002"]);
    assert_eq!(after, before, "earlier records unchanged");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(dir.path(), &["status", "--json"])).unwrap();
    assert_eq!(status["current_deployment"], "d-0002", "{status:#}");
    for t in status["tasks"].as_array().unwrap() {
        assert_eq!(t["deployment"], "d-0002", "{t}");
    }

    // The next deploy continues the sequence; tasks too.
    let out = cli_ok(dir.path(), &["deploy", "--env", "GREETING=again", "--wait"]);
    assert!(out.contains("d-0003"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(dir.path(), &["status", "--json"])).unwrap();
    for t in status["tasks"].as_array().unwrap() {
        let n: u64 = t["id"].as_str().unwrap()["task-".len()..].parse().unwrap();
        assert!(n > last_task, "task {} reuses an id of run 1", t["id"]);
    }
    let text = cli_ok(dir.path(), &["status"]);
    assert!(
        text.contains("restart after a clean stop"),
        "status shows the restart: {text}"
    );

    // Run 2 dies without stopping, in the middle of d-0004; run 3 says so,
    // records d-0004 as failed (interrupted) and, having no completed
    // deployment to carry on with, records its own start after it.
    let out = cli_ok(dir.path(), &["deploy", "--env", "GREETING=third"]);
    assert!(out.contains("d-0004"), "{out}");
    up.kill();
    let up = Up::start_in(dir.path());
    let lines = up.wait_for("ready:", ready);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("after d-0004") && l.contains("ended without stopping")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("interrupted") && l.contains("d-0004")),
        "{lines:#?}"
    );
    let all = deployments(dir.path());
    assert_eq!(
        ids(&all),
        ["d-0001", "d-0002", "d-0003", "d-0004", "d-0005"]
    );
    assert_eq!(all[3].outcome, DeploymentOutcome::Failed);
    assert!(
        all[3]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("interrupted"),
        "{:?}",
        all[3]
    );
    assert_eq!(all[2].outcome, DeploymentOutcome::Completed, "untouched");
    let initial = &all[4];
    assert!(initial.description.contains("restart"), "{initial:?}");
    assert_eq!(initial.previous_id.as_deref(), Some("d-0004"));
    // This run was started without GREETING: the restart's own record says so.
    assert!(
        initial
            .changes
            .iter()
            .any(|c| c.key == "GREETING" && c.to.is_none()),
        "{:?}",
        initial.changes
    );
    let events = reader.runtime_events(10).unwrap();
    let kinds: Vec<&str> = events.iter().rev().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["started", "stopped", "started", "started"]);
    up.stop();
}
