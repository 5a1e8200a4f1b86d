//! Two stores open on one database (the runtime's and an investigation's, as
//! `scenario bench` has them) write at the same time: neither may fail with
//! "database is locked". A batch that read before it wrote (the text index
//! reads its open block first) could not upgrade its read snapshot after the
//! other writer committed, and SQLite fails that at once, without waiting.

use std::thread;

use demo_model::events::{AlarmTransition, LogRecord, Stream};
use demo_store::Store;

#[test]
fn a_store_opened_while_another_writes_can_write_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let wa = a.writer();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lines = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                wa.log(LogRecord::from_line(
                    1_000 + i,
                    "task-0001",
                    Stream::Stdout,
                    format!(r#"{{"level":"INFO","message":"request completed","route":"/","status":200,"n":{i}}}"#),
                ));
                i += 1;
                if i % 20 == 0 {
                    wa.flush();
                }
            }
            wa.flush();
            (wa, i)
        })
    };
    // Each investigation opens its own store and writes one row: its first
    // batch reads back the text index's open block before it writes.
    let mut failures = Vec::new();
    for i in 0..60i64 {
        let b = Store::open(dir.path()).unwrap();
        let t = AlarmTransition {
            id: 0,
            alarm: "cpu-high".into(),
            from: if i % 2 == 0 { "OK" } else { "ALARM" }.into(),
            to: if i % 2 == 0 { "ALARM" } else { "OK" }.into(),
            at_ms: 1_000 + i,
            reason: "Threshold Crossed".into(),
            reason_data: serde_json::json!({"i": i}),
        };
        if let Err(e) = b.writer().transition(t) {
            failures.push(format!("store {i}: {e}"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (wa, written) = lines.join().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    let h = wa.health();
    assert_eq!((h.failed_batches, h.lost_records), (0, 0), "{h:?}");
    let stored: i64 = rusqlite::Connection::open(dir.path().join("state.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, written);
}
