//! One connection: its socket, its write queue, and the state it is in,
//! each state's data in its variant.
//!
//! ```text
//!      accept
//!        │
//!        ▼
//!    Requests ◄──┐  head (→ body) → answer, kept alive; a publish may wait
//!     │   │ └────┘  for the bus's answer (Waiting::Publish) before the next
//!     │   │ GET /events         request is read (the reader: request.rs)
//!     │   ▼
//!     │  Stream ── events, heartbeats, replay
//!     │   │
//!     ▼   ▼ error, Connection: close, slow-subscriber cut-off, shutdown
//!    Closing ──(queue written, then the peer's EOF or the linger timeout)──► closed
//! ```
//!
//! Transitions are methods that return what the loop must do next ([`Next`],
//! [`Flushed`], [`Delivered`]); the connection never sees the poll, the
//! slab, the topic index or the bus. The loop decides what each request
//! does (through `app`) and removes connections.

mod queue;

use std::mem;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, trace};
use mio::net::TcpStream;

use crate::auth::{Access, Grant, Selectors};
use crate::bus::{History, ResetReason, Retained, Ticket};
use crate::config::{Config, Framing, LINGER_DISCARD_LIMIT, LINGER_TIMEOUT, OVERFLOW_TIMEOUT};
use crate::http::{self, Policy};
use crate::net::{self, FlushOutcome, ReadOutcome};
use crate::request::{RequestReader, Step};
use crate::sse::{self, Frame};
use crate::timers::HeartbeatGrid;
use crate::topics::Subscription;

pub use queue::WriteQueue;

/// A connection whose unsent answers reach this stops taking requests until
/// they are written: a client that pipelines without reading cannot grow
/// memory. Checked after every answer, not once per read.
pub const PAUSE_READING_AT: usize = 64 << 10;
/// Bytes of each write shown at trace level.
const TRACE_BYTES: usize = 512;

/// What the loop should do after a transition.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing more for now.
    Idle,
    /// Bytes were queued: list the connection for a flush, with the
    /// answers to requests or with the streams.
    Flush(Lane),
    /// Remove the connection.
    Close(&'static str),
}

/// Which flush list queued bytes go on: answers are written before the
/// rest of a wide fan-out, so a requester does not wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Bytes that answer the connection's own request.
    Answer,
    /// What a fan-out, a heartbeat or a stream's end queued.
    Stream,
}

/// What a flush did, and what the loop should do next.
#[must_use]
#[derive(Debug)]
pub struct Flushed {
    /// Bytes the kernel took.
    pub written: usize,
    /// How long the queue had waited for writable readiness, when it had
    /// and is now written or failed (for the write-delay histogram).
    pub waited: Option<Duration>,
    /// What comes next.
    pub then: AfterFlush,
}

/// What comes after a flush.
#[derive(Debug)]
pub enum AfterFlush {
    /// The kernel refused the rest, or nothing is left to do.
    Done,
    /// Written, and a replay is in progress: top it up and flush again.
    Replay,
    /// Written, and input was left unread while answers were pending (or
    /// until our FIN went out): serve what was kept and read on.
    ResumeInput,
    /// Remove the connection.
    Close(&'static str),
    /// The connection failed; the error is for the log.
    Failed(std::io::Error),
}

/// What a live delivery did to a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Not for it now (already sent, resumed past, or still replaying).
    Skipped,
    /// Queued; `list` says whether to list it for a flush.
    Queued {
        /// Not yet listed and not waiting for writable readiness.
        list: bool,
    },
    /// Queued, and now over the queue limit: cut it off.
    OverLimit,
}

/// What a deadline meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    /// The request did not arrive whole in time: answer 408.
    RequestTimeout,
    /// Remove the connection.
    Close(&'static str),
    /// End the stream cleanly (its token expired).
    EndStream(&'static str),
    /// A heartbeat was queued.
    Heartbeat(Next),
    /// Not due after all; the deadline moved.
    Nothing,
    /// Not idle: its unsent bytes were listed for a flush if they were
    /// not already.
    Flush(Next),
}

/// How far a replay got in one top-up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Events queued.
    pub events: u64,
    /// The budget ran out: look again in a later pass.
    pub more: bool,
}

/// What is left of a connection the loop removes.
#[derive(Debug)]
pub struct Remains {
    /// To deregister.
    pub socket: TcpStream,
    /// How long its queue had waited for writable readiness, if it had.
    pub waited: Option<Duration>,
    /// Its place in the topic index, for a subscriber.
    pub subscription: Option<Subscription>,
    /// It was accepted past capacity.
    pub over_capacity: bool,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    socket: TcpStream,
    queue: WriteQueue,
    state: State,
    /// Last time bytes were written to it.
    last_write: Instant,
    /// Since when the kernel has refused bytes that are still queued: while
    /// set, writing waits for writable readiness.
    blocked_since: Option<Instant>,
    /// On one of the loop's flush lists.
    listed: bool,
    /// The peer sent its FIN: nothing more will be read.
    peer_eof: bool,
    /// Accepted past `max_connections`: its request is answered with "come
    /// back later" and it closes.
    over_capacity: bool,
    /// The last fan-out stamp that reached it, so one event goes once to a
    /// subscriber of several of its topics.
    stamp: u64,
}

#[derive(Debug)]
enum State {
    /// Reading and answering requests.
    Requests(Requests),
    /// Streaming events to a subscriber.
    Stream(Stream),
    /// Writing its last bytes; input is read and dropped (up to a limit)
    /// until the peer closes or `until`.
    Closing {
        until: Instant,
        write_shut: bool,
        discarded: usize,
    },
}

#[derive(Debug)]
struct Requests {
    reader: RequestReader,
    /// When the request in progress began (or the connection was accepted).
    began: Option<Instant>,
    /// When the request in progress must be whole, or when an idle
    /// keep-alive connection closes.
    deadline: Instant,
    /// Requests answered so far.
    served: u64,
    waiting: Waiting,
}

/// Why a connection takes no request for now.
#[derive(Debug, PartialEq, Eq)]
enum Waiting {
    /// It takes requests.
    No,
    /// Its unsent answers reached `PAUSE_READING_AT`.
    Answers,
    /// Its publish waits for the bus; answers go out in order, so the next
    /// request waits too.
    Publish { ticket: Ticket, keep_alive: bool },
}

#[derive(Debug)]
struct Stream {
    framing: Framing,
    subscription: Subscription,
    /// While catching up from the history: the last sequence number looked
    /// at. Live events wait for the cursor.
    replay: Option<u64>,
    /// Live events up to this sequence number are not sent: the resume
    /// point, when it named an event on its way to this loop.
    skip_through: u64,
    /// When to check whether a heartbeat is due.
    next_check: Option<Instant>,
    /// With `--jwt-key`, for a subscriber that came with a token: the
    /// private topics it may receive, and when its stream ends.
    clearance: Option<Box<Clearance>>,
}

/// What a subscriber's token allows it to receive, and until when.
#[derive(Debug)]
pub struct Clearance {
    /// Its `subscribe` selectors.
    allowed: Selectors,
    /// When the token stops being accepted: the stream ends then, and the
    /// client comes back with a fresh one.
    until: Option<Instant>,
}

impl Clearance {
    /// The clearance of `grant` for a stream starting at `now`; an expiry
    /// too far off for the clock to hold is none.
    pub fn new(grant: Grant, now: Instant) -> Clearance {
        let until = grant.valid_until().and_then(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            now.checked_add(left)
        });
        Clearance {
            allowed: grant.subscribe,
            until,
        }
    }
}

impl Stream {
    /// Whether it may receive an event with these private topics.
    fn cleared_for(&self, private: &[&str]) -> bool {
        self.clearance
            .as_ref()
            .is_some_and(|c| private.iter().all(|t| c.allowed.covers(t)))
    }

    fn token_until(&self) -> Option<Instant> {
        self.clearance.as_ref().and_then(|c| c.until)
    }
}

impl Conn {
    /// A connection accepted at `now`; one accepted past capacity gets a
    /// shorter time to send its request.
    pub fn new(socket: TcpStream, now: Instant, over_capacity: bool, config: &Config) -> Conn {
        let first_request = if over_capacity {
            OVERFLOW_TIMEOUT.min(config.header_timeout)
        } else {
            config.header_timeout
        };
        Conn {
            socket,
            queue: WriteQueue::default(),
            state: State::Requests(Requests {
                reader: RequestReader::default(),
                began: Some(now),
                deadline: now + first_request,
                served: 0,
                waiting: Waiting::No,
            }),
            last_write: now,
            blocked_since: None,
            listed: false,
            peer_eof: false,
            over_capacity,
            stamp: 0,
        }
    }

    /// Accepted past capacity.
    pub fn over_capacity(&self) -> bool {
        self.over_capacity
    }

    /// Unsent bytes.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A stream (it gets events).
    pub fn is_stream(&self) -> bool {
        matches!(self.state, State::Stream(_))
    }

    /// The deadline the loop should keep for it.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            // The bus answers (or says it cannot); no clock of ours runs.
            State::Requests(r) if matches!(r.waiting, Waiting::Publish { .. }) => None,
            State::Requests(r) => Some(r.deadline),
            State::Stream(s) => match (s.next_check, s.token_until()) {
                (Some(check), Some(until)) => Some(check.min(until)),
                (check, until) => check.or(until),
            },
            State::Closing { until, .. } => Some(*until),
        }
    }

    /// Fixes the kernel send buffer of a stream (see `net::limit_send_buffer`).
    pub fn limit_send_buffer(&self, bytes: usize) -> std::io::Result<()> {
        net::limit_send_buffer(&self.socket, bytes)
    }

    /// Whether the loop should read its socket. Not a stream's: what its
    /// client sends means nothing, and leaving it unread lets the kernel
    /// push back on a client that floods (a close or reset still shows, in
    /// the readiness, see [`Conn::on_hangup`]).
    pub fn wants_input(&self) -> bool {
        !self.peer_eof
            && match &self.state {
                State::Requests(r) => r.waiting == Waiting::No,
                State::Stream(_) => false,
                State::Closing { .. } => true,
            }
    }

    /// Readiness reported that the peer closed or reset a connection the
    /// loop does not read (a stream). A reset ends it. A FIN alone may be a
    /// half-close (a client that sent its request and shut its writing
    /// side, as `nc -N` does, still reads): the stream goes on, and a
    /// heartbeat goes out at once, so that a peer that closed for good
    /// answers it with a reset and is gone within a round trip, not at the
    /// next heartbeat.
    pub fn on_hangup(&mut self, reset: bool, fin: bool) -> Next {
        let State::Stream(s) = &self.state else {
            return Next::Idle;
        };
        if reset {
            return Next::Close("peer gone");
        }
        if fin && !self.peer_eof {
            self.peer_eof = true;
            if self.queue.is_empty() {
                self.queue.push_static(sse::heartbeat(s.framing));
                return self.list(Lane::Stream);
            }
        }
        Next::Idle
    }

    /// `n` bytes arrived that are no request: a closing connection's, read
    /// so that its last answer is not lost to a reset, up to a limit.
    pub fn discard(&mut self, n: usize) -> Next {
        match &mut self.state {
            State::Closing { discarded, .. } => {
                *discarded += n;
                if *discarded > LINGER_DISCARD_LIMIT {
                    Next::Close("sent too much while closing")
                } else {
                    Next::Idle
                }
            }
            _ => Next::Idle,
        }
    }

    /// Reads once into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        net::read(&mut self.socket, buf)
    }

    /// Input arrived (or none, to serve what was kept while paused): when
    /// the connection reads requests, the bytes to serve from, the kept
    /// ones followed by `input`; empty when nothing was kept, so that
    /// `input` is parsed in place.
    pub fn begin_input(&mut self, input: &[u8], now: Instant) -> Option<Vec<u8>> {
        let State::Requests(r) = &mut self.state else {
            // A subscriber or a closing connection has nothing more to say.
            return None;
        };
        if input.is_empty() && r.reader.pending.is_empty() {
            return None;
        }
        r.began.get_or_insert(now);
        let mut kept = mem::take(&mut r.reader.pending);
        if !kept.is_empty() {
            kept.extend_from_slice(input);
        }
        Some(kept)
    }

    /// The next request at the start of `input`, when the connection takes
    /// one now: the bytes it used and what they made.
    pub fn next_request(&mut self, input: &[u8], policy: &Policy) -> Option<(usize, Step)> {
        match &mut self.state {
            State::Requests(r) if r.waiting == Waiting::No => {
                Some(r.reader.next_request(input, policy))
            }
            _ => None,
        }
    }

    /// Ends serving input: `rest` is kept for later while the connection
    /// reads requests (an incomplete one, or those after a pause); after a
    /// stream began or an error answer it is dropped.
    pub fn end_input(&mut self, rest: &[u8], now: Instant, config: &Config) -> Next {
        if let State::Requests(r) = &mut self.state {
            r.reader.pending.extend_from_slice(rest);
            r.rearm(now, config);
        }
        Next::Idle
    }

    /// `100 Continue` for a client that waits for it before its body.
    pub fn push_continue(&mut self) -> Next {
        self.queue.push_static(http::CONTINUE);
        self.list(Lane::Answer)
    }

    /// Queues a whole answer; the connection stays for the next request
    /// only when `keep_alive`.
    pub fn answer(
        &mut self,
        bytes: Vec<u8>,
        keep_alive: bool,
        now: Instant,
        config: &Config,
    ) -> Next {
        self.queue.push_owned(bytes);
        if let State::Requests(r) = &mut self.state {
            r.served += 1;
            r.began = None;
            r.rearm(now, config);
            r.waiting = if self.queue.len() >= PAUSE_READING_AT {
                Waiting::Answers
            } else {
                Waiting::No
            };
        }
        if !keep_alive || self.peer_eof {
            self.begin_closing(now);
        }
        self.list(Lane::Answer)
    }

    /// Queues an error answer (or a "come back later" stream); the
    /// connection closes after it.
    pub fn reject(&mut self, bytes: Vec<u8>, now: Instant) -> Next {
        self.queue.push_owned(bytes);
        self.begin_closing(now);
        self.list(Lane::Answer)
    }

    /// Its publish waits for the bus's answer to `ticket`.
    pub fn await_publish(&mut self, ticket: Ticket, keep_alive: bool) {
        if let State::Requests(r) = &mut self.state {
            r.waiting = Waiting::Publish { ticket, keep_alive };
        }
    }

    /// The publish answered by `ticket`, when this connection waits for it:
    /// whether to keep the connection alive after the answer.
    pub fn take_publish(&mut self, ticket: Ticket) -> Option<bool> {
        match &mut self.state {
            State::Requests(r) => match r.waiting {
                Waiting::Publish {
                    ticket: t,
                    keep_alive,
                } if t == ticket => {
                    r.waiting = Waiting::No;
                    Some(keep_alive)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Becomes a stream: the head (with the first body bytes), then the
    /// `reset` event when its resume point could not be placed, then a
    /// replay from `resume_after` if one was placed. Live events flow once
    /// the replay has caught up. A `clearance` lets private events through
    /// and ends the stream when its token expires.
    #[allow(clippy::too_many_arguments)] // each is what the stream starts with
    pub fn start_stream(
        &mut self,
        head: Vec<u8>,
        framing: Framing,
        subscription: Subscription,
        clearance: Option<Clearance>,
        resume: Result<Option<u64>, Arc<Frame>>,
        now: Instant,
        heartbeat: &HeartbeatGrid,
    ) -> Next {
        self.queue.push_owned(head);
        let (replay, skip_through) = match resume {
            Ok(after) => (after, after.unwrap_or(0)),
            Err(reset) => {
                self.queue.push_frame(&reset, framing);
                (None, 0)
            }
        };
        self.last_write = now;
        self.state = State::Stream(Stream {
            framing,
            subscription,
            replay,
            skip_through,
            next_check: heartbeat.next_check(now),
            clearance: clearance.map(Box::new),
        });
        // The head is an answer: written with the answers, not behind a
        // fan-out in progress.
        self.list(Lane::Answer)
    }

    /// A live event for this subscriber, numbered `seq` in the hub's order
    /// and `stamp` in the loop's fan-outs; `private` are the event's private
    /// topics (none without `--jwt-key`), each of which it must be cleared
    /// for.
    pub fn deliver(
        &mut self,
        frame: &Arc<Frame>,
        seq: u64,
        stamp: u64,
        limit: usize,
        private: &[&str],
    ) -> Delivered {
        let State::Stream(s) = &self.state else {
            return Delivered::Skipped;
        };
        if self.stamp == stamp || s.replay.is_some() || seq <= s.skip_through {
            return Delivered::Skipped;
        }
        self.stamp = stamp;
        if !private.is_empty() && !s.cleared_for(private) {
            return Delivered::Skipped;
        }
        self.queue.push_frame(frame, s.framing);
        if self.queue.len() > limit {
            return Delivered::OverLimit;
        }
        Delivered::Queued {
            list: self.take_flush_turn(),
        }
    }

    /// While it replays: queues kept events after its cursor until its
    /// queue holds `window` bytes, the history is exhausted, or `budget`
    /// runs out (see `History::next_retained`); with `access`, only events
    /// whose private topics it is cleared for. Once caught up it is live.
    pub fn replay(
        &mut self,
        history: &History,
        window: usize,
        budget: &mut usize,
        access: Option<&Access>,
    ) -> Replayed {
        let mut done = Replayed::default();
        let State::Stream(s) = &mut self.state else {
            return done;
        };
        let Some(mut after) = s.replay else {
            return done;
        };
        let allowed = s.clearance.as_deref().map(|c| &c.allowed);
        let may_receive =
            |topics: &[Box<str>]| access.is_none_or(|a| a.may_receive(allowed, topics));
        while self.queue.len() < window {
            match history.next_retained(after, &s.subscription, may_receive, budget) {
                Retained::Event(seq, frame) => {
                    self.queue.push_frame(frame, s.framing);
                    done.events += 1;
                    after = seq;
                }
                Retained::Scanned(upto) => {
                    s.replay = Some(upto);
                    done.more = true;
                    return done;
                }
                Retained::CaughtUp => {
                    s.replay = None;
                    s.skip_through = s.skip_through.max(after);
                    return done;
                }
                Retained::Lost => {
                    // It fell behind the history while catching up: say so,
                    // from the newest id; what follows comes live.
                    let reset = history.reset_frame(ResetReason::Stale);
                    self.queue.push_frame(&reset, s.framing);
                    s.replay = None;
                    s.skip_through = history.newest();
                    return done;
                }
            }
        }
        s.replay = Some(after);
        done
    }

    /// Still catching up from the history.
    pub fn replaying(&self) -> bool {
        matches!(&self.state, State::Stream(s) if s.replay.is_some())
    }

    /// Cut off for passing the queue limit: what it has not begun to take
    /// is dropped (it resumes with `Last-Event-ID`) and its stream ends.
    pub fn cut_off(&mut self, now: Instant) -> (Option<Subscription>, Next) {
        self.queue.keep_started();
        self.end_stream(now)
    }

    /// Ends a stream cleanly after what is queued: the last chunk when
    /// chunked, then the close. Returns its subscription, to leave the
    /// topic index.
    pub fn end_stream(&mut self, now: Instant) -> (Option<Subscription>, Next) {
        if !self.is_stream() {
            return (None, Next::Idle);
        }
        let closing = State::Closing {
            until: now + LINGER_TIMEOUT,
            write_shut: false,
            discarded: 0,
        };
        let State::Stream(s) = mem::replace(&mut self.state, closing) else {
            return (None, Next::Idle);
        };
        if s.framing == Framing::Chunked {
            self.queue.push_static(sse::LAST_CHUNK);
        }
        (Some(s.subscription), self.list(Lane::Stream))
    }

    /// From now on the connection only writes what it has queued, then
    /// closes; a bounded wait covers a peer that never reads.
    fn begin_closing(&mut self, now: Instant) {
        self.state = State::Closing {
            until: now + LINGER_TIMEOUT,
            write_shut: false,
            discarded: 0,
        };
    }

    /// The peer sent its FIN.
    pub fn on_eof(&mut self, now: Instant) -> Next {
        self.peer_eof = true;
        match &self.state {
            State::Closing { .. } => self.close_if_written(),
            // A publish in flight is still answered, then it closes.
            State::Requests(r) if matches!(r.waiting, Waiting::Publish { .. }) => Next::Idle,
            // Answers owed for whole requests are still written, then it
            // closes; a request cut short by the EOF can never complete.
            State::Requests(_) if !self.queue.is_empty() => {
                self.begin_closing(now);
                self.close_if_written()
            }
            _ => Next::Close("peer closed"),
        }
    }

    fn close_if_written(&self) -> Next {
        if self.queue.is_empty() && self.peer_eof {
            Next::Close("done")
        } else {
            Next::Idle
        }
    }

    /// Its deadline came.
    pub fn on_deadline(&mut self, now: Instant, heartbeat: &HeartbeatGrid) -> Expired {
        match &mut self.state {
            State::Requests(r) => {
                if r.in_progress() || r.served == 0 {
                    Expired::RequestTimeout
                } else {
                    Expired::Close("idle")
                }
            }
            State::Stream(s) if s.token_until().is_some_and(|until| until <= now) => {
                Expired::EndStream("token expired")
            }
            State::Stream(s) => match heartbeat.due(self.last_write) {
                Some(due) if due <= now => {
                    s.next_check = heartbeat.next_check(now);
                    // Unsent bytes mean the stream is not idle, just slow;
                    // they are on a flush list or wait for writable
                    // readiness, and if neither, they go out now.
                    if !self.queue.is_empty() {
                        return Expired::Flush(self.list(Lane::Stream));
                    }
                    self.queue.push_static(sse::heartbeat(s.framing));
                    Expired::Heartbeat(self.list(Lane::Stream))
                }
                other => {
                    s.next_check = other;
                    Expired::Nothing
                }
            },
            State::Closing { .. } => Expired::Close("linger timeout"),
        }
    }

    /// A shutdown began: streams end, idle connections close, a request in
    /// progress is still answered (503 or a retry stream) and then closes.
    pub fn on_shutdown(&mut self, now: Instant) -> (Option<Subscription>, Next) {
        match &self.state {
            State::Stream(_) => self.end_stream(now),
            // Its publish is still answered (or refused) by the bus.
            State::Requests(r) if matches!(r.waiting, Waiting::Publish { .. }) => {
                (None, Next::Idle)
            }
            State::Requests(r) if r.in_progress() => (None, Next::Idle),
            State::Requests(_) if self.queue.is_empty() => (None, Next::Close("shutdown")),
            // Answers owed are written, then it closes, not at the grace's end.
            State::Requests(_) => {
                self.begin_closing(now);
                (None, Next::Idle)
            }
            State::Closing { .. } => (None, Next::Idle),
        }
    }

    /// Whether new bytes should put it on a flush list: not when it is
    /// listed already, nor while the kernel refuses its bytes. Marks it
    /// listed when so.
    fn take_flush_turn(&mut self) -> bool {
        let turn = !self.listed && self.blocked_since.is_none();
        self.listed |= turn;
        turn
    }

    /// Lists it with the streams, for bytes a replay queued.
    pub fn list_stream(&mut self) -> Next {
        self.list(Lane::Stream)
    }

    fn list(&mut self, lane: Lane) -> Next {
        if self.take_flush_turn() {
            Next::Flush(lane)
        } else {
            Next::Idle
        }
    }

    /// Whether a flush list entry for it is still wanted: the entry may be
    /// older than a flush on writable readiness.
    pub fn is_listed(&self) -> bool {
        self.listed
    }

    /// Whether writable readiness should flush it: bytes are queued, or a
    /// refused queue that a cut-off emptied still waits to be found written
    /// (only that flush lets it close).
    pub fn wants_writable(&self) -> bool {
        self.blocked_since.is_some() || !self.queue.is_empty()
    }

    /// Writes what is queued until the kernel refuses. `key` names it in
    /// the log.
    pub fn flush(&mut self, now: Instant, key: usize) -> Flushed {
        self.listed = false;
        // For people learning the wire format: what each write carried.
        let traced = log::log_enabled!(log::Level::Trace).then(|| self.queue.peek(TRACE_BYTES));
        let (written, outcome) = net::flush(&mut self.socket, &mut self.queue);
        if let Some(bytes) = traced.filter(|_| written > 0) {
            let shown = &bytes[..written.min(bytes.len())];
            let more = if written > shown.len() { " …" } else { "" };
            trace!(
                "connection {key} <- {written} bytes: \"{}\"{more}",
                shown.escape_ascii()
            );
        }
        if written > 0 {
            self.last_write = now;
        }
        let mut waited = None;
        let then = match outcome {
            FlushOutcome::Blocked => {
                self.blocked_since.get_or_insert(now);
                AfterFlush::Done
            }
            FlushOutcome::Failed(e) => {
                waited = self.blocked_since.take().map(|since| now - since);
                AfterFlush::Failed(e)
            }
            FlushOutcome::Drained => {
                // Only a queue the kernel refused is timed: the immediate
                // path pays nothing for this metric.
                waited = self.blocked_since.take().map(|since| now - since);
                self.after_drained(key)
            }
        };
        Flushed {
            written,
            waited,
            then,
        }
    }

    fn after_drained(&mut self, key: usize) -> AfterFlush {
        match &mut self.state {
            State::Stream(s) if s.replay.is_some() => AfterFlush::Replay,
            State::Stream(_) => AfterFlush::Done,
            State::Requests(r) if r.waiting == Waiting::Answers => {
                r.waiting = Waiting::No;
                AfterFlush::ResumeInput
            }
            State::Requests(_) => AfterFlush::Done,
            State::Closing { write_shut, .. } => {
                if self.peer_eof {
                    return AfterFlush::Close("done");
                }
                if *write_shut {
                    return AfterFlush::Done;
                }
                *write_shut = true;
                // Our FIN ends a close-delimited body; reading on until the
                // peer's FIN keeps a late request byte from turning into a
                // reset that could destroy the answer in flight.
                if let Err(e) = self.socket.shutdown(Shutdown::Write) {
                    debug!("connection {key}: shutdown: {e}");
                    return AfterFlush::Close("shutdown failed");
                }
                // Input may have been left unread while answers were pending.
                AfterFlush::ResumeInput
            }
        }
    }

    /// A copy of the bytes not written yet (the answers owed to earlier
    /// requests), for a connection handed over to the lab.
    pub fn unsent(&self) -> Vec<u8> {
        self.queue.peek(self.queue.len())
    }

    /// Leaves the loop: what the loop must still undo.
    pub fn remove(self, now: Instant) -> Remains {
        let subscription = match self.state {
            State::Stream(s) => Some(s.subscription),
            _ => None,
        };
        Remains {
            socket: self.socket,
            // A subscriber cut off or gone while the kernel refused its
            // bytes waited too: the slowest waits must show in the histogram.
            waited: self.blocked_since.map(|since| now - since),
            subscription,
            over_capacity: self.over_capacity,
        }
    }
}

impl Requests {
    /// Part of a request has arrived (so a timeout is a 408 and not the
    /// quiet end of an idle keep-alive connection).
    fn in_progress(&self) -> bool {
        self.reader.in_progress()
    }

    /// After input or an answer: a request in progress must be whole by its
    /// deadline (a new connection's first one counts from the accept); an
    /// idle keep-alive connection closes after the idle timeout.
    fn rearm(&mut self, now: Instant, config: &Config) {
        if self.in_progress() {
            let began = *self.began.get_or_insert(now);
            self.deadline = began + config.header_timeout;
        } else if self.served > 0 {
            self.began = None;
            self.deadline = now + config.idle_timeout;
        }
    }
}
