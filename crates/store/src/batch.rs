//! One batch of writes: runs every operation of the batch in one transaction,
//! tells apart an error of one operation (a duplicate id: its caller hears of
//! it, the batch goes on) from an error of the batch (disk full: nothing of
//! it is kept), and gives every waiting caller the outcome once it is known.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, ErrorCode, params};

use demo_model::events::Stream;

use crate::StoreError;
use crate::health::lock;
use crate::limits::{self, MAX_LINE_BYTES, MAX_MESSAGE_BYTES, MAX_ROUTE_BYTES};
use crate::textindex::TextIndex;
use crate::writer::{Op, Reply, WriterState, enforce_cap, now_ms};

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
pub(crate) fn apply(conn: &mut Connection, ops: Vec<Op>, state: &mut WriterState) {
    let path = state.path.clone();
    let mut replies: Vec<Pending> = Vec::new();
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    let mut records = 0u64;
    let mut wrote = false;
    let mut error: Option<rusqlite::Error> = None;
    let mut new_cap = None;
    // IMMEDIATE: the write lock is taken (waiting out another writer through
    // the busy timeout) before the batch reads anything. A deferred
    // transaction that reads first (the text index's read-back) cannot turn
    // its read snapshot into a write once another connection has committed —
    // an investigation's store beside the runtime's — and SQLite fails that
    // at once with "database is locked" instead of waiting.
    let txn = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(t) => Some(t),
        Err(e) => {
            error = Some(e);
            None
        }
    };
    if let Some(txn) = &txn {
        match state.text.ensure(txn) {
            Ok(false) => {}
            Ok(true) => lock(&state.health).text_index_rebuilt(),
            Err(e) => lock(&state.health).text_index_failed(now_ms(), e.to_string()),
        }
    }
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
        match execute(txn, op, &path, &mut state.text) {
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
    if failed {
        // Its lines (and any block stored with them) were rolled back.
        state.text.invalidate();
    }
    let message = result.as_ref().err().map(|e| e.to_string());
    if let Some(cap) = new_cap.filter(|_| !failed) {
        state.cap = cap;
    }
    {
        let mut h = lock(&state.health);
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
    state.done(records);
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
    text: &mut TextIndex,
) -> Result<Executed, (rusqlite::Error, Option<Pending>)> {
    // An error of the operation's own (a duplicate id) goes to its caller; any
    // other error fails the batch.
    fn settle<T: Send + 'static>(
        r: rusqlite::Result<T>,
        reply: Reply<T>,
        path: &Path,
        map: impl FnOnce(rusqlite::Error) -> StoreError + Send + 'static,
    ) -> Result<Executed, (rusqlite::Error, Option<Pending>)> {
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
            .and_then(|_| text.add(txn, txn.last_insert_rowid(), r.ts_ms, &r.line))
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
            let logs = txn
                .execute("DELETE FROM logs WHERE ts_ms < ?1", [before])
                .map_err(batch)?;
            if logs > 0 {
                text.after_prune(txn, before).map_err(batch)?;
            }
            txn.execute("DELETE FROM metrics WHERE ts_ms < ?1", [before])
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
