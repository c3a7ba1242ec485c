//! A loopback TCP forwarder between a client and sseloop (or a node and
//! Redis) that the test can cut. It copies bytes both ways, one thread per
//! direction, and records per
//! connection what a test needs to prove a reconnect or a kept-alive stream:
//! the request head the client sent (with its `Last-Event-ID`), the start
//! of what the server answered, and when each `: heartbeat` comment passed
//! towards the client.
//!
//! Cutting shuts both sockets of every open connection: the client sees its
//! stream end in the middle (no last chunk), the server sees the subscriber
//! go, and what was in flight is lost, as when a network path drops. Then
//! it holds: connections the client makes after the cut are accepted but
//! not connected upstream until the test releases them, so the test, not
//! the client's retry timer, decides what happens while it has no stream.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::LoopbackServer;
use crate::support::{IO_TIMEOUT, wait_until};

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
    /// The first bytes of `request` that were passed on to the server
    /// (recorded after the write; `request` is recorded before, so that
    /// a test that has the answer finds the request).
    passed: String,
    /// When each heartbeat comment passed towards the client.
    pub heartbeats: Vec<Instant>,
    /// Directions still being copied: 2 until either end finishes the
    /// connection or it is cut, 0 once both copies have stopped.
    copying: u8,
}

impl ConnInfo {
    /// The value of a request header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Both directions are still being copied: neither end has finished
    /// the connection and it was not cut.
    pub fn open(&self) -> bool {
        self.copying == 2
    }
}

struct Conn {
    info: ConnInfo,
    client: TcpStream,
    server: TcpStream,
}

impl Conn {
    fn shut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct State {
    conns: Vec<Conn>,
    /// Cuts so far: a connection being made upstream while one happened
    /// belongs to that cut.
    cuts: u64,
    /// New connections wait, not connected upstream, until released.
    holding: bool,
    /// The forwarder is being dropped: nothing new is connected.
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Forwarder {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

impl Forwarder {
    /// Listens on a port-0 loopback address and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Forwarder {
        let shared = Arc::new(Shared::default());
        let conn_shared = Arc::clone(&shared);
        let server = LoopbackServer::start("forwarder", move |client| {
            forward(client, upstream, &conn_shared);
        });
        Forwarder { server, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What was seen of every connection so far, in the order they were
    /// connected upstream.
    pub fn conns(&self) -> Vec<ConnInfo> {
        self.shared
            .state()
            .conns
            .iter()
            .map(|c| c.info.clone())
            .collect()
    }

    /// Waits until `count` connections were made and each has sent a
    /// complete request head; panics after `timeout`.
    pub fn wait_requests(&self, count: usize, timeout: Duration) -> Vec<ConnInfo> {
        self.wait(
            &format!("{count} requests"),
            timeout,
            |conns: &[ConnInfo]| {
                let complete = conns
                    .iter()
                    .filter(|c| c.request.contains("\r\n\r\n"))
                    .count();
                (complete >= count).then(|| conns.to_vec())
            },
        )
    }

    /// Waits until some connection has passed on `text` to the server
    /// (among the first bytes it sent): it is in the server's socket.
    /// Panics after `timeout`.
    pub fn wait_sent(&self, text: &str, timeout: Duration) {
        self.wait(
            &format!("{text:?} sent"),
            timeout,
            |conns: &[ConnInfo]| conns.iter().any(|c| c.passed.contains(text)).then_some(()),
        )
    }

    /// Waits until connection `index` (in `conns()` order) has passed
    /// `count` heartbeats towards the client since `since`; returns when
    /// each of those passed. Panics after `timeout`.
    pub fn wait_heartbeats(
        &self,
        index: usize,
        since: Instant,
        count: usize,
        timeout: Duration,
    ) -> Vec<Instant> {
        self.wait(
            &format!("{count} heartbeats on connection {index}"),
            timeout,
            |conns: &[ConnInfo]| {
                let beats: Vec<Instant> = conns
                    .get(index)?
                    .heartbeats
                    .iter()
                    .copied()
                    .filter(|at| *at >= since)
                    .collect();
                (beats.len() >= count).then_some(beats)
            },
        )
    }

    /// Waits until connection `index` has passed on a start of its response
    /// that `check` accepts (what `check` returns); panics after `timeout`.
    pub fn wait_response<T>(
        &self,
        index: usize,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> Option<T>,
    ) -> T {
        self.wait(
            &format!("{what} on connection {index}"),
            timeout,
            |conns: &[ConnInfo]| check(&conns.get(index)?.response),
        )
    }

    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[ConnInfo]) -> Option<T>,
    ) -> T {
        wait_until(&self.shared.state, &self.shared.changed, timeout, |state| {
            check(
                &state
                    .conns
                    .iter()
                    .map(|c| c.info.clone())
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap_or_else(|state| {
            panic!(
                "forwarder: {what} expected within {timeout:?}, saw {:?}",
                state.conns.iter().map(|c| &c.info).collect::<Vec<_>>()
            )
        })
    }

    /// Drops every open connection at once, waits until their copies have
    /// stopped, and from then on holds new connections, not connected
    /// upstream, until `release`; returns how many were open.
    pub fn cut_and_hold(&self) -> usize {
        let (cut, open) = self.shut_all(true);
        wait_until(
            &self.shared.state,
            &self.shared.changed,
            IO_TIMEOUT,
            |state| {
                cut.iter()
                    .all(|&i| state.conns[i].info.copying == 0)
                    .then_some(())
            },
        )
        .unwrap_or_else(|_| {
            panic!("forwarder: cut connections still copying after {IO_TIMEOUT:?}")
        });
        open
    }

    /// Connects the held connections upstream, and new ones from now on.
    pub fn release(&self) {
        self.shared.state().holding = false;
        self.shared.changed.notify_all();
    }

    /// Shuts both sockets of every connection still copying; returns their
    /// indices and how many of them were open.
    fn shut_all(&self, hold: bool) -> (Vec<usize>, usize) {
        let mut state = self.shared.state();
        state.cuts += 1;
        state.holding |= hold;
        let mut cut = Vec::new();
        let mut open = 0;
        for (i, conn) in state.conns.iter().enumerate() {
            if conn.info.copying > 0 {
                open += usize::from(conn.info.open());
                conn.shut();
                cut.push(i);
            }
        }
        (cut, open)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Held connections give up waiting, ones being made upstream shut
        // themselves, and cutting the rest ends their copies; then the
        // server joins every connection's thread.
        self.shared.state().stopping = true;
        self.shared.changed.notify_all();
        self.shut_all(false);
        self.server.stop();
    }
}

/// Serves one client connection (on its own thread): waits out a hold,
/// connects upstream, and copies both ways until both directions end.
fn forward(client: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) {
    let cuts = {
        let state = shared
            .changed
            .wait_while(shared.state(), |s| s.holding && !s.stopping)
            .unwrap_or_else(PoisonError::into_inner);
        if state.stopping {
            return;
        }
        state.cuts
    };
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c1), Ok(c2), Ok(s1), Ok(s2)) = (
        client.try_clone(),
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    let index = {
        let mut state = shared.state();
        if state.cuts != cuts || state.stopping {
            // A cut (or the drop) came while this connection was being
            // made: it is cut as well.
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        state.conns.push(Conn {
            info: ConnInfo {
                request: String::new(),
                response: String::new(),
                passed: String::new(),
                heartbeats: Vec::new(),
                copying: 2,
            },
            client,
            server,
        });
        state.conns.len() - 1
    };
    shared.changed.notify_all();
    let down_shared = Arc::clone(shared);
    let down = thread::spawn(move || copy(s2, c2, &down_shared, index, Direction::Down));
    copy(c1, s1, shared, index, Direction::Up);
    let _ = down.join();
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
            let mut state = shared.state();
            let info = &mut state.conns[index].info;
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
        if dir == Direction::Up {
            // Recorded once passed on: it is in the server's socket (a
            // frozen server holds it there).
            let mut state = shared.state();
            let info = &mut state.conns[index].info;
            let room = HEAD_KEPT.saturating_sub(info.passed.len());
            info.passed
                .push_str(&String::from_utf8_lossy(&bytes[..room.min(n)]));
            drop(state);
            shared.changed.notify_all();
        }
    }
    // Passes the end on, as a proxy would.
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
    shared.state().conns[index].info.copying -= 1;
    shared.changed.notify_all();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
