//! Structured JSON logging to stdout, one object per line, shaped for
//! CloudWatch Logs: `timestamp` (RFC 3339, milliseconds), `level`, `message`,
//! then fields. A filter pattern such as `{ $.level = "ERROR" }` matches the
//! error lines.
//!
//! Requests never wait on stdout: a line is formatted on the request's thread
//! and appended to an in-memory buffer under a short lock; a dedicated writer
//! thread swaps the buffer out and writes it. If stdout stalls long enough for
//! the buffer to reach its cap, further lines are dropped *and counted*; the
//! count is exported as `app_log_lines_dropped_total` and announced in a WARN
//! line as soon as output resumes.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Buffer cap before lines are dropped (stdout stalled for a long time).
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;
/// While lines come, the writer wakes at least this often; after an interval
/// with none it sleeps until the next line.
const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Above this many pending bytes the writer is woken early.
const WAKE_BYTES: usize = 256 * 1024;

struct Shared {
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    lines: AtomicU64,
    closing: std::sync::atomic::AtomicBool,
    /// The writer found nothing to write and sleeps until a line wakes it
    /// (instead of every [`FLUSH_INTERVAL`]: an idle service stays asleep).
    idle: std::sync::atomic::AtomicBool,
}

/// Cheap to clone; all clones feed one writer.
#[derive(Clone)]
pub struct Logger {
    level: Level,
    /// `,"version":"..","task_id":".."}` appended to every line.
    suffix: Arc<str>,
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("level", &self.level)
            .finish()
    }
}

impl Logger {
    /// Starts a logger writing to `out` (stdout in the service, a buffer in tests).
    pub fn new(
        level: Level,
        version: &str,
        task_id: &str,
        out: impl Write + Send + 'static,
    ) -> Logger {
        let mut suffix = String::from(",\"version\":");
        suffix.push_str(&serde_json::to_string(version).unwrap_or_default());
        suffix.push_str(",\"task_id\":");
        suffix.push_str(&serde_json::to_string(task_id).unwrap_or_default());
        suffix.push_str("}\n");
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            dropped: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            closing: std::sync::atomic::AtomicBool::new(false),
            idle: std::sync::atomic::AtomicBool::new(false),
        });
        let writer_shared = shared.clone();
        let suffix: Arc<str> = suffix.into();
        let writer_suffix = suffix.clone();
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer_loop(writer_shared, out, &writer_suffix))
            .expect("spawn log writer thread");
        Logger {
            level,
            suffix,
            shared,
            writer: Arc::new(Mutex::new(Some(handle))),
        }
    }

    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Starts a line; add fields, then `emit()`. A disabled level costs one comparison.
    pub fn line(&self, level: Level, message: &str) -> Line<'_> {
        if !self.enabled(level) {
            return Line {
                logger: self,
                buf: None,
            };
        }
        let mut buf = SPARE.with(|s| s.take());
        buf.clear();
        buf.extend_from_slice(b"{\"timestamp\":\"");
        write_rfc3339_ms(&mut buf, SystemTime::now());
        buf.extend_from_slice(b"\",\"level\":\"");
        buf.extend_from_slice(level.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"message\":");
        push_json_str(&mut buf, message);
        let line = Line {
            logger: self,
            buf: Some(buf),
        };
        // Inside a request: its trace (see crate::trace).
        match crate::trace::current() {
            Some(t) => line.trace(&t),
            None => line,
        }
    }

    /// A lifecycle line (listening, draining, exiting): written whatever `LOG_LEVEL`
    /// says, because supervisors and operators rely on it (the local runtime reads
    /// the port from "Server listening").
    pub fn lifecycle(&self, message: &str) -> Line<'_> {
        let filtered = Logger {
            level: Level::Debug,
            suffix: self.suffix.clone(),
            shared: self.shared.clone(),
            writer: self.writer.clone(),
        };
        let line = filtered.line(Level::Info, message);
        Line {
            logger: self,
            buf: line.buf,
        }
    }

    pub fn error(&self, message: &str) -> Line<'_> {
        self.line(Level::Error, message)
    }
    pub fn warn(&self, message: &str) -> Line<'_> {
        self.line(Level::Warn, message)
    }
    pub fn info(&self, message: &str) -> Line<'_> {
        self.line(Level::Info, message)
    }
    pub fn debug(&self, message: &str) -> Line<'_> {
        self.line(Level::Debug, message)
    }

    /// Lines dropped because output stalled.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines accepted for writing.
    pub fn lines(&self) -> u64 {
        self.shared.lines.load(Ordering::Relaxed)
    }

    fn push(&self, line: &[u8]) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending.len() + line.len() > MAX_PENDING_BYTES {
            drop(pending);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.extend_from_slice(line);
        let wake = pending.len() >= WAKE_BYTES;
        drop(pending);
        self.shared.lines.fetch_add(1, Ordering::Relaxed);
        // A plain load first: under load the writer is never idle, and this
        // costs no locked instruction per line.
        let idle = self.shared.idle.load(Ordering::SeqCst)
            && self.shared.idle.swap(false, Ordering::SeqCst);
        if (wake || idle)
            && let Some(h) = self
                .writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            h.thread().unpark();
        }
    }

    /// Writes everything pending and stops the writer. Lines logged afterwards are lost,
    /// so call this last, just before the process exits.
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn writer_loop(shared: Arc<Shared>, mut out: impl Write, suffix: &str) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut reported_dropped = 0u64;
    loop {
        let closing = shared.closing.load(Ordering::Acquire);
        {
            let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *pending, &mut spare);
        }
        let wrote = !spare.is_empty();
        if wrote {
            // A failed write (closed stdout) cannot be reported anywhere better; keep draining.
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
            if spare.capacity() > 4 * WAKE_BYTES {
                spare.shrink_to(64 * 1024);
            }
        }
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > reported_dropped {
            let mut buf = Vec::with_capacity(200);
            buf.extend_from_slice(b"{\"timestamp\":\"");
            write_rfc3339_ms(&mut buf, SystemTime::now());
            buf.extend_from_slice(b"\",\"level\":\"WARN\",\"message\":\"Log lines dropped: output stalled\",\"dropped\":");
            buf.extend_from_slice((dropped - reported_dropped).to_string().as_bytes());
            buf.extend_from_slice(suffix.as_bytes());
            let _ = out.write_all(&buf);
            let _ = out.flush();
            reported_dropped = dropped;
        }
        if closing {
            return;
        }
        if wrote {
            std::thread::park_timeout(FLUSH_INTERVAL);
            continue;
        }
        // Nothing came in a whole interval: sleep until a line (or shutdown)
        // unparks. Said before looking again, so a line pushed after the look
        // sees `idle` and unparks (an unpark before the park is kept).
        shared.idle.store(true, Ordering::SeqCst);
        let empty = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if empty && !shared.closing.load(Ordering::Acquire) {
            std::thread::park();
        }
        shared.idle.store(false, Ordering::SeqCst);
    }
}

thread_local! {
    /// One reusable line buffer per thread: formatting a line allocates nothing.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    /// The formatted `YYYY-MM-DDTHH:MM:SS.` prefix of the current second.
    static SECOND: std::cell::RefCell<(u64, [u8; 20])> = const { std::cell::RefCell::new((u64::MAX, [0; 20])) };
}

/// Longest request path written to a log line (bytes); longer ones are cut with a marker.
pub const MAX_LOGGED_PATH: usize = 512;

/// `None` if `value` fits in `max` bytes, else the longest prefix ending on a character
/// boundary and how many bytes were left out.
pub fn cap(value: &str, max: usize) -> Option<(&str, usize)> {
    if value.len() <= max {
        return None;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Some((&value[..end], value.len() - end))
}

/// A log line being built. Fields appear in the order added.
pub struct Line<'a> {
    logger: &'a Logger,
    buf: Option<Vec<u8>>,
}

/// Keys are program text (`&'static str`), never data, and are written as they are:
/// a key that would need a JSON escape is a bug, caught in debug builds (tests).
impl Line<'_> {
    fn key(buf: &mut Vec<u8>, key: &'static str) {
        debug_assert!(
            first_to_escape(key.as_bytes()).is_none(),
            "log key {key:?} needs escaping"
        );
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(b"\":");
    }

    pub fn str(mut self, key: &'static str, value: &str) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            push_json_str(buf, value);
        }
        self
    }

    /// Like `str`, for a value that needs no JSON escape by construction (a request id
    /// admitted only from safe characters, a method label, a route template): written as
    /// it is. Checked in debug builds.
    pub fn plain(mut self, key: &'static str, value: &str) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            debug_assert!(
                first_to_escape(value.as_bytes()).is_none(),
                "{key}: {value:?} needs escaping"
            );
            Self::key(buf, key);
            buf.push(b'"');
            buf.extend_from_slice(value.as_bytes());
            buf.push(b'"');
        }
        self
    }

    /// Like `str`, but a value longer than `max` bytes is cut at a character boundary and
    /// ends with the marker `…[cut N bytes]`, so one request cannot write a huge line.
    pub fn capped(self, key: &'static str, value: &str, max: usize) -> Self {
        match cap(value, max) {
            None => self.str(key, value),
            Some((kept, cut)) => self.str(key, &format!("{kept}…[cut {cut} bytes]")),
        }
    }

    pub fn u64(mut self, key: &'static str, value: u64) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            push_int(buf, value);
        }
        self
    }

    pub fn i64(mut self, key: &'static str, value: i64) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            push_int(buf, value);
        }
        self
    }

    /// Non-finite values are written as `null` (JSON has no NaN).
    pub fn f64(mut self, key: &'static str, value: f64) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            if value.is_finite() {
                let _ = write!(buf, "{value}");
            } else {
                buf.extend_from_slice(b"null");
            }
        }
        self
    }

    /// A duration in milliseconds with microsecond precision (`12.345`), formatted
    /// with integer arithmetic (no float formatting on the request path).
    pub fn millis(mut self, key: &'static str, d: Duration) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            push_int(buf, us / 1000);
            let frac = us % 1000;
            buf.extend_from_slice(&[
                b'.',
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ]);
        }
        self
    }

    /// `trace_id` and `span_id` of `t`, as lowercase hex (32 and 16 digits), written
    /// straight into the line: no temporary strings on the request path.
    pub fn trace(mut self, t: &crate::trace::TraceContext) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            buf.extend_from_slice(b",\"trace_id\":\"");
            buf.extend_from_slice(&hex32(t.trace_id));
            buf.extend_from_slice(b"\",\"span_id\":\"");
            buf.extend_from_slice(&hex32(u128::from(t.span_id))[16..]);
            buf.push(b'"');
        }
        self
    }

    pub fn bool(mut self, key: &'static str, value: bool) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            buf.extend_from_slice(if value { b"true" } else { b"false" });
        }
        self
    }

    /// An IP address as a JSON string (`"127.0.0.1"`, `"::1"`); IPv4, the common
    /// case, is written digit by digit rather than through `Display`.
    pub fn ip(mut self, key: &'static str, value: std::net::IpAddr) -> Self {
        match value {
            std::net::IpAddr::V4(v4) => {
                if let Some(buf) = self.buf.as_mut() {
                    Self::key(buf, key);
                    buf.push(b'"');
                    for (i, octet) in v4.octets().into_iter().enumerate() {
                        if i > 0 {
                            buf.push(b'.');
                        }
                        push_int(buf, octet);
                    }
                    buf.push(b'"');
                }
                self
            }
            v6 => self.display(key, v6),
        }
    }

    /// Writes `value` with `Display`, unquoted escaping aside: for numbers and
    /// addresses, which need no JSON escaping, without a temporary string.
    pub fn display(mut self, key: &'static str, value: impl std::fmt::Display) -> Self {
        if let Some(buf) = self.buf.as_mut() {
            Self::key(buf, key);
            buf.push(b'"');
            let _ = write!(buf, "{value}");
            buf.push(b'"');
        }
        self
    }

    pub fn emit(self) {
        if let Some(mut buf) = self.buf {
            buf.extend_from_slice(self.logger.suffix.as_bytes());
            self.logger.push(&buf);
            // Keep the allocation for this thread's next line.
            if buf.capacity() <= 64 * 1024 {
                SPARE.with(|s| s.set(buf));
            }
        }
    }
}

/// Appends `v` in decimal, without going through `fmt` (on every access line).
fn push_int(buf: &mut Vec<u8>, v: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Lowercase hex digits, by value.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `v` as 32 lowercase hex digits, zero-padded (the low 16 of them: `[16..]`): a
/// byte at a time into an array, not a 128-bit shift or a `Vec` push per digit.
pub(crate) fn hex32(v: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (pair, b) in out.chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// Which bytes a JSON string literal cannot hold as they are: `"`, `\`, control
/// characters and DEL (escaped as well, so a log line stays printable).
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// Appends `s` as a JSON string literal. Runs of plain bytes are copied whole; one
/// table lookup per byte finds the next byte to escape.
/// The first byte of `bytes` that `NEEDS_ESCAPE`. Eight bytes at a time while none
/// of them can be one (most strings logged need no escape at all), then byte by byte:
/// the word test may flag a word that holds none (then the table decides), never miss one.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `v` is zero / below `n` (n <= 0x80): the classic bit tricks.
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let has_below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH != 0;
    let mut at = 0;
    for word in bytes.chunks_exact(8) {
        let x = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        if has_below(x, 0x20)
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
            || has_zero(x ^ (ONES * 0x7f))
        {
            break;
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| NEEDS_ESCAPE[usize::from(b)])
        .map(|i| at + i)
}

pub fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(off) = first_to_escape(&bytes[start..]) {
        let i = start + off;
        buf.extend_from_slice(&bytes[start..i]);
        match bytes[i] {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b => {
                buf.extend_from_slice(b"\\u00");
                buf.extend_from_slice(&hex32(u128::from(b))[30..]);
            }
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// The date-and-seconds part of a timestamp: `2024-05-01T12:34:56.` (20 bytes).
const SECOND_PREFIX: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].");

/// `2024-05-01T12:34:56.789Z`. The calendar is the `time` crate's; the
/// date-and-seconds prefix is formatted once per second per thread, so a line
/// pays for four digits, not for a calendar conversion.
pub fn write_rfc3339_ms(buf: &mut Vec<u8>, t: SystemTime) {
    buf.extend_from_slice(&rfc3339_ms(t));
}

/// `write_rfc3339_ms`'s 24 bytes, on the stack.
fn rfc3339_ms(t: SystemTime) -> [u8; 24] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let ms = d.subsec_millis();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            // Past year 9999 (beyond `time`'s range) the clock is broken: write the
            // last representable second rather than an invalid timestamp.
            let at = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
            let mut prefix = Vec::with_capacity(20);
            if at.format_into(&mut prefix, SECOND_PREFIX).is_ok() && prefix.len() == 20 {
                cached.1.copy_from_slice(&prefix);
                cached.0 = secs;
            }
        }
        let mut out = [0u8; 24];
        out[..20].copy_from_slice(&cached.1);
        out[20..].copy_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
        out
    })
}

/// An RFC 3339 timestamp with milliseconds for response bodies, formatted on the
/// stack (no `String` per response); serialises as a JSON string.
#[derive(Clone, Copy)]
pub struct Timestamp([u8; 24]);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(rfc3339_ms(SystemTime::now()))
    }

    pub fn as_str(&self) -> &str {
        // Digits, '-', ':', 'T', '.', 'Z' only.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_with_required_fields_and_escaping() {
        let sink = Sink::default();
        let log = Logger::new(Level::Info, "1.2.3", "task-\"a\"", sink.clone());
        log.error("boom \"quoted\"\n\u{1}")
            .str("route", "/api/products/{id}")
            .u64("status", 500)
            .f64("latency_ms", 1.25)
            .millis("took_ms", Duration::from_micros(12_045))
            .f64("nan", f64::NAN)
            .bool("ok", false)
            .emit();
        log.debug("hidden").emit();
        log.shutdown();
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 1, "debug must be filtered at info: {out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["message"], "boom \"quoted\"\n\u{1}");
        assert_eq!(v["status"], 500);
        assert_eq!(v["latency_ms"], 1.25);
        assert_eq!(v["took_ms"], 12.045);
        assert!(v["nan"].is_null());
        assert_eq!(v["task_id"], "task-\"a\"");
        assert_eq!(v["version"], "1.2.3");
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.');
    }

    /// A writer asleep with nothing to do is woken by the next line, every
    /// time: lines logged at random moments around its going to sleep all
    /// reach the output without a shutdown to flush them.
    #[test]
    fn an_idle_writer_wakes_for_the_next_line() {
        let sink = Sink::default();
        let log = Logger::new(Level::Info, "1", "t", sink.clone());
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for i in 0..150 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 0-12 ms: before, around and after the 5 ms interval that sends it to sleep.
            std::thread::sleep(Duration::from_micros(x % 12_000));
            log.info("tick").u64("i", i).emit();
            let want = format!("\"i\":{i}");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !String::from_utf8_lossy(&sink.0.lock().unwrap()).contains(&want) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "line {i} was never written"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // With nothing more to write it goes to sleep (no wake-up every 5 ms).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !log.shared.idle.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        log.shutdown();
    }

    #[test]
    fn numbers_durations_and_addresses_are_written_like_display() {
        let sink = Sink::default();
        let log = Logger::new(Level::Info, "1", "t", sink.clone());
        let cases = [0u64, 7, 10, 99, 100, 12_345, u64::MAX];
        const KEYS: [&str; 7] = ["u0", "u1", "u2", "u3", "u4", "u5", "u6"];
        let mut line = log.info("x");
        for (key, v) in KEYS.iter().zip(&cases) {
            line = line.u64(key, *v);
        }
        line.i64("neg", i64::MIN)
            .i64("pos", 42)
            .millis("zero_ms", Duration::ZERO)
            .millis("small_ms", Duration::from_micros(7))
            .millis("big_ms", Duration::from_micros(123_456_789))
            .ip("v4", std::net::IpAddr::from([10, 0, 255, 1]))
            .ip("v6", "2001:db8::1".parse().unwrap())
            .emit();
        log.shutdown();
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        for (i, n) in cases.iter().enumerate() {
            assert_eq!(v[format!("u{i}")], *n, "{out}");
        }
        assert_eq!(v["neg"], i64::MIN);
        assert_eq!(v["pos"], 42);
        assert!(
            out.contains(r#""zero_ms":0.000,"small_ms":0.007,"big_ms":123456.789,"#),
            "{out}"
        );
        assert_eq!(v["v4"], "10.0.255.1");
        assert_eq!(v["v6"], "2001:db8::1");
    }

    #[test]
    fn every_byte_a_json_string_cannot_hold_is_escaped_and_the_rest_kept() {
        let all: String = (0u8..=0x7f).map(char::from).chain("é€😀".chars()).collect();
        for s in [all.as_str(), "", "plain", "\"", "a\\b", "\u{7f}x\u{1f}"] {
            let mut buf = Vec::new();
            push_json_str(&mut buf, s);
            let text = String::from_utf8(buf).unwrap();
            let back: String = serde_json::from_str(&text).unwrap();
            assert_eq!(back, s);
            assert!(!text.bytes().any(|b| b < 0x20 || b == 0x7f), "{text:?}");
        }
    }

    #[test]
    fn the_word_scan_finds_every_byte_to_escape_wherever_it_is() {
        for b in 0u8..=0x7f {
            for pad in ["abcdefgh", "é€😀x"] {
                for at in 0..20 {
                    let mut text: Vec<u8> = pad.bytes().cycle().take(at).collect();
                    while std::str::from_utf8(&text).is_err() {
                        text.pop();
                    }
                    let at = text.len();
                    text.push(b);
                    text.extend(pad.bytes());
                    let found = first_to_escape(&text);
                    let want = NEEDS_ESCAPE[usize::from(b)].then_some(at);
                    assert_eq!(found, want, "byte {b:#x} at {at} after {pad:?}");
                }
            }
        }
    }

    #[test]
    fn capped_values_are_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(cap("/short", 16), None);
        assert_eq!(cap("/abcdef", 4), Some(("/abc", 3)));
        // 'é' is two bytes: a cut inside it backs off to the boundary before.
        assert_eq!(cap("/aé", 3), Some(("/a", 2)));
        let sink = Sink::default();
        let log = Logger::new(Level::Info, "1", "t", sink.clone());
        log.info("x")
            .capped("path", &"a".repeat(10_000), 100)
            .emit();
        log.shutdown();
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let path = v["path"].as_str().unwrap();
        assert!(path.starts_with(&"a".repeat(100)), "{path}");
        assert!(path.ends_with("…[cut 9900 bytes]"), "{path}");
        assert!(out.len() < 400, "{} bytes", out.len());
    }

    #[test]
    fn calendar_conversion_matches_known_dates() {
        let fmt = |t: SystemTime| {
            let mut b = Vec::new();
            write_rfc3339_ms(&mut b, t);
            String::from_utf8(b).unwrap()
        };
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(fmt(at(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(fmt(at(4_102_444_799_000)), "2099-12-31T23:59:59.000Z");
        // The same second twice (the cached prefix), then the next second.
        assert_eq!(fmt(at(1_700_000_000_007)), "2023-11-14T22:13:20.007Z");
        assert_eq!(fmt(at(1_700_000_000_999)), "2023-11-14T22:13:20.999Z");
        assert_eq!(fmt(at(1_700_000_001_000)), "2023-11-14T22:13:21.000Z");
        assert_eq!(fmt(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A clock past year 9999 writes the last representable second, still valid.
        assert_eq!(fmt(at(300_000_000_000_000)), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn trace_ids_are_written_as_fixed_width_hex() {
        let sink = Sink::default();
        let log = Logger::new(Level::Info, "1", "t", sink.clone());
        let t = crate::trace::TraceContext {
            trace_id: 0xab,
            span_id: 0x1234_5678_9abc_def0,
            parent_id: None,
            flags: 1,
        };
        log.info("x").trace(&t).emit();
        log.shutdown();
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["trace_id"], format!("{:032x}", 0xab));
        assert_eq!(v["span_id"], "123456789abcdef0");
    }

    #[test]
    fn a_stalled_output_drops_and_counts_instead_of_blocking() {
        struct Stalled(Arc<std::sync::Barrier>);
        impl Write for Stalled {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.wait();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let log = Logger::new(Level::Info, "v", "t", Stalled(barrier.clone()));
        let big = "x".repeat(64 * 1024);
        // First line gets picked up by the writer, which then blocks in write().
        log.info("first").emit();
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..(MAX_PENDING_BYTES / big.len() + 10) {
            log.info(&big).emit();
        }
        assert!(
            log.dropped() > 0,
            "lines beyond the cap must be counted as dropped"
        );
        // The writer stays blocked in write(); it is a detached thread and ends with the test process.
    }
}
