//! The Lua scripts the lock runs, their SHA1s, and the one place their arguments are laid
//! out.
//!
//! Every compare-and-act step is one script, so that a check and its action are atomic on
//! a node. The SHA1s let the core call EVALSHA without hashing at run time; a unit test
//! checks them against the sources, and `.gitattributes` pins the sources' line endings so
//! that a checkout cannot change their bytes.
//!
//! Each script takes a *tag* as its last argument and returns it on success, as an integer
//! reply. The tag (a decimal number from 1 to 2^53 - 1, exact as a Lua number, and never the
//! scripts' other replies 0 and -1) is different for every call the core makes, so a reply
//! that a connection delivers late, to the wrong call, can never be read as a success of
//! the call that receives it.
//!
//! # Redis Cluster
//!
//! Each script touches exactly one key, `KEYS[1]`, the lock's name, so a Redis Cluster that
//! is one node of the lock runs each call on the master serving that key's hash slot. A
//! script that ever touches more than one key for one lock must keep them in that slot,
//! by a `{hash tag}` of the name in every key (`{invoice:42}:fence`); a cluster refuses a
//! script whose keys span slots (`CROSSSLOT`).

/// A Lua script with its SHA1, as `run_script` sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    name: &'static str,
    source: &'static str,
    sha1: &'static str,
}

impl Script {
    pub(crate) const fn new(name: &'static str, source: &'static str, sha1: &'static str) -> Self {
        Self { name, source, sha1 }
    }

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

/// Sets the key to the value, or refreshes its TTL if it already holds the value, as the
/// [`LockMode`] allows.
///
/// `KEYS[1]` key; `ARGV` as laid out by [`LockArgs`]. Replies the tag (the key holds the
/// value with the new TTL), `0` (absent, not created) or `-1` (may not be touched).
pub const LOCK: Script = Script {
    name: "lock",
    source: include_str!("lua/lock.lua"),
    sha1: "592903430431561a702c8b6cf5afcf6d2660cfd5",
};

/// Deletes the key if it holds the value.
///
/// `KEYS[1]` key; `ARGV` as laid out by [`UnlockArgs`]. Replies the tag (deleted), the
/// array `[tag, n]` (deleted, and the release reached `n > 0` subscribers of its
/// channel), `0` (absent) or `-1` (another value holds it).
pub const UNLOCK: Script = Script {
    name: "unlock",
    source: include_str!("lua/unlock.lua"),
    sha1: "beaa39911b92f5c48e6d8af60995ab24f6b45d08",
};

/// Sets the key to the value if it is absent and the proposed fencing token is above the
/// lock's fence on the node, and keeps the token as the fence (see [`crate::fence`]).
///
/// `KEYS[1]` key, `KEYS[2]` its fence key ([`crate::fence::key`]); `ARGV` as laid out by
/// [`FenceArgs`]. Replies the tag (set), or the array `[refused, fence]`: `refused` is 0
/// when the token is not above the fence, else as [`LOCK`]'s refusal (another value holds
/// the key); `fence` is the node's fence.
pub const FENCE: Script = Script::new(
    "fence",
    include_str!("lua/fence.lua"),
    "5982bcde7ac4ed4be200a90f0e1840c21cb06de5",
);

/// The arguments (`ARGV`) of [`FENCE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceArgs<'a> {
    /// The value that marks the holder.
    pub value: &'a str,
    /// The TTL, as a decimal number of milliseconds.
    pub ttl_ms: &'a str,
    /// The proposed token, as a decimal number from 1 to 2^53 - 1.
    pub token: &'a str,
    /// The call's tag (a decimal number from 1 to 2^53 - 1), returned on success.
    pub tag: &'a str,
}

impl<'a> FenceArgs<'a> {
    /// The arguments in the order the script reads them.
    pub fn argv(&self) -> [&'a str; 4] {
        [self.value, self.ttl_ms, self.token, self.tag]
    }

    /// Reads arguments laid out by [`FenceArgs::argv`].
    pub fn parse(argv: &[&'a str]) -> Option<Self> {
        let [value, ttl_ms, token, tag] = argv else {
            return None;
        };
        Some(Self {
            value,
            ttl_ms,
            token,
            tag,
        })
    }
}

/// What [`LOCK`] may do to the key: its mode argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockMode {
    /// Refresh the TTL only if the key holds the value (extend).
    Refresh,
    /// Set the key if absent, or refresh it if it holds the value (extend with re-create).
    CreateOrRefresh,
    /// Set the key only if absent (acquire): an acquire never takes over a key it did not
    /// create, even one that holds the same value.
    CreateOnly,
}

impl LockMode {
    const ALL: [LockMode; 3] = [Self::Refresh, Self::CreateOrRefresh, Self::CreateOnly];

    /// The mode as the script's argument.
    pub fn arg(self) -> &'static str {
        match self {
            Self::Refresh => "0",
            Self::CreateOrRefresh => "1",
            Self::CreateOnly => "2",
        }
    }

    /// The mode that [`LockMode::arg`] gave `arg`, if any.
    pub fn from_arg(arg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.arg() == arg)
    }
}

/// The arguments (`ARGV`) of [`LOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockArgs<'a> {
    /// The value that marks the holder.
    pub value: &'a str,
    /// The TTL, as a decimal number of milliseconds.
    pub ttl_ms: &'a str,
    /// What the script may do to the key.
    pub mode: LockMode,
    /// The call's tag (a decimal number from 1 to 2^53 - 1), returned on success.
    pub tag: &'a str,
}

impl<'a> LockArgs<'a> {
    /// The arguments in the order the script reads them.
    pub fn argv(&self) -> [&'a str; 4] {
        [self.value, self.ttl_ms, self.mode.arg(), self.tag]
    }

    /// Reads arguments laid out by [`LockArgs::argv`].
    pub fn parse(argv: &[&'a str]) -> Option<Self> {
        let [value, ttl_ms, mode, tag] = argv else {
            return None;
        };
        let mode = LockMode::from_arg(mode)?;
        Some(Self {
            value,
            ttl_ms,
            mode,
            tag,
        })
    }
}

/// The arguments (`ARGV`) of [`UNLOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockArgs<'a> {
    /// The value that marks the holder.
    pub value: &'a str,
    /// The call's tag (a decimal number from 1 to 2^53 - 1), returned on success.
    pub tag: &'a str,
    /// What goes before the key to make the channel the release is published on
    /// ([`RELEASE_CHANNEL_PREFIX`], as in [`release_channel`]), or `""` for none.
    pub channel_prefix: &'a str,
}

impl<'a> UnlockArgs<'a> {
    /// The arguments in the order the script reads them.
    pub fn argv(&self) -> [&'a str; 3] {
        [self.value, self.tag, self.channel_prefix]
    }

    /// Reads arguments laid out by [`UnlockArgs::argv`].
    pub fn parse(argv: &[&'a str]) -> Option<Self> {
        let [value, tag, channel_prefix] = argv else {
            return None;
        };
        Some(Self {
            value,
            tag,
            channel_prefix,
        })
    }
}

/// The channel a release of the lock `name` is published on: `redlock:released:` + the
/// name. The message is `TAG:SHA1`, the release call's tag and the SHA1 (hex) of the
/// released value: the same on every node for one release, never the value itself.
/// Subscribe to it to learn when the lock frees.
pub fn release_channel(name: &str) -> String {
    format!("{RELEASE_CHANNEL_PREFIX}{name}")
}

/// What [`release_channel`] puts before a lock's name.
pub const RELEASE_CHANNEL_PREFIX: &str = "redlock:released:";

/// Every command the lock sends or its scripts call: all that a least-privilege ACL user
/// needs, on the lock's keys (`ACL SETUSER locker on >PASSWORD ~PREFIX* resetchannels
/// -@all +evalsha +eval +get +set +pexpire +pttl +del +info`). Redis checks a script's own
/// calls against the user too. `info` (`INFO server`, once per connection) is for restart
/// quarantine; without it, switch quarantine off (`Options::quarantine(Duration::ZERO)`).
pub const ACL_COMMANDS: &[&str] = &[
    "evalsha", "eval", "get", "set", "pexpire", "pttl", "del", "info",
];

/// The commands a script calls only if it may (`redis.pcall`): a user without them still
/// locks and releases. `publish` announces a release to waiters; grant it with the channel
/// pattern (`+publish &redlock:released:*`).
pub const OPTIONAL_ACL_COMMANDS: &[&str] = &["publish"];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script the crate sends.
    const ALL: [Script; 4] = [LOCK, UNLOCK, FENCE, crate::fence::FENCED_SET];

    #[test]
    fn sha1_constants_match_sources() {
        for script in ALL {
            let digest = sha1_smol::Sha1::from(script.source()).digest().to_string();
            assert_eq!(
                digest,
                script.sha1(),
                "stale SHA1 for script {}",
                script.name()
            );
            assert!(
                !script.source().contains('\r'),
                "{} has CRLF",
                script.name()
            );
        }
    }

    #[test]
    fn acl_commands_cover_every_call_of_the_scripts() {
        for script in ALL {
            for (call, list) in [
                ("redis.call(", ACL_COMMANDS),
                ("redis.pcall(", OPTIONAL_ACL_COMMANDS),
            ] {
                for rest in script.source().split(call).skip(1) {
                    let command = rest.split(['"', '\'']).nth(1).unwrap_or_default();
                    let listed = list.contains(&command.to_lowercase().as_str());
                    assert!(listed, "{} {call}{command}) is not listed", script.name());
                }
            }
        }
    }

    #[test]
    fn modes_and_arguments_round_trip() {
        for mode in LockMode::ALL {
            assert_eq!(LockMode::from_arg(mode.arg()), Some(mode));
        }
        assert_eq!(LockMode::from_arg("3"), None);
        let lock = LockArgs {
            value: "v",
            ttl_ms: "10",
            mode: LockMode::CreateOnly,
            tag: "t",
        };
        assert_eq!(LockArgs::parse(&lock.argv()), Some(lock));
        assert_eq!(LockArgs::parse(&["v", "10", "9", "t"]), None);
        let unlock = UnlockArgs {
            value: "v",
            tag: "t",
            channel_prefix: "c",
        };
        assert_eq!(UnlockArgs::parse(&unlock.argv()), Some(unlock));
        assert_eq!(UnlockArgs::parse(&["v", "t"]), None);
    }
}
