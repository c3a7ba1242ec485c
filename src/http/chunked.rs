//! The chunked request-body decoder: sizes, data, and the trailer, as the
//! bytes arrive.

use super::{Reject, Status};

/// Longest chunk-size line (with extensions) or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// Decodes a chunked request body as its bytes arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

impl ChunkedDecoder {
    /// Consumes what it can of `input`, appending data to `out` (which may
    /// not grow past `max`). Returns the bytes consumed and whether the body
    /// is complete; an incomplete line is left unconsumed for the next call.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(usize, bool), Reject> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Data(left) => {
                    let take = left.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        return Ok((pos, false));
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = ChunkState::Size;
                    }
                    [b'\n', ..] => {
                        pos += 1;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok((pos, false)),
                    _ => return Err(Reject::bad("bad chunked body: no CRLF after chunk data")),
                },
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(line) = take_line(rest)? else {
                        return Ok((pos, false));
                    };
                    pos += line.consumed;
                    if self.state == ChunkState::Trailer {
                        if line.text.is_empty() {
                            self.state = ChunkState::Size;
                            return Ok((pos, true));
                        }
                        continue;
                    }
                    let size = parse_chunk_size(line.text)?;
                    if size == 0 {
                        self.state = ChunkState::Trailer;
                    } else if size > max.saturating_sub(out.len()) {
                        return Err(Reject::new(Status::PAYLOAD_TOO_LARGE, "event too large"));
                    } else {
                        self.state = ChunkState::Data(size);
                    }
                }
            }
        }
    }
}

struct Line<'a> {
    text: &'a [u8],
    consumed: usize,
}

/// The next CRLF- (or LF-) terminated line, if all of it is here.
fn take_line(buf: &[u8]) -> Result<Option<Line<'_>>, Reject> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i > MAX_CHUNK_LINE => Err(Reject::bad("bad chunked body: line too long")),
        Some(i) => {
            let text = &buf[..i];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            Ok(Some(Line {
                text,
                consumed: i + 1,
            }))
        }
        None if buf.len() > MAX_CHUNK_LINE => Err(Reject::bad("bad chunked body: line too long")),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<usize, Reject> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(Reject::bad("bad chunked body: bad chunk size"));
    }
    let text = std::str::from_utf8(digits).expect("hex digits are ASCII");
    usize::from_str_radix(text, 16).map_err(|_| Reject::bad("bad chunked body: bad chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::POLICY;

    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, Reject> {
        let mut dec = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let (used, done) = dec.decode(&buf, &mut out, POLICY.max_body)?;
            buf.drain(..used);
            if done {
                assert!(buf.is_empty(), "left over: {buf:?}");
                return Ok(out);
            }
        }
        panic!("body not complete");
    }

    #[test]
    fn chunked_bodies_in_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n";
        for step in 1..body.len() {
            assert_eq!(
                decode_all(body, step).unwrap(),
                b"hello 0123456789",
                "{step}"
            );
        }
    }

    #[test]
    fn chunked_errors() {
        let err = |b: &[u8]| decode_all(b, b.len()).unwrap_err().status;
        assert_eq!(err(b"zz\r\n"), Status::BAD_REQUEST);
        assert_eq!(err(b"2\r\nabXY"), Status::BAD_REQUEST);
        assert_eq!(err(b"401\r\n"), Status::PAYLOAD_TOO_LARGE);
        assert_eq!(err(b"ffffffffffffffffff\r\n"), Status::BAD_REQUEST);
        assert_eq!(err(&[b'1'; 2000]), Status::BAD_REQUEST);
    }
}
