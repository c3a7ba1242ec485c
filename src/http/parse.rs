//! Request heads: parsed with `httparse` straight from the caller's buffer,
//! the header fields sseloop acts on, and the publish-token check.

use super::route::route;
use super::{Reject, Route, Status};

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
    let mut fields = Fields::default();
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
    let route = match route(method, target, fields.last_event_id) {
        Ok(Route::Publish { .. })
            if !authorized(
                policy.publish_token.as_deref(),
                fields.authorization.as_deref(),
            ) =>
        {
            Err(Reject::new(
                Status::UNAUTHORIZED,
                "publishing needs Authorization: Bearer <token>",
            ))
        }
        other => other,
    };
    HeadParse::Complete(
        Head {
            route,
            http11,
            keep_alive,
            expect_continue: fields.expect_continue,
            body,
        },
        len,
    )
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
        } else if name.eq_ignore_ascii_case("last-event-id") {
            let v = value_str.map_err(|_| Reject::bad("Last-Event-ID is not UTF-8"))?;
            self.last_event_id = Some(v.to_owned());
        }
        Ok(())
    }
}

/// True when no token is set, or `authorization` is `Bearer <token>`.
fn authorized(token: Option<&str>, authorization: Option<&[u8]>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = authorization else {
        return false;
    };
    let Some(scheme) = value.get(..7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ")
        && constant_time_eq(value[7..].trim_ascii(), token.as_bytes())
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
}
