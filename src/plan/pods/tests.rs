use super::*;
use crate::model::*;
use proptest::prelude::*;

fn manifest(image: &str, cpu: u64, host_port: Option<u16>) -> ContainerManifest {
    ContainerManifest {
        volumes: vec![],
        containers: vec![Container {
            name: "c".into(),
            image: image.into(),
            cpu,
            ports: host_port
                .map(|hp| {
                    vec![Port {
                        container_port: 80,
                        host_port: Some(hp),
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        }],
        restart_policy: RestartPolicy::Always {},
        ..Default::default()
    }
}

fn rc(id: &str, replicas: u32, image: &str, cpu: u64) -> Object {
    let labels: Labels = [("app".to_string(), id.to_string())].into();
    Object::ReplicationController(ReplicationController {
        id: id.into(),
        api_version: API_VERSION.into(),
        labels: labels.clone(),
        desired_state: ReplicationControllerState {
            replicas,
            replica_selector: labels.clone(),
            pod_template: PodTemplate {
                desired_state: PodState {
                    manifest: manifest(image, cpu, None),
                },
                labels,
                node_selector: Labels::new(),
            },
        },
    })
}

fn pod(id: &str, image: &str, cpu: u64, host_port: Option<u16>) -> Object {
    Object::Pod(Pod {
        id: id.into(),
        api_version: API_VERSION.into(),
        labels: Labels::new(),
        desired_state: PodState {
            manifest: manifest(image, cpu, host_port),
        },
        node_selector: Labels::new(),
    })
}

fn desired(objects: Vec<Object>) -> DesiredState {
    DesiredState::of(objects, "t.json")
}

fn minions(n: usize, cpu: Option<u64>) -> Vec<MinionView> {
    (0..n)
        .map(|i| MinionView {
            unschedulable: false,
            drain: None,
            name: format!("m{i}"),
            ready: true,
            labels: Labels::new(),
            capacity: Capacity { cpu, memory: None },
            taken: Default::default(),
        })
        .collect()
}

/// The model of the minions: applies a plan as a successful executor would. New pods start
/// Pending; `settle` makes them Running, as the next observation would.
#[derive(Default)]
struct World {
    pods: Vec<ObservedPod>,
    clock: u64,
}

impl World {
    fn apply(&mut self, plan: &Plan) {
        for a in &plan.actions {
            match a {
                Action::DeletePod { minion, id, .. } => {
                    self.pods.retain(|p| !(p.id == *id && p.minion == *minion))
                }
                Action::CreatePod { minion, pod } => {
                    assert!(
                        !self.pods.iter().any(|p| p.id == pod.id),
                        "duplicate pod {}",
                        pod.id
                    );
                    self.clock += 1;
                    self.pods.push(ObservedPod {
                        id: pod.id.clone(),
                        minion: minion.clone(),
                        owner: pod.owner.clone(),
                        template_hash: pod.template_hash.clone(),
                        labels: (*pod.labels).clone(),
                        containers: vec![],
                        phase: Phase::Pending,
                        created: self.clock,
                        request: pod.request(),
                        legacy: false,
                        ports: vec![],
                        ip: None,
                        unready: false,
                    });
                }
                Action::DeleteVolumes { .. } => {}
            }
        }
    }

    fn settle(&mut self) {
        for p in &mut self.pods {
            p.phase = Phase::Running;
        }
    }

    fn cpu_on(&self, minion: &str) -> u64 {
        self.pods
            .iter()
            .filter(|p| p.minion == minion)
            .map(|p| p.request.cpu)
            .sum()
    }

    /// Plans and applies until the plan is empty; checks capacity after every step.
    fn converge(&mut self, d: &DesiredState, m: &[MinionView]) -> Plan {
        for _ in 0..100 {
            let plan = plan(d, &self.pods, m);
            if plan.is_empty() {
                return plan;
            }
            self.apply(&plan);
            for v in m {
                if let Some(cap) = v.capacity.cpu {
                    assert!(
                        self.cpu_on(&v.name) <= cap,
                        "capacity of {} exceeded",
                        v.name
                    );
                }
            }
            self.settle();
        }
        panic!("no convergence in 100 steps");
    }
}

#[test]
fn applying_a_plan_then_planning_again_gives_an_empty_plan() {
    let d = desired(vec![
        rc("web", 3, "a", 100),
        rc("api", 2, "a", 100),
        pod("solo", "x", 50, Some(80)),
    ]);
    let m = minions(3, Some(2000));
    let mut w = World::default();
    let first = plan(&d, &w.pods, &m);
    assert_eq!(first.actions.len(), 6);
    w.apply(&first);
    w.settle();
    assert_eq!(plan(&d, &w.pods, &m), Plan::default());
}

#[test]
fn scaling_up_and_down_changes_only_the_difference() {
    let m = minions(3, None);
    let mut w = World::default();
    w.converge(&desired(vec![rc("web", 3, "a", 0)]), &m);
    let before: Vec<String> = w.pods.iter().map(|p| p.id.clone()).collect();
    w.converge(&desired(vec![rc("web", 5, "a", 0)]), &m);
    assert_eq!(w.pods.len(), 5);
    assert!(
        before.iter().all(|id| w.pods.iter().any(|p| &p.id == id)),
        "scale-up kept every pod"
    );
    w.converge(&desired(vec![rc("web", 1, "a", 0)]), &m);
    assert_eq!(w.pods.len(), 1);
    assert_eq!(
        w.pods[0].id, before[0],
        "the oldest replica survives a scale-down"
    );
}

#[test]
fn a_changed_template_rolls_out_one_pod_at_a_time_without_dropping_below_replicas() {
    let m = minions(3, None);
    let mut w = World::default();
    w.converge(&desired(vec![rc("web", 3, "v1", 0)]), &m);
    let d2 = desired(vec![rc("web", 3, "v2", 0)]);
    let new_hash = match &d2.objects.values().next().unwrap().0 {
        Object::ReplicationController(r) => {
            let t = &r.desired_state.pod_template;
            template_hash(&t.desired_state.manifest, &t.labels, &t.node_selector)
        }
        _ => unreachable!(),
    };
    let mut steps = 0;
    loop {
        let p = plan(&d2, &w.pods, &m);
        if p.is_empty() {
            break;
        }
        let creates = p
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod { .. }))
            .count();
        assert!(creates <= 1, "one new pod at a time: {p:?}");
        w.apply(&p);
        let running = w.pods.iter().filter(|p| p.phase == Phase::Running).count();
        assert!(running >= 3, "never below replicas while rolling out");
        assert!(w.pods.len() <= 4, "surge of at most one");
        // The new pod is not Running yet: planning now must not remove an old one.
        let waiting = plan(&d2, &w.pods, &m);
        assert!(
            waiting
                .actions
                .iter()
                .all(|a| !matches!(a, Action::DeletePod { .. })),
            "{waiting:?}"
        );
        w.settle();
        steps += 1;
        assert!(steps < 20);
    }
    assert_eq!(w.pods.len(), 3);
    assert!(w.pods.iter().all(|p| p.template_hash == new_hash));
    // The round that removes an old replica adds the next new one: replicas + 1 rounds.
    assert_eq!(steps, 4);
}

#[test]
fn pods_on_a_lost_minion_are_replaced_and_the_surplus_removed_when_it_returns() {
    let mut m = minions(3, None);
    let mut w = World::default();
    let d = desired(vec![rc("web", 3, "a", 0)]);
    w.converge(&d, &m);
    // m1 is lost: the node controller reports its pods Failed and the minion not Ready.
    m[1].ready = false;
    for p in w.pods.iter_mut().filter(|p| p.minion == "m1") {
        p.phase = Phase::Failed;
    }
    let p = plan(&d, &w.pods, &m);
    let creates: Vec<&str> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod { minion, .. } => Some(minion.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(creates.len(), 1);
    assert_ne!(creates[0], "m1");
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::DeletePod { minion, .. } if minion == "m1")),
        "m1 cannot be reached"
    );
    w.apply(&p);
    w.settle();
    // m1 returns with its old pod running again: one replica too many.
    m[1].ready = true;
    let p = plan(&d, &w.pods, &m);
    assert_eq!(
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::DeletePod { .. }))
            .count(),
        1,
        "{p:?}"
    );
    w.apply(&p);
    assert_eq!(w.pods.len(), 3);
    assert!(plan(&d, &w.pods, &m).is_empty());
}

#[test]
fn a_pod_left_half_made_by_a_killed_drover_is_replaced() {
    let m = minions(2, None);
    let mut w = World::default();
    let d = desired(vec![rc("web", 2, "a", 0)]);
    w.converge(&d, &m);
    // One replica's container was created, never started: its maker died.
    w.pods[0].containers = vec![ContainerStatus {
        name: "c".into(),
        image: "a".into(),
        state: ContainerState::Waiting,
    }];
    w.pods[0].phase = Phase::Pending;
    assert!(
        plan(&d, &w.pods, &m).is_empty(),
        "Pending alone is waited for"
    );
    let half_made = w.pods[0].id.clone();
    fail_half_made(&mut w.pods);
    assert_eq!(w.pods[0].phase, Phase::Failed);
    assert_eq!(w.pods[1].phase, Phase::Running);
    let p = plan(&d, &w.pods, &m);
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::DeletePod { id, .. } if *id == half_made))
            && p.actions
                .iter()
                .any(|a| matches!(a, Action::CreatePod { .. })),
        "{p:?}"
    );
    w.apply(&p);
    w.settle();
    assert_eq!(w.pods.len(), 2);
    assert!(plan(&d, &w.pods, &m).is_empty());
}

#[test]
fn without_pruning_pods_that_left_the_source_keep_running() {
    let m = minions(2, None);
    let mut w = World::default();
    w.converge(
        &desired(vec![rc("web", 2, "a", 0), pod("solo", "x", 0, None)]),
        &m,
    );
    let only_web = desired(vec![rc("web", 2, "a", 0)]);
    assert!(plan_with(&only_web, &w.pods, &m, Prune::Off).is_empty());
    assert_eq!(
        plan(&only_web, &w.pods, &m).actions.len(),
        1,
        "pruning deletes the solo pod"
    );
    assert_eq!(
        plan_with(&desired(vec![]), &w.pods, &m, Prune::Off),
        Plan::default()
    );
}

#[test]
fn pruning_touches_only_pods_of_objects_in_the_inventory() {
    let m = minions(2, None);
    let mut w = World::default();
    w.converge(
        &desired(vec![rc("web", 2, "a", 0), pod("solo", "x", 0, None)]),
        &m,
    );
    // The inventory holds the RC only: the solo pod was never applied by this project.
    let mut inventory = Inventory::default();
    inventory.extend([ObjectKey::new(Kind::ReplicationController, "web")]);
    let p = plan_with(&desired(vec![]), &w.pods, &m, Prune::Owned(&inventory));
    let deleted: BTreeSet<&str> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::DeletePod { id, .. } => id.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|id| id.starts_with("web-")));
    assert_eq!(p.unowned.len(), 1);
    assert_eq!(p.unowned[0].0, "solo");
    assert!(p.unowned[0].1.contains("never applied by this project"));
    // An empty inventory prunes nothing at all.
    let p = plan_with(
        &desired(vec![]),
        &w.pods,
        &m,
        Prune::Owned(&Inventory::default()),
    );
    assert!(p.is_empty());
    assert_eq!(p.unowned.len(), 3);
}

#[test]
fn other_projects_ports_and_capacity_are_taken() {
    let mut m = minions(2, Some(1000));
    m[0].taken = crate::plan::scheduler::Taken {
        cpu: 900,
        memory: 0,
        host_ports: vec![],
    };
    m[1].taken = crate::plan::scheduler::Taken {
        cpu: 0,
        memory: 0,
        host_ports: vec![(8080, Protocol::TCP)],
    };
    let d = desired(vec![pod("p", "x", 200, Some(8080))]);
    let p = plan(&d, &[], &m);
    assert!(p.actions.is_empty(), "{p:?}");
    let reason = &p.unschedulable[0].1;
    assert!(reason.contains("insufficient cpu"), "{reason}");
    assert!(reason.contains("another project"), "{reason}");
    // Without the port the pod fits on m1, next to the other project's.
    let d = desired(vec![pod("p", "x", 200, None)]);
    assert!(matches!(
        &plan(&d, &[], &m).actions[..],
        [Action::CreatePod { minion, .. }] if minion == "m1"
    ));
}

#[test]
fn volumes_without_their_pod_are_removed() {
    let m = minions(1, None);
    let mut w = World::default();
    w.converge(&desired(vec![pod("keep", "x", 0, None)]), &m);
    let volumes = vec![
        ("m0".to_string(), "keep".to_string(), "v-keep".to_string()),
        ("m0".to_string(), "gone".to_string(), "v2".to_string()),
        ("m0".to_string(), "gone".to_string(), "v1".to_string()),
    ];
    assert_eq!(
        leftover_volumes(&w.pods, &volumes),
        vec![Action::DeleteVolumes {
            minion: "m0".into(),
            pod: "gone".into(),
            volumes: vec!["v1".into(), "v2".into()],
        }]
    );
}

#[test]
fn a_pod_that_fits_nowhere_is_unschedulable_with_a_reason() {
    let d = desired(vec![pod("big", "x", 5000, None)]);
    let p = plan(&d, &[], &minions(2, Some(1000)));
    assert!(p.actions.is_empty());
    assert_eq!(
        p.unschedulable,
        vec![(
            "big".to_string(),
            "0/2 minions fit: 2 insufficient cpu".to_string()
        )]
    );
}

#[test]
fn replica_ids_are_deterministic_and_fit_the_name_limit() {
    let long = "r".repeat(63);
    let id = replica_id(&long, "abcdef1234", 12);
    assert!(id.len() <= 63 && id.ends_with("-abcdef-12"), "{id}");
    assert!(crate::manifest::check_name(&id).is_ok());
    let d = desired(vec![rc("web", 2, "a", 0)]);
    assert_eq!(
        plan(&d, &[], &minions(2, None)),
        plan(&d, &[], &minions(2, None))
    );
}

fn arb_objects() -> impl Strategy<Value = Vec<Object>> {
    let rcs = prop::collection::vec((0u32..7, 0u64..600, 0u8..2), 0..4).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (n, cpu, img))| rc(&format!("rc{i}"), n, &format!("img{img}"), cpu))
            .collect::<Vec<_>>()
    });
    let pods =
        prop::collection::vec((0u64..800, prop::option::of(80u16..83)), 0..4).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (cpu, hp))| pod(&format!("p{i}"), "x", cpu, hp))
                .collect::<Vec<_>>()
        });
    (rcs, pods).prop_map(|(mut a, b)| {
        a.extend(b);
        a
    })
}

fn arb_minions() -> impl Strategy<Value = Vec<MinionView>> {
    prop::collection::vec(prop::option::of(500u64..4000), 1..6).prop_map(|caps| {
        caps.into_iter()
            .enumerate()
            .map(|(i, cpu)| MinionView {
                unschedulable: false,
                drain: None,
                name: format!("m{i}"),
                ready: true,
                labels: Labels::new(),
                capacity: Capacity { cpu, memory: None },
                taken: Default::default(),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// From any start (nothing, or an older version of the objects), repeated plan-and-apply
    /// reaches a plan with nothing to do, never exceeding capacity on the way, and then every
    /// RC has its replicas unless something was unschedulable.
    #[test]
    fn convergence_and_capacity(before in arb_objects(), after in arb_objects(), m in arb_minions()) {
        let mut w = World::default();
        w.converge(&desired(before), &m);
        let d = desired(after);
        let last = w.converge(&d, &m);
        prop_assert!(plan(&d, &w.pods, &m).is_empty());
        if last.unschedulable.is_empty() {
            for (o, _) in d.objects.values() {
                if let Object::ReplicationController(r) = o {
                    let n = w.pods.iter().filter(|p| p.owner.as_deref() == Some(r.id.as_str())).count();
                    prop_assert_eq!(n, r.desired_state.replicas as usize);
                }
            }
        }
    }

    /// With room everywhere, the replicas of an RC are within one of even across minions.
    #[test]
    fn spreading(replicas in 0u32..20, n in 1usize..6, others in 0u32..5) {
        let d = desired(vec![rc("web", replicas, "a", 10), rc("other", others, "a", 300)]);
        let m = minions(n, None);
        let mut w = World::default();
        w.converge(&d, &m);
        let counts: Vec<usize> = m.iter().map(|v| w.pods.iter().filter(|p| p.minion == v.name && p.owner.as_deref() == Some("web")).count()).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        prop_assert!(max - min <= 1, "{:?}", counts);
    }
}

#[test]
fn a_drained_minion_is_emptied_start_first_and_a_cordoned_one_gets_nothing_new() {
    use crate::plan::scheduler::Drain;
    let mut m = minions(3, None);
    let mut w = World::default();
    let d = desired(vec![rc("web", 3, "v1", 0), pod("solo", "v1", 0, None)]);
    w.converge(&d, &m);
    let on = |w: &World, minion: &str| w.pods.iter().filter(|p| p.minion == minion).count();
    // The minion of the explicit pod; three replicas on three minions put one there too.
    let victim = w
        .pods
        .iter()
        .find(|p| p.id == "solo")
        .unwrap()
        .minion
        .clone();
    assert_eq!(on(&w, &victim), 2);
    // Cordoned: nothing moves, and nothing new is placed there.
    let v = m.iter().position(|x| x.name == victim).unwrap();
    m[v].unschedulable = true;
    assert!(plan(&d, &w.pods, &m).is_empty());
    let more = desired(vec![rc("web", 6, "v1", 0), pod("solo", "v1", 0, None)]);
    let p = plan(&more, &w.pods, &m);
    assert!(p
        .actions
        .iter()
        .all(|a| !matches!(a, Action::CreatePod { minion, .. } if *minion == victim)));
    // Drained: each replica there goes only once a replacement elsewhere runs.
    m[v].drain = Some(Drain::Replicated);
    let mut steps = 0;
    loop {
        let p = plan(&d, &w.pods, &m);
        if p.is_empty() {
            break;
        }
        w.apply(&p);
        let running = w
            .pods
            .iter()
            .filter(|p| p.owner.is_some() && p.phase == Phase::Running)
            .count();
        assert!(running >= 3, "never below replicas while draining: {p:?}");
        assert!(p
            .actions
            .iter()
            .all(|a| !matches!(a, Action::CreatePod { minion, .. } if *minion == victim)));
        w.settle();
        steps += 1;
        assert!(steps < 20);
    }
    let replicas_left = w
        .pods
        .iter()
        .filter(|p| p.minion == victim && p.owner.is_some())
        .count();
    assert_eq!(replicas_left, 0, "no replica left on {victim}");
    // A pod no controller replaces stays, unless forced: then it is made again elsewhere.
    assert_eq!(on(&w, &victim), 1, "the explicit pod stays");
    m[v].drain = Some(Drain::Force);
    w.converge(&d, &m);
    assert_eq!(on(&w, &victim), 0);
    assert_eq!(w.pods.iter().filter(|p| p.id == "solo").count(), 1);
    // Uncordoned: pods may return (a scale-up lands there too).
    m[v].unschedulable = false;
    m[v].drain = None;
    w.converge(&more, &m);
    assert!(on(&w, &victim) > 0);
}
