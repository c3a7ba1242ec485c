//! Time in the loop without a timer thread: every connection's one deadline
//! in a set kept in order, whose nearest entry becomes the poll timeout (no
//! scan of the connections), and the grid that heartbeat deadlines are
//! rounded to, so that idle subscribers share wake-ups.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Heartbeat deadlines are rounded down to this fraction of the interval.
const HEARTBEAT_TICKS: u32 = 16;

/// Each connection's deadline, nearest first.
#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(Instant, usize)>,
    /// The deadline registered for each key, indexed by key.
    by_key: Vec<Option<Instant>>,
}

impl Timers {
    /// Makes `at` the deadline of `key` (none: no deadline). Costs nothing
    /// when it is unchanged.
    pub fn set(&mut self, key: usize, at: Option<Instant>) {
        if key >= self.by_key.len() {
            if at.is_none() {
                return;
            }
            self.by_key.resize(key + 1, None);
        }
        let slot = &mut self.by_key[key];
        if *slot == at {
            return;
        }
        if let Some(old) = slot.take() {
            let removed = self.set.remove(&(old, key));
            debug_assert!(removed, "each key's deadline is in the set");
        }
        if let Some(new) = at {
            self.set.insert((new, key));
        }
        *slot = at;
    }

    /// The nearest deadline.
    pub fn nearest(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    /// Takes the key of a deadline due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let &(at, key) = self.set.first()?;
        if at > now {
            return None;
        }
        self.set.pop_first();
        debug_assert_eq!(self.by_key[key], Some(at), "the set and the index agree");
        self.by_key[key] = None;
        Some(key)
    }
}

/// When idle subscribers are due a heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatGrid {
    interval: Option<Duration>,
    tick: Duration,
    epoch: Instant,
}

impl HeartbeatGrid {
    /// Heartbeats every `interval` (none: never), on a grid that starts at
    /// `epoch`.
    pub fn new(interval: Option<Duration>, epoch: Instant) -> HeartbeatGrid {
        let tick = interval.map_or(Duration::from_millis(1), |i| {
            (i / HEARTBEAT_TICKS).max(Duration::from_millis(1))
        });
        HeartbeatGrid {
            interval,
            tick,
            epoch,
        }
    }

    /// When a subscriber last written to at `last_write` is due a
    /// heartbeat, rounded down to the grid.
    pub fn due(&self, last_write: Instant) -> Option<Instant> {
        let interval = self.interval?;
        let since_epoch = (last_write + interval).duration_since(self.epoch);
        // In nanoseconds, not ticks × a u32: a small tick runs past u32 in
        // weeks of uptime.
        let tick = self.tick.as_nanos();
        let grid = since_epoch.as_nanos() / tick * tick;
        Some(self.epoch + Duration::from_nanos(u64::try_from(grid).unwrap_or(u64::MAX)))
    }

    /// When to look again at a subscriber after a look at `now`: when it
    /// would be due if nothing were written meanwhile, and never `now`
    /// itself, so a look always moves time on.
    pub fn next_check(&self, now: Instant) -> Option<Instant> {
        let check = self.due(now).map(|due| due.max(now + self.tick));
        debug_assert!(check.is_none_or(|at| at > now));
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_due_in_order_and_move() {
        let now = Instant::now();
        let s = Duration::from_secs(1);
        let mut timers = Timers::default();
        timers.set(3, Some(now + 3 * s));
        timers.set(1, Some(now + s));
        timers.set(7, Some(now + 2 * s));
        assert_eq!(timers.nearest(), Some(now + s));
        timers.set(1, Some(now + 5 * s));
        timers.set(7, None);
        assert_eq!(timers.pop_due(now + 4 * s), Some(3));
        assert_eq!(timers.pop_due(now + 4 * s), None);
        assert_eq!(timers.pop_due(now + 5 * s), Some(1));
        assert_eq!(timers.nearest(), None);
    }

    #[test]
    fn the_grid_holds_after_years_of_a_small_tick() {
        let epoch = Instant::now();
        let grid = HeartbeatGrid::new(Some(Duration::from_millis(16)), epoch);
        // 1 ms ticks: 2^32 of them are 50 days.
        let later = epoch + Duration::from_secs(3 * 365 * 24 * 3600);
        let due = grid.due(later).unwrap();
        assert!(
            due > later && due <= later + Duration::from_millis(16),
            "{:?}",
            due - later
        );
    }

    #[test]
    fn heartbeats_fall_on_the_grid() {
        let epoch = Instant::now();
        let grid = HeartbeatGrid::new(Some(Duration::from_millis(1600)), epoch);
        // Ticks of 100 ms: 1 650 ms after the epoch rounds down to 1 600.
        let due = grid.due(epoch + Duration::from_millis(50)).unwrap();
        assert_eq!(due, epoch + Duration::from_millis(1600));
        assert_eq!(HeartbeatGrid::new(None, epoch).due(epoch), None);
    }
}
