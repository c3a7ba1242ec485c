//! The `sseloop` binary: the command line becomes a `Config`, and the
//! library does the rest. `cli` parses the options; `feeds` runs `--stdin`
//! and `--demo` beside the loop; `logging` stamps simple_logger's lines
//! with their time.

mod cli;
mod feeds;
mod logging;

use std::process::ExitCode;

use sseloop::Server;

use crate::cli::CliError;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("lab") {
        return match cli::parse_lab(std::env::args().skip(2)) {
            Ok(command) => lab(command),
            Err(CliError::Usage(line)) => {
                eprintln!("{line}");
                ExitCode::from(2)
            }
            Err(other) => {
                println!("{other}");
                ExitCode::SUCCESS
            }
        };
    }
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
    logging::init(
        simple_logger::SimpleLogger::new()
            .with_level(options.log_level)
            // The poll library's own trace lines would drown the wire bytes.
            .with_module_level("mio", log::LevelFilter::Info)
            .env(),
    );
    let listen = options.config.listen;
    let lab = options.config.lab;
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
    if lab {
        log::info!(
            "lab: the failure lab is at http://{}/lab",
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

/// `sseloop lab LESSON`: runs the lesson with its cause and with its fix
/// on the server named, or on one of its own, printing each event's delay
/// as it arrives and a summary at the end.
fn lab(command: cli::LabCommand) -> ExitCode {
    use sseloop::lab;
    logging::init(
        simple_logger::SimpleLogger::new()
            .with_level(log::LevelFilter::Warn)
            .env(),
    );
    let mut own = None;
    let addr = match command.addr {
        Some(addr) => addr,
        None => {
            let config = sseloop::Config {
                listen: "127.0.0.1:0".parse().expect("an address"),
                lab: true,
                ..sseloop::Config::default()
            };
            let server = match Server::bind(config) {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("sseloop lab: cannot start a server: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let addr = server.local_addr();
            let publisher = server.publisher();
            let serving = match feeds::spawn("sseloop", Box::new(move || drop(server.run()))) {
                Ok(serving) => serving,
                Err(e) => {
                    eprintln!("sseloop lab: cannot start a server: {e}");
                    return ExitCode::FAILURE;
                }
            };
            own = Some((serving, publisher));
            println!("a server of its own on {addr}");
            addr
        }
    };
    if let Err(e) = lab::print_runs(addr, &command.options, &command.runs) {
        eprintln!("sseloop lab: {e}");
        return ExitCode::FAILURE;
    }
    if let Some((serving, publisher)) = own {
        publisher.shutdown();
        let _ = serving.join();
    }
    ExitCode::SUCCESS
}
