//! A user-space output buffer that is sent only when full: what an
//! application's buffered writer does when it is never flushed (Go's
//! `net/http` response writer, a C `FILE` stream, PHP's output buffer),
//! and how nginx's response buffers hand data on. Bytes leave in whole
//! blocks of [`BLOCK`] bytes, cut wherever the block ends, even in the
//! middle of an event; the rest waits for more input or the end. Pure.

/// Bytes in one block: the 4 KiB of nginx's `proxy_buffers` pages and of
/// Go's response writer.
pub const BLOCK: usize = 4096;

/// A buffer that hands on whole blocks only. It never holds more than one
/// block less a byte.
#[derive(Debug, Default)]
pub struct Blocks {
    held: Vec<u8>,
}

impl Blocks {
    /// Takes `bytes`, and appends to `out` every block that is now full.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            let take = (BLOCK - self.held.len()).min(bytes.len());
            self.held.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.held.len() == BLOCK {
                out.append(&mut self.held);
            }
        }
    }

    /// The end of the response: what is held goes out.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
    }

    /// Bytes held back.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_blocks_leave_until_the_end() {
        let mut blocks = Blocks::default();
        let mut out = Vec::new();
        let event = vec![b'e'; 1100];
        for _ in 0..3 {
            blocks.push(&event, &mut out);
            assert!(out.is_empty(), "3 300 bytes are less than a block");
        }
        // The fourth event fills the block: it leaves cut in the middle of
        // that event, and the rest of it waits.
        blocks.push(&event, &mut out);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(blocks.held(), 4 * 1100 - BLOCK);
        out.clear();
        // A large write leaves as several blocks at once.
        blocks.push(&vec![b'x'; 3 * BLOCK], &mut out);
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(blocks.held(), 4 * 1100 - BLOCK);
        blocks.finish(&mut out);
        assert_eq!(out.len(), 3 * BLOCK + 4 * 1100 - BLOCK);
        assert_eq!(blocks.held(), 0);
    }

    #[test]
    fn small_events_wait_for_the_end() {
        let mut blocks = Blocks::default();
        let mut out = Vec::new();
        for _ in 0..40 {
            blocks.push(&[b'e'; 50], &mut out);
        }
        assert!(out.is_empty(), "2 000 bytes of small events are held");
        blocks.finish(&mut out);
        assert_eq!(out.len(), 2000);
    }
}
