//! The Mercure hub as a cluster on Redis: a publish on one node reaches
//! the Mercure and `/events` subscribers of another with its publisher's
//! id, type, retry and data, a private update reaches no one without a
//! token there either, and a publisher's id resumes on a third node.

use super::{publish_request, subscribe, subscribe_with};
use crate::cluster::{events_through, node};
use crate::real::redis::{Persistence, Redis, Reply};
use crate::support::{HttpConn, Item, TestServer, assert_publish_ok, deadline};

fn publish(conn: &mut HttpConn, body: &str) -> String {
    conn.send(&publish_request(body, ""));
    assert_publish_ok(&conn.read_response(deadline()))
}

/// A node of `redis` without heartbeats.
fn quiet_node(redis: &Redis) -> TestServer {
    node(redis, &["--heartbeat", "0"])
}

#[test]
fn a_publishers_id_crosses_the_cluster_and_resumes_on_any_node() {
    let redis = Redis::start(Persistence::None);
    let (a, b, c) = (quiet_node(&redis), quiet_node(&redis), quiet_node(&redis));
    let books = "match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    let mut on_b = subscribe(&b, books);
    let mut star_b = subscribe(&b, "match=*");
    let mut events_c = c.subscribe_ready("?topic=https%3A%2F%2Fexample.com%2Fbooks%2F2");
    let mut hub = a.http();
    let first = publish(
        &mut hub,
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&id=book-1&type=book&retry=1500&data=one%0Aline",
    );
    assert_eq!(
        first, "book-1",
        "answered with the publisher's id once stored"
    );
    let private = publish(
        &mut hub,
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&private&data=secret",
    );
    let second = publish(
        &mut hub,
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F2&id=urn%3Auuid%3A2&data=two",
    );
    let made = publish(
        &mut hub,
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F3&data=three",
    );
    assert!(made.starts_with("urn:sseloop:"), "{made}");

    assert_eq!(on_b.next_item(), Item::Retry("1500".into()));
    let event = on_b.next_event();
    assert_eq!(
        (
            event.id.as_deref(),
            event.event.as_deref(),
            event.data.as_str()
        ),
        (Some("book-1"), Some("book"), "one\nline")
    );
    // The private update crossed the cluster private: no one here has a
    // token, so no one gets it.
    assert_eq!(
        events_through(&mut on_b, &made),
        [
            (second.clone(), "two".to_string()),
            (made.clone(), "three".to_string())
        ]
    );
    let star: Vec<String> = events_through(&mut star_b, &made)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        star,
        [first.clone(), second.clone(), made.clone()],
        "not {private}"
    );
    assert_eq!(
        events_through(&mut events_c, &second),
        [(second.clone(), "two".to_string())]
    );
    // The entry in Redis keeps the publisher's id.
    let Reply::Array(entries) = redis.command(&["XRANGE", crate::cluster::STREAM, "-", "+"]) else {
        panic!("the stream")
    };
    assert_eq!(entries.len(), 4);
    assert!(format!("{:?}", entries[0]).contains("book-1"));

    // On a third node, once it has read them: the publisher's id resumes
    // after its event, on the hub and on /events.
    let mut live_c = subscribe(&c, "match=*");
    let last = publish(&mut hub, "topic=other&data=last");
    events_through(&mut live_c, &last);
    let mut resumed = subscribe_with(&c, books, "Last-Event-ID: book-1\r\n");
    assert_eq!(resumed.head.header("mercure-last-event-id"), Some("book-1"));
    let ids: Vec<String> = events_through(&mut resumed, &made)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ids, [second.clone(), made.clone()]);
    let mut by_events = c.resume("?topic=other", "urn:uuid:2");
    by_events.expect_connected();
    assert_eq!(events_through(&mut by_events, &last).len(), 1);
}

/// In a cluster as in one process: a retry of an update on another node
/// makes no second event, another update under the same id is dispatched
/// (answered with the id), and resuming from the id on a third node
/// replays from after its earliest use. Regression: the other update was
/// answered and never stored.
#[test]
fn a_reused_id_on_another_node_is_another_update_and_a_retry_is_not() {
    let redis = Redis::start(Persistence::None);
    let (a, b, c) = (quiet_node(&redis), quiet_node(&redis), quiet_node(&redis));
    let mut live_c = subscribe(&c, "match=t");
    let first = "topic=t&id=x&data=one";
    assert_eq!(publish(&mut a.http(), first), "x");
    let mut on_b = b.http();
    assert_eq!(publish(&mut on_b, first), "x", "a retry");
    assert_eq!(publish(&mut on_b, "topic=t&id=x&data=two"), "x");
    let last = publish(&mut on_b, "topic=t&data=last");
    let pair = |id: &str, data: &str| (id.to_string(), data.to_string());
    assert_eq!(
        events_through(&mut live_c, &last),
        [pair("x", "one"), pair("x", "two"), pair(&last, "last")]
    );
    let mut resumed = subscribe_with(&c, "match=t", "Last-Event-ID: x\r\n");
    assert_eq!(resumed.head.header("mercure-last-event-id"), Some("x"));
    assert_eq!(
        events_through(&mut resumed, &last),
        [pair("x", "two"), pair(&last, "last")]
    );
}
