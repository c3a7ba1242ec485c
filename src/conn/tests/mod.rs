//! The connection's state machine over an in-memory stream: requests, a
//! stream, closing; heartbeats, the queue limit, a publish waiting for the
//! bus, half-closes, replays. The stream plays the kernel: it hands over
//! what the client sent, takes what the server writes until its room runs
//! out, and can fail.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::Audience;
use crate::bus::id::{Epoch, Run};
use crate::bus::{Delivery, History, Ticket};
use crate::config::LINGER_DISCARD_LIMIT;
use crate::http::{Policy, Route};
use crate::request::Step;
use crate::sse::{Frame, Framing, LAST_CHUNK};
use crate::topics::Topics;

mod stream;

/// Both ends of an in-memory connection, as the kernel sees them.
#[derive(Debug, Default)]
struct Wire {
    /// What the client sent and the server has not read.
    incoming: Vec<u8>,
    /// The client sent its FIN: a read past `incoming` is the end.
    client_fin: bool,
    /// What the server wrote.
    written: Vec<u8>,
    /// Bytes the kernel still takes before it refuses; `None`: any.
    room: Option<usize>,
    /// Every write fails with this.
    broken: Option<io::ErrorKind>,
    /// The server sent its FIN.
    server_fin: bool,
    /// The send buffer the server set.
    send_buffer: Option<usize>,
}

/// The server's end; the test keeps a clone to play the client.
#[derive(Clone, Debug, Default)]
struct Mem(Rc<RefCell<Wire>>);

impl Mem {
    fn send(&self, bytes: &[u8]) {
        self.0.borrow_mut().incoming.extend_from_slice(bytes);
    }

    fn fin(&self) {
        self.0.borrow_mut().client_fin = true;
    }

    /// What the server wrote since the last call.
    fn take_written(&self) -> String {
        let written = std::mem::take(&mut self.0.borrow_mut().written);
        String::from_utf8(written).unwrap()
    }

    fn set_room(&self, room: Option<usize>) {
        self.0.borrow_mut().room = room;
    }
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut wire = self.0.borrow_mut();
        if wire.incoming.is_empty() {
            return if wire.client_fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(wire.incoming.len());
        buf[..n].copy_from_slice(&wire.incoming[..n]);
        wire.incoming.drain(..n);
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut wire = self.0.borrow_mut();
        if let Some(kind) = wire.broken {
            return Err(kind.into());
        }
        let mut room = wire.room.unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(room);
            wire.written.extend_from_slice(&buf[..take]);
            n += take;
            room -= take;
        }
        if wire.room.is_some() {
            wire.room = Some(room);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Mem {
    fn shutdown_write(&self) -> io::Result<()> {
        self.0.borrow_mut().server_fin = true;
        Ok(())
    }

    fn limit_send_buffer(&self, bytes: usize) -> io::Result<()> {
        self.0.borrow_mut().send_buffer = Some(bytes);
        Ok(())
    }
}

const POLICY: Policy = Policy {
    max_head_size: 8192,
    max_headers: 64,
    max_body: 1024,
    publish_token: None,
    loopback_hosts: true,
    allow_hosts: Vec::new(),
    allow_origin: None,
    access: None,
};

/// The queue limit of the tests' deliveries.
const LIMIT: usize = 4096;

fn config() -> Config {
    Config {
        heartbeat: Some(Duration::from_secs(1)),
        ..Config::default()
    }
}

/// A connection accepted at `now`, and the client's end of it.
fn accepted(now: Instant) -> (Conn<Mem>, Mem) {
    let wire = Mem::default();
    (Conn::new(wire.clone(), now, false, &config()), wire)
}

/// Reads what the client sent and takes the next request out of it, as the
/// loop does (`reactor::serve::serve_input`), keeping the rest.
fn next_request(conn: &mut Conn<Mem>, now: Instant) -> Option<Step> {
    let mut buf = [0; 4096];
    let input = match conn.read(&mut buf) {
        ReadOutcome::Data(n) => &buf[..n],
        ReadOutcome::WouldBlock => &[][..],
        other => panic!("{other:?}"),
    };
    let kept = conn.begin_input(input, now)?;
    let bytes = if kept.is_empty() { input } else { &kept[..] };
    let step = conn.next_request(bytes, &POLICY, 0, &mut patterns());
    let used = step.as_ref().map_or(0, |(n, _)| *n);
    let _ = conn.end_input(&bytes[used..], now, &config());
    step.map(|(_, step)| step)
}

fn route(step: Option<Step>) -> Route {
    match step {
        Some(Step::Request(head, _)) => head.route.unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Flushes and says what came next.
fn flush(conn: &mut Conn<Mem>, now: Instant) -> AfterFlush {
    conn.flush(now, 1).then
}

/// A stream begun at `now` on a fresh connection (its head written), with
/// heartbeats every second from `now`, resuming after `resume` when given.
fn streaming(now: Instant, resume: Option<u64>) -> (Conn<Mem>, Mem, HeartbeatGrid) {
    let (mut conn, wire) = accepted(now);
    wire.send(b"GET /events?topic=t HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(matches!(
        route(next_request(&mut conn, now)),
        Route::Subscribe { .. }
    ));
    let grid = HeartbeatGrid::new(config().heartbeat, now);
    let subscription = Topics::default().subscribe(1, &["t".to_owned()]);
    let next = conn.start_stream(
        b"HEAD;".to_vec(),
        Framing::Chunked,
        subscription,
        None,
        Ok(resume),
        now,
        &grid,
    );
    assert_eq!(next, Next::Flush(Lane::Answer));
    assert!(matches!(
        flush(&mut conn, now),
        AfterFlush::Done | AfterFlush::Replay
    ));
    assert_eq!(wire.take_written(), "HEAD;");
    (conn, wire, grid)
}

/// The audience of a public event: everyone.
fn everyone() -> Audience<'static> {
    Audience::of(None, &[], false, HUB.get_or_init(hub))
}

static HUB: std::sync::OnceLock<crate::mercure::url::Url> = std::sync::OnceLock::new();

fn patterns() -> crate::mercure::matcher::Patterns {
    crate::mercure::matcher::Patterns::new(hub())
}

fn hub() -> crate::mercure::url::Url {
    crate::mercure::url::Url::parse("http://localhost/.well-known/mercure", None).unwrap()
}

fn event(seq: u64) -> Arc<Frame> {
    Arc::new(Frame::event(&format!("r-{seq}"), None, &format!("e{seq}")))
}

#[test]
fn requests_then_a_stream_then_closing() {
    let t0 = Instant::now();
    let (mut conn, wire) = accepted(t0);
    assert_eq!(conn.deadline(), Some(t0 + config().header_timeout));
    wire.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /events HTTP/1.1\r\nHost: lo");
    assert_eq!(route(next_request(&mut conn, t0)), Route::Health);
    let next = conn.answer(b"ok;".to_vec(), true, t0, &config());
    assert_eq!(next, Next::Flush(Lane::Answer));
    // The second head is incomplete: kept until the rest arrives.
    assert_eq!(next_request(&mut conn, t0), Some(Step::NeedMore));
    assert!(conn.wants_input());
    wire.send(b"calhost\r\n\r\n");
    assert!(matches!(
        route(next_request(&mut conn, t0)),
        Route::Subscribe { .. }
    ));
    let subscription = Topics::default().subscribe(1, &[]);
    let grid = HeartbeatGrid::new(None, t0);
    let next = conn.start_stream(
        b"HEAD;".to_vec(),
        Framing::Chunked,
        subscription,
        None,
        Ok(None),
        t0,
        &grid,
    );
    // Listed already, for the answer.
    assert_eq!(next, Next::Wait);
    assert!(conn.is_stream() && !conn.wants_input() && conn.is_listed());
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Done));
    assert_eq!(wire.take_written(), "ok;HEAD;");
    assert!(!conn.is_listed() && !conn.wants_writable());

    let frame = event(1);
    assert_eq!(
        conn.deliver(&frame, 1, 1, LIMIT, &mut everyone()),
        Delivered::Queued { list: true }
    );
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Done));
    assert_eq!(wire.take_written().as_bytes(), frame.wire(Framing::Chunked));

    let (ended, next) = conn.end_stream(t0);
    assert!(ended.is_some_and(|e| !e.was_replaying));
    assert_eq!(next, Next::Flush(Lane::Stream));
    assert!(!conn.is_stream() && conn.wants_input(), "closing reads on");
    assert_eq!(conn.deadline(), Some(t0 + LINGER_TIMEOUT));
    // Written: the FIN goes out and input left unread is read on.
    assert!(matches!(flush(&mut conn, t0), AfterFlush::ResumeInput));
    assert_eq!(wire.take_written().as_bytes(), LAST_CHUNK);
    assert!(wire.0.borrow().server_fin);
    wire.fin();
    let mut buf = [0; 16];
    assert!(matches!(conn.read(&mut buf), ReadOutcome::Eof));
    assert_eq!(conn.on_eof(t0), Next::Close("done"));
}

#[test]
fn a_publish_waiting_for_the_bus_holds_the_next_request() {
    let t0 = Instant::now();
    let (mut conn, wire) = accepted(t0);
    wire.send(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx\
          GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(matches!(
        route(next_request(&mut conn, t0)),
        Route::Publish { .. }
    ));
    let ticket = Ticket {
        key: 1,
        serial: 7,
        loop_index: 0,
    };
    conn.await_publish(ticket, true);
    // No clock runs while the bus has it, and nothing more is read.
    assert_eq!(conn.deadline(), None);
    assert!(!conn.wants_input());
    assert_eq!(next_request(&mut conn, t0), None);
    // An answer for another ticket (a key reused since) is not its.
    assert_eq!(
        conn.take_publish(Ticket {
            key: 1,
            serial: 6,
            loop_index: 0
        }),
        None
    );
    // The peer's EOF does not drop the answer it waits for.
    wire.fin();
    assert_eq!(conn.on_eof(t0), Next::Wait);
    assert_eq!(conn.take_publish(ticket), Some(true));
    assert_eq!(conn.take_publish(ticket), None);
    let next = conn.answer(b"r-1".to_vec(), true, t0, &config());
    assert_eq!(next, Next::Flush(Lane::Answer));
    // The EOF came: it closes once the answer is written.
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Close("done")));
    assert_eq!(wire.take_written(), "r-1");
}

#[test]
fn answers_piling_up_pause_reading_until_written() {
    let t0 = Instant::now();
    let (mut conn, wire) = accepted(t0);
    wire.set_room(Some(0));
    wire.send(
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
            .repeat(2)
            .as_slice(),
    );
    assert_eq!(route(next_request(&mut conn, t0)), Route::Health);
    let big = vec![b'a'; PAUSE_READING_AT];
    let _ = conn.answer(big, true, t0, &config());
    assert!(!conn.wants_input());
    assert_eq!(next_request(&mut conn, t0), None);
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Done));
    wire.set_room(None);
    // Written: the second request, kept meanwhile, is served.
    assert!(matches!(flush(&mut conn, t0), AfterFlush::ResumeInput));
    assert!(conn.wants_input());
    assert_eq!(route(next_request(&mut conn, t0)), Route::Health);
}

#[test]
fn a_request_must_arrive_in_time_and_an_idle_connection_closes() {
    let t0 = Instant::now();
    let grid = HeartbeatGrid::new(None, t0);
    let (mut conn, _) = accepted(t0);
    assert_eq!(conn.on_deadline(t0, &grid), Expired::RequestTimeout);
    let (mut conn, wire) = accepted(t0);
    wire.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let _ = route(next_request(&mut conn, t0));
    let _ = conn.answer(b"ok".to_vec(), true, t0, &config());
    // Idle: closes after the idle timeout and up to a sixteenth more.
    let idle = config().idle_timeout;
    assert_eq!(conn.deadline(), Some(t0 + idle + idle / 16));
    assert_eq!(conn.on_deadline(t0, &grid), Expired::Close("idle"));
    // Half a request since: its deadline, and a 408 when it passes.
    wire.send(b"GET /hea");
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(next_request(&mut conn, t1), Some(Step::NeedMore));
    assert_eq!(conn.deadline(), Some(t1 + config().header_timeout));
    assert_eq!(conn.on_deadline(t1, &grid), Expired::RequestTimeout);
}

#[test]
fn the_peers_eof_closes_once_what_is_owed_is_written() {
    let t0 = Instant::now();
    let (mut conn, _) = accepted(t0);
    assert_eq!(conn.on_eof(t0), Next::Close("peer closed"));
    let (mut conn, wire) = accepted(t0);
    wire.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let _ = route(next_request(&mut conn, t0));
    let _ = conn.answer(b"ok".to_vec(), true, t0, &config());
    assert_eq!(conn.on_eof(t0), Next::Wait);
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Close("done")));
    assert_eq!(wire.take_written(), "ok");
}

#[test]
fn a_closing_connection_reads_and_drops_input_up_to_a_limit() {
    let t0 = Instant::now();
    let (mut conn, _) = accepted(t0);
    let _ = conn.reject(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), t0);
    assert!(conn.wants_input());
    assert_eq!(conn.begin_input(b"junk", t0), None);
    assert_eq!(conn.discard(LINGER_DISCARD_LIMIT), Next::Wait);
    assert_eq!(conn.discard(1), Next::Close("sent too much while closing"));
    let grid = HeartbeatGrid::new(None, t0);
    assert_eq!(
        conn.on_deadline(t0, &grid),
        Expired::Close("linger timeout")
    );
}

#[test]
fn a_failed_write_is_reported_with_how_long_it_waited() {
    let t0 = Instant::now();
    let (mut conn, wire, _) = streaming(t0, None);
    wire.set_room(Some(0));
    let _ = conn.deliver(&event(1), 1, 1, LIMIT, &mut everyone());
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Done));
    wire.0.borrow_mut().broken = Some(io::ErrorKind::BrokenPipe);
    let later = t0 + Duration::from_millis(30);
    let flushed = conn.flush(later, 1);
    assert!(
        matches!(flushed.then, AfterFlush::Failed(ref e) if e.kind() == io::ErrorKind::BrokenPipe)
    );
    assert_eq!(flushed.waited, Some(Duration::from_millis(30)));
    assert_eq!(flushed.written, 0);
}

#[test]
fn the_send_buffer_is_set_on_the_socket() {
    let t0 = Instant::now();
    let (conn, wire) = accepted(t0);
    conn.limit_send_buffer(8192).unwrap();
    assert_eq!(wire.0.borrow().send_buffer, Some(8192));
    let remains = conn.remove(t0);
    assert!(remains.stream.is_none() && !remains.over_capacity);
}
