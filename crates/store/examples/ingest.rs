//! How many log lines a second the store's writer commits: N access lines
//! shaped like `demo-app`'s (request and trace ids, route, status, latency)
//! sent through `Writer::log`, timed until `Writer::flush` returns, then
//! counted back. The sender outruns the writer, so this is also what happens
//! past the writer's ceiling: the backlog (`WriterHealth::backlog_records`,
//! shown by `status`) grows, nothing is dropped.
//!
//! ```text
//! cargo run --release -p demo-store --example ingest -- 1000000
//! ```

use std::time::Instant;

use demo_model::events::{LogRecord, Stream};
use demo_store::Store;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args
        .first()
        .map(|a| a.parse().expect("first argument: number of lines"))
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    let w = store.writer();
    let t0: i64 = 1_800_000_000_000;
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let task = if i % 2 == 0 { "task-0001" } else { "task-0002" };
        let line = format!(
            r#"{{"ts":"2027-01-15T08:00:00.{:03}Z","level":"INFO","message":"request completed","service":"demo-app","task_id":"{task}","request_id":"r-{i}-{:08x}","trace_id":"{:016x}{:016x}","span_id":"{:016x}","method":"GET","route":"/api/items","path":"/api/items","status":200,"latency_ms":1.25,"client_ip":"127.0.0.1","user_agent":"wrk"}}"#,
            i % 1000,
            x as u32,
            x,
            x.rotate_left(17),
            x.rotate_left(31)
        );
        let json: serde_json::Value = serde_json::from_str(&line).expect("json");
        w.log(LogRecord::from_parsed(
            t0 + (i as i64) / 100,
            task,
            Stream::Stdout,
            line,
            Some(&json),
        ));
    }
    let sent = start.elapsed();
    let behind = w.health().backlog_records;
    w.flush();
    let peak = w.health().peak_backlog_records;
    let secs = start.elapsed().as_secs_f64();
    let stored: u64 = store
        .reader()
        .expect("reader")
        .log_counts()
        .expect("counts")
        .iter()
        .map(|(_, c)| c)
        .sum();
    let size = std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{} lines: sent in {:.2} s, committed in {:.2} s = {:.0} lines/s; stored {} (lost {}); writer backlog when the last was sent {}, peak {}; database {} MiB",
        n,
        sent.as_secs_f64(),
        secs,
        n as f64 / secs,
        stored,
        n - stored,
        behind,
        peak,
        size >> 20
    );
    assert_eq!(stored, n, "lines lost");
}
