//! The embedded store: one SQLite database (WAL mode) in the runtime's state
//! directory holding everything the runtime observes and the investigator
//! reads — log lines, metric samples, alarm transitions, deployments, task
//! events and investigations.
//!
//! Writes go through one [`Writer`]: a dedicated thread that owns the only
//! write connection and commits in batches, so log ingestion at thousands of
//! lines per second never contends with itself. Nothing sent to the writer is
//! dropped; [`Writer::flush`] returns once everything sent before it is
//! committed. Reads use their own connections ([`Reader`]) and never block
//! the writer (WAL).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use demo_model::events::{
    AlarmTransition, ConfigChange, Deployment, DeploymentOutcome, EpochMs, LogRecord, MetricSample,
    Stream, TaskEvent, TaskEventKind, Window,
};
use rusqlite::{Connection, OptionalExtension, params};

pub const DB_FILE: &str = "state.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("no state database at {0}")]
    Missing(String),
    #[error("store writer has stopped")]
    WriterGone,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = r#"
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

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql_err(path))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_err(path))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_err(path))?;
    Ok(conn)
}

/// A stored investigation, as listed by `reports list`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvestigationRow {
    pub id: String,
    pub alarm: String,
    pub transition_id: i64,
    pub created_ms: EpochMs,
    pub root_cause: String,
    pub summary: String,
    pub report_json: String,
}

enum Op {
    Log(LogRecord),
    Metric(MetricSample),
    TaskEvent(TaskEvent),
    Transition(AlarmTransition, mpsc::Sender<Result<i64>>),
    Deployment(Box<Deployment>, mpsc::Sender<Result<()>>),
    Investigation(Box<InvestigationRow>, mpsc::Sender<Result<bool>>),
    Prune(EpochMs),
    Flush(mpsc::Sender<()>),
}

/// Cheap to clone; all clones feed the one writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

pub struct Store {
    path: PathBuf,
    writer: Writer,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `dir/state.db` and starts the writer.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let conn = open_conn(&path)?;
        conn.execute_batch(SCHEMA).map_err(sql_err(&path))?;
        let (tx, rx) = mpsc::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, &thread_path, rx))
            .map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(Store {
            path,
            writer: Writer { tx },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    /// A new read connection.
    pub fn reader(&self) -> Result<Reader> {
        Reader::open(&self.path)
    }
}

impl Drop for Store {
    /// Commits everything sent so far. The writer thread itself ends once every
    /// `Writer` clone (held by other threads) is gone too.
    fn drop(&mut self) {
        self.writer.flush();
    }
}

impl Writer {
    pub fn log(&self, r: LogRecord) {
        let _ = self.tx.send(Op::Log(r));
    }

    pub fn metric(&self, m: MetricSample) {
        let _ = self.tx.send(Op::Metric(m));
    }

    pub fn task_event(&self, e: TaskEvent) {
        let _ = self.tx.send(Op::TaskEvent(e));
    }

    /// Deletes logs and metric samples older than `before`.
    pub fn prune(&self, before: EpochMs) {
        let _ = self.tx.send(Op::Prune(before));
    }

    /// Stores a transition; returns its id once committed.
    pub fn transition(&self, t: AlarmTransition) -> Result<i64> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Op::Transition(t, tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Inserts or replaces a deployment record.
    pub fn deployment(&self, d: &Deployment) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Op::Deployment(Box::new(d.clone()), tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Stores an investigation; false if one already exists for its transition.
    pub fn investigation(&self, row: InvestigationRow) -> Result<bool> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Op::Investigation(Box::new(row), tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Returns once everything sent before this call is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Op::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

const BATCH: usize = 5000;

fn writer_loop(mut conn: Connection, path: &Path, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        let deadline = Instant::now() + Duration::from_millis(20);
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(mpsc::TryRecvError::Empty) => {
                    if Instant::now() >= deadline || ops.len() > BATCH / 10 {
                        break;
                    }
                    // Let a burst accumulate briefly: bigger transactions, fewer fsyncs.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        if let Err(e) = apply(&mut conn, &mut ops) {
            eprintln!("store: write to {} failed: {e}", path.display());
        }
    }
}

fn apply(conn: &mut Connection, ops: &mut Vec<Op>) -> rusqlite::Result<()> {
    let txn = conn.transaction()?;
    let mut replies_flush = Vec::new();
    {
        let mut log_stmt = txn.prepare_cached(
            "INSERT INTO logs (ts_ms, task_id, stream, level, message, route, status, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut metric_stmt = txn.prepare_cached(
            "INSERT INTO metrics (ts_ms, namespace, name, dimension, value, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for op in ops.drain(..) {
            match op {
                Op::Log(r) => {
                    log_stmt.execute(params![
                        r.ts_ms,
                        r.task_id,
                        match r.stream {
                            Stream::Stdout => "stdout",
                            Stream::Stderr => "stderr",
                        },
                        r.level,
                        r.message,
                        r.route,
                        r.status,
                        r.line
                    ])?;
                }
                Op::Metric(m) => {
                    metric_stmt.execute(params![
                        m.ts_ms,
                        m.namespace,
                        m.name,
                        m.dimension,
                        m.value,
                        m.count
                    ])?;
                }
                Op::TaskEvent(e) => {
                    txn.execute(
                        "INSERT INTO task_events (ts_ms, task_id, kind, exit_code, reason, deployment_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![e.ts_ms, e.task_id, e.kind.as_str(), e.exit_code, e.reason, e.deployment_id],
                    )?;
                }
                Op::Transition(t, reply) => {
                    let r = txn
                        .execute(
                            "INSERT INTO alarm_transitions (alarm, from_state, to_state, at_ms, reason, reason_data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![t.alarm, t.from, t.to, t.at_ms, t.reason, t.reason_data.to_string()],
                        )
                        .map(|_| txn.last_insert_rowid());
                    replies_flush.push(Reply::Id(reply, r));
                }
                Op::Deployment(d, reply) => {
                    let r = txn
                        .execute(
                            "INSERT OR REPLACE INTO deployments (id, started_ms, finished_ms, version, git_sha, env, changes, outcome, previous_id, description, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                            params![
                                d.id,
                                d.started_ms,
                                d.finished_ms,
                                d.version,
                                d.git_sha,
                                serde_json::to_string(&d.env).unwrap_or_default(),
                                serde_json::to_string(&d.changes).unwrap_or_default(),
                                d.outcome.as_str(),
                                d.previous_id,
                                d.description,
                                d.reason
                            ],
                        )
                        .map(|_| ());
                    replies_flush.push(Reply::Unit(reply, r));
                }
                Op::Investigation(row, reply) => {
                    let r = txn
                        .execute(
                            "INSERT OR IGNORE INTO investigations (id, alarm, transition_id, created_ms, root_cause, summary, report_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![row.id, row.alarm, row.transition_id, row.created_ms, row.root_cause, row.summary, row.report_json],
                        )
                        .map(|n| n == 1);
                    replies_flush.push(Reply::Bool(reply, r));
                }
                Op::Prune(before) => {
                    txn.execute("DELETE FROM logs WHERE ts_ms < ?1", [before])?;
                    txn.execute("DELETE FROM metrics WHERE ts_ms < ?1", [before])?;
                }
                Op::Flush(reply) => replies_flush.push(Reply::Flush(reply)),
            }
        }
    }
    let committed = txn.commit();
    let path = conn.path().unwrap_or("").to_string();
    for reply in replies_flush {
        let wrap = |e: rusqlite::Error| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        match reply {
            Reply::Id(tx, r) => {
                let _ = tx.send(match (&committed, r) {
                    (Ok(()), r) => r.map_err(wrap),
                    (Err(_), _) => Err(StoreError::Corrupt("transaction failed".into())),
                });
            }
            Reply::Unit(tx, r) => {
                let _ = tx.send(match (&committed, r) {
                    (Ok(()), r) => r.map_err(wrap),
                    (Err(_), _) => Err(StoreError::Corrupt("transaction failed".into())),
                });
            }
            Reply::Bool(tx, r) => {
                let _ = tx.send(match (&committed, r) {
                    (Ok(()), r) => r.map_err(wrap),
                    (Err(_), _) => Err(StoreError::Corrupt("transaction failed".into())),
                });
            }
            Reply::Flush(tx) => {
                let _ = tx.send(());
            }
        }
    }
    committed
}

enum Reply {
    Id(mpsc::Sender<Result<i64>>, rusqlite::Result<i64>),
    Unit(mpsc::Sender<Result<()>>, rusqlite::Result<()>),
    Bool(mpsc::Sender<Result<bool>>, rusqlite::Result<bool>),
    Flush(mpsc::Sender<()>),
}

/// Filters for log queries; all optional.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub task_id: Option<String>,
    pub level: Option<String>,
    /// Substring of the raw line.
    pub contains: Option<String>,
    pub limit: Option<usize>,
}

/// A log record borrowed from a row, for [`Reader::scan_logs`].
#[derive(Debug, Clone, Copy)]
pub struct LogRow<'a> {
    pub ts_ms: EpochMs,
    pub task_id: &'a str,
    pub level: Option<&'a str>,
    pub message: Option<&'a str>,
    pub route: Option<&'a str>,
    pub status: Option<u16>,
    /// The raw line, only when there is no `message`.
    pub line: Option<&'a str>,
}

/// A read connection.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("path", &self.path).finish()
    }
}

fn parse_stream(s: &str) -> Stream {
    if s == "stderr" {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

impl Reader {
    /// Opens the database of a state directory (or a `state.db` path) for reading.
    pub fn open(path: &Path) -> Result<Reader> {
        let path = if path.is_dir() {
            path.join(DB_FILE)
        } else {
            path.to_path_buf()
        };
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = open_conn(&path)?;
        Ok(Reader { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sql_err(&self.path)
    }

    /// Log records in the window, oldest first.
    pub fn logs(&self, w: Window, q: &LogQuery) -> Result<Vec<LogRecord>> {
        let mut sql = String::from(
            "SELECT ts_ms, task_id, stream, level, message, route, status, line FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2",
        );
        let mut args: Vec<rusqlite::types::Value> = vec![w.start_ms.into(), w.end_ms.into()];
        if let Some(t) = &q.task_id {
            args.push(t.clone().into());
            sql.push_str(&format!(" AND task_id = ?{}", args.len()));
        }
        if let Some(l) = &q.level {
            args.push(l.to_ascii_uppercase().into());
            sql.push_str(&format!(" AND level = ?{}", args.len()));
        }
        if let Some(c) = &q.contains {
            args.push(c.clone().into());
            sql.push_str(&format!(" AND instr(line, ?{}) > 0", args.len()));
        }
        sql.push_str(" ORDER BY ts_ms, id");
        if let Some(n) = q.limit {
            // The newest `n`, returned oldest first.
            sql = format!("SELECT * FROM ({sql} DESC LIMIT {n}) ORDER BY ts_ms");
            sql = sql.replace("ORDER BY ts_ms, id DESC", "ORDER BY ts_ms DESC, id DESC");
        }
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(LogRecord {
                    ts_ms: r.get(0)?,
                    task_id: r.get(1)?,
                    stream: parse_stream(&r.get::<_, String>(2)?),
                    level: r.get(3)?,
                    message: r.get(4)?,
                    route: r.get(5)?,
                    status: r.get(6)?,
                    line: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Calls `f` for every log record in the window, oldest first, without
    /// building them all in memory (the investigator scans an hour of logs).
    /// Fields borrow from the row; `line` is `None` when the line was JSON with
    /// a `message`, the common case, so the biggest column is not read.
    /// Returns how many records were visited.
    pub fn scan_logs(&self, w: Window, mut f: impl FnMut(LogRow<'_>)) -> Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts_ms, task_id, level, message, route, status, CASE WHEN message IS NULL THEN line END FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id",
            )
            .map_err(self.err())?;
        let mut rows = stmt.query([w.start_ms, w.end_ms]).map_err(self.err())?;
        let mut n = 0;
        fn text(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Option<&str>> {
            match v {
                rusqlite::types::ValueRef::Null => Ok(None),
                other => other.as_str().map(Some).map_err(Into::into),
            }
        }
        while let Some(r) = rows.next().map_err(self.err())? {
            let row = (|| -> rusqlite::Result<LogRow<'_>> {
                Ok(LogRow {
                    ts_ms: r.get(0)?,
                    task_id: text(r.get_ref(1)?)?.unwrap_or(""),
                    level: text(r.get_ref(2)?)?,
                    message: text(r.get_ref(3)?)?,
                    route: text(r.get_ref(4)?)?,
                    status: r.get(5)?,
                    line: text(r.get_ref(6)?)?,
                })
            })()
            .map_err(self.err())?;
            f(row);
            n += 1;
        }
        Ok(n)
    }

    /// Count of log lines per task (all time).
    pub fn log_counts(&self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT task_id, COUNT(*) FROM logs GROUP BY task_id ORDER BY task_id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Samples of one series in the window, oldest first.
    pub fn samples(
        &self,
        namespace: &str,
        name: &str,
        dimension: &str,
        w: Window,
    ) -> Result<Vec<MetricSample>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts_ms, value, count FROM metrics WHERE namespace = ?1 AND name = ?2 AND dimension = ?3 AND ts_ms >= ?4 AND ts_ms < ?5 ORDER BY ts_ms",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(
                params![namespace, name, dimension, w.start_ms, w.end_ms],
                |r| {
                    Ok(MetricSample {
                        ts_ms: r.get(0)?,
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        dimension: dimension.to_owned(),
                        value: r.get(1)?,
                        count: r.get(2)?,
                    })
                },
            )
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Distinct (namespace, name, dimension) series with data in the window.
    pub fn series(&self, w: Window) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT namespace, name, dimension FROM metrics WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY 1, 2, 3")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([w.start_ms, w.end_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn transition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlarmTransition> {
        let data: String = r.get(6)?;
        Ok(AlarmTransition {
            id: r.get(0)?,
            alarm: r.get(1)?,
            from: r.get(2)?,
            to: r.get(3)?,
            at_ms: r.get(4)?,
            reason: r.get(5)?,
            reason_data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        })
    }

    /// Transitions, newest first; optionally of one alarm.
    pub fn transitions(&self, alarm: Option<&str>, limit: usize) -> Result<Vec<AlarmTransition>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, alarm, from_state, to_state, at_ms, reason, reason_data FROM alarm_transitions WHERE (?1 IS NULL OR alarm = ?1) ORDER BY at_ms DESC, id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![alarm, limit as i64], Reader::transition_row)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn transition(&self, id: i64) -> Result<Option<AlarmTransition>> {
        self.conn
            .query_row(
                "SELECT id, alarm, from_state, to_state, at_ms, reason, reason_data FROM alarm_transitions WHERE id = ?1",
                [id],
                Reader::transition_row,
            )
            .optional()
            .map_err(self.err())
    }

    fn deployment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Deployment> {
        let env: String = r.get(5)?;
        let changes: String = r.get(6)?;
        let outcome: String = r.get(7)?;
        Ok(Deployment {
            id: r.get(0)?,
            started_ms: r.get(1)?,
            finished_ms: r.get(2)?,
            version: r.get(3)?,
            git_sha: r.get(4)?,
            env: serde_json::from_str(&env).unwrap_or_default(),
            changes: serde_json::from_str::<Vec<ConfigChange>>(&changes).unwrap_or_default(),
            outcome: DeploymentOutcome::parse(&outcome).unwrap_or(DeploymentOutcome::Failed),
            previous_id: r.get(8)?,
            description: r.get(9)?,
            reason: r.get(10)?,
        })
    }

    /// Deployments, newest first.
    pub fn deployments(&self, limit: usize) -> Result<Vec<Deployment>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, started_ms, finished_ms, version, git_sha, env, changes, outcome, previous_id, description, reason FROM deployments ORDER BY started_ms DESC, id DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit as i64], Reader::deployment_row)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn deployment(&self, id: &str) -> Result<Option<Deployment>> {
        self.conn
            .query_row(
                "SELECT id, started_ms, finished_ms, version, git_sha, env, changes, outcome, previous_id, description, reason FROM deployments WHERE id = ?1",
                [id],
                Reader::deployment_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// Task events in the window, oldest first.
    pub fn task_events(&self, w: Window) -> Result<Vec<TaskEvent>> {
        let mut stmt = self
            .conn
            .prepare("SELECT ts_ms, task_id, kind, exit_code, reason, deployment_id FROM task_events WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([w.start_ms, w.end_ms], |r| {
                let kind: String = r.get(2)?;
                Ok(TaskEvent {
                    ts_ms: r.get(0)?,
                    task_id: r.get(1)?,
                    kind: TaskEventKind::parse(&kind).unwrap_or(TaskEventKind::Stopped),
                    exit_code: r.get(3)?,
                    reason: r.get(4)?,
                    deployment_id: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn investigation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InvestigationRow> {
        Ok(InvestigationRow {
            id: r.get(0)?,
            alarm: r.get(1)?,
            transition_id: r.get(2)?,
            created_ms: r.get(3)?,
            root_cause: r.get(4)?,
            summary: r.get(5)?,
            report_json: r.get(6)?,
        })
    }

    /// Investigations, newest first.
    pub fn investigations(&self, limit: usize) -> Result<Vec<InvestigationRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, alarm, transition_id, created_ms, root_cause, summary, report_json FROM investigations ORDER BY created_ms DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit as i64], Reader::investigation_row)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// One investigation by id, or by transition id when `id` is numeric and matches none.
    pub fn investigation(&self, id: &str) -> Result<Option<InvestigationRow>> {
        self.conn
            .query_row(
                "SELECT id, alarm, transition_id, created_ms, root_cause, summary, report_json FROM investigations WHERE id = ?1",
                [id],
                Reader::investigation_row,
            )
            .optional()
            .map_err(self.err())
    }

    pub fn investigation_for_transition(
        &self,
        transition_id: i64,
    ) -> Result<Option<InvestigationRow>> {
        self.conn
            .query_row(
                "SELECT id, alarm, transition_id, created_ms, root_cause, summary, report_json FROM investigations WHERE transition_id = ?1",
                [transition_id],
                Reader::investigation_row,
            )
            .optional()
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
        w.deployment(&Deployment {
            outcome: DeploymentOutcome::Completed,
            finished_ms: Some(200),
            ..d.clone()
        })
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
}
