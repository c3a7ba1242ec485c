//! The chunked request-body decoder (RFC 9112 §7.1): sizes, data and the
//! trailer as the bytes arrive, parsed strictly and bounded as a whole.
//!
//! Strict: a chunk size is 1 to 16 hex digits with nothing around them; an
//! extension is `;name` or `;name=value` (a token or a quoted string) with
//! no whitespace (the grammar's BWS, which senders must not generate); a
//! trailer field is `name:value`, never folded; every line, the one after a
//! chunk's data included, ends in CRLF, and a lone LF or CR is refused. A
//! proxy in front that read such bytes another way would see another
//! request after this one than we do, which is what request smuggling
//! feeds on.
//!
//! Bounded: the chunk extensions of one body add up to at most the largest
//! request head (413 past it), and the trailer section to at most the
//! largest head and as many fields as a head may have (431), so a few bytes
//! of data never carry megabytes of framing.

use super::{Policy, Reject, Status};
use crate::percent::hex;

/// Most hex digits in a chunk size, leading zeros included: enough for any
/// size a `u64` holds, and with it the framing of each chunk is bounded.
const MAX_SIZE_DIGITS: usize = 16;

/// Decodes a chunked request body as its bytes arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Chunk-extension bytes of this body so far.
    extension_bytes: usize,
    /// Trailer bytes (with their CRLFs) and fields so far.
    trailer_bytes: usize,
    trailer_fields: usize,
    /// Bytes at the start of the input already searched for the end of the
    /// current line: the caller offers the input again from the line's
    /// start, so a line arriving a byte at a time is searched once.
    searched: usize,
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
    /// not grow past `policy.max_body`). Returns the bytes consumed and
    /// whether the body is complete; an incomplete line is left unconsumed,
    /// to be offered again, with what follows it, in the next call.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        policy: &Policy,
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
                    [] | [b'\r'] => return Ok((pos, false)),
                    _ => return Err(Reject::bad("bad chunked body: no CRLF after chunk data")),
                },
                ChunkState::Size => {
                    let budget = policy.max_head_size.saturating_sub(self.extension_bytes);
                    let Some(end) = self.line_end(rest, MAX_SIZE_DIGITS + budget, || {
                        // Long with no end yet: bad framing, unless it is
                        // the start of a size line with extensions.
                        let text = rest.strip_suffix(b"\r").unwrap_or(rest);
                        size_line(text, false)
                            .err()
                            .unwrap_or_else(extensions_too_large)
                    })?
                    else {
                        return Ok((pos, false));
                    };
                    let (size, extension) = size_line(&rest[..end], true)?;
                    pos += end + 2;
                    self.extension_bytes += extension;
                    if self.extension_bytes > policy.max_head_size {
                        return Err(extensions_too_large());
                    }
                    let room = policy.max_body.saturating_sub(out.len());
                    if size == 0 {
                        self.state = ChunkState::Trailer;
                    } else if size > room as u64 {
                        return Err(Reject::new(Status::PAYLOAD_TOO_LARGE, "event too large"));
                    } else {
                        self.state = ChunkState::Data(size as usize);
                    }
                }
                ChunkState::Trailer => {
                    let budget = policy.max_head_size.saturating_sub(self.trailer_bytes);
                    let Some(end) = self.line_end(rest, budget, trailer_too_large)? else {
                        return Ok((pos, false));
                    };
                    pos += end + 2;
                    if end == 0 {
                        *self = ChunkedDecoder::default();
                        return Ok((pos, true));
                    }
                    self.trailer_bytes += end + 2;
                    self.trailer_fields += 1;
                    if self.trailer_bytes > policy.max_head_size {
                        return Err(trailer_too_large());
                    }
                    if self.trailer_fields > policy.max_headers {
                        return Err(Reject::new(
                            Status::HEADERS_TOO_LARGE,
                            "too many trailer fields",
                        ));
                    }
                    trailer_field(&rest[..end])?;
                }
            }
        }
    }

    /// Where the CRLF-terminated line at the start of `rest` ends (the
    /// index of its CR), if all of it is here. A line still without its end
    /// past `limit` bytes gets `too_long`'s answer; a lone LF is refused.
    fn line_end(
        &mut self,
        rest: &[u8],
        limit: usize,
        too_long: impl FnOnce() -> Reject,
    ) -> Result<Option<usize>, Reject> {
        let from = self.searched.min(rest.len());
        match rest[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.searched = 0;
                let lf = from + i;
                if lf == 0 || rest[lf - 1] != b'\r' {
                    return Err(Reject::bad("bad chunked body: LF without CR"));
                }
                Ok(Some(lf - 1))
            }
            // One more byte than the limit: the line's CR may be here.
            None if rest.len() > limit + 1 => Err(too_long()),
            None => {
                self.searched = rest.len();
                Ok(None)
            }
        }
    }
}

fn extensions_too_large() -> Reject {
    Reject::new(
        Status::PAYLOAD_TOO_LARGE,
        "chunk extensions too large (at most the largest request head per body)",
    )
}

fn trailer_too_large() -> Reject {
    Reject::new(Status::HEADERS_TOO_LARGE, "trailer section too large")
}

/// A chunk-size line without its CRLF: the size, and how many bytes its
/// extensions take. With `complete` false, `text` may be the start of one.
fn size_line(text: &[u8], complete: bool) -> Result<(u64, usize), Reject> {
    let bad_size = || Reject::bad("bad chunked body: bad chunk size");
    let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > MAX_SIZE_DIGITS || (digits == 0 && (complete || !text.is_empty())) {
        return Err(bad_size());
    }
    let size = text[..digits]
        .iter()
        // Every one a hex digit (counted above).
        .fold(0u64, |n, d| n << 4 | u64::from(hex(d).unwrap_or(0)));
    extensions(&text[digits..], complete)?;
    Ok((size, text.len() - digits))
}

/// `*( ";" token [ "=" ( token / quoted-string ) ] )`; with `complete`
/// false, `ext` may stop anywhere inside it.
fn extensions(mut ext: &[u8], complete: bool) -> Result<(), Reject> {
    let bad = || Reject::bad("bad chunked body: bad chunk extension");
    // Past the end of `ext` where more must come: fine only in a prefix.
    let cut = |rest: &[u8]| {
        if rest.is_empty() && !complete {
            Ok(())
        } else {
            Err(bad())
        }
    };
    while !ext.is_empty() {
        let [b';', rest @ ..] = ext else {
            return Err(bad());
        };
        let name = token_len(rest);
        if name == 0 {
            return cut(rest);
        }
        ext = &rest[name..];
        let [b'=', value @ ..] = ext else {
            continue;
        };
        let len = if value.first() == Some(&b'"') {
            match quoted_len(value) {
                Ok(Some(n)) => n,
                Ok(None) if !complete => return Ok(()),
                _ => return Err(bad()),
            }
        } else {
            token_len(value)
        };
        if len == 0 {
            return cut(value);
        }
        ext = &value[len..];
    }
    Ok(())
}

/// Length of the token at the start of `text` (0: none).
fn token_len(text: &[u8]) -> usize {
    text.iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        .count()
}

/// Length of the quoted string at the start of `text`, quotes included;
/// `Ok(None)` when it has not ended yet, an error on a byte it may not hold.
fn quoted_len(text: &[u8]) -> Result<Option<usize>, ()> {
    let qdtext = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => return Ok(Some(i + 1)),
            b'\\' => match text.get(i + 1) {
                Some(&q) if qdtext(q) => i += 2,
                Some(_) => return Err(()),
                None => return Ok(None),
            },
            b if qdtext(b) => i += 1,
            _ => return Err(()),
        }
    }
    Ok(None)
}

/// A trailer field line, `name ":" OWS value OWS`: checked, then dropped
/// (sseloop acts on no trailer field).
fn trailer_field(line: &[u8]) -> Result<(), Reject> {
    let name = token_len(line);
    let value = match line.get(name) {
        Some(b':') if name > 0 => &line[name + 1..],
        _ => return Err(Reject::bad("bad chunked body: bad trailer field")),
    };
    if value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
    {
        Ok(())
    } else {
        Err(Reject::bad("bad chunked body: bad trailer field"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::POLICY;

    /// Splits every vector is fed in: a byte at a time, odd sizes, and whole.
    const STEPS: [usize; 6] = [1, 2, 3, 7, 100, usize::MAX];

    /// Decodes `input` fed `step` bytes at a time, keeping unconsumed bytes
    /// as the connection does; the body must end exactly at the input's end.
    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, Reject> {
        let mut dec = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for piece in input.chunks(step.min(input.len())) {
            buf.extend_from_slice(piece);
            let (used, done) = dec.decode(&buf, &mut out, &POLICY)?;
            buf.drain(..used);
            assert!(
                buf.len() <= POLICY.max_head_size + MAX_SIZE_DIGITS + 1,
                "kept {} bytes",
                buf.len()
            );
            if done {
                assert!(buf.is_empty(), "left over: {buf:?}");
                return Ok(out);
            }
        }
        panic!("body not complete");
    }

    /// Chunked bodies → the data, or the status of their refusal, the same
    /// in every split.
    macro_rules! chunked {
        ($($name:ident: $body:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let body = $body;
                let body: &[u8] = body.as_ref();
                let want: Result<&[u8], Status> = $want;
                for step in STEPS {
                    let got = decode_all(body, step);
                    let got = got.as_deref().map_err(|r| r.status);
                    assert_eq!(got, want, "in pieces of {step}");
                }
            }
        )*};
    }

    const BAD: Result<&[u8], Status> = Err(Status::BAD_REQUEST);

    fn repeat(unit: &str, n: usize) -> String {
        unit.repeat(n)
    }

    chunked! {
        plain: b"5\r\nhello\r\n0\r\n\r\n" => Ok(b"hello");
        several_chunks: b"5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n" => Ok(b"hello 0123456789");
        leading_zeros: b"0005\r\nhello\r\n000\r\n\r\n" => Ok(b"hello");
        sixteen_digits: b"0000000000000005\r\nhello\r\n0\r\n\r\n" => Ok(b"hello");
        extensions: b"5;a;b=c;d=\"x y\\\"z\"\r\nhello\r\n0;last=1\r\n\r\n" => Ok(b"hello");
        trailer_fields: b"1\r\nx\r\n0\r\nA: b\r\nC:\r\nE:  f\tg \r\n\r\n" => Ok(b"x");
        extensions_within_budget: format!("{}0\r\n\r\n", repeat("1;e=aaaaaaaaaa\r\nx\r\n", 500)) => Ok(&[b'x'; 500]);

        // Sizes: 1 to 16 hex digits, nothing around them.
        size_not_hex: b"zz\r\n" => BAD;
        size_empty: b"\r\nhello\r\n0\r\n\r\n" => BAD;
        size_space_after: b"5 \r\nhello\r\n0\r\n\r\n" => BAD;
        size_space_before: b" 5\r\nhello\r\n0\r\n\r\n" => BAD;
        size_tab_after: b"5\t\r\nhello\r\n0\r\n\r\n" => BAD;
        size_sign: b"+5\r\nhello\r\n0\r\n\r\n" => BAD;
        size_hex_prefix: b"0x5\r\nhello\r\n0\r\n\r\n" => BAD;
        size_seventeen_digits: b"00000000000000005\r\nhello\r\n0\r\n\r\n" => BAD;
        size_overflow: b"ffffffffffffffffff\r\n" => BAD;
        size_endless_digits: [b'1'; 20_000] => BAD;

        // Extensions: ;name[=value], no whitespace, token or quoted string.
        ext_space_before_semicolon: b"5 ;a\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_space_after_semicolon: b"5; a\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_space_before_equals: b"5;a =b\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_space_after_equals: b"5;a= b\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_no_name: b"5;\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_only_value: b"5;=b\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_empty_value: b"5;a=\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_not_a_token: b"5;a=b,c\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_unterminated_quote: b"5;a=\"b\r\nhello\r\n0\r\n\r\n" => BAD;
        ext_control_in_quote: b"5;a=\"b\x01\"\r\nhello\r\n0\r\n\r\n" => BAD;

        // Line ends: CRLF only.
        lf_after_size: b"5\nhello\r\n0\r\n\r\n" => BAD;
        lf_after_data: b"5\r\nhello\n0\r\n\r\n" => BAD;
        lf_after_last_chunk: b"5\r\nhello\r\n0\n\r\n" => BAD;
        lf_ends_trailer_field: b"0\r\nA: b\n\r\n" => BAD;
        lf_ends_body: b"0\r\n\n" => BAD;
        cr_after_size: b"5\rhello\r\n0\r\n\r\n" => BAD;
        cr_after_data: b"5\r\nhello\rX0\r\n\r\n" => BAD;
        cr_in_trailer_field: b"0\r\nA: b\rc\r\n\r\n" => BAD;
        data_overrun: b"2\r\nabXY" => BAD;

        // Trailer fields: name:value, never folded.
        trailer_folded: b"0\r\nA: b\r\n c\r\n\r\n" => BAD;
        trailer_no_colon: b"0\r\nAb\r\n\r\n" => BAD;
        trailer_space_before_colon: b"0\r\nA : b\r\n\r\n" => BAD;
        trailer_no_name: b"0\r\n: b\r\n\r\n" => BAD;

        // Bounds: the body, the extensions of the whole body, the trailer.
        body_too_large: b"401\r\n" => Err(Status::PAYLOAD_TOO_LARGE);
        ext_flood_in_one_line: format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(9000)) => Err(Status::PAYLOAD_TOO_LARGE);
        ext_flood_over_chunks: format!("{}0\r\n\r\n", repeat("1;e=aaaaaaaaaaaaaaaa\r\nx\r\n", 500)) => Err(Status::PAYLOAD_TOO_LARGE);
        ext_flood_on_last_chunk: format!("0;{}\r\n\r\n", "a".repeat(9000)) => Err(Status::PAYLOAD_TOO_LARGE);
        trailer_too_many_fields: format!("0\r\n{}\r\n", repeat("A: b\r\n", 65)) => Err(Status::HEADERS_TOO_LARGE);
        trailer_too_many_bytes: format!("0\r\n{}\r\n", repeat(&format!("A: {}\r\n", "x".repeat(1000)), 9)) => Err(Status::HEADERS_TOO_LARGE);
        trailer_line_too_long: format!("0\r\nA: {}\r\n\r\n", "x".repeat(9000)) => Err(Status::HEADERS_TOO_LARGE);
    }

    /// Megabytes of extensions or trailer are refused after about the head
    /// limit, not read to their end; every byte is searched once however it
    /// is split, so the work is linear too.
    #[test]
    fn floods_are_refused_within_the_head_limit() {
        let floods: [(&[u8], &[u8], Status); 3] = [
            (b"1;", b"a", Status::PAYLOAD_TOO_LARGE),
            // More extension than data, so the extension bound trips first.
            (
                b"",
                b"1;eeeeeeeeeeeeeeee\r\nx\r\n",
                Status::PAYLOAD_TOO_LARGE,
            ),
            (b"0\r\n", b"A: b\r\n", Status::HEADERS_TOO_LARGE),
        ];
        for (start, unit, status) in floods {
            for step in [1, 1000] {
                let mut source = start.iter().chain(unit.iter().cycle()).copied();
                let mut dec = ChunkedDecoder::default();
                let mut out = Vec::new();
                let mut buf = Vec::new();
                let mut offered = 0;
                let got = loop {
                    buf.extend(source.by_ref().take(step));
                    offered += step;
                    match dec.decode(&buf, &mut out, &POLICY) {
                        Ok((used, done)) => {
                            assert!(!done);
                            buf.drain(..used);
                        }
                        Err(reject) => break reject.status,
                    }
                    assert!(offered < 1 << 20, "still reading after {offered} bytes");
                };
                assert_eq!(got, status, "{start:?} {unit:?} in pieces of {step}");
                assert!(
                    offered <= 4 * POLICY.max_head_size + step,
                    "{offered} bytes read"
                );
            }
        }
    }
}
