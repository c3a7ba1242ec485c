//! The `text/event-stream` parser, built for speed: it is fed whatever a
//! read brought, keeps at most [`LINE_KEEP`] bytes of a line that spans reads,
//! and hands up only what the bench counts (an event's `SEQ NS` stamp, other
//! events, comments), never allocating.

/// Bytes kept of a line that spans reads: enough for `data: SEQ NS` (at most
/// 47 bytes); the rest of a long (padded) line is scanned, never copied.
const LINE_KEEP: usize = 64;

/// What the SSE parser hands up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SseItem {
    /// A dispatched event whose first data line was `SEQ NS`.
    Stamped { seq: u64, sent_ns: u64 },
    /// A dispatched event with any other data.
    Other,
    /// A comment line such as `: heartbeat`.
    Comment,
}

/// Incremental `text/event-stream` parser (WHATWG rules): lines end in CR, LF
/// or CRLF, `:` lines are comments, `data` fields make an event that is
/// dispatched on a blank line; `id`, `event`, `retry` are accepted and ignored.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// The kept start of a line that began in an earlier read.
    line: [u8; LINE_KEEP],
    line_len: usize,
    /// The last line ended in CR: a LF at the start of the next read is its tail.
    skip_lf: bool,
    has_data: bool,
    stamp: Option<(u64, u64)>,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        SseParser {
            line: [0; LINE_KEEP],
            line_len: 0,
            skip_lf: false,
            has_data: false,
            stamp: None,
        }
    }

    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(SseItem)) {
        if self.skip_lf && !data.is_empty() {
            self.skip_lf = false;
            data = data.strip_prefix(b"\n").unwrap_or(data);
        }
        while !data.is_empty() {
            let Some(end) = find_eol(data) else {
                self.keep(data);
                return;
            };
            if self.line_len == 0 {
                self.line(&data[..end], out);
            } else {
                self.keep(&data[..end]);
                let (kept, len) = (self.line, self.line_len);
                self.line_len = 0;
                self.line(&kept[..len], out);
            }
            let cr = data[end] == b'\r';
            data = &data[end + 1..];
            if cr {
                self.skip_lf = data.is_empty();
                data = data.strip_prefix(b"\n").unwrap_or(data);
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let n = part.len().min(LINE_KEEP - self.line_len);
        self.line[self.line_len..self.line_len + n].copy_from_slice(&part[..n]);
        self.line_len += n;
    }

    fn line(&mut self, line: &[u8], out: &mut impl FnMut(SseItem)) {
        if line.is_empty() {
            if self.has_data {
                out(match self.stamp {
                    Some((seq, sent_ns)) => SseItem::Stamped { seq, sent_ns },
                    None => SseItem::Other,
                });
            }
            self.has_data = false;
            self.stamp = None;
        } else if line[0] == b':' {
            out(SseItem::Comment);
        } else if !self.has_data && line.starts_with(b"data") {
            // Only the first data line carries the stamp; later ones would be
            // joined into the event's data, which changes nothing here.
            let value = match &line[4..] {
                [] => Some(&b""[..]),
                [b':', rest @ ..] => Some(rest.strip_prefix(b" ").unwrap_or(rest)),
                _ => None, // a field named e.g. `datax`
            };
            if let Some(value) = value {
                self.has_data = true;
                self.stamp = parse_stamp(value);
            }
        }
    }
}

/// Parses `SEQ NS`, optionally followed by a space and padding.
fn parse_stamp(v: &[u8]) -> Option<(u64, u64)> {
    let mut parts = v.splitn(3, |&b| b == b' ');
    let mut number = || -> Option<u64> {
        let p = parts.next().filter(|p| !p.is_empty() && p.len() <= 19)?;
        p.iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
        })
    };
    Some((number()?, number()?))
}

/// Position of the first CR or LF, eight bytes at a time: padded events make
/// long lines, and a byte loop would then cost more than the rest of parsing.
fn find_eol(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & (ONES << 7);
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        // The lowest flagged byte is exact (borrows only flag higher ones).
        let hit = has_zero(w ^ (ONES * 0x0a)) | has_zero(w ^ (ONES * 0x0d));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut p = SseParser::new();
        let mut items = Vec::new();
        for c in chunks {
            p.feed(c, &mut |i| items.push(i));
        }
        items
    }

    #[test]
    fn sse_lines_end_in_cr_lf_or_crlf_even_across_reads() {
        let stamped = SseItem::Stamped {
            seq: 7,
            sent_ns: 99,
        };
        assert_eq!(parse_all(&[b"id: 1\ndata: 7 99\n\n"]), [stamped]);
        assert_eq!(parse_all(&[b"data: 7 99\r\n\r\n"]), [stamped]);
        assert_eq!(parse_all(&[b"data: 7 99\r\r"]), [stamped]);
        // A CRLF split between reads is one line end, not two.
        assert_eq!(parse_all(&[b"data: 7 99\r", b"\n\r", b"\n"]), [stamped]);
        assert_eq!(
            parse_all(&[b"da", b"ta:7 9", b"9 xxxxxxxx\n", b"\n"]),
            [stamped]
        );
    }

    #[test]
    fn sse_comments_other_data_and_long_lines() {
        let chunks: [&[u8]; 3] = [
            b": heartbeat\n\n",
            b"event: x\ndata: hi\ndata: 1 2\n\n",
            b"id: 3\n\n",
        ];
        assert_eq!(parse_all(&chunks), [SseItem::Comment, SseItem::Other]);
        let long = format!("data: 5 6 {}\n\n", "x".repeat(1000));
        let b = long.as_bytes();
        assert_eq!(
            parse_all(&[&b[..30], &b[30..500], &b[500..]]),
            [SseItem::Stamped { seq: 5, sent_ns: 6 }]
        );
        assert_eq!(parse_all(&[b"data\n\ndatum: 1 2\n\n"]), [SseItem::Other]);
    }
}
