//! Authorization on the Mercure hub (the draft's "Authorization"), with
//! tokens minted by PyJWT as a publisher's application mints them: RFC
//! 9068 `at+jwt` access tokens with `authorization_details`, and the old
//! `mercure` claim. Who may subscribe and publish, RFC 6750 answers, what
//! a private update reaches, live and replayed, and how Mercure's private
//! updates and sseloop's private topics meet.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{events_through, publish_request, request, subscribe_request, subscribe_with};
use crate::private::{KEY, hs256, mint, unix_now};
use crate::support::{BodyEnd, Next, Response, Subscriber, TestServer, assert_error, deadline};

/// The hub's URL in these tests: the default audience.
const HUB_URL: &str = "https://hub.example/.well-known/mercure";
const ISSUER: &str = "https://app.example";

/// A server with `--jwt-key`, the fixed hub URL and `extra` options.
fn server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--heartbeat", "0", "--jwt-key", KEY, "--hub-url", HUB_URL];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// An RFC 9068 token's spec: `at+jwt`, every claim RFC 9068 asks for,
/// these authorization details, valid for `ttl` seconds.
pub(super) fn at_jwt(details: Value, ttl: i64) -> Value {
    let now = unix_now();
    json!({
        "claims": {
            "iss": ISSUER,
            "aud": HUB_URL,
            "sub": "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6",
            "client_id": ISSUER,
            "iat": now,
            "exp": now + ttl,
            "jti": format!("urn:uuid:{now}-{ttl}"),
            "authorization_details": details,
        },
        "key": KEY,
        "alg": "HS256",
        "headers": {"typ": "at+jwt"},
    })
}

/// One Mercure authorization detail.
pub(super) fn detail(actions: &[&str], topics: Value) -> Value {
    json!({"type": "https://mercure.rocks/authorization-detail", "actions": actions, "topics": topics})
}

/// `spec` with `claim` set to `value` (`None`: removed).
fn with_claim(mut spec: Value, claim: &str, value: Option<Value>) -> Value {
    let claims = spec["claims"].as_object_mut().unwrap();
    match value {
        Some(v) => claims.insert(claim.into(), v),
        None => claims.remove(claim),
    };
    spec
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// The status and `WWW-Authenticate` a subscription with `headers` gets
/// (a stream's head, or a whole refusal).
fn subscribe_status(server: &TestServer, headers: &str) -> (u16, Option<String>) {
    subscribe_query_status(server, "match=*", headers)
}

fn subscribe_query_status(
    server: &TestServer,
    query: &str,
    headers: &str,
) -> (u16, Option<String>) {
    let mut conn = server.http();
    conn.send(&subscribe_request(query, headers));
    let head = conn.read_head(deadline());
    if head.status == 200 {
        return (200, head.header("www-authenticate").map(str::to_owned));
    }
    let (response, _) = request(server, &subscribe_request(query, headers));
    challenge(&response)
}

fn challenge(response: &Response) -> (u16, Option<String>) {
    if response.head.status != 200 {
        assert_error(response, response.head.status);
    }
    let www = response.head.header("www-authenticate").map(str::to_owned);
    (response.head.status, www)
}

/// Publishes `body` with `headers`; the status and challenge.
fn publish_status(server: &TestServer, body: &str, headers: &str) -> (u16, Option<String>) {
    let (response, _) = request(server, &publish_request(body, headers));
    challenge(&response)
}

fn publish_ok(server: &TestServer, body: &str, headers: &str) -> String {
    let (response, _) = request(server, &publish_request(body, headers));
    assert_eq!(response.head.status, 200, "{body}: {:?}", response.text());
    response.text()
}

/// The ids `sub` receives through `last`.
fn ids_through(sub: &mut Subscriber, last: &str) -> Vec<String> {
    events_through(sub, last)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

const INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");

/// With `--jwt-key` a subscriber needs a valid token (401 with a bare
/// `Bearer` challenge without one, `invalid_token` for any that fails:
/// another key, `none`, another algorithm, expired, `typ` JWT, another
/// audience or issuer, no `exp`), unless `--anonymous`; a malformed
/// presentation is a 400 `invalid_request`.
#[test]
fn subscribing_needs_a_valid_token_unless_anonymous() {
    let server = server(&["--jwt-issuer", ISSUER]);
    let sub = detail(&["subscribe"], json!([{"match": "*"}]));
    let good = at_jwt(json!([sub]), 3600);
    let mut other_key = good.clone();
    other_key["key"] = json!("another key, long enough for HS256 0123456789");
    let mut none = good.clone();
    none["alg"] = json!("none");
    let mut hs512 = good.clone();
    hs512["alg"] = json!("HS512");
    let mut jwt_typ = good.clone();
    jwt_typ["headers"] = json!({"typ": "JWT"});
    let specs = [
        good.clone(),
        other_key,
        none,
        hs512,
        jwt_typ,
        with_claim(good.clone(), "exp", Some(json!(unix_now() - 1))),
        with_claim(good.clone(), "exp", None),
        with_claim(
            good.clone(),
            "aud",
            Some(json!("https://other.example/.well-known/mercure")),
        ),
        with_claim(good.clone(), "aud", Some(json!(["x", HUB_URL]))),
        with_claim(good.clone(), "iss", Some(json!("https://intruder.example"))),
        with_claim(good.clone(), "iss", None),
    ];
    let tokens = mint(&specs);
    assert_eq!(subscribe_status(&server, &bearer(&tokens[0])), (200, None));
    for (i, token) in tokens.iter().enumerate().skip(1) {
        let want = if i == 8 {
            (200, None)
        } else {
            (401, INVALID.map(str::to_owned))
        };
        assert_eq!(subscribe_status(&server, &bearer(token)), want, "token {i}");
    }
    assert_eq!(subscribe_status(&server, ""), (401, Some("Bearer".into())));
    let twice = format!("{}{}", bearer(&tokens[0]), bearer(&tokens[0]));
    let invalid_request = Some("Bearer error=\"invalid_request\"".to_string());
    assert_eq!(
        subscribe_status(&server, &twice),
        (400, invalid_request.clone())
    );
    assert_eq!(
        subscribe_status(&server, "Authorization: Bearer\r\n"),
        (400, invalid_request)
    );
    // The access_token query parameter is no carrier here.
    let query = format!("match=*&access_token={}", tokens[0]);
    assert_eq!(
        subscribe_query_status(&server, &query, ""),
        (401, Some("Bearer".into()))
    );
    let anonymous = self::server(&["--anonymous"]);
    assert_eq!(subscribe_status(&anonymous, ""), (200, None));
    assert_eq!(subscribe_status(&anonymous, &bearer(&tokens[1])).0, 401);
}

/// `Authorization` first; without it the draft's cookie, then the 0.x
/// one; a cookie beside a header is ignored.
#[test]
fn the_header_first_then_the_cookie() {
    let server = server(&[]);
    let sub = detail(&["subscribe"], json!([{"match": "*"}]));
    let good = at_jwt(json!([sub]), 3600);
    let expired = with_claim(good.clone(), "exp", Some(json!(unix_now() - 60)));
    let [good, expired] = <[String; 2]>::try_from(mint(&[good, expired])).unwrap();
    let cookie = |name: &str, token: &str| format!("Cookie: theme=dark; {name}={token}\r\n");
    for (headers, status) in [
        (cookie("__Secure-mercure_access_token", &good), 200),
        (cookie("mercureAuthorization", &good), 200),
        (cookie("__Secure-mercure_access_token", &expired), 401),
        (
            format!(
                "{}{}",
                bearer(&good),
                cookie("__Secure-mercure_access_token", &expired)
            ),
            200,
        ),
        (
            format!(
                "{}{}",
                bearer(&expired),
                cookie("__Secure-mercure_access_token", &good)
            ),
            401,
        ),
        (cookie("sseloop_token", &good), 401),
    ] {
        assert_eq!(subscribe_status(&server, &headers).0, status, "{headers}");
    }
}

/// A private update reaches only subscribers whose token grants
/// `subscribe` on one of its topics (canonical or alternate, exact or URL
/// pattern), live and when replayed (authorized again with the current
/// token); a public one reaches every matching subscriber, anonymous
/// ones included.
#[test]
fn private_updates_reach_only_subscribers_granted_one_of_their_topics() {
    let server = server(&["--anonymous", "--public-topic", "*"]);
    let publisher = detail(&["publish"], json!([{"match": "*"}]));
    let book1 = detail(
        &["subscribe"],
        json!([{"match": "https://example.com/books/1"}]),
    );
    let user42 = detail(
        &["subscribe"],
        json!([{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}]),
    );
    let [publisher, book1, user42] = <[String; 3]>::try_from(mint(&[
        at_jwt(json!([publisher]), 3600),
        at_jwt(json!([book1]), 3600),
        at_jwt(json!([user42]), 3600),
    ]))
    .unwrap();
    let books = "match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    let mut anonymous = subscribe_with(&server, books, "");
    let mut reader1 = subscribe_with(&server, books, &bearer(&book1));
    let mut reader42 = subscribe_with(&server, books, &bearer(&user42));
    let auth = bearer(&publisher);
    let b1 = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1";
    let private1 = publish_ok(&server, &format!("{b1}&private=on&data=p1"), &auth);
    let alt = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F2&topic=https%3A%2F%2Fexample.com%2Fusers%2F42%2Fbooks%2F2";
    let private2 = publish_ok(&server, &format!("{alt}&private&data=p2"), &auth);
    let public = publish_ok(&server, &format!("{b1}&data=public"), &auth);
    assert_eq!(
        ids_through(&mut anonymous, &public),
        std::slice::from_ref(&public)
    );
    assert_eq!(
        ids_through(&mut reader1, &public),
        [private1.clone(), public.clone()]
    );
    assert_eq!(
        ids_through(&mut reader42, &public),
        [private2.clone(), public.clone()]
    );
    // Replayed: authorized again, by the token presented now.
    for (token, want) in [
        (None, vec![public.clone()]),
        (Some(&book1), vec![private1.clone(), public.clone()]),
        (Some(&user42), vec![private2.clone(), public.clone()]),
    ] {
        let headers = token.map(|t| bearer(t)).unwrap_or_default();
        let mut sub = subscribe_with(
            &server,
            &format!("{books}&last_event_id=earliest"),
            &headers,
        );
        assert_eq!(ids_through(&mut sub, &public), want);
    }
}

/// A private update under the id of a public one (as the reference
/// suite's private cases publish them) is dispatched, as private: a
/// subscriber without a grant receives the public one only, a granted
/// one both. Regression: the second was answered and never dispatched.
#[test]
fn a_private_update_reusing_a_public_ones_id_reaches_only_granted_subscribers() {
    // `--anonymous` alone: every topic public, privacy per update, as the
    // reference hub runs with its key and anonymous subscribers.
    let server = server(&["--anonymous"]);
    let every = json!([{"match": "*"}]);
    let [publisher, reader] = <[String; 2]>::try_from(mint(&[
        at_jwt(json!([detail(&["publish"], every.clone())]), 3600),
        at_jwt(json!([detail(&["subscribe"], every)]), 3600),
    ]))
    .unwrap();
    let mut anonymous = subscribe_with(&server, "match=t", "");
    let mut granted = subscribe_with(&server, "match=t", &bearer(&reader));
    let auth = bearer(&publisher);
    assert_eq!(publish_ok(&server, "topic=t&data=public&id=x", &auth), "x");
    let private = "topic=t&data=private&id=x&private=on";
    assert_eq!(publish_ok(&server, private, &auth), "x");
    let last = publish_ok(&server, "topic=t&data=last", &auth);
    let data_through_last = |sub: &mut Subscriber| {
        let mut data = Vec::new();
        loop {
            let event = sub.next_event();
            data.push(event.data);
            if event.id.as_deref() == Some(last.as_str()) {
                return data;
            }
        }
    };
    assert_eq!(data_through_last(&mut anonymous), ["public", "last"]);
    assert_eq!(
        data_through_last(&mut granted),
        ["public", "private", "last"]
    );
}

/// A publisher needs a token granting `publish` on every topic of the
/// update (401 without one, 403 `insufficient_scope` and no dispatch when
/// one topic is not granted); the publish token also publishes; the old
/// `mercure` claim is taken; a token in a cookie only from the hub's own
/// origin (a cross-site request is a 400 `invalid_request`).
#[test]
fn publishing_needs_publish_grants_on_every_topic() {
    let server = server(&[
        "--publish-token",
        "pub-s3cret",
        "--anonymous",
        "--public-topic",
        "*",
    ]);
    let books = detail(
        &["publish"],
        json!([{"match": "https://example.com/books/:id", "match_type": "urlpattern"}]),
    );
    let reader = detail(&["subscribe"], json!([{"match": "*"}]));
    let old = hs256(json!({"mercure": {"publish": ["a"]}, "exp": unix_now() + 3600}));
    let [books, reader, old] = <[String; 3]>::try_from(mint(&[
        at_jwt(json!([books]), 3600),
        at_jwt(json!([reader]), 3600),
        old,
    ]))
    .unwrap();
    let mut all = subscribe_with(&server, "match=*", "");
    let book = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1";
    let scope = Some("Bearer error=\"insufficient_scope\"".to_string());
    assert_eq!(
        publish_status(&server, book, ""),
        (401, Some("Bearer".into()))
    );
    assert_eq!(
        publish_status(&server, book, &bearer(&reader)),
        (403, scope.clone())
    );
    let half = format!("{book}&topic=elsewhere");
    assert_eq!(
        publish_status(&server, &half, &bearer(&books)),
        (403, scope)
    );
    assert_eq!(
        publish_status(&server, book, &bearer("x.y.z")).1.as_deref(),
        INVALID
    );
    let granted = publish_ok(&server, &format!("{book}&data=granted"), &bearer(&books));
    let by_publish_token = publish_ok(&server, "topic=elsewhere", &bearer("pub-s3cret"));
    let by_old_claim = publish_ok(&server, "topic=a", &bearer(&old));
    let cookie = format!("Cookie: __Secure-mercure_access_token={books}\r\n");
    let cross_site = publish_status(&server, book, &cookie);
    assert_eq!(
        cross_site,
        (400, Some("Bearer error=\"invalid_request\"".into()))
    );
    let same_site = format!("{cookie}Origin: http://localhost\r\n");
    let by_cookie = publish_ok(&server, book, &same_site);
    let referer = format!("{cookie}Referer: http://localhost/app?x=1\r\n");
    let by_referer = publish_ok(&server, book, &referer);
    assert_eq!(
        ids_through(&mut all, &by_referer),
        [
            granted,
            by_publish_token,
            by_old_claim,
            by_cookie,
            by_referer.clone()
        ],
        "nothing refused was dispatched"
    );
}

/// A stream opened with a token ends cleanly no later than its `exp`
/// (an `at+jwt` has no leeway), and not long before it.
#[test]
fn a_stream_ends_at_its_tokens_exp() {
    let server = server(&[]);
    let sub = detail(&["subscribe"], json!([{"match": "*"}]));
    let spec = at_jwt(json!([sub]), 4);
    let exp = spec["claims"]["exp"].as_i64().unwrap();
    let token = mint(&[spec]).remove(0);
    let mut stream = subscribe_with(&server, "match=*", &bearer(&token));
    match stream.poll(Instant::now() + Duration::from_secs(10)) {
        Next::End(BodyEnd::Clean) => {}
        other => panic!("expected the stream's clean end at exp, got {other:?}"),
    }
    // Whole seconds, and the reading takes a moment: it ended in the
    // second before exp, or at exp (read a little later).
    let ended = unix_now();
    assert!(ended <= exp + 1, "ended at {ended}, after exp {exp}");
    assert!(ended >= exp - 1, "ended at {ended}, well before exp {exp}");
    stream.expect_closed();
}

/// sseloop's private topics and Mercure's private updates meet in one
/// rule per delivery: an event reaches a subscriber only if its token
/// allows every private topic (`--public-topic` makes the others public)
/// and, for a private update, one of its topics; on either endpoint.
#[test]
fn private_topics_and_private_updates_meet_in_one_rule() {
    let server = server(&["--anonymous", "--public-topic", "news"]);
    let publisher = detail(&["publish"], json!([{"match": "*"}]));
    let user1 = detail(&["subscribe"], json!([{"match": "user/1"}]));
    let news = detail(&["subscribe"], json!([{"match": "news"}]));
    let [publisher, user1, news] = <[String; 3]>::try_from(mint(&[
        at_jwt(json!([publisher]), 3600),
        at_jwt(json!([user1]), 3600),
        at_jwt(json!([news]), 3600),
    ]))
    .unwrap();
    let auth = bearer(&publisher);
    // Subscribers: Mercure anonymous and with user/1's token; /events of
    // news without a token, and of news and user/1 with user/1's token.
    let mut m_anonymous = subscribe_with(&server, "match=*", "");
    let mut m_user1 = subscribe_with(&server, "match=*", &bearer(&user1));
    let mut m_news = subscribe_with(&server, "match=news", &bearer(&news));
    let mut e_news = server.subscribe_ready("?topic=news");
    let request = format!(
        "GET /events?topic=news&topic=user%2F1 HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        bearer(&user1)
    );
    let mut e_user1 = server.subscribe_raw(request.as_bytes());
    e_user1.expect_connected();
    // On /publish: a private topic (user/1), a public one, a broadcast.
    let mut p = server.publisher();
    let mut publish_auth = |query: &str, data: &str| {
        let raw = format!(
            "POST /publish{query} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\n\r\n{data}",
            data.len()
        );
        p.conn.send(raw.as_bytes());
        crate::support::assert_publish_ok(&p.conn.read_response(deadline()))
    };
    let private_topic = publish_auth("?topic=user%2F1", "user 1's");
    let public_topic = publish_auth("?topic=news", "news");
    let broadcast = publish_auth("", "everyone");
    // On the hub: a private update on news, a public one on user/1.
    let private_update = publish_ok(&server, "topic=news&private&data=p", &auth);
    let public_update = publish_ok(&server, "topic=user%2F1&data=u", &auth);
    let last = publish_ok(&server, "topic=news&data=last", &auth);
    let all = [
        &private_topic,
        &public_topic,
        &broadcast,
        &private_update,
        &public_update,
        &last,
    ];
    let want = |keep: &[bool]| -> Vec<String> {
        all.iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(id, _)| id.to_string())
            .collect()
    };
    let cases: [(&str, &mut Subscriber, [bool; 6]); 5] = [
        (
            "Mercure, no token",
            &mut m_anonymous,
            [false, true, true, false, false, true],
        ),
        (
            "Mercure, user/1",
            &mut m_user1,
            [true, true, true, false, true, true],
        ),
        (
            "Mercure news, news",
            &mut m_news,
            [false, true, false, true, false, true],
        ),
        (
            "/events news, no token",
            &mut e_news,
            [false, true, true, false, false, true],
        ),
        (
            "/events news and user/1, user/1",
            &mut e_user1,
            [true, true, true, false, true, true],
        ),
    ];
    for (who, sub, keep) in cases {
        assert_eq!(ids_through(sub, &last), want(&keep), "{who}");
    }
}
