//! Benchmark: the latency of one Docker API call (list containers) to a test minion through
//! drover's persistent SSH transport, against the same call on the minion's local socket, and
//! against the stock `docker -H ssh://` CLI doing the same work — all in one run. Then 20
//! concurrent calls to one minion.
//!
//! Needs root: brings up the test cluster with `tests/cluster/testbed up` (left running).
//! Run: `cargo bench --bench minion_latency` (targets: SSH <= 1.5x local, >= 10x faster than CLI).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLS: usize = 200;
const CLI_CALLS: usize = 10;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:>8.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let up = Command::new(project.join("tests/cluster/testbed"))
        .args(["up", "3"])
        .status()
        .unwrap();
    assert!(up.success(), "testbed up failed");
    let dir = PathBuf::from(
        std::env::var("DROVER_TESTBED_DIR").unwrap_or_else(|_| "/tmp/drover-testbed".into()),
    );
    let settings = drover::config::Settings::load(Some(&dir.join("drover.toml"))).unwrap();
    let spec = drover::minion::minion_specs(
        &settings,
        &settings.project(&settings.state_dir(None)).unwrap(),
        None,
    )
    .unwrap()
    .into_iter()
    .find(|s| s.name == "m1")
    .unwrap();
    let socket = spec.docker_socket.clone();
    let minion = drover::minion::Minion::new(spec).unwrap();
    let local =
        bollard::Docker::connect_with_unix(&socket, 30, bollard::API_DEFAULT_VERSION).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let (ssh_times, local_times, concurrent) = rt.block_on(async {
        // Warm both paths (session set up, connection pooled), then alternate the calls so
        // both see the same machine conditions.
        minion.list_managed().await.unwrap();
        local
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .unwrap();
        let (mut ssh, mut loc) = (Vec::new(), Vec::new());
        for _ in 0..CALLS {
            let t = Instant::now();
            minion.list_containers(&[]).await.unwrap();
            ssh.push(t.elapsed());
            let t = Instant::now();
            let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .build();
            local.list_containers(Some(options)).await.unwrap();
            loc.push(t.elapsed());
        }
        let t = Instant::now();
        let results =
            futures_util::future::join_all((0..20).map(|_| minion.list_containers(&[]))).await;
        let errors = results.iter().filter(|r| r.is_err()).count();
        (ssh, loc, (t.elapsed(), errors))
    });

    // The stock CLI over ssh, with the testbed's key and known_hosts through a wrapper.
    let wrapper = tempfile::tempdir().unwrap();
    let ssh_script = wrapper.path().join("ssh");
    std::fs::write(
        &ssh_script,
        format!(
            "#!/bin/sh\nexec /usr/bin/ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \"$@\"\n",
            dir.join("id_ed25519").display(),
            dir.join("known_hosts").display()
        ),
    )
    .unwrap();
    let mut mode = std::fs::metadata(&ssh_script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&ssh_script, mode).unwrap();
    let path = format!(
        "{}:{}",
        wrapper.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cli = Vec::new();
    for _ in 0..CLI_CALLS {
        let t = Instant::now();
        let status = Command::new("docker")
            .args(["-H", "ssh://root@127.0.1.1", "ps", "-a"])
            .env("PATH", &path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        cli.push(t.elapsed());
        assert!(status.success(), "docker -H ssh:// failed");
    }

    let (ssh, loc, cli) = (median(ssh_times), median(local_times), median(cli));
    println!("minion_latency: list containers on minion m1, median per call");
    println!(
        "  local socket (baseline)        {}   ({CALLS} calls)",
        ms(loc)
    );
    println!(
        "  drover SSH transport           {}   ({CALLS} calls)",
        ms(ssh)
    );
    println!(
        "  docker -H ssh:// CLI           {}   ({CLI_CALLS} calls)",
        ms(cli)
    );
    println!(
        "  ratio SSH / local socket       {:>8.2}x   (target <= 1.5x)",
        ssh.as_secs_f64() / loc.as_secs_f64()
    );
    println!(
        "  speed-up vs docker -H ssh://   {:>8.1}x   (target >= 10x)",
        cli.as_secs_f64() / ssh.as_secs_f64()
    );
    println!(
        "  20 concurrent calls            {}   total, {} errors",
        ms(concurrent.0),
        concurrent.1
    );
}
