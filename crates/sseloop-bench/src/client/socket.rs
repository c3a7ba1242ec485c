//! Sockets for many connections to one server: non-blocking connects bound
//! to a chosen loopback source address (so tens of thousands of streams do
//! not run out of ephemeral ports), the test for a finished connect, and the
//! open-file limit they need.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;

use mio::net::TcpStream;

/// Opens a non-blocking connection to `target`, bound first to `source` when
/// given, so that many source addresses share the ephemeral port range.
pub(super) fn open_socket(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let (SocketAddr::V4(v4), Some(source)) = (target, source) else {
        return TcpStream::connect(target);
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let (src, dst) = (sockaddr(source, 0), sockaddr(*v4.ip(), v4.port()));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2), then calls on the fd it returned with pointers to
    // live, correctly sized values; `stream` owns the fd at once, so every
    // error path closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, flags, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        // Without this, bind(2) with port 0 reserves a port per socket from
        // one range; with it the port is chosen at connect, per 4-tuple.
        let one: libc::c_int = 1;
        let one_ptr = (&one as *const libc::c_int).cast();
        let one_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            one_ptr,
            one_len,
        );
        if libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

/// Whether a non-blocking connect has finished: `Ok(false)` while in progress.
pub(super) fn connect_done(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Raises the open-file soft limit to the hard limit; returns the soft limit.
pub(crate) fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: pointers to a live rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
