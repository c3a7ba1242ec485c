//! The `sseloop` binary: the command line becomes a `Config`, and the
//! library does the rest. `cli` parses the options; `feeds` runs `--stdin`
//! and `--demo` beside the loop.

mod cli;
mod feeds;

use std::process::ExitCode;

use sseloop::Server;

use crate::cli::CliError;

fn main() -> ExitCode {
    let env_token = std::env::var("SSELOOP_PUBLISH_TOKEN").ok();
    let env_jwt_key = std::env::var("SSELOOP_JWT_KEY").ok();
    let options = match cli::parse_with_env(std::env::args().skip(1), env_token, env_jwt_key) {
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
    let listen = options.config.listen;
    let max_line = options.config.max_event_size;
    let server = match Server::bind(options.config) {
        Ok(server) => server,
        Err(e) => {
            log::error!("cannot serve on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.stop_on_signals() {
        log::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(topic) = options.stdin
        && let Err(e) = feeds::spawn_stdin(server.publisher(), topic, max_line)
    {
        log::error!("cannot start reading standard input: {e}");
        return ExitCode::FAILURE;
    }
    if options.demo {
        if let Err(e) = feeds::spawn_demo(server.publisher()) {
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
            log::error!("stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
