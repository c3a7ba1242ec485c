//! No client buys more than its share of the loop: the bound on unsent
//! answers holds per request, a stream's own input is left to the kernel's
//! flow control, a half-closed subscriber keeps its stream while a closed
//! one leaves at once, a long resume is scanned in slices, each stream's
//! kernel send buffer is fixed, a subscriber names a bounded number of
//! topics, and running out of descriptors is logged once per burst.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::{
    HttpConn, Subscriber, TestServer, deadline, metric_value, publish_request, query,
};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// One read of 2 000 pipelined `GET /` (the 40 KB inspector page each)
/// from a client that never reads used to queue them all, 80 MB for one
/// connection: the bound on unsent answers is checked per request served,
/// and the rest waits until the client reads.
#[test]
fn pipelined_answers_are_bounded_per_request_not_per_read() {
    let server = TestServer::start(&[]);
    let rss_before = server.rss_kib();
    let mut greedy = server.http();
    greedy.send(&b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(2000));
    // The loop serves connections in the order they became ready: once a
    // later connection is answered, the pipelined read was served too.
    let (health, _) = server.request(HEALTH);
    assert_eq!(health.text(), "ok");
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 16 << 10,
        "RSS grew by {grown} KiB for one connection that does not read"
    );
    // Nothing is dropped: a client that reads gets every answer, in order.
    for i in 0..2000 {
        let answer = greedy.read_response(deadline());
        assert_eq!(answer.head.status, 200, "answer {i}");
    }
}

/// What a subscriber's client sends once its stream began is not read:
/// the kernel pushes back on a client that floods, instead of the loop
/// reading and dropping gigabytes, and the stream goes on.
#[test]
fn a_flooding_subscriber_is_pushed_back_by_the_kernel() {
    let server = TestServer::start(&[]);
    let mut sub = server.subscribe_ready("?topic=f");
    let mut flood = sub.stream().try_clone().unwrap();
    flood
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0usize;
    // Bounded: a server that reads everything takes 1 GiB within seconds.
    while sent < 1 << 30 {
        match flood.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("flood write: {e}"),
        }
    }
    assert!(
        sent < 64 << 20,
        "the server took {sent} bytes from a stream's client"
    );
    server.publisher().publish_ok("?topic=f", b"still here");
    assert_eq!(sub.next_event().data, "still here");
}

/// A stream whose head the client awaits after shutting its writing side
/// (`nc -N`, some proxies and scripts) used to end at the client's FIN,
/// often before its head: it gets its stream, over HTTP/1.1 and 1.0.
#[test]
fn a_subscriber_that_half_closes_gets_its_stream() {
    let server = TestServer::start(&["--heartbeat", "60m"]);
    for version in ["1.1", "1.0"] {
        let mut stream = server.connect();
        let request = format!("GET /events?topic=h HTTP/{version}\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut conn = HttpConn::new(stream);
        let head = conn.read_head(deadline());
        assert_eq!(head.status, 200, "HTTP/{version}");
        let mut sub = Subscriber::from_head(conn, head);
        sub.expect_connected();
        for n in 0..3 {
            let data = format!("{version} event {n}");
            server.publisher().publish_ok("?topic=h", data.as_bytes());
            assert_eq!(sub.next_event().data, data);
        }
    }
}

/// A subscriber that closes its connection is gone at once, not at the
/// next heartbeat or event (an hour here): the loop, which does not read a
/// stream, sees the FIN in the readiness and probes with a heartbeat,
/// which a closed socket answers with a reset.
#[test]
fn a_subscriber_that_closes_leaves_at_once() {
    let server = TestServer::start(&["--heartbeat", "60m"]);
    let subs: Vec<Subscriber> = (0..3).map(|_| server.subscribe_ready("")).collect();
    server.await_metric("sseloop_subscribers", |n| n == 3);
    drop(subs);
    server.await_metric("sseloop_subscribers", |n| n == 0);
}

/// One resume whose topics match none of a long history of many-topic
/// events used to be scanned in one go, freezing every other connection:
/// it is scanned in slices between which the loop serves others. A
/// publish sent right after the resume is answered while the scan still
/// runs (`sseloop_replaying_subscribers` says so); without the slices the
/// scan would be over before the publish is read.
#[test]
fn a_long_resume_scan_does_not_hold_up_a_publisher() {
    let server = TestServer::start(&["--history", "2048"]);
    let wide: Vec<(String, String)> = (0..200)
        .map(|i| ("topic".into(), format!("w{i}")))
        .collect();
    let wide: Vec<(&str, &str)> = wide.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let wide = query(&wide);
    let mut publisher = server.publisher();
    let first = publisher.publish_ok(&wide, b"0");
    // Pipelined, then the answers: 2 047 more events naming 200 topics each.
    let mut batch = Vec::new();
    for i in 1..2048 {
        batch.extend_from_slice(&publish_request(&wide, i.to_string().as_bytes()));
    }
    publisher.conn.send(&batch);
    for _ in 1..2048 {
        publisher.conn.read_response(deadline());
    }
    // 64 topics against 200 each, 2 047 events: 26 million pairs to look at.
    let mine: Vec<(String, String)> = (0..64).map(|i| ("topic".into(), format!("r{i}"))).collect();
    let mine: Vec<(&str, &str)> = mine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut resumer = server.http();
    resumer.send(
        format!(
            "GET /events{} HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {first}\r\n\r\n",
            query(&mine)
        )
        .as_bytes(),
    );
    publisher.publish_ok("?topic=r0", b"live");
    publisher
        .conn
        .send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let text = publisher.conn.read_response(deadline()).text();
    assert_eq!(
        metric_value(&text, "sseloop_replaying_subscribers"),
        1,
        "the publish waited for the whole scan:\n{text}"
    );
    let head = resumer.read_head(deadline());
    let mut resumed = Subscriber::from_head(resumer, head);
    assert_eq!(resumed.next_event().data, "live");
    server.await_metric("sseloop_replaying_subscribers", |n| n == 0);
}

/// The kernel's send buffer of a stream, which it would grow to several
/// MiB for a subscriber that stalls, is fixed (`SO_SNDBUF`; Linux books
/// twice the value), by default and with `--send-buffer`.
#[test]
fn a_streams_kernel_send_buffer_is_fixed() {
    for (args, booked) in [
        (&[][..], 2 * (256 << 10)),
        (&["--send-buffer", "64KiB"][..], 2 * (64 << 10)),
    ] {
        let server = TestServer::start(args);
        let sub = server.subscribe_ready("");
        let client = sub.stream().local_addr().unwrap().port();
        let server_port = sub.stream().peer_addr().unwrap().port();
        assert_eq!(send_buffer_of(server_port, client), booked, "{args:?}");
    }
}

/// The send buffer (`tb` of `ss -m`) of the server's end of the
/// connection between `server_port` and the client's `client_port`: both
/// ports, since a test running beside this one may hold a socket whose
/// remote port is the same number.
fn send_buffer_of(server_port: u16, client_port: u16) -> u64 {
    let filter = format!("( sport = :{server_port} and dport = :{client_port} )");
    let output = Command::new("ss")
        .args(["-tnmH", "state", "established", &filter])
        .output()
        .expect("ss (Debian's iproute2) runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let skmem = text
        .split("skmem:(")
        .nth(1)
        .unwrap_or_else(|| panic!("no skmem in ss output {text:?}"));
    let field = skmem
        .split([',', ')'])
        .find_map(|f| f.strip_prefix("tb"))
        .unwrap_or_else(|| panic!("no tb in {skmem:?}"));
    field.parse().unwrap()
}

/// A subscriber names at most `--max-topics` topics (a resume compares
/// each kept event with each of them).
#[test]
fn a_subscriber_names_a_bounded_number_of_topics() {
    let server = TestServer::start(&["--max-topics", "3"]);
    server.subscribe_ready("?topic=a&topic=b&topic=c");
    let response = server.expect_error(
        b"GET /events?topic=a&topic=b&topic=c&topic=d HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
    assert_eq!(response.text(), "too many topics for one subscriber\n");
    let server = TestServer::start(&[]);
    let sixty_five: Vec<String> = (0..65).map(|i| format!("topic=t{i}")).collect();
    let request = format!(
        "GET /events?{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        sixty_five.join("&")
    );
    server.expect_error(request.as_bytes(), 400);
}

/// Out of descriptors, every accept fails until connections close; that
/// used to log a warning per attempt. One line for the burst, one when it
/// is over, and the connections that waited are served.
#[test]
fn running_out_of_descriptors_is_logged_once_per_burst() {
    let server = TestServer::start_with_limits(&["--max-connections", "1000"], &[], None, Some(64));
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..100 {
        held.push(server.connect());
    }
    server
        .await_log(&["accept:"])
        .expect("a warning that accepting fails");
    // Each close lets one waiting connection in, and the next accept fails.
    for conn in held.drain(..10) {
        drop(conn);
    }
    // An accepted connection (the first ones were) asks twice: the closes
    // came first, and the accepts they allow happen at the end of the
    // pass that answers the first request.
    let mut asker = HttpConn::new(held.remove(0));
    for _ in 0..2 {
        asker.send(HEALTH);
        assert_eq!(asker.read_response(deadline()).text(), "ok");
    }
    assert_eq!(
        server.log().matches("accept:").count(),
        1,
        "one warning for the burst:\n{}",
        server.log()
    );
    drop(asker);
    drop(held);
    server
        .await_log(&["accept works again after"])
        .expect("the end of the burst is logged");
    let (health, _) = server.request(HEALTH);
    assert_eq!(health.text(), "ok");
}

/// A resume from a long history of large events used to be written in
/// one go to a client whose kernel takes it all, while every other
/// connection waited: replay writes have a budget per pass of the loop
/// (1 MiB over all streams). A client with a receive buffer that holds the
/// whole 16 MiB replay and reads nothing resumes, and a `/metrics` request
/// comes in the same pass of the loop (both sent while the server is
/// stopped, so one poll reports them, in order): the replay is still
/// running when it is answered; without the budget it was over by then.
#[test]
fn a_replay_the_kernel_takes_whole_is_still_written_in_slices() {
    use std::os::fd::AsRawFd;
    let server = TestServer::start(&["--history", "1024"]);
    let body = "r".repeat(16 << 10);
    let mut publisher = server.publisher();
    let first = publisher.publish_ok("", body.as_bytes());
    let mut batch = Vec::new();
    for _ in 1..1024 {
        batch.extend_from_slice(&publish_request("", body.as_bytes()));
    }
    publisher.conn.send(&batch);
    for _ in 1..1024 {
        publisher.conn.read_response(deadline());
    }
    // 64 MiB of receive buffer, past rmem_max (so SO_RCVBUFFORCE, which
    // the tests' root may set): the kernel takes the whole replay unread.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let size: libc::c_int = 64 << 20;
    // SAFETY: setsockopt reads `size` for its length, on a socket we own.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        set,
        0,
        "SO_RCVBUFFORCE needs root: {}",
        std::io::Error::last_os_error()
    );
    socket.connect(&server.addr().into()).unwrap();
    let mut resumer = HttpConn::new(socket.into());
    // Both connections accepted (the asker is answered, and the resumer
    // connected first), then the requests sent while the server is stopped.
    let mut asker = server.http();
    asker.send(HEALTH);
    assert_eq!(asker.read_response(deadline()).text(), "ok");
    server.signal(libc::SIGSTOP);
    resumer.send(
        format!("GET /events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {first}\r\n\r\n")
            .as_bytes(),
    );
    asker.send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    server.signal(libc::SIGCONT);
    let text = asker.read_response(deadline()).text();
    assert_eq!(
        metric_value(&text, "sseloop_replaying_subscribers"),
        1,
        "the replay was written in one go:\n{text}"
    );
    server.await_metric("sseloop_replaying_subscribers", |n| n == 0);
    drop(resumer);
}
