//! `drover daemon` on the real cluster: it brings the example app up from a watched directory,
//! repairs a container removed by hand, applies a saved edit within seconds, replaces the pods
//! of a killed minion within the grace period plus 15 s and removes the surplus when it returns,
//! ignores an invalid source, and stops cleanly on SIGTERM.

mod common;
use common::cluster::{cluster, disrupt, testbed, Revive};
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn docker(minion: &str, args: &[&str]) -> String {
    let socket = format!("unix://{}/{minion}/docker.sock", cluster().dir.display());
    let out = Command::new("docker")
        .arg("-H")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (minion, container name) of every running web app container.
fn web() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for m in ["m1", "m2", "m3"] {
        let names = docker(
            m,
            &[
                "ps",
                "--filter",
                "label=io.drover.container=httpd",
                "--format",
                "{{.Names}}",
            ],
        );
        all.extend(names.lines().map(|n| (m.to_string(), n.to_string())));
    }
    all.sort();
    all
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; web = {:?}",
            web()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
fn the_daemon_converges_repairs_drift_and_handles_node_loss() {
    let c = cluster();
    let _g = disrupt();
    let t = TestDir::new();
    t.copy_manifests("manifests");
    t.write("drover.toml", &std::fs::read_to_string(&c.config).unwrap());
    let log = std::fs::File::create(t.join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .args(["daemon", "--resync", "2", "--node-grace", "3"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(t.join("daemon.log")).unwrap_or_default();

    wait_until("2 web replicas", Duration::from_secs(30), || {
        web().len() == 2
    });

    // A container removed by hand comes back at the next resync.
    let (m, name) = web()[0].clone();
    docker(&m, &["rm", "-f", &name]);
    wait_until(
        "the removed replica to be replaced",
        Duration::from_secs(10),
        || web().len() == 2 && !web().iter().any(|w| w.1 == name),
    );

    // A saved edit is applied at once (the watch, not the resync).
    let file = t.join("manifests/web-controller.json");
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&file).unwrap().replace(from, to);
        std::fs::write(&file, text).unwrap();
    };
    edit("\"replicas\": 2", "\"replicas\": 3");
    let took = wait_until("the third replica", Duration::from_secs(10), || {
        web().len() == 3
    });
    eprintln!("file saved -> new replica running: {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Node loss: m2's replicas run elsewhere within grace (3 s) + 15 s.
    let on_m2 = web().iter().filter(|w| w.0 == "m2").count();
    {
        let _revive = Revive(2);
        testbed(&["kill", "2"]);
        wait_until(
            "replacements for m2's replicas",
            Duration::from_secs(18),
            || web().iter().filter(|w| w.0 != "m2").count() == 3,
        );
    }
    // m2 is back with its old replica: the surplus goes.
    if on_m2 > 0 {
        wait_until("the surplus to be removed", Duration::from_secs(20), || {
            web().len() == 3
        });
    }

    // An invalid source changes nothing.
    let before = web();
    t.write("manifests/broken.json", "{\"kind\": \"Pod\"");
    edit("\"replicas\": 3", "\"replicas\": 1");
    wait_until(
        "the invalid source to be reported",
        Duration::from_secs(10),
        || log().contains("keeping the last valid state"),
    );
    std::thread::sleep(Duration::from_millis(2500)); // one resync passes: still nothing changes
    assert_eq!(web(), before);

    // Valid again and empty: everything is pruned.
    std::fs::remove_file(t.join("manifests/broken.json")).unwrap();
    for f in ["web-controller.json", "web-service.json", "backend.toml"] {
        std::fs::remove_file(t.join("manifests").join(f)).unwrap();
    }
    t.write(
        "manifests/empty.json",
        "{\"kind\": \"List\", \"items\": []}",
    );
    wait_until("everything to be pruned", Duration::from_secs(15), || {
        web().is_empty()
    });

    // SIGTERM: a clean stop.
    let pid = daemon.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", log());
    assert!(log().contains("drover daemon: stopped"));
}
