//! The log of the long-running commands (`daemon`, `proxy`): `tracing` events written to
//! stderr with an RFC 3339 UTC timestamp and a level, as text for people or one JSON object
//! per line for machines (`--log-format json`). `RUST_LOG` filters as everywhere in the tracing
//! ecosystem (`info` when unset; `RUST_LOG=drover=debug`, `RUST_LOG=warn`, ...).

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Installs the process's subscriber. A `RUST_LOG` that does not parse is reported and
/// replaced by `info`, never a reason not to run.
pub fn init(format: Format) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("drover: warning: RUST_LOG={spec:?} does not parse ({e}); using info");
            EnvFilter::new("info")
        }),
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Format::Json => builder.json().flatten_event(true).init(),
    }
}
