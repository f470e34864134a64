//! Sentinel-managed masters: the fleet's node 0 as a master, its other nodes as its
//! replicas, and Sentinel processes that watch them and fail over on demand. Every
//! Sentinel is our own child, confirmed by its pid like the servers, and killed on drop.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::*;
use super::*;

/// How long a Sentinel waits before it calls a silent master down, and the failover
/// timeout: short, for tests.
const DOWN_AFTER_MS: u64 = 1_000;
const FAILOVER_TIMEOUT_MS: u64 = 5_000;
/// How long to wait for replication, discovery, or a failover to finish.
const SETTLE: Duration = Duration::from_secs(30);

/// Sentinels watching one master group of a [`Fleet`].
#[derive(Debug)]
pub struct Sentinels {
    service: String,
    ports: Vec<u16>,
    children: Vec<Child>,
}

impl Fleet {
    /// Makes node 0 the master of `service` and every other node its replica, and starts
    /// `count` Sentinels (quorum: a majority of them) that watch it. Returns once the
    /// replicas are in sync and the Sentinels know them, so a failover can start at once.
    ///
    /// # Errors
    ///
    /// When a Sentinel does not start, or the group does not settle within 30 s.
    pub fn start_sentinels(&self, service: &str, count: usize) -> Result<Sentinels, FleetError> {
        let master = self.port(0);
        for i in 1..self.len() {
            let mut cmd = redis::cmd("REPLICAOF");
            cmd.arg(HOST).arg(master);
            self.query::<()>(i, &cmd)?;
        }
        let mut sentinels = Sentinels {
            service: service.to_owned(),
            ports: Vec::new(),
            children: Vec::new(),
        };
        for i in 0..count {
            let dir = self.root.join(format!("sentinel-{i}"));
            fs::create_dir(&dir).map_err(io_error("create sentinel dir"))?;
            let (port, child) = launch_sentinel(&self.program, &dir, service, master, count)?;
            sentinels.ports.push(port);
            sentinels.children.push(child);
        }
        let replicas = self.len() - 1;
        settle("replicas in sync and known to every sentinel", || {
            let synced = self.query::<String>(0, redis::cmd("INFO").arg("replication"));
            let synced = synced.is_ok_and(|info| info.matches("state=online").count() == replicas);
            synced
                && sentinels
                    .ports
                    .iter()
                    .all(|&p| sentinels.known_replicas(p) == replicas)
        })?;
        Ok(sentinels)
    }
}

impl Sentinels {
    /// The Sentinels' URLs, `redis://127.0.0.1:PORT/`.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://{HOST}:{p}/"))
            .collect()
    }

    /// The master group's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The port of the master the first Sentinel that answers reports.
    ///
    /// # Errors
    ///
    /// When no Sentinel answers.
    pub fn master_port(&self) -> Result<u16, FleetError> {
        let mut last = None;
        for &port in &self.ports {
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("get-master-addr-by-name").arg(&self.service);
            match query(port, &cmd).map(|(_, p): (String, u16)| p) {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(FleetError::NotRunning { node: 0 }))
    }

    /// Forces a failover (`SENTINEL FAILOVER`) and waits until every Sentinel reports a
    /// new master and the old one serves as a replica; returns the new master's port.
    ///
    /// # Errors
    ///
    /// When the failover cannot start or does not finish within 30 s.
    pub fn failover(&self) -> Result<u16, FleetError> {
        let old = self.master_port()?;
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("FAILOVER").arg(&self.service);
        settle("a failover to start", || {
            query::<()>(self.ports[0], &cmd).is_ok()
        })?;
        settle("every sentinel to report the new master", || {
            self.ports.iter().all(|&p| {
                let mut cmd = redis::cmd("SENTINEL");
                cmd.arg("get-master-addr-by-name").arg(&self.service);
                query::<(String, u16)>(p, &cmd).is_ok_and(|(_, port)| port != old)
            })
        })?;
        let new = self.master_port()?;
        settle("the old master to serve as a replica", || {
            query::<String>(old, redis::cmd("INFO").arg("replication")).is_ok_and(|info| {
                info.contains("role:slave") && info.contains(&format!("master_port:{new}"))
            })
        })?;
        Ok(new)
    }

    fn known_replicas(&self, port: u16) -> usize {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("replicas").arg(&self.service);
        query::<Vec<redis::Value>>(port, &cmd).map_or(0, |r| r.len())
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            reap(child);
        }
    }
}

/// Starts one Sentinel watching `master`; it needs a config file it can rewrite.
fn launch_sentinel(
    program: &std::ffi::OsStr,
    dir: &Path,
    service: &str,
    master: u16,
    count: usize,
) -> Result<(u16, Child), FleetError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let port = free_port()?;
        let conf = dir.join("sentinel.conf");
        let log = dir.join("sentinel.log");
        let quorum = count / 2 + 1;
        let text = format!(
            "port {port}\nbind {HOST}\ndir {}\nlogfile {}\nsentinel resolve-hostnames no\n\
             sentinel monitor {service} {HOST} {master} {quorum}\n\
             sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}\n",
            dir.display(),
            log.display()
        );
        fs::write(&conf, text).map_err(io_error("write sentinel.conf"))?;
        let mut child = Command::new(program)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_error("spawn sentinel"))?;
        match await_owned(&mut child, port, &log) {
            Ok(()) => return Ok((port, child)),
            Err(Launch::Exited(e) | Launch::Foreign(e)) => {
                reap(&mut child);
                last = Some(e);
            }
            Err(Launch::Fatal(e)) => {
                reap(&mut child);
                return Err(e);
            }
        }
    }
    Err(last.unwrap_or(FleetError::Start {
        port: 0,
        reason: "no sentinel started".into(),
    }))
}

/// A command to the server or Sentinel on `port`.
fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Result<T, FleetError> {
    let mut con = connect(port).map_err(redis_error(port))?;
    cmd.query(&mut con).map_err(redis_error(port))
}

/// Waits until `done` holds, polling, for up to [`SETTLE`].
fn settle(what: &str, mut done: impl FnMut() -> bool) -> Result<(), FleetError> {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        if Instant::now() >= deadline {
            return Err(FleetError::Start {
                port: 0,
                reason: format!("timed out waiting for {what}"),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
