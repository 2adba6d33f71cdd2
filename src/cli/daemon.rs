//! `drover daemon`: watch mode, run by `drover::daemon::Daemon`. This file only turns flags
//! into options and the daemon's events into lines. SIGTERM or Ctrl-C ends it after the round
//! in progress.

use super::{fail, load_source_pinned, report_load_error, Context, EXIT_ERROR, EXIT_OK};
use crate::SourceArgs;
use drover::daemon::{Daemon, Options, Report};
use drover::executor::describe;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;
use tracing::{error, info, warn};

pub fn run(
    cx: &Context,
    args: &SourceArgs,
    resync: Duration,
    node_grace: Duration,
    listen: std::net::SocketAddr,
    allow_empty: bool,
) -> ExitCode {
    let spec = cx.source_spec(args);
    let (loaded, pins) = match load_source_pinned(cx, &spec, args.validate) {
        Ok(l) => l,
        Err(e) => return report_load_error(e),
    };
    let desired = &loaded.desired;
    let mut reconciler = match super::reconciler(cx, desired, node_grace) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let store = match cx.store() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let status_url = format!("http://{listen}");
    let lock = match lease(&store, &status_url) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if lock.is_some() {
        if let Err(e) = drover::reconcile::project::open_for_writing(
            &mut reconciler,
            &store,
            lock.clone(),
            &spec,
            desired,
            allow_empty,
        ) {
            return fail(&e);
        }
    }
    let proxy = match super::proxy_settings(cx) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    reconciler.advertise = proxy.advertise.clone();
    info!(
        "drover daemon: project {}, watching {}, resync every {}s, node grace {}s",
        cx.project,
        spec.describe(),
        resync.as_secs(),
        node_grace.as_secs()
    );
    if let Some(why) = proxy.advertise_unserved() {
        warn!("{why}");
    }
    if proxy.advertise.is_none() {
        warn!(
            "no [proxy] advertise address: containers get no service variables (see README, \"Services\")"
        );
    }
    let opts = Options {
        project: cx.project.clone(),
        git: cx.settings.git_options(&cx.state_dir),
        spec,
        resync,
        status_listen: listen,
        proxy: Some((proxy.listen, drover::proxy::Limits::default())),
        allow_empty,
        manifest: cx.settings.manifest_options(args.validate),
        advertise_status: Some(status_url),
        status_hosts: cx.settings.config.status_hosts.clone(),
        image_patterns: cx.settings.config.images.push.clone(),
    };
    let loaded = drover::reconcile::project::Loaded {
        skipped: None,
        ..loaded
    };
    super::raise_fd_limit();
    let daemon = Daemon::new(
        opts,
        reconciler,
        store,
        lock,
        (loaded, std::sync::Arc::new(pins)),
    );
    // Said when it changes, not every round.
    let said = Mutex::new(Said::default());
    let report = move |event: Report| print_event(event, &said);
    let ran = super::runtime().block_on(until_signalled(daemon, &report));
    if ran.is_err() {
        // Said by the report already, with the address and the flag that changes it.
        error!("drover daemon: not started");
        return ExitCode::from(EXIT_ERROR);
    }
    info!("drover daemon: stopped");
    ExitCode::from(EXIT_OK)
}

/// The store's writer lease, as the daemon starts. With etcd another daemon may lead: this
/// one then follows (`None`) until it can take over. An error is the exit code, already told.
fn lease(
    store: &drover::store::Store,
    status_url: &str,
) -> Result<Option<std::sync::Arc<drover::store::StoreLock>>, ExitCode> {
    let wait = if store.is_etcd() {
        Duration::ZERO
    } else {
        Duration::from_secs(10)
    };
    match store.lock_as("daemon", Some(status_url.to_string()), wait) {
        Ok(l) => Ok(Some(std::sync::Arc::new(l))),
        Err(drover::store::StoreError::Locked { .. }) if store.is_etcd() => Ok(None),
        Err(e) if store.is_etcd() => {
            warn!("{e}; following until etcd answers");
            Ok(None)
        }
        Err(e) => Err(fail(&e)),
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C.
async fn until_signalled(
    daemon: Daemon,
    report: &(dyn Fn(Report) + Send + Sync),
) -> Result<(), String> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    daemon.run(report, stop).await
}

type LeftAlone = (Vec<(String, String)>, Vec<(String, Vec<String>)>);

/// What was said, so it is said again only when it changes.
#[derive(Default)]
struct Said {
    left_alone: LeftAlone,
    /// The last failure told per action.
    failures: std::collections::BTreeMap<String, String>,
    /// Failures that recur every round while they last: a minion that cannot be observed,
    /// a store that cannot be used.
    recurring: Recurring,
}

/// A failure said when it starts or its reason changes, then again only after a back-off (30 s,
/// doubling up to 30 minutes) while it lasts, so a log shows it without one line per round.
#[derive(Default)]
struct Recurring {
    /// Per subject: the reason last said, when to say it again, and the step after that.
    said: std::collections::BTreeMap<String, (String, std::time::Instant, std::time::Duration)>,
}

impl Recurring {
    const FIRST: std::time::Duration = std::time::Duration::from_secs(30);
    const MOST: std::time::Duration = std::time::Duration::from_secs(30 * 60);

    /// Whether `reason` for `subject` is to be said now.
    fn due(&mut self, subject: &str, reason: &str) -> bool {
        let now = std::time::Instant::now();
        match self.said.get_mut(subject) {
            Some((said, next, step)) if said == reason => {
                if now < *next {
                    return false;
                }
                *step = (*step * 2).min(Self::MOST);
                *next = now + *step;
                true
            }
            _ => {
                self.said.insert(
                    subject.to_string(),
                    (reason.to_string(), now + Self::FIRST, Self::FIRST),
                );
                true
            }
        }
    }

    /// `subject` is well again: whether it had been said to fail.
    fn ended(&mut self, subject: &str) -> bool {
        self.said.remove(subject).is_some()
    }
}

fn print_event(event: Report, said: &Mutex<Said>) {
    let mut said = said.lock().expect("said");
    match event {
        Report::StatusApi(Ok(addr)) => info!("status API on http://{addr}/status"),
        Report::StatusApi(Err(e)) => error!("status API: {e}"),
        Report::SourceAt(commit) => info!("source at {}", commit.unwrap_or("-")),
        Report::Skipped(note) => info!("{note}"),
        Report::Warnings(warnings) => {
            for w in warnings {
                warn!("{w}");
            }
        }
        Report::SourceInvalid(diags) => {
            for d in diags {
                error!("{d}");
            }
            error!(
                "source invalid ({} errors); keeping the last valid state",
                diags.len()
            );
        }
        Report::SourceUnusable(e) => error!("{e}; keeping the last valid state"),
        Report::ProxyError(e) => error!("proxy: {e}"),
        Report::ProbeFailed {
            minion,
            pod,
            container,
            error,
            acted,
        } => match acted {
            None => warn!("pod {pod} on {minion}: container {container}: {error}"),
            Some(Ok(())) => warn!(
                "pod {pod} on {minion}: container {container}: liveness probe failed {} times ({error}); restarted",
                drover::daemon::probes::FAILURE_THRESHOLD
            ),
            Some(Err(e)) => error!(
                "pod {pod} on {minion}: container {container}: liveness probe failed ({error}); restart failed: {e}"
            ),
        },
        Report::StoreError(e) => {
            if said.recurring.due("store", &e) {
                error!("{e}");
            }
        }
        Report::Leading => info!("leading: this daemon holds the writer lease and acts"),
        Report::Following(who) => info!("following: {who} leads; serving the proxy from the store"),
        Report::Deposed(why) => error!("no longer leading: {why}; stopped acting"),
        Report::Round(round, took) => {
            // A round ran, so the store could be used again.
            if said.recurring.ended("store") {
                info!("the store is usable again");
            }
            for e in &round.unobserved {
                if said.recurring.due(&format!("minion {}", e.minion), &e.message) {
                    warn!("{e}");
                }
            }
            for m in &round.minions {
                if m.ready && said.recurring.ended(&format!("minion {}", m.name)) {
                    info!("minion {} answers again", m.name);
                }
            }
            if let Some(e) = &round.error {
                error!("{e}");
            }
            let now = (round.unowned.clone(), round.unclaimed.clone());
            if now != said.left_alone {
                for line in super::apply::left_alone_lines(round) {
                    info!("{line}");
                }
                said.left_alone = now;
            }
            for a in &round.done {
                info!("{}", describe(a).1);
                said.failures.remove(&super::apply::failure_key(a));
            }
            for (a, w) in &round.warnings {
                warn!("{}: {}", describe(a).1, w.message);
            }
            // A failure that recurs (a pod backing off, wherever it is tried) is told once,
            // and again only when its reason changes.
            for (a, e) in &round.failed {
                let message = drover::events::without_ids(&e.message);
                if said.failures.get(&super::apply::failure_key(a)) != Some(&message) {
                    error!(
                        "{}: {e}; backing off (see drover get events)",
                        describe(a).1
                    );
                    said.failures.insert(super::apply::failure_key(a), message);
                }
            }
            if !round.done.is_empty() {
                info!(
                    "reconciled in {:.0} ms",
                    took.as_secs_f64() * 1e3
                );
            }
        }
    }
}
