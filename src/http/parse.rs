//! Request heads: parsed with `httparse` straight from the caller's buffer,
//! the header fields sseloop acts on, and the Host check. What a request
//! presents to be let publish or subscribe is collected here (the tokens of
//! the three carriers with `--jwt-key`, whether it bears the publish token,
//! whether its `Origin` is foreign); who may do what is `app`'s to decide.

use std::sync::Arc;

use super::host::{Authority, host_matches, is_loopback_host, origin_allowed, parse_authority};
use super::route::{query_pairs, route};
use super::{Reject, Route, Status};
use crate::auth::{self, Access, Credentials};
use crate::mercure::bearer::Carriers;

/// What requests must satisfy: size bounds and the Host names served, for
/// the parser; the publish token, the allowed origin and the JWT policy,
/// for `app::may_publish`.
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
    /// The listen address is loopback: only loopback Host names and
    /// `allow_hosts` are served, others get 421 (a DNS-rebinding defence).
    pub loopback_hosts: bool,
    /// Host names served besides the loopback ones (`--allow-host`, any
    /// port); when not empty, the Host is checked whatever the address.
    pub allow_hosts: Vec<String>,
    /// The `--allow-origin` value: besides the server's own origin, the one
    /// (`*`: any) whose pages may publish.
    pub allow_origin: Option<String>,
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
    /// A `HEAD`: answered like `GET`, without the body.
    pub head_only: bool,
    /// The tokens it carries (kept only with `--jwt-key`); their `Debug`
    /// hides them.
    pub credentials: Credentials,
    /// A publish whose `Authorization: Bearer` token is the publish token
    /// (compared here, in constant time, while the head's bytes are at
    /// hand).
    pub bears_publish_token: bool,
    /// A publish whose `Origin` is neither the server's own (by the
    /// request's authority) nor the `--allow-origin` one; a second `Origin`
    /// field makes it foreign.
    pub foreign_origin: bool,
    /// A publish's `Idempotency-Key`: a second publish with the same key
    /// is answered with the first one's id and publishes nothing.
    pub idempotency_key: Option<Box<str>>,
    /// Its `Accept-Encoding` takes gzip (the pages are sent so).
    pub accepts_gzip: bool,
    /// `Content-Type: application/x-www-form-urlencoded` (parameters
    /// allowed): a Mercure publish's or `QUERY`'s body.
    pub form_body: bool,
    /// The tokens it carries to the Mercure hub (kept only with
    /// `--jwt-key`): `Authorization: Bearer`, then Mercure's cookies.
    pub carriers: Option<Box<Carriers>>,
    /// A publish whose `Origin` (or, without one, `Referer`) is the
    /// server's own or the `--allow-origin` one (not `*`): a token in a
    /// cookie may authorize it (the draft's CSRF rule).
    pub same_site_publish: bool,
}

impl Head {
    /// The tokens it carries to the Mercure hub (none without `--jwt-key`).
    pub fn carriers(&self) -> &Carriers {
        self.carriers.as_deref().unwrap_or(&Carriers::NONE)
    }
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
    // Left uninitialized: httparse writes only the fields it finds, and
    // filling 128 empty ones first (4 KiB) cost a publish more
    // instructions than parsing its head.
    let mut storage = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); 128];
    let header_room = policy.max_headers.min(storage.len());
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut storage[..header_room]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if has_bare_lf(buf) {
                HeadParse::Invalid(bare_lf())
            } else if buf.len() > policy.max_head_size {
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
    // httparse takes a lone LF for a line end (RFC 9112 §2.2 allows it); a
    // proxy in front that does not would see other fields than we do, which
    // is how requests are smuggled. A lone CR it refuses itself.
    if has_bare_lf(&buf[..len]) {
        return HeadParse::Invalid(bare_lf());
    }
    if len > policy.max_head_size {
        return HeadParse::Invalid(Reject::new(
            Status::HEADERS_TOO_LARGE,
            "request head too large",
        ));
    }
    let http11 = req.version == Some(1);
    // Tokens are kept (copied) only with a JWT key, and only in the
    // carriers of the endpoint they are for.
    let mercure = super::is_mercure(req.path.unwrap_or(""));
    let mut fields = Fields {
        keep_tokens: policy.access.is_some() && !mercure,
        keep_mercure_tokens: policy.access.is_some() && mercure,
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
    let authority = match request_authority(&fields, http11, target) {
        Ok(authority) => authority,
        Err(reject) => return HeadParse::Invalid(reject),
    };
    if let Some(authority) = &authority
        && !host_served(&authority.host, policy)
    {
        return HeadParse::Invalid(Reject::new(
            Status::MISDIRECTED,
            "this server does not answer to that Host name (see --allow-host)",
        ));
    }
    let route = route(method, target, fields.last_event_id.take());
    let mut credentials = std::mem::take(&mut fields.credentials);
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
    // What only a publish is asked for.
    let publish = matches!(route, Ok(Route::Publish { .. } | Route::MercurePublish));
    let bears_publish_token = publish
        && policy
            .publish_token
            .as_deref()
            .is_some_and(|token| authorized(token, fields.authorization));
    let idempotency_key = if publish {
        if fields.idempotency_keys > 1 {
            return HeadParse::Invalid(Reject::bad("more than one Idempotency-Key"));
        }
        match fields.idempotency_key.map(idempotency_key).transpose() {
            Ok(key) => key,
            Err(reject) => return HeadParse::Invalid(reject),
        }
    } else {
        None
    };
    let foreign_origin = publish
        && fields.origin.is_some_and(|origin| {
            !origin_allowed(
                origin,
                authority.as_ref(),
                fields.forwarded_https(),
                policy.allow_origin.as_deref(),
            )
        });
    let referer_origin = fields.referer.map(origin_of_url);
    let same_site_publish = publish
        && fields.origin.or(referer_origin).is_some_and(|origin| {
            origin_allowed(
                origin,
                authority.as_ref(),
                fields.forwarded_https(),
                policy.allow_origin.as_deref().filter(|o| *o != "*"),
            )
        });
    HeadParse::Complete(
        Head {
            route,
            http11,
            keep_alive,
            expect_continue: fields.expect_continue,
            body,
            head_only: method == "HEAD",
            credentials,
            bears_publish_token,
            foreign_origin,
            idempotency_key,
            accepts_gzip: fields.accepts_gzip,
            form_body: fields.form_body,
            // Boxed, and only when it carries one: most requests carry none,
            // and a head stays small.
            carriers: (!fields.carriers.is_empty())
                .then(|| Box::new(std::mem::take(&mut fields.carriers))),
            same_site_publish,
        },
        len,
    )
}

/// Longest `Idempotency-Key` taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// An `Idempotency-Key` value: a Structured Fields string (`"…"`, as the
/// IETF draft has it) or, as most APIs take it, the bare text; 1 to
/// [`MAX_IDEMPOTENCY_KEY`] bytes of visible ASCII and spaces.
fn idempotency_key(value: &[u8]) -> Result<Box<str>, Reject> {
    let bad =
        || Reject::bad("Idempotency-Key must be 1 to 256 visible ASCII characters, bare or quoted");
    let value = value.trim_ascii();
    let key: Vec<u8> = match value {
        [b'"', inner @ .., b'"'] => {
            let mut key = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                match (escaped, b) {
                    (false, b'\\') => escaped = true,
                    (false, b'"') => return Err(bad()),
                    (true, b'"' | b'\\') | (false, _) => {
                        key.push(b);
                        escaped = false;
                    }
                    (true, _) => return Err(bad()),
                }
            }
            if escaped {
                return Err(bad());
            }
            key
        }
        [b'"', ..] => return Err(bad()),
        bare => bare.to_vec(),
    };
    let visible = key.iter().all(|&b| (b' '..=b'~').contains(&b));
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(bad());
    }
    // Visible ASCII: UTF-8.
    String::from_utf8(key)
        .map(String::into_boxed_str)
        .map_err(|_| bad())
}

fn bare_lf() -> Reject {
    Reject::bad("request line or field ends in LF without CR")
}

/// True when some LF in `head` has no CR before it.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The authority the request is for (RFC 9112 §3.2): exactly one valid
/// `Host` in HTTP/1.1, at most one in HTTP/1.0; an absolute-form target's
/// own authority takes its place (§3.2.2). `None`: an HTTP/1.0 request with
/// neither.
fn request_authority<'a>(
    fields: &Fields<'a>,
    http11: bool,
    target: &'a str,
) -> Result<Option<Authority<'a>>, Reject> {
    let host = match fields.hosts {
        0 if http11 => return Err(Reject::bad("HTTP/1.1 request without Host")),
        0 => None,
        1 => {
            let value = fields.host.unwrap_or_default();
            let host = parse_authority(value.trim_ascii()).ok_or(Reject::bad("invalid Host"))?;
            Some(host)
        }
        _ => return Err(Reject::bad("more than one Host field")),
    };
    let absolute = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme));
    match absolute {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let authority = parse_authority(&rest.as_bytes()[..end])
                .ok_or(Reject::bad("invalid authority in the request target"))?;
            Ok(Some(authority))
        }
        None => Ok(host),
    }
}

/// Whether requests for `host` (canonical) are answered: loopback names on
/// a loopback address, and the `--allow-host` names.
fn host_served(host: &str, policy: &Policy) -> bool {
    if !policy.loopback_hosts && policy.allow_hosts.is_empty() {
        return true;
    }
    is_loopback_host(host) || policy.allow_hosts.iter().any(|a| host_matches(a, host))
}

/// The header fields sseloop acts on.
#[derive(Default)]
struct Fields<'a> {
    content_length: Option<usize>,
    chunked: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    last_event_id: Option<String>,
    authorization: Option<&'a [u8]>,
    /// How many `Host` fields, and the first one's value.
    hosts: usize,
    host: Option<&'a [u8]>,
    /// The `Origin` value; a second `Origin` field makes it unmatchable.
    origin: Option<&'a [u8]>,
    /// How many `X-Forwarded-Proto` fields, and the first one's value: the
    /// scheme a proxy in front was asked with.
    forwarded_protos: usize,
    forwarded_proto: Option<&'a [u8]>,
    /// How many `Idempotency-Key` fields, and the first one's value.
    idempotency_keys: usize,
    idempotency_key: Option<&'a [u8]>,
    /// Some `Accept-Encoding` takes gzip.
    accepts_gzip: bool,
    /// `Content-Type` is the form encoding.
    form_body: bool,
    /// The `Referer` value.
    referer: Option<&'a [u8]>,
    /// With `--jwt-key`: tokens are taken into `credentials` (not the
    /// Mercure hub's) or `carriers` (the hub's).
    keep_tokens: bool,
    keep_mercure_tokens: bool,
    credentials: Credentials,
    carriers: Carriers,
}

impl<'a> Fields<'a> {
    fn take(&mut self, name: &str, value: &'a [u8]) -> Result<(), Reject> {
        // Checked only for the fields read as text: most (Host, and those
        // sseloop ignores, Authorization and Cookie, read as bytes) never need it.
        let value_str = || std::str::from_utf8(value).map(str::trim);
        if name.eq_ignore_ascii_case("content-length") {
            let n = value_str()
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(Reject::bad("bad Content-Length"))?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(Reject::bad("conflicting Content-Length fields"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            match value_str() {
                Ok(v) if v.eq_ignore_ascii_case("chunked") && !self.chunked => self.chunked = true,
                _ => {
                    return Err(Reject::new(
                        Status::NOT_IMPLEMENTED,
                        "only Transfer-Encoding: chunked is supported",
                    ));
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value_str().unwrap_or("").split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    self.connection_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    self.connection_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue =
                value_str().is_ok_and(|v| v.eq_ignore_ascii_case("100-continue"));
        } else if name.eq_ignore_ascii_case("authorization") {
            self.authorization = Some(value);
            if self.keep_tokens {
                self.credentials.authorization(value);
            }
            if self.keep_mercure_tokens {
                self.carriers.authorization(value);
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            if self.keep_tokens {
                self.credentials.cookies(value);
            }
            if self.keep_mercure_tokens {
                self.carriers.cookies(value);
            }
        } else if name.eq_ignore_ascii_case("referer") {
            self.referer = Some(value);
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
            self.host.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("origin") {
            // Two Origin fields are no origin a browser sends: "" matches none.
            self.origin = Some(if self.origin.is_some() { b"" } else { value });
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            self.forwarded_protos += 1;
            self.forwarded_proto.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            self.idempotency_keys += 1;
            self.idempotency_key.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value_str().unwrap_or("").split(';').next().unwrap_or("");
            self.form_body = media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded");
        } else if name.eq_ignore_ascii_case("last-event-id") {
            let v = value_str().map_err(|_| Reject::bad("Last-Event-ID is not UTF-8"))?;
            self.last_event_id = Some(v.to_owned());
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            self.accepts_gzip |= value_str().is_ok_and(takes_gzip);
        }
        Ok(())
    }

    /// True when one `X-Forwarded-Proto: https` says the page was served
    /// over TLS by a proxy in front; anything else (none, `http`, a list,
    /// two fields) leaves the own origin `http://`, which refuses rather
    /// than admits.
    fn forwarded_https(&self) -> bool {
        self.forwarded_protos == 1
            && self
                .forwarded_proto
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"https"))
    }
}

/// Whether an `Accept-Encoding` value takes gzip (RFC 9110 §12.5.3):
/// `gzip` (or `x-gzip`) listed without `q=0`, or else `*` without it.
fn takes_gzip(value: &str) -> bool {
    let (mut gzip, mut any) = (None, None);
    for item in value.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                // q=0, 0., 0.0, 0.00, 0.000
                let zero = v.trim().strip_prefix('0').is_some_and(|rest| {
                    rest.is_empty()
                        || rest
                            .strip_prefix('.')
                            .is_some_and(|z| z.bytes().all(|b| b == b'0'))
                });
                k.trim().eq_ignore_ascii_case("q") && zero
            })
        });
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(!refused);
        } else if coding == "*" {
            any = Some(!refused);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// The origin part of an absolute URL (`https://host:port/path` →
/// `https://host:port`); what is not one is left as it is (and matches no
/// origin).
fn origin_of_url(url: &[u8]) -> &[u8] {
    let Some(scheme_end) = url.windows(3).position(|w| w == b"://") else {
        return url;
    };
    let rest = &url[scheme_end + 3..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(url.len(), |i| scheme_end + 3 + i);
    &url[..end]
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
        let h = head("POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(
            (h.body, h.keep_alive, h.http11),
            (BodyLength::Length(5), true, true)
        );
        let h = head(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n",
        );
        assert_eq!((h.body, h.keep_alive), (BodyLength::Chunked, false));
        let h = head("GET /health HTTP/1.0\r\n\r\n");
        assert_eq!((h.http11, h.keep_alive), (false, false));
        let h = head("GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expect_continue);
        let h = head("POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.body, BodyLength::Empty);
        assert!(!h.form_body);
        let h = head(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: Application/X-WWW-Form-Urlencoded ; charset=UTF-8\r\n\r\n",
        );
        assert!(h.form_body);
    }

    #[test]
    fn accept_encoding() {
        let gzip = |value: &str| {
            head(&format!(
                "GET / HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: {value}\r\n\r\n"
            ))
            .accepts_gzip
        };
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "deflate,GZIP;q=0.5",
            "x-gzip",
            "*",
            "br;q=0, *;q=0.1",
        ] {
            assert!(gzip(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip; q=0.000, br",
            "*;q=0",
            "gzip;q=0, *",
            "gzipped",
        ] {
            assert!(!gzip(no), "{no}");
        }
        assert!(!head("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").accepts_gzip);
    }

    #[test]
    fn invalid_heads() {
        assert_eq!(invalid(b"GARBAGE\r\n\r\n"), Status::BAD_REQUEST);
        assert_eq!(
            invalid(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            invalid(
                b"POST /publish HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n"
            ),
            Status::NOT_IMPLEMENTED
        );
        assert_eq!(
            invalid(b"POST /publish HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BAD_REQUEST
        );
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
        assert_eq!(invalid(raw.as_bytes()), Status::HEADERS_TOO_LARGE);
        let big = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n", "a".repeat(9000));
        assert_eq!(invalid(big.as_bytes()), Status::HEADERS_TOO_LARGE);
    }

    #[test]
    fn idempotency_keys_bare_or_quoted() {
        let key = |field: &str| {
            head(&format!(
                "POST /publish HTTP/1.1\r\nHost: localhost\r\n{field}\r\n\r\n"
            ))
            .idempotency_key
        };
        assert_eq!(key("X-Other: 1"), None);
        assert_eq!(key("Idempotency-Key: order-42"), Some("order-42".into()));
        assert_eq!(key("idempotency-key:  order 42 "), Some("order 42".into()));
        assert_eq!(
            key("Idempotency-Key: \"8e03978e-40d5-43e8\""),
            Some("8e03978e-40d5-43e8".into())
        );
        assert_eq!(
            key(r#"Idempotency-Key: "a \"quoted\" \\ key""#),
            Some(r#"a "quoted" \ key"#.into())
        );
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY);
        assert_eq!(
            key(&format!("Idempotency-Key: {longest}")),
            Some(longest.clone().into())
        );
        // Only a publish carries one.
        let subscribe =
            head("GET /events HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: k\r\n\r\n");
        assert_eq!(subscribe.idempotency_key, None);
        for bad in [
            "Idempotency-Key: ".to_string(),
            "Idempotency-Key: \"\"".into(),
            "Idempotency-Key: \"open".into(),
            "Idempotency-Key: \"a\"b\"".into(),
            "Idempotency-Key: \"a\\x\"".into(),
            "Idempotency-Key: caf\u{e9}".into(),
            "Idempotency-Key: a\tb".into(),
            format!("Idempotency-Key: {longest}k"),
            "Idempotency-Key: a\r\nIdempotency-Key: b".into(),
        ] {
            let raw = format!("POST /publish HTTP/1.1\r\nHost: localhost\r\n{bad}\r\n\r\n");
            assert_eq!(invalid(raw.as_bytes()), Status::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn partial_heads_wait() {
        let raw = b"GET /events?topic=a HTTP/1.1\r\nHost: localhost\r\n\r\n";
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
        let raw = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
        match parse_head(raw, &POLICY) {
            HeadParse::Complete(_, n) => assert_eq!(n, raw.len() / 2),
            other => panic!("{other:?}"),
        }
    }

    /// The status a head gets: its refusal's, or 200 when it is served.
    fn status_with(raw: &str, policy: &Policy) -> Status {
        match parse_head(raw.as_bytes(), policy) {
            HeadParse::Complete(h, _) => h.route.map_or_else(|r| r.status, |_| Status::OK),
            HeadParse::Invalid(r) => r.status,
            HeadParse::Incomplete => panic!("incomplete: {raw:?}"),
        }
    }

    fn network() -> Policy {
        allowing(false, &[], None)
    }

    const OK: Status = Status::OK;
    const BAD: Status = Status::BAD_REQUEST;
    const MISDIRECTED: Status = Status::MISDIRECTED;

    statuses! {
        // Host: exactly one valid one in HTTP/1.1 (RFC 9112 §3.2).
        host_missing_11: POLICY, "GET /health HTTP/1.1\r\n\r\n" => BAD;
        host_missing_10: POLICY, "GET /health HTTP/1.0\r\n\r\n" => OK;
        host_twice: POLICY, "GET /health HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n" => BAD;
        host_twice_10: POLICY, "GET /health HTTP/1.0\r\nHost: localhost\r\nhost: localhost\r\n\r\n" => BAD;
        host_empty: POLICY, "GET /health HTTP/1.1\r\nHost: \r\n\r\n" => BAD;
        host_with_path: POLICY, "GET /health HTTP/1.1\r\nHost: localhost/x\r\n\r\n" => BAD;
        host_with_userinfo: POLICY, "GET /health HTTP/1.1\r\nHost: a@localhost\r\n\r\n" => BAD;
        host_with_space: POLICY, "GET /health HTTP/1.1\r\nHost: local host\r\n\r\n" => BAD;
        host_port_not_digits: POLICY, "GET /health HTTP/1.1\r\nHost: localhost:http\r\n\r\n" => BAD;
        host_port_too_big: POLICY, "GET /health HTTP/1.1\r\nHost: localhost:65536\r\n\r\n" => BAD;
        host_ipv6_unbracketed: POLICY, "GET /health HTTP/1.1\r\nHost: ::1\r\n\r\n" => BAD;
        host_ipv6_zone: POLICY, "GET /health HTTP/1.1\r\nHost: [fe80::1%25lo]\r\n\r\n" => BAD;
        host_bad_on_network_too: network(), "GET /health HTTP/1.1\r\nHost: a b\r\n\r\n" => BAD;
        host_padded: POLICY, "GET /health HTTP/1.1\r\nHost:  localhost:8080 \t\r\n\r\n" => OK;
        host_before_route: POLICY, "GET /nowhere HTTP/1.1\r\n\r\n" => BAD;

        // On a loopback address, loopback names only (DNS rebinding).
        loopback_localhost: POLICY, "GET /health HTTP/1.1\r\nHost: localhost:8080\r\n\r\n" => OK;
        loopback_trailing_dot: POLICY, "GET /health HTTP/1.1\r\nHost: LocalHost.:8080\r\n\r\n" => OK;
        loopback_subdomain: POLICY, "GET /health HTTP/1.1\r\nHost: app.localhost:3000\r\n\r\n" => OK;
        loopback_v4: POLICY, "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n" => OK;
        loopback_v4_net: POLICY, "GET /health HTTP/1.1\r\nHost: 127.9.9.9\r\n\r\n" => OK;
        loopback_v6: POLICY, "GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n" => OK;
        rebinding_name: POLICY, "GET /health HTTP/1.1\r\nHost: attacker.example\r\n\r\n" => MISDIRECTED;
        rebinding_with_port: POLICY, "GET /events HTTP/1.1\r\nHost: attacker.example:8080\r\n\r\n" => MISDIRECTED;
        rebinding_localhost_prefix: POLICY, "GET /health HTTP/1.1\r\nHost: localhost.attacker.example\r\n\r\n" => MISDIRECTED;
        rebinding_ip_prefix: POLICY, "GET /health HTTP/1.1\r\nHost: 127.0.0.1.attacker.example\r\n\r\n" => MISDIRECTED;
        rebinding_lan_address: POLICY, "GET /health HTTP/1.1\r\nHost: 192.168.1.2:8080\r\n\r\n" => MISDIRECTED;
        rebinding_before_route: POLICY, "GET /nowhere HTTP/1.1\r\nHost: attacker.example\r\n\r\n" => MISDIRECTED;
        rebinding_publish: with_token(), "POST /publish HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer s3cret\r\n\r\n" => MISDIRECTED;
        rebinding_10: POLICY, "GET /health HTTP/1.0\r\nHost: attacker.example\r\n\r\n" => MISDIRECTED;
        rebinding_absolute_form: POLICY, "GET http://attacker.example/health HTTP/1.1\r\nHost: localhost\r\n\r\n" => MISDIRECTED;
        absolute_form_loopback: POLICY, "GET http://localhost:8080/health HTTP/1.1\r\nHost: localhost\r\n\r\n" => OK;
        absolute_form_bad_authority: POLICY, "GET http://a@localhost/health HTTP/1.1\r\nHost: localhost\r\n\r\n" => BAD;
        allow_host_any_case_and_port: allowing(true, &["app.example"], None), "GET /health HTTP/1.1\r\nHost: App.Example.:9000\r\n\r\n" => OK;
        allow_host_ipv6: allowing(true, &["[fd00::1]"], None), "GET /health HTTP/1.1\r\nHost: [fd00:0::1]\r\n\r\n" => OK;
        allow_host_others_refused: allowing(true, &["app.example"], None), "GET /health HTTP/1.1\r\nHost: other.example\r\n\r\n" => MISDIRECTED;
        allow_host_not_a_suffix: allowing(true, &["example"], None), "GET /health HTTP/1.1\r\nHost: app.example\r\n\r\n" => MISDIRECTED;
        // Off loopback, any name unless --allow-host is given.
        network_any_name: network(), "GET /health HTTP/1.1\r\nHost: anything.example\r\n\r\n" => OK;
        network_allow_host: allowing(false, &["app.example"], None), "GET /health HTTP/1.1\r\nHost: app.example\r\n\r\n" => OK;
        network_allow_host_others: allowing(false, &["app.example"], None), "GET /health HTTP/1.1\r\nHost: other.example\r\n\r\n" => MISDIRECTED;
        network_allow_host_loopback: allowing(false, &["app.example"], None), "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n" => OK;

        // Line ends in the head: CRLF (httparse refuses a lone CR itself).
        head_lf_after_request_line: POLICY, "GET /health HTTP/1.1\nHost: localhost\r\n\r\n" => BAD;
        head_lf_after_field: POLICY, "GET /health HTTP/1.1\r\nHost: localhost\n\r\n" => BAD;
        head_lf_ends_head: POLICY, "GET /health HTTP/1.1\r\nHost: localhost\r\n\n" => BAD;
        head_lf_only: POLICY, "GET /health HTTP/1.1\nHost: localhost\n\n" => BAD;
        head_leading_lf: POLICY, "\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" => BAD;
        head_leading_crlf: POLICY, "\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" => OK;
        head_cr_after_request_line: POLICY, "GET /health HTTP/1.1\rHost: localhost\r\n\r\n" => BAD;
        head_cr_in_field: POLICY, "GET /health HTTP/1.1\r\nX: a\rb\r\nHost: localhost\r\n\r\n" => BAD;

        // HEAD where GET has a fixed answer.
        head_health: POLICY, "HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n" => OK;
        head_index: POLICY, "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n" => OK;
        head_metrics: POLICY, "HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" => OK;
        head_events: POLICY, "HEAD /events HTTP/1.1\r\nHost: localhost\r\n\r\n" => Status::METHOD_NOT_ALLOWED;
        head_publish: POLICY, "HEAD /publish HTTP/1.1\r\nHost: localhost\r\n\r\n" => Status::METHOD_NOT_ALLOWED;
    }

    #[test]
    fn a_lone_lf_is_refused_before_the_head_ends() {
        assert_eq!(
            parse_head(b"GET /health HTTP/1.1\nHost: loc", &POLICY),
            HeadParse::Invalid(bare_lf())
        );
    }

    #[test]
    fn head_only_is_set_for_head() {
        assert!(head("HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n").head_only);
        assert!(!head("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").head_only);
        let r = head("HEAD /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .route
            .unwrap_err();
        assert_eq!(r.allow, Some("GET"));
        let r = head("PUT /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .route
            .unwrap_err();
        assert_eq!(r.allow, Some("GET, HEAD"));
    }

    #[test]
    fn tokens_are_taken_only_with_a_jwt_key() {
        let raw = "GET /events?topic=t&access_token=q HTTP/1.1\r\nHost: localhost\r\nCookie: sseloop_token=c\r\n\
                   Authorization: Bearer h\r\n\r\n";
        assert!(!head(raw).credentials.any());
        let policy = auth::TokenPolicy {
            audience: "http://localhost/.well-known/mercure".into(),
            issuer: None,
            anonymous: false,
        };
        let access = Access::configured(Some(&"k".repeat(32)), &[], policy).unwrap();
        let policy = Policy { access, ..POLICY };
        let parsed = |raw: &str| match parse_head(raw.as_bytes(), &policy) {
            HeadParse::Complete(h, _) => h,
            other => panic!("{other:?}"),
        };
        assert_eq!(parsed(raw).credentials.subscribe_token(), Ok(Some("h")));
        let raw = "GET /events?access_token=a%2Eb HTTP/1.1\r\nHost: localhost\r\nCookie: sseloop_token=c\r\n\r\n";
        assert_eq!(parsed(raw).credentials.subscribe_token(), Ok(Some("a.b")));
        let raw = "GET /events HTTP/1.1\r\nHost: localhost\r\nCookie: a=1; sseloop_token=c\r\n\r\n";
        let h = parsed(raw);
        assert_eq!(h.credentials.subscribe_token(), Ok(Some("c")));
        assert!(!format!("{h:?}").contains("sseloop_token=c"));
    }
}
