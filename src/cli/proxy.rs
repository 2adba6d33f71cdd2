//! `drover proxy`: the service proxy alone, serving the endpoints a daemon (or `apply`) keeps
//! in the store. It never takes the writer's lock: it only reads, following the store's
//! resource version: with etcd, on every change of `state.json` (a watch); in a state
//! directory, by a cheap read of `state.json` every 250 ms.

use super::{fail, Context, EXIT_OK};
use drover::proxy::{Limits, Proxy};
use std::process::ExitCode;
use std::time::Duration;

const FOLLOW_EVERY: Duration = Duration::from_millis(250);

pub fn run(cx: &Context, listen: Option<std::net::IpAddr>) -> ExitCode {
    let settings = match super::proxy_settings(cx) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let listen = listen.unwrap_or(settings.listen);
    let store = match cx.store() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    tracing::info!(
        "drover proxy: project {}, serving on {listen} the services of {}",
        cx.project,
        store.describe()
    );
    super::raise_fd_limit();
    let started = super::runtime().block_on(async {
        let proxy = match Proxy::start(listen, Limits::default()) {
            Ok(p) => std::sync::Arc::new(p),
            Err(e) => {
                tracing::error!("{e}");
                return false;
            }
        };
        // What this process serves, for `get services` (removed when it stops).
        let serving = drover::serving::keep(store.clone(), proxy.clone(), "proxy");
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler");
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        let mut changes = store.subscribe();
        let mut first = true;
        let mut seen: Option<u64> = None;
        let mut last_problem = String::new();
        loop {
            tokio::select! {
                _ = tick.tick(), if changes.is_none() || first => {}
                Some(()) = async { changes.as_mut()?.recv().await } => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
            first = false;
            let version = store.read_index().map(|i| i.resource_version);
            if version.as_ref().ok() == seen.as_ref() {
                continue;
            }
            // A store being rewritten or damaged leaves the last table in force.
            let problem = match drover::reconcile::project::stored_endpoints(&store) {
                Ok(services) => {
                    seen = version.ok();
                    let errors = proxy
                        .update(&drover::plan::endpoints::proxy_table(&services))
                        .await;
                    let listening: Vec<String> = proxy
                        .status()
                        .iter()
                        .filter_map(|s| Some(format!("{} on {}", s.name, s.listening?)))
                        .collect();
                    if !listening.is_empty() {
                        tracing::info!("serving {}", listening.join(", "));
                    }
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                }
                Err(e) => e,
            };
            if problem != last_problem && !problem.is_empty() {
                tracing::error!("{problem}");
            }
            last_problem = problem;
            if let Some(problem) = serving.problem() {
                tracing::error!("{problem}");
            }
        }
        drop(serving);
        proxy.shutdown().await;
        true
    });
    if !started {
        return ExitCode::from(super::EXIT_ERROR);
    }
    tracing::info!("drover proxy: stopped");
    ExitCode::from(EXIT_OK)
}
