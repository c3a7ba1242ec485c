//! The failure lab (`--lab`, on with `--demo`): each classic reason SSE
//! events arrive late, made for real on streams the lab alone serves, with
//! its fix beside it, for the page at `GET /lab` and `sseloop lab LESSON`.
//!
//! # Where it runs
//!
//! The lab is a thread of its own with its own small `mio::Poll`; the
//! loops never run its code and none of their paths changed for it. A loop
//! that routes `GET /lab/stream` hands the connection over: the socket
//! leaves the loop's poll and slab without being closed and goes to the
//! lab through a channel and a `mio::Waker` (`LabDoor`). It still holds
//! its place against `--max-connections` until the lab closes it.
//!
//! In a run the lab is three ordinary clients of the hub and one server:
//! it publishes the lesson's events on a topic of the run's own
//! (`lab-<run>`), through the server's publisher ([`Publish`]), or, in the
//! Nagle lesson, by `POST /publish` over real loopback TCP; each viewer
//! (a browser's `EventSource`, its `fetch()` reader, the terminal client)
//! gets its own subscription to `/events` over real loopback TCP, as any
//! other subscriber; and between that subscription and the viewer's socket
//! the lab's application writes the events with the lesson's cause or its
//! fix in the way (`pipeline`). Nothing is a sleep standing in for a
//! buffer: the buffers are real and bounded, and the delays are what they
//! do to the bytes.
//!
//! | module | owns |
//! |---|---|
//! | `lesson` | the lessons and what a lab stream asks for (pure) |
//! | `blocks` | a buffer sent only when full: unflushed writes (pure) |
//! | `relay` | a relay that buffers as nginx does by default (pure) |
//! | `deflate` | a zlib stream that holds output as zlib does (pure) |
//! | `idle` | heartbeats and a proxy's read timeout (pure) |
//! | `pipeline` | the application and the cause between the hub and a viewer (pure) |
//! | `upstream` | the hub's event stream, parsed as the application reads it (pure) |
//! | `run` | one run's schedule and its events' data (pure) |
//! | `nagle` | the Nagle lesson's publisher over TCP |
//! | `thread` | the lab's poll loop: taking connections in, runs, deadlines |
//! | `viewer` | one viewer's sockets: the client's and the lab's subscription |
//! | `answer` | the short answers (204, 400, 429, 503) to connections not served |
//! | `watch` | the terminal client of `sseloop lab` |
//! | `inflate` | a small deflate decoder: the terminal client's, and the server's for its pages (pure) |
//!
//! # A crate of its own
//!
//! The lab is a crate of the workspace beside the server, which it knows
//! only through [`Settings`], [`Publish`] and [`Seat`], so that it can be
//! optimised for size (`opt-level = "z"` in the workspace's release
//! profile): nothing of it is on the server's publish or delivery path,
//! and its code is half as large so. The server re-exports it as
//! `sseloop::lab`.
//!
//! # Bounds
//!
//! At most [`MAX_RUNS`] runs at once (more: 429), 3 viewers each, every run at most 500 events of at most 16 KiB over at
//! most 120 s; a viewer's unsent bytes at most [`MAX_VIEWER_QUEUE`] (a
//! browser that does not read is cut off); at most [`MAX_WAITING`]
//! connections on their way from the loops (more: 503).

mod answer;
mod blocks;
mod deflate;
mod idle;
pub mod inflate;
mod lesson;
mod nagle;
mod pipeline;
mod relay;
mod run;
mod thread;
mod upstream;
mod viewer;
mod watch;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Poll, Waker};

pub use lesson::{Lesson, MAX_COUNT, MAX_SIZE, StreamRequest, parse_rate};
pub use run::Fixed;
pub use thread::Lab;
pub use watch::{Options, RECONNECT_DELAY, Sight, Trial, Watched, print_runs, summary, watch};

/// Most runs at once.
pub const MAX_RUNS: usize = 4;
/// Most unsent bytes one viewer may hold before it is cut off.
pub const MAX_VIEWER_QUEUE: usize = 256 << 10;
/// Most connections handed over and not yet taken by the lab.
pub const MAX_WAITING: usize = 64;

/// A connection handed over by a loop: its socket, what it asked for, the
/// bytes the loop had not written to it yet, and its place against
/// `--max-connections`.
#[derive(Debug)]
pub struct Handed {
    socket: TcpStream,
    request: StreamRequest,
    unsent: Vec<u8>,
    place: Place,
}

impl Handed {
    /// A connection the loop let in: it holds a served place of `seat`'s.
    pub fn new(
        socket: TcpStream,
        request: StreamRequest,
        unsent: Vec<u8>,
        seat: Arc<impl Seat + 'static>,
    ) -> Handed {
        Handed {
            socket,
            request,
            unsent,
            place: Place(seat),
        }
    }
}

/// What the server counts `--max-connections` with: a connection handed
/// over holds one served place until the lab closes it.
pub trait Seat: Send + Sync {
    /// A served connection has closed: its place is free.
    fn give_back(&self);
}

/// How the lab publishes its events into the server it is part of.
pub trait Publish: Send {
    /// Publishes `data` on `topic`, with `event_type` when given.
    fn publish(&self, topic: &str, event_type: Option<&str>, data: String) -> Result<(), Refused>;
}

/// Why a publish was not taken.
#[derive(Debug)]
pub enum Refused {
    /// The hub cannot store events now (Redis away): this event is lost to
    /// the run, the next may not be.
    Unavailable,
    /// Anything else, said in words: the run cannot go on.
    Other(String),
}

/// What the lab takes from the server's configuration.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--publish-token`: the Nagle lesson's publisher sends it.
    pub token: Option<String>,
    /// `--jwt-key` is set: the lab's subscriptions would need tokens.
    pub private: bool,
    /// `--max-event-size`.
    pub max_data: usize,
    /// `--send-buffer`: the viewers' sockets get it too.
    pub send_buffer: usize,
    /// How long a closed answer lingers for the client's FIN.
    pub linger: Duration,
}

/// A served place, given back when dropped (with the socket that held
/// it).
struct Place(Arc<dyn Seat>);

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Place")
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// How loops reach the lab: a queue, the lab's waker, and the count of
/// connections on their way (which bounds the queue). Kept in what the
/// loops share; only a lab request touches it.
#[derive(Debug)]
pub struct LabDoor {
    queue: Arc<Mutex<Queue>>,
    waker: Waker,
    waiting: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// A reserved place in the lab's channel.
#[must_use]
#[derive(Debug)]
pub struct Ticket<'a> {
    door: &'a LabDoor,
    used: bool,
}

impl LabDoor {
    /// A place for one connection, unless [`MAX_WAITING`] are already on
    /// their way (the lab is not keeping up): then the loop answers 503.
    pub fn reserve(&self) -> Option<Ticket<'_>> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket {
            door: self,
            used: false,
        })
    }

    /// Tells the lab to close everything and end its thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

impl Ticket<'_> {
    /// Hands the connection over; should the lab have stopped, the
    /// connection is closed here (and its place given back).
    pub fn send(mut self, handed: Handed) {
        self.used = true;
        let mut queue = self
            .door
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if queue.closed {
            drop(queue);
            drop(handed);
            self.door.waiting.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        queue.items.push_back(handed);
        drop(queue);
        let _ = self.door.waker.wake();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.door.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Connections on their way to the lab. Once the lab has stopped it is
/// closed: what it held is dropped, and nothing more is queued (a handed
/// connection holds the `Shared` that holds the queue).
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Handed>,
    closed: bool,
}

/// The lab's side of the door.
struct Inbox {
    queue: Arc<Mutex<Queue>>,
    waiting: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Inbox {
    /// Takes every connection handed over so far (at most `MAX_WAITING`).
    fn take(&self) -> VecDeque<Handed> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = std::mem::take(&mut queue.items);
        drop(queue);
        self.waiting.fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }

    /// The lab stops: nothing more is queued, and what is queued closes.
    fn close(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.closed = true;
        drop(queue);
        drop(self.take());
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The door and the inbox of a lab whose poll is `poll`.
fn channel(poll: &Poll) -> std::io::Result<(LabDoor, Inbox)> {
    let queue = Arc::new(Mutex::new(Queue::default()));
    let waiting = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let door = LabDoor {
        queue: Arc::clone(&queue),
        waker: Waker::new(poll.registry(), thread::WAKER)?,
        waiting: Arc::clone(&waiting),
        stop: Arc::clone(&stop),
    };
    Ok((
        door,
        Inbox {
            queue,
            waiting,
            stop,
        },
    ))
}
