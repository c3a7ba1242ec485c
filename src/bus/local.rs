//! The in-process hub. One [`LocalSequencer`], shared by every loop and
//! every `Publisher` of the process, assigns each event its sequence
//! number and encodes it once under a short lock, then hands the same
//! [`Delivery`] to every loop's [`Inbox`] in that order (waking each loop
//! but the caller's, which drains its inbox right after). Each loop's
//! [`LocalBus`] takes its messages out of its inbox and keeps its copy of
//! the history, so a replay reads only loop-local memory and never holds
//! up publishing.
//!
//! A publish with a key (see [`Publish::key`]) that a publish within the
//! last [`keys_window`] events had already is answered with that one's id
//! and creates no event: the keys are kept, under the same lock, as long
//! as their events are in that window.
//!
//! The lock is taken once per publish, never on the write path. While some
//! inbox holds [`INBOX_SOFT_LIMIT`](crate::bus::inbox::INBOX_SOFT_LIMIT) messages (its loop is behind), nothing
//! new is handed out: threads that publish wait, and a loop's publish is
//! held in arrival order and answered later ([`Offer::Pending`], then
//! [`Message::Confirmed`]), when the lagging loop has emptied its inbox. So
//! neither a fast thread nor a fast loop can grow a slow loop's inbox
//! without bound, and a loop never waits (it would wait for itself).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::bus::id::{Epoch, EventId, Run};
use crate::bus::inbox::{Inbox, Inboxes};
use crate::bus::{
    Asker, Bus, Delivery, History, Message, Offer, Publish, PublishError, Sequencer, Tally, Ticket,
};

/// Events a publisher's key is remembered for at least: a key is found
/// again while its event is among the last `max(history, this)` events.
pub const MIN_KEYS_WINDOW: usize = 1024;

/// The events a key is remembered for with `history` kept for replay.
pub fn keys_window(history: usize) -> usize {
    history.max(MIN_KEYS_WINDOW)
}

/// Publishers' keys of the last events, and their sequence numbers.
#[derive(Debug, Default)]
struct Keys {
    /// Each key's event's id.
    ids: HashMap<Arc<str>, EventId>,
    /// Oldest first, to forget them in order.
    order: VecDeque<(u64, Arc<str>)>,
    /// How many events back a key is remembered.
    window: u64,
}

impl Keys {
    /// The id of `key`'s event, if it is in the window ending at `newest`.
    fn find(&mut self, key: &str, newest: u64) -> Option<EventId> {
        while let Some((seq, _)) = self.order.front() {
            if seq + self.window > newest {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.get(key).cloned()
    }

    fn insert(&mut self, key: Arc<str>, seq: u64, id: EventId) {
        self.ids.insert(Arc::clone(&key), id);
        self.order.push_back((seq, key));
    }
}

/// Assigns ids and hands every event to every loop in one order.
#[derive(Debug)]
pub struct LocalSequencer {
    epoch: Epoch,
    /// The newest sequence number assigned; written under `order`.
    issued: AtomicU64,
    /// Held while an event is numbered and handed out, so that every inbox
    /// receives the same order; holds the publishers' keys.
    order: Mutex<Keys>,
    inboxes: Arc<Inboxes>,
    /// Loops' publishes that came while an inbox was full, in order.
    held: Mutex<VecDeque<Held>>,
    /// How many are held, read without the lock.
    held_count: AtomicUsize,
    tally: Tally,
}

/// A loop's publish waiting for room.
#[derive(Debug)]
struct Held {
    publish: Publish,
    ticket: Ticket,
}

impl LocalSequencer {
    /// A sequencer for the loops behind `inboxes`, with a fresh run,
    /// remembering publishers' keys for [`keys_window`]`(history)` events.
    pub fn new(inboxes: Vec<Arc<Inbox>>, history: usize) -> LocalSequencer {
        LocalSequencer {
            epoch: Epoch::new(Run::draw(), 0),
            issued: AtomicU64::new(0),
            order: Mutex::new(Keys {
                window: keys_window(history) as u64,
                ..Keys::default()
            }),
            inboxes: Arc::new(Inboxes::new(inboxes)),
            held: Mutex::new(VecDeque::new()),
            held_count: AtomicUsize::new(0),
            tally: Tally::default(),
        }
    }

    /// True while a loop's publish must wait: an inbox is full, or
    /// publishes that came earlier wait already (they go first).
    fn must_hold(&self) -> bool {
        self.held_count.load(Ordering::SeqCst) > 0 || self.inboxes.any_full()
    }

    /// Keeps a loop's publish until there is room, then releases what
    /// there is room for already: the inbox that was full may have been
    /// emptied since `must_hold` looked, by a loop that saw nothing held
    /// yet.
    fn hold(&self, publish: Publish, ticket: Ticket) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.push_back(Held { publish, ticket });
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
            let id = self.number(&next.publish, None);
            let asker = next.ticket.loop_index;
            self.inboxes
                .get(asker)
                .push(Message::Confirmed(next.ticket, Ok(id)), true);
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

    /// Numbers `publish`'s event, encodes it once and hands it to every
    /// loop; the loop `from` (the caller, when a loop publishes) is not
    /// woken, since it drains its inbox next. Returns the id; for a key
    /// seen within the window, the first event's id, and nothing is
    /// handed out.
    pub fn number(&self, publish: &Publish, from: Option<usize>) -> EventId {
        let event = &publish.event;
        let topics: Arc<[Box<str>]> = event.topics().iter().map(|t| t.as_str().into()).collect();
        let name: Option<Arc<str>> = event.id().map(Arc::from);
        let mut keys = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = self.issued.load(Ordering::Relaxed);
        let seq = newest + 1;
        let id = match &name {
            Some(name) => EventId::named(Arc::clone(name)),
            None => self.epoch.id(seq),
        };
        if let Some(key) = &publish.key {
            if let Some(first) = keys.find(key, newest) {
                return first;
            }
            keys.insert(Arc::clone(key), seq, id.clone());
        }
        let delivery = Delivery {
            seq,
            frame: Arc::new(event.encode(&id.text())),
            topics,
            name,
            private: event.is_private(),
        };
        self.issued.store(seq, Ordering::Release);
        self.inboxes.hand_out(&delivery, from);
        self.tally.count(&id);
        id
    }
}

impl Sequencer for LocalSequencer {
    fn publish(&self, publish: Publish, asker: Asker) -> Offer {
        match asker {
            Asker::Loop(ticket) => {
                if self.inboxes.is_closed() {
                    return Offer::Refused(PublishError::Closed);
                }
                if self.must_hold() {
                    self.hold(publish, ticket);
                    return Offer::Pending;
                }
                Offer::Published(self.number(&publish, Some(ticket.loop_index)))
            }
            Asker::Thread => {
                self.inboxes.wait_for_room();
                if self.inboxes.is_closed() {
                    return Offer::Refused(PublishError::Closed);
                }
                Offer::Published(self.number(&publish, None))
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

/// One loop's side of the in-process hub.
#[derive(Debug)]
pub struct LocalBus {
    sequencer: Arc<LocalSequencer>,
    inbox: Arc<Inbox>,
    /// Messages taken out of the inbox in one go and not yet handed out.
    taken: VecDeque<Message>,
    history: History,
}

impl LocalBus {
    /// Loop `index`'s side of `sequencer`, keeping `history` events.
    pub fn new(index: usize, sequencer: Arc<LocalSequencer>, history: usize) -> LocalBus {
        let inbox = Arc::clone(sequencer.inboxes.get(index));
        let history = History::new(sequencer.epoch, history);
        LocalBus {
            sequencer,
            inbox,
            taken: VecDeque::new(),
            history,
        }
    }
}

impl Bus for LocalBus {
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
    use crate::bus::inbox::INBOX_SOFT_LIMIT;
    use crate::sse::Event;
    use mio::{Poll, Token, Waker};

    fn hub(loops: usize) -> (Vec<Poll>, Arc<LocalSequencer>) {
        let polls: Vec<Poll> = (0..loops).map(|_| Poll::new().unwrap()).collect();
        let inboxes = polls
            .iter()
            .map(|p| Arc::new(Inbox::new(Waker::new(p.registry(), Token(0)).unwrap())))
            .collect();
        (polls, Arc::new(LocalSequencer::new(inboxes, 0)))
    }

    /// Loop `from`'s publish of `data` for its connection `key`.
    fn offer(seq: &LocalSequencer, from: usize, key: usize, data: &str) -> Offer {
        let ticket = Ticket {
            loop_index: from,
            key,
            serial: key as u64,
        };
        seq.publish(Publish::new(Event::new(data)), Asker::Loop(ticket))
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
        let Offer::Published(id) = offer(&seq, 0, 0, "x") else {
            panic!("the local bus answers at once");
        };
        assert_eq!(id.to_string(), format!("urn:sseloop:{}-1", seq.run()));
        let from_thread = seq.publish(Publish::new(Event::new("y")), Asker::Thread);
        assert_eq!(from_thread, Offer::Published(EventId::new(seq.run(), 2)));
        offer(&seq, 1, 0, "z");
        assert_eq!(drain(&mut a), [1, 2, 3]);
        assert_eq!(drain(&mut b), [1, 2, 3]);
        assert_eq!(a.history().newest(), 3);
        assert_eq!(a.issued(), 3);
    }

    /// A publisher's id is the event's id, on the wire and in the answer,
    /// and goes with the delivery; one in the hub's form, or `earliest`,
    /// is not taken at the door.
    #[test]
    fn a_named_event_is_answered_and_sent_under_its_name() {
        let (_polls, seq) = hub(1);
        let door = crate::bus::Hub::new(Arc::clone(&seq) as Arc<dyn Sequencer>);
        let mut bus = LocalBus::new(0, Arc::clone(&seq), 8);
        let event = Event::new("x")
            .with_id("urn:uuid:7")
            .with_retry(std::time::Duration::from_secs(2))
            .private();
        let Offer::Published(id) = door.publish(Publish::new(event), Asker::Thread) else {
            panic!("published");
        };
        assert_eq!(id.to_string(), "urn:uuid:7");
        let forged = Event::new("y").with_id(format!("urn:sseloop:{}-1", seq.run()));
        let Offer::Published(made) = door.publish(Publish::new(forged), Asker::Thread) else {
            panic!("published");
        };
        assert_eq!(made, EventId::new(seq.run(), 2));
        // Regression: `earliest` was taken as a name, and a Mercure client
        // resuming from that event was sent the whole history again.
        let earliest = Event::new("z").with_id("earliest");
        let Offer::Published(made) = door.publish(Publish::new(earliest), Asker::Thread) else {
            panic!("published");
        };
        assert_eq!(made, EventId::new(seq.run(), 3));
        bus.begin_drain();
        let Some(Message::Delivery(named)) = bus.next() else {
            panic!("a delivery");
        };
        assert_eq!(named.name.as_deref(), Some("urn:uuid:7"));
        assert!(named.private);
        assert_eq!(
            named.frame.payload(),
            b"id: urn:uuid:7\nretry: 2000\ndata: x\n\n"
        );
        let Some(Message::Delivery(plain)) = bus.next() else {
            panic!("a delivery");
        };
        assert_eq!(plain.name, None);
        assert_eq!(bus.history().resume_point("urn:uuid:7", 2), Ok(1));
    }

    /// A loop's publish while another loop is far behind is held, not
    /// added to the lagging inbox, and answered in order once it drains.
    #[test]
    fn a_loop_behind_holds_publishes_until_it_catches_up() {
        let (_polls, seq) = hub(2);
        let mut fast = LocalBus::new(0, Arc::clone(&seq), 0);
        let mut slow = LocalBus::new(1, Arc::clone(&seq), 0);
        for _ in 0..INBOX_SOFT_LIMIT {
            seq.number(&Publish::new(Event::new("backlog")), None);
        }
        drain(&mut fast);
        assert_eq!(offer(&seq, 0, 1, "a"), Offer::Pending);
        assert_eq!(offer(&seq, 0, 2, "b"), Offer::Pending);
        // Held, not added to the lagging inbox.
        assert_eq!(slow.inbox.len(), INBOX_SOFT_LIMIT);
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
                format!("1 urn:sseloop:{run}-{a}"),
                format!("event {b}"),
                format!("2 urn:sseloop:{run}-{b}")
            ]
        );
        assert_eq!(
            offer(&seq, 0, 3, "c"),
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
            seq.number(&Publish::new(Event::new("backlog")), None);
        }
        drain(&mut fast);
        assert!(seq.must_hold());
        drain(&mut slow);
        let ticket = Ticket {
            loop_index: 0,
            key: 7,
            serial: 1,
        };
        seq.hold(Publish::new(Event::new("late")), ticket);
        assert_eq!(seq.held_count.load(Ordering::SeqCst), 0);
        fast.begin_drain();
        let confirmed = std::iter::from_fn(|| fast.next())
            .any(|m| matches!(m, Message::Confirmed(t, Ok(_)) if t == ticket));
        assert!(confirmed, "the held publish was answered");
        assert_eq!(
            offer(&seq, 0, 8, "next"),
            Offer::Published(EventId::new(seq.run(), INBOX_SOFT_LIMIT as u64 + 2))
        );
    }

    /// Once a loop has stopped, a publish from another loop is refused,
    /// not held for a loop that will never drain.
    #[test]
    fn a_stopped_hub_refuses_loop_publishes() {
        let (_polls, seq) = hub(2);
        let alive = LocalBus::new(0, Arc::clone(&seq), 0);
        drop(LocalBus::new(1, Arc::clone(&seq), 0));
        assert_eq!(offer(&seq, 0, 1, "x"), Offer::Refused(PublishError::Closed));
        drop(alive);
    }

    /// A publish with a key seen within the window is answered with the
    /// first one's id and hands nothing out, on any loop or thread; past
    /// the window the key is forgotten.
    #[test]
    fn a_key_seen_within_the_window_publishes_nothing_twice() {
        let (_polls, seq) = hub(2);
        let mut a = LocalBus::new(0, Arc::clone(&seq), 8);
        let keyed = |data: &str, key: &str| Publish::keyed(Event::new(data), Some(key.into()));
        let first = seq.publish(keyed("order 42", "k42"), Asker::Thread);
        let Offer::Published(first) = first else {
            panic!("{first:?}");
        };
        let ticket = Ticket {
            loop_index: 1,
            key: 3,
            serial: 1,
        };
        assert_eq!(
            seq.publish(keyed("order 42 again", "k42"), Asker::Loop(ticket)),
            Offer::Published(first.clone())
        );
        assert_eq!(
            seq.publish(keyed("order 42 once more", "k42"), Asker::Thread),
            Offer::Published(first.clone())
        );
        // Other keys and no key publish as usual.
        assert_eq!(
            seq.publish(keyed("order 43", "k43"), Asker::Thread),
            Offer::Published(EventId::new(seq.run(), 2))
        );
        seq.publish(Publish::new(Event::new("plain")), Asker::Thread);
        assert_eq!(drain(&mut a), [1, 2, 3]);
        // The window is the last 1 024 events (history 0 here): then the
        // key names a new event.
        for _ in 0..MIN_KEYS_WINDOW {
            seq.number(&Publish::new(Event::new("filler")), None);
        }
        let again = seq.publish(keyed("order 42, much later", "k42"), Asker::Thread);
        assert_eq!(
            again,
            Offer::Published(EventId::new(seq.run(), 4 + MIN_KEYS_WINDOW as u64))
        );
        assert_eq!(
            seq.order.lock().unwrap().ids.len(),
            1,
            "forgotten keys are dropped"
        );
    }

    #[test]
    fn a_stopped_loop_releases_waiting_threads() {
        let (_polls, seq) = hub(1);
        let bus = LocalBus::new(0, Arc::clone(&seq), 0);
        for _ in 0..INBOX_SOFT_LIMIT {
            seq.number(&Publish::new(Event::new("x")), None);
        }
        let waiter = {
            let seq = Arc::clone(&seq);
            std::thread::spawn(move || seq.inboxes.wait_for_room())
        };
        drop(bus);
        waiter.join().unwrap();
        assert!(seq.inboxes.is_closed());
    }
}
