//! Request heads: parsed with `httparse` straight from the caller's buffer,
//! the header fields sseloop acts on (with `--jwt-key`, the tokens of the
//! three carriers), and the publish check: the publish token, or a JWT.

use std::sync::Arc;

use super::route::{query_pairs, route};
use super::{Reject, Route, Status};
use crate::auth::{self, Access, Credentials};

/// What requests must satisfy: size bounds, and the token publishing needs.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Largest request head in bytes.
    pub max_head_size: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// When set, a publish needs `Authorization: Bearer <token>`.
    pub publish_token: Option<String>,
    /// With `--jwt-key`: how tokens are checked. A publish then needs the
    /// publish token or a JWT allowed to publish.
    pub access: Option<Arc<Access>>,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// What to do, or why not.
    pub route: Result<Route, Reject>,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// The connection stays open after the answer.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// How the body is delimited.
    pub body: BodyLength,
    /// The tokens it carries (kept only with `--jwt-key`); their `Debug`
    /// hides them.
    pub credentials: Credentials,
}

/// Result of looking for a request head at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// Not all of it is here yet.
    Incomplete,
    /// A head of this many bytes.
    Complete(Head, usize),
    /// The bytes cannot be a request we serve; answer and close.
    Invalid(Reject),
}

/// Parses a request head from the start of `buf`.
pub fn parse_head(buf: &[u8], policy: &Policy) -> HeadParse {
    let mut storage = [httparse::EMPTY_HEADER; 128];
    let header_room = policy.max_headers.min(storage.len());
    let mut req = httparse::Request::new(&mut storage[..header_room]);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > policy.max_head_size {
                HeadParse::Invalid(Reject::new(
                    Status::HEADERS_TOO_LARGE,
                    "request head too large",
                ))
            } else {
                HeadParse::Incomplete
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return HeadParse::Invalid(Reject::new(
                Status::HEADERS_TOO_LARGE,
                "too many header fields",
            ));
        }
        Err(_) => return HeadParse::Invalid(Reject::bad("malformed request")),
    };
    if len > policy.max_head_size {
        return HeadParse::Invalid(Reject::new(
            Status::HEADERS_TOO_LARGE,
            "request head too large",
        ));
    }
    let http11 = req.version == Some(1);
    let mut fields = Fields {
        keep_tokens: policy.access.is_some(),
        ..Fields::default()
    };
    for h in req.headers.iter() {
        if let Err(reject) = fields.take(h.name, h.value) {
            return HeadParse::Invalid(reject);
        }
    }
    let body = match (fields.content_length, fields.chunked) {
        (Some(_), true) => {
            return HeadParse::Invalid(Reject::bad("both Content-Length and Transfer-Encoding"));
        }
        (_, true) if !http11 => {
            return HeadParse::Invalid(Reject::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        (_, true) => BodyLength::Chunked,
        (Some(0) | None, false) => BodyLength::Empty,
        (Some(n), false) => BodyLength::Length(n),
    };
    let keep_alive = if http11 {
        !fields.connection_close
    } else {
        fields.connection_keep_alive
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let mut route = route(method, target, fields.last_event_id);
    let mut credentials = fields.credentials;
    if policy.access.is_some()
        && let Ok(Route::Subscribe { .. }) = route
        && let Some((_, query)) = target.split_once('?')
    {
        // Routing took the query apart already, so this cannot fail.
        for (key, value) in query_pairs(query).unwrap_or_default() {
            if key == auth::QUERY_PARAM {
                credentials.query(&value);
            }
        }
    }
    if let Ok(Route::Publish { topics, .. }) = &route
        && let Err(reject) = may_publish(
            policy,
            fields.authorization.as_deref(),
            &credentials,
            topics,
        )
    {
        route = Err(reject);
    }
    HeadParse::Complete(
        Head {
            route,
            http11,
            keep_alive,
            expect_continue: fields.expect_continue,
            body,
            credentials,
        },
        len,
    )
}

/// Whether a publish is allowed: always without a publish token or a JWT
/// key; else by the publish token, or by a JWT in the `Authorization`
/// header whose `publish` claim covers every topic named.
fn may_publish(
    policy: &Policy,
    authorization: Option<&[u8]>,
    credentials: &Credentials,
    topics: &[String],
) -> Result<(), Reject> {
    let token = policy.publish_token.as_deref();
    if (token.is_none() && policy.access.is_none())
        || token.is_some_and(|t| authorized(t, authorization))
    {
        return Ok(());
    }
    // The clock is read here, and only for a JWT to check.
    let refusal = match &policy.access {
        Some(access) => match access.publish(credentials.publish_token(), topics, auth::unix_now())
        {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        },
        None => auth::Refusal::PublishMissing,
    };
    Err(Reject::refusal(refusal))
}

/// The header fields sseloop acts on.
#[derive(Default)]
struct Fields {
    content_length: Option<usize>,
    chunked: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    last_event_id: Option<String>,
    authorization: Option<Vec<u8>>,
    /// With `--jwt-key`: tokens are taken into `credentials`.
    keep_tokens: bool,
    credentials: Credentials,
}

impl Fields {
    fn take(&mut self, name: &str, value: &[u8]) -> Result<(), Reject> {
        let value_str = std::str::from_utf8(value).map(str::trim);
        if name.eq_ignore_ascii_case("content-length") {
            let n = value_str
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(Reject::bad("bad Content-Length"))?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(Reject::bad("conflicting Content-Length fields"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            match value_str {
                Ok(v) if v.eq_ignore_ascii_case("chunked") && !self.chunked => self.chunked = true,
                _ => {
                    return Err(Reject::new(
                        Status::NOT_IMPLEMENTED,
                        "only Transfer-Encoding: chunked is supported",
                    ));
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value_str.unwrap_or("").split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    self.connection_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    self.connection_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue = value_str.is_ok_and(|v| v.eq_ignore_ascii_case("100-continue"));
        } else if name.eq_ignore_ascii_case("authorization") {
            self.authorization = Some(value.to_vec());
            if self.keep_tokens {
                self.credentials.authorization(value);
            }
        } else if name.eq_ignore_ascii_case("cookie") && self.keep_tokens {
            self.credentials.cookies(value);
        } else if name.eq_ignore_ascii_case("last-event-id") {
            let v = value_str.map_err(|_| Reject::bad("Last-Event-ID is not UTF-8"))?;
            self.last_event_id = Some(v.to_owned());
        }
        Ok(())
    }
}

/// True when `authorization` is `Bearer <token>`.
fn authorized(token: &str, authorization: Option<&[u8]>) -> bool {
    authorization
        .and_then(auth::bearer)
        .is_some_and(|offered| constant_time_eq(offered, token.as_bytes()))
}

/// Compares without an early exit, so the time taken does not tell how much
/// of a guessed token was right (only its length, which is not secret enough
/// to matter).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::*;

    #[test]
    fn framing_and_connection_fields() {
        let h = head("POST /publish HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(
            (h.body, h.keep_alive, h.http11),
            (BodyLength::Length(5), true, true)
        );
        let h = head(
            "POST /publish HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n",
        );
        assert_eq!((h.body, h.keep_alive), (BodyLength::Chunked, false));
        let h = head("GET /health HTTP/1.0\r\n\r\n");
        assert_eq!((h.http11, h.keep_alive), (false, false));
        let h = head("GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = head("POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.expect_continue);
        let h = head("POST /publish HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.body, BodyLength::Empty);
    }

    #[test]
    fn invalid_heads() {
        assert_eq!(invalid(b"GARBAGE\r\n\r\n"), Status::BAD_REQUEST);
        assert_eq!(
            invalid(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Status::NOT_IMPLEMENTED
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BAD_REQUEST
        );
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(invalid(raw.as_bytes()), Status::HEADERS_TOO_LARGE);
        let big = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(invalid(big.as_bytes()), Status::HEADERS_TOO_LARGE);
    }

    #[test]
    fn partial_heads_wait() {
        let raw = b"GET /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(
                parse_head(&raw[..cut], &POLICY),
                HeadParse::Incomplete,
                "{cut}"
            );
        }
    }

    #[test]
    fn pipelined_heads_parse_one_at_a_time() {
        let raw = b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n";
        match parse_head(raw, &POLICY) {
            HeadParse::Complete(_, n) => assert_eq!(n, raw.len() / 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn publish_token() {
        let policy = Policy {
            publish_token: Some("s3cret".into()),
            ..POLICY
        };
        let route = |raw: &str| match parse_head(raw.as_bytes(), &policy) {
            HeadParse::Complete(h, _) => h.route,
            other => panic!("{other:?}"),
        };
        let denied = |raw: &str| route(raw).unwrap_err().status == Status::UNAUTHORIZED;
        assert!(denied("POST /publish HTTP/1.1\r\n\r\n"));
        assert!(denied(
            "POST /publish HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n"
        ));
        assert!(denied(
            "POST /publish HTTP/1.1\r\nAuthorization: Bearer s3cret2\r\n\r\n"
        ));
        assert!(denied(
            "POST /publish HTTP/1.1\r\nAuthorization: Basic s3cret\r\n\r\n"
        ));
        assert!(route("POST /publish HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n").is_ok());
        assert!(route("POST /publish HTTP/1.1\r\nauthorization: bearer  s3cret \r\n\r\n").is_ok());
        // Subscribing stays open.
        assert!(route("GET /events HTTP/1.1\r\n\r\n").is_ok());
    }

    #[test]
    fn tokens_are_taken_only_with_a_jwt_key() {
        let raw = "GET /events?topic=t&access_token=q HTTP/1.1\r\nCookie: sseloop_token=c\r\n\
                   Authorization: Bearer h\r\n\r\n";
        assert!(!head(raw).credentials.any());
        let access = Access::configured(Some(&"k".repeat(32)), &[]).unwrap();
        let policy = Policy { access, ..POLICY };
        let parsed = |raw: &str| match parse_head(raw.as_bytes(), &policy) {
            HeadParse::Complete(h, _) => h,
            other => panic!("{other:?}"),
        };
        assert_eq!(parsed(raw).credentials.subscribe_token(), Ok(Some("h")));
        let raw = "GET /events?access_token=a%2Eb HTTP/1.1\r\nCookie: sseloop_token=c\r\n\r\n";
        assert_eq!(parsed(raw).credentials.subscribe_token(), Ok(Some("a.b")));
        let raw = "GET /events HTTP/1.1\r\nCookie: a=1; sseloop_token=c\r\n\r\n";
        let h = parsed(raw);
        assert_eq!(h.credentials.subscribe_token(), Ok(Some("c")));
        assert!(!format!("{h:?}").contains("sseloop_token=c"));
        // Publishing needs a token now, and a cookie is not one.
        let status = |raw: &str| parsed(raw).route.map(|_| ()).map_err(|r| r.status);
        assert_eq!(
            status("POST /publish?topic=t HTTP/1.1\r\nCookie: sseloop_token=c\r\n\r\n"),
            Err(Status::UNAUTHORIZED)
        );
        assert_eq!(
            status("POST /publish HTTP/1.1\r\nAuthorization: Bearer x.y.z\r\n\r\n"),
            Err(Status::UNAUTHORIZED)
        );
        let both = Policy {
            publish_token: Some("s3cret".into()),
            ..policy.clone()
        };
        let raw = b"POST /publish HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n";
        assert!(matches!(parse_head(raw, &both), HeadParse::Complete(h, _) if h.route.is_ok()));
    }
}
