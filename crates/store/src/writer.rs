//! The one writer: a dedicated thread that owns the only write connection and
//! commits in batches, so log ingestion at thousands of lines per second never
//! contends with itself. Nothing sent to it is dropped silently: a batch that
//! fails is counted in [`WriterHealth`] with the records it lost, and every
//! caller waiting for a reply gets the error.
//!
//! Writes never replace an earlier row: inserting a deployment whose id exists
//! is an error ([`StoreError::Exists`]); a deployment's outcome changes only
//! through [`Writer::deployment_finished`], an UPDATE of that one id.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo_model::events::{
    AlarmTransition, Deployment, DeploymentOutcome, EpochMs, LogRecord, MetricSample, TaskEvent,
};
use rusqlite::Connection;

use crate::health::WriterHealth;
use crate::limits;
use crate::textindex::TextIndex;
use crate::{InvestigationRow, Result, RuntimeEvent, StoreError, TaskProcess};

pub(crate) type Reply<T> = mpsc::Sender<Result<T>>;

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
    backlog: Arc<Backlog>,
}

/// Records sent and not yet through a batch: how far the writer is behind.
#[derive(Default)]
pub(crate) struct Backlog {
    pub(crate) now: AtomicU64,
    pub(crate) peak: AtomicU64,
    /// Milliseconds log readers spent waiting for room ([`Writer::log_backlog_full`]).
    pub(crate) waited_ms: AtomicU64,
    /// Where [`Writer::log_backlog_full`] ([`LOG_BACKLOG_LIMIT`] unless set).
    pub(crate) limit: AtomicU64,
}

impl Backlog {
    fn add(&self) {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        // Checked every 1024 records: the peak is a gauge, not an exact count.
        if n.is_multiple_of(1024) {
            self.peak.fetch_max(n, Ordering::Relaxed);
        }
    }
}

/// WAL pages between automatic checkpoints of the writer's connection.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// The backlog at which log readers stop reading by default
/// ([`Writer::log_backlog_full`]; [`Writer::set_log_backlog_limit`]): what waits
/// in memory stays bounded (~0.5 KB a line, so ~100 MB), and what arrives faster
/// than the disk takes it waits upstream instead, in the tasks' pipes, where it is
/// never dropped by the runtime.
pub const LOG_BACKLOG_LIMIT: u64 = 200_000;

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
        let backlog = Arc::new(Backlog {
            limit: AtomicU64::new(LOG_BACKLOG_LIMIT),
            ..Backlog::default()
        });
        let state = WriterState {
            path,
            health: health.clone(),
            cap: Some(limits::DEFAULT_SIZE_CAP),
            over_cap_said: None,
            backlog: backlog.clone(),
            behind_said: None,
            text: TextIndex::new(),
        };
        limits::set_hard_limit(&conn, state.cap).map_err(std::io::Error::other)?;
        // Checkpoint every 40 MiB of WAL instead of SQLite's 4 MiB: at tens of
        // thousands of lines a second the default checkpoints (each copying
        // pages into the database and syncing it) ten times a second.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(std::io::Error::other)?;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, state, rx))?;
        Ok(Writer {
            tx,
            health,
            backlog,
        })
    }

    pub fn log(&self, r: LogRecord) {
        self.backlog.add();
        let _ = self.tx.send(Op::Log(r));
    }

    /// Whether a reader of log lines should stop handing over more: the writer
    /// is [`LOG_BACKLOG_LIMIT`] records behind (or the limit set). A reader that
    /// stops waits until [`Writer::log_backlog_halved`], so it resumes for a whole
    /// batch of lines instead of one line at a time, and then reports the wait
    /// with [`Writer::log_reader_waited`].
    pub fn log_backlog_full(&self) -> bool {
        self.backlog.now.load(Ordering::Relaxed) >= self.backlog.limit.load(Ordering::Relaxed)
    }

    /// Whether the backlog is below half the limit: a reader that stopped at
    /// [`Writer::log_backlog_full`] may go on.
    pub fn log_backlog_halved(&self) -> bool {
        self.backlog.now.load(Ordering::Relaxed) < self.backlog.limit.load(Ordering::Relaxed) / 2
    }

    /// Sets the backlog at which [`Writer::log_backlog_full`] (at least
    /// 2): less memory held for a slow disk, readers paused sooner.
    pub fn set_log_backlog_limit(&self, records: u64) {
        self.backlog.limit.store(records.max(2), Ordering::Relaxed);
    }

    /// A log reader waited `ms` for room: counted in
    /// [`WriterHealth::log_readers_waited_ms`], the visible cost of lines
    /// arriving faster than the disk commits them.
    pub fn log_reader_waited(&self, ms: u64) {
        self.backlog.waited_ms.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn metric(&self, m: MetricSample) {
        self.backlog.add();
        let _ = self.tx.send(Op::Metric(m));
    }

    pub fn task_event(&self, e: TaskEvent) {
        self.backlog.add();
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
        let mut h = crate::health::lock(&self.health).clone();
        h.backlog_records = self.backlog.now.load(Ordering::Relaxed);
        h.peak_backlog_records = self
            .backlog
            .peak
            .load(Ordering::Relaxed)
            .max(h.backlog_records);
        h.log_readers_waited_ms = self.backlog.waited_ms.load(Ordering::Relaxed);
        h
    }
}

pub(crate) struct WriterState {
    pub(crate) path: PathBuf,
    pub(crate) health: Arc<Mutex<WriterHealth>>,
    pub(crate) cap: Option<u64>,
    /// When "over the cap with nothing left to prune" was last said (said once a minute).
    over_cap_said: Option<Instant>,
    pub(crate) backlog: Arc<Backlog>,
    /// When "the writer is behind" was last said (said every 10 s at most).
    behind_said: Option<Instant>,
    /// The text index's open block.
    pub(crate) text: TextIndex,
}

impl WriterState {
    /// `records` went through a batch (committed or lost); says so when the
    /// writer is far behind what it is sent.
    pub(crate) fn done(&mut self, records: u64) {
        let left = self.backlog.now.fetch_sub(records, Ordering::Relaxed) - records;
        self.backlog.peak.fetch_max(left, Ordering::Relaxed);
        // Said from half the limit on (once every 10 s): before readers pause.
        let limit = self.backlog.limit.load(Ordering::Relaxed);
        if left >= limit / 2
            && self
                .behind_said
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.behind_said = Some(Instant::now());
            eprintln!(
                "store: the writer is {left} records behind (log lines arrive faster than {} commits them); nothing is dropped: they wait in memory, and from {limit} on the tasks' log readers pause and lines wait in the tasks' pipes",
                self.path.display(),
            );
        }
    }
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
        crate::batch::apply(&mut conn, ops, &mut state);
    }
}

/// Prunes down to the cap if needed, saying what went; says once a minute if
/// the database stays over it with nothing prunable left.
pub(crate) fn enforce_cap(conn: &mut Connection, state: &mut WriterState) {
    let Some(cap) = state.cap else { return };
    let p = match limits::enforce_cap(conn, cap) {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            eprintln!(
                "store: {}: cannot enforce the size cap: {e}",
                state.path.display()
            );
            // Earlier rounds may have deleted lines.
            state.text.invalidate();
            return;
        }
    };
    if p.logs > 0 {
        // Its rows may be gone: read the open block back before the next line.
        state.text.invalidate();
    }
    if p.logs + p.samples > 0 {
        eprintln!(
            "store: {} over its size cap of {} KiB ({} KiB used): pruned the oldest {} log lines and {} metric samples (up to {} ms since the epoch); {} KiB used now",
            state.path.display(),
            cap / 1024,
            p.used_before / 1024,
            p.logs,
            p.samples,
            p.up_to_ms,
            p.used_after / 1024
        );
        let mut h = crate::health::lock(&state.health);
        h.pruned_logs += p.logs;
        h.pruned_samples += p.samples;
    }
    if p.used_after > cap
        && state
            .over_cap_said
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
    {
        state.over_cap_said = Some(Instant::now());
        eprintln!(
            "store: {} uses {} KiB, over its size cap of {} KiB, with no log lines or samples left to prune (deployments, transitions, task events and investigations are kept); writes fail at twice the cap",
            state.path.display(),
            p.used_after / 1024,
            cap / 1024
        );
    }
}

pub(crate) use demo_model::now_ms;
