//! The `attendance-sync` binary: parses the command line, runs the library crates, prints, and
//! turns outcomes into exit codes ([`exit::ExitStatus`]).

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, EventsCommand, ExternalCommand, RejectsCommand};
use crate::exit::ExitStatus;

#[cfg(not(windows))]
mod allocator;
mod cli;
mod commands;
mod events;
mod exit;
mod external;
mod progress;
mod rejects;
mod summary;

fn main() -> ExitCode {
    let (args, job_file) = match cli::expand_job_file(std::env::args_os().collect()) {
        Ok(expanded) => expanded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Usage.into();
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return commands::usage_error(e, job_file.as_ref()).into(),
    };
    commands::init_logging(&cli.log, cli.log_format);
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Backfill(args) => commands::backfill(args, quiet),
        Command::Sync(args) => commands::sync(args, quiet),
        Command::Plan(args) => commands::plan(args),
        Command::Replay(args) => commands::replay(args),
        Command::Upgrade(args) => commands::upgrade(args),
        Command::Events(EventsCommand::Serve(args)) => events::serve(args),
        Command::Events(EventsCommand::Connect(args)) => events::connect(args),
        Command::Events(EventsCommand::Compact(args)) => events::compact(args),
        Command::External(ExternalCommand::Push(args)) => external::push(args),
        Command::External(ExternalCommand::Check(args)) => external::check(args),
        Command::External(ExternalCommand::Pull(args)) => external::pull(args),
        Command::External(ExternalCommand::Load(args)) => external::load(args),
        Command::Rejects(RejectsCommand::List(args)) => rejects::rejects_list(args),
        Command::Rejects(RejectsCommand::Replay(args)) => rejects::rejects_replay(args),
        #[cfg(feature = "sim")]
        Command::Demo(args) => commands::demo(args),
        #[cfg(feature = "sim")]
        Command::Simulate(args) => commands::simulate(args),
    };
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitStatus::of_error(&e).into()
        }
    }
}
