//! `Event` and its wire encoding. Pure: no sockets, no clock.
//!
//! An event is encoded once into a [`Frame`] that serves both body framings:
//! the bytes are laid out as `<hex size>\r\n<payload>\r\n`, so a chunked
//! stream writes the whole frame and a close-delimited one writes only the
//! payload. Every subscriber's queue points at the same frame.

use std::io::Write;

/// Body framing of HTTP/1.1 event streams (HTTP/1.0 is always close-delimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`: the stream can end cleanly on a kept-alive socket.
    Chunked,
    /// The body ends when the connection closes.
    Close,
}

/// An event to publish: its data, an optional type, the topics it goes to
/// (none: every subscriber), and optionally the id its publisher chose, a
/// reconnection time for clients and the private flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    data: String,
    event_type: Option<String>,
    topics: Vec<String>,
    id: Option<String>,
    retry: Option<u64>,
    private: bool,
}

impl Event {
    /// An untyped broadcast event carrying `data`.
    pub fn new(data: impl Into<String>) -> Self {
        Event {
            data: data.into(),
            ..Event::default()
        }
    }

    /// Sets the `event:` field; browsers dispatch it to listeners of that type.
    pub fn with_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Adds a topic; an event with topics reaches only their subscribers.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Sets the topics at once, taking the list (a publish's route made
    /// it: no second list per publish).
    pub(crate) fn with_topics(mut self, topics: Vec<String>) -> Self {
        self.topics = topics;
        self
    }

    /// Names the event: `id` is its id on the wire, the answer to its
    /// publish and a `Last-Event-ID` to resume after (instead of one the
    /// hub makes). An id in the hub's own form (`urn:sseloop:…`, or a
    /// run and a number), or `earliest`, is not taken: the hub makes its
    /// own, so that no publisher can forge a cursor. At most [`MAX_ID_LEN`] bytes, no
    /// CR, LF or NUL.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the `retry:` field: clients that receive the event reconnect
    /// after `retry` when the stream ends.
    pub fn with_retry(mut self, retry: std::time::Duration) -> Self {
        self.retry = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Marks the event private (Mercure's `private`): it reaches only
    /// subscribers whose token allows one of its topics (with
    /// `Config::jwt_key`; without a key, no subscriber has a token and a
    /// private event reaches nobody).
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// The data, as published.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The id its publisher chose, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The reconnection time, if set.
    pub fn retry(&self) -> Option<std::time::Duration> {
        self.retry.map(std::time::Duration::from_millis)
    }

    /// Whether it is private.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The event type, if any.
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The topics; empty for a broadcast.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Encodes the event with the id the server assigned.
    pub fn encode(&self, id: &str) -> Frame {
        Frame::encode(id, self.event_type.as_deref(), self.retry, &self.data)
    }

    /// Drops the id its publisher chose (the hub makes its own).
    pub(crate) fn drop_id(&mut self) {
        self.id = None;
    }
}

/// Longest id a publisher may give an event, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// True when `id` can be sent as an `id:` field and come back in a
/// `Last-Event-ID`: 1 to [`MAX_ID_LEN`] bytes, no CR or LF (they would end
/// the field early) and no NUL (browsers ignore such an id).
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && !id.contains(['\r', '\n', '\0'])
}

/// True when `event_type` can be sent as an `event:` field: no line break
/// (it would end the field early) and no NUL.
pub fn valid_event_type(event_type: &str) -> bool {
    !event_type.contains(['\r', '\n', '\0'])
}

/// Longest topic name in bytes (SPEC).
pub const MAX_TOPIC_LEN: usize = 128;

/// Topic names: 1 to 128 bytes, no control characters. The one rule for
/// topics, whether they come over HTTP or from a `Publisher`.
pub fn valid_topic(topic: &str) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&topic.len()) && !topic.chars().any(char::is_control)
}

/// Room kept in front of the payload for the chunk-size line: 16 hex digits
/// and CRLF cover any `usize`.
const CHUNK_HEAD_ROOM: usize = 18;

/// One encoded event, shared by the queues of every subscriber it goes to.
#[derive(Debug)]
pub struct Frame {
    bytes: Box<[u8]>,
    chunk_start: usize,
    payload_start: usize,
}

impl Frame {
    /// Encodes `id`, the optional type and `data` as one SSE event.
    ///
    /// Each line of `data` (split on CRLF, CR and LF, as the WHATWG parser
    /// does) becomes one `data:` field, so nothing in the data can start a
    /// field of its own or end the event early; an empty body still yields one
    /// `data:` line, so the browser dispatches it.
    pub fn event(id: &str, event_type: Option<&str>, data: &str) -> Frame {
        Frame::encode(id, event_type, None, data)
    }

    /// [`Frame::event`] with a `retry:` field (milliseconds) when given.
    pub fn encode(id: &str, event_type: Option<&str>, retry: Option<u64>, data: &str) -> Frame {
        let data = data.as_bytes();
        let breaks = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
        let capacity = CHUNK_HEAD_ROOM
            + "id: \n".len()
            + id.len()
            + event_type.map_or(0, |t| "event: \n".len() + t.len())
            + retry.map_or(0, |_| "retry: \n".len() + 20)
            + data.len()
            + (breaks + 1) * "data: \n".len()
            + "\n\r\n".len();
        let mut out = Vec::with_capacity(capacity);
        out.resize(CHUNK_HEAD_ROOM, 0);
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
        if let Some(t) = event_type {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(t.as_bytes());
            out.push(b'\n');
        }
        if let Some(ms) = retry {
            // Into the buffer reserved above: no allocation.
            let _ = writeln!(out, "retry: {ms}");
        }
        for line in DataLines::new(data) {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
        Frame::seal(out)
    }

    /// Wraps raw SSE text (a comment, a `retry:` line) as a frame.
    pub fn raw(text: &[u8]) -> Frame {
        let mut out = Vec::with_capacity(CHUNK_HEAD_ROOM + text.len() + 2);
        out.resize(CHUNK_HEAD_ROOM, 0);
        out.extend_from_slice(text);
        Frame::seal(out)
    }

    /// Writes the chunk-size line right-aligned into the room kept in front
    /// of the payload and appends the chunk's CRLF: no copy of the payload,
    /// and no allocation for the line (`format!` made one per event and
    /// cost a publish more instructions than encoding the event did).
    fn seal(mut out: Vec<u8>) -> Frame {
        let payload_len = out.len() - CHUNK_HEAD_ROOM;
        out.extend_from_slice(b"\r\n");
        let mut chunk_start = CHUNK_HEAD_ROOM - 2;
        out[chunk_start..CHUNK_HEAD_ROOM].copy_from_slice(b"\r\n");
        let mut rest = payload_len;
        loop {
            chunk_start -= 1;
            out[chunk_start] = b"0123456789abcdef"[rest & 0xf];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        Frame {
            bytes: out.into_boxed_slice(),
            chunk_start,
            payload_start: CHUNK_HEAD_ROOM,
        }
    }

    /// The SSE text alone.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload_start..self.bytes.len() - 2]
    }

    /// The bytes a stream with `framing` writes: the whole chunk, or the payload.
    pub fn wire(&self, framing: Framing) -> &[u8] {
        match framing {
            Framing::Chunked => &self.bytes[self.chunk_start..],
            Framing::Close => self.payload(),
        }
    }

    /// The range of the backing bytes that [`Frame::wire`] returns.
    pub fn wire_range(&self, framing: Framing) -> (usize, usize) {
        match framing {
            Framing::Chunked => (self.chunk_start, self.bytes.len()),
            Framing::Close => (self.payload_start, self.bytes.len() - 2),
        }
    }

    /// All backing bytes (see [`Frame::wire_range`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The heartbeat comment as a stream with `framing` writes it.
pub fn heartbeat(framing: Framing) -> &'static [u8] {
    match framing {
        Framing::Chunked => b"d\r\n: heartbeat\n\n\r\n",
        Framing::Close => b": heartbeat\n\n",
    }
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Splits data into lines on CRLF, CR and LF; always yields at least one
/// line, and a final empty line after a trailing break.
struct DataLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> DataLines<'a> {
    fn new(data: &'a [u8]) -> Self {
        DataLines { rest: Some(data) }
    }
}

impl<'a> Iterator for DataLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(i) => {
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                self.rest = Some(&rest[i + skip..]);
                Some(&rest[..i])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &Frame) -> &str {
        std::str::from_utf8(frame.payload()).unwrap()
    }

    #[test]
    fn plain_event() {
        let f = Frame::event("r-1", None, "hello");
        assert_eq!(text(&f), "id: r-1\ndata: hello\n\n");
    }

    #[test]
    fn typed_event() {
        let f = Frame::event("r-2", Some("progress"), "{\"p\":5}");
        assert_eq!(text(&f), "id: r-2\nevent: progress\ndata: {\"p\":5}\n\n");
    }

    #[test]
    fn empty_data_is_one_empty_line() {
        assert_eq!(text(&Frame::event("1", None, "")), "id: 1\ndata: \n\n");
    }

    #[test]
    fn every_line_break_splits() {
        let f = Frame::event("1", None, "a\nb\rc\r\nd\n\re");
        assert_eq!(
            text(&f),
            "id: 1\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: e\n\n"
        );
    }

    #[test]
    fn trailing_break_keeps_final_empty_line() {
        assert_eq!(
            text(&Frame::event("1", None, "a\r\n")),
            "id: 1\ndata: a\ndata: \n\n"
        );
    }

    #[test]
    fn leading_space_survives_the_parser_strip() {
        // The parser removes one space after the colon; ours is that space.
        assert_eq!(text(&Frame::event("1", None, " x")), "id: 1\ndata:  x\n\n");
    }

    #[test]
    fn data_cannot_inject_fields() {
        let f = Frame::event("7", None, "x\n\nid: 99\nevent: evil\ndata: y");
        assert_eq!(
            text(&f),
            "id: 7\ndata: x\ndata: \ndata: id: 99\ndata: event: evil\ndata: data: y\n\n"
        );
    }

    #[test]
    fn chunked_and_close_wire_forms() {
        let f = Frame::event("1", None, "hi");
        let payload = b"id: 1\ndata: hi\n\n";
        assert_eq!(f.wire(Framing::Close), payload);
        let mut chunk = format!("{:x}\r\n", payload.len()).into_bytes();
        chunk.extend_from_slice(payload);
        chunk.extend_from_slice(b"\r\n");
        assert_eq!(f.wire(Framing::Chunked), &chunk[..]);
    }

    #[test]
    fn large_event_chunk_size_is_hex() {
        let data = "x".repeat(70_000);
        let f = Frame::event("1", None, &data);
        let len = f.payload().len();
        assert!(
            f.wire(Framing::Chunked)
                .starts_with(format!("{len:x}\r\n").as_bytes())
        );
        assert!(f.wire(Framing::Chunked).ends_with(b"\n\n\r\n"));
    }

    /// The chunk-size line is written by hand: every digit count, the
    /// boundaries between them, against `format!`.
    #[test]
    fn chunk_size_lines_at_digit_boundaries() {
        for len in [1, 15, 16, 255, 256, 4095, 4096, 65535, 65536, 1 << 20] {
            let f = Frame::raw(&vec![b'x'; len]);
            let line = format!("{len:x}\r\n");
            let wire = f.wire(Framing::Chunked);
            assert!(wire.starts_with(line.as_bytes()), "{len}");
            assert_eq!(wire.len(), line.len() + len + 2, "{len}");
        }
    }

    #[test]
    fn heartbeat_chunk_size_matches() {
        let hb = heartbeat(Framing::Chunked);
        assert_eq!(&hb[3..hb.len() - 2], heartbeat(Framing::Close));
        assert_eq!(hb[0], b"d"[0]);
        assert_eq!(heartbeat(Framing::Close).len(), 0xd);
    }

    #[test]
    fn retry_follows_the_type_and_the_fields_of_an_event() {
        let event = Event::new("a\nb")
            .with_type("t")
            .with_retry(std::time::Duration::from_millis(1500))
            .with_id("ignored here");
        assert_eq!(
            text(&event.encode("urn:x")),
            "id: urn:x\nevent: t\nretry: 1500\ndata: a\ndata: b\n\n"
        );
        assert_eq!(
            text(&Frame::encode("1", None, Some(0), "")),
            "id: 1\nretry: 0\ndata: \n\n"
        );
        let max = Frame::encode("1", None, Some(u64::MAX), "");
        assert_eq!(text(&max), "id: 1\nretry: 18446744073709551615\ndata: \n\n");
        assert_eq!(event.id(), Some("ignored here"));
        assert!(!event.is_private() && event.clone().private().is_private());
    }

    #[test]
    fn ids_a_publisher_may_give() {
        assert!(valid_id("urn:uuid:1") && valid_id(&"x".repeat(MAX_ID_LEN)));
        for bad in ["", "a\nb", "a\rb", "a\0b"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(!valid_id(&"x".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn event_types() {
        assert!(valid_event_type("progress"));
        assert!(!valid_event_type("a\nb"));
        assert!(!valid_event_type("a\rb"));
        assert!(!valid_event_type("a\0b"));
    }
}
