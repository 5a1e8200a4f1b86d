//! The `demo-app` command line: run the service, or probe a running one.
//! Exit codes: 0 ok, 1 unhealthy / drain cut short, 2 bad configuration or usage, 3 bind failure.
//! Shared by the `demo-app` binary and the project CLI's hidden `app` subcommand.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use crate::app::{AppState, HEALTHCHECK_TIMEOUT};
use crate::config::{Config, VARIABLES};
use crate::log::Logger;
use crate::server::{self, Drain};

const USAGE: &str = "usage: demo-app [serve | healthcheck | --help]";

/// Runs the command line with `args` (without the program name).
pub fn main(args: Vec<String>) -> ExitCode {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => serve(),
        ["healthcheck"] => healthcheck(),
        ["--help"] | ["-h"] => {
            println!("{USAGE}\n\nEnvironment:");
            for (name, default, what) in VARIABLES {
                println!("  {name:<28} {what} (default: {default})");
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn healthcheck() -> ExitCode {
    // Reads only PORT: the probe must work even if other variables are odd.
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Err(_) => 3000,
        Ok(Ok(p)) if p != 0 => p,
        Ok(_) => {
            eprintln!("healthcheck: PORT must be 1-65535");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match crate::healthcheck::probe(addr, HEALTHCHECK_TIMEOUT) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo-app: {e}");
            return ExitCode::from(2);
        }
    };
    let log = Logger::new(
        config.log_level,
        &config.version,
        &config.task_id,
        std::io::stdout(),
    );
    let panic_log = log.clone();
    std::panic::set_hook(Box::new(move |info| {
        panic_log
            .error("Panic in request handler")
            .str("panic", &info.to_string())
            .emit();
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo-app: cannot start async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Optional OTLP span export: off unless the standard OTEL_* variables ask for it;
    // a wrong one stops the start with its name, like any other bad configuration.
    let spans = match demo_otlp::Exporter::from_env(
        "demo-app",
        vec![
            ("service.version", config.version.clone()),
            ("service.instance.id", config.task_id.clone()),
            ("deployment.environment.name", config.environment.clone()),
        ],
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo-app: {e}");
            return ExitCode::from(2);
        }
    };
    if spans.is_some() {
        log.info("OTLP span export enabled").emit();
    }
    let state = AppState::with_spans(config, log.clone(), spans);
    let code = runtime.block_on(async {
        let listener = match server::bind(&state).await {
            Ok(l) => l,
            Err(e) => {
                let addr = SocketAddr::new(state.config.host, state.config.port);
                log.error("Cannot bind listener")
                    .str("address", &addr.to_string())
                    .str("error", &e.to_string())
                    .emit();
                eprintln!("demo-app: cannot bind {addr}: {e}");
                return ExitCode::from(3);
            }
        };
        match server::serve(listener, state).await {
            Ok(Drain::Complete) => ExitCode::SUCCESS,
            Ok(Drain::Cut { .. }) => ExitCode::from(1),
            Err(e) => {
                log.error("Server failed")
                    .str("error", &e.to_string())
                    .emit();
                ExitCode::from(1)
            }
        }
    });
    // Blocking threads (CPU spikes, leak allocations) must not delay exit.
    runtime.shutdown_background();
    log.shutdown();
    code
}
