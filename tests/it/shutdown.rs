//! Graceful shutdown of the binary on SIGTERM/SIGINT: queued events are
//! delivered within the grace period, every stream ends cleanly (the
//! terminating chunk, or the close for close-delimited bodies), requests
//! that arrive meanwhile are told to come back, and the process exits 0.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Framing, TestServer, assert_error, deadline, padded};

/// Data bytes per event: large, so the queue fills with few publishes.
const SIZE: usize = 60 * 1024;
/// At most this many events (24 MiB) to get bytes queued in the server.
const MAX_EVENTS: usize = 400;
/// Bytes the server must hold unsent for the subscriber when the signal
/// arrives, beyond what the sockets took.
const QUEUED: u64 = 1 << 20;
/// How long the server may take to exit after the streams ended.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server's shutdown grace period: these servers keep the default.
const GRACE: Duration = sseloop::config::DEFAULT_SHUTDOWN_GRACE;
/// What the subscriber may take beyond the grace period to read to the
/// close: scheduling on a loaded machine, not server time.
const GRACE_MARGIN: Duration = Duration::from_millis(1500);

/// Publishes to topic `s` while `sub` reads nothing, until at least
/// `QUEUED` bytes of events wait in the server's queue (events published
/// minus all bytes the server wrote, an underestimate). Returns the ids.
fn fill_queue(server: &TestServer) -> Vec<String> {
    let mut publisher = server.publisher();
    let mut ids = Vec::new();
    while ids.len() < MAX_EVENTS {
        for _ in 0..8 {
            let n = ids.len();
            ids.push(publisher.publish_ok("?topic=s", padded(n, SIZE).as_bytes()));
        }
        let published = (ids.len() * SIZE) as u64;
        let written = server.metric("sseloop_bytes_written_total");
        if published > written + QUEUED {
            return ids;
        }
    }
    panic!("no bytes queued in the server after {MAX_EVENTS} events");
}

/// A subscriber that reads nothing while events pile up in the server's
/// queue; then the signal; then it reads: every event, the clean end, and
/// the process exits 0. `request` is the subscribe request.
fn shutdown_delivers_queued_events(args: &[&str], request: &str, framing: Framing, signal: i32) {
    let mut all_args = vec!["--queue-limit", "64MiB", "--heartbeat", "0"];
    all_args.extend_from_slice(args);
    let mut server = TestServer::start(&all_args);
    let mut sub = server.subscribe_raw(request.as_bytes());
    assert_eq!(
        sub.head.header("transfer-encoding").is_some(),
        framing == Framing::Chunked,
        "framing of {request:?}: {:?}",
        sub.head
    );
    sub.expect_connected();
    // On another topic: it gets nothing but the end of its stream, which
    // says the shutdown has begun.
    let mut watcher = server.subscribe_ready("?topic=w");
    let ids = fill_queue(&server);

    server.signal(signal);
    // Reading `sub` before the shutdown began would let the server write
    // its queue out early, and nothing would be left to deliver in the
    // grace period. The loop ends every stream in one go, so once the
    // watcher's has ended, `sub`'s unsent bytes are what shutdown does with
    // them.
    watcher.expect_clean_end();
    drop(watcher);
    // The grace period is the time it has to take the rest: read to the
    // server's close at once, decode afterwards.
    let began = Instant::now();
    let read = sub.read_to_eof(deadline());
    let read_in = began.elapsed();
    assert!(
        read.is_ok(),
        "reading to the close after the signal: {read:?}"
    );
    // A close only after the grace would mean the server held the stream
    // open past it (and whatever arrived was luck).
    assert!(
        read_in < GRACE + GRACE_MARGIN,
        "the server closed the stream {read_in:?} after the shutdown began; grace {GRACE:?}"
    );
    // All of it: an early close that dropped events fails here.
    let received = sub.expect_padded_events_then_clean_end(&ids, SIZE);
    assert_eq!(
        received,
        ids.len(),
        "queued events lost at shutdown (read to the close in {read_in:?})"
    );
    drop(sub);
    server.expect_exit_0(EXIT_TIMEOUT);
    // The stderr reader may lag the exit.
    assert!(
        server.await_log(&["shutting down"]).is_some(),
        "no shutdown logged:\n{}",
        server.log()
    );
}

#[test]
fn sigterm_delivers_queued_events_then_the_last_chunk_and_exits_0() {
    shutdown_delivers_queued_events(
        &[],
        "GET /events?topic=s HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Framing::Chunked,
        libc::SIGTERM,
    );
}

#[test]
fn sigint_ends_an_http10_stream_with_a_close_after_its_queued_events() {
    shutdown_delivers_queued_events(
        &[],
        "GET /events?topic=s HTTP/1.0\r\n\r\n",
        Framing::Close,
        libc::SIGINT,
    );
}

#[test]
fn sigterm_ends_a_close_framed_stream_with_a_close_after_its_queued_events() {
    shutdown_delivers_queued_events(
        &["--framing", "close"],
        "GET /events?topic=s HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Framing::Close,
        libc::SIGTERM,
    );
}

#[test]
fn idle_streams_of_both_framings_end_cleanly_at_shutdown() {
    let mut server = TestServer::start(&["--heartbeat", "0"]);
    let mut chunked = server.subscribe_ready("?topic=i");
    let mut old = server.subscribe_raw(b"GET /events?topic=i HTTP/1.0\r\n\r\n");
    old.expect_connected();
    let id = server.publisher().publish_ok("?topic=i", b"one");
    for sub in [&mut chunked, &mut old] {
        assert_eq!(sub.next_event().id.as_deref(), Some(id.as_str()));
    }
    server.signal(libc::SIGTERM);
    for sub in [&mut chunked, &mut old] {
        sub.expect_clean_end();
        assert!(!sub.has_partial());
        sub.expect_closed();
    }
    drop((chunked, old));
    server.expect_exit_0(EXIT_TIMEOUT);
}

/// Requests whose bytes straddle the signal: each connection has sent a
/// request before it except for its last bytes, so the server, which does
/// not close connections with a request in progress, is still reading them
/// when the shutdown begins. A subscriber's clean end says the shutdown has
/// begun; only then are the last bytes sent. The grace period (1 s) is far
/// longer than that round trip.
#[test]
fn requests_arriving_during_the_grace_period_get_a_retry_stream_and_a_503() {
    let mut server = TestServer::start(&["--retry", "2500ms", "--heartbeat", "0"]);
    let mut watcher = server.subscribe_ready("?topic=w");

    // One write each: a whole request that is answered (so the server has
    // read the write), then the start of another.
    let mut subscribe = server.http();
    subscribe.send(
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /events?topic=x HTTP/1.1\r\nHost: localhost\r\n",
    );
    let health = subscribe.read_response(deadline());
    assert_eq!((health.head.status, health.text().as_str()), (200, "ok"));
    let mut publish = server.http();
    publish.send(
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /publish?topic=x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nab",
    );
    let health = publish.read_response(deadline());
    assert_eq!((health.head.status, health.text().as_str()), (200, "ok"));

    server.signal(libc::SIGTERM);
    watcher.expect_clean_end();
    let shutdown_seen = Instant::now();

    // The listener is closed at once.
    match TcpStream::connect(server.addr()) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("a new connection during shutdown: {other:?}"),
    }

    // The subscribe: a 200 stream that says when to come back, and why,
    // and ends at once.
    subscribe.send(b"\r\n");
    let refused = subscribe.read_response(deadline());
    assert_eq!(refused.head.status, 200, "{:?}", refused.head);
    assert_eq!(
        refused.head.header("content-type"),
        Some("text/event-stream"),
        "{:?}",
        refused.head
    );
    assert_eq!(
        refused.text(),
        "retry: 2500\n: server shutting down\n\n",
        "the refused stream's body (read to its terminating chunk)"
    );
    subscribe.expect_closed();

    // The publish: 503 with Retry-After, and the event is not published.
    publish.send(b"cde");
    let answer = publish.read_response(deadline());
    assert_error(&answer, 503);
    let retry_after = answer.head.header("retry-after");
    assert!(
        retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s > 0)),
        "503 without a Retry-After in seconds: {:?}",
        answer.head
    );
    publish.expect_closed();
    assert!(
        shutdown_seen.elapsed() < Duration::from_secs(1),
        "the test itself took longer than the grace period"
    );

    drop((watcher, subscribe, publish));
    server.expect_exit_0(EXIT_TIMEOUT);
    assert!(
        server.await_log(&["stopped: 0 events published"]).is_some(),
        "the publish during the grace period was published:\n{}",
        server.log()
    );
}

/// A shutdown that came while requests were being served: the bus's
/// shutdown message, drained while a publish was carried out, used to
/// close that publisher's connection before its answer was queued, and the
/// loop panicked on the vanished key (the process died with 101, or
/// aborted in a release build). Publishers busy on four connections, then
/// SIGTERM: every round ends with exit status 0.
#[test]
fn a_signal_while_publishers_are_busy_still_ends_cleanly() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{Sender, channel};

    /// Publishes until told to stop or the server stops answering; says
    /// on `answered_once` when its first publish is answered.
    fn publish_until(stream: TcpStream, stop: &AtomicBool, answered_once: Sender<()>) -> u32 {
        let mut reader = BufReader::new(stream);
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            let request = crate::support::publish_request("?topic=t", b"busy");
            if reader.get_mut().write_all(&request).is_err() {
                break;
            }
            let mut status = String::new();
            if reader.read_line(&mut status).unwrap_or(0) == 0 || !status.contains(" 200 ") {
                break; // shutting down: a 503 or the close
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return answered;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            answered += 1;
            if answered == 1 {
                let _ = answered_once.send(());
            }
        }
        answered
    }

    for round in 0..5 {
        let mut server = TestServer::start(&[]);
        let stop = Arc::new(AtomicBool::new(false));
        let (answered_once, first_answers) = channel();
        let publishers: Vec<_> = (0..4)
            .map(|_| {
                let stream = server.connect();
                let stop = Arc::clone(&stop);
                let answered_once = answered_once.clone();
                std::thread::spawn(move || publish_until(stream, &stop, answered_once))
            })
            .collect();
        drop(answered_once);
        // Every publisher is busy before the signal comes: each has had an
        // answer (on a loaded machine a thread may not have sent its first
        // request by the time the others reach any total), and the server
        // has published a good many.
        server.await_metric("sseloop_events_published_total", |n| n >= 40);
        for _ in 0..publishers.len() {
            first_answers
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| {
                    panic!("round {round}: a publisher was never answered before the signal ({e})")
                });
        }
        server.signal(libc::SIGTERM);
        server.expect_exit_0(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        for publisher in publishers {
            assert!(publisher.join().expect("publisher") > 0, "round {round}");
        }
    }
}
