use super::*;
use crate::model::*;
use crate::plan::types::{ContainerState, ContainerStatus};

fn service(id: &str, port: u16, container_port: Option<PortRef>) -> Object {
    Object::Service(Service {
        id: id.into(),
        api_version: API_VERSION.into(),
        labels: Labels::new(),
        port,
        protocol: Protocol::TCP,
        container_port,
        selector: [("app".to_string(), "web".to_string())].into(),
        session_affinity: SessionAffinity::None,
        proxy_protocol: None,
    })
}

fn desired(objects: Vec<Object>) -> DesiredState {
    DesiredState::of(objects, "t.json")
}

fn published(
    name: Option<&str>,
    container_port: u16,
    host_ip: &str,
    host_port: u16,
) -> PublishedPort {
    PublishedPort {
        name: name.map(str::to_string),
        container_port,
        protocol: Protocol::TCP,
        host_ip: host_ip.into(),
        host_port,
    }
}

fn pod(
    id: &str,
    minion: &str,
    app: &str,
    state: ContainerState,
    ports: Vec<PublishedPort>,
) -> ObservedPod {
    ObservedPod {
        id: id.into(),
        minion: minion.into(),
        owner: None,
        template_hash: "h".into(),
        labels: [("app".to_string(), app.to_string())].into(),
        phase: if state == ContainerState::Running {
            Phase::Running
        } else {
            Phase::Pending
        },
        containers: vec![ContainerStatus {
            name: "c".into(),
            image: "i".into(),
            state,
        }],
        created: 1,
        request: Default::default(),
        legacy: false,
        ports,
        ip: None,
        unready: false,
    }
}

#[test]
fn endpoints_are_the_ready_matching_pods_at_their_published_port() {
    let d = desired(vec![service(
        "web",
        8080,
        Some(PortRef::Name("http".into())),
    )]);
    let pods = vec![
        pod(
            "a",
            "m1",
            "web",
            ContainerState::Running,
            vec![
                published(Some("metrics"), 9100, "10.0.0.1", 30001),
                published(Some("http"), 80, "10.0.0.1", 30000),
            ],
        ),
        pod(
            "b",
            "m2",
            "web",
            ContainerState::Waiting,
            vec![published(Some("http"), 80, "10.0.0.2", 30002)],
        ),
        pod(
            "c",
            "m3",
            "web",
            ContainerState::Running,
            vec![published(Some("http"), 80, "0.0.0.0", 30003)],
        ),
        pod(
            "d",
            "m3",
            "db",
            ContainerState::Running,
            vec![published(Some("http"), 80, "10.0.0.3", 30004)],
        ),
        pod(
            "e",
            "m1",
            "web",
            ContainerState::Running,
            vec![published(Some("http"), 80, "10.0.0.1", 30005)],
        ),
        pod("f", "m1", "web", ContainerState::Running, vec![]),
    ];
    let publish: BTreeMap<String, String> = [("m3".to_string(), "10.0.0.3".to_string())].into();
    let probes = |p: &ObservedPod| p.id != "e";
    let got = endpoints(&d, &pods, &publish, &probes);
    assert_eq!(got.len(), 1);
    let by_pod: BTreeMap<&str, &Endpoint> = got[0]
        .endpoints
        .iter()
        .map(|e| (e.pod.as_str(), e))
        .collect();
    assert_eq!(by_pod.len(), 5, "the db pod is not selected");
    assert_eq!(
        by_pod["a"].address.as_deref(),
        Some("10.0.0.1:30000"),
        "by name, not the first port"
    );
    assert!(by_pod["a"].ready);
    assert_eq!(by_pod["b"].reason.as_deref(), Some("not running"));
    assert_eq!(
        by_pod["c"].address.as_deref(),
        Some("10.0.0.3:30003"),
        "0.0.0.0 is the minion's publish address"
    );
    assert_eq!(
        by_pod["e"].reason.as_deref(),
        Some("liveness probe failing")
    );
    assert_eq!(
        by_pod["f"].reason.as_deref(),
        Some("publishes no port http")
    );
    assert_eq!(
        got[0].ready_addresses(),
        vec![
            "10.0.0.1:30000".parse().unwrap(),
            "10.0.0.3:30003".parse().unwrap()
        ]
    );
}

#[test]
fn the_default_container_port_is_the_first_and_a_number_matches_by_number() {
    let ports = vec![
        published(Some("metrics"), 9100, "10.0.0.1", 1),
        published(None, 80, "10.0.0.1", 2),
    ];
    let pods = vec![pod("a", "m1", "web", ContainerState::Running, ports)];
    let all = |_: &ObservedPod| true;
    let first = endpoints(
        &desired(vec![service("web", 1, None)]),
        &pods,
        &BTreeMap::new(),
        &all,
    );
    assert_eq!(first[0].endpoints[0].address.as_deref(), Some("10.0.0.1:1"));
    let by_number = endpoints(
        &desired(vec![service("web", 1, Some(PortRef::Number(80)))]),
        &pods,
        &BTreeMap::new(),
        &all,
    );
    assert_eq!(
        by_number[0].endpoints[0].address.as_deref(),
        Some("10.0.0.1:2")
    );
}

#[test]
fn service_variables_follow_the_seeds() {
    let d = desired(vec![service("redis-master", 6379, None)]);
    let env = service_env(&d, "10.0.0.11");
    for want in [
        "REDIS_MASTER_SERVICE_HOST=10.0.0.11",
        "REDIS_MASTER_SERVICE_PORT=6379",
        "REDIS_MASTER_PORT=tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP=tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP_PROTO=tcp",
        "REDIS_MASTER_PORT_6379_TCP_PORT=6379",
        "REDIS_MASTER_PORT_6379_TCP_ADDR=10.0.0.11",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} missing from {env:?}");
    }
    assert_eq!(env.len(), 7);
    assert_eq!(env_name("9lives.web"), "_9LIVES_WEB");
}
