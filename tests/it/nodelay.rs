//! TCP_NODELAY on accepted sockets.
//!
//! Nagle's algorithm only shows as sporadic 40 ms stalls, too flaky to catch
//! by timing, so this looks at the option itself: it finds the server's end
//! of our connection in /proc, copies that descriptor into this process
//! with pidfd_getfd(2) (allowed: the server is our child), and reads the
//! option. Linux only.

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::support::{TestServer, deadline};

/// The inode of process `pid`'s socket from `local` to `peer`, from its
/// /proc/PID/net/tcp.
fn socket_inode(pid: u32, local: SocketAddr, peer: SocketAddr) -> u64 {
    // /proc/net/tcp writes 127.0.0.1:8080 as 0100007F:1F90.
    let hex = |addr: SocketAddr| {
        let IpAddr::V4(ip) = addr.ip() else {
            panic!("tests use 127.0.0.1 only");
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(ip.octets()),
            addr.port()
        )
    };
    let (local, peer) = (hex(local), hex(peer));
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 9 && fields[1] == local && fields[2] == peer {
            return fields[9].parse().unwrap();
        }
    }
    panic!("socket {local} -> {peer} not in /proc/{pid}/net/tcp:\n{table}");
}

/// Process `pid`'s descriptor number for the socket with that inode.
fn socket_fd(pid: u32, inode: u64) -> RawFd {
    let wanted = format!("socket:[{inode}]");
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        if fs::read_link(entry.path()).is_ok_and(|target| target.to_str() == Some(&wanted)) {
            return entry.file_name().to_str().unwrap().parse().unwrap();
        }
    }
    panic!("no descriptor of {pid} is {wanted}");
}

/// A duplicate, in this process, of descriptor `fd` of process `pid`.
fn steal_fd(pid: u32, fd: RawFd) -> OwnedFd {
    // SAFETY: plain syscalls with integer arguments; each returned descriptor
    // is checked and then owned exactly once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let copy = libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        );
        assert!(
            copy >= 0,
            "pidfd_getfd: {}",
            std::io::Error::last_os_error()
        );
        OwnedFd::from_raw_fd(copy as RawFd)
    }
}

/// Whether the server's end of `client`'s connection has TCP_NODELAY.
fn server_side_nodelay(server: &TestServer, client: &TcpStream) -> bool {
    let pid = server.pid();
    // The server's end: its local address is our peer and vice versa.
    let inode = socket_inode(
        pid,
        client.peer_addr().unwrap(),
        client.local_addr().unwrap(),
    );
    let fd = socket_fd(pid, inode);
    let socket = TcpStream::from(steal_fd(pid, fd));
    socket.nodelay().unwrap()
}

#[test]
fn the_check_itself_can_see_nagle_enabled() {
    // The same inspection of one of our own sockets reads the option as it
    // is set, so the server check below is able to fail.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let me = std::process::id();
    let inode = socket_inode(
        me,
        client.local_addr().unwrap(),
        client.peer_addr().unwrap(),
    );
    let copy = TcpStream::from(steal_fd(me, socket_fd(me, inode)));
    client.set_nodelay(false).unwrap();
    assert!(!copy.nodelay().unwrap());
    client.set_nodelay(true).unwrap();
    assert!(copy.nodelay().unwrap());
}

#[test]
fn accepted_sockets_have_tcp_nodelay() {
    let server = TestServer::start(&[]);
    let sub = server.subscribe("?topic=a");
    assert!(
        server_side_nodelay(&server, sub.stream()),
        "subscriber socket lacks TCP_NODELAY"
    );
    // A plain request connection too, not only streams.
    let mut idle = server.http();
    idle.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let _ = idle.read_response(deadline());
    assert!(
        server_side_nodelay(&server, idle.stream()),
        "request socket lacks TCP_NODELAY"
    );
}
