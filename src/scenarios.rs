//! `scenario list | run | bench`: each run gets a fresh environment in its own
//! state directory under `<state>/scenarios/`, kept afterwards for `logs`,
//! `alarms` and the reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use demo_scenario::runner::score;
use demo_scenario::{RunOptions, RunResult, Scenario};

use crate::commands::git_head;

pub fn list() -> Result<()> {
    for s in demo_scenario::all()? {
        println!("{:<18} alarms: {}", s.name, s.expect.alarms.join(", "));
        println!("{:<18} {}", "", s.description.trim());
    }
    Ok(())
}

fn run_dir(state_dir: &Path, name: &str) -> PathBuf {
    let stamp = demo_runtime::now_ms();
    state_dir.join("scenarios").join(format!("{name}-{stamp}"))
}

fn run_one(
    state_dir: &Path,
    scenario: &Scenario,
    time_scale: Option<f64>,
    quiet: bool,
) -> Result<RunResult> {
    let dir = run_dir(state_dir, &scenario.name);
    let progress: Arc<dyn Fn(&str) + Send + Sync> = if quiet {
        Arc::new(|_: &str| {})
    } else {
        Arc::new(|line: &str| eprintln!("{line}"))
    };
    let opts = RunOptions {
        state_dir: dir.clone(),
        app_binary: std::env::current_exe()?,
        binary_args: vec!["app".into()],
        time_scale,
        git_sha: git_head(),
        investigator: Some(Arc::new(crate::investigate::ScenarioInvestigator {
            time_scale: time_scale.unwrap_or(scenario.time_scale),
        })),
        progress,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt
        .block_on(demo_scenario::run(scenario, opts))
        .map_err(|e| anyhow!("scenario {}: {e}", scenario.name))?;
    if !quiet {
        eprintln!("{}: state kept in {}", scenario.name, dir.display());
    }
    Ok(result)
}

fn print_result(r: &RunResult) {
    println!(
        "scenario {} (time scale {}x, {:.0} s)",
        r.scenario, r.time_scale, r.duration_s
    );
    for (a, at) in &r.fired {
        println!("  fired      {a} at {at}");
    }
    for a in &r.missing {
        println!("  MISSING    {a} never reached ALARM");
    }
    for a in &r.recovered {
        println!("  recovered  {a} back to OK");
    }
    for a in &r.not_recovered {
        println!("  STUCK      {a} did not return to OK");
    }
    for a in &r.other_alarms {
        println!("  also fired {a}");
    }
    println!("  traffic    {}", r.traffic);
    for f in &r.findings {
        for p in &f.report_paths {
            println!("  file       {}", p.display());
        }
        println!(
            "  report     {} for {}: {} (written {} ms after the alarm)",
            f.investigation_id,
            f.alarm,
            f.hypotheses
                .first()
                .map(|h| format!(
                    "{} {} ({:.0} %)",
                    h.0,
                    h.1.as_deref().unwrap_or(""),
                    h.2 * 100.0
                ))
                .unwrap_or_else(|| "no hypothesis".into()),
            f.latency_ms
        );
    }
}

pub fn run(state_dir: &Path, name: &str, time_scale: Option<f64>, json: bool) -> Result<()> {
    let scenario = demo_scenario::find(name)?;
    let r = run_one(state_dir, &scenario, time_scale, false)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_result(&r);
    }
    if !r.passed_alarms {
        bail!("scenario {name}: expected alarms did not fire and clear");
    }
    Ok(())
}

pub fn bench(state_dir: &Path, time_scale: Option<f64>, only: &[String], json: bool) -> Result<()> {
    let mut scenarios = demo_scenario::all()?;
    if !only.is_empty() {
        for o in only {
            demo_scenario::find(o)?;
        }
        scenarios.retain(|s| only.contains(&s.name));
    }
    let mut rows = Vec::new();
    println!(
        "{:<18} {:<40} {:<40} {:>5} {:>5} {:>9} {:>7}",
        "scenario", "expected", "found", "top1", "top3", "report ms", "alarms"
    );
    for s in &scenarios {
        let r = run_one(state_dir, s, time_scale, true)?;
        let expected = format!(
            "{} {}",
            r.expected.category,
            r.expected.entity.as_deref().unwrap_or("")
        );
        let (found, top1, top3, latency) = match r.primary() {
            Some(f) => {
                let (t1, t3) = score(f, &r.expected);
                let also_ok = s.expect.also.iter().all(|a| score(f, a).1);
                let found = f
                    .hypotheses
                    .first()
                    .map(|h| format!("{} {}", h.0, h.1.as_deref().unwrap_or("")))
                    .unwrap_or_default();
                (found, t1, t3 && also_ok, Some(f.latency_ms))
            }
            None => ("(no investigation)".to_string(), false, false, None),
        };
        println!(
            "{:<18} {:<40} {:<40} {:>5} {:>5} {:>9} {:>7}",
            s.name,
            expected,
            found,
            if top1 { "yes" } else { "no" },
            if top3 { "yes" } else { "no" },
            latency.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
            if r.passed_alarms { "ok" } else { "FAILED" }
        );
        rows.push(serde_json::json!({
            "scenario": s.name, "expected": expected, "found": found, "top1": top1, "top3": top3,
            "alarm_to_report_ms": latency, "alarms_ok": r.passed_alarms, "result": r,
        }));
    }
    let n = rows.len().max(1) as f64;
    let top1 = rows.iter().filter(|r| r["top1"] == true).count();
    let top3 = rows.iter().filter(|r| r["top3"] == true).count();
    let alarms_ok = rows.iter().filter(|r| r["alarms_ok"] == true).count();
    let mut lat: Vec<i64> = rows
        .iter()
        .filter_map(|r| r["alarm_to_report_ms"].as_i64())
        .collect();
    lat.sort_unstable();
    println!(
        "\ntotal: top-1 {top1}/{} ({:.0} %), top-3 {top3}/{} ({:.0} %), alarms fired and cleared {alarms_ok}/{}, median alarm-to-report {} ms",
        rows.len(),
        top1 as f64 / n * 100.0,
        rows.len(),
        top3 as f64 / n * 100.0,
        rows.len(),
        lat.get(lat.len() / 2)
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into())
    );
    if json {
        std::fs::write(
            state_dir.join("bench.json"),
            serde_json::to_vec_pretty(&rows)?,
        )?;
    }
    Ok(())
}
