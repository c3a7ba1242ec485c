//! The cluster's epochs as one node saw them begin, shared by its loops:
//! the current one (the run its publishes go in, and the newest sequence
//! number known stored in it), the earlier ones (so that a loop's history
//! names a delivery by the epoch it belongs to) and how far the node's
//! start-up read went.
//!
//! Inside a node the order's sequence numbers run on across epochs: an
//! epoch's events are numbered from its base, one past the last number of
//! the epoch before, so a subscriber's place in the order stays valid when
//! the epoch changes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::bus::id::{Epoch, Run};

/// The current epoch, as publishes and resumes need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    /// The epoch.
    pub epoch: Epoch,
    /// The newest sequence number of the epoch known to be stored (read
    /// from the stream, or confirmed by a publish).
    pub known: u64,
}

impl Current {
    /// The newest sequence number in the order known to be assigned.
    pub fn issued(&self) -> u64 {
        self.epoch.base() + self.known
    }
}

/// Every epoch this node saw begin.
#[derive(Debug, Default)]
pub struct Epochs {
    state: Mutex<State>,
    /// How many epochs have begun, read without the lock: a loop looks up
    /// the epoch of a delivery only when this changed.
    begun: AtomicUsize,
    /// One past the sequence number in the order that the start-up read
    /// handed out through; 0 until it has.
    started: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first; the last is the current epoch.
    epochs: Vec<Epoch>,
    known: u64,
}

impl Epochs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current epoch; `None` before the first epoch check.
    pub fn current(&self) -> Option<Current> {
        let state = self.state();
        Some(Current {
            epoch: *state.epochs.last()?,
            known: state.known,
        })
    }

    /// `epoch` begins, with entries up to `known` stored in it.
    pub fn begin(&self, epoch: Epoch, known: u64) {
        let mut state = self.state();
        debug_assert!(
            state.epochs.last().is_none_or(|e| e.base() < epoch.base()),
            "epoch {epoch:?} begins before {:?}",
            state.epochs.last()
        );
        state.epochs.push(epoch);
        state.known = known;
        self.begun.store(state.epochs.len(), Ordering::Release);
    }

    /// Entry `seq` of epoch `run` is stored (of no account when `run` is
    /// no longer current).
    pub fn note_stored(&self, run: Run, seq: u64) {
        let mut state = self.state();
        if state.epochs.last().is_some_and(|e| e.run() == run) {
            state.known = state.known.max(seq);
        }
    }

    /// How many epochs have begun.
    pub fn begun(&self) -> usize {
        self.begun.load(Ordering::Acquire)
    }

    /// The epoch a delivery numbered `seq` belongs to, and how many epochs
    /// had begun up to and including it.
    pub fn of(&self, seq: u64) -> Option<(Epoch, usize)> {
        let state = self.state();
        let through = state.epochs.partition_point(|e| e.base() <= seq);
        Some((*state.epochs.get(through.checked_sub(1)?)?, through))
    }

    /// The start-up read has handed out everything through `seq`.
    pub fn started_through(&self, seq: u64) {
        self.started.store(seq + 1, Ordering::Release);
    }

    /// How far the start-up read handed out; `None` before it has.
    pub fn started(&self) -> Option<u64> {
        self.started.load(Ordering::Acquire).checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(run: &str, base: u64) -> Epoch {
        Epoch::new(Run::parse(run.as_bytes()).unwrap(), base)
    }

    #[test]
    fn a_delivery_belongs_to_the_last_epoch_begun_before_it() {
        let epochs = Epochs::default();
        assert_eq!(
            (epochs.current(), epochs.of(0), epochs.begun()),
            (None, None, 0)
        );
        let first = epoch("0123456789ab", 0);
        epochs.begin(first, 5);
        assert_eq!(epochs.of(3), Some((first, 1)));
        let second = epoch("ba5eba5eba5e", 6);
        epochs.begin(second, 0);
        assert_eq!(epochs.begun(), 2);
        assert_eq!(epochs.of(5), Some((first, 1)));
        assert_eq!(epochs.of(6), Some((second, 2)));
        assert_eq!(epochs.of(u64::MAX), Some((second, 2)));
        let current = epochs.current().unwrap();
        assert_eq!(
            (current.epoch, current.known, current.issued()),
            (second, 0, 6)
        );
    }

    #[test]
    fn only_the_current_epoch_learns_what_is_stored() {
        let epochs = Epochs::default();
        let first = epoch("0123456789ab", 0);
        epochs.begin(first, 5);
        epochs.note_stored(first.run(), 7);
        epochs.note_stored(first.run(), 6);
        assert_eq!(epochs.current().unwrap().known, 7);
        epochs.begin(epoch("ba5eba5eba5e", 8), 0);
        epochs.note_stored(first.run(), 9);
        assert_eq!(epochs.current().unwrap().known, 0);
    }

    #[test]
    fn the_start_is_known_once_read() {
        let epochs = Epochs::default();
        assert_eq!(epochs.started(), None);
        epochs.started_through(0);
        assert_eq!(epochs.started(), Some(0));
        epochs.started_through(12);
        assert_eq!(epochs.started(), Some(12));
    }
}
