//! Upstream connections owned by one client connection, and the HTTP/1.1
//! exchange on them.
//!
//! Why not a shared pool: an HTTP/1 client connection carries one request at a
//! time, so the upstream connections it used for its last requests are free
//! whenever it sends the next one. Keeping them with the client connection gives
//! connection reuse to targets without what a shared pool costs per request (a
//! mutex and a map lookup to check a connection out, a task spawned to check it
//! back in once the response body is done): here a request takes its target's
//! connection from a short list and the connection comes back when the response
//! body is complete ([`body`]).
//!
//! Why not hyper's client: its connection runs as a task of its own that the
//! request reaches through a channel, so each proxied request crossed two tasks
//! and their wake-ups, and hyper encoded and parsed each message a second time;
//! a profile of the data path under load put that at about a third of its CPU
//! in user space. Here the client connection's own task writes the request head
//! ([`wire`]) and reads the response off the socket.
//!
//! A connection idle longer than [`IDLE_REUSE`] is not reused (the target may be
//! closing it), nor is one whose target left rotation: both are dropped, which
//! closes them. Nothing watches an idle connection, so a target may have closed
//! it: if a reused connection fails before any byte of the response came back,
//! an idempotent request without a body is sent once more on a new connection
//! (RFC 9110 §9.2.2), which is what a pool with a watcher would have done.
//!
//! A client connection keeps at most [`MAX_PER_CLIENT`] upstream connections: past
//! that, the least recently used one is closed before another is opened. That bound
//! is what the load balancer's descriptor budget counts per client connection
//! (`1 + MAX_PER_CLIENT`), so the budget holds however many targets there are.

mod body;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use body::UpstreamBody;
use wire::Framing;

use crate::lb::{Health, Target};

/// Upstream connections idle longer than this are not reused. Below `demo-app`'s header
/// read timeout (10 s), which closes idle keep-alive connections: reusing one the target
/// is closing at that moment would fail the request.
pub const IDLE_REUSE: Duration = Duration::from_secs(4);

/// Upstream connections one client connection may hold at once (one per target it
/// was routed to, least recently used closed first). 8: `up --count 8` keeps full
/// reuse under round robin; more targets than that cost reconnects, not descriptors.
pub const MAX_PER_CLIENT: usize = 8;

/// Read buffer of one upstream connection; grown when a head or body needs more.
const READ_BUF: usize = 8 * 1024;

/// Why a request could not be forwarded, or its response body not read.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("cannot send the request: {0}")]
    Write(std::io::Error),
    #[error("reading the request body from the client: {0}")]
    ClientBody(hyper::Error),
    #[error("reading the response: {0}")]
    Read(std::io::Error),
    #[error("the target closed the connection before answering")]
    ClosedBeforeResponse,
    #[error("the target closed the connection inside the response body")]
    Truncated,
    #[error(transparent)]
    Head(#[from] wire::HeadError),
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
}

impl UpstreamError {
    /// True if the connection failed before the target could have seen the
    /// request or answered it: what a reused connection the target had closed
    /// while idle looks like.
    fn is_stale_connection(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match self {
            UpstreamError::ClosedBeforeResponse => true,
            UpstreamError::Write(e) | UpstreamError::Read(e) => {
                matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
            }
            _ => false,
        }
    }
}

/// One upstream connection and what was read from it but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Reads what the socket has into the buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_BUF);
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// Reads until a whole response head is buffered (interim 1xx responses
    /// skipped) and returns it; the body's first bytes stay in the buffer.
    async fn read_head(&mut self) -> Result<wire::Head, UpstreamError> {
        let mut answered = false;
        loop {
            if let Some(head) = wire::parse_response(&mut self.buf)? {
                answered = true;
                // 100 Continue and other interim responses precede the final one.
                if head.status.is_informational() && head.status.as_u16() != 101 {
                    continue;
                }
                return Ok(head);
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_BUF);
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(UpstreamError::Read)?;
            if n == 0 {
                return Err(if answered || !self.buf.is_empty() {
                    UpstreamError::Truncated
                } else {
                    UpstreamError::ClosedBeforeResponse
                });
            }
        }
    }
}

struct Idle {
    target: Arc<Target>,
    conn: Conn,
    since: Instant,
}

/// One client connection's upstream connections, at most one per target.
#[derive(Default, Clone)]
pub struct Upstreams {
    idle: Arc<Mutex<Vec<Idle>>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Sends `req` (hop-by-hop headers already removed; its target is written in
    /// origin form, the path and query only, the client's Host header kept) to
    /// `target` on this client connection's connection to it, opening one if
    /// there is none to reuse, and returns the response with its body streaming.
    pub async fn send(
        &self,
        target: &Arc<Target>,
        req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (reusable, evicted) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            match idle.iter().position(|i| Arc::ptr_eq(&i.target, target)) {
                Some(at) => (Some(idle.swap_remove(at)), None),
                // A new connection will be opened: make room for it first, so that
                // this client connection never holds more than MAX_PER_CLIENT.
                None if idle.len() >= MAX_PER_CLIENT => {
                    let oldest = (0..idle.len())
                        .min_by_key(|&k| idle[k].since)
                        .expect("the list is full, so not empty");
                    (None, Some(idle.swap_remove(oldest)))
                }
                None => (None, None),
            }
        };
        // Dropping a connection closes it (outside the lock).
        drop(evicted);
        let (parts, body) = req.into_parts();
        let framing = wire::request_framing(&parts.headers);
        let mut head = Vec::with_capacity(512);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        wire::encode_request_head(&parts.method, path, &parts.headers, framing, &mut head);
        let retryable = framing == Framing::Empty && parts.method.is_idempotent();

        let mut reused = reusable
            .filter(|i| i.since.elapsed() < IDLE_REUSE)
            .map(|i| i.conn);
        let mut body = Some(body);
        let (conn, response) = loop {
            let (mut conn, was_reused) = match reused.take() {
                Some(c) => (c, true),
                None => (connect(target).await?, false),
            };
            match exchange(&mut conn, &head, framing, &mut body).await {
                Ok(response) => break (conn, response),
                Err(e) if was_reused && retryable && e.is_stale_connection() => continue,
                Err(e) => return Err(e),
            }
        };
        let (framing, keep_alive) = wire::response_framing(&parts.method, &response)?;
        let home = keep_alive.then(|| (self.clone(), target.clone()));
        let mut out = Response::new(UpstreamBody::new(conn, framing, home));
        *out.status_mut() = response.status;
        *out.headers_mut() = response.headers;
        Ok(out)
    }

    /// A connection whose response is complete comes back for the next request
    /// (unless its target left rotation meanwhile).
    fn put_back(&self, target: Arc<Target>, conn: Conn) {
        if target.state() == Health::Draining {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|i| i.target.state() != Health::Draining);
        if idle.len() >= MAX_PER_CLIENT {
            return;
        }
        idle.push(Idle {
            target,
            conn,
            since: Instant::now(),
        });
    }
}

/// Writes the request (head, then its body if any) and reads the response head.
async fn exchange(
    conn: &mut Conn,
    head: &[u8],
    framing: Framing,
    body: &mut Option<Incoming>,
) -> Result<wire::Head, UpstreamError> {
    conn.stream
        .write_all(head)
        .await
        .map_err(UpstreamError::Write)?;
    if framing != Framing::Empty
        && let Some(body) = body.take()
    {
        forward_body(&mut conn.stream, framing, body).await?;
    }
    conn.read_head().await
}

/// Streams the client's request body to the target: as it is under
/// `Content-Length`, re-chunked under `Transfer-Encoding: chunked` (hyper's
/// server decoded the client's chunks; trailers are not forwarded).
async fn forward_body(
    stream: &mut TcpStream,
    framing: Framing,
    mut body: Incoming,
) -> Result<(), UpstreamError> {
    let chunked = framing == Framing::Chunked;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::ClientBody)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let line = format!("{:x}\r\n", data.len());
            stream
                .write_all(line.as_bytes())
                .await
                .map_err(UpstreamError::Write)?;
        }
        stream
            .write_all(&data)
            .await
            .map_err(UpstreamError::Write)?;
        if chunked {
            stream
                .write_all(b"\r\n")
                .await
                .map_err(UpstreamError::Write)?;
        }
    }
    if chunked {
        stream
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(UpstreamError::Write)?;
    }
    Ok(())
}

async fn connect(target: &Target) -> Result<Conn, UpstreamError> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        buf: BytesMut::with_capacity(READ_BUF),
    })
}
