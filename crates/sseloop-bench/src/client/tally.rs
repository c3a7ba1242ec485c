//! Delivery accounting: per subscriber, which of its topic's events arrived
//! (missing, duplicate, out of order, without memory per event) and which
//! were not for its topic at all; over all of them, the counts and the
//! latency histograms, from the send and from the schedule.
//!
//! Events are numbered in one sequence over every topic: event `s` goes to
//! topic `s mod K` (K topics) as that topic's event number `s / K`, so a
//! stream of topic `t` must see exactly `t, t + K, t + 2K, …`, in order.

use crate::histogram::Histogram;
use crate::wire::sse::SseItem;

/// Which sequence numbers one subscriber has seen: the highest, and a bitmap
/// of the 128 below it, enough to tell a duplicate from a late arrival
/// without memory per event (anything older counts as out of order).
#[derive(Debug, Default)]
pub(super) struct SeqTracker {
    next: u64,
    recent: u128,
    pub(super) unique: u64,
}

#[derive(Debug, PartialEq)]
pub(super) enum Arrival {
    InOrder,
    Late,
    Duplicate,
}

impl SeqTracker {
    pub(super) fn arrive(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let shift = seq + 1 - self.next;
            self.recent = if shift >= 128 {
                0
            } else {
                self.recent << shift
            } | 1;
            self.next = seq + 1;
            self.unique += 1;
            return Arrival::InOrder;
        }
        let back = self.next - 1 - seq;
        if back < 128 {
            if self.recent >> back & 1 == 1 {
                return Arrival::Duplicate;
            }
            self.recent |= 1 << back;
        }
        self.unique += 1;
        Arrival::Late
    }
}

/// A publishing rate's timetable: event `seq` is due `seq / rate` seconds
/// after `start`.
#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    pub(super) start: u64,
    pub(super) rate: f64,
}

impl Schedule {
    pub(super) fn due(&self, seq: u64) -> u64 {
        self.start + (seq as f64 * 1e9 / self.rate) as u64
    }
}

/// Which topic an event goes to, and its number within that topic.
pub(crate) fn topic_of(seq: u64, topics: u64) -> (u64, u64) {
    (seq % topics, seq / topics)
}

/// Delivery counters over all subscribers, updated by the parser callbacks.
#[derive(Default)]
pub(crate) struct Tally {
    /// Topics the events are spread over (at least 1).
    pub(crate) topics: u64,
    /// Stamped events count only while publishing; before and after they
    /// cannot be this run's, so they count as `other`.
    pub(crate) accept: bool,
    /// Unique deliveries per event, to know when every stream has it.
    pub(crate) delivered: Vec<u32>,
    pub(crate) latency: Histogram,
    /// At a rate: when each event was due, and latency counted from then.
    pub(crate) schedule: Option<Schedule>,
    pub(crate) from_schedule: Histogram,
    pub(crate) received: u64,
    pub(crate) duplicate: u64,
    pub(crate) out_of_order: u64,
    /// Stamped events that reached a stream of another topic.
    pub(crate) misrouted: u64,
    pub(crate) other: u64,
    pub(crate) comments: u64,
    pub(crate) last_delivery_ns: u64,
}

impl Tally {
    /// Counts what a stream of topic `topic` parsed.
    pub(super) fn item(
        &mut self,
        item: SseItem,
        topic: u64,
        seqs: &mut SeqTracker,
        comments: &mut u32,
        now: u64,
    ) {
        match item {
            SseItem::Comment => {
                self.comments += 1;
                *comments += 1;
            }
            SseItem::Stamped { seq, sent_ns }
                if self.accept && seq < self.delivered.len() as u64 =>
            {
                self.received += 1;
                let (its_topic, number) = topic_of(seq, self.topics.max(1));
                if its_topic != topic {
                    return self.misrouted += 1;
                }
                match seqs.arrive(number) {
                    Arrival::Duplicate => return self.duplicate += 1,
                    Arrival::Late => self.out_of_order += 1,
                    Arrival::InOrder => {}
                }
                self.delivered[seq as usize] += 1;
                self.latency.record(now.saturating_sub(sent_ns));
                if let Some(schedule) = &self.schedule {
                    self.from_schedule
                        .record(now.saturating_sub(schedule.due(seq)));
                }
                self.last_delivery_ns = now;
            }
            SseItem::Stamped { .. } | SseItem::Other => self.other += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_tells_duplicates_from_late_arrivals() {
        let mut t = SeqTracker::default();
        let arrivals = [0, 2, 1, 1, 2, 500].map(|s| t.arrive(s));
        use Arrival::*;
        assert_eq!(
            arrivals,
            [InOrder, InOrder, Late, Duplicate, Duplicate, InOrder]
        );
        assert_eq!(t.unique, 4);
    }

    /// A stream of topic 1 of 1 000 gets events 1, 1001, 2001, …: numbers
    /// 0, 1, 2 of its topic. Event 3 (topic 3) is misrouted; 1001 again
    /// after 2001 is a duplicate and 4001 after 5001 late, though a
    /// thousand events of other topics lie between them (more than the
    /// tracker's 128 bits would cover of the sequence over all topics).
    #[test]
    fn a_topic_stream_counts_its_own_events_and_misrouted_ones() {
        let mut tally = Tally {
            topics: 1000,
            accept: true,
            delivered: vec![0; 6000],
            ..Tally::default()
        };
        let (mut seqs, mut comments) = (SeqTracker::default(), 0);
        for seq in [1, 3, 1001, 2001, 1001, 3001, 5001, 4001] {
            let item = SseItem::Stamped { seq, sent_ns: 1 };
            tally.item(item, 1, &mut seqs, &mut comments, 2);
        }
        assert_eq!(tally.received, 8);
        assert_eq!(tally.misrouted, 1);
        assert_eq!(tally.duplicate, 1);
        assert_eq!(tally.out_of_order, 1);
        assert_eq!(seqs.unique, 6);
        assert_eq!(tally.delivered[1] + tally.delivered[1001], 2);
        assert_eq!(tally.delivered[3], 0);
    }
}
