//! The subscribe response: head, headers, first bytes and body framing.

use std::time::{Duration, Instant};

use crate::support::{TestServer, deadline, query};

/// The headers every stream must carry to get through proxies unbuffered.
fn assert_stream_headers(head: &crate::support::Head) {
    assert_eq!(head.version, "HTTP/1.1");
    assert_eq!(head.status, 200);
    assert_eq!(head.reason, "OK");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("connection"), Some("keep-alive"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    // A stream has no length; a Content-Length would make clients stop early.
    assert_eq!(head.header("content-length"), None);
}

#[test]
fn head_has_sse_and_anti_buffering_headers() {
    let server = TestServer::start(&[]);
    let sub = server.subscribe("?topic=a");
    assert_stream_headers(&sub.head);
    assert_eq!(sub.head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(sub.head.count("transfer-encoding"), 1);
}

#[test]
fn first_body_bytes_arrive_with_the_head() {
    let server = TestServer::start(&[]);
    let started = Instant::now();
    let mut sub = server.subscribe("?topic=a");
    // Nothing is published: the comment must come on its own, or a browser's
    // `open` (and a proxy's pass-through of the head) would wait for an event.
    sub.expect_connected();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "first bytes held back"
    );
    assert_eq!(sub.body_prefix(), b": connected\n");
}

#[test]
fn retry_opens_the_stream_when_configured() {
    let server = TestServer::start(&["--retry", "1500ms"]);
    let sub = server.subscribe_ready("");
    assert_eq!(sub.body_prefix(), b"retry: 1500\n: connected\n");
}

#[test]
fn no_retry_line_by_default() {
    let server = TestServer::start(&[]);
    let sub = server.subscribe_ready("");
    assert!(!sub.body_prefix().starts_with(b"retry"));
}

#[test]
fn retry_accepts_seconds() {
    let server = TestServer::start(&["--retry", "3s"]);
    let sub = server.subscribe_ready("");
    assert_eq!(sub.body_prefix(), b"retry: 3000\n: connected\n");
}

/// Decodes the complete chunks at the start of `raw` (panics on a malformed
/// size line); also says whether the terminating chunk was seen.
fn decode_chunks(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut rest = raw;
    let mut decoded = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (decoded, false);
        };
        let line = std::str::from_utf8(&rest[..eol]).expect("chunk size line is ASCII");
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?} in {raw:?}"));
        if size == 0 {
            return (decoded, true);
        }
        let data = &rest[eol + 2..];
        if data.len() < size + 2 {
            return (decoded, false);
        }
        assert_eq!(
            &data[size..size + 2],
            b"\r\n",
            "chunk without CRLF in {raw:?}"
        );
        decoded.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

#[test]
fn chunked_stream_is_valid_chunked_encoding() {
    let server = TestServer::start(&[]);
    let mut conn = server.http();
    conn.send(b"GET /events?topic=a HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head = conn.read_head(deadline());
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let id = server.publisher().publish_ok("?topic=a", b"hi");
    let expected = format!(": connected\nid: {id}\ndata: hi\n\n");
    let raw = conn.take_raw_when(|raw| decode_chunks(raw).0.len() >= expected.len());
    let (decoded, ended) = decode_chunks(&raw);
    assert!(!ended, "stream ended early: {raw:?}");
    assert_eq!(String::from_utf8(decoded).unwrap(), expected);
}

#[test]
fn http10_stream_is_close_delimited() {
    let server = TestServer::start(&[]);
    let mut conn = server.http();
    conn.send(b"GET /events?topic=a HTTP/1.0\r\n\r\n");
    let head = conn.read_head(deadline());
    assert_stream_headers(&head);
    assert_eq!(head.header("transfer-encoding"), None);
    let id = server.publisher().publish_ok("?topic=a", b"one\ntwo");
    // No chunk framing: the body is the SSE text itself.
    let expected = format!(": connected\nid: {id}\ndata: one\ndata: two\n\n");
    let body = conn.take_raw_until(expected.as_bytes());
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[test]
fn framing_close_sends_http11_streams_without_chunks() {
    let server = TestServer::start(&["--framing", "close"]);
    let mut conn = server.http();
    conn.send(b"GET /events?topic=a HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head = conn.read_head(deadline());
    assert_stream_headers(&head);
    assert_eq!(head.header("transfer-encoding"), None);
    let id = server.publisher().publish_ok("?topic=a", b"x");
    let expected = format!(": connected\nid: {id}\ndata: x\n\n");
    let body = conn.take_raw_until(expected.as_bytes());
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[test]
fn framing_chunked_is_accepted_explicitly() {
    let server = TestServer::start(&["--framing", "chunked"]);
    let sub = server.subscribe("");
    assert_eq!(sub.head.header("transfer-encoding"), Some("chunked"));
}

#[test]
fn framing_close_streams_decode_like_browsers_see_them() {
    let server = TestServer::start(&["--framing", "close"]);
    let mut sub = server.subscribe_ready(&query(&[("topic", "a")]));
    let mut publisher = server.publisher();
    for n in 0..5 {
        let body = format!("event {n}");
        let id = publisher.publish_ok("?topic=a", body.as_bytes());
        let event = sub.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert_eq!(event.data, body);
    }
}

#[test]
fn subscribe_request_split_into_tiny_writes() {
    let server = TestServer::start(&[]);
    let mut conn = server.http();
    conn.send_in_pieces(
        b"GET /events?topic=a HTTP/1.1\r\nHost: localhost\r\n\r\n",
        3,
    );
    let head = conn.read_head(deadline());
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
}

#[test]
fn subscriber_stays_open_while_idle() {
    // Heartbeats off: the stream must not be closed for being quiet.
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut sub = server.subscribe_ready("?topic=a");
    sub.expect_no_event(Duration::from_millis(300));
    let id = server.publisher().publish_ok("?topic=a", b"late");
    assert_eq!(sub.next_event().id, Some(id));
}
