//! A loop's copy of the hub's history: the last events of the order, kept
//! as the very frames that went out live (shared, not copied), the epoch
//! whose ids name them, and an index of the ids their publishers gave
//! them. Placing a `Last-Event-ID` and finding what a resuming subscriber
//! missed happen here, with a budget, so that one resume cannot hold the
//! loop.
//!
//! A publisher's id names the earliest kept event that bears it (as
//! Mercure asks, should a publisher reuse an id for another update); a
//! retry of the same update within the history is the same event
//! (exactly-once publishing), so only a reused id names several.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::bus::Delivery;
use crate::bus::id::{Epoch, EventId, ResetReason, Run};
use crate::sse::Frame;

/// The next retained event a resuming subscriber should get.
#[derive(Debug)]
pub enum Retained<'a> {
    /// This event (its sequence number and frame).
    Event(u64, &'a Arc<Frame>),
    /// Nothing more: the subscriber has caught up and goes live.
    CaughtUp,
    /// Events it would need have left the history.
    Lost,
    /// The budget ran out before a match; no event up to this sequence
    /// number is for it, so the next look starts after it.
    Scanned(u64),
}

/// Ended epochs a history still places ids of.
const ENDED_KEPT: usize = 8;

/// The last `cap` events of the order, and the epoch that names them
/// (see [`Epoch`]; it changes only for a cluster whose epoch changed
/// while this process ran, [`History::rebase`]), with the epochs before
/// it whose ids still name their events.
#[derive(Debug)]
pub struct History {
    epoch: Epoch,
    /// Ended epochs, newest first, each with the last number of its ids
    /// that still names its event (`None`: none does).
    ended: VecDeque<(Epoch, Option<u64>)>,
    kept: VecDeque<Delivery>,
    cap: usize,
    /// The newest sequence number delivered (kept or not).
    newest: u64,
    /// Each publisher's id among the kept events, and which bear it.
    names: HashMap<Arc<str>, Uses>,
}

/// The kept events that bear one publisher's id, oldest first: nearly
/// always one (ids are meant to be unique), so a list only once an id is
/// reused. Events leave the history oldest first, so the one that leaves
/// is always the first here: forgetting it needs no search.
#[derive(Debug)]
enum Uses {
    One(u64),
    Several(VecDeque<u64>),
}

impl Uses {
    /// The sequence number of the earliest.
    fn earliest(&self) -> u64 {
        match self {
            Uses::One(seq) => *seq,
            Uses::Several(seqs) => seqs.front().copied().unwrap_or(u64::MAX),
        }
    }

    /// One more, newer than every other.
    fn push(&mut self, seq: u64) {
        match self {
            Uses::One(first) => *self = Uses::Several(VecDeque::from([*first, seq])),
            Uses::Several(seqs) => seqs.push_back(seq),
        }
    }

    /// The earliest, `seq`, has left the history: whether any is left.
    fn forget_earliest(&mut self, seq: u64) -> bool {
        debug_assert_eq!(self.earliest(), seq, "events leave the history in order");
        match self {
            Uses::One(_) => false,
            Uses::Several(seqs) => {
                seqs.pop_front();
                !seqs.is_empty()
            }
        }
    }
}

impl History {
    /// An empty history of `epoch` keeping at most `cap` events.
    pub fn new(epoch: Epoch, cap: usize) -> History {
        History {
            epoch,
            ended: VecDeque::new(),
            kept: VecDeque::with_capacity(cap.min(4096)),
            cap,
            newest: 0,
            names: HashMap::new(),
        }
    }

    /// The newest sequence number delivered; 0 before the first.
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// The id of sequence number `seq`.
    pub fn id(&self, seq: u64) -> EventId {
        self.epoch.id(seq)
    }

    /// The epoch whose ids name the events.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// From now on ids are of `epoch`, whose deliveries come after every
    /// one so far; ids of the epoch it ends still resume up to number
    /// `old_valid` (`None`: none does), from the events kept.
    pub fn rebase(&mut self, epoch: Epoch, old_valid: Option<u64>) {
        if self.epoch.run() != Run::NONE {
            self.ended.push_front((self.epoch, old_valid));
            self.ended.truncate(ENDED_KEPT);
        }
        self.epoch = epoch;
    }

    /// The `reset` event for `reason`. It carries the newest id delivered,
    /// so the client's next reconnect resumes from there instead of asking
    /// about the old id again.
    pub fn reset_frame(&self, reason: ResetReason) -> Arc<Frame> {
        Arc::new(self.id(self.newest.max(self.epoch.base())).reset(reason))
    }

    /// Notes the next delivery of the order, keeping it for replay.
    pub fn record(&mut self, delivery: &Delivery) {
        debug_assert!(
            delivery.seq > self.newest || self.newest == 0,
            "event {} delivered after {}",
            delivery.seq,
            self.newest
        );
        self.newest = delivery.seq;
        if self.cap == 0 {
            return;
        }
        if self.kept.len() == self.cap
            && let Some(old) = self.kept.pop_front()
            && let Some(name) = &old.name
        {
            self.forget_name(name, old.seq);
        }
        if let Some(name) = &delivery.name {
            match self.names.get_mut(name) {
                Some(uses) => uses.push(delivery.seq),
                None => {
                    self.names.insert(Arc::clone(name), Uses::One(delivery.seq));
                }
            }
        }
        self.kept.push_back(delivery.clone());
    }

    /// The kept event `seq`, named `name`, has left the history: the name
    /// now names the next kept event bearing it, if any.
    fn forget_name(&mut self, name: &Arc<str>, seq: u64) {
        if let Some(uses) = self.names.get_mut(name)
            && !uses.forget_earliest(seq)
        {
            self.names.remove(name);
        }
    }

    /// The sequence number to resume after to replay every kept event.
    pub fn earliest(&self) -> u64 {
        self.oldest_kept() - 1
    }

    /// Sequence number of the oldest event still kept (one past the newest
    /// when none is).
    fn oldest_kept(&self) -> u64 {
        self.kept.front().map_or(self.newest + 1, |d| d.seq)
    }

    /// Places a `Last-Event-ID`: the sequence number to resume after, or
    /// why it cannot be resumed from. `issued` is the newest sequence
    /// number assigned anywhere: an id past what this loop has delivered
    /// but not past that is on its way here, and resumes after it.
    ///
    /// An id its publisher gave names the earliest kept event that bears
    /// it; one that names no kept event is `Invalid`.
    pub fn resume_point(&self, id: &str, issued: u64) -> Result<u64, ResetReason> {
        if let Some(uses) = self.names.get(id) {
            return Ok(uses.earliest());
        }
        let oldest_kept = self.oldest_kept();
        match self.epoch.place(id, issued.max(self.newest), oldest_kept) {
            Err(ResetReason::OtherRun) => {
                // Newest first; an epoch that began on a lost stream ends
                // the search: no id before it names an event any more.
                for (epoch, last_valid) in &self.ended {
                    let Some(last_valid) = last_valid else {
                        break;
                    };
                    match epoch.place_ended(id, *last_valid, oldest_kept) {
                        Err(ResetReason::OtherRun) => {}
                        placed => return placed,
                    }
                }
                Err(ResetReason::OtherRun)
            }
            placed => placed,
        }
    }

    /// The first kept event after `after` that `wanted` says a subscriber
    /// should get (its selectors, and the private-topic and private-update
    /// rules). Each event looked at costs `budget` one unit plus
    /// `per_topic` per topic it has (what matching it costs: the
    /// subscriber's matchers against each of its topics). When the budget
    /// runs out first, says how far the look got; the first event of a
    /// look is always looked at, so every look moves on.
    pub fn next_retained(
        &self,
        after: u64,
        per_topic: usize,
        mut wanted: impl FnMut(&Delivery) -> bool,
        budget: &mut usize,
    ) -> Retained<'_> {
        if after >= self.newest {
            return Retained::CaughtUp;
        }
        if after + 1 < self.oldest_kept() {
            return Retained::Lost;
        }
        let start = self.kept.partition_point(|d| d.seq <= after);
        let per_topic = per_topic.max(1);
        for (looked, d) in self.kept.range(start..).enumerate() {
            let cost = 1 + d.topics.len() * per_topic;
            if *budget < cost && looked > 0 {
                return Retained::Scanned(d.seq - 1);
            }
            *budget = budget.saturating_sub(cost);
            if wanted(d) {
                return Retained::Event(d.seq, &d.frame);
            }
        }
        Retained::CaughtUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::id::Run;
    use crate::mercure::matcher::EventTopics;
    use crate::mercure::url::Url;
    use crate::topics::{Subscription, Topics};

    /// What a subscriber of `sub` wants, as the stream asks it.
    fn wants(sub: &Subscription) -> impl FnMut(&Delivery) -> bool + '_ {
        let hub = Url::parse("http://localhost/.well-known/mercure", None).unwrap();
        move |d: &Delivery| sub.wants(&mut EventTopics::new(&d.topics, &hub))
    }

    fn run(text: &str) -> Run {
        Run::parse(text.as_bytes()).unwrap()
    }

    fn history(cap: usize) -> History {
        History::new(Epoch::new(run("0123456789ab"), 0), cap)
    }

    fn deliver(h: &mut History, data: &str, topics: &[&str]) {
        deliver_named(h, None, data, topics);
    }

    fn deliver_named(h: &mut History, name: Option<&str>, data: &str, topics: &[&str]) {
        let seq = h.newest() + 1;
        let frame = Arc::new(Frame::event(&h.id(seq).text(), None, data));
        let topics: Arc<[Box<str>]> = topics.iter().map(|&t| t.into()).collect();
        let mut delivery = Delivery::plain(seq, frame, topics);
        delivery.name = name.map(Arc::from);
        h.record(&delivery);
    }

    /// Everything a subscriber of `t` resuming after `id` would be replayed.
    fn replayed(h: &History, id: &str, t: &[&str]) -> Vec<String> {
        replayed_after(h, h.resume_point(id, h.newest()).expect("resumable"), t)
    }

    fn replayed_after(h: &History, mut after: u64, t: &[&str]) -> Vec<String> {
        let mut index = Topics::default();
        let topics: Vec<String> = t.iter().map(|s| s.to_string()).collect();
        let sub = index.subscribe(99, &topics);
        let mut out = Vec::new();
        loop {
            match h.next_retained(
                after,
                sub.matcher_count(),
                wants(&sub),
                &mut usize::MAX.clone(),
            ) {
                Retained::Event(seq, frame) => {
                    out.push(String::from_utf8(frame.payload().to_vec()).unwrap());
                    after = seq;
                }
                Retained::CaughtUp => break,
                other => panic!("{other:?}"),
            }
        }
        out
    }

    fn reset_reason(h: &History, id: &str) -> ResetReason {
        h.resume_point(id, h.newest()).expect_err("not resumable")
    }

    #[test]
    fn replay_filters_by_topic_and_keeps_order() {
        let mut h = history(10);
        deliver(&mut h, "a1", &["a"]);
        deliver(&mut h, "b1", &["b"]);
        deliver(&mut h, "all", &[]);
        deliver(&mut h, "a2", &["a"]);
        let run = h.epoch().run();
        let got = replayed(&h, &format!("{run}-1"), &["a"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("data: all") && got[1].contains("data: a2"));
        assert!(replayed(&h, &format!("{run}-4"), &["a"]).is_empty());
        assert_eq!(replayed(&h, &format!("{run}-0"), &["b"]).len(), 2);
    }

    #[test]
    fn reset_cases() {
        let mut h = history(2);
        for i in 0..5 {
            deliver(&mut h, &i.to_string(), &[]);
        }
        let run = h.epoch().run();
        // Events 4 and 5 are kept: resuming after 3 loses nothing, after 2 does.
        assert_eq!(replayed(&h, &format!("{run}-3"), &[]).len(), 2);
        assert_eq!(reset_reason(&h, &format!("{run}-2")), ResetReason::Stale);
        assert_eq!(reset_reason(&h, "000000000000-3"), ResetReason::OtherRun);
        assert_eq!(reset_reason(&h, &format!("{run}-6")), ResetReason::Invalid);
        assert_eq!(reset_reason(&h, "garbage"), ResetReason::Invalid);
        assert_eq!(reset_reason(&h, ""), ResetReason::Invalid);
        assert_eq!(reset_reason(&h, &format!("{run}-")), ResetReason::Invalid);
        assert_eq!(
            reset_reason(&h, &format!("{run}-99999999999999999999999")),
            ResetReason::Invalid
        );
    }

    #[test]
    fn an_id_on_its_way_resumes_after_it() {
        let mut h = history(4);
        deliver(&mut h, "1", &[]);
        let run = h.epoch().run();
        // Event 3 was assigned elsewhere and has not reached this loop yet.
        assert_eq!(h.resume_point(&format!("{run}-3"), 3), Ok(3));
        assert_eq!(
            h.resume_point(&format!("{run}-4"), 3),
            Err(ResetReason::Invalid)
        );
    }

    #[test]
    fn a_lagging_cursor_learns_it_lost_events() {
        let mut h = history(2);
        deliver(&mut h, "1", &[]);
        let mut index = Topics::default();
        let sub = index.subscribe(1, &[]);
        let mut budget = usize::MAX;
        assert!(matches!(
            h.next_retained(0, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Event(1, _)
        ));
        deliver(&mut h, "2", &[]);
        deliver(&mut h, "3", &[]);
        assert!(matches!(
            h.next_retained(0, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Lost
        ));
        assert!(matches!(
            h.next_retained(1, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Event(2, _)
        ));
        assert!(matches!(
            h.next_retained(3, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::CaughtUp
        ));
    }

    #[test]
    fn the_budget_bounds_one_look() {
        let mut h = history(100);
        for i in 0..50 {
            deliver(&mut h, &i.to_string(), &["x", "y"]);
        }
        deliver(&mut h, "mine", &["a"]);
        let mut index = Topics::default();
        let sub = index.subscribe(1, &["a".to_string()]);
        // Each event costs 3 (itself and two topics): 30 units look at 10.
        let mut budget = 30;
        assert!(matches!(
            h.next_retained(0, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Scanned(10)
        ));
        assert_eq!(budget, 0);
        let mut budget = usize::MAX;
        assert!(matches!(
            h.next_retained(10, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Event(51, _)
        ));
    }

    /// A cluster's new epoch: its ids count from 1 again, its events
    /// follow the old ones in the order, and old ids are another run's.
    #[test]
    fn a_new_epoch_counts_its_ids_from_its_base() {
        let mut h = history(8);
        deliver(&mut h, "old", &[]);
        deliver(&mut h, "old", &[]);
        let old = h.epoch().run();
        h.rebase(Epoch::new(run("ba5eba5eba5e"), 10), None);
        let frame = Arc::new(Frame::event(&h.id(11).text(), None, "new"));
        h.record(&Delivery::plain(11, frame, Arc::from([])));
        assert_eq!(h.id(11).to_string(), "urn:sseloop:ba5eba5eba5e-1");
        let reset = h.reset_frame(ResetReason::Stale);
        assert!(
            reset
                .payload()
                .starts_with(b"id: urn:sseloop:ba5eba5eba5e-1\nevent: reset\n")
        );
        assert_eq!(h.resume_point("ba5eba5eba5e-0", 11), Ok(10));
        assert_eq!(h.resume_point("ba5eba5eba5e-1", 11), Ok(11));
        assert_eq!(
            h.resume_point("ba5eba5eba5e-2", 11),
            Err(ResetReason::Invalid)
        );
        assert_eq!(
            h.resume_point(&format!("{old}-2"), 11),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(replayed(&h, "ba5eba5eba5e-0", &[]).len(), 1);
        assert_eq!(
            h.resume_point(&format!("ba5eba5eba5e-{}", u64::MAX), u64::MAX),
            Err(ResetReason::Invalid)
        );
    }

    /// A cluster's epoch that continues the stream of the one before (a
    /// failover): the old ids up to where it continued still resume, from
    /// the events kept, across the `reset` into the new epoch; an old id
    /// past it (an event the new primary lacks) is another run's.
    #[test]
    fn an_epoch_that_continues_keeps_the_old_ids_up_to_where_it_began() {
        let mut h = history(16);
        for _ in 0..5 {
            deliver(&mut h, "old", &[]);
        }
        let old = h.epoch().run();
        // Events 1..=5 were read; the new epoch continues after 3: 4 and 5
        // are not in the new primary's stream. Its reset is order 6, its
        // number 3 (base 3).
        let new = Epoch::new(run("ba5eba5eba5e"), 3);
        h.rebase(new, Some(3));
        h.record(&Delivery::plain(
            6,
            Arc::new(new.id(6).reset(ResetReason::OtherRun)),
            Arc::from([]),
        ));
        deliver(&mut h, "new", &[]);
        assert_eq!(h.id(7).to_string(), "urn:sseloop:ba5eba5eba5e-4");
        assert_eq!(h.resume_point(&format!("{old}-2"), 7), Ok(2));
        assert_eq!(h.resume_point(&format!("{old}-3"), 7), Ok(3));
        assert_eq!(
            h.resume_point(&format!("{old}-4"), 7),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(h.resume_point("ba5eba5eba5e-3", 7), Ok(6));
        let replay = replayed(&h, &format!("{old}-3"), &[]);
        assert_eq!(replay.len(), 4, "old 4 and 5, the reset, new 4: {replay:?}");
        assert!(
            replay[2].contains("event: reset")
                && replay[3].contains("id: urn:sseloop:ba5eba5eba5e-4")
        );
        // An epoch that began on a stream lost (none valid): another run's.
        h.rebase(Epoch::new(run("0000000000ff"), 8), None);
        assert_eq!(
            h.resume_point("ba5eba5eba5e-4", 7),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(
            h.resume_point(&format!("{old}-2"), 7),
            Err(ResetReason::OtherRun),
            "nor any before it"
        );
    }

    #[test]
    fn a_look_moves_on_even_when_one_event_costs_more_than_the_budget() {
        let mut h = history(4);
        let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        deliver(&mut h, "wide", &many);
        deliver(&mut h, "next", &["a"]);
        let mut index = Topics::default();
        let sub = index.subscribe(1, &["a".to_string(), "b".to_string()]);
        // 1 + 100 topics x 2 = 201 units for the first, with 10 to spend.
        let mut budget = 10;
        assert!(matches!(
            h.next_retained(0, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Scanned(1)
        ));
        assert_eq!(budget, 0);
        let mut budget = 10;
        assert!(matches!(
            h.next_retained(1, sub.matcher_count(), wants(&sub), &mut budget),
            Retained::Event(2, _)
        ));
    }

    /// A publisher's id resumes after the earliest kept event that bears
    /// it, and after the next one once that has left the history.
    #[test]
    fn a_publishers_id_names_its_earliest_kept_use() {
        let mut h = history(3);
        deliver_named(&mut h, Some("book-1"), "first", &["a"]);
        deliver_named(&mut h, Some("other"), "x", &["a"]);
        deliver_named(&mut h, Some("book-1"), "again", &["a"]);
        assert_eq!(h.resume_point("book-1", 3), Ok(1));
        assert_eq!(replayed(&h, "book-1", &["a"]).len(), 2);
        assert_eq!(h.resume_point("unknown", 3), Err(ResetReason::Invalid));
        // The first use leaves: the id names its second use.
        deliver(&mut h, "4", &["a"]);
        assert_eq!(h.resume_point("book-1", 4), Ok(3));
        assert_eq!(h.resume_point("other", 4), Ok(2));
        deliver(&mut h, "5", &["a"]);
        assert_eq!(h.resume_point("other", 5), Err(ResetReason::Invalid));
        deliver(&mut h, "6", &["a"]);
        assert_eq!(h.resume_point("book-1", 6), Err(ResetReason::Invalid));
        assert!(h.names.is_empty());
        // Every kept event can be replayed from `earliest`.
        assert_eq!(h.earliest(), 3);
        assert_eq!(replayed_after(&h, h.earliest(), &["a"]).len(), 3);
    }

    /// Regression: an event leaving the history used to look through the
    /// whole history for the next use of its reused id, so a publisher
    /// cycling through `cap - 1` ids made every publish cost `cap` steps
    /// on every loop (here, 20 s for the first 62 000 of these events;
    /// now all of them take under a second).
    #[test]
    fn an_event_leaving_costs_the_same_however_its_id_was_reused() {
        let cap = 50_000;
        let mut h = history(cap);
        let names: Vec<String> = (0..cap - 1).map(|i| format!("n{i}")).collect();
        let started = std::time::Instant::now();
        for i in 0..2 * cap {
            deliver_named(&mut h, Some(&names[i % names.len()]), "x", &["a"]);
            let spent = started.elapsed();
            assert!(spent.as_secs() < 20, "{i} events took {spent:?}");
        }
        // Each id names its earliest kept use: events 50 001 to 100 000
        // are kept, and n0 named events 1, 50 000 and 99 999.
        let newest = h.newest();
        assert_eq!(h.resume_point("n0", newest), Ok(99_999));
        assert_eq!(h.resume_point("n3", newest), Ok(50_003));
        assert_eq!(h.names.len(), cap - 1);
    }

    #[test]
    fn no_history_means_any_gap_resets() {
        let mut h = history(0);
        deliver(&mut h, "x", &[]);
        let run = h.epoch().run();
        assert!(replayed(&h, &format!("{run}-1"), &[]).is_empty());
        assert_eq!(reset_reason(&h, &format!("{run}-0")), ResetReason::Stale);
    }
}
