//! A zlib stream (RFC 1950 around RFC 1951 deflate) that compresses for
//! real and holds its output as zlib does: what `Content-Encoding:
//! deflate` sends a browser. Pure.
//!
//! zlib does not emit a deflate block until its symbol buffer is full
//! (16 Ki literals and matches at the default `memLevel` 8) or it is told
//! to flush; a server that compresses a stream without `Z_SYNC_FLUSH`
//! after each event therefore holds many events in the compressor. This
//! encoder keeps the same buffer and emits the same kinds of output:
//! [`Deflate::write`] adds input and returns only what a full buffer
//! produced, [`Deflate::sync_flush`] ends the pending block and adds the
//! empty stored block of `Z_SYNC_FLUSH` (`00 00 ff ff`), after which a
//! decoder has every byte so far; [`Deflate::finish`] ends the stream.
//!
//! It is smaller than zlib in two ways that change only how well it
//! compresses, not when bytes leave: blocks use the fixed Huffman codes
//! (no code tables to build or send, so random text does not shrink, where
//! zlib's own codes would take a quarter off), and matching is greedy on
//! a hash table of 3-byte prefixes, one candidate each, as zlib's fastest
//! levels do. A general-purpose crate (miniz_oxide) would add about
//! 21 KB to the binary for the same lesson.

use super::inflate::{DIST_BASE, DIST_EXTRA, LEN_BASE, LEN_EXTRA};

/// Symbols (literals and matches) buffered before a block is emitted:
/// zlib's `lit_bufsize - 1` at its default `memLevel` of 8.
pub const BLOCK_SYMBOLS: usize = (1 << 14) - 1;
/// How far back a match may reach (deflate's limit).
const WINDOW: usize = 32 << 10;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const HASH_BITS: u32 = 13;

/// A match in the symbol buffer: its length and distance packed above
/// this bit; a literal is its byte.
const MATCH: u32 = 1 << 31;

/// One zlib stream being written.
pub struct Deflate {
    /// The last `WINDOW` bytes or more of input, for matches.
    window: Vec<u8>,
    /// Position in the whole input of `window[0]`.
    base: usize,
    /// For each hash of 3 bytes, the position after the last place they
    /// were seen (0: none).
    heads: Box<[u32]>,
    symbols: Vec<u32>,
    bits: Bits,
    adler: Adler32,
    started: bool,
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate {
            window: Vec::new(),
            base: 0,
            heads: vec![0; 1 << HASH_BITS].into_boxed_slice(),
            symbols: Vec::with_capacity(BLOCK_SYMBOLS),
            bits: Bits::default(),
            adler: Adler32::default(),
            started: false,
        }
    }
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("symbols", &self.symbols.len())
            .finish_non_exhaustive()
    }
}

impl Deflate {
    /// Compresses `input`; appends to `out` only what zlib would have
    /// produced by now: the stream's header at first, then each block its
    /// full symbol buffer ends.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            // CMF: deflate with a 32 KiB window; FLG: fastest, check bits.
            self.bits.out.extend_from_slice(&[0x78, 0x01]);
        }
        self.adler.update(input);
        let start = self.window.len();
        self.window.extend_from_slice(input);
        let mut at = start;
        while at < self.window.len() {
            let (len, dist) = self.longest_match(at);
            if len >= MIN_MATCH {
                self.push_symbol(MATCH | (len as u32) << 16 | dist as u32);
                for p in at..at + len {
                    self.insert(p);
                }
                at += len;
            } else {
                self.push_symbol(u32::from(self.window[at]));
                self.insert(at);
                at += 1;
            }
        }
        self.slide();
        out.append(&mut self.bits.out);
    }

    /// `Z_SYNC_FLUSH`: the pending symbols as a block, then an empty
    /// stored block, which aligns the stream to a byte: the decoder can
    /// produce everything written so far.
    pub fn sync_flush(&mut self, out: &mut Vec<u8>) {
        self.write(&[], out);
        if !self.symbols.is_empty() {
            self.emit_block(false);
        }
        self.bits.put(0, 3); // BFINAL 0, BTYPE 00: stored
        self.bits.align();
        self.bits.out.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        out.append(&mut self.bits.out);
    }

    /// Ends the stream: the last block, and the Adler-32 of the input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.write(&[], out);
        self.emit_block(true);
        self.bits.align();
        self.bits
            .out
            .extend_from_slice(&self.adler.value().to_be_bytes());
        out.append(&mut self.bits.out);
    }

    fn push_symbol(&mut self, symbol: u32) {
        self.symbols.push(symbol);
        if self.symbols.len() == BLOCK_SYMBOLS {
            self.emit_block(false);
        }
    }

    fn hash(&self, at: usize) -> Option<usize> {
        let b = self.window.get(at..at + MIN_MATCH)?;
        let key = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        Some((key.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize)
    }

    fn insert(&mut self, at: usize) {
        if let Some(h) = self.hash(at) {
            self.heads[h] = (self.base + at + 1) as u32;
        }
    }

    /// The match at `at` with the one candidate its hash names.
    fn longest_match(&self, at: usize) -> (usize, usize) {
        let Some(h) = self.hash(at) else {
            return (0, 0);
        };
        let seen = self.heads[h] as usize;
        if seen <= self.base {
            return (0, 0);
        }
        let candidate = seen - 1 - self.base;
        let dist = at - candidate;
        if dist > WINDOW {
            return (0, 0);
        }
        let max = MAX_MATCH.min(self.window.len() - at);
        let len = (0..max)
            .take_while(|&k| self.window[candidate + k] == self.window[at + k])
            .count();
        (len, dist)
    }

    /// Drops input older than the window once twice the window is kept.
    fn slide(&mut self) {
        if self.window.len() > 2 * WINDOW {
            let drop = self.window.len() - WINDOW;
            self.window.drain(..drop);
            self.base += drop;
        }
    }

    /// The buffered symbols as one block with the fixed Huffman codes.
    fn emit_block(&mut self, last: bool) {
        self.bits.put(u32::from(last), 1);
        self.bits.put(1, 2); // BTYPE 01: fixed codes
        for symbol in std::mem::take(&mut self.symbols) {
            if symbol & MATCH == 0 {
                put_literal(&mut self.bits, symbol);
                continue;
            }
            let len = ((symbol & !MATCH) >> 16) as u16;
            let dist = (symbol & 0xffff) as u16;
            let i = if len == 258 {
                28
            } else {
                LEN_BASE.iter().rposition(|&b| b <= len).unwrap_or(0)
            };
            put_literal(&mut self.bits, 257 + i as u32);
            self.bits
                .put(u32::from(len - LEN_BASE[i]), u32::from(LEN_EXTRA[i]));
            let j = DIST_BASE.iter().rposition(|&b| b <= dist).unwrap_or(0);
            self.bits.put(reverse(j as u32, 5), 5);
            self.bits
                .put(u32::from(dist - DIST_BASE[j]), u32::from(DIST_EXTRA[j]));
        }
        put_literal(&mut self.bits, 256);
        self.symbols.reserve(BLOCK_SYMBOLS);
    }
}

/// A literal/length symbol in the fixed code (RFC 1951, 3.2.6).
fn put_literal(bits: &mut Bits, symbol: u32) {
    let (code, len) = match symbol {
        0..=143 => (0x30 + symbol, 8),
        144..=255 => (0x190 + symbol - 144, 9),
        256..=279 => (symbol - 256, 7),
        _ => (0xc0 + symbol - 280, 8),
    };
    bits.put(reverse(code, len), len);
}

/// Huffman codes go out most significant bit first, into a stream that is
/// otherwise filled from the least significant bit.
pub(super) fn reverse(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

/// Output bits, least significant first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += count;
        while self.count >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    fn align(&mut self) {
        if self.count > 0 {
            self.out.push(self.acc as u8);
            self.acc = 0;
            self.count = 0;
        }
    }
}

/// The zlib stream's checksum (RFC 1950, 8.2).
#[derive(Clone, Copy)]
struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Adler32 { a: 1, b: 0 }
    }
}

impl Adler32 {
    fn update(&mut self, bytes: &[u8]) {
        // 5 552 bytes is the most that cannot overflow before the modulo.
        for chunk in bytes.chunks(5552) {
            for &byte in chunk {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= 65521;
            self.b %= 65521;
        }
    }

    fn value(self) -> u32 {
        self.b << 16 | self.a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::inflate::decompress_to_vec_zlib;
    use miniz_oxide::inflate::stream::{InflateState, inflate};
    use miniz_oxide::{DataFormat, MZFlush};

    /// An event of the lab's shape with `n` pseudo-random payload bytes.
    fn event(seq: u32, n: usize, seed: &mut u64) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut pad = String::new();
        for _ in 0..n {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            pad.push(ALPHABET[(*seed % 64) as usize] as char);
        }
        format!("id: 1a2b3c4d5e6f-{seq}\ndata: {{\"n\":{seq},\"t\":1733490000123.456,\"pad\":\"{pad}\"}}\n\n")
            .into_bytes()
    }

    /// What a streaming decoder (as a browser's) can produce from `bytes`.
    fn decodable(bytes: &[u8]) -> Vec<u8> {
        let mut state = InflateState::new_boxed(DataFormat::Zlib);
        let mut out = vec![0; 1 << 22];
        let result = inflate(&mut state, bytes, &mut out, MZFlush::None);
        assert!(
            result.status.is_ok() || result.status == Err(miniz_oxide::MZError::Buf),
            "{result:?}"
        );
        out.truncate(result.bytes_written);
        out
    }

    #[test]
    fn the_stream_decodes_to_the_input_and_compresses() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut input = Vec::new();
        let mut deflate = Deflate::default();
        let mut out = Vec::new();
        for seq in 1..=60 {
            let e = event(seq, 1000, &mut seed);
            deflate.write(&e, &mut out);
            input.extend_from_slice(&e);
        }
        // Long runs and text repeated from far back, for matches of every
        // length and distance.
        let mut tail = vec![b'z'; 1000];
        tail.extend_from_slice(&input[100..5000]);
        deflate.write(&tail, &mut out);
        input.extend_from_slice(&tail);
        deflate.finish(&mut out);
        assert_eq!(decompress_to_vec_zlib(&out).unwrap(), input);
        // Random padding takes 8 bits a character in the fixed code: only
        // the events' structure and the repeats shrink.
        assert!(
            out.len() < input.len() * 95 / 100,
            "{} of {}",
            out.len(),
            input.len()
        );
        // Text that repeats itself, as most event data does, shrinks well.
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| {
                format!(
                    "{{\"job\":{},\"progress\":{},\"state\":\"rendering\"}}\n",
                    i % 7,
                    i % 100
                )
                .into_bytes()
            })
            .collect();
        let mut deflate = Deflate::default();
        let mut out = Vec::new();
        deflate.write(&text, &mut out);
        deflate.finish(&mut out);
        assert_eq!(decompress_to_vec_zlib(&out).unwrap(), text);
        assert!(
            out.len() < text.len() / 4,
            "{} of {}",
            out.len(),
            text.len()
        );
    }

    #[test]
    fn without_a_flush_events_wait_for_a_full_block() {
        let mut seed = 7;
        let mut deflate = Deflate::default();
        let mut out = Vec::new();
        let mut input = Vec::new();
        let mut first_block_at = None;
        for seq in 1..=40 {
            let e = event(seq, 1000, &mut seed);
            input.extend_from_slice(&e);
            deflate.write(&e, &mut out);
            if out.len() > 2 && first_block_at.is_none() {
                first_block_at = Some(seq);
            }
            if first_block_at.is_none() {
                assert!(
                    decodable(&out).is_empty(),
                    "event {seq} decodable before a block"
                );
            }
        }
        // 1 KiB of random text is mostly literals: 16 Ki symbols take
        // about 15 events, as with zlib at its default memory level.
        let at = first_block_at.expect("no block in 40 KiB");
        assert!((10..=20).contains(&at), "first block after {at} events");
        // What the last block did not take is still held.
        let seen = decodable(&out);
        assert!(
            seen.len() < input.len() - 1000,
            "{} of {} decodable",
            seen.len(),
            input.len()
        );
        assert_eq!(seen, input[..seen.len()]);
    }

    #[test]
    fn a_sync_flush_after_each_event_makes_each_decodable_at_once() {
        let mut seed = 11;
        let mut deflate = Deflate::default();
        let mut out = Vec::new();
        let mut input = Vec::new();
        for seq in 1..=20 {
            let e = event(seq, 1000, &mut seed);
            input.extend_from_slice(&e);
            deflate.write(&e, &mut out);
            deflate.sync_flush(&mut out);
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            assert_eq!(decodable(&out), input, "event {seq} not decodable");
        }
        // Empty flushes add only the marker.
        let before = out.len();
        deflate.sync_flush(&mut out);
        assert_eq!(out.len(), before + 5);
        deflate.finish(&mut out);
        assert_eq!(decompress_to_vec_zlib(&out).unwrap(), input);
    }

    #[test]
    fn an_empty_stream_is_valid() {
        let mut deflate = Deflate::default();
        let mut out = Vec::new();
        deflate.finish(&mut out);
        assert_eq!(decompress_to_vec_zlib(&out).unwrap(), b"");
    }
}
