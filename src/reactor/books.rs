//! The loop's small books, each with the few operations the loop needs:
//! the work a pass owes (`Owed`: flush lists and backlogs), the streams
//! replaying from the history (`Replays`, with the pass's `ReplayBudget`),
//! which poll each connection came after (`Polls`), the listening socket
//! (`Listening`) and the shutdown (`Shutdown`). None does I/O but
//! `Listening::next`, through `net`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use log::{info, warn};
use mio::net::{TcpListener, TcpStream};

use crate::conn::{ReplayAllowance, Replayed};
use crate::net::{self, Accepted};

/// History units one replay top-up may look through before other
/// connections get a turn (see `History::next_retained`).
const REPLAY_UNITS_PER_TOP_UP: usize = 64 << 10;

/// What a pass leaves for the next one (which then polls without waiting):
/// connections with bytes to write, and work a budget cut short.
///
/// Connections with bytes to write are listed in the order they got them,
/// streams apart from answers to requests, so that answers need not wait
/// for a whole fan-out. A connection is listed once per turn of its
/// `listed` flag; an entry whose flag was cleared since (a flush on
/// writable readiness, a close) is skipped.
#[derive(Debug, Default)]
pub(super) struct Owed {
    /// Streams to write, a slice per pass.
    pub(super) streams: VecDeque<usize>,
    /// Answers to write, all of them each pass.
    pub(super) answers: VecDeque<usize>,
    /// Connections whose input may be left unread: the read budget ran out,
    /// or reading was paused and may go on.
    pub(super) reads: Vec<usize>,
    /// The accept budget ran out, or a close may let a listener short of
    /// descriptors go on.
    pub(super) accepts: bool,
    /// The inbox budget ran out, or the bus may have handed out messages
    /// before the loop ran.
    pub(super) inbox: bool,
}

impl Owed {
    /// Whether the next poll must not wait: something is owed now.
    pub(super) fn any(&self) -> bool {
        self.accepts || self.inbox || !self.reads.is_empty() || !self.streams.is_empty()
    }
}

/// The streams catching up from the history: how many there are (a gauge),
/// those a budget stopped (to go on in a later pass), and what replays may
/// still do in this pass.
#[derive(Debug, Default)]
pub(super) struct Replays {
    /// Streams replaying.
    active: u64,
    /// Replays a budget stopped, each listed once.
    waiting: Vec<usize>,
    /// Which keys are in `waiting`, indexed by key.
    listed: Vec<bool>,
    /// What replays may still do in this pass.
    pub(super) budget: ReplayBudget,
}

impl Replays {
    /// Streams replaying.
    pub(super) fn active(&self) -> u64 {
        self.active
    }

    /// A stream began to replay.
    pub(super) fn began(&mut self) {
        self.active += 1;
    }

    /// A stream stopped replaying: caught up, or ended.
    pub(super) fn ended(&mut self) {
        debug_assert!(self.active > 0, "more replays ended than began");
        self.active -= 1;
    }

    /// Lists `key`'s replay, stopped by a budget, to go on in a later pass;
    /// once, however often it is stopped meanwhile.
    pub(super) fn wait(&mut self, key: usize) {
        if key >= self.listed.len() {
            self.listed.resize(key + 1, false);
        }
        if !std::mem::replace(&mut self.listed[key], true) {
            self.waiting.push(key);
        }
    }

    /// Whether some replay waits for a pass.
    pub(super) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The replays that waited, unlisted: a budget may list them again.
    pub(super) fn take_waiting(&mut self) -> Vec<usize> {
        let waiting = std::mem::take(&mut self.waiting);
        for &key in &waiting {
            debug_assert!(self.listed[key], "a waiting replay is marked listed");
            self.listed[key] = false;
        }
        waiting
    }

    /// A new pass of the loop: a new budget.
    pub(super) fn new_pass(&mut self) {
        self.budget = ReplayBudget::default();
    }
}

/// What replays may do in one pass of the loop, over all connections: so
/// that many subscribers resuming from a long history at once hold up live
/// publishes and answers by a slice, not by the whole history.
#[derive(Debug)]
pub(super) struct ReplayBudget {
    /// History units left to look through (see `History::next_retained`).
    units: usize,
    /// Bytes of replayed events left to queue.
    bytes: usize,
}

impl Default for ReplayBudget {
    fn default() -> Self {
        ReplayBudget {
            units: 256 << 10,
            bytes: 1 << 20,
        }
    }
}

impl ReplayBudget {
    /// What one top-up of a stream with `queued` unsent bytes may do: look
    /// through a top-up's share of the units left, and fill its queue up to
    /// half the queue limit (so that a long replay never trips the
    /// slow-subscriber cut-off) or the bytes left. `None` once the pass's
    /// budget is spent.
    pub(super) fn allowance(&self, queued: usize, queue_limit: usize) -> Option<ReplayAllowance> {
        if self.units == 0 || self.bytes == 0 {
            return None;
        }
        Some(ReplayAllowance {
            units: REPLAY_UNITS_PER_TOP_UP.min(self.units),
            fill_to: (queue_limit / 2).min(queued + self.bytes),
        })
    }

    /// Takes off what a top-up did.
    pub(super) fn charge(&mut self, replayed: &Replayed) {
        debug_assert!(
            replayed.units <= self.units,
            "a top-up used more than allowed"
        );
        self.units -= replayed.units;
        self.bytes = self.bytes.saturating_sub(replayed.bytes);
    }
}

/// The polls counted, and the poll each slab key's connection was accepted
/// after: readiness a poll reported is for connections accepted before it,
/// not for one that took, later in the same pass, the key of a connection
/// closed meanwhile. Also when a poll last reported readiness.
#[derive(Debug)]
pub(super) struct Polls {
    /// Polls so far.
    count: u64,
    /// By key: the value of `count` when its connection was accepted (a key
    /// is reused once its connection closed).
    accepted_after: Vec<u64>,
    /// When a poll last reported readiness; `--busy-poll` spins after it.
    pub(super) active_at: Instant,
}

impl Polls {
    pub(super) fn new(now: Instant) -> Polls {
        Polls {
            count: 0,
            accepted_after: Vec::new(),
            active_at: now,
        }
    }

    /// A poll returned at `now`, reporting readiness or not.
    pub(super) fn polled(&mut self, now: Instant, ready: bool) {
        self.count += 1;
        if ready {
            self.active_at = now;
        }
    }

    /// Connection `key` was accepted in this pass.
    pub(super) fn accepted(&mut self, key: usize) {
        if key >= self.accepted_after.len() {
            self.accepted_after.resize(key + 1, 0);
        }
        self.accepted_after[key] = self.count;
    }

    /// Whether what the last poll reported for `key` is about the
    /// connection now under that key.
    pub(super) fn reported_on(&self, key: usize) -> bool {
        self.accepted_after.get(key).copied().unwrap_or(0) < self.count
    }
}

/// The listening socket, until a shutdown closes it, and the accept
/// failures of a burst (the process out of descriptors or memory), logged
/// once per burst.
#[derive(Debug)]
pub(super) struct Listening {
    /// `None` once shutting down.
    pub(super) socket: Option<TcpListener>,
    /// The address it was bound to.
    pub(super) addr: SocketAddr,
    /// Failed accepts since the last one that worked.
    failures: u64,
}

impl Listening {
    pub(super) fn new(socket: TcpListener, addr: SocketAddr) -> Listening {
        Listening {
            socket: Some(socket),
            addr,
            failures: 0,
        }
    }

    /// The next connection waiting, if any: `None` when none waits, the
    /// listener is closed, or accepting failed (it is retried when a
    /// connection closes).
    pub(super) fn next(&mut self) -> Option<(TcpStream, SocketAddr)> {
        match net::accept(self.socket.as_ref()?) {
            Accepted::Conn(socket, peer) => Some((socket, peer)),
            Accepted::WouldBlock => {
                // Every waiting connection is in: a burst is over.
                if self.failures > 0 {
                    info!("accept works again after {} failed attempts", self.failures);
                    self.failures = 0;
                }
                None
            }
            Accepted::Transient(e) => {
                // Retried whenever a connection closes: one line for the
                // burst, and one when every waiting connection is in.
                if self.failures == 0 {
                    warn!("accept: {e}; new connections wait until some close");
                }
                self.failures += 1;
                None
            }
            Accepted::Failed(e) => {
                warn!("accept failed: {e}");
                None
            }
        }
    }
}

/// A shutdown: asked for, then under way until its grace ends.
#[derive(Debug, Default)]
pub(super) struct Shutdown {
    /// The bus asked for one, to begin at the end of this pass.
    pub(super) requested: bool,
    /// When the grace ends, once under way.
    pub(super) grace_ends: Option<Instant>,
}

impl Shutdown {
    /// Under way: nothing new starts, nothing is kept alive.
    pub(super) fn under_way(&self) -> bool {
        self.grace_ends.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ReplayThen;

    #[test]
    fn a_replay_waits_once_however_often_a_budget_stops_it() {
        let mut replays = Replays::default();
        replays.wait(5);
        replays.wait(2);
        replays.wait(5);
        assert!(replays.any_waiting());
        assert_eq!(replays.take_waiting(), [5, 2]);
        assert!(!replays.any_waiting());
        // Taken off the list, it can be listed again.
        replays.wait(5);
        assert_eq!(replays.take_waiting(), [5]);
    }

    #[test]
    fn a_pass_budget_is_shared_out_then_spent() {
        let mut budget = ReplayBudget::default();
        let limit = 1 << 20;
        let first = budget.allowance(100, limit).unwrap();
        assert_eq!(first.units, REPLAY_UNITS_PER_TOP_UP);
        assert_eq!(first.fill_to, limit / 2);
        budget.charge(&Replayed {
            events: 10,
            bytes: (1 << 20) - 1000,
            units: 3 * REPLAY_UNITS_PER_TOP_UP,
            then: ReplayThen::NextPass,
        });
        // Bytes left bound how far a queue may be filled.
        assert_eq!(budget.allowance(100, limit).unwrap().fill_to, 1100);
        budget.charge(&Replayed {
            events: 1,
            bytes: 1000,
            units: 1,
            then: ReplayThen::Live,
        });
        assert_eq!(budget.allowance(0, limit), None);
        let mut units_spent = ReplayBudget::default();
        let all = units_spent.units;
        units_spent.charge(&Replayed {
            events: 0,
            bytes: 0,
            units: all,
            then: ReplayThen::NextPass,
        });
        assert_eq!(units_spent.allowance(0, limit), None);
    }

    #[test]
    fn readiness_of_a_poll_is_for_connections_accepted_before_it() {
        let now = Instant::now();
        let mut polls = Polls::new(now);
        polls.polled(now, true);
        polls.accepted(3);
        assert!(!polls.reported_on(3), "accepted after the poll");
        assert!(polls.reported_on(4), "a key never used");
        polls.polled(now, false);
        assert!(polls.reported_on(3));
    }
}
