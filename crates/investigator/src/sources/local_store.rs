//! Sources over the local runtime's SQLite store (`<state_dir>/state.db`).
//! One [`LocalStore`] holds its own read connection, so an investigation can
//! run on another thread while the runtime keeps writing (WAL readers never
//! block the writer). A window is read along the tables' rowids (found from
//! the time indexes), which an investigation can cut into parts read at once
//! on several threads, each with a connection of its own.

use std::collections::BTreeMap;
use std::path::Path;

use demo_model::events::{Deployment, MetricSample, TaskEvent, Window};
use demo_store::{LogRow, Reader, StoreError};

use super::{
    DeploymentSource, LogEntry, LogPart, LogSource, MetricSource, SeriesKey, SourceError,
    SourceResult, TaskSource, on_threads,
};

/// Threads that read parts of one window at once, at most.
const MAX_READ_THREADS: usize = 4;

/// Logs, metrics, deployments and task events from the local store.
#[derive(Debug)]
pub struct LocalStore {
    reader: Reader,
    threads: usize,
}

fn unavailable(what: &str, e: StoreError) -> SourceError {
    SourceError::Unavailable {
        source_name: format!("local store {what}"),
        detail: e.to_string(),
    }
}

impl LocalStore {
    /// Opens a read connection on a state directory (or a `state.db` path).
    pub fn open(path: &Path) -> SourceResult<LocalStore> {
        let reader = Reader::open(path).map_err(|e| unavailable("", e))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(LocalStore {
            reader,
            threads: threads.min(MAX_READ_THREADS),
        })
    }

    /// Reads a window's metric samples and log lines on `n` threads at most
    /// (1: on the caller's); by default as many as there are cores, up to 4.
    pub fn with_read_threads(mut self, n: usize) -> LocalStore {
        self.threads = n.max(1);
        self
    }

    /// Threads a window's metric samples and log lines are read on, at most.
    pub fn read_threads(&self) -> usize {
        self.threads
    }

    /// The underlying reader (for investigation bookkeeping).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}

/// `lo..=hi` cut into at most `n` consecutive non-empty ranges.
fn split_ids((lo, hi): (i64, i64), n: usize) -> Vec<(i64, i64)> {
    let n = n.max(1) as i128;
    let span = i128::from(hi) - i128::from(lo) + 1;
    let cut = |i: i128| i64::try_from(i128::from(lo) + span * i / n).unwrap_or(hi);
    (0..n)
        .map(|i| (cut(i), cut(i + 1) - 1))
        .filter(|(a, b)| a <= b)
        .collect()
}

/// A stored row as the analyzers see it: the message, or the raw line when
/// it had none.
fn entry(r: LogRow<'_>) -> LogEntry<'_> {
    LogEntry {
        ts_ms: r.ts_ms,
        task_id: r.task_id,
        level: r.level,
        text: r.message.or(r.line).unwrap_or(""),
        route: r.route,
        status: r.status,
    }
}

impl LogSource for LocalStore {
    fn name(&self) -> &str {
        "local store logs"
    }

    fn scan(&self, w: Window, f: &mut dyn FnMut(LogEntry<'_>)) -> SourceResult<u64> {
        self.reader
            .scan_logs(w, |r| f(entry(r)))
            .map_err(|e| unavailable("logs", e))
    }

    /// A walk along the window's rowid range (`Reader::scan_logs_unordered`),
    /// keyed by row id, which is `scan`'s tie-break after the time.
    fn scan_unordered(&self, w: Window, f: &mut dyn FnMut(i64, LogEntry<'_>)) -> SourceResult<u64> {
        self.reader
            .scan_logs_unordered(w, |id, r| f(id, entry(r)))
            .map_err(|e| unavailable("logs", e))
    }

    /// The window's id range cut into [`LocalStore::read_threads`]
    /// consecutive id ranges, each read by a reader of its own (a SQLite
    /// connection is used by one thread); `None` with one read thread.
    fn parts(&self, w: Window) -> SourceResult<Option<Vec<LogPart<'_>>>> {
        if self.threads <= 1 {
            return Ok(None);
        }
        let Some((lo, hi)) = self
            .reader
            .log_id_range(w)
            .map_err(|e| unavailable("logs", e))?
        else {
            return Ok(Some(Vec::new()));
        };
        let mut parts: Vec<LogPart<'_>> = Vec::new();
        for ids in split_ids((lo, hi), self.threads) {
            let path = self.reader.path().to_path_buf();
            parts.push(Box::new(move |f: &mut dyn FnMut(i64, LogEntry<'_>)| {
                let reader = Reader::open(&path).map_err(|e| unavailable("logs", e))?;
                reader
                    .scan_logs_ids(w, ids, |id, r| f(id, entry(r)))
                    .map_err(|e| unavailable("logs", e))
            }));
        }
        Ok(Some(parts))
    }

    fn trace_ids(&self, w: Window, message: &str, limit: usize) -> SourceResult<Vec<String>> {
        self.reader
            .trace_ids(w, message, limit)
            .map_err(|e| unavailable("logs", e))
    }
}

impl MetricSource for LocalStore {
    fn name(&self) -> &str {
        "local store metrics"
    }

    fn series(&self, w: Window) -> SourceResult<Vec<SeriesKey>> {
        let rows = self
            .reader
            .series(w)
            .map_err(|e| unavailable("metrics", e))?;
        Ok(rows
            .into_iter()
            .map(|(namespace, name, dimension)| SeriesKey {
                namespace,
                name,
                dimension,
            })
            .collect())
    }

    fn samples(&self, key: &SeriesKey, w: Window) -> SourceResult<Vec<MetricSample>> {
        self.reader
            .samples(&key.namespace, &key.name, &key.dimension, w)
            .map_err(|e| unavailable("metrics", e))
    }

    /// Every sample of the window in one walk along its rowids
    /// (`Reader::window_samples`), cut into parts read at once on
    /// [`LocalStore::read_threads`] threads; the samples of unwanted series
    /// are stepped over, not built.
    fn wanted_samples(
        &self,
        w: Window,
        wanted: &(dyn Fn(&SeriesKey) -> bool + Sync),
    ) -> SourceResult<Vec<(SeriesKey, Vec<MetricSample>)>> {
        let err = |e| unavailable("metrics", e);
        // Asked once per series met: the samples of the others are not built.
        let keep = |namespace: &str, name: &str, dimension: &str| {
            wanted(&SeriesKey::new(namespace, name, dimension))
        };
        let all = if self.threads > 1 {
            let Some(ids) = self.reader.metric_id_range(w).map_err(err)? else {
                return Ok(Vec::new());
            };
            let path = self.reader.path();
            let read: Vec<SourceResult<Vec<Vec<MetricSample>>>> = on_threads(
                split_ids(ids, self.threads)
                    .into_iter()
                    .map(|part| {
                        move || {
                            let reader = Reader::open(path).map_err(err)?;
                            reader.window_samples_ids_where(w, part, &keep).map_err(err)
                        }
                    })
                    .collect(),
            );
            // Each series: its samples part after part (stored order), then
            // oldest first with equal times kept in that order.
            let mut merged: BTreeMap<(String, String, String), Vec<MetricSample>> = BTreeMap::new();
            for part in read {
                for samples in part? {
                    let first = &samples[0];
                    let key = (
                        first.namespace.clone(),
                        first.name.clone(),
                        first.dimension.clone(),
                    );
                    merged.entry(key).or_default().extend(samples);
                }
            }
            merged
                .into_values()
                .map(|mut samples| {
                    samples.sort_by_key(|m| m.ts_ms);
                    samples
                })
                .collect()
        } else {
            self.reader.window_samples_where(w, &keep).map_err(err)?
        };
        Ok(all
            .into_iter()
            .filter_map(|samples| {
                let first = samples.first()?;
                let key = SeriesKey::new(&first.namespace, &first.name, &first.dimension);
                Some((key, samples))
            })
            .collect())
    }
}

impl DeploymentSource for LocalStore {
    fn name(&self) -> &str {
        "local store deployments"
    }

    fn deployments(&self, w: Window) -> SourceResult<Vec<Deployment>> {
        // Deployments are few (one per `deploy`); the store lists newest first.
        let mut all = self
            .reader
            .deployments(10_000)
            .map_err(|e| unavailable("deployments", e))?;
        all.retain(|d| d.started_ms < w.end_ms && d.finished_ms.is_none_or(|f| f >= w.start_ms));
        all.reverse();
        Ok(all)
    }

    fn deployment(&self, id: &str) -> SourceResult<Option<Deployment>> {
        self.reader
            .deployment(id)
            .map_err(|e| unavailable("deployments", e))
    }
}

impl TaskSource for LocalStore {
    fn name(&self) -> &str {
        "local store task events"
    }

    fn task_events(&self, w: Window) -> SourceResult<Vec<TaskEvent>> {
        self.reader
            .task_events(w)
            .map_err(|e| unavailable("task events", e))
    }
}
