//! Heartbeats: `: heartbeat` reaches idle subscribers at least once per
//! interval, and never when turned off.

use std::time::{Duration, Instant};

use crate::support::{Item, Next, Subscriber, TestServer};

/// Collects the arrival times of heartbeats for `window`; panics on events
/// or the end of the stream.
fn heartbeat_times(sub: &mut Subscriber, window: Duration) -> Vec<Instant> {
    let end = Instant::now() + window;
    let mut times = Vec::new();
    loop {
        match sub.poll(end) {
            Next::Item(Item::Comment(text)) if text == "heartbeat" => times.push(Instant::now()),
            Next::Item(other) => panic!("unexpected item {other:?}"),
            Next::End(crate::support::BodyEnd::Timeout) => return times,
            Next::End(end) => panic!("stream ended: {end:?}"),
        }
        // Bounded even if a broken server floods heartbeats.
        assert!(times.len() < 1000, "heartbeat flood");
    }
}

#[test]
fn idle_subscribers_get_heartbeats_at_the_interval() {
    let server = TestServer::start(&["--heartbeat", "200ms"]);
    let mut first = server.subscribe("?topic=a");
    let mut second = server.subscribe("");
    first.expect_connected();
    second.expect_connected();
    let started = Instant::now();
    let times = heartbeat_times(&mut first, Duration::from_millis(1500));
    // 1.5 s at 200 ms is 7; allow for scheduling, but far more than one.
    assert!(times.len() >= 5, "only {} heartbeats in 1.5 s", times.len());
    assert!(
        times.len() <= 20,
        "{} heartbeats in 1.5 s: too many",
        times.len()
    );
    let mut previous = started;
    for time in &times {
        let gap = time.duration_since(previous);
        assert!(gap < Duration::from_millis(500), "heartbeat gap {gap:?}");
        previous = *time;
    }
    // The other subscriber was idle as long; its heartbeats are waiting.
    let other = heartbeat_times(&mut second, Duration::from_millis(100));
    assert!(other.len() >= 5, "second subscriber got {}", other.len());
}

#[test]
fn heartbeat_wire_bytes() {
    let server = TestServer::start(&["--heartbeat", "100ms"]);
    let mut sub = server.subscribe_ready("");
    let times = heartbeat_times(&mut sub, Duration::from_millis(450));
    assert!(times.len() >= 2, "{} heartbeats", times.len());
    assert!(
        sub.body_prefix()
            .starts_with(b": connected\n: heartbeat\n\n: heartbeat\n\n"),
        "{:?}",
        String::from_utf8_lossy(sub.body_prefix())
    );
}

#[test]
fn heartbeat_zero_turns_them_off() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut sub = server.subscribe_ready("?topic=a");
    let times = heartbeat_times(&mut sub, Duration::from_millis(800));
    assert!(
        times.is_empty(),
        "{} heartbeats with --heartbeat 0",
        times.len()
    );
}

#[test]
fn heartbeats_keep_coming_between_events() {
    // A busy topic on the server must not starve idle subscribers of
    // heartbeats, and events must not be mixed into a heartbeat.
    let server = TestServer::start(&["--heartbeat", "150ms"]);
    let mut busy = server.subscribe("?topic=busy");
    let mut idle = server.subscribe("?topic=idle");
    busy.expect_connected();
    idle.expect_connected();
    let mut publisher = server.publisher();
    let started = Instant::now();
    let mut published = 0;
    while started.elapsed() < Duration::from_millis(600) && published < 10_000 {
        let id = publisher.publish_ok("?topic=busy", b"work");
        assert_eq!(busy.next_event().id, Some(id));
        published += 1;
    }
    let times = heartbeat_times(&mut idle, Duration::from_millis(200));
    assert!(
        times.len() >= 3,
        "idle subscriber got {} heartbeats in {:?}",
        times.len(),
        started.elapsed()
    );
}

#[test]
fn heartbeat_interval_in_seconds() {
    // A bare number is seconds: with `1`, at most one (a global tick may
    // fall early) in the first half second; read as milliseconds, hundreds.
    let server = TestServer::start(&["--heartbeat", "1"]);
    let mut sub = server.subscribe_ready("");
    let early = heartbeat_times(&mut sub, Duration::from_millis(500));
    assert!(early.len() <= 1, "{} heartbeats in 0.5 s", early.len());
    let later = heartbeat_times(&mut sub, Duration::from_millis(1300));
    assert!(
        !later.is_empty(),
        "no heartbeat within 1.8 s at --heartbeat 1"
    );
}
