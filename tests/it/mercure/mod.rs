//! The Mercure hub at `/.well-known/mercure`, tested from the draft
//! (draft-dunglas-mercure, as `docs/mercure-conformance.md` lists its
//! MUSTs) over raw sockets: `subscribe` (matchers, resume), `publish`
//! (the form publish), `tokens` (authorization, private updates, the one
//! rule with sseloop's private topics), `shared` (one hub with `/events`
//! and `/publish`), `cluster` (on Redis), `browsers` (Chromium and Firefox
//! on a page that shares the hub's origin). What they share: the requests.

mod browsers;
mod cluster;
mod publish;
mod shared;
mod subscribe;
mod tokens;

use crate::support::{HttpConn, Response, Subscriber, TestServer, deadline};

/// The hub's path.
pub const HUB: &str = "/.well-known/mercure";

/// A `GET` subscription with this query (`match=…&…`, already encoded)
/// and extra header lines (each ending in CRLF).
pub fn subscribe_request(query: &str, headers: &str) -> Vec<u8> {
    format!("GET {HUB}?{query} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").into_bytes()
}

/// A form publish of `body` (already encoded) with extra header lines.
pub fn publish_request(body: &str, headers: &str) -> Vec<u8> {
    format!(
        "POST {HUB} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Subscribes with `query`, up to the `: connected` comment.
pub fn subscribe(server: &TestServer, query: &str) -> Subscriber {
    subscribe_with(server, query, "")
}

/// `subscribe` with extra header lines.
pub fn subscribe_with(server: &TestServer, query: &str, headers: &str) -> Subscriber {
    let mut sub = server.subscribe_raw(&subscribe_request(query, headers));
    sub.expect_connected();
    sub
}

/// The answer to one raw request on a connection of its own, and the
/// connection.
pub fn request(server: &TestServer, raw: &[u8]) -> (Response, HttpConn) {
    let mut conn = server.http();
    conn.send(raw);
    let response = conn.read_response(deadline());
    (response, conn)
}

/// The `?`-less query of `pairs`, values percent-encoded as
/// `URLSearchParams` does (names as given).
pub fn form(pairs: &[(&str, &str)]) -> String {
    crate::support::query(pairs)
        .trim_start_matches('?')
        .to_owned()
}

/// The events `sub` receives up to and including the one with id `last`,
/// as (id, data).
pub fn events_through(sub: &mut Subscriber, last: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let event = sub.next_event();
        let id = event.id.clone().expect("every event has an id");
        seen.push((id.clone(), event.data));
        if id == last {
            return seen;
        }
    }
}
