//! The nemesis: plays a [`Schedule`] against the fleet (kill, restart, SIGSTOP and
//! SIGCONT, deletes straight on the servers) and the proxies (mode switches).

use std::time::Duration;

use tokio::time::Instant;

use super::proxy::{Mode, ProxyControl};
use super::schedule::{Action, Fault, Schedule};
use crate::fleet::Fleet;

/// One step as it was carried out.
#[derive(Debug, Clone)]
pub struct Event {
    /// When it was done, on the clients' clock.
    pub at: Instant,
    /// Which node.
    pub node: usize,
    /// What.
    pub action: Action,
    /// Why it failed, if it did: a harness problem, not a finding.
    pub error: Option<String>,
}

/// Plays a schedule against the fleet (signals, kills, direct deletes) and the proxies.
#[derive(Debug)]
pub struct Executor<'a> {
    /// The servers.
    pub fleet: &'a mut Fleet,
    /// One proxy control per node, in node order.
    pub proxies: &'a [ProxyControl],
    /// Every lock key of the run, for early expiry.
    pub keys: &'a [String],
}

impl Executor<'_> {
    /// Runs every step at `start + step.at` (blocking: call it on a blocking thread) and
    /// returns what was done.
    ///
    /// A kill carried out late (a slow step before it) is healed as late: the node stays
    /// down as long as planned, so that it comes back only once the keys it held expired
    /// (the schedule's kill hold), however slow the machine.
    pub fn run(&mut self, schedule: &Schedule, start: Instant) -> Vec<Event> {
        let mut events = Vec::with_capacity(schedule.steps.len());
        let mut kill_late = vec![Duration::ZERO; self.fleet.len()];
        for step in &schedule.steps {
            let mut due = start + step.at;
            if step.action == Action::Heal(Fault::Kill) {
                due += kill_late.get(step.node).copied().unwrap_or_default();
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let done = Instant::now();
            if step.action == Action::Inject(Fault::Kill)
                && let Some(late) = kill_late.get_mut(step.node)
            {
                *late = done.saturating_duration_since(due);
            }
            let error = self.apply(step.node, step.action).err();
            events.push(Event {
                at: Instant::now(),
                node: step.node,
                action: step.action,
                error,
            });
        }
        events
    }

    fn apply(&mut self, node: usize, action: Action) -> Result<(), String> {
        let fail = |e: crate::fleet::FleetError| format!("{action:?} on node {node}: {e}");
        match action {
            Action::Inject(Fault::Kill) => self.fleet.kill(node).map_err(fail),
            // A restart kills a running node first; a durable fleet's node comes back with
            // its append-only file.
            Action::Heal(Fault::Kill) | Action::RestartEmpty | Action::RestartKeepingData => {
                self.fleet.restart(node).map_err(fail)
            }
            Action::Inject(Fault::Pause) => self.fleet.pause(node).map_err(fail),
            Action::Heal(Fault::Pause) => self.fleet.resume(node).map_err(fail),
            Action::Inject(Fault::Blackhole) => self.set_mode(node, Mode::Blackhole),
            Action::Inject(Fault::Reset) => self.set_mode(node, Mode::Reset),
            Action::Inject(Fault::Refuse) => self.set_mode(node, Mode::Refuse),
            Action::Inject(Fault::Slow(delay)) => self.set_mode(node, Mode::Latency(delay)),
            Action::Heal(_) => self.set_mode(node, Mode::Pass),
            Action::EarlyExpiry => self
                .keys
                .iter()
                .try_for_each(|key| self.fleet.del(node, key))
                .map_err(fail),
        }
    }

    fn set_mode(&self, node: usize, mode: Mode) -> Result<(), String> {
        let proxy = self.proxies.get(node);
        proxy
            .ok_or_else(|| format!("no proxy for node {node}"))?
            .set(mode);
        Ok(())
    }
}
