//! The heartbeat lesson's two clocks on one stream: the application's
//! heartbeat, written after it has written nothing for a while, and the
//! proxy's read timeout, which cuts a stream from which nothing came for
//! longer (nginx's `proxy_read_timeout`, a load balancer's idle timeout).
//! A heartbeat rarer than the timeout lets the proxy cut every pause in
//! the events; one more frequent keeps the stream up for good. Pure: the
//! loop asks for the deadline and reports it due.

use std::time::{Duration, Instant};

/// The proxy's read timeout in the lesson.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The heartbeat with the cause: rarer than the timeout.
pub const RARE_HEARTBEAT: Duration = Duration::from_secs(10);
/// The heartbeat with the fix: well within the timeout.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A heartbeat as the application writes it: a comment, which the
/// browser's `EventSource` never shows the page.
pub const HEARTBEAT_BYTES: &[u8] = b": heartbeat\n\n";

/// The two clocks of one stream.
#[derive(Debug)]
pub struct Idle {
    /// The application's heartbeat interval.
    beat: Duration,
    /// The proxy's read timeout, when a proxy is in the way.
    cut: Option<Duration>,
    /// When the application last wrote.
    last_write: Instant,
}

/// What a due deadline means.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Not yet (the deadline moved).
    Nothing,
    /// The application writes a heartbeat now.
    Heartbeat,
    /// The proxy gives up on the stream and closes the browser's
    /// connection.
    Cut,
}

impl Idle {
    /// The clocks of a stream begun at `now`: the rare heartbeat with the
    /// cause, the frequent one with the fix; `proxy` puts the read timeout
    /// in the way.
    pub fn new(fix: bool, proxy: bool, now: Instant) -> Idle {
        Idle {
            beat: if fix { HEARTBEAT } else { RARE_HEARTBEAT },
            cut: proxy.then_some(READ_TIMEOUT),
            last_write: now,
        }
    }

    /// The application wrote (an event or a heartbeat).
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// The next time something happens.
    pub fn deadline(&self) -> Instant {
        let beat = self.last_write + self.beat;
        match self.cut {
            Some(cut) => beat.min(self.last_write + cut),
            None => beat,
        }
    }

    /// What is due at `now`; a heartbeat counts as a write.
    pub fn due(&mut self, now: Instant) -> Due {
        if self.cut.is_some_and(|cut| now >= self.last_write + cut) {
            return Due::Cut;
        }
        if now >= self.last_write + self.beat {
            self.last_write = now;
            return Due::Heartbeat;
        }
        Due::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the clocks over `span` with events at `events` (offsets),
    /// firing each deadline when due: what happened, and when.
    fn run(fix: bool, events: &[u64], span: u64) -> Vec<(u64, Due)> {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut idle = Idle::new(fix, true, start);
        let mut seen = Vec::new();
        let mut events = events.iter().peekable();
        loop {
            let next = idle.deadline();
            if let Some(&&e) = events.peek()
                && at(e) <= next
            {
                idle.wrote(at(e));
                events.next();
                continue;
            }
            if next > at(span) {
                return seen;
            }
            let due = idle.due(next);
            let secs = (next - start).as_secs();
            if due == Due::Cut {
                seen.push((secs, due));
                return seen;
            }
            seen.push((secs, due));
        }
    }

    #[test]
    fn rare_heartbeats_let_the_proxy_cut_five_seconds_after_the_last_event() {
        assert_eq!(run(false, &[0, 3], 30), [(8, Due::Cut)]);
    }

    #[test]
    fn frequent_heartbeats_keep_the_stream_up() {
        let seen = run(true, &[0, 3], 30);
        assert!(seen.iter().all(|(_, d)| *d == Due::Heartbeat), "{seen:?}");
        // At 2 s, then every 2 s after the event at 3 s.
        assert_eq!(seen.first(), Some(&(2, Due::Heartbeat)));
        assert_eq!(seen.get(1), Some(&(5, Due::Heartbeat)));
        assert_eq!(seen.len(), 14);
    }

    #[test]
    fn without_a_proxy_nothing_is_cut() {
        let start = Instant::now();
        let mut idle = Idle::new(false, false, start);
        assert_eq!(idle.deadline(), start + RARE_HEARTBEAT);
        assert_eq!(idle.due(start + Duration::from_secs(6)), Due::Nothing);
        assert_eq!(idle.due(start + RARE_HEARTBEAT), Due::Heartbeat);
    }
}
