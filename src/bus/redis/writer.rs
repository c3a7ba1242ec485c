//! A loop's publishing connection: it loads the publish script each time
//! it connects, sends the publishes queued for its loop (a thread's, on
//! loop 0) with the epoch and the newest entry the node knows, and turns
//! Redis's replies into answers. A publish is answered with its id only
//! once Redis has stored it, and, with `--redis-replicas N`, once `WAIT`
//! says N replicas have it.
//!
//! A publish waits at most the publish timeout for all of that. One that
//! comes while the connection is coming back after Redis closed it idle is
//! held and sent once it is up; while Redis cannot be reached (a connect
//! failed, or a connection broke with commands in flight) it is answered
//! "unavailable" at once, as is every publish in flight on a connection
//! that broke: those may or may not have been stored, and a retry with
//! the same key is answered with the first one's id.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::event::Event as Readiness;
use mio::{Registry, Token};

use super::RedisSequencer;
use super::conn::{ConnEvent, Lost, REPLY_TIMEOUT, RedisConn, Tag};
use super::entry::{self, Stored};
use super::scripts::Commands;
use crate::bus::id::{EventId, Run};
use crate::bus::resp::{Limits, Value};
use crate::bus::{Message, Publish, PublishError, Ticket};

/// Where the answer to a publish goes.
#[derive(Debug)]
pub enum Answer {
    /// To a loop's connection, as a message to the loop.
    Loop(Ticket),
    /// To a thread waiting for it.
    Thread(SyncSender<Result<EventId, PublishError>>),
}

impl Answer {
    /// Gives the answer; a loop's goes to `messages`, for the loop to take.
    pub fn send(self, result: Result<EventId, PublishError>, messages: &mut VecDeque<Message>) {
        match self {
            Answer::Loop(ticket) => messages.push_back(Message::Confirmed(ticket, result)),
            // A thread that gave up waiting has gone: nobody to tell.
            Answer::Thread(waiting) => drop(waiting.send(result)),
        }
    }
}

/// A publish waiting for its loop's connection to send it.
#[derive(Debug)]
pub struct Unsent {
    /// What to store.
    pub publish: Publish,
    /// Who waits for the id.
    pub answer: Answer,
    /// When it is answered "unavailable" if Redis has not confirmed it.
    pub due: Instant,
}

/// A publish on its way: held, sent, or stored and waiting for `WAIT`.
#[derive(Debug)]
struct Job {
    serial: u64,
    publish: Publish,
    /// `None` once answered (on time or not, its reply is still awaited).
    answer: Option<Answer>,
    due: Instant,
    /// The epoch it was sent in: its run and value.
    run: Run,
    value: Option<Arc<str>>,
    /// Its id, once Redis stored it (while `WAIT` is awaited).
    stored: Option<EventId>,
}

/// What a command on the publishing connection was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    /// Loading the publish script.
    Script,
    /// The publish with this serial.
    Publish(u64),
    /// `WAIT` for the publishes sent up to this serial.
    Wait(u64),
}

impl Command {
    /// The connection's tag for it: 0 the script, the serial shifted
    /// left, with the low bit set for a `WAIT`.
    fn tag(self) -> Tag {
        match self {
            Command::Script => 0,
            Command::Publish(serial) => serial << 1,
            Command::Wait(serial) => (serial << 1) | 1,
        }
    }

    fn of(tag: Tag) -> Command {
        match tag {
            0 => Command::Script,
            tag if tag & 1 == 1 => Command::Wait(tag >> 1),
            tag => Command::Publish(tag >> 1),
        }
    }
}

/// One loop's publishing connection.
pub struct Writer {
    conn: RedisConn,
    events: Vec<ConnEvent>,
    /// The publish script's SHA (the same on every server), once a
    /// server gave it.
    sha: Option<Vec<u8>>,
    /// `SCRIPT LOAD` was sent on this connection: `EVALSHA` may follow.
    loaded: bool,
    /// Publishes not yet sent, in order.
    held: VecDeque<Job>,
    /// Publishes sent and not yet resolved, in order.
    sent: VecDeque<Job>,
    /// Numbers the jobs.
    serials: u64,
    /// Answers for the loop to take.
    answers: VecDeque<Message>,
    /// Redis refused what this node is configured with (the login, the
    /// script).
    refused: Option<String>,
    /// A `WAIT` found fewer replicas than asked for, and none since found
    /// enough: logged once.
    short_of_replicas: bool,
    /// Redis refused publishes in this epoch (it changed, began on another
    /// primary, or lost events): they wait, held, for the next epoch check.
    stale: Option<Arc<str>>,
}

impl Writer {
    /// Loop `index`'s connection, under `token`.
    pub fn new(index: usize, hub: &RedisSequencer, token: Token, limits: Limits) -> Self {
        let role = format!("loop{index}");
        Writer {
            conn: RedisConn::new(&role, hub.primary(), hub.login.clone(), token, limits),
            events: Vec::new(),
            sha: None,
            loaded: false,
            held: VecDeque::new(),
            sent: VecDeque::new(),
            serials: 0,
            answers: VecDeque::new(),
            refused: None,
            short_of_replicas: false,
            stale: None,
        }
    }

    /// Starts connecting, in the loop's poll.
    pub fn register(&mut self, registry: &Registry, hub: &RedisSequencer) -> io::Result<()> {
        self.conn.register(registry, &mut self.events)?;
        self.drive(hub);
        Ok(())
    }

    /// A server gave the script's SHA: publishes can be sent.
    pub fn is_ready(&self) -> bool {
        self.sha.is_some()
    }

    /// Takes publishes to send: now if the connection is up, once it is
    /// back if it is coming back, else answered "unavailable".
    pub fn send(&mut self, unsent: impl IntoIterator<Item = Unsent>, hub: &RedisSequencer) {
        for Unsent {
            publish,
            answer,
            due,
        } in unsent
        {
            self.serials += 1;
            self.held.push_back(Job {
                serial: self.serials,
                publish,
                answer: Some(answer),
                due,
                run: Run::NONE,
                value: None,
                stored: None,
            });
        }
        if self.held.is_empty() {
            return;
        }
        // Redis may have closed the connection while it was idle: find out
        // before giving it the publishes.
        self.conn.check_idle(Instant::now(), &mut self.events);
        self.drive(hub);
        self.pump(hub);
    }

    /// Sends what is held, if the connection can take it; answers it
    /// "unavailable" if Redis cannot be reached.
    pub fn pump(&mut self, hub: &RedisSequencer) {
        if self.held.is_empty() {
            return;
        }
        let current = hub.epochs.current();
        let (Some(sha), Some(current)) = (&self.sha, current) else {
            return self.refuse_held();
        };
        if !(self.conn.is_up() && self.loaded) {
            if self.conn.in_outage() {
                self.refuse_held();
            }
            return;
        }
        if self.stale.as_ref() == Some(&current.value) {
            // Refused in this epoch: the next epoch check tells where
            // they go.
            return;
        }
        self.stale = None;
        let primary = hub.sentinel.then(|| self.conn.addr()).flatten();
        let now = Instant::now();
        let mut last = None;
        let mut earliest = None;
        while let Some(mut job) = self.held.pop_front() {
            if job.answer.is_none() {
                continue;
            }
            job.run = current.run;
            job.value = Some(Arc::clone(&current.value));
            let sent = hub
                .commands
                .publish(sha, &current, &job.publish, primary, |args| {
                    self.conn
                        .send(args, Command::Publish(job.serial).tag(), REPLY_TIMEOUT, now)
                });
            if sent.is_err() {
                self.held.push_front(job);
                break;
            }
            last = Some(job.serial);
            earliest = Some(earliest.map_or(job.due, |e: Instant| e.min(job.due)));
            self.sent.push_back(job);
        }
        if let (Some(last), Some(earliest)) = (last, earliest)
            && hub.replicas > 0
        {
            // One WAIT after the batch covers every publish before it on
            // this connection; it waits as long as the first may.
            let wait = earliest
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let replicas = hub.replicas.to_string();
            let millis = wait.as_millis().to_string();
            let args: [&[u8]; 3] = [b"WAIT", replicas.as_bytes(), millis.as_bytes()];
            let _ = self
                .conn
                .send(&args, Command::Wait(last).tag(), wait + REPLY_TIMEOUT, now);
        }
    }

    /// Answers every held publish "unavailable".
    #[inline(never)]
    fn refuse_held(&mut self) {
        for job in mem::take(&mut self.held) {
            if let Some(answer) = job.answer {
                answer.send(Err(PublishError::Unavailable), &mut self.answers);
            }
        }
    }

    /// The loop is stopping: every publish still waiting is answered
    /// "unavailable" (those in flight may yet be stored).
    pub fn abandon(&mut self) {
        self.refuse_held();
        for job in &mut self.sent {
            if let Some(answer) = job.answer.take() {
                answer.send(Err(PublishError::Unavailable), &mut self.answers);
            }
        }
    }

    /// The next answer for the loop.
    pub fn next_answer(&mut self) -> Option<Message> {
        self.answers.pop_front()
    }

    /// Whether answers wait for the loop.
    pub fn has_answers(&self) -> bool {
        !self.answers.is_empty()
    }

    /// What Redis refused since the last call.
    pub fn take_refusal(&mut self) -> Option<String> {
        self.refused.take()
    }

    /// Readiness of the connection's socket.
    pub fn on_ready(&mut self, readiness: &Readiness, hub: &RedisSequencer) {
        self.conn.on_ready(readiness, &mut self.events);
        self.drive(hub);
    }

    /// A deadline has come (or passed): the connection's, or a publish's.
    pub fn on_deadline(&mut self, now: Instant, hub: &RedisSequencer) {
        self.conn.on_deadline(now, &mut self.events);
        self.drive(hub);
        for job in self.held.iter_mut().chain(self.sent.iter_mut()) {
            if job.due <= now
                && let Some(answer) = job.answer.take()
            {
                answer.send(Err(PublishError::Unavailable), &mut self.answers);
            }
        }
        self.held.retain(|job| job.answer.is_some());
    }

    /// Writes what was sent.
    pub fn flush(&mut self, hub: &RedisSequencer) {
        self.conn.flush(&mut self.events);
        self.drive(hub);
    }

    /// When [`Writer::on_deadline`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        // Jobs are in the order they came, so the first waiting in each
        // list is the first due.
        let first = |jobs: &VecDeque<Job>| jobs.iter().find(|j| j.answer.is_some()).map(|j| j.due);
        [self.conn.deadline(), first(&self.held), first(&self.sent)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Follows the primary to `addr`: the connection to another ends.
    pub fn follow(&mut self, addr: Option<std::net::SocketAddr>, hub: &RedisSequencer) {
        self.conn.set_addr(addr, &mut self.events);
        self.drive(hub);
    }

    fn drive(&mut self, hub: &RedisSequencer) {
        while !self.events.is_empty() {
            for event in mem::take(&mut self.events) {
                match event {
                    ConnEvent::Up => {
                        let _ = Commands::load_publish(|args| {
                            let tag = Command::Script.tag();
                            self.conn.send(args, tag, REPLY_TIMEOUT, Instant::now())
                        });
                        self.loaded = true;
                        self.pump(hub);
                    }
                    ConnEvent::Reply(tag, value) => match Command::of(tag) {
                        Command::Script => self.on_loaded(value, hub),
                        Command::Publish(serial) => self.on_stored(serial, &value, hub),
                        Command::Wait(through) => self.on_replicated(through, &value, hub),
                    },
                    ConnEvent::Down(lost) => {
                        if lost.not_primary {
                            hub.primary_failed(self.conn.addr());
                        }
                        self.on_lost(&lost);
                    }
                    ConnEvent::Unreachable => {
                        hub.primary_failed(self.conn.addr());
                        if self.conn.in_outage() {
                            self.refuse_held();
                        }
                    }
                    ConnEvent::Message(_) => {}
                    ConnEvent::Refused(why) => self.refused = Some(why),
                }
            }
        }
    }

    /// `SCRIPT LOAD` answered.
    fn on_loaded(&mut self, value: Value, hub: &RedisSequencer) {
        match entry::loaded(value) {
            Ok(sha) => {
                self.sha = Some(sha);
                self.pump(hub);
            }
            Err((why, transient)) => {
                if !transient {
                    self.refused = Some(why.clone());
                }
                self.conn.reset(&why, &mut self.events);
            }
        }
    }

    /// The connection is gone: what it had not resolved is answered
    /// "unavailable", unless it cannot have reached Redis and the
    /// connection is coming back (then it is sent again).
    #[inline(never)]
    fn on_lost(&mut self, lost: &Lost) {
        self.loaded = false;
        let coming_back = !self.conn.in_outage();
        let mut again = Vec::new();
        for mut job in mem::take(&mut self.sent) {
            let Some(answer) = job.answer.take() else {
                continue;
            };
            let unsent = lost.unsent.contains(&Command::Publish(job.serial).tag());
            if unsent && coming_back {
                job.answer = Some(answer);
                job.stored = None;
                again.push(job);
            } else {
                answer.send(Err(PublishError::Unavailable), &mut self.answers);
            }
        }
        for job in again.into_iter().rev() {
            self.held.push_front(job);
        }
        if !coming_back {
            self.refuse_held();
        }
    }

    /// Redis answered publish `serial`.
    fn on_stored(&mut self, serial: u64, value: &Value, hub: &RedisSequencer) {
        let Some(at) = self.sent.iter().position(|j| j.serial == serial) else {
            return;
        };
        let stored = entry::stored(value);
        if let Stored::Refused { why, .. } = &stored
            && ["SSELOOP-EPOCH", "SSELOOP-MOVED", "SSELOOP-BEHIND"]
                .iter()
                .any(|refusal| why.starts_with(refusal))
        {
            // Not stored: it goes again once the epoch check has said
            // which epoch it goes in.
            debug!("publish refused by Redis: {why}");
            if let Some(mut job) = self.sent.remove(at)
                && job.answer.is_some()
            {
                self.stale = job.value.take();
                let before = self.held.partition_point(|j| j.serial < job.serial);
                self.held.insert(before, job);
            }
            return;
        }
        let job = &self.sent[at];
        let (keyed, run) = (job.publish.key.is_some(), job.run);
        let name = job.publish.event.id().map(Arc::from);
        let result = self.stored(keyed, run, name, stored, hub);
        match result {
            Ok(id) if hub.replicas > 0 => self.sent[at].stored = Some(id),
            result => {
                if let Some(job) = self.sent.remove(at)
                    && let Some(answer) = job.answer
                {
                    answer.send(result, &mut self.answers);
                }
            }
        }
    }

    /// `WAIT` answered for the publishes sent up to `through`.
    #[inline(never)]
    fn on_replicated(&mut self, through: u64, value: &Value, hub: &RedisSequencer) {
        let enough = matches!(value, Value::Integer(n) if *n >= hub.replicas as i64);
        if enough {
            self.short_of_replicas = false;
        } else if !self.short_of_replicas {
            self.short_of_replicas = true;
            warn!(
                "Redis: fewer than {} replicas confirmed a publish in time ({value:?}): \
                 publishes are refused until they do",
                hub.replicas
            );
        }
        while self.sent.front().is_some_and(|j| j.serial <= through) {
            let Some(job) = self.sent.pop_front() else {
                break;
            };
            let (Some(answer), Some(id)) = (job.answer, job.stored) else {
                continue;
            };
            let result = if enough {
                Ok(id)
            } else {
                Err(PublishError::Unavailable)
            };
            answer.send(result, &mut self.answers);
        }
    }

    /// The id of a publish Redis answered, if it was stored: its
    /// publisher's (`name`), or the hub's of its entry.
    #[inline(never)]
    fn stored(
        &mut self,
        keyed: bool,
        run: Run,
        name: Option<Arc<str>>,
        stored: Stored,
        hub: &RedisSequencer,
    ) -> Result<EventId, PublishError> {
        match stored {
            Stored::At { seq, removed } => {
                if removed > 0 {
                    warn!(
                        "Redis: removed {removed} entries with ids sseloop does not number \
                         (another program's XADD *) from the stream"
                    );
                    // Gone before any reader could skip them: this node says so.
                    for _ in 0..removed {
                        hub.tally.skip();
                    }
                }
                hub.epochs.note_stored(run, seq);
                let id = name.map_or(EventId::new(run, seq), EventId::named);
                hub.tally.count(&id);
                return Ok(id);
            }
            Stored::Again {
                seq,
                run,
                name: first,
            } => {
                debug_assert!(keyed, "only a keyed publish is found again");
                // The first event's id, whatever this publish named its own.
                return Ok(first.map_or(EventId::new(run, seq), EventId::named));
            }
            Stored::ScriptGone => {
                // Flushed from Redis: the next connection loads it again.
                self.conn
                    .reset("the publish script is gone", &mut self.events);
            }
            Stored::Refused { why, .. } if why.starts_with("SSELOOP-TOO-LARGE") => {
                return Err(PublishError::TooLarge);
            }
            Stored::Refused {
                why,
                expected: true,
            } => debug!("publish refused by Redis: {why}"),
            Stored::Refused { why, .. } => {
                if why.starts_with("READONLY") {
                    hub.primary_failed(self.conn.addr());
                }
                warn!("publish refused by Redis: {why}");
            }
            Stored::Unexpected(what) => warn!("Redis answered a publish with {what}"),
        }
        Err(PublishError::Unavailable)
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("conn", &self.conn)
            .field("ready", &self.is_ready())
            .field("held", &self.held.len())
            .field("sent", &self.sent.len())
            .finish_non_exhaustive()
    }
}
