//! The cluster's defects of issue 21, one test each: real nodes on a real
//! Redis, as `cluster.rs` runs them.
//!
//! - An entry a node cannot read (a 200 KiB event another node with a
//!   larger `--max-event-size` stored; 200 extra fields; no `epoch`;
//!   another epoch's; a time-based id from another tool) must stop no
//!   node: every later acknowledged event reaches every node, publishes
//!   are not refused, a node started later listens, no node spins or
//!   floods its log, and what a node skipped is counted in `/metrics`.
//! - A connection Redis closed while idle (`timeout 1`) is reopened for
//!   the next publish, not answered 503.
//! - SIGTERM while publishes wait on a hung Redis answers each of them
//!   (503 with `Retry-After`, or its id) before the node exits.
//! - The reconnect backoff backs off while Redis keeps dropping the
//!   node's connections right after they log in.
//! - A publish with an `Idempotency-Key` that Redis stored but whose
//!   answer was lost with the connection is retried (on the other node)
//!   and gets the first one's id, with no second event.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{RECOVERY, STREAM, events_through, node, node_on, publish_when_back};
use crate::real::forwarder::Forwarder;
use crate::real::redis::{Client, Persistence, Redis, Reply, info_field};
use crate::support::{
    HttpConn, Item, Next, Subscriber, TestServer, deadline, id_run, id_seq, padded, proc_stat,
    publish_request, reset_reason,
};

/// The counter of entries a node skipped, whatever the reason (the fix
/// names it so; `/metrics` must have it).
const SKIPPED_METRIC: &str = "sseloop_cluster_entries_skipped_total";
/// Window over which a node's CPU time and log lines are counted.
const WINDOW: Duration = Duration::from_secs(3);
/// CPU an idle node may use over the window: a node that spins on an
/// entry used 20-30 % of a core; an idle one close to nothing.
const MAX_IDLE_CPU: f64 = 0.10;
/// Log lines a node may write about one bad entry and its aftermath.
const MAX_LOG_LINES: usize = 20;

/// An entry a node cannot take as one of its events.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// A 200 KiB event, published on a node with `--max-event-size 1MiB`
    /// (the other has the default 64 KiB).
    Large,
    /// An entry of the hub's epoch with 200 fields besides its data.
    ManyFields,
    /// An entry with no `epoch` field.
    NoEpoch,
    /// An entry of another epoch.
    OtherEpoch,
    /// An entry added with `XADD … *`: a time-based id, not `0-<seq>`.
    TimeId,
}

#[test]
fn a_large_event_stored_by_another_node_stalls_no_node() {
    a_bad_entry_stalls_no_node(Bad::Large);
}

#[test]
fn an_entry_with_200_extra_fields_stalls_no_node() {
    a_bad_entry_stalls_no_node(Bad::ManyFields);
}

#[test]
fn an_entry_without_an_epoch_stalls_no_node() {
    a_bad_entry_stalls_no_node(Bad::NoEpoch);
}

#[test]
fn an_entry_of_another_epoch_stalls_no_node() {
    a_bad_entry_stalls_no_node(Bad::OtherEpoch);
}

#[test]
fn an_entry_with_a_time_based_id_stalls_no_node() {
    a_bad_entry_stalls_no_node(Bad::TimeId);
}

/// Two nodes (one with a larger `--max-event-size`), a subscriber on
/// each; `bad` goes into the stream; then publishes on both nodes, all
/// answered 200, all delivered on both nodes and on a node started after
/// the bad entry; the bad entry is either delivered (a large event that
/// was acknowledged must be) or counted as skipped; no node spins or
/// floods its log.
fn a_bad_entry_stalls_no_node(bad: Bad) {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &["--max-event-size", "1MiB"]);
    let b = node(&redis, &[]);
    let mut subs = vec![
        ("on a", a.subscribe_ready("")),
        ("on b", b.subscribe_ready("")),
    ];
    let first = a.publisher().publish_ok("", b"before");
    let run = id_run(&first).to_string();
    for (_, sub) in &mut subs {
        events_through(sub, &first);
    }
    let logs_before = [a.log().lines().count(), b.log().lines().count()];

    let (bad_data, acknowledged) = add_bad_entry(&redis, &a, &run, bad);
    let mut published: HashMap<String, String> = HashMap::new();
    if let Some(id) = &acknowledged {
        published.insert(id.clone(), bad_data.clone());
    }
    for n in 0..10 {
        for (name, server) in [("a", &a), ("b", &b)] {
            let body = format!("{name}{n}");
            let response = server.publisher().publish("", body.as_bytes());
            assert_eq!(
                response.head.status,
                200,
                "{bad:?}: publish {n} on {name} after the bad entry: {:?} {:?}",
                response.head,
                response.text()
            );
            published.insert(response.text(), body);
        }
    }
    // Stored, unless a node refused it (413: the nodes' limits agree).
    let stored = !(matches!(bad, Bad::Large) && acknowledged.is_none());
    for ((who, sub), server) in subs.iter_mut().zip([&a, &b]) {
        let seen = events_until_all(sub, &published, RECOVERY)
            .unwrap_or_else(|why| panic!("{bad:?}, subscriber {who}: {why}"));
        let delivered = check_delivery(&format!("{bad:?}, {who}"), &seen, &published, &bad_data);
        // What a node does not deliver, it counts; an entry of another
        // program's numbering is removed from the stream by one node's
        // script, perhaps before the other's reader saw it, and counted by
        // the node that removed it: once in the cluster.
        if stored && !delivered {
            let skipped = match bad {
                Bad::TimeId => a.metric(SKIPPED_METRIC) + b.metric(SKIPPED_METRIC),
                _ => server.metric(SKIPPED_METRIC),
            };
            assert!(
                skipped >= 1,
                "{bad:?}: the node {who} skipped the entry, and {SKIPPED_METRIC} is {skipped}"
            );
        }
    }
    // A node started after the bad entry reads the history past it.
    let c = node(&redis, &[]);
    let mut resumed = c.resume("", &first);
    let seen = events_until_all(&mut resumed, &published, RECOVERY)
        .unwrap_or_else(|why| panic!("{bad:?}, resumed on a node started later: {why}"));
    check_delivery(
        &format!("{bad:?}, resumed on a later node"),
        &seen,
        &published,
        &bad_data,
    );

    // Nothing spins or floods.
    let servers = [("a", &a), ("b", &b), ("c", &c)];
    let cpu_before: Vec<f64> = servers.iter().map(|(_, s)| cpu_seconds(s)).collect();
    let start = Instant::now();
    // A measurement window: the CPU used over it is the figure checked.
    thread::sleep(WINDOW);
    let elapsed = start.elapsed().as_secs_f64();
    for ((name, server), before) in servers.iter().zip(cpu_before) {
        let used = cpu_seconds(server) - before;
        assert!(
            used <= MAX_IDLE_CPU * elapsed,
            "{bad:?}: idle node {name} used {used:.2} s of CPU in {elapsed:.1} s"
        );
    }
    for ((name, server), before) in [("a", &a), ("b", &b)].iter().zip(logs_before) {
        let lines = server.log().lines().count() - before;
        assert!(
            lines <= MAX_LOG_LINES,
            "{bad:?}: node {name} logged {lines} lines since the bad entry:\n{}",
            server.log()
        );
    }
}

/// Puts `bad` into the stream: the data it carries, and its id when a
/// node acknowledged it (only a large event is published through a node;
/// one refused with 413 has none: the nodes' limits agree).
fn add_bad_entry(redis: &Redis, a: &TestServer, run: &str, bad: Bad) -> (String, Option<String>) {
    let data = format!("bad entry: {bad:?}");
    let other_run = if run == "000000000000" {
        "ffffffffffff"
    } else {
        "000000000000"
    };
    let mut args: Vec<String> = ["XADD", STREAM, "0-*"].map(String::from).to_vec();
    match bad {
        Bad::Large => {
            let body = padded(0, 200 << 10);
            let response = a.publisher().publish("", body.as_bytes());
            return match response.head.status {
                200 => (body, Some(response.text())),
                413 => (body, None),
                other => panic!("a 200 KiB publish answered {other}"),
            };
        }
        Bad::ManyFields => {
            args.extend(["epoch", run, "data", &data].map(String::from));
            for n in 0..200 {
                args.push(format!("field{n}"));
                args.push(format!("value{n}"));
            }
        }
        Bad::NoEpoch => args.extend(["data", &data].map(String::from)),
        Bad::OtherEpoch => args.extend(["epoch", other_run, "data", &data].map(String::from)),
        Bad::TimeId => {
            args[2] = "*".into();
            args.extend(["epoch", run, "data", &data].map(String::from));
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match redis.command(&args) {
        Reply::Bulk(Some(_)) => {}
        other => panic!("XADD of the bad entry answered {other:?}"),
    }
    (data, None)
}

/// Reads events until every id of `published` has come; `Err` with what
/// came when the stream ends or `within` passes first. Returns (id, type,
/// data) of each event, `reset`s included.
fn events_until_all(
    sub: &mut Subscriber,
    published: &HashMap<String, String>,
    within: Duration,
) -> Result<Vec<(String, String, String)>, String> {
    let end = Instant::now() + within;
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let mut missing: HashSet<&String> = published.keys().collect();
    while !missing.is_empty() {
        match sub.poll(end) {
            Next::Item(Item::Event(event)) => {
                let id = event.id.clone().unwrap_or_default();
                missing.remove(&id);
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
                let mut missing: Vec<u64> = missing.iter().map(|id| id_seq(id)).collect();
                missing.sort_unstable();
                return Err(format!(
                    "{} of {} acknowledged events not delivered within {within:?} ({end:?}): \
                     missing seq {missing:?}; got {seen:?}",
                    missing.len(),
                    published.len()
                ));
            }
        }
    }
    Ok(seen)
}

/// Every acknowledged event once, in the stream's order, with its data;
/// besides them only `reset`s and, at most once, the bad entry. Whether
/// the bad entry came (as an event no publish was answered with).
fn check_delivery(
    who: &str,
    seen: &[(String, String, String)],
    published: &HashMap<String, String>,
    bad_data: &str,
) -> bool {
    let events: Vec<&(String, String, String)> =
        seen.iter().filter(|(_, kind, _)| kind != "reset").collect();
    let mut last = 0;
    let mut extra = 0;
    for (id, _, data) in &events {
        let seq = id_seq(id);
        assert!(seq > last, "{who}: {id} after seq {last}: {seen:?}");
        last = seq;
        match published.get(id) {
            Some(sent) => assert_eq!(data, sent, "{who}: the data of {id}"),
            None => {
                assert_eq!(data, bad_data, "{who}: {id} was never published");
                extra += 1;
            }
        }
    }
    assert!(extra <= 1, "{who}: the bad entry came {extra} times");
    extra == 1 || published.values().any(|data| data == bad_data)
}

/// The node's CPU time so far (user and system), in seconds.
fn cpu_seconds(server: &TestServer) -> f64 {
    let fields = proc_stat(server.pid()).expect("the node runs");
    // From the state on: utime and stime are the 12th and 13th.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

/// Redis closes a connection idle for a second (`timeout 1`, as managed
/// Redis services set it): each time it has closed the node's publishing
/// connection, the next publish is answered with its id, never 503.
#[test]
fn a_connection_redis_closed_while_idle_is_reopened_without_a_503() {
    let redis = Redis::start_with(Persistence::None, &["timeout 1"]);
    let a = node(&redis, &[]);
    let name = format!("sseloop-{}-loop0", a.pid());
    let mut admin = redis.client();
    let mut publisher = a.publisher();
    for round in 0..5 {
        publisher.publish_ok("", format!("round {round}").as_bytes());
        let id = client_id(&mut admin, &name).expect("the node's publishing connection");
        let end = deadline();
        while client_id(&mut admin, &name) == Some(id.clone()) {
            assert!(Instant::now() < end, "Redis did not close {name} when idle");
            // CLIENT LIST has nothing to block on; ask again soon, so that
            // the publish below follows the close closely.
            thread::sleep(Duration::from_millis(5));
        }
        let response = publisher.publish("", format!("after close {round}").as_bytes());
        assert_eq!(
            response.head.status,
            200,
            "round {round}: the publish right after Redis closed the idle connection: {:?} {:?}",
            response.head,
            response.text()
        );
    }
}

/// Another program numbered the stream up to 2^53, past which readers
/// skip entries (their numbers are exact only that far): the next publish
/// is refused (503), never acknowledged for an event no node delivers.
#[test]
fn a_stream_numbered_to_the_end_refuses_publishes_rather_than_lose_them() {
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    let first = a.publisher().publish_ok("", b"before");
    let run = id_run(&first).to_string();
    let last = format!("0-{}", 1u64 << 53);
    match redis.command(&[
        "XADD",
        STREAM,
        &last,
        "epoch",
        &run,
        "data",
        "from elsewhere",
    ]) {
        Reply::Bulk(Some(_)) => {}
        other => panic!("XADD {last} answered {other:?}"),
    }
    let response = a.publisher().publish("", b"after");
    assert_eq!(
        response.head.status,
        503,
        "a publish after the stream was numbered up to 2^53: {:?} {:?}",
        response.head,
        response.text()
    );
}

/// The `id` of the client named `name` in `CLIENT LIST`.
fn client_id(admin: &mut Client, name: &str) -> Option<String> {
    let Reply::Bulk(Some(list)) = admin.command(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST is not a string");
    };
    list.lines()
        .filter(|line| line.split(' ').any(|f| f == format!("name={name}")))
        .find_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
}

/// Redis hangs (SIGSTOP) while five publishes wait for it; SIGTERM to the
/// node: each publish gets an answer, 503 with `Retry-After` or its id,
/// before the node exits; an id answered is in the stream once Redis is
/// back.
#[test]
fn sigterm_answers_every_publish_waiting_on_a_hung_redis() {
    let redis = Redis::start(Persistence::None);
    let mut a = node(&redis, &[]);
    a.publisher().publish_ok("", b"warm up");
    redis.signal(libc::SIGSTOP);
    let mut waiting: Vec<HttpConn> = (0..5)
        .map(|n| {
            let mut conn = a.http();
            conn.send(&publish_request("", format!("waiting {n}").as_bytes()));
            conn
        })
        .collect();
    // Accepted (and their requests read, which came in one packet each):
    // five plus the one asking.
    a.await_metric("sseloop_connections", |n| n >= 6);
    a.signal(libc::SIGTERM);
    let mut ids = Vec::new();
    for (n, conn) in waiting.iter_mut().enumerate() {
        match conn.try_read_response(Instant::now() + Duration::from_secs(10)) {
            Ok(response) if response.head.status == 200 => ids.push(response.text()),
            Ok(response) => {
                assert_eq!(
                    response.head.status, 503,
                    "publish {n}: {:?}",
                    response.head
                );
                assert!(
                    response.head.header("retry-after").is_some(),
                    "publish {n}: 503 without Retry-After: {:?}",
                    response.head
                );
            }
            Err(stop) => panic!(
                "publish {n}: the connection ended with no answer ({stop:?}); node log:\n{}",
                a.log()
            ),
        }
    }
    assert!(
        a.wait_exit(Duration::from_secs(10)).is_some(),
        "the node did not exit"
    );
    redis.signal(libc::SIGCONT);
    let stream = redis.stream_seqs(STREAM);
    for id in ids {
        assert!(stream.contains(&id_seq(&id)), "{id} answered, not stored");
    }
}

/// Redis drops the node's connections right after each login (`CLIENT
/// KILL TYPE normal` every 20 ms for 4 s, as a Sentinel does to a demoted
/// primary's clients): the node's reconnects back off (counted by Redis's
/// `total_connections_received`), its log stays short, and it publishes
/// again once the kills stop.
#[test]
fn the_reconnect_backoff_backs_off_when_redis_keeps_dropping_the_node() {
    const KILLS_FOR: Duration = Duration::from_secs(4);
    // Two connections (publishing, reading), each doubling its wait from
    // 50 ms to 1 s: 7 attempts each in 4 s; without a backoff, hundreds.
    const MAX_CONNECTIONS: u64 = 24;
    let redis = Redis::start(Persistence::None);
    let a = node(&redis, &[]);
    a.publisher().publish_ok("", b"before");
    let mut killer = redis.client();
    let received = |killer: &mut Client| -> u64 {
        let Reply::Bulk(Some(info)) = killer.command(&["INFO", "stats"]) else {
            panic!("INFO stats is not a string");
        };
        info_field(&info, "total_connections_received")
            .and_then(|n| n.parse().ok())
            .expect("total_connections_received")
    };
    let logs_before = a.log().lines().count();
    let before = received(&mut killer);
    let start = Instant::now();
    while start.elapsed() < KILLS_FOR {
        let reply = killer.command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        assert!(matches!(reply, Reply::Integer(_)), "CLIENT KILL: {reply:?}");
        // The pace of the kills is the scenario, not a wait for an event.
        thread::sleep(Duration::from_millis(20));
    }
    let connections = received(&mut killer) - before;
    let lines = a.log().lines().count() - logs_before;
    assert!(
        connections <= MAX_CONNECTIONS,
        "{connections} connections in {KILLS_FOR:?} while Redis dropped them: no backoff"
    );
    assert!(
        lines <= MAX_LOG_LINES,
        "{lines} log lines in {KILLS_FOR:?}:\n{}",
        a.log()
    );
    publish_when_back(&a, "", "after");
}

/// A publish with `Idempotency-Key` reaches Redis, which is frozen
/// (SIGSTOP); the node's connection to Redis breaks before the answer
/// (a forwarder between them is cut), and Redis, thawed, stores the event
/// it had in its socket. The publisher retries on the other node with the
/// same key: it gets the stored event's id (the first answer's, if that
/// was one), and there is one event, in the stream and on both nodes.
#[test]
fn a_publish_retried_with_its_idempotency_key_after_a_broken_connection_is_stored_once() {
    let redis = Redis::start(Persistence::None);
    let link = Forwarder::start(redis.addr());
    let a = node_on(&format!("redis://{}", link.addr()), &[]);
    let b = node(&redis, &[]);
    let mut subs = vec![
        ("on a", a.subscribe_ready("")),
        ("on b", b.subscribe_ready("")),
    ];
    a.publisher().publish_ok("", b"before");
    const KEY: &str = "order-42";
    const BODY: &str = "exactly once";

    redis.signal(libc::SIGSTOP);
    let first = {
        let mut conn = a.http();
        thread::spawn(move || {
            conn.send(&idempotent_publish(KEY, BODY));
            conn.try_read_response(Instant::now() + Duration::from_secs(20))
                .map(|r| (r.head.status, r.text()))
        })
    };
    // In Redis's socket; then the path breaks before the answer.
    link.wait_sent(BODY, Duration::from_secs(5));
    link.cut_and_hold();
    let first = first.join().expect("first publish");
    redis.signal(libc::SIGCONT);
    link.release();

    let mut retry = b.http();
    retry.send(&idempotent_publish(KEY, BODY));
    let response = retry.read_response(deadline());
    assert_eq!(
        response.head.status,
        200,
        "the retry (the first got {first:?}): {:?} {:?}",
        response.head,
        response.text()
    );
    let id = response.text();
    if let Ok((200, first_id)) = &first {
        assert_eq!(&id, first_id, "the retry gets the first one's id");
    }
    let stored: Vec<u64> = stream_entries(&redis)
        .into_iter()
        .filter(|entry| entry.data == BODY)
        .map(|entry| entry.seq)
        .collect();
    assert_eq!(
        stored,
        [id_seq(&id)],
        "one event stored for one Idempotency-Key (the first answer: {first:?}, the retry: {id})"
    );
    let last = publish_when_back(&a, "", "after");
    for (who, sub) in &mut subs {
        let seen = events_through(sub, &last);
        let copies: Vec<&String> = seen
            .iter()
            .filter(|(_, data)| data == BODY)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(copies, [&id], "{who}: the event once, under its id");
    }
}

/// A publish request with an `Idempotency-Key` header.
pub(crate) fn idempotent_publish(key: &str, body: &str) -> Vec<u8> {
    let mut request = Vec::new();
    write!(
        request,
        "POST /publish HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: {key}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    request
}

/// One entry of the stream, numbered as the nodes number them; a field
/// the entry lacks is empty.
pub struct Entry {
    pub seq: u64,
    pub epoch: String,
    pub data: String,
}

/// The stream's entries with a node's id ("0-<seq>"), oldest first.
pub fn stream_entries(redis: &Redis) -> Vec<Entry> {
    let Reply::Array(entries) = redis.command(&["XRANGE", STREAM, "-", "+"]) else {
        panic!("XRANGE is not an array");
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Reply::Array(parts) = entry else {
                return None;
            };
            let [Reply::Bulk(Some(id)), Reply::Array(fields)] = &parts[..] else {
                return None;
            };
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find_map(|pair| match pair {
                        [Reply::Bulk(Some(n)), Reply::Bulk(Some(v))] if n == name => {
                            Some(v.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_default()
            };
            Some(Entry {
                seq: id.strip_prefix("0-")?.parse().ok()?,
                epoch: field("epoch"),
                data: field("data"),
            })
        })
        .collect()
}
