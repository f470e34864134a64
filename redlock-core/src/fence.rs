//! Fencing tokens: numbers that grow with every holding of a lock, across a quorum of
//! independent nodes, so that the resource a lock protects can refuse a holder whose turn
//! has passed (see `FENCING.md` at the repository root for the claim, its assumptions and
//! its proof).
//!
//! Each node keeps a *fence* per lock name, a key without expiry ([`key`]). A fenced
//! acquire proposes a token one more than the largest fence this manager has seen; a
//! node grants it only if the lock is free there and the token is above its fence, and
//! then stores the token as its fence. A refusal reports the node's fence, so the next
//! proposal clears it. A holding begins when a [`quorum`] of nodes granted one token:
//! any two such quorums share a node, and that node saw the earlier token first, so the
//! later token is larger.
//!
//! The resource checks the token on every write: [`FENCED_SET`] does it for data kept in
//! Redis ([`fenced_set`]), and `FENCING.md` shows the same check for a SQL row.

use std::fmt;
use std::num::NonZeroU64;

use crate::conn::{Conn, ConnError, ConnErrorKind, Reply, run_script};
use crate::error::{Error, Result};
use crate::scripts::Script;

/// The largest token: Lua numbers are doubles, exact up to 2^53.
pub const MAX_TOKEN: u64 = (1 << 53) - 1;

/// What [`key`] puts after a lock's name, or after its `{hash tag}`.
pub const KEY_SUFFIX: &str = ":fence";

/// The key that keeps a lock's fence on each node: the name and [`KEY_SUFFIX`] when the
/// name has a Redis Cluster `{hash tag}`, else the name in braces and the suffix
/// (`invoice:42` → `{invoice:42}:fence`). Either way it hashes to the lock's own slot, so
/// a Redis Cluster runs the fenced acquire (which touches both keys) on one master.
///
/// # Errors
///
/// [`Error::Config`] for a name with a `}` but no hash tag (`a}b`): no key
/// hashes to its slot in a way the braces can spell. Give it a hash tag (`{a}b`).
pub fn key(name: &str) -> Result<String> {
    if hash_tag(name).is_some() {
        return Ok(format!("{name}{KEY_SUFFIX}"));
    }
    if name.contains('}') {
        let message = format!(
            "a fenced lock's name needs a {{hash tag}} or no '}}', so that its fence key \
             hashes to the lock's slot; \"{name}\" has neither"
        );
        return Err(Error::config(message));
    }
    Ok(format!("{{{name}}}{KEY_SUFFIX}"))
}

/// The part of `key` that Redis Cluster hashes, when it is not the whole key: the text
/// between the first `{` and the first `}` after it, if not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// How many of `nodes` must grant one token for a fenced holding to begin, when up to
/// `tolerance` nodes may lose their fences (restart without their data) between two
/// holdings of a lock: `⌊(nodes + tolerance) / 2⌋ + 1`. Two such quorums share at least
/// `tolerance + 1` nodes, so one of them kept the earlier token. `None` when that is more
/// than `nodes`.
///
/// With `tolerance` 0 it is the majority, the lock's own quorum; with 3 nodes and a
/// tolerance of 1 it is all 3, with 5 nodes and 1 or 2 it is 4.
pub fn quorum(nodes: usize, tolerance: usize) -> Option<usize> {
    let quorum = nodes.checked_add(tolerance)? / 2 + 1;
    (quorum <= nodes).then_some(quorum)
}

/// Writes `value` to `key` only if `token` is at least the token of the last write
/// (kept in `fence_key`), and then keeps `token` as that: the resource side of fencing,
/// for data kept in Redis.
///
/// `KEYS[1]` the data, `KEYS[2]` its fence (in the same hash slot on a cluster: give
/// both one `{hash tag}`); `ARGV[1]` the value, `ARGV[2]` the token. Replies 1 (written)
/// or `-F`, where F is the token of the newer writer that got there first.
pub const FENCED_SET: Script = Script::new(
    "fenced_set",
    include_str!("lua/fenced_set.lua"),
    "76033358ded098bed2284c0e75b214ece174ad9b",
);

/// A fencing token: from 1 to [`MAX_TOKEN`], larger for every later holding of a lock.
///
/// Hand it to the resource with every write the holding makes; the resource keeps the
/// largest token it has seen and refuses writes under a smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(NonZeroU64);

impl Token {
    /// The token `value`, if it is from 1 to [`MAX_TOKEN`].
    pub fn new(value: u64) -> Option<Self> {
        NonZeroU64::new(value)
            .filter(|v| v.get() <= MAX_TOKEN)
            .map(Self)
    }

    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What [`fenced_set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The value was written under the token.
    Written,
    /// A holder with a larger token has written since: the write was refused, and the
    /// caller's holding has passed.
    Stale {
        /// The newer token.
        newer: u64,
    },
}

/// Runs [`FENCED_SET`] on a connection: writes `value` to `key` if `token` is not older
/// than the last write's (kept in `fence_key`).
///
/// # Errors
///
/// The connection's error when the call fails, and [`ConnErrorKind::Protocol`] for a
/// reply the script cannot give (another script under its SHA1).
pub async fn fenced_set<C: Conn + ?Sized>(
    conn: &mut C,
    key: &str,
    fence_key: &str,
    value: &str,
    token: Token,
) -> Result<Write, ConnError> {
    let mut digits = itoa::Buffer::new();
    let args = [value, digits.format(token.get())];
    match run_script(conn, &FENCED_SET, &[key, fence_key], &args).await? {
        Reply::Int(1) => Ok(Write::Written),
        Reply::Int(newer @ ..=-1) => Ok(Write::Stale {
            newer: newer.unsigned_abs(),
        }),
        other => {
            let message = format!("unexpected reply {other:?} to a fenced write");
            Err(ConnError::new(ConnErrorKind::Protocol, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_keys_share_the_locks_hash_tag() {
        for name in ["invoice:42", "a", "{", "a{", "{{"] {
            let key = key(name).unwrap_or_default();
            assert_eq!(hash_tag(&key), Some(name), "{name} -> {key}");
        }
        for name in ["{user:1}:lock", "a{b}c", "{a}{b}", "{{b}"] {
            let key = key(name).unwrap_or_default();
            assert_eq!(hash_tag(&key), hash_tag(name), "{name} -> {key}");
            assert!(hash_tag(name).is_some(), "{name}");
        }
        for name in ["a}b", "}", "{}", "x{}y{z}"] {
            assert!(key(name).is_err_and(|e| e.is_config()), "{name}");
        }
    }

    #[test]
    fn fence_quorums_overlap_in_more_nodes_than_may_lose_their_fences() {
        for nodes in 1..=9 {
            for tolerance in 0..nodes {
                let Some(q) = quorum(nodes, tolerance) else {
                    assert!((nodes + tolerance) / 2 >= nodes, "{nodes} {tolerance}");
                    continue;
                };
                assert!(2 * q > nodes + tolerance, "{nodes} {tolerance}");
                assert!(
                    2 * (q - 1) <= nodes + tolerance,
                    "{nodes} {tolerance}: not least"
                );
            }
        }
        assert_eq!(quorum(3, 0), Some(2));
        assert_eq!(quorum(3, 1), Some(3));
        assert_eq!(quorum(3, 2), Some(3));
        assert_eq!(quorum(3, 3), None);
        assert_eq!(quorum(5, 2), Some(4));
        assert_eq!(quorum(usize::MAX, 1), None);
    }

    #[test]
    fn tokens_are_exact_lua_numbers() {
        assert_eq!(Token::new(0), None);
        assert_eq!(Token::new(MAX_TOKEN + 1), None);
        assert_eq!(Token::new(MAX_TOKEN).map(Token::get), Some(MAX_TOKEN));
        assert_eq!(Token::new(7).map(|t| t.to_string()), Some("7".into()));
    }
}
