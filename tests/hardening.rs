//! Hostile and clumsy input through the real binary (issue 10), no cluster needed: a manifest
//! that used to panic, a dangling symlink, control characters in ids, the per-file size limit,
//! and secrets in `drover diff` output.

mod common;
use common::*;

const PASSWORDS: [&str; 3] = ["hunter2-db", "auth-9f8e7d", "pw-in-url"];

fn pod_with_env() -> String {
    format!(
        r#"{{"kind":"Pod","id":"app","desiredState":{{"manifest":{{"version":"v1beta1","id":"app",
        "containers":[{{"name":"c","image":"busybox","env":[
          {{"name":"DB_PASS","value":"{}"}},
          {{"name":"AUTH","value":"{}"}},
          {{"name":"DATABASE_URL","value":"postgres://u:{}@db.example:5432/app"}},
          {{"name":"MODE","value":"production"}}]}}]}}}}}}"#,
        PASSWORDS[0], PASSWORDS[1], PASSWORDS[2]
    )
}

#[test]
fn a_backslash_before_non_ascii_is_a_diagnostic_not_a_crash() {
    let t = TestDir::new();
    t.write("manifests/bad.json", "{\"kind\":\"Pod\",\"id\":\"x\\é\"}");
    for cmd in ["validate", "diff"] {
        let r = t.drover(&[cmd]);
        r.expect_code(2);
        assert!(
            r.stderr.contains("manifests/bad.json:1:22") && r.stderr.contains("invalid escape"),
            "{cmd}: {}",
            r.stderr
        );
    }
}

#[test]
fn a_dangling_symlink_drover_would_not_read_is_skipped() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    std::os::unix::fs::symlink("/nonexistent/notes", t.join("manifests/notes.txt")).unwrap();
    t.drover(&["validate"]).expect_code(0);
    // A dangling manifest is still an error: its objects would silently go missing.
    std::os::unix::fs::symlink("/nonexistent/x", t.join("manifests/gone.json")).unwrap();
    let r = t.drover(&["validate"]);
    r.expect_code(2);
    assert!(r.stderr.contains("gone.json"), "{}", r.stderr);
}

#[test]
fn control_characters_in_ids_do_not_reach_the_terminal() {
    let t = TestDir::new();
    t.write(
        "manifests/p.json",
        r#"{"kind":"Pod","id":"\u001b[31mred\u001b]0;title\u0007","desiredState":{"manifest":{"containers":[{"name":"c","image":"i"}]}}}"#,
    );
    let r = t.drover(&["validate"]);
    r.expect_code(2);
    assert!(
        !r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{7}'),
        "{:?}",
        r.stderr
    );
    assert!(r.stderr.contains("\\u{1b}[31mred"), "{}", r.stderr);
}

#[test]
fn a_file_over_the_configured_size_limit_is_named() {
    let t = TestDir::new();
    t.copy_manifests("manifests");
    t.write("drover.toml", "max_manifest_bytes = 200\n");
    let r = t.drover(&["validate"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("manifests/web-controller.json")
            && r.stderr.contains("max_manifest_bytes"),
        "{}",
        r.stderr
    );
    t.write("drover.toml", "max_manifest_bytes = 1000000\n");
    t.drover(&["validate"]).expect_code(0);
}

#[test]
fn diff_masks_secret_names_and_url_passwords_with_a_keyed_fingerprint() {
    let t = TestDir::new();
    t.write("manifests/app.json", &pod_with_env());
    record_as_applied(&t.join("manifests"), &t.join(".drover"));
    // A changed secret must still show as a change, without showing either value.
    let changed = pod_with_env()
        .replace(PASSWORDS[0], "hunter3-db")
        .replace(PASSWORDS[2], "pw-in-url-2");
    t.write("manifests/app.json", &changed);
    for args in [&["diff"][..], &["diff", "-o", "json"][..]] {
        let r = t.drover(args);
        r.expect_code(1);
        for secret in PASSWORDS.iter().chain(&["hunter3-db", "pw-in-url-2"]) {
            assert!(!r.stdout.contains(secret), "{secret} shown:\n{}", r.stdout);
            // Nor the unkeyed SHA-256 prefix the old mask showed (guessable offline).
            let unkeyed = &drover::store::content_hash(secret.as_bytes())[..8];
            assert!(!r.stdout.contains(unkeyed), "{}", r.stdout);
        }
        assert!(r.stdout.contains("postgres://u:<redacted "), "{}", r.stdout);
    }
    let text = t.drover(&["diff"]).stdout;
    let masked: Vec<&str> = text.lines().filter(|l| l.contains("<redacted")).collect();
    assert!(
        masked.iter().any(|l| l.starts_with('-')) && masked.iter().any(|l| l.starts_with('+')),
        "a changed secret shows as a changed line:\n{text}"
    );
}

/// The default `max_manifest_bytes` (32 MiB): memory must stay under 4 times it.
const MEMORY_BOUND: u64 = 4 * (32 << 20);

/// Held by the tests that measure a drover's peak memory: one at a time, so two drovers
/// reading huge inputs do not share the machine's memory and time while measured.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn yaml_aliases_are_budgeted_by_the_bytes_they_copy() {
    let _one = measuring();
    let t = TestDir::new();
    // 1 MB of text whose aliases would copy its long string a thousand times (about 1 GB);
    // the anchor's own copy counts too, so the second alias (line 3) is one too many.
    let mut text = format!("a: &a {}\n", "x".repeat(1_000_000));
    for i in 0..1000 {
        text.push_str(&format!("k{i}: *a\n"));
    }
    t.write("manifests/bomb.yaml", &text);
    let (r, peak) = t.drover_peak(&["validate"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("manifests/bomb.yaml:3:")
            && r.stderr.contains("alias *a would copy")
            && r.stderr.contains("alias bomb"),
        "{}",
        r.stderr
    );
    assert!(peak < MEMORY_BOUND, "peak {peak} bytes");
}

#[test]
fn a_huge_file_in_a_directory_source_is_refused_having_read_only_its_limit() {
    let _one = measuring();
    let t = TestDir::new();
    t.copy_manifests("manifests");
    // 1 GiB, sparse: nothing on disk, but a reader that reads it whole holds a gigabyte.
    std::fs::File::create(t.join("manifests/huge.json"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (r, peak) = t.drover_peak(&["diff", "manifests"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("huge.json:1:1: the file is 1073741824 bytes, more than the limit"),
        "{}",
        r.stderr
    );
    assert!(peak < MEMORY_BOUND, "peak {peak} bytes");
}

#[test]
fn a_huge_git_blob_is_refused_before_it_is_inflated() {
    let _one = measuring();
    let t = TestDir::new();
    let _repo = GitRepo::init(&t.join("repo"));
    t.copy_manifests("repo");
    // 160 MiB of spaces: a small object in .git, five times the limit once inflated. Written
    // and committed without this process holding it: the child's peak as wait4 reports it
    // includes this process's own high-water mark.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(t.join("repo/huge.json")).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..160 {
            f.write_all(&chunk).unwrap();
        }
    }
    for args in [
        &["add", "-A"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@drover.invalid",
            "commit",
            "-qm",
            "huge",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .current_dir(t.join("repo"))
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
    std::fs::remove_file(t.join("repo/huge.json")).unwrap();
    let (r, peak) = t.drover_peak(&["diff", "repo", "--ref", "HEAD"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("huge.json: the file is 167772160 bytes, more than the limit"),
        "{}",
        r.stderr
    );
    assert!(peak < MEMORY_BOUND, "peak {peak} bytes");
}
