//! The constructor string parser (URL Pattern standard, "Constructor
//! string parsing"): a shorthand like `https://example.com/books/:id`
//! split into the pattern strings of its components, on lenient tokens so
//! that a `:id` or a `{…}` group is never taken for a separator.

use super::PatternError;
use super::parts::{Kind, Policy, Token, tokenize};

/// The component pattern strings a constructor string gives (`None`:
/// not given, a wildcard unless a base fills it in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Init {
    /// The protocol's pattern string.
    pub protocol: Option<String>,
    /// The username's.
    pub username: Option<String>,
    /// The password's.
    pub password: Option<String>,
    /// The hostname's.
    pub hostname: Option<String>,
    /// The port's.
    pub port: Option<String>,
    /// The pathname's.
    pub pathname: Option<String>,
    /// The search's.
    pub search: Option<String>,
    /// The hash's.
    pub hash: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    Protocol,
    Authority,
    Username,
    Password,
    Hostname,
    Port,
    Pathname,
    Search,
    Hash,
    Done,
}

struct Parser<'a> {
    input: &'a [char],
    tokens: Vec<Token>,
    result: Init,
    component_start: usize,
    index: usize,
    increment: usize,
    group_depth: usize,
    ipv6_depth: usize,
    special: bool,
    state: State,
}

/// Parses a constructor string; `special` says whether a protocol pattern
/// string matches a special scheme.
pub fn parse(
    input: &str,
    special: &dyn Fn(&str) -> Result<bool, PatternError>,
) -> Result<Init, PatternError> {
    let chars: Vec<char> = input.chars().collect();
    let mut p = Parser {
        input: &chars,
        tokens: tokenize(&chars, Policy::Lenient)?,
        result: Init::default(),
        component_start: 0,
        index: 0,
        increment: 1,
        group_depth: 0,
        ipv6_depth: 0,
        special: false,
        state: State::Init,
    };
    while p.index < p.tokens.len() {
        p.increment = 1;
        if p.tokens[p.index].kind == Kind::End {
            if p.state == State::Init {
                // No protocol: a relative pattern, starting with its path,
                // its search or its hash.
                p.rewind();
                if p.is_char(p.index, "#") {
                    p.change(State::Hash, 1);
                } else if p.is_search_prefix() {
                    p.change(State::Search, 1);
                } else {
                    p.change(State::Pathname, 0);
                }
                p.index += p.increment;
                continue;
            }
            if p.state == State::Authority {
                // No `@`: no username or password.
                p.rewind();
                p.state = State::Hostname;
                p.index += p.increment;
                continue;
            }
            p.change(State::Done, 0);
            break;
        }
        if p.tokens[p.index].kind == Kind::Open {
            p.group_depth += 1;
            p.index += p.increment;
            continue;
        }
        if p.group_depth > 0 {
            if p.tokens[p.index].kind == Kind::Close {
                p.group_depth -= 1;
            } else {
                p.index += p.increment;
                continue;
            }
        }
        let i = p.index;
        match p.state {
            State::Init => {
                if p.is_char(i, ":") {
                    p.rewind();
                    p.state = State::Protocol;
                }
            }
            State::Protocol => {
                if p.is_char(i, ":") {
                    p.special = special(&p.component_string())?;
                    let (mut next, mut skip) = (State::Pathname, 1);
                    if p.is_char(i + 1, "/") && p.is_char(i + 2, "/") {
                        (next, skip) = (State::Authority, 3);
                    } else if p.special {
                        next = State::Authority;
                    }
                    p.change(next, skip);
                }
            }
            State::Authority => {
                if p.is_char(i, "@") {
                    p.rewind();
                    p.state = State::Username;
                } else if p.is_char(i, "/") || p.is_search_prefix() || p.is_char(i, "#") {
                    p.rewind();
                    p.state = State::Hostname;
                }
            }
            State::Username => {
                if p.is_char(i, ":") {
                    p.change(State::Password, 1);
                } else if p.is_char(i, "@") {
                    p.change(State::Hostname, 1);
                }
            }
            State::Password => {
                if p.is_char(i, "@") {
                    p.change(State::Hostname, 1);
                }
            }
            State::Hostname => {
                if p.is_char(i, "[") {
                    p.ipv6_depth += 1;
                } else if p.is_char(i, "]") {
                    p.ipv6_depth = p.ipv6_depth.saturating_sub(1);
                } else if p.is_char(i, ":") && p.ipv6_depth == 0 {
                    p.change(State::Port, 1);
                } else if p.is_char(i, "/") {
                    p.change(State::Pathname, 0);
                } else if p.is_search_prefix() {
                    p.change(State::Search, 1);
                } else if p.is_char(i, "#") {
                    p.change(State::Hash, 1);
                }
            }
            State::Port => {
                if p.is_char(i, "/") {
                    p.change(State::Pathname, 0);
                } else if p.is_search_prefix() {
                    p.change(State::Search, 1);
                } else if p.is_char(i, "#") {
                    p.change(State::Hash, 1);
                }
            }
            State::Pathname => {
                if p.is_search_prefix() {
                    p.change(State::Search, 1);
                } else if p.is_char(i, "#") {
                    p.change(State::Hash, 1);
                }
            }
            State::Search => {
                if p.is_char(i, "#") {
                    p.change(State::Hash, 1);
                }
            }
            State::Hash | State::Done => {}
        }
        p.index += p.increment;
    }
    if p.result.hostname.is_some() && p.result.port.is_none() {
        // A host without a port means the default port, not any port.
        p.result.port = Some(String::new());
    }
    Ok(p.result)
}

impl Parser<'_> {
    fn safe_token(&self, i: usize) -> &Token {
        self.tokens
            .get(i)
            .unwrap_or_else(|| &self.tokens[self.tokens.len() - 1])
    }

    /// Whether token `i` is the plain character `value` (not syntax).
    fn is_char(&self, i: usize, value: &str) -> bool {
        let t = self.safe_token(i);
        t.value == value && matches!(t.kind, Kind::Char | Kind::EscapedChar | Kind::InvalidChar)
    }

    fn is_search_prefix(&self) -> bool {
        if self.is_char(self.index, "?") {
            return true;
        }
        if self.tokens[self.index].value != "?" {
            return false;
        }
        // A `?` after a group is its modifier, not the search.
        self.index == 0
            || !matches!(
                self.safe_token(self.index - 1).kind,
                Kind::Name | Kind::Regexp | Kind::Close | Kind::Asterisk
            )
    }

    fn rewind(&mut self) {
        self.index = self.component_start;
        self.increment = 0;
    }

    fn component_string(&self) -> String {
        let start = self.safe_token(self.component_start).index;
        let end = self.tokens[self.index].index;
        self.input[start..end].iter().collect()
    }

    fn slot(&mut self, state: State) -> Option<&mut Option<String>> {
        let r = &mut self.result;
        Some(match state {
            State::Protocol => &mut r.protocol,
            State::Username => &mut r.username,
            State::Password => &mut r.password,
            State::Hostname => &mut r.hostname,
            State::Port => &mut r.port,
            State::Pathname => &mut r.pathname,
            State::Search => &mut r.search,
            State::Hash => &mut r.hash,
            State::Init | State::Authority | State::Done => return None,
        })
    }

    fn change(&mut self, new: State, skip: usize) {
        use State::*;
        let old = self.state;
        let text = self.component_string();
        if let Some(slot) = self.slot(old) {
            *slot = Some(text);
        }
        if old != Init && new != Done {
            let r = &mut self.result;
            if matches!(old, Protocol | Authority | Username | Password)
                && matches!(new, Port | Pathname | Search | Hash)
                && r.hostname.is_none()
            {
                r.hostname = Some(String::new());
            }
            if matches!(
                old,
                Protocol | Authority | Username | Password | Hostname | Port
            ) && matches!(new, Search | Hash)
                && r.pathname.is_none()
            {
                r.pathname = Some(if self.special { "/" } else { "" }.to_string());
            }
            if matches!(
                old,
                Protocol | Authority | Username | Password | Hostname | Port | Pathname
            ) && new == Hash
                && r.search.is_none()
            {
                r.search = Some(String::new());
            }
        }
        self.state = new;
        self.index += skip;
        self.component_start = self.index;
        self.increment = 0;
    }
}
