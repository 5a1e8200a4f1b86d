//! The console: the browser view of a running environment, served by `up` on
//! the control port next to the control API (`http://127.0.0.1:8081/`).
//!
//! It exists because a demo is shown to people: service health, alarms going
//! red and the investigation that follows belong on a page, not in terminal
//! tables and files under `.state/`. Every page renders on the server from the
//! store and the live service (templates in [`maud`]: compile-time checked,
//! escaped by default, no template files to ship); the one small script
//! (`static/console.js`) only refreshes fragments and sends actions. No CDN:
//! everything is in this module.
//!
//! A module of the runtime rather than a crate of its own: its actions and
//! live state need the running [`crate::service::Service`], and the control
//! API that mounts it lives here, so a separate crate would depend on the
//! runtime that depends on it.
//!
//! Access goes through [`crate::control_auth`] like the rest of the control
//! port: a session cookie made from the control token, and a CSRF token on
//! every action, which are POSTs to the control API's own handlers.
//!
//! * [`overview`]: tasks, targets, alarms, deployments, actions; live.
//! * [`alarms`]: one alarm's metric over the last hour, transitions.
//! * [`logs`]: filtered log lines with their JSON fields, live tail.
//! * [`reports`]: investigations of this run and of scenario runs.
//! * [`actions`]: fault presets and the POST endpoints.
//! * [`chart`]: downsampled SVG charts.
//! * [`layout`]: the page shell, errors and the security headers.

mod actions;
mod alarms;
mod chart;
mod layout;
mod logs;
mod overview;
mod reports;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::control::ControlState;

pub use layout::ConsoleError;

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// The console's routes, merged into the control API's router (inside its guard).
pub fn router() -> Router<ControlState> {
    Router::new()
        .route("/", get(overview::page_handler))
        .route("/console", get(|| async { Redirect::to("/") }))
        .route("/console/", get(|| async { Redirect::to("/") }))
        .route("/console/fragment/overview", get(overview::fragment))
        .route("/console/alarms/{name}", get(alarms::page_handler))
        .route("/console/logs", get(logs::page_handler))
        .route("/console/fragment/logs", get(logs::fragment))
        .route("/console/investigations", get(reports::list))
        .route("/console/investigations/{id}", get(reports::show))
        .route(
            "/console/scenarios/{run}/investigations/{id}",
            get(reports::show_scenario),
        )
        .route(
            "/console/static/console.css",
            get(|| asset(CSS, "text/css")),
        )
        .route(
            "/console/static/console.js",
            get(|| asset(JS, "text/javascript")),
        )
        .route("/console/actions/fault", post(actions::fault))
        .route("/console/actions/reset", post(actions::reset))
        .route("/console/actions/deploy", post(actions::deploy))
        .route("/console/actions/rollback", post(actions::rollback))
        .route("/console/actions/stop", post(actions::stop))
        .route("/console/actions/scale", post(actions::scale))
        // Every console answer: no framing, no sniffing, scripts only from here.
        .layer(axum::middleware::map_response(layout::security_headers))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Runs a store read off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConsoleError> + Send + 'static,
) -> Result<T, ConsoleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?
}
