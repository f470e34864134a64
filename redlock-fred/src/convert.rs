//! How fred's replies and errors become the core's [`Reply`] and [`ConnError`].

use fred::error::{Error as FredError, ErrorKind};
use fred::types::Value;
use redlock_core::{ConnError, ConnErrorKind, Reply};

/// Maps a fred error into the core's [`ConnError`]; server error replies are classified by
/// the core ([`ConnErrorKind::of_server_error`]).
pub fn map_error(e: FredError) -> ConnError {
    let details = e.details();
    let kind = match e.kind() {
        _ if is_server_error(details) => ConnErrorKind::of_server_error(details),
        ErrorKind::Auth => ConnErrorKind::Auth,
        ErrorKind::Timeout => ConnErrorKind::Timeout,
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing => ConnErrorKind::Connection,
        _ if NO_CONNECTION.iter().any(|m| details.starts_with(m)) => ConnErrorKind::Connection,
        ErrorKind::InvalidArgument | ErrorKind::InvalidCommand => ConnErrorKind::Command,
        ErrorKind::Cluster => ConnErrorKind::Server,
        ErrorKind::Protocol | ErrorKind::Parse => ConnErrorKind::Protocol,
        _ => ConnErrorKind::Other,
    };
    ConnError::caused_by(kind, e)
}

/// fred's own messages, filed under `ErrorKind::Unknown`, for a call that found no
/// connection to go over, or lost its connection and was not written again (one write
/// attempt per call: see the crate docs).
const NO_CONNECTION: [&str; 5] = [
    "Too many failed write attempts",
    "Failed to route command",
    "Failed to send command to router",
    "Missing expected connection",
    "Max attempts exceeded",
];

/// A server error reply starts with an upper-case code (`ERR`, `NOPERM`, `WRONGPASS`,
/// ...); fred's own messages do not.
fn is_server_error(details: &str) -> bool {
    details
        .split_whitespace()
        .next()
        .is_some_and(|code| code.bytes().all(|b| b.is_ascii_uppercase()))
}

/// Converts a fred reply into the core's [`Reply`], reading RESP3 booleans as Lua's RESP2
/// conversion would (`true` is 1, `false` is nil).
///
/// # Errors
///
/// [`ConnErrorKind::Protocol`] for reply types the core's scripts never produce.
pub fn to_reply(value: Value) -> Result<Reply, ConnError> {
    Ok(match value {
        Value::Null | Value::Boolean(false) => Reply::Nil,
        Value::Boolean(true) => Reply::Int(1),
        Value::Integer(i) => Reply::Int(i),
        Value::String(s) => Reply::Data(s.as_bytes().to_vec()),
        Value::Bytes(b) => Reply::Data(b.to_vec()),
        Value::Array(items) => {
            Reply::Array(items.into_iter().map(to_reply).collect::<Result<_, _>>()?)
        }
        other => {
            let msg = format!("unexpected reply type {}", other.kind());
            return Err(ConnError::new(ConnErrorKind::Protocol, msg));
        }
    })
}
