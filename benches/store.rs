//! The store's cost, file store vs etcd, in one run: the file store in a temp dir on disk,
//! etcd as a 3-member cluster of loopback members (Debian's etcd 3.4) with their data on the
//! same disk. Measured through `drover::store::Store`, as drover uses it:
//!  (a) commit latency: one changed observed pod (what a round that saw one change writes),
//!      and a commit of 300 pods (a first observation);
//!  (b) the store's part of a no-op daemon round with 300 pods and 10 services: verify (index
//!      and every object, hashes checked), read the index, compare the round's records with
//!      it by hash (nothing changed), and commit the empty batch. The minions' list calls are
//!      the same for both backends and not included (benches/reconcile.rs measures a whole
//!      no-op round on the real cluster).
//! Prints medians and 90th percentiles, and etcd's ratio to the file store.
//! Run: `cargo bench --bench store`.

#[path = "../tests/etcd_cluster/mod.rs"]
mod etcd_cluster;

use drover::model::{Kind, ObjectKey};
use drover::store::{content_hash, Batch, Section, StateLocation, Store};
use std::time::{Duration, Instant};

const PODS: usize = 300;
const SERVICES: usize = 10;
const RUNS: usize = 31;

fn pod_text(i: usize, generation: usize) -> String {
    // About the size of a real observed pod record.
    format!(
        r#"{{"id":"web-{i}","minion":"m{}","owner":"web","templateHash":"3f2a9c1b7e","labels":{{"app":"web","tier":"frontend"}},"phase":"Running","containers":[{{"name":"httpd","image":"drover/busybox:latest","state":"running","generation":{generation}}}],"created":{i},"request":{{"cpu":100,"memory":33554432}},"ports":[{{"containerPort":80,"hostPort":{},"protocol":"TCP"}}],"ip":"172.30.1.{}"}}"#,
        i % 3 + 1,
        30000 + i,
        i % 250 + 2
    ) + "\n"
}

fn records() -> Vec<(Section, ObjectKey, String)> {
    let mut r: Vec<(Section, ObjectKey, String)> = (0..PODS)
        .map(|i| {
            (
                Section::Observed,
                ObjectKey::new(Kind::Pod, format!("web-{i}+m{}", i % 3 + 1)),
                pod_text(i, 0),
            )
        })
        .collect();
    for s in 0..SERVICES {
        let endpoints: Vec<String> = (0..PODS / SERVICES)
            .map(|i| {
                format!(
                    r#"{{"pod":"web-{i}","address":"127.0.1.1:{}","ready":true}}"#,
                    30000 + i
                )
            })
            .collect();
        r.push((
            Section::Endpoints,
            ObjectKey::new(Kind::Service, format!("svc-{s}")),
            format!(
                r#"{{"name":"svc-{s}","port":{},"endpoints":[{}]}}"#,
                8000 + s,
                endpoints.join(",")
            ) + "\n",
        ));
    }
    r
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

struct Figures {
    one: (Duration, Duration),
    all: (Duration, Duration),
    noop: (Duration, Duration),
}

fn measure(store: &Store) -> Figures {
    let lock = store.lock("bench", Duration::from_secs(10)).unwrap();
    let recs = records();
    // (a) 300 pods at once, each run a new generation of every record.
    let mut all = Vec::new();
    for generation in 1..=5 {
        let mut b = Batch::default();
        for (s, k, _) in &recs {
            let text = match s {
                Section::Observed => pod_text(
                    k.id[4..].split('+').next().unwrap().parse().unwrap(),
                    generation,
                ),
                _ => format!("{{\"generation\":{generation}}}\n"),
            };
            b.put(*s, k.clone(), text, None);
        }
        let t = Instant::now();
        store.commit(&lock, &b).unwrap();
        all.push(t.elapsed());
    }
    // Back to the records the no-op rounds compare with.
    let mut b = Batch::default();
    for (s, k, t) in &recs {
        b.put(*s, k.clone(), t.clone(), None);
    }
    store.commit(&lock, &b).unwrap();
    // (b) no-op rounds.
    let mut noop = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        store.verify().unwrap();
        let index = store.read_index().unwrap();
        let mut batch = Batch::default();
        for (s, k, text) in &recs {
            if index.section(*s).get(k).map(|e| e.hash.as_str())
                != Some(&content_hash(text.as_bytes()))
            {
                batch.put(*s, k.clone(), text.clone(), None);
            }
        }
        assert!(batch.is_empty(), "a no-op round writes nothing");
        store.commit(&lock, &batch).unwrap();
        noop.push(t.elapsed());
    }
    // (a) one changed pod.
    let mut one = Vec::new();
    for generation in 1..=RUNS {
        let mut b = Batch::default();
        b.put(
            Section::Observed,
            recs[7].1.clone(),
            pod_text(7, generation),
            None,
        );
        let t = Instant::now();
        store.commit(&lock, &b).unwrap();
        one.push(t.elapsed());
    }
    Figures {
        one: stats(one),
        all: stats(all),
        noop: stats(noop),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let disk = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let file = Store::new(disk.path().join("state"));
    let etcd = etcd_cluster::EtcdCluster::start_in(3, disk.path());
    let etcd_store = Store::open(&StateLocation::parse(&etcd.url("bench"), None).unwrap()).unwrap();
    let f = measure(&file);
    let e = measure(&etcd_store);
    println!("store benchmark: {PODS} pods + {SERVICES} services; file store in {} vs 3-member etcd 3.4 on loopback (data on the same disk)", disk.path().display());
    println!(
        "{:<44} {:>22} {:>22} {:>8}",
        "", "file (median / p90)", "etcd (median / p90)", "etcd/file"
    );
    for (what, a, b) in [
        ("commit: one changed pod", f.one, e.one),
        ("commit: 300 pods + 10 services", f.all, e.all),
        ("no-op round (store part), 300 pods", f.noop, e.noop),
    ] {
        println!(
            "{what:<44} {:>22} {:>22} {:>8.2}",
            format!("{} / {}", ms(a.0), ms(a.1)),
            format!("{} / {}", ms(b.0), ms(b.1)),
            b.0.as_secs_f64() / a.0.as_secs_f64()
        );
    }
}
