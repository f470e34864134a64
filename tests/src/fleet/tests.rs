#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn info_pid(fleet: &Fleet, i: usize) -> Option<u32> {
    let info: String = fleet.query(i, redis::cmd("INFO").arg("server")).unwrap();
    info_field(&info, "process_id:").and_then(|v| v.parse().ok())
}

#[test]
fn start_owns_every_node_on_its_own_port() {
    let fleet = Fleet::start(3).unwrap();
    assert_eq!(fleet.len(), 3);
    let mut ports: Vec<u16> = (0..3).map(|i| fleet.port(i)).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for i in 0..3 {
        assert!(fleet.pid(i).is_some());
        assert_eq!(info_pid(&fleet, i), fleet.pid(i));
        assert_eq!(
            fleet.url(i),
            format!("redis://127.0.0.1:{}/", fleet.port(i))
        );
    }
    assert_eq!(fleet.urls().len(), 3);
}

#[test]
fn set_get_pttl_del_keys() {
    let fleet = Fleet::start(1).unwrap();
    let key = format!("{}k", unique_prefix("set_get"));
    assert_eq!(fleet.get(0, &key).unwrap(), None);
    assert_eq!(fleet.pttl(0, &key).unwrap(), -2);
    fleet.set(0, &key, "v", 10_000).unwrap();
    assert_eq!(fleet.get(0, &key).unwrap().as_deref(), Some("v"));
    let pttl = fleet.pttl(0, &key).unwrap();
    assert!(pttl > 0 && pttl <= 10_000, "pttl {pttl}");
    fleet.set(0, &key, "w", 0).unwrap();
    assert_eq!(fleet.pttl(0, &key).unwrap(), -1);
    assert_eq!(
        fleet.keys(0, "rltest:set_get:*").unwrap(),
        vec![key.clone()]
    );
    fleet.del(0, &key).unwrap();
    assert_eq!(fleet.get(0, &key).unwrap(), None);
}

#[test]
fn kill_then_restart_reuses_port_with_empty_data() {
    let mut fleet = Fleet::start(3).unwrap();
    for i in 0..3 {
        fleet.set(i, "k", "v", 60_000).unwrap();
    }
    let (port, old) = (fleet.port(1), fleet.pid(1).unwrap());
    fleet.kill(1).unwrap();
    assert!(gone(old));
    assert_eq!(fleet.pid(1), None);
    assert!(matches!(
        fleet.get(1, "k"),
        Err(FleetError::NotRunning { node: 1 })
    ));
    assert!(matches!(
        fleet.pause(1),
        Err(FleetError::NotRunning { node: 1 })
    ));
    fleet.kill(1).unwrap();
    assert_eq!(fleet.get(0, "k").unwrap().as_deref(), Some("v"));

    fleet.restart(1).unwrap();
    assert_eq!(fleet.port(1), port);
    assert_ne!(fleet.pid(1), Some(old));
    assert_eq!(info_pid(&fleet, 1), fleet.pid(1));
    assert_eq!(fleet.get(1, "k").unwrap(), None);
    assert!(fleet.keys(1, "*").unwrap().is_empty());

    // Restarting a live node replaces it.
    let before = fleet.pid(1).unwrap();
    fleet.restart(1).unwrap();
    assert!(gone(before));
    assert_eq!(info_pid(&fleet, 1), fleet.pid(1));
}

#[test]
fn paused_node_times_out_and_answers_after_resume() {
    let fleet = Fleet::start(3).unwrap();
    fleet.set(2, "k", "v", 60_000).unwrap();
    fleet.pause(2).unwrap();
    let err = fleet.get(2, "k").unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(fleet.get(0, "k").unwrap(), None);
    fleet.resume(2).unwrap();
    assert_eq!(fleet.get(2, "k").unwrap().as_deref(), Some("v"));
}

#[test]
fn flush_scripts_and_command_count() {
    let fleet = Fleet::start(1).unwrap();
    let sha: String = fleet
        .query(0, redis::cmd("SCRIPT").arg("LOAD").arg("return 7"))
        .unwrap();
    let evalsha = || fleet.query::<i64>(0, redis::cmd("EVALSHA").arg(&sha).arg(0));
    assert_eq!(fleet.command_count(0, "evalsha").unwrap(), 0);
    assert_eq!(evalsha().unwrap(), 7);
    assert_eq!(evalsha().unwrap(), 7);
    assert_eq!(fleet.command_count(0, "EVALSHA").unwrap(), 2);
    assert_eq!(fleet.command_count(0, "script|load").unwrap(), 1);
    fleet.flush_scripts(0).unwrap();
    let err = evalsha().unwrap_err();
    let noscript = redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);
    assert!(
        matches!(&err, FleetError::Redis { source, .. } if source.kind() == noscript),
        "{err}"
    );
    fleet.reset_stats(0).unwrap();
    assert_eq!(fleet.command_count(0, "evalsha").unwrap(), 0);
}

#[test]
fn drop_reaps_every_child_and_removes_the_dir() {
    let mut fleet = Fleet::start(3).unwrap();
    fleet.pause(2).unwrap();
    fleet.kill(0).unwrap();
    let pids: Vec<u32> = (1..3).filter_map(|i| fleet.pid(i)).collect();
    let root = fleet.root.clone();
    assert_eq!(pids.len(), 2);
    assert!(root.is_dir());
    drop(fleet);
    assert!(pids.iter().all(|&pid| gone(pid)), "{pids:?}");
    assert!(!root.exists());
}

#[test]
fn drop_on_panic_reaps_every_child() {
    let pids = Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let fleet = Fleet::start(2).unwrap();
        lock(&pids).extend((0..2).filter_map(|i| fleet.pid(i)));
        panic!("test body fails while the fleet is alive");
    });
    assert!(result.is_err());
    let pids = lock(&pids);
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&pid| gone(pid)), "{pids:?}");
}

#[test]
fn missing_binary_names_the_package() {
    let err = Fleet::start_program(OsStr::new("redis-server-not-installed"), 1).unwrap_err();
    assert!(err.is_missing());
    let message = err.to_string();
    assert!(
        message.starts_with("redis-server-not-installed not found: REDLOCK_SERVER must name"),
        "{message}"
    );
    let missing = FleetError::Missing {
        program: "redis-server".into(),
    };
    assert_eq!(
        missing.to_string(),
        "redis-server not found: install the Debian package `redis-server` \
         (apt-get install -y redis-server)"
    );
}

#[test]
fn empty_fleet_is_empty() {
    let fleet = Fleet::start(0).unwrap();
    assert!(fleet.is_empty());
    assert!(fleet.urls().is_empty());
}

#[test]
fn unique_prefixes_differ() {
    let (a, b) = (unique_prefix("t"), unique_prefix("t"));
    assert_ne!(a, b);
    assert!(
        a.starts_with("rltest:t:") && a.ends_with(':') && a.len() == 26,
        "{a}"
    );
}

#[test]
fn parses_info_fields() {
    let info = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.5\r\n\
                cmdstat_script|flush:calls=1,usec=3\r\n";
    assert_eq!(parse_calls(info, "evalsha"), 12);
    assert_eq!(parse_calls(info, "SCRIPT|FLUSH"), 1);
    assert_eq!(parse_calls(info, "eval"), 0);
    assert_eq!(
        info_field("a:1\r\nprocess_id:42\r\n", "process_id:"),
        Some("42")
    );
}

/// The fleet runs the server `REDLOCK_SERVER` names: Valkey reports itself as such, and
/// without the variable the server is Redis.
#[test]
fn runs_the_server_asked_for() {
    let fleet = Fleet::start(1).unwrap();
    let info: String = fleet
        .query(0, &redis::cmd("INFO").arg("server").clone())
        .unwrap();
    let asked = std::env::var(SERVER_VAR).unwrap_or_default();
    let valkey = info.contains("server_name:valkey");
    assert_eq!(
        asked.contains("valkey"),
        valkey,
        "asked for {asked:?}; INFO: {info}"
    );
    assert!(info.contains("redis_version:"), "{info}");
}
