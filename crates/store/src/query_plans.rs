//! The plans SQLite chooses for the window queries, checked with `EXPLAIN
//! QUERY PLAN`: reading a window must cost in proportion to the window, so
//! every table a window query touches is searched through an index (a range
//! of it), never scanned whole — not even a whole index, which grows with the
//! store just as the table does.

use demo_model::events::Window;
use rusqlite::Connection;

use crate::reader::{
    BLOCK_ID_RANGE_SQL, LOG_ID_RANGE_SQL, LogQuery, METRIC_ID_RANGE_SQL, PREFIX_ID_RANGE_SQL,
    SAMPLES_SQL, SCAN_LOG_IDS_SQL, SCAN_LOGS_SQL, SCAN_METRIC_IDS_SQL, SERIES_SQL,
    TAIL_ID_RANGE_SQL, TASK_EVENTS_SQL, TRACE_IDS_SQL, log_query_sql,
};

/// The `detail` column of each step of the plan.
fn plan(conn: &Connection, sql: &str, args: Vec<rusqlite::types::Value>) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Asserts that every table of the plan is read through `SEARCH ... USING
/// [COVERING] INDEX|INTEGER PRIMARY KEY` and that
/// the plan names `expect` (an index); returns the plan for messages.
fn assert_indexed(
    conn: &Connection,
    what: &str,
    sql: &str,
    args: Vec<rusqlite::types::Value>,
    expect: &str,
) {
    let steps = plan(conn, sql, args);
    for s in &steps {
        // A subquery's rows (at most its LIMIT) are not a table.
        let scans_table = s.starts_with("SCAN ") && !s.starts_with("SCAN (subquery");
        assert!(
            !scans_table,
            "{what}: step {s:?} reads a whole table or index; plan: {steps:#?}"
        );
    }
    assert!(
        steps.iter().any(|s| s.contains(expect)),
        "{what}: expected {expect:?} in the plan {steps:#?}"
    );
}

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    drop(crate::Store::open(dir.path()).unwrap());
    let conn = crate::open_conn(&dir.path().join(crate::DB_FILE)).unwrap();
    (dir, conn)
}

fn w() -> Window {
    Window::new(1_000, 3_601_000)
}

#[test]
fn the_investigators_window_queries_search_an_index() {
    let (_dir, conn) = db();
    let window = || vec![w().start_ms.into(), w().end_ms.into()];
    assert_indexed(&conn, "scan_logs", SCAN_LOGS_SQL, window(), "logs_ts");
    let mut series_args = ["AWS/ECS", "CPUUtilization", ""]
        .map(|s| rusqlite::types::Value::Text(s.into()))
        .to_vec();
    series_args.extend(window());
    assert_indexed(&conn, "samples", SAMPLES_SQL, series_args, "metrics_series");
    assert_indexed(&conn, "series", SERIES_SQL, window(), "metrics_ts");
    assert_indexed(
        &conn,
        "task_events",
        TASK_EVENTS_SQL,
        window(),
        "task_events_ts",
    );
    let mut trace_args = window();
    trace_args.extend([
        rusqlite::types::Value::Text("Database query failed".into()),
        rusqlite::types::Value::Integer(3),
    ]);
    assert_indexed(&conn, "trace_ids", TRACE_IDS_SQL, trace_args, "logs_ts");
}

#[test]
fn the_investigators_rowid_walks_search_a_range() {
    let (_dir, conn) = db();
    let window = || vec![w().start_ms.into(), w().end_ms.into()];
    let ids = || {
        let mut a = window();
        a.extend([
            rusqlite::types::Value::Integer(10),
            rusqlite::types::Value::Integer(20),
        ]);
        a
    };
    // The id range of the window comes from the index alone.
    assert_indexed(
        &conn,
        "log id range",
        LOG_ID_RANGE_SQL,
        window(),
        "COVERING INDEX logs_ts",
    );
    // With the text index: its blocks, the rows after them, the rows before it.
    assert_indexed(
        &conn,
        "log id range from the index's blocks",
        BLOCK_ID_RANGE_SQL,
        window(),
        "INDEX log_blocks_max_ts",
    );
    let after = |id: i64| {
        let mut a = window();
        a.push(rusqlite::types::Value::Integer(id));
        a
    };
    assert_indexed(
        &conn,
        "log id range of the open block",
        TAIL_ID_RANGE_SQL,
        after(1_000),
        "INTEGER PRIMARY KEY",
    );
    assert_indexed(
        &conn,
        "log id range of the rows older than the index",
        PREFIX_ID_RANGE_SQL,
        after(1_000),
        "INDEX logs_ts",
    );
    assert_indexed(
        &conn,
        "metric id range",
        METRIC_ID_RANGE_SQL,
        window(),
        "COVERING INDEX metrics_ts",
    );
    // The rows come from a rowid range of the table, not through the index.
    assert_indexed(
        &conn,
        "scan_logs_unordered",
        SCAN_LOG_IDS_SQL,
        ids(),
        "INTEGER PRIMARY KEY",
    );
    assert_indexed(
        &conn,
        "window_samples",
        SCAN_METRIC_IDS_SQL,
        ids(),
        "INTEGER PRIMARY KEY",
    );
}

#[test]
fn the_consoles_log_queries_search_an_index() {
    let (_dir, conn) = db();
    let newest = |q: LogQuery| LogQuery {
        limit: Some(200),
        ..q
    };
    let (sql, args) = log_query_sql(w(), &newest(LogQuery::default()));
    assert_indexed(&conn, "newest lines", &sql, args, "logs_ts");
    let errors = newest(LogQuery {
        level: Some("ERROR".into()),
        ..Default::default()
    });
    let (sql, args) = log_query_sql(w(), &errors);
    assert_indexed(&conn, "level=ERROR", &sql, args, "logs_level_ts");
    let text = LogQuery {
        contains: Some("r-1800-".into()),
        level: Some("INFO".into()),
        ..Default::default()
    };
    let (sql, args) = log_query_sql(w(), &text);
    assert_indexed(
        &conn,
        "text and level, no limit",
        &sql,
        args,
        "logs_level_ts",
    );
}

#[test]
fn the_text_indexs_queries_read_ranges_not_the_window() {
    use crate::reader::narrowed_log_query_sql;
    use crate::textindex::LAST_BLOCK_SQL;
    use crate::textsearch::{Narrowed, WINDOW_BLOCKS_SQL};
    let (_dir, conn) = db();
    let window = || vec![w().start_ms.into(), w().end_ms.into()];
    assert_indexed(
        &conn,
        "blocks of the window",
        WINDOW_BLOCKS_SQL,
        window(),
        "log_blocks_max_ts",
    );
    assert_indexed(&conn, "last block", LAST_BLOCK_SQL, vec![], "log_blocks");
    let n = Narrowed {
        ranges: vec![(1, 1024), (4097, 5120), (9000, i64::MAX)],
        prefix: Some(500),
    };
    for q in [
        LogQuery {
            contains: Some("r-1800-".into()),
            limit: Some(200),
            ..Default::default()
        },
        LogQuery {
            contains: Some("r-1800-".into()),
            level: Some("ERROR".into()),
            task_id: Some("task-0001".into()),
            limit: None,
        },
    ] {
        let (sql, args) = narrowed_log_query_sql(w(), &q, &n);
        let steps = plan(&conn, &sql, args);
        // The ranges by rowid, the rows older than the index through a window index.
        assert!(
            steps
                .iter()
                .any(|s| s
                    .starts_with("SEARCH logs USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")),
            "{steps:#?}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.starts_with("SEARCH logs USING INDEX logs_")),
            "{steps:#?}"
        );
        for s in &steps {
            assert!(
                !s.starts_with("SCAN logs"),
                "{s:?} reads the whole table; plan: {steps:#?}"
            );
        }
    }
}
