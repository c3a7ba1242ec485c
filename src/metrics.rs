//! The `/metrics` answer: the server's counters in the Prometheus text
//! exposition format, and the one histogram the loop keeps for it. No I/O:
//! it formats what it is given.

use std::fmt::Write as _;
use std::time::Duration;

use crate::server::Stats;

/// Upper bounds of the write-delay buckets, in seconds.
const DELAY_BOUNDS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// Histogram of how long a queue the kernel refused waited until it was all
/// written, or until its connection closed: the time a subscriber's bytes
/// sat in sseloop's own buffer.
#[derive(Clone, Debug, Default)]
pub struct WriteDelay {
    /// Per bucket (not cumulative); the last counts what passed every bound.
    counts: [u64; DELAY_BOUNDS.len() + 1],
    sum: Duration,
}

impl WriteDelay {
    /// Counts one wait.
    pub fn observe(&mut self, waited: Duration) {
        let secs = waited.as_secs_f64();
        let bucket = DELAY_BOUNDS.partition_point(|&bound| bound < secs);
        self.counts[bucket] += 1;
        self.sum += waited;
    }

    fn render(&self, out: &mut String) {
        let name = "sseloop_write_delay_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time bytes the kernel refused waited in a connection's queue until written or the connection closed.\n\
             # TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in DELAY_BOUNDS.iter().zip(self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[DELAY_BOUNDS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum.as_secs_f64());
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Renders the counters, gauges and the write-delay histogram.
pub fn render(stats: &Stats, connections: usize, subscribers: usize) -> String {
    let rows: [(&str, &str, &str, u64); 10] = [
        (
            "sseloop_connections",
            "gauge",
            "Open connections.",
            connections as u64,
        ),
        (
            "sseloop_subscribers",
            "gauge",
            "Open event streams.",
            subscribers as u64,
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
    ];
    let mut out = String::with_capacity(2048);
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    stats.write_delay.render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_value() {
        let stats = Stats {
            deliveries: 7,
            ..Stats::default()
        };
        let text = render(&stats, 3, 2);
        assert!(
            text.contains("# TYPE sseloop_deliveries_total counter\nsseloop_deliveries_total 7\n")
        );
        assert!(text.contains("\nsseloop_connections 3\n"));
        assert_eq!(
            text.matches("# HELP ").count(),
            text.matches("# TYPE ").count()
        );
    }

    #[test]
    fn write_delay_buckets_are_cumulative() {
        let mut stats = Stats::default();
        stats.write_delay.observe(Duration::from_micros(200));
        stats.write_delay.observe(Duration::from_millis(3));
        stats.write_delay.observe(Duration::from_secs(60));
        let text = render(&stats, 0, 0);
        assert!(text.contains("# TYPE sseloop_write_delay_seconds histogram\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("sseloop_write_delay_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sseloop_write_delay_seconds_count 3\n"));
        assert!(text.contains("sseloop_write_delay_seconds_sum 60.0032\n"));
    }
}
