//! One loop's index of who subscribes to what: topic → the connections of
//! this loop that subscribe to it, and every subscriber for broadcasts. It
//! knows connections only by key and never touches a socket or a queue;
//! the loop walks the recipients it names. What every loop shares (ids,
//! the order, the history) is the bus's.

use std::collections::HashMap;

use slab::Slab;

/// Where one subscriber sits in the index, kept by its connection so that
/// leaving costs one removal per topic.
#[derive(Debug)]
pub struct Subscription {
    all_key: usize,
    topics: Vec<(Box<str>, usize)>,
}

impl Subscription {
    /// The topics subscribed to; empty means broadcasts only.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|(t, _)| &**t)
    }

    /// How many topics it subscribes to.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Whether an event on `topics` (none: a broadcast) is for this
    /// subscriber.
    pub fn wants<'a>(&self, mut topics: impl Iterator<Item = &'a str>) -> bool {
        let mut any = false;
        let hit = topics.any(|t| {
            any = true;
            self.topics().any(|s| s == t)
        });
        hit || !any
    }
}

/// Subscribers by topic, for one loop.
#[derive(Debug, Default)]
pub struct Topics {
    /// Every subscriber, for broadcasts.
    all: Slab<usize>,
    by_topic: HashMap<Box<str>, Slab<usize>>,
}

impl Topics {
    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.all.len()
    }

    /// Adds connection `key` as a subscriber of `topics` (none: broadcasts
    /// only).
    pub fn subscribe(&mut self, key: usize, topics: &[String]) -> Subscription {
        let all_key = self.all.insert(key);
        let topics = topics
            .iter()
            .map(|t| {
                let slot = self.by_topic.entry(t.as_str().into()).or_default();
                (t.as_str().into(), slot.insert(key))
            })
            .collect();
        Subscription { all_key, topics }
    }

    /// Removes a subscriber; topics nobody subscribes to any more are dropped
    /// so that churned topic names cannot pile up.
    pub fn unsubscribe(&mut self, sub: Subscription) {
        self.all.remove(sub.all_key);
        for (topic, slot_key) in sub.topics {
            if let Some(slot) = self.by_topic.get_mut(&topic) {
                slot.remove(slot_key);
                if slot.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }

    /// The connections an event for `topics` goes to (every subscriber when
    /// empty). A subscriber of several of the topics is named once per
    /// topic: the caller makes each delivery once.
    pub fn recipients<'a>(&'a self, topics: &'a [Box<str>]) -> impl Iterator<Item = usize> + 'a {
        let broadcast = topics.is_empty().then(|| self.all.iter().map(|(_, &k)| k));
        let topical = topics
            .iter()
            .filter_map(|t| self.by_topic.get(&**t))
            .flat_map(|slot| slot.iter().map(|(_, &k)| k));
        broadcast.into_iter().flatten().chain(topical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn recipients(index: &Topics, t: &[&str]) -> Vec<usize> {
        let t: Vec<Box<str>> = t.iter().map(|&s| s.into()).collect();
        let mut r: Vec<usize> = index.recipients(&t).collect();
        r.sort();
        r
    }

    #[test]
    fn broadcast_and_topics() {
        let mut index = Topics::default();
        let a = index.subscribe(1, &topics(&["a"]));
        let _ab = index.subscribe(2, &topics(&["a", "b"]));
        let _none = index.subscribe(3, &[]);
        assert_eq!(recipients(&index, &[]), [1, 2, 3]);
        assert_eq!(recipients(&index, &["a"]), [1, 2]);
        assert_eq!(recipients(&index, &["b"]), [2]);
        assert_eq!(recipients(&index, &["a", "b"]), [1, 2, 2]);
        assert_eq!(recipients(&index, &["c"]), Vec::<usize>::new());
        index.unsubscribe(a);
        assert_eq!(recipients(&index, &["a"]), [2]);
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
        assert!(sub.wants(["b"].into_iter()));
        assert!(sub.wants(std::iter::empty()));
        assert!(!sub.wants(["c", "d"].into_iter()));
        let none = index.subscribe(2, &[]);
        assert!(none.wants(std::iter::empty()));
        assert!(!none.wants(["a"].into_iter()));
    }
}
