//! The reader's side of the text index ([`crate::textindex`]): which rowid
//! ranges a text search over a window must read, and the query that reads only
//! those. The query keeps every other condition of the plain one and re-checks
//! each line with `instr`, so its rows, order and limit are the plain query's.

use demo_model::events::Window;
use rusqlite::{Connection, OptionalExtension};

use crate::textindex::{LAST_BLOCK_SQL, PREFIX_SQL, may_contain, query_hashes};

/// Where the lines of a window that may hold a text are.
#[derive(Debug)]
pub(crate) struct Narrowed {
    /// Inclusive rowid ranges to read by rowid: the blocks whose filter has
    /// every gram of the text, and the open block (rows after the last stored
    /// block, up to `i64::MAX`).
    pub(crate) ranges: Vec<(i64, i64)>,
    /// Rows with `id <=` this predate the index (migration 4) and may be in
    /// the window: read through the `ts_ms` index as before.
    pub(crate) prefix: Option<i64>,
}

/// With a limit: when this many of the window's newest blocks all may hold
/// the text, it is common, and the plain query (newest first, stopping at its
/// limit) is cheaper than reading every block's filter.
const PROBE_BLOCKS: usize = 8;

/// The index version: `log_blocks` exists from schema version 4.
const INDEX_VERSION: u32 = 4;

pub(crate) const WINDOW_BLOCKS_SQL: &str = "SELECT first_id, last_id, filter FROM log_blocks WHERE max_ts >= ?1 AND min_ts < ?2 ORDER BY max_ts DESC";

/// What a reader needs to know of the index to bound a window's ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexBounds {
    /// The last id covered by a stored block or older than the index: rows
    /// after it are the open block, read by rowid.
    pub(crate) tail_after: i64,
    /// The rows older than the index: `(last id, newest ts)`.
    pub(crate) prefix: Option<(i64, i64)>,
}

/// The index's bounds; `None`: no index to go by (a database of an older
/// schema, or no block stored yet).
pub(crate) fn index_bounds(conn: &Connection) -> rusqlite::Result<Option<IndexBounds>> {
    if crate::schema::version(conn)? < INDEX_VERSION {
        return Ok(None);
    }
    let Some(last) = conn
        .prepare_cached(LAST_BLOCK_SQL)?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let prefix: Option<(i64, i64)> = conn
        .prepare_cached(PREFIX_SQL)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(Some(IndexBounds {
        tail_after: last.max(prefix.map_or(0, |p| p.0)),
        prefix,
    }))
}

/// The ranges to read for `text` over `w`, or `None` when the index cannot
/// narrow the search (text shorter than a gram, no stored block yet, a
/// database of an older schema, or most blocks kept: the plain query, which
/// stops at its limit in time order, is then as cheap).
pub(crate) fn narrow(
    conn: &Connection,
    w: Window,
    text: &str,
    limit: Option<usize>,
) -> rusqlite::Result<Option<Narrowed>> {
    let Some(hashes) = query_hashes(text) else {
        return Ok(None);
    };
    let Some(IndexBounds { tail_after, prefix }) = index_bounds(conn)? else {
        return Ok(None);
    };
    let mut keep: Vec<(i64, i64)> = Vec::new();
    let mut blocks = 0;
    {
        let mut stmt = conn.prepare_cached(WINDOW_BLOCKS_SQL)?;
        let mut rows = stmt.query([w.start_ms, w.end_ms])?;
        while let Some(r) = rows.next()? {
            blocks += 1;
            if !may_contain(r.get_ref(2)?.as_blob()?, &hashes) {
                continue;
            }
            keep.push((r.get(0)?, r.get(1)?));
            if limit.is_some() && blocks == PROBE_BLOCKS && keep.len() == PROBE_BLOCKS {
                return Ok(None);
            }
        }
    }
    if keep.len() * 2 > blocks {
        return Ok(None);
    }
    // Through `log_blocks_max_ts`, not in rowid order.
    keep.sort_unstable();
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for (lo, hi) in keep {
        push_range(&mut ranges, lo, hi);
    }
    push_range(&mut ranges, tail_after + 1, i64::MAX);
    Ok(Some(Narrowed {
        ranges,
        prefix: prefix
            .filter(|&(_, max_ts)| max_ts >= w.start_ms)
            .map(|p| p.0),
    }))
}

/// Appends `[lo, hi]`, joined to the previous range when adjacent.
fn push_range(ranges: &mut Vec<(i64, i64)>, lo: i64, hi: i64) {
    match ranges.last_mut() {
        Some(prev) if prev.1.checked_add(1) == Some(lo) => prev.1 = hi,
        _ => ranges.push((lo, hi)),
    }
}

#[cfg(test)]
mod tests {
    use super::push_range;

    #[test]
    fn adjacent_ranges_join_and_others_stay_apart() {
        let mut r = Vec::new();
        push_range(&mut r, 1, 10);
        push_range(&mut r, 11, 20);
        push_range(&mut r, 30, 40);
        push_range(&mut r, 41, i64::MAX);
        assert_eq!(r, vec![(1, 20), (30, i64::MAX)]);
    }
}
