//! Investigation latency for a big window: 1 hour of logs from 2 tasks at
//! 100 req/s each (720,000 access lines, plus health checks and fault lines)
//! and the matching metrics, at time scale 1 (60 s periods, so the 60-period
//! analysis range is the whole hour). A bad configuration deployment near
//! the end; git correlation against a throwaway repository.
//!
//! Measures transition → report written (JSON, Markdown, HTML) through the
//! public `Investigator::investigate`, then repeats the analysis + write 4
//! more times to show the spread. Then how the cost grows:
//!
//! * with the window: the same store investigated at time scales 1, 2 and 4
//!   (the analysis range is 60 alarm periods: 1 h, 30 min, 15 min);
//! * with the store: the same hour inside a store that also holds 5 or 23
//!   hours before it (access lines at `HISTORY_LINES_PER_S`, every series of
//!   the hour at one sample per `HISTORY_SAMPLE_EVERY_S`), size cap off.
//!
//! ```text
//! cargo bench -p demo-investigator --bench investigate
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use demo_model::Catalog;
use demo_model::events::{LogRecord, MetricSample, SERVICE_DIMENSION, Stream, Window};
use investigator::sources::local_store::LocalStore;
use investigator::sources::{
    CodeSource, LogEntry, LogSource, MetricSource, SeriesKey, SourceResult, Sources, git::Git,
};
use investigator::{Investigator, InvestigatorConfig};

const SCENARIO: &str = r#"
name: bench_hour
alarm: error-count-high
time_scale: 1
duration_s: 3700
alarm_after_s: 3600
rps: 200
use_repo: true
deployments:
  - {id: d-0001, at_s: 0, finish_s: 30, sha: BASE}
  - id: d-0002
    at_s: 3590
    finish_s: 3620
    sha: BAD
    previous: d-0001
    changes: [{key: QUOTE_ENGINE, from: v1, to: v2}]
faults:
  - {kind: error_rate, route: /api/quote, rate: 0.6, message: "Quote engine v2 rejected item", from_s: 3600, deployment: d-0002}
expect:
  top1: code_change
"#;

/// Access lines a second written into the hours before the incident's hour.
const HISTORY_LINES_PER_S: i64 = 40;
/// One sample of every series of the hour every this many seconds before it.
const HISTORY_SAMPLE_EVERY_S: i64 = 10;

fn main() {
    let s: common::Scenario = serde_yaml_ng::from_str(SCENARIO).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&repo).unwrap();
    let t = Instant::now();
    let (store, g) = common::build(&s, &state, Some(&repo));
    store.writer().set_size_cap(None).unwrap();
    eprintln!(
        "setup: {} log lines written in {:.1} s; alarm {} at +{} s",
        g.lines,
        t.elapsed().as_secs_f64(),
        g.transition.alarm,
        (g.transition.at_ms - common::T0) / 1000
    );
    let cfg = InvestigatorConfig {
        state_dir: state.clone(),
        repo: Some(repo.clone()),
        catalog: Catalog::embedded(),
        time_scale: s.time_scale,
    };
    let inv = Investigator::new(cfg.clone(), store.writer()).unwrap();
    let t = Instant::now();
    let out = inv.investigate(&g.transition).unwrap();
    let first = t.elapsed();
    assert_eq!(out.top.category.as_str(), "code_change", "{}", out.summary);
    let mut times = vec![first.as_secs_f64()];
    let mut lines = 0;
    for i in 0..4 {
        let (secs, n) = run_once(
            &state,
            &repo,
            &cfg.catalog,
            cfg.time_scale,
            &g.transition,
            i,
        );
        lines = n;
        times.push(secs);
    }
    let series = store
        .reader()
        .unwrap()
        .series(Window::new(common::T0, common::T0 + 3_700_000))
        .unwrap();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "investigation of {} log lines: first {:.3} s (through Investigator::investigate), median of 5 {:.3} s, max {:.3} s; top: {} {:?} {:.2}",
        lines, times[0], sorted[2], sorted[4], out.top.category, out.top.entity, out.top.confidence
    );

    same_report_through_old_reads(&state, &repo, &cfg.catalog, &g.transition);
    where_time_goes(
        "1 h store",
        &state,
        &g.transition,
        &cfg.catalog.health_check.path,
    );
    if std::env::var("INVESTIGATE_BENCH_GROWTH").as_deref() == Ok("0") {
        return;
    }

    println!("\n| analysis window (alarm period) | log lines read | median of 3 (s) | vs 60 min |");
    println!("|---|---:|---:|---:|");
    let mut hour = 0.0;
    for (period_s, label) in [(60, "60 min"), (30, "30 min"), (15, "15 min")] {
        // The analysis range is a fixed number of the alarm's periods, taken
        // from the period the transition recorded.
        let mut tr = g.transition.clone();
        assert!(
            tr.reason_data.get("period_ms").is_some(),
            "reason data has period_ms"
        );
        tr.reason_data["period_ms"] = serde_json::json!(period_s * 1000);
        let (secs, n) = median3(|i| run_once(&state, &repo, &cfg.catalog, 1.0, &tr, i));
        if period_s == 60 {
            hour = secs;
        }
        println!(
            "| {label} ({period_s} s) | {n} | {secs:.3} | {:.2} |",
            secs / hour
        );
    }

    // The same hour inside bigger stores: the same scenario (its own
    // repository, same commits' content), then hours of history before it.
    drop(inv);
    drop(store);
    println!(
        "\n| store holds | log lines in store | database MiB | median of 3 (s) | vs 1 h store |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| 1 h | {} | {} | {hour:.3} | 1.00 |",
        g.lines,
        db_mib(&state)
    );
    for extra_h in [5i64, 23] {
        let big = dir.path().join(format!("state-{}h", extra_h + 1));
        let big_repo = dir.path().join(format!("repo-{}h", extra_h + 1));
        std::fs::create_dir_all(&big_repo).unwrap();
        let t = Instant::now();
        let (big_store, big_g) = common::build(&s, &big, Some(&big_repo));
        drop(big_store);
        // After the hour (a store whose cap is off: nothing pruned).
        let added = fill_history(&big, extra_h, &series);
        eprintln!(
            "the hour, then history: {added} lines and {extra_h} h of samples, written in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let (secs, n) =
            median3(|i| run_once(&big, &big_repo, &cfg.catalog, 1.0, &big_g.transition, i));
        assert_eq!(n, lines, "the same hour is read");
        println!(
            "| {} h | {} | {} | {secs:.3} | {:.2} |",
            extra_h + 1,
            big_g.lines + added,
            db_mib(&big),
            secs / hour
        );
        // The same split as the 1 h store's, to see which part grows.
        where_time_goes(
            &format!("{} h store", extra_h + 1),
            &big,
            &big_g.transition,
            &cfg.catalog.health_check.path,
        );
    }
}

/// Where the time of the hour goes: SQLite stepping alone (`scan_logs` with
/// an empty callback), the log analysis, and the whole investigation.
fn where_time_goes(
    label: &str,
    state: &Path,
    tr: &demo_model::events::AlarmTransition,
    health_path: &str,
) {
    use investigator::analyze::{logs, metrics, series::Grid};
    let src = LocalStore::open(state).unwrap();
    let start = tr.at_ms - 3_600_000;
    let baseline = Window::new(start, tr.at_ms - 300_000);
    let incident = Window::new(tr.at_ms - 300_000, tr.at_ms);
    let grid = Grid {
        start_ms: start,
        bucket_ms: 30_000,
        len: 120,
    };
    let scan = median3(|_| {
        let t = Instant::now();
        let n = src
            .reader()
            .scan_logs(Window::new(start, tr.at_ms), |_| {})
            .unwrap();
        (t.elapsed().as_secs_f64(), n)
    });
    let unordered = median3(|_| {
        let t = Instant::now();
        let n = src
            .reader()
            .scan_logs_unordered(Window::new(start, tr.at_ms), |_, _| {})
            .unwrap();
        (t.elapsed().as_secs_f64(), n)
    });
    let metrics = median3(|_| {
        let t = Instant::now();
        let key = SeriesKey::new("DevOpsAgentDemo", "ErrorCount", SERVICE_DIMENSION);
        let m = metrics::analyze(&src, grid, 60_000, "DevOpsAgentDemo", &key).unwrap();
        (t.elapsed().as_secs_f64(), m.series.len() as u64)
    });
    let analyze = median3(|_| {
        let t = Instant::now();
        let a = logs::analyze(&src, baseline, incident, grid, health_path).unwrap();
        (t.elapsed().as_secs_f64(), a.lines)
    });
    println!(
        "\nwhere the hour's time goes ({label}, median of 3): scan_logs alone {:.3} s ({} lines), logs::analyze {:.3} s ({} lines)",
        scan.0, scan.1, analyze.0, analyze.1
    );
    println!(
        "scan_logs_unordered alone {:.3} s ({} lines), metrics::analyze {:.3} s ({} series)",
        unordered.0, unordered.1, metrics.0, metrics.1
    );
}

/// The store read the way it was before whole-window reads: logs only
/// through the ordered `scan`, metrics series by series.
struct OldReads<'a>(&'a LocalStore);

impl LogSource for OldReads<'_> {
    fn name(&self) -> &str {
        LogSource::name(self.0)
    }
    fn scan(&self, w: Window, f: &mut dyn FnMut(LogEntry<'_>)) -> SourceResult<u64> {
        LogSource::scan(self.0, w, f)
    }
    fn trace_ids(&self, w: Window, message: &str, limit: usize) -> SourceResult<Vec<String>> {
        self.0.trace_ids(w, message, limit)
    }
}

impl MetricSource for OldReads<'_> {
    fn name(&self) -> &str {
        MetricSource::name(self.0)
    }
    fn series(&self, w: Window) -> SourceResult<Vec<SeriesKey>> {
        self.0.series(w)
    }
    fn samples(&self, key: &SeriesKey, w: Window) -> SourceResult<Vec<MetricSample>> {
        self.0.samples(key, w)
    }
}

/// The hour's report through the old reads and through the store's own is
/// the same, but for its duration: the speed-up changes no result.
fn same_report_through_old_reads(
    state: &Path,
    repo: &Path,
    catalog: &Catalog,
    tr: &demo_model::events::AlarmTransition,
) {
    let store_src = LocalStore::open(state).unwrap();
    let old = OldReads(&store_src);
    let git = Git::new(repo);
    let report = |logs: &dyn LogSource, metrics: &dyn MetricSource| {
        let sources = Sources {
            logs,
            metrics,
            deployments: &store_src,
            tasks: &store_src,
            code: Some(&git as &dyn CodeSource),
        };
        let t = Instant::now();
        let mut r = investigator::investigate::investigate(&sources, catalog, 1.0, tr, "same", 0);
        let secs = t.elapsed().as_secs_f64();
        r.stats.duration_ms = 0;
        (serde_json::to_string(&r).unwrap(), secs)
    };
    let (new, new_s) = report(&store_src, &store_src);
    let (old, old_s) = report(&old, &old);
    assert_eq!(new, old, "the report through the old reads differs");
    println!(
        "\nsame report ({} bytes of JSON) through the old reads ({old_s:.3} s) and the store's whole-window reads ({new_s:.3} s)",
        new.len()
    );
}

/// One investigation through the sources (analysis + report written):
/// seconds and log lines read.
fn run_once(
    state: &Path,
    repo: &Path,
    catalog: &Catalog,
    time_scale: f64,
    transition: &demo_model::events::AlarmTransition,
    i: usize,
) -> (f64, u64) {
    let t = Instant::now();
    let store_src = LocalStore::open(state).unwrap();
    let git = Git::new(repo);
    let sources = Sources {
        logs: &store_src,
        metrics: &store_src,
        deployments: &store_src,
        tasks: &store_src,
        code: Some(&git as &dyn CodeSource),
    };
    let id = format!("bench-{time_scale}-{i}");
    let mut r =
        investigator::investigate::investigate(&sources, catalog, time_scale, transition, &id, 0);
    r.id = id;
    investigator::write_report(state, &r).unwrap();
    (t.elapsed().as_secs_f64(), r.stats.log_lines)
}

fn median3(mut f: impl FnMut(usize) -> (f64, u64)) -> (f64, u64) {
    let mut runs: Vec<(f64, u64)> = (0..3).map(&mut f).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[1]
}

fn db_mib(state: &Path) -> u64 {
    ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(state.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>()
        >> 20
}

/// Writes `hours` of history before the bench's hour into the store at
/// `state` (size cap off): access lines and samples of every series of the hour.
fn fill_history(state: &Path, hours: i64, series: &[(String, String, String)]) -> u64 {
    let store = demo_store::Store::open(state).unwrap();
    let w = store.writer();
    w.set_size_cap(None).unwrap();
    let from = common::T0 - hours * 3_600_000;
    let mut lines = 0u64;
    for sec in 0..hours * 3600 {
        let ts = from + sec * 1000;
        for i in 0..HISTORY_LINES_PER_S {
            let task = if i % 2 == 0 { "t-a" } else { "t-b" };
            let line = format!(
                r#"{{"level":"INFO","message":"request completed","method":"GET","route":"/api/items","path":"/api/items","status":200,"latency_ms":3,"task_id":"{task}","request_id":"h-{sec}-{i}"}}"#
            );
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            w.log(LogRecord::from_parsed(
                ts + i * 1000 / HISTORY_LINES_PER_S,
                task,
                Stream::Stdout,
                line,
                Some(&json),
            ));
            lines += 1;
        }
        if sec % HISTORY_SAMPLE_EVERY_S == 0 {
            for (namespace, name, dimension) in series {
                w.metric(MetricSample {
                    ts_ms: ts,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    dimension: dimension.clone(),
                    value: 1.0,
                    count: 1.0,
                });
            }
        }
    }
    w.flush();
    lines
}
