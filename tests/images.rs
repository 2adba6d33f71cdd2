//! Your own images on the real cluster, no registry anywhere: an image built in this machine's
//! Docker Engine (FROM the test image, plus files) goes to all three minions with only the
//! layers they lack, by `drover images push` and, for images named in `[images] push`, by
//! `apply` and the daemon before they make its pods; a rebuild that changes one file shows in
//! `diff`, sends that one layer and rolls out; a minion that has the image gets nothing; a
//! name that is nowhere is refused; a push killed mid-stream leaves no image on the minion,
//! and the next apply converges.

mod common;
use common::cluster::{docker, of_project, project_dir, steady, tear_down, testbed};
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds `tag` in the local engine from `files` (name, content) on top of the test image, one
/// layer per file.
fn build(tag: &str, files: &[(&str, &[u8])]) {
    let dir = tempfile::tempdir().unwrap();
    let mut dockerfile = String::from("FROM drover/busybox:latest\n");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
        dockerfile.push_str(&format!("COPY {name} /{name}\n"));
    }
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        // The classic builder: Docker 20.10 has no BuildKit without buildx.
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The image id `tag` has on a minion ("" when it has none).
fn id_on(minion: &str, tag: &str) -> String {
    docker(minion, &["images", "-q", "--no-trunc", tag])
        .trim()
        .to_string()
}

fn local_id(tag: &str) -> String {
    let out = Command::new("docker")
        .args(["images", "-q", "--no-trunc", tag])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's images from the local engine and the minions when dropped.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
            for m in ["m1", "m2", "m3"] {
                docker(m, &["rmi", "-f", tag]);
            }
        }
    }
}

/// The summary line of one minion in a push's output.
fn line<'a>(stdout: &'a str, minion: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{minion}: ")))
        .unwrap_or_else(|| panic!("no line for {minion}:\n{stdout}"))
}

/// The bytes a summary line says were sent ("sent 1 layer (16.9 kB)").
fn sent_bytes(line: &str) -> f64 {
    let amount = line.split(" (").nth(1).unwrap().split(')').next().unwrap();
    let (n, unit) = amount.split_once(' ').unwrap();
    let n: f64 = n.parse().unwrap();
    n * match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        _ => 1e9,
    }
}

#[test]
fn own_images_reach_every_minion_with_only_the_missing_layers() {
    let _g = steady();
    testbed(&["image"]);
    let (t, project) = project_dir();
    let tag = format!("drover-test/{project}:1");
    let _cleanup = Cleanup(vec![tag.clone()]);
    // Contents of this run only, so no minion has these layers from an earlier one.
    let one = format!("one {project}\n");
    build(&tag, &[("a.txt", one.as_bytes()), ("b.txt", b"two\n")]);

    // First push: the two new layers go everywhere; the test image's layer is there already.
    let r = t.drover(&["images", "push", &tag]);
    r.expect_code(0);
    for m in ["m1", "m2", "m3"] {
        let l = line(&r.stdout, m);
        assert!(
            l.contains("sent 2 layers") && l.contains("1 layer there already"),
            "{l}"
        );
        assert!(sent_bytes(l) < 100e3, "only the small layers: {l}");
        assert_eq!(id_on(m, &tag), local_id(&tag), "{m} holds the very image");
    }

    // It runs there, made by apply on every minion (an RC spread over the three).
    t.write(
        "manifests/app.json",
        &format!(
            r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "own",
  "desiredState": {{"replicas": 3, "replicaSelector": {{"app": "own"}},
    "podTemplate": {{"labels": {{"app": "own"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "own",
      "containers": [{{"name": "app", "image": "{tag}", "imagePullPolicy": "PullNever",
                       "command": ["sh", "-c", "cat /b.txt; exec sleep 3600"]}}]}}}}}}}}}}"#
        ),
    );
    t.drover(&["apply", "--yes"]).expect_code(0);
    for m in ["m1", "m2", "m3"] {
        let running = docker(
            m,
            &[
                "ps",
                "--filter",
                &of_project(&project),
                "--filter",
                "label=io.drover.container=app",
                "--format",
                "{{.Image}}",
            ],
        );
        assert_eq!(running.trim(), tag, "{m} runs the pushed image");
    }

    // A rebuild that changes one file: that layer alone is sent.
    build(&tag, &[("a.txt", one.as_bytes()), ("b.txt", b"three\n")]);
    let r = t.drover(&["images", "push", &tag, "--minion", "m2"]);
    r.expect_code(0);
    let l = line(&r.stdout, "m2");
    assert!(
        l.contains("sent 1 layer ") && l.contains("2 layers there already"),
        "{l}"
    );
    assert!(sent_bytes(l) < 50e3, "{l}");
    assert!(!r.stdout.contains("m1:"), "only the minion asked for");
    assert_eq!(id_on("m2", &tag), local_id(&tag));
    let out = docker("m2", &["run", "--rm", &tag, "cat", "/b.txt"]);
    assert_eq!(out, "three\n", "the new layer's content");

    // Already there: nothing sent.
    let r = t.drover(&["images", "push", &tag, "--minion", "m2"]);
    r.expect_code(0);
    assert!(
        line(&r.stdout, "m2").contains("already there"),
        "{}",
        r.stdout
    );

    // An image the local engine lacks: an error naming it, nothing pushed.
    let r = t.drover(&["images", "push", "drover-test/nowhere:1"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("drover-test/nowhere:1 is not in the local Docker Engine"),
        "{}",
        r.stderr
    );
    tear_down(&t);
}

/// Bytes this process has written (`wchar` of /proc/PID/io).
/// Bytes a process has sent over its SSH connections (the kernel's count per TCP socket,
/// from `ss`): for a push, the image stream to the minion.
fn sent_over_ssh(pid: u32) -> u64 {
    let out = Command::new("ss")
        .args(["-Htinp", "( dport = :22 )"])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    // Each socket is a line naming its process, then a line of its counters.
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].contains(&owner))
        .filter_map(|w| {
            let v = w[1]
                .split_whitespace()
                .find_map(|f| f.strip_prefix("bytes_sent:"))?;
            v.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn a_push_killed_mid_stream_leaves_no_image_and_the_next_one_converges() {
    let _g = steady();
    testbed(&["image"]);
    let (t, project) = project_dir();
    let tag = format!("drover-test/{project}-big:1");
    let _cleanup = Cleanup(vec![tag.clone()]);
    // 48 MB that do not compress, so the stream takes a while on the minion's side.
    let big: Vec<u8> = {
        // Seeded by the time: a layer no minion has from an earlier run.
        let mut x: u64 = 0x9e3779b97f4a7c15 ^ u64::from(std::process::id()) << 20
            | u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            );
        (0..48 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    build(&tag, &[("big.bin", &big)]);
    let mut push = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .env_remove("DROVER_CONFIG")
        .args(["images", "push", &tag, "--minion", "m1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has sent a fifth of the layer to the minion.
    let started = Instant::now();
    while sent_over_ssh(push.id()) < 10 << 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the push did not start"
        );
        assert!(
            push.try_wait().unwrap().is_none(),
            "the push ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    push.kill().unwrap();
    let status = push.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed mid-stream");
    // Docker may still be reading what was sent; the image must never appear from it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(id_on("m1", &tag), "", "no partial image on m1");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Then apply, the image named in [images] push: delivered and run, no broken image.
    let config = std::fs::read_to_string(t.join("drover.toml")).unwrap();
    t.write(
        "drover.toml",
        &format!("{config}\n[images]\npush = [\"drover-test/*\"]\n"),
    );
    t.write(
        "manifests/big.json",
        &format!(
            r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "big",
  "desiredState": {{"replicas": 3, "replicaSelector": {{"app": "big"}},
    "podTemplate": {{"labels": {{"app": "big"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "big",
      "containers": [{{"name": "app", "image": "{tag}",
                       "command": ["sh", "-c", "exec sleep 3600"]}}]}}}}}}}}}}"#
        ),
    );
    let r = t.drover(&["apply", "--yes"]);
    r.expect_code(0);
    let to_m1 = r
        .stdout
        .lines()
        .find(|l| l.starts_with("pushed ") && l.contains(" to m1: "))
        .unwrap_or_else(|| panic!("no delivery to m1:\n{}", r.stdout));
    assert!(to_m1.contains("sent 1 layer "), "{to_m1}");
    assert_eq!(id_on("m1", &tag), local_id(&tag));
    let size = docker("m1", &["run", "--rm", &tag, "wc", "-c", "/big.bin"]);
    assert_eq!(size.split_whitespace().next(), Some("50331648"), "{size}");
    let running: usize = ["m1", "m2", "m3"]
        .iter()
        .map(|m| running_ids(m, &project).len())
        .sum();
    assert_eq!(running, 3, "the three replicas run");
    tear_down(&t);
}

/// The id of the image the project's `app` containers on `minion` run, one per container.
fn running_ids(minion: &str, project: &str) -> Vec<String> {
    let ids = docker(
        minion,
        &[
            "ps",
            "-q",
            "--filter",
            &of_project(project),
            "--filter",
            "label=io.drover.container=app",
        ],
    );
    ids.split_whitespace()
        .map(|c| {
            docker(minion, &["inspect", "-f", "{{.Image}}", c])
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn images_in_push_are_delivered_by_apply_and_a_rebuild_rolls_out() {
    let _g = steady();
    testbed(&["image"]);
    let (t, project) = project_dir();
    let tag = format!("drover-test/{project}-app:1");
    let absent = format!("drover-test/{project}-absent:1");
    let _cleanup = Cleanup(vec![tag.clone()]);
    let config = std::fs::read_to_string(t.join("drover.toml")).unwrap();
    t.write(
        "drover.toml",
        &format!("{config}\n[images]\npush = [\"drover-test/*\"]\n"),
    );
    let first = format!("first {project}\n");
    build(&tag, &[("a.txt", first.as_bytes())]);
    let rc = |image: &str| {
        format!(
            r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "delivered",
  "desiredState": {{"replicas": 3, "replicaSelector": {{"app": "delivered"}},
    "podTemplate": {{"labels": {{"app": "delivered"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "delivered",
      "containers": [{{"name": "app", "image": "{image}",
                       "command": ["sh", "-c", "exec sleep 3600"]}}]}}}}}}}}}}"#
        )
    };
    t.write("manifests/app.json", &rc(&tag));

    // Applied by name: sent to every minion first (the test image's layer is there already),
    // and every replica runs the local build.
    let r = t.drover(&["apply", "--yes"]);
    r.expect_code(0);
    let first_id = local_id(&tag);
    for m in ["m1", "m2", "m3"] {
        let pushed = r
            .stdout
            .lines()
            .find(|l| {
                l.starts_with(&format!("pushed {tag} (")) && l.contains(&format!(" to {m}: "))
            })
            .unwrap_or_else(|| panic!("no delivery to {m}:\n{}", r.stdout));
        assert!(pushed.contains("sent 1 layer "), "{pushed}");
        assert_eq!(id_on(m, &tag), first_id);
    }
    let all = |id: &str| {
        ["m1", "m2", "m3"]
            .iter()
            .flat_map(|m| running_ids(m, &project))
            .filter(|i| i == id)
            .count()
    };
    assert_eq!(all(&first_id), 3, "three replicas of the first build");
    t.drover(&["diff"]).expect_code(0);

    // A rebuild under the same tag: diff names the change of build, apply sends the one
    // changed layer and replaces the replicas.
    build(&tag, &[("a.txt", format!("second {project}\n").as_bytes())]);
    let second_id = local_id(&tag);
    assert_ne!(first_id, second_id);
    let d = t.drover(&["diff"]);
    d.expect_code(1);
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();
    let line = format!(
        "~ image {tag} sha256:{}… → sha256:{}…",
        short(&first_id),
        short(&second_id)
    );
    assert!(d.stdout.contains(&line), "{line} in:\n{}", d.stdout);
    let r = t.drover(&["apply", "--yes"]);
    r.expect_code(0);
    let pushed: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("pushed "))
        .collect();
    assert_eq!(pushed.len(), 3, "{}", r.stdout);
    for l in &pushed {
        assert!(
            l.contains("sent 1 layer ") && l.contains("1 layer there already"),
            "{l}"
        );
        assert!(
            sent_bytes(&l[l.find(": sent").unwrap() + 2..]) < 50e3,
            "{l}"
        );
    }
    assert_eq!(all(&second_id), 3, "three replicas of the rebuild");
    assert_eq!(all(&first_id), 0, "none of the first build left");

    // Nothing new: nothing sent.
    let r = t.drover(&["apply", "--yes"]);
    r.expect_code(0);
    assert!(!r.stdout.contains("pushed "), "{}", r.stdout);

    // A name in push that is nowhere: refused, naming it; nothing changed.
    t.write("manifests/app.json", &rc(&absent));
    let r = t.drover(&["apply", "--yes"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains(&format!(
            "{absent} is in [images] push but not in the local Docker Engine"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(all(&second_id), 3, "the running build left alone");
    t.write("manifests/app.json", &rc(&tag));
    tear_down(&t);
}

/// Waits for `ok`, failing with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_daemon_ships_a_rebuild_and_counts_what_it_sent() {
    let _g = steady();
    testbed(&["image"]);
    let (t, project) = project_dir();
    let tag = format!("drover-test/{project}-daemon:1");
    let _cleanup = Cleanup(vec![tag.clone()]);
    let config = std::fs::read_to_string(t.join("drover.toml")).unwrap();
    t.write(
        "drover.toml",
        &format!("{config}\n[images]\npush = [\"drover-test/*-daemon:*\"]\n"),
    );
    build(&tag, &[("a.txt", format!("first {project}\n").as_bytes())]);
    t.write(
        "manifests/app.json",
        &format!(
            r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "shipped",
  "desiredState": {{"replicas": 2, "replicaSelector": {{"app": "shipped"}},
    "podTemplate": {{"labels": {{"app": "shipped"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "shipped",
      "containers": [{{"name": "app", "image": "{tag}",
                       "command": ["sh", "-c", "exec sleep 3600"]}}]}}}}}}}}}}"#
        ),
    );
    let daemon = common::daemon::Daemon::start(&t, &[]);
    let running = |id: &str| {
        ["m1", "m2", "m3"]
            .iter()
            .flat_map(|m| running_ids(m, &project))
            .filter(|i| i == id)
            .count()
    };
    let first = local_id(&tag);
    wait_for(
        "two replicas of the first build",
        Duration::from_secs(60),
        || running(&first) == 2,
    );
    // Rebuilt: the daemon sees the new build at its next look (resync 2 s) and rolls it out.
    build(&tag, &[("a.txt", format!("second {project}\n").as_bytes())]);
    let second = local_id(&tag);
    wait_for(
        "two replicas of the rebuild, none of the first",
        Duration::from_secs(60),
        || running(&second) == 2 && running(&first) == 0,
    );
    let addr = daemon.status_addr();
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let bytes: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("drover_image_push_bytes_total{") && l.contains(&tag))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        bytes > 0.0 && bytes < 200e3,
        "small layers only: {bytes}\n{metrics}"
    );
    let events = t.drover(&["get", "events", "-o", "json"]);
    assert!(
        events.stdout.contains("\"Pushed\"") && events.stdout.contains(&tag),
        "{}",
        events.stdout
    );
    drop(daemon);
    tear_down(&t);
}
