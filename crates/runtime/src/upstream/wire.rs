//! HTTP/1.1 on an upstream connection, as much as a reverse proxy needs: the
//! request head written as bytes, the response head parsed with `httparse`, and
//! how each message's body is delimited (RFC 9112 §6).
//!
//! Why by hand and not hyper's client: the profile of the data path under load
//! showed hyper's client connection (its dispatch channel, the task that drives
//! the connection, the wake-ups between that task and the request's) costing
//! about as much CPU as the whole server side. A proxy that already holds a
//! parsed request only needs to write it out and to read one response head.

use bytes::{Buf, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

/// A response head larger than this is refused (the target is broken or hostile).
pub const MAX_HEAD: usize = 64 * 1024;

/// Headers a response head may carry.
const MAX_HEADERS: usize = 128;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the target closes the connection (a response with neither).
    UntilClose,
}

/// A response head that does not parse or cannot be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("invalid response head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("invalid response header {0:?}")]
    Header(String),
    #[error("invalid Content-Length {0:?}")]
    ContentLength(String),
    #[error("status {0}: protocol upgrades are not proxied")]
    Upgrade(u16),
}

/// The framing of a request the load balancer received: hyper's server has
/// already refused a `Transfer-Encoding` that does not end in `chunked`, and a
/// request with neither header has no body (RFC 9112 §6.3).
pub fn request_framing(headers: &HeaderMap) -> Framing {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Framing::Chunked;
    }
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
    {
        Some(0) | None => Framing::Empty,
        Some(n) => Framing::Length(n),
    }
}

/// Appends the request head: `METHOD path HTTP/1.1`, every header as it is,
/// the blank line. With chunked framing a `Content-Length` is left out (the
/// chunks delimit the body).
pub fn encode_request_head(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    framing: Framing,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if framing == Framing::Chunked && name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
}

/// Parses a response head at the start of `buf` and consumes it; `None` while
/// it is incomplete.
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf)? {
        httparse::Status::Partial if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| HeadError::Header(format!("status {code}")))?;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Header(h.name.to_string()))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| HeadError::Header(h.name.to_string()))?;
        headers.append(name, value);
    }
    let http11 = resp.version == Some(1);
    buf.advance(len);
    Ok(Some(Head {
        status,
        headers,
        http11,
    }))
}

/// True if a header's comma-separated list holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// How the response body is delimited (RFC 9112 §6.3) and whether the
/// connection can carry another request after it.
pub fn response_framing(request: &Method, head: &Head) -> Result<(Framing, bool), HeadError> {
    let status = head.status.as_u16();
    if status == 101 {
        return Err(HeadError::Upgrade(status));
    }
    let keep_alive = if head.http11 {
        !has_token(&head.headers, &header::CONNECTION, "close")
    } else {
        has_token(&head.headers, &header::CONNECTION, "keep-alive")
    };
    if request == Method::HEAD || head.status.is_informational() || status == 204 || status == 304 {
        return Ok((Framing::Empty, keep_alive));
    }
    if let Some(te) = head
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last = te.to_str().ok().and_then(|v| v.rsplit(',').next());
        return Ok(match last {
            Some(c) if c.trim().eq_ignore_ascii_case("chunked") => (Framing::Chunked, keep_alive),
            // Another coding last: the body ends when the connection does.
            _ => (Framing::UntilClose, false),
        });
    }
    let mut length = None;
    for v in head.headers.get_all(header::CONTENT_LENGTH) {
        let text = v.to_str().unwrap_or("");
        let n = text
            .trim()
            .parse::<u64>()
            .map_err(|_| HeadError::ContentLength(text.to_string()))?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::ContentLength(text.to_string()));
        }
        length = Some(n);
    }
    Ok(match length {
        Some(0) => (Framing::Empty, keep_alive),
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::UntilClose, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        let mut buf = BytesMut::from(raw.as_bytes());
        let h = parse_response(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "the head is consumed, nothing more");
        h
    }

    #[test]
    fn a_request_head_is_written_as_received_with_the_body_framing_kept_consistent() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("lb"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_request_head(&Method::GET, "/p?q=1", &h, Framing::Empty, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: lb\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        assert_eq!(request_framing(&h), Framing::Chunked);
        let mut out = Vec::new();
        encode_request_head(&Method::POST, "/", &h, Framing::Chunked, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("content-length"), "{text}");
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        h.remove("transfer-encoding");
        assert_eq!(request_framing(&h), Framing::Length(5));
        h.insert("content-length", HeaderValue::from_static("0"));
        assert_eq!(request_framing(&h), Framing::Empty);
    }

    #[test]
    fn an_incomplete_head_waits_and_an_oversized_one_is_refused() {
        let raw = &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"[..];
        let mut buf = BytesMut::from(raw);
        assert!(parse_response(&mut buf).unwrap().is_none());
        assert_eq!(&buf[..], raw, "nothing consumed while incomplete");
        let mut big = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(b"x-filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert!(matches!(
            parse_response(&mut big),
            Err(HeadError::TooLarge | HeadError::Parse(_))
        ));
    }

    #[test]
    fn the_body_after_the_head_stays_in_the_buffer() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP"[..]);
        let h = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.headers["content-length"], "2");
        assert_eq!(&buf[..], b"okHTTP");
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let get = Method::GET;
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                Framing::Length(10),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
            ("HTTP/1.1 204 No Content\r\n\r\n", Framing::Empty, true),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
                Framing::Length(4),
                true,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            assert_eq!(
                response_framing(&get, &head(raw)).unwrap(),
                (framing, keep_alive),
                "{raw:?}"
            );
        }
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(
            response_framing(&Method::HEAD, &h).unwrap(),
            (Framing::Empty, true),
            "a HEAD response has no body whatever its Content-Length"
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert!(response_framing(&get, &head(bad)).is_err(), "{bad:?}");
        }
    }
}
