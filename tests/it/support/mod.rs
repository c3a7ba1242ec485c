//! Shared test harness: the real `sseloop` binary on a port-0 listener and
//! a small raw-TCP HTTP/SSE client to talk to it, one file per concern:
//!
//! - `server`: the server process (`TestServer`): starting it (options,
//!   environment, open-file limit, a given address), its log, its
//!   connections, signals and exit, /proc figures and `/metrics`.
//! - `http`: one client connection (`HttpConn`): requests out, response
//!   heads and whole responses in; query encoding; the shape every error
//!   answer has; and reading a request, for the tests' own small servers.
//! - `body`: a response body's framing (chunked or close-delimited),
//!   decoded as it arrives.
//! - `sse`: the event-stream parser and `Subscriber`, one open stream.
//! - `publish`: `Publisher`, publish requests and answers, the ids they
//!   return and the padded bodies that loss checks publish.
//! - `process`: other processes: the command line run to its exit, waiting
//!   for a child, /proc/PID/stat.
//! - `rng`: reproducible pseudo-random choices.
//!
//! This file holds what all of them share: the one bound on every wait, the
//! wait on a condition variable, and the sequence check. Tests name
//! everything through the re-exports below (`crate::support::TestServer`),
//! never through the files.
//!
//! Every read goes through a deadline so that no test can hang: a server that
//! never answers makes the test fail with what was received so far.

mod body;
mod http;
mod process;
mod publish;
mod rng;
mod server;
mod sse;

pub use body::{BodyEnd, Framing};
pub use http::{
    Head, HttpConn, Response, Stop, assert_error, connect, percent_encode, query, read_request,
};
pub use process::{assert_cli_rejected, proc_stat, wait_child};
pub use publish::{
    CUT_OFF_LOG, Publisher, assert_publish_ok, id_run, id_seq, padded, publish_request,
    publish_until_cut_off,
};
pub use rng::Rng;
pub use server::{TestServer, metric_value};
pub use sse::{Event, Item, Next, Subscriber, reset_reason};

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Longest any single wait may take; generous so a loaded machine does not
/// cause false failures, bounded so a broken server cannot hang the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A deadline `IO_TIMEOUT` from now.
pub fn deadline() -> Instant {
    Instant::now() + IO_TIMEOUT
}

/// Waits on `changed` until `check` finds what it looks for in what `mutex`
/// guards; after `timeout`, `Err` with the guard, for the caller's message.
pub fn wait_until<'a, S, T>(
    mutex: &'a Mutex<S>,
    changed: &Condvar,
    timeout: Duration,
    mut check: impl FnMut(&S) -> Option<T>,
) -> Result<T, MutexGuard<'a, S>> {
    let end = Instant::now() + timeout;
    let mut guard = mutex.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(found) = check(&guard) {
            return Ok(found);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(guard);
        }
        guard = changed
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
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
