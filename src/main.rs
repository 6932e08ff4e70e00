//! The `attendance-sync` binary: parses the command line, runs the library, maps results to exit codes.

use std::process::ExitCode;

use attendance_sync::cli::{Cli, Command};
use clap::Parser;

mod commands;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return commands::usage_error(e),
    };
    commands::init_logging(&cli.log);
    let result = match cli.command {
        Command::Backfill(args) => commands::backfill(args),
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
