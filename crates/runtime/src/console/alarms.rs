//! One alarm: its metric over the last hour as the alarm sees it (its
//! statistic per scaled period) with the threshold, the periods it spent in
//! ALARM shaded, deployment markers, and its transition history with the
//! investigation each ALARM opened.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Html;
use cloudwatch::{Sample, period_statistics, scaled_period_ms};
use demo_model::events::{SERVICE_DIMENSION, Window};
use maud::html;

use super::chart::{Chart, MAX_POINTS, downsample};
use super::layout::{page, state_class, time};
use super::{ConsoleError, blocking};
use crate::control::ControlState;
use crate::control_auth::ConsoleSession;

/// How far back the chart looks.
pub const WINDOW_MS: i64 = 3_600_000;

/// Time ranges in ALARM within `[start, end)`, from transitions newest first.
pub fn alarm_ranges(
    transitions_newest_first: &[demo_model::events::AlarmTransition],
    start: i64,
    end: i64,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for t in transitions_newest_first.iter().rev() {
        match (open, t.to == "ALARM") {
            (None, true) => open = Some(t.at_ms),
            (Some(from), false) => {
                out.push((from, t.at_ms));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(from) = open {
        out.push((from, end));
    }
    out.into_iter()
        .filter(|&(a, b)| b > start && a < end)
        .map(|(a, b)| (a.max(start), b.min(end)))
        .collect()
}

/// `GET /console/alarms/{name}`.
pub async fn page_handler(
    State(st): State<ControlState>,
    Path(name): Path<String>,
    session: Option<Extension<ConsoleSession>>,
) -> Result<Html<String>, ConsoleError> {
    let alarm = st
        .service
        .config
        .catalog
        .alarms
        .iter()
        .find(|a| a.name == name)
        .cloned()
        .ok_or_else(|| ConsoleError::NotFound(format!("no alarm {name:?} in the catalogue")))?;
    let dir = st.service.config.state_dir.clone();
    let period_ms = scaled_period_ms(alarm.period_seconds, st.service.config.time_scale);
    let state = st
        .alarm_states
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| "INSUFFICIENT_DATA".into());
    let a = alarm.clone();
    let (chart, history) = blocking(move || {
        let reader = demo_store::Reader::open(&dir)?;
        let end = crate::now_ms();
        let start = end - WINDOW_MS;
        let samples: Vec<Sample> = reader
            .samples(
                &a.namespace,
                &a.metric_name,
                SERVICE_DIMENSION,
                Window::new(start, end),
            )?
            .into_iter()
            .map(|m| Sample::with_count(m.ts_ms, m.value, m.count))
            .collect();
        let points: Vec<(i64, f64)> =
            period_statistics(&samples, a.statistic, period_ms, start, end)
                .into_iter()
                .map(|d| (d.timestamp_ms, d.value))
                .collect();
        let history = reader.transitions(Some(&a.name), 200)?;
        let mut with_reports = Vec::with_capacity(history.len());
        for t in history {
            let report = if t.to == "ALARM" {
                reader.investigation_for_transition(t.id)?.map(|i| i.id)
            } else {
                None
            };
            with_reports.push((t, report));
        }
        let transitions: Vec<_> = with_reports.iter().map(|(t, _)| t.clone()).collect();
        let markers = reader
            .deployments(100)?
            .into_iter()
            .filter(|d| d.started_ms >= start)
            .map(|d| (d.started_ms, d.id))
            .collect();
        let chart = Chart {
            title: format!(
                "{} {} per {} s period over the last hour, threshold {} {}",
                a.metric_name,
                a.statistic,
                period_ms as f64 / 1000.0,
                a.comparison.symbol(),
                a.threshold
            ),
            start_ms: start,
            end_ms: end,
            points: downsample(&points, start, end, MAX_POINTS),
            threshold: Some(a.threshold),
            shaded: alarm_ranges(&transitions, start, end),
            markers,
        };
        Ok((chart, with_reports))
    })
    .await?;
    let session = session.map(|Extension(s)| s);
    Ok(page(
        &format!("Alarm {name}"),
        session.as_ref(),
        "",
        html! {
            h1 { "Alarm " (name) }
            p { span class=(state_class(&state)) data-state=(state) { (state) } " · " (alarm.description) }
            p { (alarm.namespace) " " code { (alarm.metric_name) } ", " (alarm.statistic) " " (alarm.comparison.symbol()) " " (alarm.threshold) " " (alarm.unit)
                " over " (alarm.datapoints_to_alarm) " of " (alarm.evaluation_periods) " periods of " (alarm.period_seconds) " s (" (period_ms as f64 / 1000.0) " s at this time scale)" }
            figure {
                (chart.render())
                figcaption { "The alarm's metric, one value per period (the maximum of each bucket when an hour holds more than " (MAX_POINTS) " periods). Red bands: in ALARM. Dashed lines: deployments." }
            }
            h2 { "Transitions" }
            @if history.is_empty() {
                p { "No transition recorded yet." }
            } @else {
                div class="scroll" {
                    table id="transitions" {
                        caption { "State changes of " (name) ", newest first" }
                        thead { tr { th scope="col" { "Time" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Reason" } th scope="col" { "Investigation" } } }
                        tbody {
                            @for (t, report) in &history {
                                tr {
                                    th scope="row" { (time(t.at_ms)) }
                                    td { (t.from) }
                                    td { span class=(state_class(&t.to)) { (t.to) } }
                                    td { (t.reason) }
                                    td { @if let Some(id) = report { a href={"/console/investigations/" (id)} { (id) } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_model::events::AlarmTransition;

    fn t(at_ms: i64, to: &str) -> AlarmTransition {
        AlarmTransition {
            id: at_ms,
            alarm: "error-count-high".into(),
            from: String::new(),
            to: to.into(),
            at_ms,
            reason: String::new(),
            reason_data: serde_json::Value::Null,
        }
    }

    #[test]
    fn alarm_ranges_are_clipped_to_the_window_and_an_open_one_runs_to_its_end() {
        // Newest first, as the store returns them.
        let h = vec![
            t(900, "ALARM"),
            t(700, "OK"),
            t(500, "ALARM"),
            t(300, "OK"),
            t(100, "ALARM"),
        ];
        assert_eq!(
            alarm_ranges(&h, 200, 1000),
            vec![(200, 300), (500, 700), (900, 1000)]
        );
        assert_eq!(alarm_ranges(&h[1..], 600, 1000), vec![(600, 700)]);
        assert!(alarm_ranges(&[t(100, "OK")], 0, 1000).is_empty());
    }
}
