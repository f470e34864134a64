//! Durable votes: a node's grant or extend counts only once `WAITAOF` confirms it reached
//! the append-only file; a node or driver that cannot confirm fails its vote, saying why.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::{ConnErrorKind, Redlock};

fn durable() -> redlock_core::Options {
    fast().durable_votes(0)
}

#[tokio::test(start_paused = true)]
async fn votes_count_once_the_append_only_file_has_them() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_appendonly(true));
    let mutex = mutex(&pools, durable());
    let mut guard = mutex.lock().await.unwrap();
    guard.extend().await.unwrap();
    guard.unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_node_without_an_append_only_file_fails_its_vote_and_says_why() {
    let pools = warm_pools(3).await;
    pools[0].set_appendonly(true);
    let err = mutex(&pools, durable()).lock().await.unwrap_err();
    assert!(err.is_no_quorum(), "{err}");
    assert!(
        !err.is_retryable(),
        "no retry can fix a server setting: {err}"
    );
    let kinds: Vec<ConnErrorKind> = err.node_errors().iter().map(|e| e.error.kind()).collect();
    assert_eq!(kinds, [ConnErrorKind::Command; 2]);
    let text = format!("{}", err.node_errors()[0].error);
    assert!(
        text.contains("WAITAOF") && text.contains("appendonly"),
        "{text}"
    );
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_needs_no_confirmation() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_appendonly(true));
    let held = mutex(&pools, durable()).lock().await.unwrap();
    pools.iter().for_each(|p| p.set_appendonly(false));
    let refused = mutex(&pools, durable()).try_lock().await.unwrap_err();
    assert!(refused.is_taken(), "{refused}");
    held.unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_driver_that_cannot_pipeline_fails_durable_votes_and_says_why() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_appendonly(true));
    let nodes: Vec<ScriptsOnly> = pools.iter().cloned().map(ScriptsOnly).collect();
    let redlock = Redlock::with_options(nodes, durable()).unwrap();
    let err = redlock.lock(KEY).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let text = format!("{}", err.node_errors()[0].error);
    assert!(text.contains("pipelines"), "{text}");
    assert_none_hold(&pools);
}
