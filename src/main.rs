//! The project CLI. Thin: parses arguments, calls into the crates, maps errors
//! to exit codes ([`commands::Exit`]: 0 ok, 1 failure, 2 usage or configuration
//! error, 3 unknown id, 4 the operation ran and failed, 5 timed out waiting).

mod aws_cmd;
mod client;
mod commands;
mod completions;
mod investigate;
mod prometheus;
mod scenarios;

/// `logs mine`'s arguments, shared with the standalone `logmine` binary.
pub use logmine::cli::MineArgs;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "devops-agent-demo",
    version,
    about = "Run the demo architecture locally, break it on purpose, and investigate why it broke",
    after_help = "Exit status: 0 ok, 1 failure, 2 bad arguments or configuration, 3 unknown id (report, deployment, task), 4 the operation ran and failed (deployment rolled back, scenario missed), 5 timed out waiting."
)]
pub struct Cli {
    /// State directory: database, reports, runtime.json.
    #[arg(long, global = true, default_value = ".state", env = "DEMO_STATE_DIR")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the local environment: load balancer, tasks, log and metric pipeline, alarms.
    Up(UpArgs),
    /// Tasks, targets, alarms and the last deployments of the running environment.
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show stored log lines (or mine templates from a log file with `logs mine`).
    Logs(LogsArgs),
    /// Alarm states and transition history.
    Alarms {
        /// How many transitions to show.
        #[arg(long, default_value_t = 20)]
        history: usize,
        /// Print JSON (`alarms` and `history`) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Roll out a new deployment: configuration change, another build, or a rollback.
    Deploy(DeployArgs),
    /// Task operations.
    #[command(subcommand)]
    Tasks(TasksCmd),
    /// Fault operations on every running task.
    #[command(subcommand)]
    Faults(FaultsCmd),
    /// Change the service's desired task count.
    Scale {
        /// Desired count, 1-10.
        count: u32,
    },
    /// Investigate an alarm's latest episode (or the one at --at) and write a report.
    Investigate {
        /// Alarm name from the catalogue.
        #[arg(long)]
        alarm: String,
        /// The episode at or before this time (RFC 3339 or epoch ms); default: the latest.
        #[arg(long)]
        at: Option<String>,
        /// Time scale the data was recorded at (default: the running environment's, else 1).
        #[arg(long)]
        time_scale: Option<f64>,
        /// The git repository deployments were built from, for code correlation
        /// (default: the repository of the current directory).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stored investigations.
    #[command(subcommand)]
    Reports(ReportsCmd),
    /// Fault scenarios: list, run one end to end, or benchmark them all.
    #[command(subcommand)]
    Scenario(ScenarioCmd),
    /// Prometheus: the catalogue as alerting rules, configuration for a Prometheus
    /// and an Alertmanager that follow the running environment.
    #[command(subcommand)]
    Prometheus(PrometheusCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command to --dir.
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The investigator against AWS: the alarm worker, one investigation by
    /// hand, exporting a local run (docs/deploy-aws.md).
    #[command(subcommand)]
    Aws(Box<aws_cmd::AwsCmd>),
    /// Run the demo-app service in this process (what each task runs).
    #[command(hide = true, disable_help_flag = true)]
    App {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Load balancer port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Control API port (used by status, deploy, ...).
    #[arg(long, default_value_t = 8081)]
    pub control_port: u16,
    /// Address the control API binds to. Loopback by default; every request
    /// needs the token written to <state-dir>/control.token whatever the address.
    #[arg(long, default_value = "127.0.0.1")]
    pub control_host: std::net::IpAddr,
    /// The git repository `deploy --rev` builds revisions from.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Divide every period and interval by this factor (1 = real AWS timings).
    #[arg(long, default_value_t = 10.0)]
    pub time_scale: f64,
    /// Desired task count (default: the catalogue's).
    #[arg(long)]
    pub count: Option<u32>,
    /// Extra task environment, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Size cap of the state database: above it the oldest log lines and samples
    /// are pruned (each pruning logged); at twice it writes fail and `status` says so.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub store_max_mb: u64,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogsArgs {
    #[command(subcommand)]
    pub mine: Option<LogsCmd>,
    /// Only this task.
    #[arg(long)]
    pub task: Option<String>,
    /// Only this level.
    #[arg(long, value_enum, ignore_case = true)]
    pub level: Option<Level>,
    /// Only lines containing this text.
    #[arg(long)]
    pub grep: Option<String>,
    /// How far back, e.g. 30s, 10m, 2h.
    #[arg(long, default_value = "15m")]
    pub since: String,
    /// At most this many lines (the newest).
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line (`ts_ms`, `time`, `task_id`, `line`).
    #[arg(long)]
    pub json: bool,
}

/// A log level, as the tasks write it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "UPPER")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// A report format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Md,
    Json,
    Html,
}

/// Where a fault goes: every task, the oldest, the newest, or one task by id.
fn fault_target(s: &str) -> Result<String, String> {
    let is_task = s
        .strip_prefix("task-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if matches!(s, "all" | "one" | "newest") || is_task {
        Ok(s.to_string())
    } else {
        Err("expected all, one, newest or a task id (task-0001)".into())
    }
}

#[derive(Subcommand, Debug)]
pub enum LogsCmd {
    /// Mine log templates from a file; writes CSV LineId,EventId,EventTemplate.
    Mine(MineArgs),
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Set a task variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Remove a task variable (repeatable).
    #[arg(long = "unset", value_name = "KEY")]
    pub unset: Vec<String>,
    /// Version to report (APP_VERSION).
    #[arg(long)]
    pub version: Option<String>,
    /// Build demo-app from this git revision and deploy that binary.
    #[arg(long, conflicts_with = "rollback_to")]
    pub rev: Option<String>,
    /// Free text recorded with the deployment.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Redeploy exactly what this earlier deployment ran.
    #[arg(long)]
    pub rollback_to: Option<String>,
    /// Wait until the deployment completes or is rolled back (exit 4 if it does not complete).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 5), e.g. 90s, 10m.
    #[arg(long, default_value = "10m", requires = "wait")]
    pub timeout: String,
    /// Print the deployment (and with --wait its outcome) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ReportsCmd {
    /// One line per investigation, newest first.
    List {
        /// A JSON array of the investigations on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One report: md (default), json or html.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScenarioCmd {
    /// The shipped scenarios (or those of --dir).
    List {
        /// List the scenario files of this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A JSON array on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Start a fresh environment, send traffic, apply the steps, wait for the alarms,
    /// investigate each, recover, and score the reports. Exits non-zero on any miss.
    Run {
        /// A shipped scenario's name, or the path of a scenario file (`./my.yaml`).
        scenario: String,
        /// Override the scenario's time scale.
        #[arg(long)]
        time_scale: Option<f64>,
        /// Print the result as one JSON object on stdout (progress stays on stderr).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Run every scenario and score the investigator strictly: expected vs found root
    /// cause per alarm, top-1/top-3, not_blamed, evidence, alarm-to-report latency.
    /// Exits non-zero when any scenario misses.
    Bench {
        #[arg(long)]
        time_scale: Option<f64>,
        /// Run the scenario files of this directory instead of the shipped ones.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only these scenarios (repeatable).
        #[arg(long = "only")]
        only: Vec<String>,
        /// One JSON object per scenario on stdout (the table goes to stderr).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalog: CatalogArg,
    },
}

#[derive(clap::Args, Debug)]
pub struct CatalogArg {
    /// Use this alarm catalogue instead of the committed config/observability.yaml.
    #[arg(long = "catalog")]
    pub path: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TasksCmd {
    /// Stop a task (deregister, drain, SIGTERM); the service replaces it.
    Stop { id: String },
}

#[derive(Subcommand, Debug)]
pub enum FaultsCmd {
    /// Clear every fault on every running task (POST /error/reset).
    Reset,
    /// Call a fault endpoint on running tasks, e.g. `/error/memory-leak?mb=32`.
    Inject {
        path: String,
        /// all, one (the oldest running task), newest, or a task id.
        #[arg(long, default_value = "all", value_parser = fault_target)]
        target: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PrometheusCmd {
    /// The catalogue as Prometheus alerting rules (YAML on stdout): the same
    /// thresholds, periods and `for:`, divided by --time-scale.
    Rules {
        /// Divide every period by this factor (1 = the catalogue's real timings).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// A prometheus.yml for the running environment: up's /metrics and the tasks
    /// through HTTP service discovery, with the control token as credentials_file.
    Config {
        /// Add this rules file (e.g. the output of `prometheus rules`).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Send alerts to this Alertmanager (HOST:PORT).
        #[arg(long)]
        alertmanager: Option<String>,
    },
    /// An alertmanager.yml that routes every alert to the environment's /alerts.
    AlertmanagerConfig,
}

fn main() -> ExitCode {
    // Tasks run this same binary as `devops-agent-demo app`: hand over before clap,
    // so the service parses its own arguments and environment.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("app") {
        // A task of the local runtime dies with it (see demo_app::supervised).
        if let Err(e) = demo_app::supervised::die_with_parent() {
            eprintln!("demo-app: {e}");
            return ExitCode::from(2);
        }
        return demo_app::cli::main(raw[2..].to_vec());
    }
    // `status | head` closes stdout early: end quietly as a shell tool does on SIGPIPE,
    // instead of printing a panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => commands::up(&cli.state_dir, args),
        Command::Status { json } => commands::status(&cli.state_dir, json),
        Command::Logs(args) => match args.mine {
            Some(LogsCmd::Mine(m)) => commands::mine(m),
            None => commands::logs(&cli.state_dir, &args),
        },
        Command::Alarms { history, json } => commands::alarms(&cli.state_dir, history, json),
        Command::Deploy(args) => commands::deploy(&cli.state_dir, args),
        Command::Tasks(TasksCmd::Stop { id }) => commands::stop_task(&cli.state_dir, &id),
        Command::Faults(FaultsCmd::Reset) => {
            commands::faults(&cli.state_dir, "/error/reset", "all")
        }
        Command::Faults(FaultsCmd::Inject { path, target }) => {
            commands::faults(&cli.state_dir, &path, &target)
        }
        Command::Scale { count } => commands::scale(&cli.state_dir, count),
        Command::Investigate {
            alarm,
            at,
            time_scale,
            repo,
            json,
        } => investigate::run(
            &cli.state_dir,
            &alarm,
            at.as_deref(),
            time_scale,
            repo.as_deref(),
            json,
        ),
        Command::Reports(ReportsCmd::List { json }) => investigate::list(&cli.state_dir, json),
        Command::Reports(ReportsCmd::Show { id, format, json }) => investigate::show(
            &cli.state_dir,
            &id,
            if json { ReportFormat::Json } else { format },
        ),
        Command::Prometheus(PrometheusCmd::Rules {
            time_scale,
            catalog,
        }) => scenarios::load_catalog(&catalog).and_then(|c| prometheus::rules(&c, time_scale)),
        Command::Prometheus(PrometheusCmd::Config {
            rules,
            alertmanager,
        }) => prometheus::config(&cli.state_dir, rules.as_deref(), alertmanager.as_deref()),
        Command::Prometheus(PrometheusCmd::AlertmanagerConfig) => {
            prometheus::alertmanager_config(&cli.state_dir)
        }
        Command::Completions { shell } => completions::completions(shell),
        Command::Man { dir } => completions::man(dir.as_deref()),
        Command::Scenario(cmd) => scenarios::command(&cli.state_dir, cmd),
        Command::Aws(cmd) => aws_cmd::command(*cmd),
        Command::App { args } => return demo_app::cli::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<commands::UsageError>().is_some() {
                return ExitCode::from(2);
            }
            match e.downcast_ref::<commands::Exit>() {
                Some(x) => ExitCode::from(x.code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
