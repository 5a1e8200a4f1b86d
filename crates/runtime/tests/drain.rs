//! The drain `up` runs on each task stream, against a store whose writer
//! cannot keep up: it stops reading at the writer's backlog limit (the
//! task's output waits in its pipe), resumes when the writer catches up, and
//! every line it was given is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use demo_model::events::Stream;
use demo_runtime::task::{Pipeline, drain};
use demo_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_pauses_at_the_writers_backlog_limit_and_loses_nothing() {
    const LINES: u64 = 5_000;
    const LIMIT: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = store.writer();
    writer.set_log_backlog_limit(LIMIT);
    let pipeline = Pipeline::new(
        writer.clone(),
        cloudwatch::FilterPattern::parse(r#"{ $.level = "ERROR" }"#).unwrap(),
    );
    let input: Vec<u8> = (0..LINES)
        .flat_map(|i| {
            let level = if i % 10 == 0 { "ERROR" } else { "INFO" };
            format!("{{\"level\":\"{level}\",\"message\":\"request completed\",\"n\":{i}}}\n")
                .into_bytes()
        })
        .collect();
    // A slow disk: another connection holds the write lock, so the writer's
    // first batch waits (its busy timeout is 10 s) and nothing is committed.
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(drain(
        std::io::Cursor::new(input),
        "task-0001".into(),
        Stream::Stdout,
        pipeline.clone(),
        read.clone(),
    ));
    // The drain reads up to the limit and stops there.
    let deadline = Instant::now() + Duration::from_secs(5);
    while read.load(Ordering::Relaxed) < LIMIT {
        assert!(Instant::now() < deadline, "the drain read {read:?} lines");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        read.load(Ordering::Relaxed),
        LIMIT,
        "reading stopped at the limit"
    );
    assert!(!task.is_finished());
    assert!(writer.health().backlog_records <= LIMIT);
    // The disk comes back: the drain resumes and reads to the end.
    other.execute_batch("COMMIT").unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the drain finishes once the writer catches up")
        .unwrap();
    let w = writer.clone();
    tokio::task::spawn_blocking(move || w.flush())
        .await
        .unwrap();
    let h = writer.health();
    assert_eq!(read.load(Ordering::Relaxed), LINES);
    assert_eq!(pipeline.matches.load(Ordering::Relaxed), LINES / 10);
    assert_eq!(h.lost_records, 0, "{h:?}");
    assert!(h.log_readers_waited_ms >= 300, "{h:?}");
    assert!(h.peak_backlog_records <= LIMIT + 1024, "{h:?}");
    let stored: u64 = store
        .reader()
        .unwrap()
        .log_counts()
        .unwrap()
        .iter()
        .map(|(_, c)| c)
        .sum();
    assert_eq!(stored, LINES);
}
