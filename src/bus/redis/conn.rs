//! One connection to Redis, driven by the loop that owns it: a non-blocking
//! TCP socket registered in the loop's poll, commands written from a
//! buffer, replies decoded with `resp` and matched in order with what asked
//! for them. Each time it connects it logs in (`AUTH`, `SELECT`, pipelined
//! ahead of everything else); a connect or a reply that takes too long, a
//! broken socket or a reply nobody asked for ends the connection, and it
//! connects again after a backoff that doubles up to a bound. It never
//! blocks, and it owns nothing but its socket and buffers: what the replies
//! mean is its owner's business. What a read, a write or a connect gave is
//! `net`'s to say.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event as Readiness;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::bus::resp::{self, Limits, Scanner, Value};
use crate::net::{self, Connecting, ReadOutcome, WriteOutcome};

/// Longest a TCP connect to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest Redis may take to answer a command (beyond the time a command
/// asks Redis to wait, as `XREAD BLOCK` does).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before connecting again, doubled after each failure…
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// …up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Bytes read per read call.
const READ_CHUNK: usize = 64 << 10;

/// How to log in after connecting.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// ACL user, with `password`.
    pub user: Option<String>,
    /// `AUTH` when set.
    pub password: Option<String>,
    /// `SELECT` when not 0.
    pub db: u32,
}

impl Login {
    /// The login commands, encoded, and how many replies they bring. The
    /// connection is named `client` (in `CLIENT LIST`, for operators).
    fn commands(&self, client: &str) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut count = 0;
        if let Some(password) = &self.password {
            match &self.user {
                Some(user) => {
                    resp::command(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => resp::command(&mut out, &[b"AUTH", password.as_bytes()]),
            }
            count += 1;
        }
        if self.db != 0 {
            resp::command(&mut out, &[b"SELECT", self.db.to_string().as_bytes()]);
            count += 1;
        }
        resp::command(&mut out, &[b"CLIENT", b"SETNAME", client.as_bytes()]);
        count += 1;
        (out, count)
    }
}

/// Whether an error reply says Redis cannot serve now but will (loading
/// its data after a restart, busy with a script, a replica that lost its
/// master, out of client slots): worth trying again, unlike a refused
/// login or a key of the wrong type.
pub fn is_transient(error: &[u8]) -> bool {
    [
        &b"LOADING"[..],
        b"BUSY",
        b"TRYAGAIN",
        b"MASTERDOWN",
        b"ERR max number of clients",
    ]
    .iter()
    .any(|prefix| error.starts_with(prefix))
}

/// What happened on a connection, for its owner.
#[derive(Debug)]
pub enum ConnEvent<T> {
    /// Connected, the login sent: the owner may send its commands (they
    /// follow the login, which Redis answers first).
    Up,
    /// The reply to the command sent with this tag.
    Reply(T, Value),
    /// The connection is gone; these commands got no reply, so whether
    /// Redis carried them out is unknown.
    Down(Vec<T>),
    /// Redis refused the login (or the owner's set-up): connecting again
    /// will not help without a change of configuration.
    Refused(String),
}

enum Phase {
    /// Not connected; the next attempt is at `retry_at`.
    Idle { retry_at: Instant },
    /// A connect in progress, given up at `until`.
    Connecting { socket: TcpStream, until: Instant },
    /// Connected.
    Up { socket: TcpStream },
}

/// A command sent and not yet answered.
struct Pending<T> {
    /// `None`: a login command.
    tag: Option<T>,
    /// When to give up on the connection if no reply has come.
    due: Instant,
}

/// One connection to Redis.
pub struct RedisConn<T> {
    /// For the log: which connection this is.
    name: String,
    /// Its name in Redis: `sseloop-<pid>-<role>`.
    client: String,
    addr: SocketAddr,
    login: Login,
    token: Token,
    registry: Option<Registry>,
    phase: Phase,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    input: Vec<u8>,
    scanner: Scanner,
    pending: VecDeque<Pending<T>>,
    backoff: Duration,
    /// A failure was reported and no reply has come since: the log says
    /// when it ends, and stays quiet about the attempts in between.
    outage: bool,
    /// Jitter for the backoff, so that the connections of many loops and
    /// nodes do not all knock at once.
    rng: u64,
}

impl<T> RedisConn<T> {
    /// A connection to `addr` under `token`, not yet connecting (see
    /// [`RedisConn::register`]); `role` names it in the log and, as
    /// `sseloop-<pid>-<role>`, in Redis.
    pub fn new(role: &str, addr: SocketAddr, login: Login, token: Token, limits: Limits) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| u64::from(d.subsec_nanos()));
        // Nonzero, as xorshift needs.
        let rng = (clock ^ token.0 as u64) | 1;
        RedisConn {
            name: role.to_owned(),
            client: format!("sseloop-{}-{role}", std::process::id()),
            addr,
            login,
            token,
            registry: None,
            phase: Phase::Idle {
                retry_at: Instant::now(),
            },
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            scanner: Scanner::new(limits),
            pending: VecDeque::new(),
            backoff: MIN_BACKOFF,
            outage: false,
            rng,
        }
    }

    /// Keeps a handle on the loop's poll and starts connecting.
    pub fn register(
        &mut self,
        registry: &Registry,
        events: &mut Vec<ConnEvent<T>>,
    ) -> io::Result<()> {
        self.registry = Some(registry.try_clone()?);
        self.connect(Instant::now(), events);
        Ok(())
    }

    /// Whether commands can be sent now.
    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    /// Buffers a command, to be written by [`RedisConn::flush`]; `allowance`
    /// is how long its reply may take. Gives the tag back when not connected.
    pub fn send(
        &mut self,
        args: &[&[u8]],
        tag: T,
        allowance: Duration,
        now: Instant,
    ) -> Result<(), T> {
        if !self.is_up() {
            return Err(tag);
        }
        resp::command(&mut self.out, args);
        self.pending.push_back(Pending {
            tag: Some(tag),
            due: now + allowance,
        });
        Ok(())
    }

    /// Writes what is buffered, as far as the kernel takes it.
    pub fn flush(&mut self, events: &mut Vec<ConnEvent<T>>) {
        let Phase::Up { socket } = &mut self.phase else {
            return;
        };
        while self.written < self.out.len() {
            match net::write(socket, &self.out[self.written..]) {
                WriteOutcome::Wrote(n) => self.written += n,
                WriteOutcome::WouldBlock => return,
                WriteOutcome::Failed(e) => return self.fail(&format!("write: {e}"), events),
            }
        }
        self.out.clear();
        self.written = 0;
    }

    /// When [`RedisConn::on_deadline`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle { retry_at } => Some(*retry_at),
            Phase::Connecting { until, .. } => Some(*until),
            // Replies come in order: the oldest command is the one late.
            Phase::Up { .. } => self.pending.front().map(|p| p.due),
        }
    }

    /// Connects when the backoff is over; gives up on a connect or a reply
    /// that is late.
    pub fn on_deadline(&mut self, now: Instant, events: &mut Vec<ConnEvent<T>>) {
        match &self.phase {
            Phase::Idle { retry_at } if *retry_at <= now => self.connect(now, events),
            Phase::Connecting { until, .. } if *until <= now => {
                self.fail(&format!("no connection within {CONNECT_TIMEOUT:?}"), events)
            }
            Phase::Up { .. } if self.pending.front().is_some_and(|p| p.due <= now) => {
                self.fail("no reply in time", events)
            }
            _ => {}
        }
    }

    /// Readiness of the socket: a connect completes, replies are read,
    /// buffered commands written.
    pub fn on_ready(&mut self, readiness: &Readiness, events: &mut Vec<ConnEvent<T>>) {
        if let Phase::Connecting { socket, .. } = &self.phase {
            match net::connecting(socket) {
                Connecting::Done => self.connected(events),
                Connecting::InProgress => return,
                Connecting::Failed(e) => return self.fail(&format!("connect: {e}"), events),
            }
        }
        if readiness.is_readable() || readiness.is_read_closed() || readiness.is_error() {
            self.read(events);
        }
        self.flush(events);
    }

    /// Ends the connection now, as a failure (the owner found a reply it
    /// cannot use); it connects again after the backoff.
    pub fn reset(&mut self, why: &str, events: &mut Vec<ConnEvent<T>>) {
        self.fail(why, events);
    }

    fn connect(&mut self, now: Instant, events: &mut Vec<ConnEvent<T>>) {
        let Some(registry) = &self.registry else {
            return;
        };
        let mut socket = match TcpStream::connect(self.addr) {
            Ok(socket) => socket,
            Err(e) => return self.fail(&format!("connect: {e}"), events),
        };
        if let Err(e) = registry.register(
            &mut socket,
            self.token,
            Interest::READABLE.add(Interest::WRITABLE),
        ) {
            return self.fail(&format!("register: {e}"), events);
        }
        debug!("Redis {}: connecting to {}", self.name, self.addr);
        self.phase = Phase::Connecting {
            socket,
            until: now + CONNECT_TIMEOUT,
        };
    }

    fn connected(&mut self, events: &mut Vec<ConnEvent<T>>) {
        let Phase::Connecting { socket, .. } = std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                retry_at: Instant::now(),
            },
        ) else {
            return;
        };
        // Commands are small and each is waited for: no Nagle delay.
        if let Err(e) = socket.set_nodelay(true) {
            debug!("Redis {}: set_nodelay: {e}", self.name);
        }
        self.phase = Phase::Up { socket };
        let (login, replies) = self.login.commands(&self.client);
        let now = Instant::now();
        self.out.extend_from_slice(&login);
        for _ in 0..replies {
            self.pending.push_back(Pending {
                tag: None,
                due: now + REPLY_TIMEOUT,
            });
        }
        debug!("Redis {}: connected to {}", self.name, self.addr);
        events.push(ConnEvent::Up);
    }

    fn read(&mut self, events: &mut Vec<ConnEvent<T>>) {
        loop {
            let Phase::Up { socket } = &mut self.phase else {
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
                    return self.fail("Redis closed the connection", events);
                }
                ReadOutcome::Failed(e) => {
                    self.input.truncate(start);
                    return self.fail(&format!("read: {e}"), events);
                }
            };
            self.input.truncate(start + n);
            if n == 0 {
                return;
            }
            // Decoded after each read, so that the buffer holds at most one
            // partial reply (bounded by the limits) and one read.
            if !self.decode(events) {
                return;
            }
        }
    }

    /// Hands out every whole reply read so far; false when the connection
    /// had to end.
    fn decode(&mut self, events: &mut Vec<ConnEvent<T>>) -> bool {
        let mut used = 0;
        loop {
            let end = match self.scanner.scan(&self.input[used..]) {
                Ok(Some(n)) => used + n,
                Ok(None) => break,
                Err(e) => {
                    self.fail(&format!("unreadable reply: {e}"), events);
                    return false;
                }
            };
            let value = match resp::parse(&self.input[used..end]) {
                Ok(value) => value,
                Err(e) => {
                    self.fail(&format!("unreadable reply: {e}"), events);
                    return false;
                }
            };
            self.scanner.reset();
            used = end;
            let Some(pending) = self.pending.pop_front() else {
                self.fail("a reply to no command", events);
                return false;
            };
            match pending.tag {
                None => {
                    if let Some(e) = value.error() {
                        let text = String::from_utf8_lossy(e);
                        if is_transient(e) {
                            self.fail(&format!("not ready: {text}"), events);
                        } else {
                            let why = format!("login refused: {text}");
                            error!("Redis {}: {why}", self.name);
                            events.push(ConnEvent::Refused(why.clone()));
                            self.fail(&why, events);
                        }
                        return false;
                    }
                }
                Some(tag) => {
                    if value.error().is_none() {
                        self.recovered();
                    }
                    events.push(ConnEvent::Reply(tag, value));
                }
            }
        }
        self.input.drain(..used);
        true
    }

    /// A reply came: the connection works, and the next failure starts the
    /// backoff from the start.
    fn recovered(&mut self) {
        self.backoff = MIN_BACKOFF;
        if self.outage {
            self.outage = false;
            info!("Redis {}: connected to {} again", self.name, self.addr);
        }
    }

    fn fail(&mut self, why: &str, events: &mut Vec<ConnEvent<T>>) {
        let was = std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                retry_at: Instant::now(),
            },
        );
        let was_up = matches!(was, Phase::Up { .. });
        if let (Phase::Connecting { mut socket, .. } | Phase::Up { mut socket }, Some(registry)) =
            (was, &self.registry)
        {
            let _ = registry.deregister(&mut socket);
        }
        self.out.clear();
        self.written = 0;
        self.input.clear();
        self.scanner.reset();
        let lost: Vec<T> = self.pending.drain(..).filter_map(|p| p.tag).collect();
        if was_up {
            events.push(ConnEvent::Down(lost));
        }
        let wait = self.jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if self.outage {
            debug!("Redis {}: {why}; trying again in {wait:?}", self.name);
        } else {
            self.outage = true;
            warn!(
                "Redis {} at {}: {why}; trying again (every {MAX_BACKOFF:?} at most)",
                self.name, self.addr
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

impl<T> std::fmt::Debug for RedisConn<T> {
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
        conn: RedisConn<u32>,
        poll: Poll,
        events: Vec<ConnEvent<u32>>,
    }

    impl Driven {
        fn new(addr: SocketAddr, login: Login) -> Driven {
            let poll = Poll::new().unwrap();
            let mut driven = Driven {
                conn: RedisConn::new("test", addr, login, TOKEN, limits()),
                poll,
                events: Vec::new(),
            };
            driven
                .conn
                .register(driven.poll.registry(), &mut driven.events)
                .unwrap();
            driven
        }

        /// Drives the connection as its loop does (readiness, a flush
        /// before each poll, deadlines) until `done` says so of what it
        /// reported; returns that, taken.
        fn until(&mut self, done: impl Fn(&[ConnEvent<u32>]) -> bool) -> Vec<ConnEvent<u32>> {
            let give_up = Instant::now() + WAIT;
            let mut readiness = Events::with_capacity(8);
            while !done(&self.events) {
                assert!(Instant::now() < give_up, "only {:?}", self.events);
                self.conn.flush(&mut self.events);
                let timeout = self
                    .conn
                    .deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or(WAIT)
                    .min(Duration::from_millis(50));
                net::poll(&mut self.poll, &mut readiness, Some(timeout)).unwrap();
                for event in readiness.iter() {
                    assert_eq!(event.token(), TOKEN);
                    self.conn.on_ready(event, &mut self.events);
                }
                self.conn.on_deadline(Instant::now(), &mut self.events);
            }
            std::mem::take(&mut self.events)
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

    #[test]
    fn redis_busy_is_tried_again_a_wrong_setup_is_not() {
        for busy in [
            &b"LOADING Redis is loading the dataset in memory"[..],
            b"BUSY Redis is busy running a script",
            b"MASTERDOWN Link with MASTER is down",
        ] {
            assert!(is_transient(busy));
        }
        for wrong in [
            &b"WRONGPASS invalid username-password pair"[..],
            b"NOAUTH Authentication required.",
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
            b"SSELOOP-FOREIGN k holds entries sseloop did not add",
        ] {
            assert!(!is_transient(wrong));
        }
    }

    fn is_up(events: &[ConnEvent<u32>]) -> bool {
        events.iter().any(|e| matches!(e, ConnEvent::Up))
    }

    #[test]
    fn it_logs_in_then_matches_replies_to_commands_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let login = Login {
            user: Some("node".into()),
            password: Some("s3cret".into()),
            db: 2,
        };
        let mut driven = Driven::new(listener.local_addr().unwrap(), login);
        driven.until(is_up);
        let mut peer = Peer::accept(&listener);
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let login = Login {
            password: Some("wrong".into()),
            ..Login::default()
        };
        let mut driven = Driven::new(listener.local_addr().unwrap(), login);
        driven.until(is_up);
        let mut peer = Peer::accept(&listener);
        driven
            .conn
            .send(&[b"PING"], 1, WAIT, Instant::now())
            .unwrap();
        assert_eq!(peer.command(), ["AUTH", "wrong"]);
        peer.reply(b"-WRONGPASS invalid username-password pair\r\n");
        let events = driven.until(|e| e.iter().any(|e| matches!(e, ConnEvent::Down(_))));
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
                .any(|e| matches!(e, ConnEvent::Down(lost) if lost == &[1])),
            "{events:?}"
        );
        assert!(!driven.conn.is_up());
    }

    #[test]
    fn a_lost_connection_gives_back_what_was_unanswered_and_connects_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut driven = Driven::new(listener.local_addr().unwrap(), Login::default());
        driven.until(is_up);
        let mut peer = Peer::accept(&listener);
        let now = Instant::now();
        driven.conn.send(&[b"PING"], 1, WAIT, now).unwrap();
        driven.conn.send(&[b"PING"], 2, WAIT, now).unwrap();
        driven.conn.flush(&mut driven.events);
        assert_eq!(peer.command()[0], "CLIENT");
        assert_eq!(peer.command(), ["PING"]);
        peer.reply(b"+OK\r\n+PONG\r\n");
        drop(peer);
        let events = driven.until(|e| e.iter().any(|e| matches!(e, ConnEvent::Down(_))));
        assert!(matches!(&events[0], ConnEvent::Reply(1, _)), "{events:?}");
        assert!(matches!(&events[1], ConnEvent::Down(lost) if lost == &[2]));
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut driven = Driven::new(listener.local_addr().unwrap(), Login::default());
        driven.until(is_up);
        let mut peer = Peer::accept(&listener);
        let allowance = Duration::from_millis(100);
        driven
            .conn
            .send(&[b"PING"], 1, allowance, Instant::now())
            .unwrap();
        assert_eq!(peer.command()[0], "CLIENT");
        peer.reply(b"+OK\r\n");
        let started = Instant::now();
        let events = driven.until(|e| e.iter().any(|e| matches!(e, ConnEvent::Down(_))));
        assert!(started.elapsed() >= allowance);
        assert!(matches!(&events[..], [ConnEvent::Down(lost)] if lost == &[1]));
    }

    #[test]
    fn a_reply_to_no_command_or_garbage_ends_the_connection() {
        for stray in [&b"+SURPRISE\r\n"[..], b"?what\r\n"] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut driven = Driven::new(listener.local_addr().unwrap(), Login::default());
            driven.until(is_up);
            let mut peer = Peer::accept(&listener);
            assert_eq!(peer.command()[0], "CLIENT");
            peer.reply(b"+OK\r\n");
            peer.reply(stray);
            let events = driven.until(|e| e.iter().any(|e| matches!(e, ConnEvent::Down(_))));
            assert!(
                matches!(&events[..], [ConnEvent::Down(lost)] if lost.is_empty()),
                "{events:?}"
            );
        }
    }

    #[test]
    fn nobody_listening_is_retried_without_a_report() {
        // A port that was free a moment ago: the connect is refused.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut driven = Driven::new(addr, Login::default());
        let give_up = Instant::now() + Duration::from_millis(300);
        let mut readiness = Events::with_capacity(8);
        while Instant::now() < give_up {
            net::poll(
                &mut driven.poll,
                &mut readiness,
                Some(Duration::from_millis(20)),
            )
            .unwrap();
            for event in readiness.iter() {
                driven.conn.on_ready(event, &mut driven.events);
            }
            driven.conn.on_deadline(Instant::now(), &mut driven.events);
        }
        assert!(!driven.conn.is_up());
        // Never up, so nothing was lost: no report until it connects.
        assert!(driven.events.is_empty(), "{:?}", driven.events);
        assert!(driven.conn.deadline().is_some(), "a retry is due");
    }
}
