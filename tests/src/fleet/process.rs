//! Launching, probing and signalling `redis-server` children.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

use redis::{IntoConnectionInfo, RedisConnectionInfo};

use super::*;

/// Every port this process handed out. None is handed out twice, so that no fleet of a
/// test running alongside takes a killed node's port before the node restarts on it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Hands out `ports` if this process never did and each is free now.
fn claim(ports: &[u16]) -> io::Result<()> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    if ports.iter().any(|port| handed_out.contains(port)) {
        return Err(io::Error::from(io::ErrorKind::AddrInUse));
    }
    for &port in ports {
        TcpListener::bind((HOST, port))?;
    }
    handed_out.extend(ports);
    Ok(())
}

/// A free loopback port below Linux's ephemeral range (32768 and up), so that no outgoing
/// connection can take a killed node's port before the node restarts on it, and never
/// handed out before in this process ([`claim`]).
pub(super) fn free_port() -> Result<u16, FleetError> {
    free_ports(20_000..32_768, &[0], "find a free port")
}

/// A port drawn from `range` that is free and never handed out before, and so are the
/// ports `offsets` above it (0 for the port itself); all are claimed. `what` names the
/// search in its error.
pub(super) fn free_ports(
    range: std::ops::Range<u16>,
    offsets: &[u16],
    what: &'static str,
) -> Result<u16, FleetError> {
    let mut last = None;
    for _ in 0..200 {
        let port = rand::random_range(range.clone());
        let ports: Vec<u16> = offsets.iter().map(|offset| port + offset).collect();
        match claim(&ports) {
            Ok(()) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse));
    Err(io_error(what)(e))
}

/// Spawns a server on `port` and waits until it answers as our child; reaps it on failure.
pub(super) fn launch(
    program: &OsStr,
    port: u16,
    dir: &Path,
    extra: &[std::ffi::OsString],
) -> Result<Child, Launch> {
    let log = dir.join("redis.log");
    let mut child = Command::new(program)
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .args(["--loglevel", "warning"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Launch::Fatal(FleetError::Missing {
                program: program.to_string_lossy().into_owned(),
            }),
            _ => Launch::Fatal(io_error("spawn redis-server")(e)),
        })?;
    await_owned(&mut child, port, &log).inspect_err(|_| reap(&mut child))?;
    Ok(child)
}

pub(super) fn await_owned(child: &mut Child, port: u16, log: &Path) -> Result<(), Launch> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        // Checked before every probe: a child that exited means the port may be someone else's.
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Launch::Fatal(io_error("wait")(e)))?
        {
            let reason = format!("exited with {status}: {}", log_tail(log));
            return Err(Launch::Exited(FleetError::Start { port, reason }));
        }
        if let Some(found) = probe_pid(port) {
            if found == Some(child.id()) {
                return Ok(());
            }
            let expected = child.id();
            return Err(Launch::Foreign(FleetError::NotOwned {
                port,
                expected,
                found,
            }));
        }
        if Instant::now() >= deadline {
            let reason = format!("not ready after {READY_TIMEOUT:?}");
            return Err(Launch::Fatal(FleetError::Start { port, reason }));
        }
        thread::sleep(POLL);
    }
}

/// `None` if nothing answers yet; otherwise the `process_id` from `INFO server`, if any.
pub(super) fn probe_pid(port: u16) -> Option<Option<u32>> {
    let mut con = connect(port).ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
    Some(info_field(&info, "process_id:").and_then(|v| v.parse().ok()))
}

/// A connection that sends nothing on connect (no `CLIENT SETINFO`) and times out after 1 s.
pub(super) fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let info = (HOST, port)
        .into_connection_info()?
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    let con = redis::Client::open(info)?.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

pub(super) fn info_field<'a>(info: &'a str, prefix: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(str::trim)
}

pub(super) fn parse_calls(info: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{}:", command.to_ascii_lowercase());
    info_field(info, &prefix)
        .and_then(|stats| stats.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

pub(super) fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.len() {
        0 => "no log output".into(),
        n => lines[n.saturating_sub(3)..].join(" | "),
    }
}

/// The pid of a child that has not exited; forgets (and reaps) one that has.
pub(super) fn live_pid(slot: &mut Option<Child>) -> Option<u32> {
    let child = slot.as_mut()?;
    match child.try_wait() {
        Ok(Some(_)) => {
            *slot = None;
            None
        }
        Ok(None) | Err(_) => Some(child.id()),
    }
}

pub(super) fn send_signal(pid: u32, signal: &str) -> Result<(), FleetError> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io_error("run kill"))?;
    if status.success() {
        return Ok(());
    }
    let source = io::Error::other(format!("kill {signal} {pid} exited with {status}"));
    Err(FleetError::Io {
        action: "send signal",
        source,
    })
}

pub(super) fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn io_error(action: &'static str) -> impl FnOnce(io::Error) -> FleetError {
    move |source| FleetError::Io { action, source }
}

pub(super) fn redis_error(port: u16) -> impl Fn(redis::RedisError) -> FleetError {
    move |source| FleetError::Redis { port, source }
}
