//! Where the investigator's data comes from: one trait per kind of data
//! (logs, metrics, deployments, tasks, code) and one implementation per
//! system, named after it ([`local_store`] for the runtime's SQLite store,
//! [`git`] for the repository). The analyzers only see these traits, so a
//! CloudWatch Logs, ECS, SSM or Prometheus implementation can be added
//! without touching them.
//!
//! Every method returns a [`SourceError`] instead of panicking; the
//! investigation turns each error into an "investigation gap" in the report
//! and carries on with what it could get.

pub mod git;
pub mod local_store;
pub mod prometheus;

use demo_model::events::{Deployment, EpochMs, MetricSample, TaskEvent, Window};
use serde::{Deserialize, Serialize};

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {detail}")]
    Unavailable { source_name: String, detail: String },
    #[error("git {args}: {detail}")]
    Git { args: String, detail: String },
}

pub type SourceResult<T> = Result<T, SourceError>;

/// One log line as the analyzers need it. `text` is the JSON `message` when
/// the line had one, else the raw line.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    pub ts_ms: EpochMs,
    pub task_id: &'a str,
    pub level: Option<&'a str>,
    pub text: &'a str,
    pub route: Option<&'a str>,
    pub status: Option<u16>,
}

/// One part of a window's log lines, to be read on a thread of its own
/// ([`LogSource::parts`]): called with the callback of
/// [`LogSource::scan_unordered`], returns how many lines it visited.
pub type LogPart<'a> =
    Box<dyn FnOnce(&mut dyn FnMut(i64, LogEntry<'_>)) -> SourceResult<u64> + Send + 'a>;

/// Log lines (CloudWatch Logs, the local store, ...).
pub trait LogSource {
    /// A short name for gap messages (`local store logs`).
    fn name(&self) -> &str;
    /// Calls `f` for every line in `w`, oldest first; returns how many.
    fn scan(&self, w: Window, f: &mut dyn FnMut(LogEntry<'_>)) -> SourceResult<u64>;
    /// Calls `f` for every line in `w` exactly once, in any order, with a
    /// key that places the line in [`LogSource::scan`]'s order: lines sorted
    /// by `(ts_ms, key)` are in the order `scan` visits them. For a caller that
    /// only counts (the log analysis groups lines, then orders the groups), so a
    /// source may read in whatever order is cheapest; by default this is `scan`
    /// with a counter as the key.
    fn scan_unordered(&self, w: Window, f: &mut dyn FnMut(i64, LogEntry<'_>)) -> SourceResult<u64> {
        let mut seq = 0i64;
        self.scan(w, &mut |e| {
            f(seq, e);
            seq += 1;
        })
    }
    /// The lines of `w` as parts that may be read at the same time on
    /// different threads, as many as the source reads at once: together they
    /// visit every line of `w` once, each with its
    /// [`LogSource::scan_unordered`] key. `None` (the default): the source
    /// reads in one part, through `scan_unordered`.
    fn parts(&self, _w: Window) -> SourceResult<Option<Vec<LogPart<'_>>>> {
        Ok(None)
    }
    /// Trace ids of up to `limit` lines in `w` whose message is exactly
    /// `message` (the examples a log template's evidence cites). A source that
    /// keeps no trace ids answers none.
    fn trace_ids(&self, _w: Window, _message: &str, _limit: usize) -> SourceResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Identifies one metric series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub namespace: String,
    pub name: String,
    pub dimension: String,
}

impl SeriesKey {
    pub fn new(namespace: &str, name: &str, dimension: &str) -> SeriesKey {
        SeriesKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimension: dimension.to_owned(),
        }
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}[{}]", self.namespace, self.name, self.dimension)
    }
}

/// Metric samples (CloudWatch metrics, Prometheus, the local store, ...).
pub trait MetricSource {
    fn name(&self) -> &str;
    /// Series with at least one sample in `w`.
    fn series(&self, w: Window) -> SourceResult<Vec<SeriesKey>>;
    /// Samples of one series in `w`, oldest first.
    fn samples(&self, key: &SeriesKey, w: Window) -> SourceResult<Vec<MetricSample>>;
    /// The series of `w` that `wanted` accepts, in [`MetricSource::series`]'s
    /// order, each with its [`MetricSource::samples`]. By default exactly
    /// that, one request per wanted series; a source that can read the whole
    /// window at once more cheaply (the local store) does so.
    fn wanted_samples(
        &self,
        w: Window,
        wanted: &(dyn Fn(&SeriesKey) -> bool + Sync),
    ) -> SourceResult<Vec<(SeriesKey, Vec<MetricSample>)>> {
        let mut out = Vec::new();
        for key in self.series(w)? {
            if wanted(&key) {
                let samples = self.samples(&key, w)?;
                out.push((key, samples));
            }
        }
        Ok(out)
    }
}

/// Deployment records (SSM parameters, the local store, ...).
pub trait DeploymentSource {
    fn name(&self) -> &str;
    /// Deployments whose rollout overlaps `w` (started before its end and
    /// not finished before its start), oldest first.
    fn deployments(&self, w: Window) -> SourceResult<Vec<Deployment>>;
    /// One deployment by id (to find a previous revision outside the window).
    fn deployment(&self, id: &str) -> SourceResult<Option<Deployment>>;
}

/// Task lifecycle (ECS task state changes, target health, the local store, ...).
pub trait TaskSource {
    fn name(&self) -> &str;
    /// Events in `w`, oldest first.
    fn task_events(&self, w: Window) -> SourceResult<Vec<TaskEvent>>;
}

/// A commit between two deployed revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub author: String,
    pub time_s: i64,
    pub summary: String,
}

/// One changed line of a diff (`+` added, `-` removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    pub file: String,
    /// Line number in the new file for added lines, in the old one for removed.
    pub line_no: u32,
    pub added: bool,
    pub text: String,
}

/// The changes between two revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub files: Vec<String>,
    pub lines: Vec<DiffLine>,
}

/// A line of the tree at some revision that contains a searched string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrepHit {
    pub file: String,
    pub line_no: u32,
    pub text: String,
    pub needle: String,
}

/// Source code history (a git repository, a code host API, ...).
pub trait CodeSource {
    fn name(&self) -> &str;
    /// Full sha of a revision, or an error if it is not in the repository.
    fn resolve(&self, rev: &str) -> SourceResult<String>;
    /// Commits reachable from `to` but not from `from`, newest first.
    fn commits_between(&self, from: &str, to: &str) -> SourceResult<Vec<Commit>>;
    /// The diff from `from` to `to`.
    fn diff(&self, from: &str, to: &str) -> SourceResult<Diff>;
    /// Lines of the tree at `rev` containing any of `needles` (fixed strings,
    /// case-insensitive).
    fn grep(&self, rev: &str, needles: &[String]) -> SourceResult<Vec<GrepHit>>;
    /// The commit that last changed line `line_no` of `file` at `rev`, when the
    /// source can tell (`git blame`).
    fn blame_line(&self, _rev: &str, _file: &str, _line_no: u32) -> SourceResult<Option<Commit>> {
        Ok(None)
    }
    /// The text of `file` at `rev`, when the source can tell (None: the
    /// file does not exist there, or the source cannot read files).
    fn show(&self, _rev: &str, _file: &str) -> SourceResult<Option<String>> {
        Ok(None)
    }
}

/// The sources one investigation reads. `code` is optional: without a
/// repository the code correlation becomes a gap.
pub struct Sources<'a> {
    pub logs: &'a dyn LogSource,
    pub metrics: &'a dyn MetricSource,
    pub deployments: &'a dyn DeploymentSource,
    pub tasks: &'a dyn TaskSource,
    pub code: Option<&'a dyn CodeSource>,
}

/// Runs each job on a scoped thread of its own and returns their results in
/// the jobs' order; a job's panic is resumed on the caller's thread.
pub(crate) fn on_threads<T: Send>(jobs: Vec<impl FnOnce() -> T + Send>) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|job| s.spawn(job)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
