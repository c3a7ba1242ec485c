//! The cluster's hub, on Redis Streams: nodes (processes, each with its
//! loops) that share one Redis and one key share one order of events, one
//! history and one set of ids.
//!
//! # In Redis
//!
//! - `<key>:events`, a stream: each event is one entry with the fields
//!   `epoch` (see below), `data`, `event` (its type, when it has one),
//!   `topics` (its topics, one per line, when it has any), `id` (the id
//!   its publisher gave it), `retry` (milliseconds) and `private` (present
//!   for a private event), the last three when set. Entries are
//!   added with `XADD … MAXLEN ~ <cap> 0-* …`, so their ids are `0-1`,
//!   `0-2`, …: the sequence part is the event's place in the hub's order,
//!   with no gap. The cap is `--history`, but at least
//!   [`STREAM_MIN_LEN`]: the stream also carries the events to every
//!   node's reader, which must find them there.
//! - `<key>:epoch`, a string: 12 hex digits drawn by the first node, the
//!   run part of every id. An event's id is `urn:sseloop:<epoch>-<seq>`
//!   (or the id its publisher gave it, kept in the entry's `id` field).
//!
//! A Redis that lost its data (flushed, or restarted without persistence)
//! has no epoch: the next node to look draws a new one, and the old ids get
//! `reset` (`other-run`), never a replay of other events under the same
//! ids. A Redis restored from an older snapshot has the epoch but a stream
//! behind what the nodes had read from it: a node that sees this draws a
//! new epoch too (and deletes the stale stream, whose ids would be given
//! out again). Both checks run in Lua ([`scripts`]).
//!
//! # In a node
//!
//! The [`RedisSequencer`] is the node's side of the hub's door: it queues
//! a loop's publish for that loop's publishing connection, a thread's for
//! loop 0's ([`writer`]), where the script adds it; it is answered with
//! its id only once Redis has stored it ([`Offer::Pending`], then
//! [`Message::Confirmed`]); with the connection down the answer is 503
//! ([`PublishError::Unavailable`], also for publishes in flight: those may
//! or may not have been stored).
//!
//! Loop 0's bus also has the node's one reader: `XREAD BLOCK` from the
//! last entry it read, each entry encoded once into a frame and handed,
//! as a [`Delivery`](crate::bus::Delivery), to every loop's inbox in
//! stream order ([`Inboxes`], as the in-process sequencer does), the
//! publishing node's own events included. What it hands out, asks next
//! and logs is decided from each reply alone ([`reader`]). So every loop
//! of every node sees one order, and each loop's history (the last
//! `--history` events, the frames that went out live) is filled from the
//! stream: at start from the entries already there, then as the reader
//! goes. A `Last-Event-ID` from any node is placed in it; an id a little
//! ahead of this node ([`CLUSTER_LEAD`]) is one another node issued a
//! moment ago, and resumes after it. When entries were trimmed before the
//! reader got to them (it was away longer than the stream holds), the
//! reader hands out a `reset` (`stale`) in their place; when the epoch
//! changed, a `reset` (`other-run`) before the new epoch's first event
//! ([`epoch`]). While some loop is far behind, the reader waits (Redis
//! keeps the entries), so no inbox grows without bound.
//!
//! Every Redis connection is a socket in its loop's poll, driven without
//! blocking ([`conn`]); a lost connection is tried again with a backoff of
//! at most a second. Replies are decoded in [`entry`]. A node does not
//! listen until it has reached Redis once and read the history there: its
//! loops run from the start, driving their connections, but each
//! registers its listener only once its bus is [ready](Bus::ready) (its
//! publishing connection has the script, and its history holds what the
//! reader found in the stream at the start). A refused login ends the
//! loops with the reason.
//!
//! Rooms: [`scripts`] (what is asked of Redis), [`epoch`] (the epochs a
//! node saw), [`writer`] (a loop's publishing connection), [`reader`]
//! (the reader's decisions), [`entry`] (replies decoded), [`conn`] (one
//! connection); here, the sequencer and each loop's bus that drives them.

pub mod conn;
pub mod entry;
pub mod epoch;
pub mod reader;
pub mod scripts;
pub mod writer;

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::event::Event as Readiness;
use mio::{Registry, Token};

use self::conn::{ConnEvent, Login, REPLY_TIMEOUT, RedisConn};
use self::epoch::Epochs;
use self::reader::{Reader, Step};
use self::scripts::Commands;
use self::writer::{Answer, Unsent, Writer};
use crate::bus::id::{Epoch, ResetReason, Run};
use crate::bus::inbox::{Inbox, Inboxes};
use crate::bus::resp::Limits;
use crate::bus::{
    Asker, BUS_TOKENS, Bus, Delivery, History, Message, Offer, Publish, PublishError, Sequencer,
    Tally,
};
use crate::config::{Cluster, Config};

/// Least length the stream is capped at, whatever `--history` says: every
/// node's reader must find each entry there, however briefly it was away.
pub const STREAM_MIN_LEN: usize = 1024;
/// How long one `XREAD` waits for entries; an idle reader checks the epoch
/// this often.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` asks for at most (fewer for large events; see
/// [`RedisSequencer::new`]).
const READ_BATCH: usize = 256;
/// Bytes one reply may hold, bounding the reader's buffer.
const MAX_REPLY: usize = 32 << 20;
/// How long the reader waits before reading on while a loop is far behind.
const BEHIND_PAUSE: Duration = Duration::from_millis(5);
/// How far ahead of what this node has seen an id of the current epoch
/// may be and still be placed (as an event on its way here): another node
/// may have issued it a moment ago. Further ahead, it is `invalid`.
pub const CLUSTER_LEAD: u64 = 1 << 16;
/// Longest a thread's publish waits for its answer.
const THREAD_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster's sequencer, and what every loop of a node shares about the
/// cluster: where Redis is, the keys, the epochs, the publishes waiting for
/// each loop's connection, and the inboxes the reader hands deliveries to.
#[derive(Debug)]
pub struct RedisSequencer {
    addr: SocketAddr,
    login: Login,
    commands: Commands,
    /// Events each loop keeps for replay.
    history: usize,
    limits: Limits,
    /// Entries one read asks for.
    batch: usize,
    inboxes: Arc<Inboxes>,
    epochs: Epochs,
    /// Publishes for each loop's connection to send, by loop index
    /// (threads' go to loop 0).
    unsent: Vec<Mutex<VecDeque<Unsent>>>,
    tally: Tally,
}

impl RedisSequencer {
    /// The hub of `cluster` for the loops behind `inboxes`; `addr` is
    /// Redis's address (resolved once, by the caller).
    pub fn new(
        cluster: &Cluster,
        addr: SocketAddr,
        config: &Config,
        inboxes: Arc<Inboxes>,
    ) -> Self {
        // An entry's fields beside its data: type, topics and names.
        let bulk = config.max_event_size.max(64 << 10) + (64 << 10);
        let batch = (MAX_REPLY / bulk).clamp(1, READ_BATCH);
        RedisSequencer {
            addr,
            login: Login {
                user: cluster.redis.user.clone(),
                password: cluster.redis.password.clone(),
                db: cluster.redis.db,
            },
            commands: Commands::new(&cluster.key, config.history.max(STREAM_MIN_LEN)),
            history: config.history,
            limits: Limits {
                bulk,
                array: READ_BATCH.max(64),
                depth: 8,
                value: batch * (bulk + 1024) + (64 << 10),
            },
            batch,
            inboxes,
            epochs: Epochs::default(),
            unsent: (0..config.loops)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            tally: Tally::default(),
        }
    }

    /// Queues a publish for loop `index`'s connection.
    fn queue(&self, index: usize, unsent: Unsent) {
        self.unsent[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(unsent);
    }

    /// Takes the publishes queued for loop `index`'s connection.
    fn take_unsent(&self, index: usize) -> VecDeque<Unsent> {
        let mut unsent = self.unsent[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        mem::take(&mut *unsent)
    }
}

impl Sequencer for RedisSequencer {
    fn publish(&self, publish: Publish, asker: Asker) -> Offer {
        if self.inboxes.is_closed() {
            return Offer::Refused(PublishError::Closed);
        }
        let event = publish.event;
        match asker {
            // The loop sends it before it polls next.
            Asker::Loop(ticket) => {
                let answer = Answer::Loop(ticket);
                self.queue(ticket.loop_index, Unsent { event, answer });
                Offer::Pending
            }
            Asker::Thread => {
                let (answer, answered) = mpsc::sync_channel(1);
                let answer = Answer::Thread(answer);
                self.queue(0, Unsent { event, answer });
                self.inboxes.get(0).wake();
                match answered.recv_timeout(THREAD_PUBLISH_TIMEOUT) {
                    Ok(Ok(id)) => Offer::Published(id),
                    Ok(Err(refused)) => Offer::Refused(refused),
                    Err(RecvTimeoutError::Timeout) => Offer::Refused(PublishError::Unavailable),
                    Err(RecvTimeoutError::Disconnected) => Offer::Refused(PublishError::Closed),
                }
            }
        }
    }

    fn inboxes(&self) -> &Inboxes {
        &self.inboxes
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// A node's sequencer and its loops' buses, by loop index.
pub type Connected = (Arc<RedisSequencer>, Vec<Box<dyn Bus>>);

/// A node of `cluster` with `config.loops` loops behind `inboxes`: resolves
/// Redis's address and makes the sequencer and every loop's bus (loop 0's
/// with the node's reader). Nothing connects before a bus is registered
/// in its loop's poll.
pub fn connect(
    cluster: &Cluster,
    config: &Config,
    inboxes: &Arc<Inboxes>,
) -> io::Result<Connected> {
    let host = (cluster.redis.host.as_str(), cluster.redis.port);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", cluster.redis.host),
            )
        })?;
    let hub = Arc::new(RedisSequencer::new(
        cluster,
        addr,
        config,
        Arc::clone(inboxes),
    ));
    let buses = (0..config.loops)
        .map(|index| Box::new(RedisBus::new(index, Arc::clone(&hub))) as Box<dyn Bus>)
        .collect();
    Ok((hub, buses))
}

/// What a command on the reader's connection was for.
enum ReadTag {
    Sync,
    Read,
}

/// The node's one reader of the stream (on loop 0): its connection, and
/// its decisions carried out.
struct ReaderConn {
    conn: RedisConn<ReadTag>,
    events: Vec<ConnEvent<ReadTag>>,
    reader: Reader,
    /// The reader's decisions, carried out as soon as made.
    steps: Vec<Step>,
    /// Waiting for a loop far behind before reading on.
    paused_until: Option<Instant>,
}

/// One loop's side of the cluster's hub.
pub struct RedisBus {
    index: usize,
    hub: Arc<RedisSequencer>,
    inbox: Arc<Inbox>,
    /// Messages taken out of the inbox in one go and not yet handed out.
    taken: VecDeque<Message>,
    history: History,
    /// How many epochs the history has seen begin.
    epochs_seen: usize,
    writer: Writer,
    reader: Option<ReaderConn>,
    /// Redis refused what this node is configured with (a login, a key
    /// holding something else).
    refused: Option<String>,
    /// The bus was ready: the loop serves.
    started: bool,
}

impl RedisBus {
    /// Loop `index`'s side of `hub`; loop 0's also reads the stream for
    /// the node.
    pub fn new(index: usize, hub: Arc<RedisSequencer>) -> RedisBus {
        let token = |n: usize| Token(BUS_TOKENS.start + n);
        let limits = Limits {
            value: 1 << 20,
            ..hub.limits
        };
        let writer = Writer::new(index, hub.addr, hub.login.clone(), token(0), limits);
        let reader = (index == 0).then(|| ReaderConn {
            conn: RedisConn::new("reader", hub.addr, hub.login.clone(), token(1), hub.limits),
            events: Vec::new(),
            reader: Reader::new(hub.addr, hub.history),
            steps: Vec::new(),
            paused_until: None,
        });
        RedisBus {
            index,
            inbox: Arc::clone(hub.inboxes.get(index)),
            taken: VecDeque::new(),
            // Named by the node's first epoch once it is known.
            history: History::new(Epoch::new(Run::NONE, 0), hub.history),
            epochs_seen: 0,
            writer,
            reader,
            refused: None,
            started: false,
            hub,
        }
    }

    /// What Redis refused since the last look, the writer's or the
    /// reader's.
    fn take_refusal(&mut self) -> Option<String> {
        self.writer.take_refusal().or_else(|| self.refused.take())
    }

    /// Writes what both connections buffered; the nearest deadline.
    fn flush_all(&mut self) -> Option<Instant> {
        self.writer.flush(&self.hub);
        if let Some(side) = &mut self.reader {
            side.conn.flush(&mut side.events);
        }
        self.drive_reader();
        let reader = self.reader.as_ref().and_then(|side| {
            [side.conn.deadline(), side.paused_until]
                .into_iter()
                .flatten()
                .min()
        });
        [self.writer.deadline(), reader].into_iter().flatten().min()
    }

    /// Sends the publishes queued for this loop's connection.
    fn send_unsent(&mut self) {
        for unsent in self.hub.take_unsent(self.index) {
            self.writer.send(unsent, &self.hub);
        }
    }

    /// Carries out what the reader decided on what its connection
    /// reported.
    fn drive_reader(&mut self) {
        let Some(side) = &mut self.reader else {
            return;
        };
        let hub = &*self.hub;
        while !side.events.is_empty() {
            for event in mem::take(&mut side.events) {
                let current = hub.epochs.current();
                match event {
                    ConnEvent::Up => side.reader.on_connected(&mut side.steps),
                    ConnEvent::Reply(ReadTag::Sync, value) => {
                        let synced = entry::synced(value);
                        side.reader.on_sync(current, synced, &mut side.steps);
                    }
                    ConnEvent::Reply(ReadTag::Read, value) => {
                        let read = entry::read(value);
                        side.reader.on_read(current, read, &mut side.steps);
                    }
                    ConnEvent::Down(_) => side.paused_until = None,
                    ConnEvent::Refused(why) => self.refused = Some(why),
                }
                for step in mem::take(&mut side.steps) {
                    side.carry_out(step, hub, self.index, &mut self.refused);
                }
            }
        }
        if let Some(through) = side.reader.started_through()
            && hub.epochs.started().is_none()
        {
            hub.epochs.started_through(through);
            // Each loop looks whether it is ready now.
            hub.inboxes.wake_all();
        }
    }

    /// Records a delivery in the loop's history, moving the history to the
    /// epoch it belongs to when that is a new one.
    fn record(&mut self, delivery: &Delivery) {
        if self.epochs_seen != self.hub.epochs.begun()
            && let Some((epoch, begun)) = self.hub.epochs.of(delivery.seq)
        {
            if epoch != self.history.epoch() {
                self.history.rebase(epoch);
            }
            self.epochs_seen = begun;
        }
        self.history.record(delivery);
    }
}

impl ReaderConn {
    /// Does what the reader decided.
    fn carry_out(
        &mut self,
        step: Step,
        hub: &RedisSequencer,
        index: usize,
        refused: &mut Option<String>,
    ) {
        match step {
            Step::Begin { epoch, known } => hub.epochs.begin(epoch, known),
            // The loop takes its own messages right after: not woken.
            Step::HandOut(delivery) => hub.inboxes.hand_out(&delivery, Some(index)),
            Step::Stored { run, seq } => hub.epochs.note_stored(run, seq),
            Step::Log(level, text) => log::log!(level, "{text}"),
            Step::Sync => {
                let known = hub.epochs.current().map(|c| (c.epoch.run(), c.known));
                let _ = hub.commands.sync(Run::draw(), known, |args| {
                    self.conn
                        .send(args, ReadTag::Sync, REPLY_TIMEOUT, Instant::now())
                });
            }
            Step::Read { .. } if hub.inboxes.any_full() => {
                self.paused_until = Some(Instant::now() + BEHIND_PAUSE);
            }
            Step::Read { after } => self.read(after, hub),
            Step::Reset(why) => self.conn.reset(&why, &mut self.events),
            Step::Refuse(why) => *refused = Some(why),
        }
    }

    fn read(&mut self, after: u64, hub: &RedisSequencer) {
        let _ = hub.commands.read(after, hub.batch, READ_BLOCK, |args| {
            self.conn.send(
                args,
                ReadTag::Read,
                READ_BLOCK + REPLY_TIMEOUT,
                Instant::now(),
            )
        });
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
                format!("Redis at {}: {why}", self.hub.addr),
            ));
        }
        let Some(through) = self.hub.epochs.started() else {
            return Ok(false);
        };
        if self.epochs_seen == 0
            && let Some((first, begun)) = self.hub.epochs.of(0)
        {
            // Nothing delivered yet: the history is named by the first
            // epoch (a later one comes with its first delivery).
            self.history.rebase(first);
            self.epochs_seen = begun;
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
        let newest = self.history.newest();
        self.hub
            .epochs
            .current()
            .map_or(newest, |c| c.issued().max(newest))
    }

    fn register(&mut self, registry: &Registry) -> io::Result<()> {
        self.writer.register(registry, &self.hub)?;
        if let Some(side) = &mut self.reader {
            side.conn.register(registry, &mut side.events)?;
        }
        self.drive_reader();
        Ok(())
    }

    fn on_ready(&mut self, token: Token, readiness: &Readiness) {
        if token.0 == BUS_TOKENS.start {
            self.writer.on_ready(readiness, &self.hub);
        } else if let Some(side) = &mut self.reader {
            side.conn.on_ready(readiness, &mut side.events);
            self.drive_reader();
        }
    }

    fn before_poll(&mut self) -> Option<Instant> {
        // Until the loop serves, a refusal is `ready`'s to report, and
        // threads' publishes wait.
        if self.started {
            if let Some(why) = self.take_refusal() {
                log::error!("Redis at {}: {why}", self.hub.addr);
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
        self.writer.on_deadline(now, &self.hub);
        let Some(side) = &mut self.reader else {
            return;
        };
        side.conn.on_deadline(now, &mut side.events);
        let resume = side.paused_until.is_some_and(|at| at <= now);
        if resume {
            side.paused_until = None;
            let after = side.reader.position();
            side.carry_out(
                Step::Read { after },
                &self.hub,
                self.index,
                &mut self.refused,
            );
        }
        self.drive_reader();
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
            .field("reader", &self.reader.as_ref().map(|r| &r.conn))
            .finish_non_exhaustive()
    }
}
