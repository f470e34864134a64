//! A fleet of throwaway `redis-server` processes for tests.
//!
//! Every server is our own child: it listens on 127.0.0.1 only, on a port the OS just handed
//! out, keeps no data on disk (`--save "" --appendonly no`) and runs in a temporary directory
//! that the fleet removes. Before the first command, the fleet checks that the server
//! answering on the port reports our child's pid, so a test never talks to a server it did
//! not start. Dropping the fleet, also while a test unwinds from a panic, kills and reaps
//! every child.
//!
//! All methods are blocking and use connections with one-second timeouts, so a paused node
//! makes a helper fail instead of hanging; call them between awaits, not in a hot loop.

mod cluster;
mod error;
mod inspect;
mod process;
mod sentinel;
#[cfg(test)]
mod tests;
mod tls;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

pub use error::FleetError;
use process::*;
pub use sentinel::Sentinels;
pub use tls::TlsMaterial;

/// The server the fleet starts unless `REDLOCK_SERVER` names another.
const DEFAULT_PROGRAM: &str = "redis-server";
/// The environment variable that names another server program (say `valkey-server`, or
/// its path), compatible with `redis-server`'s command line.
pub const SERVER_VAR: &str = "REDLOCK_SERVER";
const HOST: &str = "127.0.0.1";
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);
const ATTEMPTS: usize = 20;
const REBIND_BACKOFF: Duration = Duration::from_millis(50);

/// Why one launch attempt failed, which decides whether to try again.
enum Launch {
    /// The child exited early, typically because the port was taken.
    Exited(FleetError),
    /// Someone else's server answered on the port.
    Foreign(FleetError),
    /// Anything else: give up.
    Fatal(FleetError),
}

#[derive(Debug)]
struct Node {
    port: u16,
    /// The TLS port, in a fleet that serves TLS.
    tls_port: Option<u16>,
    dir: PathBuf,
    /// `None` while killed; a `Some` child is never reaped, so its pid is safe to signal.
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
}

/// A set of `redis-server` children on loopback ports, killed on drop.
///
/// Nodes are addressed by index `0..len()`; every method taking an index panics if it is
/// out of range, like slice indexing.
#[derive(Debug)]
pub struct Fleet {
    program: OsString,
    root: PathBuf,
    nodes: Vec<Node>,
    tls: Option<Serving>,
    /// Whether the servers run in cluster mode ([`Fleet::start_cluster`]).
    cluster: bool,
    /// Whether the servers keep an append-only file ([`Fleet::start_durable`]).
    durable: bool,
}

/// How a fleet serves TLS.
#[derive(Debug)]
struct Serving {
    material: TlsMaterial,
    /// Whether clients must present a certificate (`tls-auth-clients yes`).
    client_certs: bool,
}

impl Fleet {
    /// Starts `n` servers, each on a free loopback port, and confirms we own each one.
    ///
    /// # Errors
    ///
    /// The program is `redis-server`, or the one the `REDLOCK_SERVER` environment variable
    /// names (a name on `PATH` or a path; `valkey-server` 8.1 runs the whole suite).
    ///
    /// [`FleetError::Missing`] if the program is not found; otherwise a startup error
    /// after up to 20 ports have been tried for a node. Servers already started are killed.
    pub fn start(n: usize) -> Result<Self, FleetError> {
        match std::env::var_os(SERVER_VAR).filter(|p| !p.is_empty()) {
            Some(program) => Self::start_program(&program, n),
            None => Self::start_program(OsStr::new(DEFAULT_PROGRAM), n),
        }
    }

    /// Starts `n` servers as [`Fleet::start`] does, each also serving TLS on a port of its
    /// own ([`Fleet::tls_url`]) with certificates made now ([`Fleet::tls_material`]);
    /// with `client_certs`, TLS clients must present the client certificate.
    ///
    /// # Errors
    ///
    /// As [`Fleet::start`], and when the certificates cannot be made.
    pub fn start_tls(n: usize, client_certs: bool) -> Result<Self, FleetError> {
        let mut fleet = Self::start(0)?;
        let dir = fleet.root.join("tls");
        fs::create_dir(&dir).map_err(io_error("create tls dir"))?;
        let material = TlsMaterial::generate(&dir)?;
        fleet.tls = Some(Serving {
            material,
            client_certs,
        });
        fleet.add_nodes(n)?;
        Ok(fleet)
    }

    /// Starts `n` servers as [`Fleet::start`] does, each keeping an append-only file
    /// (`appendonly yes`, `appendfsync always`) in its own directory, so that
    /// [`Fleet::restart`] brings a node back with its data.
    ///
    /// # Errors
    ///
    /// As [`Fleet::start`].
    pub fn start_durable(n: usize) -> Result<Self, FleetError> {
        let mut fleet = Self::start(0)?;
        fleet.durable = true;
        fleet.add_nodes(n)?;
        Ok(fleet)
    }

    /// The certificates of a fleet started with [`Fleet::start_tls`].
    pub fn tls_material(&self) -> Option<&TlsMaterial> {
        self.tls.as_ref().map(|t| &t.material)
    }

    /// TLS URL of node `i`, `rediss://127.0.0.1:PORT/`, in a fleet started with
    /// [`Fleet::start_tls`]; `None` otherwise.
    pub fn tls_url(&self, i: usize) -> Option<String> {
        let port = self.nodes[i].tls_port?;
        Some(format!("rediss://{HOST}:{port}/"))
    }

    /// The arguments a server of this fleet starts with beyond the common ones: TLS,
    /// cluster mode.
    fn server_args(&self, tls_port: Option<u16>) -> Vec<OsString> {
        let mut args = self.tls_args(tls_port);
        args.extend(self.cluster_args());
        if self.durable {
            let aof = ["--appendonly", "yes", "--appendfsync", "always"];
            args.extend(aof.map(OsString::from));
        }
        args
    }

    /// The arguments that make a server serve TLS on `tls_port`, in a TLS fleet.
    fn tls_args(&self, tls_port: Option<u16>) -> Vec<OsString> {
        let (Some(tls), Some(port)) = (&self.tls, tls_port) else {
            return Vec::new();
        };
        let files = &tls.material.files;
        let auth = if tls.client_certs { "yes" } else { "no" };
        [
            OsStr::new("--tls-port"),
            OsStr::new(&port.to_string()),
            OsStr::new("--tls-cert-file"),
            files.cert.as_os_str(),
            OsStr::new("--tls-key-file"),
            files.key.as_os_str(),
            OsStr::new("--tls-ca-cert-file"),
            files.ca.as_os_str(),
            OsStr::new("--tls-auth-clients"),
            OsStr::new(auth),
        ]
        .iter()
        .map(|a| a.to_os_string())
        .collect()
    }

    fn start_program(program: &OsStr, n: usize) -> Result<Self, FleetError> {
        let root = std::env::temp_dir().join(format!(
            "redlock-fleet-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir(&root).map_err(io_error("create fleet dir"))?;
        // From here on, dropping `fleet` cleans up whatever has been started.
        let mut fleet = Self {
            program: program.to_owned(),
            root,
            nodes: Vec::with_capacity(n),
            tls: None,
            cluster: false,
            durable: false,
        };
        fleet.add_nodes(n)?;
        Ok(fleet)
    }

    fn add_nodes(&mut self, n: usize) -> Result<(), FleetError> {
        for _ in 0..n {
            let dir = self.root.join(format!("node-{}", self.nodes.len()));
            fs::create_dir(&dir).map_err(io_error("create node dir"))?;
            let tls_port = self.tls.is_some().then(free_port).transpose()?;
            let (port, child) = self.launch_on_free_port(&dir, tls_port)?;
            let (child, paused) = (Mutex::new(Some(child)), AtomicBool::new(false));
            self.nodes.push(Node {
                port,
                tls_port,
                dir,
                child,
                paused,
            });
        }
        Ok(())
    }

    fn launch_on_free_port(
        &self,
        dir: &Path,
        tls_port: Option<u16>,
    ) -> Result<(u16, Child), FleetError> {
        let mut last = None;
        let extra = self.server_args(tls_port);
        for _ in 0..ATTEMPTS {
            let port = if self.cluster {
                cluster::free_port_pair()?
            } else {
                free_port()?
            };
            match launch(&self.program, port, dir, &extra) {
                Ok(child) => return Ok((port, child)),
                Err(Launch::Exited(e) | Launch::Foreign(e)) => last = Some(e),
                Err(Launch::Fatal(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or(FleetError::Start {
            port: 0,
            reason: "no attempt made".into(),
        }))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the fleet has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// URL of node `i`, `redis://127.0.0.1:PORT/`; stable across kill and restart.
    pub fn url(&self, i: usize) -> String {
        format!("redis://{HOST}:{}/", self.nodes[i].port)
    }

    /// URLs of all nodes, in index order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Port of node `i`; stable across kill and restart.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Pid of node `i`, or `None` while it is killed or after it died.
    pub fn pid(&self, i: usize) -> Option<u32> {
        live_pid(&mut lock(&self.nodes[i].child))
    }

    /// Kills node `i` with SIGKILL and reaps it; its data is gone. Does nothing if not running.
    ///
    /// # Errors
    ///
    /// [`FleetError::Io`] if the signal cannot be sent or the child cannot be reaped.
    pub fn kill(&mut self, i: usize) -> Result<(), FleetError> {
        let node = &mut self.nodes[i];
        let slot = node.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = slot {
            child.kill().map_err(io_error("kill redis-server"))?;
            child.wait().map_err(io_error("reap redis-server"))?;
        }
        *slot = None;
        *node.paused.get_mut() = false;
        Ok(())
    }

    /// Starts node `i` again on the same port, empty (with its append-only file, in a
    /// fleet from [`Fleet::start_durable`]), and confirms we own it.
    ///
    /// A running node is killed first. Binding is retried for about a second in case the
    /// old socket lingers.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotOwned`] if another process took the port meanwhile,
    /// [`FleetError::Start`] if the server keeps failing to start.
    pub fn restart(&mut self, i: usize) -> Result<(), FleetError> {
        self.kill(i)?;
        let extra = self.server_args(self.nodes[i].tls_port);
        let node = &mut self.nodes[i];
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match launch(&self.program, node.port, &node.dir, &extra) {
                Ok(child) => {
                    *node.child.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);
                    return Ok(());
                }
                Err(Launch::Exited(e)) => last = Some(e),
                Err(Launch::Foreign(e) | Launch::Fatal(e)) => return Err(e),
            }
            thread::sleep(REBIND_BACKOFF);
        }
        Err(last.unwrap_or(FleetError::NotRunning { node: i }))
    }

    /// Freezes node `i` with SIGSTOP: it keeps its port and data but answers nothing.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if the node is killed, [`FleetError::Io`] if `kill` fails.
    pub fn pause(&self, i: usize) -> Result<(), FleetError> {
        self.signal(i, "-STOP", true)
    }

    /// Thaws node `i` with SIGCONT after [`Fleet::pause`].
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if the node is killed, [`FleetError::Io`] if `kill` fails.
    pub fn resume(&self, i: usize) -> Result<(), FleetError> {
        self.signal(i, "-CONT", false)
    }

    fn signal(&self, i: usize, signal: &str, paused: bool) -> Result<(), FleetError> {
        let node = &self.nodes[i];
        let mut slot = lock(&node.child);
        let pid = live_pid(&mut slot).ok_or(FleetError::NotRunning { node: i })?;
        send_signal(pid, signal)?;
        node.paused.store(paused, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let paused = *node.paused.get_mut();
            let slot = node.child.get_mut().unwrap_or_else(PoisonError::into_inner);
            if let Some(child) = slot {
                if paused {
                    // SIGKILL ends a stopped process too; thawing first is cheap insurance.
                    let _ = send_signal(child.id(), "-CONT");
                }
                reap(child);
            }
            *slot = None;
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A key prefix unique to one test run, e.g. `rltest:{test}:{16 hex digits}:`.
pub fn unique_prefix(test: &str) -> String {
    format!("rltest:{test}:{:016x}:", rand::random::<u64>())
}
