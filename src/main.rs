//! The `attendance-sync` binary: parses the command line, runs the library, maps results to exit codes.

use std::process::ExitCode;

use attendance_sync::cli::{self, Cli, Command};
use clap::Parser;

mod commands;
mod progress;

fn main() -> ExitCode {
    let (args, job_file) = match cli::expand_job_file(std::env::args_os().collect()) {
        Ok(expanded) => expanded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(commands::EXIT_USAGE);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return commands::usage_error(e, job_file.as_ref()),
    };
    commands::init_logging(&cli.log, cli.log_format);
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Backfill(args) => commands::backfill(args, quiet),
        Command::Sync(args) => commands::sync(args, quiet),
        Command::Plan(args) => commands::plan(args),
        Command::Replay(args) => commands::replay(args),
        Command::Demo(args) => commands::demo(args),
        Command::Simulate(args) => commands::simulate(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(commands::exit_code_of(&e))
        }
    }
}
