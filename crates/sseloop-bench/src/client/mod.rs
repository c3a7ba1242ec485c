//! The client loop: one mio poll over every subscriber stream, the
//! publishing connections and a timerfd, driven through the run's phases
//! (connect, then publish and drain, or idle). [`Bench::turn`] is one poll
//! and the dispatch of what it reported; the sockets' handlers live with
//! their kind ([`subscriber`], [`publisher`]), when the next event may go
//! in [`pacing`], the delivery accounting in [`tally`].

mod pacing;
mod publisher;
mod socket;
mod subscriber;
mod tally;
mod timer;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mio::{Events, Poll, Token};

use crate::clock::{now_ns, ns};
use crate::options::Options;
use publisher::{Publisher, publisher_index};
use subscriber::{Sub, SubState};
use tally::{Schedule, Tally, topic_of};
use timer::{TIMER, Timer};

pub(crate) use socket::raise_nofile_limit;

/// Subscribers read in one go before a publish that fell due meanwhile goes
/// out: at a few microseconds a read, well under a millisecond.
const SUBS_BETWEEN_PUBLISHES: usize = 64;

/// Where the run is: a stream that ends while connecting counts as a
/// failed connect, later as closed early.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Connect,
    Publish,
    Idle,
}

/// The client: one poll loop over every subscriber, the publisher and the
/// timer, and what it has counted so far.
pub(crate) struct Bench {
    opts: Options,
    poll: Poll,
    timer: Timer,
    events: Events,
    ready: Vec<Token>,
    /// One large read buffer shared by every socket.
    buf: Vec<u8>,
    subs: Vec<Sub>,
    /// Each topic's subscribe request, and the start of its publish
    /// request (up to the Content-Length value).
    sub_requests: Vec<Vec<u8>>,
    publish_prefixes: Vec<Vec<u8>>,
    phase: Phase,
    /// Subscribers between connect and response head.
    pending: usize,
    /// Streams open.
    pub(crate) live: usize,
    /// Streams open by topic.
    pub(crate) live_by_topic: Vec<u32>,
    pub(crate) connect_failures: usize,
    pub(crate) first_connect_error: Option<String>,
    pub(crate) streams_closed: usize,
    pub(crate) first_close_reason: Option<String>,
    pub(crate) tally: Tally,
    publishers: Vec<Publisher>,
    /// Unanswered publishes over every connection.
    in_flight: usize,
    /// Connections that got publishes to write in this turn.
    touched: Vec<usize>,
    /// Events written so far (sequence numbers 0..published).
    pub(crate) published: u64,
    /// Oldest event still outstanding for the closed-loop window.
    window_base: u64,
    /// Oldest event not yet delivered to every open stream.
    complete_base: u64,
    sent_ns: Vec<u64>,
    pub(crate) first_sent_ns: u64,
    /// At a rate: the most a publish went out after it was due.
    pub(crate) max_lag_ns: u64,
    pub(crate) publish_errors: u64,
    pub(crate) first_publish_error: Option<String>,
    pub(crate) abort: Option<String>,
}

impl Bench {
    pub(crate) fn new(opts: Options) -> io::Result<Self> {
        let encode = |text: &str| {
            let mut encoded = String::new();
            for b in text.bytes() {
                match b {
                    b'-' | b'.' | b'_' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                        encoded.push(b as char)
                    }
                    _ => write!(encoded, "%{b:02X}").expect("String"),
                }
            }
            encoded
        };
        let (version, host) = (if opts.http10 { 0 } else { 1 }, &opts.host);
        let (mut sub_requests, mut publish_prefixes) = (Vec::new(), Vec::new());
        for t in 0..opts.topics {
            let name = match opts.topics {
                1 => opts.topic.clone(),
                _ => format!("{}-{t}", opts.topic),
            };
            let topic = encode(&opts.mercure.published_topic(&name));
            let target = opts.mercure.subscribe_target(&name, encode);
            let sub_request = format!(
                "GET {target} HTTP/1.{version}\r\nHost: {host}\r\n\
                 Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            );
            let publish_prefix = format!(
                "POST /publish?topic={topic} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: text/plain\r\nContent-Length: "
            );
            sub_requests.push(sub_request.into_bytes());
            publish_prefixes.push(publish_prefix.into_bytes());
        }
        let events = opts.events as usize;
        let poll = Poll::new()?;
        Ok(Bench {
            timer: Timer::new(&poll)?,
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            buf: vec![0; 256 * 1024],
            subs: Vec::with_capacity(opts.subscribers),
            sub_requests,
            publish_prefixes,
            phase: Phase::Connect,
            pending: 0,
            live: 0,
            live_by_topic: vec![0; opts.topics],
            connect_failures: 0,
            first_connect_error: None,
            streams_closed: 0,
            first_close_reason: None,
            tally: Tally {
                topics: opts.topics as u64,
                delivered: vec![0; events],
                ..Tally::default()
            },
            publishers: (0..opts.publishers).map(|_| Publisher::default()).collect(),
            in_flight: 0,
            touched: Vec::new(),
            published: 0,
            window_base: 0,
            complete_base: 0,
            sent_ns: vec![0; events],
            first_sent_ns: 0,
            max_lag_ns: 0,
            publish_errors: 0,
            first_publish_error: None,
            abort: None,
            opts,
        })
    }

    /// One poll, waiting until `wake` at most, and the handling of every
    /// ready socket.
    fn turn(&mut self, wake: u64) -> io::Result<()> {
        let timeout = if self.opts.spin {
            0
        } else {
            // The timer wakes the loop on time; the poll timeout, rounded up
            // to the next millisecond, is only a backstop.
            self.timer.arm(wake)?;
            wake.saturating_sub(now_ns())
        };
        match self
            .poll
            .poll(&mut self.events, Some(Duration::from_nanos(timeout)))
        {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            r => r?,
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| e.token()));
        // Events are hints: each handler just tries its next step. The
        // publisher and the timer go first, and a long run of subscribers is
        // broken to publish what fell due, so that a client busy reading
        // deliveries does not hold its own schedule back.
        for &token in &ready {
            if let Some(i) = publisher_index(token, self.publishers.len()) {
                self.publisher_ready(i);
            } else if token == TIMER {
                self.timer.clear();
            }
        }
        let count = self.subs.len();
        let subs = ready.iter().filter(|t| t.0 < count);
        for (n, &token) in subs.enumerate() {
            if n % SUBS_BETWEEN_PUBLISHES == SUBS_BETWEEN_PUBLISHES - 1 {
                self.publish_if_due();
            }
            self.sub_ready(token.0);
        }
        self.ready = ready;
        Ok(())
    }

    /// Opens every stream, `--connect-batch` at a time; returns how long it took.
    pub(crate) fn connect_phase(&mut self) -> io::Result<Duration> {
        let start = now_ns();
        let timeout = ns(self.opts.timeout);
        let spread =
            self.opts.spread && matches!(self.opts.addr, SocketAddr::V4(a) if a.ip().is_loopback());
        // In opening order, so per-connection deadlines need no scan.
        let mut opening = VecDeque::new();
        loop {
            while self.pending < self.opts.connect_batch && self.subs.len() < self.opts.subscribers
            {
                let i = self.subs.len();
                self.open_sub(spread.then(|| Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8)));
                opening.push_back(i);
            }
            let now = now_ns();
            while let Some(&i) = opening.front() {
                let sub = &self.subs[i];
                let waiting = !matches!(sub.state, SubState::Streaming | SubState::Closed);
                if waiting && now < sub.opened_ns + timeout {
                    break;
                }
                if waiting {
                    self.end_sub(i, "no response head within --timeout".into());
                }
                opening.pop_front();
            }
            let Some(&oldest) = opening.front() else {
                return Ok(Duration::from_nanos(now_ns() - start));
            };
            self.turn(self.subs[oldest].opened_ns + timeout)?;
        }
    }

    /// Publishes every event and waits for the deliveries; returns the time
    /// from the first publish to the last answer.
    pub(crate) fn publish_phase(&mut self) -> io::Result<Duration> {
        (self.phase, self.tally.accept) = (Phase::Publish, true);
        let timeout = ns(self.opts.timeout);
        for i in 0..self.publishers.len() {
            self.connect_publisher(i);
        }
        // The schedule starts once the connections are up, so that a slow
        // connect does not turn into a burst of overdue publishes.
        let connect_limit = now_ns() + timeout;
        while !self.publishers.iter().all(|p| p.connected) && self.abort.is_none() {
            if now_ns() >= connect_limit {
                self.abort = Some("publisher: not connected within --timeout".into());
            }
            self.turn(connect_limit)?;
        }
        let start = now_ns();
        if self.opts.rate > 0.0 {
            self.tally.schedule = Some(Schedule {
                start,
                rate: self.opts.rate,
            });
        }
        let limit = start + ns(self.opts.max_time);
        loop {
            let now = now_ns();
            self.advance(now);
            if self.abort.is_some() || (self.published == self.opts.events && self.in_flight == 0) {
                break;
            }
            if now >= limit {
                self.abort = Some("publish phase reached --max-time".into());
                break;
            }
            if self.stalled(now) {
                self.abort = Some("server answered no publish within --timeout".into());
                break;
            }
            self.try_publish(start);
            let wake = self.next_wake(start, limit);
            self.turn(wake)?;
        }
        let first = if self.published > 0 {
            self.first_sent_ns
        } else {
            start
        };
        let publish_time = Duration::from_nanos(now_ns() - first);
        let drain_end = now_ns() + ns(self.opts.drain_timeout);
        loop {
            let now = now_ns();
            self.advance(now);
            if self.complete_base == self.published || now >= drain_end {
                break;
            }
            self.turn(drain_end)?;
        }
        self.tally.accept = false;
        Ok(publish_time)
    }

    /// Holds the streams open for `hold`; returns the longest silence any
    /// stream had and how many streams got at least one comment.
    pub(crate) fn idle_phase(&mut self, hold: Duration) -> io::Result<(Duration, usize)> {
        self.phase = Phase::Idle;
        let start = now_ns();
        for sub in &mut self.subs {
            (sub.last_rx_ns, sub.max_gap_ns, sub.comments) = (start, 0, 0);
        }
        (self.tally.comments, self.tally.other) = (0, 0);
        let end = start + ns(hold);
        while now_ns() < end {
            self.turn(end)?;
        }
        let open = self
            .subs
            .iter()
            .filter(|s| matches!(s.state, SubState::Streaming));
        let gap = open
            .clone()
            .map(|s| s.max_gap_ns.max(end.saturating_sub(s.last_rx_ns)))
            .max();
        let with_comment = open.filter(|s| s.comments > 0).count();
        Ok((Duration::from_nanos(gap.unwrap_or(0)), with_comment))
    }

    /// Events published and answered with success, by topic.
    pub(crate) fn published_by_topic(&self) -> Vec<u64> {
        let mut by_topic = vec![0; self.opts.topics];
        for seq in 0..self.published {
            if self.publish_failed(seq) {
                continue;
            }
            by_topic[topic_of(seq, self.opts.topics as u64).0 as usize] += 1;
        }
        by_topic
    }

    /// Deliveries owed: each event published with success to every stream
    /// of its topic open when publishing began.
    pub(crate) fn expected(&self, by_topic: &[u64], streams: &[u32]) -> u64 {
        let owed = by_topic.iter().zip(streams);
        owed.map(|(&events, &streams)| events * u64::from(streams))
            .sum()
    }

    /// Streams that did not get as many distinct deliveries as their topic
    /// had events (`by_topic`).
    pub(crate) fn streams_incomplete(&self, by_topic: &[u64]) -> usize {
        let short = |s: &&Sub| s.seqs.unique < by_topic[s.topic as usize];
        self.subs.iter().filter(short).count()
    }
}
