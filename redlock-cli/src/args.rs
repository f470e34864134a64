//! The command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use redlock_redis_rs::{RedisPool, Tls};

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
    /// For `rediss://` nodes: trust this CA (a PEM file) instead of the system's roots.
    #[arg(long, env = "REDLOCK_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// For `rediss://` nodes that require a client certificate: this one (a PEM file),
    /// with --tls-key.
    #[arg(
        long,
        env = "REDLOCK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (a PEM file).
    #[arg(
        long,
        env = "REDLOCK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
}

impl Nodes {
    /// A pool for each node, with the TLS material given.
    ///
    /// # Errors
    ///
    /// One line: a file that cannot be read, or the driver's refusal of a URL (without
    /// its credentials) or of the material.
    pub(crate) fn pools(&self) -> Result<Vec<RedisPool>, String> {
        let Some(tls) = self.tls()? else {
            return RedisPool::from_urls(&self.urls).map_err(|e| e.to_string());
        };
        let pool = |url: &String| RedisPool::from_url_with_tls(url, &tls);
        self.urls
            .iter()
            .map(pool)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    }

    /// The TLS material the options name, if any.
    fn tls(&self) -> Result<Option<Tls>, String> {
        if self.tls_ca.is_none() && self.tls_cert.is_none() {
            return Ok(None);
        }
        let mut tls = Tls::new();
        if let Some(ca) = &self.tls_ca {
            tls = tls.root_ca_pem(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.client_cert_pem(read(cert)?, read(key)?);
        }
        Ok(Some(tls))
    }
}

/// A file's bytes, or a line that names it.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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
