//! Slow subscribers: cut off past `--queue-limit`, cleanly, without
//! delaying anyone else.

use crate::support::{CUT_OFF_LOG, Subscriber, TestServer, padded};

/// Enough 60 KiB events to overflow loopback socket buffers many times.
const EVENTS: usize = 400;
const EVENT_SIZE: usize = 60 * 1024;

/// Publishes `EVENTS` events to topic `big`, reading each from `fast`
/// before publishing the next. `slow` reads nothing until the server has
/// logged its cut-off; it is then read to its end at once, since a cut-off
/// peer gets only a bounded time to take the rest of its stream: the first
/// events whole and in order, a clean end, the close. Returns how many
/// events `slow` received.
fn publish_past_slow(server: &TestServer, slow: &mut Subscriber, fast: &mut Subscriber) -> usize {
    let mut publisher = server.publisher();
    let mut ids = Vec::with_capacity(EVENTS);
    let mut slow_received = None;
    for n in 0..EVENTS {
        let body = padded(n, EVENT_SIZE);
        let id = publisher.publish_ok("?topic=big", body.as_bytes());
        // A server stalled on the slow subscriber makes this read time out.
        let event = fast.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "fast event {n}");
        assert!(event.data == body, "fast subscriber: event {n} corrupted");
        ids.push(id);
        if slow_received.is_none() && server.log().contains(CUT_OFF_LOG) {
            slow_received = Some(slow.expect_padded_events_then_clean_end(&ids, EVENT_SIZE));
        }
    }
    // The log line may still be in the pipe.
    assert!(
        server.await_log(&["WARN", CUT_OFF_LOG]).is_some(),
        "no slow-subscriber cut-off was logged at warn after {EVENTS} events"
    );
    slow_received.unwrap_or_else(|| slow.expect_padded_events_then_clean_end(&ids, EVENT_SIZE))
}

#[test]
fn slow_subscriber_is_cut_off_while_a_fast_one_keeps_receiving() {
    let server = TestServer::start(&["--queue-limit", "64KiB", "--heartbeat", "0"]);
    let mut slow = server.subscribe_ready("?topic=big");
    let mut fast = server.subscribe_ready("?topic=big");

    let received = publish_past_slow(&server, &mut slow, &mut fast);
    assert!(
        received < EVENTS,
        "slow subscriber was never cut off ({received} events)"
    );
    assert!(
        received > 0,
        "not even the first event reached the slow one"
    );

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
    let mut slow = server.subscribe_ready("?topic=big");
    let mut fast = server.subscribe_ready("?topic=big");

    // Close-delimited: the end is EOF, and it must fall between events
    // (a browser silently drops a half event).
    let received = publish_past_slow(&server, &mut slow, &mut fast);
    assert!(received < EVENTS, "never cut off ({received} events)");
}
