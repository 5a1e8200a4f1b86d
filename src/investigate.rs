//! Connects the investigator to the rest: `investigate` and `reports` commands,
//! the alarm subscriber of `up`, and the scenario runner's investigator. Also
//! decides what an alarm *episode* is: an ALARM that follows a recent ALARM of
//! the same alarm (it flapped) continues that episode instead of opening a new
//! investigation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use demo_model::Catalog;
use demo_model::events::AlarmTransition;
use demo_store::{Reader, Store};
use investigator::{Format, InvestigationOutcome, Investigator, InvestigatorConfig};

/// A flapping alarm that fires again within this many of its (scaled) periods
/// after clearing is the same episode.
const FLAP_PERIODS: i64 = 5;

/// The repository this command runs in, for code correlation.
pub fn repo() -> Option<PathBuf> {
    std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// The investigator of a state directory; `repo` is the git repository for
/// code correlation (`up --repo`, `investigate --repo`), else this directory's.
pub fn investigator(
    state_dir: &Path,
    time_scale: f64,
    store: &Store,
    repo_path: Option<PathBuf>,
) -> Result<Investigator> {
    Investigator::new(
        InvestigatorConfig {
            state_dir: state_dir.to_path_buf(),
            repo: repo_path.or_else(repo),
            catalog: Catalog::embedded(),
            time_scale,
        },
        store.writer(),
    )
    .map_err(|e| anyhow!(e))
}

/// The ALARM transition that opened the episode `t` belongs to.
pub fn episode_start(reader: &Reader, t: &AlarmTransition) -> Result<AlarmTransition> {
    let period_ms = t.reason_data["period_ms"].as_i64().unwrap_or(60_000);
    let history = reader.transitions(Some(&t.alarm), 1000)?;
    // Newest first: walk back while each earlier ALARM ended (went OK) shortly before the next began.
    let mut start = t.clone();
    let mut iter = history
        .iter()
        .skip_while(|x| x.id != t.id)
        .skip(1)
        .peekable();
    while let Some(prev) = iter.next() {
        if prev.to == "ALARM" {
            break;
        }
        // `prev` ended the earlier episode; it continues if that ended recently enough.
        if start.at_ms - prev.at_ms > FLAP_PERIODS * period_ms {
            break;
        }
        match iter.peek() {
            Some(alarm) if alarm.to == "ALARM" => {
                start = (*alarm).clone();
                iter.next();
            }
            _ => break,
        }
    }
    Ok(start)
}

/// Investigates `t`'s episode (once: later calls return the same investigation).
pub fn investigate_episode(
    inv: &Investigator,
    state_dir: &Path,
    t: &AlarmTransition,
) -> Result<InvestigationOutcome> {
    let reader = Reader::open(state_dir)?;
    let start = episode_start(&reader, t)?;
    inv.investigate(&start).map_err(|e| anyhow!(e))
}

/// `investigate --alarm NAME [--at TIME]`.
pub fn run(
    state_dir: &Path,
    alarm: &str,
    at: Option<&str>,
    time_scale: Option<f64>,
    repo_path: Option<&Path>,
    json: bool,
) -> Result<()> {
    let repo_path = repo_path
        .map(|p| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(p)
                .args(["rev-parse", "--git-dir"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                std::path::absolute(p).map_err(anyhow::Error::from)
            } else {
                Err(crate::commands::usage_error(format!(
                    "--repo {}: not a git repository",
                    p.display()
                )))
            }
        })
        .transpose()?;
    let at_ms = at.map(parse_time).transpose()?;
    let catalog = Catalog::embedded();
    if catalog.alarm(alarm).is_none() {
        let names: Vec<&str> = catalog.alarms.iter().map(|a| a.name.as_str()).collect();
        return Err(crate::commands::usage_error(format!(
            "--alarm {alarm:?} is not in the catalogue ({})",
            names.join(", ")
        )));
    }
    let scale = time_scale
        .or_else(|| {
            let text = std::fs::read_to_string(state_dir.join(demo_runtime::runtime::RUNTIME_FILE))
                .ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()?["time_scale"].as_f64()
        })
        .unwrap_or(1.0);
    let store = Store::open(state_dir).context("cannot open the state directory")?;
    let inv = investigator(state_dir, scale, &store, repo_path)?;
    let reader = Reader::open(state_dir)?;
    let t = investigator::latest_alarm_transition(&reader, alarm, at_ms).map_err(|e| match e {
        investigator::InvestigateError::NoTransition { .. } => {
            crate::commands::Exit::not_found(e.to_string())
        }
        other => anyhow!(other),
    })?;
    let out = investigate_episode(&inv, state_dir, &t)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome_json(&out))?);
    } else {
        print_outcome(&out);
    }
    Ok(())
}

/// An investigation's outcome as `investigate --json` prints it.
pub fn outcome_json(out: &InvestigationOutcome) -> serde_json::Value {
    serde_json::json!({
        "id": out.id,
        "alarm": out.alarm,
        "created": out.created,
        "summary": out.summary,
        "top3": out.top3.iter().map(|f| serde_json::json!({
            "category": f.category.as_str(),
            "entity": f.entity,
            "confidence": f.confidence,
        })).collect::<Vec<_>>(),
        "reports": {
            "html": out.paths.html,
            "markdown": out.paths.markdown,
            "json": out.paths.json,
        },
    })
}

pub fn print_outcome(out: &InvestigationOutcome) {
    println!(
        "{} {} ({})",
        if out.created {
            "investigation"
        } else {
            "existing investigation"
        },
        out.id,
        out.alarm
    );
    println!("  {}", out.summary);
    for (i, f) in out.top3.iter().enumerate() {
        println!(
            "  {}. {} {} ({:.0} %)",
            i + 1,
            f.category.as_str(),
            f.entity.as_deref().unwrap_or(""),
            f.confidence * 100.0
        );
    }
    println!("  report: {}", out.paths.html.display());
    println!("          {}", out.paths.markdown.display());
    println!("          {}", out.paths.json.display());
}

pub fn list(state_dir: &Path, json: bool) -> Result<()> {
    if json {
        let reader = Reader::open(state_dir)?;
        let rows: Vec<serde_json::Value> = reader
            .investigations(100)?
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "alarm": r.alarm,
                    "transition_id": r.transition_id,
                    "created_ms": r.created_ms,
                    "root_cause": r.root_cause,
                    "summary": r.summary,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print!(
        "{}",
        investigator::render_list(state_dir, 100).map_err(|e| anyhow!(e))?
    );
    Ok(())
}

pub fn show(state_dir: &Path, id: &str, format: crate::ReportFormat) -> Result<()> {
    let format = match format {
        crate::ReportFormat::Md => Format::Markdown,
        crate::ReportFormat::Json => Format::Json,
        crate::ReportFormat::Html => Format::Html,
    };
    let text = investigator::show(state_dir, id, format).map_err(|e| match e {
        investigator::InvestigateError::NotFound(_) => {
            crate::commands::Exit::not_found(e.to_string())
        }
        other => anyhow!(other),
    })?;
    print!("{text}");
    Ok(())
}

/// RFC 3339 (`2026-11-25T18:00:00Z`) or epoch milliseconds.
fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            crate::commands::usage_error(format!("--at {s:?}: expected RFC 3339 or epoch ms ({e})"))
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The scenario runner's investigator: the real one, on the run's state directory.
pub struct ScenarioInvestigator {
    pub time_scale: f64,
}

impl demo_scenario::Investigate for ScenarioInvestigator {
    fn investigate(
        &self,
        state_dir: &Path,
        t: &AlarmTransition,
    ) -> Result<demo_scenario::Finding, String> {
        let store = Store::open(state_dir).map_err(|e| e.to_string())?;
        let inv =
            investigator(state_dir, self.time_scale, &store, None).map_err(|e| e.to_string())?;
        let out = investigate_episode(&inv, state_dir, t).map_err(|e| format!("{e:#}"))?;
        let latency_ms = demo_runtime::now_ms() - t.at_ms;
        let evidence_kinds = std::fs::read_to_string(&out.paths.json)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .map(|r| {
                let mut kinds: Vec<String> = r["evidence"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["kind"].as_str().map(str::to_string))
                    .collect();
                kinds.sort();
                kinds.dedup();
                kinds
            })
            .unwrap_or_default();
        Ok(demo_scenario::Finding {
            alarm: t.alarm.clone(),
            investigation_id: out.id,
            hypotheses: out
                .top3
                .iter()
                .map(|f| {
                    (
                        f.category.as_str().to_string(),
                        f.entity.clone(),
                        f.confidence,
                    )
                })
                .collect(),
            evidence_kinds,
            latency_ms,
            report_paths: vec![out.paths.html, out.paths.markdown, out.paths.json],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_model::events::AlarmTransition;

    fn t(id: i64, to: &str, at: i64) -> AlarmTransition {
        AlarmTransition {
            id,
            alarm: "a".into(),
            from: String::new(),
            to: to.into(),
            at_ms: at,
            reason: String::new(),
            reason_data: serde_json::json!({"period_ms": 1000}),
        }
    }

    #[test]
    fn a_flapping_alarm_continues_its_episode_and_a_late_one_opens_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let w = store.writer();
        let mut ids = Vec::new();
        for (to, at) in [
            ("OK", 0),
            ("ALARM", 10_000),
            ("OK", 12_000),
            ("ALARM", 14_000),
            ("OK", 15_000),
            ("ALARM", 60_000),
        ] {
            ids.push(w.transition(t(0, to, at)).unwrap());
        }
        let r = Reader::open(dir.path()).unwrap();
        let all = r.transitions(Some("a"), 100).unwrap();
        let by_id = |id: i64| all.iter().find(|x| x.id == id).unwrap().clone();
        // Fired again 2 s (2 periods) after clearing: the same episode.
        assert_eq!(episode_start(&r, &by_id(ids[3])).unwrap().id, ids[1]);
        // Fired 45 periods after clearing: a new episode.
        assert_eq!(episode_start(&r, &by_id(ids[5])).unwrap().id, ids[5]);
        assert_eq!(episode_start(&r, &by_id(ids[1])).unwrap().id, ids[1]);
    }
}
