//! Every popular client parses the same stream: Chromium, Firefox, npm
//! `eventsource`, npm `@microsoft/fetch-event-source`, PyPI `sseclient-py`
//! and PyPI `httpx-sse` (the drivers are in `tests/clients/`, started by
//! `real::drivers`) are fed the corpus of awkward payloads in
//! `tests/clients/corpus.json` through sseloop's `/publish`, and must hand
//! over exactly the events the WHATWG rules make of sseloop's encoding:
//! type, data, lastEventId. Where a library departs from those rules the
//! corpus and `real::dialect::Dialect` pin what it does instead, so an
//! upgrade that changes it fails here and gets looked at:
//!
//! - each client gets the corpus live, then its connection is cut, the
//!   corpus is published again while it is away, and on its reconnect
//!   (its own, or its driver's with the Last-Event-ID the library handed
//!   over) it gets exactly those events from the history; the stream's
//!   first bytes hand none of them an event of their own;
//! - the library clients get a greeting and heartbeats between two events:
//!   what they hand over for those is what their dialect says, computed
//!   from the bytes that passed (httpx-sse and fetch-event-source hand over
//!   empty events for some);
//! - fetch-event-source treats a clean end of stream (here the
//!   at-capacity answer) as final unless the application throws in
//!   `onclose`, and then reconnects.

use std::time::{Duration, Instant};

use crate::real::collector::{Collector, Report, of_kind};
use crate::real::dialect::{Corpus, Dialect, Seen, dechunk, first_chunk, interpret};
use crate::real::drivers::{Client, Running};
use crate::real::forwarder::{ConnInfo, Forwarder};
use crate::support::TestServer;

/// Any single report once the client runs; the long line and the
/// corpus's replay included.
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);
/// A browser's `open` after its page ran: the stream's head and first
/// bytes are written at once, so `open` must not wait for an event.
const OPEN_AT_ONCE_MS: f64 = 3000.0;

macro_rules! corpus_tests {
    ($module:ident, $client:expr) => {
        mod $module {
            #[test]
            fn hands_over_every_corpus_event_as_whatwg_says_and_resumes() {
                super::corpus_and_resume($client);
            }
        }
    };
    ($module:ident, $client:expr, library) => {
        mod $module {
            #[test]
            fn hands_over_every_corpus_event_as_whatwg_says_and_resumes() {
                super::corpus_and_resume($client);
            }

            #[test]
            fn greeting_and_heartbeats_are_read_as_the_library_does() {
                super::greeting_and_heartbeats($client);
            }
        }
    };
}

corpus_tests!(chromium, crate::real::drivers::Client::Chromium);
corpus_tests!(firefox, crate::real::drivers::Client::Firefox);
corpus_tests!(
    eventsource,
    crate::real::drivers::Client::EventSource,
    library
);
corpus_tests!(
    sseclient_py,
    crate::real::drivers::Client::SseclientPy,
    library
);
corpus_tests!(httpx_sse, crate::real::drivers::Client::HttpxSse, library);

mod fetch_event_source {
    use crate::real::drivers::Client;

    #[test]
    fn hands_over_every_corpus_event_as_whatwg_says_and_resumes() {
        super::corpus_and_resume(Client::FetchEventSource);
    }

    #[test]
    fn greeting_and_heartbeats_are_read_as_the_library_does() {
        super::greeting_and_heartbeats(Client::FetchEventSource);
    }

    #[test]
    fn clean_end_is_final_when_onclose_returns() {
        super::clean_end(false);
    }

    #[test]
    fn clean_end_reconnects_when_onclose_throws() {
        super::clean_end(true);
    }
}

/// The events a client handed over, in its order. Each report is sent
/// only after the one before was answered, so `seq` runs 1, 2, 3, … (a gap
/// is a report lost).
fn messages(reports: &[Report]) -> Vec<Seen> {
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(
            report.num("seq"),
            (i + 1) as f64,
            "reports lost or out of order"
        );
    }
    of_kind(reports, "message")
        .iter()
        .map(|r| Seen {
            event_type: r.get("type").unwrap_or("").to_string(),
            id: r.get("id").unwrap_or("").to_string(),
            data: r.get("data").unwrap_or("").to_string(),
        })
        .collect()
}

/// Waits until the client handed over `want.len()` events, then asserts
/// they are `want`, one by one (named by `names`, for the message).
fn assert_messages(who: &str, collector: &Collector, want: &[Seen], names: &[String]) {
    collector.wait_kind("message", want.len(), REPORT_TIMEOUT);
    let got = messages(&collector.reports());
    for (i, (one, rule)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            one,
            rule,
            "{who}: event {i} ({}) is not what the rules say (it handed over {} events, the \
             rules say {})",
            names[i],
            got.len(),
            want.len()
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{who}: more events than the rules say: {:#?}",
        &got[want.len()..]
    );
}

/// The stream requests a forwarder saw, in order.
fn streams(forwarder: &Forwarder, count: usize) -> Vec<ConnInfo> {
    let conns = forwarder.wait_requests(count, REPORT_TIMEOUT);
    conns
        .into_iter()
        .filter(|c| c.request.starts_with("GET /events"))
        .collect()
}

/// Waits until the forwarder's connection `index` has passed the first
/// chunk of its response on (the stream's first bytes, written with the
/// head); that chunk.
fn stream_start(forwarder: &Forwarder, index: usize) -> String {
    forwarder.wait_response(
        index,
        "the stream's first chunk",
        REPORT_TIMEOUT,
        |response| {
            let head_end = response.find("\r\n\r\n")?;
            // The chunk's size line and its end.
            (response[head_end + 4..].matches("\r\n").count() >= 2).then(|| first_chunk(response))
        },
    )
}

/// Asserts that the first bytes of the forwarder's connection `index`
/// hand a client reading `dialect` no event: a conforming parser makes
/// none of a comment, and sseloop ends its greeting so that the libraries
/// that dispatch on a blank line get none either.
fn assert_quiet_start(who: &str, forwarder: &Forwarder, index: usize, dialect: Dialect) {
    let start = stream_start(forwarder, index);
    let seen = interpret(dialect, &start);
    assert!(
        seen.is_empty(),
        "{who}: the stream's first bytes {start:?} hand it {seen:?}"
    );
}

/// The corpus live, then a cut, the corpus again while the client is
/// away, and its reconnect; then one more event live.
fn corpus_and_resume(client: Client) {
    let corpus = Corpus::load();
    let dialect = client.dialect();
    let collector = Collector::start();
    let origin = collector.origin();
    // The browsers' page is on the collector's origin; no heartbeats, so
    // that what arrives is the corpus alone.
    let server = TestServer::start(&[
        "--allow-origin",
        &origin,
        "--retry",
        "200ms",
        "--heartbeat",
        "0",
    ]);
    let forwarder = Forwarder::start(server.addr());
    let url = format!("http://{}/events?topic=corpus", forwarder.addr());
    let mut running = client.start(&url, &collector, &corpus.types(), &[]);
    let who = running.label.clone();
    let open = collector.wait_kind_while_running(running.group(), "open", 1, client.open_timeout());
    running.assert_installed(&collector);
    if matches!(client, Client::Chromium | Client::Firefox) {
        // `loaded` is reported just before the EventSource is made.
        let loaded = collector.wait_kind("loaded", 1, Duration::ZERO);
        let ms = open[0].num("at") - loaded[0].num("at");
        eprintln!("{who}: open {ms:.0} ms after the EventSource was made, before any event");
        assert!(
            ms < OPEN_AT_ONCE_MS,
            "{who}: open took {ms:.0} ms: it waited for something other than the stream's start"
        );
    }
    let names: Vec<String> = corpus.items.iter().map(|i| i.name.clone()).collect();
    let mut publisher = server.publisher();

    // Live.
    let live = corpus.publish_all(&mut publisher, "corpus");
    let mut want = corpus.expected(dialect, &live);
    let mut want_names = names.clone();
    assert_messages(&who, &collector, &want, &want_names);
    assert_quiet_start(&who, &forwarder, 0, dialect);

    // Away: everything is published again while the client has no
    // connection; its reconnect is held until then.
    assert_eq!(forwarder.cut_and_hold(), 1, "{who}: one stream to cut");
    let missed = corpus.publish_all(&mut publisher, "corpus");
    let replayed_before = server.metric("sseloop_replayed_events_total");
    forwarder.release();
    collector.wait_kind("open", 2, REPORT_TIMEOUT);
    want.extend(corpus.expected(dialect, &missed));
    want_names.extend(names.iter().map(|n| format!("{n} (replayed)")));
    assert_messages(&who, &collector, &want, &want_names);
    assert_quiet_start(&who, &forwarder, 1, dialect);
    let replayed = server.metric("sseloop_replayed_events_total") - replayed_before;
    assert_eq!(
        replayed as usize,
        missed.len(),
        "{who}: the reconnect was replayed exactly what it missed"
    );

    // It reconnected once, with the last id it had been handed, after the
    // cut showed as an error (not as a clean end).
    let streams = streams(&forwarder, 2);
    assert_eq!(streams.len(), 2, "{who}: one reconnect: {streams:?}");
    assert_eq!(streams[0].header("last-event-id"), None);
    assert_eq!(
        streams[1].header("last-event-id"),
        Some(live[live.len() - 1].as_str()),
        "{who}: the reconnect names the last event seen: {:?}",
        streams[1].request
    );
    let reports = collector.reports();
    assert_eq!(of_kind(&reports, "open").len(), 2, "{who}: two opens");
    let errors = of_kind(&reports, "error");
    assert!(
        !errors.is_empty(),
        "{who}: the cut was not seen as an error"
    );
    assert!(
        of_kind(&reports, "end").is_empty() && of_kind(&reports, "closed").is_empty(),
        "{who}: the cut was taken for a clean end: {reports:?}"
    );

    // Live again, and nothing more came in between.
    let last = corpus.items[0].clone();
    let id = publisher.publish_ok(&last.query("corpus"), last.body.as_bytes());
    want.push(last.expected(dialect, &id));
    want_names.push(format!("{} (live after the resume)", last.name));
    assert_messages(&who, &collector, &want, &want_names);
    eprintln!(
        "{who}: {} corpus events live, {} replayed after the cut, 1 live after; errors on the \
         cut: {:?}",
        live.len(),
        missed.len(),
        errors
            .iter()
            .map(|e| e.get("message").unwrap_or(""))
            .collect::<Vec<_>>()
    );
}

/// Heartbeat interval of the greeting-and-heartbeats test, and how many
/// must pass between its two events.
const HEARTBEAT: &str = "150ms";
const HEARTBEATS: usize = 3;

/// An event, heartbeats, an event: what the library handed over up to the
/// second is what its dialect makes of the very bytes that passed (the
/// greeting, with `retry:`, and every heartbeat).
fn greeting_and_heartbeats(client: Client) {
    let dialect = client.dialect();
    let collector = Collector::start();
    let server = TestServer::start(&["--retry", "200ms", "--heartbeat", HEARTBEAT]);
    let forwarder = Forwarder::start(server.addr());
    let url = format!("http://{}/events?topic=beats", forwarder.addr());
    let mut running: Running = client.start(&url, &collector, "", &[]);
    let who = running.label.clone();
    collector.wait_kind_while_running(running.group(), "open", 1, client.open_timeout());
    running.assert_installed(&collector);
    let mut publisher = server.publisher();
    let first = publisher.publish_ok("?topic=beats", b"before the heartbeats");
    wait_for_id(&collector, &first);
    let since = Instant::now();
    forwarder.wait_heartbeats(0, since, HEARTBEATS, REPORT_TIMEOUT);
    let second = publisher.publish_ok("?topic=beats", b"after the heartbeats");
    let got = wait_for_id(&collector, &second);

    let response = &forwarder.conns()[0].response;
    let body = dechunk(response);
    let marker = format!("id: {second}\n");
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("{who}: the second event is not in the record: {body:?}"));
    let end = at + body[at..].find("\n\n").expect("the second event's end") + 2;
    let wire = &body[..end];
    let want = interpret(dialect, wire);
    let beats = wire.matches(": heartbeat\n\n").count();
    assert!(beats >= HEARTBEATS, "{who}: {beats} heartbeats in {wire:?}");
    assert_eq!(
        got, want,
        "{who}: what it handed over for this stream is not what its dialect ({dialect:?}) says; \
         the stream was {wire:?}"
    );
    eprintln!(
        "{who}: greeting {:?} and {beats} heartbeats around 2 events: {} events handed over ({} empty)",
        first_chunk(response),
        got.len(),
        got.len() - 2
    );
}

/// Waits for the event with `id`; every event handed over up to it.
fn wait_for_id(collector: &Collector, id: &str) -> Vec<Seen> {
    let end = Instant::now() + REPORT_TIMEOUT;
    let mut count = 1;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        collector.wait_kind("message", count, left);
        let seen = messages(&collector.reports());
        if let Some(at) = seen.iter().position(|s| s.id == id) {
            return seen[..=at].to_vec();
        }
        count = seen.len() + 1;
    }
}

/// fetch-event-source at a server at capacity: the answer is a 200 stream
/// with `retry:` and a comment that ends at once (an EventSource comes
/// back after it). With `onclose` returning, the library takes that clean
/// end as final: its promise settles and it never asks again. With
/// `onclose` throwing, the throw goes to `onerror` and the library retries
/// after the stream's `retry:`, until capacity is back, and then gets what
/// was published meanwhile.
fn clean_end(throw: bool) {
    let client = Client::FetchEventSource;
    let collector = Collector::start();
    // Two connections: the publisher's and a blocker's; the client's is
    // one too many.
    let server = TestServer::start(&[
        "--max-connections",
        "2",
        "--retry",
        "200ms",
        "--heartbeat",
        "0",
    ]);
    let mut publisher = server.publisher();
    let before = publisher.publish_ok("?topic=cap", b"before the client");
    let blocker = server.subscribe_ready("?topic=other");
    let forwarder = Forwarder::start(server.addr());
    // Whenever it gets a stream, it is replayed what came after `before`.
    let url = format!(
        "http://{}/events?topic=cap&lastEventId={before}",
        forwarder.addr()
    );
    let mode = if throw { "throw" } else { "return" };
    let mut running = client.start(&url, &collector, "", &[mode]);
    let who = format!("{} (onclose: {mode})", running.label);
    collector.wait_kind_while_running(running.group(), "closed", 1, client.open_timeout());
    let refused = first_chunk(&forwarder.conns()[0].response);
    assert!(
        refused.contains(": server at capacity"),
        "{who}: not the at-capacity answer: {refused:?}"
    );
    // What it makes of the refusal: one empty message (its blank line).
    let want = interpret(Dialect::FetchEventSource, &refused);
    assert_eq!(
        want,
        [Seen {
            event_type: "message".into(),
            id: String::new(),
            data: String::new()
        }]
    );

    if !throw {
        let done = collector.wait_kind("done", 1, REPORT_TIMEOUT);
        assert_eq!(done[0].get("error"), None, "{who}: {done:?}");
        let reports = collector.reports();
        let kinds: Vec<&str> = reports.iter().filter_map(|r| r.get("kind")).collect();
        assert_eq!(
            kinds,
            ["loaded", "open", "message", "closed", "done"],
            "{who}: settled after the first clean end, with no error and no retry"
        );
        assert_eq!(messages(&reports), want, "{who}");
        assert_eq!(forwarder.conns().len(), 1, "{who}: one connection only");
        eprintln!("{who}: the at-capacity answer ended it for good");
        return;
    }

    // It retries (refused again while the blocker stays), then gets in.
    collector.wait_kind("error", 1, REPORT_TIMEOUT);
    let after = publisher.publish_ok("?topic=cap", b"published while it was refused");
    drop(blocker);
    let got = wait_for_id(&collector, &after);
    assert_eq!(
        got.last().map(|s| s.data.as_str()),
        Some("published while it was refused"),
        "{who}"
    );
    let reports = collector.reports();
    assert!(
        of_kind(&reports, "done").is_empty(),
        "{who}: it stopped: {reports:?}"
    );
    let closes = of_kind(&reports, "closed").len();
    let opens = of_kind(&reports, "open").len();
    assert!(
        opens == closes + 1 && closes >= 1,
        "{who}: every refused stream was closed and retried, and the last open is the stream: \
         {opens} opens, {closes} closes"
    );
    // Each refusal was handed over as one empty message before the event
    // (and the stream that served it began quietly).
    let empties = got.iter().filter(|s| **s == want[0]).count();
    assert_eq!(empties, closes, "{who}: {got:?}");
    let last = forwarder.conns().len() - 1;
    assert_quiet_start(&who, &forwarder, last, Dialect::FetchEventSource);
    eprintln!("{who}: refused {closes} times, then reconnected and got the event");
}
