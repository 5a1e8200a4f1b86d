//! Service configuration, read from the environment in two stages: `from_env`
//! collects raw strings and validates all of them with no I/O, reporting every
//! bad variable in one message, so a misconfigured task exits before binding a
//! port.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::log::Level;

/// Whether the fault endpoints answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    Enabled,
    Disabled,
}

/// Upper bounds on every fault, so an injected fault cannot take down the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultLimits {
    /// Longest delay any fault may inject (`/error/timeout`, latency fault).
    pub max_delay: Duration,
    /// Largest single `/error/memory-leak` call, in MiB.
    pub max_leak_mb_per_call: u64,
    /// Largest total leaked memory, in MiB.
    pub max_leak_mb_total: u64,
    /// Longest `/error/cpu-spike`.
    pub max_cpu_seconds: u64,
    /// Most busy threads all CPU spikes together may run.
    pub max_cpu_threads: u32,
    /// Longest a persistent fault (error rate, latency, disabled health) lasts before it expires.
    pub max_duration: Duration,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub version: String,
    pub git_sha: String,
    pub environment: String,
    pub task_id: String,
    pub log_level: Level,
    pub faults: FaultMode,
    /// Shared secret required in `x-fault-token` when set. Never logged.
    pub fault_token: Option<String>,
    pub limits: FaultLimits,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
    /// Requests running longer than this answer 504.
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// Client connection limits: header read and idle timeouts, maximum open connections.
    pub connections: demo_netlimits::ConnLimits,
    /// Which pricing engine `POST /api/quote` uses.
    pub quote_engine: QuoteEngine,
}

/// The quote pricing engine. `v2` adds volume discount tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteEngine {
    V1,
    V2,
}

// Hand-written so the fault token can never reach a log through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("version", &self.version)
            .field("git_sha", &self.git_sha)
            .field("environment", &self.environment)
            .field("task_id", &self.task_id)
            .field("log_level", &self.log_level)
            .field("faults", &self.faults)
            .field(
                "fault_token",
                &self.fault_token.as_ref().map(|_| "<redacted>"),
            )
            .field("limits", &self.limits)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("connections", &self.connections)
            .field("quote_engine", &self.quote_engine)
            .finish()
    }
}

/// Every variable the service reads, with its default and meaning (also the README's table).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("HOST", "0.0.0.0", "address to bind"),
    (
        "PORT",
        "3000",
        "port to bind (0 = any free port, logged at start-up)",
    ),
    (
        "APP_VERSION",
        "the crate version",
        "version reported by / and app_info",
    ),
    ("GIT_SHA", "unknown", "commit the binary was built from"),
    ("ENVIRONMENT", "local", "deployment environment name"),
    ("TASK_ID", "local-<pid>", "replica identity (ECS task id)"),
    ("LOG_LEVEL", "info", "error | warn | info | debug"),
    (
        "FAULTS",
        "disabled",
        "enabled | disabled: whether /error/* endpoints act",
    ),
    (
        "FAULT_TOKEN",
        "(none)",
        "if set (>= 16 chars), /error/* require header x-fault-token",
    ),
    ("FAULT_MAX_DELAY_MS", "30000", "cap on injected delays"),
    (
        "FAULT_MAX_LEAK_MB_PER_CALL",
        "64",
        "cap on one memory-leak call",
    ),
    (
        "FAULT_MAX_LEAK_MB_TOTAL",
        "1024",
        "cap on all leaked memory",
    ),
    ("FAULT_MAX_CPU_SECONDS", "300", "cap on one cpu-spike"),
    (
        "FAULT_MAX_CPU_THREADS",
        "4",
        "cap on busy threads of all cpu-spikes",
    ),
    (
        "FAULT_MAX_DURATION_S",
        "3600",
        "cap on how long a persistent fault lasts",
    ),
    (
        "SHUTDOWN_GRACE_MS",
        "25000",
        "drain time after SIGTERM (ECS kills at 30 s)",
    ),
    (
        "REQUEST_TIMEOUT_MS",
        "35000",
        "requests running longer answer 504",
    ),
    (
        "MAX_BODY_BYTES",
        "65536",
        "larger request bodies answer 413",
    ),
    (
        "MAX_CONNECTIONS",
        "1024",
        "open client connections at most; more wait to be accepted",
    ),
    (
        "HEADER_READ_TIMEOUT_MS",
        "10000",
        "a connection that sends no complete request head (or stays idle between requests) this long is closed",
    ),
    (
        "IDLE_TIMEOUT_MS",
        "60000",
        "a connection on which no byte moves this long is closed; must exceed REQUEST_TIMEOUT_MS (default: 60000, or REQUEST_TIMEOUT_MS + 1000 if longer)",
    ),
];

/// All problems found in the environment, one per variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n  - {}", .0.len(), .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

struct Reader<'a> {
    env: &'a HashMap<String, String>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.env.get(name).map(String::as_str)
    }

    fn string(&mut self, name: &str, default: &str) -> String {
        match self.raw(name) {
            None => default.to_string(),
            Some(v) if v.trim().is_empty() => {
                self.problems.push(format!("{name}: must not be empty"));
                default.to_string()
            }
            Some(v) if v.len() > 128 || v.chars().any(char::is_control) => {
                self.problems
                    .push(format!("{name}: must be at most 128 printable characters"));
                default.to_string()
            }
            Some(v) => v.to_string(),
        }
    }

    fn number<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => n,
            _ => {
                self.problems.push(format!(
                    "{name}: {v:?} is not a whole number in {min}..={max}"
                ));
                default
            }
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(&std::env::vars().collect())
    }

    /// Validates a snapshot of the environment; pure, so tests need no process.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut r = Reader {
            env,
            problems: Vec::new(),
        };
        let host = match r.raw("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v.parse().unwrap_or_else(|_| {
                r.problems.push(format!("HOST: {v:?} is not an IP address"));
                IpAddr::from([0, 0, 0, 0])
            }),
        };
        let port = r.number("PORT", 3000u16, 0, u16::MAX);
        let version = r.string("APP_VERSION", env!("CARGO_PKG_VERSION"));
        let git_sha = r.string("GIT_SHA", "unknown");
        let environment = r.string("ENVIRONMENT", "local");
        let task_id = r.string("TASK_ID", &format!("local-{}", std::process::id()));
        let log_level = match r.raw("LOG_LEVEL") {
            None => Level::Info,
            Some(v) => Level::parse(v).unwrap_or_else(|| {
                r.problems.push(format!(
                    "LOG_LEVEL: {v:?} is not one of error, warn, info, debug"
                ));
                Level::Info
            }),
        };
        let faults = match r.raw("FAULTS").map(str::to_ascii_lowercase).as_deref() {
            None | Some("disabled") => FaultMode::Disabled,
            Some("enabled") => FaultMode::Enabled,
            Some(_) => {
                let v = r.raw("FAULTS").unwrap_or_default();
                r.problems
                    .push(format!("FAULTS: {v:?} is not one of enabled, disabled"));
                FaultMode::Disabled
            }
        };
        let fault_token = match r.raw("FAULT_TOKEN") {
            None => None,
            Some(t)
                if t.len() < 16 || t.len() > 256 || !t.chars().all(|c| c.is_ascii_graphic()) =>
            {
                // The value itself is a secret: never echo it.
                r.problems.push(
                    "FAULT_TOKEN: must be 16-256 visible ASCII characters (value not shown)".into(),
                );
                None
            }
            Some(t) => Some(t.to_string()),
        };
        let limits = FaultLimits {
            max_delay: Duration::from_millis(r.number("FAULT_MAX_DELAY_MS", 30_000, 1, 600_000)),
            max_leak_mb_per_call: r.number("FAULT_MAX_LEAK_MB_PER_CALL", 64, 1, 1024),
            max_leak_mb_total: r.number("FAULT_MAX_LEAK_MB_TOTAL", 1024, 1, 16_384),
            max_cpu_seconds: r.number("FAULT_MAX_CPU_SECONDS", 300, 1, 3600),
            max_cpu_threads: r.number("FAULT_MAX_CPU_THREADS", 4, 1, 64),
            max_duration: Duration::from_secs(r.number("FAULT_MAX_DURATION_S", 3600, 1, 86_400)),
        };
        let shutdown_grace =
            Duration::from_millis(r.number("SHUTDOWN_GRACE_MS", 25_000, 0, 600_000));
        let request_timeout =
            Duration::from_millis(r.number("REQUEST_TIMEOUT_MS", 35_000, 100, 3_600_000));
        let max_body_bytes = r.number("MAX_BODY_BYTES", 65_536usize, 64, 16 * 1024 * 1024);
        let connections = demo_netlimits::ConnLimits {
            max_connections: r.number("MAX_CONNECTIONS", 1024usize, 1, 1_000_000),
            header_read_timeout: Duration::from_millis(r.number(
                "HEADER_READ_TIMEOUT_MS",
                10_000,
                100,
                600_000,
            )),
            // Unset: 60 s (the ALB's), or longer than the request timeout if that is longer.
            idle_timeout: Duration::from_millis(r.number(
                "IDLE_TIMEOUT_MS",
                60_000.max(request_timeout.as_millis() as u64 + 1_000),
                100,
                7_200_000,
            )),
        };
        if r.raw("IDLE_TIMEOUT_MS").is_some() && connections.idle_timeout <= request_timeout {
            // A request may legitimately move no byte until it answers.
            r.problems
                .push("IDLE_TIMEOUT_MS: must exceed REQUEST_TIMEOUT_MS".into());
        }
        let quote_engine = match r.raw("QUOTE_ENGINE") {
            None | Some("v1") => QuoteEngine::V1,
            Some("v2") => QuoteEngine::V2,
            Some(v) => {
                r.problems
                    .push(format!("QUOTE_ENGINE: {v:?} is not one of v1, v2"));
                QuoteEngine::V1
            }
        };
        if limits.max_leak_mb_per_call > limits.max_leak_mb_total {
            r.problems
                .push("FAULT_MAX_LEAK_MB_PER_CALL: must not exceed FAULT_MAX_LEAK_MB_TOTAL".into());
        }
        if r.problems.is_empty() {
            Ok(Config {
                host,
                port,
                version,
                git_sha,
                environment,
                task_id,
                log_level,
                faults,
                fault_token,
                limits,
                shutdown_grace,
                request_timeout,
                max_body_bytes,
                connections,
                quote_engine,
            })
        } else {
            Err(ConfigError(r.problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_safe() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(
            c.faults,
            FaultMode::Disabled,
            "faults must be off unless enabled"
        );
        assert!(c.fault_token.is_none());
        assert!(c.shutdown_grace < Duration::from_secs(30));
    }

    #[test]
    fn every_bad_variable_is_named_in_one_error() {
        let err = Config::from_env(&env(&[
            ("PORT", "70000"),
            ("LOG_LEVEL", "loud"),
            ("FAULTS", "maybe"),
            ("FAULT_TOKEN", "short-secret"),
            ("HOST", "localhost:1"),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        for name in ["PORT", "LOG_LEVEL", "FAULTS", "FAULT_TOKEN", "HOST"] {
            assert!(
                msg.contains(&format!("{name}:")),
                "{name} missing from {msg}"
            );
        }
        assert_eq!(err.0.len(), 5);
        assert!(!msg.contains("short-secret"), "token leaked into the error");
    }

    #[test]
    fn connection_limits_are_read_and_the_idle_timeout_outlasts_requests() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.connections, demo_netlimits::ConnLimits::default());
        let c = Config::from_env(&env(&[("REQUEST_TIMEOUT_MS", "90000")])).unwrap();
        assert_eq!(c.connections.idle_timeout, Duration::from_secs(91));
        let c = Config::from_env(&env(&[
            ("MAX_CONNECTIONS", "50"),
            ("HEADER_READ_TIMEOUT_MS", "500"),
        ]))
        .unwrap();
        assert_eq!(c.connections.max_connections, 50);
        assert_eq!(
            c.connections.header_read_timeout,
            Duration::from_millis(500)
        );
        let err = Config::from_env(&env(&[
            ("IDLE_TIMEOUT_MS", "1000"),
            ("MAX_CONNECTIONS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.0.iter().any(|p| p.starts_with("MAX_CONNECTIONS:")),
            "{err}"
        );
        assert!(
            err.0
                .iter()
                .any(|p| p.contains("must exceed REQUEST_TIMEOUT_MS")),
            "{err}"
        );
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let c = Config::from_env(&env(&[("FAULT_TOKEN", "0123456789abcdef-secret")])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("0123456789abcdef-secret"));
        assert!(dbg.contains("<redacted>"));
    }
}
