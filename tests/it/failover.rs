//! A cluster through a Redis failover: a primary, two replicas and three
//! Sentinels (`real::sentinel`); two nodes started with `--redis
//! redis+sentinel://…` and `--redis-replicas 1`, subscribers on both, a publisher on each publishing as fast as it
//! is answered. The primary is killed (SIGKILL) in the middle of that
//! burst, or frozen (SIGSTOP) past the Sentinels' down-after time and
//! thawed (it then answers as a master for about 10 s).
//!
//! Two replicas, as the notes on Sentinel say: with one, the promoted
//! replica has none left and every publish waiting for `WAIT 1` would be
//! refused until one came back.
//!
//! Each publish carries an `Idempotency-Key` (its body), and a publisher
//! retries a 503 or a broken connection with the same key until it gets
//! an id: so every body is acknowledged once, and what is checked is:
//!
//! - every acknowledged event reaches every subscriber of both nodes
//!   once, with its data, in one order (sequence numbers rising within an
//!   epoch; a new epoch only after a `reset`), and so it does for a
//!   subscriber resuming on either node from an id acknowledged before
//!   the failover;
//! - no id names two different events, anywhere;
//! - every acknowledged event is in the new primary's stream;
//! - the time from the kill to the first publish acknowledged on the new
//!   primary is printed, beside the Sentinels' own times.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::cluster_defects::{idempotent_publish, stream_entries};
use crate::real::redis::{Persistence, Redis};
use crate::real::sentinel::{FAILOVER_TIMEOUT, GuardedSentinel, RedisHa, Switch};
use crate::support::{
    HttpConn, Item, Next, Subscriber, TestServer, connect, id_run, id_seq, reset_reason,
};

/// Publishes acknowledged on each node before the primary is touched.
const BEFORE: usize = 40;
/// Publishes acknowledged on each node after the new primary took over.
const AFTER: usize = 40;
/// Longest a subscriber may take to see every acknowledged event.
const DELIVERY: Duration = Duration::from_secs(20);

/// One acknowledged publish.
#[derive(Clone, Debug)]
struct Acked {
    id: String,
    body: String,
    /// When the id came back.
    answered: Instant,
}

/// A node on the Sentinels of `ha`, acknowledging publishes once one
/// replica has them. Its history holds every event the test publishes
/// (the publishers run as fast as they are answered, over a thousand
/// events after the switch), so that an id from before the failover can
/// be resumed from at the end.
fn ha_node(ha: &RedisHa) -> TestServer {
    TestServer::start(&[
        "--redis",
        &ha.url(),
        "--redis-replicas",
        "1",
        "--history",
        "65536",
    ])
}

/// Publishes `<name><n>`, n = 0, 1, 2, …, on the node at `addr` until
/// `stop` is set, each with its body as `Idempotency-Key`, each retried
/// (on a new connection) until it is acknowledged.
fn publisher(
    name: &'static str,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut conn = HttpConn::new(connect(addr));
        for n in 0.. {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let body = format!("{name}{n}");
            let give_up = Instant::now() + FAILOVER_TIMEOUT + Duration::from_secs(30);
            loop {
                conn.send(&idempotent_publish(&body, &body));
                match conn.try_read_response(give_up) {
                    Ok(response) if response.head.status == 200 => {
                        acked.lock().unwrap().push(Acked {
                            id: response.text(),
                            body,
                            answered: Instant::now(),
                        });
                        break;
                    }
                    Ok(response) => assert_eq!(
                        response.head.status,
                        503,
                        "{body}: {:?} {:?}",
                        response.head,
                        response.text()
                    ),
                    Err(stop) => panic!("{body}: no answer ({stop:?})"),
                }
                assert!(Instant::now() < give_up, "{body}: never acknowledged");
                // A 503 closes the connection; Retry-After says 1 s, this
                // publisher tries sooner to measure the recovery.
                thread::sleep(Duration::from_millis(20));
                conn = HttpConn::new(connect(addr));
            }
        }
    })
}

/// Waits until each of `names`' publishers has had `count` more publishes
/// acknowledged than `since`.
fn await_acked(acked: &Mutex<Vec<Acked>>, names: &[&str], since: &[usize], count: usize) {
    let end = Instant::now() + FAILOVER_TIMEOUT + DELIVERY;
    loop {
        let done = names.iter().zip(since).all(|(name, before)| {
            let list = acked.lock().unwrap();
            list.iter().filter(|a| a.body.starts_with(name)).count() >= before + count
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < end,
            "publishing did not get {count} more acknowledged on each node"
        );
        // The publishers' progress has no notification to block on.
        thread::sleep(Duration::from_millis(20));
    }
}

fn count_of(acked: &Mutex<Vec<Acked>>, name: &str) -> usize {
    acked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.body.starts_with(name))
        .count()
}

/// Reads `sub` until every id of `acked` has come; (id, type, data) of
/// each event, `reset`s included.
fn read_all(who: &str, sub: &mut Subscriber, acked: &[Acked]) -> Vec<(String, String, String)> {
    let end = Instant::now() + DELIVERY;
    let mut missing: HashMap<&str, ()> = acked.iter().map(|a| (a.id.as_str(), ())).collect();
    let mut seen = Vec::new();
    while !missing.is_empty() {
        match sub.poll(end) {
            Next::Item(Item::Event(event)) => {
                let id = event.id.clone().unwrap_or_default();
                missing.remove(id.as_str());
                let kind = event.event.clone().unwrap_or_default();
                let data = if kind == "reset" {
                    reset_reason(&event)
                } else {
                    event.data
                };
                seen.push((id, kind, data));
            }
            Next::Item(_) => {}
            Next::End(end) => {
                let mut missing: Vec<&str> = missing.keys().copied().collect();
                missing.sort_by_key(|id| id_seq(id));
                panic!(
                    "{who}: {} acknowledged events not delivered ({end:?}): {missing:?}; the last seen {:?}",
                    missing.len(),
                    seen.last()
                );
            }
        }
    }
    seen
}

/// Every acknowledged event once with its data; ids rising within an
/// epoch, a new epoch only after a `reset`; an unacknowledged event at
/// most once (the first try of a publish whose answer was lost); every
/// id with one data in `names` (all ids seen anywhere).
fn check_stream(
    who: &str,
    seen: &[(String, String, String)],
    acked: &[Acked],
    names: &mut HashMap<String, String>,
) {
    let by_id: HashMap<&str, &str> = acked
        .iter()
        .map(|a| (a.id.as_str(), a.body.as_str()))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut place: Option<(String, u64)> = None;
    let mut after_reset = true;
    for (id, kind, data) in seen {
        if kind == "reset" {
            after_reset = true;
            continue;
        }
        let (run, seq) = (id_run(id).to_string(), id_seq(id));
        if let Some((last_run, last_seq)) = &place {
            if *last_run == run {
                assert!(seq > *last_seq, "{who}: {id} after {last_run}-{last_seq}");
            } else {
                assert!(
                    after_reset,
                    "{who}: {id} of a new epoch after {last_run}-{last_seq} with no reset between"
                );
            }
        }
        place = Some((run, seq));
        after_reset = false;
        *counts.entry(data.as_str()).or_default() += 1;
        if let Some(body) = by_id.get(id.as_str()) {
            assert_eq!(data, body, "{who}: the data of {id}");
        }
        let known = names.entry(id.clone()).or_insert_with(|| data.clone());
        assert_eq!(known, data, "{who}: the id {id} names two events");
    }
    for a in acked {
        let copies = seen.iter().filter(|(id, ..)| *id == a.id).count();
        assert_eq!(
            copies, 1,
            "{who}: {} ({}) came {copies} times",
            a.id, a.body
        );
    }
    for (data, count) in counts {
        assert!(count <= 2, "{who}: {data:?} came {count} times");
    }
}

/// What is done to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    Kill,
    Freeze,
}

#[test]
fn a_primary_killed_mid_burst_loses_no_acknowledged_event_and_reuses_no_id() {
    failover(Loss::Kill);
}

#[test]
fn a_primary_frozen_past_the_down_after_time_and_thawed_loses_nothing() {
    failover(Loss::Freeze);
}

fn failover(loss: Loss) {
    let mut ha = RedisHa::start(Persistence::None, 2);
    let a = ha_node(&ha);
    let b = ha_node(&ha);
    let mut subs = vec![
        ("a 1", a.subscribe_ready("")),
        ("a 2", a.subscribe_ready("")),
        ("b 1", b.subscribe_ready("")),
        ("b 2", b.subscribe_ready("")),
    ];
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let names = ["a", "b"];
    let publishers: Vec<_> = [("a", a.addr()), ("b", b.addr())]
        .into_iter()
        .map(|(name, addr)| publisher(name, addr, Arc::clone(&stop), Arc::clone(&acked)))
        .collect();
    await_acked(&acked, &names, &[0, 0], BEFORE);

    // Mid-burst.
    let watch = ha.watch();
    let lost_at = Instant::now();
    let old = match loss {
        Loss::Kill => ha.kill_primary(),
        Loss::Freeze => ha.freeze_primary(),
    };
    let Switch { to, first, all, .. } = watch.wait(FAILOVER_TIMEOUT);
    let since: Vec<usize> = names.iter().map(|n| count_of(&acked, n)).collect();
    if loss == Loss::Freeze {
        // Thawed, it answers as a master for about 10 s: the nodes must
        // go on with the one the Sentinels name.
        ha.thaw(old);
    }
    await_acked(&acked, &names, &since, AFTER);
    stop.store(true, Ordering::Release);
    for publisher in publishers {
        publisher.join().expect("publisher");
    }
    let acked = acked.lock().unwrap().clone();
    // Every failover begins a new epoch: an id of another run than the
    // last acknowledged before the loss was stored on the new primary.
    let old_run = acked
        .iter()
        .filter(|x| x.answered < lost_at)
        .map(|x| id_run(&x.id))
        .next_back()
        .expect("publishes acknowledged before the loss")
        .to_string();
    let recovered = acked
        .iter()
        .filter(|x| id_run(&x.id) != old_run)
        .map(|x| x.answered)
        .min()
        .expect("publishes acknowledged on the new primary");
    eprintln!(
        "{loss:?} of the primary {old}: Sentinels named {to} after {:?} (all three {:?}); \
         the first publish on the new primary was acknowledged {:?} after it",
        first - lost_at,
        all - lost_at,
        recovered - lost_at
    );

    let mut names_seen = HashMap::new();
    for (who, sub) in &mut subs {
        let seen = read_all(who, sub, &acked);
        check_stream(who, &seen, &acked, &mut names_seen);
    }
    // A subscriber resuming, on either node, from an id acknowledged
    // before the loss.
    let before: Vec<&Acked> = acked.iter().filter(|x| x.answered < lost_at).collect();
    let from = &before[before.len() / 2].id;
    // After it: later in its epoch, or of a later one.
    let later: Vec<Acked> = acked
        .iter()
        .filter(|x| id_run(&x.id) != id_run(from) || id_seq(&x.id) > id_seq(from))
        .cloned()
        .collect();
    for (who, server) in [("resumed on a", &a), ("resumed on b", &b)] {
        let mut resumed = server.resume("", from);
        let seen = read_all(who, &mut resumed, &later);
        check_stream(who, &seen, &later, &mut names_seen);
    }
    // Every acknowledged event is in the new primary's stream.
    let stream: HashMap<u64, (String, String)> = stream_entries(ha.server(to))
        .into_iter()
        .map(|entry| (entry.seq, (entry.epoch, entry.data)))
        .collect();
    for x in &acked {
        let entry = stream.get(&id_seq(&x.id));
        assert_eq!(
            entry.map(|(epoch, data)| (epoch.as_str(), data.as_str())),
            Some((id_run(&x.id), x.body.as_str())),
            "{} ({}) acknowledged, not in the new primary's stream",
            x.id,
            x.body
        );
    }
}

/// `--redis-replicas 1` on a Redis with no replica: the primary stores the
/// publish, but no replica confirms it (`WAIT`) within `--publish-timeout`,
/// so it is answered 503, never with an id a promoted replica might lack;
/// a node that waits for no replica is answered at once.
#[test]
fn a_publish_no_replica_confirmed_is_refused() {
    let redis = Redis::start(Persistence::None);
    let url = redis.url();
    let waiting = TestServer::start(&[
        "--redis",
        &url,
        "--redis-replicas",
        "1",
        "--publish-timeout",
        "300ms",
    ]);
    let started = Instant::now();
    let response = waiting.publisher().publish("", b"unconfirmed");
    assert_eq!(
        response.head.status,
        503,
        "{:?} {:?}",
        response.head,
        response.text()
    );
    assert_eq!(response.head.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "refused after {:?}, before the replicas had their time",
        started.elapsed()
    );
    let plain = TestServer::start(&["--redis", &url]);
    plain
        .publisher()
        .publish_ok("", b"confirmed by the primary alone");
}

/// Authentication to Sentinel and to Redis: a primary that needs one
/// password and a Sentinel that needs another; the node logs in to each
/// with the URL's credentials (`redis+sentinel://:DATA@…?sentinel_password=
/// WATCH`), finds the primary and publishes (a node that did not log in
/// to either would never listen).
#[test]
fn the_node_logs_in_to_the_sentinel_and_to_redis() {
    let primary = Redis::start_with(Persistence::None, &["requirepass data-secret"]);
    let sentinel = GuardedSentinel::start(primary.addr(), "data-secret", "watch-secret");
    let node = TestServer::start(&["--redis", &sentinel.url("data-secret", "watch-secret")]);
    let mut sub = node.subscribe_ready("");
    let id = node.publisher().publish_ok("", b"behind two passwords");
    let event = sub.next_event();
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(id.as_str()), "behind two passwords")
    );
    assert!(
        !node.log().contains("secret"),
        "a password in the log:\n{}",
        node.log()
    );
}
