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
    /// idle keep-alive connection closes after the idle timeout, and up to
    /// a sixteenth of it later: its deadline moves only when it falls
    /// outside that span, so a busy keep-alive connection (a publisher)
    /// moves it in the loop's deadline set once every few seconds, not on
    /// every request (a removal and an insertion in a set as large as the
    /// connections were 800 of a publish's 13 000 instructions at 1 000
    /// subscribers).
    pub(super) fn rearm(&mut self, now: Instant, config: &Config) {
        if self.in_progress() {
            let began = *self.began.get_or_insert(now);
            self.deadline = began + config.header_timeout;
        } else if self.served > 0 {
            self.began = None;
            let (least, slack) = (now + config.idle_timeout, config.idle_timeout / 16);
            if self.deadline < least || self.deadline > least + slack {
                self.deadline = least + slack;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A keep-alive connection's idle deadline: between the idle timeout
    /// and a sixteenth more after its last request, and unmoved by requests
    /// that keep it there (so the loop's deadline set is not touched).
    #[test]
    fn a_busy_keep_alive_connection_keeps_its_idle_deadline() {
        let config = Config::default();
        let (idle, slack) = (config.idle_timeout, config.idle_timeout / 16);
        let start = Instant::now();
        let mut r = Requests {
            reader: RequestReader::default(),
            began: None,
            deadline: start + config.header_timeout,
            served: 1,
            waiting: Waiting::Nothing,
        };
        r.rearm(start, &config);
        let first = r.deadline;
        assert_eq!(first, start + idle + slack);
        // Requests within the slack leave it where it is ...
        for ms in [1, 500, 1000, slack.as_millis() as u64] {
            r.rearm(start + Duration::from_millis(ms), &config);
            assert_eq!(r.deadline, first, "{ms} ms");
        }
        // ... a later one moves it, never to less than the idle timeout.
        let later = start + slack + Duration::from_millis(1);
        r.rearm(later, &config);
        assert_eq!(r.deadline, later + idle + slack);
    }
}
