//! Headless Chromium on `tests/clients/private.html`: a page whose cookie
//! carries a PyJWT-minted token subscribes to a private topic with a plain
//! `EventSource` and receives its events; the same page in a fresh browser
//! without the cookie gets one `error` (the stream refused for good, 401)
//! and nothing else.
//!
//! The page is on the collector's port, sseloop on its own: one host, so
//! one site (cookies are per host, not per port) but two origins. An
//! `EventSource` sends cookies to another origin only with
//! `withCredentials: true`, and the browser hands it the stream only if
//! sseloop's CORS answer allows credentials for that origin: the setup of a
//! page on `app.example.com` with sseloop on `sse.example.com`, and the
//! simplest one the harness allows (a same-origin page would need sseloop
//! to serve it, or a proxy in front of both).
//!
//! In `private::browsers`, so `SSELOOP_SKIP_REAL_CLIENTS=1 ./test.sh`
//! leaves it out with the other browser tests (`--skip browsers::`).

use std::time::Duration;

use super::{KEY, claims, hs256, mint, unix_now};
use crate::real::browser::Browser;
use crate::real::browser_lock;
use crate::real::collector::{Collector, Report, of_kind};
use crate::real::scenario::REPORT_TIMEOUT;
use crate::support::{TestServer, assert_publish_ok, percent_encode};

/// Browser start-up to the first report, on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(40);
const PUBLISH_TOKEN: &str = "browser-publish-token";
const TOPIC: &str = "user/browser";

fn publish(server: &TestServer, query: &str, data: &str) -> String {
    let request = format!(
        "POST /publish?{query} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PUBLISH_TOKEN}\r\n\
         Content-Length: {}\r\n\r\n{data}",
        data.len()
    );
    assert_publish_ok(&server.request(request.as_bytes()).0)
}

fn kinds(reports: &[Report]) -> Vec<String> {
    reports
        .iter()
        .map(|r| r.get("kind").unwrap_or("").to_string())
        .collect()
}

/// The cookie lets the page's `EventSource` in and its private events
/// arrive; without it the stream is refused (401) and the `EventSource`
/// gives up: one `error`, closed, never an `open` or a message, while the
/// page goes on living (a public stream it opens afterwards delivers).
#[test]
fn chromium_cookie_subscribes_to_a_private_topic_and_no_cookie_gets_only_an_error() {
    let program = Browser::Chromium.program();
    let _lock = browser_lock();
    let collector = Collector::start();
    let origin = collector.origin();
    let server = TestServer::start(&[
        "--jwt-key",
        KEY,
        "--publish-token",
        PUBLISH_TOKEN,
        "--allow-origin",
        &origin,
    ]);
    let es = format!(
        "http://{}/events?topic={}",
        server.addr(),
        percent_encode(TOPIC)
    );
    let control = format!("http://{}/events", server.addr());
    let [token] = <[String; 1]>::try_from(mint(&[hs256(claims(
        &[TOPIC],
        &[],
        Some(unix_now() + 3600),
    ))]))
    .unwrap();

    // With the cookie.
    let url = collector.page_url("private.html", &[("es", &es), ("token", &token)]);
    let mut browser = Browser::Chromium.launch(&program, &url);
    collector.wait_kind_while_running(browser.group(), "open", 1, START_TIMEOUT);
    let ids: Vec<String> = (0..3)
        .map(|n| publish(&server, &format!("topic={TOPIC}"), &format!("private {n}")))
        .collect();
    let messages = collector.wait_kind("message", ids.len(), REPORT_TIMEOUT);
    let got: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m.get("id").unwrap_or(""), m.get("data").unwrap_or("")))
        .collect();
    let want: Vec<(&str, String)> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.as_str(), format!("private {n}")))
        .collect();
    assert_eq!(
        got,
        want.iter()
            .map(|(id, d)| (*id, d.as_str()))
            .collect::<Vec<_>>()
    );
    let reports = collector.reports();
    assert_eq!(
        of_kind(&reports, "loaded")[0].get("cookie"),
        Some("true"),
        "the page set its cookie"
    );
    assert!(
        of_kind(&reports, "error").is_empty(),
        "the stream with the cookie failed: {:?}",
        kinds(&reports)
    );
    drop(browser);
    let seen = reports.len();

    // Without it: a fresh browser, a fresh profile, no cookie; the same
    // page on the same origin.
    let url = collector.page_url("private.html", &[("es", &es), ("control", &control)]);
    let mut browser = Browser::Chromium.launch(&program, &url);
    let errors = collector.wait_kind_while_running(browser.group(), "error", 1, START_TIMEOUT);
    assert_eq!(
        errors[0].get("state"),
        Some("2"),
        "the EventSource is CLOSED: it gives up for good"
    );
    let probe = collector.wait_kind("probe", 1, REPORT_TIMEOUT);
    assert_eq!(probe[0].get("status"), Some("401"), "{probe:?}");
    assert!(
        !probe[0].get("body").unwrap_or("").contains(&token),
        "{probe:?}"
    );
    // The page lives on: events published now reach its public stream, and
    // none of the private ones reach it.
    collector.wait_kind("control-open", 1, REPORT_TIMEOUT);
    publish(&server, &format!("topic={TOPIC}"), "private, not for it");
    let last = publish(&server, "", "broadcast");
    let control = collector.wait_kind("control", 1, REPORT_TIMEOUT);
    assert_eq!(control[0].get("id"), Some(last.as_str()));
    let reports = collector.reports().split_off(seen);
    assert_eq!(
        kinds(&reports),
        ["loaded", "error", "probe", "control-open", "control"],
        "the page without the cookie saw more than the error"
    );
    assert_eq!(of_kind(&reports, "loaded")[0].get("cookie"), Some("false"));
    drop(browser);
}
