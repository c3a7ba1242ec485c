//! The short answers the lab gives a connection it will not serve (`204`
//! for a run that is over, `400`, `429`, `503`), written on the lab's
//! thread, then the connection closed cleanly.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use super::Place;
use super::thread::{ANSWER, MAX_DISCARD, Room, token};
use super::viewer::write_some;

/// Most answers being written at once; past it a connection is closed
/// unanswered.
const MAX_ANSWERS: usize = 64;

/// A short answer being written, then the connection closed.
pub(super) struct Answer {
    pub(super) socket: TcpStream,
    _place: Place,
    out: Vec<u8>,
    shut: bool,
    discarded: usize,
    pub(super) until: Instant,
}

impl Room {
    /// Queues a short answer on a connection the lab will not serve.
    pub(super) fn answer(
        &mut self,
        mut socket: TcpStream,
        place: Place,
        mut out: Vec<u8>,
        answer: (u16, &str, &str),
        now: Instant,
    ) {
        if self.answers.len() >= MAX_ANSWERS {
            return; // dropped: closed unanswered, its place given back
        }
        let (code, phrase, reason) = answer;
        out.extend_from_slice(answer_bytes(code, phrase, reason).as_bytes());
        let entry = self.answers.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut socket, token(ANSWER, key), interest)
            .is_ok()
        {
            entry.insert(Answer {
                socket,
                _place: place,
                out,
                shut: false,
                discarded: 0,
                until: now + self.linger,
            });
            self.on_answer(key);
        }
    }

    pub(super) fn on_answer(&mut self, key: usize) {
        let Some(answer) = self.answers.get_mut(key) else {
            return;
        };
        if write_some(&mut answer.socket, &mut answer.out).is_err() {
            self.answers.remove(key);
            return;
        }
        if !answer.out.is_empty() {
            return;
        }
        // Written: our FIN, then read until the client's, so that what it
        // still sends cannot turn into a reset that destroys the answer.
        if !answer.shut {
            answer.shut = true;
            let _ = answer.socket.shutdown(Shutdown::Write);
        }
        loop {
            match answer.socket.read(&mut self.scratch) {
                Ok(n) if n > 0 && answer.discarded + n <= MAX_DISCARD => answer.discarded += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The client's FIN, a failure, or too much: done.
                _ => {
                    self.answers.remove(key);
                    return;
                }
            }
        }
    }
}

/// A short answer and the end of the connection.
fn answer_bytes(code: u16, phrase: &str, reason: &str) -> String {
    if reason.is_empty() {
        return format!("HTTP/1.1 {code} {phrase}\r\nConnection: close\r\n\r\n");
    }
    let retry = if code == 429 || code == 503 {
        "Retry-After: 10\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
}

/// `204`: the run is over. An `EventSource` stops reconnecting on it.
pub(super) const OVER: (u16, &str, &str) = (204, "No Content", "");
pub(super) const FULL_RUN: (u16, &str, &str) = (
    429,
    "Too Many Requests",
    "this lab run has all the viewers it may have",
);
pub(super) const TOO_MANY: (u16, &str, &str) = (
    429,
    "Too Many Requests",
    "too many lab runs at once; try again when one has ended",
);
pub(super) const TOO_LARGE: (u16, &str, &str) =
    (400, "Bad Request", "size is over --max-event-size");
pub(super) const UNAVAILABLE: (u16, &str, &str) = (
    503,
    "Service Unavailable",
    "the lab cannot reach the hub now",
);
pub(super) const UNAVAILABLE_PRIVATE: (u16, &str, &str) = (
    503,
    "Service Unavailable",
    "the lab does not run with --jwt-key: its streams would need tokens",
);
