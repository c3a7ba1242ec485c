//! A fan-out wider than one flush slice, with publishes arriving while it is
//! being written: later events join the queues of streams not yet written,
//! and every stream still gets every event once, in order.

use crate::support::{TestServer, assert_publish_ok, deadline, publish_request};

const SUBSCRIBERS: usize = 300;
const EVENTS: usize = 200;

#[test]
fn pipelined_publishes_to_a_wide_fan_out_reach_everyone_once_in_order() {
    let server = TestServer::start(&[]);
    let mut subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| server.subscribe("?topic=wide"))
        .collect();
    for sub in &mut subscribers {
        sub.expect_connected();
    }
    // All publishes in one write, so they arrive while the first fan-outs
    // are still being written.
    let mut batch = Vec::new();
    for n in 0..EVENTS {
        batch.extend(publish_request(
            "?topic=wide",
            format!("event {n}").as_bytes(),
        ));
    }
    let mut publisher = server.http();
    publisher.send(&batch);
    let ids: Vec<String> = (0..EVENTS)
        .map(|_| assert_publish_ok(&publisher.read_response(deadline())))
        .collect();
    for (s, sub) in subscribers.iter_mut().enumerate() {
        for (n, id) in ids.iter().enumerate() {
            let event = sub.next_event();
            assert_eq!(
                event.id.as_deref(),
                Some(id.as_str()),
                "subscriber {s}, event {n}"
            );
            assert_eq!(event.data, format!("event {n}"), "subscriber {s}");
        }
    }
    // Coalesced writes still count each event once per stream.
    assert_eq!(
        server.metric("sseloop_deliveries_total"),
        (SUBSCRIBERS * EVENTS) as u64
    );
}
