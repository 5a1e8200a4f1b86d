//! Upstream connections, shared by every client connection: each target keeps a list
//! of its idle connections (haproxy's `http-reuse always`).
//!
//! A request takes the target's most recently used idle connection (or opens one),
//! sends on it, and the connection goes back to the list when the response body has
//! been forwarded to the end (`Pooled`, the body the client connection writes out): an
//! HTTP/1 connection carries one exchange at a time, so it is free again exactly then.
//! A response cut short (client gone, target failed) drops its connection instead.
//!
//! Why shared and not per client connection, as before: under round robin a client
//! connection used one upstream connection per target, so the targets held (and the
//! load balancer's single data path thread polled) twice as many connections as there
//! were clients at 2 targets, eight times at 8; shared, a target holds about as many
//! as it has requests in flight.
//!
//! A connection idle longer than [`IDLE_REUSE`] is not reused (the target may be
//! closing it), nor is one whose target left rotation: both are dropped, which closes
//! them. Idle connections across all targets are at most [`IdleBudget`]'s maximum (the
//! load balancer sets it to its client connection limit): with at most one connection
//! in use per client connection, a client connection costs at most three descriptors
//! (its socket, the upstream connection its request uses, one idle slot), whatever the
//! number of targets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::lb::{Health, Target};

/// Upstream connections idle longer than this are not reused. Below `demo-app`'s header
/// read timeout (10 s), which closes idle keep-alive connections: reusing one the target
/// is closing at that moment would fail the request.
pub const IDLE_REUSE: Duration = Duration::from_secs(4);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// How many idle upstream connections all targets together may keep.
#[derive(Debug)]
pub struct IdleBudget {
    held: AtomicUsize,
    max: AtomicUsize,
}

impl IdleBudget {
    pub fn new(max: usize) -> Arc<IdleBudget> {
        Arc::new(IdleBudget {
            held: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        })
    }

    /// Idle connections held now, across targets.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Release);
    }

    /// Takes a slot if one is free.
    fn take(&self) -> bool {
        let max = self.max.load(Ordering::Acquire);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

impl Idle {
    fn reusable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() < IDLE_REUSE
    }
}

/// One target's idle connections, oldest first: a request takes the newest, and a
/// connection put back first closes the oldest ones gone stale (so that after a burst
/// the extra connections give their budget back within `IDLE_REUSE`).
pub struct IdleList {
    idle: Mutex<VecDeque<Idle>>,
    budget: Arc<IdleBudget>,
}

impl std::fmt::Debug for IdleList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleList").finish_non_exhaustive()
    }
}

impl IdleList {
    pub fn new(budget: Arc<IdleBudget>) -> IdleList {
        IdleList {
            idle: Mutex::new(VecDeque::new()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used connection still fit for reuse; stale ones met on the way
    /// are closed.
    fn take(&self) -> Option<SendRequest<Incoming>> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.lock();
            let mut found = None;
            while let Some(i) = idle.pop_back() {
                self.budget.give_back(1);
                if i.reusable() {
                    found = Some(i.sender);
                    break;
                }
                stale.push(i);
            }
            found
        };
        // Dropping a sender closes its connection: outside the lock.
        drop(stale);
        found
    }

    /// Keeps `sender` for the next request, if the budget has room.
    fn put(&self, sender: SendRequest<Incoming>) {
        let mut stale = Vec::new();
        {
            let mut idle = self.lock();
            while idle.front().is_some_and(|i| !i.reusable()) {
                stale.extend(idle.pop_front());
                self.budget.give_back(1);
            }
            if !sender.is_closed() && self.budget.take() {
                idle.push_back(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        }
        // Closed outside the lock.
        drop(stale);
    }

    /// Closes every idle connection (the target left rotation).
    pub fn clear(&self) {
        let closed = std::mem::take(&mut *self.lock());
        self.budget.give_back(closed.len());
    }
}

impl Drop for IdleList {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Sends `req` (origin-form URI) to `target` on one of its idle connections, or a new
/// one; the response's body returns the connection once it has been read to the end.
pub async fn send(
    target: &Arc<Target>,
    req: Request<Incoming>,
) -> Result<Response<Pooled>, UpstreamError> {
    let mut sender = match target.idle.take() {
        Some(s) => s,
        None => connect(target).await?,
    };
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    let back = Some((target.clone(), sender));
    Ok(response.map(|body| Pooled { body, back }))
}

/// A response body from a target: forwarded frame by frame, and at its end the
/// connection it came on goes back to its target's idle list.
pub struct Pooled {
    body: Incoming,
    back: Option<(Arc<Target>, SendRequest<Incoming>)>,
}

impl Pooled {
    fn check_in(&mut self) {
        if let Some((target, sender)) = self.back.take()
            && target.state() != Health::Draining
        {
            target.idle.put(sender);
        }
    }
}

impl Body for Pooled {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.check_in(),
            // A failed body leaves its connection in no state to reuse.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Written out without reading to `None`: a body known to be complete (empty,
        // HEAD, 204, or its last byte read) leaves a reusable connection; one cut short
        // does not (dropping the sender closes it).
        if self.body.is_end_stream() {
            self.check_in();
        }
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Incoming>, UpstreamError> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection runs beside the requests that use it; it ends when the
    // last sender is dropped or the target closes it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
