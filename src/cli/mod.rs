//! Command implementations: gather through the library, render, choose the exit code.

pub mod apply;
pub mod cordon;
pub mod daemon;
pub mod diff;
pub mod events;
pub mod exec;
pub mod get;
pub mod help;
pub mod images;
pub mod jsonpath;
pub mod logging;
pub mod minions;
pub mod output;
pub mod proxy;
pub mod selector;
pub mod source;
pub mod state;
pub mod validate;

use crate::SourceArgs;
use drover::config::Settings;
use drover::model::DesiredState;
use drover::source::SourceSpec;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_DIFFERENCES: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

pub struct Context {
    pub settings: Settings,
    pub state_dir: PathBuf,
    /// Where the store is: `state_dir`, or an etcd prefix.
    pub state: drover::store::StateLocation,
    /// The project this drover acts for (`Settings::project`).
    pub project: String,
}

impl Context {
    /// The project's store (the file store, or a client of etcd).
    pub fn store(&self) -> Result<drover::store::Store, String> {
        let store = drover::store::Store::open(&self.state).map_err(|e| e.to_string())?;
        // A store that names its project is only this project's: another name is another
        // project's pods, which this config must neither adopt nor prune.
        match store.recorded_project().map_err(|e| e.to_string())? {
            Some(recorded) if recorded != self.project => Err(format!(
                "the state at {} belongs to project `{recorded}`, but this config's project is `{}`: set `project = \"{recorded}\"` in drover.toml, or point `state` at this project's own store",
                store.describe(),
                self.project
            )),
            _ => Ok(store),
        }
    }

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

/// Prints a warning once per process: `get -w` gathers again at every poll, and a silent
/// minion is news the first time only. (Bounded: a process saying many different things
/// starts over.)
pub fn warn_once(message: &str) {
    static SAID: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.len() >= 256 {
        said.clear();
    }
    if said.insert(message.to_string()) {
        eprintln!("drover: warning: {message}");
    }
}

use drover::image_pins::ImagePins;
pub use drover::reconcile::project::LoadError;

/// Reads and validates the whole source as the config says; names the files it skipped and
/// prints the warnings.
pub fn load_desired(
    cx: &Context,
    spec: &SourceSpec,
) -> Result<(DesiredState, Option<String>), LoadError> {
    let loaded = look_at_source(cx, spec, None)?;
    Ok((loaded.desired, loaded.commit))
}

/// `load_source` for a command that only looks (`validate`, `get`): the delivered images are
/// pinned to the local builds there are, and none is pulled or refused for lacking.
pub fn look_at_source(
    cx: &Context,
    spec: &SourceSpec,
    validate: Option<drover::manifest::Validate>,
) -> Result<drover::reconcile::project::Loaded, LoadError> {
    let opts = cx.settings.manifest_options(validate);
    let git = cx.settings.git_options(&cx.state_dir);
    let pins = image_pins(cx).unwrap_or_default();
    let loaded = drover::reconcile::project::load(spec, &git, &opts, &pins)?;
    Ok(told(loaded))
}

/// The loaded source, its skipped files and warnings said on stderr.
fn told(loaded: drover::reconcile::project::Loaded) -> drover::reconcile::project::Loaded {
    if let Some(note) = &loaded.skipped {
        eprintln!("drover: note: {note}");
    }
    report_warnings(&loaded.warnings);
    loaded
}

/// `load_desired` with `--validate` (None: the config's `validate`, else strict).
pub fn load_source(
    cx: &Context,
    spec: &SourceSpec,
    validate: Option<drover::manifest::Validate>,
) -> Result<drover::reconcile::project::Loaded, LoadError> {
    load_source_pinned(cx, spec, validate).map(|(loaded, _)| loaded)
}

/// `load_source`, with the local builds its delivered images were pinned to.
pub fn load_source_pinned(
    cx: &Context,
    spec: &SourceSpec,
    validate: Option<drover::manifest::Validate>,
) -> Result<(drover::reconcile::project::Loaded, ImagePins), LoadError> {
    let opts = cx.settings.manifest_options(validate);
    let git = cx.settings.git_options(&cx.state_dir);
    let (loaded, pins) = load_pinned(cx, |pins| {
        drover::reconcile::project::load(spec, &git, &opts, pins)
    })?;
    Ok((told(loaded), pins))
}

/// `load_source` of a source already listed (`drover::source::list`), keeping of each object
/// only what `keep` returns (`drover diff`: a hash comparison), so a large source is never
/// held whole.
pub fn load_listed_each<V: Send>(
    cx: &Context,
    listing: drover::source::Listing,
    validate: Option<drover::manifest::Validate>,
    keep: impl Fn(&drover::model::ObjectKey, drover::model::Object) -> V + Sync,
) -> Result<drover::reconcile::project::LoadedEach<V>, LoadError> {
    let opts = cx.settings.manifest_options(validate);
    let pins = image_pins(cx)?;
    let loaded = drover::reconcile::project::load_listed(listing, &opts, &pins, keep)?;
    drover::reconcile::project::refuse_undelivered(&pins)?;
    if let Some(note) = &loaded.skipped {
        eprintln!("drover: note: {note}");
    }
    report_warnings(&loaded.objects.warnings);
    Ok(loaded)
}

/// The local engine's builds of the images drover delivers (`[images] push`; the engine is
/// not asked without it).
pub fn image_pins(cx: &Context) -> Result<ImagePins, LoadError> {
    let patterns = &cx.settings.config.images.push;
    if patterns.is_empty() {
        return Ok(ImagePins::default());
    }
    runtime()
        .block_on(drover::images::local_pins(patterns))
        .map_err(|e| LoadError::Refused(format!("[images] push: {e}")))
}

/// Loads with the delivered images pinned; a name the local engine lacks is pulled there
/// (minions without a way to a registry get it through the drover host) and the source read
/// again; one that cannot be had refuses the source. Returns the pins used.
pub fn load_pinned<T>(
    cx: &Context,
    load: impl Fn(&ImagePins) -> Result<T, LoadError>,
) -> Result<(T, ImagePins), LoadError> {
    let pins = image_pins(cx)?;
    let loaded = load(&pins)?;
    let missing = pins.missing();
    if missing.is_empty() {
        return Ok((loaded, pins));
    }
    for name in &missing {
        eprintln!("drover: pulling {name} into the local Docker Engine ([images] push)");
        if let Err(e) = runtime().block_on(drover::images::pull_local(name)) {
            eprintln!("drover: {e}");
        }
    }
    let pins = image_pins(cx)?;
    let loaded = load(&pins)?;
    drover::reconcile::project::refuse_undelivered(&pins)?;
    Ok((loaded, pins))
}

/// Every warning on stderr, one located line each (stdout stays for the command's output).
pub fn report_warnings(warnings: &[drover::manifest::Diagnostic]) {
    let color = use_color(std::io::stderr().is_terminal());
    for w in warnings {
        eprintln!("{}", paint(color, YELLOW, &format!("warning: {w}")));
    }
}

/// Reports a load error on stderr: every diagnostic, then a count. Returns the exit code.
pub fn report_load_error(e: LoadError) -> ExitCode {
    match e {
        LoadError::Source(e) => fail(&e),
        LoadError::Refused(e) => fail(&e),
        LoadError::Invalid(drover::manifest::Invalid {
            errors: diags,
            warnings,
        }) => {
            report_warnings(&warnings);
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
) -> Result<drover::reconcile::Reconciler, String> {
    let minions = minions(cx, Some(desired))?;
    let config = cx.settings.config.clone();
    let credentials: drover::executor::Credentials =
        std::sync::Arc::new(move |image: &str| config.credentials_for(image));
    Ok(drover::reconcile::Reconciler::new(
        minions,
        credentials,
        node_grace,
    ))
}

/// The proxy's settings from `[proxy]`.
pub fn proxy_settings(cx: &Context) -> Result<drover::config::ProxySettings, String> {
    cx.settings.config.proxy.settings()
}

/// Raises the open-file soft limit to the hard one: the proxy holds two descriptors per
/// connection (four while splicing), and a default of 1024 would cap it at a few hundred.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The async runtime for commands that talk to minions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub const RED: &str = "31";
pub const YELLOW: &str = "33";
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

/// The minion for `spec`, made once per process: `get -w` looks again every 2 s, and a minion
/// kept between looks keeps its SSH session (its I/O thread outlives each look's runtime), so a
/// look opens channels, not connections.
pub fn kept_minion(
    spec: drover::minion::MinionSpec,
) -> Result<std::sync::Arc<drover::minion::Minion>, drover::minion::MinionError> {
    static KEPT: std::sync::Mutex<Vec<std::sync::Arc<drover::minion::Minion>>> =
        std::sync::Mutex::new(Vec::new());
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = kept.iter().find(|m| m.spec == spec) {
        return Ok(m.clone());
    }
    let m = std::sync::Arc::new(drover::minion::Minion::new(spec)?);
    kept.push(m.clone());
    Ok(m)
}
