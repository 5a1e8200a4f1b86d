//! Runs one scenario end to end on a fresh local environment: warm-up
//! traffic, the steps, waiting for every expected alarm (investigating each
//! as it fires), recovery, waiting for the alarms to clear, then scoring
//! every report strictly ([`crate::score`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use demo_model::Catalog;
use demo_model::events::AlarmTransition;
use demo_runtime::builds::Builds;
use demo_runtime::{Runtime, RuntimeConfig};
use serde::Serialize;

use crate::score::{AlarmScore, passed, score_run};
use crate::spec::{RootCause, Scenario};
use crate::steps::{Context, prebuild, timeline};
use crate::traffic::Traffic;

/// What an investigator concluded about one alarm.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub alarm: String,
    pub investigation_id: String,
    /// Ranked hypotheses: (category, entity, confidence). Every hypothesis of
    /// the report when its JSON is readable, else what the investigator returned.
    pub hypotheses: Vec<(String, Option<String>, f64)>,
    /// Evidence kinds the report cites.
    pub evidence_kinds: Vec<String>,
    /// Milliseconds from the alarm transition to the report being written.
    pub latency_ms: i64,
    pub report_paths: Vec<PathBuf>,
}

impl Finding {
    /// Replaces the hypotheses with the report's full ranked list (scoring
    /// `not_blamed` needs every hypothesis, not only the top 3).
    fn complete_from_report(&mut self) {
        let Some(json) = self
            .report_paths
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "json"))
        else {
            return;
        };
        let Some(report) = std::fs::read_to_string(json)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            return;
        };
        let all: Vec<(String, Option<String>, f64)> = report["hypotheses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some((
                    h["category"].as_str()?.to_string(),
                    h["entity"].as_str().map(str::to_string),
                    h["score"].as_f64()?,
                ))
            })
            .collect();
        if all.len() >= self.hypotheses.len() && !all.is_empty() {
            self.hypotheses = all;
        }
    }
}

/// The investigator, as the runner sees it (the CLI plugs the real one in).
pub trait Investigate: Send + Sync {
    fn investigate(
        &self,
        state_dir: &std::path::Path,
        transition: &AlarmTransition,
    ) -> Result<Finding, String>;
}

pub struct RunOptions {
    pub state_dir: PathBuf,
    pub app_binary: PathBuf,
    pub binary_args: Vec<String>,
    pub time_scale: Option<f64>,
    pub git_sha: String,
    /// The catalogue the environment evaluates (`--catalog`, else the committed one).
    pub catalog: Catalog,
    /// The git repository revisions are built from.
    pub repo: PathBuf,
    /// Where revision builds go: shared by every run (a build takes minutes).
    pub build_dir: PathBuf,
    pub investigator: Option<Arc<dyn Investigate>>,
    /// Progress lines (the CLI prints them; tests collect them).
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub time_scale: f64,
    /// Expected alarms that fired, with when.
    pub fired: BTreeMap<String, i64>,
    pub missing: Vec<String>,
    pub other_alarms: Vec<String>,
    pub recovered: Vec<String>,
    pub not_recovered: Vec<String>,
    pub findings: Vec<Finding>,
    pub expected: RootCause,
    /// Every expected alarm's report, scored.
    pub scores: Vec<AlarmScore>,
    /// Steps that could not be carried out (e.g. no running task to target).
    pub skipped_steps: Vec<String>,
    pub traffic: serde_json::Value,
    /// Every expected alarm fired and cleared.
    pub passed_alarms: bool,
    /// Alarms fired and cleared, and every report scored (strict).
    pub passed: bool,
    pub duration_s: f64,
}

pub async fn run(scenario: &Scenario, opts: RunOptions) -> Result<RunResult, String> {
    let started = Instant::now();
    let scale = opts.time_scale.unwrap_or(scenario.time_scale);
    let say = opts.progress.clone();
    let secs = |catalogue_secs: u32| Duration::from_secs_f64(f64::from(catalogue_secs) / scale);

    // Builds first: they take minutes and must not stretch the scenario's timeline.
    let builds = Builds::new(opts.repo.clone(), opts.build_dir.clone());
    let prebuilt = {
        let (s, b, repo, say) = (scenario.clone(), builds, opts.repo.clone(), say.clone());
        tokio::task::spawn_blocking(move || prebuild(&s, &b, &repo, &*say))
            .await
            .map_err(|e| format!("build task: {e}"))??
    };

    let config = RuntimeConfig {
        state_dir: opts.state_dir.clone(),
        app_binary: opts.app_binary.clone(),
        lb_port: 0,
        control_port: 0,
        control_host: std::net::IpAddr::from([127, 0, 0, 1]),
        repo: opts.repo.clone(),
        time_scale: scale,
        catalog: opts.catalog.clone(),
        version: "1.0.0".into(),
        git_sha: opts.git_sha.clone(),
        env: BTreeMap::new(),
        provisioning: Duration::from_secs(30),
        desired_count: None,
    };
    config.validate().map_err(|e| e.to_string())?;
    let runtime = Runtime::start(config, opts.binary_args.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut transitions = runtime.subscribe();
    say(&format!(
        "{}: environment up at {} (time scale {scale}x)",
        scenario.name, runtime.lb_addr
    ));
    if !runtime.wait_healthy(Duration::from_secs(60)).await {
        runtime.shutdown().await;
        return Err("targets did not become healthy within 60 s".into());
    }
    let traffic = Traffic::start(
        runtime.lb_addr,
        scenario.traffic.rate * scale,
        &scenario.traffic.mix,
    );
    say(&format!(
        "{}: warm-up, {} catalogue seconds of steady traffic",
        scenario.name, scenario.warmup
    ));
    let mut ctx = Context {
        runtime: &runtime,
        traffic: &traffic,
        scale,
        name: &scenario.name,
        say: say.clone(),
        prebuilt: &prebuilt,
        ramp: None,
        route_ramp: None,
        skipped: Vec::new(),
    };

    let expected: Vec<String> = scenario.expect.alarms.clone();
    let mut fired: BTreeMap<String, i64> = BTreeMap::new();
    let mut other: Vec<String> = Vec::new();
    let mut pending = Vec::new();
    // Alarms are watched from the first request on, so one that fires during the
    // warm-up is investigated (and, if unexpected, reported) when it fires.
    let steps_start = Instant::now() + secs(scenario.warmup);
    let plan = timeline(&scenario.steps);
    let last_at = plan.last().map_or(0, |p| p.0);
    let mut plan = plan.into_iter().peekable();
    let deadline = steps_start + secs(last_at) + secs(scenario.expect.within);
    let handle =
        |t: AlarmTransition,
         fired: &mut BTreeMap<String, i64>,
         other: &mut Vec<String>,
         pending: &mut Vec<tokio::task::JoinHandle<Result<Finding, String>>>| {
            if t.to != "ALARM" {
                return;
            }
            say(&format!(
                "{}: alarm {} -> ALARM ({})",
                scenario.name, t.alarm, t.reason
            ));
            if expected.contains(&t.alarm) {
                if fired.contains_key(&t.alarm) {
                    return;
                }
                fired.insert(t.alarm.clone(), t.at_ms);
                if let Some(inv) = opts.investigator.clone() {
                    let dir = opts.state_dir.clone();
                    pending.push(tokio::task::spawn_blocking(move || {
                        inv.investigate(&dir, &t)
                    }));
                }
            } else if !other.contains(&t.alarm) {
                other.push(t.alarm.clone());
            }
        };
    // Steps and alarms, interleaved, until every expected alarm fired (and every
    // step ran) or the deadline passed.
    loop {
        if let Some((at, _, _)) = plan.peek()
            && Instant::now() >= steps_start + secs(*at)
        {
            let (_, step, index) = plan.next().expect("peeked");
            if let Err(e) = ctx.apply("steps", index, step).await {
                traffic.stop().await;
                runtime.shutdown().await;
                return Err(e);
            }
            continue;
        }
        if plan.peek().is_none() && expected.iter().all(|a| fired.contains_key(a)) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        let wait = plan
            .peek()
            .map(|(at, _, _)| (steps_start + secs(*at)).saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        if let Ok(Ok(t)) = tokio::time::timeout(wait, transitions.recv()).await {
            handle(t, &mut fired, &mut other, &mut pending);
        }
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|a| !fired.contains_key(*a))
        .cloned()
        .collect();
    for m in &missing {
        say(&format!(
            "{}: alarm {m} did NOT fire within {} catalogue seconds",
            scenario.name, scenario.expect.within
        ));
    }

    // Recovery: undo the fault, then every alarm that fired must return to OK.
    let recover_start = Instant::now();
    for (at, step, index) in timeline(&scenario.recover.steps) {
        let due = recover_start + secs(at);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(d).await;
        }
        if let Err(e) = ctx.apply("recover.steps", index, step).await {
            let msg = format!("recover.steps[{index}]: {e}");
            say(&format!("{}: {msg}", scenario.name));
            ctx.skipped.push(msg);
        }
    }
    let mut ok: Vec<String> = Vec::new();
    let states = |rt: &Runtime| rt.alarm_states().into_iter().collect::<BTreeMap<_, _>>();
    let recover_deadline = Instant::now() + secs(scenario.recover.within);
    while Instant::now() < recover_deadline {
        let s = states(&runtime);
        ok = fired
            .keys()
            .filter(|a| s.get(*a).is_some_and(|st| st == "OK"))
            .cloned()
            .collect();
        if ok.len() == fired.len() {
            break;
        }
        if let Ok(Ok(t)) =
            tokio::time::timeout(Duration::from_millis(200), transitions.recv()).await
            && t.to == "OK"
            && fired.contains_key(&t.alarm)
        {
            say(&format!("{}: alarm {} -> OK", scenario.name, t.alarm));
        }
    }
    let not_recovered: Vec<String> = fired.keys().filter(|a| !ok.contains(a)).cloned().collect();

    let mut findings = Vec::new();
    for p in pending {
        match p.await {
            Ok(Ok(mut f)) => {
                f.complete_from_report();
                findings.push(f);
            }
            Ok(Err(e)) => say(&format!("{}: investigation failed: {e}", scenario.name)),
            Err(e) => say(&format!("{}: investigation panicked: {e}", scenario.name)),
        }
    }
    findings.sort_by_key(|f| fired.get(&f.alarm).copied().unwrap_or(i64::MAX));
    let skipped_steps = std::mem::take(&mut ctx.skipped);
    drop(ctx);
    let stats = traffic.stats.clone();
    traffic.stop().await;
    runtime.shutdown().await;
    let mut result = RunResult {
        scenario: scenario.name.clone(),
        time_scale: scale,
        passed_alarms: missing.is_empty() && not_recovered.is_empty(),
        fired,
        missing,
        other_alarms: other,
        recovered: ok,
        not_recovered,
        findings,
        expected: scenario.expect.root_cause.clone(),
        scores: Vec::new(),
        skipped_steps,
        traffic: stats.snapshot(),
        passed: false,
        duration_s: started.elapsed().as_secs_f64(),
    };
    result.scores = score_run(&scenario.expect, &result);
    result.passed = passed(&result.scores, &result);
    Ok(result)
}
