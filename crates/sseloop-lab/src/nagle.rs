//! The Nagle lesson's publisher: a client of the hub's own `POST /publish`
//! over real loopback TCP, on one keep-alive connection, that sends each
//! request as two writes, the head and then the body, as many HTTP
//! clients do.
//!
//! With the cause the socket keeps Nagle's algorithm (no `TCP_NODELAY`):
//! the body may not leave while the head is unacknowledged, and the hub,
//! which has nothing to answer before the body, delays its ACK (40 ms on
//! Linux); every publish waits for that timer, and one connection
//! publishes at most about 24 events a second. With the fix the socket
//! has `TCP_NODELAY` and the body leaves at once. Driven by the lab's
//! poll; the socket is registered by the caller.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

/// The answer to a publish, once it came.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Nothing yet.
    Nothing,
    /// The hub published it with this id.
    Id(String),
    /// The hub refused it or the connection failed: why.
    Failed(String),
}

/// One keep-alive connection to the hub's `/publish`.
#[derive(Debug)]
pub struct TcpPublisher {
    socket: TcpStream,
    /// What the kernel has not taken yet (normally nothing).
    unsent: Vec<u8>,
    answer: Vec<u8>,
    in_flight: bool,
    /// The `Authorization` field, when publishing needs a token.
    authorization: String,
}

/// Most bytes of an answer read before it is called broken.
const MAX_ANSWER: usize = 4096;

impl TcpPublisher {
    /// Connects to `hub`; `nodelay` is the fix.
    pub fn connect(hub: SocketAddr, nodelay: bool, token: Option<&str>) -> io::Result<Self> {
        let socket = TcpStream::connect(hub)?;
        // Linux keeps the option set before the connection completes.
        socket.set_nodelay(nodelay)?;
        Ok(TcpPublisher {
            socket,
            unsent: Vec::new(),
            answer: Vec::new(),
            in_flight: false,
            authorization: token
                .map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n")),
        })
    }

    /// The socket, to register.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Whether a publish may start: the connection is up (so the two
    /// writes are two segments, not one queued before the handshake) and
    /// the last publish was answered.
    pub fn idle(&self) -> bool {
        !self.in_flight && self.socket.peer_addr().is_ok()
    }

    /// Publishes `data` to `topic` (with `event_type`): the head in one
    /// write, the body in a second.
    pub fn publish(&mut self, topic: &str, event_type: Option<&str>, data: &str) -> io::Result<()> {
        let event = event_type.map_or_else(String::new, |t| format!("&event={t}"));
        let head = format!(
            "POST /publish?topic={topic}{event} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            data.len(),
            self.authorization
        );
        self.in_flight = true;
        self.send(head.as_bytes())?;
        self.send(data.as_bytes())
    }

    /// One write of `bytes`, unless earlier bytes still wait: then they
    /// queue behind them.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.unsent.is_empty() {
            match self.socket.write(bytes) {
                Ok(n) => self.unsent.extend_from_slice(&bytes[n..]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.unsent.extend(bytes),
                Err(e) => return Err(e),
            }
        } else {
            self.unsent.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Readiness came: writes what waits, reads the answer.
    pub fn on_ready(&mut self, scratch: &mut [u8]) -> Answered {
        while !self.unsent.is_empty() {
            match self.socket.write(&self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Answered::Failed(format!("publish: {e}")),
            }
        }
        loop {
            match self.socket.read(scratch) {
                Ok(0) => {
                    return Answered::Failed("the hub closed the publishing connection".into());
                }
                Ok(n) => self.answer.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => return Answered::Failed(format!("publish: {e}")),
            }
        }
        self.take_answer()
    }

    /// The hub's answer, once whole: its head (`HTTP/1.1 CODE …`, with a
    /// `Content-Length`) and that many bytes of body, the id or the reason.
    fn take_answer(&mut self) -> Answered {
        let Some(end) = self.answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            return match self.answer.len() < MAX_ANSWER {
                true => Answered::Nothing,
                false => Answered::Failed("the hub's answer is not HTTP".into()),
            };
        };
        let head = String::from_utf8_lossy(&self.answer[..end]).to_ascii_lowercase();
        let code = head.get(9..12).unwrap_or("");
        let length = head
            .split("\r\n")
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_ANSWER);
        let Some(body) = self.answer.get(end + 4..end + 4 + length) else {
            return Answered::Nothing;
        };
        let body = String::from_utf8_lossy(body).trim().to_owned();
        let ok = code == "200";
        let code = code.to_owned();
        self.answer.drain(..end + 4 + length);
        self.in_flight = false;
        if ok {
            Answered::Id(body)
        } else {
            Answered::Failed(format!("the hub answered {code}: {body}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Against a plain listener: the request arrives as written, the
    /// answer is read whole even in pieces.
    #[test]
    fn publishes_and_reads_the_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut publisher =
            TcpPublisher::connect(listener.local_addr().unwrap(), false, Some("tok")).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(publisher.idle());
        publisher.publish("lab-x", None, "hello").unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 512];
        while !got.ends_with(b"hello") {
            let n = server.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.starts_with("POST /publish?topic=lab-x HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 5\r\nAuthorization: Bearer tok\r\n\r\nhello"));
        assert!(!publisher.idle());
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nr")
            .unwrap();
        let mut scratch = [0; 1024];
        let mut answered = Answered::Nothing;
        // The rest of the id has not been sent: nothing yet, however often asked.
        for _ in 0..20 {
            answered = publisher.on_ready(&mut scratch);
            if answered != Answered::Nothing {
                break;
            }
        }
        assert_eq!(answered, Answered::Nothing);
        server.write_all(b"-12").unwrap();
        let answered = loop {
            match publisher.on_ready(&mut scratch) {
                Answered::Nothing => std::thread::yield_now(),
                other => break other,
            }
        };
        assert_eq!(answered, Answered::Id("r-12".into()));
        assert!(publisher.idle());
    }
}
