//! How a request to `/.well-known/mercure` presents its token, and how the
//! hub says no (the draft's "Presenting the Access Token" and "Error
//! Responses", RFC 6750).
//!
//! Carriers, in order: the `Authorization: Bearer` header (the scheme in
//! any case); when there is none, the cookie [`COOKIE`]
//! (`__Secure-mercure_access_token`), then the pre-1.0 cookie
//! [`LEGACY_COOKIE`] (`mercureAuthorization`, which the reference hub's
//! compatibility mode also reads). A header and a cookie together are no
//! error: the header's token is used, the cookie ignored (the draft's one
//! exception to RFC 6750). Two `Authorization: Bearer` headers are an
//! `invalid_request`. A cookie sent twice (browsers do, for cookies set on
//! two paths) counts once: the first, the most specific path's. The
//! `access_token` query parameter is not a carrier here (the draft forbids
//! it; nor is the 0.x `authorization` one): a client that uses it is a
//! client without a token. An `Authorization` field of another scheme (a
//! proxy's `Basic`) is not a token either.
//!
//! A token from a cookie must not authorize a cross-site `POST`: the
//! caller checks `Origin` (or `Referer`) before it uses a token whose
//! carrier is [`Carrier::Cookie`] for a publish, and answers
//! [`AuthError::InvalidRequest`] when neither header is there or the
//! origin is not allowed (the draft's CSRF rule; the reference hub's
//! answer).

use std::fmt;

/// The cookie the draft recommends.
pub const COOKIE: &str = "__Secure-mercure_access_token";
/// The pre-1.0 cookie.
pub const LEGACY_COOKIE: &str = "mercureAuthorization";

/// An authorization failure, as RFC 6750 answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token where one is needed: 401 with a bare challenge.
    Missing,
    /// A token that failed validation: 401 `invalid_token`.
    InvalidToken,
    /// A valid token that does not allow this: 403 `insufficient_scope`.
    InsufficientScope,
    /// The token's presentation is malformed: 400 `invalid_request`.
    InvalidRequest,
}

impl AuthError {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            AuthError::Missing | AuthError::InvalidToken => 401,
            AuthError::InsufficientScope => 403,
            AuthError::InvalidRequest => 400,
        }
    }

    /// The `WWW-Authenticate` field value (sseloop publishes no RFC 9728
    /// metadata, so never with `resource_metadata`).
    pub fn challenge(self) -> &'static str {
        match self {
            AuthError::Missing => "Bearer",
            AuthError::InvalidToken => "Bearer error=\"invalid_token\"",
            AuthError::InsufficientScope => "Bearer error=\"insufficient_scope\"",
            AuthError::InvalidRequest => "Bearer error=\"invalid_request\"",
        }
    }

    /// The answer's text.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "an access token is needed",
            AuthError::InvalidToken => "the access token is not valid",
            AuthError::InsufficientScope => "the access token does not allow this",
            AuthError::InvalidRequest => {
                "the access token is presented more than once, empty, or in a cookie of a cross-site request"
            }
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for AuthError {}

/// Where a token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer`.
    Header,
    /// A cookie: a browser sends it on its own, cross-site forms too.
    Cookie,
}

/// The tokens a request carries, filled header by header. Its `Debug`
/// shows no token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Carriers {
    headers: usize,
    header: Option<Box<str>>,
    cookie: Option<Box<str>>,
    legacy_cookie: Option<Box<str>>,
}

impl fmt::Debug for Carriers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Carriers")
            .field("bearer_headers", &self.headers)
            .field("cookie", &self.cookie.is_some())
            .field("legacy_cookie", &self.legacy_cookie.is_some())
            .finish()
    }
}

impl Carriers {
    /// None at all.
    pub const NONE: Carriers = Carriers {
        headers: 0,
        header: None,
        cookie: None,
        legacy_cookie: None,
    };

    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.headers == 0 && self.cookie.is_none() && self.legacy_cookie.is_none()
    }

    /// An `Authorization` field.
    pub fn authorization(&mut self, value: &[u8]) {
        let value = value.trim_ascii();
        let token = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            // `Bearer` and nothing: a malformed presentation.
            _ if value.eq_ignore_ascii_case(b"bearer") => b"",
            _ => return,
        };
        self.headers += 1;
        self.header = Some(String::from_utf8_lossy(token).into());
    }

    /// A `Cookie` field.
    pub fn cookies(&mut self, value: &[u8]) {
        for (name, value) in cookies(value) {
            let slot = if name == COOKIE.as_bytes() {
                &mut self.cookie
            } else if name == LEGACY_COOKIE.as_bytes() {
                &mut self.legacy_cookie
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(String::from_utf8_lossy(value).into());
            }
        }
    }

    /// The token to validate and where it came from; `None` when the
    /// request has none.
    pub fn token(&self) -> Result<Option<(&str, Carrier)>, AuthError> {
        match self.headers {
            0 => {}
            1 => {
                return match self.header.as_deref() {
                    Some("") | None => Err(AuthError::InvalidRequest),
                    Some(t) => Ok(Some((t, Carrier::Header))),
                };
            }
            _ => return Err(AuthError::InvalidRequest),
        }
        Ok(self
            .cookie
            .as_deref()
            .or(self.legacy_cookie.as_deref())
            .filter(|t| !t.is_empty())
            .map(|t| (t, Carrier::Cookie)))
    }
}

/// The `name=value` pairs of a `Cookie` field, in order, each value
/// without the quotes it may have (RFC 6265, 4.1.1); pieces without `=`
/// are skipped.
pub fn cookies(field: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    field.split(|&b| b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let value = pair[eq + 1..].trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        Some((pair[..eq].trim_ascii(), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_challenges() {
        for (e, status, challenge) in [
            (AuthError::Missing, 401, "Bearer"),
            (
                AuthError::InvalidToken,
                401,
                "Bearer error=\"invalid_token\"",
            ),
            (
                AuthError::InsufficientScope,
                403,
                "Bearer error=\"insufficient_scope\"",
            ),
            (
                AuthError::InvalidRequest,
                400,
                "Bearer error=\"invalid_request\"",
            ),
        ] {
            assert_eq!(e.status(), status);
            assert_eq!(e.challenge(), challenge);
        }
    }

    #[test]
    fn header_first_then_cookies() {
        let mut c = Carriers::default();
        assert_eq!(c.token(), Ok(None));
        c.cookies(b"theme=dark; mercureAuthorization=old");
        assert_eq!(c.token(), Ok(Some(("old", Carrier::Cookie))));
        c.cookies(b"__Secure-mercure_access_token=\"new\"; __Secure-mercure_access_token=second");
        assert_eq!(c.token(), Ok(Some(("new", Carrier::Cookie))));
        c.authorization(b"Basic dXNlcjpwYXNz");
        assert_eq!(c.token(), Ok(Some(("new", Carrier::Cookie))));
        c.authorization(b"bEaReR  from-header ");
        assert_eq!(c.token(), Ok(Some(("from-header", Carrier::Header))));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("from-header") && !shown.contains("new"),
            "{shown}"
        );
        c.authorization(b"Bearer again");
        assert_eq!(c.token(), Err(AuthError::InvalidRequest));
    }

    #[test]
    fn malformed_presentations() {
        let mut empty = Carriers::default();
        empty.authorization(b"Bearer   ");
        assert_eq!(empty.token(), Err(AuthError::InvalidRequest));
        let mut other = Carriers::default();
        other.cookies(b"sseloop_token=a; access_token=b; x__Secure-mercure_access_token=c; __Secure-mercure_access_token");
        assert_eq!(other.token(), Ok(None));
        let mut blank = Carriers::default();
        blank.cookies(b"__Secure-mercure_access_token=");
        assert_eq!(blank.token(), Ok(None));
        let mut short = Carriers::default();
        short.authorization(b"Bearer");
        assert_eq!(short.token(), Err(AuthError::InvalidRequest));
        let mut other_scheme = Carriers::default();
        other_scheme.authorization(b"Bearers x");
        other_scheme.authorization(b"DPoP x");
        assert_eq!(other_scheme.token(), Ok(None));
    }
}
