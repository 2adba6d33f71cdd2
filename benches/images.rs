//! Benchmark: `drover images push` to the three test minions against `docker save IMAGE | ssh
//! minion docker load` to one minion, in alternating runs, with an image of about 100 MB in
//! four layers (the test image, then 60, 40 and 1 MB of data that does not compress):
//!
//! - (a) a first push: every minion lacks the image's own layers;
//! - (b) after a rebuild that changes only the 1 MB top layer: drover's bytes sent against that
//!   layer's size;
//! - (c) the image already everywhere.
//!
//! Needs root: brings up the test cluster with `tests/cluster/testbed up` (left running) and
//! builds `drover-bench/push:1` in this machine's Docker Engine (removed after).
//! Run: `cargo bench --bench images` (targets: (a) drover's three at most save|ssh|load's one;
//! (b) at most 0.1x its time and at most 1.2x the layer's size sent; (c) under 1 s).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "drover-bench/push:1";
const RUNS: usize = 3;

fn testbed_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("DROVER_TESTBED_DIR").unwrap_or_else(|_| "/tmp/drover-testbed".into()),
    )
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Data that does not compress, different for every `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Builds the image with a top layer made from `top_seed`.
fn build(dir: &Path, top_seed: u64) {
    std::fs::write(dir.join("top.bin"), noise(1 << 20, top_seed)).unwrap();
    sh(Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0"));
}

/// Removes the image from a minion, and the untagged images earlier pushes of this name left
/// there (each rebuild's push moves the tag), with the layers only they used.
fn forget(minion: &str) {
    let socket = format!("unix://{}/{minion}/docker.sock", testbed_dir().display());
    let _ = Command::new("docker")
        .args(["-H", &socket, "rmi", "-f", IMAGE])
        .output();
    let _ = Command::new("docker")
        .args(["-H", &socket, "image", "prune", "-f"])
        .output();
}

/// `drover images push IMAGE`: its wall time and its summary lines.
fn drover_push(config: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = sh(Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["--config"])
        .arg(config)
        .args(["images", "push", IMAGE]));
    (started.elapsed(), out)
}

/// `docker save IMAGE | ssh root@m1 docker load`, the way people copy an image by hand.
fn save_ssh_load() -> Duration {
    save_ssh_load_to(&["127.0.1.1"])
}

/// That to each of `hosts` at once (each its own save): what the three minions sharing this
/// machine's disk and cores cost when every one of them loads the image.
fn save_ssh_load_to(hosts: &[&str]) -> Duration {
    let dir = testbed_dir();
    let started = Instant::now();
    let one = |host: &str| {
        format!(
            "(set -o pipefail; docker save {IMAGE} | ssh -i {key} -o UserKnownHostsFile={known} -o BatchMode=yes root@{host} docker load -q) &",
            key = dir.join("id_ed25519").display(),
            known = dir.join("known_hosts").display(),
        )
    };
    let jobs: Vec<String> = hosts.iter().map(|h| one(h)).collect();
    let script = format!(
        "{} for j in $(jobs -p); do wait $j || exit 1; done",
        jobs.join(" ")
    );
    sh(Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::null()));
    started.elapsed()
}

/// The bytes a summary line says were sent.
fn sent_bytes(line: &str) -> f64 {
    let Some(amount) = line
        .split("sent ")
        .nth(1)
        .and_then(|r| r.split(" (").nth(1))
    else {
        return 0.0;
    };
    let amount = amount.split(')').next().unwrap();
    let (n, unit) = amount.split_once(' ').unwrap();
    let n: f64 = n.parse().unwrap();
    n * match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        _ => 1e9,
    }
}

fn stats(v: &[Duration]) -> String {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64()).collect();
    s.sort_by(f64::total_cmp);
    format!(
        "median {:.2} s (min {:.2}, max {:.2})",
        s[s.len() / 2],
        s[0],
        s[s.len() - 1]
    )
}

fn median(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64()).collect();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for args in [vec!["up", "3"], vec!["image"]] {
        let ok = Command::new(project.join("tests/cluster/testbed"))
            .args(&args)
            .status()
            .unwrap();
        assert!(ok.success(), "testbed {args:?} failed");
    }
    let config = testbed_dir().join("drover.toml");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "CPU: {cpu}, {} cores; load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load().trim()
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.bin"), noise(60 << 20, 1)).unwrap();
    std::fs::write(dir.path().join("b.bin"), noise(40 << 20, 2)).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM drover/busybox:latest\nCOPY a.bin /a.bin\nCOPY b.bin /b.bin\nCOPY top.bin /top.bin\n",
    )
    .unwrap();
    build(dir.path(), 3);

    // (a) First push: alternating, every run from minions without the image.
    let (mut drover_a, mut baseline_a) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        for m in ["m1", "m2", "m3"] {
            forget(m);
        }
        let (took, out) = drover_push(&config);
        assert!(out.lines().all(|l| l.contains("sent 3 layers")), "{out}");
        drover_a.push(took);
        forget("m1");
        baseline_a.push(save_ssh_load());
    }
    println!("(a) first push, about 100 MB in 3 new layers:");
    println!("    drover to 3 minions:         {}", stats(&drover_a));
    println!("    save|ssh|load to 1 minion:   {}", stats(&baseline_a));
    println!(
        "    ratio drover(3)/save|ssh|load(1): {:.2}x",
        median(&drover_a) / median(&baseline_a)
    );
    // The machine's share: three minions on one host load three copies on its disk and cores.
    let mut parallel_a = Vec::new();
    for _ in 0..RUNS {
        for m in ["m1", "m2", "m3"] {
            forget(m);
        }
        parallel_a.push(save_ssh_load_to(&["127.0.1.1", "127.0.1.2", "127.0.1.3"]));
    }
    println!("    save|ssh|load to 3 at once:  {}", stats(&parallel_a));
    println!(
        "    ratio drover(3)/save|ssh|load(3 at once): {:.2}x",
        median(&drover_a) / median(&parallel_a)
    );

    // (b) A rebuild that changes the 1 MB top layer only.
    let (mut drover_b, mut baseline_b, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        build(dir.path(), 100 + run as u64);
        let (took, out) = drover_push(&config);
        assert!(out.lines().all(|l| l.contains("sent 1 layer ")), "{out}");
        sent.extend(out.lines().map(sent_bytes));
        drover_b.push(took);
        baseline_b.push(save_ssh_load());
    }
    let layer = (1u64 << 20) as f64 + 1024.0; // the file and its tar header
    let most_sent = sent.iter().copied().fold(0.0, f64::max);
    println!("(b) after a rebuild changing the 1 MB top layer:");
    println!("    drover to 3 minions:         {}", stats(&drover_b));
    println!("    save|ssh|load to 1 minion:   {}", stats(&baseline_b));
    println!(
        "    ratio drover(3)/save|ssh|load(1): {:.3}x; bytes sent per minion at most {:.0} ({:.2}x the layer)",
        median(&drover_b) / median(&baseline_b),
        most_sent,
        most_sent / layer
    );
    // The floor of any push built on `docker save`: Docker 20.10 exports whole images only.
    let mut save_only = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        sh(Command::new("bash").args(["-c", &format!("docker save {IMAGE} >/dev/null")]));
        save_only.push(started.elapsed());
    }
    println!("    docker save alone (the floor): {}", stats(&save_only));
    println!(
        "    ratio drover(3)/docker save alone: {:.2}x",
        median(&drover_b) / median(&save_only)
    );

    // (c) Already everywhere.
    let mut drover_c = Vec::new();
    for _ in 0..RUNS {
        let (took, out) = drover_push(&config);
        assert!(out.lines().all(|l| l.contains("already there")), "{out}");
        drover_c.push(took);
    }
    println!("(c) already on every minion:");
    println!("    drover to 3 minions:         {}", stats(&drover_c));
    println!("load after: {}", load().trim());

    for m in ["m1", "m2", "m3"] {
        forget(m);
    }
    let _ = Command::new("docker").args(["rmi", "-f", IMAGE]).output();
}
