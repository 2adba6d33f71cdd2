//! Events, back-off and the web interface on the real cluster, with one daemon: an image that
//! does not exist backs off with growing delays (read from the events' times) and is said once
//! in the daemon's output; a container that exits 1 at once under restartPolicy always gives
//! failed and restarted events with counts; a container over its memory limit gives an OOM
//! event; `get events`, `describe` and `/events` show them; and headless Chromium loads the
//! page, sees the minions, the pods and an event that happened after it loaded, and clicks
//! "Reconcile now". The screenshot is kept in target/test-output/web.png.

mod common;
use common::browser::Browser;
use common::cluster::{project_dir, steady, tear_down};
use common::daemon::{body, http, Daemon};
use std::time::{Duration, Instant};

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const MANIFESTS: &str = r#"{"kind": "List", "items": [
  {"kind": "Pod", "apiVersion": "v1beta1", "id": "noimage",
   "desiredState": {"manifest": {"version": "v1beta1", "id": "noimage",
     "containers": [{"name": "app", "image": "drover/does-not-exist:1"}]}}},
  {"kind": "Pod", "apiVersion": "v1beta1", "id": "crasher",
   "desiredState": {"manifest": {"version": "v1beta1", "id": "crasher",
     "restartPolicy": {"always": {}},
     "containers": [{"name": "app", "image": "drover/busybox:latest",
                     "command": ["sh", "-c", "sleep 1; exit 1"]}]}}},
  {"kind": "Pod", "apiVersion": "v1beta1", "id": "hog",
   "desiredState": {"manifest": {"version": "v1beta1", "id": "hog",
     "restartPolicy": {"never": {}},
     "containers": [{"name": "app", "image": "drover/busybox:latest", "memory": 16777216,
                     "command": ["sh", "-c", "sleep 2; tail /dev/zero"]}]}}}
]}"#;

fn events(addr: &str) -> Vec<serde_json::Value> {
    let list: serde_json::Value =
        serde_json::from_str(body(&http(addr, "GET", "/events", &[]))).expect("/events is JSON");
    assert_eq!(list["kind"], "EventList");
    list["items"].as_array().unwrap().clone()
}

fn find<'a>(
    events: &'a [serde_json::Value],
    pod: &str,
    reason: &str,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .collect()
}

#[test]
fn failures_back_off_and_are_told_as_events_and_the_page_shows_them() {
    let _g = steady();
    let (t, _p) = project_dir();
    t.write("manifests/app.json", MANIFESTS);
    let daemon = Daemon::start(&t, &[]);
    let addr = daemon.status_addr();

    // The missing image: tried, then again after 5 s, then after 10 s.
    wait_until(
        "two back-offs of the missing image",
        Duration::from_secs(60),
        || find(&events(&addr), "noimage", "BackOff").len() >= 2,
    );
    let all = events(&addr);
    let pulls = find(&all, "noimage", "FailedToPull");
    assert_eq!(pulls.len(), 1, "repeats fold into one event: {all:#?}");
    assert!(pulls[0]["count"].as_u64().unwrap() >= 2, "{all:#?}");
    let backoffs = find(&all, "noimage", "BackOff");
    let delay = |e: &serde_json::Value| -> u64 {
        let m = e["message"].as_str().unwrap();
        m.split("again in ")
            .nth(1)
            .unwrap()
            .split('s')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(delay(backoffs[0]), 5, "{all:#?}");
    assert_eq!(delay(backoffs[1]), 10, "{all:#?}");
    let seen = |e: &serde_json::Value| e["lastSeen"].as_u64().unwrap();
    assert!(
        seen(backoffs[1]) >= seen(backoffs[0]) + 4,
        "the second try waited out the first delay: {all:#?}"
    );
    // While it waits, the status lists it with the reason.
    wait_until(
        "the status to list the waiting pod",
        Duration::from_secs(30),
        || {
            let status: serde_json::Value =
                serde_json::from_str(body(&http(&addr, "GET", "/status", &[]))).unwrap();
            status["waiting"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["id"] == "noimage" && w["reason"] == "ImagePullBackOff")
        },
    );
    // Said once in the daemon's output, not once per try or per round.
    let log = daemon.log();
    assert_eq!(
        log.matches("+ pod noimage").count(),
        1,
        "the failure is said once:\n{log}"
    );

    // The crash loop and the OOM kill, from the minions' Docker events.
    wait_until("the crash loop's events", Duration::from_secs(60), || {
        let all = events(&addr);
        find(&all, "crasher", "Failed")
            .first()
            .is_some_and(|e| e["count"].as_u64().unwrap() >= 2)
            && !find(&all, "crasher", "Restarted").is_empty()
    });
    wait_until("the OOM kill", Duration::from_secs(60), || {
        !find(&events(&addr), "hog", "OOMKilled").is_empty()
    });

    // The same events through the CLI.
    let got = t.drover(&["get", "events", "--for", "pod/noimage"]);
    assert!(
        got.stdout.contains("FailedToPull") && !got.stdout.contains("crasher"),
        "{}",
        got.stdout
    );
    let described = t.drover(&["describe", "pod", "noimage"]);
    assert!(
        described.stdout.contains("Events:") && described.stdout.contains("BackOff"),
        "{}{}",
        described.stdout,
        described.stderr
    );

    let pods = t.drover(&["get", "pods"]);
    assert!(
        pods.stdout
            .lines()
            .any(|l| l.starts_with("noimage ") && l.contains("ImagePullBackOff")),
        "get pods tells why: {}",
        pods.stdout
    );

    // The page, in a real browser.
    let mut browser = Browser::launch();
    browser.open(&format!("http://{addr}/"));
    wait_until(
        "the page to show the minions and pods",
        Duration::from_secs(20),
        || {
            let text = browser.eval("document.body ? document.body.innerText : ''");
            let text = text.as_str().unwrap_or("");
            ["m1", "m2", "m3", "crasher", "hog"]
                .iter()
                .all(|w| text.contains(w))
        },
    );
    let loaded = browser
        .eval("(document.getElementById('events') || {}).innerText || ''")
        .as_str()
        .unwrap()
        .to_string();
    // An event that happens after the page loaded: a pod added to the source.
    t.write(
        "manifests/late.json",
        r#"{"kind": "Pod", "apiVersion": "v1beta1", "id": "latecomer",
            "desiredState": {"manifest": {"version": "v1beta1", "id": "latecomer",
              "containers": [{"name": "app", "image": "drover/busybox:latest",
                              "command": ["sleep", "3600"]}]}}}"#,
    );
    assert!(!loaded.contains("latecomer"));
    wait_until(
        "the page to show the new pod's event",
        Duration::from_secs(30),
        || {
            browser
                .eval("(document.getElementById('events') || {}).innerText || ''")
                .as_str()
                .unwrap_or("")
                .contains("Pod/latecomer")
        },
    );
    let round = |b: &mut Browser| -> u64 {
        b.eval("document.getElementById('round').textContent")
            .as_str()
            .unwrap_or("")
            .trim_start_matches('#')
            .parse()
            .unwrap_or(0)
    };
    let before = round(&mut browser);
    browser.eval("document.getElementById('reconcile').click()");
    wait_until("the click to be accepted", Duration::from_secs(10), || {
        browser.eval("document.getElementById('reconcile-said').textContent") == "round requested"
    });
    wait_until("a round after the click", Duration::from_secs(20), || {
        round(&mut browser) > before
    });
    let shot = common::project().join("target/test-output/web.png");
    browser.screenshot(&shot);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );

    // Another site cannot make the browser act, and GET does nothing.
    let cross = http(
        &addr,
        "POST",
        "/reconcile",
        &[("Origin", "http://evil.example")],
    );
    assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");
    let get = http(&addr, "GET", "/reconcile", &[]);
    assert!(get.starts_with("HTTP/1.1 405"), "{get}");
    // Logs of a pod, as the page's click fetches them.
    let status: serde_json::Value =
        serde_json::from_str(body(&http(&addr, "GET", "/status", &[]))).unwrap();
    let late = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "latecomer")
        .map(|p| p["minion"].as_str().unwrap().to_string())
        .expect("latecomer runs");
    let logs = http(
        &addr,
        "GET",
        &format!("/logs?minion={late}&pod=latecomer"),
        &[],
    );
    assert!(logs.starts_with("HTTP/1.1 200"), "{logs}");
    // A container drover did not make, on the same minion, is out of reach by any name.
    let foreign = format!("foreign-secret-{}", std::process::id());
    common::cluster::docker(
        &late,
        &[
            "run",
            "-d",
            "--name",
            &foreign,
            "drover/busybox:latest",
            "echo",
            "SECRET-1f2e",
        ],
    );
    for name in [format!("x/../{foreign}"), foreign.clone(), "../".into()] {
        let name = name.replace('/', "%2F");
        let logs = http(
            &addr,
            "GET",
            &format!("/logs?minion={late}&pod=latecomer&container={name}"),
            &[],
        );
        assert!(
            logs.starts_with("HTTP/1.1 404") && !logs.contains("SECRET-1f2e"),
            "{logs}"
        );
    }
    common::cluster::docker(&late, &["rm", "-f", &foreign]);

    // Stopped cleanly, the log stays in the store for later readers.
    drop(browser);
    drop(daemon);
    let got = t.drover(&["get", "events", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    assert!(
        list["items"].as_array().unwrap().len() >= 5,
        "{}",
        got.stdout
    );
    let state = t.join("state/events.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn apply_backs_off_says_a_failure_once_and_leaves_events_that_tell_why() {
    let _g = steady();
    let (t, _p) = project_dir();
    t.write(
        "manifests/noimage.json",
        r#"{"kind": "Pod", "apiVersion": "v1beta1", "id": "noimage",
            "desiredState": {"manifest": {"version": "v1beta1", "id": "noimage",
              "containers": [{"name": "app", "image": "drover/does-not-exist:1"}]}}}"#,
    );
    let started = Instant::now();
    let r = t.drover(&["apply", "--timeout", "8"]);
    r.expect_code(2);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // Tried at 0, 5 and 15 s at most: said once, then summed up.
    assert_eq!(
        r.stderr.matches("drover: error: + pod noimage").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("not converged after 8s")
            && r.stderr.contains("pod noimage: ImagePullBackOff after"),
        "{}",
        r.stderr
    );
    let described = t.drover(&["describe", "pod", "noimage"]);
    assert!(
        described.stdout.contains("FailedToPull") && described.stdout.contains("BackOff"),
        "{}",
        described.stdout
    );
}

/// Every way a pod can fail to be made backs off under the daemon, on whichever minion its
/// next try is placed: an RC whose image is on no minion (its pods publish a port, so an
/// infra container is made first) and a pod whose host port a process outside Docker holds. Counted
/// from the minions' own Docker events over 60 s: tries at 0, 5, 15 and 35 s, so at most five
/// containers made per pod; each failure said once in the log and folded into one event.
#[test]
fn every_failure_to_make_a_pod_backs_off_under_the_daemon() {
    let _g = steady();
    let (t, project) = project_dir();
    // m2 (the only minion in zone z1) publishes on 127.0.1.2: this process holds a port there.
    let holder = std::net::TcpListener::bind("127.0.1.2:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    t.write(
        "manifests/app.json",
        &format!(
            r#"{{"kind": "List", "items": [
  {{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "badimage",
   "desiredState": {{"replicas": 2, "replicaSelector": {{"app": "badimage"}},
    "podTemplate": {{"labels": {{"app": "badimage"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "badimage",
      "containers": [{{"name": "app", "image": "drover/busybx:1", "ports": [{{"containerPort": 80}}]}}]}}}}}}}}}},
  {{"kind": "Pod", "apiVersion": "v1beta1", "id": "portheld",
   "nodeSelector": {{"zone": "z1"}},
   "desiredState": {{"manifest": {{"version": "v1beta1", "id": "portheld",
     "containers": [{{"name": "app", "image": "drover/busybox:latest", "imagePullPolicy": "PullIfNotPresent",
       "command": ["sleep", "3600"], "ports": [{{"containerPort": 80, "hostPort": {port}}}]}}]}}}}}}
]}}"#
        ),
    );
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let since = unix();
    let daemon = Daemon::start(&t, &[]);
    let addr = daemon.status_addr();
    // The measurement's window: the fourth try (35 s in) is seen, and 60 s have passed.
    wait_until("four tries and 60 s", Duration::from_secs(90), || {
        let all = events(&addr);
        let fourth = |pod: &str| {
            all.iter().any(|e| {
                e["involvedObject"]["name"] == pod
                    && e["reason"] == "BackOff"
                    && e["message"].as_str().unwrap_or("").contains("(failure 4)")
            })
        };
        fourth("portheld") && unix() >= since + 61
    });
    let until = since + 60;
    let mut made: std::collections::BTreeMap<String, usize> = Default::default();
    for minion in ["m1", "m2", "m3"] {
        let said = common::cluster::docker(
            minion,
            &[
                "events",
                "--since",
                &since.to_string(),
                "--until",
                &until.to_string(),
                "--filter",
                "event=create",
                "--filter",
                &common::cluster::of_project(&project),
                "--format",
                "{{index .Actor.Attributes \"io.drover.pod\"}}",
            ],
        );
        for pod in said.lines() {
            *made.entry(pod.to_string()).or_default() += 1;
        }
    }
    let log = daemon.log();
    assert!(made.contains_key("portheld"), "{made:?}\n{log}");
    let replicas = made.keys().filter(|p| p.starts_with("badimage-")).count();
    assert_eq!(
        replicas, 2,
        "the same two replicas tried again: {made:?}\n{log}"
    );
    for (pod, n) in &made {
        assert!(
            (2..=5).contains(n),
            "{pod}: {n} containers made in 60 s: {made:?}\n{log}"
        );
    }
    // Said once in the log, though Docker names a new endpoint in each refusal; the RC's
    // replicas fail as one series, said once.
    let said = |what: &str| {
        log.lines()
            .filter(|l| l.contains(" ERROR ") && l.contains(what))
            .count()
    };
    assert_eq!(said("+ pod portheld"), 1, "{log}");
    assert_eq!(said("+ pod badimage-"), 1, "{log}");
    let all = events(&addr);
    let refused = find(&all, "portheld", "FailedCreate");
    assert_eq!(refused.len(), 1, "folded into one event: {all:#?}");
    assert!(refused[0]["count"].as_u64().unwrap() >= 3, "{all:#?}");
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains("address already in use"),
        "{all:#?}"
    );
    drop(daemon);
    drop(holder);
    tear_down(&t);
}

/// The page as its users read it (Kubernetes' 2015 dashboard and Nomad's job list as anchors):
/// a card per replication controller with its image, desired / current / ready and what holds
/// it back (a back-off with its reason and next try), events with relative times, no empty
/// columns; screenshots at 1280 and 1920 px kept in target/test-output/.
#[test]
fn the_page_shows_controllers_as_cards_and_events_as_people_read_them() {
    let _g = steady();
    let (t, _p) = project_dir();
    let rc = |id: &str, replicas: u32, image: &str| {
        format!(
            r#"{{"kind": "ReplicationController", "apiVersion": "v1beta1", "id": "{id}",
   "desiredState": {{"replicas": {replicas}, "replicaSelector": {{"app": "{id}"}},
    "podTemplate": {{"labels": {{"app": "{id}"}}, "desiredState": {{"manifest": {{
      "version": "v1beta1", "id": "{id}",
      "containers": [{{"name": "app", "image": "{image}", "command": ["sleep", "3600"]}}]}}}}}}}}}}"#
        )
    };
    t.write(
        "manifests/app.json",
        &format!(
            r#"{{"kind": "List", "items": [{}, {}]}}"#,
            rc("shop", 2, "drover/busybox:latest"),
            rc("broken", 1, "drover/not-here:3")
        ),
    );
    let daemon = Daemon::start(&t, &[]);
    let addr = daemon.status_addr();
    let mut browser = Browser::launch();
    browser.open(&format!("http://{addr}/"));
    browser.set_viewport(1280, 900);
    let card = |b: &mut Browser, rc: &str| -> serde_json::Value {
        b.eval(&format!(
            r#"(() => {{
                const c = document.querySelector('#rcs .card[data-rc="{rc}"]');
                if (!c) return null;
                const n = w => (c.querySelector('[data-count="' + w + '"] b') || {{}}).textContent;
                return {{text: c.innerText, desired: n("desired"), current: n("current"), ready: n("ready")}};
            }})()"#
        ))
    };
    wait_until(
        "the shop card to count 2 ready",
        Duration::from_secs(60),
        || {
            let c = card(&mut browser, "shop");
            c["desired"] == "2" && c["current"] == "2" && c["ready"] == "2"
        },
    );
    let shop = card(&mut browser, "shop");
    assert!(
        shop["text"]
            .as_str()
            .unwrap()
            .contains("drover/busybox:latest"),
        "{shop}"
    );
    wait_until(
        "the broken card's back-off",
        Duration::from_secs(60),
        || {
            let c = card(&mut browser, "broken");
            c["text"].as_str().is_some_and(|t| {
                t.contains("ImagePullBackOff")
                    && t.contains("next try in")
                    && t.contains("not-here")
            }) && c["ready"] == "0"
        },
    );
    let broken = card(&mut browser, "broken");
    assert!(
        !broken["text"].as_str().unwrap().contains("rolling out"),
        "a replica not made is no rollout: {broken}"
    );
    // Events: a message people can read, with how long ago, at 1280 px.
    wait_until("an event with its age", Duration::from_secs(30), || {
        let text = browser
            .eval("(document.getElementById('events') || {}).innerText || ''")
            .as_str()
            .unwrap_or("")
            .to_string();
        text.contains("Created pod: shop-") && text.contains("s ago")
    });
    // No column without a value in any row.
    let empty: Vec<String> = serde_json::from_value(browser.eval(
        r#"(() => {
            const out = [];
            for (const table of document.querySelectorAll('main table')) {
                const heads = Array.from(table.querySelectorAll('thead th'));
                const rows = Array.from(table.querySelectorAll('tbody tr')).filter(r => r.cells.length === heads.length);
                heads.forEach((th, i) => {
                    if (th.offsetParent !== null && rows.length > 0 && rows.every(r => r.cells[i].innerText.trim() === ''))
                        out.push(th.textContent);
                });
            }
            return out;
        })()"#,
    ))
    .unwrap();
    assert!(empty.is_empty(), "empty columns: {empty:?}");
    // The event's message fits the page at 1280 px: no horizontal scrolling of the page.
    let overflow = browser.eval("document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_f64().unwrap() <= 0.0,
        "page wider than 1280 px by {overflow}"
    );
    let out = common::project().join("target/test-output");
    browser.screenshot(&out.join("web-1280.png"));
    browser.set_viewport(1920, 1080);
    // Laid out again at the new width before the picture (two frames).
    browser.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))");
    browser.screenshot(&out.join("web-1920.png"));
    for shot in ["web-1280.png", "web-1920.png"] {
        assert!(
            std::fs::metadata(out.join(shot)).unwrap().len() > 10_000,
            "{shot}"
        );
    }
    drop(browser);
    drop(daemon);
    tear_down(&t);
}
