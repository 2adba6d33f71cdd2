//! The one-way rule, checked from the code itself: the library's modules stand in the layers
//! ARCHITECTURE.md draws (its `layers` block, top first), and a module names only modules of
//! the layers below its own (`crate::...` paths in code, comments and test modules left
//! out). Within a folder, the files import no circle among themselves. A new import that runs
//! back up fails here, naming the file and the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers as ARCHITECTURE.md draws them, top first: each a set of top-level modules.
fn layers() -> Vec<Vec<String>> {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let block = map
        .split("```layers\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a ```layers block")
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every library source file (the binary's `main.rs` and `cli/` stand above all layers; test
/// files are left out), with its path under `src/`.
fn library_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    let mut files: Vec<(String, String)> = paths
        .into_iter()
        .map(|p| p.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap();
            !(rel == "main.rs"
                || rel.starts_with("cli/")
                || name == "tests.rs"
                || name.ends_with("_tests.rs"))
        })
        .map(|rel| {
            let text = std::fs::read_to_string(src.join(&rel)).unwrap();
            (rel, code_of(&text))
        })
        .collect();
    files.sort();
    files
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests` (tests may reach
/// anywhere).
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => match text.find("#[cfg(test)]\npub(crate) mod tests") {
            Some(i) => &text[..i],
            None => text,
        },
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names below `crate`: `crate::a::b` gives `[a, b]`, and
/// `use crate::{a::b, c}` gives `[a, b]` and `[c]`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| p.trim().to_string())
            .take_while(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `drover::crate::` never occurs; `some_crate::` is another name.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            // Nested groups name their first segment before the brace, which is enough.
            for item in group[..end].split(',') {
                let path = ident(item.trim().trim_start_matches('{'));
                if !path.is_empty() {
                    out.push(path);
                }
            }
        } else {
            let path = ident(rest);
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
    out
}

/// The top-level module a file belongs to (`plan/pods.rs` -> `plan`, `events.rs` -> `events`).
fn module_of(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

#[test]
fn paths_are_read_as_the_modules_they_name() {
    let code = code_of(
        "use crate::{events::EventLog, model};\nlet x = crate::plan::pods::plan(a); // crate::daemon\nuse my_crate::x;\n#[cfg(test)]\nmod tests { use crate::cli; }",
    );
    let found: Vec<String> = crate_paths(&code)
        .into_iter()
        .map(|p| p[0].clone())
        .collect();
    assert_eq!(found, ["events", "model", "plan"]);
}

#[test]
fn every_module_imports_only_from_the_layers_below_its_own() {
    let layers = layers();
    let count = layers.len();
    // The top layer ranks highest.
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), count - i)))
        .collect();
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let modules: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let drawn: BTreeSet<&str> = rank.keys().copied().collect();
    assert_eq!(
        modules, drawn,
        "ARCHITECTURE.md's layers name exactly the modules of src/lib.rs"
    );
    let mut wrong = Vec::new();
    for (rel, code) in library_files() {
        let from = module_of(&rel);
        for path in crate_paths(&code) {
            let to = path[0].as_str();
            if to == from || !rank.contains_key(to) {
                continue;
            }
            if rank[to] >= rank[from.as_str()] {
                wrong.push(format!(
                    "src/{rel} ({from}) names crate::{} ({to}), which is not below it",
                    path.join("::")
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that run back up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_files_of_a_folder_import_no_circle() {
    // Edges between sibling modules of one folder (a module and its own children name each
    // other by design, and are not counted).
    let files = library_files();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in &files {
        let Some((dir, name)) = rel.rsplit_once('/') else {
            continue;
        };
        // A folder's `mod.rs` is that folder's module, a sibling of the files beside the
        // folder (`store/etcd/mod.rs` beside `store/file.rs`); a top folder's has none.
        let (folder, me) = if name == "mod.rs" {
            match dir.rsplit_once('/') {
                Some((parent, _)) => (parent, dir.to_string()),
                None => continue,
            }
        } else {
            (dir, format!("{dir}/{}", name.trim_end_matches(".rs")))
        };
        let sibling = |first: &str| -> Option<String> {
            let candidate = format!("{folder}/{first}");
            files
                .iter()
                .any(|(r, _)| {
                    *r == format!("{candidate}.rs") || *r == format!("{candidate}/mod.rs")
                })
                .then_some(candidate)
        };
        let mut names: Vec<String> = Vec::new();
        for path in crate_paths(code) {
            // crate::plan::pods -> plan/pods when this file is in plan/.
            let joined = path.join("/");
            if let Some(inside) = joined.strip_prefix(&format!("{folder}/")) {
                names.push(inside.split('/').next().unwrap().to_string());
            }
        }
        let mut rest = code.as_str();
        let first_name = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + "super::".len()..];
            match rest.strip_prefix('{') {
                // `super::{file::x, lock}`: each item's first name.
                Some(group) => {
                    let end = group.find('}').unwrap_or(group.len());
                    names.extend(group[..end].split(',').map(first_name));
                }
                None => names.push(first_name(rest)),
            }
        }
        for n in names {
            if let Some(to) = sibling(&n) {
                if to != me {
                    edges.entry(me.clone()).or_default().insert(to);
                }
            }
        }
    }
    // A depth-first search for a path back to where it started.
    fn back_to(
        start: &str,
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if back_to(start, next, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        if back_to(start, start, &edges, &mut path, &mut BTreeSet::new()) {
            panic!("a circle of imports: {}", path.join(" -> "));
        }
    }
}
