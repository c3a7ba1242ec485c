//! The one door into the loop from other threads: a bounded channel of
//! commands plus a `mio::Waker`. `Publisher` is the sending side (Clone +
//! Send); `Inbox` is the loop's side.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use mio::Waker;

use crate::sse::{Event, valid_event_type};

/// Commands queued before a sender has to wait for the loop: enough to ride
/// out a busy moment, small enough to bound memory.
const CHANNEL_CAPACITY: usize = 4096;

/// Commands the loop takes per wake-up before it serves sockets again.
pub(crate) const INBOX_BUDGET: usize = 1024;

pub(crate) enum Command {
    Publish(Event),
    Shutdown,
}

/// Hands events to a running server from any thread.
///
/// Publishing never touches a socket: the event goes through a bounded
/// channel and the loop is woken (once per batch) to deliver it. When the
/// channel is full, `publish` waits for the loop to catch up.
#[derive(Clone)]
pub struct Publisher {
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
    wake_pending: Arc<AtomicBool>,
}

/// Why a publish was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The server has stopped.
    Closed,
    /// The event type holds CR, LF or NUL.
    InvalidType,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::Closed => "the server has stopped",
            PublishError::InvalidType => "event type must not contain CR, LF or NUL",
        })
    }
}

impl std::error::Error for PublishError {}

impl Publisher {
    /// Queues `event` for delivery to its topics' subscribers (everyone,
    /// when it has no topic). The server assigns its id.
    pub fn publish(&self, event: Event) -> Result<(), PublishError> {
        if event.event_type().is_some_and(|t| !valid_event_type(t)) {
            return Err(PublishError::InvalidType);
        }
        self.send(Command::Publish(event))
    }

    /// Asks the server to shut down: stop accepting, write what is queued
    /// within the grace period, end every stream cleanly and return from
    /// `Server::run`. Returns at once; safe to call more than once.
    pub fn shutdown(&self) {
        // A full channel means the loop is alive and will see this soon; a
        // closed one means it is already gone.
        match self.tx.try_send(Command::Shutdown) {
            Ok(()) => self.wake(),
            Err(TrySendError::Full(cmd)) => {
                let _ = self.tx.send(cmd);
                self.wake();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn send(&self, cmd: Command) -> Result<(), PublishError> {
        self.tx.send(cmd).map_err(|_| PublishError::Closed)?;
        self.wake();
        Ok(())
    }

    /// One wake-up per batch: the loop clears the flag before draining, so a
    /// command sent after that wakes it again.
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // Fails only if the poll is gone, and then the send failed too.
            let _ = self.waker.wake();
        }
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// The loop's end of the channel.
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    wake_pending: Arc<AtomicBool>,
}

impl Inbox {
    /// Call before draining: a command sent from now on wakes the loop again.
    pub(crate) fn begin(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// The next command, if one is waiting.
    pub(crate) fn next(&self) -> Option<Command> {
        self.rx.try_recv().ok()
    }
}

/// A connected publisher and inbox.
pub(crate) fn channel(waker: Waker) -> (Publisher, Inbox) {
    let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
    let wake_pending = Arc::new(AtomicBool::new(false));
    let publisher = Publisher {
        tx,
        waker: Arc::new(waker),
        wake_pending: Arc::clone(&wake_pending),
    };
    (publisher, Inbox { rx, wake_pending })
}
