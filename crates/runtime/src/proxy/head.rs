//! Message heads: a client's request head parsed and written again for the target, a
//! target's response head parsed and written again for the client, straight from bytes
//! to bytes (header names and values are copied, never put in a map).
//!
//! What changes on the way (RFC 9110 §7.6.1): hop-by-hop headers, and every header a
//! `Connection` header names, stay behind; the request gets `X-Forwarded-For` (the
//! client's address appended), `X-Forwarded-Proto` and a W3C `traceparent` of this hop
//! (a `tracestate` without a valid `traceparent` is dropped, trace context §3.3.1);
//! `Expect: 100-continue` is answered here. Framing follows RFC 9112 §6: a request
//! with both `Content-Length` and `Transfer-Encoding`, with conflicting lengths, or
//! with a transfer coding other than chunked last is refused, as is a response with
//! conflicting lengths.

use demo_tracecontext::TraceContext;

/// Longest request or response head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Fields a `Connection` header may not take away (see `Fields::stays`).
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Sized(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Why a request head was refused: the client gets `status` and the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub why: &'static str,
}

const fn bad(why: &'static str) -> Refused {
    Refused { status: 400, why }
}

/// A request head, already written out for the target.
#[derive(Debug)]
pub struct RequestHead {
    /// Bytes of the head in the client's buffer.
    pub len: usize,
    pub method_head: bool,
    /// HTTP/1.0 client.
    pub http10: bool,
    /// The client keeps the connection open after this exchange.
    pub keep_alive: bool,
    pub body: Framing,
    pub expect_continue: bool,
    /// The method is idempotent (RFC 9110 §9.2.2): the request may be sent again.
    pub idempotent: bool,
    pub trace: TraceContext,
    /// Method and path, kept only when spans are exported.
    pub span: Option<(String, String)>,
}

/// What the first pass over a head's fields found.
#[derive(Default)]
struct Fields<'a> {
    /// Field names the `Connection` header lists (allocated only when it is present).
    named: Vec<&'a [u8]>,
    close: bool,
    keep_alive: bool,
    length: Option<u64>,
    /// A `Transfer-Encoding` field was present; `chunked_last`: chunked is its final coding.
    coded: bool,
    chunked_last: bool,
    traceparent: Option<&'a [u8]>,
    forwarded_for: Option<&'a [u8]>,
    host: bool,
    expect_continue: bool,
}

impl<'a> Fields<'a> {
    fn read(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, &'static str> {
        let mut f = Fields::default();
        for h in headers {
            let (name, value) = (h.name, h.value);
            if is(name, "connection") {
                for token in value.split(|b| *b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        f.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        f.keep_alive = true;
                    }
                    if !token.is_empty() {
                        f.named.push(token);
                    }
                }
            } else if is(name, "content-length") {
                let n = content_length(value).ok_or("invalid Content-Length")?;
                if f.length.is_some_and(|m| m != n) {
                    return Err("conflicting Content-Length values");
                }
                f.length = Some(n);
            } else if is(name, "transfer-encoding") {
                f.coded = true;
                let last = value.rsplit(|b| *b == b',').map(trim).next();
                f.chunked_last = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            } else if is(name, "traceparent") {
                f.traceparent.get_or_insert(value);
            } else if is(name, "x-forwarded-for") {
                f.forwarded_for.get_or_insert(value);
            } else if is(name, "host") {
                f.host = true;
            } else if is(name, "expect") {
                f.expect_continue |= trim(value).eq_ignore_ascii_case(b"100-continue");
            }
        }
        Ok(f)
    }

    /// Not forwarded whatever the direction: hop-by-hop, or named by `Connection`.
    ///
    /// The fields that frame or route a message are kept even when `Connection` names
    /// them: the framing was read from them, and removing them would let the next hop
    /// read a different message (`Connection: content-length` smuggles a request).
    fn stays(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| is(name, h))
            || (!FRAMING.iter().any(|h| is(name, h))
                && self
                    .named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name.as_bytes())))
    }
}

fn is(name: &str, lower: &str) -> bool {
    name.eq_ignore_ascii_case(lower)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// 1-19 decimal digits, nothing else.
fn content_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Visible ASCII, space and tab: what a header value may be read as text.
fn is_text(v: &[u8]) -> bool {
    v.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b))
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The origin form of a request target (a query alone still wants its "/"), and the
/// authority of an absolute-form one.
fn origin_form(target: &str) -> Option<(&str, Option<&str>)> {
    if target.starts_with('/') || target == "*" {
        return Some((target, None));
    }
    let lower = target.get(..8).map(str::to_ascii_lowercase)?;
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return None;
    }
    Some((if path.is_empty() { "/" } else { path }, Some(authority)))
}

/// Parses the request head at the start of `buf` and writes it, rewritten for the
/// target, to `out`. `Ok(None)`: the head is not complete yet.
pub fn request(
    buf: &[u8],
    peer_ip: &str,
    want_span: bool,
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Refused {
                status: 431,
                why: "request head too large",
            });
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused {
                status: 431,
                why: "too many header fields",
            });
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    if len > MAX_HEAD {
        return Err(Refused {
            status: 431,
            why: "request head too large",
        });
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request head"));
    };
    let (path, authority) = origin_form(target).ok_or(bad("invalid request target"))?;
    let f = Fields::read(req.headers).map_err(bad)?;
    let body = if f.coded {
        if f.length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        // RFC 9112 §6.1: HTTP/1.0 has no transfer codings; such framing is faulty.
        if version == 0 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !f.chunked_last {
            return Err(bad("a transfer coding other than chunked last"));
        }
        Framing::Chunked
    } else {
        match f.length {
            Some(n) if n > 0 => Framing::Sized(n),
            _ => Framing::None,
        }
    };
    let http10 = version == 0;
    let trace =
        TraceContext::continue_or_start(f.traceparent.and_then(|v| std::str::from_utf8(v).ok()));

    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if path.starts_with('?') {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name;
        let replaced = is(name, "x-forwarded-for")
            || is(name, "x-forwarded-proto")
            || is(name, "traceparent")
            || (is(name, "tracestate") && trace.parent_id.is_none())
            || (is(name, "expect") && f.expect_continue);
        if !replaced && !f.stays(name) {
            field(out, name.as_bytes(), h.value);
        }
    }
    if let (false, Some(authority)) = (f.host, authority) {
        field(out, b"host", authority.as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = f.forwarded_for.filter(|v| is_text(v)) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\ntraceparent: ");
    out.extend_from_slice(&trace.header_bytes());
    out.extend_from_slice(b"\r\n\r\n");

    Ok(Some(RequestHead {
        len,
        method_head: method == "HEAD",
        http10,
        keep_alive: if http10 {
            f.keep_alive && !f.close
        } else {
            !f.close
        },
        body,
        expect_continue: f.expect_continue && !http10 && body != Framing::None,
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        trace,
        span: want_span.then(|| {
            let path = path.split('?').next().unwrap_or(path);
            (
                method.to_owned(),
                if path.is_empty() { "/" } else { path }.to_owned(),
            )
        }),
    }))
}

/// The side of the exchange a response head is written for.
#[derive(Debug, Clone, Copy)]
pub struct ForClient {
    pub method_head: bool,
    pub http10: bool,
    /// The connection stays open after this response, if its framing allows.
    pub keep_alive: bool,
}

/// A response head, already written out for the client.
#[derive(Debug)]
pub struct ResponseHead {
    /// Bytes of the head in the target's buffer.
    pub len: usize,
    pub status: u16,
    /// 1xx: another head follows.
    pub interim: bool,
    /// The body as the target sends it.
    pub body: Framing,
    /// A chunked body goes to the client as plain data, delimited by closing.
    pub dechunk: bool,
    /// A body delimited by close goes to the client chunked, so that its connection
    /// can carry on.
    pub rechunk: bool,
    pub close_client: bool,
    /// The target keeps the connection open after this response.
    pub target_keeps: bool,
}

/// Parses the response head at the start of `buf` and writes it, rewritten for the
/// client, to `out` (an interim response to an HTTP/1.0 client is not written).
/// `Ok(None)`: the head is not complete yet.
pub fn response(
    buf: &[u8],
    client: ForClient,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(_) => return Err("response head too large"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header fields"),
        Err(_) => return Err("malformed response head"),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err("malformed response head");
    };
    if status == 101 {
        return Err("101 Switching Protocols to a request that asked for no upgrade");
    }
    let f = Fields::read(resp.headers)?;
    let interim = (100..200).contains(&status);
    let body = if interim || client.method_head || status == 204 || status == 304 {
        Framing::None
    } else if f.coded {
        if f.chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        f.length.map_or(Framing::UntilClose, Framing::Sized)
    };
    let dechunk = client.http10 && body == Framing::Chunked;
    let rechunk = !client.http10 && body == Framing::UntilClose;
    let close_client = !interim
        && (!client.keep_alive || (client.http10 && body == Framing::UntilClose) || dechunk);
    let target_keeps = body != Framing::UntilClose
        && if version == 0 {
            f.keep_alive && !f.close
        } else {
            !f.close
        };
    let head = ResponseHead {
        len,
        status,
        interim,
        body,
        dechunk,
        rechunk,
        close_client,
        target_keeps,
    };
    if interim && client.http10 {
        return Ok(Some(head));
    }

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name;
        let dropped = f.stays(name)
            || (f.coded && is(name, "content-length"))
            || (dechunk && is(name, "transfer-encoding"));
        if !dropped {
            field(out, name.as_bytes(), h.value);
        }
    }
    if rechunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client.http10 && !interim {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(head))
}

fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// The load balancer's own response: a JSON error body.
pub fn error(out: &mut Vec<u8>, status: u16, message: &str, close: bool) {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = serde_json::json!({"error": "load_balancer", "message": message}).to_string();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(head: &str) -> (String, RequestHead) {
        let mut out = Vec::new();
        let r = request(head.as_bytes(), "127.0.0.1", true, &mut out)
            .unwrap()
            .unwrap();
        (String::from_utf8(out).unwrap(), r)
    }

    fn fields(head: &str) -> Vec<String> {
        head.split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_stay_behind() {
        let (out, r) = rewrite(
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret-Hop\r\n\
             connection: , x-other\r\nX-Secret-Hop: 1\r\nx-other: 2\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: close\r\n\
             X-Request-Id: abc\r\n\r\n",
        );
        assert!(out.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{out}");
        assert_eq!(
            fields(&out),
            [
                "host",
                "x-request-id",
                "x-forwarded-for",
                "x-forwarded-proto",
                "traceparent"
            ]
        );
        assert!(r.keep_alive);
        assert_eq!(r.span, Some(("GET".into(), "/a".into())));
    }

    #[test]
    fn connection_cannot_take_away_the_fields_that_frame_a_message() {
        let (out, r) = rewrite(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: content-length, host, x-a\r\n\
             Content-Length: 5\r\nx-a: 1\r\n\r\n",
        );
        assert_eq!(r.body, Framing::Sized(5));
        assert!(
            out.contains("\r\nContent-Length: 5\r\n") && out.contains("\r\nHost: x\r\n"),
            "{out}"
        );
        assert!(!out.contains("x-a"), "{out}");
        let (out, r) = answer(
            "HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\ntransfer-encoding: chunked\r\n\r\n",
            GET11,
        )
        .unwrap();
        assert_eq!(r.body, Framing::Chunked);
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
    }

    #[test]
    fn forwarding_fields_are_this_hops() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (out, r) = rewrite(&format!(
            "GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\nx-forwarded-for: 10.0.0.1\r\n\
             X-Forwarded-Proto: https\r\ntraceparent: {parent}\r\ntracestate: a=1\r\n\r\n"
        ));
        assert!(
            out.contains("\r\nx-forwarded-for: 203.0.113.7, 127.0.0.1\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nx-forwarded-proto: http\r\n"));
        assert!(out.contains("\r\ntracestate: a=1\r\n"));
        assert_eq!(r.trace.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert!(out.contains(&format!("\r\ntraceparent: {}\r\n", r.trace.header())));
        assert_eq!(out.matches("forwarded").count(), 2);
        // Without a valid traceparent, tracestate goes; a value that is not text is replaced.
        let (out, _) = rewrite(
            "GET / HTTP/1.1\r\ntraceparent: junk\r\ntracestate: a=1\r\nx-forwarded-for: é\r\n\r\n",
        );
        assert!(!out.contains("tracestate"), "{out}");
        assert!(out.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{out}");
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_host() {
        let (out, _) = rewrite("GET http://example.test:8080?q=1 HTTP/1.1\r\n\r\n");
        assert!(
            out.starts_with("GET /?q=1 HTTP/1.1\r\nhost: example.test:8080\r\n"),
            "{out}"
        );
        let (out, _) = rewrite("GET HTTP://h/p HTTP/1.1\r\nHost: kept\r\n\r\n");
        assert!(
            out.starts_with("GET /p HTTP/1.1\r\nHost: kept\r\nx-forwarded-for"),
            "{out}"
        );
        let mut out = Vec::new();
        for target in ["ftp://h/", "http:///x", "x"] {
            let head = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(
                request(head.as_bytes(), "127.0.0.1", false, &mut out).unwrap_err(),
                bad("invalid request target"),
                "{target}"
            );
        }
    }

    #[test]
    fn request_framing_is_decided_or_refused() {
        let framing = |h: &str| {
            let mut out = Vec::new();
            request(h.as_bytes(), "127.0.0.1", false, &mut out).map(|r| r.unwrap().body)
        };
        assert_eq!(framing("GET / HTTP/1.1\r\n\r\n"), Ok(Framing::None));
        assert_eq!(
            framing("POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n"),
            Ok(Framing::Sized(12))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\ntransfer-encoding: gzip, Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for refused in [
            "POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert_eq!(
                framing(refused).map_err(|r| r.status),
                Err(400),
                "{refused}"
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            framing(&format!("GET / HTTP/1.1\r\n{many}\r\n")).map_err(|r| r.status),
            Err(431)
        );
        let partial = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(framing(&partial).map_err(|r| r.status), Err(431));
        let mut out = Vec::new();
        assert!(matches!(
            request(b"GET / HTTP/1.1\r\nhost", "", false, &mut out),
            Ok(None)
        ));
        assert!(out.is_empty(), "nothing written for a partial head");
    }

    #[test]
    fn keep_alive_follows_the_clients_version_and_connection_field() {
        let keeps = |h: &str| rewrite(h).1.keep_alive;
        assert!(keeps("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"));
        let (out, r) =
            rewrite("POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n");
        assert!(r.expect_continue);
        assert!(!out.contains("expect"), "{out}");
    }

    fn answer(head: &str, client: ForClient) -> Result<(String, ResponseHead), &'static str> {
        let mut out = Vec::new();
        let r = response(head.as_bytes(), client, &mut out)?.unwrap();
        Ok((String::from_utf8(out).unwrap(), r))
    }

    const GET11: ForClient = ForClient {
        method_head: false,
        http10: false,
        keep_alive: true,
    };

    #[test]
    fn response_framing_follows_rfc_9112() {
        let body = |h: &str, c| answer(h, c).map(|(_, r)| r.body);
        assert_eq!(
            body("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", GET11),
            Ok(Framing::Sized(5))
        );
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
                GET11
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\n\r\n", GET11),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", GET11),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            body("HTTP/1.1 204 No Content\r\n\r\n", GET11),
            Ok(Framing::None)
        );
        assert_eq!(
            body(
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                GET11
            ),
            Ok(Framing::None)
        );
        let head = ForClient {
            method_head: true,
            ..GET11
        };
        assert_eq!(
            body("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", head),
            Ok(Framing::None)
        );
        assert!(
            body(
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
                GET11
            )
            .is_err()
        );
        assert!(body("HTTP/1.1 101 Switching Protocols\r\n\r\n", GET11).is_err());
        assert!(body("HTTP/1.1 2000 OK\r\n\r\n", GET11).is_err());
    }

    #[test]
    fn response_heads_are_rewritten_for_the_client() {
        let (out, r) = answer(
            "HTTP/1.1 200 OK\r\nConnection: x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\n\
             transfer-encoding: chunked\r\ncontent-length: 5\r\nx-kept: y\r\n\r\n",
            GET11,
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kept: y\r\n\r\n"
        );
        assert!(!r.close_client && r.target_keeps);
        // An HTTP/1.0 client gets the chunked body as plain data up to the close.
        let old = ForClient {
            http10: true,
            ..GET11
        };
        let (out, r) =
            answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", old).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        assert!(r.dechunk && r.close_client);
        let (out, _) = answer("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", old).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
        // A body delimited by close ends the target's connection; an HTTP/1.1 client
        // gets it chunked and keeps its own, an HTTP/1.0 one gets it as it came.
        let (out, r) = answer("HTTP/1.1 200 OK\r\n\r\n", GET11).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert!(r.rechunk && !r.close_client && !r.target_keeps);
        let (out, r) = answer("HTTP/1.1 200 OK\r\n\r\n", old).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        assert!(!r.rechunk && r.close_client);
        let (_, r) = answer(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            GET11,
        )
        .unwrap();
        assert!(!r.close_client && !r.target_keeps);
        let (_, r) = answer("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", GET11).unwrap();
        assert!(!r.target_keeps);
        let (out, r) = answer("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", GET11).unwrap();
        assert!(r.interim && !r.close_client);
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n");
        let (out, r) = answer("HTTP/1.1 103 Early Hints\r\n\r\n", old).unwrap();
        assert!(r.interim && out.is_empty());
    }

    #[test]
    fn the_load_balancers_own_errors_are_json() {
        let mut out = Vec::new();
        error(&mut out, 502, "target task-1 failed: x", true);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(head.ends_with("\r\nconnection: close"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["message"], "target task-1 failed: x");
    }
}
