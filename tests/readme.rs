//! Every example of README.md, run. Each ```sh block is preceded by `<!-- check: MODE -->`
//! saying where it runs; a block without one fails this test, so no example goes unchecked.
//!
//! - `repo`: in this repository (validate and diff only read it).
//! - `output`: a plain block whose text must equal what the previous block's last line printed
//!   (stdout and stderr).
//! - `local`: the quick start, in a scratch project on this machine's Docker Engine (a copy of
//!   `manifests/`, its own project name); its containers are removed after.
//! - `testbed`: against the shared test cluster; `testbed-untrusted`: the same with an empty
//!   known_hosts, as a first contact with the minions would be.
//! - `config` (a toml block): loaded as drover.toml by `drover validate`.
//!
//! Each line of a block runs in one bash session, so `&` and `kill %1` work; a line must exit
//! with the code its comment names as `(exit N)`, else 0. `cargo install` and `apt-get install`
//! lines are not rerun: the binary under test is first on PATH instead, and `.ci/run` installs
//! the packages.

mod common;
use common::cluster::{cluster, steady};
use common::*;
use std::path::Path;
use std::process::Command;

struct Block {
    mode: String,
    lang: String,
    line: usize,
    text: String,
}

fn blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(project().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut mode: Option<String> = None;
    let mut lines = readme.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(m) = line
            .strip_prefix("<!-- check: ")
            .and_then(|m| m.strip_suffix(" -->"))
        {
            mode = Some(m.to_string());
            continue;
        }
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                mode = None;
            }
            continue;
        };
        let mut text = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        blocks.push(Block {
            mode: mode.take().unwrap_or_default(),
            lang: lang.to_string(),
            line: n + 1,
            text,
        });
    }
    blocks
}

/// `(exit N)` in a line's comment, else 0.
fn expected_exit(line: &str) -> i32 {
    line.split_once("  #")
        .and_then(|(_, c)| c.split("(exit ").nth(1))
        .and_then(|c| c.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A bash script running each line of `block` and checking its exit code; the last line's
/// output goes to `last.out` in `dir`. It waits for what it started in the background.
fn script(block: &Block, dir: &Path) -> String {
    let mut s = String::from("set -u\n");
    let lines: Vec<&str> = block
        .text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let command = line.split_once("  #").map_or(*line, |(c, _)| c).trim();
        if command.starts_with("cargo install") || command.starts_with("apt-get install") {
            continue;
        }
        let want = expected_exit(line);
        let capture = if i + 1 == lines.len() {
            format!(" > {0}/last.out 2>&1", dir.display())
        } else {
            String::new()
        };
        let background = command.ends_with('&');
        let command = command.trim_end_matches('&');
        if background {
            s.push_str(&format!("{command} &\n"));
            continue;
        }
        s.push_str(&format!(
            "{{ {command} ; }}{capture}\nrc=$?\nif [ $rc -ne {want} ]; then echo \"README.md:{}: \\`{}\\` exited $rc, not {want}\" >&2; exit 1; fi\n",
            block.line,
            command.replace(['`', '"'], "'")
        ));
    }
    s.push_str("wait\n");
    s
}

/// Runs a block's script in `cwd` with the binary under test first on PATH; returns what its
/// last line printed (kept in `scratch`).
fn run(block: &Block, cwd: &Path, scratch: &Path) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_drover")).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        project().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script(block, scratch))
        .current_dir(cwd)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("DROVER_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README.md:{} ({}):\n{}{}",
        block.line,
        block.mode,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(scratch.join("last.out")).unwrap_or_default()
}

#[test]
fn every_sh_block_says_how_it_is_checked() {
    let unchecked: Vec<usize> = blocks()
        .iter()
        .filter(|b| b.lang == "sh" && b.mode.is_empty())
        .map(|b| b.line)
        .collect();
    assert!(
        unchecked.is_empty(),
        "README.md lines {unchecked:?}: sh blocks without <!-- check: MODE -->"
    );
}

#[test]
fn the_repository_examples_and_the_error_example_are_real() {
    let scratch = TestDir::new();
    let mut last = String::new();
    let mut checked = 0;
    for b in blocks() {
        match b.mode.as_str() {
            "repo" => {
                // In the repository itself; what the last line printed goes to the scratch
                // directory.
                last = run(&b, &project(), scratch.path());
                checked += 1;
            }
            "output" => {
                assert_eq!(last, b.text, "README.md:{}: output differs", b.line);
                checked += 1;
            }
            "config" => {
                scratch.write("drover.toml", &b.text);
                let r = scratch.drover(&[
                    "validate",
                    project().join("examples/guestbook/json").to_str().unwrap(),
                ]);
                r.expect_code(0);
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 4, "{checked} blocks checked");
}

#[test]
fn the_cluster_examples_run_on_the_test_cluster() {
    let c = cluster();
    let _g = steady();
    let mut checked = 0;
    for b in blocks() {
        let t = TestDir::new();
        match b.mode.as_str() {
            "testbed" => {}
            "testbed-untrusted" => {
                let config = std::fs::read_to_string(&c.config).unwrap();
                let known = t.join("known_hosts");
                std::fs::write(&known, "").unwrap();
                t.write(
                    "drover.toml",
                    &config.replace(
                        &c.dir.join("known_hosts").display().to_string(),
                        &known.display().to_string(),
                    ),
                );
            }
            _ => continue,
        }
        // The repository's scripts, as the README calls them.
        std::os::unix::fs::symlink(project().join("tests"), t.join("tests")).unwrap();
        std::os::unix::fs::symlink(project().join("examples"), t.join("examples")).unwrap();
        run(&b, t.path(), t.path());
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn the_hollow_minion_example_runs() {
    let blocks: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.mode == "hollow")
        .collect();
    assert_eq!(blocks.len(), 1);
    let t = TestDir::new();
    std::os::unix::fs::symlink(project().join("tests"), t.join("tests")).unwrap();
    // The engine `cargo test` built, and a directory of this test's own.
    let engine = common::hollow::engine();
    std::env::set_var("HOLLOW_ENGINE", &engine);
    std::env::set_var("DROVER_HOLLOW_DIR", t.join("hollow"));
    let down = common::hollow::Down(t.join("hollow"));
    run(&blocks[0], t.path(), t.path());
    drop(down);
}

/// Removes a project's containers from the local Docker Engine when dropped./// Removes a project's containers from the local Docker Engine when dropped.
struct LocalTeardown(String);

impl Drop for LocalTeardown {
    fn drop(&mut self) {
        let filter = format!("label=io.drover.project={}", self.0);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
        let volumes = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for v in volumes.split_whitespace() {
            let _ = Command::new("docker").args(["volume", "rm", v]).output();
        }
    }
}

#[test]
fn the_quick_start_runs_on_the_local_docker_engine() {
    let _g = steady();
    let t = TestDir::new();
    t.copy_manifests("manifests");
    std::os::unix::fs::symlink(project().join("tests"), t.join("tests")).unwrap();
    let name = format!("readme-{}", std::process::id());
    t.write("drover.toml", &format!("project = \"{name}\"\n"));
    let _cleanup = LocalTeardown(name);
    let quick: Vec<Block> = blocks().into_iter().filter(|b| b.mode == "local").collect();
    assert_eq!(quick.len(), 3);
    // One after the other, as a reader types them.
    for b in &quick {
        run(b, t.path(), t.path());
    }
    let answer = std::fs::read_to_string(t.join("last.out")).unwrap();
    assert!(answer.is_empty(), "the daemon stopped quietly: {answer}");
}
