//! `logmine`: the `logs mine` command as a standalone binary, for the
//! benchmark and leave-one-out scripts, which build it without the whole
//! project CLI. Its arguments and behaviour are [`logmine::cli`]'s, the same
//! as `devops-agent-demo logs mine`; exit code 2 for usage or configuration
//! errors, 1 for everything else.

use std::process::ExitCode;

use clap::Parser;
use logmine::cli::{MineArgs, RunError, run};

/// Mines log templates from FILE ('-' for stdin) and writes CSV
/// LineId,EventId,EventTemplate to stdout or --output.
#[derive(Parser)]
#[command(name = "logmine", version)]
struct Cli {
    #[command(flatten)]
    mine: MineArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.mine) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("logmine: {line}");
            }
            ExitCode::from(if matches!(e, RunError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}
