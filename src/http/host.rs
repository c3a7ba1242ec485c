//! The `Host` and `Origin` fields: their syntax (RFC 9112 §3.2, RFC 3986
//! §3.2.2, RFC 6454), the names a loopback server answers to (the
//! DNS-rebinding defence), and whether an origin is the server's own or the
//! allowed one.
//!
//! Loopback names are `localhost` and every name under `.localhost`: RFC 6761
//! §6.3 reserves them for loopback, resolvers and browsers (Chrome, and
//! Firefox since 84) answer them with a loopback address without asking DNS,
//! and no one can register them, so no page elsewhere can rebind them. Then
//! `127.0.0.0/8` and `[::1]` (and `[::ffff:127.x.y.z]`), with any port.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A `Host` value or the authority of an absolute-form target, checked and
/// in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority<'a> {
    /// Lower case without a trailing dot; an IPv6 address canonical, in
    /// brackets. Borrowed from the request when it is written so already,
    /// as clients write it: the check every request gets allocates nothing.
    pub host: Cow<'a, str>,
    /// The port, when one is given (`host:` is none, as RFC 3986 allows).
    pub port: Option<u16>,
}

/// Parses `uri-host [ ":" port ]`: a reg-name or IPv4 address, or an IPv6
/// address in brackets; `None` when it is not one.
pub fn parse_authority(text: &[u8]) -> Option<Authority<'_>> {
    let (host, port) = if let Some(rest) = text.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let addr: Ipv6Addr = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        (Cow::Owned(format!("[{addr}]")), &rest[end + 1..])
    } else {
        let end = text.iter().position(|&b| b == b':').unwrap_or(text.len());
        (reg_name(&text[..end])?, &text[end..])
    };
    let port = match port {
        [] | [b':'] => None,
        [b':', digits @ ..] => Some(parse_port(digits)?),
        _ => return None,
    };
    Some(Authority { host, port })
}

/// A reg-name (or IPv4 address, which is one) in canonical form: lower
/// case, one trailing dot dropped; `None` when empty or not a reg-name.
fn reg_name(text: &[u8]) -> Option<Cow<'_, str>> {
    let text = text.strip_suffix(b".").unwrap_or(text);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                i += 3;
            }
            // unreserved and sub-delims
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => i += 1,
            _ => return None,
        }
    }
    if text.is_empty() {
        return None;
    }
    if text.iter().any(u8::is_ascii_uppercase) {
        let lower = text.to_ascii_lowercase();
        return Some(Cow::Owned(String::from_utf8(lower).expect("checked ASCII")));
    }
    Some(Cow::Borrowed(
        std::str::from_utf8(text).expect("checked ASCII"),
    ))
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The canonical form of an `--allow-host` value: a host name or an IP
/// address (IPv6 with or without brackets), without a port.
pub fn canonical_host(text: &str) -> Option<String> {
    if let Ok(addr) = text.parse::<Ipv6Addr>() {
        return Some(format!("[{addr}]"));
    }
    match parse_authority(text.as_bytes()) {
        Some(Authority { host, port: None }) if !text.ends_with(':') => Some(host.into_owned()),
        _ => None,
    }
}

/// True for a canonical host that is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    let v6 = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    match v6.and_then(|h| h.parse::<Ipv6Addr>().ok()) {
        Some(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        None => false,
    }
}

/// True when the canonical `host` is `allowed` (an `--allow-host` value):
/// names compared without case or a trailing dot, IPv6 addresses as
/// addresses. Allocates nothing, since it runs on every request.
pub fn host_matches(allowed: &str, host: &str) -> bool {
    let unbracket = |h: &str| {
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
    };
    match (
        unbracket(allowed).or_else(|| allowed.parse().ok()),
        unbracket(host),
    ) {
        (Some(a), Some(h)) => a == h,
        (None, None) => {
            let allowed = allowed.strip_suffix('.').unwrap_or(allowed);
            allowed.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// A serialized origin: `http` or `https`, a canonical host, and the port
/// (the scheme's default when none is written).
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    https: bool,
    host: Cow<'a, str>,
    port: u16,
}

fn parse_origin(text: &[u8]) -> Option<Origin<'_>> {
    let lower = |n: usize| text.get(..n).map(<[u8]>::to_ascii_lowercase);
    let (https, rest) = if lower(7).as_deref() == Some(b"http://") {
        (false, &text[7..])
    } else if lower(8).as_deref() == Some(b"https://") {
        (true, &text[8..])
    } else {
        return None;
    };
    let authority = parse_authority(rest)?;
    let default = if https { 443 } else { 80 };
    Some(Origin {
        https,
        host: authority.host,
        port: authority.port.unwrap_or(default),
    })
}

/// True for a serialized origin as browsers send it: `http://` or
/// `https://`, a host, an optional port, and nothing else (not even a `/`).
pub fn valid_origin(text: &str) -> bool {
    parse_origin(text.as_bytes()).is_some()
}

/// Whether a publish carrying `Origin: origin` may go on: the origin is the
/// server's own (what a page served at `own`, the request's host, has:
/// `http://`, or `https://` when `own_https`, and that host and port, the
/// scheme's default when none is given), or the `--allow-origin` one (`*`:
/// any). `null`, a list, or anything that is not one origin is refused.
///
/// `own_https` is what a proxy in front says with `X-Forwarded-Proto:
/// https`: trusting it lets no other page in, because a browser sends that
/// field only after a preflight, and sseloop answers preflights only for
/// `--allow-origin`, whose pages may publish anyway.
pub fn origin_allowed(
    origin: &[u8],
    own: Option<&Authority>,
    own_https: bool,
    allow_origin: Option<&str>,
) -> bool {
    let origin = origin.trim_ascii();
    if origin == b"null" {
        return false;
    }
    let Some(parsed) = parse_origin(origin) else {
        return false;
    };
    let own_origin = own.map(|own| Origin {
        https: own_https,
        host: Cow::Borrowed(&*own.host),
        port: own.port.unwrap_or(if own_https { 443 } else { 80 }),
    });
    if own_origin.as_ref() == Some(&parsed) {
        return true;
    }
    match allow_origin {
        Some("*") => true,
        Some(allowed) => parse_origin(allowed.as_bytes()).is_some_and(|a| a == parsed),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(text: &str) -> Option<(String, Option<u16>)> {
        parse_authority(text.as_bytes()).map(|a| (a.host.into_owned(), a.port))
    }

    #[test]
    fn host_syntax() {
        let some = |h: &str, p: Option<u16>| Some((h.to_owned(), p));
        assert_eq!(authority("localhost"), some("localhost", None));
        assert_eq!(authority("LocalHost.:8080"), some("localhost", Some(8080)));
        assert_eq!(authority("127.0.0.1:0"), some("127.0.0.1", Some(0)));
        assert_eq!(authority("[::1]:65535"), some("[::1]", Some(65535)));
        assert_eq!(authority("[0:0::1]"), some("[::1]", None));
        assert_eq!(authority("a-b_c~d%41:"), some("a-b_c~d%41", None));
        // What clients send is canonical already: borrowed, not copied.
        let borrowed = |h: &str| {
            matches!(
                parse_authority(h.as_bytes()).unwrap().host,
                Cow::Borrowed(_)
            )
        };
        assert!(borrowed("localhost:8080") && borrowed("127.0.0.1") && borrowed("a.b."));
        assert!(!borrowed("LocalHost") && !borrowed("[::1]"));
        for bad in [
            "",
            ":80",
            ".",
            "a b",
            "a:b",
            "a:80:80",
            "a:65536",
            "a:000080",
            "a:-1",
            "[::1",
            "::1",
            "[::1]x",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "user@host",
            "a/b",
            "a%4",
            "a%zz",
            "h\u{e9}te",
            "a\tb",
        ] {
            assert_eq!(authority(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for yes in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.255.0.9",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "localhost.example",
            "xlocalhost",
            "128.0.0.1",
            "127.1",
            "0.0.0.0",
            "[::]",
            "[::2]",
            "example.com",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn allowed_hosts_match_as_names_and_addresses() {
        assert!(host_matches("App.Example.", "app.example"));
        assert!(host_matches("app.example", "app.example"));
        assert!(!host_matches("app.example", "app.example.org"));
        assert!(host_matches("::1", "[::1]"));
        assert!(host_matches("[0::1]", "[::1]"));
        assert!(!host_matches("::1", "localhost"));
        assert!(!host_matches("app", "[::1]"));
        assert_eq!(canonical_host("App.Example."), Some("app.example".into()));
        assert_eq!(canonical_host("::1"), Some("[::1]".into()));
        assert_eq!(canonical_host("[::1]"), Some("[::1]".into()));
        assert_eq!(canonical_host("10.0.0.1"), Some("10.0.0.1".into()));
        for bad in ["", "a:80", "a:", "[::1]:80", "a b", "a/b", "http://a"] {
            assert_eq!(canonical_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn origins() {
        let own = parse_authority(b"localhost:8080");
        let own = own.as_ref();
        let ok = |o: &str, allow: Option<&str>| origin_allowed(o.as_bytes(), own, false, allow);
        assert!(ok("http://localhost:8080", None));
        assert!(ok("HTTP://LocalHost.:8080", None));
        assert!(!ok("http://localhost:8081", None));
        assert!(!ok("http://localhost", None));
        assert!(!ok("https://localhost:8080", None));
        assert!(!ok("http://127.0.0.1:8080", None));
        assert!(!ok("null", None));
        assert!(!ok("null", Some("*")));
        assert!(!ok("", Some("*")));
        assert!(!ok("http://localhost:8080 http://a.example", None));
        assert!(ok("https://a.example", Some("https://a.example")));
        assert!(ok("https://a.example:443", Some("https://A.example")));
        assert!(!ok("http://a.example", Some("https://a.example")));
        assert!(!ok("https://b.example", Some("https://a.example")));
        assert!(ok("https://b.example", Some("*")));
        // The default port: a Host without one is port 80.
        let plain = parse_authority(b"app.example").unwrap();
        assert!(origin_allowed(
            b"http://app.example:80",
            Some(&plain),
            false,
            None
        ));
        let eighty = parse_authority(b"app.example:80").unwrap();
        assert!(origin_allowed(
            b"http://app.example",
            Some(&eighty),
            false,
            None
        ));
        // No Host (HTTP/1.0): only the allowed origin.
        assert!(!origin_allowed(b"http://localhost", None, false, None));
        assert!(origin_allowed(
            b"http://a.example",
            None,
            false,
            Some("http://a.example")
        ));
    }

    /// Behind a proxy that says `X-Forwarded-Proto: https`, the own origin is
    /// `https://` and the Host: the scheme's default port is 443, and the
    /// `http://` origin of the same host is another origin.
    #[test]
    fn own_origin_over_https() {
        let named = parse_authority(b"app.example").unwrap();
        let https = |o: &str| origin_allowed(o.as_bytes(), Some(&named), true, None);
        assert!(https("https://app.example"));
        assert!(https("https://APP.example:443"));
        assert!(!https("http://app.example"));
        assert!(!https("https://app.example:8443"));
        assert!(!https("https://other.example"));
        let ported = parse_authority(b"app.example:8443").unwrap();
        assert!(origin_allowed(
            b"https://app.example:8443",
            Some(&ported),
            true,
            None
        ));
        assert!(!origin_allowed(
            b"http://app.example:8443",
            Some(&ported),
            true,
            None
        ));
        let on_443 = parse_authority(b"app.example:443").unwrap();
        assert!(origin_allowed(
            b"https://app.example",
            Some(&on_443),
            true,
            None
        ));
    }
}
