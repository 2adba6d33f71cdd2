//! The SSH minion driver on the real test cluster: three minions, each its own dockerd and
//! OpenSSH sshd on 127.0.1.i.

mod common;
use common::cluster::{cluster, disrupt, steady, testbed, Revive, MINIONS};
use common::*;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 1_000_000
    )
}

#[test]
fn get_minions_shows_every_minion_ready() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    let r = t.drover(&[
        "--config",
        c.config.to_str().unwrap(),
        "get",
        "minions",
        "-o",
        "json",
    ]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "MinionList");
    let minions = v["items"].as_array().unwrap();
    assert_eq!(minions.len(), MINIONS);
    for (i, m) in minions.iter().enumerate() {
        assert_eq!(m["id"], format!("m{}", i + 1));
        assert_eq!(m["status"]["phase"], "Ready", "{m}");
        let conditions = &m["status"]["conditions"];
        assert_eq!(conditions[0]["kind"], "Reachable", "{m}");
        assert_eq!(conditions[0]["status"], "Full", "{m}");
        assert_eq!(conditions[1]["kind"], "Ready", "{m}");
        assert_eq!(conditions[1]["status"], "Full", "{m}");
        assert!(
            conditions[1]["lastProbeTime"]
                .as_str()
                .unwrap()
                .ends_with('Z'),
            "RFC 3339: {m}"
        );
        assert!(
            m["status"]["nodeInfo"]["dockerVersion"]
                .as_str()
                .unwrap()
                .len()
                > 2
        );
        let capacity = &m["resources"]["capacity"];
        assert!(
            capacity["cpu"].as_u64().unwrap() >= 1000,
            "capacity read from NCPU"
        );
        assert!(
            capacity["memory"].as_u64().unwrap() > 1 << 20,
            "capacity read from MemTotal"
        );
    }
    let r = t.drover(&["--config", c.config.to_str().unwrap(), "get", "minions"]);
    assert!(
        r.stdout.lines().nth(1).unwrap().contains("Ready"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_container_created_on_m2_is_there_and_not_on_m1() {
    let c = cluster();
    let _g = steady();
    let (m1, m2) = (c.minion("m1"), c.minion("m2"));
    let name = unique("probe");
    runtime().block_on(async {
        let body = bollard::models::ContainerCreateBody {
            image: Some("drover/busybox:latest".into()),
            cmd: Some(vec!["sleep".into(), "300".into()]),
            labels: Some([("io.drover.test".to_string(), name.clone())].into()),
            ..Default::default()
        };
        let id = m2.create_container(&name, body).await.unwrap();
        m2.start_container(&id).await.unwrap();
        let on = |list: Vec<bollard::models::ContainerSummary>| {
            list.iter().any(|s| s.id.as_deref() == Some(id.as_str()))
        };
        assert!(on(m2
            .list_containers(&[("io.drover.test", &name)])
            .await
            .unwrap()));
        assert!(
            on(m2.list_managed().await.unwrap()),
            "drover's label is always set"
        );
        assert!(!on(m1
            .list_containers(&[("io.drover.test", &name)])
            .await
            .unwrap()));
        let inspected = m2.inspect_container(&id).await.unwrap();
        assert_eq!(inspected.state.unwrap().running, Some(true));
        let (code, out) = m2.exec(&id, &["echo", "hello"]).await.unwrap();
        assert_eq!((code, out.trim()), (0, "hello"));
        // Logs, followed until the container stops.
        let (_, _) = m2
            .exec(&id, &["sh", "-c", "echo from-exec > /proc/1/fd/1"])
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = String::new();
        while !seen.contains("from-exec") {
            assert!(
                std::time::Instant::now() < deadline,
                "log line never seen: {seen:?}"
            );
            use futures_util::StreamExt;
            let lines: Vec<_> = m2.logs(&id, false).collect().await;
            seen = lines.into_iter().map(|l| l.unwrap()).collect();
        }
        m2.stop_container(&id, 1).await.unwrap();
        let state = m2.inspect_container(&id).await.unwrap().state.unwrap();
        assert_eq!(state.running, Some(false));
        m2.remove_container(&id).await.unwrap();
        assert!(!on(m2
            .list_containers(&[("io.drover.test", &name)])
            .await
            .unwrap()));
    });
}

#[test]
fn twenty_concurrent_calls_to_one_minion_all_succeed() {
    let c = cluster();
    let _g = steady();
    let m = c.minion("m3");
    runtime().block_on(async {
        let calls = (0..20).map(|_| m.list_managed());
        let results = futures_util::future::join_all(calls).await;
        for r in results {
            r.unwrap();
        }
        // A larger body through the same session: an image import of a few MiB.
        // The testbed's image tar (`busybox-v<version>.tar`).
        let tar = std::fs::read_dir(&c.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.starts_with("busybox") && name.ends_with(".tar")
            })
            .expect("the testbed's image tar");
        let tar = std::fs::read(tar).unwrap();
        m.import_image(tar, "drover/import-check", "latest")
            .await
            .unwrap();
        assert!(m.image_present("drover/import-check:latest").await.unwrap());
        assert!(!m.image_present("drover/absent:latest").await.unwrap());
    });
}

#[test]
fn a_killed_minion_fails_fast_naming_itself_and_recovers_when_revived() {
    let c = cluster();
    let _g = disrupt();
    let m2 = c.minion("m2");
    let rt = runtime();
    rt.block_on(m2.ping()).unwrap();
    {
        let _revive = Revive(2);
        testbed(&["kill", "2"]);
        let start = Instant::now();
        let err = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), m2.ping())
                .await
                .expect("must not hang")
        });
        let err = err.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(err.minion, "m2");
        assert!(
            err.to_string().starts_with("minion m2 (127.0.1.2): "),
            "{err}"
        );
        let h = m2.health();
        assert!(!h.reachable && !h.ready, "{h:?}");
        // The other minions are unaffected.
        rt.block_on(c.minion("m1").ping()).unwrap();
    }
    // Revived (by the guard): the same Minion reconnects without a restart of anything.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rt.block_on(m2.ping()) {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let h = m2.health();
    assert!(h.reachable && h.ready, "{h:?}");
}

#[test]
fn a_local_minion_whose_socket_appears_later_answers_once_it_is_there() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    let socket = t.join("later/docker.sock");
    let mut spec = c.specs().into_iter().find(|s| s.name == "m1").unwrap();
    spec.transport = drover::minion::TransportSpec::Local;
    spec.docker_socket = socket.display().to_string();
    // Docker not started yet (or the path mistyped): a minion that does not answer, not one
    // that cannot be made; diff, apply and the daemon then treat it as any silent minion.
    let m = drover::minion::Minion::new(spec).expect("made before its socket exists");
    let rt = runtime();
    let err = rt.block_on(m.ping()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("Docker socket {}: No such file", socket.display())),
        "{err}"
    );
    assert!(!m.health().ready);
    // The socket appears (here: m1's dockerd, linked in): the same Minion answers.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(c.dir.join("m1/docker.sock"), &socket).unwrap();
    rt.block_on(m.ping())
        .expect("answers once the socket is there");
    assert!(m.health().ready);
}

#[test]
fn an_unknown_host_key_is_refused_until_trusted() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    let config = std::fs::read_to_string(&c.config).unwrap();
    let known = t.join("known_hosts");
    let config = config.replace(
        &c.dir.join("known_hosts").display().to_string(),
        &known.display().to_string(),
    );
    t.write("drover.toml", &config);
    let r = t.drover(&["get", "minions", "m1", "-o", "wide"]);
    assert!(r.stdout.contains("Unreachable"), "{}", r.stdout);
    assert!(
        r.stdout.contains("unknown host key SHA256:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("drover minions trust m1"), "{}", r.stdout);

    let r = t.drover(&["minions", "trust", "m1"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("trusted m1 (127.0.1.1) host key SHA256:"),
        "{}",
        r.stdout
    );
    let r = t.drover(&["get", "minions", "m1"]);
    assert!(r.stdout.contains("Ready"), "{}", r.stdout);

    // A changed key is refused loudly and not silently replaced.
    let other = std::fs::read_to_string(c.dir.join("m2/ssh_host_ed25519_key.pub")).unwrap();
    let key = other
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&known, format!("127.0.1.1 {key}\n")).unwrap();
    let r = t.drover(&["get", "minions", "m1", "-o", "wide"]);
    assert!(
        r.stdout.contains("HOST KEY CHANGED for 127.0.1.1"),
        "{}",
        r.stdout
    );
    let r = t.drover(&["minions", "trust", "m1"]);
    r.expect_code(2);
    assert!(r.stderr.contains("pass --replace"), "{}", r.stderr);
    t.drover(&["minions", "trust", "m1", "--replace"])
        .expect_code(0);
    assert!(t.drover(&["get", "minions", "m1"]).stdout.contains("Ready"));
}

#[test]
fn a_wrong_identity_or_socket_path_fails_clearly() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(t.join("wrong_key"))
        .status()
        .unwrap();
    assert!(status.success());
    let config = std::fs::read_to_string(&c.config).unwrap();
    t.write(
        "drover.toml",
        &config.replace(
            &c.dir.join("id_ed25519").display().to_string(),
            &t.join("wrong_key").display().to_string(),
        ),
    );
    let r = t.drover(&["get", "minions", "m1", "-o", "wide"]);
    assert!(
        r.stdout.contains("public key authentication as root with") && r.stdout.contains("failed"),
        "{}",
        r.stdout
    );

    t.write(
        "drover.toml",
        &config.replace("m1/docker.sock", "m1/nope.sock"),
    );
    let r = t.drover(&["get", "minions", "m1", "-o", "wide"]);
    // Stream-local fails, then the dial-stdio fallback: the minion's own words say why.
    assert!(r.stdout.contains("NotReady"), "{}", r.stdout);
    assert!(
        r.stdout.contains("dial-stdio on the minion failed")
            && r.stdout
                .contains("/tmp/drover-testbed/m1/nope.sock: connect: no such file"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_minion_whose_sshd_forbids_stream_local_forwarding_is_reached_through_dial_stdio() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    // m1's engine, through the second sshd (127.0.1.101) that denies stream-local forwarding.
    let config = std::fs::read_to_string(&c.config)
        .unwrap()
        .replace("address = \"127.0.1.1\"", "address = \"127.0.1.101\"");
    t.write("drover.toml", &config);
    let r = t.drover(&["get", "minions", "m1", "-o", "wide"]);
    assert!(r.stdout.contains("Ready"), "{}", r.stdout);
    let log = std::fs::read_to_string(c.dir.join("m1/sshd-nofwd.log")).unwrap();
    assert!(
        log.contains("denied") || log.contains("refused"),
        "the fast path must have been refused:\n{log}"
    );
}

/// OpenSSH's SHA-256 fingerprint of a minion's host key, from `ssh-keygen -l`.
fn host_fingerprint(minion: &str) -> String {
    let key = cluster().dir.join(minion).join("ssh_host_ed25519_key.pub");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_string()
}

#[test]
fn a_git_source_over_ssh_trusts_what_the_minions_trust() {
    let c = cluster();
    let _g = steady();
    let t = TestDir::new();
    // A bare repository on this machine, served by m1's sshd (git-upload-pack over ssh).
    let work = GitRepo::init(&t.join("work"));
    t.copy_manifests("work");
    work.commit_all("manifests");
    let bare = t.join("origin.git");
    git2::build::RepoBuilder::new()
        .bare(true)
        .clone(work.path.to_str().unwrap(), &bare)
        .unwrap();
    let url = format!("ssh://root@127.0.1.1{}", bare.display());
    let known = t.join("known_hosts");
    let config = std::fs::read_to_string(&c.config).unwrap().replace(
        &c.dir.join("known_hosts").display().to_string(),
        &known.display().to_string(),
    );
    t.write("drover.toml", &config);

    // Unknown: refused, naming the host, the key's type and fingerprint, the file and the step.
    let fingerprint = host_fingerprint("m1");
    let r = t.drover(&["diff", &url]);
    r.expect_code(2);
    for part in [
        format!("unknown ssh-ed25519 host key {fingerprint} for 127.0.1.1"),
        known.display().to_string(),
        "drover source trust".into(),
    ] {
        assert!(r.stderr.contains(&part), "{part} not in {}", r.stderr);
    }

    let r = t.drover(&["source", "trust", &url]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(&format!(
            "trusted 127.0.1.1 ssh-ed25519 host key {fingerprint}"
        )),
        "{}",
        r.stdout
    );
    let r = t.drover(&["diff", &url]);
    r.expect_code(1);
    assert!(r.stdout.contains("4 to create"), "{}", r.stdout);

    // The file the minions use is the one the source uses: a key recorded by
    // `drover minions trust` is enough, and a changed key is refused loudly.
    let other = std::fs::read_to_string(c.dir.join("m2/ssh_host_ed25519_key.pub")).unwrap();
    let key: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(&known, format!("127.0.1.1 {}\n", key.join(" "))).unwrap();
    let r = t.drover(&["diff", &url]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("HOST KEY CHANGED for 127.0.1.1")
            && r.stderr.contains("drover source trust --replace"),
        "{}",
        r.stderr
    );
    t.drover(&["source", "trust", &url]).expect_code(2);
    t.drover(&["source", "trust", &url, "--replace"])
        .expect_code(0);
    std::fs::remove_file(&known).unwrap();
    t.drover(&["minions", "trust", "m1"]).expect_code(0);
    t.drover(&["diff", &url]).expect_code(1);
}
