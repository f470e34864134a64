//! Safety under faults, for every driver: `cargo test --release -p redlock-conformance
//! --test faults -- --nocapture`.
//!
//! Each driver faces the same seeded schedules: faults inside Redlock's model (the checker
//! must find nothing), a fixed minority down (liveness figures; must be clean too), faults
//! outside the model (measured only), and the canary (early expiry on a majority; the
//! checker must fire). Set `REDLOCK_FAULTS_SEED` to replay a seed's schedules and
//! `REDLOCK_FAULTS_SECS` to run longer.

use redlock_conformance::faults::{
    Config, DriverReport, RunReport, SECS_VAR, SEED_VAR, run_driver,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_driver_keeps_mutual_exclusion_under_faults() {
    let config = Config::from_env().unwrap_or_else(|e| panic!("{e}"));
    let seed = config.seed;
    let secs = config.model.as_secs();
    println!("faults seed={seed} secs={secs} ({SEED_VAR}={seed} replays; {SECS_VAR} runs longer)");
    let reports = [
        run_driver("redis-rs", &redlock_redis_rs::RedisPool::from_url, &config)
            .await
            .unwrap_or_else(|e| panic!("redis-rs run (seed {seed}): {e}")),
        run_driver("fred", &redlock_fred::FredPool::from_url, &config)
            .await
            .unwrap_or_else(|e| panic!("fred run (seed {seed}): {e}")),
        run_driver(
            "deadpool",
            &redlock_deadpool::DeadpoolPool::from_url,
            &config,
        )
        .await
        .unwrap_or_else(|e| panic!("deadpool run (seed {seed}): {e}")),
    ];
    println!();
    // The lines (faults, then canary) come last.
    let plans: [fn(&DriverReport) -> &RunReport; 4] =
        [|r| &r.minority, |r| &r.outside, |r| &r.model, |r| &r.canary];
    for plan in plans {
        reports.iter().for_each(|r| println!("{}", plan(r).line()));
    }
    let problems: Vec<String> = reports.iter().flat_map(DriverReport::problems).collect();
    assert!(
        problems.is_empty(),
        "seed {seed} ({SEED_VAR}={seed} replays it):\n{}",
        problems.join("\n")
    );
}
