//! Investigations: the list (newest first: root cause, confidence, alarm,
//! time) of this environment and of every scenario run kept under
//! `<state>/scenarios/`, and each report rendered in the page by the
//! investigator's own HTML renderer, so its evidence links and charts work
//! as in the file it writes.

use std::path::{Path, PathBuf};

use axum::Extension;
use axum::extract::{Path as UrlPath, State};
use axum::response::Html;
use investigator::report::Report;
use maud::html;

use super::layout::{page, time};
use super::{ConsoleError, blocking};
use crate::control::ControlState;
use crate::control_auth::ConsoleSession;

/// How many investigations a list shows per source.
const LIST_LIMIT: usize = 200;

/// The fields of a stored report the list shows (the rest is not parsed into memory).
#[derive(serde::Deserialize)]
struct Head {
    root_cause: HeadCause,
}

#[derive(serde::Deserialize)]
struct HeadCause {
    category: String,
    entity: Option<String>,
    confidence: f64,
    confidence_label: String,
}

/// One row of the list.
struct Row {
    /// `None` for this environment, else the scenario run's directory name.
    run: Option<String>,
    id: String,
    alarm: String,
    created_ms: i64,
    cause: String,
    confidence: String,
    summary: String,
}

fn rows(dir: &Path, run: Option<&str>) -> Result<Vec<Row>, ConsoleError> {
    let reader = demo_store::Reader::open(dir)?;
    Ok(reader
        .investigations(LIST_LIMIT)?
        .into_iter()
        .map(|i| {
            let head = serde_json::from_str::<Head>(&i.report_json).ok();
            Row {
                run: run.map(str::to_string),
                cause: match &head {
                    Some(h) => match &h.root_cause.entity {
                        Some(e) => format!("{} ({e})", h.root_cause.category),
                        None => h.root_cause.category.clone(),
                    },
                    None => i.root_cause.clone(),
                },
                confidence: head.map_or("?".into(), |h| {
                    format!(
                        "{} ({:.2})",
                        h.root_cause.confidence_label, h.root_cause.confidence
                    )
                }),
                id: i.id,
                alarm: i.alarm,
                created_ms: i.created_ms,
                summary: i.summary,
            }
        })
        .collect())
}

/// Scenario run directories with a store, by name.
fn scenario_runs(state_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("scenarios")) else {
        return Vec::new();
    };
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join(demo_store::DB_FILE).is_file())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    runs.sort();
    runs
}

fn link(r: &Row) -> String {
    match &r.run {
        None => format!("/console/investigations/{}", r.id),
        Some(run) => format!("/console/scenarios/{run}/investigations/{}", r.id),
    }
}

/// `GET /console/investigations`.
pub async fn list(
    State(st): State<ControlState>,
    session: Option<Extension<ConsoleSession>>,
) -> Result<Html<String>, ConsoleError> {
    let dir = st.service.config.state_dir.clone();
    let (mut all, unreadable) = blocking(move || {
        let mut all = rows(&dir, None)?;
        let mut unreadable = Vec::new();
        for (name, path) in scenario_runs(&dir) {
            match rows(&path, Some(&name)) {
                Ok(r) => all.extend(r),
                Err(e) => unreadable.push(format!("{name}: {e}")),
            }
        }
        Ok((all, unreadable))
    })
    .await?;
    all.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    let session = session.map(|Extension(s)| s);
    Ok(page(
        "Investigations",
        session.as_ref(),
        "/console/investigations",
        html! {
            h1 { "Investigations" }
            @if all.is_empty() {
                p { "No investigation yet. One starts when an alarm goes to ALARM; " code { "scenario run NAME" } " leaves its own here too." }
            } @else {
                div class="scroll" {
                    table id="investigations" {
                        caption { "Investigations of this environment and of scenario runs, newest first" }
                        thead { tr {
                            th scope="col" { "Report" } th scope="col" { "Time" } th scope="col" { "Alarm" }
                            th scope="col" { "Root cause" } th scope="col" { "Confidence" } th scope="col" { "Source" } th scope="col" { "Summary" }
                        } }
                        tbody {
                            @for r in &all {
                                tr {
                                    th scope="row" { a href=(link(r)) { (r.id) } }
                                    td { (time(r.created_ms)) }
                                    td { (r.alarm) }
                                    td { (r.cause) }
                                    td { (r.confidence) }
                                    td { (r.run.as_deref().map_or("this environment".to_string(), |n| format!("scenario run {n}"))) }
                                    td { (r.summary) }
                                }
                            }
                        }
                    }
                }
            }
            @if !unreadable.is_empty() {
                h2 { "Scenario runs that could not be read" }
                ul { @for u in &unreadable { li { (u) } } }
            }
        },
    ))
}

/// The stored report rendered by the investigator, with the console's
/// navigation added at the top of its body.
fn render(dir: &Path, id: &str) -> Result<String, ConsoleError> {
    let reader = demo_store::Reader::open(dir)?;
    let row = reader
        .investigation(id)?
        .ok_or_else(|| ConsoleError::NotFound(format!("no investigation {id:?}")))?;
    let report: Report = serde_json::from_str(&row.report_json).map_err(|e| {
        ConsoleError::Internal(format!(
            "investigation {id}: the stored report does not parse: {e}"
        ))
    })?;
    let html = investigator::report::html::render(&report);
    let nav = format!(
        r#"<nav aria-label="Console" style="font-size:14px;margin-bottom:1em"><a href="/">Console overview</a> · <a href="/console/investigations">All investigations</a> · <a href="/console/alarms/{alarm}">Alarm {alarm}</a></nav>"#,
        alarm = investigator::report::html::esc(&report.alarm.name)
    );
    let html = html.replacen("</head>", "<link rel=\"icon\" href=\"data:,\"></head>", 1);
    Ok(match html.find("<body>") {
        Some(i) => format!("{}{nav}{}", &html[..i + 6], &html[i + 6..]),
        None => format!("{nav}{html}"),
    })
}

/// `GET /console/investigations/{id}`.
pub async fn show(
    State(st): State<ControlState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Html<String>, ConsoleError> {
    let dir = st.service.config.state_dir.clone();
    Ok(Html(blocking(move || render(&dir, &id)).await?))
}

/// `GET /console/scenarios/{run}/investigations/{id}`: `run` must be one of
/// the listed run directories (never a path).
pub async fn show_scenario(
    State(st): State<ControlState>,
    UrlPath((run, id)): UrlPath<(String, String)>,
) -> Result<Html<String>, ConsoleError> {
    let dir = st.service.config.state_dir.clone();
    Ok(Html(
        blocking(move || {
            let path = scenario_runs(&dir)
                .into_iter()
                .find(|(name, _)| *name == run)
                .map(|(_, p)| p)
                .ok_or_else(|| ConsoleError::NotFound(format!("no scenario run {run:?}")))?;
            render(&path, &id)
        })
        .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(dir: &Path, id: &str, created_ms: i64, report_json: &str) {
        let store = demo_store::Store::open(dir).unwrap();
        store
            .writer()
            .investigation(demo_store::InvestigationRow {
                id: id.into(),
                alarm: "error-count-high".into(),
                transition_id: created_ms,
                created_ms,
                root_cause: "application_fault".into(),
                summary: "half of the product requests fail".into(),
                report_json: report_json.into(),
            })
            .unwrap();
        store.writer().flush();
    }

    #[test]
    fn scenario_runs_are_listed_by_directory_and_a_bad_report_is_named() {
        let state = tempfile::tempdir().unwrap();
        let run = state.path().join("scenarios/error-spike-20261126T140000");
        let head = r#"{"root_cause": {"category": "application_fault", "entity": "/api/products/{id}", "confidence": 0.9, "confidence_label": "high"}}"#;
        store_with(&run, "inv-1-error-count-high", 1_000, head);
        // A directory without a store is not a run.
        std::fs::create_dir_all(state.path().join("scenarios/empty")).unwrap();
        let runs = scenario_runs(state.path());
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].0, "error-spike-20261126T140000");

        let rows = rows(&runs[0].1, Some(&runs[0].0)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cause, "application_fault (/api/products/{id})");
        assert_eq!(rows[0].confidence, "high (0.90)");
        assert_eq!(
            link(&rows[0]),
            "/console/scenarios/error-spike-20261126T140000/investigations/inv-1-error-count-high"
        );

        // The head parses but is no whole report: rendering says so, naming it.
        let e = render(&runs[0].1, "inv-1-error-count-high").unwrap_err();
        assert!(matches!(e, ConsoleError::Internal(_)), "{e:?}");
        assert!(e.to_string().contains("inv-1-error-count-high"), "{e}");
        let e = render(&runs[0].1, "inv-404").unwrap_err();
        assert!(matches!(e, ConsoleError::NotFound(_)), "{e:?}");
    }
}
