//! The incident investigator: from an alarm transition to a report that names
//! the root cause, with the evidence for every claim.
//!
//! * [`sources`]: one trait per kind of data (logs, metrics, deployments,
//!   tasks, code) and the implementations over the local store and git.
//! * [`analyze`]: log templates, metric change points and trends, route
//!   attribution, deployment/code correlation, task lifecycle.
//! * [`rules`]: one module per root-cause category behind one trait.
//! * [`hypothesis`]: deterministic ranking of the rules' candidates, with
//!   evidence for and against.
//! * [`report`]: the JSON contract (schema in `schema/report.schema.json`),
//!   Markdown and self-contained HTML.
//! * [`Investigator`]: what the runtime and the CLI call. One investigation
//!   per ALARM episode (the transition id is the key), persisted in the store
//!   and written to `<state_dir>/reports/<id>.{json,md,html}`.
//!
//! Root-cause entities (what scenario scoring compares exactly): a
//! deployment id (`d-0002`) for code_change; a route template
//! (`/api/products/{id}`) for application_fault and slow_dependency, and
//! for traffic_surge when one route carries the rise; task ids (`task-0001`,
//! several joined by `,` in sorted order) for memory_leak,
//! health_check_failure and crash_loop, and for cpu_saturation when only
//! some tasks are hot; `service` when a cause is not confined to one of
//! those; none for insufficient_evidence.
//!
//! An investigation opens its own read connection, so it can run on any
//! thread while the runtime keeps writing.

#![forbid(unsafe_code)]

pub mod analyze;
pub mod hypothesis;
pub mod investigate;
pub mod report;
pub mod rules;
pub mod sources;

use std::path::{Path, PathBuf};

use demo_model::events::{AlarmTransition, EpochMs};
use demo_model::{Catalog, now_ms};
use demo_store::{InvestigationRow, Reader, StoreError, Writer};
use serde::Serialize;

pub use report::{Category, Report};
use sources::local_store::LocalStore;
use sources::{CodeSource, SourceError, Sources, git::Git};

/// What an investigator needs. Build, then [`InvestigatorConfig::validate`]
/// (done by [`Investigator::new`]).
#[derive(Debug, Clone)]
pub struct InvestigatorConfig {
    /// The runtime's state directory: `state.db` is read from it, reports are
    /// written to `reports/` under it.
    pub state_dir: PathBuf,
    /// The git repository deployments were built from; `None` makes code
    /// correlation an investigation gap.
    pub repo: Option<PathBuf>,
    /// The alarm catalogue (alarm metric, thresholds, health-check path).
    pub catalog: Catalog,
    /// The runtime's time-scale factor; only used when a transition carries
    /// no period in its reason data.
    pub time_scale: f64,
}

impl InvestigatorConfig {
    /// Every problem, each naming its field; empty when valid. No I/O beyond
    /// checking that the repository path exists.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            p.push(format!(
                "time_scale: {} must be a positive number",
                self.time_scale
            ));
        }
        if let Some(r) = &self.repo
            && !r.exists()
        {
            p.push(format!("repo: {} does not exist", r.display()));
        }
        if self.state_dir.as_os_str().is_empty() {
            p.push("state_dir: must not be empty".into());
        }
        p
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    #[error("invalid investigator configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    #[error(
        "transition {id} of alarm {alarm} goes to {to}, not ALARM: only ALARM episodes are investigated"
    )]
    NotAlarm { id: i64, alarm: String, to: String },
    #[error("transition of alarm {0} has no store id: store it before investigating")]
    Unstored(String),
    #[error("alarm {alarm} has no ALARM transition{}", .at.map(|t| format!(" at or before {}", report::fmt_time(t))).unwrap_or_default())]
    NoTransition { alarm: String, at: Option<EpochMs> },
    #[error("no investigation {0}")]
    NotFound(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("stored report {id} is not valid report JSON: {source}")]
    Json {
        id: String,
        source: serde_json::Error,
    },
}

/// Where a report's three renderings live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportPaths {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// `<state_dir>/reports/<id>.{json,md,html}`.
pub fn report_paths(state_dir: &Path, id: &str) -> ReportPaths {
    let dir = state_dir.join("reports");
    ReportPaths {
        json: dir.join(format!("{id}.json")),
        markdown: dir.join(format!("{id}.md")),
        html: dir.join(format!("{id}.html")),
    }
}

/// One ranked hypothesis, as the caller needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub category: Category,
    pub entity: Option<String>,
    pub confidence: f64,
}

/// The result of [`Investigator::investigate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvestigationOutcome {
    pub id: String,
    pub alarm: String,
    pub transition_id: i64,
    /// False when this episode had already been investigated (the existing
    /// investigation is returned, nothing is recomputed).
    pub created: bool,
    pub paths: ReportPaths,
    pub summary: String,
    pub top: Finding,
    /// The first three hypotheses (fewer if fewer were formed).
    pub top3: Vec<Finding>,
    /// Milliseconds the analysis took (0 for an existing investigation).
    pub duration_ms: u64,
}

/// The investigation id of a transition: stable, so a restart finds it.
pub fn investigation_id(t: &AlarmTransition) -> String {
    format!("inv-{}-{}", t.id, t.alarm)
}

/// Runs investigations against a state directory. `Send + Sync`: share it
/// between the alarm subscriber thread and the CLI.
#[derive(Debug)]
pub struct Investigator {
    cfg: InvestigatorConfig,
    writer: Writer,
}

impl Investigator {
    /// Validates the configuration. `writer` is the runtime's store writer
    /// (investigations are persisted through it).
    pub fn new(cfg: InvestigatorConfig, writer: Writer) -> Result<Investigator, InvestigateError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(InvestigateError::Config(problems));
        }
        Ok(Investigator { cfg, writer })
    }

    pub fn config(&self) -> &InvestigatorConfig {
        &self.cfg
    }

    /// Investigates one stored ALARM transition, or returns the existing
    /// investigation of that episode.
    pub fn investigate(
        &self,
        t: &AlarmTransition,
    ) -> Result<InvestigationOutcome, InvestigateError> {
        if t.to != "ALARM" {
            return Err(InvestigateError::NotAlarm {
                id: t.id,
                alarm: t.alarm.clone(),
                to: t.to.clone(),
            });
        }
        if t.id <= 0 {
            return Err(InvestigateError::Unstored(t.alarm.clone()));
        }
        let store = LocalStore::open(&self.cfg.state_dir)?;
        if let Some(row) = store.reader().investigation_for_transition(t.id)? {
            return self.existing(&row);
        }
        let git = self.cfg.repo.as_deref().map(Git::new);
        let sources = Sources {
            logs: &store,
            metrics: &store,
            deployments: &store,
            tasks: &store,
            code: git.as_ref().map(|g| g as &dyn CodeSource),
        };
        let id = investigation_id(t);
        let started = std::time::Instant::now();
        let report = investigate::investigate(
            &sources,
            &self.cfg.catalog,
            self.cfg.time_scale,
            t,
            &id,
            now_ms(),
        );
        let paths = write_report(&self.cfg.state_dir, &report)?;
        let row = InvestigationRow {
            id: id.clone(),
            alarm: t.alarm.clone(),
            transition_id: t.id,
            created_ms: report.created_ms,
            root_cause: format!(
                "{}{}",
                report.root_cause.category,
                report
                    .root_cause
                    .entity
                    .as_deref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default()
            ),
            summary: report.summary.clone(),
            report_json: serde_json::to_string(&report).map_err(|source| {
                InvestigateError::Json {
                    id: id.clone(),
                    source,
                }
            })?,
        };
        if !self.writer.investigation(row)? {
            // Another thread investigated this episode meanwhile: theirs stands.
            if let Some(row) = store.reader().investigation_for_transition(t.id)? {
                return self.existing(&row);
            }
        }
        let mut out = outcome(&report, paths, true);
        out.duration_ms = started.elapsed().as_millis() as u64;
        Ok(out)
    }

    /// Investigates the latest ALARM transition of `alarm` at or before `at`
    /// (default: the latest).
    pub fn investigate_alarm(
        &self,
        alarm: &str,
        at: Option<EpochMs>,
    ) -> Result<InvestigationOutcome, InvestigateError> {
        let reader = Reader::open(&self.cfg.state_dir)?;
        let t = latest_alarm_transition(&reader, alarm, at)?;
        self.investigate(&t)
    }

    fn existing(&self, row: &InvestigationRow) -> Result<InvestigationOutcome, InvestigateError> {
        let report = parse_report(row)?;
        let paths = report_paths(&self.cfg.state_dir, &row.id);
        if !paths.json.exists() {
            write_report(&self.cfg.state_dir, &report)?;
        }
        Ok(outcome(&report, paths, false))
    }
}

/// The latest ALARM transition of `alarm` at or before `at`.
pub fn latest_alarm_transition(
    reader: &Reader,
    alarm: &str,
    at: Option<EpochMs>,
) -> Result<AlarmTransition, InvestigateError> {
    reader
        .transitions(Some(alarm), 100_000)?
        .into_iter()
        .find(|t| t.to == "ALARM" && at.is_none_or(|at| t.at_ms <= at))
        .ok_or_else(|| InvestigateError::NoTransition {
            alarm: alarm.to_owned(),
            at,
        })
}

fn finding(h: &report::Hypothesis) -> Finding {
    Finding {
        category: h.category,
        entity: h.entity.clone(),
        confidence: h.score,
    }
}

fn outcome(r: &Report, paths: ReportPaths, created: bool) -> InvestigationOutcome {
    InvestigationOutcome {
        id: r.id.clone(),
        alarm: r.alarm.name.clone(),
        transition_id: r.alarm.transition_id,
        created,
        paths,
        summary: r.summary.clone(),
        top: Finding {
            category: r.root_cause.category,
            entity: r.root_cause.entity.clone(),
            confidence: r.root_cause.confidence,
        },
        top3: r.hypotheses.iter().take(3).map(finding).collect(),
        duration_ms: 0,
    }
}

fn parse_report(row: &InvestigationRow) -> Result<Report, InvestigateError> {
    serde_json::from_str(&row.report_json).map_err(|source| InvestigateError::Json {
        id: row.id.clone(),
        source,
    })
}

/// Writes the three renderings; returns their paths.
pub fn write_report(state_dir: &Path, r: &Report) -> Result<ReportPaths, InvestigateError> {
    let paths = report_paths(state_dir, &r.id);
    let dir = state_dir.join("reports");
    std::fs::create_dir_all(&dir).map_err(|source| InvestigateError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let json = serde_json::to_string_pretty(r).map_err(|source| InvestigateError::Json {
        id: r.id.clone(),
        source,
    })?;
    for (path, text) in [
        (&paths.json, json),
        (&paths.markdown, report::markdown::render(r)),
        (&paths.html, report::html::render(r)),
    ] {
        // Write then rename: a reader never sees half a report. The temporary
        // name is unique, so two threads writing the same report (one
        // episode investigated twice at once) never rename each other's file.
        static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| InvestigateError::Io {
                path: path.display().to_string(),
                source,
            })?;
    }
    Ok(paths)
}

/// Output format of [`show`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Markdown,
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "json" => Ok(Format::Json),
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown format {other:?}: expected md, json or html"
            )),
        }
    }
}

/// `reports list`: one line per investigation, newest first.
pub fn render_list(state_dir: &Path, limit: usize) -> Result<String, InvestigateError> {
    let reader = Reader::open(state_dir)?;
    let rows = reader.investigations(limit)?;
    let mut out = format!(
        "{:<32} {:<20} {:<24} {:<40} SUMMARY\n",
        "ID", "ALARM", "CREATED", "ROOT CAUSE"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<20} {:<24} {:<40} {}\n",
            r.id,
            r.alarm,
            report::fmt_time(r.created_ms),
            r.root_cause,
            r.summary
        ));
    }
    Ok(out)
}

/// `reports show ID`: the stored report rendered in `format`. `id` may also
/// be a transition id.
pub fn show(state_dir: &Path, id: &str, format: Format) -> Result<String, InvestigateError> {
    let reader = Reader::open(state_dir)?;
    let row = match reader.investigation(id)? {
        Some(r) => Some(r),
        None => match id.parse::<i64>() {
            Ok(t) => reader.investigation_for_transition(t)?,
            Err(_) => None,
        },
    }
    .ok_or_else(|| InvestigateError::NotFound(id.to_owned()))?;
    let r = parse_report(&row)?;
    Ok(match format {
        Format::Json => {
            serde_json::to_string_pretty(&r).map_err(|source| InvestigateError::Json {
                id: row.id.clone(),
                source,
            })?
        }
        Format::Markdown => report::markdown::render(&r),
        Format::Html => report::html::render(&r),
    })
}
