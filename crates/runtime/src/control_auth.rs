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

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
            header::HeaderValue::from_static("Bearer realm=\"devops-agent-demo control API\""),
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

/// The middleware form of [`check`].
pub async fn middleware(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    match check(&guard, req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
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
