//! A running server's handle for other threads. [`Publisher`] (Clone +
//! Send) publishes through the hub's one door (`bus::Hub`), as an HTTP
//! publish does; the hub wakes every loop through its `mio::Waker`. It
//! also shuts the server down and reads the counters of every loop.

use std::fmt;
use std::sync::Arc;

use crate::bus::{Asker, Offer, Publish};
use crate::metrics::Stats;
use crate::process::Shared;
use crate::sse::Event;

pub use crate::bus::PublishError;

/// Hands events to a running server from any thread, and shuts it down.
///
/// Publishing never touches a socket: the event is numbered and encoded
/// once, handed to every loop and the loops are woken (once per batch) to
/// deliver it. When a loop is far behind, `publish` waits for it to catch
/// up, so a fast thread cannot grow memory without bound. In a cluster,
/// the first loop stores the event in Redis, and `publish` waits for
/// that.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    pub(crate) fn new(shared: Arc<Shared>) -> Publisher {
        Publisher { shared }
    }

    /// Publishes `event` to its topics' subscribers (everyone, when it has
    /// no topic) and returns the id it was given, the same id an HTTP
    /// publish answers with. The same rules as over HTTP apply to its type
    /// and topics.
    pub fn publish(&self, event: Event) -> Result<String, PublishError> {
        self.offer(Publish::new(event))
    }

    /// Publishes `event` at most once for `key`: a second publish with the
    /// same key within the history window (the last `--history` events,
    /// and at least 1 024; on any loop or thread, and in a cluster on any
    /// node) publishes nothing and returns the first one's id, as an HTTP
    /// publish with that `Idempotency-Key` does. So a publish whose answer
    /// was lost ([`PublishError::Unavailable`] in a cluster: Redis may
    /// have stored it) can be retried with its key without publishing it
    /// twice. The key is 1 to 1 024 bytes with no control characters
    /// ([`PublishError::InvalidKey`] otherwise).
    ///
    /// ```
    /// # use sseloop::{Config, Event, Server};
    /// # let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
    /// # let server = Server::bind(config)?;
    /// let publisher = server.publisher();
    /// let first = publisher.publish_once(Event::new("paid").with_topic("order/42"), "order-42-paid")?;
    /// let again = publisher.publish_once(Event::new("paid").with_topic("order/42"), "order-42-paid")?;
    /// assert_eq!(first, again); // one event
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_once(&self, event: Event, key: &str) -> Result<String, PublishError> {
        self.offer(Publish::keyed(event, Some(Arc::from(key))))
    }

    fn offer(&self, publish: Publish) -> Result<String, PublishError> {
        match self.shared.hub.publish(publish, Asker::Thread) {
            Offer::Published(id) => Ok(id.to_string()),
            Offer::Refused(refused) => Err(refused),
            // The hub answers a thread before it returns.
            Offer::Pending => Err(PublishError::Unavailable),
        }
    }

    /// Asks the server to shut down: stop accepting, write what is queued
    /// within the grace period, end every stream cleanly and return from
    /// `Server::run`. Returns at once; safe to call more than once.
    pub fn shutdown(&self) {
        self.shared.hub.shutdown();
    }

    /// What the server did so far, summed over its loops: the numbers
    /// `/metrics` shows.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}
