//! Publishing connections: each a keep-alive connection that sends the
//! events of its topics, reads the answers in order and accounts for
//! failed publishes; a connection that ends is opened again.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::Bench;
use super::socket::connect_done;
use crate::clock::now_ns;
use crate::wire::http::{Body, Head, MAX_HEAD, head_len, parse_head};

/// The first publishing connection's poll token; connection `i` has
/// `PUBLISHERS + i`, far above any subscriber's index.
const PUBLISHERS: usize = usize::MAX / 2;
/// `sent_ns` of an event whose publish failed.
pub(super) const FAILED: u64 = u64::MAX;
/// Unsent request bytes allowed before composing more waits.
pub(super) const MAX_TX_BACKLOG: usize = 1 << 20;

/// The publishing connection `token` names, if it names one of `count`.
pub(super) fn publisher_index(token: Token, count: usize) -> Option<usize> {
    token.0.checked_sub(PUBLISHERS).filter(|&i| i < count)
}

/// One keep-alive publishing connection.
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

impl Publisher {
    /// Request bytes composed and not yet written.
    pub(super) fn tx_backlog(&self) -> usize {
        self.tx.len() - self.tx_off
    }

    /// Appends the publish of event `seq`, stamped `t`, to what is to be
    /// written; true when nothing was waiting to be written before it.
    pub(super) fn compose(&mut self, seq: u64, t: u64, size: usize, prefix: &[u8]) -> bool {
        let fresh = self.tx_backlog() == 0;
        if fresh {
            self.tx_off = 0;
            self.tx.clear();
        }
        self.body.clear();
        write!(self.body, "{seq} {t}").expect("Vec");
        if size > 0 {
            self.body.push(b' ');
            self.body.resize(self.body.len() + size, b'x');
        }
        self.tx.extend_from_slice(prefix);
        write!(self.tx, "{}\r\n\r\n", self.body.len()).expect("Vec");
        self.tx.extend_from_slice(&self.body);
        if self.in_flight.is_empty() {
            self.progress_ns = t;
        }
        self.in_flight.push_back(seq);
        fresh
    }
}

impl Bench {
    pub(super) fn connect_publisher(&mut self, i: usize) {
        let p = &mut self.publishers[i];
        (p.connected, p.response, p.tx_off) = (false, None, 0);
        p.rx.clear();
        p.tx.clear();
        let addr = self.opts.publish_addr.unwrap_or(self.opts.addr);
        let stream = TcpStream::connect(addr).and_then(|mut s| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            let token = Token(PUBLISHERS + i);
            self.poll.registry().register(&mut s, token, interest)?;
            Ok(s)
        });
        match stream {
            Ok(s) => p.stream = Some(s),
            Err(e) => self.abort = Some(format!("publisher: connect: {e}")),
        }
    }

    pub(super) fn publisher_flush(&mut self, i: usize) {
        let p = &mut self.publishers[i];
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

    pub(super) fn publisher_ready(&mut self, i: usize) {
        let p = &mut self.publishers[i];
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
        self.publisher_flush(i);
        loop {
            let Some(stream) = self.publishers[i].stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => return self.publisher_closed(i, "connection closed"),
                Ok(n) => {
                    self.publishers[i].rx.extend_from_slice(&self.buf[..n]);
                    if let Err(e) = self.read_responses(i) {
                        return self.publisher_closed(i, &e);
                    }
                    // A short read took all there was (see `sub_read`).
                    if n < self.buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.publisher_closed(i, &e.to_string()),
            }
        }
    }

    /// Consumes every complete response in connection `i`'s receive buffer.
    fn read_responses(&mut self, i: usize) -> Result<(), String> {
        // Consumed bytes are dropped once at the end: answers to pipelined
        // publishes arrive many to a read.
        let mut at = 0;
        let result = loop {
            let p = &mut self.publishers[i];
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
            self.answered(i, status);
            // Publishing on would only write into a closing socket.
            if close {
                break Err("server closed the connection".into());
            }
        };
        self.publishers[i].rx.drain(..at);
        result
    }

    /// The oldest publish in flight on connection `i` got `status` (0: no
    /// answer).
    fn answered(&mut self, i: usize, status: u16) {
        let p = &mut self.publishers[i];
        let Some(seq) = p.in_flight.pop_front() else {
            return;
        };
        self.in_flight -= 1;
        p.progress_ns = now_ns();
        if !(200..300).contains(&status) {
            self.sent_ns[seq as usize] = FAILED;
            self.publish_errors += 1;
            let body = String::from_utf8_lossy(&p.error_body);
            let error = format!("status {status}: {}", body.trim());
            self.first_publish_error.get_or_insert(error);
        }
    }

    /// Publishing connection `i` ended: a close-delimited answer is now
    /// complete, any other publish in flight failed; it reconnects.
    fn publisher_closed(&mut self, i: usize, reason: &str) {
        let p = &mut self.publishers[i];
        if let Some(mut s) = p.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if let Some(Head {
            status,
            body: Body::Close,
            ..
        }) = p.response.take()
        {
            self.answered(i, status);
        }
        let p = &mut self.publishers[i];
        p.error_body = format!("({reason})").into_bytes();
        while !self.publishers[i].in_flight.is_empty() {
            self.answered(i, 0);
        }
        let p = &mut self.publishers[i];
        p.reconnects += 1;
        if self.published < self.opts.events && self.abort.is_none() {
            if p.reconnects > 100 {
                self.abort = Some(format!("publisher: {reason}, 100 times"));
            } else {
                self.connect_publisher(i);
            }
        }
    }
}
