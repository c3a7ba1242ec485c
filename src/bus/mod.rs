//! The seam between the loops and what every loop (and, in a cluster,
//! every node) shares: assigning each event its id, one order of events
//! that every loop receives alike, and the history kept for
//! `Last-Event-ID`.
//!
//! Publishing has one door, [`Hub::publish`]: an HTTP publish on any loop
//! and a [`Publisher`](crate::Publisher) on any thread both go through
//! it, in process and in a cluster. It checks the event (type, topics)
//! and hands it to the [`Sequencer`] behind it, which gives it its place
//! in the order and its id: [`local::LocalSequencer`] under a lock in
//! process, [`redis::RedisSequencer`] by storing it in a Redis stream. A
//! loop's publish may be answered at once ([`Offer::Published`]) or later
//! ([`Message::Confirmed`], so that an HTTP publisher can wait for a store
//! that confirms asynchronously without holding the loop); a thread's is
//! answered before `publish` returns. Each event is counted once, where
//! its sequencer gives it its id ([`Tally`]).
//!
//! The receiving side is per loop: a loop holds one [`Bus`], takes
//! [`Message`]s from it in order (every event, its own included, comes
//! back as a [`Delivery`] through the loop's [`inbox::Inbox`]) and places
//! `Last-Event-ID`s against its copy of the [`History`]. A bus that talks
//! to a store over sockets of its own (the cluster's Redis connections)
//! has them driven by the loop's poll like any other socket.
//!
//! Ids are [`EventId`]s, made, written, read and placed in [`id`] alone.

pub mod history;
pub mod id;
pub mod inbox;
pub mod local;
pub mod redis;
pub mod resp;

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use log::{debug, trace};
use mio::event::Event as Readiness;
use mio::{Registry, Token};

use crate::sse::{Event, Frame, valid_event_type, valid_id, valid_topic};

pub use history::{History, Retained};
pub use id::{EventId, ResetReason};
pub use inbox::Inboxes;

/// One event in the hub's order, as every loop receives it: its sequence
/// number, the frame every subscriber's queue points at, its topics (none:
/// a broadcast), the id its publisher gave it (which a `Last-Event-ID`
/// names it by) and whether it is private. Cloning shares, never copies.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Position in the hub's order, from 1.
    pub seq: u64,
    /// The encoded event.
    pub frame: Arc<Frame>,
    /// Where it goes; empty for everyone.
    pub topics: Arc<[Box<str>]>,
    /// Its publisher's id, when it has one.
    pub name: Option<Arc<str>>,
    /// Only for subscribers allowed one of its topics (Mercure's
    /// `private`).
    pub private: bool,
}

impl Delivery {
    /// Event `seq` of the order, encoded in `frame`, to `topics`, public
    /// and unnamed (a `reset`, a test's event).
    pub fn plain(seq: u64, frame: Arc<Frame>, topics: Arc<[Box<str>]>) -> Delivery {
        Delivery {
            seq,
            frame,
            topics,
            name: None,
            private: false,
        }
    }
}

/// A publish as it comes to the door.
#[derive(Clone, Debug)]
pub struct Publish {
    /// The event.
    pub event: Event,
    /// The key its publisher gave it (an `Idempotency-Key`, a Mercure
    /// update's `id` with the update), so that a second publish with the
    /// same key within the history window, on any loop or node, creates
    /// no second event and is answered with the first one's id.
    pub key: Option<Arc<str>>,
}

impl Publish {
    /// A publish of `event` with no key.
    pub fn new(event: Event) -> Publish {
        Publish { event, key: None }
    }

    /// A publish of `event` under `key`.
    pub fn keyed(event: Event, key: Option<Arc<str>>) -> Publish {
        Publish { event, key }
    }
}

/// Who waits for a publish's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    /// A loop's client: the loop never waits, and a late answer comes to
    /// the loop as [`Message::Confirmed`] for the ticket.
    Loop(Ticket),
    /// A thread (a [`Publisher`](crate::Publisher)): it may wait, and is
    /// answered before `publish` returns.
    Thread,
}

/// A connection waiting for the answer to its publish: its loop, its key
/// in the loop and a number the loop never reuses, so a late answer
/// cannot reach a connection that took the key since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The loop's index.
    pub loop_index: usize,
    /// The connection's key.
    pub key: usize,
    /// Unique within the loop.
    pub serial: u64,
}

/// What became of a publish.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Published with this id; the event itself arrives as a `Delivery`.
    Published(EventId),
    /// Taken; the answer comes later as [`Message::Confirmed`] for the
    /// ticket given with the publish (a loop's publish only).
    Pending,
    /// Not published.
    Refused(PublishError),
}

/// Why a publish was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The server has stopped.
    Closed,
    /// The event type holds CR, LF or NUL.
    InvalidType,
    /// A topic is empty, longer than 128 bytes or holds a control character
    /// (no subscriber could name it).
    InvalidTopic,
    /// The id is empty, longer than 1 024 bytes, or holds CR, LF or NUL.
    InvalidId,
    /// In a cluster: Redis cannot be reached now, so the event was not
    /// stored (or, if Redis failed while storing it, may have been). Retry
    /// later (with the same key, a retry cannot publish it twice).
    Unavailable,
    /// In a cluster: the event is larger than a cluster stores
    /// ([`MAX_CLUSTER_EVENT_SIZE`](crate::config::MAX_CLUSTER_EVENT_SIZE)),
    /// or has more than 1 024 topics.
    TooLarge,
    /// The key is empty, longer than 1 024 bytes (a Mercure id's bound) or holds a control
    /// character.
    InvalidKey,
}

impl PublishError {
    /// What was wrong, in a few words.
    pub fn reason(self) -> &'static str {
        match self {
            PublishError::Closed => "the server has stopped",
            PublishError::InvalidType => "event type must not contain CR, LF or NUL",
            PublishError::InvalidTopic => "topic must be 1 to 128 bytes with no control characters",
            PublishError::InvalidId => "id must be 1 to 1024 bytes with no CR, LF or NUL",
            PublishError::Unavailable => "the cluster's Redis cannot be reached; retry later",
            PublishError::TooLarge => {
                "the event is larger than a cluster stores (1 MiB, 1024 topics)"
            }
            PublishError::InvalidKey => {
                "the idempotency key must be 1 to 1024 bytes with no control characters"
            }
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PublishError {}

/// What a loop receives from the bus, in order.
#[derive(Debug)]
pub enum Message {
    /// The next event of the hub's order.
    Delivery(Delivery),
    /// The answer to a publish that was [`Offer::Pending`].
    Confirmed(Ticket, Result<EventId, PublishError>),
    /// The server is shutting down.
    Shutdown,
}

/// Events this process gave an id: counted, and traced, once per event,
/// by the sequencer where it gives the id; and, in a cluster, the stream
/// entries this node skipped (not events it could read).
#[derive(Debug, Default)]
pub struct Tally {
    published: AtomicU64,
    skipped: AtomicU64,
}

impl Tally {
    /// Event `id` was published.
    pub fn count(&self, id: &EventId) {
        self.published.fetch_add(1, Ordering::Relaxed);
        trace!("published {id}");
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// A stream entry was skipped.
    pub fn skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Stream entries skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// What gives each published event its place in the hub's one order and
/// its id, and hands it to every loop: the in-process sequencer, or the
/// cluster's Redis stream. Only [`Hub`] calls it: the event is checked.
pub trait Sequencer: Send + Sync {
    /// Puts `publish` in the order for `asker`. A thread's publish is
    /// answered before this returns (it may wait); a loop's never waits
    /// and may be answered later. Counts what gets an id in
    /// [`Sequencer::tally`].
    fn publish(&self, publish: Publish, asker: Asker) -> Offer;

    /// Every loop's inbox.
    fn inboxes(&self) -> &Inboxes;

    /// What was published.
    fn tally(&self) -> &Tally;
}

/// The hub's one door: every publish, from any loop or thread, in process
/// or in a cluster, comes in here.
#[derive(Clone)]
pub struct Hub {
    sequencer: Arc<dyn Sequencer>,
}

impl fmt::Debug for Hub {
    // Not the sequencer's own: through `dyn`, a derived `Debug` of every
    // sequencer would stay in the binary, unused.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("published", &self.published())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// The door to `sequencer`.
    pub fn new(sequencer: Arc<dyn Sequencer>) -> Hub {
        Hub { sequencer }
    }

    /// Publishes for `asker`, if the event is one a subscriber can
    /// receive. An id in the hub's own form is dropped: the sequencer
    /// makes one.
    pub fn publish(&self, mut publish: Publish, asker: Asker) -> Offer {
        if publish.event.id().is_some_and(id::is_reserved) {
            debug!("a publisher's id the hub reserves is replaced by the hub's");
            publish.event.drop_id();
        }
        if let Err(refused) = check(&publish) {
            debug!("publish refused: {refused}");
            return Offer::Refused(refused);
        }
        let offer = self.sequencer.publish(publish, asker);
        debug_assert!(
            !(asker == Asker::Thread && offer == Offer::Pending),
            "a thread's publish is answered before it returns"
        );
        offer
    }

    /// Events published so far by this process.
    pub fn published(&self) -> u64 {
        self.sequencer.tally().published()
    }

    /// Stream entries this node skipped (in a cluster).
    pub fn skipped(&self) -> u64 {
        self.sequencer.tally().skipped()
    }

    /// Tells every loop to shut down.
    pub fn shutdown(&self) {
        self.sequencer.inboxes().shutdown();
    }
}

/// Longest key a publish may carry.
pub const MAX_KEY_LEN: usize = crate::sse::MAX_ID_LEN;

/// Whether `key` can name a publish: 1 to [`MAX_KEY_LEN`] bytes, no
/// control characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && !key.chars().any(char::is_control)
}

/// The rules for a publish, whoever makes it.
fn check(publish: &Publish) -> Result<(), PublishError> {
    if publish.key.as_deref().is_some_and(|k| !valid_key(k)) {
        return Err(PublishError::InvalidKey);
    }
    let event = &publish.event;
    if event.event_type().is_some_and(|t| !valid_event_type(t)) {
        return Err(PublishError::InvalidType);
    }
    if !event.topics().iter().all(|t| valid_topic(t)) {
        return Err(PublishError::InvalidTopic);
    }
    if event.id().is_some_and(|id| !valid_id(id)) {
        return Err(PublishError::InvalidId);
    }
    Ok(())
}

/// The tokens a bus may register sockets of its own under (a Redis
/// connection): the loop hands their readiness to [`Bus::on_ready`]. Below
/// the loop's own tokens (waker, listener), far above any connection key.
pub const BUS_TOKENS: Range<usize> = usize::MAX - 66..usize::MAX - 2;

/// Whether `token` is one of [`BUS_TOKENS`].
pub fn is_bus_token(token: Token) -> bool {
    BUS_TOKENS.contains(&token.0)
}

/// One loop's side of the hub: what it receives, in order, and its copy
/// of the history, which implementations keep up to date as they hand
/// out deliveries.
///
/// A bus that talks to a store over sockets of its own registers them in
/// the loop's poll ([`Bus::register`], tokens from [`BUS_TOKENS`]) and is
/// driven by the loop like everything else: readiness
/// ([`Bus::on_ready`]), a write of what it buffered once per pass
/// ([`Bus::before_poll`], which also names its next deadline) and that
/// deadline ([`Bus::on_deadline`]). What those produce is taken with
/// [`Bus::next`] right after. Until such a bus has reached its store and
/// read the history there ([`Bus::ready`]), the loop serves only the bus:
/// it does not listen. The in-process bus has no socket and keeps the
/// defaults, which do nothing and are ready at once.
pub trait Bus: Send {
    /// The next message, if one is waiting. Call [`Bus::begin_drain`]
    /// first: messages that arrive after it wake the loop again.
    fn next(&mut self) -> Option<Message>;

    /// Marks the start of a drain of messages.
    fn begin_drain(&mut self);

    /// The loop's copy of the history.
    fn history(&self) -> &History;

    /// Places a `Last-Event-ID`: the sequence number to resume after, or
    /// why it cannot be resumed from.
    fn resume_point(&self, last_event_id: &str) -> Result<u64, ResetReason> {
        self.history().resume_point(last_event_id, self.issued())
    }

    /// The newest sequence number assigned anywhere, delivered to this loop
    /// or still on its way: an id up to it is ours even if this loop has
    /// not seen its event yet.
    fn issued(&self) -> u64;

    /// Whether the loop may serve clients yet: true once the bus can place
    /// ids and take publishes (a cluster's has reached Redis and read the
    /// history there), an error when it never will (Redis refused the
    /// login), which ends the loop. Asked each pass until true.
    fn ready(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Registers the bus's own sockets with the loop's poll, under tokens
    /// of [`BUS_TOKENS`]. Called once, before the loop runs.
    fn register(&mut self, _registry: &Registry) -> io::Result<()> {
        Ok(())
    }

    /// Readiness of one of the bus's own sockets.
    fn on_ready(&mut self, _token: Token, _readiness: &Readiness) {}

    /// Once per pass of the loop, before it polls: writes what the bus
    /// buffered during the pass, and says when it next needs
    /// [`Bus::on_deadline`] (now, when it has messages for the loop).
    fn before_poll(&mut self) -> Option<Instant> {
        None
    }

    /// The instant [`Bus::before_poll`] named has come.
    fn on_deadline(&mut self, _now: Instant) {}

    /// The loop is about to stop: every publish of this loop still
    /// waiting for the store is answered now (as [`Message::Confirmed`],
    /// to be taken with [`Bus::next`]), so that none is left unanswered.
    fn abandon(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequencer that must never be reached.
    #[derive(Debug, Default)]
    struct Unreachable {
        tally: Tally,
    }

    impl Sequencer for Unreachable {
        fn publish(&self, _: Publish, _: Asker) -> Offer {
            panic!("an event the door should have refused went through");
        }
        fn inboxes(&self) -> &Inboxes {
            unreachable!()
        }
        fn tally(&self) -> &Tally {
            &self.tally
        }
    }

    #[test]
    fn the_door_refuses_what_no_subscriber_could_receive() {
        let hub = Hub::new(Arc::new(Unreachable::default()));
        let refused = |event: Event| match hub.publish(Publish::new(event), Asker::Thread) {
            Offer::Refused(why) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(Event::new("x").with_type("a\nb")),
            PublishError::InvalidType
        );
        for topic in [
            String::new(),
            "x".repeat(129),
            "a\rb".into(),
            "nul\0".into(),
        ] {
            assert_eq!(
                refused(Event::new("x").with_topic("fine").with_topic(topic)),
                PublishError::InvalidTopic
            );
        }
        for id in ["", "a\nb", "nul\0"] {
            assert_eq!(
                refused(Event::new("x").with_id(id)),
                PublishError::InvalidId
            );
        }
        assert_eq!(hub.published(), 0);
    }
}
