//! The lab's streams over raw TCP: off unless asked for, bad input refused
//! with what is wrong, every bound held (runs at once, viewers of a run,
//! `--max-event-size`, `--max-connections`, a client that never reads),
//! and the hub's other clients untouched while the lab works.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{read_run, request, run_name};
use crate::support::{Item, Next, Subscriber, TestServer, assert_error, deadline, padded};

#[test]
fn the_lab_is_off_unless_asked_for_and_on_with_the_demo() {
    let plain = TestServer::start(&[]);
    for path in ["/lab", "/lab/stream?run=a&lesson=proxy"] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let response = plain.expect_error(raw.as_bytes(), 404);
        assert!(response.text().contains("--lab"), "{}", response.text());
    }
    let demo = TestServer::start(&["--demo"]);
    let (response, _) = demo.request(b"GET /lab HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(response.head.status, 200);
    assert!(response.text().contains("failure lab"));
    assert!(demo.await_log(&["the failure lab is at http://"]).is_some());
}

#[test]
fn absurd_requests_are_refused_by_the_loop_with_what_is_wrong() {
    let server = TestServer::start(&["--lab"]);
    for (query, reason) in [
        ("run=a&lesson=proxy&rate=1000", "rate takes 0.1 to 50"),
        ("run=a&lesson=proxy&size=99999999", "size takes 0 to 16384"),
        ("run=a&lesson=proxy&count=0", "count takes 1 to 500"),
        ("run=a&lesson=proxy&rate=0.1&count=500", "at most 120 s"),
        ("run=a&lesson=gzip", "lesson takes"),
        ("lesson=proxy", "needs run=NAME"),
        ("run=a%0Ab&lesson=proxy", "run takes"),
        ("run=a&lesson=proxy&viewers=9", "viewers takes"),
    ] {
        let raw = format!("GET /lab/stream?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let response = server.expect_error(raw.as_bytes(), 400);
        assert!(
            response.text().contains(reason),
            "{query}: {}",
            response.text()
        );
    }
    server.expect_error(
        b"POST /lab/stream HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
        405,
    );
    // The loop is not stalled by any of it.
    let (health, _) = server.request(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(health.head.status, 200);
}

/// A viewer of a run that lasts: the proxy lesson's fix, with events it
/// reads as they come.
fn long_run(server: &TestServer, run: &str) -> Subscriber {
    let query = format!("run={run}&lesson=proxy&fix=1&rate=1&count=100&size=16");
    let mut conn = request(server.addr(), &query, None);
    let head = conn.read_head(deadline());
    assert_eq!(head.status, 200, "{head:?}: {}", server.log());
    Subscriber::from_head(conn, head)
}

#[test]
fn runs_at_once_viewers_of_a_run_and_event_sizes_are_bounded() {
    let server = TestServer::start(&["--lab", "--max-event-size", "1KiB"]);
    let addr = server.addr();
    let runs: Vec<String> = (0..4).map(|_| run_name("bounded")).collect();
    let _viewers: Vec<Subscriber> = runs.iter().map(|run| long_run(&server, run)).collect();
    // A fifth run at once: 429, come back later.
    let mut fifth = request(
        addr,
        &format!("run={}&lesson=nagle", run_name("fifth")),
        None,
    );
    let response = fifth.read_response(deadline());
    assert_error(&response, 429);
    assert!(
        response.head.header("retry-after").is_some(),
        "{:?}",
        response.head
    );
    assert!(
        response.text().contains("too many lab runs"),
        "{}",
        response.text()
    );
    // Three viewers of one run at most.
    let _second = long_run(&server, &runs[0]);
    let _third = long_run(&server, &runs[0]);
    let mut fourth = request(addr, &format!("run={}&lesson=proxy&fix=1", runs[0]), None);
    let response = fourth.read_response(deadline());
    assert_error(&response, 429);
    assert!(
        response.text().contains("all the viewers"),
        "{}",
        response.text()
    );
    // A browser coming back to a run the lab does not know: it is over.
    let mut back = request(
        addr,
        &format!("run={}&lesson=proxy", run_name("gone")),
        Some("x-1"),
    );
    let response = back.read_response(deadline());
    assert_eq!(response.head.status, 204, "{:?}", response.head);
    drop(_viewers);

    let other = TestServer::start(&["--lab", "--max-event-size", "1KiB"]);
    let query = format!("run={}&lesson=proxy&size=2048", run_name("large"));
    let mut large = request(other.addr(), &query, None);
    let response = large.read_response(deadline());
    assert_error(&response, 400);
    assert!(
        response.text().contains("--max-event-size"),
        "{}",
        response.text()
    );
}

#[test]
fn a_lab_stream_and_the_labs_subscription_hold_places_until_they_close() {
    // The viewer's connection (handed over) and the lab's own subscription
    // to the hub take two places; one subscriber takes the last.
    let server = TestServer::start(&["--lab", "--max-connections", "3"]);
    let viewer = long_run(&server, &run_name("places"));
    let mut viewer = viewer;
    // Its greeting: the lab has it, and has subscribed for it.
    match viewer.poll(deadline()) {
        Next::Item(Item::Event(e)) => assert_eq!(e.event.as_deref(), Some("lab")),
        other => panic!("{other:?}"),
    }
    let _third = server.subscribe_ready("?topic=t");
    let mut refused = server.subscribe("?topic=t");
    match refused.poll(deadline()) {
        Next::Item(Item::Retry(_)) => {}
        other => panic!("a fourth connection was let in: {other:?}"),
    }
    drop(refused);
    // The browser goes: both places come back, for two more subscribers
    // beside the third.
    drop(viewer);
    let end = deadline();
    let mut admitted = Vec::new();
    while admitted.len() < 2 {
        let mut sub = server.subscribe("?topic=t");
        match sub.poll(deadline()) {
            Next::Item(Item::Comment(c)) if c == "connected" => admitted.push(sub),
            Next::Item(Item::Retry(_)) => {
                assert!(
                    Instant::now() < end,
                    "the lab's places were not given back ({} of 2): {}",
                    admitted.len(),
                    server.log()
                );
                // Nothing to wait on from outside: ask again shortly.
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_the_hub_serves_others_meanwhile() {
    let server = TestServer::start(&["--lab", "--log-level", "debug"]);
    // 16 KiB events at 50 a second into a socket whose reader never reads.
    let query = format!(
        "run={}&lesson=unflushed&fix=1&rate=50&size=16384&count=500",
        run_name("stalled")
    );
    let stalled = TcpStream::connect(server.addr()).unwrap();
    set_receive_buffer(&stalled, 4096);
    let mut writer = &stalled;
    std::io::Write::write_all(
        &mut writer,
        format!("GET /lab/stream?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .unwrap();
    // Meanwhile a subscriber of the hub gets each event at once.
    let mut sub = server.subscribe_ready("?topic=others");
    let mut publisher = server.publisher();
    let rss_before = server.rss_kib();
    for n in 0..20 {
        let sent = Instant::now();
        publisher.publish_ok("?topic=others", padded(n, 100).as_bytes());
        let event = sub.next_event();
        assert_eq!(event.data, padded(n, 100));
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "the hub was held up"
        );
    }
    // At 800 KB/s the kernel's buffers and the viewer's queue fill within
    // seconds; each wait is `IO_TIMEOUT`.
    let cut = (0..3).any(|_| {
        server
            .await_log(&["a viewer leaves: the client does not read"])
            .is_some()
    });
    assert!(cut, "the stalled client was not cut off:\n{}", server.log());
    // What it held is bounded: a viewer's queue and the kernel's buffers.
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "the server grew by {grown} KiB");
    // It sees its stream end (after what the kernel held).
    let mut rest = Vec::new();
    let mut reader = &stalled;
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = reader.read_to_end(&mut rest);
}

fn set_receive_buffer(socket: &TcpStream, bytes: libc::c_int) {
    // SAFETY: a plain setsockopt on a socket this test owns.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

#[test]
fn a_run_ends_with_its_end_event_and_the_stream_closes() {
    let server = TestServer::start(&["--lab"]);
    let run = run_name("ends");
    let query = format!("run={run}&lesson=proxy&fix=1&rate=20&count=5&size=100");
    let mut conn = request(server.addr(), &query, None);
    let head = conn.read_head(deadline());
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    let (hello, seen) = read_run(Subscriber::from_head(conn, head));
    assert_eq!(hello["run"], run.as_str());
    assert_eq!(hello["lastEventId"], serde_json::Value::Null);
    let numbers: Vec<u64> = seen.iter().map(|s| s.n).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    // A new viewer of the run that is over is told so.
    let mut late = request(server.addr(), &query, None);
    assert_eq!(late.read_response(deadline()).head.status, 204);
    // One coming back with what it saw last gets what it missed: the end.
    let mut back = request(server.addr(), &query, Some(&seen[2].id));
    let head = back.read_head(deadline());
    assert_eq!(head.status, 200);
    let (hello, missed) = read_run(Subscriber::from_head(back, head));
    assert_eq!(hello["lastEventId"], seen[2].id.as_str());
    let numbers: Vec<u64> = missed.iter().map(|s| s.n).collect();
    assert_eq!(numbers, [4, 5]);
}
