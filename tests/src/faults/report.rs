//! What the runs found, as report lines and as the list of problems that fail a test.

use std::time::Duration;

use super::checker::Verdict;
use super::fencing::Tokens;
use super::schedule::Plan;

/// What one run of one plan found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The driver's name.
    pub driver: String,
    /// The plan.
    pub plan: Plan,
    /// The run's seed.
    pub seed: u64,
    /// The checker's findings.
    pub verdict: Verdict,
    /// Faults started: model faults injected, early expiries (per node) and empty restarts.
    pub nemesis: usize,
    /// Long-work clients in the run.
    pub long_workers: usize,
    /// Early expiries done (one per node and step).
    pub early_expiries: usize,
    /// Nodes restarted at once with their data gone.
    pub empty_restarts: usize,
    /// Nodes killed (SIGKILL) and restarted at once with their data.
    pub kills: usize,
    /// Fenced holdings and writes.
    pub tokens: Tokens,
    /// Nemesis steps that started a fault, by kind (`kill`, `early_expiry`, ...).
    pub kinds: Vec<(String, usize)>,
    /// Lock keys found on the real servers once everything was released and the TTL
    /// had passed, as `node:key`.
    pub leftover_keys: Vec<String>,
    /// Nemesis steps or inspections that failed: harness problems, not findings.
    pub harness_errors: Vec<String>,
    /// Proxy connection tasks still alive after the proxies shut down.
    pub proxy_tasks_left: usize,
    /// The first violation, described.
    pub first_violation: Option<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl RunReport {
    /// The run's summary line: one `key=value` line per run, so that runs of every driver
    /// and seed can be compared with `grep`.
    pub fn line(&self) -> String {
        let v = &self.verdict;
        let (driver, seed, violations) = (&self.driver, self.seed, v.violations.len());
        let common = format!(
            "driver={driver} seed={seed} ops={} acquired={} nemesis={}",
            v.ops, v.acquired, self.nemesis
        );
        let l = &v.leases;
        let leases = format!(
            "leases={} renewals={} late_writes={}",
            l.holdings, l.renewals, l.late_writes
        );
        match self.plan {
            Plan::Model => format!(
                "faults {common} violations={violations} lost_updates={} {leases}",
                v.lost_updates
            ),
            Plan::Minority => format!(
                "minority {common} violations={violations} lost_updates={} {leases}",
                v.lost_updates
            ),
            Plan::Outside => format!(
                "outside {common} early_expiries={} empty_restarts={} violations={violations} \
                 lost_updates={} {leases}",
                self.early_expiries, self.empty_restarts, v.lost_updates
            ),
            Plan::Canary => format!(
                "canary driver={driver} violations={violations} lease_violations={} \
                 late_writes={}",
                l.violations, l.late_writes
            ),
            Plan::Fenced => format!(
                "fenced driver={driver} seed={seed} ops={} violations={violations} \
                 token_regressions={} stale_writes_rejected={}",
                v.ops, self.tokens.regressions, self.tokens.stale_writes_rejected
            ),
            Plan::Quarantine | Plan::Unquarantined => format!(
                "{} driver={driver} seed={seed} ops={} empty_restarts={} \
                 violations={violations} lost_updates={}",
                self.plan.label(),
                v.ops,
                self.empty_restarts,
                v.lost_updates
            ),
            Plan::Durable => format!(
                "durable driver={driver} seed={seed} ops={} kills={} violations={violations} \
                 lost_updates={}",
                v.ops, self.kills, v.lost_updates
            ),
            Plan::Soak => format!(
                "soak driver={driver} seed={seed} ops={} violations={violations} \
                 lost_updates={}",
                v.ops, v.lost_updates
            ),
        }
    }

    /// Detail lines: writes, extends, nemesis steps and failures by kind, liveness by
    /// fault situation, the first violation, harness errors.
    pub fn details(&self) -> Vec<String> {
        let v = &self.verdict;
        let tag = format!("{} driver={}", self.plan.label(), self.driver);
        let mut lines = vec![format!(
            "  detail {tag} writes={} skipped={} extends={} extend_failures={} \
             unlock_errors={} lost_updates={} leftover_keys={} proxy_tasks_left={} elapsed_ms={}",
            v.writes,
            v.skipped,
            v.extends.0,
            v.extends.1,
            v.unlock_errors,
            v.lost_updates,
            self.leftover_keys.len(),
            self.proxy_tasks_left,
            self.elapsed.as_millis()
        )];
        lines.push(self.lease_details(&tag));
        let t = &self.tokens;
        if t.holdings > 0 {
            lines.push(format!(
                "  tokens {tag} holdings={} regressions={} writes={} stale_writes_rejected={} \
                 stale_writes_taken={} late_writes_rejected={} failed_writes={}",
                t.holdings,
                t.regressions,
                t.writes,
                t.stale_writes_rejected,
                t.stale_writes_taken,
                t.late_writes_rejected,
                t.failed_writes
            ));
        }
        let failures: Vec<String> = v
            .failures
            .iter()
            .map(|(c, n)| format!("{}={n}", c.label()))
            .collect();
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
        lines.push(format!("  nemesis {tag} {}", kinds.join(" ")));
        let failures = if failures.is_empty() {
            vec!["none".into()]
        } else {
            failures
        };
        lines.push(format!("  failures {tag} {}", failures.join(" ")));
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        lines.extend(v.liveness.iter().map(|l| {
            format!(
                "  liveness {tag} {} attempts={} acquired={} share={:.3} p50_ms={:.1} \
                 p99_ms={:.1}",
                l.bucket,
                l.attempts,
                l.acquired,
                l.share(),
                ms(l.p50),
                ms(l.p99)
            )
        }));
        lines.extend(
            self.first_violation
                .iter()
                .map(|d| format!("  first {tag} {d}")),
        );
        lines.extend(
            self.harness_errors
                .iter()
                .map(|e| format!("  error {tag} {e}")),
        );
        lines
    }

    /// The long-work clients' figures: holdings, renewals seen, the longest holding, how
    /// holdings ended, writes and late writes.
    fn lease_details(&self, tag: &str) -> String {
        let l = &self.verdict.leases;
        let ended: Vec<String> = l.ended.iter().map(|(k, n)| format!("{k}={n}")).collect();
        format!(
            "  leases {tag} holdings={} unheeded={} renewals={} longest_ms={} writes={} \
             late_writes={} lease_violations={} ended: {}",
            l.holdings,
            l.unheeded,
            l.renewals,
            l.longest.as_millis(),
            l.writes,
            l.late_writes,
            l.violations,
            ended.join(" ")
        )
    }

    /// What makes this run fail: for the model, any violation, lost update, late write
    /// under a lease or key left, or long-work clients whose leases were never renewed;
    /// for the canary, finding no violation, or no late write of its client that ignores
    /// its lease; for every plan, harness errors and leaked tasks.
    pub fn problems(&self) -> Vec<String> {
        let v = &self.verdict;
        let tag = format!("{} driver={}", self.plan.label(), self.driver);
        let mut out = Vec::new();
        let mut fail = |cond: bool, what: String| {
            if cond {
                out.push(format!("{tag}: {what}"));
            }
        };
        let model = self.plan.judged();
        fail(
            model && !v.violations.is_empty(),
            format!("{} overlapping holdings", v.violations.len()),
        );
        fail(
            model && v.lost_updates > 0,
            format!("{} lost updates", v.lost_updates),
        );
        fail(
            model && v.writes == 0,
            "no protected write was ever done".into(),
        );
        fail(
            model && v.leases.late_writes > 0,
            format!("{} late writes under a lease", v.leases.late_writes),
        );
        let leases_judged = matches!(self.plan, Plan::Model | Plan::Minority);
        fail(
            leases_judged && self.long_workers > 0 && v.leases.renewals == 0,
            "no lease was renewed: the long work never outlasted an expiry".into(),
        );
        let t = &self.tokens;
        fail(
            model && t.regressions > 0,
            format!("{} fencing tokens did not grow", t.regressions),
        );
        fail(
            t.failed_writes > 0,
            format!("{} writes to the fenced resource failed", t.failed_writes),
        );
        fail(
            self.plan == Plan::Fenced && t.stale_writes_rejected == 0,
            "no stalled holder's write was refused: the fenced check was not exercised".into(),
        );
        fail(
            self.plan == Plan::Fenced && t.holdings == 0,
            "no fenced holding: the locks were not fenced".into(),
        );
        fail(
            self.plan == Plan::Canary && v.violations.is_empty(),
            "the canary found no violation: the checker cannot see".into(),
        );
        fail(
            self.plan == Plan::Canary && self.long_workers > 0 && v.leases.late_writes == 0,
            "the canary's client that ignores its lease made no late write: the checker \
             cannot see writes after a loss"
                .into(),
        );
        fail(
            !self.leftover_keys.is_empty(),
            format!("keys left: {:?}", self.leftover_keys),
        );
        fail(
            !self.harness_errors.is_empty(),
            format!("harness errors: {:?}", self.harness_errors),
        );
        fail(
            self.proxy_tasks_left > 0,
            format!("{} proxy tasks left", self.proxy_tasks_left),
        );
        out
    }
}

/// The runs of one driver, one per plan, in the order they ran.
#[derive(Debug, Clone)]
pub struct DriverReport {
    /// The runs.
    pub runs: Vec<RunReport>,
}

impl DriverReport {
    /// Everything that makes this driver's runs fail; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        self.runs.iter().flat_map(RunReport::problems).collect()
    }
}
