//! One function per CLI command. Each turns arguments into calls on the
//! crates (or the control API of a running environment) and prints results.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use demo_model::Catalog;
use demo_model::events::Window;
use demo_runtime::{Runtime, RuntimeConfig};
use demo_store::{LogQuery, Reader};
use serde_json::{Value, json};

use crate::client::Client;
use crate::{DeployArgs, LogsArgs, MineArgs, UpArgs};

/// Bad arguments: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::error::Error for UsageError {}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error with its own exit status (beyond 1 = failure and 2 = usage).
#[derive(Debug)]
pub enum Exit {
    /// 3: no report, deployment or task with that id.
    NotFound(String),
    /// 4: the operation ran and failed (a deployment rolled back, a scenario missed).
    Failed(String),
    /// 5: gave up waiting.
    TimedOut(String),
}

impl Exit {
    pub fn code(&self) -> u8 {
        match self {
            Exit::NotFound(_) => 3,
            Exit::Failed(_) => 4,
            Exit::TimedOut(_) => 5,
        }
    }
    pub fn not_found(m: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit::NotFound(m.into()))
    }
    pub fn failed(m: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit::Failed(m.into()))
    }
    pub fn timed_out(m: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit::TimedOut(m.into()))
    }
}

impl std::error::Error for Exit {}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::NotFound(m) | Exit::Failed(m) | Exit::TimedOut(m) => f.write_str(m),
        }
    }
}

/// This program as the user invoked it, for hints: the installed name when it
/// was found on PATH, `cargo run --release --` when it runs from a cargo target
/// directory, else the path as typed.
pub fn bin() -> String {
    let arg0 = std::env::args()
        .next()
        .unwrap_or_else(|| "devops-agent-demo".into());
    bin_hint(&arg0)
}

fn bin_hint(arg0: &str) -> String {
    let p = Path::new(arg0);
    if p.components().count() == 1 {
        return arg0.to_string();
    }
    let in_target = p
        .parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "target");
    if in_target {
        "cargo run --release --".into()
    } else {
        arg0.to_string()
    }
}

pub fn usage_error(msg: impl Into<String>) -> anyhow::Error {
    usage(msg)
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Parses repeated `KEY=VALUE` flags; every bad one is reported.
pub fn parse_env(pairs: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for p in pairs {
        match p.split_once('=') {
            Some((k, v))
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                out.insert(k.to_string(), v.to_string());
            }
            _ => bad.push(format!(
                "{flag} {p:?}: expected KEY=VALUE with KEY of letters, digits, _"
            )),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(usage(bad.join("\n")))
    }
}

/// `30s`, `10m`, `2h`, `1d` to a duration.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| usage(format!("duration {s:?}: expected e.g. 30s, 10m, 2h")))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(usage(format!("duration {s:?}: unit must be s, m, h or d"))),
    };
    Ok(Duration::from_secs(secs))
}

/// The commit this working tree is at, for deployment records.
pub fn git_head() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn fmt_ts(ms: i64) -> String {
    let mut buf = Vec::new();
    demo_app::log::write_rfc3339_ms(
        &mut buf,
        std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// Why the store cannot write, for the console.
fn store_failure(h: &demo_store::WriterHealth) -> String {
    format!(
        "failing since {}: {}; {} failed batches, {} records lost",
        h.failing_since_ms.map(fmt_ts).unwrap_or_default(),
        h.last_error.as_deref().unwrap_or("unknown error"),
        h.failed_batches,
        h.lost_records
    )
}

/// The store of a state directory, or how to create one.
fn open_state(state_dir: &Path) -> Result<Reader> {
    Reader::open(state_dir).map_err(|e| {
        anyhow!(
            "{e}\n(no state in {}: start the environment with `{} up`)",
            state_dir.display(),
            bin()
        )
    })
}

pub fn runtime_config(state_dir: &Path, args: &UpArgs) -> Result<RuntimeConfig> {
    let env = parse_env(&args.env, "--env")?;
    Ok(RuntimeConfig {
        state_dir: state_dir.to_path_buf(),
        app_binary: std::env::current_exe().context("cannot locate this executable")?,
        lb_port: args.port,
        control_port: args.control_port,
        control_host: args.control_host,
        repo: std::path::absolute(&args.repo)
            .with_context(|| format!("--repo {}", args.repo.display()))?,
        time_scale: args.time_scale,
        catalog: Catalog::embedded(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_sha: git_head(),
        env,
        provisioning: Duration::from_secs(30),
        desired_count: args.count,
    })
}

pub fn up(state_dir: &Path, args: UpArgs) -> Result<()> {
    let config = runtime_config(state_dir, &args)?;
    if args.store_max_mb == 0 {
        return Err(usage("--store-max-mb: must be at least 1"));
    }
    // A second `up` on this directory fails in Runtime::start, on the state
    // directory's lock, naming the pid that holds it (no check-then-start race).
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let runtime = Runtime::start(config.clone(), vec!["app".into()])
            .await
            .map_err(|e| match e {
                demo_runtime::RuntimeError::Config(c) => usage(c.to_string()),
                other => anyhow!(other),
            })?;
        let lb = runtime.lb_addr;
        let writer = runtime.store.writer();
        writer.set_size_cap(Some(args.store_max_mb.saturating_mul(1 << 20)))?;
        println!("devops-agent-demo: local environment starting (time scale {}x)", config.time_scale);
        println!("  load balancer   http://{lb}/");
        println!("  control API     http://{}/status", runtime.control_addr);
        // The console's login link: opening it sets a session cookie and drops the token from the address.
        match demo_runtime::control_auth::ControlToken::read(state_dir) {
            Ok(token) => println!("  console         http://{}/?token={token}", runtime.control_addr),
            Err(e) => println!("  console         http://{}/ (cannot read the login token: {e})", runtime.control_addr),
        }
        println!("  state           {} (store capped at {} MiB)", state_dir.display(), args.store_max_mb);
        if let Some(r) = &runtime.resumed {
            println!(
                "  restart         continuing after {} and task-{:04}; the previous run {}{}",
                r.last_deployment.as_deref().unwrap_or("no deployment"),
                r.last_task,
                if r.clean_stop { "stopped cleanly" } else { "ended without stopping (crash or kill)" },
                match r.orphans.len() {
                    0 => String::new(),
                    n => format!("; stopped {n} of its tasks still running: {}", r.orphans.iter().map(|o| format!("{} (pid {})", o.task_id, o.pid)).collect::<Vec<_>>().join(", ")),
                }
            );
            if !r.interrupted.is_empty() {
                println!("  interrupted     {} left in progress by the previous run, recorded as failed", r.interrupted.join(", "));
            }
        }
        println!(
            "  tasks           {} x demo-app ({} CPU units, {} MiB), provisioning then 2 health checks ({:.1} s)",
            config.desired(),
            config.catalog.task.cpu_units,
            config.catalog.task.memory_mib,
            (config.scaled(config.provisioning)
                + config.scaled_secs(config.catalog.health_check.interval_seconds) * 2)
                .as_secs_f64()
        );
        let mut transitions = runtime.subscribe();
        let investigator = std::sync::Arc::new(crate::investigate::investigator(
            state_dir,
            config.time_scale,
            &runtime.store,
            Some(config.repo.clone()),
        )?);
        {
        let ready = runtime.wait_healthy(Duration::from_secs(120));
        tokio::pin!(ready);
        let mut waited = false;
        let mut targets_ready = false;
        let mut announced = false;
        // "ready" needs healthy targets *and* a store that writes: without it every
        // log line, metric and alarm transition is lost.
        let mut store_ok = true;
        let mut store_check = tokio::time::interval(Duration::from_secs(1));
        let announce = |store: &demo_store::WriterHealth| {
            if store.is_ok() {
                println!("ready: {} healthy targets behind http://{lb}/", runtime.service.desired());
                println!("try:   curl http://{lb}/api/products   |   {} status", bin());
                true
            } else {
                println!("not ready: targets are healthy but the store cannot write: {}", store_failure(store));
                false
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                ok = &mut ready, if !waited => {
                    waited = true;
                    if ok {
                        targets_ready = true;
                        announced = announce(&writer.health());
                    } else {
                        println!("warning: targets not healthy after 120 s; see `{} logs --level ERROR`", bin());
                    }
                }
                _ = store_check.tick() => {
                    let h = writer.health();
                    if h.is_ok() != store_ok {
                        store_ok = h.is_ok();
                        if store_ok {
                            println!("store: writing again ({} failed batches, {} records lost so far)", h.failed_batches, h.lost_records);
                        } else {
                            println!("store: cannot write: {}", store_failure(&h));
                        }
                    }
                    if targets_ready && !announced && store_ok {
                        announced = announce(&h);
                    }
                }
                t = transitions.recv() => {
                    if let Ok(t) = t {
                        println!("{}  alarm {} {} -> {}: {}", fmt_ts(t.at_ms), t.alarm, t.from, t.to, t.reason);
                        if t.to == "ALARM" {
                            let inv = investigator.clone();
                            let dir = state_dir.to_path_buf();
                            let metrics = runtime.metrics.clone();
                            tokio::task::spawn_blocking(move || {
                                use demo_runtime::prometheus::InvestigationResult as R;
                                let started = std::time::Instant::now();
                                let out = crate::investigate::investigate_episode(&inv, &dir, &t);
                                let result = match &out {
                                    Ok(o) if o.created => R::Created,
                                    Ok(_) => R::Existing,
                                    Err(_) => R::Failed,
                                };
                                metrics.investigation(result, started.elapsed());
                                match out {
                                    Ok(out) => crate::investigate::print_outcome(&out),
                                    Err(e) => eprintln!("investigation of {} failed: {e:#}", t.alarm),
                                }
                            });
                        }
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        }
        println!("stopping: draining the load balancer, then the tasks");
        runtime.shutdown().await;
        println!("stopped");
        Ok(())
    })
}

pub fn status(state_dir: &Path, json_out: bool) -> Result<()> {
    let c = Client::connect(state_dir)?;
    let s = c.get("/status")?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "load balancer http://{}/  time scale {}x  desired {}  deployment {}{}",
        s["load_balancer"].as_str().unwrap_or(""),
        s["time_scale"],
        s["desired_count"],
        s["current_deployment"].as_str().unwrap_or(""),
        s["deployment_in_progress"]
            .as_str()
            .map(|d| format!(" (rolling out {d})"))
            .unwrap_or_default()
    );
    let store = &s["store"];
    if store["ok"] == false {
        println!(
            "store FAILING since {}: {} ({} failed batches, {} records lost)",
            store["failing_since_ms"]
                .as_i64()
                .map(fmt_ts)
                .unwrap_or_default(),
            store["last_error"].as_str().unwrap_or("unknown error"),
            store["failed_batches"],
            store["lost_records"]
        );
    } else if store["ok"] == true {
        println!("store ok");
    }
    // Ingestion behind the writer: nothing is dropped, it waits in memory (and is counted).
    if let Some(backlog) = store["backlog_records"].as_u64().filter(|b| *b > 0) {
        println!(
            "store backlog   {backlog} records waiting to be written (peak {})",
            store["peak_backlog_records"]
        );
    }
    if let Some(ms) = store["log_readers_waited_ms"].as_u64().filter(|ms| *ms > 0) {
        println!(
            "store waits     log readers paused {:.1} s in total for the writer (lines waited in the tasks' pipes)",
            ms as f64 / 1000.0
        );
    }
    if let Some(since) = store["text_index_failing_since_ms"].as_i64() {
        println!(
            "store index     text index failing since {} ({}): {} batches stored unindexed, searches scan them",
            fmt_ts(since),
            store["text_index_last_error"]
                .as_str()
                .unwrap_or("unknown error"),
            store["text_index_errors"]
        );
    }
    if let Some(started) = Reader::open(state_dir)
        .and_then(|r| r.runtime_events(10))
        .ok()
        .and_then(|events| events.into_iter().find(|e| e.kind == "started"))
    {
        println!(
            "runtime started {}: {}",
            fmt_ts(started.ts_ms),
            started.detail
        );
    }
    println!("\nTASK        PORT   PID      DEPLOYMENT  TARGET      LOG LINES  NOTE");
    for t in s["tasks"].as_array().into_iter().flatten() {
        println!(
            "{:<11} {:<6} {:<8} {:<11} {:<11} {:<10} {}",
            t["id"].as_str().unwrap_or(""),
            t["port"],
            t["pid"],
            t["deployment"].as_str().unwrap_or(""),
            t["health"].as_str().unwrap_or(""),
            t["log_lines"],
            if t["stopping"] == true {
                "stopping"
            } else {
                t["health_reason"].as_str().unwrap_or("")
            }
        );
    }
    println!("\nALARM               STATE");
    for a in s["alarms"].as_array().into_iter().flatten() {
        println!(
            "{:<19} {}",
            a["name"].as_str().unwrap_or(""),
            a["state"].as_str().unwrap_or("")
        );
    }
    let reader = Reader::open(state_dir)?;
    println!("\nDEPLOYMENT  STARTED                   OUTCOME      VERSION  CHANGES");
    for d in reader.deployments(5)? {
        let changes: Vec<String> = d
            .changes
            .iter()
            .map(|c| format!("{}={}", c.key, c.to.as_deref().unwrap_or("(unset)")))
            .collect();
        println!(
            "{:<11} {:<25} {:<12} {:<8} {}",
            d.id,
            fmt_ts(d.started_ms),
            d.outcome.as_str(),
            d.version,
            if changes.is_empty() {
                d.description.clone()
            } else {
                changes.join(" ")
            }
        );
    }
    Ok(())
}

pub fn logs(state_dir: &Path, args: &LogsArgs) -> Result<()> {
    let since = parse_duration(&args.since)?;
    let reader = open_state(state_dir)?;
    let now = demo_runtime::now_ms();
    let query = LogQuery {
        task_id: args.task.clone(),
        level: args.level.map(|l| l.as_str().to_string()),
        contains: args.grep.clone(),
        limit: Some(args.lines),
    };
    // (timestamp of the last printed line, how many lines with that timestamp were printed):
    // the next poll starts at that timestamp and skips those, so no line is lost or repeated.
    let mut last = (now - since.as_millis() as i64, 0usize);
    let mut first = true;
    loop {
        let end = demo_runtime::now_ms() + 1;
        let mut q = query.clone();
        if !first {
            q.limit = None;
        }
        let records = reader.logs(Window::new(last.0, end), &q)?;
        let mut out = std::io::stdout().lock();
        let mut skip = last.1;
        for r in &records {
            if r.ts_ms == last.0 && skip > 0 {
                skip -= 1;
                continue;
            }
            if args.json {
                let v = json!({"ts_ms": r.ts_ms, "time": fmt_ts(r.ts_ms), "task_id": r.task_id, "line": r.line});
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{}  {:<10} {}", fmt_ts(r.ts_ms), r.task_id, r.line)?;
            }
            if r.ts_ms == last.0 {
                last.1 += 1;
            } else {
                last = (r.ts_ms, 1);
            }
        }
        first = false;
        if !args.follow {
            return Ok(());
        }
        drop(out);
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn mine(args: MineArgs) -> Result<()> {
    use logmine::cli::{RunError, run};
    let summary = run(&args).map_err(|e| match e {
        RunError::Usage(problems) => usage(problems.join("\n")),
        other => anyhow::Error::new(other),
    })?;
    eprintln!(
        "{} lines, {} templates, {} unmatched",
        summary.lines, summary.templates, summary.unmatched
    );
    Ok(())
}

pub fn alarms(state_dir: &Path, history: usize, json_out: bool) -> Result<()> {
    let reader = open_state(state_dir)?;
    let catalog = Catalog::embedded();
    if json_out {
        let mut alarms = Vec::new();
        for a in &catalog.alarms {
            let last = reader.transitions(Some(&a.name), 1)?;
            let last = last.first();
            alarms.push(json!({
                "name": a.name,
                "state": last.map_or("INSUFFICIENT_DATA", |t| t.to.as_str()),
                "since_ms": last.map(|t| t.at_ms),
                "metric_name": a.metric_name,
                "statistic": a.statistic.to_string(),
                "comparison": a.comparison.symbol(),
                "threshold": a.threshold,
                "period_seconds": a.period_seconds,
                "evaluation_periods": a.evaluation_periods,
                "datapoints_to_alarm": a.datapoints_to_alarm,
            }));
        }
        let history: Vec<Value> = reader
            .transitions(None, history)?
            .into_iter()
            .map(|t| {
                json!({"id": t.id, "alarm": t.alarm, "from": t.from, "to": t.to,
                       "at_ms": t.at_ms, "time": fmt_ts(t.at_ms), "reason": t.reason})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"alarms": alarms, "history": history}))?
        );
        return Ok(());
    }
    println!("ALARM               STATE               SINCE                     CONDITION");
    for a in &catalog.alarms {
        let last = reader.transitions(Some(&a.name), 1)?;
        let (state, since) = last
            .first()
            .map(|t| (t.to.clone(), fmt_ts(t.at_ms)))
            .unwrap_or_else(|| ("INSUFFICIENT_DATA".into(), "-".into()));
        println!(
            "{:<19} {:<19} {:<25} {} {} {} {} for {} of {} x {} s",
            a.name,
            state,
            since,
            a.metric_name,
            a.statistic,
            a.comparison.symbol(),
            a.threshold,
            a.datapoints_to_alarm,
            a.evaluation_periods,
            a.period_seconds
        );
    }
    println!("\nHISTORY (newest first)");
    for t in reader.transitions(None, history)? {
        println!(
            "{}  {:<19} {:>17} -> {:<17} {}",
            fmt_ts(t.at_ms),
            t.alarm,
            t.from,
            t.to,
            t.reason
        );
    }
    Ok(())
}

pub fn deploy(state_dir: &Path, args: DeployArgs) -> Result<()> {
    let env = parse_env(&args.env, "--env")?;
    let wait_timeout =
        parse_duration(&args.timeout).map_err(|e| usage(format!("--timeout: {e}")))?;
    let client = Client::connect(state_dir)?;
    let body = json!({
        "env": env,
        "unset": args.unset,
        "version": args.version,
        "rev": args.rev,
        "description": args.description,
        "rollback_to": args.rollback_to,
    });
    if let Some(rev) = &args.rev {
        eprintln!("the environment builds demo-app at {rev} (release) before rolling it out...");
    }
    // A revision is built by the environment before it answers: allow for a build.
    let timeout = if args.rev.is_some() { 30 * 60 } else { 30 };
    let d = client.post_with_timeout("/deployments", &body, Duration::from_secs(timeout))?;
    let id = d["id"].as_str().unwrap_or("").to_string();
    let changes: Vec<String> = d["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c["key"].as_str().unwrap_or(""),
                c["from"].as_str().unwrap_or("(unset)"),
                c["to"].as_str().unwrap_or("(unset)")
            )
        })
        .collect();
    if !args.json {
        println!(
            "deployment {id} started (previous {})",
            d["previous_id"].as_str().unwrap_or("-")
        );
        for c in changes {
            println!("  {c}");
        }
    }
    if !args.wait {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&d)?);
        } else {
            println!("follow it with `{} status`", bin());
        }
        return Ok(());
    }
    let reader = Reader::open(state_dir)?;
    let deadline = std::time::Instant::now() + wait_timeout;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let dep = reader
            .deployment(&id)?
            .ok_or_else(|| anyhow!("deployment {id} vanished"))?;
        if dep.outcome != demo_model::events::DeploymentOutcome::InProgress {
            if args.json {
                let mut out = d.clone();
                out["outcome"] = json!(dep.outcome.as_str());
                out["reason"] = json!(dep.reason);
                out["finished_ms"] = json!(dep.finished_ms);
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "deployment {id}: {}{}",
                    dep.outcome.as_str(),
                    dep.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                );
            }
            if dep.outcome == demo_model::events::DeploymentOutcome::Completed {
                return Ok(());
            }
            return Err(Exit::failed(format!(
                "deployment {id} did not complete ({})",
                dep.outcome.as_str()
            )));
        }
        if std::time::Instant::now() >= deadline {
            return Err(Exit::timed_out(format!(
                "deployment {id} still in progress after --timeout {} (it goes on; see `{} status`)",
                args.timeout,
                bin()
            )));
        }
    }
}

pub fn stop_task(state_dir: &Path, id: &str) -> Result<()> {
    Client::connect(state_dir)?.post(&format!("/tasks/{id}/stop"), &json!({}))?;
    println!("task {id} is draining and will be replaced");
    Ok(())
}

pub fn faults(state_dir: &Path, path: &str, target: &str) -> Result<()> {
    let c = Client::connect(state_dir)?;
    let r: Value = if path == "/error/reset" && target == "all" {
        c.post("/faults/reset", &json!({}))?
    } else {
        c.post("/faults", &json!({"path": path, "target": target}))?
    };
    for x in r["results"].as_array().into_iter().flatten() {
        println!("{}: HTTP {}", x["task"].as_str().unwrap_or(""), x["status"]);
    }
    Ok(())
}

pub fn scale(state_dir: &Path, count: u32) -> Result<()> {
    Client::connect(state_dir)?.post("/scale", &json!({"count": count}))?;
    println!("desired count set to {count}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_are_validated_all_at_once() {
        let ok = parse_env(&["A=1".into(), "B_2=x=y".into()], "--env").unwrap();
        assert_eq!(ok["B_2"], "x=y");
        let err = parse_env(&["nope".into(), "=1".into(), "A-B=2".into()], "--env").unwrap_err();
        assert_eq!(err.to_string().lines().count(), 3);
        assert!(err.downcast_ref::<UsageError>().is_some());
    }

    #[test]
    fn hints_name_the_binary_as_invoked() {
        assert_eq!(bin_hint("devops-agent-demo"), "devops-agent-demo");
        assert_eq!(
            bin_hint("/work/x/target/release/devops-agent-demo"),
            "cargo run --release --"
        );
        assert_eq!(
            bin_hint("./bin/devops-agent-demo"),
            "./bin/devops-agent-demo"
        );
        assert_eq!(
            bin_hint("/usr/local/bin/devops-agent-demo"),
            "/usr/local/bin/devops-agent-demo"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("m").is_err());
    }
}
