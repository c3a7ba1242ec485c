//! The terminal's view of a lab run (`sseloop lab LESSON`): a client that
//! reads a lab stream as a browser's `EventSource` does, over plain
//! blocking TCP: it inflates a deflated body, parses events, times each
//! from its publish to its arrival, and when the stream ends before the
//! run does it comes back after 3 s (a browser's default `retry`) with
//! `Last-Event-ID`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::inflate::Inflate;
use super::lesson::{Lesson, MAX_RUN};
use super::run::{END_TYPE, Fixed, epoch_ms};
use super::upstream::{Said, Upstream};

/// What a browser waits before it reconnects, when the stream set no
/// `retry:`.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(3);
/// Most reconnects one watch makes.
const MAX_RECONNECTS: usize = 40;
/// Longest event line read.
const MAX_LINE: usize = 64 << 10;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The lesson.
    pub lesson: Lesson,
    /// With the fix.
    pub fix: bool,
    /// Events per second, in thousandths (the lesson's own when `None`;
    /// see [`super::parse_rate`]).
    pub rate: Option<u32>,
    /// Bytes of each event's data.
    pub size: Option<usize>,
    /// Events.
    pub count: Option<u32>,
}

/// One event as it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Watched {
    /// Its number in the run, from 1.
    pub n: u32,
    /// Its id.
    pub id: String,
    /// Milliseconds from its publish to its arrival.
    pub delay_ms: f64,
    /// How many reads of the socket had returned bytes when it arrived.
    pub reads: usize,
    /// Bytes read off the wire by then.
    pub bytes: usize,
}

/// What the watch tells its caller as it happens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sight<'a> {
    /// An event arrived.
    Event(&'a Watched),
    /// The stream ended before the run did; it comes back with this
    /// `Last-Event-ID` after [`RECONNECT_DELAY`].
    Cut(&'a str),
}

/// A whole run as the terminal saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trial {
    /// With the fix.
    pub fix: bool,
    /// Its events, in order of arrival.
    pub events: Vec<Watched>,
    /// The `Last-Event-ID` of each reconnect.
    pub reconnects: Vec<String>,
    /// Milliseconds from the request to the response head (the browser's
    /// `open`), on the first connection.
    pub open_ms: Option<f64>,
}

/// Runs `options` on the lab at `addr` and watches it to its end, telling
/// `seen` each event and each reconnect as they happen.
pub fn watch(
    addr: SocketAddr,
    options: &Options,
    mut seen: impl FnMut(Sight<'_>),
) -> io::Result<Trial> {
    watch_with(addr, options, &mut seen)
}

/// `watch`, compiled here once (and so for size) whatever the caller's
/// closure.
// Not inlined into the server's code: compiled here, for size.
#[inline(never)]
fn watch_with(
    addr: SocketAddr,
    options: &Options,
    seen: &mut dyn FnMut(Sight<'_>),
) -> io::Result<Trial> {
    let run = format!("t{:x}", (epoch_ms() * 1000.0) as u64);
    let mut query = format!(
        "run={run}&lesson={}&fix={}",
        options.lesson,
        u8::from(options.fix)
    );
    if let Some(rate) = options.rate {
        query.push_str(&format!("&rate={}.{:03}", rate / 1000, rate % 1000));
    }
    if let Some(size) = options.size {
        query.push_str(&format!("&size={size}"));
    }
    if let Some(count) = options.count {
        query.push_str(&format!("&count={count}"));
    }
    let mut trial = Trial {
        fix: options.fix,
        ..Trial::default()
    };
    let end = Instant::now() + MAX_RUN + Duration::from_secs(60);
    let mut last_id: Option<String> = None;
    let (mut reads, mut bytes) = (0, 0);
    loop {
        let began = Instant::now();
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let resume = last_id
            .as_deref()
            .map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
        write!(
            stream,
            "GET /lab/stream?{query} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\
             Accept-Encoding: deflate\r\n{resume}\r\n"
        )?;
        let mut reader = Upstream::new(MAX_LINE);
        let mut inflate: Option<Inflate> = None;
        let mut head = Vec::new();
        let mut head_done = false;
        let mut buf = vec![0; 64 << 10];
        let mut said = Vec::new();
        let over = loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the run did not end",
                ));
            }
            stream.set_read_timeout(Some(left))?;
            let n = match stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break false,
                Err(e) => return Err(e),
            };
            reads += 1;
            bytes += n;
            let mut body = &buf[..n];
            if !head_done {
                head.extend_from_slice(body);
                let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                head_done = true;
                let text = String::from_utf8_lossy(&head[..at]).into_owned();
                let status = text.split(' ').nth(1).unwrap_or("");
                if status == "204" {
                    break true;
                }
                if status != "200" {
                    let why = String::from_utf8_lossy(&head[at + 4..]).trim().to_owned();
                    return Err(io::Error::other(format!(
                        "the lab answered {status}: {why}"
                    )));
                }
                if trial.open_ms.is_none() {
                    trial.open_ms = Some(began.elapsed().as_secs_f64() * 1000.0);
                }
                if text
                    .to_ascii_lowercase()
                    .contains("content-encoding: deflate")
                {
                    inflate = Some(Inflate::default());
                }
                // The reader parses a response: give it a head of its own.
                reader.feed(b"HTTP/1.1 200 OK\r\n\r\n", &mut said).ok();
                said.clear();
                let rest = head[at + 4..].to_vec();
                body = &[];
                if !feed(&rest, &mut inflate, &mut reader, &mut said)? {
                    break false;
                }
            }
            if !feed(body, &mut inflate, &mut reader, &mut said)? {
                break false;
            }
            let arrived = epoch_ms();
            let mut ended = false;
            for item in said.drain(..) {
                let Said::Event(e) = item else { continue };
                match e.event_type.as_deref() {
                    Some(END_TYPE) => ended = true,
                    Some(_) => {}
                    None => {
                        let (Some(n), Some(t)) = (number(&e.data, "n"), number(&e.data, "t"))
                        else {
                            continue;
                        };
                        let id = e.id.clone().unwrap_or_default();
                        let watched = Watched {
                            n: n as u32,
                            id,
                            delay_ms: arrived - t,
                            reads,
                            bytes,
                        };
                        seen(Sight::Event(&watched));
                        trial.events.push(watched);
                    }
                }
                if let Some(id) = e.id {
                    last_id = Some(id);
                }
            }
            if ended {
                break true;
            }
        };
        if over || trial.reconnects.len() >= MAX_RECONNECTS {
            return Ok(trial);
        }
        // Cut before the run's end: come back as a browser does.
        let id = last_id.clone().unwrap_or_default();
        seen(Sight::Cut(&id));
        std::thread::sleep(RECONNECT_DELAY);
        trial.reconnects.push(id);
    }
}

/// The number in field `name` of the lab's event data (`{"n":3,"t":…`),
/// which its publisher writes as digits with at most one point.
fn number(data: &str, name: &str) -> Option<f64> {
    let key = format!("\"{name}\":");
    let from = data.find(&key)? + key.len();
    let text = &data[from..];
    let end = text.find([',', '}']).unwrap_or(text.len());
    let (whole, fraction) = text[..end].split_once('.').unwrap_or((&text[..end], ""));
    let mut value = whole.parse::<u64>().ok()? as f64;
    let mut scale = 1.0;
    for digit in fraction.bytes() {
        scale /= 10.0;
        value += f64::from(digit.checked_sub(b'0').filter(|d| *d < 10)?) * scale;
    }
    Some(value)
}

/// Passes body bytes through the inflater when there is one; false when
/// the stream cannot be read.
fn feed(
    bytes: &[u8],
    inflate: &mut Option<Inflate>,
    reader: &mut Upstream,
    said: &mut Vec<Said>,
) -> io::Result<bool> {
    let plain = match inflate {
        Some(inflate) => inflate
            .feed(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?,
        None => bytes.to_vec(),
    };
    Ok(reader.feed(&plain, said).is_ok())
}

/// `sseloop lab`'s runs, printed: `options` on the lab at `addr` with
/// the cause, the fix or both, in the order of `runs`, each event's delay
/// as it arrives, and the summary at the end.
// Not inlined into the server's code: compiled here, for size.
#[inline(never)]
pub fn print_runs(addr: SocketAddr, options: &Options, runs: &[bool]) -> io::Result<()> {
    let lesson = options.lesson;
    let mut trials = Vec::new();
    for &fix in runs {
        let options = Options {
            fix,
            ..options.clone()
        };
        println!(
            "{} ({}), with the {}:",
            lesson.name(),
            lesson.title(),
            if fix { "fix" } else { "cause" }
        );
        trials.push(watch_with(addr, &options, &mut |sight| match sight {
            Sight::Event(w) => println!(
                "  event {:>3}  {:>8} ms   ({} read{}, {} bytes so far)",
                w.n,
                Fixed(w.delay_ms, 1),
                w.reads,
                if w.reads == 1 { "" } else { "s" },
                w.bytes
            ),
            Sight::Cut(id) => println!(
                "  the stream ended before the run: back in {} s with Last-Event-ID: {id}",
                RECONNECT_DELAY.as_secs()
            ),
        })?);
    }
    print!("{}", summary(lesson, &trials));
    Ok(())
}

/// The summary of runs of one lesson: events, median and maximum delay,
/// reconnects, for each.
// Not inlined into the server's code: compiled here, for size.
#[inline(never)]
pub fn summary(lesson: Lesson, trials: &[Trial]) -> String {
    let mut out = format!(
        "{}: {}\n                  events  median ms     max ms  reconnects\n",
        lesson.name(),
        lesson.title()
    );
    for trial in trials {
        let mut delays: Vec<f64> = trial.events.iter().map(|e| e.delay_ms).collect();
        // Insertion sort: a few hundred values, and no sort code of its own.
        for i in 1..delays.len() {
            let mut j = i;
            while j > 0 && delays[j - 1] > delays[j] {
                delays.swap(j - 1, j);
                j -= 1;
            }
        }
        let median = delays.get(delays.len() / 2).copied().unwrap_or(f64::NAN);
        let max = delays.last().copied().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "  {:<14} {:>7} {:>10} {:>10} {:>11}\n",
            if trial.fix {
                "with the fix"
            } else {
                "with the cause"
            },
            trial.events.len(),
            Fixed(median, 1),
            Fixed(max, 1),
            trial.reconnects.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_the_events_data() {
        let data = r#"{"n":12,"t":1733490000123.456,"pad":"x,y"}"#;
        assert_eq!(number(data, "n"), Some(12.0));
        let t = number(data, "t").unwrap();
        assert!((t - 1733490000123.456).abs() < 1e-3, "{t}");
        assert_eq!(number(data, "x"), None);
        assert_eq!(number(r#"{"n":1a}"#, "n"), None);
    }

    #[test]
    fn the_summary_gives_median_and_max_per_run() {
        let event = |delay_ms| Watched {
            n: 1,
            id: String::new(),
            delay_ms,
            reads: 1,
            bytes: 1,
        };
        let cause = Trial {
            fix: false,
            events: [300.0, 100.0, 200.0].map(event).to_vec(),
            reconnects: vec!["a-1".into()],
            open_ms: None,
        };
        let fix = Trial {
            fix: true,
            events: [0.5, 0.25].map(event).to_vec(),
            ..Trial::default()
        };
        let text = summary(Lesson::Proxy, &[cause, fix]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "proxy: proxy buffering");
        assert!(
            lines[2].contains("with the cause")
                && lines[2].ends_with("200.0      300.0           1"),
            "{text}"
        );
        assert!(
            lines[3].contains("with the fix") && lines[3].contains("0.5"),
            "{text}"
        );
    }
}
