//! Hard limits: `--max-connections` (the retry stream for subscribes, 503
//! for everything else, the cap on connections waiting for that answer, and
//! recovery as connections leave), the open-file limit the binary raises for
//! itself, and the command-line values of the limits.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::{
    Item, Response, Subscriber, TestServer, assert_cli_rejected, assert_error, deadline,
    metric_value, publish_request,
};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// `n` subscribers, each known to be registered.
fn fill(server: &TestServer, n: usize) -> Vec<Subscriber> {
    (0..n)
        .map(|_| server.subscribe_ready("?topic=full"))
        .collect()
}

/// Reads a refused stream to its end: `retry: <ms>`, the comment, the end
/// of the body, and the close. Returns the retry value.
fn expect_refused_stream(mut refused: Subscriber) -> String {
    assert!(
        refused
            .head
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        refused.head
    );
    let retry = match refused.next_item() {
        Item::Retry(ms) => ms,
        other => panic!("a refused stream starts with retry:, got {other:?}"),
    };
    assert_eq!(
        refused.next_item(),
        Item::Comment("server at capacity".into())
    );
    refused.expect_clean_end();
    refused.expect_closed();
    retry
}

/// A 503 with `Retry-After`, and the close.
fn expect_unavailable(server: &TestServer, request: &[u8]) -> Response {
    let response = server.expect_error(request, 503);
    let retry_after = response.head.header("retry-after");
    assert!(
        retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After {retry_after:?}"
    );
    response
}

#[test]
fn over_capacity_subscribers_get_a_retry_stream_others_503_and_capacity_returns() {
    let server = TestServer::start(&["--max-connections", "20"]);
    let mut subs = fill(&server, 20);

    // Each refusal is answered and closed at once, well before the 1 s an
    // over-capacity connection gets to send its request.
    let at_once = |what: &str, refuse: &dyn Fn()| {
        let began = Instant::now();
        refuse();
        let took = began.elapsed();
        assert!(took < Duration::from_millis(900), "{what} took {took:?}");
    };
    at_once("the refused subscribe", &|| {
        assert_eq!(
            expect_refused_stream(server.subscribe("?topic=full")),
            "1000"
        );
    });
    let publish = publish_request("?topic=full", b"nobody hears this");
    at_once("the refused publish", &|| {
        expect_unavailable(&server, &publish);
    });
    at_once("the refused health check", &|| {
        expect_unavailable(&server, HEALTH);
    });
    at_once("the refused scrape", &|| {
        expect_unavailable(
            &server,
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
    });
    let mut refusals = 4;

    // Five leave; capacity comes back once the server has seen them go.
    subs.truncate(15);
    settle(&server, 15, &mut refusals);
    // The places are usable: four new subscribers and a publisher fill
    // them, and every subscriber gets the event.
    subs.extend(fill(&server, 4));
    let mut publisher = server.publisher();
    let id = publisher.publish_ok("?topic=full", b"back");
    for sub in &mut subs {
        assert_eq!(sub.next_event().id.as_deref(), Some(id.as_str()));
    }
    // Full again.
    expect_refused_stream(server.subscribe("?topic=full"));
    refusals += 1;
    drop(publisher);
    subs.truncate(10);
    let text = settle(&server, 10, &mut refusals);
    assert_eq!(
        metric_value(&text, "sseloop_rejected_connections_total"),
        refusals,
        "every refused connection is counted"
    );
}

/// Asks `/metrics` (a refusal counts in `refusals`) until only `open`
/// connections besides the asking one are left; returns the metrics text.
fn settle(server: &TestServer, open: u64, refusals: &mut u64) -> String {
    let end = deadline();
    loop {
        let (response, conn) = server
            .request(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        drop(conn);
        match response.head.status {
            503 => *refusals += 1,
            200 => {
                let text = response.text();
                if metric_value(&text, "sseloop_connections") == open + 1 {
                    return text;
                }
            }
            other => panic!("/metrics answered {other}"),
        }
        assert!(
            Instant::now() < end,
            "connections did not settle at {open}:\n{}",
            server.log()
        );
        // Closing has no notification to block on; ask again shortly.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn refused_stream_carries_the_configured_retry_and_http10_is_close_delimited() {
    let server = TestServer::start(&[
        "--max-connections",
        "1",
        "--retry",
        "2500ms",
        "--allow-origin",
        "*",
    ]);
    let mut sub = server.subscribe("");
    assert_eq!(sub.next_item(), Item::Retry("2500".into()));

    let refused = server.subscribe("?topic=x");
    assert_eq!(
        refused.head.header("access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(expect_refused_stream(refused), "2500");

    let refused = server.subscribe_raw(b"GET /events HTTP/1.0\r\n\r\n");
    assert!(refused.head.header("transfer-encoding").is_none());
    assert_eq!(expect_refused_stream(refused), "2500");

    let response = expect_unavailable(&server, &publish_request("", b"x"));
    assert_eq!(
        response.head.header("access-control-allow-origin"),
        Some("*")
    );
}

#[test]
fn over_capacity_connection_that_says_nothing_is_answered_within_a_second() {
    // 1 s, or the header timeout when that is shorter.
    for (timeout, expected) in [("10s", 1000), ("300ms", 300)] {
        let server = TestServer::start(&["--max-connections", "1", "--header-timeout", timeout]);
        let _sub = server.subscribe_ready("");
        let began = Instant::now();
        let mut silent = server.http();
        let response = silent.read_response(deadline());
        let took = began.elapsed();
        assert_error(&response, 408);
        silent.expect_closed();
        let expected = Duration::from_millis(expected);
        assert!(
            took >= expected - Duration::from_millis(100)
                && took < expected + Duration::from_millis(1500),
            "with --header-timeout {timeout} an over-capacity connection got {took:?}, \
             not {expected:?}"
        );
    }
}

#[test]
fn at_most_64_connections_wait_for_their_refusal() {
    let server = TestServer::start(&["--max-connections", "1"]);
    let sub = server.subscribe_ready("");
    // 64 over-capacity connections that say nothing: each waits (up to 1 s)
    // for its answer.
    let waiting: Vec<_> = (0..64).map(|_| server.http()).collect();
    // The next one is closed at once, without a byte.
    let began = Instant::now();
    let mut extra = server.connect();
    let mut buf = [0u8; 256];
    let got = match extra.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the 65th connection was not closed at once: {e}"),
    };
    assert_eq!(got, 0, "the 65th got an answer: {:?}", &buf[..got]);
    assert!(
        began.elapsed() < Duration::from_millis(800),
        "the 65th was closed only after {:?}",
        began.elapsed()
    );
    // The waiting ones are answered (408: they never sent a request).
    for mut conn in waiting {
        let response = conn.read_response(deadline());
        assert_error(&response, 408);
        conn.expect_closed();
    }
    // With the waiting room empty again, the next is answered again.
    let end = deadline();
    loop {
        let mut conn = server.http();
        conn.send(HEALTH);
        let mut first = [0u8; 12];
        if conn.stream().peek(&mut first).is_ok_and(|n| n > 0) {
            assert_error(&conn.read_response(deadline()), 503);
            break;
        }
        assert!(Instant::now() < end, "refusals were never answered again");
        // A waiting place frees when the server sees the client's close,
        // which has no notification to block on; try again shortly.
        std::thread::sleep(Duration::from_millis(10));
    }
    // The subscriber's close frees the one place once the server has seen
    // it (a stream's FIN is probed, and the reset that answers the probe
    // ends it): /metrics may be refused until then.
    drop(sub);
    let mut refusals = 0;
    let text = settle(&server, 0, &mut refusals);
    assert!(
        metric_value(&text, "sseloop_rejected_connections_total") >= 66,
        "{text}"
    );
}

/// The soft and hard open-file limits of a process, from /proc/PID/limits.
fn open_files(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn open_file_limit_is_raised_to_what_max_connections_needs() {
    // One descriptor per connection, the waiting room, and a few more.
    let wanted = (1000 + sseloop::config::OVERFLOW_CONNECTIONS + 32) as u64;
    let server = TestServer::start_with(&["--max-connections", "1000"], &[], Some(256));
    let (soft, hard) = open_files(server.pid());
    assert!(
        hard >= wanted,
        "this machine's hard open-file limit {hard} is below the {wanted} this test needs"
    );
    assert!(soft >= wanted, "soft limit {soft} for 1000 connections");
    assert!(
        !server.log().contains("open-file limit"),
        "a warning though the limit could be raised:\n{}",
        server.log()
    );
}

#[test]
fn open_file_limit_below_max_connections_is_raised_to_the_hard_limit_and_logged_once() {
    let server = TestServer::start_with(&["--max-connections", "1000000"], &[], Some(256));
    let (soft, hard) = open_files(server.pid());
    assert_eq!(soft, hard, "the soft limit is raised as far as it goes");
    let line = server
        .await_log(&["open-file limit"])
        .expect("a warning that the open-file limit is too low");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("1000000"), "names --max-connections: {line}");
    let (health, _) = server.request(HEALTH);
    assert_eq!(health.text(), "ok");
    assert_eq!(
        server.log().matches("open-file limit").count(),
        1,
        "logged once:\n{}",
        server.log()
    );
}

#[test]
fn bad_limit_values_are_rejected() {
    for bad in ["0", "-1", "abc", "1.5", "99999999999999999999999", ""] {
        assert_cli_rejected(&["--max-connections", bad], &["--max-connections"]);
    }
    for bad in ["-1", "many", "1e3"] {
        assert_cli_rejected(&["--history", bad], &["--history"]);
    }
    for bad in ["0", "0s", "0ms", "-1s"] {
        assert_cli_rejected(&["--header-timeout", bad], &["--header-timeout"]);
    }
    for bad in ["0", "0KiB", "1GB"] {
        assert_cli_rejected(&["--queue-limit", bad], &["--queue-limit"]);
    }
    assert_cli_rejected(&["--max-event-size", "0"], &["--max-event-size"]);
    assert_cli_rejected(&["--max-connections"], &["--max-connections"]);
}
