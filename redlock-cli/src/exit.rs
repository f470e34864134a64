//! Exit codes, and the one line on stderr that goes with a failure.

use std::process::ExitCode;

/// The lock is held by another holder (or `--wait` ran out): the default of
/// `--conflict-exit-code`, as `flock -E`.
pub(crate) const CONFLICT: u8 = 1;
/// The lock could not be taken for another reason: nodes unreachable, no quorum.
pub(crate) const UNAVAILABLE: u8 = 69;
/// Something went wrong in `redlock` itself.
pub(crate) const SOFTWARE: u8 = 70;
/// The lock was lost while the command ran; the command was stopped.
pub(crate) const LOST: u8 = 75;
/// A bad URL or option, found before anything was sent.
pub(crate) const CONFIG: u8 = 78;
/// The command was found but could not be run.
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: u8 = 127;

/// The exit codes, for `--help`.
pub(crate) const HELP: &str = "\
Exit codes:
  the command's own   the command ran under the lock and exited
  128 + N             the command was killed by signal N, or signal N (SIGINT,
                      SIGTERM) stopped redlock while it waited for the lock
  1                   the lock is held by another holder, or --wait ran out
                      (--conflict-exit-code changes it)
  69                  the lock could not be taken: nodes unreachable, no quorum
  70                  an internal error of redlock
  75                  the lock was lost while the command ran; it got SIGTERM
                      (and SIGKILL after --grace)
  78                  a bad URL, option or TLS file
  126, 127            the command could not be run, or was not found";

/// Prints `redlock: message` on stderr and returns `code`.
pub(crate) fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("redlock: {message}");
    ExitCode::from(code)
}
