//! `sseloop-bench`: the load and latency client of sseloop.
//!
//! It measures how fast a Server-Sent Events server delivers and what that
//! costs it, against any server with sseloop's interface
//! (`GET /events?topic=T`, `POST /publish?topic=T`), in three phases:
//!
//! 1. **Connect.** Opens N subscriber streams, at most `--connect-batch` at a
//!    time so the server's listen backlog (128 for some servers) is never
//!    overrun, and waits until each has sent its `200` head. The open-file
//!    soft limit is raised to the hard limit, and on loopback each socket is
//!    bound to a source address in 127.0.0.2–127.0.0.251, so tens of
//!    thousands of connections to one port do not run out of ephemeral ports.
//! 2. **Publish.** Sends M events over one keep-alive connection, each
//!    request when the previous one is answered, as a simple publisher does
//!    (and as the peers' reference figures were measured): at a rate, when
//!    it is also due, and the report's `max_lag` is the most any send
//!    went out late against its schedule. A timerfd wakes the client on
//!    time (to within its own wake-up, which `--spin` removes), so beyond
//!    some tens of microseconds a server that answered slowly held the
//!    schedule back.
//!    `latency` runs from the actual send and leaves that slip out;
//!    `scheduled` gives the latency from when each event was due, which
//!    counts it, so a server that falls behind cannot look fast by
//!    slowing its publisher down.
//!    Closed-loop (`--rate 0`), as long as fewer
//!    than W events are outstanding, an event being outstanding until every
//!    open stream has it or `--timeout` gives up on it, so a server that
//!    answers before it delivers cannot make the client queue without bound.
//!    `--pipeline N` lets N requests go unanswered: at a rate, a large N makes
//!    the load open-loop, offered in full however slowly the server answers.
//!    Each event's data is `SEQ MONOTONIC_NS [padding]`, the time read from
//!    CLOCK_MONOTONIC just before the request is written.
//! 3. **Drain.** Waits until every stream has every event, or
//!    `--drain-timeout`.
//!
//! Each delivery is checked per subscriber by sequence number (missing,
//! duplicate, out of order) and its latency, from the publish stamp to the
//! `read` that brought the event's end, goes into a log-linear histogram with
//! under 1 % error. Throughput is unique deliveries over the time from the
//! first publish to the last delivery. Given `--pid`, the server's RSS and
//! CPU time are read from /proc before connecting, after connecting and at
//! the end, so CPU per delivery can be compared between servers even when
//! this client caps throughput. `--idle` replaces phases 2–3 by holding the
//! streams open, to measure idle memory, idle CPU and heartbeats.
//!
//! The client must not be the bottleneck: one thread multiplexes every socket
//! with mio, every socket is read into one large shared buffer, and bodies are
//! decoded incrementally (chunked, content-length or close-delimited framing,
//! then SSE lines ending in CR, LF or CRLF) with about a hundred bytes of
//! parser state per stream and no allocation per delivery.
//!
//! The report has the sections run, connect, publish, deliveries, latency,
//! scheduled, idle, streams, server, client and machine (the time the
//! hypervisor stole from this VM's CPUs during the run, from /proc/stat):
//! as text by default, or with `--json` as
//! one object of objects with the same names, times in microseconds (keys
//! ending `_us`) and memory in KiB (`_kib`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

// ------------------------------------------------------------------ options

const HELP: &str = "\
sseloop-bench: load and latency client for Server-Sent Events servers

USAGE: sseloop-bench [OPTIONS]

Subscribes N streams to GET /events?topic=T, publishes M events with
POST /publish?topic=T over one keep-alive connection, and reports deliveries
(expected, received, missing, duplicate, out of order), publish->receive
latency, delivery throughput and, with --pid, the server's RSS and CPU time.

OPTIONS:
  --addr HOST:PORT     server address                          [127.0.0.1:8080]
  --subscribers N      subscriber streams                      [1]
  --events M           events to publish                       [1000]
  --rate R             events per second; 0 = closed loop      [1000]
  --window W           closed loop: events outstanding at most [32]
  --pipeline N         publishes sent before their answers     [1]
                       (at a rate, 100000 makes the load open-loop)
  --topic T            topic to subscribe and publish to       [bench]
  --size SIZE          padding added to each event's data      [0]
  --pid PID            server process: report its RSS and CPU time
  --json               print one JSON object instead of text
  --idle DUR           idle mode: connect, publish nothing, hold for DUR
  --connect-batch N    connections being opened at once        [64]
  --timeout DUR        longest wait for a response head, for the server to
                       answer publishes, and (closed loop) for one event's
                       deliveries before it counts as missing  [10s]
  --drain-timeout DUR  wait for deliveries after the last publish [5s]
  --max-time DUR       bound on the publish phase              [10m]
  --http10             subscribe with HTTP/1.0 (close-delimited streams)
  --no-spread          do not spread source addresses over 127.0.0.x
  --spin               poll without sleeping: keeps the client's own wake-up
                       time out of latencies, at the cost of a busy core
  -h, --help           print this text

DUR: a number with ms, s or m (bare: seconds). SIZE: B, KiB or MiB (bare: bytes).
Exit status: 0 done, 1 run failed (a stream did not connect, publishing was
aborted, or a delivery was missing, repeated or out of order: the report
says which), 2 bad option.
";

/// Everything the command line sets.
#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    /// HOST:PORT as given, for the Host header.
    host: String,
    subscribers: usize,
    events: u64,
    /// Events per second; 0 means closed loop.
    rate: f64,
    window: u64,
    /// Unanswered publishes allowed.
    pipeline: usize,
    topic: String,
    size: usize,
    pid: Option<u32>,
    json: bool,
    idle: Option<Duration>,
    connect_batch: usize,
    timeout: Duration,
    drain_timeout: Duration,
    max_time: Duration,
    http10: bool,
    spread: bool,
    spin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            host: "127.0.0.1:8080".into(),
            subscribers: 1,
            events: 1000,
            rate: 1000.0,
            // Enough to keep a fan-out server busy between deliveries, few
            // enough that queueing inside the server does not swamp latency.
            window: 32,
            pipeline: 1,
            topic: "bench".into(),
            size: 0,
            pid: None,
            json: false,
            idle: None,
            // Half of 128, the smallest listen backlog in common use (axum's).
            connect_batch: 64,
            timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            max_time: Duration::from_secs(600),
            http10: false,
            spread: true,
            spin: false,
        }
    }
}

const MAX_EVENTS: u64 = 100_000_000;

/// Parses the arguments (without the program name); `Ok(None)` means `--help`.
/// An error names the option and the accepted form.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    while let Some(arg) = args.next() {
        let (name, mut inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || {
            let v = inline.take().or_else(|| args.next());
            v.ok_or_else(|| format!("{name}: missing value"))
        };
        let n = &name;
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => o.json = true,
            "--http10" => o.http10 = true,
            "--no-spread" => o.spread = false,
            "--spin" => o.spin = true,
            "--addr" => {
                let v = value()?;
                o.addr = resolve(&v).ok_or_else(|| bad(n, &v, "HOST:PORT"))?;
                o.host = v;
            }
            "--subscribers" => o.subscribers = count(n, &value()?)? as usize,
            "--events" => {
                // Twelve bytes of bookkeeping per event: bound the allocation.
                let v = value()?;
                o.events = count(n, &v)?;
                if o.events > MAX_EVENTS {
                    return Err(bad(n, &v, &format!("at most {MAX_EVENTS} events")));
                }
            }
            "--rate" => {
                let v = value()?;
                o.rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .ok_or_else(|| bad(n, &v, "events per second >= 0 (0 = closed loop)"))?;
            }
            "--window" => o.window = count(n, &value()?)?,
            "--pipeline" => o.pipeline = count(n, &value()?)? as usize,
            "--topic" => {
                o.topic = value()?;
                if o.topic.is_empty() {
                    return Err(bad(n, "", "a non-empty topic"));
                }
            }
            "--size" => {
                let v = value()?;
                o.size = parse_size(&v).ok_or_else(|| bad(n, &v, "a size such as 100, 4KiB"))?;
            }
            "--pid" => {
                let v = value()?;
                o.pid = Some(v.parse().map_err(|_| bad(n, &v, "a process id"))?);
            }
            "--idle" => o.idle = Some(duration(n, &value()?)?),
            "--connect-batch" => o.connect_batch = count(n, &value()?)? as usize,
            "--timeout" => o.timeout = duration(n, &value()?)?.max(Duration::from_millis(1)),
            "--drain-timeout" => o.drain_timeout = duration(n, &value()?)?,
            "--max-time" => o.max_time = duration(n, &value()?)?,
            _ => return Err(format!("{name}: unknown option (see --help)")),
        }
        if inline.is_some() {
            return Err(format!("{name}: takes no value"));
        }
    }
    Ok(Some(o))
}

fn bad(name: &str, value: &str, form: &str) -> String {
    format!("{name}: expected {form}, got '{value}'")
}

fn count(name: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| bad(name, v, "an integer >= 1"))
}

fn duration(name: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v).ok_or_else(|| bad(name, v, "a duration such as 500ms, 10s, 2m"))
}

/// Resolves HOST:PORT, preferring IPv4 (where source spreading works).
fn resolve(s: &str) -> Option<SocketAddr> {
    let addrs: Vec<SocketAddr> = s.to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, scale) = [("ms", 1e-3), ("s", 1.0), ("m", 60.0)]
        .iter()
        .find_map(|&(unit, scale)| Some((s.strip_suffix(unit)?, scale)))
        .unwrap_or((s, 1.0));
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v * scale))
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, scale) = [("KiB", 1024), ("MiB", 1024 * 1024), ("B", 1)]
        .iter()
        .find_map(|&(unit, scale)| Some((s.strip_suffix(unit)?, scale)))
        .unwrap_or((s, 1));
    num.trim().parse::<usize>().ok()?.checked_mul(scale)
}

// -------------------------------------------------------- clock and /proc

/// Nanoseconds on CLOCK_MONOTONIC, the clock stamped into every event: a raw
/// number (unlike `Instant`) that anything else on this machine can compare.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer and CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}

/// A process's resident memory and CPU time at one moment.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    rss_kib: u64,
    cpu_s: f64,
}

/// Reads VmRSS from /proc/WHO/status and the CPU time of the process; `who`
/// is a pid or `self`.
fn sample_proc(who: &str) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let rss_kib = rss.trim().trim_end_matches("kB").trim().parse().ok()?;
    let cpu_s =
        cpu_ns_of_threads(who).map_or_else(|| cpu_ticks_s(who), |ns| Some(ns as f64 / 1e9))?;
    Some(ProcSample { rss_kib, cpu_s })
}

/// CPU time in nanoseconds summed over the live threads (the first field of
/// each /proc/WHO/task/TID/schedstat). Clock ticks (10 ms) would make a
/// short run's CPU per delivery mostly rounding; a thread that exits during
/// the run takes its time with it, which the servers measured here do not do.
fn cpu_ns_of_threads(who: &str) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{who}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// utime + stime of all threads, dead ones included, from /proc/WHO/stat:
/// for kernels without schedstat.
fn cpu_ticks_s(who: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses, so fields
    // are counted from the last ')': field 3 is then index 0, utime (14) is 11.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Seconds of CPU time the hypervisor gave other guests ("steal", summed
/// over this machine's CPUs, from /proc/stat): on a VM, a run with much of
/// it had its server or client held back by the host.
fn steal_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: u64 = cpu.split_whitespace().nth(7)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Raises the open-file soft limit to the hard limit; returns the soft limit.
fn raise_nofile_limit() -> u64 {
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

// ---------------------------------------------------------------- histogram

/// Sub-buckets per power of two: 2^7 = 128, so a bucket is under 0.8 % wide.
const SUB_BITS: u32 = 7;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) << SUB_BITS;

/// Log-linear latency histogram in nanoseconds: exact below 256 ns, then 128
/// buckets per power of two. Fixed size (58 KiB): recording never allocates.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        let counts = vec![0; BUCKETS];
        Histogram {
            counts,
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 1 << (SUB_BITS + 1) {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        ((shift as usize) << SUB_BITS) + (v >> shift) as usize
    }

    /// The middle of bucket `i`'s range.
    fn value(i: usize) -> u64 {
        if i < 1 << (SUB_BITS + 1) {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) as u32 - 1;
        let mantissa = (i - ((shift as usize) << SUB_BITS)) as u64;
        (mantissa << shift) + (1 << shift) / 2
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total.max(1));
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0;
        let i = self.counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        });
        i.map_or(self.max, |i| Self::value(i).clamp(self.min, self.max))
    }

    fn mean(&self) -> u64 {
        (self.sum / u128::from(self.total.max(1))) as u64
    }
}

// --------------------------------------------------------------- SSE parser

/// Bytes kept of a line that spans reads: enough for `data: SEQ NS` (at most
/// 47 bytes); the rest of a long (padded) line is scanned, never copied.
const LINE_KEEP: usize = 64;

/// What the SSE parser hands up.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SseItem {
    /// A dispatched event whose first data line was `SEQ NS`.
    Stamped { seq: u64, sent_ns: u64 },
    /// A dispatched event with any other data.
    Other,
    /// A comment line such as `: heartbeat`.
    Comment,
}

/// Incremental `text/event-stream` parser (WHATWG rules): lines end in CR, LF
/// or CRLF, `:` lines are comments, `data` fields make an event that is
/// dispatched on a blank line; `id`, `event`, `retry` are accepted and ignored.
#[derive(Debug)]
struct SseParser {
    /// The kept start of a line that began in an earlier read.
    line: [u8; LINE_KEEP],
    line_len: usize,
    /// The last line ended in CR: a LF at the start of the next read is its tail.
    skip_lf: bool,
    has_data: bool,
    stamp: Option<(u64, u64)>,
}

impl SseParser {
    fn new() -> Self {
        SseParser {
            line: [0; LINE_KEEP],
            line_len: 0,
            skip_lf: false,
            has_data: false,
            stamp: None,
        }
    }

    fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(SseItem)) {
        if self.skip_lf && !data.is_empty() {
            self.skip_lf = false;
            data = data.strip_prefix(b"\n").unwrap_or(data);
        }
        while !data.is_empty() {
            let Some(end) = find_eol(data) else {
                self.keep(data);
                return;
            };
            if self.line_len == 0 {
                self.line(&data[..end], out);
            } else {
                self.keep(&data[..end]);
                let (kept, len) = (self.line, self.line_len);
                self.line_len = 0;
                self.line(&kept[..len], out);
            }
            let cr = data[end] == b'\r';
            data = &data[end + 1..];
            if cr {
                self.skip_lf = data.is_empty();
                data = data.strip_prefix(b"\n").unwrap_or(data);
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let n = part.len().min(LINE_KEEP - self.line_len);
        self.line[self.line_len..self.line_len + n].copy_from_slice(&part[..n]);
        self.line_len += n;
    }

    fn line(&mut self, line: &[u8], out: &mut impl FnMut(SseItem)) {
        if line.is_empty() {
            if self.has_data {
                out(match self.stamp {
                    Some((seq, sent_ns)) => SseItem::Stamped { seq, sent_ns },
                    None => SseItem::Other,
                });
            }
            self.has_data = false;
            self.stamp = None;
        } else if line[0] == b':' {
            out(SseItem::Comment);
        } else if !self.has_data && line.starts_with(b"data") {
            // Only the first data line carries the stamp; later ones would be
            // joined into the event's data, which changes nothing here.
            let value = match &line[4..] {
                [] => Some(&b""[..]),
                [b':', rest @ ..] => Some(rest.strip_prefix(b" ").unwrap_or(rest)),
                _ => None, // a field named e.g. `datax`
            };
            if let Some(value) = value {
                self.has_data = true;
                self.stamp = parse_stamp(value);
            }
        }
    }
}

/// Parses `SEQ NS`, optionally followed by a space and padding.
fn parse_stamp(v: &[u8]) -> Option<(u64, u64)> {
    let mut parts = v.splitn(3, |&b| b == b' ');
    let mut number = || -> Option<u64> {
        let p = parts.next().filter(|p| !p.is_empty() && p.len() <= 19)?;
        p.iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
        })
    };
    Some((number()?, number()?))
}

/// Position of the first CR or LF, eight bytes at a time: padded events make
/// long lines, and a byte loop would then cost more than the rest of parsing.
fn find_eol(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & (ONES << 7);
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        // The lowest flagged byte is exact (borrows only flag higher ones).
        let hit = has_zero(w ^ (ONES * 0x0a)) | has_zero(w ^ (ONES * 0x0d));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|p| i + p)
}

// ------------------------------------------------------------- HTTP framing

/// How a response body is delimited, with the decoding state.
#[derive(Debug)]
enum Body {
    /// Chunked: the state, and the size being read or the bytes left in a chunk.
    Chunked(Chunk, u64),
    Length(u64),
    /// Close-delimited: every byte until EOF is body.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    Size,
    /// Chunk extensions, or the CR, up to the LF ending the size line.
    SizeLine,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields after the last chunk; `true` at the start of a line.
    Trailer(bool),
    Done,
}

impl Body {
    /// Passes the body bytes in `data` to `out`; returns the bytes consumed and
    /// whether the body is complete (the rest then belongs to the next message).
    fn feed(
        &mut self,
        data: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, bool), &'static str> {
        let (state, size) = match self {
            Body::Close => {
                out(data);
                return Ok((data.len(), false));
            }
            Body::Length(left) => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                out(&data[..n]);
                *left -= n as u64;
                return Ok((n, *left == 0));
            }
            Body::Chunked(state, size) => (state, size),
        };
        let mut i = 0;
        while i < data.len() && *state != Chunk::Done {
            if *state == Chunk::Data {
                let n = (data.len() - i).min(usize::try_from(*size).unwrap_or(usize::MAX));
                out(&data[i..i + n]);
                i += n;
                *size -= n as u64;
                if *size == 0 {
                    *state = Chunk::DataEnd;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            *state = match *state {
                Chunk::Size => match (b as char).to_digit(16) {
                    Some(_) if *size >= 1 << 40 => return Err("chunk size too large"),
                    Some(d) => {
                        *size = *size * 16 + u64::from(d);
                        Chunk::Size
                    }
                    None if b == b'\n' && *size == 0 => Chunk::Trailer(true),
                    None if b == b'\n' => Chunk::Data,
                    None if matches!(b, b'\r' | b';' | b' ' | b'\t') => Chunk::SizeLine,
                    None => return Err("bad chunk size"),
                },
                Chunk::SizeLine if b != b'\n' => Chunk::SizeLine,
                Chunk::SizeLine if *size == 0 => Chunk::Trailer(true),
                Chunk::SizeLine => Chunk::Data,
                Chunk::DataEnd => match b {
                    b'\r' => Chunk::DataEnd,
                    b'\n' => Chunk::Size,
                    _ => return Err("no CRLF after chunk data"),
                },
                Chunk::Trailer(at_start) => match b {
                    b'\n' if at_start => Chunk::Done,
                    b'\n' => Chunk::Trailer(true),
                    b'\r' => Chunk::Trailer(at_start),
                    _ => Chunk::Trailer(false),
                },
                Chunk::Data | Chunk::Done => unreachable!("handled above"),
            };
        }
        Ok((i, *state == Chunk::Done))
    }
}

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Length of the head (through the blank line) once `buf` holds all of it.
fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// What a response head says.
#[derive(Debug)]
struct Head {
    status: u16,
    body: Body,
    event_stream: bool,
    /// `Connection: close`: the server takes no further request on it.
    close: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5)?.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let (mut chunked, mut length, mut event_stream, mut close) = (false, None, false, false);
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.ends_with("chunked"),
            "content-length" => length = value.parse::<u64>().ok(),
            "content-type" => event_stream = value.starts_with("text/event-stream"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked(Chunk::Size, 0),
        (false, Some(n)) => Body::Length(n),
        _ if status < 200 || status == 204 || status == 304 => Body::Length(0),
        _ => Body::Close,
    };
    Ok(Head {
        status,
        body,
        event_stream,
        close,
    })
}

// ------------------------------------------------------------------ sockets

/// Opens a non-blocking connection to `target`, bound first to `source` when
/// given, so that many source addresses share the ephemeral port range.
fn open_socket(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
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
fn connect_done(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

// -------------------------------------------------------------- subscribers

#[derive(Debug)]
enum SubState {
    Connecting,
    /// Connected; this many bytes of the request written.
    Requesting(usize),
    /// Request sent; the head's bytes so far.
    Head(Vec<u8>),
    Streaming,
    Closed,
}

/// Which sequence numbers one subscriber has seen: the highest, and a bitmap
/// of the 128 below it, enough to tell a duplicate from a late arrival
/// without memory per event (anything older counts as out of order).
#[derive(Debug, Default)]
struct SeqTracker {
    next: u64,
    recent: u128,
    unique: u64,
}

#[derive(Debug, PartialEq)]
enum Arrival {
    InOrder,
    Late,
    Duplicate,
}

impl SeqTracker {
    fn arrive(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let shift = seq + 1 - self.next;
            self.recent = if shift >= 128 {
                0
            } else {
                self.recent << shift
            } | 1;
            self.next = seq + 1;
            self.unique += 1;
            return Arrival::InOrder;
        }
        let back = self.next - 1 - seq;
        if back < 128 {
            if self.recent >> back & 1 == 1 {
                return Arrival::Duplicate;
            }
            self.recent |= 1 << back;
        }
        self.unique += 1;
        Arrival::Late
    }
}

/// One subscriber stream.
#[derive(Debug)]
struct Sub {
    stream: Option<TcpStream>,
    state: SubState,
    body: Body,
    sse: SseParser,
    seqs: SeqTracker,
    comments: u32,
    opened_ns: u64,
    last_rx_ns: u64,
    max_gap_ns: u64,
}

/// A publishing rate's timetable: event `seq` is due `seq / rate` seconds
/// after `start`.
#[derive(Clone, Copy)]
struct Schedule {
    start: u64,
    rate: f64,
}

impl Schedule {
    fn due(&self, seq: u64) -> u64 {
        self.start + (seq as f64 * 1e9 / self.rate) as u64
    }
}

/// Delivery counters over all subscribers, updated by the parser callbacks.
#[derive(Default)]
struct Tally {
    /// Stamped events count only while publishing; before and after they
    /// cannot be this run's, so they count as `other`.
    accept: bool,
    /// Unique deliveries per event, to know when every stream has it.
    delivered: Vec<u32>,
    latency: Histogram,
    /// At a rate: when each event was due, and latency counted from then.
    schedule: Option<Schedule>,
    from_schedule: Histogram,
    received: u64,
    duplicate: u64,
    out_of_order: u64,
    other: u64,
    comments: u64,
    last_delivery_ns: u64,
}

impl Tally {
    fn item(&mut self, item: SseItem, seqs: &mut SeqTracker, comments: &mut u32, now: u64) {
        match item {
            SseItem::Comment => {
                self.comments += 1;
                *comments += 1;
            }
            SseItem::Stamped { seq, sent_ns }
                if self.accept && seq < self.delivered.len() as u64 =>
            {
                self.received += 1;
                match seqs.arrive(seq) {
                    Arrival::Duplicate => return self.duplicate += 1,
                    Arrival::Late => self.out_of_order += 1,
                    Arrival::InOrder => {}
                }
                self.delivered[seq as usize] += 1;
                self.latency.record(now.saturating_sub(sent_ns));
                if let Some(schedule) = &self.schedule {
                    self.from_schedule
                        .record(now.saturating_sub(schedule.due(seq)));
                }
                self.last_delivery_ns = now;
            }
            SseItem::Stamped { .. } | SseItem::Other => self.other += 1,
        }
    }
}

/// What bytes read from a subscriber did to it.
enum Progress {
    Same,
    /// The head arrived: the stream is open.
    Opened,
    /// The stream is over or unusable, for this reason.
    Ended(String),
}

/// Feeds `data`, read at `now`, through the subscriber's head, framing and SSE
/// parsers into `tally`.
fn sub_bytes(sub: &mut Sub, data: &[u8], now: u64, tally: &mut Tally) -> Progress {
    let mut progress = Progress::Same;
    let head;
    let mut data = data;
    if let SubState::Head(buf) = &mut sub.state {
        buf.extend_from_slice(data);
        let Some(len) = head_len(buf) else {
            let too_large = buf.len() > MAX_HEAD;
            return if too_large {
                Progress::Ended("head too large".into())
            } else {
                progress
            };
        };
        match parse_head(&buf[..len]) {
            Ok(Head {
                status: 200,
                event_stream: true,
                body,
                ..
            }) => sub.body = body,
            Ok(Head { status: 200, .. }) => return Progress::Ended("not text/event-stream".into()),
            Ok(Head { status, .. }) => return Progress::Ended(format!("status {status}")),
            Err(e) => return Progress::Ended(e),
        }
        head = std::mem::replace(&mut sub.state, SubState::Streaming);
        let SubState::Head(buf) = &head else {
            unreachable!("matched above")
        };
        data = &buf[len..];
        progress = Progress::Opened;
    }
    let Sub {
        body,
        sse,
        seqs,
        comments,
        ..
    } = sub;
    let fed = body.feed(data, &mut |part| {
        sse.feed(part, &mut |item| tally.item(item, seqs, comments, now))
    });
    match fed {
        Ok((_, false)) => progress,
        Ok((_, true)) => Progress::Ended("stream ended by server".into()),
        Err(e) => Progress::Ended(e.into()),
    }
}

// ---------------------------------------------------------------- publisher

const PUBLISHER: Token = Token(usize::MAX - 1);
/// `sent_ns` of an event whose publish failed.
const FAILED: u64 = u64::MAX;
/// Unsent request bytes allowed before composing more waits.
const MAX_TX_BACKLOG: usize = 1 << 20;

/// The keep-alive publishing connection.
#[derive(Default)]
struct Publisher {
    stream: Option<TcpStream>,
    connected: bool,
    tx: Vec<u8>,
    tx_off: usize,
    body: Vec<u8>,
    rx: Vec<u8>,
    /// Sequence numbers of unanswered publishes, oldest first.
    in_flight: VecDeque<u64>,
    /// The head of the response being read, with its body's decoding state.
    response: Option<Head>,
    error_body: Vec<u8>,
    /// Last answer, or the send that made `in_flight` non-empty: a server that
    /// answers nothing for `--timeout` after this has stalled.
    progress_ns: u64,
    reconnects: u32,
}

// -------------------------------------------------------------------- timer

const TIMER: Token = Token(usize::MAX - 2);
/// Subscribers read in one go before a publish that fell due meanwhile goes
/// out: at a few microseconds a read, well under a millisecond.
const SUBS_BETWEEN_PUBLISHES: usize = 64;

/// A timerfd in the poll set. A poll timeout is whole milliseconds, rounded
/// up, so a schedule kept by it slips by up to a millisecond an event; the
/// timer wakes the loop at the nanosecond its deadline names.
struct Timer {
    fd: OwnedFd,
}

impl Timer {
    fn new(poll: &Poll) -> io::Result<Timer> {
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
        Ok(Timer { fd })
    }

    /// Fires once at `at_ns` on CLOCK_MONOTONIC (at once if that has passed).
    fn arm(&self, at_ns: u64) -> io::Result<()> {
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
        Ok(())
    }

    /// Takes the expiry count so that the next expiry is a new edge.
    fn clear(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; a failure (nothing
        // expired) is harmless.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }
}

// -------------------------------------------------------------------- bench

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Connect,
    Publish,
    Idle,
}

struct Bench {
    opts: Options,
    poll: Poll,
    timer: Timer,
    events: Events,
    ready: Vec<Token>,
    /// One large read buffer shared by every socket.
    buf: Vec<u8>,
    subs: Vec<Sub>,
    sub_request: Vec<u8>,
    publish_prefix: Vec<u8>,
    phase: Phase,
    /// Subscribers between connect and response head.
    pending: usize,
    /// Streams open.
    live: usize,
    connect_failures: usize,
    first_connect_error: Option<String>,
    streams_closed: usize,
    first_close_reason: Option<String>,
    tally: Tally,
    publisher: Publisher,
    /// Events written so far (sequence numbers 0..published).
    published: u64,
    /// Oldest event still outstanding for the closed-loop window.
    window_base: u64,
    /// Oldest event not yet delivered to every open stream.
    complete_base: u64,
    sent_ns: Vec<u64>,
    first_sent_ns: u64,
    /// At a rate: the most a publish went out after it was due.
    max_lag_ns: u64,
    publish_errors: u64,
    first_publish_error: Option<String>,
    abort: Option<String>,
}

impl Bench {
    fn new(opts: Options) -> io::Result<Self> {
        let mut topic = String::new();
        for b in opts.topic.bytes() {
            match b {
                b'-' | b'.' | b'_' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                    topic.push(b as char)
                }
                _ => write!(topic, "%{b:02X}").expect("String"),
            }
        }
        let (version, host) = (if opts.http10 { 0 } else { 1 }, &opts.host);
        let sub_request = format!(
            "GET /events?topic={topic} HTTP/1.{version}\r\nHost: {host}\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        let publish_prefix = format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: {host}\r\n\
             Content-Type: text/plain\r\nContent-Length: "
        );
        let events = opts.events as usize;
        let poll = Poll::new()?;
        Ok(Bench {
            timer: Timer::new(&poll)?,
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            buf: vec![0; 256 * 1024],
            subs: Vec::with_capacity(opts.subscribers),
            sub_request: sub_request.into_bytes(),
            publish_prefix: publish_prefix.into_bytes(),
            phase: Phase::Connect,
            pending: 0,
            live: 0,
            connect_failures: 0,
            first_connect_error: None,
            streams_closed: 0,
            first_close_reason: None,
            tally: Tally {
                delivered: vec![0; events],
                ..Tally::default()
            },
            publisher: Publisher::default(),
            published: 0,
            window_base: 0,
            complete_base: 0,
            sent_ns: vec![0; events],
            first_sent_ns: 0,
            max_lag_ns: 0,
            publish_errors: 0,
            first_publish_error: None,
            abort: None,
            opts,
        })
    }

    /// One poll, waiting until `wake` at most, and the handling of every
    /// ready socket.
    fn turn(&mut self, wake: u64) -> io::Result<()> {
        let timeout = if self.opts.spin {
            0
        } else {
            // The timer wakes the loop on time; the poll timeout, rounded up
            // to the next millisecond, is only a backstop.
            self.timer.arm(wake)?;
            wake.saturating_sub(now_ns())
        };
        match self
            .poll
            .poll(&mut self.events, Some(Duration::from_nanos(timeout)))
        {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            r => r?,
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| e.token()));
        // Events are hints: each handler just tries its next step. The
        // publisher and the timer go first, and a long run of subscribers is
        // broken to publish what fell due, so that a client busy reading
        // deliveries does not hold its own schedule back.
        for &token in &ready {
            if token == PUBLISHER {
                self.publisher_ready();
            } else if token == TIMER {
                self.timer.clear();
            }
        }
        let count = self.subs.len();
        let subs = ready.iter().filter(|t| t.0 < count);
        for (n, &token) in subs.enumerate() {
            if n % SUBS_BETWEEN_PUBLISHES == SUBS_BETWEEN_PUBLISHES - 1 {
                self.publish_if_due();
            }
            self.sub_ready(token.0);
        }
        self.ready = ready;
        Ok(())
    }

    // ------------------------------------------------------ subscribers

    /// Opens every stream, `--connect-batch` at a time; returns how long it took.
    fn connect_phase(&mut self) -> io::Result<Duration> {
        let start = now_ns();
        let timeout = ns(self.opts.timeout);
        let spread =
            self.opts.spread && matches!(self.opts.addr, SocketAddr::V4(a) if a.ip().is_loopback());
        // In opening order, so per-connection deadlines need no scan.
        let mut opening = VecDeque::new();
        loop {
            while self.pending < self.opts.connect_batch && self.subs.len() < self.opts.subscribers
            {
                let i = self.subs.len();
                self.open_sub(spread.then(|| Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8)));
                opening.push_back(i);
            }
            let now = now_ns();
            while let Some(&i) = opening.front() {
                let sub = &self.subs[i];
                let waiting = !matches!(sub.state, SubState::Streaming | SubState::Closed);
                if waiting && now < sub.opened_ns + timeout {
                    break;
                }
                if waiting {
                    self.end_sub(i, "no response head within --timeout".into());
                }
                opening.pop_front();
            }
            let Some(&oldest) = opening.front() else {
                return Ok(Duration::from_nanos(now_ns() - start));
            };
            self.turn(self.subs[oldest].opened_ns + timeout)?;
        }
    }

    fn open_sub(&mut self, source: Option<Ipv4Addr>) {
        let i = self.subs.len();
        let opened = open_socket(self.opts.addr, source).and_then(|mut s| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll.registry().register(&mut s, Token(i), interest)?;
            Ok(s)
        });
        self.subs.push(Sub {
            stream: None,
            state: SubState::Connecting,
            body: Body::Close,
            sse: SseParser::new(),
            seqs: SeqTracker::default(),
            comments: 0,
            opened_ns: now_ns(),
            last_rx_ns: 0,
            max_gap_ns: 0,
        });
        self.pending += 1;
        match opened {
            Ok(s) => self.subs[i].stream = Some(s),
            Err(e) => self.end_sub(i, format!("connect: {e}")),
        }
    }

    fn sub_ready(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        let Some(stream) = sub.stream.as_mut() else {
            return;
        };
        if let SubState::Connecting = sub.state {
            match connect_done(stream) {
                Ok(true) => sub.state = SubState::Requesting(0),
                Ok(false) => return,
                Err(e) => return self.end_sub(i, format!("connect: {e}")),
            }
        }
        while let SubState::Requesting(done) = sub.state {
            sub.state = match stream.write(&self.sub_request[done..]) {
                Ok(n) if done + n == self.sub_request.len() => {
                    SubState::Head(Vec::with_capacity(512))
                }
                Ok(n) => SubState::Requesting(done + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.end_sub(i, format!("write: {e}")),
            };
        }
        self.sub_read(i);
    }

    /// Reads a stream until the kernel has nothing more.
    fn sub_read(&mut self, i: usize) {
        loop {
            let sub = &mut self.subs[i];
            let Some(stream) = sub.stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.buf) {
                Ok(0) => return self.end_sub(i, "closed by server".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.end_sub(i, format!("read: {e}")),
            };
            // One clock read per read(2): the events in it arrived together.
            let now = now_ns();
            sub.max_gap_ns = sub.max_gap_ns.max(now.saturating_sub(sub.last_rx_ns));
            sub.last_rx_ns = now;
            match sub_bytes(sub, &self.buf[..n], now, &mut self.tally) {
                Progress::Same => {}
                Progress::Opened => (self.pending, self.live) = (self.pending - 1, self.live + 1),
                Progress::Ended(reason) => return self.end_sub(i, reason),
            }
            // A short read emptied the socket's queue, and edge-triggered epoll
            // reports any data that arrives after it: the WouldBlock read that
            // would follow is a syscall per delivery saved.
            if n < self.buf.len() {
                return;
            }
        }
    }

    /// Closes subscriber `i` and accounts for why.
    fn end_sub(&mut self, i: usize, reason: String) {
        let sub = &mut self.subs[i];
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        match std::mem::replace(&mut sub.state, SubState::Closed) {
            SubState::Closed => return,
            SubState::Streaming => self.live -= 1,
            _ => self.pending -= 1,
        }
        let (count, first) = match self.phase {
            Phase::Connect => (&mut self.connect_failures, &mut self.first_connect_error),
            _ => (&mut self.streams_closed, &mut self.first_close_reason),
        };
        *count += 1;
        first.get_or_insert(reason);
    }

    // ------------------------------------------------------- publishing

    /// Publishes every event and waits for the deliveries; returns the time
    /// from the first publish to the last answer.
    fn publish_phase(&mut self) -> io::Result<Duration> {
        (self.phase, self.tally.accept) = (Phase::Publish, true);
        let timeout = ns(self.opts.timeout);
        self.connect_publisher();
        // The schedule starts once the connection is up, so that a slow
        // connect does not turn into a burst of overdue publishes.
        let connect_limit = now_ns() + timeout;
        while !self.publisher.connected && self.abort.is_none() {
            if now_ns() >= connect_limit {
                self.abort = Some("publisher: not connected within --timeout".into());
            }
            self.turn(connect_limit)?;
        }
        let start = now_ns();
        if self.opts.rate > 0.0 {
            self.tally.schedule = Some(Schedule {
                start,
                rate: self.opts.rate,
            });
        }
        let limit = start + ns(self.opts.max_time);
        loop {
            let now = now_ns();
            self.advance(now);
            let p = &self.publisher;
            if self.abort.is_some()
                || (self.published == self.opts.events && p.in_flight.is_empty())
            {
                break;
            }
            if now >= limit {
                self.abort = Some("publish phase reached --max-time".into());
                break;
            }
            if !p.in_flight.is_empty() && now >= p.progress_ns + timeout {
                self.abort = Some("server answered no publish within --timeout".into());
                break;
            }
            self.try_publish(start);
            let wake = self.next_wake(start, limit);
            self.turn(wake)?;
        }
        let first = if self.published > 0 {
            self.first_sent_ns
        } else {
            start
        };
        let publish_time = Duration::from_nanos(now_ns() - first);
        let drain_end = now_ns() + ns(self.opts.drain_timeout);
        loop {
            let now = now_ns();
            self.advance(now);
            if self.complete_base == self.published || now >= drain_end {
                break;
            }
            self.turn(drain_end)?;
        }
        self.tally.accept = false;
        Ok(publish_time)
    }

    /// Moves the window and completion marks past finished events.
    fn advance(&mut self, now: u64) {
        let live = self.live as u32;
        let timeout = ns(self.opts.timeout);
        let done = |e: u64, timed: bool| {
            let sent = self.sent_ns[e as usize];
            sent == FAILED
                || self.tally.delivered[e as usize] >= live
                || (timed && now >= sent + timeout)
        };
        let (mut window, mut complete) = (self.window_base, self.complete_base);
        while window < self.published && done(window, true) {
            window += 1;
        }
        while complete < self.published && done(complete, false) {
            complete += 1;
        }
        (self.window_base, self.complete_base) = (window, complete);
    }

    /// Whether another publish may be written now, by every rule but the rate.
    fn may_publish(&self) -> bool {
        let p = &self.publisher;
        let (closed_loop, window) = (self.opts.rate == 0.0, self.opts.window);
        let outstanding = self.published - self.window_base;
        self.published < self.opts.events
            && p.connected
            && p.tx.len() - p.tx_off < MAX_TX_BACKLOG
            && p.in_flight.len() < self.opts.pipeline
            // Closed loop, a publish answered late still counts against the
            // window, so the requests queued in the server stay bounded too.
            && !(closed_loop && (outstanding >= window || p.in_flight.len() >= window as usize))
    }

    /// When the publish loop must look again if no socket wakes it first.
    fn next_wake(&self, start: u64, limit: u64) -> u64 {
        let timeout = ns(self.opts.timeout);
        let p = &self.publisher;
        let mut wake = limit;
        if !p.in_flight.is_empty() {
            wake = wake.min(p.progress_ns + timeout);
        }
        if self.opts.rate > 0.0 && self.may_publish() {
            wake = wake.min(self.due(start, self.published));
        } else if self.opts.rate == 0.0 && self.window_base < self.published {
            wake = wake.min(self.sent_ns[self.window_base as usize].saturating_add(timeout));
        }
        wake
    }

    fn due(&self, start: u64, seq: u64) -> u64 {
        let rate = self.opts.rate;
        Schedule { start, rate }.due(seq)
    }

    fn connect_publisher(&mut self) {
        let p = &mut self.publisher;
        (p.connected, p.response, p.tx_off) = (false, None, 0);
        p.rx.clear();
        p.tx.clear();
        let stream = TcpStream::connect(self.opts.addr).and_then(|mut s| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll.registry().register(&mut s, PUBLISHER, interest)?;
            Ok(s)
        });
        match stream {
            Ok(s) => p.stream = Some(s),
            Err(e) => self.abort = Some(format!("publisher: connect: {e}")),
        }
    }

    /// At a rate, while publishing: sends what is due (`turn` calls it
    /// between subscribers).
    fn publish_if_due(&mut self) {
        if let (Phase::Publish, Some(schedule)) = (&self.phase, self.tally.schedule) {
            self.try_publish(schedule.start);
        }
    }

    /// Writes every publish that is due and allowed now.
    fn try_publish(&mut self, start: u64) {
        while self.may_publish()
            && (self.opts.rate == 0.0 || now_ns() >= self.due(start, self.published))
        {
            let seq = self.published;
            let due = if self.opts.rate > 0.0 {
                self.due(start, seq)
            } else {
                u64::MAX
            };
            let p = &mut self.publisher;
            if p.tx_off == p.tx.len() {
                p.tx_off = 0;
                p.tx.clear();
            }
            let t = now_ns();
            p.body.clear();
            write!(p.body, "{seq} {t}").expect("Vec");
            if self.opts.size > 0 {
                p.body.push(b' ');
                p.body.resize(p.body.len() + self.opts.size, b'x');
            }
            p.tx.extend_from_slice(&self.publish_prefix);
            write!(p.tx, "{}\r\n\r\n", p.body.len()).expect("Vec");
            p.tx.extend_from_slice(&p.body);
            if p.in_flight.is_empty() {
                p.progress_ns = t;
            }
            p.in_flight.push_back(seq);
            self.sent_ns[seq as usize] = t;
            if seq == 0 {
                self.first_sent_ns = t;
            }
            self.max_lag_ns = self.max_lag_ns.max(t.saturating_sub(due));
            self.published += 1;
            self.publisher_flush();
        }
    }

    fn publisher_flush(&mut self) {
        let p = &mut self.publisher;
        let Some(stream) = p.stream.as_mut() else {
            return;
        };
        while p.tx_off < p.tx.len() {
            match stream.write(&p.tx[p.tx_off..]) {
                Ok(n) => p.tx_off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: writable readiness resumes; other errors: the
                // read side sees the connection end and accounts for it.
                Err(_) => return,
            }
        }
    }

    fn publisher_ready(&mut self) {
        let p = &mut self.publisher;
        let Some(stream) = p.stream.as_mut() else {
            return;
        };
        if !p.connected {
            match connect_done(stream) {
                Ok(true) => p.connected = true,
                Ok(false) => return,
                Err(e) => return self.abort = Some(format!("publisher: connect: {e}")),
            }
            // Each request is one write, but Nagle could still hold one back
            // behind an unacknowledged predecessor.
            let _ = stream.set_nodelay(true);
        }
        self.publisher_flush();
        loop {
            let Some(stream) = self.publisher.stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => return self.publisher_closed("connection closed"),
                Ok(n) => {
                    self.publisher.rx.extend_from_slice(&self.buf[..n]);
                    if let Err(e) = self.read_responses() {
                        return self.publisher_closed(&e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.publisher_closed(&e.to_string()),
            }
        }
    }

    /// Consumes every complete response in the publisher's receive buffer.
    fn read_responses(&mut self) -> Result<(), String> {
        // Consumed bytes are dropped once at the end: answers to pipelined
        // publishes arrive many to a read.
        let mut at = 0;
        let result = loop {
            let p = &mut self.publisher;
            let rx = &p.rx[at..];
            let Some(head) = p.response.as_mut() else {
                let Some(len) = head_len(rx) else {
                    let too_large = rx.len() > MAX_HEAD;
                    break if too_large {
                        Err("response head too large".into())
                    } else {
                        Ok(())
                    };
                };
                let head = parse_head(&rx[..len])?;
                at += len;
                // 1xx: an interim answer, the real one follows.
                if head.status >= 200 {
                    p.error_body.clear();
                    p.response = Some(head);
                }
                continue;
            };
            let (keep, error_body) = (!(200..300).contains(&head.status), &mut p.error_body);
            let (used, done) = head.body.feed(rx, &mut |b| {
                if keep && error_body.len() < 200 {
                    error_body.extend_from_slice(&b[..b.len().min(200)]);
                }
            })?;
            at += used;
            if !done {
                break Ok(());
            }
            let (status, close) = (head.status, head.close);
            p.response = None;
            self.answered(status);
            // Publishing on would only write into a closing socket.
            if close {
                break Err("server closed the connection".into());
            }
        };
        self.publisher.rx.drain(..at);
        result
    }

    /// The oldest publish in flight got `status` (0: no answer).
    fn answered(&mut self, status: u16) {
        let p = &mut self.publisher;
        let Some(seq) = p.in_flight.pop_front() else {
            return;
        };
        p.progress_ns = now_ns();
        if !(200..300).contains(&status) {
            self.sent_ns[seq as usize] = FAILED;
            self.publish_errors += 1;
            let body = String::from_utf8_lossy(&p.error_body);
            let error = format!("status {status}: {}", body.trim());
            self.first_publish_error.get_or_insert(error);
        }
    }

    /// The publishing connection ended: a close-delimited answer is now
    /// complete, any other publish in flight failed; publishing reconnects.
    fn publisher_closed(&mut self, reason: &str) {
        if let Some(mut s) = self.publisher.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if let Some(Head {
            status,
            body: Body::Close,
            ..
        }) = self.publisher.response.take()
        {
            self.answered(status);
        }
        self.publisher.error_body = format!("({reason})").into_bytes();
        while !self.publisher.in_flight.is_empty() {
            self.answered(0);
        }
        self.publisher.reconnects += 1;
        if self.published < self.opts.events && self.abort.is_none() {
            if self.publisher.reconnects > 100 {
                self.abort = Some(format!("publisher: {reason}, 100 times"));
            } else {
                self.connect_publisher();
            }
        }
    }

    // ------------------------------------------------------------- idle

    /// Holds the streams open for `hold`; returns the longest silence any
    /// stream had and how many streams got at least one comment.
    fn idle_phase(&mut self, hold: Duration) -> io::Result<(Duration, usize)> {
        self.phase = Phase::Idle;
        let start = now_ns();
        for sub in &mut self.subs {
            (sub.last_rx_ns, sub.max_gap_ns, sub.comments) = (start, 0, 0);
        }
        (self.tally.comments, self.tally.other) = (0, 0);
        let end = start + ns(hold);
        while now_ns() < end {
            self.turn(end)?;
        }
        let open = self
            .subs
            .iter()
            .filter(|s| matches!(s.state, SubState::Streaming));
        let gap = open
            .clone()
            .map(|s| s.max_gap_ns.max(end.saturating_sub(s.last_rx_ns)))
            .max();
        let with_comment = open.filter(|s| s.comments > 0).count();
        Ok((Duration::from_nanos(gap.unwrap_or(0)), with_comment))
    }
}

// ------------------------------------------------------------------- report

/// One reported value.
enum Val {
    Int(u64),
    /// A number and the decimals to print.
    Num(f64, usize),
    /// Nanoseconds: text picks the unit; JSON gives microseconds, key + `_us`.
    Time(u64),
    /// KiB: text gives MiB; JSON gives KiB, key + `_kib`.
    Kib(u64),
    Text(String),
    /// Not measured: left out of the text, `null` in JSON.
    Null,
}

/// The report: sections of named values, printed as text or as one JSON
/// object of objects with the same names.
#[derive(Default)]
struct Report(Vec<(&'static str, Section)>);

#[derive(Default)]
struct Section(Vec<(&'static str, Val)>);

impl Section {
    fn put(&mut self, key: &'static str, val: Val) -> &mut Self {
        self.0.push((key, val));
        self
    }
}

impl Report {
    fn section(&mut self, name: &'static str) -> &mut Section {
        self.0.push((name, Section::default()));
        &mut self.0.last_mut().expect("pushed").1
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for (section, fields) in &self.0 {
            let mut line = format!("{:<12}", format!("{section}:"));
            for (key, val) in &fields.0 {
                // `_` reads as a space, or as a point between digits (p99_9).
                let b = key.as_bytes();
                let key: String = (0..b.len())
                    .map(|i| match b[i] {
                        b'_' if b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit() => '.',
                        b'_' => ' ',
                        c => c as char,
                    })
                    .collect();
                let val = match val {
                    Val::Int(v) => v.to_string(),
                    Val::Num(v, prec) => format!("{v:.prec$}"),
                    Val::Time(v) => fmt_ns(*v),
                    Val::Kib(v) => format!("{:.1} MiB", *v as f64 / 1024.0),
                    Val::Text(s) => s.clone(),
                    Val::Null => continue,
                };
                let sep = if line.ends_with(' ') { "" } else { ", " };
                let _ = write!(line, "{sep}{key} {val}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn json(&self) -> String {
        let mut out = String::new();
        for (section, fields) in &self.0 {
            let _ = write!(out, ",\"{section}\":{{");
            let mut sep = "";
            for (key, val) in &fields.0 {
                let _ = match val {
                    Val::Int(v) => write!(out, "{sep}\"{key}\":{v}"),
                    Val::Num(v, prec) if v.is_finite() => write!(out, "{sep}\"{key}\":{v:.prec$}"),
                    Val::Time(v) => write!(out, "{sep}\"{key}_us\":{:.3}", *v as f64 / 1e3),
                    Val::Kib(v) => write!(out, "{sep}\"{key}_kib\":{v}"),
                    Val::Text(s) => write!(out, "{sep}\"{key}\":\"{}\"", json_escape(s)),
                    Val::Num(..) | Val::Null => write!(out, "{sep}\"{key}\":null"),
                };
                sep = ",";
            }
            out.push('}');
        }
        format!("{{{}}}", out.strip_prefix(',').unwrap_or(&out))
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => out.extend(['\\', c]),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("String"),
            c => out.push(c),
        }
    }
    out
}

fn fmt_ns(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} ns"),
        1_000..10_000 => format!("{:.2} µs", n as f64 / 1e3),
        10_000..1_000_000 => format!("{:.1} µs", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", n as f64 / 1e6),
        _ => format!("{:.2} s", n as f64 / 1e9),
    }
}

fn text(s: &Option<String>) -> Val {
    s.clone().map_or(Val::Null, Val::Text)
}

// --------------------------------------------------------------------- main

/// Runs the phases and reports; `Err` for a run that could not start, and
/// the flag says whether the run failed (streams, publishing or deliveries
/// did).
fn run(opts: Options) -> io::Result<(Report, bool)> {
    use Val::{Int, Kib, Null, Num, Text, Time};
    let limit = raise_nofile_limit();
    let need = opts.subscribers as u64 + 16;
    if limit < need {
        let n = opts.subscribers;
        let msg = format!("--subscribers {n}: needs {need} open files, the limit is {limit}");
        return Err(io::Error::other(msg));
    }
    let pid = opts.pid.map(|p| p.to_string());
    let server = || pid.as_deref().and_then(sample_proc);
    if let (Some(p), None) = (&pid, server()) {
        return Err(io::Error::other(format!(
            "--pid {p}: cannot read /proc/{p}"
        )));
    }
    let client = || sample_proc("self");
    let mut bench = Bench::new(opts.clone())?;
    let server_before = server();
    let connect_time = bench.connect_phase()?;
    let streams = bench.live;
    let (server_connected, client_connected, run_start) = (server(), client(), now_ns());
    let steal_before = steal_s();

    let mut r = Report::default();
    let s = r.section("run");
    s.put("addr", Text(opts.host.clone()));
    s.put("topic", Text(opts.topic.clone()));
    s.put("subscribers", Int(opts.subscribers as u64));
    if let Some(hold) = opts.idle {
        s.put("idle", Time(ns(hold)));
    } else if opts.rate > 0.0 {
        s.put("events", Int(opts.events))
            .put("rate", Num(opts.rate, 0));
    } else {
        s.put("events", Int(opts.events))
            .put("window", Int(opts.window));
    }
    if opts.size > 0 {
        s.put("size", Int(opts.size as u64));
    }
    r.section("connect")
        .put("streams", Int(streams as u64))
        .put("failed", Int(bench.connect_failures as u64))
        .put("time", Time(ns(connect_time)))
        .put("first_error", text(&bench.first_connect_error));

    let mut deliveries = 0;
    let mut failed = bench.connect_failures > 0 || streams == 0;
    if streams == 0 {
        // Nothing to measure: the connect section says why.
    } else if let Some(hold) = opts.idle {
        let (gap, with_comment) = bench.idle_phase(hold)?;
        r.section("idle")
            .put("comments", Int(bench.tally.comments))
            .put("streams_with_comment", Int(with_comment as u64))
            .put("longest_silence", Time(ns(gap)))
            .put("events", Int(bench.tally.other));
    } else {
        let publish_time = bench.publish_phase()?;
        let t = &bench.tally;
        let ok = bench.published - bench.publish_errors;
        let expected = ok * streams as u64;
        deliveries = t.received - t.duplicate;
        let per_second = bench.published as f64 / publish_time.as_secs_f64();
        r.section("publish")
            .put("events", Int(bench.published))
            .put("time", Time(ns(publish_time)))
            .put("per_second", Num(per_second, 0))
            .put(
                "max_lag",
                if opts.rate > 0.0 {
                    Time(bench.max_lag_ns)
                } else {
                    Null
                },
            )
            .put("errors", Int(bench.publish_errors))
            .put("first_error", text(&bench.first_publish_error))
            .put("aborted", text(&bench.abort));
        failed |= bench.abort.is_some();
        let incomplete = bench.subs.iter().filter(|s| s.seqs.unique < ok).count();
        // A figure from a run that lost or garbled deliveries is no figure.
        failed |= deliveries < expected || t.duplicate > 0 || t.out_of_order > 0;
        // From the first publish to the last delivery (0 when none came).
        let span = t.last_delivery_ns.saturating_sub(bench.first_sent_ns);
        r.section("deliveries")
            .put("expected", Int(expected))
            .put("received", Int(t.received))
            .put("missing", Int(expected.saturating_sub(deliveries)))
            .put("duplicate", Int(t.duplicate))
            .put("out_of_order", Int(t.out_of_order))
            .put("streams_incomplete", Int(incomplete as u64))
            .put(
                "per_second",
                Num(deliveries as f64 * 1e9 / span.max(1) as f64, 0),
            )
            .put("over", Time(span));
        let h = &t.latency;
        let s = r.section("latency");
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
            s.put(name, Time(h.quantile(q)));
        }
        s.put("max", Time(h.max))
            .put("min", Time(h.min.min(h.max)))
            .put("mean", Time(h.mean()));
        if t.schedule.is_some() {
            let h = &t.from_schedule;
            let s = r.section("scheduled");
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
                s.put(name, Time(h.quantile(q)));
            }
            s.put("max", Time(h.max));
        }
    }
    if bench.streams_closed > 0 || bench.tally.other > 0 {
        r.section("streams")
            .put("closed_early", Int(bench.streams_closed as u64))
            .put("first_reason", text(&bench.first_close_reason))
            .put("other_events", Int(bench.tally.other));
    }
    let run_ns = now_ns() - run_start;
    if let (Some(a), Some(b), Some(c)) = (server_before, server_connected, server()) {
        let growth = (b.rss_kib as f64 - a.rss_kib as f64) * 1024.0 / streams.max(1) as f64;
        let (connecting, running) = (b.cpu_s - a.cpu_s, c.cpu_s - b.cpu_s);
        let per_delivery = running * 1e9 / deliveries as f64;
        r.section("server")
            .put("pid", Int(u64::from(opts.pid.unwrap_or(0))))
            .put("rss_before", Kib(a.rss_kib))
            .put("rss_connected", Kib(b.rss_kib))
            .put("rss_after", Kib(c.rss_kib))
            .put("rss_bytes_per_stream", Num(growth, 0))
            .put("cpu_connecting", Time((connecting * 1e9).round() as u64))
            .put("cpu_run", Time((running * 1e9).round() as u64))
            .put(
                "cpu_per_delivery",
                if deliveries > 0 {
                    Time(per_delivery.round() as u64)
                } else {
                    Null
                },
            );
    }
    if let (Some(b), Some(c)) = (client_connected, client()) {
        let busy = (c.cpu_s - b.cpu_s) * 1e11 / run_ns.max(1) as f64;
        r.section("client")
            .put("cpu_run", Time(((c.cpu_s - b.cpu_s) * 1e9).round() as u64))
            .put("core_busy_percent", Num(busy, 0));
    }
    if let (Some(a), Some(b)) = (steal_before, steal_s()) {
        let stolen = ((b - a) * 1e9).round() as u64;
        r.section("machine").put("steal", Time(stolen));
    }
    Ok((r, failed))
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sseloop-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let json = opts.json;
    match run(opts) {
        Ok((report, failed)) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::from(u8::from(failed))
        }
        Err(e) => {
            eprintln!("sseloop-bench: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut p = SseParser::new();
        let mut items = Vec::new();
        for c in chunks {
            p.feed(c, &mut |i| items.push(i));
        }
        items
    }

    #[test]
    fn sse_lines_end_in_cr_lf_or_crlf_even_across_reads() {
        let stamped = SseItem::Stamped {
            seq: 7,
            sent_ns: 99,
        };
        assert_eq!(parse_all(&[b"id: 1\ndata: 7 99\n\n"]), [stamped]);
        assert_eq!(parse_all(&[b"data: 7 99\r\n\r\n"]), [stamped]);
        assert_eq!(parse_all(&[b"data: 7 99\r\r"]), [stamped]);
        // A CRLF split between reads is one line end, not two.
        assert_eq!(parse_all(&[b"data: 7 99\r", b"\n\r", b"\n"]), [stamped]);
        assert_eq!(
            parse_all(&[b"da", b"ta:7 9", b"9 xxxxxxxx\n", b"\n"]),
            [stamped]
        );
    }

    #[test]
    fn sse_comments_other_data_and_long_lines() {
        let chunks: [&[u8]; 3] = [
            b": heartbeat\n\n",
            b"event: x\ndata: hi\ndata: 1 2\n\n",
            b"id: 3\n\n",
        ];
        assert_eq!(parse_all(&chunks), [SseItem::Comment, SseItem::Other]);
        let long = format!("data: 5 6 {}\n\n", "x".repeat(1000));
        let b = long.as_bytes();
        assert_eq!(
            parse_all(&[&b[..30], &b[30..500], &b[500..]]),
            [SseItem::Stamped { seq: 5, sent_ns: 6 }]
        );
        assert_eq!(parse_all(&[b"data\n\ndatum: 1 2\n\n"]), [SseItem::Other]);
    }

    #[test]
    fn chunked_bodies_decode_whole_or_byte_by_byte() {
        let wire = b"7\r\ndata: 1\r\n4;ext=1\r\n 2\n\n\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut whole = Vec::new();
        let mut body = Body::Chunked(Chunk::Size, 0);
        let (used, done) = body
            .feed(wire, &mut |b| whole.extend_from_slice(b))
            .unwrap();
        assert!(done);
        assert_eq!(
            (&wire[used..], &whole[..]),
            (&b"NEXT"[..], &b"data: 1 2\n\n"[..])
        );
        let mut bytewise = Vec::new();
        let mut body = Body::Chunked(Chunk::Size, 0);
        for b in &wire[..used] {
            body.feed(std::slice::from_ref(b), &mut |b| {
                bytewise.extend_from_slice(b)
            })
            .unwrap();
        }
        assert_eq!(bytewise, whole);
        assert!(
            Body::Chunked(Chunk::Size, 0)
                .feed(b"zz\r\n", &mut |_| {})
                .is_err()
        );
    }

    #[test]
    fn seq_tracker_tells_duplicates_from_late_arrivals() {
        let mut t = SeqTracker::default();
        let arrivals = [0, 2, 1, 1, 2, 500].map(|s| t.arrive(s));
        use Arrival::*;
        assert_eq!(
            arrivals,
            [InOrder, InOrder, Late, Duplicate, Duplicate, InOrder]
        );
        assert_eq!(t.unique, 4);
    }

    #[test]
    fn histogram_is_within_one_percent() {
        let mut h = Histogram::default();
        (1..=100_000u64).for_each(|v| h.record(v * 1000));
        for (q, want) in [(0.5, 50e6), (0.99, 99e6), (0.999, 99.9e6)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q {q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        for v in [0, 1, 255, 256, 257, 1 << 20, 123_456_789, u64::MAX] {
            let mid = Histogram::value(Histogram::index(v)) as f64;
            assert!((mid - v as f64).abs() <= v as f64 * 0.004, "{v}: {mid}");
        }
    }

    #[test]
    fn options_parse_and_errors_name_the_option() {
        let args = |s: &str| {
            s.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
        };
        let o = parse_args(args("--rate=0 --window 8 --idle 2m --size 1KiB --json"))
            .unwrap()
            .unwrap();
        assert_eq!((o.rate, o.window, o.size, o.json), (0.0, 8, 1024, true));
        assert_eq!(o.idle, Some(Duration::from_secs(120)));
        for bad in [
            "--rate x",
            "--subscribers 0",
            "--drain-timeout 5h",
            "--bogus 1",
            "--events",
            "--json=1",
        ] {
            let err = parse_args(args(bad)).expect_err(bad);
            assert!(
                err.starts_with(bad.split([' ', '=']).next().unwrap()),
                "{err}"
            );
        }
    }

    #[test]
    fn response_heads() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = parse_head(head).unwrap();
        assert!(h.status == 200 && h.event_stream && !h.close);
        assert!(matches!(h.body, Body::Chunked(..)));
        let head = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\r\n";
        assert!(matches!(parse_head(head).unwrap().body, Body::Close));
        let head = b"HTTP/1.1 413 Too Large\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
        let h = parse_head(head).unwrap();
        assert!(h.status == 413 && !h.event_stream && h.close);
        assert!(matches!(h.body, Body::Length(5)));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
