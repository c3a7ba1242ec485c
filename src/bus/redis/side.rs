//! One loop's side of the cluster's hub ([`RedisBus`]): its publishing
//! connection, on loop 0 the node's reader and the Sentinels' watch, its
//! inbox and its copy of the history; it follows the primary when it
//! moves, and drives every connection from the loop's poll.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::event::Event as Readiness;
use mio::{Registry, Token};

use super::epoch::Era;
use super::reading::Reading;
use super::watch::Watch;
use super::writer::Writer;
use super::{CLUSTER_LEAD, READ_BATCH, RedisSequencer};
use crate::bus::id::{Epoch, ResetReason, Run};
use crate::bus::inbox::Inbox;
use crate::bus::resp::Limits;
use crate::bus::{BUS_TOKENS, Bus, Delivery, History, Message};

/// The token of a bus's connection `n`: 0 the writer, 1 the reader, 2 to 4
/// the Sentinel watch's.
fn token(n: usize) -> Token {
    Token(BUS_TOKENS.start + n)
}

/// One loop's side of the cluster's hub.
pub struct RedisBus {
    index: usize,
    hub: Arc<RedisSequencer>,
    inbox: Arc<Inbox>,
    /// Messages taken out of the inbox in one go and not yet handed out.
    taken: VecDeque<Message>,
    history: History,
    /// How many eras the history has seen begin.
    eras_seen: usize,
    /// How many primary moves the connections have followed.
    moves_seen: u64,
    writer: Writer,
    /// Loop 0's: the node's reader, and the Sentinels' watch.
    reading: Option<Reading>,
    watch: Option<Watch>,
    /// The bus was ready: the loop serves.
    started: bool,
}

impl RedisBus {
    /// Loop `index`'s side of `hub`; loop 0's also reads the stream for
    /// the node, and follows the primary through the Sentinels.
    pub fn new(index: usize, hub: Arc<RedisSequencer>) -> RedisBus {
        let limits = Limits {
            value: 1 << 20,
            ..hub.limits
        };
        let writer = Writer::new(index, &hub, token(0), limits);
        let reading = (index == 0).then(|| Reading::new(&hub, token(1), hub.limits, READ_BATCH));
        let watch = hub
            .sentinels
            .clone()
            .filter(|_| index == 0)
            .map(|s| Watch::new(s, &hub.login, [token(2), token(3), token(4)], limits));
        RedisBus {
            index,
            inbox: Arc::clone(hub.inboxes.get(index)),
            taken: VecDeque::new(),
            // Named by the node's first epoch once it is known.
            history: History::new(Epoch::new(Run::NONE, 0), hub.history),
            eras_seen: 0,
            moves_seen: hub.moves.load(Ordering::Acquire),
            writer,
            reading,
            watch,
            started: false,
            hub,
        }
    }

    /// What Redis refused since the last look, the writer's or the
    /// reader's.
    fn take_refusal(&mut self) -> Option<String> {
        let reader = self.reading.as_mut().and_then(Reading::take_refusal);
        self.writer.take_refusal().or(reader)
    }

    /// Writes what every connection buffered; the nearest deadline.
    fn flush_all(&mut self) -> Option<Instant> {
        let hub = &*self.hub;
        self.writer.flush(hub);
        if let Some(reading) = &mut self.reading {
            reading.flush(hub);
        }
        if let Some(watch) = &mut self.watch {
            watch.flush(hub);
        }
        [
            self.writer.deadline(),
            self.reading.as_ref().and_then(Reading::deadline),
            self.watch.as_ref().and_then(Watch::deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends the publishes queued for this loop's connection, and those it
    /// held for an epoch check.
    fn send_unsent(&mut self) {
        let unsent = self.hub.take_unsent(self.index);
        if unsent.is_empty() {
            self.writer.pump(&self.hub);
        } else {
            self.writer.send(unsent, &self.hub);
        }
    }

    /// Follows the primary, when it moved; on loop 0, tells the watch
    /// when a connection found it failing.
    fn follow_primary(&mut self) {
        let hub = &*self.hub;
        if let Some(watch) = &mut self.watch
            && hub.take_failed()
        {
            watch.primary_failed(hub);
        }
        let moves = hub.moves.load(Ordering::Acquire);
        if moves == self.moves_seen {
            return;
        }
        self.moves_seen = moves;
        let primary = hub.primary();
        self.writer.follow(primary, hub);
        if let Some(reading) = &mut self.reading {
            reading.follow(primary, hub);
        }
    }

    /// Records a delivery in the loop's history, moving the history to the
    /// era it belongs to when that is a new one.
    fn record(&mut self, delivery: &Delivery) {
        if self.eras_seen != self.hub.epochs.begun()
            && let Some((era, begun)) = self.hub.epochs.of(delivery.seq)
        {
            self.enter(era, begun);
        }
        self.history.record(delivery);
    }

    fn enter(&mut self, era: Era, begun: usize) {
        if era.epoch != self.history.epoch() {
            self.history.rebase(era.epoch, era.before_valid);
        }
        self.eras_seen = begun;
    }
}

impl Bus for RedisBus {
    fn ready(&mut self) -> io::Result<bool> {
        if self.started {
            return Ok(true);
        }
        if let Some(why) = self.take_refusal() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("Redis at {}: {why}", self.hub.shown_addr()),
            ));
        }
        let Some(through) = self.hub.epochs.started() else {
            return Ok(false);
        };
        if self.eras_seen == 0
            && let Some((first, begun)) = self.hub.epochs.of(0)
        {
            // Nothing delivered yet: the history is named by the first
            // era (a later one comes with its first delivery).
            self.enter(first, begun);
        }
        self.started = self.writer.is_ready() && self.history.newest() >= through;
        Ok(self.started)
    }

    fn begin_drain(&mut self) {
        self.inbox.begin_drain();
    }

    fn next(&mut self) -> Option<Message> {
        if self.taken.is_empty() {
            self.inbox.take_all(&mut self.taken);
        }
        let Some(message) = self.taken.pop_front() else {
            return self.writer.next_answer();
        };
        if let Message::Delivery(delivery) = &message {
            self.record(delivery);
        }
        Some(message)
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn resume_point(&self, last_event_id: &str) -> Result<u64, ResetReason> {
        self.history
            .resume_point(last_event_id, self.issued().saturating_add(CLUSTER_LEAD))
    }

    fn issued(&self) -> u64 {
        self.hub.epochs.issued().max(self.history.newest())
    }

    fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let hub = &*self.hub;
        self.writer.register(registry, hub)?;
        if let Some(reading) = &mut self.reading {
            reading.register(registry, hub)?;
        }
        if let Some(watch) = &mut self.watch {
            watch.register(registry, hub)?;
        }
        Ok(())
    }

    fn on_ready(&mut self, token: Token, readiness: &Readiness) {
        let hub = &*self.hub;
        match token.0 - BUS_TOKENS.start {
            0 => self.writer.on_ready(readiness, hub),
            1 => {
                if let Some(reading) = &mut self.reading {
                    reading.on_ready(readiness, hub);
                }
            }
            n => {
                if let Some(watch) = &mut self.watch {
                    watch.on_ready(n - 2, readiness, hub);
                }
            }
        }
    }

    fn before_poll(&mut self) -> Option<Instant> {
        self.follow_primary();
        // Until the loop serves, a refusal is `ready`'s to report, and
        // threads' publishes wait.
        if self.started {
            if let Some(why) = self.take_refusal() {
                log::error!("Redis at {}: {why}", self.hub.shown_addr());
            }
            self.send_unsent();
        }
        let deadline = self.flush_all();
        // Answers given meanwhile (a publish refused at once, a connection
        // lost as it was written) are taken now, not at the next wake-up.
        if self.writer.has_answers() {
            Some(Instant::now())
        } else {
            deadline
        }
    }

    fn on_deadline(&mut self, now: Instant) {
        let hub = &*self.hub;
        self.writer.on_deadline(now, hub);
        if let Some(reading) = &mut self.reading {
            reading.on_deadline(now, hub);
        }
        if let Some(watch) = &mut self.watch {
            watch.on_deadline(now, hub);
        }
    }

    fn abandon(&mut self) {
        // Publishes not yet taken from the queue are this loop's too.
        let unsent = self.hub.take_unsent(self.index);
        self.writer.send(unsent, &self.hub);
        self.writer.abandon();
    }
}

impl Drop for RedisBus {
    /// A stopped loop stops the hub: threads publishing or waiting for room
    /// are told so.
    fn drop(&mut self) {
        self.hub.inboxes.close();
    }
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("index", &self.index)
            .field("writer", &self.writer)
            .field("reading", &self.reading)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}
