//! The publish path's parsing and encoding on arbitrary strings: routing of
//! a target (`route`), the query (`query_pairs`, `percent_decode`), a whole
//! request head (`parse_head`), and the wire encoding of the event a publish
//! makes (`Frame::event`).
//!
//! Checked, beyond "nothing panics":
//! - a routed publish or subscribe holds only valid topics (1 to 128 bytes,
//!   no control characters), each once, and an event type that can be sent
//!   (no CR, LF or NUL, not empty); the route agrees with a model built
//!   from `query_pairs`;
//! - `percent_decode` undoes percent-encoding of any string;
//! - a complete head is no longer than the input nor the head limit;
//! - an encoded event's payload has only `id:`, `event:` and `data:` lines
//!   and exactly one blank line, at its end; a WHATWG EventSource parser
//!   reads back exactly one event with that id, type and data (line breaks
//!   normalized to LF); the chunked wire form frames it correctly.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sseloop::Framing;
use sseloop::_internals::http::{
    HeadParse, MAX_TOPIC_LEN, Policy, Route, Status, parse_head, percent_decode, query_pairs,
    route, valid_topic,
};
use sseloop::_internals::Frame;
use sseloop::valid_event_type;

#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Get,
    Post,
    Options,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method<'a>,
    target: &'a str,
    last_event_id: Option<String>,
    query: &'a str,
    plain: String,
    head: &'a [u8],
    token: bool,
    run: u64,
    seq: u64,
    event_type: Option<&'a str>,
    data: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    routes(&input);
    query_model(input.query);
    decoding(&input.plain);
    head(input.head, input.token);
    encoding(&input);
});

fn check_topics(topics: &[String]) {
    for (i, topic) in topics.iter().enumerate() {
        assert!(valid_topic(topic), "invalid topic {topic:?} routed");
        assert!(topic.len() <= MAX_TOPIC_LEN);
        assert!(!topic.chars().any(char::is_control));
        assert!(!topics[..i].contains(topic), "topic {topic:?} twice");
    }
}

fn check_route(result: &Result<Route, sseloop::_internals::http::Reject>, last_event_id: Option<&str>) {
    match result {
        Ok(Route::Publish { topics, event_type }) => {
            check_topics(topics);
            if let Some(t) = event_type {
                assert!(!t.is_empty() && valid_event_type(t), "event type {t:?}");
            }
        }
        Ok(Route::Subscribe {
            topics,
            last_event_id: id,
        }) => {
            check_topics(topics);
            if let Some(given) = last_event_id {
                assert_eq!(id.as_deref(), Some(given), "the header's id wins");
            }
        }
        Ok(_) => {}
        Err(reject) => assert!(
            [
                Status::BAD_REQUEST,
                Status::NOT_FOUND,
                Status::METHOD_NOT_ALLOWED
            ]
            .contains(&reject.status),
            "unexpected status {:?}",
            reject.status
        ),
    }
}

fn routes(input: &Input<'_>) {
    let method = match input.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Options => "OPTIONS",
        Method::Other(m) => m,
    };
    let lei = input.last_event_id.as_deref();
    check_route(
        &route(method, input.target, input.last_event_id.clone()),
        lei,
    );
    check_route(&route("POST", input.target, None), None);
    let publish = format!("/publish?{}", input.query);
    check_route(&route("POST", &publish, None), None);
    let subscribe = format!("/events?{}", input.query);
    check_route(&route("GET", &subscribe, input.last_event_id.clone()), lei);
}

/// `route` on a publish target agrees with what its query pairs say.
fn query_model(query: &str) {
    let got = route("POST", &format!("/publish?{query}"), None);
    let Ok(pairs) = query_pairs(query) else {
        assert!(got.is_err(), "query_pairs refused {query:?}, route took it");
        return;
    };
    let mut topics: Vec<String> = Vec::new();
    let mut event_type = None;
    let mut bad = false;
    for (key, value) in pairs {
        match key.as_str() {
            "topic" if !valid_topic(&value) => {
                bad = true;
                break;
            }
            "topic" if topics.contains(&value) => {}
            "topic" => topics.push(value),
            "event" if value.is_empty() => event_type = None,
            "event" if !valid_event_type(&value) => {
                bad = true;
                break;
            }
            "event" => event_type = Some(value),
            _ => {}
        }
    }
    if bad {
        assert_eq!(
            got.map_err(|r| r.status),
            Err(Status::BAD_REQUEST),
            "{query:?}"
        );
    } else {
        assert_eq!(got, Ok(Route::Publish { topics, event_type }), "{query:?}");
    }
}

/// Percent-encodes everything but unreserved characters, with lower- or
/// upper-case hex digits.
fn percent_encode(text: &str, upper: bool) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn decoding(plain: &str) {
    let _ = percent_decode(plain);
    let _ = query_pairs(plain);
    for upper in [false, true] {
        assert_eq!(
            percent_decode(&percent_encode(plain, upper)).as_deref(),
            Ok(plain),
            "percent-encoding does not round-trip (upper-case hex: {upper})"
        );
    }
    // A form-encoded space.
    let plus = percent_encode(plain, false).replace("%20", "+");
    assert_eq!(percent_decode(&plus).as_deref(), Ok(plain), "+ is a space");
}

fn head(bytes: &[u8], token: bool) {
    let policy = Policy {
        max_head_size: 8192,
        max_headers: 64,
        max_body: 65536,
        publish_token: token.then(|| "fuzz-token".to_string()),
        loopback_hosts: true,
        allow_hosts: Vec::new(),
        allow_origin: None,
        access: None,
    };
    match parse_head(bytes, &policy) {
        HeadParse::Complete(head, len) => {
            assert!(len <= bytes.len() && len <= policy.max_head_size);
            check_route(&head.route, None);
            // Who may publish is the server's `app` to say; the parser only
            // says whether the publish token was presented.
            if head.bears_publish_token {
                assert!(token && matches!(head.route, Ok(Route::Publish { .. })));
                let text = String::from_utf8_lossy(&bytes[..len]).to_ascii_lowercase();
                assert!(
                    text.contains("fuzz-token"),
                    "the publish token seen where it is not"
                );
            }
        }
        HeadParse::Incomplete => assert!(bytes.len() <= policy.max_head_size),
        HeadParse::Invalid(_) => {}
    }
}

/// What a WHATWG EventSource makes of a stream: the dispatched events as
/// (id, type, data), and the field names seen.
fn parse_stream(text: &str) -> (Vec<(String, String, String)>, Vec<String>) {
    let mut events = Vec::new();
    let mut fields = Vec::new();
    let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                events.push((
                    id.clone(),
                    std::mem::take(&mut kind),
                    std::mem::take(&mut data),
                ));
            }
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        fields.push(field.to_string());
        match field {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "event" => kind = value.to_string(),
            "id" if !value.contains('\0') => id = value.to_string(),
            _ => {}
        }
    }
    assert!(rest.is_empty(), "bytes after the last line: {rest:?}");
    (events, fields)
}

fn encoding(input: &Input<'_>) {
    let id = format!("{:x}-{}", input.run, input.seq);
    let event_type = input.event_type.filter(|t| valid_event_type(t));
    let frame = Frame::event(&id, event_type, input.data);
    let payload = std::str::from_utf8(frame.payload()).expect("payload is UTF-8");

    // Lines: only id, event and data fields; one blank line, the last.
    assert!(!payload.contains('\r'), "a CR in the payload");
    let body = payload
        .strip_suffix("\n\n")
        .unwrap_or_else(|| panic!("payload does not end with a blank line: {payload:?}"));
    for line in body.split('\n') {
        assert!(
            line.starts_with("id: ") || line.starts_with("event: ") || line.starts_with("data: "),
            "line {line:?} in {payload:?}"
        );
    }

    // What a browser reads back.
    let (events, fields) = parse_stream(payload);
    assert!(
        fields
            .iter()
            .all(|f| ["id", "event", "data"].contains(&f.as_str())),
        "{fields:?}"
    );
    let normalized = input.data.replace("\r\n", "\n").replace('\r', "\n");
    let want_type = event_type.unwrap_or_default().to_string();
    assert_eq!(events, [(id.clone(), want_type, normalized)], "{payload:?}");

    // The chunked wire form: size line, payload, CRLF.
    let chunk = frame.wire(Framing::Chunked);
    let mut expected = format!("{:x}\r\n", payload.len()).into_bytes();
    expected.extend_from_slice(payload.as_bytes());
    expected.extend_from_slice(b"\r\n");
    assert_eq!(chunk, &expected[..]);
    assert_eq!(frame.wire(Framing::Close), payload.as_bytes());

    // The library's Event encodes the same way.
    let mut event = sseloop::Event::new(input.data);
    if let Some(t) = event_type {
        event = event.with_type(t);
    }
    assert_eq!(event.encode(&id).payload(), frame.payload());
}
