//! How the loop carries out what requests and the bus ask for: input to
//! requests, each request through `app::respond` to an action, and the
//! action done (an answer queued, a publish offered to the bus, a stream
//! begun); deliveries fanned out to this loop's subscribers; replays
//! topped up within a budget.

use log::{debug, warn};

use super::Reactor;
use crate::app::{self, Action, Context, StreamStart};
use crate::auth::Audience;
use crate::bus::{Asker, Delivery, EventId, Offer, Publish, PublishError, Ticket};
use crate::conn::{Clearance, Delivered, Next, ReplayThen};
use crate::http::{Head, Reject, Status};
use crate::request::Step;

/// A Mercure subscribe whose URL patterns would take the loop past what
/// one event may cost it to match.
const PATTERNS_FULL: Reject = Reject::new(
    Status::TOO_MANY_REQUESTS,
    "this server holds as many URL patterns as it matches per event: retry later, or subscribe with exact topics or patterns others use",
);

impl Reactor {
    /// What an answer depends on, for connection `key`.
    fn context(&self, key: usize) -> Context<'_> {
        Context {
            shutting_down: self.shutdown.under_way(),
            over_capacity: self.conns.get(key).is_some_and(|c| c.over_capacity()),
            allow_origin: self.config.allow_origin.as_deref(),
            retry: self.config.retry,
            framing: self.config.framing,
            max_topics: self.config.max_topics,
            access: self.policy.access.as_deref(),
            unix_now: self.unix_now(),
            lab: self.shared.lab.is_some(),
            hub: &self.hub,
        }
    }

    /// The Unix time tokens are checked at: read only with `--jwt-key`,
    /// where there are tokens to check.
    fn unix_now(&self) -> i64 {
        self.policy
            .access
            .as_ref()
            .map_or(0, |_| crate::auth::unix_now())
    }

    /// Serves the whole requests in what connection `key` kept and `input`
    /// (bytes just read, or none), keeping the rest for later.
    pub(super) fn serve_input(&mut self, key: usize, input: &[u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(kept) = conn.begin_input(input, self.now) else {
            let next = conn.discard(input.len());
            return self.after(key, next);
        };
        // The usual case: whole requests in one read, parsed in place.
        let bytes = if kept.is_empty() { input } else { &kept[..] };
        let unix_now = self.unix_now();
        let mut used = 0;
        while let Some(conn) = self.conns.get_mut(key) {
            let next = {
                let patterns = &mut self.patterns.borrow_mut();
                conn.next_request(&bytes[used..], &self.policy, unix_now, patterns)
            };
            let Some((n, step)) = next else {
                break;
            };
            used += n;
            match step {
                Step::NeedMore => break,
                Step::Request(head, body) => self.carry_out(key, head, body),
                Step::Continue => {
                    let next = self.conns[key].push_continue();
                    self.after(key, next);
                }
                Step::Reject(reject) => self.reject(key, &reject),
            }
        }
        if let Some(conn) = self.conns.get_mut(key) {
            let next = conn.end_input(&bytes[used..], self.now, &self.config);
            self.after(key, next);
        }
    }

    /// Answers a request the connection cannot be served: the connection
    /// closes after it.
    pub(super) fn reject(&mut self, key: usize, reject: &Reject) {
        debug!("connection {key}: {} {}", reject.status.0, reject.reason);
        let bytes = app::reject_bytes(reject, &self.context(key));
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let next = conn.reject(bytes, self.now);
        self.after(key, next);
    }

    fn carry_out(&mut self, key: usize, head: Head, body: Vec<u8>) {
        let action = app::respond(
            head,
            body,
            &self.context(key),
            &mut self.patterns.borrow_mut(),
        );
        self.act(key, action);
    }

    /// Carries out what `app` decided for connection `key`, if it is still
    /// there.
    fn act(&mut self, key: usize, action: Action) {
        if !self.conns.contains(key) {
            return;
        }
        match action {
            Action::Answer { bytes, keep_alive } => {
                let next = self.conns[key].answer(bytes, keep_alive, self.now, &self.config);
                self.after(key, next);
            }
            Action::Metrics {
                keep_alive,
                head_only,
            } => {
                let text = crate::metrics::render(&self.shared.stats(), &self.shared.per_loop());
                let answer = app::metrics(&text, keep_alive, head_only, &self.context(key));
                self.act(key, answer);
            }
            Action::Reject(reject) => self.reject(key, &reject),
            Action::RefuseStream(bytes) => {
                let next = self.conns[key].reject(bytes, self.now);
                self.after(key, next);
            }
            Action::Publish {
                event,
                keep_alive,
                key: name,
            } => {
                self.tickets += 1;
                let ticket = Ticket {
                    loop_index: self.index,
                    key,
                    serial: self.tickets,
                };
                let publish = Publish::keyed(event, name);
                match self.shared.hub.publish(publish, Asker::Loop(ticket)) {
                    Offer::Published(id) => {
                        // The answer first, then the event, which is in
                        // the inbox now; what else the inbox holds may
                        // close connections, this one included.
                        self.answer_publish(key, &id.text(), keep_alive);
                        self.take_messages();
                    }
                    Offer::Pending => {
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.await_publish(ticket, keep_alive);
                        }
                    }
                    Offer::Refused(refused) => self.refuse_publish(key, refused),
                }
            }
            Action::Subscribe(start) => self.subscribe(key, start),
            Action::Lab(request) => self.hand_over_to_lab(key, request),
        }
    }

    /// Gives connection `key` to the lab's thread: out of this loop's poll
    /// and slab, not closed, still holding its place against
    /// `--max-connections` until the lab closes it.
    fn hand_over_to_lab(&mut self, key: usize, request: crate::lab::StreamRequest) {
        let shared = std::sync::Arc::clone(&self.shared);
        let Some(ticket) = shared.lab.as_ref().and_then(|door| door.reserve()) else {
            let busy = Reject::new(crate::http::Status::UNAVAILABLE, "the lab is busy");
            return self.reject(key, &busy);
        };
        let Some(unsent) = self.conns.get(key).map(|conn| conn.unsent()) else {
            return;
        };
        let Some(remains) = self.take_out(key) else {
            return;
        };
        debug!("connection {key}: handed over to the lab");
        ticket.send(crate::lab::Handed::new(
            remains.socket,
            request,
            unsent,
            std::sync::Arc::clone(&shared),
        ));
    }

    fn answer_publish(&mut self, key: usize, id: &str, keep_alive: bool) {
        let answer = app::published(id, keep_alive, &self.context(key));
        self.act(key, answer);
    }

    /// A publish the hub did not take: 400 for an event no subscriber
    /// could receive (`app` lets none through), else 503.
    fn refuse_publish(&mut self, key: usize, refused: PublishError) {
        let action = match refused {
            PublishError::InvalidType
            | PublishError::InvalidTopic
            | PublishError::InvalidKey
            | PublishError::InvalidId => {
                Action::Reject(Reject::new(Status::BAD_REQUEST, refused.reason()))
            }
            PublishError::TooLarge => {
                Action::Reject(Reject::new(Status::PAYLOAD_TOO_LARGE, refused.reason()))
            }
            PublishError::Closed | PublishError::Unavailable => app::unavailable(),
        };
        self.act(key, action);
    }

    /// The bus answered a publish that waited: the answer goes out and the
    /// connection reads its next request.
    pub(super) fn confirm(&mut self, ticket: Ticket, id: Result<EventId, PublishError>) {
        let Some(keep_alive) = self
            .conns
            .get_mut(ticket.key)
            .and_then(|conn| conn.take_publish(ticket))
        else {
            return; // it went away meanwhile
        };
        match id {
            Ok(id) => self.answer_publish(ticket.key, &id.text(), keep_alive),
            Err(refused) => self.refuse_publish(ticket.key, refused),
        }
        self.owed.reads.push(ticket.key);
    }

    fn subscribe(&mut self, key: usize, mut start: StreamStart) {
        if let Some(m) = &start.matchers
            && !self.topics.admits_patterns(&m.patterns)
        {
            return self.reject(key, &PATTERNS_FULL);
        }
        let resume = match (&start.last_event_id, start.matchers.is_some()) {
            (None, _) => Ok(None),
            (Some(id), true) => {
                // Mercure: no in-band reset; the head says where it resumed.
                let placed = self.place(id).ok();
                let earliest = self.bus.history().earliest();
                let (after, said) = app::mercure::resume(id, earliest, placed);
                app::mercure::with_last_event_id(&mut start.head, said);
                Ok(after)
            }
            (Some(id), false) => match self.place(id) {
                Ok(seq) => Ok(Some(seq)),
                Err(reason) => {
                    debug!("connection {key}: Last-Event-ID {id:?} cannot be resumed: {reason:?}");
                    Err(self.bus.history().reset_frame(reason))
                }
            },
        };
        if let Err(e) = self.conns[key].limit_send_buffer(self.config.send_buffer) {
            debug!("connection {key}: SO_SNDBUF: {e}");
        }
        let subscription = match start.matchers {
            None => {
                debug!("connection {key}: subscribed to {:?}", start.topics);
                self.topics.subscribe(key, &start.topics)
            }
            Some(m) => {
                debug!(
                    "connection {key}: Mercure subscriber of {:?}, {} URL patterns{}",
                    m.exact,
                    m.patterns.len(),
                    if m.wildcard { " and *" } else { "" }
                );
                self.topics
                    .subscribe_matchers(key, &m.exact, m.wildcard, m.patterns)
            }
        };
        let clearance = start.grant.map(|grant| Clearance::new(grant, self.now));
        let next = self.conns[key].start_stream(
            start.head,
            start.framing,
            subscription,
            clearance,
            resume,
            self.now,
            &self.heartbeat,
        );
        if self.conns[key].replaying() {
            self.replays.began();
        }
        self.update_gauges();
        self.after(key, next);
        self.replay(key);
    }

    /// Places a `Last-Event-ID`. An id its publisher gave an event this
    /// loop has not received yet (just published, its delivery still in
    /// the inbox) is looked for again once the inbox is drained.
    fn place(&mut self, id: &str) -> Result<u64, crate::bus::ResetReason> {
        let placed = self.bus.resume_point(id);
        if placed.is_err() && !crate::bus::id::is_reserved(id) {
            self.take_messages();
            return self.bus.resume_point(id);
        }
        placed
    }

    /// Tops up a resuming subscriber's replay within what the pass's budget
    /// allows; the flush that drains its queue calls again, and what a
    /// budget stopped goes on in a later pass. Returns the events queued.
    pub(super) fn replay(&mut self, key: usize) -> u64 {
        let Some(conn) = self.conns.get_mut(key) else {
            return 0;
        };
        if !conn.replaying() {
            return 0;
        }
        let queue_limit = self.config.queue_limit;
        let Some(allowance) = self.replays.budget.allowance(conn.queued(), queue_limit) else {
            self.replays.wait(key);
            return 0;
        };
        let access = self.policy.access.as_deref();
        let replayed = conn.replay(self.bus.history(), allowance, access, self.hub.url());
        self.replays.budget.charge(&replayed);
        self.counters.replayed.add(replayed.events);
        self.counters.deliveries.add(replayed.events);
        // Events, or the `reset` of a replay that lost its place.
        let next = if replayed.bytes > 0 {
            conn.list_stream()
        } else {
            Next::Wait
        };
        match replayed.then {
            ReplayThen::WhenWritten => {}
            ReplayThen::NextPass => self.replays.wait(key),
            ReplayThen::Live => {
                self.replays.ended();
                self.update_gauges();
            }
            ReplayThen::Lost => {
                debug!("connection {key}: fell behind the history while replaying: ended");
                self.replays.ended();
                self.after(key, next);
                if let Some(conn) = self.conns.get_mut(key) {
                    let ending = conn.end_stream(self.now);
                    self.after_ending(key, ending);
                }
                return replayed.events;
            }
        }
        self.after(key, next);
        replayed.events
    }

    /// Queues the delivery to every subscriber of this loop it is for: a
    /// pointer per subscriber, no copy.
    pub(super) fn fan_out(&mut self, delivery: &Delivery) {
        self.fan_outs += 1;
        let limit = self.config.queue_limit;
        let mut deliveries = 0;
        // Who may receive it, once per delivery: everyone (and no
        // allocation) without --jwt-key for a public event, or for one on
        // public topics only.
        let mut audience = Audience::of(
            self.policy.access.as_deref(),
            &delivery.topics,
            delivery.private,
            self.hub.url(),
        );
        // Who its topics name: by exact topic, then (only where Mercure
        // subscribers have a `*` or URL patterns) by pattern.
        let mut by_pattern = std::mem::take(&mut self.pattern_recipients);
        if self.topics.has_patterns() {
            self.topics
                .pattern_recipients(audience.event_mut(), &mut by_pattern);
        }
        let recipients = self.topics.recipients(&delivery.topics);
        for key in recipients.chain(by_pattern.drain(..)) {
            debug_assert!(
                self.conns.contains(key),
                "close() takes a subscriber out of the index"
            );
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.deliver(
                &delivery.frame,
                delivery.seq,
                self.fan_outs,
                limit,
                &mut audience,
            ) {
                Delivered::Skipped => {}
                Delivered::Queued { list } => {
                    deliveries += 1;
                    if list {
                        self.owed.streams.push_back(key);
                    }
                }
                Delivered::OverLimit => {
                    deliveries += 1;
                    self.over_limit.push(key);
                }
            }
        }
        self.pattern_recipients = by_pattern;
        self.counters.deliveries.add(deliveries);
        self.cut_over_limit();
    }

    fn cut_over_limit(&mut self) {
        while let Some(key) = self.over_limit.pop() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            warn!(
                "connection {key}: slow subscriber cut off ({} bytes unsent, limit {})",
                conn.queued(),
                self.config.queue_limit
            );
            self.counters.slow_disconnects.add(1);
            let ending = conn.cut_off(self.now);
            self.after_ending(key, ending);
        }
    }
}
