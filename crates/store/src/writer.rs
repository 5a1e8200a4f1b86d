//! The one writer: a dedicated thread that owns the only write connection and
//! commits in batches, so log ingestion at thousands of lines per second never
//! contends with itself. Nothing sent to it is dropped silently: a batch that
//! fails is counted in [`WriterHealth`] with the records it lost, and every
//! caller waiting for a reply gets the error.
//!
//! Writes never replace an earlier row: inserting a deployment whose id exists
//! is an error ([`StoreError::Exists`]); a deployment's outcome changes only
//! through [`Writer::deployment_finished`], an UPDATE of that one id.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo_model::events::{
    AlarmTransition, Deployment, DeploymentOutcome, EpochMs, LogRecord, MetricSample, Stream,
    TaskEvent,
};
use rusqlite::{Connection, ErrorCode, params};

use crate::health::WriterHealth;
use crate::limits::{self, MAX_LINE_BYTES, MAX_MESSAGE_BYTES, MAX_ROUTE_BYTES};
use crate::{InvestigationRow, Result, RuntimeEvent, StoreError, TaskProcess};

type Reply<T> = mpsc::Sender<Result<T>>;

pub(crate) enum Op {
    Log(LogRecord),
    Metric(MetricSample),
    TaskEvent(TaskEvent),
    Transition(AlarmTransition, Reply<i64>),
    Deployment(Box<Deployment>, Reply<()>),
    DeploymentFinished {
        id: String,
        finished_ms: EpochMs,
        outcome: DeploymentOutcome,
        reason: Option<String>,
        reply: Reply<()>,
    },
    Investigation(Box<InvestigationRow>, Reply<bool>),
    RuntimeEvent(RuntimeEvent, Reply<i64>),
    TaskProcess(TaskProcess, Reply<()>),
    TaskProcessEnded(String, EpochMs),
    Prune(EpochMs),
    SizeCap(Option<u64>, Reply<()>),
    Flush(mpsc::Sender<()>),
}

/// Cheap to clone; all clones feed the one writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    health: Arc<Mutex<WriterHealth>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread on `conn` (already migrated).
    pub(crate) fn spawn(conn: Connection, path: PathBuf) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(Mutex::new(WriterHealth::default()));
        let state = WriterState {
            path,
            health: health.clone(),
            cap: Some(limits::DEFAULT_SIZE_CAP),
        };
        limits::set_hard_limit(&conn, state.cap).map_err(std::io::Error::other)?;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, state, rx))?;
        Ok(Writer { tx, health })
    }

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

    fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(op(tx)).map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Stores a transition; returns its id once committed.
    pub fn transition(&self, t: AlarmTransition) -> Result<i64> {
        self.call(|r| Op::Transition(t, r))
    }

    /// Records a new deployment. An id that already exists is an error: an
    /// earlier record is never replaced.
    pub fn deployment(&self, d: &Deployment) -> Result<()> {
        self.call(|r| Op::Deployment(Box::new(d.clone()), r))
    }

    /// Sets the end, outcome and reason of a recorded deployment (and nothing else).
    pub fn deployment_finished(
        &self,
        id: &str,
        finished_ms: EpochMs,
        outcome: DeploymentOutcome,
        reason: Option<String>,
    ) -> Result<()> {
        self.call(|reply| Op::DeploymentFinished {
            id: id.to_owned(),
            finished_ms,
            outcome,
            reason,
            reply,
        })
    }

    /// Stores an investigation; false if one already exists for its transition.
    pub fn investigation(&self, row: InvestigationRow) -> Result<bool> {
        self.call(|r| Op::Investigation(Box::new(row), r))
    }

    /// Records what the runtime itself did; returns the event's id once committed.
    pub fn runtime_event(&self, e: RuntimeEvent) -> Result<i64> {
        self.call(|r| Op::RuntimeEvent(e, r))
    }

    /// Records the process a task runs as, before anything else can lose it.
    pub fn task_process(&self, p: TaskProcess) -> Result<()> {
        self.call(|r| Op::TaskProcess(p, r))
    }

    /// Marks a task's process as ended.
    pub fn task_process_ended(&self, task_id: &str, ended_ms: EpochMs) {
        let _ = self
            .tx
            .send(Op::TaskProcessEnded(task_id.to_owned(), ended_ms));
    }

    /// Caps the database size (default [`limits::DEFAULT_SIZE_CAP`]): above
    /// it the oldest log lines and samples are pruned; at twice it writes fail.
    pub fn set_size_cap(&self, bytes: Option<u64>) -> Result<()> {
        self.call(|r| Op::SizeCap(bytes, r))
    }

    /// Returns once everything sent before this call is committed (or failed).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Op::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Whether writes succeed, and what failed and was lost if not.
    pub fn health(&self) -> WriterHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct WriterState {
    path: PathBuf,
    health: Arc<Mutex<WriterHealth>>,
    cap: Option<u64>,
}

const BATCH: usize = 5000;

fn writer_loop(mut conn: Connection, mut state: WriterState, rx: mpsc::Receiver<Op>) {
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
        apply(&mut conn, ops, &mut state);
    }
}

fn enforce_cap(conn: &mut Connection, state: &WriterState) {
    let Some(cap) = state.cap else { return };
    match limits::enforce_cap(conn, cap) {
        Ok(None) => {}
        Ok(Some(p)) => {
            eprintln!(
                "store: {} over its size cap of {} KiB ({} KiB used): pruned the oldest {} log lines and {} metric samples (up to {} ms); {} KiB used now",
                state.path.display(),
                cap / 1024,
                p.used_before / 1024,
                p.logs,
                p.samples,
                p.up_to_ms,
                p.used_after / 1024
            );
            let mut h = state.health.lock().unwrap_or_else(|e| e.into_inner());
            h.pruned_logs += p.logs;
            h.pruned_samples += p.samples;
        }
        Err(e) => eprintln!(
            "store: {}: cannot enforce the size cap: {e}",
            state.path.display()
        ),
    }
}

/// A reply waiting for the batch's fate: `None` once committed, else why it failed.
type Pending = Box<dyn FnOnce(Option<&str>) + Send>;

fn pending<T: Send + 'static>(
    reply: Reply<T>,
    path: &Path,
    r: rusqlite::Result<T>,
    map: impl FnOnce(rusqlite::Error) -> StoreError + Send + 'static,
) -> Pending {
    let path = path.display().to_string();
    Box::new(move |batch_error| {
        let _ = reply.send(match batch_error {
            None => r.map_err(map),
            Some(e) => Err(StoreError::WriteFailed {
                path,
                error: e.to_owned(),
            }),
        });
    })
}

/// A statement error that only concerns its own operation (the caller hears
/// of it) rather than the whole batch.
fn is_own_error(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

/// Runs one batch in one transaction. On failure every waiting caller gets
/// the error and the health records what was lost.
fn apply(conn: &mut Connection, ops: Vec<Op>, state: &mut WriterState) {
    let path = state.path.clone();
    let mut replies: Vec<Pending> = Vec::new();
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    let mut records = 0u64;
    let mut wrote = false;
    let mut error: Option<rusqlite::Error> = None;
    let mut new_cap = None;
    let txn = match conn.transaction() {
        Ok(t) => Some(t),
        Err(e) => {
            error = Some(e);
            None
        }
    };
    for op in ops {
        let counts = matches!(op, Op::Log(_) | Op::Metric(_) | Op::TaskEvent(_));
        if counts {
            records += 1;
        }
        // After a batch error nothing more runs; replies still go out below.
        let Some(txn) = txn.as_ref().filter(|_| error.is_none()) else {
            match op {
                Op::Flush(tx) => flushes.push(tx),
                other => replies.extend(unexecuted(other, &path)),
            }
            continue;
        };
        match execute(txn, op, &path) {
            Ok(Executed::Async) => wrote = true,
            Ok(Executed::Reply(p)) => {
                wrote = true;
                replies.push(p);
            }
            Ok(Executed::Flush(tx)) => flushes.push(tx),
            Ok(Executed::Cap(cap, p)) => {
                new_cap = Some(cap);
                replies.push(p);
            }
            Err((e, p)) => {
                replies.extend(p);
                error = Some(e);
            }
        }
    }
    let result = match (txn, error) {
        (Some(txn), None) => txn.commit(),
        (_, Some(e)) => Err(e),
        (None, None) => Ok(()),
    };
    let failed = result.is_err();
    let message = result.as_ref().err().map(|e| e.to_string());
    if let Some(cap) = new_cap.filter(|_| !failed) {
        state.cap = cap;
    }
    {
        let mut h = state.health.lock().unwrap_or_else(|e| e.into_inner());
        match &message {
            Some(m) => {
                eprintln!(
                    "store: write to {} failed, {records} records lost: {m}",
                    path.display()
                );
                h.failed(now_ms(), m.clone(), records);
            }
            None if wrote => h.wrote(),
            None => {}
        }
    }
    // Three pragmas read from the header: cheap enough after every batch, so a
    // burst cannot run past the cap to the hard limit between two checks. Before
    // the replies, so that what a flush returns to is already within the cap.
    enforce_cap(conn, state);
    for r in replies {
        r(message.as_deref());
    }
    for f in flushes {
        let _ = f.send(());
    }
}

enum Executed {
    /// A record nobody waits for.
    Async,
    Reply(Pending),
    Flush(mpsc::Sender<()>),
    Cap(Option<u64>, Pending),
}

/// The reply of an operation that never ran because its batch had already failed.
fn unexecuted(op: Op, path: &Path) -> Option<Pending> {
    fn failed<T: Send + 'static>(reply: Reply<T>, path: &Path) -> Pending {
        pending(reply, path, Err(rusqlite::Error::InvalidQuery), |e| {
            StoreError::Corrupt(e.to_string())
        })
    }
    Some(match op {
        Op::Transition(_, r) | Op::RuntimeEvent(_, r) => failed(r, path),
        Op::Deployment(_, r)
        | Op::DeploymentFinished { reply: r, .. }
        | Op::TaskProcess(_, r)
        | Op::SizeCap(_, r) => failed(r, path),
        Op::Investigation(_, r) => failed(r, path),
        Op::Log(_)
        | Op::Metric(_)
        | Op::TaskEvent(_)
        | Op::TaskProcessEnded(..)
        | Op::Prune(_)
        | Op::Flush(_) => return None,
    })
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + Send + 'static {
    let path = path.display().to_string();
    move |source| StoreError::Sqlite { path, source }
}

/// Runs one operation. A batch-level error comes back with the replies of the
/// operation it belonged to (they learn the batch's fate like the others).
fn execute(
    txn: &rusqlite::Transaction<'_>,
    op: Op,
    path: &Path,
) -> std::result::Result<Executed, (rusqlite::Error, Option<Pending>)> {
    // An error of the operation's own (a duplicate id) goes to its caller; any
    // other error fails the batch.
    fn settle<T: Send + 'static>(
        r: rusqlite::Result<T>,
        reply: Reply<T>,
        path: &Path,
        map: impl FnOnce(rusqlite::Error) -> StoreError + Send + 'static,
    ) -> std::result::Result<Executed, (rusqlite::Error, Option<Pending>)> {
        match r {
            Err(e) if !is_own_error(&e) => {
                let p = pending(
                    reply,
                    path,
                    Err(rusqlite::Error::InvalidQuery),
                    sqlite(path),
                );
                Err((e, Some(p)))
            }
            r => Ok(Executed::Reply(pending(reply, path, r, map))),
        }
    }
    let batch = |e| (e, None);
    match op {
        Op::Log(mut r) => {
            limits::cap_text(&mut r.line, MAX_LINE_BYTES);
            if let Some(m) = r.message.as_mut() {
                limits::cap_text(m, MAX_MESSAGE_BYTES);
            }
            if let Some(route) = r.route.as_mut() {
                limits::cap_text(route, MAX_ROUTE_BYTES);
            }
            txn.prepare_cached(
                "INSERT INTO logs (ts_ms, task_id, stream, level, message, route, status, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
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
                ])
            })
            .map_err(batch)?;
            Ok(Executed::Async)
        }
        Op::Metric(m) => {
            txn.prepare_cached(
                "INSERT INTO metrics (ts_ms, namespace, name, dimension, value, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![m.ts_ms, m.namespace, m.name, m.dimension, m.value, m.count])
            })
            .map_err(batch)?;
            Ok(Executed::Async)
        }
        Op::TaskEvent(e) => {
            txn.execute(
                "INSERT INTO task_events (ts_ms, task_id, kind, exit_code, reason, deployment_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.ts_ms, e.task_id, e.kind.as_str(), e.exit_code, e.reason, e.deployment_id],
            )
            .map_err(batch)?;
            Ok(Executed::Async)
        }
        Op::TaskProcessEnded(task_id, ended_ms) => {
            txn.execute(
                "UPDATE task_processes SET ended_ms = ?2 WHERE task_id = ?1 AND ended_ms IS NULL",
                params![task_id, ended_ms],
            )
            .map_err(batch)?;
            Ok(Executed::Async)
        }
        Op::Prune(before) => {
            txn.execute("DELETE FROM logs WHERE ts_ms < ?1", [before])
                .and_then(|_| txn.execute("DELETE FROM metrics WHERE ts_ms < ?1", [before]))
                .map_err(batch)?;
            Ok(Executed::Async)
        }
        Op::Flush(tx) => Ok(Executed::Flush(tx)),
        Op::Transition(t, reply) => settle(
            txn.execute(
                "INSERT INTO alarm_transitions (alarm, from_state, to_state, at_ms, reason, reason_data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.alarm, t.from, t.to, t.at_ms, t.reason, t.reason_data.to_string()],
            )
            .map(|_| txn.last_insert_rowid()),
            reply,
            path,
            sqlite(path),
        ),
        Op::Deployment(d, reply) => {
            let id = d.id.clone();
            settle(
                txn.execute(
                    "INSERT INTO deployments (id, started_ms, finished_ms, version, git_sha, env, changes, outcome, previous_id, description, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
                .map(|_| ()),
                reply,
                path,
                move |e| match e.sqlite_error_code() {
                    Some(ErrorCode::ConstraintViolation) => StoreError::Exists {
                        what: "deployment",
                        id,
                    },
                    _ => StoreError::Corrupt(e.to_string()),
                },
            )
        }
        Op::DeploymentFinished {
            id,
            finished_ms,
            outcome,
            reason,
            reply,
        } => {
            let r = txn.execute(
                "UPDATE deployments SET finished_ms = ?2, outcome = ?3, reason = ?4 WHERE id = ?1",
                params![id, finished_ms, outcome.as_str(), reason],
            );
            match r {
                Ok(0) => Ok(Executed::Reply(Box::new(move |batch_error| {
                    let _ = reply.send(Err(match batch_error {
                        None => StoreError::NotFound {
                            what: "deployment",
                            id,
                        },
                        Some(e) => StoreError::Corrupt(e.to_owned()),
                    }));
                }))),
                r => settle(r.map(|_| ()), reply, path, sqlite(path)),
            }
        }
        Op::Investigation(row, reply) => settle(
            txn.execute(
                "INSERT OR IGNORE INTO investigations (id, alarm, transition_id, created_ms, root_cause, summary, report_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![row.id, row.alarm, row.transition_id, row.created_ms, row.root_cause, row.summary, row.report_json],
            )
            .map(|n| n == 1),
            reply,
            path,
            sqlite(path),
        ),
        Op::RuntimeEvent(e, reply) => settle(
            txn.execute(
                "INSERT INTO runtime_events (ts_ms, kind, detail) VALUES (?1, ?2, ?3)",
                params![e.ts_ms, e.kind, e.detail],
            )
            .map(|_| txn.last_insert_rowid()),
            reply,
            path,
            sqlite(path),
        ),
        Op::TaskProcess(p, reply) => {
            let id = p.task_id.clone();
            settle(
                txn.execute(
                    "INSERT INTO task_processes (task_id, pid, start_ticks, exe, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![p.task_id, p.pid, p.start_ticks, p.exe, p.started_ms],
                )
                .map(|_| ()),
                reply,
                path,
                move |e| match e.sqlite_error_code() {
                    Some(ErrorCode::ConstraintViolation) => StoreError::Exists {
                        what: "task process",
                        id,
                    },
                    _ => StoreError::Corrupt(e.to_string()),
                },
            )
        }
        Op::SizeCap(cap, reply) => {
            limits::set_hard_limit(txn, cap).map_err(|e| {
                let p = pending(reply.clone(), path, Ok(()), sqlite(path));
                (e, Some(p))
            })?;
            Ok(Executed::Cap(cap, pending(reply, path, Ok(()), sqlite(path))))
        }
    }
}

fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
