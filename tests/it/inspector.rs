//! The wire inspector page (`GET /`, `src/inspector.html`) in headless
//! Chromium, driven through the npm package `playwright-core` by
//! `tests/clients/inspector-check.mjs`. The page subscribes, publishes one
//! multi-line unicode event through its own form, and must show that event,
//! with the id the publish answered, in the parsed view, in the raw view
//! exactly as the bytes a plain subscriber received, and as the
//! Last-Event-ID, without a single console or page error.

use std::thread;
use std::time::{Duration, Instant};

use crate::clients::npm_package_version;
use crate::real::{ProcGroup, TempDir, browser_lock, clients_dir, command_in, require_program};
use crate::support::TestServer;

const TOPIC: &str = "t1";
const TYPE: &str = "inspected";
const LINES: [&str; 2] = ["first line: héllo wörld", "second line: ✓ 日本語 🚀"];

/// Each step of the script (Chromium's start, each wait on the page); a
/// start-up on a busy 2-core machine takes a few seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole script: longer than its own last-resort timer (8 steps), so
/// that a stuck step is reported by the script rather than cut off here.
const RUN_TIMEOUT: Duration = Duration::from_secs(8 * 15 + 30);

/// Starts the page's first line: the one stdout line the script prints.
const REPORT_START: &str = "{\"report\":\"inspector-check\"";

#[test]
fn page_shows_a_published_event_parsed_raw_and_as_last_event_id() {
    let node = require_program(&["node", "nodejs"], "nodejs");
    let chromium = require_program(&["chromium"], "chromium");
    let version = npm_package_version("playwright-core");
    assert!(
        version.starts_with("1."),
        "tests/clients pins playwright-core ^1, found {version}"
    );
    let data = LINES.join("\n");

    let _lock = browser_lock();
    let server = TestServer::start(&[]);
    // A plain subscriber beside the page: what the raw view shows must be
    // what came off the wire.
    let mut wire = server.subscribe(&format!("?topic={TOPIC}"));
    wire.expect_connected();

    let home = TempDir::new("inspector");
    let mut command = command_in(&node, home.path());
    command
        // Playwright puts Chromium's profile under TMPDIR: it goes with `home`.
        .env("TMPDIR", home.path())
        .current_dir(clients_dir())
        .arg("inspector-check.mjs")
        .arg(format!("http://{}", server.addr()))
        .args(["--topics", TOPIC, "--type", TYPE, "--data", &data])
        .arg("--timeout-ms")
        .arg(STEP_TIMEOUT.as_millis().to_string())
        .arg("--chromium")
        .arg(&chromium);
    let mut check = ProcGroup::spawn("inspector-check", command, &home.join("node.log"));
    let status = wait_exit(&mut check, Instant::now() + RUN_TIMEOUT);
    let output = check.log_tail(256 * 1024);
    let line = output
        .lines()
        .find(|line| line.starts_with(REPORT_START))
        .unwrap_or_else(|| panic!("inspector-check printed no report ({status}):\n{output}"));
    let report = Report::parse(line);
    let rest: Vec<&str> = output
        .lines()
        .filter(|other| !other.starts_with(REPORT_START))
        .collect();
    let context = format!(
        "inspector-check ({status}) reported:\n{line}\nand printed besides:\n{}",
        rest.join("\n")
    );

    assert_eq!(report.get("failed"), Json::Null, "{context}");
    assert!(status.success(), "{context}");
    assert!(report.strings("consoleErrors").is_empty(), "{context}");
    assert!(report.strings("pageErrors").is_empty(), "{context}");
    assert_eq!(report.str("state"), "open", "{context}");
    assert_eq!(report.str("stateText"), "open", "{context}");

    assert_eq!(report.str("publishStatus"), "ok", "{context}");
    let id = report.str("publishedId");
    assert!(
        report.str("publishText").contains(&id),
        "the publish result does not show the id: {context}"
    );

    // The id the page was answered is the id of the event on the wire.
    let sent = wire.next_event();
    assert_eq!(sent.id.as_deref(), Some(id.as_str()), "{context}");
    assert_eq!(sent.event.as_deref(), Some(TYPE), "{context}");
    assert_eq!(sent.data, data, "{context}");

    // Parsed view: the EventSource's event, data with both lines as they
    // were published.
    assert_eq!(report.str("eventId"), id, "{context}");
    assert_eq!(report.str("eventIdText"), id, "{context}");
    assert_eq!(report.str("eventType"), TYPE, "{context}");
    assert_eq!(report.str("eventTypeText"), TYPE, "{context}");
    assert_eq!(report.str("eventData"), data, "{context}");
    assert_eq!(report.num("eventCount"), 1.0, "{context}");

    // Raw view: the very bytes of the event, and shown with its line ends
    // made visible (the markers are the two characters `\n`).
    let expected_raw = format!(
        "id: {id}\nevent: {TYPE}\ndata: {}\ndata: {}\n\n",
        LINES[0], LINES[1]
    );
    assert_eq!(sent.raw, expected_raw);
    assert_eq!(report.str("rawText"), expected_raw, "{context}");
    let shown = report.str("rawShown");
    for line in [
        format!("id: {id}\\n"),
        format!("event: {TYPE}\\n"),
        format!("data: {}\\n", LINES[0]),
        format!("data: {}\\n", LINES[1]),
        // a blank line: its line-end marker, tagged
        "\\nend of event".to_string(),
    ] {
        assert!(
            shown.lines().any(|shown_line| shown_line.trim() == line),
            "the raw view does not show the line {line:?}: {context}"
        );
    }
    assert!(report.num("rawCount") >= 2.0, "{context}");

    assert_eq!(report.str("lastEventId"), id, "{context}");
}

/// Waits for the script to exit. The child has no waitable handle with a
/// timeout, so it is polled; the bound is `deadline`.
fn wait_exit(check: &mut ProcGroup, deadline: Instant) -> std::process::ExitStatus {
    loop {
        if let Some(status) = check.exited() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "inspector-check still running after {RUN_TIMEOUT:?}:\n{}",
            check.log_tail(16 * 1024)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The report: one flat JSON object whose values are strings, numbers,
// booleans, null or arrays of those. Read here rather than with a JSON crate,
// which the package does not depend on.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    List(Vec<Json>),
}

struct Report {
    fields: Vec<(String, Json)>,
}

impl Report {
    fn parse(text: &str) -> Report {
        let mut reader = JsonReader {
            text,
            chars: text.char_indices().peekable(),
        };
        Report {
            fields: reader.object(),
        }
    }

    fn get(&self, key: &str) -> Json {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the report has no {key:?}"))
    }

    fn str(&self, key: &str) -> String {
        match self.get(key) {
            Json::Str(text) => text,
            other => panic!("report {key:?} is {other:?}, not a string"),
        }
    }

    fn num(&self, key: &str) -> f64 {
        match self.get(key) {
            Json::Num(n) => n,
            other => panic!("report {key:?} is {other:?}, not a number"),
        }
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Json::List(items) => items
                .into_iter()
                .map(|item| match item {
                    Json::Str(text) => text,
                    other => format!("{other:?}"),
                })
                .collect(),
            other => panic!("report {key:?} is {other:?}, not a list"),
        }
    }
}

struct JsonReader<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl JsonReader<'_> {
    fn fail(&mut self, what: &str) -> ! {
        let at = self.chars.peek().map_or(self.text.len(), |&(i, _)| i);
        panic!(
            "report is not the expected JSON ({what} at byte {at}): {}",
            self.text
        )
    }

    fn next(&mut self) -> char {
        match self.chars.next() {
            Some((_, c)) => c,
            None => self.fail("unexpected end"),
        }
    }

    fn expect(&mut self, wanted: char) {
        if self.next() != wanted {
            self.fail(&format!("expected {wanted:?}"));
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn object(&mut self) -> Vec<(String, Json)> {
        let mut fields = Vec::new();
        self.expect('{');
        if self.peek() == Some('}') {
            self.next();
            return fields;
        }
        loop {
            self.expect('"');
            let key = self.string();
            self.expect(':');
            fields.push((key, self.value()));
            match self.next() {
                ',' => {}
                '}' => return fields,
                _ => self.fail("expected , or }"),
            }
        }
    }

    fn value(&mut self) -> Json {
        match self.next() {
            '"' => Json::Str(self.string()),
            '[' => {
                let mut items = Vec::new();
                if self.peek() == Some(']') {
                    self.next();
                    return Json::List(items);
                }
                loop {
                    items.push(self.value());
                    match self.next() {
                        ',' => {}
                        ']' => return Json::List(items),
                        _ => self.fail("expected , or ]"),
                    }
                }
            }
            'n' => self.word("ull", Json::Null),
            't' => self.word("rue", Json::Bool(true)),
            'f' => self.word("alse", Json::Bool(false)),
            first @ ('-' | '0'..='9') => {
                let mut number = first.to_string();
                while let Some(c) = self.peek() {
                    if !matches!(c, '0'..='9' | '.' | 'e' | 'E' | '+' | '-') {
                        break;
                    }
                    number.push(self.next());
                }
                match number.parse() {
                    Ok(n) => Json::Num(n),
                    Err(_) => self.fail("bad number"),
                }
            }
            _ => self.fail("expected a value"),
        }
    }

    fn word(&mut self, rest: &str, value: Json) -> Json {
        for wanted in rest.chars() {
            self.expect(wanted);
        }
        value
    }

    /// The rest of a string whose opening quote was read.
    fn string(&mut self) -> String {
        let mut out = String::new();
        // Consecutive `\u` escapes are decoded together, so that a surrogate
        // pair joins into one char; a lone surrogate (JSON.stringify escapes
        // those) becomes U+FFFD.
        let mut units: Vec<u16> = Vec::new();
        loop {
            let c = self.next();
            if c == '\\' && self.peek() == Some('u') {
                self.next();
                units.push(self.hex4());
                continue;
            }
            out.extend(
                char::decode_utf16(units.drain(..))
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
            );
            match c {
                '"' => return out,
                '\\' => out.push(match self.next() {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    _ => self.fail("bad escape"),
                }),
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> u16 {
        let digits: String = (0..4).map(|_| self.next()).collect();
        u16::from_str_radix(&digits, 16).unwrap_or_else(|_| self.fail("bad \\u escape"))
    }
}

#[test]
fn report_reader_reads_what_json_stringify_writes() {
    // JSON.stringify({s: 'a"\\\n\t✓🚀\ud800\n', n: -1.5e3, z: 0, l: ['x', ''], e: [], b: true, u: null})
    let text =
        r#"{"s":"a\"\\\n\t✓🚀\ud800\n","n":-1500,"z":0,"l":["x",""],"e":[],"b":true,"u":null}"#;
    let report = Report::parse(text);
    assert_eq!(report.str("s"), "a\"\\\n\t✓🚀\u{FFFD}\n");
    assert_eq!(report.num("n"), -1500.0);
    assert_eq!(report.num("z"), 0.0);
    assert_eq!(report.strings("l"), ["x", ""]);
    assert_eq!(report.strings("e"), [""; 0]);
    assert_eq!(report.get("b"), Json::Bool(true));
    assert_eq!(report.get("u"), Json::Null);
    assert_eq!(
        Report::parse(r#"{"p":"\ud83d\ude80"}"#).str("p"),
        "🚀",
        "an escaped surrogate pair"
    );
}
