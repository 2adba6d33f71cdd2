//! The scheduler: picks a minion for each new pod. Pure and deterministic.
//!
//! Predicates (a minion must pass all): it is Ready; the pod's nodeSelector matches its labels;
//! the pod's host ports are free there; the cpu and memory the pod requests fit what is left of
//! its capacity (a capacity not known is not limited). Priorities, in order: fewest pods of the
//! same group (the RC, or the pod itself) — spreading replicas — then least requested (the
//! smaller share of capacity in use after placing the pod), then the minion's name.
//!
//! Minions are kept in an ordered set by load, so a pod is usually placed after looking at a
//! handful of minions rather than all of them (the O(nodes)-per-pod scan that limited early
//! kube-scheduler to ~1-15 pods/s).

use crate::model::{Capacity, Labels, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Hashes a `GroupId` by one multiplication (its counts are looked up for every minion a
/// placement looks at; SipHash's resistance to chosen keys buys nothing for numbers we hand out).
#[derive(Debug, Clone, Copy, Default)]
struct GroupIdHasher(u64);

impl Hasher for GroupIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
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
    groups: HashMap<GroupId, u32, BuildHasherDefault<GroupIdHasher>>,
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
    minions: Vec<MinionState>,
    /// (load, index) of Ready minions, least loaded first.
    by_load: BTreeSet<(u64, usize)>,
    not_ready: usize,
    /// Every group a pod was accounted for in, numbered.
    group_ids: HashMap<String, GroupId>,
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
        let by_load = minions
            .iter()
            .enumerate()
            .filter(|(_, m)| m.view.ready)
            .map(|(i, m)| (m.load(0, 0), i))
            .collect();
        let not_ready = minions.iter().filter(|m| !m.view.ready).count();
        Scheduler {
            minions,
            by_load,
            not_ready,
            group_ids: HashMap::new(),
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.minions
            .binary_search_by(|m| m.view.name.as_str().cmp(name))
            .ok()
    }

    /// The group's number, given one if it has none yet.
    fn group_id(&mut self, group: &str) -> GroupId {
        if let Some(&g) = self.group_ids.get(group) {
            return g;
        }
        let g = GroupId::try_from(self.group_ids.len()).expect("fewer than 2^32 groups");
        self.group_ids.insert(group.to_string(), g);
        g
    }

    /// Moves minion `i` to its place in `by_load` after its use changed from `old_load`.
    fn reorder(&mut self, i: usize, old_load: u64) {
        let new_load = self.minions[i].load(0, 0);
        if self.minions[i].view.ready && new_load != old_load {
            self.by_load.remove(&(old_load, i));
            self.by_load.insert((new_load, i));
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
        *m.groups.entry(group).or_default() += 1;
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
        if let Some(n) = group.and_then(|g| m.groups.get_mut(&g)) {
            *n = n.saturating_sub(1);
        }
        self.reorder(i, old_load);
    }

    /// Chooses a minion for the pod and accounts for it, or says why none fits.
    pub fn place(&mut self, pod: &PodRequest) -> Result<String, String> {
        // Walk minions least loaded first; the first feasible one with no pod of the group is
        // the best possible answer. Otherwise keep the best (fewest of the group, then load).
        // A group no pod was accounted for in has none anywhere.
        let group = self.group_ids.get(pod.group.as_str()).copied();
        let mut best: Option<(u32, u64, usize)> = None;
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        for &(_, i) in &self.by_load {
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
}
