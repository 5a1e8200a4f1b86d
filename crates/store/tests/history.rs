//! History is never rewritten: a database made by the previous (unversioned)
//! schema opens, migrates and keeps its rows; an existing deployment id cannot
//! be inserted again; outcomes change by an update of that id only; ids to
//! continue from are read back.

use std::collections::BTreeMap;

use demo_model::events::{Deployment, DeploymentOutcome, TaskEvent, TaskEventKind, Window};
use demo_store::{RuntimeEvent, Store, StoreError, TaskProcess, schema};
use rusqlite::Connection;

/// The DDL of the store before schema versioning (commit 3e1a01e), as that
/// build created it: no `user_version`.
const PREVIOUS_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, task_id TEXT NOT NULL, stream TEXT NOT NULL,
    level TEXT, message TEXT, route TEXT, status INTEGER, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts_ms);
CREATE TABLE IF NOT EXISTS metrics (
    ts_ms INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, dimension TEXT NOT NULL,
    value REAL NOT NULL, count REAL NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_series ON metrics(namespace, name, dimension, ts_ms);
CREATE TABLE IF NOT EXISTS alarm_transitions (
    id INTEGER PRIMARY KEY, alarm TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
    at_ms INTEGER NOT NULL, reason TEXT NOT NULL, reason_data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transitions_alarm ON alarm_transitions(alarm, at_ms);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, started_ms INTEGER NOT NULL, finished_ms INTEGER, version TEXT NOT NULL,
    git_sha TEXT NOT NULL, env TEXT NOT NULL, changes TEXT NOT NULL, outcome TEXT NOT NULL,
    previous_id TEXT, description TEXT NOT NULL, reason TEXT);
CREATE TABLE IF NOT EXISTS task_events (
    id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, task_id TEXT NOT NULL, kind TEXT NOT NULL,
    exit_code INTEGER, reason TEXT, deployment_id TEXT);
CREATE INDEX IF NOT EXISTS task_events_ts ON task_events(ts_ms);
CREATE TABLE IF NOT EXISTS investigations (
    id TEXT PRIMARY KEY, alarm TEXT NOT NULL, transition_id INTEGER NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL, root_cause TEXT NOT NULL, summary TEXT NOT NULL,
    report_json TEXT NOT NULL);
"#;

fn deployment(id: &str, started_ms: i64) -> Deployment {
    Deployment {
        id: id.into(),
        started_ms,
        finished_ms: None,
        version: "1.0.0".into(),
        git_sha: "abc".into(),
        env: BTreeMap::new(),
        changes: Vec::new(),
        outcome: DeploymentOutcome::InProgress,
        previous_id: None,
        description: format!("deploy {id}"),
        reason: None,
    }
}

#[test]
fn a_database_made_by_the_previous_schema_opens_migrates_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = Connection::open(dir.path().join("state.db")).unwrap();
        old.execute_batch(PREVIOUS_SCHEMA).unwrap();
        old.execute_batch(
            r#"
            INSERT INTO deployments VALUES ('d-0001', 100, 200, '1.0.0', 'abc', '{}', '[]', 'completed', NULL, 'initial deployment', NULL);
            INSERT INTO deployments VALUES ('d-0002', 300, NULL, '1.1.0', 'def', '{"X":"1"}', '[]', 'in_progress', 'd-0001', 'config', NULL);
            INSERT INTO task_events (ts_ms, task_id, kind) VALUES (150, 'task-0007', 'started');
            INSERT INTO logs (ts_ms, task_id, stream, level, message, line) VALUES (160, 'task-0007', 'stdout', 'INFO', 'hi', '{"level":"INFO","message":"hi"}');
            INSERT INTO alarm_transitions (alarm, from_state, to_state, at_ms, reason, reason_data) VALUES ('cpu-high', 'OK', 'ALARM', 170, 'r', '{}');
            "#,
        )
        .unwrap();
        let v: u32 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 0, "the previous build did not version its schema");
    }

    let store = Store::open(dir.path()).unwrap();
    let r = store.reader().unwrap();
    let ds = r.deployments(10).unwrap();
    assert_eq!(
        ds.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d-0002", "d-0001"]
    );
    assert_eq!(ds[1].outcome, DeploymentOutcome::Completed);
    assert_eq!(ds[0].env["X"], "1");
    assert_eq!(r.task_events(Window::new(0, 1000)).unwrap().len(), 1);
    assert_eq!(r.log_counts().unwrap(), vec![("task-0007".into(), 1)]);
    assert_eq!(r.transitions(None, 10).unwrap().len(), 1);
    assert_eq!(r.last_deployment_seq().unwrap(), 2);
    assert_eq!(r.last_task_seq().unwrap(), 7);

    // The line the previous build stored is found by level and text after migration 3's indexes.
    let found = r
        .logs(
            Window::new(0, 1000),
            &demo_store::LogQuery {
                contains: Some("\"message\":\"hi\"".into()),
                level: Some("INFO".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].task_id, "task-0007");

    // The new tables of migration 2 work.
    let w = store.writer();
    w.runtime_event(RuntimeEvent {
        ts_ms: 400,
        kind: "started".into(),
        detail: "after migration".into(),
    })
    .unwrap();
    assert_eq!(r.runtime_events(10).unwrap()[0].detail, "after migration");
    drop(store);

    let conn = Connection::open(dir.path().join("state.db")).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::VERSION);
    let window_indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('logs_level_ts', 'metrics_ts')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(window_indexes, 2, "migration 3 adds the window indexes");
    // Opening again applies nothing and loses nothing.
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.reader().unwrap().deployments(10).unwrap().len(), 2);
}

#[test]
fn a_database_from_a_newer_build_is_refused_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join("state.db"))
        .unwrap()
        .pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("schema version {}", schema::VERSION + 1)) && err.contains("newer"),
        "{err}"
    );
}

#[test]
fn a_deployment_id_is_never_written_twice_and_outcomes_update_only_that_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    w.deployment(&deployment("d-0001", 100)).unwrap();
    w.deployment(&deployment("d-0002", 200)).unwrap();

    let mut other = deployment("d-0001", 999);
    other.description = "a second run reusing the id".into();
    match w.deployment(&other) {
        Err(StoreError::Exists { what, id }) => {
            assert_eq!((what, id.as_str()), ("deployment", "d-0001"))
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    // A duplicate is the caller's error, not the batch's: the writer stays healthy.
    assert!(w.health().is_ok(), "{:?}", w.health());

    w.deployment_finished(
        "d-0001",
        150,
        DeploymentOutcome::Completed,
        Some("done".into()),
    )
    .unwrap();
    match w.deployment_finished("d-0009", 1, DeploymentOutcome::Failed, None) {
        Err(StoreError::NotFound { id, .. }) => assert_eq!(id, "d-0009"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let r = store.reader().unwrap();
    let d1 = r.deployment("d-0001").unwrap().unwrap();
    assert_eq!(
        (
            d1.started_ms,
            d1.description.as_str(),
            d1.finished_ms,
            d1.outcome
        ),
        (
            100,
            "deploy d-0001",
            Some(150),
            DeploymentOutcome::Completed
        )
    );
    assert_eq!(d1.reason.as_deref(), Some("done"));
    let d2 = r.deployment("d-0002").unwrap().unwrap();
    assert_eq!(d2.outcome, DeploymentOutcome::InProgress, "untouched");
}

#[test]
fn ids_to_continue_from_ignore_ids_not_made_by_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    let r = store.reader().unwrap();
    assert_eq!(
        (r.last_deployment_seq().unwrap(), r.last_task_seq().unwrap()),
        (0, 0)
    );
    for id in ["d-0003", "d-12", "d-x9", "deploy-99"] {
        w.deployment(&deployment(id, 1)).unwrap();
    }
    for task in ["task-0002", "task-0010", "local-5", "task-x"] {
        w.task_event(TaskEvent {
            ts_ms: 1,
            task_id: task.into(),
            kind: TaskEventKind::Started,
            exit_code: None,
            reason: None,
            deployment_id: None,
        });
    }
    w.task_process(TaskProcess {
        task_id: "task-0011".into(),
        pid: 1,
        start_ticks: 1,
        exe: "/bin/x".into(),
        started_ms: 1,
    })
    .unwrap();
    w.flush();
    assert_eq!(r.last_deployment_seq().unwrap(), 12);
    assert_eq!(r.last_task_seq().unwrap(), 11);
    assert_eq!(r.unended_task_processes().unwrap().len(), 1);
    w.task_process_ended("task-0011", 5);
    w.flush();
    assert!(r.unended_task_processes().unwrap().is_empty());
}
