//! How one node call is sent: by EVALSHA, falling back to EVAL; with the node's age read
//! first when its connection may be new (restart quarantine); and with `WAITAOF`
//! pipelined after the script for durable votes.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Call, Op};
use crate::conn::{Conn, ConnError, ConnErrorKind, Pool, Reply, ScriptRef};
use crate::scripts::{FENCE, LOCK, Script, UNLOCK};

/// The arguments of the `WAITAOF` that follows a script for durable votes.
#[derive(Debug, Clone)]
pub(crate) struct WaitAof {
    /// How many replicas must have the write in their append-only file too.
    pub(crate) replicas: Arc<str>,
    /// How long the server may wait, in milliseconds: the per-node timeout.
    pub(crate) timeout_ms: Arc<str>,
}

impl<P: Pool> Call<P> {
    /// Runs `script` by EVALSHA, and by EVAL when the node does not know it. A node that
    /// forgot a script it had run emptied its script cache (a restart, or a flush): its
    /// connection is suspected new, and a grant's age read again before it counts.
    pub(super) async fn script(
        &self,
        node: usize,
        conn: &mut P::Conn,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let (ages, bit) = (self.nodes.ages(), script_bit(script));
        let reply = match self
            .send(conn, ScriptRef::Sha1(script.sha1()), keys, args)
            .await
        {
            Err(e) if e.kind() == ConnErrorKind::NoScript => {
                // The grant is checked after the script (`Call::run`).
                if ages.lost_script(node, bit) {
                    ages.forget_connection(node);
                }
                self.send(conn, ScriptRef::Source(script.source()), keys, args)
                    .await
            }
            other => other,
        };
        if reply.is_ok() {
            ages.ran(node, bit);
        }
        reply
    }

    /// Sends the script; with durable votes, `WAITAOF` right after it, and a success
    /// counts only once that confirms it reached the append-only file. A refusal needs
    /// no confirmation.
    async fn send(
        &self,
        conn: &mut P::Conn,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let Some(wait) = self.durable.as_ref().filter(|_| self.is_set()) else {
            return conn.eval(script, keys, args).await;
        };
        let then = ["WAITAOF", "1", &wait.replicas, &wait.timeout_ms];
        let replied = conn.eval_then(script, keys, args, &then).await;
        let (reply, waited) = replied.map_err(durability_unavailable)?;
        let reply = reply?;
        if reply != Reply::Int(self.tag) {
            return Ok(reply);
        }
        confirm_durable(waited.map_err(durability_unavailable)?, &wait.replicas)?;
        Ok(reply)
    }

    /// Whether this call sets or refreshes the key (not a release).
    fn is_set(&self) -> bool {
        !matches!(self.op, Op::Unlock { .. })
    }

    /// What tells a new connection to `node`: the times the core suspected one, and the
    /// driver's epoch.
    pub(super) fn connection_seen(&self, node: usize, conn: &P::Conn) -> (u64, Option<u64>) {
        (self.nodes.ages().suspicions(node), conn.epoch())
    }

    /// Reads the node's age (`INFO server`) when the connection may be new since it was
    /// last read; returns what told the connection apart when it was checked.
    pub(super) async fn check_age(
        &self,
        node: usize,
        conn: &mut P::Conn,
    ) -> Result<(u64, Option<u64>), ConnError> {
        let ages = self.nodes.ages();
        let seen = self.connection_seen(node, conn);
        let epoch = seen.1;
        if !ages.needs_check(node, epoch) {
            return Ok(seen);
        }
        match conn.command(&["INFO", "server"]).await {
            Ok(info) => ages
                .record(node, epoch, &info, Instant::now())
                .map(|()| seen),
            Err(e) if e.kind() == ConnErrorKind::Unsupported => {
                ages.unsupported(node);
                Ok(seen)
            }
            // Refused, not failed: say what for, since an ACL user needs `+info`.
            Err(e) if matches!(e.kind(), ConnErrorKind::Permission | ConnErrorKind::Command) => {
                let message =
                    format!("restart quarantine could not read the node's age (INFO server): {e}");
                Err(ConnError::new(e.kind(), message))
            }
            Err(e) => Err(e),
        }
    }
}

/// Reads `WAITAOF`'s reply, `[local, replicas]`: the write reached this node's
/// append-only file and `replicas` of its replicas', or the vote fails.
fn confirm_durable(waited: Reply, replicas: &str) -> Result<(), ConnError> {
    let needed: i64 = replicas.parse().unwrap_or(i64::MAX);
    match waited {
        Reply::Array(counts) => match counts[..] {
            [Reply::Int(local), Reply::Int(acked)] if local >= 1 && acked >= needed => Ok(()),
            [Reply::Int(local), Reply::Int(acked)] => {
                let message = format!(
                    "the write did not reach the append-only file in time (WAITAOF: local \
                     {local}, replicas {acked} of {needed})"
                );
                Err(ConnError::new(ConnErrorKind::Timeout, message))
            }
            _ => Err(odd_wait(&Reply::Array(counts))),
        },
        other => Err(odd_wait(&other)),
    }
}

fn odd_wait(reply: &Reply) -> ConnError {
    let message = format!("unexpected WAITAOF reply: {}", reply.shape());
    ConnError::new(ConnErrorKind::Protocol, message)
}

/// Says what durable votes need, when a node or driver cannot give them.
fn durability_unavailable(e: ConnError) -> ConnError {
    let need = match e.kind() {
        ConnErrorKind::Unsupported => "a driver that pipelines (Conn::eval_then)",
        ConnErrorKind::Command | ConnErrorKind::Permission => {
            "WAITAOF (Redis 7.2+, Valkey 8) on a master with appendonly yes"
        }
        _ => return e,
    };
    let message = format!("durable votes need {need}: {e}");
    ConnError::new(e.kind(), message)
}

/// The bit of `script` in a node's set of scripts it has run.
///
/// Runs on every node call: compared by SHA1 (40 bytes), not by the whole source.
fn script_bit(script: &Script) -> u8 {
    [LOCK, UNLOCK, FENCE]
        .iter()
        .position(|s| s.sha1() == script.sha1())
        .map_or(8, |i| 1 << i)
}
