//! Three hundred hollow minions (`tests/cluster/hollow`: real sshds, one fake Docker Engine
//! process), driven as real ones: what must not break as the number of minions grows.
//!
//! - every handshake paced under a default sshd's `MaxStartups` (no sshd drops one);
//! - apply places every pod, spread over every minion, and planning again gives nothing;
//! - the daemon's threads do not grow with the minions, and it holds at most 3 file
//!   descriptors per minion;
//! - a minion that stops answering is named, and costs the others nothing.
//!
//! Speed at 100, 300 and 1,000 minions is measured by `cargo bench --bench scale`.

mod common;

use common::daemon::{body, http, Daemon};
use common::TestDir;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MINIONS: usize = 300;
const RCS: usize = 9;
const REPLICAS: usize = 100;

fn hollow(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(common::project().join("tests/cluster/hollow"))
        .args(args)
        .env("DROVER_HOLLOW_DIR", dir)
        .env("HOLLOW_ENGINE", common::hollow::engine())
        .output()
        .expect("run tests/cluster/hollow");
    assert!(
        out.status.success(),
        "hollow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rc(id: &str, replicas: usize) -> String {
    format!(
        r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "{id}",
  "desiredState": {{"replicas": {replicas}, "replicaSelector": {{"name": "{id}"}},
    "podTemplate": {{"labels": {{"name": "{id}", "tier": "scale"}},
      "desiredState": {{"manifest": {{"version": "v1beta1", "id": "{id}", "containers": [
        {{"name": "app", "image": "hollow/app:1", "ports": [{{"containerPort": 80}}]}}]}}}}}}}},
  "labels": {{"name": "{id}"}}}}"#
    )
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn three_hundred_minions_are_driven_within_bounds() {
    let t = TestDir::new();
    let hollow_dir = t.join("hollow");
    let _down = common::hollow::Down(hollow_dir.clone());
    let toml = hollow(&hollow_dir, &["up", &MINIONS.to_string()]);
    t.write(
        "drover.toml",
        &format!("project = \"scale-test\"\nstate_dir = \"state\"\n{toml}"),
    );
    for i in 1..=RCS {
        t.write(
            &format!("manifests/rc{i}.json"),
            &rc(&format!("rc{i}"), REPLICAS),
        );
    }
    let pods = RCS * REPLICAS;

    let apply = t.drover(&["apply", "--timeout", "300"]);
    assert_eq!(apply.code, 0, "apply: {}\n{}", apply.stdout, apply.stderr);

    // No sshd dropped a handshake: drover paced them under OpenSSH's default MaxStartups.
    for e in std::fs::read_dir(hollow_dir.join("sshd")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "log") {
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(
                !log.contains("MaxStartups") && !log.contains("drop connection"),
                "{} dropped connections:\n{log}",
                path.display()
            );
        }
    }

    // Every pod placed and running, spread over every minion; planning again finds nothing.
    let got = t.drover(&["get", "pods", "-o", "json"]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    let list: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    let items = list["items"].as_array().expect("a pod list");
    assert_eq!(items.len(), pods, "every pod is there");
    let mut per_minion = std::collections::BTreeMap::<String, usize>::new();
    for p in items {
        assert_eq!(p["currentState"]["status"], "Running", "{p}");
        let host = p["currentState"]["host"].as_str().unwrap_or("").to_string();
        *per_minion.entry(host).or_default() += 1;
    }
    assert_eq!(
        per_minion.len(),
        MINIONS,
        "pods on every minion: {per_minion:?}"
    );
    assert!(
        per_minion.values().all(|&n| n == pods / MINIONS),
        "spread evenly: {per_minion:?}"
    );
    let diff = t.drover(&["diff"]);
    assert_eq!(
        diff.code, 0,
        "apply then diff finds nothing:\n{}",
        diff.stdout
    );

    // The daemon: its threads and descriptors do not grow with the minions.
    // A resync far away: only the node controller's own wake-up can replace a lost minion's pods.
    let daemon = Daemon::spawn(
        &t,
        &[
            "daemon",
            "--resync",
            "3600",
            "--node-grace",
            "5",
            "--listen",
            "127.0.0.1:0",
        ],
        "daemon.log",
    );
    let addr = daemon.status_addr();
    wait_until("the daemon's first round", Duration::from_secs(120), || {
        http(&addr, "GET", "/readyz", &[])
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
    let pid = daemon.pid();
    let threads = proc_status(pid, "Threads:");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(
        threads < 64,
        "{threads} threads for {MINIONS} minions: the SSH I/O is a fixed pool"
    );
    assert!(
        fds <= 3 * MINIONS,
        "{fds} open descriptors for {MINIONS} minions (at most 3 each)"
    );

    // A minion that stops answering is named not ready, the others stay ready, and once its
    // grace is over its pods run elsewhere.
    let on_m7 = per_minion["m7"];
    hollow(&hollow_dir, &["fault", "m7", "hang"]);
    http(&addr, "POST", "/reconcile", &[]);
    wait_until(
        "m7's pods running elsewhere",
        Duration::from_secs(90),
        || {
            let answer = http(&addr, "GET", "/status", &[]);
            let status: serde_json::Value = serde_json::from_str(body(&answer)).ok()?;
            let minions = status["minions"].as_array()?;
            let down: Vec<&str> = minions
                .iter()
                .filter(|m| m["ready"] != true)
                .filter_map(|m| m["name"].as_str())
                .collect();
            let elsewhere = status["pods"]
                .as_array()?
                .iter()
                .filter(|p| p["minion"] != "m7" && p["phase"] == "Running")
                .count();
            (minions.len() == MINIONS && down == ["m7"] && elsewhere == pods).then_some(())
        },
    );
    assert!(on_m7 > 0);
    hollow(&hollow_dir, &["fault", "m7", "heal"]);
}
