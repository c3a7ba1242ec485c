//! The hot path allocates nothing per subscriber: an in-process server whose
//! loop thread counts its own heap allocations publishes the same events to
//! 1 and to 300 subscribers over real sockets, and the count per event must
//! not grow with the fan-out; the same for a private topic (`jwt_key`),
//! whose subscribers came with tokens and are checked on each delivery, and
//! for Mercure subscribers of a URL pattern (evaluated once per event, not
//! per subscriber). And a publish allocates no more than it is known to
//! (the README's Performance section says which allocations): the figures
//! are asserted, so an allocation added to the publish path fails the test.
//! Its own test binary, because it installs a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sseloop::{Config, Publisher, Server};

struct Counting;

thread_local! {
    /// Set on the server's loop thread only: the test's own clients allocate
    /// freely without being counted.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count() {
    // `try_with`: the flag may already be gone while a thread exits.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Events published before counting, so that queues, flush lists and the
/// history have reached the size they keep.
const WARM_UP: usize = 40;
const COUNTED_EVENTS: usize = 100;
const WIDE: usize = 300;
/// Heap allocations of the loop per publish on a connection of its own
/// (accepting it included), as measured: 14 before the publish path was
/// trimmed (a string per query key and value and a list of them, the Host
/// name's canonical form, a second list of topics, the answer's head and
/// the chunk-size line written with `format!`), 9 since.
const PER_PUBLISH: u64 = 9;
/// The same to a private topic (16 before): the token's grant is checked
/// too.
const PER_PRIVATE_PUBLISH: u64 = 11;
/// The same to Mercure subscribers of a URL pattern (14 before): the
/// pattern is evaluated once per event, and remembered.
const PER_PATTERN_PUBLISH: u64 = 9;
/// The same over one kept-alive publishing connection, as a busy
/// publisher sends them: the request's body, the topic's name and the list
/// of names, the frame and its shared handle, the topics as every loop
/// sees them (the list and each name), and the answer.
const PER_KEPT_ALIVE_PUBLISH: u64 = 8;

/// How the publishes reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publishing {
    /// Each on a connection of its own, closed after the answer.
    OwnConnection,
    /// All over one kept-alive connection.
    KeptAlive,
}

struct Counted {
    addr: SocketAddr,
    publisher: Publisher,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

/// The key of the private-topic case, and the token its subscribers send
/// (HS256, `{"mercure":{"subscribe":["t"]}}`, made here: what is counted
/// is allocations, not whose token it is).
const KEY: &str = "alloc-test-key-0123456789abcdef0123456789";

fn token() -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use hmac::{Hmac, KeyInit, Mac};
    let head = format!(
        "{}.{}",
        B64.encode(r#"{"alg":"HS256"}"#),
        B64.encode(r#"{"mercure":{"subscribe":["t"]}}"#)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(head.as_bytes());
    format!("{head}.{}", B64.encode(mac.finalize().into_bytes()))
}

impl Counted {
    /// A server whose topic `t` is private when `private`.
    fn start(private: bool) -> Counted {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            // Keeps the replay history's growth out of the counted events.
            history: WARM_UP,
            jwt_key: private.then(|| KEY.to_string()),
            publish_token: private.then(|| "p".to_string()),
            ..Config::default()
        };
        let server = Server::bind(config).expect("bind");
        let addr = server.local_addr();
        let publisher = server.publisher();
        let thread = Some(thread::spawn(move || {
            COUNTED.with(|c| c.set(true));
            server.run()
        }));
        Counted {
            addr,
            publisher,
            thread,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.publisher.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    BufReader::new(stream)
}

/// Reads lines until one equals `line` (the wire's chunk framing keeps each
/// event's lines whole).
fn read_until_line(reader: &mut BufReader<TcpStream>, line: &str) {
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).expect("read");
        assert!(n > 0, "stream ended before {line:?}");
        if buf.trim_end_matches(['\r', '\n']) == line {
            return;
        }
    }
}

/// Publishes `data` on `kept` (a kept-alive connection) or on a connection
/// of its own, and waits for the answer.
fn publish(addr: SocketAddr, kept: Option<&mut BufReader<TcpStream>>, data: &str) {
    let connection = if kept.is_some() {
        "keep-alive"
    } else {
        "close"
    };
    let request = format!(
        "POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\
         Authorization: Bearer p\r\nContent-Length: {}\r\n\r\n{data}",
        data.len()
    );
    let Some(conn) = kept else {
        let mut conn = connect(addr);
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "publish: {answer:?}");
        return;
    };
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    let (mut line, mut length) = (String::new(), 0);
    conn.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "publish: {line:?}");
    while line != "\r\n" {
        line.clear();
        assert!(conn.read_line(&mut line).unwrap() > 0, "answer cut short");
        if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = n.trim().parse().unwrap();
        }
    }
    conn.read_exact(&mut vec![0; length]).unwrap();
}

/// Who subscribes, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// `/events?topic=t`.
    Events,
    /// `/events?topic=t`, a private topic, with a token.
    Private,
    /// The Mercure hub, by the URL pattern `/.well-known/:topic` (topic
    /// `t` resolves against the hub URL to
    /// `http://<address>/.well-known/t`).
    Pattern,
}

/// Heap allocations the loop made for `COUNTED_EVENTS` publishes, each
/// delivered to `subscribers` streams, after a warm-up.
fn allocations_for(subscribers: usize, case: Case, publishing: Publishing) -> u64 {
    let private = case == Case::Private;
    let server = Counted::start(private);
    let auth = if private {
        format!("Authorization: Bearer {}\r\n", token())
    } else {
        String::new()
    };
    let target = match case {
        Case::Pattern => "/.well-known/mercure?match_urlpattern=%2F.well-known%2F%3Atopic",
        _ => "/events?topic=t",
    };
    let subscribe = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n");
    let mut streams: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut reader = connect(server.addr);
            reader.get_mut().write_all(subscribe.as_bytes()).unwrap();
            read_until_line(&mut reader, ": connected");
            reader
        })
        .collect();
    let mut kept = (publishing == Publishing::KeptAlive).then(|| connect(server.addr));
    let mut round = |first: usize, count: usize| {
        for i in first..first + count {
            publish(server.addr, kept.as_mut(), &format!("event {i}"));
        }
        let last = format!("data: event {}", first + count - 1);
        for stream in &mut streams {
            read_until_line(stream, &last);
        }
    };
    round(0, WARM_UP);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    round(WARM_UP, COUNTED_EVENTS);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// One test for every case: the counter is global, so two tests running at
/// once would count each other's allocations.
#[test]
fn publishing_allocates_nothing_per_subscriber() {
    assert_nothing_per_subscriber(Case::Events, PER_PUBLISH);
    assert_nothing_per_subscriber(Case::Private, PER_PRIVATE_PUBLISH);
    assert_nothing_per_subscriber(Case::Pattern, PER_PATTERN_PUBLISH);
    let kept_alive = allocations_for(1, Case::Events, Publishing::KeptAlive);
    eprintln!(
        "allocations for {COUNTED_EVENTS} events over one kept-alive connection: {kept_alive}"
    );
    assert!(
        kept_alive <= PER_KEPT_ALIVE_PUBLISH * COUNTED_EVENTS as u64,
        "{kept_alive} allocations for {COUNTED_EVENTS} publishes over one connection: \
         more than {PER_KEPT_ALIVE_PUBLISH} each"
    );
}

fn assert_nothing_per_subscriber(case: Case, per_publish: u64) {
    let narrow = allocations_for(1, case, Publishing::OwnConnection);
    let wide = allocations_for(WIDE, case, Publishing::OwnConnection);
    let extra_deliveries = (COUNTED_EVENTS * (WIDE - 1)) as u64;
    eprintln!(
        "allocations for {COUNTED_EVENTS} events ({case:?}): {narrow} to 1 \
         subscriber, {wide} to {WIDE} subscribers ({extra_deliveries} more deliveries)"
    );
    assert!(
        narrow > 0,
        "the counter saw no allocation at all: is it counting the loop thread?"
    );
    assert!(
        narrow <= per_publish * COUNTED_EVENTS as u64,
        "{narrow} allocations for {COUNTED_EVENTS} publishes ({case:?}): \
         more than {per_publish} each"
    );
    // One allocation per subscriber per event would add `extra_deliveries`;
    // a few stray ones (a list growing once) are allowed.
    assert!(
        wide <= narrow + COUNTED_EVENTS as u64 / 10,
        "{wide} allocations for {WIDE} subscribers against {narrow} for 1: \
         the fan-out allocates per subscriber"
    );
}
