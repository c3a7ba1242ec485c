//! HTTP responses as the bench reads them: the head (status, framing,
//! content type, `Connection: close`) and the body's framing (chunked,
//! content-length or close-delimited), decoded incrementally from any split.

/// How a response body is delimited, with the decoding state.
#[derive(Debug)]
pub(crate) enum Body {
    /// Chunked: the state, and the size being read or the bytes left in a chunk.
    Chunked(Chunk, u64),
    Length(u64),
    /// Close-delimited: every byte until EOF is body.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Chunk {
    Size,
    /// Chunk extensions, or the CR, up to the LF ending the size line.
    SizeLine,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields after the last chunk; `true` at the start of a line.
    Trailer(bool),
    Done,
}

impl Body {
    /// Passes the body bytes in `data` to `out`; returns the bytes consumed and
    /// whether the body is complete (the rest then belongs to the next message).
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, bool), &'static str> {
        let (state, size) = match self {
            Body::Close => {
                out(data);
                return Ok((data.len(), false));
            }
            Body::Length(left) => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                out(&data[..n]);
                *left -= n as u64;
                return Ok((n, *left == 0));
            }
            Body::Chunked(state, size) => (state, size),
        };
        let mut i = 0;
        while i < data.len() && *state != Chunk::Done {
            if *state == Chunk::Data {
                let n = (data.len() - i).min(usize::try_from(*size).unwrap_or(usize::MAX));
                out(&data[i..i + n]);
                i += n;
                *size -= n as u64;
                if *size == 0 {
                    *state = Chunk::DataEnd;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            *state = match *state {
                Chunk::Size => match (b as char).to_digit(16) {
                    Some(_) if *size >= 1 << 40 => return Err("chunk size too large"),
                    Some(d) => {
                        *size = *size * 16 + u64::from(d);
                        Chunk::Size
                    }
                    None if b == b'\n' && *size == 0 => Chunk::Trailer(true),
                    None if b == b'\n' => Chunk::Data,
                    None if matches!(b, b'\r' | b';' | b' ' | b'\t') => Chunk::SizeLine,
                    None => return Err("bad chunk size"),
                },
                Chunk::SizeLine if b != b'\n' => Chunk::SizeLine,
                Chunk::SizeLine if *size == 0 => Chunk::Trailer(true),
                Chunk::SizeLine => Chunk::Data,
                Chunk::DataEnd => match b {
                    b'\r' => Chunk::DataEnd,
                    b'\n' => Chunk::Size,
                    _ => return Err("no CRLF after chunk data"),
                },
                Chunk::Trailer(at_start) => match b {
                    b'\n' if at_start => Chunk::Done,
                    b'\n' => Chunk::Trailer(true),
                    b'\r' => Chunk::Trailer(at_start),
                    _ => Chunk::Trailer(false),
                },
                Chunk::Data | Chunk::Done => unreachable!("handled above"),
            };
        }
        Ok((i, *state == Chunk::Done))
    }
}

/// Longest response head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Length of the head (through the blank line) once `buf` holds all of it.
pub(crate) fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// What a response head says.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) body: Body,
    pub(crate) event_stream: bool,
    /// `Connection: close`: the server takes no further request on it.
    pub(crate) close: bool,
}

pub(crate) fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5)?.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let (mut chunked, mut length, mut event_stream, mut close) = (false, None, false, false);
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.ends_with("chunked"),
            "content-length" => length = value.parse::<u64>().ok(),
            "content-type" => event_stream = value.starts_with("text/event-stream"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked(Chunk::Size, 0),
        (false, Some(n)) => Body::Length(n),
        _ if status < 200 || status == 204 || status == 304 => Body::Length(0),
        _ => Body::Close,
    };
    Ok(Head {
        status,
        body,
        event_stream,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_whole_or_byte_by_byte() {
        let wire = b"7\r\ndata: 1\r\n4;ext=1\r\n 2\n\n\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut whole = Vec::new();
        let mut body = Body::Chunked(Chunk::Size, 0);
        let (used, done) = body
            .feed(wire, &mut |b| whole.extend_from_slice(b))
            .unwrap();
        assert!(done);
        assert_eq!(
            (&wire[used..], &whole[..]),
            (&b"NEXT"[..], &b"data: 1 2\n\n"[..])
        );
        let mut bytewise = Vec::new();
        let mut body = Body::Chunked(Chunk::Size, 0);
        for b in &wire[..used] {
            body.feed(std::slice::from_ref(b), &mut |b| {
                bytewise.extend_from_slice(b)
            })
            .unwrap();
        }
        assert_eq!(bytewise, whole);
        assert!(
            Body::Chunked(Chunk::Size, 0)
                .feed(b"zz\r\n", &mut |_| {})
                .is_err()
        );
    }

    #[test]
    fn response_heads() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = parse_head(head).unwrap();
        assert!(h.status == 200 && h.event_stream && !h.close);
        assert!(matches!(h.body, Body::Chunked(..)));
        let head = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\r\n";
        assert!(matches!(parse_head(head).unwrap().body, Body::Close));
        let head = b"HTTP/1.1 413 Too Large\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
        let h = parse_head(head).unwrap();
        assert!(h.status == 413 && !h.event_stream && h.close);
        assert!(matches!(h.body, Body::Length(5)));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
