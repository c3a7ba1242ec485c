//! Every loop's inbox: the messages the hub hands it (deliveries in the
//! hub's order, late answers to its publishes, the shutdown), the waker
//! that tells its poll, and the soft limit that makes publishers wait for
//! a loop far behind. Both hubs hand out through these: the in-process
//! sequencer under its lock, the cluster's reader on its loop.

use std::collections::VecDeque;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use mio::Waker;

use crate::bus::{Delivery, Message};

/// Messages an inbox holds before publishing threads wait for its loop.
pub const INBOX_SOFT_LIMIT: usize = 4096;

/// One loop's inbox: the messages the sequencer handed it, and the waker
/// that tells its poll.
#[derive(Debug)]
pub struct Inbox {
    queue: Mutex<VecDeque<Message>>,
    /// About how many messages `queue` holds, read without its lock.
    len: AtomicUsize,
    /// Signalled when the loop empties a queue that was at the limit.
    room: Condvar,
    waker: Waker,
    /// A wake-up is on its way: no need for another until the loop drains.
    wake_pending: AtomicBool,
}

impl Inbox {
    /// An inbox whose loop is woken through `waker`.
    pub fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            room: Condvar::new(),
            waker,
            wake_pending: AtomicBool::new(false),
        }
    }

    /// How many messages wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    fn is_full(&self) -> bool {
        // SeqCst, with the stores of `len` and `held_count`: a loop that
        // holds a publish and a loop that empties its inbox each see the
        // other's store (see `LocalSequencer::release`).
        self.len.load(Ordering::SeqCst) >= INBOX_SOFT_LIMIT
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Message>> {
        // A queue of messages stays consistent whatever panicked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the loop a message, waking it unless `wake` is false (the
    /// loop itself pushes and drains next).
    pub(crate) fn push(&self, message: Message, wake: bool) {
        let mut queue = self.lock();
        queue.push_back(message);
        self.len.store(queue.len(), Ordering::SeqCst);
        drop(queue);
        // One wake-up per batch: the loop clears the flag before it drains,
        // so a message pushed after that wakes it again.
        if wake {
            self.wake();
        }
    }

    /// Wakes the loop (once per batch), for something the bus has for it
    /// besides messages.
    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // Fails only if the poll is gone, and then nobody listens.
            let _ = self.waker.wake();
        }
    }

    /// The loop begins a drain: what is pushed from now on wakes it again.
    pub(crate) fn begin_drain(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// Moves every waiting message to the back of `taken` (empty: swapped,
    /// not copied, so one lock takes the whole batch and the emptied buffer
    /// goes back for reuse), releasing threads that waited for room.
    pub(crate) fn take_all(&self, taken: &mut VecDeque<Message>) {
        let mut queue = self.lock();
        if queue.len() >= INBOX_SOFT_LIMIT {
            self.room.notify_all();
        }
        if taken.is_empty() {
            mem::swap(&mut *queue, taken);
        } else {
            taken.append(&mut queue);
        }
        // SeqCst: see `LocalSequencer::release`.
        self.len.store(0, Ordering::SeqCst);
    }
}

/// Every loop's inbox, by loop index. Each [`Delivery`] is handed to all of
/// them alike by one caller at a time (the sequencer under its lock, a
/// cluster's reader on its loop), so every loop receives one order.
#[derive(Debug)]
pub struct Inboxes {
    inboxes: Vec<Arc<Inbox>>,
    /// A loop has stopped: publishing fails from now on.
    closed: AtomicBool,
}

impl Inboxes {
    /// The inboxes of the loops, by index.
    pub fn new(inboxes: Vec<Arc<Inbox>>) -> Inboxes {
        Inboxes {
            inboxes,
            closed: AtomicBool::new(false),
        }
    }

    /// Loop `index`'s inbox.
    pub fn get(&self, index: usize) -> &Arc<Inbox> {
        &self.inboxes[index]
    }

    /// Hands `delivery` to every loop; the loop `from` (the caller, when a
    /// loop hands out) is not woken, since it drains its inbox next.
    pub fn hand_out(&self, delivery: &Delivery, from: Option<usize>) {
        for (index, inbox) in self.inboxes.iter().enumerate() {
            inbox.push(Message::Delivery(delivery.clone()), from != Some(index));
        }
    }

    /// True while some loop is far behind: its inbox is at the soft limit.
    pub fn any_full(&self) -> bool {
        self.inboxes.iter().any(|i| i.is_full())
    }

    /// Wakes every loop, for something the bus has for them besides
    /// messages.
    pub fn wake_all(&self) {
        for inbox in &self.inboxes {
            inbox.wake();
        }
    }

    /// Tells every loop to shut down.
    pub fn shutdown(&self) {
        for inbox in &self.inboxes {
            inbox.push(Message::Shutdown, true);
        }
    }

    /// True once a loop has stopped.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// For publishing threads: waits while some inbox is at the limit and
    /// the loops run.
    pub fn wait_for_room(&self) {
        for inbox in &self.inboxes {
            let mut queue = inbox.lock();
            while queue.len() >= INBOX_SOFT_LIMIT && !self.is_closed() {
                queue = inbox
                    .room
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// A loop has stopped: threads publishing or waiting for room are told.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for inbox in &self.inboxes {
            // Under the queue's lock, so a thread about to wait sees the flag.
            let _queue = inbox.lock();
            inbox.room.notify_all();
        }
    }
}
