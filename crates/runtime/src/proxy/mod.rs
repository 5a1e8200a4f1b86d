//! The load balancer's HTTP/1.1 data path: one task per client connection reads a
//! request, forwards it to a target on a shared upstream connection and streams the
//! answer back, from bytes to bytes (haproxy's shape).
//!
//! Why not hyper's server and client, as before: a proxied request then went through
//! two header maps (parsed from the client's bytes, encoded for the target; parsed
//! from the target's bytes, encoded for the client), a spawned task and a channel per
//! upstream connection, and a boxed body per response. With everything sharing one
//! core with the tasks, that user-space work was what kept the load balancer below
//! haproxy's throughput (`docs/PERFORMANCE.md`). Here a head is parsed once with
//! `httparse` and written for the next hop straight from the parsed slices
//! ([`head`]); bodies are copied through a buffer per connection, their framing
//! followed exactly ([`chunked`]) so that pipelined requests and reused upstream
//! connections stay in step.
//!
//! What one exchange watches at once: the request body still to send, the target's
//! answer (an early one ends the body: the client connection then closes), the client
//! going away (the request stops counting as in flight and its upstream connection is
//! closed), and the upstream timeout: the idle timeout, as the ALB's, during which the
//! waiting connection does not count as idle, so a target too slow gets a 504 rather than
//! a silent close. The client connection's own limits (header read
//! timeout, idle timeout, connection cap) come from `demo_netlimits::serve_connections`.

pub mod chunked;
pub mod head;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use demo_netlimits::Conn;
use demo_netlimits::activity::Tracked;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::lb::{Health, InFlight, LoadBalancer, Target};
use crate::upstream;
use chunked::Chunked;
use head::{ForClient, Framing, RequestHead};

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 16 * 1024;
/// A connection's buffers grown past this (a large head or body) are shrunk back after
/// the exchange, so that idle connections stay small.
const KEEP_CAPACITY: usize = 64 * 1024;
/// At most this much of a client's next (pipelined) request is read while the current
/// one waits for its answer.
const MAX_PIPELINED: usize = head::MAX_HEAD;
/// How long, and for how many bytes, a connection closed with request bytes possibly
/// still on their way keeps reading them (nginx's lingering close): closing a socket
/// with unread data sends a reset, which can destroy the answer before the client
/// has read it.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// One client connection, served until it closes, its limits end it, or the load
/// balancer stops (`closing`: an idle connection closes at once, a busy one after its
/// answer, which then says `Connection: close`).
pub(crate) async fn serve_connection(lb: Arc<LoadBalancer>, conn: Conn) {
    let Conn {
        stream,
        peer,
        head: mut deadline,
        waiting,
        closing,
    } = conn;
    let mut client = Client {
        io: stream,
        buf: Vec::with_capacity(READ_SIZE),
        peer_ip: peer.ip().to_string(),
        waiting,
    };
    let mut bufs = Bufs::default();
    let timeout = tokio::time::sleep(lb.upstream_timeout());
    let mut timeout = std::pin::pin!(timeout);
    let stopping = closing.clone();
    let closed = async move {
        let mut closing = closing;
        let _ = closing.wait_for(|c| *c).await;
    };
    let mut closed = std::pin::pin!(closed);
    let want_span = lb.span_exporter().is_some();
    loop {
        // A whole request head: the header read deadline runs while it is incomplete.
        bufs.to_target.clear();
        let req = loop {
            if !client.buf.is_empty() {
                match head::request(&client.buf, &client.peer_ip, want_span, &mut bufs.to_target) {
                    Ok(Some(req)) => break req,
                    Ok(None) => {}
                    Err(refused) => {
                        let mut out = Vec::new();
                        head::error(&mut out, refused.status, refused.why, true);
                        if client.io.write_all(&out).await.is_ok() {
                            linger(&mut client.io).await;
                        }
                        return;
                    }
                }
            }
            deadline.arm();
            tokio::select! {
                biased;
                _ = &mut closed, if client.buf.is_empty() => return,
                read = read_more(&mut client.io, &mut client.buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
            }
        };
        deadline.disarm();
        client.buf.drain(..req.len);
        let closing_now = *stopping.borrow();
        let after = exchange(
            &lb,
            &mut client,
            &mut bufs,
            &req,
            closing_now,
            timeout.as_mut(),
        )
        .await;
        bufs.shrink();
        if client.buf.capacity() > KEEP_CAPACITY {
            client.buf.shrink_to(READ_SIZE);
        }
        match after {
            Ok(After::Next) if !(*stopping.borrow() && client.buf.is_empty()) => {}
            Ok(After::Linger) => return linger(&mut client.io).await,
            Ok(_) | Err(Gone) => return,
        }
    }
}

struct Client {
    io: Tracked<TcpStream>,
    /// Bytes read from the client and not yet used.
    buf: Vec<u8>,
    peer_ip: String,
    /// Set while the request waits on its target, which has its own timeout (a 504).
    waiting: demo_netlimits::Waiting,
}

impl Client {
    /// Writes all of `bytes`; a client that cannot take them is gone.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        self.io.write_all(bytes).await.map_err(|_| Gone)
    }
}

/// A connection's buffers towards and from its targets, kept between requests.
#[derive(Default)]
struct Bufs {
    /// Bytes for the target: the request head, then request body.
    to_target: Vec<u8>,
    /// Bytes read from the target.
    from_target: Vec<u8>,
    /// Bytes for the client: the response head, then response body.
    to_client: Vec<u8>,
}

impl Bufs {
    fn shrink(&mut self) {
        for b in [
            &mut self.to_target,
            &mut self.from_target,
            &mut self.to_client,
        ] {
            if b.capacity() > KEEP_CAPACITY {
                *b = Vec::new();
            }
        }
    }
}

/// The client connection is over (it left, or cannot be answered any more).
struct Gone;

/// What becomes of a client connection once its request is answered.
enum After {
    /// It carries the next request.
    Next,
    Close,
    /// Closed, but request bytes may still be on their way: see [`LINGER`].
    Linger,
}

/// Closes the write side, then reads (and drops) what the client still sends, for at
/// most [`LINGER`] and [`LINGER_BYTES`].
async fn linger(io: &mut Tracked<TcpStream>) {
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut total = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n @ 1..) = io.read(&mut sink).await {
            total += n;
            if total > LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Reads what is there into the spare room of `buf` (growing it by [`READ_SIZE`] when
/// it is nearly full).
async fn read_more(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    io.read_buf(buf).await
}

/// A message body being moved from one buffer to another.
struct BodyCopy {
    framing: Framing,
    /// Bytes left of a sized body.
    left: u64,
    chunked: Chunked,
    /// Only a chunked body's data is copied, not its coding.
    dechunk: bool,
    /// A body delimited by close is copied in the chunked coding.
    rechunk: bool,
    done: bool,
}

impl BodyCopy {
    fn new(framing: Framing, dechunk: bool, rechunk: bool) -> BodyCopy {
        BodyCopy {
            framing,
            left: match framing {
                Framing::Sized(n) => n,
                _ => 0,
            },
            chunked: Chunked::default(),
            dechunk,
            rechunk,
            done: framing == Framing::None,
        }
    }

    /// Moves the body's bytes from the front of `from` to `to`; the rest of `from` (what
    /// follows the body) stays.
    fn take(&mut self, from: &mut Vec<u8>, to: &mut Vec<u8>) -> Result<(), chunked::ChunkError> {
        if self.done {
            return Ok(());
        }
        let used = match self.framing {
            Framing::None => 0,
            Framing::Sized(_) => {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(from.len());
                self.left -= n as u64;
                self.done = self.left == 0;
                to.extend_from_slice(&from[..n]);
                n
            }
            Framing::Chunked if self.dechunk => {
                let n = self.chunked.feed(from, |d| to.extend_from_slice(d))?;
                self.done = self.chunked.is_done();
                n
            }
            Framing::Chunked => {
                let n = self.chunked.feed(from, |_| {})?;
                self.done = self.chunked.is_done();
                to.extend_from_slice(&from[..n]);
                n
            }
            Framing::UntilClose => {
                if self.rechunk && !from.is_empty() {
                    to.extend_from_slice(format!("{:x}\r\n", from.len()).as_bytes());
                    to.extend_from_slice(from);
                    to.extend_from_slice(b"\r\n");
                } else {
                    to.extend_from_slice(from);
                }
                from.len()
            }
        };
        if used == from.len() {
            from.clear();
        } else {
            from.drain(..used);
        }
        Ok(())
    }

    /// The sender closed: the end of a body delimited by close (true), or a body cut
    /// short.
    fn closed(&mut self, to: &mut Vec<u8>) -> bool {
        if self.framing != Framing::UntilClose {
            return false;
        }
        if self.rechunk {
            to.extend_from_slice(b"0\r\n\r\n");
        }
        self.done = true;
        true
    }
}

/// Why the target's answer could not be had.
enum Failed {
    /// 502, with what went wrong.
    Target(String),
    /// 504.
    Timeout,
    /// The client's request body was malformed: 400.
    BadBody(chunked::ChunkError),
    Client,
}

/// One request through a target and its answer back.
async fn exchange(
    lb: &Arc<LoadBalancer>,
    client: &mut Client,
    bufs: &mut Bufs,
    req: &RequestHead,
    closing: bool,
    timeout: Pin<&mut Sleep>,
) -> Result<After, Gone> {
    let counters = &lb.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let keep_if_bodiless = req.keep_alive && !closing;
    let Some(target) = lb.pick() else {
        counters.elb_5xx.fetch_add(1, Ordering::Relaxed);
        return answer_error(client, 503, "no healthy targets", req, keep_if_bodiless).await;
    };
    if req.expect_continue {
        client.send(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let start = Instant::now();
    let span_start = req.span.as_ref().map(|_| std::time::SystemTime::now());
    let in_flight = InFlight::count(&target);
    let for_client = ForClient {
        method_head: req.method_head,
        http10: req.http10,
        keep_alive: req.keep_alive && !closing,
    };
    client.waiting.begin();
    let sent = send(lb, &target, client, bufs, req, for_client, timeout).await;
    client.waiting.end();
    drop(in_flight);
    let status = match &sent {
        Ok((resp, _, _)) => resp.status,
        Err(Failed::Timeout) => 504,
        Err(Failed::BadBody(_)) => 400,
        Err(_) => 502,
    };
    // A client that left got no answer: no span (as when hyper dropped its request).
    let answered = !matches!(sent, Err(Failed::Client));
    if let (true, Some((method, path)), Some(started), Some(exporter)) =
        (answered, &req.span, span_start, lb.span_exporter())
    {
        exporter.record(crate::lb::hop_span(
            req.trace,
            started,
            method.clone(),
            path.clone(),
            status,
            &target.task_id,
        ));
    }
    let (resp, mut up, body_sent) = match sent {
        Ok(ok) => ok,
        Err(Failed::Client) => return Err(Gone),
        Err(Failed::BadBody(e)) => {
            return answer_error(
                client,
                400,
                &format!("invalid request body: {e}"),
                req,
                false,
            )
            .await;
        }
        Err(Failed::Timeout) => {
            counters.elb_5xx.fetch_add(1, Ordering::Relaxed);
            return answer_error(client, 504, "target did not answer in time", req, false).await;
        }
        Err(Failed::Target(why)) => {
            counters.elb_5xx.fetch_add(1, Ordering::Relaxed);
            let message = format!("target {} failed: {why}", target.task_id);
            return answer_error(client, 502, &message, req, false).await;
        }
    };
    counters.observe_response_time(start.elapsed());
    counters.count_target_status(resp.status);

    // The answer: its head is in `to_client`, the start of its body in `from_target`.
    let mut body = BodyCopy::new(resp.body, resp.dechunk, resp.rechunk);
    loop {
        if body
            .take(&mut bufs.from_target, &mut bufs.to_client)
            .is_err()
        {
            // The target's chunked coding broke: the client's answer cannot be finished.
            return Err(Gone);
        }
        if body.done {
            break;
        }
        if !bufs.to_client.is_empty() {
            client.send(&bufs.to_client).await?;
            bufs.to_client.clear();
        }
        match read_more(&mut up, &mut bufs.from_target).await {
            Ok(0) if body.closed(&mut bufs.to_client) => break,
            // The target ended or failed inside the body: the client's answer is cut short.
            Ok(0) | Err(_) => return Err(Gone),
            Ok(_) => {}
        }
    }
    // All of the answer has come from the target: its connection is free before the
    // last bytes go to the client (the next request may be on its way already).
    let reusable = resp.target_keeps && body_sent && bufs.from_target.is_empty();
    if reusable && target.state() != Health::Draining {
        target.idle.put(up);
    } else {
        drop(up);
    }
    bufs.from_target.clear();
    if !bufs.to_client.is_empty() {
        client.send(&bufs.to_client).await?;
    }
    Ok(if !body_sent || (resp.close_client && req.keep_alive) {
        // Closed while the client may still be sending: the rest of its body, or the
        // requests it pipelined on a connection it meant to keep.
        After::Linger
    } else if resp.close_client {
        After::Close
    } else {
        After::Next
    })
}

/// The load balancer's own answer; the connection stays open only for a bodiless
/// request (whose next request can be found) that asked to keep it.
async fn answer_error(
    client: &mut Client,
    status: u16,
    message: &str,
    req: &RequestHead,
    keep_if_bodiless: bool,
) -> Result<After, Gone> {
    let bodiless = req.body == Framing::None;
    let keep = keep_if_bodiless && bodiless;
    let mut out = Vec::new();
    head::error(&mut out, status, message, !keep);
    client.send(&out).await?;
    Ok(match (keep, bodiless) {
        (true, _) => After::Next,
        (false, true) => After::Close,
        (false, false) => After::Linger,
    })
}

/// Sends the request (head in `bufs.to_target`, body from the client) to `target`
/// and reads the final response head, which is written for the client into
/// `bufs.to_client`. Returns it, the upstream connection, and whether the request
/// body was sent whole.
async fn send(
    lb: &LoadBalancer,
    target: &Arc<Target>,
    client: &mut Client,
    bufs: &mut Bufs,
    req: &RequestHead,
    for_client: ForClient,
    mut timeout: Pin<&mut Sleep>,
) -> Result<(head::ResponseHead, TcpStream, bool), Failed> {
    timeout
        .as_mut()
        .reset(tokio::time::Instant::now() + lb.upstream_timeout());
    let head_len = bufs.to_target.len();
    let mut reused = target.idle.take();
    loop {
        let fresh = reused.is_none();
        let mut up = match reused.take() {
            Some(s) => s,
            None => tokio::select! {
                c = upstream::connect(target) => c.map_err(|e| Failed::Target(format!("cannot connect: {e}")))?,
                () = timeout.as_mut() => return Err(Failed::Timeout),
            },
        };
        match round_trip(&mut up, client, bufs, req, for_client, timeout.as_mut()).await {
            Ok((resp, body_sent)) => return Ok((resp, up, body_sent)),
            // A reused connection the target closed just before the request reached it:
            // once more on a new one, if nothing of the answer or of a body was lost.
            Err(Trip::Closed { replayable: true }) if !fresh => {
                bufs.to_target.truncate(head_len);
                bufs.from_target.clear();
            }
            Err(Trip::Closed { .. }) => {
                return Err(Failed::Target(
                    "connection closed before the response was complete".into(),
                ));
            }
            Err(Trip::Failed(f)) => return Err(f),
        }
    }
}

enum Trip {
    /// The target closed (or reset) the connection before a whole response head.
    /// `replayable`: no answer byte arrived, and the request (idempotent, bodiless) may
    /// go out again.
    Closed {
        replayable: bool,
    },
    Failed(Failed),
}

/// The response head at the start of `bufs.from_target`, if it is complete: taken from
/// there and written for the client into `bufs.to_client`.
fn next_head(bufs: &mut Bufs, for_client: ForClient) -> Result<Option<head::ResponseHead>, Trip> {
    bufs.to_client.clear();
    if bufs.from_target.is_empty() {
        return Ok(None);
    }
    match head::response(&bufs.from_target, for_client, &mut bufs.to_client) {
        Ok(Some(resp)) => {
            bufs.from_target.drain(..resp.len);
            Ok(Some(resp))
        }
        Ok(None) => Ok(None),
        Err(why) => Err(Trip::Failed(Failed::Target(format!(
            "invalid response: {why}"
        )))),
    }
}

/// One request on one upstream connection, up to the final response head.
async fn round_trip(
    up: &mut TcpStream,
    client: &mut Client,
    bufs: &mut Bufs,
    req: &RequestHead,
    for_client: ForClient,
    mut timeout: Pin<&mut Sleep>,
) -> Result<(head::ResponseHead, bool), Trip> {
    let mut body = BodyCopy::new(req.body, false, false);
    body.take(&mut client.buf, &mut bufs.to_target)
        .map_err(|e| Trip::Failed(Failed::BadBody(e)))?;
    let mut written = 0;
    // Whether any byte of an answer came: a request is sent again only if none did, it
    // has no body, and its method is idempotent (RFC 9112 §9.3.1.1).
    let mut answered = false;
    let replayable = |answered: bool| !answered && req.body == Framing::None && req.idempotent;
    let (mut up_read, mut up_write) = up.split();
    loop {
        let pending = written < bufs.to_target.len();
        let body_wants_client = !body.done && !pending;
        let read_client = body_wants_client || (body.done && client.buf.len() < MAX_PIPELINED);
        tokio::select! {
            w = up_write.write(&bufs.to_target[written..]), if pending => match w {
                Ok(n) if n > 0 => {
                    written += n;
                    if written == bufs.to_target.len() && !body.done {
                        bufs.to_target.clear();
                        written = 0;
                    }
                }
                _ => return Err(Trip::Closed { replayable: replayable(answered) }),
            },
            r = read_more(&mut up_read, &mut bufs.from_target) => match r {
                Ok(n) if n > 0 => {
                    answered = true;
                    // A final answer while the body is still going ends the body, so the
                    // client connection cannot carry on (it is told so).
                    let for_client = ForClient {
                        keep_alive: for_client.keep_alive && body.done && !pending,
                        ..for_client
                    };
                    // Every head this read completed: interim ones go on to the client
                    // (a final one may have come in the same read), a final one ends here.
                    while let Some(resp) = next_head(bufs, for_client)? {
                        if !resp.interim {
                            return Ok((resp, body.done && !pending));
                        }
                        if !bufs.to_client.is_empty() {
                            client.send(&bufs.to_client).await
                                .map_err(|Gone| Trip::Failed(Failed::Client))?;
                        }
                    }
                }
                _ => return Err(Trip::Closed { replayable: replayable(answered) }),
            },
            r = read_more(&mut client.io, &mut client.buf), if read_client => match r {
                Ok(n) if n > 0 => {
                    if !body.done {
                        body.take(&mut client.buf, &mut bufs.to_target)
                            .map_err(|e| Trip::Failed(Failed::BadBody(e)))?;
                    }
                }
                // The client left (or broke off its body): nothing to answer.
                _ => return Err(Trip::Failed(Failed::Client)),
            },
            () = timeout.as_mut() => return Err(Trip::Failed(Failed::Timeout)),
        }
    }
}
