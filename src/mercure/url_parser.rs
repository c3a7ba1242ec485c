//! The basic URL parser's state machine (WHATWG URL, "URL parsing"),
//! without state overrides or encodings: `url` owns the record and what is
//! supported; this file is the algorithm, step by step, in the standard's
//! own order so the two can be read side by side.

use super::host::{self, Host};
use super::url::{InvalidUrl, Path, Set, Url, encode_char, special_port};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SchemeStart,
    Scheme,
    NoScheme,
    SpecialRelativeOrAuthority,
    PathOrAuthority,
    Relative,
    RelativeSlash,
    SpecialAuthoritySlashes,
    SpecialAuthorityIgnoreSlashes,
    Authority,
    Host,
    Port,
    File,
    FileSlash,
    FileHost,
    PathStart,
    Path,
    OpaquePath,
    Query,
    Fragment,
}

fn is_single_dot(s: &str) -> bool {
    s == "." || s.eq_ignore_ascii_case("%2e")
}

fn is_double_dot(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        ".." | ".%2e" | "%2e." | "%2e%2e"
    )
}

fn is_drive_letter(s: &[char]) -> bool {
    s.len() == 2 && s[0].is_ascii_alphabetic() && matches!(s[1], ':' | '|')
}

fn is_normalized_drive_letter(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    is_drive_letter(&c) && c[1] == ':'
}

fn starts_with_drive_letter(s: &[char]) -> bool {
    s.len() >= 2
        && is_drive_letter(&s[..2])
        && (s.len() == 2 || matches!(s[2], '/' | '\\' | '?' | '#'))
}

fn shorten(url: &mut Url) {
    let file = url.scheme() == "file";
    if let Path::List(segments) = url.parts_mut().path {
        if file && segments.len() == 1 && is_normalized_drive_letter(&segments[0]) {
            return;
        }
        segments.pop();
    }
}

fn push_segment(url: &mut Url, segment: String) {
    if let Path::List(segments) = url.parts_mut().path {
        segments.push(segment);
    }
}

/// Runs the basic URL parser on `input` with `base`.
pub fn parse(input: &str, base: Option<&Url>) -> Result<Url, InvalidUrl> {
    let trimmed = input.trim_matches(|c: char| c <= ' ');
    let input: Vec<char> = trimmed
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let mut url = Url::empty();
    let mut state = State::SchemeStart;
    let mut buffer = String::new();
    let (mut at_sign_seen, mut inside_brackets, mut password_token_seen) = (false, false, false);
    let len = input.len() as isize;
    let mut p: isize = 0;
    loop {
        let c = (p < len).then(|| input[p as usize]);
        let remaining = |n: usize| input.get(p as usize + 1 + n).copied();
        let special = url.is_special();
        match state {
            State::SchemeStart => match c {
                Some(c) if c.is_ascii_alphabetic() => {
                    buffer.push(c.to_ascii_lowercase());
                    state = State::Scheme;
                }
                _ => {
                    state = State::NoScheme;
                    p -= 1;
                }
            },
            State::Scheme => match c {
                Some(c) if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {
                    buffer.push(c.to_ascii_lowercase());
                }
                Some(':') => {
                    *url.parts_mut().scheme = std::mem::take(&mut buffer);
                    let special = url.is_special();
                    if url.scheme() == "file" {
                        state = State::File;
                    } else if special && base.is_some_and(|b| b.scheme() == url.scheme()) {
                        state = State::SpecialRelativeOrAuthority;
                    } else if special {
                        state = State::SpecialAuthoritySlashes;
                    } else if remaining(0) == Some('/') {
                        state = State::PathOrAuthority;
                        p += 1;
                    } else {
                        *url.parts_mut().path = Path::Opaque(String::new());
                        state = State::OpaquePath;
                    }
                }
                _ => {
                    buffer.clear();
                    state = State::NoScheme;
                    p = -1;
                }
            },
            State::NoScheme => {
                let base = base.ok_or(InvalidUrl)?;
                if base.has_opaque_path() && c != Some('#') {
                    return Err(InvalidUrl);
                }
                if base.has_opaque_path() {
                    let parts = url.parts_mut();
                    *parts.scheme = base.scheme().to_string();
                    *parts.path = Path::Opaque(base.pathname());
                    *parts.query = base.query().map(str::to_string);
                    *parts.fragment = Some(String::new());
                    state = State::Fragment;
                } else {
                    state = if base.scheme() == "file" {
                        State::File
                    } else {
                        State::Relative
                    };
                    p -= 1;
                }
            }
            State::SpecialRelativeOrAuthority => {
                if c == Some('/') && remaining(0) == Some('/') {
                    state = State::SpecialAuthorityIgnoreSlashes;
                    p += 1;
                } else {
                    state = State::Relative;
                    p -= 1;
                }
            }
            State::PathOrAuthority => {
                if c == Some('/') {
                    state = State::Authority;
                } else {
                    state = State::Path;
                    p -= 1;
                }
            }
            State::Relative => {
                let base = base.ok_or(InvalidUrl)?;
                *url.parts_mut().scheme = base.scheme().to_string();
                let special = url.is_special();
                if c == Some('/') || (special && c == Some('\\')) {
                    state = State::RelativeSlash;
                } else {
                    copy_authority(&mut url, base);
                    let parts = url.parts_mut();
                    *parts.path = base_path(base);
                    *parts.query = base.query().map(str::to_string);
                    match c {
                        Some('?') => {
                            *url.parts_mut().query = Some(String::new());
                            state = State::Query;
                        }
                        Some('#') => {
                            *url.parts_mut().fragment = Some(String::new());
                            state = State::Fragment;
                        }
                        Some(_) => {
                            *url.parts_mut().query = None;
                            shorten(&mut url);
                            state = State::Path;
                            p -= 1;
                        }
                        None => {}
                    }
                }
            }
            State::RelativeSlash => {
                if special && matches!(c, Some('/' | '\\')) {
                    state = State::SpecialAuthorityIgnoreSlashes;
                } else if c == Some('/') {
                    state = State::Authority;
                } else {
                    copy_authority(&mut url, base.ok_or(InvalidUrl)?);
                    state = State::Path;
                    p -= 1;
                }
            }
            State::SpecialAuthoritySlashes => {
                if c == Some('/') && remaining(0) == Some('/') {
                    p += 1;
                } else {
                    p -= 1;
                }
                state = State::SpecialAuthorityIgnoreSlashes;
            }
            State::SpecialAuthorityIgnoreSlashes => {
                if !matches!(c, Some('/' | '\\')) {
                    state = State::Authority;
                    p -= 1;
                }
            }
            State::Authority => match c {
                Some('@') => {
                    if at_sign_seen {
                        buffer.insert_str(0, "%40");
                    }
                    at_sign_seen = true;
                    for cp in std::mem::take(&mut buffer).chars() {
                        if cp == ':' && !password_token_seen {
                            password_token_seen = true;
                            continue;
                        }
                        let parts = url.parts_mut();
                        let target = if password_token_seen {
                            parts.password
                        } else {
                            parts.username
                        };
                        encode_char(target, cp, Set::Userinfo);
                    }
                }
                None | Some('/' | '?' | '#') => {
                    if at_sign_seen && buffer.is_empty() {
                        return Err(InvalidUrl);
                    }
                    p -= buffer.chars().count() as isize + 1;
                    buffer.clear();
                    state = State::Host;
                }
                Some('\\') if special => {
                    if at_sign_seen && buffer.is_empty() {
                        return Err(InvalidUrl);
                    }
                    p -= buffer.chars().count() as isize + 1;
                    buffer.clear();
                    state = State::Host;
                }
                Some(c) => buffer.push(c),
            },
            State::Host => {
                let end = matches!(c, None | Some('/' | '?' | '#')) || (special && c == Some('\\'));
                if c == Some(':') && !inside_brackets {
                    if buffer.is_empty() {
                        return Err(InvalidUrl);
                    }
                    let h = host::parse(&buffer, !special).map_err(|_| InvalidUrl)?;
                    *url.parts_mut().host = Some(h);
                    buffer.clear();
                    state = State::Port;
                } else if end {
                    p -= 1;
                    if special && buffer.is_empty() {
                        return Err(InvalidUrl);
                    }
                    let h = host::parse(&buffer, !special).map_err(|_| InvalidUrl)?;
                    *url.parts_mut().host = Some(h);
                    buffer.clear();
                    state = State::PathStart;
                } else if let Some(c) = c {
                    if c == '[' {
                        inside_brackets = true;
                    } else if c == ']' {
                        inside_brackets = false;
                    }
                    buffer.push(c);
                }
            }
            State::Port => match c {
                Some(d) if d.is_ascii_digit() => buffer.push(d),
                _ if matches!(c, None | Some('/' | '?' | '#')) || (special && c == Some('\\')) => {
                    if !buffer.is_empty() {
                        let digits = buffer.trim_start_matches('0');
                        let port: u16 = if digits.is_empty() {
                            0
                        } else if digits.len() > 5 {
                            return Err(InvalidUrl);
                        } else {
                            digits.parse().map_err(|_| InvalidUrl)?
                        };
                        let default = special_port(url.scheme()).flatten();
                        *url.parts_mut().port = (Some(port) != default).then_some(port);
                        buffer.clear();
                    }
                    state = State::PathStart;
                    p -= 1;
                }
                _ => return Err(InvalidUrl),
            },
            State::File => {
                *url.parts_mut().scheme = "file".to_string();
                *url.parts_mut().host = Some(Host::Empty);
                if matches!(c, Some('/' | '\\')) {
                    state = State::FileSlash;
                } else if let Some(base) = base.filter(|b| b.scheme() == "file") {
                    let parts = url.parts_mut();
                    *parts.host = base.host().cloned();
                    *parts.path = base_path(base);
                    *parts.query = base.query().map(str::to_string);
                    match c {
                        Some('?') => {
                            *url.parts_mut().query = Some(String::new());
                            state = State::Query;
                        }
                        Some('#') => {
                            *url.parts_mut().fragment = Some(String::new());
                            state = State::Fragment;
                        }
                        Some(_) => {
                            *url.parts_mut().query = None;
                            if !starts_with_drive_letter(&input[p as usize..]) {
                                shorten(&mut url);
                            } else {
                                *url.parts_mut().path = Path::List(Vec::new());
                            }
                            state = State::Path;
                            p -= 1;
                        }
                        None => {}
                    }
                } else {
                    state = State::Path;
                    p -= 1;
                }
            }
            State::FileSlash => {
                if matches!(c, Some('/' | '\\')) {
                    state = State::FileHost;
                } else {
                    if let Some(base) = base.filter(|b| b.scheme() == "file") {
                        *url.parts_mut().host = base.host().cloned();
                        if !starts_with_drive_letter(&input[p.min(len) as usize..])
                            && let Path::List(segments) = &base.path_ref()
                            && segments
                                .first()
                                .is_some_and(|s| is_normalized_drive_letter(s))
                        {
                            push_segment(&mut url, segments[0].clone());
                        }
                    }
                    state = State::Path;
                    p -= 1;
                }
            }
            State::FileHost => {
                if matches!(c, None | Some('/' | '\\' | '?' | '#')) {
                    p -= 1;
                    let chars: Vec<char> = buffer.chars().collect();
                    if is_drive_letter(&chars) {
                        // The buffer is kept: the path state takes it.
                        state = State::Path;
                    } else if buffer.is_empty() {
                        *url.parts_mut().host = Some(Host::Empty);
                        state = State::PathStart;
                    } else {
                        let mut h = host::parse(&buffer, false).map_err(|_| InvalidUrl)?;
                        if h == Host::Domain("localhost".to_string()) {
                            h = Host::Empty;
                        }
                        *url.parts_mut().host = Some(h);
                        buffer.clear();
                        state = State::PathStart;
                    }
                } else if let Some(c) = c {
                    buffer.push(c);
                }
            }
            State::PathStart => {
                if special {
                    state = State::Path;
                    if !matches!(c, Some('/' | '\\')) {
                        p -= 1;
                    }
                } else if c == Some('?') {
                    *url.parts_mut().query = Some(String::new());
                    state = State::Query;
                } else if c == Some('#') {
                    *url.parts_mut().fragment = Some(String::new());
                    state = State::Fragment;
                } else if let Some(c) = c {
                    state = State::Path;
                    if c != '/' {
                        p -= 1;
                    }
                }
            }
            State::Path => {
                let slash = c == Some('/') || (special && c == Some('\\'));
                if c.is_none() || slash || matches!(c, Some('?' | '#')) {
                    if is_double_dot(&buffer) {
                        shorten(&mut url);
                        if !slash {
                            push_segment(&mut url, String::new());
                        }
                    } else if is_single_dot(&buffer) && !slash {
                        push_segment(&mut url, String::new());
                    } else if !is_single_dot(&buffer) {
                        let mut segment = std::mem::take(&mut buffer);
                        let empty_path = matches!(url.path_ref(), Path::List(s) if s.is_empty());
                        let chars: Vec<char> = segment.chars().collect();
                        if url.scheme() == "file" && empty_path && is_drive_letter(&chars) {
                            segment = format!("{}:", chars[0]);
                        }
                        push_segment(&mut url, segment);
                    }
                    buffer.clear();
                    if c == Some('?') {
                        *url.parts_mut().query = Some(String::new());
                        state = State::Query;
                    } else if c == Some('#') {
                        *url.parts_mut().fragment = Some(String::new());
                        state = State::Fragment;
                    }
                } else if let Some(c) = c {
                    encode_char(&mut buffer, c, Set::Path);
                }
            }
            State::OpaquePath => match c {
                Some('?') => {
                    *url.parts_mut().query = Some(String::new());
                    state = State::Query;
                }
                Some('#') => {
                    *url.parts_mut().fragment = Some(String::new());
                    state = State::Fragment;
                }
                Some(c) => {
                    if let Path::Opaque(path) = url.parts_mut().path {
                        if c == ' ' && matches!(remaining(0), Some('?' | '#')) {
                            path.push_str("%20");
                        } else {
                            encode_char(path, c, Set::C0);
                        }
                    }
                }
                None => {}
            },
            State::Query => match c {
                None | Some('#') => {
                    let set = if special {
                        Set::SpecialQuery
                    } else {
                        Set::Query
                    };
                    if let Some(query) = url.parts_mut().query.as_mut() {
                        for b in buffer.chars() {
                            encode_char(query, b, set);
                        }
                    }
                    buffer.clear();
                    if c == Some('#') {
                        *url.parts_mut().fragment = Some(String::new());
                        state = State::Fragment;
                    }
                }
                Some(c) => buffer.push(c),
            },
            State::Fragment => {
                if let (Some(c), Some(fragment)) = (c, url.parts_mut().fragment.as_mut()) {
                    encode_char(fragment, c, Set::Fragment);
                }
            }
        }
        if p >= len {
            break;
        }
        p += 1;
    }
    Ok(url)
}

fn copy_authority(url: &mut Url, base: &Url) {
    let parts = url.parts_mut();
    *parts.username = base.username().to_string();
    *parts.password = base.password().to_string();
    *parts.host = base.host().cloned();
    *parts.port = base.port();
}

fn base_path(base: &Url) -> Path {
    base.path_ref().clone()
}
