//! A connection while it streams events to a subscriber: its framing and
//! place in the topic index, the replay from the history that comes before
//! live events, and what its token lets it receive.

use std::mem;
use std::sync::Arc;
use std::time::Instant;

use super::{
    Conn, Delivered, EndedStream, Lane, Next, ReplayAllowance, ReplayThen, Replayed, State,
};
use crate::auth::{self, Access, Audience, Grants};
use crate::bus::{Delivery, History, ResetReason, Retained};
use crate::mercure::matcher::EventTopics;
use crate::mercure::url::Url;
use crate::net::Transport;
use crate::sse::{self, Frame, Framing};
use crate::timers::HeartbeatGrid;
use crate::topics::Subscription;

/// The state of a connection that streams events.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) framing: Framing,
    subscription: Subscription,
    /// While catching up from the history: the last sequence number looked
    /// at. Live events wait for the cursor.
    pub(super) replay: Option<u64>,
    /// Live events up to this sequence number are not sent: the resume
    /// point, when it named an event on its way to this loop.
    skip_through: u64,
    /// When to check whether a heartbeat is due.
    pub(super) next_check: Option<Instant>,
    /// With `--jwt-key`, for a subscriber that came with a token: the
    /// private topics it may receive, and when its stream ends.
    clearance: Option<Box<Clearance>>,
}

/// What a subscriber's token allows it to receive, and until when.
#[derive(Debug)]
pub struct Clearance {
    /// Its grants.
    grants: Grants,
    /// When the token stops being accepted: the stream ends then, and the
    /// client comes back with a fresh one.
    until: Option<Instant>,
}

impl Clearance {
    /// The clearance of `grants` for a stream starting at `now`; an expiry
    /// too far off for the clock to hold is none.
    pub fn new(grants: Grants, now: Instant) -> Clearance {
        Clearance {
            until: auth::stream_end(&grants, now),
            grants,
        }
    }
}

impl Stream {
    /// What its token allows, if it came with one.
    fn grants(&self) -> Option<&Grants> {
        self.clearance.as_deref().map(|c| &c.grants)
    }

    pub(super) fn token_until(&self) -> Option<Instant> {
        self.clearance.as_ref().and_then(|c| c.until)
    }

    /// What it leaves when it ends.
    pub(super) fn ended(self) -> EndedStream {
        EndedStream {
            was_replaying: self.replay.is_some(),
            subscription: self.subscription,
        }
    }
}

impl<S: Transport> Conn<S> {
    /// Becomes a stream: the head (with the first body bytes), then the
    /// `reset` event when its resume point could not be placed, then a
    /// replay from `resume_after` if one was placed. Live events flow once
    /// the replay has caught up. A `clearance` lets private events through
    /// and ends the stream when its token expires.
    #[allow(clippy::too_many_arguments)] // each is what the stream starts with
    pub fn start_stream(
        &mut self,
        head: Vec<u8>,
        framing: Framing,
        subscription: Subscription,
        clearance: Option<Clearance>,
        resume: Result<Option<u64>, Arc<Frame>>,
        now: Instant,
        heartbeat: &HeartbeatGrid,
    ) -> Next {
        debug_assert!(
            matches!(self.state, State::Requests(_)),
            "a stream begins from a request"
        );
        self.queue.push_owned(head);
        let (replay, skip_through) = match resume {
            Ok(after) => (after, after.unwrap_or(0)),
            Err(reset) => {
                self.queue.push_frame(&reset, framing);
                (None, 0)
            }
        };
        self.last_write = now;
        self.state = State::Stream(Stream {
            framing,
            subscription,
            replay,
            skip_through,
            next_check: heartbeat.next_check(now),
            clearance: clearance.map(Box::new),
        });
        // The head is an answer: written with the answers, not behind a
        // fan-out in progress.
        self.list(Lane::Answer)
    }

    /// A live event for this subscriber, numbered `seq` in the hub's order
    /// and `fan_out` among the loop's fan-outs, if it is in the event's
    /// `audience`.
    pub fn deliver(
        &mut self,
        frame: &Arc<Frame>,
        seq: u64,
        fan_out: u64,
        limit: usize,
        audience: &mut Audience<'_>,
    ) -> Delivered {
        let State::Stream(s) = &self.state else {
            return Delivered::Skipped;
        };
        debug_assert!(
            fan_out >= self.last_fan_out,
            "fan-outs are numbered in order"
        );
        if self.last_fan_out == fan_out || s.replay.is_some() || seq <= s.skip_through {
            return Delivered::Skipped;
        }
        self.last_fan_out = fan_out;
        if !audience.admits(s.grants()) {
            return Delivered::Skipped;
        }
        self.queue.push_frame(frame, s.framing);
        if self.queue.len() > limit {
            return Delivered::OverLimit;
        }
        Delivered::Queued {
            list: self.enlist(),
        }
    }

    /// While it replays: queues kept events after its cursor until its
    /// queue holds `allowance.fill_to` bytes, the history is exhausted, or
    /// the allowance's units run out (see `History::next_retained`); only
    /// events its selectors want (topics resolved against `hub` for its
    /// URL patterns) and, with `access`, whose private topics it is
    /// cleared for. Once caught up it is live. One that fell behind the
    /// history meanwhile gets a `reset` and goes live, or on the Mercure
    /// endpoint (which has no such event) is ended, so that its reconnect
    /// learns from `Mercure-Last-Event-ID` that events were lost.
    pub fn replay(
        &mut self,
        history: &History,
        allowance: ReplayAllowance,
        access: Option<&Access>,
        hub: &Url,
    ) -> Replayed {
        let queued_before = self.queue.len();
        let mut units_left = allowance.units;
        let mut events = 0;
        let then = 'top_up: {
            let State::Stream(s) = &mut self.state else {
                break 'top_up ReplayThen::Live;
            };
            let Some(mut after) = s.replay else {
                break 'top_up ReplayThen::Live;
            };
            let grants = s.clearance.as_deref().map(|c| &c.grants);
            let subscription = &s.subscription;
            let wanted = |d: &Delivery| {
                subscription.wants(&mut EventTopics::new(&d.topics, hub))
                    && Audience::of(access, &d.topics, d.private, hub).admits(grants)
            };
            let per_topic = subscription.matcher_count();
            while self.queue.len() < allowance.fill_to {
                match history.next_retained(after, per_topic, wanted, &mut units_left) {
                    Retained::Event(seq, frame) => {
                        self.queue.push_frame(frame, s.framing);
                        events += 1;
                        after = seq;
                    }
                    Retained::Scanned(upto) => {
                        s.replay = Some(upto);
                        break 'top_up ReplayThen::NextPass;
                    }
                    Retained::CaughtUp => {
                        s.replay = None;
                        s.skip_through = s.skip_through.max(after);
                        break 'top_up ReplayThen::Live;
                    }
                    Retained::Lost if s.subscription.is_mercure() => {
                        s.replay = None;
                        break 'top_up ReplayThen::Lost;
                    }
                    Retained::Lost => {
                        // It fell behind the history while catching up: say
                        // so, from the newest id; what follows comes live.
                        let reset = history.reset_frame(ResetReason::Stale);
                        self.queue.push_frame(&reset, s.framing);
                        s.replay = None;
                        s.skip_through = history.newest();
                        break 'top_up ReplayThen::Live;
                    }
                }
            }
            s.replay = Some(after);
            ReplayThen::WhenWritten
        };
        Replayed {
            events,
            bytes: self.queue.len() - queued_before,
            units: allowance.units - units_left,
            then,
        }
    }

    /// Still catching up from the history.
    pub fn replaying(&self) -> bool {
        matches!(&self.state, State::Stream(s) if s.replay.is_some())
    }

    /// Cut off for passing the queue limit: what it has not begun to take
    /// is dropped (it resumes with `Last-Event-ID`) and its stream ends.
    pub fn cut_off(&mut self, now: Instant) -> (Option<EndedStream>, Next) {
        self.queue.keep_started();
        self.end_stream(now)
    }

    /// Ends a stream cleanly after what is queued: the last chunk when
    /// chunked, then the close. Returns what the stream leaves, for the
    /// loop to take out of its books.
    pub fn end_stream(&mut self, now: Instant) -> (Option<EndedStream>, Next) {
        if !self.is_stream() {
            return (None, Next::Wait);
        }
        let State::Stream(s) = mem::replace(&mut self.state, State::closing(now)) else {
            return (None, Next::Wait);
        };
        if s.framing == Framing::Chunked {
            self.queue.push_static(sse::LAST_CHUNK);
        }
        (Some(s.ended()), self.list(Lane::Stream))
    }
}
