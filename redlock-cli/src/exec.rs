//! `redlock exec`: take the lock, run the command under a lease, stop the command if the
//! lock is lost, release, and pass the command's status on.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redlock_redis_rs::{
    Error, Guard, Instant, Lease, MAX_TRIES, Mutex, Options, RedisPool, Redlock,
};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::ExecArgs;
use crate::exit;

/// Runs `redlock exec`.
pub(crate) async fn run(args: ExecArgs) -> ExitCode {
    let mutex = match mutex(&args) {
        Ok(mutex) => mutex,
        Err(e) => return exit::fail(exit::CONFIG, &e.to_string()),
    };
    let guard = match acquire(&mutex, &args).await {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    let token = guard.token().map(|t| t.to_string());
    let lease = match guard.keep_alive() {
        Ok(lease) => lease,
        Err(e) => return exit::fail(exit::SOFTWARE, &e.error().to_string()),
    };
    let mut command = Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    if let Some(token) = &token {
        command.env("REDLOCK_TOKEN", token);
    }
    let code = match command.spawn() {
        Ok(mut child) => supervise(&mut child, &lease, &args).await,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
            exit::fail(code, &format!("cannot run {:?}: {e}", args.command[0]))
        }
    };
    if let Err(e) = lease.unlock().await
        && !e.is_lost()
    {
        eprintln!(
            "redlock: could not release {:?} (it expires on its own): {e}",
            args.name
        );
    }
    code
}

/// The lock, from the options on the command line.
fn mutex(args: &ExecArgs) -> Result<Mutex<RedisPool>, String> {
    let pools = args.nodes.pools()?;
    let mut options = Options::new()
        .expiry(args.expiry)
        .fenced(args.fenced)
        .tries(MAX_TRIES);
    if let Some(period) = args.quarantine {
        options = options.quarantine(period);
    }
    let redlock = Redlock::with_options(pools, options).map_err(|e| e.to_string())?;
    redlock.mutex(&args.name).map_err(|e| e.to_string())
}

/// Takes the lock: at once (`--nonblock`), until `--wait` runs out, or as long as it
/// takes; SIGINT or SIGTERM while waiting gives up.
async fn acquire(mutex: &Mutex<RedisPool>, args: &ExecArgs) -> Result<Guard<RedisPool>, ExitCode> {
    // The signal that stopped the wait, if one did.
    let caught = std::sync::Mutex::new(None);
    let interrupted = || async {
        let signals = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        let signal = match signals {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => Signal::SIGINT,
                _ = term.recv() => Signal::SIGTERM,
            },
            _ => std::future::pending().await,
        };
        if let Ok(mut caught) = caught.lock() {
            *caught = Some(signal);
        }
    };
    let deadline = args.wait.map(|wait| Instant::now() + wait);
    loop {
        let attempt = match (args.nonblock, deadline) {
            (true, _) => mutex.try_lock().await,
            (false, Some(deadline)) => tokio::select! {
                locked = mutex.lock_until(deadline) => locked,
                () = interrupted() => return Err(stopped_by(&caught, args)),
            },
            (false, None) => mutex.lock_or_cancel(interrupted()).await,
        };
        match attempt {
            Ok(guard) => return Ok(guard),
            Err(e) if e.is_cancelled() => return Err(stopped_by(&caught, args)),
            // Waiting as long as it takes: the tries ran out, try again.
            Err(e) if deadline.is_none() && !args.nonblock && e.is_taken() => continue,
            Err(e) => return Err(refused(&e, args)),
        }
    }
}

/// The exit for a wait that a signal stopped: 128 + the signal, as a shell reports a
/// command that a signal stopped.
fn stopped_by(caught: &std::sync::Mutex<Option<Signal>>, args: &ExecArgs) -> ExitCode {
    let signal = caught.lock().ok().and_then(|caught| *caught);
    let signal = signal.unwrap_or(Signal::SIGTERM);
    let message = format!("{signal} while waiting for {:?}", args.name);
    exit::fail(128 + signal as u8, &message)
}

/// The exit for a lock that was not taken.
fn refused(e: &Error, args: &ExecArgs) -> ExitCode {
    let name = &args.name;
    if e.is_taken() {
        let message = format!("{name:?} is held by another holder");
        return exit::fail(args.conflict_exit_code, &message);
    }
    if e.is_deadline() {
        let message = format!("{name:?} is still held after waiting: {e}");
        return exit::fail(args.conflict_exit_code, &message);
    }
    exit::fail(exit::UNAVAILABLE, &e.to_string())
}

/// Waits for the command, forwarding SIGINT and SIGTERM to it; if the lock is lost
/// first, stops it (SIGTERM, then SIGKILL after the grace period).
async fn supervise(child: &mut Child, lease: &Lease, args: &ExecArgs) -> ExitCode {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => (int, term),
        _ => {
            stop(child, pid, args.grace).await;
            return exit::fail(exit::SOFTWARE, "cannot watch for signals");
        }
    };
    let signal = lease.signal();
    loop {
        tokio::select! {
            status = child.wait() => return match status {
                Ok(status) => status_code(status),
                Err(e) => exit::fail(exit::SOFTWARE, &format!("lost track of the command: {e}")),
            },
            reason = signal.lost() => {
                eprintln!("redlock: lost the lock {:?} ({reason}); stopping the command", args.name);
                stop(child, pid, args.grace).await;
                return ExitCode::from(exit::LOST);
            }
            _ = int.recv() => forward(pid, Signal::SIGINT),
            _ = term.recv() => forward(pid, Signal::SIGTERM),
        }
    }
}

/// Sends `signal` to the command; it may have exited already, which is not an error.
fn forward(pid: Option<Pid>, signal: Signal) {
    if let Some(pid) = pid
        && let Err(e) = kill(pid, signal)
        && e != nix::errno::Errno::ESRCH
    {
        // ESRCH (no such process) means it has just exited, which `wait` reports next.
        eprintln!("redlock: cannot send {signal} to the command: {e}");
    }
}

/// SIGTERM, then SIGKILL if the command is still running after `grace`.
async fn stop(child: &mut Child, pid: Option<Pid>, grace: Duration) {
    forward(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        // The kill fails only if the command has exited meanwhile.
        drop(child.start_kill());
        drop(child.wait().await);
    }
}

/// The command's status as ours: its code, or 128 + the signal that killed it.
fn status_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX)),
        (None, None) => ExitCode::from(exit::SOFTWARE),
    }
}
