//! The `logs mine` command's arguments and behaviour, defined once.
//!
//! The project CLI (`devops-agent-demo logs mine`) and the standalone
//! `logmine` binary (which the leave-one-out and throughput scripts build
//! without the whole CLI and its AWS SDK) both flatten [`MineArgs`] and call
//! [`run`], so their flags, defaults, validation and messages cannot drift.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::{LogFormat, Masker, MineError, MineSummary, MinerConfig, Unmatched};

/// What to do with a line the format does not match.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnmatched {
    /// Stop with an error naming the line (a wrong --format should not yield a plausible CSV).
    Fail,
    /// Leave the line out of the CSV (counted and reported).
    Skip,
    /// Mine the whole line as the content (counted and reported).
    WholeLine,
}

impl From<OnUnmatched> for Unmatched {
    fn from(o: OnUnmatched) -> Unmatched {
        match o {
            OnUnmatched::Fail => Unmatched::Fail,
            OnUnmatched::Skip => Unmatched::Skip,
            OnUnmatched::WholeLine => Unmatched::WholeLine,
        }
    }
}

/// Mines log templates from a file and writes CSV `LineId,EventId,EventTemplate`.
#[derive(clap::Args, Debug, Clone)]
pub struct MineArgs {
    /// Loghub-style line format, e.g. '<Date> <Time> <Level> <Component>: <Content>'.
    #[arg(long)]
    pub format: String,
    /// Regex whose matches become <*> before mining (repeatable, applied in order).
    #[arg(long = "mask", value_name = "REGEX", allow_hyphen_values = true)]
    pub masks: Vec<String>,
    /// Do not add the built-in masks (numbers, ids, IPs, hex, UUIDs, paths).
    #[arg(long)]
    pub no_default_masks: bool,
    /// What to do with lines that do not match the format.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_unmatched: OnUnmatched,
    /// Write the CSV here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Similarity threshold, 0-1 [default: 0.8].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Prefix tree depth, at least 3 [default: 4].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Children of a tree node before new tokens share the wildcard branch [default: 100].
    #[arg(long)]
    pub max_children: Option<usize>,
    /// Skip the final split and merge passes.
    #[arg(long)]
    pub no_merge: bool,
    /// A <*> that held only 2..N distinct words splits into one template per word (below 2: off) [default: 3].
    #[arg(long)]
    pub split_max: Option<usize>,
    /// ...when each of those words was seen in at least N messages [default: 1].
    #[arg(long)]
    pub split_min_count: Option<u64>,
    /// A word taking N+ values at one position of otherwise equal templates is a variable (0: off) [default: 4].
    #[arg(long)]
    pub min_values: Option<usize>,
    /// Print lines, templates, wall and CPU seconds and lines per CPU second to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Log file ('-' for stdin).
    pub file: PathBuf,
}

/// Why `logs mine` failed: bad arguments (every problem, before any file is
/// touched) or a failure while reading, mining or writing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}", .0.join("\n"))]
    Usage(Vec<String>),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Mine(#[from] MineError),
}

impl MineArgs {
    /// The miner configuration these flags ask for (defaults for the rest).
    pub fn config(&self) -> MinerConfig {
        let mut c = MinerConfig::default();
        if let Some(v) = self.threshold {
            c.similarity_threshold = v;
        }
        if let Some(v) = self.depth {
            c.depth = v;
        }
        if let Some(v) = self.max_children {
            c.max_children = v;
        }
        if self.no_merge {
            c.merge_pass = false;
        }
        if let Some(v) = self.split_max {
            c.split_max_values = v;
        }
        if let Some(v) = self.split_min_count {
            c.split_min_count = v;
        }
        if let Some(v) = self.min_values {
            c.min_variable_values = v;
        }
        c
    }
}

/// Validates every argument, then mines `args.file` to the CSV output. Notes
/// about unmatched lines (and `--stats`) go to stderr.
pub fn run(args: &MineArgs) -> Result<MineSummary, RunError> {
    let mut problems = Vec::new();
    let format = LogFormat::parse(&args.format)
        .map_err(|e| problems.push(format!("--format: {e}")))
        .ok();
    let masker = Masker::from_patterns(&args.masks)
        .map_err(|e| problems.push(format!("--mask: {e}")))
        .ok();
    let config = args.config();
    if let Err(e) = config.validate() {
        problems.push(format!("miner configuration: {e}"));
    }
    let (Some(format), Some(mut masker), true) = (format, masker, problems.is_empty()) else {
        return Err(RunError::Usage(problems));
    };
    if !args.no_default_masks {
        masker.extend_with_defaults();
    }
    let input: Box<dyn io::BufRead> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = File::open(&args.file)
            .map_err(|e| RunError::Io(format!("cannot open {}: {e}", args.file.display())))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(io::BufWriter::new(File::create(path).map_err(|e| {
                RunError::Io(format!("cannot create {}: {e}", path.display()))
            })?))
        }
        None => Box::new(io::stdout().lock()),
    };
    let unmatched = Unmatched::from(args.on_unmatched);
    let start = Instant::now();
    let cpu_start = cpu_time();
    let summary = crate::mine_to_csv(&format, &masker, input, out, &config, unmatched)?;
    let secs = start.elapsed().as_secs_f64();
    if summary.unmatched > 0 {
        let listed: Vec<String> = summary.first_unmatched.iter().map(u64::to_string).collect();
        eprintln!(
            "{} line(s) did not match the format ({}): lines {}{}",
            summary.unmatched,
            if unmatched == Unmatched::Skip {
                "no row written"
            } else {
                "mined as whole lines"
            },
            listed.join(", "),
            if summary.unmatched as usize > listed.len() {
                ", ..."
            } else {
                ""
            }
        );
    }
    if args.stats {
        // CPU time is what a shared machine cannot inflate; wall time where it is unknown.
        let busy = cpu_time().zip(cpu_start).map_or(secs, |(b, a)| b - a);
        eprintln!(
            "lines={} rows={} templates={} truncated={} wall_seconds={:.6} cpu_seconds={:.6} lines_per_sec={:.0}",
            summary.lines,
            summary.rows,
            summary.templates,
            summary.truncated,
            secs,
            busy,
            summary.lines as f64 / busy.max(1e-9)
        );
    }
    Ok(summary)
}

/// This process's on-CPU time in seconds (Linux `/proc/self/schedstat`,
/// nanosecond resolution), or `None` elsewhere.
fn cpu_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mine: MineArgs,
    }

    #[test]
    fn flags_set_the_configuration_and_defaults_stay() {
        let cli = Cli::try_parse_from([
            "x",
            "--format",
            "<Content>",
            "--threshold",
            "0.7",
            "--depth",
            "5",
            "--no-merge",
            "--min-values",
            "0",
            "f.log",
        ])
        .unwrap();
        let c = cli.mine.config();
        let d = MinerConfig::default();
        assert_eq!(c.similarity_threshold, 0.7);
        assert_eq!(c.depth, 5);
        assert!(!c.merge_pass);
        assert_eq!(c.min_variable_values, 0);
        assert_eq!(c.max_children, d.max_children);
        assert_eq!(c.split_max_values, d.split_max_values);
    }

    #[test]
    fn every_bad_argument_is_named_before_any_file_is_opened() {
        let cli = Cli::try_parse_from([
            "x",
            "--format",
            "<Date> <Date>",
            "--mask",
            "(",
            "--depth",
            "1",
            "/nonexistent/file.log",
        ])
        .unwrap();
        let RunError::Usage(problems) = run(&cli.mine).unwrap_err() else {
            panic!("expected a usage error");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("--format"), "{problems:?}");
        assert!(problems[1].starts_with("--mask"), "{problems:?}");
        assert!(problems[2].contains("depth"), "{problems:?}");
    }

    #[test]
    fn an_unknown_on_unmatched_value_is_refused_by_clap() {
        let e = Cli::try_parse_from(["x", "--format", "<Content>", "--on-unmatched", "drop", "f"])
            .err()
            .expect("refused");
        assert!(e.to_string().contains("drop"), "{e}");
    }
}
