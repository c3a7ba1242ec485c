//! The one place `io::ErrorKind` is looked at: reads and queue flushes come
//! back as outcome values, with WouldBlock and Interrupted already handled
//! and a peer that went away told apart from a real failure.

use std::io::{self, Read, Write};

use crate::buf::WriteQueue;

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

/// Writes the queue until it is empty or the kernel refuses. Returns the
/// bytes written and where that left the queue.
pub fn flush(sink: &mut impl Write, queue: &mut WriteQueue) -> (usize, FlushOutcome) {
    let mut written = 0;
    loop {
        match queue.write_to(sink) {
            Ok(n) => {
                written += n;
                let outcome = if queue.is_empty() {
                    FlushOutcome::Drained
                } else {
                    FlushOutcome::Blocked
                };
                return (written, outcome);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return (written, FlushOutcome::Blocked);
            }
            Err(e) => return (written, FlushOutcome::Failed(e)),
        }
    }
}

/// True for the errors a peer causes by going away: normal closes, worth a
/// debug line, not a warning.
pub fn peer_gone(e: &io::Error) -> bool {
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

/// True for accept errors that concern one connection or a passing
/// shortage, after which the listener keeps working.
pub fn accept_transient(e: &io::Error) -> bool {
    if peer_gone(e) {
        return true;
    }
    // Out of descriptors or memory: drop this round, keep serving the rest.
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
    )
}
