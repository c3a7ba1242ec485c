//! The `sseloop` binary: command line → `Config` → `Server::run`.

use std::process::ExitCode;

use sseloop::Server;
use sseloop::cli::{self, CliError};

fn main() -> ExitCode {
    let env_token = std::env::var("SSELOOP_PUBLISH_TOKEN").ok();
    let options = match cli::parse(std::env::args().skip(1), env_token) {
        Ok(options) => options,
        Err(CliError::Usage(line)) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
        Err(other) => {
            println!("{other}");
            return ExitCode::SUCCESS;
        }
    };
    // Only fails when a logger is already set, which cannot happen here.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(options.log_level)
        // The poll library's own trace lines would drown the wire bytes.
        .with_module_level("mio", log::LevelFilter::Info)
        .env()
        .init();
    let config = &options.config;
    // One descriptor per connection, plus those waiting to be refused and a
    // few for the listener, the poll, the waker and standard streams.
    let wanted = (config.max_connections + sseloop::config::OVERFLOW_CONNECTIONS + 32) as u64;
    match sseloop::fdlimit::raise_open_files(wanted) {
        Ok(files) if files.soft < wanted => log::warn!(
            "open-file limit is {} (hard limit {}): fewer than --max-connections {} can be served",
            files.soft,
            files.hard,
            config.max_connections
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    let server = match Server::bind(options.config.clone()) {
        Ok(server) => server,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", options.config.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = stop_on_signals(server.publisher()) {
        log::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(topic) = options.stdin {
        let max_line = options.config.max_event_size;
        if let Err(e) = sseloop::feeds::spawn_stdin(server.publisher(), topic, max_line) {
            log::error!("cannot start reading standard input: {e}");
            return ExitCode::FAILURE;
        }
    }
    if options.demo {
        if let Err(e) = sseloop::feeds::spawn_demo(server.publisher()) {
            log::error!("cannot start the demo: {e}");
            return ExitCode::FAILURE;
        }
        log::info!(
            "demo: render jobs publish on topic `demo`; open http://{}/?topics=demo&autoconnect=1",
            server.local_addr()
        );
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("poll failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT and SIGTERM ask the loop to shut down gracefully; a second one
/// ends the process at once.
fn stop_on_signals(publisher: sseloop::Publisher) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    std::process::exit(128 + signal);
                }
                publisher.shutdown();
            }
        })?;
    Ok(())
}
