//! Restart quarantine: a node that started less than the quarantine period ago gets no
//! vote in an acquire.
//!
//! A node that restarts without its data forgets the keys it held, and would grant a lock
//! that is still held on the other nodes of its holder's quorum. The spec's remedy is to
//! keep a restarted node out of service for the longest expiry; the core enforces it.
//! It learns each node's start from `INFO server` (`run_id`, `uptime_in_seconds`), read
//! on the connection before an acquire call whenever that connection may be new: at
//! first use, when the driver's [`Conn::epoch`](crate::Conn::epoch) changed, after a call
//! failed on a connection error, after a reconnect, and after a `NOSCRIPT` for a script
//! the node had run (its cache emptied; a hint only, since another client may have loaded
//! the script again first). A grant is confirmed the same way after the script when the
//! epoch or those suspicions changed while it ran, so a connection replaced under a call
//! is read before its grant counts. In the steady state none of this happens, and the
//! uncontended path pays no round trip. A node younger than the period still takes the
//! key (and is released with the rest), but its grant does not count towards the quorum.
//!
//! The uptime is the difference of two whole-second clock readings, off by up to a second
//! either way, so a node is taken to have started a second after the uptime says: up to
//! two seconds after it did. The quarantine errs long.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{ConnError, ConnErrorKind, Reply};

/// How far `uptime_in_seconds` may be from the truth: Redis subtracts its start time in
/// whole seconds from the time now in whole seconds.
const UPTIME_ERROR: Duration = Duration::from_secs(1);

/// What the core knows of one node's age.
#[derive(Debug, Default)]
struct Age {
    /// Whether `INFO server` was read (or found unsupported) on the current connection.
    checked: bool,
    /// The epoch of the connection it was read on.
    epoch: Option<u64>,
    /// When the node started, on this process's clock; `None` when unknown (never young).
    started: Option<Instant>,
    run_id: Option<Box<str>>,
    /// The driver cannot send `INFO`: quarantine is not enforced on this node.
    unsupported: bool,
}

/// Each node's age, and which scripts it has run, by index.
#[derive(Debug)]
pub(crate) struct Ages {
    ages: Box<[Mutex<Age>]>,
    /// A bit per script ([`Ages::ran`]) that the node has run: a `NOSCRIPT` for one of
    /// them means its script cache emptied (a restart or a flush), while one for a
    /// script it never ran is only its first use.
    scripts: Box<[AtomicU8]>,
    /// How many times the core suspected a new connection to each node
    /// ([`Ages::forget_connection`]): a call compares it before and after its script.
    suspicions: Box<[AtomicU64]>,
}

impl Ages {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            ages: (0..nodes).map(|_| Mutex::default()).collect(),
            scripts: (0..nodes).map(|_| AtomicU8::new(0)).collect(),
            suspicions: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn with<T>(&self, node: usize, f: impl FnOnce(&mut Age) -> T) -> Option<T> {
        let age = self.ages.get(node)?;
        Some(f(&mut age.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Notes that `node` ran the script with bit `script`.
    pub(crate) fn ran(&self, node: usize, script: u8) {
        if let Some(ran) = self.scripts.get(node)
            && ran.load(Ordering::Relaxed) & script == 0
        {
            ran.fetch_or(script, Ordering::Relaxed);
        }
    }

    /// Whether a `NOSCRIPT` from `node` for the script with bit `script` means its cache
    /// emptied since it ran it; forgets every script it ran if so (and only then: a first
    /// use keeps what the other scripts say).
    pub(crate) fn lost_script(&self, node: usize, script: u8) -> bool {
        let Some(ran) = self.scripts.get(node) else {
            return false;
        };
        let forget = |ran: u8| (ran & script != 0).then_some(0);
        ran.fetch_update(Ordering::Relaxed, Ordering::Relaxed, forget)
            .is_ok()
    }

    /// Whether a call over a connection with `epoch` must read the node's age first.
    pub(crate) fn needs_check(&self, node: usize, epoch: Option<u64>) -> bool {
        let stale = |age: &mut Age| !age.unsupported && (!age.checked || age.epoch != epoch);
        self.with(node, stale).unwrap_or(false)
    }

    /// The connection to `node` may be new: read its age before its next vote counts.
    pub(crate) fn forget_connection(&self, node: usize) {
        if let Some(suspicions) = self.suspicions.get(node) {
            suspicions.fetch_add(1, Ordering::Relaxed);
        }
        self.with(node, |age| age.checked = false);
    }

    /// How many times the connection to `node` was suspected new so far.
    pub(crate) fn suspicions(&self, node: usize) -> u64 {
        self.suspicions
            .get(node)
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }

    /// Records the reply to `INFO server`, read at `at` over a connection with `epoch`.
    ///
    /// # Errors
    ///
    /// [`ConnErrorKind::Protocol`] when the reply has no `run_id` or uptime.
    pub(crate) fn record(
        &self,
        node: usize,
        epoch: Option<u64>,
        info: &Reply,
        at: Instant,
    ) -> Result<(), ConnError> {
        let (run_id, uptime) = parse_info(info)?;
        let started = (at + UPTIME_ERROR).checked_sub(Duration::from_secs(uptime));
        self.with(node, |age| {
            // The same server: keep the later estimate of its start (the longer wait).
            let same = age.run_id.as_deref() == Some(run_id.as_str());
            age.started = match (same, age.started, started) {
                (true, Some(old), Some(new)) => Some(old.max(new)),
                _ => started,
            };
            age.run_id = Some(run_id.into());
            (age.checked, age.epoch) = (true, epoch);
        });
        Ok(())
    }

    /// The driver cannot send `INFO` to `node`: its votes count without a check.
    pub(crate) fn unsupported(&self, node: usize) {
        self.with(node, |age| age.unsupported = true);
    }

    /// How much longer `node` stays in quarantine, if it started less than `period` ago.
    pub(crate) fn young(&self, node: usize, period: Duration) -> Option<Duration> {
        let started = self.with(node, |age| age.started).flatten()?;
        let left = started
            .checked_add(period)?
            .checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }
}

/// The `run_id` and `uptime_in_seconds` of an `INFO server` reply.
fn parse_info(info: &Reply) -> Result<(String, u64), ConnError> {
    let text = match info {
        Reply::Data(bytes) => String::from_utf8_lossy(bytes),
        other => return Err(bad_info(&format!("{other:?}"))),
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let run_id = field("run_id").filter(|id| !id.is_empty());
    let uptime = field("uptime_in_seconds").and_then(|u| u.parse().ok());
    match (run_id, uptime) {
        (Some(run_id), Some(uptime)) => Ok((run_id.to_owned(), uptime)),
        _ => Err(bad_info("a reply without run_id or uptime_in_seconds")),
    }
}

fn bad_info(what: &str) -> ConnError {
    let message = format!("INFO server gave {what}: cannot tell the node's age");
    ConnError::new(ConnErrorKind::Protocol, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(run_id: &str, uptime: u64) -> Reply {
        let text = format!(
            "# Server\r\nredis_version:7.0.15\r\nrun_id:{run_id}\r\nuptime_in_seconds:{uptime}\r\n"
        );
        Reply::Data(text.into_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_is_young_until_the_period_after_its_start() {
        let ages = Ages::new(2);
        assert!(ages.needs_check(0, None));
        ages.record(0, None, &info("a", 3), Instant::now())
            .unwrap_or_default();
        assert!(!ages.needs_check(0, None));
        assert!(
            ages.needs_check(0, Some(1)),
            "a new epoch is a new connection"
        );
        let period = Duration::from_secs(8);
        assert_eq!(
            ages.young(0, period),
            Some(Duration::from_secs(6)),
            "a second more"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(ages.young(0, period), None);
        assert_eq!(ages.young(1, period), None, "unknown is never young");
        ages.forget_connection(0);
        assert!(ages.needs_check(0, None));
        ages.record(0, None, &info("b", 0), Instant::now())
            .unwrap_or_default();
        let left = period + UPTIME_ERROR;
        assert_eq!(ages.young(0, period), Some(left), "restarted");
        ages.unsupported(1);
        assert!(!ages.needs_check(1, Some(7)));
    }

    #[test]
    fn replies_without_the_fields_are_protocol_errors() {
        for reply in [
            Reply::Nil,
            Reply::Data(b"run_id:\r\nuptime_in_seconds:3".to_vec()),
            Reply::Data(b"run_id:a\r\nuptime_in_seconds:x".to_vec()),
        ] {
            let err = parse_info(&reply).err().map(|e| e.kind());
            assert_eq!(err, Some(ConnErrorKind::Protocol), "{reply:?}");
        }
        assert_eq!(parse_info(&info("abc", 12)).ok(), Some(("abc".into(), 12)));
    }
}
