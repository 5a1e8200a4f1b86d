//! Log lines from the store, filtered by task, level, route, text and time,
//! newest first, each with its JSON fields; a live tail refreshes the table.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use demo_model::events::{LogRecord, Window};
use demo_store::LogQuery;
use maud::{Markup, html};

use super::layout::{page, time};
use super::{ConsoleError, blocking};
use crate::control::ControlState;
use crate::control_auth::ConsoleSession;

/// The filter form's fields, as they arrive in the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    #[serde(default)]
    task: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    q: String,
    /// How far back: `30s`, `15m`, `2h`, `1d` (default 15m).
    #[serde(default)]
    since: String,
    #[serde(default)]
    limit: Option<usize>,
}

const LEVELS: [&str; 4] = ["ERROR", "WARN", "INFO", "DEBUG"];
const MAX_LIMIT: usize = 1000;

/// `30s`, `15m`, `2h`, `1d` in milliseconds; empty is 15 minutes.
pub fn parse_since(s: &str) -> Result<i64, ConsoleError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(15 * 60_000);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 100_000)
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!("since {s:?}: expected e.g. 30s, 15m, 2h, 1d"))
        })?;
    let unit_ms = match unit {
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(ConsoleError::BadRequest(format!(
                "since {s:?}: the unit must be s, m, h or d"
            )));
        }
    };
    Ok(n * unit_ms)
}

impl LogFilter {
    fn validate(&self) -> Result<(LogQuery, i64, usize), ConsoleError> {
        let level = self.level.trim().to_ascii_uppercase();
        if !level.is_empty() && !LEVELS.contains(&level.as_str()) {
            return Err(ConsoleError::BadRequest(format!(
                "level {:?}: expected one of {}",
                self.level,
                LEVELS.join(", ")
            )));
        }
        let limit = self.limit.unwrap_or(200);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ConsoleError::BadRequest(format!(
                "limit {limit}: must be 1..={MAX_LIMIT}"
            )));
        }
        let since = parse_since(&self.since)?;
        let route = self.route.trim();
        let text = self.q.trim();
        // The store filters on one substring: the text if given, else the route as
        // it appears in the JSON line; the other is checked here on the records.
        let contains = match (text.is_empty(), route.is_empty()) {
            (false, _) => Some(text.to_string()),
            (true, false) => Some(format!("\"route\":{}", serde_json::Value::from(route))),
            (true, true) => None,
        };
        let fetch = if route.is_empty() || text.is_empty() {
            limit
        } else {
            MAX_LIMIT * 5
        };
        let q = LogQuery {
            task_id: Some(self.task.trim().to_string()).filter(|t| !t.is_empty()),
            level: Some(level).filter(|l| !l.is_empty()),
            contains,
            limit: Some(fetch),
        };
        Ok((q, since, limit))
    }

    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("task", &self.task),
            ("level", &self.level),
            ("route", &self.route),
            ("q", &self.q),
            ("since", &self.since),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        parts.join("&")
    }
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn load(st: &ControlState, f: &LogFilter) -> Result<Vec<LogRecord>, ConsoleError> {
    let (q, since, limit) = f.validate()?;
    let route = f.route.trim().to_string();
    let dir = st.service.config.state_dir.clone();
    blocking(move || {
        let reader = demo_store::Reader::open(&dir)?;
        let now = crate::now_ms();
        let mut lines = reader.logs(Window::new(now - since, now + 1), &q)?;
        if !route.is_empty() {
            lines.retain(|l| l.route.as_deref() == Some(route.as_str()));
        }
        lines.reverse();
        lines.truncate(limit);
        Ok(lines)
    })
    .await
}

fn table(lines: &[LogRecord]) -> Markup {
    html! {
        p id="log-count" { (lines.len()) " lines, newest first" }
        div class="scroll" {
            table id="log-lines" class="logs" {
                caption { "Log lines" }
                thead { tr { th scope="col" { "Time" } th scope="col" { "Task" } th scope="col" { "Level" } th scope="col" { "Route" } th scope="col" { "Message and fields" } } }
                tbody {
                    @for l in lines {
                        @let fields = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&l.line).ok();
                        tr class={"level-" (l.level.as_deref().unwrap_or("none").to_ascii_lowercase())} {
                            th scope="row" { (time(l.ts_ms)) }
                            td { (l.task_id) }
                            td { (l.level.as_deref().unwrap_or("")) }
                            td { (l.route.as_deref().unwrap_or("")) @if let Some(s) = l.status { " " (s) } }
                            td {
                                @match &fields {
                                    Some(map) => details {
                                        summary { (l.message.as_deref().unwrap_or("(no message)")) }
                                        dl class="fields" {
                                            @for (k, v) in map {
                                                dt { (k) }
                                                dd { code { @match v { serde_json::Value::String(s) => (s), other => (other.to_string()) } } }
                                            }
                                        }
                                    },
                                    None => code { (l.line) },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/logs`.
pub async fn page_handler(
    State(st): State<ControlState>,
    Query(f): Query<LogFilter>,
    session: Option<Extension<ConsoleSession>>,
) -> Result<Html<String>, ConsoleError> {
    let lines = load(&st, &f).await?;
    let tasks: Vec<String> = st.service.tasks().iter().map(|t| t.id.clone()).collect();
    let session = session.map(|Extension(s)| s);
    Ok(page(
        "Logs",
        session.as_ref(),
        "/console/logs",
        html! {
            h1 { "Logs" }
            form method="get" action="/console/logs" class="filters" aria-label="Filter log lines" {
                label for="f-task" { "Task" }
                input id="f-task" name="task" type="text" list="task-ids" value=(f.task);
                datalist id="task-ids" { @for t in &tasks { option value=(t) {} } }
                label for="f-level" { "Level" }
                select id="f-level" name="level" {
                    option value="" { "any" }
                    @for l in LEVELS { option value=(l) selected[f.level.eq_ignore_ascii_case(l)] { (l) } }
                }
                label for="f-route" { "Route" }
                input id="f-route" name="route" type="text" value=(f.route) placeholder="/api/products/{id}";
                label for="f-q" { "Text" }
                input id="f-q" name="q" type="text" value=(f.q);
                label for="f-since" { "Since" }
                input id="f-since" name="since" type="text" value=(f.since) placeholder="15m" size="5";
                button type="submit" { "Filter" }
                label class="tail" for="tail" { input id="tail" type="checkbox"; " Live tail" }
            }
            section id="log-table" data-refresh={"/console/fragment/logs?" (f.query_string())} data-refresh-when="tail" aria-label="Log lines" {
                (table(&lines))
            }
        },
    ))
}

/// `GET /console/fragment/logs`: the table alone, for the live tail.
pub async fn fragment(State(st): State<ControlState>, Query(f): Query<LogFilter>) -> Response {
    match load(&st, &f).await {
        Ok(lines) => Html(table(&lines).into_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_units_and_names_what_is_wrong() {
        assert_eq!(parse_since("").unwrap(), 900_000);
        assert_eq!(parse_since("30s").unwrap(), 30_000);
        assert_eq!(parse_since("2h").unwrap(), 7_200_000);
        assert!(parse_since("5y").unwrap_err().to_string().contains("unit"));
        assert!(
            parse_since("soon")
                .unwrap_err()
                .to_string()
                .contains("\"soon\"")
        );
    }

    #[test]
    fn a_route_filter_becomes_a_json_substring_and_levels_are_checked() {
        let f = LogFilter {
            route: "/api/products/{id}".into(),
            ..LogFilter::default()
        };
        let (q, _, _) = f.validate().unwrap();
        assert_eq!(
            q.contains.as_deref(),
            Some("\"route\":\"/api/products/{id}\"")
        );
        let bad = LogFilter {
            level: "LOUD".into(),
            ..LogFilter::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("LOUD"));
        let too_many = LogFilter {
            limit: Some(5000),
            ..LogFilter::default()
        };
        assert!(too_many.validate().is_err());
    }
}
