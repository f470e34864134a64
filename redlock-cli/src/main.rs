//! `redlock`: runs a command under a Redlock lock held across independent Redis masters,
//! as `flock(1)` does on one host.
//!
//! ```text
//! redlock exec --wait 30s nightly-report -- ./report.sh --full
//! redlock status nightly-report
//! ```
//!
//! The nodes come from `--urls` or `REDLOCK_URLS` (comma-separated `redis://` URLs). See
//! `redlock exec --help` for the options and exit codes.

mod args;
mod exec;
mod exit;
mod status;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => return exit::fail(exit::SOFTWARE, &format!("cannot start a runtime: {e}")),
    };
    runtime.block_on(async {
        match cli.command {
            Command::Exec(args) => exec::run(args).await,
            Command::Status(args) => status::run(args).await,
        }
    })
}

/// Prints clap's message for `--help`, `--version` or a bad command line; a bad command
/// line exits 78, as a bad URL does (clap's own code would be 2).
fn usage(e: &clap::Error) -> ExitCode {
    // Nothing better to do if stdout or stderr is gone.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(exit::CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}
