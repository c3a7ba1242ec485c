//! Topic matchers, as a subscribe query and a token's grants both use
//! them: the reserved wildcard `*` (recognized before the matcher type),
//! exact byte-for-byte topics, and URL patterns compiled once per loop and
//! shared (`Patterns` interns them by their text).
//!
//! An event is matched through [`EventTopics`]: its topics, each parsed as
//! a URL against the hub at most once and only when a pattern asks, and a
//! memo so that each distinct pattern is evaluated at most once per event
//! however many subscribers or grants hold it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use super::chars;
use super::url::Url;
use super::urlpattern::{PatternError, TopicUrl, UrlPattern};

/// Longest matcher value (and topic), in bytes.
pub const MAX_MATCHER_LEN: usize = super::urlpattern::MAX_PATTERN_LEN;

/// A matcher type of the draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// Byte-for-byte comparison, the default.
    Exact,
    /// WHATWG URL Pattern.
    UrlPattern,
}

impl MatchType {
    /// Its canonical name (`exact`, `urlpattern`).
    #[cfg(test)]
    pub fn name(self) -> &'static str {
        match self {
            MatchType::Exact => "exact",
            MatchType::UrlPattern => "urlpattern",
        }
    }

    /// The type of a canonical name (case-sensitive).
    pub fn from_name(name: &str) -> Option<MatchType> {
        match name {
            "exact" => Some(MatchType::Exact),
            "urlpattern" => Some(MatchType::UrlPattern),
            _ => None,
        }
    }
}

/// Why a matcher value was refused; fixed text, never the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatcherError {
    /// Longer than [`MAX_MATCHER_LEN`].
    TooLong,
    /// A control or format character.
    Characters,
    /// Not a URL pattern this hub can compile.
    Pattern(PatternError),
}

impl fmt::Display for MatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatcherError::TooLong => write!(f, "topic matcher longer than {MAX_MATCHER_LEN} bytes"),
            MatcherError::Characters => f.write_str(
                "topic matcher with a control character (C0, C1, DEL) or a format character (Cf)",
            ),
            MatcherError::Pattern(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for MatcherError {}

/// A compiled topic matcher.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// `*`: every topic.
    Any,
    /// This topic, byte for byte.
    Exact(Box<str>),
    /// Topics this URL pattern matches.
    Pattern(Arc<UrlPattern>),
}

impl Eq for Matcher {}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        match (self, other) {
            (Matcher::Any, Matcher::Any) => true,
            (Matcher::Exact(a), Matcher::Exact(b)) => a == b,
            (Matcher::Pattern(a), Matcher::Pattern(b)) => a.source() == b.source(),
            _ => false,
        }
    }
}

impl Matcher {
    /// Checks and compiles `value` as a matcher of type `kind`.
    pub fn compile(
        kind: MatchType,
        value: &str,
        patterns: &mut Patterns,
    ) -> Result<Matcher, MatcherError> {
        if value == "*" {
            return Ok(Matcher::Any);
        }
        if value.len() > MAX_MATCHER_LEN {
            return Err(MatcherError::TooLong);
        }
        if !chars::is_valid(value) {
            return Err(MatcherError::Characters);
        }
        match kind {
            MatchType::Exact => Ok(Matcher::Exact(value.into())),
            MatchType::UrlPattern => patterns
                .intern(value)
                .map(Matcher::Pattern)
                .map_err(MatcherError::Pattern),
        }
    }

    /// Whether it matches one of the event's topics.
    pub fn matches(&self, event: &mut EventTopics<'_>) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Exact(topic) => event.contains(topic),
            Matcher::Pattern(p) => event.matches(p),
        }
    }

    /// Whether it matches the event's topic `i`.
    pub fn matches_at(&self, event: &mut EventTopics<'_>, i: usize) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Exact(topic) => event.topics().get(i).is_some_and(|t| **t == **topic),
            Matcher::Pattern(p) => i < event.topics().len() && event.matches_one(p, i),
        }
    }
}

/// The URL patterns compiled on one loop, by their text: a pattern many
/// subscribers or tokens use is compiled once and shared, and so is its
/// evaluation per event.
#[derive(Debug)]
pub struct Patterns {
    hub: Url,
    by_source: HashMap<Box<str>, Weak<UrlPattern>>,
    swept_at: usize,
}

impl Patterns {
    /// Patterns resolved against the hub URL `hub`.
    pub fn new(hub: Url) -> Patterns {
        Patterns {
            hub,
            by_source: HashMap::new(),
            swept_at: 16,
        }
    }

    /// The hub URL patterns and topics are resolved against.
    pub fn hub(&self) -> &Url {
        &self.hub
    }

    /// The compiled pattern of `source`, compiled now if no live one has
    /// that text.
    pub fn intern(&mut self, source: &str) -> Result<Arc<UrlPattern>, PatternError> {
        if let Some(live) = self.by_source.get(source).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let compiled = Arc::new(UrlPattern::parse(source, Some(&self.hub))?);
        self.by_source
            .insert(source.into(), Arc::downgrade(&compiled));
        // Patterns nobody holds any more are dropped once the table has
        // doubled since the last sweep: amortized O(1), bounded memory.
        if self.by_source.len() >= 2 * self.swept_at {
            self.by_source.retain(|_, w| w.strong_count() > 0);
            self.swept_at = self.by_source.len().max(16);
        }
        Ok(compiled)
    }

    /// Patterns in the table (live or not yet swept).
    #[cfg(test)]
    pub fn compiled(&self) -> usize {
        self.by_source.len()
    }
}

/// Answers an event's memo keeps in a list before it takes a map.
const MEMO_LIST: usize = 16;

/// One event's topics, as matchers see them.
#[derive(Debug)]
pub struct EventTopics<'a> {
    topics: &'a [Box<str>],
    hub: &'a Url,
    /// Each topic as a URL, parsed the first time a pattern asks.
    parsed: Vec<Option<Option<TopicUrl>>>,
    /// Each pattern's answer for this event, by its address and the topic
    /// (`usize::MAX`: any of them): few patterns meet one event, so a list
    /// of up to `MEMO_LIST` answers, then a map (subscribers whose tokens
    /// name many distinct patterns would make a list's lookups quadratic).
    memo: Vec<(usize, usize, bool)>,
    memo_map: HashMap<(usize, usize), bool>,
    evaluations: usize,
}

impl<'a> EventTopics<'a> {
    /// The topics of one event, resolved against `hub`.
    pub fn new(topics: &'a [Box<str>], hub: &'a Url) -> EventTopics<'a> {
        EventTopics {
            topics,
            hub,
            parsed: Vec::new(),
            memo: Vec::new(),
            memo_map: HashMap::new(),
            evaluations: 0,
        }
    }

    /// The topics.
    pub fn topics(&self) -> &'a [Box<str>] {
        self.topics
    }

    /// Whether one topic is `topic`, byte for byte.
    pub fn contains(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| **t == *topic)
    }

    /// Whether `pattern` matches one of the topics; evaluated once per
    /// event and pattern.
    pub fn matches(&mut self, pattern: &Arc<UrlPattern>) -> bool {
        self.memoized(pattern, usize::MAX)
    }

    /// Whether `pattern` matches topic `i`; evaluated once per event,
    /// pattern and topic.
    pub fn matches_one(&mut self, pattern: &Arc<UrlPattern>, i: usize) -> bool {
        self.memoized(pattern, i)
    }

    /// `pattern` against topic `i` (`usize::MAX`: any), from the memo when
    /// it was asked before.
    fn memoized(&mut self, pattern: &Arc<UrlPattern>, i: usize) -> bool {
        let at = Arc::as_ptr(pattern) as usize;
        let known = if self.memo_map.is_empty() {
            self.memo
                .iter()
                .find(|m| m.0 == at && m.1 == i)
                .map(|m| m.2)
        } else {
            self.memo_map.get(&(at, i)).copied()
        };
        if let Some(known) = known {
            return known;
        }
        let hit = if i == usize::MAX {
            (0..self.topics.len()).any(|i| self.matches_topic(pattern, i))
        } else {
            self.matches_topic(pattern, i)
        };
        if self.memo_map.is_empty() && self.memo.len() < MEMO_LIST {
            self.memo.push((at, i, hit));
        } else {
            if self.memo_map.is_empty() {
                self.memo_map
                    .extend(self.memo.drain(..).map(|(at, i, hit)| ((at, i), hit)));
            }
            self.memo_map.insert((at, i), hit);
        }
        hit
    }

    /// Whether `pattern` matches topic `i` (no memo: for a caller with a
    /// cache of its own).
    pub fn matches_topic(&mut self, pattern: &UrlPattern, i: usize) -> bool {
        self.evaluations += 1;
        self.url(i).is_some_and(|t| pattern.matches(t))
    }

    /// How many times a pattern was run against a topic for this event.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    fn url(&mut self, i: usize) -> Option<&TopicUrl> {
        if self.parsed.is_empty() {
            self.parsed = vec![None; self.topics.len()];
        }
        let slot = &mut self.parsed[i];
        if slot.is_none() {
            *slot = Some(TopicUrl::parse(&self.topics[i], self.hub));
        }
        slot.as_ref().and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "http://127.0.0.1:8080/.well-known/mercure";

    fn patterns() -> Patterns {
        Patterns::new(Url::parse(HUB, None).unwrap())
    }

    fn boxed(t: &[&str]) -> Vec<Box<str>> {
        t.iter().map(|&s| s.into()).collect()
    }

    #[test]
    fn compile_rules() {
        let mut p = patterns();
        for kind in [MatchType::Exact, MatchType::UrlPattern] {
            assert_eq!(Matcher::compile(kind, "*", &mut p), Ok(Matcher::Any));
            assert_eq!(
                Matcher::compile(kind, "a\u{200B}b", &mut p),
                Err(MatcherError::Characters)
            );
            assert_eq!(
                Matcher::compile(kind, &"a".repeat(MAX_MATCHER_LEN + 1), &mut p),
                Err(MatcherError::TooLong)
            );
        }
        // Exact values are taken as they are: no resolution, no pattern.
        assert_eq!(
            Matcher::compile(MatchType::Exact, "/books/:id(\\d+)", &mut p),
            Ok(Matcher::Exact("/books/:id(\\d+)".into()))
        );
        assert!(matches!(
            Matcher::compile(MatchType::UrlPattern, "/books/:id(\\d+)", &mut p),
            Err(MatcherError::Pattern(PatternError::Unsupported(_)))
        ));
        assert_eq!(
            MatchType::from_name("urlpattern"),
            Some(MatchType::UrlPattern)
        );
        assert_eq!(MatchType::from_name("URLPattern"), None);
        assert_eq!(MatchType::Exact.name(), "exact");
    }

    #[test]
    fn exact_is_byte_for_byte() {
        let mut p = patterns();
        let m = Matcher::compile(MatchType::Exact, "https://example.com/a", &mut p).unwrap();
        let hub = p.hub().clone();
        for (topics, want) in [
            (&["https://example.com/a"][..], true),
            (&["x", "https://example.com/a"][..], true),
            (&["https://EXAMPLE.com/a"][..], false),
            (&["https://example.com/a/"][..], false),
            (&["https://example.com/%61"][..], false),
            (&["https://example.com:443/a"][..], false),
            (&[][..], false),
        ] {
            let topics = boxed(topics);
            assert_eq!(
                m.matches(&mut EventTopics::new(&topics, &hub)),
                want,
                "{topics:?}"
            );
        }
        // A relative exact matcher is not resolved either.
        let rel = Matcher::compile(MatchType::Exact, "/a", &mut p).unwrap();
        let topics = boxed(&["http://127.0.0.1:8080/a"]);
        assert!(!rel.matches(&mut EventTopics::new(&topics, &hub)));
    }

    /// Past the memo's list, answers move to a map: each of many distinct
    /// patterns is still evaluated once per event and topic, asked before
    /// and after the move.
    #[test]
    fn many_distinct_patterns_are_each_evaluated_once() {
        let mut p = patterns();
        let hub = p.hub().clone();
        let topics = boxed(&["https://example.com/books/1"]);
        let mut event = EventTopics::new(&topics, &hub);
        let compiled: Vec<_> = (0..3 * MEMO_LIST)
            .map(|i| {
                p.intern(&format!("https://example.com/shelf{i}/:id"))
                    .unwrap()
            })
            .collect();
        for round in 0..2 {
            for (i, pattern) in compiled.iter().enumerate() {
                assert!(!event.matches_one(pattern, 0), "{i}");
                assert!(!event.matches(pattern), "{i}");
            }
            assert_eq!(event.evaluations(), 2 * compiled.len(), "round {round}");
        }
        let hit = p.intern("https://example.com/books/:id").unwrap();
        assert!(event.matches(&hit) && event.matches(&hit));
        assert_eq!(event.evaluations(), 2 * compiled.len() + 1);
    }

    #[test]
    fn patterns_are_shared_and_evaluated_once_per_event() {
        let mut p = patterns();
        let a = p.intern("https://example.com/books/:id").unwrap();
        let b = p.intern("https://example.com/books/:id").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let hub = p.hub().clone();
        let topics = boxed(&["urn:x", "https://example.com/books/1"]);
        let mut event = EventTopics::new(&topics, &hub);
        let m1 = Matcher::Pattern(a.clone());
        let m2 = Matcher::Pattern(b.clone());
        assert!(m1.matches(&mut event) && m2.matches(&mut event) && m1.matches(&mut event));
        // One pattern against two topics, once.
        assert_eq!(event.evaluations(), 2);
        let other = Matcher::compile(MatchType::UrlPattern, "/x/*", &mut p).unwrap();
        assert!(!other.matches(&mut event));
        assert_eq!(event.evaluations(), 4);
        // Dropped patterns leave the table as it grows.
        drop((a, b, m1, m2, other));
        for i in 0..100 {
            let _ = p.intern(&format!("/p{i}/*")).unwrap();
        }
        assert!(p.compiled() < 64, "{}", p.compiled());
    }
}
