//! Hollow minions for a test (`tests/cluster/hollow`): the engine `cargo test` built, and
//! `hollow down` however the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The hollow engine `cargo test` built beside the test binaries (examples are built with the
/// tests), built now when only one test target was asked for.
pub fn engine() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    let engine = target.join("examples/hollow-engine");
    if !engine.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--example", "hollow-engine"])
            .current_dir(super::project())
            .status()
            .expect("cargo build --example hollow-engine");
        assert!(built.success(), "cannot build the hollow engine");
    }
    engine
}

/// Takes the hollow minions in a directory down when dropped.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(super::project().join("tests/cluster/hollow"))
            .arg("down")
            .env("DROVER_HOLLOW_DIR", &self.0)
            .output();
    }
}
