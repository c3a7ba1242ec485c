//! The poll loop. It owns the `Poll`, the listener, the connections (a slab
//! whose keys are the mio tokens), the hub, the deadlines and the inbox of
//! the `Publisher`s, and it alone does I/O.
//!
//! One pass of the loop: wait for readiness or the nearest deadline; accept,
//! read, answer and publish as the events say; write every connection that
//! got bytes ("dirty") at once; fire due deadlines. A write the kernel
//! refuses leaves the rest queued until writable readiness.
//!
//! A fan-out wider than `FLUSH_SLICE` streams is written in slices, with a
//! poll between them: the answers owed to requesters go out after the first
//! slice (a publisher does not wait for a thousand writes), and events
//! published meanwhile join the queues of the streams not yet written, so
//! under load each write carries every event pending for its stream.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::event::Event as Readiness;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::{Config, Framing, LINGER_TIMEOUT, OVERFLOW_CONNECTIONS, OVERFLOW_TIMEOUT};
use crate::conn::{Conn, Phase};
use crate::http::{self, Head, Policy, Reject, Route, Status};
use crate::hub::{Hub, ResetReason, Retained};
use crate::io::{self as sio, FlushOutcome, ReadOutcome};
use crate::metrics::WriteDelay;
use crate::publisher::{self, Command, INBOX_BUDGET, Inbox, Publisher};
use crate::request::Step;
use crate::sse::{self, Event};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

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
/// A connection whose unsent answers reach this stops being read until they
/// are written: a client that pipelines without reading cannot grow memory.
const PAUSE_READING_AT: usize = 64 << 10;
/// Streams written between two polls during a wide fan-out: small enough
/// that a publisher's answer and new input wait only about 0.1 ms (so a
/// closed-loop publisher keeps many events in flight and each write
/// carries several), large enough that the extra poll is noise beside the
/// writes; a single subscriber is still written before the answer.
const FLUSH_SLICE: usize = 16;
/// Heartbeat deadlines are rounded down to this fraction of the interval,
/// so idle subscribers that came at different moments share wake-ups.
const HEARTBEAT_TICKS: u32 = 16;
/// Bytes of each write shown at trace level.
const TRACE_BYTES: usize = 512;
/// The wire inspector served at `GET /`: one self-contained page.
const INSPECTOR_PAGE: &str = include_str!("inspector.html");

/// `retry:` sent with a stream refused for now, when `--retry` is not set.
const RETRY_LATER: Duration = Duration::from_secs(1);

/// Counters of what the server did since it started.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Events published.
    pub events_published: u64,
    /// Event frames queued to subscribers (live and replayed).
    pub deliveries: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Subscribers cut off for passing the queue limit.
    pub slow_disconnects: u64,
    /// Events sent from the history to resuming subscribers.
    pub replayed: u64,
    /// Connections refused for capacity or during shutdown.
    pub rejected: u64,
    /// How long queues the kernel refused waited until they were written.
    pub write_delay: WriteDelay,
}

/// A bound SSE server; `run` serves until shut down.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: Config,
    policy: Policy,
    conns: Slab<Conn>,
    hub: Hub,
    /// Every connection's deadline, nearest first.
    deadlines: BTreeSet<(Instant, usize)>,
    publisher: Publisher,
    inbox: Inbox,
    /// Connections with bytes to write, in the order they got them.
    dirty: Dirty,
    /// Connections whose read budget ran out with input possibly left.
    read_backlog: Vec<usize>,
    /// Subscribers found over the queue limit during a fan-out.
    over_limit: Vec<usize>,
    accept_pending: bool,
    /// Connections accepted over capacity, waiting to be refused.
    overflow: usize,
    inbox_pending: bool,
    scratch: Vec<u8>,
    /// Fan-out counter, compared with `Conn::stamp`.
    stamp: u64,
    /// When the shutdown grace ends, once shutting down.
    shutdown_at: Option<Instant>,
    /// Start of the heartbeat tick grid.
    epoch: Instant,
    now: Instant,
    /// When a poll last returned readiness; `--busy-poll` spins after it.
    active_at: Instant,
    stats: Stats,
}

impl Server {
    /// Binds the listening socket and sets up the loop; nothing is served
    /// until `run`.
    pub fn bind(config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (publisher, inbox) = publisher::channel(waker);
        let policy = Policy {
            max_head_size: config.max_head_size,
            max_headers: config.max_headers,
            max_body: config.max_event_size,
            publish_token: config.publish_token.clone(),
            loopback_hosts: config.listen.ip().is_loopback(),
            allow_hosts: config.allow_hosts.clone(),
            allow_origin: config.allow_origin.clone(),
        };
        let now = Instant::now();
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            policy,
            conns: Slab::new(),
            hub: Hub::new(config.history),
            deadlines: BTreeSet::new(),
            publisher,
            inbox,
            dirty: Dirty::default(),
            read_backlog: Vec::new(),
            over_limit: Vec::new(),
            accept_pending: false,
            overflow: 0,
            inbox_pending: false,
            scratch: vec![0; READ_CHUNK],
            stamp: 0,
            shutdown_at: None,
            epoch: now,
            now,
            active_at: now,
            stats: Stats::default(),
            config,
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that publishes into this server from any thread and can shut
    /// it down.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Serves until a shutdown is requested and finished.
    pub fn run(mut self) -> io::Result<()> {
        info!("listening on http://{}", self.local_addr);
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            if !events.is_empty() {
                self.active_at = self.now;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_commands(),
                    Token(key) => self.on_ready(key, event),
                }
                self.flush_dirty();
            }
            self.serve_backlogs();
            self.expire();
            self.flush_dirty();
            if self.finished() {
                break;
            }
        }
        info!(
            "stopped: {} events published, {} deliveries, {} connections served",
            self.stats.events_published, self.stats.deliveries, self.stats.accepted
        );
        Ok(())
    }

    /// Zero while work is left over from the last pass or a busy-poll
    /// window is open; else until the nearest deadline; else forever (an
    /// idle server does not wake).
    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_pending
            || self.inbox_pending
            || !self.read_backlog.is_empty()
            || !self.dirty.streams.is_empty()
        {
            return Some(Duration::ZERO);
        }
        if self.now - self.active_at < self.config.busy_poll {
            return Some(Duration::ZERO);
        }
        let nearest = self.deadlines.first().map(|&(at, _)| at);
        let nearest = match (nearest, self.shutdown_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        nearest.map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn serve_backlogs(&mut self) {
        if std::mem::take(&mut self.accept_pending) {
            self.accept();
        }
        if std::mem::take(&mut self.inbox_pending) {
            self.take_commands();
        }
        let backlog = std::mem::take(&mut self.read_backlog);
        for &key in &backlog {
            // No new edge will come for input left unread: read it all.
            self.on_readable(key, true);
            self.flush_dirty();
        }
        // Keep the allocation for next time.
        let mut backlog = backlog;
        backlog.clear();
        backlog.append(&mut self.read_backlog);
        self.read_backlog = backlog;
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut socket, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if sio::accept_transient(&e) => {
                    warn!("accept: {e}");
                    return;
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            };
            // Small event writes must leave at once, not wait for an ACK.
            if let Err(e) = socket.set_nodelay(true) {
                debug!("set_nodelay for {peer}: {e}");
                continue;
            }
            // Those waiting for their refusal do not hold a place.
            let over_capacity = self.conns.len() - self.overflow >= self.config.max_connections;
            if over_capacity && self.overflow >= OVERFLOW_CONNECTIONS {
                // Too many already waiting for their refusal: close unanswered.
                self.stats.rejected += 1;
                continue;
            }
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut socket, Token(key), CONN_INTEREST)
            {
                warn!("register {peer}: {e}");
                continue;
            }
            let mut conn = Conn::new(socket, self.now);
            conn.over_capacity = over_capacity;
            entry.insert(conn);
            self.stats.accepted += 1;
            let timeout = if over_capacity {
                self.overflow += 1;
                self.stats.rejected += 1;
                debug!("connection {key} from {peer}: over capacity");
                OVERFLOW_TIMEOUT.min(self.config.header_timeout)
            } else {
                debug!("connection {key} from {peer}");
                self.config.header_timeout
            };
            self.set_deadline(key, Some(self.now + timeout));
        }
        self.accept_pending = true;
    }

    fn take_commands(&mut self) {
        self.inbox.begin();
        for _ in 0..INBOX_BUDGET {
            match self.inbox.next() {
                Some(Command::Publish(event)) => {
                    self.publish(&event);
                }
                Some(Command::Shutdown) => self.begin_shutdown(),
                None => return,
            }
        }
        self.inbox_pending = true;
    }

    fn on_ready(&mut self, key: usize, event: &Readiness) {
        // Readiness is a hint: the write or read that follows decides.
        // A refused queue that a cut-off emptied (`keep_started`) is still
        // `blocked_since`: only this flush finds it written and lets it close.
        if event.is_writable()
            && let Some(conn) = self.conns.get_mut(key)
            && (conn.blocked_since.is_some() || !conn.queue.is_empty())
        {
            self.flush(key);
        }
        // A close, an error or urgent data (where a read stops at its mark
        // with input still queued) brings no later edge: read through it.
        let to_the_end = event.is_read_closed() || event.is_error() || event.is_priority();
        if event.is_readable() || to_the_end {
            self.on_readable(key, to_the_end);
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
            if conn.read_paused || conn.peer_eof {
                return;
            }
            if matches!(conn.phase, Phase::Requests(_)) && conn.queue.len() >= PAUSE_READING_AT {
                conn.read_paused = true;
                return;
            }
            match sio::read(&mut conn.socket, &mut self.scratch) {
                ReadOutcome::Data(n) => {
                    let took_all = n < self.scratch.len();
                    self.on_input(key, n);
                    if took_all && SHORT_READ_ENDS_TURN && !to_the_end {
                        return;
                    }
                }
                ReadOutcome::Eof => return self.on_eof(key),
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Failed(e) => {
                    let level = if sio::peer_gone(&e) {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                    log::log!(level, "connection {key}: read: {e}");
                    return self.close(key, "read error");
                }
            }
        }
        // Budget spent with input possibly left: finish in a later pass.
        self.read_backlog.push(key);
    }

    /// `n` bytes arrived in the scratch buffer.
    fn on_input(&mut self, key: usize, n: usize) {
        let conn = &mut self.conns[key];
        if !matches!(conn.phase, Phase::Requests(_)) {
            // A subscriber or a closing connection has nothing more to say.
            return;
        }
        conn.request_began.get_or_insert(self.now);
        let Some(reader) = conn.requests() else {
            return;
        };
        let scratch = std::mem::take(&mut self.scratch);
        if reader.pending.is_empty() {
            // The usual case: whole requests in one read, parsed in place.
            let used = self.take_requests(key, &scratch[..n]);
            if let Some(reader) = self.conns.get_mut(key).and_then(Conn::requests) {
                reader.pending.extend_from_slice(&scratch[used..n]);
            }
        } else {
            let mut input = std::mem::take(&mut reader.pending);
            input.extend_from_slice(&scratch[..n]);
            let used = self.take_requests(key, &input);
            if let Some(reader) = self.conns.get_mut(key).and_then(Conn::requests) {
                input.drain(..used);
                reader.pending = input;
            }
        }
        self.scratch = scratch;
        self.rearm_request_deadline(key);
    }

    /// Serves every whole request at the start of `input`; returns the bytes
    /// used (all of them once the connection stops reading requests).
    fn take_requests(&mut self, key: usize, input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(reader) = self.conns.get_mut(key).and_then(Conn::requests) {
            let (n, step) = reader.next_request(&input[used..], &self.policy);
            used += n;
            match step {
                Step::NeedMore => return used,
                Step::Request(head, body) => self.dispatch(key, head, body),
                Step::Continue => {
                    let conn = &mut self.conns[key];
                    conn.queue.push_static(http::CONTINUE);
                    self.dirty.answer(conn, key);
                }
                Step::Reject(reject) => {
                    self.reject(key, &reject);
                    break;
                }
            }
        }
        input.len()
    }

    fn dispatch(&mut self, key: usize, head: Head, body: Vec<u8>) {
        let route = match head.route {
            Ok(route) => route,
            Err(reject) => return self.reject(key, &reject),
        };
        let refusal = if self.shutdown_at.is_some() {
            Some("server shutting down")
        } else if self.conns[key].over_capacity {
            Some("server at capacity")
        } else {
            None
        };
        if let Some(why) = refusal {
            // An EventSource gives up for good on a 503, so a subscribe is
            // told to come back instead; anything else gets the 503.
            return match route {
                Route::Subscribe { .. } => self.refuse_stream(key, head.http11, why),
                _ => self.reject(key, &Reject::new(Status::UNAVAILABLE, why)),
            };
        }
        match route {
            Route::Preflight { allow } => match self.config.allow_origin.as_deref() {
                Some(origin) => {
                    let answer = http::preflight_response(allow, origin, head.keep_alive);
                    self.answer_raw(key, answer, head.keep_alive);
                }
                None => self.reject(
                    key,
                    &Reject {
                        status: Status::METHOD_NOT_ALLOWED,
                        reason: "method not allowed (CORS is off)",
                        allow: Some(allow),
                    },
                ),
            },
            Route::Health => self.answer_with(
                key,
                "text/plain; charset=utf-8",
                "ok",
                head.keep_alive,
                head.head_only,
            ),
            Route::Index => self.answer_with(
                key,
                "text/html; charset=utf-8",
                INSPECTOR_PAGE,
                head.keep_alive,
                head.head_only,
            ),
            Route::Metrics => {
                let text = self.metrics_text();
                self.answer_with(
                    key,
                    "text/plain; version=0.0.4; charset=utf-8",
                    &text,
                    head.keep_alive,
                    head.head_only,
                );
            }
            Route::Publish { topics, event_type } => {
                let Ok(data) = String::from_utf8(body) else {
                    return self.reject(
                        key,
                        &Reject::new(Status::BAD_REQUEST, "event data is not UTF-8"),
                    );
                };
                let mut event = Event::new(data);
                if let Some(t) = event_type {
                    event = event.with_type(t);
                }
                for t in topics {
                    event = event.with_topic(t);
                }
                let id = self.publish(&event);
                self.answer(key, &id, head.keep_alive);
            }
            Route::Subscribe {
                topics,
                last_event_id,
            } => self.subscribe(key, head.http11, &topics, last_event_id.as_deref()),
        }
    }

    fn answer(&mut self, key: usize, body: &str, keep_alive: bool) {
        self.answer_with(key, "text/plain; charset=utf-8", body, keep_alive, false);
    }

    /// A `200`; `head_only` (a `HEAD`) leaves the body out.
    fn answer_with(
        &mut self,
        key: usize,
        content_type: &str,
        body: &str,
        keep_alive: bool,
        head_only: bool,
    ) {
        let keep_alive = keep_alive && self.shutdown_at.is_none();
        let cors = self.config.allow_origin.as_deref();
        let answer = if head_only {
            http::head_response(content_type, body, keep_alive, cors)
        } else {
            http::ok_response(content_type, body, keep_alive, cors)
        };
        self.answer_raw(key, answer, keep_alive);
    }

    /// Queues a whole answer; the connection stays for the next request
    /// only when `keep_alive` and the server is not shutting down.
    fn answer_raw(&mut self, key: usize, answer: Vec<u8>, keep_alive: bool) {
        let keep_alive = keep_alive && self.shutdown_at.is_none();
        let conn = &mut self.conns[key];
        conn.queue.push_owned(answer);
        conn.served += 1;
        conn.request_began = None;
        self.dirty.answer(conn, key);
        if !keep_alive {
            self.begin_closing(key);
        }
    }

    fn reject(&mut self, key: usize, reject: &Reject) {
        debug!("connection {key}: {} {}", reject.status.0, reject.reason);
        let conn = &mut self.conns[key];
        conn.queue.push_owned(http::error_response(
            reject,
            self.config.allow_origin.as_deref(),
        ));
        self.dirty.answer(conn, key);
        self.begin_closing(key);
    }

    /// A stream that cannot be served now: `retry:` and a comment, then the
    /// end, so an EventSource comes back later instead of giving up.
    fn refuse_stream(&mut self, key: usize, http11: bool, why: &str) {
        let chunked = http11 && self.config.framing == Framing::Chunked;
        let retry = self.config.retry.unwrap_or(RETRY_LATER);
        let cors = self.config.allow_origin.as_deref();
        let conn = &mut self.conns[key];
        conn.queue
            .push_owned(http::refused_stream(chunked, retry, why, cors));
        self.dirty.answer(conn, key);
        self.begin_closing(key);
    }

    fn subscribe(&mut self, key: usize, http11: bool, topics: &[String], last_id: Option<&str>) {
        let chunked = http11 && self.config.framing == Framing::Chunked;
        let conn = &mut self.conns[key];
        conn.framing = if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        };
        let cors = self.config.allow_origin.as_deref();
        conn.queue
            .push_owned(http::stream_head(chunked, self.config.retry, cors));
        if let Some(id) = last_id {
            match self.hub.resume_point(id) {
                Ok(seq) => conn.replay_after = Some(seq),
                Err(reason) => {
                    debug!("connection {key}: Last-Event-ID {id:?} cannot be resumed: {reason:?}");
                    conn.queue
                        .push_frame(&self.hub.reset_frame(reason), conn.framing);
                }
            }
        }
        // The head is an answer: written with the answers, not behind a
        // fan-out in progress.
        self.dirty.answer(conn, key);
        conn.subscription = Some(self.hub.subscribe(key, topics));
        conn.phase = Phase::Stream;
        conn.served += 1;
        conn.request_began = None;
        conn.last_write = self.now;
        debug!("connection {key}: subscribed to {topics:?}");
        let window = self.config.queue_limit / 2;
        fill_replay(&mut self.conns[key], &self.hub, window, &mut self.stats);
        let due = self.heartbeat_due(self.now);
        self.set_deadline(key, due);
    }

    /// Assigns the id, encodes once, and queues the frame to every
    /// recipient: a pointer per subscriber, no copy. Returns the id.
    fn publish(&mut self, event: &Event) -> String {
        let (id, frame) = self.hub.publish(event);
        self.stats.events_published += 1;
        self.stamp += 1;
        let stamp = self.stamp;
        let queue_limit = self.config.queue_limit;
        for key in self.hub.recipients(event.topics()) {
            let conn = &mut self.conns[key];
            // A subscriber still catching up gets this event from the history.
            if conn.stamp == stamp || conn.replay_after.is_some() {
                continue;
            }
            conn.stamp = stamp;
            conn.queue.push_frame(&frame, conn.framing);
            self.stats.deliveries += 1;
            if conn.queue.len() > queue_limit {
                self.over_limit.push(key);
            } else {
                self.dirty.stream(conn, key);
            }
        }
        trace!(
            "published {id}: {:?}",
            String::from_utf8_lossy(frame.payload())
        );
        self.cut_over_limit();
        id
    }

    fn cut_over_limit(&mut self) {
        while let Some(key) = self.over_limit.pop() {
            warn!(
                "connection {key}: slow subscriber cut off ({} bytes unsent, limit {})",
                self.conns[key].queue.len(),
                self.config.queue_limit
            );
            self.stats.slow_disconnects += 1;
            // What it has not taken is dropped: it resumes with Last-Event-ID.
            self.conns[key].queue.keep_started();
            self.end_stream(key);
        }
    }

    /// Ends a stream cleanly after what is queued: the last chunk when
    /// chunked, then the close.
    fn end_stream(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.framing == Framing::Chunked {
            conn.queue.push_static(sse::LAST_CHUNK);
        }
        if let Some(sub) = conn.subscription.take() {
            self.hub.unsubscribe(sub);
        }
        self.dirty.stream(conn, key);
        self.begin_closing(key);
    }

    /// From now on the connection only writes what it has queued, then
    /// closes; a bounded wait covers a peer that never reads.
    fn begin_closing(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.phase = Phase::Closing;
        conn.read_paused = false;
        self.set_deadline(key, Some(self.now + LINGER_TIMEOUT));
    }

    fn on_eof(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.peer_eof = true;
        match conn.phase {
            Phase::Closing => self.finish_if_written(key),
            // Answers owed for whole requests are still written, then it
            // closes; a request cut short by the EOF can never complete.
            Phase::Requests(_) if !conn.queue.is_empty() => {
                self.begin_closing(key);
                self.finish_if_written(key);
            }
            _ => self.close(key, "peer closed"),
        }
    }

    /// Writes what the connection has queued until the kernel refuses,
    /// topping up a replay in progress each time the queue drains.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        let outcome = loop {
            // For people learning the wire format: what each write carried.
            let traced = log::log_enabled!(log::Level::Trace).then(|| conn.queue.peek(TRACE_BYTES));
            let (written, outcome) = sio::flush(&mut conn.socket, &mut conn.queue);
            if let Some(bytes) = traced.filter(|_| written > 0) {
                let shown = &bytes[..written.min(bytes.len())];
                let more = if written > shown.len() { " …" } else { "" };
                trace!(
                    "connection {key} <- {written} bytes: \"{}\"{more}",
                    shown.escape_ascii()
                );
            }
            if written > 0 {
                conn.last_write = self.now;
                self.stats.bytes_written += written as u64;
            }
            if !matches!(outcome, FlushOutcome::Drained) || conn.replay_after.is_none() {
                break outcome;
            }
            fill_replay(
                conn,
                &self.hub,
                self.config.queue_limit / 2,
                &mut self.stats,
            );
        };
        match outcome {
            FlushOutcome::Drained => {
                // Only a queue the kernel refused is timed: the immediate
                // path pays nothing for this metric.
                if let Some(since) = conn.blocked_since.take() {
                    self.stats.write_delay.observe(self.now - since);
                }
                if matches!(conn.phase, Phase::Closing) {
                    self.finish_if_written(key);
                } else if std::mem::take(&mut conn.read_paused) {
                    self.read_backlog.push(key);
                }
            }
            FlushOutcome::Blocked => {
                conn.blocked_since.get_or_insert(self.now);
            }
            FlushOutcome::Failed(e) => {
                let level = if sio::peer_gone(&e) {
                    log::Level::Debug
                } else {
                    log::Level::Warn
                };
                log::log!(level, "connection {key}: write: {e}");
                self.close(key, "write error");
            }
        }
    }

    /// For a closing connection: once its queue is written, shut our side so
    /// the peer sees the end, and close when the peer has closed too.
    fn finish_if_written(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.queue.is_empty() {
            return;
        }
        if conn.peer_eof {
            return self.close(key, "done");
        }
        if !conn.write_shut {
            conn.write_shut = true;
            // Our FIN ends a close-delimited body; reading on until the peer's
            // FIN keeps a late request byte from turning into a reset that
            // could destroy the answer in flight.
            if let Err(e) = conn.socket.shutdown(Shutdown::Write) {
                debug!("connection {key}: shutdown: {e}");
                return self.close(key, "shutdown failed");
            }
            // Input may have been left unread while answers were pending.
            self.read_backlog.push(key);
        }
    }

    /// Writes the next slice of dirty streams, then every answer owed; what
    /// is left of a wide fan-out waits for the next pass (which polls first).
    fn flush_dirty(&mut self) {
        let mut flushed = 0;
        while flushed < FLUSH_SLICE {
            let Some(key) = self.dirty.streams.pop_front() else {
                break;
            };
            flushed += usize::from(self.flush_listed(key));
        }
        while let Some(key) = self.dirty.answers.pop_front() {
            self.flush_listed(key);
        }
    }

    /// Flushes a connection taken off the flush list if it still wants it:
    /// the list may name one closed since (its key perhaps reused) or one
    /// flushed meanwhile on writable readiness. Returns whether it did.
    fn flush_listed(&mut self, key: usize) -> bool {
        let listed = self.conns.get(key).is_some_and(|conn| conn.dirty);
        if listed {
            self.flush(key);
        }
        listed
    }

    /// Removes the connection everywhere: poll, slab, deadlines, hub.
    fn close(&mut self, key: usize, why: &str) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.socket);
        // A subscriber cut off or gone while the kernel refused its bytes
        // waited too: the slowest waits must show in the histogram.
        if let Some(since) = conn.blocked_since {
            self.stats.write_delay.observe(self.now - since);
        }
        if let Some(at) = conn.deadline {
            self.deadlines.remove(&(at, key));
        }
        if let Some(sub) = conn.subscription.take() {
            self.hub.unsubscribe(sub);
        }
        if conn.over_capacity {
            self.overflow -= 1;
        }
        debug!("connection {key} closed: {why}");
        // A listener that stopped for lack of descriptors may go on now.
        self.accept_pending |= self.listener.is_some();
    }

    fn set_deadline(&mut self, key: usize, at: Option<Instant>) {
        let conn = &mut self.conns[key];
        if conn.deadline == at {
            return;
        }
        if let Some(old) = conn.deadline {
            self.deadlines.remove(&(old, key));
        }
        if let Some(new) = at {
            self.deadlines.insert((new, key));
        }
        conn.deadline = at;
    }

    /// After input: a request in progress must be whole by its deadline; an
    /// idle keep-alive connection closes after the idle timeout.
    fn rearm_request_deadline(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !matches!(conn.phase, Phase::Requests(_)) {
            return;
        }
        let at = if conn.request_in_progress() {
            let began = *conn.request_began.get_or_insert(self.now);
            began + self.config.header_timeout
        } else {
            conn.request_began = None;
            self.now + self.config.idle_timeout
        };
        self.set_deadline(key, Some(at));
    }

    /// When a subscriber last written to at `last_write` is due a heartbeat,
    /// rounded down to the tick grid so that due subscribers share a wake-up.
    fn heartbeat_due(&self, last_write: Instant) -> Option<Instant> {
        let interval = self.config.heartbeat?;
        let tick = (interval / HEARTBEAT_TICKS).max(Duration::from_millis(1));
        let since_epoch = (last_write + interval).duration_since(self.epoch);
        let ticks = since_epoch.as_nanos() / tick.as_nanos();
        let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
        Some(self.epoch + tick * ticks)
    }

    fn expire(&mut self) {
        let now = self.now;
        while let Some(&(at, key)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(conn) = self.conns.get_mut(key) else {
                continue; // cannot happen: close() removes the deadline
            };
            conn.deadline = None;
            match conn.phase {
                Phase::Requests(_) => {
                    if conn.request_in_progress() || conn.served == 0 {
                        let reject =
                            Reject::new(Status::REQUEST_TIMEOUT, "request not received in time");
                        self.reject(key, &reject);
                    } else {
                        self.close(key, "idle");
                    }
                }
                Phase::Stream => self.heartbeat(key),
                Phase::Closing => self.close(key, "linger timeout"),
            }
        }
    }

    /// A subscriber's heartbeat deadline fired: send one if nothing was
    /// written for the interval, and set the next check.
    fn heartbeat(&mut self, key: usize) {
        let due = self.heartbeat_due(self.conns[key].last_write);
        let conn = &mut self.conns[key];
        let next = match due {
            Some(due) if due <= self.now => {
                // Unsent bytes mean the stream is not idle, just slow.
                if conn.queue.is_empty() {
                    conn.queue.push_static(sse::heartbeat(conn.framing));
                    self.stats.heartbeats += 1;
                    self.dirty.stream(conn, key);
                }
                self.heartbeat_due(self.now)
            }
            other => other,
        };
        self.set_deadline(key, next);
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        info!("shutting down: {} connections open", self.conns.len());
        self.shutdown_at = Some(self.now + self.config.shutdown_grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            match conn.phase {
                Phase::Stream => self.end_stream(key),
                Phase::Requests(_) if !conn.request_in_progress() && conn.queue.is_empty() => {
                    self.close(key, "shutdown")
                }
                // A request in progress is answered (503 or a retry stream),
                // and the connection closes after it.
                _ => {}
            }
        }
    }

    /// The counters in Prometheus text format.
    fn metrics_text(&self) -> String {
        crate::metrics::render(&self.stats, self.conns.len(), self.hub.subscribers())
    }

    fn finished(&self) -> bool {
        match self.shutdown_at {
            Some(at) => self.conns.is_empty() || self.now >= at,
            None => false,
        }
    }
}

/// Queues retained events to a resuming subscriber until its queue holds
/// `window` bytes, so a long replay never trips the queue limit; the flush
/// that drains the queue calls again. Once caught up the subscriber is live.
fn fill_replay(conn: &mut Conn, hub: &Hub, window: usize, stats: &mut Stats) {
    let (Some(mut after), Some(sub)) = (conn.replay_after, conn.subscription.as_ref()) else {
        return;
    };
    while conn.queue.len() < window {
        match hub.next_retained(after, sub) {
            Retained::Event(seq, frame) => {
                conn.queue.push_frame(frame, conn.framing);
                stats.replayed += 1;
                stats.deliveries += 1;
                after = seq;
            }
            Retained::CaughtUp => {
                conn.replay_after = None;
                return;
            }
            Retained::Lost => {
                // It fell behind the history while catching up: say so.
                conn.queue
                    .push_frame(&hub.reset_frame(ResetReason::Stale), conn.framing);
                conn.replay_after = None;
                return;
            }
        }
    }
    conn.replay_after = Some(after);
}

/// Connections with bytes to write, in the order they got them: what
/// fan-outs and heartbeats queued on streams apart from answers to requests,
/// so that answers need not wait for a whole fan-out. A connection's `dirty`
/// flag says whether it is due a flush: it is listed once per flag, and an
/// entry whose flag was cleared since (a flush on writable readiness, a
/// close) is skipped. One the kernel refused waits for writable readiness.
#[derive(Debug, Default)]
struct Dirty {
    streams: VecDeque<usize>,
    answers: VecDeque<usize>,
}

impl Dirty {
    /// Bytes that answer the connection's own request.
    fn answer(&mut self, conn: &mut Conn, key: usize) {
        if conn.take_flush_turn() {
            self.answers.push_back(key);
        }
    }

    /// Bytes a fan-out, a heartbeat or a stream's end queued.
    fn stream(&mut self, conn: &mut Conn, key: usize) {
        if conn.take_flush_turn() {
            self.streams.push_back(key);
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.conns.len())
            .field("subscribers", &self.hub.subscribers())
            .finish_non_exhaustive()
    }
}
