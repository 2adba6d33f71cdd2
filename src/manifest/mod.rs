//! Manifests: bytes of `*.json` / `*.toml` / `*.yaml` / `*.yml` files in, a validated
//! `DesiredState` out.
//!
//! Every problem is collected, never just the first: a `Diagnostic` carries the file,
//! line:column and field path. Warnings (fields drover reads but cannot honour, unknown fields
//! under `--validate=warn`) are collected the same way beside the objects. This module does no
//! IO; sources hand it bytes.

mod decode;
pub mod node;

use crate::model::{DesiredState, ObjectKey, Origin};
use node::Pos;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

pub use decode::check_name;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    /// Field path inside the document, such as `desiredState.manifest.containers[0].image`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // File names, field names and quoted values come from the input: never let them drive
        // the terminal.
        write!(f, "{}:{}: ", printable(&self.file), self.pos)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", printable(&self.path))?;
        }
        f.write_str(&printable(&self.message))
    }
}

/// Text from input made safe for a terminal: control characters (ESC, CR, ...) and the
/// bidirectional overrides are shown as `\u{..}` escapes; everything else is left alone.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The bytes of one manifest file, as a source read them.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub origin: Origin,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    Yaml,
}

impl Format {
    /// The manifest format of a file name, or `None` if drover does not read such files.
    pub fn of(file: &str) -> Option<Format> {
        if file.ends_with(".json") {
            Some(Format::Json)
        } else if file.ends_with(".toml") {
            Some(Format::Toml)
        } else if file.ends_with(".yaml") || file.ends_with(".yml") {
            Some(Format::Yaml)
        } else {
            None
        }
    }
}

/// How strictly manifests are read (`--validate`, `validate` in drover.toml), as kubectl
/// spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validate {
    /// A field unknown to v1beta1 is an error naming the nearest known field (today's kubectl).
    #[default]
    Strict,
    /// Kubernetes 2014's own behaviour: unknown fields are warnings and ignored, and a `.json`
    /// file that is not strict JSON is read as YAML (with a warning), as its API server did.
    Warn,
    /// As `Warn`, without any warning.
    Ignore,
}

impl Validate {
    pub fn parse(s: &str) -> Option<Validate> {
        match s {
            "strict" | "true" => Some(Validate::Strict),
            "warn" => Some(Validate::Warn),
            "ignore" | "false" => Some(Validate::Ignore),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Validate::Strict => "strict",
            Validate::Warn => "warn",
            Validate::Ignore => "ignore",
        }
    }
}

/// What reading a source needs beyond its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The per-file size limit in bytes (`max_manifest_bytes`).
    pub max_bytes: u64,
    pub validate: Validate,
    /// `privileged: true` containers are allowed (`allow_privileged` in drover.toml, as the
    /// API server's `--allow_privileged`); otherwise they are an error.
    pub allow_privileged: bool,
    /// Minion paths a `hostDir` may mount although they are (or are under) one of
    /// `GUARDED_HOST_PATHS` (`allowed_host_paths` in drover.toml).
    pub allowed_host_paths: Vec<String>,
}

/// Minion paths no `hostDir` mounts unless drover.toml allows it: a manifest in git could
/// otherwise take root on every minion (the Docker socket, the engine's and containerd's
/// state, the host's configuration, its kernel's interfaces). A path is guarded when it is one
/// of these, under one, or a directory above one (`/var/run` holds the socket).
pub const GUARDED_HOST_PATHS: [&str; 12] = [
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/root",
    "/boot",
    "/dev",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/lib/docker",
    "/run/containerd",
    "/var/run/containerd",
];

/// `path` with `.`, `..` and repeated `/` resolved as text (a minion's symlinks are not seen).
pub fn normal_host_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Why a `hostDir` of `path` is refused, if it is. With `allowed` (`allowed_host_paths`)
/// given, only paths at or under its entries may be mounted; without it, any path but the
/// guarded ones (`GUARDED_HOST_PATHS`). A guarded path is mounted only where `allowed` names it
/// or a directory above it.
pub fn host_path_refusal(path: &str, allowed: &[String]) -> Option<String> {
    let path = normal_host_path(path);
    // `dir` itself or a path below it (every path is below `/`).
    let under = |dir: &str| {
        dir == path
            || path
                .strip_prefix(dir)
                .is_some_and(|rest| dir == "/" || rest.starts_with('/'))
    };
    if !allowed.is_empty() {
        return (!allowed.iter().any(|a| under(&normal_host_path(a)))).then(|| {
            format!(
                "it is outside `allowed_host_paths` in drover.toml ({})",
                allowed.join(", ")
            )
        });
    }
    // A directory above a guarded one mounts it too (`/var/run` holds the Docker socket).
    let above = |guarded: &str| {
        guarded
            .strip_prefix(path.as_str())
            .is_some_and(|rest| path == "/" || rest.starts_with('/'))
    };
    GUARDED_HOST_PATHS
        .iter()
        .find(|guarded| {
            if **guarded == "/" {
                path == "/"
            } else {
                under(guarded) || above(guarded)
            }
        })
        .map(|guarded| {
            format!(
                "it is, holds or is under `{guarded}`, which would give a pod the minion itself; list it in `allowed_host_paths` in drover.toml to allow it (as `privileged` needs `allow_privileged`)"
            )
        })
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            validate: Validate::Strict,
            allow_privileged: false,
            allowed_host_paths: Vec::new(),
        }
    }
}

/// A source read whole: every object, and the warnings found on the way.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub desired: DesiredState,
    pub warnings: Vec<Diagnostic>,
}

/// An object read from a file, with the place of its id (for duplicate reports).
#[derive(Debug)]
pub struct ParsedObject {
    pub object: crate::model::Object,
    pub id_pos: Pos,
}

/// Parses and validates one file strictly. On error, returns every diagnostic found in it.
pub fn parse_file(file: &str, bytes: &[u8]) -> Result<Vec<ParsedObject>, Vec<Diagnostic>> {
    parse_file_with(file, bytes, &Options::default())
        .map(|(objects, _)| objects)
        .map_err(|invalid| invalid.errors)
}

/// Why files were refused: every error, and the warnings found beside them (a user fixing
/// the errors should not meet the warnings only afterwards).
#[derive(Debug, Default)]
pub struct Invalid {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Invalid {
    fn only_errors(errors: Vec<Diagnostic>) -> Invalid {
        Invalid {
            errors,
            warnings: Vec::new(),
        }
    }
}

/// Parses and validates one file: its objects and warnings, or every error found in it (with
/// its warnings).
pub fn parse_file_with(
    file: &str,
    bytes: &[u8],
    opts: &Options,
) -> Result<(Vec<ParsedObject>, Vec<Diagnostic>), Invalid> {
    let fail = |pos: Pos, message: String| {
        Err(Invalid::only_errors(vec![Diagnostic {
            file: file.to_string(),
            pos,
            path: String::new(),
            message,
        }]))
    };
    let Some(format) = Format::of(file) else {
        return fail(
            Pos::default(),
            "not a .json, .toml, .yaml or .yml file".into(),
        );
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let pos = node::LineIndex::new(valid).pos(valid.len());
            return fail(pos, "the file is not valid UTF-8".into());
        }
    };
    // A byte-order mark is invisible in editors; accept it rather than report column 1.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cx = decode::Cx::new(file, opts);
    let parsed = match format {
        Format::Json => match node::parse_json(text) {
            Ok(root) => Ok(vec![root]),
            // Kubernetes decoded JSON with a YAML parser: trailing commas, unquoted strings
            // and tabs went through. Outside strict mode drover does the same, and says so.
            Err(e) if opts.validate != Validate::Strict => match node::parse_yaml(text) {
                Ok(docs) => {
                    cx.warn(
                        e.pos,
                        "",
                        format!(
                            "not strict JSON ({}); read as YAML, as Kubernetes did \
                             (--validate=strict refuses it)",
                            e.message
                        ),
                    );
                    Ok(docs)
                }
                Err(_) => Err(e),
            },
            // Refused, but say that Kubernetes' own reading is one flag away.
            Err(mut e) if yaml_reads_as_an_object(text) => {
                e.message.push_str(
                    "; Kubernetes read JSON with a YAML parser, which took this: \
                     --validate=warn does the same",
                );
                Err(e)
            }
            Err(e) => Err(e),
        },
        Format::Toml => node::parse_toml(text).map(|root| vec![root]),
        Format::Yaml => node::parse_yaml(text),
    };
    let docs = match parsed {
        Ok(docs) => docs,
        Err(e) => return fail(e.pos, e.message),
    };
    let mut objects = Vec::new();
    for root in docs {
        objects.extend(decode::document(&mut cx, root));
    }
    cx.warnings.sort();
    if cx.diags.is_empty() {
        Ok((objects, cx.warnings))
    } else {
        cx.diags.sort();
        Err(Invalid {
            errors: cx.diags,
            warnings: cx.warnings,
        })
    }
}

/// Whether YAML, as Kubernetes read JSON, takes the text as one object (not, say, a truncated
/// file or a bare word).
fn yaml_reads_as_an_object(text: &str) -> bool {
    matches!(node::parse_yaml(text).as_deref(), Ok([root]) if matches!(root.value, node::Value::Object(_)))
}

/// The default per-file size limit (`max_manifest_bytes` in drover.toml): 32 MiB.
///
/// Far above any hand-written manifest and above the largest generated List we know of
/// (10,000 RCs with their pod templates, about 9 MB). Parsing is linear, but memory is about
/// 12x the file for JSON and 35x for TOML (the `toml` crate's tree): at 32 MiB a file peaks
/// near 400 MB or 1.1 GB, so one stray file (a dump renamed `.json`) cannot exhaust a daemon.
/// Larger generated sources can raise it.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 32 << 20;

/// Parses every file and assembles the desired state. Any diagnostic anywhere fails the whole
/// source: callers must not apply or prune from a partly read source.
pub fn desired_state(files: &[SourceFile]) -> Result<DesiredState, Vec<Diagnostic>> {
    desired_state_limited(files, DEFAULT_MAX_MANIFEST_BYTES)
}

/// `desired_state` with a per-file size limit in bytes: a larger file is a diagnostic naming
/// it (and the setting), and is not parsed.
pub fn desired_state_limited(
    files: &[SourceFile],
    max_bytes: u64,
) -> Result<DesiredState, Vec<Diagnostic>> {
    let opts = Options {
        max_bytes,
        ..Options::default()
    };
    read(files, &opts).map(|r| r.desired)
}

/// Parses every file and assembles the desired state, with the warnings found. Any error
/// anywhere fails the whole source: callers must not apply or prune from a partly read source.
pub fn read(files: &[SourceFile], opts: &Options) -> Result<Read, Vec<Diagnostic>> {
    let read = read_each(
        files,
        |f| &f.origin,
        |f, buf, _| {
            buf.clear();
            buf.extend_from_slice(&f.bytes);
            Ok::<u64, std::convert::Infallible>(f.bytes.len() as u64)
        },
        opts,
        |_, object| object,
    );
    into_read(read)
}

/// `read` that consumes the files: each file's bytes are freed as soon as it is parsed, so a
/// large source never holds its whole text and its whole desired state at once.
pub fn read_owned(files: Vec<SourceFile>, opts: &Options) -> Result<Read, Vec<Diagnostic>> {
    let cells: Vec<(Origin, Mutex<Vec<u8>>)> = files
        .into_iter()
        .map(|f| (f.origin, Mutex::new(f.bytes)))
        .collect();
    let read = read_each(
        &cells,
        |(origin, _)| origin,
        |(_, bytes), buf, _| {
            *buf = std::mem::take(&mut *bytes.lock().unwrap_or_else(|e| e.into_inner()));
            Ok::<u64, std::convert::Infallible>(buf.len() as u64)
        },
        opts,
        |_, object| object,
    );
    into_read(read)
}

fn into_read(
    read: Result<Objects<crate::model::Object>, ReadError<std::convert::Infallible>>,
) -> Result<Read, Vec<Diagnostic>> {
    match read {
        Ok(o) => Ok(Read {
            desired: DesiredState { objects: o.objects },
            warnings: o.warnings,
        }),
        Err(ReadError::Invalid(invalid)) => Err(invalid.errors),
        Err(ReadError::Source(never)) => match never {},
    }
}

/// Why a source's files could not be read into objects: a file could not be had (the
/// source's own error), or every file was had and some are invalid (every diagnostic).
#[derive(Debug)]
pub enum ReadError<E> {
    Source(E),
    Invalid(Invalid),
}

/// Every object of a source as the caller chose to keep it, with the warnings found.
#[derive(Debug)]
pub struct Objects<V> {
    pub objects: BTreeMap<ObjectKey, (V, Origin)>,
    pub warnings: Vec<Diagnostic>,
}

/// Reads, parses and validates every file, on several threads, each file's bytes got by
/// `bytes` into a buffer its thread reuses (the caller's IO: this module does none; it is
/// given the size limit, need read no further than one byte past it, and returns the file's
/// size, so a huge file is refused without being read whole), and
/// hands each object to `keep` as soon as it is decoded, keeping only what that returns. So
/// a large source costs what the caller keeps per object, not its text and its objects whole
/// (`drover diff` keeps a hash comparison of most objects, not the object).
///
/// All or nothing, as `read`: a file that could not be had is the first such error in file
/// order; otherwise any diagnostic anywhere fails the whole source.
pub fn read_each<T: Sync, V: Send, E: Send>(
    files: &[T],
    origin: impl Fn(&T) -> &Origin + Sync,
    bytes: impl Fn(&T, &mut Vec<u8>, u64) -> Result<u64, E> + Sync,
    opts: &Options,
    keep: impl Fn(&ObjectKey, crate::model::Object) -> V + Sync,
) -> Result<Objects<V>, ReadError<E>> {
    let results = crate::par::map_init(files, Vec::new, |buf, f| {
        parse_kept(f, origin(f), buf, &bytes, opts, &keep)
    });
    let (mut all, mut diags, warnings) = in_file_order(results, files.len())?;
    // Sorted by key, stably: of the objects sharing an id, the first in file order comes first
    // and is kept, and each later one is a duplicate of it. One sort costs less than a map
    // insert per object, and this part runs on one thread.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    // In place, so a large source is not held twice.
    all.dedup_by(|later, first| {
        if later.0 != first.0 {
            return false;
        }
        let message = format!(
            "duplicate id: {} is also defined at {}:{}",
            later.0,
            origin(&files[first.3]).file,
            first.2
        );
        diags.push((
            later.3,
            Diagnostic {
                file: origin(&files[later.3]).file.clone(),
                pos: later.2,
                path: "id".into(),
                message,
            },
        ));
        true
    });
    if diags.is_empty() {
        let reserved = reserved_replica_names(
            all.iter()
                .map(|(key, _, pos, file)| (key, origin(&files[*file]), *pos)),
        );
        if !reserved.is_empty() {
            return Err(ReadError::Invalid(Invalid {
                errors: reserved,
                warnings,
            }));
        }
        // From sorted keys, a map is built in one pass.
        let objects = all
            .into_iter()
            .map(|(key, value, _, file)| (key, (value, origin(&files[file]).clone())))
            .collect();
        Ok(Objects { objects, warnings })
    } else {
        // Within one file its diagnostics are in order already (each file's are sorted, and
        // its duplicates were found in key order: sorted by position below).
        diags.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.pos.cmp(&y.pos)));
        Err(ReadError::Invalid(Invalid {
            errors: diags.into_iter().map(|(_, d)| d).collect(),
            warnings,
        }))
    }
}

/// One file's objects as `keep` kept them, each with its key and the position of its id, and
/// the file's warnings.
type Parsed<V> = (Vec<(ObjectKey, V, Pos)>, Vec<Diagnostic>);

/// Every object of every file, with its position and its file's index, in file order; the
/// diagnostics with the index of their file; the warnings.
type Gathered<V> = (
    Vec<(ObjectKey, V, Pos, usize)>,
    Vec<(usize, Diagnostic)>,
    Vec<Diagnostic>,
);

/// Reads one file into `buf` (refused past the size limit), parses it, and hands each object
/// to `keep`.
fn parse_kept<T, V, E>(
    f: &T,
    origin: &Origin,
    buf: &mut Vec<u8>,
    bytes: &impl Fn(&T, &mut Vec<u8>, u64) -> Result<u64, E>,
    opts: &Options,
    keep: &impl Fn(&ObjectKey, crate::model::Object) -> V,
) -> Result<Parsed<V>, ReadError<E>> {
    let max_bytes = opts.max_bytes;
    let size = bytes(f, buf, max_bytes).map_err(ReadError::Source)?;
    if size > max_bytes || buf.len() as u64 > max_bytes {
        let size = size.max(buf.len() as u64);
        // Do not keep a stray huge file's buffer for the rest of this thread's files.
        *buf = Vec::new();
        return Err(ReadError::Invalid(Invalid::only_errors(vec![Diagnostic {
            file: origin.file.clone(),
            pos: Pos { line: 1, col: 1 },
            path: String::new(),
            message: format!(
                "the file is {size} bytes, more than the limit of {max_bytes} bytes per manifest \
                 (max_manifest_bytes in drover.toml)"
            ),
        }])));
    }
    let (objects, warnings) =
        parse_file_with(&origin.file, buf, opts).map_err(ReadError::Invalid)?;
    // A new vector, not `collect`, which would reuse the parsed objects' larger one and so
    // keep it until the end.
    let mut kept = Vec::with_capacity(objects.len());
    for p in objects {
        let key = p.object.key();
        let value = keep(&key, p.object);
        kept.push((key, value, p.id_pos));
    }
    Ok((kept, warnings))
}

/// Gathers the files' results in file order. A file that could not be had fails the whole
/// (the first such in file order); diagnostics are gathered, not failed on, here.
fn in_file_order<V, E>(
    results: Vec<Result<Parsed<V>, ReadError<E>>>,
    files: usize,
) -> Result<Gathered<V>, ReadError<E>> {
    // Diagnostics with the index of their file: reported in file order, as the files are.
    let mut diags: Vec<(usize, Diagnostic)> = Vec::new();
    let mut warnings = Vec::new();
    let mut unreadable = None;
    // Every object with its position and its file's index, in file order.
    let mut all: Vec<(ObjectKey, V, Pos, usize)> = Vec::with_capacity(files);
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Err(ReadError::Source(e)) => {
                unreadable.get_or_insert(e);
            }
            Err(ReadError::Invalid(invalid)) => {
                diags.extend(invalid.errors.into_iter().map(|d| (i, d)));
                warnings.extend(invalid.warnings);
            }
            Ok((parsed, mut w)) => {
                warnings.append(&mut w);
                all.extend(
                    parsed
                        .into_iter()
                        .map(|(key, value, pos)| (key, value, pos, i)),
                );
            }
        }
    }
    if let Some(e) = unreadable {
        return Err(ReadError::Source(e));
    }
    Ok((all, diags, warnings))
}

/// An explicit Pod may not take a name of the form of an RC's replica (`<rc>-<hash>-<n>`):
/// it would run beside the replica under one name, and `describe pod` could show either.
/// `objects` are sorted by key, each with its origin and position; so are the diagnostics.
fn reserved_replica_names<'a>(
    objects: impl Iterator<Item = (&'a ObjectKey, &'a Origin, Pos)> + Clone,
) -> Vec<Diagnostic> {
    use crate::model::Kind;
    let mut diags = Vec::new();
    let rcs: std::collections::BTreeSet<&str> = objects
        .clone()
        .filter(|(k, ..)| k.kind == Kind::ReplicationController)
        .map(|(k, ..)| k.id.as_str())
        .collect();
    if rcs.is_empty() {
        return diags;
    }
    for (key, origin, pos) in objects {
        if key.kind != Kind::Pod {
            continue;
        }
        let Some(rc) = replica_owner(&key.id, &rcs) else {
            continue;
        };
        diags.push(Diagnostic {
            file: origin.file.clone(),
            pos,
            path: "id".into(),
            message: format!(
                "pod id `{}` has the form of a replica of replication controller `{rc}` \
                 (`<rc>-<hash>-<n>`); such names are reserved for its replicas",
                key.id
            ),
        });
    }
    diags
}

/// The RC whose replica name `id` could be: `<rc>-<6 hex>-<digits>`, the RC's id possibly cut
/// to keep the name within 63 characters (as `plan::pods::replica_id` does).
fn replica_owner<'a>(id: &str, rcs: &std::collections::BTreeSet<&'a str>) -> Option<&'a str> {
    let (rest, ordinal) = id.rsplit_once('-')?;
    let (prefix, hash) = rest.rsplit_once('-')?;
    let is_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if hash.len() != 6 || !is_hex(hash) {
        return None;
    }
    let cut = 63 - (id.len() - prefix.len());
    rcs.iter()
        .copied()
        .find(|rc| *rc == prefix || (rc.len() > cut && rc.get(..cut) == Some(prefix)))
}

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;
