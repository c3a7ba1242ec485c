//! What the server counts and how `/metrics` shows it: the counters each
//! loop keeps ([`Counters`], written by that loop alone and read from any
//! thread), the snapshot summed over every loop ([`Stats`]), the
//! write-delay histogram, and the Prometheus text. No I/O, and nothing of
//! the loop: the loop calls in, never the other way.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the write-delay buckets, in seconds.
const DELAY_BOUNDS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
/// The same bounds as `/metrics` writes them (written out here, the
/// binary needs no float formatting code for them).
const DELAY_LABELS: [&str; 10] = [
    "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "10",
];

/// A counter one thread writes and any thread reads. The owner's update is
/// a plain load and store (no locked instruction on the delivery path);
/// readers see a recent value.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`; only the owning thread may call it.
    pub(crate) fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets a gauge; only the owning thread may call it.
    pub(crate) fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The value now.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one loop.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: Counter,
    pub(crate) subscribers: Counter,
    pub(crate) replaying: Counter,
    pub(crate) accepted: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) replayed: Counter,
    pub(crate) bytes_written: Counter,
    pub(crate) heartbeats: Counter,
    pub(crate) slow_disconnects: Counter,
    pub(crate) rejected: Counter,
    delay_counts: [Counter; DELAY_BOUNDS.len() + 1],
    delay_sum_ns: Counter,
}

impl Counters {
    /// Counts one wait of a queue the kernel refused.
    pub(crate) fn observe_write_delay(&self, waited: Duration) {
        let secs = waited.as_secs_f64();
        let bucket = DELAY_BOUNDS.partition_point(|&bound| bound < secs);
        self.delay_counts[bucket].add(1);
        self.delay_sum_ns
            .add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds this loop's counts to `stats`.
    pub(crate) fn add_to(&self, stats: &mut Stats) {
        stats.connections += self.connections.get();
        stats.subscribers += self.subscribers.get();
        stats.replaying += self.replaying.get();
        stats.accepted += self.accepted.get();
        stats.deliveries += self.deliveries.get();
        stats.replayed += self.replayed.get();
        stats.bytes_written += self.bytes_written.get();
        stats.heartbeats += self.heartbeats.get();
        stats.slow_disconnects += self.slow_disconnects.get();
        stats.rejected += self.rejected.get();
        for (sum, count) in stats.write_delay.counts.iter_mut().zip(&self.delay_counts) {
            *sum += count.get();
        }
        stats.write_delay.sum += Duration::from_nanos(self.delay_sum_ns.get());
    }
}

/// A snapshot of what the server did since it started, summed over every
/// loop (see `Publisher::stats`). These are the numbers `/metrics` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections now.
    pub connections: u64,
    /// Open event streams now.
    pub subscribers: u64,
    /// Of those, streams still catching up from the history.
    pub replaying: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Events published.
    pub events_published: u64,
    /// Event frames queued to subscribers (live and replayed).
    pub deliveries: u64,
    /// Events sent from the history to resuming subscribers.
    pub replayed: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Subscribers cut off for passing the queue limit.
    pub slow_disconnects: u64,
    /// Connections refused for capacity or during shutdown.
    pub rejected: u64,
    /// In a cluster: stream entries this node skipped, not being events
    /// it could read (another program's, or over the bound of an entry).
    pub cluster_entries_skipped: u64,
    /// How long queues the kernel refused waited until they were written.
    pub write_delay: WriteDelay,
}

/// Histogram of how long a queue the kernel refused waited until it was all
/// written, or until its connection closed: the time a subscriber's bytes
/// sat in sseloop's own buffer. Bytes the kernel took at once are not timed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteDelay {
    /// Per bucket (not cumulative); the last counts what passed every bound.
    counts: [u64; DELAY_BOUNDS.len() + 1],
    sum: Duration,
}

impl WriteDelay {
    /// Waits counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// All waits added up.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// `(upper bound in seconds, waits up to it)`, cumulative, in rising
    /// order; the last bound is infinite.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = DELAY_BOUNDS.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().scan(0, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }

    fn render(&self, out: &mut String) {
        let name = "sseloop_write_delay_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time bytes the kernel refused waited in a connection's queue until written or the connection closed.\n\
             # TYPE {name} histogram"
        );
        let labels = DELAY_LABELS.iter().chain(&["+Inf"]);
        for (bound, (_, cumulative)) in labels.zip(self.buckets()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        // Seconds, exactly: the nanoseconds' digits, trailing zeros off.
        let nanos = format!("{:09}", self.sum.subsec_nanos());
        let nanos = nanos.trim_end_matches('0');
        let point = if nanos.is_empty() { "" } else { "." };
        let _ = writeln!(out, "{name}_sum {}{point}{nanos}", self.sum.as_secs());
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Renders the counters, gauges and the write-delay histogram of the whole
/// process, then, with several loops, each loop's share.
pub(crate) fn render(stats: &Stats, per_loop: &[Stats]) -> String {
    let rows: [(&str, &str, &str, u64); 12] = [
        (
            "sseloop_connections",
            "gauge",
            "Open connections.",
            stats.connections,
        ),
        (
            "sseloop_subscribers",
            "gauge",
            "Open event streams.",
            stats.subscribers,
        ),
        (
            "sseloop_replaying_subscribers",
            "gauge",
            "Open event streams still catching up from the history.",
            stats.replaying,
        ),
        (
            "sseloop_connections_accepted_total",
            "counter",
            "Connections accepted.",
            stats.accepted,
        ),
        (
            "sseloop_events_published_total",
            "counter",
            "Events published.",
            stats.events_published,
        ),
        (
            "sseloop_deliveries_total",
            "counter",
            "Events queued to subscribers, live and replayed.",
            stats.deliveries,
        ),
        (
            "sseloop_replayed_events_total",
            "counter",
            "Events replayed from the history after Last-Event-ID.",
            stats.replayed,
        ),
        (
            "sseloop_bytes_written_total",
            "counter",
            "Bytes written to sockets.",
            stats.bytes_written,
        ),
        (
            "sseloop_heartbeats_total",
            "counter",
            "Heartbeats sent.",
            stats.heartbeats,
        ),
        (
            "sseloop_slow_subscriber_disconnects_total",
            "counter",
            "Subscribers cut off for passing the queue limit.",
            stats.slow_disconnects,
        ),
        (
            "sseloop_rejected_connections_total",
            "counter",
            "Connections refused for capacity or shutdown.",
            stats.rejected,
        ),
        (
            "sseloop_cluster_entries_skipped_total",
            "counter",
            "Stream entries a cluster node skipped, not being events it could read.",
            stats.cluster_entries_skipped,
        ),
    ];
    let mut out = String::with_capacity(2048);
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    stats.write_delay.render(&mut out);
    if per_loop.len() > 1 {
        render_per_loop(per_loop, &mut out);
    }
    out
}

/// Each loop's connections, subscribers and deliveries, labelled by loop:
/// how evenly the kernel spreads connections and the loops share the work.
fn render_per_loop(per_loop: &[Stats], out: &mut String) {
    type Row = (&'static str, &'static str, &'static str, fn(&Stats) -> u64);
    let rows: [Row; 3] = [
        (
            "sseloop_loop_connections",
            "gauge",
            "Open connections of one loop.",
            |s| s.connections,
        ),
        (
            "sseloop_loop_subscribers",
            "gauge",
            "Open event streams of one loop.",
            |s| s.subscribers,
        ),
        (
            "sseloop_loop_deliveries_total",
            "counter",
            "Events queued to one loop's subscribers.",
            |s| s.deliveries,
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (index, stats) in per_loop.iter().enumerate() {
            let _ = writeln!(out, "{name}{{loop=\"{index}\"}} {}", value(stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_value() {
        let stats = Stats {
            deliveries: 7,
            connections: 3,
            ..Stats::default()
        };
        let text = render(&stats, &[]);
        assert!(
            text.contains("# TYPE sseloop_deliveries_total counter\nsseloop_deliveries_total 7\n")
        );
        assert!(!text.contains("sseloop_loop_"), "one loop: no breakdown");
        assert!(text.contains("\nsseloop_connections 3\n"));
        assert_eq!(
            text.matches("# HELP ").count(),
            text.matches("# TYPE ").count()
        );
    }

    #[test]
    fn write_delay_buckets_are_cumulative() {
        let counters = Counters::default();
        counters.observe_write_delay(Duration::from_micros(200));
        counters.observe_write_delay(Duration::from_millis(3));
        counters.observe_write_delay(Duration::from_secs(60));
        let mut stats = Stats::default();
        counters.add_to(&mut stats);
        let text = render(&stats, &[]);
        assert!(text.contains("# TYPE sseloop_write_delay_seconds histogram\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sseloop_write_delay_seconds_count 3\n"));
        assert!(text.contains("sseloop_write_delay_seconds_sum 60.0032\n"));
        assert_eq!(stats.write_delay.count(), 3);
        for (bound, label) in DELAY_BOUNDS.iter().zip(DELAY_LABELS) {
            assert_eq!(bound.to_string(), label);
        }
        let mut whole = Stats::default();
        whole.write_delay.sum = Duration::from_secs(2);
        assert!(render(&whole, &[]).contains("sseloop_write_delay_seconds_sum 2\n"));
    }

    #[test]
    fn loops_add_up() {
        let (a, b) = (Counters::default(), Counters::default());
        a.deliveries.add(5);
        b.deliveries.add(2);
        a.connections.set(4);
        b.connections.set(1);
        let mut stats = Stats::default();
        a.add_to(&mut stats);
        b.add_to(&mut stats);
        assert_eq!((stats.deliveries, stats.connections), (7, 5));
        let per_loop = [a, b].map(|c| {
            let mut s = Stats::default();
            c.add_to(&mut s);
            s
        });
        let text = render(&stats, &per_loop);
        assert!(
            text.contains("\nsseloop_loop_connections{loop=\"0\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsseloop_loop_deliveries_total{loop=\"1\"} 2\n"),
            "{text}"
        );
    }
}
