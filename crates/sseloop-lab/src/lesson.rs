//! The lessons and what a lab stream asks for: the lesson, cause or fix,
//! the pace of its events, and which run it belongs to. Pure: parsed from
//! the decoded query of `GET /lab/stream`, every value bounded, so that the
//! loop answers a bad one with 400 before anything reaches the lab.

use std::fmt;
use std::time::Duration;

/// One classic reason SSE events arrive late, made for real in the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lesson {
    /// The application writes into a 4 KiB buffer and never flushes: bytes
    /// leave in whole blocks (the response head with the first one).
    Unflushed,
    /// A reverse proxy buffers the response as nginx does by default
    /// (`proxy_buffering on`), unless the upstream says
    /// `X-Accel-Buffering: no`.
    Proxy,
    /// The body is deflated without a sync flush after each event: the
    /// compressor holds its input until a block is full.
    Compression,
    /// A proxy with a 5 s read timeout cuts a stream whose heartbeats come
    /// every 10 s; the browser reconnects with `Last-Event-ID`.
    Heartbeat,
    /// A publisher sends its POST as head and body in two writes without
    /// `TCP_NODELAY`: Nagle's algorithm holds the body until the server's
    /// delayed ACK.
    Nagle,
}

impl Lesson {
    /// Every lesson, in the order the page and the README list them.
    pub const ALL: [Lesson; 5] = [
        Lesson::Unflushed,
        Lesson::Proxy,
        Lesson::Compression,
        Lesson::Heartbeat,
        Lesson::Nagle,
    ];

    /// Its name in URLs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Lesson::Unflushed => "unflushed",
            Lesson::Proxy => "proxy",
            Lesson::Compression => "compression",
            Lesson::Heartbeat => "heartbeat",
            Lesson::Nagle => "nagle",
        }
    }

    /// The lesson named `name`.
    pub fn parse(name: &str) -> Option<Lesson> {
        Lesson::ALL.into_iter().find(|l| l.name() == name)
    }

    /// What the lesson shows, in a few words.
    pub fn title(self) -> &'static str {
        match self {
            Lesson::Unflushed => "writes not flushed",
            Lesson::Proxy => "proxy buffering",
            Lesson::Compression => "compression without flush",
            Lesson::Heartbeat => "heartbeats too rare",
            Lesson::Nagle => "Nagle + delayed ACK on the publish path",
        }
    }

    /// The pace that shows the lesson best: the issue's measurements were
    /// taken at these.
    pub fn pace(self) -> Pace {
        match self {
            Lesson::Heartbeat => Pace {
                interval: Duration::from_secs(6),
                size: 64,
                count: 4,
            },
            Lesson::Nagle => Pace {
                interval: Duration::from_millis(100),
                size: 64,
                count: 20,
            },
            _ => Pace {
                interval: Duration::from_millis(100),
                size: 1024,
                count: 40,
            },
        }
    }
}

impl fmt::Display for Lesson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often, how large and how many events a run publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Time between two events (the inverse of the rate).
    pub interval: Duration,
    /// Bytes of each event's data (at least what its bookkeeping takes).
    pub size: usize,
    /// Events published.
    pub count: u32,
}

/// Fastest rate a run may ask for, in thousandths of an event per second.
pub const MAX_RATE: u32 = 50_000;
/// Slowest rate, in thousandths of an event per second.
pub const MIN_RATE: u32 = 100;
/// Largest event data a run may ask for.
pub const MAX_SIZE: usize = 16 << 10;
/// Most events in one run.
pub const MAX_COUNT: u32 = 500;
/// Longest run (count / rate).
pub const MAX_RUN: Duration = Duration::from_secs(120);
/// Most connections watching one run at once (the page opens two: an
/// `EventSource` and a `fetch()` reader).
pub const MAX_VIEWERS: u8 = 3;
/// Longest run name.
pub const MAX_RUN_NAME: usize = 32;

/// What one run publishes and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Which lesson.
    pub lesson: Lesson,
    /// With the fix instead of the cause.
    pub fix: bool,
    /// Its events.
    pub pace: Pace,
    /// Viewers the run waits for before its first event (bounded by a
    /// start timeout), so that each sees every event from the first.
    pub viewers: u8,
}

/// A request for a lab stream: `GET /lab/stream?run=R&lesson=L…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// The run it watches: the first request naming a new run starts it,
    /// later ones (a second view, a reconnect) join it.
    pub run: String,
    /// What the run does, when this request starts it.
    pub spec: Spec,
    /// The lab's own proxy stage (the nginx-like relay, the read timeout)
    /// is applied; `relay=0` leaves it out, for a real proxy in front.
    pub relay: bool,
    /// The `Last-Event-ID` the client came back with.
    pub last_event_id: Option<String>,
}

impl StreamRequest {
    /// Reads a lab stream request from its decoded query pairs and the
    /// `Last-Event-ID` header; the error says what is wrong.
    // Not inlined into the server's code: compiled here, for size.
    #[inline(never)]
    pub fn from_query(
        pairs: &[(String, String)],
        last_event_id: Option<String>,
    ) -> Result<StreamRequest, &'static str> {
        let mut run = None;
        let mut lesson = None;
        let (mut fix, mut relay) = (false, true);
        let (mut rate, mut size, mut count, mut viewers) = (None, None, None, 1);
        for (key, value) in pairs {
            let value = value.as_str();
            match key.as_str() {
                "run" => run = Some(value),
                "lesson" => lesson = Some(Lesson::parse(value).ok_or(BAD_LESSON)?),
                "fix" => fix = flag(value).ok_or("fix takes 0 or 1")?,
                "relay" => relay = flag(value).ok_or("relay takes 0 or 1")?,
                "rate" => rate = Some(parse_rate(value).ok_or(BAD_RATE)?),
                "size" => size = Some(value.parse::<usize>().map_err(|_| BAD_SIZE)?),
                "count" => count = Some(value.parse::<u32>().map_err(|_| BAD_COUNT)?),
                "viewers" => viewers = value.parse::<u8>().map_err(|_| BAD_VIEWERS)?,
                _ => {}
            }
        }
        let run = run.ok_or("a lab stream needs run=NAME")?;
        if run.is_empty()
            || run.len() > MAX_RUN_NAME
            || !run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("run takes 1 to 32 letters, digits or dashes");
        }
        let lesson = lesson.ok_or(BAD_LESSON)?;
        let mut pace = lesson.pace();
        if let Some(rate) = rate {
            pace.interval = Duration::from_micros(1_000_000_000 / u64::from(rate));
        }
        if let Some(size) = size {
            if size > MAX_SIZE {
                return Err(BAD_SIZE);
            }
            pace.size = size;
        }
        if let Some(count) = count {
            if !(1..=MAX_COUNT).contains(&count) {
                return Err(BAD_COUNT);
            }
            pace.count = count;
        }
        if pace.interval * pace.count > MAX_RUN {
            return Err("a run lasts at most 120 s: fewer events, or a higher rate");
        }
        if !(1..=MAX_VIEWERS).contains(&viewers) {
            return Err(BAD_VIEWERS);
        }
        Ok(StreamRequest {
            run: run.to_owned(),
            spec: Spec {
                lesson,
                fix,
                pace,
                viewers,
            },
            relay,
            last_event_id,
        })
    }
}

const BAD_LESSON: &str = "lesson takes unflushed, proxy, compression, heartbeat or nagle";
const BAD_RATE: &str = "rate takes 0.1 to 50 events per second";
const BAD_SIZE: &str = "size takes 0 to 16384 bytes";
const BAD_COUNT: &str = "count takes 1 to 500 events";
const BAD_VIEWERS: &str = "viewers takes 1 to 3";

fn flag(value: &str) -> Option<bool> {
    match value {
        "0" | "false" => Some(false),
        "1" | "true" => Some(true),
        _ => None,
    }
}

/// A rate in events per second, a plain decimal number (`10`, `2.5`,
/// `0.125`: no sign, no exponent, at most three decimals) from 0.1 to 50,
/// in thousandths of an event per second.
// Not inlined into the server's code: compiled here, for size.
#[inline(never)]
pub fn parse_rate(text: &str) -> Option<u32> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 3
        || fraction.len() > 3
        || !digits(whole)
        || !digits(fraction)
    {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u32>().ok()?;
    let rate = whole.parse::<u32>().ok()? * 1000 + thousandths;
    (MIN_RATE..=MAX_RATE).contains(&rate).then_some(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(query: &[(&str, &str)]) -> Result<StreamRequest, &'static str> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StreamRequest::from_query(&pairs, None)
    }

    #[test]
    fn a_lesson_takes_its_own_pace_unless_told() {
        let r = ask(&[("run", "a1"), ("lesson", "proxy")]).unwrap();
        assert_eq!(r.spec.lesson, Lesson::Proxy);
        assert_eq!(r.spec.pace, Lesson::Proxy.pace());
        assert!(!r.spec.fix && r.relay && r.spec.viewers == 1);
        let r = ask(&[
            ("run", "a-2"),
            ("lesson", "nagle"),
            ("fix", "1"),
            ("rate", "2.5"),
            ("size", "50"),
            ("count", "7"),
            ("viewers", "2"),
            ("relay", "0"),
        ])
        .unwrap();
        assert!(r.spec.fix && !r.relay);
        assert_eq!(r.spec.pace.interval, Duration::from_millis(400));
        assert_eq!((r.spec.pace.size, r.spec.pace.count), (50, 7));
        assert_eq!(r.spec.viewers, 2);
    }

    #[test]
    fn absurd_values_are_refused_with_what_is_wrong() {
        let base = [("run", "r"), ("lesson", "unflushed")];
        let with = |extra: (&'static str, &'static str)| {
            let mut q = base.to_vec();
            q.push(extra);
            ask(&q)
        };
        assert_eq!(with(("rate", "51")), Err(BAD_RATE));
        assert_eq!(with(("rate", "0.05")), Err(BAD_RATE));
        assert_eq!(parse_rate("0.125"), Some(125));
        assert_eq!(parse_rate("50"), Some(50_000));
        assert_eq!(parse_rate("2.5"), Some(2_500));
        for bad in [
            "inf", "NaN", "1e9", "-1", "", "1.2.3", ".5", "1.2345", "0099", "+1",
        ] {
            assert_eq!(with(("rate", bad)), Err(BAD_RATE), "{bad}");
        }
        assert_eq!(with(("size", "16385")), Err(BAD_SIZE));
        assert_eq!(with(("size", "99999999999999999999999")), Err(BAD_SIZE));
        assert_eq!(with(("count", "0")), Err(BAD_COUNT));
        assert_eq!(with(("count", "501")), Err(BAD_COUNT));
        assert_eq!(with(("viewers", "4")), Err(BAD_VIEWERS));
        assert_eq!(with(("fix", "yes")), Err("fix takes 0 or 1"));
        let long = ask(&[
            ("run", "r"),
            ("lesson", "proxy"),
            ("count", "500"),
            ("rate", "1"),
        ]);
        assert!(long.unwrap_err().contains("120 s"));
        assert_eq!(
            ask(&[("lesson", "proxy")]).unwrap_err(),
            "a lab stream needs run=NAME"
        );
        assert_eq!(ask(&[("run", "r")]), Err(BAD_LESSON));
        assert_eq!(ask(&[("run", "r"), ("lesson", "gzip")]), Err(BAD_LESSON));
        for run in ["", "a b", "a/b", &"x".repeat(33)] {
            assert!(
                ask(&[("run", run), ("lesson", "proxy")]).is_err(),
                "{run:?}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for lesson in Lesson::ALL {
            assert_eq!(Lesson::parse(lesson.name()), Some(lesson));
            let pace = lesson.pace();
            assert!(pace.interval * pace.count <= MAX_RUN);
        }
    }
}
