//! Response bodies of streams: `Framing` (chunked, or delimited by the
//! close), the chunked decoder over an `HttpConn`'s buffer, and `BodyEnd`,
//! how a body ended or why reading it stopped.

use std::io;
use std::time::Instant;

use super::{HttpConn, Stop};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Close,
}

/// How a stream's body ended, or why reading stopped.
#[derive(Debug)]
pub enum BodyEnd {
    /// Chunked: the terminating chunk arrived. Close-delimited: EOF.
    Clean,
    /// Chunked body that ended (EOF) without its terminating chunk.
    Truncated,
    Timeout,
    Failed(#[allow(dead_code, reason = "read through Debug in failure messages")] io::Error),
}

enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
    Done,
}

pub(super) struct Body {
    pub(super) conn: Option<HttpConn>,
    framing: Framing,
    state: ChunkState,
}

impl Body {
    pub(super) fn new(conn: HttpConn, framing: Framing) -> Body {
        Body {
            conn: Some(conn),
            framing,
            state: ChunkState::Size,
        }
    }

    /// A decoder over a connection owned by the caller.
    pub(super) fn new_borrowed(framing: Framing) -> Body {
        Body {
            conn: None,
            framing,
            state: ChunkState::Size,
        }
    }

    pub(super) fn next(&mut self, deadline: Instant) -> Result<Vec<u8>, BodyEnd> {
        let mut conn = self.conn.take().expect("body owns its connection");
        let result = self.read_some(&mut conn, deadline);
        self.conn = Some(conn);
        result
    }

    /// Returns the next non-empty piece of decoded body.
    pub(super) fn read_some(
        &mut self,
        conn: &mut HttpConn,
        deadline: Instant,
    ) -> Result<Vec<u8>, BodyEnd> {
        let stop = |stop: Stop, clean_on_eof: bool| match stop {
            Stop::Timeout => BodyEnd::Timeout,
            Stop::Eof if clean_on_eof => BodyEnd::Clean,
            Stop::Eof => BodyEnd::Truncated,
            Stop::Failed(e) => BodyEnd::Failed(e),
        };
        if self.framing == Framing::Close {
            if !conn.buf.is_empty() {
                return Ok(std::mem::take(&mut conn.buf));
            }
            return match conn.fill(deadline) {
                Ok(_) => Ok(std::mem::take(&mut conn.buf)),
                Err(s) => Err(stop(s, true)),
            };
        }
        loop {
            match self.state {
                ChunkState::Size => {
                    let line = conn.take_line(deadline).map_err(|s| stop(s, false))?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if conn.buf.is_empty() {
                        conn.fill(deadline).map_err(|s| stop(s, false))?;
                    }
                    let n = left.min(conn.buf.len());
                    let bytes: Vec<u8> = conn.buf.drain(..n).collect();
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                    return Ok(bytes);
                }
                ChunkState::DataEnd => {
                    let crlf = conn.take_exact(2, deadline).map_err(|s| stop(s, false))?;
                    assert_eq!(crlf, b"\r\n", "chunk data not followed by CRLF");
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let line = conn.take_line(deadline).map_err(|s| stop(s, false))?;
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Err(BodyEnd::Clean),
            }
        }
    }
}
