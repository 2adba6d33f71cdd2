//! Benchmark: `drover diff` over 10,000 and 50,000 objects (pods, RCs, services; 1% changed
//! against the store) next to GNU `diff -ru` over the same two JSON trees, measured in the same
//! run. Prints wall times (median, fastest and slowest of alternating runs), their ratio, and
//! drover's peak memory (its own maximum resident set, from wait4 in a small helper process).
//!
//! Run: `cargo bench --bench diff_vs_gnu` (targets: ratio <= 1.0 at 10,000 objects; peak under
//! 100 MB at both sizes, i.e. at most 2 KB per object at 50,000).
//! `DROVER_BENCH_SIZES=10000` picks the sizes; `DROVER_BENCH_DROVER=path` measures another
//! drover binary (an older build) against the same baseline.

use drover::model::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 11;

fn pod_state(i: usize, image: &str) -> PodState {
    PodState {
        manifest: ContainerManifest {
            volumes: vec![],
            containers: vec![Container {
                name: "app".into(),
                image: image.into(),
                command: vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()],
                ports: vec![Port {
                    name: Some("http".into()),
                    container_port: 80,
                    ..Default::default()
                }],
                env: vec![EnvVar {
                    name: "INDEX".into(),
                    value: i.to_string(),
                }],
                cpu: 100,
                memory: 64 << 20,
                ..Default::default()
            }],
            restart_policy: RestartPolicy::Always {},
            ..Default::default()
        },
    }
}

fn labels(i: usize) -> Labels {
    [
        ("app".to_string(), format!("app{}", i / 3)),
        ("tier".to_string(), "web".to_string()),
    ]
    .into()
}

/// The i-th object; `changed` gives the 1% their new version.
fn object(i: usize, changed: bool) -> Object {
    let image = if changed {
        "drover/busybox:v2"
    } else {
        "drover/busybox:v1"
    };
    match i % 10 {
        0..=4 => Object::Pod(Pod {
            id: format!("pod-{i}"),
            api_version: API_VERSION.into(),
            labels: labels(i),
            desired_state: pod_state(i, image),
            node_selector: Labels::new(),
        }),
        5..=7 => Object::ReplicationController(ReplicationController {
            id: format!("rc-{i}"),
            api_version: API_VERSION.into(),
            labels: labels(i),
            desired_state: ReplicationControllerState {
                replicas: if changed { 5 } else { 3 },
                replica_selector: labels(i),
                pod_template: PodTemplate {
                    desired_state: pod_state(i, image),
                    labels: labels(i),
                    node_selector: Labels::new(),
                },
            },
        }),
        _ => Object::Service(Service {
            id: format!("svc-{i}"),
            api_version: API_VERSION.into(),
            labels: labels(i),
            port: if changed { 8081 } else { 8080 },
            protocol: Protocol::TCP,
            container_port: Some(PortRef::Name("http".into())),
            selector: labels(i),
            session_affinity: SessionAffinity::None,
            proxy_protocol: None,
        }),
    }
}

fn write_tree(dir: &Path, objects: usize, changed: impl Fn(usize) -> bool) {
    for i in 0..objects {
        let o = object(i, changed(i));
        let sub = dir.join(format!("{:03}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("{}-{}.json", o.kind().plural(), o.id())),
            o.normalized_json(),
        )
        .unwrap();
    }
}

/// Wall times of one command's runs.
struct Times(Vec<Duration>);

impl Times {
    fn median(&self) -> Duration {
        self.0[self.0.len() / 2]
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    fn spread(&self) -> String {
        format!(
            "{:>8.1} ms  (fastest {:.1}, slowest {:.1})",
            Self::ms(self.median()),
            Self::ms(self.0[0]),
            Self::ms(self.0[self.0.len() - 1])
        )
    }
}

/// Runs two commands alternately `RUNS` times each (so both see the same machine conditions)
/// with stdout discarded, checks their exit codes, and returns both sorted.
fn time_alternately(
    mut a: impl FnMut() -> Command,
    mut b: impl FnMut() -> Command,
    expect_code: i32,
) -> (Times, Times) {
    let mut times = (Vec::new(), Vec::new());
    let run = |mut c: Command, into: &mut Vec<Duration>| {
        let start = Instant::now();
        let status = c.stdout(Stdio::null()).status().unwrap();
        into.push(start.elapsed());
        assert_eq!(status.code(), Some(expect_code), "unexpected exit status");
    };
    for _ in 0..RUNS {
        run(a(), &mut times.0);
        run(b(), &mut times.1);
    }
    times.0.sort();
    times.1.sort();
    (Times(times.0), Times(times.1))
}

/// Runs a command alone and returns its exit code and its own peak resident set in bytes.
///
/// Not spawned from this process: a child's peak as wait4 reports it counts the memory of
/// the process it was spawned from up to its exec (Linux keeps the larger high-water mark
/// across exec), and this process holds the trees it wrote. So a fresh copy of this benchmark
/// (`--peak-rss-of`, small) spawns the command and reports what wait4 says.
fn peak_rss(c: Command) -> (i32, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--peak-rss-of")
        .arg(c.get_program())
        .args(c.get_args())
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    assert!(out.status.success(), "peak-rss helper failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (code, rss) = text.trim().split_once(' ').unwrap();
    (code.parse().unwrap(), rss.parse().unwrap())
}

/// The `--peak-rss-of PROGRAM ARGS...` mode: runs the command with stdout discarded and prints
/// its exit code and its peak resident set in bytes (wait4's rusage is the child's own).
#[allow(clippy::zombie_processes)] // wait4 below reaps it
fn report_peak_rss(program: &str, args: &[String]) {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: all-zero bytes are a valid rusage, which wait4(2) fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; writes only into locals we own. The Child is not
    // waited for again.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    println!(
        "{} {}",
        libc::WEXITSTATUS(status),
        usage.ru_maxrss as u64 * 1024
    );
}

/// The machine's load averages (1, 5, 15 minutes): this benchmark shares its cores.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--peak-rss-of") {
        return report_peak_rss(&args[2], &args[3..]);
    }
    let sizes: Vec<usize> = std::env::var("DROVER_BENCH_SIZES")
        .map(|s| s.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![10_000, 50_000]);
    for objects in sizes {
        bench(objects);
    }
}

fn bench(objects: usize) {
    let work = tempfile::tempdir().unwrap();
    let work = match std::env::var_os("DROVER_BENCH_KEEP") {
        Some(dir) => Box::new(std::path::PathBuf::from(dir).join(objects.to_string()))
            as Box<dyn AsRef<Path>>,
        None => Box::new(work),
    };
    let before = work.as_ref().as_ref().join("before");
    let after = work.as_ref().as_ref().join("after");
    let state = work.as_ref().as_ref().join("state");
    let changed = |i: usize| i % 100 == 7; // 1%
    write_tree(&before, objects, |_| false);
    write_tree(&after, objects, changed);

    // The store holds `before` as observed state, exactly as a successful apply records it.
    let spec = drover::source::SourceSpec::new(before.to_str().unwrap(), None, None);
    let snapshot = drover::source::read(&spec, &Default::default()).unwrap();
    let desired = drover::manifest::desired_state(&snapshot.files).unwrap();
    assert_eq!(desired.objects.len(), objects);
    let store = drover::store::Store::new(&state);
    let lock = store.lock("bench", Duration::from_secs(5)).unwrap();
    let batch = drover::plan::objects::record_batch(&desired, &store.read_index().unwrap());
    store.commit(&lock, &batch).unwrap();
    drop(lock);
    drop((snapshot, desired, batch));

    // Another build (an older one, to compare) can stand in; each run keeps its own baseline.
    let drover_bin = std::env::var("DROVER_BENCH_DROVER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_drover").to_string());
    let drover_bin = drover_bin.as_str();
    let drover_diff = || {
        let mut c = Command::new(drover_bin);
        c.arg("--state")
            .arg(&state)
            .arg("diff")
            .arg(&after)
            .env("NO_COLOR", "1");
        c
    };
    // Peak memory from drover runs alone (the largest of three).
    let rss = (0..3)
        .map(|_| {
            let (code, rss) = peak_rss(drover_diff());
            assert_eq!(code, 1);
            rss
        })
        .max()
        .unwrap();
    let load_before = load_average();
    let (drover, gnu) = time_alternately(
        drover_diff,
        || {
            let mut c = Command::new("diff");
            c.arg("-ru").arg(&before).arg(&after);
            c
        },
        1,
    );
    let out = Command::new(drover_bin)
        .arg("--state")
        .arg(&state)
        .args(["diff", "-o", "json"])
        .arg(&after)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["summary"]["change"],
        objects / 100,
        "1% must show as changes"
    );

    let ratio = drover.median().as_secs_f64() / gnu.median().as_secs_f64();
    println!(
        "diff_vs_gnu: {objects} objects, {} changed, {RUNS} alternating runs each",
        objects / 100
    );
    println!(
        "  load average              {load_before} before, {} after",
        load_average()
    );
    println!("  GNU diff -ru (baseline)   {}", gnu.spread());
    println!("  drover diff               {}", drover.spread());
    println!("  ratio drover / GNU diff   {ratio:>8.2}x   (target <= 1.0x, medians)");
    println!(
        "  drover peak memory        {:>8.1} MB   ({:.2} KB per object; target < 100 MB, <= 2 KB per object)",
        rss as f64 / 1e6,
        rss as f64 / 1024.0 / objects as f64
    );
}
