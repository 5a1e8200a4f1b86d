//! Upstream connections, shared by every client connection: each target keeps a list
//! of its idle connections (haproxy's `http-reuse always`).
//!
//! A request takes the target's most recently used idle connection (or opens one),
//! sends on it, and the connection goes back to the list when the response body has
//! been forwarded to the end (`crate::proxy`): an HTTP/1 connection carries one exchange
//! at a time, so it is free again exactly then. A response cut short (client gone,
//! target failed) drops its connection instead.
//!
//! Why shared and not per client connection, as before: under round robin a client
//! connection used one upstream connection per target, so the targets held (and the
//! load balancer's single data path thread polled) twice as many connections as there
//! were clients at 2 targets, eight times at 8; shared, a target holds about as many
//! as it has requests in flight.
//!
//! A connection idle longer than [`IDLE_REUSE`] is not reused (the target may be
//! closing it), nor is one the target has closed or written to while idle (seen from
//! the socket's readiness, without a system call when nothing arrived), nor one whose
//! target left rotation: all are dropped, which closes them. Idle connections across all targets are at most [`IdleBudget`]'s maximum (the
//! load balancer sets it to its client connection limit): with at most one connection
//! in use per client connection, a client connection costs at most three descriptors
//! (its socket, the upstream connection its request uses, one idle slot), whatever the
//! number of targets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::lb::Target;

/// Upstream connections idle longer than this are not reused. Below `demo-app`'s header
/// read timeout (10 s), which closes idle keep-alive connections: reusing one the target
/// is closing at that moment would fail the request.
pub const IDLE_REUSE: Duration = Duration::from_secs(4);

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
    stream: TcpStream,
    since: Instant,
}

impl Idle {
    fn recent(&self) -> bool {
        self.since.elapsed() < IDLE_REUSE
    }
}

/// Whether an idle connection is still open and quiet. A closed one reads end of stream,
/// and one with bytes waiting carries something no request asked for. tokio answers
/// `WouldBlock` from the socket's cached readiness, without a system call, when nothing
/// has arrived since the last read.
fn quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
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
    pub(crate) fn take(&self) -> Option<TcpStream> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.lock();
            let mut found = None;
            while let Some(i) = idle.pop_back() {
                self.budget.give_back(1);
                if i.recent() && quiet(&i.stream) {
                    found = Some(i.stream);
                    break;
                }
                stale.push(i);
            }
            found
        };
        // Closed outside the lock.
        drop(stale);
        found
    }

    /// Keeps `stream` (between exchanges, nothing unread) for the next request, if the
    /// budget has room; otherwise it is closed.
    pub(crate) fn put(&self, stream: TcpStream) {
        let mut stale = Vec::new();
        {
            let mut idle = self.lock();
            while idle.front().is_some_and(|i| !i.recent()) {
                stale.extend(idle.pop_front());
                self.budget.give_back(1);
            }
            if self.budget.take() {
                idle.push_back(Idle {
                    stream,
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

/// A new connection to `target`.
pub(crate) async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(target.addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
