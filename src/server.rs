//! [`Server`]: binds, puts the hub and its loop together, applies the safe
//! defaults every embedding gets (no open publish endpoint on a network
//! without being told, an open-file limit that fits the connection limit),
//! and runs until shut down.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::warn;
use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::bus::local::{Inbox, LocalBus, Sequencer};
use crate::config::{Config, OVERFLOW_CONNECTIONS};
use crate::fdlimit;
use crate::metrics::Counters;
use crate::publisher::{Publisher, Shared};
use crate::reactor::{Reactor, WAKER};

/// A bound SSE server; [`Server::run`] serves until shut down.
pub struct Server {
    reactor: Reactor,
    publisher: Publisher,
}

impl Server {
    /// Binds the listening socket and sets up the loop; nothing is served
    /// until [`Server::run`].
    ///
    /// Refuses (with `PermissionDenied`) a listen address off loopback
    /// when publishing needs no token, unless
    /// [`Config::insecure_open_publish`] says that is wanted: anyone on the
    /// network could publish otherwise. Raises the process's soft
    /// open-file limit to what [`Config::max_connections`] needs, up to the
    /// hard limit, with a warning when that is lower.
    pub fn bind(config: Config) -> io::Result<Server> {
        if config.exposes_open_publish() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is reachable from the network and anyone could publish: set a publish \
                     token, or allow an open publish endpoint explicitly",
                    config.listen
                ),
            ));
        }
        raise_open_files(&config);
        let poll = Poll::new()?;
        let listener = TcpListener::bind(config.listen)?;
        let inbox = Arc::new(Inbox::new(Waker::new(poll.registry(), WAKER)?));
        let sequencer = Arc::new(Sequencer::new(vec![inbox]));
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared::new(
            Arc::clone(&sequencer),
            vec![Arc::clone(&counters)],
        ));
        let bus = LocalBus::new(0, sequencer, config.history);
        let reactor = Reactor::new(
            poll,
            listener,
            config,
            Box::new(bus),
            Arc::clone(&shared),
            counters,
        )?;
        Ok(Server {
            reactor,
            publisher: Publisher::new(shared),
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.reactor.local_addr()
    }

    /// A handle that publishes into this server from any thread, reads its
    /// counters and can shut it down.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
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

    /// Serves until a shutdown is requested and finished.
    pub fn run(self) -> io::Result<()> {
        self.reactor.run()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("reactor", &self.reactor)
            .finish_non_exhaustive()
    }
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
