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
//! - `<key>:epoch`, a string: the current epoch ([`epoch`]): 12 hex
//!   digits drawn by the node that began it, the run part of its ids, and
//!   where it began. An event's id is `urn:sseloop:<run>-<seq>`, or the id
//!   its publisher gave it, kept in the entry's `id` field.
//! - `<key>:keys`, a sorted set: the keys publishers gave their events
//!   (`Idempotency-Key`, a Mercure update's `id` with the update),
//!   scored by the event's sequence number, for as long as the event is
//!   in the stream.
//!
//! A Redis that lost its data (flushed, or restarted without persistence)
//! has no epoch: the next node to look draws a new one, and the old ids get
//! `reset` (`other-run`), never a replay of other events under the same
//! ids. A Redis restored from an older snapshot has the epoch but a stream
//! behind what the nodes had read from it; with Sentinel, a promoted
//! replica may lack the last entries the nodes read from the old primary.
//! In both cases the next node to look begins a new epoch that continues
//! the stream after its last entry: the old ids up to there keep naming
//! their events, the numbers after it are the new epoch's, and no id ever
//! names two events. The checks run in Lua ([`scripts`]).
//!
//! With Sentinel (`redis+sentinel://`), loop 0 finds the primary through
//! the Sentinels and follows it ([`watch`], [`sentinel`]); every
//! connection of every loop goes to the primary it names, and checks with
//! `ROLE` that it is one.
//!
//! # In a node
//!
//! The [`RedisSequencer`] is the node's side of the hub's door: it queues
//! a loop's publish for that loop's publishing connection, a thread's for
//! loop 0's ([`writer`]), where the script adds it; it is answered with
//! its id only once Redis has stored it ([`Offer::Pending`], then
//! [`Message::Confirmed`](crate::bus::Message::Confirmed)) and, with `--redis-replicas N`, once `WAIT`
//! says N replicas have it; with the connection down the answer is 503
//! ([`PublishError::Unavailable`], also for publishes in flight: those may
//! or may not have been stored), and after `--publish-timeout` too.
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
//! (the reader's decisions) and [`reading`] (its connection),
//! [`sentinel`] (the discovery's decisions) and [`watch`] (its
//! connections), [`entry`] (replies decoded), [`conn`] (one connection),
//! [`events`] (what it tells its owner) and [`login`], [`side`] (a loop's
//! bus, which drives them); here, the sequencer.

pub mod conn;
pub mod entry;
pub mod epoch;
pub mod events;
pub mod link;
pub mod login;
pub mod reader;
pub mod reading;
pub mod scripts;
pub mod sentinel;
pub mod side;
#[cfg(feature = "tls")]
pub mod tls;
pub mod watch;
pub mod writer;

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use self::conn::Login;
use self::epoch::Epochs;
use self::link::Tls;
use self::scripts::{Commands, MAX_ENTRY_BYTES};
pub use self::side::RedisBus;
use self::watch::Sentinels;
use self::writer::{Answer, Unsent};
use crate::bus::inbox::Inboxes;
use crate::bus::resp::Limits;
use crate::bus::{Asker, Bus, Offer, Publish, PublishError, Sequencer, Tally};
use crate::config::{Cluster, Config, RedisTarget};

/// Least length the stream is capped at, whatever `--history` says: every
/// node's reader must find each entry there, however briefly it was away.
pub const STREAM_MIN_LEN: usize = 1024;
/// Bytes one reply may hold, bounding the reader's buffer.
const MAX_REPLY: usize = 32 << 20;
/// Entries one read asks for: as many as fit in a reply at the largest
/// an entry may be.
const READ_BATCH: usize = MAX_REPLY / (MAX_ENTRY_BYTES + 1024);
/// Elements one array of a reply may hold: a read's entries, an entry's
/// fields and values. An entry with more fields is read carefully.
const MAX_ARRAY: usize = 256;
/// How far ahead of what this node has seen an id of the current epoch
/// may be and still be placed (as an event on its way here): another node
/// may have issued it a moment ago. Further ahead, it is `invalid`.
pub const CLUSTER_LEAD: u64 = 1 << 16;
/// Longest a thread's publish waits for its answer.
const THREAD_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster's sequencer, and what every loop of a node shares about the
/// cluster: where the primary is, the keys, the epochs, the publishes
/// waiting for each loop's connection, and the inboxes the reader hands
/// deliveries to.
#[derive(Debug)]
pub struct RedisSequencer {
    /// The primary every connection uses; `None` while it is not known.
    primary: Mutex<Option<SocketAddr>>,
    /// How many times the primary changed: each loop follows when this
    /// moves.
    moves: AtomicU64,
    /// A data connection found this primary failing (with Sentinel, for
    /// loop 0's watch).
    failed: Mutex<Option<SocketAddr>>,
    /// The Sentinels, when the primary is found through them.
    sentinels: Option<Sentinels>,
    /// Whether it is (a shorthand for `sentinels.is_some()`).
    sentinel: bool,
    login: Login,
    commands: Commands,
    /// Events each loop keeps for replay.
    history: usize,
    /// Replicas a publish waits for (`WAIT`).
    replicas: usize,
    /// Longest a publish waits for Redis.
    publish_timeout: Duration,
    limits: Limits,
    inboxes: Arc<Inboxes>,
    epochs: Epochs,
    /// Publishes for each loop's connection to send, by loop index
    /// (threads' go to loop 0).
    unsent: Vec<Mutex<VecDeque<Unsent>>>,
    tally: Tally,
}

impl RedisSequencer {
    /// The hub of `cluster` for the loops behind `inboxes`: Redis at
    /// `primary` (resolved once, by the caller), or found through
    /// `sentinels`; over TLS made with `tls`.
    pub fn new(
        cluster: &Cluster,
        primary: Option<SocketAddr>,
        sentinels: Option<Sentinels>,
        tls: Option<Tls>,
        config: &Config,
        inboxes: Arc<Inboxes>,
    ) -> Self {
        let (user, password, db) = cluster.redis.login();
        RedisSequencer {
            primary: Mutex::new(primary),
            moves: AtomicU64::new(0),
            failed: Mutex::new(None),
            sentinel: sentinels.is_some(),
            sentinels,
            login: Login {
                user: user.map(str::to_owned),
                password: password.map(str::to_owned),
                db,
                // A server the Sentinels named may have been demoted since.
                primary_only: matches!(cluster.redis, RedisTarget::Sentinel(_)),
                tls,
            },
            commands: Commands::new(&cluster.key, config.history.max(STREAM_MIN_LEN)),
            history: config.history,
            replicas: cluster.replicas,
            publish_timeout: cluster.publish_timeout,
            // Whatever this node's own limits: any entry another node was
            // allowed to store (or a stub of one that is larger).
            limits: Limits {
                bulk: MAX_ENTRY_BYTES,
                array: MAX_ARRAY,
                depth: 8,
                value: MAX_REPLY + (64 << 10),
            },
            inboxes,
            epochs: Epochs::default(),
            unsent: (0..config.loops)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            tally: Tally::default(),
        }
    }

    /// The primary every connection uses, if known.
    pub fn primary(&self) -> Option<SocketAddr> {
        *self.primary.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every loop's connections go to `primary` from now on (`None`:
    /// nowhere; publishes are refused until the next).
    pub fn set_primary(&self, primary: Option<SocketAddr>) {
        let mut current = self.primary.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == primary {
            return;
        }
        *current = primary;
        drop(current);
        self.moves.fetch_add(1, Ordering::AcqRel);
        self.inboxes.wake_all();
    }

    /// A data connection found the primary at `addr` failing (a connect
    /// refused or late, or it is no longer the primary): with Sentinel,
    /// loop 0 asks the Sentinels again.
    pub fn primary_failed(&self, addr: Option<SocketAddr>) {
        if !self.sentinel || addr.is_none() || addr != self.primary() {
            return;
        }
        *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = addr;
        self.inboxes.get(0).wake();
    }

    /// Whether a data connection found the primary in use failing since
    /// the last look.
    fn take_failed(&self) -> bool {
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        failed.is_some() && failed == self.primary()
    }

    /// Where Redis is, for the log.
    fn shown_addr(&self) -> String {
        self.primary()
            .map_or_else(|| "(no primary known)".to_owned(), |a| a.to_string())
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
        if publish.event.topics().len() > scripts::MAX_ENTRY_TOPICS {
            // Every node would skip the entry unread.
            return Offer::Refused(PublishError::TooLarge);
        }
        let due = Instant::now() + self.publish_timeout;
        match asker {
            // The loop sends it before it polls next.
            Asker::Loop(ticket) => {
                let answer = Answer::Loop(ticket);
                let unsent = Unsent {
                    publish,
                    answer,
                    due,
                };
                self.queue(ticket.loop_index, unsent);
                Offer::Pending
            }
            Asker::Thread => {
                let (answer, answered) = mpsc::sync_channel(1);
                let answer = Answer::Thread(answer);
                let unsent = Unsent {
                    publish,
                    answer,
                    due,
                };
                self.queue(0, unsent);
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
/// Redis's address (or the Sentinels') and makes the sequencer and every
/// loop's bus (loop 0's with the node's reader, and the watch of the
/// Sentinels). Nothing connects before a bus is registered in its loop's
/// poll.
pub fn connect(
    cluster: &Cluster,
    config: &Config,
    inboxes: &Arc<Inboxes>,
) -> io::Result<Connected> {
    let (primary, sentinels, tls) = match &cluster.redis {
        RedisTarget::Direct(url) => {
            let addr = resolve(&url.host, url.port)?;
            let tls = tls_for(cluster, &[addr])?;
            (Some(addr), None, tls)
        }
        RedisTarget::Sentinel(url) => {
            let addrs = url
                .sentinels
                .iter()
                .map(|(host, port)| resolve(host, *port))
                .collect::<io::Result<Vec<_>>>()?;
            // The same for the Sentinels and the servers they name.
            let tls = tls_for(cluster, &addrs)?;
            let sentinels = Sentinels {
                addrs,
                service: url.service.clone(),
                login: Login {
                    user: url.sentinel_user.clone(),
                    password: url.sentinel_password.clone(),
                    db: 0,
                    primary_only: false,
                    tls: tls.clone(),
                },
            };
            (None, Some(sentinels), tls)
        }
    };
    let hub = Arc::new(RedisSequencer::new(
        cluster,
        primary,
        sentinels,
        tls,
        config,
        Arc::clone(inboxes),
    ));
    let buses = (0..config.loops)
        .map(|index| Box::new(RedisBus::new(index, Arc::clone(&hub))) as Box<dyn Bus>)
        .collect();
    Ok((hub, buses))
}

/// How the node's connections make TLS sessions, when the URL asks for
/// TLS: each of the URL's hosts, resolved to `addrs` (in its order), is
/// checked against its name. The error says what is wrong with
/// `--redis-ca`'s file.
#[cfg(feature = "tls")]
fn tls_for(cluster: &Cluster, addrs: &[SocketAddr]) -> io::Result<Option<Tls>> {
    let hosts: Vec<&str> = match &cluster.redis {
        RedisTarget::Direct(url) if url.tls => vec![&url.host],
        RedisTarget::Sentinel(url) if url.tls => url
            .sentinels
            .iter()
            .map(|(host, _)| host.as_str())
            .collect(),
        _ => return Ok(None),
    };
    let names: Vec<_> = addrs.iter().copied().zip(hosts).collect();
    Tls::new(cluster.redis_ca.as_deref(), &names).map(Some)
}

/// No URL asks for TLS where it is not built in.
#[cfg(not(feature = "tls"))]
#[inline(always)]
fn tls_for(_: &Cluster, _: &[SocketAddr]) -> io::Result<Option<Tls>> {
    Ok(None)
}

/// The first address `host` resolves to (once, at start).
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            )
        })
}
