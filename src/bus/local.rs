//! The in-process hub. One [`Sequencer`], shared by every loop and every
//! `Publisher` of the process, assigns each event its sequence number and
//! encodes it once under a short lock, then hands the same [`Delivery`] to
//! every loop's [`Inbox`] in that order (waking each loop but the caller's,
//! which drains its inbox right after). Each loop's [`LocalBus`] takes its
//! messages out of its inbox and keeps its copy of the history, so a replay
//! reads only loop-local memory and never holds up publishing.
//!
//! The lock is taken once per publish, never on the write path. While some
//! inbox holds [`INBOX_SOFT_LIMIT`] messages (its loop is behind), nothing
//! new is handed out: threads that publish wait, and a loop's publish is
//! held in arrival order and answered later ([`Offer::Pending`], then
//! [`Message::Confirmed`]), when the lagging loop has emptied its inbox. So
//! neither a fast thread nor a fast loop can grow a slow loop's inbox
//! without bound, and a loop never waits (it would wait for itself).

use std::collections::VecDeque;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use mio::Waker;

use crate::bus::id::{Epoch, EventId, Run};
use crate::bus::{Bus, Delivery, History, Message, Offer, Ticket};
use crate::sse::Event;

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

    fn is_full(&self) -> bool {
        // SeqCst, with the stores of `len` and `held_count`: a loop that
        // holds a publish and a loop that empties its inbox each see the
        // other's store (see `Sequencer::release`).
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
        // SeqCst: see `Sequencer::release`.
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

/// Assigns ids and hands every event to every loop in one order.
#[derive(Debug)]
pub struct Sequencer {
    epoch: Epoch,
    /// The newest sequence number assigned; written under `order`.
    issued: AtomicU64,
    /// Held while an event is numbered and handed out, so that every inbox
    /// receives the same order.
    order: Mutex<()>,
    inboxes: Arc<Inboxes>,
    /// Loops' publishes that came while an inbox was full, in order.
    held: Mutex<VecDeque<Held>>,
    /// How many are held, read without the lock.
    held_count: AtomicUsize,
}

/// A loop's publish waiting for room.
#[derive(Debug)]
struct Held {
    event: Event,
    from: usize,
    ticket: Ticket,
}

impl Sequencer {
    /// A sequencer for the loops behind `inboxes`, with a fresh run tag.
    pub fn new(inboxes: Vec<Arc<Inbox>>) -> Sequencer {
        Sequencer {
            epoch: Epoch::new(Run::draw(), 0),
            issued: AtomicU64::new(0),
            order: Mutex::new(()),
            inboxes: Arc::new(Inboxes::new(inboxes)),
            held: Mutex::new(VecDeque::new()),
            held_count: AtomicUsize::new(0),
        }
    }

    /// True while a loop's publish must wait: an inbox is full, or
    /// publishes that came earlier wait already (they go first).
    fn must_hold(&self) -> bool {
        self.held_count.load(Ordering::SeqCst) > 0 || self.inboxes.any_full()
    }

    /// Keeps loop `from`'s publish until there is room, then releases
    /// what there is room for already: the inbox that was full may have
    /// been emptied since `must_hold` looked, by a loop that saw nothing
    /// held yet.
    fn hold(&self, event: &Event, from: usize, ticket: Ticket) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.push_back(Held {
            event: event.clone(),
            from,
            ticket,
        });
        self.held_count.store(held.len(), Ordering::SeqCst);
        drop(held);
        self.release();
    }

    /// Publishes what loops held, in order, while there is room, and
    /// answers each loop that waits. Called by a loop that held a publish
    /// and by every loop that empties its inbox while something is held:
    /// of the two stores (`held_count`, then the inbox's `len` read; the
    /// inbox's `len` emptied, then `held_count` read), one is seen, so a
    /// held publish is never left with nobody to release it.
    fn release(&self) {
        // Under the lock of the held list, so the held go out in order.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.inboxes.any_full() {
            let Some(next) = held.pop_front() else {
                break;
            };
            let id = self.publish(&next.event, None);
            self.inboxes
                .get(next.from)
                .push(Message::Confirmed(next.ticket, Some(id)), true);
        }
        self.held_count.store(held.len(), Ordering::SeqCst);
    }

    /// The run part of this process's ids.
    #[cfg(test)]
    pub fn run(&self) -> Run {
        self.epoch.run()
    }

    /// The newest sequence number assigned.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }

    /// Every loop's inbox.
    pub fn inboxes(&self) -> &Arc<Inboxes> {
        &self.inboxes
    }

    /// True once a loop has stopped.
    pub fn is_closed(&self) -> bool {
        self.inboxes.is_closed()
    }

    /// Numbers `event`, encodes it once and hands it to every loop; the
    /// loop `from` (the caller, when a loop publishes) is not woken, since
    /// it drains its inbox next. Returns the id.
    pub fn publish(&self, event: &Event, from: Option<usize>) -> EventId {
        let topics: Arc<[Box<str>]> = event.topics().iter().map(|t| t.as_str().into()).collect();
        let _order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = self.issued.load(Ordering::Relaxed) + 1;
        let id = self.epoch.id(seq);
        let delivery = Delivery {
            seq,
            frame: Arc::new(event.encode(&id.text())),
            topics,
        };
        self.issued.store(seq, Ordering::Release);
        self.inboxes.hand_out(&delivery, from);
        id
    }

    /// Tells every loop to shut down.
    pub fn shutdown(&self) {
        self.inboxes.shutdown();
    }

    /// For publishing threads: waits while some inbox is at the limit and
    /// the loops run.
    pub fn wait_for_room(&self) {
        self.inboxes.wait_for_room();
    }
}

/// One loop's side of the in-process hub.
#[derive(Debug)]
pub struct LocalBus {
    index: usize,
    sequencer: Arc<Sequencer>,
    inbox: Arc<Inbox>,
    /// Messages taken out of the inbox in one go and not yet handed out.
    taken: VecDeque<Message>,
    history: History,
}

impl LocalBus {
    /// Loop `index`'s side of `sequencer`, keeping `history` events.
    pub fn new(index: usize, sequencer: Arc<Sequencer>, history: usize) -> LocalBus {
        let inbox = Arc::clone(sequencer.inboxes.get(index));
        let history = History::new(sequencer.epoch, history);
        LocalBus {
            index,
            sequencer,
            inbox,
            taken: VecDeque::new(),
            history,
        }
    }
}

impl Bus for LocalBus {
    fn publish(&mut self, event: &Event, ticket: Ticket) -> Offer {
        if self.sequencer.is_closed() {
            return Offer::Unavailable;
        }
        if self.sequencer.must_hold() {
            self.sequencer.hold(event, self.index, ticket);
            return Offer::Pending;
        }
        Offer::Published(self.sequencer.publish(event, Some(self.index)))
    }

    fn begin_drain(&mut self) {
        self.inbox.begin_drain();
    }

    fn next(&mut self) -> Option<Message> {
        if self.taken.is_empty() {
            self.inbox.take_all(&mut self.taken);
            if self.sequencer.held_count.load(Ordering::SeqCst) > 0 {
                self.sequencer.release();
            }
        }
        let message = self.taken.pop_front()?;
        if let Message::Delivery(delivery) = &message {
            self.history.record(delivery);
        }
        Some(message)
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn issued(&self) -> u64 {
        self.sequencer.issued()
    }
}

impl Drop for LocalBus {
    /// A stopped loop stops the hub: threads publishing or waiting for room
    /// are told so.
    fn drop(&mut self) {
        self.sequencer.inboxes.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};

    fn hub(loops: usize) -> (Vec<Poll>, Arc<Sequencer>) {
        let polls: Vec<Poll> = (0..loops).map(|_| Poll::new().unwrap()).collect();
        let inboxes = polls
            .iter()
            .map(|p| Arc::new(Inbox::new(Waker::new(p.registry(), Token(0)).unwrap())))
            .collect();
        (polls, Arc::new(Sequencer::new(inboxes)))
    }

    fn drain(bus: &mut LocalBus) -> Vec<u64> {
        bus.begin_drain();
        let mut seqs = Vec::new();
        while let Some(m) = bus.next() {
            if let Message::Delivery(d) = m {
                seqs.push(d.seq);
            }
        }
        seqs
    }

    #[test]
    fn every_loop_gets_every_event_in_one_order() {
        let (_polls, seq) = hub(2);
        let mut a = LocalBus::new(0, Arc::clone(&seq), 8);
        let mut b = LocalBus::new(1, Arc::clone(&seq), 8);
        let ticket = Ticket { key: 0, serial: 0 };
        let Offer::Published(id) = a.publish(&Event::new("x"), ticket) else {
            panic!("the local bus answers at once");
        };
        assert_eq!(id.to_string(), format!("{}-1", seq.run()));
        seq.publish(&Event::new("y"), None);
        b.publish(&Event::new("z"), ticket);
        assert_eq!(drain(&mut a), [1, 2, 3]);
        assert_eq!(drain(&mut b), [1, 2, 3]);
        assert_eq!(a.history().newest(), 3);
        assert_eq!(a.issued(), 3);
    }

    /// A loop's publish while another loop is far behind is held, not
    /// added to the lagging inbox, and answered in order once it drains.
    #[test]
    fn a_loop_behind_holds_publishes_until_it_catches_up() {
        let (_polls, seq) = hub(2);
        let mut fast = LocalBus::new(0, Arc::clone(&seq), 0);
        let mut slow = LocalBus::new(1, Arc::clone(&seq), 0);
        for _ in 0..INBOX_SOFT_LIMIT {
            seq.publish(&Event::new("backlog"), None);
        }
        drain(&mut fast);
        let first = Ticket { key: 3, serial: 1 };
        let second = Ticket { key: 4, serial: 2 };
        assert_eq!(fast.publish(&Event::new("a"), first), Offer::Pending);
        assert_eq!(fast.publish(&Event::new("b"), second), Offer::Pending);
        assert_eq!(slow.inbox.len.load(Ordering::Acquire), INBOX_SOFT_LIMIT);
        let backlog = INBOX_SOFT_LIMIT as u64;
        // The slow loop catches up: the held publishes go out, in order.
        assert_eq!(drain(&mut slow), (1..=backlog + 2).collect::<Vec<_>>());
        fast.begin_drain();
        let mut answers = Vec::new();
        while let Some(m) = fast.next() {
            match m {
                Message::Delivery(d) => answers.push(format!("event {}", d.seq)),
                Message::Confirmed(t, id) => {
                    answers.push(format!("{} {}", t.serial, id.unwrap()));
                }
                Message::Shutdown => {}
            }
        }
        let run = seq.run();
        let a = backlog + 1;
        let b = backlog + 2;
        assert_eq!(
            answers,
            [
                format!("event {a}"),
                format!("1 {run}-{a}"),
                format!("event {b}"),
                format!("2 {run}-{b}")
            ]
        );
        assert_eq!(
            fast.publish(&Event::new("c"), first),
            Offer::Published(EventId::new(run, b + 1))
        );
    }

    /// The lagging loop may empty its inbox between another loop's look
    /// (full: hold) and its hold, and see nothing held: the hold is then
    /// released by the loop that holds, not left for a drain that never
    /// comes (which would hold every later publish too).
    #[test]
    fn a_hold_recorded_after_the_last_drain_is_released() {
        let (_polls, seq) = hub(2);
        let mut fast = LocalBus::new(0, Arc::clone(&seq), 0);
        let mut slow = LocalBus::new(1, Arc::clone(&seq), 0);
        for _ in 0..INBOX_SOFT_LIMIT {
            seq.publish(&Event::new("backlog"), None);
        }
        drain(&mut fast);
        assert!(seq.must_hold());
        drain(&mut slow);
        let ticket = Ticket { key: 7, serial: 1 };
        seq.hold(&Event::new("late"), 0, ticket);
        assert_eq!(seq.held_count.load(Ordering::SeqCst), 0);
        fast.begin_drain();
        let confirmed = std::iter::from_fn(|| fast.next())
            .any(|m| matches!(m, Message::Confirmed(t, Some(_)) if t == ticket));
        assert!(confirmed, "the held publish was answered");
        assert_eq!(
            fast.publish(&Event::new("next"), ticket),
            Offer::Published(EventId::new(seq.run(), INBOX_SOFT_LIMIT as u64 + 2))
        );
    }

    /// Once a loop has stopped, a publish from another loop is refused,
    /// not held for a loop that will never drain.
    #[test]
    fn a_stopped_hub_refuses_loop_publishes() {
        let (_polls, seq) = hub(2);
        let mut alive = LocalBus::new(0, Arc::clone(&seq), 0);
        drop(LocalBus::new(1, Arc::clone(&seq), 0));
        let ticket = Ticket { key: 1, serial: 1 };
        assert_eq!(alive.publish(&Event::new("x"), ticket), Offer::Unavailable);
    }

    #[test]
    fn a_stopped_loop_releases_waiting_threads() {
        let (_polls, seq) = hub(1);
        let bus = LocalBus::new(0, Arc::clone(&seq), 0);
        for _ in 0..INBOX_SOFT_LIMIT {
            seq.publish(&Event::new("x"), None);
        }
        let waiter = {
            let seq = Arc::clone(&seq);
            std::thread::spawn(move || seq.wait_for_room())
        };
        drop(bus);
        waiter.join().unwrap();
        assert!(seq.is_closed());
    }
}
