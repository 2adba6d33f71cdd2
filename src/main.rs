//! The `drover` command line: the only place that prints, knows about terminals and colours,
//! and turns outcomes into exit codes (0 ok / in sync, 1 differences, 2 error).

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Declarative GitOps for containers on plain Linux hosts"
)]
struct Args {
    /// Config file [default: $DROVER_CONFIG, else ./drover.toml if present]
    #[arg(long, global = true, env = "DROVER_CONFIG")]
    config: Option<PathBuf>,
    /// State directory [default: state_dir from the config, else .drover beside it]
    #[arg(long, global = true)]
    state: Option<PathBuf>,
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

fn parse_validate(s: &str) -> Result<drover::manifest::Validate, String> {
    drover::manifest::Validate::parse(s)
        .ok_or_else(|| format!("`{s}` is not one of strict, warn, ignore"))
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DiffOutput {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum GetKind {
    Pods,
    #[value(alias = "replicationcontrollers")]
    Rc,
    Services,
    Minions,
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
    },
    /// Reconcile once: make the minions run what the manifests say, wait for it, record it
    /// (exit 0 converged, 2 error)
    Apply {
        #[command(flatten)]
        source: SourceArgs,
        /// Print the plan without changing anything
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
    /// List objects and their state
    Get {
        #[arg(value_enum)]
        kind: GetKind,
        name: Option<String>,
        /// Label selector, key=value[,key=value]
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: cli::minions::GetOutput,
    },
    /// Show one pod, replication controller or service in detail (and why a pod is Pending)
    Describe { kind: String, name: String },
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
    },
    /// Manage minions
    Minions {
        #[command(subcommand)]
        command: MinionsCommand,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match drover::config::Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return cli::fail(&e),
    };
    let state_dir = settings.state_dir(args.state.as_deref());
    let project = match settings.project(&state_dir) {
        Ok(p) => p,
        Err(e) => return cli::fail(&e),
    };
    let cx = cli::Context {
        settings,
        state_dir,
        project,
    };
    match args.command {
        Command::Validate { source } => cli::validate::run(&cx, &source),
        Command::Diff {
            source,
            output,
            live,
        } => cli::diff::run(&cx, &source, output, live),
        Command::Apply {
            source,
            dry_run,
            no_prune,
            yes,
            allow_empty,
            timeout,
        } => cli::apply::run(
            &cx,
            &source,
            cli::apply::Options {
                dry_run,
                prune: !no_prune,
                yes,
                allow_empty: allow_empty || cx.settings.config.allow_empty,
                timeout: std::time::Duration::from_secs(timeout),
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
            kind,
            name,
            selector,
            output,
        } => {
            let selector = match cli::get::parse_selector(selector.as_deref().unwrap_or("")) {
                Ok(s) => s,
                Err(e) => return cli::fail(&e),
            };
            let json = matches!(output, cli::minions::GetOutput::Json);
            match kind {
                GetKind::Minions => cli::minions::get(&cx, name.as_deref(), output),
                GetKind::Pods => cli::get::pods(&cx, name.as_deref(), &selector, json),
                GetKind::Rc => cli::get::rcs(&cx, name.as_deref(), &selector, json),
                GetKind::Services => cli::get::services(&cx, name.as_deref(), &selector, json),
            }
        }
        Command::Proxy { listen } => cli::proxy::run(&cx, listen),
        Command::Describe { kind, name } => cli::get::describe(&cx, &kind, &name),
        Command::Logs {
            pod,
            container,
            follow,
        } => cli::get::logs(&cx, &pod, container.as_deref(), follow),
        Command::Minions {
            command: MinionsCommand::Trust { name, replace },
        } => cli::minions::trust(&cx, &name, replace),
    }
}
