//! The scheduler: picks a minion for each new pod. Pure and deterministic.
//!
//! Predicates (a minion must pass all): it is Ready; the pod's nodeSelector matches its labels;
//! the pod's host ports are free there; the cpu and memory the pod requests fit what is left of
//! its capacity (a capacity not known is not limited). Priorities, in order: fewest pods of the
//! same group (the RC, or the pod itself) — spreading replicas — then least requested (the
//! smaller share of capacity in use after placing the pod), then fewest pods on the minion (so
//! pods that request nothing still spread over every minion, where early Kubernetes picked at
//! random among equals), then the minion's name.
//!
//! Minions are kept ordered by load (`ByLoad`), so a pod is usually placed after looking at a
//! handful of minions rather than all of them (the O(nodes)-per-pod scan that limited early
//! kube-scheduler to ~1-15 pods/s).

use crate::model::{Capacity, Labels, Protocol};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// What the scheduler knows of a minion. Its serde form is the minion's record in the store's
/// observed section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MinionView {
    pub name: String,
    pub ready: bool,
    pub labels: Labels,
    pub capacity: Capacity,
    /// What others use there (other projects' pods, containers drover did not make).
    #[serde(default, skip_serializing_if = "Taken::is_empty")]
    pub taken: Taken,
    /// Cordoned (`drover minions cordon`, or `unschedulable` in git): no new pod goes there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
    /// Being drained: its replicated pods move to other minions, start-first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
}

/// How a minion is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Drain {
    /// Replicated pods move; a pod no controller replaces stays (the drain command refuses).
    Replicated,
    /// Also pods no controller replaces: deleted, then made again elsewhere as the source
    /// says (`--force`).
    Force,
}

/// What a minion gives to others than this project: never changed by it, but counted against
/// the minion's capacity and host ports so two projects never collide on a port or overcommit
/// a minion. Containers drover did not make count only with their published ports (Docker's
/// list call does not tell their limits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taken {
    pub cpu: u64,
    pub memory: u64,
    pub host_ports: Vec<(u16, Protocol)>,
}

impl Taken {
    pub fn is_empty(&self) -> bool {
        *self == Taken::default()
    }
}

/// What a pod asks of a minion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodRequest {
    pub cpu: u64,
    pub memory: u64,
    pub host_ports: Vec<(u16, Protocol)>,
    pub node_selector: Labels,
    /// Pods of one group are spread across minions.
    pub group: String,
}

/// A group's number in one `Scheduler` (`Scheduler::group_ids`): a minion's counts are kept by
/// number, so placing a pod hashes its group's name once, not once per minion looked at.
type GroupId = u32;

/// A hash map keyed by what the scheduler itself makes or is given (minion names, group names
/// and numbers): hashed a word at a time with one multiplication (FxHash's scheme), as SipHash's
/// resistance to chosen keys buys nothing here and costs most of a lookup. Never iterated, so
/// its order cannot reach a result.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Clone, Copy, Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(last));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A tournament tree over the minions' numbers (their places in name order): each node holds
/// the least key of its subtree, a key being anything that orders minions with the number in
/// its low 32 bits. A key changes in at most log2(n) steps of one comparison; `walk` visits
/// minions least key first, and costs nothing past the first when the first is taken.
#[derive(Debug, Clone)]
struct Tournament {
    /// Node `k`'s least key; the leaves start at `leaves`, one per minion (`OUT` for one left
    /// out, and for the padding up to a power of two). Node 0 is unused.
    tree: Vec<u128>,
    leaves: usize,
}

/// A leaf of a `Tournament` that is left out. Greater than every minion's key (a number is
/// below `u32::MAX`), so never the least of a subtree that has a minion.
const OUT: u128 = u128::MAX;

fn number(key: u128) -> usize {
    (key as u32) as usize
}

impl Tournament {
    fn new(keys: impl ExactSizeIterator<Item = u128>) -> Tournament {
        let leaves = keys.len().next_power_of_two();
        let mut tree = vec![OUT; 2 * leaves];
        for (i, key) in keys.enumerate() {
            tree[leaves + i] = key;
        }
        for k in (1..leaves).rev() {
            tree[k] = tree[2 * k].min(tree[2 * k + 1]);
        }
        Tournament { tree, leaves }
    }

    fn set(&mut self, i: usize, key: u128) {
        let mut k = self.leaves + i;
        self.tree[k] = key;
        while k > 1 {
            k /= 2;
            let least = self.tree[2 * k].min(self.tree[2 * k + 1]);
            if self.tree[k] == least {
                // Unchanged here, so above too.
                break;
            }
            self.tree[k] = least;
        }
    }

    /// The least key (`OUT` if every minion is left out).
    fn least(&self) -> u128 {
        self.tree[1]
    }

    /// The minions not left out, least key first.
    fn walk(&self) -> Walk<'_> {
        let mut heap = BinaryHeap::new();
        if self.least() != OUT {
            heap.push(Reverse((self.least(), 1)));
        }
        Walk {
            tournament: self,
            heap,
            last: None,
        }
    }
}

/// `Tournament::walk`: best first over the tree. Each node in the heap stands for the minions
/// of its subtree, keyed by its least; taking one splits the rest of its subtree into the
/// subtrees beside that minion's path, done only when a next minion is asked for.
struct Walk<'a> {
    tournament: &'a Tournament,
    heap: BinaryHeap<Reverse<(u128, usize)>>,
    /// The node whose least was given last.
    last: Option<usize>,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let tree = &self.tournament.tree;
        if let Some(mut k) = self.last.take() {
            let given = tree[k];
            while k < self.tournament.leaves {
                let (on_path, beside) = if tree[2 * k] == given {
                    (2 * k, 2 * k + 1)
                } else {
                    (2 * k + 1, 2 * k)
                };
                if tree[beside] != OUT {
                    self.heap.push(Reverse((tree[beside], beside)));
                }
                k = on_path;
            }
        }
        let Reverse((least, k)) = self.heap.pop()?;
        self.last = Some(k);
        Some(number(least))
    }
}

/// A minion's number as a key's low 32 bits.
fn low(i: usize) -> u128 {
    let number = u32::try_from(i)
        .ok()
        .filter(|&n| n != u32::MAX)
        .expect("fewer than 2^32 - 1 minions");
    u128::from(number)
}

/// A minion's place in an order: (load, pods, number) as one integer that orders as the
/// triple does. Load is clamped to 32 bits (a load that fits is at most 1,000,000).
fn order_key(load: u64, pods: u32, i: usize) -> u128 {
    (u128::from(load.min(u64::from(u32::MAX))) << 64) | (u128::from(pods) << 32) | low(i)
}

/// The Ready minions, least loaded first: keys (load, pods, number). (A `BTreeSet` of (load, number)
/// spent most of a placement removing and inserting.)
#[derive(Debug, Clone)]
struct ByLoad {
    order: Tournament,
    len: usize,
}

impl ByLoad {
    /// `loads`: each minion's (load, pods), or `None` for one not Ready.
    fn new(loads: impl ExactSizeIterator<Item = Option<(u64, u32)>>) -> ByLoad {
        let mut len = 0;
        let order = Tournament::new(loads.enumerate().map(|(i, load)| match load {
            Some((load, pods)) => {
                len += 1;
                order_key(load, pods, i)
            }
            None => OUT,
        }));
        ByLoad { order, len }
    }

    /// Minion `i` now has this load and this many pods (it must be Ready).
    fn set(&mut self, i: usize, load: u64, pods: u32) {
        self.order.set(i, order_key(load, pods, i));
    }

    fn walk(&self) -> Walk<'_> {
        self.order.walk()
    }
}

/// The minions ranked as a placement that finds no minion without a pod of the group ranks
/// them for one request: fewest pods of the group, then least loaded after placing it, then
/// number; a minion that cannot take it is left out. Kept for the last few requests whose
/// placement had to look at every minion (an RC with more replicas than minions that fit),
/// so the next one (its next replica: the same request) takes the least at once.
#[derive(Debug, Clone)]
struct Ranked {
    request: PodRequest,
    group: GroupId,
    order: Tournament,
    /// When it last placed a pod (`Scheduler::placements`).
    used: u64,
}

/// How many requests keep a `Ranked`: each costs a key update whenever a pod is accounted.
const RANKED: usize = 4;

/// Minion `i`'s key in a `Ranked` for `pod` of `group`.
fn rank(m: &MinionState, i: usize, pod: &PodRequest, group: GroupId) -> u128 {
    if !m.view.ready || m.unfit(pod).is_some() {
        return OUT;
    }
    let spread = m.groups.get(&group).copied().unwrap_or(0);
    (u128::from(spread) << 96) | order_key(m.load(pod.cpu, pod.memory), m.pods, i)
}

#[derive(Debug, Clone)]
struct MinionState {
    view: MinionView,
    cpu: u64,
    memory: u64,
    ports: HashSet<(u16, Protocol)>,
    /// Host ports others hold (`MinionView::taken`).
    foreign_ports: HashSet<(u16, Protocol)>,
    /// Pods of each group here.
    groups: FastMap<GroupId, u32>,
    /// Pods here, of every group.
    pods: u32,
}

impl MinionState {
    /// Share of capacity in use, in millionths, averaged over cpu and memory (0 if unlimited).
    fn load(&self, extra_cpu: u64, extra_memory: u64) -> u64 {
        let share = |used: u64, cap: Option<u64>| match cap {
            // In 64 bits while it fits (any use below 18 TB): the same quotient, without the
            // 128-bit division this runs on every placement otherwise.
            Some(c) if c > 0 => match used.checked_mul(1_000_000) {
                Some(scaled) => scaled / c,
                None => ((used as u128 * 1_000_000) / c as u128) as u64,
            },
            _ => 0,
        };
        (share(self.cpu + extra_cpu, self.view.capacity.cpu)
            + share(self.memory + extra_memory, self.view.capacity.memory))
            / 2
    }

    /// Why this minion cannot take the pod, if it cannot.
    fn unfit(&self, pod: &PodRequest) -> Option<&'static str> {
        if self.view.unschedulable {
            return Some("minion cordoned (SchedulingDisabled)");
        }
        if !pod
            .node_selector
            .iter()
            .all(|(k, v)| self.view.labels.get(k) == Some(v))
        {
            return Some("node selector does not match");
        }
        if pod.host_ports.iter().any(|p| self.ports.contains(p)) {
            return Some("host port in use");
        }
        if pod
            .host_ports
            .iter()
            .any(|p| self.foreign_ports.contains(p))
        {
            return Some("host port taken by another project or container");
        }
        if self
            .view
            .capacity
            .cpu
            .is_some_and(|c| self.cpu + pod.cpu > c)
        {
            return Some("insufficient cpu");
        }
        if self
            .view
            .capacity
            .memory
            .is_some_and(|c| self.memory + pod.memory > c)
        {
            return Some("insufficient memory");
        }
        None
    }
}

/// Scheduling state across one planning pass: minions with what is already placed on them.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// In name order; a minion's number is its place here.
    minions: Vec<MinionState>,
    /// Each minion's number by name (what a binary search of `minions` finds).
    numbers: FastMap<String, usize>,
    /// Ready minions, least loaded first.
    by_load: ByLoad,
    not_ready: usize,
    /// Every group a pod was accounted for in, numbered.
    group_ids: FastMap<String, GroupId>,
    /// For each group, how many Ready minions have a pod of it: when all have, no minion
    /// can be one without, and a placement must look at every minion whatever their order.
    ready_with: Vec<u32>,
    /// The last requests whose placement looked at every minion, at most `RANKED`.
    ranked: Vec<Ranked>,
    /// Placements so far.
    placements: u64,
}

impl Scheduler {
    pub fn new(minions: &[MinionView]) -> Scheduler {
        let mut sorted: Vec<&MinionView> = minions.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let minions: Vec<MinionState> = sorted
            .into_iter()
            .map(|v| MinionState {
                view: v.clone(),
                cpu: v.taken.cpu,
                memory: v.taken.memory,
                ports: HashSet::new(),
                foreign_ports: v.taken.host_ports.iter().copied().collect(),
                groups: HashMap::default(),
                pods: 0,
            })
            .collect();
        let by_load = ByLoad::new(
            minions
                .iter()
                .map(|m| m.view.ready.then(|| (m.load(0, 0), m.pods))),
        );
        let not_ready = minions.iter().filter(|m| !m.view.ready).count();
        let mut s = Scheduler {
            minions,
            numbers: FastMap::default(),
            by_load,
            not_ready,
            group_ids: FastMap::default(),
            ready_with: Vec::new(),
            ranked: Vec::new(),
            placements: 0,
        };
        // Names are unique; if two were not, the one a binary search finds is the one used.
        for m in &s.minions {
            if !s.numbers.contains_key(&m.view.name) {
                let i = s
                    .minions
                    .binary_search_by(|x| x.view.name.cmp(&m.view.name))
                    .expect("present");
                s.numbers.insert(m.view.name.clone(), i);
            }
        }
        s
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.numbers.get(name).copied()
    }

    /// The group's number, given one if it has none yet.
    fn group_id(&mut self, group: &str) -> GroupId {
        if let Some(&g) = self.group_ids.get(group) {
            return g;
        }
        let g = GroupId::try_from(self.group_ids.len()).expect("fewer than 2^32 groups");
        self.group_ids.insert(group.to_string(), g);
        self.ready_with.push(0);
        g
    }

    /// Moves minion `i` to its places in `by_load` and `ranked` after its use changed.
    fn reorder(&mut self, i: usize) {
        let m = &self.minions[i];
        if m.view.ready {
            self.by_load.set(i, m.load(0, 0), m.pods);
        }
        for r in &mut self.ranked {
            r.order.set(i, rank(m, i, &r.request, r.group));
        }
    }

    /// Records a pod already running (or pending) on a minion.
    pub fn account(&mut self, minion: &str, pod: &PodRequest) {
        let Some(i) = self.index_of(minion) else {
            return;
        };
        let g = self.group_id(&pod.group);
        self.account_at(i, pod, g);
    }

    fn account_at(&mut self, i: usize, pod: &PodRequest, group: GroupId) {
        let m = &mut self.minions[i];
        m.cpu += pod.cpu;
        m.memory += pod.memory;
        m.pods += 1;
        m.ports.extend(pod.host_ports.iter().copied());
        let n = m.groups.entry(group).or_default();
        *n += 1;
        if *n == 1 && m.view.ready {
            self.ready_with[group as usize] += 1;
        }
        self.reorder(i);
    }

    /// Removes a pod from a minion's accounting (it is being deleted).
    pub fn release(&mut self, minion: &str, pod: &PodRequest) {
        let Some(i) = self.index_of(minion) else {
            return;
        };
        let group = self.group_ids.get(pod.group.as_str()).copied();
        let m = &mut self.minions[i];
        m.cpu = m.cpu.saturating_sub(pod.cpu);
        m.memory = m.memory.saturating_sub(pod.memory);
        m.pods = m.pods.saturating_sub(1);
        for p in &pod.host_ports {
            m.ports.remove(p);
        }
        if let Some(g) = group {
            if let Some(n) = m.groups.get_mut(&g) {
                if *n == 1 && m.view.ready {
                    self.ready_with[g as usize] -= 1;
                }
                *n = n.saturating_sub(1);
            }
        }
        self.reorder(i);
    }

    /// Keeps the minions ranked for `pod` (the oldest such ranking goes past `RANKED`).
    fn rank_for(&mut self, pod: &PodRequest, group: GroupId) {
        if self
            .ranked
            .iter()
            .any(|r| r.group == group && r.request == *pod)
        {
            return;
        }
        if self.ranked.len() == RANKED {
            let oldest = (0..RANKED)
                .min_by_key(|&k| self.ranked[k].used)
                .expect("RANKED > 0");
            self.ranked.swap_remove(oldest);
        }
        let order = Tournament::new(
            self.minions
                .iter()
                .enumerate()
                .map(|(i, m)| rank(m, i, pod, group)),
        );
        self.ranked.push(Ranked {
            request: pod.clone(),
            group,
            order,
            used: self.placements,
        });
    }

    /// Chooses a minion for the pod and accounts for it, or says why none fits.
    pub fn place(&mut self, pod: &PodRequest) -> Result<String, String> {
        // Walk minions least loaded first; the first feasible one with no pod of the group is
        // the best possible answer. Otherwise keep the best (fewest of the group, then load).
        // A group no pod was accounted for in has none anywhere.
        let group = self.group_ids.get(pod.group.as_str()).copied();
        self.placements += 1;
        if let Some(g) = group {
            let now = self.placements;
            if let Some(r) = self
                .ranked
                .iter_mut()
                .find(|r| r.group == g && r.request == *pod)
            {
                r.used = now;
                let least = r.order.least();
                // The best minion that can take it has a pod of the group: so has every one
                // that can, and the walk would look at them all to find this one.
                if least != OUT && least >> 96 > 0 {
                    let i = number(least);
                    self.account_at(i, pod, g);
                    return Ok(self.minions[i].view.name.clone());
                }
            }
        }
        // When every Ready minion has a pod of the group, the walk cannot stop early and its
        // order cannot change the best: look at them in name order, without the tree.
        let everywhere =
            group.is_some_and(|g| self.ready_with[g as usize] as usize == self.by_load.len);
        let in_name_order = (0..self.minions.len()).filter(|&i| self.minions[i].view.ready);
        let order: &mut dyn Iterator<Item = usize> = if everywhere {
            &mut { in_name_order }
        } else {
            &mut self.by_load.walk()
        };
        let mut best: Option<(u32, u64, u32, usize)> = None;
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut every_minion = true;
        for i in order {
            let m = &self.minions[i];
            if let Some(r) = m.unfit(pod) {
                *reasons.entry(r).or_default() += 1;
                continue;
            }
            let spread = group.map_or(0, |g| m.groups.get(&g).copied().unwrap_or(0));
            let load = m.load(pod.cpu, pod.memory).min(u64::from(u32::MAX));
            let candidate = (spread, load, m.pods, i);
            if best.is_none_or(|b| candidate < b) {
                best = Some(candidate);
            }
            if spread == 0 {
                every_minion = false;
                break;
            }
        }
        match best {
            Some((_, _, _, i)) => {
                let g = match group {
                    Some(g) => g,
                    None => self.group_id(&pod.group),
                };
                self.account_at(i, pod, g);
                if every_minion {
                    self.rank_for(pod, g);
                }
                Ok(self.minions[i].view.name.clone())
            }
            None => {
                if self.not_ready > 0 {
                    reasons.insert("not ready", self.not_ready);
                }
                let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                Err(format!(
                    "0/{} minions fit{}",
                    self.minions.len(),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", detail.join(", "))
                    }
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minion(name: &str, cpu: Option<u64>) -> MinionView {
        MinionView {
            unschedulable: false,
            drain: None,
            name: name.into(),
            ready: true,
            labels: Labels::new(),
            capacity: Capacity { cpu, memory: None },
            taken: Default::default(),
        }
    }

    fn pod(group: &str, cpu: u64) -> PodRequest {
        PodRequest {
            cpu,
            group: group.into(),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_spread_then_fill_least_loaded() {
        let mut s = Scheduler::new(&[
            minion("a", Some(1000)),
            minion("b", Some(1000)),
            minion("c", Some(1000)),
        ]);
        let placed: Vec<String> = (0..6).map(|_| s.place(&pod("web", 100)).unwrap()).collect();
        let count = |n: &str| placed.iter().filter(|p| *p == n).count();
        assert_eq!((count("a"), count("b"), count("c")), (2, 2, 2));
    }

    #[test]
    fn capacity_host_ports_selectors_and_readiness_are_respected() {
        let mut views = vec![minion("a", Some(300)), minion("b", Some(1000))];
        views[1].labels.insert("disk".into(), "ssd".into());
        views.push(MinionView {
            unschedulable: false,
            drain: None,
            ready: false,
            ..minion("c", None)
        });
        let mut s = Scheduler::new(&views);
        assert_eq!(s.place(&pod("x", 900)).unwrap(), "b");
        let err = s.place(&pod("x", 400)).unwrap_err();
        assert_eq!(err, "0/3 minions fit: 2 insufficient cpu, 1 not ready");
        let mut p = pod("y", 10);
        p.node_selector.insert("disk".into(), "ssd".into());
        assert_eq!(s.place(&p).unwrap(), "b");
        let mut hp = pod("z", 0);
        hp.host_ports.push((80, Protocol::TCP));
        let first = s.place(&hp).unwrap();
        let second = s.place(&hp).unwrap();
        assert_ne!(first, second);
        assert!(s.place(&hp).unwrap_err().contains("2 host port in use"));
    }

    #[test]
    fn pods_that_request_nothing_spread_over_every_minion_across_groups() {
        // Three RCs of two replicas on six minions of unknown capacity: each RC alone would
        // spread, and together they fill every minion rather than the first two each time.
        let views: Vec<MinionView> = (1..=6).map(|i| minion(&format!("m{i}"), None)).collect();
        let mut s = Scheduler::new(&views);
        let mut placed = std::collections::BTreeMap::<String, u32>::new();
        for group in ["a", "b", "c"] {
            for _ in 0..2 {
                *placed.entry(s.place(&pod(group, 0)).unwrap()).or_default() += 1;
            }
        }
        assert_eq!(placed.len(), 6, "{placed:?}");
        assert!(placed.values().all(|&n| n == 1), "{placed:?}");
    }

    #[test]
    fn placement_is_deterministic() {
        let views: Vec<MinionView> = (0..20)
            .map(|i| minion(&format!("m{i:02}"), Some(4000)))
            .collect();
        let run = || {
            let mut s = Scheduler::new(&views);
            (0..100)
                .map(|i| s.place(&pod(&format!("g{}", i % 7), 50)).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn by_load_walks_ready_minions_least_loaded_first() {
        let mut loads = [5u64, 3, 9, 3, 0, 7, 3];
        let ready = [true, true, false, true, true, true, false];
        let mut b = ByLoad::new(loads.iter().zip(ready).map(|(l, r)| r.then_some((*l, 0))));
        let sorted = |loads: &[u64]| {
            let mut v: Vec<usize> = (0..loads.len()).filter(|&i| ready[i]).collect();
            v.sort_by_key(|&i| (loads[i], i));
            v
        };
        assert_eq!(b.walk().collect::<Vec<_>>(), vec![4, 1, 3, 0, 5]);
        for (i, load) in [(4, 8), (1, 8), (3, 1), (0, 0), (5, 2)] {
            loads[i] = load;
            b.set(i, load, 0);
            assert_eq!(b.walk().collect::<Vec<_>>(), sorted(&loads));
        }
        assert_eq!(ByLoad::new(std::iter::empty()).walk().count(), 0);
        assert_eq!(
            ByLoad::new([Some((1, 0))].into_iter())
                .walk()
                .collect::<Vec<_>>(),
            vec![0]
        );
    }

    /// The scheduler's rules written plainly: a `BTreeSet` of (load, pods, number) walked for
    /// each pod, and counts kept by group name.
    struct Reference {
        minions: Vec<MinionState>,
        groups: Vec<HashMap<String, u32>>,
        by_load: std::collections::BTreeSet<(u64, u32, usize)>,
    }

    impl Reference {
        fn new(views: &[MinionView]) -> Reference {
            let s = Scheduler::new(views);
            let by_load = (0..s.minions.len())
                .filter(|&i| s.minions[i].view.ready)
                .map(|i| (s.minions[i].load(0, 0), 0, i))
                .collect();
            Reference {
                groups: vec![HashMap::new(); s.minions.len()],
                minions: s.minions,
                by_load,
            }
        }

        fn change(&mut self, i: usize, pod: &PodRequest, add: bool) {
            let old = (self.minions[i].load(0, 0), self.minions[i].pods, i);
            let m = &mut self.minions[i];
            let n = self.groups[i].entry(pod.group.clone()).or_default();
            if add {
                m.cpu += pod.cpu;
                m.memory += pod.memory;
                m.ports.extend(pod.host_ports.iter().copied());
                m.pods += 1;
                *n += 1;
            } else {
                m.cpu = m.cpu.saturating_sub(pod.cpu);
                m.memory = m.memory.saturating_sub(pod.memory);
                for p in &pod.host_ports {
                    m.ports.remove(p);
                }
                m.pods = m.pods.saturating_sub(1);
                *n = n.saturating_sub(1);
            }
            if m.view.ready {
                self.by_load.remove(&old);
                let m = &self.minions[i];
                self.by_load.insert((m.load(0, 0), m.pods, i));
            }
        }

        fn place(&mut self, pod: &PodRequest) -> Option<usize> {
            let mut best: Option<(u32, u64, u32, usize)> = None;
            for &(_, _, i) in &self.by_load {
                let m = &self.minions[i];
                if m.unfit(pod).is_some() {
                    continue;
                }
                let spread = self.groups[i].get(&pod.group).copied().unwrap_or(0);
                let candidate = (spread, m.load(pod.cpu, pod.memory), m.pods, i);
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
                if spread == 0 {
                    break;
                }
            }
            let (_, _, _, i) = best?;
            self.change(i, pod, true);
            Some(i)
        }
    }

    fn arb_view() -> impl proptest::strategy::Strategy<Value = MinionView> {
        use proptest::prelude::*;
        (
            prop::option::of(100u64..3000),
            prop::option::of(1u64..8),
            0u8..8,
            0u8..2,
        )
            .prop_map(|(cpu, gib, flags, zone)| MinionView {
                unschedulable: flags == 0,
                drain: None,
                name: String::new(),
                ready: flags != 1,
                labels: [("zone".to_string(), format!("z{zone}"))].into(),
                capacity: Capacity {
                    cpu,
                    memory: gib.map(|g| g << 30),
                },
                taken: if flags == 2 {
                    Taken {
                        cpu: 50,
                        memory: 1 << 28,
                        host_ports: vec![(80, Protocol::TCP)],
                    }
                } else {
                    Taken::default()
                },
            })
    }

    fn arb_pod() -> impl proptest::strategy::Strategy<Value = PodRequest> {
        use proptest::prelude::*;
        (0u8..4, 0u64..400, 0u64..3, 0u8..6, 0u8..6).prop_map(|(g, cpu, quarters, port, sel)| {
            PodRequest {
                cpu,
                memory: quarters << 28,
                host_ports: if port == 0 {
                    vec![(80, Protocol::TCP)]
                } else {
                    vec![]
                },
                node_selector: if sel < 2 {
                    [("zone".to_string(), format!("z{sel}"))].into()
                } else {
                    Labels::new()
                },
                group: format!("g{g}"),
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Placements, pods accounted and pods released in any order: the same minions as the
        /// scheduler as first written, on clusters of any shape (groups on every minion, loads
        /// that order minions otherwise than the pod's share would, cordons, selectors), with
        /// requests repeated as an RC's replicas repeat them (and more of them than `RANKED`).
        #[test]
        fn places_as_the_first_scheduler_did(
            mut views in proptest::collection::vec(arb_view(), 1..40),
            requests in proptest::collection::vec(arb_pod(), 1..7),
            ops in proptest::collection::vec((0usize..7, 0u8..8, 0usize..40), 1..400),
        ) {
            for (i, v) in views.iter_mut().enumerate() {
                v.name = format!("m{:02}", (i * 7) % 41);
            }
            let mut s = Scheduler::new(&views);
            let mut r = Reference::new(&views);
            let mut placed = Vec::new();
            for (which, op, at) in &ops {
                let pod = &requests[which % requests.len()];
                match op {
                    0 => {
                        let name = r.minions[at % r.minions.len()].view.name.clone();
                        s.account(&name, pod);
                        r.change(at % r.minions.len(), pod, true);
                    }
                    1 if !placed.is_empty() => {
                        let (i, pod): (usize, PodRequest) = placed.swap_remove(at % placed.len());
                        let name = r.minions[i].view.name.clone();
                        s.release(&name, &pod);
                        r.change(i, &pod, false);
                    }
                    _ => {
                        let got = s.place(pod).ok();
                        proptest::prop_assert!(s.ranked.len() <= RANKED);
                        let want = r.place(pod);
                        proptest::prop_assert_eq!(
                            got.as_deref(),
                            want.map(|i| r.minions[i].view.name.as_str())
                        );
                        if let Some(i) = want {
                            placed.push((i, pod.clone()));
                        }
                    }
                }
            }
        }
    }
}
