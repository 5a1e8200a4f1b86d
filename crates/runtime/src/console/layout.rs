//! The page shell every console page shares (navigation, the CSRF token for
//! the script, the stylesheet), the error page, and the security headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::control_auth::ConsoleSession;

/// Why a console page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("store: {0}")]
    Store(#[from] demo_store::StoreError),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Store(_) | ConsoleError::Internal(_) => {
                eprintln!("console: {self}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let body = page(
            title,
            None,
            "",
            html! {
                h1 { (title) }
                p role="alert" { (self.to_string()) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (status, body).into_response()
    }
}

/// The sections of the navigation bar.
const NAV: [(&str, &str); 3] = [
    ("/", "Overview"),
    ("/console/logs", "Logs"),
    ("/console/investigations", "Investigations"),
];

/// A whole page: `current` is the navigation entry to mark.
pub fn page(
    title: &str,
    session: Option<&ConsoleSession>,
    current: &str,
    main: Markup,
) -> Html<String> {
    let csrf = session.map(|s| s.csrf.as_str()).unwrap_or("");
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="csrf-token" content=(csrf);
                    // No icon to fetch (a request for /favicon.ico would be refused).
                    link rel="icon" href="data:,";
                    title { (title) " · devops-agent-demo console" }
                    link rel="stylesheet" href="/console/static/console.css";
                    script src="/console/static/console.js" defer {}
                }
                body {
                    header class="top" {
                        a class="brand" href="/" { "devops-agent-demo" }
                        nav aria-label="Console sections" {
                            ul {
                                @for (href, label) in NAV {
                                    li {
                                        @if href == current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    main id="main" { (main) }
                }
            }
        }
        .into_string(),
    )
}

/// Epoch milliseconds as the reports print them (UTC).
pub fn time(ms: i64) -> String {
    // "2026-11-26T13:05:07.123Z" -> "2026-11-26 13:05:07 UTC"
    let t = investigator::report::fmt_time(ms);
    match t.get(..19) {
        Some(s) => format!("{} UTC", s.replace('T', " ")),
        None => t,
    }
}

/// A CSS class for an alarm or health state, so colour is never the only cue
/// (the state is always written out too).
pub fn state_class(state: &str) -> &'static str {
    match state {
        "ALARM" | "unhealthy" => "state bad",
        "OK" | "healthy" => "state good",
        _ => "state other",
    }
}

/// Console answers may not be framed (clickjacking on the action buttons),
/// sniffed, or run scripts from anywhere but here. Reports carry inline
/// styles, hence `style-src 'unsafe-inline'`; no inline script is allowed.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}
