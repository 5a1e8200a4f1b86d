//! The route table: which handler serves which method on which path, built once at
//! start and looked up once per request.
//!
//! A handler is a plain `fn(Call) -> Reply`. Most answer at once (`Reply::Now`): the
//! request is served without a boxed future, a cloned service or a request extension.
//! Those that wait (a body to read, a sleep, a blocking task) return `Reply::later`,
//! one boxed future. `crate::observe` runs the lookup, the faults, the handler, its
//! timeout and the access log around every request (docs/PERFORMANCE.md, "The service":
//! axum's router cloned two boxed services, boxed three futures and built two request
//! extensions per request, which cost more than the request's own work).
//!
//! What axum's `MethodRouter` did and this keeps: a `GET` route answers `HEAD` too
//! (hyper sends no body for it); a path that exists with another method is a 405 with
//! an `Allow` header (`GET,HEAD,POST`, in axum's order and spelling); an unknown path a
//! 404; `{name}` segments are captured and percent-decoded, and one that does not
//! decode to UTF-8 is the handler's 400, never a panic or a 500.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::AppError;

/// Serves one request.
pub type Handler = fn(Call) -> Reply;

/// A request body the service takes (hyper's `Incoming`; axum's `Body` in tests).
pub trait RequestBody:
    HttpBody<Data = Bytes, Error: Into<axum::BoxError>> + Send + 'static
{
}

impl<B> RequestBody for B where
    B: HttpBody<Data = Bytes, Error: Into<axum::BoxError>> + Send + 'static
{
}

/// What a handler answers: a response now, or a future of one.
pub enum Reply {
    Now(Response),
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Reply {
    /// A handler that must wait: `work` runs as the request's future.
    pub fn later<F, R>(work: F) -> Reply
    where
        F: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        Reply::Later(Box::pin(async move { work.await.into_response() }))
    }
}

impl<T: IntoResponse> From<T> for Reply {
    fn from(r: T) -> Reply {
        Reply::Now(r.into_response())
    }
}

/// One request as its handler gets it.
pub struct Call {
    pub state: Arc<AppState>,
    pub parts: Parts,
    /// The body; `None` when the request has none (most do not: no box for them).
    body: Option<Body>,
    /// The path's `{name}` captures, still percent-encoded (decoded by `param`).
    params: Vec<(Box<str>, Box<str>)>,
}

impl Call {
    /// The query string parsed into `T`; unknown parameters and bad values are 400s
    /// naming the parameter.
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        crate::extract::parse_query(self.parts.uri.query().unwrap_or(""))
    }

    /// The `{name}` segment of the path, percent-decoded; a 400 naming it when it does
    /// not decode to UTF-8.
    pub fn param(&self, name: &str) -> Result<String, AppError> {
        let raw = self
            .params
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
            .ok_or_else(|| AppError::Internal(format!("route has no {{{name}}} segment")))?;
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                AppError::bad_field(name, format!("{raw:?} does not decode to UTF-8 text"))
            })
    }

    /// The whole body, refused with a 413 past `MAX_BODY_BYTES` (also when it arrives
    /// chunked, without a declared length).
    pub async fn body_bytes(&mut self) -> Result<Bytes, AppError> {
        use http_body_util::BodyExt;
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let limit = self.state.config.max_body_bytes;
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(AppError::PayloadTooLarge { limit })
            }
            Err(e) => Err(AppError::BadRequest {
                field: Some("body".into()),
                message: format!("the request body could not be read: {e}"),
            }),
        }
    }
}

/// The handlers of one path, by method.
#[derive(Default)]
pub struct Methods {
    by_method: Vec<(Method, Handler)>,
}

/// A route answering `GET` (and `HEAD`) with `h`.
pub fn get(h: Handler) -> Methods {
    Methods::default().get(h)
}

/// A route answering `POST` with `h`.
pub fn post(h: Handler) -> Methods {
    Methods::default().post(h)
}

impl Methods {
    pub fn get(self, h: Handler) -> Methods {
        self.on(Method::GET, h)
    }

    pub fn post(self, h: Handler) -> Methods {
        self.on(Method::POST, h)
    }

    fn on(mut self, method: Method, h: Handler) -> Methods {
        assert!(
            self.by_method.iter().all(|(m, _)| *m != method),
            "{method} routed twice on one path"
        );
        self.by_method.push((method, h));
        self
    }

    fn find(&self, method: &Method) -> Option<Handler> {
        let exact = self.by_method.iter().find(|(m, _)| m == method);
        let head_as_get = || {
            (*method == Method::HEAD)
                .then(|| self.by_method.iter().find(|(m, _)| *m == Method::GET))
                .flatten()
        };
        exact.or_else(head_as_get).map(|(_, h)| *h)
    }

    /// axum's `Allow` value: the methods in the order routed, `HEAD` after `GET`.
    fn allow(&self) -> HeaderValue {
        let mut names: Vec<&str> = Vec::new();
        for (m, _) in &self.by_method {
            names.push(m.as_str());
            if *m == Method::GET && self.find(&Method::HEAD).is_some() {
                names.push("HEAD");
            }
        }
        HeaderValue::from_str(&names.join(",")).expect("method names are valid header text")
    }
}

struct Route {
    template: &'static str,
    methods: Methods,
    allow: HeaderValue,
    /// `/error/*`: admitted only through `crate::app::gate`.
    gated: bool,
}

/// The route table.
pub struct Routes {
    paths: matchit::Router<usize>,
    routes: Vec<Route>,
    not_found: Handler,
    method_not_allowed: Handler,
}

/// What a request's path and method found.
pub struct Found {
    /// The route's template (`/api/products/{id}`), for metrics and logs; `None` when no
    /// route has the path.
    pub template: Option<&'static str>,
    handler: Handler,
    /// Set on a 405: the methods the path does answer.
    allow: Option<HeaderValue>,
    gated: bool,
    params: Vec<(Box<str>, Box<str>)>,
}

impl Routes {
    /// An empty table: unknown paths go to `not_found`, known paths with another method
    /// to `method_not_allowed`.
    pub fn new(not_found: Handler, method_not_allowed: Handler) -> Routes {
        Routes {
            paths: matchit::Router::new(),
            routes: Vec::new(),
            not_found,
            method_not_allowed,
        }
    }

    /// Routes `template` (`/a/{name}` captures a segment) to `methods`. Panics on a
    /// template the table already has or that conflicts with one, as at start.
    pub fn route(self, template: &'static str, methods: Methods) -> Routes {
        self.add(template, methods, false)
    }

    /// Like `route`, for a route admitted only through `crate::app::gate`.
    pub fn gated(self, template: &'static str, methods: Methods) -> Routes {
        self.add(template, methods, true)
    }

    fn add(mut self, template: &'static str, methods: Methods, gated: bool) -> Routes {
        assert!(
            !methods.by_method.is_empty(),
            "{template}: no method routed"
        );
        if let Err(e) = self.paths.insert(template, self.routes.len()) {
            panic!("route {template}: {e}");
        }
        let allow = methods.allow();
        self.routes.push(Route {
            template,
            methods,
            allow,
            gated,
        });
        self
    }

    /// The route for `method` on `path`.
    pub fn find(&self, method: &Method, path: &str) -> Found {
        let Ok(m) = self.paths.at(path) else {
            return Found {
                template: None,
                handler: self.not_found,
                allow: None,
                gated: false,
                params: Vec::new(),
            };
        };
        let route = &self.routes[*m.value];
        let params = m
            .params
            .iter()
            .map(|(k, v)| (Box::from(k), Box::from(v)))
            .collect();
        let (handler, allow) = match route.methods.find(method) {
            Some(h) => (h, None),
            None => (self.method_not_allowed, Some(route.allow.clone())),
        };
        let refused = allow.is_some();
        Found {
            template: Some(route.template),
            handler,
            allow,
            gated: route.gated && !refused,
            params,
        }
    }
}

impl Found {
    /// Whether the request must pass `crate::app::gate` first.
    pub fn gated(&self) -> bool {
        self.gated
    }

    /// Runs the handler on the request.
    pub fn run(self, state: Arc<AppState>, parts: Parts, body: impl RequestBody) -> Reply {
        let call = Call {
            state,
            parts,
            body: (!body.is_end_stream()).then(|| Body::new(body)),
            params: self.params,
        };
        let reply = (self.handler)(call);
        match (reply, self.allow) {
            (Reply::Now(mut r), Some(allow)) => {
                r.headers_mut().insert(axum::http::header::ALLOW, allow);
                Reply::Now(r)
            }
            (reply, _) => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: Call) -> Reply {
        "ok".into()
    }
    fn other(_: Call) -> Reply {
        "other".into()
    }
    fn missing(_: Call) -> Reply {
        (axum::http::StatusCode::NOT_FOUND, "missing").into()
    }
    fn refused(_: Call) -> Reply {
        (axum::http::StatusCode::METHOD_NOT_ALLOWED, "refused").into()
    }

    fn table() -> Routes {
        Routes::new(missing, refused)
            .route("/", get(ok))
            .route("/items/{id}", get(ok))
            .route("/quote", post(other))
            .gated("/error/x", get(ok).post(other))
    }

    fn serves(found: &Found, h: Handler) -> bool {
        std::ptr::fn_addr_eq(found.handler, h)
    }

    #[test]
    fn methods_paths_and_templates_are_found() {
        let t = table();
        let f = t.find(&Method::GET, "/");
        assert!(f.template == Some("/") && serves(&f, ok));
        let f = t.find(&Method::HEAD, "/");
        assert!(serves(&f, ok), "HEAD is served by GET");
        let f = t.find(&Method::POST, "/error/x");
        assert!(serves(&f, other) && f.gated());
        let f = t.find(&Method::GET, "/items/7");
        assert_eq!(f.template, Some("/items/{id}"));
        assert_eq!(f.params, vec![("id".into(), "7".into())]);
        let f = t.find(&Method::GET, "/nowhere");
        assert!(f.template.is_none() && serves(&f, missing));
        assert_eq!(t.find(&Method::GET, "/items/7/more").template, None);
        assert_eq!(t.find(&Method::GET, "/items/").template, None);
        assert_eq!(t.find(&Method::GET, "//").template, None);
    }

    #[test]
    fn another_method_on_a_known_path_is_refused_with_allow_and_no_gate() {
        let t = table();
        let f = t.find(&Method::DELETE, "/error/x");
        assert_eq!(f.template, Some("/error/x"), "the route still labels it");
        assert!(serves(&f, refused));
        assert!(!f.gated(), "a 405 says nothing about faults");
        assert_eq!(
            f.allow.as_ref().map(|a| a.to_str().unwrap()),
            Some("GET,HEAD,POST")
        );
        let f = t.find(&Method::GET, "/quote");
        assert_eq!(f.allow.as_ref().map(|a| a.to_str().unwrap()), Some("POST"));
        let f = t.find(&Method::from_bytes(b"M1X").unwrap(), "/");
        assert_eq!(
            f.allow.as_ref().map(|a| a.to_str().unwrap()),
            Some("GET,HEAD")
        );
    }

    #[test]
    #[should_panic(expected = "route /items/{name}")]
    fn a_conflicting_template_is_refused_at_start() {
        let _ = table().route("/items/{name}", get(ok));
    }

    #[test]
    #[should_panic(expected = "GET routed twice")]
    fn a_method_routed_twice_is_refused_at_start() {
        let _ = get(ok).get(other);
    }
}
