//! A loop's publishing connection: it loads the publish script each time
//! it connects, sends the publishes queued for its loop (a thread's, on
//! loop 0) with the epoch and the newest entry the node knows, and turns
//! Redis's replies into answers. A publish is answered with its id only
//! once Redis has stored it; a connection lost with publishes in flight
//! answers them "unavailable" (they may or may not have been stored).

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use log::{debug, warn};
use mio::event::Event as Readiness;
use mio::{Registry, Token};

use super::RedisSequencer;
use super::conn::{ConnEvent, Login, REPLY_TIMEOUT, RedisConn};
use super::entry::{self, Stored};
use super::scripts::Commands;
use crate::bus::id::{EventId, Run};
use crate::bus::resp::Limits;
use crate::bus::{Message, PublishError, Ticket};
use crate::sse::Event;

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
    pub event: Event,
    /// Who waits for the id.
    pub answer: Answer,
}

/// What a command on the publishing connection was for.
enum Tag {
    /// Loading the publish script.
    Script,
    /// A publish, in epoch `run`, of an event its publisher named `name`
    /// (its id), if it did.
    Publish {
        answer: Answer,
        run: Run,
        name: Option<Arc<str>>,
    },
}

/// One loop's publishing connection.
pub struct Writer {
    conn: RedisConn<Tag>,
    events: Vec<ConnEvent<Tag>>,
    /// The publish script's SHA on this connection, once loaded.
    script: Option<Vec<u8>>,
    /// Answers for the loop to take.
    answers: VecDeque<Message>,
    /// Redis refused what this node is configured with (the login, the
    /// script).
    refused: Option<String>,
}

impl Writer {
    /// Loop `index`'s connection to `addr`, under `token`.
    pub fn new(index: usize, addr: SocketAddr, login: Login, token: Token, limits: Limits) -> Self {
        let role = format!("loop{index}");
        Writer {
            conn: RedisConn::new(&role, addr, login, token, limits),
            events: Vec::new(),
            script: None,
            answers: VecDeque::new(),
            refused: None,
        }
    }

    /// Starts connecting, in the loop's poll.
    pub fn register(&mut self, registry: &Registry, hub: &RedisSequencer) -> io::Result<()> {
        self.conn.register(registry, &mut self.events)?;
        self.drive(hub);
        Ok(())
    }

    /// Connected, with the script loaded: publishes can be sent.
    pub fn is_ready(&self) -> bool {
        self.script.is_some()
    }

    /// Sends a publish, or answers it "unavailable" when it cannot be
    /// sent now.
    pub fn send(&mut self, unsent: Unsent, hub: &RedisSequencer) {
        let Unsent { event, answer } = unsent;
        let (Some(sha), Some(current)) = (&self.script, hub.epochs.current()) else {
            return answer.send(Err(PublishError::Unavailable), &mut self.answers);
        };
        let run = current.epoch.run();
        let name = event.id().map(Arc::from);
        let tag = Tag::Publish { answer, run, name };
        let sent = hub
            .commands
            .publish(sha, run, current.known, &event, |args| {
                self.conn.send(args, tag, REPLY_TIMEOUT, Instant::now())
            });
        if let Err(Tag::Publish { answer, .. }) = sent {
            answer.send(Err(PublishError::Unavailable), &mut self.answers);
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

    /// The connection's deadline has come (or passed).
    pub fn on_deadline(&mut self, now: Instant, hub: &RedisSequencer) {
        self.conn.on_deadline(now, &mut self.events);
        self.drive(hub);
    }

    /// Writes what was sent.
    pub fn flush(&mut self, hub: &RedisSequencer) {
        self.conn.flush(&mut self.events);
        self.drive(hub);
    }

    /// When [`Writer::on_deadline`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        self.conn.deadline()
    }

    fn drive(&mut self, hub: &RedisSequencer) {
        while !self.events.is_empty() {
            for event in mem::take(&mut self.events) {
                match event {
                    ConnEvent::Up => {
                        let _ = Commands::load_publish(|args| {
                            self.conn
                                .send(args, Tag::Script, REPLY_TIMEOUT, Instant::now())
                        });
                    }
                    ConnEvent::Reply(Tag::Script, value) => match entry::loaded(value) {
                        Ok(sha) => self.script = Some(sha),
                        Err((why, transient)) => {
                            if !transient {
                                self.refused = Some(why.clone());
                            }
                            self.conn.reset(&why, &mut self.events);
                        }
                    },
                    ConnEvent::Reply(Tag::Publish { answer, run, name }, value) => {
                        let stored = self.stored(run, name, entry::stored(&value), hub);
                        answer.send(stored, &mut self.answers);
                    }
                    ConnEvent::Down(lost) => {
                        self.script = None;
                        for tag in lost {
                            if let Tag::Publish { answer, .. } = tag {
                                answer.send(Err(PublishError::Unavailable), &mut self.answers);
                            }
                        }
                    }
                    ConnEvent::Refused(why) => self.refused = Some(why),
                }
            }
        }
    }

    /// The id of a publish Redis answered, if it was stored: its
    /// publisher's, or the hub's of its entry.
    fn stored(
        &mut self,
        run: Run,
        name: Option<Arc<str>>,
        stored: Stored,
        hub: &RedisSequencer,
    ) -> Result<EventId, PublishError> {
        match stored {
            Stored::At(seq) => {
                hub.epochs.note_stored(run, seq);
                let id = name.map_or(EventId::new(run, seq), EventId::named);
                hub.tally.count(&id);
                return Ok(id);
            }
            Stored::ScriptGone => {
                // Flushed from Redis: the next connection loads it again.
                self.conn
                    .reset("the publish script is gone", &mut self.events);
            }
            Stored::Refused {
                why,
                expected: true,
            } => debug!("publish refused by Redis: {why}"),
            Stored::Refused { why, .. } => warn!("publish refused by Redis: {why}"),
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
            .finish_non_exhaustive()
    }
}
