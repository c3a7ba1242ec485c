//! A small deflate decoder (RFC 1951) for what sseloop itself
//! compresses: the zlib stream of the lab's compression lesson, decoded as
//! it arrives for the terminal client (which must see when each event
//! became decodable, as a browser does), and the pages compressed at build
//! time (`build.rs`), decoded once for a client that does not take gzip.
//! Every block type is read (stored, fixed and dynamic Huffman codes), one
//! bit at a time, which is slow and small: it decodes kilobytes. Pure.

/// Base lengths of the length symbols 257..=285, and their extra bits
/// (RFC 1951, 3.2.5; the lab's encoder writes with them too).
pub(crate) const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub(crate) const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distances of the distance codes 0..=29, and their extra bits.
pub(crate) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
pub(crate) const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The order in which a dynamic block gives the code lengths' own code.
const LENGTHS_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
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
    /// The current block's literal/length and distance codes.
    literals: Code,
    distances: Code,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Header,
    Block,
    Codes {
        last: bool,
    },
    Done,
}

/// The stream is not one this decoder reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

/// A canonical Huffman code: how many codes each length has, and the
/// symbols in the order of their codes.
#[derive(Debug, Default)]
struct Code {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Code {
    /// The code whose symbol `i` is `lengths[i]` bits long (0: unused);
    /// `None` when the lengths are more than a code can have.
    fn new(lengths: &[u8]) -> Option<Code> {
        let mut counts = [0u16; 16];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        counts[0] = 0;
        let mut left = 1i32;
        for &count in &counts[1..] {
            left = (left << 1) - i32::from(count);
            if left < 0 {
                return None;
            }
        }
        let mut next = [0u16; 16];
        for len in 1..15 {
            next[len + 1] = next[len] + counts[len];
        }
        let mut symbols = vec![0; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbols[usize::from(next[usize::from(len)])] = symbol as u16;
                next[usize::from(len)] += 1;
            }
        }
        Some(Code { counts, symbols })
    }

    /// The fixed codes of block type 1.
    fn fixed() -> (Code, Code) {
        let mut lengths = [8; 288];
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        let literals = Code::new(&lengths).unwrap_or_default();
        (literals, Code::new(&[5; 30]).unwrap_or_default())
    }
}

/// What reading one unit gave: it, the end of the input before it, or an
/// error.
type Read<T> = Result<Option<T>, Unreadable>;

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

    /// Decodes one unit (a header, a symbol, a stored block, a dynamic
    /// block's codes); false when the input ends before it does.
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
                    1 => {
                        (self.literals, self.distances) = Code::fixed();
                        self.state = State::Codes { last };
                    }
                    2 => {
                        let Some((literals, distances)) = dynamic_codes(&mut r)? else {
                            return Ok(false);
                        };
                        (self.literals, self.distances) = (literals, distances);
                        self.state = State::Codes { last };
                    }
                    _ => return Err(Unreadable("a block of the reserved type")),
                }
            }
            State::Codes { last } => {
                let Some(symbol) = r.decode(&self.literals)? else {
                    return Ok(false);
                };
                match symbol {
                    0..=255 => self.out.push(symbol as u8),
                    256 => self.state = if last { State::Done } else { State::Block },
                    257..=285 => {
                        let i = usize::from(symbol - 257);
                        let Some(extra) = r.bits(u32::from(LEN_EXTRA[i])) else {
                            return Ok(false);
                        };
                        let len = usize::from(LEN_BASE[i]) + extra as usize;
                        let Some(j) = r.decode(&self.distances)? else {
                            return Ok(false);
                        };
                        let j = usize::from(j);
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

/// A dynamic block's literal/length and distance codes, read from its
/// head.
fn dynamic_codes(r: &mut Reader<'_>) -> Read<(Code, Code)> {
    let (Some(nlen), Some(ndist), Some(ncode)) = (r.bits(5), r.bits(5), r.bits(4)) else {
        return Ok(None);
    };
    let (nlen, ndist) = (nlen as usize + 257, ndist as usize + 1);
    if nlen > 286 || ndist > 30 {
        return Err(Unreadable("too many codes in a dynamic block"));
    }
    let mut lengths = [0u8; 19];
    for &i in &LENGTHS_ORDER[..ncode as usize + 4] {
        let Some(len) = r.bits(3) else {
            return Ok(None);
        };
        lengths[i] = len as u8;
    }
    let lengths_code = Code::new(&lengths).ok_or(Unreadable("a bad code lengths code"))?;
    let mut lengths = vec![0u8; nlen + ndist];
    let mut i = 0;
    while i < lengths.len() {
        let Some(symbol) = r.decode(&lengths_code)? else {
            return Ok(None);
        };
        let (len, extra, base) = match symbol {
            0..=15 => (symbol as u8, 0, 1),
            16 if i > 0 => (lengths[i - 1], 2, 3),
            16 => return Err(Unreadable("a repeat with nothing before it")),
            17 => (0, 3, 3),
            _ => (0, 7, 11),
        };
        let Some(more) = r.bits(extra) else {
            return Ok(None);
        };
        let times = base + more as usize;
        let Some(run) = lengths.get_mut(i..i + times) else {
            return Err(Unreadable("code lengths past the end"));
        };
        run.fill(len);
        i += times;
    }
    if lengths[256] == 0 {
        return Err(Unreadable("no end-of-block code"));
    }
    match (Code::new(&lengths[..nlen]), Code::new(&lengths[nlen..])) {
        (Some(literals), Some(distances)) => Ok(Some((literals, distances))),
        _ => Err(Unreadable("a bad dynamic code")),
    }
}

/// The data of a gzip member as `build.rs` makes them (no optional
/// fields), checked against its length; `None` when it is not one.
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

    /// A symbol of `code`, whose codes come most significant bit first.
    fn decode(&mut self, code: &Code) -> Read<u16> {
        // The first code of each length, and the index of its symbol.
        let (mut value, mut first, mut index) = (0usize, 0usize, 0usize);
        for &count in &code.counts[1..] {
            let Some(bit) = self.bits(1) else {
                return Ok(None);
            };
            value |= bit as usize;
            let count = usize::from(count);
            if value < first + count {
                return Ok(code.symbols.get(index + value - first).copied());
            }
            index += count;
            first = (first + count) << 1;
            value <<= 1;
        }
        Err(Unreadable("a code that is not in the block's codes"))
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
    fn decodes_dynamic_blocks_fed_in_pieces() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("data: {{\"n\":{i},\"t\":{}}}\n\n", i * 7 % 1013).into_bytes())
            .collect();
        for level in [1, 6, 10] {
            let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&text, level);
            let mut inflate = Inflate::default();
            let mut decoded = Vec::new();
            for piece in zlib.chunks(333) {
                decoded.extend(inflate.feed(piece).unwrap());
            }
            assert_eq!(decoded, text, "level {level}");
            assert_eq!(inflate.state, State::Done);
            let raw = miniz_oxide::deflate::compress_to_vec(&text, level);
            assert_eq!(
                Inflate::raw().feed(&raw).unwrap(),
                text,
                "raw, level {level}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(Inflate::default().feed(b"\x1f\x8b").is_err());
        // A block of the reserved type (BTYPE 11).
        assert_eq!(
            Inflate::default().feed(&[0x78, 0x01, 0b111]),
            Err(Unreadable("a block of the reserved type"))
        );
        // Code lengths that over-subscribe: a dynamic block whose code
        // lengths code gives three symbols one bit each.
        let over = [0x78, 0x01, 0b101, 0, 0b1001_0000, 0b0010_0100, 0b1001];
        assert_eq!(
            Inflate::default().feed(&over),
            Err(Unreadable("a bad code lengths code"))
        );
    }
}
