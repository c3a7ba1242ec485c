//! The process's open-file limit: every connection is a descriptor, so the
//! binary raises its soft limit to what `--max-connections` needs.

use std::io;

/// The soft and hard `RLIMIT_NOFILE` after an attempt to raise the soft one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// Descriptors the process may now hold.
    pub soft: u64,
    /// The most it could ever be raised to.
    pub hard: u64,
}

/// Raises the soft limit to `wanted`, or to the hard limit when that is lower.
pub fn raise_open_files(wanted: u64) -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        let target = wanted.min(limit.rlim_max);
        if target > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error());
            }
            limit.rlim_cur = target;
        }
    }
    Ok(OpenFiles {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}
