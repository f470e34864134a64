//! The Lua scripts the lock runs, with their SHA1s as constants.
//!
//! Every compare-and-act step is one script, so that a check and its action are atomic on
//! a node. The SHA1s let the core call EVALSHA without hashing at run time; a unit test
//! checks them against the sources.

/// A Lua script with its SHA1, as sent by [`run_script`](crate::run_script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    name: &'static str,
    source: &'static str,
    sha1: &'static str,
}

impl Script {
    /// A short name for messages and traces.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Lua source, for EVAL.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The lowercase hex SHA1 of [`Script::source`], for EVALSHA.
    pub fn sha1(&self) -> &'static str {
        self.sha1
    }
}

/// Sets the key to the value, or refreshes its TTL if it already holds the value.
///
/// `KEYS[1]` key; `ARGV[1]` value; `ARGV[2]` TTL in milliseconds; `ARGV[3]` mode: `"0"`
/// refresh only (extend), `"1"` create or refresh (acquire with a value unique to the call,
/// or extend with re-create), `"2"` create only (acquire with a value that may not be
/// unique). Replies `1` (holds the value with the new TTL), `0` (absent, not created) or
/// `-1` (may not be touched). Modes `"0"` and `"1"` are idempotent for one value, so a call
/// that a client replays after a reconnect is harmless.
pub const LOCK: Script = Script {
    name: "lock",
    source: include_str!("lua/lock.lua"),
    sha1: "e9069aad4dc3a29be60892e6f76f3914c8bc81e5",
};

/// Deletes the key if it holds the value.
///
/// `KEYS[1]` key; `ARGV[1]` value. Replies `1` (deleted), `0` (absent) or `-1` (another
/// value holds it).
pub const UNLOCK: Script = Script {
    name: "unlock",
    source: include_str!("lua/unlock.lua"),
    sha1: "0bd0e3a0e0feaca1a313427a1fd185c25ec6c726",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_constants_match_sources() {
        for script in [LOCK, UNLOCK] {
            let digest = sha1_smol::Sha1::from(script.source()).digest().to_string();
            assert_eq!(
                digest,
                script.sha1(),
                "stale SHA1 for script {}",
                script.name()
            );
        }
    }
}
