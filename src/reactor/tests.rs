//! The loop driven through a hub that confirms publishes later, as a
//! store shared between nodes will: a publish waits in its own state, its
//! answer and the answers after it go out in order once the hub confirms,
//! and a refusal is a 503. Real sockets on a port-0 listener; the hub is
//! the in-process one with the confirmation held back by the test, and
//! one whose bus has a socket and a deadline of its own, driven by the
//! loop's hooks.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Poll, Waker};

use super::{Reactor, WAKER};
use crate::bus::inbox::Inbox;
use crate::bus::local::{LocalBus, LocalSequencer};
use crate::bus::{
    Asker, Bus, History, Hub, Inboxes, Message, Offer, Publish, PublishError, Sequencer, Tally,
    Ticket,
};
use crate::config::Config;
use crate::metrics::Counters;
use crate::process::Shared;
use crate::sse::Event;

/// The in-process sequencer, except that a loop's publish is only taken:
/// the test decides when (and whether) it is stored and confirmed.
#[derive(Debug)]
struct HeldSequencer {
    inner: Arc<LocalSequencer>,
    taken: Sender<(Event, Ticket)>,
}

impl Sequencer for HeldSequencer {
    fn publish(&self, publish: Publish, asker: Asker) -> Offer {
        if publish.event.data() == "refuse at once" {
            return Offer::Refused(PublishError::Unavailable);
        }
        let Asker::Loop(ticket) = asker else {
            return self.inner.publish(publish, asker);
        };
        self.taken.send((publish.event, ticket)).unwrap();
        Offer::Pending
    }
    fn inboxes(&self) -> &Inboxes {
        self.inner.inboxes()
    }
    fn tally(&self) -> &Tally {
        self.inner.tally()
    }
}

struct Running {
    addr: std::net::SocketAddr,
    sequencer: Arc<LocalSequencer>,
    inbox: Arc<Inbox>,
    taken: Receiver<(Event, Ticket)>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start() -> Running {
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Inbox::new(Waker::new(poll.registry(), WAKER).unwrap()));
        let sequencer = Arc::new(LocalSequencer::new(vec![Arc::clone(&inbox)], 0));
        let counters = Arc::new(Counters::default());
        let (tx, taken) = mpsc::channel();
        let held = HeldSequencer {
            inner: Arc::clone(&sequencer),
            taken: tx,
        };
        let shared = Arc::new(Shared::new(
            Hub::new(Arc::new(held)),
            vec![Arc::clone(&counters)],
        ));
        let bus = LocalBus::new(0, Arc::clone(&sequencer), 16);
        let config = Config {
            listen: addr,
            ..Config::default()
        };
        let reactor =
            Reactor::new(0, poll, listener, config, Box::new(bus), shared, counters).unwrap();
        let thread = Some(std::thread::spawn(move || reactor.run()));
        Running {
            addr,
            sequencer,
            inbox,
            taken,
            thread,
        }
    }

    fn connect(&self) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        BufReader::new(stream)
    }

    /// The next offer the loop made, as the store receives it.
    fn offered(&self) -> (Event, Ticket) {
        self.taken
            .recv_timeout(Duration::from_secs(5))
            .expect("a publish offered")
    }

    /// Stores the event and confirms it, as the store's answer would.
    fn confirm(&self, event: &Event, ticket: Ticket) -> String {
        let id = self.sequencer.number(&Publish::new(event.clone()), None);
        self.inbox
            .push(Message::Confirmed(ticket, Ok(id.clone())), true);
        id.to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.sequencer.inboxes().shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one answer with a Content-Length body; returns (status line, body).
fn answer(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_owned(),
        String::from_utf8(body).unwrap(),
    )
}

fn read_until(reader: &mut BufReader<TcpStream>, wanted: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(wanted) {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "ended before {wanted:?}: {seen:?}"
        );
        seen.push_str(&line);
    }
    seen
}

const PUBLISH_THEN_HEALTH: &[u8] =
    b"POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
    GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[test]
fn a_publish_waits_for_the_bus_and_the_answers_after_it_keep_their_order() {
    let running = Running::start();
    let mut subscriber = running.connect();
    subscriber
        .get_mut()
        .write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut subscriber, ": connected");
    let mut publisher = running.connect();
    publisher.get_mut().write_all(PUBLISH_THEN_HEALTH).unwrap();
    let (event, ticket) = running.offered();
    assert_eq!(event, Event::new("hello").with_topic("t"));
    // Only now is it stored: an answer to the health check written before
    // the confirmation would be read first below.
    let id = running.confirm(&event, ticket);
    assert_eq!(
        answer(&mut publisher),
        ("HTTP/1.1 200 OK".into(), id.clone())
    );
    assert_eq!(
        answer(&mut publisher),
        ("HTTP/1.1 200 OK".into(), "ok".into())
    );
    let delivered = read_until(&mut subscriber, "data: hello");
    assert!(delivered.contains(&format!("id: {id}")), "{delivered:?}");
}

#[test]
fn a_publish_the_bus_cannot_store_gets_503_and_no_id() {
    let running = Running::start();
    let mut publisher = running.connect();
    publisher.get_mut().write_all(PUBLISH_THEN_HEALTH).unwrap();
    let (_, ticket) = running.offered();
    running.inbox.push(
        Message::Confirmed(ticket, Err(PublishError::Unavailable)),
        true,
    );
    let (status, body) = answer(&mut publisher);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.contains("retry later"), "{body}");
    // The refusal closes the connection: the health check is not answered.
    let mut rest = String::new();
    publisher.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");

    let mut refused = running.connect();
    refused
        .get_mut()
        .write_all(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 14\r\n\r\nrefuse at once")
        .unwrap();
    assert_eq!(answer(&mut refused).0, "HTTP/1.1 503 Service Unavailable");
}

/// A hub whose bus has a socket of its own, as a store over the network
/// has: the sequencer queues a loop's publish for the bus, which stores it
/// when a datagram comes in on its UDP socket (registered by the bus under
/// a bus token, its readiness routed to `on_ready`), and refuses it at the
/// bus's own deadline when the event says it will never be stored (named
/// by `before_poll`, kept by the loop as a poll timeout, fired through
/// `on_deadline`).
#[derive(Debug, Default)]
struct Store {
    waiting: VecDeque<(Event, Ticket)>,
    give_up_at: Option<std::time::Instant>,
}

#[derive(Debug)]
struct QueueSequencer {
    inner: Arc<LocalSequencer>,
    store: Arc<Mutex<Store>>,
}

impl Sequencer for QueueSequencer {
    fn publish(&self, publish: Publish, asker: Asker) -> Offer {
        let Asker::Loop(ticket) = asker else {
            return self.inner.publish(publish, asker);
        };
        let mut store = self.store.lock().unwrap();
        if publish.event.data() == "never stored" {
            store.give_up_at = Some(std::time::Instant::now() + Duration::from_millis(100));
        }
        store.waiting.push_back((publish.event, ticket));
        Offer::Pending
    }
    fn inboxes(&self) -> &Inboxes {
        self.inner.inboxes()
    }
    fn tally(&self) -> &Tally {
        self.inner.tally()
    }
}

struct SocketBus {
    inner: LocalBus,
    sequencer: Arc<LocalSequencer>,
    socket: mio::net::UdpSocket,
    store: Arc<Mutex<Store>>,
    answers: VecDeque<Message>,
}

impl Bus for SocketBus {
    fn next(&mut self) -> Option<Message> {
        self.answers.pop_front().or_else(|| self.inner.next())
    }
    fn begin_drain(&mut self) {
        self.inner.begin_drain();
    }
    fn history(&self) -> &History {
        self.inner.history()
    }
    fn issued(&self) -> u64 {
        self.inner.issued()
    }
    fn register(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        let token = mio::Token(crate::bus::BUS_TOKENS.start);
        registry.register(&mut self.socket, token, mio::Interest::READABLE)
    }
    fn on_ready(&mut self, token: mio::Token, _readiness: &mio::event::Event) {
        assert_eq!(token.0, crate::bus::BUS_TOKENS.start);
        let mut datagram = [0; 16];
        while self.socket.recv_from(&mut datagram).is_ok() {
            let waiting = self.store.lock().unwrap().waiting.pop_front();
            let (event, ticket) = waiting.expect("a publish waits");
            // Into this loop's inbox without a wake-up: the loop takes its
            // messages right after `on_ready`.
            let id = self.sequencer.number(&Publish::new(event), Some(0));
            self.answers.push_back(Message::Confirmed(ticket, Ok(id)));
        }
    }
    fn before_poll(&mut self) -> Option<std::time::Instant> {
        self.store.lock().unwrap().give_up_at
    }
    fn on_deadline(&mut self, now: std::time::Instant) {
        let mut store = self.store.lock().unwrap();
        if store.give_up_at.is_some_and(|at| at <= now) {
            store.give_up_at = None;
            let (_, ticket) = store.waiting.pop_back().expect("the refused publish");
            let refused = Message::Confirmed(ticket, Err(PublishError::Unavailable));
            self.answers.push_back(refused);
        }
    }
}

#[test]
fn a_bus_with_a_socket_and_a_deadline_of_its_own_is_driven_by_the_loop() {
    let poll = Poll::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Arc::new(Inbox::new(Waker::new(poll.registry(), WAKER).unwrap()));
    let sequencer = Arc::new(LocalSequencer::new(vec![Arc::clone(&inbox)], 0));
    let counters = Arc::new(Counters::default());
    let waiting = Arc::new(Mutex::new(Store::default()));
    let queue = QueueSequencer {
        inner: Arc::clone(&sequencer),
        store: Arc::clone(&waiting),
    };
    let shared = Arc::new(Shared::new(
        Hub::new(Arc::new(queue)),
        vec![Arc::clone(&counters)],
    ));
    let socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let store = socket.local_addr().unwrap();
    let mut bus = SocketBus {
        inner: LocalBus::new(0, Arc::clone(&sequencer), 16),
        sequencer: Arc::clone(&sequencer),
        socket,
        store: waiting,
        answers: VecDeque::new(),
    };
    bus.register(poll.registry()).unwrap();
    let config = Config {
        listen: addr,
        ..Config::default()
    };
    let reactor = Reactor::new(0, poll, listener, config, Box::new(bus), shared, counters).unwrap();
    let thread = std::thread::spawn(move || reactor.run());
    let connect = || {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        BufReader::new(stream)
    };

    let mut subscriber = connect();
    subscriber
        .get_mut()
        .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut subscriber, ": connected");
    let mut publisher = connect();
    publisher
        .get_mut()
        .write_all(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    // Not answered before the store says so.
    publisher
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut early = [0; 1];
    let silent = publisher.get_mut().read(&mut early);
    assert!(
        silent.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "answered before the store: {silent:?}"
    );
    publisher
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"stored", store)
        .unwrap();
    let (status, id) = answer(&mut publisher);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let delivered = read_until(&mut subscriber, "data: hello");
    assert!(delivered.contains(&format!("id: {id}")), "{delivered:?}");

    // The bus's deadline refuses the next one: 503, within its 100 ms
    // (bounded here by the read timeout).
    let mut refused = connect();
    refused
        .get_mut()
        .write_all(
            b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 12\r\n\r\nnever stored",
        )
        .unwrap();
    assert_eq!(answer(&mut refused).0, "HTTP/1.1 503 Service Unavailable");

    sequencer.inboxes().shutdown();
    thread.join().unwrap().unwrap();
}

/// A bus that is not ready keeps the loop from listening (a connection
/// waits unanswered in the kernel's queue) while the loop still drives the
/// bus; one that fails ends the loop with its reason.
struct StartingBus {
    inner: LocalBus,
    checks: Sender<()>,
    fail_after: usize,
}

impl Bus for StartingBus {
    fn ready(&mut self) -> std::io::Result<bool> {
        self.fail_after -= 1;
        if self.fail_after == 0 {
            return Err(std::io::Error::other("the store refused us"));
        }
        self.checks.send(()).unwrap();
        // Asked again at once, as a bus with a deadline due would be.
        Ok(false)
    }
    fn before_poll(&mut self) -> Option<std::time::Instant> {
        Some(std::time::Instant::now() + Duration::from_millis(10))
    }
    fn next(&mut self) -> Option<Message> {
        self.inner.next()
    }
    fn begin_drain(&mut self) {
        self.inner.begin_drain();
    }
    fn history(&self) -> &History {
        self.inner.history()
    }
    fn issued(&self) -> u64 {
        self.inner.issued()
    }
}

#[test]
fn a_loop_listens_only_once_its_bus_is_ready_and_a_failing_bus_ends_it() {
    let poll = Poll::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Arc::new(Inbox::new(Waker::new(poll.registry(), WAKER).unwrap()));
    let sequencer = Arc::new(LocalSequencer::new(vec![Arc::clone(&inbox)], 0));
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared::new(
        Hub::new(Arc::clone(&sequencer) as Arc<dyn Sequencer>),
        vec![Arc::clone(&counters)],
    ));
    let (checks, checked) = mpsc::channel();
    let bus = StartingBus {
        inner: LocalBus::new(0, Arc::clone(&sequencer), 16),
        checks,
        fail_after: 30,
    };
    let config = Config {
        listen: addr,
        ..Config::default()
    };
    let reactor = Reactor::new(0, poll, listener, config, Box::new(bus), shared, counters).unwrap();
    let (ran, result) = mpsc::channel();
    std::thread::spawn(move || ran.send(reactor.run()));
    checked.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut early = TcpStream::connect(addr).unwrap();
    early
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let Ok(ended) = result.recv_timeout(Duration::from_secs(5)) else {
        sequencer.inboxes().shutdown();
        panic!("the loop went on after its bus failed");
    };
    let failed = ended.expect_err("the bus failed");
    assert_eq!(failed.to_string(), "the store refused us");
    assert!(checked.try_iter().count() >= 20, "the loop went on asking");
    // The loop is gone, and it never answered the request.
    early
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let ended = early.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "answered ({ended:?}): {:?}",
        String::from_utf8_lossy(&rest)
    );
}
