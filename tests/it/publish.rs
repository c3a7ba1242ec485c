//! Publishing: the answer, ids, keep-alive, pipelining, request bodies, and
//! delivery without delay.

use std::time::{Duration, Instant};

use crate::support::{
    TestServer, assert_publish_ok, deadline, id_run, id_seq, padded, publish_request,
};

#[test]
fn publish_answer_is_the_id_as_plain_text() {
    let server = TestServer::start(&[]);
    let response = server.publisher().publish("?topic=a", b"x");
    let id = assert_publish_ok(&response);
    assert_eq!(response.head.version, "HTTP/1.1");
    assert_eq!(response.head.reason, "OK");
    assert_eq!(
        response.head.header("content-length"),
        Some(id.len().to_string().as_str())
    );
    assert_eq!(id.trim(), id, "no newline or padding around the id");
}

#[test]
fn event_id_equals_the_publish_answer_and_ids_increase() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut publisher = server.publisher();
    let mut previous: Option<String> = None;
    for n in 0..20 {
        // Mix topic and broadcast publishes: ids are one sequence per run.
        let q = if n % 3 == 0 { "" } else { "?topic=a" };
        let id = publisher.publish_ok(q, format!("{n}").as_bytes());
        let event = sub.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert_eq!(event.data, n.to_string());
        if let Some(prev) = &previous {
            assert_eq!(id_run(prev), id_run(&id), "run part changed: {prev} {id}");
            assert!(
                id_seq(&id) > id_seq(prev),
                "ids not increasing: {prev} then {id}"
            );
        }
        previous = Some(id);
    }
}

#[test]
fn ids_increase_across_connections_and_without_subscribers() {
    let server = TestServer::start(&[]);
    let first = server.publisher().publish_ok("?topic=nobody", b"1");
    let second = server.publisher().publish_ok("", b"2");
    let third = server.publisher().publish_ok("?topic=other", b"3");
    assert!(id_seq(&first) < id_seq(&second), "{first} {second}");
    assert!(id_seq(&second) < id_seq(&third), "{second} {third}");
}

#[test]
fn publishes_reuse_one_keep_alive_connection() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut publisher = server.publisher();
    for n in 0..10 {
        let response = publisher.publish("?topic=a", format!("k{n}").as_bytes());
        let id = assert_publish_ok(&response);
        assert!(
            !response
                .head
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "publish answer closes the connection: {:?}",
            response.head
        );
        assert_eq!(sub.next_event().id, Some(id));
    }
}

#[test]
fn pipelined_publishes_in_one_write_are_answered_in_order() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    let bodies: Vec<String> = (0..8).map(|n| format!("pipelined {n}")).collect();
    let mut batch = Vec::new();
    for body in &bodies {
        batch.extend(publish_request("?topic=a", body.as_bytes()));
    }
    // A chunked request in the middle: its framing must not swallow the
    // request after it.
    batch.extend_from_slice(
        b"POST /publish?topic=a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nchunk\r\n0\r\n\r\n",
    );
    batch.extend(publish_request("?topic=a", b"last"));
    conn.send(&batch);

    let mut ids = Vec::new();
    for _ in 0..bodies.len() + 2 {
        ids.push(assert_publish_ok(&conn.read_response(deadline())));
    }
    for pair in ids.windows(2) {
        assert!(
            id_seq(&pair[0]) < id_seq(&pair[1]),
            "answers out of order: {ids:?}"
        );
    }
    let expected: Vec<&str> = bodies
        .iter()
        .map(String::as_str)
        .chain(["chunk", "last"])
        .collect();
    for (id, body) in ids.iter().zip(expected) {
        let event = sub.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert_eq!(event.data, body);
    }
}

/// Larger than the server's 64 KiB read buffer: the reads of one readiness
/// fill it, then come up short, and whatever follows must still be read.
#[test]
fn pipelined_publishes_larger_than_a_read_are_all_served() {
    let server = TestServer::start(&["--max-event-size", "1MiB"]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    let sizes = [200 << 10, 10, 70 << 10, 7, 64 << 10];
    let bodies: Vec<String> = (0..sizes.len()).map(|n| padded(n, sizes[n])).collect();
    let mut batch = Vec::new();
    for body in &bodies {
        batch.extend(publish_request("?topic=a", body.as_bytes()));
    }
    conn.send(&batch);
    for body in &bodies {
        let id = assert_publish_ok(&conn.read_response(deadline()));
        let event = sub.next_event();
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert!(event.data == *body, "event of {} bytes garbled", body.len());
    }
}

#[test]
fn pipelined_health_and_publish_mix() {
    let server = TestServer::start(&[]);
    let mut conn = server.http();
    let mut batch = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    batch.extend(publish_request("", b"x"));
    batch.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.send(&batch);
    assert_eq!(conn.read_response(deadline()).text(), "ok");
    assert_publish_ok(&conn.read_response(deadline()));
    assert_eq!(conn.read_response(deadline()).text(), "ok");
}

#[test]
fn publish_split_into_tiny_writes() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    let request = publish_request("?topic=a&event=split", b"split across\nmany writes");
    conn.send_in_pieces(&request, 1);
    let id = assert_publish_ok(&conn.read_response(deadline()));
    let event = sub.next_event();
    assert_eq!(event.id, Some(id));
    assert_eq!(event.event.as_deref(), Some("split"));
    assert_eq!(event.data, "split across\nmany writes");
}

#[test]
fn head_and_body_in_separate_writes() {
    let server = TestServer::start(&[]);
    let mut conn = server.http();
    conn.send(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n");
    // The server must wait for the body rather than answer early.
    conn.expect_silence(Duration::from_millis(100));
    conn.send(b"he");
    conn.send(b"llo");
    assert_publish_ok(&conn.read_response(deadline()));
}

#[test]
fn expect_100_continue_is_honoured() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    conn.send(
        b"POST /publish?topic=a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    // The body is only sent once the server asks for it.
    let interim = conn.read_response(deadline());
    assert_eq!(interim.head.status, 100, "{:?}", interim.head);
    assert_eq!(interim.head.headers.len(), 0, "{:?}", interim.head);
    conn.send(b"continued");
    let id = assert_publish_ok(&conn.read_response(deadline()));
    let event = sub.next_event();
    assert_eq!(event.id, Some(id));
    assert_eq!(event.data, "continued");
}

#[test]
fn expect_100_continue_raw_bytes() {
    let server = TestServer::start(&[]);
    let mut conn = server.http();
    conn.send(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = conn.take_raw_until(b"\r\n\r\n");
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.send(b"x");
    assert_publish_ok(&conn.read_response(deadline()));
}

#[test]
fn chunked_request_body_is_the_data() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    conn.send(
        b"POST /publish?topic=a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nhel\r\n6\r\nlo\nwor\r\nA;ext=1\r\nld and mor\r\n1\r\ne\r\n0\r\n\r\n",
    );
    let id = assert_publish_ok(&conn.read_response(deadline()));
    let event = sub.next_event();
    assert_eq!(event.id, Some(id));
    assert_eq!(event.data, "hello\nworld and more");
}

#[test]
fn chunked_request_body_with_trailer_in_tiny_writes() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    let request =
        b"POST /publish?topic=a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\ndata\r\n1\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n";
    conn.send_in_pieces(request, 2);
    let id = assert_publish_ok(&conn.read_response(deadline()));
    let event = sub.next_event();
    assert_eq!(event.id, Some(id));
    assert_eq!(event.data, "data!");
    // The trailer was consumed: the connection is ready for the next request.
    conn.send(&publish_request("?topic=a", b"next"));
    assert_publish_ok(&conn.read_response(deadline()));
    assert_eq!(sub.next_event().data, "next");
}

#[test]
fn empty_chunked_body_publishes_an_empty_event() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut conn = server.http();
    conn.send(
        b"POST /publish?topic=a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let id = assert_publish_ok(&conn.read_response(deadline()));
    let event = sub.next_event();
    assert_eq!(event.id, Some(id));
    assert_eq!(event.data, "");
}

#[test]
fn http10_publish_is_answered() {
    let server = TestServer::start(&[]);
    let (response, _conn) =
        server.request(b"POST /publish HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
    assert_publish_ok(&response);
}

/// Regression test for buffered delivery: each event must reach the
/// subscriber by itself, without a later event or a heartbeat pushing it out
/// of a buffer. Heartbeats are off so only a real flush can deliver it.
#[test]
fn each_event_arrives_before_the_next_is_published() {
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut sub = server.subscribe_ready("?topic=a");
    let mut publisher = server.publisher();
    for n in 0..20 {
        let started = Instant::now();
        let id = publisher.publish_ok("?topic=a", format!("tick {n}").as_bytes());
        // Loose bound: anything close to it means the event sat in a buffer.
        let event = sub.next_event_by(started + Duration::from_secs(1));
        assert_eq!(event.id, Some(id));
        assert_eq!(event.data, format!("tick {n}"));
    }
}

#[test]
fn event_arrives_while_the_publisher_connection_stays_open() {
    // The publish connection is neither closed nor reused afterwards: the
    // event must not wait for either.
    let server = TestServer::start(&["--heartbeat", "0"]);
    let mut sub = server.subscribe_ready("");
    let mut publisher = server.publisher();
    let started = Instant::now();
    let id = publisher.publish_ok("", b"now");
    let event = sub.next_event_by(started + Duration::from_secs(1));
    assert_eq!(event.id, Some(id));
    drop(publisher);
}

/// `Idempotency-Key` in one process: a publish retried with the key, on
/// any connection and either loop, is answered with the first one's id
/// and publishes nothing; another key, or none, publishes; a bad key is
/// 400.
#[test]
fn a_publish_retried_with_its_idempotency_key_is_published_once() {
    use crate::cluster_defects::idempotent_publish;
    use crate::loops::loop_of;
    let server = TestServer::start(&["--loops", "2", "--log-level", "debug"]);
    let mut sub = server.subscribe_ready("");
    let publish_on = |key: &str, body: &str| {
        let mut conn = server.http();
        conn.send(&idempotent_publish(key, body));
        (conn.read_response(deadline()), conn)
    };
    let publish = |key: &str, body: &str| publish_on(key, body).0;
    let first = assert_publish_ok(&publish("order-42", "paid"));
    // New connections, until retries have come on both loops (the kernel
    // spreads them by a hash of their addresses).
    let mut loops_seen = [false; 2];
    for _ in 0..64 {
        let (again, conn) = publish_on("order-42", "paid");
        assert_eq!(
            assert_publish_ok(&again),
            first,
            "the retry gets the first one's id"
        );
        loops_seen[loop_of(&server, conn.stream())] = true;
        if loops_seen == [true, true] {
            break;
        }
    }
    assert_eq!(
        loops_seen,
        [true, true],
        "64 retries did not reach both loops"
    );
    let other = assert_publish_ok(&publish("order-43", "paid"));
    let plain = server.publisher().publish_ok("", b"no key");
    assert_eq!(sub.next_event().id.as_deref(), Some(first.as_str()));
    assert_eq!(sub.next_event().id.as_deref(), Some(other.as_str()));
    let last = sub.next_event();
    assert_eq!(
        (last.id.as_deref(), last.data.as_str()),
        (Some(plain.as_str()), "no key")
    );
    assert_eq!(server.metric("sseloop_events_published_total"), 3);
    let bad = publish(&"k".repeat(257), "x");
    assert_eq!(bad.head.status, 400, "{:?}", bad.text());
}
