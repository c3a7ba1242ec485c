use serde_json::json;

use super::*;
use crate::mercure::url::Url;

const AUD: &str = "https://localhost/.well-known/mercure";
const ISS: &str = "https://localhost";
const NOW: i64 = 1_800_000_000;

fn policy() -> Policy<'static> {
    Policy {
        audience: AUD,
        issuer: Some(ISS),
        legacy_claim: true,
        now: NOW,
        leeway: 5,
    }
}

fn patterns() -> Patterns {
    Patterns::new(Url::parse(AUD, None).unwrap())
}

fn at() -> Value {
    json!({"alg": "HS256", "typ": "at+jwt"})
}

fn detail(actions: Value, topics: Value) -> Value {
    json!({"type": DETAIL_TYPE, "actions": actions, "topics": topics})
}

/// Modern claims with `details`, valid unless a test changes them.
fn claims(details: Value) -> Value {
    json!({"iss": ISS, "aud": AUD, "exp": NOW + 60, "authorization_details": details})
}

fn check(header: &Value, claims: &Value) -> Result<Grants, TokenError> {
    validate(header, claims, &policy(), &mut patterns())
}

fn with(mut base: Value, key: &str, value: Option<Value>) -> Value {
    let o = base.as_object_mut().unwrap();
    match value {
        Some(v) => o.insert(key.to_string(), v),
        None => o.remove(key),
    };
    base
}

fn topics(t: &[&str]) -> Vec<Box<str>> {
    t.iter().map(|&s| s.into()).collect()
}

fn receives(g: &Grants, t: &[&str]) -> bool {
    let hub = Url::parse(AUD, None).unwrap();
    let t = topics(t);
    g.may_receive(&mut EventTopics::new(&t, &hub))
}

fn publishes(g: &Grants, t: &[&str]) -> bool {
    let hub = Url::parse(AUD, None).unwrap();
    let t = topics(t);
    g.may_publish(&mut EventTopics::new(&t, &hub))
}

/// The claims of the reference hub's conformance-test token.
#[test]
fn the_conformance_token() {
    let c = json!({
        "aud": AUD, "iss": ISS, "exp": 4_102_444_800u64,
        "authorization_details": [
            {"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "*"}]},
            {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "*"}]}
        ]
    });
    let g = check(&at(), &c).unwrap();
    assert!(publishes(&g, &["a", "https://example.net/foo/x"]) && receives(&g, &["z"]));
    assert_eq!((g.expires(), g.is_legacy()), (Some(4_102_444_800), false));
}

#[test]
fn header_checks() {
    let ok = claims(json!([]));
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        assert!(
            check(&json!({"alg": "HS256", "typ": typ}), &ok).is_ok(),
            "{typ}"
        );
    }
    for typ in [
        json!("JWT"),
        json!("at+jwt2"),
        json!("application/jwt"),
        json!("x-application/at+jwt"),
        json!(1),
        json!(null),
    ] {
        assert_eq!(
            check(&json!({"alg": "HS256", "typ": typ}), &ok).unwrap_err(),
            TokenError::Type,
            "{typ}"
        );
    }
    assert_eq!(
        check(&json!({"alg": "HS256"}), &ok).unwrap_err(),
        TokenError::Type
    );
    for alg in [
        json!("none"),
        json!("HS512"),
        json!("hs256"),
        json!("RS256"),
        json!(null),
    ] {
        assert_eq!(
            check(&json!({"alg": alg, "typ": "at+jwt"}), &ok).unwrap_err(),
            TokenError::Algorithm,
            "{alg}"
        );
    }
    assert_eq!(
        check(&json!({"typ": "at+jwt"}), &ok).unwrap_err(),
        TokenError::Algorithm
    );
}

#[test]
fn issuer_audience_and_dates() {
    let base = claims(json!([]));
    let err = |c: Value| check(&at(), &c).unwrap_err();
    assert_eq!(err(with(base.clone(), "iss", None)), TokenError::Issuer);
    assert_eq!(
        err(with(base.clone(), "iss", Some(json!("https://other")))),
        TokenError::Issuer
    );
    assert_eq!(
        err(with(
            base.clone(),
            "iss",
            Some(json!(["https://localhost"]))
        )),
        TokenError::Issuer
    );
    // Without a configured issuer, any iss is taken, but one is needed.
    let open = Policy {
        issuer: None,
        ..policy()
    };
    assert!(
        validate(
            &at(),
            &with(base.clone(), "iss", Some(json!("anyone"))),
            &open,
            &mut patterns()
        )
        .is_ok()
    );
    assert_eq!(
        validate(
            &at(),
            &with(base.clone(), "iss", None),
            &open,
            &mut patterns()
        )
        .unwrap_err(),
        TokenError::Issuer
    );

    assert!(check(&at(), &with(base.clone(), "aud", Some(json!(["x", AUD])))).is_ok());
    assert_eq!(err(with(base.clone(), "aud", None)), TokenError::Audience);
    assert_eq!(
        err(with(base.clone(), "aud", Some(json!("https://localhost")))),
        TokenError::Audience
    );
    assert_eq!(
        err(with(base.clone(), "aud", Some(json!([])))),
        TokenError::Audience
    );
    assert!(matches!(
        err(with(base.clone(), "aud", Some(json!(7)))),
        TokenError::Claims(_)
    ));
    assert!(matches!(
        err(with(base.clone(), "aud", Some(json!([AUD, 7])))),
        TokenError::Claims(_)
    ));

    assert_eq!(err(with(base.clone(), "exp", None)), TokenError::NoExpiry);
    assert_eq!(
        err(with(base.clone(), "exp", Some(json!(NOW)))),
        TokenError::Expired
    );
    assert_eq!(
        err(with(base.clone(), "exp", Some(json!(NOW as f64 + 0.5)))),
        TokenError::Expired
    );
    assert!(check(&at(), &with(base.clone(), "exp", Some(json!(NOW + 1)))).is_ok());
    assert!(matches!(
        err(with(base.clone(), "exp", Some(json!("soon")))),
        TokenError::Claims(_)
    ));
    assert_eq!(
        err(with(base.clone(), "nbf", Some(json!(NOW + 6)))),
        TokenError::NotYetValid
    );
    assert!(check(&at(), &with(base.clone(), "nbf", Some(json!(NOW + 5)))).is_ok());
    assert!(matches!(
        check(&at(), &json!([1])).unwrap_err(),
        TokenError::Claims(_)
    ));
}

#[test]
fn malformed_details_refuse_the_whole_token() {
    let good = detail(json!(["subscribe"]), json!([{"match": "a"}]));
    for bad in [
        json!({"type": DETAIL_TYPE, "topics": [{"match": "a"}]}),
        detail(json!([]), json!([{"match": "a"}])),
        detail(json!("publish"), json!([{"match": "a"}])),
        detail(json!(["publish", 1]), json!([{"match": "a"}])),
        json!({"type": DETAIL_TYPE, "actions": ["publish"]}),
        detail(json!(["publish"]), json!([])),
        detail(json!(["publish"]), json!(["a"])),
        detail(json!(["publish"]), json!([null])),
        detail(json!(["publish"]), json!([{"match_type": "exact"}])),
        detail(json!(["publish"]), json!([{"match": 1}])),
        detail(json!(["publish"]), json!([{"match": ""}])),
        detail(json!(["publish"]), json!([{"match": "a\u{200B}"}])),
        detail(
            json!(["publish"]),
            json!([{"match": "a", "match_type": "regex"}]),
        ),
        detail(
            json!(["publish"]),
            json!([{"match": "a", "match_type": "URLPattern"}]),
        ),
        detail(json!(["publish"]), json!([{"match": "a", "match_type": 1}])),
        detail(
            json!(["publish"]),
            json!([{"match": "/:id(\\d+)", "match_type": "urlpattern"}]),
        ),
        json!("not an object"),
    ] {
        let c = claims(json!([good.clone(), bad.clone()]));
        assert!(
            matches!(check(&at(), &c).unwrap_err(), TokenError::Claims(_)),
            "{bad}"
        );
    }
    assert!(matches!(
        check(&at(), &claims(json!({"type": DETAIL_TYPE}))).unwrap_err(),
        TokenError::Claims(_)
    ));
    let many: Vec<Value> = (0..=MAX_DETAILS).map(|_| good.clone()).collect();
    assert!(matches!(
        check(&at(), &claims(json!(many))).unwrap_err(),
        TokenError::Claims(_)
    ));
    let topics: Vec<Value> = (0..=MAX_TOPICS)
        .map(|i| json!({"match": format!("t{i}")}))
        .collect();
    let c = claims(json!([detail(json!(["subscribe"]), json!(topics))]));
    assert!(matches!(
        check(&at(), &c).unwrap_err(),
        TokenError::Claims(_)
    ));
}

#[test]
fn what_is_ignored() {
    let g = check(
        &at(),
        &claims(json!([
            {"type": "https://example.com/other", "topics": "anything", "actions": 7},
            {"type": "https://mercure.rocks/authorization-detail/", "actions": ["subscribe"], "topics": [{"match": "*"}]},
            detail(json!(["delete", "subscribe"]), json!([{"match": "a", "match_type": null}])),
            detail(json!(["future-action"]), json!([{"match": "*"}])),
        ])),
    )
    .unwrap();
    assert!(receives(&g, &["a"]) && !receives(&g, &["b"]) && !publishes(&g, &["a"]));
    // No details at all: a valid token that grants nothing.
    let g = check(
        &at(),
        &with(claims(json!([])), "authorization_details", None),
    )
    .unwrap();
    assert!(!receives(&g, &["a"]) && !publishes(&g, &["a"]));
}

/// The draft's examples: routing never widens what a token may read, and
/// alternate topics narrow a private update's audience.
#[test]
fn the_drafts_grant_examples() {
    let books = check(
        &at(),
        &claims(json!([detail(
            json!(["subscribe"]),
            json!([
                {"match": "https://example.com/books/1", "match_type": "exact"},
                {"match": "https://example.com/books/7"}
            ])
        )])),
    )
    .unwrap();
    assert!(receives(&books, &["https://example.com/books/1"]));
    assert!(!receives(&books, &["https://example.com/books/2"]));
    let user = check(
        &at(),
        &claims(json!([detail(
            json!(["subscribe"]),
            json!([
                {"match": "https://example.com/users/42/*", "match_type": "urlpattern"}
            ])
        )])),
    )
    .unwrap();
    assert!(receives(
        &user,
        &[
            "https://example.com/books/1",
            "https://example.com/users/42/books/1"
        ]
    ));
    assert!(!receives(&user, &["https://example.com/books/1"]));
    assert!(!publishes(&user, &["https://example.com/users/42/books/1"]));
    // A publisher needs every topic granted.
    let publisher = check(
        &at(),
        &claims(json!([detail(
            json!(["publish"]),
            json!([
                {"match": "https://example.com/books/:id", "match_type": "urlpattern"},
                {"match": "urn:x"}
            ])
        )])),
    )
    .unwrap();
    assert!(publishes(
        &publisher,
        &["https://example.com/books/1", "urn:x"]
    ));
    assert!(!publishes(
        &publisher,
        &["https://example.com/books/1", "https://example.com/users/1"]
    ));
    assert!(!receives(&publisher, &["urn:x"]));
}

/// The old `mercure` claim, as the reference hub's compatibility mode
/// takes it: no typ, aud or iss, exp optional but enforced.
#[test]
fn the_old_mercure_claim() {
    let plain = json!({"alg": "HS256"});
    let old = json!({"mercure": {"publish": ["*"], "subscribe": ["a", "https://example.com/books/{id}"]}});
    let g = check(&plain, &old).unwrap();
    assert!(g.is_legacy() && g.expires().is_none());
    assert!(publishes(&g, &["x", "y"]) && receives(&g, &["a"]) && !receives(&g, &["c"]));
    // A URI Template is only its own text here.
    assert!(!receives(&g, &["https://example.com/books/1"]));
    assert!(receives(&g, &["https://example.com/books/{id}"]));
    // exp with the leeway of sseloop's old tokens (5 s here).
    assert_eq!(
        check(&plain, &with(old.clone(), "exp", Some(json!(NOW - 5)))).unwrap_err(),
        TokenError::Expired
    );
    let late = check(&plain, &with(old.clone(), "exp", Some(json!(NOW - 4)))).unwrap();
    assert_eq!(late.expires(), Some(NOW + 1));
    assert_eq!(
        check(&plain, &with(old.clone(), "nbf", Some(json!(NOW + 60)))).unwrap_err(),
        TokenError::NotYetValid
    );
    assert!(check(&plain, &with(old.clone(), "aud", Some(json!("elsewhere")))).is_ok());
    assert!(check(&json!({"alg": "none"}), &old).is_err());
    // The namespaced claim wins; objects are matchers too.
    let both = json!({
        "mercure": {"subscribe": ["a"]},
        "https://mercure.rocks/": {"subscribe": [{"match": "/b/:x", "match_type": "urlpattern"}]}
    });
    let g = check(&plain, &both).unwrap();
    assert!(!receives(&g, &["a"]) && receives(&g, &["/b/1"]) && !publishes(&g, &["/b/1"]));
    for bad in [
        json!({"mercure": []}),
        json!({"mercure": {"publish": [1]}}),
        json!({"mercure": {"subscribe": "a"}}),
        json!({"mercure": {"subscribe": [{"match": "a", "match_type": "uritemplate"}]}}),
        json!({"mercure": {"subscribe": vec!["t"; MAX_TOPICS + 1]}}),
    ] {
        assert!(
            matches!(check(&plain, &bad).unwrap_err(), TokenError::Claims(_)),
            "{bad}"
        );
    }
    // authorization_details present: the token is a modern one.
    let mixed = with(old.clone(), "authorization_details", Some(json!([])));
    assert_eq!(check(&plain, &mixed).unwrap_err(), TokenError::Type);
    // The old claim turned off: it is a modern token without typ.
    let strict = Policy {
        legacy_claim: false,
        ..policy()
    };
    assert_eq!(
        validate(&plain, &old, &strict, &mut patterns()).unwrap_err(),
        TokenError::Type
    );
}
