//! The `drover` command line: the only place that prints, knows about terminals and colours,
//! and turns outcomes into exit codes (0 ok / in sync, 1 differences, 2 error).

mod cli;

/// mimalloc instead of glibc's malloc: a large source is tens of thousands of small,
/// short-lived allocations across several threads, where glibc's arenas spent about a sixth of
/// `drover diff`'s CPU (`benches/diff_vs_gnu.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The version with the git commit it was built from (build.rs).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DROVER_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    long_version = LONG_VERSION,
    about = "Declarative GitOps for containers on plain Linux hosts"
)]
pub struct Args {
    /// Config file [default: $DROVER_CONFIG, else ./drover.toml if present]
    #[arg(long, global = true, env = "DROVER_CONFIG")]
    config: Option<PathBuf>,
    /// State directory or etcd://host:2379/prefix [default: state (etcd) or state_dir from the
    /// config, else .drover beside it]
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// How `daemon` and `proxy` write their log (to stderr; filter with RUST_LOG, e.g.
    /// RUST_LOG=debug or RUST_LOG=drover=warn)
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "DROVER_LOG_FORMAT"
    )]
    log_format: cli::logging::Format,
    #[command(subcommand)]
    command: Command,
}

/// Where the desired state comes from.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// A directory, or a git repository (a URL, or a path with --ref)
    /// [default: source from the config, else ./manifests]
    pub source: Option<String>,
    /// Read the committed tree at this git ref (branch, tag or commit) instead of files
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Subdirectory inside the source that holds the manifests
    #[arg(long, value_name = "SUBDIR")]
    pub path: Option<String>,
    /// How strictly to read manifests: strict (unknown fields are errors), warn (unknown
    /// fields and non-strict JSON are warnings, as Kubernetes 2014), ignore (no warnings)
    /// [default: validate from the config, else strict]
    #[arg(long, value_name = "MODE", value_parser = parse_validate)]
    pub validate: Option<drover::manifest::Validate>,
}

fn parse_sort_by(s: &str) -> Result<cli::output::SortBy, String> {
    cli::output::SortBy::parse(s)
}

fn parse_validate(s: &str) -> Result<drover::manifest::Validate, String> {
    drover::manifest::Validate::parse(s)
        .ok_or_else(|| format!("`{s}` is not one of strict, warn, ignore"))
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DiffOutput {
    Text,
    Json,
    /// For a pull request's comment: a summary, then one collapsible diff per object
    Markdown,
}

#[derive(Subcommand)]
enum MinionsCommand {
    /// Accept a minion's SSH host key: fetch it, show its fingerprint, add it to known_hosts
    Trust {
        name: String,
        /// Replace a different key already recorded for the host
        #[arg(long)]
        replace: bool,
    },
    /// Place no new pods on a minion (SchedulingDisabled); its pods stay
    Cordon { name: String },
    /// Let pods be placed on a minion again
    Uncordon { name: String },
    /// Cordon a minion and move its pods off it start-first (each replacement running and
    /// ready elsewhere before the pod it replaces stops); waits until it is empty
    Drain {
        name: String,
        /// Give up waiting after this long (90s, 5m, 1h; the minion stays cordoned)
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        deadline: std::time::Duration,
        /// Also move pods no replication controller replaces (deleted, then made again
        /// elsewhere, with a gap)
        #[arg(long)]
        force: bool,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}`: a number and a unit (90s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}`: the unit is s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Send images from this host's Docker Engine to the minions, over their SSH sessions,
    /// with no registry: only the layers a minion lacks, to every minion at once
    Push {
        /// Images as the local engine names them (name:tag, or an id)
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        /// Only these minions [default: every minion]
        #[arg(long = "minion", value_name = "NAME")]
        minions: Vec<String>,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// Copy this project's state (the --state or config one) to another store, which must
    /// hold none yet: an etcd://host:2379/prefix or a directory
    Migrate {
        /// Where to: etcd://host:2379[,host:2379...]/prefix, or a directory
        #[arg(long, value_name = "LOCATION")]
        to: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate the manifests only (exit 0 valid, 2 invalid)
    Validate {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Show what differs between the manifests and the observed state
    /// (exit 0 in sync, 1 differences, 2 error)
    Diff {
        #[command(flatten)]
        source: SourceArgs,
        /// Output format
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: DiffOutput,
        /// Observe the minions first and keep what was seen in the store
        #[arg(long)]
        live: bool,
        /// With -o markdown: at most this many lines of each object's diff (the rest is cut,
        /// and the cut said)
        #[arg(long, value_name = "N", default_value_t = 200)]
        max_lines: usize,
        /// Also save the plan to FILE (mode 0600), for `drover apply --plan FILE`
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Reconcile once: make the minions run what the manifests say, wait for it, record it
    /// (exit 0 converged, 2 error)
    Apply {
        #[command(flatten)]
        source: SourceArgs,
        /// Print the object changes and pod actions without changing anything
        /// (exit 0 nothing to do, 1 changes, 2 error)
        #[arg(long)]
        dry_run: bool,
        /// Keep pods whose Pod or RC left the source running
        #[arg(long)]
        no_prune: bool,
        /// Do not ask for confirmation on a terminal
        #[arg(long, short = 'y')]
        yes: bool,
        /// Apply a source with no objects even though it prunes everything applied before
        #[arg(long)]
        allow_empty: bool,
        /// Give up waiting for convergence after this many seconds
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Apply exactly the plan `drover diff --out FILE` saved; refused, changing nothing,
        /// when the store or the source moved since
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
    },
    /// Watch mode: reconcile on every change and every resync, replace pods of lost minions
    Daemon {
        #[command(flatten)]
        source: SourceArgs,
        /// Seconds between resyncs (drift repair)
        #[arg(long, default_value_t = 10)]
        resync: u64,
        /// Seconds a minion may be silent before its pods are replaced elsewhere
        #[arg(long, default_value_t = 30)]
        node_grace: u64,
        /// Address of the HTTP status API (GET /status, /healthz)
        #[arg(long, default_value = "127.0.0.1:7979")]
        listen: std::net::SocketAddr,
        /// Apply a source with no objects even though it prunes everything applied before
        #[arg(long)]
        allow_empty: bool,
    },
    /// List objects and their state (exit 1 when a named one does not exist)
    #[command(
        after_help = "KIND: pods (pod, po), replicationcontrollers (replicationcontroller, rc), \
services (service, svc), minions (minion, nodes, node, no), events (event, ev)"
    )]
    Get {
        #[arg(value_enum, value_name = "KIND", hide_possible_values = true)]
        resource: cli::output::Resource,
        /// Only these objects
        names: Vec<String>,
        /// Label selector: k=v, k==v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k; comma-joined
        #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
        selector: Option<String>,
        /// Output format: table, wide, json, yaml, name; jsonpath=TEMPLATE (kubectl's
        /// JSONPath: '{range .items[*]}{.id}{"\n"}{end}'); custom-columns=HEADER:PATH,...
        /// (NAME:.id,IMAGE:.desiredState.manifest.containers[*].image); custom-columns-file=FILE
        #[arg(
            short = 'o',
            long = "output",
            default_value = "table",
            value_parser = cli::output::FormatParser,
            hide_possible_values = true
        )]
        output: cli::output::Format,
        /// Sort by the first value of a JSONPath in each object as -o json shows it
        /// (.id, .desiredState.replicas, .currentState.host); default: by name
        #[arg(long, value_name = "PATH", value_parser = parse_sort_by)]
        sort_by: Option<cli::output::SortBy>,
        /// Keep watching: print an object again whenever it changes (every 2 s; until
        /// interrupted). Events: keep printing new ones as they happen
        #[arg(short = 'w', long)]
        watch: bool,
        /// Events: only those of one object, KIND/NAME (pod/web-1, rc/web, minion/m1)
        #[arg(long = "for", value_name = "KIND/NAME")]
        for_object: Option<String>,
    },
    /// Show one pod, replication controller or service in detail (and why a pod is Pending)
    Describe {
        #[arg(value_enum, value_name = "KIND", hide_possible_values = true)]
        resource: cli::output::Resource,
        name: String,
    },
    /// Serve every service's port alone, from the endpoints in the state directory
    Proxy {
        /// Address to serve on (default: [proxy] listen, else 127.0.0.1)
        #[arg(long)]
        listen: Option<std::net::IpAddr>,
    },
    /// Print a pod container's output
    Logs {
        pod: String,
        /// The container (needed when the pod has several)
        #[arg(short = 'c', long = "container")]
        container: Option<String>,
        /// Keep following the output
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Only output newer than this (e.g. 30s, 5m, 2h, 1h30m)
        #[arg(long, value_name = "DURATION", value_parser = cli::output::parse_duration)]
        since: Option<std::time::Duration>,
        /// Prefix each line with Docker's RFC 3339 timestamp
        #[arg(long)]
        timestamps: bool,
        /// The output of the container's runs before Docker last restarted it
        #[arg(short = 'p', long)]
        previous: bool,
    },
    /// Run a command in a pod's container, through the Docker API (no shell sees the words);
    /// exits with the command's exit code
    Exec {
        pod: String,
        /// The container (needed when the pod has several)
        #[arg(short = 'c', long = "container")]
        container: Option<String>,
        /// Pass stdin to the command
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Allocate a terminal for the command
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print a shell completion script: drover completion bash > /etc/bash_completion.d/drover
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print drover's man page (roff): drover man | man -l -
    Man,
    /// Print drover's version and the git commit it was built from
    Version,
    /// Manage minions
    Minions {
        #[command(subcommand)]
        command: MinionsCommand,
    },
    /// Your own images on the minions, without a registry
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Manage the state store
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Manage the manifest source
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Accept the SSH host key of a git source's server (an ssh:// URL): fetch it, show its
    /// fingerprint, add it to known_hosts (the minions' file, `[ssh] known_hosts`)
    Trust {
        /// The source's URL [default: source from the config]
        source: Option<String>,
        /// Replace a different key already recorded for the host
        #[arg(long)]
        replace: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(answered) = answer_without_config(&args.command) {
        return answered;
    }
    if matches!(args.command, Command::Daemon { .. } | Command::Proxy { .. }) {
        cli::logging::init(args.log_format);
    }
    let cx = match context(args.config.as_deref(), args.state.as_deref()) {
        Ok(cx) => cx,
        Err(code) => return code,
    };
    run(cx, args.command)
}

/// The commands that need no config, state or minions, answered at once.
fn answer_without_config(command: &Command) -> Option<ExitCode> {
    match command {
        Command::Completion { shell } => Some(cli::help::completion(*shell)),
        Command::Man => Some(cli::help::man()),
        Command::Version => {
            println!("drover {LONG_VERSION}");
            Some(ExitCode::SUCCESS)
        }
        _ => None,
    }
}

/// What every other command runs in: the config, where the state is, and the project. An
/// error is the exit code, already told.
fn context(
    config: Option<&std::path::Path>,
    state: Option<&std::path::Path>,
) -> Result<cli::Context, ExitCode> {
    let settings = drover::config::Settings::load(config).map_err(|e| cli::fail(&e))?;
    let state = settings.state_location(state).map_err(|e| cli::fail(&e))?;
    // With the state in etcd the directory keeps only the git cache.
    let state_dir = match &state {
        drover::store::StateLocation::Dir(d) => d.clone(),
        drover::store::StateLocation::Etcd(_) => settings.state_dir(None),
    };
    let project = match (&state, &settings.config.project) {
        (drover::store::StateLocation::Etcd(spec), None) => spec.derived_project(),
        _ => settings.project(&state_dir).map_err(|e| cli::fail(&e))?,
    };
    Ok(cli::Context {
        settings,
        state_dir,
        state,
        project,
    })
}

/// Runs a command that needs the context. One arm per command, each only turning flags into
/// the options of its `cli` module: the length is the CLI's breadth, not a thread to follow.
fn run(cx: cli::Context, command: Command) -> ExitCode {
    match command {
        Command::Validate { source } => cli::validate::run(&cx, &source),
        Command::Diff {
            source,
            output,
            live,
            max_lines,
            out,
        } => cli::diff::run(&cx, &source, (output, max_lines), live, out.as_deref()),
        Command::Apply {
            source,
            dry_run,
            no_prune,
            yes,
            allow_empty,
            timeout,
            plan,
        } => cli::apply::run(
            &cx,
            &source,
            cli::apply::Options {
                dry_run,
                prune: !no_prune,
                yes,
                allow_empty: allow_empty || cx.settings.config.allow_empty,
                timeout: std::time::Duration::from_secs(timeout),
                plan,
            },
        ),
        Command::Daemon {
            source,
            resync,
            node_grace,
            listen,
            allow_empty,
        } => cli::daemon::run(
            &cx,
            &source,
            std::time::Duration::from_secs(resync.max(1)),
            std::time::Duration::from_secs(node_grace),
            listen,
            allow_empty || cx.settings.config.allow_empty,
        ),
        Command::Get {
            resource,
            names,
            selector,
            output,
            sort_by,
            watch,
            for_object,
        } => {
            let selector =
                match cli::selector::Selector::parse(selector.as_deref().unwrap_or_default()) {
                    Ok(s) => s,
                    Err(e) => return cli::fail(&e),
                };
            if resource == cli::output::Resource::Events {
                if sort_by.is_some() {
                    return cli::fail(&"--sort-by orders pods, rc, services and minions; events come oldest first");
                }
                return cli::events::get(&cx, &names, for_object.as_deref(), watch, &output);
            }
            cli::get::get(
                &cx,
                resource,
                &cli::get::GetOptions {
                    names: &names,
                    selector: &selector,
                    format: &output,
                    sort_by: sort_by.as_ref(),
                    watch,
                },
            )
        }
        Command::Proxy { listen } => cli::proxy::run(&cx, listen),
        Command::Describe { resource, name } => cli::get::describe(&cx, resource, &name),
        Command::Logs {
            pod,
            container,
            follow,
            tail,
            since,
            timestamps,
            previous,
        } => cli::get::logs(
            &cx,
            &pod,
            &cli::get::LogsOptions {
                container,
                follow,
                tail,
                since,
                timestamps,
                previous,
            },
        ),
        Command::Exec {
            pod,
            container,
            stdin,
            tty,
            command,
        } => cli::exec::run(
            &cx,
            &pod,
            command,
            cli::exec::Options {
                container,
                stdin,
                tty,
            },
        ),
        Command::Completion { .. } | Command::Man | Command::Version => {
            unreachable!("answered before the config is read")
        }
        Command::Minions {
            command: MinionsCommand::Trust { name, replace },
        } => cli::minions::trust(&cx, &name, replace),
        Command::Minions {
            command: MinionsCommand::Cordon { name },
        } => cli::cordon::cordon(&cx, &name),
        Command::Minions {
            command: MinionsCommand::Uncordon { name },
        } => cli::cordon::uncordon(&cx, &name),
        Command::Minions {
            command:
                MinionsCommand::Drain {
                    name,
                    deadline,
                    force,
                },
        } => cli::cordon::drain(&cx, &name, deadline, force),
        Command::Images {
            command: ImagesCommand::Push { images, minions },
        } => cli::images::push(&cx, &images, &minions),
        Command::State {
            command: StateCommand::Migrate { to },
        } => cli::state::migrate(&cx, &to),
        Command::Source {
            command: SourceCommand::Trust { source, replace },
        } => cli::source::trust(&cx, source.as_deref(), replace),
    }
}
