//! sseloop behind a real nginx, run as a foreground process with its own
//! config, prefix, pid file, logs and temp paths in a temp dir.
//!
//! - The default deployment, a `location` with nothing but `proxy_pass`:
//!   nginx speaks HTTP/1.0 upstream (so the stream is close-delimited) and
//!   buffers responses, unless the upstream says `X-Accel-Buffering: no`.
//!   Each event must come through it within 100 ms of its publish (the
//!   direct delays are printed beside, for comparison). In the same test a
//!   control upstream sends the same stream without that header, and nginx
//!   holds it (no head, no `open`, no event) until the upstream closes:
//!   proof that the test can tell, and would catch a regression that drops
//!   the header. The same control with the header comes through at once.
//! - `proxy_http_version 1.1` with a chunked upstream passes events too.
//! - Heartbeats keep an idle stream alive past nginx's `proxy_read_timeout`;
//!   without them nginx ends it.
//! - Two cluster nodes (`--redis`) behind one `upstream`: Chromium's stream
//!   survives the death of the node serving it, resumed on the other one
//!   through nginx with nothing missed.
//!
//! A forwarder between nginx and sseloop shows what went over the upstream
//! leg: the request line's HTTP version and the response's framing.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::real::forwarder::Forwarder;
use crate::real::{
    MAX_DELAY, ProcGroup, TempDir, first_late, in_rounds, ms, require_program, summary, tail,
};
use crate::support::{
    BodyEnd, HttpConn, IO_TIMEOUT, Item, Next, Stop, Subscriber, TestServer, connect, deadline,
};

/// How long nginx may take to pass a head or an event before the test
/// calls it held; the control case waits this long for nothing.
const HELD: Duration = Duration::from_secs(1);

/// A running nginx; dropping it kills its process group (master and
/// workers), then removes its dir.
pub(crate) struct Nginx {
    group: ProcGroup,
    dir: TempDir,
    pub(crate) addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx on a free loopback port with `locations` inside its one
    /// `server` block.
    pub(crate) fn start(locations: &str) -> Nginx {
        Nginx::start_with("", locations)
    }

    /// `start`, with `http` (upstreams, log formats) in the `http` block.
    fn start_with(http: &str, locations: &str) -> Nginx {
        let program = require_program(&["nginx"], "nginx");
        // The port must be written into the config: take a free one, and
        // try again should another process grab it before nginx binds it.
        let mut failures = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let dir = TempDir::new("nginx");
            // Run as root, nginx's workers drop to an unprivileged user that
            // must still reach the temp paths inside.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let conf = config(dir.path(), port, http, locations);
            fs::write(dir.join("nginx.conf"), &conf).unwrap();
            let mut command = std::process::Command::new(&program);
            command
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-p")
                .arg(format!("{}/", dir.path().display()));
            let group = ProcGroup::spawn("nginx", command, &dir.join("nginx.out"));
            let mut nginx = Nginx {
                group,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
            };
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                Err(why) => failures.push_str(&format!("{why}\n")),
            }
        }
        panic!("nginx did not start:\n{failures}");
    }

    /// nginx writes its pid file after it has bound and is listening on its
    /// sockets; a child process offers nothing to block on, so poll.
    fn wait_ready(&mut self) -> Result<(), String> {
        let pid_file = self.dir.join("nginx.pid");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.group.exited() {
                return Err(format!(
                    "nginx exited ({status}): {}{}",
                    tail(&self.dir.join("error.log"), 2000),
                    self.group.log_tail(2000)
                ));
            }
            if fs::read_to_string(&pid_file).is_ok_and(|pid| pid.trim().parse::<u32>().is_ok()) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "nginx wrote no pid file in 10 s: {}",
                    tail(&self.dir.join("error.log"), 2000)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `GET path` through nginx; the connection, to read the answer.
    pub(crate) fn get(&self, path: &str) -> HttpConn {
        let mut conn = HttpConn::new(connect(self.addr));
        conn.send(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        );
        conn
    }

    /// Subscribes through nginx and asserts that the head and the opening
    /// comment came within `HELD`, as they do directly.
    fn subscribe(&self, path: &str) -> Subscriber {
        let start = Instant::now();
        let mut conn = self.get(path);
        let head = match conn.try_read_head(start + HELD) {
            Ok(head) => head,
            Err(stop) => panic!(
                "nginx passed no response head for {path} within {HELD:?} ({stop:?}): it buffers the stream; error.log:\n{}",
                self.error_log()
            ),
        };
        assert_eq!(head.status, 200, "through nginx: {head:?}");
        assert!(
            head.header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "through nginx: {head:?}"
        );
        let mut stream = Subscriber::from_head(conn, head);
        match stream.poll(start + HELD) {
            Next::Item(Item::Comment(text)) if text == "connected" => {}
            other => panic!("through nginx, the stream did not open within {HELD:?}: {other:?}"),
        }
        stream
    }

    fn error_log(&self) -> String {
        tail(&self.dir.join("error.log"), 4000)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("---- nginx error.log ----\n{}", self.error_log());
        }
    }
}

/// A config with every path inside `dir`: nothing of the machine's nginx
/// (its /etc config, /var/log, /var/lib temp dirs) is read or written.
fn config(dir: &std::path::Path, port: u16, http: &str, locations: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
{http}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"
    )
}

/// An upstream that answers like sseloop, with or without
/// `X-Accel-Buffering: no`, writing what the test tells it to.
struct ControlUpstream {
    addr: SocketAddr,
    head: &'static str,
    requests: Receiver<String>,
    commands: Sender<Option<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

/// sseloop's stream head and first bytes, less `X-Accel-Buffering: no`.
const HEAD_WITHOUT: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n: connected\n";
/// The same with the header.
const HEAD_WITH: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\n: connected\n";

impl ControlUpstream {
    fn start(head: &'static str) -> ControlUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind control upstream");
        let addr = listener.local_addr().unwrap();
        let (request_tx, requests) = mpsc::channel();
        let (commands, command_rx) = mpsc::channel::<Option<Vec<u8>>>();
        let thread = thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            let _ = request_tx.send(String::from_utf8_lossy(&head).into_owned());
            // Until told to close (None) or dropped.
            while let Ok(Some(bytes)) = command_rx.recv() {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
        });
        ControlUpstream {
            addr,
            head,
            requests,
            commands,
            thread: Some(thread),
        }
    }

    /// Awaits nginx's request (returned), then answers with the head and
    /// one event.
    fn answer(&self) -> String {
        let request = self
            .requests
            .recv_timeout(IO_TIMEOUT)
            .expect("nginx forwarded the request to the control upstream");
        self.send(self.head.as_bytes());
        self.send(b"id: c-1\ndata: held back?\n\n");
        request
    }

    fn send(&self, bytes: &[u8]) {
        self.commands
            .send(Some(bytes.to_vec()))
            .expect("control upstream runs");
    }

    fn close(&self) {
        let _ = self.commands.send(None);
    }
}

impl Drop for ControlUpstream {
    fn drop(&mut self) {
        self.close();
        // Unblocks an accept that never got its connection.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The request line of the last request the forwarder saw.
fn upstream_request_line(forwarder: &Forwarder) -> String {
    let conns = forwarder.wait_requests(1, IO_TIMEOUT);
    let conn = conns.last().expect("a connection");
    conn.request.lines().next().unwrap_or("").to_string()
}

/// Publishes events and reads each from both `direct` and `proxied`,
/// asserting the proxied one is the same event. Returns (direct, proxied)
/// delays in ms.
fn publish_and_compare(
    server: &TestServer,
    topic: &str,
    direct: &mut Subscriber,
    proxied: &mut Subscriber,
    count: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut publisher = server.publisher();
    let mut direct_delays = Vec::new();
    let mut proxied_delays = Vec::new();
    for n in 0..count {
        let (query, body) = if n % 3 == 1 {
            (
                format!("?topic={topic}&event=progress"),
                format!("{n}%\nsecond line — ünïcode 🚀"),
            )
        } else {
            (format!("?topic={topic}"), format!("event {n}"))
        };
        let start = Instant::now();
        let id = publisher.publish_ok(&query, body.as_bytes());
        let got_direct = direct.next_event_by(start + IO_TIMEOUT);
        direct_delays.push(ms(start.elapsed()));
        let got_proxied = proxied.next_event_by(start + IO_TIMEOUT);
        proxied_delays.push(ms(start.elapsed()));
        assert_eq!(got_direct.id.as_deref(), Some(id.as_str()));
        assert_eq!(
            got_proxied, got_direct,
            "the event through nginx differs from the direct one"
        );
    }
    (direct_delays, proxied_delays)
}

/// Publishes 20 events per round; each must come through nginx identical
/// to the direct one and within `MAX_DELAY` (in one of `real::ROUNDS`
/// rounds: nginx's buffering holds every event, every time, unlike one
/// stall of a busy machine).
fn compare_in_rounds(
    what: &str,
    server: &TestServer,
    topic: &str,
    direct: &mut Subscriber,
    proxied: &mut Subscriber,
) {
    in_rounds(&format!("nginx {what}"), || {
        let (direct_delays, proxied_delays) =
            publish_and_compare(server, topic, direct, proxied, 20);
        eprintln!(
            "nginx {what}: direct {}; through nginx {}",
            summary(&direct_delays),
            summary(&proxied_delays)
        );
        match first_late(&proxied_delays) {
            None => Ok(()),
            Some(n) => Err(format!(
                "event {n} took {:.1} ms through nginx (limit {MAX_DELAY:?}); through nginx {proxied_delays:.1?}, direct {direct_delays:.1?}",
                proxied_delays[n]
            )),
        }
    });
}

#[test]
fn default_proxy_pass_streams_each_event_within_100ms_and_a_control_without_the_header_is_held() {
    require_program(&["nginx"], "nginx");
    let server = TestServer::start(&[]);
    let upstream_leg = Forwarder::start(server.addr());
    let control = ControlUpstream::start(HEAD_WITHOUT);
    let positive = ControlUpstream::start(HEAD_WITH);
    // The default deployment: nothing but proxy_pass, for sseloop and for
    // the control upstreams alike.
    let nginx = Nginx::start(&format!(
        "        location / {{ proxy_pass http://{}; }}
        location /held/ {{ proxy_pass http://{}; }}
        location /passed/ {{ proxy_pass http://{}; }}",
        upstream_leg.addr(),
        control.addr,
        positive.addr
    ));

    // (a) sseloop through nginx's defaults.
    let mut direct = server.subscribe_ready("?topic=nx");
    let mut proxied = nginx.subscribe("/events?topic=nx");
    let line = upstream_request_line(&upstream_leg);
    assert!(
        line.starts_with("GET /events?topic=nx ") && line.ends_with("HTTP/1.0"),
        "nginx's default upstream request is HTTP/1.0: {line:?}"
    );
    let response = &upstream_leg.conns()[0].response;
    assert!(
        response.contains("X-Accel-Buffering: no\r\n")
            && !response.to_ascii_lowercase().contains("transfer-encoding"),
        "sseloop answers HTTP/1.0 close-delimited, with X-Accel-Buffering: no: {response:?}"
    );
    compare_in_rounds(
        "default proxy_pass",
        &server,
        "nx",
        &mut direct,
        &mut proxied,
    );

    // (b) The control: the same stream without X-Accel-Buffering: no, through
    // the same defaults, is held: not even the head arrives.
    let mut held = nginx.get("/held/events?topic=nx");
    let request = control.answer();
    assert!(
        request.starts_with("GET /held/events?topic=nx HTTP/1.0\r\n"),
        "control request: {request:?}"
    );
    match held.try_read_head(Instant::now() + HELD) {
        Err(Stop::Timeout) => {}
        other => panic!(
            "control: nginx passed a stream without X-Accel-Buffering: no within {HELD:?} ({other:?}); the test cannot tell buffering from streaming"
        ),
    }
    // It was held, not lost: the upstream's close releases all of it.
    control.close();
    let head = held.read_head(deadline());
    assert_eq!(head.status, 200, "control head: {head:?}");
    let mut released = Subscriber::from_head(held, head);
    released.expect_connected();
    let event = released.next_event();
    assert_eq!(event.data, "held back?");
    released.expect_clean_end();

    // And the header is the whole difference: the same upstream answer with
    // X-Accel-Buffering: no comes through at once.
    let start = Instant::now();
    let mut passed = nginx.get("/passed/events?topic=nx");
    positive.answer();
    let head = passed
        .try_read_head(start + HELD)
        .unwrap_or_else(|stop| panic!("positive control: no head within {HELD:?}: {stop:?}"));
    let mut passed = Subscriber::from_head(passed, head);
    match passed.poll(start + HELD) {
        Next::Item(Item::Comment(text)) if text == "connected" => {}
        other => panic!("positive control did not open within {HELD:?}: {other:?}"),
    }
    match passed.poll(start + HELD) {
        Next::Item(Item::Event(event)) if event.data == "held back?" => {}
        other => panic!("positive control: no event within {HELD:?}: {other:?}"),
    }
}

#[test]
fn proxy_http_version_1_1_passes_a_chunked_stream() {
    require_program(&["nginx"], "nginx");
    let server = TestServer::start(&[]);
    let upstream_leg = Forwarder::start(server.addr());
    let nginx = Nginx::start(&format!(
        "        location / {{
            proxy_pass http://{};
            proxy_http_version 1.1;
        }}",
        upstream_leg.addr()
    ));
    let mut direct = server.subscribe_ready("?topic=v11");
    let mut proxied = nginx.subscribe("/events?topic=v11");
    let line = upstream_request_line(&upstream_leg);
    assert!(
        line.ends_with("HTTP/1.1"),
        "upstream request is HTTP/1.1: {line:?}"
    );
    let response = &upstream_leg.conns()[0].response;
    assert!(
        response.contains("Transfer-Encoding: chunked\r\n"),
        "sseloop answers HTTP/1.1 chunked: {response:?}"
    );
    compare_in_rounds(
        "proxy_http_version 1.1",
        &server,
        "v11",
        &mut direct,
        &mut proxied,
    );
}

/// nginx's idle timeout in this test, and sseloop's heartbeat under it.
const READ_TIMEOUT_MS: u64 = 1000;
const HEARTBEAT_MS: u64 = 300;

#[test]
fn heartbeats_keep_an_idle_stream_past_proxy_read_timeout() {
    require_program(&["nginx"], "nginx");
    let heartbeat = format!("{HEARTBEAT_MS}ms");
    let beating = TestServer::start(&["--heartbeat", &heartbeat]);
    let silent = TestServer::start(&["--heartbeat", "0"]);
    let nginx = Nginx::start(&format!(
        "        proxy_read_timeout {READ_TIMEOUT_MS}ms;
        location /beating/ {{ proxy_pass http://{}/; }}
        location /silent/ {{ proxy_pass http://{}/; }}",
        beating.addr(),
        silent.addr()
    ));
    let mut kept = nginx.subscribe("/beating/events?topic=idle");
    let mut dropped = nginx.subscribe("/silent/events?topic=idle");
    let opened = Instant::now();

    // Idle for three of nginx's timeouts: heartbeats pass through about at
    // their interval (a gap of twice that is one stopped or drifting, not a
    // busy machine's scheduling) and the stream stays open.
    let idle_until = opened + Duration::from_millis(3 * READ_TIMEOUT_MS);
    let mut last = opened;
    let mut beats = 0;
    loop {
        match kept.poll(idle_until) {
            Next::Item(Item::Comment(text)) if text == "heartbeat" => {
                let gap = last.elapsed();
                assert!(
                    gap < 2 * Duration::from_millis(HEARTBEAT_MS),
                    "{gap:?} between heartbeats through nginx (interval {HEARTBEAT_MS} ms)"
                );
                last = Instant::now();
                beats += 1;
            }
            Next::End(BodyEnd::Timeout) => break,
            other => panic!("idle stream with heartbeats, through nginx: {other:?}"),
        }
    }
    assert!(beats >= 8, "only {beats} heartbeats in 3 s");
    // It still delivers (how fast is the delivery tests' business).
    let mut publisher = beating.publisher();
    let id = publisher.publish_ok("?topic=idle", b"still here");
    let event = kept.next_event();
    assert_eq!(event.id.as_deref(), Some(id.as_str()));

    // The control: with no heartbeat, nginx ended the idle stream after its
    // timeout (the whole idle spell above is far past it).
    match dropped.poll(deadline()) {
        Next::End(BodyEnd::Clean | BodyEnd::Truncated | BodyEnd::Failed(_)) => {}
        other => panic!(
            "without heartbeats nginx should have timed the idle stream out after {READ_TIMEOUT_MS} ms: {other:?}"
        ),
    }
    assert!(
        nginx.error_log().contains("upstream timed out"),
        "nginx says why it ended the stream: {}",
        nginx.error_log()
    );
}

/// Chromium's first `open`, on a busy 2-core machine.
const BROWSER_OPEN_TIMEOUT: Duration = Duration::from_secs(40);

/// Two cluster nodes on one Redis behind nginx (an `upstream` with both),
/// Chromium's EventSource through nginx. The node serving it is killed
/// (SIGKILL) in the middle of a burst published on the other node; the
/// browser's own reconnect goes through nginx to the node that lives,
/// with the `Last-Event-ID` of the last event it saw, and gets exactly
/// what it missed: every event once, in order, then live events from the
/// survivor. nginx's access log shows both stream requests: the second
/// with that id, served by the survivor.
#[test]
fn cluster_behind_nginx_chromium_resumes_on_the_other_node_when_its_node_dies() {
    use crate::real::browser::Browser;
    use crate::real::collector::{Collector, of_kind};
    use crate::real::redis::{Persistence, Redis};
    use crate::real::scenario::{TYPES, assert_received, publish, wait_messages};

    require_program(&["nginx"], "nginx");
    let program = Browser::Chromium.program();
    let _lock = crate::real::browser_lock();
    let collector = Collector::start();
    let origin = collector.origin();
    let redis = Redis::start(Persistence::None);
    let url = redis.url();
    let args = [
        "--redis",
        url.as_str(),
        "--allow-origin",
        origin.as_str(),
        "--retry",
        "200ms",
    ];
    let mut nodes = [
        Some(TestServer::start(&args)),
        Some(TestServer::start(&args)),
    ];
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(TestServer::addr).collect();
    // Relative paths are under nginx's prefix, the test's dir.
    let nginx = Nginx::start_with(
        &format!(
            "    log_format cluster '$request_uri lei=$http_last_event_id up=$upstream_addr';
    upstream cluster {{ server {}; server {}; }}",
            addrs[0], addrs[1]
        ),
        // nginx would send the upstream's name as the Host, which a node on
        // loopback does not answer to (DNS-rebinding defence): the
        // browser's own Host goes on, port included, as in the README.
        "        location / {
            proxy_pass http://cluster;
            proxy_set_header Host $http_host;
            access_log cluster.log cluster;
        }",
    );
    let page = collector.page_url(
        "page.html",
        &[
            ("es", &format!("http://{}/events?topic=c", nginx.addr)),
            ("types", TYPES),
        ],
    );
    let mut browser = Browser::Chromium.launch(&program, &page);
    collector.wait_kind_while_running(browser.group(), "open", 1, BROWSER_OPEN_TIMEOUT);

    // Live through nginx, one at a time.
    let mut sent = Vec::new();
    let mut publisher = nodes[0].as_ref().unwrap().publisher();
    for n in 0..8 {
        sent.push(publish(&mut publisher, "c", n));
        wait_messages(&collector, sent.len());
    }
    let serving = nodes
        .iter()
        .flatten()
        .position(|node| node.metric("sseloop_subscribers") == 1)
        .expect("one node serves the browser");
    let survivor = 1 - serving;
    // A burst on the survivor; the serving node dies in its middle.
    let mut publisher = nodes[survivor].as_ref().unwrap().publisher();
    for n in 8..14 {
        sent.push(publish(&mut publisher, "c", n));
    }
    let mut dead = nodes[serving].take().unwrap();
    dead.signal(libc::SIGKILL);
    assert!(dead.wait_exit(IO_TIMEOUT).is_some(), "the node did not die");
    for n in 14..20 {
        sent.push(publish(&mut publisher, "c", n));
    }
    let burst_end = sent.len();
    let reopen = collector
        .wait_kind("open", 2, Duration::from_secs(10))
        .pop()
        .expect("two opens");
    let received = wait_messages(&collector, burst_end);
    assert_received("chromium through nginx", &received, &sent);
    // Then live again, from the survivor.
    let mut received = Vec::new();
    for n in 20..26 {
        sent.push(publish(&mut publisher, "c", n));
        received = wait_messages(&collector, sent.len());
    }
    assert_received("chromium through nginx", &received, &sent);
    let reports = collector.reports();
    assert_eq!(of_kind(&reports, "open").len(), 2, "one reconnect");
    let errors = of_kind(&reports, "error");
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.get("state") == Some("0")),
        "the drop leaves the EventSource CONNECTING (0), never CLOSED: {errors:?}"
    );
    let last_seen = received
        .iter()
        .filter(|r| r.num("seq") < reopen.num("seq"))
        .filter_map(|r| r.get("id"))
        .next_back()
        .expect("events before the drop")
        .to_string();

    // nginx logs a request when it ends: end the browser's second stream.
    drop(browser);
    let log = nginx.dir.join("cluster.log");
    let end = Instant::now() + IO_TIMEOUT;
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("/events"))
            .map(str::to_string)
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < end, "nginx logged {lines:?}");
        // A log file offers nothing to block on.
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        lines.len(),
        2,
        "two stream requests through nginx: {lines:?}"
    );
    assert!(
        lines[0].ends_with(&format!("lei=- up={}", addrs[serving])),
        "the first stream, without an id, on the node that died: {lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("/events?topic=c lei={last_seen} up="))
            && lines[1].ends_with(&addrs[survivor].to_string()),
        "the reconnect, with the last id seen ({last_seen}), served by the survivor: {lines:?}"
    );
}

/// Two cluster nodes behind nginx on a Redis with failover (a primary,
/// two replicas, three Sentinels; the nodes on `redis+sentinel://` with
/// `--redis-replicas 1`), Chromium's EventSource through nginx. The Redis
/// primary is killed (SIGKILL) in the middle of a burst; the publisher
/// tries each event again with its `Idempotency-Key` until it is
/// acknowledged. Every acknowledged event reaches the page once, in order,
/// intact, and the page's stream stays open through the failover (no
/// `error`, one `open`). Written ahead of Sentinel support (issue 21).
#[test]
fn cluster_behind_nginx_chromium_gets_every_acknowledged_event_through_a_redis_failover() {
    use crate::real::browser::Browser;
    use crate::real::collector::{Collector, of_kind};
    use crate::real::redis::Persistence;
    use crate::real::scenario::{
        TYPES, assert_no_errors, assert_received_through_retries, publish_until_stored,
    };
    use crate::real::sentinel::{FAILOVER_TIMEOUT, RedisHa};

    require_program(&["nginx"], "nginx");
    let program = Browser::Chromium.program();
    let _lock = crate::real::browser_lock();
    let collector = Collector::start();
    let origin = collector.origin();
    let mut ha = RedisHa::start(Persistence::None, 2);
    let url = ha.url();
    let args = [
        "--redis",
        url.as_str(),
        "--redis-replicas",
        "1",
        "--allow-origin",
        origin.as_str(),
        "--retry",
        "200ms",
    ];
    let nodes = [TestServer::start(&args), TestServer::start(&args)];
    let addrs: Vec<SocketAddr> = nodes.iter().map(TestServer::addr).collect();
    let nginx = Nginx::start_with(
        &format!(
            "    upstream cluster {{ server {}; server {}; }}",
            addrs[0], addrs[1]
        ),
        "        location / {
            proxy_pass http://cluster;
            proxy_set_header Host $http_host;
        }",
    );
    let page = collector.page_url(
        "page.html",
        &[
            ("es", &format!("http://{}/events?topic=c", nginx.addr)),
            ("types", TYPES),
        ],
    );
    let mut browser = Browser::Chromium.launch(&program, &page);
    collector.wait_kind_while_running(browser.group(), "open", 1, BROWSER_OPEN_TIMEOUT);

    let within = FAILOVER_TIMEOUT;
    let mut sent = Vec::new();
    for n in 0..8 {
        sent.push(publish_until_stored(addrs[n % 2], "c", n, within));
    }
    assert_received_through_retries("chromium, before", &collector, &sent);
    // A burst from both nodes; the primary dies in its middle.
    for n in 8..14 {
        sent.push(publish_until_stored(addrs[n % 2], "c", n, within));
    }
    let watch = ha.watch();
    let killed_at = Instant::now();
    ha.kill_primary();
    for n in 14..30 {
        sent.push(publish_until_stored(addrs[n % 2], "c", n, within));
    }
    let switch = watch.wait(FAILOVER_TIMEOUT);
    eprintln!(
        "the Sentinels named the new primary {:?} after the kill; the burst was acknowledged within {:?}",
        switch.first - killed_at,
        killed_at.elapsed()
    );
    let extra = assert_received_through_retries("chromium through a failover", &collector, &sent);
    eprintln!("first tries seen besides the acknowledged events: {extra:?}");
    let reports = collector.reports();
    assert_eq!(of_kind(&reports, "open").len(), 1, "the stream stayed open");
    assert_no_errors("chromium through a failover", &reports);
    drop(browser);
}
