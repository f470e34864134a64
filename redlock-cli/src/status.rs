//! `redlock status`: who holds a lock, node by node.
//!
//! A holder is shown by the first eight hex digits of the SHA1 of its value, never by the
//! value itself: the value is what another process needs to take the lock over.

use std::process::ExitCode;
use std::time::Duration;

use redlock_redis_rs::{Conn, ConnError, ConnErrorKind, Pool, RedisPool, Reply};

use crate::args::StatusArgs;
use crate::exit;

/// How long one node has to answer before it is shown as unreachable.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// The error of a node that did not answer in time.
fn silent() -> ConnError {
    let message = format!("no answer within {NODE_TIMEOUT:?}");
    ConnError::new(ConnErrorKind::Timeout, message)
}

/// What one node holds under the lock's name.
enum Holding {
    Free,
    Held { holder: String, ttl_ms: i64 },
    Unreachable(ConnError),
}

/// Runs `redlock status`: asks every node at once, each within [`NODE_TIMEOUT`]; exits 0
/// when any node answered, 69 when none did.
pub(crate) async fn run(args: StatusArgs) -> ExitCode {
    let pools = match args.nodes.pools() {
        Ok(pools) => pools,
        Err(e) => return exit::fail(exit::CONFIG, &e),
    };
    // Every node at once, each within its own bound; shown in the order given.
    let asked: Vec<_> = pools
        .iter()
        .map(|pool| {
            let (pool, name) = (pool.clone(), args.name.clone());
            tokio::spawn(async move {
                let answer = tokio::time::timeout(NODE_TIMEOUT, holding(&pool, &name)).await;
                answer.unwrap_or_else(|_| Holding::Unreachable(silent()))
            })
        })
        .collect();
    let mut holders: Vec<String> = Vec::new();
    let mut unreachable = 0;
    for (i, (pool, answer)) in pools.iter().zip(asked).enumerate() {
        let address = pool.address().unwrap_or_else(|| format!("node {i}"));
        let answer = answer.await.unwrap_or_else(|_| {
            let message = "the check of this node failed";
            Holding::Unreachable(ConnError::new(ConnErrorKind::Other, message))
        });
        match answer {
            Holding::Free => println!("{address}: free"),
            Holding::Held { holder, ttl_ms } => {
                let left = if ttl_ms >= 0 {
                    format!("{:.1} s left", ttl_ms as f64 / 1000.0)
                } else {
                    "no expiry".into()
                };
                println!("{address}: held by {holder}, {left}");
                holders.push(holder);
            }
            Holding::Unreachable(e) => {
                println!("{address}: unreachable: {e}");
                unreachable += 1;
            }
        }
    }
    if unreachable == pools.len() {
        return exit::fail(exit::UNAVAILABLE, "no node answered");
    }
    summary(&holders, pools.len());
    ExitCode::SUCCESS
}

/// The last line: held by one holder on a majority, split, or free.
fn summary(holders: &[String], nodes: usize) {
    let majority = nodes / 2 + 1;
    let mut distinct = holders.to_vec();
    distinct.sort();
    distinct.dedup();
    match distinct.as_slice() {
        [] => println!("free on every node that answered"),
        [one] if holders.len() >= majority => {
            println!(
                "held by {one} on {} of {nodes} nodes: the lock is held",
                holders.len()
            )
        }
        [one] => println!(
            "held by {one} on {} of {nodes} nodes: fewer than a majority ({majority})",
            holders.len()
        ),
        many => println!(
            "held by {} different holders ({}): the nodes disagree",
            many.len(),
            many.join(", ")
        ),
    }
}

/// What `pool`'s node holds under `name`.
async fn holding(pool: &RedisPool, name: &str) -> Holding {
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return Holding::Unreachable(e),
    };
    let value = match conn.command(&["GET", name]).await {
        Ok(Reply::Data(value)) => value,
        Ok(_) => return Holding::Free,
        Err(e) => return Holding::Unreachable(e),
    };
    let ttl_ms = match conn.command(&["PTTL", name]).await {
        Ok(Reply::Int(ttl)) => ttl,
        Ok(_) => -1,
        Err(e) => return Holding::Unreachable(e),
    };
    let digest = sha1_smol::Sha1::from(&value).digest().to_string();
    let holder = digest.get(..8).unwrap_or(&digest).to_owned();
    Holding::Held { holder, ttl_ms }
}
