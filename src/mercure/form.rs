//! `application/x-www-form-urlencoded` parsing as the WHATWG URL standard
//! defines it (the algorithm `URLSearchParams` runs), for a subscribe
//! query and a publish body alike: split on `&`, skip empty pieces, split
//! each at its first `=` (none: the value is empty), `+` is a space, then
//! percent-decode bytes (`%` not followed by two hex digits stays as it
//! is). The standard decodes the bytes as UTF-8 with replacement
//! characters; the draft says names and values MUST be UTF-8, so here
//! invalid UTF-8 is an error instead.
//!
//! Work is one pass over the input per pair; a name or value with no `+`
//! and no `%` is borrowed from the input, not copied.

use std::borrow::Cow;
use std::fmt;

use crate::percent::{self, Broken};

/// A name or value that is not UTF-8 once percent-decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotUtf8;

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a form field name or value is not UTF-8 once percent-decoded")
    }
}

impl std::error::Error for NotUtf8 {}

/// One decoded `name=value` pair.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The pairs of `input`, in order, each decoded when reached.
pub fn pairs(input: &[u8]) -> Pairs<'_> {
    Pairs { rest: Some(input) }
}

/// The pairs of a form, one by one: see [`pairs`].
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<Pair<'a>, NotUtf8>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let piece = match rest.iter().position(|&b| b == b'&') {
                Some(amp) => {
                    self.rest = Some(&rest[amp + 1..]);
                    &rest[..amp]
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(eq) => (&piece[..eq], &piece[eq + 1..]),
                None => (piece, &piece[piece.len()..]),
            };
            return Some(decode(name).and_then(|n| Ok((n, decode(value)?))));
        }
    }
}

/// One name or value: `+` to space, percent-decoding, UTF-8.
pub fn decode(raw: &[u8]) -> Result<Cow<'_, str>, NotUtf8> {
    match percent::decode(raw, true, Broken::Kept).ok_or(NotUtf8)? {
        Cow::Borrowed(raw) => std::str::from_utf8(raw).map(Cow::Borrowed),
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|e| e.utf8_error()),
    }
    .map_err(|_| NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Result<Vec<(String, String)>, NotUtf8> {
        pairs(input.as_bytes())
            .map(|p| p.map(|(n, v)| (n.into_owned(), v.into_owned())))
            .collect()
    }

    fn ok(input: &str) -> Vec<(String, String)> {
        all(input).unwrap()
    }

    fn pair(n: &str, v: &str) -> (String, String) {
        (n.to_string(), v.to_string())
    }

    /// What `new URLSearchParams(input)` gives in a browser.
    #[test]
    fn as_url_search_params_does() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("&&&", &[]),
            ("a", &[("a", "")]),
            ("a=", &[("a", "")]),
            ("=b", &[("", "b")]),
            ("=", &[("", "")]),
            ("a=b=c", &[("a", "b=c")]),
            ("a=1&a=2&b", &[("a", "1"), ("a", "2"), ("b", "")]),
            ("a+b=c+d", &[("a b", "c d")]),
            ("a%2Bb=%26%3D", &[("a+b", "&=")]),
            ("%zz=%4", &[("%zz", "%4")]),
            ("x=%", &[("x", "%")]),
            ("x=%%41", &[("x", "%A")]),
            ("x=%4a%4A", &[("x", "JJ")]),
            ("caf%C3%A9=%E2%9C%93", &[("caf\u{e9}", "\u{2713}")]),
            ("x=a;b", &[("x", "a;b")]),
            ("x=%00", &[("x", "\0")]),
            ("&x=1&&y=2&", &[("x", "1"), ("y", "2")]),
            (
                "topic=https://example.com/foo&data=the%20content",
                &[
                    ("topic", "https://example.com/foo"),
                    ("data", "the content"),
                ],
            ),
            ("private", &[("private", "")]),
            ("%EF%BB%BFx=1", &[("\u{FEFF}x", "1")]),
        ];
        for (input, want) in cases {
            let want: Vec<_> = want.iter().map(|(n, v)| pair(n, v)).collect();
            assert_eq!(ok(input), want, "{input:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_replacement() {
        for input in [
            "x=%FF",
            "%C3=1",
            "x=%C3%28",
            "ok=1&x=%ED%A0%80",
            "x=%F4%90%80%80",
        ] {
            assert_eq!(all(input), Err(NotUtf8), "{input:?}");
        }
        assert_eq!(pairs(b"x=\xff").next(), Some(Err(NotUtf8)));
        assert_eq!(pairs(b"\xc3=1").next(), Some(Err(NotUtf8)));
        // Pairs before the bad one are still yielded in order.
        let mut it = pairs(b"a=1&b=%FF");
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(NotUtf8)));
    }

    #[test]
    fn plain_text_is_borrowed() {
        let (n, v) = pairs(b"match=https://example.com/a")
            .next()
            .unwrap()
            .unwrap();
        assert!(matches!(n, Cow::Borrowed("match")));
        assert!(matches!(v, Cow::Borrowed("https://example.com/a")));
        let (_, v) = pairs(b"m=a+b").next().unwrap().unwrap();
        assert!(matches!(v, Cow::Owned(_)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// `URLSearchParams` serialization: the form percent-encode set,
        /// space as `+`.
        fn serialize(s: &str) -> String {
            let mut out = String::new();
            for &b in s.as_bytes() {
                match b {
                    b' ' => out.push('+'),
                    b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
                    _ if b.is_ascii_alphanumeric() => out.push(char::from(b)),
                    _ => out.push_str(&format!("%{b:02X}")),
                }
            }
            out
        }

        proptest! {
            /// Parsing inverts `URLSearchParams`'s serialization.
            #[test]
            fn round_trips(fields in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..6)) {
                let text = fields.iter()
                    .map(|(n, v)| format!("{}={}", serialize(n), serialize(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let back = ok(&text);
                prop_assert_eq!(back, fields);
            }

            /// Any bytes: pairs or an error, never a panic, and never more
            /// pairs than `&`-separated pieces.
            #[test]
            fn any_bytes(input in proptest::collection::vec(any::<u8>(), 0..64)) {
                let pieces = input.split(|&b| b == b'&').filter(|p| !p.is_empty()).count();
                let n = pairs(&input).count();
                prop_assert_eq!(n, pieces);
                for (name, value) in pairs(&input).flatten() {
                    prop_assert!(name.len() + value.len() <= input.len());
                }
            }
        }
    }
}
