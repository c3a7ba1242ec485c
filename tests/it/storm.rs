//! Subscribers that drop and come back: a slow one cut off past the queue
//! limit that resumes without loss, and a storm of subscribers reconnecting
//! at random while events are published.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{
    Rng, Subscriber, TestServer, assert_same_sequence, id_seq, padded, publish_until_cut_off, query,
};

#[test]
fn a_slow_subscriber_cut_off_resumes_from_its_last_complete_event_without_loss() {
    const SIZE: usize = 32 * 1024;
    // 25 MiB: far more than loopback socket buffers hold.
    const MAX_EVENTS: usize = 800;
    const AFTER_CUT: usize = 5;
    let server = TestServer::start(&[
        "--queue-limit",
        "64KiB",
        "--history",
        "1024",
        "--heartbeat",
        "0",
    ]);
    let mut slow = server.subscribe_ready("?topic=big");

    // Publish while it reads nothing, until the server says it cut it off.
    let mut ids = publish_until_cut_off(&server, "?topic=big", SIZE, MAX_EVENTS);
    let mut publisher = server.publisher();
    // These it certainly missed.
    for _ in 0..AFTER_CUT {
        let n = ids.len();
        ids.push(publisher.publish_ok("?topic=big", padded(n, SIZE).as_bytes()));
    }

    // What it got: the first events, whole and in order, then a clean end
    // (the terminating chunk), then the close. Read at once: a cut-off peer
    // gets a bounded time to take the rest.
    let received = slow.expect_padded_events_then_clean_end(&ids, SIZE);
    assert!(received > 0, "not even the first event arrived");
    assert!(
        received <= ids.len() - AFTER_CUT,
        "events published after the cut-off reached the cut-off stream"
    );

    // Resume from the last complete event: the rest, in order, no reset.
    let last = &ids[received - 1];
    let mut back = server.resume("?topic=big", last);
    back.expect_connected();
    for (n, id) in ids.iter().enumerate().skip(received) {
        let event = back.next_event();
        assert_eq!(event.event, None, "a reset or other type: {event:?}");
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "resumed event {n}");
        assert!(event.data == padded(n, SIZE), "resumed event {n} corrupted");
    }
    // And it is live again.
    let live = publisher.publish_ok("?topic=big", b"live");
    let event = back.next_event();
    assert_eq!(event.id, Some(live));
    assert_eq!(
        server.metric("sseloop_slow_subscriber_disconnects_total"),
        1,
        "only the first stream was cut off"
    );
}

// ---------------------------------------------------------------------------
// The reconnect storm

const SUBSCRIBERS: usize = 40;
const TOPICS: usize = 4;
const PUBLISHERS: usize = 2;
const EVENTS_PER_PUBLISHER: usize = 200;
/// Longest run of events a subscriber reads before it drops.
const MAX_RUN: usize = 25;
/// The storm must be over by then, or the test fails.
const STORM_TIMEOUT: Duration = Duration::from_secs(30);

/// The topics of subscriber `i`: one, two, or none (broadcasts only).
fn subscriber_topics(i: usize) -> Vec<usize> {
    match i % 5 {
        4 => vec![],
        k if i.is_multiple_of(3) => vec![k % TOPICS, (k + 1) % TOPICS],
        k => vec![k % TOPICS],
    }
}

/// The query naming `topics` (`topic=t<n>` each), then the `extra` pairs.
fn storm_query(topics: &[usize], extra: &[(&str, &str)]) -> String {
    let names: Vec<String> = topics.iter().map(|t| format!("t{t}")).collect();
    let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| ("topic", n.as_str())).collect();
    pairs.extend_from_slice(extra);
    query(&pairs)
}

/// One published event: its id, topics (empty: broadcast), type and data.
struct Published {
    id: String,
    topics: Vec<usize>,
    kind: Option<&'static str>,
    data: String,
}

/// What one storm subscriber saw.
struct Seen {
    /// Every event: id, type, data.
    events: Vec<(String, Option<String>, String)>,
    reconnects: usize,
    /// Reconnects begun and completed while events were being published.
    during_publishing: usize,
}

/// A subscriber's life in the storm: read a random number of events, drop,
/// resume from the last id seen (by header or by query), until the `end`
/// broadcast.
fn storm_subscriber(
    server: &TestServer,
    mut sub: Subscriber,
    topics: &[usize],
    seed: u64,
    until: Instant,
    publishing: &AtomicBool,
) -> Seen {
    let mut rng = Rng::new(seed);
    let query = storm_query(topics, &[]);
    // The `start` broadcast, read before anything else is published.
    let start = sub.next_event_by(until);
    assert_eq!(start.data, "start");
    let mut last = start.id.expect("ids");
    let mut events = Vec::new();
    let mut during_publishing = 0;
    // Bounded: each round reads at least one event or reconnects, and
    // there are at most a few hundred events.
    for reconnects in 0..10_000 {
        let run = rng.below(MAX_RUN + 1);
        for _ in 0..run {
            let event = sub.next_event_by(until);
            let id = event.id.expect("every event has an id");
            if event.data == "end" {
                return Seen {
                    events,
                    reconnects,
                    during_publishing,
                };
            }
            last.clone_from(&id);
            events.push((id, event.event, event.data));
        }
        // The flag is only ever cleared: set before the drop and after the
        // new stream is registered means set all the while.
        let began_publishing = publishing.load(Ordering::SeqCst);
        drop(sub);
        sub = if rng.below(2) == 0 {
            server.resume(&query, &last)
        } else {
            server.subscribe(&storm_query(topics, &[("lastEventId", &last)]))
        };
        sub.expect_connected();
        if began_publishing && publishing.load(Ordering::SeqCst) {
            during_publishing += 1;
        }
    }
    panic!("subscriber did not see the end after 10000 rounds");
}

#[test]
fn a_reconnect_storm_loses_nothing() {
    let seed = std::env::var("STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("storm seed {seed} (set STORM_SEED to repeat it)");
    // Every reader fails by then, so the storm as a whole is bounded too.
    let until = Instant::now() + STORM_TIMEOUT;
    let server = TestServer::start(&["--history", "1024", "--heartbeat", "0"]);

    // Everyone is registered before the first event.
    let subscribers: Vec<(Vec<usize>, Subscriber)> = (0..SUBSCRIBERS)
        .map(|i| {
            let topics = subscriber_topics(i);
            let sub = server.subscribe_ready(&storm_query(&topics, &[]));
            (topics, sub)
        })
        .collect();
    let mut publisher = server.publisher();
    publisher.publish_ok("", b"start");

    // Set once the first event is out, cleared once the last is: while set,
    // events are being published.
    let publishing = AtomicBool::new(false);
    let (published, results) = thread::scope(|scope| {
        let readers: Vec<_> = subscribers
            .into_iter()
            .enumerate()
            .map(|(i, (topics, sub))| {
                let (server, publishing) = (&server, &publishing);
                scope.spawn(move || {
                    let seed = seed ^ (i as u64 * 7919);
                    let seen = storm_subscriber(server, sub, &topics, seed, until, publishing);
                    (topics, seen)
                })
            })
            .collect();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (server, publishing) = (&server, &publishing);
                scope.spawn(move || {
                    let mut rng = Rng::new(seed.rotate_left(17) ^ p as u64);
                    let mut publisher = server.publisher();
                    let mut out = Vec::with_capacity(EVENTS_PER_PUBLISHER);
                    for n in 0..EVENTS_PER_PUBLISHER {
                        // 1 in 8 broadcast, 1 in 8 to two topics, else one.
                        let first = rng.below(TOPICS);
                        let topics = match rng.below(8) {
                            0 => vec![],
                            1 => vec![first, (first + 1 + rng.below(3)) % TOPICS],
                            _ => vec![first],
                        };
                        let data = format!("p{p}-{n}");
                        let kind = n.is_multiple_of(5).then_some("tick");
                        let extra: &[(&str, &str)] = match kind {
                            Some(kind) => &[("event", kind)],
                            None => &[],
                        };
                        let id =
                            publisher.publish_ok(&storm_query(&topics, extra), data.as_bytes());
                        publishing.store(true, Ordering::SeqCst);
                        out.push(Published {
                            id,
                            topics,
                            kind,
                            data,
                        });
                    }
                    out
                })
            })
            .collect();
        let mut published: Vec<Published> = publishers
            .into_iter()
            .flat_map(|p| p.join().expect("publisher thread"))
            .collect();
        publishing.store(false, Ordering::SeqCst);
        published.sort_by_key(|p| id_seq(&p.id));
        publisher.publish_ok("", b"end");
        let results: Vec<_> = readers
            .into_iter()
            .map(|r| r.join().expect("subscriber thread"))
            .collect();
        (published, results)
    });

    let mut total_reconnects = 0;
    let mut total_during_publishing = 0;
    for (i, (topics, seen)) in results.iter().enumerate() {
        let reconnects = seen.reconnects;
        total_reconnects += reconnects;
        total_during_publishing += seen.during_publishing;
        let expected: Vec<(&str, Option<&str>, &str)> = published
            .iter()
            .filter(|p| p.topics.is_empty() || p.topics.iter().any(|t| topics.contains(t)))
            .map(|p| (p.id.as_str(), p.kind, p.data.as_str()))
            .collect();
        let got: Vec<(&str, Option<&str>, &str)> = seen
            .events
            .iter()
            .map(|(id, kind, data)| (id.as_str(), kind.as_deref(), data.as_str()))
            .collect();
        assert_same_sequence(
            &got,
            &expected,
            format_args!(
                "seed {seed}: subscriber {i} (topics {topics:?}, {reconnects} reconnects)"
            ),
        );
    }
    assert!(
        total_reconnects >= SUBSCRIBERS * 5,
        "seed {seed}: only {total_reconnects} reconnects: not a storm"
    );
    // Reconnects after the publishing only replay a still history: the
    // race with new events is what this test is for.
    assert!(
        total_during_publishing >= SUBSCRIBERS,
        "seed {seed}: only {total_during_publishing} of {total_reconnects} reconnects overlapped the publishing"
    );
}
