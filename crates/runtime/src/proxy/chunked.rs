//! The chunked transfer coding (RFC 9112 §7.1), followed byte by byte: where a chunked
//! body ends, so that the bytes after it (the next message) are not taken for part of
//! it, and its data, for a peer that cannot take the coding (an HTTP/1.0 client).
//!
//! Strict on purpose: line ends are CRLF, a size is 1-15 hex digits (so it fits in a
//! u64), a size line and each trailer line are at most [`MAX_LINE`] bytes and the
//! trailer section at most [`MAX_TRAILERS`]. A proxy that read a body differently from
//! the peer behind it would let one request hide inside another.

/// Longest size line (with extensions) or trailer line.
pub const MAX_LINE: usize = 4096;
/// Longest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    Size,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("chunk size line or trailer line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("trailer section longer than {MAX_TRAILERS} bytes")]
    TrailersTooLong,
    #[error("invalid trailer line end")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size: extensions or whitespace, up to CR.
    Extension {
        value: u64,
    },
    /// CR seen after a size line; LF expected.
    SizeLf {
        value: u64,
    },
    /// Data bytes still to come in this chunk.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line; `cr`: its last byte was CR.
    TrailerLine {
        cr: bool,
    },
    /// CR of the final empty line seen; LF expected.
    EndLf,
    Done,
}

/// Where in a chunked body the bytes seen so far end.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    line: usize,
    trailers: usize,
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line: 0,
            trailers: 0,
        }
    }
}

impl Chunked {
    /// The whole body (last chunk and trailer section included) has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the body's bytes from the front of `input`, calling `data` with each run of
    /// chunk data; returns how many bytes belong to the body (all of `input` unless the
    /// body ended inside it).
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Size { value, digits } => {
                    self.count_line()?;
                    match hex(b) {
                        Some(d) if digits < 15 => State::Size {
                            value: value << 4 | u64::from(d),
                            digits: digits + 1,
                        },
                        Some(_) => return Err(ChunkError::Size),
                        None if digits == 0 => return Err(ChunkError::Size),
                        None => self.after_size(b, value)?,
                    }
                }
                State::Extension { value } => {
                    self.count_line()?;
                    self.after_size(b, value)?
                }
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(ChunkError::Size);
                    }
                    self.line = 0;
                    if value == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(value)
                    }
                }
                State::Data(left) => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                State::DataCr | State::DataLf => return Err(ChunkError::DataEnd),
                State::TrailerStart if b == b'\r' => State::EndLf,
                State::TrailerStart | State::TrailerLine { .. } => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(ChunkError::TrailersTooLong);
                    }
                    self.count_line()?;
                    let cr = matches!(self.state, State::TrailerLine { cr: true });
                    match b {
                        // A trailer line ends in CRLF; a bare LF is refused.
                        b'\n' if !cr => return Err(ChunkError::Trailer),
                        b'\n' => {
                            self.line = 0;
                            State::TrailerStart
                        }
                        _ => State::TrailerLine { cr: b == b'\r' },
                    }
                }
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::EndLf => return Err(ChunkError::Trailer),
                State::Done => return Ok(i),
            };
            i += 1;
        }
        Ok(i)
    }

    fn count_line(&mut self) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(ChunkError::LineTooLong);
        }
        Ok(())
    }

    /// A byte after a size's digits: an extension (or whitespace before it), or CR.
    fn after_size(&self, b: u8, value: u64) -> Result<State, ChunkError> {
        match b {
            b'\r' => Ok(State::SizeLf { value }),
            b'\n' => Err(ChunkError::Size),
            _ => Ok(State::Extension { value }),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes: (bytes of the body, data, done).
    fn run(input: &[u8], step: usize) -> Result<(usize, Vec<u8>, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut data = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = c.feed(piece, |d| data.extend_from_slice(d))?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((used, data, c.is_done()))
    }

    #[test]
    fn a_body_ends_at_its_last_chunk_whatever_the_pieces() {
        let body = b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for step in 1..=input.len() {
            let (used, data, done) = run(&input, step).unwrap();
            assert_eq!(used, body.len(), "step {step}");
            assert_eq!(data, b"abc0123456789");
            assert!(done);
        }
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (used, data, done) = run(b"5\r\nab", 64).unwrap();
        assert_eq!((used, &data[..], done), (5, &b"ab"[..], false));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (bad, want) in [
            (&b"\r\n"[..], ChunkError::Size),
            (b"g\r\n", ChunkError::Size),
            (b"3\nabc\r\n", ChunkError::Size),
            (b"3\r\nabcX\r\n", ChunkError::DataEnd),
            (b"1000000000000000\r\n", ChunkError::Size),
            (b"0\r\nx-t: 1\n\r\n", ChunkError::Trailer),
            (b"0\r\n\rX", ChunkError::Trailer),
        ] {
            assert_eq!(
                run(bad, 64),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"1;".as_slice(), &[b'e'; MAX_LINE]].concat();
        assert_eq!(run(&long, 64), Err(ChunkError::LineTooLong));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 64 {
            trailers.extend_from_slice(b"x-t: 1\r\n");
        }
        assert_eq!(run(&trailers, 64), Err(ChunkError::TrailersTooLong));
    }

    #[test]
    fn the_largest_size_fits() {
        let mut c = Chunked::default();
        let n = c.feed(b"fffffffffffffff\r\nab", |_| {}).unwrap();
        assert_eq!(n, 19);
        assert!(!c.is_done());
    }
}
