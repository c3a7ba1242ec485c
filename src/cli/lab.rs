//! `sseloop lab LESSON`: the failure lab's terminal command line.

use super::CliError;
use super::USAGE;
use super::values::{parsed, size, usage};
use sseloop::lab::{MAX_COUNT, MAX_SIZE};

/// What `sseloop lab LESSON` asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct LabCommand {
    /// The server to run it on; `None`: one of its own.
    pub addr: Option<std::net::SocketAddr>,
    /// The lesson and its pace (`fix` is set per run).
    pub options: sseloop::lab::Options,
    /// Run with the cause, with the fix, or both (in that order).
    pub runs: Vec<bool>,
}

/// Parses the arguments after `lab`.
pub fn parse_lab<I, S>(args: I) -> Result<LabCommand, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let lessons = || {
        let names: Vec<&str> = sseloop::lab::Lesson::ALL.iter().map(|l| l.name()).collect();
        names.join(", ")
    };
    let lesson = match args.next() {
        Some(help) if help == "--help" || help == "-h" => {
            return Err(CliError::Help(USAGE.to_owned()));
        }
        Some(name) => sseloop::lab::Lesson::parse(&name).ok_or_else(|| {
            CliError::Usage(format!(
                "sseloop lab: no lesson {name:?}; the lessons: {}",
                lessons()
            ))
        })?,
        None => {
            return Err(CliError::Usage(format!(
                "sseloop lab: name a lesson: {}",
                lessons()
            )));
        }
    };
    let mut command = LabCommand {
        addr: None,
        options: sseloop::lab::Options {
            lesson,
            fix: false,
            rate: None,
            size: None,
            count: None,
        },
        runs: vec![false, true],
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(&name, "needs a value"))
        };
        match name.as_str() {
            "--addr" => {
                command.addr = Some(parsed(&name, &value()?, "an address like 127.0.0.1:8080")?)
            }
            "--rate" => {
                let rate = sseloop::lab::parse_rate(&value()?);
                let rate =
                    rate.ok_or_else(|| usage(&name, "takes events per second, 0.1 to 50"))?;
                command.options.rate = Some(rate);
            }
            "--size" => {
                let bytes = size(&name, &value()?)?;
                if bytes > MAX_SIZE {
                    return Err(usage(&name, "takes at most 16KiB"));
                }
                command.options.size = Some(bytes);
            }
            "--count" => {
                let form = format!("a number of events, 1 to {MAX_COUNT}");
                let count: u32 = parsed(&name, &value()?, &form)?;
                if !(1..=MAX_COUNT).contains(&count) {
                    return Err(usage(&name, &format!("takes {form}")));
                }
                command.options.count = Some(count);
            }
            "--cause" => command.runs = vec![false],
            "--fix" => command.runs = vec![true],
            _ => {
                return Err(CliError::Usage(format!(
                    "sseloop lab: unknown option {arg:?} (see sseloop --help)"
                )));
            }
        }
    }
    Ok(command)
}
