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

mod books;
mod serve;
mod sockets;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::event::Event as Readiness;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use self::books::{Listening, Owed, Polls, Replays, Shutdown};
use crate::auth::{Access, TokenPolicy};
use crate::bus::{self, Bus, Message};
use crate::config::{self, Config};
use crate::conn::{Conn, EndedStream, Expired, Lane, Next, Remains};
use crate::http::{Policy, Reject, Status};
use crate::mercure::matcher::Patterns;
use crate::mercure::url::HubUrl;
use crate::metrics::Counters;
use crate::net;
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
    listening: Listening,
    config: Config,
    policy: Policy,
    conns: Slab<Conn<TcpStream>>,
    topics: Topics,
    /// The Mercure hub's URL: topics and URL patterns resolve against it.
    hub: HubUrl,
    /// The URL patterns this loop's subscribers and tokens use, compiled
    /// once each; borrowed while an answer's context is.
    patterns: RefCell<Patterns>,
    /// Recipients found through URL patterns, for one fan-out.
    pattern_recipients: Vec<usize>,
    bus: Box<dyn Bus>,
    /// What every loop and handle of the server shares (for `/metrics`).
    shared: Arc<Shared>,
    /// This loop's counters, part of `shared`.
    counters: Arc<Counters>,
    timers: Timers,
    heartbeat: HeartbeatGrid,
    /// What a pass leaves for the next: flush lists and backlogs.
    owed: Owed,
    /// Streams catching up from the history, and the pass's budget.
    replays: Replays,
    /// The polls: which one each connection came after, when one last
    /// reported readiness.
    polls: Polls,
    shutdown: Shutdown,
    /// The read buffer, shared by every connection.
    read_buf: Vec<u8>,
    /// Fan-outs so far: each numbers one, so that a subscriber of several
    /// of an event's topics gets it once.
    fan_outs: u64,
    /// Subscribers found over the queue limit during a fan-out.
    over_limit: Vec<usize>,
    /// Numbers the publishes that wait for the bus.
    tickets: u64,
    /// When the bus next needs its deadline.
    bus_deadline: Option<Instant>,
    now: Instant,
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
        let hub = config
            .hub_url
            .as_deref()
            .map(HubUrl::parse)
            .unwrap_or_else(|| HubUrl::parse(&config::hub_url(None, local_addr)))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let policy = Policy {
            max_head_size: config.max_head_size,
            max_headers: config.max_headers,
            max_body: config.max_event_size,
            publish_token: config.publish_token.clone(),
            loopback_hosts: config.listen.ip().is_loopback(),
            allow_hosts: config.allow_hosts.clone(),
            allow_origin: config.allow_origin.clone(),
            access: Access::configured(
                config.jwt_key.as_deref(),
                config.public_topics_in_effect(),
                token_policy(&config, &hub),
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        };
        let now = Instant::now();
        Ok(Reactor {
            index,
            poll,
            listening: Listening::new(listener, local_addr),
            policy,
            conns: Slab::new(),
            topics: Topics::default(),
            patterns: RefCell::new(Patterns::new(hub.url().clone())),
            hub,
            pattern_recipients: Vec::new(),
            bus,
            shared,
            counters,
            timers: Timers::default(),
            heartbeat: HeartbeatGrid::new(config.heartbeat, now),
            owed: Owed {
                // The bus may have handed out messages before the loop ran.
                inbox: true,
                ..Owed::default()
            },
            replays: Replays::default(),
            polls: Polls::new(now),
            shutdown: Shutdown::default(),
            read_buf: vec![0; READ_CHUNK],
            fan_outs: 0,
            over_limit: Vec::new(),
            tickets: 0,
            bus_deadline: None,
            now,
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
            self.now = Instant::now();
            self.polls.polled(self.now, !events.is_empty());
            self.replays.new_pass();
            // Replays a budget stopped go first: new resumes in this pass
            // do not starve them.
            self.serve_waiting_replays();
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
                    Token(key) if self.polls.reported_on(key) => self.on_ready(key, event),
                    Token(_) => {}
                }
                self.flush_listed();
            }
            self.serve_backlogs();
            if std::mem::take(&mut self.shutdown.requested) {
                self.begin_shutdown();
            }
            self.expire();
            self.flush_listed();
            if self.finished() {
                // Publishes still waiting for the store are answered
                // before their connections close.
                self.bus.abandon();
                self.take_messages();
                self.flush_listed();
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
        let Some(listener) = &mut self.listening.socket else {
            return Ok(true);
        };
        self.poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)?;
        if self.shared.loop_listens() {
            info!("listening on http://{}", self.listening.addr);
        }
        Ok(true)
    }

    /// Zero while work is left over from the last pass or a busy-poll
    /// window is open; else until the nearest deadline; else forever (an
    /// idle server does not wake).
    fn poll_timeout(&self) -> Option<Duration> {
        if self.owed.any() || self.replays.any_waiting() {
            return Some(Duration::ZERO);
        }
        if self.now - self.polls.active_at < self.config.busy_poll {
            return Some(Duration::ZERO);
        }
        let nearest = [
            self.timers.nearest(),
            self.shutdown.grace_ends,
            self.bus_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        nearest.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Work a budget left for this pass.
    fn serve_backlogs(&mut self) {
        if std::mem::take(&mut self.owed.accepts) {
            self.accept();
        }
        if std::mem::take(&mut self.owed.inbox) {
            self.take_messages();
        }
        let backlog = std::mem::take(&mut self.owed.reads);
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
        backlog.append(&mut self.owed.reads);
        self.owed.reads = backlog;
        self.serve_waiting_replays();
    }

    fn serve_waiting_replays(&mut self) {
        for key in self.replays.take_waiting() {
            self.replay(key);
        }
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
                Some(Message::Shutdown) => self.shutdown.requested = true,
                None => return,
            }
        }
        self.owed.inbox = true;
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

    /// Does what a transition of connection `key` asked for, and keeps its
    /// deadline.
    fn after(&mut self, key: usize, next: Next) {
        debug_assert!(
            !matches!(next, Next::Flush(_)) || self.conns.get(key).is_some_and(Conn::is_listed),
            "a connection asks to be listed once it marked itself listed"
        );
        match next {
            Next::Wait => {}
            Next::Flush(Lane::Answer) => self.owed.answers.push_back(key),
            Next::Flush(Lane::Stream) => self.owed.streams.push_back(key),
            Next::Close(why) => return self.close(key, why),
        }
        if let Some(conn) = self.conns.get(key) {
            self.timers.set(key, conn.deadline());
        }
    }

    /// [`Reactor::after`] for a transition that may have ended the stream
    /// of connection `key`: every stream but a closed connection's ends
    /// through here.
    fn after_ending(&mut self, key: usize, (ended, next): (Option<EndedStream>, Next)) {
        if let Some(ended) = ended {
            self.forget_stream(ended);
            self.update_gauges();
        }
        self.after(key, next);
    }

    /// Takes an ended stream out of the topic index and the replay count.
    fn forget_stream(&mut self, ended: EndedStream) {
        self.topics.unsubscribe(ended.subscription);
        if ended.was_replaying {
            self.replays.ended();
        }
    }

    /// Sets the loop's gauges from its books: the one place they are set.
    fn update_gauges(&self) {
        self.counters.connections.set(self.conns.len() as u64);
        self.counters
            .subscribers
            .set(self.topics.subscribers() as u64);
        self.counters.replaying.set(self.replays.active());
    }

    /// Removes the connection everywhere: poll, slab, deadlines, topics.
    fn close(&mut self, key: usize, why: &str) {
        let Some(remains) = self.take_out(key) else {
            return;
        };
        self.shared.leave(if remains.over_capacity {
            Admission::OverCapacity
        } else {
            Admission::Served
        });
        debug!("connection {key} closed: {why}");
        // A listener that stopped for lack of descriptors may go on now.
        self.owed.accepts |= self.listening.socket.is_some();
    }

    /// Takes connection `key` out of this loop (poll, slab, deadlines,
    /// topics, gauges) without closing its socket, which comes back in what
    /// remains; its place against `--max-connections` is still held.
    fn take_out(&mut self, key: usize) -> Option<Remains<TcpStream>> {
        let conn = self.conns.try_remove(key)?;
        let mut remains = conn.remove(self.now);
        let _ = self.poll.registry().deregister(&mut remains.socket);
        if let Some(waited) = remains.waited {
            self.counters.observe_write_delay(waited);
        }
        self.timers.set(key, None);
        if let Some(ended) = remains.stream.take() {
            self.forget_stream(ended);
        }
        self.update_gauges();
        Some(remains)
    }

    /// Fires every deadline that is due.
    fn expire(&mut self) {
        if self.bus_deadline.is_some_and(|at| at <= self.now) {
            self.bus_deadline = None;
            self.bus.on_deadline(self.now);
            self.take_messages();
        }
        while let Some(key) = self.timers.pop_due(self.now) {
            debug_assert!(
                self.conns.contains(key),
                "close() takes a connection's deadline with it"
            );
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
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
                    let ending = conn.end_stream(self.now);
                    self.after_ending(key, ending);
                }
                Expired::Heartbeat(next) => {
                    self.counters.heartbeats.add(1);
                    self.after(key, next);
                }
                Expired::NotDue => self.after(key, Next::Wait),
                Expired::NotIdle(next) => self.after(key, next),
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown.under_way() {
            return;
        }
        info!(
            "loop {}: shutting down: {} connections open",
            self.index,
            self.conns.len()
        );
        self.shutdown.grace_ends = Some(self.now + self.config.shutdown_grace);
        // Closing a listener resets the connections still queued on it
        // (the kernel hands them to no other listener of a reuseport
        // group): take them first, to be told to come back later.
        self.accept();
        if let Some(mut listener) = self.listening.socket.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                let ending = conn.on_shutdown(self.now);
                self.after_ending(key, ending);
            }
        }
    }

    fn finished(&self) -> bool {
        match self.shutdown.grace_ends {
            Some(at) => self.conns.is_empty() || self.now >= at,
            None => false,
        }
    }
}

/// What an `at+jwt` must say to this hub: `--jwt-audience` (by default
/// the hub URL) and `--jwt-issuer`.
fn token_policy(config: &Config, hub: &HubUrl) -> TokenPolicy {
    TokenPolicy {
        audience: config
            .jwt_audience
            .clone()
            .unwrap_or_else(|| hub.as_str().to_owned()),
        issuer: config.jwt_issuer.clone(),
        anonymous: config.anonymous,
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("local_addr", &self.listening.addr)
            .field("connections", &self.conns.len())
            .field("subscribers", &self.topics.subscribers())
            .finish_non_exhaustive()
    }
}
