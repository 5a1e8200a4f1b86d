//! The writer's own health: a store that cannot write (disk full, read-only
//! file, corrupt database) must be visible to whoever runs it — `up` on its
//! console, `status`, the control API — not only as lines on stderr, because
//! every record lost that way is evidence the investigator will not have.

use demo_model::events::EpochMs;
use serde_json::{Value, json};

/// What the writer thread has been through. `failing_since_ms` is set by the
/// first failed batch and cleared by the next batch that writes something.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterHealth {
    /// Since when every batch fails; `None` while writes succeed.
    pub failing_since_ms: Option<EpochMs>,
    /// The most recent failure, even after recovery.
    pub last_error: Option<String>,
    pub last_error_ms: Option<EpochMs>,
    /// Transactions that failed (each loses everything sent in it).
    pub failed_batches: u64,
    /// Log lines, samples and task events lost in failed batches.
    pub lost_records: u64,
    /// Rows removed to keep the database under its size cap.
    pub pruned_logs: u64,
    pub pruned_samples: u64,
    /// Log lines, samples and task events sent to the writer and not yet
    /// committed (or failed): above zero for long, ingestion outpaces the
    /// disk. Nothing is dropped; they wait in memory, up to
    /// [`crate::LOG_BACKLOG_LIMIT`], where log readers pause.
    pub backlog_records: u64,
    /// The highest backlog seen since the store opened.
    pub peak_backlog_records: u64,
    /// Milliseconds log readers (one per task stream) waited, in total, for
    /// the backlog to fall: lines waited in the tasks' pipes meanwhile.
    pub log_readers_waited_ms: u64,
    /// Since when the text index's open block cannot be read back (retried
    /// every batch): lines are stored meanwhile, but not indexed, and a search
    /// scans every one of them. `None` while the index works.
    pub text_index_failing_since_ms: Option<EpochMs>,
    /// Batches at whose start that read-back failed, and the latest error.
    pub text_index_errors: u64,
    pub text_index_last_error: Option<String>,
}

impl WriterHealth {
    pub fn is_ok(&self) -> bool {
        self.failing_since_ms.is_none()
    }

    /// One line for a console: `ok` or why not.
    pub fn describe(&self) -> String {
        match (self.failing_since_ms, &self.last_error) {
            (None, _) => "ok".into(),
            (Some(since), err) => format!(
                "failing since {since} (epoch ms): {}; {} failed batches, {} records lost",
                err.as_deref().unwrap_or("unknown error"),
                self.failed_batches,
                self.lost_records
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.is_ok(),
            "failing_since_ms": self.failing_since_ms,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "failed_batches": self.failed_batches,
            "lost_records": self.lost_records,
            "pruned_logs": self.pruned_logs,
            "pruned_samples": self.pruned_samples,
            "backlog_records": self.backlog_records,
            "peak_backlog_records": self.peak_backlog_records,
            "log_readers_waited_ms": self.log_readers_waited_ms,
            "text_index_failing_since_ms": self.text_index_failing_since_ms,
            "text_index_errors": self.text_index_errors,
            "text_index_last_error": self.text_index_last_error,
        })
    }

    pub(crate) fn failed(&mut self, now: EpochMs, error: String, lost: u64) {
        self.failing_since_ms.get_or_insert(now);
        self.last_error = Some(error);
        self.last_error_ms = Some(now);
        self.failed_batches += 1;
        self.lost_records += lost;
    }

    pub(crate) fn wrote(&mut self) {
        self.failing_since_ms = None;
    }

    /// The text index's read-back failed at the start of a batch: counted, and
    /// one line on stderr per episode (it is retried every batch).
    pub(crate) fn text_index_failed(&mut self, now: EpochMs, error: String) {
        if self.text_index_failing_since_ms.is_none() {
            eprintln!(
                "store: text index: cannot read back the open block ({error}); lines are stored unindexed and searches scan them until a later batch succeeds"
            );
            self.text_index_failing_since_ms = Some(now);
        }
        self.text_index_errors += 1;
        self.text_index_last_error = Some(error);
    }

    /// The text index's open block was read back (after a failed batch, a
    /// prune or a start): ends a failing episode.
    pub(crate) fn text_index_rebuilt(&mut self) {
        if let Some(since) = self.text_index_failing_since_ms.take() {
            eprintln!(
                "store: text index: working again (failing since {since} epoch ms; {} failed batches in all)",
                self.text_index_errors
            );
        }
    }
}

/// The health behind its mutex, whether or not a panic poisoned it.
pub(crate) fn lock(h: &std::sync::Mutex<WriterHealth>) -> std::sync::MutexGuard<'_, WriterHealth> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}
