//! A connection's write queue: what the kernel has not taken yet, as a list of
//! shared frames, static bytes and owned answers, each with its own offset, and
//! a running byte count that the queue limit is checked against.
//!
//! Uses nothing of the crate but `sse`'s frames, and `net` to say what a
//! write's outcome means.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use crate::net::{self, FlushOutcome};
use crate::sse::{Frame, Framing};

/// Most slices handed to one vectored write (Linux takes up to 1024; beyond a
/// few dozen the gain is nil and the stack array grows).
const MAX_IOVECS: usize = 64;
/// Slices of the array used when a queue holds no more items than this.
const FEW_IOVECS: usize = 4;

/// Bytes waiting to be written.
#[derive(Debug)]
enum Bytes {
    /// An event frame shared with other subscribers' queues.
    Shared(Arc<Frame>),
    /// Constant bytes (heartbeat, last chunk).
    Static(&'static [u8]),
    /// Bytes made for this connection alone (a response head, an answer).
    Owned(Vec<u8>),
}

#[derive(Debug)]
struct Item {
    bytes: Bytes,
    /// Next byte to write.
    pos: usize,
    /// Where this item's bytes started, to tell a started item.
    start: usize,
    end: usize,
}

impl Item {
    fn remaining(&self) -> &[u8] {
        let all: &[u8] = match &self.bytes {
            Bytes::Shared(f) => f.bytes(),
            Bytes::Static(s) => s,
            Bytes::Owned(v) => v,
        };
        &all[self.pos..self.end]
    }
}

/// What a connection still has to write, in order.
#[derive(Debug, Default)]
pub struct WriteQueue {
    items: VecDeque<Item>,
    len: usize,
}

impl WriteQueue {
    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing left to write.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues an event frame in the form `framing` writes: a pointer, no copy.
    pub fn push_frame(&mut self, frame: &Arc<Frame>, framing: Framing) {
        let (start, end) = frame.wire_range(framing);
        self.push(Bytes::Shared(Arc::clone(frame)), start, end);
    }

    /// Queues constant bytes.
    pub fn push_static(&mut self, bytes: &'static [u8]) {
        self.push(Bytes::Static(bytes), 0, bytes.len());
    }

    /// Queues bytes made for this connection.
    pub fn push_owned(&mut self, bytes: Vec<u8>) {
        let end = bytes.len();
        self.push(Bytes::Owned(bytes), 0, end);
    }

    fn push(&mut self, bytes: Bytes, start: usize, end: usize) {
        if start == end {
            return;
        }
        self.len += end - start;
        self.items.push_back(Item {
            bytes,
            pos: start,
            start,
            end,
        });
    }

    /// Drops everything but the part of the item already begun, so what was
    /// written stays well-framed once the rest of that item goes out.
    pub fn keep_started(&mut self) {
        let keep = match self.items.front() {
            Some(item) if item.pos > item.start => 1,
            _ => 0,
        };
        self.items.truncate(keep);
        self.len = self.items.iter().map(|i| i.end - i.pos).sum();
    }

    /// A copy of the first `max` unsent bytes (for trace logging only).
    pub fn peek(&self, max: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(max.min(self.len));
        for item in &self.items {
            let take = (max - out.len()).min(item.remaining().len());
            out.extend_from_slice(&item.remaining()[..take]);
            if out.len() == max {
                break;
            }
        }
        out
    }

    /// One vectored write of the queue's head to `out`; advances past what
    /// it took. Errors (WouldBlock included) are `out`'s, for the caller to
    /// classify: the queue does not look at them.
    pub fn write_once<W: Write>(&mut self, out: &mut W) -> io::Result<usize> {
        // Most writes carry one or two items (an answer, an event): an
        // array of a few slices, not of 64 to be filled with empty ones
        // first on every write (two writes a publish).
        let n = if self.items.len() <= FEW_IOVECS {
            self.write_gathered::<FEW_IOVECS, W>(out)?
        } else {
            self.write_gathered::<MAX_IOVECS, W>(out)?
        };
        self.consume(n);
        Ok(n)
    }

    /// One vectored write of the first `N` items at most.
    fn write_gathered<const N: usize, W: Write>(&self, out: &mut W) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); N];
        let mut count = 0;
        for (slot, item) in slices.iter_mut().zip(self.items.iter()) {
            *slot = IoSlice::new(item.remaining());
            count += 1;
        }
        out.write_vectored(&slices[..count])
    }

    /// Writes to `out` until the queue is empty or `out` refuses. Returns
    /// the bytes written and where that left the queue.
    pub fn flush_to<W: Write>(&mut self, out: &mut W) -> (usize, FlushOutcome) {
        net::flush(|| (!self.is_empty()).then(|| self.write_once(out)))
    }

    /// Advances past `n` written bytes.
    fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.len, "a write takes at most what was offered");
        self.len -= n;
        while n > 0 {
            let item = self.items.front_mut().expect("wrote more than queued");
            let left = item.end - item.pos;
            if n < left {
                item.pos += n;
                return;
            }
            n -= left;
            self.items.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flush(out: &mut Trickle, q: &mut WriteQueue) -> (usize, FlushOutcome) {
        q.flush_to(out)
    }

    /// Takes at most `room` bytes per call, then refuses with WouldBlock.
    struct Trickle {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.room - n);
                self.taken.extend_from_slice(&b[..take]);
                n += take;
                if n == self.room {
                    break;
                }
            }
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let frame = Arc::new(Frame::event("1", None, "abc"));
        let mut q = WriteQueue::default();
        q.push_owned(b"head;".to_vec());
        q.push_frame(&frame, Framing::Close);
        q.push_static(b";end");
        let total = q.len();
        let mut out = Trickle {
            taken: Vec::new(),
            room: 7,
        };
        let (written, outcome) = flush(&mut out, &mut q);
        assert_eq!(written, 7);
        assert!(matches!(outcome, FlushOutcome::Blocked));
        assert_eq!(q.len(), total - 7);
        out.room = 1000;
        flush(&mut out, &mut q);
        assert!(q.is_empty());
        let mut want = b"head;".to_vec();
        want.extend_from_slice(frame.payload());
        want.extend_from_slice(b";end");
        assert_eq!(out.taken, want);
    }

    #[test]
    fn a_refusal_with_nothing_written_leaves_the_queue() {
        let mut q = WriteQueue::default();
        q.push_static(b"x");
        let mut out = Trickle {
            taken: Vec::new(),
            room: 0,
        };
        let (written, outcome) = flush(&mut out, &mut q);
        assert_eq!(written, 0);
        assert!(matches!(outcome, FlushOutcome::Blocked));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn keep_started_drops_unstarted_items() {
        let mut q = WriteQueue::default();
        q.push_owned(b"0123456789".to_vec());
        q.push_static(b"abc");
        let mut out = Trickle {
            taken: Vec::new(),
            room: 4,
        };
        flush(&mut out, &mut q);
        q.keep_started();
        assert_eq!(q.len(), 6);
        q.push_static(b"!");
        out.room = 100;
        flush(&mut out, &mut q);
        assert_eq!(out.taken, b"0123456789!");

        let mut fresh = WriteQueue::default();
        fresh.push_static(b"abc");
        fresh.keep_started();
        assert!(fresh.is_empty());
    }

    #[test]
    fn many_items_need_several_vectored_writes() {
        let mut q = WriteQueue::default();
        for _ in 0..(MAX_IOVECS * 3 + 5) {
            q.push_static(b"ab");
        }
        let mut out = Trickle {
            taken: Vec::new(),
            room: usize::MAX / 2,
        };
        flush(&mut out, &mut q);
        assert_eq!(out.taken.len(), (MAX_IOVECS * 3 + 5) * 2);
        assert!(q.is_empty());
    }
}
