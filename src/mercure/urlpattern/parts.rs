//! Pattern strings (URL Pattern standard, "Parsing pattern strings"): the
//! tokenizer, in its strict and lenient policies, and the parser that
//! turns one component's pattern string into a part list.
//!
//! Two deliberate limits, both reported as unsupported syntax rather than
//! guessed at: regular-expression groups `(…)` (except the two the standard
//! itself writes for `:name` and `*`, `([^/]+?)`-style and `(.*)`, which
//! are the same parts), and group names with non-ASCII characters (their
//! validity needs the Unicode `ID_Start`/`ID_Continue` tables).

use super::PatternError;

/// A token's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `{`
    Open,
    /// `}`
    Close,
    /// `(…)`, the value without the parentheses.
    Regexp,
    /// `:name`, the value without the colon.
    Name,
    /// Any other character.
    Char,
    /// `\c`, the value the escaped character.
    EscapedChar,
    /// `?` or `+`.
    OtherModifier,
    /// `*`.
    Asterisk,
    /// The end of the input.
    End,
    /// What the lenient policy keeps of a tokenizing error.
    InvalidChar,
}

/// A token: its kind, where it starts (in characters) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: Kind,
    /// Where it starts, in characters.
    pub index: usize,
    /// Its text (without the syntax around it).
    pub value: String,
}

/// Strict (a pattern string: errors are errors) or lenient (the
/// constructor string: errors become `InvalidChar` tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Errors are errors.
    Strict,
    /// Errors become `InvalidChar` tokens.
    Lenient,
}

fn name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '$' || c == '_' || (!first && c.is_ascii_digit())
}

/// Tokenizes `input`.
pub fn tokenize(input: &[char], policy: Policy) -> Result<Vec<Token>, PatternError> {
    let n = input.len();
    let mut tokens = Vec::new();
    let mut index = 0;
    // Adds a token of `kind` whose text is input[value..value_end] and
    // moves on to `next`.
    let add = |tokens: &mut Vec<Token>, index: &mut usize, kind, value: usize, value_end, next| {
        tokens.push(Token {
            kind,
            index: *index,
            value: input[value..value_end].iter().collect(),
        });
        *index = next;
    };
    while index < n {
        let c = input[index];
        let next = index + 1;
        // (kind, value start, value end, next) of the token here; an
        // error is an invalid-char token in the lenient policy.
        let (kind, value, value_end, next) = match c {
            '*' => (Kind::Asterisk, index, next, next),
            '+' | '?' => (Kind::OtherModifier, index, next, next),
            '\\' if index == n - 1 => (Kind::InvalidChar, index, next, next),
            '\\' => (Kind::EscapedChar, next, next + 1, next + 1),
            '{' => (Kind::Open, index, next, next),
            '}' => (Kind::Close, index, next, next),
            ':' => {
                let start = next;
                let mut pos = start;
                while pos < n && name_char(input[pos], pos == start) {
                    pos += 1;
                }
                if policy == Policy::Strict && pos < n && !input[pos].is_ascii() {
                    return Err(PatternError::Unsupported(
                        "`:name` groups with non-ASCII characters in or after the name",
                    ));
                }
                if pos == start {
                    (Kind::InvalidChar, index, start, start)
                } else {
                    (Kind::Name, start, pos, pos)
                }
            }
            '(' => match regexp_end(input, next) {
                Some(end) => (Kind::Regexp, next, end - 1, end),
                None => (Kind::InvalidChar, index, next, next),
            },
            _ => (Kind::Char, index, next, next),
        };
        if kind == Kind::InvalidChar && policy == Policy::Strict {
            return Err(PatternError::Invalid("a character out of place"));
        }
        add(&mut tokens, &mut index, kind, value, value_end, next);
    }
    add(&mut tokens, &mut index, Kind::End, n, n, n);
    Ok(tokens)
}

/// Where a regexp group starting after `(` at `start` ends (one past its
/// `)`), or `None` when the standard's tokenizer calls it an error.
fn regexp_end(input: &[char], start: usize) -> Option<usize> {
    let n = input.len();
    let mut depth = 1;
    let mut pos = start;
    while pos < n {
        let c = input[pos];
        let mut next = pos + 1;
        if !c.is_ascii() || (pos == start && c == '?') {
            return None;
        }
        if c == '\\' {
            if pos == n - 1 || !input[next].is_ascii() {
                return None;
            }
            pos = next + 1;
            continue;
        }
        if c == ')' {
            depth -= 1;
            if depth == 0 {
                pos = next;
                break;
            }
        } else if c == '(' {
            depth += 1;
            if pos == n - 1 || input[next] != '?' {
                return None;
            }
            next = pos + 1;
        }
        pos = next;
    }
    // Unclosed, or `()`.
    (depth == 0 && pos - start > 1).then_some(pos)
}

/// A part's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// Fixed text.
    Fixed,
    /// `:name`: one or more characters other than the delimiter.
    Segment,
    /// `*`: any characters.
    Full,
}

/// A part's modifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    /// Exactly once.
    None,
    /// `?`
    Optional,
    /// `*`
    ZeroOrMore,
    /// `+`
    OneOrMore,
}

/// One part: fixed text, or a group with a prefix and a suffix, and a
/// modifier. Text is already canonicalized (the encoding callback ran).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Fixed text or a group.
    pub kind: PartKind,
    /// The fixed text (empty for a group).
    pub value: String,
    /// How many times it may occur.
    pub modifier: Modifier,
    /// A group's fixed prefix.
    pub prefix: String,
    /// A group's fixed suffix.
    pub suffix: String,
}

/// A component's options: the segment delimiter and the automatic prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// What a `:name` group stops at.
    pub delimiter: Option<char>,
    /// The character a group takes as its automatic prefix.
    pub prefix: Option<char>,
}

/// Parses one component's pattern string into parts, canonicalizing text
/// with `encode`.
pub fn parse(
    input: &str,
    options: Options,
    encode: &dyn Fn(&str) -> Result<String, PatternError>,
) -> Result<Vec<Part>, PatternError> {
    let chars: Vec<char> = input.chars().collect();
    let tokens = tokenize(&chars, Policy::Strict)?;
    let segment_regexp = match options.delimiter {
        Some(d) => format!("[^{}]+?", escape_regexp(d)),
        None => "[^]+?".to_string(),
    };
    let mut p = Parser {
        tokens,
        at: 0,
        parts: Vec::new(),
        pending: String::new(),
        names: Vec::new(),
        next_number: 0,
        encode,
        segment_regexp,
    };
    while p.at < p.tokens.len() {
        let char_token = p.take(Kind::Char);
        let name = p.take(Kind::Name);
        let group = p.take_regexp_or_wildcard(name.is_some());
        if name.is_some() || group.is_some() {
            let mut prefix = char_token.map(|t| t.value).unwrap_or_default();
            if !prefix.is_empty()
                && Some(prefix.as_str()) != options.prefix.map(|c| c.to_string()).as_deref()
            {
                p.pending.push_str(&prefix);
                prefix.clear();
            }
            p.flush()?;
            let modifier = p.take_modifier();
            p.add(&prefix, name, group, "", modifier)?;
            continue;
        }
        if let Some(fixed) = char_token.or_else(|| p.take(Kind::EscapedChar)) {
            p.pending.push_str(&fixed.value);
            continue;
        }
        if p.take(Kind::Open).is_some() {
            let prefix = p.text();
            let name = p.take(Kind::Name);
            let group = p.take_regexp_or_wildcard(name.is_some());
            let suffix = p.text();
            p.take(Kind::Close)
                .ok_or(PatternError::Invalid("a `{` without its `}`"))?;
            let modifier = p.take_modifier();
            p.add(&prefix, name, group, &suffix, modifier)?;
            continue;
        }
        p.flush()?;
        p.take(Kind::End)
            .ok_or(PatternError::Invalid("a character out of place"))?;
    }
    Ok(p.parts)
}

struct Parser<'e> {
    tokens: Vec<Token>,
    at: usize,
    parts: Vec<Part>,
    pending: String,
    names: Vec<String>,
    next_number: usize,
    encode: &'e dyn Fn(&str) -> Result<String, PatternError>,
    segment_regexp: String,
}

impl Parser<'_> {
    fn take(&mut self, kind: Kind) -> Option<Token> {
        let t = self.tokens.get(self.at).filter(|t| t.kind == kind)?.clone();
        self.at += 1;
        Some(t)
    }

    fn take_modifier(&mut self) -> Option<Token> {
        self.take(Kind::OtherModifier)
            .or_else(|| self.take(Kind::Asterisk))
    }

    fn take_regexp_or_wildcard(&mut self, named: bool) -> Option<Token> {
        let t = self.take(Kind::Regexp);
        if t.is_none() && !named {
            return self.take(Kind::Asterisk);
        }
        t
    }

    fn text(&mut self) -> String {
        let mut out = String::new();
        while let Some(t) = self
            .take(Kind::Char)
            .or_else(|| self.take(Kind::EscapedChar))
        {
            out.push_str(&t.value);
        }
        out
    }

    fn flush(&mut self) -> Result<(), PatternError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let value = (self.encode)(&std::mem::take(&mut self.pending))?;
        self.parts.push(Part {
            kind: PartKind::Fixed,
            value,
            modifier: Modifier::None,
            prefix: String::new(),
            suffix: String::new(),
        });
        Ok(())
    }

    fn add(
        &mut self,
        prefix: &str,
        name: Option<Token>,
        group: Option<Token>,
        suffix: &str,
        modifier: Option<Token>,
    ) -> Result<(), PatternError> {
        let modifier = match modifier.as_ref().map(|t| t.value.as_str()) {
            Some("?") => Modifier::Optional,
            Some("*") => Modifier::ZeroOrMore,
            Some("+") => Modifier::OneOrMore,
            _ => Modifier::None,
        };
        if name.is_none() && group.is_none() && modifier == Modifier::None {
            // `{text}`: plain text, joined to what is around it.
            self.pending.push_str(prefix);
            return Ok(());
        }
        self.flush()?;
        if name.is_none() && group.is_none() {
            if prefix.is_empty() {
                return Ok(());
            }
            let value = (self.encode)(prefix)?;
            self.parts.push(Part {
                kind: PartKind::Fixed,
                value,
                modifier,
                prefix: String::new(),
                suffix: String::new(),
            });
            return Ok(());
        }
        let kind = match &group {
            None => PartKind::Segment,
            Some(t) if t.kind == Kind::Asterisk => PartKind::Full,
            Some(t) if t.value == self.segment_regexp => PartKind::Segment,
            Some(t) if t.value == ".*" => PartKind::Full,
            Some(_) => {
                return Err(PatternError::Unsupported(
                    "regular expression groups `(…)` (use `:name`, `*` and `{…}`)",
                ));
            }
        };
        let name = match name {
            Some(t) => t.value,
            None => {
                self.next_number += 1;
                (self.next_number - 1).to_string()
            }
        };
        if self.names.contains(&name) {
            return Err(PatternError::Invalid("a group name used twice"));
        }
        self.names.push(name);
        let prefix = (self.encode)(prefix)?;
        let suffix = (self.encode)(suffix)?;
        self.parts.push(Part {
            kind,
            value: String::new(),
            modifier,
            prefix,
            suffix,
        });
        Ok(())
    }
}

fn escape_regexp(c: char) -> String {
    if ".+*?^${}()[]|/\\".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// Escapes pattern syntax in plain text (a base URL's part taken into a
/// pattern).
pub fn escape_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "+*?:{}()\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
