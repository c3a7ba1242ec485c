//! The six clients of `tests/it/corpus.rs`, each started on one stream
//! URL and reporting to a collector: Chromium and Firefox (running
//! `tests/clients/page.html`), npm `eventsource` and
//! `@microsoft/fetch-event-source` on Node, PyPI `sseclient-py` and
//! `httpx-sse` in the venv that test.sh makes in `tests/clients/.venv`.
//! Each checks that the library is the version whose behaviour the tests
//! pin, so an upgrade fails here first and gets looked at.

use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::Duration;

use super::browser::{Browser, RunningBrowser};
use super::collector::Collector;
use super::dialect::Dialect;
use super::{
    INSTALL_HINT, ProcGroup, SKIP_VAR, TempDir, browser_lock, clients_dir, command_in,
    npm_package_version, require_program,
};

/// The versions whose behaviour `Dialect` and the corpus's quirks pin.
pub const FETCH_EVENT_SOURCE_VERSION: &str = "2.0.1";
pub const SSECLIENT_PY_VERSION: &str = "1.9.0";
pub const HTTPX_SSE_VERSION: &str = "0.4.3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Chromium,
    Firefox,
    /// npm `eventsource` (v4), `tests/clients/eventsource-client.mjs`.
    EventSource,
    /// npm `@microsoft/fetch-event-source`,
    /// `tests/clients/fetch-event-source-client.mjs`.
    FetchEventSource,
    /// PyPI `sseclient-py` over `requests`, `tests/clients/sseclient-client.py`.
    SseclientPy,
    /// PyPI `httpx-sse`, `tests/clients/httpx-sse-client.py`.
    HttpxSse,
}

impl Client {
    pub fn dialect(self) -> Dialect {
        match self {
            Client::Chromium | Client::Firefox | Client::EventSource => Dialect::Whatwg,
            Client::FetchEventSource => Dialect::FetchEventSource,
            Client::SseclientPy => Dialect::SseclientPy,
            Client::HttpxSse => Dialect::HttpxSse,
        }
    }

    /// Start-up to the first `open`: a browser on a busy 2-core machine
    /// takes longest.
    pub fn open_timeout(self) -> Duration {
        match self {
            Client::Chromium | Client::Firefox => Duration::from_secs(40),
            _ => Duration::from_secs(20),
        }
    }

    /// Starts the client on `stream_url`, reporting to `collector`, after
    /// checking that it is installed at the pinned version. `types` are the
    /// event types an EventSource listens for besides `message`; `extra`
    /// are further arguments of the driver script.
    pub fn start(
        self,
        stream_url: &str,
        collector: &Collector,
        types: &str,
        extra: &[&str],
    ) -> Running {
        match self {
            Client::Chromium | Client::Firefox => {
                let browser = if self == Client::Chromium {
                    Browser::Chromium
                } else {
                    Browser::Firefox
                };
                let program = browser.program();
                let lock = browser_lock();
                let url = collector.page_url("page.html", &[("es", stream_url), ("types", types)]);
                let running = browser.launch(&program, &url);
                Running {
                    label: format!("{} ({})", browser.name(), program.display()),
                    lib: None,
                    inner: Inner::Browser {
                        browser: running,
                        _lock: lock,
                    },
                    _home: None,
                }
            }
            Client::EventSource | Client::FetchEventSource => {
                let node = require_program(&["node", "nodejs"], "nodejs");
                let (script, label) = if self == Client::EventSource {
                    let version = npm_package_version("eventsource");
                    assert!(
                        version.starts_with("4."),
                        "tests/clients pins eventsource ^4, found {version}"
                    );
                    ("eventsource-client.mjs", format!("eventsource {version}"))
                } else {
                    let version = npm_package_version("@microsoft/fetch-event-source");
                    pinned(
                        "@microsoft/fetch-event-source",
                        &version,
                        FETCH_EVENT_SOURCE_VERSION,
                    );
                    (
                        "fetch-event-source-client.mjs",
                        format!("fetch-event-source {version}"),
                    )
                };
                let home = TempDir::new("node");
                let mut command = command_in(&node, home.path());
                command
                    .current_dir(clients_dir())
                    .arg(script)
                    .arg(stream_url)
                    .arg(collector.report_url());
                if self == Client::EventSource {
                    command.arg(types);
                }
                command.args(extra);
                let group = ProcGroup::spawn(&label, command, &home.join("client.log"));
                Running {
                    label,
                    lib: None,
                    inner: Inner::Process(group),
                    _home: Some(home),
                }
            }
            Client::SseclientPy | Client::HttpxSse => {
                let python = venv_python();
                let (script, package, version) = if self == Client::SseclientPy {
                    ("sseclient-client.py", "sseclient-py", SSECLIENT_PY_VERSION)
                } else {
                    ("httpx-sse-client.py", "httpx-sse", HTTPX_SSE_VERSION)
                };
                pinned(package, &requirement(package), version);
                let home = TempDir::new("python");
                let mut command = command_in(&python, home.path());
                command
                    .current_dir(clients_dir())
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1")
                    .arg(script)
                    .arg(stream_url)
                    .arg(collector.report_url())
                    .args(extra);
                let label = format!("{package} {version}");
                let group = ProcGroup::spawn(&label, command, &home.join("client.log"));
                Running {
                    lib: Some(label.clone()),
                    label,
                    inner: Inner::Process(group),
                    _home: Some(home),
                }
            }
        }
    }
}

/// Fails the test when `package` is not at the version the tests pin.
fn pinned(package: &str, found: &str, want: &str) {
    assert_eq!(
        found, want,
        "{package} {found} is installed, but the tests pin the behaviour of {want} \
         (tests/it/real/dialect.rs, tests/clients/corpus.json): check what the new \
         version does and update them together"
    );
}

/// The interpreter of the venv test.sh makes in `tests/clients/.venv`.
fn venv_python() -> PathBuf {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found: the Python clients are not installed ({INSTALL_HINT}, and \
         `python3 -m venv tests/clients/.venv && tests/clients/.venv/bin/pip install -r \
         tests/clients/requirements.txt`); or run `{SKIP_VAR}=1 ./test.sh` to leave the \
         real-client tests out",
        python.display()
    );
    python
}

/// The version `tests/clients/requirements.txt` pins for `package`, as the
/// venv holds it (test.sh installs the list again whenever it changes);
/// the installed one is what the driver reports at start-up.
fn requirement(package: &str) -> String {
    let path = clients_dir().join("requirements.txt");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .find_map(|line| {
            let (name, version) = line.split_once("==")?;
            name.trim()
                .eq_ignore_ascii_case(package)
                .then(|| version.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{} pins no {package}", path.display()))
}

/// A running client; dropping it ends it (its whole process group) and
/// removes its temp dir.
pub struct Running {
    pub label: String,
    /// What the driver must report as `lib` at start-up, where it reports
    /// the installed library's version itself (the Python ones).
    lib: Option<String>,
    // Field order: the client is ended before its home is removed.
    inner: Inner,
    _home: Option<TempDir>,
}

enum Inner {
    /// A browser holds the browser lock while it runs.
    Browser {
        // Ended before the lock is let go.
        browser: RunningBrowser,
        _lock: MutexGuard<'static, ()>,
    },
    Process(ProcGroup),
}

impl Running {
    /// Asserts that the driver reported the pinned library at start-up.
    pub fn assert_installed(&self, collector: &Collector) {
        if let Some(lib) = &self.lib {
            let loaded = collector.wait_kind("loaded", 1, Duration::ZERO);
            assert_eq!(
                loaded[0].get("lib"),
                Some(lib.as_str()),
                "the venv holds another version than requirements.txt pins: run ./test.sh"
            );
        }
    }

    pub fn group(&mut self) -> &mut ProcGroup {
        match &mut self.inner {
            Inner::Browser { browser, .. } => browser.group(),
            Inner::Process(group) => group,
        }
    }
}
