//! The `attendance-sync` binary: parses the command line, runs the library crates, prints, and
//! turns outcomes into exit codes ([`exit::ExitStatus`]).

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, EventsCommand, ExternalCommand, RejectsCommand};
use crate::exit::ExitStatus;

mod cli;
mod commands;
mod events;
mod exit;
mod external;
mod progress;
mod rejects;
mod summary;

/// jemalloc, handing back pages unused for 100 ms (purged as it next allocates: no background
/// thread), with two arenas.
///
/// glibc's malloc kept what the runtime's threads freed in holes of its arenas: a 365-day
/// backfill of 20,000 users peaked ~20 MB above a 1-day one, though its heap was only ~9 MB
/// larger; trimming glibc's arenas per partition written closed that gap but cost 40% more CPU
/// in page faults. jemalloc with these options: 1 day 40 MB, 365 days 51 MB, and the offline
/// replay ~7% less CPU than on glibc (BENCHMARKS.md). `_RJEM_MALLOC_CONF`
/// overrides them at run time. (mimalloc was tried too: 365 days peaked at 200 MB.)
#[cfg(not(windows))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol before `main` (a C `const char *`).
#[cfg(not(windows))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: JemallocOptions =
    JemallocOptions(c"dirty_decay_ms:100,muzzy_decay_ms:0,narenas:2".as_ptr());

#[cfg(not(windows))]
#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable C string; jemalloc only reads it.
#[cfg(not(windows))]
unsafe impl Sync for JemallocOptions {}

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
