//! The indexed text search returns exactly what the plain scan returns: the
//! same rows in the same order under the same limit, on generated lines and
//! random queries, through every state the index goes through (blocks and the
//! open tail, a restart that loses the open block, retention, the size cap, a
//! database made before the index).

use demo_model::events::{LogRecord, Stream, Window};
use rusqlite::Connection;

use crate::reader::{LogQuery, log_query_sql};
use crate::textindex::BLOCK_LINES;
use crate::textsearch::narrow;
use crate::{Reader, Store};

/// xorshift64: a fixed seed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "request",
    "completed",
    "GET",
    "get",
    "Database",
    "query",
    "failed",
    "é",
    "ü-x",
    "r-1",
    "-1800-",
    "quote",
    "\"",
    "0",
    "00",
    "abc",
    "ABC",
    "timeout",
];
const TASKS: &[&str] = &["task-0001", "task-0002", "task-0003"];
const LEVELS: &[&str] = &["INFO", "ERROR", "WARN"];

/// One generated line: JSON or plain, common words and a rare id.
fn line(rng: &mut Rng, ts: i64, n: u64) -> LogRecord {
    let task = rng.pick(TASKS);
    let words: Vec<&str> = (0..1 + rng.below(6)).map(|_| rng.pick(WORDS)).collect();
    let text = format!("{} id-{n}-{:x}", words.join(" "), rng.below(1 << 20));
    let line = if rng.below(4) == 0 {
        text
    } else {
        serde_json::json!({"level": rng.pick(LEVELS), "message": text, "seq": n}).to_string()
    };
    LogRecord::from_line(ts, task, Stream::Stdout, line)
}

/// Writes `n` lines with timestamps around `ts0` (many equal, out of rowid order).
fn fill(store: &Store, rng: &mut Rng, ts0: i64, n: u64) {
    let w = store.writer();
    for i in 0..n {
        let ts = ts0 + i as i64 / 4 + rng.below(40) as i64;
        w.log(line(rng, ts, i));
    }
    w.flush();
}

fn plain(conn: &Connection, w: Window, q: &LogQuery) -> Vec<LogRecord> {
    let (sql, args) = log_query_sql(w, q);
    Reader::query_logs(conn, &sql, args).unwrap()
}

/// A text: a piece of a stored line (rare or common), a word, or absent text.
fn text(rng: &mut Rng, conn: &Connection) -> String {
    match rng.below(5) {
        0 => rng.pick(WORDS).to_string(),
        1 => format!("id-{}-", rng.below(20_000)),
        2 => format!("nowhere-{}", rng.below(100)),
        _ => {
            let line: String = conn
                .query_row(
                    "SELECT line FROM logs ORDER BY id LIMIT 1 OFFSET ?1",
                    [rng.below(1000) as i64 * 7],
                    |r| r.get(0),
                )
                .unwrap_or_else(|_| "id-1-".into());
            let chars: Vec<char> = line.chars().collect();
            let start = rng.below(chars.len() as u64) as usize;
            let len = 1 + rng.below(14) as usize;
            chars[start..(start + len).min(chars.len())]
                .iter()
                .collect()
        }
    }
}

/// Compares the indexed and the plain search on `queries` random queries;
/// returns how many went through the index.
fn compare(store: &Store, rng: &mut Rng, span: (i64, i64), queries: usize) -> usize {
    let reader = store.reader().unwrap();
    let conn = crate::open_conn(store.path()).unwrap();
    let mut narrowed = 0;
    for _ in 0..queries {
        let a = span.0 + rng.below((span.1 - span.0) as u64) as i64;
        let b = a + rng.below((span.1 - span.0) as u64 + 50) as i64;
        let w = Window::new(a.min(b), a.max(b) + 1);
        let q = LogQuery {
            task_id: (rng.below(4) == 0).then(|| rng.pick(TASKS).to_string()),
            level: (rng.below(4) == 0).then(|| rng.pick(LEVELS).to_string()),
            contains: Some(text(rng, &conn)),
            limit: match rng.below(3) {
                0 => None,
                1 => Some(1 + rng.below(5) as usize),
                _ => Some(1 + rng.below(300) as usize),
            },
        };
        let text = q.contains.as_deref().unwrap();
        if narrow(&conn, w, text, q.limit).unwrap().is_some() {
            narrowed += 1;
        }
        check_id_range(&reader, &conn, w);
        let got = reader.logs(w, &q).unwrap();
        let want = plain(&conn, w, &q);
        assert_eq!(
            got.iter().map(|l| (l.ts_ms, &l.line)).collect::<Vec<_>>(),
            want.iter().map(|l| (l.ts_ms, &l.line)).collect::<Vec<_>>(),
            "window {w:?}, query {q:?}"
        );
        assert_eq!(got, want);
    }
    narrowed
}

/// `Reader::log_id_range`, bounded by the index's blocks, holds every line
/// of the window (it may be wider than the exact range by the blocks on the
/// window's edges, never narrower), and says `None` only for a window
/// without lines.
fn check_id_range(reader: &Reader, conn: &Connection, w: Window) {
    let exact: (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT min(id), max(id) FROM logs WHERE ts_ms >= ?1 AND ts_ms < ?2",
            [w.start_ms, w.end_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let got = reader.log_id_range(w).unwrap();
    if let Some((a, b)) = exact.0.zip(exact.1) {
        let (lo, hi) = got.unwrap_or_else(|| panic!("window {w:?} has ids {a}..={b}, got None"));
        assert!(
            lo <= a && hi >= b,
            "window {w:?}: {lo}..={hi} misses {a}..={b}"
        );
        let slack = 3 * i64::from(BLOCK_LINES);
        assert!(
            (hi - lo) <= (b - a) + slack,
            "window {w:?}: {lo}..={hi} is far wider than {a}..={b}"
        );
    }
}

fn blocks(store: &Store) -> i64 {
    let conn = crate::open_conn(store.path()).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log_blocks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn indexed_search_equals_the_plain_scan_through_restarts_retention_and_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let n = u64::from(BLOCK_LINES) * 6 + 300;
    {
        let store = Store::open(dir.path()).unwrap();
        fill(&store, &mut rng, 100_000, n);
        assert_eq!(blocks(&store), 6, "6 blocks stored, 300 lines open");
        let used = compare(&store, &mut rng, (99_000, 102_000), 300);
        assert!(
            used > 60,
            "only {used} of 300 queries went through the index"
        );
        // Dropped without storing its open block: as after a crash.
    }
    let store = Store::open(dir.path()).unwrap();
    // The 300 lines of the lost open block are read back and indexed with the next.
    fill(&store, &mut rng, 102_000, u64::from(BLOCK_LINES));
    assert_eq!(blocks(&store), 7);
    let conn = crate::open_conn(store.path()).unwrap();
    let (first, last, lines): (i64, i64, i64) = conn
        .query_row(
            "SELECT first_id, last_id, lines FROM log_blocks ORDER BY first_id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((first, lines), (6 * i64::from(BLOCK_LINES) + 1, 1024));
    assert_eq!(last, first + 1023);
    compare(&store, &mut rng, (99_000, 104_000), 200);

    // Retention: the lines (and blocks) older than 101,000 go.
    store.writer().prune(101_000);
    store.writer().flush();
    let min_ts: i64 = conn
        .query_row("SELECT MIN(min_ts) FROM log_blocks", [], |r| r.get(0))
        .unwrap();
    assert!(min_ts >= 100_500, "emptied blocks are deleted: {min_ts}");
    compare(&store, &mut rng, (100_000, 104_000), 200);
    fill(&store, &mut rng, 103_000, 700);
    compare(&store, &mut rng, (100_000, 104_500), 200);

    // The size cap deletes the oldest ids; their blocks go with them.
    let used = crate::limits::used_bytes(&conn).unwrap();
    store.writer().set_size_cap(Some(used * 3 / 4)).unwrap();
    fill(&store, &mut rng, 104_000, 200);
    let (min_id, first_block): (i64, Option<i64>) = conn
        .query_row(
            "SELECT (SELECT MIN(id) FROM logs), (SELECT MIN(last_id) FROM log_blocks)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(min_id > 1000, "the cap pruned the oldest lines");
    assert!(
        first_block.is_some_and(|l| l >= min_id),
        "{first_block:?} {min_id}"
    );
    compare(&store, &mut rng, (100_000, 105_000), 150);
    store.writer().set_size_cap(None).unwrap();
    fill(&store, &mut rng, 105_000, u64::from(BLOCK_LINES) * 3);
    let used = compare(&store, &mut rng, (104_000, 106_000), 200);
    assert!(
        used > 40,
        "only {used} of 200 queries went through the index"
    );
}

#[test]
fn retention_that_empties_the_table_leaves_no_block_claiming_reused_rowids() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5EED_1234_ABCD_0002);
    let store = Store::open(dir.path()).unwrap();
    fill(&store, &mut rng, 1_000, u64::from(BLOCK_LINES) * 2 + 10);
    store.writer().prune(i64::MAX);
    store.writer().flush();
    assert_eq!(blocks(&store), 0);
    // New lines reuse rowids from 1: no stale block may describe them.
    fill(&store, &mut rng, 50_000, u64::from(BLOCK_LINES) * 2 + 10);
    assert_eq!(blocks(&store), 2);
    let used = compare(&store, &mut rng, (49_000, 51_000), 200);
    assert!(used > 40, "{used}");
}

#[test]
fn a_database_made_before_the_index_is_searched_whole_and_indexed_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5EED_1234_ABCD_0003);
    let path = dir.path().join(crate::DB_FILE);
    {
        // Version 3, as the previous build left it, with 3,000 lines.
        let mut conn = Connection::open(&path).unwrap();
        for (i, sql) in crate::schema::MIGRATIONS[..3].iter().enumerate() {
            let txn = conn.transaction().unwrap();
            txn.execute_batch(sql).unwrap();
            txn.pragma_update(None, "user_version", i + 1).unwrap();
            txn.commit().unwrap();
        }
        for i in 0..3000u64 {
            let r = line(&mut rng, 10_000 + i as i64 / 3, i);
            conn.execute(
                "INSERT INTO logs (ts_ms, task_id, stream, level, message, route, status, line) VALUES (?1, ?2, 'stdout', ?3, ?4, NULL, NULL, ?5)",
                rusqlite::params![r.ts_ms, r.task_id, r.level, r.message, r.line],
            )
            .unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let conn = crate::open_conn(&path).unwrap();
    let prefix: (i64, i64) = conn
        .query_row("SELECT last_id, max_ts FROM log_index_prefix", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(prefix, (3000, 10_999));
    // New lines overlap the old ones in time: both parts are searched.
    fill(&store, &mut rng, 10_500, u64::from(BLOCK_LINES) * 4 + 5);
    assert_eq!(blocks(&store), 4);
    let first: i64 = conn
        .query_row("SELECT MIN(first_id) FROM log_blocks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(first, 3001, "indexing starts after the old rows");
    let used = compare(&store, &mut rng, (9_000, 12_000), 300);
    assert!(used > 40, "{used}");
}
