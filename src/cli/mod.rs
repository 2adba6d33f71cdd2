//! Command implementations: gather through the library, render, choose the exit code.

pub mod apply;
pub mod daemon;
pub mod diff;
pub mod get;
pub mod minions;
pub mod validate;

use crate::SourceArgs;
use drover::config::Settings;
use drover::manifest::Diagnostic;
use drover::model::DesiredState;
use drover::source::{self, SourceSpec};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_DIFFERENCES: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

pub struct Context {
    pub settings: Settings,
    pub state_dir: PathBuf,
    /// The project this drover acts for (`Settings::project`).
    pub project: String,
}

impl Context {
    pub fn source_spec(&self, args: &SourceArgs) -> SourceSpec {
        self.settings.source(
            args.source.as_deref(),
            args.reference.as_deref(),
            args.path.as_deref(),
        )
    }
}

/// Prints an error as one line and returns the error exit code.
pub fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("drover: error: {e}");
    ExitCode::from(EXIT_ERROR)
}

/// Why the desired state could not be had.
pub enum LoadError {
    Source(source::SourceError),
    Invalid(Vec<Diagnostic>),
    /// Read and valid, but refused (the empty-source guard).
    Refused(String),
}

/// Reads and validates the whole source.
pub fn load_desired(
    cx: &Context,
    spec: &SourceSpec,
) -> Result<(DesiredState, Option<String>), LoadError> {
    let snapshot =
        source::read(spec, &cx.settings.git_options(&cx.state_dir)).map_err(LoadError::Source)?;
    if let Some(note) = snapshot.skipped_note() {
        eprintln!("drover: note: {note}");
    }
    let desired = drover::manifest::desired_state(&snapshot.files).map_err(LoadError::Invalid)?;
    Ok((desired, snapshot.commit))
}

/// The empty-source guard (as Argo CD's `allowEmpty`): a source with no objects while the
/// store holds applied objects is far more often a wrong path, ref or glob than a wish to
/// delete everything. Refused unless `allow_empty`.
pub fn refuse_empty_source(
    spec: &SourceSpec,
    desired: &DesiredState,
    index: &drover::store::Index,
    allow_empty: bool,
) -> Result<(), String> {
    if !desired.objects.is_empty() || allow_empty {
        return Ok(());
    }
    let inventory = drover::plan::inventory::Inventory::from_index(index);
    let applied = index.applied.len();
    if applied == 0 && inventory.is_empty() {
        return Ok(());
    }
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for key in index.applied.keys() {
        *kinds.entry(key.kind.to_string()).or_default() += 1;
    }
    let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    Err(format!(
        "the source {} has no objects, but this project applied {applied} object{} before ({}); \
         applying it would prune them all. Refusing: check the source, ref and path, or pass \
         --allow-empty (allow_empty = true in drover.toml) to prune everything",
        spec.describe(),
        plural(applied),
        if detail.is_empty() {
            "pods in the inventory".to_string()
        } else {
            detail.join(", ")
        }
    ))
}

/// Pods of this project's store: the pods made before projects that it may adopt.
pub fn adoptable(index: &drover::store::Index) -> drover::daemon::Adoptable {
    index
        .observed
        .keys()
        .filter(|k| k.kind == drover::model::Kind::Pod)
        .filter_map(|k| k.id.rsplit_once('+'))
        .map(|(pod, minion)| (pod.to_string(), minion.to_string()))
        .collect()
}

/// Connects a reconciler to the store: the project's inventory and adoptable pods from the
/// index, and (with the lock) the writer that records new inventory entries before their pods
/// are made.
pub fn attach_store(
    reconciler: &mut drover::daemon::Reconciler,
    store: &drover::store::Store,
    index: &drover::store::Index,
    lock: Option<std::sync::Arc<drover::store::StoreLock>>,
) {
    reconciler.inventory = drover::plan::inventory::Inventory::from_index(index);
    reconciler.adoptable = adoptable(index);
    reconciler.record_inventory = lock.map(|lock| {
        let store = store.clone();
        let write: drover::daemon::InventoryWriter = Box::new(move |keys| {
            store
                .commit(&lock, &drover::plan::inventory::add_batch(keys))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        write
    });
}

/// Reports a load error on stderr: every diagnostic, then a count. Returns the exit code.
pub fn report_load_error(e: LoadError) -> ExitCode {
    match e {
        LoadError::Source(e) => fail(&e),
        LoadError::Refused(e) => fail(&e),
        LoadError::Invalid(diags) => {
            let stderr = std::io::stderr();
            let color = use_color(stderr.is_terminal());
            for d in &diags {
                eprintln!("{}", paint(color, RED, &format!("error: {d}")));
            }
            let files: std::collections::BTreeSet<&str> =
                diags.iter().map(|d| d.file.as_str()).collect();
            eprintln!(
                "drover: {} error{} in {} file{}; nothing was changed",
                diags.len(),
                plural(diags.len()),
                files.len(),
                plural(files.len())
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Every minion: the config's plus the source's Minion manifests (when it could be read).
pub fn minions(
    cx: &Context,
    desired: Option<&DesiredState>,
) -> Result<Vec<std::sync::Arc<drover::minion::Minion>>, String> {
    drover::minion::minion_specs(&cx.settings, &cx.project, desired)?
        .into_iter()
        .map(|s| {
            drover::minion::Minion::new(s)
                .map(std::sync::Arc::new)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// A reconciler over every minion.
pub fn reconciler(
    cx: &Context,
    desired: &DesiredState,
    node_grace: std::time::Duration,
) -> Result<drover::daemon::Reconciler, String> {
    let minions = minions(cx, Some(desired))?;
    let config = cx.settings.config.clone();
    let credentials: drover::exec::Credentials =
        std::sync::Arc::new(move |image: &str| config.credentials_for(image));
    Ok(drover::daemon::Reconciler::new(
        minions,
        credentials,
        node_grace,
    ))
}

/// Records the applied objects, so `drover diff` shows them in sync.
pub fn record(
    store: &drover::store::Store,
    lock: &drover::store::StoreLock,
    desired: &DesiredState,
    prune: bool,
) -> Result<u64, drover::store::StoreError> {
    let index = store.read_index()?;
    let mut batch = drover::plan::objects::record_batch_with(desired, &index, prune);
    batch.extend(drover::plan::inventory::settle_batch(
        &index, desired, prune,
    ));
    store.commit(lock, &batch)
}

/// Records what a round (or `diff --live`) saw in the store's observed section; writes
/// nothing when nothing changed.
pub fn record_observation(
    store: &drover::store::Store,
    lock: &drover::store::StoreLock,
    seen: &drover::plan::observed::Observation,
) -> Result<u64, drover::store::StoreError> {
    let index = store.read_index()?;
    store.commit(
        lock,
        &drover::plan::observed::observation_batch(&index, seen),
    )
}

/// The async runtime for commands that talk to minions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// Left-aligned columns, two spaces apart; the first row is the header.
pub fn print_table(rows: Vec<Vec<String>>) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = std::io::Write::write_all(
            &mut out,
            format!("{}\n", line.join("  ").trim_end()).as_bytes(),
        );
    }
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub const RED: &str = "31";
pub const GREEN: &str = "32";
pub const CYAN: &str = "36";
pub const BOLD: &str = "1";

/// Colour only on a terminal, and never when NO_COLOR is set to anything non-empty.
pub fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
