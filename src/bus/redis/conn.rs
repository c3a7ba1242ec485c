//! One connection to Redis, driven by the loop that owns it: a non-blocking
//! socket (TCP, or TLS over it: `link`) in the loop's poll, commands written
//! from a buffer, replies decoded with `resp` and matched in order with what
//! asked for them. Each time it connects (a TLS handshake is part of that)
//! it logs in (`AUTH`, `SELECT`, and `ROLE` where only a primary will do,
//! pipelined ahead of everything else); a connect or a reply that takes too
//! long, a broken socket or a reply nobody asked for ends the connection,
//! and it connects again. It never blocks, and it owns nothing but its
//! socket and buffers: what the replies mean is its owner's business. What a
//! read, a write or a connect gave is `net`'s to say.
//!
//! Connecting again: a connection that was up for [`STABLE_AFTER`] and
//! that Redis closed while it waited for nothing (Redis's `timeout`, which
//! managed services set) connects again at once and quietly; any other
//! failure waits a backoff that doubles from [`MIN_BACKOFF`] to
//! [`MAX_BACKOFF`], and starts again from the bottom only once a
//! connection has stayed up for [`STABLE_AFTER`]. The log says when an
//! outage begins and when it ends, not each attempt in between.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event as Readiness;
use mio::{Interest, Registry, Token};

pub use super::events::{ConnEvent, Lost, Tag};
use super::link::Link;
use super::login::LoginStep;
pub use super::login::{Login, is_transient};
use crate::bus::resp::{self, DecodeError, Limits, Scanner};
use crate::net::{self, Connecting, ReadOutcome, WriteOutcome};

/// Longest a TCP connect to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest Redis may take to answer a command (beyond the time a command
/// asks Redis to wait, as `XREAD BLOCK` does).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before connecting again, doubled after each failure…
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// …up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A connection up this long works: the backoff starts again from the
/// bottom, and an outage is over.
pub const STABLE_AFTER: Duration = Duration::from_millis(500);
/// A connection that has carried nothing for this long is read before a
/// command is sent on it, so that one Redis closed meanwhile is found
/// closed before the command goes out, not after.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// Bytes read per read call.
const READ_CHUNK: usize = 64 << 10;

enum Phase {
    /// Not connected; the next attempt is at `retry_at` (when there is an
    /// address).
    Idle { retry_at: Instant },
    /// A connect (and TLS handshake) in progress, given up at `until`.
    Connecting { socket: Link, until: Instant },
    /// Connected, since `since`.
    Up { socket: Link, since: Instant },
}

/// What a reply answers.
enum Expect {
    Login(LoginStep),
    Owner(Tag),
}

/// A command sent and not yet answered.
struct Pending {
    expect: Expect,
    /// When to give up on the connection if no reply has come.
    due: Instant,
    /// Written whole to the socket.
    written: bool,
}

/// One connection to Redis.
pub struct RedisConn {
    /// For the log: which connection this is.
    name: String,
    /// Its name in Redis: `sseloop-<pid>-<role>`.
    client: String,
    /// Where to connect; `None`: stay away.
    addr: Option<SocketAddr>,
    login: Login,
    token: Token,
    registry: Option<Registry>,
    phase: Phase,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    input: Vec<u8>,
    scanner: Scanner,
    pending: VecDeque<Pending>,
    /// When a byte last came or went, or the connection came up.
    last_io: Instant,
    /// Values no command asked for are messages (a subscription).
    expects_messages: bool,
    /// Up for [`STABLE_AFTER`] since it last connected.
    stable: bool,
    backoff: Duration,
    /// A failure was reported and the connection has not been stable
    /// since: the log says when it ends, and stays quiet about the
    /// attempts in between.
    outage: bool,
    /// Jitter for the backoff, so that the connections of many loops and
    /// nodes do not all knock at once.
    rng: u64,
    /// Failures are its owner's to tell (logged at debug only).
    quiet: bool,
}

impl RedisConn {
    /// A connection to `addr` (when there is one) under `token`, not yet
    /// connecting (see [`RedisConn::register`]); `role` names it in the
    /// log and, as `sseloop-<pid>-<role>`, in Redis.
    #[inline(never)]
    pub fn new(
        role: &str,
        addr: Option<SocketAddr>,
        login: Login,
        token: Token,
        limits: Limits,
    ) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| u64::from(d.subsec_nanos()));
        // Nonzero, as xorshift needs.
        let rng = (clock ^ token.0 as u64) | 1;
        let now = Instant::now();
        RedisConn {
            name: role.to_owned(),
            client: format!("sseloop-{}-{role}", std::process::id()),
            addr,
            login,
            token,
            registry: None,
            phase: Phase::Idle { retry_at: now },
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            scanner: Scanner::new(limits),
            pending: VecDeque::new(),
            last_io: now,
            expects_messages: false,
            stable: false,
            backoff: MIN_BACKOFF,
            outage: false,
            rng,
            quiet: false,
        }
    }

    /// Leaves telling of failures to the owner: they are logged at debug.
    pub fn quietly(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Keeps a handle on the loop's poll and starts connecting.
    pub fn register(&mut self, registry: &Registry, events: &mut Vec<ConnEvent>) -> io::Result<()> {
        self.registry = Some(registry.try_clone()?);
        self.connect(Instant::now(), events);
        Ok(())
    }

    /// Where it connects, if anywhere.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Connects to `addr` from now on (`None`: nowhere): a connection to
    /// another address ends (its commands reported lost), and a new one
    /// begins at once.
    #[inline(never)]
    pub fn set_addr(&mut self, addr: Option<SocketAddr>, events: &mut Vec<ConnEvent>) {
        if self.addr == addr {
            return;
        }
        self.addr = addr;
        let now = Instant::now();
        if let Some(lost) = self.end(false, false) {
            events.push(ConnEvent::Down(lost));
        }
        self.backoff = MIN_BACKOFF;
        self.outage = false;
        if addr.is_some() {
            self.connect(now, events);
        }
    }

    /// Whether commands can be sent now.
    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    /// Whether it is down for a reason the log has told (a connect failed,
    /// or a connection broke with commands in flight), not just coming
    /// back after Redis closed it while idle.
    pub fn in_outage(&self) -> bool {
        self.outage || self.addr.is_none()
    }

    /// From now until it reconnects, values no command asked for are
    /// [`ConnEvent::Message`]s (after `SUBSCRIBE`).
    pub fn expect_messages(&mut self) {
        self.expects_messages = true;
    }

    /// Before sending on a connection that carried nothing for a while:
    /// reads it, so that one Redis closed meanwhile is found closed (and
    /// connects again) before a command is given to it.
    #[inline(never)]
    pub fn check_idle(&mut self, now: Instant, events: &mut Vec<ConnEvent>) {
        if self.is_up() && self.pending.is_empty() && now >= self.last_io + IDLE_CHECK {
            self.read(events);
        }
    }

    /// Buffers a command, to be written by [`RedisConn::flush`]; `allowance`
    /// is how long its reply may take. Gives the tag back when not connected.
    #[inline(never)]
    pub fn send(
        &mut self,
        args: &[&[u8]],
        tag: Tag,
        allowance: Duration,
        now: Instant,
    ) -> Result<(), Tag> {
        if !self.is_up() {
            return Err(tag);
        }
        resp::command(&mut self.out, args);
        self.pending.push_back(Pending {
            expect: Expect::Owner(tag),
            due: now + allowance,
            written: false,
        });
        Ok(())
    }

    /// Writes what is buffered, as far as the kernel takes it.
    // Out of line: one copy for every connection, not one per caller.
    #[inline(never)]
    pub fn flush(&mut self, events: &mut Vec<ConnEvent>) {
        let Phase::Up { socket, .. } = &mut self.phase else {
            return;
        };
        if let Err(e) = socket.send_pending() {
            return self.fail(&format!("write: {e}"), false, events);
        }
        if self.written == self.out.len() {
            return;
        }
        while self.written < self.out.len() {
            match net::write(socket, &self.out[self.written..]) {
                WriteOutcome::Wrote(n) => self.written += n,
                WriteOutcome::WouldBlock => return,
                WriteOutcome::Failed(e) => return self.fail(&format!("write: {e}"), false, events),
            }
        }
        self.out.clear();
        self.written = 0;
        self.last_io = Instant::now();
        // Every command buffered is out: the newest not yet marked first.
        for pending in self.pending.iter_mut().rev() {
            if pending.written {
                break;
            }
            pending.written = true;
        }
    }

    /// When [`RedisConn::on_deadline`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle { retry_at } => self.addr.map(|_| *retry_at),
            Phase::Connecting { until, .. } => Some(*until),
            // Replies come in order: the oldest command is the one late.
            Phase::Up { since, .. } => {
                let stable = (!self.stable).then_some(*since + STABLE_AFTER);
                [self.pending.front().map(|p| p.due), stable]
                    .into_iter()
                    .flatten()
                    .min()
            }
        }
    }

    /// Connects when the backoff is over; gives up on a connect or a reply
    /// that is late; notes a connection that has stayed up.
    // Out of line: one copy for every connection, not one per caller.
    #[inline(never)]
    pub fn on_deadline(&mut self, now: Instant, events: &mut Vec<ConnEvent>) {
        match &self.phase {
            Phase::Idle { retry_at } if *retry_at <= now => self.connect(now, events),
            Phase::Connecting { until, .. } if *until <= now => self.fail(
                &format!("no connection within {CONNECT_TIMEOUT:?}"),
                false,
                events,
            ),
            Phase::Up { .. } if self.pending.front().is_some_and(|p| p.due <= now) => {
                self.fail("no reply in time", false, events)
            }
            Phase::Up { since, .. } if !self.stable && *since + STABLE_AFTER <= now => {
                self.recovered()
            }
            _ => {}
        }
    }

    /// Readiness of the socket: a connect completes, replies are read,
    /// buffered commands written.
    // Out of line: one copy for every connection, not one per caller.
    #[inline(never)]
    pub fn on_ready(&mut self, readiness: &Readiness, events: &mut Vec<ConnEvent>) {
        if let Phase::Connecting { socket, .. } = &mut self.phase {
            match net::connecting(socket.tcp()) {
                Connecting::Done => match socket.handshake() {
                    Ok(true) => self.connected(events),
                    Ok(false) => return,
                    Err(e) => return self.fail(&format!("TLS: {e}"), false, events),
                },
                Connecting::InProgress => return,
                Connecting::Failed(e) => return self.fail(&format!("connect: {e}"), false, events),
            }
        }
        if readiness.is_readable() || readiness.is_read_closed() || readiness.is_error() {
            self.read(events);
        }
        self.flush(events);
    }

    /// Ends the connection now, as a failure (the owner found a reply it
    /// cannot use); it connects again after the backoff.
    pub fn reset(&mut self, why: &str, events: &mut Vec<ConnEvent>) {
        self.fail(why, false, events);
    }

    #[inline(never)]
    fn connect(&mut self, now: Instant, events: &mut Vec<ConnEvent>) {
        let (Some(registry), Some(addr)) = (&self.registry, self.addr) else {
            return;
        };
        let mut socket = match Link::connect(addr, self.login.tls.as_ref()) {
            Ok(socket) => socket,
            Err(e) => return self.fail(&format!("connect: {e}"), false, events),
        };
        if let Err(e) = registry.register(
            &mut socket,
            self.token,
            Interest::READABLE.add(Interest::WRITABLE),
        ) {
            return self.fail(&format!("register: {e}"), false, events);
        }
        debug!("Redis {}: connecting to {addr}", self.name);
        self.phase = Phase::Connecting {
            socket,
            until: now + CONNECT_TIMEOUT,
        };
    }

    #[inline(never)]
    fn connected(&mut self, events: &mut Vec<ConnEvent>) {
        let now = Instant::now();
        let Phase::Connecting { socket, .. } =
            std::mem::replace(&mut self.phase, Phase::Idle { retry_at: now })
        else {
            return;
        };
        // Commands are small and each is waited for: no Nagle delay.
        if let Err(e) = socket.tcp().set_nodelay(true) {
            debug!("Redis {}: set_nodelay: {e}", self.name);
        }
        self.phase = Phase::Up { socket, since: now };
        self.stable = false;
        self.expects_messages = false;
        self.last_io = now;
        let (login, steps) = self.login.commands(&self.client);
        self.out.extend_from_slice(&login);
        for step in steps {
            self.pending.push_back(Pending {
                expect: Expect::Login(step),
                due: now + REPLY_TIMEOUT,
                written: false,
            });
        }
        debug!("Redis {}: connected to {:?}", self.name, self.addr);
        events.push(ConnEvent::Up);
    }

    // Out of line: one copy for every connection, not one per caller.
    #[inline(never)]
    fn read(&mut self, events: &mut Vec<ConnEvent>) {
        loop {
            let Phase::Up { socket, .. } = &mut self.phase else {
                return;
            };
            let start = self.input.len();
            self.input.resize(start + READ_CHUNK, 0);
            let outcome = net::read(socket, &mut self.input[start..]);
            let n = match outcome {
                ReadOutcome::Data(n) => n,
                ReadOutcome::WouldBlock => 0,
                ReadOutcome::Eof => {
                    self.input.truncate(start);
                    return self.fail("Redis closed the connection", false, events);
                }
                ReadOutcome::Failed(e) => {
                    self.input.truncate(start);
                    return self.fail(&format!("read: {e}"), false, events);
                }
            };
            self.input.truncate(start + n);
            if n == 0 {
                return;
            }
            self.last_io = Instant::now();
            // Decoded after each read, so that the buffer holds at most one
            // partial reply (bounded by the limits) and one read.
            if !self.decode(events) {
                return;
            }
        }
    }

    /// Hands out every whole reply read so far; false when the connection
    /// had to end.
    #[inline(never)]
    fn decode(&mut self, events: &mut Vec<ConnEvent>) -> bool {
        let mut used = 0;
        loop {
            let end = match self.scanner.scan(&self.input[used..]) {
                Ok(Some(n)) => used + n,
                Ok(None) => break,
                Err(e) => return self.unreadable(&e, events),
            };
            let value = match resp::parse(&self.input[used..end]) {
                Ok(value) => value,
                Err(e) => return self.unreadable(&e, events),
            };
            self.scanner.reset();
            used = end;
            let Some(pending) = self.pending.pop_front() else {
                if self.expects_messages {
                    events.push(ConnEvent::Message(value));
                    continue;
                }
                self.fail("a reply to no command", false, events);
                return false;
            };
            match pending.expect {
                Expect::Login(step) => match step.check(&value) {
                    Ok(()) => {}
                    Err((why, refused)) => {
                        if refused {
                            error!("Redis {}: {why}", self.name);
                            events.push(ConnEvent::Refused(why.clone()));
                        }
                        self.fail(&why, false, events);
                        return false;
                    }
                },
                Expect::Owner(tag) => events.push(ConnEvent::Reply(tag, value)),
            }
        }
        self.input.drain(..used);
        true
    }

    fn unreadable(&mut self, e: &DecodeError, events: &mut Vec<ConnEvent>) -> bool {
        self.fail(&format!("unreadable reply: {e}"), true, events);
        false
    }

    /// The connection has stayed up: the next failure starts the backoff
    /// from the bottom, and an outage is over.
    fn recovered(&mut self) {
        self.stable = true;
        self.backoff = MIN_BACKOFF;
        if self.outage {
            self.outage = false;
            if let Some(addr) = self.addr {
                info!("Redis {}: connected to {addr} again", self.name);
            }
        }
    }

    /// Closes the socket; reports what was lost (or, when nothing was up,
    /// that the connect failed).
    #[inline(never)]
    fn end(&mut self, unreadable: bool, not_primary: bool) -> Option<Lost> {
        let was = std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                retry_at: Instant::now(),
            },
        );
        let was_up = matches!(was, Phase::Up { .. });
        if let (
            Phase::Connecting { mut socket, .. } | Phase::Up { mut socket, .. },
            Some(registry),
        ) = (was, &self.registry)
        {
            let _ = registry.deregister(&mut socket);
        }
        self.out.clear();
        self.written = 0;
        self.input.clear();
        self.scanner.reset();
        let mut lost = Lost {
            sent: Vec::new(),
            unsent: Vec::new(),
            unreadable,
            not_primary,
        };
        for pending in self.pending.drain(..) {
            if let Expect::Owner(tag) = pending.expect {
                if pending.written {
                    lost.sent.push(tag);
                } else {
                    lost.unsent.push(tag);
                }
            }
        }
        if was_up { Some(lost) } else { None }
    }

    // Out of line: one copy for every connection, not one per caller.
    #[inline(never)]
    fn fail(&mut self, why: &str, unreadable: bool, events: &mut Vec<ConnEvent>) {
        let idle = self.pending.is_empty();
        let stable = self.stable && self.is_up();
        let not_primary = why.starts_with("not the primary");
        match self.end(unreadable, not_primary) {
            Some(lost) => events.push(ConnEvent::Down(lost)),
            None => events.push(ConnEvent::Unreachable),
        }
        self.stable = false;
        // Redis closed a connection that worked and waited for nothing
        // (its `timeout`): connect again at once, and quietly.
        if stable && idle && why == "Redis closed the connection" {
            debug!("Redis {}: closed while idle; connecting again", self.name);
            // `end` left it idle, to connect now.
            self.backoff = MIN_BACKOFF;
            return;
        }
        let wait = self.jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let addr = self.addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
        if self.outage || self.quiet {
            debug!(
                "Redis {} at {addr}: {why}; trying again in {wait:?}",
                self.name
            );
        } else {
            self.outage = true;
            warn!(
                "Redis {} at {addr}: {why}; trying again (every {MAX_BACKOFF:?} at most)",
                self.name
            );
        }
        self.phase = Phase::Idle {
            retry_at: Instant::now() + wait,
        };
    }

    /// `wait` give or take a quarter.
    fn jittered(&mut self, wait: Duration) -> Duration {
        // xorshift64: enough to spread reconnects.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let quarter = wait / 4;
        let spread = quarter.as_nanos() as u64 * 2;
        if spread == 0 {
            return wait;
        }
        wait - quarter + Duration::from_nanos(self.rng % spread)
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("up", &self.is_up())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! The connection against a tiny RESP server played by the test on a
    //! real socket (127.0.0.1, port 0), the connection driven by a real
    //! poll as its loop would drive it.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use mio::{Events, Poll};

    use super::*;
    use crate::bus::resp::Value;

    const TOKEN: Token = Token(7);
    const WAIT: Duration = Duration::from_secs(5);

    fn limits() -> Limits {
        Limits {
            bulk: 1 << 16,
            array: 64,
            depth: 4,
            value: 1 << 20,
        }
    }

    /// A connection under test, its poll and what it reported so far.
    struct Driven {
        conn: RedisConn,
        poll: Poll,
        events: Vec<ConnEvent>,
    }

    impl Driven {
        fn new(addr: SocketAddr, login: Login) -> Driven {
            let poll = Poll::new().unwrap();
            let mut driven = Driven {
                conn: RedisConn::new("test", Some(addr), login, TOKEN, limits()),
                poll,
                events: Vec::new(),
            };
            driven
                .conn
                .register(driven.poll.registry(), &mut driven.events)
                .unwrap();
            driven
        }

        /// A connection up and logged in against a listener of the test's;
        /// the listener and the server's side of the connection.
        fn up(login: Login) -> (TcpListener, Driven, Peer) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut driven = Driven::new(listener.local_addr().unwrap(), login);
            driven.until(is_up);
            let peer = Peer::accept(&listener);
            (listener, driven, peer)
        }

        /// Drives the connection as its loop does (readiness, a flush
        /// before each poll, deadlines) until `done` says so of what it
        /// reported; returns that, taken.
        fn until(&mut self, done: impl Fn(&[ConnEvent]) -> bool) -> Vec<ConnEvent> {
            let give_up = Instant::now() + WAIT;
            let mut readiness = Events::with_capacity(8);
            while !done(&self.events) {
                assert!(Instant::now() < give_up, "only {:?}", self.events);
                self.turn(&mut readiness, Some(Duration::from_millis(50)));
            }
            std::mem::take(&mut self.events)
        }

        /// One turn of its loop: a flush, a poll until readiness or the
        /// connection's deadline (no later than `most`), then deadlines.
        fn turn(&mut self, readiness: &mut Events, most: Option<Duration>) {
            self.conn.flush(&mut self.events);
            let timeout = self
                .conn
                .deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            let timeout = match (timeout, most) {
                (Some(t), Some(m)) => Some(t.min(m)),
                (t, m) => t.or(m),
            };
            net::poll(&mut self.poll, readiness, timeout).unwrap();
            for event in readiness.iter() {
                assert_eq!(event.token(), TOKEN);
                self.conn.on_ready(event, &mut self.events);
            }
            self.conn.on_deadline(Instant::now(), &mut self.events);
        }

        /// Drives the connection until `done` says so of it.
        fn settle(&mut self, done: impl Fn(&RedisConn) -> bool) {
            let give_up = Instant::now() + WAIT;
            let mut readiness = Events::with_capacity(8);
            while !done(&self.conn) {
                assert!(Instant::now() < give_up, "never settled: {:?}", self.conn);
                self.conn.flush(&mut self.events);
                net::poll(
                    &mut self.poll,
                    &mut readiness,
                    Some(Duration::from_millis(50)),
                )
                .unwrap();
                for event in readiness.iter() {
                    self.conn.on_ready(event, &mut self.events);
                }
            }
        }
    }

    /// The server's side of one connection: reads whole commands.
    struct Peer {
        stream: TcpStream,
        input: Vec<u8>,
    }

    impl Peer {
        /// The connection the kernel has taken already (accepted only once
        /// the client saw it up, so this never waits for it).
        fn accept(listener: &TcpListener) -> Peer {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            Peer {
                stream,
                input: Vec::new(),
            }
        }

        /// The next command, as its arguments.
        fn command(&mut self) -> Vec<String> {
            loop {
                let mut scanner = Scanner::new(limits());
                if let Some(n) = scanner.scan(&self.input).unwrap() {
                    let value = resp::parse(&self.input[..n]).unwrap();
                    self.input.drain(..n);
                    return value
                        .into_array()
                        .unwrap()
                        .iter()
                        .map(|arg| String::from_utf8(arg.bytes().unwrap().to_vec()).unwrap())
                        .collect();
                }
                let mut buf = [0; 4096];
                let n = self.stream.read(&mut buf).unwrap();
                assert!(n > 0, "the connection ended; had {:?}", self.input);
                self.input.extend_from_slice(&buf[..n]);
            }
        }

        fn reply(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).unwrap();
        }
    }

    fn is_up(events: &[ConnEvent]) -> bool {
        events.iter().any(|e| matches!(e, ConnEvent::Up))
    }

    fn is_down(events: &[ConnEvent]) -> bool {
        events.iter().any(|e| matches!(e, ConnEvent::Down(_)))
    }

    #[test]
    fn it_logs_in_then_matches_replies_to_commands_in_order() {
        let login = Login {
            user: Some("node".into()),
            password: Some("s3cret".into()),
            db: 2,
            ..Login::default()
        };
        let (_listener, mut driven, mut peer) = Driven::up(login);
        assert!(driven.conn.is_up());
        let now = Instant::now();
        driven.conn.send(&[b"PING"], 1, WAIT, now).unwrap();
        driven.conn.send(&[b"ECHO", b"hi"], 2, WAIT, now).unwrap();
        driven.conn.flush(&mut driven.events);
        // The login comes first, pipelined ahead of the owner's commands.
        assert_eq!(peer.command(), ["AUTH", "node", "s3cret"]);
        assert_eq!(peer.command(), ["SELECT", "2"]);
        let name = peer.command();
        assert_eq!(name[..2], ["CLIENT", "SETNAME"]);
        assert_eq!(name[2], format!("sseloop-{}-test", std::process::id()));
        assert_eq!(peer.command(), ["PING"]);
        assert_eq!(peer.command(), ["ECHO", "hi"]);
        // Two replies in one segment, the second cut in two.
        peer.reply(b"+OK\r\n+OK\r\n+OK\r\n+PONG\r\n$2\r\nh");
        peer.reply(b"i\r\n");
        let events = driven.until(|e| e.len() == 2);
        assert!(matches!(&events[0], ConnEvent::Reply(1, Value::Simple(s)) if s == b"PONG"));
        assert!(matches!(&events[1], ConnEvent::Reply(2, Value::Bulk(b)) if b == b"hi"));
    }

    #[test]
    fn a_refused_login_is_reported_and_no_command_is_answered() {
        let login = Login {
            password: Some("wrong".into()),
            ..Login::default()
        };
        let (_listener, mut driven, mut peer) = Driven::up(login);
        driven
            .conn
            .send(&[b"PING"], 1, WAIT, Instant::now())
            .unwrap();
        assert_eq!(peer.command(), ["AUTH", "wrong"]);
        peer.reply(b"-WRONGPASS invalid username-password pair\r\n");
        let events = driven.until(is_down);
        let refused = events.iter().find_map(|e| match e {
            ConnEvent::Refused(why) => Some(why.as_str()),
            _ => None,
        });
        assert!(
            refused.is_some_and(|why| why.contains("WRONGPASS")),
            "{events:?}"
        );
        // The command got no reply: whether it was carried out is unknown.
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ConnEvent::Down(lost) if lost.sent == [1])),
            "{events:?}"
        );
        assert!(!driven.conn.is_up());
    }

    #[test]
    fn a_lost_connection_gives_back_what_was_unanswered_and_connects_again() {
        let (listener, mut driven, mut peer) = Driven::up(Login::default());
        let now = Instant::now();
        driven.conn.send(&[b"PING"], 1, WAIT, now).unwrap();
        driven.conn.send(&[b"PING"], 2, WAIT, now).unwrap();
        driven.conn.flush(&mut driven.events);
        assert_eq!(peer.command()[0], "CLIENT");
        assert_eq!(peer.command(), ["PING"]);
        peer.reply(b"+OK\r\n+PONG\r\n");
        drop(peer);
        let events = driven.until(is_down);
        assert!(matches!(&events[0], ConnEvent::Reply(1, _)), "{events:?}");
        assert!(matches!(&events[1], ConnEvent::Down(lost) if lost.sent == [2]));
        // Not connected: a command is given back at once.
        assert_eq!(
            driven.conn.send(&[b"PING"], 3, WAIT, Instant::now()),
            Err(3)
        );
        // After the backoff it connects again (the kernel completes the
        // handshake on the listener's backlog), and logs in again.
        driven.until(is_up);
        let mut again = Peer::accept(&listener);
        assert_eq!(again.command()[..2], ["CLIENT", "SETNAME"]);
    }

    #[test]
    fn a_reply_that_does_not_come_in_time_ends_the_connection() {
        let (_listener, mut driven, mut peer) = Driven::up(Login::default());
        let allowance = Duration::from_millis(100);
        driven
            .conn
            .send(&[b"PING"], 1, allowance, Instant::now())
            .unwrap();
        assert_eq!(peer.command()[0], "CLIENT");
        peer.reply(b"+OK\r\n");
        let started = Instant::now();
        let events = driven.until(is_down);
        assert!(started.elapsed() >= allowance);
        assert!(matches!(&events[..], [ConnEvent::Down(lost)] if lost.sent == [1]));
    }

    #[test]
    fn a_reply_to_no_command_or_garbage_ends_the_connection() {
        for stray in [&b"+SURPRISE\r\n"[..], b"?what\r\n"] {
            let (_listener, mut driven, mut peer) = Driven::up(Login::default());
            assert_eq!(peer.command()[0], "CLIENT");
            peer.reply(b"+OK\r\n");
            peer.reply(stray);
            let events = driven.until(is_down);
            assert!(
                matches!(&events[..], [ConnEvent::Down(lost)] if lost.sent.is_empty() && lost.unsent.is_empty()),
                "{events:?}"
            );
        }
    }

    /// Drives the connection until it has been reported down or
    /// unreachable `count` times; those reports, each when it came.
    fn outages(driven: &mut Driven, count: usize) -> Vec<(Instant, ConnEvent)> {
        let give_up = Instant::now() + WAIT;
        let mut readiness = Events::with_capacity(8);
        let mut outages = Vec::new();
        while outages.len() < count {
            assert!(Instant::now() < give_up, "only {outages:?}");
            driven.turn(&mut readiness, None);
            for event in driven.events.drain(..) {
                if matches!(event, ConnEvent::Down(_) | ConnEvent::Unreachable) {
                    outages.push((Instant::now(), event));
                }
            }
        }
        outages
    }

    /// Each gap at least twice the one before: 50, 100, 200, 400 ms,
    /// give or take a quarter; never less.
    fn assert_backs_off(at: &[Instant]) {
        for (n, gap) in at.windows(2).map(|w| w[1] - w[0]).enumerate() {
            let least = MIN_BACKOFF * (1 << n) * 3 / 4;
            assert!(gap >= least, "attempt {}: {gap:?} after the last", n + 1);
        }
    }

    #[test]
    fn nobody_listening_is_reported_unreachable_and_retried_less_and_less_often() {
        // A port that was free a moment ago: the connect is refused.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut driven = Driven::new(addr, Login::default());
        let at: Vec<_> = outages(&mut driven, 5)
            .into_iter()
            .map(|(at, event)| match event {
                ConnEvent::Unreachable => at,
                other => panic!("never up, so nothing was lost: {other:?}"),
            })
            .collect();
        assert!(!driven.conn.is_up());
        assert!(driven.conn.in_outage());
        assert_backs_off(&at);
        assert!(driven.conn.deadline().is_some(), "a retry is due");
    }

    /// Accepts every connection and drops it at once (as a Redis whose
    /// clients are killed as they log in).
    fn dropping_listener() -> (
        SocketAddr,
        std::thread::JoinHandle<()>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    // Nothing to block on that also sees `stop`.
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        (addr, thread, stop)
    }

    #[test]
    fn connections_dropped_as_they_come_up_back_off() {
        let (addr, thread, stop) = dropping_listener();
        let mut driven = Driven::new(addr, Login::default());
        let downs: Vec<_> = outages(&mut driven, 5)
            .into_iter()
            .map(|(at, _)| at)
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Release);
        thread.join().unwrap();
        // Each came up and was dropped at once: never stable, so the
        // backoff kept doubling.
        assert_backs_off(&downs);
    }

    #[test]
    fn a_connection_closed_while_idle_after_it_worked_connects_again_at_once() {
        let (_listener, mut driven, mut peer) = Driven::up(Login::default());
        assert_eq!(peer.command()[0], "CLIENT");
        peer.reply(b"+OK\r\n");
        driven.settle(|conn| conn.pending.is_empty());
        // Up long enough to count as working.
        let stable_at = Instant::now() + STABLE_AFTER;
        driven.conn.on_deadline(stable_at, &mut driven.events);
        assert!(driven.conn.stable);
        drop(peer);
        // Before the loop hears of the close, a command is about to be
        // sent: the check finds the connection closed.
        let give_up = Instant::now() + WAIT;
        while driven.conn.is_up() {
            assert!(Instant::now() < give_up, "the close was never seen");
            driven
                .conn
                .check_idle(Instant::now() + IDLE_CHECK, &mut driven.events);
        }
        assert!(
            matches!(&driven.events[..], [ConnEvent::Down(lost)] if lost.sent.is_empty()),
            "{:?}",
            driven.events
        );
        assert!(
            !driven.conn.in_outage(),
            "no outage: Redis closed an idle connection"
        );
        assert!(
            driven.conn.deadline().is_some_and(|d| d <= Instant::now()),
            "it connects again at once"
        );
        assert_eq!(
            driven.conn.send(&[b"PING"], 1, WAIT, Instant::now()),
            Err(1)
        );
        driven.events.clear();
        driven.until(is_up);
    }

    #[test]
    fn commands_not_written_whole_are_told_apart_from_those_sent() {
        let (_listener, mut driven, _peer) = Driven::up(Login::default());
        let now = Instant::now();
        driven.conn.send(&[b"PING"], 1, WAIT, now).unwrap();
        driven.conn.flush(&mut driven.events);
        driven.conn.send(&[b"PING"], 2, WAIT, now).unwrap();
        driven.conn.reset("the owner gave up", &mut driven.events);
        let [ConnEvent::Down(lost)] = &driven.events[..] else {
            panic!("{:?}", driven.events);
        };
        assert_eq!((&lost.sent[..], &lost.unsent[..]), (&[1][..], &[2][..]));
        assert!(!lost.unreadable);
    }

    #[test]
    fn a_reply_over_the_limits_is_reported_unreadable() {
        let (_listener, mut driven, mut peer) = Driven::up(Login::default());
        driven
            .conn
            .send(&[b"GET", b"big"], 1, WAIT, Instant::now())
            .unwrap();
        driven.conn.flush(&mut driven.events);
        assert_eq!(peer.command()[0], "CLIENT");
        peer.reply(format!("+OK\r\n${}\r\n", limits().bulk + 1).as_bytes());
        let events = driven.until(is_down);
        assert!(
            matches!(&events[..], [ConnEvent::Down(lost)] if lost.unreadable && lost.sent == [1]),
            "{events:?}"
        );
    }

    #[test]
    fn a_subscription_hands_out_messages_nobody_asked_for() {
        let (_listener, mut driven, mut peer) = Driven::up(Login::default());
        driven
            .conn
            .send(&[b"SUBSCRIBE", b"+switch-master"], 1, WAIT, Instant::now())
            .unwrap();
        driven.conn.expect_messages();
        driven.conn.flush(&mut driven.events);
        assert_eq!(peer.command()[0], "CLIENT");
        assert_eq!(peer.command(), ["SUBSCRIBE", "+switch-master"]);
        peer.reply(b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n");
        peer.reply(b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$1\r\nx\r\n");
        let events = driven.until(|e| e.len() == 2);
        assert!(matches!(&events[0], ConnEvent::Reply(1, _)), "{events:?}");
        assert!(matches!(&events[1], ConnEvent::Message(Value::Array(m)) if m.len() == 3));
    }

    #[test]
    fn a_login_that_wants_the_primary_finds_a_replica_unreachable() {
        let login = Login {
            primary_only: true,
            ..Login::default()
        };
        let (_listener, mut driven, mut peer) = Driven::up(login);
        driven
            .conn
            .send(&[b"PING"], 1, WAIT, Instant::now())
            .unwrap();
        driven.conn.flush(&mut driven.events);
        assert_eq!(peer.command()[0], "CLIENT");
        assert_eq!(peer.command(), ["ROLE"]);
        peer.reply(
            b"+OK\r\n*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n",
        );
        let events = driven.until(|e| !e.is_empty());
        assert!(
            matches!(&events[..], [ConnEvent::Down(lost)] if lost.not_primary && lost.sent == [1]),
            "{events:?}"
        );
        assert!(!driven.conn.is_up());
    }
}
