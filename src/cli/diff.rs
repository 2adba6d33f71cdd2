//! `drover diff`: the source against what the store knows, in two parts.
//!
//! Objects: each desired object against the one last applied, as a unified diff of normalised
//! JSON (or a JSON list of changes). Pods: the plan `apply` would run against the pods and
//! minions last observed — a container removed by hand, a pod waiting for room, a replica
//! count not reached. `--live` observes every minion first and keeps what it saw in the store
//! (when no other drover holds the store; a running daemon keeps it current itself). Without
//! `--live`, diff only reads and never takes the lock.

use super::{
    load_listed_each, paint, plural, report_load_error, Context, BOLD, CYAN, EXIT_DIFFERENCES,
    EXIT_OK, GREEN, RED,
};
use crate::{DiffOutput, SourceArgs};
use drover::model::{DesiredState, ObjectKey, Origin};
use drover::plan::objects::{
    changed_fields, display_text, unified_diff, ChangeAction, MaskKey, Summary,
};
use drover::plan::observed::{from_records, Observation};
use drover::plan::pods::{fail_half_made, Action};
use drover::store::Index;
use drover::store::{Section, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Change {
    action: ChangeAction,
    kind: String,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<Origin>,
    /// Leaf fields that differ (changes only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<String>,
    /// Builds of delivered images that change (`image myapp:latest sha256:ab12… → sha256:cd34…`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    diff: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    in_sync: bool,
    source: String,
    /// `null` for a directory source: every key is always there, for scripts.
    commit: Option<String>,
    summary: Summary,
    changes: &'a [Change],
    /// Absent when nothing has been observed yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pods: Option<&'a PodReport>,
}

/// The pod-level part: what `apply` would do now.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodReport {
    /// Whether the minions were observed by this command (`--live`) or read from the store.
    live: bool,
    minions: usize,
    minions_not_ready: Vec<String>,
    pods: usize,
    actions: Vec<PodAction>,
    /// Pods that cannot be placed, with the reason.
    unschedulable: Vec<PodReason>,
    /// Pods whose object left the source but was never this project's: apply leaves them.
    left_alone: Vec<PodReason>,
}

/// A pod and why (one shape wherever a pod comes with a reason).
#[derive(Serialize)]
struct PodReason {
    pod: String,
    reason: String,
}

fn pod_reasons(pairs: Vec<(String, String)>) -> Vec<PodReason> {
    pairs
        .into_iter()
        .map(|(pod, reason)| PodReason { pod, reason })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodAction {
    action: &'static str,
    pod: String,
    minion: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl PodReport {
    fn in_sync(&self) -> bool {
        self.actions.is_empty() && self.unschedulable.is_empty()
    }
}

fn pod_report(desired: &DesiredState, seen: &Observation, index: &Index, live: bool) -> PodReport {
    let inventory = drover::plan::inventory::Inventory::from_index(index);
    let plan = drover::plan::pods::plan_with(
        desired,
        &seen.pods,
        &seen.minions,
        drover::plan::pods::Prune::Owned(&inventory),
    );
    PodReport {
        live,
        minions: seen.minions.len(),
        minions_not_ready: seen
            .minions
            .iter()
            .filter(|m| !m.ready)
            .map(|m| m.name.clone())
            .collect(),
        pods: seen.pods.len(),
        actions: plan
            .actions
            .into_iter()
            .map(|a| match a {
                Action::CreatePod { minion, pod } => PodAction {
                    action: "create",
                    pod: pod.id,
                    minion,
                    reason: None,
                },
                Action::DeletePod {
                    minion, id, reason, ..
                } => PodAction {
                    action: "delete",
                    pod: id,
                    minion,
                    reason: Some(reason),
                },
                Action::DeleteVolumes { minion, pod, .. } => PodAction {
                    action: "deleteVolumes",
                    pod,
                    minion,
                    reason: Some("the pod is gone".into()),
                },
            })
            .collect(),
        unschedulable: pod_reasons(plan.unschedulable),
        left_alone: pod_reasons(plan.unowned),
    }
}

/// The observation the pod part is planned against: fresh from the minions with `--live`
/// (kept in the store when the lock is free), else the store's.
fn observation(
    cx: &Context,
    store: &Store,
    index: &Index,
    desired: &DesiredState,
    live: bool,
) -> Result<Observation, String> {
    let stored = store
        .read_section(index, Section::Observed)
        .map_err(|e| e.to_string())?;
    let stored = from_records(&stored).map_err(|e| e.to_string())?;
    if !live {
        return Ok(stored);
    }
    // Taken before looking: while it is held no drover makes pods, so what looks half-made is.
    let lock = match store.lock("diff --live", Duration::ZERO) {
        Ok(lock) => Some(lock),
        Err(StoreError::Locked { holder, .. }) => {
            eprintln!("drover: note: the store is held by {holder}; what is seen is not kept");
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    let minions = super::minions(cx, Some(desired))?;
    let (mut seen, errors) = super::runtime().block_on(drover::reconcile::observe_all(
        &minions,
        &drover::reconcile::project::adoptable(index),
    ));
    for e in &errors {
        eprintln!("drover: warning: {e}; using the pods last seen there");
    }
    if lock.is_some() {
        fail_half_made(&mut seen.pods);
    }
    let seen = seen.or_last_seen(&stored);
    if let Some(lock) = &lock {
        drover::reconcile::project::record_observation(store, lock, &seen)
            .map_err(|e| e.to_string())?;
    }
    Ok(seen)
}

pub fn run(
    cx: &Context,
    args: &SourceArgs,
    output: (DiffOutput, usize),
    live: bool,
    out: Option<&std::path::Path>,
) -> ExitCode {
    run_attempt(cx, args, output, (live, out), 5)
}

fn run_attempt(
    cx: &Context,
    args: &SourceArgs,
    output: (DiffOutput, usize),
    (live, out): (bool, Option<&std::path::Path>),
    attempts: u32,
) -> ExitCode {
    let spec = cx.source_spec(args);
    let store = match cx.store() {
        Ok(s) => s,
        Err(e) => return super::fail(&e),
    };
    let keep_all = out.is_some();
    let (loaded, index, verified) =
        match read_source_and_store(cx, args, &spec, &store, (live, keep_all)) {
            Ok(done) => done,
            Err(code) => return code,
        };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => return report_load_error(e),
    };
    if let Err(e) = verified {
        // A writer's commit (a daemon's) superseded what the index named while it was read:
        // everything again, from the new index.
        let moved = store
            .read_index()
            .is_ok_and(|now| now.resource_version != index.resource_version);
        if moved && attempts > 1 {
            return run_attempt(cx, args, output, (live, out), attempts - 1);
        }
        return super::fail(&e);
    }
    let commit = loaded.commit;
    let mut compared = loaded.objects.objects;
    let desired = DesiredState {
        objects: compared
            .iter_mut()
            .filter_map(|(k, (c, origin))| Some((k.clone(), (*c.object.take()?, origin.clone()))))
            .collect(),
    };
    let mask_key = match mask_key_for_diff(&store) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let changes = match gather(&store, &index, &compared, &mask_key) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let summary = Summary::of(changes.iter().map(|c| &c.action));
    let pods = match observation(cx, &store, &index, &desired, live) {
        Ok(seen) if seen.is_empty() => None,
        Ok(seen) => Some(pod_report(&desired, &seen, &index, live)),
        Err(e) => return super::fail(&e),
    };
    let in_sync = summary.is_empty() && pods.as_ref().is_none_or(PodReport::in_sync);
    let report = Report {
        in_sync,
        source: spec.describe(),
        commit,
        summary,
        changes: &changes,
        pods: pods.as_ref(),
    };
    if let Some(path) = out {
        if let Err(e) = save_plan(cx, path, &report, &desired, index.resource_version) {
            return super::fail(&e);
        }
    }
    if let Err(code) = write_report(output, &report, compared.len()) {
        return code;
    }
    // The process ends next: freeing tens of thousands of entries one by one would cost
    // more than printing them did.
    std::mem::forget((compared, desired, index));
    ExitCode::from(if in_sync { EXIT_OK } else { EXIT_DIFFERENCES })
}

/// What `read_source_and_store` gives: the source read (each object compared with the
/// index), the index, and whether the store's objects matched their hashes.
type Strands = (
    Result<drover::reconcile::project::LoadedEach<Compared>, super::LoadError>,
    std::sync::Arc<Index>,
    Result<(), StoreError>,
);

/// Reads the source and the store in two strands: the index is read and then every object
/// it names checked against its hash, on a thread of its own, while this one lists the source
/// and, once the index is there, reads it (each object compared with the index as it is
/// decoded). The check starts as soon as the index is read, whichever of the two is done
/// first. An error is the exit code, already told.
fn read_source_and_store(
    cx: &Context,
    args: &SourceArgs,
    spec: &drover::source::SourceSpec,
    store: &Store,
    (live, keep_all): (bool, bool),
) -> Result<Strands, ExitCode> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::scope(|s| {
        let checked = s.spawn(|| {
            let index = match store.read_index() {
                Ok(index) => std::sync::Arc::new(index),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok(index.clone()));
            store.verify_objects(&index)
        });
        let listing = drover::source::list(spec, &cx.settings.git_options(&cx.state_dir));
        let index = rx.recv().expect("the index's strand sends before it ends");
        let listing = match listing {
            Ok(l) => l,
            Err(e) => return Err(report_load_error(super::LoadError::Source(e))),
        };
        let index = match index {
            Ok(i) => i,
            Err(e) => {
                // The source's own errors come first, as they always have.
                if let Err(e) = load_listed_each(cx, listing, args.validate, |_, _| ()) {
                    return Err(report_load_error(e));
                }
                return Err(super::fail(&e));
            }
        };
        // The pod part plans against the desired objects themselves; it runs only when
        // something was observed (or is about to be). Otherwise diff keeps of each object only
        // whether it differs from the applied copy, and the text of those that do.
        let keep_objects = live || keep_all || !index.observed.is_empty();
        let loaded = load_listed_each(cx, listing, args.validate, |key, object| Compared {
            after: differs(key, &object, &index),
            object: keep_objects.then(|| Box::new(object)),
        });
        let verified = checked.join().expect("the store's check does not panic");
        Ok((loaded, index, verified))
    })
}

/// Writes the plan `report` shows to `path` (mode 0600: the objects hold what the manifests
/// say, secrets included), with the store revision and source it was made against.
fn save_plan(
    cx: &Context,
    path: &std::path::Path,
    report: &Report,
    desired: &DesiredState,
    store_revision: u64,
) -> Result<(), String> {
    use drover::plan::saved::{saved_objects, source_digest, SavedPlan, FORMAT};
    let shown = serde_json::to_value(report).map_err(|e| e.to_string())?;
    let plan = SavedPlan {
        drover_plan: FORMAT,
        project: cx.project.clone(),
        source: report.source.clone(),
        commit: report.commit.clone(),
        source_digest: source_digest(desired),
        store_revision,
        changes: shown["changes"].clone(),
        pods: shown.get("pods").cloned(),
        objects: saved_objects(desired),
    };
    let mut text = serde_json::to_vec_pretty(&plan).map_err(|e| e.to_string())?;
    text.push(b'\n');
    // Written beside itself (a temporary file renamed over it): its folder, even for `plan.json`.
    std::path::absolute(path)
        .map_err(|e| e.to_string())
        .and_then(|p| drover::files::write_private_file(&p, &text).map_err(|e| e.to_string()))
        .map_err(|e| format!("saving the plan to {}: {e}", path.display()))?;
    eprintln!(
        "drover: plan saved to {} (store revision {store_revision}{}); apply it with `drover apply --plan {}`",
        path.display(),
        report
            .commit
            .as_deref()
            .map(|c| format!(", commit {}", &c[..c.len().min(12)]))
            .unwrap_or_default(),
        path.display()
    );
    Ok(())
}

/// The state directory's mask key when there is one; else one for this run only (diff
/// writes nothing), which still shows a changed secret as a changed fingerprint.
fn mask_key_for_diff(store: &Store) -> Result<MaskKey, ExitCode> {
    match store.mask_key() {
        Ok(Some(k)) => Ok(MaskKey::new(k)),
        Ok(None) => match drover::store::random_key() {
            Ok(k) => Ok(MaskKey::new(k)),
            Err(e) => Err(super::fail(&e)),
        },
        Err(e) => Err(super::fail(&e)),
    }
}

/// Writes the report to stdout as `output` asks (`objects`: how many the source holds). A
/// closed pipe (`drover diff | head`) is not an error worth a message.
fn write_report(
    (output, max_lines): (DiffOutput, usize),
    report: &Report,
    objects: usize,
) -> Result<(), ExitCode> {
    // Buffered: stdout alone writes each line with its own system call.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let written = match output {
        DiffOutput::Markdown => render_markdown(&mut out, report, objects, max_lines),
        DiffOutput::Json => serde_json::to_writer_pretty(&mut out, report)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out)),
        DiffOutput::Text => {
            let color = super::use_color(std::io::stdout().is_terminal());
            let pods_in_sync = report.pods.is_none_or(PodReport::in_sync);
            render_text(
                &mut out,
                report.changes,
                report.summary,
                objects,
                pods_in_sync,
                color,
            )
            .and_then(|_| match report.pods {
                Some(p) => render_pods(&mut out, p, color),
                None => Ok(()),
            })
        }
    };
    if let Err(e) = written.and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(super::fail(&e));
        }
    }
    Ok(())
}

/// What diff keeps of one desired object.
struct Compared {
    /// Its normalised JSON when it differs from the applied copy or there is none; `None`
    /// when it is the same.
    after: Option<String>,
    /// The object, when the pod part needs it (boxed: an absent one then costs a pointer).
    object: Option<Box<drover::model::Object>>,
}

thread_local! {
    /// Each thread's buffer for normalised texts: equal objects are hashed without a text each.
    static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The object's normalised JSON when it differs from the copy `index` records as applied
/// (compared by content hash, the SHA-256 the store keeps), or when there is none.
fn differs(key: &ObjectKey, object: &drover::model::Object, index: &Index) -> Option<String> {
    TEXT.with_borrow_mut(|text| {
        text.clear();
        object.write_normalized_json(text);
        let same = index
            .applied
            .get(key)
            .is_some_and(|e| drover::store::hash_matches(text, &e.hash));
        (!same).then(|| String::from_utf8(text.clone()).expect("serde_json writes UTF-8"))
    })
}

/// The object part of `apply --dry-run`: one line per object apply would record differently
/// (`+ Kind/id (file)`, `~ Kind/id: changed.fields`, `- Kind/id`). Reads the store, verified.
pub(crate) fn object_change_lines(
    store: &Store,
    desired: &DesiredState,
) -> Result<Vec<String>, String> {
    let index = store.verify().map_err(|e| e.to_string())?;
    let mask_key = match store.mask_key().map_err(|e| e.to_string())? {
        Some(k) => MaskKey::new(k),
        None => MaskKey::new(drover::store::random_key().map_err(|e| e.to_string())?),
    };
    let objects: Vec<_> = desired.objects.iter().collect();
    let differ = drover::par::map(&objects, |(key, (object, _))| differs(key, object, &index));
    let compared = objects
        .into_iter()
        .zip(differ)
        .map(|((key, (_, origin)), after)| {
            let c = Compared {
                after,
                object: None,
            };
            (key.clone(), (c, origin.clone()))
        })
        .collect();
    let changes = gather(store, &index, &compared, &mask_key).map_err(|e| e.to_string())?;
    Ok(changes
        .iter()
        .map(|c| {
            let mark = match c.action {
                ChangeAction::Create => "+",
                ChangeAction::Change => "~",
                ChangeAction::Delete => "-",
            };
            let mut line = format!("{mark} {}/{}", c.kind, c.id);
            if !c.fields.is_empty() {
                line.push_str(&format!(": {}", c.fields.join(", ")));
            } else if let (ChangeAction::Create, Some(o)) = (&c.action, &c.origin) {
                line.push_str(&format!(" ({o})"));
            }
            line
        })
        .collect())
}

/// What differs between the compared objects and the applied section of the index: creates
/// and changes as `differs` found them, deletes for applied objects the source no longer has.
fn object_actions(
    compared: &BTreeMap<ObjectKey, (Compared, Origin)>,
    index: &Index,
) -> Vec<(ObjectKey, ChangeAction)> {
    // Both maps are in key order: one walk through the two, no lookups.
    let mut changes = Vec::new();
    let mut desired = compared.iter().peekable();
    let mut applied = index.applied.keys().peekable();
    loop {
        let order = match (desired.peek(), applied.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((d, _)), Some(a)) => (*d).cmp(*a),
        };
        match order {
            std::cmp::Ordering::Less => {
                let (key, _) = desired.next().expect("peeked");
                changes.push((key.clone(), ChangeAction::Create));
            }
            std::cmp::Ordering::Greater => {
                let key = applied.next().expect("peeked");
                changes.push((key.clone(), ChangeAction::Delete));
            }
            std::cmp::Ordering::Equal => {
                let (key, (c, _)) = desired.next().expect("peeked");
                applied.next();
                if c.after.is_some() {
                    changes.push((key.clone(), ChangeAction::Change));
                }
            }
        }
    }
    changes
}

/// Compares the desired objects with the store's index, and makes text (stored and desired)
/// only for the objects that differ.
fn gather(
    store: &Store,
    index: &Index,
    compared: &BTreeMap<ObjectKey, (Compared, Origin)>,
    mask_key: &MaskKey,
) -> Result<Vec<Change>, drover::store::StoreError> {
    // Each change read from the store and rendered on its own (several threads).
    let actions = object_actions(compared, index);
    drover::par::map(&actions, |(key, action)| {
        let (key, action) = (key, *action);
        let before = match action {
            ChangeAction::Create => String::new(),
            _ => store.read_object(Section::Applied, key, &index.applied[key])?,
        };
        let (after, origin) = match compared.get(key) {
            Some((c, origin)) => (c.after.as_deref().unwrap_or_default(), Some(origin.clone())),
            None => ("", None),
        };
        let (fields, images) = if action == ChangeAction::Change {
            match (serde_json::from_str(&before), serde_json::from_str(after)) {
                (Ok(a), Ok(b)) => (changed_fields(&a, &b), image_changes(&a, &b)),
                _ => (Vec::new(), Vec::new()),
            }
        } else {
            (Vec::new(), Vec::new())
        };
        let old_header = match action {
            ChangeAction::Create => "/dev/null".to_string(),
            _ => format!(
                "{key} (applied, rv {})",
                index.applied[key].resource_version
            ),
        };
        let new_header = match (&action, &origin) {
            (ChangeAction::Delete, _) => "/dev/null".to_string(),
            (_, Some(o)) => format!("{key} ({o})"),
            (_, None) => key.to_string(),
        };
        let diff = unified_diff(
            &display_text(&before, mask_key),
            &display_text(after, mask_key),
            &old_header,
            &new_header,
        );
        Ok(Change {
            action,
            kind: key.kind.to_string(),
            id: key.id.clone(),
            origin,
            fields,
            images,
            diff,
        })
    })
    .into_iter()
    .collect()
}

/// The delivered images whose build changes between two normalised objects, one line each
/// (`image myapp:latest sha256:ab12… → sha256:cd34…`), containers matched by name.
fn image_changes(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    fn containers(v: &serde_json::Value, out: &mut BTreeMap<String, (String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                if let (Some(name), Some(image)) = (map.get("name"), map.get("image")) {
                    let id = map.get("imageId").and_then(|i| i.as_str()).unwrap_or("");
                    if let (Some(name), Some(image)) = (name.as_str(), image.as_str()) {
                        out.insert(name.to_string(), (image.to_string(), id.to_string()));
                    }
                }
                map.values().for_each(|v| containers(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| containers(v, out)),
            _ => {}
        }
    }
    let build = |id: &str| {
        if id.is_empty() {
            "(not delivered by drover)".to_string()
        } else {
            format!("sha256:{}…", drover::images::short_id(id))
        }
    };
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    containers(before, &mut old);
    containers(after, &mut new);
    new.iter()
        .filter_map(|(name, (image, id))| {
            let (_, old_id) = old.get(name)?;
            (old_id != id && !id.is_empty()).then(|| {
                format!(
                    "image {} {} → {}",
                    drover::image_pins::reference(image),
                    build(old_id),
                    build(id)
                )
            })
        })
        .collect()
}

fn render_text(
    out: &mut impl Write,
    changes: &[Change],
    summary: Summary,
    total: usize,
    pods_in_sync: bool,
    color: bool,
) -> std::io::Result<()> {
    for c in changes {
        let (mark, code) = match c.action {
            ChangeAction::Create => ("+", GREEN),
            ChangeAction::Change => ("~", CYAN),
            ChangeAction::Delete => ("-", RED),
        };
        let mut title = format!("{mark} {}/{}", c.kind, c.id);
        if !c.fields.is_empty() {
            title.push_str(&format!(": {}", c.fields.join(", ")));
        }
        writeln!(out, "{}", paint(color, code, &paint(color, BOLD, &title)))?;
        for image in &c.images {
            writeln!(out, "{}", paint(color, CYAN, &format!("~ {image}")))?;
        }
        for line in c.diff.lines() {
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                paint(color, BOLD, line)
            } else if line.starts_with('+') {
                paint(color, GREEN, line)
            } else if line.starts_with('-') {
                paint(color, RED, line)
            } else if line.starts_with("@@") {
                paint(color, CYAN, line)
            } else {
                line.to_string()
            };
            writeln!(out, "{painted}")?;
        }
        writeln!(out)?;
    }
    if summary.is_empty() && pods_in_sync {
        writeln!(out, "in sync: {total} object{}, no changes", plural(total))
    } else if summary.is_empty() {
        // The pods below differ: "in sync" here would read as the verdict.
        writeln!(
            out,
            "objects: {total} as last applied, no changes; pods differ:"
        )
    } else {
        writeln!(out, "{summary}")
    }
}

/// The report as a pull request's comment (the shape argocd-diff-preview posts): a heading
/// with the counts, a table of the changed objects, one collapsible block per object with its
/// unified diff (at most `max_lines` lines, the cut said), then the pod actions.
fn render_markdown(
    out: &mut impl Write,
    report: &Report,
    total: usize,
    max_lines: usize,
) -> std::io::Result<()> {
    let s = report.summary;
    let pods_in_sync = report.pods.is_none_or(PodReport::in_sync);
    if s.is_empty() && pods_in_sync {
        writeln!(out, "### drover diff: in sync")?;
    } else {
        writeln!(out, "### drover diff: {s}")?;
    }
    let at = match &report.commit {
        Some(c) => format!(" at commit `{}`", &c[..c.len().min(12)]),
        None => String::new(),
    };
    writeln!(
        out,
        "\n{total} object{} in `{}`{at}.",
        plural(total),
        report.source
    )?;
    if !report.changes.is_empty() {
        writeln!(out, "\n| | object | file | fields |\n|---|---|---|---|")?;
        for c in report.changes {
            let file = c.origin.as_ref().map(|o| o.file.as_str()).unwrap_or("");
            writeln!(
                out,
                "| {} | {}/{} | {} | {} |",
                mark(c.action),
                c.kind,
                c.id,
                code_span(file),
                code_span(&c.fields.join(", "))
            )?;
        }
        for c in report.changes {
            writeln!(
                out,
                "\n<details><summary>{} {}/{}</summary>\n\n```diff",
                mark(c.action),
                c.kind,
                c.id
            )?;
            for image in &c.images {
                writeln!(out, "~ {image}")?;
            }
            let lines = c.diff.lines().count();
            for line in c.diff.lines().take(max_lines) {
                // A fence inside the diff must not end the block.
                writeln!(out, "{}", line.replace("```", "`\u{200b}``"))?;
            }
            writeln!(out, "```")?;
            if lines > max_lines {
                let cut = lines - max_lines;
                writeln!(
                    out,
                    "\n{cut} more line{} cut (`--max-lines {max_lines}`).",
                    plural(cut)
                )?;
            }
            writeln!(out, "\n</details>")?;
        }
    }
    if let Some(p) = report.pods.filter(|p| !p.in_sync()) {
        let seen = if p.live {
            "observed now"
        } else {
            "last observed"
        };
        writeln!(
            out,
            "\n**Pods** ({seen} on {} minion{}):\n",
            p.minions,
            plural(p.minions)
        )?;
        for a in &p.actions {
            let mark = if a.action == "create" { "+" } else { "-" };
            let reason = a
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            writeln!(out, "- `{mark}` pod `{}` on `{}`{reason}", a.pod, a.minion)?;
        }
        for PodReason { pod, reason } in &p.unschedulable {
            writeln!(out, "- `!` pod `{pod}` cannot be placed: {reason}")?;
        }
    }
    Ok(())
}

fn mark(action: ChangeAction) -> &'static str {
    match action {
        ChangeAction::Create => "+",
        ChangeAction::Change => "~",
        ChangeAction::Delete => "-",
    }
}

/// `text` as an inline code span in a table cell (empty stays empty; `|` escaped).
fn code_span(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("`{}`", text.replace('|', "\\|").replace('`', "'"))
    }
}

fn render_pods(out: &mut impl Write, p: &PodReport, color: bool) -> std::io::Result<()> {
    for a in &p.actions {
        let (mark, code) = if a.action == "create" {
            ("+", GREEN)
        } else {
            ("-", RED)
        };
        let reason = a
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let line = format!("{mark} pod {} on {}{reason}", a.pod, a.minion);
        writeln!(out, "{}", paint(color, code, &line))?;
    }
    for PodReason { pod, reason } in &p.unschedulable {
        writeln!(out, "! pod {pod} cannot be placed: {reason}")?;
    }
    for PodReason { pod, reason } in &p.left_alone {
        writeln!(out, "= pod {pod}: {reason}")?;
    }
    let seen = if p.live {
        "observed now"
    } else {
        "last observed"
    };
    let not_ready = if p.minions_not_ready.is_empty() {
        String::new()
    } else {
        format!("; not ready: {}", p.minions_not_ready.join(", "))
    };
    let what = format!(
        "pods: {} {seen} on {} minion{}{not_ready}",
        p.pods,
        p.minions,
        plural(p.minions)
    );
    if p.in_sync() {
        writeln!(out, "{what}; in sync")
    } else {
        let (creates, deletes) = p.actions.iter().fold((0, 0), |(c, d), a| {
            if a.action == "create" {
                (c + 1, d)
            } else {
                (c, d + 1)
            }
        });
        writeln!(
            out,
            "{what}; apply would create {creates}, delete {deletes}, and cannot place {}",
            p.unschedulable.len()
        )
    }
}
