//! The poll loop. It owns the `Poll`, the listener, the connections (a slab
//! whose keys are the mio tokens), the loop's topic index, its side of the
//! bus and the deadlines, and it alone does I/O.
//!
//! One pass: wait for readiness or the nearest deadline; accept, read and
//! take the bus's messages as the events say, each with a budget; write
//! every connection that got bytes, answers first and streams in slices;
//! fire due deadlines. A write the kernel refuses leaves the rest queued
//! until writable readiness. What a request gets is `app`'s to say and
//! `serve` carries it out; how a connection moves between its states is
//! `conn`'s.
//!
//! A fan-out wider than `FLUSH_SLICE` streams is written in slices, with a
//! poll between them: the answers owed to requesters go out after the first
//! slice (a publisher does not wait for a thousand writes), and events
//! published meanwhile join the queues of the streams not yet written, so
//! under load each write carries every event pending for its stream.

mod serve;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event as Readiness;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::auth::Access;
use crate::bus::{self, Bus, Message};
use crate::config::Config;
use crate::conn::{AfterFlush, Conn, Expired, Lane, Next};
use crate::http::{Policy, Reject, Status};
use crate::metrics::Counters;
use crate::net::{self, Accepted, ReadOutcome};
use crate::process::{Admission, Shared};
use crate::timers::{HeartbeatGrid, Timers};
use crate::topics::Topics;

/// The listener's token.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
/// The bus's waker's token.
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Bytes read per read call (one buffer shared by every connection).
const READ_CHUNK: usize = 64 << 10;
/// Reads per readiness event before other connections get their turn.
const READS_PER_TURN: usize = 16;
/// What a connection is polled for. Urgent (out-of-band) TCP data is asked
/// for too where the poller reports it, so that `on_ready` knows to read on
/// past the short read its mark causes.
#[cfg(any(target_os = "linux", target_os = "android"))]
const CONN_INTEREST: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const CONN_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);
/// Whether a short read may end a turn of reads (see `on_readable`): only
/// where urgent data is reported, since its mark also makes a read short.
const SHORT_READ_ENDS_TURN: bool = cfg!(any(target_os = "linux", target_os = "android"));
/// Accepts per readiness event before other connections get their turn.
const ACCEPTS_PER_TURN: usize = 256;
/// Bus messages taken per pass before sockets are served again.
const INBOX_BUDGET: usize = 1024;
/// Streams written between two polls during a wide fan-out: small enough
/// that a publisher's answer and new input wait only about 0.1 ms (so a
/// closed-loop publisher keeps many events in flight and each write
/// carries several), large enough that the extra poll is noise beside the
/// writes; a single subscriber is still written before the answer.
const FLUSH_SLICE: usize = 16;

/// One poll loop and everything it owns.
pub(crate) struct Reactor {
    /// Which loop of the process this is, for the log.
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: Config,
    policy: Policy,
    conns: Slab<Conn>,
    topics: Topics,
    bus: Box<dyn Bus>,
    /// What every loop and handle of the server shares (for `/metrics`).
    shared: Arc<Shared>,
    /// This loop's counters, part of `shared`.
    counters: Arc<Counters>,
    timers: Timers,
    heartbeat: HeartbeatGrid,
    flush: FlushLists,
    /// Connections whose input may be left unread: the read budget ran
    /// out, or reading was paused and may go on.
    read_backlog: Vec<usize>,
    /// Subscribers whose replay ran out of budget, to go on next pass.
    replay_backlog: Vec<usize>,
    /// Which keys are in `replay_backlog`, indexed by key: each once.
    replay_queued: Vec<bool>,
    /// Subscribers found over the queue limit during a fan-out.
    over_limit: Vec<usize>,
    accept_pending: bool,
    inbox_pending: bool,
    scratch: Vec<u8>,
    /// Fan-out counter, compared with each connection's stamp.
    stamp: u64,
    /// Numbers the publishes that wait for the bus.
    tickets: u64,
    /// Counts the polls: readiness from a poll is for connections accepted
    /// before it.
    pass: u64,
    /// The pass in which each key's connection was accepted.
    born: Births,
    /// Streams still catching up from the history.
    replaying: u64,
    /// What replays may still do in this pass (see `serve::Reactor::replay`).
    replay_budget: ReplayBudget,
    /// Failed accepts since the last one that worked, while the process is
    /// out of descriptors or memory: logged once per burst.
    accept_failures: u64,
    /// When the shutdown grace ends, once shutting down.
    shutdown_at: Option<Instant>,
    /// The bus asked for a shutdown, to begin at the end of this pass.
    shutdown_requested: bool,
    /// When the bus next needs its deadline.
    bus_deadline: Option<Instant>,
    now: Instant,
    /// When a poll last returned readiness; `--busy-poll` spins after it.
    active_at: Instant,
}

/// The pass in which each slab key's connection was accepted, indexed by
/// key (a key is reused once its connection closed).
#[derive(Debug, Default)]
struct Births(Vec<u64>);

impl Births {
    fn set(&mut self, key: usize, pass: u64) {
        if key >= self.0.len() {
            self.0.resize(key + 1, 0);
        }
        self.0[key] = pass;
    }

    fn get(&self, key: usize) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

/// What replays may do in one pass of the loop, over all connections: so
/// that many subscribers resuming from a long history at once hold up
/// live publishes and answers by a slice, not by the whole history.
#[derive(Debug)]
struct ReplayBudget {
    /// History units left to look through (see `History::next_retained`).
    units: usize,
    /// Bytes of replayed events left to queue.
    bytes: usize,
}

impl Default for ReplayBudget {
    fn default() -> Self {
        ReplayBudget {
            units: 256 << 10,
            bytes: 1 << 20,
        }
    }
}

/// Connections with bytes to write, in the order they got them: streams
/// apart from answers to requests, so that answers need not wait for a
/// whole fan-out. A connection is listed once per turn of its `listed`
/// flag; an entry whose flag was cleared since (a flush on writable
/// readiness, a close) is skipped.
#[derive(Debug, Default)]
struct FlushLists {
    streams: VecDeque<usize>,
    answers: VecDeque<usize>,
}

impl Reactor {
    /// A loop over `poll` (with the bus's waker registered as [`WAKER`])
    /// that will serve `listener` once its bus is ready.
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        listener: TcpListener,
        config: Config,
        bus: Box<dyn Bus>,
        shared: Arc<Shared>,
        counters: Arc<Counters>,
    ) -> io::Result<Reactor> {
        let local_addr = listener.local_addr()?;
        let policy = Policy {
            max_head_size: config.max_head_size,
            max_headers: config.max_headers,
            max_body: config.max_event_size,
            publish_token: config.publish_token.clone(),
            loopback_hosts: config.listen.ip().is_loopback(),
            allow_hosts: config.allow_hosts.clone(),
            allow_origin: config.allow_origin.clone(),
            access: Access::configured(config.jwt_key.as_deref(), &config.public_topics)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        };
        let now = Instant::now();
        Ok(Reactor {
            index,
            poll,
            listener: Some(listener),
            local_addr,
            policy,
            conns: Slab::new(),
            topics: Topics::default(),
            bus,
            shared,
            counters,
            timers: Timers::default(),
            heartbeat: HeartbeatGrid::new(config.heartbeat, now),
            flush: FlushLists::default(),
            read_backlog: Vec::new(),
            replay_backlog: Vec::new(),
            replay_queued: Vec::new(),
            over_limit: Vec::new(),
            accept_pending: false,
            // The bus may have handed out messages before the loop ran.
            inbox_pending: true,
            scratch: vec![0; READ_CHUNK],
            stamp: 0,
            tickets: 0,
            pass: 0,
            born: Births::default(),
            replaying: 0,
            replay_budget: ReplayBudget::default(),
            accept_failures: 0,
            shutdown_at: None,
            shutdown_requested: false,
            bus_deadline: None,
            now,
            active_at: now,
            config,
        })
    }

    /// Serves until a shutdown is requested and finished; listens once the
    /// bus is ready.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut listening = false;
        loop {
            if !listening {
                listening = self.listen_when_ready()?;
            }
            self.bus_deadline = self.bus.before_poll();
            let timeout = self.poll_timeout();
            net::poll(&mut self.poll, &mut events, timeout)?;
            self.pass += 1;
            self.now = Instant::now();
            if !events.is_empty() {
                self.active_at = self.now;
            }
            self.replay_budget = ReplayBudget::default();
            // Replays a budget stopped go first: new resumes in this pass
            // do not starve them.
            self.serve_replay_backlog();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_messages(),
                    token if bus::is_bus_token(token) => {
                        self.bus.on_ready(token, event);
                        self.take_messages();
                    }
                    // A connection closed earlier in this batch may have
                    // left its key to one accepted since: what the poll said
                    // of the old socket is not the new one's.
                    Token(key) if self.born.get(key) < self.pass => self.on_ready(key, event),
                    Token(_) => {}
                }
                self.flush_listed();
            }
            self.serve_backlogs();
            if std::mem::take(&mut self.shutdown_requested) {
                self.begin_shutdown();
            }
            self.expire();
            self.flush_listed();
            if self.finished() {
                break;
            }
        }
        debug!("loop {} stopped", self.index);
        Ok(())
    }

    /// Registers the listener once the bus is ready (a cluster's has
    /// reached Redis and read the history there): until then the loop
    /// serves only its bus. Returns whether it is done; fails when the bus
    /// never will be ready.
    fn listen_when_ready(&mut self) -> io::Result<bool> {
        if !self.bus.ready()? {
            return Ok(false);
        }
        // Shut down before it was ready: nothing to listen for.
        let Some(listener) = &mut self.listener else {
            return Ok(true);
        };
        self.poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)?;
        if self.shared.loop_listens() {
            info!("listening on http://{}", self.local_addr);
        }
        Ok(true)
    }

    /// Zero while work is left over from the last pass or a busy-poll
    /// window is open; else until the nearest deadline; else forever (an
    /// idle server does not wake).
    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_pending
            || self.inbox_pending
            || !self.read_backlog.is_empty()
            || !self.replay_backlog.is_empty()
            || !self.flush.streams.is_empty()
        {
            return Some(Duration::ZERO);
        }
        if self.now - self.active_at < self.config.busy_poll {
            return Some(Duration::ZERO);
        }
        let nearest = [self.timers.nearest(), self.shutdown_at, self.bus_deadline]
            .into_iter()
            .flatten()
            .min();
        nearest.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Work a budget left for this pass.
    fn serve_backlogs(&mut self) {
        if std::mem::take(&mut self.accept_pending) {
            self.accept();
        }
        if std::mem::take(&mut self.inbox_pending) {
            self.take_messages();
        }
        let backlog = std::mem::take(&mut self.read_backlog);
        for &key in &backlog {
            // Serve what was kept while paused, then read on: no new edge
            // will come for input left unread.
            self.serve_input(key, &[]);
            self.on_readable(key, true);
            self.flush_listed();
        }
        // Keep the allocation for next time.
        let mut backlog = backlog;
        backlog.clear();
        backlog.append(&mut self.read_backlog);
        self.read_backlog = backlog;
        self.serve_replay_backlog();
    }

    fn serve_replay_backlog(&mut self) {
        let replays = std::mem::take(&mut self.replay_backlog);
        for &key in &replays {
            self.replay_queued[key] = false;
        }
        for key in replays {
            self.replay(key);
        }
    }

    /// Lists a replay a budget stopped, to go on in a later pass; once.
    fn queue_replay(&mut self, key: usize) {
        if key >= self.replay_queued.len() {
            self.replay_queued.resize(key + 1, false);
        }
        if !std::mem::replace(&mut self.replay_queued[key], true) {
            self.replay_backlog.push(key);
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut socket, peer) = match net::accept(listener) {
                Accepted::Conn(socket, peer) => (socket, peer),
                Accepted::WouldBlock => {
                    // Every waiting connection is in: a burst is over.
                    if self.accept_failures > 0 {
                        info!(
                            "accept works again after {} failed attempts",
                            self.accept_failures
                        );
                        self.accept_failures = 0;
                    }
                    return;
                }
                Accepted::Transient(e) => {
                    // Retried whenever a connection closes: one line for
                    // the burst, and one when every waiting connection is
                    // in.
                    if self.accept_failures == 0 {
                        warn!("accept: {e}; new connections wait until some close");
                    }
                    self.accept_failures += 1;
                    return;
                }
                Accepted::Failed(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            };
            // Small event writes must leave at once, not wait for an ACK.
            if let Err(e) = socket.set_nodelay(true) {
                debug!("set_nodelay for {peer}: {e}");
                continue;
            }
            // Those waiting for their refusal do not hold a place; past
            // them, a connection is closed unanswered.
            let admission = self.shared.admit(self.config.max_connections);
            if admission == Admission::Refused {
                self.counters.rejected.add(1);
                continue;
            }
            let over_capacity = admission == Admission::OverCapacity;
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut socket, Token(key), CONN_INTEREST)
            {
                warn!("register {peer}: {e}");
                self.shared.leave(admission);
                continue;
            }
            let conn = entry.insert(Conn::new(socket, self.now, over_capacity, &self.config));
            self.born.set(key, self.pass);
            self.timers.set(key, conn.deadline());
            self.counters.accepted.add(1);
            self.counters.connections.set(self.conns.len() as u64);
            let loop_index = self.index;
            if over_capacity {
                self.counters.rejected.add(1);
                debug!("loop {loop_index}: connection {key} from {peer}: over capacity");
            } else {
                debug!("loop {loop_index}: connection {key} from {peer}");
            }
        }
        self.accept_pending = true;
    }

    /// Takes what the bus has for this loop, with a budget.
    fn take_messages(&mut self) {
        self.bus.begin_drain();
        for _ in 0..INBOX_BUDGET {
            match self.bus.next() {
                Some(Message::Delivery(delivery)) => self.fan_out(&delivery),
                Some(Message::Confirmed(ticket, id)) => self.confirm(ticket, id),
                // Begun between events, not here: a request being carried
                // out may have come to this drain.
                Some(Message::Shutdown) => self.shutdown_requested = true,
                None => return,
            }
        }
        self.inbox_pending = true;
    }

    fn on_ready(&mut self, key: usize, event: &Readiness) {
        // Readiness is a hint: the write or read that follows decides.
        if event.is_writable() && self.conns.get(key).is_some_and(Conn::wants_writable) {
            self.flush(key);
        }
        // A close, an error or urgent data (where a read stops at its mark
        // with input still queued) brings no later edge: read through it.
        let to_the_end = event.is_read_closed() || event.is_error() || event.is_priority();
        if !(event.is_readable() || to_the_end) {
            return;
        }
        if self.conns.get(key).is_some_and(Conn::wants_input) {
            self.on_readable(key, to_the_end);
        }
        // A stream is not read: its close or reset is seen in the readiness,
        // also when the request that made it a stream came with them (no
        // later edge would tell).
        if let Some(conn) = self.conns.get_mut(key)
            && conn.is_stream()
        {
            let reset = event.is_error() || event.is_write_closed();
            let next = conn.on_hangup(reset, event.is_read_closed());
            self.after(key, next);
        }
    }

    /// Reads what the peer sent. A read that leaves room in the buffer took
    /// all the kernel had, and input arriving later raises a new edge, so the
    /// read that would only say WouldBlock is skipped (one syscall less on
    /// every publish) unless `to_the_end`.
    fn on_readable(&mut self, key: usize, to_the_end: bool) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.wants_input() {
                return;
            }
            match conn.read(&mut self.scratch) {
                ReadOutcome::Data(n) => {
                    let took_all = n < self.scratch.len();
                    let scratch = std::mem::take(&mut self.scratch);
                    self.serve_input(key, &scratch[..n]);
                    self.scratch = scratch;
                    if took_all && SHORT_READ_ENDS_TURN && !to_the_end {
                        return;
                    }
                }
                ReadOutcome::Eof => {
                    let next = conn.on_eof(self.now);
                    return self.after(key, next);
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Failed(e) => {
                    log::log!(net::failure_level(&e), "connection {key}: read: {e}");
                    return self.close(key, "read error");
                }
            }
        }
        // Budget spent with input possibly left: finish in a later pass.
        self.read_backlog.push(key);
    }

    /// Does what a transition of connection `key` asked for, and keeps its
    /// deadline.
    fn after(&mut self, key: usize, next: Next) {
        match next {
            Next::Idle => {}
            Next::Flush(Lane::Answer) => self.flush.answers.push_back(key),
            Next::Flush(Lane::Stream) => self.flush.streams.push_back(key),
            Next::Close(why) => return self.close(key, why),
        }
        if let Some(conn) = self.conns.get(key) {
            self.timers.set(key, conn.deadline());
        }
    }

    /// Writes what connection `key` has queued until the kernel refuses,
    /// topping up a replay in progress each time the queue drains.
    fn flush(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let flushed = conn.flush(self.now, key);
            self.counters.bytes_written.add(flushed.written as u64);
            if let Some(waited) = flushed.waited {
                self.counters.observe_write_delay(waited);
            }
            match flushed.then {
                AfterFlush::Done => return,
                AfterFlush::Replay => {
                    if self.replay(key) == 0 {
                        return;
                    }
                }
                AfterFlush::ResumeInput => return self.read_backlog.push(key),
                AfterFlush::Close(why) => return self.close(key, why),
                AfterFlush::Failed(e) => {
                    log::log!(net::failure_level(&e), "connection {key}: write: {e}");
                    return self.close(key, "write error");
                }
            }
        }
    }

    /// Writes the next slice of listed streams, then every answer owed; what
    /// is left of a wide fan-out waits for the next pass (which polls first).
    fn flush_listed(&mut self) {
        let mut flushed = 0;
        while flushed < FLUSH_SLICE {
            let Some(key) = self.flush.streams.pop_front() else {
                break;
            };
            flushed += usize::from(self.flush_if_listed(key));
        }
        while let Some(key) = self.flush.answers.pop_front() {
            self.flush_if_listed(key);
        }
    }

    /// Flushes a connection taken off a flush list if it still wants it:
    /// the list may name one closed since (its key perhaps reused) or one
    /// flushed meanwhile on writable readiness. Returns whether it did.
    fn flush_if_listed(&mut self, key: usize) -> bool {
        let listed = self.conns.get(key).is_some_and(Conn::is_listed);
        if listed {
            self.flush(key);
        }
        listed
    }

    /// Removes the connection everywhere: poll, slab, deadlines, topics.
    fn close(&mut self, key: usize, why: &str) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        if conn.replaying() {
            self.replaying -= 1;
            self.counters.replaying.set(self.replaying);
        }
        let mut remains = conn.remove(self.now);
        let _ = self.poll.registry().deregister(&mut remains.socket);
        if let Some(waited) = remains.waited {
            self.counters.observe_write_delay(waited);
        }
        self.timers.set(key, None);
        if let Some(sub) = remains.subscription {
            self.topics.unsubscribe(sub);
            self.counters
                .subscribers
                .set(self.topics.subscribers() as u64);
        }
        self.shared.leave(if remains.over_capacity {
            Admission::OverCapacity
        } else {
            Admission::Served
        });
        self.counters.connections.set(self.conns.len() as u64);
        debug!("connection {key} closed: {why}");
        // A listener that stopped for lack of descriptors may go on now.
        self.accept_pending |= self.listener.is_some();
    }

    /// Fires every deadline that is due.
    fn expire(&mut self) {
        if self.bus_deadline.is_some_and(|at| at <= self.now) {
            self.bus_deadline = None;
            self.bus.on_deadline(self.now);
            self.take_messages();
        }
        while let Some(key) = self.timers.pop_due(self.now) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue; // cannot happen: close() removes the deadline
            };
            match conn.on_deadline(self.now, &self.heartbeat) {
                Expired::RequestTimeout => {
                    let reject =
                        Reject::new(Status::REQUEST_TIMEOUT, "request not received in time");
                    self.reject(key, &reject);
                }
                Expired::Close(why) => self.close(key, why),
                Expired::EndStream(why) => {
                    debug!("connection {key}: {why}");
                    let was_replaying = conn.replaying();
                    let (sub, next) = conn.end_stream(self.now);
                    self.track_replay(key, was_replaying);
                    if let Some(sub) = sub {
                        self.topics.unsubscribe(sub);
                        self.counters
                            .subscribers
                            .set(self.topics.subscribers() as u64);
                    }
                    self.after(key, next);
                }
                Expired::Heartbeat(next) => {
                    self.counters.heartbeats.add(1);
                    self.after(key, next);
                }
                Expired::Nothing => self.after(key, Next::Idle),
                Expired::Flush(next) => self.after(key, next),
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        info!(
            "loop {}: shutting down: {} connections open",
            self.index,
            self.conns.len()
        );
        self.shutdown_at = Some(self.now + self.config.shutdown_grace);
        // Closing a listener resets the connections still queued on it
        // (the kernel hands them to no other listener of a reuseport
        // group): take them first, to be told to come back later.
        self.accept();
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let was_replaying = conn.replaying();
            let (sub, next) = conn.on_shutdown(self.now);
            self.track_replay(key, was_replaying);
            if let Some(sub) = sub {
                self.topics.unsubscribe(sub);
            }
            self.after(key, next);
        }
        self.counters
            .subscribers
            .set(self.topics.subscribers() as u64);
    }

    /// Keeps the count of replaying streams after an operation on `key`
    /// that may have begun or ended its replay.
    fn track_replay(&mut self, key: usize, was: bool) {
        let is = self.conns.get(key).is_some_and(Conn::replaying);
        if is != was {
            if is {
                self.replaying += 1;
            } else {
                self.replaying -= 1;
            }
            self.counters.replaying.set(self.replaying);
        }
    }

    fn finished(&self) -> bool {
        match self.shutdown_at {
            Some(at) => self.conns.is_empty() || self.now >= at,
            None => false,
        }
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.conns.len())
            .field("subscribers", &self.topics.subscribers())
            .finish_non_exhaustive()
    }
}
