//! Benchmark: the scheduler placing 100,000 pods (1,000 RCs x 100 replicas) onto 5,000
//! simulated minions, through the full `plan()` and through `Scheduler::place` alone, against a
//! naive scheduler measured in the same run that scores every minion for every pod (the
//! O(nodes)-per-pod shape of early kube-scheduler), with the same predicates and priorities.
//!
//! Run: `cargo bench --bench scheduler` (target: 100,000 pods in under 1 s).

use drover::model::*;
use drover::plan::pods::plan;
use drover::plan::scheduler::{MinionView, PodRequest, Scheduler};
use std::time::Instant;

const MINIONS: usize = 5_000;
const RCS: usize = 1_000;
const REPLICAS: u32 = 100;
const NAIVE_PODS: usize = 2_000;

fn minions() -> Vec<MinionView> {
    (0..MINIONS)
        .map(|i| MinionView {
            unschedulable: false,
            drain: None,
            name: format!("m{i:05}"),
            ready: true,
            labels: [("zone".to_string(), format!("z{}", i % 3))].into(),
            capacity: Capacity {
                cpu: Some(64_000),
                memory: Some(256 << 30),
            },
            taken: Default::default(),
        })
        .collect()
}

fn desired() -> DesiredState {
    let origin = Origin {
        file: "bench".into(),
        commit: None,
    };
    let mut d = DesiredState::default();
    for r in 0..RCS {
        let labels: Labels = [("app".to_string(), format!("app{r}"))].into();
        let o = Object::ReplicationController(ReplicationController {
            id: format!("rc{r}"),
            api_version: API_VERSION.into(),
            labels: labels.clone(),
            desired_state: ReplicationControllerState {
                replicas: REPLICAS,
                replica_selector: labels.clone(),
                pod_template: PodTemplate {
                    desired_state: PodState {
                        manifest: ContainerManifest {
                            volumes: vec![],
                            containers: vec![Container {
                                name: "app".into(),
                                image: "drover/busybox:latest".into(),
                                cpu: 100,
                                memory: 128 << 20,
                                ..Default::default()
                            }],
                            restart_policy: RestartPolicy::Always {},
                            ..Default::default()
                        },
                    },
                    labels,
                    node_selector: Labels::new(),
                },
            },
        });
        d.objects.insert(o.key(), (o, origin.clone()));
    }
    d
}

/// The baseline: every minion checked and scored for every pod.
fn naive_place(
    state: &mut [(u64, u64, std::collections::HashMap<String, u32>)],
    views: &[MinionView],
    pod: &PodRequest,
) -> usize {
    let mut best: Option<(u32, u64, usize)> = None;
    for (i, (cpu, mem, groups)) in state.iter().enumerate() {
        let cap = views[i].capacity;
        if cap.cpu.is_some_and(|c| cpu + pod.cpu > c)
            || cap.memory.is_some_and(|c| mem + pod.memory > c)
        {
            continue;
        }
        let load = ((cpu + pod.cpu) * 1_000_000 / cap.cpu.unwrap()
            + (mem + pod.memory) * 1_000_000 / cap.memory.unwrap())
            / 2;
        let candidate = (groups.get(&pod.group).copied().unwrap_or(0), load, i);
        if best.is_none_or(|b| candidate < b) {
            best = Some(candidate);
        }
    }
    let i = best.expect("room for every pod").2;
    state[i].0 += pod.cpu;
    state[i].1 += pod.memory;
    *state[i].2.entry(pod.group.clone()).or_default() += 1;
    i
}

fn main() {
    let views = minions();
    let d = desired();
    let total = RCS * REPLICAS as usize;

    let t = Instant::now();
    let p = plan(&d, &[], &views);
    let plan_time = t.elapsed();
    assert_eq!(p.actions.len(), total);
    assert!(p.unschedulable.is_empty());

    let requests: Vec<PodRequest> = (0..total)
        .map(|i| PodRequest {
            cpu: 100,
            memory: 128 << 20,
            group: format!("rc{}", i / REPLICAS as usize),
            ..Default::default()
        })
        .collect();
    let t = Instant::now();
    let mut s = Scheduler::new(&views);
    for r in &requests {
        s.place(r).unwrap();
    }
    let place_time = t.elapsed();

    let mut state: Vec<_> = views
        .iter()
        .map(|_| (0u64, 0u64, std::collections::HashMap::new()))
        .collect();
    let t = Instant::now();
    for r in requests.iter().take(NAIVE_PODS) {
        naive_place(&mut state, &views, r);
    }
    let naive_rate = NAIVE_PODS as f64 / t.elapsed().as_secs_f64();

    let rate = |d: std::time::Duration| total as f64 / d.as_secs_f64();
    println!("scheduler: {total} pods ({RCS} RCs x {REPLICAS}) onto {MINIONS} minions");
    println!(
        "  naive scan-every-minion (baseline) {:>12.0} pods/s   ({NAIVE_PODS} pods)",
        naive_rate
    );
    println!(
        "  Scheduler::place                   {:>12.0} pods/s   ({:.3} s)",
        rate(place_time),
        place_time.as_secs_f64()
    );
    println!(
        "  full plan()                        {:>12.0} pods/s   ({:.3} s)   (target: < 1 s)",
        rate(plan_time),
        plan_time.as_secs_f64()
    );
    println!(
        "  speed-up of plan() over baseline   {:>12.1}x",
        rate(plan_time) / naive_rate
    );
    println!(
        "  vs kube-scheduler's published ~100 pods/s at 5,000 nodes: {:.0}x",
        rate(plan_time) / 100.0
    );
}
