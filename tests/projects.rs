//! Ownership on the real 3-minion cluster: two projects on the same minions never change each
//! other's containers; other projects' host ports count as taken; a source that reads as empty
//! prunes nothing without `--allow-empty`; emptyDir volumes go with their pods; a container of
//! a drover from before projects survives a project that never recorded it.

mod common;
use common::cluster::{cluster, docker, steady};
use common::*;

const MINIONS: [&str; 3] = ["m1", "m2", "m3"];

/// A test directory configured for the cluster as project `name` (its own state).
fn project_dir(name: &str) -> TestDir {
    let t = TestDir::new();
    let config = std::fs::read_to_string(&cluster().config).unwrap();
    t.write("drover.toml", &format!("project = \"{name}\"\n{config}"));
    std::fs::create_dir_all(t.join("manifests")).unwrap();
    t
}

/// A name no earlier run used, so leftovers of a failed run cannot matter.
fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{base}-{}-{nanos:x}", std::process::id())
}

fn rc(id: &str, replicas: u32, extra_label: &str) -> String {
    format!(
        r#"{{"id": "{id}", "kind": "ReplicationController", "apiVersion": "v1beta1",
  "desiredState": {{"replicas": {replicas}, "replicaSelector": {{"app": "{id}"}},
    "podTemplate": {{"labels": {{"app": "{id}", "v": "{extra_label}"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "{id}",
      "containers": [{{"name": "main", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}}]}}}}}}}}}}"#
    )
}

fn pod_with_port(id: &str, host_port: u16, zone: Option<&str>) -> String {
    let selector = zone
        .map(|z| format!(r#", "nodeSelector": {{"zone": "{z}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"id": "{id}", "kind": "Pod", "apiVersion": "v1beta1"{selector},
  "desiredState": {{"manifest": {{"version": "v1beta1", "id": "{id}",
    "containers": [{{"name": "main", "image": "drover/busybox:latest", "command": ["sleep", "3600"],
      "ports": [{{"containerPort": 80, "hostPort": {host_port}}}]}}]}}}}}}"#
    )
}

fn pod_with_volume(id: &str) -> String {
    format!(
        r#"{{"id": "{id}", "kind": "Pod", "apiVersion": "v1beta1",
  "desiredState": {{"manifest": {{"version": "v1beta1", "id": "{id}",
    "volumes": [{{"name": "scratch", "source": {{"emptyDir": {{}}}}}}],
    "containers": [{{"name": "main", "image": "drover/busybox:latest", "command": ["sleep", "3600"],
      "volumeMounts": [{{"name": "scratch", "mountPath": "/scratch"}}]}}]}}}}}}"#
    )
}

/// "minion id" of every container (running or not) carrying the labels, sorted.
fn containers(labels: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for m in MINIONS {
        let mut args = vec!["ps", "-a", "--no-trunc", "--format", "{{.ID}}"];
        for l in labels {
            args.push("--filter");
            args.push(l);
        }
        for id in docker(m, &args).lines() {
            all.push(format!("{m} {id}"));
        }
    }
    all.sort();
    all
}

fn of_project(name: &str) -> Vec<String> {
    containers(&[&format!("label=io.drover.project={name}")])
}

fn volumes_of(name: &str) -> Vec<String> {
    let mut all = Vec::new();
    for m in MINIONS {
        let filter = format!("label=io.drover.project={name}");
        for v in docker(m, &["volume", "ls", "-q", "--filter", &filter]).lines() {
            all.push(format!("{m} {v}"));
        }
    }
    all
}

/// A daemon stopped with SIGTERM when the test ends, also when it fails (else it would go on
/// changing the cluster under the next tests).
struct Stopped(std::process::Child);

impl Stopped {
    fn stop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) touches no memory of ours.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes everything a project made.
fn tear_down(t: &TestDir) {
    for f in std::fs::read_dir(t.join("manifests")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    t.drover(&["apply", "--allow-empty"]).expect_code(0);
}

#[test]
fn two_projects_on_the_same_minions_never_touch_each_other() {
    let _g = steady();
    let (a_name, b_name) = (unique("pa"), unique("pb"));
    let (a, b) = (project_dir(&a_name), project_dir(&b_name));
    // The same RC id and image in both: same replica ids, which must still be two sets of pods.
    a.write("manifests/backend.json", &rc("backend", 3, "one"));
    a.write(
        "manifests/hold.json",
        &pod_with_port("hold", 18181, Some("z1")),
    );
    a.drover(&["apply"]).expect_code(0);
    let a_before = of_project(&a_name);
    // Pods of one container with no port or a fixed hostPort are that one container.
    assert_eq!(
        a_before.len(),
        4,
        "3 replicas and 1 pod, one container each: {a_before:?}"
    );

    // B's dry run plans nothing against A's pods.
    b.write("manifests/backend.json", &rc("backend", 2, "one"));
    let dry = b.drover(&["apply", "--dry-run"]);
    dry.expect_code(1);
    assert!(!dry.stdout.contains("- pod"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("plan: 1 object change, 2 actions"),
        "{}",
        dry.stdout
    );

    // B applies, scales, prunes and resyncs as a daemon: A's containers stay the same ones.
    b.drover(&["apply"]).expect_code(0);
    assert_eq!(of_project(&b_name).len(), 2);
    assert_eq!(of_project(&a_name), a_before);
    b.write("manifests/backend.json", &rc("backend", 1, "two"));
    b.drover(&["apply"]).expect_code(0);
    assert_eq!(of_project(&a_name), a_before);

    // B's get pods shows only B's pods.
    let got = b.drover(&["get", "pods", "-o", "json"]);
    got.expect_code(0);
    let pods: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 1, "{}", got.stdout);

    // A hostPort A holds on m2 (the only zone z1 minion): B's pod with that port goes
    // elsewhere, and pinned to z1 it cannot be placed, with the reason.
    b.write("manifests/free.json", &pod_with_port("free", 18181, None));
    b.write(
        "manifests/pinned.json",
        &pod_with_port("pinned", 18181, Some("z1")),
    );
    let dry = b.drover(&["apply", "--dry-run"]);
    dry.expect_code(1);
    assert!(dry.stdout.contains("+ pod free on m"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("+ pod free on m2"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("! pod pinned cannot be placed")
            && dry.stdout.contains("host port taken by another project"),
        "{}",
        dry.stdout
    );
    std::fs::remove_file(b.join("manifests/pinned.json")).unwrap();
    b.drover(&["apply"]).expect_code(0);

    // A daemon round of B, then pruning everything of B.
    let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(b.path())
        .args(["daemon", "--resync", "1", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Stopped(daemon);
    // A daemon round of B repairing drift: a B container removed by hand comes back.
    let victim = of_project(&b_name)
        .into_iter()
        .find(|c| !c.is_empty())
        .unwrap();
    let (m, id) = victim.split_once(' ').unwrap();
    docker(m, &["rm", "-f", id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while of_project(&b_name).len() < 2 || of_project(&b_name).contains(&victim) {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not repair B"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    daemon.stop();
    assert_eq!(of_project(&a_name), a_before, "a daemon of B changed A");

    tear_down(&b);
    assert!(of_project(&b_name).is_empty());
    assert_eq!(of_project(&a_name), a_before, "pruning B changed A");
    tear_down(&a);
    assert!(of_project(&a_name).is_empty());
}

#[test]
fn a_source_that_reads_as_empty_prunes_nothing_without_allow_empty() {
    let _g = steady();
    let name = unique("empty");
    let t = project_dir(&name);
    t.write("manifests/backend.json", &rc("backend", 2, "one"));
    t.drover(&["apply"]).expect_code(0);
    let before = of_project(&name);
    assert_eq!(before.len(), 2);

    // An empty directory.
    std::fs::remove_file(t.join("manifests/backend.json")).unwrap();
    let r = t.drover(&["apply"]);
    r.expect_code(2);
    assert!(r.stderr.contains("has no objects"), "{}", r.stderr);
    assert!(r.stderr.contains("1 ReplicationController"), "{}", r.stderr);
    assert!(r.stderr.contains("--allow-empty"), "{}", r.stderr);
    assert_eq!(of_project(&name), before);

    // A directory of files drover does not read: named, and still refused.
    t.write("manifests/backend.json.orig", "{}\n");
    t.write("manifests/notes.txt", "hello\n");
    let r = t.drover(&["apply"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains(
            "skipped 2 files: not *.json, *.toml, *.yaml or *.yml (manifests/backend.json.orig, manifests/notes.txt)"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(of_project(&name), before);

    // A git ref whose tree is empty.
    let repo_dir = t.join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let repo = GitRepo::init(&repo_dir);
    repo.commit_all("empty");
    let r = t.drover(&["apply", "repo", "--ref", "main"]);
    r.expect_code(2);
    assert!(r.stderr.contains("repo @ main"), "{}", r.stderr);
    assert_eq!(of_project(&name), before);

    // The daemon refuses to start on it too.
    let r = t.drover(&["daemon", "--listen", "127.0.0.1:0"]);
    r.expect_code(2);
    assert!(r.stderr.contains("has no objects"), "{}", r.stderr);
    assert_eq!(of_project(&name), before);

    // Asked for, it prunes.
    t.drover(&["apply", "--allow-empty"]).expect_code(0);
    assert!(of_project(&name).is_empty());
}

#[test]
fn emptydir_volumes_go_with_their_pods() {
    let _g = steady();
    let name = unique("vol");
    let t = project_dir(&name);
    t.write("manifests/a.json", &pod_with_volume("with-scratch"));
    t.write("manifests/b.json", &pod_with_volume("other"));
    t.drover(&["apply"]).expect_code(0);
    let volumes = volumes_of(&name);
    assert_eq!(volumes.len(), 2, "{volumes:?}");
    for v in &volumes {
        let (m, v) = v.split_once(' ').unwrap();
        let labels = docker(m, &["volume", "inspect", "-f", "{{json .Labels}}", v]);
        assert!(labels.contains("\"io.drover.pod\""), "{labels}");
        assert!(
            labels.contains("\"io.drover.managed-by\":\"drover\""),
            "{labels}"
        );
    }

    // Every container of one pod removed by hand, and the pod taken out of the source: the
    // next round finds its volume without a pod and removes it.
    for c in containers(&[
        &format!("label=io.drover.project={name}"),
        "label=io.drover.pod=with-scratch",
    ]) {
        let (m, id) = c.split_once(' ').unwrap();
        docker(m, &["rm", "-f", id]);
    }
    std::fs::remove_file(t.join("manifests/a.json")).unwrap();
    let r = t.drover(&["apply"]);
    r.expect_code(0);
    assert!(r.stdout.contains("- volume"), "{}", r.stdout);
    let left = volumes_of(&name);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("_other_"), "{left:?}");

    // Pruning everything leaves no volume of the project.
    tear_down(&t);
    assert!(volumes_of(&name).is_empty(), "{:?}", volumes_of(&name));
}

#[test]
fn a_container_of_an_older_drover_survives_a_project_that_never_recorded_it() {
    let _g = steady();
    let pod = unique("old");
    let container = format!("drover_{pod}_main");
    // As drover made containers before projects: its labels, no project label, the same RC id
    // as the project below uses.
    let id = docker(
        "m1",
        &[
            "run",
            "-d",
            "--name",
            &container,
            "--label",
            "io.drover.managed-by=drover",
            "--label",
            &format!("io.drover.pod={pod}"),
            "--label",
            "io.drover.rc=backend",
            "--label",
            "io.drover.container=main",
            "drover/busybox:latest",
            "sleep",
            "3600",
        ],
    );
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "docker run: {id}");
    let name = unique("adopt");
    let t = project_dir(&name);
    t.write("manifests/backend.json", &rc("backend", 1, "one"));
    let r = t.drover(&["apply"]);
    r.expect_code(0);
    assert!(r.stderr.contains("left alone"), "{}", r.stderr);
    assert!(r.stderr.contains(&pod), "{}", r.stderr);
    t.write("manifests/backend.json", &rc("backend", 2, "two"));
    t.drover(&["apply"]).expect_code(0);
    tear_down(&t);
    let still = docker("m1", &["inspect", "-f", "{{.State.Running}}", &id]);
    assert_eq!(still.trim(), "true", "the older container was touched");
    docker("m1", &["rm", "-f", &id]);
}

#[test]
fn the_pause_image_is_imported_once_however_many_pods_start_at_once() {
    // Alone: no other test may import the pause image on m2 meanwhile.
    let _g = common::cluster::disrupt();
    let images = |filter: &str| {
        docker("m2", &["images", "-q", "--no-trunc", "--filter", filter])
            .lines()
            .count()
    };
    docker("m2", &["rmi", "-f", "drover/pause:1"]);
    let dangling = images("dangling=true");
    let name = unique("pause");
    let t = project_dir(&name);
    // Eight pods at once, all on m2 (the only minion in zone z1), each with an infra container
    // (an ephemeral host port needs one to keep it).
    t.write(
        "manifests/many.json",
        &rc("many", 8, "one")
            .replace(
                r#""podTemplate": {"#,
                r#""podTemplate": {"nodeSelector": {"zone": "z1"}, "#,
            )
            .replace(
                r#""command": ["sleep", "3600"]"#,
                r#""command": ["sleep", "3600"], "ports": [{"containerPort": 80}]"#,
            ),
    );
    t.drover(&["apply"]).expect_code(0);
    assert_eq!(of_project(&name).len(), 16);
    assert_eq!(images("reference=drover/pause:1"), 1);
    assert_eq!(
        images("dangling=true"),
        dangling,
        "untagged copies of the pause image were left behind"
    );
    tear_down(&t);
}
