//! `drover diff`: desired state vs the observed state in the store, per object, as a unified
//! diff of normalised JSON (or a JSON list of changes). Read-only: never takes the lock.

use super::{
    load_desired, paint, plural, report_load_error, Context, BOLD, CYAN, EXIT_DIFFERENCES, EXIT_OK,
    GREEN, RED,
};
use crate::{DiffOutput, SourceArgs};
use drover::model::{ObjectKey, Origin};
use drover::plan::objects::{
    changed_fields, display_text, normalize, object_changes, unified_diff, ChangeAction, Summary,
};
use drover::store::{Section, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

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
    diff: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    in_sync: bool,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    summary: Summary,
    changes: &'a [Change],
}

pub fn run(cx: &Context, args: &SourceArgs, output: DiffOutput) -> ExitCode {
    let spec = cx.source_spec(args);
    let store = Store::new(&cx.state_dir);
    // The store's index and the source are independent: read them at the same time.
    let (loaded, index) = std::thread::scope(|s| {
        let index = s.spawn(|| store.read_index());
        (
            load_desired(cx, &spec),
            index.join().expect("index reader does not panic"),
        )
    });
    let (desired, commit) = match loaded {
        Ok(d) => d,
        Err(e) => return report_load_error(e),
    };
    let index = match index {
        Ok(i) => i,
        Err(e) => return super::fail(&e),
    };
    let changes = match gather(&store, &index, &desired) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let summary = Summary::of(changes.iter().map(|c| &c.action));
    let mut out = std::io::stdout().lock();
    let written = match output {
        DiffOutput::Json => {
            let report = Report {
                in_sync: summary.is_empty(),
                source: spec.describe(),
                commit,
                summary,
                changes: &changes,
            };
            serde_json::to_writer_pretty(&mut out, &report)
                .map_err(std::io::Error::from)
                .and_then(|_| writeln!(out))
        }
        DiffOutput::Text => {
            let color = super::use_color(std::io::stdout().is_terminal());
            render_text(&mut out, &changes, summary, desired.objects.len(), color)
        }
    };
    // A closed pipe (`drover diff | head`) is not an error worth a message.
    if let Err(e) = written.and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return super::fail(&e);
        }
    }
    ExitCode::from(if summary.is_empty() {
        EXIT_OK
    } else {
        EXIT_DIFFERENCES
    })
}

/// Hashes the desired objects, compares them with the store's index, and reads stored text
/// only for the objects that differ.
fn gather(
    store: &Store,
    index: &drover::store::Index,
    desired: &drover::model::DesiredState,
) -> Result<Vec<Change>, drover::store::StoreError> {
    let (texts, hashes) = normalize(desired);
    let stored: BTreeMap<ObjectKey, String> = index
        .applied
        .iter()
        .map(|(k, e)| (k.clone(), e.hash.clone()))
        .collect();
    let mut changes = Vec::new();
    for (key, action) in object_changes(&hashes, &stored) {
        let before = match action {
            ChangeAction::Create => String::new(),
            _ => store.read_object(Section::Applied, &key, &index.applied[&key])?,
        };
        let after = texts.get(&key).cloned().unwrap_or_default();
        let origin = desired.objects.get(&key).map(|(_, o)| o.clone());
        let fields = if action == ChangeAction::Change {
            match (serde_json::from_str(&before), serde_json::from_str(&after)) {
                (Ok(a), Ok(b)) => changed_fields(&a, &b),
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let old_header = match action {
            ChangeAction::Create => "/dev/null".to_string(),
            _ => format!(
                "{key} (applied, rv {})",
                index.applied[&key].resource_version
            ),
        };
        let new_header = match (&action, &origin) {
            (ChangeAction::Delete, _) => "/dev/null".to_string(),
            (_, Some(o)) => format!("{key} ({o})"),
            (_, None) => key.to_string(),
        };
        let diff = unified_diff(
            &display_text(&before),
            &display_text(&after),
            &old_header,
            &new_header,
        );
        changes.push(Change {
            action,
            kind: key.kind.to_string(),
            id: key.id.clone(),
            origin,
            fields,
            diff,
        });
    }
    Ok(changes)
}

fn render_text(
    out: &mut impl Write,
    changes: &[Change],
    summary: Summary,
    total: usize,
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
    if summary.is_empty() {
        writeln!(out, "in sync: {total} object{}, no changes", plural(total))
    } else {
        writeln!(out, "{summary}")
    }
}
