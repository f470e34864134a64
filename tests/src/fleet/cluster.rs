//! Fleets that form one Redis Cluster: every server starts with `--cluster-enabled yes`,
//! and `redis-cli --cluster create` joins them as masters without replicas, each serving a
//! third (for three) of the hash slots.
//!
//! A cluster node also listens on its bus port, its port plus 10000, so a node's port is
//! picked with both free: the port in 20000..22768, the bus port in 30000..32768, both
//! below Linux's ephemeral range, as for every fleet. The fleet confirms it owns every
//! server before `redis-cli` is pointed at them, and `redis-cli` is pointed at nothing else.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{free_ports, info_field, io_error, log_tail, reap};
use super::{Fleet, FleetError, HOST, POLL};

/// A cluster node's bus port is its port plus this.
const BUS_OFFSET: u16 = 10_000;
/// The lowest port a cluster node gets, and one past the highest.
const PORTS: std::ops::Range<u16> = 20_000..(32_768 - BUS_OFFSET);
/// How long `redis-cli --cluster create`, and then the nodes' agreement, may take.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// The fewest masters `redis-cli --cluster create` accepts.
const MIN_MASTERS: usize = 3;

impl Fleet {
    /// Starts `masters` servers in cluster mode, forms one Redis Cluster of them with
    /// `redis-cli --cluster create` (no replicas), and waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// Node `i` is master `i`; [`Fleet::url`] is a seed for a cluster client, and the
    /// inspection helpers run on that one node (a command on a key of another node's slot
    /// fails with `MOVED`).
    ///
    /// # Errors
    ///
    /// As [`Fleet::start`]; [`FleetError::Missing`] when `redis-cli` (or the `-cli` beside
    /// the server program that `REDLOCK_SERVER` names) is not found, and
    /// [`FleetError::Cluster`] when `masters` is below 3 or the cluster does not form.
    pub fn start_cluster(masters: usize) -> Result<Self, FleetError> {
        if masters < MIN_MASTERS {
            let reason = format!("a cluster needs at least {MIN_MASTERS} masters, not {masters}");
            return Err(FleetError::Cluster { reason });
        }
        let mut fleet = Self::start(0)?;
        fleet.cluster = true;
        fleet.add_nodes(masters)?;
        fleet.create_cluster()?;
        fleet.await_cluster_ok()?;
        Ok(fleet)
    }

    /// Whether this fleet is one Redis Cluster ([`Fleet::start_cluster`]).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The node that serves `key`'s hash slot, in a cluster fleet, by the slots each node
    /// lists for itself in `CLUSTER NODES` (asking sends no command that a node redirects).
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] or [`FleetError::Redis`] when a node (node 0 computes the
    /// slot) is down or fails, [`FleetError::Cluster`] when no node serves the slot.
    pub fn slot_owner(&self, key: &str) -> Result<usize, FleetError> {
        let slot: u16 = self.query(0, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
        for i in 0..self.len() {
            let nodes: String = self.query(i, redis::cmd("CLUSTER").arg("NODES"))?;
            if nodes
                .lines()
                .any(|line| is_myself(line) && serves(line, slot))
            {
                return Ok(i);
            }
        }
        let reason = format!("no node serves slot {slot} of {key:?}");
        Err(FleetError::Cluster { reason })
    }

    /// Hands the hash slot of `key` to node `to` (`CLUSTER SETSLOT … NODE`, on `to` first,
    /// then on every other node), as a resharding would: a client that still routes by
    /// its old slot map meets `MOVED`. The slot must hold no keys.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] or [`FleetError::Redis`] when a node is down or refuses
    /// (say, the slot still holds keys).
    pub fn move_slot_of(&self, key: &str, to: usize) -> Result<(), FleetError> {
        let slot: u16 = self.query(0, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
        let id: String = self.query(to, redis::cmd("CLUSTER").arg("MYID"))?;
        let others = (0..self.len()).filter(|&i| i != to);
        for i in std::iter::once(to).chain(others) {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg("NODE").arg(&id);
            self.query::<()>(i, &cmd)?;
        }
        Ok(())
    }

    /// How many `MOVED` and `ASK` redirections node `i` replied since start or
    /// [`Fleet::reset_stats`], from `INFO errorstats`: a client that routes every key to
    /// its slot's master causes none.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn redirect_count(&self, i: usize) -> Result<u64, FleetError> {
        let info: String = self.query(i, redis::cmd("INFO").arg("errorstats"))?;
        let count = |code: &str| {
            info_field(&info, &format!("errorstat_{code}:count="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count("MOVED") + count("ASK"))
    }

    /// The arguments that start a server in cluster mode, in a cluster fleet; the config
    /// file lands in the node's own directory (`--dir`).
    pub(super) fn cluster_args(&self) -> Vec<OsString> {
        if !self.cluster {
            return Vec::new();
        }
        [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ]
        .iter()
        .map(OsString::from)
        .collect()
    }

    /// Runs `redis-cli --cluster create` on every node of the fleet, with no replicas.
    fn create_cluster(&self) -> Result<(), FleetError> {
        let program = cli_program(&self.program);
        let log_path = self.root.join("cluster-create.log");
        let log = File::create(&log_path).map_err(io_error("create cluster log"))?;
        let log_err = log.try_clone().map_err(io_error("create cluster log"))?;
        let mut cli = Command::new(&program);
        cli.arg("--cluster").arg("create");
        cli.args((0..self.len()).map(|i| format!("{HOST}:{}", self.port(i))));
        cli.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let mut child = cli
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => FleetError::Missing {
                    program: program.to_string_lossy().into_owned(),
                },
                _ => io_error("spawn redis-cli")(e),
            })?;
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            match child.try_wait().map_err(io_error("wait for redis-cli"))? {
                Some(status) if status.success() => return Ok(()),
                Some(status) => {
                    let reason = format!(
                        "redis-cli --cluster create exited with {status}: {}",
                        log_tail(&log_path)
                    );
                    return Err(FleetError::Cluster { reason });
                }
                None if Instant::now() >= deadline => {
                    reap(&mut child);
                    let reason = format!(
                        "redis-cli --cluster create still running after {FORM_TIMEOUT:?}: {}",
                        log_tail(&log_path)
                    );
                    return Err(FleetError::Cluster { reason });
                }
                None => thread::sleep(POLL),
            }
        }
    }

    /// Waits (up to 30 s) until every node says the cluster is whole: state ok, every slot
    /// assigned, every node known. After [`Fleet::restart`] of cluster nodes, which come
    /// back with their slots (a node keeps its `nodes.conf`) but no data.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] or [`FleetError::Redis`] when a node is down or fails,
    /// [`FleetError::Cluster`] when the cluster is not whole in time.
    pub fn await_cluster_ok(&self) -> Result<(), FleetError> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        let known = self.len().to_string();
        for i in 0..self.len() {
            loop {
                let info: String = self.query(i, redis::cmd("CLUSTER").arg("INFO"))?;
                let field = |name: &str| info_field(&info, &format!("{name}:")).unwrap_or("");
                if field("cluster_state") == "ok"
                    && field("cluster_slots_assigned") == "16384"
                    && field("cluster_known_nodes") == known
                {
                    break;
                }
                if Instant::now() >= deadline {
                    let reason = format!(
                        "node {i} (port {}) not ready after {FORM_TIMEOUT:?}: {}",
                        self.port(i),
                        info.split_whitespace().collect::<Vec<_>>().join(" ")
                    );
                    return Err(FleetError::Cluster { reason });
                }
                thread::sleep(POLL);
            }
        }
        Ok(())
    }
}

/// Whether a `CLUSTER NODES` line describes the node that sent it.
fn is_myself(line: &str) -> bool {
    let flags = line.split_whitespace().nth(2).unwrap_or_default();
    flags.split(',').any(|flag| flag == "myself")
}

/// Whether a `CLUSTER NODES` line lists `slot` among its node's slots (`5461` or
/// `0-5460`; a slot being migrated, `[…]`, does not count).
fn serves(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        match (low.parse::<u16>(), high.parse::<u16>()) {
            (Ok(low), Ok(high)) => (low..=high).contains(&slot),
            _ => false,
        }
    })
}

/// A free loopback port whose bus port (plus 10000) is free too, both never handed out
/// before in this process.
pub(super) fn free_port_pair() -> Result<u16, FleetError> {
    free_ports(PORTS, &[0, BUS_OFFSET], "find a free port pair")
}

/// The command-line client that comes with `server`: `valkey-cli` beside
/// `…/valkey-server`, `redis-cli` for `redis-server` or anything else.
fn cli_program(server: &OsStr) -> OsString {
    let path = Path::new(server);
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or_default();
    match name.strip_suffix("-server") {
        Some(stem) => path.with_file_name(format!("{stem}-cli")).into_os_string(),
        None => OsString::from("redis-cli"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn cli_sits_beside_the_server() {
        assert_eq!(cli_program(OsStr::new("redis-server")), "redis-cli");
        assert_eq!(
            cli_program(OsStr::new("/opt/v/bin/valkey-server")),
            "/opt/v/bin/valkey-cli"
        );
        assert_eq!(cli_program(OsStr::new("my-redis")), "redis-cli");
    }

    #[test]
    fn too_few_masters_is_refused() {
        let err = Fleet::start_cluster(2).unwrap_err();
        assert!(err.to_string().contains("at least 3"), "{err}");
    }

    #[test]
    fn slot_ranges_are_read_from_cluster_nodes() {
        let line = "07c3 127.0.0.1:30004@40004 myself,master - 0 0 1 connected 0-5460 5470 \
                    [5461->-e7d1]";
        assert!(is_myself(line));
        assert!(serves(line, 0) && serves(line, 5460) && serves(line, 5470));
        assert!(!serves(line, 5461) && !serves(line, 5469));
        assert!(!is_myself(
            "e7d1 127.0.0.1:30005@40005 master - 0 0 2 connected 5461"
        ));
    }

    #[test]
    fn three_masters_serve_every_slot_and_route_keys() {
        let fleet = Fleet::start_cluster(3).unwrap();
        assert!(fleet.is_cluster() && fleet.len() == 3);
        for i in 0..3 {
            fleet.reset_stats(i).unwrap();
            assert!(fleet.port(i) >= PORTS.start && fleet.port(i) < PORTS.end);
        }
        let mut owners = [0usize; 3];
        for n in 0..30 {
            let key = format!("rltest:cluster:{n}");
            let owner = fleet.slot_owner(&key).unwrap();
            fleet.set(owner, &key, "v", 10_000).unwrap();
            assert_eq!(fleet.get(owner, &key).unwrap().as_deref(), Some("v"));
            owners[owner] += 1;
        }
        assert!(owners.iter().all(|&n| n > 0), "{owners:?}");
        for i in 0..3 {
            assert_eq!(fleet.redirect_count(i).unwrap(), 0, "node {i}");
        }
        let key = "rltest:cluster:0";
        let other = (fleet.slot_owner(key).unwrap() + 1) % 3;
        assert!(fleet.get(other, key).is_err());
        assert_eq!(fleet.redirect_count(other).unwrap(), 1);
    }
}
