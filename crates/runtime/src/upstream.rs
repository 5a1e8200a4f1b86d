//! Upstream connections owned by one client connection.
//!
//! Why not a shared pool: an HTTP/1 client connection carries one request at a
//! time, so the upstream connections it used for its last requests are free
//! whenever it sends the next one. Keeping them with the client connection gives
//! connection reuse to targets without what a shared pool costs per request (a
//! mutex and a map lookup to check a connection out, a task spawned to check it
//! back in once the response body is done): here a request takes its target's
//! connection from a short list, waits until it is ready (it already is unless
//! the previous response is still streaming) and puts it back at once.
//!
//! A connection idle longer than [`IDLE_REUSE`] is not reused (the target may be
//! closing it), nor is one whose target left rotation: both are dropped, which
//! closes them.
//!
//! A client connection keeps at most [`MAX_PER_CLIENT`] upstream connections: past
//! that, the least recently used one is closed before another is opened. That bound
//! is what the load balancer's descriptor budget counts per client connection
//! (`1 + MAX_PER_CLIENT`), so the budget holds however many targets there are.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::lb::{Health, Target};

/// Upstream connections idle longer than this are not reused. Below `demo-app`'s header
/// read timeout (10 s), which closes idle keep-alive connections: reusing one the target
/// is closing at that moment would fail the request.
pub const IDLE_REUSE: Duration = Duration::from_secs(4);

/// Upstream connections one client connection may hold at once (one per target it
/// was routed to, least recently used closed first). 8: `up --count 8` keeps full
/// reuse under round robin; more targets than that cost reconnects, not descriptors.
pub const MAX_PER_CLIENT: usize = 8;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

struct Idle {
    target: Arc<Target>,
    sender: SendRequest<Incoming>,
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
    /// Sends `req` (origin-form URI) to `target` on this client connection's
    /// connection to it, opening one if there is none to reuse.
    pub async fn send(
        &self,
        target: &Arc<Target>,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
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
        // Dropping the sender closes that connection (outside the lock).
        drop(evicted);
        let mut sender = match reusable {
            Some(i) if !i.sender.is_closed() && i.since.elapsed() < IDLE_REUSE => i.sender,
            _ => connect(target).await?,
        };
        sender.ready().await?;
        let response = sender.send_request(req);
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|i| i.target.state() != Health::Draining && !i.sender.is_closed());
            idle.push(Idle {
                target: target.clone(),
                sender,
                since: Instant::now(),
            });
        }
        Ok(response.await?)
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
