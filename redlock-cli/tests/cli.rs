//! `redlock` end to end, against real servers: the binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redlock_conformance::{Fleet, unique_prefix};

/// Generous: a hang fails the test instead of passing or blocking it.
const PATIENCE: Duration = Duration::from_secs(30);

fn redlock(fleet: &Fleet, args: &[&str]) -> Command {
    redlock_at(&fleet.urls(), args)
}

/// `redlock` with `args`, its nodes `urls` (in `REDLOCK_URLS`), and for `exec` restart
/// quarantine off.
fn redlock_at(urls: &[String], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redlock"));
    command.env("REDLOCK_URLS", urls.join(","));
    // The servers are new: restart quarantine would give them no vote for the expiry.
    let (sub, rest) = args.split_first().expect("a subcommand");
    command.arg(sub);
    if *sub == "exec" {
        command.args(["--quarantine", "0s"]);
    }
    command.args(rest);
    command
}

/// Polls `done` every 20 ms until it holds, failing the test with `never` after
/// [`PATIENCE`].
fn eventually(never: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "{never} (waited {PATIENCE:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child`, failing the test after [`PATIENCE`].
fn finish(mut child: Child) -> Output {
    eventually("redlock did not finish", || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}

fn run(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    finish(child.expect("spawn redlock"))
}

/// Waits until node `node` holds the key `name`, failing the test after [`PATIENCE`].
fn await_held(fleet: &Fleet, node: usize, name: &str) {
    eventually(&format!("{name} never locked on node {node}"), || {
        fleet.get(node, name).unwrap().is_some()
    });
}

/// `redlock exec OPTIONS NAME -- COMMAND`, where the command creates a marker file and
/// then sleeps for `seconds`; returned once the marker exists, so once `redlock` holds
/// the lock (not merely once some node has its key). Its stdout is discarded, its stderr
/// goes to `stderr`.
fn hold(fleet: &Fleet, options: &[&str], name: &str, seconds: &str, stderr: Stdio) -> Child {
    let path = std::env::temp_dir().join(format!("{}held", name.replace(':', "-")));
    let _ = std::fs::remove_file(&path);
    let marker = path.to_string_lossy();
    let touch_then_sleep = ["sh", "-c", "touch \"$0\" && exec sleep \"$1\""];
    let args = [
        &["exec"],
        options,
        &[name, "--"],
        &touch_then_sleep,
        &[&marker, seconds],
    ];
    let mut command = redlock(fleet, &args.concat());
    let child = command.stdout(Stdio::null()).stderr(stderr).spawn();
    let child = child.expect("spawn redlock");
    eventually("the command never ran under the lock", || {
        std::fs::remove_file(&path).is_ok()
    });
    child
}

/// A `redlock exec` holding `name` for `seconds`, its output discarded, once it holds
/// the lock.
fn holder(fleet: &Fleet, name: &str, seconds: &str) -> Child {
    hold(fleet, &[], name, seconds, Stdio::null())
}

fn fleet() -> Fleet {
    Fleet::start(3).expect("start 3 redis-servers")
}

#[test]
fn the_commands_status_comes_through() {
    let fleet = fleet();
    let name = unique_prefix("cli_status");
    let out = run(&mut redlock(
        &fleet,
        &["exec", &name, "--", "sh", "-c", "exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = run(&mut redlock(
        &fleet,
        &["exec", &name, "--", "sh", "-c", "kill -9 $$"],
    ));
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");
    let out = run(&mut redlock(
        &fleet,
        &["exec", &name, "--", "no-such-command-here"],
    ));
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert_eq!(
        fleet.get(0, &name).unwrap(),
        None,
        "released after each command"
    );
}

#[test]
fn two_commands_started_at_once_never_interleave() {
    let fleet = fleet();
    let name = unique_prefix("cli_mutex");
    let dir = std::env::temp_dir().join(unique_prefix("cli_log"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let script = |id: &str| {
        format!(
            "for i in 1 2 3; do echo start {id} >> {0}; sleep 0.2; echo end {id} >> {0}; done",
            log.display()
        )
    };
    let (a, b) = (script("a"), script("b"));
    let spawn = |s: &str| {
        let mut command = redlock(&fleet, &["exec", &name, "--", "sh", "-c", s]);
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&a), spawn(&b));
    let (first, second) = (finish(first), finish(second));
    assert!(
        first.status.success() && second.status.success(),
        "{first:?} {second:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    for pair in lines.chunks(2) {
        let id = pair[0].strip_prefix("start ").expect("a start");
        assert_eq!(pair[1], format!("end {id}"), "interleaved:\n{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nonblock_on_a_held_name_exits_with_the_conflict_code_while_it_is_held() {
    let fleet = fleet();
    let name = unique_prefix("cli_nonblock");
    let holder = holder(&fleet, &name, "5");
    let out = run(&mut redlock(
        &fleet,
        &["exec", "--nonblock", "-E", "7", &name, "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("redlock: ") && stderr.contains("held"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let mut holder = holder;
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder still runs"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_lost_lock_stops_the_command_and_exits_with_the_lost_code() {
    let mut fleet = fleet();
    let name = unique_prefix("cli_lost");
    let options = ["--expiry", "1s", "--grace", "1s"];
    // The lock is held (not merely set on one node): losing two nodes loses it.
    let child = hold(&fleet, &options, &name, "60", Stdio::piped());
    fleet.kill(0).unwrap();
    fleet.kill(1).unwrap();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lost the lock"), "{stderr}");
}

#[test]
fn a_fenced_command_gets_a_larger_token_each_time() {
    let fleet = fleet();
    let name = unique_prefix("cli_fenced");
    let token = || {
        let args = [
            "exec",
            "--fenced",
            &name,
            "--",
            "sh",
            "-c",
            "echo $REDLOCK_TOKEN",
        ];
        let out = run(&mut redlock(&fleet, &args));
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let (first, second) = (token(), token());
    assert!(second > first, "{first} then {second}");
}

#[test]
fn status_shows_the_holder_on_every_node() {
    let fleet = fleet();
    let name = unique_prefix("cli_show");
    let free = run(&mut redlock(&fleet, &["status", &name]));
    assert!(free.status.success(), "{free:?}");
    assert!(String::from_utf8_lossy(&free.stdout).contains("free on every node"));
    let mut holder = holder(&fleet, &name, "5");
    // The lock may have been taken on a quorum before the third node answered.
    for node in 0..3 {
        await_held(&fleet, node, &name);
    }
    let held = run(&mut redlock(&fleet, &["status", &name]));
    let text = String::from_utf8_lossy(&held.stdout);
    assert!(text.contains("on 3 of 3 nodes: the lock is held"), "{text}");
    let value = fleet.get(0, &name).unwrap().unwrap_or_default();
    assert!(
        !text.contains(&value),
        "the value is a takeover token: {text}"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_bad_url_is_one_line_and_a_config_exit() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redlock"));
    command.args([
        "exec",
        "--urls",
        "redis://:secret@[broken",
        "x",
        "--",
        "true",
    ]);
    let out = run(&mut command);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn a_signal_while_waiting_exits_as_a_shell_reports_it() {
    let fleet = fleet();
    let name = unique_prefix("cli_wait_signal");
    let mut holder = holder(&fleet, &name, "10");
    let mut waiter = redlock(&fleet, &["exec", &name, "--", "true"]);
    let waiter = waiter
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once it listens for the release, it was refused once and waits, with its signal
    // handlers set (they are set before its first try).
    eventually("the waiter never listened for a release", || {
        (0..3).all(|node| fleet.subscribers(node, &name).unwrap() > 0)
    });
    let pid = waiter.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let out = finish(waiter);
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SIGTERM while waiting"), "{stderr}");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// Writes `pem` to a file of its own for one test, and returns its path.
fn pem_file(name: &str, pem: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}{name}.pem", unique_prefix("cli_tls")));
    std::fs::write(&path, pem).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn tls_nodes_are_reached_with_the_ca_and_client_certificate_given() {
    let fleet = Fleet::start_tls(3, true).expect("start 3 TLS redis-servers");
    let material = fleet.tls_material().unwrap();
    let urls: Vec<String> = (0..3).map(|i| fleet.tls_url(i).unwrap()).collect();
    let ca = pem_file("ca", &material.ca_pem);
    let cert = pem_file("cert", &material.client_cert_pem);
    let key = pem_file("key", &material.client_key_pem);
    let name = unique_prefix("cli_tls");
    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];

    let exec = [&["exec"], &tls[..], &[&name, "--", "sh", "-c", "exit 7"]].concat();
    let out = run(&mut redlock_at(&urls, &exec));
    assert_eq!(out.status.code(), Some(7), "{out:?}");

    // Without the CA, the servers' certificates are not trusted: no node answers.
    let out = run(&mut redlock_at(&urls, &["status", &name]));
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("unreachable").count(), 3, "{stdout}");

    let status = [&["status"], &tls[..], &[&name]].concat();
    let out = run(&mut redlock_at(&urls, &status));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(": free").count(), 3, "released: {stdout}");

    // A certificate without its key is refused before anything is sent.
    let half = ["status", "--tls-cert", &cert, &name];
    let out = run(&mut redlock_at(&urls, &half));
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    for file in [ca, cert, key] {
        std::fs::remove_file(file).unwrap();
    }
}
