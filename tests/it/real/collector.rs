//! The collector: a small HTTP/1.1 server on its own loopback port that
//! serves the test page from `tests/clients/` and receives what the page
//! saw, one `POST /report` (form-encoded) per observation. The test awaits
//! reports through it instead of sleeping.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{clients_dir, form_decode};

/// One observation the page reported.
#[derive(Debug, Clone)]
pub struct Report {
    pub fields: Vec<(String, String)>,
}

impl Report {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn kind(&self) -> &str {
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
    streams: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

pub struct Collector {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Collector {
    pub fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    accept_shared
                        .streams
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(clone);
                }
                let conn_shared = Arc::clone(&accept_shared);
                thread::spawn(move || {
                    let _ = serve(stream, &conn_shared);
                });
            }
        });
        Collector {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The origin pages are served from, e.g. `http://127.0.0.1:40000`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
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

    /// Waits until `check` finds what it looks for among all reports so
    /// far; panics with `what` and every report after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Report]) -> Option<T>,
    ) -> T {
        let end = Instant::now() + timeout;
        let mut reports = self
            .shared
            .reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(found) = check(&reports) {
                return found;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the page did not report {what} within {timeout:?}; reports:\n{}",
                    format_reports(&reports)
                );
            }
            reports = self
                .shared
                .grown
                .wait_timeout(reports, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits for `count` reports of `kind`; returns them.
    pub fn wait_kind(&self, kind: &str, count: usize, timeout: Duration) -> Vec<Report> {
        self.wait_for(&format!("{count} × {kind}"), timeout, |reports| {
            let found = of_kind(reports, kind);
            (found.len() >= count).then_some(found)
        })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that its thread sees the stop flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for stream in self
            .shared
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if thread::panicking() {
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

pub fn format_reports(reports: &[Report]) -> String {
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

/// Serves one keep-alive connection until the peer closes it.
fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
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
            ("GET", page) if is_page(page) => {
                let file = page_path(page);
                match std::fs::read(&file) {
                    Ok(bytes) => response(200, "text/html; charset=utf-8", &bytes),
                    Err(_) => response(404, "text/plain", b"no such page\n"),
                }
            }
            _ => response(404, "text/plain", b"not found\n"),
        };
        writer.write_all(&response)?;
    }
}

/// Pages are plain file names under `tests/clients/` ending in `.html`.
fn is_page(path: &str) -> bool {
    let name = path.trim_start_matches('/');
    name.ends_with(".html")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.contains("..")
}

fn page_path(path: &str) -> PathBuf {
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
