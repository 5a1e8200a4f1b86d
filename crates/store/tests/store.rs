//! The store through its public API: what goes in comes out, filtered and in
//! order; history is never replaced; the size cap prunes the oldest data and a
//! write failure is counted and reported.

use std::collections::BTreeMap;

use demo_model::events::{
    AlarmTransition, ConfigChange, Deployment, DeploymentOutcome, LogRecord, MetricSample, Stream,
    TaskEvent, TaskEventKind, Window,
};
use demo_store::{InvestigationRow, LogQuery, Store};
fn log(ts: i64, task: &str, level: &str, msg: &str) -> LogRecord {
    LogRecord::from_line(
        ts,
        task,
        Stream::Stdout,
        format!(r#"{{"level":"{level}","message":"{msg}"}}"#),
    )
}

#[test]
fn logs_round_trip_with_filters_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    for i in 0..20_000 {
        w.log(log(
            i,
            if i % 2 == 0 { "a" } else { "b" },
            if i % 100 == 0 { "ERROR" } else { "INFO" },
            "m",
        ));
    }
    w.flush();
    let r = store.reader().unwrap();
    assert_eq!(
        r.log_counts().unwrap(),
        vec![("a".into(), 10_000), ("b".into(), 10_000)]
    );
    let errors = r
        .logs(
            Window::new(0, 20_000),
            &LogQuery {
                level: Some("error".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(errors.len(), 200);
    assert!(errors.windows(2).all(|p| p[0].ts_ms <= p[1].ts_ms));
    let last = r
        .logs(
            Window::new(0, 20_000),
            &LogQuery {
                task_id: Some("b".into()),
                limit: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        last.iter().map(|l| l.ts_ms).collect::<Vec<_>>(),
        vec![19_995, 19_997, 19_999]
    );
    w.prune(10_000);
    w.flush();
    assert_eq!(
        r.logs(Window::new(0, 10_000), &LogQuery::default())
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn scan_logs_visits_every_record_in_order_and_reads_lines_only_without_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    for i in 0..100 {
        w.log(log(i, "a", "INFO", "m"));
    }
    w.log(LogRecord::from_line(
        50,
        "b",
        Stream::Stderr,
        "plain".into(),
    ));
    w.flush();
    let r = store.reader().unwrap();
    let mut seen = Vec::new();
    let n = r
        .scan_logs(Window::new(10, 60), |row| {
            seen.push((
                row.ts_ms,
                row.message.map(str::to_owned),
                row.line.map(str::to_owned),
            ))
        })
        .unwrap();
    assert_eq!(n, 51);
    assert!(seen.windows(2).all(|p| p[0].0 <= p[1].0));
    assert_eq!(seen[0], (10, Some("m".into()), None));
    assert!(seen.contains(&(50, None, Some("plain".into()))));
}

#[test]
fn metrics_transitions_deployments_events_and_investigations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    w.metric(MetricSample::new(
        1000,
        "AWS/ECS",
        "CPUUtilization",
        "service",
        42.0,
    ));
    w.metric(MetricSample::new(
        2000,
        "AWS/ECS",
        "CPUUtilization",
        "service",
        43.0,
    ));
    let id = w
        .transition(AlarmTransition {
            id: 0,
            alarm: "cpu-high".into(),
            from: "OK".into(),
            to: "ALARM".into(),
            at_ms: 2500,
            reason: "Threshold Crossed".into(),
            reason_data: serde_json::json!({"threshold": 80}),
        })
        .unwrap();
    let d = Deployment {
        id: "d-1".into(),
        started_ms: 100,
        finished_ms: None,
        version: "1.0".into(),
        git_sha: "abc".into(),
        env: BTreeMap::new(),
        changes: vec![ConfigChange {
            key: "X".into(),
            from: None,
            to: Some("1".into()),
        }],
        outcome: DeploymentOutcome::InProgress,
        previous_id: None,
        description: "first".into(),
        reason: None,
    };
    w.deployment(&d).unwrap();
    w.deployment_finished("d-1", 200, DeploymentOutcome::Completed, None)
        .unwrap();
    w.task_event(TaskEvent {
        ts_ms: 150,
        task_id: "t".into(),
        kind: TaskEventKind::OomKilled,
        exit_code: Some(137),
        reason: Some("oom".into()),
        deployment_id: Some("d-1".into()),
    });
    let row = InvestigationRow {
        id: "inv-1".into(),
        alarm: "cpu-high".into(),
        transition_id: id,
        created_ms: 3000,
        root_cause: "cpu_saturation".into(),
        summary: "s".into(),
        report_json: "{}".into(),
    };
    assert!(w.investigation(row.clone()).unwrap());
    assert!(
        !w.investigation(InvestigationRow {
            id: "inv-2".into(),
            ..row
        })
        .unwrap(),
        "one investigation per episode"
    );
    w.flush();
    let r = store.reader().unwrap();
    let s = r
        .samples("AWS/ECS", "CPUUtilization", "service", Window::new(0, 1500))
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].value, 42.0);
    assert_eq!(r.series(Window::new(0, 5000)).unwrap().len(), 1);
    let t = r.transitions(Some("cpu-high"), 10).unwrap();
    assert_eq!((t[0].id, t[0].to.as_str()), (id, "ALARM"));
    assert_eq!(t[0].reason_data["threshold"], 80);
    let ds = r.deployments(10).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].outcome, DeploymentOutcome::Completed);
    assert_eq!(ds[0].changes[0].key, "X");
    let ev = r.task_events(Window::new(0, 1000)).unwrap();
    assert_eq!(
        (ev[0].kind, ev[0].exit_code),
        (TaskEventKind::OomKilled, Some(137))
    );
    assert_eq!(r.investigations(10).unwrap().len(), 1);
    assert!(r.investigation_for_transition(id).unwrap().is_some());
}
