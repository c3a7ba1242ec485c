//! `--log-level trace` shows the bytes written to each connection, for
//! people learning the wire format.

use crate::support::TestServer;

#[test]
fn trace_logs_each_write_escaped_and_cut() {
    let server = TestServer::start(&["--log-level", "trace"]);
    let mut sub = server.subscribe_ready("?topic=t");
    let mut publisher = server.publisher();
    let id = publisher.publish_ok("?topic=t&event=step", b"one\ntwo");
    assert_eq!(sub.next_event().data, "one\ntwo");
    // The written chunk, line ends escaped so one write is one log line.
    let wanted = format!("\\r\\nid: {id}\\nevent: step\\ndata: one\\ndata: two\\n\\n\\r\\n");
    let line = server
        .await_log(&[" bytes: \"", &wanted])
        .unwrap_or_else(|| panic!("no trace of the write:\n{}", server.log()));
    assert!(line.contains("TRACE"), "{line}");

    // A big write is cut, and says so.
    let big = "x".repeat(10_000);
    publisher.publish_ok("?topic=t", big.as_bytes());
    assert_eq!(sub.next_event().data, big);
    let cut = server
        .await_log(&["\" …"])
        .unwrap_or_else(|| panic!("no cut trace line:\n{}", server.log()));
    assert!(cut.len() < 2_000, "a trace line of {} bytes", cut.len());
}
