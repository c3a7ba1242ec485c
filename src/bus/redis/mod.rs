//! The cluster's hub, on Redis Streams: nodes (processes, each with its
//! loops) that share one Redis and one key share one order of events, one
//! history and one set of ids.
//!
//! # In Redis
//!
//! - `<key>:events`, a stream: each event is one entry with the fields
//!   `epoch` (see below), `data`, `event` (its type, when it has one) and
//!   `topics` (its topics, one per line, when it has any). Entries are added with `XADD … MAXLEN
//!   ~ <cap> 0-* …`, so their ids are `0-1`, `0-2`, …: the sequence part is
//!   the event's place in the hub's order, with no gap. The cap is
//!   `--history`, but at least [`STREAM_MIN_LEN`]: the stream also carries
//!   the events to every node's reader, which must find them there.
//! - `<key>:epoch`, a string: 12 hex digits drawn by the first node, the
//!   run part of every id. An event's id is `<epoch>-<seq>`.
//!
//! A Redis that lost its data (flushed, or restarted without persistence)
//! has no epoch: the next node to look draws a new one, and the old ids get
//! `reset` (`other-run`), never a replay of other events under the same
//! ids. A Redis restored from an older snapshot has the epoch but a stream
//! behind what the nodes had read from it: a node that sees this draws a
//! new epoch too (and deletes the stale stream, whose ids would be given
//! out again). Both checks run in Lua scripts, so that they and what
//! follows them are one step for Redis: [`SYNC_SCRIPT`], which a node's
//! reader runs on every (re)connect and every idle second, and
//! [`PUBLISH_SCRIPT`], which adds an event only if the epoch and the
//! stream are still those the node knows.
//!
//! # In a node
//!
//! Every loop's bus has its own connection for publishing ([`RedisBus`]):
//! the [`RedisSequencer`] queues a loop's publish for its loop's
//! connection (a thread's for loop 0's), where it is added by the script
//! and answered with its id only once Redis has replied
//! ([`Offer::Pending`], then [`Message::Confirmed`]); with the connection
//! down the answer is 503 ([`PublishError::Unavailable`], also for
//! publishes in flight: those may or may not have been stored).
//!
//! Loop 0's bus also has the node's one reader: `XREAD BLOCK` from the last
//! entry it read, each entry encoded once into a frame and handed, as a
//! [`Delivery`], to every loop's inbox in stream order ([`Inboxes`], as the
//! in-process sequencer does), the publishing node's own events included.
//! So every loop of every node sees one order, and each loop's history
//! (the last `--history` events, the frames that went out live) is filled
//! from the stream: at start from the entries already there, then as the
//! reader goes. A `Last-Event-ID` from any node is placed in it; an id a
//! little ahead of this node ([`CLUSTER_LEAD`]) is one another node issued
//! a moment ago, and resumes after it. When entries were trimmed before
//! the reader got to them (it was away longer than the stream holds), the
//! reader hands out a `reset` (`stale`) in their place; when the epoch
//! changed, a `reset` (`other-run`) before the new epoch's first event.
//! While some loop is far behind, the reader waits (Redis keeps the
//! entries), so no inbox grows without bound.
//!
//! Inside a node the order's sequence numbers run on across epochs: an
//! epoch's events are numbered from its base (one past the last number of
//! the epoch before), so a subscriber's place in the order stays valid
//! when the epoch changes.
//!
//! Every Redis connection is a socket in its loop's poll, driven without
//! blocking ([`conn`]); a lost connection is tried again with a backoff of
//! at most a second. A node does not listen until it has reached Redis
//! once and read the history there ([`RedisBus::start`]).

pub mod conn;

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event as Readiness;
use mio::{Events, Poll, Registry, Token};

use self::conn::{ConnEvent, Login, REPLY_TIMEOUT, RedisConn};
use crate::bus::id::{Epoch, EventId, ResetReason, Run};
use crate::bus::inbox::{Inbox, Inboxes};
use crate::bus::resp::{Limits, Value};
use crate::bus::{
    Asker, BUS_TOKENS, Bus, Delivery, History, Message, Offer, Publish, PublishError, Sequencer,
    Tally, Ticket,
};
use crate::config::{Cluster, Config};
use crate::sse::{Event, Frame, valid_event_type, valid_topic};

/// Least length the stream is capped at, whatever `--history` says: every
/// node's reader must find each entry there, however briefly it was away.
pub const STREAM_MIN_LEN: usize = 1024;
/// How long one `XREAD` waits for entries; an idle reader checks the epoch
/// this often.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` asks for at most (fewer for large events; see
/// [`ClusterHub::new`]).
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

/// Run on each (re)connect of a node's reader and whenever it has been idle
/// for [`READ_BLOCK`]: the epoch and the stream's last sequence number.
/// A new epoch begins (and the stream, stale, is deleted) when there is
/// none, or when the stream is behind what the node read from it.
/// KEYS: the epoch, the stream; ARGV: a fresh epoch, the epoch the node
/// knows (empty at its start), the newest sequence number it knows there.
pub const SYNC_SCRIPT: &str = r#"
local epoch = redis.call('GET', KEYS[1])
local last = 0
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  last = tonumber(string.match(top[1][1], '^0%-(%d+)$'))
  if not last then
    return redis.error_reply('SSELOOP-FOREIGN ' .. KEYS[2] .. ' holds entries sseloop did not add')
  end
end
if (not epoch) or (epoch == ARGV[2] and last < tonumber(ARGV[3])) then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], epoch)
  last = 0
end
return {epoch, last}
"#;

/// Adds one event, only if the epoch is still the one the node publishes
/// in and the stream holds at least what the node knows was stored; the
/// entry names its epoch (a reader still on an older one, whose `XREAD`
/// waits on the key that a new epoch made anew, must not take the new
/// epoch's entries for its own). The reply is the entry's id. KEYS: the epoch, the stream; ARGV: the epoch,
/// the newest sequence number the node knows, the stream's cap, then the
/// entry's fields and values.
pub const PUBLISH_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('SSELOOP-EPOCH the epoch has changed')
end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = 0
if top[1] then last = tonumber(string.match(top[1][1], '^0%-(%d+)$')) or 0 end
if last < tonumber(ARGV[2]) then
  return redis.error_reply('SSELOOP-BEHIND the stream lost events')
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-*', 'epoch', ARGV[1], unpack(ARGV, 4))
"#;

#[derive(Debug, Default)]
struct EpochState {
    /// The epochs as this node saw them begin, oldest first; the last is
    /// the current epoch.
    epochs: Vec<Epoch>,
    /// The newest sequence number of the current epoch known to be stored
    /// (read from the stream, or confirmed by a publish).
    known: u64,
}

/// Where the answer to a publish goes.
#[derive(Debug)]
enum Answer {
    /// To a loop's connection, as a message to the loop.
    Loop(Ticket),
    /// To a thread waiting for it.
    Thread(SyncSender<Result<EventId, PublishError>>),
}

impl Answer {
    /// Gives the answer: a loop's goes to `messages`, for the loop to take.
    fn send(self, result: Result<EventId, PublishError>, messages: &mut VecDeque<Message>) {
        match self {
            Answer::Loop(ticket) => messages.push_back(Message::Confirmed(ticket, result)),
            // A thread that gave up waiting has gone: nobody to tell.
            Answer::Thread(waiting) => drop(waiting.send(result)),
        }
    }
}

/// A publish waiting for its loop's connection to send it.
#[derive(Debug)]
struct Unsent {
    event: Event,
    answer: Answer,
}

/// The cluster's sequencer, and what every loop of a node shares about the
/// cluster: where Redis is, the keys, the epochs, the publishes waiting for
/// each loop's connection, and the inboxes the reader hands deliveries to.
#[derive(Debug)]
pub struct RedisSequencer {
    addr: SocketAddr,
    login: Login,
    epoch_key: Vec<u8>,
    stream_key: Vec<u8>,
    /// Events each loop keeps for replay.
    history: usize,
    /// The stream's cap, in decimal.
    cap: String,
    limits: Limits,
    batch: usize,
    inboxes: Arc<Inboxes>,
    state: Mutex<EpochState>,
    /// The base of the current epoch, read without the lock: a loop's
    /// history moves to a new epoch at its first delivery from it.
    latest_base: AtomicU64,
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
            epoch_key: format!("{}:epoch", cluster.key).into_bytes(),
            stream_key: format!("{}:events", cluster.key).into_bytes(),
            history: config.history,
            cap: config.history.max(STREAM_MIN_LEN).to_string(),
            limits: Limits {
                bulk,
                array: READ_BATCH.max(64),
                depth: 8,
                value: batch * (bulk + 1024) + (64 << 10),
            },
            batch,
            inboxes,
            state: Mutex::new(EpochState::default()),
            latest_base: AtomicU64::new(0),
            unsent: (0..config.loops)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            tally: Tally::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, EpochState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current epoch and the newest sequence number known stored in
    /// it; `None` before the first sync.
    fn current(&self) -> Option<(Epoch, u64)> {
        let state = self.state();
        Some((*state.epochs.last()?, state.known))
    }

    /// Entry `seq` of epoch `run` is stored.
    fn note_stored(&self, run: Run, seq: u64) {
        let mut state = self.state();
        if state.epochs.last().is_some_and(|e| e.run() == run) {
            state.known = state.known.max(seq);
        }
    }

    fn begin_epoch(&self, epoch: Epoch, known: u64) {
        let mut state = self.state();
        debug_assert!(
            state.epochs.last().is_none_or(|e| e.base() < epoch.base()),
            "epochs begin in order"
        );
        state.epochs.push(epoch);
        state.known = known;
        self.latest_base.store(epoch.base(), Ordering::Release);
    }

    /// The epoch a delivery numbered `seq` belongs to.
    fn epoch_of(&self, seq: u64) -> Option<Epoch> {
        let state = self.state();
        state.epochs.iter().rev().find(|e| e.base() <= seq).copied()
    }

    /// Queues a publish for loop `index`'s connection.
    fn queue(&self, index: usize, unsent: Unsent) {
        self.unsent[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(unsent);
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

/// A node's hub and its loops' buses, by loop index.
pub type Connected = (Arc<RedisSequencer>, Vec<Box<dyn Bus>>);

/// Connects a node to its cluster before its loops run: resolves Redis's
/// address, then starts loop 0's bus (which syncs with Redis and reads the
/// history) and every other loop's, each on its loop's poll. Returns the
/// hub (for threads' publishes) and the buses, by loop index.
pub fn connect(
    cluster: &Cluster,
    config: &Config,
    inboxes: &Arc<Inboxes>,
    polls: &mut [Poll],
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
    let mut buses: Vec<Box<dyn Bus>> = Vec::with_capacity(polls.len());
    for (index, poll) in polls.iter_mut().enumerate() {
        // Created once loop 0 knows the epoch, which each history takes.
        let mut bus = RedisBus::new(index, Arc::clone(&hub));
        bus.start(poll)?;
        buses.push(Box::new(bus));
    }
    Ok((hub, buses))
}

/// What a publishing connection's command was for.
enum WriteTag {
    /// Loading [`PUBLISH_SCRIPT`].
    Script,
    /// A publish, in epoch `run`.
    Publish { answer: Answer, run: Run },
}

/// What the reader's command was for.
enum ReadTag {
    Sync,
    Read,
}

/// A node's one reader of the stream (on loop 0).
struct Reader {
    conn: RedisConn<ReadTag>,
    /// The last sequence number read, in the current epoch.
    position: Option<u64>,
    /// The first read after the node's start: entries missing before it
    /// are not news to anyone.
    quiet_gap: bool,
    /// The node has read what the stream held when it started (the
    /// sequence number the first sync found, `target`).
    caught_up: bool,
    target: u64,
    /// Waiting for a loop far behind before reading on.
    paused_until: Option<Instant>,
    events: Vec<ConnEvent<ReadTag>>,
}

/// One loop's side of the cluster's hub.
pub struct RedisBus {
    index: usize,
    hub: Arc<RedisSequencer>,
    inbox: Arc<Inbox>,
    /// Messages to hand to the loop: the inbox's, then this bus's answers.
    taken: VecDeque<Message>,
    history: History,
    writer: RedisConn<WriteTag>,
    writer_events: Vec<ConnEvent<WriteTag>>,
    /// The SHA of [`PUBLISH_SCRIPT`] on the writer's connection, once loaded.
    script: Option<Vec<u8>>,
    reader: Option<Reader>,
    /// The loop runs (it drains its inbox right after the reader hands
    /// out, so the reader need not wake it).
    running: bool,
    /// Redis refused what this node is configured with (a login, a key
    /// holding something else).
    refused: Option<String>,
}

impl RedisBus {
    /// Loop `index`'s side of `hub`; loop 0's also reads the stream for
    /// the node.
    pub fn new(index: usize, hub: Arc<RedisSequencer>) -> RedisBus {
        let token = |n: usize| Token(BUS_TOKENS.start + n);
        let writer = RedisConn::new(
            &format!("loop{index}"),
            hub.addr,
            hub.login.clone(),
            token(0),
            Limits {
                value: 1 << 20,
                ..hub.limits
            },
        );
        let reader = (index == 0).then(|| Reader {
            conn: RedisConn::new("reader", hub.addr, hub.login.clone(), token(1), hub.limits),
            position: None,
            quiet_gap: true,
            caught_up: false,
            target: 0,
            paused_until: None,
            events: Vec::new(),
        });
        let epoch = hub
            .current()
            .map_or(Epoch::new(Run::NONE, 0), |(epoch, _)| epoch);
        RedisBus {
            index,
            inbox: Arc::clone(hub.inboxes.get(index)),
            taken: VecDeque::new(),
            history: History::new(epoch, hub.history),
            writer,
            writer_events: Vec::new(),
            script: None,
            reader,
            running: false,
            refused: None,
            hub,
        }
    }

    /// Connects this loop's bus before its loop runs, driving `poll` (the
    /// loop's, with nothing else of the loop's registered that needs
    /// serving): the publishing connection has its script, and on loop 0
    /// the reader has learned the epoch and read the history. Waits as
    /// long as Redis cannot be reached (the connections log it); fails
    /// when Redis refuses the login or the key.
    pub fn start(&mut self, poll: &mut Poll) -> io::Result<()> {
        self.register(poll.registry())?;
        let mut events = Events::with_capacity(16);
        loop {
            if let Some(why) = self.refused.take() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("Redis at {}: {why}", self.hub.addr),
                ));
            }
            if self.ready() {
                return Ok(());
            }
            let timeout = self
                .flush_all()
                .map(|at| at.saturating_duration_since(Instant::now()));
            crate::net::poll(poll, &mut events, timeout)?;
            for event in events.iter() {
                if crate::bus::is_bus_token(event.token()) {
                    self.on_ready(event.token(), event);
                }
            }
            self.on_deadline(Instant::now());
        }
    }

    /// Connected, with the script loaded; on loop 0, synced and caught up.
    fn ready(&self) -> bool {
        self.script.is_some()
            && self
                .reader
                .as_ref()
                .is_none_or(|r| r.position.is_some() && r.caught_up)
    }

    /// Writes what both connections buffered; the nearest deadline.
    fn flush_all(&mut self) -> Option<Instant> {
        self.writer.flush(&mut self.writer_events);
        self.drive_writer();
        if let Some(reader) = &mut self.reader {
            reader.conn.flush(&mut reader.events);
        }
        self.drive_reader();
        let reader = self.reader.as_ref().and_then(|r| {
            [r.conn.deadline(), r.paused_until]
                .into_iter()
                .flatten()
                .min()
        });
        [self.writer.deadline(), reader].into_iter().flatten().min()
    }

    // The publishing connection

    /// Sends `event` to be stored; gives the tag back when it cannot be now.
    fn offer(&mut self, event: &Event, tag: impl FnOnce(Run) -> WriteTag) -> Result<(), WriteTag> {
        let (Some(script), Some((epoch, known))) = (&self.script, self.hub.current()) else {
            return Err(tag(Run::NONE));
        };
        let run = epoch.run();
        let known = known.to_string();
        let topics = event.topics().join("\n");
        let hub = &*self.hub;
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            script,
            b"2",
            &hub.epoch_key,
            &hub.stream_key,
            run.as_str().as_bytes(),
            known.as_bytes(),
            hub.cap.as_bytes(),
            b"data",
            event.data().as_bytes(),
        ];
        if let Some(t) = event.event_type() {
            args.extend([&b"event"[..], t.as_bytes()]);
        }
        if !topics.is_empty() {
            args.extend([&b"topics"[..], topics.as_bytes()]);
        }
        let tag = tag(run);
        self.writer.send(&args, tag, REPLY_TIMEOUT, Instant::now())
    }

    /// Sends the publishes queued for this loop's connection; those it
    /// cannot send now are refused.
    fn send_unsent(&mut self) {
        let unsent = mem::take(
            &mut *self.hub.unsent[self.index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for Unsent { event, answer } in unsent {
            if let Err(WriteTag::Publish { answer, .. }) =
                self.offer(&event, |run| WriteTag::Publish { answer, run })
            {
                answer.send(Err(PublishError::Unavailable), &mut self.taken);
            }
        }
    }

    fn drive_writer(&mut self) {
        while !self.writer_events.is_empty() {
            for event in mem::take(&mut self.writer_events) {
                match event {
                    ConnEvent::Up => {
                        let script = PUBLISH_SCRIPT.as_bytes();
                        let args: [&[u8]; 3] = [b"SCRIPT", b"LOAD", script];
                        let _ = self.writer.send(
                            &args,
                            WriteTag::Script,
                            REPLY_TIMEOUT,
                            Instant::now(),
                        );
                    }
                    ConnEvent::Reply(WriteTag::Script, value) => match value {
                        Value::Bulk(sha) => self.script = Some(sha),
                        other => {
                            let why = format!("cannot load the publish script: {other:?}");
                            if !other.error().is_some_and(conn::is_transient) {
                                self.refused = Some(why.clone());
                            }
                            self.writer.reset(&why, &mut self.writer_events);
                        }
                    },
                    ConnEvent::Reply(WriteTag::Publish { answer, run }, value) => {
                        let id = self.stored(run, &value);
                        answer.send(id.ok_or(PublishError::Unavailable), &mut self.taken);
                    }
                    ConnEvent::Down(lost) => {
                        self.script = None;
                        for tag in lost {
                            match tag {
                                WriteTag::Script => {}
                                WriteTag::Publish { answer, .. } => {
                                    answer.send(Err(PublishError::Unavailable), &mut self.taken);
                                }
                            }
                        }
                    }
                    ConnEvent::Refused(why) => self.refused = Some(why),
                }
            }
        }
    }

    /// The id of a publish Redis answered, if it was stored.
    fn stored(&mut self, run: Run, reply: &Value) -> Option<EventId> {
        match reply {
            Value::Bulk(id) => match stream_seq(id) {
                Some(seq) => {
                    self.hub.note_stored(run, seq);
                    let id = EventId::new(run, seq);
                    self.hub.tally.count(&id);
                    Some(id)
                }
                None => {
                    warn!("Redis stored an event as {:?}", String::from_utf8_lossy(id));
                    None
                }
            },
            Value::Error(e) => {
                let text = String::from_utf8_lossy(e);
                if e.starts_with(b"NOSCRIPT") {
                    // Flushed from Redis: the next connection loads it again.
                    self.writer
                        .reset("the publish script is gone", &mut self.writer_events);
                } else if e.starts_with(b"SSELOOP-") {
                    debug!("publish refused by Redis: {text}");
                } else {
                    warn!("publish refused by Redis: {text}");
                }
                None
            }
            other => {
                warn!("Redis answered a publish with {other:?}");
                None
            }
        }
    }

    // The reader (loop 0)

    fn drive_reader(&mut self) {
        loop {
            let Some(reader) = &mut self.reader else {
                return;
            };
            if reader.events.is_empty() {
                return;
            }
            for event in mem::take(&mut reader.events) {
                match event {
                    ConnEvent::Up => self.send_sync(),
                    ConnEvent::Reply(ReadTag::Sync, value) => self.on_sync(value),
                    ConnEvent::Reply(ReadTag::Read, value) => self.on_read(value),
                    ConnEvent::Down(_) => {
                        if let Some(reader) = &mut self.reader {
                            reader.paused_until = None;
                        }
                    }
                    ConnEvent::Refused(why) => self.refused = Some(why),
                }
            }
        }
    }

    fn send_sync(&mut self) {
        let (run, known) = match self.hub.current() {
            Some((epoch, known)) => (epoch.run().as_str().to_owned(), known),
            None => (String::new(), 0),
        };
        let fresh = Run::draw();
        let known = known.to_string();
        let hub = &*self.hub;
        let args: [&[u8]; 8] = [
            b"EVAL",
            SYNC_SCRIPT.as_bytes(),
            b"2",
            &hub.epoch_key,
            &hub.stream_key,
            fresh.as_str().as_bytes(),
            run.as_bytes(),
            known.as_bytes(),
        ];
        if let Some(reader) = &mut self.reader {
            let _ = reader
                .conn
                .send(&args, ReadTag::Sync, REPLY_TIMEOUT, Instant::now());
        }
    }

    fn on_sync(&mut self, value: Value) {
        let synced = match &value {
            Value::Array(items) => match &items[..] {
                [Value::Bulk(run), Value::Integer(last)] => {
                    Run::parse(run).zip(u64::try_from(*last).ok())
                }
                _ => None,
            },
            _ => None,
        };
        let Some((run, last)) = synced else {
            let why = match value.error() {
                Some(e) => String::from_utf8_lossy(e).into_owned(),
                None => format!("unexpected answer to the epoch check: {value:?}"),
            };
            let transient = value.error().is_some_and(conn::is_transient);
            if !transient && self.reader.as_ref().is_some_and(|r| r.position.is_none()) {
                // At start: the configuration is wrong, say so and stop.
                self.refused = Some(why);
            } else if let Some(reader) = &mut self.reader {
                warn!("Redis reader: {why}");
                reader.conn.reset(&why, &mut reader.events);
            }
            return;
        };
        let Some(reader) = &mut self.reader else {
            return;
        };
        match self.hub.current() {
            None => {
                // The node's start: the history is the stream's last entries.
                info!(
                    "cluster on Redis at {}: epoch {run}, {last} events so far",
                    self.hub.addr
                );
                let epoch = Epoch::new(run, 0);
                self.hub.begin_epoch(epoch, last);
                self.history = History::new(epoch, self.hub.history);
                let position = last.saturating_sub(self.hub.history as u64);
                reader.position = Some(position);
                reader.target = last;
                reader.caught_up = position >= last;
            }
            Some((current, _)) if current.run() == run => {
                // Reconnected, or idle: read on from where the reader was.
                self.hub.note_stored(run, last);
            }
            Some((current, known)) => {
                let old = current.run();
                warn!(
                    "Redis lost this cluster's events (its epoch is now {run}, was {old}): \
                     ids of {old} get reset"
                );
                let epoch = Epoch::new(run, current.base() + known + 1);
                self.hub.begin_epoch(epoch, last);
                let reset = Delivery {
                    seq: epoch.base(),
                    frame: Arc::new(epoch.id(epoch.base()).reset(ResetReason::OtherRun)),
                    topics: Arc::from([]),
                };
                let from = self.running.then_some(self.index);
                self.hub.inboxes.hand_out(&reset, from);
                reader.position = Some(0);
                reader.quiet_gap = false;
            }
        }
        self.send_read();
    }

    fn send_read(&mut self) {
        let Some(reader) = &mut self.reader else {
            return;
        };
        if self.hub.inboxes.any_full() {
            reader.paused_until = Some(Instant::now() + BEHIND_PAUSE);
            return;
        }
        let from = format!("0-{}", reader.position.unwrap_or(0));
        let batch = self.hub.batch.to_string();
        let block = READ_BLOCK.as_millis().to_string();
        let args: [&[u8]; 8] = [
            b"XREAD",
            b"COUNT",
            batch.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            &self.hub.stream_key,
            from.as_bytes(),
        ];
        let _ = reader.conn.send(
            &args,
            ReadTag::Read,
            READ_BLOCK + REPLY_TIMEOUT,
            Instant::now(),
        );
    }

    fn on_read(&mut self, value: Value) {
        let entries = match value {
            // Nothing for a whole block: check the epoch, then read on.
            Value::Nil => {
                if let Some(reader) = &mut self.reader {
                    // Nothing there: what the start wanted was trimmed.
                    reader.caught_up = true;
                    reader.quiet_gap = false;
                }
                return self.send_sync();
            }
            Value::Array(streams) => streams
                .into_iter()
                .next()
                .and_then(Value::into_array)
                .and_then(|stream| stream.into_iter().nth(1))
                .and_then(Value::into_array)
                .unwrap_or_default(),
            Value::Error(e) => {
                let why = format!("read: {}", String::from_utf8_lossy(&e));
                if let Some(reader) = &mut self.reader {
                    reader.conn.reset(&why, &mut reader.events);
                }
                return;
            }
            other => {
                let why = format!("unexpected answer to a read: {other:?}");
                if let Some(reader) = &mut self.reader {
                    reader.conn.reset(&why, &mut reader.events);
                }
                return;
            }
        };
        let Some((epoch, _)) = self.hub.current() else {
            return;
        };
        for entry in entries {
            if self.hand_out(entry, epoch).is_err() {
                return self.send_sync();
            }
        }
        if let Some(reader) = &mut self.reader {
            reader.quiet_gap = false;
            reader.caught_up |= reader.position.is_some_and(|p| p >= reader.target);
        }
        self.send_read();
    }

    /// Hands one stream entry to every loop, after a `reset` (`stale`) when
    /// entries before it were trimmed away unread; `Err` for an entry of
    /// another epoch, which is not handed out.
    fn hand_out(&mut self, entry: Value, epoch: Epoch) -> Result<(), ()> {
        let Some(reader) = &mut self.reader else {
            return Ok(());
        };
        let Some((seq, fields)) = entry
            .into_array()
            .and_then(|e| <[Value; 2]>::try_from(e).ok())
            .and_then(|[id, fields]| Some((stream_seq(id.bytes()?)?, fields.into_array()?)))
        else {
            warn!("Redis reader: an entry that is not an event; skipped");
            return Ok(());
        };
        let (entry_epoch, data, event_type, topics) = event_fields(fields);
        if entry_epoch.and_then(|e| Run::parse(e.as_bytes())) != Some(epoch.run()) {
            // Another epoch's entry: the epoch changed under this reader.
            // The sync finds out which, and where to read from.
            return Err(());
        }
        let from = self.running.then_some(self.index);
        if let Some(position) = reader.position {
            if seq <= position {
                return Ok(()); // read already
            }
            if seq > position + 1 && !reader.quiet_gap {
                warn!(
                    "Redis reader: events {}..{} left the stream before this node read them",
                    position + 1,
                    seq - 1
                );
                let at = epoch.base() + seq - 1;
                let stale = Delivery {
                    seq: at,
                    frame: Arc::new(epoch.id(at).reset(ResetReason::Stale)),
                    topics: Arc::from([]),
                };
                self.hub.inboxes.hand_out(&stale, from);
            }
        }
        reader.position = Some(seq);
        let at = epoch.base() + seq;
        let delivery = Delivery {
            seq: at,
            frame: Arc::new(Frame::event(
                &epoch.id(at).text(),
                event_type.as_deref(),
                &data,
            )),
            topics,
        };
        self.hub.inboxes.hand_out(&delivery, from);
        self.hub.note_stored(epoch.run(), seq);
        Ok(())
    }

    /// Records a delivery in the loop's history, moving the history to a
    /// new epoch at its first delivery.
    fn record(&mut self, delivery: &Delivery) {
        let latest = self.hub.latest_base.load(Ordering::Acquire);
        let base = self.history.epoch().base();
        if latest > base
            && delivery.seq >= latest
            && let Some(epoch) = self.hub.epoch_of(delivery.seq)
            && epoch.base() > base
        {
            self.history.rebase(epoch);
        }
        self.history.record(delivery);
    }
}

impl Bus for RedisBus {
    fn begin_drain(&mut self) {
        self.inbox.begin_drain();
    }

    fn next(&mut self) -> Option<Message> {
        if self.taken.is_empty() {
            self.inbox.take_all(&mut self.taken);
        }
        let message = self.taken.pop_front()?;
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
        match self.hub.current() {
            Some((epoch, known)) => (epoch.base() + known).max(self.history.newest()),
            None => self.history.newest(),
        }
    }

    fn register(&mut self, registry: &Registry) -> io::Result<()> {
        self.writer.register(registry, &mut self.writer_events)?;
        if let Some(reader) = &mut self.reader {
            reader.conn.register(registry, &mut reader.events)?;
        }
        self.drive_writer();
        self.drive_reader();
        Ok(())
    }

    fn on_ready(&mut self, token: Token, readiness: &Readiness) {
        if token.0 == BUS_TOKENS.start {
            self.writer.on_ready(readiness, &mut self.writer_events);
            self.drive_writer();
        } else if let Some(reader) = &mut self.reader {
            reader.conn.on_ready(readiness, &mut reader.events);
            self.drive_reader();
        }
    }

    fn before_poll(&mut self) -> Option<Instant> {
        self.running = true;
        if let Some(why) = self.refused.take() {
            log::error!("Redis at {}: {why}", self.hub.addr);
        }
        self.send_unsent();
        let deadline = self.flush_all();
        // Answers given meanwhile (a publish refused at once, a connection
        // lost as it was written) are taken now, not at the next wake-up.
        if self.taken.is_empty() {
            deadline
        } else {
            Some(Instant::now())
        }
    }

    fn on_deadline(&mut self, now: Instant) {
        self.writer.on_deadline(now, &mut self.writer_events);
        self.drive_writer();
        let mut read = false;
        if let Some(reader) = &mut self.reader {
            reader.conn.on_deadline(now, &mut reader.events);
            if reader.paused_until.is_some_and(|at| at <= now) {
                reader.paused_until = None;
                read = true;
            }
        }
        self.drive_reader();
        if read {
            self.send_read();
        }
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

/// The sequence part of a stream id `0-<seq>`.
fn stream_seq(id: &[u8]) -> Option<u64> {
    let digits = id.strip_prefix(b"0-")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What an entry holds: its epoch, its data, type and topics. What
/// another writer may have put there is taken as far as it is valid: a
/// type or topic an HTTP publish could not have named is left out.
type Fields = (Option<String>, String, Option<String>, Arc<[Box<str>]>);

fn event_fields(fields: Vec<Value>) -> Fields {
    let mut epoch = None;
    let mut data = String::new();
    let mut event_type = None;
    let mut topics: Vec<Box<str>> = Vec::new();
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Some(name), Some(value)) = (name.bytes(), value.bytes()) else {
            continue;
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"epoch" => epoch = Some(value.into_owned()),
            b"data" => data = value.into_owned(),
            b"event" if valid_event_type(&value) && !value.is_empty() => {
                event_type = Some(value.into_owned());
            }
            b"topics" => {
                topics = value
                    .split('\n')
                    .filter(|t| valid_topic(t))
                    .map(Box::from)
                    .collect();
            }
            _ => {}
        }
    }
    (epoch, data, event_type, topics.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_busy_is_tried_again_a_wrong_setup_is_not() {
        for busy in [
            &b"LOADING Redis is loading the dataset in memory"[..],
            b"BUSY Redis is busy running a script",
            b"MASTERDOWN Link with MASTER is down",
        ] {
            assert!(conn::is_transient(busy));
        }
        for wrong in [
            &b"WRONGPASS invalid username-password pair"[..],
            b"NOAUTH Authentication required.",
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
            b"SSELOOP-FOREIGN k holds entries sseloop did not add",
        ] {
            assert!(!conn::is_transient(wrong));
        }
    }

    #[test]
    fn stream_ids_carry_the_sequence() {
        assert_eq!(stream_seq(b"0-1"), Some(1));
        assert_eq!(stream_seq(b"0-18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b"1-1"[..],
            b"0-",
            b"0-x",
            b"0-1-2",
            b"",
            b"0-18446744073709551616",
        ] {
            assert_eq!(stream_seq(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn entry_fields_are_taken_as_far_as_they_are_valid() {
        let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let (epoch, data, event_type, topics) = event_fields(vec![
            bulk("epoch"),
            bulk("0123456789ab"),
            bulk("data"),
            bulk("a\nb"),
            bulk("event"),
            bulk("progress"),
            bulk("topics"),
            bulk("job\n\nother"),
        ]);
        assert_eq!(epoch.as_deref(), Some("0123456789ab"));
        assert_eq!(data, "a\nb");
        assert_eq!(event_type.as_deref(), Some("progress"));
        assert_eq!(&*topics, &[Box::from("job"), Box::from("other")]);
        let (epoch, data, event_type, topics) = event_fields(vec![
            bulk("event"),
            bulk("bad\rtype"),
            Value::Integer(3),
            bulk("ignored"),
            bulk("data"),
        ]);
        assert_eq!((epoch, data.as_str(), event_type), (None, "", None));
        assert!(topics.is_empty());
    }
}
