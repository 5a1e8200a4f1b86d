//! What keeps the store bounded whatever the tasks write: a size cap beside
//! retention by time (oldest log lines and metric samples go first, each
//! pruning reported), a hard limit at twice the cap past which writes fail
//! loudly instead of filling the disk, and a length cap on the text of each
//! log row (a request path of 60 KB must not cost 60 KB per access log line).
//!
//! Deployments, alarm transitions, task events and investigations are never
//! pruned by size: they are small and they are the history the investigator
//! relies on.

use rusqlite::Connection;

/// Default size cap of a state database.
pub const DEFAULT_SIZE_CAP: u64 = 1 << 30;
/// Pruning stops once the database uses this share of its cap.
const PRUNE_TO_PERCENT: u64 = 90;
/// The database may not grow past this multiple of its cap (SQLite `max_page_count`).
const HARD_LIMIT_FACTOR: u64 = 2;

/// Longest raw log line stored; the rest is replaced by a marker.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Longest message stored.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024;
/// Longest route (request path or template) stored.
pub const MAX_ROUTE_BYTES: usize = 256;

/// Cuts `s` to at most `max` bytes (on a character boundary) plus a marker
/// saying how much was cut. Returns whether it cut.
pub fn cap_text(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("…[{cut} bytes cut]"));
    true
}

/// Bytes the database holds in live pages (free pages are reused, not counted).
pub fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Applies the hard limit belonging to `cap` (none: SQLite's own maximum).
pub fn set_hard_limit(conn: &Connection, cap: Option<u64>) -> rusqlite::Result<()> {
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages = match cap {
        Some(cap) => (cap.saturating_mul(HARD_LIMIT_FACTOR) / size.max(1) as u64).max(1),
        None => 0xFFFF_FFFE,
    };
    // SQLite never sets it below the current size; that is fine: the next write fails.
    let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
        r.get(0)
    })?;
    Ok(())
}

/// What one enforcement of the cap removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub logs: u64,
    pub samples: u64,
    pub used_before: u64,
    pub used_after: u64,
    /// Newest timestamp removed.
    pub up_to_ms: i64,
}

/// If the database uses more than `cap`, deletes the oldest log lines and
/// samples (a tenth of each table at a time) until it uses at most 90 % of it
/// or nothing prunable is left. `None` when it was under the cap.
pub fn enforce_cap(conn: &mut Connection, cap: u64) -> rusqlite::Result<Option<Pruned>> {
    let used_before = used_bytes(conn)?;
    if used_before <= cap {
        return Ok(None);
    }
    let target = cap / 100 * PRUNE_TO_PERCENT;
    let mut p = Pruned {
        logs: 0,
        samples: 0,
        used_before,
        used_after: used_before,
        up_to_ms: i64::MIN,
    };
    while p.used_after > target {
        // Counts then deletes: IMMEDIATE for the same reason as a batch.
        let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let logs: i64 = txn.query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0))?;
        let samples: i64 = txn.query_row("SELECT COUNT(*) FROM metrics", [], |r| r.get(0))?;
        if logs + samples == 0 {
            break;
        }
        let take_logs = if logs > 0 { (logs / 10).max(100) } else { 0 };
        let take_samples = if samples > 0 {
            (samples / 10).max(100)
        } else {
            0
        };
        let newest: Option<i64> = txn.query_row(
            "SELECT MAX(ts) FROM (
                 SELECT MAX(ts_ms) AS ts FROM (SELECT ts_ms FROM logs ORDER BY id LIMIT ?1)
                 UNION ALL
                 SELECT MAX(ts_ms) FROM (SELECT ts_ms FROM metrics ORDER BY rowid LIMIT ?2))",
            [take_logs, take_samples],
            |r| r.get(0),
        )?;
        let n_logs = txn.execute(
            "DELETE FROM logs WHERE id IN (SELECT id FROM logs ORDER BY id LIMIT ?1)",
            [take_logs],
        )?;
        let n_samples = txn.execute(
            "DELETE FROM metrics WHERE rowid IN (SELECT rowid FROM metrics ORDER BY rowid LIMIT ?1)",
            [take_samples],
        )?;
        crate::textindex::reconcile(&txn)?;
        txn.commit()?;
        p.logs += n_logs as u64;
        p.samples += n_samples as u64;
        p.up_to_ms = p.up_to_ms.max(newest.unwrap_or(i64::MIN));
        p.used_after = used_bytes(conn)?;
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_text_cuts_on_a_character_boundary_and_says_how_much() {
        let mut s = "é".repeat(10); // 20 bytes
        assert!(cap_text(&mut s, 5));
        assert_eq!(s, "éé…[16 bytes cut]");
        let mut short = "abc".to_string();
        assert!(!cap_text(&mut short, 3));
        assert_eq!(short, "abc");
    }
}
