//! Log lines with the time they were written: simple_logger prints each
//! line, and this puts the UTC time in front of it, in simple_logger's own
//! UTC format (`2026-12-06T15:06:21.879Z INFO  [sseloop::reactor] …`).
//! simple_logger's `timestamps` feature does the same through the `time`
//! crate, whose date formatting was 22 KB of a binary meant to stay small.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Log, Metadata, Record};
use simple_logger::SimpleLogger;

/// Installs `logger`, each line stamped with its time.
pub fn init(logger: SimpleLogger) {
    log::set_max_level(logger.max_level());
    // Only fails when a logger is already set, which cannot happen here.
    let _ = log::set_boxed_logger(Box::new(Stamped(Box::new(logger))));
}

/// simple_logger behind a trait object: its code stays its own (compiled
/// for size), not copied into this one's.
struct Stamped(Box<dyn Log>);

impl Log for Stamped {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        // Standard error's lock is reentrant: simple_logger's write of the
        // line takes it again, and no other thread's line comes between
        // the time and its line.
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(stamp(SystemTime::now()).as_bytes());
        self.0.log(record);
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// `at` as `YYYY-MM-DDThh:mm:ss.mmmZ ` (with the space after it).
fn stamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z ",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// The Gregorian date `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stamps_as_simple_logger_does_in_utc() {
        let at =
            |secs, millis| UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
        assert_eq!(stamp(at(0, 0)), "1970-01-01T00:00:00.000Z ");
        // `date -u -d @1796569581`
        assert_eq!(stamp(at(1_796_569_581, 879)), "2026-12-06T15:06:21.879Z ");
        assert_eq!(stamp(at(951_782_400, 1)), "2000-02-29T00:00:00.001Z ");
        assert_eq!(stamp(at(4_107_542_399, 999)), "2100-02-28T23:59:59.999Z ");
        assert_eq!(stamp(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z ");
        assert_eq!(
            stamp(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z "
        );
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let leap =
            |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
        let mut date = (1970, 1, 1);
        for days in 0..200 * 366 {
            assert_eq!(civil_date(days), date, "day {days}");
            let (y, m, d) = date;
            let length = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            date = match (m, d) {
                (12, 31) => (y + 1, 1, 1),
                (_, d) if d == length => (y, m + 1, 1),
                _ => (y, m, d + 1),
            };
        }
    }
}
