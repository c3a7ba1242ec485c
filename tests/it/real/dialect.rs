//! The corpus of awkward payloads every client of `tests/it/corpus.rs` is
//! fed (`tests/clients/corpus.json`, the one list the tests and their
//! expectations come from), and a small model of how each client library
//! reads an event stream: the WHATWG event-stream interpretation rules, and
//! the rules of the libraries that depart from them, written after their
//! code at the pinned versions. The model tells what a library makes of
//! the bytes around the events (the greeting, heartbeats, a refused
//! stream), which depend on the server's exact bytes; the corpus file says,
//! worked out by hand, what each event must become.
//!
//! The tests here need no client (`SSELOOP_SKIP_REAL_CLIENTS=1` keeps
//! them): they check the hand-worked values against sseloop's real
//! encoding, read off a stream, through the model.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Instant;

use super::clients_dir;
use crate::support::connect;
use crate::support::{Publisher, TestServer, deadline, percent_encode};

/// How a client reads an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The WHATWG rules: browsers, npm `eventsource`.
    Whatwg,
    /// PyPI `sseclient-py` 1.9.0: the WHATWG rules for what sseloop sends,
    /// except that an event's id is only the `id:` of its own block (no
    /// last event ID carried over).
    SseclientPy,
    /// PyPI `httpx-sse` 0.4.3: a blank line dispatches whenever an event
    /// type, data, a last event ID or a `retry:` is pending, so once an id
    /// has been seen every comment block (a heartbeat) becomes an empty
    /// event carrying that id, and so does a block with only `retry:`.
    HttpxSse,
    /// npm `@microsoft/fetch-event-source` 2.0.1: every blank line
    /// dispatches, data or not (the greeting and each heartbeat become
    /// empty messages with no id), and a data line is joined to what came
    /// before only when that is not empty, so leading empty lines vanish.
    FetchEventSource,
}

impl Dialect {
    /// The key of this library's entries in the corpus's `quirks`.
    pub fn quirk_key(self) -> Option<&'static str> {
        match self {
            Dialect::Whatwg => None,
            Dialect::SseclientPy => Some("sseclient-py"),
            Dialect::HttpxSse => Some("httpx-sse"),
            Dialect::FetchEventSource => Some("fetch-event-source"),
        }
    }
}

/// An event as a client hands it over: its type (`message` when the
/// stream named none), its lastEventId, its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub event_type: String,
    pub id: String,
    pub data: String,
}

/// What `dialect` dispatches for `body`, a stream's body (framing
/// removed) as one piece; a last line without its line end is left
/// pending, as on a stream still open.
pub fn interpret(dialect: Dialect, body: &str) -> Vec<Seen> {
    let mut lines = split_lines(body);
    // The last piece has no line end yet.
    lines.pop();
    let mut seen = Vec::new();
    let mut state = State::default();
    for line in lines {
        state.line(dialect, line, &mut seen);
    }
    seen
}

/// Lines split on CRLF, CR and LF; the piece after the last line end is
/// the last item (empty when the text ends with one).
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                lines.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    lines.push(&text[start..]);
    lines
}

#[derive(Default)]
struct State {
    event_type: String,
    /// WHATWG: the data buffer (each line plus LF); the libraries: the
    /// lines.
    data: Vec<String>,
    /// The last event ID buffer (kept across events where the rules say so).
    last_id: String,
    /// The `id:` of the current block (sseclient-py, fetch-event-source).
    block_id: String,
    retry: Option<u64>,
}

impl State {
    fn line(&mut self, dialect: Dialect, line: &str, seen: &mut Vec<Seen>) {
        if line.is_empty() {
            self.dispatch(dialect, seen);
            return;
        }
        let (field, value) = match dialect {
            // Its field is what comes before a colon at index 1 or later:
            // lines without one, or starting with one, are skipped.
            Dialect::FetchEventSource => match line.find(':') {
                Some(0) | None => return,
                Some(at) => (
                    &line[..at],
                    line[at + 1..].strip_prefix(' ').unwrap_or(&line[at + 1..]),
                ),
            },
            _ => {
                if line.starts_with(':') {
                    return;
                }
                if dialect == Dialect::SseclientPy && line.trim().is_empty() {
                    return;
                }
                match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line, ""),
                }
            }
        };
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => self.data.push(value.to_string()),
            "id" if !value.contains('\0') => {
                self.last_id = value.to_string();
                self.block_id = value.to_string();
            }
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, dialect: Dialect, seen: &mut Vec<Seen>) {
        let event_type = std::mem::take(&mut self.event_type);
        let data = std::mem::take(&mut self.data);
        let block_id = std::mem::take(&mut self.block_id);
        let retry = self.retry.take();
        let name = if event_type.is_empty() {
            "message".to_string()
        } else {
            event_type.clone()
        };
        match dialect {
            Dialect::Whatwg | Dialect::SseclientPy => {
                // No data line, no event. (The data buffer is each line
                // plus LF, less the last LF: the lines joined with LF.)
                if data.is_empty() {
                    return;
                }
                let id = if dialect == Dialect::Whatwg {
                    self.last_id.clone()
                } else {
                    block_id
                };
                seen.push(Seen {
                    event_type: name,
                    id,
                    data: data.join("\n"),
                });
            }
            Dialect::HttpxSse => {
                if event_type.is_empty()
                    && data.is_empty()
                    && self.last_id.is_empty()
                    && retry.is_none()
                {
                    return;
                }
                seen.push(Seen {
                    event_type: name,
                    id: self.last_id.clone(),
                    data: data.join("\n"),
                });
            }
            Dialect::FetchEventSource => {
                let mut joined = String::new();
                for line in data {
                    if joined.is_empty() {
                        joined = line;
                    } else {
                        joined.push('\n');
                        joined.push_str(&line);
                    }
                }
                seen.push(Seen {
                    event_type: name,
                    id: block_id,
                    data: joined,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The corpus

/// One event of the corpus.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    /// `None`: untyped, dispatched as `message`.
    pub event_type: Option<String>,
    pub body: String,
    /// What the WHATWG rules make of it.
    pub data: String,
    /// Per library (`Dialect::quirk_key`), the data it hands over instead.
    pub quirks: BTreeMap<String, String>,
}

impl Item {
    /// What a client reading `dialect` must hand over for this event,
    /// published with `id`.
    pub fn expected(&self, dialect: Dialect, id: &str) -> Seen {
        let data = dialect
            .quirk_key()
            .and_then(|key| self.quirks.get(key))
            .unwrap_or(&self.data);
        Seen {
            event_type: self.event_type.clone().unwrap_or_else(|| "message".into()),
            id: id.to_string(),
            data: data.clone(),
        }
    }

    /// The publish query for `topic`.
    pub fn query(&self, topic: &str) -> String {
        let mut query = format!("?topic={}", percent_encode(topic));
        if let Some(event_type) = &self.event_type {
            query.push_str(&format!("&event={}", percent_encode(event_type)));
        }
        query
    }
}

pub struct Corpus {
    pub items: Vec<Item>,
}

impl Corpus {
    /// Reads `tests/clients/corpus.json`.
    pub fn load() -> Corpus {
        let path = clients_dir().join("corpus.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let events = json["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no `events` list", path.display()));
        let items = events
            .iter()
            .map(|event| {
                let name = event["name"].as_str().expect("an event without a name");
                let quirks = event["quirks"]
                    .as_object()
                    .map(|q| {
                        q.iter()
                            .map(|(k, v)| (k.clone(), text_value(name, v)))
                            .collect()
                    })
                    .unwrap_or_default();
                Item {
                    name: name.to_string(),
                    event_type: event["type"].as_str().map(str::to_string),
                    body: text_value(name, &event["body"]),
                    data: text_value(name, &event["data"]),
                    quirks,
                }
            })
            .collect();
        Corpus { items }
    }

    /// Every event type of the corpus, comma-separated, for the clients
    /// that listen by type (an EventSource).
    pub fn types(&self) -> String {
        let mut types: Vec<&str> = self
            .items
            .iter()
            .filter_map(|i| i.event_type.as_deref())
            .collect();
        types.sort_unstable();
        types.dedup();
        types.join(",")
    }

    /// Publishes every event to `topic`, in order; their ids.
    pub fn publish_all(&self, publisher: &mut Publisher, topic: &str) -> Vec<String> {
        self.items
            .iter()
            .map(|item| publisher.publish_ok(&item.query(topic), item.body.as_bytes()))
            .collect()
    }

    /// What a client reading `dialect` must hand over for the events
    /// published with `ids`.
    pub fn expected(&self, dialect: Dialect, ids: &[String]) -> Vec<Seen> {
        self.items
            .iter()
            .zip(ids)
            .map(|(item, id)| item.expected(dialect, id))
            .collect()
    }
}

/// A corpus text: a string, or `{"repeat": S, "times": N}`.
fn text_value(name: &str, value: &serde_json::Value) -> String {
    if let Some(text) = value.as_str() {
        return text.to_string();
    }
    match (value["repeat"].as_str(), value["times"].as_u64()) {
        (Some(piece), Some(times)) => piece.repeat(times as usize),
        _ => panic!("corpus event {name:?}: {value} is neither a string nor {{repeat, times}}"),
    }
}

// ---------------------------------------------------------------------------
// Stream bodies as the forwarder saw them

/// The body of a chunked response as far as it was recorded: the head
/// is skipped and the chunk framing removed. Text only (what the forwarder
/// keeps); a chunk cut short by the end of the record is kept as far as
/// it goes.
pub fn dechunk(response: &str) -> String {
    let Some(start) = response.find("\r\n\r\n") else {
        return String::new();
    };
    let mut rest = &response[start + 4..];
    let mut body = String::new();
    while let Some(line_end) = rest.find("\r\n") {
        let Ok(size) = usize::from_str_radix(rest[..line_end].trim(), 16) else {
            panic!("not a chunk size line: {:?}", &rest[..line_end]);
        };
        if size == 0 {
            break;
        }
        let payload = &rest[line_end + 2..];
        let take = size.min(payload.len());
        body.push_str(payload.get(..take).unwrap_or(payload));
        if take < size {
            break;
        }
        rest = payload[take..].strip_prefix("\r\n").unwrap_or("");
    }
    body
}

/// The first chunk of a chunked response: the stream's first bytes, which
/// sseloop writes with the head (the greeting, or a refusal).
pub fn first_chunk(response: &str) -> String {
    let start = response
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {response:?}"));
    let rest = &response[start + 4..];
    let line_end = rest
        .find("\r\n")
        .unwrap_or_else(|| panic!("no chunk after the head: {response:?}"));
    let size = usize::from_str_radix(&rest[..line_end], 16)
        .unwrap_or_else(|_| panic!("not a chunk size line: {rest:?}"));
    rest.get(line_end + 2..line_end + 2 + size)
        .unwrap_or_else(|| panic!("first chunk cut short: {rest:?}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// Checks of the corpus itself

/// Reads more of a close-delimited stream into `bytes` until `done` says
/// the body is complete; the body.
fn read_body_until(
    stream: &mut std::net::TcpStream,
    bytes: &mut Vec<u8>,
    done: impl Fn(&str) -> bool,
) -> String {
    let end = deadline();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let text = String::from_utf8_lossy(bytes);
        if let Some(start) = text.find("\r\n\r\n") {
            let body = &text[start + 4..];
            if done(body) {
                return body.to_string();
            }
        }
        assert!(Instant::now() < end, "stream incomplete: {text:?}");
        let n = stream.read(&mut buf).expect("read the stream");
        assert!(n > 0, "stream ended early: {text:?}");
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// The hand-worked values of the corpus file are what each library's
/// model makes of sseloop's real encoding of every event, read off a
/// stream: the WHATWG values for the conforming dialect, the quirks for
/// the others. (The clients themselves are held to the same values in
/// `corpus::`.) Also pins the corpus's shape: every kind of payload the
/// tests promise is in it.
#[test]
fn corpus_values_are_what_each_dialect_makes_of_sseloops_encoding() {
    let corpus = Corpus::load();
    for needle in ["\r", "\r\n", "\u{1F680}", "\u{2028}", "id: x"] {
        assert!(
            corpus.items.iter().any(|i| i.body.contains(needle)),
            "the corpus has no body with {needle:?}"
        );
    }
    assert!(corpus.items.iter().any(|i| i.body.is_empty()));
    assert!(corpus.items.iter().any(|i| i.body.len() >= 60 * 1024));
    assert!(corpus.items.iter().any(|i| i.event_type.is_some()));

    let server = TestServer::start(&["--framing", "close", "--heartbeat", "0"]);
    let mut stream = connect(server.addr());
    stream
        .write_all(b"GET /events?topic=corpus HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    // Published only once the stream is there.
    let mut bytes = Vec::new();
    read_body_until(&mut stream, &mut bytes, |body| {
        body.contains(": connected\n")
    });
    let ids = corpus.publish_all(&mut server.publisher(), "corpus");
    let last = format!("id: {}\n", ids[ids.len() - 1]);
    let body = read_body_until(&mut stream, &mut bytes, |body| {
        body.find(&last)
            .is_some_and(|at| body[at..].contains("\n\n"))
    });
    // From the first event on: what each dialect makes of the greeting is
    // the business of the client tests.
    let events = &body[body.find("id: ").expect("an event")..];
    for dialect in [
        Dialect::Whatwg,
        Dialect::SseclientPy,
        Dialect::HttpxSse,
        Dialect::FetchEventSource,
    ] {
        let got = interpret(dialect, events);
        let want = corpus.expected(dialect, &ids);
        assert_eq!(got.len(), want.len(), "{dialect:?}: {got:#?}");
        for ((got, want), item) in got.iter().zip(&want).zip(&corpus.items) {
            assert_eq!(got, want, "{dialect:?}: corpus event {:?}", item.name);
        }
    }
}

/// The model's own rules, on streams written out by hand: what each
/// dialect makes of a greeting, heartbeats and a `retry:` block.
#[test]
fn model_dialects_differ_where_the_libraries_do() {
    let stream = "retry: 200\n: connected\n\n: heartbeat\n\nid: a\ndata: one\n\n: heartbeat\n\nid: b\nevent: t\ndata:\ndata: two\n\n";
    let seen = |d| {
        interpret(d, stream)
            .into_iter()
            .map(|s| format!("{}|{}|{}", s.event_type, s.id, s.data))
            .collect::<Vec<_>>()
    };
    assert_eq!(seen(Dialect::Whatwg), ["message|a|one", "t|b|\ntwo"]);
    assert_eq!(seen(Dialect::SseclientPy), ["message|a|one", "t|b|\ntwo"]);
    assert_eq!(
        seen(Dialect::HttpxSse),
        ["message||", "message|a|one", "message|a|", "t|b|\ntwo"]
    );
    assert_eq!(
        seen(Dialect::FetchEventSource),
        [
            "message||",
            "message||",
            "message|a|one",
            "message||",
            "t|b|two"
        ]
    );
    // A greeting with one line end is silent in every dialect, and its
    // `retry:` rides with the first event.
    for d in [
        Dialect::Whatwg,
        Dialect::SseclientPy,
        Dialect::HttpxSse,
        Dialect::FetchEventSource,
    ] {
        assert_eq!(interpret(d, "retry: 200\n: connected\n"), []);
        assert_eq!(
            interpret(d, "retry: 200\n: connected\nid: a\ndata: x\n\n").len(),
            1,
            "{d:?}"
        );
    }
    assert_eq!(
        dechunk("HTTP/1.1 200 OK\r\n\r\n3\r\nab\n\r\n2\r\ncd\r\n0\r\n\r\n"),
        "ab\ncd"
    );
    assert_eq!(
        first_chunk("HTTP/1.1 200 OK\r\n\r\n3\r\nab\n\r\n2\r\ncd"),
        "ab\n"
    );
}
