//! The wire format of events: fields, line splitting, empty and hostile
//! bodies, unicode.

use crate::support::{Event, Publisher, Subscriber, TestServer, query};

/// A server with one subscriber on topic `t`, ready to receive.
fn setup() -> (TestServer, Subscriber, Publisher) {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let sub = server.subscribe_ready("?topic=t");
    let publisher = server.publisher();
    (server, sub, publisher)
}

/// Publishes `body` to topic `t` and returns the event as received, after
/// checking its id is the one the publish answered.
fn round_trip(sub: &mut Subscriber, publisher: &mut Publisher, q: &str, body: &[u8]) -> Event {
    let id = publisher.publish_ok(q, body);
    let event = sub.next_event();
    assert_eq!(event.id.as_deref(), Some(id.as_str()), "event {event:?}");
    event
}

#[test]
fn wire_bytes_of_an_event_with_type_and_two_lines() {
    let (_server, mut sub, mut publisher) = setup();
    let id = publisher.publish_ok("?topic=t&event=greet", b"hello\nworld");
    let event = sub.next_event();
    assert_eq!(
        event.raw,
        format!("id: {id}\nevent: greet\ndata: hello\ndata: world\n\n")
    );
}

#[test]
fn wire_bytes_of_an_untyped_event() {
    let (_server, mut sub, mut publisher) = setup();
    let id = publisher.publish_ok("?topic=t", b"plain");
    let event = sub.next_event();
    assert_eq!(event.raw, format!("id: {id}\ndata: plain\n\n"));
    assert_eq!(event.event, None);
}

#[test]
fn event_type_is_sent() {
    let (_server, mut sub, mut publisher) = setup();
    let event = round_trip(&mut sub, &mut publisher, "?topic=t&event=progress", b"50");
    assert_eq!(event.event.as_deref(), Some("progress"));
    assert_eq!(event.data, "50");
}

#[test]
fn cr_lf_and_crlf_all_split_lines() {
    let (_server, mut sub, mut publisher) = setup();
    // (body, what a browser's EventSource must see as data)
    let cases: &[(&[u8], &str)] = &[
        (b"a\nb", "a\nb"),
        (b"a\rb", "a\nb"),
        (b"a\r\nb", "a\nb"),
        (b"a\n\rb", "a\n\nb"),
        (b"a\r\rb", "a\n\nb"),
        (b"a\r\n\r\nb", "a\n\nb"),
        (b"one\rtwo\nthree\r\nfour", "one\ntwo\nthree\nfour"),
        (b"\nleading", "\nleading"),
        (b"trailing\n", "trailing\n"),
        (b"trailing cr\r", "trailing cr\n"),
        (b"\n", "\n"),
        (b"\r\n\r\n", "\n\n"),
    ];
    for (body, expected) in cases {
        let event = round_trip(&mut sub, &mut publisher, "?topic=t", body);
        assert_eq!(
            event.data,
            *expected,
            "body {:?} arrived as {:?}",
            String::from_utf8_lossy(body),
            event.raw
        );
        // Every line of the wire event is a field; a bare CR would be a
        // line break to the browser but not to a naive reader.
        assert!(
            !event.raw.contains('\r'),
            "raw CR on the wire: {:?}",
            event.raw
        );
    }
}

#[test]
fn trailing_newline_gives_a_final_empty_data_line() {
    let (_server, mut sub, mut publisher) = setup();
    let id = publisher.publish_ok("?topic=t", b"line\n");
    let event = sub.next_event();
    assert_eq!(event.raw, format!("id: {id}\ndata: line\ndata: \n\n"));
}

#[test]
fn empty_body_is_still_dispatched() {
    let (_server, mut sub, mut publisher) = setup();
    let event = round_trip(&mut sub, &mut publisher, "?topic=t", b"");
    assert_eq!(event.data, "");
    // The parser only dispatches when a data line was present.
    assert!(event.raw.contains("\ndata:"), "raw {:?}", event.raw);
}

#[test]
fn empty_body_with_event_type() {
    let (_server, mut sub, mut publisher) = setup();
    let event = round_trip(&mut sub, &mut publisher, "?topic=t&event=ping", b"");
    assert_eq!(event.event.as_deref(), Some("ping"));
    assert_eq!(event.data, "");
}

#[test]
fn body_cannot_inject_fields_or_events() {
    let (_server, mut sub, mut publisher) = setup();
    let hostile = "x\n\nid: 99\nevent: evil\ndata: y";
    let event = round_trip(&mut sub, &mut publisher, "?topic=t", hostile.as_bytes());
    assert_eq!(event.data, hostile);
    assert_eq!(event.event, None);
    // The very next event must be the next one published: nothing was split
    // off the hostile body.
    let next = round_trip(&mut sub, &mut publisher, "?topic=t", b"after");
    assert_eq!(next.data, "after");
    assert_eq!(next.event, None);
}

#[test]
fn body_lines_that_look_like_comments_and_retry_stay_data() {
    let (_server, mut sub, mut publisher) = setup();
    let hostile = ": not a comment\nretry: 1\r\n:\r\rid\nevent\ndata";
    let id = publisher.publish_ok("?topic=t&event=real", hostile.as_bytes());
    // Read raw items: a comment or retry item here would be an injection.
    let item = sub.next_item();
    let crate::support::Item::Event(event) = item else {
        panic!("expected the event, got {item:?}");
    };
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.event.as_deref(), Some("real"));
    assert_eq!(
        event.data,
        ": not a comment\nretry: 1\n:\n\nid\nevent\ndata"
    );
}

#[test]
fn unicode_data_topic_and_type_round_trip() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut sub = server.subscribe_ready(&query(&[("topic", "café ☕")]));
    let mut publisher = server.publisher();
    let body = "héllo wörld 🌍\n日本語のテキスト\nΩ≈ç√∫ \u{200b}zero-width";
    let q = query(&[("topic", "café ☕"), ("event", "prögress")]);
    let event = round_trip(&mut sub, &mut publisher, &q, body.as_bytes());
    assert_eq!(event.data, body);
    assert_eq!(event.event.as_deref(), Some("prögress"));
}

#[test]
fn nul_in_body_is_data() {
    // NUL is valid UTF-8; it is data, not a field separator.
    let (_server, mut sub, mut publisher) = setup();
    let event = round_trip(&mut sub, &mut publisher, "?topic=t", b"a\0b");
    assert_eq!(event.data, "a\0b");
}

#[test]
fn large_event_within_the_limit_arrives_whole() {
    let (_server, mut sub, mut publisher) = setup();
    // Just under the default 64 KiB limit, with many lines.
    let line = "0123456789abcdef".repeat(4);
    let body: String = (0..900).map(|n| format!("{n:04}{line}\n")).collect();
    assert!(body.len() < 64 * 1024);
    let event = round_trip(&mut sub, &mut publisher, "?topic=t", body.as_bytes());
    assert_eq!(event.data, body);
}
