//! An exhaustive check of the fenced acquire protocol (see `FENCING.md`) on small
//! configurations: every interleaving of clients, nodes and messages, with messages
//! delayed and reordered per node, keys expiring, and nodes restarting with and without
//! their data.
//!
//! A hand-written breadth-first explorer rather than `stateright`: the model is one small
//! state type and one successor function, the explorer is thirty lines, and the check
//! then needs no dependency and compiles in a second. What `stateright` adds (a web
//! explorer, linearizability checkers, actor networks) this check does not use.
//!
//! Time is not modelled by clocks but by the one assumption the lock rests on: a key
//! outlives its holder's validity (bounded drift). So a key may expire at any moment
//! except while the attempt that set it is a holding; an attempt whose key expired before
//! it counted its votes can no longer begin a holding (its validity is used up); and a
//! node that restarted empty leaves quarantine only once every attempt that began before
//! the restart has ended or can no longer begin a holding (the quarantine lasts the
//! longest expiry plus the drift allowance).
//!
//! Run with `cargo test --release -p redlock-core --test fence_model -- --nocapture`.

use std::collections::{HashSet, VecDeque};

use redlock_core::fence;

/// A client's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Acquiring,
    Holding,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Client {
    phase: Phase,
    /// Attempts started so far; the current attempt's number.
    attempt: u8,
    token: u8,
    /// The largest fence this client has seen: its next proposal is one more.
    hint: u8,
    granted: u8,
    answered: u8,
    /// One of the attempt's keys expired before it counted: its validity is used up.
    late: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    /// The lock key: which client's which attempt set it.
    key: Option<(u8, u8)>,
    fence: u8,
    quarantined: bool,
    /// The clients whose current attempt began before this node last restarted empty.
    old: u8,
}

/// A lock request in flight to node `n`: client `c`'s attempt `a`, proposing `token`.
///
/// Only requests are messages. A reply is applied to the client when the node runs the
/// request: the client acts on replies only once it counts them, a step of its own that
/// may come at any later time, which covers every delay of the replies. A release is not
/// a message either: the key of an attempt that is not a holding may expire at any time,
/// which covers every delay of a release, and its loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Msg {
    c: u8,
    a: u8,
    n: u8,
    token: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    nodes: Vec<Node>,
    clients: Vec<Client>,
    /// Messages in flight, as a sorted multiset: any one may be delivered next.
    net: Vec<Msg>,
    /// The largest token of any holding begun so far.
    max_begun: u8,
    restarts_with_data: u8,
    restarts_empty: u8,
}

/// One configuration, and the deliberate faults of the broken variants.
#[derive(Debug, Clone, Copy)]
struct Config {
    nodes: u8,
    clients: u8,
    attempts: u8,
    quorum: usize,
    restarts_with_data: u8,
    restarts_empty: u8,
    quarantine: bool,
    /// Nodes compare the proposal with their fence (the broken variant does not).
    check_fence: bool,
    /// Whether token order is claimed (an unfenced lock claims only exclusion).
    fenced: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    states: usize,
    overlaps: usize,
    token_regressions: usize,
}

impl Outcome {
    fn violations(&self) -> usize {
        self.overlaps + self.token_regressions
    }
}

fn explore(config: Config) -> Outcome {
    let start = State {
        nodes: vec![
            Node {
                key: None,
                fence: 0,
                quarantined: false,
                old: 0,
            };
            config.nodes.into()
        ],
        clients: vec![
            Client {
                phase: Phase::Idle,
                attempt: 0,
                token: 0,
                hint: 0,
                granted: 0,
                answered: 0,
                late: false,
            };
            config.clients.into()
        ],
        net: Vec::new(),
        max_begun: 0,
        restarts_with_data: config.restarts_with_data,
        restarts_empty: config.restarts_empty,
    };
    let mut outcome = Outcome::default();
    let mut seen = HashSet::from([start.clone()]);
    let mut queue = VecDeque::from([start]);
    while let Some(state) = queue.pop_front() {
        outcome.states += 1;
        for (next, violation) in successors(&state, config) {
            match violation {
                Some(Violation::Overlap) => outcome.overlaps += 1,
                Some(Violation::TokenRegression) => outcome.token_regressions += 1,
                // A state after a violation is not explored further.
                None if seen.insert(next.clone()) => queue.push_back(next),
                None => {}
            }
        }
    }
    outcome
}

enum Violation {
    Overlap,
    TokenRegression,
}

fn successors(s: &State, config: Config) -> Vec<(State, Option<Violation>)> {
    let mut out = Vec::new();
    let all = (1u8 << config.nodes) - 1;
    for c in 0..config.clients {
        let client = &s.clients[usize::from(c)];
        match client.phase {
            Phase::Idle if client.attempt < config.attempts => {
                out.push((start_attempt(s, c, config), None))
            }
            Phase::Acquiring if client.answered == all => out.push(decide(s, c, config)),
            Phase::Holding => out.push((end_attempt(s, c, config), None)),
            _ => {}
        }
    }
    for &msg in &s.net {
        out.push((deliver(s, msg, config), None));
    }
    for n in 0..config.nodes {
        out.extend(node_events(s, n, config).into_iter().map(|s| (s, None)));
    }
    out
}

fn start_attempt(s: &State, c: u8, config: Config) -> State {
    let mut s = s.clone();
    let client = &mut s.clients[usize::from(c)];
    client.attempt += 1;
    client.token = client.hint + 1;
    client.granted = 0;
    client.answered = 0;
    client.late = false;
    client.phase = Phase::Acquiring;
    let (a, token) = (client.attempt, client.token);
    for node in &mut s.nodes {
        node.old &= !(1 << c);
    }
    for n in 0..config.nodes {
        send(&mut s, Msg { c, a, n, token });
    }
    s
}

/// Counts the votes once every node answered or failed: a holding begins, or the attempt
/// is released everywhere.
fn decide(s: &State, c: u8, config: Config) -> (State, Option<Violation>) {
    let mut next = s.clone();
    let client = &next.clients[usize::from(c)];
    let granted = client.granted.count_ones() as usize;
    if granted >= config.quorum && !client.late {
        let token = client.token;
        let overlap = s.clients.iter().any(|o| o.phase == Phase::Holding);
        let regression = config.fenced && token <= s.max_begun;
        next.max_begun = next.max_begun.max(token);
        let client = &mut next.clients[usize::from(c)];
        client.phase = Phase::Holding;
        client.hint = client.hint.max(token);
        let violation = if overlap {
            Some(Violation::Overlap)
        } else if regression {
            Some(Violation::TokenRegression)
        } else {
            None
        };
        return (next, violation);
    }
    (end_attempt(s, c, config), None)
}

/// Ends the attempt (a holding's unlock, or a failed attempt's cleanup): its keys may
/// now go at any time.
fn end_attempt(s: &State, c: u8, config: Config) -> State {
    let mut s = s.clone();
    let client = &mut s.clients[usize::from(c)];
    client.phase = if client.attempt < config.attempts {
        Phase::Idle
    } else {
        Phase::Done
    };
    s
}

/// Node `msg.n` runs the request, and the client gets the reply.
fn deliver(s: &State, msg: Msg, config: Config) -> State {
    let mut s = s.clone();
    take(&mut s, msg);
    let Msg { c, a, n, token } = msg;
    let node = &mut s.nodes[usize::from(n)];
    let stale = config.check_fence && token <= node.fence;
    if node.key.is_some() || stale {
        let fence = node.fence;
        answer(&mut s, c, a, n, false, fence);
    } else {
        node.key = Some((c, a));
        node.fence = node.fence.max(token);
        let counts = !(node.quarantined && config.quarantine);
        answer(&mut s, c, a, n, counts, 0);
    }
    s
}

fn answer(s: &mut State, c: u8, a: u8, n: u8, granted: bool, fence: u8) {
    let client = &mut s.clients[usize::from(c)];
    client.hint = client.hint.max(fence);
    if client.phase == Phase::Acquiring && client.attempt == a {
        client.answered |= 1 << n;
        if granted {
            client.granted |= 1 << n;
        }
    }
}

/// A node's own events: its key expiring, a restart with or without its data, the end of
/// its quarantine.
fn node_events(s: &State, n: u8, config: Config) -> Vec<State> {
    let mut out = Vec::new();
    let node = &s.nodes[usize::from(n)];
    if let Some((c, a)) = node.key {
        let owner = &s.clients[usize::from(c)];
        let protected = owner.phase == Phase::Holding && owner.attempt == a;
        if !protected {
            let mut next = s.clone();
            next.nodes[usize::from(n)].key = None;
            let owner = &mut next.clients[usize::from(c)];
            if owner.phase == Phase::Acquiring && owner.attempt == a {
                owner.late = true;
            }
            out.push(next);
        }
    }
    if s.restarts_with_data > 0 {
        let mut next = s.clone();
        next.restarts_with_data -= 1;
        cut_connections(&mut next, n);
        out.push(next);
    }
    if s.restarts_empty > 0 {
        let mut next = s.clone();
        next.restarts_empty -= 1;
        cut_connections(&mut next, n);
        let active = next.clients.iter().enumerate();
        let old = active
            .filter(|(_, c)| matches!(c.phase, Phase::Acquiring | Phase::Holding))
            .fold(0, |old, (c, _)| old | 1 << c);
        let node = &mut next.nodes[usize::from(n)];
        (node.key, node.fence, node.quarantined, node.old) = (None, 0, true, old);
        out.push(next);
    }
    let old_holding = (0..config.clients)
        .any(|c| node.old & (1 << c) != 0 && s.clients[usize::from(c)].phase == Phase::Holding);
    if node.quarantined && !old_holding {
        let mut next = s.clone();
        let old = next.nodes[usize::from(n)].old;
        for (c, client) in next.clients.iter_mut().enumerate() {
            if old & (1 << c) != 0 && client.phase == Phase::Acquiring {
                client.late = true;
            }
        }
        let node = &mut next.nodes[usize::from(n)];
        (node.quarantined, node.old) = (false, 0);
        out.push(next);
    }
    out
}

/// A restart drops every request in flight to the node; each such call fails.
fn cut_connections(s: &mut State, n: u8) {
    let (cut, kept): (Vec<Msg>, Vec<Msg>) = s.net.iter().partition(|m| m.n == n);
    s.net = kept;
    for Msg { c, a, .. } in cut {
        answer(s, c, a, n, false, 0);
    }
}

fn send(s: &mut State, msg: Msg) {
    let at = s.net.partition_point(|m| *m < msg);
    s.net.insert(at, msg);
}

fn take(s: &mut State, msg: Msg) {
    if let Ok(at) = s.net.binary_search(&msg) {
        s.net.remove(at);
    }
}

/// How many attempts each client makes: two in a release build (`--release`, the command
/// above: about a minute and 1.5 GB), one in a debug build, where `cargo test
/// --workspace` runs this check too and the full one would take a quarter of an hour.
const ATTEMPTS: u8 = if cfg!(debug_assertions) { 1 } else { 2 };

/// Three nodes, two clients with two attempts each, one restart with data and one
/// without, quarantine on, tokens counted at the fence quorum that tolerates one node
/// losing its fences.
fn restarts() -> Config {
    Config {
        nodes: 3,
        clients: 2,
        attempts: ATTEMPTS,
        quorum: fence::quorum(3, 1).unwrap_or(usize::MAX),
        restarts_with_data: 1,
        restarts_empty: 1,
        quarantine: true,
        check_fence: true,
        fenced: true,
    }
}

/// Three nodes, three clients, restarts with data only, the majority quorum.
fn three_clients() -> Config {
    Config {
        clients: 3,
        attempts: 1,
        quorum: fence::quorum(3, 0).unwrap_or(usize::MAX),
        restarts_empty: 0,
        ..restarts()
    }
}

/// The unfenced lock with the majority quorum: a node restarting empty is quarantined.
fn quarantined_lock() -> Config {
    Config {
        quorum: 2,
        restarts_with_data: 0,
        fenced: false,
        ..restarts()
    }
}

fn report(name: &str, outcome: &Outcome) {
    println!(
        "fence_model config={name} states={} violations={} overlaps={} token_regressions={}",
        outcome.states,
        outcome.violations(),
        outcome.overlaps,
        outcome.token_regressions
    );
}

#[test]
fn the_protocol_keeps_tokens_in_order_and_holders_apart() {
    let mut states = 0;
    let mut violations = 0;
    for (name, config) in [
        ("restarts", restarts()),
        ("three_clients", three_clients()),
        ("quarantined_lock", quarantined_lock()),
    ] {
        let outcome = explore(config);
        report(name, &outcome);
        assert!(outcome.states > 1000, "{name}: too few states to mean much");
        states += outcome.states;
        violations += outcome.violations();
    }
    println!("fence_model states={states} violations={violations}");
    assert_eq!(violations, 0);
}

#[test]
fn nodes_that_grant_without_reading_the_fence_are_caught() {
    let broken = Config {
        check_fence: false,
        restarts_empty: 0,
        ..restarts()
    };
    let outcome = explore(broken);
    report("broken_no_fence_check", &outcome);
    assert!(outcome.token_regressions > 0);
}

#[test]
fn a_majority_fence_quorum_with_a_node_restarting_empty_is_caught() {
    let broken = Config {
        quorum: fence::quorum(3, 0).unwrap_or(usize::MAX),
        ..restarts()
    };
    let outcome = explore(broken);
    report("broken_majority_fence_quorum", &outcome);
    assert!(outcome.token_regressions > 0);
}

#[test]
fn a_lock_without_quarantine_is_caught() {
    let broken = Config {
        quarantine: false,
        ..quarantined_lock()
    };
    let outcome = explore(broken);
    report("broken_no_quarantine", &outcome);
    assert!(outcome.overlaps > 0);
}
