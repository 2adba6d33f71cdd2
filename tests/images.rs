//! `drover images push` on the real cluster, no registry anywhere: an image built in this
//! machine's Docker Engine (FROM the test image, plus files) goes to all three minions with
//! only the layers they lack, and runs there through `apply`; a rebuild that changes one file
//! sends that one layer; a minion that has the image gets nothing; a push killed mid-stream
//! leaves no image on the minion, and the next push converges.

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
fn written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: ")?.trim().parse().ok())
        })
        .unwrap_or(0)
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
    // Killed once it has sent a fifth of the layer (its writes are the stream to the minion).
    let started = Instant::now();
    while written(push.id()) < 10 << 20 {
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
    let r = t.drover(&["images", "push", &tag, "--minion", "m1"]);
    r.expect_code(0);
    assert!(
        line(&r.stdout, "m1").contains("sent 1 layer "),
        "{}",
        r.stdout
    );
    assert_eq!(id_on("m1", &tag), local_id(&tag));
    let size = docker("m1", &["run", "--rm", &tag, "wc", "-c", "/big.bin"]);
    assert_eq!(size.split_whitespace().next(), Some("50331648"), "{size}");
}
