//! Publishing: `Publisher`, a keep-alive publishing connection; the
//! publish request and the check of its answer; the ids it returns
//! (`urn:sseloop:<run>-<seq>`); the padded bodies that loss checks publish and compare;
//! publishing until the server cuts a slow subscriber off.

use super::{HttpConn, Response, TestServer, deadline};

/// A keep-alive connection that publishes.
pub struct Publisher {
    pub conn: HttpConn,
}

impl Publisher {
    /// Publishes `body` with `query` (e.g. `?topic=a`); returns the answer.
    pub fn publish(&mut self, query: &str, body: &[u8]) -> Response {
        self.conn.send(&publish_request(query, body));
        self.conn.read_response(deadline())
    }

    /// Publishes and asserts success; returns the assigned id.
    pub fn publish_ok(&mut self, query: &str, body: &[u8]) -> String {
        let response = self.publish(query, body);
        assert_publish_ok(&response)
    }
}

/// A complete `POST /publish` request with a Content-Length body.
pub fn publish_request(query: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /publish{query} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Asserts a publish answer is `200 text/plain` with an id; returns the id.
pub fn assert_publish_ok(response: &Response) -> String {
    assert_eq!(
        response.head.status,
        200,
        "publish answered {:?} {:?}",
        response.head,
        response.text()
    );
    let content_type = response.head.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain"),
        "publish Content-Type {content_type:?}"
    );
    let id = response.text();
    assert!(
        !id.is_empty() && !id.contains(['\r', '\n', '\0']),
        "publish answer is not a bare id: {id:?}"
    );
    id
}

/// The sequence number of an id `urn:sseloop:<run>-<seq>`.
pub fn id_seq(id: &str) -> u64 {
    let (_, seq) = id
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("id {id:?} is not <run>-<seq>"));
    seq.parse()
        .unwrap_or_else(|_| panic!("id {id:?} has no numeric sequence"))
}

/// The run part of an id `urn:sseloop:<run>-<seq>` (the bare
/// `<run>-<seq>` of earlier versions too): 12 hex digits, which the
/// server also takes back as `<run>-<seq>`.
pub fn id_run(id: &str) -> &str {
    let id = id.strip_prefix("urn:sseloop:").unwrap_or(id);
    id.rsplit_once('-')
        .unwrap_or_else(|| panic!("id {id:?} is not <run>-<seq>"))
        .0
}

/// A body of `size` bytes distinct for each `n` (its number, then a
/// letter that changes with `n`), so that an event mixed up with another,
/// cut short or out of order is caught.
pub fn padded(n: usize, size: usize) -> String {
    let fill = char::from(b'a' + (n % 26) as u8);
    let mut body = format!("{n:05}:");
    assert!(
        body.len() <= size,
        "{size} bytes cannot hold the number {n}"
    );
    body.extend(std::iter::repeat_n(fill, size - body.len()));
    body
}

/// What the server logs (at warn) when it cuts off a slow subscriber.
pub const CUT_OFF_LOG: &str = "slow subscriber cut off";

/// Publishes `padded` events of `size` bytes to `query`'s topic, while some
/// subscriber reads nothing, until the server logs that it cut one off;
/// fails if `max` events do not do it. Returns the ids published.
pub fn publish_until_cut_off(
    server: &TestServer,
    query: &str,
    size: usize,
    max: usize,
) -> Vec<String> {
    let mut publisher = server.publisher();
    let mut ids = Vec::new();
    while ids.len() < max && !server.log().contains(CUT_OFF_LOG) {
        let n = ids.len();
        ids.push(publisher.publish_ok(query, padded(n, size).as_bytes()));
    }
    // The log line may still be in the pipe when `max` is reached.
    assert!(
        server.await_log(&[CUT_OFF_LOG]).is_some(),
        "not cut off after {} events of {size} bytes",
        ids.len()
    );
    ids
}
