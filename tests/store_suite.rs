//! One store test suite, run against both backends: the file store in a temp dir and etcd on
//! a real 3-member cluster of loopback members (`etcd_cluster`). Each test takes a `Place`
//! (a fresh, empty store plus a way to reach under it to damage it) and must pass on both;
//! `suite!` makes a `file::NAME` and an `etcd::NAME` test of each.

#[path = "etcd_cluster/mod.rs"]
mod etcd_cluster;

use drover::events::EventLog;
use drover::model::{Kind, ObjectKey};
use drover::store::{Batch, Section, StateLocation, Store, StoreError};
use std::time::{Duration, Instant};

/// A fresh store and the raw access to it that damaging it needs.
enum Place {
    Dir(tempfile::TempDir),
    Etcd { url: String, prefix: String },
}

impl Place {
    fn file() -> Place {
        Place::Dir(tempfile::tempdir().unwrap())
    }

    fn etcd(name: &str) -> Place {
        let prefix = etcd_cluster::unique_prefix(name);
        Place::Etcd {
            url: etcd_cluster::shared().url(&prefix),
            prefix: format!("/{prefix}"),
        }
    }

    fn location(&self) -> StateLocation {
        match self {
            Place::Dir(d) => StateLocation::Dir(d.path().join("state")),
            Place::Etcd { url, .. } => StateLocation::parse(url, None).unwrap(),
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.location()).unwrap()
    }

    /// Replaces (or with `None` removes) one place of the store behind its back.
    fn set_raw(&self, rel: &str, bytes: Option<&[u8]>) {
        match self {
            Place::Dir(d) => {
                let path = d.path().join("state").join(rel);
                match bytes {
                    Some(b) => std::fs::write(path, b).unwrap(),
                    None => std::fs::remove_file(path).unwrap(),
                }
            }
            Place::Etcd { prefix, .. } => {
                etcd_cluster::shared().raw_set(&format!("{prefix}/{rel}"), bytes);
            }
        }
    }

    fn get_raw(&self, rel: &str) -> Option<Vec<u8>> {
        match self {
            Place::Dir(d) => std::fs::read(d.path().join("state").join(rel)).ok(),
            Place::Etcd { prefix, .. } => etcd_cluster::shared()
                .raw_range(&format!("{prefix}/{rel}"), true)
                .pop()
                .map(|kv| kv.value),
        }
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod file {
            $( #[test] fn $name() { super::$name(&super::Place::file()) } )*
        }
        mod etcd {
            $( #[test] fn $name() { super::$name(&super::Place::etcd(stringify!($name))) } )*
        }
    };
}

suite!(
    a_new_store_is_empty,
    commits_round_trip_and_resource_versions_grow,
    every_section_keeps_its_own_objects,
    a_commit_larger_than_one_transaction_is_whole,
    readers_see_one_commit_or_the_next_never_a_mix,
    a_damaged_object_is_named,
    a_missing_object_is_named,
    a_damaged_index_is_named,
    a_lost_index_is_damage_not_a_new_store,
    events_round_trip_and_damaged_events_are_named,
    a_second_writer_is_refused_naming_the_holder,
    the_writer_makes_a_mask_key_once,
    an_object_id_that_is_no_file_name_is_refused,
);

fn key(id: &str) -> ObjectKey {
    ObjectKey::new(Kind::Pod, id)
}

fn lock(store: &Store) -> drover::store::StoreLock {
    store.lock("test", Duration::from_secs(5)).unwrap()
}

fn a_new_store_is_empty(place: &Place) {
    let store = place.store();
    let index = store.verify().unwrap();
    assert_eq!(index.resource_version, 0);
    assert!(Section::ALL.iter().all(|s| index.section(*s).is_empty()));
    assert!(EventLog::read(&store).unwrap().items.is_empty());
    assert_eq!(store.mask_key().unwrap(), None);
}

fn commits_round_trip_and_resource_versions_grow(place: &Place) {
    let store = place.store();
    let lock = lock(&store);
    let mut b = Batch::default();
    b.put(Section::Applied, key("a"), "{\"v\":1}\n".into(), None);
    b.put(Section::Applied, key("b"), "{}\n".into(), None);
    assert_eq!(store.commit(&lock, &b).unwrap(), 1);
    let mut b = Batch::default();
    b.put(Section::Applied, key("a"), "{\"v\":2}\n".into(), None);
    assert_eq!(store.commit(&lock, &b).unwrap(), 2);
    assert_eq!(
        store.commit(&lock, &Batch::default()).unwrap(),
        2,
        "empty: no version"
    );
    let index = store.verify().unwrap();
    assert_eq!(index.resource_version, 2);
    assert_eq!(index.applied[&key("a")].resource_version, 2);
    assert_eq!(index.applied[&key("b")].resource_version, 1);
    let all = store.read_section(&index, Section::Applied).unwrap();
    assert_eq!(all[&key("a")], "{\"v\":2}\n");
    assert_eq!(
        store
            .read_object(Section::Applied, &key("b"), &index.applied[&key("b")])
            .unwrap(),
        "{}\n"
    );
    // The superseded version is gone.
    assert_eq!(place.get_raw("objects/applied/pods/a@1.json"), None);
    let mut b = Batch::default();
    b.delete(Section::Applied, key("b"));
    assert_eq!(store.commit(&lock, &b).unwrap(), 3);
    let index = store.read_index().unwrap();
    assert!(!index.applied.contains_key(&key("b")));
    assert_eq!(place.get_raw("objects/applied/pods/b@1.json"), None);
}

fn every_section_keeps_its_own_objects(place: &Place) {
    let store = place.store();
    let lock = lock(&store);
    let mut b = Batch::default();
    for (i, s) in Section::ALL.into_iter().enumerate() {
        b.put(s, key("same"), format!("{{\"section\":{i}}}\n"), None);
    }
    store.commit(&lock, &b).unwrap();
    let index = store.verify().unwrap();
    for (i, s) in Section::ALL.into_iter().enumerate() {
        let texts = store.read_section(&index, s).unwrap();
        assert_eq!(
            texts[&key("same")],
            format!("{{\"section\":{i}}}\n"),
            "{s:?}"
        );
    }
    // Observed and endpoints go without touching the others.
    let mut b = Batch::default();
    b.delete(Section::Observed, key("same"));
    b.delete(Section::Endpoints, key("same"));
    store.commit(&lock, &b).unwrap();
    let index = store.verify().unwrap();
    assert!(index.observed.is_empty() && index.endpoints.is_empty());
    assert_eq!(index.applied.len(), 1);
    assert_eq!(index.inventory.len(), 1);
}

/// 300 pods, more than etcd takes in one transaction by default (128 operations).
fn a_commit_larger_than_one_transaction_is_whole(place: &Place) {
    let store = place.store();
    let lock = lock(&store);
    for generation in 1..=2 {
        let mut b = Batch::default();
        for i in 0..300 {
            b.put(
                Section::Observed,
                key(&format!("p{i}")),
                format!(
                    "{{\"generation\":{generation},\"pad\":\"{}\"}}\n",
                    "x".repeat(500)
                ),
                None,
            );
        }
        assert_eq!(store.commit(&lock, &b).unwrap(), generation);
    }
    let index = store.verify().unwrap();
    let texts = store.read_section(&index, Section::Observed).unwrap();
    assert_eq!(texts.len(), 300);
    assert!(texts.values().all(|t| t.starts_with("{\"generation\":2,")));
    assert_eq!(
        place.get_raw("objects/observed/pods/p7@1.json"),
        None,
        "superseded"
    );
}

/// A reader in a loop while a writer commits generations of 150 objects (each a commit over
/// several etcd transactions): every read is one generation whole.
fn readers_see_one_commit_or_the_next_never_a_mix(place: &Place) {
    let store = place.store();
    let lock = lock(&store);
    let commit = |generation: u64| {
        let mut b = Batch::default();
        for i in 0..150 {
            b.put(
                Section::Applied,
                key(&format!("o{i}")),
                format!(
                    "{{\"generation\":{generation},\"pad\":\"{}\"}}\n",
                    "y".repeat(300)
                ),
                None,
            );
        }
        store.commit(&lock, &b).unwrap();
    };
    commit(1);
    let reader = place.store();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let r = s.spawn(|| {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (_, mut snapshot) = reader.read_snapshot(&[Section::Applied]).unwrap();
                let texts = snapshot.remove(&Section::Applied).unwrap();
                let generations: std::collections::BTreeSet<&str> =
                    texts.values().map(|t| &t[..16]).collect();
                assert_eq!(texts.len(), 150);
                assert_eq!(generations.len(), 1, "a mix: {generations:?}");
                reads += 1;
            }
            reads
        });
        for generation in 2..=8 {
            commit(generation);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        r.join().unwrap()
    });
    assert!(reads > 0);
}

fn put_a(place: &Place) -> (Store, drover::store::StoreLock) {
    let store = place.store();
    let lock = lock(&store);
    let mut b = Batch::default();
    b.put(Section::Applied, key("a"), "{\"v\":1}\n".into(), None);
    b.put(Section::Endpoints, key("svc"), "{}\n".into(), None);
    store.commit(&lock, &b).unwrap();
    store.verify().unwrap();
    (store, lock)
}

fn a_damaged_object_is_named(place: &Place) {
    let (store, _lock) = put_a(place);
    place.set_raw("objects/applied/pods/a@1.json", Some(b"{\"v\":2}\n"));
    let err = store.verify().unwrap_err().to_string();
    assert!(
        err.contains("objects/applied/pods/a@1.json: damaged state file")
            && err.contains("do not match the hash"),
        "{err}"
    );
    let index = store.read_index().unwrap();
    let err = store
        .read_section(&index, Section::Applied)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a@1.json: damaged"), "{err}");
}

fn a_missing_object_is_named(place: &Place) {
    let (store, _lock) = put_a(place);
    place.set_raw("objects/endpoints/pods/svc@1.json", None);
    let err = store.verify().unwrap_err().to_string();
    assert!(err.contains("objects/endpoints/pods/svc@1.json"), "{err}");
}

fn a_damaged_index_is_named(place: &Place) {
    let (store, _lock) = put_a(place);
    let text = place.get_raw("state.json").unwrap();
    place.set_raw("state.json", Some(&text[..text.len() / 2]));
    let err = store.verify().unwrap_err().to_string();
    assert!(err.contains("state.json: damaged state file"), "{err}");
    place.set_raw("state.json", Some(b"{\"format\": 9}"));
    let err = store.read_index().unwrap_err().to_string();
    assert!(err.contains("store format 9"), "{err}");
}

fn a_lost_index_is_damage_not_a_new_store(place: &Place) {
    let (store, _lock) = put_a(place);
    place.set_raw("state.json", None);
    for err in [
        store.read_index().unwrap_err().to_string(),
        store.verify().unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("state.json: damaged state file: missing")
                && err.contains("the index was lost")
                && err.contains("objects/"),
            "{err}"
        );
    }
}

fn events_round_trip_and_damaged_events_are_named(place: &Place) {
    let store = place.store();
    let lock = lock(&store);
    let mut log = EventLog::default();
    log.record_now(drover::events::Note::normal(
        drover::events::ObjectRef::new("Pod", "web-1"),
        "Started",
        "Started container web",
    ));
    log.write(&store, &lock).unwrap();
    assert_eq!(EventLog::read(&store).unwrap(), log);
    // Outside the index: no resource version.
    assert_eq!(store.read_index().unwrap().resource_version, 0);
    place.set_raw("events.json", Some(b"[not json"));
    let err = EventLog::read(&store).unwrap_err().to_string();
    assert!(err.contains("events.json: damaged state file"), "{err}");
}

fn a_second_writer_is_refused_naming_the_holder(place: &Place) {
    let store = place.store();
    let held = store.lock("daemon", Duration::ZERO).unwrap();
    let other = place.store();
    let started = Instant::now();
    let err = other.lock("apply", Duration::from_millis(300)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("drover daemon"),
        "{err}"
    );
    drop(held);
    // Released on drop (etcd: the lease revoked, no wait for it to lapse).
    other.lock("apply", Duration::from_secs(2)).unwrap();
}

fn the_writer_makes_a_mask_key_once(place: &Place) {
    let store = place.store();
    assert_eq!(store.mask_key().unwrap(), None);
    let key = {
        let _lock = lock(&store);
        store.mask_key().unwrap().expect("made by the writer")
    };
    let _lock = lock(&store);
    assert_eq!(store.mask_key().unwrap(), Some(key), "kept, not remade");
    place.set_raw("mask.key", Some(b"short\n"));
    let err = store.mask_key().unwrap_err().to_string();
    assert!(err.contains("mask.key"), "{err}");
}

fn an_object_id_that_is_no_file_name_is_refused(place: &Place) {
    let store = place.store();
    let lock = lock(&store);
    let mut b = Batch::default();
    b.put(Section::Applied, key("../x"), "{}".into(), None);
    let err = store.commit(&lock, &b).unwrap_err().to_string();
    assert!(err.contains("not a valid file name"), "{err}");
    assert_eq!(store.read_index().unwrap().resource_version, 0);
}

/// `drover state migrate`: a directory's state copied into etcd and from there into a new
/// directory reads back the same (index, objects, events, mask key); an occupied target is
/// refused.
#[test]
fn migrate_copies_state_to_etcd_and_back() {
    let src = Place::file();
    let store = src.store();
    {
        let lock = lock(&store);
        let mut b = Batch::default();
        for i in 0..150 {
            b.put(
                Section::Observed,
                key(&format!("p{i}")),
                format!("{{\"i\":{i}}}\n"),
                None,
            );
        }
        b.put(Section::Applied, key("web"), "{\"a\":1}\n".into(), None);
        store.commit(&lock, &b).unwrap();
        let mut log = EventLog::default();
        log.record_now(drover::events::Note::normal(
            drover::events::ObjectRef::new("Pod", "web"),
            "Started",
            "Started",
        ));
        log.write(&store, &lock).unwrap();
    }
    let etcd = Place::etcd("migrate");
    let Place::Etcd { url, .. } = &etcd else {
        unreachable!()
    };
    let back = tempfile::tempdir().unwrap();
    let back_dir = back.path().join("state");
    let drover = |from: &str, to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .current_dir(back.path())
            .args(["--state", from, "state", "migrate", "--to", to])
            .output()
            .unwrap()
    };
    let src_dir = match &src.location() {
        StateLocation::Dir(d) => d.display().to_string(),
        _ => unreachable!(),
    };
    // A project named only by where its state is would be named otherwise at the target.
    let out = drover(&src_dir, url);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is derived from where its state is") && stderr.contains("set `project ="),
        "{stderr}"
    );
    std::fs::write(back.path().join("drover.toml"), "project = \"mig\"\n").unwrap();
    let out = drover(&src_dir, url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("copied 151 objects (resource version 1)"),
        "{stdout}"
    );
    let out = drover(url, back_dir.to_str().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copies = [etcd.store(), Store::new(&back_dir)];
    let (index, texts) = store.read_snapshot(&Section::ALL).unwrap();
    for copy in &copies {
        let (i, t) = copy.read_snapshot(&Section::ALL).unwrap();
        assert_eq!(
            i.resource_version,
            index.resource_version,
            "{}",
            copy.describe()
        );
        assert_eq!(i.observed, index.observed);
        assert_eq!(t, texts);
        assert_eq!(
            EventLog::read(copy).unwrap(),
            EventLog::read(&store).unwrap()
        );
        assert_eq!(copy.mask_key().unwrap(), store.mask_key().unwrap());
    }
    // The project travelled with the state: both copies name it, and a config of another
    // project pointed at one is refused, naming both.
    for copy in &copies {
        assert_eq!(copy.recorded_project().unwrap().as_deref(), Some("mig"));
    }
    std::fs::write(back.path().join("drover.toml"), "project = \"other\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(back.path())
        .args(["--state", url, "diff"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("belongs to project `mig`, but this config's project is `other`"),
        "{stderr}"
    );
    std::fs::write(back.path().join("drover.toml"), "project = \"mig\"\n").unwrap();
    // Into a store that holds state: refused, nothing changed.
    let out = drover(&src_dir, url);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already holds state"), "{stderr}");
}

/// Kills a child when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// etcd with TLS and client certificates (`--client-cert-auth`): the store connects with the
/// configured CA, certificate and key; without a client certificate it is refused.
#[test]
fn etcd_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
for n in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n-key.pem -out $n.csr -subj /CN=$n
  printf "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n" > $n.ext
  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out $n.pem -days 2 -extfile $n.ext
done"#;
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (client, peer) = (etcd_cluster::free_port(), etcd_cluster::free_port());
    let mut cmd = std::process::Command::new(etcd_cluster::ETCD);
    cmd.current_dir(d)
        .args(["--name", "tls", "--data-dir", "data"])
        .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
        .arg(format!(
            "--advertise-client-urls=https://127.0.0.1:{client}"
        ))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=tls=http://127.0.0.1:{peer}"))
        .args(["--cert-file=server.pem", "--key-file=server-key.pem"])
        .args(["--trusted-ca-file=ca.pem", "--client-cert-auth"])
        .args(["--logger=zap", "--log-level=error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _etcd = KillOnDrop(etcd_cluster::spawn(cmd).unwrap());
    let url = format!("etcd://127.0.0.1:{client}/tls");
    let tls = |cert: bool| drover::store::EtcdTls {
        ca: Some(d.join("ca.pem")),
        cert: cert.then(|| d.join("client.pem")),
        key: cert.then(|| d.join("client-key.pem")),
    };
    let store = Store::open(&StateLocation::parse(&url, Some(tls(true))).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let lock = loop {
        match store.lock("test", Duration::ZERO) {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "etcd over TLS: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let mut b = Batch::default();
    b.put(Section::Applied, key("a"), "{}\n".into(), None);
    assert_eq!(store.commit(&lock, &b).unwrap(), 1);
    assert_eq!(store.verify().unwrap().resource_version, 1);
    let bare = Store::open(&StateLocation::parse(&url, Some(tls(false))).unwrap()).unwrap();
    assert!(
        bare.read_index().is_err(),
        "read without a client certificate"
    );
}
