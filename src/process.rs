//! What every loop and every handle of one server process share: the
//! hub's door that every publish goes through, each loop's counters, and
//! the count of connections held against `--max-connections`, which
//! bounds the whole process however many loops there are. Atomics only;
//! nothing here is touched per delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bus::Hub;
use crate::config::OVERFLOW_CONNECTIONS;
use crate::metrics::{Counters, Stats};

/// Shared by the loops and handles of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Where every publish goes in, from any loop or thread.
    pub(crate) hub: Hub,
    /// Each loop's counters, by loop index.
    pub(crate) counters: Vec<Arc<Counters>>,
    /// Connections served, of every loop.
    admitted: AtomicUsize,
    /// Connections accepted past the limit, waiting for their refusal.
    overflow: AtomicUsize,
    /// Loops that listen.
    listening: AtomicUsize,
    /// With `--lab`: where loops hand lab streams over.
    pub(crate) lab: Option<sseloop_lab::LabDoor>,
}

/// What a new connection is let in as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Served.
    Served,
    /// Past `--max-connections`: answered "come back later", then closed.
    OverCapacity,
    /// Past the waiting room too: closed unanswered.
    Refused,
}

impl Shared {
    pub(crate) fn new(hub: Hub, counters: Vec<Arc<Counters>>) -> Shared {
        Shared {
            hub,
            counters,
            admitted: AtomicUsize::new(0),
            overflow: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
            lab: None,
        }
    }

    /// A loop listens now; true for the last of them, when the whole
    /// server does.
    pub(crate) fn loop_listens(&self) -> bool {
        let listening = self.listening.fetch_add(1, Ordering::AcqRel) + 1;
        debug_assert!(listening <= self.counters.len(), "a loop listened twice");
        listening == self.counters.len()
    }

    /// Lets a new connection in against `max_connections` for the whole
    /// process. Taking the place first and giving it back on failure keeps
    /// two loops from both taking the last one.
    pub(crate) fn admit(&self, max_connections: usize) -> Admission {
        if self.admitted.fetch_add(1, Ordering::AcqRel) < max_connections {
            return Admission::Served;
        }
        self.admitted.fetch_sub(1, Ordering::AcqRel);
        if self.overflow.fetch_add(1, Ordering::AcqRel) < OVERFLOW_CONNECTIONS {
            return Admission::OverCapacity;
        }
        self.overflow.fetch_sub(1, Ordering::AcqRel);
        Admission::Refused
    }

    /// A connection let in as `admission` has closed.
    pub(crate) fn leave(&self, admission: Admission) {
        match admission {
            Admission::Served => self.admitted.fetch_sub(1, Ordering::AcqRel),
            Admission::OverCapacity => self.overflow.fetch_sub(1, Ordering::AcqRel),
            Admission::Refused => 0,
        };
    }

    /// The counters summed over every loop.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats {
            events_published: self.hub.published(),
            cluster_entries_skipped: self.hub.skipped(),
            ..Stats::default()
        };
        for counters in &self.counters {
            counters.add_to(&mut stats);
        }
        stats
    }

    /// Each loop's counters alone, by loop index.
    pub(crate) fn per_loop(&self) -> Vec<Stats> {
        self.counters
            .iter()
            .map(|counters| {
                let mut stats = Stats::default();
                counters.add_to(&mut stats);
                stats
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::local::LocalSequencer;

    #[test]
    fn the_limit_holds_for_the_whole_process() {
        let hub = Hub::new(Arc::new(LocalSequencer::new(Vec::new(), 0)));
        let shared = Shared::new(hub, Vec::new());
        assert_eq!(shared.admit(2), Admission::Served);
        assert_eq!(shared.admit(2), Admission::Served);
        for _ in 0..OVERFLOW_CONNECTIONS {
            assert_eq!(shared.admit(2), Admission::OverCapacity);
        }
        assert_eq!(shared.admit(2), Admission::Refused);
        shared.leave(Admission::Served);
        assert_eq!(shared.admit(2), Admission::Served);
        shared.leave(Admission::OverCapacity);
        assert_eq!(shared.admit(2), Admission::OverCapacity);
    }
}
