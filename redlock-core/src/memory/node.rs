//! The node itself: its data, its script cache, and the faults that hit every client.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::subscriber::Link;
use crate::conn::{ConnError, ConnErrorKind, Reply, ScriptRef};
use crate::fence::FENCED_SET;
use crate::scripts::{FENCE, FenceArgs, LOCK, LockArgs, LockMode, Script, UNLOCK, UnlockArgs};

/// The uptime of a node that has not restarted in the test: longer than any quarantine.
const UP_SINCE_LONG_AGO: u64 = 3 * 365 * 24 * 3600;

/// A command as sent: script, keys and arguments.
#[derive(Debug, Clone)]
pub(super) struct Command {
    by_sha: bool,
    script: String,
    keys: Vec<String>,
    args: Vec<String>,
}

impl Command {
    pub(super) fn new(script: ScriptRef<'_>, keys: &[&str], args: &[&str]) -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            by_sha: matches!(script, ScriptRef::Sha1(_)),
            script: script.text().to_owned(),
            keys: owned(keys),
            args: owned(args),
        }
    }

    /// Whether this command runs `script`.
    fn runs(&self, script: &Script) -> bool {
        let text = if self.by_sha {
            script.sha1()
        } else {
            script.source()
        };
        text == self.script
    }
}

/// What became of a command at the node.
pub(super) enum Arrival {
    /// The node ran it; the reply comes after the latency.
    Answer(Result<Reply, ConnError>, Duration),
    /// No reply will ever come.
    Never,
}

#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) data: HashMap<String, (String, Instant)>,
    /// Keys without expiry (fences, data written under a fencing token).
    pub(super) persistent: HashMap<String, String>,
    pub(super) scripts_loaded: bool,
    pub(super) latency: Duration,
    pub(super) transit: Duration,
    pub(super) down: bool,
    pub(super) hang: bool,
    pub(super) failure: Option<(ConnErrorKind, String)>,
    /// The network swallows every byte (no reply, no reset) while set.
    pub(super) swallowing: bool,
    /// How many times the network began to swallow: a connection made before the last
    /// time stays silent, even once the network heals.
    pub(super) swallows: u64,
    pub(super) queueing: bool,
    pub(super) queued: Vec<Command>,
    pub(super) calls: u64,
    /// The channels releases were published on, in order.
    pub(super) published: Vec<String>,
    /// The subscriber connections, open or closed.
    pub(super) subscribers: Vec<Link>,
    /// How many subscriber connections were ever opened.
    pub(super) subscribers_opened: u64,
    /// Releases are published but reach no subscriber while set.
    pub(super) losing_messages: bool,
    /// How many times the node restarted: its `run_id`, and part of every connection's
    /// epoch.
    pub(super) incarnation: u64,
    /// When it last restarted; `None` for a node up since long before the test.
    pub(super) started: Option<Instant>,
    /// How many `INFO server` it answered.
    pub(super) infos: u64,
    /// Whether it keeps an append-only file (`WAITAOF` confirms writes only then).
    pub(super) appendonly: bool,
}

impl Node {
    /// Runs, holds or swallows a command that arrived over a connection made when the
    /// network had begun to swallow `seen` times.
    pub(super) fn arrive(&mut self, command: Command, seen: u64) -> Result<Arrival, ConnError> {
        if self.down {
            let refused = ConnError::new(ConnErrorKind::Connection, "connection refused");
            return Err(refused);
        }
        if self.swallowing || seen < self.swallows {
            return Ok(Arrival::Never);
        }
        self.calls += 1;
        if self.queueing {
            self.queued.push(command);
            return Ok(Arrival::Never);
        }
        if let Some((kind, message)) = &self.failure {
            return Err(ConnError::new(*kind, message.clone()));
        }
        let reply = self.apply(&command);
        if self.hang {
            return Ok(Arrival::Never);
        }
        Ok(Arrival::Answer(reply, self.latency))
    }

    /// Runs the held commands, in the order they were sent.
    pub(super) fn deliver_queued(&mut self) {
        for command in std::mem::take(&mut self.queued) {
            // Nobody waits for these replies.
            drop(self.apply(&command));
        }
    }

    fn apply(&mut self, command: &Command) -> Result<Reply, ConnError> {
        if command.by_sha && !self.scripts_loaded {
            let message = "NOSCRIPT no matching script";
            return Err(ConnError::new(ConnErrorKind::NoScript, message));
        }
        self.scripts_loaded = true;
        let now = Instant::now();
        self.data.retain(|_, (_, at)| *at > now);
        let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
        let key = command.keys.first().map(String::as_str).unwrap_or_default();
        if command.runs(&UNLOCK)
            && let Some(args) = UnlockArgs::parse(&args)
        {
            return Ok(self.unlock(key, args));
        }
        if command.runs(&LOCK)
            && let Some(args) = LockArgs::parse(&args)
            && let Ok(ttl) = args.ttl_ms.parse::<u64>()
        {
            return Ok(self.lock(key, args, now, now + Duration::from_millis(ttl)));
        }
        if command.runs(&FENCE)
            && let (Some(args), [key, fence_key]) = (FenceArgs::parse(&args), &command.keys[..])
            && let (Ok(ttl), Ok(token)) = (args.ttl_ms.parse::<u64>(), args.token.parse())
        {
            let until = now + Duration::from_millis(ttl);
            return self.fence(key, fence_key, args, token, until);
        }
        if command.runs(&FENCED_SET)
            && let ([key, fence_key], [value, token]) = (&command.keys[..], &args[..])
            && let Ok(token) = token.parse::<i64>()
        {
            return self.fenced_set(key, fence_key, value, token);
        }
        let message = "ERR unknown script or arguments";
        Err(ConnError::new(ConnErrorKind::Command, message))
    }

    fn unlock(&mut self, key: &str, args: UnlockArgs<'_>) -> Reply {
        match self.data.get(key).map(|(v, _)| v.as_str()) {
            None => Reply::Int(0),
            Some(v) if v == args.value => {
                self.data.remove(key);
                if args.channel_prefix.is_empty() {
                    return echo(args.tag);
                }
                let channel = format!("{}{key}", args.channel_prefix);
                let release = release_payload(args.tag, args.value);
                let heard = self.publish(&channel, &release);
                self.published.push(channel);
                match i64::try_from(heard) {
                    Ok(heard @ 1..) => Reply::Array(vec![echo(args.tag), Reply::Int(heard)]),
                    _ => echo(args.tag),
                }
            }
            Some(_) => Reply::Int(-1),
        }
    }

    /// Delivers `payload` to the subscribers of `channel` (none while losing messages);
    /// how many got it.
    pub(super) fn publish(&self, channel: &str, payload: &[u8]) -> usize {
        if self.losing_messages {
            return 0;
        }
        let reached = self.subscribers.iter();
        reached.filter(|s| s.deliver(channel, payload)).count()
    }

    fn lock(&mut self, key: &str, args: LockArgs<'_>, now: Instant, until: Instant) -> Reply {
        let current = self
            .data
            .get(key)
            .map(|(v, expires)| (v.as_str(), *expires));
        let refresh =
            current.is_some_and(|(v, _)| v == args.value) && args.mode != LockMode::CreateOnly;
        if let Some((_, expires)) = current
            && !refresh
        {
            // As the script: -2 - the key's remaining ttl in milliseconds.
            let left = expires.saturating_duration_since(now).as_millis();
            return Reply::Int((-2_i64).saturating_sub(i64::try_from(left).unwrap_or(i64::MAX)));
        }
        if current.is_none() && args.mode == LockMode::Refresh {
            return Reply::Int(0);
        }
        let entry = (args.value.to_owned(), until);
        self.data.insert(key.to_owned(), entry);
        echo(args.tag)
    }
}

impl Node {
    /// Restarts the node: every connection is new, the scripts are gone, and the data too
    /// unless `keep_data`.
    pub(super) fn restart(&mut self, keep_data: bool) {
        self.incarnation += 1;
        self.started = Some(Instant::now());
        self.scripts_loaded = false;
        if !keep_data {
            self.data.clear();
            self.persistent.clear();
        }
    }

    /// The reply to `INFO server`: the `run_id` and the uptime (three years for a node up since
    /// before the test).
    pub(super) fn info_server(&mut self) -> Result<Reply, ConnError> {
        if self.down {
            let refused = ConnError::new(ConnErrorKind::Connection, "connection refused");
            return Err(refused);
        }
        self.infos += 1;
        let uptime = self
            .started
            .map_or(UP_SINCE_LONG_AGO, |at| at.elapsed().as_secs());
        let text = format!(
            "# Server\r\nrun_id:{:040x}\r\nuptime_in_seconds:{uptime}\r\n",
            self.incarnation
        );
        Ok(Reply::Data(text.into_bytes()))
    }

    /// The reply to `WAITAOF 1 0 …` after a write: confirmed at once with an append-only
    /// file, refused without one, as Redis does.
    pub(super) fn wait_aof(&self) -> Result<Reply, ConnError> {
        if self.appendonly {
            return Ok(Reply::Array(vec![Reply::Int(1), Reply::Int(0)]));
        }
        let message = "ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.";
        Err(ConnError::new(ConnErrorKind::Command, message))
    }

    /// A number kept in `key` (0 when absent), as the scripts read a fence.
    fn number(&self, key: &str) -> Result<i64, ConnError> {
        let Some(text) = self.persistent.get(key) else {
            return Ok(0);
        };
        text.parse().map_err(|_| {
            let message = format!("ERR the fence key {key} does not hold a number");
            ConnError::new(ConnErrorKind::Command, message)
        })
    }

    /// As the fenced acquire script.
    fn fence(
        &mut self,
        key: &str,
        fence_key: &str,
        args: FenceArgs<'_>,
        token: i64,
        until: Instant,
    ) -> Result<Reply, ConnError> {
        let fence = self.number(fence_key)?;
        if let Some((_, expires)) = self.data.get(key) {
            let left = expires
                .saturating_duration_since(Instant::now())
                .as_millis();
            let left = i64::try_from(left).unwrap_or(i64::MAX);
            let refused = (-2_i64).saturating_sub(left);
            return Ok(Reply::Array(vec![Reply::Int(refused), Reply::Int(fence)]));
        }
        if token <= fence {
            return Ok(Reply::Array(vec![Reply::Int(0), Reply::Int(fence)]));
        }
        let entry = (args.value.to_owned(), until);
        self.data.insert(key.to_owned(), entry);
        self.persistent
            .insert(fence_key.to_owned(), args.token.to_owned());
        Ok(echo(args.tag))
    }

    /// As the fenced write script.
    fn fenced_set(
        &mut self,
        key: &str,
        fence_key: &str,
        value: &str,
        token: i64,
    ) -> Result<Reply, ConnError> {
        let fence = self.number(fence_key)?;
        if self.persistent.contains_key(fence_key) && token < fence {
            return Ok(Reply::Int(-fence));
        }
        self.persistent.insert(key.to_owned(), value.to_owned());
        self.persistent
            .insert(fence_key.to_owned(), token.to_string());
        Ok(Reply::Int(1))
    }
}

/// What a release announces: the tag and a digest of the value, as the script does (the
/// script's digest is SHA1; any digest tells one release from another here).
fn release_payload(tag: &str, value: &str) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    format!("{tag}:{:016x}", hasher.finish()).into_bytes()
}

/// The scripts' success reply: the tag as a number (`tonumber`), nil if it is none.
fn echo(tag: &str) -> Reply {
    tag.parse().map_or(Reply::Nil, Reply::Int)
}
