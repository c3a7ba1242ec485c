//! The timer: a timerfd in the poll set, so the loop wakes at the
//! nanosecond a publish falls due rather than at the next whole millisecond
//! of a poll timeout.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

/// The timer's poll token.
pub(super) const TIMER: Token = Token(usize::MAX - 2);

/// A timerfd in the poll set. A poll timeout is whole milliseconds, rounded
/// up, so a schedule kept by it slips by up to a millisecond an event; the
/// timer wakes the loop at the nanosecond its deadline names.
pub(super) struct Timer {
    fd: OwnedFd,
    /// The deadline it is armed for and has not reported yet: arming it
    /// again for the same one is a syscall saved (at tens of thousands of
    /// events a second, a tenth of the client's time).
    armed: Option<u64>,
}

impl Timer {
    pub(super) fn new(poll: &Poll) -> io::Result<Timer> {
        let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let source = &mut SourceFd(&raw);
        poll.registry()
            .register(source, TIMER, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Fires once at `at_ns` on CLOCK_MONOTONIC (at once if that has passed).
    pub(super) fn arm(&mut self, at_ns: u64) -> io::Result<()> {
        if self.armed == Some(at_ns) {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            // All zero would disarm it.
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000).max(1) as libc::c_long,
            },
        };
        let fd = self.fd.as_raw_fd();
        let flags = libc::TFD_TIMER_ABSTIME;
        // SAFETY: `spec` is valid for the call; the old value is not asked for.
        if unsafe { libc::timerfd_settime(fd, flags, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at_ns);
        Ok(())
    }

    /// Takes the expiry count so that the next expiry is a new edge.
    pub(super) fn clear(&mut self) {
        self.armed = None;
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; a failure (nothing
        // expired) is harmless.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }
}
