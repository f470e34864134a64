//! One call to a node, [`FredConn`]: a script sent as a custom command, routed by its
//! key, tried once.

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options as CallOptions;
use fred::types::{ClusterHash, CustomCommand, Value};
use redlock_core::{Conn, ConnError, Reply, ScriptRef};

use crate::convert::{map_error, to_reply};

/// Runs the core's scripts on one fred client, without buffering or replays.
#[derive(Clone, Debug)]
pub struct FredConn {
    pub(crate) client: Client,
}

impl FredConn {
    async fn call(
        &self,
        command: &'static str,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let mut values = Vec::with_capacity(2 + keys.len() + args.len());
        values.push(Value::from(script));
        values.push(Value::Integer(keys.len().try_into().unwrap_or(i64::MAX)));
        values.extend(keys.iter().chain(args).map(|s| Value::from(*s)));
        let options = CallOptions {
            fail_fast: true,
            max_attempts: Some(1),
            ..CallOptions::default()
        };
        // On a cluster, the call goes to the slot of KEYS[1], the lock's one key. fred routes
        // a custom command by its hash only when that is a slot (`Custom`); any other
        // policy, `Offset` included, hashes the first string argument: the script.
        let slot = keys
            .first()
            .map_or(ClusterHash::Random, |key| ClusterHash::from(*key));
        let command = CustomCommand::new_static(command, slot, false);
        let value: Value = self
            .client
            .with_options(&options)
            .custom(command, values)
            .await
            .map_err(map_error)?;
        to_reply(value)
    }
}

#[async_trait]
impl Conn for FredConn {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        self.call(script.command(), script.text(), keys, args).await
    }
}
