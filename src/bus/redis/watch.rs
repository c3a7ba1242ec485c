//! Following the primary through Sentinel, on loop 0: the connections the
//! discovery ([`super::sentinel::Discovery`]) works through, carrying out
//! its actions and feeding it what comes back. One connection asks a
//! Sentinel where the primary is (`SENTINEL GET-MASTER-ADDR-BY-NAME`), one
//! asks the server named for its `ROLE`, one is subscribed to a Sentinel's
//! `+switch-master`; all log in with the Sentinels' credentials but the
//! one to the server, which logs in as the data connections do. When the
//! discovery says which server to use, every loop's connections follow it
//! ([`RedisSequencer::set_primary`]).

use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use log::{info, warn};
use mio::event::Event as Readiness;
use mio::{Registry, Token};

use super::RedisSequencer;
use super::conn::{ConnEvent, Login, REPLY_TIMEOUT, RedisConn};
use super::sentinel::{Action, Discovery, Input, Named, Role, named, role, switched};
use crate::bus::resp::Limits;

/// What the Sentinels' URL says, resolved.
#[derive(Clone, Debug)]
pub struct Sentinels {
    /// Their addresses, in the URL's order.
    pub addrs: Vec<SocketAddr>,
    /// The service they monitor the primary as.
    pub service: String,
    /// How to log in to them.
    pub login: Login,
}

/// The discovery and its connections.
pub struct Watch {
    sentinels: Sentinels,
    discovery: Discovery,
    /// Asks Sentinel `tag` (an index in `sentinels`) for the primary.
    ask: RedisConn,
    ask_events: Vec<ConnEvent>,
    /// The Sentinel to ask once `ask` is up.
    asking: Option<usize>,
    /// Asks a server for its role.
    role: RedisConn,
    role_events: Vec<ConnEvent>,
    /// The server to ask once `role` is up…
    checking: Option<SocketAddr>,
    /// …and the one asked.
    checked: Option<SocketAddr>,
    /// Subscribed to `+switch-master`.
    sub: RedisConn,
    sub_events: Vec<ConnEvent>,
    /// A primary was found since the node started (the log says so once).
    found: bool,
    /// A round of asking found none, and the log said so: it says so once
    /// until one is found.
    told_none: bool,
}

impl Watch {
    /// The watch of `sentinels`, its connections under `tokens`; `data`
    /// is how the data connections log in.
    pub fn new(sentinels: Sentinels, data: &Login, tokens: [Token; 3], limits: Limits) -> Watch {
        let (discovery, _) = Discovery::new(sentinels.addrs.len(), Instant::now());
        let login = sentinels.login.clone();
        let role_login = Login {
            primary_only: false,
            ..data.clone()
        };
        Watch {
            discovery,
            ask: RedisConn::new("sentinel", None, login.clone(), tokens[0], limits).quietly(),
            ask_events: Vec::new(),
            asking: None,
            role: RedisConn::new("role", None, role_login, tokens[1], limits).quietly(),
            role_events: Vec::new(),
            checking: None,
            checked: None,
            sub: RedisConn::new("sentinel-watch", None, login, tokens[2], limits),
            sub_events: Vec::new(),
            found: false,
            told_none: false,
            sentinels,
        }
    }

    /// Registers its connections in loop 0's poll and begins asking.
    pub fn register(&mut self, registry: &Registry, hub: &RedisSequencer) -> std::io::Result<()> {
        self.ask.register(registry, &mut self.ask_events)?;
        self.role.register(registry, &mut self.role_events)?;
        self.sub.register(registry, &mut self.sub_events)?;
        let now = Instant::now();
        let (discovery, actions) = Discovery::new(self.sentinels.addrs.len(), now);
        self.discovery = discovery;
        self.run(actions, hub);
        self.drive(hub);
        Ok(())
    }

    /// Readiness of connection `index` (0: asking, 1: role, 2: watching).
    pub fn on_ready(&mut self, index: usize, readiness: &Readiness, hub: &RedisSequencer) {
        match index {
            0 => self.ask.on_ready(readiness, &mut self.ask_events),
            1 => self.role.on_ready(readiness, &mut self.role_events),
            _ => self.sub.on_ready(readiness, &mut self.sub_events),
        }
        self.drive(hub);
    }

    /// Writes what its connections buffered.
    pub fn flush(&mut self, hub: &RedisSequencer) {
        self.ask.flush(&mut self.ask_events);
        self.role.flush(&mut self.role_events);
        self.sub.flush(&mut self.sub_events);
        self.drive(hub);
    }

    /// When [`Watch::on_deadline`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        [
            Some(self.discovery.deadline()),
            self.ask.deadline(),
            self.role.deadline(),
            self.sub.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A deadline has come.
    pub fn on_deadline(&mut self, now: Instant, hub: &RedisSequencer) {
        self.ask.on_deadline(now, &mut self.ask_events);
        self.role.on_deadline(now, &mut self.role_events);
        self.sub.on_deadline(now, &mut self.sub_events);
        let actions = self.discovery.on_deadline(now);
        self.run(actions, hub);
        self.tell_none();
        self.drive(hub);
    }

    /// A data connection found the primary in use failing.
    pub fn primary_failed(&mut self, hub: &RedisSequencer) {
        self.feed(Input::PrimaryFailed, hub);
        self.drive(hub);
    }

    #[inline(never)]
    fn feed(&mut self, input: Input, hub: &RedisSequencer) {
        let actions = self.discovery.handle(input, Instant::now());
        self.run(actions, hub);
        self.tell_none();
    }

    /// Says once, when a round of asking found no primary, that none was
    /// found (the connections' own failures are logged at debug).
    fn tell_none(&mut self) {
        if self.discovery.pausing() && !self.told_none {
            self.told_none = true;
            warn!(
                "Sentinel: none of {:?} named a primary of {} that answers as one; asking again",
                self.sentinels.addrs, self.sentinels.service
            );
        }
    }

    /// Carries out the discovery's actions.
    #[inline(never)]
    fn run(&mut self, actions: Vec<Action>, hub: &RedisSequencer) {
        let now = Instant::now();
        for action in actions {
            match action {
                Action::Ask { sentinel } => {
                    self.asking = Some(sentinel);
                    let addr = self.sentinels.addrs[sentinel];
                    self.ask.set_addr(Some(addr), &mut self.ask_events);
                    self.send_ask(now);
                }
                Action::CheckRole(addr) => {
                    self.checking = Some(addr);
                    self.role.set_addr(Some(addr), &mut self.role_events);
                    self.send_role(now);
                }
                Action::Use(addr) => {
                    if self.found {
                        warn!(
                            "Sentinel: the primary of {} is now {addr}",
                            self.sentinels.service
                        );
                    } else {
                        info!(
                            "Sentinel: the primary of {} is {addr}",
                            self.sentinels.service
                        );
                    }
                    self.found = true;
                    self.told_none = false;
                    hub.set_primary(Some(addr));
                }
                Action::Release => {
                    warn!(
                        "Sentinel: leaving the primary of {}; asking where it is",
                        self.sentinels.service
                    );
                    hub.set_primary(None);
                }
                Action::Subscribe { sentinel } => {
                    let addr = self.sentinels.addrs[sentinel];
                    // A subscription ended by the discovery is not lost.
                    self.sub.set_addr(None, &mut Vec::new());
                    self.sub.set_addr(Some(addr), &mut self.sub_events);
                }
            }
        }
    }

    fn send_ask(&mut self, now: Instant) {
        let Some(sentinel) = self.asking else {
            return;
        };
        let service = self.sentinels.service.as_bytes();
        let args: [&[u8]; 3] = [b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", service];
        if self
            .ask
            .send(&args, sentinel as u64, REPLY_TIMEOUT, now)
            .is_ok()
        {
            self.asking = None;
        }
    }

    fn send_role(&mut self, now: Instant) {
        let Some(addr) = self.checking else {
            return;
        };
        if self.role.send(&[b"ROLE"], 0, REPLY_TIMEOUT, now).is_ok() {
            self.checking = None;
            self.checked = Some(addr);
        }
    }

    /// Turns what the connections reported into the discovery's inputs.
    fn drive(&mut self, hub: &RedisSequencer) {
        loop {
            let now = Instant::now();
            let mut inputs = Vec::new();
            for event in mem::take(&mut self.ask_events) {
                match event {
                    ConnEvent::Up => self.send_ask(now),
                    ConnEvent::Reply(sentinel, value) => inputs.push(Input::Named {
                        sentinel: sentinel as usize,
                        named: named(&value),
                    }),
                    ConnEvent::Down(lost) => {
                        let lost = lost.sent.into_iter().chain(lost.unsent);
                        inputs.extend(lost.map(|sentinel| Input::Named {
                            sentinel: sentinel as usize,
                            named: Named::Failed,
                        }));
                    }
                    ConnEvent::Unreachable => {
                        if let Some(sentinel) = self.asking.take() {
                            inputs.push(Input::Named {
                                sentinel,
                                named: Named::Failed,
                            });
                        }
                        // Asked again when the discovery says so.
                        self.ask.set_addr(None, &mut Vec::new());
                    }
                    ConnEvent::Message(_) | ConnEvent::Refused(_) => {}
                }
            }
            for event in mem::take(&mut self.role_events) {
                match event {
                    ConnEvent::Up => self.send_role(now),
                    ConnEvent::Reply(_, value) => {
                        if let Some(addr) = self.checked.take() {
                            inputs.push(Input::Role {
                                addr,
                                role: role(&value),
                            });
                        }
                        // One question per connection: the next check
                        // may be of another server.
                        self.role.set_addr(None, &mut Vec::new());
                    }
                    ConnEvent::Down(_) => {
                        if let Some(addr) = self.checked.take() {
                            inputs.push(Input::Role {
                                addr,
                                role: Role::Failed,
                            });
                        }
                    }
                    ConnEvent::Unreachable => {
                        if let Some(addr) = self.checking.take() {
                            inputs.push(Input::Role {
                                addr,
                                role: Role::Failed,
                            });
                        }
                        self.role.set_addr(None, &mut Vec::new());
                    }
                    ConnEvent::Message(_) | ConnEvent::Refused(_) => {}
                }
            }
            for event in mem::take(&mut self.sub_events) {
                match event {
                    ConnEvent::Up => {
                        let args: [&[u8]; 2] = [b"SUBSCRIBE", b"+switch-master"];
                        if self.sub.send(&args, 0, REPLY_TIMEOUT, now).is_ok() {
                            self.sub.expect_messages();
                        }
                    }
                    ConnEvent::Message(value) => {
                        if let Some(to) = switched(&value, &self.sentinels.service) {
                            inputs.push(Input::Switched { to });
                        }
                    }
                    ConnEvent::Down(_) | ConnEvent::Unreachable => {
                        inputs.push(Input::SubscriptionLost);
                        self.sub.set_addr(None, &mut Vec::new());
                    }
                    ConnEvent::Reply(..) | ConnEvent::Refused(_) => {}
                }
            }
            if inputs.is_empty() {
                return;
            }
            for input in inputs {
                self.feed(input, hub);
            }
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("sentinels", &self.sentinels.addrs)
            .field("primary", &self.discovery.primary())
            .finish_non_exhaustive()
    }
}
