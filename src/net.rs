//! The one place `io::ErrorKind` is looked at. Polls, accepts, reads and
//! queue flushes come back as outcome values, with WouldBlock and
//! Interrupted already handled and a peer that went away told apart from a
//! real failure; the log level of a failure is chosen here too. Also how
//! the listeners are set up, and what a connection needs of its socket
//! ([`Transport`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll};
use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel queues for each listener before `accept`.
const BACKLOG: i32 = 1024;

/// Binds `count` listeners on `addr`: one plain listener, or, for several
/// loops, each with `SO_REUSEPORT`, so that the kernel spreads new
/// connections over them. Port 0 picks one free port for all of them.
pub fn listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    if count <= 1 {
        return Ok(vec![TcpListener::bind(addr)?]);
    }
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(reuseport_listener(addr)?);
    }
    Ok(all)
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As a plain listener has it: a restart can bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    // Only processes of the same user can join this group of listeners.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// What a connection needs of its socket: reads, (vectored) writes, the
/// half-close that ends a close-delimited body, and a bounded kernel send
/// buffer. A TCP stream in the loop; an in-memory one in `conn`'s tests.
pub trait Transport: Read + Write {
    /// Shuts the writing side: our FIN.
    fn shutdown_write(&self) -> io::Result<()>;

    /// Fixes the kernel send buffer at `bytes` (0: leaves autotuning on),
    /// so that a subscriber that stops reading holds a bounded amount of
    /// kernel memory.
    fn limit_send_buffer(&self, bytes: usize) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn limit_send_buffer(&self, bytes: usize) -> io::Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        socket2::SockRef::from(self).set_send_buffer_size(bytes)
    }
}

/// Waits for readiness, retrying when a signal interrupted the wait.
pub fn poll(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    loop {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// What an accept gave.
#[derive(Debug)]
pub enum Accepted {
    /// A new connection.
    Conn(TcpStream, SocketAddr),
    /// No connection is waiting.
    WouldBlock,
    /// This attempt failed but the listener still works (a connection reset
    /// before it was taken, or a passing shortage of descriptors or memory).
    Transient(io::Error),
    /// The listener failed.
    Failed(io::Error),
}

/// Accepts one connection.
pub fn accept(listener: &TcpListener) -> Accepted {
    loop {
        return match listener.accept() {
            Ok((socket, peer)) => Accepted::Conn(socket, peer),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::WouldBlock,
            Err(e) if accept_transient(&e) => Accepted::Transient(e),
            Err(e) => Accepted::Failed(e),
        };
    }
}

/// True for accept errors that concern one connection or a passing
/// shortage, after which the listener keeps working.
fn accept_transient(e: &io::Error) -> bool {
    peer_gone(e)
        // Out of descriptors or memory: drop this round, keep serving the rest.
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
        )
}

/// What a read gave.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes arrived.
    Data(usize),
    /// The peer will send nothing more.
    Eof,
    /// Nothing more for now; readiness will tell when there is.
    WouldBlock,
    /// The connection is unusable.
    Failed(io::Error),
}

/// Reads once into `buf`, retrying when a signal interrupted the call.
pub fn read(source: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
    loop {
        return match source.read(buf) {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => ReadOutcome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) => ReadOutcome::Failed(e),
        };
    }
}

/// Where a flush left the queue.
#[derive(Debug)]
pub enum FlushOutcome {
    /// Everything was written.
    Drained,
    /// The kernel refused the rest; wait for writable readiness.
    Blocked,
    /// The connection is unusable.
    Failed(io::Error),
}

/// Writes until nothing is left or the kernel refuses: `write_once` makes
/// one write, or says (`None`) that nothing is left to write. Returns the
/// bytes written and where that left the writer.
pub fn flush(mut write_once: impl FnMut() -> Option<io::Result<usize>>) -> (usize, FlushOutcome) {
    let mut written = 0;
    while let Some(result) = write_once() {
        match result {
            Ok(0) => {
                return (
                    written,
                    FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                );
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return (written, FlushOutcome::Blocked);
            }
            Err(e) => return (written, FlushOutcome::Failed(e)),
        }
    }
    (written, FlushOutcome::Drained)
}

/// How loudly to log a connection's I/O failure: a peer that went away is
/// a normal close, worth a debug line; anything else is a warning.
pub fn failure_level(e: &io::Error) -> log::Level {
    if peer_gone(e) {
        log::Level::Debug
    } else {
        log::Level::Warn
    }
}

/// True for the errors a peer causes by going away.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::WriteZero
            | io::ErrorKind::TimedOut
    )
}

/// What a write of a plain buffer gave.
#[derive(Debug)]
pub enum WriteOutcome {
    /// This many bytes were taken.
    Wrote(usize),
    /// The kernel takes nothing more for now; writable readiness will tell.
    WouldBlock,
    /// The connection is unusable (a write of nothing included).
    Failed(io::Error),
}

/// Writes once from `buf`, retrying when a signal interrupted the call.
pub fn write(sink: &mut impl Write, buf: &[u8]) -> WriteOutcome {
    loop {
        return match sink.write(buf) {
            Ok(0) if !buf.is_empty() => WriteOutcome::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => WriteOutcome::Wrote(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => WriteOutcome::WouldBlock,
            Err(e) => WriteOutcome::Failed(e),
        };
    }
}

/// Where a non-blocking connect stands.
#[derive(Debug)]
pub enum Connecting {
    /// Connected.
    Done,
    /// Still in progress: a later readiness completes it.
    InProgress,
    /// It failed.
    Failed(io::Error),
}

/// Asks a socket whose connect was started where the connect stands (on
/// its readiness: mio reports a completed or failed connect as writable).
pub fn connecting(socket: &TcpStream) -> Connecting {
    match socket.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return Connecting::Failed(e),
    }
    match socket.peer_addr() {
        Ok(_) => Connecting::Done,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Connecting::InProgress,
        Err(e) => Connecting::Failed(e),
    }
}
