//! The `attendance-sync` binary: parses the command line, runs the library, maps results to exit codes.

use std::process::ExitCode;

use attendance_sync::cli::{self, Cli, Command};
use clap::Parser;

mod commands;
mod progress;

/// glibc gives every thread that allocates its own heap arena and hands little back: with the
/// runtime's workers passing window-sized Arrow buffers between them, peak RSS grew with the
/// length of a backfill (365 days 380 MB, 730 days 508 MB for 20,000 users). Two arenas keep it
/// flat (180 MB, 187 MB; BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only tunes the allocator, called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
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
