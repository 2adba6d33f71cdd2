//! Git sources: per input, a commit of blobs whose names and contents come from the input (in
//! the tree's root, a subdirectory or a hidden one, the whole possibly under `sub/` read as the
//! source's subdirectory), written to the object database of one bare repository (no work
//! tree, no git CLI), then read by `drover::source::read` (or `list`) with a small
//! `max_file_bytes`. Never a panic; a manifest blob over the limit fails the read with an error
//! naming it and its size, and is never returned; otherwise every manifest comes back
//! byte-identical under its path, and every other visible file is listed as skipped.
#![no_main]

use drover::manifest::Format;
use drover::source::{GitOptions, SourceError, SourceSpec};
use git2::{Oid, Repository, Signature, Time};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// One bare repository for the whole run: a new one per input would cost more than the read.
/// Each input's objects are deleted after it, so the repository stays empty between inputs.
static REPO: OnceLock<Mutex<Repository>> = OnceLock::new();
static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

/// Removes the repository when libFuzzer exits (at the end of `-max_total_time` or `-runs`).
extern "C" fn remove_repo() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn repo() -> &'static Mutex<Repository> {
    REPO.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("drover-fuzz-git-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let repo = Repository::init_bare(&dir).expect("a bare repository");
        DIR.set(dir).expect("set once");
        unsafe { atexit(remove_repo) };
        Mutex::new(repo)
    })
}

/// The input, a byte at a time (zeros once it is used up).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// A tree as written: entries by name (inserting a name again replaces it, as in git).
#[derive(Default)]
struct Dir {
    entries: BTreeMap<Vec<u8>, Node>,
}

enum Node {
    File(Vec<u8>),
    Dir(Dir),
}

const EXTENSIONS: [&str; 8] = [
    ".yaml", ".yml", ".json", ".toml", ".txt", "", ".YAML", ".yml.bak",
];
/// Where a file goes under the source's root: the root, a directory, a hidden directory.
const PLACES: [&[u8]; 3] = [b"", b"d", b".h"];

/// Writes `dir` as a tree (its subtrees first), recording every object written.
fn write_tree(repo: &Repository, dir: &mut Dir, written: &mut Vec<Oid>) -> Oid {
    let mut builder = repo.treebuilder(None).expect("a tree builder");
    let mut refused = Vec::new();
    for (name, node) in dir.entries.iter_mut() {
        let (oid, mode) = match node {
            Node::File(content) => (repo.blob(content).expect("a blob"), 0o100644),
            Node::Dir(sub) => (write_tree(repo, sub, written), 0o040000),
        };
        written.push(oid);
        // libgit2 refuses some names (`.git`, `..`, `GIT~1`): such a file is not in the tree.
        if builder.insert(name.as_slice(), oid, mode).is_err() {
            refused.push(name.clone());
        }
    }
    for name in refused {
        dir.entries.remove(&name);
    }
    let oid = builder.write().expect("a tree");
    written.push(oid);
    oid
}

/// What a read should find under `dir`, whose walk paths start with `path`: manifests by path,
/// and the other visible files' paths. Hidden names are not walked; nor are names that are not
/// UTF-8.
fn expect(
    dir: &Dir,
    path: &str,
    manifests: &mut BTreeMap<String, Vec<u8>>,
    skipped: &mut Vec<String>,
) {
    for (name, node) in &dir.entries {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        match node {
            Node::Dir(sub) => expect(sub, &format!("{path}{name}/"), manifests, skipped),
            Node::File(content) if Format::of(name).is_some() => {
                manifests.insert(format!("{path}{name}"), content.clone());
            }
            Node::File(_) => skipped.push(format!("{path}{name}")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let limit = input.byte() as u64 * 8;
    let flags = input.byte();
    // The files: a name, an extension, a place, and content of a length the input gives (its
    // bytes repeated when the input runs short, so a small input can make a large blob).
    let mut base = Dir::default();
    for _ in 0..1 + input.byte() % 5 {
        let name_len = (input.byte() % 16) as usize;
        let mut name: Vec<u8> = input
            .take(name_len)
            .iter()
            .map(|&b| if b == b'/' || b == 0 { b'_' } else { b })
            .collect();
        if name.is_empty() {
            name.push(b'f');
        }
        name.extend_from_slice(EXTENSIONS[(input.byte() % 8) as usize].as_bytes());
        let place = PLACES[(input.byte() % 3) as usize];
        let len = u16::from_le_bytes([input.byte(), input.byte()]) as usize % 4097;
        let given = input.take(len).to_vec();
        let content: Vec<u8> = if given.is_empty() {
            vec![b'x'; len]
        } else {
            given.iter().copied().cycle().take(len).collect()
        };
        let dir = if place.is_empty() {
            &mut base
        } else {
            let entry = base
                .entries
                .entry(place.to_vec())
                .or_insert_with(|| Node::Dir(Dir::default()));
            if let Node::File(_) = entry {
                *entry = Node::Dir(Dir::default());
            }
            match entry {
                Node::Dir(d) => d,
                Node::File(_) => unreachable!(),
            }
        };
        // A directory of the same name stays: the file is not written.
        if !matches!(dir.entries.get(&name), Some(Node::Dir(_))) {
            dir.entries.insert(name, Node::File(content));
        }
    }
    // Under `sub/` (read as the subdirectory, or from the root), beside a manifest at the root
    // that a read of `sub` must not return.
    let under_sub = flags & 1 != 0;
    let subdir = under_sub && flags & 2 != 0;
    let use_list = flags & 4 != 0;
    let by_branch = flags & 8 != 0;
    let mut root = if under_sub {
        let mut root = Dir::default();
        root.entries.insert(b"sub".to_vec(), Node::Dir(base));
        root.entries
            .insert(b"root.yaml".to_vec(), Node::File(b"id: root".to_vec()));
        root
    } else {
        base
    };

    let repo = repo().lock().unwrap_or_else(|e| e.into_inner());
    let mut written = Vec::new();
    let tree = write_tree(&repo, &mut root, &mut written);
    let sig = Signature::new("fuzz", "fuzz@invalid", &Time::new(0, 0)).unwrap();
    let commit = repo
        .commit(
            None,
            &sig,
            &sig,
            "fuzz",
            &repo.find_tree(tree).unwrap(),
            &[],
        )
        .expect("a commit");
    written.push(commit);
    let reference = if by_branch {
        repo.reference("refs/heads/fuzz", commit, true, "fuzz")
            .expect("a branch");
        "fuzz".to_string()
    } else {
        commit.to_string()
    };

    let mut manifests = BTreeMap::new();
    let mut skipped = Vec::new();
    expect(&root, "", &mut manifests, &mut skipped);
    if subdir {
        manifests.retain(|path, _| path.starts_with("sub/"));
        skipped.retain(|path| path.starts_with("sub/"));
    }
    skipped.sort();
    let over: Vec<(&String, usize)> = manifests
        .iter()
        .filter(|(_, content)| content.len() as u64 > limit)
        .map(|(path, content)| (path, content.len()))
        .collect();

    let dir = DIR.get().unwrap();
    let spec = SourceSpec::Git {
        repo: dir.to_str().expect("a UTF-8 temporary path").to_string(),
        reference,
        subdir: subdir.then(|| "sub".to_string()),
    };
    let opts = GitOptions {
        max_file_bytes: Some(limit),
        ..GitOptions::default()
    };
    let read: Result<(Vec<(String, Vec<u8>)>, Vec<String>, Option<String>), SourceError> =
        if use_list {
            drover::source::list(&spec, &opts).map(|listing| {
                let files = listing
                    .files
                    .iter()
                    .map(|f| {
                        let mut buf = Vec::new();
                        let size = f.read_into(&mut buf, limit).unwrap();
                        assert_eq!(size, buf.len() as u64, "{}", f.origin.file);
                        assert_eq!(f.origin.commit, listing.commit, "{}", f.origin.file);
                        (f.origin.file.clone(), buf)
                    })
                    .collect();
                (files, listing.skipped, listing.commit)
            })
        } else {
            drover::source::read(&spec, &opts).map(|snapshot| {
                for f in &snapshot.files {
                    assert_eq!(f.origin.commit, snapshot.commit, "{}", f.origin.file);
                }
                let files = snapshot
                    .files
                    .into_iter()
                    .map(|f| (f.origin.file, f.bytes))
                    .collect();
                (files, snapshot.skipped, snapshot.commit)
            })
        };

    match read {
        Ok((files, got_skipped, got_commit)) => {
            assert!(
                over.is_empty(),
                "over the limit of {limit}, yet read: {over:?}"
            );
            assert_eq!(got_commit, Some(commit.to_string()));
            let want: Vec<(String, Vec<u8>)> = manifests.into_iter().collect();
            assert_eq!(files, want, "limit {limit}");
            assert_eq!(got_skipped, skipped);
        }
        Err(SourceError::Git { message, .. }) => {
            assert!(
                over.iter().any(|(path, size)| message
                    == format!(
                        "{path}: the file is {size} bytes, more than the limit of {limit} \
                         bytes per manifest (max_manifest_bytes in drover.toml)"
                    )),
                "{message:?}; over the limit of {limit}: {over:?}"
            );
        }
        Err(e) => panic!("{e}"),
    }

    // Empty again for the next input (a fan-out directory may stay, empty).
    let objects = repo.path().join("objects");
    for oid in written {
        let hex = oid.to_string();
        let _ = std::fs::remove_file(objects.join(&hex[..2]).join(&hex[2..]));
    }
});
