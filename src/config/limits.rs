//! The bounds of the numeric settings: checked by [`Config::validate`], so
//! that a library user is held to what the `sseloop` binary's options are.

use std::time::Duration;

use super::{Config, ConfigError};

/// Most poll loops: far more than cores anyone runs sseloop on, few enough
/// that a typo cannot start thousands of threads.
pub const MAX_LOOPS: usize = 256;
/// Longest `busy_poll` window.
pub const MAX_BUSY_POLL: Duration = Duration::from_secs(1);
/// Longest `retry`: a reconnect delay beyond it is almost always
/// milliseconds written as seconds.
pub const MAX_RETRY: Duration = Duration::from_secs(10 * 60);

/// The first numeric setting of `config` out of its bounds.
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    let zero = [
        ("max_connections", config.max_connections == 0),
        ("queue_limit", config.queue_limit == 0),
        ("max_event_size", config.max_event_size == 0),
        ("max_topics", config.max_topics == 0),
        ("header_timeout", config.header_timeout.is_zero()),
    ];
    if let Some(&(name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
        return Err(ConfigError::Setting(name, "must be more than 0"));
    }
    if config.loops > MAX_LOOPS {
        return Err(ConfigError::Setting("loops", "must be at most 256"));
    }
    if config.busy_poll > MAX_BUSY_POLL {
        return Err(ConfigError::Setting("busy_poll", "must be at most 1s"));
    }
    if config.retry.is_some_and(|r| r > MAX_RETRY) {
        return Err(ConfigError::Setting("retry", "must be at most 10m"));
    }
    Ok(())
}
