//! The wire inspector page (`GET /`, `src/inspector.html`) in headless
//! Chromium, driven through the npm package `playwright-core` by
//! `tests/clients/inspector-check.mjs`. The page subscribes, publishes one
//! multi-line unicode event through its own form, and must show that event,
//! with the id the publish answered, in the parsed view, in the raw view
//! exactly as the bytes a plain subscriber received, and as the
//! Last-Event-ID, without a single console or page error.

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
    let node = require_program(&["node", "nodejs"], "nodejs");
    let chromium = require_program(&["chromium"], "chromium");
    let version = npm_package_version("playwright-core");
    assert!(
        version.starts_with("1."),
        "tests/clients pins playwright-core ^1, found {version}"
    );
    let data = LINES.join("\n");

    let _lock = browser_lock();
    let server = TestServer::start(&[]);
    // A plain subscriber beside the page: what the raw view shows must be
    // what came off the wire.
    let mut wire = server.subscribe_ready(&format!("?topic={TOPIC}"));

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
        .arg(&chromium);
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

/// The script's report: one flat JSON object.
struct Report(serde_json::Map<String, Json>);

impl Report {
    fn parse(text: &str) -> Report {
        match serde_json::from_str(text) {
            Ok(Json::Object(fields)) => Report(fields),
            other => panic!("the report is not a JSON object ({other:?}): {text}"),
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
