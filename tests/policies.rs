//! Restart policies per the seeds' table, on the real cluster: what Docker does with a
//! container that exits, and the phase drover reports for the pod.

mod common;
use common::cluster::{cluster, steady};
use common::*;
use std::time::{Duration, Instant};

fn pod(id: &str, policy: &str, script: &str) -> String {
    format!(
        r#"{{"kind": "Pod", "id": "{id}", "desiredState": {{"manifest": {{"restartPolicy": {{"{policy}": {{}}}},
  "containers": [{{"name": "main", "image": "drover/busybox:latest", "command": ["sh", "-c", "{script}"]}}]}}}}}}"#
    )
}

fn phases(t: &TestDir) -> serde_json::Value {
    let r = t.drover(&["get", "pods", "-o", "json"]);
    serde_json::from_str(&r.stdout).unwrap()
}

fn phase_of(v: &serde_json::Value, id: &str) -> String {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .map(|p| p["currentState"]["phase"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn pod_phases_follow_the_restart_policy_table() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    t.write("drover.toml", &std::fs::read_to_string(&c.config).unwrap());
    let cases = [
        ("never-ok", "never", "exit 0", "Succeeded"),
        ("never-fail", "never", "exit 3", "Failed"),
        ("onfailure-ok", "onFailure", "exit 0", "Succeeded"),
        // Restarted by Docker after each failure: the pod stays Running.
        ("onfailure-fail", "onFailure", "sleep 1; exit 3", "Running"),
        ("always-run", "always", "sleep 3600", "Running"),
    ];
    for (id, policy, script, _) in &cases {
        t.write(&format!("manifests/{id}.json"), &pod(id, policy, script));
    }
    // apply returns once everything started; the short-lived ones then finish.
    t.drover(&["apply", "--timeout", "60"]).expect_code(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = phases(&t);
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(id, _, _, want)| phase_of(&v, id) != *want)
            .map(|(id, _, _, want)| format!("{id}: {} (want {want})", phase_of(&v, id)))
            .collect();
        if wrong.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "phases not reached: {wrong:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Finished pods are left as they are: applying again recreates nothing.
    let r = t.drover(&["apply", "--timeout", "30"]);
    assert!(
        r.stdout.contains("0 pods created, 0 deleted"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    for (id, _, _, _) in &cases {
        std::fs::remove_file(t.join(&format!("manifests/{id}.json"))).unwrap();
    }
    t.write(
        "manifests/empty.json",
        "{\"kind\": \"List\", \"items\": []}",
    );
    t.drover(&["apply", "--allow-empty"]).expect_code(0);
    assert!(phases(&t)["items"].as_array().unwrap().is_empty());
}
