//! The database schema as numbered migrations, applied in order on open and
//! recorded in `PRAGMA user_version`, so a state directory made by an older
//! build opens with a newer one and keeps its rows.
//!
//! Migration 1 is the schema the store had before it was versioned, word for
//! word (`CREATE ... IF NOT EXISTS`): an unversioned database (version 0) made
//! by that build already holds it, and applying it again changes nothing.
//! Never edit a migration that has shipped; add the next one.

use rusqlite::Connection;

/// Migration `i` (0-based) brings the database to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    V1_INITIAL,
    V2_RUNTIME_EVENTS_AND_PROCESSES,
    V3_WINDOW_INDEXES,
    V4_TEXT_INDEX,
];

/// The version a database has once every migration of this build is applied.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

const V1_INITIAL: &str = r#"
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    level TEXT,
    message TEXT,
    route TEXT,
    status INTEGER,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts_ms);
CREATE TABLE IF NOT EXISTS metrics (
    ts_ms INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    dimension TEXT NOT NULL,
    value REAL NOT NULL,
    count REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_series ON metrics(namespace, name, dimension, ts_ms);
CREATE TABLE IF NOT EXISTS alarm_transitions (
    id INTEGER PRIMARY KEY,
    alarm TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reason_data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_alarm ON alarm_transitions(alarm, at_ms);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    version TEXT NOT NULL,
    git_sha TEXT NOT NULL,
    env TEXT NOT NULL,
    changes TEXT NOT NULL,
    outcome TEXT NOT NULL,
    previous_id TEXT,
    description TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS task_events (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    deployment_id TEXT
);
CREATE INDEX IF NOT EXISTS task_events_ts ON task_events(ts_ms);
CREATE TABLE IF NOT EXISTS investigations (
    id TEXT PRIMARY KEY,
    alarm TEXT NOT NULL,
    -- The ALARM transition that opened the episode: one investigation per episode.
    transition_id INTEGER NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    root_cause TEXT NOT NULL,
    summary TEXT NOT NULL,
    report_json TEXT NOT NULL
);
"#;

/// What the runtime itself did (started, stopped, restarted after a crash,
/// stopped orphans), and the processes its tasks run as, so that the next
/// `up` can tell a crash from a clean stop and find tasks a killed run left.
const V2_RUNTIME_EVENTS_AND_PROCESSES: &str = r#"
CREATE TABLE runtime_events (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX runtime_events_ts ON runtime_events(ts_ms);
CREATE TABLE task_processes (
    task_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    -- /proc/<pid>/stat field 22: with the pid, identifies the process across pid reuse.
    start_ticks INTEGER NOT NULL,
    exe TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER
);
"#;

/// Indexes so that reading a window costs in proportion to the window, not to
/// the store (`query_plans` checks every window query's plan):
///
/// * `logs(level, ts_ms)`: "the newest ERROR lines of the last hour" walks the
///   errors only, not every line of the hour;
/// * `metrics(ts_ms, namespace, name, dimension)`: the series present in a
///   window (`Reader::series`) come from the window's samples, not from a walk
///   of the whole series index, which grows with the store.
///
/// No text index here: an FTS5 trigram index of each line, kept in step by
/// triggers, cut the writer from 76,000 to 3,500 lines/s (docs/PERFORMANCE.md);
/// migration 4 adds a cheaper one.
const V3_WINDOW_INDEXES: &str = r#"
CREATE INDEX logs_level_ts ON logs(level, ts_ms);
CREATE INDEX metrics_ts ON metrics(ts_ms, namespace, name, dimension);
"#;

/// The text index (`textindex.rs`): a Bloom filter of the 4-byte grams of
/// each block of consecutive log lines, written by the writer with the lines.
/// Rows already stored predate it: `log_index_prefix` records the last of
/// them (and their newest timestamp), which searches read as before.
const V4_TEXT_INDEX: &str = r#"
CREATE TABLE log_blocks (
    first_id INTEGER PRIMARY KEY,
    last_id INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    filter BLOB NOT NULL
);
CREATE INDEX log_blocks_max_ts ON log_blocks(max_ts);
CREATE TABLE log_index_prefix (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL,
    max_ts INTEGER NOT NULL
);
INSERT INTO log_index_prefix (id, last_id, max_ts)
    SELECT 1, (SELECT MAX(id) FROM logs), (SELECT MAX(ts_ms) FROM logs)
    WHERE EXISTS (SELECT 1 FROM logs);
"#;

/// Why a database could not be brought to this build's version.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "database schema version {found} is newer than this build understands ({VERSION}); use a newer build"
    )]
    TooNew { found: u32 },
    #[error("migration {version}: {source}")]
    Failed {
        version: u32,
        source: rusqlite::Error,
    },
}

/// The schema version recorded in the database (0: unversioned or empty).
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies every migration the database lacks, each in its own transaction
/// together with the version bump; returns the versions applied.
pub fn migrate(conn: &mut Connection) -> Result<Vec<u32>, MigrationError> {
    let found = version(conn).map_err(|source| MigrationError::Failed { version: 0, source })?;
    if found > VERSION {
        return Err(MigrationError::TooNew { found });
    }
    let mut applied = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as u32 + 1;
        let failed = |source| MigrationError::Failed { version, source };
        let txn = conn.transaction().map_err(failed)?;
        txn.execute_batch(sql).map_err(failed)?;
        txn.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        txn.commit().map_err(failed)?;
        applied.push(version);
    }
    Ok(applied)
}
