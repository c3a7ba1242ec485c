use super::*;

const HUB: &str = "http://127.0.0.1:8080/.well-known/mercure";

fn hub() -> Url {
    Url::parse(HUB, None).unwrap()
}

fn pattern(p: &str) -> UrlPattern {
    UrlPattern::parse(p, Some(&hub())).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn check(p: &str, yes: &[&str], no: &[&str]) {
    let compiled = pattern(p);
    for t in yes {
        assert!(compiled.test(t, &hub()), "{p} should match {t}");
    }
    for t in no {
        assert!(!compiled.test(t, &hub()), "{p} should not match {t}");
    }
}

/// The URL Pattern standard's introduction examples.
#[test]
fn the_standards_examples() {
    check(
        "https://example.com/:category/*",
        &[
            "https://example.com/products/",
            "https://example.com/blog/our-greatest-product-ever",
        ],
        &[
            "https://example.com/",
            "http://example.com/products/",
            "https://example.com:8443/blog/our-greatest-product-ever",
        ],
    );
    // The second example, with `([0-9]+)` left out (regexp groups are not
    // supported) and so with `chair` matching too.
    check(
        "http{s}?://{:subdomain.}?shop.example/products/:id#reviews",
        &[
            "https://shop.example/products/74205#reviews",
            "https://kathryn@voyager.shop.example/products/74656#reviews",
            "http://insecure.shop.example/products/1701#reviews",
        ],
        &[
            "https://shop.example/products/2000",
            "http://shop.example:8080/products/0#reviews",
            "https://nx.shop.example/products/01?speed=5#reviews",
        ],
    );
    let base = Url::parse("https://discussion.example/forum/?page=2", None).unwrap();
    let p = UrlPattern::parse("../admin/*", Some(&base)).unwrap();
    for t in [
        "https://discussion.example/admin/",
        "https://edd:librarian@discussion.example/admin/update?id=1",
    ] {
        assert!(p.test(t, &base), "{t}");
    }
    for t in [
        "https://discussion.example/forum/admin/",
        "http://discussion.example:8080/admin/update?id=1",
    ] {
        assert!(!p.test(t, &base), "{t}");
    }
}

/// The pattern-string examples: `:name` stops at `/`, `?` makes the group
/// and its `/` prefix optional, `{…}` delimits, `*` takes the rest.
#[test]
fn pathname_rules() {
    let on = |path: &str| format!("https://example.com{path}");
    let case = |p: &str, yes: &[&str], no: &[&str]| {
        let yes: Vec<String> = yes.iter().map(|t| on(t)).collect();
        let no: Vec<String> = no.iter().map(|t| on(t)).collect();
        let yes: Vec<&str> = yes.iter().map(String::as_str).collect();
        let no: Vec<&str> = no.iter().map(String::as_str).collect();
        check(&on(p), &yes, &no);
    };
    case(
        "/blog/:title",
        &["/blog/hello-world"],
        &["/blog/2012/02", "/blog/", "/blog"],
    );
    case(
        "/products/:id?",
        &["/products", "/products/2"],
        &["/products/", "/products/2/3"],
    );
    case(
        "/products/{:id}?",
        &["/products/", "/products/2"],
        &["/products"],
    );
    case(
        "/products/*",
        &["/products/", "/products/a/b?x"],
        &["/products"],
    );
    case(
        "/books/:id+",
        &["/books/1", "/books/1/2/3"],
        &["/books", "/books/", "/books//1"],
    );
    case(
        "/books/:id*",
        &["/books", "/books/1", "/books/1/2"],
        &["/books/"],
    );
    case("/a{/b}?/c", &["/a/c", "/a/b/c"], &["/a/b/b/c"]);
    case("/a{/b}+", &["/a/b", "/a/b/b"], &["/a"]);
    case(
        "/file-:name.txt",
        &["/file-x.txt", "/file-a.b.txt"],
        &["/file-.txt", "/file-a/b.txt"],
    );
    case(
        "/caf\u{e9}/\\:x",
        &["/caf%C3%A9/:x", "/caf\u{e9}/:x"],
        &["/cafe/:x"],
    );
    case("/a/./b/../c", &["/a/c"], &["/a/b/c"]);
    case("/books/([^\\/]+?)", &["/books/1"], &["/books/1/2"]);
    case("/all(.*)", &["/all", "/all/x/y"], &["/al"]);
    case("/x y", &["/x%20y", "/x y"], &["/x+y"]);
}

#[test]
fn other_components() {
    check(
        "https://:sub.example.com/*",
        &["https://a.example.com/", "https://A.EXAMPLE.com/x"],
        &["https://a.b.example.com/", "https://example.com/"],
    );
    check(
        "https://*.example.com/*",
        &["https://a.b.example.com/x"],
        &["https://example.com/"],
    );
    check(
        "https://*",
        &["https://x.test/", "https://x.test:443/a"],
        &["https://x.test:8443/"],
    );
    check(
        "https://*:*",
        &["https://x.test:8443/", "https://x.test/"],
        &["http://x.test/"],
    );
    check(
        "https://example.com:8443/*",
        &["https://example.com:8443/a"],
        &["https://example.com/a"],
    );
    check(
        "http://example.com:80/*",
        &["http://example.com/a"],
        &["http://example.com:8080/a"],
    );
    check(
        "https://u\\:p@example.com/*",
        &[],
        &["https://example.com/"],
    );
    check(
        "https://user@example.com/*",
        &["https://user@example.com/"],
        &["https://example.com/", "https://other@example.com/"],
    );
    check(
        "https://example.com/books/:id",
        &[
            "https://EXAMPLE.com/books/1",
            "https://example.com/books/1?x#y",
            "https://example.com:443/books/1",
        ],
        &[
            "https://example.com:8443/books/1",
            "/books/1",
            "https://example.com/books/1/2",
        ],
    );
    check(
        "https://example.com/search?q=:v",
        &["https://example.com/search?q=a/b"],
        &[
            "https://example.com/search?q=",
            "https://example.com/search",
        ],
    );
    check(
        "https://example.com/#:h",
        &["https://example.com/#top"],
        &["https://example.com/"],
    );
    // In a pattern string `::` is two bad `:name` groups: IPv6 colons are
    // escaped, as in browsers.
    check(
        "https://[\\:\\:1]/*",
        &["https://[0::1]/x"],
        &["https://[::2]/x"],
    );
    assert!(UrlPattern::parse("https://[::1]/*", None).is_err());
    check(
        "https://127.1/*",
        &["https://127.0.0.1/"],
        &["https://127.0.0.2/"],
    );
    check(
        "http{s}?://example.com/*",
        &["http://example.com/", "https://example.com/"],
        &["ws://example.com/"],
    );
}

#[test]
fn opaque_and_other_schemes() {
    check(
        "urn:*",
        &["urn:x", "urn:uuid:1"],
        &["https://x/", "mailto:x"],
    );
    check(
        "urn\\:uuid\\:*",
        &["urn:uuid:1234"],
        &["urn:isbn:1", "https://x/uuid:1"],
    );
    check("mailto:*", &["mailto:a@b.example"], &["urn:a"]);
    // `:uuid` is a named group, so this protocol is `urn` and one or more
    // characters: a colon in a pattern's text must be escaped.
    check("urn:uuid:*", &[], &["urn:uuid:1234"]);
    // A non-special scheme's path has no `/` delimiter, as the standard says.
    check("foo://host/:x", &["foo://host/a/b"], &["foo://other/a"]);
    check("file:///*", &["file:///etc/hosts"], &["http://x/"]);
}

/// The draft's own examples, relative patterns resolved against the hub.
#[test]
fn the_drafts_examples() {
    check(
        "https://example.com/bar/:id",
        &["https://example.com/bar/7"],
        &["https://example.com/bar", "https://example.com/foo/7"],
    );
    check(
        "https://example.com/users/42/*",
        &["https://example.com/users/42/books/1"],
        &["https://example.com/users/43/books/1"],
    );
    check(
        "/.well-known/mercure/subscriptions/exact/:topic/:subscriber",
        &[
            "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fexample.com%2Ffoo/urn%3Auuid%3Abb3de268",
            "http://127.0.0.1:8080/.well-known/mercure/subscriptions/exact/a/b",
            // A relative pattern gives the path: the search stays `*`.
            "http://127.0.0.1:8080/.well-known/mercure/subscriptions/exact/a/b?x",
        ],
        &[
            "/.well-known/mercure/subscriptions/exact/a",
            "https://example.com/.well-known/mercure/subscriptions/exact/a/b",
        ],
    );
    check(
        "/books/:id",
        &["/books/1", "http://127.0.0.1:8080/books/2"],
        &["https://example.com/books/1", "books/1"],
    );
    check(
        "books/:id",
        &["books/1", "/.well-known/books/1"],
        &["/books/1"],
    );
    check("?q=:v", &["?q=1", "/.well-known/mercure?q=2"], &["/x?q=1"]);
    // A relative `*` is the hub's directory and below; a topic that is not
    // a URL matches no pattern.
    check(
        "*",
        &["/.well-known/x", "anything"],
        &["/x", "http://a b/", "http://"],
    );
    check(
        "/*",
        &["/x", "/.well-known/mercure"],
        &["http://a b/", "https://example.com/x"],
    );
}

#[test]
fn errors_name_what_is_refused() {
    let err = |p: &str| UrlPattern::parse(p, Some(&hub())).unwrap_err();
    for (p, text) in [
        ("https://example.com/:id(\\d+)", "regular expression groups"),
        ("https://example.com/(foo|bar)", "regular expression groups"),
        (
            "https://m\u{fc}nchen.de/*",
            "internationalised domain names",
        ),
        (
            "https://xn--mnchen-3ya.de/*",
            "internationalised domain names",
        ),
        ("https://example.com/:\u{e9}t\u{e9}", "non-ASCII"),
        ("https://example.com/:a\u{e9}", "non-ASCII"),
    ] {
        let e = err(p);
        assert!(matches!(e, PatternError::Unsupported(_)), "{p}: {e}");
        assert!(
            e.to_string().starts_with("unsupported URL pattern syntax")
                && e.to_string().contains(text),
            "{p}: {e}"
        );
    }
    for p in [
        "https://example.com/{a",
        "https://example.com/:a/:a",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://example.com:-1/",
        "/:",
        "https://example.com/\\",
        "https://example.com/(",
        "https://example.com/()",
        "https://example.com/(?x)",
    ] {
        assert!(
            matches!(err(p), PatternError::Invalid(_)),
            "{p}: {:?}",
            err(p)
        );
    }
    assert_eq!(
        err(&format!("/{}", "a".repeat(MAX_PATTERN_LEN))),
        PatternError::TooLong
    );
    let many: String = (0..MAX_PARTS).map(|i| format!("/:g{i}")).collect();
    assert_eq!(err(&many), PatternError::TooComplex);
    assert_eq!(
        UrlPattern::parse("/books/:id", None).unwrap_err(),
        PatternError::Invalid("a relative pattern without a base URL")
    );
    assert!(UrlPattern::parse("https://example.com/:id", None).is_ok());
}

/// Many `*` and `:name` groups against a long topic that almost matches:
/// a backtracking matcher tries a number of splits that grows as the
/// topic's length to the power of the groups; the automaton visits each
/// state at most once per byte. The bound is on steps counted, not time.
#[test]
fn pathological_patterns_cost_states_times_length() {
    let mut p = String::from("https://example.com");
    for i in 0..10 {
        p.push_str(&format!("/*-:g{i}"));
    }
    p.push_str("/end");
    let compiled = pattern(&p);
    let states = compiled.states() as u64;
    let topic = format!("https://example.com{}", "/-a".repeat(320));
    let parsed = TopicUrl::parse(&topic, &hub()).unwrap();
    let mut steps = Steps::default();
    assert!(!compiled.matches_counted(&parsed, &mut steps));
    let len = parsed.pathname.len() as u64;
    assert!(
        steps.0 > 0 && steps.0 <= 4 * states * (len + 1),
        "{} steps, {states} states, {len} bytes",
        steps.0
    );
    // And a wildcard-only pattern of the same shape stays well under it.
    let stars = pattern(&format!("https://example.com/{}x", "*a".repeat(15)));
    let topic =
        TopicUrl::parse(&format!("https://example.com/{}", "a".repeat(960)), &hub()).unwrap();
    let mut steps = Steps::default();
    assert!(!stars.matches_counted(&topic, &mut steps));
    let bound = 4 * stars.states() as u64 * (topic.pathname.len() as u64 + 1);
    assert!(steps.0 <= bound, "{} > {bound}", steps.0);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            Just(":n".to_string()),
            "[a-c/.-]{1,3}",
            Just("{/a}?".to_string()),
            Just("{:n/}+".to_string()),
            Just("{x:n}*".to_string()),
        ]
    }

    proptest! {
        /// Any pattern of the supported syntax against any topic: the
        /// steps never pass 4 × states × (length + 1) per component.
        #[test]
        fn matching_is_bounded(pieces in proptest::collection::vec(piece(), 1..12), topic in "[a-c/.-]{0,200}") {
            // Name groups get distinct names.
            let mut n = 0;
            let path: String = pieces.iter().map(|p| {
                n += 1;
                p.replace(":n", &format!(":n{n}"))
            }).collect();
            let Ok(compiled) = UrlPattern::parse(&format!("https://h.test/{path}"), None) else {
                return Ok(());
            };
            let parsed = TopicUrl::parse(&format!("https://h.test/{topic}"), &hub()).unwrap();
            let mut steps = Steps::default();
            compiled.matches_counted(&parsed, &mut steps);
            let bound = 4 * compiled.states() as u64 * (parsed.pathname.len() as u64 + 1);
            prop_assert!(steps.0 <= bound, "{} > {}", steps.0, bound);
        }

        /// Parsing never panics, whatever the text.
        #[test]
        fn parse_any_text(p in "\\PC{0,40}|[:*?+{}()\\\\/a.:@#\\[\\]]{0,30}") {
            let _ = UrlPattern::parse(&p, Some(&hub()));
        }
    }
}
