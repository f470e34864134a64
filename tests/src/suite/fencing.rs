//! Fenced locks against real servers: tokens that grow across managers, a node restarting
//! empty under a loss tolerance, and the resource-side write that refuses a holder whose
//! turn has passed.

use std::time::Duration;

use redlock_core::fence::{self, Token, Write};
use redlock_core::{Options, Pool, Redlock};

use super::{Factory, Testbed, manager, quick};

fn fenced(expiry_ms: u64) -> Options {
    quick(expiry_ms).fenced(true)
}

/// Tokens grow with every holding, whichever of two managers holds: the second manager's
/// first proposal is stale (it has seen no fence), is released and made again at once.
/// Every node keeps the last token as the lock's fence, in `{NAME}:fence`.
pub async fn fenced_tokens_grow_across_managers<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, fenced(5_000), factory, "fenced_tokens");
    let other: Redlock<P> = manager(&c.fleet, fenced(5_000), factory);
    let name = c.key("lock");
    let mut last = None;
    for round in 0..6 {
        let who = if round % 3 == 2 { &other } else { &c.redlock };
        let guard = who.lock(&name).await.expect("fenced lock");
        let token = guard.token().expect("a fenced guard has a token");
        assert!(Some(token) > last, "round {round}: {token} after {last:?}");
        last = Some(token);
        guard.unlock().await.expect("unlock");
    }
    assert_eq!(last, Token::new(6), "no token skipped without races");
    let fence_key = fence::key(&name).expect("fence key");
    assert_eq!(c.values(&fence_key), vec![Some("6".to_owned()); 3]);
    assert_eq!(c.values(&name), vec![None; 3], "released everywhere");
}

/// With a loss tolerance of 1 over three nodes, a node that restarts without its data
/// (the fleet runs without persistence) cannot turn tokens back: the next holding, by a
/// manager that has seen no fence, still gets a larger token. Fenced and unfenced
/// holders exclude each other on one name.
pub async fn fenced_tokens_survive_a_node_restarting_empty<P: Pool>(factory: &impl Factory<P>) {
    let options = fenced(5_000).fence_loss_tolerance(1);
    let mut c = Testbed::start(3, options.clone(), factory, "fenced_restart");
    let name = c.key("lock");
    let first = c.redlock.lock(&name).await.expect("fenced lock");
    let plain: Redlock<P> = manager(&c.fleet, quick(5_000), factory);
    let refused = plain
        .try_lock(&name)
        .await
        .expect_err("held by a fenced holder");
    assert!(refused.is_taken(), "{refused}");
    let token = first.token().expect("token");
    first.unlock().await.expect("unlock");
    c.fleet.kill(0).expect("kill");
    c.fleet.restart(0).expect("restart empty");
    let fresh: Redlock<P> = manager(&c.fleet, options, factory);
    let next = lock_eventually(&fresh, &name).await;
    let next_token = next.token().expect("token");
    assert!(next_token > token, "{next_token} after {token}");
    next.unlock().await.expect("unlock");
}

/// Locks `name`, retrying while the restarted node's connection comes back.
async fn lock_eventually<P: Pool>(redlock: &Redlock<P>, name: &str) -> redlock_core::Guard<P> {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match redlock.lock(name).await {
            Ok(guard) => return guard,
            Err(e) if tokio::time::Instant::now() >= until => panic!("no lock in 10 s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A holder paused past its validity is refused by the resource: after its lock expired
/// and another holder wrote under a larger token, its own write ([`fence::fenced_set`],
/// through the driver's connection) comes back [`Write::Stale`] and changes nothing. A
/// holding may write more than once under its token.
pub async fn stale_holder_write_is_refused<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, fenced(1_000), factory, "fenced_write");
    let name = c.key("lock");
    let data = format!("{{{name}}}:data");
    let data_fence = format!("{{{name}}}:data:fence");
    let pool = factory(&c.fleet.url(0)).expect("factory");
    let mut conn = pool.get().await.expect("connection");
    let paused = c.redlock.lock(&name).await.expect("fenced lock");
    let old = paused.token().expect("token");
    let write = fence::fenced_set(&mut conn, &data, &data_fence, "first", old).await;
    assert_eq!(write.expect("write"), Write::Written);
    // The holder stalls past its expiry; another takes over and writes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let other: Redlock<P> = manager(&c.fleet, fenced(5_000), factory);
    let next = other.lock(&name).await.expect("lock after the expiry");
    let new = next.token().expect("token");
    assert!(new > old, "{new} after {old}");
    for value in ["second", "third"] {
        let write = fence::fenced_set(&mut conn, &data, &data_fence, value, new).await;
        assert_eq!(write.expect("write"), Write::Written);
    }
    let late = fence::fenced_set(&mut conn, &data, &data_fence, "stale", old).await;
    let newer = new.get();
    assert_eq!(late.expect("write"), Write::Stale { newer });
    assert_eq!(
        c.fleet.get(0, &data).expect("get").as_deref(),
        Some("third")
    );
    next.unlock().await.expect("unlock");
    drop(paused);
}
