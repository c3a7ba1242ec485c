//! What the browser page and the library clients are put through, written
//! once: a varied sequence of events, the checks that every one arrived
//! exactly once, in order, intact and on time, and the drop-and-resume
//! scenario. A client reports to the collector: `open` (with `n`), `error`
//! (with `state`, the readyState), and `message` (`type`, `id`, `data`, and
//! `at`, its `Date.now()` when the event was dispatched), each with `seq`,
//! its own order, which is also the order the reports arrive in.

use std::time::{Duration, Instant};

use super::collector::{Collector, Report, of_kind};
use super::forwarder::Forwarder;
use super::{MAX_DELAY, epoch_ms, first_late, in_rounds, summary};
use crate::support::{Publisher, TestServer};

/// Any single report once the client runs.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Event types the clients listen for besides `message` (and `reset`).
pub const TYPES: &str = "progress,complete";
/// A client has settled after start-up once every event for this long took
/// under `QUIET_MS`; the warm-up gives up waiting for that after
/// `WARM_UP_MAX` and the measurement goes ahead.
const QUIET_FOR: Duration = Duration::from_secs(1);
const QUIET_MS: f64 = 25.0;
const WARM_UP_MAX: Duration = Duration::from_secs(10);

/// One event the test published and expects the client to report.
pub struct Sent {
    id: String,
    /// `None`: untyped, dispatched as `message`.
    event: Option<&'static str>,
    /// What the client must be handed (line breaks as LF).
    expected: String,
    published_ms: f64,
}

/// The n-th event of a varied sequence: (type, body, data the client must
/// see).
fn sample(n: usize) -> (Option<&'static str>, String, String) {
    let same = |event, body: String| (event, body.clone(), body);
    match n % 8 {
        0 => same(None, format!("plain {n}")),
        1 => same(Some("progress"), format!("{n}%")),
        2 => same(None, format!("line one {n}\nline two\n\nline four")),
        3 => same(
            None,
            format!("héllo wörld {n} — 日本語 — 🚀 — ∑ — \u{feff}bom"),
        ),
        4 => (
            Some("complete"),
            format!("done {n}\r\nwith CRLF\rand CR"),
            format!("done {n}\nwith CRLF\nand CR"),
        ),
        5 => same(None, String::new()),
        6 => same(
            Some("progress"),
            format!("  leading spaces {n}: and: colons: kept"),
        ),
        _ => same(None, format!("trailing newline {n}\n")),
    }
}

/// Publishes sample `n` to `topic`, noting when.
pub fn publish(publisher: &mut Publisher, topic: &str, n: usize) -> Sent {
    let (event, body, expected) = sample(n);
    let mut query = format!("?topic={topic}");
    if let Some(event) = event {
        query.push_str(&format!("&event={event}"));
    }
    let published_ms = epoch_ms();
    let id = publisher.publish_ok(&query, body.as_bytes());
    Sent {
        id,
        event,
        expected,
        published_ms,
    }
}

/// The client's message reports, in the order it saw them. The client
/// sends each report only after the one before was answered, so they arrive
/// in its order: `seq` must run 1, 2, 3, … (a gap is a report it failed to
/// send).
fn messages(reports: &[Report]) -> Vec<Report> {
    let seqs: Vec<f64> = reports.iter().map(|r| r.num("seq")).collect();
    if let Some(i) = (1..=seqs.len()).position(|n| seqs[n - 1] != n as f64) {
        panic!(
            "report {} of the client has seq {}, not {}: reports lost or out of order; seqs {seqs:?}",
            i + 1,
            seqs[i],
            i + 1
        );
    }
    of_kind(reports, "message")
}

/// Waits until the client reported `count` messages; all of them, in order.
pub fn wait_messages(collector: &Collector, count: usize) -> Vec<Report> {
    collector.wait_kind("message", count, REPORT_TIMEOUT);
    messages(&collector.reports())
}

/// Asserts the client saw exactly `sent`, in order, with the right type
/// and data; returns each event's delay from publish to dispatch in ms.
pub fn assert_received(who: &str, received: &[Report], sent: &[Sent]) -> Vec<f64> {
    let ids: Vec<&str> = received.iter().map(|r| r.get("id").unwrap_or("")).collect();
    let want: Vec<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids, want,
        "{who}: events not received exactly once each, in order"
    );
    let mut delays = Vec::new();
    for (report, sent) in received.iter().zip(sent) {
        let event = sent.event.unwrap_or("message");
        assert_eq!(
            report.get("type"),
            Some(event),
            "{who}: type of {}",
            sent.id
        );
        assert_eq!(
            report.get("data"),
            Some(sent.expected.as_str()),
            "{who}: data of {}",
            sent.id
        );
        delays.push(report.num("at") - sent.published_ms);
    }
    delays
}

/// Prints the delays (ms); `Err` names the first event later than
/// `MAX_DELAY`.
fn check_delays(who: &str, what: &str, sent: &[Sent], delays: &[f64]) -> Result<(), String> {
    eprintln!(
        "{who} {what}: {} events, publish→message delay {}",
        delays.len(),
        summary(delays)
    );
    match first_late(delays) {
        Some(i) => Err(format!(
            "{what}: event {} took {:.0} ms from publish to the client (limit {MAX_DELAY:?}); all: {delays:.0?}",
            sent[i].id, delays[i]
        )),
        None => Ok(()),
    }
}

pub fn assert_no_errors(who: &str, reports: &[Report]) {
    let errors = of_kind(reports, "error");
    assert!(errors.is_empty(), "{who}: EventSource errors {errors:?}");
}

/// Publishes sample events one at a time, each awaited, until the client
/// has settled after its start-up: a browser that has just opened its page
/// is still busy starting (Firefox stalls its event loop for up to 150 ms
/// now and then in its first two seconds), which would be measured instead
/// of sseloop. Warm-up events are checked for order and content with the
/// rest, but not timed.
pub fn warm_up(
    who: &str,
    publisher: &mut Publisher,
    collector: &Collector,
    topic: &str,
    sent: &mut Vec<Sent>,
) {
    let start = Instant::now();
    let mut quiet_since = Instant::now();
    let mut n = 0;
    loop {
        sent.push(publish(publisher, topic, n));
        n += 1;
        let received = wait_messages(collector, sent.len());
        let delay = received.last().expect("a message").num("at")
            - sent.last().expect("an event").published_ms;
        if delay >= QUIET_MS {
            quiet_since = Instant::now();
        }
        if quiet_since.elapsed() >= QUIET_FOR {
            eprintln!(
                "{who}: settled after {n} warm-up events in {:?}",
                start.elapsed()
            );
            return;
        }
        if start.elapsed() >= WARM_UP_MAX {
            eprintln!(
                "{who}: still not settled after {WARM_UP_MAX:?} of warm-up; measuring anyway"
            );
            return;
        }
    }
}

/// The client's stream is open on `topic`: after a warm-up, events of
/// every kind are published one at a time and then in a burst, and every
/// one must reach the client exactly once, in order, intact, within
/// `MAX_DELAY` of its publish (in one of `real::ROUNDS` rounds). Returns
/// what was sent.
pub fn deliver_sequence(
    who: &str,
    server: &TestServer,
    collector: &Collector,
    topic: &str,
) -> Vec<Sent> {
    let mut publisher = server.publisher();
    let mut sent = Vec::new();
    warm_up(who, &mut publisher, collector, topic, &mut sent);
    in_rounds(who, || {
        // One at a time: each event's delay alone, nothing queued behind it.
        let first = sent.len();
        let mut received = Vec::new();
        for n in 0..24 {
            sent.push(publish(&mut publisher, topic, n));
            received = wait_messages(collector, sent.len());
        }
        let delays = assert_received(who, &received, &sent);
        let single = check_delays(who, "one at a time", &sent[first..], &delays[first..]);

        // A burst: back to back, as a busy job reports progress.
        let before = sent.len();
        for n in 0..40 {
            sent.push(publish(&mut publisher, topic, n));
        }
        let received = wait_messages(collector, sent.len());
        let delays = assert_received(who, &received, &sent);
        let burst = check_delays(who, "burst", &sent[before..], &delays[before..]);
        single.and(burst)
    });
    sent
}

/// The client's stream runs through `forwarder` to `server` (started with a
/// short `--retry`), on `topic`, and has opened once. Events are delivered
/// one by one; then, in the middle of a burst of publishes, the forwarder
/// cuts the connection, so some events are lost in flight, and holds the
/// client's reconnect until the rest of the burst is published: those are
/// published while the client has no connection at all, whenever its retry
/// comes. The client must reconnect by itself, once, saying `Last-Event-ID`
/// of the last event it saw, be replayed exactly what it missed, and end up
/// with every event exactly once, in order. `sent` is what the client
/// already received on this stream.
pub fn resume_after_cut(
    who: &str,
    server: &TestServer,
    collector: &Collector,
    forwarder: &Forwarder,
    topic: &str,
    mut sent: Vec<Sent>,
) {
    let mut publisher = server.publisher();

    // Before the drop: delivered one by one.
    for n in 0..8 {
        sent.push(publish(&mut publisher, topic, n));
        wait_messages(collector, sent.len());
    }
    let cut_after = sent.len() + 6;
    for n in 8..20 {
        sent.push(publish(&mut publisher, topic, n));
        if sent.len() == cut_after {
            assert_eq!(forwarder.cut_and_hold(), 1, "{who}: one stream to cut");
        }
    }
    let burst_end = sent.len();
    forwarder.release();
    let reopen = collector
        .wait_kind("open", 2, REPORT_TIMEOUT)
        .pop()
        .expect("two opens");
    // Everything missed is there before anything new is published, so the
    // replay counter below counts the replay alone.
    let received = wait_messages(collector, burst_end);
    assert_received(who, &received, &sent);
    let replayed = server.metric("sseloop_replayed_events_total") as usize;
    // After the reconnect: live again.
    let mut received = Vec::new();
    for n in 20..28 {
        sent.push(publish(&mut publisher, topic, n));
        received = wait_messages(collector, sent.len());
    }
    assert_received(who, &received, &sent);

    // It reconnected once, by itself, after an error that left it
    // CONNECTING (0), never CLOSED (2).
    let reports = collector.reports();
    let opens = of_kind(&reports, "open");
    assert_eq!(opens.len(), 2, "{who}: one reconnect: {opens:?}");
    let errors = of_kind(&reports, "error");
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.get("state") == Some("0")),
        "{who}: the drop is an error with readyState CONNECTING (0): {errors:?}"
    );

    // The reconnect named the last event seen before it.
    let seen_before: Vec<&Report> = received
        .iter()
        .filter(|r| r.num("seq") < reopen.num("seq"))
        .collect();
    let last_seen = seen_before
        .last()
        .and_then(|r| r.get("id"))
        .expect("events before the drop");
    let conns = forwarder.wait_requests(2, REPORT_TIMEOUT);
    let streams: Vec<_> = conns
        .iter()
        .filter(|c| c.request.starts_with("GET "))
        .collect();
    assert_eq!(streams.len(), 2, "{who}: two stream requests: {conns:?}");
    assert_eq!(streams[0].header("last-event-id"), None);
    assert_eq!(
        streams[1].header("last-event-id"),
        Some(last_seen),
        "{who}: the reconnect names the last event seen: {:?}",
        streams[1].request
    );
    // What the client missed, at least the events published after the cut
    // (the hold kept it from seeing those live), was replayed from the
    // history, and nothing else: all of it was published before the
    // reconnect, which was released only then.
    let missed = burst_end - seen_before.len();
    let after_cut = burst_end - cut_after;
    assert!(
        missed >= after_cut,
        "{who}: saw {} events before the reconnect, but only {cut_after} were published before the cut",
        seen_before.len()
    );
    assert_eq!(
        replayed, missed,
        "{who}: events replayed, against those not seen before the reconnect ({after_cut} of them published after the cut)"
    );
    eprintln!(
        "{who} resume: {} events before the drop, {replayed} replayed after it, then {} live; reconnected with Last-Event-ID {last_seen}",
        seen_before.len(),
        sent.len() - burst_end
    );
}

/// Publishes sample `n` to `topic` on the node at `addr` with an
/// `Idempotency-Key`, trying again (on a new connection) after a 503 or a
/// broken connection until it is acknowledged: what a publisher does
/// through a Redis failover. Panics after `within`.
pub fn publish_until_stored(
    addr: std::net::SocketAddr,
    topic: &str,
    n: usize,
    within: Duration,
) -> Sent {
    use crate::support::{HttpConn, connect};
    let (event, body, expected) = sample(n);
    let mut query = format!("?topic={topic}");
    if let Some(event) = event {
        query.push_str(&format!("&event={event}"));
    }
    let mut request = format!(
        "POST /publish{query} HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: sample-{n}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    let published_ms = epoch_ms();
    let end = Instant::now() + within;
    loop {
        let mut conn = HttpConn::new(connect(addr));
        conn.send(&request);
        if let Ok(response) = conn.try_read_response(end)
            && response.head.status == 200
        {
            return Sent {
                id: response.text(),
                event,
                expected,
                published_ms,
            };
        }
        assert!(
            Instant::now() < end,
            "sample {n} not stored within {within:?}"
        );
        // Retry-After says 1 s; sooner here, to follow the recovery.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the client has reported every event of `sent`; asserts it
/// saw each once, in order, intact, allowing besides them only events
/// that repeat the data of one of `sent` (the first try of a publish
/// whose answer was lost, read by a node before the primary was lost),
/// and the `reset` (`other-run`) that a new epoch begins with: one before
/// the first event of each new epoch, none elsewhere. Returns the extra
/// events.
pub fn assert_received_through_retries(
    who: &str,
    collector: &Collector,
    sent: &[Sent],
) -> Vec<Report> {
    let mut count = sent.len();
    loop {
        collector.wait_kind("message", count, REPORT_TIMEOUT);
        let received = messages(&collector.reports());
        let all_there = sent
            .iter()
            .all(|s| received.iter().any(|r| r.get("id") == Some(s.id.as_str())));
        if all_there {
            let run = |r: &Report| {
                let id = r.get("id").unwrap_or("");
                id.split_once('-').map_or(id, |(run, _)| run).to_string()
            };
            let mut last_run: Option<String> = None;
            let mut after_reset = false;
            for report in &received {
                if report.get("type") == Some("reset") {
                    assert!(
                        report
                            .get("data")
                            .is_some_and(|d| d.contains("\"other-run\"")),
                        "{who}: a reset other than a new epoch's: {report:?}"
                    );
                    assert!(!after_reset, "{who}: two resets in a row: {report:?}");
                    after_reset = true;
                    continue;
                }
                let this = run(report);
                if let Some(last) = &last_run {
                    assert!(
                        *last == this || after_reset,
                        "{who}: {report:?} of a new epoch after {last} with no reset between"
                    );
                    assert!(
                        *last != this || !after_reset,
                        "{who}: a reset inside one epoch, before {report:?}"
                    );
                }
                last_run = Some(this);
                after_reset = false;
            }
            let received: Vec<Report> = received
                .into_iter()
                .filter(|r| r.get("type") != Some("reset"))
                .collect();
            let (acked, extra): (Vec<Report>, Vec<Report>) = received
                .into_iter()
                .partition(|r| sent.iter().any(|s| r.get("id") == Some(s.id.as_str())));
            assert_received(who, &acked, sent);
            for report in &extra {
                assert!(
                    sent.iter()
                        .any(|s| report.get("data") == Some(s.expected.as_str())),
                    "{who}: an event that was never published: {report:?}"
                );
            }
            return extra;
        }
        count += 1;
    }
}
