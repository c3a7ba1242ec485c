//! WHATWG URL Pattern (the 2025-09 review draft the Mercure draft cites),
//! hand-written: a constructor string (`https://example.com/books/:id`,
//! or relative like `/books/:id`, resolved against the hub URL as the
//! draft says) split into its eight components, each compiled from the
//! pattern syntax to an automaton; a topic, parsed by the URL parser
//! against the same base, matches when every component does.
//!
//! Supported: fixed text, `:name` groups, the `*` wildcard, `{…}` groups,
//! the `?`, `+` and `*` modifiers, `\` escapes, each component's
//! canonicalization and default rules (in the pathname a `:name` stops at
//! `/` and takes `/` as its prefix, in the hostname it stops at `.`), a
//! host without a port meaning the default port, and later components
//! defaulting to `*`. `ignoreCase` is never on (the draft forbids it).
//!
//! Not supported, refused with an error that names it: regular-expression
//! groups `(…)` (only `([^/]+?)` and `(.*)`, which are a `:name` and a `*`
//! by definition, are taken), non-ASCII group names and internationalised
//! hostnames. A pattern whose pieces the standard itself refuses is
//! invalid.
//!
//! Cost: a pattern is at most [`MAX_PATTERN_LEN`] bytes, with at most
//! [`MAX_PARTS`] parts and [`MAX_STATES`] automaton states in all. A match
//! visits each state at most once per input byte (see `nfa`), so it costs
//! O(states × topic length) whatever the pattern and the topic; a topic
//! length cap makes that a constant, and the loop's pattern index caps
//! the states of all the patterns an event meets
//! ([`UrlPattern::weight`]).

mod canon;
mod ctor;
mod nfa;
mod parts;

use std::fmt;

use super::url::Url;
use parts::{Modifier, Options, Part, PartKind};

pub use nfa::Steps;

/// Longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Most parts (fixed texts, groups, wildcards) in one pattern's
/// components together.
pub const MAX_PARTS: usize = 64;
/// Most automaton states in one pattern's components together.
pub const MAX_STATES: usize = 4096;

/// Why a pattern was refused; its text names the syntax, for a 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// Longer than [`MAX_PATTERN_LEN`].
    TooLong,
    /// More than [`MAX_PARTS`] parts or [`MAX_STATES`] states.
    TooComplex,
    /// Syntax this implementation does not support.
    Unsupported(&'static str),
    /// Not a URL pattern.
    Invalid(&'static str),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::TooLong => write!(f, "URL pattern longer than {MAX_PATTERN_LEN} bytes"),
            PatternError::TooComplex => write!(
                f,
                "URL pattern with more than {MAX_PARTS} parts or {MAX_STATES} states"
            ),
            PatternError::Unsupported(what) => write!(f, "unsupported URL pattern syntax: {what}"),
            PatternError::Invalid(why) => write!(f, "invalid URL pattern: {why}"),
        }
    }
}

impl std::error::Error for PatternError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Component {
    /// `*`: any value.
    Any,
    /// Fixed text only.
    Exact(String),
    /// Anything else.
    Program(nfa::Program),
}

type Encode = fn(&str) -> Result<String, PatternError>;

const DEFAULT: Options = Options {
    delimiter: None,
    prefix: None,
};
const HOSTNAME: Options = Options {
    delimiter: Some('.'),
    prefix: None,
};
const PATHNAME: Options = Options {
    delimiter: Some('/'),
    prefix: Some('/'),
};

const SPECIAL_SCHEMES: [&str; 6] = ["ftp", "file", "http", "https", "ws", "wss"];

impl Component {
    fn compile(
        input: &str,
        encode: Encode,
        options: Options,
        parts: &mut usize,
        states: &mut usize,
    ) -> Result<Component, PatternError> {
        let list: Vec<Part> = parts::parse(input, options, &encode)?;
        *parts += list.len();
        if *parts > MAX_PARTS {
            return Err(PatternError::TooComplex);
        }
        if let [p] = list.as_slice()
            && p.kind == PartKind::Full
            && p.modifier == Modifier::None
            && p.prefix.is_empty()
            && p.suffix.is_empty()
        {
            return Ok(Component::Any);
        }
        if list
            .iter()
            .all(|p| p.kind == PartKind::Fixed && p.modifier == Modifier::None)
        {
            return Ok(Component::Exact(list.iter().map(|p| &*p.value).collect()));
        }
        let program = nfa::Program::compile(&list, options.delimiter.map(|d| d as u8));
        *states += program.len();
        if *states > MAX_STATES {
            return Err(PatternError::TooComplex);
        }
        Ok(Component::Program(program))
    }

    fn matches(&self, value: &str, steps: &mut Steps) -> bool {
        match self {
            Component::Any => true,
            Component::Exact(text) => text == value,
            Component::Program(p) => p.matches(value.as_bytes(), steps),
        }
    }
}

/// A compiled URL pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPattern {
    source: Box<str>,
    protocol: Component,
    username: Component,
    password: Component,
    hostname: Component,
    port: Component,
    pathname: Component,
    search: Component,
    hash: Component,
}

/// A topic's URL components, as a URL pattern sees them; parse a topic
/// once and match it against many patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicUrl {
    url: Url,
    /// `None`: a host the URL parser cannot serialize (IDNA).
    hostname: Option<String>,
    port: String,
    pathname: String,
}

impl TopicUrl {
    /// The topic resolved against `base`; `None` when it is not a URL
    /// reference, which no pattern matches (the draft says so).
    pub fn parse(topic: &str, base: &Url) -> Option<TopicUrl> {
        let url = Url::parse(topic, Some(base)).ok()?;
        Some(TopicUrl {
            hostname: url.hostname(),
            port: url.port().map(|p| p.to_string()).unwrap_or_default(),
            pathname: url.pathname(),
            url,
        })
    }
}

impl UrlPattern {
    /// Compiles a constructor string; a relative one is resolved against
    /// `base` (the hub URL), and is an error without one.
    pub fn parse(pattern: &str, base: Option<&Url>) -> Result<UrlPattern, PatternError> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        let is_special = |protocol: &str| -> Result<bool, PatternError> {
            let c = Component::compile(protocol, canon::protocol, DEFAULT, &mut 0, &mut 0)?;
            Ok(SPECIAL_SCHEMES
                .iter()
                .any(|s| c.matches(s, &mut Steps::default())))
        };
        let init = ctor::parse(pattern, &is_special)?;
        if init.protocol.is_none() && base.is_none() {
            return Err(PatternError::Invalid(
                "a relative pattern without a base URL",
            ));
        }
        // The draft resolves relative patterns against the hub URL. An
        // absolute one is taken without the base: with it, the standard
        // would join a path like the `*` of `urn:*` to the base's directory,
        // and `urn:*` would match no URN.
        let base = base.filter(|_| init.protocol.is_none());
        let init = with_base(init, base);
        let star = |v: Option<String>| v.unwrap_or_else(|| "*".to_string());
        let protocol = star(init.protocol);
        let mut port = star(init.port);
        if let Some(Some(default)) = super::url::special_port(&protocol)
            && port == default.to_string()
        {
            port.clear();
        }
        let hostname = star(init.hostname);
        let (mut parts, mut states) = (0, 0);
        let mut compile = |input: &str, encode: Encode, options| {
            Component::compile(input, encode, options, &mut parts, &mut states)
        };
        let protocol = compile(&protocol, canon::protocol, DEFAULT)?;
        let username = compile(&star(init.username), canon::userinfo, DEFAULT)?;
        let password = compile(&star(init.password), canon::userinfo, DEFAULT)?;
        let ipv6 =
            hostname.starts_with('[') || hostname.starts_with("{[") || hostname.starts_with("\\[");
        let hostname = if ipv6 {
            compile(&hostname, canon::ipv6_hostname, HOSTNAME)?
        } else {
            compile(&hostname, canon::hostname, HOSTNAME)?
        };
        let port = compile(&port, canon::port, DEFAULT)?;
        let special = SPECIAL_SCHEMES
            .iter()
            .any(|s| protocol.matches(s, &mut Steps::default()));
        let pathname = if special {
            compile(&star(init.pathname), canon::pathname, PATHNAME)?
        } else {
            compile(&star(init.pathname), canon::opaque_pathname, DEFAULT)?
        };
        Ok(UrlPattern {
            source: pattern.into(),
            protocol,
            username,
            password,
            hostname,
            port,
            pathname,
            search: compile(&star(init.search), canon::search, DEFAULT)?,
            hash: compile(&star(init.hash), canon::hash, DEFAULT)?,
        })
    }

    /// The pattern as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Automaton states in all its components (fixed-text and `*`
    /// components have none): a match costs at most
    /// `4 × states × (length + 1)` steps per component.
    pub fn states(&self) -> usize {
        self.components()
            .iter()
            .map(|c| match c {
                Component::Program(p) => p.len(),
                _ => 0,
            })
            .sum()
    }

    /// What a match may cost per byte of the topic: each component's
    /// automaton states, one for a component of fixed text or `*` (a
    /// comparison at most). The loop's pattern index bounds the sum of its
    /// patterns' weights, and so what an event costs it.
    pub fn weight(&self) -> usize {
        self.components()
            .iter()
            .map(|c| match c {
                Component::Program(p) => p.len(),
                _ => 1,
            })
            .sum()
    }

    fn components(&self) -> [&Component; 8] {
        [
            &self.protocol,
            &self.username,
            &self.password,
            &self.hostname,
            &self.port,
            &self.pathname,
            &self.search,
            &self.hash,
        ]
    }

    /// Whether the topic's components all match.
    pub fn matches(&self, topic: &TopicUrl) -> bool {
        self.matches_counted(topic, &mut Steps::default())
    }

    /// [`UrlPattern::matches`], adding the automaton states visited to
    /// `steps`.
    pub fn matches_counted(&self, topic: &TopicUrl, steps: &mut Steps) -> bool {
        // Cheap components first: most are `*` or fixed text.
        let host = match &topic.hostname {
            Some(h) => self.hostname.matches(h, steps),
            None => self.hostname == Component::Any,
        };
        let url = &topic.url;
        host && self.protocol.matches(url.scheme(), steps)
            && self.port.matches(&topic.port, steps)
            && self.username.matches(url.username(), steps)
            && self.password.matches(url.password(), steps)
            && self.pathname.matches(&topic.pathname, steps)
            && self.search.matches(url.query().unwrap_or_default(), steps)
            && self.hash.matches(url.fragment().unwrap_or_default(), steps)
    }

    /// Parses `topic` against `base` and matches it.
    pub fn test(&self, topic: &str, base: &Url) -> bool {
        TopicUrl::parse(topic, base).is_some_and(|t| self.matches(&t))
    }
}

/// "Process a URLPatternInit" for a pattern: components the constructor
/// string left out are taken from the base up to the first one it gave
/// (escaped, as pattern text), and a relative pathname is joined to the
/// base's directory.
fn with_base(mut init: ctor::Init, base: Option<&Url>) -> ctor::Init {
    use parts::escape_pattern as esc;
    if let Some(p) = &mut init.protocol
        && p.ends_with(':')
    {
        p.pop();
    }
    if let Some(s) = &mut init.search
        && s.starts_with('?')
    {
        s.remove(0);
    }
    if let Some(h) = &mut init.hash
        && h.starts_with('#')
    {
        h.remove(0);
    }
    let Some(base) = base else {
        return init;
    };
    let (pr, ho, po, pa, se) = (
        init.protocol.is_some(),
        init.hostname.is_some(),
        init.port.is_some(),
        init.pathname.is_some(),
        init.search.is_some(),
    );
    if !pr {
        init.protocol = Some(esc(base.scheme()));
    }
    if !pr && !ho {
        init.hostname = Some(esc(&base.hostname().unwrap_or_default()));
    }
    if !pr && !ho && !po {
        init.port = Some(base.port().map(|p| p.to_string()).unwrap_or_default());
    }
    if !pr && !ho && !po && !pa {
        init.pathname = Some(esc(&base.pathname()));
    }
    if !pr && !ho && !po && !pa && !se {
        init.search = Some(esc(base.query().unwrap_or_default()));
    }
    if !pr && !ho && !po && !pa && !se && init.hash.is_none() {
        init.hash = Some(esc(base.fragment().unwrap_or_default()));
    }
    if let Some(path) = &mut init.pathname
        && pa
        && !base.has_opaque_path()
        && !is_absolute_pathname(path)
    {
        let base_path = esc(&base.pathname());
        if let Some(slash) = base_path.rfind('/') {
            *path = format!("{}{}", &base_path[..=slash], path);
        }
    }
    init
}

fn is_absolute_pathname(p: &str) -> bool {
    p.starts_with('/') || p.starts_with("\\/") || p.starts_with("{/")
}

#[cfg(test)]
mod tests;
