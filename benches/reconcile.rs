//! Benchmarks of the reconciler on the real 3-minion test cluster, each against a baseline of
//! the same run:
//!  (c) `drover apply` starting 60 pods from nothing vs the same containers (an infra and an app
//!      container per pod) started by a sequential `docker run` loop over the same minions;
//!  (b) a no-op resync of 300 pods on 3 minions (one list call per minion, and the check that
//!      the store's observed records are current);
//!  (d) the daemon: a file saved in the watched directory, and a commit to a watched git
//!      repository, to the changed pod running.
//!
//! Needs root; brings the cluster up with `tests/cluster/testbed up` and leaves it running.
//! Run: `cargo bench --bench reconcile`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rc(replicas: u32) -> String {
    format!(
        r#"{{"kind": "ReplicationController", "id": "bench", "desiredState": {{"replicas": {replicas},
  "replicaSelector": {{"app": "bench"}},
  "podTemplate": {{"labels": {{"app": "bench"}}, "desiredState": {{"manifest": {{"containers": [
    {{"name": "app", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}}]}}}}}}}}}}"#
    )
}

fn drover(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn docker(testbed: &Path, minion: usize, args: &[&str]) -> String {
    let socket = format!("unix://{}/m{minion}/docker.sock", testbed.display());
    let out = Command::new("docker")
        .arg("-H")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn running_bench_pods(testbed: &Path) -> usize {
    (1..=3)
        .map(|m| {
            docker(
                testbed,
                m,
                &["ps", "-q", "--filter", "label=io.drover.container=app"],
            )
            .lines()
            .count()
        })
        .sum()
}

fn wait(limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn main() {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(Command::new(project.join("tests/cluster/testbed"))
        .args(["up", "3"])
        .status()
        .unwrap()
        .success());
    let testbed = PathBuf::from(
        std::env::var("DROVER_TESTBED_DIR").unwrap_or_else(|_| "/tmp/drover-testbed".into()),
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::copy(testbed.join("drover.toml"), dir.join("drover.toml")).unwrap();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    let set =
        |replicas: u32| std::fs::write(dir.join("manifests/bench.json"), rc(replicas)).unwrap();

    // (c) 60 pods from nothing.
    set(60);
    let t = Instant::now();
    drover(dir, &["apply"]);
    let apply_60 = t.elapsed();
    assert_eq!(running_bench_pods(&testbed), 60);
    set(0);
    drover(dir, &["apply"]);
    let t = Instant::now();
    for i in 0..60 {
        let m = i % 3 + 1;
        let infra = format!("baseline-{i}-infra");
        docker(
            &testbed,
            m,
            &["run", "-d", "--name", &infra, "drover/pause:1", "/pause"],
        );
        let net = format!("container:{infra}");
        docker(
            &testbed,
            m,
            &[
                "run",
                "-d",
                "--name",
                &format!("baseline-{i}-app"),
                "--network",
                &net,
                "drover/busybox:latest",
                "sleep",
                "3600",
            ],
        );
    }
    let loop_60 = t.elapsed();
    for m in 1..=3 {
        let ids = docker(&testbed, m, &["ps", "-aq", "--filter", "name=baseline-"]);
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&testbed, m, &args);
        }
    }

    // (b) a no-op resync of 300 pods.
    set(300);
    drover(dir, &["apply", "--timeout", "600"]);
    let settings = drover::config::Settings::load(Some(&dir.join("drover.toml"))).unwrap();
    let spec = drover::source::SourceSpec::new(dir.join("manifests").to_str().unwrap(), None, None);
    let snapshot = drover::source::read(&spec, &Default::default()).unwrap();
    let desired = drover::manifest::desired_state(&snapshot.files).unwrap();
    let minions: Vec<_> = drover::minion::minion_specs(
        &settings,
        &settings.project(&settings.state_dir(None)).unwrap(),
        Some(&desired),
    )
    .unwrap()
    .into_iter()
    .map(|s| Arc::new(drover::minion::Minion::new(s).unwrap()))
    .collect();
    let mut reconciler = drover::reconcile::Reconciler::new(
        minions.clone(),
        Arc::new(|_: &str| None),
        Duration::from_secs(30),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // A daemon round also records what it saw (nothing, when nothing changed).
    let store = drover::store::Store::new(settings.state_dir(None));
    let lock = store.lock("bench", Duration::from_secs(10)).unwrap();
    let mut rounds = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let round = rt.block_on(reconciler.round(&desired, true, false));
        let index = store.read_index().unwrap();
        let batch = drover::plan::observed::observation_batch(&index, &round.observation());
        store.commit(&lock, &batch).unwrap();
        rounds.push(t.elapsed());
        assert_eq!(round.planned, 0, "a no-op resync plans nothing");
        assert!(batch.is_empty(), "a no-op resync records nothing");
    }
    drop(lock);
    rounds.sort();
    let resync = rounds[rounds.len() / 2];
    // Baseline of the same run: one bare list call per minion, in parallel, nothing else.
    let mut lists = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        rt.block_on(futures_util::future::join_all(
            minions.iter().map(|m| m.list_managed()),
        ));
        lists.push(t.elapsed());
    }
    lists.sort();
    let list = lists[lists.len() / 2];
    set(0);
    drover(dir, &["apply", "--timeout", "600"]);

    // (d) daemon: file save -> running, and git commit -> running.
    set(1);
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(dir)
        .args(["daemon", "--resync", "30"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait(Duration::from_secs(30), || {
        running_bench_pods(&testbed) == 1
    });
    let t = Instant::now();
    set(2);
    wait(Duration::from_secs(30), || {
        running_bench_pods(&testbed) == 2
    });
    let file_to_running = t.elapsed();
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let repo_dir = dir.join("repo");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = git2::Repository::init_opts(&repo_dir, &opts).unwrap();
    let commit = |replicas: u32| {
        std::fs::write(repo_dir.join("bench.json"), rc(replicas)).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("bench.json")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("bench", "bench@drover.invalid").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, "scale", &tree, &parents)
            .unwrap();
    };
    commit(2);
    let log = std::fs::File::create(dir.join("daemon-git.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(dir)
        .args(["daemon", "repo", "--ref", "main", "--resync", "30"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2)); // let it settle on the current commit
    let t = Instant::now();
    commit(3);
    wait(Duration::from_secs(30), || {
        running_bench_pods(&testbed) == 3
    });
    let commit_to_running = t.elapsed();
    commit(0);
    wait(Duration::from_secs(30), || {
        running_bench_pods(&testbed) == 0
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let s = |d: Duration| format!("{:>9.1} ms", d.as_secs_f64() * 1e3);
    println!("reconcile: real 3-minion cluster");
    println!(
        "  (c) sequential docker run loop, 60 pods (baseline)  {}",
        s(loop_60)
    );
    println!("      drover apply, 60 pods from nothing              {}   ({:.1}x faster; target: faster)", s(apply_60), loop_60.as_secs_f64() / apply_60.as_secs_f64());
    println!(
        "  (b) one list call per minion, in parallel (baseline) {}",
        s(list)
    );
    println!(
        "      no-op resync of 300 pods on 3 minions           {}   (target < 200 ms)",
        s(resync)
    );
    println!(
        "  (d) file saved -> changed pod running               {}   (target < 2 s)",
        s(file_to_running)
    );
    println!("      git commit -> changed pod running               {}   (target < 2 s; ref polled every 1 s)", s(commit_to_running));
}
