//! Slow subscribers: cut off past `--queue-limit`, cleanly, without
//! delaying anyone else.

use crate::support::{BodyEnd, Item, Next, Subscriber, TestServer, deadline};

/// Enough 60 KiB events to overflow loopback socket buffers many times.
const EVENTS: usize = 400;
const EVENT_SIZE: usize = 60 * 1024;

/// A distinct body per event so a reordered or mixed-up event is caught.
fn payload(n: usize) -> String {
    let fill = char::from(b'a' + (n % 26) as u8);
    let mut body = format!("{n:05}:");
    while body.len() < EVENT_SIZE {
        body.push(fill);
    }
    body
}

/// Publishes `EVENTS` events to topic `big`, reading each from `fast`
/// before publishing the next. `slow` reads nothing until the server has
/// logged its cut-off; it is then read to its end at once, since a cut-off
/// peer gets only a bounded time to take the rest of its stream. Returns how
/// many events `slow` received.
fn publish_past_slow(server: &TestServer, slow: &mut Subscriber, fast: &mut Subscriber) -> usize {
    let mut publisher = server.publisher();
    let mut ids = Vec::with_capacity(EVENTS);
    let mut slow_received = None;
    for n in 0..EVENTS {
        let body = payload(n);
        let id = publisher.publish_ok("?topic=big", body.as_bytes());
        // A server stalled on the slow subscriber makes this read time out.
        let event = fast.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "fast event {n}");
        assert!(event.data == body, "fast subscriber: event {n} corrupted");
        ids.push(id);
        if slow_received.is_none() && server.log().contains("WARN") {
            slow_received = Some(read_cut_off_stream(slow, &ids));
        }
    }
    match slow_received {
        Some(received) => received,
        None => {
            // The log line may still be in the pipe.
            assert!(
                server.await_log(&["WARN"]).is_some(),
                "no slow-subscriber cut-off was logged at warn after {EVENTS} events"
            );
            read_cut_off_stream(slow, &ids)
        }
    }
}

/// Reads what the slow subscriber got: it must be the first events, whole
/// and in order, then a clean end. Returns how many arrived.
fn read_cut_off_stream(slow: &mut Subscriber, ids: &[String]) -> usize {
    let mut received = 0;
    // Bounded: at most one item per event, plus the opening comment.
    for _ in 0..=ids.len() + 1 {
        match slow.poll(deadline()) {
            Next::Item(Item::Event(event)) => {
                assert!(received < ids.len(), "more events than published");
                assert_eq!(event.id.as_deref(), Some(ids[received].as_str()));
                assert!(
                    event.data == payload(received),
                    "slow subscriber: event {received} corrupted"
                );
                received += 1;
            }
            Next::Item(Item::Comment(_)) => {}
            Next::Item(other) => panic!("unexpected {other:?}"),
            Next::End(BodyEnd::Clean) => {
                assert!(!slow.has_partial(), "stream ended inside an event");
                return received;
            }
            Next::End(end) => {
                panic!("slow stream did not end cleanly after {received} events: {end:?}")
            }
        }
    }
    panic!("slow stream did not end after {received} events");
}

#[test]
fn slow_subscriber_is_cut_off_while_a_fast_one_keeps_receiving() {
    let server = TestServer::start(&["--queue-limit", "64KiB", "--heartbeat", "0"]);
    let mut slow = server.subscribe("?topic=big");
    slow.expect_connected();
    let mut fast = server.subscribe("?topic=big");
    fast.expect_connected();

    let received = publish_past_slow(&server, &mut slow, &mut fast);
    assert!(
        received < EVENTS,
        "slow subscriber was never cut off ({received} events)"
    );
    assert!(
        received > 0,
        "not even the first event reached the slow one"
    );
    // After the terminating chunk the server closes the connection.
    slow.expect_closed();

    // The server is still healthy and the fast subscriber still subscribed.
    let id = server.publisher().publish_ok("?topic=big", b"after");
    assert_eq!(fast.next_event().id, Some(id));
}

#[test]
fn slow_close_delimited_subscriber_is_cut_off_at_an_event_boundary() {
    let server = TestServer::start(&[
        "--queue-limit",
        "64KiB",
        "--heartbeat",
        "0",
        "--framing",
        "close",
    ]);
    let mut slow = server.subscribe("?topic=big");
    slow.expect_connected();
    let mut fast = server.subscribe("?topic=big");
    fast.expect_connected();

    // Close-delimited: the end is EOF, and it must fall between events
    // (a browser silently drops a half event).
    let received = publish_past_slow(&server, &mut slow, &mut fast);
    assert!(received < EVENTS, "never cut off ({received} events)");
}
