//! When the next event may go: the rate's schedule, the closed loop's
//! window, `--pipeline` on its connection; composing the publishes that
//! may go now, and the marks of how far the events have got (the window's
//! base, the oldest event not yet everywhere).

use super::publisher::{FAILED, MAX_TX_BACKLOG};
use super::tally::{Schedule, topic_of};
use super::{Bench, Phase};
use crate::clock::{now_ns, ns};

impl Bench {
    /// The topic and the publishing connection of event `seq`: a topic's
    /// events all go over one connection, so that their order is kept by
    /// the server alone.
    pub(super) fn route(&self, seq: u64) -> (usize, usize) {
        let topic = topic_of(seq, self.opts.topics as u64).0 as usize;
        (topic, topic % self.publishers.len())
    }

    /// Whether event `seq`'s publish failed.
    pub(crate) fn publish_failed(&self, seq: u64) -> bool {
        self.sent_ns[seq as usize] == FAILED
    }

    /// Moves the window and completion marks past finished events.
    pub(super) fn advance(&mut self, now: u64) {
        let timeout = ns(self.opts.timeout);
        let topics = self.opts.topics as u64;
        let done = |e: u64, timed: bool| {
            let sent = self.sent_ns[e as usize];
            let streams = self.live_by_topic[topic_of(e, topics).0 as usize];
            sent == FAILED
                || self.tally.delivered[e as usize] >= streams
                || (timed && now >= sent + timeout)
        };
        let (mut window, mut complete) = (self.window_base, self.complete_base);
        while window < self.published && done(window, true) {
            window += 1;
        }
        while complete < self.published && done(complete, false) {
            complete += 1;
        }
        (self.window_base, self.complete_base) = (window, complete);
    }

    /// Whether the next event may be written now, by every rule but the
    /// rate. Events go in order: one whose connection may not take it yet
    /// holds back the rest.
    fn may_publish(&self) -> bool {
        if self.published >= self.opts.events {
            return false;
        }
        let p = &self.publishers[self.route(self.published).1];
        let (closed_loop, window) = (self.opts.rate == 0.0, self.opts.window);
        let outstanding = self.published - self.window_base;
        p.connected
            && p.tx_backlog() < MAX_TX_BACKLOG
            && p.in_flight.len() < self.opts.pipeline
            // Closed loop, a publish answered late still counts against the
            // window, so the requests queued in the server stay bounded too.
            && !(closed_loop && (outstanding >= window || self.in_flight >= window as usize))
    }

    /// A connection has had publishes unanswered for `--timeout`.
    pub(super) fn stalled(&self, now: u64) -> bool {
        let timeout = ns(self.opts.timeout);
        let waiting = self.publishers.iter().filter(|p| !p.in_flight.is_empty());
        waiting
            .map(|p| p.progress_ns)
            .min()
            .is_some_and(|t| now >= t + timeout)
    }

    /// When the publish loop must look again if no socket wakes it first.
    pub(super) fn next_wake(&self, start: u64, limit: u64) -> u64 {
        let timeout = ns(self.opts.timeout);
        let mut wake = limit;
        let waiting = self.publishers.iter().filter(|p| !p.in_flight.is_empty());
        if let Some(progress) = waiting.map(|p| p.progress_ns).min() {
            wake = wake.min(progress + timeout);
        }
        if self.opts.rate > 0.0 && self.may_publish() {
            wake = wake.min(self.due(start, self.published));
        } else if self.opts.rate == 0.0 && self.window_base < self.published {
            wake = wake.min(self.sent_ns[self.window_base as usize].saturating_add(timeout));
        }
        wake
    }

    pub(super) fn due(&self, start: u64, seq: u64) -> u64 {
        let rate = self.opts.rate;
        Schedule { start, rate }.due(seq)
    }

    /// At a rate, while publishing: sends what is due (`turn` calls it
    /// between subscribers).
    pub(super) fn publish_if_due(&mut self) {
        if let (Phase::Publish, Some(schedule)) = (&self.phase, self.tally.schedule) {
            self.try_publish(schedule.start);
        }
    }

    /// Writes every publish that is due and allowed now: composed in
    /// order, then each connection that got some written once.
    pub(super) fn try_publish(&mut self, start: u64) {
        let mut touched = std::mem::take(&mut self.touched);
        while self.may_publish()
            && (self.opts.rate == 0.0 || now_ns() >= self.due(start, self.published))
        {
            let seq = self.published;
            let due = if self.opts.rate > 0.0 {
                self.due(start, seq)
            } else {
                u64::MAX
            };
            let (topic, conn) = self.route(seq);
            let t = now_ns();
            let prefix = &self.publish_prefixes[topic];
            let fresh = self.publishers[conn].compose(seq, t, self.opts.size, prefix);
            if fresh {
                touched.push(conn);
            }
            self.in_flight += 1;
            self.sent_ns[seq as usize] = t;
            if seq == 0 {
                self.first_sent_ns = t;
            }
            self.max_lag_ns = self.max_lag_ns.max(t.saturating_sub(due));
            self.published += 1;
            // One connection: written at once, as a lone publisher does.
            if self.publishers.len() == 1 {
                self.publisher_flush(conn);
            }
        }
        for &conn in &touched {
            self.publisher_flush(conn);
        }
        touched.clear();
        self.touched = touched;
    }
}
