//! The wire inspector page (`GET /`, `src/inspector.html`) in headless
//! Chromium, driven through the npm package `playwright-core` by
//! `tests/clients/inspector-check.mjs`. The page subscribes, publishes one
//! multi-line unicode event through its own form, and must show that event,
//! with the id the publish answered, in the parsed view, in the raw view
//! exactly as the bytes a plain subscriber received, and as the
//! Last-Event-ID, without a single console or page error; and, tried as a
//! new user would, the page's pause, its marks on the user's own events, both
//! query forms for topics, and its layout at three window sizes.

use std::time::Duration;

use crate::real::{
    ProcGroup, TempDir, browser_lock, clients_dir, command_in, npm_package_version, require_program,
};
use crate::support::TestServer;
use serde_json::Value as Json;

const TOPIC: &str = "t1";
const TYPE: &str = "inspected";
const LINES: [&str; 2] = ["first line: héllo wörld", "second line: ✓ 日本語 🚀"];

/// Each step of the script (Chromium's start, each wait on the page); a
/// start-up on a busy 2-core machine takes a few seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The script's last resort, should one of Playwright's own steps hang: it
/// then reports what it has and exits.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// The whole run here: the script's last resort plus its bounded close of
/// the browser (5 s) and Node's start, so that a stuck step is reported by
/// the script rather than cut off here.
const RUN_TIMEOUT: Duration = Duration::from_secs(SCRIPT_TIMEOUT.as_secs() + 30);

/// How the report starts: the one line of JSON the script prints on stdout.
const REPORT_START: &str = "{\"report\":\"inspector-check\"";

#[test]
fn page_shows_a_published_event_parsed_raw_and_as_last_event_id() {
    let data = LINES.join("\n");
    let _lock = browser_lock();
    let server = TestServer::start(&[]);
    // A plain subscriber beside the page: what the raw view shows must be
    // what came off the wire.
    let mut wire = server.subscribe_ready(&format!("?topic={TOPIC}"));
    let (report, context) = run_check(&server, &[]);
    let id = report.str("publishedId");

    // The id the page was answered is the id of the event on the wire.
    let sent = wire.next_event();
    assert_eq!(sent.id.as_deref(), Some(id.as_str()), "{context}");
    assert_eq!(sent.event.as_deref(), Some(TYPE), "{context}");
    assert_eq!(sent.data, data, "{context}");

    // Parsed view: the EventSource's event, data with both lines as they
    // were published.
    assert_eq!(report.str("eventId"), id, "{context}");
    assert_eq!(report.str("eventIdText"), id, "{context}");
    assert_eq!(report.str("eventType"), TYPE, "{context}");
    assert_eq!(report.str("eventTypeText"), TYPE, "{context}");
    assert_eq!(report.str("eventData"), data, "{context}");
    assert_eq!(report.num("eventCount"), 1.0, "{context}");

    // Raw view: the very bytes of the event, and shown with its line ends
    // made visible (the markers are the two characters `\n`).
    let expected_raw = format!(
        "id: {id}\nevent: {TYPE}\ndata: {}\ndata: {}\n\n",
        LINES[0], LINES[1]
    );
    assert_eq!(sent.raw, expected_raw);
    assert_eq!(report.str("rawText"), expected_raw, "{context}");
    let shown = report.str("rawShown");
    for line in [
        format!("id: {id}\\n"),
        format!("event: {TYPE}\\n"),
        format!("data: {}\\n", LINES[0]),
        format!("data: {}\\n", LINES[1]),
        // a blank line: its line-end marker, tagged
        "\\nend of event".to_string(),
    ] {
        assert!(
            shown.lines().any(|shown_line| shown_line.trim() == line),
            "the raw view does not show the line {line:?}: {context}"
        );
    }
    assert!(report.num("rawCount") >= 2.0, "{context}");

    assert_eq!(report.str("lastEventId"), id, "{context}");
}

/// What a new user trips over, checked in the page as they would meet it:
/// - the event published from the form is marked as their own in both views
///   (and one published from elsewhere is not), so it can be found;
/// - Pause holds what arrives (counted, not shown) and Resume shows it;
/// - `?topic=q1&topic=q2` (the API's form) and `?topics=q1,q2` both
///   subscribe to both topics;
/// - at 1400x1000, 800x600 and 390x844 every card of the left column can be
///   scrolled into view by the page itself, uncut, the left column never
///   scrolls inside itself, and the page is no wider than the window.
#[test]
fn page_marks_own_events_pauses_takes_both_topic_forms_and_fits_the_window() {
    let _lock = browser_lock();
    let server = TestServer::start(&[]);
    let (report, context) = run_check(&server, &["--full"]);
    let form_id = report.str("publishedId");

    // Own events.
    let own = report.obj("own");
    assert_eq!(own.str("formId"), form_id, "{context}");
    let form = own.obj("form");
    assert!(
        form.bool("shown") && form.bool("own"),
        "the form's event is not marked own: {context}"
    );
    assert_eq!(form.str("tag"), "published here", "{context}");
    let raw = own.obj("formRaw");
    // id, event, two data lines and the blank line that ends it.
    assert!(
        raw.bool("ownChunk") && raw.num("ownLines") == 5.0,
        "raw view: {context}"
    );
    let outside = own.obj("outside");
    assert!(
        outside.bool("shown") && !outside.bool("own"),
        "an outside event marked own: {context}"
    );
    assert_eq!(own.obj("outsideRaw").num("ownLines"), 0.0, "{context}");

    // Pause and resume.
    let pause = report.obj("pause");
    assert_eq!(pause.str("pausedAttr"), "1", "{context}");
    let held = pause.obj("held");
    assert!(
        held.num("events") == 1.0 && held.num("reads") >= 1.0 && held.bool("barShown"),
        "the paused page did not count the event it held: {context}"
    );
    assert!(
        !pause.obj("eventWhilePaused").bool("shown"),
        "shown while paused: {context}"
    );
    assert!(
        !pause.obj("rawWhilePaused").bool("shown"),
        "raw shown while paused: {context}"
    );
    assert_eq!(
        pause.obj("during"),
        pause.obj("before"),
        "the lists grew while paused: {context}"
    );
    assert_eq!(pause.str("resumedAttr"), "0", "{context}");
    let after = pause.obj("eventAfterResume");
    assert!(
        after.bool("shown") && after.bool("own"),
        "not shown (as own) on resume: {context}"
    );
    assert!(pause.obj("rawAfterResume").bool("shown"), "{context}");
    assert_eq!(
        pause.obj("after").num("events"),
        pause.obj("before").num("events") + 1.0,
        "{context}"
    );

    // Both query forms.
    let queries = report.list("queries");
    let forms: Vec<String> = queries.iter().map(|q| q.str("query")).collect();
    assert_eq!(forms, ["topic=q1&topic=q2", "topics=q1,q2"], "{context}");
    for query in &queries {
        assert_eq!(query.str("topics"), "q1, q2", "{context}");
        assert!(
            query
                .str("source")
                .contains(r#"new EventSource("/events?topic=q1&topic=q2")"#),
            "?{} subscribed otherwise: {context}",
            query.str("query")
        );
        assert_eq!(query.strings("shown"), query.strings("ids"), "{context}");
        assert_eq!(query.strings("shown").len(), 2, "{context}");
    }

    // Layout.
    let layouts = report.list("layout");
    assert_eq!(layouts.len(), 3, "{context}");
    for layout in &layouts {
        let size = format!("{}x{}", layout.num("width"), layout.num("height"));
        assert!(
            layout.num("pageScrollWidth") <= layout.num("pageClientWidth"),
            "{size}: the page is wider than the window: {context}"
        );
        if layout.str("asideDisplay") != "contents" {
            assert_eq!(layout.str("asideOverflowY"), "visible", "{size}: {context}");
            assert!(
                layout.num("asideScrollHeight") <= layout.num("asideClientHeight") + 1.0,
                "{size}: the left column scrolls inside itself: {context}"
            );
        }
        assert_eq!(layout.num("asideScrollTop"), 0.0, "{size}: {context}");
        let cards = layout.list("cards");
        assert_eq!(cards.len(), 3, "{size}: {context}");
        for card in &cards {
            assert!(
                card.bool("inView") && card.get("clippedBy") == Json::Null,
                "{size}: card {} cut off: {context}",
                card.str("card")
            );
        }
    }
}

/// Runs inspector-check.mjs against `server` with `extra` options; fails
/// unless it ran to the end without a console or page error and the page was
/// subscribed and its publish answered. The report and, for messages, all
/// it printed.
fn run_check(server: &TestServer, extra: &[&str]) -> (Report, String) {
    let node = require_program(&["node", "nodejs"], "nodejs");
    let chromium = require_program(&["chromium"], "chromium");
    let version = npm_package_version("playwright-core");
    assert!(
        version.starts_with("1."),
        "tests/clients pins playwright-core ^1, found {version}"
    );
    let data = LINES.join("\n");
    let home = TempDir::new("inspector");
    let mut command = command_in(&node, home.path());
    command
        // Playwright puts Chromium's profile under TMPDIR: it goes with `home`.
        .env("TMPDIR", home.path())
        .current_dir(clients_dir())
        .arg("inspector-check.mjs")
        .arg(format!("http://{}", server.addr()))
        .args(["--topics", TOPIC, "--type", TYPE, "--data", &data])
        .arg("--timeout-ms")
        .arg(STEP_TIMEOUT.as_millis().to_string())
        .arg("--total-timeout-ms")
        .arg(SCRIPT_TIMEOUT.as_millis().to_string())
        .arg("--chromium")
        .arg(&chromium)
        .args(extra);
    let mut check = ProcGroup::spawn("inspector-check", command, &home.join("node.log"));
    let status = check.wait_exit(RUN_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "inspector-check still running after {RUN_TIMEOUT:?}:\n{}",
            check.log_tail(16 * 1024)
        )
    });
    let output = check.log_tail(256 * 1024);
    let line = output
        .lines()
        .find(|line| line.starts_with(REPORT_START))
        .unwrap_or_else(|| panic!("inspector-check printed no report ({status}):\n{output}"));
    let report = Report::parse(line);
    let rest: Vec<&str> = output
        .lines()
        .filter(|other| !other.starts_with(REPORT_START))
        .collect();
    let context = format!(
        "inspector-check ({status}) reported:\n{line}\nand printed besides:\n{}",
        rest.join("\n")
    );

    assert_eq!(report.get("failed"), Json::Null, "{context}");
    assert!(status.success(), "{context}");
    assert!(report.strings("consoleErrors").is_empty(), "{context}");
    assert!(report.strings("pageErrors").is_empty(), "{context}");
    assert_eq!(report.str("state"), "open", "{context}");
    assert_eq!(report.str("stateText"), "open", "{context}");

    assert_eq!(report.str("publishStatus"), "ok", "{context}");
    let id = report.str("publishedId");
    assert!(
        report.str("publishText").contains(&id),
        "the publish result does not show the id: {context}"
    );
    (report, context)
}

/// The script's report, or an object in it.
#[derive(Debug, PartialEq)]
struct Report(serde_json::Map<String, Json>);

impl Report {
    fn parse(text: &str) -> Report {
        match serde_json::from_str(text) {
            Ok(Json::Object(fields)) => Report(fields),
            other => panic!("the report is not a JSON object ({other:?}): {text}"),
        }
    }

    fn obj(&self, key: &str) -> Report {
        match self.get(key) {
            Json::Object(fields) => Report(fields),
            other => panic!("report {key:?} is {other:?}, not an object"),
        }
    }

    fn list(&self, key: &str) -> Vec<Report> {
        match self.get(key) {
            Json::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Json::Object(fields) => Report(fields),
                    other => panic!("report {key:?} holds {other:?}, not objects"),
                })
                .collect(),
            other => panic!("report {key:?} is {other:?}, not a list"),
        }
    }

    fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            Json::Bool(b) => b,
            other => panic!("report {key:?} is {other:?}, not a boolean"),
        }
    }

    fn get(&self, key: &str) -> Json {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("the report has no {key:?}"))
    }

    fn str(&self, key: &str) -> String {
        match self.get(key) {
            Json::String(text) => text,
            other => panic!("report {key:?} is {other:?}, not a string"),
        }
    }

    fn num(&self, key: &str) -> f64 {
        self.get(key)
            .as_f64()
            .unwrap_or_else(|| panic!("report {key:?} is not a number"))
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Json::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Json::String(text) => text,
                    other => other.to_string(),
                })
                .collect(),
            other => panic!("report {key:?} is {other:?}, not a list"),
        }
    }
}
