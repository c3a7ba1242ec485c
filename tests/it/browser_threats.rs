//! What a page in the user's browser could do to a loopback sseloop, and the
//! framing a proxy in front could read differently: the `Host` checks
//! (RFC 9112 §3.2 and the DNS-rebinding defence), the Origin check on
//! publishing, the chunked body bounded as a whole and parsed strictly, and
//! `HEAD`. Raw sockets against the real server, plus real browsers posting
//! from another origin (`browsers` below, left out with the other
//! real-client tests by `SSELOOP_SKIP_REAL_CLIENTS=1`); a same-origin page
//! publishing in a real browser is `inspector.rs` (the page at `/`).

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use crate::support::{HttpConn, Response, TestServer, assert_error, assert_publish_ok, deadline};

/// A request for `path` with these header lines (each ending in CRLF).
fn request(method: &str, path: &str, fields: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\n{fields}\r\n").into_bytes()
}

/// A publish of `body` to topic `t` with these header lines.
fn publish_with(fields: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /publish?topic=t HTTP/1.1\r\n{fields}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn published(server: &TestServer) -> u64 {
    server.metric("sseloop_events_published_total")
}

// ---------------------------------------------------------------------------
// Host

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, with two, or with one
/// that is not `uri-host[:port]` gets 400 and the close; HTTP/1.0 may omit
/// it. None of the refused publishes publishes.
#[test]
fn http11_without_exactly_one_valid_host_is_400() {
    let server = TestServer::start(&[]);
    let bad_hosts = [
        "",
        "Host: \r\n",
        "Host: localhost\r\nHost: localhost\r\n",
        "Host: localhost\r\nhost: 127.0.0.1\r\n",
        "Host: local host\r\n",
        "Host: localhost:http\r\n",
        "Host: localhost:65536\r\n",
        "Host: localhost/events\r\n",
        "Host: user@localhost\r\n",
        "Host: ::1\r\n",
        "Host: [::1\r\n",
    ];
    for fields in bad_hosts {
        server.expect_error(&request("GET", "/health", fields), 400);
        server.expect_error(&request("GET", "/events", fields), 400);
        server.expect_error(&publish_with(fields, "no"), 400);
    }
    let (response, _conn) = server.request(b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(response.text(), "ok");
    assert_eq!(published(&server), 0);
}

/// DNS rebinding: on a loopback address, a Host that is not a loopback name
/// or address gets 421 on every path, before routing and before the token,
/// and what it sent is not published; loopback names and addresses are
/// served with any port, in any case, with a trailing dot.
#[test]
fn rebinding_host_gets_421_on_loopback_and_loopback_names_are_served() {
    let server = TestServer::start(&["--publish-token", "tok"]);
    let port = server.addr().port();
    let mut sub = server.subscribe_ready("?topic=t");
    let foreign = [
        format!("attacker.example:{port}"),
        "attacker.example".to_string(),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.1.nip.example:{port}"),
        format!("192.168.1.20:{port}"),
    ];
    for host in &foreign {
        let fields = format!("Host: {host}\r\n");
        for path in ["/health", "/events?topic=t", "/metrics", "/", "/nowhere"] {
            let response = server.expect_error(&request("GET", path, &fields), 421);
            assert_eq!(response.head.reason, "Misdirected Request");
            assert!(response.text().len() < 100, "{:?}", response.text());
        }
        let fields = format!("Host: {host}\r\nAuthorization: Bearer tok\r\n");
        server.expect_error(&publish_with(&fields, "rebound"), 421);
    }
    for host in [
        format!("localhost:{port}"),
        format!("LocalHost.:{port}"),
        format!("app.localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.3.2.1".to_string(),
        format!("[::1]:{port}"),
    ] {
        let (response, _conn) =
            server.request(&request("GET", "/health", &format!("Host: {host}\r\n")));
        assert_eq!(response.head.status, 200, "{host}: {:?}", response.head);
    }
    let (response, _conn) = server.request(&publish_with(
        "Host: localhost\r\nAuthorization: Bearer tok\r\n",
        "marker",
    ));
    let id = assert_publish_ok(&response);
    assert_eq!(
        sub.next_event().id,
        Some(id),
        "a rebound publish got through"
    );
    assert_eq!(published(&server), 1);
}

/// `--allow-host NAME` (repeatable): that name is served with any port, as
/// are the loopback names still; other names keep getting 421. A page at
/// the allowed name is same-origin, so it may publish too.
#[test]
fn allow_host_names_are_served_on_loopback() {
    let server = TestServer::start(&[
        "--allow-host",
        "sse.example",
        "--allow-host",
        "Other.Example.",
    ]);
    let mut sub =
        server.subscribe_raw(b"GET /events?topic=t HTTP/1.1\r\nHost: sse.example:8443\r\n\r\n");
    sub.expect_connected();
    for host in [
        "sse.example",
        "SSE.example.:80",
        "other.example",
        "localhost",
    ] {
        let (response, _conn) =
            server.request(&request("GET", "/health", &format!("Host: {host}\r\n")));
        assert_eq!(response.head.status, 200, "{host}: {:?}", response.head);
    }
    server.expect_error(&request("GET", "/health", "Host: evil.example\r\n"), 421);
    server.expect_error(&request("GET", "/health", "Host: app.sse.example\r\n"), 421);
    let (response, _conn) = server.request(&publish_with(
        "Host: sse.example:8443\r\nOrigin: http://sse.example:8443\r\n",
        "from the allowed name",
    ));
    let id = assert_publish_ok(&response);
    assert_eq!(sub.next_event().id, Some(id));
}

/// Off loopback the Host is not checked unless `--allow-host` is given;
/// then other names get 421 (the loopback ones are still served).
#[test]
fn off_loopback_only_allow_host_names_are_checked() {
    let open = TestServer::start(&["--listen", "0.0.0.0:0", "--insecure-open-publish"]);
    let (response, _conn) = open.request(&request("GET", "/health", "Host: any.example\r\n"));
    assert_eq!(response.head.status, 200);

    let listed = TestServer::start(&[
        "--listen",
        "0.0.0.0:0",
        "--insecure-open-publish",
        "--allow-host",
        "sse.example",
    ]);
    let (response, _conn) = listed.request(&request("GET", "/health", "Host: sse.example\r\n"));
    assert_eq!(response.head.status, 200);
    let (response, _conn) = listed.request(&request("GET", "/health", "Host: 127.0.0.1\r\n"));
    assert_eq!(response.head.status, 200);
    listed.expect_error(&request("GET", "/health", "Host: any.example\r\n"), 421);
}

// ---------------------------------------------------------------------------
// Origin

/// A publish whose Origin is neither the server's own (`http://` + Host) nor
/// the `--allow-origin` one gets 403, with the token or without; `null` too.
/// The own origin and the allowed one publish (with the token); the
/// subscriber gets exactly those events, and subscribing from another
/// origin is not affected.
#[test]
fn cross_origin_publish_is_403_token_or_not() {
    const APP: &str = "https://app.example";
    let server = TestServer::start(&["--publish-token", "tok", "--allow-origin", APP]);
    let own = format!("http://{}", server.addr());
    let host = format!("Host: {}\r\n", server.addr());
    let mut sub = server.subscribe_raw(
        format!("GET /events?topic=t HTTP/1.1\r\n{host}Origin: https://attacker.example\r\n\r\n")
            .as_bytes(),
    );
    sub.expect_connected();

    for origin in [
        "https://attacker.example",
        "null",
        "http://localhost:1",
        &format!("https://{}", server.addr()),
        "https://app.example.attacker.example",
    ] {
        for auth in ["", "Authorization: Bearer tok\r\n"] {
            let fields = format!("{host}Origin: {origin}\r\n{auth}");
            let response = server.expect_error(&publish_with(&fields, "cross-site"), 403);
            assert!(response.text().len() < 100, "{:?}", response.text());
        }
    }
    // The own origin still needs the token.
    server.expect_error(&publish_with(&format!("{host}Origin: {own}\r\n"), "x"), 401);

    let mut ids = Vec::new();
    for origin in [own.as_str(), APP] {
        let fields = format!("{host}Origin: {origin}\r\nAuthorization: Bearer tok\r\n");
        let (response, _conn) = server.request(&publish_with(&fields, origin));
        ids.push(assert_publish_ok(&response));
    }
    for (id, origin) in ids.iter().zip([own.as_str(), APP]) {
        let event = sub.next_event();
        assert_eq!((event.id.as_ref(), event.data.as_str()), (Some(id), origin));
    }
    assert_eq!(published(&server), 2);
}

/// Without a token or `--allow-origin`, the server's own origin publishes
/// (the inspector page is one) and every other origin gets 403.
#[test]
fn without_options_only_the_own_origin_publishes() {
    let server = TestServer::start(&[]);
    let host = format!("Host: localhost:{}\r\n", server.addr().port());
    let own = format!("Origin: http://localhost:{}\r\n", server.addr().port());
    let (response, _conn) = server.request(&publish_with(&format!("{host}{own}"), "own"));
    assert_publish_ok(&response);
    let other = format!(
        "{host}Origin: http://127.0.0.1:{}\r\n",
        server.addr().port()
    );
    server.expect_error(&publish_with(&other, "other"), 403);
    assert_eq!(published(&server), 1);
}

/// Behind a proxy that forwards the browser's Host and says the page was
/// served over TLS (`X-Forwarded-Proto: https`, as the README's nginx
/// configurations send it), the page's `https://` origin is the server's
/// own and publishes with no option; a page of another site, and the
/// `http://` page of the same host, still get 403 with that field.
#[test]
fn a_proxy_forwarding_https_makes_its_pages_own_and_no_other() {
    let server = TestServer::start(&["--allow-host", "sse.example"]);
    let host = "Host: sse.example\r\nX-Forwarded-Proto: https\r\n";
    let (response, _conn) = server.request(&publish_with(
        &format!("{host}Origin: https://sse.example\r\n"),
        "own",
    ));
    assert_publish_ok(&response);
    for origin in [
        "https://attacker.example",
        "http://sse.example",
        "https://sse.example:8443",
        "null",
    ] {
        let fields = format!("{host}Origin: {origin}\r\n");
        server.expect_error(&publish_with(&fields, "other"), 403);
    }
    // Without the field, the https page is another origin.
    server.expect_error(
        &publish_with("Host: sse.example\r\nOrigin: https://sse.example\r\n", "x"),
        403,
    );
    assert_eq!(published(&server), 1);
}

// ---------------------------------------------------------------------------
// Chunked bodies

const CHUNKED_HEAD: &str =
    "POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Sends `start`, then `unit` over and over in pieces of about 1 KiB, until
/// the server answers; returns the answer and the bytes sent by then.
fn flood(server: &TestServer, start: &[u8], unit: &[u8]) -> (Response, usize) {
    let mut stream = server.connect();
    stream.write_all(start).unwrap();
    let piece = unit.repeat(1024usize.div_ceil(unit.len()));
    let mut sent = start.len();
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match stream.peek(&mut [0u8; 1]) {
            Ok(0) => panic!("closed without an answer after {sent} bytes"),
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading after {sent} bytes: {e}"),
        }
        assert!(sent < 8 << 20, "no answer after {sent} bytes");
        assert!(Instant::now() < end, "no answer after {sent} bytes");
        if stream.write_all(&piece).is_err() {
            // Closed; the answer is waiting to be read.
            break;
        }
        sent += piece.len();
    }
    let mut conn = HttpConn::new(stream);
    (conn.read_response(deadline()), sent)
}

/// A body of one data byte per chunk and a kilobyte of extensions each (no
/// line over the old per-line bound) is refused with 413 once its
/// extensions pass the head limit (8 KiB), not read to its megabytes.
#[test]
fn chunk_extension_flood_is_413_within_the_head_limit() {
    let server = TestServer::start(&[]);
    let unit = format!("1;{}\r\nx\r\n", "e".repeat(1000));
    let (response, sent) = flood(&server, CHUNKED_HEAD.as_bytes(), unit.as_bytes());
    assert_error(&response, 413);
    assert!(sent < 256 << 10, "refused only after {sent} bytes");
    assert_eq!(published(&server), 0);
}

/// A trailer of endless small fields is refused with 431 once it has more
/// fields than a head may (64), and one of endless long fields once it is
/// larger than a head may be (8 KiB).
#[test]
fn trailer_floods_are_431_within_the_head_limits() {
    let server = TestServer::start(&[]);
    let start = format!("{CHUNKED_HEAD}1\r\nx\r\n0\r\n");
    for unit in [
        "X-T: v\r\n".to_string(),
        format!("X-T: {}\r\n", "v".repeat(900)),
    ] {
        let (response, sent) = flood(&server, start.as_bytes(), unit.as_bytes());
        assert_error(&response, 431);
        assert!(sent < 256 << 10, "refused only after {sent} bytes");
    }
    assert_eq!(published(&server), 0);
}

/// RFC 9112 §7.1 read strictly: a lone LF or CR ends no line, a chunk size
/// has no whitespace around it, an extension has none around `;` or `=`.
/// Each is 400 and publishes nothing; the well-formed body beside them
/// publishes.
#[test]
fn loose_chunked_framing_is_400() {
    let server = TestServer::start(&[]);
    let bodies: &[&str] = &[
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello\r\n0\n\r\n",
        "5\r\nhello\r\n0\r\n\n",
        "5\r\nhello\r\n0\r\nX: y\n\r\n",
        "5\rhello\r\n0\r\n\r\n",
        "5\r\nhello\rX0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "5\t\r\nhello\r\n0\r\n\r\n",
        "5 ;a=b\r\nhello\r\n0\r\n\r\n",
        "5; a=b\r\nhello\r\n0\r\n\r\n",
        "5;a = b\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nX: y\r\n folded\r\n\r\n",
    ];
    for body in bodies {
        let raw = format!("{CHUNKED_HEAD}{body}");
        server.expect_error(raw.as_bytes(), 400);
    }
    let (response, _conn) = server
        .request(format!("{CHUNKED_HEAD}5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX: y\r\n\r\n").as_bytes());
    assert_publish_ok(&response);
    assert_eq!(published(&server), 1);
}

/// A lone LF in the request head (which httparse takes for a line end) is
/// 400, and so is a lone CR.
#[test]
fn loose_line_ends_in_the_head_are_400() {
    let server = TestServer::start(&[]);
    for raw in [
        "GET /health HTTP/1.1\nHost: localhost\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: localhost\n\r\n",
        "GET /health HTTP/1.1\r\nHost: localhost\r\n\n",
        "GET /health HTTP/1.1\nHost: localhost\n\n",
        "GET /health HTTP/1.1\rHost: localhost\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: localhost\rX: y\r\n\r\n",
    ] {
        server.expect_error(raw.as_bytes(), 400);
    }
    let smuggled =
        "POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nX: a\nContent-Length: 5\r\n\r\nhello";
    server.expect_error(smuggled.as_bytes(), 400);
    assert_eq!(published(&server), 0);
}

// ---------------------------------------------------------------------------
// HEAD

/// `HEAD` on `/health`, `/` and `/metrics` gets the GET's head (same type,
/// the body's real Content-Length) and no body: the GET pipelined behind it
/// on the same connection is read right after the head. `/events` and
/// `/publish` answer 405 with what they take.
#[test]
fn head_is_answered_like_get_without_the_body() {
    let server = TestServer::start(&[]);
    for path in ["/health", "/", "/metrics"] {
        let mut conn = server.http();
        let head = request("HEAD", path, "Host: localhost\r\n");
        let get = request("GET", path, "Host: localhost\r\n");
        conn.send(&[head, get].concat());
        let head = conn.read_head(deadline());
        let get = conn.read_response(deadline());
        assert_eq!((head.status, get.head.status), (200, 200), "{path}");
        for name in ["content-type", "cache-control", "connection"] {
            assert_eq!(head.header(name), get.head.header(name), "{path}: {name}");
        }
        let length: usize = head.header("content-length").unwrap().parse().unwrap();
        if path == "/metrics" {
            // Counters move between the two answers.
            assert!(length > 100, "{path}: Content-Length {length}");
        } else {
            assert_eq!(length, get.body.len(), "{path}");
        }
        // Still kept alive after both.
        conn.send(&request("GET", "/health", "Host: localhost\r\n"));
        assert_eq!(conn.read_response(deadline()).text(), "ok");
    }
    for (path, allow) in [("/events", "GET"), ("/publish", "POST")] {
        let response = server.expect_error(&request("HEAD", path, "Host: localhost\r\n"), 405);
        assert_eq!(response.head.header("allow"), Some(allow), "{path}");
    }
    let response = server.expect_error(&request("PUT", "/health", "Host: localhost\r\n"), 405);
    assert_eq!(response.head.header("allow"), Some("GET, HEAD"));
}

// ---------------------------------------------------------------------------
// Real browsers

/// A page on another origin (the collector's port) posting to sseloop the
/// way any page can without a preflight: `fetch(..., {mode: 'no-cors'})`
/// with a `text/plain` body.
mod browsers {
    use crate::real::browser::Browser;
    use crate::real::browser_lock;
    use crate::real::collector::Collector;
    use crate::support::TestServer;

    /// Browser start-up to the page's reports, on a busy 2-core machine.
    const PAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

    /// The page posts first to a server that does not allow its origin, then
    /// to one started with `--allow-origin` its origin. The first refuses it
    /// (403, seen in its log) and publishes nothing: its subscriber's next
    /// event is the test's own, and it counts one publish. The second
    /// publishes the page's event, so the page did post what the first
    /// refused.
    fn cross_origin_publish_is_refused(browser: Browser) {
        let program = browser.program();
        let _lock = browser_lock();
        let collector = Collector::start();
        let origin = collector.origin();
        let refusing = TestServer::start(&["--log-level", "debug"]);
        let allowing = TestServer::start(&["--allow-origin", &origin]);
        let mut refused_sub = refusing.subscribe_ready("?topic=x");
        let mut allowed_sub = allowing.subscribe_ready("?topic=x");

        let target = |server: &TestServer| format!("http://{}/publish?topic=x", server.addr());
        let url = collector.page_url(
            "cross-publish.html",
            &[
                ("first", &target(&refusing)),
                ("second", &target(&allowing)),
                ("data", "from the page"),
            ],
        );
        let mut running = browser.launch(&program, &url);
        let posted = collector.wait_kind_while_running(running.group(), "posted", 2, PAGE_TIMEOUT);
        assert_eq!(
            posted
                .iter()
                .map(|r| r.get("to").unwrap_or(""))
                .collect::<Vec<_>>(),
            ["first", "second"],
            "{browser:?}: {posted:?}"
        );
        // no-cors: the page learns nothing of either answer.
        for report in &posted {
            assert_eq!(
                report.get("type"),
                Some("opaque"),
                "{browser:?}: {report:?}"
            );
        }
        drop(running);

        assert!(
            refusing.await_log(&["403", "another origin"]).is_some(),
            "{browser:?}: the refusing server never refused the page; log:\n{}",
            refusing.log()
        );
        let id = refusing.publisher().publish_ok("?topic=x", b"marker");
        let event = refused_sub.next_event();
        assert_eq!(
            (event.id, event.data.as_str()),
            (Some(id), "marker"),
            "{browser:?}: the cross-origin page published"
        );
        assert_eq!(refusing.metric("sseloop_events_published_total"), 1);

        let event = allowed_sub.next_event();
        assert_eq!(event.data, "from the page", "{browser:?}");
    }

    #[test]
    fn chromium_cross_origin_publish_is_refused() {
        cross_origin_publish_is_refused(Browser::Chromium);
    }

    #[test]
    fn firefox_cross_origin_publish_is_refused() {
        cross_origin_publish_is_refused(Browser::Firefox);
    }
}
