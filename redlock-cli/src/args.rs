//! The command line.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::exit;

/// Run a command under a Redlock lock held across independent Redis masters (flock(1)
/// across machines), or show who holds a lock.
#[derive(Debug, Parser)]
#[command(name = "redlock", version, after_help = exit::HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Take the lock NAME, run COMMAND while keeping the lock alive, release it, and exit
    /// with the command's status.
    #[command(after_help = exit::HELP)]
    Exec(ExecArgs),
    /// Show, per node, whether NAME is held, for how much longer, and whether the holding
    /// nodes agree on one holder.
    #[command(after_help = exit::HELP)]
    Status(StatusArgs),
}

/// The Redis masters of the lock.
#[derive(Debug, Args)]
pub(crate) struct Nodes {
    /// The nodes: comma-separated `redis://[user:password@]host:port/` URLs (`rediss://`
    /// for TLS). Use an odd number of independent masters; a majority must agree.
    #[arg(long, env = "REDLOCK_URLS", value_delimiter = ',', required = true)]
    pub(crate) urls: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pub(crate) nodes: Nodes,
    /// Wait at most this long for the lock (`30s`, `2m`, `500ms`); without it, wait as
    /// long as it takes.
    #[arg(short, long, value_parser = humantime::parse_duration, conflicts_with = "nonblock")]
    pub(crate) wait: Option<Duration>,
    /// Do not wait: exit with the conflict code at once when the lock is held.
    #[arg(short, long)]
    pub(crate) nonblock: bool,
    /// The exit code when the lock is held (or --wait ran out).
    #[arg(short = 'E', long, default_value_t = exit::CONFLICT)]
    pub(crate) conflict_exit_code: u8,
    /// The lock's expiry on the nodes; it is renewed while the command runs, so this is
    /// how long a crashed `redlock` keeps others out.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub(crate) expiry: Duration,
    /// Take a fenced lock and hand its token to the command as REDLOCK_TOKEN: a number
    /// larger for every later holder, for the resource to check.
    #[arg(long)]
    pub(crate) fenced: bool,
    /// Restart quarantine: for this long after a node starts, its vote does not count
    /// (default: the expiry plus the drift allowance; `0s` switches it off). Every client
    /// of the nodes must use at least the longest expiry any of them uses.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) quarantine: Option<Duration>,
    /// How long the command has to stop after SIGTERM, when the lock is lost, before it
    /// gets SIGKILL.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub(crate) grace: Duration,
    /// The lock's name (the key on every node).
    pub(crate) name: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) nodes: Nodes,
    /// The lock's name (the key on every node).
    pub(crate) name: String,
}
