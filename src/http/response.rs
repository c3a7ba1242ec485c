//! The bytes of every answer: error answers, `200`s, preflights, and the
//! head (with its first body bytes) of an event stream.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Reject, Status};

/// Sent when a client asked `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The answer to a rejected request; the connection closes after it.
/// `cors` is the allowed origin, when one is configured.
pub fn error_response(reject: &Reject, cors: Option<&str>) -> Vec<u8> {
    let Status(code, phrase) = reject.status;
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        "HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reject.reason.len() + 1
    );
    if let Some(allow) = reject.allow {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    match (reject.challenge, reject.status) {
        (Some(challenge), _) => {
            let _ = write!(out, "WWW-Authenticate: {challenge}\r\n");
        }
        (None, Status::UNAUTHORIZED) => out.push_str("WWW-Authenticate: Bearer\r\n"),
        (None, Status::UNAVAILABLE) => out.push_str("Retry-After: 1\r\n"),
        _ => {}
    }
    cors_headers(&mut out, cors);
    let _ = write!(out, "\r\n{}\n", reject.reason);
    out.into_bytes()
}

/// A `200 text/plain` answer; `keep_alive` says whether the connection stays.
pub fn text_response(body: &str, keep_alive: bool, cors: Option<&str>) -> Vec<u8> {
    ok_response("text/plain; charset=utf-8", body, keep_alive, cors)
}

/// A `200` answer with the given content type.
pub fn ok_response(
    content_type: &str,
    body: &str,
    keep_alive: bool,
    cors: Option<&str>,
) -> Vec<u8> {
    let mut out = ok_head(content_type, body, keep_alive, cors);
    out.push_str(body);
    out.into_bytes()
}

/// The answer to a `HEAD`: the head `ok_response` gives the `GET`, its
/// `Content-Length` the body's, without the body.
pub fn head_response(
    content_type: &str,
    body: &str,
    keep_alive: bool,
    cors: Option<&str>,
) -> Vec<u8> {
    ok_head(content_type, body, keep_alive, cors).into_bytes()
}

/// The head of a `200`, in a string with room for the body after it: one
/// allocation per answer (every publish gets one), where `format!` made
/// two or three and took more instructions than the rest of the answer.
fn ok_head(content_type: &str, body: &str, keep_alive: bool, cors: Option<&str>) -> String {
    const FIXED: &str = "HTTP/1.1 200 OK\r\nContent-Type: \r\nContent-Length: 18446744073709551615\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n";
    let cors_room = cors.map_or(0, |origin| origin.len() + 100);
    let mut out = String::with_capacity(FIXED.len() + content_type.len() + cors_room + body.len());
    out.push_str("HTTP/1.1 200 OK\r\nContent-Type: ");
    out.push_str(content_type);
    out.push_str("\r\nContent-Length: ");
    let _ = write!(out, "{}", body.len());
    out.push_str("\r\nCache-Control: no-cache\r\nConnection: ");
    out.push_str(if keep_alive { "keep-alive" } else { "close" });
    out.push_str("\r\n");
    cors_headers(&mut out, cors);
    out.push_str("\r\n");
    out
}

/// A page's answer (`text/html`): `body` gzip-coded when `gzip`, the head
/// alone for a `HEAD`. Caches keep one per `Accept-Encoding`.
pub fn page_response(
    body: &[u8],
    gzip: bool,
    head_only: bool,
    keep_alive: bool,
    cors: Option<&str>,
) -> Vec<u8> {
    let coding = if gzip {
        "Content-Encoding: gzip\r\n"
    } else {
        ""
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n{coding}Vary: Accept-Encoding\r\nCache-Control: no-cache\r\nConnection: {connection}\r\n",
        body.len()
    );
    cors_headers(&mut out, cors);
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The answer to a CORS preflight from an allowed origin: the methods, and
/// the request headers an EventSource or a publishing page sends.
pub fn preflight_response(allow: &str, origin: &str, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Methods: {allow}, OPTIONS\r\nAccess-Control-Allow-Headers: Last-Event-ID, Cache-Control, Authorization, Content-Type\r\nAccess-Control-Max-Age: 86400\r\n{}Content-Length: 0\r\nConnection: {connection}\r\n\r\n",
        per_origin(origin)
    )
    .into_bytes()
}

fn cors_headers(out: &mut String, cors: Option<&str>) {
    if let Some(origin) = cors {
        let _ = write!(
            out,
            "Access-Control-Allow-Origin: {origin}\r\n{}",
            per_origin(origin)
        );
    }
}

/// What a fixed origin other than `*` adds: the answer varies by the
/// request's Origin, for caches that might serve it to another page; and
/// the page may send credentials, so that it can subscribe with the token
/// cookie (`withCredentials`). Browsers never send credentials to `*`.
fn per_origin(origin: &str) -> &'static str {
    if origin == "*" {
        ""
    } else {
        "Vary: Origin\r\nAccess-Control-Allow-Credentials: true\r\n"
    }
}

/// The head of an event stream with its first body bytes (`retry:` when set
/// and a comment), so a browser's `open` fires and a proxy passes the head on
/// at once. `chunked` selects the body framing.
///
/// The comment ends with one line end, not a blank line: a comment needs no
/// blank line after it, and a blank line there makes some client libraries
/// (fetch-event-source, and httpx-sse after `retry:`) hand the application
/// an empty event at the start of every stream (see README, Client libraries).
pub fn stream_head(chunked: bool, retry: Option<Duration>, cors: Option<&str>) -> Vec<u8> {
    let mut out = stream_head_only(chunked, cors);
    let mut first = String::new();
    if let Some(retry) = retry {
        let _ = writeln!(first, "retry: {}", retry.as_millis());
    }
    first.push_str(": connected\n");
    if chunked {
        let _ = write!(out, "{:x}\r\n{first}\r\n", first.len());
    } else {
        out.push_str(&first);
    }
    out.into_bytes()
}

fn stream_head_only(chunked: bool, cors: Option<&str>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\n",
    );
    if chunked {
        out.push_str("Transfer-Encoding: chunked\r\n");
    }
    cors_headers(&mut out, cors);
    out.push_str("\r\n");
    out
}

/// Inserts `name: value` as the last header field of `head` (an answer
/// whose head ends with the first blank line).
pub fn insert_field(head: &mut Vec<u8>, name: &str, value: &str) {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |i| i + 2);
    let rest = head.split_off(end);
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&rest);
}

/// A stream refused for now: the head, `retry:` and a comment saying why,
/// and the end of the body. An EventSource treats anything but a 200 stream
/// as final, so this is how a browser is told to come back later.
pub fn refused_stream(chunked: bool, retry: Duration, why: &str, cors: Option<&str>) -> Vec<u8> {
    let mut out = stream_head_only(chunked, cors);
    let body = format!("retry: {}\n: {why}\n\n", retry.as_millis());
    if chunked {
        let _ = write!(out, "{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    } else {
        out.push_str(&body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Route;
    use crate::http::test_support::head;

    #[test]
    fn preflight_and_cors() {
        assert_eq!(
            head("OPTIONS /events HTTP/1.1\r\nHost: localhost\r\n\r\n").route,
            Ok(Route::Preflight { allow: "GET" })
        );
        let text =
            String::from_utf8(preflight_response("POST", "https://app.example", true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(text.contains("Access-Control-Allow-Headers: Last-Event-ID, Cache-Control"));
        assert!(text.contains("Vary: Origin\r\n"));
        assert!(text.contains("Access-Control-Allow-Credentials: true\r\n"));
        let text = String::from_utf8(stream_head(true, None, Some("*"))).unwrap();
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(!text.contains("Vary") && !text.contains("Credentials"));
        let text = String::from_utf8(stream_head(true, None, None)).unwrap();
        assert!(!text.contains("Access-Control"));
    }

    #[test]
    fn responses() {
        let r = Reject::method("method not allowed", "GET");
        let text = String::from_utf8(error_response(&r, None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));
        assert!(text.contains("\r\nContent-Length: 19\r\n"));
        assert!(text.ends_with("\r\n\r\nmethod not allowed\n"));

        let head =
            String::from_utf8(stream_head(true, Some(Duration::from_millis(1500)), None)).unwrap();
        assert!(head.ends_with("\r\n\r\n18\r\nretry: 1500\n: connected\n\r\n"));
        let head = String::from_utf8(stream_head(false, None, None)).unwrap();
        assert!(!head.contains("Transfer-Encoding"));
        assert!(head.ends_with("\r\n\r\n: connected\n"));
    }
}
