//! [`Server`]: binds, puts the hub and its loops together, applies the safe
//! defaults every embedding gets (no open publish endpoint on a network
//! without being told, an open-file limit that fits the connection limit),
//! and runs until shut down.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::{info, warn};
use mio::{Poll, Waker};

use crate::bus::inbox::{Inbox, Inboxes};
use crate::bus::local::{LocalBus, LocalSequencer};
use crate::bus::{Bus, Hub, Sequencer, redis};
use crate::config::{self, Config, OVERFLOW_CONNECTIONS};
use crate::metrics::Counters;
use crate::process::Shared;
use crate::publisher::Publisher;
use crate::reactor::{Reactor, WAKER};
use crate::{fdlimit, net};

/// A bound SSE server; [`Server::run`] serves until shut down.
pub struct Server {
    /// One per loop; the first runs on the thread that calls `run`.
    reactors: Vec<Reactor>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// With `Config::lab`: the lab, whose thread `run` starts.
    lab: Option<crate::lab::Lab>,
}

impl Server {
    /// Binds the listening socket (one per loop) and sets up the loops;
    /// nothing is served until [`Server::run`].
    ///
    /// Refuses what [`Config::validate`] refuses: among others (with
    /// `PermissionDenied`) a listen address off loopback when publishing
    /// needs no token, unless
    /// [`Config::insecure_open_publish`] says that is wanted: anyone on the
    /// network could publish otherwise. Raises the process's soft
    /// open-file limit to what [`Config::max_connections`] needs, up to the
    /// hard limit, with a warning when that is lower.
    ///
    /// With [`Config::cluster`] it resolves Redis's address; the loops
    /// connect when they run, and [`Server::run`] listens only once every
    /// loop has reached Redis and read the history there (waiting, with
    /// the log saying so, while Redis cannot be reached), or returns the
    /// reason when Redis refuses the login or the key holds something
    /// else.
    pub fn bind(config: Config) -> io::Result<Server> {
        // The same rules as the command line's: one place decides.
        config.validate()?;
        raise_open_files(&config);
        let listeners = net::listeners(config.listen, config.loops)?;
        let local_addr = listeners[0].local_addr()?;
        // The Mercure hub's URL, with the port the system picked for port 0.
        let config = Config {
            hub_url: Some(config::hub_url(config.hub_url.as_deref(), local_addr)),
            ..config
        };
        let mut polls = Vec::with_capacity(config.loops);
        let mut inboxes = Vec::with_capacity(config.loops);
        for _ in 0..config.loops {
            let poll = Poll::new()?;
            inboxes.push(Arc::new(Inbox::new(Waker::new(poll.registry(), WAKER)?)));
            polls.push(poll);
        }
        let (sequencer, mut buses): (Arc<dyn Sequencer>, Vec<Box<dyn Bus>>) = match &config.cluster
        {
            None => {
                let sequencer = Arc::new(LocalSequencer::new(inboxes, config.history));
                let buses = (0..config.loops)
                    .map(|index| {
                        let bus = LocalBus::new(index, Arc::clone(&sequencer), config.history);
                        Box::new(bus) as Box<dyn Bus>
                    })
                    .collect();
                (sequencer, buses)
            }
            Some(cluster) => {
                let inboxes = Arc::new(Inboxes::new(inboxes));
                let (sequencer, buses) = redis::connect(cluster, &config, &inboxes)?;
                (sequencer, buses)
            }
        };
        for (bus, poll) in buses.iter_mut().zip(&polls) {
            bus.register(poll.registry())?;
        }
        let counters: Vec<Arc<Counters>> = (0..config.loops).map(|_| Arc::default()).collect();
        let mut shared = Shared::new(Hub::new(sequencer), counters.clone());
        let lab = match config.lab {
            true => {
                let (lab, door) = crate::lab::Lab::new(&config)?;
                shared.lab = Some(door);
                Some(lab)
            }
            false => None,
        };
        let shared = Arc::new(shared);
        let mut reactors = Vec::with_capacity(config.loops);
        for (index, (((poll, listener), counters), bus)) in polls
            .into_iter()
            .zip(listeners)
            .zip(counters)
            .zip(buses)
            .enumerate()
        {
            reactors.push(Reactor::new(
                index,
                poll,
                listener,
                config.clone(),
                bus,
                Arc::clone(&shared),
                counters,
            )?);
        }
        Ok(Server {
            reactors,
            local_addr,
            shared,
            lab,
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that publishes into this server from any thread, reads its
    /// counters and can shut it down.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(Arc::clone(&self.shared))
    }

    /// Makes SIGINT and SIGTERM shut the server down gracefully (as
    /// [`Publisher::shutdown`]); a second one ends the process at once with
    /// status 128 + the signal's number. For programs whose main job is
    /// this server, as the `sseloop` binary's is.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let publisher = self.publisher();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen > 1 {
                        std::process::exit(128 + signal);
                    }
                    publisher.shutdown();
                }
            })?;
        Ok(())
    }

    /// Serves until a shutdown is requested and finished: every loop but
    /// the first on a thread of its own, the first on this one. A loop
    /// that fails shuts the others down, and its error is returned.
    pub fn run(self) -> io::Result<()> {
        let lab = match self.lab {
            Some(lab) => Some(lab.spawn(Arc::clone(&self.shared), self.local_addr)?),
            None => None,
        };
        let mut reactors = self.reactors.into_iter();
        let first = reactors.next().expect("bind makes at least one loop");
        let threads = reactors
            .map(|reactor| {
                let shared = Arc::clone(&self.shared);
                std::thread::Builder::new()
                    .name("sseloop-loop".into())
                    .spawn(move || run_loop(reactor, &shared))
            })
            .collect::<io::Result<Vec<_>>>();
        let threads = match threads {
            Ok(threads) => threads,
            Err(e) => {
                self.shared.hub.shutdown();
                if let Some(door) = &self.shared.lab {
                    door.stop();
                }
                return Err(e);
            }
        };
        let mut result = run_loop(first, &self.shared);
        for thread in threads {
            let ended = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a loop thread panicked")));
            result = result.and(ended);
        }
        if let (Some(thread), Some(door)) = (lab, &self.shared.lab) {
            door.stop();
            let _ = thread.join();
        }
        let stats = self.shared.stats();
        info!(
            "stopped: {} events published, {} deliveries, {} connections served",
            stats.events_published, stats.deliveries, stats.accepted
        );
        result
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("loops", &self.reactors.len())
            .finish_non_exhaustive()
    }
}

/// Runs one loop; one that fails or panics shuts the others down (a loop
/// gone for good would hold every later publish), and its panic becomes an
/// error, so that `run` joins every loop and returns.
fn run_loop(reactor: Reactor, shared: &Shared) -> io::Result<()> {
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reactor.run()));
    let result = ran.unwrap_or_else(|_| Err(io::Error::other("a loop panicked")));
    stop_all_on_error(result, shared)
}

fn stop_all_on_error(result: io::Result<()>, shared: &Shared) -> io::Result<()> {
    if result.is_err() {
        shared.hub.shutdown();
    }
    result
}

/// One descriptor per connection, plus those waiting to be refused and a
/// few for the listener, the poll, the waker and standard streams.
fn raise_open_files(config: &Config) {
    let wanted = (config.max_connections + OVERFLOW_CONNECTIONS + 32) as u64;
    match fdlimit::raise_open_files(wanted) {
        Ok(files) if files.soft < wanted => warn!(
            "open-file limit is {} (hard limit {}): fewer than the {} connections allowed can be served",
            files.soft, files.hard, config.max_connections
        ),
        Ok(_) => {}
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
}
