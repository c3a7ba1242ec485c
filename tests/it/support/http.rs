//! The HTTP client: `connect`, a socket set up as the harness's own;
//! `HttpConn`, one connection with a buffer of bytes
//! received but not yet consumed, that sends raw requests and reads
//! response heads (`Head`) and whole responses (`Response`) by deadline;
//! the query strings requests carry; the shape every error answer has. And
//! the other direction, `read_request`, for the tests' own small servers.
//! Stream bodies are decoded in `body`.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::body::Body;
use super::{BodyEnd, Framing, IO_TIMEOUT, deadline};

/// A connection to `addr` set up as the harness's own: our small writes are
/// not held back by Nagle's algorithm (or tiny-write tests would measure
/// Nagle instead of the server), and no read or write blocks past
/// `IO_TIMEOUT`.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

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
    pub(super) buf: Vec<u8>,
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
    pub(super) fn fill(&mut self, deadline: Instant) -> Result<usize, Stop> {
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
    pub(super) fn take_line(&mut self, deadline: Instant) -> Result<String, Stop> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    pub(super) fn take_exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, Stop> {
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
        self.read_body(head, deadline)
    }

    /// `read_response`, or why no response head came: the connection
    /// ended (`Stop::Eof`) or broke before one did, or the deadline passed.
    pub fn try_read_response(&mut self, deadline: Instant) -> Result<Response, Stop> {
        let head = self.try_read_head(deadline)?;
        Ok(self.read_body(head, deadline))
    }

    /// The body of the response that `head` began.
    fn read_body(&mut self, head: Head, deadline: Instant) -> Response {
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
