//! Connection limits like a production proxy, shared by the local load balancer and
//! `demo-app` so both survive the same abuse: a flood of idle (slowloris) connections,
//! a client that stops reading, and running out of file descriptors.
//!
//! - **Header read timeout**: a connection that has not sent a complete request head
//!   within it is closed. The deadline starts whenever the connection waits for a request
//!   head, so it also ends idle keep-alive connections. With hyper ([`serve`]) it is
//!   hyper's own timer, given `head_timer::HeadTimer`; a server that reads HTTP itself
//!   ([`serve_connections`]) arms [`HeadDeadline`]. Either way arming it per request is an
//!   atomic store, and the idle watchdog's one timer per connection enforces it.
//! - **Idle timeout** (the ALB's): no byte in either direction for this long closes the
//!   connection, whatever state it is in (slow body, a client that stopped reading).
//! - **Connection cap**: a semaphore permit is taken *before* `accept`, so over the cap
//!   new connections wait in the kernel's listen queue rather than being accepted and
//!   closed. Waiting is kinder to real clients (they get served as soon as a slot frees,
//!   which the timeouts above guarantee happens) and gives an attacker nothing that
//!   closing would not: it cannot hold a slot longer than the header timeout.
//! - **Accept errors** (EMFILE, ENFILE, ENOBUFS...): the loop sleeps with a growing
//!   delay (10 ms doubling to 1 s) instead of retrying at full CPU; each error is counted
//!   and one event is reported per episode (first error, then recovery).
//! - **Descriptor budget** (`budget`): checked at start-up.

pub mod activity;
pub mod budget;
mod head_timer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

pub use budget::{Budget, Shortfall};

use activity::{Activity, Expiry, Tracked};
use head_timer::HeadTimer;

/// The limits one server applies to its client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest time to receive a complete request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// Longest time with no byte moving in either direction.
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait in the listen queue.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    /// 10 s for headers (Go's common `ReadHeaderTimeout`; nginx allows 60 s), the ALB's
    /// 60 s idle timeout, 1024 connections.
    fn default() -> ConnLimits {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Counters a server can expose; all cumulative except `open`.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Connections closed by the idle watchdog.
    pub idle_closed: AtomicU64,
    /// Times the accept loop had to wait for a free slot.
    pub cap_waits: AtomicU64,
}

/// Conditions worth one log line each (reported once per episode, never per connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `accept` started failing; the loop backs off.
    AcceptFailing { error: String },
    /// `accept` works again after `errors` failures.
    AcceptRecovered { errors: u64, paused: Duration },
    /// Every slot is taken; new connections wait in the listen queue.
    AtCapacity { max_connections: usize },
    /// Slots are free again; the episode lasted this long.
    CapacityRecovered { waited: Duration },
}

/// Where a server sends `Event`s (its own logger).
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Errors about one connection (it died before `accept` returned it): just move on.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every open connection finished after shutdown.
    Complete,
    /// The drain limit ran out with this many connections still open.
    Cut { open: u64 },
}

/// Serves HTTP/1.1 connections from `listener` with `limits` until `shutdown` completes,
/// then stops accepting and waits at most `drain` for open connections to finish their
/// requests (idle keep-alive connections are closed at once). `service` builds the
/// service of one connection from its peer.
#[allow(clippy::too_many_arguments)]
pub async fn serve<F, S>(
    listener: TcpListener,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    events: EventSink,
    service: F,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Drained
where
    F: Fn(SocketAddr) -> S,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    accept_loop(
        listener,
        limits,
        &stats,
        &events,
        shutdown,
        |stream, peer, activity| {
            let io = TokioIo::new(Tracked::new(stream, activity.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(HeadTimer::new(activity))
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(io, service(peer));
            let conn = graceful.watch(conn);
            async move {
                let _ = conn.await;
            }
        },
    )
    .await;
    match tokio::time::timeout(drain, graceful.shutdown()).await {
        Ok(()) => Drained::Complete,
        Err(_) => Drained::Cut {
            open: stats.open.load(Ordering::Relaxed),
        },
    }
}

/// One accepted connection, for a server that speaks HTTP itself ([`serve_connections`]).
#[derive(Debug)]
pub struct Conn {
    /// The client's socket; every byte moved through it counts as activity.
    pub stream: Tracked<TcpStream>,
    pub peer: SocketAddr,
    /// The header read deadline: arm it while waiting for a request head.
    pub head: HeadDeadline,
    /// Marks a wait with a timeout of its own (a request on its target), during which
    /// the idle timeout does not end the connection.
    pub waiting: Waiting,
    /// Turns true when the server stops: close an idle connection at once, finish the
    /// request in hand (answering it with `Connection: close`) on a busy one.
    pub closing: watch::Receiver<bool>,
}

/// A connection's header read deadline ([`ConnLimits::header_read_timeout`]), enforced
/// by the connection's watchdog: arming it is one clock read and one atomic store.
#[derive(Debug)]
pub struct HeadDeadline {
    activity: Arc<Activity>,
    timeout: Duration,
    armed: Option<u64>,
}

impl HeadDeadline {
    /// Starts the clock for a request head (a no-op if it already runs).
    pub fn arm(&mut self) {
        if self.armed.is_none() {
            let ms = self
                .activity
                .ms_of(tokio::time::Instant::now() + self.timeout);
            self.activity.arm_head(ms);
            self.armed = Some(ms);
        }
    }

    /// The head is complete: the clock stops.
    pub fn disarm(&mut self) {
        if let Some(ms) = self.armed.take() {
            self.activity.disarm_head(ms);
        }
    }
}

/// A connection's waits that are not idleness: a proxy waiting on its target has its
/// own timeout (and answers 504 when it passes), which the idle timeout must not
/// pre-empt by closing the connection silently.
#[derive(Debug)]
pub struct Waiting {
    activity: Arc<Activity>,
}

impl Waiting {
    pub fn begin(&self) {
        self.activity.set_waiting(true);
    }

    /// The wait is over: the idle timeout runs again, from now.
    pub fn end(&self) {
        self.activity.set_waiting(false);
    }
}

/// Like [`serve`], for a server that reads and writes HTTP itself: `handle` gets each
/// connection, with its limits applied around it (the idle timeout, the header read
/// deadline it arms, the connection cap, accept backoff). On shutdown, `closing` turns
/// true on every open connection and serving waits at most `drain` for them to end.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    events: EventSink,
    handle: F,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Drained
where
    F: Fn(Conn) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (closing, closing_rx) = watch::channel(false);
    // Each connection holds a sender: the channel closes when the last one has ended.
    let (open, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    accept_loop(
        listener,
        limits,
        &stats,
        &events,
        shutdown,
        |stream, peer, activity| {
            let conn = Conn {
                stream: Tracked::new(stream, activity.clone()),
                peer,
                waiting: Waiting {
                    activity: activity.clone(),
                },
                head: HeadDeadline {
                    activity,
                    timeout: limits.header_read_timeout,
                    armed: None,
                },
                closing: closing_rx.clone(),
            };
            let served = handle(conn);
            let open = open.clone();
            async move {
                served.await;
                drop(open);
            }
        },
    )
    .await;
    let _ = closing.send(true);
    drop(open);
    match tokio::time::timeout(drain, all_ended.recv()).await {
        Ok(_) => Drained::Complete,
        Err(_) => Drained::Cut {
            open: stats.open.load(Ordering::Relaxed),
        },
    }
}

/// Accepts connections under `limits` until `shutdown` completes, and spawns each one's
/// `serve` beside its watchdog (idle timeout and header read deadline).
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: ConnLimits,
    stats: &Arc<ConnStats>,
    events: &EventSink,
    shutdown: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, Arc<Activity>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = BACKOFF_START;
    let mut failing: Option<(tokio::time::Instant, u64)> = None;
    // Start of the current at-capacity episode; it ends when a slot is free without waiting.
    let mut full_since: Option<tokio::time::Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: over the cap, connections wait in the listen queue.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => {
                if let Some(since) = full_since.take() {
                    events(Event::CapacityRecovered {
                        waited: since.elapsed(),
                    });
                }
                p
            }
            Err(_) => {
                stats.cap_waits.fetch_add(1, Ordering::Relaxed);
                if full_since.is_none() {
                    events(Event::AtCapacity {
                        max_connections: limits.max_connections,
                    });
                    full_since = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => {
                        let Ok(p) = p else { break };
                        p
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                match &mut failing {
                    Some((_, n)) => *n += 1,
                    None => {
                        events(Event::AcceptFailing {
                            error: e.to_string(),
                        });
                        failing = Some((tokio::time::Instant::now(), 1));
                    }
                }
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if let Some((since, errors)) = failing.take() {
            events(Event::AcceptRecovered {
                errors,
                paused: since.elapsed(),
            });
        }
        backoff = BACKOFF_START;
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let conn = serve(stream, peer, activity.clone());
        let stats = stats.clone();
        let idle = limits.idle_timeout;
        let header = limits.header_read_timeout;
        // The watchdog must share the connection's task: it is what wakes `HeadTimer`'s
        // deadlines (see `head_timer`).
        tokio::spawn(async move {
            tokio::select! {
                () = conn => {}
                expiry = activity.expired(idle, Some(header)) => {
                    if expiry == Expiry::Idle {
                        stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
}

/// A sink that drops every event (tests, or a server with nowhere to log).
pub fn ignore_events() -> EventSink {
    Arc::new(|_| {})
}
