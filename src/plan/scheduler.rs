//! The scheduler: picks a minion for each new pod. Pure and deterministic.
//!
//! Predicates (a minion must pass all): it is Ready; the pod's nodeSelector matches its labels;
//! the pod's host ports are free there; the cpu and memory the pod requests fit what is left of
//! its capacity (a capacity not known is not limited). Priorities, in order: fewest pods of the
//! same group (the RC, or the pod itself) — spreading replicas — then least requested (the
//! smaller share of capacity in use after placing the pod), then the minion's name.
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

/// The Ready minions, least loaded first: a tournament tree over the minions' numbers (their
/// places in name order), each node holding the least (load, number) of its subtree. A minion's
/// load changes in at most log2(n) steps of one comparison (a `BTreeSet` of (load, number)
/// spent most of a placement removing and inserting); `walk` visits minions in order, and
/// costs nothing past the first when the first is taken, as it usually is.
#[derive(Debug, Clone)]
struct ByLoad {
    /// Node `k`'s least `key`; the leaves start at `leaves`, one per minion (`OUT` for one not
    /// in the order, and for the padding up to a power of two). Node 0 is unused.
    tree: Vec<u128>,
    leaves: usize,
    len: usize,
}

/// (load, number) as one integer that orders as the pair does: one comparison a step.
fn key(load: u64, number: u32) -> u128 {
    (u128::from(load) << 32) | u128::from(number)
}

fn number(key: u128) -> usize {
    (key as u32) as usize
}

/// A leaf of `ByLoad` that is in no order: not Ready, or padding. Greater than every minion's
/// key (a number is below `u32::MAX`), so never the least of a subtree that has a minion.
const OUT: u128 = (1 << 96) - 1;

impl ByLoad {
    /// `loads`: each minion's load, or `None` for one not in the order.
    fn new(loads: impl ExactSizeIterator<Item = Option<u64>>) -> ByLoad {
        let leaves = loads.len().next_power_of_two();
        let mut tree = vec![OUT; 2 * leaves];
        let mut len = 0;
        for (i, load) in loads.enumerate() {
            if let Some(load) = load {
                let number = u32::try_from(i)
                    .ok()
                    .filter(|&n| n != u32::MAX)
                    .expect("fewer than 2^32 - 1 minions");
                tree[leaves + i] = key(load, number);
                len += 1;
            }
        }
        for k in (1..leaves).rev() {
            tree[k] = tree[2 * k].min(tree[2 * k + 1]);
        }
        ByLoad { tree, leaves, len }
    }

    /// Minion `i`'s load is now `load` (it must be in the order).
    fn set(&mut self, i: usize, load: u64) {
        let mut k = self.leaves + i;
        self.tree[k] = key(load, number(self.tree[k]) as u32);
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

    /// The minions in the order, least (load, number) first.
    fn walk(&self) -> Walk<'_> {
        let mut heap = BinaryHeap::new();
        if self.tree.len() > 1 && self.tree[1] != OUT {
            heap.push(Reverse((self.tree[1], 1)));
        }
        Walk {
            by_load: self,
            heap,
            last: None,
        }
    }
}

/// `ByLoad::walk`: best first over the tree. Each node in the heap stands for the minions of its
/// subtree, keyed by its least; taking one splits the rest of its subtree into the subtrees
/// beside that minion's path, done only when a next minion is asked for.
struct Walk<'a> {
    by_load: &'a ByLoad,
    heap: BinaryHeap<Reverse<(u128, usize)>>,
    /// The node whose least was given last.
    last: Option<usize>,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let tree = &self.by_load.tree;
        if let Some(mut k) = self.last.take() {
            let given = tree[k];
            while k < self.by_load.leaves {
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
            })
            .collect();
        let by_load = ByLoad::new(minions.iter().map(|m| m.view.ready.then(|| m.load(0, 0))));
        let not_ready = minions.iter().filter(|m| !m.view.ready).count();
        let mut s = Scheduler {
            minions,
            numbers: FastMap::default(),
            by_load,
            not_ready,
            group_ids: FastMap::default(),
            ready_with: Vec::new(),
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

    /// Moves minion `i` to its place in `by_load` after its use changed from `old_load`.
    fn reorder(&mut self, i: usize, old_load: u64) {
        let new_load = self.minions[i].load(0, 0);
        if self.minions[i].view.ready && new_load != old_load {
            self.by_load.set(i, new_load);
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
        let old_load = m.load(0, 0);
        m.cpu += pod.cpu;
        m.memory += pod.memory;
        m.ports.extend(pod.host_ports.iter().copied());
        let n = m.groups.entry(group).or_default();
        *n += 1;
        if *n == 1 && m.view.ready {
            self.ready_with[group as usize] += 1;
        }
        self.reorder(i, old_load);
    }

    /// Removes a pod from a minion's accounting (it is being deleted).
    pub fn release(&mut self, minion: &str, pod: &PodRequest) {
        let Some(i) = self.index_of(minion) else {
            return;
        };
        let group = self.group_ids.get(pod.group.as_str()).copied();
        let m = &mut self.minions[i];
        let old_load = m.load(0, 0);
        m.cpu = m.cpu.saturating_sub(pod.cpu);
        m.memory = m.memory.saturating_sub(pod.memory);
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
        self.reorder(i, old_load);
    }

    /// Chooses a minion for the pod and accounts for it, or says why none fits.
    pub fn place(&mut self, pod: &PodRequest) -> Result<String, String> {
        // Walk minions least loaded first; the first feasible one with no pod of the group is
        // the best possible answer. Otherwise keep the best (fewest of the group, then load).
        // A group no pod was accounted for in has none anywhere.
        let group = self.group_ids.get(pod.group.as_str()).copied();
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
        let mut best: Option<(u32, u64, usize)> = None;
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        for i in order {
            let m = &self.minions[i];
            if let Some(r) = m.unfit(pod) {
                *reasons.entry(r).or_default() += 1;
                continue;
            }
            let spread = group.map_or(0, |g| m.groups.get(&g).copied().unwrap_or(0));
            let candidate = (spread, m.load(pod.cpu, pod.memory), i);
            if best.is_none_or(|b| candidate < b) {
                best = Some(candidate);
            }
            if spread == 0 {
                break;
            }
        }
        match best {
            Some((_, _, i)) => {
                let g = match group {
                    Some(g) => g,
                    None => self.group_id(&pod.group),
                };
                self.account_at(i, pod, g);
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
        let mut b = ByLoad::new(loads.iter().zip(ready).map(|(l, r)| r.then_some(*l)));
        let sorted = |loads: &[u64]| {
            let mut v: Vec<usize> = (0..loads.len()).filter(|&i| ready[i]).collect();
            v.sort_by_key(|&i| (loads[i], i));
            v
        };
        assert_eq!(b.walk().collect::<Vec<_>>(), vec![4, 1, 3, 0, 5]);
        for (i, load) in [(4, 8), (1, 8), (3, 1), (0, 0), (5, 2)] {
            loads[i] = load;
            b.set(i, load);
            assert_eq!(b.walk().collect::<Vec<_>>(), sorted(&loads));
        }
        assert_eq!(ByLoad::new(std::iter::empty()).walk().count(), 0);
        assert_eq!(
            ByLoad::new([Some(1)].into_iter())
                .walk()
                .collect::<Vec<_>>(),
            vec![0]
        );
    }

    /// The scheduler as first written: a `BTreeSet` of (load, number) walked for each pod, and
    /// counts kept by group name.
    struct Reference {
        minions: Vec<MinionState>,
        groups: Vec<HashMap<String, u32>>,
        by_load: std::collections::BTreeSet<(u64, usize)>,
    }

    impl Reference {
        fn new(views: &[MinionView]) -> Reference {
            let s = Scheduler::new(views);
            let by_load = (0..s.minions.len())
                .filter(|&i| s.minions[i].view.ready)
                .map(|i| (s.minions[i].load(0, 0), i))
                .collect();
            Reference {
                groups: vec![HashMap::new(); s.minions.len()],
                minions: s.minions,
                by_load,
            }
        }

        fn change(&mut self, i: usize, pod: &PodRequest, add: bool) {
            let old = (self.minions[i].load(0, 0), i);
            let m = &mut self.minions[i];
            let n = self.groups[i].entry(pod.group.clone()).or_default();
            if add {
                m.cpu += pod.cpu;
                m.memory += pod.memory;
                m.ports.extend(pod.host_ports.iter().copied());
                *n += 1;
            } else {
                m.cpu = m.cpu.saturating_sub(pod.cpu);
                m.memory = m.memory.saturating_sub(pod.memory);
                for p in &pod.host_ports {
                    m.ports.remove(p);
                }
                *n = n.saturating_sub(1);
            }
            if m.view.ready {
                self.by_load.remove(&old);
                self.by_load.insert((self.minions[i].load(0, 0), i));
            }
        }

        fn place(&mut self, pod: &PodRequest) -> Option<usize> {
            let mut best: Option<(u32, u64, usize)> = None;
            for &(_, i) in &self.by_load {
                let m = &self.minions[i];
                if m.unfit(pod).is_some() {
                    continue;
                }
                let spread = self.groups[i].get(&pod.group).copied().unwrap_or(0);
                let candidate = (spread, m.load(pod.cpu, pod.memory), i);
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
                if spread == 0 {
                    break;
                }
            }
            let (_, _, i) = best?;
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
        /// that order minions otherwise than the pod's share would, cordons, selectors).
        #[test]
        fn places_as_the_first_scheduler_did(
            mut views in proptest::collection::vec(arb_view(), 1..40),
            ops in proptest::collection::vec((arb_pod(), 0u8..8, 0usize..40), 1..300),
        ) {
            for (i, v) in views.iter_mut().enumerate() {
                v.name = format!("m{:02}", (i * 7) % 41);
            }
            let mut s = Scheduler::new(&views);
            let mut r = Reference::new(&views);
            let mut placed = Vec::new();
            for (pod, op, at) in &ops {
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
