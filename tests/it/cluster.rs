//! A cluster on Redis (`--redis`): real `sseloop` nodes (processes) on one
//! real Redis (`real::redis`), driven over HTTP. Every id of a cluster is
//! `<epoch>-<seq>` with `seq` running 1, 2, 3, … without a gap, so "nothing
//! lost or doubled" is checked as: a subscriber's events are exactly the
//! sequence numbers from its first to the last published, once each, in
//! order, each with the data its publisher sent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::real::forwarder::Forwarder;
use crate::real::redis::{Persistence, Redis, Reply};
use crate::support::{
    BodyEnd, Item, Next, Subscriber, TestServer, assert_publish_ok, deadline, id_run, id_seq,
    reset_reason,
};

/// The stream every test's nodes share (the default `--redis-key`).
pub(crate) const STREAM: &str = "sseloop:events";

/// Longest a node may take to be back at work after Redis is.
pub(crate) const RECOVERY: Duration = Duration::from_secs(10);

/// A node on `redis`, with more options.
pub(crate) fn node(redis: &Redis, extra: &[&str]) -> TestServer {
    node_on(&redis.url(), extra)
}

pub(crate) fn node_on(url: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--redis", url];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// Reads events until one has id `last`; fails on anything else ending the
/// stream first. Returns (id, data) of each event, `reset`s included.
pub(crate) fn events_through(sub: &mut Subscriber, last: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let end = Instant::now() + RECOVERY;
    loop {
        match sub.poll(end) {
            Next::Item(Item::Event(event)) => {
                let id = event.id.clone().unwrap_or_default();
                let done = id == last;
                let data = if event.event.as_deref() == Some("reset") {
                    format!("reset:{}", reset_reason(&event))
                } else {
                    event.data
                };
                seen.push((id, data));
                if done {
                    return seen;
                }
            }
            Next::Item(_) => {}
            Next::End(end) => panic!(
                "the stream ended ({end:?}) before {last}; it had {} events, the last {:?}",
                seen.len(),
                seen.last()
            ),
        }
    }
}

/// The id a `200` publish answer carries; `None` when the connection ends
/// first (its server was killed).
fn read_publish_answer(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    assert!(
        line.starts_with("HTTP/1.1 200 "),
        "publish answered {line:?}"
    );
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("Content-Length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(String::from_utf8(body).expect("an id"))
}

/// Publishes `body` on `server` until it is stored (a 503 while Redis is
/// away, each on a new connection as the refusal closes it); the id.
/// Bounded by `RECOVERY`.
pub(crate) fn publish_when_back(server: &TestServer, query: &str, body: &str) -> String {
    let end = Instant::now() + RECOVERY;
    loop {
        let response = server.publisher().publish(query, body.as_bytes());
        if response.head.status == 200 {
            return assert_publish_ok(&response);
        }
        assert_eq!(
            response.head.status, 503,
            "while Redis comes back: {:?}",
            response.head
        );
        assert!(
            Instant::now() < end,
            "publishing still refused {RECOVERY:?} after Redis came back; log:\n{}",
            server.log()
        );
        // The refusal says Retry-After; this is the test's shorter retry.
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts `seen` is exactly the events `from..=to` of one epoch `run`,
/// once each and in order, with the data `published` says each id had.
fn assert_contiguous(
    who: &str,
    seen: &[(String, String)],
    run: &str,
    from: u64,
    to: u64,
    published: &HashMap<String, String>,
) {
    let seqs: Vec<u64> = seen.iter().map(|(id, _)| id_seq(id)).collect();
    let want: Vec<u64> = (from..=to).collect();
    crate::support::assert_same_sequence(&seqs, &want, format!("{who}: sequence numbers"));
    for (id, data) in seen {
        assert_eq!(id_run(id), run, "{who}: {id} is of another epoch");
        if let Some(sent) = published.get(id) {
            assert_eq!(data, sent, "{who}: data of {id}");
        }
    }
}

/// Events published on both nodes at once reach every subscriber of both
/// nodes (one with two loops) in one order, the same everywhere: ids
/// 1..=200 of one epoch without gap, each with the data its publisher got
/// that id for. Pins down the cross-node path: publish over a loop's own
/// Redis connection, one reader per node handing the stream to every loop.
#[test]
fn publishes_on_both_nodes_reach_every_node_in_one_order() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    let b = node(&redis, &["--loops", "2"]);
    let mut subs = vec![
        ("a t", a.subscribe_ready("?topic=t")),
        ("a u+t", a.subscribe_ready("?topic=u&topic=t")),
        ("b t", b.subscribe_ready("?topic=t")),
        ("b t+u", b.subscribe_ready("?topic=t&topic=u")),
        ("b t again", b.subscribe_ready("?topic=t")),
    ];
    const PER_NODE: usize = 100;
    let publishers: Vec<_> = [("a", a.publisher()), ("b", b.publisher())]
        .into_iter()
        .map(|(name, mut publisher)| {
            thread::spawn(move || {
                (0..PER_NODE)
                    .map(|n| {
                        let body = format!("{name}{n}");
                        (publisher.publish_ok("?topic=t", body.as_bytes()), body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let published: HashMap<String, String> = publishers
        .into_iter()
        .flat_map(|p| p.join().expect("publisher"))
        .collect();
    assert_eq!(published.len(), 2 * PER_NODE, "an id given twice");
    let run = id_run(published.keys().next().unwrap()).to_string();
    let last = format!("urn:sseloop:{run}-{}", 2 * PER_NODE);
    assert!(published.contains_key(&last), "ids are 1..=200");
    let mut orders = Vec::new();
    for (who, sub) in &mut subs {
        let seen = events_through(sub, &last);
        assert_contiguous(who, &seen, &run, 1, 2 * PER_NODE as u64, &published);
        orders.push(seen);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "every subscriber sees one order");
    }
}

/// An id resumes on the node that did not issue it, and on a node started
/// after the events were published (its history read from the stream),
/// which then publishes on in the same epoch. Pins down that the history
/// is the stream's, not a node's own.
#[test]
fn an_id_resumes_on_the_other_node_and_on_a_restarted_node() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    let mut b = node(&redis, &[]);
    let mut publisher = a.publisher();
    let mut published = HashMap::new();
    let ids: Vec<String> = (0..10)
        .map(|n| {
            let body = format!("r{n}");
            let id = publisher.publish_ok("?topic=r", body.as_bytes());
            published.insert(id.clone(), body);
            id
        })
        .collect();
    let run = id_run(&ids[0]).to_string();

    let mut on_b = b.resume("?topic=r", &ids[3]);
    let seen = events_through(&mut on_b, &ids[9]);
    assert_contiguous("resumed on the other node", &seen, &run, 5, 10, &published);
    drop(on_b);

    let addr = b.addr();
    b.signal(libc::SIGTERM);
    b.expect_exit_0(Duration::from_secs(5));
    drop(b);
    let b = TestServer::start_on(addr, &["--redis", &redis.url()]);
    let mut on_new_b = b.resume("?topic=r", &ids[1]);
    let next = b.publisher().publish_ok("?topic=r", b"after the restart");
    assert_eq!(
        next,
        format!("urn:sseloop:{run}-11"),
        "the restarted node publishes on"
    );
    published.insert(next.clone(), "after the restart".into());
    let seen = events_through(&mut on_new_b, &next);
    assert_contiguous(
        "resumed on a restarted node",
        &seen,
        &run,
        3,
        11,
        &published,
    );
}

/// A node killed with SIGKILL while it streams and publishes: its
/// subscribers resume on the other node with their `Last-Event-ID` and end
/// up with every event of the stream once, in order (what the dead node
/// stored before it died included), while the other node publishes on.
#[test]
fn a_node_killed_mid_stream_loses_nothing_for_its_subscribers() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut subs: Vec<Subscriber> = (0..3).map(|_| a.subscribe_ready("")).collect();
    let published = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Publishing on the node that dies, until it does.
    let on_a = {
        let stream = a.connect();
        let published = Arc::clone(&published);
        thread::spawn(move || {
            let mut reader = BufReader::new(&stream);
            for n in 0.. {
                let body = format!("a{n}");
                let request = crate::support::publish_request("", body.as_bytes());
                if (&stream).write_all(&request).is_err() {
                    return n;
                }
                let Some(id) = read_publish_answer(&mut reader) else {
                    return n; // killed: this one's fate is unknown
                };
                published.lock().unwrap().insert(id, body);
            }
            unreachable!()
        })
    };
    // And on the one that lives, through the kill and after it.
    let on_b = {
        let mut publisher = b.publisher();
        let published = Arc::clone(&published);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut last = String::new();
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::Acquire) && n >= 300 {
                    break;
                }
                let body = format!("b{n}");
                last = publisher.publish_ok("", body.as_bytes());
                published.lock().unwrap().insert(last.clone(), body);
                thread::sleep(Duration::from_micros(500));
            }
            last
        })
    };
    // Mid-stream: each subscriber has had some events.
    let mut before: Vec<Vec<(String, String)>> = Vec::new();
    for sub in &mut subs {
        let mut seen = Vec::new();
        while seen.len() < 50 {
            let event = sub.next_event();
            seen.push((event.id.unwrap(), event.data));
        }
        before.push(seen);
    }
    a.signal(libc::SIGKILL);
    let a_published = on_a.join().expect("publisher on a");
    assert!(a_published > 0, "the killed node published nothing");
    stop.store(true, std::sync::atomic::Ordering::Release);
    for (sub, seen) in subs.iter_mut().zip(&mut before) {
        // What reached the subscriber before its stream broke.
        loop {
            match sub.poll(deadline()) {
                Next::Item(Item::Event(event)) => seen.push((event.id.unwrap(), event.data)),
                Next::Item(_) => {}
                Next::End(BodyEnd::Truncated | BodyEnd::Failed(_) | BodyEnd::Clean) => break,
                Next::End(other) => panic!("the killed node's stream: {other:?}"),
            }
        }
    }
    let last = on_b.join().expect("publisher on b");
    let published = published.lock().unwrap().clone();
    let run = id_run(&last).to_string();
    for (n, seen) in before.into_iter().enumerate() {
        let (resume_from, _) = seen.last().unwrap().clone();
        let mut resumed = b.resume("", &resume_from);
        let mut all = seen;
        all.extend(events_through(&mut resumed, &last));
        assert_contiguous(
            &format!("subscriber {n} of the killed node"),
            &all,
            &run,
            1,
            id_seq(&last),
            &published,
        );
    }
    // Every publish the killed node answered is in the stream.
    let stream = redis.stream_seqs(STREAM);
    for id in published.keys() {
        assert!(stream.contains(&id_seq(id)), "{id} answered, not stored");
    }
}

/// Redis restarted (gracefully, with its append-only file): the epoch and
/// the stream survive, so ids keep working: a live stream goes on without
/// a reset, new ids follow the old ones, and an old id resumes.
#[test]
fn redis_restarted_with_aof_keeps_ids_working() {
    let mut redis = Redis::start(Persistence::Aof);
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut live = b.subscribe_ready("");
    let mut published = HashMap::new();
    let mut publisher = a.publisher();
    let ids: Vec<String> = (0..5)
        .map(|n| {
            let id = publisher.publish_ok("", format!("before {n}").as_bytes());
            published.insert(id.clone(), format!("before {n}"));
            id
        })
        .collect();
    let run = id_run(&ids[0]).to_string();
    events_through(&mut live, &ids[4]);
    redis.stop(true);
    redis.start_again();
    let after = publish_when_back(&a, "", "after");
    published.insert(after.clone(), "after".into());
    assert_eq!(
        after,
        format!("urn:sseloop:{run}-6"),
        "the same epoch, the next number"
    );
    let seen = events_through(&mut live, &after);
    assert_contiguous("the live stream", &seen, &run, 6, 6, &published);
    let mut resumed = b.resume("", &ids[1]);
    let seen = events_through(&mut resumed, &after);
    assert_contiguous("resumed after the restart", &seen, &run, 3, 6, &published);
}

/// Redis stopped, then started again: meanwhile a publish on either node
/// gets 503 with `Retry-After` (never an id), and streams stay open with
/// heartbeats; once Redis is back, publishing works on both nodes and
/// every subscriber gets what was published before and after, once each.
#[test]
fn redis_away_means_503_and_heartbeats_then_recovery_loses_nothing() {
    let mut redis = Redis::start(Persistence::Aof);
    let a = node(&redis, &["--heartbeat", "200ms"]);
    let b = node(&redis, &["--heartbeat", "200ms"]);
    let mut subs = vec![
        ("on a", a.subscribe_ready("")),
        ("on b", b.subscribe_ready("")),
    ];
    let mut published = HashMap::new();
    for n in 0..3 {
        let id = a
            .publisher()
            .publish_ok("", format!("before {n}").as_bytes());
        published.insert(id, format!("before {n}"));
    }
    let run = id_run(published.keys().next().unwrap()).to_string();
    let mut seen: Vec<Vec<(String, String)>> = subs
        .iter_mut()
        .map(|(_, sub)| events_through(sub, &format!("urn:sseloop:{run}-3")))
        .collect();

    redis.stop(false);
    for server in [&a, &b] {
        let response = server.publisher().publish("", b"while away");
        assert_eq!(
            response.head.status,
            503,
            "publish while Redis is away: {:?} {:?}",
            response.head,
            response.text()
        );
        assert_eq!(response.head.header("retry-after"), Some("1"));
        assert!(
            !response.text().contains(&run),
            "no id: {:?}",
            response.text()
        );
    }
    // Streams stay open: heartbeats keep coming, nothing ends them.
    for (who, sub) in &mut subs {
        let mut beats = 0;
        while beats < 3 {
            match sub.poll(deadline()) {
                Next::Item(Item::Comment(text)) if text == "heartbeat" => beats += 1,
                other => panic!("{who}, while Redis is away: {other:?}"),
            }
        }
    }

    redis.start_again();
    let first = publish_when_back(&b, "", "after 0");
    published.insert(first.clone(), "after 0".into());
    // Each node's connections come back on their own backoff.
    let second = publish_when_back(&a, "", "after 1");
    published.insert(second.clone(), "after 1".into());
    assert_eq!(
        (first.as_str(), second.as_str()),
        (
            &*format!("urn:sseloop:{run}-4"),
            &*format!("urn:sseloop:{run}-5")
        )
    );
    for ((who, sub), seen) in subs.iter_mut().zip(&mut seen) {
        seen.extend(events_through(sub, &second));
        assert_contiguous(who, seen, &run, 1, 5, &published);
    }
}

/// Redis flushed (or restarted without persistence): its epoch is gone, so
/// a new one begins. A live stream gets `reset` (`other-run`) before the
/// new epoch's first event, and the new events under their new ids (more
/// of them than the old epoch had: a node still waiting on the old
/// epoch's position must not take them for old ones); an old id resuming
/// on any node gets `reset` (`other-run`), never a replay of the new
/// epoch's events under it.
#[test]
fn redis_flushed_starts_a_new_epoch_and_old_ids_reset() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut live = b.subscribe_ready("");
    let old: Vec<String> = (0..3)
        .map(|n| a.publisher().publish_ok("", format!("old {n}").as_bytes()))
        .collect();
    events_through(&mut live, &old[2]);
    assert_eq!(redis.command(&["FLUSHALL"]), Reply::Simple("OK".into()));
    // Node a's reader sees it first (at once, on its reconnect), while b's
    // still waits for entries after the old epoch's third.
    let reader = format!("sseloop-{}-reader", a.pid());
    assert_eq!(redis.kill_client(&reader), 1, "{reader}");
    // The next ones to be stored, numbered in the new epoch.
    let new: Vec<String> = (0..6)
        .map(|n| publish_when_back(&a, "", &format!("new {n}")))
        .collect();
    let new_run = id_run(&new[0]).to_string();
    assert_ne!(new_run, id_run(&old[0]), "a new epoch");
    assert_eq!(id_seq(&new[0]), 1, "counted from 1 again");
    let seen = events_through(&mut live, &new[5]);
    assert_eq!(
        seen[0],
        (
            format!("urn:sseloop:{new_run}-0"),
            "reset:other-run".to_string()
        ),
        "the live stream is told first: {seen:?}"
    );
    let data: Vec<&str> = seen[1..].iter().map(|(_, d)| d.as_str()).collect();
    let want: Vec<String> = (0..6).map(|n| format!("new {n}")).collect();
    assert_eq!(data, want);
    let ids: Vec<&str> = seen[1..].iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, new, "under their new ids");
    // Old ids, on both nodes, and one the new epoch has too (seq 2).
    for (server, id) in [(&a, &old[0]), (&b, &old[1]), (&a, &old[2])] {
        let mut resumed = server.resume("", id);
        let event = resumed.next_event();
        assert_eq!(reset_reason(&event), "other-run", "{id}");
        assert_eq!(
            event.id.as_deref(),
            Some(new[5].as_str()),
            "resume from the newest"
        );
        resumed.expect_no_event(Duration::from_millis(300));
    }
}

/// Redis restarted from an older snapshot: it has the epoch but its stream
/// is behind what the nodes read from it, and numbering on from there
/// would give the lost events' ids to other events. The nodes see this and
/// begin a new epoch: the next event's id is of a new epoch, the live
/// stream is reset, and an id from before the snapshot never resumes.
#[test]
fn redis_rolled_back_to_a_snapshot_starts_a_new_epoch() {
    let mut redis = Redis::start(Persistence::Snapshot);
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut live = b.subscribe_ready("");
    let mut ids: Vec<String> = (0..3)
        .map(|n| {
            a.publisher()
                .publish_ok("", format!("saved {n}").as_bytes())
        })
        .collect();
    assert_eq!(redis.command(&["SAVE"]), Reply::Simple("OK".into()));
    ids.extend((0..3).map(|n| a.publisher().publish_ok("", format!("lost {n}").as_bytes())));
    events_through(&mut live, &ids[5]);
    redis.stop(false);
    redis.start_again();
    assert_eq!(
        redis.stream_seqs(STREAM),
        [1, 2, 3],
        "the snapshot's stream"
    );
    let next = publish_when_back(&a, "", "after the rollback");
    assert_ne!(
        id_run(&next),
        id_run(&ids[0]),
        "{next}: the lost ids are not given out again"
    );
    let seen = events_through(&mut live, &next);
    assert_eq!(seen[0].1, "reset:other-run", "{seen:?}");
    assert_eq!(seen.last().unwrap().1, "after the rollback");
    let mut resumed = b.resume("", &ids[4]);
    assert_eq!(reset_reason(&resumed.next_event()), "other-run");
}

/// `--history` caps what each node keeps for replay, on the node that
/// published and on one started later (which reads the last `--history`
/// entries of the stream): an id just inside resumes, one before it gets
/// `reset` (`stale`).
#[test]
fn the_history_cap_resets_an_older_id_stale_on_every_node() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &["--history", "5"]);
    let mut published = HashMap::new();
    let ids: Vec<String> = (0..20)
        .map(|n| {
            let id = a.publisher().publish_ok("", format!("e{n}").as_bytes());
            published.insert(id.clone(), format!("e{n}"));
            id
        })
        .collect();
    let run = id_run(&ids[0]).to_string();
    let b = node(&redis, &["--history", "5"]);
    for server in [&a, &b] {
        // Events 16..=20 are kept: after 15 loses nothing, after 14 would.
        let mut inside = server.resume("", &ids[14]);
        let seen = events_through(&mut inside, &ids[19]);
        assert_contiguous("just inside the history", &seen, &run, 16, 20, &published);
        let mut outside = server.resume("", &ids[13]);
        let event = outside.next_event();
        assert_eq!(reset_reason(&event), "stale");
        assert_eq!(event.id.as_deref(), Some(ids[19].as_str()));
    }
}

/// Entries trimmed from the stream before a node's reader got to them (it
/// could not reach Redis while the other node published more than the
/// stream holds): the node's live subscribers get `reset` (`stale`) in
/// their place, then the events still there, in order.
#[test]
fn events_trimmed_while_a_node_was_away_reach_its_subscribers_as_reset_stale() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    let link = Forwarder::start(redis.addr());
    let b = node_on(&format!("redis://{}", link.addr()), &[]);
    let mut live = b.subscribe_ready("");
    let first = a.publisher().publish_ok("", b"seen");
    let run = id_run(&first).to_string();
    events_through(&mut live, &first);

    link.cut_and_hold();
    // More than the stream keeps (1024, give or take Redis's node size).
    let mut publisher = a.publisher();
    let mut last = String::new();
    for n in 0..1400 {
        last = publisher.publish_ok("", format!("while away {n}").as_bytes());
    }
    let kept = redis.stream_seqs(STREAM);
    let oldest = kept[0];
    assert!(
        oldest > 2,
        "the stream was not trimmed: it starts at {oldest}"
    );
    link.release();

    let seen = events_through(&mut live, &last);
    assert_eq!(
        seen[0],
        (
            format!("urn:sseloop:{run}-{}", oldest - 1),
            "reset:stale".to_string()
        ),
        "told first"
    );
    let seqs: Vec<u64> = seen[1..].iter().map(|(id, _)| id_seq(id)).collect();
    assert_eq!(seqs, (oldest..=id_seq(&last)).collect::<Vec<_>>());
}

/// Threads publish through the cluster too (the `Publisher` goes through
/// loop 0's connection to Redis): `--stdin`'s lines are stored and reach
/// the other node's subscribers, and a line read while Redis is away
/// waits, and is published once Redis is back, with the next id.
#[test]
fn stdin_lines_are_stored_in_redis_and_wait_out_an_outage() {
    let mut redis = Redis::start(Persistence::Aof);
    let url = redis.url();
    let (a, mut stdin) = TestServer::start_piped(&["--redis", &url, "--stdin"]);
    let b = node(&redis, &[]);
    let mut sub = b.subscribe_ready("");
    writeln!(stdin, "line one").unwrap();
    let first = sub.next_event();
    assert_eq!(first.data, "line one");
    let run = id_run(first.id.as_deref().unwrap()).to_string();
    redis.stop(false);
    writeln!(stdin, "line two").unwrap();
    assert!(
        a.await_log(&["stdin: Redis cannot be reached"]).is_some(),
        "the line waits, and the log says why"
    );
    redis.start_again();
    let seen = events_through(&mut sub, &format!("urn:sseloop:{run}-2"));
    assert_eq!(
        seen,
        [(format!("urn:sseloop:{run}-2"), "line two".to_string())]
    );
}

/// A Redis that refuses the node's login: the node does not start, and
/// its one error line says why, without the password; with the right
/// password it starts and publishes.
#[test]
fn a_refused_login_stops_the_node_at_start_and_says_why() {
    let redis = Redis::start(Persistence::None);
    let set = redis.command(&["CONFIG", "SET", "requirepass", "right-secret"]);
    assert_eq!(set, Reply::Simple("OK".into()));
    let wrong = format!("redis://:wrong-secret@{}", redis.addr());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .args(["--listen", "127.0.0.1:0", "--redis", &wrong])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sseloop");
    let status = crate::support::wait_child(&mut child, crate::support::IO_TIMEOUT);
    let Some(status) = status else {
        let _ = child.kill();
        panic!("a node whose login Redis refuses went on");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("WRONGPASS"), "{stderr}");
    assert!(
        !stderr.contains("wrong-secret"),
        "the password in the log: {stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
    let right = node_on(&format!("redis://:right-secret@{}", redis.addr()), &[]);
    right.publisher().publish_ok("", b"let in");
}

/// A node started while Redis is away runs without listening: a request
/// that comes meanwhile waits in the kernel's queue, unanswered, and the
/// node does not say it listens. Once Redis is back the node reaches it,
/// reads the history, listens, answers that request and publishes.
#[test]
fn a_node_started_while_redis_is_away_listens_once_it_is_back() {
    let mut redis = Redis::start(Persistence::Aof);
    let url = redis.url();
    redis.stop(false);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let starting = thread::spawn(move || TestServer::start_on(addr, &["--redis", &url]));
    // The node binds at once; its loops then wait for Redis.
    let end = Instant::now() + RECOVERY;
    let mut early = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => break stream,
            Err(e) => {
                assert!(Instant::now() < end, "the node did not bind {addr}: {e}");
                // A process starting: the retry interval, not an event.
                thread::sleep(Duration::from_millis(20));
            }
        }
    };
    early
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    early
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0; 1];
    let answered = std::io::Read::read(&mut early, &mut byte);
    assert!(
        answered.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "answered before Redis was reached: {answered:?}"
    );
    assert!(!starting.is_finished(), "it said it listens without Redis");
    redis.start_again();
    let server = starting.join().expect("the node started");
    early.set_read_timeout(Some(RECOVERY)).unwrap();
    let mut reader = BufReader::new(early);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200 "), "{status:?}");
    server.publisher().publish_ok("", b"once Redis is back");
}
