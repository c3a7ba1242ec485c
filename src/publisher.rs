//! The door into a running server from other threads. [`Publisher`]
//! (Clone + Send) publishes through the hub's sequencer, which wakes every
//! loop through its `mio::Waker`; it also shuts the server down and reads
//! the counters of every loop.

use std::fmt;
use std::sync::Arc;

use crate::bus::redis::Unstored;
use crate::metrics::Stats;
use crate::process::Shared;
use crate::sse::{Event, valid_event_type, valid_topic};

/// Hands events to a running server from any thread, and shuts it down.
///
/// Publishing never touches a socket: the event is numbered and encoded
/// once, handed to every loop and the loops are woken (once per batch) to
/// deliver it. When a loop is far behind, `publish` waits for it to catch
/// up, so a fast thread cannot grow memory without bound.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

/// Why a publish was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The server has stopped.
    Closed,
    /// The event type holds CR, LF or NUL.
    InvalidType,
    /// A topic is empty, longer than 128 bytes or holds a control character
    /// (no subscriber could name it).
    InvalidTopic,
    /// In a cluster: Redis cannot be reached now, so the event was not
    /// stored (or, if Redis failed while storing it, may have been). Retry
    /// later.
    Unavailable,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::Closed => "the server has stopped",
            PublishError::InvalidType => "event type must not contain CR, LF or NUL",
            PublishError::InvalidTopic => "topic must be 1 to 128 bytes with no control characters",
            PublishError::Unavailable => "the cluster's Redis cannot be reached; retry later",
        })
    }
}

impl std::error::Error for PublishError {}

impl Publisher {
    pub(crate) fn new(shared: Arc<Shared>) -> Publisher {
        Publisher { shared }
    }

    /// Publishes `event` to its topics' subscribers (everyone, when it has
    /// no topic) and returns the id it was given, the same id an HTTP
    /// publish answers with. The same rules as over HTTP apply to its type
    /// and topics.
    pub fn publish(&self, event: Event) -> Result<String, PublishError> {
        if event.event_type().is_some_and(|t| !valid_event_type(t)) {
            return Err(PublishError::InvalidType);
        }
        if !event.topics().iter().all(|t| valid_topic(t)) {
            return Err(PublishError::InvalidTopic);
        }
        if let Some(hub) = &self.shared.cluster {
            let id = hub.publish(event).map_err(|e| match e {
                Unstored::Closed => PublishError::Closed,
                Unstored::Unavailable => PublishError::Unavailable,
            })?;
            self.shared.count_thread_publish();
            return Ok(id.to_string());
        }
        let sequencer = &self.shared.sequencer;
        sequencer.wait_for_room();
        if sequencer.is_closed() {
            return Err(PublishError::Closed);
        }
        let id = sequencer.publish(&event, None);
        self.shared.count_thread_publish();
        Ok(id.to_string())
    }

    /// Asks the server to shut down: stop accepting, write what is queued
    /// within the grace period, end every stream cleanly and return from
    /// `Server::run`. Returns at once; safe to call more than once.
    pub fn shutdown(&self) {
        self.shared.sequencer.shutdown();
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
