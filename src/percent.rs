//! Percent-decoding, one loop for every reader of `%XX` escapes: the
//! query (`+` is a space, a broken escape is refused), Mercure's form
//! bodies (`+` is a space, a broken escape stays as it is, as the URL
//! standard's form parser does), URL hosts (no `+`, a broken escape
//! stays) and the userinfo and parts of a Redis URL (no `+`, refused).

use std::borrow::Cow;

/// What a `%` not followed by two hex digits is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// A `%`, as written.
    Kept,
    /// An error: the whole input is refused.
    Refused,
}

/// `input` with its escapes decoded (and `+` as a space when `plus`),
/// borrowed when it has nothing to decode; `None` for a broken escape
/// under [`Broken::Refused`].
pub fn decode(input: &[u8], plus: bool, broken: Broken) -> Option<Cow<'_, [u8]>> {
    if !input.iter().any(|&b| b == b'%' || (plus && b == b'+')) {
        return Some(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => match (
                input.get(i + 1).and_then(hex),
                input.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ if broken == Broken::Refused => return None,
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(Cow::Owned(out))
}

/// The value of one hex digit.
pub fn hex(digit: &u8) -> Option<u8> {
    char::from(*digit).to_digit(16).map(|d| d as u8)
}

/// [`decode`] of text into text: `None` for a broken escape under
/// [`Broken::Refused`] or bytes that are not UTF-8.
pub fn decode_str(text: &str, plus: bool, broken: Broken) -> Option<Cow<'_, str>> {
    match decode(text.as_bytes(), plus, broken)? {
        Cow::Borrowed(_) => Some(Cow::Borrowed(text)),
        Cow::Owned(bytes) => String::from_utf8(bytes).ok().map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: &str, plus: bool, broken: Broken) -> Option<String> {
        decode_str(input, plus, broken).map(Cow::into_owned)
    }

    #[test]
    fn escapes_plus_and_broken_escapes() {
        assert!(matches!(
            decode(b"plain", true, Broken::Refused),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(text("a%20b%2Bc", false, Broken::Refused).unwrap(), "a b+c");
        assert_eq!(text("a+b", true, Broken::Refused).unwrap(), "a b");
        assert_eq!(text("a+b", false, Broken::Refused).unwrap(), "a+b");
        for broken in ["%", "%4", "%G1", "a%zz"] {
            assert_eq!(text(broken, true, Broken::Refused), None, "{broken}");
        }
        assert_eq!(text("100%", true, Broken::Kept).unwrap(), "100%");
        assert_eq!(text("%4%41", false, Broken::Kept).unwrap(), "%4A");
        assert_eq!(text("%ff", false, Broken::Kept), None, "not UTF-8");
        assert_eq!(
            decode(b"%ff", false, Broken::Kept).unwrap().into_owned(),
            [0xff]
        );
    }
}
