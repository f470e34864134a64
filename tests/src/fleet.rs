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

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Cmd, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo};

const PROGRAM: &str = "redis-server";
const HOST: &str = "127.0.0.1";
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);
const ATTEMPTS: usize = 20;
const REBIND_BACKOFF: Duration = Duration::from_millis(50);

/// What can go wrong while running a fleet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// `redis-server` is not installed.
    #[error(
        "redis-server not found on PATH: install the Debian package `redis-server` \
         (apt-get install -y redis-server)"
    )]
    Missing,
    /// A server exited during startup or did not become ready in time.
    #[error("redis-server on port {port} did not start: {reason}")]
    Start {
        /// The port the server was asked to listen on.
        port: u16,
        /// Why, with the tail of the server's log when it exited.
        reason: String,
    },
    /// The server answering on the port is not our child; nothing else was sent to it.
    #[error("port {port} is served by another process, not our child {expected}")]
    NotOwned {
        /// The port in question.
        port: u16,
        /// Our child's pid.
        expected: u32,
        /// The `process_id` the server reported, if any.
        found: Option<u32>,
    },
    /// The node has been killed (or died) and not restarted.
    #[error("node {node} is not running")]
    NotRunning {
        /// Index of the node.
        node: usize,
    },
    /// A local operation (temp dir, spawn, wait, signal) failed.
    #[error("{action}: {source}")]
    Io {
        /// What the fleet was doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A command to a node failed, timeouts included.
    #[error("redis on port {port}: {source}")]
    Redis {
        /// The node's port.
        port: u16,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },
}

impl FleetError {
    /// Whether `redis-server` is missing from this machine.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }

    /// Whether a command ran into the I/O timeout, as it does on a paused node.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Redis { source, .. } if source.is_timeout())
    }
}

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
}

impl Fleet {
    /// Starts `n` servers, each on a free loopback port, and confirms we own each one.
    ///
    /// # Errors
    ///
    /// [`FleetError::Missing`] if `redis-server` is not on `PATH`; otherwise a startup error
    /// after up to 20 ports have been tried for a node. Servers already started are killed.
    pub fn start(n: usize) -> Result<Self, FleetError> {
        Self::start_program(OsStr::new(PROGRAM), n)
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
        };
        for i in 0..n {
            let dir = fleet.root.join(format!("node-{i}"));
            fs::create_dir(&dir).map_err(io_error("create node dir"))?;
            let (port, child) = fleet.launch_on_free_port(&dir)?;
            let (child, paused) = (Mutex::new(Some(child)), AtomicBool::new(false));
            fleet.nodes.push(Node {
                port,
                dir,
                child,
                paused,
            });
        }
        Ok(fleet)
    }

    fn launch_on_free_port(&self, dir: &Path) -> Result<(u16, Child), FleetError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            match launch(&self.program, port, dir) {
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

    /// Starts node `i` again on the same port, empty, and confirms we own it.
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
        let node = &mut self.nodes[i];
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match launch(&self.program, node.port, &node.dir) {
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

    /// Runs `SCRIPT FLUSH` on node `i`, so the next `EVALSHA` gets `NOSCRIPT`.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] or [`FleetError::Redis`], as for every inspection helper.
    pub fn flush_scripts(&self, i: usize) -> Result<(), FleetError> {
        self.query(i, redis::cmd("SCRIPT").arg("FLUSH"))
    }

    /// `GET key` on node `i`.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn get(&self, i: usize, key: &str) -> Result<Option<String>, FleetError> {
        self.query(i, redis::cmd("GET").arg(key))
    }

    /// `PTTL key` on node `i`: milliseconds left, -2 if missing, -1 if it has no expiry.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn pttl(&self, i: usize, key: &str) -> Result<i64, FleetError> {
        self.query(i, redis::cmd("PTTL").arg(key))
    }

    /// `SET key value PX px_ms` on node `i`; `px_ms == 0` sets the key without expiry.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn set(&self, i: usize, key: &str, value: &str, px_ms: u64) -> Result<(), FleetError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if px_ms > 0 {
            cmd.arg("PX").arg(px_ms);
        }
        self.query(i, &cmd)
    }

    /// `DEL key` on node `i`.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn del(&self, i: usize, key: &str) -> Result<(), FleetError> {
        self.query(i, redis::cmd("DEL").arg(key))
    }

    /// `KEYS pattern` on node `i`; fine on test servers, never on a real one.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn keys(&self, i: usize, pattern: &str) -> Result<Vec<String>, FleetError> {
        self.query(i, redis::cmd("KEYS").arg(pattern))
    }

    /// How many times node `i` ran `command` (e.g. `"evalsha"`, `"script|load"`) since start
    /// or [`Fleet::reset_stats`], from `INFO commandstats`; 0 if never.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn command_count(&self, i: usize, command: &str) -> Result<u64, FleetError> {
        let info: String = self.query(i, redis::cmd("INFO").arg("commandstats"))?;
        Ok(parse_calls(&info, command))
    }

    /// `CONFIG RESETSTAT` on node `i`, zeroing [`Fleet::command_count`].
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn reset_stats(&self, i: usize) -> Result<(), FleetError> {
        self.query(i, redis::cmd("CONFIG").arg("RESETSTAT"))
    }

    /// Runs one command on a fresh short-timeout connection to a node we know is ours.
    fn query<T: FromRedisValue>(&self, i: usize, cmd: &Cmd) -> Result<T, FleetError> {
        let port = self.nodes[i].port;
        self.pid(i).ok_or(FleetError::NotRunning { node: i })?;
        let mut con = connect(port).map_err(redis_error(port))?;
        cmd.query(&mut con).map_err(redis_error(port))
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

fn free_port() -> Result<u16, FleetError> {
    let listener = TcpListener::bind((HOST, 0)).map_err(io_error("find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("find a free port"))?
        .port();
    Ok(port)
}

/// Spawns a server on `port` and waits until it answers as our child; reaps it on failure.
fn launch(program: &OsStr, port: u16, dir: &Path) -> Result<Child, Launch> {
    let log = dir.join("redis.log");
    let mut child = Command::new(program)
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .args(["--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Launch::Fatal(FleetError::Missing),
            _ => Launch::Fatal(io_error("spawn redis-server")(e)),
        })?;
    await_owned(&mut child, port, &log).inspect_err(|_| reap(&mut child))?;
    Ok(child)
}

fn await_owned(child: &mut Child, port: u16, log: &Path) -> Result<(), Launch> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        // Checked before every probe: a child that exited means the port may be someone else's.
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Launch::Fatal(io_error("wait")(e)))?
        {
            let reason = format!("exited with {status}: {}", log_tail(log));
            return Err(Launch::Exited(FleetError::Start { port, reason }));
        }
        if let Some(found) = probe_pid(port) {
            if found == Some(child.id()) {
                return Ok(());
            }
            let expected = child.id();
            return Err(Launch::Foreign(FleetError::NotOwned {
                port,
                expected,
                found,
            }));
        }
        if Instant::now() >= deadline {
            let reason = format!("not ready after {READY_TIMEOUT:?}");
            return Err(Launch::Fatal(FleetError::Start { port, reason }));
        }
        thread::sleep(POLL);
    }
}

/// `None` if nothing answers yet; otherwise the `process_id` from `INFO server`, if any.
fn probe_pid(port: u16) -> Option<Option<u32>> {
    let mut con = connect(port).ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
    Some(info_field(&info, "process_id:").and_then(|v| v.parse().ok()))
}

/// A connection that sends nothing on connect (no `CLIENT SETINFO`) and times out after 1 s.
fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let info = (HOST, port)
        .into_connection_info()?
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    let con = redis::Client::open(info)?.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

fn info_field<'a>(info: &'a str, prefix: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(str::trim)
}

fn parse_calls(info: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{}:", command.to_ascii_lowercase());
    info_field(info, &prefix)
        .and_then(|stats| stats.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.len() {
        0 => "no log output".into(),
        n => lines[n.saturating_sub(3)..].join(" | "),
    }
}

/// The pid of a child that has not exited; forgets (and reaps) one that has.
fn live_pid(slot: &mut Option<Child>) -> Option<u32> {
    let child = slot.as_mut()?;
    match child.try_wait() {
        Ok(Some(_)) => {
            *slot = None;
            None
        }
        Ok(None) | Err(_) => Some(child.id()),
    }
}

fn send_signal(pid: u32, signal: &str) -> Result<(), FleetError> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io_error("run kill"))?;
    if status.success() {
        return Ok(());
    }
    let source = io::Error::other(format!("kill {signal} {pid} exited with {status}"));
    Err(FleetError::Io {
        action: "send signal",
        source,
    })
}

fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(action: &'static str) -> impl FnOnce(io::Error) -> FleetError {
    move |source| FleetError::Io { action, source }
}

fn redis_error(port: u16) -> impl Fn(redis::RedisError) -> FleetError {
    move |source| FleetError::Redis { port, source }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn gone(pid: u32) -> bool {
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    fn info_pid(fleet: &Fleet, i: usize) -> Option<u32> {
        let info: String = fleet.query(i, redis::cmd("INFO").arg("server")).unwrap();
        info_field(&info, "process_id:").and_then(|v| v.parse().ok())
    }

    #[test]
    fn start_owns_every_node_on_its_own_port() {
        let fleet = Fleet::start(3).unwrap();
        assert_eq!(fleet.len(), 3);
        let mut ports: Vec<u16> = (0..3).map(|i| fleet.port(i)).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        for i in 0..3 {
            assert!(fleet.pid(i).is_some());
            assert_eq!(info_pid(&fleet, i), fleet.pid(i));
            assert_eq!(
                fleet.url(i),
                format!("redis://127.0.0.1:{}/", fleet.port(i))
            );
        }
        assert_eq!(fleet.urls().len(), 3);
    }

    #[test]
    fn set_get_pttl_del_keys() {
        let fleet = Fleet::start(1).unwrap();
        let key = format!("{}k", unique_prefix("set_get"));
        assert_eq!(fleet.get(0, &key).unwrap(), None);
        assert_eq!(fleet.pttl(0, &key).unwrap(), -2);
        fleet.set(0, &key, "v", 10_000).unwrap();
        assert_eq!(fleet.get(0, &key).unwrap().as_deref(), Some("v"));
        let pttl = fleet.pttl(0, &key).unwrap();
        assert!(pttl > 0 && pttl <= 10_000, "pttl {pttl}");
        fleet.set(0, &key, "w", 0).unwrap();
        assert_eq!(fleet.pttl(0, &key).unwrap(), -1);
        assert_eq!(
            fleet.keys(0, "rltest:set_get:*").unwrap(),
            vec![key.clone()]
        );
        fleet.del(0, &key).unwrap();
        assert_eq!(fleet.get(0, &key).unwrap(), None);
    }

    #[test]
    fn kill_then_restart_reuses_port_with_empty_data() {
        let mut fleet = Fleet::start(3).unwrap();
        for i in 0..3 {
            fleet.set(i, "k", "v", 60_000).unwrap();
        }
        let (port, old) = (fleet.port(1), fleet.pid(1).unwrap());
        fleet.kill(1).unwrap();
        assert!(gone(old));
        assert_eq!(fleet.pid(1), None);
        assert!(matches!(
            fleet.get(1, "k"),
            Err(FleetError::NotRunning { node: 1 })
        ));
        assert!(matches!(
            fleet.pause(1),
            Err(FleetError::NotRunning { node: 1 })
        ));
        fleet.kill(1).unwrap();
        assert_eq!(fleet.get(0, "k").unwrap().as_deref(), Some("v"));

        fleet.restart(1).unwrap();
        assert_eq!(fleet.port(1), port);
        assert_ne!(fleet.pid(1), Some(old));
        assert_eq!(info_pid(&fleet, 1), fleet.pid(1));
        assert_eq!(fleet.get(1, "k").unwrap(), None);
        assert!(fleet.keys(1, "*").unwrap().is_empty());

        // Restarting a live node replaces it.
        let before = fleet.pid(1).unwrap();
        fleet.restart(1).unwrap();
        assert!(gone(before));
        assert_eq!(info_pid(&fleet, 1), fleet.pid(1));
    }

    #[test]
    fn paused_node_times_out_and_answers_after_resume() {
        let fleet = Fleet::start(3).unwrap();
        fleet.set(2, "k", "v", 60_000).unwrap();
        fleet.pause(2).unwrap();
        let err = fleet.get(2, "k").unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(fleet.get(0, "k").unwrap(), None);
        fleet.resume(2).unwrap();
        assert_eq!(fleet.get(2, "k").unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn flush_scripts_and_command_count() {
        let fleet = Fleet::start(1).unwrap();
        let sha: String = fleet
            .query(0, redis::cmd("SCRIPT").arg("LOAD").arg("return 7"))
            .unwrap();
        let evalsha = || fleet.query::<i64>(0, redis::cmd("EVALSHA").arg(&sha).arg(0));
        assert_eq!(fleet.command_count(0, "evalsha").unwrap(), 0);
        assert_eq!(evalsha().unwrap(), 7);
        assert_eq!(evalsha().unwrap(), 7);
        assert_eq!(fleet.command_count(0, "EVALSHA").unwrap(), 2);
        assert_eq!(fleet.command_count(0, "script|load").unwrap(), 1);
        fleet.flush_scripts(0).unwrap();
        let err = evalsha().unwrap_err();
        let noscript = redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);
        assert!(
            matches!(&err, FleetError::Redis { source, .. } if source.kind() == noscript),
            "{err}"
        );
        fleet.reset_stats(0).unwrap();
        assert_eq!(fleet.command_count(0, "evalsha").unwrap(), 0);
    }

    #[test]
    fn drop_reaps_every_child_and_removes_the_dir() {
        let mut fleet = Fleet::start(3).unwrap();
        fleet.pause(2).unwrap();
        fleet.kill(0).unwrap();
        let pids: Vec<u32> = (1..3).filter_map(|i| fleet.pid(i)).collect();
        let root = fleet.root.clone();
        assert_eq!(pids.len(), 2);
        assert!(root.is_dir());
        drop(fleet);
        assert!(pids.iter().all(|&pid| gone(pid)), "{pids:?}");
        assert!(!root.exists());
    }

    #[test]
    fn drop_on_panic_reaps_every_child() {
        let pids = Mutex::new(Vec::new());
        let result = std::panic::catch_unwind(|| {
            let fleet = Fleet::start(2).unwrap();
            lock(&pids).extend((0..2).filter_map(|i| fleet.pid(i)));
            panic!("test body fails while the fleet is alive");
        });
        assert!(result.is_err());
        let pids = lock(&pids);
        assert_eq!(pids.len(), 2);
        assert!(pids.iter().all(|&pid| gone(pid)), "{pids:?}");
    }

    #[test]
    fn missing_binary_names_the_package() {
        let err = Fleet::start_program(OsStr::new("redis-server-not-installed"), 1).unwrap_err();
        assert!(err.is_missing());
        assert_eq!(
            err.to_string(),
            "redis-server not found on PATH: install the Debian package `redis-server` \
             (apt-get install -y redis-server)"
        );
    }

    #[test]
    fn empty_fleet_is_empty() {
        let fleet = Fleet::start(0).unwrap();
        assert!(fleet.is_empty());
        assert!(fleet.urls().is_empty());
    }

    #[test]
    fn unique_prefixes_differ() {
        let (a, b) = (unique_prefix("t"), unique_prefix("t"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("rltest:t:") && a.ends_with(':') && a.len() == 26,
            "{a}"
        );
    }

    #[test]
    fn parses_info_fields() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.5\r\n\
                    cmdstat_script|flush:calls=1,usec=3\r\n";
        assert_eq!(parse_calls(info, "evalsha"), 12);
        assert_eq!(parse_calls(info, "SCRIPT|FLUSH"), 1);
        assert_eq!(parse_calls(info, "eval"), 0);
        assert_eq!(
            info_field("a:1\r\nprocess_id:42\r\n", "process_id:"),
            Some("42")
        );
    }
}
