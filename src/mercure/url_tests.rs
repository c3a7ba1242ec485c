use super::*;

fn href(input: &str, base: Option<&str>) -> Option<String> {
    let base = base.map(|b| Url::parse(b, None).unwrap());
    Url::parse(input, base.as_ref())
        .ok()
        .map(|u| u.serialize().unwrap())
}

const HUB: &str = "http://127.0.0.1:8080/.well-known/mercure";

/// Absolute URLs: the standard's (and a browser's `new URL(input).href`)
/// answers.
#[test]
fn absolute_urls() {
    for (input, want) in [
        (
            "https://EXAMPLE.com:443/a/./b/../c?x#y",
            "https://example.com/a/c?x#y",
        ),
        ("http://example.com/%2e%2E/x", "http://example.com/x"),
        ("http://example.com/a/.%2e/b", "http://example.com/b"),
        ("http://example.com/a/%2e/b/%2E%2e", "http://example.com/a/"),
        ("http://example.com/a/..", "http://example.com/"),
        ("HTTP://a\\b\\c", "http://a/b/c"),
        ("http:\\\\a\\b", "http://a/b"),
        ("http:/a/b", "http://a/b"),
        ("http:a/b", "http://a/b"),
        ("  http://a/ \u{1}", "http://a/"),
        ("ht\ntp://a/b\t/c", "http://a/b/c"),
        ("ws://h:80/", "ws://h/"),
        ("wss://h:443", "wss://h/"),
        ("ftp://h:21/x", "ftp://h/x"),
        ("http://h:0080/", "http://h/"),
        ("http://h:8080", "http://h:8080/"),
        ("http://h:/", "http://h/"),
        ("https://h:80/", "https://h:80/"),
        ("http://user:pa:ss@h/", "http://user:pa%3Ass@h/"),
        ("http://@h", "http://h/"),
        ("http://a@b@c/", "http://a%40b@c/"),
        ("http://[::1]:8080/", "http://[::1]:8080/"),
        ("http://127.1/", "http://127.0.0.1/"),
        (
            "http://a/ b<>\"`{}^?x",
            "http://a/%20b%3C%3E%22%60%7B%7D%5E?x",
        ),
        ("http://a/?'\" ", "http://a/?%27%22"),
        ("foo://a/?'", "foo://a/?'"),
        ("http://a/#` x", "http://a/#%60%20x"),
        (
            "http://a/caf\u{e9}?\u{e9}#\u{e9}",
            "http://a/caf%C3%A9?%C3%A9#%C3%A9",
        ),
        ("http://a/%zz%41", "http://a/%zz%41"),
        ("urn:uuid:E1EE88E2", "urn:uuid:E1EE88E2"),
        ("mailto:Joe@Example.com", "mailto:Joe@Example.com"),
        ("urn:a b?c", "urn:a b?c"),
        ("urn:a ?c", "urn:a%20?c"),
        ("foo://Host/p/../q", "foo://Host/q"),
        ("foo:/a/../b", "foo:/b"),
        ("foo://", "foo://"),
        ("foo:/.//p", "foo:/.//p"),
        ("file:///C:/x", "file:///C:/x"),
        ("file:c:\\foo", "file:///c:/foo"),
        ("file://localhost/x", "file:///x"),
        ("file:///C|/x", "file:///C:/x"),
        ("file://h/x/../..", "file://h/"),
        ("file:///C:/..", "file:///C:/"),
    ] {
        assert_eq!(href(input, None).as_deref(), Some(want), "{input:?}");
    }
    for bad in [
        "",
        "a",
        "http://",
        "http://a@",
        "http:// a/",
        "http://h:65536/",
        "http://h:x/",
        "http://[::1/",
        "http://a%20b/",
        "1http://a",
        "foo://a b/",
    ] {
        assert_eq!(href(bad, None), None, "{bad:?}");
    }
}

#[test]
fn relative_references() {
    for (input, want) in [
        ("x", "http://127.0.0.1:8080/.well-known/x"),
        ("/books/1", "http://127.0.0.1:8080/books/1"),
        ("?q", "http://127.0.0.1:8080/.well-known/mercure?q"),
        ("#f", "http://127.0.0.1:8080/.well-known/mercure#f"),
        ("", "http://127.0.0.1:8080/.well-known/mercure"),
        ("//other/x", "http://other/x"),
        ("../..", "http://127.0.0.1:8080/"),
        ("https:x", "https://x/"),
        ("http:x", "http://127.0.0.1:8080/.well-known/x"),
        ("\\x\\y", "http://127.0.0.1:8080/x/y"),
        ("urn:z", "urn:z"),
        ("https://example.com/books/1", "https://example.com/books/1"),
    ] {
        assert_eq!(href(input, Some(HUB)).as_deref(), Some(want), "{input:?}");
    }
    assert_eq!(href("b", Some("urn:a")), None);
    assert_eq!(href("#x", Some("urn:a")).as_deref(), Some("urn:a#x"));
    assert_eq!(
        href("x", Some("file:///C:/a/b")).as_deref(),
        Some("file:///C:/a/x")
    );
    assert_eq!(
        href("/x", Some("file:///C:/a")).as_deref(),
        Some("file:///C:/x")
    );
}

#[test]
fn components() {
    let u = Url::parse("https://u:p@Example.COM:8443/a%2Fb/c?q=1#h", None).unwrap();
    assert_eq!(
        (
            u.scheme(),
            u.username(),
            u.password(),
            u.hostname().as_deref(),
            u.port()
        ),
        ("https", "u", "p", Some("example.com"), Some(8443))
    );
    assert_eq!(
        (u.pathname(), u.query(), u.fragment()),
        ("/a%2Fb/c".into(), Some("q=1"), Some("h"))
    );
    assert!(u.is_special() && !u.has_opaque_path());
    let o = Url::parse("urn:uuid:x", None).unwrap();
    assert_eq!(
        (o.pathname(), o.hostname().as_deref(), o.has_opaque_path()),
        ("uuid:x".into(), Some(""), true)
    );
    let idn = Url::parse("http://m\u{fc}nchen.de/x", None).unwrap();
    assert_eq!((idn.hostname(), idn.pathname()), (None, "/x".to_string()));
    assert_eq!(idn.serialize(), None);
}

#[test]
fn the_reserved_hub_namespace() {
    let hub = HubUrl::parse(HUB).unwrap();
    assert_eq!((hub.path(), hub.as_str()), ("/.well-known/mercure", HUB));
    for topic in [
        "/.well-known/mercure",
        "/.well-known/mercure/",
        "/.well-known/mercure/subscriptions/exact/x/y",
        "https://other.example/.well-known/mercure/x",
        "http://127.0.0.1:8080/.well-known/mercure",
        "/.well-known/%6Dercure/x",
        "/.well-known/%6dercure",
        "/%2E%77ell-known/mercure",
        "/.well-known/mercure/../mercure/x",
        "/.well-known/x/../mercure/y",
        "/.well-known/%2e%2e/.well-known/mercure/x",
        "/%2E%2E/.well-known/mercure",
        "\\.well-known\\mercure",
        "mercure",
        "mercure/x",
        "./mercure",
        "?x",
        "#x",
        "",
        "foo:/.well-known/mercure/x",
        "urn:/.well-known/mercure",
        "file:///.well-known/mercure",
        "http://[::1]/.well-known/mercure",
        "http://m\u{fc}nchen.de/.well-known/mercure/x",
        "ws://x/.well-known/mercure?y#z",
    ] {
        assert!(hub.reserves(topic), "{topic:?}");
    }
    for topic in [
        "/.WELL-KNOWN/mercure",
        "/.well-known/mercurex",
        "/.well-known/mercure%2Fx",
        "/.well-known/mercure.",
        "/.well-known/mercure%2e",
        "/.well-known",
        "x",
        "https://example.com/books/1",
        "urn:mercure",
        "mailto:x@.well-known/mercure",
        "http://a b/.well-known/mercure",
        "http:///.well-known/mercure",
        "*",
        "foo",
    ] {
        assert!(!hub.reserves(topic), "{topic:?}");
    }
    // A hub elsewhere: its own path is the namespace.
    let other = HubUrl::parse("https://hub.example/prefix/hub").unwrap();
    assert!(
        other.reserves("/prefix/hub/x")
            && other.reserves("hub")
            && !other.reserves("/.well-known/mercure")
    );
}

#[test]
fn unreserved_decoding() {
    assert_eq!(normalize_unreserved("/%41%7a%2D%2e%5F%7E"), "/Az-._~");
    assert_eq!(normalize_unreserved("/%2F%20%25%+1%4"), "/%2F%20%25%+1%4");
    assert_eq!(normalize_unreserved("/caf%C3%A9\u{e9}"), "/caf%C3%A9\u{e9}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input, with or without the hub as base: a URL or an error,
        /// never a panic; a URL's serialization parses to itself.
        #[test]
        fn parses_or_refuses_and_round_trips(input in "[a-zA-Z0-9:/?#\\[\\]@!$&'()*+,;=.%~ \\\\|^`{}<>\"-]{0,40}|\\PC{0,20}") {
            let hub = Url::parse(HUB, None).unwrap();
            for base in [None, Some(&hub)] {
                if let Ok(url) = Url::parse(&input, base)
                    && let Some(text) = url.serialize()
                {
                    let again = Url::parse(&text, None).unwrap();
                    prop_assert_eq!(again.serialize(), Some(text.clone()), "{}", text);
                }
            }
        }
    }
}
