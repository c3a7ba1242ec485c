//! Property: any published data survives the encoder and a WHATWG-conformant
//! event-stream parser unchanged (line breaks aside, which the format turns
//! into LF), as exactly one event with the given id and type and no other
//! field, whatever CR, LF, NUL, colons or field-like lines the data holds.
//!
//! The parser below follows the HTML standard's "Interpreting an event
//! stream" (§9.2.6) step by step; it is written for this test, independent of
//! the harness's and the server's code.

use proptest::prelude::*;
use sseloop::_internals::Frame;
use sseloop::Framing;

/// One event as the standard dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dispatched {
    event_type: String,
    data: String,
    last_event_id: String,
}

/// The state of one EventSource's stream interpretation.
#[derive(Debug, Default)]
struct Interpreter {
    /// No character seen yet: a leading BOM is still to be dropped.
    started: bool,
    /// The last character was a CR: an LF right after it ends nothing.
    after_cr: bool,
    /// The current line so far.
    line: String,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    /// The EventSource's last event ID string.
    last_event_id: String,
    reconnection_time: Option<u64>,
    dispatched: Vec<Dispatched>,
    /// Every field processed, in order: (name, value).
    fields: Vec<(String, String)>,
    comments: usize,
}

impl Interpreter {
    /// Feeds decoded text (the standard decodes the stream as UTF-8 first).
    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if !self.started {
                self.started = true;
                // "One leading U+FEFF BYTE ORDER MARK character must be
                // ignored if any are present."
                if c == '\u{FEFF}' {
                    continue;
                }
            }
            if std::mem::take(&mut self.after_cr) && c == '\n' {
                continue; // the LF of a CRLF
            }
            match c {
                '\r' => {
                    self.after_cr = true;
                    self.end_line();
                }
                '\n' => self.end_line(),
                c => self.line.push(c),
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        // "If the line is empty (a blank line): dispatch the event."
        if line.is_empty() {
            return self.dispatch();
        }
        // "If the line starts with a U+003A COLON character: ignore the line."
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        // "If the line contains a U+003A COLON character: collect the
        // characters before it as field, after it as value; if value starts
        // with a U+0020 SPACE character, remove it from value." Otherwise the
        // whole line is the field and the value is empty.
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        self.fields.push((field.to_string(), value.to_string()));
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // The id is taken unless it contains a NUL.
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_string(),
            // Retry is taken when it is all ASCII digits.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.reconnection_time = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {} // "Otherwise: the field is ignored."
        }
    }

    fn dispatch(&mut self) {
        // 1. Set the last event ID string to the last event ID buffer.
        self.last_event_id.clone_from(&self.last_event_id_buffer);
        // 2. Empty data buffer: reset data and type buffers, return.
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        // 3. Remove one trailing LF from the data buffer.
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        // 4-6. The event: type "message" unless one was given.
        let event_type = if self.event_type.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(&mut self.event_type)
        };
        self.dispatched.push(Dispatched {
            event_type,
            data: std::mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        });
        self.event_type.clear();
    }

    /// True when nothing is pending: no partial line, no undispatched data.
    fn idle(&self) -> bool {
        self.line.is_empty() && self.data.is_empty() && self.event_type.is_empty()
    }
}

/// What the standard makes of the data: every CRLF, CR and LF is one LF.
fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// The type an EventSource dispatches for `event_type`.
fn dispatched_type(event_type: Option<&str>) -> String {
    match event_type {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => "message".to_string(),
    }
}

/// Pieces that trouble naive encoders and parsers.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\r".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\n\r".to_string()),
        Just("\r\r\n\n".to_string()),
        Just("\0".to_string()),
        Just(" ".to_string()),
        Just("  ".to_string()),
        Just(":".to_string()),
        Just(": comment".to_string()),
        Just("id: x".to_string()),
        Just("id:".to_string()),
        Just("event: y".to_string()),
        Just("retry: 5".to_string()),
        Just("data: z".to_string()),
        Just("data".to_string()),
        Just("\u{FEFF}".to_string()),
        Just("\u{2028}\u{85}".to_string()),
        "[a-z]{1,8}",
        any::<String>(),
    ]
}

/// Any UTF-8, and mixes of the pieces above.
fn data() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(piece(), 0..16).prop_map(|pieces| pieces.concat()),
    ]
}

/// No type, or any type without CR, LF or NUL (what the server accepts).
fn event_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        r"[^\r\n\x00]{0,16}",
        Just(String::new()),
        Just(" x".to_string()),
        Just(":".to_string()),
        Just("retry: 5".to_string()),
        Just("id: 1".to_string()),
        Just("message".to_string()),
        Just("\u{FEFF}".to_string()),
    ])
}

/// Ids as the server makes them: `<run>-<seq>`.
fn id() -> impl Strategy<Value = String> {
    r"[0-9a-f]{12}-[1-9][0-9]{0,15}"
}

/// Encodes through the public `Frame` API and checks the frame's shape.
fn encode(id: &str, event_type: Option<&str>, data: &str) -> String {
    let frame = Frame::event(id, event_type, data);
    let payload = frame.payload();
    // Chunked streams write the payload as one chunk.
    let mut chunk = format!("{:x}\r\n", payload.len()).into_bytes();
    chunk.extend_from_slice(payload);
    chunk.extend_from_slice(b"\r\n");
    assert_eq!(frame.wire(Framing::Chunked), &chunk[..], "chunk framing");
    let text = std::str::from_utf8(payload).expect("the payload is UTF-8");
    // Only LF ends lines, so no chunk boundary can split a CRLF.
    assert!(!text.contains('\r'), "a CR on the wire: {text:?}");
    assert!(text.ends_with("\n\n"), "the event is not closed: {text:?}");
    text.to_string()
}

/// Checks that `parser` saw exactly the fields of one event: the id, the
/// type when given, then data lines only.
fn assert_fields(
    fields: &[(String, String)],
    id: &str,
    event_type: Option<&str>,
    data: &str,
) -> Result<(), TestCaseError> {
    let mut expected = vec![("id".to_string(), id.to_string())];
    if let Some(t) = event_type {
        expected.push(("event".to_string(), t.to_string()));
    }
    for line in normalised(data).split('\n') {
        expected.push(("data".to_string(), line.to_string()));
    }
    prop_assert_eq!(fields, &expected[..]);
    Ok(())
}

proptest! {
    #[test]
    fn any_data_is_one_event_with_its_id_and_type_and_nothing_else(
        data in data(),
        event_type in event_type(),
        id in id(),
    ) {
        let text = encode(&id, event_type.as_deref(), &data);
        let mut parser = Interpreter::default();
        parser.feed(&text);
        let expected = Dispatched {
            event_type: dispatched_type(event_type.as_deref()),
            data: normalised(&data),
            last_event_id: id.clone(),
        };
        prop_assert_eq!(&parser.dispatched, &vec![expected]);
        prop_assert_eq!(parser.reconnection_time, None, "a retry field");
        prop_assert_eq!(parser.comments, 0, "a comment line");
        prop_assert!(parser.idle(), "left over after the event: {:?}", parser);
        assert_fields(&parser.fields, &id, event_type.as_deref(), &data)?;
    }

    #[test]
    fn two_events_on_one_stream_stay_apart(
        first in data(),
        second in data(),
        first_type in event_type(),
        second_type in event_type(),
        ids in (id(), id()),
        bom in any::<bool>(),
    ) {
        // A stream: an optional BOM, the connected comment, two events.
        let mut stream = String::new();
        if bom {
            stream.push('\u{FEFF}');
        }
        stream.push_str(": connected\n\n");
        stream.push_str(&encode(&ids.0, first_type.as_deref(), &first));
        stream.push_str(&encode(&ids.1, second_type.as_deref(), &second));
        let mut parser = Interpreter::default();
        parser.feed(&stream);
        let expected = vec![
            Dispatched {
                event_type: dispatched_type(first_type.as_deref()),
                data: normalised(&first),
                last_event_id: ids.0.clone(),
            },
            Dispatched {
                event_type: dispatched_type(second_type.as_deref()),
                data: normalised(&second),
                last_event_id: ids.1.clone(),
            },
        ];
        prop_assert_eq!(&parser.dispatched, &expected);
        prop_assert_eq!(parser.reconnection_time, None);
        prop_assert_eq!(parser.comments, 1, "only the connected comment");
        prop_assert!(parser.idle());
    }
}

/// The interpreter itself, on the standard's own examples, so that the
/// properties above rest on a parser that does what the standard says.
#[test]
fn the_interpreter_follows_the_standard_examples() {
    let mut p = Interpreter::default();
    p.feed("\u{FEFF}data: YHOO\ndata: +2\ndata: 10\n\n");
    p.feed(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n");
    p.feed("data:  third event\n\n");
    p.feed("data\n\ndata\ndata\n\n");
    p.feed("event: add\r\ndata: 73857293\r\rretry: 10\nid: a\0b\ndata: x\n\n");
    // An event the stream ends before its blank line is never dispatched.
    p.feed("data: never\n");
    let got: Vec<(&str, &str, &str)> = p
        .dispatched
        .iter()
        .map(|d| {
            (
                d.event_type.as_str(),
                d.data.as_str(),
                d.last_event_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("message", "YHOO\n+2\n10", ""),
            ("message", "first event", "1"),
            ("message", "second event", ""),
            ("message", " third event", ""),
            ("message", "", ""),
            ("message", "\n", ""),
            ("add", "73857293", ""),
            ("message", "x", ""),
        ]
    );
    assert_eq!(p.reconnection_time, Some(10));
    assert_eq!(p.comments, 1);
    assert!(!p.idle(), "the unfinished event is still pending");
}
