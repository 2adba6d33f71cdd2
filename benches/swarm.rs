//! drover against Docker Swarm on the same Docker Engine (the machine's own, as drover's `local`
//! minion): 60 replicas of `sleep 3600` from nothing, a scale 60 -> 120, a rolling update of
//! the command, and removal, each measured until every pod/task runs (or is gone). Swarm is set
//! up as fairly as it can be: start-first updates, no stop grace, no registry lookups
//! (`--no-resolve-image`, the image imported locally by `tests/cluster/testbed image`); its
//! default update parallelism of one matches drover's surge of one.
//!
//! drover is timed as a user waits for it: the `drover apply` process from start to exit
//! (it exits once everything observed runs). Swarm's commands return at once (`--detach`);
//! it is timed until the engine lists the service's containers running (polled every 50 ms
//! over the Docker API). The runs alternate (drover first, then Swarm first, ...) so load on
//! this shared machine falls on both; medians and spread are printed with drover/Swarm ratios.
//!
//! Needs root and the engine at /var/run/docker.sock with no swarm of its own; initialises a
//! single-node swarm and leaves it afterwards (also when the benchmark fails).
//! Run: `cargo bench --bench swarm` (`SWARM_BENCH_RUNS=5` for more runs).

use bollard::query_parameters::ListContainersOptionsBuilder;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const IMAGE: &str = "drover/busybox:latest";
const PROJECT: &str = "swarmbench";
const SERVICE: &str = "swarmbench";
const STEPS: [&str; 4] = ["create 60", "scale 60->120", "rollout 120", "remove 120"];

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The machine's engine, asked over its API (cheaper than the docker CLI while polling).
struct Engine {
    docker: bollard::Docker,
    rt: tokio::runtime::Runtime,
}

/// What the engine holds with some labels.
struct Count {
    /// Running `command`.
    new: usize,
    running: usize,
    all: usize,
}

impl Engine {
    fn count(&self, labels: &[&str], command: &str) -> Count {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        let filters: HashMap<&str, Vec<String>> = [("label", labels)].into();
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .rt
            .block_on(self.docker.list_containers(Some(options)))
            .unwrap();
        let running: Vec<_> = list
            .iter()
            .filter(|c| c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING))
            .collect();
        Count {
            new: running
                .iter()
                .filter(|c| c.command.as_deref() == Some(command))
                .count(),
            running: running.len(),
            all: list.len(),
        }
    }

    /// Waits until `done` holds for the containers with `labels`.
    fn wait(
        &self,
        labels: &[&str],
        command: &str,
        since: Instant,
        done: impl Fn(&Count) -> bool,
    ) -> Duration {
        loop {
            let c = self.count(labels, command);
            if done(&c) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < Duration::from_secs(900),
                "{labels:?}: {} running `{command}`, {} running, {} in all",
                c.new,
                c.running,
                c.all
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `n` running `command` and nothing else running.
fn all_new(n: usize) -> impl Fn(&Count) -> bool {
    move |c| c.new == n && c.running == n
}

fn rc(replicas: u32, seconds: u32) -> String {
    format!(
        r#"{{"kind": "ReplicationController", "id": "bench", "desiredState": {{"replicas": {replicas},
  "replicaSelector": {{"app": "bench"}},
  "podTemplate": {{"labels": {{"app": "bench"}}, "desiredState": {{"manifest": {{"containers": [
    {{"name": "app", "image": "{IMAGE}", "command": ["sleep", "{seconds}"]}}]}}}}}}}}}}"#
    )
}

struct Drover {
    dir: PathBuf,
}

impl Drover {
    fn apply(&self, manifest: Option<String>) -> Duration {
        let file = self.dir.join("manifests/bench.json");
        match manifest {
            Some(m) => std::fs::write(&file, m).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .current_dir(&self.dir)
            .args(["apply", "--yes", "--allow-empty", "--timeout", "900"])
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "drover apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    fn run(&self, engine: &Engine) -> [Duration; 4] {
        let project = format!("io.drover.project={PROJECT}");
        let apps = [project.as_str(), "io.drover.container=app"];
        let check = |n: usize, command: &str| {
            engine.wait(&apps, command, Instant::now(), all_new(n));
        };
        let create = self.apply(Some(rc(60, 3600)));
        check(60, "sleep 3600");
        let scale = self.apply(Some(rc(120, 3600)));
        check(120, "sleep 3600");
        let rollout = self.apply(Some(rc(120, 3601)));
        check(120, "sleep 3601");
        let remove = self.apply(None);
        assert_eq!(
            engine.count(&[&project], "").all,
            0,
            "drover left containers"
        );
        [create, scale, rollout, remove]
    }
}

/// The drover project's containers, removed however the benchmark ends.
impl Drop for Drover {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.drover.project={PROJECT}"),
        ]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.lines());
            let _ = Command::new("docker").args(args).output();
        }
    }
}

/// A single-node swarm on the engine, left when dropped (also on a failed benchmark).
struct Swarm;

impl Swarm {
    fn init() -> Swarm {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        assert_eq!(
            state, "inactive",
            "the engine is in a swarm already: not touched"
        );
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        Swarm
    }

    fn run(&self, engine: &Engine) -> [Duration; 4] {
        let label = format!("com.docker.swarm.service.name={SERVICE}");
        let labels = [label.as_str()];
        let started = Instant::now();
        docker(&[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            SERVICE,
            "--replicas",
            "60",
            "--update-order",
            "start-first",
            "--stop-grace-period",
            "0s",
            "--no-resolve-image",
            IMAGE,
            "sleep",
            "3600",
        ]);
        let create = engine.wait(&labels, "sleep 3600", started, all_new(60));
        let started = Instant::now();
        docker(&["service", "scale", "--detach", &format!("{SERVICE}=120")]);
        let scale = engine.wait(&labels, "sleep 3600", started, all_new(120));
        let started = Instant::now();
        docker(&[
            "service",
            "update",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--args",
            "sleep 3601",
            SERVICE,
        ]);
        // Swarm keeps the stopped containers of replaced tasks as history.
        let rollout = engine.wait(&labels, "sleep 3601", started, all_new(120));
        let started = Instant::now();
        docker(&["service", "rm", SERVICE]);
        let remove = engine.wait(&labels, "", started, |c| c.all == 0);
        [create, scale, rollout, remove]
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["service", "rm", SERVICE])
            .output();
        let _ = Command::new("docker")
            .args(["swarm", "leave", "--force"])
            .output();
    }
}

fn stats(xs: &[Duration]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = xs.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn main() {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let runs: usize = std::env::var("SWARM_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    // The test image, imported into the machine's engine (no registry).
    let built = Command::new(project.join("tests/cluster/testbed"))
        .args(["image", "unix:///var/run/docker.sock"])
        .status()
        .unwrap();
    assert!(built.success(), "testbed image failed");
    // The first container of a freshly imported image pays for preparing its layer: paid here,
    // not by whichever of the two happens to run first.
    docker(&["run", "--rm", IMAGE, "true"]);
    let engine = Engine {
        docker: bollard::Docker::connect_with_unix(
            "/var/run/docker.sock",
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(
        dir.join("drover.toml"),
        format!(
            "project = \"{PROJECT}\"\n\n[[minions]]\nname = \"local\"\ntransport = \"local\"\n"
        ),
    )
    .unwrap();
    let drover = Drover { dir };
    let swarm = Swarm::init();
    let (mut d, mut s): (Vec<[Duration; 4]>, Vec<[Duration; 4]>) = (Vec::new(), Vec::new());
    for run in 0..runs {
        if run % 2 == 0 {
            d.push(drover.run(&engine));
            s.push(swarm.run(&engine));
        } else {
            s.push(swarm.run(&engine));
            d.push(drover.run(&engine));
        }
        let show = |r: &[Duration; 4]| {
            r.iter()
                .map(|x| format!("{:.1}", x.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        eprintln!(
            "run {}: drover {}   swarm {}   (s: {})",
            run + 1,
            show(&d[run]),
            show(&s[run]),
            STEPS.join(" / ")
        );
    }
    drop(swarm);
    println!("{runs} alternating runs on one engine; median (min-max), seconds");
    println!(
        "{:<14} {:>20} {:>20} {:>13}",
        "", "drover", "swarm", "drover/swarm"
    );
    for (i, step) in STEPS.iter().enumerate() {
        let dd: Vec<Duration> = d.iter().map(|r| r[i]).collect();
        let ss: Vec<Duration> = s.iter().map(|r| r[i]).collect();
        let (dm, dlo, dhi) = stats(&dd);
        let (sm, slo, shi) = stats(&ss);
        println!(
            "{step:<14} {:>20} {:>20} {:>12.2}x",
            format!("{dm:.1} ({dlo:.1}-{dhi:.1})"),
            format!("{sm:.1} ({slo:.1}-{shi:.1})"),
            dm / sm
        );
    }
}
