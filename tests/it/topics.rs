//! Who receives what: topics, several topics per subscriber, broadcasts.

use crate::support::{Event, Subscriber, TestServer, query};

/// Reads events until the one with `marker_id`, returning the data of those
/// before it. Events arrive in publish order, so anything a subscriber should
/// not have received shows up here before the marker.
fn data_until(sub: &mut Subscriber, marker_id: &str) -> Vec<String> {
    let mut seen = Vec::new();
    // Bounded: no test here publishes more than a handful of events.
    for _ in 0..100 {
        let Event { id, data, .. } = sub.next_event();
        if id.as_deref() == Some(marker_id) {
            return seen;
        }
        seen.push(data);
    }
    panic!("marker {marker_id} never arrived; saw {seen:?}");
}

#[test]
fn events_reach_exactly_their_topics_and_broadcasts_reach_all() {
    let server = TestServer::start(&[]);
    let mut only_a = server.subscribe("?topic=a");
    let mut only_b = server.subscribe("?topic=b");
    let mut both = server.subscribe("?topic=a&topic=b");
    let mut none = server.subscribe("");
    let mut subs = [&mut only_a, &mut only_b, &mut both, &mut none];
    for sub in subs.iter_mut() {
        sub.expect_connected();
    }

    let mut publisher = server.publisher();
    publisher.publish_ok("?topic=a", b"to a");
    publisher.publish_ok("?topic=b", b"to b");
    publisher.publish_ok("?topic=a&topic=b", b"to a and b");
    publisher.publish_ok("?topic=c", b"to c");
    publisher.publish_ok("", b"to all");
    let marker = publisher.publish_ok("", b"marker");

    assert_eq!(
        data_until(&mut only_a, &marker),
        ["to a", "to a and b", "to all"]
    );
    assert_eq!(
        data_until(&mut only_b, &marker),
        ["to b", "to a and b", "to all"]
    );
    // Two matching topics, still one delivery.
    assert_eq!(
        data_until(&mut both, &marker),
        ["to a", "to b", "to a and b", "to all"]
    );
    // No topic: broadcasts only.
    assert_eq!(data_until(&mut none, &marker), ["to all"]);
}

#[test]
fn repeated_topic_in_subscribe_delivers_once() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a&topic=a");
    let mut publisher = server.publisher();
    publisher.publish_ok("?topic=a&topic=a", b"once");
    let marker = publisher.publish_ok("", b"marker");
    assert_eq!(data_until(&mut sub, &marker), ["once"]);
}

#[test]
fn topic_names_are_percent_decoded() {
    let server = TestServer::start(&[]);
    // `+` and `%20` are both a space; `%C3%A9` is é.
    let mut sub = server.subscribe_ready("?topic=hello+world&topic=caf%C3%A9");
    let mut publisher = server.publisher();
    publisher.publish_ok("?topic=hello%20world", b"spaced");
    publisher.publish_ok(&query(&[("topic", "café")]), b"accented");
    publisher.publish_ok("?topic=hello", b"other");
    publisher.publish_ok("?topic=hello%2Bworld", b"plus sign");
    let marker = publisher.publish_ok("", b"marker");
    assert_eq!(data_until(&mut sub, &marker), ["spaced", "accented"]);
}

#[test]
fn topic_of_128_bytes_is_accepted() {
    let server = TestServer::start(&[]);
    let topic = "t".repeat(128);
    let mut sub = server.subscribe_ready(&query(&[("topic", &topic)]));
    let mut publisher = server.publisher();
    publisher.publish_ok(&query(&[("topic", &topic)]), b"long");
    let marker = publisher.publish_ok("", b"marker");
    assert_eq!(data_until(&mut sub, &marker), ["long"]);
}

#[test]
fn topics_are_case_sensitive() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=Jobs");
    let mut publisher = server.publisher();
    publisher.publish_ok("?topic=jobs", b"lower");
    publisher.publish_ok("?topic=Jobs", b"exact");
    let marker = publisher.publish_ok("", b"marker");
    assert_eq!(data_until(&mut sub, &marker), ["exact"]);
}

#[test]
fn many_subscribers_of_one_topic_all_receive() {
    let server = TestServer::start(&[]);
    let mut subs: Vec<Subscriber> = (0..20).map(|_| server.subscribe("?topic=t")).collect();
    for sub in &mut subs {
        sub.expect_connected();
    }
    let id = server.publisher().publish_ok("?topic=t", b"fan-out");
    for sub in &mut subs {
        let event = sub.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert_eq!(event.data, "fan-out");
    }
}

#[test]
fn other_query_parameters_do_not_disturb_topics() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?foo=bar&topic=a");
    let mut publisher = server.publisher();
    publisher.publish_ok("?topic=a&foo=bar", b"hello");
    let marker = publisher.publish_ok("", b"marker");
    assert_eq!(data_until(&mut sub, &marker), ["hello"]);
}
