//! drover at scale on hollow minions (`tests/cluster/hollow`): real sshd processes in front
//! of one fake Docker Engine process that serves every minion's socket from memory. For each
//! size (minions; 30 pods each, in RCs of 1, 2, 3, 4, 10 and 40 replicas with one service per
//! six RCs) it measures:
//!   - `drover apply` from nothing (every SSH handshake included);
//!   - the daemon's no-op round (median of 5 `POST /reconcile`), and its CPU;
//!   - one RC scaled by one: the file saved to the pod created on its minion;
//!   - one minion lost (`hollow fault mK hang`, `--node-grace 30`): to its pods running
//!     elsewhere;
//!   - the daemon's RSS, threads and open file descriptors; the state directory's size and
//!     the store's commit time.
//!
//! Each figure is printed beside its goal (issue 26: at 1,000 minions a no-op round at most
//! 2 s, a one-pod change on its minion within 1 s of the round, RSS at most 500 MB, at most 3
//! fds per minion, threads not growing with minions), and the per-minion figures beside the
//! smallest size's, measured in the same run.
//!
//! Needs root (it starts sshd). Run: `cargo bench --bench scale -- 100 300 1000` (default:
//! 100 300). Leaves nothing running.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PODS_PER_MINION: usize = 30;
/// RC sizes in each group of six; 60 pods a group, so two minions' worth.
const GROUP: [u32; 6] = [1, 2, 3, 4, 10, 40];
const LISTEN: &str = "127.0.0.1:7981";

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 300]
    } else {
        sizes
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    println!(
        "scale: hollow minions, {PODS_PER_MINION} pods each; CPU {cpu}, {} cores; load at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let mut results: Vec<Figures> = Vec::new();
    for &n in &sizes {
        let f = run_size(&root, n);
        f.print(results.first());
        results.push(f);
    }
    println!("\n| minions | pods | apply from nothing | no-op round | CPU per round | scale by one | node lost to replaced | RSS | threads | fds | state |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for f in &results {
        println!(
            "| {} | {} | {:.1} s | {:.2} s | {:.2} s | {:.2} s | {} | {} MB | {} | {} | {:.1} MB |",
            f.minions,
            f.pods,
            f.apply.as_secs_f64(),
            f.noop.as_secs_f64(),
            f.noop_cpu,
            f.scale_one.as_secs_f64(),
            f.node_lost
                .map_or("—".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            f.rss_kb / 1024,
            f.threads,
            f.fds,
            f.state_bytes as f64 / 1e6,
        );
    }
    println!("load at end {}", loadavg());
}

struct Figures {
    minions: usize,
    pods: usize,
    hollow_up: Duration,
    apply: Duration,
    noop: Duration,
    noop_spread: (Duration, Duration),
    noop_cpu: f64,
    scale_one: Duration,
    node_lost: Option<Duration>,
    rss_kb: u64,
    threads: u64,
    fds: usize,
    state_bytes: u64,
    commit: Option<Duration>,
}

impl Figures {
    fn print(&self, base: Option<&Figures>) {
        let n = self.minions as f64;
        let per = |v: f64, b: Option<f64>| match b {
            Some(b) if b > 0.0 => format!(" ({:.2}x the smallest size's per minion)", v / b),
            _ => String::new(),
        };
        println!("\n{} minions, {} pods", self.minions, self.pods);
        println!(
            "  hollow up (engine + sshds)          {:>8.1} s",
            self.hollow_up.as_secs_f64()
        );
        println!(
            "  apply from nothing                  {:>8.1} s   {:.0} pods/s",
            self.apply.as_secs_f64(),
            self.pods as f64 / self.apply.as_secs_f64()
        );
        println!(
            "  no-op daemon round (median of 5)    {:>8.3} s   [{:.3} .. {:.3}]  goal at 1,000: <= 2 s{}",
            self.noop.as_secs_f64(),
            self.noop_spread.0.as_secs_f64(),
            self.noop_spread.1.as_secs_f64(),
            per(
                self.noop.as_secs_f64() / n,
                base.map(|b| b.noop.as_secs_f64() / b.minions as f64)
            )
        );
        println!(
            "  CPU of the daemon per no-op round   {:>8.3} s",
            self.noop_cpu
        );
        println!(
            "  one RC scaled by one: saved -> pod created on its minion {:.3} s   goal: within 1 s of the round",
            self.scale_one.as_secs_f64()
        );
        match self.node_lost {
            Some(d) => println!(
                "  one minion lost -> its pods running elsewhere {:.1} s   (node grace 30 s)",
                d.as_secs_f64()
            ),
            None => println!("  one minion lost: not measured"),
        }
        println!(
            "  daemon RSS {} MB (goal <= 500), threads {} (goal: not growing with minions), fds {} = {:.2} per minion (goal <= 3)",
            self.rss_kb / 1024,
            self.threads,
            self.fds,
            self.fds as f64 / n
        );
        println!(
            "  state directory {:.1} MB; store commit {}",
            self.state_bytes as f64 / 1e6,
            self.commit.map_or("—".to_string(), |d| format!(
                "{:.1} ms",
                d.as_secs_f64() * 1e3
            ))
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn hollow(root: &Path, args: &[&str]) -> String {
    let out = Command::new(root.join("tests/cluster/hollow"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/cluster/hollow");
    assert!(out.status.success(), "hollow {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn manifests(dir: &Path, minions: usize) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let groups = (minions * PODS_PER_MINION).div_ceil(GROUP.iter().sum::<u32>() as usize);
    for g in 1..=groups {
        std::fs::write(dir.join(format!("g{g}.json")), group_list(g, None)).unwrap();
    }
    groups * GROUP.iter().sum::<u32>() as usize
}

/// Group `g`'s six RCs and its service as one List; `fifth` overrides the size of its fifth
/// RC (the 10-replica one).
fn group_list(g: usize, fifth: Option<u32>) -> String {
    let mut objects = Vec::new();
    for (k, replicas) in GROUP.iter().enumerate() {
        let id = format!("g{g}-{}", (b'a' + k as u8) as char);
        let replicas = if k == 4 {
            fifth.unwrap_or(*replicas)
        } else {
            *replicas
        };
        objects.push(rc_json(&id, &format!("g{g}"), replicas));
    }
    objects.push(format!(
        r#"{{"kind": "Service", "apiVersion": "v1beta1", "id": "g{g}", "port": {}, "containerPort": 80, "selector": {{"group": "g{g}"}}}}"#,
        20000 + g
    ));
    format!(
        r#"{{"kind": "List", "apiVersion": "v1beta1", "items": [{}]}}"#,
        objects.join(",\n")
    )
}

fn rc_json(id: &str, group: &str, replicas: u32) -> String {
    format!(
        r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "{id}",
  "desiredState": {{"replicas": {replicas}, "replicaSelector": {{"name": "{id}"}},
    "podTemplate": {{"labels": {{"name": "{id}", "group": "{group}"}},
      "desiredState": {{"manifest": {{"version": "v1beta1", "id": "{id}", "containers": [
        {{"name": "app", "image": "hollow/app:1", "ports": [{{"containerPort": 80}}]}}]}}}}}}}},
  "labels": {{"name": "{id}"}}}}"#
    )
}

/// Saves `g1.json` with its 10-replica RC at `replicas`, atomically (the watcher sees one
/// change).
fn scale_g1(dir: &Path, replicas: u32) {
    let tmp = dir.join(".g1.json.tmp");
    std::fs::write(&tmp, group_list(1, Some(replicas))).unwrap();
    std::fs::rename(tmp, dir.join("g1.json")).unwrap();
}

fn drover(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// One HTTP/1.0 request to the daemon's status API; the body.
fn http(method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(LISTEN).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // 200, or 202 for POST /reconcile.
    let code = head.split_whitespace().nth(1)?;
    code.starts_with('2').then(|| body.to_string())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `hollow down` however the run ends.
struct HollowDown(PathBuf);

impl Drop for HollowDown {
    fn drop(&mut self) {
        let _ = Command::new(self.0.join("tests/cluster/hollow"))
            .arg("down")
            .stdout(Stdio::null())
            .status();
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_size(root: &Path, n: usize) -> Figures {
    let work = std::env::temp_dir().join(format!("drover-scale-{n}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let _ = Command::new(root.join("tests/cluster/hollow"))
        .arg("down")
        .stdout(Stdio::null())
        .status();
    let t = Instant::now();
    let toml = hollow(root, &["up", &n.to_string()]);
    let _down = HollowDown(root.to_path_buf());
    let hollow_up = t.elapsed();
    std::fs::write(
        work.join("drover.toml"),
        format!("project = \"scale\"\nsource = \"manifests\"\nstate_dir = \"state\"\n{toml}"),
    )
    .unwrap();
    let pods = manifests(&work.join("manifests"), n);

    let apply = drover(&work, &["apply", "--timeout", "3600"]);

    let log = std::fs::File::create(work.join("daemon.log")).unwrap();
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .current_dir(&work)
            .args([
                "daemon",
                "--resync",
                "3600",
                "--node-grace",
                "30",
                "--listen",
                LISTEN,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    wait_for(Duration::from_secs(600), "the daemon's first round", || {
        http("GET", "/readyz")
    });

    let mut rounds = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let before = http("GET", "/metrics").unwrap();
        let (count, sum) = (
            metric(&before, "drover_round_duration_seconds_count"),
            metric(&before, "drover_round_duration_seconds_sum"),
        );
        let cpu_before = cpu_seconds(pid);
        http("POST", "/reconcile").expect("POST /reconcile");
        let after = wait_for(Duration::from_secs(120), "a no-op round", || {
            let m = http("GET", "/metrics")?;
            (metric(&m, "drover_round_duration_seconds_count") > count).then_some(m)
        });
        cpu.push(cpu_seconds(pid) - cpu_before);
        rounds.push(Duration::from_secs_f64(
            metric(&after, "drover_round_duration_seconds_sum") - sum,
        ));
    }
    rounds.sort();
    cpu.sort_by(f64::total_cmp);
    let rss_kb = status_field(pid, "VmRSS:");
    let threads = status_field(pid, "Threads:");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());

    // One RC scaled by one: saved to the pod made.
    let before = http("GET", "/metrics").unwrap();
    let made = metric(
        &before,
        "drover_actions_total{kind=\"create_pod\",result=\"ok\"}",
    );
    let commits = (
        metric(&before, "drover_store_commit_duration_seconds_count"),
        metric(&before, "drover_store_commit_duration_seconds_sum"),
    );
    let t = Instant::now();
    scale_g1(&work.join("manifests"), 11);
    let after = wait_for(Duration::from_secs(60), "the scaled pod", || {
        let m = http("GET", "/metrics")?;
        (metric(
            &m,
            "drover_actions_total{kind=\"create_pod\",result=\"ok\"}",
        ) > made)
            .then_some(m)
    });
    let scale_one = t.elapsed();
    let commit_count = metric(&after, "drover_store_commit_duration_seconds_count") - commits.0;
    let commit = (commit_count > 0.0).then(|| {
        Duration::from_secs_f64(
            (metric(&after, "drover_store_commit_duration_seconds_sum") - commits.1) / commit_count,
        )
    });

    // One minion lost: m1 stops answering; its pods must run elsewhere after the grace.
    let desired = (pods + 1) as u64;
    hollow(root, &["fault", "m1", "hang"]);
    let t = Instant::now();
    let node_lost = wait_for(Duration::from_secs(300), "m1's pods replaced", || {
        std::thread::sleep(Duration::from_millis(500));
        let status: serde_json::Value = serde_json::from_str(&http("GET", "/status")?).ok()?;
        let elsewhere = status["pods"]
            .as_array()?
            .iter()
            .filter(|p| p["minion"] != "m1" && p["phase"] == "Running")
            .count() as u64;
        (elsewhere >= desired).then(|| t.elapsed())
    });
    hollow(root, &["fault", "m1", "heal"]);
    // The store's commits over the daemon's whole run (the replacements wrote some).
    let total = http("GET", "/metrics").unwrap_or_default();
    let commits = metric(&total, "drover_store_commit_duration_seconds_count");
    let commit = commit.or_else(|| {
        (commits > 0.0).then(|| {
            Duration::from_secs_f64(
                metric(&total, "drover_store_commit_duration_seconds_sum") / commits,
            )
        })
    });
    drop(daemon);
    let state_bytes = dir_bytes(&work.join("state"));

    Figures {
        minions: n,
        pods,
        hollow_up,
        apply,
        noop: rounds[rounds.len() / 2],
        noop_spread: (rounds[0], rounds[rounds.len() - 1]),
        noop_cpu: cpu[cpu.len() / 2],
        scale_one,
        node_lost: Some(node_lost),
        rss_kb,
        threads,
        fds,
        state_bytes,
        commit,
    }
}
