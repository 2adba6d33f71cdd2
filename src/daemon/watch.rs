//! Triggers for the daemon: file changes in a directory source (notify, debounced), new commits
//! in a git source (polled), and the periodic resync. Each sends a unit on one channel; the
//! loop coalesces whatever arrived while a round ran.

use crate::source::SourceSpec;
use notify::{RecursiveMode, Watcher};
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// Starts watching a directory source; the watcher lives as long as the returned value.
pub fn watch_dir(
    spec: &SourceSpec,
    tx: Sender<()>,
) -> Result<Option<notify::RecommendedWatcher>, String> {
    let SourceSpec::Dir { root, .. } = spec else {
        return Ok(None);
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads do not change the source; everything else (and errors such as an overflowed
        // queue) is a reason to look again: the round re-reads the whole source anyway.
        let relevant = match &event {
            Ok(e) => !matches!(e.kind, notify::EventKind::Access(_)),
            Err(_) => true,
        };
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
    Ok(Some(watcher))
}

/// How often a git source is polled for a new commit: a local repository costs a ref lookup
/// and a tree read (milliseconds), so every second; a remote costs a fetch, so every 15 s.
pub fn git_poll_interval(spec: &SourceSpec) -> Option<Duration> {
    match spec {
        SourceSpec::Dir { .. } => None,
        SourceSpec::Git { repo, .. } if crate::source::is_url(repo) => {
            Some(Duration::from_secs(15))
        }
        SourceSpec::Git { .. } => Some(Duration::from_secs(1)),
    }
}
