//! Private topics (`--jwt-key`), against the real server over raw sockets,
//! with tokens minted by PyJWT (`tests/pyjwt/mint.py`, installed by test.sh)
//! as an application minting tokens for a Mercure-style hub would: the
//! server is checked against tokens it did not write. `browsers` has the
//! Chromium test of the cookie.

mod browsers;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{
    BodyEnd, Event, Next, Response, Subscriber, TestServer, assert_cli_rejected, assert_error,
    assert_publish_ok, metric_value,
};

/// The key the servers here check tokens with: 64 bytes, so PyJWT signs
/// HS512 with it without a warning.
pub const KEY: &str = "private-topics-test-key/0123456789abcdef0123456789abcdef012345678";
/// The `--publish-token` of the servers that have one.
const PUBLISH_TOKEN: &str = "publish-s3cret";
/// The server's slack on `exp` and `nbf`, in seconds (src/auth.rs).
const LEEWAY: i64 = 5;

// ---------------------------------------------------------------------------
// Minting

fn pyjwt_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pyjwt/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./test.sh (it installs PyJWT there), or `python3 -m venv \
         tests/pyjwt/venv && tests/pyjwt/venv/bin/pip install -r tests/pyjwt/requirements.txt`",
        python.display()
    );
    python
}

/// Mints one token per spec (`{"claims", "key", "alg", "headers"}`) with
/// PyJWT, in one run of `mint.py`.
pub fn mint(specs: &[Value]) -> Vec<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pyjwt/mint.py");
    let mut child = Command::new(pyjwt_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mint.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::from(specs.to_vec()).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().expect("run mint.py");
    assert!(
        output.status.success(),
        "mint.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("mint.py prints a JSON list of tokens")
}

/// An HS256 token with `KEY` and these claims.
pub fn hs256(claims: Value) -> Value {
    json!({"claims": claims, "key": KEY, "alg": "HS256"})
}

/// Mercure-style claims: these subscribe and publish selectors, and `exp`
/// when given.
pub fn claims(subscribe: &[&str], publish: &[&str], exp: Option<i64>) -> Value {
    let mut c = json!({"mercure": {"subscribe": subscribe, "publish": publish}});
    if let Some(exp) = exp {
        c["exp"] = exp.into();
    }
    c
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An hour from now.
fn later() -> Option<i64> {
    Some(unix_now() + 3600)
}

// ---------------------------------------------------------------------------
// Requests

/// Where a request carries its token.
#[derive(Clone, Copy, Debug)]
enum Carrier<'a> {
    None,
    Header(&'a str),
    Cookie(&'a str),
    Query(&'a str),
}

/// `GET /events?QUERY` with the token in `carrier`, and `extra` header lines.
fn subscribe_request(query: &str, carrier: Carrier, extra: &str) -> Vec<u8> {
    let (query, header) = match carrier {
        Carrier::None => (query.to_string(), String::new()),
        Carrier::Header(t) => (query.to_string(), format!("Authorization: Bearer {t}\r\n")),
        Carrier::Cookie(t) => (
            query.to_string(),
            format!("Cookie: theme=dark; sseloop_token={t}; lang=en\r\n"),
        ),
        Carrier::Query(t) => (format!("{query}&access_token={t}"), String::new()),
    };
    format!("GET /events?{query} HTTP/1.1\r\nHost: localhost\r\n{header}{extra}\r\n").into_bytes()
}

/// A subscriber that was let in, up to its `: connected`.
fn subscribe(server: &TestServer, query: &str, carrier: Carrier) -> Subscriber {
    let mut sub = server.subscribe_raw(&subscribe_request(query, carrier, ""));
    sub.expect_connected();
    sub
}

/// `POST /publish?QUERY` with `extra` header lines.
fn publish_request(query: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /publish?{query} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Publishes with `--publish-token`; returns the id.
fn publish_ok(server: &TestServer, query: &str, body: &str) -> String {
    let (response, _conn) = server.request(&publish_request(query, &bearer(PUBLISH_TOKEN), body));
    assert_publish_ok(&response)
}

/// The answer to a refused request: the status, `WWW-Authenticate` on a
/// 401, the reason `why` in the body, and none of the token's parts.
fn expect_refused(
    server: &TestServer,
    request: &[u8],
    status: u16,
    why: &str,
    token: &str,
) -> Response {
    let response = server.expect_error(request, status);
    let body = response.text();
    assert!(
        body.contains(why),
        "{status} body {body:?}, expected {why:?}"
    );
    if status == 401 {
        assert_eq!(response.head.header("www-authenticate"), Some("Bearer"));
    }
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(
            !body.contains(part),
            "the answer echoes the token: {body:?}"
        );
        assert!(!format!("{:?}", response.head).contains(part));
    }
    response
}

/// Reads events until the one with id `last`; returns their data in order.
fn data_through(sub: &mut Subscriber, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let Event { id, data, .. } = sub.next_event();
        seen.push(data);
        if id.as_deref() == Some(last) {
            return seen;
        }
    }
}

// ---------------------------------------------------------------------------
// Subscribing

/// A token whose `subscribe` claim names the topic, or is `*`, opens a
/// stream of that private topic, and its events arrive.
#[test]
fn a_token_for_the_topic_or_star_subscribes_and_receives() {
    let server = TestServer::start(&["--jwt-key", KEY, "--publish-token", PUBLISH_TOKEN]);
    let [user1, star] = <[String; 2]>::try_from(mint(&[
        hs256(claims(&["user/1"], &[], later())),
        hs256(claims(&["*"], &[], None)),
    ]))
    .unwrap();
    let mut one = subscribe(&server, "topic=user/1", Carrier::Header(&user1));
    let mut all = subscribe(&server, "topic=user/1&topic=user/2", Carrier::Header(&star));
    let first = publish_ok(&server, "topic=user/1", "for user 1");
    let second = publish_ok(&server, "topic=user/2", "for user 2");
    assert_eq!(data_through(&mut one, &first), ["for user 1"]);
    assert_eq!(
        data_through(&mut all, &second),
        ["for user 1", "for user 2"]
    );
}

/// 401 for a missing, malformed, badly signed, expired or not-yet-valid
/// token, and for `alg` none, HS512 or RS256; 403 for a valid token that
/// does not cover every topic asked for. Each answer says which, without
/// repeating the token.
#[test]
fn refusals_say_what_was_wrong_without_echoing_the_token() {
    let server = TestServer::start(&["--jwt-key", KEY, "--public-topic", "news"]);
    let now = unix_now();
    let star = json!({"mercure": {"subscribe": ["*"]}});
    let tokens = mint(&[
        hs256(claims(&["user/1"], &[], later())),
        hs256(claims(&["*"], &[], Some(now - 60))),
        hs256(json!({"mercure": {"subscribe": ["*"]}, "nbf": now + 600})),
        json!({"claims": star, "key": "another-key-that-is-also-long-enough-0123456789", "alg": "HS256"}),
        json!({"claims": star, "alg": "none"}),
        json!({"claims": star, "key": KEY, "alg": "HS512"}),
        json!({"claims": star, "alg": "RS256"}),
        hs256(json!({"mercure": {"subscribe": "user/1"}})),
    ]);
    let [
        user1,
        expired,
        early,
        wrong_key,
        none,
        hs512,
        rs256,
        bad_claims,
    ] = <[String; 8]>::try_from(tokens).unwrap();
    let truncated = &user1[..user1.len() - 4];
    // user/1's signature on claims that say `*`: the classic forgery.
    let parts = |t: &str| t.split('.').map(str::to_string).collect::<Vec<_>>();
    let (mine, wider) = (parts(&user1), parts(&expired));
    let spliced = format!("{}.{}.{}", mine[0], wider[1], mine[2]);
    let q = "topic=user/1";
    let cases: &[(&str, Carrier, u16, &str)] = &[
        (q, Carrier::None, 401, "private"),
        ("topic=news&topic=user/1", Carrier::None, 401, "private"),
        (
            "topic=user/2",
            Carrier::Header(&user1),
            403,
            "does not allow",
        ),
        (
            "topic=user/1&topic=user/2",
            Carrier::Header(&user1),
            403,
            "does not allow",
        ),
        (q, Carrier::Header(&expired), 401, "expired"),
        (q, Carrier::Header(&early), 401, "not valid yet"),
        (q, Carrier::Header(&wrong_key), 401, "signature"),
        (q, Carrier::Header(&none), 401, "HS256"),
        (q, Carrier::Header(&hs512), 401, "HS256"),
        (q, Carrier::Header(&rs256), 401, "HS256"),
        (q, Carrier::Header(&bad_claims), 401, "claims"),
        (q, Carrier::Header(&spliced), 401, "signature"),
        // Refused whether its last character decodes or not.
        (q, Carrier::Header(truncated), 401, "the token"),
        (
            q,
            Carrier::Header("not-a-jwt"),
            401,
            "not a well-formed JWT",
        ),
        (q, Carrier::Cookie("a.b.c"), 401, "not a well-formed JWT"),
        (q, Carrier::Query(&expired), 401, "expired"),
        // A bad token is refused even where none was needed.
        ("topic=news", Carrier::Header(&expired), 401, "expired"),
        ("", Carrier::Cookie(&wrong_key), 401, "signature"),
    ];
    for &(query, carrier, status, why) in cases {
        let token = match carrier {
            Carrier::Header(t) | Carrier::Cookie(t) | Carrier::Query(t) => t,
            Carrier::None => "",
        };
        let request = subscribe_request(query, carrier, "");
        expect_refused(&server, &request, status, why, token);
    }
    // Two tokens in one carrier: which one is meant cannot be told.
    let two = subscribe_request(q, Carrier::Header(&user1), &bearer(&user1));
    expect_refused(&server, &two, 401, "more than one", &user1);
    // The token passed: the same requests with it are served.
    subscribe(&server, q, Carrier::Header(&user1));
    subscribe(&server, "topic=news", Carrier::None);
}

/// The token is taken from `Authorization: Bearer`, from the
/// `sseloop_token` cookie among others, and from `?access_token=`; the
/// header wins over the others.
#[test]
fn the_token_works_in_each_carrier() {
    let server = TestServer::start(&["--jwt-key", KEY, "--publish-token", PUBLISH_TOKEN]);
    let [user1, user2] = <[String; 2]>::try_from(mint(&[
        hs256(claims(&["user/1"], &[], later())),
        hs256(claims(&["user/2"], &[], later())),
    ]))
    .unwrap();
    let q = "topic=user/1";
    let mut subs = vec![
        subscribe(&server, q, Carrier::Header(&user1)),
        subscribe(&server, q, Carrier::Cookie(&user1)),
        subscribe(&server, q, Carrier::Query(&user1)),
    ];
    let lower = format!(
        "GET /events?{q} HTTP/1.1\r\nHost: localhost\r\nauthorization: bearer {user1}\r\n\r\n"
    );
    let mut sub = server.subscribe_raw(lower.as_bytes());
    sub.expect_connected();
    subs.push(sub);
    // The header's token is the one that counts.
    let both = subscribe_request(q, Carrier::Cookie(&user2), &bearer(&user1));
    let mut sub = server.subscribe_raw(&both);
    sub.expect_connected();
    subs.push(sub);
    let refused = subscribe_request(q, Carrier::Cookie(&user1), &bearer(&user2));
    expect_refused(&server, &refused, 403, "does not allow", &user2);
    let id = publish_ok(&server, q, "one");
    for sub in &mut subs {
        assert_eq!(data_through(sub, &id), ["one"]);
    }
}

/// A stream opened with a token that has `exp` ends cleanly (the last
/// chunk) when the token stops being accepted, `exp` plus the leeway; the
/// same token is then refused, and a fresh one resumes with
/// `Last-Event-ID`, missing nothing.
#[test]
fn a_stream_ends_cleanly_when_its_token_expires_and_a_fresh_token_resumes() {
    let server = TestServer::start(&["--jwt-key", KEY, "--publish-token", PUBLISH_TOKEN]);
    let exp = unix_now() + 1;
    let [short, fresh] = <[String; 2]>::try_from(mint(&[
        hs256(claims(&["user/1"], &[], Some(exp))),
        hs256(claims(&["user/1"], &[], later())),
    ]))
    .unwrap();
    let q = "topic=user/1";
    let mut sub = subscribe(&server, q, Carrier::Cookie(&short));
    let before = publish_ok(&server, q, "before exp");
    assert_eq!(data_through(&mut sub, &before), ["before exp"]);
    // The end comes at exp + leeway: awaited past the harness's usual bound.
    let ends_at = UNIX_EPOCH + Duration::from_secs((exp + LEEWAY) as u64);
    let wait = ends_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    match sub.poll(Instant::now() + wait + Duration::from_secs(3)) {
        Next::End(BodyEnd::Clean) => {}
        other => panic!("expected the stream's clean end at exp, got {other:?}"),
    }
    let early = ends_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(
        early < Duration::from_millis(300),
        "the stream ended {early:?} before its token expired"
    );
    let late = SystemTime::now()
        .duration_since(ends_at)
        .unwrap_or_default();
    assert!(
        late < Duration::from_millis(1500),
        "the stream ended {late:?} after its token expired"
    );
    sub.expect_closed();
    let missed = publish_ok(&server, q, "while away");
    let again = subscribe_request(q, Carrier::Cookie(&short), "");
    expect_refused(&server, &again, 401, "expired", &short);
    let resume = subscribe_request(
        q,
        Carrier::Cookie(&fresh),
        &format!("Last-Event-ID: {before}\r\n"),
    );
    let mut sub = server.subscribe_raw(&resume);
    sub.expect_connected();
    assert_eq!(data_through(&mut sub, &missed), ["while away"]);
}

// ---------------------------------------------------------------------------
// Publishing

/// A publish is allowed by `--publish-token`, or by a JWT in the
/// `Authorization` header whose `publish` claim covers every topic named
/// (a broadcast needs `*`); anything else is refused before the event is
/// published: no token (even for a public topic), a cookie or query token,
/// a topic not covered, a subscribe-only token, an expired one. With
/// `--jwt-key` alone publishing is no longer open.
#[test]
fn publish_by_claim_or_publish_token_and_refused_without() {
    let server = TestServer::start(&[
        "--jwt-key",
        KEY,
        "--publish-token",
        PUBLISH_TOKEN,
        "--public-topic",
        "news",
    ]);
    let tokens = mint(&[
        hs256(claims(&["*"], &[], later())),
        hs256(claims(&[], &["user/1"], later())),
        hs256(claims(&[], &["*"], later())),
        hs256(claims(&["*"], &[], later())),
        hs256(claims(&[], &["*"], Some(unix_now() - 60))),
    ]);
    let [reader, user1, star, subscribe_only, expired] = <[String; 5]>::try_from(tokens).unwrap();
    let mut sub = subscribe(
        &server,
        "topic=user/1&topic=user/2&topic=news",
        Carrier::Header(&reader),
    );
    let publish = |query: &str, extra: &str, body: &str| {
        server.request(&publish_request(query, extra, body)).0
    };
    let mut published = vec![assert_publish_ok(&publish(
        "topic=user/1",
        &bearer(&user1),
        "by claim",
    ))];
    published.push(assert_publish_ok(&publish(
        "",
        &bearer(&star),
        "broadcast by *",
    )));
    published.push(assert_publish_ok(&publish(
        "topic=user/2&topic=news",
        &bearer(&star),
        "by *",
    )));
    published.push(assert_publish_ok(&publish(
        "topic=user/2",
        &bearer(PUBLISH_TOKEN),
        "by publish token",
    )));
    let refused: &[(&str, String, u16, &str, &str)] = &[
        (
            "topic=user/2",
            bearer(&user1),
            403,
            "does not allow publishing",
            &user1,
        ),
        (
            "topic=user/1&topic=user/2",
            bearer(&user1),
            403,
            "does not allow publishing",
            &user1,
        ),
        ("", bearer(&user1), 403, "broadcast", &user1),
        (
            "topic=user/1",
            bearer(&subscribe_only),
            403,
            "does not allow publishing",
            &subscribe_only,
        ),
        ("topic=user/1", bearer(&expired), 401, "expired", &expired),
        ("topic=news", String::new(), 401, "publishing needs", ""),
        (
            "topic=user/1",
            format!("Cookie: sseloop_token={user1}\r\n"),
            401,
            "publishing needs",
            &user1,
        ),
        (
            &format!("topic=user/1&access_token={user1}"),
            String::new(),
            401,
            "publishing needs",
            &user1,
        ),
    ];
    for (query, extra, status, why, token) in refused {
        expect_refused(
            &server,
            &publish_request(query, extra, "refused"),
            *status,
            why,
            token,
        );
    }
    // Refused before the body: only the head is sent.
    expect_refused(
        &server,
        format!(
            "POST /publish?topic=user/2 HTTP/1.1\r\nHost: localhost\r\n{}Transfer-Encoding: chunked\r\n\r\n",
            bearer(&user1)
        )
        .as_bytes(),
        403,
        "does not allow publishing",
        &user1,
    );
    let last = published.last().unwrap().clone();
    assert_eq!(
        data_through(&mut sub, &last),
        ["by claim", "broadcast by *", "by *", "by publish token"]
    );

    let jwt_only = TestServer::start(&["--jwt-key", KEY]);
    expect_refused(
        &jwt_only,
        &publish_request("topic=x", "", "x"),
        401,
        "publishing needs",
        "",
    );
    let (response, _) = jwt_only.request(&publish_request("topic=x", &bearer(&star), "x"));
    assert_publish_ok(&response);
}

// ---------------------------------------------------------------------------
// What reaches whom

/// The leak case. An event names a public and a private topic, or two
/// users' private topics: it reaches only subscribers allowed every
/// private topic it names, live and in replay. A subscriber of the public
/// topic without the private one never receives it; a publisher that wants
/// to reach two users publishes twice.
#[test]
fn an_event_on_a_public_and_a_private_topic_reaches_only_those_allowed_both_live_or_replayed() {
    let server = TestServer::start(&[
        "--jwt-key",
        KEY,
        "--public-topic",
        "news",
        "--publish-token",
        PUBLISH_TOKEN,
    ]);
    let [alice, bob, both] = <[String; 3]>::try_from(mint(&[
        hs256(claims(&["user/alice"], &[], later())),
        hs256(claims(&["user/bob"], &[], later())),
        hs256(claims(&["user/alice", "user/bob"], &[], later())),
    ]))
    .unwrap();
    let start = publish_ok(&server, "", "start");
    type Who<'a> = (&'a str, &'a str, Carrier<'a>, &'a [&'a str]);
    let who: [Who; 4] = [
        (
            "anonymous",
            "topic=news",
            Carrier::None,
            &["news only", "everyone"],
        ),
        (
            "alice",
            "topic=news&topic=user/alice",
            Carrier::Cookie(&alice),
            &["news and alice", "news only", "everyone"],
        ),
        (
            "bob",
            "topic=news&topic=user/bob",
            Carrier::Cookie(&bob),
            &["news only", "everyone"],
        ),
        (
            "alice and bob",
            "topic=user/alice",
            Carrier::Cookie(&both),
            &["news and alice", "alice and bob", "everyone"],
        ),
    ];
    let mut live: Vec<Subscriber> = who
        .iter()
        .map(|(_, query, carrier, _)| subscribe(&server, query, *carrier))
        .collect();
    publish_ok(&server, "topic=news&topic=user/alice", "news and alice");
    publish_ok(&server, "topic=user/alice&topic=user/bob", "alice and bob");
    publish_ok(&server, "topic=news", "news only");
    let last = publish_ok(&server, "", "everyone");
    // Events arrive in order: whatever was to come before `last` has.
    for ((name, _, _, expected), sub) in who.iter().zip(&mut live) {
        assert_eq!(data_through(sub, &last), *expected, "{name}, live");
    }
    // The same from the history, resumed from before all of them.
    let mut replaying: Vec<Subscriber> = who
        .iter()
        .map(|(_, query, carrier, _)| {
            let request =
                subscribe_request(query, *carrier, &format!("Last-Event-ID: {start}\r\n"));
            let mut sub = server.subscribe_raw(&request);
            sub.expect_connected();
            sub
        })
        .collect();
    let after = publish_ok(&server, "", "after");
    for ((name, _, _, expected), sub) in who.iter().zip(&mut replaying) {
        let mut expected = expected.to_vec();
        expected.push("after");
        assert_eq!(data_through(sub, &after), expected, "{name}, replayed");
    }
}

/// Broadcasts, public topics, `/health`, `/metrics` and the inspector page
/// need no token; `/metrics` names no topic.
#[test]
fn broadcasts_public_topics_health_and_metrics_stay_public() {
    let server = TestServer::start(&[
        "--jwt-key",
        KEY,
        "--public-topic",
        "news",
        "--publish-token",
        PUBLISH_TOKEN,
    ]);
    let [secret] =
        <[String; 1]>::try_from(mint(&[hs256(claims(&["user/secret-name"], &[], later()))]))
            .unwrap();
    let mut broadcasts = subscribe(&server, "", Carrier::None);
    let mut news = subscribe(&server, "topic=news", Carrier::None);
    let mut private = subscribe(&server, "topic=user/secret-name", Carrier::Query(&secret));
    publish_ok(&server, "topic=user/secret-name", "private");
    publish_ok(&server, "topic=news", "news");
    let all = publish_ok(&server, "", "all");
    assert_eq!(data_through(&mut broadcasts, &all), ["all"]);
    assert_eq!(data_through(&mut news, &all), ["news", "all"]);
    assert_eq!(data_through(&mut private, &all), ["private", "all"]);
    for path in ["/health", "/metrics", "/"] {
        let (response, _) =
            server.request(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        assert_eq!(response.head.status, 200, "{path}");
    }
    let metrics = server.metrics();
    assert!(
        !metrics.contains("secret-name") && !metrics.contains("news"),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "sseloop_subscribers"),
        3,
        "{metrics}"
    );
}

/// With `--log-level trace`, no log line holds a token or a part of one:
/// not for the header, the cookie or the query parameter, valid or
/// refused, subscribe or publish.
#[test]
fn no_token_reaches_the_log_even_at_trace_level() {
    let server = TestServer::start(&[
        "--jwt-key",
        KEY,
        "--log-level",
        "trace",
        "--public-topic",
        "news",
    ]);
    let tokens = mint(&[
        hs256(claims(&["user/1"], &["user/1"], later())),
        hs256(claims(&["user/1"], &[], later())),
        hs256(claims(&["user/1"], &[], later())),
        hs256(claims(&["*"], &[], Some(unix_now() - 60))),
        json!({"claims": claims(&["*"], &[], None), "key": "a-key-this-server-does-not-know-about-0123456789", "alg": "HS256"}),
    ]);
    let [header, cookie, query, expired, wrong] = <[String; 5]>::try_from(tokens.clone()).unwrap();
    let q = "topic=user/1";
    let mut subs = vec![
        subscribe(&server, q, Carrier::Header(&header)),
        subscribe(&server, q, Carrier::Cookie(&cookie)),
        subscribe(&server, q, Carrier::Query(&query)),
    ];
    for token in [&expired, &wrong] {
        for carrier in [
            Carrier::Header(token),
            Carrier::Cookie(token),
            Carrier::Query(token),
        ] {
            server.expect_error(&subscribe_request(q, carrier, ""), 401);
        }
    }
    let (response, _) = server.request(&publish_request(q, &bearer(&header), "logged?"));
    let id = assert_publish_ok(&response);
    server.expect_error(&publish_request(q, &bearer(&wrong), "no"), 401);
    for sub in &mut subs {
        assert_eq!(data_through(sub, &id), ["logged?"]);
    }
    // Trace logging was on and wrote the stream bytes.
    server
        .await_log(&["TRACE", "logged?"])
        .unwrap_or_else(|| panic!("no trace line of the event:\n{}", server.log()));
    let log = server.log();
    for token in &tokens {
        for part in token.split('.').skip(1).filter(|p| !p.is_empty()) {
            assert!(!log.contains(part), "a token's part is in the log:\n{log}");
        }
    }
}

// ---------------------------------------------------------------------------
// Start-up

/// A key shorter than 32 bytes is refused at start with status 2 and a
/// line saying so, from the flag or from `SSELOOP_JWT_KEY`; so is
/// `--public-topic` without a key. A 32-byte key from the environment
/// starts the server with private topics.
#[test]
fn a_short_key_is_refused_at_start() {
    let short = "k".repeat(31);
    assert_cli_rejected(&["--jwt-key", &short], &["--jwt-key", "32 bytes"]);
    assert_cli_rejected(
        &["--public-topic", "news"],
        &["--public-topic", "--jwt-key"],
    );
    assert_cli_rejected(
        &["--jwt-key", KEY, "--public-topic", ""],
        &["--public-topic"],
    );
    let output = Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .args(["--listen", "127.0.0.1:0"])
        .env("SSELOOP_JWT_KEY", &short)
        .stdin(Stdio::null())
        .output()
        .expect("run sseloop");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SSELOOP_JWT_KEY") && stderr.contains("32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains(&short), "the key is echoed: {stderr}");

    let key = "k".repeat(32);
    let server = TestServer::start_env(&[], &[("SSELOOP_JWT_KEY", &key)]);
    let response = server.expect_error(&subscribe_request("topic=t", Carrier::None, ""), 401);
    assert_error(&response, 401);
}

/// A stream whose token runs out while it still catches up from the
/// history ends, and used to stay counted in
/// `sseloop_replaying_subscribers` for good.
#[test]
fn a_stream_that_expires_while_replaying_leaves_the_replaying_gauge() {
    let server = TestServer::start(&[
        "--jwt-key",
        KEY,
        "--publish-token",
        PUBLISH_TOKEN,
        "--send-buffer",
        "4KiB",
    ]);
    let big = "x".repeat(40_000);
    let first = publish_ok(&server, "topic=user/1", &big);
    for _ in 0..40 {
        publish_ok(&server, "topic=user/1", &big);
    }
    // Past its exp but within the leeway: the stream ends in about 2 s.
    let [token] = <[String; 1]>::try_from(mint(&[hs256(claims(
        &["user/1"],
        &[],
        Some(unix_now() - (LEEWAY - 2)),
    ))]))
    .unwrap();
    // A resume of 1.6 MB that this client does not read.
    let mut resumer = server.http();
    resumer.send(&subscribe_request(
        "topic=user/1",
        Carrier::Header(&token),
        &format!("Last-Event-ID: {first}\r\n"),
    ));
    server.await_metric("sseloop_replaying_subscribers", |n| n == 1);
    server.await_metric("sseloop_replaying_subscribers", |n| n == 0);
    drop(resumer);
}
