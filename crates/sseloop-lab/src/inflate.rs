//! A small deflate decoder for what sseloop itself compresses: the zlib
//! stream of the lab's compression lesson, decoded as it arrives for the
//! terminal client (which must see when each event became decodable, as a
//! browser does), and the pages compressed at build time (`build.rs`),
//! decoded once for a client that does not take gzip. Only stored blocks
//! and blocks with the fixed Huffman codes are understood (what the lab's
//! encoder and `build.rs` emit); anything else is an error. Pure.

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// A zlib stream decoded as far as the bytes so far allow.
#[derive(Debug, Default)]
pub struct Inflate {
    input: Vec<u8>,
    /// Bits of `input` consumed by whole symbols.
    at: usize,
    /// Everything decoded (matches reach back into it).
    out: Vec<u8>,
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Header,
    Block,
    Fixed {
        last: bool,
    },
    Done,
}

/// The stream is not one this decoder reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

impl Inflate {
    /// A decoder of raw deflate data (no zlib header).
    pub fn raw() -> Inflate {
        Inflate {
            state: State::Block,
            ..Inflate::default()
        }
    }

    /// Takes `bytes` and returns what they made decodable.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Unreadable> {
        self.input.extend_from_slice(bytes);
        let from = self.out.len();
        while self.step()? {}
        // Consumed whole bytes are not needed again.
        let whole = self.at / 8;
        self.input.drain(..whole);
        self.at -= whole * 8;
        Ok(self.out[from..].to_vec())
    }

    /// Decodes one unit (a header, a symbol, a stored block); false when
    /// the input ends before it does.
    fn step(&mut self) -> Result<bool, Unreadable> {
        let mut r = Reader {
            input: &self.input,
            at: self.at,
        };
        match self.state {
            State::Header => {
                let Some(head) = r.bits(16) else {
                    return Ok(false);
                };
                let (cmf, flg) = (head & 0xff, head >> 8);
                // Deflate, a valid check, no preset dictionary.
                if cmf & 0x0f != 8 || (cmf << 8 | flg) % 31 != 0 || flg & 0x20 != 0 {
                    return Err(Unreadable("not a zlib stream"));
                }
                self.state = State::Block;
            }
            State::Block => {
                let Some(head) = r.bits(3) else {
                    return Ok(false);
                };
                let last = head & 1 == 1;
                match head >> 1 {
                    0 => {
                        r.at = r.at.div_ceil(8) * 8;
                        let (Some(len), Some(nlen)) = (r.bits(16), r.bits(16)) else {
                            return Ok(false);
                        };
                        if len != !nlen & 0xffff {
                            return Err(Unreadable("a stored block's length is corrupt"));
                        }
                        let start = r.at / 8;
                        let Some(data) = self.input.get(start..start + len as usize) else {
                            return Ok(false);
                        };
                        self.out.extend_from_slice(data);
                        r.at += len as usize * 8;
                        self.state = if last { State::Done } else { State::Block };
                    }
                    1 => self.state = State::Fixed { last },
                    _ => return Err(Unreadable("only stored and fixed-code blocks are read")),
                }
            }
            State::Fixed { last } => {
                let Some(symbol) = r.literal() else {
                    return Ok(false);
                };
                match symbol {
                    0..=255 => self.out.push(symbol as u8),
                    256 => self.state = if last { State::Done } else { State::Block },
                    257..=285 => {
                        let i = (symbol - 257) as usize;
                        let Some(extra) = r.bits(u32::from(LEN_EXTRA[i])) else {
                            return Ok(false);
                        };
                        let len = usize::from(LEN_BASE[i]) + extra as usize;
                        let Some(code) = r.bits(5) else {
                            return Ok(false);
                        };
                        let j = (code.reverse_bits() >> 27) as usize;
                        if j >= 30 {
                            return Err(Unreadable("bad distance code"));
                        }
                        let Some(extra) = r.bits(u32::from(DIST_EXTRA[j])) else {
                            return Ok(false);
                        };
                        let dist = usize::from(DIST_BASE[j]) + extra as usize;
                        if dist > self.out.len() {
                            return Err(Unreadable("a match reaches before the start"));
                        }
                        for _ in 0..len {
                            self.out.push(self.out[self.out.len() - dist]);
                        }
                    }
                    _ => return Err(Unreadable("bad literal/length code")),
                }
            }
            // The trailer (Adler-32, or gzip's) and anything after it are
            // not read.
            State::Done => return Ok(false),
        }
        self.at = r.at;
        Ok(true)
    }
}

/// The data of a gzip member as `build.rs` makes them (no optional
/// fields; fixed-code blocks), checked against its length; `None` when it
/// is not one.
// Not inlined into the server's code: compiled here, for size.
#[inline(never)]
pub fn gunzip(member: &[u8]) -> Option<Vec<u8>> {
    let deflated = member.strip_prefix(&[0x1f, 0x8b, 8, 0])?.get(6..)?;
    let (_, size) = member.split_last_chunk::<4>()?;
    let data = Inflate::raw().feed(deflated).ok()?;
    (data.len() as u32 == u32::from_le_bytes(*size)).then_some(data)
}

/// Reads bits least significant first from a byte slice.
struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bits(&mut self, count: u32) -> Option<u32> {
        let mut value = 0;
        for k in 0..count {
            let byte = *self.input.get((self.at) / 8)?;
            value |= u32::from(byte >> (self.at % 8) & 1) << k;
            self.at += 1;
        }
        Some(value)
    }

    /// A literal/length symbol of the fixed code, read bit by bit, most
    /// significant first.
    fn literal(&mut self) -> Option<u32> {
        let mut code = 0;
        for len in 1..=9 {
            code = code << 1 | self.bits(1)?;
            match (len, code) {
                (7, 0..=0x17) => return Some(code + 256),
                (8, 0x30..=0xbf) => return Some(code - 0x30),
                (8, 0xc0..=0xc7) => return Some(code - 0xc0 + 280),
                (9, 0x190..=0x1ff) => return Some(code - 0x190 + 144),
                _ => {}
            }
        }
        Some(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::super::deflate::Deflate;
    use super::*;

    #[test]
    fn decodes_what_the_encoder_made_as_soon_as_it_can() {
        let text: Vec<u8> = (0..30_000u32)
            .flat_map(|i| format!("event {} of {}\n", i % 97, i % 13).into_bytes())
            .collect();
        let mut deflate = Deflate::default();
        let mut inflate = Inflate::default();
        let mut decoded = Vec::new();
        for piece in text.chunks(977) {
            let mut out = Vec::new();
            deflate.write(piece, &mut out);
            deflate.sync_flush(&mut out);
            // Fed in uneven slices: a symbol cut in two waits for its rest.
            for slice in out.chunks(5) {
                decoded.extend(inflate.feed(slice).unwrap());
            }
            assert_eq!(decoded.len(), text.len().min(decoded.len()));
        }
        assert_eq!(decoded, text);
        let mut out = Vec::new();
        deflate.finish(&mut out);
        assert!(inflate.feed(&out).unwrap().is_empty());
        assert_eq!(inflate.state, State::Done);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(Inflate::default().feed(b"\x1f\x8b").is_err());
        // A block with dynamic codes (BTYPE 10).
        assert_eq!(
            Inflate::default().feed(&[0x78, 0x01, 0b101]),
            Err(Unreadable("only stored and fixed-code blocks are read"))
        );
    }
}
