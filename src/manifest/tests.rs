use super::*;
use crate::model::*;

fn parse_one(file: &str, text: &str) -> Object {
    let mut objs = parse_file(file, text.as_bytes()).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(objs.len(), 1);
    objs.remove(0).object
}

fn errors(file: &str, text: &str) -> Vec<String> {
    match parse_file(file, text.as_bytes()) {
        Ok(_) => panic!("expected errors for {text}"),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

const TOMCAT_RC: &str = r#"{
  "id": "tomcatController",
  "kind": "ReplicationController",
  "apiVersion": "v1beta1",
  "desiredState": {
    "replicas": 2,
    "replicaSelector": {"name": "tomcatCluster"},
    "podTemplate": {
      "desiredState": {
        "manifest": {
          "version": "v1beta1",
          "id": "tomcat",
          "containers": [{
            "name": "tomcat",
            "image": "tutum/tomcat",
            "ports": [{"containerPort": 8080, "hostPort": 80}]
          }]
        }
      },
      "labels": {"name": "tomcatCluster"}
    }
  },
  "labels": {"name": "tomcatCluster"}
}"#;

#[test]
fn the_seed_tomcat_controller_is_valid_and_gets_defaults() {
    let Object::ReplicationController(rc) = parse_one("tomcat.json", TOMCAT_RC) else {
        panic!("wrong kind")
    };
    assert_eq!(rc.id, "tomcatController");
    assert_eq!(rc.desired_state.replicas, 2);
    let manifest = &rc.desired_state.pod_template.desired_state.manifest;
    assert_eq!(manifest.restart_policy, RestartPolicy::Always {});
    assert_eq!(manifest.containers[0].ports[0].protocol, Protocol::TCP);
    assert_eq!(manifest.containers[0].ports[0].host_port, Some(80));
}

#[test]
fn toml_and_json_of_the_same_object_normalise_identically() {
    let toml = r#"
id = "tomcatController"
kind = "ReplicationController"
apiVersion = "v1beta1"
labels = { name = "tomcatCluster" }
[desiredState]
replicas = 2
replicaSelector = { name = "tomcatCluster" }
[desiredState.podTemplate]
labels = { name = "tomcatCluster" }
[desiredState.podTemplate.desiredState.manifest]
version = "v1beta1"
id = "tomcat"
[[desiredState.podTemplate.desiredState.manifest.containers]]
name = "tomcat"
image = "tutum/tomcat"
ports = [{ containerPort = 8080, hostPort = 80 }]
"#;
    let a = parse_one("a.json", TOMCAT_RC).normalized_json();
    let b = parse_one("a.toml", toml).normalized_json();
    assert_eq!(a, b);
}

#[test]
fn unknown_field_is_named_with_the_nearest_known_one() {
    let text = TOMCAT_RC.replace("\"replicas\": 2", "\"replica\": 2");
    let errs = errors("rc.json", &text);
    assert!(
        errs.iter().any(|e| e.starts_with(
            "rc.json:6:5: desiredState.replica: unknown field `replica`; did you mean `replicas`?"
        )),
        "{errs:#?}"
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
}

#[test]
fn wrong_types_report_expected_and_found() {
    let text = TOMCAT_RC.replace("\"replicas\": 2", "\"replicas\": \"2\"");
    let errs = errors("rc.json", &text);
    assert_eq!(
        errs,
        vec!["rc.json:6:17: desiredState.replicas: expected an integer, found a string"]
    );
}

#[test]
fn every_error_in_a_file_is_collected() {
    let text = r#"{"kind": "Pod", "id": "-bad", "desiredState": {"manifest": {
        "restartPolicy": {"always": {}, "never": {}},
        "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}],
                        "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}}"#;
    let errs = errors("p.json", text);
    let want = [
        "id: `-bad` is not valid: a pod id must be a DNS subdomain",
        "containers[0].ports[0].containerPort: 70000 is outside the allowed range 1-65535",
        "restartPolicy: conflicting restart policies always and never",
        "volumeMounts[0].name: volumeMount names no volume: `data`",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.contains(w)),
            "missing {w:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

#[test]
fn rc_template_labels_must_match_the_selector() {
    let text = TOMCAT_RC.replace(
        "\"labels\": {\"name\": \"tomcatCluster\"}\n    }",
        "\"labels\": {\"name\": \"other\"}\n    }",
    );
    let errs = errors("rc.json", &text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("desiredState.podTemplate.labels: template labels do not match the replicaSelector (missing name=tomcatCluster)"), "{errs:#?}");
}

#[test]
fn names_follow_the_docker_container_name_rule() {
    assert!(check_name("tomcatController").is_ok());
    assert!(check_name("web-1.v2_x").is_ok());
    assert!(check_name("_x").is_err());
    assert!(check_name("a b").is_err());
    assert!(check_name(&"a".repeat(64)).is_err());
    assert!(check_name(&"a".repeat(63)).is_ok());
}

#[test]
fn unknown_kind_is_suggested() {
    let errs = errors("x.json", r#"{"kind": "Serivce", "id": "a"}"#);
    assert!(
        errs[0].contains("unknown kind `Serivce`") && errs[0].contains("did you mean `Service`?"),
        "{errs:#?}"
    );
}

#[test]
fn duplicate_ids_within_a_kind_are_errors_naming_both_places() {
    let pod = |id: &str| {
        format!(
            r#"{{"kind":"Pod","id":"{id}","desiredState":{{"manifest":{{"containers":[{{"name":"c","image":"i"}}]}}}}}}"#
        )
    };
    let files = vec![
        SourceFile {
            origin: Origin {
                file: "a.json".into(),
                commit: None,
            },
            bytes: pod("web").into_bytes(),
        },
        SourceFile {
            origin: Origin {
                file: "b.json".into(),
                commit: None,
            },
            bytes: pod("web").into_bytes(),
        },
        SourceFile {
            origin: Origin {
                file: "c.json".into(),
                commit: None,
            },
            bytes: pod("other").into_bytes(),
        },
    ];
    let errs = desired_state(&files).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].file, "b.json");
    assert!(
        errs[0]
            .message
            .contains("Pod/web is also defined at a.json:1:20"),
        "{}",
        errs[0]
    );
    // Each later copy names the first; reports come in file order, whatever the ids' order.
    let mut files = files;
    let more = |name: &str, id: &str| SourceFile {
        origin: Origin {
            file: name.into(),
            commit: None,
        },
        bytes: pod(id).into_bytes(),
    };
    files.push(more("d.json", "other"));
    files.push(more("e.json", "web"));
    let errs = desired_state(&files).unwrap_err();
    let seen: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.file.as_str(), e.message.rsplit(' ').next().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("b.json", "a.json:1:20"),
            ("d.json", "c.json:1:20"),
            ("e.json", "a.json:1:20")
        ],
        "{errs:#?}"
    );
}

#[test]
fn same_id_in_different_kinds_is_fine() {
    let files = vec![SourceFile {
        origin: Origin { file: "l.json".into(), commit: None },
        bytes: br#"{"kind":"List","items":[
            {"kind":"Service","id":"web","port":80,"selector":{"app":"web"}},
            {"kind":"Pod","id":"web","labels":{"app":"web"},"desiredState":{"manifest":{"containers":[{"name":"c","image":"i"}]}}}]}"#.to_vec(),
    }];
    let d = desired_state(&files).unwrap();
    assert_eq!(d.objects.len(), 2);
}

#[test]
fn service_defaults_and_container_port_by_name() {
    let Object::Service(s) = parse_one(
        "s.json",
        r#"{"kind":"Service","id":"web","port":80,"containerPort":"http","selector":{"app":"web"}}"#,
    ) else {
        panic!()
    };
    assert_eq!(s.protocol, Protocol::TCP);
    assert_eq!(s.session_affinity, SessionAffinity::None);
    assert_eq!(s.container_port, Some(PortRef::Name("http".into())));
}

#[test]
fn volumes_default_to_empty_dir_and_host_dir_must_be_absolute() {
    let text = r#"{"kind":"Pod","id":"p","desiredState":{"manifest":{
        "volumes":[{"name":"a"},{"name":"b","source":{"hostDir":{"path":"rel"}}}],
        "containers":[{"name":"c","image":"i"}]}}}"#;
    let errs = errors("p.json", text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("a relative hostDir path (`rel`) is not supported by drover"));
    let ok = text.replace("\"rel\"", "\"/srv\"");
    let Object::Pod(p) = parse_one("p.json", &ok) else {
        panic!()
    };
    assert_eq!(
        p.desired_state.manifest.volumes[0].source,
        VolumeSource::EmptyDir {}
    );
}

#[test]
fn truncated_and_non_utf8_files_are_reported_with_positions() {
    let errs = errors("t.json", "{\"kind\": \"Pod\",\n \"id\": \"x");
    assert_eq!(
        errs,
        vec!["t.json:2:10: unexpected end of input inside a string"]
    );
    let d = parse_file("u.json", b"{\n\"id\": \"\xff\"}").unwrap_err();
    assert_eq!(d[0].pos, Pos { line: 2, col: 8 });
}

#[test]
fn liveness_probe_needs_exactly_one_action_and_known_port_names() {
    let text = r#"{"kind":"Pod","id":"p","desiredState":{"manifest":{"containers":[{"name":"c","image":"i",
        "ports":[{"name":"http","containerPort":80}],
        "livenessProbe":{"httpGet":{"port":"htp"}}}]}}}"#;
    let errs = errors("p.json", text);
    assert!(
        errs.iter()
            .any(|e| e.contains("port `htp` names no port of this container")),
        "{errs:#?}"
    );
    let ok = text.replace("\"htp\"", "\"http\"");
    let Object::Pod(p) = parse_one("p.json", &ok) else {
        panic!()
    };
    let probe = p.desired_state.manifest.containers[0]
        .liveness_probe
        .clone()
        .unwrap();
    assert_eq!(probe.timeout_seconds, 1);
    assert_eq!(probe.http_get.unwrap().path, "/");
}
