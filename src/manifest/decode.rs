//! Located tree -> validated, defaulted model objects. One pass that keeps going after an error,
//! so a file with five mistakes reports five diagnostics, each with line:column and field path.
//!
//! The known fields of each object are exactly the ones the decoder asks for; anything else in
//! the document is an unknown field, reported with the nearest known name (an error under
//! `--validate=strict`, a warning under `warn`, nothing under `ignore`).
//!
//! The rules are v1beta1's as Kubernetes v0.8.0 enforced them (its `pkg/api/validation`; each
//! rule is asserted both ways in `rules_tests.rs`):
//! per-kind ids, label keys as qualified names and label values unchecked, DNS labels for
//! container, port and volume names, C identifiers for env names. Where drover cannot run what
//! Kubernetes accepted, the message says "not supported by drover" and what to do instead;
//! fields drover reads but cannot honour, where ignoring them changes nothing that runs, are
//! warnings.

use super::node::{Entry, Node, Pos, Value};
use super::{Diagnostic, Options, ParsedObject, Validate};
use crate::model::*;
use std::collections::{BTreeMap, HashMap};

pub(super) struct Cx<'f> {
    pub file: &'f str,
    pub diags: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub validate: Validate,
    pub allow_privileged: bool,
    pub allowed_host_paths: Vec<String>,
}

impl<'f> Cx<'f> {
    pub fn new(file: &'f str, opts: &Options) -> Self {
        Cx {
            file,
            diags: Vec::new(),
            warnings: Vec::new(),
            validate: opts.validate,
            allow_privileged: opts.allow_privileged,
            allowed_host_paths: opts.allowed_host_paths.clone(),
        }
    }
}

impl Cx<'_> {
    /// A key given twice: an error when strict; otherwise, as Kubernetes' decoders did, the
    /// last one counts, with a warning.
    fn duplicate(&mut self, pos: Pos, path: &str, message: String) {
        if self.validate == Validate::Strict {
            self.err(pos, path, message);
        } else {
            self.warn(
                pos,
                path,
                format!("{message}; the last one is used, as Kubernetes did"),
            );
        }
    }

    pub fn err(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// A warning: kept beside the objects, never fails the source; none under `ignore`.
    pub fn warn(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        if self.validate == Validate::Ignore {
            return;
        }
        self.warnings.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Something Kubernetes accepted that drover cannot run: an error saying so.
    fn unsupported(&mut self, pos: Pos, path: &str, what: &str, instead: &str) {
        self.err(
            pos,
            path,
            format!("{what} is not supported by drover; {instead}"),
        );
    }

    fn type_err(&mut self, node: &Node, path: &str, expected: &str) {
        self.err(
            node.pos,
            path,
            format!("expected {expected}, found {}", node.type_name()),
        );
    }
}

/// `path.name`; built by hand because it runs for every field of every manifest and the
/// formatting machinery costs more than the copy.
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        return name.to_string();
    }
    let mut s = String::with_capacity(path.len() + 1 + name.len());
    s.push_str(path);
    s.push('.');
    s.push_str(name);
    s
}

/// The fields of one object, handed out by name; remembers which names were asked for.
/// Borrows its path from the caller (no copy per object) and asks for room for the names once:
/// decoding runs for every object of every diff, where the allocations showed in profiles.
struct Fields<'n, 'p> {
    path: &'p str,
    pos: Pos,
    entries: &'n [Entry<'n>],
    known: Vec<&'static str>,
}

fn fields<'n, 'p>(cx: &mut Cx, node: &'n Node, path: &'p str) -> Option<Fields<'n, 'p>> {
    let Value::Object(entries) = &node.value else {
        cx.type_err(node, path, "an object");
        return None;
    };
    duplicate_fields(cx, entries, path);
    Some(Fields {
        path,
        pos: node.pos,
        entries,
        known: Vec::with_capacity(16),
    })
}

/// Reports every field given twice. Objects usually have a handful of fields, where a scan
/// beats hashing; past that, a map keeps hostile objects (100,000 keys) linear.
fn duplicate_fields(cx: &mut Cx, entries: &[Entry], path: &str) {
    const SCAN_UP_TO: usize = 16;
    let report = |cx: &mut Cx, e: &Entry, first: Pos| {
        cx.duplicate(
            e.key_pos,
            &join(path, &e.key),
            format!("duplicate field (first given at {first})"),
        )
    };
    if entries.len() <= SCAN_UP_TO {
        for (i, e) in entries.iter().enumerate() {
            if let Some(first) = entries[..i].iter().find(|f| f.key == e.key) {
                report(cx, e, first.key_pos);
            }
        }
        return;
    }
    let mut seen: HashMap<&str, Pos> = HashMap::with_capacity(entries.len());
    for e in entries {
        match seen.entry(&e.key) {
            std::collections::hash_map::Entry::Occupied(first) => report(cx, e, *first.get()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(e.key_pos);
            }
        }
    }
}

impl<'n> Fields<'n, '_> {
    fn opt(&mut self, name: &'static str) -> Option<(&'n Node<'n>, String)> {
        self.known.push(name);
        // The last, should it be given twice (an error unless `--validate` is lax).
        self.entries
            .iter()
            .rfind(|e| e.key == name)
            .map(|e| (&e.node, join(self.path, name)))
    }

    /// Like `opt`, but treats an explicit `null` as absent (seeds and generators write them).
    fn opt_non_null(&mut self, name: &'static str) -> Option<(&'n Node<'n>, String)> {
        self.opt(name).filter(|(n, _)| n.value != Value::Null)
    }

    fn req(&mut self, cx: &mut Cx, name: &'static str) -> Option<(&'n Node<'n>, String)> {
        let found = self.opt_non_null(name);
        if found.is_none() {
            cx.err(self.pos, &join(self.path, name), "missing required field");
        }
        found
    }

    /// Fields v1beta1 defines that carry nothing drover needs (output fields such as
    /// `creationTimestamp`, which the API server overwrote): accepted and dropped.
    fn accept(&mut self, names: &[&'static str]) {
        self.known.extend_from_slice(names);
    }

    /// A v1beta1 field drover reads but does not honour, where ignoring it changes nothing
    /// that runs: a warning naming it and why.
    fn unhonoured(&mut self, cx: &mut Cx, name: &'static str, why: &str) {
        if let Some((n, p)) = self.opt_non_null(name) {
            cx.warn(n.pos, &p, format!("`{name}` is ignored: {why}"));
        }
    }

    fn finish(self, cx: &mut Cx) {
        if cx.validate == Validate::Ignore {
            return;
        }
        for e in self.entries {
            if !self.known.contains(&&*e.key) {
                let hint = match nearest(&e.key, &self.known) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!("; known fields: {}", self.known.join(", ")),
                };
                let path = join(self.path, &e.key);
                if cx.validate == Validate::Strict {
                    cx.err(
                        e.key_pos,
                        &path,
                        format!(
                            "unknown field `{}`{hint} (--validate=warn ignores unknown fields)",
                            e.key
                        ),
                    );
                } else {
                    cx.warn(
                        e.key_pos,
                        &path,
                        format!("unknown field `{}` ignored{hint}", e.key),
                    );
                }
            }
        }
    }
}

/// The closest candidate by edit distance, if it is close enough to be a plausible typo.
pub(super) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// scalar helpers

fn string(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.to_string()),
        // `value: 8080` and `version: 1.0` are numbers to JSON and YAML: say how to write text.
        Value::Int(_) | Value::BigInt(_) | Value::Float(_) | Value::Bool(_) => {
            let found = n.type_name();
            cx.err(
                n.pos,
                path,
                format!("expected a string, found {found}: put the value in quotes"),
            );
            None
        }
        _ => {
            cx.type_err(n, path, "a string");
            None
        }
    }
}

fn non_empty_string(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = string(cx, n, path)?;
    if s.trim().is_empty() {
        cx.err(n.pos, path, "must not be empty");
        return None;
    }
    Some(s)
}

/// A container's `cpu` or `memory`: v0.8.0 took any integer, negative too, and handed it on
/// to Docker; drover refuses a negative one rather than guess what it meant.
fn limit(cx: &mut Cx, n: &Node, path: &str, name: &str, max: u64) -> Option<u64> {
    let negative = match &n.value {
        Value::Int(v) => (*v < 0).then(|| v.to_string()),
        Value::Float(v) => (*v < 0.0).then(|| v.to_string()),
        Value::BigInt(s) => s
            .starts_with('-')
            .then(|| s.chars().take(40).collect::<String>()),
        _ => None,
    };
    if let Some(v) = negative {
        cx.unsupported(
            n.pos,
            path,
            &format!("a negative `{name}` ({v}; Kubernetes v0.8.0 did not check it)"),
            "give 0 for no limit",
        );
        return None;
    }
    uint(cx, n, path, 0, max)
}

/// An integer field: an integer literal only, as Go's decoder had it for v1beta1's int fields
/// (`2.0`, `1E+2` and `1e-400` are numbers Go refused there; `-0` is an integer it took).
fn uint(cx: &mut Cx, n: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let v = match n.value {
        Value::Int(v) => v,
        Value::BigInt(ref s) => {
            let shown: String = s.chars().take(40).collect();
            cx.err(
                n.pos,
                path,
                format!("{shown} is outside the allowed range {min}-{max}"),
            );
            return None;
        }
        _ => {
            cx.type_err(n, path, "an integer");
            return None;
        }
    };
    if v < min as i64 || (v as u64) > max {
        cx.err(
            n.pos,
            path,
            format!("{v} is outside the allowed range {min}-{max}"),
        );
        return None;
    }
    Some(v as u64)
}

fn port_number(cx: &mut Cx, n: &Node, path: &str) -> Option<u16> {
    uint(cx, n, path, 1, 65535).map(|v| v as u16)
}

fn boolean(cx: &mut Cx, n: &Node, path: &str) -> Option<bool> {
    match n.value {
        Value::Bool(b) => Some(b),
        _ => {
            cx.type_err(n, path, "true or false");
            None
        }
    }
}

fn one_of(cx: &mut Cx, n: &Node, path: &str, allowed: &[&'static str]) -> Option<&'static str> {
    let s = string(cx, n, path)?;
    if let Some(a) = allowed.iter().find(|a| **a == s) {
        return Some(a);
    }
    let hint = nearest(&s, allowed)
        .map(|a| format!("; did you mean `{a}`?"))
        .unwrap_or_default();
    cx.err(
        n.pos,
        path,
        format!("`{s}` is not one of {}{hint}", allowed.join(", ")),
    );
    None
}

fn list<T>(
    cx: &mut Cx,
    n: &Node,
    path: &str,
    mut item: impl FnMut(&mut Cx, &Node, String) -> Option<T>,
) -> Vec<T> {
    let Value::Array(items) = &n.value else {
        cx.type_err(n, path, "an array");
        return Vec::new();
    };
    // Room for the items up front (at most 64: a hostile array of a million `{}` asks for
    // nothing it does not fill): `collect` would start at four and shrink afterwards, two
    // large allocations per list that showed in profiles of diff.
    let mut out: Vec<T> = Vec::with_capacity(items.len().min(64));
    for (i, it) in items.iter().enumerate() {
        let mut p = String::with_capacity(path.len() + 8);
        p.push_str(path);
        p.push('[');
        push_index(&mut p, i);
        p.push(']');
        if let Some(v) = item(cx, it, p) {
            out.push(v);
        }
    }
    // Items that failed leave room unused, kept for the life of the desired state otherwise.
    out.shrink_to_fit();
    out
}

/// `i` in decimal, without the formatting machinery (once per list item of every manifest).
fn push_index(s: &mut String, i: usize) {
    let mut digits = [0u8; 20];
    let mut n = i;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(digits[at..].iter().map(|&d| char::from(d)));
}

fn string_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<String> {
    list(cx, n, path, |cx, n, p| string(cx, n, &p))
}

/// An IntOrString port (`containerPort` of a Service, probe and hook ports): a number, a port
/// name, or a number in quotes (`"port": "8080"`, as Kubernetes' own examples wrote it).
fn port_ref(cx: &mut Cx, n: &Node, path: &str) -> Option<PortRef> {
    match &n.value {
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            match s.parse::<u32>() {
                Ok(v) if (1..=65535).contains(&v) => Some(PortRef::Number(v as u16)),
                _ => {
                    cx.err(
                        n.pos,
                        path,
                        format!("{s} is outside the allowed range 1-65535"),
                    );
                    None
                }
            }
        }
        Value::Str(s) if !s.is_empty() => Some(PortRef::Name(s.to_string())),
        Value::Int(_) | Value::BigInt(_) => port_number(cx, n, path).map(PortRef::Number),
        Value::Str(_) => {
            cx.err(
                n.pos,
                path,
                "an empty port name: give a port number or a port name",
            );
            None
        }
        _ => {
            cx.type_err(n, path, "a port number or a port name");
            None
        }
    }
}

/// An object that must be `{}` (restart policy members, `emptyDir`).
fn empty_object(cx: &mut Cx, n: &Node, path: &str) {
    if let Some(f) = fields(cx, n, path) {
        f.finish(cx);
    }
}

/// Object ids and container names become parts of Docker container names: drover's own
/// limit, checked after the kind's v1beta1 rule.
pub fn check_name(s: &str) -> Result<(), String> {
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("`{s}` is longer than 63 characters"));
    }
    if !first_ok
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!(
            "`{s}` is not a valid name: use letters, digits, '-', '.' and '_', starting with a letter or digit"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// v1beta1's name rules (pkg/util/validation.go at v0.8.0): lower case only.

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
pub(super) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS subdomain: dot-separated DNS labels, at most 253.
pub(super) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// DNS-952 label: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 24 (service ids).
pub(super) fn is_dns952_label(s: &str) -> bool {
    s.len() <= 24 && is_dns_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Qualified name (label keys, v0.7.0 - v0.12.x): an optional DNS subdomain and `/`, then a
/// DNS label.
pub(super) fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        None => is_dns_label(s),
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_dns_label(name),
    }
}

/// C identifier (env names): `[A-Za-z_][A-Za-z0-9_]*`.
pub(super) fn is_c_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const DNS_LABEL_RULE: &str =
    "a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit";

/// A name that must be a DNS label (containers, ports, volumes).
fn dns_label(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = string(cx, n, path)?;
    if s.is_empty() {
        cx.err(n.pos, path, "must not be empty");
        return None;
    }
    if !is_dns_label(&s) {
        let hint = suggest_lower(&s, is_dns_label);
        cx.err(n.pos, path, format!("`{s}` is not {DNS_LABEL_RULE}{hint}"));
        return None;
    }
    Some(s)
}

/// `; did you mean `x`?` with the name lower-cased and cleaned, when that would pass.
fn suggest_lower(s: &str, ok: impl Fn(&str) -> bool) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect();
    if lower != s && ok(&lower) {
        format!("; did you mean `{lower}`?")
    } else {
        String::new()
    }
}

fn labels(cx: &mut Cx, n: &Node, path: &str) -> Labels {
    labels_checked(cx, n, path, true)
}

/// A label map. Keys are qualified names when `check_keys` (not for an RC's replicaSelector,
/// whose keys v0.8.0 did not check); values are any string, as before v0.13.0.
fn labels_checked(cx: &mut Cx, n: &Node, path: &str, check_keys: bool) -> Labels {
    let Value::Object(entries) = &n.value else {
        cx.type_err(n, path, "an object of label names to values");
        return Labels::new();
    };
    let mut out = Labels::new();
    for e in entries {
        let p = join(path, &e.key);
        if check_keys && !is_qualified_name(&e.key) {
            let hint = suggest_lower(&e.key, is_qualified_name);
            cx.err(
                e.key_pos,
                &p,
                format!(
                    "`{}` is not a valid label key: an optional DNS subdomain and '/', then {DNS_LABEL_RULE}{hint}",
                    e.key
                ),
            );
            // Still kept: the object is refused for it already, and a selector or template
            // left without the key would only add false errors (an empty selector, a mismatch).
        }
        // Values were any string up to v0.12 (`"uses": "redisslave,redis-master"`); only
        // the type is checked, as Go's decoder did.
        let Some(v) = string(cx, &e.node, &p) else {
            continue;
        };
        if out.insert(e.key.to_string(), v).is_some() {
            cx.duplicate(e.key_pos, &p, "duplicate label".into());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// objects

/// The list kinds: `List` and the typed lists, each with `items` (`MinionList` also took
/// `minions`, the deprecated alias).
const LIST_KINDS: [&str; 6] = [
    "List",
    "PodList",
    "ServiceList",
    "ReplicationControllerList",
    "MinionList",
    "NodeList",
];

pub(super) fn document(cx: &mut Cx, mut root: Node) -> Vec<ParsedObject> {
    // `{"kind": "List", "items": [...]}` holds several objects in one file.
    if let Value::Object(entries) = &root.value {
        // The last `kind`, as `Fields` reads every field.
        let list_kind =
            entries
                .iter()
                .rfind(|e| e.key == "kind")
                .and_then(|e| match &e.node.value {
                    Value::Str(k) => LIST_KINDS.iter().find(|l| **l == k).copied(),
                    _ => None,
                });
        if let Some(list_kind) = list_kind {
            let Some(mut f) = fields(cx, &root, "") else {
                return Vec::new();
            };
            f.opt("kind");
            if let Some((n, p)) = f.opt("apiVersion") {
                api_version(cx, n, &p);
            }
            metadata(cx, &mut f, None);
            let mut items_key = "items";
            if list_kind.ends_with("List") && f.opt_non_null("items").is_none() {
                if list_kind == "MinionList" && f.opt_non_null("minions").is_some() {
                    items_key = "minions";
                }
            } else {
                f.opt("minions");
            }
            let items = if items_key == "minions" {
                f.opt_non_null("minions").map(|(_, p)| p)
            } else {
                f.req(cx, "items").map(|(_, p)| p)
            };
            f.finish(cx);
            let Some(path) = items else {
                return Vec::new();
            };
            // A typed list's items are of its kind, as Go decoded them: `kind` may be left out.
            let implied = match list_kind {
                "PodList" => Some(Kind::Pod),
                "ServiceList" => Some(Kind::Service),
                "ReplicationControllerList" => Some(Kind::ReplicationController),
                "MinionList" | "NodeList" => Some(Kind::Minion),
                _ => None,
            };
            // Each item is decoded and then dropped, so the located tree of a large List
            // shrinks while its objects are made: both are never whole at once.
            let Value::Object(entries) = &mut root.value else {
                unreachable!("checked above")
            };
            let entry = entries
                .iter_mut()
                .rfind(|e| e.key == items_key)
                .expect("required above");
            let items = std::mem::replace(&mut entry.node.value, Value::Null);
            let Value::Array(items) = items else {
                entry.node.value = items;
                let n = &entry.node;
                return list(cx, n, &path, |cx, it, p| object(cx, it, &p, implied));
            };
            drop(root);
            return items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| object(cx, &item, &format!("{path}[{i}]"), implied))
                .collect();
        }
    }
    object(cx, &root, "", None).into_iter().collect()
}

fn api_version(cx: &mut Cx, n: &Node, path: &str) {
    if let Some(v) = string(cx, n, path) {
        if v != API_VERSION {
            cx.err(
                n.pos,
                path,
                format!("unsupported apiVersion `{v}`: drover reads {API_VERSION}"),
            );
        }
    }
}

/// An annotation drover reads: its value, where it is, and its field path.
struct Annotation {
    value: String,
    pos: Pos,
    path: String,
}

/// v1beta1's object metadata beside `id` and `labels`: `namespace` (checked, and reported when
/// it is not `default`: a project is drover's one namespace), `annotations` (strings; those
/// under `drover.io/` are returned for the kind to read), and the output fields the API server
/// filled in itself.
fn metadata(cx: &mut Cx, f: &mut Fields, kind: Option<Kind>) -> BTreeMap<String, Annotation> {
    let mut ours = BTreeMap::new();
    f.accept(&[
        "creationTimestamp",
        "selfLink",
        "uid",
        "resourceVersion",
        "currentState",
        "generateName",
    ]);
    if let Some((n, p)) = f.opt_non_null("namespace") {
        if let Some(ns) = string(cx, n, &p) {
            if kind == Some(Kind::Minion) {
                if !ns.is_empty() {
                    cx.err(
                        n.pos,
                        &p,
                        "a minion has no namespace: leave `namespace` out",
                    );
                }
            } else if !ns.is_empty() && !is_dns_subdomain(&ns) {
                cx.err(
                    n.pos,
                    &p,
                    format!("namespace `{ns}` is not a DNS subdomain (lower-case letters, digits, '-' and '.')"),
                );
            } else if !ns.is_empty() && ns != "default" {
                cx.warn(
                    n.pos,
                    &p,
                    format!(
                        "namespace `{ns}` is ignored: drover has one namespace per project \
                         (`project` in drover.toml); use a project per namespace"
                    ),
                );
            }
        }
    }
    if let Some((n, p)) = f.opt_non_null("annotations") {
        // Type-checked like labels' values; drover keeps only its own.
        if let Value::Object(entries) = &n.value {
            duplicate_fields(cx, entries, &p);
            for e in entries {
                let path = join(&p, &e.key);
                if let Some(value) = string(cx, &e.node, &path) {
                    if e.key.starts_with("drover.io/") {
                        let pos = e.node.pos;
                        ours.insert(e.key.to_string(), Annotation { value, pos, path });
                    }
                }
            }
        } else {
            cx.type_err(n, &p, "an object of names to strings");
        }
    }
    ours
}

type NameRule = fn(&str) -> bool;

/// The id by the kind's rule at v0.8.0, then drover's own limit (ids go into Docker names).
fn object_id(cx: &mut Cx, kind: Option<Kind>, n: &Node, path: &str) -> Option<String> {
    let s = string(cx, n, path)?;
    let rule: Option<(NameRule, &str)> = match kind {
        Some(Kind::Pod) => Some((
            is_dns_subdomain,
            "a pod id must be a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253",
        )),
        Some(Kind::Service) => Some((
            is_dns952_label,
            "a service id must be a DNS-952 label: at most 24 lower-case letters, digits and '-', starting with a letter",
        )),
        // Only non-empty at v0.8.0 (upper case such as `redisSlaveController` was valid).
        Some(Kind::ReplicationController) | Some(Kind::Minion) | None => None,
    };
    if s.is_empty() {
        let generated = matches!(kind, Some(Kind::Pod | Kind::ReplicationController));
        if generated {
            cx.unsupported(
                n.pos,
                path,
                "an empty id (Kubernetes generated a name)",
                "give an `id`, so that every apply finds the same object",
            );
        } else {
            cx.err(n.pos, path, "must not be empty");
        }
        return None;
    }
    if let Some((ok, rule)) = rule {
        if !ok(&s) {
            let hint = suggest_lower(&s, ok);
            cx.err(n.pos, path, format!("`{s}` is not valid: {rule}{hint}"));
            return None;
        }
    }
    if let Err(e) = check_name(&s) {
        // A minion's id names its records in the store (and is its SSH host unless
        // drover.toml names it); the others' become parts of Docker container names.
        let why = match kind {
            Some(Kind::Minion) => "a minion's id names its files in drover's state",
            _ => "ids become parts of Docker container names",
        };
        cx.unsupported(
            n.pos,
            path,
            &format!("an id of this form ({e})"),
            &format!("{why}: at most 63 letters, digits, '-', '.' and '_'"),
        );
        return None;
    }
    Some(s)
}

/// One object; `implied` is the kind of the typed list it came in, if any (then `kind` may be
/// left out).
fn object(cx: &mut Cx, node: &Node, path: &str, implied: Option<Kind>) -> Option<ParsedObject> {
    // Any error of this object refuses it, even one where a stand-in was kept (a bad label key).
    let errors_before = cx.diags.len();
    let mut f = fields(cx, node, path)?;
    let kind_field = match implied {
        Some(_) => f.opt_non_null("kind"),
        None => f.req(cx, "kind"),
    };
    let kind = kind_field.map_or(implied, |(n, p)| object_kind(cx, n, &p, path, implied));
    if let Some((n, p)) = f.opt("apiVersion") {
        api_version(cx, n, &p);
    }
    let (id, id_pos) = match f.req(cx, "id") {
        Some((n, p)) => (object_id(cx, kind, n, &p), n.pos),
        None => (None, f.pos),
    };
    let labels = f
        .opt_non_null("labels")
        .map(|(n, p)| labels(cx, n, &p))
        .unwrap_or_default();
    let mut annotations = metadata(cx, &mut f, kind);
    let Some(kind) = kind else {
        // Without a kind the other fields cannot be judged; the kind error says it all.
        return None;
    };
    let mut object = object_of_kind(cx, &mut f, kind, id.unwrap_or_default(), labels);
    if let Object::Service(service) = &mut object {
        service.proxy_protocol = proxy_protocol(cx, &mut annotations, service.protocol);
    }
    for (key, a) in annotations {
        cx.warn(
            a.pos,
            &a.path,
            format!("annotation `{key}` means nothing to drover on a {kind}; it is ignored"),
        );
    }
    f.finish(cx);
    (cx.diags.len() == errors_before).then_some(ParsedObject { object, id_pos })
}

/// The kind an object's `kind` field `n` names; `None` (said) when it names none, or another
/// than the typed list's it came in.
fn object_kind(cx: &mut Cx, n: &Node, p: &str, path: &str, implied: Option<Kind>) -> Option<Kind> {
    let s = string(cx, n, p)?;
    // `Node` is the later name of a minion, accepted from v0.8.0 on.
    let kind = if s == "Node" {
        Some(Kind::Minion)
    } else {
        Kind::parse(&s)
    };
    // Go decoded a typed list's items into its element type: another kind is a mistake.
    if let (Some(given), Some(list_of)) = (kind, implied) {
        if given != list_of {
            let of = list_of.as_str();
            cx.err(
                n.pos,
                p,
                format!("a {s} in a {of}List, whose items are {of}s"),
            );
            return None;
        }
    }
    if kind.is_none() {
        // Lists are named only where a list may stand: a whole document.
        let lists: &[&str] = if path.is_empty() { &LIST_KINDS } else { &[] };
        let names: Vec<&str> = Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .chain(["Node"])
            .chain(lists.iter().copied())
            .collect();
        let hint = nearest(&s, &names)
            .map(|a| format!("; did you mean `{a}`?"))
            .unwrap_or_default();
        cx.err(
            n.pos,
            p,
            format!(
                "unknown kind `{s}`: expected one of {}{hint}",
                names.join(", ")
            ),
        );
    }
    kind
}

/// The fields particular to each kind, with the id and labels all kinds share.
fn object_of_kind(cx: &mut Cx, f: &mut Fields, kind: Kind, id: String, labels: Labels) -> Object {
    let api_version = API_VERSION.to_string();
    match kind {
        Kind::Pod => {
            let desired_state = f
                .req(cx, "desiredState")
                .map(|(n, p)| pod_state(cx, n, &p, false))
                .unwrap_or_default();
            let node_selector = f
                .opt_non_null("nodeSelector")
                .map(|(n, p)| self::labels(cx, n, &p))
                .unwrap_or_default();
            Object::Pod(Pod {
                id,
                api_version,
                labels,
                desired_state,
                node_selector,
            })
        }
        Kind::ReplicationController => {
            let desired_state = f
                .req(cx, "desiredState")
                .map(|(n, p)| rc_state(cx, n, &p))
                .unwrap_or_default();
            Object::ReplicationController(ReplicationController {
                id,
                api_version,
                labels,
                desired_state,
            })
        }
        Kind::Service => service(cx, f, id, labels),
        Kind::Minion => {
            let resources = f
                .opt_non_null("resources")
                .map(|(n, p)| node_resources(cx, n, &p))
                .unwrap_or_default();
            f.unhonoured(
                cx,
                "hostIP",
                "a minion is reached at its `id` (or its [[minions]] address in drover.toml)",
            );
            f.accept(&["status"]);
            let unschedulable = f
                .opt_non_null("unschedulable")
                .and_then(|(n, p)| boolean(cx, n, &p))
                .unwrap_or(false);
            Object::Minion(Minion {
                id,
                api_version,
                labels,
                resources,
                unschedulable,
            })
        }
    }
}

fn service(cx: &mut Cx, f: &mut Fields, id: String, labels: Labels) -> Object {
    let port = f
        .req(cx, "port")
        .and_then(|(n, p)| port_number(cx, n, &p))
        .unwrap_or_default();
    let protocol = f
        .opt_non_null("protocol")
        .and_then(|(n, p)| protocol(cx, n, &p))
        .unwrap_or_default();
    let container_port = f
        .opt_non_null("containerPort")
        .and_then(|(n, p)| port_ref(cx, n, &p));
    // Optional since v0.7.0: without one, endpoints were given by hand (drover makes none).
    let selector = match f.opt_non_null("selector") {
        None => {
            cx.warn(
                f.pos,
                &join(f.path, "selector"),
                "no selector: the service gets no endpoints (Kubernetes expected them to be \
                 given by hand; drover has no Endpoints objects)",
            );
            Labels::new()
        }
        Some((n, p)) => {
            let sel = self::labels(cx, n, &p);
            if sel.is_empty() && matches!(n.value, Value::Object(_)) {
                cx.unsupported(
                    n.pos,
                    &p,
                    "an empty selector (Kubernetes sent the service's traffic to every pod)",
                    "give the labels of the pods it serves",
                );
            }
            sel
        }
    };
    let session_affinity = f
        .opt_non_null("sessionAffinity")
        .and_then(|(n, p)| one_of(cx, n, &p, &["None", "ClientIP"]))
        .map(|s| match s {
            "ClientIP" => SessionAffinity::ClientIP,
            _ => SessionAffinity::None,
        })
        .unwrap_or_default();
    if let Some((n, p)) = f.opt_non_null("createExternalLoadBalancer") {
        if boolean(cx, n, &p) == Some(true) {
            cx.warn(
                n.pos,
                &p,
                "`createExternalLoadBalancer` is ignored: drover has no cloud provider; the \
                 service is served by drover's proxy on its port",
            );
        }
    }
    f.unhonoured(
        cx,
        "publicIPs",
        "the service is served on the proxy's `listen` address ([proxy] in drover.toml)",
    );
    f.unhonoured(
        cx,
        "portalIP",
        "drover has no portal network; the service is served on the proxy's address",
    );
    f.accept(&["proxyPort"]);
    Object::Service(Service {
        id,
        api_version: API_VERSION.to_string(),
        labels,
        port,
        protocol,
        container_port,
        selector,
        session_affinity,
        proxy_protocol: None,
    })
}

/// The service's `drover.io/proxy-protocol` annotation: `v1` or `v2`, for a TCP service.
fn proxy_protocol(
    cx: &mut Cx,
    annotations: &mut BTreeMap<String, Annotation>,
    protocol: Protocol,
) -> Option<ProxyProtocol> {
    let a = annotations.remove(PROXY_PROTOCOL_ANNOTATION)?;
    let chosen = match a.value.as_str() {
        "v1" => ProxyProtocol::V1,
        "v2" => ProxyProtocol::V2,
        other => {
            cx.err(
                a.pos,
                &a.path,
                format!(
                    "`{other}` is not a PROXY protocol version: \"v1\" (text) or \"v2\" (binary)"
                ),
            );
            return None;
        }
    };
    if protocol != Protocol::TCP {
        cx.err(
            a.pos,
            &a.path,
            "drover's proxy sends the PROXY protocol header to TCP backends only",
        );
        return None;
    }
    Some(chosen)
}

/// `TCP` or `UDP`, compared upper-cased as v0.8.0 did (`tcp` is fine).
fn protocol(cx: &mut Cx, n: &Node, path: &str) -> Option<Protocol> {
    let s = string(cx, n, path)?;
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Some(Protocol::TCP),
        "UDP" => Some(Protocol::UDP),
        _ => {
            cx.err(n.pos, path, format!("`{s}` is not one of TCP, UDP"));
            None
        }
    }
}

/// A capacity figure: a number, or a number in quotes (IntOrString in v1beta1).
fn quantity(cx: &mut Cx, n: &Node, path: &str, max: u64) -> Option<u64> {
    if let Value::Str(s) = &n.value {
        return match s.parse::<u64>() {
            Ok(v) if (1..=max).contains(&v) => Some(v),
            _ => {
                cx.err(
                    n.pos,
                    path,
                    format!("`{s}` is not a whole number in the range 1-{max}"),
                );
                None
            }
        };
    }
    uint(cx, n, path, 1, max)
}

fn node_resources(cx: &mut Cx, n: &Node, path: &str) -> NodeResources {
    let Some(mut f) = fields(cx, n, path) else {
        return NodeResources::default();
    };
    let capacity = f.opt_non_null("capacity").and_then(|(n, p)| {
        let mut c = fields(cx, n, &p)?;
        let cpu = c
            .opt_non_null("cpu")
            .and_then(|(n, p)| quantity(cx, n, &p, u32::MAX as u64));
        let memory = c
            .opt_non_null("memory")
            .and_then(|(n, p)| quantity(cx, n, &p, i64::MAX as u64));
        c.finish(cx);
        Some(Capacity { cpu, memory })
    });
    f.finish(cx);
    NodeResources {
        capacity: capacity.unwrap_or_default(),
    }
}

fn rc_state(cx: &mut Cx, n: &Node, path: &str) -> ReplicationControllerState {
    let Some(mut f) = fields(cx, n, path) else {
        return ReplicationControllerState::default();
    };
    // Absent is 0 (Go's zero value).
    let replicas = f
        .opt_non_null("replicas")
        .and_then(|(n, p)| uint(cx, n, &p, 0, 100_000))
        .unwrap_or_default() as u32;
    // Required and non-empty; its keys were not checked at v0.8.0.
    let replica_selector = match f.req(cx, "replicaSelector") {
        Some((n, p)) => {
            let sel = labels_checked(cx, n, &p, false);
            if sel.is_empty() && matches!(n.value, Value::Object(_)) {
                cx.err(
                    n.pos,
                    &p,
                    "must not be empty: an empty selector would match every pod",
                );
            }
            sel
        }
        None => Labels::new(),
    };
    let pod_template = f.req(cx, "podTemplate").map(|(n, p)| {
        let template = pod_template(cx, n, &p);
        let mismatched: Vec<String> = replica_selector
            .iter()
            .filter(|(k, v)| template.0.labels.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !replica_selector.is_empty() && !mismatched.is_empty() {
            cx.err(
                template.1,
                &join(&p, "labels"),
                format!(
                    "template labels do not match the replicaSelector (missing {}): the controller would never see the pods it makes",
                    mismatched.join(", ")
                ),
            );
        }
        template.0
    });
    f.finish(cx);
    ReplicationControllerState {
        replicas,
        replica_selector,
        pod_template: pod_template.unwrap_or_default(),
    }
}

/// Returns the template and the position its labels are reported at.
fn pod_template(cx: &mut Cx, n: &Node, path: &str) -> (PodTemplate, Pos) {
    let Some(mut f) = fields(cx, n, path) else {
        return (PodTemplate::default(), n.pos);
    };
    let desired_state = f
        .req(cx, "desiredState")
        .map(|(n, p)| pod_state(cx, n, &p, true))
        .unwrap_or_default();
    let (labels, labels_pos) = match f.opt_non_null("labels") {
        Some((n, p)) => (labels(cx, n, &p), n.pos),
        None => (Labels::new(), n.pos),
    };
    let node_selector = f
        .opt_non_null("nodeSelector")
        .map(|(n, p)| self::labels(cx, n, &p))
        .unwrap_or_default();
    f.accept(&["annotations"]);
    f.finish(cx);
    (
        PodTemplate {
            desired_state,
            labels,
            node_selector,
        },
        labels_pos,
    )
}

fn pod_state(cx: &mut Cx, n: &Node, path: &str, in_template: bool) -> PodState {
    let Some(mut f) = fields(cx, n, path) else {
        return PodState::default();
    };
    let manifest = f
        .req(cx, "manifest")
        .map(|(n, p)| manifest(cx, n, &p, in_template))
        .unwrap_or_default();
    f.unhonoured(
        cx,
        "host",
        "drover's scheduler places pods; pin one with `nodeSelector` and a minion label",
    );
    // Output fields of a pod's state.
    f.accept(&["status", "hostIP", "podIP", "info"]);
    f.finish(cx);
    PodState { manifest }
}

/// Places inside a container that pod-level checks need to point at.
#[derive(Default)]
struct ContainerRefs {
    mounts: Vec<(String, Pos, String)>,
    host_ports: Vec<(u16, Pos, String)>,
}

fn manifest(cx: &mut Cx, n: &Node, path: &str, in_template: bool) -> ContainerManifest {
    let Some(mut f) = fields(cx, n, path) else {
        return ContainerManifest::default();
    };
    // Both dropped by the API server from v0.6.0 on; only their type is checked.
    if let Some((n, p)) = f.opt_non_null("version") {
        string(cx, n, &p);
    }
    if let Some((n, p)) = f.opt_non_null("id") {
        string(cx, n, &p);
    }
    f.accept(&["uuid"]);
    let volumes: Vec<(Volume, Pos, String)> = f
        .opt_non_null("volumes")
        .map(|(n, p)| list(cx, n, &p, |cx, n, p| volume(cx, n, p, in_template)))
        .unwrap_or_default();
    let mut refs = ContainerRefs::default();
    // A pod with no containers was valid until v0.14.0.
    let containers: Vec<(Container, Pos, String)> = f
        .opt_non_null("containers")
        .map(|(n, p)| list(cx, n, &p, |cx, n, p| container(cx, n, p, &mut refs)))
        .unwrap_or_default();
    let restart_policy = f
        .opt_non_null("restartPolicy")
        .map(|(n, p)| {
            let policy = restart_policy(cx, n, &p);
            if in_template && !matches!(policy, RestartPolicy::Always {}) {
                cx.err(
                    n.pos,
                    &p,
                    "a replication controller's pods must restart `always` (its replicas are \
                     replaced, not left finished); use a Pod for a run-once task",
                );
            }
            policy
        })
        .unwrap_or_default();
    let dns_policy = f
        .opt_non_null("dnsPolicy")
        .and_then(|(n, p)| one_of(cx, n, &p, &["ClusterFirst", "Default"]))
        .map(|s| match s {
            "Default" => DnsPolicy::Default,
            _ => DnsPolicy::ClusterFirst,
        })
        .unwrap_or_default();
    f.finish(cx);

    unique_names(
        cx,
        containers.iter().map(|(c, pos, p)| (&c.name, *pos, p)),
        "container",
    );
    unique_names(
        cx,
        volumes.iter().map(|(v, pos, p)| (&v.name, *pos, p)),
        "volume",
    );
    for (mount, pos, p) in &refs.mounts {
        if !volumes.iter().any(|(v, _, _)| &v.name == mount) {
            cx.err(
                *pos,
                p,
                format!("volumeMount names no volume: `{mount}` is not in manifest.volumes"),
            );
        }
    }
    // Non-zero host ports are unique across the pod's containers (checkHostPortConflicts).
    let mut host_ports: HashMap<u16, Pos> = HashMap::new();
    for (port, pos, p) in &refs.host_ports {
        if let Some(first) = host_ports.insert(*port, *pos) {
            cx.err(
                *pos,
                p,
                format!("hostPort {port} is already used in this pod at {first}"),
            );
        }
    }
    // Collected afresh (not in place), so each Vec holds exactly its items.
    let mut volumes_out = Vec::with_capacity(volumes.len());
    volumes_out.extend(volumes.into_iter().map(|(v, _, _)| v));
    let mut containers_out = Vec::with_capacity(containers.len());
    containers_out.extend(containers.into_iter().map(|(c, _, _)| c));
    ContainerManifest {
        volumes: volumes_out,
        containers: containers_out,
        restart_policy,
        dns_policy,
    }
}

fn unique_names<'a>(
    cx: &mut Cx,
    items: impl Iterator<Item = (&'a String, Pos, &'a String)>,
    what: &str,
) {
    let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
    for (name, pos, path) in items {
        if let Some(first) = seen.insert(name, pos) {
            cx.err(
                pos,
                path,
                format!("duplicate {what} name `{name}` (first at {first})"),
            );
        }
    }
}

fn restart_policy(cx: &mut Cx, n: &Node, path: &str) -> RestartPolicy {
    let Some(mut f) = fields(cx, n, path) else {
        return RestartPolicy::default();
    };
    let mut given = Vec::new();
    for (member, policy) in [
        ("always", RestartPolicy::Always {}),
        ("onFailure", RestartPolicy::OnFailure {}),
        ("never", RestartPolicy::Never {}),
    ] {
        if let Some((n, p)) = f.opt(member) {
            empty_object(cx, n, &p);
            given.push((member, policy));
        }
    }
    f.finish(cx);
    if given.len() > 1 {
        let names: Vec<&str> = given.iter().map(|(m, _)| *m).collect();
        cx.err(
            n.pos,
            path,
            format!(
                "conflicting restart policies {}: only 1 policy is allowed",
                names.join(" and ")
            ),
        );
    }
    given.first().map(|(_, p)| *p).unwrap_or_default()
}

fn volume(cx: &mut Cx, n: &Node, path: String, in_template: bool) -> Option<(Volume, Pos, String)> {
    let mut f = fields(cx, n, &path)?;
    let (name, name_pos, name_path) = match f.req(cx, "name") {
        Some((n, p)) => (dns_label(cx, n, &p), n.pos, p),
        None => (None, n.pos, join(&path, "name")),
    };
    // No source at all, or `null`, means emptyDir, as in v1beta1 (`{}` names no type: an error).
    let source = match f.opt_non_null("source") {
        None => Some(VolumeSource::EmptyDir {}),
        Some((n, p)) => volume_source(cx, n, &p, in_template),
    };
    f.finish(cx);
    // A volume whose source was refused keeps its name (an emptyDir stands in): its error is
    // reported already, and its mounts must not be reported as naming no volume.
    Some((
        Volume {
            name: name?,
            source: source.unwrap_or(VolumeSource::EmptyDir {}),
        },
        name_pos,
        name_path,
    ))
}

fn volume_source(cx: &mut Cx, n: &Node, path: &str, in_template: bool) -> Option<VolumeSource> {
    let mut f = fields(cx, n, path)?;
    let empty = f.opt_non_null("emptyDir");
    let host = f.opt_non_null("hostDir");
    let disk = f.opt_non_null("persistentDisk");
    let git = f.opt_non_null("gitRepo");
    f.finish(cx);
    let given = [&empty, &host, &disk, &git]
        .iter()
        .filter(|s| s.is_some())
        .count();
    // `{}` (or a type v1beta1 did not know, such as v1beta3's `gcePersistentDisk`) names none.
    if given != 1 {
        cx.err(
            n.pos,
            path,
            "exactly 1 volume type is required: give one of emptyDir, hostDir, persistentDisk, gitRepo \
             (or leave `source` out for an emptyDir)",
        );
        return None;
    }
    if let Some((n, p)) = disk {
        // Checked as v0.8.0 did, so a manifest Kubernetes refused is refused for that first.
        if let Some(mut d) = fields(cx, n, &p) {
            d.req(cx, "pdName")
                .and_then(|(n, p)| non_empty_string(cx, n, &p));
            d.req(cx, "fsType")
                .and_then(|(n, p)| non_empty_string(cx, n, &p));
            d.opt_non_null("partition")
                .and_then(|(n, p)| uint(cx, n, &p, 0, 255));
            let read_only = d
                .opt_non_null("readOnly")
                .and_then(|(n, p)| boolean(cx, n, &p))
                .unwrap_or(false);
            d.finish(cx);
            if in_template && !read_only {
                cx.err(
                    n.pos,
                    &p,
                    "a persistentDisk in a replication controller's template must be readOnly",
                );
            }
        }
        cx.unsupported(
            n.pos,
            &p,
            "a `persistentDisk` volume (a GCE disk)",
            "mount the disk on the minion and use `hostDir` with its path, pinning the pod with \
             `nodeSelector`",
        );
        return None;
    }
    if let Some((n, p)) = git {
        if let Some(mut g) = fields(cx, n, &p) {
            g.req(cx, "repository")
                .and_then(|(n, p)| non_empty_string(cx, n, &p));
            g.opt_non_null("revision")
                .and_then(|(n, p)| string(cx, n, &p));
            g.finish(cx);
        }
        cx.unsupported(
            n.pos,
            &p,
            "a `gitRepo` volume",
            "build the files into the image, or check them out on the minion and use `hostDir`",
        );
        return None;
    }
    // Exactly one is given: `hostDir`, or else `emptyDir`.
    match host {
        None => {
            if let Some((n, p)) = empty {
                empty_object(cx, n, &p);
            }
            Some(VolumeSource::EmptyDir {})
        }
        Some((n, p)) => {
            let mut h = fields(cx, n, &p)?;
            let dir = h.req(cx, "path").and_then(|(n, p)| {
                let s = non_empty_string(cx, n, &p)?;
                if !s.starts_with('/') {
                    cx.unsupported(
                        n.pos,
                        &p,
                        &format!("a relative hostDir path (`{s}`)"),
                        "Docker binds absolute paths: give the full path on the minion",
                    );
                    return None;
                }
                if let Some(why) = super::host_path_refusal(&s, &cx.allowed_host_paths) {
                    cx.err(n.pos, &p, format!("hostDir `{s}` is refused: {why}"));
                    return None;
                }
                Some(s)
            });
            h.finish(cx);
            Some(VolumeSource::HostDir { path: dir? })
        }
    }
}

fn container(
    cx: &mut Cx,
    n: &Node,
    path: String,
    refs: &mut ContainerRefs,
) -> Option<(Container, Pos, String)> {
    let mut f = fields(cx, n, &path)?;
    let name = f.req(cx, "name").and_then(|(n, p)| dns_label(cx, n, &p));
    let image = f.req(cx, "image").and_then(|(n, p)| image(cx, n, &p));
    let command = f
        .opt_non_null("command")
        .map(|(n, p)| string_list(cx, n, &p))
        .unwrap_or_default();
    let working_dir = f
        .opt_non_null("workingDir")
        .and_then(|(n, p)| string(cx, n, &p))
        .filter(|s| !s.is_empty());
    let mut port_names: Vec<(String, Pos, String)> = Vec::new();
    let ports: Vec<Port> = f
        .opt_non_null("ports")
        .map(|(n, p)| list(cx, n, &p, |cx, n, p| port(cx, n, p, refs, &mut port_names)))
        .unwrap_or_default();
    // Port names are unique within one container (two containers may both say `api`).
    unique_names(
        cx,
        port_names.iter().map(|(n, pos, p)| (n, *pos, p)),
        "port",
    );
    let env = f
        .opt_non_null("env")
        .map(|(n, p)| list(cx, n, &p, env_var))
        .unwrap_or_default();
    let cpu = f
        .opt_non_null("cpu")
        .and_then(|(n, p)| limit(cx, n, &p, "cpu", u32::MAX as u64))
        .unwrap_or(0);
    let memory = f
        .opt_non_null("memory")
        .and_then(|(n, p)| limit(cx, n, &p, "memory", i64::MAX as u64))
        .unwrap_or(0);
    let volume_mounts = f
        .opt_non_null("volumeMounts")
        .map(|(n, p)| {
            list(cx, n, &p, |cx, n, p| {
                let (m, name_pos, name_path) = volume_mount(cx, n, p)?;
                refs.mounts.push((m.name.clone(), name_pos, name_path));
                Some(m)
            })
        })
        .unwrap_or_default();
    let liveness_probe = f
        .opt_non_null("livenessProbe")
        .and_then(|(n, p)| liveness_probe(cx, n, &p, &ports));
    let lifecycle = f
        .opt_non_null("lifecycle")
        .and_then(|(n, p)| lifecycle(cx, n, &p, &ports).map(Box::new));
    let privileged = f
        .opt_non_null("privileged")
        .and_then(|(n, p)| privileged(cx, n, &p))
        .unwrap_or(false);
    let image_pull_policy = f
        .opt_non_null("imagePullPolicy")
        .and_then(|(n, p)| pull_policy(cx, n, &p));
    f.unhonoured(
        cx,
        "terminationMessagePath",
        "drover shows a finished container's logs instead (drover logs)",
    );
    f.unhonoured(
        cx,
        "capabilities",
        "drover does not add or drop Linux capabilities",
    );
    f.finish(cx);
    let image = image?;
    // The default is left implicit, so that saying it changes nothing in the normalised form.
    let image_pull_policy = image_pull_policy.filter(|p| *p != PullPolicy::default_for(&image));
    Some((
        Container {
            name: name?,
            image,
            command,
            working_dir,
            ports,
            env,
            cpu,
            memory,
            volume_mounts,
            liveness_probe,
            image_pull_policy,
            privileged,
            lifecycle,
            image_id: None,
        },
        n.pos,
        path,
    ))
}

/// A container's image: a non-empty name without whitespace.
fn image(cx: &mut Cx, n: &Node, p: &str) -> Option<String> {
    let s = non_empty_string(cx, n, p)?;
    if s.chars().any(char::is_whitespace) {
        cx.err(n.pos, p, format!("image `{s}` contains whitespace"));
        return None;
    }
    Some(s)
}

/// A container's `privileged`: `true` only where drover.toml allows it.
fn privileged(cx: &mut Cx, n: &Node, p: &str) -> Option<bool> {
    let v = boolean(cx, n, p)?;
    if v && !cx.allow_privileged {
        cx.err(
            n.pos,
            p,
            "privileged containers are forbidden: set `allow_privileged = true` in \
             drover.toml to allow them (as the API server's --allow_privileged)",
        );
        return None;
    }
    Some(v)
}

/// v1beta1's names, and from v0.10.0 the short ones (`Always`, as examples/phabricator wrote).
fn pull_policy(cx: &mut Cx, n: &Node, path: &str) -> Option<PullPolicy> {
    let s = string(cx, n, path)?;
    match s.as_str() {
        "PullAlways" | "Always" => Some(PullPolicy::PullAlways),
        "PullIfNotPresent" | "IfNotPresent" => Some(PullPolicy::PullIfNotPresent),
        "PullNever" | "Never" => Some(PullPolicy::PullNever),
        _ => {
            let allowed = [
                "PullAlways",
                "PullIfNotPresent",
                "PullNever",
                "Always",
                "IfNotPresent",
                "Never",
            ];
            let hint = nearest(&s, &allowed)
                .map(|a| format!("; did you mean `{a}`?"))
                .unwrap_or_default();
            cx.err(
                n.pos,
                path,
                format!("`{s}` is not one of {}{hint}", allowed.join(", ")),
            );
            None
        }
    }
}

fn port(
    cx: &mut Cx,
    n: &Node,
    path: String,
    refs: &mut ContainerRefs,
    names: &mut Vec<(String, Pos, String)>,
) -> Option<Port> {
    let mut f = fields(cx, n, &path)?;
    let name = f.opt_non_null("name").and_then(|(n, p)| match &n.value {
        // An empty name is no name.
        Value::Str(s) if s.is_empty() => None,
        _ => {
            let s = dns_label(cx, n, &p)?;
            names.push((s.clone(), n.pos, p));
            Some(s)
        }
    });
    let container_port = f.req(cx, "containerPort").and_then(|(n, p)| {
        if n.value == Value::Int(0) {
            cx.err(n.pos, &p, "required: a port number 1-65535");
            return None;
        }
        port_number(cx, n, &p)
    });
    // 0 means no host port.
    let host_port = f.opt_non_null("hostPort").and_then(|(n, p)| {
        if n.value == Value::Int(0) {
            return None;
        }
        Some((port_number(cx, n, &p), n.pos, p))
    });
    let protocol = f
        .opt_non_null("protocol")
        .map(|(n, p)| self::protocol(cx, n, &p))
        .unwrap_or(Some(Protocol::TCP));
    let host_ip = f.opt_non_null("hostIP").and_then(|(n, p)| {
        let s = string(cx, n, &p)?;
        if s.is_empty() {
            return None;
        }
        if s.parse::<std::net::IpAddr>().is_err() {
            cx.unsupported(
                n.pos,
                &p,
                &format!(
                    "a hostIP that is not an IP address (`{s}`; Kubernetes v0.8.0 did not check it)"
                ),
                "Docker publishes on an IP address of the minion: give one, or leave hostIP out",
            );
            return None;
        }
        Some(s)
    });
    f.finish(cx);
    let protocol = protocol?;
    let host_port = match host_port {
        Some((Some(hp), pos, p)) => {
            refs.host_ports.push((hp, pos, p));
            Some(hp)
        }
        Some((None, _, _)) => return None,
        None => None,
    };
    Some(Port {
        name,
        container_port: container_port?,
        host_port,
        protocol,
        host_ip,
    })
}

fn env_var(cx: &mut Cx, n: &Node, path: String) -> Option<EnvVar> {
    let mut f = fields(cx, n, &path)?;
    // `key` is the deprecated alias, used when `name` is empty.
    let named = f
        .opt_non_null("name")
        .filter(|(n, _)| !matches!(&n.value, Value::Str(s) if s.is_empty()));
    let key = f.opt_non_null("key");
    let name = match named.or(key) {
        None => {
            cx.err(f.pos, &join(&path, "name"), "missing required field");
            None
        }
        Some((n, p)) => string(cx, n, &p).and_then(|s| {
            if !is_c_identifier(&s) {
                cx.err(
                    n.pos,
                    &p,
                    format!(
                        "`{s}` is not a valid environment variable name: a C identifier \
                         (letters, digits and '_', not starting with a digit)"
                    ),
                );
                return None;
            }
            Some(s)
        }),
    };
    let value = f
        .opt_non_null("value")
        .map(|(n, p)| string(cx, n, &p))
        .unwrap_or(Some(String::new()));
    f.finish(cx);
    Some(EnvVar {
        name: name?,
        value: value?,
    })
}

fn volume_mount(cx: &mut Cx, n: &Node, path: String) -> Option<(VolumeMount, Pos, String)> {
    let mut f = fields(cx, n, &path)?;
    let (name, name_pos, name_path) = match f.req(cx, "name") {
        Some((n, p)) => (string(cx, n, &p), n.pos, p),
        None => (None, n.pos, join(&path, "name")),
    };
    // `path` is the deprecated alias of `mountPath`.
    let given = f
        .opt_non_null("mountPath")
        .or_else(|| f.opt_non_null("path"));
    let mount_path = match given {
        None => {
            cx.err(f.pos, &join(&path, "mountPath"), "missing required field");
            None
        }
        Some((n, p)) => non_empty_string(cx, n, &p).and_then(|s| {
            if !s.starts_with('/') {
                cx.unsupported(
                    n.pos,
                    &p,
                    &format!("a relative mountPath (`{s}`)"),
                    "Docker mounts at absolute paths: give the full path in the container",
                );
                return None;
            }
            Some(s)
        }),
    };
    // Ignored by v0.8.0 itself.
    f.accept(&["mountType"]);
    let read_only = f
        .opt_non_null("readOnly")
        .map(|(n, p)| boolean(cx, n, &p))
        .unwrap_or(Some(false));
    f.finish(cx);
    Some((
        VolumeMount {
            name: name?,
            mount_path: mount_path?,
            read_only: read_only?,
        },
        name_pos,
        name_path,
    ))
}

/// A port of this container: by number, or by a name one of its ports has.
fn check_port(cx: &mut Cx, n: &Node, p: &str, ports: &[Port]) -> Option<PortRef> {
    let r = port_ref(cx, n, p)?;
    if let PortRef::Name(name) = &r {
        if !ports.iter().any(|pt| pt.name.as_deref() == Some(name)) {
            let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
            let hint = nearest(name, &names)
                .map(|a| format!("; did you mean `{a}`?"))
                .unwrap_or_default();
            cx.err(
                n.pos,
                p,
                format!("port `{name}` names no port of this container{hint}"),
            );
            return None;
        }
    }
    Some(r)
}

fn http_get(
    cx: &mut Cx,
    n: &Node,
    p: &str,
    ports: &[Port],
    path_required: bool,
) -> Option<HttpGetAction> {
    let mut h = fields(cx, n, p)?;
    let path = if path_required {
        h.req(cx, "path").and_then(|(n, p)| string(cx, n, &p))
    } else {
        h.opt_non_null("path")
            .map(|(n, p)| string(cx, n, &p))
            .unwrap_or(Some("/".into()))
    };
    let port = h
        .req(cx, "port")
        .and_then(|(n, p)| check_port(cx, n, &p, ports));
    let host = h
        .opt_non_null("host")
        .and_then(|(n, p)| string(cx, n, &p))
        .filter(|h| !h.is_empty());
    h.finish(cx);
    Some(HttpGetAction {
        path: path?,
        port: port?,
        host,
    })
}

fn exec_action(cx: &mut Cx, n: &Node, p: &str) -> Option<ExecAction> {
    let mut e = fields(cx, n, p)?;
    let command = e.req(cx, "command").map(|(n, p)| {
        let c = string_list(cx, n, &p);
        if c.is_empty() {
            cx.err(n.pos, &p, "exec command must not be empty");
        }
        c
    });
    e.finish(cx);
    Some(ExecAction { command: command? })
}

fn liveness_probe(cx: &mut Cx, n: &Node, path: &str, ports: &[Port]) -> Option<LivenessProbe> {
    let mut f = fields(cx, n, path)?;
    let http_get = f
        .opt_non_null("httpGet")
        .map(|(n, p)| http_get(cx, n, &p, ports, false));
    let tcp_socket = f.opt_non_null("tcpSocket").map(|(n, p)| {
        let mut t = fields(cx, n, &p)?;
        let port = t
            .req(cx, "port")
            .and_then(|(n, p)| check_port(cx, n, &p, ports));
        t.finish(cx);
        Some(TcpSocketAction { port: port? })
    });
    let exec = f.opt_non_null("exec").map(|(n, p)| exec_action(cx, n, &p));
    let initial_delay_seconds = f
        .opt_non_null("initialDelaySeconds")
        .and_then(|(n, p)| uint(cx, n, &p, 0, 86_400))
        .unwrap_or(0) as u32;
    let timeout_seconds = f
        .opt_non_null("timeoutSeconds")
        .and_then(|(n, p)| uint(cx, n, &p, 1, 3_600))
        .unwrap_or(1) as u32;
    f.finish(cx);
    let actions = [http_get.is_some(), tcp_socket.is_some(), exec.is_some()];
    match actions.iter().filter(|a| **a).count() {
        // v0.8.0 accepted a probe with no handler, which probed nothing.
        0 => {
            cx.warn(
                n.pos,
                path,
                "a livenessProbe with no httpGet, tcpSocket or exec probes nothing; ignored",
            );
            return None;
        }
        1 => {}
        _ => {
            cx.unsupported(
                n.pos,
                path,
                "a livenessProbe with several handlers",
                "give exactly one of httpGet, tcpSocket or exec",
            );
            return None;
        }
    }
    Some(LivenessProbe {
        http_get: http_get.flatten(),
        tcp_socket: tcp_socket.flatten(),
        exec: exec.flatten(),
        initial_delay_seconds,
        timeout_seconds,
    })
}

fn lifecycle(cx: &mut Cx, n: &Node, path: &str, ports: &[Port]) -> Option<Lifecycle> {
    let mut f = fields(cx, n, path)?;
    let handler = |cx: &mut Cx, f: &mut Fields, name: &'static str| {
        let (n, p) = f.opt_non_null(name)?;
        let mut h = fields(cx, n, &p)?;
        let exec = h.opt_non_null("exec").map(|(n, p)| exec_action(cx, n, &p));
        let http = h
            .opt_non_null("httpGet")
            .map(|(n, p)| http_get(cx, n, &p, ports, true));
        h.finish(cx);
        match (exec, http) {
            (Some(e), None) => Some(Handler {
                exec: Some(e?),
                http_get: None,
            }),
            (None, Some(h)) => Some(Handler {
                exec: None,
                http_get: Some(h?),
            }),
            _ => {
                cx.err(n.pos, &p, "give exactly one of exec or httpGet");
                None
            }
        }
    };
    let post_start = handler(cx, &mut f, "postStart");
    let pre_stop = handler(cx, &mut f, "preStop");
    f.finish(cx);
    if post_start.is_none() && pre_stop.is_none() {
        return None;
    }
    Some(Lifecycle {
        post_start,
        pre_stop,
    })
}

#[cfg(test)]
mod index_tests {
    use super::push_index;

    #[test]
    fn list_indices_are_written_in_decimal() {
        for i in [0usize, 7, 10, 99, 100, 12_345, usize::MAX] {
            let mut s = String::from("x[");
            push_index(&mut s, i);
            assert_eq!(s, format!("x[{i}"));
        }
    }
}
