//! Subscriber streams: opening one, writing its request, reading its
//! response head and then its event stream through the framing and SSE
//! parsers into the tally, and accounting for why one ended.

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::socket::{connect_done, open_socket};
use super::tally::{SeqTracker, Tally};
use super::{Bench, Phase};
use crate::clock::now_ns;
use crate::wire::http::{Body, Head, MAX_HEAD, head_len, parse_head};
use crate::wire::sse::SseParser;

/// Where a subscriber is, from its connect to its end.
#[derive(Debug)]
pub(super) enum SubState {
    Connecting,
    /// Connected; this many bytes of the request written.
    Requesting(usize),
    /// Request sent; the head's bytes so far.
    Head(Vec<u8>),
    Streaming,
    Closed,
}

/// One subscriber stream.
#[derive(Debug)]
pub(super) struct Sub {
    stream: Option<TcpStream>,
    /// Its topic's index (0 when there is one topic).
    pub(super) topic: u32,
    pub(super) state: SubState,
    body: Body,
    sse: SseParser,
    pub(super) seqs: SeqTracker,
    pub(super) comments: u32,
    pub(super) opened_ns: u64,
    pub(super) last_rx_ns: u64,
    pub(super) max_gap_ns: u64,
}

/// What bytes read from a subscriber did to it.
enum Progress {
    Same,
    /// The head arrived: the stream is open.
    Opened,
    /// The stream is over or unusable, for this reason.
    Ended(String),
}

/// Feeds `data`, read at `now`, through the subscriber's head, framing and SSE
/// parsers into `tally`.
fn sub_bytes(sub: &mut Sub, data: &[u8], now: u64, tally: &mut Tally) -> Progress {
    let mut progress = Progress::Same;
    let head;
    let mut data = data;
    if let SubState::Head(buf) = &mut sub.state {
        buf.extend_from_slice(data);
        let Some(len) = head_len(buf) else {
            let too_large = buf.len() > MAX_HEAD;
            return if too_large {
                Progress::Ended("head too large".into())
            } else {
                progress
            };
        };
        match parse_head(&buf[..len]) {
            Ok(Head {
                status: 200,
                event_stream: true,
                body,
                ..
            }) => sub.body = body,
            Ok(Head { status: 200, .. }) => return Progress::Ended("not text/event-stream".into()),
            Ok(Head { status, .. }) => return Progress::Ended(format!("status {status}")),
            Err(e) => return Progress::Ended(e),
        }
        head = std::mem::replace(&mut sub.state, SubState::Streaming);
        let SubState::Head(buf) = &head else {
            unreachable!("matched above")
        };
        data = &buf[len..];
        progress = Progress::Opened;
    }
    let Sub {
        body,
        sse,
        seqs,
        comments,
        topic,
        ..
    } = sub;
    let topic = u64::from(*topic);
    let fed = body.feed(data, &mut |part| {
        sse.feed(part, &mut |item| {
            tally.item(item, topic, seqs, comments, now)
        })
    });
    match fed {
        Ok((_, false)) => progress,
        Ok((_, true)) => Progress::Ended("stream ended by server".into()),
        Err(e) => Progress::Ended(e.into()),
    }
}

impl Bench {
    /// Opens subscriber number `subs.len()`, of topic `i mod K`.
    pub(super) fn open_sub(&mut self, source: Option<Ipv4Addr>) {
        let i = self.subs.len();
        let topic = (i % self.opts.topics) as u32;
        let opened = open_socket(self.opts.addr, source).and_then(|mut s| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll.registry().register(&mut s, Token(i), interest)?;
            Ok(s)
        });
        self.subs.push(Sub {
            stream: None,
            topic,
            state: SubState::Connecting,
            body: Body::Close,
            sse: SseParser::new(),
            seqs: SeqTracker::default(),
            comments: 0,
            opened_ns: now_ns(),
            last_rx_ns: 0,
            max_gap_ns: 0,
        });
        self.pending += 1;
        match opened {
            Ok(s) => self.subs[i].stream = Some(s),
            Err(e) => self.end_sub(i, format!("connect: {e}")),
        }
    }

    pub(super) fn sub_ready(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        let Some(stream) = sub.stream.as_mut() else {
            return;
        };
        if let SubState::Connecting = sub.state {
            match connect_done(stream) {
                Ok(true) => sub.state = SubState::Requesting(0),
                Ok(false) => return,
                Err(e) => return self.end_sub(i, format!("connect: {e}")),
            }
        }
        let request = &self.sub_requests[sub.topic as usize];
        while let SubState::Requesting(done) = sub.state {
            sub.state = match stream.write(&request[done..]) {
                Ok(n) if done + n == request.len() => SubState::Head(Vec::with_capacity(512)),
                Ok(n) => SubState::Requesting(done + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.end_sub(i, format!("write: {e}")),
            };
        }
        self.sub_read(i);
    }

    /// Reads a stream until the kernel has nothing more.
    fn sub_read(&mut self, i: usize) {
        loop {
            let sub = &mut self.subs[i];
            let Some(stream) = sub.stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.buf) {
                Ok(0) => return self.end_sub(i, "closed by server".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.end_sub(i, format!("read: {e}")),
            };
            // One clock read per read(2): the events in it arrived together.
            let now = now_ns();
            sub.max_gap_ns = sub.max_gap_ns.max(now.saturating_sub(sub.last_rx_ns));
            sub.last_rx_ns = now;
            match sub_bytes(sub, &self.buf[..n], now, &mut self.tally) {
                Progress::Same => {}
                Progress::Opened => {
                    (self.pending, self.live) = (self.pending - 1, self.live + 1);
                    self.live_by_topic[sub.topic as usize] += 1;
                }
                Progress::Ended(reason) => return self.end_sub(i, reason),
            }
            // A short read emptied the socket's queue, and edge-triggered epoll
            // reports any data that arrives after it: the WouldBlock read that
            // would follow is a syscall per delivery saved.
            if n < self.buf.len() {
                return;
            }
        }
    }

    /// Closes subscriber `i` and accounts for why.
    pub(super) fn end_sub(&mut self, i: usize, reason: String) {
        let sub = &mut self.subs[i];
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        match std::mem::replace(&mut sub.state, SubState::Closed) {
            SubState::Closed => return,
            SubState::Streaming => {
                self.live -= 1;
                self.live_by_topic[sub.topic as usize] -= 1;
            }
            _ => self.pending -= 1,
        }
        let (count, first) = match self.phase {
            Phase::Connect => (&mut self.connect_failures, &mut self.first_connect_error),
            _ => (&mut self.streams_closed, &mut self.first_close_reason),
        };
        *count += 1;
        first.get_or_insert(reason);
    }
}
