//! Enough of the WHATWG URL standard's basic URL parser for the draft: a
//! topic or a relative URL pattern is resolved against the hub's URL "using
//! the URL parser of \[URL\]", and a publish is refused when the resolved
//! path lies in the hub's reserved namespace.
//!
//! What is implemented: the whole state machine for special schemes
//! (`http`, `https`, `ws`, `wss`, `ftp`, `file`, with `file`'s drive-letter
//! quirks) and for other schemes (opaque paths like `urn:…`, `mailto:…`,
//! and `foo://host/path`), relative references against a base,
//! dot-segment removal (`.`, `..`, `%2e` and its mixes), backslashes as
//! slashes in special URLs, default ports dropped, the percent-encode
//! sets of each component, and the hosts of `host` (ASCII domains
//! lower-cased, every IPv4 form, IPv6).
//!
//! What is not: IDNA beyond ASCII lower-casing (a non-ASCII or `xn--`
//! domain parses, with a host that says it is unsupported: see `host`),
//! non-UTF-8 query encodings (a legacy of HTML forms), IPv6 zone ids (the
//! standard has none either) and `blob:` URL entries. Inputs are bounded by
//! the caller (topics and patterns have length caps), and parsing is one
//! pass over them.

use std::fmt;

use super::host::Host;

/// A URL, component by component, as the standard's URL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    username: String,
    password: String,
    host: Option<Host>,
    port: Option<u16>,
    path: Path,
    query: Option<String>,
    fragment: Option<String>,
}

/// A URL's path: a list of segments, or opaque (`urn:…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// Segments of a hierarchical path.
    List(Vec<String>),
    /// The path of a URL like `mailto:a@b` or `urn:x:y`.
    Opaque(String),
}

/// The input is not a URL (relative to the base, when given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUrl;

impl fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a URL")
    }
}

impl std::error::Error for InvalidUrl {}

/// A percent-encode set of the standard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// C0 controls and everything above `~`.
    C0,
    /// Fragments.
    Fragment,
    /// Queries of non-special URLs.
    Query,
    /// Queries of special URLs.
    SpecialQuery,
    /// Path segments.
    Path,
    /// Usernames and passwords.
    Userinfo,
}

impl Set {
    fn contains(self, c: char) -> bool {
        let c0 = c <= '\u{1F}' || c > '~';
        let query = c0 || matches!(c, ' ' | '"' | '#' | '<' | '>');
        let path = query || matches!(c, '?' | '^' | '`' | '{' | '}');
        match self {
            Set::C0 => c0,
            Set::Fragment => c0 || matches!(c, ' ' | '"' | '<' | '>' | '`'),
            Set::Query => query,
            Set::SpecialQuery => query || c == '\'',
            Set::Path => path,
            Set::Userinfo => path || matches!(c, '/' | ':' | ';' | '=' | '@' | '['..='^' | '|'),
        }
    }
}

/// UTF-8 percent-encodes `c` with `set` onto `out`.
pub fn encode_char(out: &mut String, c: char, set: Set) {
    if set.contains(c) {
        let mut buf = [0; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            push_escape(out, b);
        }
    } else {
        out.push(c);
    }
}

/// Pushes `%XX` for `b`, upper-case hex (what the standard writes).
pub fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// UTF-8 percent-encodes `s` with `set`.
pub fn encode(s: &str, set: Set) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        encode_char(&mut out, c, set);
    }
    out
}

/// The default port of a special scheme (`Some(None)` for `file`), or
/// `None` for a scheme that is not special.
pub fn special_port(scheme: &str) -> Option<Option<u16>> {
    Some(match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        "file" => None,
        _ => return None,
    })
}

impl Url {
    /// Parses `input`, relative to `base` when given.
    pub fn parse(input: &str, base: Option<&Url>) -> Result<Url, InvalidUrl> {
        super::url_parser::parse(input, base)
    }

    pub(super) fn empty() -> Url {
        Url {
            scheme: String::new(),
            username: String::new(),
            password: String::new(),
            host: None,
            port: None,
            path: Path::List(Vec::new()),
            query: None,
            fragment: None,
        }
    }

    /// The scheme, lower-cased, without `:`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is special.
    pub fn is_special(&self) -> bool {
        special_port(&self.scheme).is_some()
    }

    /// The username (percent-encoded).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password (percent-encoded).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The host, if any.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// The serialized host (empty when there is none); `None` when the
    /// host is one this parser cannot serialize (IDNA).
    pub fn hostname(&self) -> Option<String> {
        self.host
            .as_ref()
            .map_or(Some(String::new()), Host::serialize)
    }

    /// The port, unless none or the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path, as the standard's URL path serializer writes it.
    pub fn pathname(&self) -> String {
        match &self.path {
            Path::Opaque(p) => p.clone(),
            Path::List(segments) => segments.iter().fold(String::new(), |mut out, s| {
                out.push('/');
                out.push_str(s);
                out
            }),
        }
    }

    /// Whether the path is opaque.
    pub fn has_opaque_path(&self) -> bool {
        matches!(self.path, Path::Opaque(_))
    }

    /// The query without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The fragment without `#`, if any.
    pub fn fragment(&self) -> Option<&str> {
        self.fragment.as_deref()
    }

    /// The whole URL, serialized (`href`); `None` when its host cannot be.
    pub fn serialize(&self) -> Option<String> {
        let mut out = self.scheme.clone();
        out.push(':');
        if let Some(host) = &self.host {
            out.push_str("//");
            if !self.username.is_empty() || !self.password.is_empty() {
                out.push_str(&self.username);
                if !self.password.is_empty() {
                    out.push(':');
                    out.push_str(&self.password);
                }
                out.push('@');
            }
            out.push_str(&host.serialize()?);
            if let Some(port) = self.port {
                out.push(':');
                out.push_str(&port.to_string());
            }
        } else if let Path::List(segments) = &self.path
            && segments.len() > 1
            && segments[0].is_empty()
        {
            out.push_str("/.");
        }
        out.push_str(&self.pathname());
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = &self.fragment {
            out.push('#');
            out.push_str(f);
        }
        Some(out)
    }

    pub(super) fn path_ref(&self) -> &Path {
        &self.path
    }

    pub(super) fn parts_mut(&mut self) -> UrlParts<'_> {
        UrlParts {
            scheme: &mut self.scheme,
            username: &mut self.username,
            password: &mut self.password,
            host: &mut self.host,
            port: &mut self.port,
            path: &mut self.path,
            query: &mut self.query,
            fragment: &mut self.fragment,
        }
    }
}

/// The parser's handle on every field of a [`Url`] it builds.
pub(super) struct UrlParts<'a> {
    /// The scheme.
    pub scheme: &'a mut String,
    /// The username.
    pub username: &'a mut String,
    /// The password.
    pub password: &'a mut String,
    /// The host.
    pub host: &'a mut Option<Host>,
    /// The port.
    pub port: &'a mut Option<u16>,
    /// The path.
    pub path: &'a mut Path,
    /// The query.
    pub query: &'a mut Option<String>,
    /// The fragment.
    pub fragment: &'a mut Option<String>,
}

/// The hub's own URL, with what the reserved-namespace test compares
/// against worked out once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubUrl {
    url: Url,
    text: String,
    namespace: String,
}

impl HubUrl {
    /// The hub at `url`, an absolute URL.
    pub fn parse(url: &str) -> Result<HubUrl, InvalidUrl> {
        let parsed = Url::parse(url, None)?;
        let text = parsed.serialize().ok_or(InvalidUrl)?;
        let namespace = normalize_unreserved(&parsed.pathname());
        Ok(HubUrl {
            url: parsed,
            text,
            namespace,
        })
    }

    /// The parsed URL, the base of topics and relative patterns.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL serialized (what the default token audience is).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The hub URL's path, the root of the reserved namespace.
    #[cfg(test)]
    pub fn path(&self) -> &str {
        &self.namespace
    }

    /// Whether `topic` addresses the hub's reserved namespace: resolved
    /// against the hub URL, its path, with percent-encoded unreserved
    /// characters decoded (the parser already removed dot segments, the
    /// encoded ones too), equals the hub's path or continues it after a
    /// `/`, whatever the scheme and authority. A topic that is not a URL
    /// reference does not.
    pub fn reserves(&self, topic: &str) -> bool {
        let Ok(resolved) = Url::parse(topic, Some(&self.url)) else {
            return false;
        };
        let path = normalize_unreserved(&resolved.pathname());
        path.strip_prefix(&*self.namespace)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Decodes the `%XX` that stand for RFC 3986 unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`), in either hex case.
pub fn normalize_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && (v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~'))
        {
            out.push(char::from(v));
            i += 3;
            continue;
        }
        // Copy a whole character: `%` is ASCII, so `i` is on a boundary.
        let c = path[i..].chars().next().unwrap_or('\u{FFFD}');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
