//! Finding the Redis primary through Sentinel, and following it through a
//! failover: a state machine without sockets or clocks of its own
//! ([`Discovery`]), fed with what the Sentinels and servers answered and
//! with the time, returning what to do next ([`Action`]). The Redis bus
//! owns the connections and carries the actions out; this module owns
//! only the decisions, so that each is unit-tested.
//!
//! The rules, from Redis's guidelines for Sentinel clients and from what
//! was measured here (a frozen old primary, thawed, answers as a master
//! and takes writes for about 10 s until a Sentinel demotes it):
//!
//! - The Sentinels say which server is the primary, never a server
//!   because it answers: they are asked in turn (`SENTINEL
//!   GET-MASTER-ADDR-BY-NAME <service>`), the one that answered last
//!   first; the server named is then asked `ROLE`, and used only if it
//!   says `master` (a replica being promoted says so only once it is).
//! - The primary in use is left when a Sentinel announces another
//!   (`+switch-master`, from a subscription to one Sentinel), when its
//!   connection is lost, when it answers `-READONLY` or its `ROLE` says
//!   replica; and every [`CONFIRM_EVERY`] a Sentinel is asked again, so a
//!   missed announcement (a subscription lost) still bounds the time to
//!   follow: [`CONFIRM_EVERY`] plus one round of asking.
//! - A round in which no Sentinel named a primary that says `master`
//!   pauses, doubling from [`MIN_ROUND_PAUSE`] to [`MAX_ROUND_PAUSE`]; an
//!   announcement ends the pause at once.
//! - A Sentinel that does not answer does not make the node leave a
//!   primary that works: only the Sentinels' answer or the primary itself
//!   does.
//!
//! Also here, as pure functions of replies: what a Sentinel's and a
//! server's answers mean ([`named`], [`role`], [`switched`]), and whether
//! `WAIT` confirmed a publish ([`replicated`]).

#![cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the Redis bus takes the discovery into use with Sentinel support"
    )
)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::bus::resp::Value;

/// How long one Sentinel may take to answer before the next is asked.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the server a Sentinel named may take to answer `ROLE`
/// (connecting included).
pub const ROLE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a Sentinel is asked whether the primary in use still is.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// The first pause after a round that found no primary…
pub const MIN_ROUND_PAUSE: Duration = Duration::from_millis(100);
/// …doubled up to this.
pub const MAX_ROUND_PAUSE: Duration = Duration::from_secs(1);

/// What a Sentinel said the primary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    /// At this address.
    At(SocketAddr),
    /// The Sentinel does not monitor the service (a nil answer).
    Unknown,
    /// No answer in time, an error, or an answer that is no address.
    Failed,
}

/// What a server said it is (`ROLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `master`.
    Master,
    /// `slave`: a replica, possibly of the primary being sought.
    Replica,
    /// Anything else (a Sentinel, an error), or no answer in time.
    Failed,
}

/// What happened, for the discovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Sentinel `sentinel`'s answer to the question [`Action::Ask`] sent.
    Named { sentinel: usize, named: Named },
    /// `addr`'s answer to the `ROLE` [`Action::CheckRole`] sent.
    Role { addr: SocketAddr, role: Role },
    /// A Sentinel announced `+switch-master` to `to`.
    Switched { to: SocketAddr },
    /// The subscription [`Action::Subscribe`] made ended.
    SubscriptionLost,
    /// The primary in use cannot be used: its connection was lost, it
    /// answered `-READONLY`, or its `ROLE` says replica.
    PrimaryFailed,
}

/// What the owner of the connections must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask Sentinel `sentinel` (an index in the URL's list) for the
    /// primary; feed its answer back as [`Input::Named`] (no answer by
    /// the deadline counts as [`Named::Failed`]).
    Ask { sentinel: usize },
    /// Connect to `addr` and send `ROLE`; feed the answer back as
    /// [`Input::Role`].
    CheckRole(SocketAddr),
    /// Use `addr` as the primary from now on.
    Use(SocketAddr),
    /// Stop using the primary: publishes are refused (503) until the next
    /// [`Action::Use`]; streams stay open.
    Release,
    /// Subscribe to `+switch-master` on Sentinel `sentinel`; feed what
    /// comes as [`Input::Switched`], its end as [`Input::SubscriptionLost`].
    Subscribe { sentinel: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Asking Sentinel `index`, in a round that began with `first`.
    Asking { index: usize, due: Instant },
    /// Waiting for `ROLE` from `addr`, which Sentinel `index` named.
    Checking {
        addr: SocketAddr,
        index: usize,
        due: Instant,
    },
    /// No primary found in a whole round: asking again at `until`.
    Pausing { until: Instant },
    /// Using `addr`; a Sentinel is asked again at `confirm_at`.
    Following {
        addr: SocketAddr,
        confirm_at: Instant,
    },
    /// Using `addr` while asking Sentinel `index` whether it still is.
    Confirming {
        addr: SocketAddr,
        index: usize,
        due: Instant,
    },
}

/// Where the primary is, as the Sentinels say: see the module docs.
#[derive(Debug)]
pub struct Discovery {
    /// How many Sentinels there are.
    sentinels: usize,
    phase: Phase,
    /// The Sentinel asked first in a round: the last that answered.
    first: usize,
    /// The next pause after a round that found no primary.
    pause: Duration,
    /// The Sentinel subscribed to, if any.
    subscribed: Option<usize>,
}

impl Discovery {
    /// Begins asking `sentinels` Sentinels (at least one); the first
    /// actions.
    pub fn new(sentinels: usize, now: Instant) -> (Discovery, Vec<Action>) {
        assert!(sentinels > 0, "a Sentinel URL names at least one host");
        let discovery = Discovery {
            sentinels,
            phase: Phase::Asking {
                index: 0,
                due: now + ASK_TIMEOUT,
            },
            first: 0,
            pause: MIN_ROUND_PAUSE,
            subscribed: None,
        };
        (discovery, vec![Action::Ask { sentinel: 0 }])
    }

    /// The primary in use, if any.
    pub fn primary(&self) -> Option<SocketAddr> {
        match self.phase {
            Phase::Following { addr, .. } | Phase::Confirming { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// Whether a whole round of asking found no primary, and it waits
    /// before the next.
    pub fn pausing(&self) -> bool {
        matches!(self.phase, Phase::Pausing { .. })
    }

    /// When [`Discovery::on_deadline`] is next due.
    pub fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Asking { due, .. }
            | Phase::Checking { due, .. }
            | Phase::Confirming { due, .. } => due,
            Phase::Pausing { until } => until,
            Phase::Following { confirm_at, .. } => confirm_at,
        }
    }

    /// What to do about `input`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        match (input, self.phase) {
            // Announcements and a failing primary, whatever the phase.
            (Input::Switched { to }, phase) => match phase {
                Phase::Checking { addr, .. } if addr == to => Vec::new(),
                Phase::Following { addr, .. } | Phase::Confirming { addr, .. } if addr == to => {
                    Vec::new()
                }
                _ => {
                    let index = self.subscribed.unwrap_or(self.first);
                    self.check(to, index, now)
                }
            },
            (Input::SubscriptionLost, _) => {
                // Subscribed again at the next confirmation, not at once:
                // with every Sentinel down this would spin.
                self.subscribed = None;
                Vec::new()
            }
            (Input::PrimaryFailed, Phase::Following { .. } | Phase::Confirming { .. }) => {
                let mut actions = vec![Action::Release];
                actions.extend(self.ask(self.first, now));
                actions
            }
            (Input::PrimaryFailed, _) => Vec::new(),

            (Input::Named { sentinel, named }, Phase::Asking { index, .. })
                if sentinel == index =>
            {
                match named {
                    Named::At(addr) => self.check(addr, index, now),
                    Named::Unknown | Named::Failed => self.next(index, now),
                }
            }
            (Input::Named { sentinel, named }, Phase::Confirming { addr, index, .. })
                if sentinel == index =>
            {
                match named {
                    Named::At(named) if named == addr => self.follow(addr, index, now),
                    Named::At(named) => self.check(named, index, now),
                    Named::Unknown | Named::Failed => self.confirm_next(addr, index, now),
                }
            }
            (
                Input::Role { addr, role },
                Phase::Checking {
                    addr: checked,
                    index,
                    ..
                },
            ) if addr == checked => {
                match role {
                    Role::Master => self.follow(addr, index, now),
                    // Not promoted yet, or the Sentinel's answer is old.
                    Role::Replica | Role::Failed => self.next(index, now),
                }
            }
            // An answer to a question no longer asked.
            (Input::Named { .. } | Input::Role { .. }, _) => Vec::new(),
        }
    }

    /// What to do when [`Discovery::deadline`] has passed.
    pub fn on_deadline(&mut self, now: Instant) -> Vec<Action> {
        if now < self.deadline() {
            return Vec::new();
        }
        match self.phase {
            Phase::Asking { index, .. } | Phase::Checking { index, .. } => self.next(index, now),
            Phase::Pausing { .. } => self.ask(self.first, now),
            Phase::Following { addr, .. } => {
                self.phase = Phase::Confirming {
                    addr,
                    index: self.first,
                    due: now + ASK_TIMEOUT,
                };
                vec![Action::Ask {
                    sentinel: self.first,
                }]
            }
            Phase::Confirming { addr, index, .. } => self.confirm_next(addr, index, now),
        }
    }

    /// Asks Sentinel `index`, leaving any primary in use.
    fn ask(&mut self, index: usize, now: Instant) -> Vec<Action> {
        self.phase = Phase::Asking {
            index,
            due: now + ASK_TIMEOUT,
        };
        vec![Action::Ask { sentinel: index }]
    }

    /// Checks `addr`, which Sentinel `index` named, leaving any primary
    /// in use.
    fn check(&mut self, addr: SocketAddr, index: usize, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.primary().is_some() {
            actions.push(Action::Release);
        }
        self.phase = Phase::Checking {
            addr,
            index,
            due: now + ROLE_TIMEOUT,
        };
        actions.push(Action::CheckRole(addr));
        actions
    }

    /// The Sentinel after `index`, or a pause once the round is over.
    fn next(&mut self, index: usize, now: Instant) -> Vec<Action> {
        let next = (index + 1) % self.sentinels;
        if next == self.first {
            self.phase = Phase::Pausing {
                until: now + self.pause,
            };
            self.pause = (self.pause * 2).min(MAX_ROUND_PAUSE);
            return Vec::new();
        }
        self.ask(next, now)
    }

    /// Uses (or goes on using) `addr`, which Sentinel `index` named.
    fn follow(&mut self, addr: SocketAddr, index: usize, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.primary() != Some(addr) {
            actions.push(Action::Use(addr));
        }
        self.first = index;
        self.pause = MIN_ROUND_PAUSE;
        self.phase = Phase::Following {
            addr,
            confirm_at: now + CONFIRM_EVERY,
        };
        if self.subscribed.is_none() {
            self.subscribed = Some(index);
            actions.push(Action::Subscribe { sentinel: index });
        }
        actions
    }

    /// Sentinel `index` could not confirm `addr`: the next one is asked,
    /// and after a whole round without an answer `addr` stays in use.
    fn confirm_next(&mut self, addr: SocketAddr, index: usize, now: Instant) -> Vec<Action> {
        let next = (index + 1) % self.sentinels;
        if next == self.first {
            self.phase = Phase::Following {
                addr,
                confirm_at: now + CONFIRM_EVERY,
            };
            return Vec::new();
        }
        self.phase = Phase::Confirming {
            addr,
            index: next,
            due: now + ASK_TIMEOUT,
        };
        vec![Action::Ask { sentinel: next }]
    }
}

/// What `SENTINEL GET-MASTER-ADDR-BY-NAME` answered: `[ip, port]`, nil
/// for a service the Sentinel does not monitor. A host name (a Sentinel
/// with `announce-hostnames`) is [`Named::Failed`]: resolving it would
/// block the loop.
pub fn named(reply: &Value) -> Named {
    match reply {
        Value::Nil => Named::Unknown,
        Value::Array(items) => match &items[..] {
            [ip, port] => address(ip.bytes(), port.bytes()).map_or(Named::Failed, Named::At),
            _ => Named::Failed,
        },
        _ => Named::Failed,
    }
}

/// What `ROLE` answered: its first element.
pub fn role(reply: &Value) -> Role {
    let first = match reply {
        Value::Array(items) => items.first().and_then(Value::bytes),
        _ => None,
    };
    match first {
        Some(b"master") => Role::Master,
        Some(b"slave") => Role::Replica,
        _ => Role::Failed,
    }
}

/// The new primary a `+switch-master` message announces for `service`:
/// the message is `["message", "+switch-master", "<service> <old-ip>
/// <old-port> <new-ip> <new-port>"]`; `None` for anything else.
pub fn switched(message: &Value, service: &str) -> Option<SocketAddr> {
    let Value::Array(items) = message else {
        return None;
    };
    let [kind, channel, text] = &items[..] else {
        return None;
    };
    if kind.bytes() != Some(b"message") || channel.bytes() != Some(b"+switch-master") {
        return None;
    }
    let text = std::str::from_utf8(text.bytes()?).ok()?;
    let parts: Vec<&str> = text.split(' ').collect();
    let [name, _, _, ip, port] = parts[..] else {
        return None;
    };
    (name == service)
        .then(|| address(Some(ip.as_bytes()), Some(port.as_bytes())))
        .flatten()
}

/// Whether `WAIT <wanted> <timeout>` confirmed a publish: its answer is
/// how many replicas acknowledged the writes before it; fewer than
/// `wanted` (or an error) means a promoted replica may lack the event, so
/// the publish is not acknowledged.
pub fn replicated(reply: &Value, wanted: u32) -> bool {
    matches!(reply, Value::Integer(n) if *n >= i64::from(wanted))
}

fn address(ip: Option<&[u8]>, port: Option<&[u8]>) -> Option<SocketAddr> {
    let ip: IpAddr = std::str::from_utf8(ip?).ok()?.parse().ok()?;
    let port: u16 = std::str::from_utf8(port?).ok()?.parse().ok()?;
    (port != 0).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
