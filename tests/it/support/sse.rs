//! The event stream: the parser that turns decoded body bytes into
//! `Item`s (events as a browser's EventSource dispatches them, comments,
//! retry fields) and `Subscriber`, one open stream read by deadline, with
//! the expectations tests make of it. Also `reset_reason`, the check of
//! the server's `reset` events.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::body::Body;
use super::{BodyEnd, Framing, Head, HttpConn, Stop, deadline, padded};

/// One thing read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A comment line, without the colon and one leading space.
    Comment(String),
    /// The value of a `retry:` field.
    Retry(String),
}

/// An event as a browser's EventSource would dispatch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    /// The event's field lines exactly as they were on the wire, through
    /// the blank line that ends it.
    pub raw: String,
}

#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<Vec<String>>,
    raw: Vec<u8>,
}

impl SseParser {
    /// Parses complete lines from the buffer until one yields an item.
    fn next_item(&mut self) -> Option<Item> {
        loop {
            let end = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
            // A CR at the very end may be the first half of a CRLF.
            let len = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    None => return None,
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line_bytes: Vec<u8> = self.buf.drain(..end + len).collect();
            let line = String::from_utf8(line_bytes[..end].to_vec())
                .unwrap_or_else(|_| panic!("stream line is not UTF-8: {line_bytes:?}"));
            if let Some(comment) = line.strip_prefix(':') {
                return Some(Item::Comment(
                    comment.strip_prefix(' ').unwrap_or(comment).to_string(),
                ));
            }
            self.raw.extend_from_slice(&line_bytes);
            if line.is_empty() {
                let raw = String::from_utf8(std::mem::take(&mut self.raw)).unwrap();
                let id = self.id.take();
                let event = self.event.take();
                if let Some(lines) = self.data.take() {
                    return Some(Item::Event(Event {
                        id,
                        event,
                        data: lines.join("\n"),
                        raw,
                    }));
                }
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.id = Some(value.to_string()),
                "event" => self.event = Some(value.to_string()),
                "data" => self
                    .data
                    .get_or_insert_with(Vec::new)
                    .push(value.to_string()),
                "retry" => {
                    // retry is not part of an event; keep it out of `raw`.
                    self.raw.truncate(self.raw.len() - line_bytes.len());
                    return Some(Item::Retry(value.to_string()));
                }
                _ => {}
            }
        }
    }
}

/// What `Subscriber::poll` produced.
#[derive(Debug)]
pub enum Next {
    Item(Item),
    End(BodyEnd),
}

/// An open event stream.
pub struct Subscriber {
    pub head: Head,
    body: Body,
    sse: SseParser,
    prefix: Vec<u8>,
}

/// How many leading body bytes a subscriber keeps for exact-wire checks.
const PREFIX_KEPT: usize = 64 * 1024;

impl Subscriber {
    /// A stream over a connection whose response head was already read
    /// (e.g. with `try_read_head` through a proxy); framed as the head says.
    pub fn from_head(conn: HttpConn, head: Head) -> Subscriber {
        let framing = match head.header("transfer-encoding") {
            Some(te) if te.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            Some(te) => panic!("unexpected Transfer-Encoding {te:?} on a stream"),
            None => Framing::Close,
        };
        Subscriber {
            head,
            body: Body::new(conn, framing),
            sse: SseParser::default(),
            prefix: Vec::new(),
        }
    }

    /// The first decoded body bytes (up to 64 KiB) received so far.
    pub fn body_prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn stream(&self) -> &TcpStream {
        self.body.conn.as_ref().unwrap().stream()
    }

    /// Whether bytes of an unfinished line or event are pending, e.g. after
    /// a close-delimited stream ended in the middle of an event.
    pub fn has_partial(&self) -> bool {
        !self.sse.buf.is_empty() || !self.sse.raw.is_empty()
    }

    /// Asserts that, after the body ended, the server closes the connection
    /// without sending anything more.
    pub fn expect_closed(&mut self) {
        self.body.conn.as_mut().unwrap().expect_closed();
    }

    /// The next item, or how the stream ended or why reading stopped
    /// (`BodyEnd::Timeout` leaves the stream usable).
    pub fn poll(&mut self, deadline: Instant) -> Next {
        loop {
            if let Some(item) = self.sse.next_item() {
                return Next::Item(item);
            }
            match self.body.next(deadline) {
                Ok(bytes) => {
                    let keep = PREFIX_KEPT
                        .saturating_sub(self.prefix.len())
                        .min(bytes.len());
                    self.prefix.extend_from_slice(&bytes[..keep]);
                    self.sse.buf.extend_from_slice(&bytes);
                }
                Err(end) => return Next::End(end),
            }
        }
    }

    /// Reads everything the server sends until it closes its side, without
    /// decoding it yet, so that taking the bytes off the socket does not
    /// wait on the parser; `poll` then decodes from what was read. Returns
    /// the number of bytes read, or why reading stopped before the close.
    pub fn read_to_eof(&mut self, deadline: Instant) -> Result<usize, Stop> {
        let conn = self.body.conn.as_mut().expect("body owns its connection");
        let start = conn.buf.len();
        loop {
            match conn.fill(deadline) {
                Ok(_) => {}
                Err(Stop::Eof) => return Ok(conn.buf.len() - start),
                Err(stop) => return Err(stop),
            }
        }
    }

    /// The next item; panics if none arrives by the deadline.
    fn next_item_by(&mut self, deadline: Instant) -> Item {
        match self.poll(deadline) {
            Next::Item(item) => item,
            Next::End(end) => panic!(
                "stream gave no item ({end:?}); pending bytes {:?}",
                String::from_utf8_lossy(&self.sse.buf)
            ),
        }
    }

    pub fn next_item(&mut self) -> Item {
        self.next_item_by(deadline())
    }

    /// The next event, skipping comments and retry fields; panics if none
    /// arrives by the deadline.
    pub fn next_event_by(&mut self, deadline: Instant) -> Event {
        loop {
            if let Item::Event(event) = self.next_item_by(deadline) {
                return event;
            }
        }
    }

    pub fn next_event(&mut self) -> Event {
        self.next_event_by(deadline())
    }

    /// Waits for the `: connected` comment that opens every stream, so the
    /// subscriber is known to be registered before anything is published.
    pub fn expect_connected(&mut self) {
        loop {
            match self.next_item() {
                Item::Comment(text) if text == "connected" => return,
                Item::Retry(_) => {}
                other => panic!("expected the connected comment first, got {other:?}"),
            }
        }
    }

    /// Asserts no event arrives within `wait` (comments are allowed).
    pub fn expect_no_event(&mut self, wait: Duration) {
        let end = Instant::now() + wait;
        loop {
            match self.poll(end) {
                Next::Item(Item::Event(event)) => panic!("unexpected event {event:?}"),
                Next::Item(_) => {}
                Next::End(BodyEnd::Timeout) => return,
                Next::End(end) => panic!("stream ended: {end:?}"),
            }
        }
    }

    /// Asserts the stream ends cleanly next (the terminating chunk, or EOF
    /// when close-delimited), with nothing before it.
    pub fn expect_clean_end(&mut self) {
        match self.poll(deadline()) {
            Next::End(BodyEnd::Clean) => {}
            other => panic!("expected the stream's clean end, got {other:?}"),
        }
    }

    /// Reads a stream that the server ends: the events of `ids` from the
    /// first, in order, each with the body `padded(n, size)`; then a clean
    /// end that falls between events; then the close. Returns how many
    /// events arrived (callers that expect all of them compare it with
    /// `ids.len()`). For streams without heartbeats: anything but an event
    /// fails, which also bounds the loop by `ids.len()`.
    pub fn expect_padded_events_then_clean_end(&mut self, ids: &[String], size: usize) -> usize {
        let mut received = 0;
        loop {
            match self.poll(deadline()) {
                Next::Item(Item::Event(event)) => {
                    assert!(
                        received < ids.len(),
                        "more events than published: {:?}",
                        event.id
                    );
                    assert_eq!(
                        event.id.as_deref(),
                        Some(ids[received].as_str()),
                        "event {received}"
                    );
                    assert!(
                        event.data == padded(received, size),
                        "event {received} corrupted"
                    );
                    received += 1;
                }
                Next::Item(other) => panic!("unexpected {other:?} after {received} events"),
                Next::End(BodyEnd::Clean) => break,
                Next::End(end) => {
                    panic!("the stream did not end cleanly after {received} events: {end:?}")
                }
            }
        }
        assert!(
            !self.has_partial(),
            "the stream ended inside an event, after {received} whole ones"
        );
        self.expect_closed();
        received
    }
}

/// Why a `reset` event was sent: the `reason` of its JSON data. Panics
/// unless `event` is a well-formed reset event: a JSON object with the
/// strings `reason` and `message`.
pub fn reset_reason(event: &Event) -> String {
    assert_eq!(
        event.event.as_deref(),
        Some("reset"),
        "expected a reset event, got {event:?}"
    );
    let data: serde_json::Value = serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("reset data is not JSON ({e}): {:?}", event.data));
    assert!(
        data.get("message")
            .is_some_and(serde_json::Value::is_string),
        "reset data has no message string: {data}"
    );
    data.get("reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("reset data has no reason string: {data}"))
        .to_string()
}
