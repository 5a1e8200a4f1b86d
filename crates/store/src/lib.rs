//! The embedded store: one SQLite database (WAL mode) in the runtime's state
//! directory holding everything the runtime observes and the investigator
//! reads — log lines, metric samples, alarm transitions, deployments, task
//! events, runtime events and investigations.
//!
//! * [`schema`]: the tables as numbered migrations, applied in order on open.
//! * [`writer`]: the one writer thread; history is appended, never replaced.
//! * `batch`: one batch of writes in one transaction, and who hears of which error.
//! * [`reader`]: read connections, which never block the writer (WAL).
//! * [`limits`]: the size cap, the hard limit and the cap on log text.
//! * [`health`]: whether the writer can write, for `up` and `status`.
//! * `textindex`, `textsearch`: a Bloom filter of each block of log lines,
//!   kept by the writer, so a text search reads only the blocks that may match.

use std::path::{Path, PathBuf};
use std::time::Duration;

use demo_model::events::EpochMs;
use rusqlite::Connection;

mod batch;
pub mod health;
pub mod limits;
#[cfg(test)]
mod query_plans;
pub mod reader;
pub mod schema;
mod textindex;
mod textsearch;
#[cfg(test)]
mod textsearch_tests;
pub mod writer;

pub use health::WriterHealth;
pub use reader::{LogQuery, LogRow, Reader};
pub use writer::{LOG_BACKLOG_LIMIT, Writer};

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
    #[error("database {path}: {source}")]
    Migration {
        path: String,
        source: schema::MigrationError,
    },
    #[error("no state database at {0}")]
    Missing(String),
    #[error("store writer has stopped")]
    WriterGone,
    #[error("write to {path} failed (the whole batch was lost): {error}")]
    WriteFailed { path: String, error: String },
    #[error("{what} {id} already exists; an earlier record is never replaced")]
    Exists { what: &'static str, id: String },
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn open_conn(path: &Path) -> Result<Connection> {
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

/// Something the runtime itself did: `started`, `stopped`, `orphan_stopped`…
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub ts_ms: EpochMs,
    pub kind: String,
    pub detail: String,
}

/// The process a task runs as: with `start_ticks` (from `/proc/<pid>/stat`)
/// and `exe`, enough to recognise it later despite pid reuse.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProcess {
    pub task_id: String,
    pub pid: u32,
    pub start_ticks: u64,
    pub exe: String,
    pub started_ms: EpochMs,
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
    /// Opens (creating if needed) `dir/state.db`, brings its schema to this
    /// build's version and starts the writer.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let mut conn = open_conn(&path)?;
        schema::migrate(&mut conn).map_err(|source| StoreError::Migration {
            path: path.display().to_string(),
            source,
        })?;
        let writer = Writer::spawn(conn, path.clone()).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Store { path, writer })
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
