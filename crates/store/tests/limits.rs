//! A bounded store and loud write failures: past its size cap the oldest log
//! lines and samples go first; log text is capped; a database that cannot
//! grow (SQLite `max_page_count`, which fails like a full disk and, unlike
//! file permissions, also fails for root) makes the writer's health turn
//! failing, counted, and recover once writes succeed again.

use demo_model::events::{LogRecord, MetricSample, Stream, Window};
use demo_store::limits::{MAX_LINE_BYTES, MAX_ROUTE_BYTES};
use demo_store::{InvestigationRow, LogQuery, Store, StoreError};

fn line(i: i64) -> LogRecord {
    LogRecord::from_line(
        i,
        "task-0001",
        Stream::Stdout,
        format!(
            r#"{{"level":"INFO","message":"request {i}","route":"/api/products","pad":"{}"}}"#,
            "x".repeat(200)
        ),
    )
}

#[test]
fn past_its_size_cap_the_store_prunes_the_oldest_logs_and_samples_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    let cap = 256 * 1024;
    w.set_size_cap(Some(cap)).unwrap();
    let mut ts = 0;
    for _ in 0..20 {
        for _ in 0..400 {
            w.log(line(ts));
            w.metric(MetricSample::new(
                ts,
                "AWS/ECS",
                "CPUUtilization",
                "service",
                1.0,
            ));
            ts += 1;
        }
        w.flush();
    }
    let h = w.health();
    assert!(h.is_ok(), "{h:?}");
    assert_eq!(h.lost_records, 0, "pruning, not failing: {h:?}");
    assert!(h.pruned_logs > 0 && h.pruned_samples > 0, "{h:?}");
    let r = store.reader().unwrap();
    let kept = r.logs(Window::new(0, ts), &LogQuery::default()).unwrap();
    assert!(kept.len() < 8000, "{} lines kept", kept.len());
    assert_eq!(
        kept.last().unwrap().ts_ms,
        ts - 1,
        "the newest line is kept"
    );
    assert_eq!(
        kept.len() as u64 + h.pruned_logs,
        8000,
        "every line is either kept or counted as pruned"
    );
    assert!(kept[0].ts_ms > 0, "the oldest went first");
    let size = std::fs::metadata(store.path()).unwrap().len();
    assert!(size <= 2 * cap + 64 * 1024, "database file {size} bytes");
}

#[test]
fn long_paths_and_lines_are_capped_in_log_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    let path = format!("/api/{}", "a".repeat(60_000));
    w.log(LogRecord::from_line(
        1,
        "task-0001",
        Stream::Stdout,
        format!(r#"{{"level":"WARN","message":"not found","route":"{path}","path":"{path}"}}"#),
    ));
    w.flush();
    let rows = store
        .reader()
        .unwrap()
        .logs(Window::new(0, 10), &LogQuery::default())
        .unwrap();
    let row = &rows[0];
    assert!(
        row.line.len() < MAX_LINE_BYTES + 32,
        "{} bytes",
        row.line.len()
    );
    assert!(row.line.ends_with("bytes cut]"), "the cut is marked");
    let route = row.route.as_deref().unwrap();
    assert!(route.len() < MAX_ROUTE_BYTES + 32, "{} bytes", route.len());
    assert!(route.starts_with("/api/aaa"));
    assert_eq!(row.message.as_deref(), Some("not found"));
}

fn big_investigation(n: i64) -> InvestigationRow {
    InvestigationRow {
        id: format!("inv-{n}"),
        alarm: "cpu-high".into(),
        transition_id: n,
        created_ms: n,
        root_cause: "cpu_saturation".into(),
        summary: "s".into(),
        report_json: "r".repeat(16 * 1024),
    }
}

#[test]
fn a_full_database_turns_the_writer_health_failing_counts_the_loss_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    assert!(w.health().is_ok());
    // Investigations are never pruned: with a 64 KiB cap the database reaches
    // its hard limit (twice the cap) and every write fails as on a full disk.
    w.set_size_cap(Some(64 * 1024)).unwrap();
    let mut first_error = None;
    for n in 0..64 {
        if let Err(e) = w.investigation(big_investigation(n)) {
            first_error = Some(e);
            break;
        }
    }
    let err = first_error.expect("the database never filled up");
    assert!(matches!(err, StoreError::WriteFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
    // Ten lines of 7 KiB in one batch need more room than is left: all lost, counted.
    for i in 0..10 {
        let mut l = line(i);
        l.line.push_str(&" ".repeat(7 * 1024));
        w.log(l);
    }
    w.flush();
    let h = w.health();
    assert!(!h.is_ok(), "{h:?}");
    assert!(h.failing_since_ms.is_some());
    assert!(h.failed_batches >= 2, "{h:?}");
    assert!(
        h.lost_records >= 10,
        "the log lines of the failed batch: {h:?}"
    );
    assert!(
        h.describe().starts_with("failing since"),
        "{}",
        h.describe()
    );
    let json = h.to_json();
    assert_eq!(json["ok"], false);
    assert!(json["last_error"].as_str().unwrap().contains("full"));

    // Room again: the next write succeeds and health recovers, the count stays.
    w.set_size_cap(None).unwrap();
    w.investigation(big_investigation(1000)).unwrap();
    let after = w.health();
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(after.failed_batches, h.failed_batches);
    assert!(after.last_error.is_some(), "the last failure is remembered");
}

/// A text index that cannot be read back (here its table is gone) does not stop
/// lines being stored: each batch that began without it is counted in the
/// writer's health, the episode ends at the first batch that reads it back, and
/// a search finds every line, indexed or not.
#[test]
fn a_text_index_that_cannot_be_read_back_is_counted_and_lines_are_still_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let store = Store::open(dir.path()).unwrap();
        let w = store.writer();
        w.log(line(0));
        w.flush();
        assert_eq!(w.health().text_index_errors, 0);
        store.path().to_path_buf()
    };
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("ALTER TABLE log_blocks RENAME TO log_blocks_away")
        .unwrap();
    // A new store reads the index back at its first batch, and at every batch
    // after one that failed to.
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    for i in 1..4 {
        w.log(line(i));
        w.flush();
    }
    let h = w.health();
    assert!(h.is_ok(), "the lines were stored: {h:?}");
    assert_eq!(h.text_index_errors, 3, "{h:?}");
    assert!(h.text_index_failing_since_ms.is_some());
    let error = h.text_index_last_error.clone().unwrap();
    assert!(error.contains("log_blocks"), "{error}");
    assert_eq!(h.to_json()["text_index_errors"], 3);
    assert_eq!(h.to_json()["text_index_last_error"], error.as_str());

    other
        .execute_batch("ALTER TABLE log_blocks_away RENAME TO log_blocks")
        .unwrap();
    w.log(line(4));
    w.flush();
    let h = w.health();
    assert_eq!(h.text_index_failing_since_ms, None, "{h:?}");
    assert_eq!(h.text_index_errors, 3, "the count stays");
    let reader = store.reader().unwrap();
    for i in 0..5 {
        let q = LogQuery {
            contains: Some(format!("request {i}\"")),
            ..LogQuery::default()
        };
        let found = reader.logs(Window::new(0, 10), &q).unwrap();
        assert_eq!(found.len(), 1, "line {i}: {found:?}");
        assert_eq!(found[0].ts_ms, i);
    }
}
