//! The log pipeline's own ceiling, apart from the load that feeds it: TASKS
//! child processes each write LINES `demo-app`-shaped JSON lines (access
//! lines, 1 in 100 an ERROR) to their stdout as fast as a pipe takes them,
//! and each stdout goes through the drain `up` runs on a task's output
//! (`demo_runtime::task::drain`: read, parse, metric filter, `Writer::log`)
//! into a store, on a tokio runtime shaped like `up`'s. Timed from the first
//! spawn until the writer has committed the last line; then the lines stored
//! are counted back and the filter's matches compared with the errors
//! written. Exits non-zero if a line is lost or miscounted.
//!
//! ```text
//! cargo run --release -p demo-runtime --example drain -- [TASKS=2] [LINES=1000000]
//! ```
//!
//! Generating a line costs a copy: each child cycles through 4,000 distinct
//! lines formatted before the clock starts, so almost all the CPU measured is
//! the pipeline's. Past the pipeline's ceiling the pipes fill and the
//! children's writes block (the way a task's logging blocks on a full
//! stdout), and what the drain has read but the writer has not yet committed
//! waits in the writer's queue: the peak backlog printed.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use demo_model::events::Stream;
use demo_runtime::task::{Pipeline, drain};
use demo_store::Store;

/// Distinct lines a child cycles through.
const POOL: u64 = 4000;
/// One line in this many is an ERROR (what the catalogue's filter counts).
const ERROR_EVERY: u64 = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("generate") {
        let n = number(args.get(1), "LINES", 0);
        let task = args.get(2).cloned().unwrap_or_else(|| "task-0001".into());
        generate(n, &task);
        return;
    }
    let tasks = number(args.first(), "TASKS", 2);
    let lines = number(args.get(1), "LINES", 1_000_000);
    if tasks == 0 || lines == 0 {
        fail("TASKS and LINES must be at least 1");
    }
    measure(tasks, lines);
}

fn number(arg: Option<&String>, what: &str, default: u64) -> u64 {
    arg.map_or(default, |s| {
        s.parse()
            .unwrap_or_else(|_| fail(&format!("{what} {s:?}: expected a whole number")))
    })
}

fn fail(msg: &str) -> ! {
    eprintln!("drain: {msg}");
    eprintln!("usage: drain [TASKS=2] [LINES=1000000]");
    std::process::exit(2)
}

/// The line with index `i` of a task's pool.
fn line(task: &str, i: u64) -> String {
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let (level, status, route) = if i % ERROR_EVERY == ERROR_EVERY - 1 {
        ("ERROR", 500, "/api/quote")
    } else {
        ("INFO", 200, "/api/products/:id")
    };
    format!(
        r#"{{"ts":"2027-01-15T08:00:{:02}.{:03}Z","level":"{level}","message":"request completed","service":"demo-app","task_id":"{task}","request_id":"r-{i}-{:08x}","trace_id":"{:016x}{:016x}","span_id":"{:016x}","method":"GET","route":"{route}","path":"/api/products/{}","status":{status},"latency_ms":1.25,"client_ip":"127.0.0.1","user_agent":"wrk"}}"#,
        i % 60,
        i % 1000,
        x as u32,
        x,
        x.rotate_left(17),
        x.rotate_left(31),
        i % 20
    )
}

/// The child: `n` lines from the pool, as fast as stdout takes them.
fn generate(n: u64, task: &str) {
    let pool: Vec<String> = (0..POOL.min(n.max(1)))
        .map(|i| line(task, i) + "\n")
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let start = Instant::now();
    for i in 0..n {
        let l = &pool[(i % POOL) as usize];
        if let Err(e) = out.write_all(l.as_bytes()) {
            eprintln!("generate: stdout: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("generate: stdout: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "{task}: {n} lines written in {:.2} s (writes blocked whenever the pipe was full)",
        start.elapsed().as_secs_f64()
    );
}

fn measure(tasks: u64, lines: u64) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
    let store = Store::open(dir.path()).unwrap_or_else(|e| fail(&format!("store: {e}")));
    let catalog = demo_model::catalog::Catalog::embedded();
    let pattern = catalog
        .metric_filters
        .first()
        .map_or("", |f| f.pattern.as_str());
    let filter = cloudwatch::FilterPattern::parse(pattern)
        .unwrap_or_else(|e| fail(&format!("catalogue metric filter: {e}")));
    let pipeline = Pipeline::new(store.writer(), filter);
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("own path: {e}")));
    // `up` runs on `tokio::runtime::Runtime::new()`: one worker per core.
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let drained = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let read = rt.block_on(async {
        let mut children = Vec::new();
        let mut drains = Vec::new();
        for t in 1..=tasks {
            let id = format!("task-{t:04}");
            let mut child = tokio::process::Command::new(&exe)
                .args(["generate", &lines.to_string(), &id])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| fail(&format!("spawn {}: {e}", exe.display())));
            let out = child.stdout.take().expect("piped stdout");
            drains.push(tokio::spawn(drain(
                out,
                id,
                Stream::Stdout,
                pipeline.clone(),
                drained.clone(),
            )));
            children.push(child);
        }
        for mut c in children {
            let status = c
                .wait()
                .await
                .unwrap_or_else(|e| fail(&format!("wait: {e}")));
            if !status.success() {
                fail(&format!("a generator failed: {status}"));
            }
        }
        for d in drains {
            d.await.unwrap_or_else(|e| fail(&format!("drain: {e}")));
        }
        let read_all = start.elapsed();
        (read_all, pipeline.writer.health().backlog_records)
    });
    let (read_all, backlog_at_end) = read;
    pipeline.writer.flush();
    let secs = start.elapsed().as_secs_f64();
    let health = pipeline.writer.health();
    let written = tasks * lines;
    let stored: u64 = store
        .reader()
        .and_then(|r| r.log_counts())
        .unwrap_or_else(|e| fail(&format!("count: {e}")))
        .iter()
        .map(|(_, c)| c)
        .sum();
    let errors_written = tasks * (lines / ERROR_EVERY);
    let matched = pipeline.matches.load(Ordering::Relaxed);
    println!(
        "{tasks} tasks x {lines} lines: drained in {:.2} s, committed in {:.2} s = {:.0} lines/s end to end; \
         written {written}, drained {}, stored {stored} (lost {}); filter matches {matched} of {errors_written} errors; \
         writer backlog when the last line was read {backlog_at_end}, peak {}; drains paused {:.2} s in total",
        read_all.as_secs_f64(),
        secs,
        written as f64 / secs,
        drained.load(Ordering::Relaxed),
        written.saturating_sub(stored),
        health.peak_backlog_records,
        health.log_readers_waited_ms as f64 / 1000.0,
    );
    if stored != written || matched != errors_written || health.lost_records != 0 {
        eprintln!("drain: lines lost or miscounted");
        std::process::exit(1);
    }
}
