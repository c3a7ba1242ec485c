//! The `/metrics` answer: the server's counters in the Prometheus text
//! exposition format. Pure: it formats what it is given.

use std::fmt::Write as _;

use crate::server::Stats;

/// Renders the counters and gauges.
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
}
