//! Who may use the control API, and from where.
//!
//! The control API changes what runs (deployments, stopping tasks, faults),
//! so anything that can open a socket on this machine must not be able to
//! drive it. Three checks, in this order:
//!
//! 1. **Host** (when bound to loopback): only `127.0.0.1`, `localhost` or
//!    `[::1]` names are accepted, so a web page cannot reach the API through
//!    DNS rebinding.
//! 2. **Origin** (state-changing methods): a browser's cross-origin request
//!    carries `Origin` / `Sec-Fetch-Site`; anything but our own origin is
//!    refused before it is read.
//! 3. **Token**: every request carries `Authorization: Bearer <token>`; the
//!    runtime writes a fresh random token at start to `<state>/control.token`
//!    with mode 0600, so only the user who owns the state directory (and
//!    root) can read it. The CLI reads it from there.
//!
//! The console (the browser pages under `/` and `/console/`) cannot send a
//! header on navigation, so it also accepts a **session cookie**: opening any
//! console page with `?token=<control token>` (the URL `up` prints) answers a
//! redirect that drops the token from the address and sets an `HttpOnly`,
//! `SameSite=Strict` cookie. The cookie is `nonce.mac` (HMAC-SHA256 keyed by
//! the control token), so it needs no server-side table and dies with the
//! token when `up` restarts. Every state-changing console request must also
//! carry `X-CSRF-Token` (a synchronizer token, HMAC of the session nonce that
//! pages embed) on top of the Origin check. The cookie is accepted on console
//! paths only: the control API proper still takes the bearer token alone.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

/// The token file, in the state directory.
pub const TOKEN_FILE: &str = "control.token";

/// The secret every control request must present.
#[derive(Clone)]
pub struct ControlToken(String);

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(<redacted>)")
    }
}

impl ControlToken {
    /// A new random token, written to `<state_dir>/control.token` (mode 0600).
    pub fn create(state_dir: &Path) -> std::io::Result<ControlToken> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = state_dir.join(TOKEN_FILE);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        // `mode` applies only to a new file: tighten one left by an older run too.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
        Ok(ControlToken(token))
    }

    /// The token of the environment running from `state_dir`.
    pub fn read(state_dir: &Path) -> std::io::Result<String> {
        Ok(std::fs::read_to_string(state_dir.join(TOKEN_FILE))?
            .trim()
            .to_string())
    }

    /// Constant-time comparison with what a request presented.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.0, presented)
    }

    /// HMAC-SHA256 of `purpose:message` keyed by the token, in hex.
    fn mac(&self, purpose: &str, message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "console_session";

/// The header every state-changing console request carries.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A logged-in console session, inserted into the request's extensions for
/// console handlers (they embed [`ConsoleSession::csrf`] in pages).
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub csrf: String,
}

/// Whether `path` belongs to the console (where the session cookie counts).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

impl Guard {
    /// A new session: the `Set-Cookie` value for it.
    pub fn new_session_cookie(&self) -> std::io::Result<String> {
        let mut nonce = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut nonce)?;
        let nonce = hex(&nonce);
        let mac = self.token.mac("session", &nonce);
        Ok(format!(
            "{SESSION_COOKIE}={nonce}.{mac}; Path=/; HttpOnly; SameSite=Strict"
        ))
    }

    /// The session a request's cookie proves, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<ConsoleSession> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == SESSION_COOKIE)
            .map(|(_, v)| v)?;
        let (nonce, mac) = value.split_once('.')?;
        if nonce.is_empty() || !constant_time_eq(&self.token.mac("session", nonce), mac) {
            return None;
        }
        Some(ConsoleSession {
            csrf: self.token.mac("csrf", nonce),
        })
    }
}

/// What the guard needs to know about the listener.
#[derive(Debug, Clone)]
pub struct Guard {
    pub token: ControlToken,
    pub addr: SocketAddr,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({"error": message}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"devops-agent-demo control API\""),
        );
    }
    r
}

/// Why a request is refused, if it is.
pub fn check(
    guard: &Guard,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if guard.addr.ip().is_loopback() && !is_loopback_host(host, guard.addr.port()) {
        return Err((
            StatusCode::FORBIDDEN,
            "the control API answers only to a loopback host name (127.0.0.1, localhost, [::1])",
        ));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD);
    if !safe {
        let site = headers
            .get("sec-fetch-site")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("none");
        let origin_ok = match headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
            None => true,
            Some(o) => o.strip_prefix("http://") == Some(host),
        };
        if !origin_ok || !matches!(site, "none" | "same-origin") {
            return Err((
                StatusCode::FORBIDDEN,
                "cross-origin request refused: the control API does not act for other sites",
            ));
        }
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !guard.token.matches(presented.trim()) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong control token (the CLI reads it from <state>/control.token)",
        ));
    }
    Ok(())
}

/// How a request was let in.
#[derive(Debug, Clone)]
pub enum Access {
    /// `Authorization: Bearer` with the control token (the CLI).
    Bearer,
    /// A console session cookie (and, for state changes, its CSRF token).
    Session(ConsoleSession),
}

/// [`check`] for any path: console paths also accept a session cookie, and a
/// state change under a cookie needs the session's CSRF token in [`CSRF_HEADER`].
pub fn check_request(
    guard: &Guard,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Access, (StatusCode, &'static str)> {
    let bearer = check(guard, method, headers);
    match bearer {
        Ok(()) => return Ok(Access::Bearer),
        Err((StatusCode::UNAUTHORIZED, _)) if is_console_path(path) => {}
        Err(e) => return Err(e),
    }
    let Some(session) = guard.session(headers) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "not logged in: open the console URL `up` printed (it carries ?token=...)",
        ));
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(&session.csrf, presented) {
            return Err((
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (X-CSRF-Token): reload the console page",
            ));
        }
    }
    Ok(Access::Session(session))
}

/// The `token` parameter of a query string, if present.
fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}

/// A console login: `GET <console path>?token=T` with the right token
/// redirects to the same path without the query and sets the session cookie.
fn login(guard: &Guard, req: &Request) -> Option<Response> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) || !is_console_path(req.uri().path()) {
        return None;
    }
    let presented = query_token(req.uri())?;
    // Host (DNS rebinding) is still checked: only the token is replaced.
    let mut with_token = req.headers().clone();
    let bearer = HeaderValue::from_str(&format!("Bearer {presented}")).ok()?;
    with_token.insert(header::AUTHORIZATION, bearer);
    if let Err((status, message)) = check(guard, req.method(), &with_token) {
        return Some(refuse_console(status, message));
    }
    let cookie = match guard.new_session_cookie() {
        Ok(c) => c,
        Err(e) => {
            return Some(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot make a session: {e}"),
            ));
        }
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(req.uri().path()).unwrap_or(HeaderValue::from_static("/")),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

/// A refusal a person reads in the browser: what is wrong and how to log in.
fn refuse_console(status: StatusCode, message: &str) -> Response {
    let message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Console: log in</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#1a1a1a">
<main><h1>devops-agent-demo console</h1>
<p role="alert">{message}</p>
<p>Open the console URL that <code>up</code> printed, or paste the token from <code>&lt;state&gt;/control.token</code>:</p>
<form method="get" action="/"><label for="token">Control token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Log in</button></form></main></body></html>
"#
    );
    let mut r = (status, axum::response::Html(page)).into_response();
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn is_loopback_host(host: &str, port: u16) -> bool {
    // "[::1]:8081" splits at the last colon; "[::1]" alone does not end in a port.
    let (name, given) = match host.rsplit_once(':') {
        Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (n, p.parse::<u16>().ok())
        }
        _ => (host, Some(80)),
    };
    given == Some(port) && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// The middleware form of [`check_request`], with the console's login.
pub async fn middleware(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    if let Some(r) = login(&guard, &req) {
        return r;
    }
    let path = req.uri().path().to_string();
    match check_request(&guard, req.method(), &path, req.headers()) {
        Ok(access) => {
            if let Access::Session(s) = access {
                req.extensions_mut().insert(s);
            }
            next.run(req).await
        }
        Err((status, message))
            if is_console_path(&path) && matches!(*req.method(), Method::GET | Method::HEAD) =>
        {
            refuse_console(status, message)
        }
        Err((status, message)) => refuse(status, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> (Guard, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let token = ControlToken::create(dir.path()).unwrap();
        (
            Guard {
                token,
                addr: "127.0.0.1:8081".parse().unwrap(),
            },
            dir,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn status(r: Result<(), (StatusCode, &'static str)>) -> u16 {
        match r {
            Ok(()) => 200,
            Err((s, _)) => s.as_u16(),
        }
    }

    #[test]
    fn the_token_file_is_private_and_random() {
        let (g, dir) = guard();
        let meta = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let read = ControlToken::read(dir.path()).unwrap();
        assert_eq!(read.len(), 64);
        assert!(g.token.matches(&read));
        let again = ControlToken::create(dir.path()).unwrap();
        assert!(!again.matches(&read), "each start makes a new token");
        assert!(!format!("{again:?}").contains(&ControlToken::read(dir.path()).unwrap()));
    }

    #[test]
    fn requests_without_the_right_token_are_refused() {
        let (g, dir) = guard();
        let token = ControlToken::read(dir.path()).unwrap();
        let ok = format!("Bearer {token}");
        let host = ("host", "127.0.0.1:8081");
        assert_eq!(status(check(&g, &Method::GET, &headers(&[host]))), 401);
        assert_eq!(
            status(check(
                &g,
                &Method::GET,
                &headers(&[host, ("authorization", "Bearer nope")])
            )),
            401
        );
        let wrong_len = format!("Bearer {}", &token[1..]);
        assert_eq!(
            status(check(
                &g,
                &Method::POST,
                &headers(&[host, ("authorization", &wrong_len)])
            )),
            401
        );
        assert_eq!(
            status(check(
                &g,
                &Method::POST,
                &headers(&[host, ("authorization", &ok)])
            )),
            200
        );
        assert_eq!(
            status(check(
                &g,
                &Method::GET,
                &headers(&[("host", "localhost:8081"), ("authorization", &ok)])
            )),
            200
        );
    }

    fn cookie_of(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn a_session_cookie_opens_console_pages_only_and_actions_need_its_csrf_token() {
        let (g, _dir) = guard();
        let set = g.new_session_cookie().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
            "{set}"
        );
        let cookie = cookie_of(&set);
        let host = ("host", "127.0.0.1:8081");
        let with_cookie = headers(&[host, ("cookie", &cookie)]);
        let code = |r: Result<Access, (StatusCode, &'static str)>| match r {
            Ok(Access::Bearer) => 200,
            Ok(Access::Session(_)) => 201,
            Err((s, _)) => s.as_u16(),
        };
        // Console pages take the cookie; the control API proper does not.
        assert_eq!(
            code(check_request(&g, &Method::GET, "/", &with_cookie)),
            201
        );
        assert_eq!(
            code(check_request(
                &g,
                &Method::GET,
                "/console/logs",
                &with_cookie
            )),
            201
        );
        assert_eq!(
            code(check_request(&g, &Method::GET, "/status", &with_cookie)),
            401
        );
        assert_eq!(
            code(check_request(
                &g,
                &Method::POST,
                "/faults/reset",
                &with_cookie
            )),
            401
        );
        // No cookie, a forged one, another token's cookie: refused.
        assert_eq!(
            code(check_request(&g, &Method::GET, "/", &headers(&[host]))),
            401
        );
        let (nonce, _) = cookie.split_once('.').unwrap();
        let forged = headers(&[host, ("cookie", &format!("{nonce}.{}", "0".repeat(64)))]);
        assert_eq!(code(check_request(&g, &Method::GET, "/", &forged)), 401);
        let (other, _d2) = guard();
        let foreign = cookie_of(&other.new_session_cookie().unwrap());
        assert_eq!(
            code(check_request(
                &g,
                &Method::GET,
                "/",
                &headers(&[host, ("cookie", &foreign)])
            )),
            401
        );
        // A POST needs this session's CSRF token, and still our origin.
        let csrf = g.session(&with_cookie).unwrap().csrf;
        let post = "/console/actions/reset";
        assert_eq!(
            code(check_request(&g, &Method::POST, post, &with_cookie)),
            403
        );
        let other_csrf = other
            .session(&headers(&[host, ("cookie", &foreign)]))
            .unwrap()
            .csrf;
        assert_eq!(
            code(check_request(
                &g,
                &Method::POST,
                post,
                &headers(&[host, ("cookie", &cookie), (CSRF_HEADER, &other_csrf)])
            )),
            403
        );
        let good = [
            host,
            ("cookie", cookie.as_str()),
            (CSRF_HEADER, csrf.as_str()),
        ];
        assert_eq!(
            code(check_request(&g, &Method::POST, post, &headers(&good))),
            201
        );
        let mut cross = good.to_vec();
        cross.push(("origin", "http://evil.example"));
        assert_eq!(
            code(check_request(&g, &Method::POST, post, &headers(&cross))),
            403
        );
        let mut rebound = good.to_vec();
        rebound[0] = ("host", "evil.example:8081");
        assert_eq!(
            code(check_request(&g, &Method::GET, "/", &headers(&rebound))),
            403
        );
        // Two sessions get different CSRF tokens; the bearer path is unchanged.
        let second = cookie_of(&g.new_session_cookie().unwrap());
        assert_ne!(
            g.session(&headers(&[("cookie", &second)])).unwrap().csrf,
            csrf
        );
        assert!(!csrf.contains(&ControlToken::read(_dir.path()).unwrap()));
    }

    #[tokio::test]
    async fn logging_in_with_the_token_sets_the_cookie_and_drops_the_token_from_the_address() {
        use tower::ServiceExt;
        let (g, dir) = guard();
        let token = ControlToken::read(dir.path()).unwrap();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "overview" }))
            .route("/status", axum::routing::get(|| async { "status" }))
            .layer(axum::middleware::from_fn_with_state(g.clone(), middleware));
        let get = |uri: &str, cookie: Option<&str>| {
            let mut b = axum::http::Request::get(uri).header("host", "127.0.0.1:8081");
            if let Some(c) = cookie {
                b = b.header("cookie", c);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        let r = app
            .clone()
            .oneshot(get(&format!("/?token={token}"), None))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        let cookie = cookie_of(r.headers()[header::SET_COOKIE].to_str().unwrap());
        let r = app.clone().oneshot(get("/", Some(&cookie))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // A wrong token: a login page that says so, no cookie.
        let r = app
            .clone()
            .oneshot(get("/?token=nope", None))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get(header::SET_COOKIE).is_none());
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<form"));
        // The token in a query string does nothing for the control API proper.
        let r = app
            .oneshot(get(&format!("/status?token={token}"), None))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn browsers_and_rebound_names_are_refused_even_with_the_token() {
        let (g, dir) = guard();
        let ok = format!("Bearer {}", ControlToken::read(dir.path()).unwrap());
        let auth = ("authorization", ok.as_str());
        // DNS rebinding: a hostile name resolving to 127.0.0.1.
        assert_eq!(
            status(check(
                &g,
                &Method::GET,
                &headers(&[("host", "evil.example:8081"), auth])
            )),
            403
        );
        // Right name, wrong port (another local service's origin).
        assert_eq!(
            status(check(
                &g,
                &Method::GET,
                &headers(&[("host", "127.0.0.1:9999"), auth])
            )),
            403
        );
        let host = ("host", "127.0.0.1:8081");
        assert_eq!(
            status(check(
                &g,
                &Method::POST,
                &headers(&[host, auth, ("origin", "http://evil.example")])
            )),
            403
        );
        assert_eq!(
            status(check(
                &g,
                &Method::POST,
                &headers(&[host, auth, ("sec-fetch-site", "cross-site")])
            )),
            403
        );
        assert_eq!(
            status(check(
                &g,
                &Method::POST,
                &headers(&[host, auth, ("origin", "http://127.0.0.1:8081")])
            )),
            200
        );
    }
}
