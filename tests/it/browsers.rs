//! Real browsers: headless Chromium and Firefox run `tests/clients/page.html`,
//! which opens an `EventSource` on sseloop and reports every `open`, `error`
//! and message (with the time the browser dispatched it) to the test's
//! collector. Per browser:
//!
//! - events of every shape (typed and untyped, multi-line, unicode, empty,
//!   CRLF, leading spaces), one at a time and in a burst, arrive in order,
//!   exactly as published, each within 100 ms of its publish (timed once the
//!   browser has settled after start-up; see `real::scenario`);
//! - an idle stream carries heartbeats and never reconnects: the
//!   EventSource's one connection (seen by a forwarder) carries a heartbeat
//!   about every interval, a `fetch()` reader on the page (EventSource hides
//!   comments) receives them as steadily, the EventSource opens once and
//!   never errors, and it then still delivers;
//! - a stream dropped in the middle of a burst of publishes is resumed by
//!   the browser's own reconnect with `Last-Event-ID`, missing nothing.
//!
//! One browser runs at a time (`browser_lock`), so that on a 2-core machine
//! the latencies measured are sseloop's and not another browser's start-up.

use std::time::{Duration, Instant};

use crate::real::browser::{Browser, RunningBrowser};
use crate::real::collector::{Collector, Report, of_kind};
use crate::real::forwarder::Forwarder;
use crate::real::scenario::{
    REPORT_TIMEOUT, TYPES, assert_no_errors, assert_received, deliver_sequence, publish,
    resume_after_cut, wait_messages, warm_up,
};
use crate::real::{browser_lock, ms};
use crate::support::{TestServer, percent_encode};

/// Browser start-up to the first `open`, on a busy 2-core machine.
const OPEN_TIMEOUT: Duration = Duration::from_secs(40);

macro_rules! browser_tests {
    ($module:ident, $browser:expr) => {
        mod $module {
            #[test]
            fn delivers_every_kind_of_event_in_order_within_100ms() {
                super::delivers_events($browser);
            }

            #[test]
            fn idle_stream_carries_heartbeats_and_never_reconnects() {
                super::idle_stream_kept_alive($browser);
            }

            #[test]
            fn dropped_stream_resumes_with_last_event_id_missing_nothing() {
                super::resumes_after_drop($browser);
            }
        }
    };
}

browser_tests!(chromium, crate::real::browser::Browser::Chromium);
browser_tests!(firefox, crate::real::browser::Browser::Firefox);

/// The sseloop, collector and browser of one test. Fields drop in order:
/// the browser is killed first, so it stops reconnecting before the rest goes.
struct Session {
    browser: RunningBrowser,
    forwarder: Option<Forwarder>,
    collector: Collector,
    server: TestServer,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Session {
    /// Starts sseloop with `args` (plus CORS for the collector's origin), an
    /// optional forwarder in front of it, and the browser on the page with
    /// `es` pointing at `/events?topic=…` (through the forwarder if any).
    fn start(
        browser: Browser,
        args: &[&str],
        topic: &str,
        forward: bool,
        heartbeat_topic: Option<&str>,
    ) -> Session {
        // Fails now, not after the server started, when it is not installed.
        let program = browser.program();
        let lock = browser_lock();
        let collector = Collector::start();
        let origin = collector.origin();
        let mut server_args = vec!["--allow-origin", origin.as_str()];
        server_args.extend_from_slice(args);
        let server = TestServer::start(&server_args);
        let forwarder = forward.then(|| Forwarder::start(server.addr()));
        let stream_addr = forwarder
            .as_ref()
            .map_or_else(|| server.addr(), Forwarder::addr);
        let es = format!(
            "http://{stream_addr}/events?topic={}",
            percent_encode(topic)
        );
        let hb = heartbeat_topic.map(|t| {
            format!(
                "http://{}/events?topic={}",
                server.addr(),
                percent_encode(t)
            )
        });
        let mut pairs = vec![("es", es.as_str()), ("types", TYPES)];
        if let Some(hb) = &hb {
            pairs.push(("hb", hb.as_str()));
        }
        let url = collector.page_url("page.html", &pairs);
        let browser = browser.launch(&program, &url);
        Session {
            browser,
            forwarder,
            collector,
            server,
            _lock: lock,
        }
    }

    /// Waits for the page's first `open`; fails at once if the browser
    /// died starting up.
    fn wait_open(&mut self) {
        self.collector
            .wait_kind_while_running(self.browser.group(), "open", 1, OPEN_TIMEOUT);
    }

    fn wait_messages(&self, count: usize) -> Vec<Report> {
        wait_messages(&self.collector, count)
    }
}

fn delivers_events(browser: Browser) {
    let who = format!("{browser:?}");
    let mut session = Session::start(browser, &[], "live", false, None);
    session.wait_open();
    deliver_sequence(&who, &session.server, &session.collector, "live");
    let reports = session.collector.reports();
    assert_eq!(of_kind(&reports, "open").len(), 1, "{browser:?}: one open");
    assert_no_errors(&who, &reports);
}

/// Heartbeat interval of the idle test, and how many must pass.
const HEARTBEAT_MS: u64 = 300;
const IDLE_HEARTBEATS: usize = 6;
/// Largest gap tolerated between heartbeats: what fails is heartbeats that
/// stop or drift, not one late by a busy machine's scheduling.
const MAX_GAP_MS: f64 = 2.0 * HEARTBEAT_MS as f64;

fn idle_stream_kept_alive(browser: Browser) {
    let who = format!("{browser:?}");
    let heartbeat = format!("{HEARTBEAT_MS}ms");
    // The EventSource goes through the forwarder, which sees every byte of
    // its one connection; the page's fetch() reader sees the heartbeats as
    // the browser received them (EventSource hides comments).
    let mut session = Session::start(
        browser,
        &["--heartbeat", &heartbeat],
        "idle",
        true,
        Some("idle-fetch"),
    );
    session.wait_open();
    session.collector.wait_kind("hb-open", 1, REPORT_TIMEOUT);
    let forwarder = session.forwarder.as_ref().expect("forwarder");
    forwarder.wait_requests(1, REPORT_TIMEOUT);

    // Until the browser has settled after its start-up, events flow; from
    // then on the stream is idle, and the timing of what the browser
    // receives measures the heartbeats, not the browser's start-up.
    let mut publisher = session.server.publisher();
    let mut sent = Vec::new();
    warm_up(&who, &mut publisher, &session.collector, "idle", &mut sent);
    let idle_from = Instant::now();
    let beats_before = of_kind(&session.collector.reports(), "heartbeat").len();

    // Idle: nothing is published while the page's reader counts heartbeats,
    // several intervals' worth, none far behind the one before.
    let idle_timeout =
        Duration::from_millis(HEARTBEAT_MS * IDLE_HEARTBEATS as u64) + REPORT_TIMEOUT;
    let beats =
        session
            .collector
            .wait_kind("heartbeat", beats_before + IDLE_HEARTBEATS, idle_timeout);
    let times: Vec<f64> = beats[beats_before..].iter().map(|r| r.num("at")).collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < MAX_GAP_MS,
            "{who}: {gap} ms between heartbeats at the page (interval {HEARTBEAT_MS} ms): {times:?}"
        );
    }

    // The EventSource's own connection carried heartbeats all along the
    // idle spell, awaited on that connection itself (the page's reader has
    // a stream, and heartbeat timing, of its own).
    let idle_beats = forwarder.wait_heartbeats(0, idle_from, IDLE_HEARTBEATS, idle_timeout);
    let mut last = idle_from;
    for at in &idle_beats {
        let gap = ms(at.duration_since(last));
        assert!(
            gap < MAX_GAP_MS,
            "{who}: {gap:.0} ms without a heartbeat on the idle EventSource (interval {HEARTBEAT_MS} ms)"
        );
        last = *at;
    }
    // And it is still the only one, still open: nothing timed out, nothing
    // reconnected.
    let conns = forwarder.conns();
    assert_eq!(
        conns.len(),
        1,
        "{who}: the idle EventSource reconnected: {conns:?}"
    );
    assert!(conns[0].open(), "{who}: the idle stream was closed");

    // After the idle spell the same stream still delivers, without a
    // reconnect (how fast is the delivery test's business).
    sent.push(publish(&mut publisher, "idle", 3));
    let received = session.wait_messages(sent.len());
    let delays = assert_received(&who, &received, &sent);
    eprintln!(
        "{who}: {} heartbeats while idle; then an event took {:.0} ms",
        idle_beats.len(),
        delays[delays.len() - 1]
    );
    let reports = session.collector.reports();
    assert_eq!(of_kind(&reports, "open").len(), 1, "{who}: one open only");
    assert_no_errors(&who, &reports);
    assert_eq!(forwarder.conns().len(), 1, "{who}: one connection");
}

fn resumes_after_drop(browser: Browser) {
    // A short retry so the browser comes back quickly; history keeps all.
    let mut session = Session::start(browser, &["--retry", "200ms"], "resume", true, None);
    session.wait_open();
    let forwarder = session.forwarder.as_ref().expect("forwarder");
    resume_after_cut(
        &format!("{browser:?}"),
        &session.server,
        &session.collector,
        forwarder,
        "resume",
        Vec::new(),
    );
}
