//! Last-Event-ID: replay of what a subscriber missed, the query-parameter
//! forms, the `reset` event for every id that cannot be placed, topic
//! filtering in replay, a replay longer than the queue limit, and resuming
//! across a restart on the same port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    Item, Publisher, Subscriber, TestServer, assert_same_sequence, id_run, id_seq, padded,
    reset_reason,
};

/// Reads the next event and asserts it is the one with `id` and `data`.
fn expect_event(sub: &mut Subscriber, id: &str, data: &str) {
    let event = sub.next_event();
    assert_eq!(event.id.as_deref(), Some(id), "event {event:?}");
    assert_eq!(event.data, data, "data of {id}");
    assert_eq!(event.event, None, "type of {id}");
}

/// Asserts that nothing is on its way to `sub`: a marker published now to
/// `query` must be its very next event, since the server writes each stream
/// in order. Returns the marker's id.
fn expect_marker_next(sub: &mut Subscriber, publisher: &mut Publisher, query: &str) -> String {
    let id = publisher.publish_ok(query, b"marker");
    expect_event(sub, &id, "marker");
    id
}

/// Reads the `reset` event that must open a resumed stream right after the
/// connected comment; returns its id and reason.
fn expect_reset(sub: &mut Subscriber) -> (String, String) {
    sub.expect_connected();
    match sub.next_item() {
        Item::Event(event) => {
            let reason = reset_reason(&event);
            let id = event.id.clone().expect("a reset event carries an id");
            (id, reason)
        }
        other => panic!("expected the reset event right after connected, got {other:?}"),
    }
}

/// A well-formed id of another run: the run of `id` with its first hex
/// digit changed.
fn other_run_id(id: &str) -> String {
    let run = id_run(id);
    let first = if run.starts_with('0') { '1' } else { '0' };
    format!("{first}{}-{}", &run[1..], id_seq(id))
}

#[test]
fn replay_after_drops_while_publishes_race_the_reconnects() {
    // Room for everything the publisher can send while the subscriber is
    // away, so no resume is ever stale.
    const MAX_EVENTS: usize = 20_000;
    const RECONNECTS: usize = 25;
    let server = TestServer::start(&["--history", "65536", "--heartbeat", "0"]);
    let mut sub = server.subscribe_ready("?topic=race");

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let mut publisher = server.publisher();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) && ids.len() < MAX_EVENTS {
                let n = ids.len();
                ids.push(publisher.publish_ok("?topic=race", format!("e{n}").as_bytes()));
            }
            ids
        })
    };

    // Drop after a varying number of events (1 to 13), resume from the last
    // one seen, all while the publisher keeps going.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut resumed_from = Vec::new();
    for round in 0..RECONNECTS {
        let take = 1 + (round * 7) % 13;
        for _ in 0..take {
            let event = sub.next_event();
            seen.push((event.id.expect("events carry ids"), event.data));
        }
        let last = seen.last().unwrap().0.clone();
        drop(sub);
        sub = server.resume("?topic=race", &last);
        sub.expect_connected();
        resumed_from.push(last);
    }
    stop.store(true, Ordering::SeqCst);
    let published = publisher.join().expect("publisher thread");
    // Some resumes had events to catch up on: the seam was exercised.
    assert!(
        server.metric("sseloop_replayed_events_total") > 0,
        "no resume ever replayed anything"
    );
    assert!(
        published.len() < MAX_EVENTS,
        "the publisher ran out of events before the reconnects ended: no race"
    );

    // Read the rest: everything up to the last published event.
    let end = Instant::now() + Duration::from_secs(20);
    while seen.len() < published.len() {
        let event = sub.next_event_by(end);
        seen.push((event.id.expect("events carry ids"), event.data));
        if seen.last().unwrap().0 == *published.last().unwrap() {
            break;
        }
    }
    let seen_ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    let published_ids: Vec<&str> = published.iter().map(String::as_str).collect();
    assert_same_sequence(
        &seen_ids,
        &published_ids,
        format_args!("event ids after resuming from {resumed_from:?}"),
    );
    for (n, (_, data)) in seen.iter().enumerate() {
        assert_eq!(data, &format!("e{n}"), "data of event {n}");
    }
    // The live stream goes on after the last seam.
    let id = server.publisher().publish_ok("?topic=race", b"after");
    expect_event(&mut sub, &id, "after");
}

#[test]
fn every_query_parameter_form_resumes_like_the_header() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut publisher = server.publisher();
    let mut events: Vec<(String, String)> = (0..3)
        .map(|n| {
            let data = format!("q{n}");
            (publisher.publish_ok("?topic=q", data.as_bytes()), data)
        })
        .collect();
    let first = events[0].0.clone();

    for form in ["lastEventId", "lastEventID", "last_event_id"] {
        let mut sub = server.subscribe_ready(&format!("?topic=q&{form}={first}"));
        for (id, data) in &events[1..] {
            expect_event(&mut sub, id, data);
        }
        // Then live, nothing lost or repeated at the seam.
        let data = format!("live after {form}");
        let id = publisher.publish_ok("?topic=q", data.as_bytes());
        expect_event(&mut sub, &id, &data);
        events.push((id, data));
        let marker = expect_marker_next(&mut sub, &mut publisher, "?topic=q");
        events.push((marker, "marker".to_string()));
    }

    // The parameter may come before the topic, too.
    let mut sub = server.subscribe_ready(&format!("?lastEventId={}&topic=q", events[3].0));
    for (id, data) in &events[4..] {
        expect_event(&mut sub, id, data);
    }

    // The header wins over the query.
    let request = format!(
        "GET /events?topic=q&lastEventId=garbage HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {}\r\n\r\n",
        events[4].0
    );
    let mut sub = server.subscribe_raw(request.as_bytes());
    sub.expect_connected();
    for (id, data) in &events[5..] {
        expect_event(&mut sub, id, data);
    }
    let id = publisher.publish_ok("?topic=q", b"last");
    expect_event(&mut sub, &id, "last");
}

#[test]
fn an_id_older_than_the_history_gets_a_stale_reset_then_goes_live() {
    let server = TestServer::start(&["--history", "4", "--heartbeat", "0"]);
    let mut publisher = server.publisher();
    let ids: Vec<String> = (1..=10)
        .map(|n| publisher.publish_ok("?topic=s", format!("s{n}").as_bytes()))
        .collect();
    let newest = ids.last().unwrap();

    // Events 7..=10 are kept. After event 6 nothing is missing: a plain
    // replay of 7..=10, no reset.
    let mut whole = server.resume("?topic=s", &ids[5]);
    whole.expect_connected();
    for (n, id) in ids.iter().enumerate().skip(6) {
        expect_event(&mut whole, id, &format!("s{}", n + 1));
    }

    // After event 5, event 6 is gone.
    let mut sub = server.resume("?topic=s", &ids[4]);
    let (id, reason) = expect_reset(&mut sub);
    assert_eq!(reason, "stale");
    assert_eq!(&id, newest, "the reset carries the newest id");
    // No replay after a reset: the next event is a live one.
    let live = publisher.publish_ok("?topic=s", b"live");
    expect_event(&mut sub, &live, "live");
    expect_event(&mut whole, &live, "live");

    // Ids far older than the history, down to the first, are stale too.
    for old in [&ids[0], &ids[3]] {
        let mut sub = server.resume("?topic=s", old);
        let (id, reason) = expect_reset(&mut sub);
        assert_eq!(reason, "stale", "for {old:?}");
        assert_eq!(id, live);
    }
}

#[test]
fn garbage_ids_get_an_invalid_reset() {
    let server = TestServer::start(&["--heartbeat", "0"]);

    // Nothing published yet: the reset carries `<run>-0`.
    let mut sub = server.resume("", "garbage");
    let (zero, reason) = expect_reset(&mut sub);
    assert_eq!(reason, "invalid");
    let run = id_run(&zero).to_string();
    assert!(
        run.len() == 12
            && run
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "run part of {zero:?} is not 12 lowercase hex digits"
    );
    assert_eq!(id_seq(&zero), 0, "{zero:?}");

    let mut publisher = server.publisher();
    let first = publisher.publish_ok("", b"one");
    assert_eq!(
        first,
        format!("urn:sseloop:{run}-1"),
        "ids are urn:sseloop:<run>-<seq> from 1"
    );
    let second = publisher.publish_ok("", b"two");
    assert_eq!(second, format!("urn:sseloop:{run}-2"));
    // The bare form of earlier versions resumes as the urn does.
    let mut bare = server.resume("", &format!("{run}-1"));
    bare.expect_connected();
    expect_event(&mut bare, &second, "two");

    let garbage = [
        "garbage".to_string(),
        "12345".to_string(),
        "-".to_string(),
        format!("{run}-"),
        format!("{run}-x1"),
        format!("{run}-1-2"),
        format!("-{run}-1"),
        format!("{}-1", &run[1..]),
        format!("{run}0-1"),
        format!("urn:sseloop:{run}"),
        format!("urn:sseloop:urn:sseloop:{run}-1"),
        format!("URN:SSELOOP:{run}-1"),
        "zzzzzzzzzzzz-1".to_string(),
        "ünïcödé".to_string(),
    ];
    let mut newest = second.clone();
    for id in &garbage {
        let mut sub = server.resume("", id);
        let (reset_id, reason) = expect_reset(&mut sub);
        assert_eq!(reason, "invalid", "for Last-Event-ID {id:?}");
        assert_eq!(reset_id, newest, "for Last-Event-ID {id:?}");
        // Then live, without replay.
        let data = format!("after {id}");
        newest = publisher.publish_ok("", data.as_bytes());
        expect_event(&mut sub, &newest, &data);
    }

    // `<run>-0`, the id of a reset sent before anything was published,
    // places the client before everything: all of it is replayed.
    let mut sub = server.resume("", &zero);
    sub.expect_connected();
    expect_event(&mut sub, &first, "one");
    expect_event(&mut sub, &second, "two");
    for id in &garbage {
        let event = sub.next_event();
        assert_eq!(event.data, format!("after {id}"));
    }
    expect_marker_next(&mut sub, &mut publisher, "");
}

#[test]
fn an_id_from_the_future_gets_an_invalid_reset() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut publisher = server.publisher();
    let first = publisher.publish_ok("?topic=f", b"1");
    let mut newest = publisher.publish_ok("?topic=f", b"2");
    let run = id_run(&first).to_string();
    // Each round's marker takes one sequence number: `<run>-3` is still
    // ahead in the first round, the others in every round.
    for future in [
        format!("{run}-3"),
        format!("{run}-1000000"),
        format!("{run}-18446744073709551615"),
        format!("{run}-99999999999999999999999999"),
    ] {
        let mut sub = server.resume("?topic=f", &future);
        let (id, reason) = expect_reset(&mut sub);
        assert_eq!(reason, "invalid", "for {future:?}");
        assert_eq!(id, newest, "for {future:?}");
        // No replay after the reset.
        newest = expect_marker_next(&mut sub, &mut publisher, "?topic=f");
    }
    // The newest id itself is fine: nothing to replay, no reset, and the
    // next event is the live one.
    let mut sub = server.resume("?topic=f", &newest);
    sub.expect_connected();
    let live = publisher.publish_ok("?topic=f", b"3");
    expect_event(&mut sub, &live, "3");
}

#[test]
fn an_id_of_another_run_gets_an_other_run_reset() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut publisher = server.publisher();
    let id = publisher.publish_ok("", b"x");
    let foreign = other_run_id(&id);
    let mut sub = server.resume("", &foreign);
    let (reset_id, reason) = expect_reset(&mut sub);
    assert_eq!(reason, "other-run", "for {foreign:?}");
    assert_eq!(reset_id, id);
}

#[test]
fn a_restart_on_the_same_port_answers_old_ids_with_an_other_run_reset() {
    let mut first = TestServer::start(&["--heartbeat", "0"]);
    let addr = first.addr();
    let mut sub = first.subscribe_ready("?topic=r");
    let mut publisher = first.publisher();
    let mut last = String::new();
    for n in 0..3 {
        let id = publisher.publish_ok("?topic=r", format!("r{n}").as_bytes());
        expect_event(&mut sub, &id, &format!("r{n}"));
        last = id;
    }
    drop(publisher);

    // A graceful stop: the stream ends cleanly, the process exits 0.
    first.signal(libc::SIGTERM);
    sub.expect_clean_end();
    drop(sub);
    first.expect_exit_0(Duration::from_secs(5));

    // The restarted server takes the same port and is a new run.
    let second = TestServer::start_on(addr, &["--heartbeat", "0"]);
    assert_eq!(second.addr(), addr);
    let mut sub = second.resume("?topic=r", &last);
    let (reset_id, reason) = expect_reset(&mut sub);
    assert_eq!(reason, "other-run", "for {last:?}");
    assert_eq!(id_seq(&reset_id), 0, "nothing published in the new run yet");
    assert_ne!(
        id_run(&reset_id),
        id_run(&last),
        "a new run has a new run id"
    );

    // Live from here; the new run's ids count from 1 again.
    let id = second.publisher().publish_ok("?topic=r", b"new run");
    assert_eq!(id, format!("urn:sseloop:{}-1", id_run(&reset_id)));
    expect_event(&mut sub, &id, "new run");
}

#[test]
fn replay_keeps_to_the_subscribers_topics_and_broadcasts() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut publisher = server.publisher();
    let start = publisher.publish_ok("", b"start");
    // (query, data); each subscriber below must get exactly its share.
    let plan = [
        ("?topic=a", "a1"),
        ("?topic=b", "b1"),
        ("?topic=c", "c1"),
        ("", "all1"),
        ("?topic=a&topic=b", "ab1"),
        ("?topic=c&topic=a", "ca1"),
        ("?topic=b", "b2"),
        ("?topic=a", "a2"),
        ("", "all2"),
        ("?topic=c", "c2"),
    ];
    let published: Vec<(String, &str)> = plan
        .iter()
        .map(|&(query, data)| (publisher.publish_ok(query, data.as_bytes()), data))
        .collect();

    let cases: [(&str, &[&str]); 4] = [
        (
            "?topic=a&topic=b",
            &["a1", "b1", "all1", "ab1", "ca1", "b2", "a2", "all2"],
        ),
        ("?topic=c", &["c1", "all1", "ca1", "all2", "c2"]),
        ("?topic=b", &["b1", "all1", "ab1", "b2", "all2"]),
        ("", &["all1", "all2"]),
    ];
    // The broadcasts published after each case, which later cases replay.
    let mut lives: Vec<(String, String)> = Vec::new();
    for (query, wanted) in cases {
        let mut sub = server.resume(query, &start);
        sub.expect_connected();
        for &data in wanted {
            let (id, _) = published.iter().find(|(_, d)| *d == data).unwrap();
            expect_event(&mut sub, id, data);
        }
        for (id, data) in &lives {
            expect_event(&mut sub, id, data);
        }
        // Nothing more replayed, then the live stream with the same filter:
        // the event for another topic is skipped, the broadcast arrives.
        publisher.publish_ok("?topic=zzz", b"elsewhere");
        let data = format!("live after {query:?}");
        let live = publisher.publish_ok("", data.as_bytes());
        expect_event(&mut sub, &live, &data);
        lives.push((live, data));
    }
}

#[test]
fn a_replay_longer_than_the_queue_limit_stalls_and_arrives_whole_before_live_events() {
    // 9 MiB to replay through a 256 KiB queue limit: more than loopback
    // socket buffers take from a subscriber that is not reading, so the
    // replay stalls half-way. (A few hundred KiB do not stall: the sockets
    // take them at once.)
    const EVENTS: usize = 150;
    const SIZE: usize = 60 * 1024;
    const LIVE: usize = 10;
    let server = TestServer::start(&["--queue-limit", "256KiB", "--heartbeat", "0"]);
    let body = |n: usize| padded(n, SIZE);
    let mut publisher = server.publisher();
    let ids: Vec<String> = (0..EVENTS)
        .map(|n| publisher.publish_ok("?topic=big", body(n).as_bytes()))
        .collect();

    let mut sub = server.resume("?topic=big", &ids[0]);
    sub.expect_connected();
    let live: Vec<(String, String)> = (0..LIVE)
        .map(|n| {
            let data = format!("live {n}");
            (publisher.publish_ok("?topic=big", data.as_bytes()), data)
        })
        .collect();
    // Replay only advances as the subscriber reads, and it has read
    // nothing: if it is still short of the end now, every live event above
    // was published in the middle of the replay.
    let replayed = server.metric("sseloop_replayed_events_total");
    assert!(
        replayed < (EVENTS - 1) as u64,
        "the sockets took the whole replay ({replayed} events) at once: nothing to test"
    );

    for (n, id) in ids.iter().enumerate().skip(1) {
        let event = sub.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "replayed event {n}");
        assert!(event.data == body(n), "replayed event {n} corrupted");
    }
    for (id, data) in &live {
        expect_event(&mut sub, id, data);
    }
    expect_marker_next(&mut sub, &mut publisher, "?topic=big");
    assert_eq!(
        server.metric("sseloop_slow_subscriber_disconnects_total"),
        0,
        "the replaying subscriber was cut off"
    );
}

/// A replay that falls behind the history while its subscriber is slow
/// queues a `reset` (`stale`); the top-up that found it had nothing else to
/// queue, so the reset sat unsent, and with bytes unsent no heartbeat went
/// out either, until the next event on the subscriber's topics (an hour of
/// heartbeats here, and no such event). It goes out as soon as the
/// subscriber reads.
#[test]
fn a_replay_that_loses_its_place_sends_its_reset_at_once() {
    let server = TestServer::start(&[
        "--history",
        "16",
        "--queue-limit",
        "64KiB",
        "--send-buffer",
        "4KiB",
        "--heartbeat",
        "60m",
    ]);
    let mut publisher = server.publisher();
    let big = "x".repeat(40_000);
    let ids: Vec<String> = (0..16)
        .map(|_| publisher.publish_ok("?topic=t", big.as_bytes()))
        .collect();
    // A subscriber with a small receive buffer that reads nothing yet.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(crate::support::IO_TIMEOUT))
        .unwrap();
    let mut conn = crate::support::HttpConn::new(stream);
    conn.send(
        format!(
            "GET /events?topic=t HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {}\r\n\r\n",
            ids[0]
        )
        .as_bytes(),
    );
    server.await_metric("sseloop_replaying_subscribers", |n| n == 1);
    // The history moves on past its place, on another topic.
    for _ in 0..20 {
        publisher.publish_ok("?topic=other", b"y");
    }
    let head = conn.read_head(crate::support::deadline());
    let mut sub = Subscriber::from_head(conn, head);
    loop {
        match sub.next_item() {
            Item::Event(event) if event.event.as_deref() == Some("reset") => {
                assert_eq!(reset_reason(&event), "stale");
                break;
            }
            Item::Event(event) => assert_eq!(event.data.len(), big.len(), "{event:?}"),
            _ => {}
        }
    }
}
