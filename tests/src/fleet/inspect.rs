//! Inspection helpers: one command on a fresh short-timeout connection to a node we own.

use redis::{Cmd, FromRedisValue};

use super::process::{connect, parse_calls, redis_error};
use super::{Fleet, FleetError};

impl Fleet {
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

    /// How many clients on node `i` listen for releases of the lock `name` (`PUBSUB
    /// NUMSUB` of its release channel): waiters that wait for a notification.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn subscribers(&self, i: usize, name: &str) -> Result<i64, FleetError> {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB")
            .arg(redlock_core::scripts::release_channel(name));
        let (_, n): (String, i64) = self.query(i, &cmd)?;
        Ok(n)
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

    /// Runs `cmd` on node `i`, on a fresh short-timeout connection to a node we know is
    /// ours: for setup the other helpers do not cover (say `ACL SETUSER`).
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn query<T: FromRedisValue>(&self, i: usize, cmd: &Cmd) -> Result<T, FleetError> {
        let port = self.nodes[i].port;
        self.pid(i).ok_or(FleetError::NotRunning { node: i })?;
        let mut con = connect(port).map_err(redis_error(port))?;
        cmd.query(&mut con).map_err(redis_error(port))
    }

    /// Whether node `i` knows `WAITAOF` (Redis 7.2+, Valkey 8), for durable votes.
    ///
    /// # Errors
    ///
    /// [`FleetError::NotRunning`] if killed, [`FleetError::Redis`] on failure or timeout.
    pub fn has_waitaof(&self, i: usize) -> Result<bool, FleetError> {
        let mut cmd = redis::cmd("COMMAND");
        cmd.arg("INFO").arg("WAITAOF");
        let info: redis::Value = self.query(i, &cmd)?;
        let unknown = |items: &[redis::Value]| items.iter().all(|v| *v == redis::Value::Nil);
        Ok(!matches!(info, redis::Value::Array(ref items) if unknown(items)))
    }
}
