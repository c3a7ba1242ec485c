//! Shared test harness: a `TestServer` running the real `sseloop` binary on a
//! port-0 listener, and a small raw-TCP HTTP/SSE client.
//!
//! Every read goes through a deadline so that no test can hang: a server that
//! never answers makes the test fail with what was received so far.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single wait may take; generous so a loaded machine does not
/// cause false failures, bounded so a broken server cannot hang the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server gets to print its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

const LISTEN_MARKER: &str = "listening on http://";

/// The `sseloop` binary running on 127.0.0.1 with a port chosen by the kernel.
pub struct TestServer {
    child: Child,
    addr: SocketAddr,
    log: Arc<Log>,
}

/// The server's stderr so far, with a condition variable to await lines.
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    grown: Condvar,
}

impl TestServer {
    /// Starts `sseloop --listen 127.0.0.1:0 ARGS…` and waits for its
    /// listening line.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start_with(args, &[], None)
    }

    /// `start` with standard input a pipe, for `--stdin`: write lines to
    /// the returned end, drop it for end of input.
    pub fn start_piped(args: &[&str]) -> (TestServer, ChildStdin) {
        let mut command = TestServer::command(args, &[]);
        command.stdin(Stdio::piped());
        let mut child = command.spawn().expect("spawn sseloop");
        let stdin = child.stdin.take().expect("piped stdin");
        (TestServer::await_listening(child, args), stdin)
    }

    /// `sseloop --listen 127.0.0.1:0 ARGS…` with `env` set, standard input
    /// empty and standard error piped.
    fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sseloop"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Waits for the listening line; panics with the server's stderr when
    /// it does not come.
    fn await_listening(child: Child, args: &[&str]) -> TestServer {
        TestServer::launch(child)
            .unwrap_or_else(|log| panic!("sseloop {args:?} did not print its listening line {log}"))
    }

    /// Collects the child's standard error and waits for its listening
    /// line: the server, or its exit status and stderr when it exits (or
    /// stays silent) without printing it.
    fn launch(mut child: Child) -> Result<TestServer, String> {
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log::default());
        let (tx, rx) = mpsc::channel();
        let thread_log = Arc::clone(&log);
        // Keeps draining stderr for the server's whole life so that a chatty
        // server (debug logging) never blocks on a full pipe.
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            let mut tx = Some(tx);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line);
                thread_log
                    .text
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&text);
                thread_log.grown.notify_all();
                if let Some(pos) = text.find(LISTEN_MARKER) {
                    let rest = &text[pos + LISTEN_MARKER.len()..];
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    if let (Some(sender), Ok(addr)) = (tx.as_ref(), addr.parse::<SocketAddr>()) {
                        let _ = sender.send(addr);
                        tx = None;
                    }
                }
            }
        });
        // A server that cannot bind exits, which closes stderr and with it
        // the channel: no waiting out the timeout.
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => Ok(TestServer { child, addr, log }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let text = log.text.lock().unwrap_or_else(PoisonError::into_inner);
                Err(format!("({status:?}); stderr:\n{text}"))
            }
        }
    }

    /// Process id, for tests that inspect the server's sockets.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `IO_TIMEOUT` for a line of the server's stderr that
    /// contains all `parts`, and returns it.
    pub fn await_log(&self, parts: &[&str]) -> Option<String> {
        let end = deadline();
        let mut text = self.log.text.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(line) = text
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return Some(line.to_string());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            text = self
                .log
                .grown
                .wait_timeout(text, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A fresh connection with read and write timeouts set.
    pub fn connect(&self) -> TcpStream {
        // A server on a wildcard address is reached on loopback.
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let stream = TcpStream::connect(addr).expect("connect to sseloop");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        // Our own small writes must not be held back either, or tiny-write
        // tests would measure Nagle instead of the server.
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// A raw HTTP connection to the server.
    pub fn http(&self) -> HttpConn {
        HttpConn::new(self.connect())
    }

    /// Subscribes over HTTP/1.1 with the given query (`""`, or `"?topic=a"`).
    pub fn subscribe(&self, query: &str) -> Subscriber {
        let request = format!("GET /events{query} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.subscribe_raw(request.as_bytes())
    }

    /// `subscribe`, then up to the `: connected` comment: the stream is
    /// registered, so what is published next reaches it.
    pub fn subscribe_ready(&self, query: &str) -> Subscriber {
        let mut sub = self.subscribe(query);
        sub.expect_connected();
        sub
    }

    /// Sends a raw subscribe request and reads the response head, asserting
    /// a 200 text/event-stream answer.
    pub fn subscribe_raw(&self, request: &[u8]) -> Subscriber {
        let mut conn = self.http();
        conn.send(request);
        let head = conn.read_head(deadline());
        assert_eq!(
            head.status,
            200,
            "subscribe answered {head:?}; server log:\n{}",
            self.log()
        );
        Subscriber::from_head(conn, head)
    }

    /// A keep-alive publishing connection.
    pub fn publisher(&self) -> Publisher {
        Publisher { conn: self.http() }
    }

    /// Sends one raw request on a new connection and reads one response.
    pub fn request(&self, raw: &[u8]) -> (Response, HttpConn) {
        let mut conn = self.http();
        conn.send(raw);
        let response = conn.read_response(deadline());
        (response, conn)
    }

    /// `request` for an answer that must be an error: checks the status, the
    /// error headers, a non-empty text body, and that the server then closes.
    pub fn expect_error(&self, raw: &[u8], status: u16) -> Response {
        let (response, mut conn) = self.request(raw);
        assert_error(&response, status);
        conn.expect_closed();
        response
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- sseloop stderr ----\n{}", self.log());
        }
    }
}

/// A deadline `IO_TIMEOUT` from now.
pub fn deadline() -> Instant {
    Instant::now() + IO_TIMEOUT
}

/// Asserts the common shape of every error answer.
pub fn assert_error(response: &Response, status: u16) {
    assert_eq!(
        response.head.status,
        status,
        "expected {status}, got {:?} body {:?}",
        response.head,
        response.text()
    );
    let content_type = response.head.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain"),
        "error Content-Type {content_type:?}"
    );
    let length = response.head.header("content-length");
    assert_eq!(
        length,
        Some(response.body.len().to_string().as_str()),
        "error answers carry Content-Length"
    );
    assert!(
        response
            .head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close")),
        "error answers say Connection: close: {:?}",
        response.head
    );
    assert!(
        !response.text().trim().is_empty(),
        "error answers explain themselves"
    );
}

/// Runs the binary with the given arguments, expecting it to exit on its
/// own; kills it after `IO_TIMEOUT` so a server that starts anyway fails the
/// test instead of hanging it.
pub fn run_cli(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sseloop");
    let end = deadline();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "sseloop {args:?} did not exit; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Polling a child process has no blocking-with-timeout form in std.
        thread::sleep(Duration::from_millis(10));
    }
}

/// The bad-value contract: `sseloop --listen 127.0.0.1:0 ARGS…` exits with
/// status 2 and one line naming each of `names`. (The leading listen keeps
/// a wrongly started server off fixed ports; a `--listen` in `args` wins.)
pub fn assert_cli_rejected(args: &[&str], names: &[&str]) {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let output = run_cli(&all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} exited with {:?}; stderr: {stderr}",
        output.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
    for name in names {
        assert!(
            lines[0].contains(name),
            "{args:?}: {name} not in {stderr:?}"
        );
    }
}

/// Fails unless `got` equals `expected`, saying where they first part
/// (with two items of context on each side) and what `context` names.
pub fn assert_same_sequence<T: PartialEq + std::fmt::Debug>(
    got: &[T],
    expected: &[T],
    context: impl std::fmt::Display,
) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(x, y)| x != y)
        .unwrap_or(got.len().min(expected.len()));
    let around = |s: &[T]| {
        format!(
            "{:?}",
            &s[at.saturating_sub(2).min(s.len())..(at + 3).min(s.len())]
        )
    };
    panic!(
        "{context}: got {} items, expected {}; first difference at {at}: got {}, expected {}",
        got.len(),
        expected.len(),
        around(got),
        around(expected)
    );
}

/// `?k=v&…` with values percent-encoded, or `""` for no pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

pub fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A complete `POST /publish` request with a Content-Length body.
pub fn publish_request(query: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /publish{query} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// The sequence number of an id `<run>-<seq>`.
pub fn id_seq(id: &str) -> u64 {
    let (_, seq) = id
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("id {id:?} is not <run>-<seq>"));
    seq.parse()
        .unwrap_or_else(|_| panic!("id {id:?} has no numeric sequence"))
}

/// A body of `size` bytes distinct for each `n` (its number, then a
/// letter that changes with `n`), so that an event mixed up with another,
/// cut short or out of order is caught.
pub fn padded(n: usize, size: usize) -> String {
    let fill = char::from(b'a' + (n % 26) as u8);
    let mut body = format!("{n:05}:");
    assert!(
        body.len() <= size,
        "{size} bytes cannot hold the number {n}"
    );
    body.extend(std::iter::repeat_n(fill, size - body.len()));
    body
}

/// What the server logs (at warn) when it cuts off a slow subscriber.
pub const CUT_OFF_LOG: &str = "slow subscriber cut off";

/// Publishes `padded` events of `size` bytes to `query`'s topic, while some
/// subscriber reads nothing, until the server logs that it cut one off;
/// fails if `max` events do not do it. Returns the ids published.
pub fn publish_until_cut_off(
    server: &TestServer,
    query: &str,
    size: usize,
    max: usize,
) -> Vec<String> {
    let mut publisher = server.publisher();
    let mut ids = Vec::new();
    while ids.len() < max && !server.log().contains(CUT_OFF_LOG) {
        let n = ids.len();
        ids.push(publisher.publish_ok(query, padded(n, size).as_bytes()));
    }
    // The log line may still be in the pipe when `max` is reached.
    assert!(
        server.await_log(&[CUT_OFF_LOG]).is_some(),
        "not cut off after {} events of {size} bytes",
        ids.len()
    );
    ids
}

/// The run part of an id `<run>-<seq>`.
pub fn id_run(id: &str) -> &str {
    id.rsplit_once('-')
        .unwrap_or_else(|| panic!("id {id:?} is not <run>-<seq>"))
        .0
}

// ---------------------------------------------------------------------------
// HTTP

#[derive(Debug, Clone)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a read stopped short of what was asked.
#[derive(Debug)]
pub enum Stop {
    /// The deadline passed; state is kept, so reading can resume.
    Timeout,
    /// The peer closed (read returned 0).
    Eof,
    /// The connection failed, e.g. reset by the peer.
    Failed(io::Error),
}

/// A connection with a buffer of received but not yet consumed bytes.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn new(stream: TcpStream) -> HttpConn {
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to sseloop");
    }

    /// Writes `bytes` one small piece at a time, each its own syscall.
    pub fn send_in_pieces(&mut self, bytes: &[u8], piece: usize) {
        for part in bytes.chunks(piece) {
            self.stream.write_all(part).expect("write to sseloop");
        }
    }

    /// Reads more bytes into the buffer; returns how many.
    fn fill(&mut self, deadline: Instant) -> Result<usize, Stop> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Stop::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Stop::Timeout);
                }
                Err(e) => return Err(Stop::Failed(e)),
            }
        }
    }

    /// Takes one CRLF-terminated line (without the CRLF), reading as needed.
    fn take_line(&mut self, deadline: Instant) -> Result<String, Stop> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    fn take_exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, Stop> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads a response head; panics on timeout or a malformed head.
    pub fn read_head(&mut self, deadline: Instant) -> Head {
        match self.try_read_head(deadline) {
            Ok(head) => head,
            Err(stop) => panic!(
                "no complete response head ({stop:?}); received {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    pub fn try_read_head(&mut self, deadline: Instant) -> Result<Head, Stop> {
        let status_line = self.take_line(deadline)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or("").to_string();
        assert!(
            version.starts_with("HTTP/1."),
            "bad status line {status_line:?}"
        );
        let mut headers = Vec::new();
        loop {
            let line = self.take_line(deadline)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.to_string(), value.trim().to_string()));
        }
        Ok(Head {
            version,
            status,
            reason,
            headers,
        })
    }

    /// Reads one whole response: head, then a body framed by Content-Length,
    /// chunked encoding or close.
    pub fn read_response(&mut self, deadline: Instant) -> Response {
        let head = self.read_head(deadline);
        let body = if (100..200).contains(&head.status) || head.status == 204 {
            Vec::new()
        } else if head
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Body::new_borrowed(Framing::Chunked);
            let mut out = Vec::new();
            loop {
                match body.read_some(self, deadline) {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(BodyEnd::Clean) => break,
                    Err(end) => panic!("chunked response body cut short: {end:?}"),
                }
            }
            out
        } else if let Some(length) = head.header("content-length") {
            let length: usize = length.parse().expect("numeric Content-Length");
            self.take_exact(length, deadline)
                .unwrap_or_else(|stop| panic!("body shorter than Content-Length: {stop:?}"))
        } else {
            loop {
                match self.fill(deadline) {
                    Ok(_) => {}
                    Err(Stop::Eof) => break,
                    Err(stop) => panic!("close-delimited body: {stop:?}"),
                }
            }
            std::mem::take(&mut self.buf)
        };
        Response { head, body }
    }

    /// Takes all received bytes, reading until they contain `expected`.
    pub fn take_raw_until(&mut self, expected: &[u8]) -> Vec<u8> {
        self.take_raw_when(|buf| buf.windows(expected.len()).any(|w| w == expected))
    }

    /// Takes all received bytes, reading until `done` says they suffice.
    pub fn take_raw_when(&mut self, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let end = deadline();
        while !done(&self.buf) {
            if let Err(stop) = self.fill(end) {
                panic!(
                    "waiting for more bytes: {stop:?}; received {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Asserts the server closes the connection (EOF or reset) without
    /// sending anything more.
    pub fn expect_closed(&mut self) {
        let end = deadline();
        loop {
            assert!(
                self.buf.is_empty(),
                "unexpected bytes after the response: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            match self.fill(end) {
                Ok(_) => {}
                Err(Stop::Eof) | Err(Stop::Failed(_)) => return,
                Err(Stop::Timeout) => panic!("server did not close the connection"),
            }
        }
    }

    /// Asserts nothing arrives within `wait` (and the connection stays open).
    pub fn expect_silence(&mut self, wait: Duration) {
        match self.fill(Instant::now() + wait) {
            Err(Stop::Timeout) => {}
            other => panic!(
                "expected silence, got {other:?}: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Response bodies of streams

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Close,
}

/// How a stream's body ended, or why reading stopped.
#[derive(Debug)]
pub enum BodyEnd {
    /// Chunked: the terminating chunk arrived. Close-delimited: EOF.
    Clean,
    /// Chunked body that ended (EOF) without its terminating chunk.
    Truncated,
    Timeout,
    Failed(#[allow(dead_code, reason = "read through Debug in failure messages")] io::Error),
}

enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
    Done,
}

struct Body {
    conn: Option<HttpConn>,
    framing: Framing,
    state: ChunkState,
}

impl Body {
    fn new(conn: HttpConn, framing: Framing) -> Body {
        Body {
            conn: Some(conn),
            framing,
            state: ChunkState::Size,
        }
    }

    /// A decoder over a connection owned by the caller.
    fn new_borrowed(framing: Framing) -> Body {
        Body {
            conn: None,
            framing,
            state: ChunkState::Size,
        }
    }

    fn next(&mut self, deadline: Instant) -> Result<Vec<u8>, BodyEnd> {
        let mut conn = self.conn.take().expect("body owns its connection");
        let result = self.read_some(&mut conn, deadline);
        self.conn = Some(conn);
        result
    }

    /// Returns the next non-empty piece of decoded body.
    fn read_some(&mut self, conn: &mut HttpConn, deadline: Instant) -> Result<Vec<u8>, BodyEnd> {
        let stop = |stop: Stop, clean_on_eof: bool| match stop {
            Stop::Timeout => BodyEnd::Timeout,
            Stop::Eof if clean_on_eof => BodyEnd::Clean,
            Stop::Eof => BodyEnd::Truncated,
            Stop::Failed(e) => BodyEnd::Failed(e),
        };
        if self.framing == Framing::Close {
            if !conn.buf.is_empty() {
                return Ok(std::mem::take(&mut conn.buf));
            }
            return match conn.fill(deadline) {
                Ok(_) => Ok(std::mem::take(&mut conn.buf)),
                Err(s) => Err(stop(s, true)),
            };
        }
        loop {
            match self.state {
                ChunkState::Size => {
                    let line = conn.take_line(deadline).map_err(|s| stop(s, false))?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if conn.buf.is_empty() {
                        conn.fill(deadline).map_err(|s| stop(s, false))?;
                    }
                    let n = left.min(conn.buf.len());
                    let bytes: Vec<u8> = conn.buf.drain(..n).collect();
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                    return Ok(bytes);
                }
                ChunkState::DataEnd => {
                    let crlf = conn.take_exact(2, deadline).map_err(|s| stop(s, false))?;
                    assert_eq!(crlf, b"\r\n", "chunk data not followed by CRLF");
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let line = conn.take_line(deadline).map_err(|s| stop(s, false))?;
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Err(BodyEnd::Clean),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// SSE

/// One thing read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A comment line, without the colon and one leading space.
    Comment(String),
    /// The value of a `retry:` field.
    Retry(String),
}

/// An event as a browser's EventSource would dispatch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    /// The event's field lines exactly as they were on the wire, through
    /// the blank line that ends it.
    pub raw: String,
}

#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<Vec<String>>,
    raw: Vec<u8>,
}

impl SseParser {
    /// Parses complete lines from the buffer until one yields an item.
    fn next_item(&mut self) -> Option<Item> {
        loop {
            let end = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
            // A CR at the very end may be the first half of a CRLF.
            let len = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    None => return None,
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line_bytes: Vec<u8> = self.buf.drain(..end + len).collect();
            let line = String::from_utf8(line_bytes[..end].to_vec())
                .unwrap_or_else(|_| panic!("stream line is not UTF-8: {line_bytes:?}"));
            if let Some(comment) = line.strip_prefix(':') {
                return Some(Item::Comment(
                    comment.strip_prefix(' ').unwrap_or(comment).to_string(),
                ));
            }
            self.raw.extend_from_slice(&line_bytes);
            if line.is_empty() {
                let raw = String::from_utf8(std::mem::take(&mut self.raw)).unwrap();
                let id = self.id.take();
                let event = self.event.take();
                if let Some(lines) = self.data.take() {
                    return Some(Item::Event(Event {
                        id,
                        event,
                        data: lines.join("\n"),
                        raw,
                    }));
                }
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.id = Some(value.to_string()),
                "event" => self.event = Some(value.to_string()),
                "data" => self
                    .data
                    .get_or_insert_with(Vec::new)
                    .push(value.to_string()),
                "retry" => {
                    // retry is not part of an event; keep it out of `raw`.
                    self.raw.truncate(self.raw.len() - line_bytes.len());
                    return Some(Item::Retry(value.to_string()));
                }
                _ => {}
            }
        }
    }
}

/// What `Subscriber::poll` produced.
#[derive(Debug)]
pub enum Next {
    Item(Item),
    End(BodyEnd),
}

/// An open event stream.
pub struct Subscriber {
    pub head: Head,
    body: Body,
    sse: SseParser,
    prefix: Vec<u8>,
}

/// How many leading body bytes a subscriber keeps for exact-wire checks.
const PREFIX_KEPT: usize = 64 * 1024;

impl Subscriber {
    /// The first decoded body bytes (up to 64 KiB) received so far.
    pub fn body_prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn stream(&self) -> &TcpStream {
        self.body.conn.as_ref().unwrap().stream()
    }

    /// Whether bytes of an unfinished line or event are pending, e.g. after
    /// a close-delimited stream ended in the middle of an event.
    pub fn has_partial(&self) -> bool {
        !self.sse.buf.is_empty() || !self.sse.raw.is_empty()
    }

    /// Asserts that, after the body ended, the server closes the connection
    /// without sending anything more.
    pub fn expect_closed(&mut self) {
        self.body.conn.as_mut().unwrap().expect_closed();
    }

    /// The next item, or how the stream ended or why reading stopped
    /// (`BodyEnd::Timeout` leaves the stream usable).
    pub fn poll(&mut self, deadline: Instant) -> Next {
        loop {
            if let Some(item) = self.sse.next_item() {
                return Next::Item(item);
            }
            match self.body.next(deadline) {
                Ok(bytes) => {
                    let keep = PREFIX_KEPT
                        .saturating_sub(self.prefix.len())
                        .min(bytes.len());
                    self.prefix.extend_from_slice(&bytes[..keep]);
                    self.sse.buf.extend_from_slice(&bytes);
                }
                Err(end) => return Next::End(end),
            }
        }
    }

    /// The next item; panics if none arrives by the deadline.
    fn next_item_by(&mut self, deadline: Instant) -> Item {
        match self.poll(deadline) {
            Next::Item(item) => item,
            Next::End(end) => panic!(
                "stream gave no item ({end:?}); pending bytes {:?}",
                String::from_utf8_lossy(&self.sse.buf)
            ),
        }
    }

    pub fn next_item(&mut self) -> Item {
        self.next_item_by(deadline())
    }

    /// The next event, skipping comments and retry fields; panics if none
    /// arrives by the deadline.
    pub fn next_event_by(&mut self, deadline: Instant) -> Event {
        loop {
            if let Item::Event(event) = self.next_item_by(deadline) {
                return event;
            }
        }
    }

    pub fn next_event(&mut self) -> Event {
        self.next_event_by(deadline())
    }

    /// Waits for the `: connected` comment that opens every stream, so the
    /// subscriber is known to be registered before anything is published.
    pub fn expect_connected(&mut self) {
        loop {
            match self.next_item() {
                Item::Comment(text) if text == "connected" => return,
                Item::Retry(_) => {}
                other => panic!("expected the connected comment first, got {other:?}"),
            }
        }
    }

    /// Asserts no event arrives within `wait` (comments are allowed).
    pub fn expect_no_event(&mut self, wait: Duration) {
        let end = Instant::now() + wait;
        loop {
            match self.poll(end) {
                Next::Item(Item::Event(event)) => panic!("unexpected event {event:?}"),
                Next::Item(_) => {}
                Next::End(BodyEnd::Timeout) => return,
                Next::End(end) => panic!("stream ended: {end:?}"),
            }
        }
    }

    /// Asserts the stream ends cleanly next (the terminating chunk, or EOF
    /// when close-delimited), with nothing before it.
    pub fn expect_clean_end(&mut self) {
        match self.poll(deadline()) {
            Next::End(BodyEnd::Clean) => {}
            other => panic!("expected the stream's clean end, got {other:?}"),
        }
    }

    /// Reads a stream that the server ends: the events of `ids` from the
    /// first, in order, each with the body `padded(n, size)`; then a clean
    /// end that falls between events; then the close. Returns how many
    /// events arrived (callers that expect all of them compare it with
    /// `ids.len()`). For streams without heartbeats: anything but an event
    /// fails, which also bounds the loop by `ids.len()`.
    pub fn expect_padded_events_then_clean_end(&mut self, ids: &[String], size: usize) -> usize {
        let mut received = 0;
        loop {
            match self.poll(deadline()) {
                Next::Item(Item::Event(event)) => {
                    assert!(
                        received < ids.len(),
                        "more events than published: {:?}",
                        event.id
                    );
                    assert_eq!(
                        event.id.as_deref(),
                        Some(ids[received].as_str()),
                        "event {received}"
                    );
                    assert!(
                        event.data == padded(received, size),
                        "event {received} corrupted"
                    );
                    received += 1;
                }
                Next::Item(other) => panic!("unexpected {other:?} after {received} events"),
                Next::End(BodyEnd::Clean) => break,
                Next::End(end) => {
                    panic!("the stream did not end cleanly after {received} events: {end:?}")
                }
            }
        }
        assert!(
            !self.has_partial(),
            "the stream ended inside an event, after {received} whole ones"
        );
        self.expect_closed();
        received
    }
}

/// A keep-alive connection that publishes.
pub struct Publisher {
    pub conn: HttpConn,
}

impl Publisher {
    /// Publishes `body` with `query` (e.g. `?topic=a`); returns the answer.
    pub fn publish(&mut self, query: &str, body: &[u8]) -> Response {
        self.conn.send(&publish_request(query, body));
        self.conn.read_response(deadline())
    }

    /// Publishes and asserts success; returns the assigned id.
    pub fn publish_ok(&mut self, query: &str, body: &[u8]) -> String {
        let response = self.publish(query, body);
        assert_publish_ok(&response)
    }
}

/// Asserts a publish answer is `200 text/plain` with an id; returns the id.
pub fn assert_publish_ok(response: &Response) -> String {
    assert_eq!(
        response.head.status,
        200,
        "publish answered {:?} {:?}",
        response.head,
        response.text()
    );
    let content_type = response.head.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain"),
        "publish Content-Type {content_type:?}"
    );
    let id = response.text();
    assert!(
        !id.is_empty() && !id.contains(['\r', '\n', '\0']),
        "publish answer is not a bare id: {id:?}"
    );
    id
}

// ---------------------------------------------------------------------------
// Through something in between (a proxy, a forwarder): the real-client tests

impl Subscriber {
    /// A stream over a connection whose response head was already read
    /// (e.g. with `try_read_head` through a proxy); framed as the head says.
    pub fn from_head(conn: HttpConn, head: Head) -> Subscriber {
        let framing = match head.header("transfer-encoding") {
            Some(te) if te.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            Some(te) => panic!("unexpected Transfer-Encoding {te:?} on a stream"),
            None => Framing::Close,
        };
        Subscriber {
            head,
            body: Body::new(conn, framing),
            sse: SseParser::default(),
            prefix: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// Hostile input and limits: the server process from outside (environment,
// memory, liveness) and its /metrics counters.

impl TestServer {
    /// `start` with extra environment variables for the server process
    /// (e.g. `SSELOOP_PUBLISH_TOKEN`), which tests must not set on their own
    /// process: the other tests' servers would inherit them.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(args, env, None)
    }

    /// `start_env`, and when `open_files` is given the server starts with
    /// that soft `RLIMIT_NOFILE` (the hard limit unchanged), as it would
    /// under a low `ulimit -n`.
    pub fn start_with(args: &[&str], env: &[(&str, &str)], open_files: Option<u64>) -> TestServer {
        let mut command = TestServer::command(args, env);
        if let Some(soft) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the forked child before exec and calls only
            // getrlimit/setrlimit, which are async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    limit.rlim_cur = soft.min(limit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("spawn sseloop");
        TestServer::await_listening(child, args)
    }

    /// The address from the server's listening line (which may be a
    /// wildcard address such as 0.0.0.0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True while the process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        let stat = proc_stat(self.pid());
        let state = stat.as_ref().and_then(|fields| fields.first());
        !matches!(state.map(String::as_str), None | Some("Z") | Some("X"))
    }

    /// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// All of `GET /metrics`, on a connection of its own that is closed
    /// after the answer.
    pub fn metrics(&self) -> String {
        let (response, _conn) =
            self.request(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        assert_eq!(
            response.head.status, 200,
            "/metrics answered {:?}",
            response.head
        );
        response.text()
    }

    /// The value of one metric from `GET /metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        metric_value(&self.metrics(), name)
    }

    /// Asks `/metrics` until `name` satisfies `ok` (each asking connection
    /// counts in `sseloop_connections`); panics after `IO_TIMEOUT`.
    pub fn await_metric(&self, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let end = deadline();
        loop {
            let value = self.metric(name);
            if ok(value) {
                return value;
            }
            assert!(
                Instant::now() < end,
                "{name} stayed at {value}; server log:\n{}",
                self.log()
            );
            // The server's counters have no change notification to block on.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The value of the sample `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

// ---------------------------------------------------------------------------
// Restarts, signals and resumes (the "nothing lost" tests)

impl TestServer {
    /// Starts `sseloop --listen ADDR ARGS…` on a given address, e.g. the
    /// port of a server that just stopped. A bind that fails (the old
    /// listener not gone yet) is retried for up to `IO_TIMEOUT`.
    pub fn start_on(addr: SocketAddr, args: &[&str]) -> TestServer {
        let listen = addr.to_string();
        let end = deadline();
        loop {
            match TestServer::try_start_on(&listen, args) {
                Ok(server) => return server,
                Err(log) if Instant::now() >= end => {
                    panic!("sseloop did not start on {listen} within {IO_TIMEOUT:?}:\n{log}")
                }
                // A failed bind exits at once; the next attempt is a new
                // process, so this pause is the retry interval, not a wait
                // for an event.
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// One attempt: the server, or its stderr when it exits (or stays
    /// silent) without printing its listening line.
    fn try_start_on(listen: &str, args: &[&str]) -> Result<TestServer, String> {
        let mut command = TestServer::command(args, &[]);
        // A later --listen wins over the one `command` puts first.
        command.args(["--listen", listen]);
        TestServer::launch(command.spawn().expect("spawn sseloop"))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server process.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Waits up to `wait` for the server to exit; `None` if it is still
    /// running.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, wait)
    }

    /// Waits up to `wait` for the server to exit and asserts it exited 0.
    pub fn expect_exit_0(&mut self, wait: Duration) {
        let status = self.wait_exit(wait);
        assert!(
            status.is_some_and(|s| s.success()),
            "the server exited with {status:?} (None: still running after {wait:?})"
        );
    }

    /// Subscribes over HTTP/1.1 to `query`, resuming with a `Last-Event-ID`
    /// header.
    pub fn resume(&self, query: &str, last_event_id: &str) -> Subscriber {
        let request = format!(
            "GET /events{query} HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {last_event_id}\r\n\r\n"
        );
        self.subscribe_raw(request.as_bytes())
    }
}

/// Why a `reset` event was sent: the `reason` of its JSON data. Panics
/// unless `event` is a well-formed reset event: a JSON object with the
/// strings `reason` and `message`.
pub fn reset_reason(event: &Event) -> String {
    assert_eq!(
        event.event.as_deref(),
        Some("reset"),
        "expected a reset event, got {event:?}"
    );
    let data: serde_json::Value = serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("reset data is not JSON ({e}): {:?}", event.data));
    assert!(
        data.get("message")
            .is_some_and(serde_json::Value::is_string),
        "reset data has no message string: {data}"
    );
    data.get("reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("reset data has no reason string: {data}"))
        .to_string()
}

impl Subscriber {
    /// Reads everything the server sends until it closes its side, without
    /// decoding it yet, so that taking the bytes off the socket does not
    /// wait on the parser; `poll` then decodes from what was read. Returns
    /// the number of bytes read, or why reading stopped before the close.
    pub fn read_to_eof(&mut self, deadline: Instant) -> Result<usize, Stop> {
        let conn = self.body.conn.as_mut().expect("body owns its connection");
        let start = conn.buf.len();
        loop {
            match conn.fill(deadline) {
                Ok(_) => {}
                Err(Stop::Eof) => return Ok(conn.buf.len() - start),
                Err(stop) => return Err(stop),
            }
        }
    }
}

/// splitmix64: reproducible pseudo-random choices for the tests that vary
/// their input (the same seed gives the same run).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Waits up to `wait` for `child` to exit; `None` if it still runs then.
pub fn wait_child(child: &mut Child, wait: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        // Polling a child process has no blocking-with-timeout form in std.
        thread::sleep(Duration::from_millis(5));
    }
}

/// The fields of /proc/PID/stat after "pid (comm)", from the state on
/// (the command name may hold spaces and parentheses, so the split is at
/// the last ')'); `None` when the process is gone.
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Reads one request off the server side of a connection, for the tests'
/// own small servers: its request line and its body (by Content-Length).
/// `Ok(None)` when the peer closed before a whole head.
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((request_line, body)))
}
