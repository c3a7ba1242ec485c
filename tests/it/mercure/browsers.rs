//! Headless Chromium and Firefox on `tests/clients/mercure.html`: a page
//! that shares its origin with the hub (the collector passes the hub's
//! path on to sseloop, as an application's proxy does) opens
//! `EventSource`s on `/.well-known/mercure` with exact, URI and URL-pattern
//! matchers, and one with a token in Mercure's cookie; then publishes with
//! `fetch` and form bodies (`URLSearchParams`), one of them on a topic no
//! one matches and one private. Each subscriber must receive exactly what
//! its matchers (and, for a private update, its token) select, in order,
//! with the publisher's id, type and data byte for byte, and nothing else
//! (a browser keeps 6 connections to one host: four streams, a publish
//! and a report).
//!
//! In `mercure::browsers`, so `SSELOOP_SKIP_REAL_CLIENTS=1 ./test.sh`
//! leaves it out with the other browser tests (`--skip browsers::`).

use std::time::Duration;

use serde_json::json;

use super::tokens::{at_jwt, detail};
use crate::private::{KEY, mint};
use crate::real::browser::Browser;
use crate::real::browser_lock;
use crate::real::collector::{Collector, of_kind};
use crate::real::scenario::REPORT_TIMEOUT;
use crate::support::TestServer;

/// Browser start-up to the first reports, on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(40);

#[test]
fn chromium_subscribes_and_publishes_on_the_hub() {
    subscribes_and_publishes(Browser::Chromium);
}

#[test]
fn firefox_subscribes_and_publishes_on_the_hub() {
    subscribes_and_publishes(Browser::Firefox);
}

const DATA: &str = "a+b=c&d %20 é ✓ \"quoted\"\n  second line, indented\n";

fn subscribes_and_publishes(browser: Browser) {
    let program = browser.program();
    let _lock = browser_lock();
    // The audience is fixed (--jwt-audience): the hub's URL as the page
    // reaches it depends on the port the collector gets.
    let server = TestServer::start(&[
        "--heartbeat",
        "0",
        "--jwt-key",
        KEY,
        "--anonymous",
        "--public-topic",
        "*",
        "--jwt-audience",
        AUDIENCE,
    ]);
    let collector = Collector::in_front_of(server.addr());
    let books = json!([{"match": "https://example.com/books/:id", "match_type": "urlpattern"}]);
    let [publisher, reader] = <[String; 2]>::try_from(mint(&[
        for_audience(json!([detail(&["publish"], json!([{"match": "*"}]))])),
        for_audience(json!([detail(&["subscribe"], books)])),
    ]))
    .unwrap();

    let pattern = "match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    let subs = json!([
        ["exact", "match=urn%3Aexample%3Aexact"],
        ["uri", "match=https%3A%2F%2Fexample.com%2Fbooks%2F1"],
        ["pattern", pattern],
    ]);
    let token_subs = json!([["private", pattern]]);
    let updates = json!([
        [
            ["topic", "urn:example:exact"],
            ["data", DATA],
            ["id", "urn:uuid:00000000-0000-4000-8000-000000000001"]
        ],
        [
            ["topic", "https://example.com/books/1"],
            ["data", "book 1, v2"],
            ["id", "book-1-v2"],
            ["type", "book.updated"]
        ],
        [
            ["topic", "https://example.com/books/2"],
            ["data", "book 2"],
            ["id", "book-2-v1"]
        ],
        [
            ["topic", "https://example.com/other"],
            ["data", "for no one here"],
            ["id", "other-1"]
        ],
        [
            ["topic", "https://example.com/books/1"],
            ["private", "on"],
            ["data", "secret"],
            ["id", "secret-1"]
        ],
        [
            ["topic", "urn:example:end"],
            ["topic", "urn:example:exact"],
            ["topic", "https://example.com/books/1"],
            ["data", "end"],
            ["id", "end"]
        ],
    ]);
    let url = collector.page_url(
        "mercure.html",
        &[
            ("subs", &subs.to_string()),
            ("token_subs", &token_subs.to_string()),
            ("cookie", &reader),
            ("publisher", &publisher),
            ("updates", &updates.to_string()),
            ("types", &json!(["book.updated"]).to_string()),
        ],
    );
    let mut running = browser.launch(&program, &url);
    collector.wait_kind_while_running(running.group(), "ready", 1, START_TIMEOUT);
    let published = collector.wait_kind("published", 6, REPORT_TIMEOUT);
    let answers: Vec<(&str, &str)> = published
        .iter()
        .map(|r| (r.get("status").unwrap_or(""), r.get("body").unwrap_or("")))
        .collect();
    let ids = [
        "urn:uuid:00000000-0000-4000-8000-000000000001",
        "book-1-v2",
        "book-2-v1",
        "other-1",
        "secret-1",
        "end",
    ];
    assert_eq!(
        answers,
        ids.iter().map(|id| ("200", *id)).collect::<Vec<_>>(),
        "{browser:?}: each publish answered with its id"
    );
    // Every subscriber gets "end" last; then what it got is all it gets.
    let messages = collector.wait_kind("message", 2 + 2 + 3 + 4, REPORT_TIMEOUT);
    let got = |sub: &str| -> Vec<(String, String, String)> {
        messages
            .iter()
            .filter(|m| m.get("sub") == Some(sub))
            .map(|m| {
                let field = |k| m.get(k).unwrap_or("").to_string();
                (field("id"), field("type"), field("data"))
            })
            .collect()
    };
    let event = |n: usize| {
        let (data, event_type) = match n {
            0 => (DATA, "message"),
            1 => ("book 1, v2", "book.updated"),
            2 => ("book 2", "message"),
            3 => ("for no one here", "message"),
            4 => ("secret", "message"),
            _ => ("end", "message"),
        };
        (ids[n].to_string(), event_type.to_string(), data.to_string())
    };
    for (sub, want) in [
        ("exact", vec![0, 5]),
        ("uri", vec![1, 5]),
        ("pattern", vec![1, 2, 5]),
        ("private", vec![1, 2, 4, 5]),
    ] {
        let want: Vec<_> = want.into_iter().map(event).collect();
        assert_eq!(got(sub), want, "{browser:?}: subscriber {sub}");
    }
    let reports = collector.reports();
    assert!(
        of_kind(&reports, "error").is_empty(),
        "{browser:?}: an EventSource failed: {reports:?}"
    );
    assert_eq!(
        of_kind(&reports, "open").len(),
        4,
        "{browser:?}: one open each"
    );
    drop(running);
}

/// The hub's `--jwt-audience` here.
const AUDIENCE: &str = "urn:example:mercure-hub";

/// An `at+jwt` for the hub here.
fn for_audience(details: serde_json::Value) -> serde_json::Value {
    let mut spec = at_jwt(details, 3600);
    spec["claims"]["aud"] = json!(AUDIENCE);
    spec
}
