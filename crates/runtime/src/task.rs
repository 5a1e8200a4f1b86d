//! Tasks: `demo-app` processes started like Fargate tasks. Each gets its own
//! `TASK_ID`, a free port (the app binds port 0 and logs the one it got), and
//! its stdout/stderr captured line by line into the log pipeline: stored with
//! the task id, and matched against the catalogue's metric filter.
//!
//! Each task leads its own process group and is told the runtime's pid
//! ([`supervision::PARENT_PID_VAR`]), so that it dies with the runtime; its
//! pid, start time and binary are recorded in the store before it is trusted
//! with anything, so that a later start can find it if it did not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudwatch::FilterPattern;
use demo_model::events::{LogRecord, Stream, TaskEvent, TaskEventKind};
use demo_store::Writer;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::now_ms;
use crate::supervision;

/// What a task runs: one deployment's binary and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub deployment_id: String,
    pub binary: PathBuf,
    /// Arguments before any of the app's own (e.g. `app` when the CLI binary runs the service).
    pub args: Vec<String>,
    pub version: String,
    pub git_sha: String,
    /// Extra environment on top of what every task gets.
    pub env: BTreeMap<String, String>,
}

impl TaskSpec {
    /// The full task environment.
    pub fn environment(&self, task_id: &str) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("ENVIRONMENT", "local"),
            ("FAULTS", "enabled"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.insert("TASK_ID".into(), task_id.into());
        env.insert("APP_VERSION".into(), self.version.clone());
        env.insert("GIT_SHA".into(), self.git_sha.clone());
        env.extend(self.env.clone());
        env
    }
}

/// Why a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    pub task_id: String,
    pub exit_code: Option<i32>,
    pub oom: bool,
    pub reason: String,
}

/// A running task.
#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub spec: Arc<TaskSpec>,
    pub port: u16,
    pub pid: u32,
    pub started_ms: i64,
    /// Lines captured from the task's stdout and stderr.
    pub lines: Arc<AtomicU64>,
    /// Set once the service decided to stop this task.
    pub stopping: AtomicBool,
    /// Last measured CPU seconds and when (for utilisation deltas).
    pub last_cpu: Mutex<Option<(f64, std::time::Instant)>>,
    oom: Arc<AtomicBool>,
    stop: Arc<Notify>,
    kill: Arc<Notify>,
}

impl Task {
    /// Asks the task to stop: SIGTERM, then SIGKILL after the stop timeout.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_one();
    }

    /// Kills the task as the kernel's OOM killer would.
    pub fn oom_kill(&self) {
        self.oom.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// What the log pipeline needs: where lines go and which lines count as errors.
#[derive(Clone)]
pub struct Pipeline {
    pub writer: Writer,
    pub filter: Arc<FilterPattern>,
    /// Lines matching the filter since the collector last read it.
    pub matches: Arc<AtomicU64>,
    /// Lines ingested since the collector last read it (CloudWatch only reports the
    /// filter's default value for periods in which logs were ingested).
    pub ingested: Arc<AtomicU64>,
    /// Task output streams still being read (shutdown waits for them to drain).
    pub open_streams: Arc<AtomicU64>,
}

impl Pipeline {
    /// A pipeline into `writer` counting the lines `filter` matches, every
    /// counter at zero.
    pub fn new(writer: Writer, filter: FilterPattern) -> Pipeline {
        Pipeline {
            writer,
            filter: Arc::new(filter),
            matches: Arc::default(),
            ingested: Arc::default(),
            open_streams: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("task {0} exited before listening")]
    ExitedEarly(String),
    #[error("task {0} did not report a listening port within 10 s")]
    NoPort(String),
}

/// The drain `up` runs on each output stream of each task: reads `reader`
/// line by line until it ends, parses each line (JSON when it is), counts
/// metric-filter matches and ingested lines, and hands every line to the
/// store's writer. `lines` counts the lines read. Public so the pipeline's
/// ceiling can be measured apart from the load that feeds it
/// (`cargo run --release -p demo-runtime --example drain`).
pub async fn drain(
    reader: impl AsyncRead + Unpin,
    task_id: String,
    stream: Stream,
    pipeline: Pipeline,
    lines: Arc<AtomicU64>,
) {
    capture(reader, task_id, stream, pipeline, lines, None).await
}

async fn capture(
    reader: impl AsyncRead + Unpin,
    task_id: String,
    stream: Stream,
    pipeline: Pipeline,
    lines: Arc<AtomicU64>,
    mut port_tx: Option<oneshot::Sender<u16>>,
) {
    pipeline.open_streams.fetch_add(1, Ordering::AcqRel);
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let ts = now_ms();
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        let json: Option<serde_json::Value> = if line.starts_with('{') {
            serde_json::from_str(&line).ok()
        } else {
            None
        };
        if let Some(tx) = port_tx.take() {
            let port = json
                .as_ref()
                .filter(|v| v["message"] == "Server listening")
                .and_then(|v| v["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok());
            match port {
                Some(p) => {
                    let _ = tx.send(p);
                }
                None => port_tx = Some(tx),
            }
        }
        if pipeline.filter.matches_parsed(&line, json.as_ref()) {
            pipeline.matches.fetch_add(1, Ordering::Relaxed);
        }
        pipeline.ingested.fetch_add(1, Ordering::Relaxed);
        lines.fetch_add(1, Ordering::Relaxed);
        pipeline.writer.log(LogRecord::from_parsed(
            ts,
            &task_id,
            stream,
            line,
            json.as_ref(),
        ));
        if pipeline.writer.log_backlog_full() {
            wait_for_room(&pipeline.writer).await;
        }
    }
}

/// How often a paused drain looks at the writer's backlog again.
const ROOM_POLL: Duration = Duration::from_millis(5);

/// Stops reading until the writer has worked its backlog down (see
/// [`Writer::log_backlog_full`]): lines arriving faster than the disk commits them
/// wait in the task's pipe instead of in memory, and the task's own output
/// stalls (`demo-app` never blocks a request on it: it buffers, then drops
/// and counts). The wait is counted in the writer's health.
async fn wait_for_room(writer: &Writer) {
    let start = std::time::Instant::now();
    while !writer.log_backlog_halved() {
        tokio::time::sleep(ROOM_POLL).await;
    }
    writer.log_reader_waited(start.elapsed().as_millis() as u64);
}

/// Starts a task and waits until it listens. Its exit is reported on `exits`.
pub async fn start(
    id: String,
    spec: Arc<TaskSpec>,
    pipeline: Pipeline,
    stop_timeout: Duration,
    exits: mpsc::UnboundedSender<TaskExit>,
) -> Result<Arc<Task>, StartError> {
    let mut cmd = Command::new(&spec.binary);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.environment(&id))
        // demo-app asks for SIGKILL when this process dies (PR_SET_PDEATHSIG).
        // The kernel sends it when the *thread* that spawned the child ends:
        // tasks are spawned from the async runtime's worker threads, which live
        // as long as the runtime does.
        .env(supervision::PARENT_PID_VAR, std::process::id().to_string())
        // Its own group: a Ctrl-C to `up`'s terminal does not reach it before
        // the load balancer drains, and stopping it stops whatever it started.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child: Child = cmd.spawn().map_err(|source| StartError::Spawn {
        binary: spec.binary.display().to_string(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    // Spawn returns after exec: /proc already shows the task's binary.
    let record = demo_store::TaskProcess {
        task_id: id.clone(),
        pid,
        start_ticks: supervision::start_ticks(pid).unwrap_or(0),
        exe: supervision::exe(pid).unwrap_or_else(|| spec.binary.display().to_string()),
        started_ms: now_ms(),
    };
    let writer = pipeline.writer.clone();
    match tokio::task::spawn_blocking(move || writer.task_process(record)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("task {id}: cannot record its process (pid {pid}): {e}"),
        Err(e) => eprintln!("task {id}: cannot record its process (pid {pid}): {e}"),
    }
    let lines = Arc::new(AtomicU64::new(0));
    let (port_tx, port_rx) = oneshot::channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(capture(
            out,
            id.clone(),
            Stream::Stdout,
            pipeline.clone(),
            lines.clone(),
            Some(port_tx),
        ));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(capture(
            err,
            id.clone(),
            Stream::Stderr,
            pipeline.clone(),
            lines.clone(),
            None,
        ));
    }
    let port = tokio::select! {
        p = tokio::time::timeout(Duration::from_secs(10), port_rx) => match p {
            Ok(Ok(p)) => Some(p),
            Ok(Err(_)) => None,
            Err(_) => None,
        },
        _ = child.wait() => None,
    };
    let Some(port) = port else {
        let _ = child.start_kill();
        let code = child.wait().await.ok().and_then(|s| s.code());
        pipeline.writer.task_process_ended(&id, now_ms());
        let reason = match code {
            Some(c) => format!("exited with code {c} before listening (see its logs)"),
            None => "did not report a listening port within 10 s".into(),
        };
        pipeline.writer.task_event(TaskEvent {
            ts_ms: now_ms(),
            task_id: id.clone(),
            kind: TaskEventKind::Stopped,
            exit_code: code,
            reason: Some(reason),
            deployment_id: Some(spec.deployment_id.clone()),
        });
        return Err(if code.is_some() {
            StartError::ExitedEarly(id)
        } else {
            StartError::NoPort(id)
        });
    };
    let task = Arc::new(Task {
        id: id.clone(),
        spec: spec.clone(),
        port,
        pid,
        started_ms: now_ms(),
        lines,
        stopping: AtomicBool::new(false),
        last_cpu: Mutex::new(None),
        oom: Arc::new(AtomicBool::new(false)),
        stop: Arc::new(Notify::new()),
        kill: Arc::new(Notify::new()),
    });
    pipeline.writer.task_event(TaskEvent {
        ts_ms: task.started_ms,
        task_id: id.clone(),
        kind: TaskEventKind::Started,
        exit_code: None,
        reason: Some(format!("listening on 127.0.0.1:{port}, pid {pid}")),
        deployment_id: Some(spec.deployment_id.clone()),
    });
    tokio::spawn(supervise(
        child,
        task.clone(),
        pipeline.writer.clone(),
        stop_timeout,
        exits,
    ));
    Ok(task)
}

async fn supervise(
    mut child: Child,
    task: Arc<Task>,
    writer: Writer,
    stop_timeout: Duration,
    exits: mpsc::UnboundedSender<TaskExit>,
) {
    let status = tokio::select! {
        s = child.wait() => s,
        () = task.stop.notified() => {
            supervision::signal_group(task.pid, rustix::process::Signal::TERM);
            match tokio::time::timeout(stop_timeout, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
        () = task.kill.notified() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    writer.task_process_ended(&task.id, now_ms());
    let oom = task.oom.load(Ordering::Acquire);
    let (exit_code, reason) = match status {
        _ if oom => (
            Some(137),
            "OutOfMemoryError: Container killed due to memory usage".to_string(),
        ),
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            match (s.code(), s.signal()) {
                (Some(0), _) if task.is_stopping() => {
                    (Some(0), "Task stopped by the service (SIGTERM)".into())
                }
                (Some(c), _) if task.is_stopping() => (
                    Some(c),
                    format!("Task stopped by the service; exited with code {c}"),
                ),
                (Some(c), _) => (Some(c), format!("Essential container exited with code {c}")),
                (None, Some(sig)) => (
                    Some(128 + sig),
                    format!("Essential container killed by signal {sig}"),
                ),
                (None, None) => (None, "exited".into()),
            }
        }
        Err(e) => (None, format!("lost track of the process: {e}")),
    };
    writer.task_event(TaskEvent {
        ts_ms: now_ms(),
        task_id: task.id.clone(),
        kind: if oom {
            TaskEventKind::OomKilled
        } else {
            TaskEventKind::Stopped
        },
        exit_code,
        reason: Some(reason.clone()),
        deployment_id: Some(task.spec.deployment_id.clone()),
    });
    let _ = exits.send(TaskExit {
        task_id: task.id.clone(),
        exit_code,
        oom,
        reason,
    });
}
