//! Located tree -> validated, defaulted model objects. One pass that keeps going after an error,
//! so a file with five mistakes reports five diagnostics, each with line:column and field path.
//!
//! The known fields of each object are exactly the ones the decoder asks for; anything else in
//! the document is an unknown field, reported with the nearest known name.

use super::node::{Entry, Node, Pos, Value};
use super::{Diagnostic, ParsedObject};
use crate::model::*;
use std::collections::{BTreeMap, HashMap};

pub(super) struct Cx<'f> {
    pub file: &'f str,
    pub diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    pub fn err(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            path: path.to_string(),
            message: message.into(),
        });
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
struct Fields<'n> {
    path: String,
    pos: Pos,
    entries: &'n [Entry<'n>],
    known: Vec<&'static str>,
}

fn fields<'n>(cx: &mut Cx, node: &'n Node, path: &str) -> Option<Fields<'n>> {
    let Value::Object(entries) = &node.value else {
        cx.type_err(node, path, "an object");
        return None;
    };
    duplicate_fields(cx, entries, path);
    Some(Fields {
        path: path.to_string(),
        pos: node.pos,
        entries,
        known: Vec::new(),
    })
}

/// Reports every field given twice. Objects usually have a handful of fields, where a scan
/// beats hashing; past that, a map keeps hostile objects (100,000 keys) linear.
fn duplicate_fields(cx: &mut Cx, entries: &[Entry], path: &str) {
    const SCAN_UP_TO: usize = 16;
    let report = |cx: &mut Cx, e: &Entry, first: Pos| {
        cx.err(
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

impl<'n> Fields<'n> {
    fn opt(&mut self, name: &'static str) -> Option<(&'n Node<'n>, String)> {
        self.known.push(name);
        self.entries
            .iter()
            .find(|e| e.key == name)
            .map(|e| (&e.node, join(&self.path, name)))
    }

    /// Like `opt`, but treats an explicit `null` as absent (seeds and generators write them).
    fn opt_non_null(&mut self, name: &'static str) -> Option<(&'n Node<'n>, String)> {
        self.opt(name).filter(|(n, _)| n.value != Value::Null)
    }

    fn req(&mut self, cx: &mut Cx, name: &'static str) -> Option<(&'n Node<'n>, String)> {
        let found = self.opt_non_null(name);
        if found.is_none() {
            cx.err(self.pos, &join(&self.path, name), "missing required field");
        }
        found
    }

    fn finish(self, cx: &mut Cx) {
        for e in self.entries {
            if !self.known.contains(&&*e.key) {
                let hint = match nearest(&e.key, &self.known) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!("; known fields: {}", self.known.join(", ")),
                };
                cx.err(
                    e.key_pos,
                    &join(&self.path, &e.key),
                    format!("unknown field `{}`{hint}", e.key),
                );
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

fn uint(cx: &mut Cx, n: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let v = match n.value {
        Value::Int(v) => v,
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
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
    items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| {
            let mut p = String::with_capacity(path.len() + 4);
            p.push_str(path);
            p.push('[');
            p.push_str(&i.to_string());
            p.push(']');
            item(cx, it, p)
        })
        .collect()
}

fn string_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<String> {
    list(cx, n, path, |cx, n, p| string(cx, n, &p))
}

fn port_ref(cx: &mut Cx, n: &Node, path: &str) -> Option<PortRef> {
    match &n.value {
        Value::Str(s) if !s.is_empty() => Some(PortRef::Name(s.to_string())),
        Value::Int(_) | Value::BigInt(_) => port_number(cx, n, path).map(PortRef::Number),
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

/// Object ids and container names become parts of Docker container names.
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

fn name(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = string(cx, n, path)?;
    match check_name(&s) {
        Ok(()) => Some(s),
        Err(e) => {
            cx.err(n.pos, path, e);
            None
        }
    }
}

fn label_part_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn labels(cx: &mut Cx, n: &Node, path: &str) -> Labels {
    let Value::Object(entries) = &n.value else {
        cx.type_err(n, path, "an object of label names to values");
        return Labels::new();
    };
    let mut out = Labels::new();
    for e in entries {
        let p = join(path, &e.key);
        let (prefix, key_name) = e.key.rsplit_once('/').unwrap_or(("", &e.key));
        if key_name.is_empty()
            || key_name.len() > 63
            || prefix.len() > 253
            || !label_part_ok(key_name)
            || !label_part_ok(prefix)
        {
            cx.err(
                e.key_pos,
                &p,
                format!("`{}` is not a valid label name", e.key),
            );
            continue;
        }
        let Some(v) = string(cx, &e.node, &p) else {
            continue;
        };
        if v.len() > 63 || !label_part_ok(&v) {
            cx.err(
                e.node.pos,
                &p,
                format!("`{v}` is not a valid label value: at most 63 of letters, digits, '-', '.', '_'"),
            );
            continue;
        }
        if out.insert(e.key.to_string(), v).is_some() {
            cx.err(e.key_pos, &p, "duplicate label");
        }
    }
    out
}

fn selector(cx: &mut Cx, fields: &mut Fields, field: &'static str) -> (Labels, Option<Pos>) {
    match fields.req(cx, field) {
        Some((n, p)) => {
            let sel = labels(cx, n, &p);
            if sel.is_empty() && matches!(n.value, Value::Object(_)) {
                cx.err(
                    n.pos,
                    &p,
                    "must not be empty: an empty selector would match every pod",
                );
            }
            (sel, Some(n.pos))
        }
        None => (Labels::new(), None),
    }
}

// ---------------------------------------------------------------------------------------------
// objects

pub(super) fn document(cx: &mut Cx, mut root: Node) -> Vec<ParsedObject> {
    // `{"kind": "List", "items": [...]}` holds several objects in one file.
    if let Value::Object(entries) = &root.value {
        let is_list = entries
            .iter()
            .any(|e| e.key == "kind" && e.node.value == Value::Str("List".into()));
        if is_list {
            let Some(mut f) = fields(cx, &root, "") else {
                return Vec::new();
            };
            f.opt("kind");
            if let Some((n, p)) = f.opt("apiVersion") {
                api_version(cx, n, &p);
            }
            let items = f.req(cx, "items").map(|(_, p)| p);
            f.finish(cx);
            let Some(path) = items else {
                return Vec::new();
            };
            // Each item is decoded and then dropped, so the located tree of a large List
            // shrinks while its objects are made: both are never whole at once.
            let Value::Object(entries) = &mut root.value else {
                unreachable!("checked above")
            };
            let entry = entries
                .iter_mut()
                .find(|e| e.key == "items")
                .expect("required above");
            let items = std::mem::replace(&mut entry.node.value, Value::Null);
            let Value::Array(items) = items else {
                entry.node.value = items;
                let n = &entry.node;
                return list(cx, n, &path, |cx, it, p| object(cx, it, &p));
            };
            drop(root);
            return items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| object(cx, &item, &format!("{path}[{i}]")))
                .collect();
        }
    }
    object(cx, &root, "").into_iter().collect()
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

fn object(cx: &mut Cx, node: &Node, path: &str) -> Option<ParsedObject> {
    let mut f = fields(cx, node, path)?;
    let kind = f.req(cx, "kind").and_then(|(n, p)| {
        let s = string(cx, n, &p)?;
        let kind = Kind::parse(&s);
        if kind.is_none() {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            let hint = nearest(&s, &names)
                .map(|a| format!("; did you mean `{a}`?"))
                .unwrap_or_default();
            cx.err(
                n.pos,
                &p,
                format!(
                    "unknown kind `{s}`: expected one of {}{hint}",
                    names.join(", ")
                ),
            );
        }
        kind
    });
    if let Some((n, p)) = f.opt("apiVersion") {
        api_version(cx, n, &p);
    }
    let (id, id_pos) = match f.req(cx, "id") {
        Some((n, p)) => (name(cx, n, &p), n.pos),
        None => (None, f.pos),
    };
    let labels = f
        .opt("labels")
        .map(|(n, p)| labels(cx, n, &p))
        .unwrap_or_default();
    let Some(kind) = kind else {
        // Without a kind the other fields cannot be judged; the kind error says it all.
        return None;
    };
    let errors_before = cx.diags.len();
    let id = id.unwrap_or_default();
    let api_version = API_VERSION.to_string();
    let object = match kind {
        Kind::Pod => {
            let desired_state = f
                .req(cx, "desiredState")
                .map(|(n, p)| pod_state(cx, n, &p))
                .unwrap_or_default();
            let node_selector = f
                .opt("nodeSelector")
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
        Kind::Service => service(cx, &mut f, id, labels),
        Kind::Minion => {
            let resources = f
                .opt("resources")
                .map(|(n, p)| node_resources(cx, n, &p))
                .unwrap_or_default();
            Object::Minion(Minion {
                id,
                api_version,
                labels,
                resources,
            })
        }
    };
    f.finish(cx);
    (cx.diags.len() == errors_before).then_some(ParsedObject { object, id_pos })
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
    let (selector, _) = selector(cx, f, "selector");
    let session_affinity = f
        .opt_non_null("sessionAffinity")
        .and_then(|(n, p)| one_of(cx, n, &p, &["None", "ClientIP"]))
        .map(|s| match s {
            "ClientIP" => SessionAffinity::ClientIP,
            _ => SessionAffinity::None,
        })
        .unwrap_or_default();
    Object::Service(Service {
        id,
        api_version: API_VERSION.to_string(),
        labels,
        port,
        protocol,
        container_port,
        selector,
        session_affinity,
    })
}

fn protocol(cx: &mut Cx, n: &Node, path: &str) -> Option<Protocol> {
    one_of(cx, n, path, &["TCP", "UDP"]).map(|s| match s {
        "UDP" => Protocol::UDP,
        _ => Protocol::TCP,
    })
}

fn node_resources(cx: &mut Cx, n: &Node, path: &str) -> NodeResources {
    let Some(mut f) = fields(cx, n, path) else {
        return NodeResources::default();
    };
    let capacity = f.opt("capacity").and_then(|(n, p)| {
        let mut c = fields(cx, n, &p)?;
        let cpu = c
            .opt_non_null("cpu")
            .and_then(|(n, p)| uint(cx, n, &p, 1, u32::MAX as u64));
        let memory = c
            .opt_non_null("memory")
            .and_then(|(n, p)| uint(cx, n, &p, 1, i64::MAX as u64));
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
    let replicas = f
        .req(cx, "replicas")
        .and_then(|(n, p)| uint(cx, n, &p, 0, 100_000))
        .unwrap_or_default() as u32;
    let (replica_selector, _) = selector(cx, &mut f, "replicaSelector");
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
        .map(|(n, p)| pod_state(cx, n, &p))
        .unwrap_or_default();
    let (labels, labels_pos) = match f.opt("labels") {
        Some((n, p)) => (labels(cx, n, &p), n.pos),
        None => (Labels::new(), n.pos),
    };
    let node_selector = f
        .opt("nodeSelector")
        .map(|(n, p)| self::labels(cx, n, &p))
        .unwrap_or_default();
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

fn pod_state(cx: &mut Cx, n: &Node, path: &str) -> PodState {
    let Some(mut f) = fields(cx, n, path) else {
        return PodState::default();
    };
    let manifest = f
        .req(cx, "manifest")
        .map(|(n, p)| manifest(cx, n, &p))
        .unwrap_or_default();
    f.finish(cx);
    PodState { manifest }
}

/// Places inside a container that pod-level checks need to point at.
#[derive(Default)]
struct ContainerRefs {
    mounts: Vec<(String, Pos, String)>,
    host_ports: Vec<(u16, Protocol, Pos, String)>,
    port_names: Vec<(String, Pos, String)>,
}

fn manifest(cx: &mut Cx, n: &Node, path: &str) -> ContainerManifest {
    let Some(mut f) = fields(cx, n, path) else {
        return ContainerManifest::default();
    };
    if let Some((n, p)) = f.opt("version") {
        api_version(cx, n, &p);
    }
    if let Some((n, p)) = f.opt("id") {
        string(cx, n, &p);
    }
    let volumes: Vec<(Volume, Pos, String)> = f
        .opt_non_null("volumes")
        .map(|(n, p)| list(cx, n, &p, volume))
        .unwrap_or_default();
    let mut refs = ContainerRefs::default();
    let containers: Vec<(Container, Pos, String)> = match f.req(cx, "containers") {
        Some((n, p)) => {
            let cs = list(cx, n, &p, |cx, n, p| container(cx, n, p, &mut refs));
            if matches!(&n.value, Value::Array(a) if a.is_empty()) {
                cx.err(n.pos, &p, "a pod needs at least one container");
            }
            cs
        }
        None => Vec::new(),
    };
    let restart_policy = f
        .opt_non_null("restartPolicy")
        .map(|(n, p)| restart_policy(cx, n, &p))
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
    unique_names(
        cx,
        refs.port_names.iter().map(|(n, pos, p)| (n, *pos, p)),
        "port",
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
    let mut host_ports: HashMap<(u16, Protocol), Pos> = HashMap::new();
    for (port, proto, pos, p) in &refs.host_ports {
        if let Some(first) = host_ports.insert((*port, *proto), *pos) {
            cx.err(
                *pos,
                p,
                format!(
                    "hostPort {port}/{} is already used in this pod at {first}",
                    proto.as_str()
                ),
            );
        }
    }
    ContainerManifest {
        volumes: volumes.into_iter().map(|(v, _, _)| v).collect(),
        containers: containers.into_iter().map(|(c, _, _)| c).collect(),
        restart_policy,
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
                "conflicting restart policies {}: give exactly one",
                names.join(" and ")
            ),
        );
    }
    given.first().map(|(_, p)| *p).unwrap_or_default()
}

fn volume(cx: &mut Cx, n: &Node, path: String) -> Option<(Volume, Pos, String)> {
    let mut f = fields(cx, n, &path)?;
    let (name, name_pos, name_path) = match f.req(cx, "name") {
        Some((n, p)) => (self::name(cx, n, &p), n.pos, p),
        None => (None, n.pos, join(&path, "name")),
    };
    // No source at all, `null` or `{}` all mean emptyDir, as in v1beta1.
    let source = match f.opt_non_null("source") {
        None => Some(VolumeSource::EmptyDir {}),
        Some((n, p)) => volume_source(cx, n, &p),
    };
    f.finish(cx);
    Some((
        Volume {
            name: name?,
            source: source?,
        },
        name_pos,
        name_path,
    ))
}

fn volume_source(cx: &mut Cx, n: &Node, path: &str) -> Option<VolumeSource> {
    let mut f = fields(cx, n, path)?;
    let empty = f.opt_non_null("emptyDir");
    let host = f.opt_non_null("hostDir");
    f.finish(cx);
    match (empty, host) {
        (Some(_), Some(_)) => {
            cx.err(
                n.pos,
                path,
                "give one volume source, not both emptyDir and hostDir",
            );
            None
        }
        (Some((n, p)), None) => {
            empty_object(cx, n, &p);
            Some(VolumeSource::EmptyDir {})
        }
        (None, Some((n, p))) => {
            let mut h = fields(cx, n, &p)?;
            let dir = h.req(cx, "path").and_then(|(n, p)| {
                let s = non_empty_string(cx, n, &p)?;
                if !s.starts_with('/') {
                    cx.err(n.pos, &p, format!("hostDir path `{s}` must be absolute"));
                    return None;
                }
                Some(s)
            });
            h.finish(cx);
            Some(VolumeSource::HostDir { path: dir? })
        }
        (None, None) => Some(VolumeSource::EmptyDir {}),
    }
}

fn container(
    cx: &mut Cx,
    n: &Node,
    path: String,
    refs: &mut ContainerRefs,
) -> Option<(Container, Pos, String)> {
    let mut f = fields(cx, n, &path)?;
    let name = f.req(cx, "name").and_then(|(n, p)| self::name(cx, n, &p));
    let image = f.req(cx, "image").and_then(|(n, p)| {
        let s = non_empty_string(cx, n, &p)?;
        if s.chars().any(char::is_whitespace) {
            cx.err(n.pos, &p, format!("image `{s}` contains whitespace"));
            return None;
        }
        Some(s)
    });
    let command = f
        .opt_non_null("command")
        .map(|(n, p)| string_list(cx, n, &p))
        .unwrap_or_default();
    let working_dir = f
        .opt_non_null("workingDir")
        .and_then(|(n, p)| non_empty_string(cx, n, &p));
    let ports: Vec<Port> = f
        .opt_non_null("ports")
        .map(|(n, p)| list(cx, n, &p, |cx, n, p| port(cx, n, p, refs)))
        .unwrap_or_default();
    let env = f
        .opt_non_null("env")
        .map(|(n, p)| list(cx, n, &p, env_var))
        .unwrap_or_default();
    let cpu = f
        .opt_non_null("cpu")
        .and_then(|(n, p)| uint(cx, n, &p, 0, u32::MAX as u64))
        .unwrap_or(0);
    let memory = f
        .opt_non_null("memory")
        .and_then(|(n, p)| uint(cx, n, &p, 0, i64::MAX as u64))
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
    f.finish(cx);
    Some((
        Container {
            name: name?,
            image: image?,
            command,
            working_dir,
            ports,
            env,
            cpu,
            memory,
            volume_mounts,
            liveness_probe,
        },
        n.pos,
        path,
    ))
}

fn port(cx: &mut Cx, n: &Node, path: String, refs: &mut ContainerRefs) -> Option<Port> {
    let mut f = fields(cx, n, &path)?;
    let name = f.opt_non_null("name").and_then(|(n, p)| {
        let s = self::name(cx, n, &p)?;
        refs.port_names.push((s.clone(), n.pos, p));
        Some(s)
    });
    let container_port = f
        .req(cx, "containerPort")
        .and_then(|(n, p)| port_number(cx, n, &p));
    let host_port = f
        .opt_non_null("hostPort")
        .map(|(n, p)| (port_number(cx, n, &p), n.pos, p));
    let protocol = f
        .opt_non_null("protocol")
        .map(|(n, p)| self::protocol(cx, n, &p))
        .unwrap_or(Some(Protocol::TCP));
    let host_ip = f.opt_non_null("hostIP").and_then(|(n, p)| {
        let s = string(cx, n, &p)?;
        if s.parse::<std::net::IpAddr>().is_err() {
            cx.err(n.pos, &p, format!("`{s}` is not an IP address"));
            return None;
        }
        Some(s)
    });
    f.finish(cx);
    let protocol = protocol?;
    let host_port = match host_port {
        Some((Some(hp), pos, p)) => {
            refs.host_ports.push((hp, protocol, pos, p));
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
    let name = f.req(cx, "name").and_then(|(n, p)| {
        let s = string(cx, n, &p)?;
        let valid = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            cx.err(
                n.pos,
                &p,
                format!("`{s}` is not a valid environment variable name"),
            );
            return None;
        }
        Some(s)
    });
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
    let mount_path = f.req(cx, "mountPath").and_then(|(n, p)| {
        let s = non_empty_string(cx, n, &p)?;
        if !s.starts_with('/') {
            cx.err(n.pos, &p, format!("mountPath `{s}` must be absolute"));
            return None;
        }
        Some(s)
    });
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

fn liveness_probe(cx: &mut Cx, n: &Node, path: &str, ports: &[Port]) -> Option<LivenessProbe> {
    let mut f = fields(cx, n, path)?;
    let check_port = |cx: &mut Cx, n: &Node, p: &str| {
        let r = port_ref(cx, n, p)?;
        if let PortRef::Name(name) = &r {
            if !ports.iter().any(|pt| pt.name.as_deref() == Some(name)) {
                cx.err(
                    n.pos,
                    p,
                    format!("port `{name}` names no port of this container"),
                );
                return None;
            }
        }
        Some(r)
    };
    let http_get = f.opt_non_null("httpGet").map(|(n, p)| {
        let mut h = fields(cx, n, &p)?;
        let path = h
            .opt_non_null("path")
            .map(|(n, p)| string(cx, n, &p))
            .unwrap_or(Some("/".into()));
        let port = h.req(cx, "port").and_then(|(n, p)| check_port(cx, n, &p));
        let host = h.opt_non_null("host").and_then(|(n, p)| string(cx, n, &p));
        h.finish(cx);
        Some(HttpGetAction {
            path: path?,
            port: port?,
            host,
        })
    });
    let tcp_socket = f.opt_non_null("tcpSocket").map(|(n, p)| {
        let mut t = fields(cx, n, &p)?;
        let port = t.req(cx, "port").and_then(|(n, p)| check_port(cx, n, &p));
        t.finish(cx);
        Some(TcpSocketAction { port: port? })
    });
    let exec = f.opt_non_null("exec").map(|(n, p)| {
        let mut e = fields(cx, n, &p)?;
        let command = e.req(cx, "command").map(|(n, p)| {
            let c = string_list(cx, n, &p);
            if c.is_empty() {
                cx.err(n.pos, &p, "exec command must not be empty");
            }
            c
        });
        e.finish(cx);
        Some(ExecAction { command: command? })
    });
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
    if actions.iter().filter(|a| **a).count() != 1 {
        cx.err(
            n.pos,
            path,
            "give exactly one of httpGet, tcpSocket or exec",
        );
        return None;
    }
    Some(LivenessProbe {
        http_get: http_get.flatten(),
        tcp_socket: tcp_socket.flatten(),
        exec: exec.flatten(),
        initial_delay_seconds,
        timeout_seconds,
    })
}
