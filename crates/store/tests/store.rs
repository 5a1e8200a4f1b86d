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

/// A text search finds the lines whose raw text holds it (case-sensitive),
/// rare or common, within the window and the other filters; pruned lines are
/// gone from it.
#[test]
fn text_search_finds_exactly_the_lines_holding_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    for i in 0..30_000i64 {
        // Every line holds "GET" (common); request ids are rare.
        w.log(LogRecord::from_line(
            i,
            if i % 2 == 0 { "a" } else { "b" },
            Stream::Stdout,
            format!(r#"{{"level":"INFO","message":"GET done","request_id":"r-{i}-x"}}"#),
        ));
    }
    // The pieces of "r-77-x" all present but not adjacent: not a match.
    w.log(LogRecord::from_line(
        30_000,
        "a",
        Stream::Stdout,
        "r-77 -x and 7-x".into(),
    ));
    // Same text, other case: not a match (the search is case-sensitive).
    w.log(LogRecord::from_line(
        30_001,
        "a",
        Stream::Stdout,
        "R-77-X".into(),
    ));
    w.flush();
    let r = store.reader().unwrap();
    let search = |text: &str, window: Window, task: Option<&str>, limit: Option<usize>| {
        r.logs(
            window,
            &LogQuery {
                contains: Some(text.into()),
                task_id: task.map(Into::into),
                limit,
                ..Default::default()
            },
        )
        .unwrap()
        .iter()
        .map(|l| l.ts_ms)
        .collect::<Vec<_>>()
    };
    let all = Window::new(0, 40_000);
    assert_eq!(search("r-77-x", all, None, None), vec![77]);
    assert_eq!(
        search("r-77-x", Window::new(0, 77), None, None),
        Vec::<i64>::new()
    );
    assert_eq!(search("r-77-x", all, Some("a"), None), Vec::<i64>::new());
    assert_eq!(search("r-77-x", all, Some("b"), Some(5)), vec![77]);
    // "77-x" is in r-77-x, r-177-x, …: 300 lines.
    let many = search("77-x", all, None, None);
    assert_eq!(
        many.len(),
        (0..30_000)
            .filter(|i| format!("r-{i}-x").contains("77-x"))
            .count()
    );
    // Common text: the newest first, returned oldest first.
    assert_eq!(
        search("GET", all, None, Some(3)),
        vec![29_997, 29_998, 29_999]
    );
    assert_eq!(search("GET", all, None, None).len(), 30_000);
    assert_eq!(search("7-", Window::new(0, 100), None, None).len(), 10);
    // A quote in the text is text.
    assert_eq!(search("\"r-12-x\"", all, None, None), vec![12]);
    w.prune(1_000);
    w.flush();
    assert_eq!(search("r-77-x", all, None, None), Vec::<i64>::new());
    assert_eq!(search("r-1077-x", all, None, None), vec![1077]);
}

/// What is sent and not yet committed is counted (status shows it), and
/// comes back to zero once committed: a writer behind its input is visible.
#[test]
fn the_writers_backlog_is_counted_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    assert_eq!(w.health().backlog_records, 0);
    let records: Vec<LogRecord> = (0..50_000).map(|i| log(i, "a", "INFO", "m")).collect();
    // Sending 50,000 built records takes far less than committing them.
    for r in records {
        w.log(r);
    }
    assert!(w.health().backlog_records > 0);
    w.flush();
    let h = w.health();
    assert_eq!(h.backlog_records, 0);
    assert!(h.peak_backlog_records >= 1024, "{h:?}");
    assert_eq!(h.to_json()["peak_backlog_records"], h.peak_backlog_records);
    assert_eq!(store.reader().unwrap().log_counts().unwrap()[0].1, 50_000);
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

/// Log readers are told to pause at the backlog limit and to resume only once
/// the writer has worked it down to half, so memory held for a slow disk is
/// bounded; the time they waited is counted in the writer's health.
#[test]
fn log_readers_are_told_to_pause_at_the_backlog_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    assert!(!w.log_backlog_full());
    assert!(w.log_backlog_halved());
    w.set_log_backlog_limit(100);
    // Another connection holds the write lock: the writer's batches wait on it
    // (well within the 10 s busy timeout), so nothing sent gets committed.
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 0..49 {
        w.log(log(i, "a", "INFO", "m"));
    }
    assert!(w.log_backlog_halved(), "{:?}", w.health());
    w.log(log(49, "a", "INFO", "m"));
    assert!(!w.log_backlog_halved(), "half the limit is not below it");
    for i in 50..99 {
        w.log(log(i, "a", "INFO", "m"));
    }
    assert!(!w.log_backlog_full(), "{:?}", w.health());
    w.log(log(99, "a", "INFO", "m"));
    assert!(w.log_backlog_full());
    assert!(!w.log_backlog_halved(), "a waiting reader waits for half");
    other.execute_batch("COMMIT").unwrap();
    w.flush();
    assert!(w.log_backlog_halved());
    assert!(!w.log_backlog_full());
    w.log_reader_waited(7);
    w.log_reader_waited(5);
    let h = w.health();
    assert_eq!(h.log_readers_waited_ms, 12);
    assert_eq!(h.to_json()["log_readers_waited_ms"], 12);
    assert_eq!(store.reader().unwrap().log_counts().unwrap()[0].1, 100);
}

/// Lines with the same time come back in the order they were stored, with a
/// limit (the newest n) as without one, through the text index or not.
#[test]
fn lines_with_equal_times_keep_their_stored_order_under_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    // 3,000 lines over 30 ms: blocks of the text index and an open block.
    for i in 0..3_000i64 {
        w.log(log(
            1_000 + i / 100,
            "a",
            "INFO",
            &format!("line {i:04} of the burst"),
        ));
    }
    w.flush();
    let r = store.reader().unwrap();
    let window = Window::new(0, 10_000);
    for contains in [None, Some("of the burst".to_string())] {
        let all = r
            .logs(
                window,
                &LogQuery {
                    contains: contains.clone(),
                    ..LogQuery::default()
                },
            )
            .unwrap();
        assert_eq!(all.len(), 3_000);
        for limit in [1, 150, 2_999] {
            let q = LogQuery {
                contains: contains.clone(),
                limit: Some(limit),
                ..LogQuery::default()
            };
            let newest = r.logs(window, &q).unwrap();
            assert_eq!(
                newest,
                all[3_000 - limit..],
                "limit {limit}, contains {contains:?}"
            );
        }
    }
}
