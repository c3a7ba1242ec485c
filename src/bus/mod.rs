//! The seam between a loop and what every loop (and, in a cluster, every
//! node) shares: assigning each event its id, one order of events that every
//! loop receives alike, and the history kept for `Last-Event-ID`.
//!
//! A loop holds one [`Bus`]: it offers the events its clients publish, takes
//! [`Message`]s in order (every event, its own included, comes back as a
//! [`Delivery`]), and places `Last-Event-ID`s against its copy of the
//! history. An offer may be answered at once ([`Offer::Published`]) or
//! later ([`Message::Confirmed`]), so a publisher over HTTP can wait for a
//! store that confirms asynchronously. [`local`] is the in-process
//! implementation: one sequencer under a lock, one inbox per loop;
//! [`redis`] the cluster's, on a Redis stream, over [`resp`].
//!
//! Ids are [`EventId`]s, made, written, read and placed in [`id`] alone.

pub mod history;
pub mod id;
pub mod local;
pub mod redis;
pub mod resp;

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use mio::event::Event as Readiness;
use mio::{Registry, Token};

use crate::sse::{Event, Frame};

pub use history::{History, Retained};
pub use id::{EventId, ResetReason};

/// One event in the hub's order, as every loop receives it: its sequence
/// number, the frame every subscriber's queue points at, and its topics
/// (none: a broadcast). Cloning shares, never copies.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Position in the hub's order, from 1.
    pub seq: u64,
    /// The encoded event.
    pub frame: Arc<Frame>,
    /// Where it goes; empty for everyone.
    pub topics: Arc<[Box<str>]>,
}

/// What became of an offered event.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Published with this id; the event itself arrives as a `Delivery`.
    Published(EventId),
    /// Taken; the answer comes later as [`Message::Confirmed`] for the
    /// ticket given with the offer.
    Pending,
    /// Cannot be published now; the client should retry later.
    Unavailable,
}

/// A connection waiting for the answer to its publish: its key in the loop
/// and a number the loop never reuses, so a late answer cannot reach a
/// connection that took the key since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The connection's key.
    pub key: usize,
    /// Unique within the loop.
    pub serial: u64,
}

/// What a loop receives from the bus, in order.
#[derive(Debug)]
pub enum Message {
    /// The next event of the hub's order.
    Delivery(Delivery),
    /// The answer to an offer that was [`Offer::Pending`]: the id, or
    /// `None` when the event could not be published.
    Confirmed(Ticket, Option<EventId>),
    /// The server is shutting down.
    Shutdown,
}

/// The tokens a bus may register sockets of its own under (a Redis
/// connection): the loop hands their readiness to [`Bus::on_ready`]. Below
/// the loop's own tokens (waker, listener), far above any connection key.
pub const BUS_TOKENS: Range<usize> = usize::MAX - 66..usize::MAX - 2;

/// Whether `token` is one of [`BUS_TOKENS`].
pub fn is_bus_token(token: Token) -> bool {
    BUS_TOKENS.contains(&token.0)
}

/// One loop's door to the shared hub. Implementations keep the loop's copy
/// of the history up to date as they hand out deliveries.
///
/// A bus that talks to a store over sockets of its own registers them in
/// the loop's poll ([`Bus::register`], tokens from [`BUS_TOKENS`]) and is
/// driven by the loop like everything else: readiness
/// ([`Bus::on_ready`]), a write of what it buffered once per pass
/// ([`Bus::before_poll`], which also names its next deadline) and that
/// deadline ([`Bus::on_deadline`]). What those produce is taken with
/// [`Bus::next`] right after. The in-process bus has no socket and keeps
/// the defaults, which do nothing.
pub trait Bus: Send {
    /// Offers an event published by the loop's client `ticket`.
    fn publish(&mut self, event: &Event, ticket: Ticket) -> Offer;

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

    /// Registers the bus's own sockets with the loop's poll, under tokens
    /// of [`BUS_TOKENS`]. Called once, before the loop runs.
    fn register(&mut self, _registry: &Registry) -> io::Result<()> {
        Ok(())
    }

    /// Readiness of one of the bus's own sockets.
    fn on_ready(&mut self, _token: Token, _readiness: &Readiness) {}

    /// Once per pass of the loop, before it polls: writes what the bus
    /// buffered during the pass, and says when it next needs
    /// [`Bus::on_deadline`].
    fn before_poll(&mut self) -> Option<Instant> {
        None
    }

    /// The instant [`Bus::before_poll`] named has come.
    fn on_deadline(&mut self, _now: Instant) {}
}
