//! A damaged store stops `apply`, `diff` and the daemon before anything changes (issue 10):
//! on the real cluster, a truncated `state.json` and a flipped byte in an applied record each
//! make all three refuse with an error naming the file, and the pod's containers stay exactly
//! as they were.

mod common;
use common::cluster::{cluster, docker, steady};
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POD: &str = "store-damage-probe";

fn pod(command: &str) -> String {
    format!(
        r#"{{"kind":"Pod","id":"{POD}","desiredState":{{"manifest":{{"version":"v1beta1","id":"{POD}",
        "containers":[{{"name":"main","image":"drover/busybox:latest","command":["sh","-c","{command}"]}}]}}}}}}"#
    )
}

/// Every container of the probe pod on every minion, with its id: "minion id name".
fn containers() -> Vec<String> {
    let mut all = Vec::new();
    for m in ["m1", "m2", "m3"] {
        let out = docker(
            m,
            &[
                "ps",
                "-a",
                "--format",
                "{{.ID}} {{.Names}}",
                "--filter",
                &format!("name={POD}"),
            ],
        );
        all.extend(out.lines().map(|l| format!("{m} {l}")));
    }
    all.sort();
    all
}

/// Removes the probe's containers whatever happens, so the shared cluster stays clean.
struct Cleanup;
impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in containers() {
            let mut parts = c.split(' ');
            let (m, id) = (parts.next().unwrap(), parts.next().unwrap());
            docker(m, &["rm", "-f", id]);
        }
    }
}

/// A daemon stopped when the test ends, also when it fails.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the daemon and expects it to stop on its own, with an error, within the deadline.
fn daemon_refuses(t: &TestDir) -> String {
    let log = std::fs::File::create(t.join("daemon.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .env("NO_COLOR", "1")
        .args(["daemon", "--resync", "1", "--listen", "127.0.0.1:0"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon kept running on a damaged store");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2));
    std::fs::read_to_string(t.join("daemon.log")).unwrap()
}

/// apply, diff and the daemon each refuse, naming `file`, and no container changes.
fn all_refuse(t: &TestDir, file: &str) {
    let before = containers();
    let r = t.drover(&["apply", "--yes"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains(file) && r.stderr.contains("damaged"),
        "{}",
        r.stderr
    );
    let r = t.drover(&["diff"]);
    r.expect_code(2);
    assert!(r.stderr.contains(file), "{}", r.stderr);
    let log = daemon_refuses(t);
    assert!(log.contains(file), "{log}");
    assert_eq!(
        containers(),
        before,
        "a container changed on a damaged store"
    );
}

#[test]
fn a_damaged_store_stops_apply_diff_and_the_daemon_before_any_container_changes() {
    let c = cluster();
    let _g = steady();
    let _cleanup = Cleanup;
    let t = TestDir::new();
    t.write("drover.toml", &std::fs::read_to_string(&c.config).unwrap());
    t.write("manifests/probe.json", &pod("sleep 3600"));
    t.drover(&["apply", "--yes"]).expect_code(0);
    // One pod of one container, with no infra container (it has no ports).
    assert_eq!(containers().len(), 1, "{:?}", containers());
    // A changed manifest: apply would replace the pod if it went ahead.
    t.write("manifests/probe.json", &pod("sleep 3601"));

    let record = t
        .join("state/objects/applied/pods")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&record).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&record, &flipped).unwrap();
    let name = record.file_name().unwrap().to_str().unwrap().to_string();
    all_refuse(&t, &name);
    std::fs::write(&record, &good).unwrap();

    let index = t.join("state/state.json");
    let text = std::fs::read(&index).unwrap();
    std::fs::write(&index, &text[..text.len() / 2]).unwrap();
    all_refuse(&t, "state.json");

    // A lost index beside its objects is damage too, not a new, empty store.
    std::fs::remove_file(&index).unwrap();
    all_refuse(&t, "state.json");
    let r = t.drover(&["diff"]);
    assert!(r.stderr.contains("the index was lost"), "{}", r.stderr);
    std::fs::write(&index, &text).unwrap();
}

#[test]
fn a_store_damaged_while_the_daemon_runs_stops_its_rounds_before_any_container_changes() {
    let c = cluster();
    // Alone: the other test here makes a pod of the same name.
    let _g = common::cluster::disrupt();
    let _cleanup = Cleanup;
    let t = TestDir::new();
    t.write("drover.toml", &std::fs::read_to_string(&c.config).unwrap());
    t.write("manifests/probe.json", &pod("sleep 3600"));
    t.drover(&["apply", "--yes"]).expect_code(0);
    let log = std::fs::File::create(t.join("daemon.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .env("NO_COLOR", "1")
        .args(["daemon", "--resync", "1", "--listen", "127.0.0.1:0"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Stopped whatever happens (before `_cleanup` runs), or it would make its pod again.
    let mut child = KillOnDrop(child);
    let read_log = || std::fs::read_to_string(t.join("daemon.log")).unwrap_or_default();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the daemon's first round", &|| {
        read_log().contains("status API")
    });
    let before = containers();
    // Damage an applied record, then change the manifest: a healthy daemon would replace the
    // pod; this one must not act at all.
    let record = t
        .join("state/objects/applied/pods")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&record).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&record, &bytes).unwrap();
    t.write("manifests/probe.json", &pod("sleep 3602"));
    let refused = || read_log().matches("until it is repaired").count();
    wait("a refused round", &|| refused() >= 1);
    // Three more resyncs refused without a word more (said once, again only after a
    // back-off) and without a change on any minion.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            containers(),
            before,
            "a container changed on a damaged store"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(refused(), 1, "{}", read_log());
    child.stop();
    let name = record.file_name().unwrap().to_str().unwrap().to_string();
    assert!(read_log().contains(&name), "{}", read_log());
    assert_eq!(
        containers(),
        before,
        "a container changed on a damaged store"
    );
}
