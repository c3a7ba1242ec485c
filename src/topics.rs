//! One loop's index of who subscribes to what: topic → the connections of
//! this loop that subscribe to it exactly (an `/events` topic, a Mercure
//! exact matcher: a hash lookup per event topic, nothing per subscriber),
//! every `/events` subscriber for broadcasts, and the Mercure wildcard and
//! URL-pattern subscribers (`mercure::index`, each distinct pattern
//! evaluated once per event). It knows connections only by key and never
//! touches a socket or a queue; the loop walks the recipients it names.
//! What every loop shares (ids, the order, the history) is the bus's.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use crate::mercure::index::{PatternIndex, PatternSubscription};
use crate::mercure::matcher::EventTopics;
use crate::mercure::urlpattern::UrlPattern;

/// Where one subscriber sits in the index, kept by its connection so that
/// leaving costs one removal per topic and pattern.
#[derive(Debug)]
pub struct Subscription {
    /// Its place among the receivers of broadcasts (`/events` only).
    all_key: Option<usize>,
    topics: Vec<(Box<str>, usize)>,
    /// A Mercure subscriber's wildcard and URL patterns, when it has any.
    patterns: Option<Box<Patterned>>,
}

/// A Mercure subscriber's matchers beyond exact topics.
#[derive(Debug)]
struct Patterned {
    place: PatternSubscription,
    wildcard: bool,
    patterns: Vec<Arc<UrlPattern>>,
}

impl Subscription {
    /// The topics subscribed to exactly; none and no pattern means
    /// broadcasts only.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|(t, _)| &**t)
    }

    /// Whether it came through the Mercure endpoint.
    pub fn is_mercure(&self) -> bool {
        self.all_key.is_none()
    }

    /// How many matchers a resume compares each kept event's topics with.
    pub fn matcher_count(&self) -> usize {
        self.topics.len() + self.patterns.as_ref().map_or(0, |p| p.patterns.len())
    }

    /// Whether an event on `event`'s topics (none: a broadcast) is for
    /// this subscriber: one of its topics, a broadcast to an `/events`
    /// subscriber, anything for a Mercure `*`, a topic one of its URL
    /// patterns matches.
    pub fn wants(&self, event: &mut EventTopics<'_>) -> bool {
        if event.topics().is_empty() {
            return self.all_key.is_some() || self.patterns.as_ref().is_some_and(|p| p.wildcard);
        }
        if self.topics().any(|s| event.contains(s)) {
            return true;
        }
        self.patterns
            .as_ref()
            .is_some_and(|p| p.wildcard || p.patterns.iter().any(|pattern| event.matches(pattern)))
    }
}

/// Subscribers by topic, for one loop.
#[derive(Debug, Default)]
pub struct Topics {
    /// Every `/events` subscriber, for broadcasts.
    all: Slab<usize>,
    by_topic: HashMap<Box<str>, Slab<usize>>,
    /// Mercure's `*` and URL-pattern subscribers.
    patterns: PatternIndex,
    /// Subscribers now.
    count: usize,
}

impl Topics {
    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.count
    }

    /// Adds connection `key` as an `/events` subscriber of `topics` (none:
    /// broadcasts only); it receives every broadcast.
    pub fn subscribe(&mut self, key: usize, topics: &[String]) -> Subscription {
        let all_key = Some(self.all.insert(key));
        let topics = self.index(key, topics.iter().map(String::as_str));
        self.count += 1;
        Subscription {
            all_key,
            topics,
            patterns: None,
        }
    }

    /// Whether this loop can take a subscriber of `patterns` (their
    /// weight, see [`PatternIndex::admits`]).
    pub fn admits_patterns(&self, patterns: &[Arc<UrlPattern>]) -> bool {
        self.patterns.admits(patterns)
    }

    /// Adds connection `key` as a Mercure subscriber of the `exact`
    /// topics, every topic (`wildcard`, broadcasts too) and the topics
    /// `patterns` match.
    pub fn subscribe_matchers(
        &mut self,
        key: usize,
        exact: &[Box<str>],
        wildcard: bool,
        patterns: Vec<Arc<UrlPattern>>,
    ) -> Subscription {
        let topics = self.index(key, exact.iter().map(|t| &**t));
        let patterns = (wildcard || !patterns.is_empty()).then(|| {
            Box::new(Patterned {
                place: self.patterns.subscribe(key, wildcard, &patterns),
                wildcard,
                patterns,
            })
        });
        self.count += 1;
        Subscription {
            all_key: None,
            topics,
            patterns,
        }
    }

    fn index<'t>(
        &mut self,
        key: usize,
        topics: impl Iterator<Item = &'t str>,
    ) -> Vec<(Box<str>, usize)> {
        topics
            .map(|t| {
                let slot = self.by_topic.entry(t.into()).or_default();
                (t.into(), slot.insert(key))
            })
            .collect()
    }

    /// Removes a subscriber; topics and patterns nobody subscribes to any
    /// more are dropped so that churned names cannot pile up.
    pub fn unsubscribe(&mut self, sub: Subscription) {
        if let Some(all_key) = sub.all_key {
            self.all.remove(all_key);
        }
        for (topic, slot_key) in sub.topics {
            if let Some(slot) = self.by_topic.get_mut(&topic) {
                slot.remove(slot_key);
                if slot.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
        if let Some(patterned) = sub.patterns {
            self.patterns.unsubscribe(patterned.place);
        }
        self.count -= 1;
    }

    /// Whether some subscriber has a wildcard or a URL pattern: when not,
    /// [`Topics::pattern_recipients`] names nobody.
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Distinct URL patterns subscribed to on this loop.
    #[cfg(test)]
    pub fn pattern_count(&self) -> usize {
        self.patterns.patterns()
    }

    /// The connections an event for `topics` goes to by topic (every
    /// `/events` subscriber when empty). A subscriber of several of the
    /// topics is named once per topic: the caller makes each delivery
    /// once.
    pub fn recipients<'a>(&'a self, topics: &'a [Box<str>]) -> impl Iterator<Item = usize> + 'a {
        let broadcast = topics.is_empty().then(|| self.all.iter().map(|(_, &k)| k));
        let topical = topics
            .iter()
            .filter_map(|t| self.by_topic.get(&**t))
            .flat_map(|slot| slot.iter().map(|(_, &k)| k));
        broadcast.into_iter().flatten().chain(topical)
    }

    /// Adds to `out` the connections an event goes to through a wildcard
    /// or a URL pattern (each distinct pattern evaluated once, through its
    /// cache); a connection may be named more than once.
    pub fn pattern_recipients(&mut self, event: &mut EventTopics<'_>, out: &mut Vec<usize>) {
        self.patterns.recipients(event, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mercure::matcher::Patterns;
    use crate::mercure::url::Url;

    fn topics(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn hub() -> Url {
        Url::parse("http://127.0.0.1:8080/.well-known/mercure", None).unwrap()
    }

    fn recipients(index: &mut Topics, t: &[&str]) -> Vec<usize> {
        let t: Vec<Box<str>> = t.iter().map(|&s| s.into()).collect();
        let mut r: Vec<usize> = index.recipients(&t).collect();
        let hub = hub();
        index.pattern_recipients(&mut EventTopics::new(&t, &hub), &mut r);
        r.sort();
        r
    }

    fn wants(sub: &Subscription, t: &[&str]) -> bool {
        let t: Vec<Box<str>> = t.iter().map(|&s| s.into()).collect();
        let hub = hub();
        sub.wants(&mut EventTopics::new(&t, &hub))
    }

    #[test]
    fn broadcast_and_topics() {
        let mut index = Topics::default();
        let a = index.subscribe(1, &topics(&["a"]));
        let _ab = index.subscribe(2, &topics(&["a", "b"]));
        let _none = index.subscribe(3, &[]);
        assert_eq!(recipients(&mut index, &[]), [1, 2, 3]);
        assert_eq!(recipients(&mut index, &["a"]), [1, 2]);
        assert_eq!(recipients(&mut index, &["b"]), [2]);
        assert_eq!(recipients(&mut index, &["a", "b"]), [1, 2, 2]);
        assert_eq!(recipients(&mut index, &["c"]), Vec::<usize>::new());
        index.unsubscribe(a);
        assert_eq!(recipients(&mut index, &["a"]), [2]);
        assert_eq!(index.subscribers(), 2);
    }

    #[test]
    fn empty_topics_are_dropped() {
        let mut index = Topics::default();
        let s = index.subscribe(1, &topics(&["x"]));
        index.unsubscribe(s);
        assert!(index.by_topic.is_empty());
    }

    #[test]
    fn wants_matches_a_topic_or_a_broadcast() {
        let mut index = Topics::default();
        let sub = index.subscribe(1, &topics(&["a", "b"]));
        assert!(wants(&sub, &["b"]));
        assert!(wants(&sub, &[]));
        assert!(!wants(&sub, &["c", "d"]));
        let none = index.subscribe(2, &[]);
        assert!(wants(&none, &[]));
        assert!(!wants(&none, &["a"]));
    }

    /// Mercure subscribers: exact matchers share the topic index with
    /// `/events`; broadcasts reach only `*`; patterns match by URL.
    #[test]
    fn mercure_matchers_beside_events_topics() {
        let mut patterns = Patterns::new(hub());
        let books = patterns.intern("https://example.com/books/:id").unwrap();
        let mut index = Topics::default();
        let events = index.subscribe(1, &topics(&["a"]));
        let exact = index.subscribe_matchers(2, &["a".into()], false, Vec::new());
        let star = index.subscribe_matchers(3, &[], true, Vec::new());
        let pattern = index.subscribe_matchers(4, &[], false, vec![books]);
        assert!(index.has_patterns() && index.pattern_count() == 1);
        assert_eq!(index.subscribers(), 4);
        assert_eq!(recipients(&mut index, &["a"]), [1, 2, 3]);
        assert_eq!(
            recipients(&mut index, &[]),
            [1, 3],
            "broadcasts: /events and *"
        );
        assert_eq!(
            recipients(&mut index, &["https://example.com/books/7"]),
            [3, 4]
        );
        assert!(wants(&exact, &["a"]) && !wants(&exact, &[]));
        assert!(wants(&star, &[]) && wants(&star, &["z"]));
        assert!(wants(&pattern, &["x", "https://example.com/books/1"]));
        assert!(!wants(&pattern, &["https://example.com/books/1/x"]) && !wants(&pattern, &[]));
        assert_eq!(pattern.matcher_count(), 1);
        for sub in [events, exact, star, pattern] {
            index.unsubscribe(sub);
        }
        assert!(index.by_topic.is_empty() && !index.has_patterns() && index.all.is_empty());
        assert_eq!(index.subscribers(), 0);
    }
}
