//! One connection: its socket, its write queue, and the state it is in.
//!
//! ```text
//!      accept
//!        │
//!        ▼
//!    Requests ◄──┐  head (→ body) → answer, kept alive
//!     │   │ └────┘  (the reader: request.rs)
//!     │   │ GET /events
//!     │   ▼
//!     │  Stream ── events, heartbeats, replay
//!     │   │
//!     ▼   ▼ error, Connection: close, slow-subscriber cut-off, shutdown
//!    Closing ──(queue written, then the peer's EOF or the linger timeout)──► closed
//! ```
//!
//! The connection holds its request reader and its queue; it never
//! sees the poll, the slab or the hub. The server decides what each request
//! does and closes connections.

use std::time::Instant;

use mio::net::TcpStream;

use crate::buf::WriteQueue;
use crate::config::Framing;
use crate::hub::Subscription;
use crate::request::RequestReader;

/// Where the connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Reading and answering requests.
    Requests(RequestReader),
    /// Streaming events to a subscriber.
    Stream,
    /// Writing its last bytes; input is read and dropped until the peer closes.
    Closing,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket, registered once for readable and writable readiness.
    pub socket: TcpStream,
    /// Where it is in its life.
    pub phase: Phase,
    /// Bytes the kernel has not taken yet.
    pub queue: WriteQueue,
    /// Body framing, for a stream.
    pub framing: Framing,
    /// Its place in the hub, for a subscriber.
    pub subscription: Option<Subscription>,
    /// While a resuming subscriber catches up from the history: the last
    /// sequence number queued to it. Live events wait for the cursor.
    pub replay_after: Option<u64>,
    /// The one deadline it has in the server's timer set.
    pub deadline: Option<Instant>,
    /// When the request in progress began (or the connection was accepted).
    pub request_began: Option<Instant>,
    /// Last time bytes were written to it.
    pub last_write: Instant,
    /// Requests answered so far.
    pub served: u64,
    /// Since when the kernel has refused bytes that are still queued: while
    /// set, writing waits for writable readiness.
    pub blocked_since: Option<Instant>,
    /// Queued in the server's flush list.
    pub dirty: bool,
    /// Reading stopped because too many answers are unsent.
    pub read_paused: bool,
    /// Our side of the socket is shut for writing (while closing).
    pub write_shut: bool,
    /// The peer sent its FIN: nothing more will be read.
    pub peer_eof: bool,
    /// Accepted past `max_connections`: its request is answered with "come
    /// back later" and it closes.
    pub over_capacity: bool,
    /// The last fan-out stamp that reached it, so one event goes once to a
    /// subscriber of several of its topics.
    pub stamp: u64,
}

impl Conn {
    /// A new connection accepted at `now`.
    pub fn new(socket: TcpStream, now: Instant) -> Conn {
        Conn {
            socket,
            phase: Phase::Requests(RequestReader::default()),
            queue: WriteQueue::default(),
            framing: Framing::Close,
            subscription: None,
            replay_after: None,
            deadline: None,
            request_began: Some(now),
            last_write: now,
            served: 0,
            blocked_since: None,
            dirty: false,
            read_paused: false,
            write_shut: false,
            peer_eof: false,
            over_capacity: false,
            stamp: 0,
        }
    }

    /// The request reader, while it reads requests.
    pub fn requests(&mut self) -> Option<&mut RequestReader> {
        match &mut self.phase {
            Phase::Requests(reader) => Some(reader),
            _ => None,
        }
    }

    /// True when part of a request has arrived (so a timeout is a 408 and
    /// not the quiet end of an idle keep-alive connection).
    pub fn request_in_progress(&self) -> bool {
        matches!(&self.phase, Phase::Requests(r) if r.in_progress())
    }

    /// Whether new bytes should put it on the server's flush list: not when
    /// it is listed already, nor while the kernel refuses its bytes. Marks
    /// it listed when so.
    pub fn take_flush_turn(&mut self) -> bool {
        let turn = !self.dirty && self.blocked_since.is_none();
        self.dirty |= turn;
        turn
    }
}
