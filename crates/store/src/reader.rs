//! Reads: every query the CLI, the collector and the investigator make, each
//! on its own connection, which in WAL mode never blocks the writer.

use std::path::{Path, PathBuf};

use demo_model::events::{
    AlarmTransition, ConfigChange, Deployment, DeploymentOutcome, EpochMs, LogRecord, MetricSample,
    Stream, TaskEvent, TaskEventKind, Window,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::textsearch::{self, Narrowed};
use crate::{
    DB_FILE, InvestigationRow, Result, RuntimeEvent, StoreError, TaskProcess, open_conn, sql_err,
};

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

// The window queries of the investigator, named so that their plans are tested (`query_plans`).
pub(crate) const SCAN_LOGS_SQL: &str = "SELECT ts_ms, task_id, level, message, route, status, CASE WHEN message IS NULL THEN line END FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id";
pub(crate) const SAMPLES_SQL: &str = "SELECT ts_ms, value, count FROM metrics WHERE namespace = ?1 AND name = ?2 AND dimension = ?3 AND ts_ms >= ?4 AND ts_ms < ?5 ORDER BY ts_ms";
pub(crate) const SERIES_SQL: &str = "SELECT DISTINCT namespace, name, dimension FROM metrics WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY 1, 2, 3";
pub(crate) const TRACE_IDS_SQL: &str = "SELECT json_extract(line, '$.trace_id') AS t FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2 AND message = ?3 AND t IS NOT NULL ORDER BY ts_ms, id LIMIT ?4";
/// The rowids of the window's first and last log lines in rowid order: an
/// index-only walk of the window's `logs_ts` entries (no row is read).
pub(crate) const LOG_ID_RANGE_SQL: &str =
    "SELECT min(id), max(id) FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2";
/// The id range of the text index's stored blocks that may hold lines of the
/// window (`log_blocks_max_ts`, one row per 1,024 lines).
pub(crate) const BLOCK_ID_RANGE_SQL: &str =
    "SELECT min(first_id), max(last_id) FROM log_blocks WHERE max_ts >= ?1 AND min_ts < ?2";
/// The window's ids among the rows after `?3` (the open block: the rows after
/// the last stored block), by rowid.
pub(crate) const TAIL_ID_RANGE_SQL: &str =
    "SELECT min(id), max(id) FROM logs WHERE id > ?3 AND +ts_ms >= ?1 AND +ts_ms < ?2";
/// The window's ids among the rows older than the index (`id <= ?3`).
pub(crate) const PREFIX_ID_RANGE_SQL: &str =
    "SELECT min(id), max(id) FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2 AND id <= ?3";
/// The window's lines by rowid range, in rowid order: one walk along the
/// table instead of a seek into it for every entry of the `ts_ms` index. The
/// `+` keeps `ts_ms` a filter (rows of the id range outside the window, which
/// arrived out of time order, are dropped) rather than the search key.
pub(crate) const SCAN_LOG_IDS_SQL: &str = "SELECT id, ts_ms, task_id, level, message, route, status, CASE WHEN message IS NULL THEN line END FROM logs WHERE id >= ?3 AND id <= ?4 AND +ts_ms >= ?1 AND +ts_ms < ?2";
/// The same for metric samples (`metrics_ts` covers `ts_ms`).
pub(crate) const METRIC_ID_RANGE_SQL: &str =
    "SELECT min(rowid), max(rowid) FROM metrics WHERE ts_ms >= ?1 AND ts_ms < ?2";
pub(crate) const SCAN_METRIC_IDS_SQL: &str = "SELECT namespace, name, dimension, ts_ms, value, count FROM metrics WHERE rowid >= ?3 AND rowid <= ?4 AND +ts_ms >= ?1 AND +ts_ms < ?2";
pub(crate) const TASK_EVENTS_SQL: &str = "SELECT ts_ms, task_id, kind, exit_code, reason, deployment_id FROM task_events WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id";

const LOG_COLS: &str = "logs.ts_ms, logs.task_id, logs.stream, logs.level, logs.message, logs.route, logs.status, logs.line";
/// [`LOG_COLS`] read back from a subquery.
const LOG_OUT: &str = "ts_ms, task_id, stream, level, message, route, status, line";

/// The conditions of a log query (its window as `?1`, `?2`, then its
/// filters) and their arguments, to which a caller may append its own.
fn log_conditions(w: Window, q: &LogQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut args: Vec<rusqlite::types::Value> = vec![w.start_ms.into(), w.end_ms.into()];
    let mut sql = String::from("logs.ts_ms >= ?1 AND logs.ts_ms < ?2");
    if let Some(t) = &q.task_id {
        args.push(t.clone().into());
        sql.push_str(&format!(" AND logs.task_id = ?{}", args.len()));
    }
    if let Some(l) = &q.level {
        args.push(l.to_ascii_uppercase().into());
        sql.push_str(&format!(" AND logs.level = ?{}", args.len()));
    }
    if let Some(c) = &q.contains {
        args.push(c.clone().into());
        sql.push_str(&format!(" AND instr(logs.line, ?{}) > 0", args.len()));
    }
    (sql, args)
}

/// The SQL and arguments of [`Reader::logs`] without the text index.
pub(crate) fn log_query_sql(w: Window, q: &LogQuery) -> (String, Vec<rusqlite::types::Value>) {
    let (conditions, args) = log_conditions(w, q);
    let mut sql = format!("SELECT {LOG_COLS} FROM logs WHERE {conditions}");
    match q.limit {
        // The newest `n`, returned oldest first.
        // Lines with equal times in stored order, as without a limit.
        Some(n) => {
            sql = format!(
                "SELECT {LOG_OUT} FROM (SELECT logs.id AS id, {LOG_COLS} FROM logs WHERE {conditions} ORDER BY logs.ts_ms DESC, logs.id DESC LIMIT {n}) ORDER BY ts_ms, id"
            )
        }
        None => sql.push_str(" ORDER BY logs.ts_ms, logs.id"),
    }
    (sql, args)
}

/// The same query reading only the rowid ranges the text index keeps
/// (`textsearch::narrow`), plus the rows older than the index through the
/// `ts_ms` index: the same conditions, order and limit over fewer rows.
pub(crate) fn narrowed_log_query_sql(
    w: Window,
    q: &LogQuery,
    n: &Narrowed,
) -> (String, Vec<rusqlite::types::Value>) {
    let (conditions, mut args) = log_conditions(w, q);
    let mut values = Vec::with_capacity(n.ranges.len());
    for &(lo, hi) in &n.ranges {
        args.push(lo.into());
        args.push(hi.into());
        values.push(format!("(?{}, ?{})", args.len() - 1, args.len()));
    }
    // NOT INDEXED: each range is read by rowid, never through `logs_ts` over the window.
    let mut arms = format!(
        "SELECT logs.id AS id, {LOG_COLS} FROM r JOIN logs NOT INDEXED ON logs.id BETWEEN r.lo AND r.hi WHERE {conditions}"
    );
    if let Some(p) = n.prefix {
        args.push(p.into());
        arms.push_str(&format!(
            " UNION ALL SELECT logs.id AS id, {LOG_COLS} FROM logs WHERE {conditions} AND logs.id <= ?{}",
            args.len()
        ));
    }
    let out = LOG_OUT;
    let with = format!("WITH r(lo, hi) AS (VALUES {})", values.join(", "));
    let sql = match q.limit {
        // As in `log_query_sql`: the newest `n`, returned oldest first.
        Some(limit) => format!(
            "{with} SELECT {out} FROM (SELECT * FROM ({arms}) ORDER BY ts_ms DESC, id DESC LIMIT {limit}) ORDER BY ts_ms, id"
        ),
        None => format!("{with} SELECT {out} FROM ({arms}) ORDER BY ts_ms, id"),
    };
    (sql, args)
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

/// How much of the database file a read connection maps (see [`Reader::open`]).
const MMAP_BYTES: i64 = 1 << 31;

/// A nullable text column, `None` for NULL (columns declared `NOT NULL` are
/// read with `as_str`, so a NULL there is an error, not an empty string).
fn text(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Option<&str>> {
    match v {
        rusqlite::types::ValueRef::Null => Ok(None),
        other => other.as_str().map(Some).map_err(Into::into),
    }
}

/// The [`LogRow`] in the columns of `r` from `at` on, in the order of
/// [`SCAN_LOGS_SQL`] (`ts_ms, task_id, level, message, route, status, line`).
fn log_row<'r>(r: &'r rusqlite::Row<'_>, at: usize) -> rusqlite::Result<LogRow<'r>> {
    Ok(LogRow {
        ts_ms: r.get(at)?,
        task_id: r.get_ref(at + 1)?.as_str()?,
        level: text(r.get_ref(at + 2)?)?,
        message: text(r.get_ref(at + 3)?)?,
        route: text(r.get_ref(at + 4)?)?,
        status: r.get(at + 5)?,
        line: text(r.get_ref(at + 6)?)?,
    })
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
        // Map the file instead of copying each page through a read(2) into
        // SQLite's small page cache: an investigation reads a window's worth
        // of pages (hundreds of MB for an hour at 200 lines/s), and the
        // window is at the end of the file, so the map must cover all of it
        // (SQLite caps this at its compile-time maximum, 2 GB on Linux).
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(sql_err(&path))?;
        Ok(Reader { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sql_err(&self.path)
    }

    /// Log records in the window, oldest first, through the `ts_ms` index (or
    /// `level, ts_ms` with a level); `contains` is checked on each line, of
    /// the blocks the text index keeps only when it narrows the search
    /// (`textsearch`), with the same result.
    pub fn logs(&self, w: Window, q: &LogQuery) -> Result<Vec<LogRecord>> {
        // One snapshot: the blocks and the rows they describe are read together.
        let snapshot = self.conn.unchecked_transaction().map_err(self.err())?;
        let narrowed = match &q.contains {
            Some(text) => textsearch::narrow(&snapshot, w, text, q.limit).map_err(self.err())?,
            None => None,
        };
        let (sql, args) = match &narrowed {
            Some(n) => narrowed_log_query_sql(w, q, n),
            None => log_query_sql(w, q),
        };
        Reader::query_logs(&snapshot, &sql, args).map_err(self.err())
    }

    /// Runs a query of [`LOG_COLS`] into records.
    pub(crate) fn query_logs(
        conn: &Connection,
        sql: &str,
        args: Vec<rusqlite::types::Value>,
    ) -> rusqlite::Result<Vec<LogRecord>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
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
        })?;
        rows.collect()
    }

    /// Calls `f` for every log record in the window, oldest first, without
    /// building them all in memory (the investigator scans an hour of logs).
    /// Fields borrow from the row; `line` is `None` when the line was JSON with
    /// a `message`, the common case, so the biggest column is not read.
    /// Returns how many records were visited.
    pub fn scan_logs(&self, w: Window, mut f: impl FnMut(LogRow<'_>)) -> Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached(SCAN_LOGS_SQL)
            .map_err(self.err())?;
        let mut rows = stmt.query([w.start_ms, w.end_ms]).map_err(self.err())?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(self.err())? {
            let row = log_row(r, 0).map_err(self.err())?;
            f(row);
            n += 1;
        }
        Ok(n)
    }

    /// Calls `f` for every log record in the window exactly once, in rowid
    /// order (the order lines were stored, which is not always time order),
    /// with the record's id: `(ts_ms, id)` gives its place in
    /// [`Reader::scan_logs`]'s order. Cheaper than `scan_logs` for a caller
    /// that only aggregates: the table is walked along its rowids instead of
    /// being searched once per line from the `ts_ms` index. Returns how many
    /// records were visited.
    pub fn scan_logs_unordered(&self, w: Window, f: impl FnMut(i64, LogRow<'_>)) -> Result<u64> {
        // One read transaction: the id range and the rows from one snapshot.
        let _txn = self.conn.unchecked_transaction().map_err(self.err())?;
        match self.log_id_range(w)? {
            Some(ids) => self.scan_logs_ids(w, ids, f),
            None => Ok(0),
        }
    }

    /// An id range that holds every log line of the window (`None`: the
    /// window has none). Splitting it lets several readers walk one window at
    /// once ([`Reader::scan_logs_ids`], which keeps only the window's lines).
    ///
    /// Its cost follows the number of the text index's blocks (one per 1,024
    /// lines), not of lines: the range of the stored blocks whose time span
    /// meets the window, widened by the window's ids among the rows after the
    /// last stored block (by rowid) and among rows older than the index (by
    /// the `ts_ms` index, only when the window reaches back to them). So it
    /// may be wider than the window's exact smallest and largest id (a block
    /// on the window's edge), and an empty window can get a range with no
    /// line of it in. Without the index (a database of an older schema, or no
    /// block stored yet) the exact range from the `ts_ms` index.
    pub fn log_id_range(&self, w: Window) -> Result<Option<(i64, i64)>> {
        // One snapshot: no block stored between reading the last one and the rows after it.
        let _txn = if self.conn.is_autocommit() {
            Some(self.conn.unchecked_transaction().map_err(self.err())?)
        } else {
            None
        };
        let Some(textsearch::IndexBounds { tail_after, prefix }) =
            textsearch::index_bounds(&self.conn).map_err(self.err())?
        else {
            return self.id_range(LOG_ID_RANGE_SQL, w, None);
        };
        let mut range = self.id_range(BLOCK_ID_RANGE_SQL, w, None)?;
        let mut widen = |r: Option<(i64, i64)>| {
            range = match (range, r) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                (a, b) => a.or(b),
            }
        };
        widen(self.id_range(TAIL_ID_RANGE_SQL, w, Some(tail_after))?);
        if let Some((last_id, max_ts)) = prefix
            && max_ts >= w.start_ms
        {
            widen(self.id_range(PREFIX_ID_RANGE_SQL, w, Some(last_id))?);
        }
        Ok(range)
    }

    /// The `(min, max)` row of an id-range query over `w` (`None`: no row in
    /// `w`); `id` is the query's `?3` when it has one.
    fn id_range(&self, sql: &str, w: Window, id: Option<i64>) -> Result<Option<(i64, i64)>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err())?;
        let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
        let range: (Option<i64>, Option<i64>) = match id {
            Some(id) => stmt.query_row([w.start_ms, w.end_ms, id], row),
            None => stmt.query_row([w.start_ms, w.end_ms], row),
        }
        .map_err(self.err())?;
        Ok(range.0.zip(range.1))
    }

    /// [`Reader::scan_logs_unordered`] restricted to the lines whose id is in
    /// `lo..=hi`.
    pub fn scan_logs_ids(
        &self,
        w: Window,
        (lo, hi): (i64, i64),
        mut f: impl FnMut(i64, LogRow<'_>),
    ) -> Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached(SCAN_LOG_IDS_SQL)
            .map_err(self.err())?;
        let mut rows = stmt
            .query([w.start_ms, w.end_ms, lo, hi])
            .map_err(self.err())?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(self.err())? {
            let (id, row) = r
                .get(0)
                .and_then(|id| Ok((id, log_row(r, 1)?)))
                .map_err(self.err())?;
            f(id, row);
            n += 1;
        }
        Ok(n)
    }

    /// The database file this reader reads (to open more readers on it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every sample in the window, by series (sorted by namespace, name,
    /// dimension), each series oldest first (ties in stored order): what
    /// [`Reader::series`] and one [`Reader::samples`] per series return, read
    /// in one walk along the table's rowids instead of one index search per
    /// series and a table search per sample.
    pub fn window_samples(&self, w: Window) -> Result<Vec<Vec<MetricSample>>> {
        self.window_samples_where(w, &|_, _, _| true)
    }

    /// [`Reader::window_samples`] for the series `keep` wants (see
    /// [`Reader::window_samples_ids_where`]).
    pub fn window_samples_where(
        &self,
        w: Window,
        keep: &dyn Fn(&str, &str, &str) -> bool,
    ) -> Result<Vec<Vec<MetricSample>>> {
        // One read transaction: the id range and the rows from one snapshot.
        let _txn = self.conn.unchecked_transaction().map_err(self.err())?;
        match self.metric_id_range(w)? {
            Some(ids) => self.window_samples_ids_where(w, ids, keep),
            None => Ok(Vec::new()),
        }
    }

    /// The smallest and the largest rowid of the window's metric samples
    /// (`None`: none), from the `metrics_ts` index alone; see
    /// [`Reader::log_id_range`].
    pub fn metric_id_range(&self, w: Window) -> Result<Option<(i64, i64)>> {
        self.id_range(METRIC_ID_RANGE_SQL, w, None)
    }

    /// [`Reader::window_samples`] restricted to the samples whose rowid is in
    /// `lo..=hi`. Parts of one window read this way concatenate, part after
    /// part, into the stored order of each series.
    pub fn window_samples_ids(&self, w: Window, ids: (i64, i64)) -> Result<Vec<Vec<MetricSample>>> {
        self.window_samples_ids_where(w, ids, &|_, _, _| true)
    }

    /// [`Reader::window_samples_ids`] for the series `keep` wants (asked once
    /// per series, with its namespace, name and dimension): the samples of
    /// the others are stepped over, not built.
    pub fn window_samples_ids_where(
        &self,
        w: Window,
        (lo, hi): (i64, i64),
        keep: &dyn Fn(&str, &str, &str) -> bool,
    ) -> Result<Vec<Vec<MetricSample>>> {
        let mut stmt = self
            .conn
            .prepare_cached(SCAN_METRIC_IDS_SQL)
            .map_err(self.err())?;
        let mut rows = stmt
            .query([w.start_ms, w.end_ms, lo, hi])
            .map_err(self.err())?;
        let mut slots = SeriesSlots::default();
        while let Some(r) = rows.next().map_err(self.err())? {
            let (namespace, name, dimension) = (|| -> rusqlite::Result<(&str, &str, &str)> {
                Ok((
                    r.get_ref(0)?.as_str()?,
                    r.get_ref(1)?.as_str()?,
                    r.get_ref(2)?.as_str()?,
                ))
            })()
            .map_err(self.err())?;
            let slot = slots.find(namespace, name, dimension, keep);
            let Some(samples) = slot.samples.as_mut() else {
                continue;
            };
            let sample = (|| -> rusqlite::Result<MetricSample> {
                Ok(MetricSample {
                    ts_ms: r.get(3)?,
                    namespace: slot.key.0.clone(),
                    name: slot.key.1.clone(),
                    dimension: slot.key.2.clone(),
                    value: r.get(4)?,
                    count: r.get(5)?,
                })
            })()
            .map_err(self.err())?;
            samples.push(sample);
        }
        let mut series: Vec<Vec<MetricSample>> =
            slots.slots.into_iter().filter_map(|s| s.samples).collect();
        // Oldest first; the sort is stable, so equal times stay in stored order.
        for s in &mut series {
            s.sort_by_key(|m| m.ts_ms);
        }
        series.sort_by(|a, b| {
            (&a[0].namespace, &a[0].name, &a[0].dimension).cmp(&(
                &b[0].namespace,
                &b[0].name,
                &b[0].dimension,
            ))
        });
        Ok(series)
    }

    /// The `trace_id` of up to `limit` lines in the window whose message is
    /// exactly `message`, oldest first (lines without one are skipped): the
    /// example traces an investigation cites for a log template.
    pub fn trace_ids(&self, w: Window, message: &str, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(TRACE_IDS_SQL)
            .map_err(self.err())?;
        let rows = stmt
            .query_map(
                rusqlite::params![w.start_ms, w.end_ms, message, limit as i64],
                |r| r.get::<_, String>(0),
            )
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
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
        let mut stmt = self.conn.prepare_cached(SAMPLES_SQL).map_err(self.err())?;
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
        let mut stmt = self.conn.prepare(SERIES_SQL).map_err(self.err())?;
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
        let mut stmt = self.conn.prepare(TASK_EVENTS_SQL).map_err(self.err())?;
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

    /// The highest number `n` of the deployment ids `d-n` recorded (0 when
    /// there are none): a new run of the runtime continues after it.
    pub fn last_deployment_seq(&self) -> Result<u64> {
        self.last_seq("SELECT id FROM deployments", "d-")
    }

    /// The highest number `n` of the task ids `task-n` seen in task events or processes.
    pub fn last_task_seq(&self) -> Result<u64> {
        self.last_seq(
            "SELECT DISTINCT task_id FROM task_events UNION SELECT task_id FROM task_processes",
            "task-",
        )
    }

    fn last_seq(&self, sql: &str, prefix: &str) -> Result<u64> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())?;
        // Ids not of the form `prefix` + digits (made by hand, by tests) are not ours to continue.
        Ok(ids
            .iter()
            .filter_map(|id| id.strip_prefix(prefix)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    /// Runtime events (starts, stops, restarts, orphans stopped), newest first.
    pub fn runtime_events(&self, limit: usize) -> Result<Vec<RuntimeEvent>> {
        let mut stmt = self
            .conn
            .prepare("SELECT ts_ms, kind, detail FROM runtime_events ORDER BY ts_ms DESC, id DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(RuntimeEvent {
                    ts_ms: r.get(0)?,
                    kind: r.get(1)?,
                    detail: r.get(2)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Task processes started and never seen to end: after a crash of the
    /// runtime, the candidates for orphans.
    pub fn unended_task_processes(&self) -> Result<Vec<TaskProcess>> {
        let mut stmt = self
            .conn
            .prepare("SELECT task_id, pid, start_ticks, exe, started_ms FROM task_processes WHERE ended_ms IS NULL ORDER BY started_ms")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TaskProcess {
                    task_id: r.get(0)?,
                    pid: r.get(1)?,
                    start_ticks: r.get(2)?,
                    exe: r.get(3)?,
                    started_ms: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }
}

/// The series met in a rowid walk of the metrics table, in first-met order.
/// A collector writes one sample of each series per tick, always in the same
/// order, so the series after the one just met is most often the one that
/// followed it last time: that is tried first (three string comparisons), and
/// only then a map, searched without allocating.
#[derive(Default)]
struct SeriesSlots {
    slots: Vec<SeriesSlot>,
    by_key: std::collections::HashMap<String, usize>,
    last: Option<usize>,
    buf: String,
}

struct SeriesSlot {
    key: (String, String, String),
    /// `None`: a series the caller does not want.
    samples: Option<Vec<MetricSample>>,
    /// The series met right after this one the last time.
    next: Option<usize>,
}

impl SeriesSlots {
    fn find(
        &mut self,
        namespace: &str,
        name: &str,
        dimension: &str,
        keep: &dyn Fn(&str, &str, &str) -> bool,
    ) -> &mut SeriesSlot {
        let is = |s: &SeriesSlot| s.key.0 == namespace && s.key.1 == name && s.key.2 == dimension;
        let predicted = self
            .last
            .and_then(|l| self.slots[l].next)
            .filter(|&i| is(&self.slots[i]))
            .or_else(|| self.last.filter(|&l| is(&self.slots[l])));
        let i = match predicted {
            Some(i) => i,
            None => {
                // Each part after its length: no two keys run together alike.
                self.buf.clear();
                for part in [namespace, name, dimension] {
                    use std::fmt::Write;
                    let _ = write!(self.buf, "{}:{part}", part.len());
                }
                let i = match self.by_key.get(self.buf.as_str()) {
                    Some(&i) => i,
                    None => {
                        let i = self.slots.len();
                        self.by_key.insert(self.buf.clone(), i);
                        self.slots.push(SeriesSlot {
                            key: (namespace.to_owned(), name.to_owned(), dimension.to_owned()),
                            samples: keep(namespace, name, dimension).then(Vec::new),
                            next: None,
                        });
                        i
                    }
                };
                if let Some(l) = self.last {
                    self.slots[l].next = Some(i);
                }
                i
            }
        };
        self.last = Some(i);
        &mut self.slots[i]
    }
}
