//! ACL users and passwords: a user allowed only the lock's commands on the lock's keys
//! locks, a password-only URL locks, and a missing permission is a clear, immediate error
//! that never shows the password.

use redlock_core::{ConnErrorKind, Pool, Redlock};

use super::options;

use crate::Factory;
use crate::fleet::{Fleet, unique_prefix};
use crate::printed;

use redlock_core::scripts::ACL_COMMANDS;

/// The password every test here uses; it must never show anywhere.
const SECRET: &str = "acl-s3cret-pw";

fn start(n: usize) -> Fleet {
    Fleet::start(n).unwrap_or_else(|e| panic!("cannot start {n} redis-server(s): {e}"))
}

/// Adds the user `locker` on every node, allowed only `commands` on keys matching
/// `keys`, and no pub/sub channel.
fn add_user(fleet: &Fleet, keys: &str, commands: &[&str]) {
    for i in 0..fleet.len() {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("locker").arg("reset").arg("on");
        cmd.arg(format!(">{SECRET}"))
            .arg(format!("~{keys}"))
            .arg("resetchannels");
        cmd.arg("-@all");
        for c in commands {
            cmd.arg(format!("+{c}"));
        }
        fleet.query::<()>(i, &cmd).expect("acl setuser");
    }
}

fn manager_as<P: Pool>(fleet: &Fleet, user: &str, factory: &impl Factory<P>) -> Redlock<P> {
    manager_with(fleet, user, factory, options(3))
}

fn manager_with<P: Pool>(
    fleet: &Fleet,
    user: &str,
    factory: &impl Factory<P>,
    options: redlock_core::Options,
) -> Redlock<P> {
    let pools = (0..fleet.len())
        .map(|i| {
            let url = format!("redis://{user}{SECRET}@127.0.0.1:{}/", fleet.port(i));
            factory(&url).unwrap_or_else(|e| panic!("factory failed: {e}"))
        })
        .collect();
    Redlock::with_options(pools, options).expect("options")
}

/// A user allowed only [`ACL_COMMANDS`](redlock_core::scripts::ACL_COMMANDS) on the lock's keys locks, extends and unlocks,
/// also after the servers forgot the scripts; a lock outside its key pattern is refused
/// at once as a permission failure.
pub async fn least_privilege_acl_user_locks<P: Pool>(factory: &impl Factory<P>) {
    let fleet = start(3);
    let prefix = unique_prefix("acl");
    add_user(&fleet, &format!("{prefix}*"), ACL_COMMANDS);
    let redlock = manager_as(&fleet, "locker:", factory);
    let name = format!("{prefix}lock");
    let mut guard = redlock
        .lock(&name)
        .await
        .expect("lock as a least-privilege user");
    guard.extend().await.expect("extend");
    guard.unlock().await.expect("unlock");
    for i in 0..3 {
        fleet.flush_scripts(i).expect("flush");
    }
    let guard = redlock
        .lock(&name)
        .await
        .expect("lock after a script flush");
    guard.unlock().await.expect("unlock");
    let outside = redlock
        .lock("not-my-keys")
        .await
        .expect_err("outside the key pattern");
    assert!(!outside.is_retryable(), "{outside}");
    let kinds: Vec<ConnErrorKind> = outside
        .node_errors()
        .iter()
        .map(|e| e.error.kind())
        .collect();
    assert_eq!(kinds, vec![ConnErrorKind::Permission; 3], "{outside}");
}

/// A server with only a password (`requirepass`) takes `redis://:PASSWORD@host/`.
pub async fn password_only_url_locks<P: Pool>(factory: &impl Factory<P>) {
    let fleet = start(3);
    for i in 0..3 {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET").arg("requirepass").arg(SECRET);
        fleet.query::<()>(i, &cmd).expect("requirepass");
    }
    let redlock = manager_as(&fleet, ":", factory);
    let guard = redlock
        .lock(&unique_prefix("requirepass"))
        .await
        .expect("lock with a password");
    guard.unlock().await.expect("unlock");
}

/// A user without the script commands is refused as a failure that retrying cannot fix
/// (so `lock` stops after one attempt), and no output shows the password.
pub async fn missing_permission_fails_at_once_and_says_so<P: Pool>(factory: &impl Factory<P>) {
    let fleet = start(3);
    add_user(&fleet, "*", &["get"]);
    let redlock = manager_as(&fleet, "locker:", factory);
    let refused = redlock
        .lock(&unique_prefix("noperm"))
        .await
        .expect_err("no permission");
    assert!(!refused.is_retryable(), "{refused}");
    assert!(
        refused.to_string().contains("denied permission"),
        "{refused}"
    );
    let text = printed(&refused);
    assert!(!text.contains(SECRET), "the password shows: {text}");
}

/// A user without `+info` cannot have its nodes' ages read for restart quarantine: the
/// lock is refused at once, and the message names `INFO server`; with quarantine off the
/// same user locks.
pub async fn user_without_info_is_told_what_quarantine_needs<P: Pool>(factory: &impl Factory<P>) {
    let fleet = start(3);
    let prefix = unique_prefix("noinfo");
    let commands: Vec<&str> = ACL_COMMANDS
        .iter()
        .copied()
        .filter(|c| *c != "info")
        .collect();
    add_user(&fleet, &format!("{prefix}*"), &commands);
    // Quarantine on (a millisecond: the servers are new, but INFO is refused first).
    let quarantined = options(3).quarantine(std::time::Duration::from_millis(1));
    let redlock = manager_with(&fleet, "locker:", factory, quarantined);
    let name = format!("{prefix}lock");
    let refused = redlock.lock(&name).await.expect_err("no +info");
    assert!(!refused.is_retryable(), "{refused}");
    let text = printed(&refused);
    assert!(text.contains("INFO server"), "{text}");
    let off = options(3).quarantine(std::time::Duration::ZERO);
    let guard = redlock.mutex_with(&name, off).expect("mutex").lock().await;
    guard
        .expect("lock without quarantine")
        .unlock()
        .await
        .expect("unlock");
}
