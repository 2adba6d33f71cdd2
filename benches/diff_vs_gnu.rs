//! Benchmark: `drover diff` over 10,000 objects (pods, RCs, services; 1% changed against the
//! store) next to GNU `diff -ru` over the same two JSON trees, measured in the same run.
//! Prints wall times (median of several runs), their ratio, and drover's peak memory.
//!
//! Run: `cargo bench --bench diff_vs_gnu` (targets: ratio <= 1.5, peak < 100 MB).

use drover::model::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OBJECTS: usize = 10_000;
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
        }),
    }
}

fn write_tree(dir: &Path, changed: impl Fn(usize) -> bool) {
    for i in 0..OBJECTS {
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

/// Runs two commands alternately `RUNS` times each (so both see the same machine conditions)
/// with stdout discarded, checks their exit codes, and returns both medians.
fn time_alternately(
    mut a: impl FnMut() -> Command,
    mut b: impl FnMut() -> Command,
    expect_code: i32,
) -> (Duration, Duration) {
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
    (times.0[RUNS / 2], times.1[RUNS / 2])
}

/// Largest resident set of any child waited for so far, in bytes.
fn children_max_rss() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as u64 * 1024
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let work = match std::env::var_os("DROVER_BENCH_KEEP") {
        Some(dir) => Box::new(std::path::PathBuf::from(dir)) as Box<dyn AsRef<Path>>,
        None => Box::new(work),
    };
    let before = work.as_ref().as_ref().join("before");
    let after = work.as_ref().as_ref().join("after");
    let state = work.as_ref().as_ref().join("state");
    let changed = |i: usize| i % 100 == 7; // 1%
    write_tree(&before, |_| false);
    write_tree(&after, changed);

    // The store holds `before` as observed state, exactly as a successful apply records it.
    let spec = drover::source::SourceSpec::new(before.to_str().unwrap(), None, None);
    let snapshot = drover::source::read(&spec, &Default::default()).unwrap();
    let desired = drover::manifest::desired_state(&snapshot.files).unwrap();
    assert_eq!(desired.objects.len(), OBJECTS);
    let store = drover::store::Store::new(&state);
    let lock = store.lock("bench", Duration::from_secs(5)).unwrap();
    let batch = drover::plan::objects::record_batch(&desired, &store.read_index().unwrap());
    store.commit(&lock, &batch).unwrap();
    drop(lock);

    let drover_bin = env!("CARGO_BIN_EXE_drover");
    // Peak memory first, from one drover run alone, so the maximum is drover's own.
    let status = Command::new(drover_bin)
        .arg("--state")
        .arg(&state)
        .arg("diff")
        .arg(&after)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let rss = children_max_rss();
    let (drover, gnu) = time_alternately(
        || {
            let mut c = Command::new(drover_bin);
            c.arg("--state")
                .arg(&state)
                .arg("diff")
                .arg(&after)
                .env("NO_COLOR", "1");
            c
        },
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
        OBJECTS / 100,
        "1% must show as changes"
    );

    let ratio = drover.as_secs_f64() / gnu.as_secs_f64();
    println!(
        "diff_vs_gnu: {OBJECTS} objects, {} changed, median of {RUNS} runs",
        OBJECTS / 100
    );
    println!(
        "  GNU diff -ru (baseline)   {:>8.1} ms",
        gnu.as_secs_f64() * 1e3
    );
    println!(
        "  drover diff               {:>8.1} ms",
        drover.as_secs_f64() * 1e3
    );
    println!("  ratio drover / GNU diff   {ratio:>8.2}x   (target <= 1.5x)");
    println!(
        "  drover peak memory        {:>8.1} MB   (target < 100 MB)",
        rss as f64 / 1e6
    );
}
