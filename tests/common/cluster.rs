//! The shared test cluster: brought up once (idempotently) by the first test that needs it,
//! through the same `tests/cluster/testbed` script people use by hand; `scripts/test` takes it
//! down at the end. Tests that kill minions hold `disrupt()`; the others hold `steady()`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const MINIONS: usize = 3;

pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DISRUPTION: RwLock<()> = RwLock::new(());

pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = PathBuf::from(
            std::env::var("DROVER_TESTBED_DIR").unwrap_or_else(|_| "/tmp/drover-testbed".into()),
        );
        testbed(&["up", &MINIONS.to_string()]);
        Cluster {
            config: dir.join("drover.toml"),
            dir,
        }
    })
}

/// Runs the docker CLI against a minion's own engine; its stdout.
pub fn docker(minion: &str, args: &[&str]) -> String {
    let socket = format!("unix://{}/{minion}/docker.sock", cluster().dir.display());
    let out = Command::new("docker")
        .arg("-H")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn testbed(args: &[&str]) {
    let script = super::project().join("tests/cluster/testbed");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("run testbed");
    assert!(
        out.status.success(),
        "testbed {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Held by tests that need every minion up.
pub fn steady() -> RwLockReadGuard<'static, ()> {
    DISRUPTION.read().unwrap_or_else(|e| e.into_inner())
}

/// Held by tests that kill and revive minions.
pub fn disrupt() -> RwLockWriteGuard<'static, ()> {
    DISRUPTION.write().unwrap_or_else(|e| e.into_inner())
}

/// Revives a minion when dropped, so a failing test does not leave it dead for the others.
pub struct Revive(pub usize);

impl Drop for Revive {
    fn drop(&mut self) {
        // Never panic here: this runs while a failed test unwinds.
        let script = super::project().join("tests/cluster/testbed");
        match Command::new(script)
            .args(["revive", &self.0.to_string()])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "testbed revive {} failed: {}",
                self.0,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("testbed revive {} failed: {e}", self.0),
        }
    }
}

/// A test directory configured for the shared cluster as a project of its own (a name no other
/// test or earlier run uses), so what it makes is told apart from everything else there.
pub fn project_dir() -> (super::TestDir, String) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{}-{n}-{nanos:x}", std::process::id());
    let t = super::TestDir::new();
    let config = std::fs::read_to_string(&cluster().config).unwrap();
    t.write("drover.toml", &format!("project = \"{name}\"\n{config}"));
    (t, name)
}

/// The docker `--filter` for one project's containers.
pub fn of_project(project: &str) -> String {
    format!("label=io.drover.project={project}")
}

impl Cluster {
    /// The minion specs of the testbed config, through the library.
    pub fn specs(&self) -> Vec<drover::minion::MinionSpec> {
        let settings = drover::config::Settings::load(Some(&self.config)).unwrap();
        drover::minion::minion_specs(
            &settings,
            &settings.project(&settings.state_dir(None)).unwrap(),
            None,
        )
        .unwrap()
    }

    pub fn minion(&self, name: &str) -> drover::minion::Minion {
        let spec = self.specs().into_iter().find(|s| s.name == name).unwrap();
        drover::minion::Minion::new(spec).unwrap()
    }
}

/// Ends a test's project: every manifest removed and applied (`--allow-empty`), so its pods
/// leave the shared cluster.
pub fn tear_down(t: &super::TestDir) {
    for f in std::fs::read_dir(t.join("manifests")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    t.drover(&["apply", "--allow-empty", "--timeout", "60"])
        .expect_code(0);
}
