//! Manifests as users bring them: Kubernetes' own guestbook as it shipped, YAML twins of every
//! example, multi-document YAML, and `--validate` modes, through the real binary and the
//! library. No cluster.

mod common;
use common::*;
use drover::manifest::{Options, SourceFile, Validate};
use drover::model::Origin;
use std::collections::BTreeMap;
use std::path::Path;

/// Every manifest file of a directory (not recursive), as a source hands them over.
fn files_of(dir: &Path) -> Vec<SourceFile> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| drover::manifest::Format::of(p.to_str().unwrap()).is_some())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| SourceFile {
            origin: Origin {
                file: p.file_name().unwrap().to_string_lossy().into_owned(),
                commit: None,
            },
            bytes: std::fs::read(&p).unwrap(),
        })
        .collect()
}

/// The normalised JSON of every object of a directory, keyed by kind/id.
fn normalised(dir: &Path) -> BTreeMap<String, String> {
    let read = drover::manifest::read(&files_of(dir), &Options::default())
        .unwrap_or_else(|d| panic!("{}: {d:#?}", dir.display()));
    assert!(read.warnings.is_empty(), "{:#?}", read.warnings);
    read.desired
        .objects
        .iter()
        .map(|(k, (o, _))| (k.to_string(), o.normalized_json()))
        .collect()
}

#[test]
fn yaml_and_toml_twins_of_the_examples_normalise_to_the_same_objects() {
    let root = project();
    for ex in ["examples/guestbook", "examples/tomcat"] {
        let json = normalised(&root.join(ex).join("json"));
        assert!(!json.is_empty());
        assert_eq!(json, normalised(&root.join(ex).join("yaml")), "{ex} yaml");
        assert_eq!(json, normalised(&root.join(ex).join("toml")), "{ex} toml");
    }
    // manifests/ (JSON and TOML) against its YAML twin (the TOML List as two documents).
    let manifests = normalised(&root.join("manifests"));
    assert_eq!(manifests.len(), 4);
    assert_eq!(manifests, normalised(&root.join("examples/manifests-yaml")));
}

#[test]
fn kubernetes_guestbook_as_shipped_validates_and_diffs() {
    let t = TestDir::new();
    copy_dir(
        &project().join("examples/kubernetes-guestbook"),
        &t.join("guestbook"),
    );
    let r = t.drover(&["validate", "guestbook"]);
    r.expect_code(0);
    assert!(r.stdout.contains("6 objects valid"), "{}", r.stdout);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let r = t.drover(&["diff", "guestbook"]);
    r.expect_code(1);
    for key in [
        "+ Pod/redis-master",
        "+ ReplicationController/redisSlaveController",
        "+ ReplicationController/frontendController",
        "+ Service/frontend",
        "+ Service/redis-master",
        "+ Service/redisslave",
    ] {
        assert!(r.stdout.contains(key), "{key}: {}", r.stdout);
    }
    // The label value Kubernetes never checked is kept as written.
    assert!(
        r.stdout.contains("\"uses\": \"redisslave,redis-master\""),
        "{}",
        r.stdout
    );
    // Once recorded as applied, the same files are in sync.
    record_as_applied(&t.join("guestbook"), &t.join(".drover"));
    t.drover(&["diff", "guestbook"]).expect_code(0);
}

#[test]
fn multi_document_yaml_and_lists_read_every_object_with_located_errors() {
    let t = TestDir::new();
    t.write(
        "m/app.yaml",
        "# two objects in one file\n\
         ---\n\
         id: web\n\
         kind: Service\n\
         port: 80\n\
         selector: {app: web}\n\
         ---\n\
         kind: List\n\
         items:\n\
         - id: db\n  kind: Service\n  port: 5432\n  selector: {app: db}\n\
         ---\n",
    );
    let r = t.drover(&["validate", "m"]);
    r.expect_code(0);
    assert!(r.stdout.contains("2 objects valid"), "{}", r.stdout);
    // An error in the third document points at its own line and field.
    t.write(
        "m/app.yaml",
        "id: web\nkind: Service\nport: 80\nselector: {app: web}\n---\nid: db\nkind: Service\nport: 99999\nselector: {app: db}\n",
    );
    let r = t.drover(&["validate", "m"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("m/app.yaml:8:7: port: 99999 is outside the allowed range 1-65535"),
        "{}",
        r.stderr
    );
    // A YAML syntax error is located too.
    t.write("m/app.yaml", "id: web\nkind: [Service\n");
    let r = t.drover(&["validate", "m"]);
    r.expect_code(2);
    assert!(r.stderr.contains("m/app.yaml:"), "{}", r.stderr);
}

/// JSON as Kubernetes' YAML decoder took it: a trailing comma, an unquoted string, a tab.
const LOOSE_JSON: &str = "{\n  \"id\": \"web\",\n  \"kind\": \"Service\",\n\t\"port\": 80,\n  \"selector\": {\"app\": web},\n  \"provider\": \"gce\",\n}\n";

#[test]
fn validate_modes_on_non_strict_json_and_unknown_fields() {
    let t = TestDir::new();
    t.write("m/svc.json", LOOSE_JSON);
    // strict (the default): not JSON, an error with its place.
    let r = t.drover(&["validate", "m"]);
    r.expect_code(2);
    assert!(r.stderr.contains("m/svc.json:5:"), "{}", r.stderr);
    // warn: read as YAML, said so; the unknown field is a warning and ignored.
    let r = t.drover(&["validate", "--validate=warn", "m"]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("warning: m/svc.json:5:23: not strict JSON"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("warning: m/svc.json:6:3: provider: unknown field `provider` ignored"),
        "{}",
        r.stderr
    );
    // diff reads the same way, and normalises to the object a strict file gives.
    let r = t.drover(&["diff", "--validate", "warn", "-o", "json", "m"]);
    r.expect_code(1);
    assert!(r.stdout.contains(r#"\"app\": \"web\""#), "{}", r.stdout);
    // ignore: the same objects, no warnings.
    let r = t.drover(&["validate", "--validate=ignore", "m"]);
    r.expect_code(0);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    // drover.toml's `validate` is the default; the flag wins over it.
    t.write("drover.toml", "validate = \"warn\"\n");
    t.drover(&["validate", "m"]).expect_code(0);
    t.drover(&["validate", "--validate=strict", "m"])
        .expect_code(2);
    // A strict-JSON file with an unknown field: an error naming the nearest known field.
    t.write("drover.toml", "");
    t.write(
        "m/svc.json",
        r#"{"id": "web", "kind": "Service", "port": 80, "selector": {"app": "web"}, "sesionAffinity": "None"}"#,
    );
    let r = t.drover(&["validate", "m"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("unknown field `sesionAffinity`; did you mean `sessionAffinity`?"),
        "{}",
        r.stderr
    );
    let read = drover::manifest::read(
        &files_of(&t.join("m")),
        &Options {
            validate: Validate::Ignore,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(read.warnings.is_empty());
    assert_eq!(read.desired.objects.len(), 1);
}

#[test]
fn privileged_containers_need_the_config_flag() {
    let t = TestDir::new();
    t.write(
        "m/p.yaml",
        "id: p\nkind: Pod\ndesiredState:\n  manifest:\n    containers:\n    - name: c\n      image: busybox\n      privileged: true\n",
    );
    let r = t.drover(&["validate", "m"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("m/p.yaml:8:19: desiredState.manifest.containers[0].privileged: privileged containers are forbidden: set `allow_privileged = true`"),
        "{}",
        r.stderr
    );
    t.write("drover.toml", "allow_privileged = true\n");
    t.drover(&["validate", "m"]).expect_code(0);
}
