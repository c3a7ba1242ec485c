//! One connection: its socket, its write queue, and the state it is in,
//! each state's data in its variant.
//!
//! ```text
//!      accept
//!        │
//!        ▼
//!    Requests ◄──┐  head (→ body) → answer, kept alive; a publish may wait
//!     │   │ └────┘  for the bus's answer (Waiting::BusAnswer) before the next
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
//! does (through `app`) and removes connections. The socket is a type
//! parameter ([`Transport`]): a TCP stream in the loop, an in-memory one in
//! the unit tests (`tests.rs`). `requests` holds the `Requests` state and
//! its transitions, `stream` the `Stream` state's, `queue` the write queue.

mod queue;
mod requests;
mod stream;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use log::{debug, trace};

use crate::config::{Config, LINGER_TIMEOUT, OVERFLOW_TIMEOUT};
use crate::net::{self, FlushOutcome, ReadOutcome, Transport};
use crate::request::RequestReader;
use crate::sse;
use crate::timers::HeartbeatGrid;
use crate::topics::Subscription;

pub use queue::WriteQueue;
pub use stream::Clearance;

use self::requests::{Requests, Waiting};
use self::stream::Stream;

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
    /// Nothing more for now: wait for readiness or a deadline.
    Wait,
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
    NotDue,
    /// No heartbeat: the stream is not idle, just slow. Its unsent bytes
    /// were listed for a flush if they were neither listed nor waiting for
    /// writable readiness.
    NotIdle(Next),
}

/// What one top-up of a replay may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayAllowance {
    /// History units it may look through (see `History::next_retained`).
    pub units: usize,
    /// It queues kept events until its queue holds this many bytes.
    pub fill_to: usize,
}

/// What one top-up of a replay did.
#[derive(Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Events queued.
    pub events: u64,
    /// Bytes queued: the events', or a `reset` when it lost its place.
    pub bytes: usize,
    /// History units looked through.
    pub units: usize,
    /// Where the replay stands now.
    pub then: ReplayThen,
}

/// Where a replay stands after a top-up.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayThen {
    /// Its queue is full: the flush that drains it tops it up again.
    WhenWritten,
    /// The allowance's units ran out: it goes on in a later pass.
    NextPass,
    /// It has caught up (or lost its place, and said so): it is live.
    Live,
    /// A Mercure subscriber lost its place: end its stream (its
    /// reconnect learns of the loss).
    Lost,
}

/// What a stream leaves when it ends: its place in the topic index, to be
/// taken out, and whether it was still replaying (the loop counts those).
#[derive(Debug)]
pub struct EndedStream {
    /// Its place in the topic index.
    pub subscription: Subscription,
    /// It had not caught up from the history.
    pub was_replaying: bool,
}

/// What is left of a connection the loop removes.
#[derive(Debug)]
pub struct Remains<S> {
    /// To deregister.
    pub socket: S,
    /// How long its queue had waited for writable readiness, if it had.
    pub waited: Option<Duration>,
    /// What its stream leaves, for a subscriber.
    pub stream: Option<EndedStream>,
    /// It was accepted past capacity.
    pub over_capacity: bool,
}

/// One client connection over its socket `S` (see [`Transport`]).
#[derive(Debug)]
pub struct Conn<S> {
    socket: S,
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
    /// The number of the last fan-out that reached it, so that one event
    /// goes once to a subscriber of several of its topics.
    last_fan_out: u64,
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

impl State {
    /// Closing from `now`: its queue written, then the peer's FIN or the
    /// linger timeout.
    fn closing(now: Instant) -> State {
        State::Closing {
            until: now + LINGER_TIMEOUT,
            write_shut: false,
            discarded: 0,
        }
    }
}

impl<S: Transport> Conn<S> {
    /// A connection accepted at `now`; one accepted past capacity gets a
    /// shorter time to send its request.
    pub fn new(socket: S, now: Instant, over_capacity: bool, config: &Config) -> Conn<S> {
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
                waiting: Waiting::Nothing,
            }),
            last_write: now,
            blocked_since: None,
            listed: false,
            peer_eof: false,
            over_capacity,
            last_fan_out: 0,
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
            State::Requests(r) if matches!(r.waiting, Waiting::BusAnswer { .. }) => None,
            State::Requests(r) => Some(r.deadline),
            State::Stream(s) => match (s.next_check, s.token_until()) {
                (Some(check), Some(until)) => Some(check.min(until)),
                (check, until) => check.or(until),
            },
            State::Closing { until, .. } => Some(*until),
        }
    }

    /// Fixes the kernel send buffer of a stream (see
    /// [`Transport::limit_send_buffer`]).
    pub fn limit_send_buffer(&self, bytes: usize) -> std::io::Result<()> {
        self.socket.limit_send_buffer(bytes)
    }

    /// Whether the loop should read its socket. Not a stream's: what its
    /// client sends means nothing, and leaving it unread lets the kernel
    /// push back on a client that floods (a close or reset still shows, in
    /// the readiness, see [`Conn::on_hangup`]).
    pub fn wants_input(&self) -> bool {
        !self.peer_eof
            && match &self.state {
                State::Requests(r) => r.waiting == Waiting::Nothing,
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
            return Next::Wait;
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
        Next::Wait
    }

    /// Reads once into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        net::read(&mut self.socket, buf)
    }

    /// From now on the connection only writes what it has queued, then
    /// closes; a bounded wait covers a peer that never reads.
    fn begin_closing(&mut self, now: Instant) {
        self.state = State::closing(now);
    }

    /// The peer sent its FIN.
    pub fn on_eof(&mut self, now: Instant) -> Next {
        self.peer_eof = true;
        match &self.state {
            State::Closing { .. } => self.close_if_written(),
            // A publish in flight is still answered, then it closes.
            State::Requests(r) if matches!(r.waiting, Waiting::BusAnswer { .. }) => Next::Wait,
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
            Next::Wait
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
                        return Expired::NotIdle(self.list(Lane::Stream));
                    }
                    self.queue.push_static(sse::heartbeat(s.framing));
                    Expired::Heartbeat(self.list(Lane::Stream))
                }
                other => {
                    s.next_check = other;
                    Expired::NotDue
                }
            },
            State::Closing { .. } => Expired::Close("linger timeout"),
        }
    }

    /// A shutdown began: streams end, idle connections close, a request in
    /// progress is still answered (503 or a retry stream) and then closes.
    pub fn on_shutdown(&mut self, now: Instant) -> (Option<EndedStream>, Next) {
        match &self.state {
            State::Stream(_) => self.end_stream(now),
            // Its publish is still answered (or refused) by the bus.
            State::Requests(r) if matches!(r.waiting, Waiting::BusAnswer { .. }) => {
                (None, Next::Wait)
            }
            State::Requests(r) if r.in_progress() => (None, Next::Wait),
            State::Requests(_) if self.queue.is_empty() => (None, Next::Close("shutdown")),
            // Answers owed are written, then it closes, not at the grace's end.
            State::Requests(_) => {
                self.begin_closing(now);
                (None, Next::Wait)
            }
            State::Closing { .. } => (None, Next::Wait),
        }
    }

    /// Marks it listed for a flush, unless it is listed already or waits
    /// for writable readiness: whether it was (and the loop must list it).
    fn enlist(&mut self) -> bool {
        let turn = !self.listed && self.blocked_since.is_none();
        self.listed |= turn;
        turn
    }

    /// Lists it with the streams, for bytes a replay queued.
    pub fn list_stream(&mut self) -> Next {
        self.list(Lane::Stream)
    }

    fn list(&mut self, lane: Lane) -> Next {
        if self.enlist() {
            Next::Flush(lane)
        } else {
            Next::Wait
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
        let (written, outcome) = self.queue.flush_to(&mut self.socket);
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
                debug_assert!(self.queue.is_empty());
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
            State::Requests(r) if r.waiting == Waiting::AnswersWritten => {
                r.waiting = Waiting::Nothing;
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
                if let Err(e) = self.socket.shutdown_write() {
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
    pub fn remove(self, now: Instant) -> Remains<S> {
        let stream = match self.state {
            State::Stream(s) => Some(s.ended()),
            _ => None,
        };
        Remains {
            socket: self.socket,
            // A subscriber cut off or gone while the kernel refused its
            // bytes waited too: the slowest waits must show in the histogram.
            waited: self.blocked_since.map(|since| now - since),
            stream,
            over_capacity: self.over_capacity,
        }
    }
}
