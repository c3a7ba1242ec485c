//! Publishing: the keep-alive connection that sends every event, and the
//! rules for when the next one may go (the rate's schedule, the closed
//! loop's window, `--pipeline`), reading the answers and accounting for
//! failed publishes.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::socket::connect_done;
use super::tally::Schedule;
use super::{Bench, Phase};
use crate::clock::{now_ns, ns};
use crate::wire::http::{Body, Head, MAX_HEAD, head_len, parse_head};

/// The publishing connection's poll token.
pub(super) const PUBLISHER: Token = Token(usize::MAX - 1);
/// `sent_ns` of an event whose publish failed.
const FAILED: u64 = u64::MAX;
/// Unsent request bytes allowed before composing more waits.
const MAX_TX_BACKLOG: usize = 1 << 20;

/// The keep-alive publishing connection.
#[derive(Default)]
pub(super) struct Publisher {
    stream: Option<TcpStream>,
    pub(super) connected: bool,
    tx: Vec<u8>,
    tx_off: usize,
    body: Vec<u8>,
    rx: Vec<u8>,
    /// Sequence numbers of unanswered publishes, oldest first.
    pub(super) in_flight: VecDeque<u64>,
    /// The head of the response being read, with its body's decoding state.
    response: Option<Head>,
    error_body: Vec<u8>,
    /// Last answer, or the send that made `in_flight` non-empty: a server that
    /// answers nothing for `--timeout` after this has stalled.
    pub(super) progress_ns: u64,
    reconnects: u32,
}

impl Bench {
    /// Moves the window and completion marks past finished events.
    pub(super) fn advance(&mut self, now: u64) {
        let live = self.live as u32;
        let timeout = ns(self.opts.timeout);
        let done = |e: u64, timed: bool| {
            let sent = self.sent_ns[e as usize];
            sent == FAILED
                || self.tally.delivered[e as usize] >= live
                || (timed && now >= sent + timeout)
        };
        let (mut window, mut complete) = (self.window_base, self.complete_base);
        while window < self.published && done(window, true) {
            window += 1;
        }
        while complete < self.published && done(complete, false) {
            complete += 1;
        }
        (self.window_base, self.complete_base) = (window, complete);
    }

    /// Whether another publish may be written now, by every rule but the rate.
    fn may_publish(&self) -> bool {
        let p = &self.publisher;
        let (closed_loop, window) = (self.opts.rate == 0.0, self.opts.window);
        let outstanding = self.published - self.window_base;
        self.published < self.opts.events
            && p.connected
            && p.tx.len() - p.tx_off < MAX_TX_BACKLOG
            && p.in_flight.len() < self.opts.pipeline
            // Closed loop, a publish answered late still counts against the
            // window, so the requests queued in the server stay bounded too.
            && !(closed_loop && (outstanding >= window || p.in_flight.len() >= window as usize))
    }

    /// When the publish loop must look again if no socket wakes it first.
    pub(super) fn next_wake(&self, start: u64, limit: u64) -> u64 {
        let timeout = ns(self.opts.timeout);
        let p = &self.publisher;
        let mut wake = limit;
        if !p.in_flight.is_empty() {
            wake = wake.min(p.progress_ns + timeout);
        }
        if self.opts.rate > 0.0 && self.may_publish() {
            wake = wake.min(self.due(start, self.published));
        } else if self.opts.rate == 0.0 && self.window_base < self.published {
            wake = wake.min(self.sent_ns[self.window_base as usize].saturating_add(timeout));
        }
        wake
    }

    pub(super) fn due(&self, start: u64, seq: u64) -> u64 {
        let rate = self.opts.rate;
        Schedule { start, rate }.due(seq)
    }

    pub(super) fn connect_publisher(&mut self) {
        let p = &mut self.publisher;
        (p.connected, p.response, p.tx_off) = (false, None, 0);
        p.rx.clear();
        p.tx.clear();
        let addr = self.opts.publish_addr.unwrap_or(self.opts.addr);
        let stream = TcpStream::connect(addr).and_then(|mut s| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll.registry().register(&mut s, PUBLISHER, interest)?;
            Ok(s)
        });
        match stream {
            Ok(s) => p.stream = Some(s),
            Err(e) => self.abort = Some(format!("publisher: connect: {e}")),
        }
    }

    /// At a rate, while publishing: sends what is due (`turn` calls it
    /// between subscribers).
    pub(super) fn publish_if_due(&mut self) {
        if let (Phase::Publish, Some(schedule)) = (&self.phase, self.tally.schedule) {
            self.try_publish(schedule.start);
        }
    }

    /// Writes every publish that is due and allowed now.
    pub(super) fn try_publish(&mut self, start: u64) {
        while self.may_publish()
            && (self.opts.rate == 0.0 || now_ns() >= self.due(start, self.published))
        {
            let seq = self.published;
            let due = if self.opts.rate > 0.0 {
                self.due(start, seq)
            } else {
                u64::MAX
            };
            let p = &mut self.publisher;
            if p.tx_off == p.tx.len() {
                p.tx_off = 0;
                p.tx.clear();
            }
            let t = now_ns();
            p.body.clear();
            write!(p.body, "{seq} {t}").expect("Vec");
            if self.opts.size > 0 {
                p.body.push(b' ');
                p.body.resize(p.body.len() + self.opts.size, b'x');
            }
            p.tx.extend_from_slice(&self.publish_prefix);
            write!(p.tx, "{}\r\n\r\n", p.body.len()).expect("Vec");
            p.tx.extend_from_slice(&p.body);
            if p.in_flight.is_empty() {
                p.progress_ns = t;
            }
            p.in_flight.push_back(seq);
            self.sent_ns[seq as usize] = t;
            if seq == 0 {
                self.first_sent_ns = t;
            }
            self.max_lag_ns = self.max_lag_ns.max(t.saturating_sub(due));
            self.published += 1;
            self.publisher_flush();
        }
    }

    fn publisher_flush(&mut self) {
        let p = &mut self.publisher;
        let Some(stream) = p.stream.as_mut() else {
            return;
        };
        while p.tx_off < p.tx.len() {
            match stream.write(&p.tx[p.tx_off..]) {
                Ok(n) => p.tx_off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: writable readiness resumes; other errors: the
                // read side sees the connection end and accounts for it.
                Err(_) => return,
            }
        }
    }

    pub(super) fn publisher_ready(&mut self) {
        let p = &mut self.publisher;
        let Some(stream) = p.stream.as_mut() else {
            return;
        };
        if !p.connected {
            match connect_done(stream) {
                Ok(true) => p.connected = true,
                Ok(false) => return,
                Err(e) => return self.abort = Some(format!("publisher: connect: {e}")),
            }
            // Each request is one write, but Nagle could still hold one back
            // behind an unacknowledged predecessor.
            let _ = stream.set_nodelay(true);
        }
        self.publisher_flush();
        loop {
            let Some(stream) = self.publisher.stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => return self.publisher_closed("connection closed"),
                Ok(n) => {
                    self.publisher.rx.extend_from_slice(&self.buf[..n]);
                    if let Err(e) = self.read_responses() {
                        return self.publisher_closed(&e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.publisher_closed(&e.to_string()),
            }
        }
    }

    /// Consumes every complete response in the publisher's receive buffer.
    fn read_responses(&mut self) -> Result<(), String> {
        // Consumed bytes are dropped once at the end: answers to pipelined
        // publishes arrive many to a read.
        let mut at = 0;
        let result = loop {
            let p = &mut self.publisher;
            let rx = &p.rx[at..];
            let Some(head) = p.response.as_mut() else {
                let Some(len) = head_len(rx) else {
                    let too_large = rx.len() > MAX_HEAD;
                    break if too_large {
                        Err("response head too large".into())
                    } else {
                        Ok(())
                    };
                };
                let head = parse_head(&rx[..len])?;
                at += len;
                // 1xx: an interim answer, the real one follows.
                if head.status >= 200 {
                    p.error_body.clear();
                    p.response = Some(head);
                }
                continue;
            };
            let (keep, error_body) = (!(200..300).contains(&head.status), &mut p.error_body);
            let (used, done) = head.body.feed(rx, &mut |b| {
                if keep && error_body.len() < 200 {
                    error_body.extend_from_slice(&b[..b.len().min(200)]);
                }
            })?;
            at += used;
            if !done {
                break Ok(());
            }
            let (status, close) = (head.status, head.close);
            p.response = None;
            self.answered(status);
            // Publishing on would only write into a closing socket.
            if close {
                break Err("server closed the connection".into());
            }
        };
        self.publisher.rx.drain(..at);
        result
    }

    /// The oldest publish in flight got `status` (0: no answer).
    fn answered(&mut self, status: u16) {
        let p = &mut self.publisher;
        let Some(seq) = p.in_flight.pop_front() else {
            return;
        };
        p.progress_ns = now_ns();
        if !(200..300).contains(&status) {
            self.sent_ns[seq as usize] = FAILED;
            self.publish_errors += 1;
            let body = String::from_utf8_lossy(&p.error_body);
            let error = format!("status {status}: {}", body.trim());
            self.first_publish_error.get_or_insert(error);
        }
    }

    /// The publishing connection ended: a close-delimited answer is now
    /// complete, any other publish in flight failed; publishing reconnects.
    fn publisher_closed(&mut self, reason: &str) {
        if let Some(mut s) = self.publisher.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if let Some(Head {
            status,
            body: Body::Close,
            ..
        }) = self.publisher.response.take()
        {
            self.answered(status);
        }
        self.publisher.error_body = format!("({reason})").into_bytes();
        while !self.publisher.in_flight.is_empty() {
            self.answered(0);
        }
        self.publisher.reconnects += 1;
        if self.published < self.opts.events && self.abort.is_none() {
            if self.publisher.reconnects > 100 {
                self.abort = Some(format!("publisher: {reason}, 100 times"));
            } else {
                self.connect_publisher();
            }
        }
    }
}
