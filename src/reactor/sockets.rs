//! The loop's socket work, each with a budget: accepting, reading what
//! connections send, and writing what they have queued (the flush lists'
//! streams in slices, answers at once).

use log::{debug, warn};
use mio::Token;

use super::SHORT_READ_ENDS_TURN;
use super::{ACCEPTS_PER_TURN, CONN_INTEREST, FLUSH_SLICE, READS_PER_TURN, Reactor};
use crate::conn::{AfterFlush, Conn};
use crate::net::{self, ReadOutcome};
use crate::process::Admission;

impl Reactor {
    pub(super) fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some((mut socket, peer)) = self.listening.next() else {
                return;
            };
            // Small event writes must leave at once, not wait for an ACK.
            if let Err(e) = socket.set_nodelay(true) {
                debug!("set_nodelay for {peer}: {e}");
                continue;
            }
            // Those waiting for their refusal do not hold a place; past
            // them, a connection is closed unanswered.
            let admission = self.shared.admit(self.config.max_connections);
            if admission == Admission::Refused {
                self.counters.rejected.add(1);
                continue;
            }
            let over_capacity = admission == Admission::OverCapacity;
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut socket, Token(key), CONN_INTEREST)
            {
                warn!("register {peer}: {e}");
                self.shared.leave(admission);
                continue;
            }
            let conn = entry.insert(Conn::new(socket, self.now, over_capacity, &self.config));
            self.polls.accepted(key);
            self.timers.set(key, conn.deadline());
            self.counters.accepted.add(1);
            self.update_gauges();
            let loop_index = self.index;
            if over_capacity {
                self.counters.rejected.add(1);
                debug!("loop {loop_index}: connection {key} from {peer}: over capacity");
            } else {
                debug!("loop {loop_index}: connection {key} from {peer}");
            }
        }
        self.owed.accepts = true;
    }

    /// Reads what the peer sent. A read that leaves room in the buffer took
    /// all the kernel had, and input arriving later raises a new edge, so the
    /// read that would only say WouldBlock is skipped (one syscall less on
    /// every publish) unless `to_the_end`.
    pub(super) fn on_readable(&mut self, key: usize, to_the_end: bool) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.wants_input() {
                return;
            }
            match conn.read(&mut self.read_buf) {
                ReadOutcome::Data(n) => {
                    let took_all = n < self.read_buf.len();
                    let read_buf = std::mem::take(&mut self.read_buf);
                    self.serve_input(key, &read_buf[..n]);
                    self.read_buf = read_buf;
                    if took_all && SHORT_READ_ENDS_TURN && !to_the_end {
                        return;
                    }
                }
                ReadOutcome::Eof => {
                    let next = conn.on_eof(self.now);
                    return self.after(key, next);
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Failed(e) => {
                    log::log!(net::failure_level(&e), "connection {key}: read: {e}");
                    return self.close(key, "read error");
                }
            }
        }
        // Budget spent with input possibly left: finish in a later pass.
        self.owed.reads.push(key);
    }

    /// Writes what connection `key` has queued until the kernel refuses,
    /// topping up a replay in progress each time the queue drains.
    pub(super) fn flush(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let flushed = conn.flush(self.now, key);
            self.counters.bytes_written.add(flushed.written as u64);
            if let Some(waited) = flushed.waited {
                self.counters.observe_write_delay(waited);
            }
            match flushed.then {
                AfterFlush::Done => return,
                AfterFlush::Replay => {
                    if self.replay(key) == 0 {
                        return;
                    }
                }
                AfterFlush::ResumeInput => return self.owed.reads.push(key),
                AfterFlush::Close(why) => return self.close(key, why),
                AfterFlush::Failed(e) => {
                    log::log!(net::failure_level(&e), "connection {key}: write: {e}");
                    return self.close(key, "write error");
                }
            }
        }
    }

    /// Writes the next slice of listed streams, then every answer owed; what
    /// is left of a wide fan-out waits for the next pass (which polls first).
    pub(super) fn flush_listed(&mut self) {
        let mut flushed = 0;
        while flushed < FLUSH_SLICE {
            let Some(key) = self.owed.streams.pop_front() else {
                break;
            };
            flushed += usize::from(self.flush_if_listed(key));
        }
        while let Some(key) = self.owed.answers.pop_front() {
            self.flush_if_listed(key);
        }
    }

    /// Flushes a connection taken off a flush list if it still wants it:
    /// the list may name one closed since (its key perhaps reused) or one
    /// flushed meanwhile on writable readiness. Returns whether it did.
    fn flush_if_listed(&mut self, key: usize) -> bool {
        let listed = self.conns.get(key).is_some_and(Conn::is_listed);
        if listed {
            self.flush(key);
        }
        listed
    }
}
