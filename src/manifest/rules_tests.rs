//! The v1beta1 rules as Kubernetes v0.8.0 enforced them, each asserted both ways: manifests
//! Kubernetes v0.8.0 accepted are read, manifests it rejected are refused with a located
//! message. Written from the rules, in YAML (flow style keeps each case on a line).

use super::*;
use crate::model::*;

fn read(text: &str, opts: &Options) -> Result<(Vec<Object>, Vec<String>), Vec<String>> {
    parse_file_with("t.yaml", text.as_bytes(), opts)
        .map(|(objects, warnings)| {
            (
                objects.into_iter().map(|o| o.object).collect(),
                warnings.iter().map(|w| w.to_string()).collect(),
            )
        })
        .map_err(|invalid| invalid.errors.iter().map(|d| d.to_string()).collect())
}

#[track_caller]
fn accepts(text: &str) -> Object {
    match read(text, &Options::default()) {
        Ok((mut objects, _)) => {
            assert_eq!(objects.len(), 1, "{text}");
            objects.remove(0)
        }
        Err(e) => panic!("rejected, but Kubernetes accepted it:\n{text}\n{e:#?}"),
    }
}

#[track_caller]
fn rejects(text: &str, needle: &str) {
    match read(text, &Options::default()) {
        Ok(_) => panic!("accepted, but Kubernetes rejected it:\n{text}"),
        Err(e) => assert!(
            e.iter().any(|e| e.contains(needle)),
            "{needle:?} not in {e:#?}\nfor\n{text}"
        ),
    }
}

#[track_caller]
fn warns(text: &str, needle: &str) {
    match read(text, &Options::default()) {
        Ok((_, w)) => assert!(
            w.iter().any(|w| w.contains(needle)),
            "{needle:?} not in {w:#?}"
        ),
        Err(e) => panic!("rejected:\n{text}\n{e:#?}"),
    }
}

/// A pod `p` whose manifest holds `body` (YAML flow or block at manifest level).
fn pod_manifest(body: &str) -> String {
    format!("kind: Pod\nid: p\ndesiredState:\n  manifest: {{{body}}}\n")
}

/// A pod with one container whose extra fields are `extra`.
fn pod_container(extra: &str) -> String {
    pod_manifest(&format!("containers: [{{name: c, image: i, {extra}}}]"))
}

fn the_pod(o: Object) -> Pod {
    match o {
        Object::Pod(p) => p,
        other => panic!("not a pod: {other:?}"),
    }
}

fn container0(o: Object) -> Container {
    the_pod(o).desired_state.manifest.containers.remove(0)
}

fn service(extra: &str) -> String {
    format!("kind: Service\nid: s\nport: 80\nselector: {{app: a}}\n{extra}")
}

fn rc(template_manifest: &str, extra_template: &str) -> String {
    format!(
        "kind: ReplicationController\nid: r\ndesiredState:\n  replicas: 1\n  replicaSelector: {{app: a}}\n  podTemplate:\n    labels: {{app: a}}\n{extra_template}    desiredState:\n      manifest: {{{template_manifest}}}\n"
    )
}

// ---- ids (rules §2)

#[test]
fn pod_ids_are_dns_subdomains() {
    for id in ["a", "0pod", "a.b-c", "redis-master", "x.y.z"] {
        accepts(&pod_manifest("containers: []").replace("id: p", &format!("id: {id}")));
    }
    for id in ["Pod1", "a_b", "-a", "a-", "a..b", "\"\""] {
        rejects(
            &pod_manifest("containers: []").replace("id: p", &format!("id: {id}")),
            "id: ",
        );
    }
}

#[test]
fn rc_ids_were_only_non_empty() {
    let text = rc("containers: []", "").replace("id: r", "id: redisSlaveController");
    let Object::ReplicationController(r) = accepts(&text) else {
        panic!()
    };
    assert_eq!(r.id, "redisSlaveController");
    rejects(&rc("containers: []", "").replace("id: r", "id: \"\""), "id");
    // Kubernetes took it, Docker cannot name a container after it.
    rejects(
        &rc("containers: []", "").replace("id: r", "id: \"my rc\""),
        "not supported by drover",
    );
}

#[test]
fn service_ids_are_dns952_labels_of_at_most_24() {
    for id in [
        "a",
        "a1",
        "frontend",
        "redis-master",
        "abcdefghijklmnopqrstuvwx",
    ] {
        accepts(&service("").replace("id: s", &format!("id: {id}")));
    }
    for id in [
        "123abc",
        "1a",
        "Front",
        "a_b",
        "abcdefghijklmnopqrstuvwxy",
        "a-",
    ] {
        rejects(
            &service("").replace("id: s", &format!("id: {id}")),
            "DNS-952",
        );
    }
}

#[test]
fn minions_take_any_id_and_kind_node() {
    let o = accepts(
        "kind: Minion\nid: 10.1.2.3\nresources: {capacity: {cpu: 1000, memory: 1073741824}}\n",
    );
    assert_eq!(o.kind(), Kind::Minion);
    let o = accepts("kind: Node\nid: m1\nresources: {capacity: {cpu: \"1\"}}\n");
    assert_eq!(o.kind(), Kind::Minion);
    rejects(
        "kind: Minion\nid: m1\nnamespace: default\n",
        "a minion has no namespace",
    );
    warns(
        "kind: Minion\nid: m1\nhostIP: something\n",
        "`hostIP` is ignored",
    );
}

// ---- labels (§3)

#[test]
fn label_keys_are_qualified_names_and_values_are_unchecked() {
    for key in [
        "a",
        "1234/5678",
        "1.2.3.4/5678",
        "now.with.dots/simple",
        "kubernetes.io/cluster-service",
    ] {
        accepts(&service(&format!("labels: {{\"{key}\": x}}\n")));
    }
    for key in [
        "NoUppercase123",
        "a/b/c",
        "a_b",
        "/a",
        "kubernetes.io/",
        "-a",
    ] {
        rejects(
            &service(&format!("labels: {{\"{key}\": x}}\n")),
            "is not a valid label key",
        );
    }
    let long_prefix = format!("{}/a", "a".repeat(254));
    rejects(
        &service(&format!("labels: {{\"{long_prefix}\": x}}\n")),
        "is not a valid label key",
    );
    // Values: any string, any length, commas and upper case included.
    let long = "v".repeat(100);
    for value in ["redisslave,redis-master", "taskQueue", &long, "a b?#$", ""] {
        let text = service(&format!("labels: {{uses: \"{value}\"}}\n"));
        let Object::Service(s) = accepts(&text) else {
            panic!()
        };
        assert_eq!(s.labels["uses"], value);
    }
    // ...but a string: Go's decoder refused a number.
    rejects(&service("labels: {version: 2}\n"), "expected a string");
}

#[test]
fn selectors_and_node_selectors_check_keys_but_replica_selectors_do_not() {
    rejects(
        "kind: Service\nid: s\nport: 80\nselector: {Bad_Key: a}\n",
        "not a valid label key",
    );
    rejects(
        &pod_manifest("containers: []")
            .replace("desiredState:", "nodeSelector: {Zone: a}\ndesiredState:"),
        "not a valid label key",
    );
    let text = rc("containers: []", "")
        .replace(
            "replicaSelector: {app: a}",
            "replicaSelector: {Upper_Key: a}",
        )
        .replace("labels: {app: a}", "labels: {Upper_Key: a}");
    // The template's labels are checked, the selector's keys are not.
    rejects(&text, "podTemplate.labels.Upper_Key");
    let text = rc("containers: []", "").replace(
        "replicaSelector: {app: a}",
        "replicaSelector: {app: a, Upper_Key: a}",
    );
    rejects(&text, "template labels do not match the replicaSelector");
    rejects(
        &rc("containers: []", "").replace("replicaSelector: {app: a}", "replicaSelector: {}"),
        "must not be empty",
    );
}

// ---- containers (§4)

#[test]
fn container_names_are_unique_dns_labels() {
    for name in ["0", "123", "1-a", "php-redis"] {
        accepts(&pod_manifest(&format!(
            "containers: [{{name: \"{name}\", image: i}}]"
        )));
    }
    for name in ["Web", "a.b", "a_b", &"a".repeat(64)] {
        rejects(
            &pod_manifest(&format!("containers: [{{name: \"{name}\", image: i}}]")),
            "is not a DNS label",
        );
    }
    rejects(
        &pod_manifest("containers: [{name: a, image: i}, {name: a, image: j}]"),
        "duplicate container name `a`",
    );
    rejects(
        &pod_manifest("containers: [{name: a}]"),
        "image: missing required field",
    );
}

#[test]
fn pods_and_templates_with_no_containers_are_valid() {
    let p = the_pod(accepts(&pod_manifest("containers: []")));
    assert!(p.desired_state.manifest.containers.is_empty());
    accepts(&pod_manifest("version: v1beta1"));
    accepts(&rc("", ""));
}

#[test]
fn container_ports() {
    rejects(&pod_container("ports: [{containerPort: 0}]"), "required");
    rejects(
        &pod_container("ports: [{containerPort: 65536}]"),
        "outside the allowed range 1-65535",
    );
    rejects(
        &pod_container("ports: [{containerPort: -1}]"),
        "outside the allowed range",
    );
    rejects(
        &pod_container("ports: [{hostPort: 80}]"),
        "containerPort: missing required field",
    );
    // Duplicate containerPorts and hostPort 0 (none) are fine.
    let c = container0(accepts(&pod_container(
        "ports: [{containerPort: 80, hostPort: 0}, {containerPort: 80}]",
    )));
    assert_eq!(c.ports[0].host_port, None);
    // Non-zero host ports are unique across the pod, whatever the protocol.
    rejects(
        &pod_manifest("containers: [{name: a, image: i, ports: [{containerPort: 1, hostPort: 80}]}, {name: b, image: i, ports: [{containerPort: 2, hostPort: 80, protocol: UDP}]}]"),
        "hostPort 80 is already used in this pod",
    );
}

#[test]
fn port_names_are_dns_labels_unique_within_a_container() {
    accepts(&pod_manifest(
        "containers: [{name: a, image: i, ports: [{name: api, containerPort: 1}]}, {name: b, image: i, ports: [{name: api, containerPort: 2}]}]",
    ));
    rejects(
        &pod_container("ports: [{name: api, containerPort: 1}, {name: api, containerPort: 2}]"),
        "duplicate port name `api`",
    );
    rejects(
        &pod_container("ports: [{name: HTTP, containerPort: 1}]"),
        "is not a DNS label",
    );
}

#[test]
fn protocols_compare_upper_cased() {
    let c = container0(accepts(&pod_container(
        "ports: [{containerPort: 1, protocol: tcp}, {containerPort: 2, protocol: udp}]",
    )));
    assert_eq!(c.ports[0].protocol, Protocol::TCP);
    assert_eq!(c.ports[1].protocol, Protocol::UDP);
    rejects(
        &pod_container("ports: [{containerPort: 1, protocol: ICMP}]"),
        "is not one of TCP, UDP",
    );
    let Object::Service(s) = accepts(&service("protocol: udp\n")) else {
        panic!()
    };
    assert_eq!(s.protocol, Protocol::UDP);
}

#[test]
fn env_names_are_c_identifiers_and_key_is_the_old_name() {
    let c = container0(accepts(&pod_container(
        "env: [{name: UPPER_case1, value: x}, {name: _x}, {name: _x, value: dup}, {key: OLD, value: y}]",
    )));
    let names: Vec<&str> = c.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["UPPER_case1", "_x", "_x", "OLD"]);
    assert_eq!(c.env[1].value, "");
    for bad in ["1a", "a-", "a.b.c", "ev.1"] {
        rejects(
            &pod_container(&format!("env: [{{name: \"{bad}\"}}]")),
            "is not a valid environment variable name",
        );
    }
    rejects(
        &pod_container("env: [{value: x}]"),
        "name: missing required field",
    );
}

#[test]
fn volume_mounts_take_the_old_path_and_must_name_a_volume() {
    let text = pod_manifest(
        "volumes: [{name: data}], containers: [{name: c, image: i, volumeMounts: [{name: data, path: /a, mountType: LOCAL}, {name: data, mountPath: /a, readOnly: true}]}]",
    );
    let c = container0(accepts(&text));
    assert_eq!(c.volume_mounts[0].mount_path, "/a");
    assert!(c.volume_mounts[1].read_only);
    rejects(
        &pod_container("volumeMounts: [{name: nope, mountPath: /a}]"),
        "volumeMount names no volume",
    );
    rejects(
        &pod_manifest("volumes: [{name: data}], containers: [{name: c, image: i, volumeMounts: [{name: data}]}]"),
        "mountPath: missing required field",
    );
}

#[test]
fn cpu_memory_command_and_working_dir() {
    let c = container0(accepts(&pod_container(
        "cpu: 100, memory: 50000000, command: [a, b], workingDir: /w",
    )));
    assert_eq!((c.cpu, c.memory), (100, 50_000_000));
    assert_eq!(c.working_dir.as_deref(), Some("/w"));
    // v0.8.0 passed a negative one on unchecked; drover says it cannot run it, and why.
    rejects(
        &pod_container("cpu: -5"),
        "a negative `cpu` (-5; Kubernetes v0.8.0 did not check it) is not supported by drover; give 0",
    );
    rejects(
        &pod_container("memory: -1"),
        "a negative `memory` (-1; Kubernetes v0.8.0 did not check it) is not supported",
    );
}

#[test]
fn probes_take_ports_as_numbers_names_or_quoted_numbers() {
    let c = container0(accepts(&pod_container(
        "ports: [{name: http, containerPort: 8080}], livenessProbe: {httpGet: {path: /healthz, port: \"8080\"}, initialDelaySeconds: 15}",
    )));
    let probe = c.liveness_probe.unwrap();
    assert_eq!(probe.http_get.unwrap().port, PortRef::Number(8080));
    let c = container0(accepts(&pod_container(
        "ports: [{name: http, containerPort: 8080}], livenessProbe: {tcpSocket: {port: http}}",
    )));
    assert_eq!(
        c.liveness_probe.unwrap().tcp_socket.unwrap().port,
        PortRef::Name("http".into())
    );
    // v0.8.0 accepted a probe with no handler: it probes nothing, and drover says so.
    warns(
        &pod_container("livenessProbe: {initialDelaySeconds: 5}"),
        "probes nothing",
    );
}

#[test]
fn lifecycle_hooks_have_exactly_one_handler() {
    let c = container0(accepts(&pod_container(
        "lifecycle: {postStart: {exec: {command: [touch, /started]}}, preStop: {exec: {command: [sh, -c, 'kill 1']}}}",
    )));
    let l = c.lifecycle.unwrap();
    assert_eq!(
        l.post_start.unwrap().exec.unwrap().command,
        ["touch", "/started"]
    );
    rejects(
        &pod_container(
            "lifecycle: {postStart: {exec: {command: [a]}, httpGet: {path: /, port: 80}}}",
        ),
        "give exactly one of exec or httpGet",
    );
    // Honoured now: no warning that drover does not run them.
    let text = pod_container(
        "imagePullPolicy: PullNever, lifecycle: {preStop: {httpGet: {path: /quit, port: 80}}}",
    );
    let (_, warnings) = read(&text, &Options::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:#?}");
    rejects(
        &pod_container("lifecycle: {preStop: {exec: {}}}"),
        "command: missing required field",
    );
    rejects(
        &pod_container("lifecycle: {preStop: {httpGet: {port: 80}}}"),
        "path: missing required field",
    );
}

#[test]
fn privileged_needs_allow_privileged() {
    rejects(
        &pod_container("privileged: true"),
        "privileged containers are forbidden",
    );
    assert!(!container0(accepts(&pod_container("privileged: false"))).privileged);
    let opts = Options {
        allow_privileged: true,
        ..Options::default()
    };
    let (objects, _) = read(&pod_container("privileged: true"), &opts).unwrap();
    assert!(container0(objects.into_iter().next().unwrap()).privileged);
}

#[test]
fn image_pull_policy_takes_the_eras_names_and_defaults_by_tag() {
    assert_eq!(
        PullPolicy::default_for("nginx"),
        PullPolicy::PullIfNotPresent
    );
    assert_eq!(
        PullPolicy::default_for("nginx:latest"),
        PullPolicy::PullAlways
    );
    assert_eq!(
        PullPolicy::default_for("nginx:1.7"),
        PullPolicy::PullIfNotPresent
    );
    assert_eq!(
        PullPolicy::default_for("localhost:5000/app"),
        PullPolicy::PullIfNotPresent
    );
    for (given, want) in [
        ("PullAlways", PullPolicy::PullAlways),
        ("Always", PullPolicy::PullAlways),
        ("PullNever", PullPolicy::PullNever),
        ("IfNotPresent", PullPolicy::PullIfNotPresent),
    ] {
        let c = container0(accepts(&pod_container(&format!(
            "imagePullPolicy: {given}"
        ))));
        assert_eq!(c.pull_policy(), want, "{given}");
    }
    // Saying the default changes nothing in the normalised form.
    let said = accepts(&pod_container("imagePullPolicy: PullIfNotPresent"));
    assert_eq!(
        said.normalized_json(),
        accepts(&pod_container("")).normalized_json()
    );
    rejects(
        &pod_container("imagePullPolicy: PullSometimes"),
        "is not one of PullAlways, PullIfNotPresent, PullNever",
    );
    rejects(
        &pod_container("imagePullPolicy: PullAlway"),
        "did you mean `PullAlways`?",
    );
}

// ---- volumes (§5)

#[test]
fn volumes() {
    let p = the_pod(accepts(&pod_manifest(
        "volumes: [{name: a}, {name: b, source: {hostDir: {path: /srv}}}, {name: c, source: {emptyDir: {}}}], containers: []",
    )));
    let v = &p.desired_state.manifest.volumes;
    assert_eq!(v[0].source, VolumeSource::EmptyDir {});
    assert_eq!(
        v[1].source,
        VolumeSource::HostDir {
            path: "/srv".into()
        }
    );
    rejects(
        &pod_manifest("volumes: [{name: vol.1}]"),
        "is not a DNS label",
    );
    rejects(
        &pod_manifest("volumes: [{name: a}, {name: a}]"),
        "duplicate volume name",
    );
    rejects(
        &pod_manifest("volumes: [{name: a, source: {emptyDir: {}, hostDir: {path: /x}}}]"),
        "exactly 1 volume type is required",
    );
    rejects(
        &pod_manifest("volumes: [{name: a, source: {hostDir: {}}}]"),
        "path: missing required field",
    );
    rejects(
        &pod_manifest("volumes: [{name: a, source: {persistentDisk: {pdName: d, fsType: ext4}}}]"),
        "`persistentDisk` volume (a GCE disk) is not supported by drover; mount the disk on the minion and use `hostDir`",
    );
    // What Kubernetes itself rejected is said first.
    rejects(
        &pod_manifest("volumes: [{name: a, source: {persistentDisk: {pdName: d}}}]"),
        "fsType: missing required field",
    );
    rejects(
        &rc(
            "volumes: [{name: a, source: {persistentDisk: {pdName: d, fsType: ext4}}}]",
            "",
        ),
        "must be readOnly",
    );
    rejects(
        &pod_manifest("volumes: [{name: a, source: {gitRepo: {repository: 'https://x/y.git'}}}]"),
        "`gitRepo` volume is not supported by drover; build the files into the image",
    );
    rejects(
        &pod_manifest("volumes: [{name: a, source: {gitRepo: {}}}]"),
        "repository: missing required field",
    );
}

// ---- pod level (§6)

#[test]
fn restart_and_dns_policies() {
    rejects(
        &pod_manifest("containers: [], restartPolicy: {always: {}, never: {}}"),
        "only 1 policy is allowed",
    );
    let p = the_pod(accepts(&pod_manifest(
        "containers: [], restartPolicy: {onFailure: {}}",
    )));
    assert_eq!(
        p.desired_state.manifest.restart_policy,
        RestartPolicy::OnFailure {}
    );
    rejects(
        &rc("containers: [], restartPolicy: {never: {}}", ""),
        "must restart `always`",
    );
    let p = the_pod(accepts(&pod_manifest("containers: [], dnsPolicy: Default")));
    assert_eq!(p.desired_state.manifest.dns_policy, DnsPolicy::Default);
    let said = accepts(&pod_manifest("containers: [], dnsPolicy: ClusterFirst"));
    assert_eq!(
        said.normalized_json(),
        accepts(&pod_manifest("containers: []")).normalized_json()
    );
    rejects(
        &pod_manifest("containers: [], dnsPolicy: None"),
        "is not one of ClusterFirst, Default",
    );
}

#[test]
fn manifest_version_and_id_are_dropped() {
    let a = accepts(&pod_manifest(
        "version: v1beta3, id: Anything_At_All, uuid: x, containers: []",
    ));
    assert_eq!(
        a.normalized_json(),
        accepts(&pod_manifest("containers: []")).normalized_json()
    );
}

#[test]
fn metadata_and_output_fields_are_accepted() {
    let text = "kind: Pod\nid: p\nnamespace: default\nannotations: {owner: me}\ncreationTimestamp: '2014-12-01T00:00:00Z'\nselfLink: /api/v1beta1/pods/p\nuid: 1234\nresourceVersion: 7\ncurrentState: {status: Running, host: m1}\ndesiredState: {manifest: {containers: []}, status: Running, podIP: 10.0.0.1}\n";
    let (_, warnings) = read(text, &Options::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:#?}");
    warns(
        &text.replace("namespace: default", "namespace: prod"),
        "t.yaml:3:12: namespace: namespace `prod` is ignored: drover has one namespace per project",
    );
    rejects(
        &text.replace("namespace: default", "namespace: Bad_NS"),
        "is not a DNS subdomain",
    );
    warns(
        &text.replace("desiredState: {manifest", "desiredState: {host: m1, manifest"),
        "desiredState.host: `host` is ignored: drover's scheduler places pods; pin one with `nodeSelector`",
    );
    warns(
        &pod_container("terminationMessagePath: /dev/termination-log"),
        "`terminationMessagePath` is ignored",
    );
}

// ---- replication controllers (§7) and services (§8)

#[test]
fn replicas_absent_is_zero() {
    let text = rc("containers: []", "").replace("  replicas: 1\n", "");
    let Object::ReplicationController(r) = accepts(&text) else {
        panic!()
    };
    assert_eq!(r.desired_state.replicas, 0);
    rejects(
        &rc("containers: []", "").replace("replicas: 1", "replicas: -1"),
        "outside the allowed range",
    );
    rejects(
        "kind: ReplicationController\nid: r\ndesiredState: {replicaSelector: {app: a}}\n",
        "podTemplate: missing required field",
    );
    // An integer literal, as Go decoded v1beta1's int fields: no fraction, no exponent.
    for number in ["2.0", "0.0", "1E+2", "1e-400"] {
        rejects(
            &rc("containers: []", "").replace("replicas: 1", &format!("replicas: {number}")),
            "desiredState.replicas: expected an integer, found a number with a fraction or an exponent",
        );
    }
    let Object::ReplicationController(r) =
        accepts(&rc("containers: []", "").replace("replicas: 1", "replicas: -0"))
    else {
        panic!()
    };
    assert_eq!(r.desired_state.replicas, 0);
}

#[test]
fn services() {
    rejects(
        "kind: Service\nid: s\nselector: {a: b}\n",
        "port: missing required field",
    );
    rejects(
        &service("").replace("port: 80", "port: 0"),
        "outside the allowed range 1-65535",
    );
    for (given, want) in [
        ("8080", PortRef::Number(8080)),
        ("\"8080\"", PortRef::Number(8080)),
        ("http-server", PortRef::Name("http-server".into())),
    ] {
        let Object::Service(s) = accepts(&service(&format!("containerPort: {given}\n"))) else {
            panic!()
        };
        assert_eq!(s.container_port, Some(want));
    }
    // No selector: valid since v0.7.0; drover makes no endpoints for it, and says so.
    warns("kind: Service\nid: s\nport: 80\n", "no selector");
    rejects(
        &service("").replace("selector: {app: a}", "selector: {}"),
        "empty selector",
    );
    rejects(
        &service("").replace("selector: {app: a}", "selector: [a]"),
        "expected an object",
    );
    let Object::Service(s) = accepts(&service("sessionAffinity: ClientIP\n")) else {
        panic!()
    };
    assert_eq!(s.session_affinity, SessionAffinity::ClientIP);
    rejects(
        &service("sessionAffinity: Sticky\n"),
        "is not one of None, ClientIP",
    );
    warns(
        &service("createExternalLoadBalancer: true\n"),
        "no cloud provider",
    );
    warns(&service("portalIP: 10.0.0.10\n"), "`portalIP` is ignored");
    accepts(&service("proxyPort: 12345\n"));
}

// ---- decoding (§1) and --validate

#[test]
fn unknown_fields_by_mode() {
    let text = service("provider: gce\n");
    rejects(&text, "t.yaml:5:1: provider: unknown field `provider`");
    let warn = Options {
        validate: Validate::Warn,
        ..Options::default()
    };
    let (objects, w) = read(&text, &warn).unwrap();
    assert_eq!(objects.len(), 1);
    assert!(
        w[0].starts_with("t.yaml:5:1: provider: unknown field `provider` ignored"),
        "{w:#?}"
    );
    let ignore = Options {
        validate: Validate::Ignore,
        ..Options::default()
    };
    let (_, w) = read(&text, &ignore).unwrap();
    assert!(w.is_empty());
    // A type mismatch on a known field is an error in every mode, as in Go's decoder.
    for opts in [Options::default(), warn, ignore] {
        assert!(read(&service("").replace("port: 80", "port: [80]"), &opts).is_err());
    }
}

#[test]
fn json_that_is_not_strict_is_yaml_outside_strict_mode() {
    let loose = "{\"id\": \"s\", \"kind\": \"Service\", \"port\": 80,\n \"selector\": {\"name\": HTTP_USER},}\n";
    let strict = parse_file_with("s.json", loose.as_bytes(), &Options::default())
        .unwrap_err()
        .errors;
    assert_eq!(strict[0].pos.line, 2);
    let warn = Options {
        validate: Validate::Warn,
        ..Options::default()
    };
    let (objects, w) = parse_file_with("s.json", loose.as_bytes(), &warn).unwrap();
    let Object::Service(s) = &objects[0].object else {
        panic!()
    };
    assert_eq!(s.selector["name"], "HTTP_USER");
    assert!(w[0].message.contains("not strict JSON"), "{w:#?}");
    // Comments too.
    let commented = "# a comment\n{\"id\": \"s\", \"kind\": \"Service\", \"port\": 80, \"selector\": {\"a\": \"b\"}}\n";
    assert!(parse_file_with("s.json", commented.as_bytes(), &warn).is_ok());
}

#[test]
fn lists_take_typed_kinds_and_the_old_minions_key() {
    let text = "kind: MinionList\nminions:\n- {kind: Minion, id: m1}\n- {kind: Node, id: m2}\n";
    let (objects, _) = read(text, &Options::default()).unwrap();
    assert_eq!(objects.len(), 2);
    let text = "kind: ServiceList\nitems:\n- {kind: Service, id: a, port: 1, selector: {x: y}}\n";
    assert_eq!(read(text, &Options::default()).unwrap().0.len(), 1);
    // A typed list's items are of its kind without saying so; a plain List's must say.
    let text = "kind: PodList\nitems:\n- {id: p, desiredState: {manifest: {containers: []}}}\n";
    let (objects, _) = read(text, &Options::default()).unwrap();
    assert!(matches!(objects[..], [Object::Pod(_)]), "{objects:?}");
    rejects(
        "kind: List\nitems:\n- {id: p, desiredState: {manifest: {containers: []}}}\n",
        "items[0].kind: missing required field",
    );
}

#[test]
fn yaml_anchors_merge_keys_and_bombs() {
    let text = "kind: List\nitems:\n- &svc {kind: Service, id: a, port: 1, selector: {x: y}}\n- {<<: *svc, id: b}\n";
    let (objects, _) = read(text, &Options::default()).unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[1].id(), "b");
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let err = read(&bomb, &Options::default()).unwrap_err();
    assert!(err[0].contains("alias *a"), "{err:#?}");
    assert!(err[0].contains("an alias bomb"), "{err:#?}");
    // Few aliases of one long string: budgeted by the bytes they copy, not by their count (the
    // anchor table's own copy counts too, so the second alias is one too many).
    let long = "x".repeat(1 << 20);
    let mut wide = format!("a: &a {long}\n");
    for i in 0..1000 {
        wide.push_str(&format!("k{i}: *a\n"));
    }
    let err = read(&wide, &Options::default()).unwrap_err();
    assert!(
        err[0].contains("alias *a would copy") && err[0].contains("t.yaml:3:5:"),
        "{err:#?}"
    );
    // Anchors nested in each other: the anchor table's copies count too (found by the
    // yaml_aliases fuzz target: 64 KiB of them took 180 MB).
    let items = vec!["x"; 4000].join(", ");
    let mut nested = String::from("n: ");
    for i in 0..100 {
        nested.push_str(&format!("&a{i} ["));
    }
    nested.push_str(&items);
    nested.push_str(&"]".repeat(100));
    nested.push('\n');
    let err = read(&nested, &Options::default()).unwrap_err();
    assert!(err[0].contains("anchors nested too deep"), "{err:#?}");
    // One anchored list the size of a manifest's, aliased a few times, is read.
    let list = vec!["{name: A, value: b}"; 200].join(", ");
    let fine = format!(
        "e: &e [{list}]
f: *e
g: *e
"
    );
    assert!(super::node::parse_yaml(&fine).is_ok());
}

#[test]
fn yaml_scalars_resolve_by_the_core_schema() {
    use super::node::{parse_yaml, Value};
    let docs =
        parse_yaml("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: 0x10\ng: text\nh: !!str 2\n").unwrap();
    let Value::Object(e) = &docs[0].value else {
        panic!()
    };
    let values: Vec<&Value> = e.iter().map(|e| &e.node.value).collect();
    assert_eq!(values[0], &Value::Int(1));
    assert_eq!(values[1], &Value::Str("1".into()));
    assert_eq!(values[2], &Value::Bool(true));
    assert_eq!(values[3], &Value::Null);
    assert_eq!(values[4], &Value::Float(1.5));
    assert_eq!(values[5], &Value::Int(16));
    assert_eq!(values[6], &Value::Str("text".into()));
    assert_eq!(values[7], &Value::Str("2".into()));
    // Positions: 1-based line and column of keys and values.
    assert_eq!(e[6].key_pos, Pos { line: 7, col: 1 });
    assert_eq!(e[6].node.pos, Pos { line: 7, col: 4 });
}

/// Every error of a file, as text; panics if it was accepted.
#[track_caller]
fn errors_of(text: &str) -> Vec<String> {
    read(text, &Options::default()).expect_err("accepted")
}

#[test]
fn a_volume_source_that_names_no_type_is_refused_not_taken_for_an_empty_dir() {
    // v0.8.0: an absent source was the implied emptyDir; a present one needed exactly one type.
    rejects(
        &pod_manifest("volumes: [{name: a, source: {}}]"),
        "exactly 1 volume type is required",
    );
    // v1beta3's spelling is an unknown field in v1beta1: ignored under warn, so no type at all.
    let warn = Options {
        validate: Validate::Warn,
        ..Options::default()
    };
    let typo = pod_manifest("volumes: [{name: a, source: {gcePersistentDisk: {pdName: d}}}]");
    let e = read(&typo, &warn).expect_err("a typo'd volume must not become an emptyDir");
    assert!(
        e.iter().any(|e| e.contains("exactly 1 volume type")),
        "{e:#?}"
    );
    assert_eq!(
        the_pod(accepts(&pod_manifest("volumes: [{name: a, source: null}]")))
            .desired_state
            .manifest
            .volumes[0]
            .source,
        VolumeSource::EmptyDir {}
    );
}

#[test]
fn one_mistake_is_one_error_not_a_cascade_of_false_ones() {
    // The refused volume still exists for its mounts.
    let e = errors_of(&pod_manifest(
        "containers: [{name: c, image: i, volumeMounts: [{name: d, mountPath: /d}]}], \
         volumes: [{name: d, source: {persistentDisk: {pdName: x, fsType: ext4}}}]",
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("not supported by drover"), "{e:#?}");
    // A bad label key is the only error: not also a template that "does not match".
    let e = errors_of(
        "kind: ReplicationController\nid: r\ndesiredState:\n  replicaSelector: {Name: b}\n  \
         podTemplate:\n    labels: {Name: b}\n    desiredState:\n      manifest: {containers: [{name: c, image: i}]}\n",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("is not a valid label key"), "{e:#?}");
    // Nor a selector called empty when its one key is bad.
    let e = errors_of("kind: Service\nid: s\nport: 80\nselector: {a/b/c: x}\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("is not a valid label key"), "{e:#?}");
}

#[test]
fn a_refused_file_keeps_its_warnings() {
    let text = pod_container("terminationMessagePath: /m, imagePullPolicy: Sometimes");
    let invalid = parse_file_with("t.yaml", text.as_bytes(), &Options::default()).unwrap_err();
    assert_eq!(invalid.errors.len(), 1, "{:#?}", invalid.errors);
    assert!(
        invalid.warnings[0]
            .message
            .contains("terminationMessagePath")
            || invalid.warnings[0].path.contains("terminationMessagePath"),
        "{:#?}",
        invalid.warnings
    );
    // And so does the source it is part of.
    let files = [SourceFile {
        origin: Origin {
            file: "t.yaml".into(),
            commit: None,
        },
        bytes: text.into_bytes(),
    }];
    let read = read_each(
        &files,
        |f| &f.origin,
        |f, buf, _| {
            buf.clear();
            buf.extend_from_slice(&f.bytes);
            Ok::<u64, std::convert::Infallible>(f.bytes.len() as u64)
        },
        &Options::default(),
        |_, object| object,
    );
    let Err(ReadError::Invalid(invalid)) = read else {
        panic!("accepted");
    };
    assert_eq!((invalid.errors.len(), invalid.warnings.len()), (1, 1));
}

#[test]
fn a_key_given_twice_is_an_error_when_strict_and_the_last_one_otherwise() {
    let text = "kind: Service\nid: s\nport: 80\nport: 81\nselector: {app: a, app: b}\n";
    let e = errors_of(text);
    assert!(
        e.iter()
            .any(|e| e.contains("port: duplicate field (first given at 3:1)")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("selector.app: duplicate label")),
        "{e:#?}"
    );
    // Kubernetes' decoders kept the last value.
    let warn = Options {
        validate: Validate::Warn,
        ..Options::default()
    };
    let (objects, warnings) = read(text, &warn).unwrap();
    let Object::Service(s) = &objects[0] else {
        panic!("{objects:?}")
    };
    assert_eq!((s.port, s.selector["app"].as_str()), (81, "b"));
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].contains("the last one is used"),
        "{warnings:#?}"
    );
}

#[test]
fn messages_say_how_to_fix_it() {
    // Strict JSON that Kubernetes' YAML reading took: the flag that does the same is named.
    let loose =
        "{\"kind\": \"Service\", \"id\": \"s\", \"port\": 80, \"selector\": {\"a\": \"b\"},}\n";
    let e = parse_file_with("s.json", loose.as_bytes(), &Options::default())
        .unwrap_err()
        .errors;
    assert!(
        e[0].message.contains("--validate=warn does the same"),
        "{e:#?}"
    );
    // A truncated file gets no such hint: YAML would not take it either.
    let e = parse_file_with("s.json", &loose.as_bytes()[..30], &Options::default())
        .unwrap_err()
        .errors;
    assert!(!e[0].message.contains("--validate"), "{e:#?}");
    rejects(
        &pod_container("env: [{name: A, value: 8080}]"),
        "env[0].value: expected a string, found an integer: put the value in quotes",
    );
    rejects(&service("containerPort: ''"), "an empty port name");
    rejects(
        &pod_container("cpu: -0.5"),
        "a negative `cpu` (-0.5; Kubernetes v0.8.0 did not check it)",
    );
    let e = errors_of("kind: List\nitems:\n- {kind: List, id: x}\n");
    assert!(
        e.iter()
            .any(|e| e.contains("unknown kind `List`") && !e.contains(", List,")),
        "{e:#?}"
    );
}

#[test]
fn a_typed_list_holds_only_its_kind() {
    rejects(
        "kind: ServiceList\nitems:\n- {kind: Pod, id: p, desiredState: {manifest: {containers: []}}}\n",
        "items[0].kind: a Pod in a ServiceList, whose items are Services",
    );
    // `Node` is a minion's other name, so a MinionList may hold one.
    let (objects, _) = read(
        "kind: NodeList\nitems:\n- {kind: Node, id: m1}\n",
        &Options::default(),
    )
    .unwrap();
    assert!(matches!(objects[..], [Object::Minion(_)]), "{objects:?}");
}

#[test]
fn the_last_kind_and_items_count_when_given_twice_outside_strict() {
    let lax = |validate| Options {
        validate,
        ..Options::default()
    };
    // The last `kind` makes this a List, and its last `items` are read.
    let text = "kind: Pod\nkind: List\nitems: []\nitems:\n- {kind: Service, id: s, port: 80, selector: {a: b}}\n";
    let (objects, warnings) = read(text, &lax(Validate::Warn)).unwrap();
    assert!(
        matches!(&objects[..], [Object::Service(s)] if s.id == "s"),
        "{objects:?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    // ignore: the same objects, no warnings.
    let (objects, warnings) = read(text, &lax(Validate::Ignore)).unwrap();
    assert_eq!(objects.len(), 1);
    assert!(warnings.is_empty(), "{warnings:#?}");
    // Annotations are checked for duplicates as every other map is.
    rejects(
        &service("annotations: {a: x, a: y}"),
        "annotations.a: duplicate field",
    );
}

#[test]
fn host_dirs_that_would_give_a_pod_the_minion_are_refused_unless_allowed() {
    let pod = |path: &str| {
        format!(
            "kind: Pod\nid: p\ndesiredState:\n  manifest:\n    version: v1beta1\n    id: p\n    containers: [{{name: c, image: i, volumeMounts: [{{name: v, mountPath: /x}}]}}]\n    volumes: [{{name: v, source: {{hostDir: {{path: '{path}'}}}}}}]\n"
        )
    };
    for (path, guard) in [
        ("/", "/"),
        ("/etc", "/etc"),
        ("/etc/ssl/certs", "/etc"),
        ("/var/run/docker.sock", "/var/run/docker.sock"),
        ("/run/docker.sock", "/run/docker.sock"),
        ("//proc/./1/../self", "/proc"),
        ("/srv/../root/.ssh", "/root"),
        ("/sys", "/sys"),
        ("/boot/grub", "/boot"),
        ("/var/run", "/var/run/docker.sock"),
        ("/run", "/run/docker.sock"),
        ("/var", "/var/run/docker.sock"),
        ("/var/lib/docker/volumes", "/var/lib/docker"),
        ("/run/containerd", "/run/containerd"),
    ] {
        rejects(
            &pod(path),
            &format!("hostDir `{path}` is refused: it is, holds or is under `{guard}`"),
        );
    }
    for fine in [
        "/srv/data",
        "/var/lib/app",
        "/etcetera",
        "/var/run/docker.sock.d",
        "/var/log/app",
        "/tmp/x",
    ] {
        accepts(&pod(fine));
    }
    // With `allowed_host_paths`, only what it lists: a guarded path too, when listed.
    let opts = Options {
        allowed_host_paths: vec!["/etc/ssl/".into(), "/srv/data".into()],
        ..Options::default()
    };
    for fine in ["/etc/ssl/certs", "/srv/data", "/srv/data/x"] {
        assert!(read(&pod(fine), &opts).is_ok(), "{fine}");
    }
    for refused in ["/etc/passwd", "/srv/other", "/srv/database"] {
        let e = read(&pod(refused), &opts).unwrap_err();
        assert!(
            e[0].contains("is outside `allowed_host_paths` in drover.toml (/etc/ssl/, /srv/data)"),
            "{refused}: {e:?}"
        );
    }
}

/// drover's own annotation (v1beta1 has no field for it): the PROXY protocol, TCP only.
#[test]
fn the_proxy_protocol_annotation_is_v1_or_v2_on_a_tcp_service() {
    for (value, want) in [("v1", ProxyProtocol::V1), ("v2", ProxyProtocol::V2)] {
        match accepts(&service(&format!(
            "annotations: {{drover.io/proxy-protocol: \"{value}\"}}\n"
        ))) {
            Object::Service(s) => assert_eq!(s.proxy_protocol, Some(want)),
            other => panic!("not a service: {other:?}"),
        }
    }
    match accepts(&service("")) {
        Object::Service(s) => assert_eq!(s.proxy_protocol, None),
        other => panic!("not a service: {other:?}"),
    }
    rejects(
        &service("annotations: {drover.io/proxy-protocol: \"v3\"}\n"),
        "annotations.drover.io/proxy-protocol: `v3` is not a PROXY protocol version",
    );
    rejects(
        &service("protocol: UDP\nannotations: {drover.io/proxy-protocol: v2}\n"),
        "to TCP backends only",
    );
    warns(
        &service("annotations: {drover.io/proxy-protocl: v1}\n"),
        "annotation `drover.io/proxy-protocl` means nothing to drover",
    );
    // Anyone else's annotations are kept by nobody, and said by nobody.
    accepts(&service("annotations: {example.com/owner: team-a}\n"));
}

/// Git can cordon a minion: `unschedulable` (a boolean) on its manifest.
#[test]
fn a_minion_manifest_may_say_it_is_unschedulable() {
    match accepts("kind: Minion\nid: 10.0.0.5\nunschedulable: true\n") {
        Object::Minion(m) => assert!(m.unschedulable),
        other => panic!("not a minion: {other:?}"),
    }
    match accepts("kind: Minion\nid: 10.0.0.5\n") {
        Object::Minion(m) => assert!(!m.unschedulable),
        other => panic!("not a minion: {other:?}"),
    }
    rejects(
        "kind: Minion\nid: 10.0.0.5\nunschedulable: \"yes\"\n",
        "unschedulable",
    );
}
