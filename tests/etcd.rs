//! Several daemons on one etcd, on the real 3-minion cluster with a 3-member etcd on loopback:
//! one leads and acts, every one serves the service through its own proxy; the leader
//! SIGKILLed mid-rollout is replaced within the lease TTL plus a round and the rollout
//! completes without duplicate containers; a leader paused (SIGSTOP) past its TTL makes no
//! write when it resumes; a `drover proxy` on the same etcd follows it; one etcd member lost
//! stops nothing; a lost quorum stops acting,
//! said, until it returns.
//!
//! Run under the cluster lock: `flock -o /tmp/drover-cluster.lock cargo test --test etcd`.

mod common;
#[path = "etcd_cluster/mod.rs"]
mod etcd_cluster;

use common::cluster::{disrupt, docker, of_project, project_dir};
use common::daemon::Daemon;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The writer lease's TTL (`drover::store::LEASE_TTL`).
const TTL: Duration = drover::store::LEASE_TTL;

fn web_rc(replicas: u32, version: &str) -> String {
    format!(
        r#"{{"id": "web", "kind": "ReplicationController", "apiVersion": "v1beta1",
  "desiredState": {{"replicas": {replicas}, "replicaSelector": {{"app": "web"}},
    "podTemplate": {{"labels": {{"app": "web"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "web",
      "containers": [{{"name": "httpd", "image": "drover/busybox:latest",
        "command": ["sh", "-c", "mkdir -p /w && echo {version} > /w/index.html && httpd -f -p 80 -h /w; exit 1"],
        "env": [{{"name": "VERSION", "value": "{version}"}}],
        "ports": [{{"name": "http", "containerPort": 80}}]}}]}}}}}}}}}}"#
    )
}

fn service(port: u16) -> String {
    format!(
        r#"{{"id": "web", "kind": "Service", "apiVersion": "v1beta1", "port": {port},
  "containerPort": "http", "selector": {{"app": "web"}}}}"#
    )
}

/// A port for the service that nothing here listens on.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One HTTP GET of `/` through `ip:port`; the body, or why not.
fn get(ip: &str, port: u16) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("bad answer: {text:?}")),
    }
}

/// The project's web containers: (minion, container name, VERSION).
fn web(project: &str) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for m in ["m1", "m2", "m3"] {
        let out = docker(
            m,
            &[
                "ps",
                "-a",
                "--filter",
                "label=io.drover.container=httpd",
                "--filter",
                &of_project(project),
                "--format",
                "{{.Names}} {{.State}}",
            ],
        );
        for line in out.lines() {
            let name = line.split(' ').next().unwrap_or_default().to_string();
            let env = docker(m, &["inspect", "--format", "{{json .Config.Env}}", &name]);
            let version = env
                .split("VERSION=")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or_default()
                .to_string();
            all.push((m.to_string(), line.to_string(), version));
        }
    }
    all.sort();
    all
}

/// Running web containers of `version`.
fn running(project: &str, version: &str) -> usize {
    web(project)
        .iter()
        .filter(|(_, l, v)| l.ends_with(" running") && v == version)
        .count()
}

/// Three daemon directories sharing one source directory, one project and one etcd prefix;
/// daemon i's proxy on 127.0.2.i.
struct Setup {
    dirs: Vec<TestDir>,
    /// The etcd prefix, `/...`.
    prefix: String,
    project: String,
    source: TestDir,
    port: u16,
}

impl Setup {
    fn new(etcd: &etcd_cluster::EtcdCluster, replicas: u32) -> Setup {
        let (first, project) = project_dir();
        let config = std::fs::read_to_string(first.join("drover.toml")).unwrap();
        let prefix = etcd_cluster::unique_prefix(&project);
        let url = etcd.url(&prefix);
        let source = TestDir::new();
        let port = free_port();
        source.write("web-rc.json", &web_rc(replicas, "v1"));
        source.write("web-service.json", &service(port));
        let mut dirs = vec![first];
        dirs.push(TestDir::new());
        dirs.push(TestDir::new());
        for (i, t) in dirs.iter().enumerate() {
            t.write(
                "drover.toml",
                &format!(
                    "state = \"{url}\"\nsource = \"{}\"\n{config}\n[proxy]\nlisten = \"127.0.2.{}\"\n",
                    source.path().display(),
                    i + 1
                ),
            );
        }
        Setup {
            dirs,
            prefix: format!("/{prefix}"),
            project,
            source,
            port,
        }
    }

    fn start(&self, i: usize) -> Daemon {
        Daemon::start(&self.dirs[i], &["--node-grace", "5"])
    }
}

/// Each running daemon's pid and `/status` document.
fn roles(daemons: &[Option<Daemon>]) -> Vec<(u32, serde_json::Value)> {
    daemons
        .iter()
        .flatten()
        .map(|d| {
            let answer = common::daemon::http(&d.status_addr(), "GET", "/status", &[]);
            let doc = serde_json::from_str(common::daemon::body(&answer)).unwrap_or_default();
            (d.pid(), doc)
        })
        .collect()
}

fn wait_until(
    what: &str,
    limit: Duration,
    logs: &dyn Fn() -> String,
    mut ok: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Which daemons say they lead now (the last leadership line of each log).
fn leaders(daemons: &[Option<Daemon>], dead: Option<usize>) -> Vec<usize> {
    daemons
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != dead)
        .filter_map(|(i, d)| {
            let log = d.as_ref()?.log();
            let last = log
                .lines()
                .rev()
                .find(|l| {
                    l.contains("leading:")
                        || l.contains("following:")
                        || l.contains("no longer leading")
                })?
                .to_string();
            last.contains("leading: this daemon").then_some(i)
        })
        .collect()
}

fn all_logs(daemons: &[Option<Daemon>]) -> String {
    daemons
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some(format!("--- daemon {i}:\n{}", d.as_ref()?.log())))
        .collect()
}

fn status(d: &Daemon) -> serde_json::Value {
    let answer = common::daemon::http(&d.status_addr(), "GET", "/status", &[]);
    serde_json::from_str(common::daemon::body(&answer)).unwrap_or_default()
}

#[test]
fn three_daemons_one_leads_every_one_proxies_and_a_killed_leader_is_replaced_mid_rollout() {
    let _g = disrupt();
    let etcd = etcd_cluster::EtcdCluster::start(3);
    let s = Setup::new(&etcd, 3);
    let daemons: Vec<Option<Daemon>> = (0..3).map(|i| Some(s.start(i))).collect();
    let dead = std::cell::Cell::new(None);
    let leaders = || leaders(&daemons, dead.get());
    let logs = || all_logs(&daemons);
    wait_until("3 web replicas", Duration::from_secs(60), &logs, || {
        running(&s.project, "v1") == 3
    });
    wait_until("one leader", Duration::from_secs(10), &logs, || {
        leaders().len() == 1
    });
    let leader = leaders()[0];
    // A standalone `drover proxy` on the same etcd serves it too (following by watch).
    let proxy = Daemon::spawn(&s.dirs[0], &["proxy", "--listen", "127.0.2.9"], "proxy.log");
    wait_until(
        "the service through drover proxy",
        Duration::from_secs(20),
        &logs,
        || get("127.0.2.9", s.port).is_ok_and(|b| b == "v1"),
    );
    // Every daemon's proxy serves the service; followers say who leads.
    for (i, d) in daemons.iter().enumerate() {
        let ip = format!("127.0.2.{}", i + 1);
        wait_until(
            &format!("the service through {ip}"),
            Duration::from_secs(20),
            &logs,
            || get(&ip, s.port).is_ok_and(|b| b == "v1"),
        );
        let doc = status(d.as_ref().unwrap());
        if i == leader {
            assert_eq!(doc["role"], "leader", "{doc}");
        } else {
            assert_eq!(doc["role"], "follower", "{doc}");
            let who = doc["leader"]["who"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(who.contains("drover daemon"), "{doc}");
        }
    }

    // A rolling update; the leader is SIGKILLed once it has made the first new pod.
    s.source.write("web-rc.json", &web_rc(3, "v2"));
    wait_until(
        "the rollout under way",
        Duration::from_secs(30),
        &logs,
        || web(&s.project).iter().any(|(_, _, v)| v == "v2"),
    );
    kill_now(daemons[leader].as_ref().unwrap());
    dead.set(Some(leader));
    let killed_at = Instant::now();
    wait_until("a new leader", TTL + Duration::from_secs(10), &logs, || {
        leaders().len() == 1
    });
    let took = killed_at.elapsed();
    let new_leader = leaders()[0];
    assert_ne!(new_leader, leader);
    assert!(
        took <= TTL + Duration::from_secs(5),
        "took over after {took:?}"
    );
    eprintln!("daemon {new_leader} took over {took:?} after the leader was SIGKILLed");
    wait_until(
        "the rollout completed",
        Duration::from_secs(90),
        &logs,
        || {
            let all = web(&s.project);
            all.len() == 3
                && all
                    .iter()
                    .all(|(_, l, v)| v == "v2" && l.ends_with(" running"))
        },
    );
    // No pod has two containers (names are per pod: one line per pod id and container).
    let pods: Vec<String> = web(&s.project)
        .iter()
        .map(|(_, l, _)| l.split(' ').next().unwrap().to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = pods.iter().collect();
    assert_eq!(unique.len(), pods.len(), "{pods:?}");
    // The service answers through the proxies that are left, with the new version.
    for (i, _) in daemons.iter().enumerate() {
        if dead.get() != Some(i) {
            let ip = format!("127.0.2.{}", i + 1);
            wait_until(
                &format!("v2 through {ip}"),
                Duration::from_secs(20),
                &logs,
                || get(&ip, s.port).is_ok_and(|b| b == "v2"),
            );
        }
    }
    wait_until(
        "v2 through drover proxy",
        Duration::from_secs(20),
        &|| proxy.log(),
        || get("127.0.2.9", s.port).is_ok_and(|b| b == "v2"),
    );
    // Clean up: the new leader prunes everything.
    s.source.write("web-rc.json", &web_rc(0, "v2"));
    wait_until("the pods gone", Duration::from_secs(60), &logs, || {
        web(&s.project).is_empty()
    });
}

/// SIGKILLs a daemon (no cleanup, as a crash) and waits until it is gone.
fn kill_now(d: &Daemon) {
    let pid = d.pid();
    // SAFETY: kill(2) touches no memory of ours.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !gone(pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exited (a zombie until reaped) or no such process.
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

/// The highest mod revision of any key under `prefix`: it moves with every write there.
/// The last write to the project's state. The records under `serving/` are left out: each
/// process renews its own while it serves the proxy, leader or not (`drover::serving`),
/// and they decide nothing.
fn last_write(etcd: &etcd_cluster::EtcdCluster, prefix: &str) -> i64 {
    etcd.raw_range(prefix, false)
        .iter()
        .filter(|kv| !String::from_utf8_lossy(&kv.key).contains("/serving/"))
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap_or(0)
}

fn signal(d: &Daemon, sig: i32) {
    // SAFETY: kill(2) touches no memory of ours.
    unsafe { libc::kill(d.pid() as i32, sig) };
}

/// Sends SIGCONT when dropped, so a failing test leaves no daemon stopped (which could not
/// be stopped by SIGTERM).
struct Resume<'a>(&'a Daemon);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

#[test]
fn a_leader_paused_past_its_lease_writes_nothing_when_it_resumes() {
    let _g = disrupt();
    let etcd = etcd_cluster::EtcdCluster::start(3);
    let s = Setup::new(&etcd, 2);
    let prefix = s.prefix.clone();
    let daemons: Vec<Option<Daemon>> = vec![Some(s.start(0)), Some(s.start(1))];
    let logs = || all_logs(&daemons);
    wait_until("2 web replicas", Duration::from_secs(60), &logs, || {
        running(&s.project, "v1") == 2
    });
    wait_until("one leader", Duration::from_secs(10), &logs, || {
        leaders(&daemons, None).len() == 1
    });
    let old = leaders(&daemons, None)[0];
    let new = 1 - old;
    let (old_d, new_d) = (
        daemons[old].as_ref().unwrap(),
        daemons[new].as_ref().unwrap(),
    );
    // Converged and quiet: the old leader is paused between rounds.
    std::thread::sleep(Duration::from_secs(3));
    signal(old_d, libc::SIGSTOP);
    let _resume_old = Resume(old_d);
    wait_until(
        "the other to lead",
        TTL + Duration::from_secs(10),
        &logs,
        || leaders(&daemons, Some(old)) == [new],
    );
    // Let the new leader record a round, then pause it too: its lease stands for at least
    // TTL - TTL/3 from now, and nobody may write while it does.
    std::thread::sleep(Duration::from_secs(3));
    signal(new_d, libc::SIGSTOP);
    let stopped = Instant::now();
    let _resume_new = Resume(new_d);
    // Something for a leader to do: a third replica.
    s.source.write("web-rc.json", &web_rc(3, "v1"));
    let before = last_write(&etcd, &prefix);
    let containers = web(&s.project);
    let old_log_before = old_d.log().len();
    signal(old_d, libc::SIGCONT);
    let window = TTL - TTL / 3 - Duration::from_millis(1500);
    while stopped.elapsed() < window {
        assert_eq!(
            last_write(&etcd, &prefix),
            before,
            "a write under {prefix} while the lease holder is paused\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        web(&s.project),
        containers,
        "the resumed leader acted\n{}",
        logs()
    );
    let said = old_d.log()[old_log_before..].to_string();
    assert!(
        said.contains("no longer leading") || said.contains("nothing was written"),
        "the resumed leader said nothing of its lost lease:\n{said}"
    );
    assert!(!said.contains("+ pod"), "{said}");
    eprintln!(
        "checked for {window:?}: no write under {prefix} (last at revision {before}), no container changed"
    );
    // Both resumed: one leads and the third replica comes.
    drop(_resume_new);
    wait_until("3 web replicas", Duration::from_secs(60), &logs, || {
        running(&s.project, "v1") == 3
    });
    s.source.write("web-rc.json", &web_rc(0, "v1"));
    wait_until("the pods gone", Duration::from_secs(60), &logs, || {
        web(&s.project).is_empty()
    });
}

#[test]
fn one_etcd_member_lost_stops_nothing_and_a_lost_quorum_stops_acting_until_it_returns() {
    let _g = disrupt();
    let etcd = etcd_cluster::EtcdCluster::start(3);
    let s = Setup::new(&etcd, 2);
    let daemons: Vec<Option<Daemon>> = vec![Some(s.start(0)), Some(s.start(1))];
    let logs = || all_logs(&daemons);
    wait_until("2 web replicas", Duration::from_secs(60), &logs, || {
        running(&s.project, "v1") == 2
    });
    etcd.kill(0);
    s.source.write("web-rc.json", &web_rc(3, "v1"));
    wait_until(
        "3 replicas with one member down",
        Duration::from_secs(30),
        &logs,
        || running(&s.project, "v1") == 3,
    );
    for ip in ["127.0.2.1", "127.0.2.2"] {
        wait_until(
            &format!("the service through {ip}"),
            Duration::from_secs(20),
            &logs,
            || get(ip, s.port).is_ok(),
        );
    }
    // Quorum lost: nobody may act, and the daemons say why.
    etcd.kill(1);
    let lost = Instant::now();
    s.source.write("web-rc.json", &web_rc(1, "v1"));
    wait_until(
        "a daemon saying it stopped acting",
        TTL + Duration::from_secs(10),
        &logs,
        || {
            let all = logs();
            all.contains("no longer leading") || all.contains("is a quorum of members up")
        },
    );
    // Once the leader has said it stopped, no `/status` says it leads (the lease as it
    // stands, not the last round's document).
    wait_until(
        "the leader saying it stopped leading",
        TTL + Duration::from_secs(10),
        &logs,
        || logs().contains("no longer leading"),
    );
    wait_until(
        "no /status saying leader",
        Duration::from_secs(3),
        &logs,
        || {
            roles(&daemons)
                .iter()
                .all(|(_, doc)| doc["role"] != "leader")
        },
    );
    while lost.elapsed() < TTL + Duration::from_secs(3) {
        assert_eq!(
            running(&s.project, "v1"),
            3,
            "acted without quorum\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The proxies keep serving what they had.
    assert!(get("127.0.2.1", s.port).is_ok() || get("127.0.2.2", s.port).is_ok());
    etcd.restart(0);
    etcd.restart(1);
    wait_until(
        "1 replica once etcd is back",
        Duration::from_secs(60),
        &logs,
        || running(&s.project, "v1") == 1,
    );
    // One leads again; a follower names another process as the leader, never itself.
    wait_until(
        "one daemon saying leader",
        Duration::from_secs(10),
        &logs,
        || {
            roles(&daemons)
                .iter()
                .filter(|(_, doc)| doc["role"] == "leader")
                .count()
                == 1
        },
    );
    for (pid, doc) in roles(&daemons) {
        let who = doc["leader"]["who"].as_str().unwrap_or("");
        if doc["role"] == "follower" {
            assert!(!who.starts_with(&format!("pid {pid} on ")), "{doc}");
        }
    }
    s.source.write("web-rc.json", &web_rc(0, "v1"));
    wait_until("the pods gone", Duration::from_secs(60), &logs, || {
        web(&s.project).is_empty()
    });
}
