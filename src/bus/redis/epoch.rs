//! The cluster's epochs as one node saw them, shared by its loops: the
//! current one (what publishes name, as the epoch check last said), the
//! eras of the node's order (so that a loop's history names a delivery by
//! the epoch it belongs to, and knows which older ids still resume) and
//! how far the node's start-up read went.
//!
//! An epoch is kept in Redis as a string, `<run>[ <from>[ <primary>]]`
//! (the epoch check's Lua writes it, [`parse_value`] reads it): its run,
//! the stream's sequence number it began after (0: a stream begun anew;
//! more: it continues the stream of the epoch before, whose ids up to
//! there stay valid) and, with Sentinel, the primary it began on. Its ids
//! are `urn:sseloop:<run>-<n>`, `n` the entry's sequence number in the
//! stream.
//!
//! Inside a node the order's sequence numbers run on across epochs: an
//! era's events are numbered from its base, so that its first delivery
//! (the `reset` that announces it) comes after every delivery of the era
//! before, and a subscriber's place in the order stays valid when the
//! epoch changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::bus::id::{Epoch, Run};

/// Eras a node keeps (older deliveries are older than any history).
const ERAS_KEPT: usize = 64;

/// The epoch's value in Redis: `<run>`, `<run> <from>` or `<run> <from>
/// <primary>`, as the epoch check's Lua writes it.
#[cfg(test)]
pub fn value(run: Run, from: u64, primary: Option<std::net::SocketAddr>) -> String {
    match primary {
        Some(primary) => format!("{run} {from} {primary}"),
        None if from > 0 => format!("{run} {from}"),
        None => run.to_string(),
    }
}

/// The run and the sequence number it began after, of an epoch's value.
pub fn parse_value(value: &[u8]) -> Option<(Run, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let run = Run::parse(parts.next()?.as_bytes())?;
    let from = match parts.next() {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        Some(_) => return None,
    };
    // The primary, if named, is Redis's business: compared there.
    Some((run, from))
}

/// The current epoch, as publishes need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// Its value in Redis, which a publish names.
    pub value: Arc<str>,
    /// Its run.
    pub run: Run,
    /// The stream's sequence number it began after.
    pub from: u64,
    /// The newest sequence number of the stream known to be stored in it
    /// (read from the stream, or confirmed by a publish).
    pub known: u64,
}

/// One era of the node's order: an epoch's events, numbered from its
/// base, from the delivery `start` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Era {
    /// The epoch, with its base in the order.
    pub epoch: Epoch,
    /// Its first delivery's sequence number in the order.
    pub start: u64,
    /// The era before: its ids up to this number still name their events
    /// (`None`: none does, the stream was begun anew).
    pub before_valid: Option<u64>,
}

/// Every epoch this node saw.
#[derive(Debug, Default)]
pub struct Epochs {
    state: Mutex<State>,
    /// How many eras have begun, read without the lock: a loop looks up
    /// the era of a delivery only when this changed.
    begun: AtomicUsize,
    /// One past the sequence number in the order that the start-up read
    /// handed out through; 0 until it has.
    started: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Current>,
    /// Oldest first.
    eras: Vec<Era>,
    /// Eras dropped from the front, so that `begun` keeps counting.
    dropped: usize,
}

impl Epochs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current epoch; `None` before the first epoch check.
    pub fn current(&self) -> Option<Current> {
        self.state().current.clone()
    }

    /// The epoch check said `current`: of the same run, what it knows
    /// stored is kept if more. Whether the epoch is another than before.
    pub fn set_current(&self, current: Current) -> bool {
        let mut state = self.state();
        let (known, changed) = match &state.current {
            Some(c) if c.run == current.run => (c.known.max(current.known), false),
            _ => (current.known, true),
        };
        state.current = Some(Current { known, ..current });
        changed
    }

    /// Entry `seq` of epoch `run` is stored (of no account when `run` is
    /// no longer current).
    pub fn note_stored(&self, run: Run, seq: u64) {
        let mut state = self.state();
        if let Some(current) = &mut state.current
            && current.run == run
        {
            current.known = current.known.max(seq);
        }
    }

    /// An era of the order begins.
    pub fn begin_era(&self, era: Era) {
        let mut state = self.state();
        debug_assert!(
            state
                .eras
                .last()
                .is_none_or(|e| e.start < era.start || era.start == 0),
            "era {era:?} begins before {:?}",
            state.eras.last()
        );
        state.eras.push(era);
        if state.eras.len() > ERAS_KEPT {
            state.eras.remove(0);
            state.dropped += 1;
        }
        self.begun
            .store(state.dropped + state.eras.len(), Ordering::Release);
    }

    /// How many eras have begun.
    pub fn begun(&self) -> usize {
        self.begun.load(Ordering::Acquire)
    }

    /// The era a delivery numbered `seq` belongs to, and how many eras had
    /// begun up to and including it.
    pub fn of(&self, seq: u64) -> Option<(Era, usize)> {
        let state = self.state();
        let through = state.eras.partition_point(|e| e.start <= seq);
        let era = *state.eras.get(through.checked_sub(1)?)?;
        Some((era, state.dropped + through))
    }

    /// The newest sequence number in the order known to be assigned: in
    /// the last era, when publishes go in its epoch.
    pub fn issued(&self) -> u64 {
        let state = self.state();
        match (&state.current, state.eras.last()) {
            (Some(current), Some(era)) if era.epoch.run() == current.run => {
                era.epoch.base() + current.known
            }
            _ => 0,
        }
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
    use std::net::SocketAddr;

    use super::*;

    fn run(text: &str) -> Run {
        Run::parse(text.as_bytes()).unwrap()
    }

    fn current(r: &str, known: u64) -> Current {
        Current {
            value: Arc::from(r),
            run: run(r),
            from: 0,
            known,
        }
    }

    #[test]
    fn values_name_the_run_where_it_began_and_the_primary() {
        let a = run("0123456789ab");
        let primary: SocketAddr = "10.0.0.1:6380".parse().unwrap();
        assert_eq!(value(a, 0, None), "0123456789ab");
        assert_eq!(value(a, 98, None), "0123456789ab 98");
        assert_eq!(value(a, 0, Some(primary)), "0123456789ab 0 10.0.0.1:6380");
        assert_eq!(parse_value(b"0123456789ab"), Some((a, 0)));
        assert_eq!(parse_value(b"0123456789ab 98"), Some((a, 98)));
        assert_eq!(parse_value(b"0123456789ab 98 10.0.0.1:6380"), Some((a, 98)));
        for bad in [&b"short"[..], b"0123456789ab x", b"0123456789ab  1", b""] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_delivery_belongs_to_the_last_era_begun_before_it() {
        let epochs = Epochs::default();
        assert_eq!(
            (epochs.current(), epochs.of(0), epochs.begun()),
            (None, None, 0)
        );
        let first = Era {
            epoch: Epoch::new(run("0123456789ab"), 0),
            start: 0,
            before_valid: None,
        };
        epochs.begin_era(first);
        epochs.set_current(current("0123456789ab", 5));
        assert_eq!(epochs.of(3), Some((first, 1)));
        assert_eq!(epochs.issued(), 5);
        // The next continues after 3, its reset at order 6: base 3.
        let second = Era {
            epoch: Epoch::new(run("ba5eba5eba5e"), 3),
            start: 6,
            before_valid: Some(3),
        };
        epochs.set_current(current("ba5eba5eba5e", 3));
        // Publishes go in the new epoch before the order reaches it.
        assert_eq!(epochs.issued(), 0);
        epochs.begin_era(second);
        assert_eq!(epochs.begun(), 2);
        assert_eq!(epochs.of(5), Some((first, 1)));
        assert_eq!(epochs.of(6), Some((second, 2)));
        assert_eq!(epochs.of(u64::MAX), Some((second, 2)));
        assert_eq!(epochs.issued(), 6);
    }

    #[test]
    fn only_the_current_epoch_learns_what_is_stored() {
        let epochs = Epochs::default();
        epochs.set_current(current("0123456789ab", 5));
        epochs.note_stored(run("0123456789ab"), 7);
        epochs.note_stored(run("0123456789ab"), 6);
        assert_eq!(epochs.current().unwrap().known, 7);
        // The check says less of the same epoch: what was known stays.
        epochs.set_current(current("0123456789ab", 6));
        assert_eq!(epochs.current().unwrap().known, 7);
        epochs.set_current(current("ba5eba5eba5e", 0));
        epochs.note_stored(run("0123456789ab"), 9);
        assert_eq!(epochs.current().unwrap().known, 0);
    }

    #[test]
    fn old_eras_are_dropped_and_still_counted() {
        let epochs = Epochs::default();
        for n in 0..(ERAS_KEPT as u64 + 3) {
            epochs.begin_era(Era {
                epoch: Epoch::new(Run::draw(), n * 10),
                start: n * 10 + 1,
                before_valid: None,
            });
        }
        assert_eq!(epochs.begun(), ERAS_KEPT + 3);
        assert_eq!(epochs.of(5), None, "dropped");
        let (era, begun) = epochs.of(u64::MAX).unwrap();
        assert_eq!(
            (era.start, begun),
            ((ERAS_KEPT as u64 + 2) * 10 + 1, ERAS_KEPT + 3)
        );
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
