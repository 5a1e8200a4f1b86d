//! Sources over the local runtime's SQLite store (`<state_dir>/state.db`).
//! One [`LocalStore`] holds its own read connection, so an investigation can
//! run on another thread while the runtime keeps writing (WAL readers never
//! block the writer).

use std::path::Path;

use demo_model::events::{Deployment, MetricSample, TaskEvent, Window};
use demo_store::{LogRow, Reader, StoreError};

use super::{
    DeploymentSource, LogEntry, LogPart, LogSource, MetricSource, SeriesKey, SourceError,
    SourceResult, TaskSource,
};

/// Logs, metrics, deployments and task events from the local store.
#[derive(Debug)]
pub struct LocalStore {
    reader: Reader,
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
        Ok(LocalStore { reader })
    }

    /// The underlying reader (for investigation bookkeeping).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
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

    /// The window's id range cut into `n` consecutive id ranges, each read
    /// by a reader of its own (a SQLite connection is used by one thread).
    fn parts(&self, w: Window, n: usize) -> SourceResult<Option<Vec<LogPart<'_>>>> {
        let Some((lo, hi)) = self
            .reader
            .log_id_range(w)
            .map_err(|e| unavailable("logs", e))?
        else {
            return Ok(Some(Vec::new()));
        };
        let n = n.max(1) as i128;
        let span = i128::from(hi) - i128::from(lo) + 1;
        let cut = |i: i128| i64::try_from(i128::from(lo) + span * i / n).unwrap_or(hi);
        let mut parts: Vec<LogPart<'_>> = Vec::new();
        for i in 0..n {
            let ids = (cut(i), cut(i + 1) - 1);
            if ids.0 > ids.1 {
                continue;
            }
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

    /// Every sample of the window in one walk (`Reader::window_samples`),
    /// then the unwanted series dropped.
    fn wanted_samples(
        &self,
        w: Window,
        wanted: &dyn Fn(&SeriesKey) -> bool,
    ) -> SourceResult<Vec<(SeriesKey, Vec<MetricSample>)>> {
        let all = self
            .reader
            .window_samples(w)
            .map_err(|e| unavailable("metrics", e))?;
        Ok(all
            .into_iter()
            .filter_map(|samples| {
                let first = samples.first()?;
                let key = SeriesKey::new(&first.namespace, &first.name, &first.dimension);
                wanted(&key).then_some((key, samples))
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
