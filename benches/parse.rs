//! Benchmark: manifest parse time for 1,000, 10,000 and 100,000 objects in one file, laid out
//! one object per line and all on one line (JSON), as TOML tables and as YAML (a block List,
//! one document per object), to show linear growth:
//! each 10x step in objects should cost about 10x in time (the quadratic parser of issue 10
//! took 100x per step on one line). Parses through `manifest::parse_file`, validation
//! included, the way `drover validate` does for one file.
//!
//! Also writes a large List for memory measurements when asked:
//! `cargo bench --bench parse -- --write-list DIR MB` writes DIR/list.json and DIR/list.toml
//! of about MB megabytes each (then: `/usr/bin/time -v drover validate --source DIR`).
//!
//! Run: `cargo bench --bench parse`.

use std::time::{Duration, Instant};

fn pod_json(i: usize) -> String {
    format!(
        r#"{{"kind":"Pod","apiVersion":"v1beta1","id":"pod-{i}","labels":{{"app":"bench","n":"{i}"}},"desiredState":{{"manifest":{{"version":"v1beta1","id":"pod-{i}","containers":[{{"name":"main","image":"registry.example/app:1.{i}","command":["/app","--port","8080"],"ports":[{{"name":"http","containerPort":8080}}],"env":[{{"name":"MODE","value":"production"}}]}}]}}}}}}"#
    )
}

fn pod_toml(i: usize) -> String {
    format!(
        r#"[[items]]
kind = "Pod"
apiVersion = "v1beta1"
id = "pod-{i}"
labels = {{ app = "bench", n = "{i}" }}
[items.desiredState.manifest]
version = "v1beta1"
id = "pod-{i}"
[[items.desiredState.manifest.containers]]
name = "main"
image = "registry.example/app:1.{i}"
command = ["/app", "--port", "8080"]
ports = [{{ name = "http", containerPort = 8080 }}]
env = [{{ name = "MODE", value = "production" }}]
"#
    )
}

/// A JSON List of `n` pods; `sep` between items ("\n" for one per line, "" for one line).
fn json_list(n: usize, sep: &str) -> String {
    let items: Vec<String> = (0..n).map(pod_json).collect();
    format!(
        "{{\"kind\":\"List\",\"items\":[{sep}{}{sep}]}}\n",
        items.join(&format!(",{sep}"))
    )
}

/// A YAML stream of `n` pods, one `---` document each, in block style.
fn yaml_docs(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "---\nkind: Pod\napiVersion: v1beta1\nid: pod-{i}\nlabels:\n  app: bench\n  n: \"{i}\"\ndesiredState:\n  manifest:\n    version: v1beta1\n    id: pod-{i}\n    containers:\n    - name: main\n      image: registry.example/app:1.{i}\n      command: [/app, --port, \"8080\"]\n      ports:\n      - name: http\n        containerPort: 8080\n      env:\n      - name: MODE\n        value: production\n"
        ));
    }
    s
}

fn toml_list(n: usize) -> String {
    let mut s = String::from("kind = \"List\"\n");
    for i in 0..n {
        s.push_str(&pod_toml(i));
    }
    s
}

/// Best of `runs` parses (the machine is shared; the minimum is the least disturbed).
fn time(file: &str, text: &str, runs: usize) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let parsed = drover::manifest::parse_file(file, text.as_bytes());
            let elapsed = t.elapsed();
            assert!(
                parsed.is_ok(),
                "{file}: {:?}",
                parsed.err().map(|d| d[0].to_string())
            );
            elapsed
        })
        .min()
        .unwrap()
}

fn write_list(dir: &str, mb: usize) {
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let per_json = pod_json(0).len() + 1;
    let per_toml = pod_toml(0).len();
    let json = json_list(mb * 1_000_000 / per_json, "\n");
    std::fs::write(dir.join("list.json"), &json).unwrap();
    let toml = toml_list(mb * 1_000_000 / per_toml);
    std::fs::write(dir.join("list.toml"), &toml).unwrap();
    println!(
        "wrote {} ({} bytes) and {} ({} bytes)",
        dir.join("list.json").display(),
        json.len(),
        dir.join("list.toml").display(),
        toml.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-list") {
        let mb = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(200);
        write_list(&args[i + 1], mb);
        return;
    }
    println!(
        "{:>8}  {:>12} {:>10}  {:>12} {:>10}  {:>12} {:>10}  {:>12} {:>10}",
        "objects",
        "JSON/lines",
        "x prev",
        "JSON/1 line",
        "x prev",
        "TOML",
        "x prev",
        "YAML",
        "x prev"
    );
    let mut prev: Option<[Duration; 4]> = None;
    for n in [1_000, 10_000, 100_000] {
        let runs = if n >= 100_000 { 1 } else { 3 };
        let lines = json_list(n, "\n");
        let line = json_list(n, "");
        let toml = toml_list(n);
        let yaml = yaml_docs(n);
        let now = [
            time("bench.json", &lines, runs),
            time("bench.json", &line, runs),
            time("bench.toml", &toml, runs),
            time("bench.yaml", &yaml, runs),
        ];
        let ratio = |k: usize| match prev {
            Some(p) => format!("{:.1}x", now[k].as_secs_f64() / p[k].as_secs_f64()),
            None => "-".into(),
        };
        println!(
            "{n:>8}  {:>10.1}ms {:>10}  {:>10.1}ms {:>10}  {:>10.1}ms {:>10}  {:>10.1}ms {:>10}",
            now[0].as_secs_f64() * 1e3,
            ratio(0),
            now[1].as_secs_f64() * 1e3,
            ratio(1),
            now[2].as_secs_f64() * 1e3,
            ratio(2),
            now[3].as_secs_f64() * 1e3,
            ratio(3),
        );
        prev = Some(now);
    }
    println!("linear growth: about 10x per row; quadratic would be 100x");
}
