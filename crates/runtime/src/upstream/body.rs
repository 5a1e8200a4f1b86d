//! A target's response body, read from the upstream connection as the client
//! connection writes it out: no task of its own, no channel between two tasks.
//! When the body is complete and the connection may carry another request, the
//! connection goes back to its client connection's list at once, before the last
//! bytes are handed over, so the next request finds it there.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::body::{Frame, SizeHint};

use super::wire::Framing;
use super::{Conn, UpstreamError, Upstreams};
use crate::lb::Target;

/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// Where a chunked body's decoder stands (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines (dropped) until a blank one.
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// What one decoding step gave.
enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

/// A response body streamed from the target's connection.
pub struct UpstreamBody {
    conn: Option<Conn>,
    decoder: Decoder,
    /// Where the connection goes back once the body is complete (None: it
    /// cannot carry another request, so it closes with the body).
    home: Option<(Upstreams, Arc<Target>)>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// The body that follows a response head on `conn`.
    pub(super) fn new(
        conn: Conn,
        framing: Framing,
        home: Option<(Upstreams, Arc<Target>)>,
    ) -> UpstreamBody {
        let decoder = match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size),
            Framing::UntilClose => Decoder::UntilClose,
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            decoder,
            home,
        };
        if decoder == Decoder::Done {
            body.finish();
        }
        body
    }

    /// The body is complete: the connection goes home if it may carry another
    /// request and holds nothing beyond this response; else it closes.
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some((upstreams, target))) = (conn, self.home.take())
            && conn.buf.is_empty()
        {
            upstreams.put_back(target, conn);
        }
    }

    /// Decodes what is buffered: a data frame, the end, or a need for more bytes.
    fn step(&mut self) -> Result<Step, UpstreamError> {
        let buf = &mut self
            .conn
            .as_mut()
            .expect("a body being read has its connection")
            .buf;
        loop {
            match self.decoder {
                Decoder::Done => return Ok(Step::Done),
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = left.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.decoder = match left - n {
                        0 => Decoder::Done,
                        rest => Decoder::Length(rest),
                    };
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = left.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.decoder = Decoder::Chunked(match left - n {
                        0 => Chunk::DataEnd,
                        rest => Chunk::Data(rest),
                    });
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(UpstreamError::Chunked("no CRLF after chunk data"));
                    }
                    buf.advance(2);
                    self.decoder = Decoder::Chunked(Chunk::Size);
                }
                Decoder::Chunked(state @ (Chunk::Size | Chunk::Trailer)) => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(UpstreamError::Chunked("chunk line too long"));
                        }
                        return Ok(Step::NeedMore);
                    };
                    let line = buf.split_to(end + 2);
                    let line = &line[..end];
                    self.decoder = match state {
                        Chunk::Size => match chunk_size(line)? {
                            0 => Decoder::Chunked(Chunk::Trailer),
                            n => Decoder::Chunked(Chunk::Data(n)),
                        },
                        // Trailers are not forwarded; a blank line ends the body.
                        _ if line.is_empty() => Decoder::Done,
                        _ => Decoder::Chunked(Chunk::Trailer),
                    };
                }
            }
        }
    }
}

/// The size of a chunk-size line (hex digits, then optional `;extensions`).
fn chunk_size(line: &[u8]) -> Result<u64, UpstreamError> {
    let digits = line.split(|b| *b == b';').next().unwrap_or(b"");
    let digits = std::str::from_utf8(digits)
        .map_err(|_| UpstreamError::Chunked("chunk size is not text"))?
        .trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 15 {
        return Err(UpstreamError::Chunked("invalid chunk size"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| UpstreamError::Chunked("invalid chunk size"))
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        loop {
            if this.decoder == Decoder::Done {
                return Poll::Ready(None);
            }
            match this.step()? {
                Step::Data(data) => {
                    if this.decoder == Decoder::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::NeedMore => {
                    let conn = this
                        .conn
                        .as_mut()
                        .expect("a body being read has its connection");
                    match ready!(conn.poll_fill(cx)) {
                        Ok(0) if this.decoder == Decoder::UntilClose => {
                            // The end of such a body; the connection is closed.
                            this.decoder = Decoder::Done;
                            this.conn = None;
                            return Poll::Ready(None);
                        }
                        Ok(0) => return Poll::Ready(Some(Err(UpstreamError::Truncated))),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Some(Err(UpstreamError::Read(e)))),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_hex_with_optional_extensions() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"A;name=value").unwrap(), 10);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        assert_eq!(chunk_size(b" 5 ").unwrap(), 5);
        for bad in [&b""[..], b"xyz", b";ext", b"1000000000000000"] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
    }
}
