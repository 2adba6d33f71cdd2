//! `drover validate` and `drover diff` against real directories, real git repositories and a
//! real state directory.

mod common;
use common::*;

#[test]
fn diff_against_an_empty_store_creates_everything() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    let r = t.drover(&["diff"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("+ ReplicationController/web"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("+++ ReplicationController/web (manifests/web-controller.json)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .trim_end()
            .ends_with("4 to create, 0 to change, 0 to delete"),
        "{}",
        r.stdout
    );
    // diff is a dry run: it writes no state at all.
    assert!(!t.join(".drover/state.json").exists());
}

#[test]
fn diff_against_a_matching_store_is_in_sync() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    let r = t.drover(&["diff"]);
    r.expect_code(0);
    assert!(r.stdout.contains("in sync: 4 objects"), "{}", r.stdout);
}

#[test]
fn diff_live_names_a_minion_that_cannot_be_reached_and_still_shows_the_objects() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    t.write(
        "drover.toml",
        "[[minions]]\nname = \"lost\"\ntransport = \"local\"\ndocker_socket = \"/nonexistent/docker.sock\"\n",
    );
    let r = t.drover(&["diff", "--live"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("4 to create, 0 to change, 0 to delete"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("not ready: lost"), "{}", r.stdout);
    assert!(
        r.stderr.contains("minion lost (local)")
            && r.stderr.contains("using the pods last seen there"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("drover: error"), "{}", r.stderr);
}

#[test]
fn an_applied_copy_damaged_or_made_to_match_the_source_is_an_error_not_in_sync() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    let name = "web@1.json".to_string();
    let record = t.join(".drover/objects/applied/services").join(&name);
    let good = std::fs::read(&record).unwrap();
    let refused = |t: &TestDir| {
        let r = t.drover(&["diff"]);
        r.expect_code(2);
        assert!(
            r.stderr.contains(&name) && r.stderr.contains("damaged"),
            "{}",
            r.stderr
        );
    };
    // The source unchanged, the applied copy's bytes not what the index recorded.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&record, &flipped).unwrap();
    refused(&t);
    // The applied copy edited by hand into exactly what the changed source now says: equal
    // to the desired text, but not to the hash the index recorded.
    std::fs::write(&record, &good).unwrap();
    t.drover(&["diff"]).expect_code(0);
    let text = String::from_utf8(good.clone()).unwrap();
    let changed = text.replacen("\"port\": ", "\"port\": 1", 1);
    assert_ne!(changed, text);
    std::fs::write(&record, &changed).unwrap();
    let manifest = std::fs::read_to_string(t.join("manifests/web-service.json")).unwrap();
    t.write(
        "manifests/web-service.json",
        &manifest.replacen("\"port\": 8080", "\"port\": 18080", 1),
    );
    refused(&t);
}

#[test]
fn a_changed_field_is_named_and_shown() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    let file = t.join("manifests/web-controller.json");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"replicas\": 2", "\"replicas\": 5");
    std::fs::write(&file, text).unwrap();
    let r = t.drover(&["diff"]);
    r.expect_code(1);
    assert!(
        r.stdout
            .contains("~ ReplicationController/web: desiredState.replicas"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("-    \"replicas\": 2,") && r.stdout.contains("+    \"replicas\": 5,"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("0 to create, 1 to change, 0 to delete"),
        "{}",
        r.stdout
    );
}

#[test]
fn markdown_for_a_pull_request_sums_up_and_folds_each_diff_cut_at_max_lines() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    let file = t.join("manifests/web-controller.json");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"replicas\": 2", "\"replicas\": 5");
    std::fs::write(&file, text).unwrap();
    std::fs::remove_file(t.join("manifests/web-service.json")).unwrap();
    let r = t.drover(&["diff", "-o", "markdown"]);
    r.expect_code(1);
    let md = &r.stdout;
    assert!(
        md.starts_with("### drover diff: 0 to create, 1 to change, 1 to delete\n"),
        "{md}"
    );
    assert!(
        md.contains("| ~ | ReplicationController/web | `manifests/web-controller.json` | `desiredState.replicas` |")
            && md.contains("| - | Service/web |"),
        "{md}"
    );
    assert_eq!(md.matches("<details>").count(), 2, "{md}");
    assert_eq!(md.matches("</details>").count(), 2, "{md}");
    assert_eq!(md.matches("```diff\n").count(), 2, "{md}");
    assert_eq!(md.matches("\n```\n").count(), 2, "every fence closed: {md}");
    assert!(md.contains("+    \"replicas\": 5,"), "{md}");
    assert!(
        !md.contains("more line"),
        "nothing cut at the default: {md}"
    );
    // Cut at --max-lines, and the cut said.
    let r = t.drover(&["diff", "-o", "markdown", "--max-lines", "3"]);
    r.expect_code(1);
    let cut: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("more line"))
        .collect();
    assert_eq!(cut.len(), 2, "{}", r.stdout);
    assert!(
        cut.iter().all(|l| l.ends_with("cut (`--max-lines 3`).")),
        "{cut:?}"
    );
    let fenced: Vec<&str> = r
        .stdout
        .split("```diff\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert!(fenced.iter().all(|b| b.lines().count() == 3), "{fenced:?}");
    // In sync: a heading that says so, nothing folded.
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    let r = t.drover(&["diff", "-o", "markdown"]);
    r.expect_code(0);
    assert!(
        r.stdout.starts_with("### drover diff: in sync\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("<details>"), "{}", r.stdout);
}

#[test]
fn a_deleted_file_is_a_delete() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    std::fs::remove_file(t.join("manifests/web-service.json")).unwrap();
    let r = t.drover(&["diff", "-o", "json"]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["inSync"], false);
    // Every documented key is there: a directory source's commit is null.
    assert!(
        v.as_object().unwrap().contains_key("commit") && v["commit"].is_null(),
        "{v}"
    );
    assert_eq!(
        v["summary"],
        serde_json::json!({"create": 0, "change": 0, "delete": 1})
    );
    assert_eq!(v["changes"][0]["action"], "delete");
    assert_eq!(v["changes"][0]["kind"], "Service");
    assert_eq!(v["changes"][0]["id"], "web");
}

#[test]
fn bad_manifests_fail_with_every_file_named_and_the_store_untouched() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    let before = tree_bytes(&t.join(".drover"));
    t.write(
        "manifests/truncated.json",
        "{\"kind\": \"Pod\", \"id\": \"x\", \"desiredState\": {",
    );
    t.write("manifests/typo.json", "{\n  \"kind\": \"Service\",\n  \"id\": \"s\",\n  \"port\": \"80\",\n  \"selektor\": {\"a\": \"b\"}\n}");
    t.write(
        "manifests/dup.toml",
        "kind = \"Service\"\nid = \"web\"\nport = 81\nselector = { a = \"b\" }\n",
    );
    let r = t.drover(&["diff"]);
    r.expect_code(2);
    assert_eq!(r.stdout, "", "nothing may be printed as a diff");
    for want in [
        "manifests/truncated.json:1:45: unexpected end of input",
        "manifests/typo.json:4:11: port: expected an integer, found a string",
        "manifests/typo.json:5:3: selektor: unknown field `selektor`; did you mean `selector`?",
        "manifests/web-service.json:2:9: id: duplicate id: Service/web is also defined at manifests/dup.toml:2:6",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?} in\n{}", r.stderr);
    }
    assert!(
        r.stderr
            .contains("4 errors in 3 files; nothing was changed"),
        "{}",
        r.stderr
    );
    assert_eq!(tree_bytes(&t.join(".drover")), before);
    t.drover(&["validate"]).expect_code(2);
}

#[test]
fn validate_accepts_every_shipped_example() {
    let t = TestDir::new();
    for dir in [
        "manifests",
        "examples/tomcat/json",
        "examples/tomcat/toml",
        "examples/guestbook/json",
        "examples/guestbook/toml",
        "examples/tomcat/yaml",
        "examples/guestbook/yaml",
        "examples/manifests-yaml",
        "examples/kubernetes-guestbook",
    ] {
        let path = project().join(dir);
        let r = t.drover(&["validate", path.to_str().unwrap()]);
        r.expect_code(0);
        assert!(r.stdout.contains("objects valid"), "{}", r.stdout);
    }
}

#[test]
fn json_and_toml_examples_describe_the_same_objects() {
    for app in ["tomcat", "guestbook"] {
        let read = |fmt: &str| {
            let spec = drover::source::SourceSpec::new(
                project()
                    .join("examples")
                    .join(app)
                    .join(fmt)
                    .to_str()
                    .unwrap(),
                None,
                None,
            );
            let snap = drover::source::read(&spec, &Default::default()).unwrap();
            let d = drover::manifest::desired_state(&snap.files).unwrap();
            d.objects
                .values()
                .map(|(o, _)| o.normalized_json())
                .collect::<Vec<_>>()
        };
        assert_eq!(read("json"), read("toml"), "{app}");
    }
}

#[test]
fn a_damaged_store_is_an_error_not_an_empty_state() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    t.write(
        ".drover/state.json",
        "{\"format\": 1, \"resourceVersion\": 3, \"desired\": {}, \"obs",
    );
    let r = t.drover(&["diff"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains(".drover/state.json: damaged state file"),
        "{}",
        r.stderr
    );
}

#[test]
fn hidden_entries_and_other_files_are_skipped_and_escaping_symlinks_refused() {
    let t = TestDir::new();
    t.copy_manifests("src/m");
    t.write("src/m/.hidden/bad.json", "{");
    t.write("src/m/.bad.json", "{");
    t.write("src/m/README.md", "not a manifest");
    t.write("outside/evil.json", "{}");
    t.drover(&["validate", "src/m"]).expect_code(0);
    std::os::unix::fs::symlink(t.join("outside/evil.json"), t.join("src/m/link.json")).unwrap();
    let r = t.drover(&["validate", "src/m"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("src/m/link.json: symlink points outside the source directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn symlinks_inside_the_source_are_followed() {
    let t = TestDir::new();
    t.copy_manifests("m/real");
    std::os::unix::fs::symlink(t.join("m/real"), t.join("m/alias")).unwrap();
    // The same files reached twice would be duplicate ids; the walk reads each directory once.
    let r = t.drover(&["validate", "m"]);
    r.expect_code(0);
    assert!(r.stdout.contains("4 objects valid"), "{}", r.stdout);
}

#[test]
fn git_source_reads_the_committed_tree_not_the_work_tree() {
    let t = TestDir::new();
    let repo = GitRepo::init(&t.join("repo"));
    t.copy_manifests("repo/deploy");
    let first = repo.commit_all("first");
    // An uncommitted edit and an uncommitted broken file must not be seen.
    t.write("repo/deploy/broken.json", "{");
    let r = t.drover(&[
        "diff", "repo", "--ref", "main", "--path", "deploy", "-o", "json",
    ]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["commit"], first.as_str());
    assert_eq!(v["summary"]["create"], 4);
    let service = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "Service" && c["id"] == "web")
        .unwrap();
    assert_eq!(service["origin"]["file"], "deploy/web-service.json");
    assert_eq!(service["origin"]["commit"], first.as_str());

    // Record, then change one field in a new commit: the diff names it.
    let spec = drover::source::SourceSpec::new(
        t.join("repo").to_str().unwrap(),
        Some("main"),
        Some("deploy"),
    );
    let snap = drover::source::read(&spec, &Default::default()).unwrap();
    let desired = drover::manifest::desired_state(&snap.files).unwrap();
    let store = drover::store::Store::new(t.join(".drover"));
    let lock = store
        .lock("test", std::time::Duration::from_secs(5))
        .unwrap();
    store
        .commit(
            &lock,
            &drover::plan::objects::record_batch(&desired, &store.read_index().unwrap()),
        )
        .unwrap();
    drop(lock);
    t.drover(&["diff", "repo", "--ref", "main", "--path", "deploy"])
        .expect_code(0);

    std::fs::remove_file(t.join("repo/deploy/broken.json")).unwrap();
    let f = t.join("repo/deploy/web-service.json");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f).unwrap().replace("8080", "8081"),
    )
    .unwrap();
    repo.commit_all("port");
    let r = t.drover(&["diff", "repo", "--ref", "main", "--path", "deploy"]);
    r.expect_code(1);
    assert!(r.stdout.contains("~ Service/web: port"), "{}", r.stdout);
    // The old commit is still readable by id.
    t.drover(&["diff", "repo", "--ref", &first, "--path", "deploy"])
        .expect_code(0);
}

#[test]
fn a_bad_manifest_committed_to_git_is_reported_with_its_path() {
    let t = TestDir::new();
    let repo = GitRepo::init(&t.join("repo"));
    t.copy_manifests("repo");
    t.write("repo/bad.json", "{\"kind\": \"Pod\",\n \"id\": 5}");
    repo.commit_all("bad");
    let r = t.drover(&["diff", "repo", "--ref", "HEAD"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("bad.json:2:8: id: expected a string, found an integer"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_file_url_source_is_cloned_into_the_state_dir_and_refetched() {
    let t = TestDir::new();
    let repo = GitRepo::init(&t.join("origin"));
    t.copy_manifests("origin");
    repo.commit_all("one");
    let url = format!("file://{}", t.join("origin").display());
    let r = t.drover(&["diff", &url]);
    r.expect_code(1);
    assert!(r.stdout.contains("4 to create"), "{}", r.stdout);
    assert!(std::fs::read_dir(t.join(".drover/git")).unwrap().count() == 1);
    // A new commit upstream is seen on the next run (fetched, not cached stale).
    std::fs::remove_file(t.join("origin/web-service.json")).unwrap();
    let second = repo.commit_all("two");
    let r = t.drover(&["diff", &url, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["commit"], second.as_str());
    assert_eq!(v["summary"]["create"], 3);
    // A ref that does not exist is a clear error.
    let r = t.drover(&["diff", &url, "--ref", "nope"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("cannot resolve ref `nope`"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_config_file_sets_source_and_state_dir_and_bad_keys_are_named() {
    let t = TestDir::new();
    t.copy_manifests("apps/prod");
    t.write(
        "drover.toml",
        "source = \"apps\"\npath = \"prod\"\nstate_dir = \"state\"\n",
    );
    t.drover(&["diff"]).expect_code(1);
    record_as_applied(&t.join("apps/prod"), &t.join("state"));
    t.drover(&["diff"]).expect_code(0);
    t.write("drover.toml", "source = \"apps\"\nstate_dri = \"state\"\n");
    let r = t.drover(&["diff"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("drover.toml:2:1: unknown field `state_dri`"),
        "{}",
        r.stderr
    );
}

#[test]
fn secrets_in_env_never_reach_the_diff() {
    let t = TestDir::new();
    t.write("m/p.json", r#"{"kind":"Pod","id":"p","desiredState":{"manifest":{"containers":[{"name":"c","image":"i","env":[{"name":"DB_PASSWORD","value":"hunter2"}]}]}}}"#);
    let r = t.drover(&["diff", "m"]);
    r.expect_code(1);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    assert!(r.stdout.contains("<redacted "), "{}", r.stdout);
    let r = t.drover(&["diff", "m", "-o", "json"]);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
}

#[test]
fn a_saved_plan_applies_as_saved_and_is_refused_once_the_store_or_the_source_moved() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let repo = GitRepo::init(&t.join("repo"));
    let service = |port: u16| {
        format!(
            r#"{{"kind": "Service", "apiVersion": "v1beta1", "id": "planned", "port": {port},
  "containerPort": 80, "selector": {{"app": "planned"}}}}"#
        )
    };
    t.write("repo/deploy/svc.json", &service(8080));
    repo.commit_all("first");
    let source = ["repo", "--ref", "main", "--path", "deploy"];
    fn with<'a>(args: &[&'a str], source: &[&'a str]) -> Vec<&'a str> {
        [args, source].concat()
    }
    let revision = || -> u64 {
        let state = std::fs::read_to_string(t.join(".drover/state.json")).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&state)
            .map(|v| v["resourceVersion"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };

    // Saved, private, and applied as saved.
    let r = t.drover(&with(&["diff", "--out", "plan.json"], &source));
    r.expect_code(1);
    assert!(r.stdout.contains("+ Service/planned"), "{}", r.stdout);
    assert!(r.stderr.contains("plan saved to plan.json"), "{}", r.stderr);
    let mode = std::fs::metadata(t.join("plan.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["storeRevision"], 0);
    assert_eq!(plan["changes"][0]["id"], "planned");
    t.drover(&with(&["apply", "--plan", "plan.json"], &source))
        .expect_code(0);
    t.drover(&with(&["diff"], &source)).expect_code(0);

    // The store moved (another apply) since the plan: refused, nothing changed.
    t.write("repo/deploy/svc.json", &service(8081));
    repo.commit_all("8081");
    t.drover(&with(&["diff", "--out", "stale-store.json"], &source))
        .expect_code(1);
    let made_at = revision();
    t.drover(&with(&["apply", "--yes"], &source)).expect_code(0);
    let now = revision();
    assert!(now > made_at);
    let r = t.drover(&with(&["apply", "--plan", "stale-store.json"], &source));
    r.expect_code(2);
    let said = format!(
        "the store changed since this plan was made: revision {made_at}, now {now}; nothing was changed"
    );
    assert!(r.stderr.contains(&said), "{said} in: {}", r.stderr);
    assert_eq!(revision(), now, "nothing committed");

    // The source moved (a new commit, or the same ref's objects) since the plan: refused.
    t.drover(&with(&["diff", "--out", "stale-source.json"], &source))
        .expect_code(0);
    t.write("repo/deploy/svc.json", &service(8082));
    repo.commit_all("8082");
    let r = t.drover(&with(&["apply", "--plan", "stale-source.json"], &source));
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("the source changed since this plan was made: commit "),
        "{}",
        r.stderr
    );
    assert_eq!(revision(), now, "nothing committed");
    let r = t.drover(&with(&["diff"], &source));
    r.expect_code(1);
    assert!(r.stdout.contains("~ Service/planned: port"), "{}", r.stdout);

    // A directory source has no commit: its objects' digest tells.
    t.write("manifests/svc.json", &service(9090));
    t.drover(&["diff", "manifests", "--out", "dir.json"])
        .expect_code(1);
    t.write("manifests/svc.json", &service(9091));
    let r = t.drover(&["apply", "manifests", "--plan", "dir.json"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("the source changed since this plan was made: its objects' digest"),
        "{}",
        r.stderr
    );
    // Not a plan: the file, line and column.
    t.write("broken.json", "{\"droverPlan\": 1,");
    let r = t.drover(&["apply", "manifests", "--plan", "broken.json"]);
    r.expect_code(2);
    assert!(r.stderr.contains("broken.json:1:"), "{}", r.stderr);
    assert_eq!(revision(), now, "nothing committed");
}
