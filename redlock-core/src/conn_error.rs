//! What a driver reports when a call to its node fails: [`ConnError`] and its
//! [`ConnErrorKind`], which decides what the core does next.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// What went wrong talking to one node, as reported by a driver.
///
/// Drivers map their client's errors into this type; the core adds the node (see
/// [`NodeError`](crate::NodeError)). The message is short and lowercase and does not
/// repeat the source's text: the client's error is the `source()`.
#[derive(Debug)]
pub struct ConnError {
    kind: ConnErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The class of a [`ConnError`]: what the core needs to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ConnErrorKind {
    /// The server does not have the script cached (`NOSCRIPT`): retry with EVAL.
    NoScript,
    /// The node could not be reached, or the connection broke.
    Connection,
    /// The call did not finish within the per-node timeout.
    Timeout,
    /// No pooled connection was free in time.
    PoolExhausted,
    /// The server refused the credentials, or wants some (`WRONGPASS`, `NOAUTH`).
    Auth,
    /// The server's ACL forbids the command or the key (`NOPERM`).
    Permission,
    /// The server rejected the command itself and would again (a script error, a key of
    /// the wrong type, an unknown command).
    Command,
    /// The server answered with an error that may pass (`LOADING`, `BUSY`, `MASTERDOWN`,
    /// `OOM`, ...).
    Server,
    /// The node is a replica (`READONLY`): a failover demoted the master this connection
    /// reached. Only a new connection, to the new master, helps.
    ReadOnly,
    /// The reply had a shape the core did not expect, or belonged to another call.
    Protocol,
    /// The driver does not offer an optional capability.
    Unsupported,
    /// Anything else.
    Other,
}

impl ConnErrorKind {
    /// Whether another attempt could go differently. Refused credentials and permissions,
    /// rejected commands, a wrong protocol and a missing capability stay as they are until
    /// someone changes the setup, so the lock stops retrying when they leave no quorum
    /// possible.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            Self::Auth | Self::Permission | Self::Command | Self::Protocol | Self::Unsupported
        )
    }

    /// The kind of an error reply from a Redis server, read from its text (`"NOPERM this
    /// user has no permissions to run the 'evalsha' command"`), so that every driver
    /// classifies server errors alike.
    pub fn of_server_error(reply: &str) -> Self {
        let code = reply.split_whitespace().next().unwrap_or_default();
        match code {
            "NOSCRIPT" => Self::NoScript,
            "NOAUTH" | "WRONGPASS" => Self::Auth,
            "NOPERM" => Self::Permission,
            "READONLY" => Self::ReadOnly,
            "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "MOVED" | "ASK"
            | "OOM" | "MISCONF" | "NOREPLICAS" => Self::Server,
            // Older servers and Sentinel phrase refused credentials as plain `ERR`s.
            "ERR" if reply.contains("password") => Self::Auth,
            "ERR" if reply.contains("max number of clients") => Self::Connection,
            _ => Self::Command,
        }
    }
}

impl ConnErrorKind {
    /// The kind in one word, as the `tracing` and `metrics` features record it:
    /// `no_script`, `connection`, `timeout`, `pool_exhausted`, `auth`, `permission`,
    /// `command`, `server`, `read_only`, `protocol`, `unsupported` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoScript => "no_script",
            Self::Connection => "connection",
            Self::Timeout => "timeout",
            Self::PoolExhausted => "pool_exhausted",
            Self::Auth => "auth",
            Self::Permission => "permission",
            Self::Command => "command",
            Self::Server => "server",
            Self::ReadOnly => "read_only",
            Self::Protocol => "protocol",
            Self::Unsupported => "unsupported",
            Self::Other => "other",
        }
    }

    /// A short, lowercase description of the kind, for a driver's [`ConnError`] that has
    /// nothing more specific to say than its source does.
    pub fn description(self) -> &'static str {
        match self {
            Self::NoScript => "script not cached",
            Self::Connection => "connection failed",
            Self::Timeout => "no answer in time",
            Self::PoolExhausted => "no pooled connection free",
            Self::Auth => "credentials refused",
            Self::Permission => "permission denied",
            Self::Command => "command rejected",
            Self::Server => "server error",
            Self::ReadOnly => "node is a replica",
            Self::Protocol => "unexpected reply",
            Self::Unsupported => "unsupported",
            Self::Other => "call failed",
        }
    }
}

impl ConnError {
    /// An error of `kind` caused by `source` (the client's own error), described by
    /// [`ConnErrorKind::description`].
    pub fn caused_by(kind: ConnErrorKind, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::with_source(kind, kind.description(), source)
    }

    /// The error of a call the core cut short after `timeout`.
    pub(crate) fn timed_out(timeout: Duration) -> Self {
        Self::new(
            ConnErrorKind::Timeout,
            format!("no answer within {timeout:?}"),
        )
    }

    /// A new error of `kind` with a short, lowercase `message`.
    pub fn new(kind: ConnErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A new error of `kind` caused by `source` (the client's own error).
    pub fn with_source(
        kind: ConnErrorKind,
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The error of an optional capability that a driver does not offer.
    pub fn unsupported(capability: &str) -> Self {
        let message = format!("the driver does not support {capability}");
        Self::new(ConnErrorKind::Unsupported, message)
    }

    /// The class of this error.
    pub fn kind(&self) -> ConnErrorKind {
        self.kind
    }

    /// Whether the server answered `NOSCRIPT`.
    pub fn is_noscript(&self) -> bool {
        self.kind == ConnErrorKind::NoScript
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ConnErrorKind::Timeout
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConnError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_their_code() {
        let cases = [
            ("NOSCRIPT No matching script", ConnErrorKind::NoScript),
            (
                "WRONGPASS invalid username-password pair",
                ConnErrorKind::Auth,
            ),
            ("NOAUTH Authentication required.", ConnErrorKind::Auth),
            ("ERR invalid password", ConnErrorKind::Auth),
            (
                "NOPERM this user has no permissions",
                ConnErrorKind::Permission,
            ),
            (
                "READONLY You can't write against a read only replica.",
                ConnErrorKind::ReadOnly,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                ConnErrorKind::Server,
            ),
            (
                "ERR max number of clients reached",
                ConnErrorKind::Connection,
            ),
            (
                "ERR Error running script (call to f_x)",
                ConnErrorKind::Command,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind",
                ConnErrorKind::Command,
            ),
            ("", ConnErrorKind::Command),
        ];
        for (reply, kind) in cases {
            assert_eq!(ConnErrorKind::of_server_error(reply), kind, "{reply}");
        }
        assert!(ConnErrorKind::Server.is_retryable() && ConnErrorKind::Timeout.is_retryable());
        assert!(ConnErrorKind::ReadOnly.is_retryable());
        assert!(!ConnErrorKind::Auth.is_retryable() && !ConnErrorKind::Command.is_retryable());
    }
}
