//! `GET /` serves the inspector page whole and self-contained; no browser
//! needed (the page in a browser is `inspector.rs`, a real-client test).

use crate::support::TestServer;

#[test]
fn page_is_served_self_contained() {
    let server = TestServer::start(&[]);
    let (response, _) =
        server.request(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(response.head.status, 200);
    let content_type = response.head.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text();
    assert!(page.contains("EventSource"), "the page does not subscribe");
    // Works offline: nothing is loaded from another host.
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!page.contains(external), "the page loads {external}…");
    }
}

/// The pages are embedded gzip-compressed: a client that takes gzip gets
/// them so (`Content-Encoding: gzip`), one that does not gets the same page
/// decoded, and a `HEAD` has the length its `GET` would have. Both answers
/// say they vary by `Accept-Encoding`.
#[test]
fn pages_are_sent_gzip_to_clients_that_take_it() {
    let server = TestServer::start(&["--lab"]);
    for path in ["/", "/lab"] {
        let get = |fields: &str| {
            let raw = format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\n{fields}Connection: close\r\n\r\n"
            );
            server.request(raw.as_bytes()).0
        };
        let plain = get("");
        assert_eq!(plain.head.header("content-encoding"), None, "{path}");
        assert!(plain.text().contains("</html>"), "{path}");
        for fields in [
            "Accept-Encoding: gzip, deflate, br\r\n",
            "Accept-Encoding: br\r\nAccept-Encoding: *\r\n",
        ] {
            let zipped = get(fields);
            assert_eq!(zipped.head.status, 200);
            assert_eq!(
                zipped.head.header("content-encoding"),
                Some("gzip"),
                "{path}"
            );
            assert_eq!(
                zipped.head.header("vary"),
                Some("Accept-Encoding"),
                "{path}"
            );
            assert_eq!(&zipped.body[..3], b"\x1f\x8b\x08", "{path}: a gzip member");
            let deflated = &zipped.body[10..zipped.body.len() - 8];
            let text = miniz_oxide::inflate::decompress_to_vec(deflated).expect("deflate data");
            assert_eq!(text, plain.body, "{path}");
            assert!(zipped.body.len() < plain.body.len() / 2, "{path}");
        }
        assert_eq!(
            get("Accept-Encoding: gzip;q=0, deflate\r\n").body,
            plain.body,
            "{path}"
        );
        assert_eq!(plain.head.header("vary"), Some("Accept-Encoding"), "{path}");
        for fields in ["Accept-Encoding: gzip\r\n", ""] {
            let raw = format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n");
            let mut conn = server.http();
            conn.send(raw.as_bytes());
            let head = conn.read_head(crate::support::deadline());
            let length: usize = head.header("content-length").unwrap().parse().unwrap();
            let full = get(fields).body.len();
            assert_eq!(length, full, "{path} {fields:?}");
        }
    }
}
