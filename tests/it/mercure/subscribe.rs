//! Subscribing to the Mercure hub (the draft's "Subscription", "Matcher
//! Types" and "Reconciliation"): matchers, what reaches whom, refusals,
//! resuming and `Mercure-Last-Event-ID`, CORS. Events are published on
//! `/publish` here (the same hub); `publish.rs` publishes on the hub.

use std::time::Duration;

use super::{
    HUB, events_through, form, publish_request, request, subscribe, subscribe_request,
    subscribe_with,
};
use crate::support::{Item, Next, Subscriber, TestServer, assert_error, percent_encode};

const BOOKS: &str = "https://example.com/books/:id";

/// Publishes `data` on `/publish` to `topics` (none: a broadcast);
/// returns the id.
fn publish(server: &TestServer, topics: &[&str], data: &str) -> String {
    let pairs: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
    let query = crate::support::query(&pairs);
    server.publisher().publish_ok(&query, data.as_bytes())
}

/// An exact matcher and a URL pattern: an event goes to the subscriber
/// when one selects one of its topics, once however many do, with its
/// data as published and the hub's id (an IRI); others, broadcasts
/// included, do not.
#[test]
fn matchers_select_what_reaches_a_subscriber_once() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let exact = "https://example.com/foo";
    let mut sub = subscribe(
        &server,
        &form(&[
            ("match", exact),
            ("match", "bar"),
            ("match_urlpattern", BOOKS),
        ]),
    );
    publish(&server, &["https://example.com/baz"], "not selected");
    publish(&server, &[], "a broadcast");
    publish(
        &server,
        &["https://example.com/books/1/reviews"],
        "not a book",
    );
    publish(
        &server,
        &["https://EXAMPLE.com/foo"],
        "another topic, byte for byte",
    );
    let a = publish(&server, &[exact], "exact\nmatch");
    let b = publish(&server, &["bar"], "relative, exact");
    let c = publish(&server, &["https://example.com/books/7"], "a book");
    let d = publish(
        &server,
        &["x", "https://example.com/books/8", exact, "bar"],
        "four ways",
    );
    let seen = events_through(&mut sub, &d);
    assert_eq!(
        seen,
        [
            (a.clone(), "exact\nmatch".to_string()),
            (b, "relative, exact".into()),
            (c, "a book".into()),
            (d, "four ways".into())
        ]
    );
    assert!(
        a.starts_with("urn:sseloop:"),
        "a hub-made id is an IRI: {a}"
    );
    sub.expect_no_event(Duration::from_millis(100));
}

/// `*` selects every topic, whatever the matcher type, and broadcasts
/// too; without it a subscriber gets no broadcast.
#[test]
fn the_wildcard_receives_everything_and_broadcasts() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut stars: Vec<Subscriber> = ["match=*", "match_urlpattern=*", "match_exact=%2A"]
        .iter()
        .map(|q| subscribe(&server, q))
        .collect();
    let mut exact = subscribe(&server, "match=t");
    let one = publish(&server, &["anything at all"], "1");
    let two = publish(&server, &[], "2");
    let three = publish(&server, &["t"], "3");
    for star in &mut stars {
        let seen: Vec<String> = events_through(star, &three)
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(seen, [one.clone(), two.clone(), three.clone()]);
    }
    assert_eq!(
        events_through(&mut exact, &three),
        [(three, "3".to_string())]
    );
}

/// A subscription the hub cannot serve is refused with 400 and a text
/// that says why: a name in the reserved `match` namespace that is no
/// matcher type, a value with a control or format character, a pattern
/// that does not compile (naming the unsupported syntax), past the limits
/// (64 matchers, 1 024 bytes), none at all, not UTF-8.
#[test]
fn subscriptions_the_hub_cannot_serve_are_400() {
    let server = TestServer::start(&[]);
    let many: String = (0..65).map(|i| format!("match=t{i}&")).collect();
    let long = format!("match={}", "a".repeat(1025));
    for (query, says) in [
        ("match_regexp=x", "reserved match namespace"),
        ("Match=x", "reserved match namespace"),
        ("match=a&matches=1", "reserved match namespace"),
        ("match=a%00b", "control character"),
        ("match=a%C2%85b", "control character"),
        ("match=a%E2%80%8Bb", "format character"),
        ("match_urlpattern=a%7Fb", "control character"),
        (
            "match_urlpattern=%2Fbooks%2F%3Aid(%5Cd%2B)",
            "regular expression groups",
        ),
        ("match_urlpattern=%2F%7Ba", "invalid URL pattern"),
        ("topic=%2Fbooks%2F%7Bid%7D", "URI Templates"),
        (&many, "more than 64"),
        (&long, "longer than 1024"),
        ("", "no topic matcher"),
        ("last_event_id=x", "no topic matcher"),
        ("match=%FF", "not UTF-8"),
    ] {
        let (response, _) = request(&server, &subscribe_request(query, ""));
        assert_error(&response, 400);
        assert!(
            response.text().contains(says),
            "{query}: {:?}",
            response.text().trim().to_owned()
        );
    }
    // The longest and most matchers allowed are served.
    let at_limit: String = (0..64).map(|i| format!("match=t{i}&")).collect();
    subscribe(&server, &at_limit);
    subscribe(&server, &format!("match={}", "a".repeat(1024)));
}

/// What one event costs a loop to match is bounded: the distinct URL
/// patterns its subscribers hold weigh at most 16 384 automaton states.
/// Subscribers of distinct complex patterns are served until the next
/// would pass it, which gets 429 with a text that says why; a subscriber
/// of a pattern already held still gets in, and one leaving makes room.
#[test]
fn distinct_complex_patterns_are_capped_per_loop() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    // Each weighs 1 007: 1 000 states for its path (`/`, the wildcard's
    // 3, one a byte of text, 1 for the optional, the end), 1 for each
    // other component. `/x0001` is a topic of the second.
    let heavy = |i: usize| {
        let pattern = format!("/*{i:04}{{{}}}?", "a".repeat(990));
        form(&[("match_urlpattern", &pattern)])
    };
    let fit = 16_384 / 1_007;
    let mut held: Vec<_> = (0..fit).map(|i| subscribe(&server, &heavy(i))).collect();
    let (refused, _) = request(&server, &subscribe_request(&heavy(fit), ""));
    assert_error(&refused, 429);
    assert!(
        refused.text().contains("as many URL patterns"),
        "{:?}",
        refused.text()
    );
    let mut shared = subscribe(&server, &heavy(1));
    drop(held.swap_remove(0));
    server.await_metric("sseloop_subscribers", |n| n == fit as u64);
    let mut admitted = subscribe(&server, &heavy(fit));
    // The patterns still match: relative topics, published on the hub,
    // resolve against its URL as the patterns did.
    let on_hub = |topic: String| {
        let (response, _) = request(&server, &publish_request(&form(&[("topic", &topic)]), ""));
        assert_eq!(response.head.status, 200, "{:?}", response.text());
        response.text().trim().to_owned()
    };
    let id = on_hub("/x0001".into());
    assert_eq!(shared.next_event().id.as_deref(), Some(&*id));
    let id = on_hub(format!("/y{fit:04}"));
    assert_eq!(admitted.next_event().id.as_deref(), Some(&*id));
}

/// A relative URL pattern, and a relative topic, resolve against the hub
/// URL (`--hub-url`); an exact matcher is never resolved.
#[test]
fn relative_patterns_and_topics_resolve_against_the_hub_url() {
    let server = TestServer::start(&[
        "--heartbeat",
        "0",
        "--hub-url",
        "https://hub.example/.well-known/mercure",
    ]);
    let mut pattern = subscribe(&server, &form(&[("match_urlpattern", "/books/:id")]));
    let mut exact = subscribe(&server, &form(&[("match", "/books/1")]));
    publish(
        &server,
        &["https://other.example/books/1"],
        "another origin",
    );
    publish(&server, &["/books/2/x"], "a longer path");
    let absolute = publish(&server, &["https://hub.example/books/1"], "absolute");
    let relative = publish(&server, &["/books/1"], "relative");
    let seen = events_through(&mut pattern, &relative);
    assert_eq!(
        seen,
        [
            (absolute, "absolute".to_string()),
            (relative.clone(), "relative".into())
        ]
    );
    assert_eq!(events_through(&mut exact, &relative).len(), 1);
}

/// `QUERY` takes the matchers (and `last_event_id`) in a form body too:
/// the union of query and body subscribes. A body of another type is
/// refused.
#[test]
fn a_query_request_subscribes_with_matchers_in_its_body() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let body = form(&[("match", "from body"), ("match_urlpattern", BOOKS)]);
    let raw = format!(
        "QUERY {HUB}?match=from%20query HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut sub = server.subscribe_raw(raw.as_bytes());
    sub.expect_connected();
    let a = publish(&server, &["from query"], "a");
    let b = publish(&server, &["from body"], "b");
    let c = publish(&server, &["https://example.com/books/3"], "c");
    let ids: Vec<String> = events_through(&mut sub, &c)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ids, [a, b, c]);
    let plain = format!(
        "QUERY {HUB} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nmatch=a"
    );
    assert_error(&request(&server, plain.as_bytes()).0, 400);
}

/// What `Mercure-Last-Event-ID` says, and what is replayed: a known id
/// (header or `last_event_id`, the header winning) resumes after it and
/// is repeated; `earliest` replays every kept event; an unknown id, one
/// of another run, or one whose successors left the history replays
/// nothing and says `earliest`; without one there is no such field.
/// Replayed events are the subscriber's matchers' only.
#[test]
fn resuming_answers_mercure_last_event_id() {
    let server = TestServer::start(&["--heartbeat", "0", "--history", "4"]);
    let first = publish(&server, &["https://example.com/books/1"], "b1");
    let second = publish(&server, &["other"], "o");
    let third = publish(&server, &["https://example.com/books/2"], "b2");
    let query = form(&[("match_urlpattern", BOOKS)]);
    let header = |sub: &Subscriber| sub.head.header("mercure-last-event-id").map(str::to_owned);

    let mut sub = subscribe_with(&server, &query, &format!("Last-Event-ID: {first}\r\n"));
    assert_eq!(header(&sub).as_deref(), Some(first.as_str()));
    assert_eq!(
        events_through(&mut sub, &third),
        [(third.clone(), "b2".to_string())]
    );

    let by_query = format!("{query}&last_event_id={}", percent_encode(&second));
    let mut sub = subscribe_with(&server, &by_query, &format!("Last-Event-ID: {first}\r\n"));
    assert_eq!(
        header(&sub).as_deref(),
        Some(first.as_str()),
        "the header wins"
    );
    assert_eq!(events_through(&mut sub, &third).len(), 1);
    let mut sub = subscribe(&server, &by_query);
    assert_eq!(header(&sub).as_deref(), Some(second.as_str()));
    assert_eq!(events_through(&mut sub, &third).len(), 1);

    let mut sub = subscribe(&server, &format!("{query}&last_event_id=earliest"));
    assert_eq!(header(&sub).as_deref(), Some("earliest"));
    let replayed: Vec<String> = events_through(&mut sub, &third)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(replayed, [first.clone(), third.clone()]);

    let other_run = format!("urn:sseloop:000000000001-{}", 1);
    for unknown in ["unknown", "", &other_run] {
        let mut sub = subscribe_with(&server, &query, &format!("Last-Event-ID: {unknown}\r\n"));
        assert_eq!(header(&sub).as_deref(), Some("earliest"), "{unknown:?}");
        sub.expect_no_event(Duration::from_millis(50));
        let live = publish(&server, &["https://example.com/books/9"], "live");
        assert_eq!(
            events_through(&mut sub, &live),
            [(live, "live".to_string())]
        );
    }
    // `first` has left the history of 4 now: nothing to resume after.
    for n in 0..4 {
        publish(&server, &["filler"], &n.to_string());
    }
    let mut sub = subscribe_with(&server, &query, &format!("Last-Event-ID: {first}\r\n"));
    assert_eq!(header(&sub).as_deref(), Some("earliest"));
    sub.expect_no_event(Duration::from_millis(50));
    let sub = subscribe(&server, &query);
    assert_eq!(header(&sub), None);
}

/// CORS for a browser subscriber of another origin: `--allow-origin
/// ORIGIN` allows credentials (the token cookie) and names the origin;
/// `*` never comes with `Access-Control-Allow-Credentials`. Preflights
/// are answered for the hub's methods.
#[test]
fn cors_with_credentials_only_for_a_named_origin() {
    for (origin, credentials) in [("https://app.example", true), ("*", false)] {
        let server = TestServer::start(&["--allow-origin", origin]);
        let sub = subscribe_with(&server, "match=a", "Origin: https://app.example\r\n");
        assert_eq!(sub.head.header("access-control-allow-origin"), Some(origin));
        assert_eq!(
            sub.head.header("access-control-allow-credentials"),
            credentials.then_some("true"),
            "{origin}"
        );
        let preflight = format!(
            "OPTIONS {HUB} HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n\
             Access-Control-Request-Method: POST\r\n\r\n"
        );
        let (response, _) = request(&server, preflight.as_bytes());
        assert_eq!(response.head.status, 204);
        let methods = response
            .head
            .header("access-control-allow-methods")
            .unwrap();
        assert!(
            methods.contains("GET") && methods.contains("POST"),
            "{methods}"
        );
    }
    let closed = TestServer::start(&[]);
    let sub = subscribe_with(&closed, "match=a", "Origin: https://app.example\r\n");
    assert_eq!(sub.head.header("access-control-allow-origin"), None);
}

/// The stream is an event stream like `/events`': the anti-buffering
/// head, the first comment at once, heartbeats.
#[test]
fn the_stream_is_an_sseloop_stream() {
    let server = TestServer::start(&["--heartbeat", "100ms", "--retry", "1500ms"]);
    let mut conn = server.http();
    conn.send(&subscribe_request("match=a", ""));
    let head = conn.read_head(crate::support::deadline());
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    let mut sub = Subscriber::from_head(conn, head);
    assert_eq!(sub.next_item(), Item::Retry("1500".into()));
    sub.expect_connected();
    match sub.poll(crate::support::deadline()) {
        Next::Item(Item::Comment(c)) => assert_eq!(c, "heartbeat"),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}
