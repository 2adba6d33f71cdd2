//! `imagePullPolicy` and lifecycle hooks on the real cluster, which has no registry (images are
//! made with `docker import` and tagged `:latest`, as drover's users often make theirs):
//! a postStart hook runs right after its container starts (its file read back with
//! `drover exec`, and in a hostDir volume), a preStop hook runs before the pod is removed (read
//! from the hostDir after the deletion), a failing postStart kills the container and backs off
//! (restart policy always) or leaves the pod Failed (never), with events; PullNever with an
//! absent image fails with ErrImageNeverPull and backs off; PullAlways (the `:latest` default)
//! runs the minion's image with one warning per minion, not per pod; PullIfNotPresent is
//! unchanged.

mod common;
use common::cluster::{project_dir, steady};
use common::TestDir;
use std::time::{Duration, Instant};

fn events(t: &TestDir) -> Vec<serde_json::Value> {
    let r = t.drover(&["get", "events", "-o", "json"]);
    let list: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    list["items"].as_array().unwrap().clone()
}

fn of<'a>(events: &'a [serde_json::Value], pod: &str, reason: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .collect()
}

fn pods(t: &TestDir) -> Vec<serde_json::Value> {
    let r = t.drover(&["get", "pods", "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    v["items"].as_array().unwrap().clone()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A pod whose container runs `sleep`, with the given extra container fields and restart
/// policy, a hostDir volume at `host` mounted on /host.
fn pod(id: &str, policy: &str, extra: &str, host: &str) -> String {
    format!(
        r#"{{"kind": "Pod", "apiVersion": "v1beta1", "id": "{id}",
  "desiredState": {{"manifest": {{"version": "v1beta1", "id": "{id}",
    "restartPolicy": {{"{policy}": {{}}}},
    "volumes": [{{"name": "host", "source": {{"hostDir": {{"path": "{host}"}}}}}}],
    "containers": [{{"name": "main", "image": "drover/busybox:latest",
      "command": ["sh", "-c", "echo main >> /host/log; exec sleep 3600"],
      "volumeMounts": [{{"name": "host", "mountPath": "/host"}}]{extra}}}]}}}}}}"#
    )
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn post_start_runs_after_the_start_and_pre_stop_before_the_removal() {
    let _g = steady();
    let (t, _p) = project_dir();
    let host = t.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let hooks = r#",
      "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /tmp/post-start; echo postStart >> /host/log"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "kill -0 1 && echo preStop while running >> /host/log"]}}}"#;
    t.write(
        "manifests/hooked.json",
        &pod("hooked", "always", hooks, host.to_str().unwrap()),
    );
    let r = t.drover(&["apply", "--timeout", "60"]);
    r.expect_code(0);
    // No warning that hooks are not run.
    assert!(!r.stderr.contains("does not run"), "{}", r.stderr);
    // The hook ran when apply returned: drover waits for it before the pod counts as made.
    let log = read(&host.join("log"));
    assert!(log.contains("postStart\n"), "{log:?}");
    let read_back = t.drover(&["exec", "hooked", "--", "cat", "/tmp/post-start"]);
    read_back.expect_code(0);
    assert_eq!(read_back.stdout, "started\n");
    assert!(!log.contains("preStop"), "{log:?}");

    // Deleted: the preStop hook runs first, while the container still runs.
    t.write("manifests/hooked.json", r#"{"kind": "List", "items": []}"#);
    t.drover(&["apply", "--allow-empty", "--timeout", "60"])
        .expect_code(0);
    assert!(pods(&t).is_empty());
    let log = read(&host.join("log"));
    assert!(log.ends_with("preStop while running\n"), "{log:?}");
    assert_eq!(log.matches("preStop").count(), 1, "{log:?}");
}

#[test]
fn an_http_get_pre_stop_reaches_the_pod_before_it_is_removed() {
    let _g = steady();
    let (t, _p) = project_dir();
    let host = t.join("host");
    std::fs::create_dir_all(&host).unwrap();
    // busybox httpd with a CGI script that notes the call in the hostDir.
    let script = r#"mkdir -p /w/cgi-bin && printf '#!/bin/sh\\necho preStop over http >> /host/log\\necho Content-Type: text/plain\\necho\\necho bye\\n' > /w/cgi-bin/quit && chmod +x /w/cgi-bin/quit && exec httpd -f -p 80 -h /w"#;
    t.write(
        "manifests/web.json",
        &format!(
            r#"{{"kind": "Pod", "apiVersion": "v1beta1", "id": "web-hook",
  "desiredState": {{"manifest": {{"version": "v1beta1",
    "volumes": [{{"name": "host", "source": {{"hostDir": {{"path": "{}"}}}}}}],
    "containers": [{{"name": "httpd", "image": "drover/busybox:latest",
      "command": ["sh", "-c", "{script}"],
      "ports": [{{"name": "http", "containerPort": 80}}],
      "volumeMounts": [{{"name": "host", "mountPath": "/host"}}],
      "lifecycle": {{"preStop": {{"httpGet": {{"path": "/cgi-bin/quit", "port": "http"}}}}}}}}]}}}}}}"#,
            host.display()
        ),
    );
    t.drover(&["apply", "--timeout", "60"]).expect_code(0);
    // Serving before it goes (the hook needs the server up, as a real one would be).
    wait_until("httpd to serve", Duration::from_secs(20), || {
        t.drover(&[
            "exec",
            "web-hook",
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1/cgi-bin/quit",
        ])
        .stdout
        .contains("bye")
    });
    std::fs::remove_file(host.join("log")).unwrap();
    t.write("manifests/web.json", r#"{"kind": "List", "items": []}"#);
    t.drover(&["apply", "--allow-empty", "--timeout", "60"])
        .expect_code(0);
    assert_eq!(read(&host.join("log")), "preStop over http\n");
    let all = events(&t);
    assert!(
        of(&all, "web-hook", "FailedPreStopHook").is_empty(),
        "{all:#?}"
    );
}

#[test]
fn a_failing_post_start_kills_the_container_and_its_restart_policy_decides() {
    let _g = steady();
    let (t, p) = project_dir();
    let host = t.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let failing = r#",
      "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo no luck; exit 3"]}}}"#;
    t.write(
        "manifests/always.json",
        &pod("hook-always", "always", failing, host.to_str().unwrap()),
    );
    t.write(
        "manifests/never.json",
        &pod("hook-never", "never", failing, host.to_str().unwrap()),
    );
    let r = t.drover(&["apply", "--timeout", "20"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("not converged after 20s")
            && r.stderr.contains("postStart hook of container main failed"),
        "{}",
        r.stderr
    );
    let all = events(&t);
    // always: killed, removed, made again after a back-off.
    let failed = of(&all, "hook-always", "FailedPostStartHook");
    assert_eq!(failed.len(), 1, "{all:#?}");
    let message = failed[0]["message"].as_str().unwrap();
    assert!(
        message
            .contains("container main failed: sh -c echo no luck; exit 3 exited with 3: no luck")
            && message.contains("container killed"),
        "{message}"
    );
    assert!(
        failed[0]["count"].as_u64().unwrap() >= 2,
        "tried again: {all:#?}"
    );
    let backoffs = of(&all, "hook-always", "BackOff");
    assert!(
        backoffs.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("PostStartHookError: trying again in 5s")),
        "{all:#?}"
    );
    // never: killed and left; the pod is Failed and not made again.
    let never = of(&all, "hook-never", "FailedPostStartHook");
    assert_eq!(never.len(), 1, "{all:#?}");
    assert_eq!(never[0]["count"], 1, "{all:#?}");
    let listed = pods(&t);
    let phase = |id: &str| {
        listed
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["currentState"]["phase"].clone())
    };
    assert_eq!(phase("hook-never"), Some("Failed".into()), "{listed:#?}");
    // The always pod's containers are gone while it waits (nothing half-made is left; one
    // whose removal Docker had already under way may take a moment to go).
    let filter = "label=io.drover.pod=hook-always".to_string();
    for m in ["m1", "m2", "m3"] {
        let left = || {
            common::cluster::docker(
                m,
                &[
                    "ps",
                    "-a",
                    "--format",
                    "{{.ID}} {{.Status}}",
                    "--filter",
                    &common::cluster::of_project(&p),
                    "--filter",
                    &filter,
                ],
            )
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !left().trim().is_empty() {
            assert!(Instant::now() < deadline, "{m}: {}", left());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    t.write("manifests/always.json", r#"{"kind": "List", "items": []}"#);
    std::fs::remove_file(t.join("manifests/never.json")).unwrap();
    t.drover(&["apply", "--allow-empty", "--timeout", "60"])
        .expect_code(0);
}

#[test]
fn a_liveness_restart_runs_pre_stop_before_and_post_start_after() {
    let _g = steady();
    let (t, _p) = project_dir();
    let host = t.join("host");
    std::fs::create_dir_all(&host).unwrap();
    // Sick while /host/sick exists; the preStop hook cures it, so the restart recovers.
    let extra = r#",
      "livenessProbe": {"exec": {"command": ["sh", "-c", "test ! -e /host/sick"]}},
      "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "echo postStart >> /host/log"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo preStop >> /host/log; rm /host/sick"]}}}"#;
    t.write(
        "manifests/probed.json",
        &pod("probed", "always", extra, host.to_str().unwrap()),
    );
    // Never passes its probe: restarted again and again, never ready.
    let doomed = r#",
      "livenessProbe": {"exec": {"command": ["false"]}}"#;
    let elsewhere = t.join("doomed");
    std::fs::create_dir_all(&elsewhere).unwrap();
    t.write(
        "manifests/doomed.json",
        &pod("doomed", "always", doomed, elsewhere.to_str().unwrap()),
    );
    let daemon = common::daemon::Daemon::start(&t, &[]);
    let log = host.join("log");
    wait_until("the first start", Duration::from_secs(60), || {
        read(&log).contains("postStart\n")
    });
    std::fs::write(host.join("sick"), "").unwrap();
    wait_until("the restart and its hooks", Duration::from_secs(60), || {
        read(&log).matches("postStart").count() == 2
    });
    let lines: Vec<String> = read(&log).lines().map(str::to_string).collect();
    let at = |what: &str, nth: usize| {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| *l == what)
            .nth(nth)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no {what} #{nth} in {lines:?}"))
    };
    assert_eq!(
        lines.iter().filter(|l| *l == "preStop").count(),
        1,
        "{lines:?}\n{}",
        daemon.log()
    );
    assert!(
        at("preStop", 0) < at("main", 1),
        "preStop before the restart: {lines:?}"
    );
    assert!(at("preStop", 0) < at("postStart", 1), "{lines:?}");
    assert!(!host.join("sick").exists());
    // get pods counts the liveness restart (Docker's restart API does not): RESTARTS 1; and
    // a pod whose probe never passes is not READY, however Docker sees it.
    let column = |pod: &str, name: &str| {
        let r = t.drover(&["get", "pods", pod, "-o", "wide"]);
        let mut lines = r.stdout.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        let row: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        let at = header.iter().position(|h| *h == name);
        at.and_then(|i| row.get(i).cloned()).unwrap_or_default()
    };
    wait_until(
        "RESTARTS to count the restart",
        Duration::from_secs(30),
        || column("probed", "RESTARTS") == "1",
    );
    // Ready again once its probe passes after the restart.
    wait_until(
        "the restarted pod to be ready",
        Duration::from_secs(30),
        || column("probed", "READY") == "1/1",
    );
    wait_until(
        "the doomed pod's restarts while never ready",
        Duration::from_secs(60),
        || {
            column("doomed", "READY") == "0/1"
                && column("doomed", "RESTARTS").parse::<u32>().unwrap_or(0) >= 1
        },
    );
    drop(daemon);
    std::fs::remove_file(t.join("manifests/doomed.json")).unwrap();
    t.write("manifests/probed.json", r#"{"kind": "List", "items": []}"#);
    t.drover(&["apply", "--allow-empty", "--timeout", "60"])
        .expect_code(0);
}

#[test]
fn pull_policies_on_a_cluster_without_a_registry() {
    let _g = steady();
    let (t, _p) = project_dir();
    // PullAlways (the default of a `:latest` image) on six replicas over three minions: the
    // pull fails (no registry), the minion's image runs, one warning per minion at most.
    t.write(
        "manifests/latest.json",
        r#"{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "latest",
  "desiredState": {"replicas": 6, "replicaSelector": {"app": "latest"},
    "podTemplate": {"labels": {"app": "latest"}, "desiredState": {"manifest": {"version": "v1beta1",
      "containers": [{"name": "c", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}]}}}}}"#,
    );
    // PullIfNotPresent, said explicitly: runs the minion's image, no pull, no warning.
    t.write(
        "manifests/present.json",
        r#"{"kind": "Pod", "apiVersion": "v1beta1", "id": "present",
  "desiredState": {"manifest": {"version": "v1beta1",
    "containers": [{"name": "c", "image": "drover/busybox:latest", "imagePullPolicy": "PullIfNotPresent",
                    "command": ["sleep", "3600"]}]}}}"#,
    );
    // PullNever with the image there: runs.
    t.write(
        "manifests/never-present.json",
        r#"{"kind": "Pod", "apiVersion": "v1beta1", "id": "never-present",
  "desiredState": {"manifest": {"version": "v1beta1",
    "containers": [{"name": "c", "image": "drover/busybox:latest", "imagePullPolicy": "PullNever",
                    "command": ["sleep", "3600"]}]}}}"#,
    );
    let started = Instant::now();
    let r = t.drover(&["apply", "--timeout", "60"]);
    let took = started.elapsed();
    r.expect_code(0);
    eprintln!("apply of 8 pods, PullAlways with no registry: {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "a failing pull is fast: {took:?}"
    );
    let all = events(&t);
    let warned: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["reason"] == "FailedToPull")
        .collect();
    assert!(
        (1..=3).contains(&warned.len()),
        "one warning per minion, not per pod: {warned:#?}"
    );
    for w in &warned {
        let m = w["message"].as_str().unwrap();
        assert!(
            m.contains("cannot pull image drover/busybox:latest")
                && m.ends_with("using the image present on the minion")
                && w["type"] == "Warning"
                && w["count"] == 1,
            "{w:#?}"
        );
        assert!(
            w["involvedObject"]["name"]
                .as_str()
                .unwrap()
                .starts_with("latest-"),
            "{w:#?}"
        );
    }
    let listed = pods(&t);
    assert_eq!(listed.len(), 8, "{listed:#?}");
    assert!(
        listed
            .iter()
            .all(|p| p["currentState"]["phase"] == "Running"),
        "{listed:#?}"
    );

    // PullNever with an absent image: the clear reason, and a back-off.
    t.write(
        "manifests/never-absent.json",
        r#"{"kind": "Pod", "apiVersion": "v1beta1", "id": "never-absent",
  "desiredState": {"manifest": {"version": "v1beta1",
    "containers": [{"name": "c", "image": "drover/not-here:1", "imagePullPolicy": "PullNever"}]}}}"#,
    );
    let r = t.drover(&["apply", "--timeout", "20"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("ErrImageNeverPull: image drover/not-here:1 is not present on the minion")
            && r.stderr.contains("not converged after 20s"),
        "{}",
        r.stderr
    );
    let all = events(&t);
    let failed = of(&all, "never-absent", "FailedToPull");
    assert_eq!(failed.len(), 1, "{all:#?}");
    assert!(
        failed[0]["count"].as_u64().unwrap() >= 2,
        "backed off and tried again: {all:#?}"
    );
    assert!(
        of(&all, "never-absent", "BackOff")
            .iter()
            .any(|e| e["message"]
                .as_str()
                .unwrap()
                .starts_with("ErrImageNeverPull: trying again in 5s")),
        "{all:#?}"
    );
    let got = t.drover(&["get", "pods"]);
    assert!(
        got.stdout
            .lines()
            .any(|l| l.starts_with("never-absent ") && l.contains("ErrImageNeverPull")),
        "{}",
        got.stdout
    );

    t.write("manifests/latest.json", r#"{"kind": "List", "items": []}"#);
    for f in ["present", "never-present", "never-absent"] {
        std::fs::remove_file(t.join(&format!("manifests/{f}.json"))).unwrap();
    }
    t.drover(&["apply", "--allow-empty", "--timeout", "60"])
        .expect_code(0);
}
