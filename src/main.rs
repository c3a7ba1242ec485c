//! The `sseloop` binary: command line → `Config` → `Server::run`.

use std::process::ExitCode;

use sseloop::Server;
use sseloop::cli::{self, CliError};

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
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
        .env()
        .init();
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
