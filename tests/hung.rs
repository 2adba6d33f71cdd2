//! A minion whose engine stops answering (its dockerd SIGSTOPped, as a deadlocked dockerd
//! would): `apply --timeout` returns at its deadline naming the minion and the calls it waited
//! on, the other minions' pods are made in the same run, and drover burns no CPU while it waits.
//! Runs on the shared cluster (`tests/common/cluster.rs`); the stopped dockerd is resumed by a
//! Drop guard, also when a test fails.

mod common;
use common::cluster::{cluster, disrupt, docker, of_project, project_dir};
use common::daemon::Daemon;
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Six replicas: the scheduler spreads them two to a minion.
fn spread_rc() -> &'static str {
    r#"{"id": "spread", "kind": "ReplicationController", "apiVersion": "v1beta1",
  "desiredState": {"replicas": 6, "replicaSelector": {"app": "spread"},
    "podTemplate": {"labels": {"app": "spread"}, "desiredState": {"manifest": {
      "version": "v1beta1", "id": "spread",
      "containers": [{"name": "c", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}]}}}}}"#
}

fn dockerd_pid(minion: &str) -> i32 {
    std::fs::read_to_string(cluster().dir.join(minion).join("docker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Stops a dockerd; resumes it when dropped, even while a failed test unwinds.
struct Stopped(i32);

impl Stopped {
    fn now(pid: i32) -> Stopped {
        let guard = Stopped(pid);
        // SAFETY: kill(2) touches no memory of ours.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        guard
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) touches no memory of ours.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// CPU seconds (user + system) of the children this process has waited for.
fn children_cpu() -> f64 {
    // SAFETY: all-zero bytes are a valid rusage, and getrusage(2) writes only into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn running_apps(minion: &str, project: &str) -> usize {
    docker(
        minion,
        &[
            "ps",
            "-q",
            "--filter",
            &of_project(project),
            "--filter",
            "label=io.drover.container=c",
        ],
    )
    .lines()
    .count()
}

/// Removes the project's pods once every engine answers again.
fn clean_up(t: &TestDir) {
    std::fs::remove_file(t.join("manifests/spread.json")).unwrap();
    t.drover(&["apply", "--allow-empty", "--timeout", "120"])
        .expect_code(0);
}

#[test]
fn apply_timeout_cuts_off_a_minion_that_hangs_while_pods_are_made() {
    let _g = disrupt();
    let (t, p) = project_dir();
    t.write("manifests/spread.json", spread_rc());
    // m1's engine stops the moment it has made the first container of this project: the
    // plan has placed pods there, and their calls are in flight when it hangs.
    let socket = format!("unix://{}/m1/docker.sock", cluster().dir.display());
    let mut events = Command::new("docker")
        .args(["-H", &socket, "events", "--format", "{{.ID}}"])
        .args(["--filter", "type=container", "--filter", "event=create"])
        .args(["--filter", &of_project(&p)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first_create = std::io::BufReader::new(events.stdout.take().unwrap());
    let pid = dockerd_pid("m1");
    let stopper = std::thread::spawn(move || {
        let mut lines = first_create.lines();
        lines.next().and_then(|l| l.ok()).map(|_| Stopped::now(pid))
    });
    let cpu_before = children_cpu();
    let started = Instant::now();
    let apply = t.drover(&["apply", "--timeout", "10"]);
    let took = started.elapsed();
    let cpu = children_cpu() - cpu_before;
    let stopped = stopper.join().unwrap();
    let _ = events.kill();
    assert!(stopped.is_some(), "m1 made no container\n{}", apply.stderr);
    apply.expect_code(2);
    // Its own deadline, plus recording what it saw: not a call timeout (30 s) or more.
    assert!(
        took < Duration::from_secs(16),
        "apply --timeout 10 took {took:?}"
    );
    let err = &apply.stderr;
    assert!(err.contains("not converged after 10s"), "{err}");
    assert!(
        err.contains("drover: minion m1 (127.0.1.1) did not answer; 2 actions not done"),
        "{err}"
    );
    // The call each cut-off pod waited on is named.
    assert!(err.contains("no answer in"), "{err}");
    assert!(err.contains("container drover_"), "{err}");
    // The other minions' pods were made in that same run.
    for m in ["m2", "m3"] {
        assert_eq!(
            apply.stdout.matches(&format!(" on {m}\n")).count(),
            2,
            "{}",
            apply.stdout
        );
        assert_eq!(running_apps(m, &p), 2, "on {m}");
    }
    // Waiting on a hung engine costs no CPU (the SSH I/O thread sleeps in poll).
    assert!(cpu < 3.0, "apply used {cpu:.2} s of CPU in {took:?}");
    drop(stopped);
    let _ = events.wait();
    clean_up(&t);
}

#[test]
fn apply_timeout_names_a_minion_that_cannot_be_observed_and_changes_nothing() {
    let _g = disrupt();
    let (t, p) = project_dir();
    t.write("manifests/spread.json", spread_rc());
    let stopped = Stopped::now(dockerd_pid("m1"));
    let started = Instant::now();
    let apply = t.drover(&["apply", "--timeout", "10"]);
    let took = started.elapsed();
    drop(stopped);
    apply.expect_code(2);
    assert!(
        took < Duration::from_secs(16),
        "apply --timeout 10 took {took:?}"
    );
    let err = &apply.stderr;
    assert!(
        err.contains("minion m1 (127.0.1.1): no answer in")
            && err.contains("s to list ")
            && err.contains("; the deadline passed"),
        "{err}"
    );
    assert!(err.contains("cannot observe every minion"), "{err}");
    // One-shot apply does not guess without a minion's pods: nothing was made anywhere.
    for m in ["m2", "m3"] {
        assert_eq!(running_apps(m, &p), 0, "on {m}");
    }
    clean_up(&t);
}

#[test]
fn under_the_daemon_a_hung_engine_delays_no_repair_on_another_minion() {
    let _g = disrupt();
    let (t, p) = project_dir();
    t.write("manifests/spread.json", spread_rc());
    t.drover(&["apply", "--yes", "--timeout", "120"])
        .expect_code(0);
    // The default resync; a node grace long enough that m2's pods are not moved meanwhile.
    let daemon = Daemon::spawn(
        &t,
        &[
            "daemon",
            "--resync",
            "10",
            "--node-grace",
            "300",
            "--listen",
            "127.0.0.1:0",
        ],
        "daemon.log",
    );
    daemon.status_addr();
    let stopped = Stopped::now(dockerd_pid("m2"));
    let victim = docker(
        "m3",
        &[
            "ps",
            "-q",
            "--filter",
            &of_project(&p),
            "--filter",
            "label=io.drover.container=c",
        ],
    );
    let victim = victim.lines().next().expect("a pod on m3").to_string();
    docker("m3", &["rm", "-f", &victim]);
    let removed = Instant::now();
    // Within one resync (10 s), one bounded observation of the hung minion (5 s) and the
    // making of a container; a round that waited out m2's call timeout (30 s) takes longer.
    let deadline = removed + Duration::from_secs(20);
    while running_apps("m1", &p) + running_apps("m3", &p) < 4 {
        assert!(
            Instant::now() < deadline,
            "the pod removed on m3 was not replaced in 20 s\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The round that made it says why it did without m2.
    let said = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("minion m2") {
        assert!(Instant::now() < said, "m2 not said: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stopped);
    drop(daemon);
    clean_up(&t);
}
