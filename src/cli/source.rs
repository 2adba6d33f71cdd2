//! `drover source trust`: the SSH host key of a git source's server, accepted as a minion's is.

use super::{fail, Context, EXIT_ERROR, EXIT_OK};
use drover::source::SourceSpec;
use std::process::ExitCode;
use std::time::Duration;

/// Fetches the host key of the source's SSH server and writes it to known_hosts, showing its
/// fingerprint.
pub fn trust(cx: &Context, source: Option<&str>, replace: bool) -> ExitCode {
    // As given: `git@host:repo` reads as a path until `--ref` makes it a repository.
    let url = match cx.settings.source(source, None, None) {
        SourceSpec::Git { repo, .. } => repo,
        SourceSpec::Dir { root, .. } => root.display().to_string(),
    };
    let Some((host, port)) = drover::source::ssh_host(&url) else {
        return fail(&format!(
            "the source {url} is not reached over SSH (an ssh:// URL or user@host:path): it has no SSH host key"
        ));
    };
    let file = cx.settings.known_hosts();
    let name = drover::known_hosts::host_name(&host, port);
    let trusted =
        drover::known_hosts::fetch(&host, port, Duration::from_secs(10)).and_then(|key| {
            drover::known_hosts::record(&file, &name, &key, replace).map(|written| (key, written))
        });
    match trusted {
        Ok((key, written)) => {
            println!(
                "trusted {name} {} host key {} (git source {url}); written to {}",
                key.kind(),
                key.fingerprint(),
                written.display()
            );
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("drover: error: git source {url}: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
