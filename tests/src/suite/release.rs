//! Release announcements: an unlock publishes on the lock's channel, a switched-off one
//! does not, and a server that denies the publish still releases.

use std::time::Duration;

use redlock_core::scripts::release_channel;
use redlock_core::{Pool, Redlock};

use super::{Factory, Testbed, manager, quick};

/// A subscriber on node `i`'s release channel for `name`, ready before the release. (Not
/// redis-rs's `PubSub`, which unsubscribes when it is dropped.)
fn subscribe(c: &Testbed<impl Pool>, i: usize, name: &str) -> redis::Connection {
    let client = redis::Client::open(c.fleet.url(i)).expect("url");
    let mut con = client.get_connection().expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut cmd = redis::cmd("SUBSCRIBE");
    cmd.arg(release_channel(name));
    cmd.query::<redis::Value>(&mut con).expect("subscribe");
    con
}

/// The next message's payload; a read timeout fails the test instead of hanging it.
fn next_message(con: &mut redis::Connection) -> String {
    let reply = con.recv_response().expect("a message within 10 s");
    let parts = match reply {
        redis::Value::Array(parts) | redis::Value::Push { data: parts, .. } => parts,
        other => panic!("not a pub/sub message: {other:?}"),
    };
    match parts.as_slice() {
        [_, _, redis::Value::BulkString(payload)] => String::from_utf8_lossy(payload).into_owned(),
        other => panic!("not a pub/sub message: {other:?}"),
    }
}

/// An unlock announces itself on the lock's channel, `redlock:released:NAME`, on every
/// node it deleted the key from, with one message for the release, `TAG:SHA1` (the call's
/// tag and the SHA1 of the value; never the value); with `notify_release(false)` it
/// publishes nothing (the next message a subscriber gets is the test's own marker).
pub async fn release_is_published_on_the_lock_channel<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(5_000), factory, "release_published");
    let name = c.key("lock");
    let mut subscribers: Vec<redis::Connection> = (0..3).map(|i| subscribe(&c, i, &name)).collect();
    let guard = c.redlock.lock(&name).await.expect("lock");
    let digest = sha1_smol::Sha1::from(guard.value()).digest().to_string();
    guard.unlock().await.expect("unlock");
    let messages: Vec<String> = subscribers.iter_mut().map(next_message).collect();
    let (tag, sha1) = messages[0].split_once(':').expect("TAG:SHA1");
    assert!(tag.parse::<u64>().is_ok_and(|t| t > 0), "{messages:?}");
    assert_eq!(sha1, digest, "the SHA1 of the released value");
    assert!(
        messages.iter().all(|m| *m == messages[0]),
        "one message per release: {messages:?}"
    );

    let quiet: Redlock<P> = manager(&c.fleet, quick(5_000).notify_release(false), factory);
    let guard = quiet.lock(&name).await.expect("lock");
    guard.unlock().await.expect("unlock");
    for (i, sub) in subscribers.iter_mut().enumerate() {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(release_channel(&name)).arg("marker");
        c.fleet.query::<i64>(i, &cmd).expect("publish");
        assert_eq!(
            next_message(sub),
            "marker",
            "a switched-off release published"
        );
    }
}

/// A server whose default user may publish on no channel (`ACL SETUSER default
/// resetchannels`) still takes and releases the lock: the announcement is a hint, never a
/// reason for the release to fail.
pub async fn release_succeeds_where_publishing_is_denied<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(5_000), factory, "publish_denied");
    for i in 0..3 {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("default").arg("resetchannels");
        c.fleet.query::<()>(i, &cmd).expect("acl setuser");
    }
    let name = c.key("lock");
    let guard = c.redlock.lock(&name).await.expect("lock");
    guard
        .unlock()
        .await
        .expect("unlock where publishing is denied");
    assert_eq!(c.values(&name), vec![None; 3], "released everywhere");
}
