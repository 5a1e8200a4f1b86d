//! Assembles the local environment: locks the state directory (one `up` per
//! directory), binds the load balancer and control ports (so a taken port
//! fails before anything starts), opens the store, stops what an earlier run
//! left behind, carries on with the deployment the earlier run last completed
//! (or records a new initial deployment after it, ids continuing), starts the
//! load balancer on its own thread ([`crate::datapath`]), the scheduler and
//! the collector.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_model::events::{AlarmTransition, DeploymentOutcome};
use demo_store::{RuntimeEvent, Store};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::collector::Collector;
use crate::config::{ConfigError, RuntimeConfig};
use crate::datapath::DataPath;
use crate::lb::{ConnLimits, Health, HealthCheckConfig, LoadBalancer};
use crate::service::Service;
use crate::supervision::{LockError, Orphan, StateLock};
use crate::task::{Pipeline, TaskSpec};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot bind the {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] demo_store::StoreError),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("{0}")]
    Other(String),
}

/// Written to `<state_dir>/runtime.json` so other commands find a running environment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    pub lb: SocketAddr,
    pub control: SocketAddr,
    pub time_scale: f64,
    pub started_ms: i64,
}

pub const RUNTIME_FILE: &str = "runtime.json";

/// What this start continued from, when the state directory had been used before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The earlier run's last deployment (this run's initial deployment follows
    /// it); `None` if it recorded none.
    pub last_deployment: Option<String>,
    /// The highest task number used before.
    pub last_task: u64,
    /// Whether the earlier run recorded a clean stop (else it crashed or was killed).
    pub clean_stop: bool,
    /// Tasks of the earlier run found still running and stopped.
    pub orphans: Vec<Orphan>,
    /// Deployments the earlier run left in progress, now recorded as failed.
    pub interrupted: Vec<String>,
}

pub struct Runtime {
    pub service: Arc<Service>,
    pub store: Store,
    /// `Some` when this start continued an earlier run of the same state directory.
    pub resumed: Option<Resumed>,
    /// Held until the runtime is gone: no second `up` on the same directory.
    _lock: StateLock,
    pub lb_addr: SocketAddr,
    pub control_addr: SocketAddr,
    /// `up`'s own counters (investigations, alerts, collector ticks, data path lag),
    /// served on the control API's `/metrics`.
    pub metrics: Arc<crate::prometheus::UpMetrics>,
    /// The load balancer's thread; stopped after the load balancer has drained.
    data_path: Option<DataPath>,
    transitions: broadcast::Sender<AlarmTransition>,
    alarm_states: Arc<Mutex<Vec<(String, String)>>>,
    open_streams: Arc<std::sync::atomic::AtomicU64>,
    shutdown: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("lb", &self.lb_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(
    what: &'static str,
    host: std::net::IpAddr,
    port: u16,
) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|source| RuntimeError::Bind {
            what,
            addr: SocketAddr::new(host, port),
            source,
        })
}

impl Runtime {
    /// Starts everything; `initial` is what the first deployment runs.
    pub async fn start(
        config: RuntimeConfig,
        binary_args: Vec<String>,
    ) -> Result<Runtime, RuntimeError> {
        config.validate()?;
        // Before anything else: a second `up` must not bind, kill or record anything.
        let lock = StateLock::acquire(&config.state_dir)?;
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        let lb_listener = bind("load balancer", loopback, config.lb_port).await?;
        let control_listener =
            bind("control API", config.control_host, config.control_port).await?;
        let lb_addr = lb_listener
            .local_addr()
            .map_err(|e| RuntimeError::Other(e.to_string()))?;
        let control_addr = control_listener
            .local_addr()
            .map_err(|e| RuntimeError::Other(e.to_string()))?;
        let store = Store::open(&config.state_dir)?;
        let resumed = resume(&store).await?;
        let filter = config
            .catalog
            .metric_filters
            .first()
            .map(|f| cloudwatch::FilterPattern::parse(&f.pattern))
            .transpose()
            .map_err(|e| RuntimeError::Other(format!("catalogue metric filter: {e}")))?
            .unwrap_or_else(|| cloudwatch::FilterPattern::parse("").expect("empty pattern parses"));
        let pipeline = Pipeline::new(store.writer(), filter);
        let open_streams = pipeline.open_streams.clone();
        let hc = &config.catalog.health_check;
        let (health_tx, health_rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(crate::prometheus::UpMetrics::default());
        let data_path = DataPath::start(metrics.lb_loop_lag.clone()).map_err(|e| {
            RuntimeError::Other(format!("cannot start the load balancer's thread: {e}"))
        })?;
        let lb = LoadBalancer::on(
            data_path.handle().clone(),
            HealthCheckConfig {
                path: hc.path.clone(),
                interval: config.scaled_secs(hc.interval_seconds),
                timeout: config.scaled_secs(hc.timeout_seconds),
                healthy_threshold: hc.healthy_threshold,
                unhealthy_threshold: hc.unhealthy_threshold,
            },
            health_tx,
            ConnLimits::default(),
        );
        // Optional OTLP export of the load balancer's spans (off unless the standard
        // OTEL_* variables ask for it; a wrong one stops the start with its name).
        match demo_otlp::Exporter::from_env(
            "devops-agent-lb",
            vec![("service.instance.id", lb_addr.to_string())],
        ) {
            Ok(Some(exporter)) => {
                lb.export_spans(exporter);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(RuntimeError::Other(format!(
                    "load balancer span export: {e}"
                )));
            }
        }
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (last_deployment, last_task) = {
            let reader = store.reader()?;
            (reader.last_deployment_seq()?, reader.last_task_seq()?)
        };
        let previous = match &resumed {
            Some(Resumed {
                last_deployment: Some(id),
                ..
            }) => store.reader()?.deployment(id)?,
            _ => None,
        };
        // A restart carries on with what the service last ran, as ECS keeps a
        // service's deployment when its control plane restarts: no new record.
        let continued = previous
            .as_ref()
            .and_then(|p| continued_spec(p, &config, &binary_args));
        let initial = continued.clone().unwrap_or_else(|| TaskSpec {
            deployment_id: format!("d-{:04}", last_deployment + 1),
            binary: config.app_binary.clone(),
            args: binary_args,
            version: config.version.clone(),
            git_sha: config.git_sha.clone(),
            env: config.env.clone(),
        });
        let service = Service::new(
            config.clone(),
            lb.clone(),
            pipeline.clone(),
            initial,
            exits_tx,
        );
        service.resume_ids(last_deployment, last_task);
        let start = match (&continued, previous) {
            (Some(_), Some(p)) => {
                format!("continues {} (what the previous run last deployed)", p.id)
            }
            (_, previous) => format!(
                "initial deployment {}",
                service.record_initial(previous.as_ref())?.id
            ),
        };
        store.writer().runtime_event(RuntimeEvent {
            ts_ms: crate::now_ms(),
            kind: "started".into(),
            detail: match &resumed {
                None => format!("pid {}; first run of this state directory; {}", std::process::id(), start),
                Some(r) => format!(
                    "pid {}; restart after {} (last deployment {}, last task task-{:04}); {} orphaned tasks stopped; {}",
                    std::process::id(),
                    if r.clean_stop { "a clean stop" } else { "a run that ended without stopping (crash or kill)" },
                    r.last_deployment.as_deref().unwrap_or("none"),
                    r.last_task,
                    r.orphans.len(),
                    start
                ),
            },
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (transitions, _) = broadcast::channel(256);
        let alarm_states = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        // The listener moves to the data path's own reactor: accepting is data path work too.
        let lb_listener = lb_listener
            .into_std()
            .map_err(|e| RuntimeError::Other(format!("load balancer listener: {e}")))?;
        let (lb_serve, lb_stop) = (lb.clone(), shutdown_rx.clone());
        handles.push(data_path.handle().spawn(async move {
            match TcpListener::from_std(lb_listener) {
                Ok(l) => lb_serve.serve(l, lb_stop).await,
                Err(e) => eprintln!("load balancer: cannot listen: {e}"),
            }
        }));
        handles.push(tokio::spawn(service.clone().run(
            exits_rx,
            health_rx,
            shutdown_rx.clone(),
        )));
        let mut collector = Collector::new(service.clone(), pipeline, transitions.clone())
            .map_err(RuntimeError::Other)?;
        let states = alarm_states.clone();
        let tick = config.tick();
        let mut stop = shutdown_rx.clone();
        let tick_metrics = metrics.clone();
        handles.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        let started = std::time::Instant::now();
                        collector.tick().await;
                        tick_metrics.collector_tick(started.elapsed());
                        *states.lock().unwrap_or_else(|e| e.into_inner()) = collector.states();
                    }
                    _ = stop.changed() => if *stop.borrow() { return },
                }
            }
        }));
        let rt = Runtime {
            service: service.clone(),
            store,
            resumed,
            _lock: lock,
            lb_addr,
            control_addr,
            metrics,
            data_path: Some(data_path),
            transitions,
            alarm_states,
            open_streams,
            shutdown,
            handles,
        };
        handles_push_control(&rt, control_listener, shutdown_rx, &config.state_dir)?;
        let info = RuntimeInfo {
            pid: std::process::id(),
            lb: lb_addr,
            control: control_addr,
            time_scale: config.time_scale,
            started_ms: crate::now_ms(),
        };
        let _ = std::fs::write(
            config.state_dir.join(RUNTIME_FILE),
            serde_json::to_vec_pretty(&info).unwrap_or_default(),
        );
        Ok(rt)
    }

    /// Alarm transitions as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<AlarmTransition> {
        self.transitions.subscribe()
    }

    pub fn alarm_states(&self) -> Vec<(String, String)> {
        self.alarm_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the desired number of targets is healthy.
    pub async fn wait_healthy(&self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            let healthy = self
                .service
                .lb
                .targets()
                .iter()
                .filter(|t| t.state() == Health::Healthy)
                .count();
            if healthy >= self.service.desired() as usize {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Drains the load balancer, stops every task, flushes the store.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // The LB finishes in-flight requests before the tasks behind it stop.
        if let Some(h) = self.handles.into_iter().next() {
            let _ = tokio::time::timeout(Duration::from_secs(35), h).await;
        }
        if let Some(dp) = self.data_path.take() {
            let _ = tokio::task::spawn_blocking(move || dp.stop()).await;
        }
        self.service.stop_all().await;
        // Read every task's output to the end before the last flush: no line is lost.
        let start = std::time::Instant::now();
        while self.open_streams.load(std::sync::atomic::Ordering::Acquire) > 0
            && start.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let writer = self.store.writer();
        if let Err(e) = writer.runtime_event(RuntimeEvent {
            ts_ms: crate::now_ms(),
            kind: "stopped".into(),
            detail: format!("pid {}; clean stop", std::process::id()),
        }) {
            eprintln!("runtime: cannot record the stop: {e}");
        }
        writer.flush();
        let _ = std::fs::remove_file(self.service.config.state_dir.join(RUNTIME_FILE));
    }
}

/// Reads what an earlier run of this state directory left: its last ids,
/// whether it stopped cleanly, and stops its orphaned tasks. `None` on a
/// directory never used.
/// What `previous` ran, if this start can run exactly that again: it
/// completed, its binary is at hand (this build, or a revision this state
/// directory built before), the values its record redacts are given again by
/// `--env`, and `--env` asks for nothing it did not run. Otherwise `None`: the
/// start becomes a deployment of its own, recorded after it.
fn continued_spec(
    previous: &demo_model::events::Deployment,
    config: &RuntimeConfig,
    binary_args: &[String],
) -> Option<TaskSpec> {
    if previous.outcome != DeploymentOutcome::Completed {
        return None;
    }
    let (binary, args) = if previous.git_sha == config.git_sha {
        (config.app_binary.clone(), binary_args.to_vec())
    } else {
        let built = config
            .state_dir
            .join("builds")
            .join(format!("demo-app-{}", previous.git_sha));
        (built.is_file().then_some(built)?, Vec::new())
    };
    let mut env = previous.env.clone();
    for (k, v) in env.iter_mut() {
        if v == "<redacted>" {
            v.clone_from(config.env.get(k)?);
        }
    }
    if config.env.iter().any(|(k, v)| env.get(k) != Some(v)) {
        return None;
    }
    Some(TaskSpec {
        deployment_id: previous.id.clone(),
        binary,
        args,
        version: previous.version.clone(),
        git_sha: previous.git_sha.clone(),
        env,
    })
}

async fn resume(store: &Store) -> Result<Option<Resumed>, RuntimeError> {
    let reader = store.reader()?;
    // Read before anything is recorded by this start.
    let clean_stop = reader
        .runtime_events(1)?
        .first()
        .is_some_and(|e| e.kind == "stopped");
    let writer = store.writer();
    let path = store.path().to_path_buf();
    // Stopping an orphan waits for it to exit: off the async threads.
    let orphans = tokio::task::spawn_blocking(move || {
        let reader = demo_store::Reader::open(&path)?;
        crate::supervision::stop_orphans(&reader, &writer)
    })
    .await
    .map_err(|e| RuntimeError::Other(format!("stopping orphaned tasks: {e}")))??;
    // A deployment the earlier run never finished stays in progress forever
    // unless told: its outcome (only) becomes failed, with why.
    let writer = store.writer();
    let mut interrupted = Vec::new();
    for d in reader.deployments(1000)? {
        if d.outcome == DeploymentOutcome::InProgress {
            writer.deployment_finished(
                &d.id,
                crate::now_ms(),
                DeploymentOutcome::Failed,
                Some(format!(
                    "interrupted: the runtime {} before this deployment finished",
                    if clean_stop {
                        "was stopped"
                    } else {
                        "ended (crash or kill)"
                    }
                )),
            )?;
            interrupted.push(d.id);
        }
    }
    let newest = reader.deployments(1)?.into_iter().next();
    let last_task = reader.last_task_seq()?;
    if newest.is_none() && last_task == 0 && orphans.is_empty() {
        return Ok(None);
    }
    // The one this run's ids continue after; the newest record if ids were made by hand.
    let by_seq = format!("d-{:04}", reader.last_deployment_seq()?);
    let last_deployment = match reader.deployment(&by_seq)? {
        Some(d) => Some(d.id),
        None => newest.map(|d| d.id),
    };
    Ok(Some(Resumed {
        last_deployment,
        last_task,
        clean_stop,
        interrupted,
        orphans,
    }))
}

fn handles_push_control(
    rt: &Runtime,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    state_dir: &std::path::Path,
) -> Result<(), RuntimeError> {
    let token = crate::control_auth::ControlToken::create(state_dir).map_err(|e| {
        RuntimeError::Other(format!(
            "cannot write the control token to {}: {e}",
            state_dir.join(crate::control_auth::TOKEN_FILE).display()
        ))
    })?;
    let state = crate::control::ControlState {
        service: rt.service.clone(),
        alarm_states: rt.alarm_states.clone(),
        lb_addr: rt.lb_addr,
        guard: crate::control_auth::Guard {
            token,
            addr: rt.control_addr,
        },
        metrics: rt.metrics.clone(),
        alerts: crate::alerts::AlertSink {
            writer: rt.store.writer(),
            transitions: rt.transitions.clone(),
        },
    };
    tokio::spawn(crate::control::serve(listener, state, shutdown));
    Ok(())
}
