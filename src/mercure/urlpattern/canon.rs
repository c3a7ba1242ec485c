//! The URL Pattern standard's encoding callbacks: each piece of fixed text
//! in a component is canonicalized as the URL parser would write it in that
//! component, so that `/caf\u{e9}` in a pattern matches the `/caf%C3%A9` a
//! parsed topic has. The standard runs the URL parser with a state
//! override on a dummy `https://dummy.invalid/`; these are the same steps
//! for one component each.

use super::super::host::{self, Host};
use super::super::url::{Set, Url, encode};
use super::PatternError;

/// `canonicalize a protocol`: the scheme of `value://dummy.invalid/`.
pub fn protocol(value: &str) -> Result<String, PatternError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    Url::parse(&format!("{value}://dummy.invalid/"), None)
        .map(|u| u.scheme().to_string())
        .map_err(|_| PatternError::Invalid("a protocol that is not a URL scheme"))
}

/// `canonicalize a username` and `a password`.
pub fn userinfo(value: &str) -> Result<String, PatternError> {
    Ok(encode(value, Set::Userinfo))
}

/// `canonicalize a hostname`: the host state on a special URL, which
/// stops at `/`, `?`, `#` or `\` and refuses a `:` outside brackets.
pub fn hostname(value: &str) -> Result<String, PatternError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let mut inside_brackets = false;
    let mut end = value.len();
    for (i, c) in value.char_indices() {
        match c {
            ':' if !inside_brackets => {
                return Err(PatternError::Invalid("a `:` in a hostname"));
            }
            '/' | '?' | '#' | '\\' => {
                end = i;
                break;
            }
            '[' => inside_brackets = true,
            ']' => inside_brackets = false,
            _ => {}
        }
    }
    if end == 0 {
        return Err(PatternError::Invalid("an empty hostname"));
    }
    match host::parse(&value[..end], false) {
        Ok(Host::Unsupported) => Err(PatternError::Unsupported(
            "internationalised domain names in the hostname (write it in Punycode, without `xn--` labels, or use `*`)",
        )),
        Ok(h) => Ok(h.serialize().unwrap_or_default()),
        Err(_) => Err(PatternError::Invalid("a hostname that is not a host")),
    }
}

/// `canonicalize an IPv6 hostname`: hex digits, `[`, `]` and `:` only,
/// lower-cased.
pub fn ipv6_hostname(value: &str) -> Result<String, PatternError> {
    if value
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, '[' | ']' | ':'))
    {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(PatternError::Invalid(
            "an IPv6 hostname with other characters",
        ))
    }
}

/// `canonicalize a port` with no protocol, as the standard calls it: the
/// port state on the dummy `https` URL, so 443 becomes the empty string.
pub fn port(value: &str) -> Result<String, PatternError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let digits: &str = &value[..value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len())];
    if digits.is_empty() {
        return Err(PatternError::Invalid("a port that is not a number"));
    }
    let trimmed = digits.trim_start_matches('0');
    let port: u32 = if trimmed.is_empty() {
        0
    } else if trimmed.len() > 5 {
        u32::MAX
    } else {
        trimmed.parse().unwrap_or(u32::MAX)
    };
    match port {
        443 => Ok(String::new()),
        0..=65535 => Ok(port.to_string()),
        _ => Err(PatternError::Invalid("a port above 65535")),
    }
}

/// `canonicalize a pathname` (special URLs): the path state from the path
/// start, with `/-` put before a piece that does not start with `/` so
/// that it is not taken for a whole path, and taken off again.
pub fn pathname(value: &str) -> Result<String, PatternError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let leading_slash = value.starts_with('/');
    let modified = if leading_slash {
        value.to_string()
    } else {
        format!("/-{value}")
    };
    let mut chars = modified.chars().peekable();
    // The path start state skips one slash (or backslash).
    if matches!(chars.peek(), Some('/' | '\\')) {
        chars.next();
    }
    let mut segments: Vec<String> = Vec::new();
    let mut buffer = String::new();
    loop {
        let c = chars.next();
        let slash = matches!(c, Some('/' | '\\'));
        if c.is_none() || slash {
            let lower = buffer.to_ascii_lowercase();
            if matches!(lower.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e") {
                segments.pop();
                if !slash {
                    segments.push(String::new());
                }
            } else if matches!(lower.as_str(), "." | "%2e") {
                if !slash {
                    segments.push(String::new());
                }
            } else {
                segments.push(std::mem::take(&mut buffer));
            }
            buffer.clear();
            if c.is_none() {
                break;
            }
        } else if let Some(c) = c {
            // With a state override, `?` and `#` are path characters.
            super::super::url::encode_char(&mut buffer, c, Set::Path);
        }
    }
    let mut result: String = segments.iter().map(|s| format!("/{s}")).collect();
    if !leading_slash {
        result.drain(..2.min(result.len()));
    }
    Ok(result)
}

/// `canonicalize an opaque pathname`: the opaque path state, which a `?`
/// or `#` ends.
pub fn opaque_pathname(value: &str) -> Result<String, PatternError> {
    let mut out = String::new();
    let chars: Vec<char> = value.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '?' | '#' => break,
            ' ' if matches!(chars.get(i + 1), Some('?' | '#')) => out.push_str("%20"),
            _ => super::super::url::encode_char(&mut out, c, Set::C0),
        }
    }
    Ok(out)
}

/// `canonicalize a search` (the dummy URL is special).
pub fn search(value: &str) -> Result<String, PatternError> {
    Ok(encode(value, Set::SpecialQuery))
}

/// `canonicalize a hash`.
pub fn hash(value: &str) -> Result<String, PatternError> {
    Ok(encode(value, Set::Fragment))
}
