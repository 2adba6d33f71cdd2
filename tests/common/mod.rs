//! Shared helpers for the integration tests: a temp directory builder and a runner for the
//! real `drover` binary.
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod daemon;
pub mod hollow;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Copies the project's `manifests/` (the example application) into `rel`.
    pub fn copy_manifests(&self, rel: &str) -> &Self {
        copy_dir(&project().join("manifests"), &self.join(rel));
        self
    }

    /// Runs drover with the state directory inside this test dir and cwd = this dir.
    pub fn drover(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .current_dir(self.path())
            .env_remove("DROVER_CONFIG")
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("run drover");
        Run::from(out)
    }
}

pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Makes the store's applied section equal to what `source` says, through the library, as a
/// successful apply would record it.
pub fn record_as_applied(source: &Path, state: &Path) {
    use drover::source::{read, GitOptions, SourceSpec};
    let spec = SourceSpec::new(source.to_str().unwrap(), None, None);
    let snap = read(&spec, &GitOptions::default()).unwrap();
    let desired = drover::manifest::desired_state(&snap.files).unwrap();
    let store = drover::store::Store::new(state);
    let lock = store
        .lock("test", std::time::Duration::from_secs(5))
        .unwrap();
    let index = store.read_index().unwrap();
    let batch = drover::plan::objects::record_batch(&desired, &index);
    store.commit(&lock, &batch).unwrap();
}

/// Every file under a directory with its bytes, to prove a command changed nothing.
pub fn tree_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(tree_bytes(&e.path()));
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A git repository made with git2, with helpers to commit a directory's state.
pub struct GitRepo {
    pub repo: git2::Repository,
    pub path: PathBuf,
}

impl GitRepo {
    pub fn init(path: &Path) -> GitRepo {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = git2::Repository::init_opts(path, &opts).unwrap();
        GitRepo {
            repo,
            path: path.to_path_buf(),
        }
    }

    /// Stages everything in the work tree (including removals) and commits; returns the id.
    pub fn commit_all(&self, message: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"].iter(), None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("drover test", "test@drover.invalid").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    }
}

impl TestDir {
    /// Runs drover as `drover` does, and also returns its peak resident memory in bytes, as
    /// GNU time(1) reports it: time is a small process of its own that starts drover, so the
    /// figure is drover's alone (a child forked straight from this test process would count
    /// this process's own high-water mark in its peak).
    pub fn drover_peak(&self, args: &[&str]) -> (Run, u64) {
        let out = self.join(".drover-peak.out");
        let err = self.join(".drover-peak.err");
        let peak = self.join(".drover-peak.kb");
        let status = Command::new("/usr/bin/time")
            .arg("-q")
            .arg("-o")
            .arg(&peak)
            .args(["-f", "%M", env!("CARGO_BIN_EXE_drover")])
            .current_dir(self.path())
            .env_remove("DROVER_CONFIG")
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .expect("/usr/bin/time (Debian package time) runs drover");
        let code = status.code().unwrap_or(-1);
        let kb: u64 = std::fs::read_to_string(&peak)
            .unwrap_or_default()
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("time(1) wrote the peak");
        let run = Run {
            code,
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        };
        (run, kb * 1024)
    }
}
