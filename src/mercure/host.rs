//! The WHATWG URL standard's host parser and serializer: domains (ASCII
//! only), IPv4 (every form the standard reads: `127.1`, `0x7f.0.0.1`, …),
//! IPv6 (compressed on output) and the opaque hosts of non-special URLs.
//!
//! Not supported: internationalised domain names. A domain that is not
//! ASCII after percent-decoding, or has a label starting `xn--` (whose
//! Punycode the standard validates), needs the UTS #46 tables this binary
//! does not carry; it parses as [`Host::Unsupported`], and the caller
//! decides (a URL pattern's hostname then matches it only when the
//! hostname is a wildcard). Publishers following the draft's advice send
//! IDNA-canonical (Punycode) hosts and are not affected unless they use
//! `xn--` labels, which only match `*` hostnames.

use crate::percent::{self, Broken};

/// A parsed host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A domain, ASCII lower-cased.
    Domain(String),
    /// An IPv4 address.
    Ipv4(u32),
    /// An IPv6 address.
    Ipv6([u16; 8]),
    /// The host of a non-special URL, percent-encoded as the standard says.
    Opaque(String),
    /// The empty host (`file:///`, `foo://`).
    Empty,
    /// A domain this parser cannot put in ASCII form (IDNA).
    Unsupported,
}

impl Host {
    /// The host as the standard serializes it; `None` for
    /// [`Host::Unsupported`].
    pub fn serialize(&self) -> Option<String> {
        Some(match self {
            Host::Domain(d) | Host::Opaque(d) => d.clone(),
            Host::Empty => String::new(),
            Host::Ipv4(a) => {
                let mut out = String::with_capacity(15);
                for (i, b) in a.to_be_bytes().iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    push_number(&mut out, u32::from(*b), 10);
                }
                out
            }
            Host::Ipv6(pieces) => {
                let mut out = String::from("[");
                ipv6_serialize(pieces, &mut out);
                out.push(']');
                out
            }
            Host::Unsupported => return None,
        })
    }
}

/// Not a host (a forbidden code point, a bad address, an empty domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHost;

/// A forbidden host code point (opaque hosts may not hold these).
pub fn is_forbidden_host(c: char) -> bool {
    matches!(
        c,
        '\0' | '\t'
            | '\n'
            | '\r'
            | ' '
            | '#'
            | '/'
            | ':'
            | '<'
            | '>'
            | '?'
            | '@'
            | '['
            | '\\'
            | ']'
            | '^'
            | '|'
    )
}

/// A forbidden domain code point.
pub fn is_forbidden_domain(c: char) -> bool {
    is_forbidden_host(c) || c <= '\u{1F}' || c == '%' || c == '\u{7F}'
}

/// The host parser: `opaque` for a non-special URL's host.
pub fn parse(input: &str, opaque: bool) -> Result<Host, InvalidHost> {
    if let Some(inner) = input.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(InvalidHost)?;
        return ipv6_parse(inner).map(Host::Ipv6);
    }
    if opaque {
        if input.chars().any(is_forbidden_host) {
            return Err(InvalidHost);
        }
        let mut out = String::new();
        for c in input.chars() {
            super::url::encode_char(&mut out, c, super::url::Set::C0);
        }
        return Ok(if out.is_empty() {
            Host::Empty
        } else {
            Host::Opaque(out)
        });
    }
    let Some(domain) = percent::decode_str(input, false, Broken::Kept).map(|d| d.into_owned())
    else {
        // The standard decodes with replacement characters, which domain to
        // ASCII then refuses.
        return Err(InvalidHost);
    };
    if !domain.is_ascii()
        || domain
            .split('.')
            .any(|label| label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--"))
    {
        return Ok(Host::Unsupported);
    }
    // Domain to ASCII of an ASCII domain without `xn--` labels is ASCII
    // lower-casing (the standard says so).
    let domain = domain.to_ascii_lowercase();
    if domain.is_empty() || domain.chars().any(is_forbidden_domain) {
        return Err(InvalidHost);
    }
    if ends_in_a_number(&domain) {
        return ipv4_parse(&domain).map(Host::Ipv4);
    }
    Ok(Host::Domain(domain))
}

fn ends_in_a_number(domain: &str) -> bool {
    let mut parts: Vec<&str> = domain.split('.').collect();
    if parts.last() == Some(&"") {
        if parts.len() == 1 {
            return false;
        }
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or("");
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// An IPv4 number part: decimal, `0x` hex or `0` octal.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if part.len() >= 2 && (part.starts_with("0x") || part.starts_with("0X")) {
        (&part[2..], 16)
    } else if part.len() >= 2 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Leading zeros cannot overflow; a long number is out of range anyway.
    let digits = digits.trim_start_matches('0');
    if digits.len() > 12 {
        return Some(u64::MAX);
    }
    u64::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix).ok()
}

fn ipv4_parse(input: &str) -> Result<u32, InvalidHost> {
    let mut parts: Vec<&str> = input.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    if parts.len() > 4 {
        return Err(InvalidHost);
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p).ok_or(InvalidHost))
        .collect::<Result<Vec<u64>, _>>()?;
    let (last, init) = numbers.split_last().ok_or(InvalidHost)?;
    if init.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return Err(InvalidHost);
    }
    let mut ipv4 = *last;
    for (i, n) in init.iter().enumerate() {
        ipv4 += n * 256u64.pow(3 - i as u32);
    }
    u32::try_from(ipv4).map_err(|_| InvalidHost)
}

fn ipv6_parse(input: &str) -> Result<[u16; 8], InvalidHost> {
    let s = input.as_bytes();
    let mut address = [0u16; 8];
    let mut piece = 0usize;
    let mut compress: Option<usize> = None;
    let mut p = 0usize;
    let at = |p: usize| s.get(p).copied();
    if at(p) == Some(b':') {
        if at(p + 1) != Some(b':') {
            return Err(InvalidHost);
        }
        p += 2;
        piece += 1;
        compress = Some(piece);
    }
    while let Some(c) = at(p) {
        if piece == 8 {
            return Err(InvalidHost);
        }
        if c == b':' {
            if compress.is_some() {
                return Err(InvalidHost);
            }
            p += 1;
            piece += 1;
            compress = Some(piece);
            continue;
        }
        let (mut value, mut length) = (0u16, 0);
        while length < 4
            && let Some(d) = at(p).and_then(|c| char::from(c).to_digit(16))
        {
            value = value * 0x10 + d as u16;
            p += 1;
            length += 1;
        }
        match at(p) {
            Some(b'.') => {
                if length == 0 {
                    return Err(InvalidHost);
                }
                p -= length;
                if piece > 6 {
                    return Err(InvalidHost);
                }
                let mut seen = 0;
                while at(p).is_some() {
                    if seen > 0 {
                        if at(p) == Some(b'.') && seen < 4 {
                            p += 1;
                        } else {
                            return Err(InvalidHost);
                        }
                    }
                    let mut v4: Option<u16> = None;
                    if !at(p).is_some_and(|c| c.is_ascii_digit()) {
                        return Err(InvalidHost);
                    }
                    while let Some(d) = at(p).filter(u8::is_ascii_digit) {
                        let n = u16::from(d - b'0');
                        v4 = match v4 {
                            None => Some(n),
                            Some(0) => return Err(InvalidHost),
                            Some(v) => Some(v * 10 + n),
                        };
                        if v4 > Some(255) {
                            return Err(InvalidHost);
                        }
                        p += 1;
                    }
                    address[piece] = address[piece] * 0x100 + v4.unwrap_or(0);
                    seen += 1;
                    if seen == 2 || seen == 4 {
                        piece += 1;
                    }
                }
                if seen != 4 {
                    return Err(InvalidHost);
                }
                break;
            }
            Some(b':') => {
                p += 1;
                if at(p).is_none() {
                    return Err(InvalidHost);
                }
            }
            Some(_) => return Err(InvalidHost),
            None => {}
        }
        address[piece] = value;
        piece += 1;
    }
    if let Some(compress) = compress {
        let mut swaps = piece - compress;
        piece = 7;
        while piece != 0 && swaps > 0 {
            address.swap(piece, compress + swaps - 1);
            piece -= 1;
            swaps -= 1;
        }
    } else if piece != 8 {
        return Err(InvalidHost);
    }
    Ok(address)
}

/// Pushes `n` in `radix` (10 or 16, lower-case), without leading zeros.
fn push_number(out: &mut String, n: u32, radix: u32) {
    if n >= radix {
        push_number(out, n / radix, radix);
    }
    out.push(char::from_digit(n % radix, radix).unwrap_or('0'));
}

fn ipv6_serialize(pieces: &[u16; 8], out: &mut String) {
    // The first longest run of two or more zero pieces becomes `::`.
    let (mut best, mut best_len) = (None, 1);
    let mut i = 0;
    while i < 8 {
        let run = pieces[i..].iter().take_while(|&&p| p == 0).count();
        if run > best_len {
            (best, best_len) = (Some(i), run);
        }
        i += run.max(1);
    }
    let mut i = 0;
    while i < 8 {
        if Some(i) == best {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += best_len;
            continue;
        }
        push_number(out, u32::from(pieces[i]), 16);
        if i != 7 {
            out.push(':');
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(input: &str) -> Result<Option<String>, InvalidHost> {
        parse(input, false).map(|h| h.serialize())
    }

    /// Cases whose answers are the standard's (and browsers').
    #[test]
    fn special_hosts() {
        for (input, want) in [
            ("example.com", "example.com"),
            ("EXAMPLE.com", "example.com"),
            ("ex%41mple.com", "example.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x", "0.0.0.0"),
            ("1.2.3.4.", "1.2.3.4"),
            ("a.1x", "a.1x"),
            ("[::1]", "[::1]"),
            ("[0:0:0:0:0:0:0:1]", "[::1]"),
            ("[2001:DB8::8:800:200C:417A]", "[2001:db8::8:800:200c:417a]"),
            ("[::ffff:192.168.0.1]", "[::ffff:c0a8:1]"),
            ("[1:0:0:2:0:0:0:3]", "[1:0:0:2::3]"),
            ("[1:0:2:0:3:0:4:0]", "[1:0:2:0:3:0:4:0]"),
            ("[::]", "[::]"),
        ] {
            assert_eq!(host(input), Ok(Some(want.to_string())), "{input}");
        }
        for bad in [
            "",
            "a b",
            "a%20b",
            "a<b",
            "a^b",
            "a|b",
            "%",
            "a%00b",
            "256.0.0.1",
            "1.2.3.4.5",
            "0x100000000",
            "09",
            "1.2.3.08",
            "[::1",
            "[1::2::3]",
            "[1:2:3:4:5:6:7:8:9]",
            "[1:2:3]",
            "[::1.2.3]",
            "[::1.2.3.04]",
            "[::1.2.3.256]",
            "[g::]",
            "[:1]",
            "%FF",
        ] {
            assert_eq!(host(bad), Err(InvalidHost), "{bad:?}");
        }
        for idna in [
            "m\u{fc}nchen.de",
            "M%C3%BCnchen.de",
            "xn--mnchen-3ya.de",
            "a.XN--x",
        ] {
            assert_eq!(parse(idna, false), Ok(Host::Unsupported), "{idna}");
        }
    }

    #[test]
    fn opaque_hosts() {
        let opaque = |s| parse(s, true).map(|h| h.serialize().unwrap());
        assert_eq!(opaque("Ex%41mple"), Ok("Ex%41mple".to_string()));
        assert_eq!(opaque("caf\u{e9}"), Ok("caf%C3%A9".to_string()));
        assert_eq!(opaque(""), Ok(String::new()));
        assert_eq!(opaque("[::1]"), Ok("[::1]".to_string()));
        assert_eq!(opaque("a b"), Err(InvalidHost));
        assert_eq!(opaque("a@b"), Err(InvalidHost));
    }
}
