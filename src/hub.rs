//! The hub: which connection subscribes to what, the ids of this run, and the
//! bounded history kept for `Last-Event-ID` replay. It knows connections only
//! by token and never touches a socket or a queue; the server walks the
//! recipients it names.
//!
//! Ids are `<run>-<seq>`: `run` is 12 hex digits drawn at start-up, `seq`
//! counts from 1 and only grows, so an id from another run (or not ours at
//! all) is told apart from one this run can place.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use slab::Slab;

use crate::sse::{Event, Frame};

/// Where one subscriber sits in the hub, kept by its connection so that
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
}

/// A published event kept for replay: the frame that live subscribers were
/// sent (shared, not copied) and the topics it went to.
#[derive(Debug)]
struct Kept {
    seq: u64,
    frame: Arc<Frame>,
    topics: Box<[Box<str>]>,
}

/// Why a `Last-Event-ID` cannot be resumed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// Events after it have left the history.
    Stale,
    /// It was issued by an earlier run of the server.
    OtherRun,
    /// It is not an id this server issues.
    Invalid,
}

impl ResetReason {
    /// The `reset` event's data: a JSON object naming the case.
    pub fn data(self) -> &'static str {
        match self {
            ResetReason::Stale => {
                r#"{"reason":"stale","message":"events after this id are no longer retained; re-sync"}"#
            }
            ResetReason::OtherRun => {
                r#"{"reason":"other-run","message":"this id is from an earlier run of the server; re-sync"}"#
            }
            ResetReason::Invalid => {
                r#"{"reason":"invalid","message":"this is not an event id of this server; re-sync"}"#
            }
        }
    }
}

/// The next retained event a resuming subscriber should get.
#[derive(Debug)]
pub enum Retained<'a> {
    /// This event (its sequence number and frame).
    Event(u64, &'a Arc<Frame>),
    /// Nothing more: the subscriber has caught up and goes live.
    CaughtUp,
    /// Events it would need have left the history.
    Lost,
}

/// Subscribers by topic, id assignment and the replay history.
#[derive(Debug)]
pub struct Hub {
    /// Every subscriber, for broadcasts.
    all: Slab<usize>,
    topics: HashMap<Box<str>, Slab<usize>>,
    run: String,
    last_seq: u64,
    history: VecDeque<Kept>,
    history_cap: usize,
}

impl Hub {
    /// An empty hub keeping at most `history` events for replay.
    pub fn new(history: usize) -> Hub {
        Hub {
            all: Slab::new(),
            topics: HashMap::new(),
            run: run_tag(),
            last_seq: 0,
            history: VecDeque::with_capacity(history.min(4096)),
            history_cap: history,
        }
    }

    /// The run part of this run's ids.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.all.len()
    }

    /// Adds `token` as a subscriber of `topics` (none: broadcasts only).
    pub fn subscribe(&mut self, token: usize, topics: &[String]) -> Subscription {
        let all_key = self.all.insert(token);
        let topics = topics
            .iter()
            .map(|t| {
                let slot = self.topics.entry(t.as_str().into()).or_default();
                (t.as_str().into(), slot.insert(token))
            })
            .collect();
        Subscription { all_key, topics }
    }

    /// Removes a subscriber; topics nobody subscribes to any more are dropped
    /// so that churned topic names cannot pile up.
    pub fn unsubscribe(&mut self, sub: Subscription) {
        self.all.remove(sub.all_key);
        for (topic, key) in sub.topics {
            if let Some(slot) = self.topics.get_mut(&topic) {
                slot.remove(key);
                if slot.is_empty() {
                    self.topics.remove(&topic);
                }
            }
        }
    }

    /// Assigns the next id, encodes the event once and retains it. Returns
    /// the id and the frame to hand to the recipients.
    pub fn publish(&mut self, event: &Event) -> (String, Arc<Frame>) {
        self.last_seq += 1;
        let id = self.id(self.last_seq);
        let frame = Arc::new(event.encode(&id));
        if self.history_cap > 0 {
            if self.history.len() == self.history_cap {
                self.history.pop_front();
            }
            self.history.push_back(Kept {
                seq: self.last_seq,
                frame: Arc::clone(&frame),
                topics: event.topics().iter().map(|t| t.as_str().into()).collect(),
            });
        }
        (id, frame)
    }

    /// The tokens an event for `topics` goes to (every subscriber when empty).
    /// A subscriber of several of the topics is named once per topic: the
    /// caller makes each delivery once.
    pub fn recipients<'a>(&'a self, topics: &'a [String]) -> impl Iterator<Item = usize> + 'a {
        let broadcast = topics.is_empty().then(|| self.all.iter().map(|(_, &t)| t));
        let topical = topics
            .iter()
            .filter_map(|t| self.topics.get(t.as_str()))
            .flat_map(|slot| slot.iter().map(|(_, &t)| t));
        broadcast.into_iter().flatten().chain(topical)
    }

    /// Places a `Last-Event-ID`: the sequence number to resume after, or
    /// why it cannot be resumed from.
    pub fn resume_point(&self, last_event_id: &str) -> Result<u64, ResetReason> {
        let seq = self.parse_id(last_event_id)?;
        if seq + 1 < self.oldest_kept() {
            return Err(ResetReason::Stale);
        }
        Ok(seq)
    }

    /// The first retained event after `after` that `sub` should get: one of
    /// its topics, or a broadcast.
    pub fn next_retained(&self, after: u64, sub: &Subscription) -> Retained<'_> {
        let oldest = self.oldest_kept();
        if after + 1 < oldest {
            return Retained::Lost;
        }
        let skip = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        let wanted = |kept: &&Kept| {
            kept.topics.is_empty() || kept.topics.iter().any(|t| sub.topics().any(|s| **t == *s))
        };
        match self.history.iter().skip(skip).find(wanted) {
            Some(kept) => Retained::Event(kept.seq, &kept.frame),
            None => Retained::CaughtUp,
        }
    }

    /// The `reset` event for `reason`. It carries the newest id, so the
    /// client's next reconnect resumes from here instead of asking about the
    /// old id again.
    pub fn reset_frame(&self, reason: ResetReason) -> Arc<Frame> {
        let id = self.id(self.last_seq);
        Arc::new(Frame::event(&id, Some("reset"), reason.data()))
    }

    /// Sequence number of the oldest event still retained (one past the
    /// newest when none is).
    fn oldest_kept(&self) -> u64 {
        self.history.front().map_or(self.last_seq + 1, |k| k.seq)
    }

    fn parse_id(&self, id: &str) -> Result<u64, ResetReason> {
        let (run, seq) = id.split_once('-').ok_or(ResetReason::Invalid)?;
        let well_formed = run.len() == self.run.len()
            && run.bytes().all(|b| b.is_ascii_hexdigit())
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(ResetReason::Invalid);
        }
        if run != self.run {
            return Err(ResetReason::OtherRun);
        }
        match seq.parse::<u64>() {
            Ok(n) if n <= self.last_seq => Ok(n),
            // An id from the future cannot be ours.
            _ => Err(ResetReason::Invalid),
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.run)
    }
}

/// 48 random bits (std's randomly keyed hasher over the clock and pid), as 12
/// hex digits.
fn run_tag() -> String {
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn recipients(hub: &Hub, t: &[&str]) -> Vec<usize> {
        let t = topics(t);
        let mut r: Vec<usize> = hub.recipients(&t).collect();
        r.sort();
        r
    }

    #[test]
    fn broadcast_and_topics() {
        let mut hub = Hub::new(0);
        let a = hub.subscribe(1, &topics(&["a"]));
        let _ab = hub.subscribe(2, &topics(&["a", "b"]));
        let _none = hub.subscribe(3, &[]);
        assert_eq!(recipients(&hub, &[]), [1, 2, 3]);
        assert_eq!(recipients(&hub, &["a"]), [1, 2]);
        assert_eq!(recipients(&hub, &["b"]), [2]);
        assert_eq!(recipients(&hub, &["a", "b"]), [1, 2, 2]);
        assert_eq!(recipients(&hub, &["c"]), Vec::<usize>::new());
        hub.unsubscribe(a);
        assert_eq!(recipients(&hub, &["a"]), [2]);
        assert_eq!(hub.subscribers(), 2);
    }

    #[test]
    fn empty_topics_are_dropped() {
        let mut hub = Hub::new(0);
        let s = hub.subscribe(1, &topics(&["x"]));
        hub.unsubscribe(s);
        assert!(hub.topics.is_empty());
    }

    #[test]
    fn ids_increase_and_carry_the_run() {
        let mut hub = Hub::new(4);
        let (a, _) = hub.publish(&Event::new("1"));
        let (b, _) = hub.publish(&Event::new("2"));
        assert_eq!(a, format!("{}-1", hub.run()));
        assert_eq!(b, format!("{}-2", hub.run()));
        assert_ne!(Hub::new(0).run(), hub.run());
    }

    /// Everything a subscriber of `t` resuming after `id` would be replayed.
    fn replayed(hub: &mut Hub, id: &str, t: &[&str]) -> Vec<String> {
        let mut after = hub.resume_point(id).expect("resumable");
        let sub = hub.subscribe(99, &topics(t));
        let mut out = Vec::new();
        loop {
            match hub.next_retained(after, &sub) {
                Retained::Event(seq, frame) => {
                    out.push(String::from_utf8(frame.payload().to_vec()).unwrap());
                    after = seq;
                }
                Retained::CaughtUp => break,
                Retained::Lost => panic!("lost"),
            }
        }
        hub.unsubscribe(sub);
        out
    }

    fn reset_reason(hub: &Hub, id: &str) -> ResetReason {
        let reason = hub.resume_point(id).expect_err("not resumable");
        let text = String::from_utf8(hub.reset_frame(reason).payload().to_vec()).unwrap();
        let head = format!("id: {}-{}\nevent: reset\n", hub.run(), hub.last_seq);
        assert!(text.starts_with(&head), "{text:?}");
        reason
    }

    #[test]
    fn replay_filters_by_topic_and_keeps_order() {
        let mut hub = Hub::new(10);
        hub.publish(&Event::new("a1").with_topic("a"));
        hub.publish(&Event::new("b1").with_topic("b"));
        hub.publish(&Event::new("all"));
        hub.publish(&Event::new("a2").with_topic("a"));
        let run = hub.run().to_owned();
        let got = replayed(&mut hub, &format!("{run}-1"), &["a"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("data: all") && got[1].contains("data: a2"));
        assert!(replayed(&mut hub, &format!("{run}-4"), &["a"]).is_empty());
        assert_eq!(replayed(&mut hub, &format!("{run}-0"), &["b"]).len(), 2);
    }

    #[test]
    fn reset_cases() {
        let mut hub = Hub::new(2);
        for i in 0..5 {
            hub.publish(&Event::new(i.to_string()));
        }
        let run = hub.run().to_owned();
        // Events 4 and 5 are kept: resuming after 3 loses nothing, after 2 does.
        assert_eq!(replayed(&mut hub, &format!("{run}-3"), &[]).len(), 2);
        assert_eq!(reset_reason(&hub, &format!("{run}-2")), ResetReason::Stale);
        assert_eq!(reset_reason(&hub, "000000000000-3"), ResetReason::OtherRun);
        assert_eq!(
            reset_reason(&hub, &format!("{run}-6")),
            ResetReason::Invalid
        );
        assert_eq!(reset_reason(&hub, "garbage"), ResetReason::Invalid);
        assert_eq!(reset_reason(&hub, ""), ResetReason::Invalid);
        assert_eq!(reset_reason(&hub, &format!("{run}-")), ResetReason::Invalid);
    }

    #[test]
    fn a_lagging_cursor_learns_it_lost_events() {
        let mut hub = Hub::new(2);
        hub.publish(&Event::new("1"));
        let sub = hub.subscribe(1, &[]);
        let after = hub.resume_point(&format!("{}-0", hub.run())).unwrap();
        assert!(matches!(
            hub.next_retained(after, &sub),
            Retained::Event(1, _)
        ));
        hub.publish(&Event::new("2"));
        hub.publish(&Event::new("3"));
        assert!(matches!(hub.next_retained(after, &sub), Retained::Lost));
        assert!(matches!(hub.next_retained(1, &sub), Retained::Event(2, _)));
        assert!(matches!(hub.next_retained(3, &sub), Retained::CaughtUp));
    }

    #[test]
    fn no_history_means_any_gap_resets() {
        let mut hub = Hub::new(0);
        hub.publish(&Event::new("x"));
        let run = hub.run().to_owned();
        assert!(replayed(&mut hub, &format!("{run}-1"), &[]).is_empty());
        assert_eq!(reset_reason(&hub, &format!("{run}-0")), ResetReason::Stale);
    }
}
