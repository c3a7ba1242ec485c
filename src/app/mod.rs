//! What to answer: a pure function of the parsed request and the little
//! state it depends on ([`Context`]), returning an [`Action`] for the loop
//! to carry out; and who may publish ([`may_publish`], asked as soon as a
//! head is here) and subscribe (`may_subscribe`), from what the request
//! presents. No sockets, no connections, no bus, no clock (the time is a
//! parameter): unit-tested on its own. `mercure` answers the Mercure
//! endpoint.

pub mod mercure;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Access, Credentials, Grants, Refusal};
use crate::http::{self, Head, Policy, Reject, Route, Status};
use crate::mercure::matcher::Patterns;
use crate::mercure::url::HubUrl;
use crate::sse::{Event, Framing};

pub use self::mercure::Matchers;

/// `retry:` sent with a stream refused for now, when `--retry` is not set.
const RETRY_LATER: Duration = Duration::from_secs(1);

/// What an answer depends on besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// A shutdown has begun: nothing new starts, nothing is kept alive.
    pub shutting_down: bool,
    /// The connection was accepted past `--max-connections`.
    pub over_capacity: bool,
    /// `--allow-origin`.
    pub allow_origin: Option<&'a str>,
    /// `--retry`.
    pub retry: Option<Duration>,
    /// `--framing`, for HTTP/1.1 streams.
    pub framing: Framing,
    /// `--max-topics`.
    pub max_topics: usize,
    /// With `--jwt-key`: who may subscribe to what.
    pub access: Option<&'a Access>,
    /// The Unix time tokens are checked at (only read with `access`).
    pub unix_now: i64,
    /// `--lab`: the failure lab's page and streams are served.
    pub lab: bool,
    /// The Mercure hub's URL: published topics resolve against it.
    pub hub: &'a HubUrl,
}

/// How a subscriber's stream begins.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamStart {
    /// The response head with the first body bytes.
    pub head: Vec<u8>,
    /// How the body is framed.
    pub framing: Framing,
    /// Topics subscribed to (none: broadcasts only).
    pub topics: Vec<String>,
    /// Where to resume from, if the client said.
    pub last_event_id: Option<String>,
    /// What its token allows, when it came with one (and `--jwt-key` is
    /// set).
    pub grant: Option<Grants>,
    /// A Mercure subscriber's matchers (its exact topics are here, not in
    /// `topics`); `None` for `/events`.
    pub matchers: Option<Matchers>,
}

/// What the loop should do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Queue this whole answer; keep the connection for the next request
    /// when `keep_alive`.
    Answer {
        /// The answer's bytes.
        bytes: Vec<u8>,
        /// The connection stays open.
        keep_alive: bool,
    },
    /// Answer with the counters (the loop holds them; see [`metrics`]).
    Metrics {
        /// The connection stays open.
        keep_alive: bool,
        /// A `HEAD`: the head alone.
        head_only: bool,
    },
    /// Refuse with this error answer, then close.
    Reject(Reject),
    /// Queue this "come back later" stream, then close.
    RefuseStream(Vec<u8>),
    /// Publish the event, then answer with its id (see [`published`]).
    Publish {
        /// What to publish.
        event: Event,
        /// The connection stays open after the answer.
        keep_alive: bool,
        /// Its exactly-once key: an `Idempotency-Key`, a Mercure update's
        /// `id` with the update.
        key: Option<Arc<str>>,
    },
    /// Start streaming to this connection.
    Subscribe(StreamStart),
    /// Hand the connection over to the failure lab, which serves it.
    Lab(sseloop_lab::StreamRequest),
}

/// Chooses the action for a request whose head and body have arrived;
/// URL patterns a Mercure subscriber names are interned in `patterns`.
pub fn respond(mut head: Head, body: Vec<u8>, ctx: &Context, patterns: &mut Patterns) -> Action {
    // Taken out: the rest of the head is still asked about.
    let route = match std::mem::replace(&mut head.route, Ok(Route::Health)) {
        Ok(route) => route,
        Err(reject) => return Action::Reject(reject),
    };
    let refusal = if ctx.shutting_down {
        Some("server shutting down")
    } else if ctx.over_capacity {
        Some("server at capacity")
    } else {
        None
    };
    if let Some(why) = refusal {
        // An EventSource gives up for good on a 503, so a subscribe is told
        // to come back instead; anything else gets the 503.
        return match route {
            Route::Subscribe { .. } | Route::MercureSubscribe { .. } => {
                let chunked = stream_framing(head.http11, ctx) == Framing::Chunked;
                let retry = ctx.retry.unwrap_or(RETRY_LATER);
                Action::RefuseStream(http::refused_stream(chunked, retry, why, ctx.allow_origin))
            }
            _ => Action::Reject(Reject::new(Status::UNAVAILABLE, why)),
        };
    }
    let keep_alive = head.keep_alive && !ctx.shutting_down;
    let head_only = head.head_only;
    match route {
        Route::Preflight { allow } => match ctx.allow_origin {
            Some(origin) => Action::Answer {
                bytes: http::preflight_response(allow, origin, keep_alive),
                keep_alive,
            },
            None => Action::Reject(Reject::method("method not allowed (CORS is off)", allow)),
        },
        Route::Health => ok(
            "text/plain; charset=utf-8",
            "ok",
            keep_alive,
            head_only,
            ctx,
        ),
        Route::Index => page(
            &http::INSPECTOR,
            head.accepts_gzip,
            keep_alive,
            head_only,
            ctx,
        ),
        Route::Metrics => Action::Metrics {
            keep_alive,
            head_only,
        },
        Route::Lab | Route::LabStream(_) if !ctx.lab => Action::Reject(Reject::new(
            Status::NOT_FOUND,
            "no such path (the lab needs --lab)",
        )),
        Route::Lab => page(&http::LAB, head.accepts_gzip, keep_alive, head_only, ctx),
        Route::LabStream(request) => Action::Lab(request),
        Route::Publish { topics, event_type } => {
            let Ok(data) = String::from_utf8(body) else {
                return Action::Reject(Reject::new(Status::BAD_REQUEST, "event data is not UTF-8"));
            };
            let mut event = Event::new(data).with_topics(topics);
            if let Some(t) = event_type {
                event = event.with_type(t);
            }
            let key = head.idempotency_key.map(Arc::from);
            Action::Publish {
                event,
                keep_alive,
                key,
            }
        }
        Route::MercureSubscribe { in_body, .. } if in_body && !head.form_body => {
            Action::Reject(Reject::new(
                Status::BAD_REQUEST,
                "a QUERY body must be application/x-www-form-urlencoded",
            ))
        }
        Route::MercureSubscribe {
            query,
            last_event_id,
            in_body,
        } => {
            let grants = match mercure::grants(&head, ctx, patterns) {
                Ok(grants) => grants,
                Err(reject) => return Action::Reject(reject),
            };
            let body = in_body.then_some(&body[..]);
            let request = mercure::Request {
                query: &query,
                body,
                last_event_id,
                http11: head.http11,
            };
            mercure::subscribe(request, grants, ctx, patterns)
        }
        Route::MercurePublish => mercure::publish(&head, &body, keep_alive, ctx, patterns),
        Route::Subscribe { topics, .. } if topics.len() > ctx.max_topics => Action::Reject(
            Reject::new(Status::BAD_REQUEST, "too many topics for one subscriber"),
        ),
        Route::Subscribe {
            topics,
            last_event_id,
        } => {
            let grant = match may_subscribe(&head.credentials, &topics, ctx, patterns) {
                Ok(grant) => grant,
                Err(reject) => return Action::Reject(reject),
            };
            let framing = stream_framing(head.http11, ctx);
            let head = http::stream_head(framing == Framing::Chunked, ctx.retry, ctx.allow_origin);
            Action::Subscribe(StreamStart {
                head,
                framing,
                topics,
                last_event_id,
                grant,
                matchers: None,
            })
        }
    }
}

/// Whether the request whose head is `head` may publish, decided before its
/// body is read (a refused publish is answered without it); `Ok` for any
/// other request. A page of another origin may not, token or not (a
/// text/plain POST needs no preflight). Then, when a publish token or a JWT
/// key is set: the publish token, or on `/publish` a JWT in
/// `Authorization` (a cookie goes along with any request a browser makes)
/// whose `publish` grants cover every topic named, checked at `unix_now`
/// (URL patterns interned in `patterns`); on the Mercure hub, whose topics
/// are in the body, a token to check once it is read (see
/// [`mercure::may_publish`]).
pub fn may_publish(
    head: &Head,
    policy: &Policy,
    unix_now: i64,
    patterns: &mut Patterns,
) -> Result<(), Reject> {
    let topics = match &head.route {
        Ok(Route::Publish { topics, .. }) => topics,
        Ok(Route::MercurePublish) => return mercure::may_publish(head, policy),
        _ => return Ok(()),
    };
    if head.foreign_origin {
        return Err(foreign_origin());
    }
    let open = policy.publish_token.is_none() && policy.access.is_none();
    if open || head.bears_publish_token {
        return Ok(());
    }
    let refusal = match &policy.access {
        Some(access) => {
            let token = head.credentials.publish_token();
            match access.publish(token, topics, unix_now, patterns) {
                Ok(()) => return Ok(()),
                Err(refusal) => refusal,
            }
        }
        None => Refusal::PublishMissing,
    };
    Err(refused(refusal))
}

/// A publish from a page of another origin.
fn foreign_origin() -> Reject {
    Reject::new(
        Status::FORBIDDEN,
        "publishing from another origin is refused (see --allow-origin)",
    )
}

/// Whether a subscriber presenting `credentials` may subscribe to `topics`
/// (with `--jwt-key`: each public or covered by its token), and what its
/// token lets it receive.
fn may_subscribe(
    credentials: &Credentials,
    topics: &[String],
    ctx: &Context,
    patterns: &mut Patterns,
) -> Result<Option<Grants>, Reject> {
    let Some(access) = ctx.access else {
        return Ok(None);
    };
    access
        .subscribe(
            credentials.subscribe_token(),
            topics,
            ctx.unix_now,
            patterns,
        )
        .map_err(refused)
}

/// A token refused: 403 when it is valid but does not allow what was
/// asked, else 401.
fn refused(refusal: Refusal) -> Reject {
    let status = if refusal.forbidden() {
        Status::FORBIDDEN
    } else {
        Status::UNAUTHORIZED
    };
    Reject::new(status, refusal.reason())
}

/// HTTP/1.0 streams end with the connection; HTTP/1.1 ones as configured.
fn stream_framing(http11: bool, ctx: &Context) -> Framing {
    if http11 { ctx.framing } else { Framing::Close }
}

fn text_answer(body: &str, keep_alive: bool, ctx: &Context) -> Action {
    Action::Answer {
        bytes: http::text_response(body, keep_alive, ctx.allow_origin),
        keep_alive,
    }
}

/// A `200` with `body`, or for a `HEAD` its head alone (with the length
/// the body would have).
fn ok(content_type: &str, body: &str, keep_alive: bool, head_only: bool, ctx: &Context) -> Action {
    let bytes = if head_only {
        http::head_response(content_type, body, keep_alive, ctx.allow_origin)
    } else {
        http::ok_response(content_type, body, keep_alive, ctx.allow_origin)
    };
    Action::Answer { bytes, keep_alive }
}

/// A page, gzip-coded for a client that takes it.
fn page(page: &http::Page, gzip: bool, keep_alive: bool, head_only: bool, ctx: &Context) -> Action {
    let bytes = http::page_response(
        page.body(gzip),
        gzip,
        head_only,
        keep_alive,
        ctx.allow_origin,
    );
    Action::Answer { bytes, keep_alive }
}

/// The bytes of an error answer.
pub fn reject_bytes(reject: &Reject, ctx: &Context) -> Vec<u8> {
    http::error_response(reject, ctx.allow_origin)
}

/// The answer to a publish: its id.
pub fn published(id: &str, keep_alive: bool, ctx: &Context) -> Action {
    text_answer(id, keep_alive && !ctx.shutting_down, ctx)
}

/// The answer to a publish the hub could not take now.
pub fn unavailable() -> Action {
    Action::Reject(Reject::new(
        Status::UNAVAILABLE,
        "events cannot be stored now; retry later",
    ))
}

/// The `/metrics` answer with the counters' text.
pub fn metrics(text: &str, keep_alive: bool, head_only: bool, ctx: &Context) -> Action {
    ok(
        "text/plain; version=0.0.4; charset=utf-8",
        text,
        keep_alive,
        head_only,
        ctx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::{POLICY, allowing, statuses, with_token};
    use crate::http::{HeadParse, Policy, parse_head};

    /// The context of most tests: the defaults, at most 3 topics.
    fn ctx() -> Context<'static> {
        static HUB_URL: std::sync::OnceLock<HubUrl> = std::sync::OnceLock::new();
        Context {
            shutting_down: false,
            over_capacity: false,
            allow_origin: None,
            retry: None,
            framing: Framing::Chunked,
            max_topics: 3,
            access: None,
            unix_now: 0,
            hub: HUB_URL.get_or_init(|| HubUrl::parse(HUB).unwrap()),
            lab: false,
        }
    }

    /// `super::respond` with the URL patterns of a loop whose hub is at
    /// the default address.
    fn respond(head: Head, body: Vec<u8>, ctx: &Context) -> Action {
        super::respond(head, body, ctx, &mut patterns())
    }

    fn patterns() -> Patterns {
        let hub = crate::mercure::url::Url::parse(HUB, None).unwrap();
        Patterns::new(hub)
    }

    const HUB: &str = "http://localhost:8080/.well-known/mercure";

    fn token_policy() -> crate::auth::TokenPolicy {
        crate::auth::TokenPolicy {
            audience: HUB.into(),
            issuer: None,
            anonymous: false,
        }
    }

    /// The head of `raw`, given a `Host` (which HTTP/1.1 requires).
    fn head(raw: &str) -> Head {
        let raw = raw.replacen("\r\n", "\r\nHost: localhost\r\n", 1);
        match parse_head(raw.as_bytes(), &POLICY) {
            HeadParse::Complete(head, _) => head,
            other => panic!("{other:?}"),
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn health_and_index_are_answered_and_kept_alive() {
        let Action::Answer { bytes, keep_alive } =
            respond(head("GET /health HTTP/1.1\r\n\r\n"), vec![], &ctx())
        else {
            panic!()
        };
        assert!(keep_alive && text(&bytes).ends_with("\r\n\r\nok"));
        let Action::Answer { bytes, .. } = respond(head("GET / HTTP/1.1\r\n\r\n"), vec![], &ctx())
        else {
            panic!()
        };
        assert!(text(&bytes).contains("text/html"));
        let action = respond(head("GET /metrics HTTP/1.0\r\n\r\n"), vec![], &ctx());
        assert_eq!(
            action,
            Action::Metrics {
                keep_alive: false,
                head_only: false
            }
        );
        let Action::Answer { bytes, .. } =
            respond(head("HEAD /health HTTP/1.1\r\n\r\n"), vec![], &ctx())
        else {
            panic!()
        };
        assert!(
            text(&bytes).ends_with(
                "Content-Length: 2\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n"
            ),
            "{:?}",
            text(&bytes)
        );
    }

    #[test]
    fn publish_builds_the_event_or_refuses_bad_data() {
        let h = head("POST /publish?topic=a&topic=b&event=progress HTTP/1.1\r\n\r\n");
        let want = Event::new("50")
            .with_type("progress")
            .with_topic("a")
            .with_topic("b");
        assert_eq!(
            respond(h.clone(), b"50".to_vec(), &ctx()),
            Action::Publish {
                event: want.clone(),
                keep_alive: true,
                key: None,
            }
        );
        let keyed = head(
            "POST /publish?topic=a&topic=b&event=progress HTTP/1.1\r\nIdempotency-Key: k1\r\n\r\n",
        );
        assert_eq!(
            respond(keyed, b"50".to_vec(), &ctx()),
            Action::Publish {
                event: want,
                keep_alive: true,
                key: Some("k1".into()),
            }
        );
        let Action::Reject(reject) = respond(h.clone(), vec![0xff], &ctx()) else {
            panic!()
        };
        assert_eq!(reject.status, Status::BAD_REQUEST);
        let Action::Answer { bytes, keep_alive } = published("r-1", true, &ctx()) else {
            panic!()
        };
        assert!(keep_alive && text(&bytes).ends_with("\r\n\r\nr-1"));
    }

    /// A Mercure publish: the form body as an event, its key the `id`
    /// with the update as sent; the draft's 400 and 413, and a body that
    /// is not a form.
    #[test]
    fn a_mercure_publish_builds_the_event_or_refuses() {
        let raw = "POST /.well-known/mercure HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n";
        let h = head(raw);
        let body =
            b"topic=a&topic=b&topic=a&data=x%0Ay&id=urn%3Auuid%3A1&type=t&retry=10&private=on";
        let want = Event::new("x\ny")
            .with_topic("a")
            .with_topic("b")
            .with_type("t")
            .with_retry(Duration::from_millis(10))
            .private()
            .with_id("urn:uuid:1");
        let update = crate::mercure::publish::Update {
            topics: vec!["a".into(), "b".into(), "a".into()],
            data: "x\ny".into(),
            private: true,
            id: Some("urn:uuid:1".into()),
            event_type: Some("t".into()),
            retry: Some(10),
        };
        assert_eq!(
            respond(h.clone(), body.to_vec(), &ctx()),
            Action::Publish {
                event: want,
                keep_alive: true,
                key: update.once_key().map(Arc::from),
            }
        );
        let status = |h: &Head, body: &str| match respond(h.clone(), body.into(), &ctx()) {
            Action::Reject(reject) => reject.status.0,
            Action::Publish { .. } => 200,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(&h, "data=no+topic"), 400);
        assert_eq!(status(&h, "topic=%2F.well-known%2Fmercure%2Fx"), 400);
        assert_eq!(status(&h, "topic=a&topic=b&topic=c&topic=d"), 413);
        assert_eq!(status(&h, &format!("topic={}", "t".repeat(129))), 413);
        let text = head("POST /.well-known/mercure HTTP/1.1\r\n\r\n");
        assert_eq!(status(&text, "topic=a"), 400);
    }

    #[test]
    fn subscribe_picks_the_framing() {
        let Action::Subscribe(start) = respond(
            head("GET /events?topic=t HTTP/1.1\r\nLast-Event-ID: x-1\r\n\r\n"),
            vec![],
            &ctx(),
        ) else {
            panic!()
        };
        assert_eq!(start.framing, Framing::Chunked);
        assert_eq!(start.topics, ["t"]);
        assert_eq!(start.last_event_id.as_deref(), Some("x-1"));
        assert!(text(&start.head).contains("Transfer-Encoding: chunked"));
        let Action::Subscribe(start) =
            respond(head("GET /events HTTP/1.0\r\n\r\n"), vec![], &ctx())
        else {
            panic!()
        };
        assert_eq!(start.framing, Framing::Close);
        let close = Context {
            framing: Framing::Close,
            ..ctx()
        };
        let Action::Subscribe(start) =
            respond(head("GET /events HTTP/1.1\r\n\r\n"), vec![], &close)
        else {
            panic!()
        };
        assert!(!text(&start.head).contains("chunked"));
    }

    #[test]
    fn a_subscriber_names_at_most_max_topics() {
        let three = respond(
            head("GET /events?topic=a&topic=b&topic=c HTTP/1.1\r\n\r\n"),
            vec![],
            &ctx(),
        );
        assert!(matches!(three, Action::Subscribe(_)));
        let Action::Reject(reject) = respond(
            head("GET /events?topic=a&topic=b&topic=c&topic=d HTTP/1.1\r\n\r\n"),
            vec![],
            &ctx(),
        ) else {
            panic!()
        };
        assert_eq!(
            reject,
            Reject::new(Status::BAD_REQUEST, "too many topics for one subscriber")
        );
    }

    #[test]
    fn over_capacity_and_shutdown_refuse() {
        for ctx in [
            Context {
                over_capacity: true,
                ..ctx()
            },
            Context {
                shutting_down: true,
                ..ctx()
            },
        ] {
            let Action::RefuseStream(bytes) =
                respond(head("GET /events HTTP/1.1\r\n\r\n"), vec![], &ctx)
            else {
                panic!()
            };
            assert!(text(&bytes).contains("retry: 1000\n"));
            let Action::Reject(reject) =
                respond(head("POST /publish HTTP/1.1\r\n\r\n"), vec![], &ctx)
            else {
                panic!()
            };
            assert_eq!(reject.status, Status::UNAVAILABLE);
        }
    }

    #[test]
    fn private_topics_need_a_token_that_covers_them() {
        let key = "k".repeat(32);
        let access = Access::new(key.as_bytes(), &["news"], token_policy()).unwrap();
        let policy = Policy {
            access: Some(std::sync::Arc::new(access.clone())),
            ..POLICY
        };
        let token = crate::auth::sign_for_tests(
            r#"{"alg":"HS256"}"#,
            r#"{"mercure":{"subscribe":["user/1"]},"exp":2000}"#,
            key.as_bytes(),
        );
        // What a subscribe to `query` with `token` (may be empty) gets at
        // Unix time `now`: a status, and the grant's end when served.
        let ask = |query: &str, token: &str, now: i64| {
            let auth = if token.is_empty() {
                String::new()
            } else {
                format!("Authorization: Bearer {token}\r\n")
            };
            let raw = format!("GET /events?{query} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n");
            let HeadParse::Complete(h, _) = parse_head(raw.as_bytes(), &policy) else {
                panic!("{raw}")
            };
            let ctx = Context {
                access: Some(&access),
                unix_now: now,
                ..ctx()
            };
            match respond(h, vec![], &ctx) {
                Action::Reject(reject) => {
                    let bytes = reject_bytes(&reject, &ctx);
                    let text = text(&bytes);
                    assert!(
                        !text.contains(&token[token.len().saturating_sub(20)..])
                            || token.is_empty()
                    );
                    if text.starts_with("HTTP/1.1 401") {
                        assert!(text.contains("WWW-Authenticate: Bearer\r\n"), "{text}");
                    }
                    text[9..12].to_string()
                }
                Action::Subscribe(start) => {
                    format!("200 {:?}", start.grant.and_then(|g| g.expires()))
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ask("topic=news", "", 1_000), "200 None");
        assert_eq!(ask("", "", 1_000), "200 None");
        assert_eq!(ask("topic=user/1", "", 1_000), "401");
        assert_eq!(
            ask("topic=user/1&topic=news", &token, 1_000),
            "200 Some(2005)"
        );
        assert_eq!(ask("topic=user/2", &token, 1_000), "403");
        assert_eq!(ask("topic=user/1", &token, 2_005), "401");
    }

    #[test]
    fn the_lab_is_there_only_when_asked_for() {
        let page = || head("GET /lab HTTP/1.1\r\n\r\n");
        let stream = || head("GET /lab/stream?run=a&lesson=nagle HTTP/1.1\r\n\r\n");
        for request in [page(), stream()] {
            let Action::Reject(reject) = respond(request, vec![], &ctx()) else {
                panic!()
            };
            assert_eq!(reject.status, Status::NOT_FOUND);
        }
        let lab = Context { lab: true, ..ctx() };
        let Action::Answer { bytes, .. } = respond(page(), vec![], &lab) else {
            panic!()
        };
        assert!(text(&bytes).contains("text/html"));
        assert!(matches!(respond(stream(), vec![], &lab), Action::Lab(_)));
        // Refused for now like any stream: the lab is not asked.
        let full = Context {
            over_capacity: true,
            ..lab
        };
        assert!(matches!(
            respond(stream(), vec![], &full),
            Action::Reject(_)
        ));
    }

    #[test]
    fn preflight_needs_an_allowed_origin() {
        let h = head("OPTIONS /publish HTTP/1.1\r\n\r\n");
        let Action::Reject(reject) = respond(h.clone(), vec![], &ctx()) else {
            panic!()
        };
        assert_eq!(reject.allow, Some("POST"));
        let cors = Context {
            allow_origin: Some("https://app.example"),
            ..ctx()
        };
        let Action::Answer { bytes, .. } = respond(h.clone(), vec![], &cors) else {
            panic!()
        };
        assert!(text(&bytes).starts_with("HTTP/1.1 204"));
    }

    // Who may publish: decided on the head, before the body is read.

    /// The route of `raw` once `may_publish` has ruled on it.
    fn admitted(raw: &str, policy: &Policy) -> Result<Route, Reject> {
        match parse_head(raw.as_bytes(), policy) {
            HeadParse::Complete(h, _) => {
                may_publish(&h, policy, crate::auth::unix_now(), &mut patterns()).and(h.route)
            }
            other => panic!("{other:?}"),
        }
    }

    /// The status a head gets: its refusal's, or 200 when it is served.
    fn status_with(raw: &str, policy: &Policy) -> Status {
        admitted(raw, policy).map_or_else(|r| r.status, |_| Status::OK)
    }

    #[test]
    fn publish_token() {
        let policy = with_token();
        let route = |raw: &str| admitted(raw, &policy);
        let denied = |raw: &str| route(raw).unwrap_err().status == Status::UNAUTHORIZED;
        assert!(denied("POST /publish HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        assert!(denied(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cre\r\n\r\n"
        ));
        assert!(denied(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret2\r\n\r\n"
        ));
        assert!(denied(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic s3cret\r\n\r\n"
        ));
        assert!(
            route(
                "POST /publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\n\r\n"
            )
            .is_ok()
        );
        assert!(route("POST /publish HTTP/1.1\r\nHost: localhost\r\nauthorization: bearer  s3cret \r\n\r\n").is_ok());
        // Subscribing stays open.
        assert!(route("GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n").is_ok());
    }

    const OK: Status = Status::OK;
    const FORBIDDEN: Status = Status::FORBIDDEN;

    statuses! {
        // A publish from another origin: 403, token or not.
        publish_no_origin: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\n\r\n" => OK;
        publish_own_origin: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:8080\r\n\r\n" => OK;
        publish_own_origin_default_port: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\n\r\n" => OK;
        publish_own_origin_explicit_80: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:80\r\n\r\n" => OK;
        publish_own_origin_any_case: POLICY, "POST /publish HTTP/1.1\r\nHost: LOCALHOST:8080\r\nOrigin: http://localhost.:8080\r\n\r\n" => OK;
        publish_other_port: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:8081\r\n\r\n" => FORBIDDEN;
        publish_other_scheme: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: https://localhost:8080\r\n\r\n" => FORBIDDEN;
        // Behind a TLS proxy that says so, the own origin is https://Host.
        publish_own_origin_forwarded_https: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nOrigin: https://localhost\r\n\r\n" => OK;
        publish_own_origin_forwarded_https_any_case: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost:8443\r\nx-forwarded-proto: HTTPS \r\nOrigin: https://localhost:8443\r\n\r\n" => OK;
        publish_http_origin_forwarded_https: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nOrigin: http://localhost\r\n\r\n" => FORBIDDEN;
        publish_cross_site_forwarded_https: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nOrigin: https://attacker.example\r\n\r\n" => FORBIDDEN;
        publish_own_origin_forwarded_http: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost:8080\r\nX-Forwarded-Proto: http\r\nOrigin: http://localhost:8080\r\n\r\n" => OK;
        publish_forwarded_proto_list: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https, http\r\nOrigin: https://localhost\r\n\r\n" => FORBIDDEN;
        publish_two_forwarded_protos: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: https\r\nOrigin: https://localhost\r\n\r\n" => FORBIDDEN;
        publish_other_loopback_name: POLICY, "POST /publish HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://localhost:8080\r\n\r\n" => FORBIDDEN;
        publish_cross_site: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: https://attacker.example\r\n\r\n" => FORBIDDEN;
        publish_null_origin: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: null\r\n\r\n" => FORBIDDEN;
        publish_empty_origin: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: \r\n\r\n" => FORBIDDEN;
        publish_two_origins: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\nOrigin: http://localhost\r\n\r\n" => FORBIDDEN;
        publish_origin_list: POLICY, "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost http://localhost\r\n\r\n" => FORBIDDEN;
        publish_cross_site_with_token: with_token(), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: https://attacker.example\r\nAuthorization: Bearer s3cret\r\n\r\n" => FORBIDDEN;
        publish_cross_site_without_token: with_token(), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: https://attacker.example\r\n\r\n" => FORBIDDEN;
        publish_own_origin_without_token: with_token(), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\n\r\n" => Status::UNAUTHORIZED;
        publish_allowed_origin: allowing(true, &[], Some("https://app.example")), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n\r\n" => OK;
        publish_allowed_origin_only: allowing(true, &[], Some("https://app.example")), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: https://other.example\r\n\r\n" => FORBIDDEN;
        publish_any_origin: allowing(true, &[], Some("*")), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: https://other.example\r\n\r\n" => OK;
        publish_any_origin_not_null: allowing(true, &[], Some("*")), "POST /publish HTTP/1.1\r\nHost: localhost\r\nOrigin: null\r\n\r\n" => FORBIDDEN;
        publish_10_no_host: POLICY, "POST /publish HTTP/1.0\r\nOrigin: http://localhost\r\n\r\n" => FORBIDDEN;
        subscribe_cross_site: POLICY, "GET /events HTTP/1.1\r\nHost: localhost\r\nOrigin: https://attacker.example\r\n\r\n" => OK;
        health_null_origin: POLICY, "GET /health HTTP/1.1\r\nHost: localhost\r\nOrigin: null\r\n\r\n" => OK;
    }

    #[test]
    fn a_jwt_key_makes_publishing_need_a_jwt_or_the_publish_token() {
        let access = Access::configured(Some(&"k".repeat(32)), &[], token_policy()).unwrap();
        let policy = Policy { access, ..POLICY };
        // Publishing needs a token now, and a cookie is not one.
        let status = |raw: &str| admitted(raw, &policy).map(|_| ()).map_err(|r| r.status);
        assert_eq!(
            status(
                "POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nCookie: sseloop_token=c\r\n\r\n"
            ),
            Err(Status::UNAUTHORIZED)
        );
        assert_eq!(
            status(
                "POST /publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x.y.z\r\n\r\n"
            ),
            Err(Status::UNAUTHORIZED)
        );
        let both = Policy {
            publish_token: Some("s3cret".into()),
            ..policy.clone()
        };
        let raw =
            b"POST /publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\n\r\n";
        let raw = std::str::from_utf8(raw).unwrap();
        assert!(admitted(raw, &both).is_ok());
    }
}
