//! One hub behind `/events`, `/publish` and `/.well-known/mercure`: one
//! order and one id sequence for the subscribers of both endpoints, on one
//! loop and on two.

use super::{events_through, publish_request, subscribe};
use crate::support::{Subscriber, TestServer, assert_publish_ok, deadline, id_seq};

/// `/events` subscribers of a topic and Mercure subscribers of the same
/// topic (exact) and of everything (`*`) see the same events, published
/// on `/publish` and on the hub, with the same ids, in the same order, on
/// whichever loop they landed; the ids count up without a gap.
#[test]
fn events_and_mercure_subscribers_share_one_order_and_one_id_sequence() {
    for loops in ["1", "2"] {
        let server = TestServer::start(&["--heartbeat", "0", "--loops", loops]);
        let mut subs: Vec<Subscriber> = Vec::new();
        for _ in 0..4 {
            subs.push(server.subscribe_ready("?topic=t"));
            subs.push(subscribe(&server, "match=t"));
            subs.push(subscribe(&server, "match=*"));
        }
        let mut publishers: Vec<_> = (0..3).map(|_| server.publisher()).collect();
        let mut hub = server.http();
        let mut ids = Vec::new();
        for n in 0..30 {
            // Every fourth on the hub, the others on /publish.
            if n % 4 == 3 {
                hub.send(&publish_request(&format!("topic=t&data=e{n}"), ""));
                ids.push(assert_publish_ok(&hub.read_response(deadline())));
                continue;
            }
            let p = &mut publishers[n % 3];
            ids.push(p.publish_ok("?topic=t", format!("e{n}").as_bytes()));
        }
        let last = ids.last().unwrap().clone();
        let first = events_through(&mut subs[0], &last);
        let seqs: Vec<u64> = first.iter().map(|(id, _)| id_seq(id)).collect();
        let start = seqs[0];
        assert_eq!(
            seqs,
            (start..start + 30).collect::<Vec<_>>(),
            "--loops {loops}"
        );
        for (i, sub) in subs.iter_mut().enumerate().skip(1) {
            assert_eq!(
                events_through(sub, &last),
                first,
                "subscriber {i}, --loops {loops}"
            );
        }
    }
}
