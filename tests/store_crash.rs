//! Crash safety is tested, not argued: a real child process commits to the store in a loop and
//! is killed with SIGKILL at varying points; after every kill the store must open, every object
//! must match its hash, and all objects must come from one commit (the previous or the next
//! state, never a mix).

use drover::model::{Kind, ObjectKey};
use drover::store::{Batch, Section, Store};
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "DROVER_TEST_CRASH_WRITER";
const OBJECTS: usize = 25;

/// In the child: commit generation after generation until killed.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // run normally: nothing to do
    };
    let store = Store::new(dir);
    let lock = store.lock("crash-writer", Duration::from_secs(10)).unwrap();
    loop {
        let generation = store.read_index().unwrap().resource_version + 1;
        let mut batch = Batch::default();
        for i in 0..OBJECTS {
            let text = format!(
                "{{\"generation\": {generation}, \"id\": {i}, \"pad\": \"{}\"}}\n",
                "x".repeat(2000 + i * 50)
            );
            batch.put(
                Section::Applied,
                ObjectKey::new(Kind::Pod, format!("p{i}")),
                text,
                None,
            );
        }
        // Delete and re-add one object every other generation, to crash deletes too.
        if generation.is_multiple_of(2) {
            batch.delete(Section::Observed, ObjectKey::new(Kind::Pod, "extra"));
        } else {
            batch.put(
                Section::Observed,
                ObjectKey::new(Kind::Pod, "extra"),
                format!("{generation}\n"),
                None,
            );
        }
        store.commit(&lock, &batch).unwrap();
    }
}

fn generation_of(text: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["generation"].as_u64().unwrap()
}

#[test]
fn a_writer_killed_at_any_point_leaves_a_readable_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut last_rv = 0;
    let mut kills_mid_run = 0;
    for round in 0..40u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait (with a deadline) until the child has committed at least once more, then let it
        // run a varying extra time so the kill lands at different points of a commit.
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.read_index().map(|i| i.resource_version).unwrap_or(0) <= last_rv {
            assert!(Instant::now() < deadline, "child made no progress");
            assert!(child.try_wait().unwrap().is_none(), "child exited early");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_micros(round * 397 % 7000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills_mid_run += 1;

        let index = store.read_index().expect("index readable after a kill");
        assert!(index.resource_version >= last_rv);
        last_rv = index.resource_version;
        let objects = store
            .read_section(&index, Section::Applied)
            .expect("objects readable and matching their hashes");
        assert_eq!(objects.len(), OBJECTS);
        let generations: std::collections::BTreeSet<u64> =
            objects.values().map(|t| generation_of(t)).collect();
        assert_eq!(
            generations.len(),
            1,
            "objects from different commits: {generations:?}"
        );
        let generation = *generations.iter().next().unwrap();
        assert_eq!(
            generation, index.resource_version,
            "objects and index disagree"
        );
        let extra = index
            .observed
            .contains_key(&ObjectKey::new(Kind::Pod, "extra"));
        assert_eq!(extra, generation % 2 == 1);
        // Leftovers are bounded (the writer sweeps them when it takes the lock): the current
        // objects plus at most one interrupted commit's worth.
        let files = std::fs::read_dir(dir.path().join("objects/applied/pods"))
            .unwrap()
            .count();
        assert!(files <= 2 * OBJECTS + 1, "{files} files");
    }
    assert_eq!(kills_mid_run, 40);
    assert!(
        last_rv >= 40,
        "the writer must have made progress, rv {last_rv}"
    );
}
