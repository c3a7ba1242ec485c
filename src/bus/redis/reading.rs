//! The node's one reader of the stream, on loop 0: its connection, and
//! the reader's decisions ([`super::reader`]) carried out: the epoch
//! check and reads sent, deliveries handed to every loop, epochs and eras
//! recorded for the loops, skipped entries counted and logged within a
//! bound.

use std::mem;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::warn;
use mio::event::Event as Readiness;
use mio::{Registry, Token};

use super::RedisSequencer;
use super::conn::{ConnEvent, REPLY_TIMEOUT, RedisConn, Tag};
use super::entry;
use super::reader::{Reader, Step};
use crate::bus::id::Run;
use crate::bus::resp::Limits;

/// How long one `XREAD` waits for entries; an idle reader checks the epoch
/// this often.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// How long the reader waits before reading on while a loop is far behind.
const BEHIND_PAUSE: Duration = Duration::from_millis(5);
/// Lines about skipped entries logged in a minute at most.
const SKIPS_LOGGED: u32 = 5;

/// The tag of the epoch check on the reader's connection…
const SYNC: Tag = 0;
/// …and of a read.
const READ: Tag = 1;

/// The reader's connection, and its decisions carried out.
pub struct Reading {
    conn: RedisConn,
    events: Vec<ConnEvent>,
    reader: Reader,
    /// The reader's decisions, carried out as soon as made.
    steps: Vec<Step>,
    /// Waiting for a loop far behind before reading on.
    paused_until: Option<Instant>,
    skips: SkipLog,
    /// Entries one read asks for.
    batch: usize,
    /// Redis refused what this node is configured with.
    refused: Option<String>,
}

impl Reading {
    /// The reader of `hub`, under `token`, its replies within `limits`.
    pub fn new(hub: &RedisSequencer, token: Token, limits: Limits, batch: usize) -> Reading {
        Reading {
            conn: RedisConn::new("reader", hub.primary(), hub.login.clone(), token, limits),
            events: Vec::new(),
            reader: Reader::new(hub.history),
            steps: Vec::new(),
            paused_until: None,
            skips: SkipLog::default(),
            batch,
            refused: None,
        }
    }

    /// Starts connecting, in loop 0's poll.
    pub fn register(&mut self, registry: &Registry, hub: &RedisSequencer) -> std::io::Result<()> {
        self.conn.register(registry, &mut self.events)?;
        self.drive(hub);
        Ok(())
    }

    /// What Redis refused since the last look.
    pub fn take_refusal(&mut self) -> Option<String> {
        self.refused.take()
    }

    /// Reads from the primary at `addr` from now on.
    pub fn follow(&mut self, addr: Option<SocketAddr>, hub: &RedisSequencer) {
        self.conn.set_addr(addr, &mut self.events);
        self.drive(hub);
    }

    /// Readiness of the connection's socket.
    pub fn on_ready(&mut self, readiness: &Readiness, hub: &RedisSequencer) {
        self.conn.on_ready(readiness, &mut self.events);
        self.drive(hub);
    }

    /// Writes what was buffered.
    pub fn flush(&mut self, hub: &RedisSequencer) {
        self.conn.flush(&mut self.events);
        self.drive(hub);
    }

    /// When [`Reading::on_deadline`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        [self.conn.deadline(), self.paused_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// A deadline has come: the connection's, or the end of a pause.
    pub fn on_deadline(&mut self, now: Instant, hub: &RedisSequencer) {
        self.conn.on_deadline(now, &mut self.events);
        if self.paused_until.is_some_and(|at| at <= now) {
            self.paused_until = None;
            let after = self.reader.position();
            self.carry_out(
                Step::Read {
                    after,
                    careful: false,
                },
                hub,
            );
        }
        self.drive(hub);
    }

    /// Carries out what the reader decided on what its connection
    /// reported.
    fn drive(&mut self, hub: &RedisSequencer) {
        while !self.events.is_empty() {
            for event in mem::take(&mut self.events) {
                match event {
                    ConnEvent::Up => self.reader.on_connected(&mut self.steps),
                    ConnEvent::Reply(SYNC, value) => {
                        self.reader.on_sync(entry::synced(value), &mut self.steps);
                    }
                    ConnEvent::Reply(_, value) => {
                        self.reader.on_read(entry::read(value), &mut self.steps);
                    }
                    ConnEvent::Down(lost) => {
                        self.paused_until = None;
                        if lost.not_primary {
                            hub.primary_failed(self.conn.addr());
                        }
                        let reading = lost.sent.contains(&READ);
                        if lost.unreadable && reading {
                            self.reader.on_unreadable();
                        }
                    }
                    ConnEvent::Unreachable => hub.primary_failed(self.conn.addr()),
                    ConnEvent::Message(_) => {}
                    ConnEvent::Refused(why) => self.refused = Some(why),
                }
                for step in mem::take(&mut self.steps) {
                    self.carry_out(step, hub);
                }
            }
        }
        if let Some(through) = self.reader.started_through()
            && hub.epochs.started().is_none()
        {
            hub.epochs.started_through(through);
            // Each loop looks whether it is ready now.
            hub.inboxes.wake_all();
        }
    }

    /// Does what the reader decided.
    #[inline(never)]
    fn carry_out(&mut self, step: Step, hub: &RedisSequencer) {
        match step {
            Step::Current(current) => {
                if hub.epochs.set_current(current) {
                    // Publishes held for the epoch check may go now.
                    hub.inboxes.wake_all();
                }
            }
            Step::Era(era) => hub.epochs.begin_era(era),
            // The loop takes its own messages right after: not woken.
            Step::HandOut(delivery) => hub.inboxes.hand_out(&delivery, Some(0)),
            Step::Stored { run, seq } => hub.epochs.note_stored(run, seq),
            Step::Log(level, text) => log::log!(level, "{text}"),
            Step::Skipped(why) => {
                hub.tally.skip();
                self.skips.note(&why, Instant::now());
            }
            Step::Foreign(why) => self.skips.note(&why, Instant::now()),
            Step::Removed(removed) => {
                for _ in 0..removed {
                    hub.tally.skip();
                }
            }
            Step::Sync => {
                let current = hub.epochs.current();
                let known = current.as_ref().map(|c| (&*c.value, c.known));
                let primary = hub.sentinel.then(|| self.conn.addr()).flatten();
                let _ = hub.commands.sync(Run::draw(), known, primary, |args| {
                    self.conn.send(args, SYNC, REPLY_TIMEOUT, Instant::now())
                });
            }
            Step::Read { .. } if hub.inboxes.any_full() => {
                self.paused_until = Some(Instant::now() + BEHIND_PAUSE);
            }
            Step::Read { after, careful } => self.read(after, careful, hub),
            Step::Reset(why) => self.conn.reset(&why, &mut self.events),
            Step::Refuse(why) => self.refused = Some(why),
        }
    }

    fn read(&mut self, after: u64, careful: bool, hub: &RedisSequencer) {
        let now = Instant::now();
        let _ = if careful {
            hub.commands.read_carefully(after, self.batch, |args| {
                self.conn.send(args, READ, REPLY_TIMEOUT, now)
            })
        } else {
            hub.commands.read(after, self.batch, READ_BLOCK, |args| {
                self.conn.send(args, READ, READ_BLOCK + REPLY_TIMEOUT, now)
            })
        };
    }
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("conn", &self.conn)
            .field("position", &self.reader.position())
            .finish_non_exhaustive()
    }
}

/// Bounds what the log says about skipped entries: at most
/// [`SKIPS_LOGGED`] lines a minute, and then how many were not told.
#[derive(Debug, Default)]
struct SkipLog {
    since: Option<Instant>,
    logged: u32,
    unlogged: u64,
}

impl SkipLog {
    /// Logs `why`, unless the minute's lines are spent: then counts it,
    /// and the first line of the next minute says how many were not told.
    fn note(&mut self, why: &str, now: Instant) {
        if self
            .since
            .is_none_or(|at| now >= at + Duration::from_secs(60))
        {
            if self.unlogged > 0 {
                warn!(
                    "Redis reader: {} more entries skipped \
                     (sseloop_cluster_entries_skipped_total counts them)",
                    self.unlogged
                );
            }
            *self = SkipLog {
                since: Some(now),
                ..SkipLog::default()
            };
        }
        if self.logged < SKIPS_LOGGED {
            self.logged += 1;
            warn!("Redis reader: skipped {why}");
        } else {
            self.unlogged += 1;
        }
    }
}
