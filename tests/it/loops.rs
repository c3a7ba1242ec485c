//! Several poll loops in one process (`--loops N`): every endpoint on every
//! loop, one order of events for every subscriber of every loop, ids that
//! resume on whichever loop a reconnect lands, `/metrics` and
//! `--max-connections` for the whole process, and one shutdown for all.
//! Which loop took a connection is read from the server's debug log line
//! `loop N: connection K from ADDR`, with ADDR the client's own address.

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::support::{
    HttpConn, Item, Subscriber, TestServer, assert_publish_ok, assert_same_sequence, deadline,
    id_seq, metric_value, publish_request,
};

const LOOPS: usize = 2;

fn start(extra: &[&str]) -> TestServer {
    let mut args = vec!["--loops", "2", "--log-level", "debug"];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// The loop that accepted the connection whose client end is `stream`.
pub(crate) fn loop_of(server: &TestServer, stream: &TcpStream) -> usize {
    let me = stream.local_addr().unwrap().to_string();
    let line = server
        .await_log(&[&format!("from {me}")])
        .unwrap_or_else(|| panic!("no accept line for {me}:\n{}", server.log()));
    let (_, rest) = line.split_once("loop ").expect("a loop number");
    rest.split(':').next().unwrap().parse().unwrap()
}

/// Opens connections with `open` until at least `per_loop` of them sit on
/// each loop; returns them by loop. Bounded: the kernel spreads new
/// connections by a hash of their addresses, so 200 tries that all land
/// on one loop would mean it does not spread them at all.
fn on_every_loop<T>(
    server: &TestServer,
    per_loop: usize,
    mut open: impl FnMut() -> T,
    stream: impl Fn(&T) -> &TcpStream,
) -> Vec<Vec<T>> {
    let mut by_loop: Vec<Vec<T>> = (0..LOOPS).map(|_| Vec::new()).collect();
    for _ in 0..200 {
        if by_loop.iter().all(|l| l.len() >= per_loop) {
            return by_loop;
        }
        let conn = open();
        let index = loop_of(server, stream(&conn));
        if by_loop[index].len() < per_loop {
            by_loop[index].push(conn);
        }
    }
    panic!(
        "200 connections did not reach every loop: {:?}",
        by_loop.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// Publishers on every loop, publishing at once, and subscribers on every
/// loop: every subscriber sees the same events in the same order, with
/// ids that only grow.
#[test]
fn concurrent_publishers_on_every_loop_give_every_subscriber_one_order() {
    let server = start(&[]);
    let subscribers = on_every_loop(
        &server,
        3,
        || server.subscribe_ready("?topic=o"),
        |s| s.stream(),
    );
    let publishers = on_every_loop(&server, 2, || server.http(), HttpConn::stream);
    const EACH: usize = 100;
    let senders: Vec<_> = publishers
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(p, mut conn)| {
            thread::spawn(move || {
                for i in 0..EACH {
                    conn.send(&publish_request(
                        "?topic=o",
                        format!("p{p} e{i}").as_bytes(),
                    ));
                    assert_publish_ok(&conn.read_response(deadline()));
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let total = EACH * 2 * LOOPS;
    let mut first: Option<Vec<(String, String)>> = None;
    for mut sub in subscribers.into_iter().flatten() {
        let got: Vec<(String, String)> = (0..total)
            .map(|_| {
                let e = sub.next_event();
                (e.id.expect("an id"), e.data)
            })
            .collect();
        let seqs: Vec<u64> = got.iter().map(|(id, _)| id_seq(id)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "ids only grow: {seqs:?}"
        );
        match &first {
            None => first = Some(got),
            Some(want) => assert_same_sequence(want, &got, "two subscribers"),
        }
    }
}

/// An id from a stream on one loop resumes on every loop, with exactly
/// the events after it and then the live stream.
#[test]
fn an_id_resumes_on_whichever_loop_the_reconnect_lands() {
    let server = start(&[]);
    let mut publisher = server.publisher();
    let ids: Vec<String> = (0..30)
        .map(|i| publisher.publish_ok("?topic=r", format!("e{i}").as_bytes()))
        .collect();
    let resumed = on_every_loop(
        &server,
        2,
        || server.resume("?topic=r", &ids[9]),
        Subscriber::stream,
    );
    publisher.publish_ok("?topic=r", b"live");
    for mut sub in resumed.into_iter().flatten() {
        for (i, id) in ids.iter().enumerate().skip(10) {
            let e = sub.next_event();
            assert_eq!(e.id.as_ref(), Some(id));
            assert_eq!(e.data, format!("e{i}"));
        }
        assert_eq!(sub.next_event().data, "live");
    }
}

/// `/metrics` answers for the whole process on every loop, with each
/// loop's share beside it.
#[test]
fn metrics_count_the_whole_process_whichever_loop_answers() {
    let server = start(&[]);
    let _subs = on_every_loop(&server, 2, || server.subscribe_ready(""), |s| s.stream());
    let askers = on_every_loop(&server, 1, || server.http(), HttpConn::stream);
    let total_subscribers = 2 * LOOPS as u64;
    // The surplus streams `on_every_loop` dropped leave once their loop
    // has seen them go (a loaded machine may not have yet).
    server.await_metric("sseloop_subscribers", |n| n == total_subscribers);
    for mut conn in askers.into_iter().flatten() {
        conn.send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let text = conn.read_response(deadline()).text();
        assert_eq!(
            metric_value(&text, "sseloop_subscribers"),
            total_subscribers,
            "{text}"
        );
        let per_loop: u64 = (0..LOOPS)
            .map(|i| metric_value(&text, &format!("sseloop_loop_subscribers{{loop=\"{i}\"}}")))
            .sum();
        assert_eq!(per_loop, total_subscribers, "{text}");
        assert!(metric_value(&text, "sseloop_loop_subscribers{loop=\"1\"}") >= 2);
    }
}

/// `--max-connections` bounds the process, not each loop: past it, a
/// subscribe on any loop is told to come back later.
#[test]
fn max_connections_counts_every_loop() {
    let server = start(&["--max-connections", "3"]);
    let held: Vec<Subscriber> = (0..3).map(|_| server.subscribe_ready("")).collect();
    // Over capacity on every loop: each gets the retry stream.
    let refused = on_every_loop(&server, 1, || server.subscribe(""), |s| s.stream());
    for mut sub in refused.into_iter().flatten() {
        assert!(matches!(sub.next_item(), Item::Retry(_)));
        assert_eq!(sub.next_item(), Item::Comment("server at capacity".into()));
        sub.expect_clean_end();
    }
    drop(held);
}

/// One SIGTERM ends the streams of every loop cleanly and the process
/// exits 0.
#[test]
fn one_signal_ends_every_loop() {
    let mut server = start(&[]);
    let subs = on_every_loop(&server, 2, || server.subscribe_ready(""), |s| s.stream());
    server.signal(libc::SIGTERM);
    for mut sub in subs.into_iter().flatten() {
        sub.expect_clean_end();
    }
    server.expect_exit_0(Duration::from_secs(5));
}

/// The library's `Publisher` reaches the subscribers of every loop.
#[test]
fn the_library_publisher_reaches_every_loop() {
    let config = sseloop::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        loops: LOOPS,
        ..sseloop::Config::default()
    };
    let server = sseloop::Server::bind(config).unwrap();
    let addr = server.local_addr();
    let publisher = server.publisher();
    let running = thread::spawn(move || server.run());
    let mut subs: Vec<HttpConn> = (0..16)
        .map(|_| {
            let mut conn = HttpConn::new(crate::support::connect(addr));
            conn.send(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
            conn.take_raw_until(b": connected\n");
            conn
        })
        .collect();
    let mut asker = HttpConn::new(crate::support::connect(addr));
    asker.send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let text = asker.read_response(deadline()).text();
    for i in 0..LOOPS {
        let name = format!("sseloop_loop_subscribers{{loop=\"{i}\"}}");
        assert!(
            metric_value(&text, &name) > 0,
            "16 streams, none on loop {i}:\n{text}"
        );
    }
    let id = publisher.publish(sseloop::Event::new("to all")).unwrap();
    for sub in &mut subs {
        let raw = String::from_utf8(sub.take_raw_until(b"data: to all\n\n")).unwrap();
        assert!(raw.contains(&format!("id: {id}\n")), "{raw:?}");
    }
    publisher.shutdown();
    running.join().unwrap().unwrap();
}
