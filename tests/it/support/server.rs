//! The server process: `TestServer` starts the `sseloop` binary on
//! 127.0.0.1 port 0 (or a given address), with extra options, environment
//! or open-file limit; keeps its standard error and awaits lines in it;
//! opens connections, streams and publishers to it; signals it and awaits
//! its exit; reads its /proc figures and its `/metrics`. It is killed when
//! dropped, and its log printed when a test fails.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    HttpConn, IO_TIMEOUT, Publisher, Response, Subscriber, assert_error, deadline, proc_stat,
    wait_child, wait_until,
};

/// How long the server gets to print its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

const LISTEN_MARKER: &str = "listening on http://";

/// The `sseloop` binary running on 127.0.0.1 with a port chosen by the kernel.
pub struct TestServer {
    child: Child,
    addr: SocketAddr,
    log: Arc<Log>,
}

/// The server's stderr so far, with a condition variable to await lines.
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    grown: Condvar,
}

impl TestServer {
    // Starting it

    /// Starts `sseloop --listen 127.0.0.1:0 ARGS…` and waits for its
    /// listening line.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start_with(args, &[], None)
    }

    /// `start` with standard input a pipe, for `--stdin`: write lines to
    /// the returned end, drop it for end of input.
    pub fn start_piped(args: &[&str]) -> (TestServer, ChildStdin) {
        let mut command = TestServer::command(args, &[]);
        command.stdin(Stdio::piped());
        let mut child = command.spawn().expect("spawn sseloop");
        let stdin = child.stdin.take().expect("piped stdin");
        (TestServer::await_listening(child, args), stdin)
    }

    /// `start` with extra environment variables for the server process
    /// (e.g. `SSELOOP_PUBLISH_TOKEN`), which tests must not set on their own
    /// process: the other tests' servers would inherit them.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(args, env, None)
    }

    /// `start_env`, and when `open_files` is given the server starts with
    /// that soft `RLIMIT_NOFILE` (the hard limit unchanged), as it would
    /// under a low `ulimit -n`.
    pub fn start_with(args: &[&str], env: &[(&str, &str)], open_files: Option<u64>) -> TestServer {
        TestServer::start_with_limits(args, env, open_files, None)
    }

    /// `start_with`, and when `hard` is given the hard `RLIMIT_NOFILE` too,
    /// so that the server cannot raise its soft limit past it.
    pub fn start_with_limits(
        args: &[&str],
        env: &[(&str, &str)],
        open_files: Option<u64>,
        hard: Option<u64>,
    ) -> TestServer {
        let mut command = TestServer::command(args, env);
        if open_files.is_some() || hard.is_some() {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the forked child before exec and calls only
            // getrlimit/setrlimit, which are async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if let Some(hard) = hard {
                        limit.rlim_max = hard.min(limit.rlim_max);
                    }
                    limit.rlim_cur = open_files.unwrap_or(limit.rlim_cur).min(limit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("spawn sseloop");
        TestServer::await_listening(child, args)
    }

    /// Starts `sseloop --listen ADDR ARGS…` on a given address, e.g. the
    /// port of a server that just stopped. A bind that fails (the old
    /// listener not gone yet) is retried for up to `IO_TIMEOUT`.
    pub fn start_on(addr: SocketAddr, args: &[&str]) -> TestServer {
        let listen = addr.to_string();
        let end = deadline();
        loop {
            match TestServer::try_start_on(&listen, args) {
                Ok(server) => return server,
                Err(log) if Instant::now() >= end => {
                    panic!("sseloop did not start on {listen} within {IO_TIMEOUT:?}:\n{log}")
                }
                // A failed bind exits at once; the next attempt is a new
                // process, so this pause is the retry interval, not a wait
                // for an event.
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// One attempt: the server, or its stderr when it exits (or stays
    /// silent) without printing its listening line.
    fn try_start_on(listen: &str, args: &[&str]) -> Result<TestServer, String> {
        let mut command = TestServer::command(args, &[]);
        // A later --listen wins over the one `command` puts first.
        command.args(["--listen", listen]);
        TestServer::launch(command.spawn().expect("spawn sseloop"))
    }

    /// `sseloop --listen 127.0.0.1:0 ARGS…` with `env` set, standard input
    /// empty and standard error piped.
    fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sseloop"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Waits for the listening line; panics with the server's stderr when
    /// it does not come.
    fn await_listening(child: Child, args: &[&str]) -> TestServer {
        TestServer::launch(child)
            .unwrap_or_else(|log| panic!("sseloop {args:?} did not print its listening line {log}"))
    }

    /// Collects the child's standard error and waits for its listening
    /// line: the server, or its exit status and stderr when it exits (or
    /// stays silent) without printing it.
    fn launch(mut child: Child) -> Result<TestServer, String> {
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log::default());
        let (tx, rx) = mpsc::channel();
        let thread_log = Arc::clone(&log);
        // Keeps draining stderr for the server's whole life so that a chatty
        // server (debug logging) never blocks on a full pipe.
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            let mut tx = Some(tx);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line);
                thread_log
                    .text
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&text);
                thread_log.grown.notify_all();
                if let Some(pos) = text.find(LISTEN_MARKER) {
                    let rest = &text[pos + LISTEN_MARKER.len()..];
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    if let (Some(sender), Ok(addr)) = (tx.as_ref(), addr.parse::<SocketAddr>()) {
                        let _ = sender.send(addr);
                        tx = None;
                    }
                }
            }
        });
        // A server that cannot bind exits, which closes stderr and with it
        // the channel: no waiting out the timeout.
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => Ok(TestServer { child, addr, log }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let text = log.text.lock().unwrap_or_else(PoisonError::into_inner);
                Err(format!("({status:?}); stderr:\n{text}"))
            }
        }
    }

    // The process

    /// Process id, for tests that inspect the server's sockets.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address from the server's listening line (which may be a
    /// wildcard address such as 0.0.0.0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True while the process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        let stat = proc_stat(self.pid());
        let state = stat.as_ref().and_then(|fields| fields.first());
        !matches!(state.map(String::as_str), None | Some("Z") | Some("X"))
    }

    /// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server process.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Waits up to `wait` for the server to exit; `None` if it is still
    /// running.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, wait)
    }

    /// Waits up to `wait` for the server to exit and asserts it exited 0.
    pub fn expect_exit_0(&mut self, wait: Duration) {
        let status = self.wait_exit(wait);
        assert!(
            status.is_some_and(|s| s.success()),
            "the server exited with {status:?} (None: still running after {wait:?})"
        );
    }

    // Its standard error

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `IO_TIMEOUT` for a line of the server's stderr that
    /// contains all `parts`, and returns it.
    pub fn await_log(&self, parts: &[&str]) -> Option<String> {
        wait_until(&self.log.text, &self.log.grown, IO_TIMEOUT, |text| {
            text.lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .map(str::to_string)
        })
        .ok()
    }

    // Connections to it

    /// A fresh connection with read and write timeouts set.
    pub fn connect(&self) -> TcpStream {
        // A server on a wildcard address is reached on loopback.
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        super::connect(addr)
    }

    /// A raw HTTP connection to the server.
    pub fn http(&self) -> HttpConn {
        HttpConn::new(self.connect())
    }

    /// Subscribes over HTTP/1.1 with the given query (`""`, or `"?topic=a"`).
    pub fn subscribe(&self, query: &str) -> Subscriber {
        let request = format!("GET /events{query} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.subscribe_raw(request.as_bytes())
    }

    /// `subscribe`, then up to the `: connected` comment: the stream is
    /// registered, so what is published next reaches it.
    pub fn subscribe_ready(&self, query: &str) -> Subscriber {
        let mut sub = self.subscribe(query);
        sub.expect_connected();
        sub
    }

    /// Subscribes over HTTP/1.1 to `query`, resuming with a `Last-Event-ID`
    /// header.
    pub fn resume(&self, query: &str, last_event_id: &str) -> Subscriber {
        let request = format!(
            "GET /events{query} HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {last_event_id}\r\n\r\n"
        );
        self.subscribe_raw(request.as_bytes())
    }

    /// Sends a raw subscribe request and reads the response head, asserting
    /// a 200 text/event-stream answer.
    pub fn subscribe_raw(&self, request: &[u8]) -> Subscriber {
        let mut conn = self.http();
        conn.send(request);
        let head = conn.read_head(deadline());
        assert_eq!(
            head.status,
            200,
            "subscribe answered {head:?}; server log:\n{}",
            self.log()
        );
        Subscriber::from_head(conn, head)
    }

    /// A keep-alive publishing connection.
    pub fn publisher(&self) -> Publisher {
        Publisher { conn: self.http() }
    }

    /// Sends one raw request on a new connection and reads one response.
    pub fn request(&self, raw: &[u8]) -> (Response, HttpConn) {
        let mut conn = self.http();
        conn.send(raw);
        let response = conn.read_response(deadline());
        (response, conn)
    }

    /// `request` for an answer that must be an error: checks the status, the
    /// error headers, a non-empty text body, and that the server then closes.
    pub fn expect_error(&self, raw: &[u8], status: u16) -> Response {
        let (response, mut conn) = self.request(raw);
        assert_error(&response, status);
        conn.expect_closed();
        response
    }

    // Its /metrics

    /// All of `GET /metrics`, on a connection of its own that is closed
    /// after the answer.
    pub fn metrics(&self) -> String {
        let (response, _conn) =
            self.request(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        assert_eq!(
            response.head.status, 200,
            "/metrics answered {:?}",
            response.head
        );
        response.text()
    }

    /// The value of one metric from `GET /metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        metric_value(&self.metrics(), name)
    }

    /// Asks `/metrics` until `name` satisfies `ok` (each asking connection
    /// counts in `sseloop_connections`); panics after `IO_TIMEOUT`.
    pub fn await_metric(&self, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let end = deadline();
        loop {
            let value = self.metric(name);
            if ok(value) {
                return value;
            }
            assert!(
                Instant::now() < end,
                "{name} stayed at {value}; server log:\n{}",
                self.log()
            );
            // The server's counters have no change notification to block on.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- sseloop stderr ----\n{}", self.log());
        }
    }
}

/// The value of the sample `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}
