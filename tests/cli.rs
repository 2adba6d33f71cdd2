//! The command line as kubectl users expect it: kinds and aliases, every `-l` selector form,
//! NotFound, the output formats, `exec`, `logs` flags, `apply --dry-run` exit codes,
//! completion, man page and version; sorting, `--sort-by`, `-o jsonpath`, `-o custom-columns`
//! and `get -w`. The first tests need no cluster (a local minion whose socket does not
//! exist); the last ones run on the shared cluster.

mod common;
use common::cluster::{docker, project_dir, steady};
use common::*;
use serde_json::Value;

/// The example manifests and one local minion whose Docker socket does not exist.
fn offline() -> TestDir {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    t.write(
        "drover.toml",
        "project = \"offline\"\n[[minions]]\nname = \"lost\"\ntransport = \"local\"\ndocker_socket = \"/nonexistent/docker.sock\"\n",
    );
    t
}

fn names(r: &Run) -> Vec<String> {
    r.stdout.lines().map(String::from).collect()
}

#[test]
fn every_kind_answers_to_kubectls_names_and_aliases() {
    let t = offline();
    for kind in ["replicationcontrollers", "replicationcontroller", "rc"] {
        let r = t.drover(&["get", kind, "-o", "name"]);
        r.expect_code(0);
        assert_eq!(
            names(&r),
            ["replicationcontroller/backend", "replicationcontroller/web"]
        );
    }
    for kind in ["services", "service", "svc"] {
        let r = t.drover(&["get", kind, "-o", "name"]);
        r.expect_code(0);
        assert_eq!(names(&r), ["service/backend", "service/web"]);
    }
    for kind in ["minions", "minion", "nodes", "node", "no"] {
        let r = t.drover(&["get", kind, "-o", "name"]);
        r.expect_code(0);
        assert_eq!(names(&r), ["minion/lost"]);
    }
    for kind in ["pods", "pod", "po"] {
        let r = t.drover(&["get", kind]);
        r.expect_code(0);
        assert!(r.stderr.contains("No resources found."), "{}", r.stderr);
    }
    let r = t.drover(&["get", "deployments"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("invalid value 'deployments'"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_selector_form_selects_as_kubernetes_does() {
    let t = offline();
    let rc = |selector: &str| {
        let r = t.drover(&["get", "rc", "-l", selector, "-o", "name"]);
        r.expect_code(0);
        names(&r)
            .iter()
            .map(|n| n.trim_start_matches("replicationcontroller/").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(rc("tier=web"), ["web"]);
    assert_eq!(rc("tier==web"), ["web"]);
    assert_eq!(rc("tier!=web"), ["backend"]);
    assert_eq!(rc("tier in (web,backend)"), ["backend", "web"]);
    assert_eq!(rc("tier notin (web)"), ["backend"]);
    assert_eq!(rc("tier"), ["backend", "web"]);
    assert_eq!(rc("!tier"), Vec::<String>::new());
    assert_eq!(rc("app=shop,tier notin (backend),!legacy"), ["web"]);
    assert_eq!(
        rc("absent!=x"),
        ["backend", "web"],
        "!= holds without the label"
    );
    // Services and minions have labels too.
    let r = t.drover(&["get", "svc", "-l", "tier in (web,backend)", "-o", "name"]);
    assert_eq!(
        names(&r),
        ["service/web"],
        "the backend service has no labels"
    );
    let r = t.drover(&["get", "minions", "-l", "zone", "-o", "name"]);
    r.expect_code(0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    for bad in ["tier>web", "tier in (web", "tier within (web)", "a b"] {
        let r = t.drover(&["get", "rc", "-l", bad]);
        r.expect_code(2);
        assert!(
            r.stderr.contains(&format!("bad selector `{bad}`"))
                && r.stderr.contains("'key in (a,b)'"),
            "{bad}: {}",
            r.stderr
        );
    }
}

#[test]
fn a_label_value_with_any_text_the_syntax_can_end_is_selected() {
    let t = offline();
    // v1beta1 never checked label values: `/`, `@` and `:` are theirs to hold.
    t.write(
        "manifests/beta.json",
        r#"{"id": "beta", "kind": "Service", "apiVersion": "v1beta1", "port": 9191,
            "labels": {"ver": "1.0/beta", "owner": "ops@example.com", "at": "10:30"},
            "selector": {"app": "beta"}}"#,
    );
    let svc = |selector: &str| {
        let r = t.drover(&["get", "svc", "-l", selector, "-o", "name"]);
        r.expect_code(0);
        names(&r)
    };
    assert_eq!(svc("ver=1.0/beta"), ["service/beta"]);
    assert_eq!(svc("ver==1.0/beta,owner=ops@example.com"), ["service/beta"]);
    assert_eq!(svc("at in (10:30,11:00)"), ["service/beta"]);
    assert_eq!(svc("ver!=1.0/beta"), ["service/backend", "service/web"]);
    assert_eq!(
        svc("ver notin (1.0/beta)"),
        ["service/backend", "service/web"]
    );
    assert_eq!(svc("ver=1.0"), Vec::<String>::new());
    // What the syntax cannot end stays refused, saying the input once.
    let r = t.drover(&["get", "svc", "-l", "ver=1.0 beta"]);
    r.expect_code(2);
    assert!(
        r.stderr.starts_with(
            "drover: error: bad selector `ver=1.0 beta`: label value `1.0 beta` holds whitespace, which ends a value; use key=value"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn a_source_that_cannot_be_read_is_named_with_the_reason() {
    let t = TestDir::new();
    for (args, what) in [
        (&["get", "rc"][..], "replication controllers"),
        (&["get", "svc", "-o", "json"][..], "services"),
        (&["describe", "rc", "web"][..], "replication controllers"),
        (&["describe", "service", "web"][..], "services"),
    ] {
        let r = t.drover(args);
        r.expect_code(2);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert_eq!(
            r.stderr,
            format!("drover: error: the source cannot be read: manifests: No such file or directory (os error 2); {what} come from it\n"),
            "{args:?}"
        );
    }
}

#[test]
fn events_follow_the_not_found_rule() {
    let t = offline();
    let r = t.drover(&["get", "events"]);
    r.expect_code(0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(r.stderr, "No resources found.\n");
    t.write(
        ".drover/events.json",
        r#"{"items": [{"involvedObject": {"kind": "Pod", "name": "gone-1"}, "reason": "Killing",
            "message": "stopping the pod", "type": "Normal", "count": 1,
            "firstTimestamp": "2026-11-29T10:00:00Z", "lastTimestamp": "2026-11-29T10:00:00Z",
            "lastSeen": 1796032800}]}"#,
    );
    let r = t.drover(&["get", "ev", "gone-1", "nosuch"]);
    r.expect_code(1);
    assert!(r.stdout.contains("Pod/gone-1"), "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "drover: error (NotFound): events \"nosuch\" not found\n"
    );
    let r = t.drover(&["get", "ev", "--for", "pod/gone-2"]);
    r.expect_code(0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(r.stderr, "No resources found.\n");
    // A NotFound describe prints nothing on stdout, even with events of that name.
    let r = t.drover(&["describe", "pod", "gone-1"]);
    r.expect_code(1);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .ends_with("drover: error (NotFound): pods \"gone-1\" not found\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_named_object_that_does_not_exist_is_not_found() {
    let t = offline();
    let r = t.drover(&["get", "rc", "nope"]);
    r.expect_code(1);
    assert_eq!(
        r.stderr.lines().last().unwrap(),
        "drover: error (NotFound): replicationcontrollers \"nope\" not found"
    );
    // The ones that exist are still printed.
    let r = t.drover(&["get", "svc", "web", "nope", "-o", "name"]);
    r.expect_code(1);
    assert_eq!(names(&r), ["service/web"]);
    assert!(
        r.stderr
            .contains("drover: error (NotFound): services \"nope\" not found"),
        "{}",
        r.stderr
    );
    let r = t.drover(&["get", "minion", "m9"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("minions \"m9\" not found"),
        "{}",
        r.stderr
    );
    for (kind, plural) in [
        ("rc", "replicationcontrollers"),
        ("service", "services"),
        ("pod", "pods"),
    ] {
        let r = t.drover(&["describe", kind, "nope"]);
        r.expect_code(1);
        assert!(r.stdout.is_empty(), "NotFound prints nothing: {}", r.stdout);
        assert!(
            r.stderr.ends_with(&format!(
                "drover: error (NotFound): {plural} \"nope\" not found\n"
            )),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn a_wanted_pod_behind_a_silent_minion_is_unknown_not_pending_nor_not_found() {
    let t = offline();
    // The replica's name, from the plan diff --live shows.
    let plan = t.drover(&["diff", "--live"]);
    let pod = plan
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("web-") && w.ends_with("-0"))
        .unwrap_or_else(|| panic!("no web replica in:\n{}", plan.stdout))
        .to_string();
    let r = t.drover(&["describe", "pod", &pod]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("Phase:       Unknown")
            && r.stdout.contains("not seen: lost did not answer"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("minion lost (local)"), "{}", r.stderr);
}

#[test]
fn outputs_are_kubernetes_lists_in_json_and_yaml() {
    let t = offline();
    let r = t.drover(&["get", "rc", "-o", "json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "ReplicationControllerList");
    assert_eq!(v["apiVersion"], "v1beta1");
    let web = &v["items"][1];
    assert_eq!(web["kind"], "ReplicationController");
    assert_eq!(web["id"], "web");
    assert_eq!(web["desiredState"]["replicas"], 2);
    assert_eq!(web["currentState"]["replicas"], 0);
    // One object named: the object alone, as kubectl prints it.
    let r = t.drover(&["get", "svc", "web", "-o", "yaml"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .starts_with("kind: Service\nid: web\napiVersion: v1beta1\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\nport: 8080\n"), "{}", r.stdout);
    let r = t.drover(&["get", "svc", "-o", "yaml"]);
    assert!(
        r.stdout
            .starts_with("kind: ServiceList\napiVersion: v1beta1\nitems:\n"),
        "{}",
        r.stdout
    );
    // Wide adds columns.
    let r = t.drover(&["get", "rc", "-o", "wide"]);
    assert!(
        r.stdout.starts_with("NAME      DESIRED   CURRENT   RUNNING   CONTAINERS   IMAGES                  SELECTOR\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("httpd        drover/busybox:latest   app=shop,tier=web"),
        "{}",
        r.stdout
    );
    let r = t.drover(&["get", "svc", "-o", "wide"]);
    assert!(
        r.stdout.lines().next().unwrap().ends_with("ENDPOINTS"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_minion_whose_socket_does_not_exist_is_not_ready_with_the_reason() {
    let t = offline();
    let r = t.drover(&["get", "minions"]);
    r.expect_code(0);
    let row: Vec<&str> = r
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["lost", "local", "NotReady"], "{}", r.stdout);
    assert!(
        r.stderr.contains("minion lost (local) is NotReady: ")
            && r.stderr.contains("/nonexistent/docker.sock"),
        "{}",
        r.stderr
    );
    let r = t.drover(&["get", "minions", "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let ready = &v["items"][0]["status"]["conditions"][1];
    assert_eq!(ready["kind"], "Ready");
    assert_eq!(ready["status"], "None");
    assert!(ready["reason"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/docker.sock"));
    // The pods of such a minion: one plain line, no HTTP client words.
    let r = t.drover(&["get", "pods"]);
    r.expect_code(0);
    assert!(r.stderr.contains("minion lost (local): "), "{}", r.stderr);
    assert!(!r.stderr.contains("hyper"), "{}", r.stderr);
}

#[test]
fn a_socket_that_refuses_reads_as_one_plain_line() {
    let t = offline();
    let socket = t.join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    t.write(
        "drover.toml",
        &format!(
            "project = \"offline\"\n[[minions]]\nname = \"lost\"\ntransport = \"local\"\ndocker_socket = \"{}\"\n",
            socket.display()
        ),
    );
    let r = t.drover(&["get", "pods"]);
    r.expect_code(0);
    let line = r.stderr.lines().next().unwrap();
    assert_eq!(
        line,
        format!(
            "drover: warning: minion lost (local): Docker socket {}: Connection refused (os error 111); its pods are not listed",
            socket.display()
        )
    );
}

#[test]
fn completion_man_page_and_version_come_from_the_cli() {
    let t = TestDir::new();
    for (shell, marker) in [
        ("bash", "_drover()"),
        ("zsh", "#compdef drover"),
        ("fish", "complete -c drover"),
    ] {
        let r = t.drover(&["completion", shell]);
        r.expect_code(0);
        assert!(r.stdout.contains(marker), "{shell}: {}", r.stdout);
        for word in ["exec", "logs", "apply", "dry-run", "selector"] {
            assert!(r.stdout.contains(word), "{shell} completes {word}");
        }
    }
    t.drover(&["completion", "tcsh"]).expect_code(2);
    let r = t.drover(&["man"]);
    r.expect_code(0);
    assert!(
        r.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &r.stdout[..200]
    );
    assert!(r.stdout.contains(".TH drover 1"), "roff title");
    assert!(
        r.stdout.contains(".TH drover-exec 1"),
        "a page per subcommand"
    );
    let r = t.drover(&["version"]);
    r.expect_code(0);
    let commit = r
        .stdout
        .trim()
        .strip_prefix(&format!("drover {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(project())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        // Built from this checkout (HEAD may have moved on since the build: a prefix check
        // would be wrong, so only the shape is compared then).
        Some(h) => assert!(
            commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit} vs {h}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
}

/// The example app on the cluster: pods through every format and selector, exec, logs and
/// apply --dry-run.
#[test]
fn pods_exec_logs_and_dry_run_on_the_cluster() {
    let _g = steady();
    let (t, project) = project_dir();
    let _cleanup = Teardown(project.clone());
    t.copy_manifests("manifests");

    // Nothing applied yet: the dry run shows objects and pods, exit 1; nothing is made.
    let r = t.drover(&["apply", "--dry-run"]);
    r.expect_code(1);
    assert!(
        r.stdout
            .contains("+ ReplicationController/web (manifests/web-controller.json)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("+ pod web-"), "{}", r.stdout);
    assert!(
        r.stdout.contains("plan: 4 object changes, 3 actions"),
        "{}",
        r.stdout
    );
    t.drover(&["apply"]).expect_code(0);
    let r = t.drover(&["apply", "--dry-run"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("plan: 0 object changes, 0 actions"),
        "{}",
        r.stdout
    );

    // Pods: wide columns, list shape, selectors.
    let r = t.drover(&["get", "pods", "-o", "wide"]);
    r.expect_code(0);
    let header: Vec<&str> = r
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "STATUS", "RC", "IMAGES", "LABELS", "MINION", "PORTS", "IP",
            "RESTARTS", "AGE"
        ]
    );
    let web_row = r.stdout.lines().find(|l| l.starts_with("web-")).unwrap();
    assert!(
        web_row.contains("1/1") && web_row.contains("Running"),
        "{web_row}"
    );
    assert!(web_row.contains("->80/TCP"), "published port: {web_row}");

    let r = t.drover(&["get", "po", "-l", "tier in (web)", "-o", "json"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "PodList");
    let pods = v["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2, "{}", r.stdout);
    let pod = &pods[0];
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["apiVersion"], "v1beta1");
    assert_eq!(pod["replicationController"], "web");
    assert_eq!(pod["currentState"]["status"], "Running");
    assert!(pod["currentState"]["podIP"].as_str().unwrap().contains('.'));
    let httpd = &pod["currentState"]["info"]["httpd"];
    assert_eq!(httpd["restartCount"], 0);
    let started = httpd["state"]["running"]["startedAt"].as_str().unwrap();
    assert!(
        started.starts_with("20") && started.contains('T'),
        "{started}"
    );
    let created = pod["creationTimestamp"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
    assert_eq!(
        pod["desiredState"]["manifest"]["containers"][0]["name"],
        "httpd"
    );
    let r = t.drover(&["get", "pods", "-l", "tier!=web,app=shop", "-o", "name"]);
    assert_eq!(names(&r).len(), 1, "{}", r.stdout);
    assert!(names(&r)[0].starts_with("pod/backend-"), "{}", r.stdout);
    let r = t.drover(&["get", "pods", "-l", "!tier", "-o", "name"]);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    // The test image's own LABEL is the image's, not the pod's.
    let r = t.drover(&["get", "pods", "-l", "testbed-version", "-o", "name"]);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let r = t.drover(&["get", "pods", "web-nope"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("pods \"web-nope\" not found"),
        "{}",
        r.stderr
    );

    // exec: the words reach Docker as a list (no shell expands them); streams and the exit
    // code are the command's.
    let id = pod["id"].as_str().unwrap().to_string();
    let minion = pod["currentState"]["host"].as_str().unwrap().to_string();
    let r = t.drover(&["exec", &id, "--", "echo", "$HOME;", "`id`"]);
    r.expect_code(0);
    assert_eq!(r.stdout, "$HOME; `id`\n");
    let r = t.drover(&[
        "exec",
        &id,
        "-c",
        "httpd",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    r.expect_code(3);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    let r = t.drover(&["exec", &id, "-c", "nope", "--", "true"]);
    r.expect_code(2);
    assert!(r.stderr.contains("has no container `nope`"), "{}", r.stderr);
    t.drover(&["exec", "web-nope", "--", "true"]).expect_code(1);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(t.path())
        .env_remove("DROVER_CONFIG")
        .args(["exec", "-i", &id, "--", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped in\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED IN\n");

    // logs: --tail, --timestamps, --since, --previous.
    let container = format!("drover_{project}_{id}_httpd");
    let say = |line: &str| {
        docker(
            &minion,
            &[
                "exec",
                &container,
                "sh",
                "-c",
                &format!("echo {line} > /proc/1/fd/1"),
            ],
        );
    };
    say("first-line");
    say("second-line");
    // Docker's log copier writes a line a moment after the exec returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.drover(&["logs", &id]).stdout.contains("second-line") {
        assert!(
            std::time::Instant::now() < deadline,
            "second-line never logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = t.drover(&["logs", &id, "--tail", "1"]);
    r.expect_code(0);
    assert_eq!(r.stdout, "second-line\n");
    let r = t.drover(&["logs", &id, "--timestamps", "--tail", "1"]);
    let (stamp, text) = r.stdout.trim_end().split_once(' ').unwrap();
    assert_eq!(text, "second-line");
    assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "{stamp}");
    let r = t.drover(&["logs", &id, "--since", "1h"]);
    assert!(
        r.stdout.contains("first-line\nsecond-line\n"),
        "{}",
        r.stdout
    );
    let r = t.drover(&["logs", &id, "--since", "soon"]);
    r.expect_code(2);
    assert!(r.stderr.contains("bad duration `soon`"), "{}", r.stderr);
    let r = t.drover(&["logs", &id, "-p"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("previous terminated container \"httpd\""),
        "{}",
        r.stderr
    );
    // Docker restarts the container (as after a crash); the next run's output is not
    // "previous". Docker compares `until` in whole seconds and drover includes the second of
    // the restart (a crash's last words come right before it): the new run writes a second
    // later.
    // A crash: Docker's restart policy brings it back and counts the restart.
    // (SIGKILL from the host: the container's PID 1 ignores signals sent from inside, and
    // `docker kill` counts as a manual stop.)
    let pid = docker(&minion, &["inspect", "-f", "{{.State.Pid}}", &container]);
    let killed = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -9 {pid}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let state = docker(
            &minion,
            &[
                "inspect",
                "-f",
                "{{.State.Running}} {{.RestartCount}}",
                &container,
            ],
        );
        if state.trim() == "true 1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container did not restart: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let started_at = docker(
        &minion,
        &["inspect", "-f", "{{.State.StartedAt}}", &container],
    );
    // The new run's line goes into a later second than its start.
    while unix_seconds_of(&started_at) >= now_seconds() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Said again if it does not show: under load an exec right after the restart can land
    // before Docker has attached the new run's output.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    'said: loop {
        say("after-restart");
        let again = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < again {
            if t.drover(&["logs", &id]).stdout.contains("after-restart") {
                break 'said;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after-restart never logged"
        );
    }
    let r = t.drover(&["logs", &id, "--previous"]);
    r.expect_code(0);
    assert!(r.stdout.contains("second-line"), "{}", r.stdout);
    assert!(!r.stdout.contains("after-restart"), "{}", r.stdout);

    // A changed object: the dry run names it and the pods it rolls, exit 1.
    let web = std::fs::read_to_string(t.join("manifests/web-controller.json")).unwrap();
    t.write(
        "manifests/web-controller.json",
        &web.replace("\"replicas\": 2", "\"replicas\": 3"),
    );
    let r = t.drover(&["apply", "--dry-run"]);
    r.expect_code(1);
    assert!(
        r.stdout
            .contains("~ ReplicationController/web: desiredState.replicas"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("plan: 1 object change, 1 action"),
        "{}",
        r.stdout
    );
    // On a terminal apply shows the plan and asks; declined, it says so, exits 1 and changes
    // nothing. (script(1) gives it a terminal.)
    let declined = |t: &TestDir| {
        let mut child = std::process::Command::new("script")
            .args([
                "-qec",
                &format!("{} apply", env!("CARGO_BIN_EXE_drover")),
                "/dev/null",
            ])
            .current_dir(t.path())
            .env_remove("DROVER_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"n\n").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("[y/N]") && text.contains("apply cancelled"),
            "{text}"
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        text
    };
    let text = declined(&t);
    assert!(
        text.contains("~ ReplicationController/web")
            && text.contains("apply 1 object change and 1 action? [y/N]"),
        "{text}"
    );
    let r = t.drover(&["get", "rc", "web", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rc["currentState"]["replicas"], 2, "nothing changed");
    t.write("manifests/web-controller.json", &web);
    // A change that moves no pod (a Service's port) is asked about too, and declined, is not
    // recorded.
    let service = std::fs::read_to_string(t.join("manifests/web-service.json")).unwrap();
    t.write(
        "manifests/web-service.json",
        &service.replace("\"port\": 8080", "\"port\": 8081"),
    );
    let text = declined(&t);
    assert!(
        text.contains("~ Service/web: port")
            && text.contains("apply 1 object change and 0 actions? [y/N]"),
        "{text}"
    );
    t.drover(&["diff"]).expect_code(1);
    t.write("manifests/web-service.json", &service);
    t.drover(&["diff"]).expect_code(0);
    // A bad manifest: exit 2, as diff.
    t.write("manifests/bad.json", "{\"kind\": \"Pod\"");
    t.drover(&["apply", "--dry-run"]).expect_code(2);
    // It does not blind the read-only commands: they show what was applied, warning once
    // with the broken file named.
    for what in ["rc", "services"] {
        let r = t.drover(&["get", what]);
        r.expect_code(0);
        assert!(
            r.stdout.lines().any(|l| l.starts_with("web ")),
            "{what}: {}",
            r.stdout
        );
        assert_eq!(
            r.stderr.matches("drover: warning: ").count(),
            1,
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("manifests/bad.json")
                && r.stderr.contains("showing the objects as last applied"),
            "{}",
            r.stderr
        );
    }
    std::fs::remove_file(t.join("manifests/bad.json")).unwrap();
    t.write("manifests/web-controller.json", &web);

    // diff after a pod's container is removed by hand: pods differ, so no "in sync" first.
    docker(&minion, &["rm", "-f", &container]);
    let r = t.drover(&["diff", "--live"]);
    r.expect_code(1);
    assert!(
        r.stdout
            .starts_with("objects: 4 as last applied, no changes; pods differ:\n"),
        "{}",
        r.stdout
    );
    t.drover(&["apply"]).expect_code(0);
}

/// kubectl's output habits on the cluster: lists sorted by name (a pod not made yet among
/// them), `--sort-by`, `-o jsonpath` with `range`, `-o custom-columns`, and `get pods -w`
/// printing a pod's row again when its containers are removed by hand and apply replaces it.
#[test]
fn sorted_jsonpath_custom_columns_and_watch_on_the_cluster() {
    let _g = steady();
    let (t, project) = project_dir();
    let _cleanup = Teardown(project.clone());
    t.copy_manifests("manifests");
    t.drover(&["apply"]).expect_code(0);

    // A pod wanted but not made yet is listed with the running ones, in name order (it used
    // to come last).
    t.write(
        "manifests/a-pod.json",
        r#"{"id": "a-pod", "kind": "Pod", "apiVersion": "v1beta1",
            "desiredState": {"manifest": {"version": "v1beta1", "id": "a-pod",
              "containers": [{"name": "c", "image": "drover/busybox:latest", "command": ["sleep", "600"]}]}}}"#,
    );
    let r = t.drover(&["get", "pods", "-o", "name"]);
    r.expect_code(0);
    let listed = names(&r);
    assert_eq!(listed.len(), 4, "{}", r.stdout);
    assert_eq!(listed[0], "pod/a-pod", "{}", r.stdout);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    // The same order in json.
    let r = t.drover(&["get", "pods", "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let ids: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("pod/{}", p["id"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, listed);
    std::fs::remove_file(t.join("manifests/a-pod.json")).unwrap();

    // --sort-by: services by port (web's 8080 before backend's 9090), pods by minion (the
    // pod not made has none: first).
    let r = t.drover(&["get", "svc", "--sort-by=.port", "-o", "name"]);
    r.expect_code(0);
    assert_eq!(names(&r), ["service/web", "service/backend"]);
    let r = t.drover(&["get", "svc", "--sort-by={.id}", "-o", "name"]);
    assert_eq!(names(&r), ["service/backend", "service/web"]);
    let r = t.drover(&[
        "get",
        "pods",
        "--sort-by=.currentState.host",
        "-o",
        "jsonpath={range .items[*]}{.currentState.host}{\"\\n\"}{end}",
    ]);
    r.expect_code(0);
    let hosts: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(hosts.len(), 3, "{}", r.stdout);
    assert!(hosts.windows(2).all(|w| w[0] <= w[1]), "{hosts:?}");
    let r = t.drover(&["get", "rc", "--sort-by=.metadata.name"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("couldn't find any field with path \".metadata.name\""),
        "{}",
        r.stderr
    );

    // -o jsonpath: the list's range, exactly; one object named is the root.
    let r = t.drover(&[
        "get",
        "rc",
        "-o",
        r#"jsonpath={range .items[*]}{.id}{"\t"}{.desiredState.replicas}{"\n"}{end}"#,
    ]);
    r.expect_code(0);
    assert_eq!(r.stdout, "backend\t1\nweb\t2\n");
    let r = t.drover(&["get", "rc", "-o", "jsonpath={.kind}: {.items[*].id}"]);
    assert_eq!(r.stdout, "ReplicationControllerList: backend web");
    let r = t.drover(&[
        "get",
        "rc",
        "web",
        "-o",
        "jsonpath={.currentState.replicas}",
    ]);
    assert_eq!(r.stdout, "2");
    let r = t.drover(&["get", "rc", "-o", "jsonpath={.items[0}"]);
    r.expect_code(2);
    assert!(r.stderr.contains("at column 10"), "{}", r.stderr);

    // -o custom-columns: upper-cased headers, a row per object, <none> for nothing.
    let r = t.drover(&[
        "get",
        "rc",
        "-o",
        "custom-columns=NAME:.id,replicas:.desiredState.replicas,IMAGE:.desiredState.podTemplate.desiredState.manifest.containers[*].image,NOPE:.nope",
    ]);
    r.expect_code(0);
    assert_eq!(
        r.stdout,
        "NAME      REPLICAS   IMAGE                   NOPE\n\
         backend   1          drover/busybox:latest   <none>\n\
         web       2          drover/busybox:latest   <none>\n"
    );

    // -w: the table, then a row whenever one changes.
    let mut watch = Watch::start(&t, &["get", "pods", "-w"]);
    let first = watch.until(|lines| lines.len() >= 4, "the table");
    assert!(first[0].starts_with("NAME "), "{first:?}");
    let victim = first
        .iter()
        .find(|l| l.starts_with("web-"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    for m in ["m1", "m2", "m3"] {
        let ids = docker(
            m,
            &[
                "ps",
                "-aq",
                "--filter",
                &common::cluster::of_project(&project),
                "--filter",
                &format!("label=io.drover.pod={victim}"),
            ],
        );
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(m, &args);
        }
    }
    // Its replacement, wanted but not made yet, is Pending...
    let is_web = |l: &String, status: &str| {
        l.starts_with("web-") && l.split_whitespace().nth(2) == Some(status)
    };
    let seen = watch.until(
        |lines| lines[4..].iter().any(|l| is_web(l, "Pending")),
        "a Pending web row",
    );
    let pending = seen.iter().rposition(|l| is_web(l, "Pending")).unwrap();
    // ...and the removed pod, gone, gets its last row once more (kubectl's deleted row).
    watch.until(
        |lines| {
            lines[4..]
                .iter()
                .any(|l| l.starts_with(&format!("{victim} ")))
        },
        "the removed pod's last row",
    );
    // ...and Running once apply made it.
    t.drover(&["apply"]).expect_code(0);
    let seen = watch.until(
        |lines| lines[pending + 1..].iter().any(|l| is_web(l, "Running")),
        "the replacement running",
    );
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "one header: {seen:?}"
    );
    // SIGINT ends it by the signal, as it ended kubectl; nothing said.
    let status = watch.interrupt();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

/// `drover ... -w` running, its stdout read line by line on a thread; killed when dropped.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(t: &TestDir, args: &[&str]) -> Watch {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .current_dir(t.path())
            .env_remove("DROVER_CONFIG")
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Every line so far once `done` holds of them; fails after 60 s.
    fn until(&mut self, done: impl Fn(&[String]) -> bool, what: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "-w never printed {what}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        self.seen.clone()
    }

    fn interrupt(mut self) -> std::process::ExitStatus {
        // SAFETY: a signal to our own child, which has not been waited for yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Unix seconds of Docker's `StartedAt` (via `date`, as the docker CLI prints it).
fn unix_seconds_of(rfc3339: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", rfc3339.trim(), "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Removes the project's containers and volumes from every minion when dropped, also when
/// the test fails.
struct Teardown(String);

impl Drop for Teardown {
    fn drop(&mut self) {
        teardown(&self.0);
    }
}

fn teardown(project: &str) {
    for m in ["m1", "m2", "m3"] {
        let ids = docker(
            m,
            &[
                "ps",
                "-aq",
                "--filter",
                &common::cluster::of_project(project),
            ],
        );
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            docker(m, &args);
        }
    }
}
