//! A loopback TCP forwarder between a client and sseloop that the test can
//! cut. It copies bytes both ways, one thread per direction, and records per
//! connection what a test needs to prove a reconnect or a kept-alive stream:
//! the request head the client sent (with its `Last-Event-ID`), the start
//! of what the server answered, and when
//! each `: heartbeat` comment passed towards the client.
//!
//! Cutting shuts both sockets of every open connection: the client sees its
//! stream end in the middle (no last chunk), the server sees the subscriber
//! go, and what was in flight is lost, as when a network path drops.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const HEARTBEAT: &[u8] = b": heartbeat\n";
/// Bytes kept of each direction's start (a head is far smaller).
const HEAD_KEPT: usize = 16 * 1024;

/// What the forwarder saw of one connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The first bytes the client sent: its request head.
    pub request: String,
    /// The first bytes the server sent back: its response head and more.
    pub response: String,
    /// When each heartbeat comment passed towards the client.
    pub heartbeats: Vec<Instant>,
    /// Whether both directions are still being copied.
    pub open: bool,
}

impl ConnInfo {
    /// The value of a request header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

struct Conn {
    info: ConnInfo,
    client: TcpStream,
    server: TcpStream,
    /// Directions still copying (2, 1, 0).
    copying: u8,
}

#[derive(Default)]
struct Shared {
    conns: Mutex<Vec<Conn>>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Forwarder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Listens on a port-0 loopback address and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c1), Ok(c2), Ok(s1), Ok(s2)) = (
                    client.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                let index = {
                    let mut conns = accept_shared.conns();
                    conns.push(Conn {
                        info: ConnInfo {
                            request: String::new(),
                            response: String::new(),
                            heartbeats: Vec::new(),
                            open: true,
                        },
                        client,
                        server,
                        copying: 2,
                    });
                    conns.len() - 1
                };
                accept_shared.changed.notify_all();
                let up = Arc::clone(&accept_shared);
                thread::spawn(move || copy(c1, s1, &up, index, Direction::Up));
                let down = Arc::clone(&accept_shared);
                thread::spawn(move || copy(s2, c2, &down, index, Direction::Down));
            }
        });
        Forwarder {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What was seen of every connection so far, in accept order.
    pub fn conns(&self) -> Vec<ConnInfo> {
        self.shared.conns().iter().map(|c| c.info.clone()).collect()
    }

    /// Waits until `count` connections were accepted and each has sent a
    /// complete request head; panics after `timeout`.
    pub fn wait_requests(&self, count: usize, timeout: Duration) -> Vec<ConnInfo> {
        let end = Instant::now() + timeout;
        let mut conns = self.shared.conns();
        loop {
            let complete = conns
                .iter()
                .filter(|c| c.info.request.contains("\r\n\r\n"))
                .count();
            if complete >= count {
                return conns.iter().map(|c| c.info.clone()).collect();
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "forwarder: {count} requests expected within {timeout:?}, saw {:?}",
                conns.iter().map(|c| &c.info).collect::<Vec<_>>()
            );
            conns = self
                .shared
                .changed
                .wait_timeout(conns, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Drops every open connection at once; returns how many were open.
    pub fn cut(&self) -> usize {
        let mut conns = self.shared.conns();
        let mut cut = 0;
        for conn in conns.iter_mut().filter(|c| c.info.open) {
            let _ = conn.client.shutdown(Shutdown::Both);
            let _ = conn.server.shutdown(Shutdown::Both);
            conn.info.open = false;
            cut += 1;
        }
        cut
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.cut();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server: the request.
    Up,
    /// Server to client: the stream.
    Down,
}

fn copy(mut from: TcpStream, mut to: TcpStream, shared: &Shared, index: usize, dir: Direction) {
    let mut buf = [0u8; 16 * 1024];
    // The end of the previous read, so a marker split across reads counts.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let bytes = &buf[..n];
        {
            let mut conns = shared.conns();
            let info = &mut conns[index].info;
            match dir {
                Direction::Up => {
                    let room = HEAD_KEPT.saturating_sub(info.request.len());
                    let kept = &bytes[..room.min(n)];
                    info.request.push_str(&String::from_utf8_lossy(kept));
                }
                Direction::Down => {
                    let room = HEAD_KEPT.saturating_sub(info.response.len());
                    let kept = &bytes[..room.min(n)];
                    info.response.push_str(&String::from_utf8_lossy(kept));
                    carry.extend_from_slice(bytes);
                    let now = Instant::now();
                    let mut at = 0;
                    while let Some(pos) = find(&carry[at..], HEARTBEAT) {
                        info.heartbeats.push(now);
                        at += pos + HEARTBEAT.len();
                    }
                    let keep_from = carry.len().saturating_sub(HEARTBEAT.len() - 1).max(at);
                    carry.drain(..keep_from);
                }
            }
        }
        shared.changed.notify_all();
        if to.write_all(bytes).is_err() {
            break;
        }
    }
    // Passes the end on, as a proxy would.
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
    let mut conns = shared.conns();
    let conn = &mut conns[index];
    conn.copying -= 1;
    if conn.copying == 0 {
        conn.info.open = false;
    }
    drop(conns);
    shared.changed.notify_all();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
