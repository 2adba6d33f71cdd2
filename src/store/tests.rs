use super::*;
use crate::model::Kind;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn key(id: &str) -> ObjectKey {
    ObjectKey::new(Kind::Pod, id)
}

fn put(store: &Store, lock: &StoreLock, items: &[(&str, &str)]) -> u64 {
    let mut b = Batch::default();
    for (id, text) in items {
        b.put(Section::Applied, key(id), text.to_string(), None);
    }
    store.commit(lock, &b).unwrap()
}

#[test]
fn first_run_reads_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("absent"));
    let index = store.read_index().unwrap();
    assert_eq!(index.resource_version, 0);
    assert!(index.applied.is_empty());
}

#[test]
fn commits_round_trip_and_resource_version_grows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("s"));
    let lock = store.lock("test", Duration::ZERO).unwrap();
    assert_eq!(
        put(&store, &lock, &[("a", "{\"v\":1}\n"), ("b", "{}\n")]),
        1
    );
    assert_eq!(put(&store, &lock, &[("a", "{\"v\":2}\n")]), 2);
    let index = store.read_index().unwrap();
    assert_eq!(index.applied[&key("a")].resource_version, 2);
    assert_eq!(index.applied[&key("b")].resource_version, 1);
    let all = store.read_section(&index, Section::Applied).unwrap();
    assert_eq!(all[&key("a")], "{\"v\":2}\n");
    // The superseded version is gone from disk.
    assert!(!dir.path().join("s/objects/applied/pods/a@1.json").exists());

    let mut b = Batch::default();
    b.delete(Section::Applied, key("b"));
    assert_eq!(store.commit(&lock, &b).unwrap(), 3);
    let index = store.read_index().unwrap();
    assert!(!index.applied.contains_key(&key("b")));
    assert!(!dir.path().join("s/objects/applied/pods/b@1.json").exists());
}

#[test]
fn files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("s"));
    let lock = store.lock("test", Duration::ZERO).unwrap();
    put(&store, &lock, &[("a", "{}")]);
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("s"), 0o700);
    assert_eq!(mode("s/objects/applied/pods"), 0o700);
    assert_eq!(mode("s/state.json"), 0o600);
    assert_eq!(mode("s/objects/applied/pods/a@1.json"), 0o600);
    assert_eq!(mode("s/lock"), 0o600);
}

#[test]
fn a_damaged_index_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        "{\"format\": 1, \"resourceVer",
    )
    .unwrap();
    let err = Store::new(dir.path()).read_index().unwrap_err().to_string();
    assert!(err.contains("state.json: damaged state file"), "{err}");
}

#[test]
fn a_newer_format_asks_for_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        "{\"format\": 9, \"other\": true}",
    )
    .unwrap();
    let err = Store::new(dir.path()).read_index().unwrap_err().to_string();
    assert!(
        err.contains("store format 9") && err.contains("upgrade drover"),
        "{err}"
    );
}

#[test]
fn a_tampered_object_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let lock = store.lock("test", Duration::ZERO).unwrap();
    put(&store, &lock, &[("a", "{\"v\":1}\n")]);
    let file = dir.path().join("objects/applied/pods/a@1.json");
    std::fs::write(&file, "{\"v\":").unwrap();
    let index = store.read_index().unwrap();
    let err = store
        .read_section(&index, Section::Applied)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a@1.json: damaged state file"), "{err}");
}

#[test]
fn a_second_writer_gets_a_clear_error_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let _held = store.lock("daemon", Duration::ZERO).unwrap();
    let err = store
        .lock("apply", Duration::from_millis(120))
        .unwrap_err()
        .to_string();
    assert!(err.contains("locked by another drover process"), "{err}");
    assert!(
        err.contains(&format!("pid {}: drover daemon", std::process::id())),
        "{err}"
    );
}

#[test]
fn the_lock_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    drop(store.lock("a", Duration::ZERO).unwrap());
    store.lock("b", Duration::ZERO).unwrap();
}

#[test]
fn leftovers_of_a_crash_are_swept_by_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let lock = store.lock("test", Duration::ZERO).unwrap();
    put(&store, &lock, &[("a", "{}")]);
    let orphan = dir.path().join("objects/applied/pods/a@7.json");
    let tmp = dir.path().join("objects/applied/pods/.tmp-1-1");
    std::fs::write(&orphan, "x").unwrap();
    std::fs::write(&tmp, "x").unwrap();
    put(&store, &lock, &[("b", "{}")]);
    assert!(!orphan.exists() && !tmp.exists());
    assert!(dir.path().join("objects/applied/pods/a@1.json").exists());
}

#[test]
fn a_format_1_store_is_read_and_moved_on_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"v\":1}\n";
    std::fs::create_dir_all(dir.path().join("objects/observed/pods")).unwrap();
    std::fs::write(dir.path().join("objects/observed/pods/a@3.json"), text).unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        format!(
            "{{\"format\": 1, \"resourceVersion\": 3, \"desired\": {{}}, \"observed\": \
             {{\"Pod/a\": {{\"resourceVersion\": 3, \"hash\": \"{}\"}}}}}}",
            content_hash(text.as_bytes())
        ),
    )
    .unwrap();
    let store = Store::new(dir.path());
    // Readable as it is, the old "observed" objects being the applied ones.
    let index = store.read_index().unwrap();
    assert_eq!(
        store.read_section(&index, Section::Applied).unwrap()[&key("a")],
        text
    );
    assert!(index.observed.is_empty());
    // Taking the lock does not sweep the old files away; the next commit moves them.
    let lock = store.lock("test", Duration::ZERO).unwrap();
    let mut b = Batch::default();
    b.put(Section::Observed, key("p"), "{}\n".into(), None);
    assert_eq!(store.commit(&lock, &b).unwrap(), 4);
    let index = store.read_index().unwrap();
    assert_eq!(index.format, FORMAT_VERSION);
    assert_eq!(
        store.read_section(&index, Section::Applied).unwrap()[&key("a")],
        text
    );
    assert!(dir.path().join("objects/applied/pods/a@4.json").exists());
    assert!(!dir.path().join("objects/observed/pods/a@3.json").exists());
    assert!(dir.path().join("objects/observed/pods/p@4.json").exists());
}

#[test]
fn verify_names_a_flipped_byte_a_missing_record_and_a_truncated_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("s"));
    let lock = store.lock("test", Duration::ZERO).unwrap();
    put(&store, &lock, &[("a", "{\"v\":1}\n"), ("b", "{}\n")]);
    store.verify().unwrap();
    let record = dir.path().join("s/objects/applied/pods/a@1.json");
    let good = std::fs::read(&record).unwrap();
    let mut flipped = good.clone();
    flipped[3] ^= 1;
    std::fs::write(&record, &flipped).unwrap();
    let err = store.verify().unwrap_err().to_string();
    assert!(err.contains("a@1.json") && err.contains("damaged"), "{err}");
    std::fs::remove_file(&record).unwrap();
    let err = store.verify().unwrap_err().to_string();
    assert!(err.contains("a@1.json"), "{err}");
    std::fs::write(&record, &good).unwrap();
    store.verify().unwrap();
    let index = dir.path().join("s/state.json");
    let text = std::fs::read(&index).unwrap();
    std::fs::write(&index, &text[..text.len() / 2]).unwrap();
    let err = store.verify().unwrap_err().to_string();
    assert!(
        err.contains("state.json") && err.contains("damaged"),
        "{err}"
    );
}

#[test]
fn an_index_naming_paths_outside_the_store_or_bad_hashes_is_damaged() {
    let path = Path::new("state.json");
    let ok = format!(
        r#"{{"format":2,"resourceVersion":1,"applied":{{"Pod/a":{{"resourceVersion":1,"hash":"{}"}}}},"observed":{{}}}}"#,
        "0".repeat(64)
    );
    parse_index(path, ok.as_bytes()).unwrap();
    let escape = ok.replace("Pod/a", "Pod/../../../etc/passwd");
    let err = parse_index(path, escape.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid file name"), "{err}");
    let short = ok.replace(&"0".repeat(64), "00");
    let err = parse_index(path, short.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("not a SHA-256"), "{err}");
}

#[test]
fn an_existing_open_state_directory_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = Store::new(&state);
    let _lock = store.lock("test", Duration::ZERO).unwrap();
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn the_writer_makes_a_private_mask_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("s"));
    assert_eq!(store.mask_key().unwrap(), None);
    let lock = store.lock("test", Duration::ZERO).unwrap();
    let key = store.mask_key().unwrap().expect("made by the writer");
    let mode = std::fs::metadata(dir.path().join("s/mask.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(lock);
    let _lock = store.lock("test", Duration::ZERO).unwrap();
    assert_eq!(store.mask_key().unwrap(), Some(key), "kept, not remade");
    std::fs::write(dir.path().join("s/mask.key"), "short\n").unwrap();
    let err = store.mask_key().unwrap_err().to_string();
    assert!(err.contains("mask.key"), "{err}");
}
