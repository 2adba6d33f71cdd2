//! Services on the real 3-minion cluster, through `drover daemon`'s proxy: every pod of an RC
//! answers through the service's port; a killed container and a failing liveness probe cost no
//! request once the probe has judged; a UDP echo service; ClientIP affinity; a front pod
//! reaching its backend only through the variables it was given; a port that cannot be bound
//! is that service's error alone; and a rolling update under load fails no request.
//!
//! The proxy listens on every address here and is advertised on minion 1's bridge gateway
//! (172.30.1.1), which containers on every minion reach through their own bridge.

mod common;
use common::cluster::{docker, of_project, project_dir, steady, tear_down};
use common::daemon::Daemon;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADVERTISE: &str = "172.30.1.1";

/// A port for a service: one no other test of this run uses.
/// A port free on every address, below the kernel's ephemeral range (32768 and up here), so
/// nothing that binds port 0 meanwhile (a daemon's status API, Docker publishing a pod, an
/// outgoing connection) can take it before the proxy binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20000 + (std::process::id() % 10000) as u16;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 2000;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
}

/// A project whose proxy serves on every address and is advertised to containers.
fn services_dir() -> (TestDir, String) {
    let (t, p) = project_dir();
    let config = std::fs::read_to_string(t.join("drover.toml")).unwrap();
    t.write(
        "drover.toml",
        &format!("{config}[proxy]\nlisten = \"0.0.0.0\"\nadvertise = \"{ADVERTISE}\"\n"),
    );
    (t, p)
}

/// An RC of httpd pods that answer with their own hostname (one per pod) at `/`, and with
/// `ok` at `/healthz` while `/w/healthz` exists; probed there. httpd runs under a shell, so
/// killing it makes the container exit (and Docker restart it).
fn web_rc(id: &str, replicas: u32, version: &str) -> String {
    format!(
        r#"{{"id": "{id}", "kind": "ReplicationController", "apiVersion": "v1beta1",
  "desiredState": {{"replicas": {replicas}, "replicaSelector": {{"app": "{id}"}},
    "podTemplate": {{"labels": {{"app": "{id}"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "{id}",
      "containers": [{{"name": "httpd", "image": "drover/busybox:latest",
        "command": ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && echo ok > /w/healthz && httpd -f -p 80 -h /w; exit 1"],
        "env": [{{"name": "VERSION", "value": "{version}"}}],
        "ports": [{{"name": "http", "containerPort": 80}}],
        "livenessProbe": {{"httpGet": {{"path": "/healthz", "port": "http"}}, "timeoutSeconds": 1}}}}]}}}}}}}}}}"#
    )
}

fn service(id: &str, port: u16, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "kind": "Service", "apiVersion": "v1beta1", "port": {port},
  "containerPort": "http", "selector": {{"app": "{id}"}}{extra}}}"#
    )
}

/// The time of day in UTC as the daemon's log writes it (HH:MM:SS.mmm), to line a client's
/// failure up with the log.
fn utc_time_of_day() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let (s, ms) = (now.as_secs() % 86_400, now.subsec_millis());
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
}

/// One HTTP request on a new connection; the body, or why it failed.
fn get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.trim().to_string())
        }
        _ => Err(format!("bad answer: {text:?}")),
    }
}

fn wait_until(what: &str, limit: Duration, daemon: &Daemon, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// From now on every request succeeds, and within `limit` all `pods` pods answer again.
fn every_request_succeeds_until_all_answer(
    port: u16,
    pods: usize,
    limit: Duration,
    daemon: &Daemon,
) {
    let start = Instant::now();
    loop {
        let bodies =
            answers(port, 10).unwrap_or_else(|e| panic!("a request failed: {e}\n{}", daemon.log()));
        if bodies.len() == pods {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "only {} pods answered after {limit:?}\n{}",
            bodies.len(),
            daemon.log()
        );
    }
}

/// The distinct bodies of `n` requests, or the first failure.
fn answers(port: u16, n: usize) -> Result<std::collections::BTreeSet<String>, String> {
    (0..n).map(|_| get(port, "/")).collect()
}

fn ready_endpoints(t: &TestDir, service: &str) -> usize {
    let r = t.drover(&["get", "services", service, "-o", "json"]);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.stdout) else {
        return 0;
    };
    v["currentState"]["endpoints"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["ready"] == true).count())
        .unwrap_or(0)
}

/// "minion container-id" of the project's containers with a label.
fn containers(project: &str, label: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for m in ["m1", "m2", "m3"] {
        for id in docker(
            m,
            &[
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                &of_project(project),
                "--filter",
                label,
            ],
        )
        .lines()
        {
            all.push((m.to_string(), id.to_string()));
        }
    }
    all
}

/// Removes everything the project made.
/// A project with an RC of `replicas` web pods behind a service, its daemon started and every
/// endpoint ready: (dir, project, service port, daemon).
fn web_behind_a_service(id: &str, replicas: u32) -> (TestDir, String, u16, Daemon) {
    let (t, p) = services_dir();
    let port = free_port();
    t.write(&format!("manifests/{id}.json"), &web_rc(id, replicas, "1"));
    t.write(
        &format!("manifests/{id}-service.json"),
        &service(id, port, ""),
    );
    let daemon = Daemon::start(&t, &[]);
    wait_until(
        "every endpoint ready",
        Duration::from_secs(60),
        &daemon,
        || ready_endpoints(&t, id) == replicas as usize,
    );
    (t, p, port, daemon)
}

fn restart_count(minion: &str, id: &str) -> u32 {
    docker(minion, &["inspect", "-f", "{{.RestartCount}}", id])
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn every_pod_answers_through_the_proxy_and_a_failing_probe_or_killed_container_is_handled() {
    let _g = steady();
    let (t, p, port, daemon) = web_behind_a_service("web", 3);
    // Round robin: over a run of requests, every pod answers, none fails.
    let bodies = answers(port, 30).unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let r = t.drover(&["describe", "service", "web"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("Port:             ") && r.stdout.contains(": ready"),
        "{}",
        r.stdout
    );

    // A container killed by hand (Docker does not restart what was killed on purpose): once
    // the daemon replaced its pod (it left the proxy first), the service answers every
    // request from three pods again.
    let (m, id) = containers(&p, "label=io.drover.container=httpd")[0].clone();
    let pod = docker(
        &m,
        &[
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.drover.pod\"}}",
            &id,
        ],
    );
    docker(&m, &["kill", &id]);
    wait_until(
        "the killed pod to be replaced",
        Duration::from_secs(30),
        &daemon,
        || {
            daemon
                .log()
                .contains(&format!("- pod {} on {m}", pod.trim()))
        },
    );
    every_request_succeeds_until_all_answer(port, 3, Duration::from_secs(30), &daemon);

    // A container that crashes is restarted by Docker (policy always): the prober notices,
    // holds it out of the proxy until its probe passes again, and nothing fails after.
    let (m, id) = containers(&p, "label=io.drover.container=httpd")[0].clone();
    docker(&m, &["exec", &id, "killall", "httpd"]);
    wait_until(
        "the prober to see the restart",
        Duration::from_secs(30),
        &daemon,
        || daemon.log().contains("restarted by Docker"),
    );
    every_request_succeeds_until_all_answer(port, 3, Duration::from_secs(30), &daemon);
    assert!(restart_count(&m, &id) >= 1);

    // A probe that fails: /healthz gone. The pod leaves the endpoints (no request reaches it
    // while it fails) and is restarted after the threshold, which makes /healthz again.
    let (m, id) = containers(&p, "label=io.drover.container=httpd")[1].clone();
    let started = |m: &str, id: &str| docker(m, &["inspect", "-f", "{{.State.StartedAt}}", id]);
    let before = started(&m, &id);
    let victim = docker(&m, &["exec", &id, "hostname"]).trim().to_string();
    let pod = docker(
        &m,
        &[
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.drover.pod\"}}",
            &id,
        ],
    );
    let failure = format!(
        "pod {} on {m}: container httpd: liveness probe failed",
        pod.trim()
    );
    let failures_before = daemon.log().matches(&failure).count();
    docker(&m, &["exec", &id, "rm", "/w/healthz"]);
    wait_until(
        "the failing pod to leave the endpoints",
        Duration::from_secs(10),
        &daemon,
        || daemon.log().matches(&failure).count() > failures_before,
    );
    let during = answers(port, 20).unwrap();
    assert!(
        !during.contains(&victim),
        "a pod failing its probe still got requests"
    );
    wait_until(
        "the failing container to be restarted",
        Duration::from_secs(30),
        &daemon,
        || started(&m, &id) != before,
    );
    assert!(daemon.log().contains("restarted"), "{}", daemon.log());
    every_request_succeeds_until_all_answer(port, 3, Duration::from_secs(30), &daemon);
    drop(daemon);
    tear_down(&t);
}

#[test]
fn udp_affinity_service_variables_and_a_taken_port() {
    let _g = steady();
    let (t, p) = services_dir();
    let (udp_port, sticky_port, backend_port) = (free_port(), free_port(), free_port());
    // A port someone else holds: that service reports it, the others serve.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    t.write(
        "manifests/echo.json",
        r#"{"id": "echo", "kind": "ReplicationController", "apiVersion": "v1beta1",
  "desiredState": {"replicas": 2, "replicaSelector": {"app": "echo"},
    "podTemplate": {"labels": {"app": "echo"}, "desiredState": {"manifest": {"version": "v1beta1", "id": "echo",
      "containers": [{"name": "echo", "image": "drover/busybox:latest", "command": ["udp-echo", "5353"],
        "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}],
        "livenessProbe": {"exec": {"command": ["pidof", "udp-echo"]}}}]}}}}}"#,
    );
    t.write(
        "manifests/echo-service.json",
        &format!(
            r#"{{"id": "echo", "kind": "Service", "apiVersion": "v1beta1", "port": {udp_port},
  "protocol": "UDP", "containerPort": "dns", "selector": {{"app": "echo"}}}}"#
        ),
    );
    t.write("manifests/sticky.json", &web_rc("sticky", 3, "1"));
    t.write(
        "manifests/sticky-service.json",
        &service("sticky", sticky_port, r#", "sessionAffinity": "ClientIP""#),
    );
    // Probed by a TCP connect instead (and the echo pods by exec): only ready pods are
    // endpoints, so the waits below prove every kind of probe passes.
    t.write(
        "manifests/backend.json",
        &web_rc("backend", 1, "1").replace(
            r#""httpGet": {"path": "/healthz", "port": "http"}"#,
            r#""tcpSocket": {"port": 80}"#,
        ),
    );
    t.write(
        "manifests/backend-service.json",
        &service("backend", backend_port, ""),
    );
    t.write(
        "manifests/blocked.json",
        &service("blocked", taken_port, ""),
    );
    // The front pod is made after the services exist (same round): it gets their variables.
    t.write(
        "manifests/front.json",
        r#"{"id": "front", "kind": "Pod", "apiVersion": "v1beta1",
  "desiredState": {"manifest": {"version": "v1beta1", "id": "front",
    "containers": [{"name": "front", "image": "drover/busybox:latest", "command": ["sleep", "3600"]}]}}}"#,
    );
    let daemon = Daemon::start(&t, &[]);
    wait_until(
        "the services' endpoints",
        Duration::from_secs(60),
        &daemon,
        || {
            ready_endpoints(&t, "sticky") == 3
                && ready_endpoints(&t, "echo") == 2
                && ready_endpoints(&t, "backend") == 1
        },
    );

    // UDP: each client's datagrams go to one pod and come back through the proxy.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut echoed = String::new();
    for attempt in 0..20 {
        client
            .send_to(format!("ping{attempt}").as_bytes(), ("127.0.0.1", udp_port))
            .unwrap();
        let mut buf = [0u8; 1500];
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            echoed = String::from_utf8_lossy(&buf[..n]).to_string();
            break;
        }
    }
    assert!(
        echoed.ends_with(" ping0") || echoed.contains(" ping"),
        "no UDP echo: {echoed:?}"
    );

    // ClientIP affinity: one client, one pod.
    let bodies = answers(sticky_port, 20).unwrap();
    assert_eq!(bodies.len(), 1, "{bodies:?}");

    // The front container reaches the backend only through the variables it was given.
    let (minion, id) = containers(&p, "label=io.drover.container=front")
        .pop()
        .expect("the front container runs");
    let env = docker(&minion, &["exec", &id, "env"]);
    assert!(
        env.contains(&format!("BACKEND_SERVICE_HOST={ADVERTISE}")),
        "{env}"
    );
    assert!(
        env.contains(&format!("BACKEND_PORT=tcp://{ADVERTISE}:{backend_port}")),
        "{env}"
    );
    let page = docker(
        &minion,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "wget -qO- http://$BACKEND_SERVICE_HOST:$BACKEND_SERVICE_PORT/",
        ],
    );
    assert!(
        !page.trim().is_empty(),
        "the front pod got no answer from the backend"
    );

    // The taken port: that service's error in the log and in get services; the others serve.
    wait_until(
        "the blocked service's error",
        Duration::from_secs(20),
        &daemon,
        || {
            let r = t.drover(&["get", "services", "blocked"]);
            r.stdout.contains("cannot listen")
        },
    );
    assert!(daemon.log().contains("cannot listen"), "{}", daemon.log());
    assert_eq!(answers(sticky_port, 3).unwrap().len(), 1);
    // The others say who serves them; with the daemon stopped, nothing does.
    let proxy_column = |t: &TestDir, name: &str| {
        let r = t.drover(&["get", "services", name, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
        v["currentState"]["proxy"].clone()
    };
    let served = proxy_column(&t, "sticky");
    assert_eq!(served["state"], "served", "{served}");
    assert!(
        served["servedBy"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("daemon pid {} on ", daemon.pid())),
        "{served}"
    );
    drop(taken);
    drop(daemon);
    assert_eq!(proxy_column(&t, "sticky")["state"], "notServed");
    let listed = t.drover(&["get", "services", "sticky"]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("sticky ") && l.ends_with("not served")),
        "{}",
        listed.stdout
    );
    tear_down(&t);
}

/// Requests through the proxy, one new connection each, as fast as one client goes, until
/// `finish`: how many succeeded, and each failure with when it happened.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let (sent, wall) = (start.elapsed(), utc_time_of_day());
                    match get(port, "/") {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // When, and for how long: to line it up with the daemon's log.
                            let took = start.elapsed() - sent;
                            errors.lock().unwrap().push(format!(
                                "{e} (sent at {wall} UTC, {sent:.3?} into the load; failed after {took:.3?})"
                            ));
                        }
                    }
                }
            })
        };
        Load {
            stop,
            ok,
            errors,
            thread,
        }
    }

    /// Stops the load: (requests that succeeded, the failures).
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let errors = self.errors.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

#[test]
fn a_rolling_update_under_load_fails_no_request() {
    let _g = steady();
    let (t, p, port, daemon) = web_behind_a_service("roll", 3);
    let old: Vec<(String, String)> = containers(&p, "label=io.drover.container=httpd");

    let load = Load::start(port);
    t.write("manifests/roll.json", &web_rc("roll", 3, "2"));
    wait_until(
        "the rollout to finish",
        Duration::from_secs(120),
        &daemon,
        || {
            let now = containers(&p, "label=io.drover.container=httpd");
            now.len() == 3
                && now.iter().all(|c| !old.contains(c))
                && ready_endpoints(&t, "roll") == 3
        },
    );
    let (ok, errors) = load.finish();
    assert!(ok > 100, "too little load to mean anything: {ok} requests");
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}\n{}\n{}",
        errors.len(),
        ok + errors.len(),
        t.drover(&["get", "services", "roll", "-o", "json"]).stdout,
        daemon.log()
    );
    drop(daemon);
    tear_down(&t);
}

#[test]
fn drover_proxy_alone_serves_what_apply_recorded_and_follows_it() {
    let _g = steady();
    let (t, _p) = services_dir();
    let port = free_port();
    t.write("manifests/solo.json", &web_rc("solo", 2, "1"));
    t.write("manifests/solo-service.json", &service("solo", port, ""));
    t.drover(&["apply"]).expect_code(0);
    // The same stop-on-drop as the daemon's, and its log for failures.
    let proxy = Daemon::spawn(&t, &["proxy", "--listen", "127.0.0.1"], "proxy.log");
    wait_until(
        "both pods to answer",
        Duration::from_secs(30),
        &proxy,
        || answers(port, 10).is_ok_and(|b| b.len() == 2),
    );
    // A scale-up applied beside it: the proxy follows the store.
    t.write("manifests/solo.json", &web_rc("solo", 3, "1"));
    t.drover(&["apply"]).expect_code(0);
    wait_until(
        "the third pod to answer",
        Duration::from_secs(30),
        &proxy,
        || answers(port, 12).is_ok_and(|b| b.len() == 3),
    );
    let state = |t: &TestDir| {
        let r = t.drover(&["get", "services", "solo", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["currentState"]["proxy"].clone()
    };
    let served = state(&t);
    assert!(
        served["servedBy"][0]
            .as_str()
            .is_some_and(|by| by.starts_with(&format!("proxy pid {} on ", proxy.pid()))),
        "{served}"
    );
    drop(proxy);
    assert_eq!(state(&t)["state"], "notServed");
    tear_down(&t);
}

#[test]
fn a_drain_under_load_fails_no_request_and_uncordon_lets_pods_return() {
    let _g = steady();
    let (t, p, port, daemon) = web_behind_a_service("drained", 3);
    // Three replicas on three minions: one is on m2.
    let on = |minion: &str| {
        containers(&p, "label=io.drover.container=httpd")
            .iter()
            .filter(|(m, _)| m == minion)
            .count()
    };
    assert_eq!(
        on("m2"),
        1,
        "{:?}",
        containers(&p, "label=io.drover.container=httpd")
    );

    let load = Load::start(port);
    // Through the daemon, which holds the store: the command waits until m2 is empty.
    let r = t.drover(&["minions", "drain", "m2", "--deadline", "120s"]);
    let (ok, errors) = load.finish();
    r.expect_code(0);
    assert!(r.stdout.contains("minion m2 drained"), "{}", r.stdout);
    assert_eq!(on("m2"), 0, "m2 ends empty");
    assert!(ok > 100, "too little load to mean anything: {ok} requests");
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}\n{}",
        errors.len(),
        ok + errors.len(),
        daemon.log()
    );
    wait_until(
        "three ready endpoints again",
        Duration::from_secs(60),
        &daemon,
        || ready_endpoints(&t, "drained") == 3,
    );
    let minions = t.drover(&["get", "minions"]);
    assert!(
        minions
            .stdout
            .lines()
            .any(|l| l.starts_with("m2 ") && l.contains("Ready,SchedulingDisabled")),
        "{}",
        minions.stdout
    );

    // Cordoned, a scale-up places nothing there; uncordoned, pods may return.
    t.write("manifests/drained.json", &web_rc("drained", 6, "1"));
    wait_until("six replicas", Duration::from_secs(60), &daemon, || {
        containers(&p, "label=io.drover.container=httpd").len() == 6
    });
    assert_eq!(on("m2"), 0, "nothing new on a cordoned minion");
    t.drover(&["minions", "uncordon", "m2"]).expect_code(0);
    t.write("manifests/drained.json", &web_rc("drained", 9, "1"));
    wait_until(
        "a replica back on m2",
        Duration::from_secs(60),
        &daemon,
        || on("m2") > 0,
    );
    drop(daemon);
    tear_down(&t);
}

#[test]
fn a_pod_no_controller_replaces_stops_a_drain_unless_forced() {
    let _g = steady();
    let (t, p) = services_dir();
    t.write(
        "manifests/solo.json",
        r#"{"kind": "Pod", "apiVersion": "v1beta1", "id": "solo",
  "desiredState": {"manifest": {"version": "v1beta1", "id": "solo",
    "containers": [{"name": "httpd", "image": "drover/busybox:latest",
                    "command": ["sh", "-c", "exec sleep 3600"]}]}}}"#,
    );
    t.drover(&["apply", "--yes"]).expect_code(0);
    let where_ = containers(&p, "label=io.drover.container=httpd");
    assert_eq!(where_.len(), 1);
    let minion = where_[0].0.clone();
    // Without --force: refused, nothing changed (not even cordoned).
    let r = t.drover(&["minions", "drain", &minion]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("pod solo is not managed by a replication controller"),
        "{}",
        r.stderr
    );
    let listed = t.drover(&["get", "minions"]).stdout;
    assert!(!listed.contains("SchedulingDisabled"), "{listed}");
    // Forced, without a daemon: drain runs the rounds itself; the pod is made elsewhere.
    let r = t.drover(&["minions", "drain", &minion, "--force", "--deadline", "60s"]);
    r.expect_code(0);
    let now = containers(&p, "label=io.drover.container=httpd");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, minion, "made again on another minion");
    t.drover(&["minions", "uncordon", &minion]).expect_code(0);
    tear_down(&t);
}

#[test]
fn a_drain_that_cannot_place_a_replacement_stops_at_its_deadline_and_removes_nothing() {
    let _g = steady();
    let (t, p) = services_dir();
    // Only m2 is in zone z1: a replica there has nowhere else to go.
    t.write(
        "manifests/pinned.json",
        r#"{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "pinned",
  "desiredState": {"replicas": 1, "replicaSelector": {"app": "pinned"},
    "podTemplate": {"labels": {"app": "pinned"}, "nodeSelector": {"zone": "z1"},
      "desiredState": {"manifest": {"version": "v1beta1", "id": "pinned",
        "containers": [{"name": "httpd", "image": "drover/busybox:latest",
                        "command": ["sh", "-c", "exec sleep 3600"]}]}}}}}"#,
    );
    t.drover(&["apply", "--yes"]).expect_code(0);
    let before = containers(&p, "label=io.drover.container=httpd");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].0, "m2");
    let r = t.drover(&["minions", "drain", "m2", "--deadline", "5s"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("minion m2 not drained after 5s: 1 pod left: pinned-"),
        "{}",
        r.stderr
    );
    // Start-first: with no replacement running, the pod was not touched.
    assert_eq!(containers(&p, "label=io.drover.container=httpd"), before);
    let listed = t.drover(&["get", "minions", "m2"]).stdout;
    assert!(listed.contains("SchedulingDisabled"), "{listed}");
    t.drover(&["minions", "uncordon", "m2"]).expect_code(0);
    let listed = t.drover(&["get", "minions", "m2"]).stdout;
    assert!(!listed.contains("SchedulingDisabled"), "{listed}");
    tear_down(&t);
}
