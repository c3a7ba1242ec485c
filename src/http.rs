//! HTTP/1.x for sseloop, as pure functions: request heads parsed with
//! `httparse` straight from the caller's buffer, routing to what the server
//! should do, query and percent decoding, the chunked request-body decoder,
//! and the bytes of every response. No sockets, no state of the server.

use std::fmt::Write as _;
use std::time::Duration;

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

/// Longest topic name in bytes (SPEC).
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest chunk-size line (with extensions) or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// A status code with its reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

#[allow(missing_docs)]
impl Status {
    pub const OK: Status = Status(200, "OK");
    pub const NO_CONTENT: Status = Status(204, "No Content");
    pub const UNAUTHORIZED: Status = Status(401, "Unauthorized");
    pub const BAD_REQUEST: Status = Status(400, "Bad Request");
    pub const NOT_FOUND: Status = Status(404, "Not Found");
    pub const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
    pub const REQUEST_TIMEOUT: Status = Status(408, "Request Timeout");
    pub const PAYLOAD_TOO_LARGE: Status = Status(413, "Content Too Large");
    pub const HEADERS_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
    pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
    pub const UNAVAILABLE: Status = Status(503, "Service Unavailable");
}

/// A request the server will not serve: the status, a short reason for the
/// body, and the methods a 405 allows. The reason never holds request bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Status sent.
    pub status: Status,
    /// Body text (a line is added).
    pub reason: &'static str,
    /// `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reject {
    /// A rejection with no `Allow` header.
    pub const fn new(status: Status, reason: &'static str) -> Reject {
        Reject {
            status,
            reason,
            allow: None,
        }
    }

    fn bad(reason: &'static str) -> Reject {
        Reject::new(Status::BAD_REQUEST, reason)
    }
}

/// What a request asks for, once routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /events`: stream the events of these topics (and broadcasts).
    Subscribe {
        /// Decoded, validated, without repeats.
        topics: Vec<String>,
        /// From the `Last-Event-ID` header or one of the query forms.
        last_event_id: Option<String>,
    },
    /// `POST /publish`: the body becomes an event.
    Publish {
        /// Decoded, validated, without repeats; empty for a broadcast.
        topics: Vec<String>,
        /// The `event` query parameter, when given and not empty.
        event_type: Option<String>,
    },
    /// `GET /health`.
    Health,
    /// `GET /`: the wire inspector page.
    Index,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `OPTIONS` on a known path: a CORS preflight, answered only when an
    /// origin is allowed.
    Preflight {
        /// The methods the path takes.
        allow: &'static str,
    },
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

/// Chooses what a request gets from its method and target.
pub fn route(method: &str, target: &str, last_event_id: Option<String>) -> Result<Route, Reject> {
    let target = strip_absolute_form(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let allowed = match path {
        "/events" | "/health" | "/" | "/metrics" => "GET",
        "/publish" => "POST",
        _ => return Err(Reject::new(Status::NOT_FOUND, "no such path")),
    };
    if method == "OPTIONS" {
        return Ok(Route::Preflight { allow: allowed });
    }
    if method != allowed {
        return Err(Reject {
            status: Status::METHOD_NOT_ALLOWED,
            reason: "method not allowed",
            allow: Some(allowed),
        });
    }
    match path {
        "/health" => Ok(Route::Health),
        "/" => Ok(Route::Index),
        "/metrics" => Ok(Route::Metrics),
        "/events" => {
            let mut topics = Vec::new();
            let mut query_id = None;
            for (key, value) in query_pairs(query)? {
                match key.as_str() {
                    "topic" => add_topic(&mut topics, value)?,
                    "lastEventId" | "lastEventID" | "last_event_id" => query_id = Some(value),
                    _ => {}
                }
            }
            Ok(Route::Subscribe {
                topics,
                // The header is what a browser sends on its own reconnect, so
                // it wins over an id fixed in the URL.
                last_event_id: last_event_id.or(query_id),
            })
        }
        _ => {
            let mut topics = Vec::new();
            let mut event_type = None;
            for (key, value) in query_pairs(query)? {
                match key.as_str() {
                    "topic" => add_topic(&mut topics, value)?,
                    "event" if value.is_empty() => event_type = None,
                    "event" if !crate::sse::valid_event_type(&value) => {
                        return Err(Reject::bad("event type must not contain CR, LF or NUL"));
                    }
                    "event" => event_type = Some(value),
                    _ => {}
                }
            }
            Ok(Route::Publish { topics, event_type })
        }
    }
}

/// `http://host:port/path` (as a proxy may send) becomes `/path`.
fn strip_absolute_form(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    target
}

fn add_topic(topics: &mut Vec<String>, topic: String) -> Result<(), Reject> {
    if !valid_topic(&topic) {
        return Err(Reject::bad(
            "topic must be 1 to 128 bytes with no control characters",
        ));
    }
    if !topics.contains(&topic) {
        topics.push(topic);
    }
    Ok(())
}

/// Topic names: 1 to 128 bytes, no control characters.
pub fn valid_topic(topic: &str) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&topic.len()) && !topic.chars().any(char::is_control)
}

/// Splits a query string into decoded key/value pairs (`+` is a space, as
/// browsers' forms and `URLSearchParams` encode it).
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Reject> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+`; the result must be UTF-8.
pub fn percent_decode(text: &str) -> Result<String, Reject> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let digits = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .ok_or(Reject::bad("bad percent-encoding in the query"))?;
                out.push(hex_value(digits[0]) << 4 | hex_value(digits[1]));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Reject::bad("query is not UTF-8"))
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Decodes a chunked request body as its bytes arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

impl ChunkedDecoder {
    /// Consumes what it can of `input`, appending data to `out` (which may
    /// not grow past `max`). Returns the bytes consumed and whether the body
    /// is complete; an incomplete line is left unconsumed for the next call.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(usize, bool), Reject> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Data(left) => {
                    let take = left.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        return Ok((pos, false));
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = ChunkState::Size;
                    }
                    [b'\n', ..] => {
                        pos += 1;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok((pos, false)),
                    _ => return Err(Reject::bad("bad chunked body: no CRLF after chunk data")),
                },
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(line) = take_line(rest)? else {
                        return Ok((pos, false));
                    };
                    pos += line.consumed;
                    if self.state == ChunkState::Trailer {
                        if line.text.is_empty() {
                            self.state = ChunkState::Size;
                            return Ok((pos, true));
                        }
                        continue;
                    }
                    let size = parse_chunk_size(line.text)?;
                    if size == 0 {
                        self.state = ChunkState::Trailer;
                    } else if size > max.saturating_sub(out.len()) {
                        return Err(Reject::new(Status::PAYLOAD_TOO_LARGE, "event too large"));
                    } else {
                        self.state = ChunkState::Data(size);
                    }
                }
            }
        }
    }
}

struct Line<'a> {
    text: &'a [u8],
    consumed: usize,
}

/// The next CRLF- (or LF-) terminated line, if all of it is here.
fn take_line(buf: &[u8]) -> Result<Option<Line<'_>>, Reject> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i > MAX_CHUNK_LINE => Err(Reject::bad("bad chunked body: line too long")),
        Some(i) => {
            let text = &buf[..i];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            Ok(Some(Line {
                text,
                consumed: i + 1,
            }))
        }
        None if buf.len() > MAX_CHUNK_LINE => Err(Reject::bad("bad chunked body: line too long")),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<usize, Reject> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(Reject::bad("bad chunked body: bad chunk size"));
    }
    let text = std::str::from_utf8(digits).expect("hex digits are ASCII");
    usize::from_str_radix(text, 16).map_err(|_| Reject::bad("bad chunked body: bad chunk size"))
}

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
    match reject.status {
        Status::UNAVAILABLE => out.push_str("Retry-After: 1\r\n"),
        Status::UNAUTHORIZED => out.push_str("WWW-Authenticate: Bearer\r\n"),
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
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: {connection}\r\n",
        body.len()
    );
    cors_headers(&mut out, cors);
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// The answer to a CORS preflight from an allowed origin: the methods, and
/// the request headers an EventSource or a publishing page sends.
pub fn preflight_response(allow: &str, origin: &str, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Methods: {allow}, OPTIONS\r\nAccess-Control-Allow-Headers: Last-Event-ID, Cache-Control, Authorization, Content-Type\r\nAccess-Control-Max-Age: 86400\r\n{}Content-Length: 0\r\nConnection: {connection}\r\n\r\n",
        vary(origin)
    )
    .into_bytes()
}

fn cors_headers(out: &mut String, cors: Option<&str>) {
    if let Some(origin) = cors {
        let _ = write!(
            out,
            "Access-Control-Allow-Origin: {origin}\r\n{}",
            vary(origin)
        );
    }
}

/// A fixed origin other than `*` still varies by the request's Origin for
/// caches that might serve the answer to another page.
fn vary(origin: &str) -> &'static str {
    if origin == "*" {
        ""
    } else {
        "Vary: Origin\r\n"
    }
}

/// The head of an event stream with its first body bytes (`retry:` when set
/// and a comment), so a browser's `open` fires and a proxy passes the head on
/// at once. `chunked` selects the body framing.
pub fn stream_head(chunked: bool, retry: Option<Duration>, cors: Option<&str>) -> Vec<u8> {
    let mut out = stream_head_only(chunked, cors);
    let mut first = String::new();
    if let Some(retry) = retry {
        let _ = writeln!(first, "retry: {}", retry.as_millis());
    }
    first.push_str(": connected\n\n");
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

    const POLICY: Policy = Policy {
        max_head_size: 8192,
        max_headers: 64,
        max_body: 1024,
        publish_token: None,
    };

    fn head(raw: &str) -> Head {
        match parse_head(raw.as_bytes(), &POLICY) {
            HeadParse::Complete(h, n) => {
                assert_eq!(n, raw.len());
                h
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn invalid(raw: &[u8]) -> Status {
        match parse_head(raw, &POLICY) {
            HeadParse::Invalid(r) => r.status,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    /// Request vectors: request text → the route it must give.
    macro_rules! routes {
        ($($name:ident: $raw:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(head($raw).route, $want);
            }
        )*};
    }

    fn sub(topics: &[&str], id: Option<&str>) -> Result<Route, Reject> {
        Ok(Route::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            last_event_id: id.map(str::to_owned),
        })
    }

    fn publ(topics: &[&str], ty: Option<&str>) -> Result<Route, Reject> {
        Ok(Route::Publish {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            event_type: ty.map(str::to_owned),
        })
    }

    fn status(raw: &str) -> Status {
        head(raw).route.unwrap_err().status
    }

    routes! {
        subscribe_no_topic: "GET /events HTTP/1.1\r\n\r\n" => sub(&[], None);
        subscribe_topics: "GET /events?topic=a&topic=b%20c&topic=a HTTP/1.1\r\n\r\n" => sub(&["a", "b c"], None);
        subscribe_plus_is_space: "GET /events?topic=x+y HTTP/1.1\r\n\r\n" => sub(&["x y"], None);
        subscribe_header_id: "GET /events HTTP/1.1\r\nLast-Event-ID: r-5\r\n\r\n" => sub(&[], Some("r-5"));
        subscribe_query_id: "GET /events?lastEventId=r-6 HTTP/1.1\r\n\r\n" => sub(&[], Some("r-6"));
        subscribe_query_id_alt: "GET /events?last_event_id=r-7&topic=t HTTP/1.1\r\n\r\n" => sub(&["t"], Some("r-7"));
        subscribe_header_wins: "GET /events?lastEventID=q HTTP/1.1\r\nLast-Event-ID: h\r\n\r\n" => sub(&[], Some("h"));
        subscribe_absolute_form: "GET http://example/events?topic=a HTTP/1.1\r\n\r\n" => sub(&["a"], None);
        publish_broadcast: "POST /publish HTTP/1.1\r\n\r\n" => publ(&[], None);
        publish_typed: "POST /publish?topic=a&event=progress HTTP/1.1\r\n\r\n" => publ(&["a"], Some("progress"));
        publish_empty_type: "POST /publish?event= HTTP/1.1\r\n\r\n" => publ(&[], None);
        health: "GET /health HTTP/1.1\r\n\r\n" => Ok(Route::Health);
    }

    #[test]
    fn rejected_routes() {
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), Status::NOT_FOUND);
        assert_eq!(status("GET /events/ HTTP/1.1\r\n\r\n"), Status::NOT_FOUND);
        let r = head("POST /events HTTP/1.1\r\n\r\n").route.unwrap_err();
        assert_eq!(
            (r.status, r.allow),
            (Status::METHOD_NOT_ALLOWED, Some("GET"))
        );
        let r = head("GET /publish HTTP/1.1\r\n\r\n").route.unwrap_err();
        assert_eq!(r.allow, Some("POST"));
        assert_eq!(
            status("GET /events?topic= HTTP/1.1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("GET /events?topic=%0A HTTP/1.1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("GET /events?topic=%zz HTTP/1.1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("GET /events?topic=%ff HTTP/1.1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        let long = format!("GET /events?topic={} HTTP/1.1\r\n\r\n", "a".repeat(129));
        assert_eq!(status(&long), Status::BAD_REQUEST);
        let max = format!("GET /events?topic={} HTTP/1.1\r\n\r\n", "a".repeat(128));
        assert!(head(&max).route.is_ok());
        assert_eq!(
            status("POST /publish?event=a%0Db HTTP/1.1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("POST /publish?event=a%00b HTTP/1.1\r\n\r\n"),
            Status::BAD_REQUEST
        );
    }

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

    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, Reject> {
        let mut dec = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let (used, done) = dec.decode(&buf, &mut out, POLICY.max_body)?;
            buf.drain(..used);
            if done {
                assert!(buf.is_empty(), "left over: {buf:?}");
                return Ok(out);
            }
        }
        panic!("body not complete");
    }

    #[test]
    fn chunked_bodies_in_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n";
        for step in 1..body.len() {
            assert_eq!(
                decode_all(body, step).unwrap(),
                b"hello 0123456789",
                "{step}"
            );
        }
    }

    #[test]
    fn chunked_errors() {
        let err = |b: &[u8]| decode_all(b, b.len()).unwrap_err().status;
        assert_eq!(err(b"zz\r\n"), Status::BAD_REQUEST);
        assert_eq!(err(b"2\r\nabXY"), Status::BAD_REQUEST);
        assert_eq!(err(b"401\r\n"), Status::PAYLOAD_TOO_LARGE);
        assert_eq!(err(b"ffffffffffffffffff\r\n"), Status::BAD_REQUEST);
        assert_eq!(err(&[b'1'; 2000]), Status::BAD_REQUEST);
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
    fn preflight_and_cors() {
        assert_eq!(
            head("OPTIONS /events HTTP/1.1\r\n\r\n").route,
            Ok(Route::Preflight { allow: "GET" })
        );
        let text =
            String::from_utf8(preflight_response("POST", "https://app.example", true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(text.contains("Access-Control-Allow-Headers: Last-Event-ID, Cache-Control"));
        assert!(text.contains("Vary: Origin\r\n"));
        let text = String::from_utf8(stream_head(true, None, Some("*"))).unwrap();
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(!text.contains("Vary"));
        let text = String::from_utf8(stream_head(true, None, None)).unwrap();
        assert!(!text.contains("Access-Control"));
    }

    #[test]
    fn responses() {
        let r = Reject {
            status: Status::METHOD_NOT_ALLOWED,
            reason: "method not allowed",
            allow: Some("GET"),
        };
        let text = String::from_utf8(error_response(&r, None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));
        assert!(text.contains("\r\nContent-Length: 19\r\n"));
        assert!(text.ends_with("\r\n\r\nmethod not allowed\n"));

        let head =
            String::from_utf8(stream_head(true, Some(Duration::from_millis(1500)), None)).unwrap();
        assert!(head.ends_with("\r\n\r\n19\r\nretry: 1500\n: connected\n\n\r\n"));
        let head = String::from_utf8(stream_head(false, None, None)).unwrap();
        assert!(!head.contains("Transfer-Encoding"));
        assert!(head.ends_with("\r\n\r\n: connected\n\n"));
    }
}
