//! One loop's index of the Mercure subscriptions that exact topics cannot
//! index: the `*` wildcard and URL patterns. Exact matchers go in the
//! loop's topic index (`topics`), where an event finds its subscribers by
//! a hash lookup per topic and costs nothing per subscriber; this index
//! keeps each distinct pattern once with the connections that use it, so
//! an event evaluates each distinct pattern once, not once per subscriber,
//! and a small cache per pattern remembers its answers for recent topics.
//! Like `topics`, it knows connections by key only.
//!
//! An event costs the index each distinct pattern's match against its
//! topics, up to the pattern's weight (its automaton states) per topic
//! byte. Subscribers choose the patterns, so the weights of the distinct
//! patterns one loop holds are capped at [`MAX_LOOP_PATTERN_WEIGHT`]: past
//! it a subscribe is refused, whatever the patterns' subscribers number.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use slab::Slab;

use super::matcher::EventTopics;
use super::urlpattern::UrlPattern;

/// Answers a pattern remembers, by topic.
pub const CACHE_SLOTS: usize = 8;
/// Longest topic whose answer is remembered (longer ones are evaluated
/// each time): bounds a cache to `CACHE_SLOTS × CACHE_TOPIC_LEN` bytes.
pub const CACHE_TOPIC_LEN: usize = 256;
/// Most weight ([`UrlPattern::weight`], automaton states) of the distinct
/// URL patterns subscribed to on one loop: an event's match against all
/// of them costs at most a few steps per weight and byte of each of its
/// topics (at worst measured, 140 patterns of 26 wildcards each: 8 ms a
/// 128-byte topic that no cache answers). About 960 patterns like
/// `/books/:id` (which weighs 17), or 16 of 1 000 bytes of text; each
/// loop of `--loops` holds as much.
pub const MAX_LOOP_PATTERN_WEIGHT: usize = 1 << 14;

#[derive(Debug)]
struct Entry {
    pattern: Arc<UrlPattern>,
    subscribers: Slab<usize>,
    cache: [Option<(Box<str>, bool)>; CACHE_SLOTS],
}

impl Entry {
    /// Whether the pattern matches one of the event's topics, through the
    /// cache (`slots`: each topic's place in it, see [`cache_slots`]).
    fn matches(&mut self, event: &mut EventTopics<'_>, slots: &[Option<usize>]) -> bool {
        let topics = event.topics();
        (0..topics.len()).any(|i| {
            let topic = &*topics[i];
            let Some(slot) = slots.get(i).copied().flatten() else {
                return event.matches_topic(&self.pattern, i);
            };
            let slot = &mut self.cache[slot];
            if let Some((t, hit)) = slot
                && **t == *topic
            {
                return *hit;
            }
            let hit = event.matches_topic(&self.pattern, i);
            *slot = Some((topic.into(), hit));
            hit
        })
    }
}

/// Each topic's slot in a pattern's cache (`None`: longer than
/// [`CACHE_TOPIC_LEN`], not cached), hashed once per event for every
/// pattern.
fn cache_slots(topics: &[Box<str>], out: &mut Vec<Option<usize>>) {
    out.clear();
    out.extend(topics.iter().map(|topic| {
        (topic.len() <= CACHE_TOPIC_LEN).then(|| {
            let mut h = DefaultHasher::new();
            topic.hash(&mut h);
            (h.finish() % CACHE_SLOTS as u64) as usize
        })
    }));
}

/// Where one connection sits in the index, kept by the connection so that
/// leaving costs one removal per pattern.
#[derive(Debug, Default)]
pub struct PatternSubscription {
    wildcard: Option<usize>,
    patterns: Vec<(usize, usize)>,
}

/// The wildcard and URL-pattern subscribers of one loop.
#[derive(Debug, Default)]
pub struct PatternIndex {
    wildcard: Slab<usize>,
    entries: Slab<Entry>,
    by_source: HashMap<Box<str>, usize>,
    /// The weights of the entries' patterns, summed.
    weight: usize,
    /// The current event's topics' cache slots (kept for its capacity).
    slots: Vec<Option<usize>>,
}

impl PatternIndex {
    /// Whether `patterns` fit: the weight of those not subscribed to yet
    /// keeps the loop within [`MAX_LOOP_PATTERN_WEIGHT`].
    pub fn admits(&self, patterns: &[Arc<UrlPattern>]) -> bool {
        let added: usize = patterns
            .iter()
            .filter(|p| !self.by_source.contains_key(p.source()))
            .map(|p| p.weight())
            .sum();
        self.weight + added <= MAX_LOOP_PATTERN_WEIGHT
    }

    /// Adds connection `key` with the wildcard (when `wildcard`) and these
    /// patterns (already deduplicated by the caller, or not: a repeat is
    /// one more slot, and the caller delivers once).
    pub fn subscribe(
        &mut self,
        key: usize,
        wildcard: bool,
        patterns: &[Arc<UrlPattern>],
    ) -> PatternSubscription {
        let wildcard = wildcard.then(|| self.wildcard.insert(key));
        let patterns = patterns
            .iter()
            .map(|p| {
                let entry = match self.by_source.get(p.source()) {
                    Some(&e) => e,
                    None => {
                        let e = self.entries.insert(Entry {
                            pattern: p.clone(),
                            subscribers: Slab::new(),
                            cache: Default::default(),
                        });
                        self.by_source.insert(p.source().into(), e);
                        self.weight += p.weight();
                        e
                    }
                };
                (entry, self.entries[entry].subscribers.insert(key))
            })
            .collect();
        PatternSubscription { wildcard, patterns }
    }

    /// Removes a connection; patterns nobody uses any more are dropped.
    pub fn unsubscribe(&mut self, sub: PatternSubscription) {
        if let Some(w) = sub.wildcard {
            self.wildcard.remove(w);
        }
        for (entry, slot) in sub.patterns {
            let e = &mut self.entries[entry];
            e.subscribers.remove(slot);
            if e.subscribers.is_empty() {
                let e = self.entries.remove(entry);
                self.by_source.remove(e.pattern.source());
                self.weight -= e.pattern.weight();
            }
        }
    }

    /// Distinct patterns subscribed to on this loop.
    #[cfg(test)]
    pub fn patterns(&self) -> usize {
        self.entries.len()
    }

    /// Whether anything here could want an event (when not, the caller
    /// need not build an [`EventTopics`]).
    pub fn is_empty(&self) -> bool {
        self.wildcard.is_empty() && self.entries.is_empty()
    }

    /// Adds to `out` the connections an event goes to through this index: every wildcard
    /// subscriber, then the subscribers of each pattern that matches one of
    /// its topics (each distinct pattern evaluated once). A connection may
    /// be named more than once, as by `topics`: the caller delivers once.
    pub fn recipients(&mut self, event: &mut EventTopics<'_>, out: &mut Vec<usize>) {
        out.extend(self.wildcard.iter().map(|(_, &k)| k));
        if self.entries.is_empty() {
            return;
        }
        cache_slots(event.topics(), &mut self.slots);
        for (_, entry) in self.entries.iter_mut() {
            if entry.matches(event, &self.slots) {
                out.extend(entry.subscribers.iter().map(|(_, &k)| k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mercure::matcher::Patterns;
    use crate::mercure::url::Url;

    fn setup() -> (Patterns, Url) {
        let hub = Url::parse("http://127.0.0.1:8080/.well-known/mercure", None).unwrap();
        (Patterns::new(hub.clone()), hub)
    }

    fn recipients(index: &mut PatternIndex, hub: &Url, topics: &[&str]) -> Vec<usize> {
        let topics: Vec<Box<str>> = topics.iter().map(|&t| t.into()).collect();
        let mut r = Vec::new();
        index.recipients(&mut EventTopics::new(&topics, hub), &mut r);
        r.sort();
        r
    }

    #[test]
    fn wildcard_and_patterns() {
        let (mut p, hub) = setup();
        let books = p.intern("https://example.com/books/:id").unwrap();
        let users = p.intern("https://example.com/users/*").unwrap();
        let mut index = PatternIndex::default();
        let a = index.subscribe(1, false, std::slice::from_ref(&books));
        let b = index.subscribe(2, false, &[books.clone(), users.clone()]);
        let all = index.subscribe(3, true, &[]);
        assert_eq!(index.patterns(), 2);
        assert_eq!(
            recipients(&mut index, &hub, &["https://example.com/books/1"]),
            [1, 2, 3]
        );
        assert_eq!(
            recipients(&mut index, &hub, &["https://example.com/users/9/x"]),
            [2, 3]
        );
        assert_eq!(
            recipients(
                &mut index,
                &hub,
                &["https://example.com/books/1", "https://example.com/users/9"]
            ),
            [1, 2, 2, 3]
        );
        assert_eq!(recipients(&mut index, &hub, &["nothing"]), [3]);
        index.unsubscribe(a);
        index.unsubscribe(all);
        assert_eq!(
            recipients(&mut index, &hub, &["https://example.com/books/1"]),
            [2]
        );
        index.unsubscribe(b);
        assert!(index.is_empty() && index.by_source.is_empty());
    }

    /// Each distinct pattern is evaluated once per event however many hold
    /// it, and a repeated topic is answered from the cache.
    #[test]
    fn one_evaluation_per_distinct_pattern_then_the_cache() {
        let (mut p, hub) = setup();
        let mut index = PatternIndex::default();
        let subs: Vec<_> = (0..100)
            .map(|k| {
                let pattern = p.intern("/rooms/:room").unwrap();
                index.subscribe(k, false, &[pattern])
            })
            .collect();
        let topics: Vec<Box<str>> = vec!["/rooms/a".into()];
        let mut event = EventTopics::new(&topics, &hub);
        let mut out = Vec::new();
        index.recipients(&mut event, &mut out);
        assert_eq!(out.len(), 100);
        assert_eq!(event.evaluations(), 1);
        let entry = index.entries.iter().next().unwrap().1;
        assert!(
            entry
                .cache
                .iter()
                .flatten()
                .any(|(t, hit)| &**t == "/rooms/a" && *hit)
        );
        let mut again = EventTopics::new(&topics, &hub);
        out.clear();
        index.recipients(&mut again, &mut out);
        assert_eq!(out.len(), 100);
        assert_eq!(again.evaluations(), 0);
        drop(subs);
    }

    /// The distinct patterns a loop holds weigh at most
    /// `MAX_LOOP_PATTERN_WEIGHT`: a subscriber of one more is not
    /// admitted, one of a pattern already held is, and the weight comes
    /// back as subscribers leave.
    #[test]
    fn the_weight_of_distinct_patterns_is_capped() {
        let (mut p, _) = setup();
        let mut index = PatternIndex::default();
        let heavy = |p: &mut Patterns, i: usize| {
            p.intern(&format!("/*{}{i:04}", "a".repeat(1000))).unwrap()
        };
        let weight = heavy(&mut p, 0).weight();
        assert!(weight > 1000, "{weight}");
        let mut subs = Vec::new();
        let mut i = 0;
        while index.admits(&[heavy(&mut p, i)]) {
            subs.push(index.subscribe(i, false, &[heavy(&mut p, i)]));
            i += 1;
            assert!(i < 1000, "never refused");
        }
        assert_eq!(i, MAX_LOOP_PATTERN_WEIGHT / weight);
        assert_eq!(index.weight, i * weight);
        // A pattern held already costs nothing more; a light new one may fit.
        assert!(index.admits(&[heavy(&mut p, 0), heavy(&mut p, 1)]));
        let light = p.intern("/books/:id").unwrap();
        assert!(index.admits(std::slice::from_ref(&light)));
        assert!(!index.admits(&[light, heavy(&mut p, i)]));
        let shared = index.subscribe(i, false, &[heavy(&mut p, 0)]);
        index.unsubscribe(subs.remove(0));
        assert!(!index.admits(&[heavy(&mut p, i)]), "still held by another");
        index.unsubscribe(shared);
        assert!(index.admits(&[heavy(&mut p, i)]));
        for sub in subs {
            index.unsubscribe(sub);
        }
        assert_eq!(index.weight, 0);
    }
}
