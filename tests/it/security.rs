//! Security defaults: the publish token (flag and environment), CORS, the
//! refusal to serve an open publish endpoint on a non-loopback address, and
//! the command-line values of those options.

use crate::support::{
    Response, TestServer, assert_cli_rejected, assert_error, assert_publish_ok, deadline,
    publish_request,
};

/// A publish request with an `Authorization` header (`None`: without one).
fn publish_with(authorization: Option<&str>, body: &str) -> Vec<u8> {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn expect_unauthorized(server: &TestServer, request: &[u8]) -> Response {
    let response = server.expect_error(request, 401);
    assert_eq!(
        response.head.header("www-authenticate"),
        Some("Bearer"),
        "{:?}",
        response.head
    );
    response
}

#[test]
fn publish_token_is_required_and_subscribing_stays_open() {
    let server = TestServer::start(&["--publish-token", "s3cret-Token"]);
    // Subscribing needs no token.
    let mut sub = server.subscribe_ready("?topic=t");

    let refused = [
        None,
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer wrong"),
        Some("Bearer s3cret-Toke"),
        Some("Bearer s3cret-Token2"),
        Some("Bearer s3cret-token"),
        Some("Basic s3cret-Token"),
        Some("s3cret-Token"),
        Some("Bearers3cret-Token"),
        Some("Token s3cret-Token"),
    ];
    for auth in refused {
        let response = expect_unauthorized(&server, &publish_with(auth, "nope"));
        // The answer never repeats what was offered.
        assert!(!response.text().contains("s3cret"), "{:?}", response.text());
        assert!(!response.text().contains("wrong"));
    }
    // Chunked and 100-continue publishes are refused before their body:
    // only the heads are sent, so a server waiting for a body would time out.
    expect_unauthorized(
        &server,
        b"POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let (response, mut conn) = server.request(
        b"POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    assert_error(&response, 401);
    conn.expect_closed();

    // The right token, with the scheme in any case, publishes; the
    // subscriber sees only these events.
    let mut ids = Vec::new();
    for auth in [
        "Bearer s3cret-Token",
        "bearer s3cret-Token",
        "BEARER s3cret-Token",
    ] {
        let (response, _conn) = server.request(&publish_with(Some(auth), "let in"));
        ids.push(assert_publish_ok(&response));
    }
    for id in ids {
        let event = sub.next_event();
        assert_eq!(event.id, Some(id));
        assert_eq!(event.data, "let in");
    }
    // Everything else stays open.
    let (health, _) = server.request(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(health.text(), "ok");
}

#[test]
fn publish_token_from_the_environment_and_the_flag_wins() {
    let server = TestServer::start_env(&[], &[("SSELOOP_PUBLISH_TOKEN", "from-env")]);
    expect_unauthorized(&server, &publish_with(None, "x"));
    let (response, _) = server.request(&publish_with(Some("Bearer from-env"), "x"));
    assert_publish_ok(&response);

    let server = TestServer::start_env(
        &["--publish-token", "from-flag"],
        &[("SSELOOP_PUBLISH_TOKEN", "from-env")],
    );
    expect_unauthorized(&server, &publish_with(Some("Bearer from-env"), "x"));
    let (response, _) = server.request(&publish_with(Some("Bearer from-flag"), "x"));
    assert_publish_ok(&response);
}

#[test]
fn without_a_token_publishing_on_loopback_is_open() {
    let server = TestServer::start(&[]);
    let (response, _) = server.request(&publish_with(None, "x"));
    assert_publish_ok(&response);
    let (response, _) = server.request(&publish_with(Some("Bearer anything"), "x"));
    assert_publish_ok(&response);
}

// ---------------------------------------------------------------------------
// CORS

const ORIGIN: &str = "https://app.example.com";

/// Asserts the CORS headers of an answer for `origin`.
fn assert_cors(head: &crate::support::Head, origin: &str) {
    assert_eq!(
        head.header("access-control-allow-origin"),
        Some(origin),
        "{head:?}"
    );
    assert_eq!(head.count("access-control-allow-origin"), 1);
    if origin == "*" {
        assert!(head.header("vary").is_none(), "{head:?}");
    } else {
        assert!(
            head.header("vary").is_some_and(|v| v
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("origin"))),
            "{head:?}"
        );
    }
}

fn assert_no_cors(head: &crate::support::Head) {
    assert!(
        !head
            .headers
            .iter()
            .any(|(name, _)| name.to_ascii_lowercase().starts_with("access-control-")),
        "CORS header sent with no origin configured: {head:?}"
    );
}

fn preflight(server: &TestServer, path: &str) -> Response {
    let request = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\n\
         Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n"
    );
    server.request(request.as_bytes()).0
}

#[test]
fn allow_origin_adds_cors_to_streams_answers_and_errors_and_answers_preflights() {
    let server = TestServer::start(&["--allow-origin", ORIGIN]);
    let origin_header = format!("Origin: {ORIGIN}\r\n");

    let request = format!("GET /events?topic=t HTTP/1.1\r\nHost: localhost\r\n{origin_header}\r\n");
    let mut sub = server.subscribe_raw(request.as_bytes());
    assert_cors(&sub.head, ORIGIN);
    sub.expect_connected();

    let (response, _) = server.request(&publish_request("?topic=t", b"x"));
    let first = assert_publish_ok(&response);
    assert_cors(&response.head, ORIGIN);
    assert_eq!(sub.next_event().id, Some(first));
    let (response, _) = server.request(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_cors(&response.head, ORIGIN);
    let response = server.expect_error(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n", 404);
    assert_cors(&response.head, ORIGIN);
    let response = server.expect_error(
        b"GET /events?topic= HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
    assert_cors(&response.head, ORIGIN);

    for (path, method) in [
        ("/events", "GET"),
        ("/events?topic=a", "GET"),
        ("/publish", "POST"),
        ("/health", "GET"),
        ("/", "GET"),
        ("/metrics", "GET"),
    ] {
        let response = preflight(&server, path);
        assert_eq!(response.head.status, 204, "{path}: {:?}", response.head);
        assert!(response.body.is_empty());
        assert_cors(&response.head, ORIGIN);
        let methods = response
            .head
            .header("access-control-allow-methods")
            .unwrap_or("");
        let methods: Vec<&str> = methods.split(',').map(str::trim).collect();
        assert!(
            methods.contains(&method) && methods.contains(&"OPTIONS"),
            "{path}: {methods:?}"
        );
        let allowed = response
            .head
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        for needed in [
            "last-event-id",
            "cache-control",
            "authorization",
            "content-type",
        ] {
            assert!(
                allowed.split(',').any(|h| h.trim() == needed),
                "{path}: {needed} missing from {allowed:?}"
            );
        }
        assert!(
            response
                .head
                .header("access-control-max-age")
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{path}: {:?}",
            response.head
        );
    }
    // A preflight for a path that does not exist is still a 404.
    let response = preflight(&server, "/nowhere");
    assert_eq!(response.head.status, 404);
    // The stream kept going through all of it.
    let id = server.publisher().publish_ok("?topic=t", b"y");
    assert_eq!(sub.next_event().id, Some(id));
}

#[test]
fn allow_origin_star_sends_no_vary() {
    let server = TestServer::start(&["--allow-origin", "*"]);
    let sub = server.subscribe("");
    assert_cors(&sub.head, "*");
    let (response, _) = server.request(&publish_request("", b"x"));
    assert_cors(&response.head, "*");
    let response = preflight(&server, "/publish");
    assert_eq!(response.head.status, 204);
    assert_cors(&response.head, "*");
}

#[test]
fn without_allow_origin_no_cors_header_is_sent_and_preflight_is_405() {
    let server = TestServer::start(&[]);
    let request = format!("GET /events HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\n\r\n");
    let sub = server.subscribe_raw(request.as_bytes());
    assert_no_cors(&sub.head);
    let (response, _) = server.request(&publish_request("", b"x"));
    assert_no_cors(&response.head);
    let response = server.expect_error(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n", 404);
    assert_no_cors(&response.head);
    for (path, method) in [("/events", "GET"), ("/publish", "POST"), ("/health", "GET")] {
        let response = preflight(&server, path);
        assert_error(&response, 405);
        assert_no_cors(&response.head);
        let allow = response.head.header("allow").unwrap_or("");
        assert!(
            allow.split(',').any(|m| m.trim() == method),
            "{path}: Allow {allow:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Listening on the network

#[test]
fn non_loopback_listen_without_a_token_refuses_to_start() {
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        assert_cli_rejected(
            &["--listen", listen],
            &["--publish-token", "--insecure-open-publish"],
        );
    }
}

#[test]
fn non_loopback_listen_with_a_token_starts_and_enforces_it() {
    let server = TestServer::start(&["--listen", "0.0.0.0:0", "--publish-token", "net-token"]);
    assert!(server.addr().ip().is_unspecified(), "{}", server.addr());
    let mut conn = server.http();
    conn.send(&publish_with(None, "x"));
    assert_error(&conn.read_response(deadline()), 401);
    let mut conn = server.http();
    conn.send(&publish_with(Some("Bearer net-token"), "x"));
    assert_publish_ok(&conn.read_response(deadline()));
}

#[test]
fn non_loopback_listen_with_env_token_or_insecure_flag_starts() {
    let server = TestServer::start_env(
        &["--listen", "0.0.0.0:0"],
        &[("SSELOOP_PUBLISH_TOKEN", "env-token")],
    );
    let mut conn = server.http();
    conn.send(&publish_with(None, "x"));
    assert_error(&conn.read_response(deadline()), 401);

    let server = TestServer::start(&["--listen", "0.0.0.0:0", "--insecure-open-publish"]);
    let mut conn = server.http();
    conn.send(&publish_with(None, "open"));
    assert_publish_ok(&conn.read_response(deadline()));
}

#[test]
fn bad_token_and_origin_values_are_rejected() {
    for bad in ["", "two words", "tab\there", "line\nbreak"] {
        assert_cli_rejected(&["--publish-token", bad], &["--publish-token"]);
    }
    assert_cli_rejected(&["--publish-token"], &["--publish-token"]);
    for bad in [
        "",
        "app.example.com",
        "ftp://app.example.com",
        "null",
        "https://a.example, https://b.example",
        "https://a.example\r\nX-Injected: 1",
        "https://a.example\nX-Injected: 1",
        "**",
    ] {
        assert_cli_rejected(&["--allow-origin", bad], &["--allow-origin"]);
    }
}
