//! `GET /metrics`: the Prometheus text is well formed, and each counter
//! moves when the thing it counts happens.

use crate::support::{TestServer, metric_value, publish_until_cut_off};

#[test]
fn every_sample_has_help_and_type() {
    let server = TestServer::start(&[]);
    let text = server.metrics();
    // Declared names and their kinds, in order.
    let mut declared: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "kind {kind}"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
            declared.push((name.to_string(), kind.to_string()));
        } else if !line.starts_with('#') {
            let (sample, value) = line.rsplit_once(' ').expect("sample has a value");
            let name = sample.split('{').next().unwrap();
            // A sample belongs to the last TYPE: its own name, or a
            // histogram's with one of the histogram suffixes.
            let (family, kind) = declared.last().expect("sample before any TYPE");
            let belongs = name == family
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str())));
            assert!(belongs, "sample {sample} is not of the family {family}");
            value.parse::<f64>().expect("numeric sample value");
        }
    }
    let declared: Vec<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
    for name in [
        "sseloop_connections",
        "sseloop_subscribers",
        "sseloop_connections_accepted_total",
        "sseloop_events_published_total",
        "sseloop_deliveries_total",
        "sseloop_bytes_written_total",
        "sseloop_heartbeats_total",
        "sseloop_slow_subscriber_disconnects_total",
        "sseloop_rejected_connections_total",
        "sseloop_replayed_events_total",
        "sseloop_write_delay_seconds",
    ] {
        assert!(declared.contains(&name), "{name} missing");
    }
}

#[test]
fn counters_follow_subscribes_publishes_heartbeats_and_replays() {
    let server = TestServer::start(&["--heartbeat", "100ms"]);
    let before = server.metrics();
    assert_eq!(metric_value(&before, "sseloop_subscribers"), 0);
    assert_eq!(metric_value(&before, "sseloop_events_published_total"), 0);

    let mut a = server.subscribe("?topic=m");
    let mut b = server.subscribe("?topic=m");
    a.expect_connected();
    b.expect_connected();
    let mut publisher = server.publisher();
    let first = publisher.publish_ok("?topic=m", b"one");
    publisher.publish_ok("?topic=m", b"two");
    publisher.publish_ok("?topic=other", b"nobody");
    for sub in [&mut a, &mut b] {
        assert_eq!(sub.next_event().data, "one");
        assert_eq!(sub.next_event().data, "two");
    }
    let text = server.metrics();
    assert_eq!(metric_value(&text, "sseloop_subscribers"), 2);
    assert_eq!(metric_value(&text, "sseloop_events_published_total"), 3);
    assert_eq!(metric_value(&text, "sseloop_deliveries_total"), 4);
    assert!(
        metric_value(&text, "sseloop_bytes_written_total")
            > metric_value(&before, "sseloop_bytes_written_total")
    );
    // Three connections at least: two streams and the publisher.
    assert!(metric_value(&text, "sseloop_connections") >= 3);

    server.await_metric("sseloop_heartbeats_total", |n| n >= 2);

    // A resume from the first id replays the second event.
    let mut resumed = server.resume("?topic=m", &first);
    assert_eq!(resumed.next_event().data, "two");
    assert_eq!(server.metric("sseloop_replayed_events_total"), 1);

    drop(a);
    server.await_metric("sseloop_subscribers", |n| n == 2);
}

#[test]
fn a_queue_the_kernel_refused_is_timed_in_the_write_delay_histogram() {
    let server = TestServer::start(&["--queue-limit", "64MiB"]);
    let mut sub = server.subscribe_ready("?topic=w");
    let delayed = "sseloop_write_delay_seconds_count";
    assert_eq!(server.metric(delayed), 0);
    // 16 MiB unread passes any loopback socket buffer, so the kernel
    // refuses some and the rest waits in the server's queue.
    let body = "x".repeat(60 * 1024);
    let mut publisher = server.publisher();
    let events = 16 * 1024 / 60;
    for _ in 0..events {
        publisher.publish_ok("?topic=w", body.as_bytes());
    }
    for n in 0..events {
        assert_eq!(sub.next_event().data.len(), body.len(), "event {n}");
    }
    server.await_metric(delayed, |n| n >= 1);
    let text = server.metrics();
    assert_eq!(
        metric_value(&text, "sseloop_write_delay_seconds_bucket{le=\"+Inf\"}"),
        metric_value(&text, delayed)
    );
}

/// The slowest waits are the ones that never end in a write: a subscriber
/// cut off, then gone, with its bytes still refused, is timed as well.
#[test]
fn a_refused_queue_that_is_closed_unwritten_is_timed_too() {
    let server = TestServer::start(&["--queue-limit", "64KiB", "--heartbeat", "0"]);
    let sub = server.subscribe_ready("?topic=w");
    let delayed = "sseloop_write_delay_seconds_count";
    // The subscriber reads nothing: socket buffers fill, then the queue
    // passes its limit (a few MiB at most on loopback).
    publish_until_cut_off(&server, "?topic=w", 16 * 1024, 2_000);
    assert_eq!(server.metric(delayed), 0, "nothing was ever written out");
    drop(sub);
    server.await_metric(delayed, |n| n == 1);
}
