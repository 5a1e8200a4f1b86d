//! Investigation latency for a big window: 1 hour of logs from 2 tasks at
//! 100 req/s each (720,000 access lines, plus health checks and fault lines)
//! and the matching metrics, at time scale 1 (60 s periods, so the 60-period
//! analysis range is the whole hour). A bad configuration deployment near
//! the end; git correlation against a throwaway repository.
//!
//! Measures transition → report written (JSON, Markdown, HTML) through the
//! public `Investigator::investigate`, then repeats the analysis + write 4
//! more times to show the spread. Run:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-inv cargo bench -p demo-investigator --bench investigate
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use demo_model::Catalog;
use investigator::sources::local_store::LocalStore;
use investigator::sources::{CodeSource, Sources, git::Git};
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

fn main() {
    let s: common::Scenario = serde_yaml_ng::from_str(SCENARIO).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&repo).unwrap();
    let t = Instant::now();
    let (store, g) = common::build(&s, &state, Some(&repo));
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
        let t = Instant::now();
        let store_src = LocalStore::open(&state).unwrap();
        let git = Git::new(&repo);
        let sources = Sources {
            logs: &store_src,
            metrics: &store_src,
            deployments: &store_src,
            tasks: &store_src,
            code: Some(&git as &dyn CodeSource),
        };
        let mut r = investigator::investigate::investigate(
            &sources,
            &cfg.catalog,
            cfg.time_scale,
            &g.transition,
            &format!("bench-{i}"),
            0,
        );
        r.id = format!("bench-{i}");
        investigator::write_report(&state, &r).unwrap();
        lines = r.stats.log_lines;
        times.push(t.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "investigation of {} log lines: first {:.3} s (through Investigator::investigate), median of 5 {:.3} s, max {:.3} s; top: {} {:?} {:.2}",
        lines, times[0], sorted[2], sorted[4], out.top.category, out.top.entity, out.top.confidence
    );
}
