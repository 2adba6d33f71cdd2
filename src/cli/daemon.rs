//! `drover daemon`: watch mode. Reconciles on every change of the source (notify on a
//! directory, debounced; a git ref polled), on every resync (repairing drift: a container
//! removed or stopped by hand comes back) and runs the node controller: a minion silent for the
//! grace period has its RC pods replaced elsewhere; when it returns the surplus goes. A source
//! that turns invalid changes nothing: the last valid desired state stays in force. SIGTERM or
//! Ctrl-C ends it after the round in progress.

use super::{fail, load_desired, report_load_error, Context, LoadError, EXIT_OK};
use crate::SourceArgs;
use drover::daemon::watch;
use drover::exec::describe;
use drover::store::Store;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The document `GET /status` serves.
fn status_document(
    source: &str,
    commit: Option<&str>,
    number: u64,
    round: &drover::daemon::Round,
) -> serde_json::Value {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    serde_json::json!({
        "source": source,
        "commit": commit,
        "lastRound": {
            "number": number,
            "at": at,
            "planned": round.planned,
            "done": round.done.iter().map(|a| describe(a).1).collect::<Vec<_>>(),
            "failed": round.failed.iter().map(|(a, e)| format!("{}: {e}", describe(a).1)).collect::<Vec<_>>(),
            "unschedulable": round.unschedulable,
            "pending": round.pending,
            "converged": round.converged(),
        },
        "minions": round.minions.iter().map(|m| serde_json::json!({"name": m.name, "ready": m.ready})).collect::<Vec<_>>(),
        "pods": round.pods.iter().map(|p| serde_json::json!({
            "id": p.id, "minion": p.minion, "phase": p.phase, "replicationController": p.owner,
            "containers": p.containers,
        })).collect::<Vec<_>>(),
    })
}

pub fn run(
    cx: &Context,
    args: &SourceArgs,
    resync: Duration,
    node_grace: Duration,
    listen: std::net::SocketAddr,
) -> ExitCode {
    let spec = cx.source_spec(args);
    let (mut desired, mut commit) = match load_desired(cx, &spec) {
        Ok(d) => d,
        Err(e) => return report_load_error(e),
    };
    let mut reconciler = match super::reconciler(cx, &desired, node_grace) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let store = Store::new(&cx.state_dir);
    let lock = match store.lock("daemon", Duration::from_secs(10)) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    // A damaged store stops the daemon before its first round changes anything.
    if let Err(e) = store.verify() {
        return fail(&e);
    }
    reconciler.sole_writer = true;
    let git = cx.settings.git_options(&cx.state_dir);
    println!(
        "drover daemon: watching {}, resync every {}s, node grace {}s",
        spec.describe(),
        resync.as_secs(),
        node_grace.as_secs()
    );
    super::runtime().block_on(async {
        let (tx, mut triggers) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = match watch::watch_dir(&spec, tx.clone()) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("drover: warning: {e}; relying on resync");
                None
            }
        };
        if let Some(every) = watch::git_poll_interval(&spec) {
            let (tx, spec, git, mut last) = (tx.clone(), spec.clone(), git.clone(), commit.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let (s, g) = (spec.clone(), git.clone());
                    if let Ok(Ok(now)) =
                        tokio::task::spawn_blocking(move || drover::source::head_commit(&s, &g))
                            .await
                    {
                        if now != last {
                            last = now;
                            let _ = tx.try_send(());
                        }
                    }
                }
            });
        }
        let status: drover::daemon::status::Shared = Default::default();
        match drover::daemon::status::serve(listen, status.clone()).await {
            Ok(addr) => println!("status API on http://{addr}/status"),
            // Reconciling matters more than reporting: go on without it.
            Err(e) => eprintln!("drover: warning: status API on {listen}: {e}; running without it"),
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler");
        let mut tick = tokio::time::interval(resync);
        let mut source_changed = false;
        let mut rounds = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = triggers.recv() => {
                    source_changed = true;
                    // Debounce: an editor's save is often several events.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while triggers.try_recv().is_ok() {}
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
            if source_changed {
                source_changed = false;
                match load_desired(cx, &spec) {
                    Ok((d, c)) => {
                        if c != commit {
                            println!("source at {}", c.as_deref().unwrap_or("-"));
                        }
                        (desired, commit) = (d, c);
                    }
                    Err(LoadError::Invalid(diags)) => {
                        for d in &diags {
                            eprintln!("drover: error: {d}");
                        }
                        eprintln!(
                            "drover: source invalid ({} errors); keeping the last valid state",
                            diags.len()
                        );
                    }
                    Err(LoadError::Source(e)) => {
                        eprintln!("drover: error: {e}; keeping the last valid state")
                    }
                }
            }
            let started = Instant::now();
            let round = reconciler.round(&desired, false, false).await;
            rounds += 1;
            for e in &round.unobserved {
                eprintln!("drover: {e}");
            }
            for a in &round.done {
                println!("{}", describe(a).1);
            }
            for (a, e) in &round.failed {
                eprintln!("drover: error: {}: {e}", describe(a).1);
            }
            if round.planned > 0 {
                println!(
                    "reconciled in {:.0} ms",
                    started.elapsed().as_secs_f64() * 1e3
                );
            }
            *status.lock().expect("status") =
                status_document(&spec.describe(), commit.as_deref(), rounds, &round);
            if let Err(e) = super::record_observation(&store, &lock, &round.observation()) {
                eprintln!("drover: error: {e}");
            }
            if round.converged() {
                if let Err(e) = super::record(&store, &lock, &desired, true) {
                    eprintln!("drover: error: {e}");
                }
            } else if round.planned > 0 || round.pending {
                // Work in flight (starting pods, a rollout): look again soon, not at the resync.
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = tx.try_send(());
                });
            }
        }
        println!("drover daemon: stopped");
    });
    ExitCode::from(EXIT_OK)
}
