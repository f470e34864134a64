//! Fault schedules drawn from a seed.
//!
//! A schedule is planned in full before the run, as offsets from its start, so one seed
//! always gives the same faults on the same nodes at the same offsets (the interleaving
//! with the clients still depends on timing). Inside Redlock's model no more than a
//! minority of nodes is ever faulty at once, and a killed node comes back (empty) only
//! after the longest TTL has passed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::index;
use rand::{Rng, SeedableRng};

/// A fault inside Redlock's model, on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the server; it is restarted, empty, only after the longest TTL.
    Kill,
    /// SIGSTOP the server; SIGCONT on heal.
    Pause,
    /// The node's proxy holds all traffic: [`super::proxy::Mode::Blackhole`].
    Blackhole,
    /// The node's proxy resets connections: [`super::proxy::Mode::Reset`].
    Reset,
    /// The node's proxy refuses connections: [`super::proxy::Mode::Refuse`].
    Refuse,
    /// The node's proxy delays every reply by this much: [`super::proxy::Mode::Latency`].
    Slow(Duration),
}

impl Fault {
    /// A short lowercase name for report lines.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Blackhole => "blackhole",
            Fault::Reset => "reset",
            Fault::Refuse => "refuse",
            Fault::Slow(_) => "slow",
        }
    }
}

/// Which nemesis a run faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Faults inside Redlock's model only; the checker must find nothing.
    Model,
    /// A fixed minority down for liveness figures, inside the model: first all nodes up,
    /// then the last minority of nodes killed, then those nodes blackholed.
    Minority,
    /// The model's faults plus faults outside it (early expiry on a minority, restart with
    /// data lost at once); measured, not judged.
    Outside,
    /// Early expiry on a majority, over and over; the checker must fire.
    Canary,
    /// The model's faults with fenced locks, and holders that stall past their lock
    /// before writing: tokens must grow, and the stalled writes be refused.
    Fenced,
    /// The model's faults plus restarts that lose the data at once, with restart
    /// quarantine on: the checker must find nothing.
    Quarantine,
    /// The same nemesis as [`Plan::Quarantine`] with quarantine off: measured, to show
    /// what quarantine prevents.
    Unquarantined,
    /// Kill -9 and restart at once, keeping the data (an append-only file), with durable
    /// votes; only with `REDLOCK_FAULTS_PLAN=durable` and a server that has `WAITAOF`.
    Durable,
    /// The model's faults on many names with short holdings, for a long run; only with
    /// `REDLOCK_FAULTS_PLAN=soak`.
    Soak,
}

impl Plan {
    /// The plan's name in report lines: `faults`, `outside`, `canary`, ...
    pub fn label(self) -> &'static str {
        match self {
            Plan::Model => "faults",
            Plan::Minority => "minority",
            Plan::Outside => "outside",
            Plan::Canary => "canary",
            Plan::Fenced => "fenced",
            Plan::Quarantine => "quarantine",
            Plan::Unquarantined => "unquarantined",
            Plan::Durable => "durable",
            Plan::Soak => "soak",
        }
    }

    /// Whether the checker must find nothing in this plan's runs.
    pub fn judged(self) -> bool {
        !matches!(self, Plan::Outside | Plan::Canary | Plan::Unquarantined)
    }

    /// Whether this plan's clients reach the servers directly, not through the fault
    /// proxies: the soak, to spend its cores on locks; its nemesis then only kills and
    /// pauses servers.
    pub fn direct(self) -> bool {
        self == Plan::Soak
    }

    /// Whether this plan's clients keep restart quarantine on.
    pub fn quarantined(self) -> bool {
        self == Plan::Quarantine
    }
}

/// What one step does to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Starts a fault inside the model.
    Inject(Fault),
    /// Ends that fault.
    Heal(Fault),
    /// Deletes every lock key on the node, directly on the server: the stand-in for a
    /// jump of the server's clock.
    EarlyExpiry,
    /// Kills the node and restarts it at once, empty, while locks on it may be valid.
    RestartEmpty,
    /// Kills the node (SIGKILL) and restarts it at once with its data (its append-only
    /// file), while locks on it may be valid.
    RestartKeepingData,
}

impl Action {
    /// A short name for report lines: `kill`, `heal_kill`, `early_expiry`, ...
    pub fn label(self) -> String {
        match self {
            Action::Inject(fault) => fault.label().into(),
            Action::Heal(fault) => format!("heal_{}", fault.label()),
            Action::EarlyExpiry => "early_expiry".into(),
            Action::RestartEmpty => "restart_empty".into(),
            Action::RestartKeepingData => "restart_keeping_data".into(),
        }
    }
}

/// One planned action, at an offset from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// When, from the start of the run.
    pub at: Duration,
    /// Which node.
    pub node: usize,
    /// What.
    pub action: Action,
}

/// The shape of a schedule.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Number of nodes.
    pub nodes: usize,
    /// How long faults are injected; heals of kills may come later.
    pub duration: Duration,
    /// The least time a killed node stays down: the longest TTL a lock can set.
    pub kill_hold: Duration,
}

/// A full fault schedule, sorted by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// The schedule for `plan`, drawn from `seed`.
    pub fn generate(seed: u64, plan: Plan, spec: &Spec) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut steps = match plan {
            Plan::Model | Plan::Fenced => faults(&mut rng, spec, false),
            Plan::Soak => faults(&mut rng, spec, false)
                .into_iter()
                .map(|step| Step {
                    action: on_servers(step.action),
                    ..step
                })
                .collect(),
            Plan::Minority => minority_down(spec),
            Plan::Outside => faults(&mut rng, spec, true),
            Plan::Canary => canary(&mut rng, spec),
            Plan::Quarantine | Plan::Unquarantined => {
                let mut steps = faults(&mut rng, spec, false);
                steps.extend(restarts(&mut rng, spec, Action::RestartEmpty));
                steps
            }
            Plan::Durable => restarts(&mut rng, spec, Action::RestartKeepingData),
        };
        // Heals first among steps at one instant, so a node is free before it is reused.
        steps.sort_by_key(|s| (s.at, matches!(s.action, Action::Inject(_))));
        Self { steps }
    }

    /// How many faults inside the model are injected.
    pub fn injected(&self) -> usize {
        self.count(|a| matches!(a, Action::Inject(_)))
    }

    /// How many steps match `pred`.
    pub fn count(&self, pred: impl Fn(Action) -> bool) -> usize {
        self.steps.iter().filter(|s| pred(s.action)).count()
    }

    /// The most nodes under a fault inside the model at any one time.
    pub fn max_faulty(&self) -> usize {
        let (mut now, mut most) = (0usize, 0);
        for step in &self.steps {
            match step.action {
                Action::Inject(_) => now += 1,
                Action::Heal(_) => now = now.saturating_sub(1),
                _ => {}
            }
            most = most.max(now);
        }
        most
    }
}

/// The most nodes faulty at once: a minority.
pub fn minority(nodes: usize) -> usize {
    nodes.saturating_sub(1) / 2
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..hi))
}

fn faults(rng: &mut StdRng, spec: &Spec, outside: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut busy_until = vec![Duration::ZERO; spec.nodes];
    let mut at = ms(rng, 100, 300);
    while at < spec.duration {
        let free: Vec<usize> = (0..spec.nodes).filter(|&n| busy_until[n] <= at).collect();
        let faulty = spec.nodes - free.len();
        if faulty < minority(spec.nodes) && !free.is_empty() && rng.random_bool(0.6) {
            let node = free[rng.random_range(0..free.len())];
            let fault = pick_fault(rng);
            let until = match fault {
                Fault::Kill => at + spec.kill_hold + ms(rng, 0, 400),
                _ => (at + ms(rng, 200, 1_500)).min(spec.duration),
            };
            steps.push(Step {
                at,
                node,
                action: Action::Inject(fault),
            });
            steps.push(Step {
                at: until,
                node,
                action: Action::Heal(fault),
            });
            busy_until[node] = until;
        }
        if outside && rng.random_bool(0.5) {
            outside_step(rng, spec, at, &mut busy_until, &mut steps);
        }
        at += ms(rng, 100, 400);
    }
    steps
}

/// A third of the time up, a third (at least the kill hold) with a minority killed, the
/// rest with that minority blackholed.
fn minority_down(spec: &Spec) -> Vec<Step> {
    let third = spec.duration / 3;
    let restart = (third * 2).max(third + spec.kill_hold);
    let nodes = spec.nodes.saturating_sub(minority(spec.nodes))..spec.nodes;
    let mut steps = Vec::new();
    for node in nodes {
        let (kill, hole) = (Fault::Kill, Fault::Blackhole);
        steps.push(Step {
            at: third,
            node,
            action: Action::Inject(kill),
        });
        steps.push(Step {
            at: restart,
            node,
            action: Action::Heal(kill),
        });
        steps.push(Step {
            at: restart,
            node,
            action: Action::Inject(hole),
        });
        let end = spec.duration.max(restart);
        steps.push(Step {
            at: end,
            node,
            action: Action::Heal(hole),
        });
    }
    steps
}

/// `action`, with the proxies' faults (which a plan that goes straight to the servers
/// cannot see) turned into pauses of the server.
fn on_servers(action: Action) -> Action {
    match action {
        Action::Inject(Fault::Kill) | Action::Heal(Fault::Kill) => action,
        Action::Inject(_) => Action::Inject(Fault::Pause),
        Action::Heal(_) => Action::Heal(Fault::Pause),
        other => other,
    }
}

fn pick_fault(rng: &mut StdRng) -> Fault {
    match rng.random_range(0..6) {
        0 => Fault::Kill,
        1 => Fault::Pause,
        2 => Fault::Blackhole,
        3 => Fault::Reset,
        4 => Fault::Refuse,
        _ => Fault::Slow(ms(rng, 20, 200)),
    }
}

/// Early expiry on a minority of the nodes that are up, or an empty restart of one.
fn outside_step(
    rng: &mut StdRng,
    spec: &Spec,
    at: Duration,
    busy_until: &mut [Duration],
    steps: &mut Vec<Step>,
) {
    let free: Vec<usize> = (0..spec.nodes).filter(|&n| busy_until[n] <= at).collect();
    if free.is_empty() {
        return;
    }
    if rng.random_bool(0.25) {
        let node = free[rng.random_range(0..free.len())];
        busy_until[node] = at + Duration::from_millis(200);
        let action = Action::RestartEmpty;
        steps.push(Step { at, node, action });
        return;
    }
    let count = rng.random_range(1..=minority(spec.nodes).clamp(1, free.len()));
    for i in index::sample(rng, free.len(), count) {
        let node = free[i];
        let action = Action::EarlyExpiry;
        steps.push(Step { at, node, action });
    }
}

/// A node restarted at once (`action`) every 200 to 600 ms, on any node: the restarts are
/// outside the model's count of faulty nodes, since a restart is over at once.
fn restarts(rng: &mut StdRng, spec: &Spec, action: Action) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut at = ms(rng, 100, 300);
    while at < spec.duration && spec.nodes > 0 {
        let node = rng.random_range(0..spec.nodes);
        steps.push(Step { at, node, action });
        at += ms(rng, 200, 600);
    }
    steps
}

fn canary(rng: &mut StdRng, spec: &Spec) -> Vec<Step> {
    let majority = spec.nodes / 2 + 1;
    let mut steps = Vec::new();
    let mut at = ms(rng, 10, 25);
    while at < spec.duration {
        for node in index::sample(rng, spec.nodes, majority.min(spec.nodes)) {
            let action = Action::EarlyExpiry;
            steps.push(Step { at, node, action });
        }
        at += ms(rng, 10, 25);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            nodes: 5,
            duration: Duration::from_secs(30),
            kill_hold: Duration::from_millis(1_300),
        }
    }

    #[test]
    fn a_seed_gives_one_schedule() {
        for plan in [Plan::Model, Plan::Outside, Plan::Canary] {
            let a = Schedule::generate(7, plan, &spec());
            assert_eq!(a, Schedule::generate(7, plan, &spec()));
            assert_ne!(a, Schedule::generate(8, plan, &spec()));
        }
    }

    #[test]
    fn minority_plan_kills_then_blackholes_the_last_two_nodes() {
        let short = Spec {
            duration: Duration::from_secs(3),
            ..spec()
        };
        let s = Schedule::generate(0, Plan::Minority, &short);
        assert_eq!(s.max_faulty(), 2);
        assert!(s.steps.iter().all(|s| s.node >= 3));
        let kill = |a| s.steps.iter().find(|s| s.action == a).map(|s| s.at);
        let (down, up) = (
            kill(Action::Inject(Fault::Kill)),
            kill(Action::Heal(Fault::Kill)),
        );
        assert_eq!(down, Some(Duration::from_secs(1)));
        assert_eq!(
            up,
            Some(Duration::from_millis(2_300)),
            "kill hold respected"
        );
    }

    #[test]
    fn model_faults_stay_within_a_minority_and_kills_wait_out_the_ttl() {
        for seed in 0..50 {
            let s = Schedule::generate(seed, Plan::Model, &spec());
            assert!(s.injected() > 10, "seed {seed}: {}", s.injected());
            assert!(s.max_faulty() <= 2, "seed {seed}");
            assert_eq!(s.count(|a| matches!(a, Action::Heal(_))), s.injected());
            assert_eq!(
                s.count(|a| !matches!(a, Action::Inject(_) | Action::Heal(_))),
                0
            );
            for (i, kill) in s.steps.iter().enumerate() {
                if kill.action != Action::Inject(Fault::Kill) {
                    continue;
                }
                let heal = s.steps[i..]
                    .iter()
                    .find(|h| h.node == kill.node && h.action == Action::Heal(Fault::Kill));
                let heal = heal.expect("every kill is healed");
                assert!(heal.at >= kill.at + spec().kill_hold, "seed {seed}");
            }
        }
    }

    #[test]
    fn restart_plans_restart_as_their_names_say() {
        for plan in [Plan::Quarantine, Plan::Unquarantined] {
            let s = Schedule::generate(3, plan, &spec());
            assert!(s.count(|a| a == Action::RestartEmpty) > 10, "{plan:?}");
            assert!(s.max_faulty() <= 2, "{plan:?}");
        }
        let q = Schedule::generate(3, Plan::Quarantine, &spec());
        assert_eq!(
            q,
            Schedule::generate(3, Plan::Unquarantined, &spec()),
            "one nemesis"
        );
        let d = Schedule::generate(3, Plan::Durable, &spec());
        assert_eq!(d.count(|a| a == Action::RestartKeepingData), d.steps.len());
    }

    #[test]
    fn outside_and_canary_plans_touch_the_data() {
        let s = Schedule::generate(3, Plan::Outside, &spec());
        assert!(s.count(|a| a == Action::EarlyExpiry) > 0);
        assert!(s.count(|a| a == Action::RestartEmpty) > 0);
        let c = Schedule::generate(3, Plan::Canary, &spec());
        assert_eq!(c.injected(), 0);
        let first: Vec<usize> = c.steps.iter().take(3).map(|s| s.node).collect();
        assert!(
            c.steps.iter().take(3).all(|s| s.at == c.steps[0].at),
            "{first:?}"
        );
    }
}
