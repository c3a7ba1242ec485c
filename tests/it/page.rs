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
