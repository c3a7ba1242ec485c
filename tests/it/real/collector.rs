//! The collector: a small HTTP/1.1 server on its own loopback port that
//! serves the test page from `tests/clients/` and receives what the page
//! saw, one `POST /report` (form-encoded) per observation. The test awaits
//! reports through it instead of sleeping.
//!
//! In front of an sseloop ([`Collector::in_front_of`]) it also passes the
//! requests for the Mercure hub's path on to it, as an application's
//! reverse proxy does: the page and the hub then share one origin.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{LoopbackServer, ProcGroup, clients_dir, form_decode};
use crate::support::{read_request, wait_until};

/// How often a wait on a client's reports looks whether the client is
/// still running.
const ALIVE_CHECK: Duration = Duration::from_secs(1);

/// One observation the page reported.
#[derive(Debug, Clone)]
pub struct Report {
    fields: Vec<(String, String)>,
}

impl Report {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn kind(&self) -> &str {
        self.get("kind").unwrap_or("")
    }

    /// A numeric field; panics when it is missing or not a number.
    pub fn num(&self, key: &str) -> f64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("report without numeric {key:?}: {self:?}"))
    }
}

#[derive(Default)]
struct Shared {
    reports: Mutex<Vec<Report>>,
    grown: Condvar,
}

pub struct Collector {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

impl Collector {
    pub fn start() -> Collector {
        Collector::serving(None)
    }

    /// A collector that also passes every request for
    /// `/.well-known/mercure` on to the sseloop at `hub`.
    pub fn in_front_of(hub: SocketAddr) -> Collector {
        Collector::serving(Some(hub))
    }

    fn serving(hub: Option<SocketAddr>) -> Collector {
        let shared = Arc::new(Shared::default());
        let serve_shared = Arc::clone(&shared);
        let server = LoopbackServer::start("collector", move |stream| {
            let _ = serve(stream, &serve_shared, hub);
        });
        Collector { server, shared }
    }

    /// The origin pages are served from, e.g. `http://127.0.0.1:40000`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Where clients POST their reports.
    pub fn report_url(&self) -> String {
        format!("{}/report", self.origin())
    }

    /// The URL of `tests/clients/<page>` with the given query pairs.
    pub fn page_url(&self, page: &str, pairs: &[(&str, &str)]) -> String {
        format!("{}/{page}{}", self.origin(), crate::support::query(pairs))
    }

    /// Every report so far, in arrival order.
    pub fn reports(&self) -> Vec<Report> {
        self.shared
            .reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` until `check` finds what it looks for among all
    /// reports so far; `Err` with every report when it did not.
    fn try_wait<T>(
        &self,
        timeout: Duration,
        check: impl FnMut(&Vec<Report>) -> Option<T>,
    ) -> Result<T, Vec<Report>> {
        wait_until(&self.shared.reports, &self.shared.grown, timeout, check)
            .map_err(|reports| reports.clone())
    }

    /// Waits for `count` reports of `kind`; returns them.
    pub fn wait_kind(&self, kind: &str, count: usize, timeout: Duration) -> Vec<Report> {
        self.try_wait(timeout, |reports| kind_count(reports, kind, count))
            .unwrap_or_else(|reports| {
                panic!(
                    "the client did not report {count} × {kind} within {timeout:?}; reports:\n{}",
                    format_reports(&reports)
                )
            })
    }

    /// `wait_kind` for a client that is starting up as `client`: between
    /// slices of the wait it looks whether the client is still running, so
    /// a client that died fails the test at once, with its output, instead
    /// of after `timeout` as one that did not report.
    pub fn wait_kind_while_running(
        &self,
        client: &mut ProcGroup,
        kind: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Report> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = client.exited() {
                panic!(
                    "{} exited ({status}) before reporting {count} × {kind}; its output (tail):\n{}",
                    client.name(),
                    client.log_tail(4000)
                );
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // One last look, and the usual message.
                return self.wait_kind(kind, count, Duration::ZERO);
            }
            if let Ok(found) = self.try_wait(left.min(ALIVE_CHECK), |reports| {
                kind_count(reports, kind, count)
            }) {
                return found;
            }
        }
    }
}

/// The reports of `kind` once there are `count` of them.
fn kind_count(reports: &[Report], kind: &str, count: usize) -> Option<Vec<Report>> {
    let found = of_kind(reports, kind);
    (found.len() >= count).then_some(found)
}

impl Drop for Collector {
    fn drop(&mut self) {
        // No report arrives after the dump below.
        self.server.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- page reports ----\n{}",
                format_reports(&self.reports())
            );
        }
    }
}

/// The reports of one kind, in arrival order.
pub fn of_kind(reports: &[Report], kind: &str) -> Vec<Report> {
    reports
        .iter()
        .filter(|r| r.kind() == kind)
        .cloned()
        .collect()
}

fn format_reports(reports: &[Report]) -> String {
    let mut out = String::new();
    for report in reports {
        let fields: Vec<String> = report
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    out
}

/// Serves one keep-alive connection until the peer closes it (or, for a
/// request passed on to the hub, until the hub's answer has ended).
fn serve(stream: TcpStream, shared: &Shared, hub: Option<SocketAddr>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        if let Some(hub) = hub
            && reader.fill_buf()?.starts_with_hub_request()
        {
            return pass_on(&mut reader, &mut writer, hub);
        }
        let Some((request_line, body)) = read_request(&mut reader)? else {
            return Ok(());
        };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        let response = match (method, path) {
            ("POST", "/report") => {
                let fields = form_decode(&String::from_utf8_lossy(&body));
                shared
                    .reports
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Report { fields });
                shared.grown.notify_all();
                response(204, "text/plain", b"")
            }
            ("GET", file) if client_file_type(file).is_some() => {
                let content_type = client_file_type(file).unwrap_or_default();
                match std::fs::read(client_file_path(file)) {
                    Ok(bytes) => response(200, content_type, &bytes),
                    Err(_) => response(404, "text/plain", b"no such file\n"),
                }
            }
            _ => response(404, "text/plain", b"not found\n"),
        };
        writer.write_all(&response)?;
    }
}

/// Whether buffered bytes begin a request for the Mercure hub (its request
/// line arrives in the first read).
trait HubRequest {
    fn starts_with_hub_request(&self) -> bool;
}

impl HubRequest for [u8] {
    fn starts_with_hub_request(&self) -> bool {
        let line = self.split(|&b| b == b'\r').next().unwrap_or(b"");
        let target = line.split(|&b| b == b' ').nth(1).unwrap_or(b"");
        target.starts_with(b"/.well-known/mercure")
    }
}

/// Passes one request on to the hub, with `Connection: close` in place of
/// the client's, and the hub's answer back, byte for byte, until the hub
/// closes (a stream: until it ends); then the client's connection closes
/// too, as the answer said.
fn pass_on(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    hub: SocketAddr,
) -> io::Result<()> {
    let mut head = Vec::new();
    let mut length = 0;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if let Some(v) = text.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == b"\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        if !text.starts_with("connection:") {
            head.extend_from_slice(&line);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut upstream = TcpStream::connect(hub)?;
    upstream.write_all(&head)?;
    upstream.write_all(&body)?;
    // A stream may stay silent: look now and then whether the client went
    // (or `stop` shut its socket), so that this returns.
    upstream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0; 16 << 10];
    loop {
        match upstream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => writer.write_all(&buf[..n])?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if !still_there(reader.get_ref()) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
    writer.shutdown(Shutdown::Write)
}

/// Whether the client has neither closed nor been shut down: a peek
/// that does not wait finds no end of its input.
fn still_there(client: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer that outlives the call, on an open socket.
    let n = unsafe {
        libc::recv(
            client.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0 || (n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock)
}

/// The content type of a file the collector serves: a plain file name
/// under `tests/clients/` ending in `.html` (a page) or `.mjs` (the module
/// the pages share with the Node client); `None` for anything else.
fn client_file_type(path: &str) -> Option<&'static str> {
    let name = path.trim_start_matches('/');
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.contains("..");
    if !plain {
        None
    } else if name.ends_with(".html") {
        Some("text/html; charset=utf-8")
    } else if name.ends_with(".mjs") {
        Some("text/javascript; charset=utf-8")
    } else {
        None
    }
}

fn client_file_path(path: &str) -> PathBuf {
    clients_dir().join(path.trim_start_matches('/'))
}

fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        _ => "Not Found",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
