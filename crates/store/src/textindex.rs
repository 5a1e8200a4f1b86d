//! A text index the writer can afford: a Bloom filter of the 4-byte grams of
//! each block of consecutive log lines, so that a text search (`instr`) reads
//! only the blocks that may hold the text instead of every line of the window.
//!
//! Why this shape: an FTS5 trigram index cut the writer to 0.05× (it writes
//! ~300 index entries per line). Here the writer sets one bit per byte of a
//! line in an in-memory bitmap (a shift, a multiply, an OR) and stores one
//! row per [`BLOCK_LINES`] lines (`log_blocks`), in the same transaction as
//! the lines. Why 4-byte grams and not 3: demo-app lines carry ~80 random hex
//! digits (request, trace and span ids); a block of 1,024 lines holds every
//! one of the 4,096 hex trigrams, so a search for an id would prune nothing,
//! while it holds about two thirds of the 65,536 hex 4-grams, and a query's
//! grams must all be present. Texts shorter than 4 bytes are scanned as before.
//!
//! The filter is exact about absence only: a block it keeps is re-checked line
//! by line with `instr`, so results are those of the plain scan. What makes
//! that safe is one invariant, kept by the writer:
//!
//! * rows with `id <= log_index_prefix.last_id` predate the index (made before
//!   migration 4) and are scanned through the `ts_ms` index as before;
//! * every other row with `id <=` the last stored block's `last_id` lies in
//!   the rowid range of a stored block whose filter holds all its grams;
//! * the rows after that (the open block, in the writer's memory) are scanned.
//!
//! Deleting lines (retention, the size cap) deletes the blocks left empty and
//! any block whose rows past the newest remaining line are gone (SQLite may
//! reuse those rowids), then rebuilds the open block from the table
//! ([`TextIndex::after_prune`], [`reconcile`]). A failed batch or a restart after a crash
//! rebuilds it the same way: the open block is always "every row after the
//! last stored block", read back from the table.
//!
//! It assumes one writer of log lines per database (the runtime's task drain):
//! another `Store` on the same file may write investigations or events, but
//! lines it wrote would interleave rowids with the open block's unseen.

use rusqlite::{Connection, OptionalExtension, params};

/// The `last_id` of the newest stored block (no row: none stored yet).
pub(crate) const LAST_BLOCK_SQL: &str =
    "SELECT last_id FROM log_blocks WHERE first_id = (SELECT MAX(first_id) FROM log_blocks)";
/// The rows older than the index: the last of them and their newest timestamp.
pub(crate) const PREFIX_SQL: &str = "SELECT last_id, max_ts FROM log_index_prefix WHERE id = 1";

/// Lines per stored block. Smaller blocks prune finer but store more filters.
pub const BLOCK_LINES: u32 = 1024;
/// Bytes per gram.
pub const GRAM: usize = 4;
/// Bits of the filter while a block is open (16 KiB).
const MAX_BITS: usize = 1 << 17;
/// A closed block's filter is folded in half while it stays at most this
/// full (in 1/1000): sparse blocks (repetitive lines) store small filters.
const FOLD_WHILE_FILL_PER_MILLE: u64 = 125;
/// The smallest filter stored (512 bytes).
const MIN_BITS: usize = 1 << 12;

/// The hash of one gram; a filter of `2^k` bits uses its low `k` bits, so a
/// filter folded in half (upper half OR-ed into the lower) stays valid.
#[inline]
fn hash(gram: u32) -> u32 {
    ((u64::from(gram)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 29) as u32
}

/// Calls `f` with each 4-byte gram of `bytes` (none if shorter).
#[inline]
fn grams(bytes: &[u8], mut f: impl FnMut(u32)) {
    if bytes.len() < GRAM {
        return;
    }
    let mut g = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
    for &b in &bytes[GRAM - 1..] {
        g = (g << 8) | u32::from(b);
        f(g);
    }
}

/// The bits a query's grams set: a block may hold the text only if its filter
/// has every one of them. `None` for texts too short to have a gram.
pub(crate) fn query_hashes(text: &str) -> Option<Vec<u32>> {
    let mut hs = Vec::new();
    grams(text.as_bytes(), |g| hs.push(hash(g)));
    hs.sort_unstable();
    hs.dedup();
    (!hs.is_empty()).then_some(hs)
}

/// Whether a stored filter (a power-of-two number of bytes) has every bit of
/// `hashes`. A filter of another size is not ours: it keeps the block.
pub(crate) fn may_contain(filter: &[u8], hashes: &[u32]) -> bool {
    let bits = filter.len() * 8;
    if !bits.is_power_of_two() {
        return true;
    }
    let mask = (bits - 1) as u32;
    hashes.iter().all(|h| {
        let i = (h & mask) as usize;
        filter[i / 8] & (1 << (i % 8)) != 0
    })
}

/// The block being filled: every row after the last stored block.
struct OpenBlock {
    first_id: i64,
    last_id: i64,
    min_ts: i64,
    max_ts: i64,
    lines: u32,
    /// A fixed length, so that indexing by a masked hash needs no bounds check.
    bits: Box<[u64; MAX_BITS / 64]>,
}

impl OpenBlock {
    fn new() -> OpenBlock {
        OpenBlock {
            first_id: 0,
            last_id: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            lines: 0,
            bits: Box::new([0u64; MAX_BITS / 64]),
        }
    }

    fn clear(&mut self) {
        self.lines = 0;
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        self.bits.fill(0);
    }

    #[inline]
    fn add(&mut self, id: i64, ts_ms: i64, line: &str) {
        if self.lines == 0 {
            self.first_id = id;
        }
        self.last_id = id;
        self.lines += 1;
        self.min_ts = self.min_ts.min(ts_ms);
        self.max_ts = self.max_ts.max(ts_ms);
        let bits = &mut self.bits;
        grams(line.as_bytes(), |g| {
            let h = hash(g) as usize & (MAX_BITS - 1);
            bits[h >> 6] |= 1 << (h & 63);
        });
    }

    /// The filter as stored: folded while sparse, little-endian bytes.
    fn filter(&self) -> Vec<u8> {
        let mut words = self.bits.to_vec();
        while words.len() * 64 > MIN_BITS {
            let half = words.len() / 2;
            let ones: u64 = words[..half]
                .iter()
                .zip(&words[half..])
                .map(|(a, b)| u64::from((a | b).count_ones()))
                .sum();
            if ones * 1000 > (half as u64 * 64) * FOLD_WHILE_FILL_PER_MILLE {
                break;
            }
            let (lo, hi) = words.split_at_mut(half);
            for (a, b) in lo.iter_mut().zip(hi.iter()) {
                *a |= b;
            }
            words.truncate(half);
        }
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// The writer's side of the index: the open block, and whether it matches the
/// table (after a failed batch or a deletion it is rebuilt before use).
pub(crate) struct TextIndex {
    open: OpenBlock,
    /// False until the open block has been read back from the table; while
    /// false no block is stored (lines added meanwhile are read back too).
    valid: bool,
}

impl TextIndex {
    pub(crate) fn new() -> TextIndex {
        TextIndex {
            open: OpenBlock::new(),
            valid: false,
        }
    }

    /// The open block no longer matches the table (its batch was rolled back).
    pub(crate) fn invalidate(&mut self) {
        self.valid = false;
    }

    /// Before a batch's first line: rebuilds the open block from the table if
    /// needed; `Ok(true)` when it did. On failure it stays invalid, the batch's
    /// lines are stored without it (a search scans them from the table, as it
    /// does the open block) and the next batch tries again.
    pub(crate) fn ensure(&mut self, conn: &Connection) -> rusqlite::Result<bool> {
        if self.valid {
            return Ok(false);
        }
        self.reload(conn).map(|()| true)
    }

    /// Reads every row after the last stored block into the open block.
    fn reload(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.open.clear();
        let last_block: Option<i64> = conn
            .query_row(LAST_BLOCK_SQL, [], |r| r.get(0))
            .optional()?;
        let prefix: Option<i64> = conn.query_row(PREFIX_SQL, [], |r| r.get(0)).optional()?;
        let after = last_block.unwrap_or(0).max(prefix.unwrap_or(0));
        let mut stmt =
            conn.prepare("SELECT id, ts_ms, line FROM logs WHERE id > ?1 ORDER BY id")?;
        let mut rows = stmt.query([after])?;
        while let Some(r) = rows.next()? {
            self.open.add(r.get(0)?, r.get(1)?, r.get_ref(2)?.as_str()?);
        }
        self.valid = true;
        Ok(())
    }

    /// A line was inserted with rowid `id` in `txn`; stores the open block in
    /// the same transaction once it is full.
    #[inline]
    pub(crate) fn add(
        &mut self,
        txn: &Connection,
        id: i64,
        ts_ms: i64,
        line: &str,
    ) -> rusqlite::Result<()> {
        if !self.valid {
            return Ok(());
        }
        self.open.add(id, ts_ms, line);
        if self.open.lines >= BLOCK_LINES {
            let b = &self.open;
            txn.prepare_cached(
                "INSERT INTO log_blocks (first_id, last_id, min_ts, max_ts, lines, filter) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![b.first_id, b.last_id, b.min_ts, b.max_ts, b.lines, b.filter()])?;
            self.open.clear();
        }
        Ok(())
    }

    /// After retention deleted every log line older than `before` in `txn`:
    /// deletes the blocks it emptied and those whose tail was deleted, then
    /// rebuilds the open block. (The size cap, which deletes the oldest ids,
    /// calls [`reconcile`] and leaves the rebuild to the next batch.)
    pub(crate) fn after_prune(&mut self, txn: &Connection, before: i64) -> rusqlite::Result<()> {
        self.valid = false;
        txn.execute("DELETE FROM log_blocks WHERE max_ts < ?1", [before])?;
        reconcile(txn)?;
        self.reload(txn)
    }
}

/// Keeps the invariant after rows were deleted: no block or prefix may claim
/// a rowid past the newest remaining row (the next insert may reuse it), and
/// blocks or a prefix holding no row any more go.
pub(crate) fn reconcile(txn: &Connection) -> rusqlite::Result<()> {
    let (min, max): (Option<i64>, Option<i64>) = txn.query_row(
        "SELECT (SELECT MIN(id) FROM logs), (SELECT MAX(id) FROM logs)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match (min, max) {
        (Some(min), Some(max)) => {
            txn.execute(
                "DELETE FROM log_blocks WHERE last_id < ?1 OR last_id > ?2",
                [min, max],
            )?;
            txn.execute("DELETE FROM log_index_prefix WHERE last_id < ?1", [min])?;
            txn.execute(
                "UPDATE log_index_prefix SET last_id = ?1 WHERE last_id > ?1",
                [max],
            )?;
        }
        _ => {
            txn.execute("DELETE FROM log_blocks", [])?;
            txn.execute("DELETE FROM log_index_prefix", [])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_keeps_every_block_holding_the_text_and_drops_most_others() {
        let mut b = OpenBlock::new();
        for i in 0..BLOCK_LINES as i64 {
            b.add(
                i,
                i,
                &format!(r#"{{"message":"request completed","request_id":"r-{i}-x"}}"#),
            );
        }
        let f = b.filter();
        assert!(f.len().is_power_of_two() && f.len() * 8 >= MIN_BITS && f.len() * 8 <= MAX_BITS);
        for i in 0..BLOCK_LINES {
            let q = format!("r-{i}-x");
            assert!(may_contain(&f, &query_hashes(&q).unwrap()), "{q}");
        }
        assert!(may_contain(&f, &query_hashes("request completed").unwrap()));
        // Texts this block does not hold: nearly all are ruled out.
        let kept = (5000..6000)
            .filter(|i| may_contain(&f, &query_hashes(&format!("r-{i}-x")).unwrap()))
            .count();
        assert!(kept < 50, "{kept} of 1000 absent ids kept");
        assert!(!may_contain(
            &f,
            &query_hashes("Database query failed").unwrap()
        ));
    }

    #[test]
    fn repetitive_blocks_store_small_filters_random_ids_keep_them_wide() {
        let mut same = OpenBlock::new();
        for i in 0..BLOCK_LINES as i64 {
            same.add(i, i, "request completed");
        }
        assert_eq!(same.filter().len() * 8, MIN_BITS);
        let mut hex = OpenBlock::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..BLOCK_LINES as i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            hex.add(i, i, &format!("trace {x:016x}{:016x}", x.rotate_left(21)));
        }
        let f = hex.filter();
        assert!(f.len() * 8 > MIN_BITS, "{} bytes", f.len());
        // A trace id that is not there: 29 grams, at most a few percent full each.
        assert!(!may_contain(
            &f,
            &query_hashes("0123456789abcdef0123456789abcdef").unwrap()
        ));
    }

    #[test]
    fn short_texts_have_no_grams_and_folding_keeps_bits_where_queries_look() {
        assert!(query_hashes("abc").is_none());
        assert!(query_hashes("").is_none());
        assert_eq!(query_hashes("abcd").unwrap().len(), 1);
        // A filter read with fewer bits finds each bit the full one set.
        let mut b = OpenBlock::new();
        b.add(1, 1, "needle in a haystack");
        let folded = b.filter();
        assert_eq!(folded.len() * 8, MIN_BITS);
        assert!(may_contain(&folded, &query_hashes("needle").unwrap()));
        assert!(may_contain(&folded, &query_hashes("haystack").unwrap()));
        assert!(!may_contain(&folded, &query_hashes("pitchfork").unwrap()));
    }
}
