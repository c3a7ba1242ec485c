//! HTTP/1.x for sseloop, as pure functions: no sockets, no state of the
//! server.
//!
//! | module | owns |
//! |---|---|
//! | `parse` | request heads, parsed with `httparse` from the caller's buffer, and the fields sseloop acts on |
//! | `host` | the `Host` and `Origin` fields: syntax, loopback names, whether an origin is the server's own |
//! | `route` | what a request asks for: paths, methods, query and percent decoding, topic names |
//! | `chunked` | the chunked request-body decoder |
//! | `response` | the bytes of every answer and stream head |
//! | `page` | the two pages served, embedded compressed |

use std::borrow::Cow;

mod chunked;
mod host;
mod page;
mod parse;
mod response;
mod route;

pub use chunked::ChunkedDecoder;
pub use host::{Authority, canonical_host, is_loopback_host, parse_authority, valid_origin};
pub use page::{INSPECTOR, LAB, Page};
pub use parse::{BodyLength, Head, HeadParse, Policy, parse_head};
pub use response::*;
pub use route::{
    MAX_TOPIC_LEN, Route, is_mercure, percent_decode, query_pairs, route, valid_topic,
};

/// A status code with its reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

#[allow(missing_docs)]
impl Status {
    pub const OK: Status = Status(200, "OK");
    pub const NO_CONTENT: Status = Status(204, "No Content");
    pub const BAD_REQUEST: Status = Status(400, "Bad Request");
    pub const UNAUTHORIZED: Status = Status(401, "Unauthorized");
    pub const FORBIDDEN: Status = Status(403, "Forbidden");
    pub const NOT_FOUND: Status = Status(404, "Not Found");
    pub const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
    pub const REQUEST_TIMEOUT: Status = Status(408, "Request Timeout");
    pub const PAYLOAD_TOO_LARGE: Status = Status(413, "Content Too Large");
    pub const MISDIRECTED: Status = Status(421, "Misdirected Request");
    pub const TOO_MANY_REQUESTS: Status = Status(429, "Too Many Requests");
    pub const HEADERS_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
    pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
    pub const UNAVAILABLE: Status = Status(503, "Service Unavailable");
}

/// A request the server will not serve: the status, a short reason for the
/// body, the methods a 405 allows and the `WWW-Authenticate` challenge of
/// an authorization failure. The reason never holds request bytes: it is
/// fixed text, or made of fixed texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Status sent.
    pub status: Status,
    /// Body text (a line is added).
    pub reason: Cow<'static, str>,
    /// `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// `WWW-Authenticate` value; a 401 without one says `Bearer`.
    pub challenge: Option<&'static str>,
}

impl Reject {
    /// A rejection with no `Allow` header.
    pub const fn new(status: Status, reason: &'static str) -> Reject {
        Reject {
            status,
            reason: Cow::Borrowed(reason),
            allow: None,
            challenge: None,
        }
    }

    /// A 405 for a path that takes `allow`.
    pub const fn method(reason: &'static str, allow: &'static str) -> Reject {
        Reject {
            status: Status::METHOD_NOT_ALLOWED,
            reason: Cow::Borrowed(reason),
            allow: Some(allow),
            challenge: None,
        }
    }

    /// A 400 with a reason made of fixed texts.
    pub fn bad_request(reason: String) -> Reject {
        Reject {
            reason: Cow::Owned(reason),
            ..Reject::new(Status::BAD_REQUEST, "")
        }
    }

    fn bad(reason: &'static str) -> Reject {
        Reject::new(Status::BAD_REQUEST, reason)
    }
}

/// What the crate's unit tests on requests share: a policy, head parsing
/// that must succeed or fail, and policies for `statuses!` vectors.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub const POLICY: Policy = Policy {
        max_head_size: 8192,
        max_headers: 64,
        max_body: 1024,
        publish_token: None,
        loopback_hosts: true,
        allow_hosts: Vec::new(),
        allow_origin: None,
        access: None,
    };

    pub fn head(raw: &str) -> Head {
        match parse_head(raw.as_bytes(), &POLICY) {
            HeadParse::Complete(h, n) => {
                assert_eq!(n, raw.len());
                h
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    pub fn invalid(raw: &[u8]) -> Status {
        match parse_head(raw, &POLICY) {
            HeadParse::Invalid(r) => r.status,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    /// A policy with these `--allow-host` names and `--allow-origin`, on a
    /// loopback address or not.
    pub fn allowing(loopback: bool, hosts: &[&str], origin: Option<&str>) -> Policy {
        Policy {
            loopback_hosts: loopback,
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allow_origin: origin.map(str::to_owned),
            ..POLICY
        }
    }

    /// A policy with `--publish-token s3cret`.
    pub fn with_token() -> Policy {
        Policy {
            publish_token: Some("s3cret".into()),
            ..POLICY
        }
    }

    /// Request vectors: policy, request head → the status it gets, as the
    /// calling module's `status_with(raw, &policy)` rules.
    macro_rules! statuses {
        ($($name:ident: $policy:expr, $raw:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(status_with($raw, &$policy), $want, "{:?}", $raw);
            }
        )*};
    }
    pub(crate) use statuses;
}
