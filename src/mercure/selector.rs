//! A subscribe request's topic matchers (the draft's "Subscription"),
//! from the query and, for a `QUERY` request, a form body: `match` and
//! `match_exact` (exact), `match_urlpattern` (URL Pattern), any number of
//! each in any order, `*` the wildcard whatever the type; `last_event_id`.
//!
//! Every error is a 400 whose text is fixed (none repeats the request):
//! a name in the reserved `match` namespace (`match` or starting with it,
//! in any case) that is not one of the three; a matcher with a control or
//! format character, longer than
//! [`MAX_MATCHER_LEN`](super::matcher::MAX_MATCHER_LEN), or a pattern this hub
//! cannot compile; more than [`MAX_MATCHERS`] matchers; URL patterns that
//! weigh more than a loop may hold
//! ([`MAX_LOOP_PATTERN_WEIGHT`](super::index::MAX_LOOP_PATTERN_WEIGHT));
//! none at all (the subscription could receive nothing); a query that is
//! not UTF-8.
//!
//! The query and the body are one list, query first: every matcher of
//! both subscribes, and `last_event_id` is the query's when both have one
//! (the first, when a component repeats it). The `Last-Event-ID` header
//! beats both; that is the caller's, which has the header.
//!
//! The legacy `topic` parameter (pre-1.0 Mercure, and sseloop's own
//! `/events`) is an exact matcher here, `*` the wildcard: a 0.x selector
//! without a URI Template expression meant exactly that. One with a `{`
//! (a URI Template, which the reference hub matched in its compatibility
//! mode) is refused rather than silently matched as text.

use std::fmt;
use std::sync::Arc;

use super::form;
use super::index::MAX_LOOP_PATTERN_WEIGHT;
#[cfg(test)]
use super::matcher::EventTopics;
use super::matcher::{MatchType, Matcher, MatcherError, Patterns};
use super::urlpattern::UrlPattern;

/// Most topic matchers in one subscribe request.
pub const MAX_MATCHERS: usize = 64;

/// Why a subscribe request was refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorError {
    /// A name or value is not UTF-8 once decoded.
    NotUtf8,
    /// A `match…` name that is not `match`, `match_exact` or
    /// `match_urlpattern`.
    ReservedName,
    /// No matcher at all.
    NoMatcher,
    /// More than [`MAX_MATCHERS`].
    TooMany,
    /// URL patterns weighing more than [`MAX_LOOP_PATTERN_WEIGHT`] together.
    TooComplex,
    /// A matcher value was refused.
    Matcher(MatcherError),
    /// A legacy `topic` with a URI Template expression.
    UriTemplate,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectorError::NotUtf8 => f.write_str("the query is not UTF-8 once percent-decoded"),
            SelectorError::ReservedName => f.write_str(
                "unknown parameter in the reserved match namespace: use match, match_exact or match_urlpattern (names are case-sensitive)",
            ),
            SelectorError::NoMatcher => {
                f.write_str("no topic matcher: add match=<topic> or match_urlpattern=<pattern>")
            }
            SelectorError::TooMany => write!(f, "more than {MAX_MATCHERS} topic matchers"),
            SelectorError::TooComplex => write!(
                f,
                "URL patterns too complex together: more than {MAX_LOOP_PATTERN_WEIGHT} automaton states"
            ),
            SelectorError::Matcher(e) => e.fmt(f),
            SelectorError::UriTemplate => f.write_str(
                "the legacy topic parameter takes exact topics; URI Templates ({…}) are not supported: use match_urlpattern",
            ),
        }
    }
}

impl std::error::Error for SelectorError {}

/// What a subscribe request selects.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Every matcher as given, in order: the type and the value (for the
    /// subscription's description and a token's payload choice).
    pub matchers: Vec<(MatchType, Box<str>)>,
    /// Whether `*` is among them: every event.
    pub wildcard: bool,
    /// The exact topics, without repeats: the loop's topic index takes
    /// them as they are.
    pub exact: Vec<Box<str>>,
    /// The distinct URL patterns: for the pattern index.
    pub patterns: Vec<Arc<UrlPattern>>,
    /// `last_event_id` (or the pre-1.0 `lastEventID`), when given.
    pub last_event_id: Option<String>,
}

impl Selection {
    /// Whether an event on these topics is for this subscription (a
    /// replay looks at retained events with it; live delivery uses the
    /// indexes).
    #[cfg(test)]
    pub fn matches(&self, event: &mut EventTopics<'_>) -> bool {
        self.wildcard
            || self.exact.iter().any(|t| event.contains(t))
            || self.patterns.iter().any(|p| event.matches(p))
    }
}

/// Parses a subscribe request's query and, for `QUERY`, its form body.
pub fn parse(
    query: &[u8],
    body: Option<&[u8]>,
    patterns: &mut Patterns,
) -> Result<Selection, SelectorError> {
    let mut selection = Selection {
        matchers: Vec::new(),
        wildcard: false,
        exact: Vec::new(),
        patterns: Vec::new(),
        last_event_id: None,
    };
    let mut legacy_id = None;
    for component in std::iter::once(query).chain(body) {
        for pair in form::pairs(component) {
            let (name, value) = pair.map_err(|_| SelectorError::NotUtf8)?;
            let kind = match &*name {
                "match" | "match_exact" => MatchType::Exact,
                "match_urlpattern" => MatchType::UrlPattern,
                "topic" => {
                    if value.contains('{') {
                        return Err(SelectorError::UriTemplate);
                    }
                    MatchType::Exact
                }
                "last_event_id" => {
                    selection.last_event_id.get_or_insert(value.into_owned());
                    continue;
                }
                "lastEventID" | "lastEventId" => {
                    legacy_id.get_or_insert(value.into_owned());
                    continue;
                }
                n if n.len() >= 5 && n.as_bytes()[..5].eq_ignore_ascii_case(b"match") => {
                    return Err(SelectorError::ReservedName);
                }
                _ => continue,
            };
            if selection.matchers.len() == MAX_MATCHERS {
                return Err(SelectorError::TooMany);
            }
            match Matcher::compile(kind, &value, patterns).map_err(SelectorError::Matcher)? {
                Matcher::Any => selection.wildcard = true,
                Matcher::Exact(t) => {
                    if !selection.exact.contains(&t) {
                        selection.exact.push(t);
                    }
                }
                Matcher::Pattern(p) => {
                    if !selection.patterns.iter().any(|q| Arc::ptr_eq(q, &p)) {
                        selection.patterns.push(p);
                    }
                }
            }
            selection.matchers.push((kind, value.into()));
        }
    }
    if selection.matchers.is_empty() {
        return Err(SelectorError::NoMatcher);
    }
    let weight: usize = selection.patterns.iter().map(|p| p.weight()).sum();
    if weight > MAX_LOOP_PATTERN_WEIGHT {
        return Err(SelectorError::TooComplex);
    }
    if selection.last_event_id.is_none() {
        selection.last_event_id = legacy_id;
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mercure::matcher::MAX_MATCHER_LEN;
    use crate::mercure::url::Url;
    use crate::mercure::urlpattern::PatternError;

    const HUB: &str = "http://127.0.0.1:8080/.well-known/mercure";

    fn patterns() -> Patterns {
        Patterns::new(Url::parse(HUB, None).unwrap())
    }

    fn sel(query: &str) -> Result<Selection, SelectorError> {
        parse(query.as_bytes(), None, &mut patterns())
    }

    fn delivered(s: &Selection, topics: &[&str]) -> bool {
        let hub = Url::parse(HUB, None).unwrap();
        let topics: Vec<Box<str>> = topics.iter().map(|&t| t.into()).collect();
        s.matches(&mut EventTopics::new(&topics, &hub))
    }

    /// The draft's example: two exact matchers and a URL pattern.
    #[test]
    fn the_drafts_example() {
        let s = sel("match=https%3A%2F%2Fexample.com%2Ffoo&match=bar&match_urlpattern=https%3A%2F%2Fexample.com%2Fbar%2F%3Aid").unwrap();
        assert_eq!(
            &*s.exact,
            [Box::from("https://example.com/foo"), "bar".into()]
        );
        assert_eq!(s.patterns.len(), 1);
        assert!(!s.wildcard);
        assert!(delivered(&s, &["https://example.com/foo"]));
        assert!(delivered(&s, &["bar"]));
        assert!(delivered(&s, &["https://example.com/bar/1"]));
        assert!(delivered(&s, &["x", "https://example.com/bar/2"]));
        assert!(!delivered(&s, &["https://example.com/baz"]));
        assert!(!delivered(&s, &["https://example.com/bar"]));
        assert_eq!(s.matchers.len(), 3);
        assert_eq!(s.matchers[2].0, MatchType::UrlPattern);
    }

    #[test]
    fn names_and_values() {
        // `match_exact` is `match`; `+` is a space; repeats are one.
        let s = sel("match_exact=a+b&match=a%20b&match=a+b&other=1&matches").unwrap_err();
        assert_eq!(s, SelectorError::ReservedName);
        let s = sel("match_exact=a+b&match=a%20b&match=a+b&other=1&x=match").unwrap();
        assert_eq!(&*s.exact, [Box::from("a b")]);
        assert_eq!(s.matchers.len(), 3);
        // The wildcard, whatever the type.
        for q in [
            "match=*",
            "match_urlpattern=*",
            "match_exact=%2A",
            "topic=*",
        ] {
            let s = sel(q).unwrap();
            assert!(
                s.wildcard && s.exact.is_empty() && s.patterns.is_empty(),
                "{q}"
            );
            assert!(delivered(&s, &["anything"]), "{q}");
        }
        // An empty value is a matcher (of the empty topic).
        assert_eq!(&*sel("match").unwrap().exact, [Box::from("")]);
        assert_eq!(&*sel("match=").unwrap().exact, [Box::from("")]);
    }

    #[test]
    fn the_reserved_match_namespace() {
        for q in [
            "match_regexp=x",
            "Match=x",
            "MATCH=x",
            "match_Exact=x",
            "match_URLPattern=x",
            "matchx=1",
            "match_=x",
            "match_uritemplate=x",
            "match=a&matcher=1",
            "mAtCh_exact=x",
        ] {
            assert_eq!(sel(q).unwrap_err(), SelectorError::ReservedName, "{q}");
        }
        // Names beginning otherwise are not the hub's business.
        assert!(sel("match=a&xmatch=1&mat=2&_match=3").is_ok());
    }

    #[test]
    fn refused_values() {
        for (q, want) in [
            (
                "match=a%00b",
                SelectorError::Matcher(MatcherError::Characters),
            ),
            (
                "match=a%E2%80%8Bb",
                SelectorError::Matcher(MatcherError::Characters),
            ),
            (
                "match_urlpattern=%C2%85",
                SelectorError::Matcher(MatcherError::Characters),
            ),
            (
                "match=%7F",
                SelectorError::Matcher(MatcherError::Characters),
            ),
            ("match=%FF", SelectorError::NotUtf8),
            ("%FF=1", SelectorError::NotUtf8),
            ("", SelectorError::NoMatcher),
            ("last_event_id=x&foo=bar", SelectorError::NoMatcher),
            (
                "topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D",
                SelectorError::UriTemplate,
            ),
        ] {
            assert_eq!(sel(q).unwrap_err(), want, "{q}");
        }
        let long = format!("match={}", "a".repeat(MAX_MATCHER_LEN + 1));
        assert_eq!(
            sel(&long).unwrap_err(),
            SelectorError::Matcher(MatcherError::TooLong)
        );
        assert!(sel(&format!("match={}", "a".repeat(MAX_MATCHER_LEN))).is_ok());
        let many: String = (0..=MAX_MATCHERS).map(|i| format!("match=t{i}&")).collect();
        assert_eq!(sel(&many).unwrap_err(), SelectorError::TooMany);
        let enough: String = (0..MAX_MATCHERS).map(|i| format!("match=t{i}&")).collect();
        assert_eq!(sel(&enough).unwrap().exact.len(), MAX_MATCHERS);
        let e = sel("match_urlpattern=https%3A%2F%2Fexample.com%2F%3Aid(%5Cd%2B)").unwrap_err();
        assert!(matches!(
            e,
            SelectorError::Matcher(MatcherError::Pattern(PatternError::Unsupported(_)))
        ));
        assert!(e.to_string().contains("regular expression groups"), "{e}");
        let e = sel("match_urlpattern=%2F%7Ba").unwrap_err();
        assert!(matches!(
            e,
            SelectorError::Matcher(MatcherError::Pattern(PatternError::Invalid(_)))
        ));
        // The same text as an exact matcher is just a topic.
        assert!(sel("match=%2F%7Ba").is_ok());
    }

    /// Patterns that together weigh more than a loop may hold can never
    /// be served: 400, before any loop is asked.
    #[test]
    fn patterns_heavier_than_a_loop_holds() {
        let heavy = |i: usize| format!("%2F*{}{i:02}", "a".repeat(1020));
        let weight = UrlPattern::parse(
            &format!("/*{}00", "a".repeat(1020)),
            Some(&Url::parse(HUB, None).unwrap()),
        )
        .unwrap()
        .weight();
        let fit = MAX_LOOP_PATTERN_WEIGHT / weight;
        assert!(fit < MAX_MATCHERS, "{weight}");
        let query = |n: usize| -> String {
            (0..n)
                .map(|i| format!("match_urlpattern={}&", heavy(i)))
                .collect()
        };
        assert_eq!(sel(&query(fit)).unwrap().patterns.len(), fit);
        let e = sel(&query(fit + 1)).unwrap_err();
        assert_eq!(e, SelectorError::TooComplex);
        assert!(e.to_string().contains("too complex"), "{e}");
        // The same pattern many times is one.
        let same: String = (0..MAX_MATCHERS)
            .map(|_| format!("match_urlpattern={}&", heavy(0)))
            .collect();
        assert_eq!(sel(&same).unwrap().patterns.len(), 1);
    }

    #[test]
    fn the_legacy_topic_parameter_is_exact() {
        let s = sel("topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&match=x").unwrap();
        assert_eq!(
            &*s.exact,
            [Box::from("https://example.com/books/1"), "x".into()]
        );
        assert!(!delivered(&s, &["https://example.com/books/2"]));
    }

    #[test]
    fn last_event_id_query_before_body_and_the_legacy_name_last() {
        let p = &mut patterns();
        let s = parse(
            b"match=a&last_event_id=q1&last_event_id=q2",
            Some(b"last_event_id=b&match=b"),
            p,
        )
        .unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some("q1"));
        assert_eq!(&*s.exact, [Box::from("a"), "b".into()]);
        let s = parse(b"match=a", Some(b"last_event_id=b"), p).unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some("b"));
        let s = parse(b"lastEventID=old&match=a", Some(b"last_event_id=new"), p).unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some("new"));
        let s = parse(b"lastEventId=old&match=a", None, p).unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some("old"));
        let s = parse(b"match=a&last_event_id=", None, p).unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some(""));
        assert_eq!(sel("match=a").unwrap().last_event_id, None);
        // The body's matchers obey the same rules.
        assert_eq!(
            parse(b"match=a", Some(b"Match=b"), p).unwrap_err(),
            SelectorError::ReservedName
        );
        assert_eq!(
            parse(b"", Some(b"match=%01"), p).unwrap_err(),
            SelectorError::Matcher(MatcherError::Characters)
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// `match` (exact) selects a topic if and only if it is the same
            /// string, byte for byte.
            #[test]
            fn exact_matches_only_equality(value in "\\PC{1,20}", topic in "\\PC{0,20}") {
                let mut encoded = String::from("match=");
                for b in value.as_bytes() {
                    encoded.push_str(&format!("%{b:02X}"));
                }
                let Ok(s) = parse(encoded.as_bytes(), None, &mut patterns()) else {
                    return Ok(());
                };
                if value == "*" {
                    return Ok(());
                }
                prop_assert_eq!(delivered(&s, &[&topic]), topic == value);
                prop_assert!(delivered(&s, &[&value]));
            }
        }
    }
}
