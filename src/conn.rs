//! One connection: its socket, its write queue, and the state it is in.
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌──────► Head ──(head with a body)──► Body
//!   │          │  ╲                         │
//!   │  answer, │   ╲(GET /events)           │ body complete
//!   │ keep-alive    ╲                       │
//!   └──────────┘     ▼                      ▼
//!                  Stream            answer (back to Head)
//!                    │
//!   error, Connection: close, slow-subscriber cut-off, shutdown
//!                    ▼
//!                 Closing ──(queue written, peer's EOF or linger timeout)──► closed
//! ```
//!
//! The connection turns bytes into requests and keeps the queue; it never
//! sees the poll, the slab or the hub. The server decides what each request
//! does and closes connections.

use std::time::Instant;

use mio::net::TcpStream;

use crate::buf::WriteQueue;
use crate::config::Framing;
use crate::http::{self, BodyLength, ChunkedDecoder, Head, HeadParse, Policy, Reject, Status};
use crate::hub::Subscription;

/// Where the connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading the body of a request whose head has arrived.
    Body {
        head: Head,
        body: Vec<u8>,
        reader: BodyReader,
    },
    /// Streaming events to a subscriber.
    Stream,
    /// Writing its last bytes; input is read and dropped until the peer closes.
    Closing,
}

/// How the rest of a body is read.
#[derive(Debug)]
pub enum BodyReader {
    /// This many bytes still to come.
    Length(usize),
    /// A chunked body.
    Chunked(ChunkedDecoder),
}

/// What the next bytes of input made.
#[derive(Debug)]
pub enum Step {
    /// A whole request: its head and body.
    Request(Head, Vec<u8>),
    /// A request to refuse; the connection closes after the answer.
    Reject(Reject),
    /// Nothing complete yet.
    NeedMore,
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
    /// Input that did not make a whole request yet (bounded by the head and
    /// chunk-line policy: body bytes are moved out as they arrive).
    pub pending: Vec<u8>,
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
    /// The kernel refused bytes: wait for writable readiness before writing.
    pub blocked: bool,
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
            phase: Phase::Head,
            queue: WriteQueue::default(),
            pending: Vec::new(),
            framing: Framing::Close,
            subscription: None,
            replay_after: None,
            deadline: None,
            request_began: Some(now),
            last_write: now,
            served: 0,
            blocked: false,
            dirty: false,
            read_paused: false,
            write_shut: false,
            peer_eof: false,
            over_capacity: false,
            stamp: 0,
        }
    }

    /// True while it reads requests (not streaming, not closing).
    pub fn reads_requests(&self) -> bool {
        matches!(self.phase, Phase::Head | Phase::Body { .. })
    }

    /// Takes the next request out of `input` (the start of the unconsumed
    /// bytes). Returns how many bytes it used and what they made. Body bytes
    /// are consumed as they arrive, so only an incomplete head or chunk line
    /// is ever left for the caller to keep.
    pub fn next_request(&mut self, input: &[u8], policy: &Policy) -> (usize, Step) {
        let mut used = 0;
        loop {
            match &mut self.phase {
                Phase::Head => match http::parse_head(&input[used..], policy) {
                    HeadParse::Incomplete => return (used, Step::NeedMore),
                    HeadParse::Invalid(reject) => return (used, Step::Reject(reject)),
                    HeadParse::Complete(head, len) => {
                        used += len;
                        let reader = match head.body {
                            BodyLength::Empty => return (used, Step::Request(head, Vec::new())),
                            _ if head.route.is_err() => {
                                // Refused anyway: answer without reading the body.
                                return (used, Step::Request(head, Vec::new()));
                            }
                            BodyLength::Length(n) if n > policy.max_body => {
                                return (used, Step::Reject(too_large()));
                            }
                            BodyLength::Length(n) => BodyReader::Length(n),
                            BodyLength::Chunked => BodyReader::Chunked(ChunkedDecoder::default()),
                        };
                        if head.expect_continue && used == input.len() {
                            self.queue.push_static(http::CONTINUE);
                        }
                        let capacity = match reader {
                            BodyReader::Length(n) => n,
                            BodyReader::Chunked(_) => 0,
                        };
                        self.phase = Phase::Body {
                            head,
                            body: Vec::with_capacity(capacity),
                            reader,
                        };
                    }
                },
                Phase::Body { body, reader, .. } => {
                    let rest = &input[used..];
                    let done = match reader {
                        BodyReader::Length(left) => {
                            let take = (*left).min(rest.len());
                            body.extend_from_slice(&rest[..take]);
                            used += take;
                            *left -= take;
                            *left == 0
                        }
                        BodyReader::Chunked(decoder) => {
                            match decoder.decode(rest, body, policy.max_body) {
                                Ok((n, done)) => {
                                    used += n;
                                    done
                                }
                                Err(reject) => return (used, Step::Reject(reject)),
                            }
                        }
                    };
                    if !done {
                        return (used, Step::NeedMore);
                    }
                    let Phase::Body { head, body, .. } =
                        std::mem::replace(&mut self.phase, Phase::Head)
                    else {
                        unreachable!("phase checked above");
                    };
                    return (used, Step::Request(head, body));
                }
                Phase::Stream | Phase::Closing => return (input.len(), Step::NeedMore),
            }
        }
    }

    /// True when part of a request has arrived (so a timeout is a 408 and
    /// not the quiet end of an idle keep-alive connection).
    pub fn request_in_progress(&self) -> bool {
        !self.pending.is_empty() || matches!(self.phase, Phase::Body { .. })
    }
}

fn too_large() -> Reject {
    Reject::new(Status::PAYLOAD_TOO_LARGE, "event too large")
}
