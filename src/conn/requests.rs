//! A connection while it reads and answers requests: the request in
//! progress and its deadline, the input kept between reads, and why it
//! takes no request for now (answers piling up, or a publish waiting for
//! the bus).

use std::mem;
use std::time::Instant;

use super::{Conn, Lane, Next, PAUSE_READING_AT, State};
use crate::bus::Ticket;
use crate::config::{Config, LINGER_DISCARD_LIMIT};
use crate::http::{self, Policy};
use crate::mercure::matcher::Patterns;
use crate::net::Transport;
use crate::request::{RequestReader, Step};

/// The state of a connection that reads requests.
#[derive(Debug)]
pub(super) struct Requests {
    pub(super) reader: RequestReader,
    /// When the request in progress began (or the connection was accepted).
    pub(super) began: Option<Instant>,
    /// When the request in progress must be whole, or when an idle
    /// keep-alive connection closes.
    pub(super) deadline: Instant,
    /// Requests answered so far.
    pub(super) served: u64,
    pub(super) waiting: Waiting,
}

/// Why a connection takes no request for now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waiting {
    /// For nothing: it takes requests.
    Nothing,
    /// For its unsent answers, which reached `PAUSE_READING_AT`, to be
    /// written.
    AnswersWritten,
    /// For the bus's answer to its publish; answers go out in order, so
    /// the next request waits too.
    BusAnswer { ticket: Ticket, keep_alive: bool },
}

impl<S: Transport> Conn<S> {
    /// `n` bytes arrived that are no request: a closing connection's, read
    /// so that its last answer is not lost to a reset, up to a limit.
    pub fn discard(&mut self, n: usize) -> Next {
        match &mut self.state {
            State::Closing { discarded, .. } => {
                *discarded += n;
                if *discarded > LINGER_DISCARD_LIMIT {
                    Next::Close("sent too much while closing")
                } else {
                    Next::Wait
                }
            }
            _ => Next::Wait,
        }
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
    /// one now (a publish's tokens checked at Unix time `unix_now`): the
    /// bytes it used and what they made.
    pub fn next_request(
        &mut self,
        input: &[u8],
        policy: &Policy,
        unix_now: i64,
        patterns: &mut Patterns,
    ) -> Option<(usize, Step)> {
        match &mut self.state {
            State::Requests(r) if r.waiting == Waiting::Nothing => {
                Some(r.reader.next_request(input, policy, unix_now, patterns))
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
        Next::Wait
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
                Waiting::AnswersWritten
            } else {
                Waiting::Nothing
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
        debug_assert!(
            matches!(&self.state, State::Requests(r) if r.waiting == Waiting::Nothing),
            "a publish is read only by a connection that takes requests"
        );
        if let State::Requests(r) = &mut self.state {
            r.waiting = Waiting::BusAnswer { ticket, keep_alive };
        }
    }

    /// The publish answered by `ticket`, when this connection waits for it:
    /// whether to keep the connection alive after the answer.
    pub fn take_publish(&mut self, ticket: Ticket) -> Option<bool> {
        match &mut self.state {
            State::Requests(r) => match r.waiting {
                Waiting::BusAnswer {
                    ticket: t,
                    keep_alive,
                } if t == ticket => {
                    r.waiting = Waiting::Nothing;
                    Some(keep_alive)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl Requests {
    /// Part of a request has arrived (so a timeout is a 408 and not the
    /// quiet end of an idle keep-alive connection).
    pub(super) fn in_progress(&self) -> bool {
        self.reader.in_progress()
    }

    /// After input or an answer: a request in progress must be whole by its
    /// deadline (a new connection's first one counts from the accept); an
    /// idle keep-alive connection closes after the idle timeout.
    pub(super) fn rearm(&mut self, now: Instant, config: &Config) {
        if self.in_progress() {
            let began = *self.began.get_or_insert(now);
            self.deadline = began + config.header_timeout;
        } else if self.served > 0 {
            self.began = None;
            self.deadline = now + config.idle_timeout;
        }
    }
}
