//! `drover daemon`: watch mode, run by `drover::daemon::Daemon`. This file only turns flags
//! into options and the daemon's events into lines. SIGTERM or Ctrl-C ends it after the round
//! in progress.

use super::{fail, load_source, report_load_error, Context, EXIT_OK};
use crate::SourceArgs;
use drover::daemon::{Daemon, Event, Options};
use drover::exec::describe;
use drover::store::Store;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

pub fn run(
    cx: &Context,
    args: &SourceArgs,
    resync: Duration,
    node_grace: Duration,
    listen: std::net::SocketAddr,
    allow_empty: bool,
) -> ExitCode {
    let spec = cx.source_spec(args);
    let loaded = match load_source(cx, &spec, args.validate) {
        Ok(l) => l,
        Err(e) => return report_load_error(e),
    };
    let desired = &loaded.desired;
    let mut reconciler = match super::reconciler(cx, desired, node_grace) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let store = Store::new(&cx.state_dir);
    let lock = match store.lock("daemon", Duration::from_secs(10)) {
        Ok(l) => std::sync::Arc::new(l),
        Err(e) => return fail(&e),
    };
    if let Err(e) = drover::reconcile::project::open_for_writing(
        &mut reconciler,
        &store,
        Some(lock.clone()),
        &spec,
        desired,
        allow_empty,
    ) {
        return fail(&e);
    }
    let proxy = match super::proxy_settings(cx) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    reconciler.advertise = proxy.advertise.clone();
    println!(
        "drover daemon: project {}, watching {}, resync every {}s, node grace {}s",
        cx.project,
        spec.describe(),
        resync.as_secs(),
        node_grace.as_secs()
    );
    if proxy.advertise.is_none() {
        println!(
            "note: no [proxy] advertise address: containers get no service variables (see README, \"Services\")"
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
    };
    let loaded = drover::reconcile::project::Loaded {
        skipped: None,
        ..loaded
    };
    super::raise_fd_limit();
    let daemon = Daemon::new(opts, reconciler, store, lock, loaded);
    // Said when it changes, not every round.
    let left_alone = Mutex::new(Default::default());
    let report = move |event: Event| print_event(event, &left_alone);
    super::runtime().block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler");
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        daemon.run(&report, stop).await;
    });
    println!("drover daemon: stopped");
    ExitCode::from(EXIT_OK)
}

type LeftAlone = (Vec<(String, String)>, Vec<(String, Vec<String>)>);

fn print_event(event: Event, left_alone: &Mutex<LeftAlone>) {
    match event {
        Event::StatusApi(Ok(addr)) => println!("status API on http://{addr}/status"),
        // Reconciling matters more than reporting: go on without it.
        Event::StatusApi(Err(e)) => {
            eprintln!("drover: warning: status API: {e}; running without it")
        }
        Event::SourceAt(commit) => println!("source at {}", commit.unwrap_or("-")),
        Event::Skipped(note) => eprintln!("drover: note: {note}"),
        Event::Warnings(warnings) => super::report_warnings(warnings),
        Event::SourceInvalid(diags) => {
            for d in diags {
                eprintln!("drover: error: {d}");
            }
            eprintln!(
                "drover: source invalid ({} errors); keeping the last valid state",
                diags.len()
            );
        }
        Event::SourceUnusable(e) => eprintln!("drover: error: {e}; keeping the last valid state"),
        Event::ProxyError(e) => eprintln!("drover: error: proxy: {e}"),
        Event::ProbeFailed {
            minion,
            pod,
            container,
            error,
            acted,
        } => match acted {
            None => eprintln!("drover: pod {pod} on {minion}: container {container}: {error}"),
            Some(Ok(())) => eprintln!(
                "drover: pod {pod} on {minion}: container {container}: liveness probe failed {} times ({error}); restarted",
                drover::daemon::probes::FAILURE_THRESHOLD
            ),
            Some(Err(e)) => eprintln!(
                "drover: pod {pod} on {minion}: container {container}: liveness probe failed ({error}); restart failed: {e}"
            ),
        },
        Event::StoreError(e) => eprintln!("drover: error: {e}"),
        Event::Round(round, took) => {
            for e in &round.unobserved {
                eprintln!("drover: {e}");
            }
            if let Some(e) = &round.error {
                eprintln!("drover: error: {e}");
            }
            let now = (round.unowned.clone(), round.unclaimed.clone());
            let mut last = left_alone.lock().expect("left alone");
            if now != *last {
                super::apply::report_left_alone(round);
                *last = now;
            }
            for a in &round.done {
                println!("{}", describe(a).1);
            }
            for (a, e) in &round.failed {
                eprintln!("drover: error: {}: {e}", describe(a).1);
            }
            if round.planned > 0 {
                println!("reconciled in {:.0} ms", took.as_secs_f64() * 1e3);
            }
        }
    }
}
