//! `drover apply` on the real 3-minion cluster: the example application comes up with its pods'
//! containers sharing one network namespace, re-applying changes nothing, scaling and a
//! template change converge, and a bad manifest changes nothing on the minions; an apply killed
//! half-way and run again converges with no duplicate containers; one interrupted (SIGINT) ends
//! the calls under way, records and tells what it made, exits 130, and applying again finishes.

mod common;
use common::cluster::{disrupt, docker, of_project, project_dir, steady};
use common::*;

/// A test directory with the example app and a config for the cluster with its own state.
fn setup() -> (TestDir, String) {
    let (t, project) = project_dir();
    t.copy_manifests("manifests");
    (t, project)
}

/// Names of the project's running containers on every minion, as "minion name".
fn running(project: &str) -> Vec<String> {
    let mut all = Vec::new();
    for m in ["m1", "m2", "m3"] {
        for name in docker(
            m,
            &[
                "ps",
                "--filter",
                &of_project(project),
                "--format",
                "{{.Names}}",
            ],
        )
        .lines()
        {
            all.push(format!("{m} {name}"));
        }
    }
    all.sort();
    all
}

fn web_pods(project: &str) -> Vec<String> {
    running(project)
        .into_iter()
        .filter(|c| c.contains("_web-") && c.ends_with("_httpd"))
        .collect()
}

#[test]
fn the_example_app_comes_up_converges_and_scales() {
    let _g = steady();
    let (t, p) = setup();
    let r = t.drover(&["apply"]);
    r.expect_code(0);
    assert!(r.stdout.contains("converged in"), "{}", r.stdout);
    let web = web_pods(&p);
    assert_eq!(web.len(), 2, "{web:?}");
    assert_ne!(
        web[0].split(' ').next(),
        web[1].split(' ').next(),
        "replicas spread over minions: {web:?}"
    );

    // One pod, one network namespace: the app container reaches itself on 127.0.0.1, and its
    // port is published by the infra container on the minion's address.
    let (minion, name) = web[0].split_once(' ').unwrap();
    let page = docker(
        minion,
        &["exec", name, "wget", "-qO-", "http://127.0.0.1:80/"],
    );
    assert_eq!(page.trim(), "hello from drover");
    let infra = name.replace("_httpd", "_infra");
    let port = docker(minion, &["port", &infra, "80/tcp"]);
    assert!(
        port.starts_with(&format!("127.0.1.{}:", &minion[1..])),
        "{port}"
    );

    // get / describe / logs read the same pods back from the minions.
    let r = t.drover(&["get", "pods", "-l", "tier=web", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let pods = &list["items"];
    assert_eq!(pods.as_array().unwrap().len(), 2, "{}", r.stdout);
    assert!(pods
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["currentState"]["phase"] == "Running" && p["replicationController"] == "web"));
    let pod_id = pods[0]["id"].as_str().unwrap().to_string();
    let r = t.drover(&["get", "rc"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" 2  ")),
        "{}",
        r.stdout
    );
    let r = t.drover(&["describe", "pod", &pod_id]);
    assert!(r.stdout.contains("Phase:       Running"), "{}", r.stdout);
    assert!(
        r.stdout.contains("  httpd:\n    Image:      drover/busybox:latest\n    State:      Running\n    Started:    20")
            && r.stdout.contains("    Restarts:   0"),
        "{}",
        r.stdout
    );
    let pod_minion = pods[0]["currentState"]["host"].as_str().unwrap();
    docker(
        pod_minion,
        &[
            "exec",
            &format!("drover_{p}_{pod_id}_httpd"),
            "sh",
            "-c",
            "echo logged-line > /proc/1/fd/1",
        ],
    );
    let r = t.drover(&["logs", &pod_id]);
    r.expect_code(0);
    assert!(r.stdout.contains("logged-line"), "{}", r.stdout);
    t.write("manifests/huge.json", r#"{"kind":"Pod","id":"huge","desiredState":{"manifest":{"containers":[{"name":"c","image":"drover/busybox:latest","cpu":999000}]}}}"#);
    let r = t.drover(&["apply"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("pod huge is Pending: 0/3 minions fit: 3 insufficient cpu"),
        "{}",
        r.stderr
    );
    let r = t.drover(&["describe", "pod", "huge"]);
    assert!(
        r.stdout
            .contains("Reason:      0/3 minions fit: 3 insufficient cpu"),
        "{}",
        r.stdout
    );
    std::fs::remove_file(t.join("manifests/huge.json")).unwrap();

    // Applying again changes nothing; diff agrees.
    let r = t.drover(&["apply"]);
    assert!(
        r.stdout.contains("0 pods created, 0 deleted"),
        "{}",
        r.stdout
    );
    let r = t.drover(&["diff"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("pods: 3 last observed on 3 minions; in sync"),
        "{}",
        r.stdout
    );

    // A container removed by hand: plain diff reads the store and does not know yet; --live
    // observes, shows what apply would do, and keeps what it saw for the next plain diff.
    docker(
        pod_minion,
        &["rm", "-f", &format!("drover_{p}_{pod_id}_httpd")],
    );
    t.drover(&["diff"]).expect_code(0);
    let r = t.drover(&["diff", "--live"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains(&format!(
            "- pod {pod_id} on {pod_minion} (replica is no longer running)"
        )) && r.stdout.contains("+ pod web-")
            && r.stdout
                .contains("pods: 3 observed now on 3 minions; apply would create 1, delete 1"),
        "{}",
        r.stdout
    );
    let r = t.drover(&["diff", "-o", "json"]);
    r.expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["inSync"], false);
    assert_eq!(report["pods"]["actions"][0]["pod"], pod_id.as_str());
    t.drover(&["apply"]).expect_code(0);
    t.drover(&["diff", "--live"]).expect_code(0);

    // Scale 2 -> 3 -> 5 -> 1.
    let file = t.join("manifests/web-controller.json");
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&file).unwrap().replace(from, to);
        std::fs::write(&file, text).unwrap();
    };
    edit("\"replicas\": 2", "\"replicas\": 3");
    t.drover(&["apply"]).expect_code(0);
    assert_eq!(web_pods(&p).len(), 3);
    edit("\"replicas\": 3", "\"replicas\": 5");
    t.drover(&["apply"]).expect_code(0);
    assert_eq!(web_pods(&p).len(), 5);
    edit("\"replicas\": 5", "\"replicas\": 1");
    t.drover(&["apply"]).expect_code(0);
    assert_eq!(web_pods(&p).len(), 1);

    // A template change rolls out; the replacement runs the new template.
    edit("\"replicas\": 1", "\"replicas\": 3");
    t.drover(&["apply"]).expect_code(0);
    let before = web_pods(&p);
    edit("http://127.0.0.1:9090", "http://127.0.0.1:9091");
    let r = t.drover(&["apply"]);
    r.expect_code(0);
    assert!(r.stdout.contains("rolling update"), "{}", r.stdout);
    let after = web_pods(&p);
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every replica replaced: {before:?} -> {after:?}"
    );

    // A bad manifest: exit 2, nothing changes on the minions.
    t.write("manifests/broken.json", "{\"kind\": \"Pod\"");
    let r = t.drover(&["apply"]);
    r.expect_code(2);
    assert_eq!(web_pods(&p), after);

    // --no-prune: an RC removed from the source leaves its pods running.
    std::fs::remove_file(t.join("manifests/broken.json")).unwrap();
    let kept = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let r = t.drover(&["apply", "--no-prune"]);
    r.expect_code(0);
    assert_eq!(web_pods(&p), after, "{}", r.stdout);
    std::fs::write(&file, kept).unwrap();

    // Removing everything from the source prunes drover's containers, and only those.
    for f in ["web-controller.json", "web-service.json", "backend.toml"] {
        std::fs::remove_file(t.join("manifests").join(f)).unwrap();
    }
    t.write(
        "manifests/empty.json",
        "{\"kind\": \"List\", \"items\": []}",
    );
    t.drover(&["apply", "--allow-empty"]).expect_code(0);
    assert!(running(&p).is_empty(), "{:?}", running(&p));
}

/// Every container of the project on the minions as (minion, pod, container name).
fn containers_by_pod(project: &str) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for m in ["m1", "m2", "m3"] {
        let out = docker(
            m,
            &[
                "ps",
                "-a",
                "--filter",
                &of_project(project),
                "--format",
                "{{.Label \"io.drover.pod\"}} {{.Names}}",
            ],
        );
        for line in out.lines() {
            let (pod, name) = line.split_once(' ').unwrap();
            all.push((m.to_string(), pod.to_string(), name.to_string()));
        }
    }
    all.sort();
    all
}

#[test]
fn an_apply_killed_half_way_and_run_again_converges_without_duplicates() {
    // Alone on the cluster: 40 pods at once would crowd the others' rounds.
    let _g = disrupt();
    let (t, p) = project_dir();
    t.write(
        "manifests/crash.json",
        r#"{"kind": "ReplicationController", "id": "crash", "desiredState": {"replicas": 40,
  "replicaSelector": {"app": "crash"},
  "podTemplate": {"labels": {"app": "crash"}, "desiredState": {"manifest": {"containers": [
    {"name": "app", "image": "drover/busybox:latest", "command": ["sleep", "3600"]},
    {"name": "side", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}]}}}}}"#,
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .args(["apply", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as the first pod is reported: up to 16 (the executor's concurrency) are
    // being made right now and the rest have not started, so it cannot have finished.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().expect("a line").unwrap();
    assert!(first.starts_with("+ pod crash-"), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = containers_by_pod(&p).len();
    assert!(
        partial < 120,
        "killed before it finished: {partial} containers"
    );

    let r = t.drover(&["apply"]);
    r.expect_code(0);
    let all = containers_by_pod(&p);
    let mut pods: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (_, pod, name) in &all {
        pods.entry(pod).or_default().push(name);
    }
    assert_eq!(pods.len(), 40, "{all:?}");
    for (pod, names) in &pods {
        assert_eq!(
            names.as_slice(),
            [
                format!("drover_{p}_{pod}_app"),
                format!("drover_{p}_{pod}_infra"),
                format!("drover_{p}_{pod}_side")
            ],
            "one infra and two app containers per pod: {all:?}"
        );
    }
    t.drover(&["diff", "--live"]).expect_code(0);

    t.write(
        "manifests/crash.json",
        "{\"kind\": \"List\", \"items\": []}",
    );
    t.drover(&["apply", "--allow-empty"]).expect_code(0);
    assert!(containers_by_pod(&p).is_empty());
}

#[test]
fn an_interrupted_apply_ends_its_calls_records_them_and_says_what_is_left() {
    // Alone on the cluster, as the kill above: 60 pods at once.
    let _g = disrupt();
    let (t, p) = project_dir();
    t.write(
        "manifests/many.json",
        r#"{"kind": "ReplicationController", "id": "many", "desiredState": {"replicas": 60,
  "replicaSelector": {"app": "many"},
  "podTemplate": {"labels": {"app": "many"}, "desiredState": {"manifest": {"containers": [
    {"name": "app", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}]}}}}}"#,
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .env_remove("DROVER_CONFIG")
        .env("NO_COLOR", "1")
        .args(["apply", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted as soon as the first pod is reported: 16 a minion are under way (the
    // executor's concurrency), the rest of the 20 a minion not begun.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().expect("a line").unwrap();
    assert!(first.starts_with("+ pod many-"), "{first}");
    // SAFETY: signalling our own child, which has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let printed: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("drover: interrupted: ") && l.ends_with("apply again to finish"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let pods = |p: &str| {
        containers_by_pod(p)
            .into_iter()
            .map(|(_, pod, _)| pod)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let made = pods(&p);
    let created: usize = summary["drover: interrupted: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Calls still under way after the grace (a loaded machine) are cut off: made or not.
    let cut_off: usize = summary
        .split(", ")
        .find(|part| part.contains(" cut off after "))
        .map_or(0, |part| part.split(' ').next().unwrap().parse().unwrap());
    assert!(
        (created..=created + cut_off).contains(&made),
        "the summary counts what runs ({made} pods): {summary}"
    );
    assert_eq!(created, printed.len() + 1, "{summary}\n{printed:?}");
    assert!(
        (1..60).contains(&made) && summary.contains("not started"),
        "{summary}"
    );
    // What it made is on record: its events, and the store's view for diff.
    let events = t.drover(&["get", "events", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&events.stdout).unwrap();
    let started = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Started")
        .count();
    assert_eq!(started, created, "{}", events.stdout);

    // As it says: apply again finishes.
    t.drover(&["apply"]).expect_code(0);
    assert_eq!(pods(&p), 60);
    t.write("manifests/many.json", "{\"kind\": \"List\", \"items\": []}");
    t.drover(&["apply", "--allow-empty"]).expect_code(0);
    assert!(containers_by_pod(&p).is_empty());
}
