//! One run of a lesson: its schedule (wait for its viewers, publish its
//! events at its pace, then its end) and what its events carry. Pure: the
//! lab's thread asks what is due and does the publishing.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::lesson::Spec;

/// How long a run waits for the viewers it asked for before it begins
/// anyway.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ended run is remembered, so that a browser's reconnect is
/// told it is over (`204`) instead of starting it again.
pub const END_LINGER: Duration = Duration::from_secs(10);
/// Slack past a run's planned length before it is ended whatever it is
/// doing (a publisher that never gets its answers).
const OVERRUN: Duration = Duration::from_secs(30);
/// The type of the event that ends a run: the lab closes its streams
/// after it, and pages and the terminal client stop.
pub const END_TYPE: &str = "lab-end";

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its viewers to be subscribed, until then at most.
    Waiting(Instant),
    /// Publishing: event `next` (from 1) is due at the instant.
    Publishing(u32, Instant),
    /// Every event is out; its end is due one interval after the last.
    Ending(Instant),
    /// Over; forgotten at the instant.
    Ended(Instant),
}

/// What the lab's thread should do for a run now.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing before the deadline.
    Wait,
    /// Publish event `n`.
    Publish(u32),
    /// Publish the end event.
    End,
    /// Forget the run, closing what still watches it.
    Forget,
}

/// One run's schedule.
#[derive(Debug)]
pub struct Schedule {
    spec: Spec,
    phase: Phase,
    /// When the run is ended whatever it is doing.
    give_up: Instant,
}

impl Schedule {
    /// A run of `spec` created at `now`.
    pub fn new(spec: Spec, now: Instant) -> Schedule {
        let planned = spec.pace.interval * spec.pace.count;
        Schedule {
            spec,
            phase: Phase::Waiting(now + START_TIMEOUT),
            give_up: now + START_TIMEOUT + planned + OVERRUN,
        }
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// `ready` of its viewers are subscribed: it begins once all it asked
    /// for are.
    pub fn viewers_ready(&mut self, ready: usize, now: Instant) {
        if matches!(self.phase, Phase::Waiting(_)) && ready >= usize::from(self.spec.viewers) {
            self.phase = Phase::Publishing(1, now);
        }
    }

    /// When it next needs the thread.
    pub fn deadline(&self) -> Instant {
        let at = match self.phase {
            Phase::Waiting(at)
            | Phase::Publishing(_, at)
            | Phase::Ending(at)
            | Phase::Ended(at) => at,
        };
        at.min(self.give_up)
    }

    /// When it is ended whatever it is doing.
    pub fn give_up(&self) -> Instant {
        self.give_up
    }

    /// What is due at `now`.
    pub fn due(&mut self, now: Instant) -> Step {
        if now >= self.give_up && !matches!(self.phase, Phase::Ended(_)) {
            self.phase = Phase::Ended(now);
        }
        match self.phase {
            Phase::Waiting(at) if now >= at => {
                self.phase = Phase::Publishing(1, now);
                Step::Publish(1)
            }
            Phase::Publishing(n, at) if now >= at => Step::Publish(n),
            Phase::Ending(at) if now >= at => Step::End,
            Phase::Ended(at) if now >= at => Step::Forget,
            _ => Step::Wait,
        }
    }

    /// Event `n` was published: the next (or the end) is due one interval
    /// after this one was due, or at once if that has passed (a late run
    /// slips; it does not catch up in a burst).
    pub fn published(&mut self, n: u32, now: Instant) {
        if let Phase::Publishing(due, at) = self.phase
            && due == n
        {
            let next = (at + self.spec.pace.interval).max(now);
            self.phase = if n >= self.spec.pace.count {
                Phase::Ending(next)
            } else {
                Phase::Publishing(n + 1, next)
            };
        }
    }

    /// The end was published (or the run cannot go on).
    pub fn ended(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Ended(_)) {
            self.phase = Phase::Ended(now + END_LINGER);
        }
    }
}

/// The data of event `n`: its number, the publish time `t` in
/// milliseconds since the Unix epoch (what a browser's clock reads), and
/// pseudo-random padding to `size` bytes, random as real payloads are so
/// that compression is no better than on them.
pub fn event_data(n: u32, t: f64, size: usize, seed: &mut u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let head = format!("{{\"n\":{n},\"t\":{},\"pad\":\"", Fixed(t, 3));
    let mut data = head;
    let pad = size.saturating_sub(data.len() + 2);
    data.reserve(pad + 2);
    for _ in 0..pad {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        data.push(ALPHABET[(*seed >> 58) as usize] as char);
    }
    data.push_str("\"}");
    data
}

/// Milliseconds since the Unix epoch, with fractions.
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `.0` written with `.1` digits after the point, as `{:.N}` writes a
/// float, padded as asked, without the float formatting code of the
/// standard library (12 KB of the binary otherwise; the lab's numbers
/// are all it would serve). Rounds half away from zero.
#[derive(Clone, Copy, Debug)]
pub struct Fixed(pub f64, pub u32);

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fixed(value, digits) = *self;
        if !value.is_finite() {
            let text = if value.is_nan() {
                "NaN"
            } else if value > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            return f.pad(text);
        }
        let scale = 10u64.pow(digits);
        let scaled = (value.abs() * scale as f64).round() as u64;
        let sign = if value.is_sign_negative() { "-" } else { "" };
        let mut text = format!("{sign}{}", scaled / scale);
        if digits > 0 {
            text.push('.');
            let fraction = (scaled % scale).to_string();
            text.extend(std::iter::repeat_n('0', digits as usize - fraction.len()));
            text.push_str(&fraction);
        }
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::lesson::{Lesson, Pace};
    use super::*;

    fn spec(count: u32, viewers: u8) -> Spec {
        Spec {
            lesson: Lesson::Proxy,
            fix: false,
            pace: Pace {
                interval: Duration::from_millis(100),
                size: 100,
                count,
            },
            viewers,
        }
    }

    #[test]
    fn waits_for_its_viewers_then_publishes_at_its_pace_then_ends() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = Schedule::new(spec(3, 2), t0);
        s.viewers_ready(1, ms(10));
        assert_eq!(s.due(ms(10)), Step::Wait);
        assert_eq!(s.deadline(), t0 + START_TIMEOUT);
        s.viewers_ready(2, ms(20));
        assert_eq!(s.due(ms(20)), Step::Publish(1));
        s.published(1, ms(20));
        assert_eq!(s.deadline(), ms(120));
        assert_eq!(s.due(ms(119)), Step::Wait);
        assert_eq!(s.due(ms(120)), Step::Publish(2));
        // Published late (a publisher waiting for its answer): the next is
        // due at once, not in a burst to catch up.
        s.published(2, ms(300));
        assert_eq!(s.due(ms(300)), Step::Publish(3));
        s.published(3, ms(301));
        assert_eq!(s.due(ms(301)), Step::Wait);
        assert_eq!(s.due(ms(400)), Step::End);
        s.ended(ms(302));
        assert_eq!(s.due(ms(303)), Step::Wait);
        assert_eq!(s.due(ms(302) + END_LINGER), Step::Forget);
    }

    #[test]
    fn begins_without_its_viewers_after_the_start_timeout_and_gives_up_in_the_end() {
        let t0 = Instant::now();
        let mut s = Schedule::new(spec(2, 3), t0);
        assert_eq!(s.due(t0 + START_TIMEOUT), Step::Publish(1));
        let give_up = s.give_up;
        assert!(give_up > t0 + START_TIMEOUT + Duration::from_millis(200));
        assert_eq!(s.due(give_up), Step::Forget);
        assert!(matches!(s.phase(), Phase::Ended(_)));
    }

    #[test]
    fn fixed_writes_as_the_float_format_does() {
        for (value, digits) in [
            (0.0, 1),
            (0.25, 1),
            (0.5, 3),
            (-0.04, 1),
            (-2.5, 1),
            (1234.5678, 1),
            (1733490000123.4567, 3),
            (7.0, 0),
            (f64::NAN, 1),
            (f64::INFINITY, 1),
            (-0.0, 2),
        ] {
            let ours = format!("{:>9}|{:<9}", Fixed(value, digits), Fixed(value, digits));
            let std = format!(
                "{value:>9.digits$}|{value:<9.digits$}",
                digits = digits as usize
            );
            // A tie the standard library rounds to even: 0.25 -> 0.2.
            if value != 0.25 {
                assert_eq!(ours, std, "{value}");
            }
        }
        assert_eq!(Fixed(0.25, 1).to_string(), "0.3");
    }

    #[test]
    fn event_data_has_its_size_and_its_fields() {
        let mut seed = 1;
        let data = event_data(7, 1733490000123.4567, 1024, &mut seed);
        assert_eq!(data.len(), 1024);
        let json: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(json["n"], 7);
        assert_eq!(json["t"].as_f64(), Some(1733490000123.457));
        // Too small for its bookkeeping: no padding, still JSON.
        let small = event_data(7, 1.0, 8, &mut seed);
        assert!(serde_json::from_str::<serde_json::Value>(&small).is_ok());
    }
}
