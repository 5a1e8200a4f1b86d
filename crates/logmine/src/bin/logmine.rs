//! `logmine`: the `logs mine` command as a standalone binary, for the
//! benchmark script and for use before the project CLI grows the subcommand.
//! Thin: parses flags, calls [`logmine::mine_to_csv`], maps errors to exit
//! codes (2 for usage or configuration errors, 1 for everything else).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::process::ExitCode;
use std::time::Instant;

use logmine::{LogFormat, Masker, MinerConfig, Unmatched, mine_to_csv};

const USAGE: &str = "\
usage: logmine --format FMT [--mask REGEX]... [options] FILE

Mines log templates from FILE ('-' for stdin) and writes CSV
LineId,EventId,EventTemplate to stdout or --output.

  --format FMT         loghub-style line format, e.g. '<Date> <Time> <Level> <Component>: <Content>'
  --mask REGEX         replace matches with <*> before mining (repeatable; applied in order)
  --no-default-masks   do not append the built-in masks (numbers, ids, IPs, hex, UUIDs, paths)
  --on-unmatched P     fail (default) | skip | whole-line, for lines that do not match FMT
  --output OUT         write the CSV to OUT instead of stdout
  --threshold X        similarity threshold, 0-1 (default 0.8)
  --depth N            prefix tree depth, >= 3 (default 4)
  --max-children N     tree fan-out before the wildcard branch (default 100)
  --no-merge           skip the final split and merge passes
  --split-max N        a <*> that held only 2..N distinct words splits into one template per word (default 3, below 2 = off)
  --split-min-count N  ...each of those words seen in N+ messages (default 1)
  --min-values N       a word taking N+ values at one position of otherwise equal templates is a variable (default 4, 0 = off)
  --stats              print lines, templates, wall and CPU seconds, lines per CPU second to stderr
";

struct Args {
    format: String,
    masks: Vec<String>,
    default_masks: bool,
    unmatched: Unmatched,
    output: Option<String>,
    input: String,
    config: MinerConfig,
    stats: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut format = None;
    let mut input = None;
    let mut args = Args {
        format: String::new(),
        masks: Vec::new(),
        default_masks: true,
        unmatched: Unmatched::Fail,
        output: None,
        input: String::new(),
        config: MinerConfig::default(),
        stats: false,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--format" => format = Some(value("--format")?),
            "--mask" => args.masks.push(value("--mask")?),
            "--no-default-masks" => args.default_masks = false,
            "--on-unmatched" => {
                args.unmatched = match value("--on-unmatched")?.as_str() {
                    "fail" => Unmatched::Fail,
                    "skip" => Unmatched::Skip,
                    "whole-line" => Unmatched::WholeLine,
                    other => {
                        return Err(format!(
                            "--on-unmatched must be fail, skip or whole-line, got {other:?}"
                        ));
                    }
                }
            }
            "--output" => args.output = Some(value("--output")?),
            "--threshold" => {
                let v = value("--threshold")?;
                args.config.similarity_threshold = v
                    .parse()
                    .map_err(|_| format!("--threshold must be a number, got {v:?}"))?;
            }
            "--depth" => {
                let v = value("--depth")?;
                args.config.depth = v
                    .parse()
                    .map_err(|_| format!("--depth must be an integer, got {v:?}"))?;
            }
            "--max-children" => {
                let v = value("--max-children")?;
                args.config.max_children = v
                    .parse()
                    .map_err(|_| format!("--max-children must be an integer, got {v:?}"))?;
            }
            "--no-merge" => args.config.merge_pass = false,
            "--split-max" => {
                let v = value("--split-max")?;
                args.config.split_max_values = v
                    .parse()
                    .map_err(|_| format!("--split-max must be an integer, got {v:?}"))?;
            }
            "--split-min-count" => {
                let v = value("--split-min-count")?;
                args.config.split_min_count = v
                    .parse()
                    .map_err(|_| format!("--split-min-count must be an integer, got {v:?}"))?;
            }
            "--min-values" => {
                let v = value("--min-values")?;
                args.config.min_variable_values = v
                    .parse()
                    .map_err(|_| format!("--min-values must be an integer, got {v:?}"))?;
            }
            "--stats" => args.stats = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if input.is_none() => input = Some(a),
            _ => return Err(format!("unexpected argument {a:?} (only one FILE)")),
        }
    }
    args.format = format.ok_or("--format is required")?;
    args.input = input.ok_or("FILE is required")?;
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("logmine: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Validate everything before touching any file.
    let mut problems = Vec::new();
    let format = LogFormat::parse(&args.format)
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    let masker = Masker::from_patterns(&args.masks)
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    if let Err(e) = args.config.validate() {
        problems.push(e.to_string());
    }
    let (Some(format), Some(mut masker)) = (format, masker) else {
        for p in &problems {
            eprintln!("logmine: {p}");
        }
        return ExitCode::from(2);
    };
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("logmine: {p}");
        }
        return ExitCode::from(2);
    }
    if args.default_masks {
        masker.extend_with_defaults();
    }
    match run(&args, &format, &masker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmine: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, format: &LogFormat, masker: &Masker) -> Result<(), String> {
    let input: Box<dyn io::BufRead> = if args.input == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = File::open(&args.input).map_err(|e| format!("cannot open {}: {e}", args.input))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let start = Instant::now();
    let cpu_start = cpu_time();
    let summary = mine_to_csv(format, masker, input, out, &args.config, args.unmatched)
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    // CPU time is what a shared machine cannot inflate; fall back to wall time.
    let cpu = cpu_time().zip(cpu_start).map(|(b, a)| b - a);
    if summary.unmatched > 0 {
        let listed: Vec<String> = summary.first_unmatched.iter().map(u64::to_string).collect();
        eprintln!(
            "logmine: {} line(s) did not match the format ({}): lines {}{}",
            summary.unmatched,
            if args.unmatched == Unmatched::Skip {
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
        let busy = cpu.unwrap_or(secs);
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
    Ok(())
}

/// This process's on-CPU time in seconds (Linux `/proc/self/schedstat`,
/// nanosecond resolution), or `None` elsewhere.
fn cpu_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}
