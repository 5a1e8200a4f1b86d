//! `scenario list | run | bench`: each run gets a fresh environment in its own
//! state directory under `<state>/scenarios/`, kept afterwards for `logs`,
//! `alarms` and the reports. Revision builds go to `<state>/builds`, shared
//! by every run. Scenario files may be the shipped ones or any the user
//! writes (`run ./my.yaml`, `bench --dir DIR`); scoring is strict and a miss
//! makes the command fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use demo_model::Catalog;
use demo_scenario::{RunOptions, RunResult, Scenario};

use crate::commands::git_head;
use crate::{CatalogArg, ScenarioCmd};

pub fn command(state_dir: &Path, cmd: ScenarioCmd) -> Result<()> {
    match cmd {
        ScenarioCmd::List { dir, json, catalog } => {
            list(dir.as_deref(), &load_catalog(&catalog)?, json)
        }
        ScenarioCmd::Run {
            scenario,
            time_scale,
            json,
            catalog,
        } => run(
            state_dir,
            &scenario,
            time_scale,
            json,
            load_catalog(&catalog)?,
        ),
        ScenarioCmd::Bench {
            time_scale,
            dir,
            only,
            json,
            catalog,
        } => bench(
            state_dir,
            time_scale,
            dir.as_deref(),
            &only,
            json,
            load_catalog(&catalog)?,
        ),
    }
}

pub fn load_catalog(arg: &CatalogArg) -> Result<Catalog> {
    Ok(match &arg.path {
        Some(p) => Catalog::load(p)?,
        None => Catalog::embedded(),
    })
}

fn scenarios(dir: Option<&Path>, catalog: &Catalog) -> Result<Vec<Scenario>> {
    Ok(match dir {
        Some(d) => demo_scenario::load_dir(d, catalog)?,
        None => demo_scenario::all_with(catalog)?,
    })
}

fn list(dir: Option<&Path>, catalog: &Catalog, json: bool) -> Result<()> {
    let all = scenarios(dir, catalog)?;
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "description": s.description.trim(),
                    "alarms": s.expect.alarms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for s in all {
        println!("{:<28} alarms: {}", s.name, s.expect.alarms.join(", "));
        println!("{:<28} {}", "", s.description.trim());
    }
    Ok(())
}

/// A shipped scenario by name, or a file when the argument names one.
fn resolve(arg: &str, catalog: &Catalog) -> Result<Scenario> {
    let path = Path::new(arg);
    let looks_like_file = arg.ends_with(".yaml") || arg.ends_with(".yml") || arg.contains('/');
    if looks_like_file || path.is_file() {
        return Ok(demo_scenario::load_file(path, catalog)?);
    }
    Ok(demo_scenario::find_with(arg, catalog)?)
}

fn run_dir(state_dir: &Path, name: &str) -> PathBuf {
    let stamp = demo_runtime::now_ms();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join("scenarios").join(format!("{safe}-{stamp}"))
}

fn run_one(
    state_dir: &Path,
    scenario: &Scenario,
    time_scale: Option<f64>,
    catalog: &Catalog,
    quiet: bool,
) -> Result<RunResult> {
    let dir = run_dir(state_dir, &scenario.name);
    let progress: Arc<dyn Fn(&str) + Send + Sync> = if quiet {
        Arc::new(|_: &str| {})
    } else {
        Arc::new(|line: &str| eprintln!("{line}"))
    };
    let repo = crate::investigate::repo().unwrap_or(std::env::current_dir()?);
    let opts = RunOptions {
        state_dir: dir.clone(),
        app_binary: std::env::current_exe()?,
        binary_args: vec!["app".into()],
        time_scale,
        git_sha: git_head(),
        catalog: catalog.clone(),
        build_dir: std::path::absolute(state_dir.join("builds"))?,
        repo,
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

fn hyp(h: &Option<(String, Option<String>, f64)>) -> String {
    match h {
        Some((c, e, s)) => format!("{c} {} ({s:.2})", e.as_deref().unwrap_or("")),
        None => "(no report)".into(),
    }
}

fn print_result(r: &RunResult) {
    println!(
        "scenario {} (time scale {}x, {:.0} s): {}",
        r.scenario,
        r.time_scale,
        r.duration_s,
        if r.passed { "PASSED" } else { "FAILED" }
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
    for s in &r.skipped_steps {
        println!("  SKIPPED    {s}");
    }
    println!("  traffic    {}", r.traffic);
    for f in &r.findings {
        for p in &f.report_paths {
            println!("  file       {}", p.display());
        }
    }
    for s in &r.scores {
        println!(
            "  {:<10} {}: expected {} {}, found {}{}{}{}{}",
            if s.passed() { "ok" } else { "MISS" },
            s.alarm,
            s.expected.category,
            s.expected.entity.as_deref().unwrap_or(""),
            hyp(&s.found),
            s.latency_ms
                .map(|l| format!(", report {l} ms after the alarm"))
                .unwrap_or_default(),
            if s.also_top3 {
                ""
            } else {
                ", a further cause not in the top 3"
            },
            if s.blamed.is_empty() {
                String::new()
            } else {
                format!(", blamed {:?}", s.blamed)
            },
            if s.missing_evidence.is_empty() {
                String::new()
            } else {
                format!(", evidence missing {:?}", s.missing_evidence)
            },
        );
    }
}

pub fn run(
    state_dir: &Path,
    scenario: &str,
    time_scale: Option<f64>,
    json: bool,
    catalog: Catalog,
) -> Result<()> {
    let scenario = resolve(scenario, &catalog)?;
    let r = run_one(state_dir, &scenario, time_scale, &catalog, false)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print_result(&r);
    }
    if !r.passed {
        return Err(crate::commands::Exit::failed(format!(
            "scenario {}: {}",
            r.scenario,
            if r.passed_alarms {
                "the investigation missed (see the scores)"
            } else {
                "expected alarms did not fire and clear"
            }
        )));
    }
    Ok(())
}

pub fn bench(
    state_dir: &Path,
    time_scale: Option<f64>,
    dir: Option<&Path>,
    only: &[String],
    json: bool,
    catalog: Catalog,
) -> Result<()> {
    let mut list = scenarios(dir, &catalog)?;
    if !only.is_empty() {
        let unknown: Vec<&String> = only
            .iter()
            .filter(|o| !list.iter().any(|s| &s.name == *o))
            .collect();
        if !unknown.is_empty() {
            bail!("--only: no scenario named {unknown:?} (see `scenario list`)");
        }
        list.retain(|s| only.contains(&s.name));
    }
    // The table goes to stderr when stdout carries JSON.
    let table = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    table(format!(
        "{:<28} {:<20} {:<42} {:<48} {:>4} {:>4} {:>4} {:>4} {:>8} {:>6}",
        "scenario", "alarm", "expected", "found", "top1", "top3", "nb", "ev", "report", "alarms"
    ));
    let (mut n, mut top1, mut top3, mut nb_ok, mut ev_ok, mut passed) = (0, 0, 0, 0, 0, 0);
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for s in &list {
        n += 1;
        let r = match run_one(state_dir, s, time_scale, &catalog, true) {
            Ok(r) => r,
            Err(e) => {
                table(format!("{:<28} ERROR {e:#}", s.name));
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        let yes = |b: bool| if b { "yes" } else { "NO" };
        for sc in &r.scores {
            table(format!(
                "{:<28} {:<20} {:<42} {:<48} {:>4} {:>4} {:>4} {:>4} {:>8} {:>6}",
                r.scenario,
                sc.alarm,
                format!(
                    "{} {}",
                    sc.expected.category,
                    sc.expected.entity.as_deref().unwrap_or("")
                ),
                hyp(&sc.found),
                yes(sc.top1),
                yes(sc.top3 && sc.also_top3),
                yes(sc.blamed.is_empty()),
                yes(sc.missing_evidence.is_empty()),
                sc.latency_ms
                    .map(|l| format!("{l} ms"))
                    .unwrap_or_else(|| "-".into()),
                if r.passed_alarms { "ok" } else { "FAILED" }
            ));
            lat.extend(sc.latency_ms);
        }
        top1 += usize::from(r.scores.iter().all(|s| s.top1));
        top3 += usize::from(r.scores.iter().all(|s| s.top3 && s.also_top3));
        nb_ok += usize::from(r.scores.iter().all(|s| s.blamed.is_empty()));
        ev_ok += usize::from(r.scores.iter().all(|s| s.missing_evidence.is_empty()));
        passed += usize::from(r.passed);
        for m in &r.skipped_steps {
            table(format!("{:<28} skipped: {m}", r.scenario));
        }
        if json {
            let reports: Vec<&Path> = r
                .findings
                .iter()
                .flat_map(|f| f.report_paths.iter().map(PathBuf::as_path))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "scenario": r.scenario, "passed": r.passed, "time_scale": r.time_scale,
                    "scores": r.scores, "reports": reports, "result": r,
                })
            );
        }
    }
    lat.sort_unstable();
    table(format!(
        "\ntotal ({n} scenarios, strict): top-1 {top1}/{n}, top-3 {top3}/{n}, not_blamed respected {nb_ok}/{n}, evidence present {ev_ok}/{n}, passed {passed}/{n}, median alarm-to-report {}",
        lat.get(lat.len() / 2)
            .map(|l| format!("{l} ms"))
            .unwrap_or_else(|| "-".into())
    ));
    if !errors.is_empty() {
        bail!(
            "{} scenario(s) could not run:\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    if passed < n {
        return Err(crate::commands::Exit::failed(format!(
            "{} of {n} scenario(s) missed",
            n - passed
        )));
    }
    Ok(())
}
